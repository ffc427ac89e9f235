//! "C25519" signatures: Ed25519 over the first 32 bytes of SHA-512(message), with those 32 bytes
//! appended (96 bytes in all). spec: vl1.md §2

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha512};

/// Length of a signature.
pub const SIGNATURE_LEN: usize = 96;

fn prehash(msg: &[u8]) -> [u8; 32] {
    let d = Sha512::digest(msg);
    let mut h = [0u8; 32];
    h.copy_from_slice(&d[..32]);
    h
}

/// Signs `msg` with a 64-byte C25519 private key (X25519 scalar ‖ Ed25519 seed).
pub fn sign(private: &[u8; 64], msg: &[u8]) -> [u8; SIGNATURE_LEN] {
    let mut seed = [0u8; 32];
    seed.copy_from_slice(&private[32..]);
    let sk = SigningKey::from_bytes(&seed);
    zeroize::Zeroize::zeroize(&mut seed);
    let h = prehash(msg);
    let sig = sk.sign(&h);
    let mut out = [0u8; SIGNATURE_LEN];
    out[..64].copy_from_slice(&sig.to_bytes());
    out[64..].copy_from_slice(&h);
    out
}

/// Verifies a 96-byte signature against a 64-byte C25519 public key (X25519 ‖ Ed25519).
/// Any length other than 96 fails.
pub fn verify(public: &[u8; 64], msg: &[u8], sig: &[u8]) -> bool {
    if sig.len() != SIGNATURE_LEN {
        return false;
    }
    let h = prehash(msg);
    if sig[64..] != h {
        return false;
    }
    let mut ed = [0u8; 32];
    ed.copy_from_slice(&public[32..]);
    let Ok(vk) = VerifyingKey::from_bytes(&ed) else {
        return false;
    };
    let mut rs = [0u8; 64];
    rs.copy_from_slice(&sig[..64]);
    let s = ed25519_dalek::Signature::from_bytes(&rs);
    // RFC 8032 §5.1.7 cofactorless verification, as 1.14 does (not `verify_strict`).
    ed25519_dalek::Verifier::verify(&vk, &h, &s).is_ok()
}
