//! Certificate of ownership: the IPs and MACs a member may source. spec: vl2.md §13.5

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{CredentialError, read_signature, signed_envelope, skip_extra, write_signature};
use crate::address::{Address, NetworkId};
use crate::identity::Identity;
use crate::mac::Mac;
use crate::signature::SIGNATURE_LEN;
use crate::verbs::Reader;

/// Most things one COO lists.
pub const MAX_THINGS: usize = 16;

const WHAT: &str = "COO";
const THING_MAC: u8 = 1;
const THING_IPV4: u8 = 2;
const THING_IPV6: u8 = 3;

/// Something owned: type 1 MAC, 2 IPv4, 3 IPv6 (each in a 16-byte zero-padded value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Thing {
    /// Type 1.
    Mac(Mac),
    /// Type 2.
    Ipv4(Ipv4Addr),
    /// Type 3.
    Ipv6(Ipv6Addr),
    /// Any other type, with its raw value.
    Other {
        /// The type byte.
        kind: u8,
        /// The 16 value bytes.
        value: [u8; 16],
    },
}

impl Thing {
    fn to_raw(self) -> (u8, [u8; 16]) {
        let mut v = [0u8; 16];
        match self {
            Thing::Mac(m) => {
                v[..6].copy_from_slice(&m.0);
                (THING_MAC, v)
            }
            Thing::Ipv4(ip) => {
                v[..4].copy_from_slice(&ip.octets());
                (THING_IPV4, v)
            }
            Thing::Ipv6(ip) => (THING_IPV6, ip.octets()),
            Thing::Other { kind, value } => (kind, value),
        }
    }

    fn from_raw(kind: u8, v: &[u8; 16]) -> Thing {
        match kind {
            THING_MAC => Thing::Mac(Mac([v[0], v[1], v[2], v[3], v[4], v[5]])),
            THING_IPV4 => Thing::Ipv4(Ipv4Addr::new(v[0], v[1], v[2], v[3])),
            THING_IPV6 => Thing::Ipv6(Ipv6Addr::from(*v)),
            kind => Thing::Other { kind, value: *v },
        }
    }
}

impl From<IpAddr> for Thing {
    fn from(ip: IpAddr) -> Thing {
        match ip {
            IpAddr::V4(v4) => Thing::Ipv4(v4),
            IpAddr::V6(v6) => Thing::Ipv6(v6),
        }
    }
}

/// A certificate of ownership: `nwid | ts | flags (8) | id (4) | count (2) | count × (type (1) |
/// value (16)) | issued-to (5) | signer (5) | sig type | sig len | sig | extra length (2)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coo {
    network_id: NetworkId,
    timestamp: i64,
    flags: u64,
    id: u32,
    things: Vec<(u8, [u8; 16])>,
    issued_to: Address,
    signed_by: Address,
    signature: [u8; SIGNATURE_LEN],
}

impl Coo {
    /// A COO listing `things` (at most 16) signed by `signer` (the network's controller).
    pub fn issue(
        nwid: NetworkId,
        timestamp: i64,
        id: u32,
        things: Vec<Thing>,
        issued_to: Address,
        signer: &Identity,
    ) -> Result<Coo, CredentialError> {
        if things.len() > MAX_THINGS {
            return Err(CredentialError::TooMany {
                what: WHAT,
                field: "things",
                count: things.len(),
                max: MAX_THINGS,
            });
        }
        let mut c = Coo {
            network_id: nwid,
            timestamp,
            flags: 0,
            id,
            things: things.into_iter().map(Thing::to_raw).collect(),
            issued_to,
            signed_by: signer.address(),
            signature: [0; SIGNATURE_LEN],
        };
        c.signature = signer.sign(&c.signed_bytes())?;
        Ok(c)
    }

    /// Decodes a COO at the start of `b`; returns it and the bytes consumed. More than 16 things
    /// is an error.
    pub fn decode(b: &[u8]) -> Result<(Coo, usize), CredentialError> {
        let mut r = Reader::new(b, WHAT);
        let network_id = NetworkId(r.u64()?);
        let timestamp = r.u64()? as i64;
        let flags = r.u64()?;
        let id = r.u32()?;
        let count = usize::from(r.u16()?);
        if count > MAX_THINGS {
            return Err(CredentialError::TooMany {
                what: WHAT,
                field: "things",
                count,
                max: MAX_THINGS,
            });
        }
        let mut things = Vec::with_capacity(count);
        for _ in 0..count {
            things.push((r.u8()?, r.array()?));
        }
        let c = Coo {
            network_id,
            timestamp,
            flags,
            id,
            things,
            issued_to: r.address()?,
            signed_by: r.address()?,
            signature: read_signature(&mut r)?,
        };
        skip_extra(&mut r)?;
        Ok((c, r.pos()))
    }

    fn core(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.network_id.0.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.flags.to_be_bytes());
        out.extend_from_slice(&self.id.to_be_bytes());
        out.extend_from_slice(&(self.things.len() as u16).to_be_bytes());
        for (kind, value) in &self.things {
            out.push(*kind);
            out.extend_from_slice(value);
        }
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

    /// `7f×8 | nwid | ts | flags | id | count | things | issued-to | signer | 0000 | 7f×8`.
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

    fn owns(&self, kind: u8, v: &[u8]) -> bool {
        self.things
            .iter()
            .any(|(k, value)| *k == kind && value.starts_with(v))
    }

    /// Whether an IP of the matching type is listed. spec: vl2.md §13.5
    pub fn owns_ip(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v4) => self.owns(THING_IPV4, &v4.octets()),
            IpAddr::V6(v6) => self.owns(THING_IPV6, &v6.octets()),
        }
    }

    /// Whether a MAC thing is listed.
    pub fn owns_mac(&self, mac: Mac) -> bool {
        self.owns(THING_MAC, &mac.0)
    }

    /// The things, in order.
    pub fn things(&self) -> Vec<Thing> {
        self.things
            .iter()
            .map(|(k, v)| Thing::from_raw(*k, v))
            .collect()
    }

    /// Network.
    pub fn network_id(&self) -> NetworkId {
        self.network_id
    }

    /// Timestamp (ms, controller clock).
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }

    /// Flags (0 from 1.14).
    pub fn flags(&self) -> u64 {
        self.flags
    }

    /// COO id.
    pub fn id(&self) -> u32 {
        self.id
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

    // spec: vl2.md §11.1 COO blob layout (signature replaced)
    #[test]
    fn layout_round_trip_owns() {
        let ctl = id(0x7c55a8da82, 1);
        let nwid: NetworkId = "7c55a8da82c90312".parse().unwrap();
        let to: Address = "0a33989140".parse().unwrap();
        let ips: Vec<IpAddr> = [
            "fd7c:55a8:da82:c903:1299:930a:3398:9140",
            "fcfe:9cab:c80a:3398:9140::1",
            "fd12:3456:789a::a:3398:9141",
            "10.147.17.209",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        let c = Coo::issue(
            nwid,
            0x1a201615d1b,
            1,
            ips.iter().map(|&i| i.into()).collect(),
            to,
            &ctl,
        )
        .unwrap();
        let b = c.to_bytes();
        assert_eq!(b.len(), 209);
        let h = hex::encode(&b);
        assert!(h.starts_with(
            "7c55a8da82c90312000001a201615d1b0000000000000000000000010004\
             03fd7c55a8da82c9031299930a33989140\
             03fcfe9cabc80a33989140000000000001\
             03fd123456789a00000000000a33989141\
             020a9311d1000000000000000000000000\
             0a339891407c55a8da82010060"
        ));
        let (back, n) = Coo::decode(&b).unwrap();
        assert_eq!((&back, n), (&c, 209));
        assert!(back.verify(&ctl));
        for ip in &ips {
            assert!(back.owns_ip(*ip));
        }
        assert!(!back.owns_ip("10.147.17.208".parse().unwrap()));
        assert!(!back.owns_mac(Mac([0x0a, 0x93, 0x11, 0xd1, 0, 0])));
        assert_eq!(
            back.things()[3],
            Thing::Ipv4("10.147.17.209".parse().unwrap())
        );
        let m = Coo::issue(
            nwid,
            1,
            2,
            vec![Thing::Mac(Mac([2, 1, 2, 3, 4, 5]))],
            to,
            &ctl,
        )
        .unwrap();
        assert!(m.owns_mac(Mac([2, 1, 2, 3, 4, 5])) && !m.owns_mac(Mac([2, 1, 2, 3, 4, 6])));
        assert!(!m.owns_ip("2.1.2.3".parse().unwrap()));
        for n in 0..b.len() {
            assert!(Coo::decode(&b[..n]).is_err());
        }
        let mut x = b.clone();
        x[29] = 17; // 17 things
        assert!(matches!(
            Coo::decode(&x),
            Err(CredentialError::TooMany { .. })
        ));
        let mut x = b.clone();
        x[40] ^= 1;
        assert!(!Coo::decode(&x).unwrap().0.verify(&ctl));
        assert!(Coo::issue(nwid, 1, 2, vec![Thing::Mac(Mac::ZERO); 17], to, &ctl).is_err());
    }
}
