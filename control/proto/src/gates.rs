//! Bounded tables that gate what the node accepts: replies it expects, duplicates it has seen,
//! and the identity-validation rate gate. spec: vl1.md §3.8, §8.11

use std::collections::{HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};

use weft_wire::Address;

use crate::Timestamp;

/// Packet ids this node sent recently and may get an OK for: 256 buckets × 32 entries indexed by
/// bits 32..39 of the id, holding the high 32 bits; the oldest entry of a bucket is overwritten.
/// spec: vl1.md §3.8
#[derive(Debug)]
pub(crate) struct ExpectingReplies {
    buckets: Vec<[u32; 32]>,
    next: Vec<u8>,
}

impl ExpectingReplies {
    pub(crate) fn new() -> Self {
        ExpectingReplies {
            buckets: vec![[0u32; 32]; 256],
            next: vec![0u8; 256],
        }
    }

    pub(crate) fn register(&mut self, packet_id: u64) {
        let b = ((packet_id >> 32) & 0xff) as usize;
        let i = usize::from(self.next[b]) % 32;
        self.buckets[b][i] = (packet_id >> 32) as u32;
        self.next[b] = ((i + 1) % 32) as u8;
    }

    pub(crate) fn expecting(&self, packet_id: u64) -> bool {
        let b = ((packet_id >> 32) & 0xff) as usize;
        let hi = (packet_id >> 32) as u32;
        hi != 0 && self.buckets[b].contains(&hi)
    }
}

/// Recently seen authenticated packets, keyed by (source, on-wire packet id, physical source):
/// exact duplicates are dropped. Copies of one packet arriving over different paths are not
/// duplicates (1.14 sends each probe once from every local socket, and each copy confirms a
/// path). Bounded: a window of the last [`DuplicateFilter::WINDOW`] packets.
#[derive(Debug)]
pub(crate) struct DuplicateFilter {
    seen: HashSet<(Address, u64, SocketAddr)>,
    order: VecDeque<(Address, u64, SocketAddr)>,
}

impl DuplicateFilter {
    pub(crate) const WINDOW: usize = 4096;

    pub(crate) fn new() -> Self {
        DuplicateFilter {
            seen: HashSet::new(),
            order: VecDeque::new(),
        }
    }

    /// Records the packet; returns `true` if it was already seen (a duplicate).
    pub(crate) fn check_and_insert(&mut self, source: Address, id: u64, from: SocketAddr) -> bool {
        let key = (source, id, from);
        if !self.seen.insert(key) {
            return true;
        }
        self.order.push_back(key);
        if self.order.len() > Self::WINDOW
            && let Some(old) = self.order.pop_front()
        {
            self.seen.remove(&old);
        }
        false
    }
}

/// The identity-validation gate: one full validation per source-IP bucket per 2,000 ms.
/// spec: vl1.md §8.11
#[derive(Debug)]
pub(crate) struct IdentityValidationGate {
    last: Vec<Timestamp>,
}

/// The gate interval on 64-bit x86 builds of 1.14.
pub(crate) const IDENTITY_VALIDATION_INTERVAL_MS: i64 = 2_000;

impl IdentityValidationGate {
    pub(crate) fn new() -> Self {
        IdentityValidationGate {
            last: vec![Timestamp::MIN / 2; 1 << 14],
        }
    }

    /// The 14-bit bucket of an IP address.
    pub(crate) fn bucket(ip: IpAddr) -> usize {
        match ip {
            IpAddr::V4(v) => {
                let mut h = u32::from(v) >> 8;
                h ^= h >> 14;
                (h & 0x3fff) as usize
            }
            IpAddr::V6(v) => {
                let o = v.octets();
                let mut h: u32 = 0;
                for &b in &o[..6] {
                    h = h.wrapping_mul(2).wrapping_add(u32::from(b));
                }
                (h & 0x3fff) as usize
            }
        }
    }

    /// Whether a validation may run now for `ip`; if so the slot is consumed.
    pub(crate) fn allow(&mut self, now: Timestamp, ip: IpAddr) -> bool {
        let b = Self::bucket(ip);
        if now - self.last[b] >= IDENTITY_VALIDATION_INTERVAL_MS {
            self.last[b] = now;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expecting_replies_is_bounded_and_matches_high_bits() {
        let mut e = ExpectingReplies::new();
        e.register(0x1122_3344_5566_7788);
        assert!(e.expecting(0x1122_3344_0000_0000));
        assert!(!e.expecting(0x1122_3345_5566_7788));
        // 32 more ids in the same bucket push the first out
        for i in 0..32u64 {
            e.register(((0x1000 + i) << 40) | (0x44 << 32));
        }
        assert!(!e.expecting(0x1122_3344_5566_7788));
    }

    #[test]
    fn duplicates_window() {
        let mut d = DuplicateFilter::new();
        let a = Address::new(1).unwrap();
        let p: SocketAddr = "10.0.0.1:9993".parse().unwrap();
        let q: SocketAddr = "10.0.0.2:9993".parse().unwrap();
        assert!(!d.check_and_insert(a, 7, p));
        assert!(d.check_and_insert(a, 7, p));
        assert!(
            !d.check_and_insert(a, 7, q),
            "a copy over another path is not a duplicate"
        );
        for i in 0..DuplicateFilter::WINDOW as u64 {
            d.check_and_insert(a, 1000 + i, p);
        }
        assert!(!d.check_and_insert(a, 7, p), "forgotten after the window");
    }

    #[test]
    fn validation_gate() {
        let mut g = IdentityValidationGate::new();
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        assert!(g.allow(0, ip));
        assert!(!g.allow(1_000, ip));
        assert!(
            !g.allow(1_999, "10.1.2.200".parse().unwrap()),
            "same /24 bucket"
        );
        assert!(g.allow(2_000, ip));
    }
}
