//! Symmetric crypto used on the wire: per-peer keys, Salsa20/12 + Poly1305, AES-GMAC-SIV.
//!
//! The stream cipher sits behind [`salsa::Salsa2012`], a deliberately small interface so that a
//! SIMD implementation can replace the scalar one without touching callers.

pub mod aes_gmac_siv;
pub mod salsa;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha384, Sha512};
use zeroize::{Zeroize, Zeroizing};

pub use aes_gmac_siv::AesGmacSiv;

/// Length of the long-term per-peer key. spec: vl1.md §1.5
pub const PEER_KEY_LEN: usize = 48;

/// The long-term symmetric key shared by a pair of identities, with the derived cipher keys
/// precomputed. This is what the data plane receives per peer (never the identity secret).
pub struct PeerKey {
    key: Zeroizing<[u8; PEER_KEY_LEN]>,
    aes: AesGmacSiv,
}

impl std::fmt::Debug for PeerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerKey(..)")
    }
}

impl Clone for PeerKey {
    fn clone(&self) -> Self {
        PeerKey::from_bytes(&self.key)
    }
}

impl PeerKey {
    /// Builds the key from the 48 raw bytes and derives the AES-GMAC-SIV subkeys.
    pub fn from_bytes(key: &[u8; PEER_KEY_LEN]) -> Self {
        let k0 = kbkdf_hmac_sha384(key, b'0');
        let k1 = kbkdf_hmac_sha384(key, b'1');
        PeerKey {
            key: Zeroizing::new(*key),
            aes: AesGmacSiv::new(&k0, &k1),
        }
    }

    /// Derives the key from a raw X25519 shared secret: the first 48 bytes of SHA-512(raw).
    /// spec: vl1.md §1.5
    pub fn from_x25519_shared(raw: &[u8; 32]) -> Self {
        let mut digest = Sha512::digest(raw);
        let mut key = [0u8; PEER_KEY_LEN];
        key.copy_from_slice(&digest[..PEER_KEY_LEN]);
        digest.zeroize();
        let pk = Self::from_bytes(&key);
        key.zeroize();
        pk
    }

    /// All 48 bytes.
    pub fn as_bytes(&self) -> &[u8; PEER_KEY_LEN] {
        &self.key
    }

    /// The Salsa20/12 + Poly1305 key: the first 32 bytes.
    pub fn salsa_key(&self) -> &[u8; 32] {
        // invariant: 48 >= 32, the conversion of a fixed-size prefix cannot fail
        self.key[..32]
            .try_into()
            .expect("48-byte key has a 32-byte prefix")
    }

    /// The AES-GMAC-SIV cipher keyed with K0/K1.
    pub fn aes_gmac_siv(&self) -> &AesGmacSiv {
        &self.aes
    }
}

/// The KBKDF (SP 800-108 counter mode, one block) with HMAC-SHA-384 keyed by all 48 key bytes:
/// returns the 32-byte AES key for `label` (`b'0'` → K0, `b'1'` → K1). spec: vl1.md §1.5
pub fn kbkdf_hmac_sha384(key: &[u8; PEER_KEY_LEN], label: u8) -> Zeroizing<[u8; 32]> {
    let msg = [0, 0, 0, 0, b'Z', b'T', label, 0, 0, 0, 0, 0x01, 0x80];
    // invariant: HMAC accepts keys of any length
    let mut mac = <Hmac<Sha384> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(&msg);
    let out = mac.finalize().into_bytes();
    let mut k = Zeroizing::new([0u8; 32]);
    k.copy_from_slice(&out[..32]);
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    // spec: vl1.md Appendix A
    #[test]
    fn kbkdf_vectors() {
        let k = hex::decode("ca6e79124355ba38de7e1e48714361c52b0d349f43001551efd2d49fd30275709e9ecf84631a491f8bf908945f06c47a").unwrap();
        let k: [u8; 48] = k.try_into().unwrap();
        assert_eq!(
            hex::encode(*kbkdf_hmac_sha384(&k, b'0')),
            "e519db156252f7464e6c32aba0618751ce496d395a6ea9e55c348161d390487b"
        );
        assert_eq!(
            hex::encode(*kbkdf_hmac_sha384(&k, b'1')),
            "98905c04b53ddb5432528cc3ee286dd50dc05697880205574ff6776d2e10bba4"
        );
    }
}
