//! `weft tcp-relay`: a TCP fallback relay for nodes whose UDP is blocked, compatible with the
//! relay 1.14 nodes use (`settings.tcpFallbackRelay`). spec: vl1.md §8.13
//!
//! Each client connection gets its own UDP socket. A client that starts with the greeting record
//! is "new": its data records name the UDP destination, and datagrams received on its socket are
//! framed back with their source address. A client whose first record is not a greeting is
//! "legacy": its record bodies are bare datagrams sent to `--legacy-target` (127.0.0.1:9993 by
//! default, i.e. a node on the relay host), and datagrams received on its socket come back as
//! bare records. Datagrams under 16 bytes are not forwarded in either direction, UDP datagrams of
//! 2048 bytes or more are not relayed back, and destination UDP ports ≤ 1024 are refused.
//!
//! Concurrency: one tokio task per connection, which owns its TCP stream, UDP socket, stream
//! decoder and write queue, and `select!`s over them (no locks, no per-connection threads).
//! Memory per connection is bounded: read buffer 16 KiB, decoder one maximum record (64 KiB +
//! 5), write queue `--write-buffer` bytes (128 KiB; records that do not fit are dropped and
//! counted), UDP buffer 2 KiB.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use weft_wire::tcp_tunnel::{
    GREETING_BODY_LEN, IPV4_ADDRESS_HEADER_LEN, IPV6_ADDRESS_HEADER_LEN, RECORD_HEADER_LEN, Record,
    TunnelDecoder, TunnelError, encode_datagram, encode_record,
};

/// Smallest datagram forwarded in either direction (shorter ones cannot be ZeroTier packets or
/// fragments). spec: vl1.md §8.13
pub(crate) const MIN_DATAGRAM: usize = 16;
/// Largest UDP datagram relayed back to a client (inclusive). spec: vl1.md §8.13
pub(crate) const MAX_UDP_DATAGRAM: usize = 2047;
/// Destination UDP ports up to and including this one are refused. spec: vl1.md §8.13
pub(crate) const MAX_REFUSED_PORT: u16 = 1024;
/// Size of a connection's TCP read buffer.
const READ_BUFFER: usize = 16 * 1024;
/// How long shutdown waits for connections to log their last line.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// `weft tcp-relay` arguments.
#[derive(Debug, Clone, Args)]
pub(crate) struct TcpRelayArgs {
    /// TCP address to listen on. The address actually bound (useful with port 0) is printed as
    /// the first line on stdout: `listening on ADDR`.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:443")]
    listen: SocketAddr,
    /// Local address of the per-client UDP sockets. Keep port 0 (a new ephemeral port for each
    /// client): with a fixed port only one client can be served at a time.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:0")]
    udp_bind: SocketAddr,
    /// Close a connection after this many seconds without data from the client.
    #[arg(long, value_name = "SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    idle_timeout: u64,
    /// Maximum simultaneous client connections; further ones are closed at once.
    #[arg(long, value_name = "N", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_clients: u32,
    /// Bytes queued toward one client before further records to it are dropped.
    #[arg(long, value_name = "BYTES", default_value_t = 128 * 1024,
          value_parser = clap::value_parser!(u32).range(4096..=(64 << 20)))]
    write_buffer: u32,
    /// Where datagrams from legacy clients (no greeting, no address headers) are sent.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9993")]
    legacy_target: SocketAddr,
    /// Close connections from legacy clients instead of serving them.
    #[arg(long)]
    no_legacy: bool,
}

/// Runs the relay until SIGINT or SIGTERM.
pub(crate) fn run(args: TcpRelayArgs) -> Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(serve(args))
}

/// Relay-wide counters.
#[derive(Debug, Default)]
struct Totals {
    /// Connections open now.
    active: AtomicUsize,
    /// Connections served since start.
    served: AtomicU64,
    /// Connections refused (too many clients).
    refused: AtomicU64,
}

async fn serve(args: TcpRelayArgs) -> Result<ExitCode> {
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let local = listener.local_addr().context("local address")?;
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {local}")?;
        out.flush()?;
    }
    eprintln!(
        "tcp-relay: listening on {local}; UDP on {}, idle timeout {} s, at most {} clients, \
         write buffer {} bytes, legacy clients {}",
        args.udp_bind,
        args.idle_timeout,
        args.max_clients,
        args.write_buffer,
        if args.no_legacy {
            "closed".to_owned()
        } else {
            format!("sent to {}", args.legacy_target)
        }
    );

    let args = Arc::new(args);
    let totals = Arc::new(Totals::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let stop = shutdown_signal();
    tokio::pin!(stop);
    let why = loop {
        tokio::select! {
            why = &mut stop => break why,
            accepted = listener.accept() => {
                while tasks.try_join_next().is_some() {}
                let (tcp, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Typically out of file descriptors: back off instead of spinning.
                        eprintln!("tcp-relay: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let active = totals.active.load(Ordering::Relaxed);
                if active >= args.max_clients as usize {
                    totals.refused.fetch_add(1, Ordering::Relaxed);
                    eprintln!(
                        "tcp-relay: refused {peer}: {active} clients already (--max-clients)"
                    );
                    drop(tcp);
                    continue;
                }
                totals.active.fetch_add(1, Ordering::Relaxed);
                totals.served.fetch_add(1, Ordering::Relaxed);
                tasks.spawn(connection(tcp, peer, args.clone(), totals.clone(), stop_rx.clone()));
            }
        }
    };
    drop(listener);
    eprintln!("tcp-relay: {why}, closing {} connection(s)", tasks.len());
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    eprintln!(
        "tcp-relay: stopped; served {} connection(s), refused {}",
        totals.served.load(Ordering::Relaxed),
        totals.refused.load(Ordering::Relaxed)
    );
    Ok(ExitCode::SUCCESS)
}

/// Resolves on SIGINT or SIGTERM, naming the signal.
async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(mut int), Ok(mut term)) => tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            },
            _ => {
                eprintln!("tcp-relay: cannot install signal handlers; stop me with SIGKILL");
                std::future::pending().await
            }
        }
    }
    #[cfg(not(unix))]
    {
        match tokio::signal::ctrl_c().await {
            Ok(()) => "interrupted",
            Err(_) => std::future::pending().await,
        }
    }
}

/// What a connection has learned about its client. spec: vl1.md §8.13
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// No record yet.
    Unknown,
    /// Sent the greeting: records carry address headers.
    New {
        /// Major version from the greeting.
        major: u8,
        /// Minor version.
        minor: u8,
        /// Revision.
        revision: u16,
    },
    /// First record was not a greeting: bare datagrams, sent to the legacy target.
    Legacy,
}

/// Per-connection counters, logged at disconnect.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Stats {
    /// Records received from the client (greetings included).
    records_in: u64,
    /// Datagrams sent on the UDP socket.
    udp_out: u64,
    /// Datagrams received on the UDP socket and queued to the client.
    udp_in: u64,
    /// Client datagrams under 16 bytes (not sent).
    short: u64,
    /// Client datagrams to a port ≤ 1024 (refused).
    low_port: u64,
    /// Client records without an address (type 00).
    no_address: u64,
    /// Client datagrams to an address family the UDP socket cannot reach.
    family: u64,
    /// UDP send failures.
    send_errors: u64,
    /// UDP datagrams outside 16..=2047 bytes, or arriving before the client's first record.
    udp_ignored: u64,
    /// Records to the client dropped because its write queue was full.
    queue_full: u64,
}

impl Stats {
    fn dropped(&self) -> u64 {
        self.short
            + self.low_port
            + self.no_address
            + self.family
            + self.send_errors
            + self.udp_ignored
            + self.queue_full
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} records in, {} datagrams sent, {} received; dropped {} (short {}, port {}, \
             no-address {}, family {}, send-error {}, udp-ignored {}, queue-full {})",
            self.records_in,
            self.udp_out,
            self.udp_in,
            self.dropped(),
            self.short,
            self.low_port,
            self.no_address,
            self.family,
            self.send_errors,
            self.udp_ignored,
            self.queue_full
        )
    }
}

/// Bytes waiting to be written to the client, bounded: a record that would push the queue past
/// its limit is dropped whole (never a partial record, which would break the framing).
#[derive(Debug)]
struct WriteQueue {
    buf: Vec<u8>,
    /// Offset of the first unwritten byte.
    pos: usize,
    limit: usize,
}

impl WriteQueue {
    fn new(limit: usize) -> Self {
        WriteQueue {
            buf: Vec::new(),
            pos: 0,
            limit,
        }
    }

    fn pending(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    fn is_empty(&self) -> bool {
        self.pos == self.buf.len()
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.buf.len());
        if self.is_empty() {
            self.buf.clear();
            self.pos = 0;
        }
    }

    /// Appends the record `encode` writes (`len` bytes exactly), or returns false (and appends
    /// nothing) if it does not fit.
    fn push(&mut self, len: usize, encode: impl FnOnce(&mut Vec<u8>) -> bool) -> bool {
        if self.pending().len() + len > self.limit {
            return false;
        }
        if self.buf.len() + len > self.limit {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let need = self.buf.len() + len;
        if need > self.buf.capacity() {
            let cap = need.max(2 * self.buf.capacity()).min(self.limit);
            self.buf.reserve_exact(cap - self.buf.len());
        }
        let before = self.buf.len();
        if !encode(&mut self.buf) {
            self.buf.truncate(before);
            return false;
        }
        true
    }
}

/// Why a connection ended.
#[derive(Debug)]
enum End {
    ClientClosed,
    Idle,
    Shutdown,
    Io(&'static str, std::io::Error),
    Protocol(TunnelError),
    LegacyRefused,
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            End::ClientClosed => f.write_str("closed by client"),
            End::Idle => f.write_str("idle timeout"),
            End::Shutdown => f.write_str("relay shutting down"),
            End::Io(what, e) => write!(f, "{what}: {e}"),
            End::Protocol(e) => write!(f, "protocol error: {e}"),
            End::LegacyRefused => f.write_str("legacy client refused (--no-legacy)"),
        }
    }
}

/// One client connection, from accept to close; logs one line at each end.
async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    args: Arc<TcpRelayArgs>,
    totals: Arc<Totals>,
    stop: watch::Receiver<bool>,
) {
    let started = Instant::now();
    let mut conn = Conn {
        args: &args,
        mode: Mode::Unknown,
        stats: Stats::default(),
        queue: WriteQueue::new(args.write_buffer as usize),
    };
    let end = match UdpSocket::bind(args.udp_bind).await {
        Ok(udp) => {
            let udp_local = udp
                .local_addr()
                .map_or_else(|_| "?".to_owned(), |a| a.to_string());
            eprintln!(
                "tcp-relay: connect {peer} (UDP {udp_local}); {} clients",
                totals.active.load(Ordering::Relaxed)
            );
            let _ = tcp.set_nodelay(true);
            conn.run(tcp, udp, stop).await
        }
        Err(e) => {
            eprintln!(
                "tcp-relay: connect {peer}: cannot bind UDP {}",
                args.udp_bind
            );
            End::Io("UDP bind", e)
        }
    };
    let remaining = totals.active.fetch_sub(1, Ordering::Relaxed) - 1;
    let version = match conn.mode {
        Mode::Unknown => "no records".to_owned(),
        Mode::New {
            major,
            minor,
            revision,
        } => format!("client {major}.{minor}.{revision}"),
        Mode::Legacy => "legacy client".to_owned(),
    };
    eprintln!(
        "tcp-relay: disconnect {peer} after {:.1} s ({end}), {version}: {}; {remaining} clients",
        started.elapsed().as_secs_f64(),
        conn.stats
    );
}

/// State of one connection.
#[derive(Debug)]
struct Conn<'a> {
    args: &'a TcpRelayArgs,
    mode: Mode,
    stats: Stats,
    queue: WriteQueue,
}

impl Conn<'_> {
    async fn run(
        &mut self,
        mut tcp: TcpStream,
        udp: UdpSocket,
        mut stop: watch::Receiver<bool>,
    ) -> End {
        let idle = Duration::from_secs(self.args.idle_timeout);
        let (mut rd, mut wr) = tcp.split();
        let mut decoder = TunnelDecoder::new();
        let mut rbuf = vec![0u8; READ_BUFFER];
        // One byte more than the largest datagram relayed, to recognise larger ones.
        let mut ubuf = vec![0u8; MAX_UDP_DATAGRAM + 1];
        let deadline = tokio::time::sleep(idle);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                read = rd.read(&mut rbuf) => match read {
                    Ok(0) => return End::ClientClosed,
                    Ok(n) => {
                        deadline.as_mut().reset(Instant::now() + idle);
                        if let Err(end) = self.on_client_bytes(&mut decoder, &rbuf[..n], &udp).await {
                            return end;
                        }
                    }
                    Err(e) => return End::Io("TCP read", e),
                },
                received = udp.recv_from(&mut ubuf) => match received {
                    Ok((n, from)) => self.on_udp_datagram(&ubuf[..n], from),
                    Err(e) => return End::Io("UDP receive", e),
                },
                written = wr.write(self.queue.pending()), if !self.queue.is_empty() => {
                    match written {
                        Ok(0) => return End::ClientClosed,
                        Ok(n) => self.queue.consume(n),
                        Err(e) => return End::Io("TCP write", e),
                    }
                }
                () = &mut deadline => return End::Idle,
                _ = stop.changed() => return End::Shutdown,
            }
        }
    }

    /// Decodes client bytes and forwards complete records.
    async fn on_client_bytes(
        &mut self,
        decoder: &mut TunnelDecoder,
        mut data: &[u8],
        udp: &UdpSocket,
    ) -> Result<(), End> {
        while !data.is_empty() {
            data = &data[decoder.push(data)..];
            while let Some(body) = decoder.next_body().map_err(End::Protocol)? {
                self.stats.records_in += 1;
                if let Some((dest, payload)) = self.route(body)? {
                    match udp.send_to(payload, dest).await {
                        Ok(_) => self.stats.udp_out += 1,
                        Err(_) => self.stats.send_errors += 1,
                    }
                }
            }
        }
        Ok(())
    }

    /// Where one client record goes, if anywhere. spec: vl1.md §8.13
    fn route<'b>(&mut self, body: &'b [u8]) -> Result<Option<(SocketAddr, &'b [u8])>, End> {
        if body.len() == GREETING_BODY_LEN {
            // Any 4-byte record is a greeting; only the first record makes a client "new".
            if let (
                Mode::Unknown,
                Ok(Record::Greeting {
                    major,
                    minor,
                    revision,
                }),
            ) = (self.mode, Record::parse(body))
            {
                self.mode = Mode::New {
                    major,
                    minor,
                    revision,
                };
            }
            return Ok(None);
        }
        if self.mode == Mode::Unknown {
            if self.args.no_legacy {
                return Err(End::LegacyRefused);
            }
            self.mode = Mode::Legacy;
        }
        let (dest, payload) = match self.mode {
            Mode::Legacy => (self.args.legacy_target, body),
            _ => match Record::parse(body).map_err(End::Protocol)? {
                Record::Datagram {
                    addr: Some(dest),
                    payload,
                } => {
                    if dest.port() <= MAX_REFUSED_PORT {
                        self.stats.low_port += 1;
                        return Ok(None);
                    }
                    (dest, payload)
                }
                Record::Datagram { addr: None, .. } => {
                    self.stats.no_address += 1;
                    return Ok(None);
                }
                Record::Greeting { .. } => return Ok(None),
            },
        };
        if payload.len() < MIN_DATAGRAM {
            self.stats.short += 1;
            return Ok(None);
        }
        match reachable(dest, self.args.udp_bind) {
            Some(dest) => Ok(Some((dest, payload))),
            None => {
                self.stats.family += 1;
                Ok(None)
            }
        }
    }

    /// Queues one datagram received on the client's UDP socket. spec: vl1.md §8.13
    fn on_udp_datagram(&mut self, datagram: &[u8], from: SocketAddr) {
        if !(MIN_DATAGRAM..=MAX_UDP_DATAGRAM).contains(&datagram.len()) {
            self.stats.udp_ignored += 1;
            return;
        }
        let from = SocketAddr::new(from.ip().to_canonical(), from.port());
        let queued = match self.mode {
            Mode::Unknown => {
                self.stats.udp_ignored += 1;
                return;
            }
            Mode::New { .. } => {
                let len = RECORD_HEADER_LEN
                    + datagram.len()
                    + match from.ip() {
                        IpAddr::V4(_) => IPV4_ADDRESS_HEADER_LEN,
                        IpAddr::V6(_) => IPV6_ADDRESS_HEADER_LEN,
                    };
                self.queue
                    .push(len, |out| encode_datagram(from, datagram, out).is_ok())
            }
            Mode::Legacy => self.queue.push(RECORD_HEADER_LEN + datagram.len(), |out| {
                encode_record(datagram, out).is_ok()
            }),
        };
        if queued {
            self.stats.udp_in += 1;
        } else {
            self.stats.queue_full += 1;
        }
    }
}

/// `dest` as the UDP socket bound at `bind` can reach it: IPv4 destinations from an IPv6 socket
/// go IPv4-mapped; IPv6 destinations from an IPv4 socket cannot be reached.
fn reachable(dest: SocketAddr, bind: SocketAddr) -> Option<SocketAddr> {
    match (dest.ip().to_canonical(), bind) {
        (IpAddr::V4(ip), SocketAddr::V4(_)) => Some(SocketAddr::new(ip.into(), dest.port())),
        (IpAddr::V4(ip), SocketAddr::V6(_)) => {
            Some(SocketAddr::new(ip.to_ipv6_mapped().into(), dest.port()))
        }
        (IpAddr::V6(ip), SocketAddr::V6(_)) => Some(SocketAddr::new(ip.into(), dest.port())),
        (IpAddr::V6(_), SocketAddr::V4(_)) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use weft_wire::tcp_tunnel::encode_greeting;

    #[derive(Debug, Parser)]
    struct TestCli {
        #[command(flatten)]
        args: TcpRelayArgs,
    }

    fn args(extra: &[&str]) -> TcpRelayArgs {
        let mut argv = vec!["tcp-relay"];
        argv.extend_from_slice(extra);
        TestCli::parse_from(argv).args
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    fn conn(args: &TcpRelayArgs) -> Conn<'_> {
        Conn {
            args,
            mode: Mode::Unknown,
            stats: Stats::default(),
            queue: WriteQueue::new(args.write_buffer as usize),
        }
    }

    fn data_body(addr: SocketAddr, len: usize) -> Vec<u8> {
        let mut v = Vec::new();
        encode_datagram(addr, &vec![0x11; len], &mut v).expect("encode");
        v.split_off(RECORD_HEADER_LEN)
    }

    #[test]
    fn defaults_follow_the_reference_relay() {
        let a = args(&[]);
        assert_eq!(a.listen, sa("0.0.0.0:443"));
        assert_eq!(a.udp_bind, sa("0.0.0.0:0"));
        assert_eq!(a.idle_timeout, 300);
        assert_eq!(a.max_clients, 1024);
        assert_eq!(a.write_buffer, 128 * 1024);
        assert_eq!(a.legacy_target, sa("127.0.0.1:9993"));
        assert!(!a.no_legacy);
        assert!(TestCli::try_parse_from(["x", "--idle-timeout", "0"]).is_err());
        assert!(TestCli::try_parse_from(["x", "--max-clients", "0"]).is_err());
    }

    #[test]
    fn routing_rules() {
        let a = args(&[]);
        let mut c = conn(&a);
        let greeting = encode_greeting(1, 14, 1);
        assert!(matches!(c.route(&greeting[RECORD_HEADER_LEN..]), Ok(None)));
        assert_eq!(
            c.mode,
            Mode::New {
                major: 1,
                minor: 14,
                revision: 1
            }
        );
        let dest = sa("192.0.2.1:9993");
        let body = data_body(dest, 16);
        let routed = c.route(&body).expect("valid").expect("forwarded");
        assert_eq!(routed, (dest, &body[7..]));
        assert!(matches!(c.route(&data_body(dest, 15)), Ok(None)));
        assert!(matches!(
            c.route(&data_body(sa("192.0.2.1:1024"), 64)),
            Ok(None)
        ));
        assert!(
            c.route(&data_body(sa("192.0.2.1:1025"), 64))
                .is_ok_and(|r| r.is_some())
        );
        assert!(matches!(
            c.route(&data_body(sa("[2001:db8::1]:9993"), 64)),
            Ok(None)
        ));
        assert!(matches!(c.route(&[0; 40]), Ok(None)));
        assert!(matches!(
            c.route(&[9; 40]),
            Err(End::Protocol(TunnelError::UnknownType { ty: 9 }))
        ));
        assert_eq!(
            (
                c.stats.short,
                c.stats.low_port,
                c.stats.family,
                c.stats.no_address
            ),
            (1, 1, 1, 1)
        );
        // A later greeting changes nothing.
        let other = encode_greeting(2, 0, 0);
        assert!(matches!(c.route(&other[RECORD_HEADER_LEN..]), Ok(None)));
        assert!(matches!(c.mode, Mode::New { major: 1, .. }));
    }

    #[test]
    fn legacy_clients() {
        let a = args(&["--legacy-target", "127.0.0.1:9993"]);
        let mut c = conn(&a);
        let packet = [0x22; 40];
        assert_eq!(
            c.route(&packet).expect("ok"),
            Some((sa("127.0.0.1:9993"), &packet[..]))
        );
        assert_eq!(c.mode, Mode::Legacy);
        // Bare records back, no address.
        c.on_udp_datagram(&[0x33; 20], sa("127.0.0.1:9993"));
        assert_eq!(c.queue.pending()[..5], [0x17, 0x03, 0x03, 0x00, 20]);
        assert_eq!(c.queue.pending().len(), 25);

        let strict = args(&["--no-legacy"]);
        let mut c = conn(&strict);
        assert!(matches!(c.route(&packet), Err(End::LegacyRefused)));
    }

    #[test]
    fn udp_to_client_size_rules_and_addresses() {
        let a = args(&[]);
        let mut c = conn(&a);
        // Before the first record nothing is relayed.
        c.on_udp_datagram(&[1; 40], sa("192.0.2.7:9993"));
        assert!(c.queue.is_empty());
        c.mode = Mode::New {
            major: 1,
            minor: 14,
            revision: 1,
        };
        for len in [15, 2048] {
            c.on_udp_datagram(&vec![1; len], sa("192.0.2.7:9993"));
        }
        assert!(c.queue.is_empty());
        assert_eq!(c.stats.udp_ignored, 3);
        c.on_udp_datagram(&[1; 16], sa("[::ffff:192.0.2.7]:9993"));
        c.on_udp_datagram(&[2; 2047], sa("[2001:db8::7]:9993"));
        let mut dec = TunnelDecoder::new();
        assert_eq!(dec.push(c.queue.pending()), c.queue.pending().len());
        assert_eq!(
            dec.next_record(),
            Ok(Some(Record::Datagram {
                addr: Some(sa("192.0.2.7:9993")),
                payload: &[1; 16]
            }))
        );
        assert_eq!(
            dec.next_record(),
            Ok(Some(Record::Datagram {
                addr: Some(sa("[2001:db8::7]:9993")),
                payload: &[2; 2047]
            }))
        );
        assert_eq!(dec.next_record(), Ok(None));
        assert_eq!(c.stats.udp_in, 2);
    }

    #[test]
    fn write_queue_is_bounded_and_drops_whole_records() {
        let a = args(&["--write-buffer", "4096"]);
        let mut c = conn(&a);
        c.mode = Mode::New {
            major: 1,
            minor: 14,
            revision: 1,
        };
        // 1000-byte datagrams make 1012-byte records: four fit in 4096, the fifth does not.
        for _ in 0..6 {
            c.on_udp_datagram(&[7; 1000], sa("192.0.2.9:9993"));
        }
        assert_eq!((c.stats.udp_in, c.stats.queue_full), (4, 2));
        assert_eq!(c.queue.pending().len(), 4 * 1012);
        assert!(c.queue.buf.capacity() <= 4096);
        // Writing part of it makes room again, and the framing stays intact.
        c.queue.consume(1500);
        c.on_udp_datagram(&[8; 1000], sa("192.0.2.9:9993"));
        assert_eq!(c.stats.udp_in, 5);
        assert!(c.queue.buf.len() <= 4096 && c.queue.buf.capacity() <= 4096);
        let mut dec = TunnelDecoder::new();
        dec.push(&c.queue.pending()[1012 * 2 - 1500..]);
        let mut n = 0;
        while let Ok(Some(Record::Datagram { payload, .. })) = dec.next_record() {
            assert_eq!(payload.len(), 1000);
            n += 1;
        }
        assert_eq!(n, 3);
        c.queue.consume(usize::MAX);
        assert!(c.queue.is_empty() && c.queue.buf.is_empty());
    }

    #[test]
    fn reachable_destinations() {
        let v4 = sa("0.0.0.0:0");
        let v6 = sa("[::]:0");
        assert_eq!(reachable(sa("1.2.3.4:5"), v4), Some(sa("1.2.3.4:5")));
        assert_eq!(
            reachable(sa("1.2.3.4:5"), v6),
            Some(sa("[::ffff:1.2.3.4]:5"))
        );
        assert_eq!(
            reachable(sa("[::ffff:1.2.3.4]:5"), v4),
            Some(sa("1.2.3.4:5"))
        );
        assert_eq!(reachable(sa("[2001:db8::1]:5"), v4), None);
        assert_eq!(
            reachable(sa("[2001:db8::1]:5"), v6),
            Some(sa("[2001:db8::1]:5"))
        );
    }

    #[test]
    fn stats_line() {
        let s = Stats {
            records_in: 3,
            udp_out: 2,
            udp_in: 1,
            short: 1,
            queue_full: 2,
            ..Stats::default()
        };
        assert_eq!(
            s.to_string(),
            "3 records in, 2 datagrams sent, 1 received; dropped 3 (short 1, port 0, \
             no-address 0, family 0, send-error 0, udp-ignored 0, queue-full 2)"
        );
    }
}
