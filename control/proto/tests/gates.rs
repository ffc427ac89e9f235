//! Rate gates on the receiving side, driven with hand-built packets from a known peer.
//! spec: vl1.md §5.7, §5.8, §8.9, §8.11

mod sim;

use std::net::SocketAddr;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sim::{T0, identities, planet};
use weft_proto::{LocalSocket, Node, NodeConfig, Transmit};
use weft_wire::inet::PathRecord;
use weft_wire::packet::{self, Packet, Verb};
use weft_wire::verbs::{Hello, PushDirectPaths};
use weft_wire::{CipherSuite, Identity, InetAddress, armor};

struct Bench {
    node: Node,
    me: Identity,
    peer: Identity,
    from: SocketAddr,
    next_id: u64,
}

impl Bench {
    /// A node that has accepted a HELLO from `peer` (so it knows the peer and its version).
    fn new() -> Bench {
        let ids = identities(2);
        let (me, peer) = (ids[0].clone(), ids[1].clone());
        let w = planet(&[(&me, "10.0.0.1:9993".parse().unwrap())]);
        let mut node = Node::new(
            me.clone(),
            NodeConfig::new(w),
            T0,
            &mut ChaCha20Rng::seed_from_u64(5),
        );
        let from: SocketAddr = "10.0.0.2:9993".parse().unwrap();
        let hello = Hello {
            protocol_version: 12,
            major: 1,
            minor: 14,
            revision: 1,
            timestamp: T0 as u64,
            identity: peer.to_public(),
            destination: Some(InetAddress::Ip("10.0.0.1:9993".parse().unwrap())),
            planet: Some((0, 0)),
            encrypted_tail: Vec::new(),
        };
        let p = hello
            .to_packet([9; 8], me.address(), &[], &peer.agree(&me).unwrap())
            .unwrap();
        node.handle_datagram(T0, LocalSocket(0), from, &p);
        let mut b = Bench {
            node,
            me,
            peer,
            from,
            next_id: 1,
        };
        b.drain();
        b
    }

    fn drain(&mut self) -> Vec<Transmit> {
        std::iter::from_fn(|| self.node.poll_transmit()).collect()
    }

    fn send(&mut self, now: i64, verb: Verb, payload: &[u8]) -> Vec<Transmit> {
        self.next_id += 1;
        let mut p = packet::build(
            self.next_id.to_be_bytes(),
            self.me.address(),
            self.peer.address(),
            verb,
            payload,
        );
        armor(
            &mut p,
            &self.peer.agree(&self.me).unwrap(),
            CipherSuite::AesGmacSiv,
        )
        .unwrap();
        self.node
            .handle_datagram(now, LocalSocket(0), self.from, &p);
        self.drain()
    }

    fn verbs(&self, out: &[Transmit]) -> Vec<Verb> {
        let key = self.peer.agree(&self.me).unwrap();
        out.iter()
            .filter(|t| t.data.len() >= 28)
            .map(|t| {
                let mut d = t.data.clone();
                armor::dearmor(&mut d, &key).expect("addressed to the peer");
                Packet::new_checked(&d[..]).unwrap().verb()
            })
            .collect()
    }
}

#[test]
fn echo_is_answered_once_per_path_per_166_ms() {
    let mut b = Bench::new();
    let mut oks = 0;
    for i in 0..10 {
        let out = b.send(T0 + 1_000 + i * 5, Verb::ECHO, b"x");
        oks += b.verbs(&out).iter().filter(|v| **v == Verb::OK).count();
    }
    assert_eq!(oks, 1, "10 ECHOs in 50 ms → one OK");
    let out = b.send(T0 + 1_200, Verb::ECHO, b"y");
    assert_eq!(b.verbs(&out), vec![Verb::OK], "answered again after 166 ms");
}

#[test]
fn beacon_replies_are_gated_globally() {
    let mut b = Bench::new();
    let mut beacon = vec![0u8; 8];
    beacon.extend_from_slice(&b.peer.address().to_bytes());
    let at = |b: &mut Bench, t: i64| {
        b.node.handle_datagram(t, LocalSocket(0), b.from, &beacon);
        let out = b.drain();
        b.verbs(&out)
    };
    assert_eq!(at(&mut b, T0 + 1_000), vec![Verb::NOP]);
    assert!(at(&mut b, T0 + 2_000).is_empty(), "within 2.5 s");
    assert_eq!(at(&mut b, T0 + 4_000), vec![Verb::NOP]);
}

#[test]
fn push_direct_paths_is_rate_limited_and_probes_new_addresses() {
    let mut b = Bench::new();
    let mut probed = Vec::new();
    for i in 0..12u8 {
        let mut payload = Vec::new();
        PushDirectPaths {
            records: vec![PathRecord {
                flags: 0,
                address: Some(format!("10.5.0.{}:9993", i + 1).parse().unwrap()),
            }],
        }
        .encode(&mut payload);
        let out = b.send(
            T0 + 1_000 + i64::from(i) * 1_000,
            Verb::PUSH_DIRECT_PATHS,
            &payload,
        );
        probed.extend(
            out.into_iter()
                .filter(|t| t.to.ip().to_string().starts_with("10.5."))
                .map(|t| t.to),
        );
    }
    // The counter allows processing while fewer than 8 arrived within rolling 30 s gaps.
    assert_eq!(probed.len(), 8, "{probed:?}");
    // A forgotten path (flag 0x01) and an unusable address are never probed.
    let mut payload = Vec::new();
    PushDirectPaths {
        records: vec![
            PathRecord {
                flags: PathRecord::FLAG_FORGET,
                address: Some("10.6.0.1:9993".parse().unwrap()),
            },
            PathRecord {
                flags: 0,
                address: Some("127.0.0.1:9993".parse().unwrap()),
            },
        ],
    }
    .encode(&mut payload);
    let out = b.send(T0 + 100_000, Verb::PUSH_DIRECT_PATHS, &payload);
    assert!(
        out.iter()
            .all(|t| !t.to.ip().is_loopback() && t.to.ip().to_string() != "10.6.0.1"),
        "{out:?}"
    );
}

#[test]
fn packets_queued_for_a_peer_without_route_expire_after_5_s() {
    let mut b = Bench::new();
    // The peer is known (its HELLO was accepted) but has no confirmed path, and this node is
    // itself the only root: nothing can carry the message.
    let dest = b.peer.address();
    b.node
        .send_user_message(T0 + 1_000, dest, 0x1_0000, b"nowhere to go");
    assert!(b.drain().iter().all(|t| t.to != b.from
        || t.data.len() < 28
        || b.verbs(std::slice::from_ref(t)) != vec![Verb::USER_MESSAGE]));
    let mut now = T0 + 1_000;
    while now < T0 + 8_000 {
        now += 500;
        b.node.handle_timeout(now);
        b.drain();
    }
    assert!(b.node.stats().queue_drops >= 1, "{:?}", b.node.stats());
    assert!(
        b.node.poll_timeout() - now > 500,
        "no more 500 ms queue retries once it expired"
    );
}
