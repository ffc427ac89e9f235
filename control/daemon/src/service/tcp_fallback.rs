//! The TCP fallback relay, client side: when UDP to the Internet seems blocked, datagrams to
//! global IPv4 addresses also go through a TCP connection to a relay (`weft tcp-relay`, or the
//! one ZeroTier runs), framed as fake TLS records. spec: vl1.md §8.13, service.md §5

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use weft_proto::LocalSocket;
use weft_wire::inet::{IpScope, ip_scope};
use weft_wire::tcp_tunnel::{Record, TunnelDecoder, encode_datagram, encode_greeting};

/// The pseudo local socket of datagrams that came through the tunnel (1.14 uses −1).
pub(crate) const TUNNEL_SOCKET: LocalSocket = LocalSocket(u32::MAX);
/// Engage after this long without UDP from a global address (and this long after start).
const ENGAGE_AFTER: Duration = Duration::from_secs(60);
/// Close once UDP from a global address arrived this recently.
const CLOSE_WITHIN: Duration = Duration::from_secs(30);
/// Only datagrams of at least this size are tunneled or count as received.
const MIN_DATAGRAM: usize = 16;
/// Outgoing records waiting for the TCP writer (≈ 64 KiB of typical packets); excess is dropped.
const QUEUE: usize = 48;

/// Settings from `local.conf`.
#[derive(Debug, Clone)]
pub(crate) struct FallbackConfig {
    pub(crate) relay: SocketAddr,
    pub(crate) allowed: bool,
    pub(crate) forced: bool,
}

/// State of the fallback.
#[derive(Debug)]
pub(crate) struct TcpFallback {
    pub(crate) config: FallbackConfig,
    started: Instant,
    last_global_rx: Option<Instant>,
    last_global_tx: Option<Instant>,
    tunnel: Option<mpsc::Sender<(SocketAddr, Vec<u8>)>>,
    incoming: mpsc::Sender<(SocketAddr, Vec<u8>)>,
    version: (u8, u8, u16),
    /// Datagrams dropped because the tunnel queue was full.
    pub(crate) dropped: u64,
}

fn global_v4(a: &SocketAddr) -> bool {
    a.is_ipv4() && ip_scope(a.ip()) == IpScope::Global
}

impl TcpFallback {
    pub(crate) fn new(
        config: FallbackConfig,
        incoming: mpsc::Sender<(SocketAddr, Vec<u8>)>,
        version: (u8, u8, u16),
    ) -> Self {
        TcpFallback {
            config,
            started: Instant::now(),
            last_global_rx: None,
            last_global_tx: None,
            tunnel: None,
            incoming,
            version,
            dropped: 0,
        }
    }

    /// Whether a tunnel is connected (or connecting).
    pub(crate) fn active(&self) -> bool {
        self.tunnel.as_ref().is_some_and(|t| !t.is_closed())
    }

    /// Notes a datagram received over UDP.
    pub(crate) fn on_udp_receive(&mut self, from: &SocketAddr, len: usize) {
        if len >= MIN_DATAGRAM && ip_scope(from.ip()) == IpScope::Global {
            self.last_global_rx = Some(Instant::now());
            let recent = self
                .last_global_rx
                .is_some_and(|t| t.elapsed() < CLOSE_WITHIN);
            if recent && !self.config.forced && self.tunnel.take().is_some() {
                eprintln!("weft: UDP works again, closing the TCP fallback tunnel");
            }
        }
    }

    /// Decides how a datagram goes out. Returns whether it must also (or only, when forced) be
    /// sent over UDP; queues it on the tunnel when the tunnel is used.
    pub(crate) fn route(
        &mut self,
        local: Option<LocalSocket>,
        to: SocketAddr,
        data: &[u8],
    ) -> bool {
        if local == Some(TUNNEL_SOCKET) || self.config.forced {
            if to.is_ipv4() && data.len() >= MIN_DATAGRAM {
                self.send(to, data, true);
            }
            return local != Some(TUNNEL_SOCKET) && !self.config.forced;
        }
        if !self.config.allowed || !global_v4(&to) || data.len() < MIN_DATAGRAM {
            return true;
        }
        let now = Instant::now();
        let udp_silent = self.last_global_rx.is_none_or(|t| now - t >= ENGAGE_AFTER);
        if udp_silent && now - self.started >= ENGAGE_AFTER {
            // A tunnel is opened only while packets are being sent to the Internet: the last
            // such send more than 2.5 s and less than 60 s ago.
            let open = self.active()
                || self.last_global_tx.is_some_and(|t| {
                    let age = now - t;
                    age > Duration::from_millis(2_500) && age < ENGAGE_AFTER
                });
            if open {
                self.send(to, data, self.active());
            }
        }
        self.last_global_tx = Some(now);
        true
    }

    fn send(&mut self, to: SocketAddr, data: &[u8], queue_this: bool) {
        if !self.active() {
            let (tx, rx) = mpsc::channel(QUEUE);
            let relay = self.config.relay;
            let incoming = self.incoming.clone();
            let greeting = encode_greeting(self.version.0, self.version.1, self.version.2);
            eprintln!("weft: opening TCP fallback tunnel to {relay}");
            tokio::spawn(async move {
                if let Err(e) = tunnel(relay, greeting, rx, incoming).await {
                    eprintln!("weft: TCP fallback tunnel to {relay} closed: {e}");
                }
            });
            self.tunnel = Some(tx);
            if !queue_this && !self.config.forced {
                return;
            }
        }
        if let Some(t) = &self.tunnel
            && t.try_send((to, data.to_vec())).is_err()
        {
            self.dropped += 1;
        }
    }
}

/// One tunnel connection: writes queued datagrams, hands received ones to the service loop.
async fn tunnel(
    relay: SocketAddr,
    greeting: [u8; weft_wire::tcp_tunnel::GREETING_LEN],
    mut outgoing: mpsc::Receiver<(SocketAddr, Vec<u8>)>,
    incoming: mpsc::Sender<(SocketAddr, Vec<u8>)>,
) -> std::io::Result<()> {
    let stream = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(relay))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    let (mut rd, mut wr) = stream.into_split();
    wr.write_all(&greeting).await?;
    let mut decoder = TunnelDecoder::new();
    let mut buf = vec![0u8; 16 * 1024];
    let mut out = Vec::new();
    loop {
        tokio::select! {
            msg = outgoing.recv() => {
                let Some((to, data)) = msg else { return Ok(()) };
                out.clear();
                if encode_datagram(to, &data, &mut out).is_ok() {
                    wr.write_all(&out).await?;
                }
            }
            n = rd.read(&mut buf) => {
                let n = n?;
                if n == 0 {
                    return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "relay closed the connection"));
                }
                let mut rest = &buf[..n];
                while !rest.is_empty() {
                    let took = decoder.push(rest);
                    rest = &rest[took..];
                    loop {
                        match decoder.next_record() {
                            Ok(Some(Record::Datagram { addr: Some(from), payload })) => {
                                if incoming.send((from, payload.to_vec())).await.is_err() {
                                    return Ok(());
                                }
                            }
                            Ok(Some(_)) => {}
                            Ok(None) => break,
                            Err(e) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())),
                        }
                    }
                }
            }
        }
    }
}
