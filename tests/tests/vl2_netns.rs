//! VL2 scenarios with real `weft daemon` processes, real TAP devices and real traffic in network
//! namespaces: a weft controller's private network (IPv4 from a pool, rfc4193 and 6plane IPv6),
//! ping and TCP between members through their TAPs, rules pushed by the controller (an ICMP drop
//! and a tag rule) enforced on the wire, a deauthorized member cut off, a member restarting
//! with its config from disk while the controller is down, and an ad-hoc network with no
//! controller at all.
//!
//! Needs root, iproute2 and ping (`scripts/install-test-deps.sh`); fails loudly without them
//! unless `WEFT_SKIP_NETNS=1` is set. Logs and homes are kept when a test fails.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use weft_conformance::netns::{Lab, Ns};
use weft_conformance::weftnode::{WeftNode, private_planet};

/// Joining, authorization and config delivery (requests repeat every 5 s after an error).
const CONFIGURED: Duration = Duration::from_secs(40);
/// First traffic through the TAPs (ARP via multicast gathering, WHOIS, HELLO).
const TRAFFIC: Duration = Duration::from_secs(40);

fn planet_id(salt: u64) -> u64 {
    0x7765_6674_0002_0000 | (u64::from(std::process::id()) << 24) | salt
}

/// The network object of `nwid` on `node` (its local API).
fn network(lab: &Lab, node: &WeftNode, nwid: &str) -> Value {
    node.api_get(lab, &format!("/network/{nwid}"))
}

/// Waits until `node` reports `status` for `nwid` (and `extra` holds on the object).
#[track_caller]
fn wait_network(
    lab: &Lab,
    node: &WeftNode,
    nwid: &str,
    status: &str,
    timeout: Duration,
    extra: impl Fn(&Value) -> bool,
) -> Value {
    let start = Instant::now();
    loop {
        node.assert_running(lab);
        let n = network(lab, node, nwid);
        if n["status"] == status && extra(&n) {
            eprintln!(
                "{}: network {nwid} {status} after {:.1} s",
                node.label,
                start.elapsed().as_secs_f64()
            );
            return n;
        }
        assert!(
            start.elapsed() < timeout,
            "{}: network {nwid} not {status} within {timeout:?}; last: {n}",
            node.label
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The first assigned address of a family, without its prefix length.
fn assigned(n: &Value, pred: impl Fn(&IpAddr) -> bool) -> Option<IpAddr> {
    n["assignedAddresses"]
        .as_array()?
        .iter()
        .filter_map(|a| a.as_str()?.split('/').next()?.parse::<IpAddr>().ok())
        .find(|ip| pred(ip))
}

/// One ping from `ns` to `ip`; true if it was answered.
fn ping_once(lab: &Lab, ns: &Ns, ip: IpAddr) -> bool {
    let ip = ip.to_string();
    lab.exec(ns, &["ping", "-c", "1", "-W", "1", &ip])
        .status
        .success()
}

/// Pings until one is answered, for at most `timeout`.
#[track_caller]
fn ping_works(lab: &Lab, from: &WeftNode, ip: IpAddr, timeout: Duration) {
    let start = Instant::now();
    while !ping_once(lab, &from.ns, ip) {
        from.assert_running(lab);
        assert!(
            start.elapsed() < timeout,
            "{}: no ping answer from {ip} within {timeout:?}\n{}",
            from.label,
            lab.exec_ok(&from.ns, &["ip", "addr"])
        );
    }
    eprintln!(
        "{} -> {ip}: ping answered after {:.1} s",
        from.label,
        start.elapsed().as_secs_f64()
    );
}

/// Pings `tries` times; true if none was answered.
fn ping_blocked(lab: &Lab, from: &Ns, ip: IpAddr, tries: usize) -> bool {
    (0..tries).all(|_| !ping_once(lab, from, ip))
}

/// Sends `bytes` over TCP from `from` to `to_ip` (a listener in `to`'s namespace) and returns
/// what the listener received (the count, as the listener read it).
fn tcp_transfer(
    lab: &Lab,
    from: &Ns,
    to: &Ns,
    to_ip: IpAddr,
    bytes: usize,
) -> std::io::Result<usize> {
    let addr = SocketAddr::new(to_ip, 5201);
    let listener = lab.in_ns(to, || TcpListener::bind(addr))?;
    let server = std::thread::spawn(move || -> std::io::Result<usize> {
        let (mut s, _) = listener.accept()?;
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        let mut buf = vec![0u8; 65536];
        let mut total = 0;
        loop {
            let n = s.read(&mut buf)?;
            if n == 0 {
                break;
            }
            total += n;
        }
        s.write_all(&(total as u64).to_be_bytes())?;
        Ok(total)
    });
    let client = lab.in_ns(from, || -> std::io::Result<usize> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        let chunk = vec![0x5au8; 65536];
        let mut sent = 0;
        while sent < bytes {
            let n = chunk.len().min(bytes - sent);
            s.write_all(&chunk[..n])?;
            sent += n;
        }
        s.shutdown(std::net::Shutdown::Write)?;
        let mut ack = [0u8; 8];
        s.read_exact(&mut ack)?;
        Ok(u64::from_be_bytes(ack) as usize)
    })?;
    let served = server
        .join()
        .map_err(|_| std::io::Error::other("server thread panicked"))??;
    assert_eq!(client, served);
    Ok(served)
}

/// A root, a controller and members on one LAN, all started and online.
struct World {
    lab: Lab,
    root: WeftNode,
    ctl: WeftNode,
    members: Vec<WeftNode>,
}

fn world(name: &str, salt: u64, members: usize) -> Option<World> {
    let lab = Lab::for_test(name)?;
    let root_ns = lab.host("root");
    let ctl_ns = lab.host("ctl");
    let member_ns: Vec<Ns> = (0..members).map(|i| lab.host(&format!("m{i}"))).collect();
    let mut hosts: Vec<&Ns> = vec![&root_ns, &ctl_ns];
    hosts.extend(member_ns.iter());
    let lan = lab.bridge_lan(None, &hosts, "10.20.0.0/24");
    // The underlay stays IPv4-only; interfaces created from now on (the TAPs) get IPv6 for
    // the rfc4193 and 6plane addresses.
    for ns in &member_ns {
        lab.sysctl(ns, "net.ipv6.conf.default.disable_ipv6", "0");
    }
    let mut root = WeftNode::new(&lab, &root_ns, "root", 0);
    let mut ctl = WeftNode::new(&lab, &ctl_ns, "ctl", 1);
    let mut ms: Vec<WeftNode> = member_ns
        .iter()
        .enumerate()
        .map(|(i, ns)| WeftNode::new(&lab, ns, &format!("m{i}"), 2 + i))
        .collect();
    let planet = private_planet(
        lab.log_dir(),
        planet_id(salt),
        &[(&root, lan.addr_of(&root_ns))],
    );
    for n in std::iter::once(&root)
        .chain(std::iter::once(&ctl))
        .chain(ms.iter())
    {
        n.install_planet(&planet);
    }
    root.start(&lab);
    ctl.start(&lab);
    for m in ms.iter_mut() {
        m.start(&lab);
    }
    ctl.wait_online(&lab, CONFIGURED);
    for m in &ms {
        m.wait_online(&lab, CONFIGURED);
    }
    Some(World {
        lab,
        root,
        ctl,
        members: ms,
    })
}

/// Creates a private network on the controller; returns its id.
fn create_network(lab: &Lab, ctl: &WeftNode, body: Value) -> String {
    let v = ctl.api_post(
        lab,
        &format!("/controller/network/{}______", ctl.address()),
        &body,
    );
    let id = v["id"].as_str().expect("network id").to_string();
    assert_eq!(id.len(), 16, "{v}");
    assert!(id.starts_with(ctl.address()), "{v}");
    id
}

fn set_member(lab: &Lab, ctl: &WeftNode, nwid: &str, member: &WeftNode, body: Value) -> Value {
    ctl.api_post(
        lab,
        &format!("/controller/network/{nwid}/member/{}", member.address()),
        &body,
    )
}

#[test]
fn private_network_members_ping_tcp_rules_deauth_and_restart() {
    let Some(mut w) = world("vl2_private", 1, 2) else {
        return;
    };
    let lab = &w.lab;
    let nwid = create_network(
        lab,
        &w.ctl,
        json!({
            "name": "lab",
            "v4AssignMode": {"zt": true},
            "v6AssignMode": {"rfc4193": true, "6plane": true, "zt": false},
            "ipAssignmentPools": [{"ipRangeStart": "10.147.17.1", "ipRangeEnd": "10.147.17.254"}],
            "routes": [{"target": "10.147.17.0/24", "via": null}],
        }),
    );
    let (a, b) = (&w.members[0], &w.members[1]);
    for m in [a, b] {
        m.api_post(lab, &format!("/network/{nwid}"), &json!({}));
    }
    // private network, not yet authorized
    wait_network(lab, a, &nwid, "ACCESS_DENIED", CONFIGURED, |_| true);
    let rec = w.ctl.api_get(
        lab,
        &format!("/controller/network/{nwid}/member/{}", a.address()),
    );
    assert_eq!(rec["authorized"], false, "{rec}");
    assert_eq!(rec["vMajor"], -1, "{rec}");
    for m in [a, b] {
        set_member(lab, &w.ctl, &nwid, m, json!({"authorized": true}));
    }
    let has_v4 = |n: &Value| assigned(n, IpAddr::is_ipv4).is_some();
    let na = wait_network(lab, a, &nwid, "OK", CONFIGURED, has_v4);
    let nb = wait_network(lab, b, &nwid, "OK", CONFIGURED, has_v4);
    assert_eq!(na["name"], "lab", "{na}");
    assert_eq!(na["type"], "PRIVATE", "{na}");
    assert_eq!(na["mtu"], 2800, "{na}");
    let dev = na["portDeviceName"].as_str().unwrap().to_string();
    assert!(dev.starts_with("zt") && dev.len() == 10, "{na}");
    let b_v4 = assigned(&nb, IpAddr::is_ipv4).unwrap();
    let a_v4 = assigned(&na, IpAddr::is_ipv4).unwrap();
    let b_rfc = assigned(&nb, |ip| ip.to_string().starts_with("fd")).unwrap();
    let b_6plane = assigned(&nb, |ip| ip.to_string().starts_with("fc")).unwrap();
    // the addresses really are on the TAP, with the MTU and MAC of the config
    let link = lab.exec_ok(&a.ns, &["ip", "-d", "addr", "show", "dev", &dev]);
    assert!(link.contains(&format!("{a_v4}/24")), "{link}");
    assert!(link.contains("mtu 2800"), "{link}");
    assert!(link.contains(na["mac"].as_str().unwrap()), "{link}");

    // IPv4, rfc4193 and 6plane (NDP emulation) pings through the TAPs, and TCP
    ping_works(lab, a, b_v4, TRAFFIC);
    ping_works(lab, a, b_rfc, TRAFFIC);
    ping_works(lab, a, b_6plane, TRAFFIC);
    let n = tcp_transfer(lab, &a.ns, &b.ns, b_v4, 4 << 20).expect("TCP a -> b");
    assert_eq!(n, 4 << 20);

    // an ICMP drop rule reaches the members and is enforced; TCP still passes
    w.ctl.api_post(
        lab,
        &format!("/controller/network/{nwid}"),
        &json!({"rules": [
            {"type": "MATCH_IP_PROTOCOL", "not": false, "or": false, "ipProtocol": 1},
            {"type": "ACTION_DROP"},
            {"type": "ACTION_ACCEPT"}
        ]}),
    );
    wait_network(lab, a, &nwid, "OK", CONFIGURED, |n| {
        n["netconfRevision"].as_u64() > na["netconfRevision"].as_u64()
    });
    wait_network(lab, b, &nwid, "OK", CONFIGURED, |n| {
        n["netconfRevision"].as_u64() > na["netconfRevision"].as_u64()
    });
    assert!(ping_blocked(lab, &a.ns, b_v4, 3), "ICMP passed a drop rule");
    assert!(ping_blocked(lab, &b.ns, a_v4, 2), "ICMP passed a drop rule");
    tcp_transfer(lab, &a.ns, &b.ns, b_v4, 1 << 20).expect("TCP under the ICMP rule");

    // a tag rule: only members whose tag 1000 values are equal may talk
    w.ctl.api_post(
        lab,
        &format!("/controller/network/{nwid}"),
        &json!({
            "tags": [{"id": 1000, "default": null}],
            "rules": [
                {"type": "MATCH_TAGS_DIFFERENCE", "not": true, "or": false, "id": 1000, "value": 0},
                {"type": "ACTION_DROP"},
                {"type": "ACTION_ACCEPT"}
            ]
        }),
    );
    set_member(lab, &w.ctl, &nwid, a, json!({"tags": [[1000, 100]]}));
    set_member(lab, &w.ctl, &nwid, b, json!({"tags": [[1000, 200]]}));
    std::thread::sleep(Duration::from_secs(3));
    assert!(ping_blocked(lab, &a.ns, b_v4, 3), "different tags talked");
    set_member(lab, &w.ctl, &nwid, b, json!({"tags": [[1000, 100]]}));
    ping_works(lab, a, b_v4, TRAFFIC);

    // deauthorizing b cuts it off within seconds (revocation pushed to a)
    set_member(lab, &w.ctl, &nwid, b, json!({"authorized": false}));
    let start = Instant::now();
    while ping_once(lab, &a.ns, b_v4) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "deauthorized member still reachable after 10 s"
        );
    }
    assert!(ping_blocked(lab, &a.ns, b_v4, 3));
    set_member(lab, &w.ctl, &nwid, b, json!({"authorized": true}));
    ping_works(lab, a, b_v4, TRAFFIC);

    // b restarts while the controller is down: its config comes from disk
    let saved = std::fs::read(b.home.join(format!("networks.d/{nwid}.conf"))).unwrap();
    assert!(saved.starts_with(b"v="), "networks.d holds the dictionary");
    w.ctl.stop(lab);
    let b = &mut w.members[1];
    b.stop(lab);
    b.start(lab);
    let nb2 = wait_network(lab, b, &nwid, "OK", CONFIGURED, has_v4);
    assert_eq!(assigned(&nb2, IpAddr::is_ipv4), Some(b_v4), "{nb2}");
    let a = &w.members[0];
    ping_works(lab, a, b_v4, TRAFFIC);
    let _ = &w.root;
}

#[test]
fn adhoc_network_needs_no_controller() {
    let Some(w) = world("vl2_adhoc", 2, 2) else {
        return;
    };
    let lab = &w.lab;
    // ff SSSS EEEE 000000: IPv6 only, ports 22..22, 6plane addresses, NDP emulation
    let nwid = "ff00160016000000";
    let (a, b) = (&w.members[0], &w.members[1]);
    for m in [a, b] {
        m.api_post(lab, &format!("/network/{nwid}"), &json!({}));
    }
    let six = |n: &Value| assigned(n, IpAddr::is_ipv6).is_some();
    let na = wait_network(lab, a, nwid, "OK", CONFIGURED, six);
    let nb = wait_network(lab, b, nwid, "OK", CONFIGURED, six);
    assert_eq!(na["name"], "adhoc-0016-0016", "{na}");
    assert_eq!(na["type"], "PUBLIC", "{na}");
    let b6 = assigned(&nb, IpAddr::is_ipv6).unwrap();
    assert!(b6.to_string().starts_with("fce9:16:"), "{nb}");
    // never saved: the placeholder stays
    let conf = std::fs::read(a.home.join(format!("networks.d/{nwid}.conf"))).unwrap();
    assert_eq!(conf, b"\n");
    ping_works(lab, a, b6, TRAFFIC);
    let _ = (&w.root, &w.ctl);
}

#[test]
fn bridge_member_joins_a_lan_to_the_network() {
    let Some(w) = world("vl2_bridge", 3, 2) else {
        return;
    };
    let lab = &w.lab;
    let nwid = create_network(
        lab,
        &w.ctl,
        json!({
            "name": "bridged",
            "v4AssignMode": {"zt": true},
            "ipAssignmentPools": [{"ipRangeStart": "10.147.18.1", "ipRangeEnd": "10.147.18.100"}],
            "routes": [{"target": "10.147.18.0/24", "via": null}],
        }),
    );
    let (a, b) = (&w.members[0], &w.members[1]);
    set_member(lab, &w.ctl, &nwid, a, json!({"authorized": true}));
    // b bridges: no managed address on its port, which becomes a bridge port
    set_member(
        lab,
        &w.ctl,
        &nwid,
        b,
        json!({"authorized": true, "activeBridge": true, "noAutoAssignIps": true}),
    );
    a.api_post(lab, &format!("/network/{nwid}"), &json!({}));
    b.api_post(
        lab,
        &format!("/network/{nwid}"),
        &json!({"allowManaged": false}),
    );
    wait_network(lab, a, &nwid, "OK", CONFIGURED, |n| {
        assigned(n, IpAddr::is_ipv4).is_some()
    });
    let nb = wait_network(lab, b, &nwid, "OK", CONFIGURED, |n| n["bridge"] == true);
    let tap = nb["portDeviceName"].as_str().unwrap().to_string();

    // a third namespace on a LAN behind b: br0 = b's port + a veth to the host
    let host = lab.host("lanhost");
    let hname = host.name().to_string();
    for cmd in [
        vec!["ip", "link", "add", "br0", "type", "bridge"],
        vec![
            "ip", "link", "add", "vb", "type", "veth", "peer", "name", "vh",
        ],
        vec!["ip", "link", "set", "vh", "netns", &hname],
        vec!["ip", "link", "set", "vb", "master", "br0"],
        vec!["ip", "link", "set", &tap, "master", "br0"],
        vec!["ip", "link", "set", "vb", "up"],
        vec!["ip", "link", "set", "br0", "up"],
    ] {
        lab.exec_ok(&b.ns, &cmd);
    }
    lab.exec_ok(
        &host,
        &["ip", "addr", "add", "10.147.18.250/24", "dev", "vh"],
    );
    lab.exec_ok(&host, &["ip", "link", "set", "vh", "up"]);
    let h_ip: IpAddr = "10.147.18.250".parse().unwrap();
    // a reaches the bridged host (ARP by multicast to the bridge, then EXT_FRAMEs both ways)
    ping_works(lab, a, h_ip, TRAFFIC);
    let a_v4 = assigned(&network(lab, a, &nwid), IpAddr::is_ipv4).unwrap();
    assert!(
        lab.exec(&host, &["ping", "-c", "1", "-W", "2", &a_v4.to_string()])
            .status
            .success(),
        "the bridged host reaches a"
    );
    let _ = (&w.root, &w.ctl);
}

/// The data plane is a separate process without root: killing it makes the control plane start a
/// new one, republish the tables, and traffic resumes; nothing is lost.
#[test]
fn data_plane_restart_keeps_traffic() {
    let Some(w) = world("vl2_dprestart", 4, 2) else {
        return;
    };
    let lab = &w.lab;
    let nwid = create_network(
        lab,
        &w.ctl,
        json!({
            "v4AssignMode": {"zt": true},
            "ipAssignmentPools": [{"ipRangeStart": "10.147.19.1", "ipRangeEnd": "10.147.19.100"}],
            "routes": [{"target": "10.147.19.0/24", "via": null}],
        }),
    );
    let (a, b) = (&w.members[0], &w.members[1]);
    for m in [a, b] {
        set_member(lab, &w.ctl, &nwid, m, json!({"authorized": true}));
        m.api_post(lab, &format!("/network/{nwid}"), &json!({}));
    }
    let has_v4 = |n: &Value| assigned(n, IpAddr::is_ipv4).is_some();
    wait_network(lab, a, &nwid, "OK", CONFIGURED, has_v4);
    let nb = wait_network(lab, b, &nwid, "OK", CONFIGURED, has_v4);
    let b_v4 = assigned(&nb, IpAddr::is_ipv4).unwrap();
    ping_works(lab, a, b_v4, TRAFFIC);

    let st = a.api_get(lab, "/status");
    let dp = &st["dataPlane"];
    assert_eq!(dp["mode"], "process", "{dp}");
    let pid = dp["pid"].as_u64().expect("data plane pid");
    let proc_status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = proc_status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uid_line.split_whitespace().skip(1).all(|u| u == "65534"),
        "the data plane dropped root: {uid_line}"
    );
    // kill it hard; the control plane restarts it
    assert!(
        std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let start = Instant::now();
    loop {
        let dp = a.api_get(lab, "/status")["dataPlane"].clone();
        if dp["restarts"] == 1 && dp["pid"].as_u64().is_some_and(|p| p != pid) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "not restarted: {dp}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    ping_works(lab, a, b_v4, Duration::from_secs(20));
    // the new data plane serves the TAP: it holds a /dev/net/tun descriptor passed to it
    let new_pid = a.api_get(lab, "/status")["dataPlane"]["pid"]
        .as_u64()
        .unwrap();
    let holds_tun = std::fs::read_dir(format!("/proc/{new_pid}/fd"))
        .unwrap()
        .flatten()
        .any(|e| std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy() == "/dev/net/tun"));
    assert!(holds_tun, "the data plane does not hold the TAP");
    let n = network(lab, a, &nwid);
    assert_eq!(n["status"], "OK", "{n}");
    let _ = (&w.root, &w.ctl);
}

/// The same traffic over every UDP back-end of the data plane: both members restart with
/// `settings.dataplane.backend` set, the status shows that back-end, and ping, a drop rule and a
/// 2 MiB TCP transfer work — with the frames on the data plane's fast path (its counters move),
/// not through the control plane; mmsg once more with two workers (SO_REUSEPORT sockets and a
/// two-queue TAP). AF_XDP steers one interface, so its members bind their LAN
/// address (`settings.bind`), in generic or native mode as the veth allows.
#[test]
fn every_dataplane_backend_carries_the_network() {
    let Some(mut w) = world("vl2_backends", 5, 2) else {
        return;
    };
    let nwid = create_network(
        &w.lab,
        &w.ctl,
        json!({
            "name": "backends",
            "v4AssignMode": {"zt": true},
            "ipAssignmentPools": [{"ipRangeStart": "10.147.19.1", "ipRangeEnd": "10.147.19.254"}],
            "routes": [{"target": "10.147.19.0/24", "via": null}],
            "rules": [
                {"type": "MATCH_IP_PROTOCOL", "not": false, "or": false, "ipProtocol": 17},
                {"type": "MATCH_IP_DEST_PORT_RANGE", "not": false, "or": false, "start": 9, "end": 9},
                {"type": "ACTION_DROP"},
                {"type": "ACTION_ACCEPT"}
            ],
        }),
    );
    for m in &w.members {
        m.api_post(&w.lab, &format!("/network/{nwid}"), &json!({}));
        set_member(&w.lab, &w.ctl, &nwid, m, json!({"authorized": true}));
    }
    let mut tested = Vec::new();
    for (backend, workers) in [
        ("af_xdp", 1),
        ("io_uring", 1),
        ("mmsg", 1),
        ("plain", 1),
        ("mmsg", 2),
    ] {
        for m in w.members.iter_mut() {
            m.stop(&w.lab);
            let mut settings = json!({
                "allowTcpFallbackRelay": false,
                "portMappingEnabled": false,
                "dataplane": {"backend": backend, "workers": workers}
            });
            if backend == "af_xdp" {
                // AF_XDP steers one interface's packets: bind that interface's address
                let addr = w
                    .lab
                    .exec_ok(&m.ns, &["ip", "-4", "-o", "addr", "show", "dev", "eth0"]);
                let ip = addr
                    .split_whitespace()
                    .skip_while(|t| *t != "inet")
                    .nth(1)
                    .and_then(|c| c.split('/').next())
                    .expect("eth0 has an IPv4 address")
                    .to_string();
                settings["bind"] = json!([ip]);
            }
            m.write_local_conf(&json!({ "settings": settings }));
            m.start(&w.lab);
        }
        let lab = &w.lab;
        let (a, b) = (&w.members[0], &w.members[1]);
        let st = a.wait_for(lab, "data-plane status", CONFIGURED, |s| {
            s["status"]["dataPlane"]["backend"].is_string()
        });
        let chosen = st["status"]["dataPlane"]["backend"]
            .as_str()
            .unwrap_or_default();
        assert!(
            chosen.starts_with(backend),
            "asked for {backend}, got {chosen}"
        );
        let has_v4 = |n: &Value| assigned(n, IpAddr::is_ipv4).is_some();
        wait_network(lab, a, &nwid, "OK", CONFIGURED, has_v4);
        let nb = wait_network(lab, b, &nwid, "OK", CONFIGURED, has_v4);
        let b_v4 = assigned(&nb, IpAddr::is_ipv4).unwrap();
        ping_works(lab, a, b_v4, TRAFFIC);
        // After a restart the first frames go through the control plane, which pushes
        // credentials and publishes the members; then the data plane takes over.
        let fast = |s: &Value| s["status"]["dataPlane"]["framesOut"].as_u64().unwrap_or(0) > 0;
        let start = Instant::now();
        while !(a.status().as_ref().is_some_and(fast) && b.status().as_ref().is_some_and(fast)) {
            assert!(
                start.elapsed() < TRAFFIC,
                "{backend}: the fast path never engaged"
            );
            ping_once(lab, &a.ns, b_v4);
        }
        let n = tcp_transfer(lab, &a.ns, &b.ns, b_v4, 2 << 20).expect("TCP a -> b");
        assert_eq!(n, 2 << 20, "{backend}");
        // the rule drops UDP to port 9 (discard) in the data plane
        let before = b.status().unwrap()["status"]["dataPlane"]["framesFiltered"]
            .as_u64()
            .unwrap_or(0)
            + a.status().unwrap()["status"]["dataPlane"]["framesFiltered"]
                .as_u64()
                .unwrap_or(0);
        let script = format!("for i in $(seq 20); do echo discard > /dev/udp/{b_v4}/9; done");
        lab.exec_ok(&a.ns, &["bash", "-c", &script]);
        let filtered = |s: &Value| {
            s["status"]["dataPlane"]["framesFiltered"]
                .as_u64()
                .unwrap_or(0)
        };
        a.wait_for(
            lab,
            "UDP to port 9 filtered",
            Duration::from_secs(10),
            |s| filtered(s) + b.status().as_ref().map_or(0, filtered) >= before + 20,
        );
        let out = a.status().unwrap()["status"]["dataPlane"]["framesOut"]
            .as_u64()
            .unwrap_or(0);
        // 2 MiB in segments of at most 2,800 bytes: over 700 frames
        assert!(out > 700, "{backend}: only {out} frames took the fast path");
        tested.push(format!("{backend}/{workers}"));
    }
    assert_eq!(
        tested,
        ["af_xdp/1", "io_uring/1", "mmsg/1", "plain/1", "mmsg/2"]
    );
}
