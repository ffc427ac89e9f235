//! Test support for the rules VM: mock credentials and real frames built with `etherparse`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::PacketBuilder;

use super::eval::{LocalView, Membership};
use super::{Forward, Rule, RuleKind};
use crate::address::Address;
use crate::verbs::vl2::Mac;

pub const ME: u64 = 0x0a_3398_9140;
pub const PEER: u64 = 0x7c_55a8_da82;
pub const OTHER: u64 = 0xde_adbe_ef01;
pub const MAC_ME: Mac = Mac([0x12, 0x09, 0xfa, 0x1a, 0x4b, 0xe8]);
pub const MAC_PEER: Mac = Mac([0x12, 0x7f, 0x9c, 0x2a, 0x00, 0x2a]);

pub fn a(v: u64) -> Address {
    Address::new(v).unwrap()
}

#[derive(Default, Clone)]
pub struct Local {
    pub address: u64,
    pub tags: Vec<(u32, u32)>,
    pub ips: Vec<IpAddr>,
    pub macs: Vec<Mac>,
    pub ndp: bool,
    pub sixplane: Option<Ipv6Addr>,
    pub rfc4193: Option<Ipv6Addr>,
    pub unsupported: bool,
}

impl Local {
    pub fn me() -> Self {
        Local {
            address: ME,
            ..Default::default()
        }
    }
}

impl LocalView for Local {
    fn address(&self) -> Address {
        a(self.address)
    }
    fn tag(&self, id: u32) -> Option<u32> {
        self.tags.iter().find(|t| t.0 == id).map(|t| t.1)
    }
    fn owns_ip(&self, ip: IpAddr) -> bool {
        self.ips.contains(&ip)
    }
    fn owns_mac(&self, mac: Mac) -> bool {
        self.macs.contains(&mac)
    }
    fn ndp_emulation(&self) -> bool {
        self.ndp
    }
    fn sixplane_address(&self) -> Option<Ipv6Addr> {
        self.sixplane
    }
    fn rfc4193_address(&self) -> Option<Ipv6Addr> {
        self.rfc4193
    }
    fn unsupported_match_result(&self) -> bool {
        self.unsupported
    }
}

#[derive(Default, Clone)]
pub struct Remote {
    pub tags: Vec<(u32, u32)>,
    pub ips: Vec<IpAddr>,
    pub macs: Vec<Mac>,
}

impl Membership for Remote {
    fn tag(&self, id: u32) -> Option<u32> {
        self.tags.iter().find(|t| t.0 == id).map(|t| t.1)
    }
    fn owns_ip(&self, ip: IpAddr) -> bool {
        self.ips.contains(&ip)
    }
    fn owns_mac(&self, mac: Mac) -> bool {
        self.macs.contains(&mac)
    }
}

// ---- rules

pub fn m(kind: RuleKind) -> Rule {
    Rule::new(kind)
}
pub fn not(kind: RuleKind) -> Rule {
    Rule {
        kind,
        not: true,
        or: false,
    }
}
pub fn or(kind: RuleKind) -> Rule {
    Rule {
        kind,
        not: false,
        or: true,
    }
}
pub fn accept() -> Rule {
    m(RuleKind::Accept)
}
pub fn drop() -> Rule {
    m(RuleKind::Drop)
}
pub fn fwd(address: u64, length: u16) -> Forward {
    Forward {
        address: a(address),
        flags: 0,
        length,
    }
}

// ---- frames (whole Ethernet frames)

pub const V4_SRC: [u8; 4] = [10, 147, 17, 38];
pub const V4_DST: [u8; 4] = [10, 147, 17, 99];
pub fn v6_src() -> Ipv6Addr {
    "fd7c:55a8:da82:c903:1299:937c:55a8:da82".parse().unwrap()
}
pub fn v6_dst() -> Ipv6Addr {
    "fd7c:55a8:da82:c903:1299:930a:3398:9140".parse().unwrap()
}

fn eth() -> etherparse::PacketBuilderStep<etherparse::Ethernet2Header> {
    PacketBuilder::ethernet2(MAC_PEER.0, MAC_ME.0)
}

pub enum Tcp {
    Syn,
    SynAck,
    Ack,
}

fn tcp_step(
    b: etherparse::PacketBuilderStep<etherparse::IpHeaders>,
    sport: u16,
    dport: u16,
    kind: Tcp,
) -> etherparse::PacketBuilderStep<etherparse::TcpHeader> {
    let t = b.tcp(sport, dport, 1000, 64240);
    match kind {
        Tcp::Syn => t.syn(),
        Tcp::SynAck => t.syn().ack(1),
        Tcp::Ack => t.ack(1),
    }
}

pub fn v4_tcp(sport: u16, dport: u16, kind: Tcp) -> Vec<u8> {
    let mut out = Vec::new();
    tcp_step(eth().ipv4(V4_SRC, V4_DST, 64), sport, dport, kind)
        .write(&mut out, b"hello")
        .unwrap();
    out
}

pub fn v6_tcp(sport: u16, dport: u16, kind: Tcp) -> Vec<u8> {
    let mut out = Vec::new();
    tcp_step(
        eth().ipv6(v6_src().octets(), v6_dst().octets(), 64),
        sport,
        dport,
        kind,
    )
    .write(&mut out, b"hello")
    .unwrap();
    out
}

pub fn v4_udp(sport: u16, dport: u16) -> Vec<u8> {
    let mut out = Vec::new();
    eth()
        .ipv4(V4_SRC, V4_DST, 64)
        .udp(sport, dport)
        .write(&mut out, b"data")
        .unwrap();
    out
}

pub fn v6_udp(sport: u16, dport: u16) -> Vec<u8> {
    let mut out = Vec::new();
    eth()
        .ipv6(v6_src().octets(), v6_dst().octets(), 64)
        .udp(sport, dport)
        .write(&mut out, b"data")
        .unwrap();
    out
}

pub fn v4_icmp(icmp_type: u8, code: u8) -> Vec<u8> {
    let mut out = Vec::new();
    eth()
        .ipv4(V4_SRC, V4_DST, 64)
        .icmpv4_raw(icmp_type, code, [0, 1, 0, 1])
        .write(&mut out, b"ping")
        .unwrap();
    out
}

pub fn v6_icmp(icmp_type: u8, code: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    eth()
        .ipv6(v6_src().octets(), v6_dst().octets(), 255)
        .icmpv6_raw(icmp_type, code, [0; 4])
        .write(&mut out, body)
        .unwrap();
    out
}

/// Inserts an 8-byte hop-by-hop options header in front of the transport header of an IPv6
/// frame built above.
pub fn with_hop_by_hop(mut f: Vec<u8>) -> Vec<u8> {
    let next = f[14 + 6];
    f[14 + 6] = 0;
    let plen = u16::from_be_bytes([f[14 + 4], f[14 + 5]]) + 8;
    f[14 + 4..14 + 6].copy_from_slice(&plen.to_be_bytes());
    let at = 14 + 40;
    f.splice(at..at, [next, 0, 1, 4, 0, 0, 0, 0]);
    f
}

pub fn arp_request(sender: [u8; 4], target: [u8; 4]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&MAC_PEER.0);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f.extend_from_slice(&MAC_PEER.0);
    f.extend_from_slice(&sender);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target);
    f
}

pub fn v4(ip: [u8; 4]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(ip))
}
