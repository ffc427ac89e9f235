//! Revocation of a member's credentials. spec: vl2.md §13.4

use super::{
    CredentialError, CredentialType, read_signature, signed_envelope, skip_extra, write_signature,
};
use crate::address::{Address, NetworkId};
use crate::identity::Identity;
use crate::signature::SIGNATURE_LEN;
use crate::verbs::Reader;

const WHAT: &str = "revocation";

/// A revocation: `0 (4) | id (4) | nwid (8) | 0 (4) | credential id (4) | threshold (8) |
/// flags (8) | target (5) | signer (5) | credential type (1) | sig type | sig len | sig |
/// extra length (2)`. The unused zero words are not kept (and sign as zero).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    id: u32,
    network_id: NetworkId,
    credential_id: u32,
    threshold: i64,
    flags: u64,
    target: Address,
    signed_by: Address,
    credential_type: u8,
    signature: [u8; SIGNATURE_LEN],
}

impl Revocation {
    /// Flag 0x1: receivers re-send it to every member they know.
    pub const FLAG_FAST_PROPAGATE: u64 = 0x1;

    /// A revocation signed by `signer` (the network's controller).
    #[allow(clippy::too_many_arguments)]
    pub fn issue(
        id: u32,
        nwid: NetworkId,
        credential_id: u32,
        threshold: i64,
        flags: u64,
        target: Address,
        credential_type: CredentialType,
        signer: &Identity,
    ) -> Result<Revocation, CredentialError> {
        let mut r = Revocation {
            id,
            network_id: nwid,
            credential_id,
            threshold,
            flags,
            target,
            signed_by: signer.address(),
            credential_type: credential_type.as_u8(),
            signature: [0; SIGNATURE_LEN],
        };
        r.signature = signer.sign(&r.signed_bytes())?;
        Ok(r)
    }

    /// Decodes a revocation at the start of `b`; returns it and the bytes consumed.
    pub fn decode(b: &[u8]) -> Result<(Revocation, usize), CredentialError> {
        let mut r = Reader::new(b, WHAT);
        r.take(4)?;
        let id = r.u32()?;
        let network_id = NetworkId(r.u64()?);
        r.take(4)?;
        let v = Revocation {
            id,
            network_id,
            credential_id: r.u32()?,
            threshold: r.u64()? as i64,
            flags: r.u64()?,
            target: r.address()?,
            signed_by: r.address()?,
            credential_type: r.u8()?,
            signature: read_signature(&mut r)?,
        };
        skip_extra(&mut r)?;
        Ok((v, r.pos()))
    }

    fn core(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&self.id.to_be_bytes());
        out.extend_from_slice(&self.network_id.0.to_be_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&self.credential_id.to_be_bytes());
        out.extend_from_slice(&self.threshold.to_be_bytes());
        out.extend_from_slice(&self.flags.to_be_bytes());
        out.extend_from_slice(&self.target.to_bytes());
        out.extend_from_slice(&self.signed_by.to_bytes());
        out.push(self.credential_type);
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

    /// `7f×8 | 0 | id | nwid | 0 | credential id | threshold | flags | target | signer | type |
    /// 0000 | 7f×8`.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut core = Vec::new();
        self.core(&mut core);
        signed_envelope(&core)
    }

    /// Whether `signer` is the network's controller, named as the signer, and signed this.
    pub fn verify(&self, signer: &Identity) -> bool {
        self.signed_by.to_u64() != 0
            && self.signed_by == self.network_id.controller()
            && signer.address() == self.signed_by
            && signer.verify(&self.signed_bytes(), &self.signature)
    }

    /// Revocation id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Network.
    pub fn network_id(&self) -> NetworkId {
        self.network_id
    }

    /// Id of the revoked credential (0 for COMs).
    pub fn credential_id(&self) -> u32 {
        self.credential_id
    }

    /// Credentials with a timestamp at or below this are revoked.
    pub fn threshold(&self) -> i64 {
        self.threshold
    }

    /// Flags ([`Revocation::FLAG_FAST_PROPAGATE`]).
    pub fn flags(&self) -> u64 {
        self.flags
    }

    /// Whether the fast-propagate flag is set.
    pub fn fast_propagate(&self) -> bool {
        self.flags & Self::FLAG_FAST_PROPAGATE != 0
    }

    /// The member whose credentials are revoked.
    pub fn target(&self) -> Address {
        self.target
    }

    /// Signer.
    pub fn signed_by(&self) -> Address {
        self.signed_by
    }

    /// The revoked credential type; `None` for an unassigned code.
    pub fn credential_type(&self) -> Option<CredentialType> {
        CredentialType::from_u8(self.credential_type)
    }

    /// The revoked credential type's wire code.
    pub fn credential_type_raw(&self) -> u8 {
        self.credential_type
    }

    /// Revocations are recorded against their target.
    pub fn issued_to(&self) -> Address {
        self.target
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credential::test_ids::id;

    #[test]
    fn layout_round_trip_verify() {
        let ctl = id(0x9cbc6fc098, 1);
        let nwid = NetworkId(0x9cbc_6fc0_984c_4142);
        let target: Address = "f6372234a7".parse().unwrap();
        let r = Revocation::issue(
            0xdead_beef,
            nwid,
            0,
            1234,
            1,
            target,
            CredentialType::Com,
            &ctl,
        )
        .unwrap();
        let b = r.to_bytes();
        assert_eq!(b.len(), 4 + 4 + 8 + 4 + 4 + 8 + 8 + 5 + 5 + 1 + 3 + 96 + 2);
        assert_eq!(
            hex::encode(&b[..51]),
            "00000000deadbeef9cbc6fc0984c41420000000000000000\
             00000000000004d20000000000000001f6372234a79cbc6fc09801"
        );
        let (back, n) = Revocation::decode(&b).unwrap();
        assert_eq!((&back, n), (&r, b.len()));
        assert!(back.verify(&ctl));
        assert!(back.fast_propagate());
        assert_eq!(back.credential_type(), Some(CredentialType::Com));
        assert_eq!(back.threshold(), 1234);
        // the unused words are not signed as received: a non-zero word still verifies as zero
        let mut x = b.clone();
        x[0] = 1;
        let (odd, _) = Revocation::decode(&x).unwrap();
        assert!(odd.verify(&ctl));
        assert_eq!(odd.to_bytes(), b);
        let mut x = b.clone();
        x[31] ^= 1; // threshold
        assert!(!Revocation::decode(&x).unwrap().0.verify(&ctl));
        for n in 0..b.len() {
            assert!(Revocation::decode(&b[..n]).is_err());
        }
        assert_eq!(CredentialType::from_u8(5), None);
        for t in [0u8, 1, 2, 3, 4, 6] {
            assert_eq!(CredentialType::from_u8(t).unwrap().as_u8(), t);
        }
    }
}
