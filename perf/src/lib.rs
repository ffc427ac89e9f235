//! weft performance tooling (benchmarks live in benches/).
