//! Tag: a signed (id, value) pair held by a member. spec: vl2.md §13.3

use super::{CredentialError, read_signature, signed_envelope, skip_extra, write_signature};
use crate::address::{Address, NetworkId};
use crate::identity::Identity;
use crate::signature::SIGNATURE_LEN;
use crate::verbs::Reader;

const WHAT: &str = "tag";

/// A tag: `nwid | ts | id (4) | value (4) | issued-to (5) | signer (5) | sig type | sig len |
/// sig | extra length (2)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    network_id: NetworkId,
    timestamp: i64,
    id: u32,
    value: u32,
    issued_to: Address,
    signed_by: Address,
    signature: [u8; SIGNATURE_LEN],
}

impl Tag {
    /// A tag signed by `signer` (the network's controller).
    pub fn issue(
        nwid: NetworkId,
        timestamp: i64,
        id: u32,
        value: u32,
        issued_to: Address,
        signer: &Identity,
    ) -> Result<Tag, CredentialError> {
        let mut t = Tag {
            network_id: nwid,
            timestamp,
            id,
            value,
            issued_to,
            signed_by: signer.address(),
            signature: [0; SIGNATURE_LEN],
        };
        t.signature = signer.sign(&t.signed_bytes())?;
        Ok(t)
    }

    /// Decodes a tag at the start of `b`; returns it and the bytes consumed.
    pub fn decode(b: &[u8]) -> Result<(Tag, usize), CredentialError> {
        let mut r = Reader::new(b, WHAT);
        let t = Tag {
            network_id: NetworkId(r.u64()?),
            timestamp: r.u64()? as i64,
            id: r.u32()?,
            value: r.u32()?,
            issued_to: r.address()?,
            signed_by: r.address()?,
            signature: read_signature(&mut r)?,
        };
        skip_extra(&mut r)?;
        Ok((t, r.pos()))
    }

    fn core(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.network_id.0.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.id.to_be_bytes());
        out.extend_from_slice(&self.value.to_be_bytes());
        out.extend_from_slice(&self.issued_to.to_bytes());
        out.extend_from_slice(&self.signed_by.to_bytes());
    }

    /// Appends the binary form.
    pub fn encode(&self, out: &mut Vec<u8>) {
        self.core(out);
        write_signature(&self.signature, out);
        out.extend_from_slice(&[0, 0]);
    }

    /// The binary form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode(&mut v);
        v
    }

    /// `7f×8 | nwid | ts | id | value | issued-to | signer | 0000 | 7f×8`.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut core = Vec::new();
        self.core(&mut core);
        signed_envelope(&core)
    }

    /// Whether `signer` is the network's controller, named as the signer, and signed this tag.
    pub fn verify(&self, signer: &Identity) -> bool {
        self.signed_by.to_u64() != 0
            && self.signed_by == self.network_id.controller()
            && signer.address() == self.signed_by
            && signer.verify(&self.signed_bytes(), &self.signature)
    }

    /// Network.
    pub fn network_id(&self) -> NetworkId {
        self.network_id
    }

    /// Timestamp (ms, controller clock).
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }

    /// Tag id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Tag value.
    pub fn value(&self) -> u32 {
        self.value
    }

    /// Holder.
    pub fn issued_to(&self) -> Address {
        self.issued_to
    }

    /// Signer.
    pub fn signed_by(&self) -> Address {
        self.signed_by
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credential::test_ids::id;

    // spec: vl2.md §11.1 TAG blob layout (signature replaced)
    #[test]
    fn layout_round_trip_verify() {
        let ctl = id(0x7c55a8da82, 1);
        let nwid: NetworkId = "7c55a8da82c90312".parse().unwrap();
        let to: Address = "0a33989140".parse().unwrap();
        let t = Tag::issue(nwid, 0x1a201615d1b, 1000, 100, to, &ctl).unwrap();
        let b = t.to_bytes();
        assert_eq!(b.len(), 135);
        assert!(hex::encode(&b).starts_with(
            "7c55a8da82c90312000001a201615d1b000003e8000000640a339891407c55a8da82010060"
        ));
        assert!(hex::encode(&b).ends_with("0000"));
        let (back, n) = Tag::decode(&b).unwrap();
        assert_eq!((&back, n), (&t, 135));
        assert!(back.verify(&ctl));
        assert_eq!((back.id(), back.value(), back.issued_to()), (1000, 100, to));
        let mut x = b.clone();
        x[23] ^= 1; // value
        assert!(!Tag::decode(&x).unwrap().0.verify(&ctl));
        let mut x = b.clone();
        x[36] = 0x5f; // signature length 95
        assert!(Tag::decode(&x).is_err());
        for n in 0..b.len() {
            assert!(Tag::decode(&b[..n]).is_err());
        }
        // a signer other than the controller
        let other = id(0x1111111111, 2);
        let t = Tag::issue(nwid, 1, 1, 1, to, &other).unwrap();
        assert!(!t.verify(&other) && !t.verify(&ctl));
    }
}
