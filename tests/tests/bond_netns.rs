//! Multipath bonding with real `weft daemon` processes in network namespaces: two members
//! joined by TWO veth pairs (10.61.1.0/24 and 10.61.2.0/24) plus a LAN to the root (which is
//! also the network's controller; the members' LAN path to each other is blocked, so the two
//! links are the only direct paths). Each member learns both links (PUSH_DIRECT_PATHS of its
//! peer's interface addresses) and bonds them under the policy in its `local.conf`:
//!
//! * active-backup: the active link is cut during a ping run and traffic continues within
//!   `failoverInterval` + margin;
//! * balance-rr: both links carry packets (per-link counters of `ip -s link`);
//! * balance-xor: one TCP flow stays on one link;
//! * broadcast: every ping is answered once (no duplicates), both links carry it;
//! * aggregation: both links shaped to R with tbf, 16 TCP flows over balance-rr carry ≥ 1.6 R.
//!
//! spec: vl1.md §9, service.md §3.3, §4 (`/bond/show`). Needs root, iproute2, iptables and ping
//! (`scripts/install-test-deps.sh`); fails loudly without them unless `WEFT_SKIP_NETNS=1`.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use weft_conformance::netns::{Lab, Link, Ns};
use weft_conformance::weftnode::{WeftNode, private_planet, weft_bin};

const CONFIGURED: Duration = Duration::from_secs(45);
/// Both links learned and alive in the bond.
const BONDED: Duration = Duration::from_secs(90);
/// The custom policies' failover interval.
const FAILOVER_MS: u64 = 1_000;

fn planet_id(salt: u64) -> u64 {
    0x7765_6674_0009_0000 | (u64::from(std::process::id()) << 24) | salt
}

struct World {
    lab: Lab,
    _root: WeftNode,
    a: WeftNode,
    b: WeftNode,
    links: [Link; 2],
    b_ip: IpAddr,
}

fn local_conf(policy: &str) -> Value {
    json!({"settings": {
        "allowTcpFallbackRelay": false,
        "portMappingEnabled": false,
        "defaultBondingPolicy": policy,
        "policies": {
            "lab-ab": {"basePolicy": "active-backup", "failoverInterval": FAILOVER_MS},
            "lab-rr": {"basePolicy": "balance-rr", "failoverInterval": FAILOVER_MS,
                       "packetsPerLink": 1},
            "lab-xor": {"basePolicy": "balance-xor", "failoverInterval": FAILOVER_MS},
            "lab-bc": {"basePolicy": "broadcast", "failoverInterval": FAILOVER_MS},
        }
    }})
}

/// The bond of `node` towards `peer` (`/bond/show`), `None` while there is none.
fn bond(lab: &Lab, node: &WeftNode, peer: &WeftNode) -> Option<Value> {
    let (code, body) = node.api(lab, "GET", &format!("/bond/show/{}", peer.address()));
    (code == 200)
        .then(|| serde_json::from_str(&body).ok())
        .flatten()
}

#[track_caller]
fn wait_bonded(lab: &Lab, node: &WeftNode, peer: &WeftNode) -> Value {
    let start = Instant::now();
    loop {
        node.assert_running(lab);
        let b = bond(lab, node, peer);
        if let Some(b) = &b
            && b["numAliveLinks"].as_u64() >= Some(2)
            && b["bondPaths"]
                .as_array()
                .is_some_and(|p| p.iter().filter(|x| x["eligible"] == true).count() >= 2)
        {
            eprintln!(
                "{}: bonded to {} over 2 links after {:.1} s",
                node.label,
                peer.label,
                start.elapsed().as_secs_f64()
            );
            return b.clone();
        }
        assert!(
            start.elapsed() < BONDED,
            "{}: no 2-link bond to {} within {BONDED:?}; last: {b:?}\npeer: {}",
            node.label,
            peer.label,
            node.api_get(lab, &format!("/peer/{}", peer.address()))
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn world(name: &str, salt: u64, policy: &str) -> Option<World> {
    let lab = Lab::for_test(name)?;
    let root_ns = lab.host("root");
    let a_ns = lab.host("a");
    let b_ns = lab.host("b");
    let lan = lab.bridge_lan(None, &[&root_ns, &a_ns, &b_ns], "10.61.0.0/24");
    let l1 = lab.link(&a_ns, &b_ns, "10.61.1.1/24", "10.61.1.2/24");
    let l2 = lab.link(&a_ns, &b_ns, "10.61.2.1/24", "10.61.2.2/24");
    // The members reach each other only over the two links.
    let (a_lan, b_lan) = (
        lan.addr_of(&a_ns).to_string(),
        lan.addr_of(&b_ns).to_string(),
    );
    lab.iptables(&a_ns, &["-A", "INPUT", "-s", &b_lan, "-j", "DROP"]);
    lab.iptables(&a_ns, &["-A", "OUTPUT", "-d", &b_lan, "-j", "DROP"]);
    lab.iptables(&b_ns, &["-A", "INPUT", "-s", &a_lan, "-j", "DROP"]);
    lab.iptables(&b_ns, &["-A", "OUTPUT", "-d", &a_lan, "-j", "DROP"]);
    let mut root = WeftNode::new(&lab, &root_ns, "root", 0);
    let mut a = WeftNode::new(&lab, &a_ns, "a", 2);
    let mut b = WeftNode::new(&lab, &b_ns, "b", 3);
    let planet = private_planet(
        lab.log_dir(),
        planet_id(salt),
        &[(&root, lan.addr_of(&root_ns))],
    );
    for n in [&root, &a, &b] {
        n.install_planet(&planet);
    }
    a.write_local_conf(&local_conf(policy));
    b.write_local_conf(&local_conf(policy));
    root.start(&lab);
    a.start(&lab);
    b.start(&lab);
    a.wait_online(&lab, CONFIGURED);
    b.wait_online(&lab, CONFIGURED);
    // A network on the root's controller, both members authorized.
    let v = root.api_post(
        &lab,
        &format!("/controller/network/{}______", root.address()),
        &json!({
            "name": "bond",
            "v4AssignMode": {"zt": true},
            "ipAssignmentPools": [{"ipRangeStart": "10.147.61.1", "ipRangeEnd": "10.147.61.254"}],
            "routes": [{"target": "10.147.61.0/24", "via": null}],
        }),
    );
    let nwid = v["id"].as_str().expect("network id").to_string();
    for m in [&a, &b] {
        m.api_post(&lab, &format!("/network/{nwid}"), &json!({}));
        root.api_post(
            &lab,
            &format!("/controller/network/{nwid}/member/{}", m.address()),
            &json!({"authorized": true}),
        );
    }
    let mut ips = Vec::new();
    for m in [&a, &b] {
        let start = Instant::now();
        loop {
            let n = m.api_get(&lab, &format!("/network/{nwid}"));
            let ip = n["assignedAddresses"].as_array().and_then(|v| {
                v.iter()
                    .filter_map(|x| x.as_str()?.split('/').next()?.parse::<IpAddr>().ok())
                    .find(IpAddr::is_ipv4)
            });
            if n["status"] == "OK"
                && let Some(ip) = ip
            {
                ips.push(ip);
                break;
            }
            assert!(
                start.elapsed() < CONFIGURED,
                "{}: network not OK: {n}",
                m.label
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    // Traffic makes them peers (and members of one network: paths are pushed).
    ping_until(&lab, &a_ns, ips[1], CONFIGURED);
    ping_until(&lab, &b_ns, ips[0], CONFIGURED);
    wait_bonded(&lab, &a, &b);
    wait_bonded(&lab, &b, &a);
    // The data plane process works from published tables; give it the latest.
    std::thread::sleep(Duration::from_millis(1_500));
    Some(World {
        lab,
        _root: root,
        a,
        b,
        links: [l1, l2],
        b_ip: ips[1],
    })
}

fn ping_once(lab: &Lab, ns: &Ns, ip: IpAddr) -> bool {
    let ip = ip.to_string();
    lab.exec(ns, &["ping", "-c", "1", "-W", "1", &ip])
        .status
        .success()
}

#[track_caller]
fn ping_until(lab: &Lab, ns: &Ns, ip: IpAddr, timeout: Duration) {
    let start = Instant::now();
    while !ping_once(lab, ns, ip) {
        assert!(
            start.elapsed() < timeout,
            "no ping answer from {ip} within {timeout:?}"
        );
    }
}

/// Packets sent on `dev` in `ns` so far (`ip -s link`).
fn tx_packets(lab: &Lab, ns: &Ns, dev: &str) -> u64 {
    tx_stat(lab, ns, dev, "packets")
}

/// A transmit counter of `dev` in `ns` (`ip -s link`).
fn tx_stat(lab: &Lab, ns: &Ns, dev: &str, what: &str) -> u64 {
    let out = lab.exec_ok(ns, &["ip", "-j", "-s", "link", "show", "dev", dev]);
    let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    v[0]["stats64"]["tx"][what].as_u64().unwrap_or(0)
}

fn a_tx_bytes(w: &World) -> u64 {
    (0..2)
        .map(|i| tx_stat(&w.lab, &w.links[i].a, &w.links[i].a_if, "bytes"))
        .sum()
}

fn a_tx(w: &World) -> [u64; 2] {
    [0, 1].map(|i| tx_packets(&w.lab, &w.links[i].a, &w.links[i].a_if))
}

/// A flood ping of `count` from A to B; returns ping's summary (transmitted, received, dups).
fn ping_run(w: &World, count: u32, interval: &str) -> (u32, u32, u32, String) {
    let ip = w.b_ip.to_string();
    let c = count.to_string();
    let out = w
        .lab
        .exec(&w.a.ns, &["ping", "-c", &c, "-i", interval, "-W", "1", &ip]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let line = text
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or("")
        .to_string();
    let num = |word: &str| -> u32 {
        line.split(',')
            .find(|p| p.contains(word))
            .and_then(|p| p.split_whitespace().next())
            .and_then(|n| n.trim_start_matches('+').parse().ok())
            .unwrap_or(0)
    };
    (num("transmitted"), num("received"), num("duplicates"), text)
}

#[test]
fn active_backup_fails_over_when_the_active_link_goes_down() {
    let Some(w) = world("bond_ab", 1, "lab-ab") else {
        return;
    };
    let b = bond(&w.lab, &w.a, &w.b).unwrap();
    assert_eq!(b["bondingPolicyStr"], "lab-ab", "{b}");
    assert_eq!(b["failoverInterval"], FAILOVER_MS, "{b}");
    // Which link carries the traffic now?
    let before = a_tx(&w);
    let (_, rx, _, _) = ping_run(&w, 20, "0.05");
    assert!(rx >= 19, "pings over the bond");
    let after = a_tx(&w);
    let used = [after[0] - before[0], after[1] - before[1]];
    let active = if used[0] > used[1] { 0 } else { 1 };
    assert!(used[active] >= 20, "{used:?}");
    assert!(
        used[1 - active] < 10,
        "active-backup used both links: {used:?}"
    );
    // Cut it in the middle of a ping run (100 pings, 50 ms apart: 5 s).
    let link = w.links[active].clone();
    let lab_ns = link.a.clone();
    let cut = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        let st = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                lab_ns.name(),
                "ip",
                "link",
                "set",
                &link.a_if,
                "down",
            ])
            .status();
        assert!(st.is_ok_and(|s| s.success()));
    });
    let start = Instant::now();
    let (tx, rx, _, text) = ping_run(&w, 100, "0.05");
    cut.join().unwrap();
    let lost = tx - rx;
    // failoverInterval + margin (the data plane follows at the next table publication, 1 s)
    let allowed = ((FAILOVER_MS + 2_500) / 50) as u32;
    eprintln!(
        "failover: {tx} sent, {rx} answered, {lost} lost (allowed {allowed}) in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    assert!(
        lost <= allowed,
        "traffic did not resume within failover + margin\n{text}"
    );
    let after_cut = bond(&w.lab, &w.a, &w.b).unwrap();
    assert!(after_cut["failovers"].as_u64() >= Some(1), "{after_cut}");
    // Traffic continues on the other link.
    assert!(ping_once(&w.lab, &w.a.ns, w.b_ip));
}

#[test]
fn balance_rr_uses_both_links() {
    let Some(w) = world("bond_rr", 2, "lab-rr") else {
        return;
    };
    let before = a_tx(&w);
    let (_, rx, _, _) = ping_run(&w, 100, "0.02");
    assert!(rx >= 95, "{rx}");
    let after = a_tx(&w);
    let used = [after[0] - before[0], after[1] - before[1]];
    eprintln!("balance-rr: per-link packets {used:?}");
    assert!(used[0] >= 30 && used[1] >= 30, "balance-rr: {used:?}");

    // The client commands. spec: service.md §5 (listbonds, bond <peer> show)
    let bin = weft_bin().display().to_string();
    let home = w.a.home.display().to_string();
    let weft = |args: &[&str]| -> String {
        let mut argv = vec![bin.as_str(), "-D", home.as_str()];
        argv.extend(args);
        let out = w.lab.exec(&w.a.ns, &argv);
        assert!(out.status.success(), "weft {args:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let list = weft(&["bond", "list"]);
    let want = format!("{:>10}  {:>32}         2/2", w.b.address(), "lab-rr");
    assert!(list.lines().any(|l| l == want), "{list}");
    assert_eq!(weft(&["listbonds"]), list);
    let show = weft(&["bond", w.b.address(), "show"]);
    assert!(
        show.contains(&format!("Peer                   : {}", w.b.address())),
        "{show}"
    );
    assert!(show.contains("Bond                   : lab-rr"), "{show}");
    assert!(show.contains("Links                  : 2/2"), "{show}");
    assert!(show.contains("10.61.1.2/"), "{show}");
    // Link names resolved from the route towards each path (the daemon binds the wildcard).
    for l in &w.links {
        assert!(show.contains(&format!(" {} ", l.a_if)), "{show}");
    }
    assert!(show.contains("10.61.2.2/"), "{show}");
    let peer = w.a.api_get(&w.lab, &format!("/peer/{}", w.b.address()));
    assert_eq!(peer["isBonded"], true, "{peer}");
    assert_eq!(peer["bondingPolicyStr"], "lab-rr", "{peer}");
    // The root is never bonded.
    let (code, body) =
        w.a.api(&w.lab, "GET", &format!("/bond/show/{}", w._root.address()));
    assert_eq!((code, body.trim()), (400, "{}"));
}

#[test]
fn balance_xor_keeps_one_tcp_flow_on_one_link() {
    let Some(w) = world("bond_xor", 3, "lab-xor") else {
        return;
    };
    let before = a_tx(&w);
    let addr = SocketAddr::new(w.b_ip, 5201);
    let listener = w.lab.in_ns(&w.b.ns, || TcpListener::bind(addr)).unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 65536];
        let mut total = 0usize;
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            total += n;
        }
        total
    });
    let bytes = 8 << 20;
    w.lab.in_ns(&w.a.ns, || {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).unwrap();
        let chunk = vec![0x5au8; 65536];
        for _ in 0..(bytes / chunk.len()) {
            s.write_all(&chunk).unwrap();
        }
    });
    assert_eq!(server.join().unwrap(), bytes);
    let after = a_tx(&w);
    let used = [after[0] - before[0], after[1] - before[1]];
    eprintln!("balance-xor: per-link packets {used:?}");
    let (big, small) = (used[0].max(used[1]), used[0].min(used[1]));
    assert!(big > 2000, "{used:?}");
    // The other link carries only probes (ECHO, QoS): a few per second.
    assert!(
        small * 20 < big,
        "one flow was spread over both links: {used:?}"
    );
}

#[test]
fn broadcast_answers_each_ping_once() {
    let Some(w) = world("bond_bc", 4, "lab-bc") else {
        return;
    };
    let before = a_tx(&w);
    let (tx, rx, dups, text) = ping_run(&w, 50, "0.05");
    let after = a_tx(&w);
    let used = [after[0] - before[0], after[1] - before[1]];
    eprintln!("broadcast: {tx} sent, {rx} answered, {dups} duplicates; per link {used:?}");
    assert_eq!(dups, 0, "duplicates delivered\n{text}");
    assert!(rx >= 48, "{text}");
    assert!(used[0] >= 48 && used[1] >= 48, "broadcast: {used:?}");
}

/// Rate-limited aggregation: both links shaped to R (tbf on A's side); 16 TCP flows under
/// balance-rr (one packet per link in turn: equal links, so little reordering) get well above
/// one link's rate together.
#[test]
fn balance_rr_aggregates_two_rate_limited_links() {
    let Some(w) = world("bond_tbf", 5, "lab-rr") else {
        return;
    };
    const RATE_MBIT: u64 = 8;
    for l in &w.links {
        w.lab.exec_ok(
            &l.a,
            &[
                "tc",
                "qdisc",
                "add",
                "dev",
                &l.a_if,
                "root",
                "tbf",
                "rate",
                &format!("{RATE_MBIT}mbit"),
                "burst",
                "64kb",
                "latency",
                "200ms",
            ],
        );
    }
    let flows = 16usize;
    let per_flow = 1usize << 20;
    let listener = w
        .lab
        .in_ns(&w.b.ns, || TcpListener::bind(SocketAddr::new(w.b_ip, 5202)))
        .unwrap();
    let server = std::thread::spawn(move || {
        let mut handles = Vec::new();
        for _ in 0..flows {
            let (mut s, _) = listener.accept().unwrap();
            handles.push(std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                let mut total = 0usize;
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    total += n;
                }
                total
            }));
        }
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .sum::<usize>()
    });
    let before = a_tx(&w);
    let bytes_before = a_tx_bytes(&w);
    let addr = SocketAddr::new(w.b_ip, 5202);
    // Connect all flows from A's namespace first, then send on all of them at once.
    let streams: Vec<TcpStream> = w.lab.in_ns(&w.a.ns, || {
        (0..flows)
            .map(|_| TcpStream::connect_timeout(&addr, Duration::from_secs(10)).unwrap())
            .collect()
    });
    let start = Instant::now();
    let senders: Vec<_> = streams
        .into_iter()
        .map(|mut s| {
            std::thread::spawn(move || {
                let chunk = vec![0x5au8; 65536];
                for _ in 0..(per_flow / chunk.len()) {
                    s.write_all(&chunk).unwrap();
                }
            })
        })
        .collect();
    for s in senders {
        s.join().unwrap();
    }
    let total = server.join().unwrap();
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(total, flows * per_flow);
    let mbit = (total * 8) as f64 / secs / 1e6;
    // What the shapers see: every byte on the links (ZeroTier and UDP/IP overhead included).
    let link_mbit = ((a_tx_bytes(&w) - bytes_before) * 8) as f64 / secs / 1e6;
    let after = a_tx(&w);
    let used = [after[0] - before[0], after[1] - before[1]];
    eprintln!(
        "aggregation: {mbit:.1} Mbit/s of TCP payload, {link_mbit:.1} Mbit/s on the links, over two \
         {RATE_MBIT} Mbit/s links; per link {used:?} packets"
    );
    assert!(used[0] > 500 && used[1] > 500, "flows not spread: {used:?}");
    let r = RATE_MBIT as f64;
    assert!(
        link_mbit >= 1.6 * r,
        "links carried {link_mbit:.1} Mbit/s, below 1.6 × {RATE_MBIT}"
    );
    assert!(
        mbit >= 1.4 * r,
        "TCP payload {mbit:.1} Mbit/s, below 1.4 × {RATE_MBIT}"
    );
}
