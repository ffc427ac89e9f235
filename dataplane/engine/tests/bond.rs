//! Multipath bonding on the fast path: for each policy, which path(s) the engine sends a frame
//! on, and broadcast copies written to the TAP once. spec: vl1.md §9.1

mod common;

use std::net::SocketAddr;

use weft_engine::{
    BondEntry, BondKind, Datagram, DropReason, Engine, PathEntry, Tables, TapVerdict, Verdict,
};
use weft_wire::mac::Mac;
use weft_wire::packet::CipherSuite;
use weft_wire::rules::{Rule, RuleKind};
use weft_wire::{Address, NetworkId};

const NWID: NetworkId = NetworkId(0x8056_c2e2_1c00_0002);
const A_PATHS: [&str; 2] = ["10.61.1.1:9993", "10.61.2.1:9993"];
const B_PATHS: [&str; 2] = ["10.61.1.2:9993", "10.61.2.2:9993"];

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
fn paths(addrs: [&str; 2]) -> Vec<PathEntry> {
    addrs
        .iter()
        .enumerate()
        .map(|(i, s)| PathEntry {
            local: i as u32,
            addr: sa(s),
        })
        .collect()
}

/// `me`'s tables with `peer` reachable on two paths, bonded with `bond`.
fn tables(me: Address, peer: Address, peer_paths: [&str; 2], bond: Option<BondEntry>) -> Tables {
    let rules = vec![Rule {
        kind: RuleKind::Accept,
        not: false,
        or: false,
    }];
    common::one_peer_tables(
        me,
        peer,
        paths(peer_paths),
        CipherSuite::AesGmacSiv,
        bond,
        NWID,
        rules,
    )
}

fn bond(kind: BondKind, peer_paths: [&str; 2]) -> BondEntry {
    BondEntry {
        kind,
        paths: paths(peer_paths),
        weights: Vec::new(),
        mtus: Vec::new(),
        qos_interval_ms: 2_000,
        packets_per_link: 4,
    }
}

/// A TCP/IPv4 frame from A to B with the given ports.
fn tcp_frame(sport: u16, dport: u16) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&Mac::for_member(b(), NWID).0);
    f.extend_from_slice(&Mac::for_member(a(), NWID).0);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    let mut ip = vec![0x45, 0, 0, 60, 0, 0, 0x40, 0, 64, 6, 0, 0];
    ip.extend_from_slice(&[10, 147, 17, 1, 10, 147, 17, 2]);
    ip.extend_from_slice(&sport.to_be_bytes());
    ip.extend_from_slice(&dport.to_be_bytes());
    ip.resize(40, 0);
    f.extend_from_slice(&ip);
    f
}

fn send(e: &mut Engine, t: &Tables, f: &[u8]) -> Vec<Datagram> {
    let mut out = Vec::new();
    assert_eq!(e.process_tap(t, 0, NWID, f, &mut out), TapVerdict::Sent);
    out
}

fn dest_index(d: &Datagram) -> usize {
    B_PATHS.iter().position(|p| sa(p) == d.to).unwrap()
}

#[test]
fn active_backup_uses_the_first_eligible_path() {
    let mut e = Engine::new(1);
    let mut b0 = bond(BondKind::ActiveBackup, B_PATHS);
    b0.paths.reverse(); // the active path is the second link
    let t = tables(a(), b(), B_PATHS, Some(b0));
    for port in 0..20 {
        let out = send(&mut e, &t, &tcp_frame(40000 + port, 80));
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].to, out[0].local), (sa(B_PATHS[1]), 1));
    }
}

#[test]
fn no_eligible_path_falls_back_to_preferred() {
    let mut e = Engine::new(1);
    let mut b0 = bond(BondKind::BalanceRr, B_PATHS);
    b0.paths.clear();
    let t = tables(a(), b(), B_PATHS, Some(b0));
    let out = send(&mut e, &t, &tcp_frame(1, 2));
    assert_eq!(out[0].to, sa(B_PATHS[0]));
}

#[test]
fn balance_rr_rotates_every_packets_per_link_frames() {
    let mut e = Engine::new(1);
    let t = tables(a(), b(), B_PATHS, Some(bond(BondKind::BalanceRr, B_PATHS)));
    let seq: Vec<usize> = (0..16)
        .map(|_| dest_index(&send(&mut e, &t, &tcp_frame(5000, 80))[0]))
        .collect();
    assert_eq!(seq, [0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1]);
}

#[test]
fn balance_rr_keeps_its_position_across_expiry_at_low_rates() {
    // One frame a second with packetsPerLink 4: the rotation goes on (the engine's periodic
    // expiry must not reset it to the first path).
    let mut e = Engine::new(1);
    let t = tables(a(), b(), B_PATHS, Some(bond(BondKind::BalanceRr, B_PATHS)));
    let mut seq = Vec::new();
    for s in 0..16i64 {
        e.expire(s * 1_000);
        let mut out = Vec::new();
        assert_eq!(
            e.process_tap(&t, s * 1_000, NWID, &tcp_frame(40000, 80), &mut out),
            TapVerdict::Sent
        );
        seq.push(dest_index(&out[0]));
    }
    assert_eq!(seq, [0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1]);
}

#[test]
fn balance_rr_with_zero_packets_per_link_picks_a_random_path_per_frame() {
    let mut e = Engine::new(1);
    let mut b0 = bond(BondKind::BalanceRr, B_PATHS);
    b0.packets_per_link = 0;
    let t = tables(a(), b(), B_PATHS, Some(b0));
    let seq: Vec<usize> = (0..400)
        .map(|_| dest_index(&send(&mut e, &t, &tcp_frame(40000, 80))[0]))
        .collect();
    let ones = seq.iter().filter(|i| **i == 1).count();
    assert!((140..260).contains(&ones), "{ones} of 400");
    // Not a fixed rotation: some frame follows one on the same path, and some on the other.
    assert!(seq.windows(2).any(|w| w[0] == w[1]) && seq.windows(2).any(|w| w[0] != w[1]));
}

#[test]
fn balance_xor_keeps_a_flow_on_one_path_and_spreads_flows() {
    for kind in [BondKind::BalanceXor, BondKind::BalanceAware] {
        let mut e = Engine::new(1);
        let t = tables(a(), b(), B_PATHS, Some(bond(kind, B_PATHS)));
        let mut per_path = [0usize; 2];
        for port in 0..200u16 {
            let first = dest_index(&send(&mut e, &t, &tcp_frame(30000 + port, 443))[0]);
            for _ in 0..5 {
                let again = dest_index(&send(&mut e, &t, &tcp_frame(30000 + port, 443))[0]);
                assert_eq!(again, first, "{kind:?}: a flow changed path");
            }
            per_path[first] += 1;
        }
        assert!(per_path.iter().all(|n| *n > 60), "{kind:?}: {per_path:?}");
    }
}

#[test]
fn balance_aware_follows_weights() {
    let mut e = Engine::new(1);
    let mut b0 = bond(BondKind::BalanceAware, B_PATHS);
    b0.weights = vec![65535 / 5 * 4, 65535 / 5];
    let t = tables(a(), b(), B_PATHS, Some(b0));
    let mut per_path = [0usize; 2];
    for port in 0..1000u16 {
        per_path[dest_index(&send(&mut e, &t, &tcp_frame(20000 + port, 22))[0])] += 1;
    }
    // Placed by flow count against the shares, not by hash: exactly 4:1.
    assert_eq!(per_path, [800, 200]);
}

#[test]
fn activity_reports_bonded_frames_and_flows_then_zero_once_flows_expire() {
    let mut e = Engine::new(1);
    let t = tables(
        a(),
        b(),
        B_PATHS,
        Some(bond(BondKind::BalanceAware, B_PATHS)),
    );
    e.expire(1_000);
    for port in 0..6u16 {
        for _ in 0..3 {
            send(&mut e, &t, &tcp_frame(40000 + port, 80));
        }
    }
    let act = e.take_activity();
    assert_eq!(act.bonded.len(), 2, "{act:?}");
    for r in &act.bonded {
        assert_eq!(r.peer, b());
        assert_eq!((r.frames, r.flows), (9, 3), "{r:?}");
    }
    // Nothing sent since: frames 0, flows still held.
    let act = e.take_activity();
    assert!(
        act.bonded.iter().all(|r| r.frames == 0 && r.flows == 3),
        "{act:?}"
    );
    // The flows expire: one last report of 0 flows per path, then silence.
    e.expire(1_000 + weft_engine::bond::FLOW_EXPIRY_MS);
    let act = e.take_activity();
    assert_eq!(act.bonded.len(), 2, "{act:?}");
    assert!(
        act.bonded.iter().all(|r| r.frames == 0 && r.flows == 0),
        "{act:?}"
    );
    assert!(e.take_activity().bonded.is_empty());
}

#[test]
fn broadcast_sends_one_packet_on_every_path_and_the_receiver_writes_it_once() {
    let mut ea = Engine::new(1);
    let mut eb = Engine::new(2);
    let ta = tables(a(), b(), B_PATHS, Some(bond(BondKind::Broadcast, B_PATHS)));
    let tb = tables(b(), a(), A_PATHS, Some(bond(BondKind::Broadcast, A_PATHS)));
    for n in 0..10u16 {
        let f = tcp_frame(1000 + n, 80);
        let out = send(&mut ea, &ta, &f);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].data, out[1].data, "copies share the packet id");
        assert_ne!(out[0].to, out[1].to);
        // Each copy arrives from A's address on the matching link.
        let batch: Vec<(SocketAddr, &[u8])> = out
            .iter()
            .map(|d| (sa(A_PATHS[dest_index(d)]), &d.data[..]))
            .collect();
        let mut verdicts = Vec::new();
        eb.process_rx(&tb, 0, &batch, &mut verdicts);
        assert_eq!(
            verdicts,
            vec![
                Verdict::TapWrite {
                    network_id: NWID,
                    frame: f.clone()
                },
                Verdict::Drop(DropReason::Duplicate)
            ]
        );
    }
    // Both links are reported alive to the control plane.
    let activity = eb.take_activity();
    assert_eq!(activity.paths.len(), 2);
}

#[test]
fn qos_samples_are_reported_both_ways_and_split_into_records() {
    use weft_engine::bond::{qos_priority, qos_sampled};
    let mut ea = Engine::new(101);
    let mut eb = Engine::new(202);
    let ta = tables(a(), b(), B_PATHS, Some(bond(BondKind::BalanceRr, B_PATHS)));
    let tb = tables(b(), a(), A_PATHS, Some(bond(BondKind::BalanceRr, A_PATHS)));
    ea.expire(5_000);
    let mut on_wire = Vec::new();
    let mut per_path = [0usize; 2];
    let mut expect = Vec::new();
    for port in 0..1200u16 {
        for d in send(&mut ea, &ta, &tcp_frame(50000 + port, 80)) {
            let id = u64::from_be_bytes(d.data[..8].try_into().unwrap());
            on_wire.push(id);
            // Per path (budget 1120 a second at a 2 s QoS interval): the first 560 frames'
            // sampled ids, then priority ones only.
            let n = &mut per_path[dest_index(&d)];
            *n += 1;
            if qos_sampled(id) && (*n <= 560 || qos_priority(id)) {
                expect.push(id);
            }
            let mut v = Vec::new();
            eb.process_rx(
                &tb,
                6_000,
                &[(sa(A_PATHS[dest_index(&d)]), &d.data)],
                &mut v,
            );
        }
    }
    let sent = ea.take_activity();
    // A slow start: every sampled id of the first frames, then priority ones only.
    assert!(!sent.qos_sent.is_empty());
    assert!(
        sent.qos_sent
            .iter()
            .all(|q| qos_sampled(q.packet_id) && q.peer == b())
    );
    assert!(sent.qos_sent.iter().all(|q| q.at_ms == 5_000));
    let kept: Vec<u64> = sent.qos_sent.iter().map(|q| q.packet_id).collect();
    assert_eq!(kept, expect);
    assert!(kept.len() < on_wire.len() / 2);
    // The receiver reports every sampled id it got (under its cap), at its clock.
    let got = eb.take_activity();
    let reported: Vec<u64> = got.qos_received.iter().map(|q| q.packet_id).collect();
    assert_eq!(
        reported.len(),
        on_wire.iter().filter(|i| qos_sampled(**i)).count()
    );
    assert!(kept.iter().all(|i| reported.contains(i)));
    assert!(
        got.qos_received
            .iter()
            .all(|q| q.at_ms == 6_000 && q.peer == a())
    );
    assert_eq!(got.now_ms, 6_000);
    // Split into records of at most 50 samples, nothing lost.
    let total = got.qos_received.len();
    let parts = got.clone().split(50);
    assert_eq!(parts.len(), total.div_ceil(50));
    assert!(
        parts
            .iter()
            .all(|p| p.qos_sent.len() + p.qos_received.len() <= 50)
    );
    assert_eq!(
        parts.iter().map(|p| p.qos_received.len()).sum::<usize>(),
        total
    );
    assert_eq!(parts[0].paths, got.paths);
    assert!(
        parts[1..]
            .iter()
            .all(|p| p.paths.is_empty() && p.now_ms == 6_000)
    );
}

#[test]
fn a_link_mtu_fragments_on_that_link_and_the_receiver_reassembles() {
    let mut ea = Engine::new(7);
    let mut eb = Engine::new(8);
    let mut b0 = bond(BondKind::BalanceRr, B_PATHS);
    b0.packets_per_link = 1;
    b0.mtus = vec![600, 0];
    let ta = tables(a(), b(), B_PATHS, Some(b0));
    let tb = tables(b(), a(), A_PATHS, Some(bond(BondKind::BalanceRr, A_PATHS)));
    let mut big = tcp_frame(40000, 80);
    big.resize(14 + 1300, 0x77);
    let mut written = 0;
    for _ in 0..4 {
        let out = send(&mut ea, &ta, &big);
        let link = dest_index(&out[0]);
        assert!(out.iter().all(|d| dest_index(d) == link));
        if link == 0 {
            // 1300 bytes of frame at 600: a head and two fragments, none over 600.
            assert_eq!(
                out.len(),
                3,
                "{:?}",
                out.iter().map(|d| d.data.len()).collect::<Vec<_>>()
            );
            assert!(out.iter().all(|d| d.data.len() <= 600));
        } else {
            // The tables' MTU (1432 by default): not fragmented.
            assert_eq!(out.len(), 1);
        }
        for d in &out {
            let mut v = Vec::new();
            eb.process_rx(&tb, 0, &[(sa(A_PATHS[link]), &d.data)], &mut v);
            if let Some(Verdict::TapWrite { frame, .. }) = v.first() {
                assert_eq!(frame[14..], big[14..]);
                written += 1;
            }
        }
    }
    assert_eq!(written, 4);
    // An MTU too small to carry the packet in at most 16 pieces: the tables' MTU instead.
    let mut tiny = bond(BondKind::ActiveBackup, B_PATHS);
    tiny.mtus = vec![68, 68];
    let t = tables(a(), b(), B_PATHS, Some(tiny));
    let out = send(&mut ea, &t, &big);
    assert_eq!(out.len(), 1);
}
