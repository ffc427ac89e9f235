//! A deterministic network simulator for the protocol core: virtual time, seeded randomness,
//! per-datagram latency, loss, duplication and reordering, NAT routers (port-restricted and
//! symmetric) and nodes that can be taken down. spec for NAT behaviour: vl1.md §8.12

#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use weft_controller::MemoryStore;
use weft_controller::controller::{Controller, ControllerOutput};
use weft_proto::{Event, LocalSocket, Node, NodeConfig, Timestamp};
use weft_wire::dictionary::Dictionary;
use weft_wire::world::Root;
use weft_wire::{Identity, World, WorldType};

/// Start of virtual time (an arbitrary 2026 timestamp).
pub const T0: Timestamp = 1_795_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatKind {
    /// Endpoint-independent mapping, address-and-port-dependent filtering (iptables MASQUERADE).
    PortRestricted,
    /// A new mapping per destination (MASQUERADE --random-fully).
    Symmetric,
}

pub struct Nat {
    pub public_ip: IpAddr,
    pub kind: NatKind,
    next_port: u16,
    /// (inside, remote or None) → public port
    out: HashMap<(SocketAddr, Option<SocketAddr>), u16>,
    /// public port → (inside, remotes allowed in)
    inbound: HashMap<u16, (SocketAddr, HashSet<SocketAddr>)>,
}

impl Nat {
    fn translate_out(&mut self, inside: SocketAddr, remote: SocketAddr) -> SocketAddr {
        let key = match self.kind {
            NatKind::PortRestricted => (inside, None),
            NatKind::Symmetric => (inside, Some(remote)),
        };
        let port = match self.out.get(&key) {
            Some(p) => *p,
            None => {
                let p = self.next_port;
                self.next_port += 7;
                self.out.insert(key, p);
                p
            }
        };
        self.inbound
            .entry(port)
            .or_insert_with(|| (inside, HashSet::new()))
            .1
            .insert(remote);
        SocketAddr::new(self.public_ip, port)
    }

    fn translate_in(&self, remote: SocketAddr, public_port: u16) -> Option<SocketAddr> {
        let (inside, allowed) = self.inbound.get(&public_port)?;
        allowed.contains(&remote).then_some(*inside)
    }
}

pub struct SimNode {
    pub node: Node,
    pub addr: SocketAddr,
    pub nat: Option<usize>,
    pub up: bool,
    pub events: Vec<(Timestamp, Event)>,
    /// Extra offset of this node's clock from virtual time (clock-jump tests).
    pub clock_offset: i64,
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Delivery {
    at: Timestamp,
    seq: u64,
    to_node: usize,
    from: SocketAddr,
    data: Vec<u8>,
}

pub struct Sim {
    pub now: Timestamp,
    pub nodes: Vec<SimNode>,
    pub nats: Vec<Nat>,
    queue: BinaryHeap<Reverse<Delivery>>,
    seq: u64,
    pub rng: ChaCha20Rng,
    pub latency_ms: i64,
    pub jitter_ms: i64,
    pub loss: f64,
    pub duplicate: f64,
    pub delivered: u64,
    pub dropped: u64,
    /// Network controllers by node index: their nodes' config requests go to them.
    pub controllers: HashMap<usize, Controller<MemoryStore>>,
    /// Every (sender, destination) a datagram was sent to, routable or not.
    pub sent_to: HashSet<(usize, SocketAddr)>,
}

/// Fresh identities, cached per test process (generation is the slow part).
pub fn identities(n: usize) -> Vec<Identity> {
    let mut rng = ChaCha20Rng::seed_from_u64(n as u64 + 1000);
    (0..n).map(|_| Identity::generate(&mut rng)).collect()
}

/// A planet with the given roots, signed with a throwaway key.
pub fn planet(roots: &[(&Identity, SocketAddr)]) -> World {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let mut private = [0u8; 64];
    rng.fill_bytes(&mut private);
    let public = weft_wire::identity::public_from_private(&private);
    let mut w = World {
        kind: WorldType::Planet,
        id: 0x7765_6674,
        timestamp: 1,
        updates_must_be_signed_by: public,
        signature: [0; 96],
        roots: roots
            .iter()
            .map(|(id, a)| Root {
                identity: id.to_public(),
                stable_endpoints: vec![*a],
            })
            .collect(),
    };
    w.sign(&private);
    w
}

impl Sim {
    pub fn new(seed: u64) -> Self {
        Sim {
            now: T0,
            nodes: Vec::new(),
            nats: Vec::new(),
            queue: BinaryHeap::new(),
            seq: 0,
            rng: ChaCha20Rng::seed_from_u64(seed),
            latency_ms: 10,
            jitter_ms: 0,
            loss: 0.0,
            duplicate: 0.0,
            delivered: 0,
            dropped: 0,
            controllers: HashMap::new(),
            sent_to: HashSet::new(),
        }
    }

    pub fn add_nat(&mut self, public_ip: &str, kind: NatKind) -> usize {
        self.nats.push(Nat {
            public_ip: public_ip.parse().unwrap(),
            kind,
            next_port: 40_000,
            out: HashMap::new(),
            inbound: HashMap::new(),
        });
        self.nats.len() - 1
    }

    pub fn add_node(
        &mut self,
        identity: Identity,
        config: NodeConfig,
        addr: &str,
        nat: Option<usize>,
    ) -> usize {
        let mut seed = ChaCha20Rng::seed_from_u64(self.rng.next_u64());
        let node = Node::new(identity, config, self.now, &mut seed);
        self.nodes.push(SimNode {
            node,
            addr: addr.parse().unwrap(),
            nat,
            up: true,
            events: Vec::new(),
            clock_offset: 0,
        });
        let i = self.nodes.len() - 1;
        self.drain(i);
        i
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (self.rng.next_u32() as f64 / u32::MAX as f64) < p
    }

    /// Routes a datagram sent by node `i` to `to`.
    fn route(&mut self, i: usize, to: SocketAddr, data: Vec<u8>, ttl: Option<u8>) {
        self.sent_to.insert((i, to));
        let src_inside = self.nodes[i].addr;
        let realm = self.nodes[i].nat;
        // Same realm, addressed to a node's own address: delivered directly (a LAN).
        if let Some(j) = self
            .nodes
            .iter()
            .position(|n| n.addr == to && n.nat == realm)
        {
            self.schedule(j, src_inside, data);
            return;
        }
        // Leaving through our NAT, if any.
        let src_public = match realm {
            Some(n) => self.nats[n].translate_out(src_inside, to),
            None => src_inside,
        };
        if ttl.is_some_and(|t| t <= 2) && realm.is_some() {
            // The TTL-2 junk opens the local NAT and dies before the far side.
            return;
        }
        // Arriving: a public node, or a NAT's public address.
        if let Some(j) = self
            .nodes
            .iter()
            .position(|n| n.addr == to && n.nat.is_none())
        {
            self.schedule(j, src_public, data);
            return;
        }
        if let Some(n) = self.nats.iter().position(|n| n.public_ip == to.ip())
            && let Some(inside) = self.nats[n].translate_in(src_public, to.port())
            && let Some(j) = self
                .nodes
                .iter()
                .position(|x| x.addr == inside && x.nat == Some(n))
        {
            self.schedule(j, src_public, data);
            return;
        }
        self.dropped += 1;
    }

    fn schedule(&mut self, to_node: usize, from: SocketAddr, data: Vec<u8>) {
        if self.chance(self.loss) {
            self.dropped += 1;
            return;
        }
        let copies = if self.chance(self.duplicate) { 2 } else { 1 };
        for _ in 0..copies {
            let jitter = if self.jitter_ms > 0 {
                (self.rng.next_u32() as i64) % self.jitter_ms
            } else {
                0
            };
            self.seq += 1;
            self.queue.push(Reverse(Delivery {
                at: self.now + self.latency_ms + jitter,
                seq: self.seq,
                to_node,
                from,
                data: data.clone(),
            }));
        }
    }

    /// Moves node `i`'s transmits onto the network and records its events; config requests go
    /// to the node's controller, whose answers go back through the node.
    pub fn drain(&mut self, i: usize) {
        loop {
            while let Some(t) = self.nodes[i].node.poll_transmit() {
                if self.nodes[i].up {
                    self.route(i, t.to, t.data, t.ttl);
                }
            }
            let mut more = false;
            while let Some(e) = self.nodes[i].node.poll_event() {
                if let Event::ConfigRequest {
                    network_id,
                    requester,
                    packet_id,
                    metadata,
                    physical,
                } = &e
                    && let Some(c) = self.controllers.get_mut(&i)
                {
                    let md = Dictionary::parse(metadata).unwrap_or_default();
                    let now = self.now;
                    c.handle_request(
                        now,
                        *network_id,
                        requester,
                        &md,
                        *packet_id,
                        *physical,
                        &mut self.rng,
                    )
                    .unwrap();
                    more = true;
                }
                self.nodes[i].events.push((self.now, e));
            }
            if let Some(c) = self.controllers.get_mut(&i) {
                let node = &mut self.nodes[i].node;
                while let Some(o) = c.poll_output() {
                    more = true;
                    match o {
                        ControllerOutput::Config { to, in_re, chunks } => {
                            if let Some(nwid) = chunks
                                .first()
                                .and_then(|c| weft_wire::NetworkId::from_slice(c))
                            {
                                node.note_controller_authorized(self.now, nwid, to);
                            }
                            node.send_network_config(self.now, to, in_re, &chunks)
                        }
                        ControllerOutput::Error {
                            to,
                            in_re,
                            code,
                            payload,
                        } => node.send_network_config_error(self.now, to, in_re, code, &payload),
                        ControllerOutput::Credentials { to, payload } => {
                            node.send_network_credentials(self.now, to, &payload)
                        }
                        _ => {}
                    }
                }
            }
            if !more {
                return;
            }
        }
    }

    /// Lets the controller on node `i` act (after an admin change), then drains.
    pub fn controller_changed(&mut self, i: usize) {
        self.drain(i);
    }

    /// Frames node `i` wrote to its port for `nwid`, oldest first.
    pub fn tap_frames(&self, i: usize, nwid: weft_wire::NetworkId) -> Vec<Vec<u8>> {
        self.nodes[i]
            .events
            .iter()
            .filter_map(|(_, e)| match e {
                Event::TapFrame { network_id, frame } if *network_id == nwid => Some(frame.clone()),
                _ => None,
            })
            .collect()
    }

    /// Hands node `i` a frame read from its port for `nwid`.
    pub fn tap_send(&mut self, i: usize, nwid: weft_wire::NetworkId, frame: &[u8]) {
        let now = self.node_time(i);
        self.nodes[i].node.handle_tap_frame(now, nwid, frame);
        self.drain(i);
    }

    /// Node `i` joins `nwid`.
    pub fn join(&mut self, i: usize, nwid: weft_wire::NetworkId) {
        let now = self.node_time(i);
        self.nodes[i].node.join(now, nwid, None);
        self.drain(i);
    }

    fn node_time(&self, i: usize) -> Timestamp {
        self.now + self.nodes[i].clock_offset
    }

    /// Runs until virtual time `until`.
    pub fn run_until(&mut self, until: Timestamp) {
        loop {
            let next_delivery = self.queue.peek().map(|Reverse(d)| d.at);
            let next_timer = (0..self.nodes.len())
                .filter(|&i| self.nodes[i].up)
                .map(|i| {
                    (
                        self.nodes[i].node.poll_timeout() - self.nodes[i].clock_offset,
                        i,
                    )
                })
                .min();
            let t = match (next_delivery, next_timer) {
                (Some(d), Some((n, _))) => d.min(n),
                (Some(d), None) => d,
                (None, Some((n, _))) => n,
                (None, None) => until,
            };
            if t > until {
                self.now = until;
                return;
            }
            self.now = t.max(self.now);
            if next_delivery == Some(t) {
                let Reverse(d) = self.queue.pop().unwrap();
                if self.nodes[d.to_node].up {
                    let now = self.node_time(d.to_node);
                    self.nodes[d.to_node].node.handle_datagram(
                        now,
                        LocalSocket(0),
                        d.from,
                        &d.data,
                    );
                    self.delivered += 1;
                    self.drain(d.to_node);
                }
            } else if let Some((_, i)) = next_timer {
                let now = self.node_time(i);
                self.nodes[i].node.handle_timeout(now);
                self.drain(i);
            }
        }
    }

    pub fn run_for(&mut self, ms: i64) {
        let until = self.now + ms;
        self.run_until(until);
    }

    pub fn send_user_message(&mut self, from: usize, to: usize, type_id: u64, data: &[u8]) {
        let dest = self.nodes[to].node.address();
        let now = self.node_time(from);
        self.nodes[from]
            .node
            .send_user_message(now, dest, type_id, data);
        self.drain(from);
    }

    /// User messages node `i` received: (from, type, data).
    pub fn user_messages(&self, i: usize) -> Vec<(weft_wire::Address, u64, Vec<u8>)> {
        self.nodes[i]
            .events
            .iter()
            .filter_map(|(_, e)| match e {
                Event::UserMessage {
                    from,
                    type_id,
                    data,
                } => Some((*from, *type_id, data.clone())),
                _ => None,
            })
            .collect()
    }

    /// Whether node `i` reaches node `j` over a direct path (per `i`'s own state).
    pub fn direct(&self, i: usize, j: usize) -> bool {
        let a = self.nodes[j].node.address();
        self.nodes[i]
            .node
            .peer(a, self.node_time(i))
            .is_some_and(|p| p.is_direct())
    }

    pub fn direct_addr(&self, i: usize, j: usize) -> Option<SocketAddr> {
        let a = self.nodes[j].node.address();
        let p = self.nodes[i].node.peer(a, self.node_time(i))?;
        p.paths.iter().find(|x| x.preferred).map(|x| x.addr)
    }
}
