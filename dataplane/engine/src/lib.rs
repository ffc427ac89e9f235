//! `weft-engine`: the data plane's tables and its batch engine.
//!
//! The control plane (`weft-proto`'s node) publishes [`Tables`] — an immutable snapshot of what
//! the data plane may know: our address, whether we relay, and per peer its session key, cipher
//! and physical paths (never the identity secret). The engine takes received datagrams and
//! returns a [`Verdict`] for each: handled here (today: root relaying, the hot path of a root),
//! or handed up to the control plane. It is pure and deterministic: no I/O, no clock, no locks.
//!
//! The I/O back-ends live apart in [`io`] (Linux only): today the TAP device of a virtual network.
//! They are the only code here that touches the OS, and the only code allowed `unsafe`.
//! spec: vl1.md §3.9, §8.3; design: shared/design/architecture.md (the boundary between the
//! planes)
#![warn(missing_docs)]

#[cfg(target_os = "linux")]
pub mod io;

pub mod bond;
pub mod boundary;
pub mod flow;
pub mod offload;
pub mod vl2;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

use weft_wire::armor::{self, ArmorError};
use weft_wire::fragment::{
    DatagramKind, FRAGMENT_HEADER_LEN, Fragment, Fragmenter, Reassembler, classify,
};
use weft_wire::inet::TrustedPath;
use weft_wire::mac::Mac;
use weft_wire::packet::{
    self, DEFAULT_PHYSICAL_MTU, FLAG_FRAGMENTED, FLAGS_HOPS_MASK, IDX_FLAGS, Packet, Verb,
};
use weft_wire::verbs::vl2::{ExtFrame, Frame};
use weft_wire::{Address, CipherSuite, NetworkId, PeerKey};

pub use bond::{BondEntry, BondKind};
pub use vl2::{Eth, MemberEntry, NetworkEntry};

/// Packets are relayed only while their hop count is below this. spec: vl1.md §3.9
pub const RELAY_MAX_HOPS: u8 = 3;

/// One physical path of a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PathEntry {
    /// The local socket (driver numbering).
    pub local: u32,
    /// Remote address.
    pub addr: SocketAddr,
}

/// What the data plane knows about one peer.
#[derive(Debug, Clone)]
pub struct PeerEntry {
    /// The per-peer session key (derived keys included), shared with the control plane.
    pub key: Arc<PeerKey>,
    /// Cipher suite for packets to this peer.
    pub cipher: CipherSuite,
    /// The path sends use now, if the peer has a live direct path.
    pub preferred: Option<PathEntry>,
    /// Every path the control plane knows (alive or not): packets arriving on any other address
    /// go up, so the control plane learns the new path. spec: vl1.md §8.1
    pub paths: Vec<PathEntry>,
    /// The peer's multipath bond, when bonding is in use for it: unicast frames take the
    /// path(s) it picks instead of `preferred`. spec: vl1.md §9
    pub bond: Option<BondEntry>,
}

/// An immutable snapshot published by the control plane.
#[derive(Debug, Clone, Default)]
pub struct Tables {
    /// Our address (packets to it are handed up).
    pub own: Address,
    /// Whether we relay packets addressed to others (we are a root).
    pub relay: bool,
    /// Known peers.
    pub peers: HashMap<Address, PeerEntry>,
    /// Joined networks with a config: the frame fast path works on these.
    pub networks: HashMap<NetworkId, NetworkEntry>,
    /// Physical networks where cipher suite 2 (no crypto) is used. spec: vl1.md §3.5
    pub trusted_paths: Vec<TrustedPath>,
    /// Physical MTU (UDP payload bytes) for fragmenting; 0 means the default (1432).
    pub physical_mtu: u32,
}

impl Tables {
    /// The trusted-path id for a physical address, if it lies in a trusted network.
    pub fn trusted_path_id(&self, ip: std::net::IpAddr) -> Option<u64> {
        self.trusted_paths
            .iter()
            .find(|t| t.contains(ip))
            .map(|t| t.id)
    }

    fn mtu(&self) -> usize {
        if self.physical_mtu == 0 {
            DEFAULT_PHYSICAL_MTU
        } else {
            self.physical_mtu as usize
        }
    }
}

/// Why the engine dropped a datagram or frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Addressed to another node and we do not relay.
    NotRelaying,
    /// Hop limit reached.
    HopLimit,
    /// Would be sent back where it came from.
    Loop,
    /// Our own packet came back.
    FromSelf,
    /// Reserved destination address or oversized datagram.
    Invalid,
    /// The network's rules dropped the frame.
    Filtered,
    /// A frame too short, empty or larger than the network's MTU.
    BadFrame,
    /// A copy of a packet already received on another path of a bond.
    Duplicate,
}

/// What to do with one received datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Relayed: send `data` (hop count incremented) to `to` from `local`. For packet heads,
    /// `source` is set so the control plane can introduce the two ends (RENDEZVOUS).
    Relay {
        /// Local socket to send from.
        local: u32,
        /// Destination address.
        to: SocketAddr,
        /// The datagram to send.
        data: Vec<u8>,
        /// The packet's source and destination (heads only).
        ends: Option<(Address, Address)>,
    },
    /// Hand the datagram to the control plane unchanged.
    Up,
    /// This datagram completed a fragmented packet for us that the control plane must process:
    /// hand it the whole (still armored) packet.
    UpPacket(Vec<u8>),
    /// A piece of a fragmented packet, kept until the rest arrives.
    Held,
    /// A frame from a member: write it to the network's TAP.
    TapWrite {
        /// The network.
        network_id: NetworkId,
        /// The Ethernet frame.
        frame: Vec<u8>,
    },
    /// Dropped here.
    Drop(DropReason),
}

/// A datagram the engine built (frames going out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// Local socket to send from.
    pub local: u32,
    /// Destination.
    pub to: SocketAddr,
    /// The bytes.
    pub data: Vec<u8>,
}

/// What happened to a frame read from a TAP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TapVerdict {
    /// Armored and queued as datagrams.
    Sent,
    /// Hand the frame to the control plane (multicast, bridging, no credentials yet, no direct
    /// path, rules asking for copies or a redirect).
    Up,
    /// Dropped here.
    Drop(DropReason),
}

/// Applies the relay hop rule to a packet head or fragment in place: refuses it when its hop count
/// has reached [`RELAY_MAX_HOPS`], else increments the count (the only field a relay may change).
/// `fragment` selects where the count lives (flags bits 0..2 of a head, byte 15 of a fragment);
/// `data` must be a classified head (≥ 28 bytes) or fragment (> 16 bytes). spec: vl1.md §3.9, §4.2
pub fn increment_hops(data: &mut [u8], fragment: bool) -> Result<(), DropReason> {
    let at = if fragment {
        FRAGMENT_HEADER_LEN - 1
    } else {
        IDX_FLAGS
    };
    let Some(b) = data.get_mut(at) else {
        return Err(DropReason::HopLimit);
    };
    let hops = if fragment { *b } else { *b & FLAGS_HOPS_MASK };
    if hops >= RELAY_MAX_HOPS {
        return Err(DropReason::HopLimit);
    }
    *b = if fragment {
        (hops + 1) & 7
    } else {
        (*b & !FLAGS_HOPS_MASK) | ((hops + 1) & FLAGS_HOPS_MASK)
    };
    Ok(())
}

/// Counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EngineStats {
    /// Datagrams relayed.
    pub relayed: u64,
    /// Datagrams handed up.
    pub up: u64,
    /// Datagrams and frames dropped.
    pub dropped: u64,
    /// Frames received from members and written to a TAP by the data plane.
    pub frames_in: u64,
    /// Frames read from a TAP and sent by the data plane.
    pub frames_out: u64,
    /// Frames read from a TAP and handed to the control plane.
    pub frames_up: u64,
    /// Frames the rules dropped (both directions).
    pub filtered: u64,
}

/// What the data plane did since the last report, for the control plane's bookkeeping: paths
/// that carried authenticated traffic (they stay alive), members we received frames from (the
/// gate's LIKE schedule), members we sent frames to (credential pushes), and what the bonds'
/// paths carried (`bond <peer> show`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Activity {
    /// The reporting worker (flow gauges in `bonded` are per worker); set by the driver.
    pub worker: u16,
    /// (peer, path) pairs that received authenticated packets.
    pub paths: Vec<(Address, PathEntry)>,
    /// (network, member) pairs frames came from.
    pub received: Vec<(NetworkId, Address)>,
    /// (network, member) pairs frames went to.
    pub sent: Vec<(NetworkId, Address)>,
    /// Bonded peers' paths the fast path used or holds flows on.
    pub bonded: Vec<BondActivity>,
    /// The engine's clock when this report was taken: sample times below are on it.
    pub now_ms: i64,
    /// QoS samples (spec: vl1.md §9.4) of frames the fast path sent on bonded paths.
    pub qos_sent: Vec<QosSample>,
    /// QoS samples of frames the fast path received on bonded paths.
    pub qos_received: Vec<QosSample>,
}

/// A sampled frame's on-wire packet id and when it was sent or received on a bonded path
/// (see [`bond::qos_sampled`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QosSample {
    /// The peer.
    pub peer: Address,
    /// The path.
    pub path: PathEntry,
    /// On-wire packet id.
    pub packet_id: u64,
    /// Engine time (ms), comparable with [`Activity::now_ms`].
    pub at_ms: i64,
}

/// One bonded path's report from one engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BondActivity {
    /// The peer.
    pub peer: Address,
    /// The path.
    pub path: PathEntry,
    /// Frames the fast path sent on it since the last report.
    pub frames: u64,
    /// balance-aware flows this engine has placed on it now (a gauge: 0 once none are left).
    pub flows: u32,
}

impl Activity {
    /// This report as records of at most `max_samples` QoS samples each (at least one record;
    /// the first carries everything else, the others only samples, all with this report's
    /// worker and clock).
    pub fn split(mut self, max_samples: usize) -> Vec<Activity> {
        let max = max_samples.max(1);
        let mut rest_sent = if self.qos_sent.len() > max {
            self.qos_sent.split_off(max)
        } else {
            Vec::new()
        };
        let room = max - self.qos_sent.len();
        let mut rest_received = if self.qos_received.len() > room {
            self.qos_received.split_off(room)
        } else {
            Vec::new()
        };
        let (worker, now_ms) = (self.worker, self.now_ms);
        let mut out = vec![self];
        while !rest_sent.is_empty() || !rest_received.is_empty() {
            let take_sent = rest_sent.len().min(max);
            let qos_sent: Vec<QosSample> = rest_sent.drain(..take_sent).collect();
            let take_received = rest_received.len().min(max - take_sent);
            let qos_received = rest_received.drain(..take_received).collect();
            out.push(Activity {
                worker,
                now_ms,
                qos_sent,
                qos_received,
                ..Activity::default()
            });
        }
        out
    }

    /// Whether there is nothing to report.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
            && self.received.is_empty()
            && self.sent.is_empty()
            && self.bonded.is_empty()
            && self.qos_sent.is_empty()
            && self.qos_received.is_empty()
    }
}

/// The batch engine.
#[derive(Debug)]
pub struct Engine {
    stats: EngineStats,
    reassembler: Reassembler,
    /// Next packet id (a counter from a random start: ids are the ciphers' nonces and must not
    /// repeat under one key).
    next_id: u64,
    /// State of the rules VM's RANDOM source (xorshift64*; not for secrets).
    rng: u64,
    scratch: Vec<u8>,
    body: Vec<u8>,
    paths_seen: HashSet<(Address, PathEntry)>,
    received: HashSet<(NetworkId, Address)>,
    sent: HashSet<(NetworkId, Address)>,
    /// Bonded peers: balance-rr positions, balance-aware flows, recently received packet ids.
    bonds: HashMap<Address, bond::BondState>,
    /// (peer, path) pairs last reported with flows (reported again, as 0, once they have none).
    flows_reported: HashSet<(Address, PathEntry)>,
    /// QoS sampling per bonded (peer, path) this period, and the samples kept.
    qos_counts: HashMap<(Address, PathEntry), bond::QosCounts>,
    qos_sent: Vec<QosSample>,
    qos_received: Vec<QosSample>,
    /// Engines sharing the QoS budgets ([`Engine::set_qos_share`]).
    qos_share: u32,
    recent: HashMap<Address, bond::RecentIds>,
    chosen: Vec<usize>,
    /// The latest time the driver gave (`process_rx`, `process_tap`, `expire`).
    now_ms: i64,
}

impl Default for Engine {
    fn default() -> Self {
        Self::new(0x9e37_79b9_7f4a_7c15)
    }
}

impl Engine {
    /// A new engine; `seed` (from a CSPRNG) starts the packet-id counter.
    pub fn new(seed: u64) -> Self {
        Engine {
            stats: EngineStats::default(),
            reassembler: Reassembler::new(),
            next_id: seed,
            rng: seed.rotate_left(17) | 1,
            scratch: Vec::with_capacity(packet::MAX_PACKET_LEN),
            body: Vec::with_capacity(packet::MAX_PACKET_LEN),
            paths_seen: HashSet::new(),
            received: HashSet::new(),
            sent: HashSet::new(),
            bonds: HashMap::new(),
            flows_reported: HashSet::new(),
            qos_counts: HashMap::new(),
            qos_sent: Vec::new(),
            qos_received: Vec::new(),
            qos_share: 1,
            now_ms: 0,
            recent: HashMap::new(),
            chosen: Vec::new(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> EngineStats {
        self.stats
    }

    /// Takes what happened since the last call (see [`Activity`]).
    pub fn take_activity(&mut self) -> Activity {
        let mut a = Activity {
            worker: 0,
            paths: self.paths_seen.drain().collect(),
            received: self.received.drain().collect(),
            sent: self.sent.drain().collect(),
            bonded: Vec::new(),
            now_ms: self.now_ms,
            qos_sent: std::mem::take(&mut self.qos_sent),
            qos_received: std::mem::take(&mut self.qos_received),
        };
        a.paths.sort_by_key(|(x, p)| (*x, p.local, p.addr));
        a.received.sort();
        a.sent.sort();
        // Frames sent per bonded path this period: the QoS bookkeeping counts them.
        let mut bonded: HashMap<(Address, PathEntry), (u64, u32)> = HashMap::new();
        for (key, c) in &self.qos_counts {
            if c.sent > 0 {
                bonded.entry(*key).or_default().0 = u64::from(c.sent);
            }
        }
        self.qos_counts.retain(|_, c| c.roll());
        let mut with_flows = HashSet::new();
        for (peer, st) in &self.bonds {
            for (path, n) in st.flows_per_path() {
                bonded.entry((*peer, path)).or_default().1 = n;
                with_flows.insert((*peer, path));
            }
        }
        // Paths that held flows at the last report and hold none now: report the 0.
        for key in self.flows_reported.difference(&with_flows) {
            bonded.entry(*key).or_default();
        }
        self.flows_reported = with_flows;
        a.bonded = bonded
            .into_iter()
            .map(|((peer, path), (frames, flows))| BondActivity {
                peer,
                path,
                frames,
                flows,
            })
            .collect();
        a.bonded
            .sort_by_key(|b| (b.peer, b.path.local, b.path.addr));
        a
    }

    /// Drops reassembly state older than the timeout. Call about once a second.
    pub fn expire(&mut self, now_ms: i64) {
        self.now_ms = self.now_ms.max(now_ms);
        self.reassembler.expire(now_ms);
        self.bonds.retain(|_, b| {
            b.expire(now_ms);
            !b.is_idle(now_ms)
        });
    }

    /// This engine's QoS sample budget per path of a bonded peer (its share when several
    /// engines serve the same peers).
    fn qos_budget(&self, peer: &PeerEntry) -> u32 {
        let qi = peer.bond.as_ref().map_or(0, |b| b.qos_interval_ms);
        let qi = if qi == 0 {
            bond::DEFAULT_QOS_INTERVAL_MS
        } else {
            qi
        };
        (bond::qos_budget(qi) / self.qos_share).max(2)
    }

    /// Keeps a QoS sample of a frame sent (`sent`) or received on a bonded peer's path when the
    /// sampling rules say so (`bond::QosCounts`).
    fn qos_sample(&mut self, peer: &PeerEntry, a: Address, path: PathEntry, id: u64, sent: bool) {
        let budget = self.qos_budget(peer);
        let counts = self.qos_counts.entry((a, path)).or_default();
        let keep = if sent {
            counts.keep_sent(id, budget)
        } else {
            counts.keep_received(id, budget)
        };
        if keep {
            let list = if sent {
                &mut self.qos_sent
            } else {
                &mut self.qos_received
            };
            list.push(QosSample {
                peer: a,
                path,
                packet_id: id,
                at_ms: self.now_ms,
            });
        }
    }

    /// How many engines (workers) share the QoS budgets: each takes its part. 1 by default.
    pub fn set_qos_share(&mut self, engines: u32) {
        self.qos_share = engines.max(1);
    }

    fn random(&mut self) -> u32 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32
    }

    /// Decides the fate of a batch of received datagrams, one verdict per datagram.
    pub fn process_rx(
        &mut self,
        tables: &Tables,
        now_ms: i64,
        batch: &[(SocketAddr, &[u8])],
        out: &mut Vec<Verdict>,
    ) {
        out.clear();
        self.now_ms = self.now_ms.max(now_ms);
        for (from, data) in batch {
            let v = self.one(tables, now_ms, *from, data);
            match &v {
                Verdict::Relay { .. } => self.stats.relayed += 1,
                Verdict::Up | Verdict::UpPacket(_) => self.stats.up += 1,
                Verdict::Drop(r) => {
                    self.stats.dropped += 1;
                    if *r == DropReason::Filtered {
                        self.stats.filtered += 1;
                    }
                }
                Verdict::TapWrite { .. } => self.stats.frames_in += 1,
                Verdict::Held => {}
            }
            out.push(v);
        }
    }

    fn one(&mut self, t: &Tables, now: i64, from: SocketAddr, data: &[u8]) -> Verdict {
        let fragment = match classify(data) {
            DatagramKind::Fragment => true,
            DatagramKind::Packet => false,
            DatagramKind::Beacon | DatagramKind::Ignored => return Verdict::Up,
        };
        let Some(dest) = Address::from_slice(&data[8..]) else {
            return Verdict::Up;
        };
        if dest == t.own {
            return self.for_us(t, now, from, data, fragment);
        }
        let source = if fragment {
            None
        } else {
            Address::from_slice(&data[13..])
        };
        if source == Some(t.own) {
            return Verdict::Drop(DropReason::FromSelf);
        }
        if !t.relay {
            return Verdict::Drop(DropReason::NotRelaying);
        }
        if dest.is_reserved() || data.len() > packet::MAX_PACKET_LEN {
            return Verdict::Drop(DropReason::Invalid);
        }
        let mut out = data.to_vec();
        if let Err(r) = increment_hops(&mut out, fragment) {
            return Verdict::Drop(r);
        }
        // No live direct path: the control plane decides (forwarding to another upstream).
        let Some(path) = t.peers.get(&dest).and_then(|p| p.preferred.as_ref()) else {
            return Verdict::Up;
        };
        if path.addr == from {
            return Verdict::Drop(DropReason::Loop);
        }
        Verdict::Relay {
            local: path.local,
            to: path.addr,
            data: out,
            ends: source.map(|s| (s, dest)),
        }
    }

    /// A datagram addressed to us: fragments are reassembled here; whole packets carrying a
    /// unicast frame from a member are finished here, everything else goes up.
    fn for_us(
        &mut self,
        t: &Tables,
        now: i64,
        from: SocketAddr,
        data: &[u8],
        fragment: bool,
    ) -> Verdict {
        let assembled = if fragment {
            let Ok(f) = Fragment::new_checked(data) else {
                return Verdict::Up;
            };
            self.reassembler.add_fragment(now, &f)
        } else if data[IDX_FLAGS] & FLAG_FRAGMENTED != 0 {
            self.reassembler.add_head(now, data)
        } else {
            return match self.frame_in(t, from, data) {
                Some(v) => v,
                None => Verdict::Up,
            };
        };
        match assembled {
            Ok(Some(p)) => match self.frame_in(t, from, &p) {
                Some(v) => v,
                None => Verdict::UpPacket(p),
            },
            Ok(None) => Verdict::Held,
            // the control plane counts malformed pieces
            Err(_) => Verdict::Up,
        }
    }

    /// A whole armored packet for us. `None`: not for the fast path, hand it up unchanged.
    fn frame_in(&mut self, t: &Tables, from: SocketAddr, pkt: &[u8]) -> Option<Verdict> {
        if t.networks.is_empty() {
            return None;
        }
        let p = Packet::new_checked(pkt).ok()?;
        let source = p.source();
        if p.cipher_id() == 0 {
            return None;
        }
        let peer = t.peers.get(&source)?;
        let path = peer.paths.iter().find(|x| x.addr == from)?;
        let wire_id = u64::from_be_bytes(pkt[..8].try_into().ok()?);
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        buf.extend_from_slice(pkt);
        let v = self.frame_in_plain(t, source, peer, path, wire_id, &mut buf);
        self.scratch = buf;
        v
    }

    fn frame_in_plain(
        &mut self,
        t: &Tables,
        source: Address,
        peer: &PeerEntry,
        path: &PathEntry,
        wire_id: u64,
        buf: &mut [u8],
    ) -> Option<Verdict> {
        let (key, bonded) = (&*peer.key, peer.bond.is_some());
        // spec: vl1.md §3.2–§3.5
        match armor::dearmor(buf, key) {
            Ok(CipherSuite::Poly1305None) => return None,
            Ok(_) => {}
            Err(ArmorError::TrustedPath { trusted_path_id }) => {
                if t.trusted_path_id(path.addr.ip()) != Some(trusted_path_id) {
                    return None;
                }
            }
            Err(_) => return None,
        }
        let p = Packet::new_checked(&*buf).ok()?;
        if p.is_compressed() {
            return None;
        }
        if bonded && matches!(p.verb(), Verb::FRAME | Verb::EXT_FRAME) {
            // spec: vl1.md §9.4 — the on-wire id (as received) of a sampled frame, for QoS
            self.qos_sample(peer, source, *path, wire_id, false);
            // spec: vl1.md §9.1 — broadcast copies carry one packet id
            self.paths_seen.insert((source, *path));
            let id = u64::from_be_bytes(buf[..8].try_into().ok()?);
            if self.recent.entry(source).or_default().check_and_insert(id) {
                return Some(Verdict::Drop(DropReason::Duplicate));
            }
        }
        let p = Packet::new_checked(&*buf).ok()?;
        let me = t.own;
        let (nwid, eth) = match p.verb() {
            Verb::FRAME => {
                let f = Frame::decode(p.payload()).ok()?;
                let eth = Eth {
                    dst: Mac::for_member(me, f.network_id),
                    src: Mac::for_member(source, f.network_id),
                    ethertype: f.ethertype,
                    payload: f.payload,
                };
                (f.network_id, eth)
            }
            Verb::EXT_FRAME => {
                let f = ExtFrame::decode(p.payload()).ok()?;
                // only the plain member-to-member form; bridging, ACKs and copies go up
                if f.flags != vl2::EXT_FRAME_FAST_FLAGS
                    || f.from != Mac::for_member(source, f.network_id)
                    || f.to != Mac::for_member(me, f.network_id)
                {
                    return None;
                }
                let eth = Eth {
                    dst: f.to,
                    src: f.from,
                    ethertype: f.ethertype,
                    payload: f.payload,
                };
                (f.network_id, eth)
            }
            _ => return None,
        };
        let net = t.networks.get(&nwid)?;
        let member = net.members.get(&source)?;
        self.paths_seen.insert((source, *path));
        if eth.payload.is_empty() {
            return Some(Verdict::Drop(DropReason::BadFrame));
        }
        let random = self.random();
        match vl2::evaluate(
            vl2::On { me, nwid, net },
            source,
            member,
            &eth,
            true,
            random,
        ) {
            vl2::RulesOutcome::Up => None,
            vl2::RulesOutcome::Drop => Some(Verdict::Drop(DropReason::Filtered)),
            vl2::RulesOutcome::Pass => {
                self.received.insert((nwid, source));
                let mut frame = Vec::new();
                eth.write_to(&mut frame);
                Some(Verdict::TapWrite {
                    network_id: nwid,
                    frame,
                })
            }
        }
    }

    /// A frame read from a network's TAP: unicast to a member with a direct path goes out from
    /// here (rules, FRAME, armor, fragments appended to `out`); everything else goes up.
    /// spec: vl2.md §6
    pub fn process_tap(
        &mut self,
        t: &Tables,
        now_ms: i64,
        network_id: NetworkId,
        frame: &[u8],
        out: &mut Vec<Datagram>,
    ) -> TapVerdict {
        self.now_ms = self.now_ms.max(now_ms);
        let v = self.tap_one(t, network_id, frame, out);
        match v {
            TapVerdict::Sent => self.stats.frames_out += 1,
            TapVerdict::Up => self.stats.frames_up += 1,
            TapVerdict::Drop(r) => {
                self.stats.dropped += 1;
                if r == DropReason::Filtered {
                    self.stats.filtered += 1;
                }
            }
        }
        v
    }

    fn tap_one(
        &mut self,
        t: &Tables,
        nwid: NetworkId,
        frame: &[u8],
        out: &mut Vec<Datagram>,
    ) -> TapVerdict {
        let Some(net) = t.networks.get(&nwid) else {
            return TapVerdict::Up;
        };
        let Some(eth) = Eth::parse(frame) else {
            return TapVerdict::Drop(DropReason::BadFrame);
        };
        let me = t.own;
        let my_mac = Mac::for_member(me, nwid);
        if eth.src != my_mac || eth.dst.is_multicast() || eth.dst == my_mac {
            return TapVerdict::Up;
        }
        let Some(dest) = eth.dst.member_address(nwid) else {
            return TapVerdict::Up;
        };
        let Some(member) = net.members.get(&dest).filter(|m| m.pushed) else {
            return TapVerdict::Up;
        };
        let Some(peer) = t.peers.get(&dest) else {
            return TapVerdict::Up;
        };
        // spec: vl1.md §9.1 — a bonded peer's frames take the path(s) its bond picks
        let mut chosen = std::mem::take(&mut self.chosen);
        chosen.clear();
        let paths: &[PathEntry] = match &peer.bond {
            Some(b) if !b.paths.is_empty() => {
                let flow = flow::five_tuple(eth.ethertype, eth.payload);
                let state = self.bonds.entry(dest).or_default();
                bond::choose(b, state, flow.as_ref(), self.now_ms, &mut chosen);
                &b.paths
            }
            _ => match &peer.preferred {
                Some(p) => {
                    chosen.push(0);
                    std::slice::from_ref(p)
                }
                None => {
                    self.chosen = chosen;
                    return TapVerdict::Up;
                }
            },
        };
        let v = self.tap_send(t, nwid, dest, peer, member, net, &eth, paths, &chosen, out);
        self.chosen = chosen;
        v
    }

    /// The rest of [`Engine::process_tap`] for one frame: rules, FRAME, armor once, the
    /// datagrams on each chosen path (broadcast copies share the packet id).
    #[allow(clippy::too_many_arguments)]
    fn tap_send(
        &mut self,
        t: &Tables,
        nwid: NetworkId,
        dest: Address,
        peer: &PeerEntry,
        member: &MemberEntry,
        net: &NetworkEntry,
        eth: &Eth<'_>,
        paths: &[PathEntry],
        chosen: &[usize],
        out: &mut Vec<Datagram>,
    ) -> TapVerdict {
        let me = t.own;
        let Some(path) = chosen.first().and_then(|&i| paths.get(i)) else {
            return TapVerdict::Up;
        };
        if eth.payload.len() > net.config.mtu as usize {
            return TapVerdict::Drop(DropReason::BadFrame);
        }
        let random = self.random();
        match vl2::evaluate(vl2::On { me, nwid, net }, dest, member, eth, false, random) {
            vl2::RulesOutcome::Up => return TapVerdict::Up,
            vl2::RulesOutcome::Drop => return TapVerdict::Drop(DropReason::Filtered),
            vl2::RulesOutcome::Pass => {}
        }
        // spec: vl2.md §7.1 — FRAME: network id, ethertype, payload
        let mut body = std::mem::take(&mut self.body);
        body.clear();
        Frame {
            network_id: nwid,
            ethertype: eth.ethertype,
            payload: eth.payload,
        }
        .encode(&mut body);
        self.next_id = self.next_id.wrapping_add(1);
        let mut p = packet::build(self.next_id.to_be_bytes(), dest, me, Verb::FRAME, &body);
        self.body = body;
        // A bond's per-link MTU (`bond setmtu`, the link's `mtu`): the smallest of the chosen
        // paths (broadcast copies share one armored packet, so one fragmentation), unless the
        // packet cannot be cut that small.
        let mut mtu = t.mtu();
        if let Some(b) = &peer.bond {
            let link_mtu = chosen
                .iter()
                .filter_map(|&i| b.mtus.get(i).copied())
                .filter(|m| *m > 0)
                .min();
            if let Some(m) = link_mtu
                && Fragmenter::new(&p, usize::from(m)).is_ok()
            {
                mtu = usize::from(m);
            }
        }
        if Fragmenter::needed(p.len(), mtu) {
            p[IDX_FLAGS] |= FLAG_FRAGMENTED;
        }
        // spec: vl1.md §3.5 — general sends over a trusted physical network use cipher 2
        let armored = match t.trusted_path_id(path.addr.ip()) {
            Some(id) => armor::armor_trusted_path(&mut p, id),
            None => armor::armor(&mut p, &peer.key, peer.cipher),
        };
        if armored.is_err() {
            return TapVerdict::Drop(DropReason::BadFrame);
        }
        let Ok(f) = Fragmenter::new(&p, mtu) else {
            return TapVerdict::Drop(DropReason::BadFrame);
        };
        let wire_id = u64::from_be_bytes([p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7]]);
        for path in chosen.iter().filter_map(|&i| paths.get(i)) {
            // spec: vl1.md §9.4 — when a sampled frame left on a bonded path, for QoS
            if peer.bond.is_some() {
                self.qos_sample(peer, dest, *path, wire_id, true);
            }
            out.push(Datagram {
                local: path.local,
                to: path.addr,
                data: f.head().to_vec(),
            });
            for n in 1..f.total() {
                if let Some(frag) = f.fragment(n) {
                    out.push(Datagram {
                        local: path.local,
                        to: path.addr,
                        data: frag,
                    });
                }
            }
        }
        self.sent.insert((nwid, dest));
        TapVerdict::Sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_wire::packet::{Verb, build};

    fn addr(v: u64) -> Address {
        Address::new(v).unwrap()
    }

    fn tables(relay: bool) -> Tables {
        let mut peers = HashMap::new();
        peers.insert(
            addr(0xbb),
            PeerEntry {
                key: Arc::new(PeerKey::from_bytes(&[1; 48])),
                cipher: CipherSuite::AesGmacSiv,
                preferred: Some(PathEntry {
                    local: 0,
                    addr: "10.0.0.2:9993".parse().unwrap(),
                }),
                paths: Vec::new(),
                bond: None,
            },
        );
        peers.insert(
            addr(0xcc),
            PeerEntry {
                key: Arc::new(PeerKey::from_bytes(&[2; 48])),
                cipher: CipherSuite::AesGmacSiv,
                preferred: None,
                paths: Vec::new(),
                bond: None,
            },
        );
        Tables {
            own: addr(0xaa),
            relay,
            peers,
            ..Default::default()
        }
    }

    #[test]
    fn relays_heads_and_fragments_with_the_hop_rule() {
        let mut e = Engine::default();
        let from: SocketAddr = "10.0.0.3:9993".parse().unwrap();
        let head = build([1; 8], addr(0xbb), addr(0xdd), Verb::ECHO, &[0; 10]);
        let mut frag = head[..13].to_vec();
        frag.extend_from_slice(&[0xff, 0x21, 0x00, 1, 2, 3]);
        let mut hop_limited = head.clone();
        hop_limited[IDX_FLAGS] |= 3;
        let to_us = build([1; 8], addr(0xaa), addr(0xdd), Verb::ECHO, &[]);
        let no_path = build([1; 8], addr(0xcc), addr(0xdd), Verb::ECHO, &[]);
        let from_self = build([1; 8], addr(0xbb), addr(0xaa), Verb::ECHO, &[]);
        let batch: Vec<(SocketAddr, &[u8])> = vec![
            (from, &head),
            (from, &frag),
            (from, &hop_limited),
            (from, &to_us),
            (from, &no_path),
            (from, &from_self),
            ("10.0.0.2:9993".parse().unwrap(), &head),
            (from, &[0u8; 4]),
        ];
        let mut out = Vec::new();
        e.process_rx(&tables(true), 0, &batch, &mut out);
        let Verdict::Relay { to, data, ends, .. } = &out[0] else {
            panic!("{:?}", out[0])
        };
        assert_eq!(
            (to.to_string().as_str(), data[IDX_FLAGS] & 7, *ends),
            ("10.0.0.2:9993", 1, Some((addr(0xdd), addr(0xbb))))
        );
        assert_eq!(data[..IDX_FLAGS], head[..IDX_FLAGS]);
        assert_eq!(
            data[IDX_FLAGS + 1..],
            head[IDX_FLAGS + 1..],
            "only the hop bits change"
        );
        let Verdict::Relay { data, ends, .. } = &out[1] else {
            panic!("{:?}", out[1])
        };
        assert_eq!((data[15], *ends), (1, None));
        assert_eq!(out[2], Verdict::Drop(DropReason::HopLimit));
        assert_eq!(out[3], Verdict::Up);
        assert_eq!(
            out[4],
            Verdict::Up,
            "no direct path: the control plane decides"
        );
        assert_eq!(out[5], Verdict::Drop(DropReason::FromSelf));
        assert_eq!(out[6], Verdict::Drop(DropReason::Loop));
        assert_eq!(out[7], Verdict::Up);
        assert_eq!(
            e.stats(),
            EngineStats {
                relayed: 2,
                up: 3,
                dropped: 3,
                ..Default::default()
            }
        );
        e.process_rx(&tables(false), 0, &batch[..1], &mut out);
        assert_eq!(out[0], Verdict::Drop(DropReason::NotRelaying));
    }
}
