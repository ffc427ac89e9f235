//! What the node publishes to the data plane and what it learns back from it: the tables
//! (peers, paths, networks with their members' valid credentials), packets the data plane
//! reassembled but does not finish itself, and its activity reports.
//! design: shared/design/architecture.md (the boundary between the planes)

use std::collections::HashMap;
use std::net::SocketAddr;

use weft_engine::{
    Activity, BondEntry, BondKind, MemberEntry, NetworkEntry, PathEntry, PeerEntry, Tables,
};
use weft_wire::{Address, NetworkId};

use super::Node;
use crate::bond::{BasePolicy, Bond, PathKey};
use crate::{LocalSocket, Timestamp};

/// The data plane's view of a bond: its policy, eligible paths in order and their shares.
/// `None` for the `none` policy. spec: vl1.md §9.1
fn bond_entry(bond: &Bond) -> Option<BondEntry> {
    let kind = match bond.policy().base {
        BasePolicy::ActiveBackup => BondKind::ActiveBackup,
        BasePolicy::Broadcast => BondKind::Broadcast,
        BasePolicy::BalanceRr => BondKind::BalanceRr,
        BasePolicy::BalanceXor => BondKind::BalanceXor,
        BasePolicy::BalanceAware => BondKind::BalanceAware,
        BasePolicy::None => return None,
    };
    let set = bond.eligible_set();
    let total: f64 = set.iter().map(|(_, s)| s.max(0.0)).sum();
    let weights = if kind == BondKind::BalanceAware && total > 0.0 {
        set.iter()
            .map(|(_, s)| ((s.max(0.0) / total) * 65535.0).round().clamp(1.0, 65535.0) as u16)
            .collect()
    } else {
        Vec::new()
    };
    Some(BondEntry {
        kind,
        paths: set
            .iter()
            .map(|(k, _)| PathEntry {
                local: k.local.0,
                addr: k.remote,
            })
            .collect(),
        mtus: set.iter().map(|(k, _)| bond.path_mtu(k)).collect(),
        qos_interval_ms: u32::try_from(bond.qos_interval()).unwrap_or(u32::MAX),
        weights,
        packets_per_link: bond.policy().packets_per_link,
    })
}

impl Node {
    /// The tables the data plane works from: our address, whether we relay, per peer its
    /// session key, cipher, paths and the path sends would use now, and per configured network
    /// our config and the members that pass the gate with their valid credentials. Rebuild and
    /// publish after [`crate::Event::PeerAdded`] / [`crate::Event::PathsChanged`] /
    /// [`crate::Event::NetworkConfigured`] and periodically (paths age, credentials arrive).
    pub fn data_plane_tables(&self, now: Timestamp) -> Tables {
        let peers = self
            .peers
            .iter()
            .map(|(a, p)| {
                let preferred = p.best_path(now).map(|i| PathEntry {
                    local: p.paths[i].local.0,
                    addr: p.paths[i].addr,
                });
                let paths = p
                    .paths
                    .iter()
                    .map(|x| PathEntry {
                        local: x.local.0,
                        addr: x.addr,
                    })
                    .collect();
                (
                    *a,
                    PeerEntry {
                        key: p.key.clone(),
                        cipher: p.cipher(),
                        preferred,
                        paths,
                        bond: self.bond_of(*a).and_then(bond_entry),
                    },
                )
            })
            .collect();
        let mut networks = HashMap::new();
        for (nwid, n) in &self.networks {
            let Some(c) = &n.config else { continue };
            let mut members = HashMap::new();
            for (a, m) in &n.members {
                if !self.gate_quiet(*nwid, *a) {
                    continue;
                }
                let mut tags: Vec<(u32, u32)> = m
                    .tags
                    .keys()
                    .filter_map(|id| m.tag(*id, c).map(|v| (*id, v)))
                    .collect();
                tags.sort_unstable();
                members.insert(
                    *a,
                    MemberEntry {
                        tags,
                        capabilities: m.capabilities(c).cloned().collect(),
                        coos: m.valid_coos(c).cloned().collect(),
                        pushed: m.last_pushed.is_some_and(|(_, ts)| ts == c.timestamp),
                    },
                );
            }
            networks.insert(
                *nwid,
                NetworkEntry {
                    config: c.clone(),
                    members,
                },
            );
        }
        Tables {
            own: self.address(),
            relay: self.is_upstream_itself(),
            peers,
            networks,
            trusted_paths: self.config.trusted_paths.clone(),
            physical_mtu: u32::try_from(self.config.physical_mtu).unwrap_or(u32::MAX),
        }
    }

    /// A whole packet the data plane reassembled from fragments and did not finish itself
    /// (it is still armored, exactly as its pieces arrived). spec: vl1.md §4
    pub fn handle_reassembled(
        &mut self,
        now: Timestamp,
        local: LocalSocket,
        from: SocketAddr,
        packet: Vec<u8>,
    ) {
        self.stats.datagrams_in += 1;
        self.stats.bytes_in += packet.len() as u64;
        self.process_packet(now, local, from, packet);
    }

    /// The data plane's report of what its fast path did: the paths that carried authenticated
    /// frames stay alive, members we heard frames from get our LIKEs when due (as the gate does
    /// for frames seen here), and members we sent frames to get our credentials when due.
    /// spec: vl1.md §8.1, vl2.md §13.6, §14
    pub fn note_activity(&mut self, now: Timestamp, activity: &Activity) {
        // spec: vl1.md §9.4 — the fast path's QoS samples, moved onto our clock
        let at = |t: i64| now - (activity.now_ms - t).clamp(0, 60_000);
        let key = |p: &PathEntry| PathKey {
            local: LocalSocket(p.local),
            remote: p.addr,
        };
        let mut measured = Vec::new();
        for q in &activity.qos_sent {
            if let Some(b) = self.bonds.get_mut(&q.peer) {
                b.on_data_plane_sent(at(q.at_ms), &key(&q.path), q.packet_id);
            }
        }
        for q in &activity.qos_received {
            if let Some(b) = self.bonds.get_mut(&q.peer) {
                b.on_data_plane_received(now, at(q.at_ms), &key(&q.path), q.packet_id);
                measured.push(q.peer);
            }
        }
        measured.sort_unstable();
        measured.dedup();
        for peer in measured {
            self.run_bond_actions(now, peer);
        }
        for (peer, path) in &activity.paths {
            if let Some(p) = self.peers.get_mut(peer) {
                p.last_receive = now;
                if let Some(x) = p
                    .paths
                    .iter_mut()
                    .find(|x| x.local.0 == path.local && x.addr == path.addr)
                {
                    x.last_receive = now;
                }
            }
            if let Some(b) = self.bonds.get_mut(peer) {
                b.on_received(now, &key(path), 0, weft_wire::Verb::FRAME);
            }
        }
        // spec: vl1.md §9 — the fast path's sends and balance-aware flows count in the bond's
        // shares (`bond <peer> show`)
        for b in &activity.bonded {
            if let Some(bond) = self.bonds.get_mut(&b.peer) {
                bond.on_data_plane(now, &key(&b.path), activity.worker, b.frames, b.flows);
            }
        }
        for (nwid, m) in &activity.received {
            let _ = self.gate(now, *nwid, *m);
        }
        for (nwid, m) in &activity.sent {
            self.push_credentials_if_needed(now, *nwid, *m);
        }
    }

    /// Whether a network's member passes the gate now (for the data plane and tests).
    pub fn member_passes_gate(&self, nwid: NetworkId, member: Address) -> bool {
        self.gate_quiet(nwid, member)
    }
}
