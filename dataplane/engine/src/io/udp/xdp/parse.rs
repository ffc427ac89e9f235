//! Ethernet / IPv4 / IPv6 / UDP header parsing of the frames an XSK receives. Every length is
//! checked against the frame; anything malformed or unexpected is `None`, never a panic.
//!
//! Checksums are not verified: on veth and with checksum offload the kernel hands frames over
//! with the UDP checksum not yet computed (`CHECKSUM_PARTIAL`), and every VL1 packet carries its
//! own authenticator, which a corrupted datagram fails.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

const ETH_HEADER: usize = 14;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const PROTO_UDP: u8 = 17;
const UDP_HEADER: usize = 8;

/// A UDP datagram found in an Ethernet frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Datagram<'a> {
    /// The sender.
    pub(super) from: SocketAddr,
    /// The destination (ours).
    pub(super) to: SocketAddr,
    /// The UDP payload.
    pub(super) payload: &'a [u8],
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Parses an Ethernet frame carrying an unfragmented UDP datagram over IPv4 or IPv6 (no IPv6
/// extension headers). `ifindex` becomes the scope of link-local IPv6 sources.
pub(super) fn parse(frame: &[u8], ifindex: u32) -> Option<Datagram<'_>> {
    let ethertype = be16(frame, 12)?;
    let ip = frame.get(ETH_HEADER..)?;
    // The IP packet, cut to its own length (Ethernet pads short frames), and where UDP starts.
    let (from_ip, to_ip, packet, udp_at): (_, _, &[u8], usize) = match ethertype {
        ETHERTYPE_IPV4 => {
            let vihl = *ip.first()?;
            let ihl = usize::from(vihl & 0x0f) * 4;
            if vihl >> 4 != 4 || ihl < 20 || ip.len() < ihl {
                return None;
            }
            let total = usize::from(be16(ip, 2)?);
            let frag = be16(ip, 6)?;
            if total < ihl || total > ip.len() || frag & 0x3fff != 0 || ip[9] != PROTO_UDP {
                return None;
            }
            let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
            let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
            (src.into(), dst.into(), &ip[..total], ihl)
        }
        ETHERTYPE_IPV6 => {
            if ip.len() < 40 || ip[0] >> 4 != 6 || ip[6] != PROTO_UDP {
                return None;
            }
            let total = 40 + usize::from(be16(ip, 4)?);
            if total > ip.len() {
                return None;
            }
            let mut s = [0u8; 16];
            s.copy_from_slice(&ip[8..24]);
            let mut d = [0u8; 16];
            d.copy_from_slice(&ip[24..40]);
            let (src, dst) = (Ipv6Addr::from(s), Ipv6Addr::from(d));
            (src.into(), dst.into(), &ip[..total], 40)
        }
        _ => return None,
    };
    let udp = packet.get(udp_at..)?;
    let src_port = be16(udp, 0)?;
    let dst_port = be16(udp, 2)?;
    let len = usize::from(be16(udp, 4)?);
    if len < UDP_HEADER || len > udp.len() {
        return None;
    }
    let payload = &udp[UDP_HEADER..len];
    let (from, to) = match (from_ip, to_ip) {
        (std::net::IpAddr::V4(s), std::net::IpAddr::V4(d)) => (
            SocketAddr::V4(SocketAddrV4::new(s, src_port)),
            SocketAddr::V4(SocketAddrV4::new(d, dst_port)),
        ),
        (std::net::IpAddr::V6(s), std::net::IpAddr::V6(d)) => {
            let scope = if s.is_unicast_link_local() {
                ifindex
            } else {
                0
            };
            (
                SocketAddr::V6(SocketAddrV6::new(s, src_port, 0, scope)),
                SocketAddr::V6(SocketAddrV6::new(d, dst_port, 0, 0)),
            )
        }
        _ => return None,
    };
    Some(Datagram { from, to, payload })
}

/// Test helper: an Ethernet frame carrying `payload` from `from` to `to` (lengths filled in,
/// checksums zero).
#[cfg(test)]
pub(super) fn build(from: SocketAddr, to: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 12];
    let udp_len = (UDP_HEADER + payload.len()) as u16;
    let mut udp = Vec::new();
    udp.extend_from_slice(&from.port().to_be_bytes());
    udp.extend_from_slice(&to.port().to_be_bytes());
    udp.extend_from_slice(&udp_len.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    match (from, to) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            f.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
            let total = (20 + udp.len()) as u16;
            f.extend_from_slice(&[0x45, 0]);
            f.extend_from_slice(&total.to_be_bytes());
            f.extend_from_slice(&[0, 0, 0x40, 0, 64, PROTO_UDP, 0, 0]);
            f.extend_from_slice(&s.ip().octets());
            f.extend_from_slice(&d.ip().octets());
        }
        (SocketAddr::V6(s), SocketAddr::V6(d)) => {
            f.extend_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
            f.extend_from_slice(&[0x60, 0, 0, 0]);
            f.extend_from_slice(&udp_len.to_be_bytes());
            f.extend_from_slice(&[PROTO_UDP, 64]);
            f.extend_from_slice(&s.ip().octets());
            f.extend_from_slice(&d.ip().octets());
        }
        _ => panic!("mixed families"),
    }
    f.extend_from_slice(&udp);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: [u8; 4], port: u16) -> SocketAddr {
        SocketAddr::from((a, port))
    }

    #[test]
    fn well_formed_frames_parse() {
        let from = v4([10, 0, 0, 2], 4000);
        let to = v4([10, 0, 0, 1], 9993);
        let mut f = build(from, to, b"hello");
        let d = parse(&f, 3).unwrap();
        assert_eq!((d.from, d.to, d.payload), (from, to, &b"hello"[..]));
        // Ethernet padding after the IP packet is not payload.
        f.extend_from_slice(&[0xee; 20]);
        assert_eq!(parse(&f, 3).unwrap().payload, b"hello");
        // An empty datagram.
        assert_eq!(parse(&build(from, to, b""), 3).unwrap().payload, b"");

        let from6: SocketAddr = "[fe80::2]:4000".parse().unwrap();
        let to6: SocketAddr = "[fe80::1]:9993".parse().unwrap();
        let f6 = build(from6, to6, b"six");
        let d = parse(&f6, 7).unwrap();
        assert_eq!(d.payload, b"six");
        match d.from {
            SocketAddr::V6(a) => assert_eq!((a.scope_id(), a.port()), (7, 4000)),
            _ => panic!(),
        }
        let g: SocketAddr = "[fd00::2]:1".parse().unwrap();
        let h: SocketAddr = "[fd00::1]:2".parse().unwrap();
        match parse(&build(g, h, b"x"), 7).unwrap().from {
            SocketAddr::V6(a) => assert_eq!(a.scope_id(), 0),
            _ => panic!(),
        }
    }

    #[test]
    fn ipv4_options_are_skipped() {
        let from = v4([10, 0, 0, 2], 1);
        let to = v4([10, 0, 0, 1], 2);
        let f = build(from, to, b"opt");
        // Insert 4 bytes of options (a NOP padding word) and fix IHL and total length.
        let mut g = f[..34].to_vec();
        g.extend_from_slice(&[1, 1, 1, 0]);
        g.extend_from_slice(&f[34..]);
        g[14] = 0x46;
        let total = u16::from_be_bytes([g[16], g[17]]) + 4;
        g[16..18].copy_from_slice(&total.to_be_bytes());
        assert_eq!(parse(&g, 0).unwrap().payload, b"opt");
    }

    #[test]
    fn malformed_frames_are_refused_without_panicking() {
        let from = v4([10, 0, 0, 2], 4000);
        let to = v4([10, 0, 0, 1], 9993);
        let good = build(from, to, &[7u8; 40]);
        let from6: SocketAddr = "[fd00::2]:4000".parse().unwrap();
        let to6: SocketAddr = "[fd00::1]:9993".parse().unwrap();
        let good6 = build(from6, to6, &[7u8; 40]);
        // Every truncation of a valid frame short of its UDP payload end is refused.
        for f in [&good, &good6] {
            for cut in 0..f.len() {
                assert!(parse(&f[..cut], 0).is_none(), "cut at {cut}");
            }
        }
        let mutate = |base: &Vec<u8>, at: usize, v: u8| {
            let mut f = base.clone();
            f[at] = v;
            f
        };
        let bad = [
            mutate(&good, 12, 0x86),  // EtherType neither IPv4 nor IPv6 (0x8600)
            mutate(&good, 14, 0x65),  // version 6 in an IPv4 EtherType
            mutate(&good, 14, 0x44),  // IHL 4 (< 20 bytes)
            mutate(&good, 14, 0x4f),  // IHL 15 (60 bytes, beyond total)
            mutate(&good, 16, 0xff),  // total length beyond the frame
            mutate(&good, 17, 0x01),  // total length shorter than the header
            mutate(&good, 20, 0x20),  // MF: a first fragment
            mutate(&good, 21, 0x08),  // a later fragment
            mutate(&good, 23, 6),     // TCP
            mutate(&good, 38, 0xff),  // UDP length beyond the packet
            mutate(&good, 39, 0x07),  // UDP length < 8 (0x0007 with the high byte 0)
            mutate(&good6, 14, 0x40), // version 4 in an IPv6 EtherType
            mutate(&good6, 20, 44),   // a fragment header
            mutate(&good6, 18, 0xff), // payload length beyond the frame
            mutate(&good6, 58, 0xff), // UDP length beyond the packet
        ];
        for (i, f) in bad.iter().enumerate() {
            assert!(parse(f, 0).is_none(), "case {i}");
        }
        // Pseudo-random garbage of every length, and random mutations of good frames: no panic.
        let mut x: u32 = 0x1234_5678;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        let mut parsed = 0;
        for len in 0..200 {
            let f: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let _ = parse(&f, 0);
        }
        for _ in 0..20_000 {
            let mut f = if next() % 2 == 0 {
                good.clone()
            } else {
                good6.clone()
            };
            for _ in 0..1 + next() % 3 {
                let at = next() as usize % f.len();
                f[at] = next() as u8;
            }
            f.truncate(next() as usize % (f.len() + 1));
            if let Some(d) = parse(&f, 0) {
                assert!(d.payload.len() <= f.len());
                parsed += 1;
            }
        }
        assert!(parsed > 0, "some mutations keep a valid frame");
    }
}
