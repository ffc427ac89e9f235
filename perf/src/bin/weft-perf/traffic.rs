//! The traffic generator, sink and echo: the hidden subcommands the harness runs inside the
//! namespaces (`ip netns exec NS weft-perf __server …`). Each client prints one JSON line (a
//! [`report`](crate::report) type) on stdout.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hdrhistogram::Histogram;
use socket2::{Domain, Socket, Type};

use crate::report::{Latency, Throughput, UdpResult};

/// Ports of the server (`__server`) in the receiving namespace.
pub(crate) const TCP_PORT: u16 = 5201;
pub(crate) const UDP_PORT: u16 = 5202;
pub(crate) const ECHO_PORT: u16 = 5203;
pub(crate) const CTL_PORT: u16 = 5204;

/// Socket buffers asked for (the kernel caps them at `net.core.[rw]mem_max`).
const SOCK_BUF: usize = 4 << 20;
/// UDP sink datagram header: test id (u32) + sequence (u64).
const UDP_HEADER: usize = 12;
/// Echo request size: sequence number (u64), padded.
const ECHO_LEN: usize = 64;

/// Received-side counters of one UDP test.
#[derive(Debug, Default, Clone, Copy)]
struct UdpCounts {
    packets: u64,
    bytes: u64,
}

fn udp_socket(bind: SocketAddr) -> Result<UdpSocket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, None)?;
    let _ = s.set_recv_buffer_size(SOCK_BUF);
    let _ = s.set_send_buffer_size(SOCK_BUF);
    s.bind(&bind.into())
        .with_context(|| format!("binding UDP {bind}"))?;
    Ok(s.into())
}

/// `__server`: TCP sink, UDP sink, UDP echo and the control port, on all addresses of the
/// namespace. Prints `ready` once everything is bound; exits when stdin closes (the harness
/// holds the other end, so the server never outlives it).
pub(crate) fn server() -> Result<()> {
    server_inner(Ipv4Addr::UNSPECIFIED, true)
}

fn server_inner(bind: Ipv4Addr, wait_stdin: bool) -> Result<()> {
    let any = |p| SocketAddr::V4(SocketAddrV4::new(bind, p));
    let tcp = TcpListener::bind(any(TCP_PORT)).context("binding the TCP sink")?;
    let udp = udp_socket(any(UDP_PORT))?;
    let echo = udp_socket(any(ECHO_PORT))?;
    let ctl = TcpListener::bind(any(CTL_PORT)).context("binding the control port")?;
    let counts: Arc<Mutex<HashMap<u32, UdpCounts>>> = Arc::default();

    std::thread::spawn(move || {
        for conn in tcp.incoming().flatten() {
            std::thread::spawn(move || sink_connection(conn));
        }
    });
    {
        let counts = counts.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            while let Ok(n) = udp.recv(&mut buf) {
                if n < UDP_HEADER {
                    continue;
                }
                let id = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
                if let Ok(mut m) = counts.lock() {
                    let c = m.entry(id).or_default();
                    c.packets += 1;
                    c.bytes += n as u64;
                }
            }
        });
    }
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, peer)) = echo.recv_from(&mut buf) {
            let _ = echo.send_to(&buf[..n], peer);
        }
    });
    std::thread::spawn(move || {
        for conn in ctl.incoming().flatten() {
            let counts = counts.clone();
            std::thread::spawn(move || -> Result<()> {
                let mut line = String::new();
                BufReader::new(&conn).read_line(&mut line)?;
                let id: u32 = line
                    .trim()
                    .strip_prefix("UDP ")
                    .context("bad request")?
                    .parse()?;
                let c = counts
                    .lock()
                    .map_err(|_| anyhow::anyhow!("lock"))?
                    .remove(&id)
                    .unwrap_or_default();
                writeln!(&conn, "{} {}", c.packets, c.bytes)?;
                Ok(())
            });
        }
    });
    println!("ready");
    std::io::stdout().flush()?;
    if wait_stdin {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
    }
    Ok(())
}

/// Reads one TCP stream to its end, then answers with the byte count and the time from the
/// first byte to the end (ns), both u64 big-endian.
fn sink_connection(mut conn: TcpStream) -> Result<()> {
    let mut buf = vec![0u8; 256 << 10];
    let mut total = 0u64;
    let mut first = None;
    loop {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            break;
        }
        first.get_or_insert_with(Instant::now);
        total += n as u64;
    }
    let ns = first.map_or(0, |f| f.elapsed().as_nanos() as u64);
    let mut reply = [0u8; 16];
    reply[..8].copy_from_slice(&total.to_be_bytes());
    reply[8..].copy_from_slice(&ns.to_be_bytes());
    conn.write_all(&reply)?;
    Ok(())
}

fn connect(addr: SocketAddr) -> Result<TcpStream> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() > deadline => {
                return Err(e).with_context(|| format!("connecting to {addr}"));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// `__tcp`: `streams` connections sending as fast as they can for `duration`; the receiver's
/// counts.
pub(crate) fn tcp_client(to: Ipv4Addr, streams: u32, duration: Duration) -> Result<Throughput> {
    let addr = SocketAddr::V4(SocketAddrV4::new(to, TCP_PORT));
    let conns = (0..streams)
        .map(|_| connect(addr))
        .collect::<Result<Vec<_>>>()?;
    let start = Instant::now();
    let handles: Vec<_> = conns
        .into_iter()
        .map(|mut s| {
            std::thread::spawn(move || -> Result<(u64, u64)> {
                // a broken path ends the measurement with an error instead of hanging it
                s.set_write_timeout(Some(Duration::from_secs(15)))?;
                s.set_read_timeout(Some(Duration::from_secs(60)))?;
                let chunk = vec![0x5au8; 128 << 10];
                while start.elapsed() < duration {
                    s.write_all(&chunk)?;
                }
                s.shutdown(std::net::Shutdown::Write)?;
                let mut reply = [0u8; 16];
                s.read_exact(&mut reply)
                    .context("no byte count from the sink")?;
                let bytes = u64::from_be_bytes(reply[..8].try_into()?);
                let ns = u64::from_be_bytes(reply[8..].try_into()?);
                Ok((bytes, ns))
            })
        })
        .collect();
    let (mut bytes, mut ns) = (0u64, 0u64);
    for h in handles {
        let (b, n) = h
            .join()
            .map_err(|_| anyhow::anyhow!("stream thread panicked"))??;
        bytes += b;
        ns = ns.max(n);
    }
    let secs = ns as f64 / 1e9;
    Ok(Throughput {
        streams,
        bytes,
        secs,
        gbit_s: if secs > 0.0 {
            bytes as f64 * 8.0 / secs / 1e9
        } else {
            0.0
        },
    })
}

/// `__udp`: datagrams of `payload` bytes at the highest rate the sender reaches, for
/// `duration`; then asks the server's control port what arrived.
pub(crate) fn udp_client(to: Ipv4Addr, payload: usize, duration: Duration) -> Result<UdpResult> {
    if payload < UDP_HEADER {
        bail!("UDP payload must be at least {UDP_HEADER} bytes");
    }
    let sock = udp_socket(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)))?;
    sock.connect(SocketAddrV4::new(to, UDP_PORT))?;
    let id = (std::process::id() << 12)
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
    let mut buf = vec![0u8; payload];
    buf[..4].copy_from_slice(&id.to_be_bytes());
    let start = Instant::now();
    let mut sent = 0u64;
    let mut seq = 0u64;
    'outer: loop {
        for _ in 0..64 {
            buf[4..12].copy_from_slice(&seq.to_be_bytes());
            seq += 1;
            // ENOBUFS / ECONNREFUSED (ICMP from an earlier datagram) are not sends
            if sock.send(&buf).is_ok() {
                sent += 1;
            }
        }
        if start.elapsed() >= duration {
            break 'outer;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    // let queued datagrams drain before asking
    std::thread::sleep(Duration::from_millis(500));
    let ctl = connect(SocketAddr::V4(SocketAddrV4::new(to, CTL_PORT)))?;
    ctl.set_read_timeout(Some(Duration::from_secs(10)))?;
    writeln!(&ctl, "UDP {id}")?;
    let mut line = String::new();
    BufReader::new(&ctl).read_line(&mut line)?;
    let mut it = line.split_whitespace().map(str::parse::<u64>);
    let (Some(Ok(packets)), Some(Ok(bytes))) = (it.next(), it.next()) else {
        bail!("bad answer from the control port: {line:?}");
    };
    Ok(UdpResult {
        payload,
        sent_packets: sent,
        received_packets: packets,
        received_bytes: bytes,
        secs,
        received_mbit_s: bytes as f64 * 8.0 / secs / 1e6,
        received_pps: packets as f64 / secs,
        loss: if sent > 0 {
            (1.0 - packets as f64 / sent as f64).max(0.0)
        } else {
            0.0
        },
    })
}

/// `__echo`: one request every `interval` (or as soon as the previous answer came, if that
/// took longer), each waiting up to 1 s for its answer, for `duration`. Before measuring, waits
/// up to `warmup` for a first answer (ARP, first contact and path setup are not round trips).
pub(crate) fn echo_client(
    to: Ipv4Addr,
    duration: Duration,
    interval: Duration,
    warmup: Duration,
) -> Result<Latency> {
    let sock = udp_socket(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)))?;
    sock.connect(SocketAddrV4::new(to, ECHO_PORT))?;
    let mut req = [0u8; ECHO_LEN];
    let mut buf = [0u8; 2048];
    // warm-up: sequence numbers with the top bit set
    let deadline = Instant::now() + warmup;
    sock.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut w = 1u64 << 63;
    'warm: loop {
        req[..8].copy_from_slice(&w.to_be_bytes());
        let _ = sock.send(&req);
        let sent = Instant::now();
        while sent.elapsed() < Duration::from_millis(200) {
            match sock.recv(&mut buf) {
                Ok(n) if n >= 8 && buf[..8] == req[..8] => break 'warm,
                Ok(_) => continue,
                Err(_) => break,
            }
        }
        if Instant::now() > deadline {
            bail!("no echo from {to} within {warmup:?}");
        }
        w += 1;
    }
    // nanoseconds, 1 ns .. 100 s, 3 significant digits
    let mut hist = Histogram::<u64>::new_with_bounds(1, 100_000_000_000, 3)?;
    let mut lost = 0u64;
    let start = Instant::now();
    let mut seq = 0u64;
    while start.elapsed() < duration {
        let t0 = Instant::now();
        req[..8].copy_from_slice(&seq.to_be_bytes());
        sock.send(&req)?;
        let answered = loop {
            let left = Duration::from_secs(1).saturating_sub(t0.elapsed());
            if left.is_zero() {
                break None;
            }
            sock.set_read_timeout(Some(left))?;
            match sock.recv(&mut buf) {
                Ok(n) if n >= 8 && buf[..8] == req[..8] => break Some(t0.elapsed()),
                // late answers to earlier requests and warm-up leftovers
                Ok(_) => continue,
                Err(_) => break None,
            }
        };
        match answered {
            Some(rtt) => hist.saturating_record(rtt.as_nanos().max(1) as u64),
            None => lost += 1,
        }
        seq += 1;
        let next = t0 + interval;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
    }
    Ok(summarize(&hist, lost))
}

/// Percentiles (µs) and logarithmic buckets of a nanosecond histogram.
pub(crate) fn summarize(h: &Histogram<u64>, lost: u64) -> Latency {
    let us = |ns: u64| ns as f64 / 1000.0;
    let q = |x: f64| {
        if h.is_empty() {
            0.0
        } else {
            us(h.value_at_quantile(x))
        }
    };
    let buckets = if h.is_empty() {
        Vec::new()
    } else {
        h.iter_log(1000, 2.0)
            .filter(|v| v.count_since_last_iteration() > 0)
            .map(|v| (us(v.value_iterated_to()), v.count_since_last_iteration()))
            .collect()
    };
    Latency {
        samples: h.len(),
        lost,
        min_us: if h.is_empty() { 0.0 } else { us(h.min()) },
        mean_us: h.mean() / 1000.0,
        p50_us: q(0.50),
        p90_us: q(0.90),
        p99_us: q(0.99),
        p999_us: q(0.999),
        max_us: if h.is_empty() { 0.0 } else { us(h.max()) },
        buckets,
        load_gbit_s: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_a_known_histogram() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 100_000_000_000, 3).expect("histogram");
        // 1000 samples: 1..=1000 µs
        for i in 1..=1000u64 {
            h.record(i * 1000).expect("record");
        }
        let l = summarize(&h, 3);
        assert_eq!((l.samples, l.lost), (1000, 3));
        assert!((l.p50_us - 500.0).abs() <= 1.0, "{}", l.p50_us);
        assert!((l.p90_us - 900.0).abs() <= 1.0, "{}", l.p90_us);
        assert!((l.p99_us - 990.0).abs() <= 1.0, "{}", l.p99_us);
        assert!((l.p999_us - 999.0).abs() <= 1.0, "{}", l.p999_us);
        assert!((l.max_us - 1000.0).abs() <= 1.0 && (l.min_us - 1.0).abs() < 0.01);
        assert_eq!(l.buckets.iter().map(|b| b.1).sum::<u64>(), 1000);
        // power-of-two steps from 1 µs (each reported as the step's highest equivalent value)
        assert_eq!(l.buckets[0].1, 1);
        assert!((1.0..2.0).contains(&l.buckets[0].0), "{:?}", l.buckets);
        assert!(l.buckets.windows(2).all(|w| w[1].0 > w[0].0));
        let empty = summarize(
            &Histogram::<u64>::new_with_bounds(1, 1000, 3).expect("histogram"),
            0,
        );
        assert_eq!(
            (empty.samples, empty.p50_us, empty.buckets.len()),
            (0, 0.0, 0)
        );
    }

    #[test]
    fn loopback_sink_echo_and_udp() {
        // the server's ports are fixed: skipped where they are taken on loopback
        let lo = Ipv4Addr::LOCALHOST;
        if let Err(e) = server_inner(lo, false) {
            eprintln!("skipped: {e:#}");
            return;
        }
        let t = tcp_client(lo, 2, Duration::from_millis(200)).expect("tcp");
        assert_eq!(t.streams, 2);
        assert!(t.bytes > 0 && t.gbit_s > 0.0, "{t:?}");
        let u = udp_client(lo, 1200, Duration::from_millis(200)).expect("udp");
        assert!(
            u.received_packets > 0 && u.received_packets <= u.sent_packets,
            "{u:?}"
        );
        assert_eq!(u.received_bytes, u.received_packets * 1200);
        let l = echo_client(
            lo,
            Duration::from_millis(200),
            Duration::from_millis(1),
            Duration::from_secs(5),
        )
        .expect("echo");
        assert!(
            l.samples > 10 && l.p50_us <= l.p99_us && l.p99_us <= l.max_us,
            "{l:?}"
        );
    }
}
