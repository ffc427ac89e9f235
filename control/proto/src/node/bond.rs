//! The node's multipath bonds: one [`Bond`] per peer that the `local.conf` bonding settings give
//! a policy (never roots or moons). The bond learns the peer's paths as the node learns and
//! expires them, hears of every authenticated packet on a path, runs on the node's timer, sends
//! the probes it asks for (ECHO; QOS_MEASUREMENT with cipher 0) and picks the path(s) of every
//! packet the slow path sends. spec: vl1.md §9

use std::net::{Ipv4Addr, SocketAddr};

use weft_engine::flow::five_tuple;
use weft_wire::armor::armor;
use weft_wire::fragment::Fragmenter;
use weft_wire::packet::{self, Verb};
use weft_wire::{Address, CipherSuite};

use super::Node;
use crate::bond::{Bond, BondAction, BondInfo, BondPolicy, FlowId, PathKey};
use crate::{LocalSocket, Timestamp};

/// The flow of a packet the slow path sends: the inner five-tuple of a FRAME or an EXT_FRAME
/// without a COM, else [`FlowId::NONE`]. spec: vl1.md §9.1, vl2.md §7
pub(crate) fn flow_of(verb: Verb, payload: &[u8]) -> FlowId {
    let (ethertype, data) = match verb {
        Verb::FRAME if payload.len() >= 10 => {
            (u16::from_be_bytes([payload[8], payload[9]]), &payload[10..])
        }
        // nwid, flags, to, from, ethertype; a COM (flag 0x01) has a variable length.
        Verb::EXT_FRAME if payload.len() >= 23 && payload[8] & 0x01 == 0 => (
            u16::from_be_bytes([payload[21], payload[22]]),
            &payload[23..],
        ),
        _ => return FlowId::NONE,
    };
    five_tuple(ethertype, data).map_or(FlowId::NONE, |t| {
        FlowId::from_five_tuple(t.protocol, t.src, t.dst, t.src_port, t.dst_port)
    })
}

/// The address duplicates of a bonded peer are filtered under: the same packet can arrive on
/// every path of a broadcast bond, and must be processed once.
pub(crate) const BOND_DEDUP_FROM: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);

/// Why `bond setmtu` did nothing; the messages are 1.14's response bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SetMtuError {
    /// No bonding policy is configured.
    #[error("Bonding layer isn't active yet")]
    NotActive,
    /// Outside 68..=65535.
    #[error("Specified MTU is not reasonable")]
    Unreasonable,
    /// No bonded path on that interface (and address).
    #[error("Unable to find specified link")]
    NoLink,
}

impl Node {
    /// The bond policy for a peer: none for roots and moons, else what `local.conf` gives.
    /// spec: vl1.md §9.1
    fn bond_policy_for(&self, a: Address) -> Option<BondPolicy> {
        let cfg = self.config.bonding.as_ref()?;
        if self.is_upstream(a) {
            return None;
        }
        cfg.policy_for(a)
    }

    /// Tells the node which interface a local socket is bound on (bond link names; `links` in a
    /// custom policy are keyed by interface). Unknown sockets have the empty name.
    pub fn set_socket_interface(&mut self, local: LocalSocket, name: &str) {
        self.socket_ifnames.insert(local, name.to_string());
    }

    /// Tells the node which interface packets to `remote` leave by (for sockets bound to the
    /// wildcard address, whose interface depends on the route). Bonds pick it up at once.
    pub fn set_path_interface(&mut self, now: Timestamp, remote: std::net::IpAddr, name: &str) {
        if self.path_ifnames.get(&remote).map(String::as_str) != Some(name) {
            self.path_ifnames.insert(remote, name.to_string());
            if self.path_ifnames.len() > 4096 {
                self.path_ifnames.clear();
            }
            self.sync_bonds(now);
        }
    }

    /// The remote addresses of every bonded path (the driver resolves their interfaces).
    pub fn bonded_remotes(&self) -> Vec<std::net::IpAddr> {
        let mut v: Vec<std::net::IpAddr> = self
            .bonds
            .values()
            .flat_map(|b| b.path_keys().map(|k| k.remote.ip()))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Creates, updates or drops the bond of `a` to match the peer's current paths.
    pub(crate) fn sync_bond(&mut self, now: Timestamp, a: Address) {
        let Some(peer) = self.peers.get(&a) else {
            self.bonds.remove(&a);
            return;
        };
        let Some(policy) = self.bond_policy_for(a) else {
            self.bonds.remove(&a);
            return;
        };
        let echo = peer.echo_probes();
        let live: Vec<PathKey> = peer
            .paths
            .iter()
            .filter(|p| !p.expired(now))
            .map(|p| PathKey {
                local: p.local,
                remote: p.addr,
            })
            .collect();
        if !self.bonds.contains_key(&a) {
            let seed = u64::from_le_bytes(self.random_id());
            self.bonds.insert(a, Bond::new(policy, now, seed));
        }
        let (ifnames, path_ifnames) = (&self.socket_ifnames, &self.path_ifnames);
        let Some(bond) = self.bonds.get_mut(&a) else {
            return;
        };
        bond.set_echo_capable(echo);
        for k in bond
            .path_keys()
            .filter(|k| !live.contains(k))
            .collect::<Vec<_>>()
        {
            bond.remove_path(now, &k);
        }
        for k in &live {
            let link = ifnames
                .get(&k.local)
                .or_else(|| path_ifnames.get(&k.remote.ip()))
                .map_or("", String::as_str);
            bond.add_path(now, *k, link);
        }
    }

    /// Every bond in line with the peers (new peers, evicted peers, expired paths).
    pub(crate) fn sync_bonds(&mut self, now: Timestamp) {
        if self.config.bonding.is_none() {
            return;
        }
        let mut all: Vec<Address> = self.peers.keys().copied().collect();
        all.extend(self.bonds.keys().copied());
        all.sort_unstable();
        all.dedup();
        for a in all {
            self.sync_bond(now, a);
        }
    }

    /// An authenticated packet from a bonded peer arrived directly on a path (before duplicate
    /// filtering: a broadcast copy still shows its path is alive).
    pub(crate) fn bond_received(
        &mut self,
        now: Timestamp,
        source: Address,
        key: PathKey,
        packet_id: u64,
        verb: Verb,
    ) {
        if let Some(b) = self.bonds.get_mut(&source) {
            b.on_received(now, &key, packet_id, verb);
        }
        self.run_bond_actions(now, source);
    }

    /// QOS_MEASUREMENT from a bonded peer. spec: vl1.md §9.4
    pub(crate) fn bond_qos(
        &mut self,
        now: Timestamp,
        source: Address,
        key: PathKey,
        payload: &[u8],
    ) {
        if let Some(b) = self.bonds.get_mut(&source) {
            let _ = b.on_qos_measurement(now, &key, payload);
        }
    }

    /// The earliest bond timer.
    pub(crate) fn bonds_poll_timeout(&self) -> Option<Timestamp> {
        self.bonds.values().map(Bond::poll_timeout).min()
    }

    /// Runs the bonds whose timers are due, sends their probes, and announces every bond whose
    /// eligible paths changed since it was last announced (whatever changed them: the timer,
    /// a received packet, a send), so that the data plane follows. spec: vl1.md §9.2
    pub(crate) fn bonds_timeout(&mut self, now: Timestamp) {
        let due: Vec<Address> = self
            .bonds
            .iter()
            .filter(|(_, b)| b.poll_timeout() <= now)
            .map(|(a, _)| *a)
            .collect();
        for a in due {
            if let Some(b) = self.bonds.get_mut(&a) {
                b.handle_timeout(now);
            }
            self.run_bond_actions(now, a);
        }
        self.bond_announced
            .retain(|a, _| self.bonds.contains_key(a));
        for (a, b) in &self.bonds {
            let set: Vec<PathKey> = b.eligible_set().into_iter().map(|(k, _)| k).collect();
            if self.bond_announced.get(a) != Some(&set) {
                self.bond_announced.insert(*a, set);
                self.events
                    .push_back(crate::Event::PathsChanged { address: *a });
            }
        }
    }

    pub(crate) fn run_bond_actions(&mut self, now: Timestamp, a: Address) {
        while let Some(action) = self.bonds.get_mut(&a).and_then(Bond::poll_action) {
            match action {
                BondAction::Echo { path } => {
                    self.send_direct(now, a, Some(path.local), path.remote, Verb::ECHO, &[]);
                }
                BondAction::QosMeasurement { path, payload } => {
                    self.send_cipher0(now, a, path, Verb::QOS_MEASUREMENT, &payload);
                }
            }
        }
    }

    /// Sends a packet authenticated but not encrypted (cipher 0) on one path.
    /// spec: vl1.md §9.4 (QOS_MEASUREMENT)
    fn send_cipher0(
        &mut self,
        now: Timestamp,
        dest: Address,
        path: PathKey,
        verb: Verb,
        payload: &[u8],
    ) {
        let id = self.random_id();
        let Some(peer) = self.peers.get(&dest) else {
            return;
        };
        let mut p = packet::build(id, dest, self.address(), verb, payload);
        if armor(&mut p, &peer.key, CipherSuite::Poly1305None).is_err() {
            return;
        }
        self.stats.packets_out[usize::from(verb.to_u8() & 0x1f)] += 1;
        self.emit(now, dest, Some(path.local), path.remote, p, None);
    }

    /// Sends a packet to a bonded peer on the path(s) its bond picks for the packet's flow;
    /// false when `dest` has no bond or the bond has no eligible path (the caller routes it as
    /// without bonding). spec: vl1.md §9.1
    pub(crate) fn send_bonded(
        &mut self,
        now: Timestamp,
        dest: Address,
        verb: Verb,
        payload: &[u8],
    ) -> bool {
        let flow = flow_of(verb, payload);
        let keys: Vec<PathKey> = match self.bonds.get_mut(&dest) {
            Some(b) => b.paths_for(now, flow).paths().to_vec(),
            None => return false,
        };
        if keys.is_empty() {
            return false;
        }
        // The links' MTU (`bond setmtu`, `mtu` in the policy): the smallest of the chosen
        // paths, unless the packet cannot be cut that small.
        let physical = self.config.physical_mtu;
        let link_mtu = self.bonds.get(&dest).and_then(|b| {
            keys.iter()
                .map(|k| usize::from(b.path_mtu(k)))
                .filter(|m| *m > 0)
                .min()
        });
        let mut built = None;
        for mtu in link_mtu.into_iter().chain([physical]) {
            let Some(p) = self.build_packet(dest, verb, payload, Some(mtu)) else {
                return true;
            };
            if Fragmenter::new(&p, mtu).is_ok() {
                built = Some((p, mtu));
                break;
            }
        }
        let Some((p, mtu)) = built else {
            return true;
        };
        let wire_id = u64::from_be_bytes(p[..8].try_into().unwrap_or_default());
        let Ok(f) = Fragmenter::new(&p, mtu) else {
            return true;
        };
        for k in &keys {
            self.emit(now, dest, Some(k.local), k.remote, f.head().to_vec(), None);
            for n in 1..f.total() {
                if let Some(frag) = f.fragment(n) {
                    self.emit(now, dest, Some(k.local), k.remote, frag, None);
                }
            }
            if let Some(b) = self.bonds.get_mut(&dest) {
                b.on_sent(now, k, wire_id, verb);
            }
        }
        true
    }

    /// The bond of a peer, for `bond <peer> show` and `/bond/show/<peer>`.
    pub fn bond_info(&self, peer: Address, now: Timestamp) -> Option<BondInfo> {
        self.bonds.get(&peer).map(|b| b.info(now))
    }

    /// Every bond (for `bond list`), by peer address.
    pub fn bonds(&self, now: Timestamp) -> Vec<(Address, BondInfo)> {
        let mut v: Vec<(Address, BondInfo)> =
            self.bonds.iter().map(|(a, b)| (*a, b.info(now))).collect();
        v.sort_by_key(|(a, _)| *a);
        v
    }

    /// `bond setmtu`: every bond's paths on interface `link` (towards `remote`, or all) use
    /// `mtu`. spec: service.md §4 (`POST /bond/setmtu/<mtu>/<ifname>/<ip>`)
    pub fn bond_set_mtu(
        &mut self,
        link: &str,
        remote: Option<std::net::IpAddr>,
        mtu: u32,
    ) -> Result<usize, SetMtuError> {
        if !self.config.bonding.as_ref().is_some_and(|c| c.in_use()) {
            return Err(SetMtuError::NotActive);
        }
        let mtu = match u16::try_from(mtu) {
            Ok(m) if m >= 68 => m,
            _ => return Err(SetMtuError::Unreasonable),
        };
        let n: usize = self
            .bonds
            .values_mut()
            .map(|b| b.set_link_mtu(link, remote, mtu))
            .sum();
        if n == 0 {
            return Err(SetMtuError::NoLink);
        }
        Ok(n)
    }

    /// Forces an active-backup bond onto its next eligible path (`bond <peer> rotate`).
    pub fn bond_rotate(&mut self, peer: Address, now: Timestamp) -> bool {
        self.bonds.get_mut(&peer).is_some_and(|b| b.rotate(now))
    }

    /// The bond's current decision for the data plane's fast path, if `peer` is bonded.
    pub(crate) fn bond_of(&self, peer: Address) -> Option<&Bond> {
        self.bonds.get(&peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_flows() {
        let mut ip = vec![0u8; 24];
        ip[0] = 0x45;
        ip[9] = 17;
        ip[12..16].copy_from_slice(&[10, 0, 0, 1]);
        ip[16..20].copy_from_slice(&[10, 0, 0, 2]);
        ip[20..22].copy_from_slice(&5000u16.to_be_bytes());
        ip[22..24].copy_from_slice(&53u16.to_be_bytes());
        let mut frame = vec![0u8; 8];
        frame.extend_from_slice(&0x0800u16.to_be_bytes());
        frame.extend_from_slice(&ip);
        let want = FlowId::from_five_tuple(
            17,
            "10.0.0.1".parse().unwrap(),
            "10.0.0.2".parse().unwrap(),
            5000,
            53,
        );
        assert_eq!(flow_of(Verb::FRAME, &frame), want);
        let mut ext = vec![0u8; 9];
        ext.extend_from_slice(&[0u8; 12]);
        ext.extend_from_slice(&0x0800u16.to_be_bytes());
        ext.extend_from_slice(&ip);
        assert_eq!(flow_of(Verb::EXT_FRAME, &ext), want);
        ext[8] = 1; // with a COM: not parsed
        assert_eq!(flow_of(Verb::EXT_FRAME, &ext), FlowId::NONE);
        assert_eq!(flow_of(Verb::ECHO, &frame), FlowId::NONE);
    }
}
