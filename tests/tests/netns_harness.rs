//! Proves the network-namespace lab (`weft_conformance::netns`) that the multi-node scenario
//! tests run on: bridged LANs, port-restricted and symmetric NAT, and cleanup. No weft node is
//! involved. Needs root, iproute2, iptables and ping (`scripts/install-test-deps.sh`); fails
//! loudly without them unless `WEFT_SKIP_NETNS=1` is set.

use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::Command;
use std::time::{Duration, Instant};

use weft_conformance::netns::{Lab, NatKind, Ns, listed_namespaces};

/// Long enough for any datagram inside one machine; used when a datagram must arrive.
const ARRIVES: Duration = Duration::from_secs(3);
/// How long to wait before concluding a datagram was not delivered.
const NOT_DELIVERED: Duration = Duration::from_millis(500);

/// Receives one datagram within `timeout`, or `None`.
fn recv(sock: &UdpSocket, timeout: Duration) -> Option<(Vec<u8>, SocketAddr)> {
    sock.set_read_timeout(Some(timeout))
        .expect("set_read_timeout");
    let mut buf = [0u8; 2048];
    match sock.recv_from(&mut buf) {
        Ok((n, from)) => Some((buf[..n].to_vec(), from)),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => None,
        // A port-unreachable ICMP from an earlier send surfaces here on Linux; not a datagram.
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => recv(sock, timeout),
        Err(e) => panic!("recv_from on {:?}: {e}", sock.local_addr()),
    }
}

/// Receives one datagram that must arrive.
fn expect_recv(sock: &UdpSocket, what: &str) -> (Vec<u8>, SocketAddr) {
    recv(sock, ARRIVES).unwrap_or_else(|| panic!("{what}: nothing arrived within {ARRIVES:?}"))
}

fn send(sock: &UdpSocket, payload: &[u8], to: SocketAddr) {
    sock.send_to(payload, to)
        .unwrap_or_else(|e| panic!("send_to {to} from {:?}: {e}", sock.local_addr()));
}

fn v4(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(ip, port))
}

fn port_of(sock: &UdpSocket) -> u16 {
    sock.local_addr().expect("local_addr").port()
}

fn default_route(lab: &Lab, ns: &Ns) -> String {
    lab.exec_ok(ns, &["ip", "-4", "route", "show", "default"])
}

/// Whether `pid` is (still) a process running `program` (a recycled PID runs something else).
fn process_is(pid: u32, program: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| c.split(|b| *b == 0).next() == Some(program.as_bytes()))
}

#[test]
fn two_hosts_on_a_bridged_lan_reach_each_other() {
    let Some(lab) = Lab::for_test("bridged_lan") else {
        return;
    };
    let a = lab.host("a");
    let b = lab.host("b");
    let lan = lab.bridge_lan(None, &[&a, &b], "10.77.0.0/24");
    let (a_ip, b_ip) = (lan.addr_of(&a), lan.addr_of(&b));
    assert_eq!(
        (a_ip, b_ip),
        (Ipv4Addr::new(10, 77, 0, 1), Ipv4Addr::new(10, 77, 0, 2))
    );

    // No router on this LAN, so no default route anywhere.
    assert_eq!(default_route(&lab, &a).trim(), "");
    assert_eq!(default_route(&lab, &b).trim(), "");

    lab.exec_ok(&a, &["ping", "-c1", "-W1", &b_ip.to_string()]);
    lab.exec_ok(&b, &["ping", "-c1", "-W1", &a_ip.to_string()]);

    // UDP both ways with sockets living in the namespaces.
    let sa = lab.udp_socket(&a, "0.0.0.0:0");
    let sb = lab.udp_socket(&b, "0.0.0.0:4000");
    send(&sa, b"ping", v4(b_ip, 4000));
    let (data, from) = expect_recv(&sb, "a -> b over the LAN");
    assert_eq!(
        (data.as_slice(), from),
        (&b"ping"[..], v4(a_ip, port_of(&sa)))
    );
    send(&sb, b"pong", from);
    let (data, from) = expect_recv(&sa, "b -> a over the LAN");
    assert_eq!((data.as_slice(), from), (&b"pong"[..], v4(b_ip, 4000)));

    // A plain veth link works the same way.
    let c = lab.host("c");
    let link = lab.link(&a, &c, "10.78.0.1/30", "10.78.0.2/30");
    lab.exec_ok(&c, &["ping", "-c1", "-W1", &link.a_addr.to_string()]);
}

#[test]
fn port_restricted_nat_masquerades_and_filters() {
    let Some(lab) = Lab::for_test("port_restricted_nat") else {
        return;
    };
    let internet = lab.internet("203.0.113.0/24");
    let public = lab.host("public");
    let public2 = lab.host("public2");
    let pub_ip = lab.attach(&internet, &public);
    let pub2_ip = lab.attach(&internet, &public2);
    // Both sites use the same private range, as real home networks do.
    let nat_a = lab.nat_router("nata", "192.168.1.0/24", &internet, NatKind::PortRestricted);
    let nat_b = lab.nat_router("natb", "192.168.1.0/24", &internet, NatKind::PortRestricted);
    let leaf_a = lab.host("leafa");
    let leaf_b = lab.host("leafb");
    let leaf_a_ip = lab.attach(&nat_a.lan, &leaf_a);
    lab.attach(&nat_b.lan, &leaf_b);
    assert_eq!(nat_a.lan.gateway(), Some(Ipv4Addr::new(192, 168, 1, 1)));
    assert!(
        default_route(&lab, &leaf_a).contains("via 192.168.1.1"),
        "leaf default route points at its NAT"
    );
    // Nothing outside the NATs has a default route.
    for ns in [&public, &public2, &nat_a.ns, &nat_b.ns] {
        assert_eq!(
            default_route(&lab, ns).trim(),
            "",
            "{ns} has no default route"
        );
    }

    let pub_sock = lab.udp_socket(&public, "0.0.0.0:7000");
    let pub2_sock = lab.udp_socket(&public2, "0.0.0.0:7000");
    let a_sock = lab.udp_socket(&leaf_a, "0.0.0.0:0");
    let b_sock = lab.udp_socket(&leaf_b, "0.0.0.0:0");

    // Outbound: the public host sees each NAT's outside address, with the inside port kept.
    send(&a_sock, b"from-a", v4(pub_ip, 7000));
    let (data, seen_a) = expect_recv(&pub_sock, "leaf a -> public");
    assert_eq!(data, b"from-a");
    assert_eq!(
        seen_a,
        v4(nat_a.wan, port_of(&a_sock)),
        "source is NAT a's outside address"
    );
    send(&b_sock, b"from-b", v4(pub_ip, 7000));
    let (data, seen_b) = expect_recv(&pub_sock, "leaf b -> public");
    assert_eq!(data, b"from-b");
    assert_eq!(
        seen_b,
        v4(nat_b.wan, port_of(&b_sock)),
        "source is NAT b's outside address"
    );

    // Replies from the contacted endpoint come back through the mapping.
    send(&pub_sock, b"reply", seen_a);
    let (data, from) = expect_recv(&a_sock, "public -> leaf a reply");
    assert_eq!((data.as_slice(), from), (&b"reply"[..], v4(pub_ip, 7000)));

    // Endpoint-independent mapping: a second destination sees the same outside endpoint.
    send(&a_sock, b"from-a-2", v4(pub2_ip, 7000));
    let (_, seen_a2) = expect_recv(&pub2_sock, "leaf a -> public2");
    assert_eq!(
        seen_a2, seen_a,
        "same outside endpoint for every destination"
    );

    // Filtering: the mapped endpoint does not accept datagrams from a port leaf a never sent to.
    let pub_other = lab.udp_socket(&public, "0.0.0.0:7001");
    send(&pub_other, b"unsolicited-other-port", seen_a);
    assert_eq!(
        recv(&a_sock, NOT_DELIVERED),
        None,
        "other source port filtered"
    );

    // Unsolicited: a leaf socket that never sent anything is unreachable from outside, at its
    // port on the NAT's outside address.
    let quiet = lab.udp_socket(&leaf_a, "0.0.0.0:0");
    send(&pub_sock, b"unsolicited", v4(nat_a.wan, port_of(&quiet)));
    assert_eq!(
        recv(&quiet, NOT_DELIVERED),
        None,
        "unsolicited datagram not delivered"
    );
    // And the private address is not routable from the internet at all.
    let err = pub_sock
        .send_to(b"direct", v4(leaf_a_ip, port_of(&quiet)))
        .expect_err("the internet has no route to a private LAN");
    assert_eq!(err.kind(), ErrorKind::NetworkUnreachable, "{err}");
}

#[test]
fn symmetric_nat_uses_a_new_port_per_destination() {
    let Some(lab) = Lab::for_test("symmetric_nat") else {
        return;
    };
    let internet = lab.internet("198.18.0.0/15");
    let p1 = lab.host("pub1");
    let p2 = lab.host("pub2");
    let p1_ip = lab.attach(&internet, &p1);
    let p2_ip = lab.attach(&internet, &p2);
    let nat = lab.nat_router("nat", "10.0.0.0/24", &internet, NatKind::Symmetric);
    let leaf = lab.host("leaf");
    lab.attach(&nat.lan, &leaf);

    let dests = [
        (&p1, v4(p1_ip, 7000)),
        (&p2, v4(p2_ip, 7000)),
        (&p1, v4(p1_ip, 7001)),
    ];
    let listeners: Vec<UdpSocket> = dests
        .iter()
        .map(|(ns, addr)| lab.udp_socket(ns, &addr.to_string()))
        .collect();
    let sock = lab.udp_socket(&leaf, "0.0.0.0:0");
    let mut seen = Vec::new();
    for ((_, addr), listener) in dests.iter().zip(&listeners) {
        send(&sock, b"probe", *addr);
        let (_, from) = expect_recv(listener, &format!("leaf -> {addr}"));
        assert_eq!(from.ip(), nat.wan, "source is the NAT's outside address");
        seen.push(from);
    }
    eprintln!(
        "symmetric NAT: inside port {} mapped to {:?}",
        port_of(&sock),
        seen.iter().map(SocketAddr::port).collect::<Vec<_>>()
    );
    // --random-fully draws each mapping at random from ~64k ports, so two destinations collide
    // with probability ~1/64k; with three, all equal has probability ~1/4e9.
    let ports: BTreeSet<u16> = seen.iter().map(SocketAddr::port).collect();
    assert!(
        ports.len() >= 2,
        "outside port varies per destination: {seen:?}"
    );

    // Replies still come back through each mapping.
    send(&listeners[1], b"reply", seen[1]);
    let (data, from) = expect_recv(&sock, "public2 -> leaf reply");
    assert_eq!((data.as_slice(), from), (&b"reply"[..], v4(p2_ip, 7000)));
}

#[test]
fn namespaces_and_processes_are_cleaned_up_even_on_panic() {
    let Some(probe) = Lab::for_test("cleanup") else {
        return;
    };
    drop(probe);

    // A normal drop, with processes: output is captured to the log files, the environment is
    // passed, and a process that ignores SIGTERM is killed.
    let lab = Lab::new("cleanup_normal");
    let x = lab.host("x");
    let internet = lab.internet("203.0.113.0/24");
    lab.attach(&internet, &x);
    let names = lab.namespaces();
    assert_eq!(names.len(), 2);
    let listed = listed_namespaces();
    assert!(
        names.iter().all(|n| listed.contains(n)),
        "{names:?} in {listed:?}"
    );
    let echo = lab.spawn(
        &x,
        "echo",
        Command::new("sh")
            .args([
                "-c",
                "echo out=$WEFT_LAB_VAR; ip -4 -o addr show eth0; echo err >&2",
            ])
            .env("WEFT_LAB_VAR", "42"),
    );
    let status = lab.wait_timeout(echo, ARRIVES).expect("echo exits");
    assert!(status.success(), "{status}: {}", lab.stderr(echo));
    let out = lab.stdout(echo);
    assert!(out.starts_with("out=42\n"), "{out}");
    assert!(
        out.contains("inet 203.0.113.1/24"),
        "ran inside the namespace: {out}"
    );
    assert_eq!(lab.stderr(echo), "err\n");
    let stubborn = lab.spawn(
        &x,
        "stubborn",
        Command::new("sh").args(["-c", "trap '' TERM; exec sleep 600"]),
    );
    let stubborn_pid = stubborn.pid();
    // Wait until the trap is set and sleep runs, so that SIGTERM really is ignored.
    let deadline = Instant::now() + ARRIVES;
    while !process_is(stubborn_pid, "sleep") {
        assert!(
            Instant::now() < deadline,
            "stubborn process never reached sleep"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let stopping = Instant::now();
    drop(lab);
    assert!(
        stopping.elapsed() >= Duration::from_secs(3),
        "SIGKILL only after the grace period"
    );
    let listed = listed_namespaces();
    assert!(
        names.iter().all(|n| !listed.contains(n)),
        "{names:?} removed"
    );
    assert!(
        !process_is(stubborn_pid, "sleep"),
        "SIGTERM-ignoring process {stubborn_pid} killed"
    );

    // A panicking test body, with a running process and a NAT router.
    let mut names = Vec::new();
    let mut pid = 0;
    let mut log_dir = None;
    let result = catch_unwind(AssertUnwindSafe(|| {
        let lab = Lab::new("cleanup_panic");
        let internet = lab.internet("203.0.113.0/24");
        let nat = lab.nat_router("nat", "192.168.9.0/24", &internet, NatKind::Symmetric);
        let leaf = lab.host("leaf");
        lab.attach(&nat.lan, &leaf);
        let p = lab.spawn(&leaf, "sleeper", Command::new("sleep").arg("600"));
        assert_eq!(lab.try_wait(p), None, "sleeper is running");
        names = lab.namespaces();
        pid = p.pid();
        log_dir = Some(lab.log_dir().to_path_buf());
        panic!("deliberate panic inside a lab");
    }));
    assert!(result.is_err(), "the body panicked");
    assert_eq!(
        names.len(),
        4,
        "internet switch, nat, nat's LAN switch, leaf: {names:?}"
    );
    let listed = listed_namespaces();
    for n in &names {
        assert!(
            !listed.contains(n),
            "namespace {n} still listed after a panic: {listed:?}"
        );
    }
    // The sleeper was killed and reaped by the lab (its PID is free, not a zombie of ours).
    assert!(pid != 0);
    assert!(!process_is(pid, "sleep"), "spawned process {pid} is gone");
    // The failed lab kept its logs (path printed on stderr); tidy up this deliberate one.
    let log_dir = log_dir.expect("log dir recorded");
    assert!(
        log_dir.join("commands.log").is_file(),
        "logs kept after a panic"
    );
    let _ = std::fs::remove_dir_all(log_dir);
}
