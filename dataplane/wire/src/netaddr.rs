//! IPv6 addresses derived from (network id, node address): RFC4193-style /88 and 6PLANE /40,
//! the NDP-emulation lookup that inverts them, and the informational link-local form.
//! spec: vl2.md §4, §5

use std::net::Ipv6Addr;

use ipnet::Ipv6Net;

use crate::address::{Address, NetworkId};
use crate::mac::Mac;

/// Prefix length of an RFC4193-style address assignment.
pub const RFC4193_PREFIX_BITS: u8 = 88;
/// Prefix length a 6PLANE assignment is advertised with.
pub const SIXPLANE_PREFIX_BITS: u8 = 40;
/// Prefix length of the block each node owns under 6PLANE (`fcHH:HHHH:HH<address>::/80`).
pub const SIXPLANE_NODE_BITS: u8 = 80;

/// The 32-bit network hash in bytes 1..5 of a 6PLANE address: `(nwid ^ (nwid >> 32))` truncated.
/// spec: vl2.md §4.2
pub fn sixplane_hash(nwid: NetworkId) -> u32 {
    (nwid.0 ^ (nwid.0 >> 32)) as u32
}

/// `fd | nwid (8) | 99 93 | address (5)`. spec: vl2.md §4.1
pub fn rfc4193(nwid: NetworkId, address: Address) -> Ipv6Addr {
    let mut o = [0u8; 16];
    o[0] = 0xfd;
    o[1..9].copy_from_slice(&nwid.0.to_be_bytes());
    o[9] = 0x99;
    o[10] = 0x93;
    o[11..16].copy_from_slice(&address.to_bytes());
    Ipv6Addr::from(o)
}

/// [`rfc4193`] with its /88 prefix length (the form put in a config's static IPs).
pub fn rfc4193_net(nwid: NetworkId, address: Address) -> Ipv6Net {
    Ipv6Net::new(rfc4193(nwid, address), RFC4193_PREFIX_BITS).expect("88 <= 128")
}

/// The node an RFC4193-style address of `nwid` embeds; `None` if `ip` is not one.
pub fn rfc4193_owner(nwid: NetworkId, ip: Ipv6Addr) -> Option<Address> {
    let o = ip.octets();
    (o[0] == 0xfd && o[1..9] == nwid.0.to_be_bytes() && o[9] == 0x99 && o[10] == 0x93)
        .then(|| Address::from_slice(&o[11..]).expect("5 bytes"))
}

/// `fc | hash (4) | address (5) | 0 (5) | 01`. spec: vl2.md §4.2
pub fn sixplane(nwid: NetworkId, address: Address) -> Ipv6Addr {
    let mut o = [0u8; 16];
    o[0] = 0xfc;
    o[1..5].copy_from_slice(&sixplane_hash(nwid).to_be_bytes());
    o[5..10].copy_from_slice(&address.to_bytes());
    o[15] = 0x01;
    Ipv6Addr::from(o)
}

/// [`sixplane`] with its advertised /40 prefix length (the form put in a config's static IPs).
pub fn sixplane_net(nwid: NetworkId, address: Address) -> Ipv6Net {
    Ipv6Net::new(sixplane(nwid, address), SIXPLANE_PREFIX_BITS).expect("40 <= 128")
}

/// The node that owns `ip` under 6PLANE on `nwid` (any address in its /80); `None` if `ip` is
/// not in the network's 6PLANE /40.
pub fn sixplane_owner(nwid: NetworkId, ip: Ipv6Addr) -> Option<Address> {
    let o = ip.octets();
    (o[0] == 0xfc && o[1..5] == sixplane_hash(nwid).to_be_bytes())
        .then(|| Address::from_slice(&o[5..10]).expect("5 bytes"))
}

/// The node address an NDP-emulation target `target` resolves to, given one of our own static
/// IPv6 assignments `own` (§5): an rfc4193 /88 whose first 11 bytes `target` shares (embedded
/// address = bytes 11..16), or a 6PLANE /40 of `nwid` whose first 5 bytes `target` shares
/// (embedded address = bytes 5..10). The caller skips the result when it is its own address.
/// spec: vl2.md §5
pub fn ndp_emulated_owner(nwid: NetworkId, own: Ipv6Net, target: Ipv6Addr) -> Option<Address> {
    let o = own.addr().octets();
    let t = target.octets();
    if own.prefix_len() == RFC4193_PREFIX_BITS
        && o[0] == 0xfd
        && o[9] == 0x99
        && o[10] == 0x93
        && t[..11] == o[..11]
    {
        return Address::from_slice(&t[11..]);
    }
    if own.prefix_len() == SIXPLANE_PREFIX_BITS
        && o[0] == 0xfc
        && o[1..5] == sixplane_hash(nwid).to_be_bytes()
        && t[..5] == o[..5]
    {
        return Address::from_slice(&t[5..10]);
    }
    None
}

/// Whether `ip` lies in our own 6PLANE /40 or rfc4193 /88 prefix among `own` static IPs (the
/// "ipauth" rule for NDP emulation). spec: vl2.md §5, §15.5
pub fn in_own_emulated_prefix(nwid: NetworkId, own: &[Ipv6Net], ip: Ipv6Addr) -> bool {
    own.iter()
        .any(|n| ndp_emulated_owner(nwid, *n, ip).is_some())
}

/// The link-local address the OS derives from a TAP MAC (informational, not assigned by
/// ZeroTier): `fe80::` + `MAC[0]&0xfd, MAC[1], MAC[2], ff, fe, MAC[3], MAC[4], MAC[5]`.
/// spec: vl2.md §4.3
pub fn link_local(mac: Mac) -> Ipv6Addr {
    let m = mac.0;
    let mut o = [0u8; 16];
    o[0] = 0xfe;
    o[1] = 0x80;
    o[8] = m[0] & 0xfd;
    o[9] = m[1];
    o[10] = m[2];
    o[11] = 0xff;
    o[12] = 0xfe;
    o[13] = m[3];
    o[14] = m[4];
    o[15] = m[5];
    Ipv6Addr::from(o)
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

    // spec: vl2.md §4.1, §4.2 [verified]
    #[test]
    fn spec_examples() {
        let n = nw("7c55a8da82c90312");
        let a = ad("7c55a8da82");
        assert_eq!(
            rfc4193_net(n, a).to_string(),
            "fd7c:55a8:da82:c903:1299:937c:55a8:da82/88"
        );
        assert_eq!(
            sixplane_net(n, a).to_string(),
            "fcfe:9cab:c87c:55a8:da82::1/40"
        );
        assert_eq!(
            sixplane_net(nw("ff00160016000000"), a).to_string(),
            "fce9:16:7c:55a8:da82::1/40"
        );
        assert_eq!(rfc4193_owner(n, rfc4193(n, a)), Some(a));
        assert_eq!(rfc4193_owner(nw("7c55a8da82c90313"), rfc4193(n, a)), None);
        assert_eq!(sixplane_owner(n, sixplane(n, a)), Some(a));
        // anything in the node's /80 belongs to it
        let other: Ipv6Addr = "fcfe:9cab:c87c:55a8:da82:1234:5678:9abc".parse().unwrap();
        assert_eq!(sixplane_owner(n, other), Some(a));
        assert_eq!(sixplane_owner(nw("ff00160016000000"), other), None);
        assert_eq!(sixplane_owner(n, "fd00::1".parse().unwrap()), None);
    }

    #[test]
    fn ndp_lookup() {
        let n = nw("7c55a8da82c90312");
        let me = ad("7c55a8da82");
        let peer = ad("0a33989140");
        assert_eq!(
            ndp_emulated_owner(n, rfc4193_net(n, me), rfc4193(n, peer)),
            Some(peer)
        );
        assert_eq!(
            ndp_emulated_owner(n, sixplane_net(n, me), sixplane(n, peer)),
            Some(peer)
        );
        // an rfc4193 target does not match a 6plane assignment and vice versa
        assert_eq!(
            ndp_emulated_owner(n, sixplane_net(n, me), rfc4193(n, peer)),
            None
        );
        assert_eq!(
            ndp_emulated_owner(n, rfc4193_net(n, me), sixplane(n, peer)),
            None
        );
        // the prefix length must be exactly 88 / 40
        let wrong = Ipv6Net::new(rfc4193(n, me), 64).unwrap();
        assert_eq!(ndp_emulated_owner(n, wrong, rfc4193(n, peer)), None);
        assert!(in_own_emulated_prefix(
            n,
            &[sixplane_net(n, me)],
            sixplane(n, peer)
        ));
        assert!(!in_own_emulated_prefix(n, &[], sixplane(n, peer)));
    }

    #[test]
    fn link_local_form() {
        let m: Mac = "12:7f:9c:2a:00:2a".parse().unwrap();
        assert_eq!(link_local(m).to_string(), "fe80::107f:9cff:fe2a:2a");
    }
}
