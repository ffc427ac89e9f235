//! The data plane as the control plane sees it: in this process (`--single-process`), or a
//! separate `weft dataplane` process that owns the UDP sockets, runs the batch engine (root
//! relaying) and never sees the identity secret — only per-peer session keys from the published
//! tables. The two talk over a Unix SOCK_SEQPACKET socket in the home folder (mode 0600) with the
//! messages of `weft_engine::boundary`. If the data-plane process dies, the control plane starts
//! a new one, which binds the same addresses, and republishes the tables: peers keep their
//! sessions (the keys live here), paths resume with the next packets.
//! spec: shared/design/architecture.md ("The boundary between the planes")

use std::collections::HashMap;
use std::io::{IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::net::UdpSocket;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio_seqpacket::ancillary::{AncillaryMessageWriter, OwnedAncillaryMessage};
use tokio_seqpacket::{UnixSeqpacket, UnixSeqpacketListener};
use weft_engine::boundary::{BOUNDARY_VERSION, MAX_MESSAGE, ToControlPlane, ToDataPlane};
use weft_engine::io::tap::Tap;
use weft_engine::io::udp;
use weft_engine::{Engine, EngineStats, Tables, TapVerdict, Verdict};
use weft_proto::{LocalSocket, Transmit};
use weft_wire::NetworkId;

use super::worker::{self, sockets_for};

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
    tx: mpsc::Sender<Out>,
    drops: u64,
}

/// A record for the other plane, with a descriptor to pass along (SCM_RIGHTS) or not.
enum Out {
    Plain(Vec<u8>),
    WithFd(Vec<u8>, OwnedFd),
}

impl Conn {
    fn new(sock: UnixSeqpacket) -> Conn {
        let sock = Arc::new(sock);
        let (tx, mut rx) = mpsc::channel::<Out>(WRITE_QUEUE);
        let w = sock.clone();
        tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                let r = match m {
                    Out::Plain(b) => w.send(&b).await,
                    Out::WithFd(b, fd) => {
                        let mut cmsg = [0u8; 64];
                        let mut anc = AncillaryMessageWriter::new(&mut cmsg);
                        match anc.add_fds(&[fd.as_fd()]) {
                            Ok(()) => {
                                w.send_vectored_with_ancillary(&[IoSlice::new(&b)], &mut anc)
                                    .await
                            }
                            Err(e) => Err(std::io::Error::other(format!("{e:?}"))),
                        }
                    }
                };
                if r.is_err() {
                    return;
                }
            }
        });
        Conn { sock, tx, drops: 0 }
    }

    /// Queues a record; drops it when the queue is full.
    fn send(&mut self, m: Vec<u8>) {
        if self.tx.try_send(Out::Plain(m)).is_err() {
            self.drops += 1;
        }
    }

    /// Queues a record carrying a descriptor (never dropped silently: reported).
    fn send_fd(&mut self, m: Vec<u8>, fd: OwnedFd) -> bool {
        self.tx.try_send(Out::WithFd(m, fd)).is_ok()
    }

    async fn recv(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.sock.recv(buf).await
    }

    /// Receives a record and the descriptors passed with it.
    async fn recv_with_fds(&self, buf: &mut [u8]) -> std::io::Result<(usize, Vec<OwnedFd>)> {
        let mut cmsg = [0u8; 128];
        let (n, anc) = self
            .sock
            .recv_vectored_with_ancillary(&mut [IoSliceMut::new(buf)], &mut cmsg)
            .await?;
        let mut fds = Vec::new();
        for m in anc.into_messages() {
            if let OwnedAncillaryMessage::FileDescriptors(f) = m {
                fds.extend(f);
            }
        }
        Ok((n, fds))
    }
}

/// Milliseconds on a monotonic clock (the engine's reassembly timeouts).
fn mono_ms() -> i64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as i64
}

/// A random start for the engine's packet-id counter.
fn random_seed() -> u64 {
    use rand_core::RngCore;
    rand_core::OsRng.next_u64()
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
    /// A fragmented packet the data plane reassembled (still armored).
    Packet {
        local: LocalSocket,
        from: SocketAddr,
        data: Vec<u8>,
    },
    /// A frame the data plane read from a network's TAP.
    TapFrame(NetworkId, Vec<u8>),
    /// A frame the in-process fast path received for a network's TAP (this process writes it).
    TapWrite(NetworkId, Vec<u8>),
    /// The fast path's activity report.
    Activity(weft_engine::Activity),
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
    /// The TAPs the data plane serves, all their queues (passed again after a restart).
    taps: HashMap<u64, Vec<Arc<Tap>>>,
    /// The UDP back-end asked for (empty: auto).
    backend: String,
    /// What the process chose, and why better back-ends were not.
    chosen: String,
    /// Worker threads of the process.
    workers: u16,
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
            DataPlane::Remote(r) => write!(
                f,
                "DataPlane::Remote(pid {:?}, UDP back-end {})",
                r.child.id(),
                r.chosen
            ),
        }
    }
}

async fn spawn_child(
    exe: &Path,
    listener: &mut UnixSeqpacketListener,
    sock_path: &Path,
    addrs: &[SocketAddr],
    backend: &str,
    workers: u16,
) -> Result<(Child, UnixSeqpacket, Vec<SocketAddr>, String)> {
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
            backend: backend.to_owned(),
            workers,
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
            backend,
            error,
        } => {
            if version != BOUNDARY_VERSION {
                bail!("data plane speaks boundary version {version}, not {BOUNDARY_VERSION}");
            }
            if bound.is_empty() {
                bail!("the data plane could not bind: {error}");
            }
            Ok((child, conn, bound, backend))
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
            engine: Engine::new(random_seed()),
            tables: Tables::default(),
            verdicts: Vec::new(),
            pending: Default::default(),
        }))
    }

    /// Starts a data-plane process that binds `addrs` with UDP back-end `backend` (empty: the
    /// best that works).
    pub(crate) async fn split(
        home: &Path,
        addrs: Vec<SocketAddr>,
        backend: &str,
        workers: u16,
    ) -> Result<DataPlane> {
        let exe = std::env::current_exe()?;
        let sock_path = home.join(SOCKET_NAME);
        let _ = std::fs::remove_file(&sock_path);
        let mut listener = UnixSeqpacketListener::bind(&sock_path)
            .with_context(|| format!("binding {}", sock_path.display()))?;
        crate::fsutil::chmod(&sock_path, crate::fsutil::SECRET_MODE)?;
        let (child, conn, bound, chosen) =
            spawn_child(&exe, &mut listener, &sock_path, &addrs, backend, workers).await?;
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
            taps: HashMap::new(),
            backend: backend.to_owned(),
            chosen,
            workers,
        })))
    }

    /// The bound local addresses, in `LocalSocket` order.
    pub(crate) fn local_addrs(&self) -> &[SocketAddr] {
        match self {
            DataPlane::Local(l) => &l.addrs,
            DataPlane::Remote(r) => &r.addrs,
        }
    }

    /// The UDP back-end in use, and why better ones were not chosen.
    pub(crate) fn backend(&self) -> String {
        match self {
            DataPlane::Local(_) => "tokio (in-process data plane)".to_owned(),
            DataPlane::Remote(r) => r.chosen.clone(),
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

    /// Whether the data-plane process serves the TAPs (else this process does).
    pub(crate) fn serves_taps(&self) -> bool {
        matches!(self, DataPlane::Remote(_))
    }

    /// Hands a network's TAP queues to the data-plane process (duplicates of the descriptors).
    pub(crate) fn attach_tap(&mut self, nwid: NetworkId, queues: Vec<Arc<Tap>>) {
        if let DataPlane::Remote(r) = self {
            for (q, tap) in queues.iter().enumerate() {
                r.attach(nwid.0, q as u16, tap);
            }
            r.taps.insert(nwid.0, queues);
        }
    }

    /// Worker threads of the data plane (queues per TAP).
    pub(crate) fn workers(&self) -> usize {
        match self {
            DataPlane::Local(_) => 1,
            DataPlane::Remote(r) => usize::from(r.workers.max(1)),
        }
    }

    /// Stops serving a network's TAP.
    pub(crate) fn detach_tap(&mut self, nwid: NetworkId) {
        if let DataPlane::Remote(r) = self
            && r.taps.remove(&nwid.0).is_some()
        {
            r.conn
                .send(ToDataPlane::DetachTap { nwid: nwid.0 }.encode());
        }
    }

    /// Writes a frame to a network's TAP through the data-plane process.
    pub(crate) fn tap_write(&mut self, nwid: NetworkId, frame: &[u8]) {
        if let DataPlane::Remote(r) = self {
            r.conn.send(
                ToDataPlane::TapWrite {
                    nwid: nwid.0,
                    frame: frame.to_vec(),
                }
                .encode(),
            );
        }
    }

    /// A frame this process read from a network's TAP (in-process data plane only): the
    /// engine's fast path sends it if it can. `false`: the control plane must handle it.
    pub(crate) async fn tap_frame(&mut self, nwid: NetworkId, frame: &[u8]) -> bool {
        let DataPlane::Local(l) = self else {
            return false;
        };
        let mut out = Vec::new();
        match l
            .engine
            .process_tap(&l.tables, mono_ms(), nwid, frame, &mut out)
        {
            TapVerdict::Up => false,
            TapVerdict::Drop(_) => true,
            TapVerdict::Sent => {
                for d in out {
                    for s in sockets_for(&l.addrs, d.local, d.to) {
                        send_on(&l.sockets[s], d.to, 0, &d.data).await;
                    }
                }
                true
            }
        }
    }

    /// The in-process engine's activity since the last call (a process reports its own).
    pub(crate) fn take_activity(&mut self) -> Option<weft_engine::Activity> {
        match self {
            DataPlane::Local(l) => {
                l.engine.expire(mono_ms());
                let mut a = l.engine.take_activity();
                // its flow gauges are its own, apart from the workers' (0..8)
                a.worker = LOCAL_ENGINE_REPORTER;
                Some(a)
            }
            DataPlane::Remote(_) => None,
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
                    .process_rx(&l.tables, mono_ms(), &[(from, &data)], &mut verdicts);
                let local = LocalSocket(i as u32);
                for v in verdicts.drain(..) {
                    match v {
                        Verdict::Up => l.pending.push_back(Inbound::Datagram {
                            local,
                            from,
                            data: data.clone(),
                        }),
                        Verdict::UpPacket(data) => {
                            l.pending.push_back(Inbound::Packet { local, from, data })
                        }
                        Verdict::TapWrite { network_id, frame } => {
                            l.pending.push_back(Inbound::TapWrite(network_id, frame))
                        }
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
                        Verdict::Held | Verdict::Drop(_) => {}
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
                    Ok(ToControlPlane::TapFrame { nwid, frame }) => {
                        Inbound::TapFrame(NetworkId(nwid), frame)
                    }
                    Ok(ToControlPlane::UpPacket { local, from, data }) => Inbound::Packet {
                        local: LocalSocket(local),
                        from,
                        data,
                    },
                    Ok(ToControlPlane::Activity(a)) => Inbound::Activity(a),
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
    fn attach(&mut self, nwid: u64, queue: u16, tap: &Tap) {
        let msg = ToDataPlane::AttachTap {
            nwid,
            vnet_hdr: tap.vnet_hdr(),
            queue,
            name: tap.name().to_owned(),
        }
        .encode();
        match tap.dup_fd() {
            Ok(fd) => {
                if !self.conn.send_fd(msg, fd) {
                    eprintln!(
                        "weft: data plane queue full: {} not handed over",
                        tap.name()
                    );
                }
            }
            Err(e) => eprintln!("weft: cannot pass {} to the data plane: {e}", tap.name()),
        }
    }

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
            match spawn_child(
                &self.exe,
                &mut self.listener,
                &self.sock_path,
                &self.addrs,
                &self.backend,
                self.workers,
            )
            .await
            {
                Ok((child, conn, bound, chosen)) => {
                    self.chosen = chosen;
                    self.child = child;
                    self.conn = Conn::new(conn);
                    self.addrs = bound;
                    self.restarts += 1;
                    let msg = ToDataPlane::Tables(self.tables.clone()).encode();
                    self.conn.send(msg);
                    let taps: Vec<(u64, Vec<Arc<Tap>>)> =
                        self.taps.iter().map(|(n, t)| (*n, t.clone())).collect();
                    for (nwid, queues) in taps {
                        for (q, tap) in queues.iter().enumerate() {
                            self.attach(nwid, q as u16, tap);
                        }
                    }
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

/// `weft dataplane <socket>`: the data-plane process. Binds what the control plane asks with the
/// best (or the configured) batched UDP back-end, drops root privileges (to `nobody`) once
/// bound, then runs the worker thread (`worker.rs`: the batch engine between the sockets and
/// the TAPs) while this thread relays between the worker and the control plane. Exits when the
/// control socket closes.
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
        let ToDataPlane::Start {
            version,
            bind: want,
            backend,
            workers,
        } = ToDataPlane::decode(&buf[..n])?
        else {
            bail!("the control plane did not start with Start");
        };
        let workers = usize::from(workers.clamp(1, 64));
        // per worker, one socket per address (SO_REUSEPORT spreads peers over the workers)
        let mut sockets: Vec<Vec<Box<dyn udp::UdpIo>>> = (0..workers).map(|_| Vec::new()).collect();
        let mut error = String::new();
        let mut probe_text = String::new();
        if version == BOUNDARY_VERSION {
            let opts = udp::Options {
                prefer: if backend.is_empty() {
                    None
                } else {
                    Some(backend.parse::<udp::Backend>().map_err(|e| anyhow::anyhow!("{e}"))?)
                },
                reuse_port: workers > 1,
                ..udp::Options::default()
            };
            'bind: for a in &want {
                for (w, set) in sockets.iter_mut().enumerate() {
                    match udp::open(*a, &opts) {
                        Ok((s, probe)) => {
                            if probe_text.is_empty() {
                                probe_text = describe(&probe);
                                if workers > 1 {
                                    probe_text.push_str(&format!(", {workers} workers"));
                                }
                            }
                            set.push(s);
                        }
                        Err(e) => {
                            error = format!("cannot bind UDP {a} (worker {w}): {e}");
                            break 'bind;
                        }
                    }
                }
            }
            if !error.is_empty() {
                sockets.iter_mut().for_each(Vec::clear);
            }
        } else {
            error = format!("boundary version {version} unsupported");
        }
        let addrs: Vec<SocketAddr> = sockets[0].iter().map(|s| s.local_addr()).collect();
        conn.send(
            &ToControlPlane::Started {
                version: BOUNDARY_VERSION,
                bound: addrs.clone(),
                backend: probe_text,
                error,
            }
            .encode(),
        )
        .await?;
        if sockets[0].is_empty() {
            bail!("nothing bound");
        }
        drop_privileges();
        let mut conn = Conn::new(conn);
        let (up_tx, mut up_rx) = mpsc::channel::<worker::Up>(WRITE_QUEUE);
        let cores = core_affinity::get_core_ids().unwrap_or_default();
        let mut ws = Vec::new();
        let count = sockets.len();
        for (i, set) in sockets.into_iter().enumerate() {
            let core = (!cores.is_empty() && workers > 1).then(|| cores[i % cores.len()]);
            ws.push(worker::Worker::start(i, count, set, up_tx.clone(), random_seed(), core)?);
        }
        drop(up_tx);
        let mut per_worker: Vec<(EngineStats, u64)> = vec![(EngineStats::default(), 0); ws.len()];
        loop {
            tokio::select! {
                r = conn.recv_with_fds(&mut buf) => {
                    let (n, mut fds) = match r {
                        Ok((n, fds)) if n > 0 => (n, fds),
                        _ => return Ok(std::process::ExitCode::SUCCESS),
                    };
                    match ToDataPlane::decode(&buf[..n]) {
                        Ok(ToDataPlane::AttachTap { nwid, vnet_hdr, queue, name }) => {
                            let Some(fd) = fds.pop() else { continue };
                            match Tap::from_fd(fd, &name, vnet_hdr) {
                                Ok(tap) => ws[usize::from(queue) % ws.len()]
                                    .tell(worker::Cmd::AttachTap(nwid, Arc::new(tap))),
                                Err(e) => eprintln!("weft dataplane: TAP {name}: {e}"),
                            }
                        }
                        Ok(ToDataPlane::DetachTap { nwid }) => {
                            ws.iter().for_each(|w| w.tell(worker::Cmd::DetachTap(nwid)));
                        }
                        Ok(ToDataPlane::TapWrite { nwid, frame }) => {
                            ws[0].tell(worker::Cmd::TapWrite(nwid, frame));
                        }
                        Ok(ToDataPlane::Tables(t)) => {
                            let t = Arc::new(t);
                            ws.iter().for_each(|w| w.tell(worker::Cmd::Tables(t.clone())));
                        }
                        Ok(ToDataPlane::Send { local, to, ttl, data }) => {
                            ws[0].tell(worker::Cmd::Send { local, to, ttl, data });
                        }
                        Ok(ToDataPlane::Shutdown) => return Ok(std::process::ExitCode::SUCCESS),
                        Err(e) => eprintln!("weft dataplane: bad record from the control plane: {e}"),
                        _ => {}
                    }
                }
                Some(m) = up_rx.recv() => {
                    let msg = match m {
                        worker::Up::Datagram { local, from, data } => ToControlPlane::Up { local, from, data },
                        worker::Up::Packet { local, from, data } => ToControlPlane::UpPacket { local, from, data },
                        worker::Up::Relayed(source, dest) => ToControlPlane::Relayed { source, dest },
                        worker::Up::TapFrame(nwid, frame) => ToControlPlane::TapFrame { nwid, frame },
                        worker::Up::Activity(a) => {
                            // QoS samples can outgrow one record: the rest in more records
                            let mut parts = a.split(ACTIVITY_SAMPLES_PER_RECORD);
                            let last = parts.pop().unwrap_or_default();
                            for part in parts {
                                conn.send(ToControlPlane::Activity(part).encode());
                            }
                            ToControlPlane::Activity(last)
                        }
                        worker::Up::Stats(i, st, udp, up_drops) => {
                            // records neither queue could take count as drops, and so do the
                            // kernel's receive-queue drops
                            let kernel: u64 = udp.iter().map(|u| u.rx_drops).sum();
                            if let Some(slot) = per_worker.get_mut(i) {
                                *slot = (st, up_drops + kernel);
                            }
                            let mut total = EngineStats::default();
                            for (s, d) in &per_worker {
                                total.relayed += s.relayed;
                                total.up += s.up;
                                total.dropped += s.dropped + d;
                                total.frames_in += s.frames_in;
                                total.frames_out += s.frames_out;
                                total.frames_up += s.frames_up;
                                total.filtered += s.filtered;
                            }
                            total.dropped += conn.drops;
                            ToControlPlane::Stats(total)
                        }
                    };
                    conn.send(msg.encode());
                }
            }
        }
    })
}

/// The reporter number of the in-process engine's activity (workers report as 0..8).
const LOCAL_ENGINE_REPORTER: u16 = 63;

/// QoS samples per Activity record: about 50 bytes each, so a record stays well under
/// [`weft_engine::boundary::MAX_MESSAGE`].
const ACTIVITY_SAMPLES_PER_RECORD: usize = 1000;

/// The back-end chosen and why better ones were not, in one line.
fn describe(p: &udp::Probe) -> String {
    let mut s = p.chosen.to_string();
    if !p.skipped.is_empty() {
        let why: Vec<String> = p.skipped.iter().map(|(b, r)| format!("{b}: {r}")).collect();
        s.push_str(&format!(" ({})", why.join("; ")));
    }
    s
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
