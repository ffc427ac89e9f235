//! Outbound and inbound filtering: base rules, then capabilities. spec: vl2.md §15.6
//!
//! The functions decide; the caller (the protocol core) acts: it sends the copies and the
//! redirected frame as EXT_FRAME with the flags carried in the verdict (vl2.md §7.2), and
//! delivers or sends the original frame according to [`Decision`].

use std::net::{IpAddr, Ipv6Addr};

use crate::address::{Address, NetworkId};
use crate::mac::Mac;
use crate::netaddr;
use crate::netconf::NetworkConfig;

use super::Rule;
use super::eval::{CopyTarget, Direction, EvalContext, ListResult, LocalView, evaluate_list};

/// EXT_FRAME flags of an outbound TEE copy. spec: vl2.md §7.2
pub const EXT_FRAME_FLAGS_OUTBOUND_TEE: u8 = 0x02;
/// EXT_FRAME flags of an outbound WATCH copy (ACK requested + 0x04 + 0x02).
pub const EXT_FRAME_FLAGS_OUTBOUND_WATCH: u8 = 0x16;
/// EXT_FRAME flags of an outbound REDIRECT.
pub const EXT_FRAME_FLAGS_OUTBOUND_REDIRECT: u8 = 0x04;
/// EXT_FRAME flags of an inbound TEE copy.
pub const EXT_FRAME_FLAGS_INBOUND_TEE: u8 = 0x08;
/// EXT_FRAME flags of an inbound WATCH copy (ACK requested + 0x08 + 0x04).
pub const EXT_FRAME_FLAGS_INBOUND_WATCH: u8 = 0x1c;
/// EXT_FRAME flags of an inbound REDIRECT.
pub const EXT_FRAME_FLAGS_INBOUND_REDIRECT: u8 = 0x0a;

/// What happens to the original frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Not sent / not delivered (also the case for an inbound REDIRECT).
    Drop,
    /// Sent (outbound; unless [`FilterVerdict::redirect`] replaces it) or delivered (inbound).
    Accept,
    /// Inbound only: delivered regardless of the EXT_FRAME bridging checks (we are a
    /// TEE/WATCH/REDIRECT target). spec: vl2.md §7.2
    SuperAccept,
}

/// A copy the caller sends as EXT_FRAME (`to` = dest MAC, `from` = source MAC, ethertype, the
/// first `length` payload bytes), LZ4-compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameCopy {
    /// Node that gets the copy.
    pub address: Address,
    /// Bytes of the payload to copy.
    pub length: usize,
    /// WATCH (ACK requested) rather than TEE.
    pub watch: bool,
    /// The EXT_FRAME flags byte to send it with.
    pub flags: u8,
}

/// The whole frame goes to `address` as EXT_FRAME with `flags` instead of its original route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Redirect {
    /// The new destination.
    pub address: Address,
    /// The EXT_FRAME flags byte.
    pub flags: u8,
}

/// The outcome of filtering one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FilterVerdict {
    /// What happens to the original frame.
    pub decision: Decision,
    /// Id of the capability that accepted, when the base rules did not decide.
    pub capability: Option<u32>,
    /// The TEE/WATCH copy of the capability that accepted (sent first).
    pub capability_copy: Option<FrameCopy>,
    /// The TEE/WATCH copy set by the base rules (sent on accept).
    pub base_copy: Option<FrameCopy>,
    /// Outbound: send the whole frame here and **not** to the original destination.
    /// Inbound: forward it here; the decision is then [`Decision::Drop`].
    pub redirect: Option<Redirect>,
}

impl FilterVerdict {
    const DROP: FilterVerdict = FilterVerdict {
        decision: Decision::Drop,
        capability: None,
        capability_copy: None,
        base_copy: None,
        redirect: None,
    };

    /// The copies to send, in order (capability first, then base rules; at most two).
    pub fn copies(&self) -> impl Iterator<Item = &FrameCopy> {
        self.capability_copy.iter().chain(self.base_copy.iter())
    }

    /// Whether the original frame goes to its destination (outbound) or to the tap (inbound):
    /// accepted and not redirected.
    pub fn passes(&self) -> bool {
        self.decision != Decision::Drop && self.redirect.is_none()
    }
}

fn frame_copy(c: CopyTarget, inbound: bool) -> FrameCopy {
    let flags = match (inbound, c.watch) {
        (false, false) => EXT_FRAME_FLAGS_OUTBOUND_TEE,
        (false, true) => EXT_FRAME_FLAGS_OUTBOUND_WATCH,
        (true, false) => EXT_FRAME_FLAGS_INBOUND_TEE,
        (true, true) => EXT_FRAME_FLAGS_INBOUND_WATCH,
    };
    FrameCopy {
        address: c.address,
        length: c.length,
        watch: c.watch,
        flags,
    }
}

/// The accepted list: which capability (if any), the final destination, the copies.
struct Accepted {
    decision: Decision,
    capability: Option<u32>,
    capability_copy: Option<CopyTarget>,
    zt_dest: Address,
}

/// Base rules, then capabilities in the order given, stopping at the first that accepts.
fn run(
    base: &[Rule],
    caps: &[(u32, &[Rule])],
    ctx: &EvalContext<'_, '_>,
) -> (Option<Accepted>, Option<CopyTarget>) {
    let b = evaluate_list(base, ctx);
    let accepted = |r: ListResult| match r {
        ListResult::Accept | ListResult::Redirect => Some(Decision::Accept),
        ListResult::SuperAccept => Some(Decision::SuperAccept),
        ListResult::Drop | ListResult::NoMatch => None,
    };
    match b.result {
        ListResult::Drop => (None, b.copy),
        ListResult::NoMatch => {
            for (id, rules) in caps {
                // Each capability starts from the original destination.
                let o = evaluate_list(rules, ctx);
                if let Some(decision) = accepted(o.result) {
                    let a = Accepted {
                        decision,
                        capability: Some(*id),
                        capability_copy: o.copy,
                        zt_dest: o.zt_dest,
                    };
                    return (Some(a), b.copy);
                }
            }
            (None, b.copy)
        }
        r => {
            let a = Accepted {
                decision: accepted(r).unwrap_or(Decision::Accept),
                capability: None,
                capability_copy: None,
                zt_dest: b.zt_dest,
            };
            (Some(a), b.copy)
        }
    }
}

/// Filters a frame from our tap. `ctx.zt_source` is us, `ctx.zt_dest` the destination node
/// (zero for multicast and the first pass of bridged sends), `ctx.remote` the destination's
/// membership if any; `ctx.direction` is forced to outbound. `capabilities` are *our* capabilities
/// sorted by id. `tee_allowed` is false for the per-recipient second pass of multicast and bridge
/// sends. spec: vl2.md §15.6 (outbound)
pub fn outbound(
    base: &[Rule],
    capabilities: &[(u32, &[Rule])],
    ctx: &EvalContext<'_, '_>,
    tee_allowed: bool,
) -> FilterVerdict {
    let ctx = EvalContext {
        direction: Direction::Outbound,
        ..*ctx
    };
    let (Some(a), base_copy) = run(base, capabilities, &ctx) else {
        return FilterVerdict::DROP;
    };
    let copy = |c: Option<CopyTarget>| c.filter(|_| tee_allowed).map(|c| frame_copy(c, false));
    let redirect =
        (a.zt_dest != ctx.zt_dest && a.zt_dest != Address::default()).then_some(Redirect {
            address: a.zt_dest,
            flags: EXT_FRAME_FLAGS_OUTBOUND_REDIRECT,
        });
    FilterVerdict {
        // no super-accept outbound
        decision: Decision::Accept,
        capability: a.capability,
        capability_copy: copy(a.capability_copy),
        base_copy: copy(base_copy),
        redirect,
    }
}

/// Filters a frame from the network. `ctx.zt_source` is the sender, `ctx.zt_dest` us,
/// `ctx.remote` the sender's membership; `ctx.direction` is forced to inbound.
/// `sender_capabilities` are the valid capabilities the sender presented (any order).
/// spec: vl2.md §15.6 (inbound)
pub fn inbound(
    base: &[Rule],
    sender_capabilities: &[(u32, &[Rule])],
    ctx: &EvalContext<'_, '_>,
) -> FilterVerdict {
    let ctx = EvalContext {
        direction: Direction::Inbound,
        ..*ctx
    };
    let (Some(a), base_copy) = run(base, sender_capabilities, &ctx) else {
        return FilterVerdict::DROP;
    };
    let redirect =
        (a.zt_dest != ctx.zt_dest && a.zt_dest != Address::default()).then_some(Redirect {
            address: a.zt_dest,
            flags: EXT_FRAME_FLAGS_INBOUND_REDIRECT,
        });
    FilterVerdict {
        decision: if redirect.is_some() {
            Decision::Drop
        } else {
            a.decision
        },
        capability: a.capability,
        capability_copy: a.capability_copy.map(|c| frame_copy(c, true)),
        base_copy: base_copy.map(|c| frame_copy(c, true)),
        redirect,
    }
}

/// Our own side of a rules evaluation, read from our network config: our address, our tags,
/// what our COOs own, NDP emulation and our managed IPv6 addresses. Shared by the control
/// plane's slow path and the data plane's fast path. spec: vl2.md §15.4
#[derive(Debug, Clone, Copy)]
pub struct OwnView<'a> {
    /// Our address.
    pub me: Address,
    /// The network.
    pub network_id: NetworkId,
    /// Our config on it.
    pub config: &'a NetworkConfig,
}

impl OwnView<'_> {
    fn has_static(&self, ip: Ipv6Addr) -> bool {
        self.config
            .static_ips
            .iter()
            .any(|n| n.addr() == IpAddr::V6(ip))
    }
}

impl LocalView for OwnView<'_> {
    fn address(&self) -> Address {
        self.me
    }
    fn tag(&self, id: u32) -> Option<u32> {
        self.config
            .tags
            .iter()
            .find(|t| t.id() == id)
            .map(|t| t.value())
    }
    fn owns_ip(&self, ip: IpAddr) -> bool {
        self.config.coos.iter().any(|c| c.owns_ip(ip))
    }
    fn owns_mac(&self, mac: Mac) -> bool {
        self.config.coos.iter().any(|c| c.owns_mac(mac))
    }
    fn ndp_emulation(&self) -> bool {
        self.config.ndp_emulation()
    }
    fn sixplane_address(&self) -> Option<Ipv6Addr> {
        let a = netaddr::sixplane(self.network_id, self.me);
        self.has_static(a).then_some(a)
    }
    fn rfc4193_address(&self) -> Option<Ipv6Addr> {
        let a = netaddr::rfc4193(self.network_id, self.me);
        self.has_static(a).then_some(a)
    }
    fn unsupported_match_result(&self) -> bool {
        self.config.flags & crate::netconf::FLAG_RULES_RESULT_OF_UNSUPPORTED_MATCH != 0
    }
}

/// One frame between us and another member, in one direction: what both planes hand the rules
/// VM. spec: vl2.md §15.6
#[derive(Clone, Copy)]
#[allow(missing_debug_implementations)]
pub struct FrameCheck<'a> {
    /// Our side (address, network, config: base rules and our capabilities).
    pub own: OwnView<'a>,
    /// The other member: the sender inbound, the destination outbound (zero for multicast and
    /// the first pass of bridged sends).
    pub remote: Address,
    /// The other member's valid credentials, if it is known.
    pub membership: Option<&'a dyn super::eval::Membership>,
    /// The capabilities the sender presented (inbound only).
    pub sender_capabilities: &'a [(u32, &'a [Rule])],
    /// The frame.
    pub frame: super::eval::FrameInfo<'a>,
    /// Received from the network (else read from our port).
    pub inbound: bool,
    /// Whether TEE/WATCH copies may be asked for (outbound).
    pub tee_allowed: bool,
    /// The RANDOM match's input.
    pub random: u32,
}

/// Runs the inbound or outbound filter for `f`: ztSource/ztDest from the direction, our
/// capabilities outbound, the sender's inbound. spec: vl2.md §15.6
pub fn check_frame(f: FrameCheck<'_>) -> FilterVerdict {
    let me = f.own.me;
    let ctx = EvalContext {
        direction: if f.inbound {
            Direction::Inbound
        } else {
            Direction::Outbound
        },
        zt_source: if f.inbound { f.remote } else { me },
        zt_dest: if f.inbound { me } else { f.remote },
        frame: f.frame,
        remote: f.membership,
        local: &f.own,
        random: f.random,
    };
    let c = f.own.config;
    if f.inbound {
        inbound(&c.rules, f.sender_capabilities, &ctx)
    } else {
        let caps: Vec<(u32, &[Rule])> =
            c.capabilities.iter().map(|k| (k.id(), k.rules())).collect();
        outbound(&c.rules, &caps, &ctx, f.tee_allowed)
    }
}

#[cfg(test)]
mod tests {
    use super::super::RuleKind::{self, DestPortRange, Ethertype, IpProtocol, Tag, Tee, Watch};
    use super::super::TagOp;
    use super::super::eval::{FrameInfo, LocalView, Membership};
    use super::super::testutil::*;
    use super::*;

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
            local: local as &dyn LocalView,
            random: 0,
        }
    }

    fn ssh_cap() -> Vec<Rule> {
        // the capability of vl2.md §11.1 / §15.8: ipprotocol tcp, dport 22, accept
        vec![
            m(IpProtocol(6)),
            m(DestPortRange { start: 22, end: 22 }),
            accept(),
        ]
    }

    #[test]
    fn capability_after_base_rules() {
        let local = Local::me();
        let cap = ssh_cap();
        let caps: [(u32, &[Rule]); 1] = [(1000, &cap)];
        // base: ARP passes, UDP is dropped, the rest falls through to the capabilities
        let base = vec![m(Ethertype(0x0806)), accept(), m(IpProtocol(17)), drop()];
        for dir in [Direction::Inbound, Direction::Outbound] {
            let ssh = v4_tcp(40000, 22, Tcp::Syn);
            let c = ctx(&ssh, dir, None, &local);
            let v = if dir == Direction::Inbound {
                inbound(&base, &caps, &c)
            } else {
                outbound(&base, &caps, &c, true)
            };
            assert_eq!((v.decision, v.capability), (Decision::Accept, Some(1000)));
            assert!(v.passes());
            let web = v4_tcp(40000, 80, Tcp::Syn);
            let c = ctx(&web, dir, None, &local);
            assert_eq!(outbound(&base, &caps, &c, true), FilterVerdict::DROP);
            assert_eq!(inbound(&base, &caps, &c), FilterVerdict::DROP);
            let udp = v4_udp(1, 22);
            let c = ctx(&udp, dir, None, &local);
            assert_eq!(outbound(&base, &caps, &c, true).decision, Decision::Drop);
            let arp = arp_request(V4_SRC, V4_DST);
            let c = ctx(&arp, dir, None, &local);
            let v = outbound(&base, &caps, &c, true);
            assert_eq!((v.decision, v.capability), (Decision::Accept, None));
        }
        // a base DROP that applies is final: capabilities are consulted only on NO_MATCH
        let ssh = v4_tcp(40000, 22, Tcp::Syn);
        let c = ctx(&ssh, Direction::Outbound, None, &local);
        assert_eq!(
            outbound(&[drop()], &caps, &c, true).decision,
            Decision::Drop
        );
        // no capabilities and no match: rejected
        assert_eq!(outbound(&[], &[], &c, true).decision, Decision::Drop);
        // the first accepting capability (in the order given) wins
        let any: Vec<Rule> = vec![accept()];
        let caps: [(u32, &[Rule]); 2] = [(5, &[drop()]), (9, &any)];
        assert_eq!(outbound(&[], &caps, &c, true).capability, Some(9));
    }

    // spec: vl2.md §15.8 example — department tags must match (difference 0)
    #[test]
    fn tags_difference_example() {
        let rule = vec![
            m(Tag {
                op: TagOp::Difference,
                id: 1000,
                value: 0,
            }),
            accept(),
            drop(),
        ];
        let sales = Local {
            tags: vec![(1000, 100)],
            ..Local::me()
        };
        let same = Remote {
            tags: vec![(1000, 100)],
            ..Default::default()
        };
        let other = Remote {
            tags: vec![(1000, 200)],
            ..Default::default()
        };
        let none = Remote::default();
        let f = v4_udp(1, 2);
        use Direction::{Inbound, Outbound};
        let verdict = |dir, remote| {
            let c = ctx(&f, dir, Some(remote), &sales);
            if dir == Inbound {
                inbound(&rule, &[], &c).decision
            } else {
                outbound(&rule, &[], &c, true).decision
            }
        };
        assert_eq!(verdict(Inbound, &same), Decision::Accept);
        assert_eq!(verdict(Outbound, &same), Decision::Accept);
        assert_eq!(verdict(Inbound, &other), Decision::Drop);
        assert_eq!(verdict(Outbound, &other), Decision::Drop);
        // remote tag unknown: inbound hard no (→ DROP), outbound hard yes (→ ACCEPT)
        assert_eq!(verdict(Inbound, &none), Decision::Drop);
        assert_eq!(verdict(Outbound, &none), Decision::Accept);
    }

    #[test]
    fn tee_and_watch_copies() {
        let local = Local::me();
        let f = v4_tcp(40000, 22, Tcp::Syn);
        let flen = f.len() - 14;
        let tee = vec![m(Tee(fwd(OTHER, 32))), accept()];
        let watch = vec![m(Watch(fwd(OTHER, 0))), accept()];
        let co = ctx(&f, Direction::Outbound, None, &local);
        let ci = ctx(&f, Direction::Inbound, None, &local);

        let v = outbound(&tee, &[], &co, true);
        let copy = FrameCopy {
            address: a(OTHER),
            length: 32,
            watch: false,
            flags: EXT_FRAME_FLAGS_OUTBOUND_TEE,
        };
        assert_eq!(v.base_copy, Some(copy));
        assert!(v.passes());
        assert_eq!(v.copies().count(), 1);
        // no TEE on the per-recipient second pass
        assert_eq!(outbound(&tee, &[], &co, false).base_copy, None);
        let v = outbound(&watch, &[], &co, true);
        assert_eq!(
            v.base_copy.map(|c| (c.flags, c.length, c.watch)),
            Some((EXT_FRAME_FLAGS_OUTBOUND_WATCH, flen, true))
        );
        let v = inbound(&tee, &[], &ci);
        assert_eq!(
            v.base_copy.map(|c| c.flags),
            Some(EXT_FRAME_FLAGS_INBOUND_TEE)
        );
        let v = inbound(&watch, &[], &ci);
        assert_eq!(
            v.base_copy.map(|c| c.flags),
            Some(EXT_FRAME_FLAGS_INBOUND_WATCH)
        );
        // a dropped frame sends no copy
        let tee_drop = vec![m(Tee(fwd(OTHER, 0))), drop()];
        assert_eq!(outbound(&tee_drop, &[], &co, true), FilterVerdict::DROP);
        // a TEE in the base rules that does not decide, then a capability with its own copy:
        // both copies go out, the capability's first
        let base = vec![m(Tee(fwd(OTHER, 8)))];
        let cap = vec![m(Watch(fwd(0x1122334455, 0))), accept()];
        let caps: [(u32, &[Rule]); 1] = [(3, &cap)];
        let v = outbound(&base, &caps, &co, true);
        let copies: Vec<_> = v.copies().map(|c| (c.address, c.flags)).collect();
        assert_eq!(
            copies,
            vec![
                (a(0x1122334455), EXT_FRAME_FLAGS_OUTBOUND_WATCH),
                (a(OTHER), EXT_FRAME_FLAGS_OUTBOUND_TEE)
            ]
        );
        assert_eq!(outbound(&base, &caps, &co, false).copies().count(), 0);
        let v = inbound(&base, &caps, &ci);
        let flags: Vec<_> = v.copies().map(|c| c.flags).collect();
        assert_eq!(
            flags,
            vec![EXT_FRAME_FLAGS_INBOUND_WATCH, EXT_FRAME_FLAGS_INBOUND_TEE]
        );
    }

    #[test]
    fn redirects() {
        let local = Local::me();
        let f = v4_tcp(40000, 22, Tcp::Syn);
        let rules = vec![m(RuleKind::Redirect(fwd(OTHER, 0))), accept()];
        let co = ctx(&f, Direction::Outbound, None, &local);
        let v = outbound(&rules, &[], &co, true);
        assert_eq!(v.decision, Decision::Accept);
        assert_eq!(
            v.redirect,
            Some(Redirect {
                address: a(OTHER),
                flags: EXT_FRAME_FLAGS_OUTBOUND_REDIRECT
            })
        );
        assert!(!v.passes(), "the original is not sent");
        // redirect applies even on the no-TEE pass
        assert!(outbound(&rules, &[], &co, false).redirect.is_some());
        let ci = ctx(&f, Direction::Inbound, None, &local);
        let v = inbound(&rules, &[], &ci);
        assert_eq!(v.decision, Decision::Drop);
        assert_eq!(
            v.redirect.map(|r| r.flags),
            Some(EXT_FRAME_FLAGS_INBOUND_REDIRECT)
        );
        // a capability's REDIRECT counts too
        let caps: [(u32, &[Rule]); 1] = [(1, &rules)];
        let v = outbound(&[], &caps, &co, true);
        assert_eq!(v.redirect.map(|r| r.address), Some(a(OTHER)));
        // multicast first pass: zt dest zero, a REDIRECT gives a non-zero target
        let mc = EvalContext {
            zt_dest: Address::default(),
            ..co
        };
        assert_eq!(
            outbound(&rules, &[], &mc, true).redirect.map(|r| r.address),
            Some(a(OTHER))
        );
    }

    // We are the TEE / REDIRECT target: inbound super-accept.
    #[test]
    fn super_accept_as_a_target() {
        let local = Local::me();
        let f = v4_tcp(40000, 22, Tcp::Syn);
        // the sender's rules teed the frame to us; our copy of the same rules sees it inbound
        // from the sender with us as the destination of the copy
        let rules = vec![m(Tee(fwd(ME, 0))), m(Ethertype(0x86dd)), drop()];
        let mut ci = ctx(&f, Direction::Inbound, None, &local);
        ci.zt_dest = a(OTHER);
        let v = inbound(&rules, &[], &ci);
        assert_eq!(v.decision, Decision::SuperAccept);
        assert!(v.passes());
        // outbound never super-accepts
        let co = ctx(&f, Direction::Outbound, None, &local);
        let v = outbound(&[m(Watch(fwd(ME, 0))), drop()], &[], &co, true);
        assert_eq!(v.decision, Decision::Drop);
        // unmatched TEE to us, then ACCEPT: super-accept, and from a capability too
        let caps_rules = vec![m(Ethertype(0x86dd)), m(Tee(fwd(ME, 0))), accept()];
        let caps: [(u32, &[Rule]); 1] = [(2, &caps_rules)];
        let v = inbound(&[], &caps, &ctx(&f, Direction::Inbound, None, &local));
        assert_eq!((v.decision, v.capability), (Decision::SuperAccept, Some(2)));
    }
}
