//! Multipath bonding: the per-peer policy engine, sans-IO. spec: vl1.md §9
//!
//! A [`Bond`] is the state of one peer's bond. The caller (the node's send path) tells it about
//! the peer's paths ([`Bond::add_path`], [`Bond::remove_path`]) with the local interface each
//! one leaves by, about traffic ([`Bond::on_received`], [`Bond::on_sent`],
//! [`Bond::on_qos_measurement`], [`Bond::on_bad_packet`]) and about time
//! ([`Bond::handle_timeout`] at [`Bond::poll_timeout`]). It asks, for every outgoing packet,
//! [`Bond::paths_for`]`(now, flow)` → [`PathChoice`], and drains [`Bond::poll_action`] for the
//! probes the bond wants sent (ambient ECHOs and QOS_MEASUREMENT reports). [`Bond::info`] is the
//! snapshot behind `weft bond <peer> show` and `/bond/show/<peer>`.
//!
//! # Liveness and progress
//!
//! * A path is *alive* when something was received on it within `failoverInterval`, and
//!   *eligible* when it was received on within `failoverInterval + downDelay`, `upDelay` has
//!   passed since it came back, its refractory period is over, its link is enabled and allows
//!   its address family, and (for the balancing policies, once the peer has shown it measures)
//!   a QoS report arrived on it within 600 s. spec: vl1.md §9.2
//! * The state is re-evaluated every monitor interval (`failoverInterval / 3`) and, in
//!   addition, whenever [`Bond::paths_for`] is about to return a path whose deadline has
//!   passed; so a dead path is never returned once `failoverInterval + downDelay` has elapsed
//!   since it last received, and failover happens on the first packet after that.
//! * balance-aware (and balance-xor) never leave a flow on a path that is not eligible: a flow
//!   whose path left the eligible set is reassigned in the same call. Measurements only shape
//!   *shares*; a missing measurement counts as perfect, no path ever scores zero, and nothing
//!   waits for a measurement, so a new path carries flows at once and a bad path still gets
//!   some. Rebalancing runs at most every 15 s and is bounded by the flow table (65,536 flows;
//!   beyond that flows are placed by weighted hashing without state).
//! * When no path is eligible the answer is [`PathChoice::Fallback`]: the caller routes the
//!   packet as without bonding (best direct path or relay), so traffic never stops because of
//!   the bond.

mod config;
mod quality;
#[cfg(test)]
mod tests;

pub use config::{
    BasePolicy, BondPolicy, BondingConfig, ConfigError, DEFAULT_FAILOVER_INTERVAL_MS,
    DEFAULT_PACKETS_PER_LINK, IpvPref, LinkConfig, LinkMode, LinkQuality, LinkSelect,
    MIN_FAILOVER_INTERVAL_MS,
};
pub use quality::{
    LATENCY_WINDOW, LOSS_WINDOW, PathQuality, QualitySnapshot, SCORE_FLOOR, is_sampled,
    mean_variance, quality_score,
};

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};

use weft_wire::packet::Verb;
use weft_wire::verbs::{QosMeasurement, VerbError};

use crate::{LocalSocket, Timestamp};

/// Paths stay in a nomination trial this long, during which a missing QoS report does not make
/// them ineligible. spec: vl1.md §9.2
pub const NOMINATION_TRIAL_MS: i64 = 15_000;
/// A QoS report must have arrived within this for a balancing path to stay eligible (once the
/// peer measures). spec: vl1.md §9.2
pub const QOS_FRESHNESS_MS: i64 = 600_000;
/// Refractory period after a path becomes ineligible. spec: vl1.md §9.2
pub const REFRACTORY_MS: i64 = 8_000;
/// Longest refractory period (reached by doubling on flapping). spec: vl1.md §9.2
pub const MAX_REFRACTORY_MS: i64 = 600_000;
/// Anti-flapping interval for flow rebalancing and quality-driven re-selection. spec: vl1.md §9.2
pub const OPTIMIZE_INTERVAL_MS: i64 = 15_000;
/// A flow not seen for this long leaves the flow table (weft's choice; the spec is silent).
pub const FLOW_EXPIRY_MS: i64 = 120_000;
/// Flows tracked per bond; beyond this new flows are placed by stateless weighted hashing.
pub const MAX_FLOWS: usize = 65_536;
/// How much better (relative score) a path must be to take over under `better`/`optimize`.
pub const RESELECT_MARGIN: f64 = 0.10;

/// A path of the bond: the local socket it leaves from and the peer's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PathKey {
    /// Local socket (bound to one local address, hence one interface).
    pub local: LocalSocket,
    /// The peer's physical address.
    pub remote: SocketAddr,
}

/// A flow: a hash of the inner packet's protocol and ports (and addresses), computed by the
/// caller. Packets that belong to no flow (ARP, non-IP) can all use [`FlowId::NONE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowId(pub u32);

impl FlowId {
    /// Traffic without a flow.
    pub const NONE: FlowId = FlowId(0);

    /// The flow of an inner IP packet (protocol, addresses, ports; ports 0 for protocols
    /// without them). spec: vl1.md §9.1 hashes protocol and ports; weft adds the addresses so
    /// that many hosts behind one port spread too.
    pub fn from_five_tuple(
        protocol: u8,
        src: IpAddr,
        dst: IpAddr,
        src_port: u16,
        dst_port: u16,
    ) -> FlowId {
        let mut h = u64::from(protocol) << 32 | u64::from(src_port) << 16 | u64::from(dst_port);
        for ip in [src, dst] {
            let v = match ip {
                IpAddr::V4(a) => u128::from(u32::from(a)),
                IpAddr::V6(a) => u128::from(a),
            };
            h = mix(h ^ mix(v as u64) ^ mix((v >> 64) as u64 ^ 0x5bd1_e995));
        }
        FlowId((mix(h) >> 32) as u32)
    }
}

/// splitmix64's finalizer: a cheap, well-distributed 64-bit mix.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Where to send one outgoing packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathChoice<'a> {
    /// The bond has no eligible path (or the policy is `none`): route as without bonding.
    Fallback,
    /// Send on this path.
    One(PathKey),
    /// Send a copy on each of these paths (broadcast).
    All(&'a [PathKey]),
}

impl PathChoice<'_> {
    /// The chosen paths (empty for [`PathChoice::Fallback`]).
    pub fn paths(&self) -> &[PathKey] {
        match self {
            PathChoice::Fallback => &[],
            PathChoice::One(k) => std::slice::from_ref(k),
            PathChoice::All(v) => v,
        }
    }
}

/// A probe the bond wants sent.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BondAction {
    /// Send an ECHO to the peer on this path (cipher 3/1 as usual; register it as expecting a
    /// reply). spec: vl1.md §9.2
    Echo {
        /// The path.
        path: PathKey,
    },
    /// Send QOS_MEASUREMENT with this payload on this path, cipher 0. spec: vl1.md §9.4
    QosMeasurement {
        /// The path.
        path: PathKey,
        /// The encoded payload.
        payload: Vec<u8>,
    },
}

/// A path's state as shown to users.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkState {
    /// Eligible and carrying traffic (the active path, or a member of the balancing set).
    Up,
    /// Eligible, held in reserve (active-backup backups, spares while a primary is up).
    Standby,
    /// Receiving again but not yet eligible (up delay, refractory period, awaiting QoS).
    Waiting,
    /// Nothing received within `failoverInterval + downDelay`.
    Down,
    /// Its link is disabled, or its address family is not allowed by `ipvPref`.
    Disabled,
}

impl LinkState {
    /// Lower-case name for displays and JSON.
    pub fn name(self) -> &'static str {
        match self {
            LinkState::Up => "up",
            LinkState::Standby => "standby",
            LinkState::Waiting => "waiting",
            LinkState::Down => "down",
            LinkState::Disabled => "disabled",
        }
    }
}

#[derive(Debug, Clone)]
struct BondPath {
    key: PathKey,
    link: String,
    cfg: LinkConfig,
    seq: u64,
    hash: u64,
    added_at: Timestamp,
    last_in: Option<Timestamp>,
    last_out: Option<Timestamp>,
    alive_since: Timestamp,
    eligible: bool,
    became_eligible: Option<Timestamp>,
    became_ineligible: Option<Timestamp>,
    barred_until: Timestamp,
    refractory: i64,
    last_echo: Option<Timestamp>,
    quality: PathQuality,
    score: f64,
    alloc: f64,
    flows: usize,
    /// balance-aware flows the data plane's workers hold on this path (index: worker).
    dp_flows: Vec<u32>,
    packets_out: u64,
}

#[derive(Debug, Clone, Copy)]
struct Flow {
    path: usize,
    generation: u64,
    last: Timestamp,
}

/// One peer's bond.
#[derive(Debug)]
pub struct Bond {
    policy: BondPolicy,
    echo_capable: bool,
    peer_measures: bool,
    paths: Vec<BondPath>,
    next_seq: u64,
    /// The balancing set (indices), and their keys for broadcast.
    set: Vec<usize>,
    set_keys: Vec<PathKey>,
    generation: u64,
    dirty: bool,
    active: Option<usize>,
    /// When the active path was reached through `failoverTo`: the rank of the path it replaced
    /// (under `always`, only paths ranked at least as well as that one take over again).
    failover_origin: Option<(u8, u8, usize, u64)>,
    /// Set by [`Bond::rotate`]: no re-selection until the active path fails.
    pinned: bool,
    last_switch: Timestamp,
    rr_pos: usize,
    rr_count: u32,
    flows: BTreeMap<FlowId, Flow>,
    next_check: Timestamp,
    last_quality: Timestamp,
    last_rebalance: Timestamp,
    rng: u64,
    actions: VecDeque<BondAction>,
    failovers: u64,
    /// `bond setmtu` overrides: (link, remote IP or any), MTU; the latest match wins.
    mtu_overrides: Vec<(String, Option<IpAddr>, u16)>,
}

impl Bond {
    /// A bond under `policy`, created at `now`. `seed` drives balance-rr's random mode
    /// (`packetsPerLink` 0) only.
    pub fn new(policy: BondPolicy, now: Timestamp, seed: u64) -> Bond {
        let mut policy = policy;
        policy.failover_interval_ms = policy.failover_interval_ms.max(MIN_FAILOVER_INTERVAL_MS);
        Bond {
            policy,
            echo_capable: true,
            peer_measures: false,
            paths: Vec::new(),
            next_seq: 0,
            set: Vec::new(),
            set_keys: Vec::new(),
            generation: 0,
            dirty: true,
            active: None,
            failover_origin: None,
            pinned: false,
            last_switch: now,
            rr_pos: 0,
            rr_count: 0,
            flows: BTreeMap::new(),
            next_check: now,
            last_quality: now,
            last_rebalance: now,
            rng: mix(seed) | 1,
            actions: VecDeque::new(),
            mtu_overrides: Vec::new(),
            failovers: 0,
        }
    }

    /// The policy.
    pub fn policy(&self) -> &BondPolicy {
        &self.policy
    }

    /// Whether ambient ECHOs may be sent: only to peers with protocol ≥ 5 that are not 1.1.0
    /// (the caller knows the version). Default true. spec: vl1.md §9.2
    pub fn set_echo_capable(&mut self, yes: bool) {
        self.echo_capable = yes;
    }

    fn failover(&self) -> i64 {
        i64::from(self.policy.failover_interval_ms)
    }
    /// The ECHO monitor interval and the period of state checks: `failoverInterval / 3`.
    pub fn monitor_interval(&self) -> i64 {
        self.failover() / 3
    }
    /// The QoS report and quality-estimation interval: `2 × failoverInterval`.
    pub fn qos_interval(&self) -> i64 {
        self.failover() * 2
    }
    fn deadline(&self) -> i64 {
        self.failover() + i64::from(self.policy.down_delay_ms)
    }

    /// Adds a path leaving by interface `link` (no-op if known; the link name is updated).
    pub fn add_path(&mut self, now: Timestamp, key: PathKey, link: &str) {
        if let Some(p) = self.paths.iter_mut().find(|p| p.key == key) {
            if p.link != link {
                p.link = link.to_string();
                p.cfg = self.policy.link(link);
                self.dirty = true;
                self.next_check = now;
            }
            return;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let hash = mix(u64::from(key.local.0)
            ^ mix(match key.remote.ip() {
                IpAddr::V4(a) => u64::from(u32::from(a)),
                IpAddr::V6(a) => {
                    let v = u128::from(a);
                    (v as u64) ^ mix((v >> 64) as u64)
                }
            })
            ^ u64::from(key.remote.port()) << 40);
        self.paths.push(BondPath {
            key,
            link: link.to_string(),
            cfg: self.policy.link(link),
            seq,
            hash,
            added_at: now,
            last_in: None,
            last_out: None,
            alive_since: now,
            eligible: false,
            became_eligible: None,
            became_ineligible: None,
            barred_until: now,
            refractory: REFRACTORY_MS,
            last_echo: None,
            quality: PathQuality::new(now),
            score: 1.0,
            alloc: 0.0,
            flows: 0,
            dp_flows: Vec::new(),
            packets_out: 0,
        });
        self.dirty = true;
        self.next_check = now;
    }

    /// Removes a path (expired or forgotten by the peer).
    pub fn remove_path(&mut self, now: Timestamp, key: &PathKey) {
        let Some(i) = self.paths.iter().position(|p| p.key == *key) else {
            return;
        };
        self.paths.remove(i);
        self.active = match self.active {
            Some(a) if a == i => None,
            Some(a) if a > i => Some(a - 1),
            a => a,
        };
        self.flows.retain(|_, f| {
            if f.path == i {
                return false;
            }
            if f.path > i {
                f.path -= 1;
            }
            true
        });
        self.generation += 1;
        self.dirty = true;
        self.check(now);
    }

    fn index(&self, key: &PathKey) -> Option<usize> {
        self.paths.iter().position(|p| p.key == *key)
    }

    /// What the data plane's fast path needs: the eligible paths in the order the policy uses
    /// them (active-backup: the active path first) and each one's share of the traffic
    /// (balance-aware: its allocation; others: equal). Empty when no path is eligible.
    pub fn eligible_set(&self) -> Vec<(PathKey, f64)> {
        let n = self.set.len().max(1) as f64;
        self.set
            .iter()
            .map(|&i| {
                let share = if self.policy.base == BasePolicy::BalanceAware {
                    self.paths[i].alloc
                } else {
                    1.0 / n
                };
                (self.paths[i].key, share)
            })
            .collect()
    }

    /// The MTU to use on a path: a `bond setmtu` override for its link, else the link's
    /// configured `mtu`; 0 = unspecified (the node's physical MTU).
    pub fn path_mtu(&self, key: &PathKey) -> u16 {
        self.index(key).map_or(0, |i| self.mtu_of(i))
    }

    fn mtu_of(&self, i: usize) -> u16 {
        let p = &self.paths[i];
        self.mtu_overrides
            .iter()
            .rev()
            .find(|(link, ip, _)| *link == p.link && ip.is_none_or(|ip| ip == p.key.remote.ip()))
            .map_or(p.cfg.mtu, |(_, _, mtu)| *mtu)
    }

    /// `bond setmtu`: paths on interface `link` (towards `remote`, or all of them) use `mtu`
    /// from now on (also paths added later; not saved). Returns how many paths match now.
    /// spec: service.md §4 (`/bond/setmtu`)
    pub fn set_link_mtu(&mut self, link: &str, remote: Option<IpAddr>, mtu: u16) -> usize {
        const MAX_OVERRIDES: usize = 64;
        let n = self
            .paths
            .iter()
            .filter(|p| p.link == link && remote.is_none_or(|ip| ip == p.key.remote.ip()))
            .count();
        if n > 0 {
            self.mtu_overrides
                .retain(|(l, ip, _)| !(l == link && *ip == remote));
            if self.mtu_overrides.len() >= MAX_OVERRIDES {
                self.mtu_overrides.remove(0);
            }
            self.mtu_overrides.push((link.to_string(), remote, mtu));
            self.dirty = true;
        }
        n
    }

    /// The paths of the bond, in the order they were added.
    pub fn path_keys(&self) -> impl Iterator<Item = PathKey> + '_ {
        self.paths.iter().map(|p| p.key)
    }

    /// Notes an authenticated packet received on a path (any verb; `packet_id` is the on-wire
    /// ID). Unknown paths are ignored: the caller adds paths first.
    pub fn on_received(&mut self, now: Timestamp, path: &PathKey, packet_id: u64, verb: Verb) {
        let failover = self.failover();
        let deadline = self.deadline();
        let Some(i) = self.index(path) else { return };
        let p = &mut self.paths[i];
        let was_dead = p.last_in.is_none_or(|t| now - t > failover);
        if was_dead {
            // Back from silence: the up delay counts from now unless it never lost
            // eligibility (still within the down delay).
            if !p.eligible || p.last_in.is_none_or(|t| now - t > deadline) {
                p.alive_since = now;
            }
            self.next_check = self.next_check.min(now);
        }
        p.last_in = Some(p.last_in.map_or(now, |t| t.max(now)));
        self.sample_received(now, now, i, packet_id, verb);
    }

    /// Notes a sampled frame the data plane received on `path` at `at` (≤ `now`): it goes into
    /// the next QoS report with its holding time counted from `at`. spec: vl1.md §9.4
    pub fn on_data_plane_received(
        &mut self,
        now: Timestamp,
        at: Timestamp,
        path: &PathKey,
        packet_id: u64,
    ) {
        if let Some(i) = self.index(path) {
            self.sample_received(now, at.min(now), i, packet_id, Verb::FRAME);
        }
    }

    /// Notes a sampled frame the data plane sent on `path` at `at`.
    pub fn on_data_plane_sent(&mut self, at: Timestamp, path: &PathKey, packet_id: u64) {
        if let Some(i) = self.index(path) {
            self.paths[i].quality.note_sent(at, packet_id, Verb::FRAME);
        }
    }

    fn sample_received(&mut self, now: Timestamp, at: Timestamp, i: usize, id: u64, verb: Verb) {
        let qos = self.qos_interval();
        let p = &mut self.paths[i];
        if p.quality.note_received(at, id, verb)
            && let Some(r) = p.quality.take_report(now, qos)
        {
            let mut payload = Vec::new();
            r.encode(&mut payload);
            self.actions.push_back(BondAction::QosMeasurement {
                path: p.key,
                payload,
            });
        }
    }

    /// Notes a packet sent on a path (`packet_id` on-wire; used for QoS sampling).
    pub fn on_sent(&mut self, now: Timestamp, path: &PathKey, packet_id: u64, verb: Verb) {
        if let Some(i) = self.index(path) {
            let p = &mut self.paths[i];
            p.last_out = Some(now);
            p.quality.note_sent(now, packet_id, verb);
        }
    }

    /// The data plane's report for one path: `frames` sent by its fast path since its last
    /// report, and the balance-aware flows worker `worker` holds on it now.
    pub fn on_data_plane(
        &mut self,
        now: Timestamp,
        path: &PathKey,
        worker: u16,
        frames: u64,
        flows: u32,
    ) {
        /// Gauges kept per worker (the data plane runs at most a handful).
        const MAX_WORKERS: usize = 64;
        let Some(i) = self.index(path) else {
            return;
        };
        let p = &mut self.paths[i];
        if frames > 0 {
            p.packets_out = p.packets_out.saturating_add(frames);
            p.last_out = Some(now);
        }
        let w = usize::from(worker);
        if w < MAX_WORKERS {
            if p.dp_flows.len() <= w {
                p.dp_flows.resize(w + 1, 0);
            }
            p.dp_flows[w] = flows;
        }
    }

    /// Notes a packet received on a path that failed authentication (packet error ratio).
    pub fn on_bad_packet(&mut self, path: &PathKey) {
        if let Some(i) = self.index(path) {
            self.paths[i].quality.note_error();
        }
    }

    /// Processes a QOS_MEASUREMENT payload the peer sent on `path` (after authentication).
    /// Returns the number of latency samples taken (0 when rate-gated or for an unknown path).
    /// spec: vl1.md §9.4
    pub fn on_qos_measurement(
        &mut self,
        now: Timestamp,
        path: &PathKey,
        payload: &[u8],
    ) -> Result<usize, VerbError> {
        let report = QosMeasurement::decode(payload)?;
        let qos = self.qos_interval();
        let Some(i) = self.index(path) else {
            return Ok(0);
        };
        let n = self.paths[i].quality.handle_report(now, &report, qos);
        if n.is_some() {
            self.peer_measures = true;
        }
        Ok(n.unwrap_or(0))
    }

    /// When [`Bond::handle_timeout`] wants to run next.
    pub fn poll_timeout(&self) -> Timestamp {
        self.next_check
    }

    /// Runs the periodic work if due: states, failover, probes, quality, rebalancing.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        if now >= self.next_check {
            self.check(now);
        }
    }

    /// The next probe to send.
    pub fn poll_action(&mut self) -> Option<BondAction> {
        self.actions.pop_front()
    }

    /// Forces active-backup to move to the next eligible path (`bond <peer> rotate`). Returns
    /// false when there is nothing to rotate to (or the policy is not active-backup).
    pub fn rotate(&mut self, now: Timestamp) -> bool {
        if self.policy.base != BasePolicy::ActiveBackup {
            return false;
        }
        self.check(now);
        let mut order: Vec<usize> = (0..self.paths.len())
            .filter(|&i| self.paths[i].eligible)
            .collect();
        order.sort_by_key(|&i| self.rank(i));
        let Some(cur) = self.active else { return false };
        let Some(pos) = order.iter().position(|&i| i == cur) else {
            return false;
        };
        if order.len() < 2 {
            return false;
        }
        self.set_active(now, Some(order[(pos + 1) % order.len()]));
        self.failover_origin = None;
        self.pinned = true;
        true
    }

    /// The path(s) for one outgoing packet of `flow`. Cheap when nothing is due: one timer
    /// comparison, a flow-table lookup for xor/aware, and a deadline check on the result.
    pub fn paths_for(&mut self, now: Timestamp, flow: FlowId) -> PathChoice<'_> {
        if now >= self.next_check {
            self.check(now);
        }
        let mut choice = self.choose(now, flow);
        if let Some(i) = choice
            && self.paths[i]
                .last_in
                .is_none_or(|t| now - t > self.deadline())
        {
            // The chosen path just passed its deadline: re-evaluate now, not at the next tick.
            self.check(now);
            choice = self.choose(now, flow);
        }
        match choice {
            Some(i) => {
                let p = &mut self.paths[i];
                p.packets_out += 1;
                PathChoice::One(p.key)
            }
            None if self.policy.base == BasePolicy::Broadcast && !self.set.is_empty() => {
                for &i in &self.set {
                    self.paths[i].packets_out += 1;
                }
                PathChoice::All(&self.set_keys)
            }
            None => PathChoice::Fallback,
        }
    }

    /// The single path for a packet (None: broadcast or fallback).
    fn choose(&mut self, now: Timestamp, flow: FlowId) -> Option<usize> {
        if self.set.is_empty() {
            return None;
        }
        match self.policy.base {
            BasePolicy::None | BasePolicy::Broadcast => None,
            BasePolicy::ActiveBackup => self.set.first().copied(),
            BasePolicy::BalanceRr => {
                let n = self.set.len();
                if self.policy.packets_per_link == 0 {
                    self.rng ^= self.rng << 13;
                    self.rng ^= self.rng >> 7;
                    self.rng ^= self.rng << 17;
                    return Some(self.set[(self.rng % n as u64) as usize]);
                }
                if self.rr_count >= self.policy.packets_per_link {
                    self.rr_pos += 1;
                    self.rr_count = 0;
                }
                self.rr_count += 1;
                Some(self.set[self.rr_pos % n])
            }
            BasePolicy::BalanceXor | BasePolicy::BalanceAware => Some(self.flow_path(now, flow)),
        }
    }

    fn flow_path(&mut self, now: Timestamp, flow: FlowId) -> usize {
        let aware = self.policy.base == BasePolicy::BalanceAware;
        if let Some(f) = self.flows.get_mut(&flow) {
            let keep = f.generation == self.generation || (aware && self.set.contains(&f.path));
            if keep {
                f.generation = self.generation;
                f.last = now;
                return f.path;
            }
            let old = f.path;
            self.paths[old].flows -= 1;
            let new = self.place(flow);
            self.paths[new].flows += 1;
            let f = self.flows.get_mut(&flow).expect("present");
            *f = Flow {
                path: new,
                generation: self.generation,
                last: now,
            };
            return new;
        }
        let new = self.place(flow);
        if self.flows.len() < MAX_FLOWS {
            self.paths[new].flows += 1;
            self.flows.insert(
                flow,
                Flow {
                    path: new,
                    generation: self.generation,
                    last: now,
                },
            );
        }
        new
    }

    /// Where a new (or displaced) flow goes. balance-xor: rendezvous hashing over the set
    /// (stable while the set is; a set change moves only the flows it must). balance-aware: the
    /// path whose flow count is furthest below its allocation.
    fn place(&self, flow: FlowId) -> usize {
        if self.policy.base == BasePolicy::BalanceAware && self.flows.len() < MAX_FLOWS {
            return *self
                .set
                .iter()
                .min_by(|&&a, &&b| {
                    let fa = (self.paths[a].flows + 1) as f64 / self.paths[a].alloc.max(1e-9);
                    let fb = (self.paths[b].flows + 1) as f64 / self.paths[b].alloc.max(1e-9);
                    fa.total_cmp(&fb)
                        .then_with(|| self.rank(a).cmp(&self.rank(b)))
                })
                .expect("set is not empty");
        }
        // Weighted rendezvous hashing (weights 1 for xor, the allocation for aware).
        let weighted = self.policy.base == BasePolicy::BalanceAware;
        *self
            .set
            .iter()
            .max_by(|&&a, &&b| {
                let s = |i: usize| {
                    let h = mix(self.paths[i].hash ^ u64::from(flow.0));
                    if weighted {
                        // -w / ln(u): the standard weighted form, u in (0, 1).
                        let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
                        -self.paths[i].alloc / u.ln()
                    } else {
                        h as f64
                    }
                };
                s(a).total_cmp(&s(b))
            })
            .expect("set is not empty")
    }

    /// Preference order for active-backup (lower is better): primaries before spares, the
    /// link's preferred address family, the link's position in the policy, then age.
    fn rank(&self, i: usize) -> (u8, u8, usize, u64) {
        let p = &self.paths[i];
        (
            u8::from(p.cfg.mode == LinkMode::Spare),
            u8::from(!p.cfg.ipv_pref.prefers(p.key.remote.is_ipv6())),
            self.policy.link_order(&p.link),
            p.seq,
        )
    }

    fn set_active(&mut self, now: Timestamp, new: Option<usize>) {
        if new != self.active {
            if self.active.is_some() {
                self.failovers += 1;
            }
            self.active = new;
            self.last_switch = now;
            self.rebuild_set();
        }
    }

    /// The periodic evaluation.
    fn check(&mut self, now: Timestamp) {
        let failover = self.failover();
        let deadline = self.deadline();
        let up_delay = i64::from(self.policy.up_delay_ms);
        let measured = self.policy.base != BasePolicy::ActiveBackup && self.peer_measures;
        // 1. Eligibility. spec: vl1.md §9.2
        for p in &mut self.paths {
            let allowed = p.cfg.enabled && p.cfg.ipv_pref.allows(p.key.remote.is_ipv6());
            let recent = p.last_in.is_some_and(|t| now - t <= deadline);
            let qos_ok = !measured
                || now - p.added_at < NOMINATION_TRIAL_MS
                || p.quality
                    .last_report_received()
                    .is_some_and(|t| now - t < QOS_FRESHNESS_MS);
            let eligible = allowed
                && recent
                && now - p.alive_since >= up_delay
                && now >= p.barred_until
                && qos_ok;
            if eligible != p.eligible {
                if eligible {
                    p.became_eligible = Some(now);
                } else {
                    // Flapping (ineligible again within four refractory periods of the previous
                    // time) doubles the refractory period, up to 600 s; otherwise it resets.
                    let flapping = p
                        .became_ineligible
                        .is_some_and(|t| now - t < 4 * p.refractory);
                    p.refractory = if flapping {
                        (p.refractory * 2).min(MAX_REFRACTORY_MS)
                    } else {
                        REFRACTORY_MS
                    };
                    p.became_ineligible = Some(now);
                    p.barred_until = now + p.refractory;
                }
                p.eligible = eligible;
                self.generation += 1;
                self.dirty = true;
            }
        }
        // 2. Quality, every quality-estimation interval (and when the set changed).
        let quality_due = now - self.last_quality >= self.qos_interval();
        if quality_due || self.dirty {
            if quality_due {
                self.last_quality = now;
                let stale = now - 3 * self.qos_interval();
                for p in &mut self.paths {
                    p.quality.roll_error_window();
                    if self.peer_measures {
                        // Reports stopped (one-way failure): what they never covered is lost.
                        p.quality.expire(stale);
                    }
                }
            }
            self.update_scores();
        }
        // 3. The active path / the balancing set.
        if self.policy.base == BasePolicy::ActiveBackup {
            self.select_active(now);
        }
        if self.dirty {
            self.rebuild_set();
        }
        // 4. Flow expiry and rebalancing (balance-aware).
        if quality_due {
            let paths = &mut self.paths;
            self.flows.retain(|_, f| {
                let keep = now - f.last < FLOW_EXPIRY_MS;
                if !keep {
                    paths[f.path].flows -= 1;
                }
                keep
            });
            if self.policy.base == BasePolicy::BalanceAware
                && now - self.last_rebalance >= OPTIMIZE_INTERVAL_MS
            {
                self.rebalance(now);
            }
        }
        // 5. Probes. spec: vl1.md §9.2, §9.4
        let monitor = self.monitor_interval();
        let qos = self.qos_interval();
        for p in &mut self.paths {
            if !(p.cfg.enabled && p.cfg.ipv_pref.allows(p.key.remote.is_ipv6())) {
                continue;
            }
            let alive = p.last_in.is_some_and(|t| now - t <= failover);
            let every = if alive { monitor } else { failover };
            if self.echo_capable
                && p.last_in.is_none_or(|t| now - t >= every)
                && p.last_echo.is_none_or(|t| now - t >= every)
            {
                p.last_echo = Some(now);
                self.actions.push_back(BondAction::Echo { path: p.key });
            }
            if let Some(r) = p.quality.take_report(now, qos) {
                let mut payload = Vec::new();
                r.encode(&mut payload);
                self.actions.push_back(BondAction::QosMeasurement {
                    path: p.key,
                    payload,
                });
            }
        }
        self.next_check = now + monitor.max(1);
    }

    fn update_scores(&mut self) {
        let caps: Vec<u32> = self
            .paths
            .iter()
            .map(|p| p.cfg.capacity)
            .filter(|c| *c > 0)
            .collect();
        let default_cap = if caps.is_empty() {
            1.0
        } else {
            caps.iter().map(|c| f64::from(*c)).sum::<f64>() / caps.len() as f64
        };
        let lq = self.policy.link_quality;
        for p in &mut self.paths {
            let cap = if p.cfg.capacity > 0 {
                f64::from(p.cfg.capacity)
            } else {
                default_cap
            };
            p.score = cap / default_cap * quality_score(&p.quality.snapshot(), &lq);
        }
        self.dirty = true;
    }

    fn rebuild_set(&mut self) {
        self.set.clear();
        if self.policy.base == BasePolicy::ActiveBackup {
            self.set
                .extend(self.active.filter(|&a| self.paths[a].eligible));
        } else {
            let primaries: Vec<usize> = (0..self.paths.len())
                .filter(|&i| self.paths[i].eligible && self.paths[i].cfg.mode == LinkMode::Primary)
                .collect();
            if primaries.is_empty() {
                self.set
                    .extend((0..self.paths.len()).filter(|&i| self.paths[i].eligible));
            } else {
                self.set = primaries;
            }
        }
        let total: f64 = self.set.iter().map(|&i| self.paths[i].score).sum();
        for p in &mut self.paths {
            p.alloc = 0.0;
        }
        for &i in &self.set {
            self.paths[i].alloc = if total > 0.0 {
                self.paths[i].score / total
            } else {
                1.0 / self.set.len() as f64
            };
        }
        self.set_keys = self.set.iter().map(|&i| self.paths[i].key).collect();
        if self.set.is_empty() {
            self.rr_pos = 0;
        } else {
            self.rr_pos %= self.set.len();
        }
        self.dirty = false;
    }

    fn select_active(&mut self, now: Timestamp) {
        let mut order: Vec<usize> = (0..self.paths.len())
            .filter(|&i| self.paths[i].eligible)
            .collect();
        order.sort_by_key(|&i| self.rank(i));
        let Some(&best) = order.first() else {
            if self.active.is_some_and(|a| !self.paths[a].eligible) {
                // Keep it as the "previous active" for failoverTo; it carries nothing.
                self.dirty = true;
            }
            return;
        };
        let cur = self.active.filter(|&a| self.paths[a].eligible);
        let new = match cur {
            None => {
                // Failover (or first selection): the failed link's failoverTo if eligible.
                self.pinned = false;
                let via = self
                    .active
                    .and_then(|a| self.paths[a].cfg.failover_to.clone())
                    .and_then(|to| order.iter().copied().find(|&i| self.paths[i].link == to));
                self.failover_origin = match (via, self.active) {
                    (Some(_), Some(a)) => Some(self.rank(a)),
                    _ => None,
                };
                via.unwrap_or(best)
            }
            Some(c) if self.pinned => c,
            Some(c) => match self.policy.link_select {
                LinkSelect::Always => {
                    let allowed = self.failover_origin.is_none_or(|o| self.rank(best) <= o);
                    if self.rank(best) < self.rank(c) && allowed {
                        self.failover_origin = None;
                        best
                    } else {
                        c
                    }
                }
                LinkSelect::Better => order
                    .iter()
                    .copied()
                    .filter(|&i| self.rank(i) < self.rank(c))
                    .find(|&i| self.paths[i].score > self.paths[c].score * (1.0 + RESELECT_MARGIN))
                    .unwrap_or(c),
                LinkSelect::Failure => c,
                LinkSelect::Optimize => {
                    let top = order
                        .iter()
                        .copied()
                        .max_by(|&a, &b| {
                            self.paths[a]
                                .score
                                .total_cmp(&self.paths[b].score)
                                .then_with(|| self.rank(b).cmp(&self.rank(a)))
                        })
                        .expect("order is not empty");
                    if self.paths[top].score > self.paths[c].score * (1.0 + RESELECT_MARGIN)
                        && now - self.last_switch >= OPTIMIZE_INTERVAL_MS
                    {
                        top
                    } else {
                        c
                    }
                }
            },
        };
        self.set_active(now, Some(new));
    }

    /// Moves flows from paths holding clearly more than their allocation to paths holding
    /// less. Bounded by the flow table; runs at most every [`OPTIMIZE_INTERVAL_MS`].
    fn rebalance(&mut self, now: Timestamp) {
        self.last_rebalance = now;
        if self.set.len() < 2 {
            return;
        }
        let total: usize = self.set.iter().map(|&i| self.paths[i].flows).sum();
        if total == 0 {
            return;
        }
        let target = |b: &Bond, i: usize| b.paths[i].alloc * total as f64;
        let over: Vec<usize> = self
            .set
            .iter()
            .copied()
            .filter(|&i| {
                let t = target(self, i);
                self.paths[i].flows as f64 - t > (0.1 * t).max(1.0)
            })
            .collect();
        if over.is_empty() {
            return;
        }
        let ids: Vec<FlowId> = self
            .flows
            .iter()
            .filter(|(_, f)| over.contains(&f.path))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let from = self.flows[&id].path;
            if (self.paths[from].flows as f64) <= target(self, from).round() {
                continue;
            }
            // The path furthest below its target.
            let Some(to) = self
                .set
                .iter()
                .copied()
                .filter(|&j| (self.paths[j].flows as f64) < target(self, j).round())
                .min_by(|&a, &b| {
                    let da = self.paths[a].flows as f64 - target(self, a);
                    let db = self.paths[b].flows as f64 - target(self, b);
                    da.total_cmp(&db)
                })
            else {
                break;
            };
            self.paths[from].flows -= 1;
            self.paths[to].flows += 1;
            let f = self.flows.get_mut(&id).expect("present");
            f.path = to;
            f.generation = self.generation;
        }
    }

    /// The snapshot for `bond <peer> show` and the JSON API.
    pub fn info(&self, now: Timestamp) -> BondInfo {
        let total_packets: u64 = self.paths.iter().map(|p| p.packets_out).sum();
        let dp_flows = |p: &BondPath| p.dp_flows.iter().map(|n| *n as usize).sum::<usize>();
        let path_flows = |p: &BondPath| p.flows + dp_flows(p);
        let total_flows: usize = self.paths.iter().map(path_flows).sum();
        let failover = self.failover();
        let paths = self
            .paths
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let allowed = p.cfg.enabled && p.cfg.ipv_pref.allows(p.key.remote.is_ipv6());
                let state = if !allowed {
                    LinkState::Disabled
                } else if p.eligible && self.set.contains(&i) {
                    LinkState::Up
                } else if p.eligible {
                    LinkState::Standby
                } else if p.last_in.is_some_and(|t| now - t <= self.deadline()) {
                    LinkState::Waiting
                } else {
                    LinkState::Down
                };
                let q = p.quality.snapshot();
                BondPathInfo {
                    path: p.key,
                    link: p.link.clone(),
                    state,
                    alive: p.last_in.is_some_and(|t| now - t <= failover),
                    eligible: p.eligible,
                    preferred: self.set.contains(&i),
                    mode: p.cfg.mode,
                    capacity: p.cfg.capacity,
                    mtu: self.mtu_of(i),
                    last_in_age_ms: p.last_in.map(|t| now - t),
                    last_out_age_ms: p.last_out.map(|t| now - t),
                    latency_mean_ms: q.latency_mean_ms,
                    pdv_ms: q.pdv_ms,
                    loss: q.loss,
                    error: q.error,
                    relative_quality: p.score,
                    allocation: p.alloc,
                    flows: path_flows(p),
                    flow_share: share(path_flows(p) as f64, total_flows as f64),
                    packets: p.packets_out,
                    packet_share: share(p.packets_out as f64, total_packets as f64),
                }
            })
            .collect::<Vec<_>>();
        BondInfo {
            policy_name: self.policy.name.clone(),
            base: self.policy.base,
            link_select: self.policy.link_select,
            failover_interval_ms: self.policy.failover_interval_ms,
            up_delay_ms: self.policy.up_delay_ms,
            down_delay_ms: self.policy.down_delay_ms,
            packets_per_link: self.policy.packets_per_link,
            alive_links: paths.iter().filter(|p| p.alive).count(),
            total_links: paths.len(),
            failovers: self.failovers,
            flows: self.flows.len() + self.paths.iter().map(dp_flows).sum::<usize>(),
            paths,
        }
    }
}

fn share(part: f64, total: f64) -> f64 {
    if total > 0.0 { part / total } else { 0.0 }
}

/// A bond, as shown to users. Plain data: the CLI prints it, the API turns it into JSON with
/// [`BondInfo::to_json`] (1.14's field names where 1.14 has one).
#[derive(Debug, Clone, PartialEq)]
pub struct BondInfo {
    /// Policy name (standard or custom).
    pub policy_name: String,
    /// The base policy (`bondingPolicyCode`).
    pub base: BasePolicy,
    /// Link select method (active-backup).
    pub link_select: LinkSelect,
    /// `failoverInterval` (ms).
    pub failover_interval_ms: u32,
    /// `upDelay` (ms).
    pub up_delay_ms: u32,
    /// `downDelay` (ms).
    pub down_delay_ms: u32,
    /// `packetsPerLink`.
    pub packets_per_link: u32,
    /// Paths that received within `failoverInterval` (`numAliveLinks`).
    pub alive_links: usize,
    /// All paths of the bond (`numTotalLinks`).
    pub total_links: usize,
    /// Times the active path changed after the first selection (active-backup).
    pub failovers: u64,
    /// Flows in the flow tables (the control plane's and the data plane's balance-aware ones).
    pub flows: usize,
    /// Each path.
    pub paths: Vec<BondPathInfo>,
}

/// One path of a bond, as shown to users.
#[derive(Debug, Clone, PartialEq)]
pub struct BondPathInfo {
    /// The path.
    pub path: PathKey,
    /// Interface name (`ifname`).
    pub link: String,
    /// State.
    pub state: LinkState,
    /// Received within `failoverInterval`.
    pub alive: bool,
    /// Eligible (`eligible`).
    pub eligible: bool,
    /// Carrying traffic now (the active path, or in the balancing set).
    pub preferred: bool,
    /// Link mode.
    pub mode: LinkMode,
    /// Configured capacity (`givenLinkSpeed`); 0 = unspecified.
    pub capacity: u32,
    /// Configured MTU; 0 = unspecified.
    pub mtu: u16,
    /// ms since the last receive (`lastInAge`).
    pub last_in_age_ms: Option<i64>,
    /// ms since the last send (`lastOutAge`).
    pub last_out_age_ms: Option<i64>,
    /// Mean latency (`latencyMean`).
    pub latency_mean_ms: Option<f64>,
    /// Delay variation, standard deviation (`latencyVariance`).
    pub pdv_ms: Option<f64>,
    /// Loss ratio (`packetLossRatio`).
    pub loss: Option<f64>,
    /// Error ratio (`packetErrorRatio`).
    pub error: f64,
    /// Capacity-weighted quality score (`relativeQuality`).
    pub relative_quality: f64,
    /// Target share of flows (balance-aware), 0 when not in the set.
    pub allocation: f64,
    /// Flows assigned (`assignedFlowCount`).
    pub flows: usize,
    /// Share of the bond's flows.
    pub flow_share: f64,
    /// Packets chosen for this path since the bond began.
    pub packets: u64,
    /// Share of the bond's packets.
    pub packet_share: f64,
}

impl BondInfo {
    /// The JSON shape: the peer object's bond extras (`bondingPolicyCode`, `bondingPolicyStr`,
    /// `downDelay`, `failoverInterval`, `numAliveLinks`, `numTotalLinks`, `packetsPerLink`,
    /// `upDelay`) plus weft's `linkSelectMethod`, and `paths` with each path's bonded extras
    /// (1.14 names) plus weft's `state`, `mode`, `flowShare`, `packets`, `packetShare`,
    /// `allocation`, `pdv`. Unknown measurements are -1. spec: service.md §4.5
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        let opt = |v: Option<f64>| v.unwrap_or(-1.0);
        let paths: Vec<serde_json::Value> = self
            .paths
            .iter()
            .map(|p| {
                json!({
                    "address": format!("{}/{}", p.path.remote.ip(), p.path.remote.port()),
                    "localSocket": p.path.local.0,
                    "ifname": p.link,
                    "state": p.state.name(),
                    "mode": match p.mode { LinkMode::Primary => "primary", LinkMode::Spare => "spare" },
                    "bonded": p.preferred,
                    "eligible": p.eligible,
                    "givenLinkSpeed": p.capacity,
                    "mtu": p.mtu,
                    "lastInAge": p.last_in_age_ms.unwrap_or(-1),
                    "lastOutAge": p.last_out_age_ms.unwrap_or(-1),
                    "latencyMean": opt(p.latency_mean_ms),
                    "latencyVariance": opt(p.pdv_ms),
                    "pdv": opt(p.pdv_ms),
                    "packetLossRatio": opt(p.loss),
                    "packetErrorRatio": p.error,
                    "relativeQuality": p.relative_quality,
                    "allocation": p.allocation,
                    "assignedFlowCount": p.flows,
                    "flowShare": p.flow_share,
                    "packets": p.packets,
                    "packetShare": p.packet_share,
                })
            })
            .collect();
        json!({
            "bondingPolicyCode": self.base.code(),
            "bondingPolicyStr": self.policy_name,
            "linkSelectMethod": self.link_select.name(),
            "failoverInterval": self.failover_interval_ms,
            "upDelay": self.up_delay_ms,
            "downDelay": self.down_delay_ms,
            "packetsPerLink": self.packets_per_link,
            "numAliveLinks": self.alive_links,
            "numTotalLinks": self.total_links,
            "failovers": self.failovers,
            "flows": self.flows,
            "paths": paths,
        })
    }
}
