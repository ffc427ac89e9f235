//! Receiving: classification, authentication, HELLO, and every VL1 verb.
//! spec: vl1.md §3.8, §4, §5, §8.6, §8.9, §8.10

use std::net::SocketAddr;

use weft_wire::compress::decompress_packet;
use weft_wire::fragment::{DatagramKind, Fragment, classify};
use weft_wire::inet::{IpScope, ip_scope, is_usable_path};
use weft_wire::packet::{IDX_PAYLOAD, MAX_PACKET_LEN, Packet, Verb};
use weft_wire::verbs::{
    ErrorCode, ErrorHeader, Hello, OkHeader, OkHello, PushDirectPaths, Rendezvous, UserMessage,
    Whois, ok_whois_identities,
};
use weft_wire::{Address, ArmorError, Identity, InetAddress, World, WorldType, armor};

use super::{Node, Parked, push_bounded};
use crate::path::PeerPath;
use crate::peer::RemoteVersion;
use crate::{Event, LocalSocket, Timestamp};

/// ECHO answers per physical path. spec: vl1.md §5.7
const ECHO_GATE_MS: i64 = 1000 / 6;
/// HELLOs confirming an unknown path, per path. spec: vl1.md §8.6
const CONFIRM_GATE_MS: i64 = 1_000;
/// Legacy beacon replies, globally. spec: vl1.md §8.9
const BEACON_GATE_MS: i64 = 2_500;
/// At most this many identities in one OK(WHOIS).
const WHOIS_ANSWER_MAX: usize = 4;
/// WHOIS answers per requesting peer (unless we are an upstream).
const WHOIS_ANSWER_GATE_MS: i64 = 100;
/// PUSH_DIRECT_PATHS counter window and limit; addresses per scope/family per packet.
const PDP_WINDOW_MS: i64 = 30_000;
const PDP_LIMIT: u32 = 8;
const PDP_PER_SCOPE: usize = 8;

/// Verbs that count as "nontrivial" traffic (keep a peer's paths pinged). USER_MESSAGE is added
/// to 1.14's list so that VL1 applications keep their direct paths too.
fn nontrivial(verb: Verb) -> bool {
    matches!(
        verb,
        Verb::FRAME
            | Verb::EXT_FRAME
            | Verb::MULTICAST_FRAME
            | Verb::NETWORK_CONFIG
            | Verb::NETWORK_CONFIG_REQUEST
            | Verb::USER_MESSAGE
    )
}

impl Node {
    /// Handles one received UDP payload from `from` on `local`. Never panics; bad input is
    /// counted and dropped.
    pub fn handle_datagram(
        &mut self,
        now: Timestamp,
        local: LocalSocket,
        from: SocketAddr,
        data: &[u8],
    ) {
        self.stats.datagrams_in += 1;
        self.stats.bytes_in += data.len() as u64;
        match classify(data) {
            DatagramKind::Beacon => self.handle_beacon(now, local, from, data),
            DatagramKind::Fragment => {
                let Ok(f) = Fragment::new_checked(data) else {
                    self.stats.malformed += 1;
                    return;
                };
                if f.destination() != self.address() {
                    self.relay(now, from, data.to_vec(), true);
                    return;
                }
                let r = self.reassembler.add_fragment(now, &f);
                self.reassembled(now, local, from, r);
            }
            DatagramKind::Packet => {
                let Ok(p) = Packet::new_checked(data) else {
                    self.stats.malformed += 1;
                    return;
                };
                if p.destination() != self.address() {
                    self.relay(now, from, data.to_vec(), false);
                    return;
                }
                if p.is_fragmented() {
                    let r = self.reassembler.add_head(now, data);
                    self.reassembled(now, local, from, r);
                } else {
                    self.process_packet(now, local, from, data.to_vec());
                }
            }
            DatagramKind::Ignored => {}
        }
    }

    /// Processes a packet the reassembler completed; counts a refused piece as malformed.
    fn reassembled(
        &mut self,
        now: Timestamp,
        local: LocalSocket,
        from: SocketAddr,
        r: Result<Option<Vec<u8>>, weft_wire::fragment::FragmentError>,
    ) {
        match r {
            Ok(Some(p)) => self.process_packet(now, local, from, p),
            Ok(None) => {}
            Err(_) => self.stats.malformed += 1,
        }
    }

    /// Legacy 13-byte beacon: answer a known peer with an encrypted NOP, once per 2.5 s.
    fn handle_beacon(&mut self, now: Timestamp, local: LocalSocket, from: SocketAddr, data: &[u8]) {
        let Some(a) = Address::from_slice(&data[8..]) else {
            return;
        };
        if a == self.address()
            || !self.peers.contains_key(&a)
            || !self.path_allowed(a, from)
            || now - self.last_beacon_reply < BEACON_GATE_MS
        {
            return;
        }
        self.last_beacon_reply = now;
        self.send_direct(now, a, Some(local), from, Verb::NOP, &[]);
    }

    /// Authenticates, decompresses and dispatches a complete packet addressed to us.
    /// spec: vl1.md §3.8
    pub(crate) fn process_packet(
        &mut self,
        now: Timestamp,
        local: LocalSocket,
        from: SocketAddr,
        mut pkt: Vec<u8>,
    ) {
        let Ok(p) = Packet::new_checked(&pkt[..]) else {
            self.stats.malformed += 1;
            return;
        };
        let source = p.source();
        if source == self.address() || source.is_reserved() {
            return;
        }
        if p.cipher_id() == 0 && p.verb() == Verb::HELLO {
            self.handle_hello_cipher0(now, local, from, pkt);
            return;
        }
        if !self.peers.contains_key(&source) && !self.restore_from_cache(now, source) {
            let parked = Parked {
                since: now,
                local,
                from,
                source,
                packet: pkt,
            };
            push_bounded(&mut self.rx_queue, parked, &mut self.stats.queue_drops);
            self.whois(now, source);
            return;
        }
        let key = &self.peers[&source].key;
        match armor::dearmor(&mut pkt, key) {
            Ok(_) => {}
            Err(ArmorError::TrustedPath { trusted_path_id }) => {
                let ok = self
                    .config
                    .trusted_paths
                    .iter()
                    .any(|t| t.id == trusted_path_id && t.contains(from.ip()));
                if !ok {
                    self.stats.mac_failures += 1;
                    return;
                }
            }
            Err(_) => {
                self.stats.mac_failures += 1;
                return;
            }
        }
        let wire_id = u64::from_be_bytes(pkt[..8].try_into().unwrap_or_default());
        // Bonded peers: every path's copy shows the path is alive, and a broadcast bond's
        // copies of one packet are processed once. spec: vl1.md §9.1, §9.2
        let mut dedup_from = from;
        if self.bonds.contains_key(&source)
            && let Ok(h) = Packet::new_checked(&pkt[..])
        {
            dedup_from = super::bond::BOND_DEDUP_FROM;
            if h.hops() == 0 {
                let key = crate::bond::PathKey {
                    local,
                    remote: from,
                };
                self.bond_received(now, source, key, wire_id, h.verb());
            }
        }
        if self.dedup.check_and_insert(source, wire_id, dedup_from) {
            self.stats.duplicates += 1;
            return;
        }
        let plain = if Packet::new_checked(&pkt[..]).is_ok_and(|p| p.is_compressed()) {
            let mut out = vec![0u8; MAX_PACKET_LEN];
            match decompress_packet(&pkt, &mut out) {
                Ok(n) => {
                    out.truncate(n);
                    out
                }
                Err(_) => {
                    self.stats.malformed += 1;
                    return;
                }
            }
        } else {
            pkt
        };
        self.dispatch(now, local, from, plain);
    }

    /// A cipher-0 HELLO: authenticated with the key of the identity it carries.
    /// spec: vl1.md §5.2
    fn handle_hello_cipher0(
        &mut self,
        now: Timestamp,
        local: LocalSocket,
        from: SocketAddr,
        mut pkt: Vec<u8>,
    ) {
        let Ok(hello) = Hello::decode(&pkt[IDX_PAYLOAD..]) else {
            self.stats.malformed += 1;
            return;
        };
        let source = Address::from_slice(&pkt[13..]).unwrap_or_default();
        if hello.protocol_version < 4 || hello.identity.address() != source {
            self.stats.malformed += 1;
            return;
        }
        // A peer we evicted or knew before a restart comes back from the cache without a new
        // validation; a different key for a cached address is then a collision.
        // spec: vl1.md §8.14
        if !self.peers.contains_key(&source) {
            self.restore_from_cache(now, source);
        }
        match self.peers.get(&source).map(|p| p.identity.clone()) {
            Some(known) if known == hello.identity => {
                let key = &self.peers[&source].key;
                if armor::dearmor(&mut pkt, key).is_err() {
                    self.stats.mac_failures += 1;
                    return;
                }
            }
            Some(_) => {
                // Address collision: someone else claims this address with another key.
                let Some(key) =
                    self.authenticate_new_identity(now, from, &hello.identity, &mut pkt)
                else {
                    return;
                };
                let mut payload = Vec::new();
                ErrorHeader {
                    in_re_verb: Verb::HELLO,
                    in_re_packet_id: u64::from_be_bytes(pkt[..8].try_into().unwrap_or_default()),
                    code: ErrorCode::IDENTITY_COLLISION,
                }
                .encode(&mut payload);
                let id = self.random_id();
                let mut reply =
                    weft_wire::packet::build(id, source, self.address(), Verb::ERROR, &payload);
                if armor(&mut reply, &key, weft_wire::CipherSuite::Poly1305Salsa2012).is_ok() {
                    self.transmits.push_back(crate::Transmit {
                        local: Some(local),
                        to: from,
                        data: reply,
                        ttl: None,
                    });
                }
                return;
            }
            None => {
                if self
                    .authenticate_new_identity(now, from, &hello.identity, &mut pkt)
                    .is_none()
                {
                    return;
                }
                if !hello.identity.validate() {
                    self.stats.malformed += 1;
                    return;
                }
                self.add_peer(now, hello.identity.clone());
            }
        }
        let wire_id = u64::from_be_bytes(pkt[..8].try_into().unwrap_or_default());
        if self.dedup.check_and_insert(source, wire_id, from) {
            self.stats.duplicates += 1;
            return;
        }
        self.handle_hello(now, local, from, &pkt, hello);
    }

    /// Authenticates a cipher-0 HELLO with the key of an identity we do not hold yet, under the
    /// identity-validation rate gate (the slot is spent even when authentication fails).
    /// spec: vl1.md §5.2 steps 2–3, §8.11
    fn authenticate_new_identity(
        &mut self,
        now: Timestamp,
        from: SocketAddr,
        identity: &Identity,
        pkt: &mut [u8],
    ) -> Option<weft_wire::PeerKey> {
        if !self.id_gate.allow(now, from.ip()) {
            self.stats.rate_limited += 1;
            return None;
        }
        let key = self.identity.agree(identity).ok()?;
        if armor::dearmor(pkt, &key).is_err() {
            self.stats.mac_failures += 1;
            return None;
        }
        Some(key)
    }

    /// HELLO after authentication: reply OK(HELLO) with any world updates, then record the
    /// version and learn. spec: vl1.md §5.2 steps 4–6, §5.3.1
    fn handle_hello(
        &mut self,
        now: Timestamp,
        local: LocalSocket,
        from: SocketAddr,
        pkt: &[u8],
        hello: Hello,
    ) {
        let Ok(p) = Packet::new_checked(pkt) else {
            return;
        };
        let (source, hops, id) = (p.source(), p.hops(), p.id_bytes());
        if hops == 0
            && let Some(InetAddress::Ip(me)) = hello.destination
        {
            self.learn_surface(now, source, local, from, me);
        }
        let moons = self
            .peers
            .get(&source)
            .map(|peer| Hello::parse_moons(&hello.decrypt_tail(&peer.key, &id)).unwrap_or_default())
            .unwrap_or_default();
        let mut updates = Vec::new();
        if let Some((pid, pts)) = hello.planet
            && pid != 0
            && pid == self.planet.id
            && self.planet.timestamp > pts
        {
            updates.extend(self.planet.to_bytes());
        }
        for m in moons.iter().filter(|m| m.kind == 127) {
            if let Some(ours) = self
                .moons
                .iter()
                .find(|w| w.id == m.id && w.timestamp > m.timestamp)
            {
                updates.extend(ours.to_bytes());
            }
        }
        let (major, minor, revision) = self.config.version;
        let mut body = Vec::new();
        OkHeader {
            in_re_verb: Verb::HELLO,
            in_re_packet_id: u64::from_be_bytes(id),
        }
        .encode(&mut body);
        OkHello {
            timestamp_echo: hello.timestamp,
            protocol_version: 12,
            major,
            minor,
            revision,
            your_address: Some(InetAddress::Ip(from)),
            world_updates: if updates.len() <= usize::from(u16::MAX) {
                updates
            } else {
                Vec::new()
            },
        }
        .encode(&mut body);
        // The reply is armored before the version is recorded: the first OK(HELLO) to a new peer
        // uses cipher 1, as 1.14 does. spec: vl1.md §3.6
        self.send_direct(now, source, Some(local), from, Verb::OK, &body);
        if let Some(peer) = self.peers.get_mut(&source) {
            peer.version = Some(RemoteVersion {
                protocol: hello.protocol_version,
                major: hello.major,
                minor: hello.minor,
                revision: hello.revision,
            });
        }
        self.received(now, source, local, from, hops, Verb::HELLO);
    }

    /// Dispatches an authenticated, decompressed packet.
    pub(crate) fn dispatch(
        &mut self,
        now: Timestamp,
        local: LocalSocket,
        from: SocketAddr,
        pkt: Vec<u8>,
    ) {
        let Ok(p) = Packet::new_checked(&pkt[..]) else {
            return;
        };
        let (source, hops, verb) = (p.source(), p.hops(), p.verb());
        let payload = p.payload();
        self.stats.packets_in[usize::from(verb.to_u8() & 0x1f)] += 1;
        if verb == Verb::ERROR
            && let Some(code) = payload.get(9)
        {
            self.stats.errors_in[usize::from(*code).min(16) % 16] += 1;
        }
        match verb {
            Verb::HELLO => {
                if let Ok(hello) = Hello::decode(payload)
                    && hello.identity.address() == source
                    && self
                        .peers
                        .get(&source)
                        .is_some_and(|peer| peer.identity == hello.identity)
                {
                    self.handle_hello(now, local, from, &pkt, hello);
                }
                return;
            }
            Verb::OK => {
                self.handle_ok(now, local, from, source, hops, payload);
                return;
            }
            Verb::ERROR => {
                self.handle_error(source, payload);
                self.handle_vl2_error(now, source, payload);
            }
            Verb::WHOIS => self.handle_whois(now, local, from, source, p.id(), payload),
            Verb::RENDEZVOUS => self.handle_rendezvous(now, local, source, payload),
            Verb::ECHO => self.handle_echo(now, local, from, source, p.id(), payload),
            Verb::PUSH_DIRECT_PATHS => self.handle_push_direct_paths(now, source, payload),
            Verb::USER_MESSAGE => {
                if let Ok(m) = UserMessage::decode(payload) {
                    self.events.push_back(Event::UserMessage {
                        from: source,
                        type_id: m.type_id,
                        data: m.data,
                    });
                }
            }
            Verb::FRAME
            | Verb::EXT_FRAME
            | Verb::MULTICAST_LIKE
            | Verb::NETWORK_CREDENTIALS
            | Verb::NETWORK_CONFIG_REQUEST
            | Verb::NETWORK_CONFIG
            | Verb::MULTICAST_GATHER
            | Verb::MULTICAST_FRAME => {
                let id = p.id();
                self.handle_vl2(now, local, from, source, hops, id, verb, payload, &pkt);
            }
            Verb::QOS_MEASUREMENT if hops == 0 => {
                let key = crate::bond::PathKey {
                    local,
                    remote: from,
                };
                self.bond_qos(now, source, key, payload);
            }
            // NOP, other multipath verbs and unknown verbs are accepted as authenticated traffic and
            // otherwise ignored here.
            _ => {}
        }
        self.received(now, source, local, from, hops, verb);
    }

    fn handle_ok(
        &mut self,
        now: Timestamp,
        local: LocalSocket,
        from: SocketAddr,
        source: Address,
        hops: u8,
        payload: &[u8],
    ) {
        let Ok(ok) = OkHeader::decode(payload) else {
            return;
        };
        if !self.expecting.expecting(ok.in_re_packet_id) {
            return;
        }
        let body = &payload[OkHeader::LEN..];
        let mut latency = None;
        match ok.in_re_verb {
            Verb::HELLO => {
                let Ok(o) = OkHello::decode(body) else { return };
                if o.protocol_version < 4 {
                    return;
                }
                if let Some(peer) = self.peers.get_mut(&source) {
                    peer.version = Some(RemoteVersion {
                        protocol: o.protocol_version,
                        major: o.major,
                        minor: o.minor,
                        revision: o.revision,
                    });
                }
                if hops == 0 {
                    latency =
                        Some(now.wrapping_sub(o.timestamp_echo as i64).clamp(0, 0xfffe) as u32);
                    if let Some(InetAddress::Ip(me)) = o.your_address {
                        self.learn_surface(now, source, local, from, me);
                    }
                }
                if !o.world_updates.is_empty() {
                    self.apply_world_updates(now, source, &o.world_updates);
                }
            }
            Verb::WHOIS => {
                if self.is_upstream(source)
                    && let Ok(ids) = ok_whois_identities(body)
                    && let Some(id) = ids.into_iter().next()
                    && self.add_peer(now, id)
                {
                    // Retry what waited for it at once. spec: vl1.md §8.4
                    self.retry_queues(now);
                }
            }
            Verb::NETWORK_CONFIG_REQUEST => self.handle_config_chunk(now, source, body, None),
            Verb::MULTICAST_GATHER | Verb::MULTICAST_FRAME => {
                self.handle_vl2_ok(now, ok.in_re_verb, body)
            }
            _ => {}
        }
        self.received(now, source, local, from, hops, Verb::OK);
        if let Some(l) = latency
            && let Some(path) = self.peers.get_mut(&source).and_then(|p| {
                p.paths
                    .iter_mut()
                    .find(|x| x.local == local && x.addr == from)
            })
        {
            path.record_latency(l);
        }
    }

    fn handle_error(&mut self, source: Address, payload: &[u8]) {
        let Ok(e) = ErrorHeader::decode(payload) else {
            return;
        };
        if e.code == ErrorCode::IDENTITY_COLLISION && self.is_upstream(source) {
            self.events.push_back(Event::IdentityCollision {
                reported_by: source,
            });
        }
    }

    /// Applies world updates from OK(HELLO); only upstreams and pending moon seeds may send
    /// them. spec: vl1.md §7.3, §7.6
    fn apply_world_updates(&mut self, now: Timestamp, source: Address, mut rest: &[u8]) {
        let from_seed = self.moon_seeds.iter().any(|(_, s)| *s == source);
        if !self.is_upstream(source) && !from_seed {
            return;
        }
        while let Ok((w, n)) = World::decode(rest) {
            rest = &rest[n..];
            match w.kind {
                WorldType::Planet => {
                    if World::should_replace(Some(&self.planet), &w) {
                        self.events.push_back(Event::PlanetUpdated {
                            bytes: w.to_bytes(),
                        });
                        self.planet = w;
                        self.add_root_peers(now);
                    }
                }
                WorldType::Moon => {
                    let current = self.moons.iter().position(|m| m.id == w.id);
                    let accept = match current {
                        Some(i) => World::should_replace(Some(&self.moons[i]), &w),
                        None => self.moon_seeds.iter().any(|(id, seed)| {
                            *id == w.id
                                && *seed == source
                                && w.roots.iter().any(|r| r.identity.address() == *seed)
                        }),
                    };
                    if accept {
                        self.events.push_back(Event::MoonUpdated {
                            id: w.id,
                            bytes: w.to_bytes(),
                        });
                        self.add_moon(now, w);
                    }
                }
            }
        }
    }

    /// WHOIS: answer with every identity we know (our own included); ask upstream for the rest.
    /// spec: vl1.md §5.5
    fn handle_whois(
        &mut self,
        now: Timestamp,
        local: LocalSocket,
        from: SocketAddr,
        source: Address,
        id: u64,
        payload: &[u8],
    ) {
        let Ok(w) = Whois::decode(payload) else {
            return;
        };
        let upstream = self.is_upstream_itself();
        if let Some(peer) = self.peers.get_mut(&source) {
            if !upstream && now - peer.last_whois_answered < WHOIS_ANSWER_GATE_MS {
                self.stats.rate_limited += 1;
                return;
            }
            peer.last_whois_answered = now;
        }
        let mut body = Vec::new();
        let mut found: Vec<Identity> = Vec::new();
        // 1.14 asks for one address and reads only the first identity of the answer; answering
        // at most a few keeps a forged request from being amplified.
        for a in w.addresses.iter().take(WHOIS_ANSWER_MAX) {
            if *a == self.address() {
                found.push(self.identity.to_public());
            } else if let Some(p) = self.peers.get(a) {
                found.push(p.identity.clone());
            } else if !upstream {
                self.whois(now, *a);
            }
        }
        if found.is_empty() {
            return;
        }
        OkHeader {
            in_re_verb: Verb::WHOIS,
            in_re_packet_id: id,
        }
        .encode(&mut body);
        for id in found {
            id.write_binary(&mut body, false);
        }
        self.send_direct(now, source, Some(local), from, Verb::OK, &body);
    }

    /// RENDEZVOUS from an upstream: punch (TTL-2 junk) and probe the named peer's address.
    /// spec: vl1.md §5.6
    fn handle_rendezvous(
        &mut self,
        now: Timestamp,
        local: LocalSocket,
        source: Address,
        payload: &[u8],
    ) {
        if !self.is_upstream(source) {
            return;
        }
        let Ok(r) = Rendezvous::decode(payload) else {
            return;
        };
        if r.address.port() == 0 || !self.path_allowed(r.with, r.address) {
            return;
        }
        if !self.peers.contains_key(&r.with) {
            // 1.14 ignores a RENDEZVOUS naming a peer it does not know yet, which is common: the
            // relayed packet that made the root unite us is still waiting for its WHOIS. weft
            // keeps it briefly and punches as soon as the identity arrives (no wire change).
            if self.pending_rendezvous.len() < super::PENDING_RENDEZVOUS_MAX {
                self.pending_rendezvous
                    .insert(r.with, (local, r.address, now));
            }
            self.whois(now, r.with);
            return;
        }
        self.punch(now, local, r.with, r.address);
    }

    /// Opens the local NAT toward `addr` (TTL-2 junk, IPv4) and probes the peer there.
    /// spec: vl1.md §5.6
    pub(crate) fn punch(
        &mut self,
        now: Timestamp,
        local: LocalSocket,
        peer: Address,
        addr: SocketAddr,
    ) {
        if addr.is_ipv4() {
            let mut junk = [0u8; 4];
            rand_core::RngCore::fill_bytes(&mut self.rng, &mut junk);
            self.transmits.push_back(crate::Transmit {
                local: Some(local),
                to: addr,
                data: junk.to_vec(),
                ttl: Some(2),
            });
        }
        // The probe follows a moment later. The root sends both RENDEZVOUS at once; without the
        // pause our probe can reach the other side's NAT before that side has opened it, and a
        // Linux NAT then binds the flow to the router itself and remaps the peer's own outgoing
        // port, so the punch fails until the next attempt. weft-only timing; nothing on the
        // wire changes. spec: vl1.md §5.6
        if self.pending_probes.len() < super::PENDING_RENDEZVOUS_MAX {
            self.pending_probes
                .push((now + super::PUNCH_PROBE_DELAY_MS, peer, local, addr));
        }
    }

    fn handle_echo(
        &mut self,
        now: Timestamp,
        local: LocalSocket,
        from: SocketAddr,
        source: Address,
        id: u64,
        payload: &[u8],
    ) {
        let g = self.path_gates.entry((local, from)).or_default();
        g.last_used = now;
        if now - g.last_echo_answered < ECHO_GATE_MS {
            self.stats.rate_limited += 1;
            return;
        }
        g.last_echo_answered = now;
        let mut body = Vec::new();
        OkHeader {
            in_re_verb: Verb::ECHO,
            in_re_packet_id: id,
        }
        .encode(&mut body);
        body.extend_from_slice(payload);
        self.send_direct(now, source, Some(local), from, Verb::OK, &body);
    }

    /// PUSH_DIRECT_PATHS: probe the advertised addresses, within the rate gates.
    /// spec: vl1.md §5.8
    fn handle_push_direct_paths(&mut self, now: Timestamp, source: Address, payload: &[u8]) {
        let Some(peer) = self.peers.get_mut(&source) else {
            return;
        };
        if now - peer.last_push_direct_paths <= PDP_WINDOW_MS {
            peer.push_direct_paths_count = peer.push_direct_paths_count.saturating_add(1);
        } else {
            peer.push_direct_paths_count = 0;
        }
        peer.last_push_direct_paths = now;
        if peer.push_direct_paths_count >= PDP_LIMIT {
            self.stats.rate_limited += 1;
            return;
        }
        let Ok(pdp) = PushDirectPaths::decode(payload) else {
            return;
        };
        let mut per_scope: std::collections::HashMap<(IpScope, bool), usize> = Default::default();
        for r in pdp.records {
            let Some(addr) = r.address else { continue };
            if r.flags & weft_wire::inet::PathRecord::FLAG_FORGET != 0 {
                continue;
            }
            let known = self
                .peers
                .get(&source)
                .is_some_and(|p| p.paths.iter().any(|x| x.addr == addr && !x.expired(now)));
            if known || !self.path_allowed(source, addr) {
                continue;
            }
            let n = per_scope
                .entry((ip_scope(addr.ip()), addr.is_ipv4()))
                .or_default();
            if *n >= PDP_PER_SCOPE {
                continue;
            }
            *n += 1;
            self.send_probe(now, source, None, addr);
        }
    }

    /// Path learning after an authenticated packet. spec: vl1.md §8.6
    pub(crate) fn received(
        &mut self,
        now: Timestamp,
        source: Address,
        local: LocalSocket,
        from: SocketAddr,
        hops: u8,
        verb: Verb,
    ) {
        let path_ok = hops == 0 && self.path_allowed(source, from);
        self.push_direct_paths_if_due(now, source, local, from, hops);
        let Some(peer) = self.peers.get_mut(&source) else {
            return;
        };
        peer.last_receive = now;
        if nontrivial(verb) {
            peer.last_nontrivial_receive = now;
        }
        if self.is_upstream(source) {
            self.update_online(now);
        }
        if hops != 0 {
            return;
        }
        let Some(peer) = self.peers.get_mut(&source) else {
            return;
        };
        if let Some(p) = peer
            .paths
            .iter_mut()
            .find(|p| p.local == local && p.addr == from)
        {
            p.last_receive = now;
            return;
        }
        if peer
            .paths
            .iter()
            .any(|p| p.local == local && p.addr.ip() == from.ip() && p.alive(now))
            || !path_ok
        {
            return;
        }
        if verb == Verb::OK {
            peer.learn_path(PeerPath::new(local, from, now), now);
            self.events
                .push_back(Event::PathsChanged { address: source });
            if self.config.bonding.is_some() {
                self.sync_bond(now, source);
                let key = crate::bond::PathKey {
                    local,
                    remote: from,
                };
                if let Some(b) = self.bonds.get_mut(&source) {
                    b.on_received(now, &key, 0, verb);
                }
            }
        } else {
            let g = self.path_gates.entry((local, from)).or_default();
            g.last_used = now;
            if now - g.last_hello_confirm >= CONFIRM_GATE_MS {
                g.last_hello_confirm = now;
                self.send_hello(now, source, Some(local), from);
            }
        }
    }

    /// The path filter: a usable address, and for upstreams one of their stable endpoint IPs.
    /// spec: vl1.md §8.7
    pub(crate) fn path_allowed(&self, peer: Address, addr: SocketAddr) -> bool {
        if !is_usable_path(addr.ip()) {
            return false;
        }
        if self.is_upstream(peer) {
            let eps = self.stable_endpoints(peer);
            return eps.is_empty() || eps.iter().any(|e| e.ip() == addr.ip());
        }
        true
    }

    /// External-address learning from HELLO / OK(HELLO). spec: vl1.md §8.10
    fn learn_surface(
        &mut self,
        now: Timestamp,
        reporter: Address,
        local: LocalSocket,
        reporter_addr: SocketAddr,
        me: SocketAddr,
    ) {
        let scope = ip_scope(me.ip());
        if scope != ip_scope(reporter_addr.ip())
            || matches!(
                scope,
                IpScope::None | IpScope::Loopback | IpScope::Multicast
            )
        {
            return;
        }
        let key = (reporter, local, reporter_addr);
        let changed = self
            .surface
            .get(&key)
            .is_some_and(|(old, t)| now - *t < super::SURFACE_TIMEOUT_MS && old.ip() != me.ip());
        self.surface.insert(key, (me, now));
        if changed && self.is_upstream(reporter) {
            self.surface
                .retain(|(r, _, _), (a, _)| *r == reporter || ip_scope(a.ip()) != scope);
            let v4 = me.is_ipv4();
            let mut probes = Vec::new();
            for (a, p) in self.peers.iter_mut() {
                for path in p
                    .paths
                    .iter_mut()
                    .filter(|x| ip_scope(x.addr.ip()) == scope && x.addr.is_ipv4() == v4)
                {
                    path.last_receive = 0;
                    probes.push((*a, path.local, path.addr));
                }
            }
            for (a, l, addr) in probes {
                self.send_probe(now, a, Some(l), addr);
                self.events.push_back(Event::PathsChanged { address: a });
            }
        }
    }

    /// Our external addresses as reported by others (for PUSH_DIRECT_PATHS).
    pub fn external_addresses(&self) -> Vec<SocketAddr> {
        let mut v: Vec<SocketAddr> = self.surface.values().map(|(a, _)| *a).collect();
        v.sort();
        v.dedup();
        v
    }
}
