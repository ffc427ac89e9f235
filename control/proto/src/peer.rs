//! Per-peer state. spec: vl1.md §8.1

use weft_wire::{CipherSuite, Identity, PeerKey};

use crate::Timestamp;
use crate::path::{MAX_PEER_PATHS, PeerPath};

/// The remote's advertised versions (from HELLO or OK(HELLO)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RemoteVersion {
    pub(crate) protocol: u8,
    pub(crate) major: u8,
    pub(crate) minor: u8,
    pub(crate) revision: u16,
}

#[derive(Debug)]
pub(crate) struct Peer {
    pub(crate) identity: Identity,
    pub(crate) key: std::sync::Arc<PeerKey>,
    pub(crate) version: Option<RemoteVersion>,
    pub(crate) paths: Vec<PeerPath>,
    pub(crate) last_receive: Timestamp,
    pub(crate) last_nontrivial_receive: Timestamp,
    pub(crate) last_hello_sent: Timestamp,
    pub(crate) last_whois_answered: Timestamp,
    pub(crate) last_push_direct_paths: Timestamp,
    pub(crate) push_direct_paths_count: u32,
    /// Last time we pushed our direct paths to this peer. spec: vl1.md §5.8 (sender rules)
    pub(crate) last_paths_pushed: Timestamp,
    pub(crate) created: Timestamp,
}

impl Peer {
    pub(crate) fn new(identity: Identity, key: PeerKey, now: Timestamp) -> Self {
        Peer {
            identity,
            key: std::sync::Arc::new(key),
            version: None,
            paths: Vec::new(),
            last_receive: 0,
            last_nontrivial_receive: 0,
            last_hello_sent: 0,
            last_whois_answered: i64::MIN / 2,
            last_push_direct_paths: 0,
            push_direct_paths_count: 0,
            last_paths_pushed: i64::MIN / 2,
            created: now,
        }
    }

    /// Cipher for packets to this peer: AES-GMAC-SIV at protocol ≥ 12, else Salsa20/12.
    /// spec: vl1.md §3.6
    pub(crate) fn cipher(&self) -> CipherSuite {
        match self.version {
            Some(v) if v.protocol >= 12 => CipherSuite::AesGmacSiv,
            _ => CipherSuite::Poly1305Salsa2012,
        }
    }

    /// Whether probes to this peer may be ECHO (protocol ≥ 5 and not exactly 1.1.0); else HELLO.
    pub(crate) fn echo_probes(&self) -> bool {
        matches!(self.version, Some(v) if v.protocol >= 5 && !(v.major == 1 && v.minor == 1 && v.revision == 0))
    }

    /// Index of the best non-expired direct path. spec: vl1.md §8.2 step 2
    pub(crate) fn best_path(&self, now: Timestamp) -> Option<usize> {
        self.paths
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.expired(now))
            .min_by_key(|(_, p)| p.quality(now))
            .map(|(i, _)| i)
    }

    /// Learns a path: a free slot, else a dead slot with the same IP on the same socket, else
    /// the slot that has gone longest without receiving. spec: vl1.md §8.6
    pub(crate) fn learn_path(&mut self, path: PeerPath, now: Timestamp) {
        if self.paths.len() < MAX_PEER_PATHS {
            self.paths.push(path);
            return;
        }
        let same_ip_dead = self
            .paths
            .iter()
            .position(|p| p.local == path.local && p.addr.ip() == path.addr.ip() && !p.alive(now));
        let idx = same_ip_dead.unwrap_or_else(|| {
            self.paths
                .iter()
                .enumerate()
                .min_by_key(|(_, p)| p.last_receive)
                .map(|(i, _)| i)
                .unwrap_or(0)
        });
        self.paths[idx] = path;
    }

    /// Drops expired slots and slots below the maximum priority; returns whether anything
    /// changed. spec: vl1.md §8.1
    pub(crate) fn prune_paths(&mut self, now: Timestamp) -> bool {
        let before = self.paths.len();
        let max_prio = self.paths.iter().map(|p| p.priority).max().unwrap_or(1);
        self.paths
            .retain(|p| !p.expired(now) && p.priority >= max_prio);
        self.paths.len() != before
    }
}
