//! End-to-end tests of `weft tcp-relay` (the built binary) over loopback only: a TCP client
//! speaking the tunnel framing and UDP sockets on 127.0.0.1. spec: vl1.md §8.13

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use weft_wire::tcp_tunnel::{
    Record, TunnelDecoder, encode_datagram, encode_greeting, encode_record,
};

const BIN: &str = env!("CARGO_BIN_EXE_weft");
const TIMEOUT: Duration = Duration::from_secs(10);

/// A running relay; killed (by its PID, via `Child::kill`) when dropped, whatever happens.
struct Relay {
    child: Child,
    addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
    /// Kept open so that the relay never writes to a closed pipe.
    _stdout: Option<BufReader<ChildStdout>>,
}

impl Relay {
    /// Starts `weft tcp-relay --listen 127.0.0.1:0 --udp-bind 127.0.0.1:0 EXTRA…` and reads the
    /// port it bound from its first stdout line.
    fn start(extra: &[&str]) -> Relay {
        let mut child = Command::new(BIN)
            .args([
                "tcp-relay",
                "--listen",
                "127.0.0.1:0",
                "--udp-bind",
                "127.0.0.1:0",
            ])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn weft tcp-relay");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().expect("stderr pipe");
        let sink = stderr.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .expect("stderr lock")
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout pipe"));
        // Build the guard before anything can panic, so the child is always killed.
        let mut relay = Relay {
            child,
            addr: "127.0.0.1:0".parse().expect("placeholder"),
            stderr,
            _stdout: None,
        };
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read stdout");
        relay._stdout = Some(stdout);
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("first stdout line {line:?}; stderr: {}", relay.log()));
        relay.addr = addr.parse().expect("listening address");
        assert!(relay.addr.ip().is_loopback());
        relay
    }

    fn log(&self) -> String {
        self.stderr.lock().expect("stderr lock").clone()
    }

    /// Waits until the relay's stderr has a complete line containing `needle`; returns the
    /// whole log.
    #[track_caller]
    fn wait_log(&self, needle: &str) -> String {
        let until = Instant::now() + TIMEOUT;
        loop {
            let log = self.log();
            if log
                .lines()
                .zip(log.split_inclusive('\n'))
                .any(|(line, with_end)| line.contains(needle) && with_end.ends_with('\n'))
            {
                return log;
            }
            assert!(Instant::now() < until, "no {needle:?} in relay log:\n{log}");
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).expect("connect to relay");
        s.set_read_timeout(Some(TIMEOUT)).expect("read timeout");
        s.set_nodelay(true).expect("nodelay");
        s
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("relay log:\n{}", self.log());
        }
    }
}

/// A UDP socket on 127.0.0.1 (ephemeral port, so > 1024).
fn udp() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind UDP");
    s.set_read_timeout(Some(TIMEOUT)).expect("UDP timeout");
    assert!(s.local_addr().expect("local").port() > 1024);
    s
}

fn greeting() -> Vec<u8> {
    encode_greeting(1, 14, 1).to_vec()
}

fn record_to(addr: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    encode_datagram(addr, payload, &mut v).expect("encode record");
    v
}

/// A recognisable datagram of `len` bytes.
fn datagram(tag: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| tag.wrapping_add(i as u8)).collect()
}

#[track_caller]
fn recv_udp(s: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = vec![0u8; 65536];
    let (n, from) = s.recv_from(&mut buf).expect("UDP datagram from the relay");
    buf.truncate(n);
    (buf, from)
}

/// Reads from the client stream until one record arrives; returns its body.
#[track_caller]
fn next_body(tcp: &mut TcpStream, dec: &mut TunnelDecoder) -> Vec<u8> {
    let mut buf = [0u8; 4096];
    loop {
        if let Some(body) = dec.next_body().expect("well-formed relay stream") {
            return body.to_vec();
        }
        let n = tcp.read(&mut buf).expect("record from the relay");
        assert!(n > 0, "relay closed the connection");
        assert_eq!(dec.push(&buf[..n]), n);
    }
}

/// Reads one data record; returns its address and datagram.
#[track_caller]
fn next_datagram(tcp: &mut TcpStream, dec: &mut TunnelDecoder) -> (Option<SocketAddr>, Vec<u8>) {
    let body = next_body(tcp, dec);
    match Record::parse(&body).expect("valid record") {
        Record::Datagram { addr, payload } => (addr, payload.to_vec()),
        r => panic!("expected a datagram record, got {r:?}"),
    }
}

/// Whether the relay closes the connection (EOF or reset) within the timeout.
fn is_closed(tcp: &mut TcpStream) -> bool {
    let mut buf = [0u8; 256];
    let until = Instant::now() + TIMEOUT;
    while Instant::now() < until {
        match tcp.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return true,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false;
            }
            Err(e) => panic!("unexpected read error {e}"),
        }
    }
    false
}

/// Asserts that nothing arrives on `s` for a short while.
#[track_caller]
fn assert_no_udp(s: &UdpSocket) {
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let mut buf = [0u8; 4096];
    if let Ok((n, from)) = s.recv_from(&mut buf) {
        panic!("unexpected {n}-byte datagram from {from}");
    }
    s.set_read_timeout(Some(TIMEOUT)).expect("timeout");
}

#[test]
fn forwards_both_ways_with_addresses() {
    let relay = Relay::start(&[]);
    let peer = udp();
    let peer_addr = peer.local_addr().expect("peer addr");
    let mut tcp = relay.connect();
    let packet = datagram(0x40, 100);
    let mut out = greeting();
    out.extend(record_to(peer_addr, &packet));
    tcp.write_all(&out).expect("send");

    // Exactly the datagram arrives, from the relay's per-client UDP socket on loopback.
    let (got, relay_udp) = recv_udp(&peer);
    assert_eq!(got, packet);
    assert!(relay_udp.ip().is_loopback());
    assert_ne!(relay_udp.port(), relay.addr.port());

    // The reply comes back framed with its source address.
    let reply = datagram(0x90, 200);
    peer.send_to(&reply, relay_udp).expect("reply");
    let mut dec = TunnelDecoder::new();
    assert_eq!(
        next_datagram(&mut tcp, &mut dec),
        (Some(peer_addr), reply.clone())
    );

    // Another UDP peer reaching the same relay socket is relayed with its own address.
    let other = udp();
    let min = datagram(1, 16);
    other.send_to(&min, relay_udp).expect("other");
    assert_eq!(
        next_datagram(&mut tcp, &mut dec),
        (Some(other.local_addr().expect("addr")), min)
    );

    // Several records in one write, and one record split over writes.
    let mut out = record_to(peer_addr, &datagram(2, 30));
    out.extend(record_to(peer_addr, &datagram(3, 1400)));
    let (a, b) = out.split_at(40);
    tcp.write_all(a).expect("send");
    thread::sleep(Duration::from_millis(50));
    tcp.write_all(b).expect("send");
    assert_eq!(recv_udp(&peer).0, datagram(2, 30));
    assert_eq!(recv_udp(&peer).0, datagram(3, 1400));

    drop(tcp);
    let log = relay.wait_log("disconnect");
    assert!(log.contains("client 1.14.1"), "{log}");
    assert!(
        log.contains("4 records in, 3 datagrams sent, 2 received"),
        "{log}"
    );
}

#[test]
fn size_and_port_rules() {
    let relay = Relay::start(&[]);
    let peer = udp();
    let peer_addr = peer.local_addr().expect("peer addr");
    let mut tcp = relay.connect();
    let mut out = greeting();
    // 15 bytes: not forwarded.
    out.extend(record_to(peer_addr, &datagram(0, 15)));
    // Destination ports ≤ 1024 are refused (nothing can listen there in this test; the relay
    // must count the refusal instead of sending).
    out.extend(record_to(
        "127.0.0.1:1024".parse().expect("addr"),
        &datagram(0, 64),
    ));
    out.extend(record_to(
        "127.0.0.1:53".parse().expect("addr"),
        &datagram(0, 64),
    ));
    // Type 00 (no address): dropped.
    let mut none = vec![0u8];
    none.extend(datagram(0, 32));
    encode_record(&none, &mut out).expect("encode");
    // 16 bytes to a high port: forwarded, and the first thing the peer sees.
    out.extend(record_to(peer_addr, &datagram(7, 16)));
    tcp.write_all(&out).expect("send");
    let (got, relay_udp) = recv_udp(&peer);
    assert_eq!(got, datagram(7, 16));
    assert_no_udp(&peer);

    // UDP toward the client: < 16 and ≥ 2048 bytes are not relayed; 16 and 2047 are.
    for len in [15, 2048, 4000, 16, 2047] {
        peer.send_to(&datagram(9, len), relay_udp).expect("send");
    }
    let mut dec = TunnelDecoder::new();
    assert_eq!(
        next_datagram(&mut tcp, &mut dec),
        (Some(peer_addr), datagram(9, 16))
    );
    assert_eq!(
        next_datagram(&mut tcp, &mut dec),
        (Some(peer_addr), datagram(9, 2047))
    );

    drop(tcp);
    let log = relay.wait_log("disconnect");
    assert!(
        log.contains("6 records in, 1 datagrams sent, 2 received; dropped 7 (short 1, port 2, no-address 1, family 0, send-error 0, udp-ignored 3, queue-full 0)"),
        "{log}"
    );
}

#[test]
fn garbage_closes_the_connection() {
    let relay = Relay::start(&[]);
    // Not a record at all.
    let mut tcp = relay.connect();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    assert!(is_closed(&mut tcp), "relay kept a garbage connection");
    relay.wait_log("protocol error: not a tunnel record header");

    // A greeting, then a record with an unknown type byte.
    let mut tcp = relay.connect();
    let mut out = greeting();
    encode_record(&[0x05; 40], &mut out).expect("encode");
    tcp.write_all(&out).expect("send");
    assert!(
        is_closed(&mut tcp),
        "relay kept a connection with a bad record type"
    );
    relay.wait_log("unknown tunnel record type 0x05");

    // The relay still serves new clients.
    let peer = udp();
    let mut tcp = relay.connect();
    let mut out = greeting();
    out.extend(record_to(
        peer.local_addr().expect("addr"),
        &datagram(5, 20),
    ));
    tcp.write_all(&out).expect("send");
    assert_eq!(recv_udp(&peer).0, datagram(5, 20));
}

#[test]
fn legacy_clients_use_bare_records_and_the_legacy_target() {
    let target = udp();
    let target_addr = target.local_addr().expect("addr").to_string();
    let relay = Relay::start(&["--legacy-target", &target_addr]);
    let mut tcp = relay.connect();
    // No greeting: the body is the bare datagram.
    let mut out = Vec::new();
    encode_record(&datagram(0x33, 48), &mut out).expect("encode");
    tcp.write_all(&out).expect("send");
    let (got, relay_udp) = recv_udp(&target);
    assert_eq!(got, datagram(0x33, 48));
    target
        .send_to(&datagram(0x44, 60), relay_udp)
        .expect("reply");
    let mut dec = TunnelDecoder::new();
    assert_eq!(next_body(&mut tcp, &mut dec), datagram(0x44, 60));
    drop(tcp);
    relay.wait_log("legacy client");

    // With --no-legacy such clients are closed.
    let strict = Relay::start(&["--no-legacy"]);
    let mut tcp = strict.connect();
    tcp.write_all(&out).expect("send");
    assert!(is_closed(&mut tcp));
    strict.wait_log("legacy client refused");
}

#[test]
fn idle_timeout_and_client_limit() {
    let relay = Relay::start(&["--idle-timeout", "1", "--max-clients", "1"]);
    let mut first = relay.connect();
    first.write_all(&greeting()).expect("send");
    relay.wait_log("connect 127.0.0.1");
    // A second client is refused while the first is connected.
    let mut second = relay.connect();
    assert!(is_closed(&mut second), "second client not refused");
    relay.wait_log("refused 127.0.0.1");
    // The first is closed after a second without traffic from it.
    let started = Instant::now();
    assert!(is_closed(&mut first), "idle client not closed");
    assert!(started.elapsed() < Duration::from_secs(5));
    relay.wait_log("(idle timeout)");
    // Then there is room again.
    let mut third = relay.connect();
    third.write_all(&greeting()).expect("send");
    let until = Instant::now() + TIMEOUT;
    while relay.log().matches("tcp-relay: connect ").count() < 2 {
        assert!(
            Instant::now() < until,
            "third client not served:\n{}",
            relay.log()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_stops_cleanly() {
    let mut relay = Relay::start(&[]);
    let mut tcp = relay.connect();
    tcp.write_all(&greeting()).expect("send");
    relay.wait_log("connect 127.0.0.1");
    let pid = relay.child.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(status.success());
    let until = Instant::now() + TIMEOUT;
    let exit = loop {
        if let Some(s) = relay.child.try_wait().expect("try_wait") {
            break s;
        }
        assert!(Instant::now() < until, "relay did not stop on SIGTERM");
        thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "{exit:?}");
    assert!(is_closed(&mut tcp));
    let log = relay.wait_log("tcp-relay: stopped");
    assert!(log.contains("SIGTERM"), "{log}");
    assert!(log.contains("(relay shutting down)"), "{log}");
}
