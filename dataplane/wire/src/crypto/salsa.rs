//! Salsa20/12 (packet armor, HELLO tail) behind a small interface. spec: vl1.md §3.2, §3.3
//!
//! Today this wraps the `salsa20` crate (scalar, with its SSE2 backend where available). A SIMD
//! implementation for AVX2/AVX-512 will replace the body of [`Salsa2012`] later; callers only use
//! `new`, `keystream_block0` and `apply_keystream`.

use cipher::{KeyIvInit, StreamCipher};

/// A Salsa20 stream with 12 rounds, 256-bit key, 64-bit nonce, counter starting at 0.
pub struct Salsa2012 {
    inner: salsa20::Salsa12,
}

impl std::fmt::Debug for Salsa2012 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Salsa2012(..)")
    }
}

impl Salsa2012 {
    /// Starts a keystream at block 0.
    pub fn new(key: &[u8; 32], iv: &[u8; 8]) -> Self {
        Salsa2012 {
            inner: salsa20::Salsa12::new(key.into(), iv.into()),
        }
    }

    /// Returns the first 64 keystream bytes (block 0), advancing the stream to byte 64.
    pub fn keystream_block0(&mut self) -> [u8; 64] {
        let mut b = [0u8; 64];
        self.inner.apply_keystream(&mut b);
        b
    }

    /// XORs `buf` with the next `buf.len()` keystream bytes.
    pub fn apply_keystream(&mut self, buf: &mut [u8]) {
        self.inner.apply_keystream(buf);
    }
}
