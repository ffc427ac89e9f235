//! Network credentials: certificates of membership (COM), capabilities, tags, revocations and
//! certificates of ownership (COO), plus the NETWORK_CREDENTIALS payload that carries them.
//! spec: vl2.md §7.6, §13
//!
//! Every credential names a network and is valid only when signed by that network's controller
//! (`nwid >> 24`). Decoders are checked and never panic; `verify` checks the signer rule and the
//! signature; the `issue` constructors sign with a controller identity that has its private key.

mod capability;
mod com;
mod coo;
mod revocation;
mod tag;

pub use capability::{Capability, ChainVerdict, CustodyEntry, MAX_CUSTODY_CHAIN_LENGTH};
pub use com::{Com, MAX_QUALIFIERS, Qualifier};
pub use coo::{Coo, MAX_THINGS, Thing};
pub use revocation::Revocation;
pub use tag::Tag;

use crate::identity::IdentityError;
use crate::rules::RuleError;
use crate::signature::SIGNATURE_LEN;
use crate::verbs::{Reader, VerbError};

/// Credential type codes (used in revocations). spec: vl2.md §13
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum CredentialType {
    /// 0: none.
    Null = 0,
    /// 1: certificate of membership.
    Com = 1,
    /// 2: capability.
    Capability = 2,
    /// 3: tag.
    Tag = 3,
    /// 4: certificate of ownership.
    Coo = 4,
    /// 6: revocation.
    Revocation = 6,
}

impl CredentialType {
    /// The type for a wire code; `None` for unassigned codes (5, 7..).
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Self::Null,
            1 => Self::Com,
            2 => Self::Capability,
            3 => Self::Tag,
            4 => Self::Coo,
            6 => Self::Revocation,
            _ => return None,
        })
    }

    /// The wire code.
    pub fn as_u8(self) -> u8 {
        self as u8
    }
}

/// Errors decoding or issuing a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    /// The input ended inside the credential.
    #[error("{what}: truncated at byte {at}")]
    Truncated {
        /// Which credential.
        what: &'static str,
        /// Offset of the missing field.
        at: usize,
    },
    /// A field holds a value the format does not allow.
    #[error("{what}: invalid {field}")]
    Invalid {
        /// Which credential.
        what: &'static str,
        /// Which field.
        field: &'static str,
    },
    /// More entries than the format allows.
    #[error("{what}: {count} {field} (at most {max})")]
    TooMany {
        /// Which credential.
        what: &'static str,
        /// Which list.
        field: &'static str,
        /// How many were given.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A capability's rules do not decode.
    #[error("capability rules: {0}")]
    Rules(#[from] RuleError),
    /// Signing failed (no private key).
    #[error("signing: {0}")]
    Signing(#[from] IdentityError),
}

impl From<VerbError> for CredentialError {
    fn from(e: VerbError) -> Self {
        match e {
            VerbError::Truncated { what, at } => CredentialError::Truncated { what, at },
            VerbError::Invalid { what, field } => CredentialError::Invalid { what, field },
            VerbError::Unsupported { what, feature } => CredentialError::Invalid {
                what,
                field: feature,
            },
        }
    }
}

/// Marker that opens and closes the signed bytes of tags, capabilities, COOs and revocations.
const SIGNED_MARKER: [u8; 8] = [0x7f; 8];

/// `7f×8 | core | 0000 | 7f×8`: the signed bytes of a capability, tag, revocation or COO.
/// spec: vl2.md §13
pub(crate) fn signed_envelope(core: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(core.len() + 18);
    v.extend_from_slice(&SIGNED_MARKER);
    v.extend_from_slice(core);
    v.extend_from_slice(&[0, 0]);
    v.extend_from_slice(&SIGNED_MARKER);
    v
}

/// Reads `sig type (1) | sig len (2) | sig`: type 1 must carry 96 bytes; any other type is
/// skipped by its length and leaves an all-zero signature (which never verifies).
pub(crate) fn read_signature(r: &mut Reader<'_>) -> Result<[u8; SIGNATURE_LEN], CredentialError> {
    let kind = r.u8()?;
    let len = usize::from(r.u16()?);
    if kind == 1 {
        if len != SIGNATURE_LEN {
            return Err(r.invalid("signature length").into());
        }
        Ok(r.array()?)
    } else {
        r.take(len)?;
        Ok([0; SIGNATURE_LEN])
    }
}

/// Appends `01 | 0060 | sig`.
pub(crate) fn write_signature(sig: &[u8; SIGNATURE_LEN], out: &mut Vec<u8>) {
    out.push(1);
    out.extend_from_slice(&(SIGNATURE_LEN as u16).to_be_bytes());
    out.extend_from_slice(sig);
}

/// Skips `extra length (2) | extra` (ignored fields of newer writers).
pub(crate) fn skip_extra(r: &mut Reader<'_>) -> Result<(), CredentialError> {
    let n = usize::from(r.u16()?);
    r.take(n)?;
    Ok(())
}

type Decoder<T> = fn(&[u8]) -> Result<(T, usize), CredentialError>;

/// The NETWORK_CREDENTIALS payload: COMs, then (each section optional from the end)
/// capabilities, tags, revocations and COOs. spec: vl2.md §7.6
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkCredentials {
    /// Certificates of membership.
    pub coms: Vec<Com>,
    /// Capabilities.
    pub capabilities: Vec<Capability>,
    /// Tags.
    pub tags: Vec<Tag>,
    /// Revocations.
    pub revocations: Vec<Revocation>,
    /// Certificates of ownership.
    pub coos: Vec<Coo>,
}

impl NetworkCredentials {
    /// Decodes a payload. The COM list must end with its 0x00 terminator; the sections after it
    /// are optional from the end (missing ones are empty); a payload that ends inside a section
    /// or a credential is an error.
    pub fn decode(p: &[u8]) -> Result<Self, CredentialError> {
        let mut out = NetworkCredentials::default();
        let mut at = 0;
        loop {
            match p.get(at) {
                None => {
                    return Err(CredentialError::Truncated {
                        what: "NETWORK_CREDENTIALS",
                        at,
                    });
                }
                Some(0) => {
                    at += 1;
                    break;
                }
                Some(_) => {
                    let (c, n) = Com::decode(&p[at..])?;
                    out.coms.push(c);
                    at += n;
                }
            }
        }
        fn section<T>(
            p: &[u8],
            at: &mut usize,
            list: &mut Vec<T>,
            dec: Decoder<T>,
        ) -> Result<bool, CredentialError> {
            let Some(c) = p.get(*at..*at + 2) else {
                if *at == p.len() {
                    return Ok(false);
                }
                return Err(CredentialError::Truncated {
                    what: "NETWORK_CREDENTIALS",
                    at: *at,
                });
            };
            let count = u16::from_be_bytes([c[0], c[1]]);
            *at += 2;
            for _ in 0..count {
                let (v, n) = dec(&p[*at..])?;
                list.push(v);
                *at += n;
            }
            Ok(true)
        }
        let _ = section(p, &mut at, &mut out.capabilities, Capability::decode)?
            && section(p, &mut at, &mut out.tags, Tag::decode)?
            && section(p, &mut at, &mut out.revocations, Revocation::decode)?
            && section(p, &mut at, &mut out.coos, Coo::decode)?;
        Ok(out)
    }

    /// Appends the payload with every section (counts are truncated to 65535 entries).
    pub fn encode(&self, out: &mut Vec<u8>) {
        for c in &self.coms {
            c.encode(out);
        }
        out.push(0);
        fn count(n: usize, out: &mut Vec<u8>) {
            out.extend_from_slice(&(n.min(usize::from(u16::MAX)) as u16).to_be_bytes());
        }
        count(self.capabilities.len(), out);
        for c in self.capabilities.iter().take(usize::from(u16::MAX)) {
            c.encode(out);
        }
        count(self.tags.len(), out);
        for t in self.tags.iter().take(usize::from(u16::MAX)) {
            t.encode(out);
        }
        count(self.revocations.len(), out);
        for r in self.revocations.iter().take(usize::from(u16::MAX)) {
            r.encode(out);
        }
        count(self.coos.len(), out);
        for c in self.coos.iter().take(usize::from(u16::MAX)) {
            c.encode(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_ids::id;
    use super::*;
    use crate::address::NetworkId;

    #[test]
    fn network_credentials_sections_are_optional_from_the_end() {
        let nwid = NetworkId(0x9cbc_6fc0_984c_4142);
        let ctl = id(0x9cbc6fc098, 1);
        let m = id(0xf6372234a7, 2);
        let all = NetworkCredentials {
            coms: vec![Com::issue(1, 2, nwid, &m, &ctl).unwrap()],
            capabilities: vec![Capability::issue(nwid, 1, 5, vec![], m.address(), &ctl).unwrap()],
            tags: vec![
                Tag::issue(nwid, 1, 1, 2, m.address(), &ctl).unwrap(),
                Tag::issue(nwid, 1, 2, 3, m.address(), &ctl).unwrap(),
            ],
            revocations: vec![
                Revocation::issue(1, nwid, 0, 9, 1, m.address(), CredentialType::Com, &ctl)
                    .unwrap(),
            ],
            coos: vec![Coo::issue(nwid, 1, 1, vec![], m.address(), &ctl).unwrap()],
        };
        let mut p = Vec::new();
        all.encode(&mut p);
        assert_eq!(NetworkCredentials::decode(&p).unwrap(), all);
        // cut after each section: the rest is empty
        let com_len = all.coms[0].to_bytes().len();
        let only_com = NetworkCredentials::decode(&p[..com_len + 1]).unwrap();
        assert_eq!(only_com.coms, all.coms);
        assert!(only_com.capabilities.is_empty() && only_com.coos.is_empty());
        let cap_end = com_len + 1 + 2 + all.capabilities[0].to_bytes().len();
        let caps = NetworkCredentials::decode(&p[..cap_end]).unwrap();
        assert_eq!(caps.capabilities, all.capabilities);
        assert!(caps.tags.is_empty());
        // a bare terminator (what a member without a COM sends) and the revocation-only form
        assert_eq!(
            NetworkCredentials::decode(&[0]).unwrap(),
            NetworkCredentials::default()
        );
        let mut r = vec![0, 0, 0, 0, 0, 0, 1];
        all.revocations[0].encode(&mut r);
        r.extend_from_slice(&[0, 0]);
        let only_rev = NetworkCredentials::decode(&r).unwrap();
        assert_eq!(only_rev.revocations, all.revocations);
        // truncations are errors: no terminator, half a count, half a credential
        assert!(NetworkCredentials::decode(&[]).is_err());
        assert!(NetworkCredentials::decode(&p[..com_len]).is_err());
        assert!(NetworkCredentials::decode(&p[..com_len + 2]).is_err());
        assert!(NetworkCredentials::decode(&p[..cap_end - 1]).is_err());
    }
}

#[cfg(test)]
pub(crate) mod test_ids {
    use crate::address::Address;
    use crate::identity::{Identity, public_from_private};

    /// A signing identity with an arbitrary address (the address-derivation proof is not
    /// needed to sign or verify).
    pub(crate) fn id(address: u64, seed: u8) -> Identity {
        let private = [seed; 64];
        Identity::from_parts(
            Address::new(address).expect("40-bit address"),
            public_from_private(&private),
            Some(private),
        )
        .expect("non-reserved address")
    }
}
