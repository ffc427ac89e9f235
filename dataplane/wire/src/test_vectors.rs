//! Known-answer material shared by the unit tests: the test-only identities of vl1.md
//! Appendix A.

/// Identity A (secret). spec: vl1.md Appendix A
pub(crate) const A: &str = "2f52c8fb18:0:cc8def6df561ff69117bdeb006b329ebac35349a91e65175032e6d1398f1eb58b1eaefa4507ccf875e8dea63b32b4b1c39ddd567ccb963ead9cfec1d538cb21b:f0bdc71129bf59592ac580ee136b81b2a2a516f156acf41b2515dd1b756a729dd3babe47ff9b1f7e691f6ecd7c11bf10d273b417abc610fed8462fa111036079";
/// Identity B (secret). spec: vl1.md Appendix A
pub(crate) const B: &str = "555b5031f8:0:b714a04b47bd65f6b8b9bfa9edb4f9d989d4d86d8f8eeaf22b25e554e8ca036d462dd50d558107241ca9522d77bd8cb9fdf52fd80094701695478270d2b61628:03e4fb56cf7f98a583d6da6c743e2f357c90660026f1df714518eb94ce8eda5f7a694dcdb0d3ab8e876e237cb58a6bfa8a3be4c8160d556b0e30145670861224";
