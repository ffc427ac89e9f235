//! Multipath bonding on the fast path: the control plane's bond decision for a peer
//! ([`BondEntry`]: policy, eligible paths in order, shares) and the engine's per-frame choice
//! from it. spec: vl1.md §9.1
//!
//! * active-backup: the first eligible path (the active one);
//! * broadcast: every eligible path, the same armored packet (same packet id) on each; the
//!   receiving engine drops copies it has seen (a per-peer window of recent packet ids);
//! * balance-rr: the next path every `packets_per_link` frames;
//! * balance-xor: the inner flow's hash onto the paths (stateless, so a flow keeps its path
//!   while the set of paths stays the same);
//! * balance-aware: a flow table (`AwareFlows`): a new flow goes to the path whose flow count
//!   is furthest below the share the control plane measured for it; a flow keeps its path until
//!   the path leaves the bond or it sits idle for [`FLOW_EXPIRY_MS`]; every
//!   [`REBALANCE_INTERVAL_MS`] flows move off paths holding clearly more than their share.

use std::collections::{HashMap, HashSet, VecDeque};

use crate::PathEntry;
use crate::flow::{FiveTuple, flow_hash};

/// The policy a bond behaves as (the base policy of a custom one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BondKind {
    /// One path at a time, failover to the next.
    ActiveBackup,
    /// Every packet on every path.
    Broadcast,
    /// Round-robin, `packets_per_link` packets per path.
    BalanceRr,
    /// Flows hashed onto paths.
    BalanceXor,
    /// Flows placed by measured quality (shares).
    BalanceAware,
}

impl BondKind {
    /// Wire code in the boundary record.
    pub fn code(self) -> u8 {
        match self {
            BondKind::ActiveBackup => 1,
            BondKind::Broadcast => 2,
            BondKind::BalanceRr => 3,
            BondKind::BalanceXor => 4,
            BondKind::BalanceAware => 5,
        }
    }

    /// From the wire code.
    pub fn from_code(c: u8) -> Option<BondKind> {
        Some(match c {
            1 => BondKind::ActiveBackup,
            2 => BondKind::Broadcast,
            3 => BondKind::BalanceRr,
            4 => BondKind::BalanceXor,
            5 => BondKind::BalanceAware,
            _ => return None,
        })
    }
}

/// A bonded peer's current decision, published with the tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BondEntry {
    /// The policy.
    pub kind: BondKind,
    /// The eligible paths, in the order the policy uses them (active-backup: active first).
    /// Empty: no eligible path, frames go up to the control plane.
    pub paths: Vec<PathEntry>,
    /// Per path, its weight (balance-aware shares scaled to 0..=65535; equal otherwise). Same
    /// length as `paths`, or empty for equal weights.
    pub weights: Vec<u16>,
    /// Per path, its MTU (`bond setmtu`, the link's `mtu`); 0 or absent: the tables' MTU.
    pub mtus: Vec<u16>,
    /// The bond's QoS interval (2 × failoverInterval; 0: [`DEFAULT_QOS_INTERVAL_MS`]), which
    /// sets how many QoS samples a path may take ([`qos_budget`]).
    pub qos_interval_ms: u32,
    /// balance-rr: frames per path before moving to the next (0: a random path per frame).
    pub packets_per_link: u32,
}

/// A balance-aware flow idle this long is forgotten (the control plane's bond uses the same).
pub const FLOW_EXPIRY_MS: i64 = 120_000;
/// Flows are re-balanced at most this often (spec: vl1.md §9.2, the anti-flapping interval).
pub const REBALANCE_INTERVAL_MS: i64 = 15_000;
/// At most this many balance-aware flows are tracked per peer; beyond it new flows are placed
/// by weighted hash.
pub const MAX_FLOWS: usize = 65_536;

/// QoS sampling on the fast path. spec: vl1.md §9.4 — the receiver reports sampled packets
/// (odd on-wire id) it got on a path; the sender keeps when it sent them and turns the reports
/// into latency and loss. The fast path reports its samples to the control plane, which runs
/// the measurement. Reports must stay under the peer's rate gate (reports closer than a 64th
/// of the QoS interval count towards 128, then are ignored), so each path has a budget of
/// samples per second ([`qos_budget`]) and both ends follow rules that agree without talking:
///
/// * sending, a frame's id is kept when it is sampled and either [`qos_priority`] (1 in 512
///   packets, the same ids on both ends) or the path is slow: at most half the budget of frames
///   in the last report period and so far in this one;
/// * receiving, every sampled id is reported up to half the budget per period (a slow sender's
///   kept ids always fit), and [`qos_priority`] ones up to the other half. A weft sender's kept
///   ids are thus always reported when they arrive, so unreported ones mean loss — up to about
///   256 × budget packets per second on one path, where priority ids alone fill the budget.
///
/// Samples per second one path's QoS reports may carry at QoS interval `qos_interval_ms`
/// (2 × failoverInterval): a full report (140 records) every 16th of the interval, a quarter of
/// the pace at which the peer's rate gate starts counting.
pub fn qos_budget(qos_interval_ms: u32) -> u32 {
    let qi = qos_interval_ms.max(1_000);
    (140 * 16 * 1_000 / qi).clamp(140, 8_192)
}

/// The QoS interval when the tables give none (failoverInterval's default 5000 ms × 2).
pub const DEFAULT_QOS_INTERVAL_MS: u32 = 10_000;

/// Whether on-wire packet id `id` is sampled for QoS (odd; FRAME/EXT_FRAME are never the
/// excluded verbs). spec: vl1.md §9.4
pub fn qos_sampled(id: u64) -> bool {
    id & 1 == 1
}

/// Whether a sampled id is one every weft engine keeps and reports at any rate (1 in 256 of the
/// sampled ids, by a mix of the id so it is the same on both ends).
pub fn qos_priority(id: u64) -> bool {
    let mut z = id.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    qos_sampled(id) && (z ^ (z >> 31)) & 255 == 0
}

/// One period's QoS bookkeeping of a bonded (peer, path).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct QosCounts {
    /// Frames sent on it this period (reported as the path's frames) and the last.
    pub(crate) sent: u32,
    pub(crate) prev_sent: u32,
    /// Sampled ids reported received (all / priority beyond those).
    pub(crate) received: u32,
    pub(crate) received_priority: u32,
}

impl QosCounts {
    /// Counts a frame sent with on-wire id `id`; true if its send time is to be reported.
    /// `budget`: [`qos_budget`] (this engine's part of it).
    pub(crate) fn keep_sent(&mut self, id: u64, budget: u32) -> bool {
        self.sent = self.sent.saturating_add(1);
        let half = budget / 2;
        let slow = self.prev_sent <= half && self.sent <= half;
        qos_sampled(id) && (slow || qos_priority(id))
    }

    /// Starts a new period; false once nothing happened in two periods (forget it).
    pub(crate) fn roll(&mut self) -> bool {
        let busy = self.sent > 0 || self.prev_sent > 0 || self.received > 0;
        *self = QosCounts {
            prev_sent: self.sent,
            ..QosCounts::default()
        };
        busy
    }

    /// Whether a received frame's on-wire id `id` is to be reported.
    pub(crate) fn keep_received(&mut self, id: u64, budget: u32) -> bool {
        if !qos_sampled(id) {
            return false;
        }
        let half = budget / 2;
        if self.received < half {
            self.received += 1;
            return true;
        }
        if qos_priority(id) && self.received_priority < half {
            self.received_priority += 1;
            return true;
        }
        false
    }
}

/// The engine's per-peer bond state: balance-rr's position and balance-aware's flow table.
#[derive(Debug, Default)]
pub(crate) struct BondState {
    rr_pos: usize,
    rr_count: u32,
    /// balance-rr with `packetsPerLink` 0: a random path per packet (xorshift64; not secret).
    rr_rng: u64,
    aware: AwareFlows,
    /// When a frame last went out through this state.
    last_used_ms: i64,
}

impl BondState {
    /// Forgets idle flows.
    pub(crate) fn expire(&mut self, now_ms: i64) {
        self.aware.expire(now_ms);
    }

    /// Whether nothing is left worth keeping at `now_ms`: no flows, and no frame for as long
    /// as a flow would be kept (balance-rr's position survives pauses shorter than that).
    pub(crate) fn is_idle(&self, now_ms: i64) -> bool {
        self.aware.flows.is_empty() && now_ms - self.last_used_ms >= FLOW_EXPIRY_MS
    }

    /// balance-aware flows per path (paths holding none are left out).
    pub(crate) fn flows_per_path(&self) -> impl Iterator<Item = (PathEntry, u32)> + '_ {
        self.aware
            .counts
            .iter()
            .map(|(p, n)| (*p, u32::try_from(*n).unwrap_or(u32::MAX)))
    }
}

#[derive(Debug, Clone, Copy)]
struct AwareFlow {
    path: PathEntry,
    last_ms: i64,
}

/// balance-aware's flow table for one peer: flow hash → path, and flows per path.
#[derive(Debug, Default)]
pub(crate) struct AwareFlows {
    flows: HashMap<u32, AwareFlow>,
    counts: HashMap<PathEntry, usize>,
    last_rebalance_ms: Option<i64>,
}

impl AwareFlows {
    fn count(&self, p: &PathEntry) -> usize {
        self.counts.get(p).copied().unwrap_or(0)
    }

    fn add(&mut self, p: PathEntry) {
        *self.counts.entry(p).or_default() += 1;
    }

    fn remove(&mut self, p: &PathEntry) {
        if let Some(c) = self.counts.get_mut(p) {
            *c = c.saturating_sub(1);
            if *c == 0 {
                self.counts.remove(p);
            }
        }
    }

    /// The path (index into `bond.paths`) for flow `h` at `now_ms`.
    fn path_for(&mut self, bond: &BondEntry, h: u32, now_ms: i64) -> usize {
        let n = bond.paths.len();
        match self.last_rebalance_ms {
            None => self.last_rebalance_ms = Some(now_ms),
            Some(t) if now_ms - t >= REBALANCE_INTERVAL_MS => self.rebalance(bond, now_ms),
            Some(_) => {}
        }
        if let Some(f) = self.flows.get_mut(&h) {
            f.last_ms = now_ms;
            let path = f.path;
            if let Some(i) = bond.paths.iter().position(|p| *p == path) {
                return i;
            }
            // Its path left the bond: place it again.
            self.flows.remove(&h);
            self.remove(&path);
        }
        if self.flows.len() >= MAX_FLOWS {
            return weighted(h, &bond.weights, n);
        }
        let i = self.least_loaded(bond, None);
        let path = bond.paths[i];
        self.flows.insert(
            h,
            AwareFlow {
                path,
                last_ms: now_ms,
            },
        );
        self.add(path);
        i
    }

    /// The path whose flow count (plus one) is lowest relative to its weight; `skip` is left
    /// out. Ties go to the earlier path.
    fn least_loaded(&self, bond: &BondEntry, skip: Option<usize>) -> usize {
        let n = bond.paths.len();
        let equal = bond.weights.len() != n || bond.weights.iter().all(|w| *w == 0);
        let weight = |i: usize| {
            if equal {
                1.0
            } else {
                f64::from(bond.weights[i].max(1))
            }
        };
        (0..n)
            .filter(|&i| Some(i) != skip)
            .min_by(|&a, &b| {
                let la = (self.count(&bond.paths[a]) + 1) as f64 / weight(a);
                let lb = (self.count(&bond.paths[b]) + 1) as f64 / weight(b);
                la.total_cmp(&lb)
            })
            .unwrap_or(0)
    }

    /// Moves flows from paths holding clearly more than their share of the flows (more than
    /// 10% and at least one flow over) to the paths furthest below theirs.
    fn rebalance(&mut self, bond: &BondEntry, now_ms: i64) {
        self.last_rebalance_ms = Some(now_ms);
        let n = bond.paths.len();
        if n < 2 {
            return;
        }
        let equal = bond.weights.len() != n || bond.weights.iter().all(|w| *w == 0);
        let total_w: f64 = if equal {
            n as f64
        } else {
            bond.weights.iter().map(|w| f64::from((*w).max(1))).sum()
        };
        let share = |i: usize| {
            if equal {
                1.0 / n as f64
            } else {
                f64::from(bond.weights[i].max(1)) / total_w
            }
        };
        let placed: usize = bond.paths.iter().map(|p| self.count(p)).sum();
        if placed == 0 {
            return;
        }
        let target: Vec<f64> = (0..n).map(|i| share(i) * placed as f64).collect();
        let over = |s: &Self, i: usize| {
            let c = s.count(&bond.paths[i]) as f64;
            c - target[i] > (0.1 * target[i]).max(1.0)
        };
        let ids: Vec<u32> = self
            .flows
            .iter()
            .filter(|(_, f)| {
                bond.paths
                    .iter()
                    .position(|p| *p == f.path)
                    .is_some_and(|i| over(self, i))
            })
            .map(|(h, _)| *h)
            .collect();
        for h in ids {
            let from_path = self.flows[&h].path;
            let Some(from) = bond.paths.iter().position(|p| *p == from_path) else {
                continue;
            };
            if self.count(&from_path) as f64 <= target[from].round() {
                continue;
            }
            let Some(to) = (0..n)
                .filter(|&j| (self.count(&bond.paths[j]) as f64) < target[j].round())
                .min_by(|&a, &b| {
                    let da = self.count(&bond.paths[a]) as f64 - target[a];
                    let db = self.count(&bond.paths[b]) as f64 - target[b];
                    da.total_cmp(&db)
                })
            else {
                break;
            };
            let to_path = bond.paths[to];
            self.remove(&from_path);
            self.add(to_path);
            if let Some(f) = self.flows.get_mut(&h) {
                f.path = to_path;
            }
        }
    }

    fn expire(&mut self, now_ms: i64) {
        let mut gone = Vec::new();
        self.flows.retain(|_, f| {
            let keep = now_ms - f.last_ms < FLOW_EXPIRY_MS;
            if !keep {
                gone.push(f.path);
            }
            keep
        });
        for p in gone {
            self.remove(&p);
        }
    }
}

/// Indices into `bond.paths` that one frame goes out on (at most all of them).
pub(crate) fn choose(
    bond: &BondEntry,
    state: &mut BondState,
    flow: Option<&FiveTuple>,
    now_ms: i64,
    out: &mut Vec<usize>,
) {
    out.clear();
    let n = bond.paths.len();
    if n == 0 {
        return;
    }
    state.last_used_ms = now_ms;
    match bond.kind {
        BondKind::ActiveBackup => out.push(0),
        BondKind::Broadcast => out.extend(0..n),
        BondKind::BalanceRr if bond.packets_per_link == 0 => {
            // spec: vl1.md §9.1 — packetsPerLink 0: a random path for every packet
            let mut x = state.rr_rng;
            if x == 0 {
                x = 0x9e37_79b9_7f4a_7c15 ^ (n as u64);
            }
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            state.rr_rng = x;
            out.push((x % n as u64) as usize);
        }
        BondKind::BalanceRr => {
            if state.rr_count >= bond.packets_per_link {
                state.rr_pos = state.rr_pos.wrapping_add(1);
                state.rr_count = 0;
            }
            state.rr_count += 1;
            out.push(state.rr_pos % n);
        }
        BondKind::BalanceXor => {
            let h = flow.map_or(0, flow_hash);
            out.push(weighted(h, &[], n));
        }
        BondKind::BalanceAware => {
            let h = flow.map_or(0, flow_hash);
            out.push(state.aware.path_for(bond, h, now_ms));
        }
    }
}

/// Places hash `h` on one of `n` paths in proportion to `weights` (equal when absent or all 0).
fn weighted(h: u32, weights: &[u16], n: usize) -> usize {
    let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
    if weights.len() != n || total == 0 {
        return (h as usize) % n;
    }
    let mut x = (u64::from(h) * total) >> 32;
    for (i, w) in weights.iter().enumerate() {
        let w = u64::from(*w);
        if x < w {
            return i;
        }
        x -= w;
    }
    n - 1
}

/// Recently seen packet ids of one bonded peer: broadcast copies of a packet arrive on each
/// path with the same id and are written to the TAP once.
#[derive(Debug, Default)]
pub(crate) struct RecentIds {
    seen: HashSet<u64>,
    order: VecDeque<u64>,
}

impl RecentIds {
    const WINDOW: usize = 1024;

    /// Records `id`; true if it was already seen.
    pub(crate) fn check_and_insert(&mut self, id: u64) -> bool {
        if !self.seen.insert(id) {
            return true;
        }
        self.order.push_back(id);
        if self.order.len() > Self::WINDOW
            && let Some(old) = self.order.pop_front()
        {
            self.seen.remove(&old);
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    #[test]
    fn weighted_follows_shares() {
        let mut hits = [0u32; 2];
        for i in 0..10_000u32 {
            hits[weighted(i.wrapping_mul(0x9e37_79b9), &[3 * 16384, 16384], 2)] += 1;
        }
        assert!((7000..8000).contains(&hits[0]), "{hits:?}");
        assert_eq!(weighted(5, &[], 3), 2);
    }

    fn entry(weights: Vec<u16>, n: u16) -> BondEntry {
        BondEntry {
            kind: BondKind::BalanceAware,
            paths: (0..n)
                .map(|i| PathEntry {
                    local: 0,
                    addr: SocketAddr::from(([10, 0, 0, 1 + i as u8], 9993)),
                })
                .collect(),
            weights,
            mtus: Vec::new(),
            qos_interval_ms: 0,
            packets_per_link: 0,
        }
    }

    fn spread(
        st: &mut BondState,
        b: &BondEntry,
        flows: std::ops::Range<u32>,
        now: i64,
    ) -> Vec<u32> {
        let mut hits = vec![0u32; b.paths.len()];
        for f in flows {
            hits[first(st, b, f, now)] += 1;
        }
        hits
    }

    #[test]
    fn aware_places_new_flows_by_count_and_share() {
        let mut st = BondState::default();
        let b = entry(vec![], 2);
        assert_eq!(spread(&mut st, &b, 0..16, 0), vec![8, 8]);
        // The same flows again: each keeps its path.
        let before: Vec<usize> = (0..16).map(|f| first(&mut st, &b, f, 10)).collect();
        let after: Vec<usize> = (0..16).map(|f| first(&mut st, &b, f, 20)).collect();
        assert_eq!(before, after);
        // Shares 3:1 → new flows 3:1.
        let mut st = BondState::default();
        let b = entry(vec![3 * 16384, 16384], 2);
        assert_eq!(spread(&mut st, &b, 0..16, 0), vec![12, 4]);
    }

    fn first(st: &mut BondState, b: &BondEntry, f: u32, now: i64) -> usize {
        let t = FiveTuple {
            protocol: 6,
            src: [10, 1, 0, 1].into(),
            dst: [10, 1, 0, 2].into(),
            src_port: 40000 + f as u16,
            dst_port: 5201,
        };
        let mut out = Vec::new();
        choose(b, st, Some(&t), now, &mut out);
        out[0]
    }

    #[test]
    fn aware_replaces_flows_of_a_departed_path_and_rebalances() {
        let mut st = BondState::default();
        let two = entry(vec![], 2);
        assert_eq!(spread(&mut st, &two, 0..10, 0), vec![5, 5]);
        // Path 1 leaves: its flows move to path 0, the others stay.
        let one = BondEntry {
            paths: vec![two.paths[0]],
            ..two.clone()
        };
        assert_eq!(spread(&mut st, &one, 0..10, 1000), vec![10]);
        // It comes back: no flow moves before the re-balancing interval...
        assert_eq!(spread(&mut st, &two, 0..10, 2000), vec![10, 0]);
        // ...then half of them do, once.
        let t = REBALANCE_INTERVAL_MS + 1000;
        assert_eq!(spread(&mut st, &two, 0..10, t), vec![5, 5]);
        assert_eq!(spread(&mut st, &two, 0..10, t + 10), vec![5, 5]);
        // Idle flows are forgotten.
        st.expire(t + 10 + FLOW_EXPIRY_MS);
        assert!(st.is_idle(t + 10 + FLOW_EXPIRY_MS));
    }

    #[test]
    fn qos_sampling_keeps_priority_ids_at_any_rate() {
        let ids: Vec<u64> = (0..200_000u64).map(|i| 0x1234_5678_0000 + i).collect();
        let priority = ids.iter().filter(|&&i| qos_priority(i)).count();
        assert!((300..500).contains(&priority), "{priority}");
        assert!(
            ids.iter()
                .filter(|&&i| qos_priority(i))
                .all(|&i| qos_sampled(i))
        );
        // failoverInterval 1000 ms: reports every 2 s, 1120 samples a second.
        let budget = qos_budget(2_000);
        assert_eq!(budget, 1_120);
        assert_eq!(qos_budget(10_000), 224);
        let (mut tx, mut rx) = (QosCounts::default(), QosCounts::default());
        // Slow: every sampled id is kept.
        let slow: Vec<u64> = ids[..200]
            .iter()
            .copied()
            .filter(|&i| tx.keep_sent(i, budget))
            .collect();
        assert_eq!(slow.len(), 100);
        assert!(tx.roll());
        // This period is fast; so was the last one: only priority ones after that.
        for &i in &ids[..budget as usize] {
            tx.keep_sent(i, budget);
        }
        assert!(tx.roll());
        let kept: Vec<u64> = ids
            .iter()
            .copied()
            .filter(|&i| tx.keep_sent(i, budget))
            .collect();
        assert_eq!(kept.len(), priority);
        // A receiver of the same stream reports every id the sender kept, and at most the
        // budget in all.
        let reported: HashSet<u64> = ids
            .iter()
            .copied()
            .filter(|&i| rx.keep_received(i, budget))
            .collect();
        assert!(kept.iter().all(|i| reported.contains(i)));
        assert!(reported.len() <= budget as usize, "{}", reported.len());
        // Even ids are never sampled.
        assert!(!QosCounts::default().keep_sent(2, budget));
        assert!(!QosCounts::default().keep_received(2, budget));
        // Idle for two periods: forgotten.
        assert!(tx.roll());
        assert!(tx.roll());
        assert!(!tx.roll());
    }

    #[test]
    fn recent_ids_window() {
        let mut r = RecentIds::default();
        assert!(!r.check_and_insert(1));
        assert!(r.check_and_insert(1));
        for i in 2..2000 {
            r.check_and_insert(i);
        }
        assert!(!r.check_and_insert(1));
    }
}
