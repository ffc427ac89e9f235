//! Salsa20/12 (packet armor, HELLO tail) behind a small interface. spec: vl1.md §3.2, §3.3
//!
//! The keystream comes from `weft-simd` (AVX-512, AVX2 or portable kernel, chosen once per
//! process); callers only use `new`, `keystream_block0` and `apply_keystream`.

/// A Salsa20 stream with 12 rounds, 256-bit key, 64-bit nonce, counter starting at 0.
#[derive(Debug)]
pub struct Salsa2012 {
    inner: weft_simd::salsa::Salsa2012,
}

impl Salsa2012 {
    /// Starts a keystream at block 0.
    pub fn new(key: &[u8; 32], iv: &[u8; 8]) -> Self {
        Salsa2012 {
            inner: weft_simd::salsa::Salsa2012::new(key, iv),
        }
    }

    /// Returns the first 64 keystream bytes (block 0), advancing the stream to byte 64.
    pub fn keystream_block0(&mut self) -> [u8; 64] {
        self.inner.keystream_block0()
    }

    /// XORs `buf` with the next `buf.len()` keystream bytes.
    pub fn apply_keystream(&mut self, buf: &mut [u8]) {
        self.inner.apply_keystream(buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cipher::{KeyIvInit, StreamCipher};

    #[test]
    fn block0_then_rest_matches_salsa20_crate() {
        let key = [0x11u8; 32];
        let iv = [0x22u8; 8];
        for len in [0usize, 1, 27, 64, 1373, 2773] {
            let mut expect = vec![0u8; 64 + len];
            salsa20::Salsa12::new((&key).into(), (&iv).into()).apply_keystream(&mut expect);
            let mut s = Salsa2012::new(&key, &iv);
            let b0 = s.keystream_block0();
            let mut rest = vec![0u8; len];
            s.apply_keystream(&mut rest);
            assert_eq!(b0[..], expect[..64]);
            assert_eq!(rest[..], expect[64..], "len {len}");
        }
    }
}
