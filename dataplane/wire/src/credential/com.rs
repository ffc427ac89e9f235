//! Certificate of membership. spec: vl2.md §13.1

use sha2::{Digest, Sha384};

use super::CredentialError;
use crate::address::{Address, NetworkId};
use crate::identity::Identity;
use crate::signature::SIGNATURE_LEN;
use crate::verbs::Reader;

/// Most qualifiers a COM may carry.
pub const MAX_QUALIFIERS: usize = 8;

const WHAT: &str = "COM";

/// Qualifier id of the timestamp (value = ms, max delta = the network's ctmd).
pub const ID_TIMESTAMP: u64 = 0;
/// Qualifier id of the network id (max delta 0).
pub const ID_NETWORK_ID: u64 = 1;
/// Qualifier id of the issued-to address (max delta ignored: all ones).
pub const ID_ISSUED_TO: u64 = 2;

/// One `(id, value, maxDelta)` triple.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Qualifier {
    /// Qualifier id.
    pub id: u64,
    /// Value.
    pub value: u64,
    /// Largest difference from a peer's value that still agrees.
    pub max_delta: u64,
}

/// A certificate of membership: `0x01 | count (2) | count × (id, value, maxDelta) | signer (5) |
/// [signature (96) if signer ≠ 0]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Com {
    qualifiers: Vec<Qualifier>,
    signed_by: Address,
    signature: [u8; SIGNATURE_LEN],
}

/// The four 64-bit words of SHA-384(address ‖ public key) that bind a COM to its member.
fn identity_words(id: &Identity) -> [u64; 4] {
    let mut h = Sha384::new();
    h.update(id.address().to_bytes());
    h.update(id.public_key());
    let d = h.finalize();
    std::array::from_fn(|i| u64::from_be_bytes(d[i * 8..i * 8 + 8].try_into().expect("8 bytes")))
}

impl Com {
    /// The COM a 1.14 controller issues: timestamp (max delta `max_delta`), network id, member
    /// address and the member's identity hash (ids 3..6), signed by `signer`. The signer should
    /// be the network's controller, or [`Com::verify`] rejects the result.
    pub fn issue(
        timestamp: i64,
        max_delta: i64,
        nwid: NetworkId,
        member: &Identity,
        signer: &Identity,
    ) -> Result<Com, CredentialError> {
        let mut q = vec![
            Qualifier {
                id: ID_TIMESTAMP,
                value: timestamp as u64,
                max_delta: max_delta as u64,
            },
            Qualifier {
                id: ID_NETWORK_ID,
                value: nwid.0,
                max_delta: 0,
            },
            Qualifier {
                id: ID_ISSUED_TO,
                value: member.address().to_u64(),
                max_delta: u64::MAX,
            },
        ];
        for (i, w) in identity_words(member).into_iter().enumerate() {
            q.push(Qualifier {
                id: 3 + i as u64,
                value: w,
                max_delta: u64::MAX,
            });
        }
        Com::sign_qualifiers(q, signer)
    }

    /// Signs arbitrary qualifiers (at most [`MAX_QUALIFIERS`], in non-decreasing id order).
    pub fn sign_qualifiers(
        qualifiers: Vec<Qualifier>,
        signer: &Identity,
    ) -> Result<Com, CredentialError> {
        if qualifiers.len() > MAX_QUALIFIERS {
            return Err(CredentialError::TooMany {
                what: WHAT,
                field: "qualifiers",
                count: qualifiers.len(),
                max: MAX_QUALIFIERS,
            });
        }
        if qualifiers.windows(2).any(|w| w[1].id < w[0].id) {
            return Err(CredentialError::Invalid {
                what: WHAT,
                field: "qualifier order",
            });
        }
        let mut c = Com {
            qualifiers,
            signed_by: signer.address(),
            signature: [0; SIGNATURE_LEN],
        };
        c.signature = signer.sign(&c.signed_bytes())?;
        Ok(c)
    }

    /// Decodes a COM at the start of `b`; returns it and the bytes consumed.
    pub fn decode(b: &[u8]) -> Result<(Com, usize), CredentialError> {
        let mut r = Reader::new(b, WHAT);
        if r.u8()? != 1 {
            return Err(r.invalid("format").into());
        }
        let count = usize::from(r.u16()?);
        if count > MAX_QUALIFIERS {
            return Err(CredentialError::TooMany {
                what: WHAT,
                field: "qualifiers",
                count,
                max: MAX_QUALIFIERS,
            });
        }
        let mut qualifiers = Vec::with_capacity(count);
        for _ in 0..count {
            let q = Qualifier {
                id: r.u64()?,
                value: r.u64()?,
                max_delta: r.u64()?,
            };
            if qualifiers.last().is_some_and(|l: &Qualifier| q.id < l.id) {
                return Err(r.invalid("qualifier order").into());
            }
            qualifiers.push(q);
        }
        let signed_by = r.address()?;
        let signature = if signed_by.to_u64() != 0 {
            r.array()?
        } else {
            [0; SIGNATURE_LEN]
        };
        Ok((
            Com {
                qualifiers,
                signed_by,
                signature,
            },
            r.pos(),
        ))
    }

    /// Appends the binary form.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(1);
        out.extend_from_slice(&(self.qualifiers.len() as u16).to_be_bytes());
        for q in &self.qualifiers {
            out.extend_from_slice(&q.id.to_be_bytes());
            out.extend_from_slice(&q.value.to_be_bytes());
            out.extend_from_slice(&q.max_delta.to_be_bytes());
        }
        out.extend_from_slice(&self.signed_by.to_bytes());
        if self.signed_by.to_u64() != 0 {
            out.extend_from_slice(&self.signature);
        }
    }

    /// The binary form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode(&mut v);
        v
    }

    /// The signed bytes: every qualifier triple, big-endian, nothing else.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.qualifiers.len() * 24);
        for q in &self.qualifiers {
            v.extend_from_slice(&q.id.to_be_bytes());
            v.extend_from_slice(&q.value.to_be_bytes());
            v.extend_from_slice(&q.max_delta.to_be_bytes());
        }
        v
    }

    /// Whether `signer` signed this COM and is the controller of its network.
    pub fn verify(&self, signer: &Identity) -> bool {
        self.signed_by.to_u64() != 0
            && self.signed_by == self.network_id().controller()
            && signer.address() == self.signed_by
            && self.qualifiers.len() <= MAX_QUALIFIERS
            && signer.verify(&self.signed_bytes(), &self.signature)
    }

    /// Agreement of this COM (ours) with a peer's COM and identity: every qualifier of ours is
    /// present in theirs within our max delta, and, if ours carries the identity hash (ids
    /// 3..6), theirs carries the hash of `other_identity`. spec: vl2.md §13.1
    pub fn agrees_with(&self, other: &Com, other_identity: &Identity) -> bool {
        if self.qualifiers.is_empty() || other.qualifiers.is_empty() {
            return false;
        }
        // With repeated ids, the reference keeps the last value of the peer's.
        let theirs = |id: u64| {
            other
                .qualifiers
                .iter()
                .rev()
                .find(|q| q.id == id)
                .map(|q| q.value)
        };
        let mut full_identity = false;
        for q in &self.qualifiers {
            if (3..=6).contains(&q.id) {
                full_identity = true;
            }
            let Some(b) = theirs(q.id) else {
                return false;
            };
            if q.value.abs_diff(b) > q.max_delta {
                return false;
            }
        }
        if full_identity {
            let words = identity_words(other_identity);
            for (i, w) in words.into_iter().enumerate() {
                if theirs(3 + i as u64) != Some(w) {
                    return false;
                }
            }
        }
        true
    }

    fn value(&self, id: u64) -> Option<u64> {
        self.qualifiers.iter().find(|q| q.id == id).map(|q| q.value)
    }

    /// The timestamp (qualifier 0), 0 if absent.
    pub fn timestamp(&self) -> i64 {
        self.value(ID_TIMESTAMP).unwrap_or(0) as i64
    }

    /// The timestamp's max delta (qualifier 0), 0 if absent.
    pub fn max_delta(&self) -> i64 {
        self.qualifiers
            .iter()
            .find(|q| q.id == ID_TIMESTAMP)
            .map_or(0, |q| q.max_delta as i64)
    }

    /// The network (qualifier 1), 0 if absent.
    pub fn network_id(&self) -> NetworkId {
        NetworkId(self.value(ID_NETWORK_ID).unwrap_or(0))
    }

    /// The member (qualifier 2, low 40 bits), zero if absent.
    pub fn issued_to(&self) -> Address {
        Address::new(self.value(ID_ISSUED_TO).unwrap_or(0) & 0xff_ffff_ffff).expect("masked")
    }

    /// The credential id; always 0 for COMs.
    pub fn id(&self) -> u32 {
        0
    }

    /// The qualifiers, in order.
    pub fn qualifiers(&self) -> &[Qualifier] {
        &self.qualifiers
    }

    /// The signer (zero when unsigned).
    pub fn signed_by(&self) -> Address {
        self.signed_by
    }

    /// Whether a signer is present.
    pub fn is_signed(&self) -> bool {
        self.signed_by.to_u64() != 0
    }

    /// The signature (all zero when unsigned).
    pub fn signature(&self) -> &[u8; SIGNATURE_LEN] {
        &self.signature
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credential::test_ids::id;

    const NWID: NetworkId = NetworkId(0x9cbc_6fc0_984c_4142);

    #[test]
    fn issue_verify_round_trip_and_agreement() {
        let ctl = id(0x9cbc6fc098, 1);
        let a = id(0xf6372234a7, 2);
        let b = id(0x1b56912874, 3);
        let ca = Com::issue(1_000_000, 1_800_000, NWID, &a, &ctl).unwrap();
        let cb = Com::issue(2_000_000, 1_800_000, NWID, &b, &ctl).unwrap();
        assert!(ca.verify(&ctl) && cb.verify(&ctl));
        assert!(!ca.verify(&a));
        let bytes = ca.to_bytes();
        assert_eq!(bytes.len(), 3 + 7 * 24 + 5 + 96);
        let (back, n) = Com::decode(&bytes).unwrap();
        assert_eq!((back.clone(), n), (ca.clone(), bytes.len()));
        assert_eq!(back.timestamp(), 1_000_000);
        assert_eq!(back.max_delta(), 1_800_000);
        assert_eq!(back.network_id(), NWID);
        assert_eq!(back.issued_to(), a.address());
        assert!(ca.agrees_with(&cb, &b) && cb.agrees_with(&ca, &a));
        // the peer's COM must bind the peer's identity
        assert!(!ca.agrees_with(&cb, &a));
        // timestamps too far apart
        let late = Com::issue(1_000_000 + 1_800_001, 1_800_000, NWID, &b, &ctl).unwrap();
        assert!(!ca.agrees_with(&late, &b));
        // another network
        let other = Com::issue(
            1_000_000,
            1_800_000,
            NetworkId(NWID.0 + 1),
            &b,
            &id(0x9cbc6fc098, 1),
        )
        .unwrap();
        assert!(!ca.agrees_with(&other, &b));
        // a signer that is not the controller
        let forged = Com::issue(1_000_000, 1_800_000, NWID, &a, &a).unwrap();
        assert!(!forged.verify(&a) && !forged.verify(&ctl));
        // tampering breaks the signature
        let mut t = bytes.clone();
        t[3 + 8 + 7] ^= 1;
        assert!(!Com::decode(&t).unwrap().0.verify(&ctl));
    }

    #[test]
    fn decode_rejects_bad_input() {
        let ctl = id(0x9cbc6fc098, 1);
        let bytes = Com::issue(1, 2, NWID, &ctl, &ctl).unwrap().to_bytes();
        for n in 0..bytes.len() {
            assert!(Com::decode(&bytes[..n]).is_err(), "{n}");
        }
        let mut t = bytes.clone();
        t[0] = 2;
        assert!(Com::decode(&t).is_err());
        // qualifier ids out of order
        let mut t = bytes.clone();
        t[3 + 24 + 7] = 9;
        assert!(Com::decode(&t).is_err());
        // more than 8 qualifiers
        let mut t = vec![1, 0, 9];
        t.extend_from_slice(&[0; 9 * 24 + 5]);
        assert!(matches!(
            Com::decode(&t),
            Err(CredentialError::TooMany { .. })
        ));
        // unsigned: no signature bytes follow a zero signer
        let (c, n) = Com::decode(&[1, 0, 0, 0, 0, 0, 0, 0, 0xaa]).unwrap();
        assert_eq!(n, 8);
        assert!(!c.is_signed() && !c.verify(&ctl));
        assert!(!c.agrees_with(&c, &ctl));
        assert!(
            Com::sign_qualifiers(
                vec![
                    Qualifier {
                        id: 0,
                        value: 0,
                        max_delta: 0
                    };
                    9
                ],
                &ctl
            )
            .is_err()
        );
    }
}
