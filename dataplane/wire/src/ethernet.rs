//! Ethernet frame helpers for the VL2 tap path: the ARP ADI rule, IPv6 NDP emulation and the
//! derived IPv6 addresses. spec: vl2.md §3.1, §4, §5
//!
//! Every function taking frame bytes is total: a short or malformed frame gives `None`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::address::{Address, NetworkId};
use crate::mac::Mac;
use crate::netaddr;
use ipnet::Ipv6Net;

const ETHERTYPE_ARP: u16 = 0x0806;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const HEADER: usize = 14;
/// Length of the neighbor advertisement IPv6 packet injected by NDP emulation. spec: vl2.md §5
pub const NEIGHBOR_ADVERTISEMENT_LEN: usize = 72;

/// Destination MAC, ethertype and payload of a whole Ethernet frame.
fn split(frame: &[u8]) -> Option<([u8; 6], u16, &[u8])> {
    let (h, payload) = frame.split_at_checked(HEADER)?;
    let dest: [u8; 6] = h[..6].try_into().ok()?;
    Some((dest, u16::from_be_bytes([h[12], h[13]]), payload))
}

/// The ARP request target of a broadcast ARP request, which selects the multicast group's ADI
/// (vl2.md §3.1): destination ff:ff:ff:ff:ff:ff, ethertype 0x0806, ARP body ≥ 28 bytes with
/// ptype IPv4, hlen 6, plen 4 and operation 1; the target protocol address (bytes 24..28).
pub fn arp_request_target(frame: &[u8]) -> Option<Ipv4Addr> {
    let (dest, ethertype, arp) = split(frame)?;
    if dest != [0xff; 6] || ethertype != ETHERTYPE_ARP || arp.len() < 28 {
        return None;
    }
    if arp[2..4] != [0x08, 0x00] || arp[4] != 6 || arp[5] != 4 || arp[7] != 0x01 {
        return None;
    }
    Some(Ipv4Addr::new(arp[24], arp[25], arp[26], arp[27]))
}

/// The target of an IPv6 neighbor solicitation that triggers NDP emulation (vl2.md §5):
/// multicast destination MAC, ethertype 0x86dd, at least 64 payload bytes, next header 0x3a
/// (payload byte 6) and ICMPv6 type 135 (payload byte 40); the target is payload bytes 48..64.
pub fn ndp_solicitation_target(frame: &[u8]) -> Option<Ipv6Addr> {
    let (dest, ethertype, ip) = split(frame)?;
    if dest[0] & 0x01 == 0 || ethertype != ETHERTYPE_IPV6 || ip.len() < 64 {
        return None;
    }
    if ip[6] != 0x3a || ip[40] != 135 {
        return None;
    }
    let t: [u8; 16] = ip[48..64].try_into().ok()?;
    Some(Ipv6Addr::from(t))
}

/// `ip/bits` as an IPv6 network (IPv4 or a bad length: an error).
fn own_net(ip: IpAddr, bits: u8) -> Result<Ipv6Net, ()> {
    match ip {
        IpAddr::V6(v6) => Ipv6Net::new(v6, bits).map_err(|_| ()),
        IpAddr::V4(_) => Err(()),
    }
}

/// Who NDP emulation says owns a solicited address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NdpOwner {
    /// The node embedded in the solicited address (never ourselves).
    pub address: Address,
    /// Our own static IP that matched; the advertisement is addressed to it.
    pub own_ip: Ipv6Addr,
}

/// Whether NDP emulation answers a solicitation for `target` (vl2.md §5): the first of our
/// static IPs (`(ip, netmask bits)`, config order; IPv4 ignored) that is an rfc4193 /88 sharing
/// `target`'s first 11 bytes, or a 6plane /40 of this network sharing its first 5 bytes, yields
/// the embedded node address. `None` if nothing matches or the embedded node is ourselves.
pub fn ndp_emulated_owner(
    target: Ipv6Addr,
    own_static_ips: &[(IpAddr, u8)],
    nwid: NetworkId,
    own_address: Address,
) -> Option<NdpOwner> {
    for (ip, bits) in own_static_ips {
        let (IpAddr::V6(own), Ok(net)) = (ip, own_net(*ip, *bits)) else {
            continue;
        };
        if let Some(e) = netaddr::ndp_emulated_owner(nwid, net, target) {
            if e == own_address {
                return None;
            }
            return Some(NdpOwner {
                address: e,
                own_ip: *own,
            });
        }
    }
    None
}

/// The one's-complement sum of `data` as 16-bit big-endian words (odd tail padded with 0).
fn ones_sum(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for w in &mut chunks {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [b] = chunks.remainder() {
        sum += u32::from(*b) << 8;
    }
    sum
}

fn fold(mut sum: u32) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The ICMPv6 checksum of `icmp` (its checksum field zeroed or not, it is skipped) between
/// `src` and `dst`: pseudo-header (src, dst, 32-bit length, 3 zero bytes, next header 58).
fn icmpv6_checksum(src: &Ipv6Addr, dst: &Ipv6Addr, icmp: &[u8]) -> u16 {
    let mut sum = ones_sum(0, &src.octets());
    sum = ones_sum(sum, &dst.octets());
    // ICMPv6 messages here are tiny; the length fits 32 bits.
    sum = ones_sum(sum, &(icmp.len() as u32).to_be_bytes());
    sum = ones_sum(sum, &[0, 0, 0, 0x3a]);
    sum = ones_sum(sum, &icmp[..2]);
    sum = ones_sum(sum, &icmp[4..]);
    fold(sum)
}

/// The Ethernet frame NDP emulation injects into the tap: `dst_mac ‖ src_mac ‖ 86dd` and the
/// 72-byte IPv6 neighbor advertisement of vl2.md §5 (source = target, destination = `dest_ip`,
/// hop limit 255, Solicited + Override, target link-layer address option = `src_mac`).
/// `src_mac` is MAC(owner, nwid); `dst_mac` the soliciting host's MAC; `dest_ip` our matched
/// static IP ([`NdpOwner::own_ip`]).
pub fn build_neighbor_advertisement(
    target: Ipv6Addr,
    dest_ip: Ipv6Addr,
    src_mac: Mac,
    dst_mac: Mac,
) -> Vec<u8> {
    let mut f = Vec::with_capacity(HEADER + NEIGHBOR_ADVERTISEMENT_LEN);
    f.extend_from_slice(&dst_mac.0);
    f.extend_from_slice(&src_mac.0);
    f.extend_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
    // IPv6 header: version 6, payload length 32, next header 58, hop limit 255
    f.extend_from_slice(&[0x60, 0, 0, 0, 0x00, 0x20, 0x3a, 0xff]);
    f.extend_from_slice(&target.octets());
    f.extend_from_slice(&dest_ip.octets());
    let icmp_at = f.len();
    // type 136, code 0, checksum (later), flags Solicited + Override
    f.extend_from_slice(&[0x88, 0x00, 0x00, 0x00, 0x60, 0x00, 0x00, 0x00]);
    f.extend_from_slice(&target.octets());
    // option: target link-layer address (type 2, length 1 × 8 bytes)
    f.extend_from_slice(&[0x02, 0x01]);
    f.extend_from_slice(&src_mac.0);
    let sum = icmpv6_checksum(&target, &dest_ip, &f[icmp_at..]);
    f[icmp_at + 2..icmp_at + 4].copy_from_slice(&sum.to_be_bytes());
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nwid(s: &str) -> NetworkId {
        s.parse().unwrap()
    }
    fn addr(s: &str) -> Address {
        s.parse().unwrap()
    }

    /// MAC(address, nwid), vl2.md §2.1 (a test-side copy; the real one lives with `Mac`).
    fn node_mac(a: Address, n: NetworkId) -> Mac {
        let nb = n.0.to_le_bytes();
        let mut first = (nb[0] & 0xfe) | 0x02;
        if first == 0x52 {
            first = 0x32;
        }
        let ab = a.to_bytes();
        Mac([
            first,
            ab[0] ^ nb[1],
            ab[1] ^ nb[2],
            ab[2] ^ nb[3],
            ab[3] ^ nb[4],
            ab[4] ^ nb[5],
        ])
    }

    // spec: vl2.md §4.1, §4.2 [verified] examples
    #[test]
    fn derived_addresses_match_the_spec_examples() {
        let n = nwid("7c55a8da82c90312");
        let a = addr("7c55a8da82");
        assert_eq!(
            netaddr::rfc4193(n, a),
            "fd7c:55a8:da82:c903:1299:937c:55a8:da82"
                .parse::<Ipv6Addr>()
                .unwrap()
        );
        assert_eq!(
            netaddr::sixplane(n, a),
            "fcfe:9cab:c87c:55a8:da82::1".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(
            netaddr::sixplane(nwid("ff00160016000000"), a),
            "fce9:16:7c:55a8:da82::1".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(
            node_mac(a, n),
            Mac([0x12, 0x7f, 0x9c, 0x2a, 0x00, 0x2a]),
            "vl2.md §2.1 example"
        );
    }

    fn arp_frame(dest: [u8; 6], op: u8, target: [u8; 4]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&dest);
        f.extend_from_slice(&[2, 1, 2, 3, 4, 5]);
        f.extend_from_slice(&[0x08, 0x06]);
        f.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, op]);
        f.extend_from_slice(&[2, 1, 2, 3, 4, 5, 10, 0, 0, 1]);
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&target);
        f
    }

    // spec: vl2.md §3.1
    #[test]
    fn arp_requests_give_their_target() {
        let f = arp_frame([0xff; 6], 1, [10, 147, 17, 38]);
        assert_eq!(arp_request_target(&f), Some(Ipv4Addr::new(10, 147, 17, 38)));
        // a reply, a unicast request, a truncated frame, a wrong ptype
        assert_eq!(arp_request_target(&arp_frame([0xff; 6], 2, [1; 4])), None);
        assert_eq!(arp_request_target(&arp_frame([2; 6], 1, [1; 4])), None);
        assert_eq!(arp_request_target(&f[..41]), None);
        let mut g = f.clone();
        g[16] = 0x86;
        assert_eq!(arp_request_target(&g), None);
        assert_eq!(arp_request_target(&[]), None);
    }

    fn ns_frame(target: Ipv6Addr) -> Vec<u8> {
        let src: Ipv6Addr = "fd7c:55a8:da82:c903:1299:930a:3398:9140".parse().unwrap();
        let t = target.octets();
        let dst = Ipv6Addr::new(
            0xff02,
            0,
            0,
            0,
            0,
            1,
            0xff00 | u16::from(t[13]),
            u16::from_be_bytes([t[14], t[15]]),
        );
        let mut icmp = vec![135, 0, 0, 0, 0, 0, 0, 0];
        icmp.extend_from_slice(&t);
        icmp.extend_from_slice(&[1, 1, 0x12, 0x09, 0xfa, 0x1a, 0x4b, 0xe8]);
        let b = etherparse::PacketBuilder::ethernet2(
            [0x12, 9, 0xfa, 0x1a, 0x4b, 0xe8],
            [0x33, 0x33, 0xff, t[13], t[14], t[15]],
        )
        .ipv6(src.octets(), dst.octets(), 255)
        .icmpv6(etherparse::Icmpv6Type::Unknown {
            type_u8: 135,
            code_u8: 0,
            bytes5to8: [0; 4],
        });
        let mut out = Vec::new();
        b.write(&mut out, &icmp[8..]).unwrap();
        out
    }

    // spec: vl2.md §5 trigger
    #[test]
    fn neighbor_solicitations_give_their_target() {
        let t: Ipv6Addr = "fd7c:55a8:da82:c903:1299:937c:55a8:da82".parse().unwrap();
        let f = ns_frame(t);
        assert_eq!(ndp_solicitation_target(&f), Some(t));
        let mut g = f.clone();
        g[0] = 0x12; // unicast destination
        assert_eq!(ndp_solicitation_target(&g), None);
        let mut g = f.clone();
        g[14 + 40] = 136; // an advertisement
        assert_eq!(ndp_solicitation_target(&g), None);
        assert_eq!(ndp_solicitation_target(&f[..14 + 63]), None);
    }

    #[test]
    fn emulated_owner_matches_rfc4193_and_6plane() {
        let n = nwid("7c55a8da82c90312");
        let me = addr("0a33989140");
        let peer = addr("7c55a8da82");
        let own_rfc = netaddr::rfc4193(n, me);
        let own_6p = netaddr::sixplane(n, me);
        let ips = [
            (IpAddr::V4(Ipv4Addr::new(10, 147, 17, 38)), 24),
            (IpAddr::V6(own_rfc), 88),
            (IpAddr::V6(own_6p), 40),
        ];
        let want = |own_ip| {
            Some(NdpOwner {
                address: peer,
                own_ip,
            })
        };
        assert_eq!(
            ndp_emulated_owner(netaddr::rfc4193(n, peer), &ips, n, me),
            want(own_rfc)
        );
        // any address of the peer's 6plane /80 belongs to the peer
        let mut t = netaddr::sixplane(n, peer).octets();
        t[12] = 0xab;
        t[15] = 0x77;
        assert_eq!(
            ndp_emulated_owner(Ipv6Addr::from(t), &ips, n, me),
            want(own_6p)
        );
        // ourselves, a foreign prefix, a wrong netmask
        assert_eq!(ndp_emulated_owner(own_rfc, &ips, n, me), None);
        assert_eq!(
            ndp_emulated_owner(netaddr::sixplane(n, me), &ips, n, me),
            None
        );
        let other: Ipv6Addr = "2001:db8::1".parse().unwrap();
        assert_eq!(ndp_emulated_owner(other, &ips, n, me), None);
        let wrong_bits = [(IpAddr::V6(own_rfc), 64)];
        assert_eq!(
            ndp_emulated_owner(netaddr::rfc4193(n, peer), &wrong_bits, n, me),
            None
        );
        // a 6plane prefix of another network does not count
        let foreign = [(
            IpAddr::V6(netaddr::sixplane(nwid("1122334455667788"), me)),
            40,
        )];
        assert_eq!(
            ndp_emulated_owner(netaddr::sixplane(n, peer), &foreign, n, me),
            None
        );
    }

    // spec: vl2.md §5 — layout and checksum of the injected advertisement
    #[test]
    fn neighbor_advertisement_layout_and_checksum() {
        let n = nwid("7c55a8da82c90312");
        let me = addr("0a33989140");
        let peer = addr("7c55a8da82");
        let target = netaddr::rfc4193(n, peer);
        let dest_ip = netaddr::rfc4193(n, me);
        let src_mac = node_mac(peer, n);
        let dst_mac = node_mac(me, n);
        let f = build_neighbor_advertisement(target, dest_ip, src_mac, dst_mac);
        assert_eq!(f.len(), 14 + 72);
        assert_eq!(&f[..6], &dst_mac.0);
        assert_eq!(&f[6..12], &src_mac.0);
        assert_eq!(&f[12..14], &[0x86, 0xdd]);
        let ip = &f[14..];
        assert_eq!(&ip[..8], &[0x60, 0, 0, 0, 0, 0x20, 0x3a, 0xff]);
        assert_eq!(&ip[8..24], &target.octets());
        assert_eq!(&ip[24..40], &dest_ip.octets());
        assert_eq!(&ip[40..42], &[0x88, 0]);
        assert_eq!(&ip[44..48], &[0x60, 0, 0, 0]);
        assert_eq!(&ip[48..64], &target.octets());
        assert_eq!(&ip[64..66], &[2, 1]);
        assert_eq!(&ip[66..72], &src_mac.0);

        // independent checksum: etherparse over the same message
        let sliced = etherparse::SlicedPacket::from_ethernet(&f).unwrap();
        let Some(etherparse::NetSlice::Ipv6(v6)) = sliced.net else {
            panic!("not IPv6")
        };
        let Some(etherparse::TransportSlice::Icmpv6(icmp)) = sliced.transport else {
            panic!("not ICMPv6")
        };
        let header = icmp.header();
        let want = header
            .icmp_type
            .calc_checksum(
                v6.header().source(),
                v6.header().destination(),
                icmp.payload(),
            )
            .unwrap();
        assert_eq!(icmp.checksum(), want);
        assert_ne!(want, 0);
    }
}
