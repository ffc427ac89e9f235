//! (filled in by the SIMD crypto work)
