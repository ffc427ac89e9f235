//! Multipath bonding on the fast path: the control plane's bond decision for a peer
//! ([`BondEntry`]: policy, eligible paths in order, shares) and the engine's per-frame choice
//! from it. spec: vl1.md §9.1
//!
//! * active-backup: the first eligible path (the active one);
//! * broadcast: every eligible path, the same armored packet (same packet id) on each; the
//!   receiving engine drops copies it has seen (a per-peer window of recent packet ids);
//! * balance-rr: the next path every `packets_per_link` frames;
//! * balance-xor / balance-aware: the inner flow's hash onto the paths, weighted by the shares
//!   the control plane computed (equal for xor).

use std::collections::{HashSet, VecDeque};

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
    /// balance-rr: frames per path before moving to the next (0 is treated as 1).
    pub packets_per_link: u32,
}

/// The engine's balance-rr position for one peer.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RrState {
    pub(crate) pos: usize,
    pub(crate) count: u32,
}

/// Indices into `bond.paths` that one frame goes out on (at most all of them).
pub(crate) fn choose(
    bond: &BondEntry,
    rr: &mut RrState,
    flow: Option<&FiveTuple>,
    out: &mut Vec<usize>,
) {
    out.clear();
    let n = bond.paths.len();
    if n == 0 {
        return;
    }
    match bond.kind {
        BondKind::ActiveBackup => out.push(0),
        BondKind::Broadcast => out.extend(0..n),
        BondKind::BalanceRr => {
            if rr.count >= bond.packets_per_link.max(1) {
                rr.pos = rr.pos.wrapping_add(1);
                rr.count = 0;
            }
            rr.count += 1;
            out.push(rr.pos % n);
        }
        BondKind::BalanceXor | BondKind::BalanceAware => {
            let h = flow.map_or(0, flow_hash);
            out.push(weighted(h, &bond.weights, n));
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
