//! Worlds (planets and moons): parse, verify, serialize, sign and the update rule. spec: vl1.md §7

use std::net::SocketAddr;

use crate::identity::{Identity, IdentityError};
use crate::inet::{InetAddress, InetError};
use crate::signature::{self, SIGNATURE_LEN};

/// Maximum roots in a world.
pub const MAX_ROOTS: usize = 4;
/// Maximum stable endpoints per root.
pub const MAX_ENDPOINTS: usize = 32;
/// Buffer bound for a serialized world in the reference.
pub const MAX_SERIALIZED_LEN: usize = 8480;

/// Kind of world. spec: vl1.md §7.1
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorldType {
    /// Type 1: the planet.
    Planet,
    /// Type 127: a moon.
    Moon,
}

impl WorldType {
    /// The type byte.
    pub fn byte(self) -> u8 {
        match self {
            WorldType::Planet => 1,
            WorldType::Moon => 127,
        }
    }
}

/// Errors parsing or checking a world.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WorldError {
    /// Input ended early.
    #[error("world truncated at byte {at}")]
    Truncated {
        /// Offset where more bytes were needed.
        at: usize,
    },
    /// Type byte not 1 or 127 (0 = null world is rejected too).
    #[error("unknown world type {found}")]
    BadType {
        /// The byte found.
        found: u8,
    },
    /// More than 4 roots.
    #[error("{found} roots (maximum 4)")]
    TooManyRoots {
        /// Count found.
        found: usize,
    },
    /// More than 32 endpoints for one root.
    #[error("{found} endpoints for one root (maximum 32)")]
    TooManyEndpoints {
        /// Count found.
        found: usize,
    },
    /// A root identity failed to parse.
    #[error("root identity: {0}")]
    Identity(#[from] IdentityError),
    /// An endpoint failed to parse.
    #[error("root endpoint: {0}")]
    Endpoint(#[from] InetError),
}

/// A root server: its public identity and stable endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    /// The root's public identity.
    pub identity: Identity,
    /// Its stable physical endpoints (IP/port).
    pub stable_endpoints: Vec<SocketAddr>,
}

/// A signed world.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct World {
    /// Planet or moon.
    pub kind: WorldType,
    /// World id.
    pub id: u64,
    /// Timestamp in ms; acts as the revision.
    pub timestamp: u64,
    /// The C25519 public key that must sign the next revision.
    pub updates_must_be_signed_by: [u8; 64],
    /// Signature of this revision by the previous revision's key.
    pub signature: [u8; SIGNATURE_LEN],
    /// Root servers.
    pub roots: Vec<Root>,
}

struct Reader<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WorldError> {
        let end = self.i.checked_add(n).filter(|&e| e <= self.b.len());
        let end = end.ok_or(WorldError::Truncated { at: self.i })?;
        let s = &self.b[self.i..end];
        self.i = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, WorldError> {
        Ok(self.take(1)?[0])
    }
    fn u64(&mut self) -> Result<u64, WorldError> {
        Ok(u64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
}

impl World {
    /// Parses one world at the start of `b`; returns it and the bytes consumed (OK(HELLO) carries
    /// several back to back). Moon dictionaries are skipped. spec: vl1.md §7.1
    pub fn decode(b: &[u8]) -> Result<(World, usize), WorldError> {
        let mut r = Reader { b, i: 0 };
        let kind = match r.u8()? {
            1 => WorldType::Planet,
            127 => WorldType::Moon,
            found => return Err(WorldError::BadType { found }),
        };
        let id = r.u64()?;
        let timestamp = r.u64()?;
        let updates_must_be_signed_by: [u8; 64] = r.take(64)?.try_into().expect("64 bytes");
        let signature: [u8; SIGNATURE_LEN] = r.take(SIGNATURE_LEN)?.try_into().expect("96 bytes");
        let n = usize::from(r.u8()?);
        if n > MAX_ROOTS {
            return Err(WorldError::TooManyRoots { found: n });
        }
        let mut roots = Vec::with_capacity(n);
        for _ in 0..n {
            let (identity, used) = Identity::from_binary(&b[r.i..])?;
            r.i += used;
            let e = usize::from(r.u8()?);
            if e > MAX_ENDPOINTS {
                return Err(WorldError::TooManyEndpoints { found: e });
            }
            let mut stable_endpoints = Vec::with_capacity(e);
            for _ in 0..e {
                let (a, used) = InetAddress::decode(&b[r.i..])?;
                r.i += used;
                if let Some(sa) = a.socket_addr() {
                    stable_endpoints.push(sa);
                }
            }
            roots.push(Root {
                identity: identity.to_public(),
                stable_endpoints,
            });
        }
        if kind == WorldType::Moon {
            let len = u16::from_be_bytes(r.take(2)?.try_into().expect("2 bytes"));
            r.take(usize::from(len))?;
        }
        Ok((
            World {
                kind,
                id,
                timestamp,
                updates_must_be_signed_by,
                signature,
                roots,
            },
            r.i,
        ))
    }

    fn write(&self, out: &mut Vec<u8>, for_signing: bool) {
        if for_signing {
            out.extend_from_slice(&[0x7f; 8]);
        }
        out.push(self.kind.byte());
        out.extend_from_slice(&self.id.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.updates_must_be_signed_by);
        if !for_signing {
            out.extend_from_slice(&self.signature);
        }
        out.push(self.roots.len().min(MAX_ROOTS) as u8);
        for root in self.roots.iter().take(MAX_ROOTS) {
            root.identity.write_binary(out, false);
            let n = root.stable_endpoints.len().min(MAX_ENDPOINTS);
            out.push(n as u8);
            for e in &root.stable_endpoints[..n] {
                InetAddress::Ip(*e).encode(out);
            }
        }
        if self.kind == WorldType::Moon {
            out.extend_from_slice(&[0, 0]);
        }
        if for_signing {
            out.extend_from_slice(&[0xf7; 8]);
        }
    }

    /// The binary form (moons with an empty dictionary).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.write(&mut v, false);
        v
    }

    /// The exact bytes covered by the signature. spec: vl1.md §7.2
    pub fn signed_message(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.write(&mut v, true);
        v
    }

    /// Signs this revision with the previous revision's 64-byte private key.
    pub fn sign(&mut self, previous_private: &[u8; 64]) {
        self.signature = signature::sign(previous_private, &self.signed_message());
    }

    /// Verifies the signature against a C25519 public key (the previous revision's
    /// `updates_must_be_signed_by`, or this world's own for a genesis revision).
    pub fn verify(&self, signer_public: &[u8; 64]) -> bool {
        signature::verify(signer_public, &self.signed_message(), &self.signature)
    }

    /// The update rule: whether `candidate` replaces `current`. An empty slot takes anything
    /// (start-up load); otherwise same type and id, strictly newer timestamp, and a signature by
    /// the current world's `updates_must_be_signed_by`. spec: vl1.md §7.3
    pub fn should_replace(current: Option<&World>, candidate: &World) -> bool {
        match current {
            None => true,
            Some(c) => {
                candidate.id == c.id
                    && candidate.kind == c.kind
                    && candidate.timestamp > c.timestamp
                    && candidate.verify(&c.updates_must_be_signed_by)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_round_trip_and_update_rule() {
        let mut rng = rand_core::OsRng;
        let key1 = Identity::generate(&mut rng);
        let key2 = Identity::generate(&mut rng);
        let mut w = World {
            kind: WorldType::Moon,
            id: 0x2f52c8fb18,
            timestamp: 1000,
            updates_must_be_signed_by: *key1.public_key(),
            signature: [0; 96],
            roots: vec![Root {
                identity: key2.to_public(),
                stable_endpoints: vec![
                    "10.0.0.1:9993".parse().unwrap(),
                    "[fd00::1]:9993".parse().unwrap(),
                ],
            }],
        };
        w.sign(key1.private_key().unwrap());
        assert!(w.verify(key1.public_key()));
        let bytes = w.to_bytes();
        let (back, used) = World::decode(&bytes).unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(back, w);
        let mut next = w.clone();
        next.timestamp = 2000;
        next.updates_must_be_signed_by = *key2.public_key();
        next.sign(key1.private_key().unwrap());
        assert!(World::should_replace(Some(&w), &next));
        assert!(!World::should_replace(Some(&next), &w));
        let mut forged = next.clone();
        forged.sign(key2.private_key().unwrap());
        assert!(!World::should_replace(Some(&w), &forged));
        for n in 0..bytes.len() {
            assert!(World::decode(&bytes[..n]).is_err());
        }
    }
}
