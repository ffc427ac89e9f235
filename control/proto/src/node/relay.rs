//! What roots do: relaying with the hop limit, and RENDEZVOUS ("unite") to both ends.
//! spec: vl1.md §3.9, §8.3, §8.5

use std::net::SocketAddr;

use rand_core::RngCore;
use weft_wire::Address;
use weft_wire::inet::ip_scope;
use weft_wire::packet::Verb;
use weft_wire::verbs::Rendezvous;

use super::Node;
use crate::{LocalSocket, Timestamp};

/// Pairs remembered by the unite gate (a full table fails closed: no introduction).
const UNITE_GATE_MAX: usize = 65_536;
/// RENDEZVOUS per unordered pair.
const UNITE_GATE_MS: i64 = 30_000;

impl Node {
    /// Relays a packet head or fragment addressed to someone else. Only upstreams relay
    /// (trust-based relaying for network members comes with VL2). spec: vl1.md §8.3
    pub(crate) fn relay(
        &mut self,
        now: Timestamp,
        from: SocketAddr,
        mut data: Vec<u8>,
        fragment: bool,
    ) {
        if !self.is_upstream_itself() {
            return;
        }
        let (dest, source) = if fragment {
            (Address::from_slice(&data[8..]).unwrap_or_default(), None)
        } else {
            (
                Address::from_slice(&data[8..]).unwrap_or_default(),
                Address::from_slice(&data[13..]),
            )
        };
        if source == Some(self.address())
            || dest.is_reserved()
            || data.len() > weft_wire::packet::MAX_PACKET_LEN
        {
            return;
        }
        if weft_engine::increment_hops(&mut data, fragment).is_err() {
            return;
        }
        let direct = self.peers.get(&dest).and_then(|p| {
            p.best_path(now)
                .map(|i| (p.paths[i].local, p.paths[i].addr))
        });
        if let Some((local, to)) = direct {
            if to == from {
                return;
            }
            self.stats.relayed += 1;
            self.emit(now, dest, Some(local), to, data, None);
            if let Some(src) = source {
                self.unite_if_due(now, src, dest);
            }
            return;
        }
        if let Some(u) = self.best_upstream(now, source)
            && let Some((local, to)) = self.peers.get(&u).and_then(|p| {
                p.best_path(now)
                    .map(|i| (p.paths[i].local, p.paths[i].addr))
            })
        {
            self.stats.relayed += 1;
            self.emit(now, u, Some(local), to, data, None);
            if let Some(src) = source {
                // 1.14 introduces without a limit here; a spoofed head would then buy two
                // RENDEZVOUS and a round of punching per datagram, so weft applies the pair gate.
                self.unite_if_due(now, u, src);
            }
        }
    }

    /// Introduces `src` and `dest` unless that pair was introduced in the last 30 s.
    pub(crate) fn unite_if_due(&mut self, now: Timestamp, src: Address, dest: Address) {
        if !self.peers.contains_key(&src) {
            return;
        }
        let pair = if src < dest { (src, dest) } else { (dest, src) };
        if self.unite_gate.len() >= UNITE_GATE_MAX && !self.unite_gate.contains_key(&pair) {
            return;
        }
        let due = self
            .unite_gate
            .get(&pair)
            .is_none_or(|t| now - *t >= UNITE_GATE_MS);
        if due {
            self.unite_gate.insert(pair, now);
            self.unite(now, src, dest);
        }
    }

    /// Picks, per peer and (scope, family), the best path; returns the pair of paths to
    /// introduce, scanning scopes from private (7) down and preferring IPv6. spec: vl1.md §8.5
    fn unite_paths(
        &self,
        now: Timestamp,
        a: Address,
        b: Address,
    ) -> Option<((LocalSocket, SocketAddr), (LocalSocket, SocketAddr))> {
        let best = |peer: Address, scope: u8, v6: bool| {
            let p = self.peers.get(&peer)?;
            p.paths
                .iter()
                .filter(|x| {
                    !x.expired(now)
                        && ip_scope(x.addr.ip()) as u8 == scope
                        && x.addr.is_ipv6() == v6
                })
                .min_by_key(|x| x.quality(now))
                .map(|x| (x.local, x.addr))
        };
        for scope in (0..=7u8).rev() {
            for v6 in [true, false] {
                if let (Some(pa), Some(pb)) = (best(a, scope, v6), best(b, scope, v6)) {
                    return Some((pa, pb));
                }
            }
        }
        None
    }

    /// Sends RENDEZVOUS to both peers, in random order, each naming the other.
    pub(crate) fn unite(&mut self, now: Timestamp, a: Address, b: Address) {
        let Some(((la, pa), (lb, pb))) = self.unite_paths(now, a, b) else {
            return;
        };
        let mut sends = [(a, la, pa, b, pb), (b, lb, pb, a, pa)];
        if self.rng.next_u32() & 1 == 1 {
            sends.swap(0, 1);
        }
        for (to_peer, local, to_addr, with, with_addr) in sends {
            let mut payload = Vec::new();
            Rendezvous {
                flags: 0,
                with,
                address: with_addr,
            }
            .encode(&mut payload);
            self.send_direct(
                now,
                to_peer,
                Some(local),
                to_addr,
                Verb::RENDEZVOUS,
                &payload,
            );
        }
    }
}
