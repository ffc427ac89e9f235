//! The frame fast path between two engines, with hand-built tables: what goes through, what the
//! rules drop, what is handed to the control plane. spec: vl2.md §6, §7.1, §15.6; vl1.md §3.5, §4

mod common;

use std::net::SocketAddr;

use weft_engine::{Datagram, DropReason, Engine, PathEntry, Tables, TapVerdict, Verdict};
use weft_wire::inet::TrustedPath;
use weft_wire::mac::Mac;
use weft_wire::packet::{self, CipherSuite, Verb};
use weft_wire::rules::{Forward, Rule, RuleKind};
use weft_wire::{Address, NetworkId, PeerKey};

const NWID: NetworkId = NetworkId(0x8056_c2e2_1c00_0001);
const A_ADDR: &str = "10.1.0.1:9993";
const B_ADDR: &str = "10.1.0.2:9993";

fn addr(v: u64) -> Address {
    Address::new(v).unwrap()
}

fn a() -> Address {
    addr(0x11_2233_4455)
}

fn b() -> Address {
    addr(0x66_7788_99aa)
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn rule(kind: RuleKind) -> Rule {
    Rule {
        kind,
        not: false,
        or: false,
    }
}

/// The tables of `me` talking to `peer` at `peer_addr`, with `rules` on the network.
fn tables(
    me: Address,
    peer: Address,
    peer_addr: &str,
    rules: Vec<Rule>,
    suite: CipherSuite,
) -> Tables {
    let path = PathEntry {
        local: 0,
        addr: sa(peer_addr),
    };
    common::one_peer_tables(me, peer, vec![path], suite, None, NWID, rules)
}

fn accept_all() -> Vec<Rule> {
    vec![rule(RuleKind::Accept)]
}

/// An IPv4 frame from `from` to `to` (member MACs) with `len` payload bytes after the header.
fn frame(from: Address, to: Address, proto: u8, len: usize) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&Mac::for_member(to, NWID).0);
    f.extend_from_slice(&Mac::for_member(from, NWID).0);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    let total = 20 + len;
    let mut ip = vec![
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        0,
        0x40,
        0,
        64,
        proto,
        0,
        0,
    ];
    ip.extend_from_slice(&[10, 147, 17, 1, 10, 147, 17, 2]);
    f.extend_from_slice(&ip);
    f.extend((0..len).map(|i| (i * 7) as u8));
    f
}

/// A → B: returns what A's engine did and, for sent frames, B's verdicts on the datagrams.
fn a_to_b(ta: &Tables, tb: &Tables, f: &[u8]) -> (TapVerdict, Vec<Datagram>, Vec<Verdict>) {
    let mut ea = Engine::new(1);
    let mut eb = Engine::new(2);
    let mut out = Vec::new();
    let v = ea.process_tap(ta, 0, NWID, f, &mut out);
    let batch: Vec<(SocketAddr, &[u8])> = out.iter().map(|d| (sa(A_ADDR), &d.data[..])).collect();
    let mut verdicts = Vec::new();
    eb.process_rx(tb, 0, &batch, &mut verdicts);
    (v, out, verdicts)
}

#[test]
fn unicast_frames_cross_with_both_ciphers_and_fragments() {
    for suite in [CipherSuite::AesGmacSiv, CipherSuite::Poly1305Salsa2012] {
        let ta = tables(a(), b(), B_ADDR, accept_all(), suite);
        let tb = tables(b(), a(), A_ADDR, accept_all(), suite);
        for len in [1, 100, 1300, 2700] {
            let f = frame(a(), b(), 17, len);
            let (v, out, verdicts) = a_to_b(&ta, &tb, &f);
            assert_eq!(v, TapVerdict::Sent, "{suite:?} {len}");
            let expect_pieces = if f.len() + 28 > 1432 { 2 } else { 1 };
            assert_eq!(out.len(), expect_pieces, "{suite:?} {len}: datagrams");
            assert!(
                out.iter()
                    .all(|d| d.to == sa(B_ADDR) && d.data.len() <= 1432)
            );
            let delivered: Vec<&Verdict> = verdicts
                .iter()
                .filter(|v| matches!(v, Verdict::TapWrite { .. }))
                .collect();
            assert_eq!(
                delivered,
                vec![&Verdict::TapWrite {
                    network_id: NWID,
                    frame: f.clone()
                }],
                "{suite:?} {len}"
            );
            assert_eq!(
                verdicts.iter().filter(|v| **v == Verdict::Held).count(),
                expect_pieces - 1
            );
        }
    }
}

#[test]
fn rules_drop_and_copies_go_up() {
    // drop ICMP, accept the rest
    let icmp_drop = vec![
        rule(RuleKind::IpProtocol(1)),
        rule(RuleKind::Drop),
        rule(RuleKind::Accept),
    ];
    let ta = tables(a(), b(), B_ADDR, icmp_drop.clone(), CipherSuite::AesGmacSiv);
    let tb = tables(b(), a(), A_ADDR, icmp_drop, CipherSuite::AesGmacSiv);
    let (v, out, _) = a_to_b(&ta, &tb, &frame(a(), b(), 1, 56));
    assert_eq!((v, out.len()), (TapVerdict::Drop(DropReason::Filtered), 0));
    let (v, _, verdicts) = a_to_b(&ta, &tb, &frame(a(), b(), 6, 56));
    assert_eq!(v, TapVerdict::Sent);
    assert!(matches!(verdicts[0], Verdict::TapWrite { .. }));

    // the receiver's rules apply too: A accepts everything, B drops ICMP
    let ta = tables(a(), b(), B_ADDR, accept_all(), CipherSuite::AesGmacSiv);
    let (v, _, verdicts) = a_to_b(&ta, &tb, &frame(a(), b(), 1, 56));
    assert_eq!(v, TapVerdict::Sent);
    assert_eq!(verdicts, vec![Verdict::Drop(DropReason::Filtered)]);

    // TEE asks for a copy: the control plane does that, on both sides
    let tee = vec![
        rule(RuleKind::Tee(Forward {
            address: addr(0x99_9999_9999),
            flags: 0,
            length: 0,
        })),
        rule(RuleKind::Accept),
    ];
    let ta_tee = tables(a(), b(), B_ADDR, tee.clone(), CipherSuite::AesGmacSiv);
    let (v, out, _) = a_to_b(&ta_tee, &tb, &frame(a(), b(), 6, 56));
    assert_eq!((v, out.len()), (TapVerdict::Up, 0));
    let tb_tee = tables(b(), a(), A_ADDR, tee, CipherSuite::AesGmacSiv);
    let (v, _, verdicts) = a_to_b(&ta, &tb_tee, &frame(a(), b(), 6, 56));
    assert_eq!((v, &verdicts[..]), (TapVerdict::Sent, &[Verdict::Up][..]));
}

#[test]
fn what_the_fast_path_hands_up() {
    let ta = tables(a(), b(), B_ADDR, accept_all(), CipherSuite::AesGmacSiv);
    let tb = tables(b(), a(), A_ADDR, accept_all(), CipherSuite::AesGmacSiv);
    let mut e = Engine::new(3);
    let mut out = Vec::new();
    // broadcast, multicast, bridged (foreign source MAC), to ourselves, unknown network
    let mut bcast = frame(a(), b(), 17, 10);
    bcast[..6].copy_from_slice(&[0xff; 6]);
    let mut bridged = frame(a(), b(), 17, 10);
    bridged[6..12].copy_from_slice(&[0x02, 1, 2, 3, 4, 5]);
    for f in [bcast, bridged, frame(a(), a(), 17, 10)] {
        assert_eq!(e.process_tap(&ta, 0, NWID, &f, &mut out), TapVerdict::Up);
    }
    assert_eq!(
        e.process_tap(&ta, 0, NetworkId(1), &frame(a(), b(), 17, 10), &mut out),
        TapVerdict::Up
    );
    assert_eq!(
        e.process_tap(&ta, 0, NWID, &[0u8; 8], &mut out),
        TapVerdict::Drop(DropReason::BadFrame)
    );
    // our credentials not pushed yet, or no direct path: up
    let mut unpushed = ta.clone();
    unpushed
        .networks
        .get_mut(&NWID)
        .unwrap()
        .members
        .get_mut(&b())
        .unwrap()
        .pushed = false;
    let mut no_path = ta.clone();
    no_path.peers.get_mut(&b()).unwrap().preferred = None;
    for t in [&unpushed, &no_path] {
        assert_eq!(
            e.process_tap(t, 0, NWID, &frame(a(), b(), 17, 10), &mut out),
            TapVerdict::Up
        );
    }
    assert!(out.is_empty());
    assert_eq!(e.stats().frames_up, 6);

    // receive side: unknown path, sender not a member, other verbs, tampering → up
    let (_, sent, _) = a_to_b(&ta, &tb, &frame(a(), b(), 17, 10));
    let dg = &sent[0].data;
    let mut eb = Engine::new(4);
    let mut v = Vec::new();
    eb.process_rx(&tb, 0, &[(sa("10.9.9.9:9993"), &dg[..])], &mut v);
    assert_eq!(v, vec![Verdict::Up], "unknown path");
    let mut not_member = tb.clone();
    not_member.networks.get_mut(&NWID).unwrap().members.clear();
    eb.process_rx(&not_member, 0, &[(sa(A_ADDR), &dg[..])], &mut v);
    assert_eq!(v, vec![Verdict::Up], "gate");
    let mut tampered = dg.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    eb.process_rx(&tb, 0, &[(sa(A_ADDR), &tampered[..])], &mut v);
    assert_eq!(
        v,
        vec![Verdict::Up],
        "MAC failure: the control plane counts it"
    );
    let key = PeerKey::from_bytes(&[0x5a; 48]);
    let mut echo = packet::build([9; 8], b(), a(), Verb::ECHO, &[1, 2, 3]);
    weft_wire::armor::armor(&mut echo, &key, CipherSuite::AesGmacSiv).unwrap();
    eb.process_rx(&tb, 0, &[(sa(A_ADDR), &echo[..])], &mut v);
    assert_eq!(v, vec![Verdict::Up], "not a frame");
    // a fragmented non-frame packet is reassembled and handed up whole
    let mut big = packet::build([8; 8], b(), a(), Verb::ECHO, &[7u8; 3000]);
    big[18] |= packet::FLAG_FRAGMENTED;
    weft_wire::armor::armor(&mut big, &key, CipherSuite::AesGmacSiv).unwrap();
    let f = weft_wire::fragment::Fragmenter::new(&big, 1432).unwrap();
    let pieces: Vec<Vec<u8>> = std::iter::once(f.head().to_vec())
        .chain((1..f.total()).filter_map(|n| f.fragment(n)))
        .collect();
    let batch: Vec<(SocketAddr, &[u8])> = pieces.iter().map(|p| (sa(A_ADDR), &p[..])).collect();
    eb.process_rx(&tb, 0, &batch, &mut v);
    assert_eq!(v.len(), 3);
    assert_eq!(&v[..2], &[Verdict::Held, Verdict::Held]);
    assert_eq!(v[2], Verdict::UpPacket(big));

    // activity: the path and the member frames came from
    let (_, sent, _) = a_to_b(&ta, &tb, &frame(a(), b(), 17, 10));
    eb.process_rx(&tb, 0, &[(sa(A_ADDR), &sent[0].data[..])], &mut v);
    let act = eb.take_activity();
    assert_eq!(act.received, vec![(NWID, a())]);
    assert_eq!(act.paths.len(), 1);
    assert!(eb.take_activity().is_empty());
}

#[test]
fn trusted_paths_use_cipher_two_both_ways() {
    let tp = TrustedPath {
        network: "10.1.0.0".parse().unwrap(),
        prefix: 24,
        id: 0x1234,
    };
    let mut ta = tables(a(), b(), B_ADDR, accept_all(), CipherSuite::AesGmacSiv);
    let mut tb = tables(b(), a(), A_ADDR, accept_all(), CipherSuite::AesGmacSiv);
    ta.trusted_paths.push(tp.clone());
    tb.trusted_paths.push(tp);
    let f = frame(a(), b(), 17, 200);
    let (v, out, verdicts) = a_to_b(&ta, &tb, &f);
    assert_eq!(v, TapVerdict::Sent);
    let p = packet::Packet::new_checked(&out[0].data[..]).unwrap();
    assert_eq!(p.cipher_id(), 2, "cipher 2 on a trusted network");
    assert_eq!(
        verdicts,
        vec![Verdict::TapWrite {
            network_id: NWID,
            frame: f.clone()
        }]
    );
    // a receiver without the trusted network refuses to take it on the fast path
    let tb_plain = tables(b(), a(), A_ADDR, accept_all(), CipherSuite::AesGmacSiv);
    let (_, _, verdicts) = a_to_b(&ta, &tb_plain, &f);
    assert_eq!(verdicts, vec![Verdict::Up]);
}

/// Hostile input never panics the engine: mutated real datagrams (every byte position, random
/// values), truncations, and random garbage, into a receiving engine with a network configured;
/// random frames into the sending side.
#[test]
fn hostile_datagrams_and_frames_never_panic() {
    let ta = tables(a(), b(), B_ADDR, accept_all(), CipherSuite::AesGmacSiv);
    let tb = tables(b(), a(), A_ADDR, accept_all(), CipherSuite::AesGmacSiv);
    let mut seeds = Vec::new();
    for len in [10, 1300, 2700] {
        let (_, out, _) = a_to_b(&ta, &tb, &frame(a(), b(), 17, len));
        seeds.extend(out.into_iter().map(|d| d.data));
    }
    let mut x: u64 = 0x243f_6a88_85a3_08d3;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut e = Engine::new(9);
    let mut v = Vec::new();
    let mut cases = 0usize;
    for seed in &seeds {
        for i in 0..seed.len() {
            let mut d = seed.clone();
            d[i] = next() as u8;
            e.process_rx(&tb, cases as i64, &[(sa(A_ADDR), &d[..])], &mut v);
            cases += 1;
        }
        for n in 0..seed.len().min(64) {
            e.process_rx(&tb, 0, &[(sa(A_ADDR), &seed[..n])], &mut v);
            cases += 1;
        }
    }
    let mut out = Vec::new();
    for _ in 0..5000 {
        let len = (next() % 3000) as usize;
        let g: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        e.process_rx(&tb, 0, &[(sa(A_ADDR), &g[..])], &mut v);
        let _ = e.process_tap(&ta, 0, NWID, &g, &mut out);
        cases += 2;
    }
    assert!(cases > 10_000, "{cases} cases");
}
