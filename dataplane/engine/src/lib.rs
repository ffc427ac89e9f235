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

pub mod boundary;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use weft_wire::fragment::{DatagramKind, FRAGMENT_HEADER_LEN, classify};
use weft_wire::packet::{FLAGS_HOPS_MASK, IDX_FLAGS};
use weft_wire::{Address, CipherSuite, PeerKey};

/// Packets are relayed only while their hop count is below this. spec: vl1.md §3.9
pub const RELAY_MAX_HOPS: u8 = 3;

/// One physical path of a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
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
}

/// Why the engine dropped a datagram.
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

/// Counters per verdict.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EngineStats {
    /// Datagrams relayed.
    pub relayed: u64,
    /// Datagrams handed up.
    pub up: u64,
    /// Datagrams dropped.
    pub dropped: u64,
}

/// The batch engine.
#[derive(Debug, Default)]
pub struct Engine {
    stats: EngineStats,
}

impl Engine {
    /// A new engine.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counters.
    pub fn stats(&self) -> EngineStats {
        self.stats
    }

    /// Decides the fate of a batch of received datagrams, one verdict per datagram.
    pub fn process_rx(
        &mut self,
        tables: &Tables,
        batch: &[(SocketAddr, &[u8])],
        out: &mut Vec<Verdict>,
    ) {
        out.clear();
        for (from, data) in batch {
            let v = self.one(tables, *from, data);
            match v {
                Verdict::Relay { .. } => self.stats.relayed += 1,
                Verdict::Up => self.stats.up += 1,
                Verdict::Drop(_) => self.stats.dropped += 1,
            }
            out.push(v);
        }
    }

    fn one(&mut self, t: &Tables, from: SocketAddr, data: &[u8]) -> Verdict {
        let fragment = match classify(data) {
            DatagramKind::Fragment => true,
            DatagramKind::Packet => false,
            DatagramKind::Beacon | DatagramKind::Ignored => return Verdict::Up,
        };
        let Some(dest) = Address::from_slice(&data[8..]) else {
            return Verdict::Up;
        };
        if dest == t.own {
            return Verdict::Up;
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
        if dest.is_reserved() || data.len() > weft_wire::packet::MAX_PACKET_LEN {
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
            },
        );
        peers.insert(
            addr(0xcc),
            PeerEntry {
                key: Arc::new(PeerKey::from_bytes(&[2; 48])),
                cipher: CipherSuite::AesGmacSiv,
                preferred: None,
            },
        );
        Tables {
            own: addr(0xaa),
            relay,
            peers,
        }
    }

    #[test]
    fn relays_heads_and_fragments_with_the_hop_rule() {
        let mut e = Engine::new();
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
        e.process_rx(&tables(true), &batch, &mut out);
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
                dropped: 3
            }
        );
        e.process_rx(&tables(false), &batch[..1], &mut out);
        assert_eq!(out[0], Verdict::Drop(DropReason::NotRelaying));
    }
}
