//! The node: state, public API, timers. Receive, send and relay logic live in the sibling
//! modules `recv`, `send` and `relay`. spec: vl1.md §5–§8

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;

use rand_chacha::ChaCha20Rng;
use rand_core::{CryptoRngCore, RngCore, SeedableRng};
use weft_wire::fragment::Reassembler;
use weft_wire::{Address, Identity, NetworkId, World, WorldType};

use crate::gates::{DuplicateFilter, ExpectingReplies, IdentityValidationGate};
use crate::network::Network;
use crate::network::multicast::MulticastState;
use crate::path::PeerPath;
use crate::peer::Peer;
use crate::peer_cache::CachedPeer;
use crate::{Event, LocalSocket, NodeConfig, Timestamp, Transmit};

mod bond;
pub use bond::SetMtuError;
mod dataplane;
mod filter;
mod recv;
mod relay;
mod send;
mod vl2;
mod vl2_frames;

use vl2::Held;

/// Ping check interval. spec: vl1.md §8.8
pub(crate) const PING_CHECK_MS: i64 = 5_000;
/// Housekeeping interval.
pub(crate) const HOUSEKEEPING_MS: i64 = 30_000;
/// Retry interval for queued packets and WHOIS.
pub(crate) const QUEUE_RETRY_MS: i64 = 500;
/// Queued packets are dropped after this long.
pub(crate) const QUEUE_TIMEOUT_MS: i64 = 5_000;
/// Queue capacity (RX and TX).
pub(crate) const QUEUE_LEN: usize = 32;
/// Peers idle this long are evicted; upstreams silent this long mean offline.
pub(crate) const PEER_ACTIVITY_TIMEOUT_MS: i64 = 500_000;
/// Full HELLO period to active peers.
pub(crate) const FULL_HELLO_MS: i64 = 60_000;
/// Peer-cache records kept in memory.
pub(crate) const PEER_CACHE_MAX: usize = 16_384;
/// Pause between the TTL-2 junk datagram and the probe after a RENDEZVOUS.
pub(crate) const PUNCH_PROBE_DELAY_MS: i64 = 250;
/// At most this many RENDEZVOUS wait for the identity of the peer they name.
pub(crate) const PENDING_RENDEZVOUS_MAX: usize = 64;
/// Self-awareness entries expire after this long.
pub(crate) const SURFACE_TIMEOUT_MS: i64 = 600_000;

/// Appends to a bounded queue, evicting (and counting) the oldest entry when it is full.
pub(crate) fn push_bounded<T>(queue: &mut VecDeque<T>, item: T, drops: &mut u64) {
    if queue.len() >= QUEUE_LEN {
        queue.pop_front();
        *drops += 1;
    }
    queue.push_back(item);
}

/// A packet from an unknown source, parked until its identity arrives.
#[derive(Debug)]
pub(crate) struct Parked {
    pub(crate) since: Timestamp,
    pub(crate) local: LocalSocket,
    pub(crate) from: SocketAddr,
    pub(crate) source: Address,
    pub(crate) packet: Vec<u8>,
}

/// A packet for an unknown destination, queued until its identity arrives.
#[derive(Debug)]
pub(crate) struct Queued {
    pub(crate) since: Timestamp,
    pub(crate) dest: Address,
    pub(crate) verb: weft_wire::Verb,
    pub(crate) payload: Vec<u8>,
}

/// Per physical path rate-gate timestamps.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct PathGates {
    pub(crate) last_echo_answered: Timestamp,
    pub(crate) last_hello_confirm: Timestamp,
    pub(crate) last_used: Timestamp,
}

/// Counters for diagnostics and metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NodeStats {
    /// Datagrams handed to the node.
    pub datagrams_in: u64,
    /// Datagrams the node asked to send.
    pub datagrams_out: u64,
    /// Packets dropped because authentication failed.
    pub mac_failures: u64,
    /// Authenticated packets dropped as exact duplicates.
    pub duplicates: u64,
    /// Packets dropped as malformed.
    pub malformed: u64,
    /// Packets dropped by a rate gate.
    pub rate_limited: u64,
    /// Packets relayed for others.
    pub relayed: u64,
    /// Packets dropped because a queue was full or timed out.
    pub queue_drops: u64,
    /// Ethernet frames delivered to local ports.
    pub frames_in: u64,
    /// Ethernet frames sent to members (per recipient).
    pub frames_out: u64,
    /// Ethernet frames dropped (rules, bridging checks, disabled multicast...).
    pub frames_dropped: u64,
    /// Bytes of datagrams handed to the node.
    pub bytes_in: u64,
    /// Bytes of datagrams the node asked to send.
    pub bytes_out: u64,
    /// Authenticated packets received, by verb number (low 5 bits).
    pub packets_in: [u64; 32],
    /// Packets built to send, by verb number.
    pub packets_out: [u64; 32],
    /// ERROR packets received, by error code (codes ≥ 16 counted at 0).
    pub errors_in: [u64; 16],
    /// ERROR packets sent, by error code.
    pub errors_out: [u64; 16],
}

/// How a peer relates to this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerRole {
    /// An ordinary node.
    Leaf,
    /// A root of the planet.
    Planet,
    /// A root of a moon.
    Moon,
}

/// A snapshot of one path, for status output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathInfo {
    /// Local socket.
    pub local: LocalSocket,
    /// Remote address.
    pub addr: SocketAddr,
    /// Last valid receive (ms).
    pub last_receive: Timestamp,
    /// Last send (ms).
    pub last_send: Timestamp,
    /// Whether something was received within 19 s.
    pub alive: bool,
    /// Whether this is the path sends would use now.
    pub preferred: bool,
    /// Latency (ms), if measured.
    pub latency: Option<u32>,
}

/// A snapshot of one peer, for status output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// Address.
    pub address: Address,
    /// Role.
    pub role: PeerRole,
    /// Remote protocol and software version, if known.
    pub version: Option<(u8, u8, u8, u16)>,
    /// Direct paths.
    pub paths: Vec<PathInfo>,
    /// Last receive from this peer by any path.
    pub last_receive: Timestamp,
}

impl PeerInfo {
    /// Whether traffic to this peer currently goes over a direct path (else through a relay).
    pub fn is_direct(&self) -> bool {
        self.paths.iter().any(|p| p.preferred)
    }
}

/// The VL1 node state machine.
#[derive(Debug)]
pub struct Node {
    pub(crate) identity: Identity,
    pub(crate) config: NodeConfig,
    pub(crate) rng: ChaCha20Rng,
    pub(crate) planet: World,
    pub(crate) moons: Vec<World>,
    pub(crate) moon_seeds: Vec<(u64, Address)>,
    pub(crate) peers: HashMap<Address, Peer>,
    pub(crate) cache: HashMap<Address, CachedPeer>,
    pub(crate) rx_queue: VecDeque<Parked>,
    pub(crate) tx_queue: VecDeque<Queued>,
    pub(crate) whois_sent: HashMap<Address, Timestamp>,
    pub(crate) expecting: ExpectingReplies,
    pub(crate) dedup: DuplicateFilter,
    pub(crate) id_gate: IdentityValidationGate,
    pub(crate) reassembler: Reassembler,
    pub(crate) path_gates: HashMap<(LocalSocket, SocketAddr), PathGates>,
    pub(crate) unite_gate: HashMap<(Address, Address), Timestamp>,
    pub(crate) last_beacon_reply: Timestamp,
    /// Probes scheduled after a RENDEZVOUS: (due, peer, socket, address).
    pub(crate) pending_probes: Vec<(Timestamp, Address, LocalSocket, SocketAddr)>,
    /// RENDEZVOUS received for peers not known yet: peer → (socket, address, when).
    pub(crate) pending_rendezvous: HashMap<Address, (LocalSocket, SocketAddr, Timestamp)>,
    /// External addresses reported by others: (reporter, local socket, reporter's address) →
    /// (our address as seen, when).
    pub(crate) surface: HashMap<(Address, LocalSocket, SocketAddr), (SocketAddr, Timestamp)>,
    pub(crate) transmits: VecDeque<Transmit>,
    pub(crate) events: VecDeque<Event>,
    pub(crate) online: bool,
    pub(crate) last_ping_check: Timestamp,
    pub(crate) last_housekeeping: Timestamp,
    pub(crate) last_queue_retry: Timestamp,
    pub(crate) stats: NodeStats,
    /// Joined networks. spec: vl2.md §18
    pub(crate) networks: BTreeMap<NetworkId, Network>,
    /// (network, member) → when the local controller last sent it a config.
    pub(crate) controller_auth: HashMap<(NetworkId, Address), Timestamp>,
    /// Last NETWORK_CREDENTIALS processed per sender.
    pub(crate) credential_gate: HashMap<Address, (Timestamp, u32)>,
    /// Packets held for credentials (gate failures) or for a signer's identity.
    pub(crate) held: VecDeque<Held>,
    /// Set while held packets are being retried (their original arrival time).
    pub(crate) retrying_held: Option<Timestamp>,
    /// What a root learns from LIKEs on networks it has not joined (answers GATHERs).
    pub(crate) root_multicast: HashMap<NetworkId, MulticastState>,
    pub(crate) last_network_tick: Timestamp,
    /// Addresses the driver is bound to (interface addresses with their ports, and mapped
    /// external addresses from UPnP/NAT-PMP), advertised in PUSH_DIRECT_PATHS.
    pub(crate) local_addresses: Vec<SocketAddr>,
    /// Multipath bonds of the peers `local.conf` gives a policy. spec: vl1.md §9
    pub(crate) bonds: HashMap<Address, crate::bond::Bond>,
    /// Interface names of the local sockets (bond link names).
    pub(crate) socket_ifnames: HashMap<LocalSocket, String>,
    /// Each bond's eligible paths as last announced (`PathsChanged`: the data plane follows).
    pub(crate) bond_announced: HashMap<Address, Vec<crate::bond::PathKey>>,
    /// Interfaces towards remote addresses (wildcard sockets' bond link names).
    pub(crate) path_ifnames: HashMap<std::net::IpAddr, String>,
}

impl Node {
    /// Creates a node. `identity` must hold its private key. Randomness (packet ids, random
    /// choices) comes from a generator seeded once from `rng`.
    pub fn new(
        identity: Identity,
        config: NodeConfig,
        now: Timestamp,
        rng: &mut impl CryptoRngCore,
    ) -> Self {
        assert!(identity.has_private(), "a node needs its secret identity");
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        let planet = config.planet.clone();
        let moons = config.moons.clone();
        let moon_seeds = config.moon_seeds.clone();
        let mut node = Node {
            identity,
            config,
            rng: ChaCha20Rng::from_seed(seed),
            planet,
            moons,
            moon_seeds,
            peers: HashMap::new(),
            cache: HashMap::new(),
            rx_queue: VecDeque::new(),
            tx_queue: VecDeque::new(),
            whois_sent: HashMap::new(),
            expecting: ExpectingReplies::new(),
            dedup: DuplicateFilter::new(),
            id_gate: IdentityValidationGate::new(),
            reassembler: Reassembler::new(),
            path_gates: HashMap::new(),
            unite_gate: HashMap::new(),
            last_beacon_reply: i64::MIN / 2,
            pending_rendezvous: HashMap::new(),
            pending_probes: Vec::new(),
            surface: HashMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            online: false,
            // Run the first ping check at once.
            last_ping_check: now - PING_CHECK_MS,
            last_housekeeping: now,
            last_queue_retry: now,
            stats: NodeStats::default(),
            networks: BTreeMap::new(),
            controller_auth: HashMap::new(),
            credential_gate: HashMap::new(),
            held: VecDeque::new(),
            retrying_held: None,
            root_multicast: HashMap::new(),
            last_network_tick: now,
            local_addresses: Vec::new(),
            bonds: HashMap::new(),
            socket_ifnames: HashMap::new(),
            bond_announced: HashMap::new(),
            path_ifnames: HashMap::new(),
        };
        node.add_root_peers(now);
        node.update_online(now);
        node
    }

    /// This node's address.
    pub fn address(&self) -> Address {
        self.identity.address()
    }

    /// This node's public identity.
    pub fn identity(&self) -> Identity {
        self.identity.to_public()
    }

    /// The current planet.
    pub fn planet(&self) -> &World {
        &self.planet
    }

    /// Installed moons.
    pub fn moons(&self) -> &[World] {
        &self.moons
    }

    /// Moons orbited by seed and not received yet: (world id, seed).
    pub fn moon_seeds(&self) -> &[(u64, Address)] {
        &self.moon_seeds
    }

    /// Whether the node is online. spec: vl1.md §8.8 step 5
    pub fn is_online(&self) -> bool {
        self.online
    }

    /// Counters.
    pub fn stats(&self) -> NodeStats {
        self.stats
    }

    /// The data plane relayed a packet head from `source` to `dest`: introduce the two ends
    /// (RENDEZVOUS), at most once per 30 s per pair. spec: vl1.md §8.3, §8.5
    pub fn relayed(&mut self, now: Timestamp, source: Address, dest: Address) {
        self.stats.relayed += 1;
        self.unite_if_due(now, source, dest);
    }

    /// Whether this node is a root of its planet or of a moon it orbits.
    pub fn is_upstream_itself(&self) -> bool {
        self.role_of(self.address()) != PeerRole::Leaf
    }

    /// Snapshot of every known peer.
    pub fn peers(&self, now: Timestamp) -> Vec<PeerInfo> {
        let mut v: Vec<PeerInfo> = self
            .peers
            .keys()
            .filter_map(|a| self.peer(*a, now))
            .collect();
        v.sort_by_key(|p| p.address);
        v
    }

    /// Snapshot of one peer.
    pub fn peer(&self, address: Address, now: Timestamp) -> Option<PeerInfo> {
        let p = self.peers.get(&address)?;
        let best = p.best_path(now);
        Some(PeerInfo {
            address,
            role: self.role_of(address),
            version: p
                .version
                .map(|v| (v.protocol, v.major, v.minor, v.revision)),
            paths: p
                .paths
                .iter()
                .enumerate()
                .map(|(i, path)| PathInfo {
                    local: path.local,
                    addr: path.addr,
                    last_receive: path.last_receive,
                    last_send: path.last_send,
                    alive: path.alive(now),
                    preferred: Some(i) == best,
                    latency: (path.latency != crate::path::LATENCY_UNKNOWN).then_some(path.latency),
                })
                .collect(),
            last_receive: p.last_receive,
        })
    }

    /// The next datagram to send, if any. Call after every `handle_*` call until it returns
    /// `None`.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let t = self.transmits.pop_front();
        if let Some(t) = &t {
            self.stats.datagrams_out += 1;
            self.stats.bytes_out += t.data.len() as u64;
        }
        t
    }

    /// The next event, if any. Call after every `handle_*` call until it returns `None`.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Node::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Timestamp {
        let mut t = (self.last_ping_check.saturating_add(PING_CHECK_MS))
            .min(self.last_housekeeping.saturating_add(HOUSEKEEPING_MS));
        t = t.min(
            self.last_network_tick
                .saturating_add(crate::network::NETWORK_TICK_MS),
        );
        if !self.rx_queue.is_empty() || !self.tx_queue.is_empty() || !self.held.is_empty() {
            t = t.min(self.last_queue_retry.saturating_add(QUEUE_RETRY_MS));
        }
        if let Some(due) = self.pending_probes.iter().map(|p| p.0).min() {
            t = t.min(due);
        }
        if let Some(due) = self.bonds_poll_timeout() {
            t = t.min(due);
        }
        t
    }

    /// Runs the timers that are due at `now`. A clock that went backwards restarts the timers.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        if now < self.last_ping_check || now < self.last_housekeeping {
            self.last_ping_check = now - PING_CHECK_MS;
            self.last_housekeeping = now;
            self.last_queue_retry = now;
            self.last_network_tick = now;
        }
        if self.pending_probes.iter().any(|p| p.0 <= now) {
            let (due, later): (Vec<_>, Vec<_>) =
                self.pending_probes.drain(..).partition(|p| p.0 <= now);
            self.pending_probes = later;
            for (_, peer, local, addr) in due {
                self.send_probe(now, peer, Some(local), addr);
            }
        }
        if now - self.last_queue_retry >= QUEUE_RETRY_MS {
            self.last_queue_retry = now;
            self.retry_queues(now);
            if !self.held.is_empty() {
                self.retry_held(now);
            }
        }
        if now - self.last_network_tick >= crate::network::NETWORK_TICK_MS {
            self.last_network_tick = now;
            self.networks_tick(now);
        }
        if now - self.last_ping_check >= PING_CHECK_MS {
            self.last_ping_check = now;
            self.ping_check(now);
            self.sync_bonds(now);
        }
        self.bonds_timeout(now);
        if now - self.last_housekeeping >= HOUSEKEEPING_MS {
            self.last_housekeeping = now;
            self.housekeeping(now);
        }
        self.reassembler.expire(now);
    }

    /// The addresses this node can be reached at besides what peers report (§8.10): bound
    /// interface addresses with their ports and port-mapped external addresses. They are
    /// advertised to trusted peers in PUSH_DIRECT_PATHS. spec: vl1.md §0.1, §5.8
    pub fn set_local_addresses(&mut self, mut addrs: Vec<SocketAddr>) {
        addrs.retain(|a| weft_wire::inet::is_usable_path(a.ip()) && a.port() != 0);
        addrs.sort();
        addrs.dedup();
        addrs.truncate(64);
        self.local_addresses = addrs;
    }

    /// Adds a peer from the peer cache (the driver loads `peers.d/` at start). It is used when
    /// that address is next needed: the peer is re-created without re-validation and HELLO is
    /// sent to its cached addresses. spec: vl1.md §8.14
    pub fn add_cached_peer(&mut self, peer: CachedPeer) {
        if peer.identity.address() != self.address() && self.cache.len() < PEER_CACHE_MAX {
            self.cache.insert(peer.identity.address(), peer);
        }
    }

    /// Peer-cache records for every known peer (for a clean shutdown). A root keeps physical
    /// addresses in memory only, so its records carry none.
    pub fn peer_cache_records(&self) -> Vec<(Address, Vec<u8>)> {
        self.peers
            .keys()
            .map(|a| (*a, self.cache_record(*a)))
            .collect()
    }

    /// Orbits a moon by seed (the moon file is not present). spec: vl1.md §7.6
    pub fn orbit(&mut self, now: Timestamp, world_id: u64, seed: Address) {
        if !self.moons.iter().any(|m| m.id == world_id)
            && !self.moon_seeds.contains(&(world_id, seed))
        {
            self.moon_seeds.push((world_id, seed));
        }
        self.last_ping_check = now - PING_CHECK_MS;
    }

    /// Installs a moon (from `moons.d/` or `orbit` with a file): accepted unconditionally.
    pub fn add_moon(&mut self, now: Timestamp, moon: World) {
        if moon.kind != WorldType::Moon {
            return;
        }
        self.moons.retain(|m| m.id != moon.id);
        self.moon_seeds.retain(|(id, _)| *id != moon.id);
        self.moons.push(moon);
        self.add_root_peers(now);
    }

    /// Stops orbiting a moon.
    pub fn deorbit(&mut self, world_id: u64) {
        self.moons.retain(|m| m.id != world_id);
        self.moon_seeds.retain(|(id, _)| *id != world_id);
    }

    /// Role of an address with respect to this node's worlds.
    pub(crate) fn role_of(&self, a: Address) -> PeerRole {
        if self.planet.roots.iter().any(|r| r.identity.address() == a) {
            PeerRole::Planet
        } else if self
            .moons
            .iter()
            .any(|m| m.roots.iter().any(|r| r.identity.address() == a))
        {
            PeerRole::Moon
        } else {
            PeerRole::Leaf
        }
    }

    pub(crate) fn is_upstream(&self, a: Address) -> bool {
        a != self.address() && self.role_of(a) != PeerRole::Leaf
    }

    /// Stable endpoints of an upstream (empty for leaves and for roots that list none).
    pub(crate) fn stable_endpoints(&self, a: Address) -> Vec<SocketAddr> {
        self.planet
            .roots
            .iter()
            .chain(self.moons.iter().flat_map(|m| m.roots.iter()))
            .filter(|r| r.identity.address() == a)
            .flat_map(|r| r.stable_endpoints.iter().copied())
            .collect()
    }

    /// Creates peers for every root of the planet and the moons (their identities are known).
    pub(crate) fn add_root_peers(&mut self, now: Timestamp) {
        let roots: Vec<Identity> = self
            .planet
            .roots
            .iter()
            .chain(self.moons.iter().flat_map(|m| m.roots.iter()))
            .map(|r| r.identity.clone())
            .collect();
        for id in roots {
            if id.address() != self.address() && !self.peers.contains_key(&id.address()) {
                self.add_peer(now, id);
            }
        }
    }

    /// Creates a peer (key agreement). Returns false for our own address or a known one.
    pub(crate) fn add_peer(&mut self, now: Timestamp, identity: Identity) -> bool {
        if identity.address() == self.address() || self.peers.contains_key(&identity.address()) {
            return false;
        }
        let Ok(key) = self.identity.agree(&identity) else {
            return false;
        };
        let mut peer = Peer::new(identity.to_public(), key, now);
        if let Some(c) = self.cache.remove(&identity.address())
            && c.identity == identity
            && c.version[0] != 0
        {
            peer.version = Some(crate::peer::RemoteVersion {
                protocol: c.version[0] as u8,
                major: c.version[1] as u8,
                minor: c.version[2] as u8,
                revision: c.version[3],
            });
        }
        self.peers.insert(identity.address(), peer);
        self.events.push_back(Event::PeerAdded {
            identity: identity.to_public(),
        });
        if let Some((local, addr, t)) = self.pending_rendezvous.remove(&identity.address())
            && now - t < QUEUE_TIMEOUT_MS
        {
            self.punch(now, local, identity.address(), addr);
        }
        true
    }

    /// Looks an address up in the peer cache; a hit re-creates the peer and HELLOs its cached
    /// addresses. spec: vl1.md §8.14
    pub(crate) fn restore_from_cache(&mut self, now: Timestamp, a: Address) -> bool {
        let Some(c) = self.cache.get(&a).cloned() else {
            return false;
        };
        if !self.add_peer(now, c.identity.clone()) {
            return false;
        }
        for addr in c.paths {
            self.send_hello(now, a, None, addr);
        }
        true
    }

    pub(crate) fn cache_record(&self, a: Address) -> Vec<u8> {
        let Some(p) = self.peers.get(&a) else {
            return Vec::new();
        };
        let v = p.version.map_or([0; 4], |v| {
            [
                u16::from(v.protocol),
                u16::from(v.major),
                u16::from(v.minor),
                v.revision,
            ]
        });
        let paths = if self.is_upstream_itself() {
            Vec::new()
        } else {
            p.paths.iter().map(|p| p.addr).collect()
        };
        CachedPeer {
            identity: p.identity.clone(),
            version: v,
            paths,
        }
        .encode()
    }

    pub(crate) fn random_id(&mut self) -> [u8; 8] {
        let mut id = [0u8; 8];
        self.rng.fill_bytes(&mut id);
        id
    }

    pub(crate) fn update_online(&mut self, now: Timestamp) {
        let online = self.is_upstream_itself()
            || self.peers.iter().any(|(a, p)| {
                self.is_upstream(*a)
                    && p.last_receive > 0
                    && now - p.last_receive < PEER_ACTIVITY_TIMEOUT_MS
            });
        if online != self.online {
            self.online = online;
            self.events.push_back(Event::Online(online));
        }
    }

    /// The always-contact set: upstreams (with stable endpoints) and moon seeds.
    fn always_contact(&self) -> Vec<(Address, Vec<SocketAddr>)> {
        let mut v: Vec<(Address, Vec<SocketAddr>)> = Vec::new();
        for r in self
            .planet
            .roots
            .iter()
            .chain(self.moons.iter().flat_map(|m| m.roots.iter()))
        {
            let a = r.identity.address();
            if a != self.address() && !v.iter().any(|(x, _)| *x == a) {
                v.push((a, r.stable_endpoints.clone()));
            }
        }
        for (_, seed) in &self.moon_seeds {
            if *seed != self.address() && !v.iter().any(|(x, _)| x == seed) {
                v.push((*seed, Vec::new()));
            }
        }
        v
    }

    /// The 5-second ping check. spec: vl1.md §8.8
    fn ping_check(&mut self, now: Timestamp) {
        let mut whois_left = Vec::new();
        let always = self.always_contact();
        for (a, endpoints) in &always {
            let Some(peer) = self.peers.get(a) else {
                whois_left.push(*a);
                continue;
            };
            // Scale 0 (HELLO every round) also when no path is alive: a restarted root that lost
            // its peers answers nothing else, and waiting 224 s for the regular HELLO would leave
            // the node unreachable that long (1.14 uses 0 only when there is no path at all).
            let scale = if !peer.paths.iter().any(|p| p.alive(now)) {
                0
            } else if self.role_of(*a) != PeerRole::Leaf {
                16
            } else {
                2
            };
            if now - peer.last_hello_sent <= crate::path::HEARTBEAT_MS * scale {
                whois_left.push(*a);
                continue;
            }
            let (v4, v6) = self.peer_keepalive(now, *a);
            let mut sent = v4 || v6;
            let v4_eps: Vec<SocketAddr> =
                endpoints.iter().filter(|e| e.is_ipv4()).copied().collect();
            let v6_eps: Vec<SocketAddr> =
                endpoints.iter().filter(|e| e.is_ipv6()).copied().collect();
            for (done, eps) in [(v4, v4_eps), (v6, v6_eps)] {
                if !done && !eps.is_empty() {
                    let i = (self.rng.next_u32() as usize) % eps.len();
                    self.send_hello(now, *a, None, eps[i]);
                    sent = true;
                }
            }
            if !sent && let Some(u) = self.best_upstream(now, Some(*a)) {
                self.send_hello_via(now, *a, u);
            }
        }
        let active: Vec<Address> = self
            .peers
            .iter()
            .filter(|(a, p)| {
                !always.iter().any(|(x, _)| x == *a)
                    && p.last_nontrivial_receive > 0
                    && now - p.last_nontrivial_receive < PEER_ACTIVITY_TIMEOUT_MS
            })
            .map(|(a, _)| *a)
            .collect();
        for a in active {
            self.peer_keepalive(now, a);
        }
        for a in whois_left {
            self.whois(now, a);
        }
        self.update_online(now);
    }

    /// Keeps a peer's paths alive: prunes, then full HELLO (every 60 s) or a probe on paths
    /// that need a heartbeat. Returns whether it pinged an IPv4 / IPv6 path.
    fn peer_keepalive(&mut self, now: Timestamp, a: Address) -> (bool, bool) {
        let Some(peer) = self.peers.get_mut(&a) else {
            return (false, false);
        };
        let full = now - peer.last_hello_sent >= FULL_HELLO_MS;
        if peer.prune_paths(now) {
            self.events.push_back(Event::PathsChanged { address: a });
        }
        let paths: Vec<PeerPath> = peer.paths.clone();
        let (mut v4, mut v6) = (false, false);
        for p in &paths {
            let sent = if full {
                self.send_hello(now, a, Some(p.local), p.addr);
                true
            } else if p.needs_heartbeat(now) {
                self.send_probe(now, a, Some(p.local), p.addr);
                true
            } else {
                false
            };
            v4 |= sent && p.addr.is_ipv4();
            v6 |= sent && p.addr.is_ipv6();
        }
        (v4, v6)
    }

    /// Retries parked and queued packets whose peers became known; drops old ones.
    pub(crate) fn retry_queues(&mut self, now: Timestamp) {
        let rx: Vec<Parked> = self.rx_queue.drain(..).collect();
        for p in rx {
            if self.peers.contains_key(&p.source) || self.restore_from_cache(now, p.source) {
                self.process_packet(now, p.local, p.from, p.packet);
            } else if now - p.since < QUEUE_TIMEOUT_MS {
                self.whois(now, p.source);
                self.rx_queue.push_back(p);
            } else {
                self.stats.queue_drops += 1;
            }
        }
        let tx: Vec<Queued> = self.tx_queue.drain(..).collect();
        for q in tx {
            if self.peers.contains_key(&q.dest) || self.restore_from_cache(now, q.dest) {
                self.send_since(now, q.since, q.dest, q.verb, &q.payload);
            } else if now - q.since < QUEUE_TIMEOUT_MS {
                self.whois(now, q.dest);
                self.tx_queue.push_back(q);
            } else {
                self.stats.queue_drops += 1;
            }
        }
    }

    /// The 30-second housekeeping. spec: vl1.md §8.8 (end)
    fn housekeeping(&mut self, now: Timestamp) {
        let evict: Vec<Address> = self
            .peers
            .iter()
            .filter(|(a, p)| {
                !self.is_upstream(**a)
                    && !self.moon_seeds.iter().any(|(_, s)| s == *a)
                    && now - p.last_receive.max(p.created) >= PEER_ACTIVITY_TIMEOUT_MS
            })
            .map(|(a, _)| *a)
            .collect();
        for a in evict {
            let record = self.cache_record(a);
            if let Ok(c) = CachedPeer::decode(&record)
                && self.cache.len() < PEER_CACHE_MAX
            {
                self.cache.insert(a, c);
            }
            self.peers.remove(&a);
            self.events
                .push_back(Event::PeerEvicted { address: a, record });
        }
        self.path_gates
            .retain(|_, g| now - g.last_used < 2 * HOUSEKEEPING_MS);
        self.unite_gate
            .retain(|_, t| now - *t < 2 * HOUSEKEEPING_MS);
        self.whois_sent.retain(|_, t| now - *t < QUEUE_RETRY_MS);
        self.surface
            .retain(|_, (_, t)| now - *t < SURFACE_TIMEOUT_MS);
        self.pending_rendezvous
            .retain(|_, (_, _, t)| now - *t < QUEUE_TIMEOUT_MS);
        self.networks_housekeeping(now);
        for m in self.root_multicast.values_mut() {
            m.expire(now);
        }
        self.root_multicast.retain(|_, m| !m.members.is_empty());
    }
}
