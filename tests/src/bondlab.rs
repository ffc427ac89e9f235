//! A two-link bonding lab shared by the namespace tests and the failover benchmark: two
//! members joined by TWO veth pairs (10.61.1.0/24 and 10.61.2.0/24) plus a LAN to the root
//! (also the network's controller; the members' LAN path to each other is blocked), each with
//! a bonding policy from `local.conf`. spec: vl1.md §9

use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::netns::{Lab, Link, Ns};
use crate::weftnode::{WeftNode, private_planet};

pub const CONFIGURED: Duration = Duration::from_secs(45);
/// Both links learned and alive in the bond.
pub const BONDED: Duration = Duration::from_secs(90);
/// The custom policies' failover interval.
pub const FAILOVER_MS: u64 = 1_000;

pub fn planet_id(salt: u64) -> u64 {
    0x7765_6674_0009_0000 | (u64::from(std::process::id()) << 24) | salt
}

/// The lab, its three daemons, the two links and B's address on the network.
#[allow(missing_debug_implementations)]
pub struct World {
    pub lab: Lab,
    pub root: WeftNode,
    pub a: WeftNode,
    pub b: WeftNode,
    pub links: [Link; 2],
    pub b_ip: IpAddr,
}

pub fn local_conf(policy: &str) -> Value {
    json!({"settings": {
        "allowTcpFallbackRelay": false,
        "portMappingEnabled": false,
        "defaultBondingPolicy": policy,
        "policies": {
            "lab-ab": {"basePolicy": "active-backup", "failoverInterval": FAILOVER_MS},
            "lab-aw": {"basePolicy": "balance-aware", "failoverInterval": FAILOVER_MS},
            "lab-rr": {"basePolicy": "balance-rr", "failoverInterval": FAILOVER_MS,
                       "packetsPerLink": 1},
            "lab-xor": {"basePolicy": "balance-xor", "failoverInterval": FAILOVER_MS},
            "lab-bc": {"basePolicy": "broadcast", "failoverInterval": FAILOVER_MS},
        }
    }})
}

/// The bond of `node` towards `peer` (`/bond/show`), `None` while there is none.
pub fn bond(lab: &Lab, node: &WeftNode, peer: &WeftNode) -> Option<Value> {
    let (code, body) = node.api(lab, "GET", &format!("/bond/show/{}", peer.address()));
    (code == 200)
        .then(|| serde_json::from_str(&body).ok())
        .flatten()
}

#[track_caller]
pub fn wait_bonded(lab: &Lab, node: &WeftNode, peer: &WeftNode) -> Value {
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

pub fn world(name: &str, salt: u64, policy: &str) -> Option<World> {
    world_with(name, salt, policy, None)
}

/// [`world`], with A's data plane on UDP back-end `a_backend` (`plain` sends one datagram per
/// syscall, so interface counters see each datagram rather than GSO batches).
pub fn world_with(name: &str, salt: u64, policy: &str, a_backend: Option<&str>) -> Option<World> {
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
    let mut a_conf = local_conf(policy);
    if let Some(backend) = a_backend {
        a_conf["settings"]["dataplane"] = json!({ "backend": backend });
    }
    a.write_local_conf(&a_conf);
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
        root,
        a,
        b,
        links: [l1, l2],
        b_ip: ips[1],
    })
}

pub fn ping_once(lab: &Lab, ns: &Ns, ip: IpAddr) -> bool {
    let ip = ip.to_string();
    lab.exec(ns, &["ping", "-c", "1", "-W", "1", &ip])
        .status
        .success()
}

#[track_caller]
pub fn ping_until(lab: &Lab, ns: &Ns, ip: IpAddr, timeout: Duration) {
    let start = Instant::now();
    while !ping_once(lab, ns, ip) {
        assert!(
            start.elapsed() < timeout,
            "no ping answer from {ip} within {timeout:?}"
        );
    }
}

/// Packets sent on `dev` in `ns` so far (`ip -s link`).
pub fn tx_packets(lab: &Lab, ns: &Ns, dev: &str) -> u64 {
    tx_stat(lab, ns, dev, "packets")
}

/// A transmit counter of `dev` in `ns` (`ip -s link`).
pub fn tx_stat(lab: &Lab, ns: &Ns, dev: &str, what: &str) -> u64 {
    let out = lab.exec_ok(ns, &["ip", "-j", "-s", "link", "show", "dev", dev]);
    let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    v[0]["stats64"]["tx"][what].as_u64().unwrap_or(0)
}

pub fn a_tx_bytes(w: &World) -> u64 {
    (0..2)
        .map(|i| tx_stat(&w.lab, &w.links[i].a, &w.links[i].a_if, "bytes"))
        .sum()
}

pub fn a_tx(w: &World) -> [u64; 2] {
    [0, 1].map(|i| tx_packets(&w.lab, &w.links[i].a, &w.links[i].a_if))
}

/// A flood ping of `count` from A to B; returns ping's summary (transmitted, received, dups).
pub fn ping_run(w: &World, count: u32, interval: &str) -> (u32, u32, u32, String) {
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

/// The root qdisc's (sent, dropped) packet counters on `dev` in `ns` (`tc -s qdisc`).
pub fn qdisc_sent_dropped(lab: &Lab, ns: &Ns, dev: &str) -> (u64, u64) {
    let out = lab.exec_ok(ns, &["tc", "-j", "-s", "qdisc", "show", "dev", dev]);
    let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    (
        v[0]["packets"].as_u64().unwrap_or(0),
        v[0]["drops"].as_u64().unwrap_or(0),
    )
}
