//! The rules VM: evaluation of one rule list against one frame. spec: vl2.md §15.2–§15.5
//!
//! Pure and allocation-free: a [`FrameInfo`] borrows the frame, the remote member's credentials
//! and our own side are reached through the [`Membership`] and [`LocalView`] traits (the caller
//! adapts its config and credential types), and the one random draw comes from the caller. No
//! frame bytes can make it panic: every header read is bounds-checked and a frame too short for a
//! test gives the result the spec prescribes for "not that protocol".

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::address::Address;
use crate::verbs::vl2::Mac;

use super::{Forward, Rule, RuleKind, TagOp};

/// Ethertype of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// Ethertype of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// Ethertype of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;

/// Characteristics bit 63: the frame is inbound. spec: vl2.md §15.4
pub const CHR_INBOUND: u64 = 0x8000_0000_0000_0000;
/// Characteristics bit 62: multicast destination MAC.
pub const CHR_MULTICAST: u64 = 0x4000_0000_0000_0000;
/// Characteristics bit 61: broadcast destination MAC.
pub const CHR_BROADCAST: u64 = 0x2000_0000_0000_0000;
/// Characteristics bit 60: the sender's IP is authenticated by a certificate of ownership.
pub const CHR_SENDER_IP_AUTHENTICATED: u64 = 0x1000_0000_0000_0000;
/// Characteristics bit 59: the sender's MAC is authenticated by a certificate of ownership.
pub const CHR_SENDER_MAC_AUTHENTICATED: u64 = 0x0800_0000_0000_0000;
/// Characteristics bits 11..9: the three TCP reserved bits.
pub const CHR_TCP_RESERVED: u64 = 0x0e00;
/// Characteristics bit 8: TCP NS.
pub const CHR_TCP_NS: u64 = 0x0100;
/// TCP CWR.
pub const CHR_TCP_CWR: u64 = 0x80;
/// TCP ECE.
pub const CHR_TCP_ECE: u64 = 0x40;
/// TCP URG.
pub const CHR_TCP_URG: u64 = 0x20;
/// TCP ACK.
pub const CHR_TCP_ACK: u64 = 0x10;
/// TCP PSH.
pub const CHR_TCP_PSH: u64 = 0x08;
/// TCP RST.
pub const CHR_TCP_RST: u64 = 0x04;
/// TCP SYN.
pub const CHR_TCP_SYN: u64 = 0x02;
/// TCP FIN.
pub const CHR_TCP_FIN: u64 = 0x01;

/// Length of the Ethernet header a [`FrameInfo`] strips.
pub const ETHERNET_HEADER_LEN: usize = 14;

/// Errors building a [`FrameInfo`] from raw Ethernet bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// Fewer than the 14 bytes of an Ethernet header.
    #[error("ethernet frame of {len} bytes is shorter than its 14-byte header")]
    TooShort {
        /// The frame length.
        len: usize,
    },
}

/// One frame as the rules see it: the Ethernet header fields and the payload after them.
/// spec: vl2.md §15.2 (inputs)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameInfo<'a> {
    /// Destination MAC.
    pub dest: Mac,
    /// Source MAC.
    pub source: Mac,
    /// Ethertype.
    pub ethertype: u16,
    /// VLAN id (always 0: frames from taps and from the network carry none).
    pub vlan_id: u16,
    /// Bytes after the 14-byte Ethernet header.
    pub payload: &'a [u8],
}

impl<'a> FrameInfo<'a> {
    /// Parses a whole Ethernet frame (`dest (6) | source (6) | ethertype (2) | payload`).
    pub fn parse(frame: &'a [u8]) -> Result<Self, FrameError> {
        let too_short = FrameError::TooShort { len: frame.len() };
        let (header, payload) = frame
            .split_at_checked(ETHERNET_HEADER_LEN)
            .ok_or(too_short)?;
        let mut dest = [0u8; 6];
        let mut source = [0u8; 6];
        dest.copy_from_slice(&header[..6]);
        source.copy_from_slice(&header[6..12]);
        Ok(FrameInfo {
            dest: Mac(dest),
            source: Mac(source),
            ethertype: u16::from_be_bytes([header[12], header[13]]),
            vlan_id: 0,
            payload,
        })
    }

    /// A frame from its parts (as FRAME and EXT_FRAME carry it).
    pub fn from_parts(dest: Mac, source: Mac, ethertype: u16, payload: &'a [u8]) -> Self {
        FrameInfo {
            dest,
            source,
            ethertype,
            vlan_id: 0,
            payload,
        }
    }

    /// The IPv4 header, if this is IPv4 with at least 20 payload bytes.
    fn ipv4(&self) -> Option<&'a [u8]> {
        (self.ethertype == ETHERTYPE_IPV4 && self.payload.len() >= 20).then_some(self.payload)
    }

    /// The IPv6 header, if this is IPv6 with at least 40 payload bytes.
    fn ipv6(&self) -> Option<&'a [u8]> {
        (self.ethertype == ETHERTYPE_IPV6 && self.payload.len() >= 40).then_some(self.payload)
    }

    /// IPv4: protocol and where its header starts (IHL·4), or `None` if not IPv4.
    fn ipv4_transport(&self) -> Option<(u8, usize)> {
        let p = self.ipv4()?;
        Some((p[9], usize::from(p[0] & 0x0f) * 4))
    }

    /// The characteristics bits of this frame (vl2.md §15.4), authentication bits per §15.5.
    pub fn characteristics(
        &self,
        inbound: bool,
        remote: Option<&dyn Membership>,
        local: &dyn LocalView,
    ) -> u64 {
        let mut cf = 0;
        if inbound {
            cf |= CHR_INBOUND;
        }
        if self.dest.0[0] & 0x01 != 0 {
            cf |= CHR_MULTICAST;
        }
        if self.dest.0 == [0xff; 6] {
            cf |= CHR_BROADCAST;
        }
        // spec: vl2.md §15.4 — TCP flags from the TCP header's bytes 12 (reserved + NS) and 13.
        let tcp = match (self.ipv4_transport(), ipv6_transport(self)) {
            (Some((6, off)), _) => Some(off),
            (_, Some(Ok((6, off)))) => Some(off),
            _ => None,
        };
        if let Some(off) = tcp
            && let (Some(&b12), Some(&b13)) =
                (self.payload.get(off + 12), self.payload.get(off + 13))
        {
            cf |= (u64::from(b12 & 0x0f) << 8) | u64::from(b13);
        }
        cf |= self.sender_authentication(inbound, remote, local);
        cf
    }

    /// Bits 60 and 59 (sender IP / MAC authenticated). spec: vl2.md §15.5
    fn sender_authentication(
        &self,
        inbound: bool,
        remote: Option<&dyn Membership>,
        local: &dyn LocalView,
    ) -> u64 {
        let owns_ip = |ip: IpAddr| -> bool {
            if inbound {
                remote.is_some_and(|m| m.owns_ip(ip))
                    || match ip {
                        IpAddr::V6(v6) => local.ndp_emulation() && within_own_prefixes(v6, local),
                        IpAddr::V4(_) => false,
                    }
            } else {
                local.owns_ip(ip)
            }
        };
        let mut cf = 0;
        let ip_ok = match self.sender_ip() {
            SenderIp::Unconditional => true,
            SenderIp::Ip(ip) => owns_ip(ip),
            SenderIp::None => false,
        };
        if ip_ok {
            cf |= CHR_SENDER_IP_AUTHENTICATED;
        }
        let mac_ok = if inbound {
            remote.is_some_and(|m| m.owns_mac(self.source))
        } else {
            local.owns_mac(self.source)
        };
        if mac_ok {
            cf |= CHR_SENDER_MAC_AUTHENTICATED;
        }
        cf
    }

    /// The address whose ownership bit 60 checks. spec: vl2.md §15.5
    fn sender_ip(&self) -> SenderIp {
        let p = self.payload;
        if let Some(h) = self.ipv4() {
            return SenderIp::Ip(IpAddr::V4(Ipv4Addr::new(h[12], h[13], h[14], h[15])));
        }
        if let Some(h) = self.ipv6() {
            if let Some(Ok((0x3a, off))) = ipv6_transport(self) {
                match p.get(off) {
                    Some(135) => return SenderIp::Unconditional,
                    Some(136) => {
                        return match p.get(off + 8..off + 24) {
                            Some(t) => SenderIp::Ip(IpAddr::V6(ipv6_at(t))),
                            None => SenderIp::None,
                        };
                    }
                    _ => {}
                }
            }
            return SenderIp::Ip(IpAddr::V6(ipv6_at(&h[8..24])));
        }
        if self.ethertype == ETHERTYPE_ARP && p.len() >= 28 {
            return SenderIp::Ip(IpAddr::V4(Ipv4Addr::new(p[14], p[15], p[16], p[17])));
        }
        SenderIp::None
    }
}

enum SenderIp {
    /// ICMPv6 neighbor solicitation: authenticated without a check.
    Unconditional,
    Ip(IpAddr),
    None,
}

/// `b` must hold at least 16 bytes.
fn ipv6_at(b: &[u8]) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[..16]);
    Ipv6Addr::from(a)
}

/// Whether `ip` lies in our own 6plane /40 or rfc4193 /88 prefix. spec: vl2.md §5, §15.5
fn within_own_prefixes(ip: Ipv6Addr, local: &dyn LocalView) -> bool {
    let ip = ip.octets();
    local
        .sixplane_address()
        .is_some_and(|own| own.octets()[..5] == ip[..5])
        || local
            .rfc4193_address()
            .is_some_and(|own| own.octets()[..11] == ip[..11])
}

/// The IPv6 header walk: the final next-header value and its offset in the payload, skipping
/// extension headers 0, 43, 60 and 135. `None` if not IPv6, `Err` if the walk runs off the
/// frame. spec: vl2.md §15.3 (IP_PROTOCOL)
fn ipv6_transport(f: &FrameInfo<'_>) -> Option<Result<(u8, usize), ()>> {
    let p = f.ipv6()?;
    let mut next = p[6];
    let mut at = 40usize;
    while matches!(next, 0 | 43 | 60 | 135) {
        let (Some(&n), Some(&len)) = (p.get(at), p.get(at + 1)) else {
            return Some(Err(()));
        };
        next = n;
        at += usize::from(len) * 8 + 8;
    }
    if at > p.len() {
        return Some(Err(()));
    }
    Some(Ok((next, at)))
}

/// What we know about the *remote* node of an evaluation: inbound the sender, outbound the
/// destination. Only credentials that are currently valid (vl2.md §13.7) may be reported.
pub trait Membership {
    /// The value of the remote member's valid tag `id`, if it presented one.
    fn tag(&self, id: u32) -> Option<u32>;
    /// Whether a valid certificate of ownership of the remote member lists `ip`.
    fn owns_ip(&self, ip: IpAddr) -> bool;
    /// Whether a valid certificate of ownership of the remote member lists `mac`.
    fn owns_mac(&self, mac: Mac) -> bool;
}

/// Our own side of an evaluation: our address and the parts of our network config the rules
/// consult.
pub trait LocalView {
    /// Our ZeroTier address.
    fn address(&self) -> Address;
    /// The value of our own tag `id` (from our config), if we hold one.
    fn tag(&self, id: u32) -> Option<u32>;
    /// Whether one of our own certificates of ownership lists `ip` (outbound bit 60).
    fn owns_ip(&self, ip: IpAddr) -> bool;
    /// Whether one of our own certificates of ownership lists `mac` (outbound bit 59).
    fn owns_mac(&self, mac: Mac) -> bool;
    /// Config flag 0x04, IPv6 NDP emulation.
    fn ndp_emulation(&self) -> bool;
    /// Our 6plane address if it is one of our static IPs (its /40 counts as authenticated
    /// inbound when NDP emulation is on). See [`crate::netaddr::sixplane`].
    fn sixplane_address(&self) -> Option<Ipv6Addr>;
    /// Our rfc4193 address if it is one of our static IPs (its /88 counts as authenticated
    /// inbound when NDP emulation is on). See [`crate::netaddr::rfc4193`].
    fn rfc4193_address(&self) -> Option<Ipv6Addr>;
    /// Config flag 0x08: the result of matches this implementation does not know.
    fn unsupported_match_result(&self) -> bool;
}

/// Which way the frame goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the network to our tap.
    Inbound,
    /// From our tap to the network.
    Outbound,
}

/// The inputs of one evaluation. spec: vl2.md §15.2
#[derive(Clone, Copy)]
pub struct EvalContext<'c, 'f> {
    /// Inbound or outbound.
    pub direction: Direction,
    /// The sending node (ourselves outbound).
    pub zt_source: Address,
    /// The receiving node (ourselves inbound; zero for multicast and first-pass bridged sends).
    pub zt_dest: Address,
    /// The frame.
    pub frame: FrameInfo<'f>,
    /// The remote member's credentials (inbound: the sender's; outbound: the destination's),
    /// absent when we have no record.
    pub remote: Option<&'c dyn Membership>,
    /// Our side.
    pub local: &'c dyn LocalView,
    /// The first value of the 32-bit random stream for RANDOM matches (further RANDOM matches
    /// in the same list draw from a xorshift stream seeded with it).
    pub random: u32,
}

impl std::fmt::Debug for EvalContext<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvalContext")
            .field("direction", &self.direction)
            .field("zt_source", &self.zt_source)
            .field("zt_dest", &self.zt_dest)
            .field("frame", &self.frame)
            .field("random", &self.random)
            .finish_non_exhaustive()
    }
}

/// The result of evaluating one rule list. spec: vl2.md §15.2
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListResult {
    /// The list ended (or hit BREAK) without an action applying.
    NoMatch,
    /// DROP applied.
    Drop,
    /// ACCEPT (or PRIORITY) applied.
    Accept,
    /// ACCEPT applied while we were a TEE/WATCH/REDIRECT target, or an inbound
    /// TEE/WATCH/REDIRECT named us.
    SuperAccept,
    /// REDIRECT applied; [`ListOutcome::zt_dest`] is the new destination.
    Redirect,
}

/// A copy of the frame a TEE or WATCH asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CopyTarget {
    /// Node that gets the copy.
    pub address: Address,
    /// Bytes of the payload to copy (≤ the payload length).
    pub length: usize,
    /// WATCH (acknowledged copy) rather than TEE.
    pub watch: bool,
}

/// Everything one list evaluation produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListOutcome {
    /// The verdict.
    pub result: ListResult,
    /// The destination after evaluation (changed only by REDIRECT).
    pub zt_dest: Address,
    /// The last TEE/WATCH target that applied, if any.
    pub copy: Option<CopyTarget>,
}

/// A match result, including the "hard" results that ignore the NOT bit. spec: vl2.md §15.2
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum M {
    No,
    Yes,
    HardNo,
    HardYes,
}

impl M {
    fn from(b: bool) -> M {
        if b { M::Yes } else { M::No }
    }
}

/// Per-evaluation scratch: the characteristics (computed on first use) and the random stream.
struct State {
    super_accept: bool,
    skip_drop: bool,
    cf: Option<u64>,
    random: u32,
    random_used: bool,
}

impl State {
    fn next_random(&mut self) -> u32 {
        if self.random_used {
            // xorshift32; a zero state stays zero, so step from a fixed odd constant instead.
            let mut x = if self.random == 0 {
                0x9e37_79b9
            } else {
                self.random
            };
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            self.random = x;
        }
        self.random_used = true;
        self.random
    }
}

/// Evaluates one rule list (the base rules or one capability). spec: vl2.md §15.2
pub fn evaluate_list(rules: &[Rule], ctx: &EvalContext<'_, '_>) -> ListOutcome {
    let inbound = ctx.direction == Direction::Inbound;
    let me = ctx.local.address();
    let zt_dest = ctx.zt_dest;
    let mut copy = None;
    let mut set_matches = true;
    let mut st = State {
        super_accept: false,
        skip_drop: false,
        cf: None,
        random: ctx.random,
        random_used: false,
    };
    let done = |result, zt_dest, copy| ListOutcome {
        result,
        zt_dest,
        copy,
    };
    for rule in rules {
        if rule.is_action() {
            if set_matches {
                match &rule.kind {
                    RuleKind::Drop => {
                        if st.skip_drop {
                            st.skip_drop = false;
                            continue;
                        }
                        return done(ListResult::Drop, zt_dest, copy);
                    }
                    RuleKind::Accept => {
                        let r = if st.super_accept {
                            ListResult::SuperAccept
                        } else {
                            ListResult::Accept
                        };
                        return done(r, zt_dest, copy);
                    }
                    // The QoS bucket is not serialized (vl2.md §15.1), so it is not reported.
                    RuleKind::Priority => return done(ListResult::Accept, zt_dest, copy),
                    RuleKind::Break => return done(ListResult::NoMatch, zt_dest, copy),
                    RuleKind::Tee(f) | RuleKind::Watch(f) | RuleKind::Redirect(f) => {
                        let to = f.address;
                        if to == ctx.zt_source || to == zt_dest {
                            // the copy would go to an endpoint of the frame: nothing to do
                        } else if to == me {
                            if inbound {
                                return done(ListResult::SuperAccept, zt_dest, copy);
                            }
                        } else if let RuleKind::Redirect(_) = rule.kind {
                            return done(ListResult::Redirect, to, copy);
                        } else {
                            copy = Some(copy_target(f, ctx.frame.payload.len(), rule));
                        }
                    }
                    // reserved actions 7..15: no-ops
                    _ => {}
                }
            } else {
                if inbound
                    && let RuleKind::Tee(f) | RuleKind::Watch(f) | RuleKind::Redirect(f) =
                        &rule.kind
                    && f.address == me
                {
                    st.super_accept = true;
                }
                set_matches = true;
            }
            continue;
        }
        // AND short-circuit: a failed group skips its remaining AND terms unevaluated.
        if !set_matches && !rule.or {
            continue;
        }
        let this = match match_rule(rule, ctx, zt_dest, &mut st) {
            M::No => rule.not,
            M::Yes => !rule.not,
            M::HardNo => false,
            M::HardYes => true,
        };
        set_matches = if rule.or {
            set_matches || this
        } else {
            set_matches && this
        };
    }
    done(ListResult::NoMatch, zt_dest, copy)
}

fn copy_target(f: &Forward, frame_len: usize, rule: &Rule) -> CopyTarget {
    let length = if f.length == 0 {
        frame_len
    } else {
        frame_len.min(usize::from(f.length))
    };
    CopyTarget {
        address: f.address,
        length,
        watch: matches!(rule.kind, RuleKind::Watch(_)),
    }
}

/// Whether `ip` lies within `net/bits` (top `bits` bits equal; 0 contains everything).
fn contains(net: &[u8], bits: u8, ip: &[u8]) -> bool {
    let bits = usize::from(bits).min(net.len() * 8);
    let full = bits / 8;
    if net[..full] != ip[..full] {
        return false;
    }
    let rem = bits % 8;
    if rem == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rem);
    (net[full] & mask) == (ip[full] & mask)
}

/// Whether the frame's transport header reads as a port-carrying protocol.
fn has_ports(proto: u8) -> bool {
    matches!(proto, 6 | 17 | 0x84 | 0x88)
}

/// The IP protocol and offset of the transport header: IPv4 protocol at IHL·4, or the IPv6
/// final header. `None`: not IP; `Some(Err)`: IPv6 walk failed.
fn transport(f: &FrameInfo<'_>) -> Option<Result<(u8, usize, bool), ()>> {
    if let Some((p, off)) = f.ipv4_transport() {
        return Some(Ok((p, off, false)));
    }
    ipv6_transport(f).map(|r| r.map(|(p, off)| (p, off, true)))
}

fn match_rule(rule: &Rule, ctx: &EvalContext<'_, '_>, zt_dest: Address, st: &mut State) -> M {
    let f = &ctx.frame;
    let p = f.payload;
    let inbound = ctx.direction == Direction::Inbound;
    use RuleKind::*;
    match &rule.kind {
        SourceZtAddress(a) => M::from(*a == ctx.zt_source),
        DestZtAddress(a) => M::from(*a == zt_dest),
        VlanId(v) => M::from(*v == f.vlan_id),
        // spec: vl2.md §15.3 — unsupported, true iff the rule's value is 0
        VlanPcp(v) | VlanDei(v) => M::from(*v == 0),
        MacSource(m) => M::from(*m == f.source),
        MacDest(m) => M::from(*m == f.dest),
        Ipv4Source { ip, bits } => match f.ipv4() {
            Some(h) => M::from(contains(&ip.octets(), *bits, &h[12..16])),
            None => M::HardNo,
        },
        Ipv4Dest { ip, bits } => match f.ipv4() {
            Some(h) => M::from(contains(&ip.octets(), *bits, &h[16..20])),
            None => M::HardNo,
        },
        Ipv6Source { ip, bits } => match f.ipv6() {
            Some(h) => M::from(contains(&ip.octets(), *bits, &h[8..24])),
            None => M::HardNo,
        },
        Ipv6Dest { ip, bits } => match f.ipv6() {
            Some(h) => M::from(contains(&ip.octets(), *bits, &h[24..40])),
            None => M::HardNo,
        },
        IpTos { mask, start, end } => {
            let tos = if let Some(h) = f.ipv4() {
                h[1] & mask
            } else if let Some(h) = f.ipv6() {
                // traffic class spans the low nibble of byte 0 and the high nibble of byte 1
                ((h[0] << 4) | (h[1] >> 4)) & mask
            } else {
                return M::HardNo;
            };
            M::from(*start <= tos && tos <= *end)
        }
        IpProtocol(want) => match transport(f) {
            Some(Ok((proto, _, _))) => M::from(proto == *want),
            _ => M::HardNo,
        },
        Ethertype(e) => M::from(*e == f.ethertype),
        Icmp {
            icmp_type,
            code,
            match_code,
        } => {
            let at = match transport(f) {
                Some(Ok((1, off, false))) | Some(Ok((0x3a, off, true))) => off,
                _ => return M::HardNo,
            };
            match p.get(at) {
                Some(t) if t == icmp_type => {
                    if *match_code {
                        match p.get(at + 1) {
                            Some(c) => M::from(c == code),
                            None => M::HardNo,
                        }
                    } else {
                        M::HardYes
                    }
                }
                _ => M::HardNo,
            }
        }
        SourcePortRange { start, end } | DestPortRange { start, end } => {
            let dest = matches!(rule.kind, DestPortRange { .. });
            let (proto, off, v6) = match transport(f) {
                Some(Ok(t)) => t,
                _ => return M::HardNo,
            };
            if !has_ports(proto) || p.len() <= off + 4 {
                return M::No;
            }
            let at = if dest { off + 2 } else { off };
            let port = u16::from_be_bytes([p[at], p[at + 1]]);
            // spec: vl2.md §15.3 [quirk] — after the IPv6 walk a port of 0 means "no port"
            if v6 && port == 0 {
                return M::No;
            }
            M::from(*start <= port && port <= *end)
        }
        Characteristics(mask) => {
            let cf = *st
                .cf
                .get_or_insert_with(|| f.characteristics(inbound, ctx.remote, ctx.local));
            M::from(cf & mask != 0)
        }
        FrameSizeRange { start, end } => {
            M::from(usize::from(*start) <= p.len() && p.len() <= usize::from(*end))
        }
        Random(probability) => M::from(st.next_random() <= *probability),
        Tag { op, id, value } => match_tag(*op, *id, *value, ctx, st),
        IntegerRange {
            start,
            end_delta,
            index,
            format,
        } => {
            let v = integer_at(p, *index, *format);
            M::from(*start <= v && v <= start.wrapping_add(u64::from(*end_delta)))
        }
        // Actions never get here; any other id is an unassigned match.
        _ => M::from(ctx.local.unsupported_match_result()),
    }
}

/// Reads the INTEGER_RANGE value. spec: vl2.md §15.3 — big-endian reads `n` bytes starting at
/// `index + 8 − n` **\[quirk\]**, little-endian at `index`; out of frame ⇒ 0; masked to width.
fn integer_at(p: &[u8], index: u16, format: u8) -> u64 {
    let bits = u32::from(format & 63) + 1;
    let n = bits.div_ceil(8) as usize;
    let little = format & 0x80 != 0;
    let from = if little {
        usize::from(index)
    } else {
        usize::from(index) + 8 - n
    };
    let Some(b) = p.get(from..from + n) else {
        return 0;
    };
    let v = if little {
        b.iter().rev().fold(0u64, |v, &x| (v << 8) | u64::from(x))
    } else {
        b.iter().fold(0u64, |v, &x| (v << 8) | u64::from(x))
    };
    if bits == 64 {
        v
    } else {
        v & ((1u64 << bits) - 1)
    }
}

fn match_tag(op: TagOp, id: u32, value: u32, ctx: &EvalContext<'_, '_>, st: &mut State) -> M {
    let inbound = ctx.direction == Direction::Inbound;
    let remote = ctx.remote.and_then(|m| m.tag(id));
    let ours = ctx.local.tag(id);
    // spec: vl2.md §15.3 TAG_SENDER / TAG_RECEIVER
    let soft_yes = |st: &mut State| {
        st.skip_drop = true;
        M::HardYes
    };
    match op {
        TagOp::Sender | TagOp::Receiver => {
            if st.super_accept {
                return soft_yes(st);
            }
            let remote_side = (op == TagOp::Sender) == inbound;
            if remote_side {
                match remote {
                    Some(r) => M::from(r == value),
                    None if op == TagOp::Receiver => soft_yes(st),
                    None => M::HardNo,
                }
            } else {
                match ours {
                    Some(l) => M::from(l == value),
                    None => M::HardNo,
                }
            }
        }
        _ => {
            // spec: vl2.md §15.3 TAGS_* (44..48)
            let Some(l) = ours else {
                return M::HardNo;
            };
            let Some(r) = remote else {
                return if inbound && !st.super_accept {
                    M::HardNo
                } else {
                    soft_yes(st)
                };
            };
            M::from(match op {
                TagOp::Difference => l.abs_diff(r) <= value,
                TagOp::BitwiseAnd => l & r == value,
                TagOp::BitwiseOr => l | r == value,
                TagOp::BitwiseXor => l ^ r == value,
                _ => l == value && r == value,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use RuleKind::*;

    fn ctx<'c, 'f>(
        frame: &'f [u8],
        direction: Direction,
        remote: Option<&'c Remote>,
        local: &'c Local,
    ) -> EvalContext<'c, 'f> {
        let (zt_source, zt_dest) = match direction {
            Direction::Inbound => (a(PEER), a(ME)),
            Direction::Outbound => (a(ME), a(PEER)),
        };
        EvalContext {
            direction,
            zt_source,
            zt_dest,
            frame: FrameInfo::parse(frame).unwrap(),
            remote: remote.map(|r| r as &dyn Membership),
            local,
            random: 0x8000_0000,
        }
    }

    fn run(rules: &[Rule], c: &EvalContext<'_, '_>) -> ListResult {
        evaluate_list(rules, c).result
    }

    /// Whether `[kind, ACCEPT]` and `[NOT kind, ACCEPT]` accept, inbound, default peers.
    fn both(kind: RuleKind, frame: &[u8]) -> (bool, bool) {
        let local = Local::me();
        let remote = Remote::default();
        both_in(kind, &ctx(frame, Direction::Inbound, Some(&remote), &local))
    }

    fn both_in(kind: RuleKind, c: &EvalContext<'_, '_>) -> (bool, bool) {
        let plain = run(&[m(kind.clone()), accept()], c) == ListResult::Accept;
        let negated = run(&[not(kind), accept()], c) == ListResult::Accept;
        (plain, negated)
    }

    const T: (bool, bool) = (true, false);
    const F: (bool, bool) = (false, true);
    const HARD_NO: (bool, bool) = (false, false);
    const HARD_YES: (bool, bool) = (true, true);

    #[test]
    fn frame_info_parses_and_rejects_short_frames() {
        let f = v4_udp(1, 2);
        let i = FrameInfo::parse(&f).unwrap();
        assert_eq!(
            (i.dest, i.source, i.ethertype, i.vlan_id),
            (MAC_ME, MAC_PEER, 0x0800, 0)
        );
        assert_eq!(i.payload, &f[14..]);
        assert_eq!(
            FrameInfo::parse(&f[..13]),
            Err(FrameError::TooShort { len: 13 })
        );
        assert_eq!(FrameInfo::parse(&f[..14]).unwrap().payload.len(), 0);
    }

    // spec: vl2.md §15.3 — every match type, plain and with NOT
    #[test]
    fn match_table() {
        let tcp4 = v4_tcp(40000, 22, Tcp::Syn);
        let tcp6 = v6_tcp(40000, 22, Tcp::Syn);
        let udp4 = v4_udp(5353, 53);
        let icmp4 = v4_icmp(8, 0);
        let icmp6 = v6_icmp(128, 0, b"ping");
        let arp = arp_request(V4_SRC, V4_DST);
        let v4net = |o: [u8; 4], bits| Ipv4Source {
            ip: Ipv4Addr::from(o),
            bits,
        };
        let v6net = |s: &str, bits| Ipv6Source {
            ip: s.parse().unwrap(),
            bits,
        };
        let tos = |mask, start, end| IpTos { mask, start, end };
        let icmp = |t, c, mc| Icmp {
            icmp_type: t,
            code: c,
            match_code: mc,
        };
        let dport = |start, end| DestPortRange { start, end };
        let sport = |start, end| SourcePortRange { start, end };
        type Case<'a> = (&'a str, RuleKind, &'a [u8], (bool, bool));
        let cases: Vec<Case<'_>> = vec![
            ("ztsrc", SourceZtAddress(a(PEER)), &tcp4, T),
            ("ztsrc other", SourceZtAddress(a(OTHER)), &tcp4, F),
            ("ztdest", DestZtAddress(a(ME)), &tcp4, T),
            ("ztdest other", DestZtAddress(a(PEER)), &tcp4, F),
            ("vlan 0", VlanId(0), &tcp4, T),
            ("vlan 5", VlanId(5), &tcp4, F),
            ("pcp 0", VlanPcp(0), &tcp4, T),
            ("pcp 3", VlanPcp(3), &tcp4, F),
            ("dei 0", VlanDei(0), &tcp4, T),
            ("dei 1", VlanDei(1), &tcp4, F),
            ("macsrc", MacSource(MAC_PEER), &tcp4, T),
            ("macsrc other", MacSource(MAC_ME), &tcp4, F),
            ("macdest", MacDest(MAC_ME), &tcp4, T),
            ("macdest other", MacDest(MAC_PEER), &tcp4, F),
            ("ipv4 src /24", v4net([10, 147, 17, 0], 24), &tcp4, T),
            ("ipv4 src /20", v4net([10, 147, 16, 0], 20), &tcp4, T),
            ("ipv4 src /28 miss", v4net([10, 147, 17, 0], 28), &tcp4, F),
            ("ipv4 src /0", v4net([1, 2, 3, 4], 0), &tcp4, T),
            ("ipv4 src /32", v4net(V4_SRC, 32), &tcp4, T),
            ("ipv4 src on v6", v4net([0; 4], 0), &tcp6, HARD_NO),
            ("ipv4 src on arp", v4net([0; 4], 0), &arp, HARD_NO),
            (
                "ipv4 dst",
                Ipv4Dest {
                    ip: Ipv4Addr::from(V4_DST),
                    bits: 32,
                },
                &udp4,
                T,
            ),
            (
                "ipv4 dst miss",
                Ipv4Dest {
                    ip: Ipv4Addr::from(V4_SRC),
                    bits: 32,
                },
                &udp4,
                F,
            ),
            (
                "ipv6 src /88",
                v6net("fd7c:55a8:da82:c903:1299:9300::", 88),
                &tcp6,
                T,
            ),
            (
                "ipv6 src /128 miss",
                v6net("fd7c:55a8:da82:c903:1299:9300::", 128),
                &tcp6,
                F,
            ),
            ("ipv6 src on v4", v6net("::", 0), &tcp4, HARD_NO),
            (
                "ipv6 dst",
                Ipv6Dest {
                    ip: v6_dst(),
                    bits: 128,
                },
                &tcp6,
                T,
            ),
            (
                "ipv6 dst miss",
                Ipv6Dest {
                    ip: v6_src(),
                    bits: 128,
                },
                &tcp6,
                F,
            ),
            ("tos v4 (0)", tos(0xff, 0, 0), &tcp4, T),
            ("tos v4 range miss", tos(0xff, 1, 10), &tcp4, F),
            ("tos on arp", tos(0, 0, 0), &arp, HARD_NO),
            ("tos v6", tos(0xff, 0, 0), &tcp6, T),
            ("proto tcp", IpProtocol(6), &tcp4, T),
            ("proto udp on tcp", IpProtocol(17), &tcp4, F),
            ("proto v6 tcp", IpProtocol(6), &tcp6, T),
            ("proto v6 icmp", IpProtocol(0x3a), &icmp6, T),
            ("proto on arp", IpProtocol(6), &arp, HARD_NO),
            ("ethertype", Ethertype(0x0806), &arp, T),
            ("ethertype miss", Ethertype(0x0800), &arp, F),
            ("icmp type any code", icmp(8, 0, false), &icmp4, HARD_YES),
            ("icmp type+code", icmp(8, 0, true), &icmp4, T),
            ("icmp code miss", icmp(8, 1, true), &icmp4, F),
            ("icmp type miss", icmp(0, 0, false), &icmp4, HARD_NO),
            ("icmp on tcp", icmp(8, 0, false), &tcp4, HARD_NO),
            ("icmp on arp", icmp(8, 0, false), &arp, HARD_NO),
            ("icmpv6 echo", icmp(128, 0, false), &icmp6, HARD_YES),
            ("icmpv6 type miss", icmp(129, 0, false), &icmp6, HARD_NO),
            ("dport 22", dport(22, 22), &tcp4, T),
            ("dport range", dport(1, 1024), &tcp6, T),
            ("dport miss", dport(80, 80), &tcp4, F),
            ("sport", sport(40000, 40010), &tcp4, T),
            ("sport miss", sport(22, 22), &tcp4, F),
            ("udp dport", dport(53, 53), &udp4, T),
            ("port on icmp is plain false", dport(0, 65535), &icmp4, F),
            ("port on arp", dport(0, 65535), &arp, HARD_NO),
            (
                "framesize",
                FrameSizeRange {
                    start: 0,
                    end: 1500,
                },
                &tcp4,
                T,
            ),
            (
                "framesize exact",
                FrameSizeRange {
                    start: (tcp4.len() - 14) as u16,
                    end: (tcp4.len() - 14) as u16,
                },
                &tcp4,
                T,
            ),
            (
                "framesize miss",
                FrameSizeRange { start: 0, end: 10 },
                &tcp4,
                F,
            ),
            ("chr syn", Characteristics(CHR_TCP_SYN), &tcp4, T),
            ("chr ack on syn", Characteristics(CHR_TCP_ACK), &tcp4, F),
            ("chr inbound", Characteristics(CHR_INBOUND), &arp, T),
            ("chr broadcast", Characteristics(CHR_BROADCAST), &arp, T),
            ("chr multicast", Characteristics(CHR_MULTICAST), &arp, T),
            (
                "chr broadcast unicast",
                Characteristics(CHR_BROADCAST),
                &tcp4,
                F,
            ),
            ("random p=max", Random(u32::MAX), &tcp4, T),
            ("random p=draw", Random(0x8000_0000), &tcp4, T),
            ("random p=draw-1", Random(0x7fff_ffff), &tcp4, F),
            (
                "unassigned",
                Other {
                    id: 20,
                    operand: vec![],
                },
                &tcp4,
                F,
            ),
        ];
        for (name, kind, frame, want) in cases {
            assert_eq!(both(kind, frame), want, "{name}");
        }
    }

    #[test]
    fn ipv6_extension_header_walk() {
        let f = with_hop_by_hop(v6_tcp(1234, 22, Tcp::Syn));
        assert_eq!(f[14 + 6], 0);
        assert_eq!(both(IpProtocol(6), &f), T);
        assert_eq!(both(DestPortRange { start: 22, end: 22 }, &f), T);
        assert_eq!(both(Characteristics(CHR_TCP_SYN), &f), T);
        let f = with_hop_by_hop(v6_icmp(128, 0, b"x"));
        assert_eq!(
            both(
                Icmp {
                    icmp_type: 128,
                    code: 0,
                    match_code: true
                },
                &f
            ),
            T
        );
        // a header length that runs past the frame: parse failure ⇒ hardNo
        let mut bad = with_hop_by_hop(v6_tcp(1234, 22, Tcp::Syn));
        bad[14 + 41] = 200;
        assert_eq!(both(IpProtocol(6), &bad), HARD_NO);
        assert_eq!(
            both(
                DestPortRange {
                    start: 0,
                    end: 65535
                },
                &bad
            ),
            HARD_NO
        );
        // an unknown next header is taken as final (no port-carrying protocol: plain false)
        let mut other = v6_tcp(1, 2, Tcp::Syn);
        other[14 + 6] = 50;
        assert_eq!(both(IpProtocol(50), &other), T);
        assert_eq!(
            both(
                DestPortRange {
                    start: 0,
                    end: 65535
                },
                &other
            ),
            F
        );
    }

    // spec: vl2.md §15.3 [quirk] — port 0 after the IPv6 walk is "no port"
    #[test]
    fn ipv6_port_zero_quirk() {
        assert_eq!(both(DestPortRange { start: 0, end: 0 }, &v4_udp(1, 0)), T);
        assert_eq!(both(DestPortRange { start: 0, end: 0 }, &v6_udp(1, 0)), F);
        assert_eq!(both(SourcePortRange { start: 0, end: 9 }, &v6_udp(0, 7)), F);
        assert_eq!(both(SourcePortRange { start: 0, end: 9 }, &v6_udp(7, 0)), T);
    }

    #[test]
    fn ip_tos_and_traffic_class() {
        let mut f = v4_tcp(1, 2, Tcp::Ack);
        f[14 + 1] = 0xb8; // DSCP EF
        assert_eq!(
            both(
                IpTos {
                    mask: 0xfc,
                    start: 0xb8,
                    end: 0xb8
                },
                &f
            ),
            T
        );
        assert_eq!(
            both(
                IpTos {
                    mask: 0x03,
                    start: 1,
                    end: 3
                },
                &f
            ),
            F
        );
        let mut f = v6_tcp(1, 2, Tcp::Ack);
        // traffic class 0xb8: version nibble 6, then b, then 8
        f[14] = 0x6b;
        f[15] = 0x80;
        assert_eq!(
            both(
                IpTos {
                    mask: 0xff,
                    start: 0xb8,
                    end: 0xb8
                },
                &f
            ),
            T
        );
        assert_eq!(
            both(
                IpTos {
                    mask: 0x0f,
                    start: 8,
                    end: 8
                },
                &f
            ),
            T
        );
        assert_eq!(
            both(
                IpTos {
                    mask: 0xff,
                    start: 0,
                    end: 0xb7
                },
                &f
            ),
            F
        );
    }

    // spec: vl2.md §15.4
    #[test]
    fn characteristics_bits() {
        let local = Local::me();
        let cf = |f: &[u8], dir| {
            let c = ctx(f, dir, None, &local);
            c.frame
                .characteristics(dir == Direction::Inbound, None, &local)
        };
        assert_eq!(
            cf(&v4_tcp(1, 2, Tcp::Syn), Direction::Outbound),
            CHR_TCP_SYN
        );
        assert_eq!(
            cf(&v4_tcp(1, 2, Tcp::SynAck), Direction::Inbound),
            CHR_INBOUND | CHR_TCP_SYN | CHR_TCP_ACK
        );
        assert_eq!(
            cf(&v6_tcp(1, 2, Tcp::Ack), Direction::Outbound),
            CHR_TCP_ACK
        );
        assert_eq!(cf(&v4_udp(1, 2), Direction::Outbound), 0);
        assert_eq!(
            cf(&arp_request(V4_SRC, V4_DST), Direction::Outbound),
            CHR_MULTICAST | CHR_BROADCAST
        );
        let mut mc = v6_udp(1, 2);
        mc[..6].copy_from_slice(&[0x33, 0x33, 0, 0, 0, 1]);
        assert_eq!(cf(&mc, Direction::Outbound), CHR_MULTICAST);
        // NS and reserved bits live in the low nibble of TCP header byte 12
        let mut f = v4_tcp(1, 2, Tcp::Syn);
        f[14 + 20 + 12] |= 0x0f;
        assert_eq!(
            cf(&f, Direction::Outbound),
            CHR_TCP_SYN | CHR_TCP_NS | CHR_TCP_RESERVED
        );
        let mut f = v6_tcp(1, 2, Tcp::Syn);
        f[14 + 40 + 12] |= 0x01;
        f[14 + 40 + 13] = 0xff;
        assert_eq!(cf(&f, Direction::Outbound), CHR_TCP_NS | 0xff);
        // a TCP header cut short: no flags, no panic
        let f = v4_tcp(1, 2, Tcp::Syn);
        assert_eq!(cf(&f[..14 + 20 + 13], Direction::Outbound), 0);
    }

    // spec: vl2.md §15.5
    #[test]
    fn sender_authentication_bits() {
        let auth = CHR_SENDER_IP_AUTHENTICATED | CHR_SENDER_MAC_AUTHENTICATED;
        let bits = |f: &[u8], dir, remote: Option<&Remote>, local: &Local| {
            let i = FrameInfo::parse(f).unwrap();
            i.characteristics(
                dir == Direction::Inbound,
                remote.map(|r| r as &dyn Membership),
                local,
            ) & auth
        };
        let peer_owns = Remote {
            ips: vec![v4(V4_SRC), IpAddr::V6(v6_src())],
            macs: vec![MAC_PEER],
            ..Default::default()
        };
        let nobody = Remote::default();
        let me = Local::me();
        let tcp4 = v4_tcp(1, 2, Tcp::Syn);
        assert_eq!(bits(&tcp4, Direction::Inbound, Some(&peer_owns), &me), auth);
        assert_eq!(bits(&tcp4, Direction::Inbound, Some(&nobody), &me), 0);
        assert_eq!(bits(&tcp4, Direction::Inbound, None, &me), 0);
        assert_eq!(
            bits(&v6_udp(1, 2), Direction::Inbound, Some(&peer_owns), &me),
            auth
        );
        // outbound: our own certificates of ownership
        let me_owns = Local {
            ips: vec![v4(V4_SRC)],
            ..Local::me()
        };
        assert_eq!(
            bits(&tcp4, Direction::Outbound, Some(&peer_owns), &me_owns),
            CHR_SENDER_IP_AUTHENTICATED
        );
        // ARP: sender protocol address
        let arp = arp_request(V4_SRC, V4_DST);
        assert_eq!(bits(&arp, Direction::Inbound, Some(&peer_owns), &me), auth);
        let arp_other = arp_request([1, 2, 3, 4], V4_DST);
        assert_eq!(
            bits(&arp_other, Direction::Inbound, Some(&peer_owns), &me),
            CHR_SENDER_MAC_AUTHENTICATED
        );
        // ICMPv6 NS: authenticated without a check
        let ns = v6_icmp(135, 0, &[0u8; 20]);
        assert_eq!(
            bits(&ns, Direction::Inbound, None, &me),
            CHR_SENDER_IP_AUTHENTICATED
        );
        // ICMPv6 NA: the target address is checked, not the source
        let na_target: Ipv6Addr = "2001:db8::7".parse().unwrap();
        let mut body = na_target.octets().to_vec();
        body.extend_from_slice(&[2, 1, 0, 0, 0, 0, 0, 0]);
        let na = v6_icmp(136, 0, &body);
        assert_eq!(
            bits(&na, Direction::Inbound, Some(&peer_owns), &me),
            CHR_SENDER_MAC_AUTHENTICATED
        );
        let owns_target = Remote {
            ips: vec![IpAddr::V6(na_target)],
            ..Default::default()
        };
        assert_eq!(
            bits(&na, Direction::Inbound, Some(&owns_target), &me),
            CHR_SENDER_IP_AUTHENTICATED
        );
        // NDP emulation: our own rfc4193 /88 and 6plane /40 prefixes count inbound
        let ndp = Local {
            ndp: true,
            rfc4193: Some(v6_dst()),
            ..Local::me()
        };
        let f = v6_udp(1, 2); // source shares our /88
        assert_eq!(
            bits(&f, Direction::Inbound, None, &ndp),
            CHR_SENDER_IP_AUTHENTICATED
        );
        assert_eq!(bits(&f, Direction::Outbound, None, &ndp), 0);
        let off = Local {
            ndp: false,
            ..ndp.clone()
        };
        assert_eq!(bits(&f, Direction::Inbound, None, &off), 0);
        let sixplane = Local {
            ndp: true,
            sixplane: Some("fd7c:55a8:da00::1".parse().unwrap()),
            ..Local::me()
        };
        assert_eq!(
            bits(&f, Direction::Inbound, None, &sixplane),
            CHR_SENDER_IP_AUTHENTICATED,
            "the /40 covers the first 5 bytes"
        );
    }

    // spec: vl2.md §15.3 tags
    #[test]
    fn tag_matches() {
        let f = v4_udp(1, 2);
        let local = Local {
            tags: vec![(1000, 100), (7, 0b1100)],
            ..Local::me()
        };
        let remote = Remote {
            tags: vec![(1000, 103), (7, 0b1010)],
            ..Default::default()
        };
        let empty = Remote::default();
        let tag = |op, id, value| Tag { op, id, value };
        let ib = ctx(&f, Direction::Inbound, Some(&remote), &local);
        let ob = ctx(&f, Direction::Outbound, Some(&remote), &local);
        let ib_unknown = ctx(&f, Direction::Inbound, Some(&empty), &local);
        let ob_unknown = ctx(&f, Direction::Outbound, None, &local);
        use TagOp::*;
        let cases: Vec<(&str, RuleKind, &EvalContext<'_, '_>, (bool, bool))> = vec![
            ("diff 3", tag(Difference, 1000, 3), &ib, T),
            ("diff 2", tag(Difference, 1000, 2), &ib, F),
            ("and", tag(BitwiseAnd, 7, 0b1000), &ib, T),
            ("and miss", tag(BitwiseAnd, 7, 0b1100), &ib, F),
            ("or", tag(BitwiseOr, 7, 0b1110), &ob, T),
            ("xor", tag(BitwiseXor, 7, 0b0110), &ob, T),
            ("equal differs", tag(Equal, 1000, 100), &ob, F),
            ("we lack the tag", tag(Difference, 5, 0), &ib, HARD_NO),
            (
                "remote unknown inbound",
                tag(Difference, 1000, 0),
                &ib_unknown,
                HARD_NO,
            ),
            (
                "remote unknown outbound",
                tag(Difference, 1000, 0),
                &ob_unknown,
                HARD_YES,
            ),
            ("sender inbound = remote", tag(Sender, 1000, 103), &ib, T),
            ("sender inbound miss", tag(Sender, 1000, 100), &ib, F),
            (
                "sender inbound unknown",
                tag(Sender, 1000, 103),
                &ib_unknown,
                HARD_NO,
            ),
            ("sender outbound = ours", tag(Sender, 1000, 100), &ob, T),
            ("sender outbound we lack", tag(Sender, 5, 0), &ob, HARD_NO),
            (
                "receiver outbound = remote",
                tag(Receiver, 1000, 103),
                &ob,
                T,
            ),
            (
                "receiver outbound unknown",
                tag(Receiver, 1000, 1),
                &ob_unknown,
                HARD_YES,
            ),
            ("receiver inbound = ours", tag(Receiver, 1000, 100), &ib, T),
            ("receiver inbound miss", tag(Receiver, 1000, 103), &ib, F),
        ];
        for (name, kind, c, want) in cases {
            assert_eq!(both_in(kind, c), want, "{name}");
        }
    }

    // hardYes with skipDrop: an unknown remote tag outbound lets the next DROP pass
    #[test]
    fn skip_drop_skips_exactly_one_drop() {
        let f = v4_udp(1, 2);
        let local = Local {
            tags: vec![(1, 1)],
            ..Local::me()
        };
        let c = ctx(&f, Direction::Outbound, None, &local);
        let eq = m(Tag {
            op: TagOp::Equal,
            id: 1,
            value: 1,
        });
        assert_eq!(run(&[eq.clone(), drop(), accept()], &c), ListResult::Accept);
        assert_eq!(run(&[eq.clone(), drop(), drop()], &c), ListResult::Drop);
        // inbound the same rule is a hard no: the group fails, the DROP is not reached
        let ci = ctx(&f, Direction::Inbound, None, &local);
        assert_eq!(run(&[eq, drop(), accept()], &ci), ListResult::Accept);
    }

    // spec: vl2.md §15.3 INTEGER_RANGE, big-endian quirk: read at index + 8 − n
    #[test]
    fn integer_range() {
        let mut f = v4_udp(1, 2);
        let payload_at = 14;
        // put 0x1234 at payload bytes 26..28 and 0x5678 at 20..22
        f[payload_at + 26] = 0x12;
        f[payload_at + 27] = 0x34;
        f[payload_at + 20] = 0x78;
        f[payload_at + 21] = 0x56;
        let ir = |start, end_delta, index, format| IntegerRange {
            start,
            end_delta,
            index,
            format,
        };
        // 16-bit big-endian at index 20 reads bytes 26..28
        assert_eq!(both(ir(0x1234, 0, 20, 15), &f), T);
        assert_eq!(both(ir(0x1200, 0x33, 20, 15), &f), F);
        assert_eq!(both(ir(0x1200, 0x34, 20, 15), &f), T);
        // 16-bit little-endian at index 20 reads bytes 20..22
        assert_eq!(both(ir(0x5678, 0, 20, 0x80 | 15), &f), T);
        // 4-bit big-endian: one byte at index + 7, masked to 4 bits
        assert_eq!(both(ir(0x4, 0, 20, 3), &f), T);
        // 64-bit: every byte of the 8
        let v = u64::from_be_bytes(f[payload_at + 20..payload_at + 28].try_into().unwrap());
        assert_eq!(both(ir(v, 0, 20, 63), &f), T);
        // out of the frame ⇒ 0
        assert_eq!(both(ir(0, 0, 60000, 31), &f), T);
        assert_eq!(both(ir(1, 10, 60000, 31), &f), F);
        assert_eq!(both(ir(0, 0, u16::MAX, 0x80 | 63), &f), T);
    }

    #[test]
    fn unassigned_matches_follow_flag_0x08() {
        let f = v4_udp(1, 2);
        let on = Local {
            unsupported: true,
            ..Local::me()
        };
        let c = ctx(&f, Direction::Inbound, None, &on);
        assert_eq!(
            both_in(
                Other {
                    id: 16,
                    operand: vec![1]
                },
                &c
            ),
            T
        );
        assert_eq!(
            both_in(
                Other {
                    id: 63,
                    operand: vec![]
                },
                &c
            ),
            T
        );
        assert_eq!(
            both(
                Other {
                    id: 52,
                    operand: vec![]
                },
                &f
            ),
            F
        );
    }

    #[test]
    fn random_draws_a_stream() {
        let f = v4_udp(1, 2);
        let local = Local::me();
        let mut c = ctx(&f, Direction::Outbound, None, &local);
        c.random = 10;
        let r = |p| m(Random(p));
        assert_eq!(run(&[r(10), accept()], &c), ListResult::Accept);
        assert_eq!(run(&[r(9), accept()], &c), ListResult::NoMatch);
        assert_eq!(run(&[r(0), accept()], &c), ListResult::NoMatch);
        c.random = 0;
        assert_eq!(run(&[r(0), accept()], &c), ListResult::Accept);
        // the second RANDOM draws the next value, not the same one again
        c.random = 10;
        assert_eq!(run(&[r(10), r(10), accept()], &c), ListResult::NoMatch);
    }

    // spec: vl2.md §15.2 — list semantics
    #[test]
    fn list_semantics() {
        let f = v4_tcp(40000, 22, Tcp::Syn);
        let local = Local::me();
        let c = ctx(&f, Direction::Inbound, None, &local);
        let yes = || Ethertype(0x0800);
        let no = || Ethertype(0x86dd);
        use ListResult::*;
        let cases: Vec<(&str, Vec<Rule>, ListResult)> = vec![
            ("empty", vec![], NoMatch),
            ("accept", vec![accept()], Accept),
            ("drop", vec![drop()], Drop),
            ("and true", vec![m(yes()), m(yes()), accept()], Accept),
            ("and false", vec![m(yes()), m(no()), accept()], NoMatch),
            ("or rescues", vec![m(no()), or(yes()), accept()], Accept),
            (
                "or after and",
                vec![m(no()), m(yes()), or(yes()), accept()],
                Accept,
            ),
            ("or false", vec![m(no()), or(no()), accept()], NoMatch),
            ("not", vec![not(no()), accept()], Accept),
            (
                "failed group resets at its action",
                vec![m(no()), drop(), accept()],
                Accept,
            ),
            (
                "hardNo beats NOT",
                vec![
                    not(Ipv6Source {
                        ip: Ipv6Addr::UNSPECIFIED,
                        bits: 0,
                    }),
                    accept(),
                ],
                NoMatch,
            ),
            (
                "hardNo with NOT rescued by OR",
                vec![
                    not(Ipv6Source {
                        ip: Ipv6Addr::UNSPECIFIED,
                        bits: 0,
                    }),
                    or(yes()),
                    accept(),
                ],
                Accept,
            ),
            (
                "hardYes beats NOT",
                vec![
                    not(Icmp {
                        icmp_type: 8,
                        code: 0,
                        match_code: false,
                    }),
                    accept(),
                ],
                NoMatch,
            ),
            ("break", vec![m(Break), accept()], NoMatch),
            (
                "break skipped when unmatched",
                vec![m(no()), m(Break), accept()],
                Accept,
            ),
            ("priority accepts", vec![m(Priority), drop()], Accept),
            (
                "reserved actions are no-ops",
                vec![
                    m(Other {
                        id: 7,
                        operand: vec![],
                    }),
                    m(Other {
                        id: 15,
                        operand: vec![],
                    }),
                    drop(),
                ],
                Drop,
            ),
        ];
        for (name, rules, want) in cases {
            assert_eq!(run(&rules, &c), want, "{name}");
        }
    }

    // spec: vl2.md §15.2 — TEE / WATCH / REDIRECT
    #[test]
    fn forwarding_actions() {
        let f = v4_tcp(40000, 22, Tcp::Syn);
        let flen = f.len() - 14;
        let local = Local::me();
        let ci = ctx(&f, Direction::Inbound, None, &local);
        let co = ctx(&f, Direction::Outbound, None, &local);
        let tee = |addr, len| m(Tee(fwd(addr, len)));
        let watch = |addr, len| m(Watch(fwd(addr, len)));
        let redirect = |addr| m(Redirect(fwd(addr, 0)));

        let o = evaluate_list(&[tee(OTHER, 16), accept()], &co);
        assert_eq!(o.result, ListResult::Accept);
        assert_eq!(
            o.copy,
            Some(CopyTarget {
                address: a(OTHER),
                length: 16,
                watch: false
            })
        );
        let o = evaluate_list(&[watch(OTHER, 0)], &co);
        assert_eq!(o.result, ListResult::NoMatch);
        assert_eq!(o.copy.map(|c| (c.length, c.watch)), Some((flen, true)));
        let o = evaluate_list(&[tee(OTHER, 60000), accept()], &co);
        assert_eq!(o.copy.map(|c| c.length), Some(flen));
        // the later TEE wins
        let o = evaluate_list(&[tee(OTHER, 1), watch(0x1122334455, 2), accept()], &co);
        assert_eq!(o.copy.map(|c| c.address), Some(a(0x1122334455)));
        // copies to the frame's own endpoints are ignored
        for c in [&ci, &co] {
            let o = evaluate_list(&[tee(PEER, 0), tee(ME, 0), watch(PEER, 0), accept()], c);
            assert_eq!(o.copy, None);
        }
        // inbound, naming us: super-accept at once
        let ci_other = EvalContext {
            zt_source: a(OTHER),
            ..ci
        };
        let o = evaluate_list(
            &[tee(ME, 0), drop()],
            &EvalContext {
                zt_dest: a(PEER),
                ..ci_other
            },
        );
        assert_eq!(o.result, ListResult::SuperAccept);
        let o = evaluate_list(&[redirect(OTHER), accept()], &co);
        assert_eq!((o.result, o.zt_dest), (ListResult::Redirect, a(OTHER)));
        let o = evaluate_list(&[redirect(PEER), accept()], &co);
        assert_eq!((o.result, o.zt_dest), (ListResult::Accept, a(PEER)));
        // an unmatched TEE naming us inbound marks the evaluation super-accepting
        let no = m(Ethertype(0x86dd));
        let o = evaluate_list(
            &[no.clone(), watch(ME, 0), accept()],
            &EvalContext {
                zt_dest: a(PEER),
                ..ci_other
            },
        );
        assert_eq!(o.result, ListResult::SuperAccept);
        let o = evaluate_list(&[no.clone(), watch(ME, 0), accept()], &co);
        assert_eq!(o.result, ListResult::Accept);
        let o = evaluate_list(&[no, redirect(OTHER), accept()], &co);
        assert_eq!((o.result, o.zt_dest), (ListResult::Accept, a(PEER)));
    }

    fn adhoc_rules(first: u16, last: u16) -> Vec<Rule> {
        // spec: vl2.md §1.2 form A, the 14 rules in order
        vec![
            not(Ethertype(0x86dd)),
            drop(),
            m(IpProtocol(0x3a)),
            accept(),
            m(IpProtocol(0x11)),
            or(IpProtocol(0x06)),
            m(DestPortRange {
                start: first,
                end: last,
            }),
            accept(),
            not(Characteristics(CHR_TCP_SYN)),
            accept(),
            m(Characteristics(CHR_TCP_SYN)),
            m(Characteristics(CHR_TCP_ACK)),
            accept(),
            drop(),
        ]
    }

    #[test]
    fn adhoc_network_rule_table() {
        let rules = adhoc_rules(0x16, 0x16);
        let mut bin = Vec::new();
        super::super::encode_all(&rules, &mut bin);
        assert_eq!(super::super::decode_all(&bin, 1024).unwrap(), rules);
        let local = Local::me();
        use ListResult::*;
        let cases: Vec<(&str, Vec<u8>, ListResult)> = vec![
            ("IPv4 dropped", v4_tcp(40000, 22, Tcp::Syn), Drop),
            ("ARP dropped", arp_request(V4_SRC, V4_DST), Drop),
            ("ICMPv6 always", v6_icmp(128, 0, b"x"), Accept),
            ("ICMPv6 NS", v6_icmp(135, 0, &[0; 20]), Accept),
            ("UDP in range", v6_udp(999, 22), Accept),
            ("TCP SYN in range", v6_tcp(40000, 22, Tcp::Syn), Accept),
            ("TCP SYN out of range", v6_tcp(40000, 80, Tcp::Syn), Drop),
            ("TCP SYN-ACK reply", v6_tcp(80, 40000, Tcp::SynAck), Accept),
            ("TCP without SYN", v6_tcp(80, 40000, Tcp::Ack), Accept),
            // no TCP flags on UDP: "NOT characteristics SYN" holds
            ("UDP out of range", v6_udp(999, 80), Accept),
            (
                "TCP SYN in range behind a hop-by-hop header",
                with_hop_by_hop(v6_tcp(40000, 22, Tcp::Syn)),
                Accept,
            ),
        ];
        for dir in [Direction::Inbound, Direction::Outbound] {
            for (name, f, want) in &cases {
                let c = ctx(f, dir, None, &local);
                assert_eq!(run(&rules, &c), *want, "{name} {dir:?}");
            }
        }
    }

    /// xorshift64*: a deterministic generator for the fuzz-style test.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn random_rules(rng: &mut Rng) -> Vec<Rule> {
        let mut blob = Vec::new();
        for _ in 0..rng.below(24) {
            if rng.below(8) == 0 {
                // a TEE / WATCH / REDIRECT to one of the small addresses the contexts use
                let kind = 2 + rng.below(3) as u8;
                blob.extend_from_slice(&[kind, 14, 0, 0, 0, 0, 0, 0, 0, rng.below(4) as u8]);
                blob.extend_from_slice(&[0, 0, 0, 0, 0, rng.below(80) as u8]);
                continue;
            }
            let t = rng.next() as u8;
            let id = t & 0x3f;
            let len = super::super::needed_len(id).unwrap_or(rng.below(6) as usize);
            blob.push(t);
            blob.push(len as u8);
            for _ in 0..len {
                // small values make addresses and tag ids collide with the mocks often
                let b = if rng.below(2) == 0 {
                    rng.below(4) as u8
                } else {
                    rng.next() as u8
                };
                blob.push(b);
            }
        }
        super::super::decode_all(&blob, 1024).expect("well-formed blob")
    }

    fn random_frame(rng: &mut Rng) -> Vec<u8> {
        let templates = [
            v4_tcp(1, 22, Tcp::Syn),
            v6_tcp(1, 22, Tcp::SynAck),
            with_hop_by_hop(v6_udp(1, 2)),
            v4_icmp(8, 0),
            v6_icmp(135, 0, &[0; 20]),
            arp_request(V4_SRC, V4_DST),
        ];
        let mut f = if rng.below(3) == 0 {
            (0..rng.below(120)).map(|_| rng.next() as u8).collect()
        } else {
            templates[rng.below(templates.len() as u64) as usize].clone()
        };
        // corrupt a few bytes and maybe cut the frame short
        for _ in 0..rng.below(4) {
            if !f.is_empty() {
                let i = rng.below(f.len() as u64) as usize;
                f[i] = rng.next() as u8;
            }
        }
        if rng.below(2) == 0 && !f.is_empty() {
            f.truncate(rng.below(f.len() as u64) as usize);
        }
        f
    }

    #[test]
    fn random_frames_and_rules_never_panic() {
        let mut rng = Rng(0x5eed_1234_abcd_ef01);
        let local = Local {
            tags: vec![(0, 1), (1, 2)],
            ips: vec![v4(V4_SRC)],
            ndp: true,
            sixplane: Some("fc00::1".parse().unwrap()),
            rfc4193: Some(v6_dst()),
            unsupported: true,
            address: 1,
            ..Local::me()
        };
        let remote = Remote {
            tags: vec![(0, 3), (2, 2)],
            macs: vec![MAC_PEER],
            ..Default::default()
        };
        let mut outcomes = [0usize; 5];
        for i in 0..4000 {
            let f = random_frame(&mut rng);
            let Ok(frame) = FrameInfo::parse(&f) else {
                assert!(f.len() < 14);
                continue;
            };
            let rules = random_rules(&mut rng);
            let cap = random_rules(&mut rng);
            let direction = if i % 2 == 0 {
                Direction::Inbound
            } else {
                Direction::Outbound
            };
            let c = EvalContext {
                direction,
                zt_source: a(rng.below(4)),
                zt_dest: a(rng.below(4)),
                frame,
                remote: (i % 3 != 0).then_some(&remote as &dyn Membership),
                local: &local,
                random: rng.next() as u32,
            };
            let o = evaluate_list(&rules, &c);
            outcomes[o.result as usize] += 1;
            if let Some(copy) = o.copy {
                assert!(copy.length <= frame.payload.len());
            }
            let caps: [(u32, &[Rule]); 1] = [(1, &cap)];
            let _ = super::super::filter::outbound(&rules, &caps, &c, i % 5 != 0);
            let _ = super::super::filter::inbound(&rules, &caps, &c);
        }
        // the generator reaches every verdict
        assert!(outcomes.iter().all(|&n| n > 0), "{outcomes:?}");
    }
}
