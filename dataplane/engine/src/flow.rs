//! The inner flow of an Ethernet frame, for multipath bonding: the five-tuple of an IPv4 or
//! IPv6 packet (protocol, addresses, ports for TCP/UDP/SCTP/UDP-Lite). spec: vl1.md §9.1
//!
//! Both planes use it: the control plane turns it into a `FlowId` for the bond's flow table,
//! the data plane hashes it with [`flow_hash`] to place balance-xor/balance-aware frames.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;

/// An inner packet's five-tuple (ports 0 for protocols without them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FiveTuple {
    /// IP protocol (IPv6: the first next-header, extension headers are not walked).
    pub protocol: u8,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
}

fn has_ports(protocol: u8) -> bool {
    matches!(protocol, 6 | 17 | 132 | 136)
}

/// The five-tuple of the IP packet `data` carried with `ethertype`; `None` for non-IP frames
/// and truncated headers.
pub fn five_tuple(ethertype: u16, data: &[u8]) -> Option<FiveTuple> {
    let (protocol, src, dst, l4) = match ethertype {
        ETHERTYPE_IPV4 => {
            let ihl = usize::from(data.first()? & 0x0f) * 4;
            if data.len() < 20 || ihl < 20 {
                return None;
            }
            let src: [u8; 4] = data[12..16].try_into().ok()?;
            let dst: [u8; 4] = data[16..20].try_into().ok()?;
            // Only the first fragment carries ports.
            let frag_off = u16::from_be_bytes([data[6], data[7]]) & 0x1fff;
            let l4 = if frag_off == 0 { data.get(ihl..) } else { None };
            (
                data[9],
                IpAddr::V4(Ipv4Addr::from(src)),
                IpAddr::V4(Ipv4Addr::from(dst)),
                l4,
            )
        }
        ETHERTYPE_IPV6 => {
            if data.len() < 40 {
                return None;
            }
            let src: [u8; 16] = data[8..24].try_into().ok()?;
            let dst: [u8; 16] = data[24..40].try_into().ok()?;
            (
                data[6],
                IpAddr::V6(Ipv6Addr::from(src)),
                IpAddr::V6(Ipv6Addr::from(dst)),
                data.get(40..),
            )
        }
        _ => return None,
    };
    let (src_port, dst_port) = match l4 {
        Some(l4) if has_ports(protocol) && l4.len() >= 4 => (
            u16::from_be_bytes([l4[0], l4[1]]),
            u16::from_be_bytes([l4[2], l4[3]]),
        ),
        _ => (0, 0),
    };
    Some(FiveTuple {
        protocol,
        src,
        dst,
        src_port,
        dst_port,
    })
}

/// splitmix64's finalizer.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A well-distributed 32-bit hash of a five-tuple (the same for every packet of the flow).
pub fn flow_hash(t: &FiveTuple) -> u32 {
    let mut h = u64::from(t.protocol) << 32 | u64::from(t.src_port) << 16 | u64::from(t.dst_port);
    for ip in [t.src, t.dst] {
        let v = match ip {
            IpAddr::V4(a) => u128::from(u32::from(a)),
            IpAddr::V6(a) => u128::from(a),
        };
        h = mix(h ^ mix(v as u64) ^ mix((v >> 64) as u64 ^ 0x5bd1_e995));
    }
    (mix(h) >> 32) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipv4_tcp(sport: u16, dport: u16) -> Vec<u8> {
        let mut p = vec![0u8; 40];
        p[0] = 0x45;
        p[9] = 6;
        p[12..16].copy_from_slice(&[10, 0, 0, 1]);
        p[16..20].copy_from_slice(&[10, 0, 0, 2]);
        p[20..22].copy_from_slice(&sport.to_be_bytes());
        p[22..24].copy_from_slice(&dport.to_be_bytes());
        p
    }

    #[test]
    fn ipv4_tcp_ports_and_hash_stability() {
        let t = five_tuple(ETHERTYPE_IPV4, &ipv4_tcp(40000, 80)).unwrap();
        assert_eq!((t.protocol, t.src_port, t.dst_port), (6, 40000, 80));
        assert_eq!(t.src, "10.0.0.1".parse::<IpAddr>().unwrap());
        let u = five_tuple(ETHERTYPE_IPV4, &ipv4_tcp(40001, 80)).unwrap();
        assert_eq!(flow_hash(&t), flow_hash(&t));
        assert_ne!(flow_hash(&t), flow_hash(&u));
    }

    #[test]
    fn non_ip_truncated_and_fragments() {
        assert!(five_tuple(0x0806, &[0; 28]).is_none());
        assert!(five_tuple(ETHERTYPE_IPV4, &[0x45; 10]).is_none());
        assert!(five_tuple(ETHERTYPE_IPV6, &[0x60; 39]).is_none());
        let mut frag = ipv4_tcp(1, 2);
        frag[7] = 1; // a later fragment: no ports
        let t = five_tuple(ETHERTYPE_IPV4, &frag).unwrap();
        assert_eq!((t.src_port, t.dst_port), (0, 0));
    }
}
