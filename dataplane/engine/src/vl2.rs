//! The per-frame VL2 fast path: unicast FRAME/EXT_FRAME between this node's TAP and members
//! that passed the gate, with the network's rules evaluated here. Everything unusual — multicast,
//! bridging, members without credentials yet, TEE/WATCH/REDIRECT, ACK requests, compressed
//! packets — goes to the control plane, which has the whole VL2 state machine.
//! spec: vl2.md §6 (outbound decision tree), §7.1 (FRAME), §7.2 (EXT_FRAME), §14 (the gate),
//! §15.6 (rules on both directions)

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use weft_wire::credential::{Capability, Coo};
use weft_wire::mac::Mac;
use weft_wire::netconf::NetworkConfig;
use weft_wire::rules::Rule;
use weft_wire::rules::eval::{self, FrameInfo};
use weft_wire::rules::filter::{self, Decision, FilterVerdict, OwnView};
use weft_wire::{Address, NetworkId};

/// EXT_FRAME flags the fast path takes (none: ACK requests, inline COMs, TEE/WATCH/REDIRECT
/// copies go to the control plane). spec: vl2.md §7.2
pub const EXT_FRAME_FAST_FLAGS: u8 = 0;

/// One network as the data plane sees it: our config and the members that passed the gate.
#[derive(Debug, Clone)]
pub struct NetworkEntry {
    /// Our current config (rules, capabilities, tags, COOs, managed addresses, MTU).
    pub config: Arc<NetworkConfig>,
    /// Members that pass the gate now (public networks: every peer we have credentials for is
    /// listed too), with their currently valid credentials.
    pub members: HashMap<Address, MemberEntry>,
}

/// A remote member's valid credentials, as the rules VM needs them. spec: vl2.md §13.7
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberEntry {
    /// Valid tags: (id, value), sorted by id.
    pub tags: Vec<(u32, u32)>,
    /// Valid capabilities the member presented.
    pub capabilities: Vec<Capability>,
    /// Valid certificates of ownership.
    pub coos: Vec<Coo>,
    /// Our credentials were pushed to this member for the current config, so it will accept
    /// our frames: the data plane may send to it directly.
    pub pushed: bool,
}

impl eval::Membership for MemberEntry {
    fn tag(&self, id: u32) -> Option<u32> {
        self.tags
            .binary_search_by_key(&id, |(i, _)| *i)
            .ok()
            .map(|i| self.tags[i].1)
    }
    fn owns_ip(&self, ip: IpAddr) -> bool {
        self.coos.iter().any(|c| c.owns_ip(ip))
    }
    fn owns_mac(&self, mac: Mac) -> bool {
        self.coos.iter().any(|c| c.owns_mac(mac))
    }
}

/// An Ethernet frame in parts (no 802.1Q parsing).
#[derive(Debug, Clone, Copy)]
pub struct Eth<'a> {
    /// Destination MAC.
    pub dst: Mac,
    /// Source MAC.
    pub src: Mac,
    /// Ethertype.
    pub ethertype: u16,
    /// Payload after the 14-byte header.
    pub payload: &'a [u8],
}

impl<'a> Eth<'a> {
    /// Splits a frame; `None` when shorter than an Ethernet header.
    pub fn parse(frame: &'a [u8]) -> Option<Self> {
        if frame.len() < 14 {
            return None;
        }
        Some(Eth {
            dst: Mac::from_slice(&frame[0..6])?,
            src: Mac::from_slice(&frame[6..12])?,
            ethertype: u16::from_be_bytes([frame[12], frame[13]]),
            payload: &frame[14..],
        })
    }

    /// Writes the frame into `out` (cleared first).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.clear();
        out.reserve(14 + self.payload.len());
        out.extend_from_slice(&self.dst.0);
        out.extend_from_slice(&self.src.0);
        out.extend_from_slice(&self.ethertype.to_be_bytes());
        out.extend_from_slice(self.payload);
    }
}

/// What the rules said about a frame on the fast path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RulesOutcome {
    /// Deliver / send the frame.
    Pass,
    /// Dropped by the rules.
    Drop,
    /// The verdict asks for copies or a redirect: the control plane handles the frame.
    Up,
}

fn outcome(v: &FilterVerdict) -> RulesOutcome {
    if v.copies().next().is_some() || v.redirect.is_some() {
        RulesOutcome::Up
    } else if v.decision == Decision::Drop {
        RulesOutcome::Drop
    } else {
        RulesOutcome::Pass
    }
}

/// Which network a rules evaluation runs on, and for whom.
#[derive(Debug, Clone, Copy)]
pub(crate) struct On<'a> {
    /// Our address.
    pub(crate) me: Address,
    /// The network.
    pub(crate) nwid: NetworkId,
    /// Its table entry.
    pub(crate) net: &'a NetworkEntry,
}

/// Evaluates a frame against the network's rules. `remote` is the other member (sender when
/// `inbound`, destination otherwise). spec: vl2.md §15.6
pub(crate) fn evaluate(
    on: On<'_>,
    remote: Address,
    member: &MemberEntry,
    eth: &Eth<'_>,
    inbound: bool,
    random: u32,
) -> RulesOutcome {
    let On { me, nwid, net } = on;
    let caps: Vec<(u32, &[Rule])> = if inbound {
        member
            .capabilities
            .iter()
            .map(|k| (k.id(), k.rules()))
            .collect()
    } else {
        Vec::new()
    };
    let v = filter::check_frame(filter::FrameCheck {
        own: OwnView {
            me,
            network_id: nwid,
            config: &net.config,
        },
        remote,
        membership: Some(member as &dyn eval::Membership),
        sender_capabilities: &caps,
        frame: FrameInfo::from_parts(eth.dst, eth.src, eth.ethertype, eth.payload),
        inbound,
        tee_allowed: true,
        random,
    });
    outcome(&v)
}
