//! Bond scenarios in virtual time (no I/O).

use std::collections::BTreeMap;

use serde_json::json;
use weft_wire::packet::Verb;
use weft_wire::verbs::QosMeasurement;

use super::*;

fn key(n: u32) -> PathKey {
    PathKey {
        local: LocalSocket(n),
        remote: format!("198.18.{n}.2:9993").parse().unwrap(),
    }
}

fn policy_from(doc: serde_json::Value, name: &str) -> BondPolicy {
    BondingConfig::from_local_conf(&doc)
        .unwrap()
        .policy(name)
        .unwrap()
}

/// A bond with paths 0..n on interfaces eth0..eth{n-1}, all receiving from t=0 to t=`warm`.
fn bond_with(policy: BondPolicy, n: u32, warm: i64) -> (Bond, Vec<PathKey>, i64) {
    let mut b = Bond::new(policy, 0, 7);
    let keys: Vec<PathKey> = (0..n).map(key).collect();
    for (i, k) in keys.iter().enumerate() {
        b.add_path(0, *k, &format!("eth{i}"));
    }
    let mut id = 0u64;
    let mut t = 0;
    while t <= warm {
        for k in &keys {
            id += 2;
            b.on_received(t, k, id, Verb::FRAME);
        }
        b.handle_timeout(t);
        t += 100;
    }
    (b, keys, t)
}

/// Advances from `t` to `until` in 100 ms steps; the paths in `live` receive every step. Returns
/// the path chosen at each step (for `FlowId::NONE`).
fn run(
    b: &mut Bond,
    keys: &[PathKey],
    live: &[bool],
    t: &mut i64,
    until: i64,
) -> Vec<(i64, Vec<PathKey>)> {
    let mut out = Vec::new();
    while *t < until {
        for (k, up) in keys.iter().zip(live) {
            if *up {
                b.on_received(*t, k, 2, Verb::FRAME);
            }
        }
        b.handle_timeout(*t);
        while b.poll_action().is_some() {}
        out.push((*t, b.paths_for(*t, FlowId::NONE).paths().to_vec()));
        *t += 100;
    }
    out
}

fn first_time_on(trace: &[(i64, Vec<PathKey>)], k: PathKey) -> Option<i64> {
    trace.iter().find(|(_, p)| p == &[k]).map(|(t, _)| *t)
}

#[test]
fn active_backup_fails_over_and_back_always() {
    let (mut b, k, mut t) = bond_with(BondPolicy::standard(BasePolicy::ActiveBackup), 2, 10_000);
    assert_eq!(b.paths_for(t, FlowId::NONE), PathChoice::One(k[0]));
    let last_rx = t - 100;
    // Path 0 stops receiving.
    let trace = run(&mut b, &k, &[false, true], &mut t, 20_000);
    let switched = first_time_on(&trace, k[1]).unwrap();
    let fi = 5_000;
    let check = b.monitor_interval();
    assert!(switched - last_rx > fi, "not before the failover interval");
    assert!(
        switched - last_rx <= fi + check,
        "within failoverInterval + one check ({})",
        switched - last_rx
    );
    assert!(
        trace.iter().all(|(_, p)| p.len() == 1),
        "never without a path"
    );
    let info = b.info(t);
    assert_eq!(info.paths[0].state, LinkState::Down);
    assert_eq!(info.paths[1].state, LinkState::Up);
    assert_eq!(
        (info.alive_links, info.total_links, info.failovers),
        (1, 2, 1)
    );
    // Path 0 comes back at 20 s: `always` returns to it once its refractory period (8 s from
    // becoming ineligible) is over.
    let back = t;
    let trace = run(&mut b, &k, &[true, true], &mut t, 40_000);
    let failback = first_time_on(&trace, k[0]).unwrap();
    let ineligible_at = switched; // the same evaluation that moved traffic
    assert!(failback >= ineligible_at + REFRACTORY_MS, "{failback}");
    assert!(failback <= (ineligible_at + REFRACTORY_MS).max(back) + check);
    assert_eq!(b.info(t).paths[1].state, LinkState::Standby);
    assert_eq!(b.info(t).failovers, 2);
}

#[test]
fn active_backup_failure_and_better() {
    // failure: stays on the backup when the primary returns; goes back only when it fails.
    let doc = json!({"settings": {"policies": {
        "f": {"basePolicy": "active-backup", "activeReselect": "failure"},
        "b": {"basePolicy": "active-backup", "activeReselect": "better"},
        "b2": {"basePolicy": "active-backup", "linkSelectMethod": "better",
               "links": {"eth0": {"capacity": 1000}, "eth1": {"capacity": 100}}}
    }}});
    let (mut b, k, mut t) = bond_with(policy_from(doc.clone(), "f"), 2, 5_000);
    run(&mut b, &k, &[false, true], &mut t, 15_000);
    assert_eq!(b.paths_for(t, FlowId::NONE), PathChoice::One(k[1]));
    let trace = run(&mut b, &k, &[true, true], &mut t, 60_000);
    assert!(trace.iter().all(|(_, p)| p == &[k[1]]), "no failback");
    let trace = run(&mut b, &k, &[true, false], &mut t, 70_000);
    assert_eq!(trace.last().unwrap().1, [k[0]]);

    // better, equal links: no failback.
    let (mut b, k, mut t) = bond_with(policy_from(doc.clone(), "b"), 2, 5_000);
    run(&mut b, &k, &[false, true], &mut t, 15_000);
    let trace = run(&mut b, &k, &[true, true], &mut t, 60_000);
    assert!(trace.iter().all(|(_, p)| p == &[k[1]]));
    // better, the primary is ten times the capacity: failback.
    let (mut b, k, mut t) = bond_with(policy_from(doc, "b2"), 2, 5_000);
    run(&mut b, &k, &[false, true], &mut t, 15_000);
    assert_eq!(b.paths_for(t, FlowId::NONE), PathChoice::One(k[1]));
    let trace = run(&mut b, &k, &[true, true], &mut t, 60_000);
    assert_eq!(trace.last().unwrap().1, [k[0]]);
}

#[test]
fn custom_policy_overrides_timing_and_follows_failover_to() {
    // eth0 fails over to eth2 although eth1 ranks higher; 1 s failover interval, 500 ms down delay.
    let doc = json!({"settings": {"defaultBondingPolicy": "quick", "policies": {"quick": {
        "basePolicy": "active-backup", "failoverInterval": 1000, "downDelay": 500,
        "links": {"eth0": {"mode": "primary", "failoverTo": "eth2"},
                  "eth1": {"mode": "primary"}, "eth2": {"mode": "spare"}}}}}});
    let cfg = BondingConfig::from_local_conf(&doc).unwrap();
    let p = cfg.policy_for("0102030405".parse().unwrap()).unwrap();
    let (mut b, k, mut t) = bond_with(p, 3, 3_000);
    assert_eq!(b.monitor_interval(), 333);
    assert_eq!(b.paths_for(t, FlowId::NONE), PathChoice::One(k[0]));
    let last = t - 100;
    let trace = run(&mut b, &k, &[false, true, true], &mut t, 6_000);
    let sw = first_time_on(&trace, k[2]).unwrap();
    assert!(
        sw - last > 1_500 && sw - last <= 1_500 + 333,
        "{}",
        sw - last
    );
    assert!(
        first_time_on(&trace, k[1]).is_none(),
        "failoverTo wins over rank"
    );
}

#[test]
fn up_delay_holds_a_returning_path() {
    let doc =
        json!({"settings": {"policies": {"u": {"basePolicy": "active-backup", "upDelay": 20000}}}});
    let (mut b, k, mut t) = bond_with(policy_from(doc, "u"), 2, 5_000);
    run(&mut b, &k, &[false, true], &mut t, 15_000);
    let back = t;
    let trace = run(&mut b, &k, &[true, true], &mut t, 60_000);
    let fb = first_time_on(&trace, k[0]).unwrap();
    assert!(fb >= back + 20_000 && fb <= back + 20_000 + b.monitor_interval());
    assert_eq!(b.info(back + 1_000).paths.len(), 2);
}

#[test]
fn flapping_path_gets_longer_refractory_periods() {
    let (mut b, k, mut t) = bond_with(BondPolicy::standard(BasePolicy::ActiveBackup), 2, 5_000);
    let mut bars = Vec::new();
    for _ in 0..4 {
        // Silent for 6 s (ineligible after 5 s), then back only until it is eligible again.
        let until = t + 6_000;
        run(&mut b, &k, &[false, true], &mut t, until);
        let start = t;
        while !b.info(t).paths[0].eligible {
            let until = t + 100;
            run(&mut b, &k, &[true, true], &mut t, until);
            assert!(t < start + 700_000);
        }
        bars.push(t - start);
    }
    // 8 s from the first failure (1 s of it served while silent), then doubling: 16, 32, 64 s.
    let expect = [7_000, 15_000, 31_000, 63_000];
    for (got, want) in bars.iter().zip(expect) {
        assert!(
            (want..=want + 2 * b.monitor_interval()).contains(got),
            "{bars:?}"
        );
    }
}

#[test]
fn rotate_moves_the_active_path() {
    let (mut b, k, t) = bond_with(BondPolicy::standard(BasePolicy::ActiveBackup), 3, 5_000);
    assert_eq!(b.paths_for(t, FlowId::NONE), PathChoice::One(k[0]));
    assert!(b.rotate(t));
    assert_eq!(b.paths_for(t, FlowId::NONE), PathChoice::One(k[1]));
    let (mut rr, _, t) = bond_with(BondPolicy::standard(BasePolicy::BalanceRr), 2, 1_000);
    assert!(!rr.rotate(t));
}

#[test]
fn balance_rr_spreads_evenly_over_live_paths() {
    let (mut b, k, t) = bond_with(BondPolicy::standard(BasePolicy::BalanceRr), 3, 1_000);
    let mut count: BTreeMap<PathKey, u32> = BTreeMap::new();
    let mut seq = Vec::new();
    for _ in 0..64 * 3 * 10 {
        let p = b.paths_for(t, FlowId::NONE).paths()[0];
        *count.entry(p).or_default() += 1;
        seq.push(p);
    }
    assert_eq!(count.values().copied().collect::<Vec<_>>(), [640, 640, 640]);
    // 64 in a row on one path, then the next.
    assert!(seq[..64].iter().all(|p| *p == seq[0]));
    assert_ne!(seq[64], seq[0]);
    let info = b.info(t);
    assert!(
        info.paths
            .iter()
            .all(|p| (p.packet_share - 1.0 / 3.0).abs() < 1e-9)
    );

    // packetsPerLink 1 alternates; a dead path drops out and the rest share evenly.
    let doc = json!({"settings": {"policies": {"rr1": {"basePolicy": "balance-rr", "packetsPerLink": 1}}}});
    let (mut b, k2, mut t) = bond_with(policy_from(doc, "rr1"), 3, 1_000);
    let a = b.paths_for(t, FlowId::NONE).paths()[0];
    let c = b.paths_for(t, FlowId::NONE).paths()[0];
    assert_ne!(a, c);
    run(&mut b, &k2, &[true, false, true], &mut t, 8_000);
    let mut count: BTreeMap<PathKey, u32> = BTreeMap::new();
    for _ in 0..1000 {
        *count
            .entry(b.paths_for(t, FlowId::NONE).paths()[0])
            .or_default() += 1;
    }
    assert_eq!(count.len(), 2);
    assert!(!count.contains_key(&k2[1]));
    assert!(count.values().all(|c| *c == 500));
    let _ = k;

    // packetsPerLink 0: random, every live path used.
    let doc = json!({"settings": {"policies": {"rr0": {"basePolicy": "balance-rr", "packetsPerLink": 0}}}});
    let (mut b, _, t) = bond_with(policy_from(doc, "rr0"), 3, 1_000);
    let mut count: BTreeMap<PathKey, u32> = BTreeMap::new();
    for _ in 0..3000 {
        *count
            .entry(b.paths_for(t, FlowId::NONE).paths()[0])
            .or_default() += 1;
    }
    assert_eq!(count.len(), 3);
    assert!(count.values().all(|c| (800..1200).contains(c)), "{count:?}");
}

fn flows(n: u32) -> Vec<FlowId> {
    (0..n)
        .map(|i| {
            FlowId::from_five_tuple(
                6,
                "10.1.0.1".parse().unwrap(),
                format!("10.2.{}.{}", i / 250, i % 250).parse().unwrap(),
                40_000 + i as u16,
                443,
            )
        })
        .collect()
}

#[test]
fn balance_xor_keeps_flows_and_spreads_them() {
    let (mut b, k, mut t) = bond_with(BondPolicy::standard(BasePolicy::BalanceXor), 3, 1_000);
    let fl = flows(3000);
    let first: Vec<PathKey> = fl.iter().map(|f| b.paths_for(t, *f).paths()[0]).collect();
    for _ in 0..3 {
        for (f, p) in fl.iter().zip(&first) {
            assert_eq!(b.paths_for(t, *f).paths(), [*p], "a flow stays on its path");
        }
    }
    for key in &k {
        let n = first.iter().filter(|p| *p == key).count();
        assert!((850..1150).contains(&n), "{n} of 3000 on {key:?}");
    }
    let info = b.info(t);
    assert_eq!(info.flows, 3000);
    assert_eq!(info.paths.iter().map(|p| p.flows).sum::<usize>(), 3000);
    // Path 1 dies: its flows move, the others stay.
    run(&mut b, &k, &[true, false, true], &mut t, 8_000);
    let after: Vec<PathKey> = fl.iter().map(|f| b.paths_for(t, *f).paths()[0]).collect();
    for (a, p) in after.iter().zip(&first) {
        assert_ne!(*a, k[1]);
        if *p != k[1] {
            assert_eq!(a, p, "flows on surviving paths are not moved");
        }
    }
    // It comes back: exactly the flows that hashed to it return.
    run(&mut b, &k, &[true, true, true], &mut t, 30_000);
    let back: Vec<PathKey> = fl.iter().map(|f| b.paths_for(t, *f).paths()[0]).collect();
    assert_eq!(back, first);
}

#[test]
fn broadcast_returns_every_live_path() {
    let (mut b, k, mut t) = bond_with(BondPolicy::standard(BasePolicy::Broadcast), 3, 1_000);
    assert_eq!(b.paths_for(t, FlowId(5)).paths(), &k[..]);
    run(&mut b, &k, &[true, true, false], &mut t, 8_000);
    assert_eq!(b.paths_for(t, FlowId(5)).paths(), &k[..2]);
    run(&mut b, &k, &[false, false, false], &mut t, 15_000);
    assert_eq!(b.paths_for(t, FlowId(5)), PathChoice::Fallback);
}

#[test]
fn no_path_means_fallback() {
    let mut b = Bond::new(BondPolicy::standard(BasePolicy::BalanceAware), 0, 1);
    assert_eq!(b.paths_for(0, FlowId(1)), PathChoice::Fallback);
    b.add_path(0, key(0), "eth0");
    assert_eq!(
        b.paths_for(0, FlowId(1)),
        PathChoice::Fallback,
        "nothing received yet"
    );
    b.on_received(10, &key(0), 3, Verb::FRAME);
    assert_eq!(b.paths_for(10, FlowId(1)), PathChoice::One(key(0)));
    b.remove_path(20, &key(0));
    assert_eq!(b.paths_for(20, FlowId(1)), PathChoice::Fallback);
    assert_eq!(b.info(20).total_links, 0);
}

/// A simulated link for balance-aware: one-way latency and a loss pattern.
#[derive(Clone, Copy)]
struct Link {
    latency: i64,
    /// Drop one sampled packet in this many (0: none).
    lose_one_in: u64,
}

/// Drives a balance-aware bond and a measuring peer: every 100 ms each flow sends one packet;
/// the peer receives what the link delivers, reports every QoS interval over the same link.
struct AwareSim {
    b: Bond,
    k: Vec<PathKey>,
    peer: Vec<PathQuality>,
    links: Vec<Link>,
    inflight: Vec<(i64, usize, u64)>,
    sampled: Vec<u64>,
    reports: Vec<(i64, usize, Vec<u8>)>,
    t: i64,
    id: u64,
    fl: Vec<FlowId>,
}

impl AwareSim {
    fn new(links: Vec<Link>, nflows: u32) -> AwareSim {
        let n = links.len() as u32;
        let (b, k, t) = bond_with(BondPolicy::standard(BasePolicy::BalanceAware), n, 0);
        AwareSim {
            b,
            peer: (0..n).map(|_| PathQuality::new(t)).collect(),
            k,
            links,
            inflight: Vec::new(),
            sampled: vec![0; n as usize],
            reports: Vec::new(),
            t,
            id: 1,
            fl: flows(nflows),
        }
    }

    fn run_until(&mut self, until: i64) {
        let qos = self.b.qos_interval();
        while self.t < until {
            let now = self.t;
            for f in self.fl.clone() {
                let p = self.b.paths_for(now, f).paths()[0];
                let i = self.k.iter().position(|x| *x == p).unwrap();
                self.id += 1;
                self.b.on_sent(now, &p, self.id, Verb::FRAME);
                let l = self.links[i];
                let mut lost = false;
                if is_sampled(self.id, Verb::FRAME) {
                    self.sampled[i] += 1;
                    lost = l.lose_one_in > 0 && self.sampled[i].is_multiple_of(l.lose_one_in);
                }
                if !lost {
                    self.inflight.push((now + l.latency, i, self.id));
                }
            }
            // Deliveries to the peer, and the peer's reports back.
            let (due, later): (Vec<_>, Vec<_>) =
                self.inflight.drain(..).partition(|(at, _, _)| *at <= now);
            self.inflight = later;
            for (at, i, id) in due {
                // At 140 records the peer reports at once (as Bond::on_received does).
                if self.peer[i].note_received(at, id, Verb::FRAME)
                    && let Some(r) = self.peer[i].take_report(at, qos)
                {
                    let mut payload = Vec::new();
                    r.encode(&mut payload);
                    self.reports.push((at + self.links[i].latency, i, payload));
                }
            }
            for i in 0..self.k.len() {
                if let Some(r) = self.peer[i].take_report(now, qos) {
                    let mut payload = Vec::new();
                    r.encode(&mut payload);
                    self.reports.push((now + self.links[i].latency, i, payload));
                }
            }
            let (due, later): (Vec<_>, Vec<_>) =
                self.reports.drain(..).partition(|(at, _, _)| *at <= now);
            self.reports = later;
            for (_, i, payload) in due {
                self.b
                    .on_qos_measurement(now, &self.k[i], &payload)
                    .unwrap();
            }
            // The peer's own traffic keeps every path alive.
            for k in &self.k {
                self.b.on_received(now, k, 2, Verb::FRAME);
            }
            self.b.handle_timeout(now);
            while self.b.poll_action().is_some() {}
            self.t += 100;
        }
    }

    fn shares(&self) -> Vec<f64> {
        let info = self.b.info(self.t);
        info.paths.iter().map(|p| p.flow_share).collect()
    }
}

#[test]
fn balance_aware_shifts_flows_by_quality_and_recovers() {
    let good = Link {
        latency: 20,
        lose_one_in: 0,
    };
    let lossy = Link {
        latency: 20,
        lose_one_in: 10,
    };
    let slow = Link {
        latency: 300,
        lose_one_in: 0,
    };
    let mut s = AwareSim::new(vec![good, lossy, slow], 90);
    s.run_until(2_000);
    let start = s.shares();
    assert!(
        start.iter().all(|x| (x - 1.0 / 3.0).abs() < 0.01),
        "unmeasured paths share equally: {start:?}"
    );
    s.run_until(60_000);
    let sh = s.shares();
    let info = s.b.info(s.t);
    let lat: Vec<f64> = info
        .paths
        .iter()
        .map(|p| p.latency_mean_ms.unwrap())
        .collect();
    // 100 ms simulation steps round the 20 ms link's round trip up to 100 ms.
    assert_eq!(lat, [50.0, 50.0, 300.0]);
    let loss = info.paths[1].loss.unwrap();
    assert!(
        (0.09..0.11).contains(&loss),
        "one in ten sampled packets lost: {loss}"
    );
    assert_eq!(info.paths[0].loss, Some(0.0));
    assert!(sh[1] < 0.25, "lossy path gets a smaller share: {sh:?}");
    assert!(
        sh[2] < sh[0],
        "slow path gets less than the good one: {sh:?}"
    );
    assert!(sh[0] > 0.4, "{sh:?}");
    assert!(sh.iter().all(|x| *x > 0.0), "nobody is starved: {sh:?}");
    // The lossy link is repaired: its share comes back once its loss window is clean.
    s.links[1].lose_one_in = 0;
    s.run_until(150_000);
    let sh2 = s.shares();
    assert_eq!(s.b.info(s.t).paths[1].loss, Some(0.0));
    assert!((sh2[1] - sh2[0]).abs() < 0.1, "recovered: {sh2:?}");
    // Each flow is on exactly one path between rebalances.
    let t = s.t;
    let before: Vec<PathKey> =
        s.fl.iter()
            .map(|f| s.b.paths_for(t, *f).paths()[0])
            .collect();
    let again: Vec<PathKey> =
        s.fl.iter()
            .map(|f| s.b.paths_for(t, *f).paths()[0])
            .collect();
    assert_eq!(before, again);
}

#[test]
fn balance_aware_moves_flows_off_a_dead_path_at_once() {
    let (mut b, k, mut t) = bond_with(BondPolicy::standard(BasePolicy::BalanceAware), 3, 1_000);
    let fl = flows(300);
    for f in &fl {
        b.paths_for(t, *f);
    }
    assert!(b.info(t).paths.iter().all(|p| p.flows == 100));
    // Path 2 goes silent; at the first packet after its deadline no flow uses it.
    let last = t;
    let deadline = last + 5_000 + 1;
    while t < deadline {
        for key in &k[..2] {
            b.on_received(t, key, 2, Verb::FRAME);
        }
        t += 50;
    }
    // No handle_timeout was called: paths_for itself notices.
    for f in &fl {
        assert_ne!(b.paths_for(t, *f).paths()[0], k[2]);
    }
    let info = b.info(t);
    assert_eq!(info.paths[2].flows, 0);
    assert_eq!(info.paths[0].flows + info.paths[1].flows, 300);
}

#[test]
fn probes_echo_and_qos() {
    let mut b = Bond::new(BondPolicy::standard(BasePolicy::BalanceXor), 0, 1);
    b.add_path(0, key(0), "eth0");
    b.add_path(0, key(1), "eth1");
    let mut echoes: BTreeMap<PathKey, Vec<i64>> = BTreeMap::new();
    let mut qos = Vec::new();
    let mut t = 0;
    while t <= 30_000 {
        // Path 0 hears sampled packets every 100 ms until 10 s; path 1 hears nothing.
        if t < 10_000 {
            b.on_received(t, &key(0), (t as u64) | 1, Verb::FRAME);
        }
        b.handle_timeout(t);
        while let Some(a) = b.poll_action() {
            match a {
                BondAction::Echo { path } => echoes.entry(path).or_default().push(t),
                BondAction::QosMeasurement { path, payload } => qos.push((t, path, payload)),
            }
        }
        t += 100;
    }
    // Path 0 was alive until 10 s: no ECHO while packets arrived; then every monitor interval
    // while alive, every failover interval once dead.
    let e0 = &echoes[&key(0)];
    assert!(e0.iter().all(|t| *t >= 10_000), "{e0:?}");
    let gaps: Vec<i64> = e0.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.iter().all(|g| *g >= 1_666), "{gaps:?}");
    assert!(gaps.iter().rev().take(2).all(|g| *g >= 5_000), "{gaps:?}");
    // Path 1 never heard anything: probed every failover interval.
    let e1 = &echoes[&key(1)];
    assert!(
        e1.len() >= 6 && e1.windows(2).all(|w| w[1] - w[0] >= 5_000),
        "{e1:?}"
    );
    // QoS: a report on path 0 after 10 s (the QoS interval) with the 100 packets heard so far.
    assert_eq!(
        qos.len(),
        1,
        "{:?}",
        qos.iter().map(|q| q.0).collect::<Vec<_>>()
    );
    let (at, path, payload) = &qos[0];
    assert_eq!(*path, key(0));
    assert!(
        (10_000..=10_000 + b.monitor_interval()).contains(at),
        "{at}"
    );
    let r = QosMeasurement::decode(payload).unwrap();
    assert_eq!(r.records.len(), 100);
    assert_eq!(i64::from(r.records[0].holding_ms), *at);
    assert_eq!(i64::from(r.records[99].holding_ms), at - 9_900);
    // ECHOs off for old peers.
    let mut b = Bond::new(BondPolicy::standard(BasePolicy::ActiveBackup), 0, 1);
    b.set_echo_capable(false);
    b.add_path(0, key(0), "eth0");
    b.handle_timeout(10_000);
    assert!(b.poll_action().is_none());
}

#[test]
fn hostile_qos_payloads_never_panic() {
    let (mut b, k, t) = bond_with(BondPolicy::standard(BasePolicy::BalanceAware), 2, 1_000);
    let mut x = 0x0123_4567_89ab_cdefu64;
    let mut accepted = 0;
    for len in 0..1_600usize {
        let mut buf = vec![0u8; len];
        for byte in &mut buf {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *byte = x as u8;
        }
        if b.on_qos_measurement(t + len as i64 * 1_000, &k[len % 2], &buf)
            .is_ok()
        {
            accepted += 1;
        }
        let _ = b.on_qos_measurement(t, &key(99), &buf);
    }
    assert_eq!(accepted, 1_400 - 9 + 1);
    // Reports naming packets never sent, with huge holding times, change nothing harmful.
    let mut p = Vec::new();
    QosMeasurement {
        records: vec![
            weft_wire::verbs::QosRecord {
                packet_id: u64::MAX,
                holding_ms: u16::MAX,
            };
            140
        ],
    }
    .encode(&mut p);
    assert_eq!(b.on_qos_measurement(t, &k[0], &p), Ok(0));
    assert!(matches!(b.paths_for(t, FlowId(1)), PathChoice::One(_)));
}

#[test]
fn info_json_shape() {
    let doc = json!({"settings": {"policies": {"x": {"basePolicy": "balance-xor",
        "links": {"eth0": {"capacity": 100, "mtu": 1400}, "eth1": {"mode": "spare"}}}}}});
    let (mut b, k, t) = bond_with(policy_from(doc, "x"), 2, 1_000);
    b.paths_for(t, FlowId(9));
    let info = b.info(t);
    assert_eq!(info.paths[0].state, LinkState::Up);
    assert_eq!(
        info.paths[1].state,
        LinkState::Standby,
        "spare while a primary is up"
    );
    let j = info.to_json();
    assert_eq!(j["bondingPolicyCode"], 4);
    assert_eq!(j["bondingPolicyStr"], "x");
    assert_eq!(j["failoverInterval"], 5000);
    assert_eq!(j["numAliveLinks"], 2);
    assert_eq!(j["numTotalLinks"], 2);
    let p0 = &j["paths"][0];
    assert_eq!(
        p0["address"],
        format!("{}/{}", k[0].remote.ip(), k[0].remote.port())
    );
    assert_eq!(p0["ifname"], "eth0");
    assert_eq!(p0["givenLinkSpeed"], 100);
    assert_eq!(p0["mtu"], 1400);
    assert_eq!(p0["assignedFlowCount"], 1);
    assert_eq!(p0["bonded"], true);
    assert_eq!(p0["latencyMean"], -1.0);
    assert_eq!(j["paths"][1]["state"], "standby");
    assert_eq!(j["paths"][1]["mode"], "spare");
}

#[test]
fn data_plane_reports_count_in_the_shares() {
    let (mut b, k, t) = bond_with(BondPolicy::standard(BasePolicy::BalanceAware), 2, 1_000);
    // Two workers hold flows on the paths; frames add up, flow gauges are replaced.
    b.on_data_plane(t, &k[0], 0, 300, 3);
    b.on_data_plane(t, &k[1], 0, 100, 1);
    b.on_data_plane(t, &k[1], 1, 200, 4);
    b.on_data_plane(t + 1_000, &k[1], 1, 0, 3);
    let info = b.info(t + 1_000);
    assert_eq!(info.flows, 7);
    let flows: Vec<usize> = info.paths.iter().map(|p| p.flows).collect();
    assert_eq!(flows, [3, 4]);
    let packets: Vec<u64> = info.paths.iter().map(|p| p.packets).collect();
    assert_eq!(packets, [300, 300]);
    assert!((info.paths[0].flow_share - 3.0 / 7.0).abs() < 1e-9);
    assert!((info.paths[1].packet_share - 0.5).abs() < 1e-9);
    assert_eq!(info.paths[0].last_out_age_ms, Some(1_000));
    // An unknown path is ignored.
    b.on_data_plane(t, &key(9), 0, 5, 5);
    assert_eq!(b.info(t + 1_000).flows, 7);
}

#[test]
fn data_plane_samples_feed_qos_reports_with_holding_from_receipt() {
    let (mut b, k, t) = bond_with(BondPolicy::standard(BasePolicy::BalanceAware), 2, 1_000);
    while b.poll_action().is_some() {}
    // 140 sampled frames the data plane got 300 ms before the control plane hears of them:
    // the report is due at once, holding times count from receipt.
    for i in 0..140u64 {
        b.on_data_plane_received(t, t - 300, &k[1], (i << 8) | 1);
    }
    let mut reports = Vec::new();
    while let Some(a) = b.poll_action() {
        if let BondAction::QosMeasurement { path, payload } = a {
            reports.push((path, QosMeasurement::decode(&payload).unwrap()));
        }
    }
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].0, k[1]);
    assert_eq!(reports[0].1.records.len(), 140);
    assert!(reports[0].1.records.iter().all(|r| r.holding_ms == 300));
    // Sends the data plane reports are measured when the peer's report comes back.
    b.on_data_plane_sent(t, &k[0], 0x1001);
    let back = QosMeasurement {
        records: vec![weft_wire::verbs::QosRecord {
            packet_id: 0x1001,
            holding_ms: 10,
        }],
    };
    let mut payload = Vec::new();
    back.encode(&mut payload);
    assert_eq!(b.on_qos_measurement(t + 50, &k[0], &payload).unwrap(), 1);
    assert_eq!(b.info(t + 50).paths[0].latency_mean_ms, Some(20.0));
}

#[test]
fn setmtu_overrides_the_link_mtu_by_interface_and_address() {
    let (mut b, k, t) = bond_with(BondPolicy::standard(BasePolicy::BalanceRr), 2, 1_000);
    assert_eq!(b.path_mtu(&k[0]), 0);
    // No such link; a link with another peer address: nothing matches.
    assert_eq!(b.set_link_mtu("eth7", None, 1400), 0);
    assert_eq!(
        b.set_link_mtu("eth0", Some("192.0.2.1".parse().unwrap()), 1400),
        0
    );
    // By interface and the peer's address on it, then the whole interface.
    assert_eq!(b.set_link_mtu("eth0", Some(k[0].remote.ip()), 1400), 1);
    assert_eq!((b.path_mtu(&k[0]), b.path_mtu(&k[1])), (1400, 0));
    assert_eq!(b.set_link_mtu("eth1", None, 600), 1);
    assert_eq!((b.path_mtu(&k[0]), b.path_mtu(&k[1])), (1400, 600));
    assert_eq!(b.set_link_mtu("eth0", None, 1200), 1);
    // The latest matching override wins; shown in the info.
    let info = b.info(t);
    assert_eq!((info.paths[0].mtu, info.paths[1].mtu), (1200, 600));
}
