//! C25519 signing key pairs for worlds (moons and planets), and the world generator's
//! `*.c25519` key files (64-byte public ‖ 64-byte private). spec: vl1.md §1.1, §7.8

use std::fmt;
use std::path::Path;

use anyhow::{Result, anyhow, bail};
use rand_core::{OsRng, RngCore};
use weft_wire::identity::public_from_private;
use zeroize::Zeroizing;

use super::fsutil;

/// Size of a `*.c25519` key file.
pub(crate) const KEY_FILE_LEN: usize = 128;

/// A C25519 key pair: public = X25519 ‖ Ed25519 public halves, private = X25519 scalar ‖
/// Ed25519 seed.
#[derive(Clone)]
pub(crate) struct KeyPair {
    /// The 64-byte public key.
    pub(crate) public: [u8; 64],
    /// The 64-byte private key.
    pub(crate) private: Zeroizing<[u8; 64]>,
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyPair({}…)", hex::encode(&self.public[..8]))
    }
}

impl KeyPair {
    /// A fresh key pair from 64 random bytes.
    pub(crate) fn generate() -> Self {
        let mut private = Zeroizing::new([0u8; 64]);
        OsRng.fill_bytes(&mut private[..]);
        Self::from_private(private)
    }

    /// The key pair of a private key.
    pub(crate) fn from_private(private: Zeroizing<[u8; 64]>) -> Self {
        KeyPair {
            public: public_from_private(&private),
            private,
        }
    }

    /// Parses a 128-byte key file image; the public half must belong to the private half.
    pub(crate) fn from_file_bytes(b: &[u8], name: &str) -> Result<Self> {
        if b.len() != KEY_FILE_LEN {
            bail!(
                "{name}: a key file must be {KEY_FILE_LEN} bytes (public ‖ private), found {}",
                b.len()
            );
        }
        let mut private = Zeroizing::new([0u8; 64]);
        private.copy_from_slice(&b[64..]);
        let kp = Self::from_private(private);
        if kp.public[..] != b[..64] {
            bail!("{name}: public key does not belong to the private key");
        }
        Ok(kp)
    }

    /// Reads a key file.
    pub(crate) fn load(path: &Path) -> Result<Self> {
        let b = Zeroizing::new(fsutil::read(path)?);
        Self::from_file_bytes(&b, &path.display().to_string())
    }

    /// The 128-byte key file image.
    pub(crate) fn to_file_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut v = Zeroizing::new(Vec::with_capacity(KEY_FILE_LEN));
        v.extend_from_slice(&self.public);
        v.extend_from_slice(&self.private[..]);
        v
    }

    /// Writes the key file (mode 0600, atomically).
    pub(crate) fn save(&self, path: &Path) -> Result<()> {
        fsutil::write_atomic(path, &self.to_file_bytes(), fsutil::SECRET_MODE)
    }
}

/// Decodes exactly 64 bytes of hex (a C25519 public or private key).
pub(crate) fn decode_key_hex(s: &str, what: &str) -> Result<[u8; 64]> {
    let mut k = [0u8; 64];
    hex::decode_to_slice(s.trim(), &mut k)
        .map_err(|_| anyhow!("{what} must be 128 hex digits (64 bytes)"))?;
    Ok(k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_round_trip_and_checks() {
        let kp = KeyPair::generate();
        let b = kp.to_file_bytes();
        let back = KeyPair::from_file_bytes(&b, "k").unwrap();
        assert_eq!(back.public, kp.public);
        assert_eq!(back.private[..], kp.private[..]);
        assert!(KeyPair::from_file_bytes(&b[..127], "k").is_err());
        let mut bad = b.to_vec();
        bad[0] ^= 1;
        assert!(KeyPair::from_file_bytes(&bad, "k").is_err());
        assert!(decode_key_hex("00", "key").is_err());
        assert!(decode_key_hex(&"ab".repeat(64), "key").is_ok());
    }
}
