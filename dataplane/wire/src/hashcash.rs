//! The memory-hard address derivation ("hashcash"). spec: vl1.md §1.2

use cipher::{KeyIvInit, StreamCipher};
use sha2::{Digest, Sha512};

/// Size of the scratch buffer: 2 MiB.
const MEMORY: usize = 2_097_152;
const WORDS: usize = MEMORY / 8;

/// Reusable 2 MiB scratch memory for [`digest`], so that generation loops allocate once.
pub(crate) struct Scratch(Vec<u8>);

impl Scratch {
    pub(crate) fn new() -> Self {
        Scratch(vec![0u8; MEMORY])
    }
}

/// Computes the 64-byte memory-hard digest of a 64-byte public key.
pub(crate) fn digest(public: &[u8; 64], scratch: &mut Scratch) -> [u8; 64] {
    let mut d = [0u8; 64];
    d.copy_from_slice(&Sha512::digest(public));
    let key: [u8; 32] = d[..32].try_into().expect("64 >= 32");
    let nonce: [u8; 8] = d[32..40].try_into().expect("64 >= 40");
    let mut s = salsa20::Salsa20::new(&key.into(), &nonce.into());

    // Step 3: G[0] = ks, G[i] = G[i-1] ^ ks  ⇔  fill with keystream then prefix-XOR by block.
    let g = &mut scratch.0;
    g.fill(0);
    s.apply_keystream(g);
    for i in 64..MEMORY {
        g[i] ^= g[i - 64];
    }

    // Step 4.
    let mut k = 0;
    while k < WORDS {
        let w = |idx: usize, g: &[u8]| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&g[idx * 8..idx * 8 + 8]);
            u64::from_be_bytes(b)
        };
        let a = (w(k, g) % 8) as usize;
        let b = (w(k + 1, g) % WORDS as u64) as usize;
        let gb = &mut g[b * 8..b * 8 + 8];
        let da = &mut d[a * 8..a * 8 + 8];
        gb.swap_with_slice(da);
        s.apply_keystream(&mut d);
        k += 2;
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    // spec: vl1.md Appendix A, identity A
    #[test]
    fn appendix_a_digest() {
        let pub_a = hex::decode("cc8def6df561ff69117bdeb006b329ebac35349a91e65175032e6d1398f1eb58b1eaefa4507ccf875e8dea63b32b4b1c39ddd567ccb963ead9cfec1d538cb21b").unwrap();
        let d = digest(&pub_a.try_into().unwrap(), &mut Scratch::new());
        assert_eq!(
            hex::encode(d),
            "09b0fec918a71c68747ed30d7585e5583f21d9bd0dca54d01872c79eac240b3c9e43556e232b2162ced90f2ba994e36fb20cdce369527cf284c6c82f52c8fb18"
        );
    }
}
