//! AES-GMAC-SIV as used by ZeroTier 1.14 (cipher suite 3). spec: vl1.md §3.4
//!
//! The implementation lives in `weft-simd` (AES-NI/VAES and carry-less multiply, chosen at run
//! time, with a portable RustCrypto fallback), so that this crate stays free of `unsafe`.

pub use weft_simd::aes_gmac_siv::{AAD_LEN, AesGmacSiv, Backend};
