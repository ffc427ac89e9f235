//! The data plane as the control plane sees it: in this process (`--single-process`), or a
//! separate `weft dataplane` process that owns the UDP sockets, runs the batch engine (root
//! relaying) and never sees the identity secret — only per-peer session keys from the published
//! tables. The two talk over a Unix SOCK_SEQPACKET socket in the home folder (mode 0600) with the
//! messages of `weft_engine::boundary`. If the data-plane process dies, the control plane starts
//! a new one, which binds the same addresses, and republishes the tables: peers keep their
//! sessions (the keys live here), paths resume with the next packets.
//! spec: shared/design/architecture.md ("The boundary between the planes")

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use std::sync::Arc;
use tokio::net::UdpSocket;
use tokio::process::{Child, Command};

use tokio::sync::mpsc;
use tokio_seqpacket::{UnixSeqpacket, UnixSeqpacketListener};
use weft_engine::boundary::{BOUNDARY_VERSION, MAX_MESSAGE, ToControlPlane, ToDataPlane};
use weft_engine::{Engine, EngineStats, Tables, Verdict};
use weft_proto::{LocalSocket, Transmit};

/// UDP receive/send buffer size asked for.
const SOCKET_BUFFER: usize = 4 << 20;
/// The control socket's name in the home folder.
pub(crate) const SOCKET_NAME: &str = "dataplane.sock";

/// Binds one UDP socket (IPv6 sockets are IPv6-only), large buffers, non-blocking.
pub(crate) fn bind(addr: SocketAddr) -> Result<UdpSocket> {
    let domain = if addr.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let s = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
    s.set_nonblocking(true)?;
    s.bind(&addr.into())
        .with_context(|| format!("cannot bind UDP {addr}"))?;
    Ok(UdpSocket::from_std(s.into())?)
}

/// Which sockets a transmit goes out on: its local socket if it has the right family, else all
/// sockets of the family (probes without a socket) or the first one.
fn sockets_for(addrs: &[SocketAddr], local: u32, to: SocketAddr) -> Vec<usize> {
    let family = |i: &usize| addrs[*i].is_ipv4() == to.is_ipv4();
    if (local as usize) < addrs.len() && family(&(local as usize)) {
        return vec![local as usize];
    }
    let all: Vec<usize> = (0..addrs.len()).filter(family).collect();
    if local == u32::MAX {
        all
    } else {
        all.into_iter().take(1).collect()
    }
}

async fn send_on(s: &UdpSocket, to: SocketAddr, ttl: u8, data: &[u8]) {
    if ttl != 0 {
        let old = s.ttl().unwrap_or(64);
        let _ = s.set_ttl(u32::from(ttl));
        let _ = s.send_to(data, to).await;
        let _ = s.set_ttl(old);
    } else if let Err(e) = s.send_to(data, to).await
        && e.kind() != std::io::ErrorKind::WouldBlock
    {
        eprintln!("weft: send to {to} failed: {e}");
    }
}

/// Waits for the first datagram on any socket.
async fn recv_any(
    sockets: &[UdpSocket],
    bufs: &mut [Vec<u8>],
) -> (usize, std::io::Result<(usize, SocketAddr)>) {
    use std::future::Future;
    let mut futs: Vec<_> = sockets
        .iter()
        .zip(bufs.iter_mut())
        .enumerate()
        .map(|(i, (s, b))| Box::pin(async move { (i, s.recv_from(b).await) }))
        .collect();
    std::future::poll_fn(move |cx| {
        for f in futs.iter_mut() {
            if let std::task::Poll::Ready(r) = f.as_mut().poll(cx) {
                return std::task::Poll::Ready(r);
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// Records queued for the other plane at most (then dropped and counted, like a full NIC ring).
const WRITE_QUEUE: usize = 8192;

/// A SEQPACKET connection whose sends never block the caller: records go through a bounded
/// queue to a writer task. Both planes read and write the socket; if both blocked on a full
/// send buffer at once they would wait for each other forever.
struct Conn {
    sock: Arc<UnixSeqpacket>,
    tx: mpsc::Sender<Vec<u8>>,
    drops: u64,
}

impl Conn {
    fn new(sock: UnixSeqpacket) -> Conn {
        let sock = Arc::new(sock);
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
        let w = sock.clone();
        tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                if w.send(&m).await.is_err() {
                    return;
                }
            }
        });
        Conn { sock, tx, drops: 0 }
    }

    /// Queues a record; drops it when the queue is full.
    fn send(&mut self, m: Vec<u8>) {
        if self.tx.try_send(m).is_err() {
            self.drops += 1;
        }
    }

    async fn recv(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.sock.recv(buf).await
    }
}

/// IPv4-mapped IPv6 sources are reported as IPv4.
fn unmap(from: SocketAddr) -> SocketAddr {
    match from {
        SocketAddr::V6(v6) => v6
            .ip()
            .to_ipv4_mapped()
            .map_or(from, |v4| SocketAddr::new(v4.into(), v6.port())),
        v4 => v4,
    }
}

/// What the data plane hands the control plane.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// A datagram for the protocol core.
    Datagram {
        local: LocalSocket,
        from: SocketAddr,
        data: Vec<u8>,
    },
    /// A relayed packet head between these two (introductions).
    Relayed(weft_wire::Address, weft_wire::Address),
    /// Nothing for the core (a relayed datagram, a restart, counters).
    Nothing,
}

/// In-process: the sockets and the engine live here.
pub(crate) struct Local {
    sockets: Vec<UdpSocket>,
    addrs: Vec<SocketAddr>,
    bufs: Vec<Vec<u8>>,
    engine: Engine,
    tables: Tables,
    verdicts: Vec<Verdict>,
    pending: std::collections::VecDeque<Inbound>,
}

/// Split: a child process behind a SEQPACKET socket.
pub(crate) struct Remote {
    exe: PathBuf,
    sock_path: PathBuf,
    listener: UnixSeqpacketListener,
    child: Child,
    conn: Conn,
    addrs: Vec<SocketAddr>,
    tables: Tables,
    stats: EngineStats,
    restarts: u64,
    buf: Vec<u8>,
}

/// The data plane, in either form.
pub(crate) enum DataPlane {
    Local(Box<Local>),
    Remote(Box<Remote>),
}

impl std::fmt::Debug for DataPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DataPlane::Local(_) => f.write_str("DataPlane::Local"),
            DataPlane::Remote(r) => write!(f, "DataPlane::Remote(pid {:?})", r.child.id()),
        }
    }
}

async fn spawn_child(
    exe: &Path,
    listener: &mut UnixSeqpacketListener,
    sock_path: &Path,
    addrs: &[SocketAddr],
) -> Result<(Child, UnixSeqpacket, Vec<SocketAddr>)> {
    let child = Command::new(exe)
        .arg("dataplane")
        .arg(sock_path)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting the data plane")?;
    let conn = tokio::time::timeout(Duration::from_secs(10), listener.accept())
        .await
        .context("the data plane did not connect within 10 s")??;
    conn.send(
        &ToDataPlane::Start {
            version: BOUNDARY_VERSION,
            bind: addrs.to_vec(),
        }
        .encode(),
    )
    .await?;
    let mut buf = vec![0u8; MAX_MESSAGE];
    let n = tokio::time::timeout(Duration::from_secs(10), conn.recv(&mut buf))
        .await
        .context("the data plane did not answer")??;
    match ToControlPlane::decode(&buf[..n])? {
        ToControlPlane::Started {
            version,
            bound,
            error,
        } => {
            if version != BOUNDARY_VERSION {
                bail!("data plane speaks boundary version {version}, not {BOUNDARY_VERSION}");
            }
            if bound.is_empty() {
                bail!("the data plane could not bind: {error}");
            }
            Ok((child, conn, bound))
        }
        other => bail!("unexpected first message from the data plane: {other:?}"),
    }
}

impl DataPlane {
    /// The in-process data plane over already bound sockets.
    pub(crate) fn local(sockets: Vec<UdpSocket>) -> DataPlane {
        let addrs = sockets.iter().filter_map(|s| s.local_addr().ok()).collect();
        let bufs = sockets.iter().map(|_| vec![0u8; 16_384]).collect();
        DataPlane::Local(Box::new(Local {
            sockets,
            addrs,
            bufs,
            engine: Engine::new(),
            tables: Tables::default(),
            verdicts: Vec::new(),
            pending: Default::default(),
        }))
    }

    /// Starts a data-plane process that binds `addrs`.
    pub(crate) async fn split(home: &Path, addrs: Vec<SocketAddr>) -> Result<DataPlane> {
        let exe = std::env::current_exe()?;
        let sock_path = home.join(SOCKET_NAME);
        let _ = std::fs::remove_file(&sock_path);
        let mut listener = UnixSeqpacketListener::bind(&sock_path)
            .with_context(|| format!("binding {}", sock_path.display()))?;
        crate::fsutil::chmod(&sock_path, crate::fsutil::SECRET_MODE)?;
        let (child, conn, bound) = spawn_child(&exe, &mut listener, &sock_path, &addrs).await?;
        Ok(DataPlane::Remote(Box::new(Remote {
            exe,
            sock_path,
            listener,
            child,
            conn: Conn::new(conn),
            addrs: bound,
            tables: Tables::default(),
            stats: EngineStats::default(),
            restarts: 0,
            buf: vec![0u8; MAX_MESSAGE],
        })))
    }

    /// The bound local addresses, in `LocalSocket` order.
    pub(crate) fn local_addrs(&self) -> &[SocketAddr] {
        match self {
            DataPlane::Local(l) => &l.addrs,
            DataPlane::Remote(r) => &r.addrs,
        }
    }

    /// Counters, and for a process its PID and restarts.
    pub(crate) fn stats(&self) -> (EngineStats, Option<(u32, u64)>) {
        match self {
            DataPlane::Local(l) => (l.engine.stats(), None),
            DataPlane::Remote(r) => (r.stats, Some((r.child.id().unwrap_or(0), r.restarts))),
        }
    }

    /// Publishes a new snapshot of the tables.
    pub(crate) async fn publish(&mut self, tables: Tables) {
        match self {
            DataPlane::Local(l) => l.tables = tables,
            DataPlane::Remote(r) => {
                let msg = ToDataPlane::Tables(tables.clone()).encode();
                r.tables = tables;
                r.conn.send(msg);
            }
        }
    }

    /// Sends a datagram.
    pub(crate) async fn send(&mut self, t: &Transmit) {
        let local = t.local.map_or(u32::MAX, |l| l.0);
        match self {
            DataPlane::Local(l) => {
                for i in sockets_for(&l.addrs, local, t.to) {
                    send_on(&l.sockets[i], t.to, t.ttl.unwrap_or(0), &t.data).await;
                }
            }
            DataPlane::Remote(r) => {
                let msg = ToDataPlane::Send {
                    local,
                    to: t.to,
                    ttl: t.ttl.unwrap_or(0),
                    data: t.data.clone(),
                }
                .encode();
                r.conn.send(msg);
            }
        }
    }

    /// Waits for the next thing from the data plane. Restarts a dead data-plane process.
    pub(crate) async fn recv(&mut self) -> Inbound {
        match self {
            DataPlane::Local(l) => {
                if let Some(x) = l.pending.pop_front() {
                    return x;
                }
                let (i, r) = recv_any(&l.sockets, &mut l.bufs).await;
                let Ok((n, from)) = r else {
                    return Inbound::Nothing;
                };
                let from = unmap(from);
                let data = l.bufs[i][..n].to_vec();
                let mut verdicts = std::mem::take(&mut l.verdicts);
                l.engine
                    .process_rx(&l.tables, &[(from, &data)], &mut verdicts);
                for v in verdicts.drain(..) {
                    match v {
                        Verdict::Up => l.pending.push_back(Inbound::Datagram {
                            local: LocalSocket(i as u32),
                            from,
                            data: data.clone(),
                        }),
                        Verdict::Relay {
                            local,
                            to,
                            data,
                            ends,
                        } => {
                            for s in sockets_for(&l.addrs, local, to) {
                                send_on(&l.sockets[s], to, 0, &data).await;
                            }
                            if let Some((a, b)) = ends {
                                l.pending.push_back(Inbound::Relayed(a, b));
                            }
                        }
                        Verdict::Drop(_) => {}
                    }
                }
                l.verdicts = verdicts;
                l.pending.pop_front().unwrap_or(Inbound::Nothing)
            }
            DataPlane::Remote(r) => match r.conn.recv(&mut r.buf).await {
                Ok(n) if n > 0 => match ToControlPlane::decode(&r.buf[..n]) {
                    Ok(ToControlPlane::Up { local, from, data }) => Inbound::Datagram {
                        local: LocalSocket(local),
                        from,
                        data,
                    },
                    Ok(ToControlPlane::Relayed { source, dest }) => Inbound::Relayed(source, dest),
                    Ok(ToControlPlane::Stats(s)) => {
                        r.stats = s;
                        Inbound::Nothing
                    }
                    _ => Inbound::Nothing,
                },
                _ => {
                    r.restart().await;
                    Inbound::Nothing
                }
            },
        }
    }

    /// Stops a data-plane process.
    pub(crate) async fn shutdown(&mut self) {
        if let DataPlane::Remote(r) = self {
            let _ = r.conn.sock.send(&ToDataPlane::Shutdown.encode()).await;
            let _ = tokio::time::timeout(Duration::from_secs(3), r.child.wait()).await;
            let _ = r.child.start_kill();
            let _ = std::fs::remove_file(&r.sock_path);
        }
    }
}

impl Remote {
    /// The data plane died (or closed its socket): start a new one on the same addresses and
    /// republish the tables. Retries every second until it works.
    async fn restart(&mut self) {
        let status = self.child.try_wait().ok().flatten();
        eprintln!(
            "weft: the data plane (pid {:?}) stopped ({}); restarting it",
            self.child.id(),
            status.map_or_else(|| "connection lost".to_string(), |s| s.to_string())
        );
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        loop {
            match spawn_child(&self.exe, &mut self.listener, &self.sock_path, &self.addrs).await {
                Ok((child, conn, bound)) => {
                    self.child = child;
                    self.conn = Conn::new(conn);
                    self.addrs = bound;
                    self.restarts += 1;
                    let msg = ToDataPlane::Tables(self.tables.clone()).encode();
                    self.conn.send(msg);
                    eprintln!(
                        "weft: data plane restarted (pid {:?}), tables republished",
                        self.child.id()
                    );
                    return;
                }
                Err(e) => {
                    eprintln!("weft: restarting the data plane failed: {e:#}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

/// `weft dataplane <socket>`: the data-plane process. Binds what the control plane asks, drops
/// root privileges (to `nobody`) once bound, then moves datagrams: relays what the engine
/// relays, hands everything else up, sends what it is told. Exits when the control socket
/// closes.
pub(crate) fn run_process(sock: &Path) -> Result<std::process::ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let conn = UnixSeqpacket::connect(sock)
            .await
            .with_context(|| format!("connecting to {}", sock.display()))?;
        let mut buf = vec![0u8; MAX_MESSAGE];
        let n = conn.recv(&mut buf).await?;
        let ToDataPlane::Start { version, bind: want } = ToDataPlane::decode(&buf[..n])? else {
            bail!("the control plane did not start with Start");
        };
        let mut sockets = Vec::new();
        let mut error = String::new();
        if version == BOUNDARY_VERSION {
            for a in &want {
                match bind(*a) {
                    Ok(s) => sockets.push(s),
                    Err(e) => error = format!("{e:#}"),
                }
            }
        } else {
            error = format!("boundary version {version} unsupported");
        }
        let addrs: Vec<SocketAddr> = sockets.iter().filter_map(|s| s.local_addr().ok()).collect();
        conn.send(
            &ToControlPlane::Started {
                version: BOUNDARY_VERSION,
                bound: addrs.clone(),
                error,
            }
            .encode(),
        )
        .await?;
        if sockets.is_empty() {
            bail!("nothing bound");
        }
        drop_privileges();
        let mut conn = Conn::new(conn);
        let mut engine = Engine::new();
        let mut tables = Tables::default();
        let mut bufs: Vec<Vec<u8>> = sockets.iter().map(|_| vec![0u8; 16_384]).collect();
        let mut verdicts = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                r = conn.recv(&mut buf) => {
                    let n = match r {
                        Ok(n) if n > 0 => n,
                        _ => return Ok(std::process::ExitCode::SUCCESS),
                    };
                    match ToDataPlane::decode(&buf[..n]) {
                        Ok(ToDataPlane::Tables(t)) => tables = t,
                        Ok(ToDataPlane::Send { local, to, ttl, data }) => {
                            for i in sockets_for(&addrs, local, to) {
                                send_on(&sockets[i], to, ttl, &data).await;
                            }
                        }
                        Ok(ToDataPlane::Shutdown) => return Ok(std::process::ExitCode::SUCCESS),
                        _ => {}
                    }
                }
                (i, r) = recv_any(&sockets, &mut bufs) => {
                    let Ok((n, from)) = r else { continue };
                    let from = unmap(from);
                    let data = &bufs[i][..n];
                    engine.process_rx(&tables, &[(from, data)], &mut verdicts);
                    for v in verdicts.drain(..) {
                        match v {
                            Verdict::Up => {
                                let msg = ToControlPlane::Up { local: i as u32, from, data: data.to_vec() };
                                conn.send(msg.encode());
                            }
                            Verdict::Relay { local, to, data, ends } => {
                                for s in sockets_for(&addrs, local, to) {
                                    send_on(&sockets[s], to, 0, &data).await;
                                }
                                if let Some((source, dest)) = ends {
                                    conn.send(ToControlPlane::Relayed { source, dest }.encode());
                                }
                            }
                            Verdict::Drop(_) => {}
                        }
                    }
                }
                _ = tick.tick() => {
                    let mut st = engine.stats();
                    // records the control plane could not take count as drops
                    st.dropped += conn.drops;
                    conn.send(ToControlPlane::Stats(st).encode());
                }
            }
        }
    })
}

/// Root is only needed to bind; the data plane goes on as `nobody`.
fn drop_privileges() {
    use nix::unistd::{Gid, Uid, setgid, setgroups, setuid};
    if !Uid::effective().is_root() {
        return;
    }
    let nobody = 65_534;
    let ok = setgroups(&[]).is_ok()
        && setgid(Gid::from_raw(nobody)).is_ok()
        && setuid(Uid::from_raw(nobody)).is_ok();
    if !ok {
        eprintln!("weft dataplane: could not drop root privileges; going on as root");
    }
}
