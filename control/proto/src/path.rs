//! Physical paths and their timers. spec: vl1.md §8.1, §8.2

use std::net::SocketAddr;

use weft_wire::inet::ip_scope;

use crate::{LocalSocket, Timestamp};

/// Heartbeat: probe a path if nothing was sent on it for this long.
pub(crate) const HEARTBEAT_MS: i64 = 14_000;
/// A path is alive if something was received within this window.
pub(crate) const ALIVE_MS: i64 = 19_000;
/// A peer's path slot expires when nothing valid was received on it for this long.
pub(crate) const EXPIRATION_MS: i64 = 243_000;
/// Maximum path slots per peer.
pub(crate) const MAX_PEER_PATHS: usize = 64;
/// Latency value meaning "unknown".
pub(crate) const LATENCY_UNKNOWN: u32 = 0xffff;

/// One of a peer's direct paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PeerPath {
    pub(crate) local: LocalSocket,
    pub(crate) addr: SocketAddr,
    /// Last valid receive from this peer on this path (`lr`).
    pub(crate) last_receive: Timestamp,
    /// Last send on this path.
    pub(crate) last_send: Timestamp,
    /// Round-trip latency in ms, [`LATENCY_UNKNOWN`] until measured.
    pub(crate) latency: u32,
    /// Priority (≥ 1).
    pub(crate) priority: u8,
}

impl PeerPath {
    pub(crate) fn new(local: LocalSocket, addr: SocketAddr, now: Timestamp) -> Self {
        PeerPath {
            local,
            addr,
            last_receive: now,
            last_send: 0,
            latency: LATENCY_UNKNOWN,
            priority: 1,
        }
    }

    pub(crate) fn alive(&self, now: Timestamp) -> bool {
        now - self.last_receive < ALIVE_MS
    }

    pub(crate) fn expired(&self, now: Timestamp) -> bool {
        now - self.last_receive >= EXPIRATION_MS
    }

    pub(crate) fn needs_heartbeat(&self, now: Timestamp) -> bool {
        now - self.last_send >= HEARTBEAT_MS
    }

    /// Lower is better: `L × (8 − scope) / priority`. spec: vl1.md §8.2 step 2
    pub(crate) fn quality(&self, now: Timestamp) -> u64 {
        let age = (now - self.last_receive).max(0) as u64;
        let l = if self.alive(now) {
            u64::from(self.latency)
        } else {
            u64::from(self.latency) + 65_535 + age.min(140_000)
        };
        let scope = ip_scope(self.addr.ip()) as u64;
        l * (8 - scope.min(7)) / u64::from(self.priority.max(1))
    }

    /// Updates latency from a new sample: the first is taken as is, later ones averaged.
    /// spec: vl1.md §5.3.1
    pub(crate) fn record_latency(&mut self, sample: u32) {
        self.latency = if self.latency == LATENCY_UNKNOWN {
            sample.min(LATENCY_UNKNOWN - 1)
        } else {
            ((self.latency + sample.min(LATENCY_UNKNOWN - 1)) / 2).min(LATENCY_UNKNOWN - 1)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_paths_beat_global_ones_and_dead_paths_lose() {
        let now = 1_000_000;
        let mut lan = PeerPath::new(LocalSocket(0), "192.168.1.5:9993".parse().unwrap(), now);
        let mut wan = PeerPath::new(LocalSocket(0), "8.8.8.8:9993".parse().unwrap(), now);
        lan.record_latency(10);
        wan.record_latency(10);
        assert!(lan.quality(now) < wan.quality(now));
        lan.last_receive = now - ALIVE_MS;
        assert!(lan.quality(now) > wan.quality(now));
        assert!(!lan.expired(now));
        lan.last_receive = now - EXPIRATION_MS;
        assert!(lan.expired(now));
        wan.record_latency(30);
        assert_eq!(wan.latency, 20);
    }
}
