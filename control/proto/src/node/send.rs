//! Sending: packet construction, path choice, relaying through upstreams, fragmentation, probes
//! and WHOIS. spec: vl1.md §3.6, §4.3, §8.2, §8.4

use std::net::SocketAddr;

use weft_wire::compress::compress_packet;
use weft_wire::fragment::Fragmenter;
use weft_wire::inet::PathRecord;
use weft_wire::packet::{self, MAX_PACKET_LEN, Packet, Verb};
use weft_wire::verbs::{Hello, MoonRef, PushDirectPaths, Whois};
use weft_wire::{Address, CipherSuite, InetAddress, armor};

use super::{Node, Queued, push_bounded};
use crate::{LocalSocket, Timestamp, Transmit};

/// Per-address WHOIS gate.
const WHOIS_GATE_MS: i64 = 500;
/// At most this many addresses are being asked about at once.
const WHOIS_PENDING_MAX: usize = 4096;
/// Best-upstream window: an upstream not heard from for this long is worst.
const UPSTREAM_QUIET_MS: i64 = 500_000;

/// Verbs whose payloads 1.14 compresses. spec: vl1.md §3.7
fn compresses(verb: Verb) -> bool {
    !matches!(
        verb,
        Verb::NOP
            | Verb::HELLO
            | Verb::ERROR
            | Verb::OK
            | Verb::WHOIS
            | Verb::RENDEZVOUS
            | Verb::ECHO
            | Verb::FRAME
            | Verb::EXT_FRAME
    )
}

impl Node {
    /// Builds and armors a packet for `dest` (which must be a known peer). Returns the datagram
    /// bytes and the on-wire packet id, which is registered as expecting a reply.
    pub(crate) fn build_packet(
        &mut self,
        dest: Address,
        verb: Verb,
        payload: &[u8],
        mtu: Option<usize>,
    ) -> Option<Vec<u8>> {
        self.build_packet_for(dest, verb, payload, mtu, None)
    }

    /// [`Node::build_packet`], as cipher 2 with `trusted_path_id` when given (such packets are
    /// not registered as expecting replies, as in 1.14). spec: vl1.md §3.5
    pub(crate) fn build_packet_for(
        &mut self,
        dest: Address,
        verb: Verb,
        payload: &[u8],
        mtu: Option<usize>,
        trusted_path_id: Option<u64>,
    ) -> Option<Vec<u8>> {
        let id = self.random_id();
        let peer = self.peers.get(&dest)?;
        self.stats.packets_out[usize::from(verb.to_u8() & 0x1f)] += 1;
        if verb == Verb::ERROR
            && let Some(code) = payload.get(9)
        {
            self.stats.errors_out[usize::from(*code).min(16) % 16] += 1;
        }
        let mut p = packet::build(id, dest, self.address(), verb, payload);
        if compresses(verb) {
            let mut out = vec![0u8; MAX_PACKET_LEN];
            if let Some(n) = compress_packet(&p, &mut out) {
                out.truncate(n);
                p = out;
            }
        }
        if let Some(mtu) = mtu
            && Fragmenter::needed(p.len(), mtu)
        {
            Packet::new_checked(&mut p[..]).ok()?.set_fragmented(true);
        }
        if let Some(id) = trusted_path_id {
            armor::armor_trusted_path(&mut p, id).ok()?;
            return Some(p);
        }
        armor(&mut p, &peer.key, peer.cipher()).ok()?;
        // Only requests expect an OK; registering our replies too would let a chatty peer flush
        // the table and make us ignore the OKs we do wait for.
        if !matches!(verb, Verb::OK | Verb::ERROR | Verb::NOP | Verb::RENDEZVOUS) {
            let wire_id = u64::from_be_bytes(p[..8].try_into().ok()?);
            self.expecting.register(wire_id);
        }
        Some(p)
    }

    /// Sends a reply straight back over a path, unfragmented. spec: vl1.md §4.4
    pub(crate) fn send_direct(
        &mut self,
        now: Timestamp,
        dest: Address,
        local: Option<LocalSocket>,
        to: SocketAddr,
        verb: Verb,
        payload: &[u8],
    ) {
        if let Some(p) = self.build_packet(dest, verb, payload, None) {
            self.emit(now, dest, local, to, p, None);
        }
    }

    /// Queues a datagram for the driver and stamps the path's last send.
    pub(crate) fn emit(
        &mut self,
        now: Timestamp,
        peer: Address,
        local: Option<LocalSocket>,
        to: SocketAddr,
        data: Vec<u8>,
        ttl: Option<u8>,
    ) {
        if let Some(p) = self.peers.get_mut(&peer) {
            for path in p
                .paths
                .iter_mut()
                .filter(|x| x.addr == to && local.is_none_or(|l| l == x.local))
            {
                path.last_send = now;
            }
        }
        self.transmits.push_back(Transmit {
            local,
            to,
            data,
            ttl,
        });
    }

    /// The general send path: queue + WHOIS for unknown peers, the best direct path, else via
    /// the best upstream, else an expired path; fragments at the physical MTU.
    /// spec: vl1.md §8.2
    pub(crate) fn send(&mut self, now: Timestamp, dest: Address, verb: Verb, payload: &[u8]) {
        self.send_since(now, now, dest, verb, payload);
    }

    /// [`Node::send`] for a packet first queued at `since` (queued packets keep their age, so
    /// they expire 5 s after they were first sent, whatever happens in between).
    pub(crate) fn send_since(
        &mut self,
        now: Timestamp,
        since: Timestamp,
        dest: Address,
        verb: Verb,
        payload: &[u8],
    ) {
        if dest == self.address() {
            return;
        }
        if !self.peers.contains_key(&dest) && !self.restore_from_cache(now, dest) {
            let q = Queued {
                since,
                dest,
                verb,
                payload: payload.to_vec(),
            };
            push_bounded(&mut self.tx_queue, q, &mut self.stats.queue_drops);
            self.whois(now, dest);
            return;
        }
        if self.send_bonded(now, dest, verb, payload) {
            return;
        }
        let route = self.route(now, dest);
        let Some((local, to, via)) = route else {
            if now - since < super::QUEUE_TIMEOUT_MS {
                let q = Queued {
                    since,
                    dest,
                    verb,
                    payload: payload.to_vec(),
                };
                push_bounded(&mut self.tx_queue, q, &mut self.stats.queue_drops);
            } else {
                self.stats.queue_drops += 1;
            }
            return;
        };
        let mtu = self.config.physical_mtu;
        // spec: vl1.md §3.5 — the general send queue uses cipher 2 toward a trusted physical
        // network (never for HELLO: first contact needs an authenticated packet)
        let trusted = (verb != Verb::HELLO && via.is_none())
            .then(|| {
                self.config
                    .trusted_paths
                    .iter()
                    .find(|t| t.contains(to.ip()))
                    .map(|t| t.id)
            })
            .flatten();
        let Some(p) = self.build_packet_for(dest, verb, payload, Some(mtu), trusted) else {
            return;
        };
        let Ok(f) = Fragmenter::new(&p, mtu) else {
            return;
        };
        let via = via.unwrap_or(dest);
        self.emit(now, via, Some(local), to, f.head().to_vec(), None);
        for n in 1..f.total() {
            if let Some(frag) = f.fragment(n) {
                self.emit(now, via, Some(local), to, frag, None);
            }
        }
    }

    /// Where to send a packet for `dest`: its best direct path; else the best upstream's path
    /// (returned with `Some(upstream)`); else an expired path of the peer.
    fn route(
        &self,
        now: Timestamp,
        dest: Address,
    ) -> Option<(LocalSocket, SocketAddr, Option<Address>)> {
        let peer = self.peers.get(&dest)?;
        if let Some(i) = peer.best_path(now) {
            let p = &peer.paths[i];
            return Some((p.local, p.addr, None));
        }
        if let Some(u) = self.best_upstream(now, Some(dest)) {
            let up = self.peers.get(&u)?;
            let p = &up.paths[up.best_path(now)?];
            return Some((p.local, p.addr, Some(u)));
        }
        peer.paths
            .iter()
            .max_by_key(|p| p.last_receive)
            .map(|p| (p.local, p.addr, None))
    }

    /// The upstream to relay through: minimises latency × (1 + silence / 61 s); upstreams silent
    /// for 500 s rank last. spec: vl1.md §8.2
    pub(crate) fn best_upstream(&self, now: Timestamp, except: Option<Address>) -> Option<Address> {
        self.peers
            .iter()
            .filter(|(a, p)| {
                self.is_upstream(**a) && Some(**a) != except && p.best_path(now).is_some()
            })
            .min_by_key(|(_, p)| {
                let silent = now - p.last_receive;
                if p.last_receive <= 0 || silent >= UPSTREAM_QUIET_MS {
                    u64::MAX
                } else {
                    let lat = p
                        .best_path(now)
                        .map_or(u64::from(crate::path::LATENCY_UNKNOWN), |i| {
                            u64::from(p.paths[i].latency)
                        });
                    lat * (61_000 + silent.max(0) as u64) / 61_000
                }
            })
            .map(|(a, _)| *a)
    }

    /// Sends WHOIS for `a` to the best upstream, at most once per 500 ms per address.
    /// spec: vl1.md §8.4
    pub(crate) fn whois(&mut self, now: Timestamp, a: Address) {
        if a == self.address() {
            return;
        }
        if let Some(t) = self.whois_sent.get(&a)
            && now - *t < WHOIS_GATE_MS
        {
            return;
        }
        // The upstream may be asked about itself: a 1.14 leaf WHOISes its root's own address
        // every ping round, which doubles as a keepalive. spec: vl1.md §8.8 step 4
        let Some(u) = self.best_upstream(now, None) else {
            return;
        };
        if self.whois_sent.len() >= WHOIS_PENDING_MAX {
            self.whois_sent.retain(|_, t| now - *t < WHOIS_GATE_MS);
            if self.whois_sent.len() >= WHOIS_PENDING_MAX {
                // Under a flood of unknown sources: wait for the gate entries to age out.
                return;
            }
        }
        self.whois_sent.insert(a, now);
        let mut payload = Vec::new();
        Whois { addresses: vec![a] }.encode(&mut payload);
        self.send(now, u, Verb::WHOIS, &payload);
    }

    /// Our moon list for HELLO: installed moons with their timestamps, wanted seeds with 0.
    fn hello_moons(&self) -> Vec<MoonRef> {
        let mut v: Vec<MoonRef> = self
            .moons
            .iter()
            .map(|m| MoonRef {
                kind: 127,
                id: m.id,
                timestamp: m.timestamp,
            })
            .collect();
        for (id, _) in &self.moon_seeds {
            if !v.iter().any(|m| m.id == *id) {
                v.push(MoonRef {
                    kind: 127,
                    id: *id,
                    timestamp: 0,
                });
            }
        }
        v
    }

    /// Sends a full HELLO to `peer` at `to` (from `local`, or from every socket). The peer must
    /// be known (roots always are). spec: vl1.md §5.2
    pub(crate) fn send_hello(
        &mut self,
        now: Timestamp,
        peer: Address,
        local: Option<LocalSocket>,
        to: SocketAddr,
    ) {
        let Some(p) = self.hello_packet(now, peer, Some(to)) else {
            return;
        };
        if let Some(pe) = self.peers.get_mut(&peer) {
            pe.last_hello_sent = now;
        }
        self.emit(now, peer, local, to, p, None);
    }

    /// Sends a HELLO to `peer` through `upstream`'s physical path (the upstream relays it).
    pub(crate) fn send_hello_via(&mut self, now: Timestamp, peer: Address, upstream: Address) {
        let Some((local, to)) = self.peers.get(&upstream).and_then(|u| {
            u.best_path(now)
                .map(|i| (u.paths[i].local, u.paths[i].addr))
        }) else {
            return;
        };
        let Some(p) = self.hello_packet(now, peer, None) else {
            return;
        };
        if let Some(pe) = self.peers.get_mut(&peer) {
            pe.last_hello_sent = now;
        }
        self.emit(now, upstream, Some(local), to, p, None);
    }

    fn hello_packet(
        &mut self,
        now: Timestamp,
        peer: Address,
        to: Option<SocketAddr>,
    ) -> Option<Vec<u8>> {
        let moons = self.hello_moons();
        let id = self.random_id();
        let (major, minor, revision) = self.config.version;
        let hello = Hello {
            protocol_version: 12,
            major,
            minor,
            revision,
            timestamp: now as u64,
            identity: self.identity.to_public(),
            destination: Some(to.map_or(InetAddress::Nil, InetAddress::Ip)),
            planet: Some((self.planet.id, self.planet.timestamp)),
            encrypted_tail: Vec::new(),
        };
        let key = &self.peers.get(&peer)?.key;
        let p = hello.to_packet(id, peer, &moons, key).ok()?;
        self.expecting.register(u64::from_be_bytes(id));
        Some(p)
    }

    /// Sends a probe: ECHO to peers known to support it, HELLO otherwise. spec: vl1.md §5.7
    pub(crate) fn send_probe(
        &mut self,
        now: Timestamp,
        peer: Address,
        local: Option<LocalSocket>,
        to: SocketAddr,
    ) {
        let echo = self.peers.get(&peer).is_some_and(|p| p.echo_probes());
        if echo {
            self.send_direct(now, peer, local, to, Verb::ECHO, &[]);
        } else {
            self.send_hello(now, peer, local, to);
        }
    }

    /// Pushes our direct paths to a trusted peer (a member of a network we share) at most every
    /// 120 s when its packet came direct, 15 s when relayed, over the path it came from.
    /// spec: vl1.md §5.8 (sender rules), §8.10
    pub(crate) fn push_direct_paths_if_due(
        &mut self,
        now: Timestamp,
        peer: Address,
        local: LocalSocket,
        from: SocketAddr,
        hops: u8,
    ) {
        let interval = if hops == 0 { 120_000 } else { 15_000 };
        let due = self
            .peers
            .get(&peer)
            .is_some_and(|p| now - p.last_paths_pushed >= interval);
        if !due || !self.networks.keys().any(|n| self.gate_quiet(*n, peer)) {
            return;
        }
        let mut addrs = self.local_addresses.clone();
        addrs.extend(self.external_addresses());
        addrs.sort();
        addrs.dedup();
        if let Some(p) = self.peers.get_mut(&peer) {
            p.last_paths_pushed = now;
        }
        // records are packed while the packet stays under about 1,200 bytes
        for part in addrs.chunks(48) {
            let mut payload = Vec::new();
            PushDirectPaths {
                records: part
                    .iter()
                    .map(|a| PathRecord {
                        flags: 0,
                        address: Some(*a),
                    })
                    .collect(),
            }
            .encode(&mut payload);
            if hops == 0 {
                self.send_direct(
                    now,
                    peer,
                    Some(local),
                    from,
                    Verb::PUSH_DIRECT_PATHS,
                    &payload,
                );
            } else {
                self.send(now, peer, Verb::PUSH_DIRECT_PATHS, &payload);
            }
        }
    }

    /// Sends a USER_MESSAGE through the normal send path. spec: vl1.md §5.9
    pub fn send_user_message(&mut self, now: Timestamp, dest: Address, type_id: u64, data: &[u8]) {
        let mut payload = type_id.to_be_bytes().to_vec();
        payload.extend_from_slice(data);
        self.send(now, dest, Verb::USER_MESSAGE, &payload);
    }

    /// The cipher a reply to `peer` would use (for tests and status).
    pub fn cipher_for(&self, peer: Address) -> Option<CipherSuite> {
        self.peers.get(&peer).map(|p| p.cipher())
    }
}
