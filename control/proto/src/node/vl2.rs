//! VL2 on the member side: joining, config requests and assembly, credentials, the gate, and
//! receiving frames, multicast LIKEs, GATHERs and multicast frames. Sending frames from the
//! local port lives in `vl2_tx.rs`. spec: vl2.md §7–§9, §13, §14, §16, §18

use std::net::SocketAddr;
use std::sync::Arc;

use weft_wire::credential::{Com, NetworkCredentials};
use weft_wire::dictionary::Dictionary;
use weft_wire::mac::Mac;
use weft_wire::netconf::{NetworkConfig, RequestMetadata};
use weft_wire::packet::Verb;
use weft_wire::verbs::vl2::{
    ConfigChunk, ExtFrame, Frame, MulticastFrame, MulticastGather, MulticastGroup,
    NetworkConfigRequest, OkMulticastFrame, OkMulticastGather, multicast_likes,
};
use weft_wire::verbs::{ErrorCode, ErrorHeader, OkHeader};
use weft_wire::{Address, Identity, NetworkId};

use super::Node;
use crate::network::membership::Accepted;
use crate::network::multicast::{self, LIKE_PERIOD_MS};
use crate::network::{CONFIG_REFRESH_MS, Network, NetworkInfo, NetworkStatus};
use crate::{Event, LocalSocket, Timestamp};

/// Largest network-config dictionary. spec: vl2.md §9.3
pub(crate) const MAX_CONFIG_LEN: usize = 484_520;
/// Frames failing the gate are held this long for credentials to arrive. spec: vl2.md §7
const HOLD_MS: i64 = 5_000;
/// Held packets at most (weft bound).
const HOLD_MAX: usize = 64;
/// Re-push our credentials to a member after this long. spec: vl2.md §13.6
const CREDENTIAL_REPUSH_MS: i64 = 500_000;
/// NEED_MEMBERSHIP_CERTIFICATE answers at most this often per member.
const CERT_REQUEST_GATE_MS: i64 = 1_000;
/// A local controller's authorization lets a member LIKE/GATHER this long. spec: vl2.md §7.3
const CONTROLLER_AUTH_MS: i64 = 180_000;
/// The window of the NETWORK_CREDENTIALS rate gate per sender (1.14: one packet per 1 s).
/// spec: vl2.md §7.6
const CREDENTIALS_GATE_MS: i64 = 1000;
/// NETWORK_CREDENTIALS packets taken per sender per [`CREDENTIALS_GATE_MS`] window. 1.14 takes
/// one; weft relaxes it (spec: vl2.md §21 "may relax") so that a push of several packets and a
/// push after each of two quick config changes both arrive, while a flood is still cut off.
const CREDENTIALS_PER_WINDOW: u32 = 16;
/// Room for one VL2 payload (a packet is at most 10,024 bytes; header and slack).
pub(crate) const MAX_VL2_PAYLOAD: usize = 9_700;

/// A packet held because its sender failed the gate.
#[derive(Debug)]
pub(crate) struct Held {
    pub(crate) since: Timestamp,
    pub(crate) local: LocalSocket,
    pub(crate) from: SocketAddr,
    pub(crate) packet: Vec<u8>,
}

/// What a gather reply answers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GatherReply {
    pub(crate) in_re: Verb,
    pub(crate) packet_id: u64,
    pub(crate) nwid: NetworkId,
    pub(crate) group: MulticastGroup,
}

/// What the inbound path decided about a frame.
pub(crate) enum GateResult {
    Pass,
    /// Failed: answer NEED_MEMBERSHIP_CERTIFICATE and hold.
    Fail,
    /// Not joined or not configured: ignore.
    Ignore,
}

impl Node {
    // ---------------------------------------------------------------- public API

    /// Joins a network (idempotent). `cached` is the dictionary saved in
    /// `networks.d/<nwid>.conf` by an earlier run, used until a fresh config arrives.
    /// spec: vl2.md §18.1
    pub fn join(&mut self, now: Timestamp, network_id: NetworkId, cached: Option<&[u8]>) {
        if self.networks.contains_key(&network_id) {
            return;
        }
        self.networks.insert(network_id, Network::new(network_id));
        if let Some(bytes) = cached
            && !bytes.iter().all(|b| b.is_ascii_whitespace())
        {
            self.apply_config_bytes(now, network_id, bytes, true);
            // a cached config does not count as fresh: request at once
            if let Some(n) = self.networks.get_mut(&network_id) {
                n.last_config = i64::MIN / 2;
            }
        }
        self.network_tick(now, network_id);
    }

    /// Leaves a network; `false` if it was not joined. spec: vl2.md §18.3
    pub fn leave(&mut self, network_id: NetworkId) -> bool {
        self.networks.remove(&network_id).is_some()
    }

    /// Joined networks, ascending id.
    pub fn networks(&self) -> Vec<NetworkInfo> {
        self.networks.values().map(Network::info).collect()
    }

    /// One joined network.
    pub fn network(&self, network_id: NetworkId) -> Option<NetworkInfo> {
        self.networks.get(&network_id).map(Network::info)
    }

    /// The driver could (not) create the network's virtual port. spec: vl2.md §14 (PORT_ERROR)
    pub fn set_port_error(&mut self, network_id: NetworkId, error: bool) {
        if let Some(n) = self.networks.get_mut(&network_id) {
            n.port_error = error;
        }
    }

    /// The multicast groups the local host subscribes to on a network (the OS list plus the
    /// address-resolution groups of its IPs). New groups are announced at once. spec: vl2.md §3.2
    pub fn set_multicast_subscriptions(
        &mut self,
        now: Timestamp,
        network_id: NetworkId,
        mut groups: Vec<MulticastGroup>,
    ) {
        groups.sort();
        groups.dedup();
        let Some(n) = self.networks.get_mut(&network_id) else {
            return;
        };
        let new: Vec<MulticastGroup> = groups
            .iter()
            .filter(|g| !n.multicast.subscriptions.contains(g))
            .copied()
            .collect();
        n.multicast.subscriptions = groups;
        if !new.is_empty() {
            self.announce_groups(now, network_id, &new, true);
        }
    }

    /// Notes that the local controller sent `member` a config (lets it LIKE and GATHER here
    /// for 180 s). spec: vl2.md §7.3
    pub fn note_controller_authorized(
        &mut self,
        now: Timestamp,
        network_id: NetworkId,
        member: Address,
    ) {
        if self.controller_auth.len() >= 65_536 {
            self.controller_auth
                .retain(|_, t| now - *t < CONTROLLER_AUTH_MS);
        }
        self.controller_auth.insert((network_id, member), now);
    }

    /// Sends a config reply or push from the local controller: one OK(NETWORK_CONFIG_REQUEST)
    /// per chunk when `in_re` is the request's packet id, NETWORK_CONFIG otherwise. A reply to
    /// ourselves (request id `u64::MAX`) is applied directly. spec: vl2.md §9.2, controller.md §4.9
    pub fn send_network_config(
        &mut self,
        now: Timestamp,
        to: Address,
        in_re: Option<u64>,
        chunks: &[Vec<u8>],
    ) {
        if to == self.address() {
            for c in chunks {
                self.handle_config_chunk(now, to, c, None);
            }
            return;
        }
        for c in chunks {
            match in_re {
                Some(id) => {
                    let mut body = Vec::with_capacity(9 + c.len());
                    OkHeader {
                        in_re_verb: Verb::NETWORK_CONFIG_REQUEST,
                        in_re_packet_id: id,
                    }
                    .encode(&mut body);
                    body.extend_from_slice(c);
                    self.send(now, to, Verb::OK, &body);
                }
                None => self.send(now, to, Verb::NETWORK_CONFIG, c),
            }
        }
    }

    /// Sends an ERROR in reply to a NETWORK_CONFIG_REQUEST from the local controller;
    /// `data` follows the error code (the network id, and more for some codes). A reply to
    /// ourselves is applied directly.
    pub fn send_network_config_error(
        &mut self,
        now: Timestamp,
        to: Address,
        in_re: u64,
        code: ErrorCode,
        data: &[u8],
    ) {
        let mut body = Vec::with_capacity(10 + data.len());
        ErrorHeader {
            in_re_verb: Verb::NETWORK_CONFIG_REQUEST,
            in_re_packet_id: in_re,
            code,
        }
        .encode(&mut body);
        body.extend_from_slice(data);
        if to == self.address() {
            let me = self.address();
            self.handle_vl2_error(now, me, &body);
        } else {
            self.send(now, to, Verb::ERROR, &body);
        }
    }

    /// Sends a NETWORK_CREDENTIALS payload built by the local controller (revocations).
    pub fn send_network_credentials(&mut self, now: Timestamp, to: Address, payload: &[u8]) {
        if to == self.address() {
            let me = self.address();
            self.handle_credentials(now, me, payload);
        } else {
            self.send(now, to, Verb::NETWORK_CREDENTIALS, payload);
        }
    }

    // ---------------------------------------------------------------- timers

    /// The 5-second network tick: config requests, LIKE announcements. spec: vl2.md §18.1, §16.2
    pub(crate) fn network_tick(&mut self, now: Timestamp, nwid: NetworkId) {
        let Some(n) = self.networks.get(&nwid) else {
            return;
        };
        let configured = n.config.is_some() && n.failure.is_none();
        if !configured || now - n.last_config >= CONFIG_REFRESH_MS {
            self.request_config(now, nwid);
        }
        self.announce_all(now, nwid);
    }

    pub(crate) fn networks_tick(&mut self, now: Timestamp) {
        let ids: Vec<NetworkId> = self.networks.keys().copied().collect();
        for id in ids {
            self.network_tick(now, id);
        }
    }

    pub(crate) fn networks_housekeeping(&mut self, now: Timestamp) {
        for n in self.networks.values_mut() {
            n.multicast.expire(now);
            if let Some(c) = n.config.clone() {
                for m in n.members.values_mut() {
                    m.clean(&c);
                }
            }
        }
        self.controller_auth
            .retain(|_, t| now - *t < CONTROLLER_AUTH_MS);
        self.credential_gate.retain(|_, (t, _)| now - *t < 60_000);
    }

    /// Retries held packets (credentials may have arrived); drops old ones.
    pub(crate) fn retry_held(&mut self, now: Timestamp) {
        let held: Vec<Held> = self.held.drain(..).collect();
        for h in held {
            if now - h.since < HOLD_MS {
                self.retrying_held = Some(h.since);
                self.dispatch(now, h.local, h.from, h.packet);
                self.retrying_held = None;
            } else {
                self.stats.queue_drops += 1;
            }
        }
    }

    // ---------------------------------------------------------------- config

    fn request_config(&mut self, now: Timestamp, nwid: NetworkId) {
        let Some(n) = self.networks.get_mut(&nwid) else {
            return;
        };
        n.last_request = now;
        // Ad-hoc networks build their own config. spec: vl2.md §1.2
        if nwid.0 >> 56 == 0xff {
            match NetworkConfig::adhoc(nwid, self.identity.address(), now) {
                Ok(Some(c)) => {
                    let dict = c.to_dictionary().to_bytes();
                    if n.config.is_none() {
                        self.install_config(now, nwid, c, dict, false);
                    }
                }
                Ok(None) => {}
                Err(_) => self.set_failure(nwid, Some(NetworkStatus::NotFound)),
            }
            return;
        }
        let (revision, timestamp) = n
            .config
            .as_ref()
            .map(|c| (c.revision, c.timestamp as u64))
            .unwrap_or((0, 0));
        let (major, minor, rev) = self.config.version;
        // vendor 1 (ZeroTier): weft presents itself as a compatible 1.14 client
        let metadata =
            RequestMetadata::new(1, u64::from(major), u64::from(minor), u64::from(rev)).to_bytes();
        let controller = nwid.controller();
        if controller == self.address() {
            self.events.push_back(Event::ConfigRequest {
                network_id: nwid,
                requester: self.identity.to_public(),
                packet_id: u64::MAX,
                metadata,
                physical: None,
            });
            return;
        }
        let mut payload = Vec::with_capacity(26 + metadata.len());
        NetworkConfigRequest {
            network_id: nwid,
            metadata: &metadata,
            revision,
            timestamp,
        }
        .encode(&mut payload);
        self.send(now, controller, Verb::NETWORK_CONFIG_REQUEST, &payload);
    }

    fn controller_identity(&self, nwid: NetworkId) -> Option<Identity> {
        let c = nwid.controller();
        if c == self.address() {
            Some(self.identity.to_public())
        } else {
            self.peers.get(&c).map(|p| p.identity.clone())
        }
    }

    /// A config chunk from OK(NETWORK_CONFIG_REQUEST) (`push_id` None) or NETWORK_CONFIG
    /// (`push_id` = its packet id). spec: vl2.md §9.3
    pub(crate) fn handle_config_chunk(
        &mut self,
        now: Timestamp,
        source: Address,
        payload: &[u8],
        push_id: Option<u64>,
    ) {
        let Ok(chunk) = ConfigChunk::decode(payload) else {
            return;
        };
        let nwid = chunk.network_id;
        let Some(controller) = self.controller_identity(nwid) else {
            return;
        };
        let from_controller = source == controller.address();
        let Some(n) = self.networks.get_mut(&nwid) else {
            return;
        };
        let update_id = chunk.signed.map(|s| s.update_id).unwrap_or(0);
        let Ok(Some(dict)) = n.assembler.add(&chunk, &controller, from_controller, now) else {
            return;
        };
        if self.apply_config_bytes(now, nwid, &dict, true)
            && let Some(id) = push_id
        {
            // The OK names ECHO, as 1.14 does **[quirk]**. spec: vl2.md §7.8
            let mut body = Vec::with_capacity(25);
            OkHeader {
                in_re_verb: Verb::ECHO,
                in_re_packet_id: id,
            }
            .encode(&mut body);
            body.extend_from_slice(&nwid.0.to_be_bytes());
            body.extend_from_slice(&update_id.to_be_bytes());
            self.send(now, source, Verb::OK, &body);
        }
    }

    /// Parses and applies a config dictionary; `true` if it was accepted (new or identical).
    /// spec: vl2.md §18.2
    fn apply_config_bytes(
        &mut self,
        now: Timestamp,
        nwid: NetworkId,
        bytes: &[u8],
        persist: bool,
    ) -> bool {
        let Ok(d) = Dictionary::parse_with_capacity(bytes, MAX_CONFIG_LEN) else {
            return false;
        };
        let Ok(c) = NetworkConfig::from_dictionary(&d) else {
            return false;
        };
        if c.network_id != nwid || c.issued_to != self.address() {
            return false;
        }
        self.install_config(now, nwid, c, bytes.to_vec(), persist);
        true
    }

    fn install_config(
        &mut self,
        now: Timestamp,
        nwid: NetworkId,
        c: NetworkConfig,
        bytes: Vec<u8>,
        persist: bool,
    ) {
        let Some(n) = self.networks.get_mut(&nwid) else {
            return;
        };
        let before = n.status();
        n.last_config = now;
        n.failure = None;
        n.authentication_url = None;
        if n.config.is_some() && n.config_bytes == bytes {
            self.status_event(nwid, before);
            return;
        }
        let c = Arc::new(c);
        for m in n.members.values_mut() {
            m.clean(&c);
        }
        n.config = Some(c.clone());
        n.config_bytes = bytes.clone();
        self.events.push_back(Event::NetworkConfigured {
            network_id: nwid,
            config: c,
            dictionary: persist.then_some(bytes),
        });
        self.status_event(nwid, before);
        // new config: our subscriptions go out again at once
        if let Some(n) = self.networks.get_mut(&nwid) {
            n.last_upstream_likes = i64::MIN / 2;
            for m in n.members.values_mut() {
                m.last_like_sent = i64::MIN / 2;
            }
        }
        self.announce_all(now, nwid);
        // New credentials (tags, capabilities, COM) go at once to the members we talk to, not
        // with the next frame: a rule that depends on our new tag may be what stops that frame
        // on the other side (and a data plane sends most frames without asking us).
        let recent: Vec<Address> = self
            .networks
            .get(&nwid)
            .map(|n| {
                n.members
                    .iter()
                    .filter(|(_, m)| {
                        m.last_pushed
                            .is_some_and(|(t, _)| now - t <= CREDENTIAL_REPUSH_MS)
                    })
                    .map(|(a, _)| *a)
                    .collect()
            })
            .unwrap_or_default();
        for a in recent {
            if self.gate_quiet(nwid, a) {
                self.push_credentials(now, nwid, a);
            }
        }
    }

    fn set_failure(&mut self, nwid: NetworkId, failure: Option<NetworkStatus>) {
        let Some(n) = self.networks.get_mut(&nwid) else {
            return;
        };
        let before = n.status();
        n.failure = failure;
        self.status_event(nwid, before);
    }

    fn status_event(&mut self, nwid: NetworkId, before: NetworkStatus) {
        if let Some(n) = self.networks.get(&nwid)
            && n.status() != before
        {
            self.events.push_back(Event::NetworkStatus {
                network_id: nwid,
                status: n.status(),
            });
        }
    }

    /// ERRORs that concern networks. spec: vl2.md §8
    pub(crate) fn handle_vl2_error(&mut self, now: Timestamp, source: Address, payload: &[u8]) {
        let Ok(e) = ErrorHeader::decode(payload) else {
            return;
        };
        let data = &payload[ErrorHeader::LEN..];
        let Some(nwid) = NetworkId::from_slice(data) else {
            return;
        };
        if !self.networks.contains_key(&nwid) {
            return;
        }
        let from_controller = source == nwid.controller();
        match e.code {
            ErrorCode::OBJ_NOT_FOUND | ErrorCode::UNSUPPORTED_OPERATION
                if from_controller && e.in_re_verb == Verb::NETWORK_CONFIG_REQUEST =>
            {
                self.set_failure(nwid, Some(NetworkStatus::NotFound));
            }
            ErrorCode::NETWORK_ACCESS_DENIED if from_controller => {
                self.set_failure(nwid, Some(NetworkStatus::AccessDenied));
            }
            ErrorCode::NETWORK_AUTHENTICATION_REQUIRED if from_controller => {
                self.handle_auth_required(nwid, &data[8..]);
            }
            ErrorCode::NEED_MEMBERSHIP_CERTIFICATE => {
                let Some(n) = self.networks.get_mut(&nwid) else {
                    return;
                };
                let Some(c) = n.config.clone() else { return };
                if c.com.is_none() {
                    return;
                }
                let m = n.member(source);
                let changed = m.last_pushed.is_none_or(|(_, ts)| ts != c.timestamp);
                if changed || now - m.last_cert_request >= CERT_REQUEST_GATE_MS {
                    m.last_cert_request = now;
                    self.push_credentials(now, nwid, source);
                }
            }
            ErrorCode::UNWANTED_MULTICAST if data.len() >= 18 && self.gate_quiet(nwid, source) => {
                let group = MulticastGroup {
                    mac: Mac([data[8], data[9], data[10], data[11], data[12], data[13]]),
                    adi: u32::from_be_bytes([data[14], data[15], data[16], data[17]]),
                };
                if let Some(n) = self.networks.get_mut(&nwid) {
                    n.multicast.remove(group, source);
                }
            }
            _ => {}
        }
    }

    /// spec: vl2.md §8 (authentication-required dictionary)
    fn handle_auth_required(&mut self, nwid: NetworkId, rest: &[u8]) {
        if rest.len() <= 2 {
            self.set_failure(nwid, Some(NetworkStatus::AuthenticationRequired));
            return;
        }
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let Some(dict) = rest.get(2..2 + len) else {
            return;
        };
        let Ok(d) = Dictionary::parse_with_capacity(dict, 8192) else {
            return;
        };
        let version = d.get_u64("aV").unwrap_or(0);
        let url = if version == 0 {
            d.get_str("aU").unwrap_or_default()
        } else {
            d.get_str("aCU").unwrap_or_default()
        };
        if version == 0 && url.is_empty() {
            // spec: vl2.md §8 — an empty v0 URL changes nothing [verified]
            return;
        }
        self.set_failure(nwid, Some(NetworkStatus::AuthenticationRequired));
        if let Some(n) = self.networks.get_mut(&nwid) {
            n.authentication_url = Some(url.chars().take(2047).collect());
        }
    }

    // ---------------------------------------------------------------- gate and credentials

    /// The gate without side effects. spec: vl2.md §14
    pub(crate) fn gate_quiet(&self, nwid: NetworkId, peer: Address) -> bool {
        let Some(n) = self.networks.get(&nwid) else {
            return false;
        };
        let Some(c) = &n.config else { return false };
        if c.is_public() {
            return true;
        }
        let Some(identity) = self.peers.get(&peer).map(|p| &p.identity) else {
            return false;
        };
        n.members
            .get(&peer)
            .is_some_and(|m| m.com_agrees(c.com.as_ref(), identity))
    }

    /// The gate; on a pass, sends our LIKEs to the peer if it has not had them for 60 s.
    pub(crate) fn gate(&mut self, now: Timestamp, nwid: NetworkId, peer: Address) -> GateResult {
        match self.networks.get(&nwid) {
            Some(n) if n.config.is_some() => {}
            _ => return GateResult::Ignore,
        }
        if !self.gate_quiet(nwid, peer) {
            return GateResult::Fail;
        }
        let due = self
            .networks
            .get_mut(&nwid)
            .map(|n| {
                let m = n.member(peer);
                let due = now - m.last_like_sent >= LIKE_PERIOD_MS;
                if due {
                    m.last_like_sent = now;
                }
                due
            })
            .unwrap_or(false);
        if due {
            let groups = self.our_groups(nwid);
            self.send_likes(now, nwid, peer, &groups);
        }
        GateResult::Pass
    }

    /// Answers a gate failure: ERROR(NEED_MEMBERSHIP_CERTIFICATE) and hold the packet.
    pub(crate) fn gate_failed(
        &mut self,
        now: Timestamp,
        verb: Verb,
        packet_id: u64,
        source: Address,
        nwid: NetworkId,
        held: Option<Held>,
    ) {
        let mut body = Vec::with_capacity(18);
        ErrorHeader {
            in_re_verb: verb,
            in_re_packet_id: packet_id,
            code: ErrorCode::NEED_MEMBERSHIP_CERTIFICATE,
        }
        .encode(&mut body);
        body.extend_from_slice(&nwid.0.to_be_bytes());
        self.send(now, source, Verb::ERROR, &body);
        if let Some(h) = held {
            if self.held.len() >= HOLD_MAX {
                self.held.pop_front();
                self.stats.queue_drops += 1;
            }
            self.held.push_back(h);
        }
    }

    /// Pushes our credentials to `peer` if it never had them since our config changed or the
    /// last push was over 500 s ago. spec: vl2.md §13.6
    pub(crate) fn push_credentials_if_needed(
        &mut self,
        now: Timestamp,
        nwid: NetworkId,
        peer: Address,
    ) {
        let Some(n) = self.networks.get_mut(&nwid) else {
            return;
        };
        let Some(c) = n.config.clone() else { return };
        let m = n.member(peer);
        let due = match m.last_pushed {
            None => true,
            Some((t, ts)) => ts != c.timestamp || now - t > CREDENTIAL_REPUSH_MS,
        };
        if due {
            self.push_credentials(now, nwid, peer);
        }
    }

    /// Sends NETWORK_CREDENTIALS with our COM, capabilities, tags and COOs, in as many packets
    /// as needed. spec: vl2.md §7.6, §13.6
    pub(crate) fn push_credentials(&mut self, now: Timestamp, nwid: NetworkId, peer: Address) {
        let Some(n) = self.networks.get_mut(&nwid) else {
            return;
        };
        let Some(c) = n.config.clone() else { return };
        n.member(peer).last_pushed = Some((now, c.timestamp));
        for payload in credentials_payloads(&c) {
            self.send(now, peer, Verb::NETWORK_CREDENTIALS, &payload);
        }
    }

    /// NETWORK_CREDENTIALS. Credentials are routed to the networks they name; an unknown
    /// signer holds the packet (WHOIS) for a retry. spec: vl2.md §7.6
    pub(crate) fn handle_credentials(&mut self, now: Timestamp, source: Address, p: &[u8]) -> bool {
        if source != self.address() {
            let w = self
                .credential_gate
                .entry(source)
                .or_insert((i64::MIN / 2, 0));
            if now - w.0 >= CREDENTIALS_GATE_MS {
                *w = (now, 0);
            }
            if w.1 >= CREDENTIALS_PER_WINDOW && self.retrying_held.is_none() {
                return true;
            }
            w.1 += 1;
        }
        let Ok(parsed) = NetworkCredentials::decode(p) else {
            return true;
        };
        // every signer (the controllers of the networks named) must be known
        let mut missing = Vec::new();
        for nwid in credential_networks(&parsed) {
            if self.networks.contains_key(&nwid) && self.controller_identity(nwid).is_none() {
                missing.push(nwid.controller());
            }
        }
        if !missing.is_empty() {
            for a in missing {
                self.whois(now, a);
            }
            return false;
        }
        let mut accepted_any = false;
        for com in parsed.coms {
            let (nwid, to) = (com.network_id(), com.issued_to());
            accepted_any |= self.offer_credential(nwid, to, |m, ctl| m.add_com(com, ctl));
        }
        if !parsed.capabilities.is_empty() {
            // custody chains may name other members: look them up among known peers
            let known: std::collections::HashMap<Address, Identity> = self
                .peers
                .iter()
                .map(|(a, p)| (*a, p.identity.clone()))
                .collect();
            let me = self.identity.to_public();
            let lookup = move |a: Address| {
                if a == me.address() {
                    Some(me.clone())
                } else {
                    known.get(&a).cloned()
                }
            };
            for cap in parsed.capabilities {
                let (nwid, to) = (cap.network_id(), cap.issued_to());
                accepted_any |=
                    self.offer_credential(nwid, to, |m, ctl| m.add_capability(cap, ctl, &lookup));
            }
        }
        for tag in parsed.tags {
            let (nwid, to) = (tag.network_id(), tag.issued_to());
            accepted_any |= self.offer_credential(nwid, to, |m, ctl| m.add_tag(tag, ctl));
        }
        for rev in parsed.revocations {
            let nwid = rev.network_id();
            let Some(ctl) = self.controller_identity(nwid) else {
                continue;
            };
            if !rev.verify(&ctl) {
                continue;
            }
            let Some(n) = self.networks.get_mut(&nwid) else {
                continue;
            };
            if n.member(rev.target()).apply_revocation(&rev) == Accepted::New
                && rev.fast_propagate()
            {
                // Re-send to everyone we hold membership for. spec: vl2.md §13.4
                let me = self.identity.address();
                let targets: Vec<Address> = n
                    .members
                    .keys()
                    .copied()
                    .filter(|a| *a != source && *a != ctl.address() && *a != me)
                    .collect();
                let mut payload = vec![0u8, 0, 0, 0, 0, 0, 1];
                rev.encode(&mut payload);
                payload.extend_from_slice(&[0, 0]);
                for t in targets {
                    self.send(now, t, Verb::NETWORK_CREDENTIALS, &payload);
                }
            }
        }
        for coo in parsed.coos {
            let (nwid, to) = (coo.network_id(), coo.issued_to());
            accepted_any |= self.offer_credential(nwid, to, |m, ctl| m.add_coo(coo, ctl));
        }
        if accepted_any && !self.held.is_empty() && self.retrying_held.is_none() {
            self.retry_held(now);
        }
        true
    }

    // ---------------------------------------------------------------- multicast announcements

    /// Everything we announce on a network.
    pub(crate) fn our_groups(&self, nwid: NetworkId) -> Vec<MulticastGroup> {
        self.networks
            .get(&nwid)
            .map(|n| {
                n.multicast
                    .all_groups(n.config.as_ref().is_some_and(|c| c.broadcast_enabled()))
            })
            .unwrap_or_default()
    }

    /// Sends MULTICAST_LIKEs for `groups`, split to fit packets.
    pub(crate) fn send_likes(
        &mut self,
        now: Timestamp,
        nwid: NetworkId,
        to: Address,
        groups: &[MulticastGroup],
    ) {
        if to == self.address() {
            return;
        }
        for part in groups.chunks(MAX_VL2_PAYLOAD / 18) {
            let mut p = Vec::with_capacity(part.len() * 18);
            for g in part {
                p.extend_from_slice(&nwid.0.to_be_bytes());
                p.extend_from_slice(&g.mac.0);
                p.extend_from_slice(&g.adi.to_be_bytes());
            }
            if !p.is_empty() {
                self.send(now, to, Verb::MULTICAST_LIKE, &p);
            }
        }
    }

    /// Upstream LIKE targets: the controller, every root/upstream, anchors and replicators.
    fn like_targets(&self, nwid: NetworkId) -> Vec<Address> {
        let mut v = vec![nwid.controller()];
        v.extend(self.peers.keys().copied().filter(|a| self.is_upstream(*a)));
        if let Some(c) = self.networks.get(&nwid).and_then(|n| n.config.as_ref()) {
            v.extend(c.anchors());
            v.extend(c.multicast_replicators());
        }
        v.sort();
        v.dedup();
        v.retain(|a| *a != self.address());
        v
    }

    /// The periodic announcement of §16.2.
    fn announce_all(&mut self, now: Timestamp, nwid: NetworkId) {
        let Some(n) = self.networks.get(&nwid) else {
            return;
        };
        if n.config.is_none() {
            return;
        }
        let groups = self.our_groups(nwid);
        if groups.is_empty() {
            return;
        }
        if now - n.last_upstream_likes >= LIKE_PERIOD_MS {
            if let Some(n) = self.networks.get_mut(&nwid) {
                n.last_upstream_likes = now;
            }
            for t in self.like_targets(nwid) {
                self.send_likes(now, nwid, t, &groups);
            }
        }
        let due: Vec<Address> = self
            .networks
            .get(&nwid)
            .map(|n| {
                n.members
                    .iter()
                    .filter(|(_, m)| now - m.last_like_sent >= LIKE_PERIOD_MS)
                    .map(|(a, _)| *a)
                    .collect()
            })
            .unwrap_or_default();
        for a in due {
            if self.gate_quiet(nwid, a) {
                if let Some(m) = self.networks.get_mut(&nwid).map(|n| n.member(a)) {
                    m.last_like_sent = now;
                }
                self.send_likes(now, nwid, a, &groups);
            }
        }
    }

    /// Announces just `groups` to all targets at once (new subscriptions).
    pub(crate) fn announce_groups(
        &mut self,
        now: Timestamp,
        nwid: NetworkId,
        groups: &[MulticastGroup],
        members_too: bool,
    ) {
        if self.networks.get(&nwid).is_none_or(|n| n.config.is_none()) {
            return;
        }
        let mut targets = self.like_targets(nwid);
        if members_too && let Some(n) = self.networks.get(&nwid) {
            targets.extend(
                n.members
                    .keys()
                    .copied()
                    .filter(|a| self.gate_quiet(nwid, *a)),
            );
        }
        targets.sort();
        targets.dedup();
        for t in targets {
            self.send_likes(now, nwid, t, groups);
        }
    }

    /// Whether `peer` may LIKE/GATHER on `nwid` here. spec: vl2.md §7.3
    fn may_subscribe(&self, now: Timestamp, nwid: NetworkId, peer: Address) -> bool {
        self.gate_quiet(nwid, peer)
            || self.is_upstream_itself()
            || self
                .controller_auth
                .get(&(nwid, peer))
                .is_some_and(|t| now - *t < CONTROLLER_AUTH_MS)
    }

    // ---------------------------------------------------------------- receive

    /// Dispatches VL2 verbs; `false` if the packet must be held for a retry (unknown signer).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn handle_vl2(
        &mut self,
        now: Timestamp,
        local: LocalSocket,
        from: SocketAddr,
        source: Address,
        hops: u8,
        packet_id: u64,
        verb: Verb,
        payload: &[u8],
        packet: &[u8],
    ) {
        let hold = || Held {
            since: now,
            local,
            from,
            packet: packet.to_vec(),
        };
        match verb {
            Verb::FRAME => {
                if let Ok(f) = Frame::decode(payload)
                    && self.gated(now, verb, packet_id, source, f.network_id, hold)
                    && !f.payload.is_empty()
                {
                    self.receive_unicast(now, f.network_id, source, f);
                }
            }
            Verb::EXT_FRAME => {
                if let Ok(f) = ExtFrame::decode(payload)
                    && self.gated(now, verb, packet_id, source, f.network_id, hold)
                {
                    self.receive_ext_frame(now, source, packet_id, f);
                }
            }
            Verb::MULTICAST_FRAME => {
                if let Ok(f) = MulticastFrame::decode(payload)
                    && self.gated(now, verb, packet_id, source, f.network_id, hold)
                {
                    self.receive_multicast(now, source, packet_id, f);
                }
            }
            Verb::MULTICAST_LIKE => {
                let Ok(likes) = multicast_likes(payload) else {
                    return;
                };
                let mut last: Option<(NetworkId, bool)> = None;
                let mut learned = Vec::new();
                for (nwid, group) in likes {
                    let ok = match last {
                        Some((id, ok)) if id == nwid => ok,
                        _ => {
                            let ok = self.networks.contains_key(&nwid)
                                && self.may_subscribe(now, nwid, source);
                            last = Some((nwid, ok));
                            ok
                        }
                    };
                    if ok
                        && let Some(n) = self.networks.get_mut(&nwid)
                        && source != self.identity.address()
                    {
                        n.multicast.add(now, group, source);
                        learned.push((nwid, group));
                    }
                }
                for (nwid, group) in learned {
                    self.flush_pending_multicast(now, nwid, group, &[source]);
                }
                // roots (and a controller, for the members it configured) keep LIKEs for networks
                // they have not joined, to answer GATHERs
                self.root_likes(now, source, payload);
            }
            Verb::MULTICAST_GATHER => {
                let Ok(g) = MulticastGather::decode(payload) else {
                    return;
                };
                if !g.com.is_empty()
                    && let Ok((com, _)) = Com::decode(g.com)
                {
                    self.offer_com(com);
                }
                self.answer_gather(now, source, packet_id, &g);
            }
            Verb::NETWORK_CREDENTIALS if !self.handle_credentials(now, source, payload) => {
                // a signer's identity is missing: hold for a retry
                let h = hold();
                if self.held.len() >= HOLD_MAX {
                    self.held.pop_front();
                }
                self.held.push_back(h);
            }
            Verb::NETWORK_CONFIG_REQUEST => {
                let Ok(r) = NetworkConfigRequest::decode(payload) else {
                    return;
                };
                let Some(identity) = self.peers.get(&source).map(|p| p.identity.clone()) else {
                    return;
                };
                if self.config.controller {
                    self.events.push_back(Event::ConfigRequest {
                        network_id: r.network_id,
                        requester: identity,
                        packet_id,
                        metadata: r.metadata.to_vec(),
                        physical: (hops == 0).then_some(from),
                    });
                } else {
                    let mut body = Vec::with_capacity(18);
                    ErrorHeader {
                        in_re_verb: verb,
                        in_re_packet_id: packet_id,
                        code: ErrorCode::UNSUPPORTED_OPERATION,
                    }
                    .encode(&mut body);
                    body.extend_from_slice(&r.network_id.0.to_be_bytes());
                    self.send(now, source, Verb::ERROR, &body);
                }
            }
            Verb::NETWORK_CONFIG => {
                self.handle_config_chunk(now, source, payload, Some(packet_id));
            }
            _ => {}
        }
    }

    /// The gate for a frame-carrying verb: `true` to go on; on failure answers
    /// NEED_MEMBERSHIP_CERTIFICATE and holds the packet. spec: vl2.md §7
    fn gated(
        &mut self,
        now: Timestamp,
        verb: Verb,
        packet_id: u64,
        source: Address,
        nwid: NetworkId,
        hold: impl FnOnce() -> Held,
    ) -> bool {
        match self.gate(now, nwid, source) {
            GateResult::Pass => true,
            GateResult::Ignore => false,
            GateResult::Fail => {
                let h = self.hold_entry(hold);
                self.gate_failed(now, verb, packet_id, source, nwid, h);
                false
            }
        }
    }

    fn hold_entry(&self, hold: impl FnOnce() -> Held) -> Option<Held> {
        // a retried packet that fails again is dropped by the retry loop's age check instead of
        // being parked twice
        match self.retrying_held {
            Some(since) => {
                let mut h = hold();
                h.since = since;
                Some(h)
            }
            None => Some(hold()),
        }
    }

    /// A COM offered inline (GATHER): stored for its member if valid.
    fn offer_com(&mut self, com: Com) {
        let (nwid, to) = (com.network_id(), com.issued_to());
        self.offer_credential(nwid, to, |m, ctl| m.add_com(com, ctl));
    }

    /// Hands a credential for member `to` of `nwid` to its membership record (with the
    /// network's controller identity for verification); `true` if it was new. Networks we have
    /// not joined, or whose controller we do not know, are ignored.
    fn offer_credential(
        &mut self,
        nwid: NetworkId,
        to: Address,
        add: impl FnOnce(&mut crate::network::membership::Membership, &Identity) -> Accepted,
    ) -> bool {
        let (Some(ctl), Some(n)) = (self.controller_identity(nwid), self.networks.get_mut(&nwid))
        else {
            return false;
        };
        add(n.member(to), &ctl) == Accepted::New
    }

    /// Roots, and controllers for members they configured, remember LIKEs for networks they have
    /// not joined so they can answer GATHERs. spec: vl2.md §7.3, §7.4
    fn root_likes(&mut self, now: Timestamp, source: Address, payload: &[u8]) {
        let Ok(likes) = multicast_likes(payload) else {
            return;
        };
        for (nwid, group) in likes {
            if self.networks.contains_key(&nwid) || !self.may_subscribe(now, nwid, source) {
                continue;
            }
            if self.root_multicast.len() >= 1024 && !self.root_multicast.contains_key(&nwid) {
                continue;
            }
            self.root_multicast
                .entry(nwid)
                .or_default()
                .add(now, group, source);
        }
    }

    /// MULTICAST_GATHER: answer with known members if the requester may ask. spec: vl2.md §7.4
    fn answer_gather(
        &mut self,
        now: Timestamp,
        source: Address,
        packet_id: u64,
        g: &MulticastGather<'_>,
    ) {
        if g.gather_limit == 0 {
            return;
        }
        let nwid = g.network_id;
        let me = self.address();
        let results = if let Some(n) = self.networks.get(&nwid) {
            if !self.may_subscribe(now, nwid, source) {
                return;
            }
            let bcast = n.config.as_ref().is_some_and(|c| c.broadcast_enabled());
            let subscribed = n.multicast.subscribed(&g.group, bcast);
            multicast::gather_results(
                &n.multicast,
                &multicast::GatherQuery {
                    group: g.group,
                    me,
                    me_subscribed: subscribed,
                    requester: source,
                    limit: g.gather_limit as usize,
                    max_bytes: MAX_VL2_PAYLOAD - 40,
                },
                &mut self.rng,
            )
        } else if self.may_subscribe(now, nwid, source) {
            self.root_multicast.get(&nwid).and_then(|m| {
                multicast::gather_results(
                    m,
                    &multicast::GatherQuery {
                        group: g.group,
                        me,
                        me_subscribed: false,
                        requester: source,
                        limit: g.gather_limit as usize,
                        max_bytes: MAX_VL2_PAYLOAD - 40,
                    },
                    &mut self.rng,
                )
            })
        } else {
            None
        };
        let Some(results) = results else { return };
        let reply = GatherReply {
            in_re: Verb::MULTICAST_GATHER,
            packet_id,
            nwid,
            group: g.group,
        };
        self.send_gather_results(now, source, reply, &results);
    }

    /// OK(MULTICAST_GATHER) or OK(MULTICAST_FRAME) carrying gather results:
    /// `nwid | MAC | ADI | [flags 0x02 for MULTICAST_FRAME] | results`. spec: vl2.md §7.4, §7.5
    pub(crate) fn send_gather_results(
        &mut self,
        now: Timestamp,
        to: Address,
        r: GatherReply,
        results: &[u8],
    ) {
        let mut body = Vec::with_capacity(28 + results.len());
        OkHeader {
            in_re_verb: r.in_re,
            in_re_packet_id: r.packet_id,
        }
        .encode(&mut body);
        body.extend_from_slice(&r.nwid.0.to_be_bytes());
        body.extend_from_slice(&r.group.mac.0);
        body.extend_from_slice(&r.group.adi.to_be_bytes());
        if r.in_re == Verb::MULTICAST_FRAME {
            body.push(0x02);
        }
        body.extend_from_slice(results);
        self.send(now, to, Verb::OK, &body);
    }

    /// OK(MULTICAST_GATHER) and OK(MULTICAST_FRAME) bodies: learn the listed members.
    pub(crate) fn handle_vl2_ok(&mut self, now: Timestamp, in_re: Verb, body: &[u8]) {
        let (nwid, group, members) = match in_re {
            Verb::MULTICAST_GATHER => {
                let Ok(o) = OkMulticastGather::decode(body) else {
                    return;
                };
                (o.network_id, o.group, o.results.members)
            }
            Verb::MULTICAST_FRAME => {
                let Ok(o) = OkMulticastFrame::decode(body) else {
                    return;
                };
                let Some(r) = o.results else { return };
                (o.network_id, o.group, r.members)
            }
            _ => return,
        };
        let me = self.address();
        let Some(n) = self.networks.get_mut(&nwid) else {
            return;
        };
        let mut new = Vec::new();
        for a in members.into_iter().filter(|a| *a != me) {
            n.multicast.add(now, group, a);
            new.push(a);
        }
        self.flush_pending_multicast(now, nwid, group, &new);
    }
}

/// The networks named by the credentials of one payload.
fn credential_networks(c: &NetworkCredentials) -> Vec<NetworkId> {
    let mut v: Vec<NetworkId> = c
        .coms
        .iter()
        .map(|x| x.network_id())
        .chain(c.capabilities.iter().map(|x| x.network_id()))
        .chain(c.tags.iter().map(|x| x.network_id()))
        .chain(c.revocations.iter().map(|x| x.network_id()))
        .chain(c.coos.iter().map(|x| x.network_id()))
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Our credentials as NETWORK_CREDENTIALS payloads: COM first, then as many capabilities, tags
/// and COOs as fit, continuing in further packets. spec: vl2.md §13.6
pub(crate) fn credentials_payloads(c: &NetworkConfig) -> Vec<Vec<u8>> {
    let mut caps = Vec::new();
    for x in &c.capabilities {
        let mut b = Vec::new();
        x.encode(&mut b);
        caps.push(b);
    }
    let mut tags = Vec::new();
    for x in &c.tags {
        let mut b = Vec::new();
        x.encode(&mut b);
        tags.push(b);
    }
    let mut coos = Vec::new();
    for x in &c.coos {
        let mut b = Vec::new();
        x.encode(&mut b);
        coos.push(b);
    }
    let mut out = Vec::new();
    let (mut ci, mut ti, mut oi) = (0, 0, 0);
    let mut first = true;
    loop {
        let mut p = Vec::new();
        if first && let Some(com) = &c.com {
            com.encode(&mut p);
        }
        p.push(0);
        for (list, idx) in [(&caps, &mut ci), (&tags, &mut ti)] {
            let start = *idx;
            let mut size = p.len() + 2;
            let mut end = start;
            while end < list.len() && size + list[end].len() <= MAX_VL2_PAYLOAD - 8 {
                size += list[end].len();
                end += 1;
            }
            p.extend_from_slice(&((end - start) as u16).to_be_bytes());
            for b in &list[start..end] {
                p.extend_from_slice(b);
            }
            *idx = end;
        }
        p.extend_from_slice(&[0, 0]); // no revocations
        let start = oi;
        let mut size = p.len() + 2;
        let mut end = start;
        while end < coos.len() && size + coos[end].len() <= MAX_VL2_PAYLOAD {
            size += coos[end].len();
            end += 1;
        }
        p.extend_from_slice(&((end - start) as u16).to_be_bytes());
        for b in &coos[start..end] {
            p.extend_from_slice(b);
        }
        oi = end;
        out.push(p);
        first = false;
        let done = ci == caps.len() && ti == tags.len() && oi == coos.len();
        if done || out.len() > 64 {
            break;
        }
    }
    out
}
