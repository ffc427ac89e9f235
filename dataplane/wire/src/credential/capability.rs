//! Capability: a signed rule set with a chain of custody. spec: vl2.md §13.2

use super::{CredentialError, read_signature, signed_envelope, skip_extra, write_signature};
use crate::address::{Address, NetworkId};
use crate::identity::Identity;
use crate::rules::{self, MAX_CAPABILITY_RULES, Rule};
use crate::signature::SIGNATURE_LEN;
use crate::verbs::Reader;

/// Longest chain of custody.
pub const MAX_CUSTODY_CHAIN_LENGTH: u8 = 7;

const WHAT: &str = "capability";

/// One custody transfer: `from` handed the capability to `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustodyEntry {
    /// Recipient.
    pub to: Address,
    /// Signer.
    pub from: Address,
    /// Signature by `from` over the capability's signed bytes (all zero if the entry carried a
    /// signature type other than 1).
    pub signature: [u8; SIGNATURE_LEN],
}

/// Outcome of checking a chain of custody.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainVerdict {
    /// Every entry is in order and signed.
    Valid,
    /// Broken chain, wrong first signer or a bad signature.
    Invalid,
    /// The identity of this signer is needed to go on.
    NeedIdentity(Address),
}

/// A capability: `nwid | ts | id | rule count (2) | rules | max custody length (1) | custody
/// entries | 5 zero bytes | extra length (2)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capability {
    network_id: NetworkId,
    timestamp: i64,
    id: u32,
    rules: Vec<Rule>,
    max_custody_chain_length: u8,
    custody: Vec<CustodyEntry>,
}

impl Capability {
    /// A capability as the 1.14 controller issues it: max custody length 1, one entry from
    /// `signer` (the controller) to `issued_to`.
    pub fn issue(
        nwid: NetworkId,
        timestamp: i64,
        id: u32,
        rules: Vec<Rule>,
        issued_to: Address,
        signer: &Identity,
    ) -> Result<Capability, CredentialError> {
        let mut c = Capability::unsigned(nwid, timestamp, id, rules, 1)?;
        c.transfer(signer, issued_to)?;
        Ok(c)
    }

    /// A capability with no custody entries yet (see [`Capability::transfer`]).
    pub fn unsigned(
        nwid: NetworkId,
        timestamp: i64,
        id: u32,
        rules: Vec<Rule>,
        max_custody_chain_length: u8,
    ) -> Result<Capability, CredentialError> {
        if rules.len() > MAX_CAPABILITY_RULES {
            return Err(CredentialError::TooMany {
                what: WHAT,
                field: "rules",
                count: rules.len(),
                max: MAX_CAPABILITY_RULES,
            });
        }
        if !(1..=MAX_CUSTODY_CHAIN_LENGTH).contains(&max_custody_chain_length) {
            return Err(CredentialError::Invalid {
                what: WHAT,
                field: "max custody chain length",
            });
        }
        Ok(Capability {
            network_id: nwid,
            timestamp,
            id,
            rules,
            max_custody_chain_length,
            custody: Vec::new(),
        })
    }

    /// Appends a custody entry from `from` (who signs) to `to`; fails when the chain is full.
    pub fn transfer(&mut self, from: &Identity, to: Address) -> Result<(), CredentialError> {
        if self.custody.len() >= usize::from(self.max_custody_chain_length) {
            return Err(CredentialError::TooMany {
                what: WHAT,
                field: "custody entries",
                count: self.custody.len() + 1,
                max: usize::from(self.max_custody_chain_length),
            });
        }
        if to.to_u64() == 0 {
            return Err(CredentialError::Invalid {
                what: WHAT,
                field: "custody recipient",
            });
        }
        let signature = from.sign(&self.signed_bytes())?;
        self.custody.push(CustodyEntry {
            to,
            from: from.address(),
            signature,
        });
        Ok(())
    }

    /// Decodes a capability at the start of `b`; returns it and the bytes consumed.
    pub fn decode(b: &[u8]) -> Result<(Capability, usize), CredentialError> {
        let mut r = Reader::new(b, WHAT);
        let network_id = NetworkId(r.u64()?);
        let timestamp = r.u64()? as i64;
        let id = r.u32()?;
        let count = usize::from(r.u16()?);
        if count > MAX_CAPABILITY_RULES {
            return Err(CredentialError::TooMany {
                what: WHAT,
                field: "rules",
                count,
                max: MAX_CAPABILITY_RULES,
            });
        }
        let (rules, n) = rules::decode_counted(&b[r.pos()..], count)?;
        r.take(n)?;
        let max_custody_chain_length = r.u8()?;
        if !(1..=MAX_CUSTODY_CHAIN_LENGTH).contains(&max_custody_chain_length) {
            return Err(r.invalid("max custody chain length").into());
        }
        let mut custody = Vec::new();
        loop {
            let to = r.address()?;
            if to.to_u64() == 0 {
                break;
            }
            if custody.len() >= usize::from(max_custody_chain_length) {
                return Err(r.invalid("custody chain length").into());
            }
            let from = r.address()?;
            let signature = read_signature(&mut r)?;
            custody.push(CustodyEntry {
                to,
                from,
                signature,
            });
        }
        skip_extra(&mut r)?;
        Ok((
            Capability {
                network_id,
                timestamp,
                id,
                rules,
                max_custody_chain_length,
                custody,
            },
            r.pos(),
        ))
    }

    fn core(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.network_id.0.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.id.to_be_bytes());
        out.extend_from_slice(&(self.rules.len() as u16).to_be_bytes());
        rules::encode_all(&self.rules, out);
        out.push(self.max_custody_chain_length);
    }

    /// Appends the binary form.
    pub fn encode(&self, out: &mut Vec<u8>) {
        self.core(out);
        for e in &self.custody {
            out.extend_from_slice(&e.to.to_bytes());
            out.extend_from_slice(&e.from.to_bytes());
            write_signature(&e.signature, out);
        }
        out.extend_from_slice(&[0; 5]);
        out.extend_from_slice(&[0, 0]);
    }

    /// The binary form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode(&mut v);
        v
    }

    /// The bytes every custody entry signs: `7f×8 | nwid | ts | id | rule count | rules | max
    /// custody length | 0000 | 7f×8`.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut core = Vec::new();
        self.core(&mut core);
        signed_envelope(&core)
    }

    /// Checks the chain of custody: entry 0 from the network's controller, each later entry from
    /// the previous recipient, every signature by its `from` (looked up with `lookup`).
    pub fn verify_chain(
        &self,
        mut lookup: impl FnMut(Address) -> Option<Identity>,
    ) -> ChainVerdict {
        if !(1..=MAX_CUSTODY_CHAIN_LENGTH).contains(&self.max_custody_chain_length)
            || self.custody.len() > usize::from(self.max_custody_chain_length)
        {
            return ChainVerdict::Invalid;
        }
        let Some(first) = self.custody.first() else {
            return ChainVerdict::Invalid;
        };
        if first.from != self.network_id.controller() {
            return ChainVerdict::Invalid;
        }
        let signed = self.signed_bytes();
        for (i, e) in self.custody.iter().enumerate() {
            if i > 0 && (e.from.to_u64() == 0 || e.from != self.custody[i - 1].to) {
                return ChainVerdict::Invalid;
            }
            let Some(signer) = lookup(e.from) else {
                return ChainVerdict::NeedIdentity(e.from);
            };
            if signer.address() != e.from || !signer.verify(&signed, &e.signature) {
                return ChainVerdict::Invalid;
            }
        }
        ChainVerdict::Valid
    }

    /// Whether the chain is valid with `signer` (the network's controller) as the only identity
    /// known; a chain that continues past the controller needs [`Capability::verify_chain`].
    pub fn verify(&self, signer: &Identity) -> bool {
        self.verify_chain(|a| (a == signer.address()).then(|| signer.clone()))
            == ChainVerdict::Valid
    }

    /// Network.
    pub fn network_id(&self) -> NetworkId {
        self.network_id
    }

    /// Timestamp (ms, controller clock).
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }

    /// Capability id (also the evaluation order, ascending).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The rules.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Max custody chain length (1..=7).
    pub fn max_custody_chain_length(&self) -> u8 {
        self.max_custody_chain_length
    }

    /// Custody entries, first (from the controller) first.
    pub fn custody(&self) -> &[CustodyEntry] {
        &self.custody
    }

    /// The holder: `to` of the last custody entry (zero if none).
    pub fn issued_to(&self) -> Address {
        self.custody.last().map_or_else(Address::default, |e| e.to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credential::test_ids::id;
    use crate::rules::RuleKind;

    const NWID: NetworkId = NetworkId(0x7c55_a8da_82c9_0312);

    fn ssh_rules() -> Vec<Rule> {
        vec![
            Rule::new(RuleKind::IpProtocol(6)),
            Rule::new(RuleKind::DestPortRange { start: 22, end: 22 }),
            Rule::new(RuleKind::Accept),
        ]
    }

    // spec: vl2.md §11.1 CAP blob layout (signature replaced)
    #[test]
    fn layout_of_the_spec_example() {
        let ctl = id(0x7c55a8da82, 1);
        let member: Address = "0a33989140".parse().unwrap();
        let c = Capability::issue(NWID, 0x1a201615d1b, 1000, ssh_rules(), member, &ctl).unwrap();
        let b = c.to_bytes();
        assert_eq!(b.len(), 150);
        let h = hex::encode(&b);
        assert!(h.starts_with(
            "7c55a8da82c90312000001a201615d1b000003e80003240106280400160016010001\
             0a339891407c55a8da82010060"
        ));
        assert!(h.ends_with("00000000000000"));
        assert!(c.verify(&ctl));
        let (back, n) = Capability::decode(&b).unwrap();
        assert_eq!((&back, n), (&c, b.len()));
        assert_eq!(back.issued_to(), member);
        assert_eq!(back.rules(), &ssh_rules()[..]);
        assert_eq!(
            hex::encode(c.signed_bytes()),
            "7f7f7f7f7f7f7f7f7c55a8da82c90312000001a201615d1b000003e800032401062804001600160100\
             0100007f7f7f7f7f7f7f7f"
        );
        for n in 0..b.len() {
            assert!(Capability::decode(&b[..n]).is_err(), "{n}");
        }
    }

    #[test]
    fn custody_chains() {
        let ctl = id(0x7c55a8da82, 1);
        let a = id(0x0a33989140, 2);
        let b = id(0x0b33989140, 3);
        let lookup = |x: Address| {
            [&ctl, &a, &b]
                .into_iter()
                .find(|i| i.address() == x)
                .cloned()
        };
        let mut c = Capability::unsigned(NWID, 5, 7, ssh_rules(), 3).unwrap();
        assert_eq!(c.verify_chain(lookup), ChainVerdict::Invalid); // no entries
        c.transfer(&ctl, a.address()).unwrap();
        c.transfer(&a, b.address()).unwrap();
        assert_eq!(c.verify_chain(lookup), ChainVerdict::Valid);
        assert_eq!(c.issued_to(), b.address());
        // the controller alone cannot check a's entry
        assert!(!c.verify(&ctl));
        assert_eq!(
            c.verify_chain(|x| (x == ctl.address()).then(|| ctl.clone())),
            ChainVerdict::NeedIdentity(a.address())
        );
        let (back, _) = Capability::decode(&c.to_bytes()).unwrap();
        assert_eq!(back.verify_chain(lookup), ChainVerdict::Valid);
        // a break in the chain
        let mut bad = Capability::unsigned(NWID, 5, 7, ssh_rules(), 3).unwrap();
        bad.transfer(&ctl, a.address()).unwrap();
        bad.transfer(&b, a.address()).unwrap();
        assert_eq!(bad.verify_chain(lookup), ChainVerdict::Invalid);
        // first entry not from the controller
        let notctl = Capability::issue(NWID, 5, 7, ssh_rules(), b.address(), &a).unwrap();
        assert!(!notctl.verify(&a) && !notctl.verify(&ctl));
        // the chain is full
        let mut full = Capability::issue(NWID, 5, 7, vec![], a.address(), &ctl).unwrap();
        assert!(full.transfer(&a, b.address()).is_err());
        // more entries than the max length on the wire
        let mut wire = c.to_bytes();
        let at = wire.len() - 7 - 2 * 109 - 1;
        wire[at] = 1;
        assert!(Capability::decode(&wire).is_err());
    }

    #[test]
    fn limits_and_odd_signature_types() {
        let ctl = id(0x7c55a8da82, 1);
        let rules = vec![Rule::new(RuleKind::Accept); 65];
        assert!(Capability::issue(NWID, 0, 0, rules, ctl.address(), &ctl).is_err());
        let c = Capability::issue(NWID, 0, 0, vec![], ctl.address(), &ctl).unwrap();
        let mut b = c.to_bytes();
        b[20] = 0;
        b[21] = 65; // rule count 65
        assert!(matches!(
            Capability::decode(&b),
            Err(CredentialError::TooMany { .. })
        ));
        let mut b = c.to_bytes();
        b[22] = 0; // max custody length 0
        assert!(Capability::decode(&b).is_err());
        // a custody entry with signature type 2 is skipped by its length
        let mut b = c.to_bytes();
        b[33] = 2;
        let (odd, n) = Capability::decode(&b).unwrap();
        assert_eq!(n, b.len());
        assert_eq!(odd.custody()[0].signature, [0; 96]);
        assert!(!odd.verify(&ctl));
        // extra fields are skipped
        let mut b = c.to_bytes();
        let l = b.len();
        b[l - 1] = 3;
        b.extend_from_slice(&[9, 9, 9, 0xee]);
        assert_eq!(Capability::decode(&b).unwrap().1, l + 3);
    }
}
