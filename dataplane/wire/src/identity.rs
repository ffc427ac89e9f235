//! Node identities: key material, address derivation, text and binary forms, key agreement and
//! signatures. spec: vl1.md §1, §2

use std::fmt;
use std::str::FromStr;

use rand_core::CryptoRngCore;
use zeroize::Zeroizing;

use crate::address::Address;
use crate::crypto::PeerKey;
use crate::hashcash;
use crate::signature;

/// Length of the public binary form. spec: vl1.md §1.4
pub const PUBLIC_BINARY_LEN: usize = 71;
/// Length of the binary form with the private key.
pub const SECRET_BINARY_LEN: usize = 135;
/// Identity type byte (Curve25519 + Ed25519), the only one 1.x accepts.
pub const IDENTITY_TYPE_C25519: u8 = 0;

/// Errors from parsing or using an identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// Text form did not have 3 or 4 `:`-separated fields.
    #[error("identity text must have 3 or 4 ':'-separated fields, found {found}")]
    FieldCount {
        /// Number of fields found.
        found: usize,
    },
    /// The address field is not valid hex of at most 10 digits.
    #[error("bad address field in identity")]
    BadAddress,
    /// The address is reserved (zero or 0xff prefix).
    #[error("address {address} is reserved")]
    ReservedAddress {
        /// The reserved address.
        address: Address,
    },
    /// The identity type is not 0.
    #[error("unsupported identity type {found}")]
    BadType {
        /// The type byte or field text.
        found: String,
    },
    /// A key field is not 128 hex digits (64 bytes).
    #[error("{which} key must be 64 bytes of hex")]
    BadKey {
        /// "public" or "private".
        which: &'static str,
    },
    /// Binary input was shorter than its fields need.
    #[error("identity binary form truncated: need {need} bytes, have {have}")]
    Truncated {
        /// Bytes required.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// The private key length byte is neither 0 nor 64.
    #[error("private key length byte must be 0 or 64, found {found}")]
    BadPrivateLength {
        /// The length byte.
        found: u8,
    },
    /// An operation needing the private key was attempted on a public identity.
    #[error("identity {address} has no private key")]
    NoPrivateKey {
        /// The identity's address.
        address: Address,
    },
}

/// A node identity: address, 64-byte public key (X25519 ‖ Ed25519) and optionally the 64-byte
/// private key (X25519 scalar ‖ Ed25519 seed). `Debug` and `Display` never show the private key.
#[derive(Clone)]
pub struct Identity {
    address: Address,
    public: [u8; 64],
    private: Option<Zeroizing<[u8; 64]>>,
}

impl PartialEq for Identity {
    /// Identities are equal when address and public key are (the private key is not compared).
    fn eq(&self, other: &Self) -> bool {
        self.address == other.address && self.public == other.public
    }
}
impl Eq for Identity {}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Identity({}, private: {})",
            self.address,
            self.private.is_some()
        )
    }
}

/// The public text form `address:0:public`.
impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:0:{}", self.address, hex::encode(self.public))
    }
}

fn x25519_public(private: &[u8; 64]) -> [u8; 32] {
    let mut s = [0u8; 32];
    s.copy_from_slice(&private[..32]);
    let secret = x25519_dalek::StaticSecret::from(s);
    zeroize::Zeroize::zeroize(&mut s);
    x25519_dalek::PublicKey::from(&secret).to_bytes()
}

fn ed25519_public(private: &[u8; 64]) -> [u8; 32] {
    let mut seed = [0u8; 32];
    seed.copy_from_slice(&private[32..]);
    let sk = ed25519_dalek::SigningKey::from_bytes(&seed);
    zeroize::Zeroize::zeroize(&mut seed);
    sk.verifying_key().to_bytes()
}

/// Computes the public key (X25519 ‖ Ed25519) belonging to a 64-byte private key.
pub fn public_from_private(private: &[u8; 64]) -> [u8; 64] {
    let mut p = [0u8; 64];
    p[..32].copy_from_slice(&x25519_public(private));
    p[32..].copy_from_slice(&ed25519_public(private));
    p
}

impl Identity {
    /// Builds an identity from its parts without checking the address derivation
    /// (see [`Identity::validate`]). Fails for reserved addresses.
    pub fn from_parts(
        address: Address,
        public: [u8; 64],
        private: Option<[u8; 64]>,
    ) -> Result<Self, IdentityError> {
        if address.is_reserved() {
            return Err(IdentityError::ReservedAddress { address });
        }
        Ok(Identity {
            address,
            public,
            private: private.map(Zeroizing::new),
        })
    }

    /// Generates a new identity with a valid, non-reserved address. Takes about 15 evaluations
    /// of the memory-hard hash. spec: vl1.md §1.2 (generation)
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        let mut scratch = hashcash::Scratch::new();
        loop {
            let mut private = Zeroizing::new([0u8; 64]);
            rng.fill_bytes(&mut private[..]);
            let mut public = [0u8; 64];
            public[32..].copy_from_slice(&ed25519_public(&private));
            loop {
                let mut w = [0u8; 8];
                w.copy_from_slice(&private[8..16]);
                private[8..16]
                    .copy_from_slice(&u64::from_le_bytes(w).wrapping_add(1).to_le_bytes());
                w.copy_from_slice(&private[16..24]);
                private[16..24]
                    .copy_from_slice(&u64::from_le_bytes(w).wrapping_sub(1).to_le_bytes());
                public[..32].copy_from_slice(&x25519_public(&private));
                let d = hashcash::digest(&public, &mut scratch);
                if d[0] < 17 {
                    let address = Address::from_slice(&d[59..]).expect("64-byte digest");
                    if address.is_reserved() {
                        break;
                    }
                    return Identity {
                        address,
                        public,
                        private: Some(private),
                    };
                }
            }
        }
    }

    /// The 40-bit address.
    pub fn address(&self) -> Address {
        self.address
    }

    /// The 64-byte public key (X25519 ‖ Ed25519).
    pub fn public_key(&self) -> &[u8; 64] {
        &self.public
    }

    /// The 64-byte private key, if this is a secret identity.
    pub fn private_key(&self) -> Option<&[u8; 64]> {
        self.private.as_deref()
    }

    /// Whether the private key is present.
    pub fn has_private(&self) -> bool {
        self.private.is_some()
    }

    /// A copy without the private key.
    pub fn to_public(&self) -> Identity {
        Identity {
            address: self.address,
            public: self.public,
            private: None,
        }
    }

    /// Full validation: the address is not reserved, derives from the public key through the
    /// memory-hard hash (`digest[0] < 17`, `digest[59..64] == address`), and, when a private key is
    /// present, the public halves derive from it. Expensive (allocates and fills 2 MiB).
    /// spec: vl1.md §1.2 step 5
    pub fn validate(&self) -> bool {
        if self.address.is_reserved() {
            return false;
        }
        if let Some(p) = &self.private
            && public_from_private(p) != self.public
        {
            return false;
        }
        let d = hashcash::digest(&self.public, &mut hashcash::Scratch::new());
        d[0] < 17 && d[59..64] == self.address.to_bytes()
    }

    /// The secret text form `address:0:public:private`; fails without a private key.
    pub fn to_secret_string(&self) -> Result<Zeroizing<String>, IdentityError> {
        let p = self.private.as_ref().ok_or(IdentityError::NoPrivateKey {
            address: self.address,
        })?;
        Ok(Zeroizing::new(format!(
            "{}:0:{}:{}",
            self.address,
            hex::encode(self.public),
            hex::encode(&p[..])
        )))
    }

    /// Appends the binary form (71 bytes public, 135 with the private key). spec: vl1.md §1.4
    pub fn write_binary(&self, out: &mut Vec<u8>, include_private: bool) {
        out.extend_from_slice(&self.address.to_bytes());
        out.push(IDENTITY_TYPE_C25519);
        out.extend_from_slice(&self.public);
        match (&self.private, include_private) {
            (Some(p), true) => {
                out.push(64);
                out.extend_from_slice(&p[..]);
            }
            _ => out.push(0),
        }
    }

    /// The 71-byte public binary form.
    pub fn to_public_bytes(&self) -> [u8; PUBLIC_BINARY_LEN] {
        let mut b = [0u8; PUBLIC_BINARY_LEN];
        b[..5].copy_from_slice(&self.address.to_bytes());
        b[5] = IDENTITY_TYPE_C25519;
        b[6..70].copy_from_slice(&self.public);
        b
    }

    /// Parses the binary form at the start of `b`, returning the identity and the number of
    /// bytes consumed. Does not check the address derivation.
    pub fn from_binary(b: &[u8]) -> Result<(Identity, usize), IdentityError> {
        let need = |n: usize| {
            if b.len() < n {
                Err(IdentityError::Truncated {
                    need: n,
                    have: b.len(),
                })
            } else {
                Ok(())
            }
        };
        need(PUBLIC_BINARY_LEN)?;
        let address = Address::from_slice(b).expect("length checked");
        if b[5] != IDENTITY_TYPE_C25519 {
            return Err(IdentityError::BadType {
                found: b[5].to_string(),
            });
        }
        let public: [u8; 64] = b[6..70].try_into().expect("length checked");
        let (private, used) = match b[70] {
            0 => (None, PUBLIC_BINARY_LEN),
            64 => {
                need(SECRET_BINARY_LEN)?;
                let p: [u8; 64] = b[71..135].try_into().expect("length checked");
                (Some(p), SECRET_BINARY_LEN)
            }
            found => return Err(IdentityError::BadPrivateLength { found }),
        };
        Ok((Identity::from_parts(address, public, private)?, used))
    }

    /// Key agreement with `other`: SHA-512(X25519(my private, their public))[0..48], with the
    /// AES-GMAC-SIV subkeys derived. spec: vl1.md §1.5
    pub fn agree(&self, other: &Identity) -> Result<PeerKey, IdentityError> {
        let p = self.private.as_ref().ok_or(IdentityError::NoPrivateKey {
            address: self.address,
        })?;
        let mut s = [0u8; 32];
        s.copy_from_slice(&p[..32]);
        let secret = x25519_dalek::StaticSecret::from(s);
        zeroize::Zeroize::zeroize(&mut s);
        let mut theirs = [0u8; 32];
        theirs.copy_from_slice(&other.public[..32]);
        let shared = secret.diffie_hellman(&x25519_dalek::PublicKey::from(theirs));
        Ok(PeerKey::from_x25519_shared(shared.as_bytes()))
    }

    /// Signs `msg` (96-byte signature). spec: vl1.md §2
    pub fn sign(&self, msg: &[u8]) -> Result<[u8; signature::SIGNATURE_LEN], IdentityError> {
        let p = self.private.as_ref().ok_or(IdentityError::NoPrivateKey {
            address: self.address,
        })?;
        Ok(signature::sign(p, msg))
    }

    /// Verifies a 96-byte signature by this identity over `msg`.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        signature::verify(&self.public, msg, sig)
    }
}

fn decode_key(s: &str, which: &'static str) -> Result<[u8; 64], IdentityError> {
    let mut k = [0u8; 64];
    hex::decode_to_slice(s, &mut k).map_err(|_| IdentityError::BadKey { which })?;
    Ok(k)
}

impl FromStr for Identity {
    type Err = IdentityError;

    /// Parses `address:0:public[:private]`; does not check the derivation. spec: vl1.md §1.3
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let fields: Vec<&str> = s.split(':').collect();
        if fields.len() != 3 && fields.len() != 4 {
            return Err(IdentityError::FieldCount {
                found: fields.len(),
            });
        }
        let address: Address = fields[0].parse().map_err(|_| IdentityError::BadAddress)?;
        if fields[1] != "0" {
            return Err(IdentityError::BadType {
                found: fields[1].chars().take(8).collect(),
            });
        }
        let public = decode_key(fields[2], "public")?;
        let private = match fields.get(3) {
            Some(p) => Some(Zeroizing::new(decode_key(p, "private")?)),
            None => None,
        };
        if address.is_reserved() {
            return Err(IdentityError::ReservedAddress { address });
        }
        Ok(Identity {
            address,
            public,
            private,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_vectors::{A, B};

    #[test]
    fn appendix_a_identity() {
        let a: Identity = A.parse().unwrap();
        let b: Identity = B.parse().unwrap();
        assert!(a.validate());
        assert!(b.validate());
        assert_eq!(a.to_secret_string().unwrap().as_str(), A);
        assert_eq!(
            hex::encode(a.to_public_bytes()),
            "2f52c8fb1800cc8def6df561ff69117bdeb006b329ebac35349a91e65175032e6d1398f1eb58b1eaefa4507ccf875e8dea63b32b4b1c39ddd567ccb963ead9cfec1d538cb21b00"
        );
        let k1 = a.agree(&b).unwrap();
        let k2 = b.agree(&a).unwrap();
        assert_eq!(k1.as_bytes(), k2.as_bytes());
        assert_eq!(
            hex::encode(k1.as_bytes()),
            "ca6e79124355ba38de7e1e48714361c52b0d349f43001551efd2d49fd30275709e9ecf84631a491f8bf908945f06c47a"
        );
        let sig = a.sign(b"hello zerotier signature test\n").unwrap();
        assert_eq!(
            hex::encode(sig),
            "01d7a16958352289c309aaf3bf73816b2f62e3c301c61684d93e72aa09e3ba4b973d205a68168c8ccba3c4c7fead3d5f9ad90ab3db035cdb10a91531bebc6405732991bea06b11eaca424ac717b8c717da8c5211944026834e140e0ca633d66b"
        );
        assert!(
            a.to_public()
                .verify(b"hello zerotier signature test\n", &sig)
        );
        assert!(!b.verify(b"hello zerotier signature test\n", &sig));
    }

    #[test]
    fn binary_round_trip() {
        let a: Identity = A.parse().unwrap();
        let mut v = Vec::new();
        a.write_binary(&mut v, true);
        assert_eq!(v.len(), SECRET_BINARY_LEN);
        let (back, used) = Identity::from_binary(&v).unwrap();
        assert_eq!(used, SECRET_BINARY_LEN);
        assert_eq!(back.private_key(), a.private_key());
        for n in 0..v.len() {
            let _ = Identity::from_binary(&v[..n]);
        }
        v[70] = 3;
        assert!(matches!(
            Identity::from_binary(&v),
            Err(IdentityError::BadPrivateLength { found: 3 })
        ));
    }

    #[test]
    fn text_rejections() {
        assert!(matches!(
            "ff00000000:0:00".parse::<Identity>(),
            Err(IdentityError::BadKey { .. })
        ));
        let bad_type = A.replacen(":0:", ":1:", 1);
        assert!(matches!(
            bad_type.parse::<Identity>(),
            Err(IdentityError::BadType { .. })
        ));
        let reserved = format!("ff{}", &A[2..]);
        assert!(matches!(
            reserved.parse::<Identity>(),
            Err(IdentityError::ReservedAddress { .. })
        ));
        assert!(matches!(
            "a:b".parse::<Identity>(),
            Err(IdentityError::FieldCount { found: 2 })
        ));
    }

    #[test]
    fn generate_is_valid() {
        let mut rng = rand_core::OsRng;
        let id = Identity::generate(&mut rng);
        assert!(id.validate());
        assert!(!id.address().is_reserved());
        let back: Identity = id.to_secret_string().unwrap().parse().unwrap();
        assert_eq!(back.private_key(), id.private_key());
    }
}
