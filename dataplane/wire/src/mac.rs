//! Ethernet MAC addresses on a virtual network and multicast groups. spec: vl2.md §2, §3

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::address::{Address, NetworkId};

/// A 48-bit Ethernet MAC address. Ordered numerically (byte-wise, most significant first).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Mac(pub [u8; 6]);

/// Text that is not `xx:xx:xx:xx:xx:xx`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {text:?}")]
pub struct MacParseError {
    /// The offending text (truncated to 32 chars).
    pub text: String,
}

impl Mac {
    /// `ff:ff:ff:ff:ff:ff`.
    pub const BROADCAST: Mac = Mac([0xff; 6]);
    /// `00:00:00:00:00:00`.
    pub const ZERO: Mac = Mac([0; 6]);

    /// The first octet of every member MAC on `nwid`: derived from the low byte of the network
    /// id, locally administered, unicast, with 0x52 replaced by 0x32. spec: vl2.md §2.1
    pub fn first_octet(nwid: NetworkId) -> u8 {
        let first = ((nwid.0 as u8) & 0xfe) | 0x02;
        if first == 0x52 { 0x32 } else { first }
    }

    /// The MAC of node `address` on network `nwid`. spec: vl2.md §2.1
    pub fn for_member(address: Address, nwid: NetworkId) -> Mac {
        let a = address.to_bytes();
        let n = nwid.0.to_le_bytes(); // n[k] = (nwid >> 8k) & 0xff
        Mac([
            Self::first_octet(nwid),
            a[0] ^ n[1],
            a[1] ^ n[2],
            a[2] ^ n[3],
            a[3] ^ n[4],
            a[4] ^ n[5],
        ])
    }

    /// The node address a member MAC stands for (the inverse of [`Mac::for_member`]); `None` when
    /// the first octet is not the network's, i.e. the MAC is behind a bridge. spec: vl2.md §2.2
    pub fn member_address(self, nwid: NetworkId) -> Option<Address> {
        if self.0[0] != Self::first_octet(nwid) {
            return None;
        }
        let n = nwid.0.to_le_bytes();
        let m = self.0;
        Some(Address::from_bytes([
            m[1] ^ n[1],
            m[2] ^ n[2],
            m[3] ^ n[3],
            m[4] ^ n[4],
            m[5] ^ n[5],
        ]))
    }

    /// Group bit (0x01 of the first octet) set.
    pub fn is_multicast(self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// `ff:ff:ff:ff:ff:ff`.
    pub fn is_broadcast(self) -> bool {
        self == Self::BROADCAST
    }

    /// All zero.
    pub fn is_zero(self) -> bool {
        self == Self::ZERO
    }

    /// The MAC as the low 48 bits of an integer.
    pub fn to_u64(self) -> u64 {
        let m = self.0;
        u64::from_be_bytes([0, 0, m[0], m[1], m[2], m[3], m[4], m[5]])
    }

    /// The MAC from the low 48 bits of `v` (higher bits are ignored).
    pub fn from_u64(v: u64) -> Mac {
        let b = v.to_be_bytes();
        Mac([b[2], b[3], b[4], b[5], b[6], b[7]])
    }

    /// The MAC from the first 6 bytes of `b`; `None` if `b` is shorter.
    pub fn from_slice(b: &[u8]) -> Option<Mac> {
        Some(Mac(b.get(..6)?.try_into().ok()?))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mac({self})")
    }
}

impl FromStr for Mac {
    type Err = MacParseError;
    /// Parses `xx:xx:xx:xx:xx:xx` (hex digits in either case). spec: vl2.md §2.3
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || MacParseError {
            text: s.chars().take(32).collect(),
        };
        let mut m = [0u8; 6];
        let mut parts = s.split(':');
        for b in &mut m {
            let p = parts.next().ok_or_else(err)?;
            if p.len() != 2 || !p.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(err());
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(Mac(m))
    }
}

/// A multicast group: MAC and 32-bit ADI ("additional distinguishing information"). Ordered by
/// MAC, then ADI. spec: vl2.md §3
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MulticastGroup {
    /// Group MAC.
    pub mac: Mac,
    /// Additional distinguishing information (e.g. IPv4 address for ARP).
    pub adi: u32,
}

impl MulticastGroup {
    /// The broadcast group (`ff:ff:ff:ff:ff:ff`, ADI 0).
    pub const BROADCAST: MulticastGroup = MulticastGroup {
        mac: Mac::BROADCAST,
        adi: 0,
    };

    /// A group with ADI 0.
    pub fn new(mac: Mac) -> MulticastGroup {
        MulticastGroup { mac, adi: 0 }
    }

    /// The ARP group of an IPv4 address: broadcast MAC, ADI = the address. spec: vl2.md §3
    pub fn for_ipv4_arp(ip: Ipv4Addr) -> MulticastGroup {
        MulticastGroup {
            mac: Mac::BROADCAST,
            adi: u32::from(ip),
        }
    }

    /// The IPv6 solicited-node group: `33:33:ff:A[13]:A[14]:A[15]`, ADI 0. spec: vl2.md §3
    pub fn for_ipv6_solicited(ip: Ipv6Addr) -> MulticastGroup {
        let o = ip.octets();
        MulticastGroup {
            mac: Mac([0x33, 0x33, 0xff, o[13], o[14], o[15]]),
            adi: 0,
        }
    }

    /// The address-resolution group of an IP address (ARP for IPv4, solicited-node for IPv6).
    /// spec: vl2.md §3.2
    pub fn for_address_resolution(ip: IpAddr) -> MulticastGroup {
        match ip {
            IpAddr::V4(v4) => Self::for_ipv4_arp(v4),
            IpAddr::V6(v6) => Self::for_ipv6_solicited(v6),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nw(s: &str) -> NetworkId {
        s.parse().unwrap()
    }
    fn ad(s: &str) -> Address {
        s.parse().unwrap()
    }

    // spec: vl2.md §2.1 worked examples [verified]
    #[test]
    fn member_macs_of_the_spec() {
        let n = nw("7c55a8da82c90312");
        let m = Mac::for_member(ad("7c55a8da82"), n);
        assert_eq!(m.to_string(), "12:7f:9c:2a:00:2a");
        assert_eq!(m.member_address(n), Some(ad("7c55a8da82")));
        let m = Mac::for_member(ad("0a33989140"), n);
        assert_eq!(m.to_string(), "12:09:fa:1a:4b:e8");
        assert_eq!(m.member_address(n), Some(ad("0a33989140")));
        assert_eq!(Mac::first_octet(nw("7c55a8da822e39e2")), 0xe2);
        // a foreign first octet is "behind a bridge"
        assert_eq!(Mac([0x02, 0, 0, 0, 0, 1]).member_address(n), None);
    }

    #[test]
    fn first_octet_avoids_0x52() {
        assert_eq!(Mac::first_octet(NetworkId(0x52)), 0x32);
        assert_eq!(Mac::first_octet(NetworkId(0x53)), 0x32);
        assert_eq!(Mac::first_octet(NetworkId(0x50)), 0x32);
        assert_eq!(Mac::first_octet(NetworkId(0x01)), 0x02);
        assert_eq!(Mac::first_octet(NetworkId(0xff)), 0xfe);
        let n = NetworkId(0x1234_5678_9abc_de52);
        let m = Mac::for_member(ad("0102030405"), n);
        assert_eq!(m.0[0], 0x32);
        assert_eq!(m.member_address(n), Some(ad("0102030405")));
        assert!(!m.is_multicast());
    }

    #[test]
    fn text_integer_and_predicates() {
        let m: Mac = "12:7F:9c:2a:00:2a".parse().unwrap();
        assert_eq!(m.to_string(), "12:7f:9c:2a:00:2a");
        assert_eq!(m.to_u64(), 0x127f_9c2a_002a);
        assert_eq!(Mac::from_u64(0xffff_127f_9c2a_002a), m);
        for bad in [
            "",
            "12:7f:9c:2a:00",
            "12:7f:9c:2a:00:2a:00",
            "1:7f:9c:2a:00:2a",
            "zz:7f:9c:2a:00:2a",
            "+1:7f:9c:2a:00:2a",
        ] {
            assert!(bad.parse::<Mac>().is_err(), "{bad}");
        }
        assert!(Mac::BROADCAST.is_broadcast() && Mac::BROADCAST.is_multicast());
        assert!(Mac::ZERO.is_zero() && !Mac::ZERO.is_multicast());
        assert!(Mac([0x33, 0x33, 0, 0, 0, 1]).is_multicast());
        assert_eq!(Mac::from_slice(&[1, 2, 3, 4, 5]), None);
    }

    // spec: vl2.md §3 [verified]: 10.147.17.38 → broadcast MAC, ADI 177410342
    #[test]
    fn groups() {
        let g = MulticastGroup::for_ipv4_arp(Ipv4Addr::new(10, 147, 17, 38));
        assert_eq!(g.mac, Mac::BROADCAST);
        assert_eq!(g.adi, 177_410_342);
        let g = MulticastGroup::for_ipv6_solicited(
            "fd7c:55a8:da82:c903:1299:937c:55a8:da82".parse().unwrap(),
        );
        assert_eq!(g.mac.to_string(), "33:33:ff:a8:da:82");
        assert_eq!(g.adi, 0);
        let mut v = [
            MulticastGroup::BROADCAST,
            MulticastGroup::new(Mac([0x33, 0x33, 0, 0, 0, 1])),
            MulticastGroup::for_ipv4_arp(Ipv4Addr::new(10, 0, 0, 1)),
            MulticastGroup::for_ipv4_arp(Ipv4Addr::new(9, 0, 0, 1)),
        ];
        v.sort();
        assert_eq!(v[0].mac, Mac([0x33, 0x33, 0, 0, 0, 1]));
        assert_eq!(v[1], MulticastGroup::BROADCAST);
        assert_eq!(v[2].adi, 0x0900_0001);
        assert_eq!(v[3].adi, 0x0a00_0001);
    }
}
