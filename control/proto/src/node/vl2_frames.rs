//! Ethernet frames: from the local port to the network (the outbound decision tree), from the
//! network to the local port, and multicast sends with gathering. spec: vl2.md §6, §7.1, §7.2,
//! §7.5, §16.4, §17

use std::sync::Arc;

use weft_wire::Address;
use weft_wire::NetworkId;
use weft_wire::ethernet;
use weft_wire::mac::Mac;
use weft_wire::netconf::NetworkConfig;
use weft_wire::packet::Verb;
use weft_wire::verbs::OkHeader;
use weft_wire::verbs::vl2::{ExtFrame, Frame, MulticastFrame, MulticastGroup};

use super::Node;
use super::vl2::{GatherReply, MAX_VL2_PAYLOAD};
use crate::network::multicast::{self, GATHER_INTERVAL_MS, OutboundFrame, PendingMulticast};
use crate::{Event, Timestamp};

/// EXT_FRAME flag: ACK requested. spec: vl2.md §7.2
const EXT_FRAME_ACK: u8 = 0x10;
/// Most active bridges an unknown unicast is spread to. spec: vl2.md §6 step 5
const BRIDGE_FANOUT: usize = 32;
/// Most explicit GATHER targets. spec: vl2.md §16.1
const MAX_GATHER_TARGETS: usize = 16;
/// Largest multicast payload. spec: vl2.md §16.4
const MAX_MULTICAST_PAYLOAD: usize = 10_000;

/// An Ethernet frame split into its parts (no 802.1Q parsing; VLAN id 0).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Eth<'a> {
    pub(crate) dst: Mac,
    pub(crate) src: Mac,
    pub(crate) ethertype: u16,
    pub(crate) payload: &'a [u8],
}

impl<'a> Eth<'a> {
    pub(crate) fn parse(frame: &'a [u8]) -> Option<Self> {
        if frame.len() < 14 {
            return None;
        }
        Some(Eth {
            dst: Mac(frame[0..6].try_into().ok()?),
            src: Mac(frame[6..12].try_into().ok()?),
            ethertype: u16::from_be_bytes([frame[12], frame[13]]),
            payload: &frame[14..],
        })
    }

    pub(crate) fn to_bytes(self) -> Vec<u8> {
        let mut v = Vec::with_capacity(14 + self.payload.len());
        v.extend_from_slice(&self.dst.0);
        v.extend_from_slice(&self.src.0);
        v.extend_from_slice(&self.ethertype.to_be_bytes());
        v.extend_from_slice(self.payload);
        v
    }
}

impl Node {
    fn config_of(&self, nwid: NetworkId) -> Option<Arc<NetworkConfig>> {
        self.networks.get(&nwid).and_then(|n| n.config.clone())
    }

    /// Writes a frame to the network's local port.
    fn deliver(&mut self, nwid: NetworkId, eth: Eth<'_>) {
        self.stats.frames_in += 1;
        self.events.push_back(Event::TapFrame {
            network_id: nwid,
            frame: eth.to_bytes(),
        });
    }

    /// A frame read from the network's local port. spec: vl2.md §6
    pub fn handle_tap_frame(&mut self, now: Timestamp, network_id: NetworkId, frame: &[u8]) {
        let Some(eth) = Eth::parse(frame) else { return };
        let Some(c) = self.config_of(network_id) else {
            return;
        };
        let me = self.address();
        let my_mac = Mac::for_member(me, network_id);
        let bridged = eth.src != my_mac;
        if bridged && !c.is_active_bridge(me) {
            self.stats.frames_dropped += 1;
            return;
        }
        if eth.dst.is_multicast() {
            let mut group = MulticastGroup {
                mac: eth.dst,
                adi: 0,
            };
            if eth.dst.is_broadcast() {
                if let Some(ip) = ethernet::arp_request_target(frame) {
                    // spec: vl2.md §3.1 — ARP requests go to the per-IP group
                    group.adi = u32::from(ip);
                } else if !c.broadcast_enabled() {
                    self.stats.frames_dropped += 1;
                    return;
                }
            } else if c.ndp_emulation()
                && let Some(target) = ethernet::ndp_solicitation_target(frame)
                && self.emulate_ndp(network_id, &c, &eth, target)
            {
                return;
            }
            if c.multicast_limit == 0 {
                self.stats.frames_dropped += 1;
                return;
            }
            if bridged && let Some(n) = self.networks.get_mut(&network_id) {
                let new = n.multicast.bridged.insert(group, now).is_none();
                if new {
                    self.announce_groups(now, network_id, &[group], true);
                }
            }
            if !self.filter_outbound(now, network_id, &c, Address::default(), &eth, true) {
                self.stats.frames_dropped += 1;
                return;
            }
            let out = OutboundFrame {
                group,
                source_mac: bridged.then_some(eth.src),
                ethertype: eth.ethertype,
                payload: eth.payload[..eth.payload.len().min(MAX_MULTICAST_PAYLOAD)].to_vec(),
            };
            self.send_multicast(now, network_id, &c, out, Address::default());
            return;
        }
        if eth.dst == my_mac {
            // loop back unchanged
            self.deliver(network_id, eth);
            return;
        }
        if let Some(dest) = eth.dst.member_address(network_id) {
            if !self.filter_outbound(now, network_id, &c, dest, &eth, true) {
                self.stats.frames_dropped += 1;
                return;
            }
            self.push_credentials_if_needed(now, network_id, dest);
            let mut p = Vec::with_capacity(24 + eth.payload.len());
            if bridged {
                encode_ext_frame(&mut p, network_id, 0, eth);
                self.send(now, dest, Verb::EXT_FRAME, &p);
            } else {
                Frame {
                    network_id,
                    ethertype: eth.ethertype,
                    payload: eth.payload,
                }
                .encode(&mut p);
                self.send(now, dest, Verb::FRAME, &p);
            }
            self.stats.frames_out += 1;
            return;
        }
        // behind some bridge. spec: vl2.md §6 step 5
        if !self.filter_outbound(now, network_id, &c, Address::default(), &eth, true) {
            self.stats.frames_dropped += 1;
            return;
        }
        let bridges = c.active_bridges();
        let learned = self
            .networks
            .get(&network_id)
            .and_then(|n| n.bridge_routes.get(&eth.dst.to_u64()).copied())
            .filter(|b| *b != me && bridges.contains(b));
        let recipients: Vec<Address> = match learned {
            Some(b) => vec![b],
            None => {
                let mut v: Vec<Address> = bridges.into_iter().filter(|b| *b != me).collect();
                if v.len() > BRIDGE_FANOUT {
                    for i in (1..v.len()).rev() {
                        let j = (rand_core::RngCore::next_u32(&mut self.rng) as usize) % (i + 1);
                        v.swap(i, j);
                    }
                    v.truncate(BRIDGE_FANOUT);
                }
                v
            }
        };
        for r in recipients {
            if self.filter_outbound(now, network_id, &c, r, &eth, false) {
                self.push_credentials_if_needed(now, network_id, r);
                let mut p = Vec::with_capacity(24 + eth.payload.len());
                encode_ext_frame(&mut p, network_id, 0, eth);
                self.send(now, r, Verb::EXT_FRAME, &p);
                self.stats.frames_out += 1;
            }
        }
    }

    /// NDP emulation: answer a neighbor solicitation for another member's rfc4193/6plane
    /// address locally. `true` if the solicitation was consumed. spec: vl2.md §5
    fn emulate_ndp(
        &mut self,
        nwid: NetworkId,
        c: &NetworkConfig,
        eth: &Eth<'_>,
        target: std::net::Ipv6Addr,
    ) -> bool {
        let own: Vec<(std::net::IpAddr, u8)> = c
            .static_ips
            .iter()
            .map(|n| (n.addr(), n.prefix_len()))
            .collect();
        let Some(owner) = ethernet::ndp_emulated_owner(target, &own, nwid, self.address()) else {
            return false;
        };
        let na = ethernet::build_neighbor_advertisement(
            target,
            owner.own_ip,
            Mac::for_member(owner.address, nwid),
            eth.src,
        );
        self.events.push_back(Event::TapFrame {
            network_id: nwid,
            frame: na,
        });
        true
    }

    /// FRAME from a member that passed the gate. spec: vl2.md §7.1
    pub(crate) fn receive_unicast(
        &mut self,
        now: Timestamp,
        nwid: NetworkId,
        source: Address,
        f: Frame<'_>,
    ) {
        let Some(c) = self.config_of(nwid) else {
            return;
        };
        let eth = Eth {
            dst: Mac::for_member(self.address(), nwid),
            src: Mac::for_member(source, nwid),
            ethertype: f.ethertype,
            payload: f.payload,
        };
        if self.filter_inbound(now, nwid, &c, source, &eth) > 0 {
            self.deliver(nwid, eth);
        } else {
            self.stats.frames_dropped += 1;
        }
    }

    /// EXT_FRAME from a member that passed the gate. spec: vl2.md §7.2
    pub(crate) fn receive_ext_frame(
        &mut self,
        now: Timestamp,
        source: Address,
        packet_id: u64,
        f: ExtFrame<'_>,
    ) {
        let nwid = f.network_id;
        let Some(c) = self.config_of(nwid) else {
            return;
        };
        let me = self.address();
        let my_mac = Mac::for_member(me, nwid);
        if f.from.is_zero() || f.from == my_mac {
            return;
        }
        let eth = Eth {
            dst: f.to,
            src: f.from,
            ethertype: f.ethertype,
            payload: f.payload,
        };
        match self.filter_inbound(now, nwid, &c, source, &eth) {
            1 => {
                if f.from != Mac::for_member(source, nwid) {
                    if c.is_active_bridge(source) {
                        if let Some(n) = self.networks.get_mut(&nwid) {
                            n.learn_bridge_route(f.from.to_u64(), source);
                        }
                    } else {
                        return;
                    }
                }
                if f.to != my_mac {
                    if f.to.is_multicast() {
                        if c.multicast_limit == 0 {
                            return;
                        }
                    } else if !c.is_active_bridge(me) {
                        return;
                    }
                }
                self.deliver(nwid, eth);
            }
            2 => self.deliver(nwid, eth),
            _ => self.stats.frames_dropped += 1,
        }
        if f.flags & EXT_FRAME_ACK != 0 {
            let mut body = Vec::with_capacity(17);
            OkHeader {
                in_re_verb: Verb::EXT_FRAME,
                in_re_packet_id: packet_id,
            }
            .encode(&mut body);
            body.extend_from_slice(&nwid.0.to_be_bytes());
            self.send(now, source, Verb::OK, &body);
        }
    }

    /// MULTICAST_FRAME from a member that passed the gate. spec: vl2.md §7.5
    pub(crate) fn receive_multicast(
        &mut self,
        now: Timestamp,
        source: Address,
        packet_id: u64,
        f: MulticastFrame<'_>,
    ) {
        let nwid = f.network_id;
        let Some(c) = self.config_of(nwid) else {
            return;
        };
        if c.multicast_limit == 0 {
            return;
        }
        let me = self.address();
        let my_mac = Mac::for_member(me, nwid);
        if (1..=MAX_MULTICAST_PAYLOAD).contains(&f.payload.len()) {
            let src = f.source.unwrap_or_else(|| Mac::for_member(source, nwid));
            if !f.group.mac.is_multicast() || src.is_zero() || src.is_multicast() || src == my_mac {
                self.stats.frames_dropped += 1;
                return;
            }
            let mut ok = true;
            if src != Mac::for_member(source, nwid) {
                if c.is_active_bridge(source) {
                    if let Some(n) = self.networks.get_mut(&nwid) {
                        n.learn_bridge_route(src.to_u64(), source);
                    }
                } else {
                    ok = false;
                }
            }
            if ok {
                let eth = Eth {
                    dst: f.group.mac,
                    src,
                    ethertype: f.ethertype,
                    payload: f.payload,
                };
                if self.filter_inbound(now, nwid, &c, source, &eth) > 0 {
                    self.deliver(nwid, eth);
                } else {
                    self.stats.frames_dropped += 1;
                }
            } else {
                self.stats.frames_dropped += 1;
            }
        }
        if let Some(limit) = f.gather_limit
            && limit > 0
        {
            let Some(n) = self.networks.get(&nwid) else {
                return;
            };
            let subscribed = n.multicast.subscribed(&f.group, c.broadcast_enabled());
            let Some(results) = multicast::gather_results(
                &n.multicast,
                &multicast::GatherQuery {
                    group: f.group,
                    me,
                    me_subscribed: subscribed,
                    requester: source,
                    limit: limit as usize,
                    max_bytes: MAX_VL2_PAYLOAD - 40,
                },
                &mut self.rng,
            ) else {
                return;
            };
            let reply = GatherReply {
                in_re: Verb::MULTICAST_FRAME,
                packet_id,
                nwid,
                group: f.group,
            };
            self.send_gather_results(now, source, reply, &results);
        }
    }

    /// Sends a multicast to known members and active bridges, gathering more when too few are
    /// known. spec: vl2.md §16.4
    pub(crate) fn send_multicast(
        &mut self,
        now: Timestamp,
        nwid: NetworkId,
        c: &NetworkConfig,
        frame: OutboundFrame,
        origin: Address,
    ) {
        let me = self.address();
        let limit = c.multicast_limit as usize;
        let group = frame.group;
        let members = match self.networks.get(&nwid) {
            Some(n) => n.multicast.shuffled(&group, &mut self.rng),
            None => return,
        };
        let bridges: Vec<Address> = c
            .active_bridges()
            .into_iter()
            .filter(|b| *b != me && *b != origin)
            .collect();
        let mut sent: Vec<Address> = vec![origin];
        if members.len() >= limit {
            for to in bridges
                .iter()
                .copied()
                .chain(members.iter().copied().filter(|m| !bridges.contains(m)))
            {
                if sent.len() > limit {
                    break;
                }
                if sent.contains(&to) || to == me {
                    continue;
                }
                self.send_multicast_to(now, nwid, c, &frame, to, Some(1));
                sent.push(to);
            }
            return;
        }
        let gather_limit = (limit - members.len() + 1) as u32;
        let last_gather = self
            .networks
            .get(&nwid)
            .and_then(|n| n.multicast.last_gather.get(&group).copied())
            .unwrap_or(i64::MIN / 2);
        if members.is_empty() || now - last_gather >= GATHER_INTERVAL_MS {
            if let Some(n) = self.networks.get_mut(&nwid) {
                n.multicast.last_gather.insert(group, now);
            }
            let mut targets: Vec<Address> = Vec::new();
            if let Some(root) = self.best_upstream(now, None) {
                targets.push(root);
            }
            targets.push(nwid.controller());
            targets.extend(c.anchors());
            targets.extend(c.multicast_replicators());
            targets.retain(|t| *t != me);
            targets.dedup();
            targets.truncate(MAX_GATHER_TARGETS);
            let mut g = Vec::with_capacity(32);
            g.extend_from_slice(&nwid.0.to_be_bytes());
            let com = c.com.as_ref().map(|com| {
                let mut b = Vec::new();
                com.encode(&mut b);
                b
            });
            g.push(u8::from(com.is_some()));
            g.extend_from_slice(&group.mac.0);
            g.extend_from_slice(&group.adi.to_be_bytes());
            g.extend_from_slice(&gather_limit.to_be_bytes());
            if let Some(b) = com {
                g.extend_from_slice(&b);
            }
            for t in targets {
                self.send(now, t, Verb::MULTICAST_GATHER, &g);
            }
        }
        for to in bridges
            .iter()
            .copied()
            .chain(members.iter().copied())
            .collect::<Vec<_>>()
        {
            if sent.len() > limit {
                break;
            }
            if sent.contains(&to) || to == me {
                continue;
            }
            self.send_multicast_to(now, nwid, c, &frame, to, Some(gather_limit));
            sent.push(to);
        }
        if sent.len() <= limit
            && let Some(n) = self.networks.get_mut(&nwid)
        {
            n.multicast.enqueue(PendingMulticast {
                since: now,
                frame,
                limit: limit + 1,
                sent_to: sent,
            });
        }
    }

    /// Sends a queued multicast to newly learned members. spec: vl2.md §16.4 step 4
    pub(crate) fn flush_pending_multicast(
        &mut self,
        now: Timestamp,
        nwid: NetworkId,
        group: MulticastGroup,
        new: &[Address],
    ) {
        let Some(c) = self.config_of(nwid) else {
            return;
        };
        let me = self.address();
        let Some(q) = self
            .networks
            .get_mut(&nwid)
            .and_then(|n| n.multicast.pending.get_mut(&group))
        else {
            return;
        };
        let mut sends = Vec::new();
        for p in q.iter_mut() {
            if now - p.since >= multicast::TX_QUEUE_MS {
                continue;
            }
            for a in new {
                if p.sent_to.len() >= p.limit || *a == me || p.sent_to.contains(a) {
                    continue;
                }
                p.sent_to.push(*a);
                sends.push((p.frame.clone(), *a));
            }
        }
        for (frame, to) in sends {
            self.send_multicast_to(now, nwid, &c, &frame, to, None);
        }
    }

    /// One MULTICAST_FRAME to one recipient, after its per-recipient outbound filter.
    fn send_multicast_to(
        &mut self,
        now: Timestamp,
        nwid: NetworkId,
        c: &NetworkConfig,
        frame: &OutboundFrame,
        to: Address,
        gather_limit: Option<u32>,
    ) {
        let src = frame
            .source_mac
            .unwrap_or_else(|| Mac::for_member(self.address(), nwid));
        let eth = Eth {
            dst: frame.group.mac,
            src,
            ethertype: frame.ethertype,
            payload: &frame.payload,
        };
        if !self.filter_outbound(now, nwid, c, to, &eth, false) {
            return;
        }
        self.push_credentials_if_needed(now, nwid, to);
        let mut flags = 0u8;
        if gather_limit.is_some() {
            flags |= 0x02;
        }
        if frame.source_mac.is_some() {
            flags |= 0x04;
        }
        let mut p = Vec::with_capacity(40 + frame.payload.len());
        p.extend_from_slice(&nwid.0.to_be_bytes());
        p.push(flags);
        if let Some(l) = gather_limit {
            p.extend_from_slice(&l.to_be_bytes());
        }
        if let Some(m) = frame.source_mac {
            p.extend_from_slice(&m.0);
        }
        p.extend_from_slice(&frame.group.mac.0);
        p.extend_from_slice(&frame.group.adi.to_be_bytes());
        p.extend_from_slice(&frame.ethertype.to_be_bytes());
        p.extend_from_slice(&frame.payload);
        self.send(now, to, Verb::MULTICAST_FRAME, &p);
        self.stats.frames_out += 1;
    }
}

/// EXT_FRAME payload: `nwid | flags | to | from | ethertype | payload`. spec: vl2.md §7.2
pub(crate) fn encode_ext_frame(out: &mut Vec<u8>, nwid: NetworkId, flags: u8, eth: Eth<'_>) {
    out.extend_from_slice(&nwid.0.to_be_bytes());
    out.push(flags);
    out.extend_from_slice(&eth.dst.0);
    out.extend_from_slice(&eth.src.0);
    out.extend_from_slice(&eth.ethertype.to_be_bytes());
    out.extend_from_slice(eth.payload);
}
