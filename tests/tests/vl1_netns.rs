//! VL1 scenarios with real `weft daemon` processes in network namespaces: a weft root serving
//! leaves on a LAN, behind port-restricted NATs (direct paths through RENDEZVOUS) and behind
//! symmetric NATs (relayed for good), a root restart, and a moon.
//!
//! Every test generates its own private planet (its roots are lab nodes) and installs it in
//! every home before start: nothing talks to the public roots, and nothing leaves the lab's
//! namespaces. Path state is always read from the nodes' own state (`<home>/status.json`, and the
//! local HTTP API in one cross-check), by polling with generous timeouts. Traffic between leaves
//! is triggered with the weft API extension `POST /unstable/ping/<address>`, which sends a
//! USER_MESSAGE through the normal send path (WHOIS, relaying, RENDEZVOUS, hole punching).
//!
//! Needs root, iproute2, iptables and ping (`scripts/install-test-deps.sh`); fails loudly
//! without them unless `WEFT_SKIP_NETNS=1` is set. Logs (and the nodes' homes, with their last
//! `status.json`) are kept when a test fails; `WEFT_NETNS_KEEP_LOGS=1` keeps them always.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use weft_conformance::netns::{Lab, NatKind};
use weft_conformance::weftnode::{
    PORT, WeftNode, has_path_at, moon, newest_path_receive, now_ms, path_ip, paths, peer,
    preferred_path, private_planet,
};

/// Start-up: a root validates one new identity per source /24 per 2 s (vl1.md §8.11), so a
/// second leaf in the same /24 may need another 5 s ping round.
const ONLINE: Duration = Duration::from_secs(30);
/// Finding a direct path (WHOIS, relay, RENDEZVOUS, hole punching).
const DIRECT: Duration = Duration::from_secs(60);
/// How often the scenarios ask a node to send traffic while waiting.
const PING_EVERY: Duration = Duration::from_secs(2);

/// A world id for a test's private planet (anything but Earth's 149604618).
fn planet_id(salt: u64) -> u64 {
    0x7765_6674_0000_0000 | (u64::from(std::process::id()) << 8) | salt
}

/// `ip/port` as the status shows a path address.
fn at(ip: Ipv4Addr) -> String {
    format!("{ip}/{PORT}")
}

/// Every node's last status, for failure messages.
fn states(nodes: &[&WeftNode]) -> String {
    nodes
        .iter()
        .map(|n| {
            let s = n.status().map_or_else(
                || "(none)".into(),
                |s| serde_json::to_string_pretty(&s).unwrap(),
            );
            format!("--- {} ({}) status.json ---\n{s}", n.label, n.address())
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Has `from` ping `to` every [`PING_EVERY`] until `done` holds (checked every 200 ms), for at
/// most `timeout`. Panics with `what` and every node's status on timeout.
#[track_caller]
fn ping_until(
    lab: &Lab,
    from: &WeftNode,
    to: &WeftNode,
    all: &[&WeftNode],
    what: &str,
    timeout: Duration,
    mut done: impl FnMut() -> bool,
) {
    let start = Instant::now();
    let mut last_ping: Option<Instant> = None;
    let mut pings = 0;
    loop {
        for n in all {
            n.assert_running(lab);
        }
        if done() {
            eprintln!(
                "{what}: after {:.1} s and {pings} ping(s) {} -> {}",
                start.elapsed().as_secs_f64(),
                from.label,
                to.label
            );
            return;
        }
        if start.elapsed() >= timeout {
            panic!(
                "not {what} within {timeout:?} ({pings} pings {} -> {})\n{}",
                from.label,
                to.label,
                states(all)
            );
        }
        if last_ping.is_none_or(|t| t.elapsed() >= PING_EVERY) {
            from.ping(lab, to.address());
            pings += 1;
            last_ping = Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `node`'s entry for `other` in its current status.
fn entry(node: &WeftNode, other: &WeftNode) -> Option<Value> {
    node.status()
        .and_then(|s| peer(&s, other.address()).cloned())
}

/// Whether `node` currently prefers a direct path to `other` whose IP is `ip`.
fn prefers(node: &WeftNode, other: &WeftNode, ip: Ipv4Addr) -> bool {
    entry(node, other).is_some_and(|p| {
        preferred_path(&p).is_some_and(|a| a.split('/').next() == Some(&ip.to_string()))
    })
}

/// Waits until `root`'s own status lists every leaf with a direct path at the given IP.
#[track_caller]
fn assert_root_serves(lab: &Lab, root: &WeftNode, leaves: &[(&WeftNode, Ipv4Addr)], since: i64) {
    let mut what = format!("root {} lists", root.address());
    for (l, ip) in leaves {
        what.push_str(&format!(" {} at {ip}", l.label));
    }
    root.wait_for(lab, &what, ONLINE, |s| {
        leaves.iter().all(|(l, ip)| {
            peer(s, l.address()).is_some_and(|p| {
                p["role"] == "LEAF"
                    && paths(p).iter().any(|x| {
                        path_ip(x) == Some(*ip) && x["lastReceive"].as_i64().unwrap_or(0) >= since
                    })
            })
        })
    });
}

/// Starts the nodes (roots first), then waits until every leaf is online.
fn start_all(lab: &Lab, roots: &mut [&mut WeftNode], leaves: &mut [&mut WeftNode]) {
    for n in roots.iter_mut() {
        n.start(lab);
    }
    for n in leaves.iter_mut() {
        n.start(lab);
    }
    for n in leaves.iter() {
        n.wait_online(lab, ONLINE);
    }
}

/// A root on an internet segment and two leaves, each behind its own NAT of `kind`, all started
/// and served by the root.
struct NatWorld {
    root: WeftNode,
    a: WeftNode,
    b: WeftNode,
    a_wan: Ipv4Addr,
    b_wan: Ipv4Addr,
}

fn nat_world(lab: &Lab, internet_subnet: &str, kind: NatKind, salt: u64) -> NatWorld {
    let internet = lab.internet(internet_subnet);
    let root_ns = lab.host("root");
    let root_ip = lab.attach(&internet, &root_ns);
    let nat_a = lab.nat_router("nata", "192.168.1.0/24", &internet, kind);
    let nat_b = lab.nat_router("natb", "192.168.2.0/24", &internet, kind);
    let (a_ns, b_ns) = (lab.host("a"), lab.host("b"));
    lab.attach(&nat_a.lan, &a_ns);
    lab.attach(&nat_b.lan, &b_ns);
    let mut root = WeftNode::new(lab, &root_ns, "root", 0);
    let mut a = WeftNode::new(lab, &a_ns, "a", 1);
    let mut b = WeftNode::new(lab, &b_ns, "b", 2);
    let planet = planet_for(lab, salt, &[(&root, root_ip)]);
    install(&planet, &[&root, &a, &b]);
    start_all(lab, &mut [&mut root], &mut [&mut a, &mut b]);
    assert_root_serves(lab, &root, &[(&a, nat_a.wan), (&b, nat_b.wan)], 0);
    NatWorld {
        root,
        a,
        b,
        a_wan: nat_a.wan,
        b_wan: nat_b.wan,
    }
}

fn planet_for(lab: &Lab, salt: u64, roots: &[(&WeftNode, Ipv4Addr)]) -> std::path::PathBuf {
    private_planet(lab.log_dir(), planet_id(salt), roots)
}

fn install(planet: &Path, nodes: &[&WeftNode]) {
    for n in nodes {
        n.install_planet(planet);
    }
}

/// Two leaves on one routed LAN (no NAT), the root on the "internet" segment: the root sees
/// both at their LAN addresses, introduces them, and they talk directly over the LAN.
#[test]
fn lan_leaves_go_direct_at_their_lan_addresses() {
    let Some(lab) = Lab::for_test("vl1_lan_direct") else {
        return;
    };
    let internet = lab.internet("203.0.113.0/24");
    let root_ns = lab.host("root");
    let root_ip = lab.attach(&internet, &root_ns);
    let router = lab.host("router");
    let router_wan = lab.attach(&internet, &router);
    let (a_ns, b_ns) = (lab.host("a"), lab.host("b"));
    let lan = lab.bridge_lan(Some(&router), &[&a_ns, &b_ns], "10.1.0.0/24");
    lab.enable_forwarding(&router);
    lab.route(&root_ns, "10.1.0.0/24", router_wan);
    let (a_ip, b_ip) = (lan.addr_of(&a_ns), lan.addr_of(&b_ns));

    let mut root = WeftNode::new(&lab, &root_ns, "root", 0);
    let mut a = WeftNode::new(&lab, &a_ns, "a", 1);
    let mut b = WeftNode::new(&lab, &b_ns, "b", 2);
    let planet = planet_for(&lab, 1, &[(&root, root_ip)]);
    install(&planet, &[&root, &a, &b]);
    start_all(&lab, &mut [&mut root], &mut [&mut a, &mut b]);

    // The weft root serves both leaves, seen at their LAN addresses (routed, not NATed).
    assert_root_serves(&lab, &root, &[(&a, a_ip), (&b, b_ip)], 0);
    let s = a.status().expect("a's status");
    let r = peer(&s, root.address()).expect("a lists its root");
    assert_eq!(r["role"], "PLANET", "{r}");
    assert_eq!(preferred_path(r), Some(at(root_ip).as_str()), "{r}");

    let all = [&root, &a, &b];
    ping_until(
        &lab,
        &a,
        &b,
        &all,
        "a and b direct over the LAN",
        DIRECT,
        || prefers(&a, &b, b_ip) && prefers(&b, &a, a_ip),
    );
    let ab = entry(&a, &b).expect("a lists b");
    assert_eq!(preferred_path(&ab), Some(at(b_ip).as_str()), "{ab}");
    assert_eq!(ab["role"], "LEAF", "{ab}");
    let ba = entry(&b, &a).expect("b lists a");
    assert_eq!(preferred_path(&ba), Some(at(a_ip).as_str()), "{ba}");

    // The local HTTP API tells the same story as the status file.
    let st = a.api_get(&lab, "/status");
    assert_eq!(st["address"], a.address(), "{st}");
    assert_eq!(st["online"], true, "{st}");
    let p = a.api_get(&lab, &format!("/peer/{}", b.address()));
    assert_eq!(p["address"], b.address(), "{p}");
    assert_eq!(preferred_path(&p), Some(at(b_ip).as_str()), "{p}");
    let list = a.api_get(&lab, "/peer");
    let listed: Vec<&str> = list
        .as_array()
        .unwrap_or_else(|| panic!("GET /peer is not an array: {list}"))
        .iter()
        .filter_map(|p| p["address"].as_str())
        .collect();
    assert!(
        listed.contains(&root.address()) && listed.contains(&b.address()),
        "GET /peer lists the root and b: {list}"
    );
}

/// Two leaves behind separate port-restricted NATs: the root's RENDEZVOUS lets them punch
/// through, and each ends up preferring the other's NAT outside address.
#[test]
fn port_restricted_nat_leaves_go_direct_through_rendezvous() {
    let Some(lab) = Lab::for_test("vl1_port_restricted") else {
        return;
    };
    let NatWorld {
        root,
        a,
        b,
        a_wan,
        b_wan,
    } = nat_world(&lab, "203.0.113.0/24", NatKind::PortRestricted, 2);
    assert!(
        entry(&a, &b).is_none(),
        "a does not know b before any traffic"
    );

    let all = [&root, &a, &b];
    ping_until(
        &lab,
        &a,
        &b,
        &all,
        "a and b direct through their NATs",
        DIRECT,
        || prefers(&a, &b, b_wan) && prefers(&b, &a, a_wan),
    );
    // The direct endpoints are exactly the NAT mappings the root sees.
    let rs = root.status().expect("root status");
    let root_path = |l: &WeftNode| {
        peer(&rs, l.address())
            .and_then(preferred_path)
            .unwrap_or_else(|| panic!("root has no preferred path to {}: {rs}", l.label))
            .to_string()
    };
    let ab = entry(&a, &b).expect("a lists b");
    assert_eq!(preferred_path(&ab), Some(root_path(&b).as_str()), "{ab}");
    let ba = entry(&b, &a).expect("b lists a");
    assert_eq!(preferred_path(&ba), Some(root_path(&a).as_str()), "{ba}");
}

/// Leaves behind symmetric NATs (a new outside port per destination; 1.14 does no port
/// prediction): no direct path ever forms, and traffic keeps flowing through the root.
///
/// Relay evidence is the receiver's own per-peer `lastReceive` (weft extension of the peer
/// object: the last authenticated packet from that peer by any path, relayed included).
#[test]
fn symmetric_nat_leaves_stay_relayed_through_the_root() {
    let Some(lab) = Lab::for_test("vl1_symmetric") else {
        return;
    };
    let NatWorld {
        root,
        a,
        b,
        a_wan,
        b_wan,
    } = nat_world(&lab, "198.18.0.0/15", NatKind::Symmetric, 3);

    let all = [&root, &a, &b];
    ping_until(&lab, &a, &b, &all, "b knows a", ONLINE, || {
        entry(&b, &a).is_some()
    });
    // Three more rounds, 6 s apart, after the root's introduction at the first relayed packet
    // (so hole punching has been tried and has failed): each reaches b, and never directly.
    for round in 0..3 {
        if round > 0 {
            std::thread::sleep(Duration::from_secs(6));
        }
        let sent = now_ms();
        ping_until(
            &lab,
            &a,
            &b,
            &all,
            &format!("relayed ping round {round} received by b"),
            Duration::from_secs(15),
            || {
                entry(&b, &a).is_some_and(|p| {
                    let lr = p["lastReceive"].as_i64().unwrap_or_else(|| {
                        panic!(
                            "b's peer entry for a has no peer-level `lastReceive` (weft extension \
                             needed to see relayed traffic arrive): {p}"
                        )
                    });
                    lr >= sent
                })
            },
        );
        for (x, y, y_wan) in [(&a, &b, b_wan), (&b, &a, a_wan)] {
            if let Some(p) = entry(x, y) {
                assert!(
                    preferred_path(&p).is_none() && !has_path_at(&p, y_wan),
                    "{} has a direct path to {} through a symmetric NAT: {p}",
                    x.label,
                    y.label
                );
            }
        }
    }
    // The root still serves both (and is the only way between them).
    assert_root_serves(&lab, &root, &[(&a, a_wan), (&b, b_wan)], 0);
    // The relaying was done by the root's data plane, from the tables its control plane
    // published.
    let rs = root.status().expect("root status");
    let relayed = rs["status"]["dataPlane"]["relayed"].as_u64().unwrap_or(0);
    assert!(
        relayed > 0,
        "the root's data plane relayed nothing: {}",
        rs["status"]
    );
}

/// The root stops and comes back with the same home: the leaves keep running and are served
/// again within the ping schedule (WHOIS to the root every 5 s).
#[test]
fn leaves_recover_after_a_root_restart() {
    let Some(lab) = Lab::for_test("vl1_root_restart") else {
        return;
    };
    let NatWorld {
        mut root,
        a,
        b,
        a_wan,
        b_wan,
    } = nat_world(&lab, "203.0.113.0/24", NatKind::PortRestricted, 4);

    root.stop(&lab);
    let stopped = now_ms();
    // The leaves run on through the outage (they keep publishing their state).
    for l in [&a, &b] {
        l.wait_for(&lab, "running with the root down", ONLINE, |s| {
            s["status"]["clock"].as_i64().unwrap_or(0) >= stopped + 3_000
        });
    }

    root.start(&lab);
    let restarted = now_ms();

    let recovered = Duration::from_secs(30);
    for l in [&a, &b] {
        l.wait_for(&lab, "hearing from the restarted root", recovered, |s| {
            s["status"]["online"] == true
                && peer(s, root.address()).is_some_and(|r| newest_path_receive(r) >= restarted)
        });
    }
    assert_root_serves(&lab, &root, &[(&a, a_wan), (&b, b_wan)], restarted);
    // And the restarted root serves traffic between them: a finds b (WHOIS) and reaches it.
    let all = [&root, &a, &b];
    ping_until(&lab, &a, &b, &all, "b hears from a", recovered, || {
        entry(&b, &a).is_some()
    });
}

/// A leaf orbiting a moon whose root is another weft node (moon file from `weft idtool
/// initmoon` + `genmoon` in `moons.d` before start): the leaf shows the moon root with role
/// MOON and a direct path to it, next to its planet root.
#[test]
fn leaf_orbits_a_weft_moon() {
    let Some(lab) = Lab::for_test("vl1_moon") else {
        return;
    };
    let internet = lab.internet("203.0.113.0/24");
    let root_ns = lab.host("root");
    let root_ip = lab.attach(&internet, &root_ns);
    let moon_ns = lab.host("moon");
    let moon_ip = lab.attach(&internet, &moon_ns);
    let nat = lab.nat_router("nat", "192.168.1.0/24", &internet, NatKind::PortRestricted);
    let leaf_ns = lab.host("leaf");
    lab.attach(&nat.lan, &leaf_ns);

    let mut root = WeftNode::new(&lab, &root_ns, "root", 0);
    let mut moon_root = WeftNode::new(&lab, &moon_ns, "moon", 1);
    let mut leaf = WeftNode::new(&lab, &leaf_ns, "leaf", 2);
    let planet = planet_for(&lab, 5, &[(&root, root_ip)]);
    install(&planet, &[&root, &moon_root, &leaf]);
    let moon_file = moon(&lab.log_dir().join("moon-gen"), &moon_root, moon_ip);
    moon_root.install_moon(&moon_file);
    leaf.install_moon(&moon_file);
    start_all(&lab, &mut [&mut root, &mut moon_root], &mut [&mut leaf]);

    leaf.wait_for(&lab, "orbiting the moon", ONLINE, |s| {
        let moon_ok = peer(s, moon_root.address()).is_some_and(|m| {
            m["role"] == "MOON"
                && preferred_path(m) == Some(at(moon_ip).as_str())
                && newest_path_receive(m) > 0
        });
        let planet_ok = peer(s, root.address()).is_some_and(|r| {
            r["role"] == "PLANET" && preferred_path(r) == Some(at(root_ip).as_str())
        });
        moon_ok && planet_ok
    });
    // The moon root and the planet root both serve the leaf (seen at its NAT's address).
    assert_root_serves(&lab, &moon_root, &[(&leaf, nat.wan)], 0);
    assert_root_serves(&lab, &root, &[(&leaf, nat.wan)], 0);
}

/// A leaf whose only way out is TCP to a `weft tcp-relay` (`forceTcpRelay`): it comes online
/// through the tunnel, and the root sees it at the relay's UDP address. spec: vl1.md §8.13
#[test]
fn leaf_behind_tcp_only_link_goes_online_through_weft_tcp_relay() {
    let Some(lab) = Lab::for_test("vl1_tcp_fallback") else {
        return;
    };
    let internet = lab.internet("203.0.113.0/24");
    let root_ns = lab.host("root");
    let root_ip = lab.attach(&internet, &root_ns);
    let relay_ns = lab.host("relay");
    let relay_ip = lab.attach(&internet, &relay_ns);
    let leaf_ns = lab.host("leaf");
    // The leaf's only link goes to the relay host, which does not forward.
    lab.link(&relay_ns, &leaf_ns, "10.9.0.1/24", "10.9.0.2/24");

    let mut root = WeftNode::new(&lab, &root_ns, "root", 0);
    let mut leaf = WeftNode::new(&lab, &leaf_ns, "leaf", 1);
    std::fs::write(
        leaf.home.join("local.conf"),
        r#"{"settings":{"forceTcpRelay":true,"tcpFallbackRelay":"10.9.0.1/4443"}}"#,
    )
    .expect("leaf local.conf");
    let planet = planet_for(&lab, 7, &[(&root, root_ip)]);
    install(&planet, &[&root, &leaf]);

    let mut relay_cmd = std::process::Command::new(weft_conformance::weftnode::weft_bin());
    relay_cmd.args(["tcp-relay", "--listen", "10.9.0.1:4443"]);
    let _relay = lab.spawn(&relay_ns, "tcp-relay", &relay_cmd);
    root.start(&lab);
    leaf.start(&lab);

    let s = leaf.wait_online(&lab, ONLINE);
    assert_eq!(s["status"]["tcpFallbackActive"], true, "{s}");
    let r = peer(&s, root.address()).expect("leaf lists its root");
    assert_eq!(r["tunneled"], true, "{r}");
    assert_eq!(preferred_path(r), Some(at(root_ip).as_str()), "{r}");
    // The root reaches the leaf at the relay's address on the internet segment.
    let rs = root.wait_for(&lab, "root lists the leaf via the relay", ONLINE, |st| {
        peer(st, leaf.address()).is_some_and(|p| has_path_at(p, relay_ip))
    });
    assert!(peer(&rs, leaf.address()).is_some(), "{rs}");
    leaf.assert_running(&lab);
    root.assert_running(&lab);
}
