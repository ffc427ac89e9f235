//! The data-plane worker: one thread that owns the batched UDP sockets (`weft_engine::io::udp`)
//! and the TAP descriptors, and runs the batch engine between them: a batch of datagrams in →
//! verdicts → TAP writes, relays and hand-ups; frames from the TAPs → datagrams → one batched
//! send. It never blocks on the control plane: commands arrive on a channel (with a wake-up
//! socket), hand-ups leave through a bounded queue that drops when full.
//! design: shared/design/architecture.md (the data plane)

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use tokio::sync::mpsc;
use weft_engine::io::tap::Tap;
use weft_engine::io::udp::{RxBatch, TxBatch, UdpIo, UdpStats};
use weft_engine::offload::{self, Coalescer, VnetHdr};
use weft_engine::{Activity, Datagram, Engine, EngineStats, Tables, TapVerdict, Verdict};
use weft_wire::{Address, NetworkId};

/// Frames read from one TAP per wake-up at most (then the sockets get their turn).
const TAP_BATCH: usize = 64;
/// Largest read from a TAP: a 64 KiB super-frame with its `virtio_net_hdr` (plain frames are
/// at most MTU 10,000 plus the Ethernet header).
const TAP_FRAME_MAX: usize = 65_536 + offload::VNET_HDR_LEN;

/// What the control side tells the worker.
#[derive(Debug)]
pub(crate) enum Cmd {
    Tables(Arc<Tables>),
    AttachTap(u64, Arc<Tap>),
    DetachTap(u64),
    TapWrite(u64, Vec<u8>),
    Send {
        local: u32,
        to: SocketAddr,
        ttl: u8,
        data: Vec<u8>,
    },
    Shutdown,
}

/// What the worker hands to the control side.
#[derive(Debug)]
pub(crate) enum Up {
    Datagram {
        local: u32,
        from: SocketAddr,
        data: Vec<u8>,
    },
    Packet {
        local: u32,
        from: SocketAddr,
        data: Vec<u8>,
    },
    Relayed(Address, Address),
    TapFrame(u64, Vec<u8>),
    Activity(Activity),
    /// Worker index, its engine counters, its sockets' counters, hand-ups it dropped.
    Stats(usize, EngineStats, Vec<UdpStats>, u64),
}

/// The control side's handle on the worker thread.
#[derive(Debug)]
pub(crate) struct Worker {
    cmd: std_mpsc::Sender<Cmd>,
    wake: UnixDatagram,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Worker {
    /// Starts worker `index` over bound sockets (index = local socket number), pinned to
    /// `core` if given.
    pub(crate) fn start(
        index: usize,
        count: usize,
        sockets: Vec<Box<dyn UdpIo>>,
        up: mpsc::Sender<Up>,
        seed: u64,
        core: Option<core_affinity::CoreId>,
    ) -> std::io::Result<Worker> {
        let (wake_tx, wake_rx) = UnixDatagram::pair()?;
        wake_tx.set_nonblocking(true)?;
        wake_rx.set_nonblocking(true)?;
        let (cmd_tx, cmd_rx) = std_mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("weft-dp-{index}"))
            .spawn(move || {
                if let Some(c) = core {
                    core_affinity::set_for_current(c);
                }
                let mut w = Loop::new(index, sockets, up, cmd_rx, wake_rx, seed);
                // the workers split the bonds' QoS sample budgets
                w.engine
                    .set_qos_share(u32::try_from(count).unwrap_or(u32::MAX));
                w.run();
            })?;
        Ok(Worker {
            cmd: cmd_tx,
            wake: wake_tx,
            thread: Some(thread),
        })
    }

    /// Queues a command and wakes the worker.
    pub(crate) fn tell(&self, c: Cmd) {
        if self.cmd.send(c).is_ok() {
            // a full wake-up socket already has a wake-up pending
            let _ = self.wake.send(&[1]);
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.tell(Cmd::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Loop {
    index: usize,
    sockets: Vec<Box<dyn UdpIo>>,
    addrs: Vec<SocketAddr>,
    tx: Vec<TxBatch>,
    rx: RxBatch,
    taps: HashMap<u64, Arc<Tap>>,
    tables: Arc<Tables>,
    engine: Engine,
    up: mpsc::Sender<Up>,
    up_drops: u64,
    cmds: std_mpsc::Receiver<Cmd>,
    wake: UnixDatagram,
    verdicts: Vec<Verdict>,
    datagrams: Vec<Datagram>,
    frame: Vec<u8>,
    segment: Vec<u8>,
    /// Frames for TAPs with offloads, merged per receive batch (GRO).
    coalesce: HashMap<u64, Coalescer>,
    start: Instant,
}

impl Loop {
    fn new(
        index: usize,
        sockets: Vec<Box<dyn UdpIo>>,
        up: mpsc::Sender<Up>,
        cmds: std_mpsc::Receiver<Cmd>,
        wake: UnixDatagram,
        seed: u64,
    ) -> Loop {
        let addrs = sockets.iter().map(|s| s.local_addr()).collect();
        let tx = sockets.iter().map(|_| TxBatch::new()).collect();
        Loop {
            index,
            sockets,
            addrs,
            tx,
            rx: RxBatch::new(64),
            taps: HashMap::new(),
            tables: Arc::new(Tables::default()),
            engine: Engine::new(seed),
            up,
            up_drops: 0,
            cmds,
            wake,
            verdicts: Vec::new(),
            datagrams: Vec::new(),
            frame: vec![0u8; TAP_FRAME_MAX],
            segment: Vec::new(),
            coalesce: HashMap::new(),
            start: Instant::now(),
        }
    }

    fn now(&self) -> i64 {
        self.start.elapsed().as_millis() as i64
    }

    fn hand_up(&mut self, m: Up) {
        if self.up.try_send(m).is_err() {
            self.up_drops += 1;
        }
    }

    fn run(&mut self) {
        let mut last_report = Instant::now();
        loop {
            let taps: Vec<(u64, Arc<Tap>)> =
                self.taps.iter().map(|(n, t)| (*n, t.clone())).collect();
            let (wake_ready, sock_ready, tap_ready) = {
                let mut fds = Vec::with_capacity(1 + self.sockets.len() + taps.len());
                fds.push(PollFd::new(self.wake.as_fd(), PollFlags::POLLIN));
                for s in &self.sockets {
                    fds.push(PollFd::new(s.fd(), PollFlags::POLLIN));
                }
                for (_, t) in &taps {
                    fds.push(PollFd::new(t.as_fd(), PollFlags::POLLIN));
                }
                let pending_tx = self.tx.iter().any(|t| !t.is_empty());
                let timeout = if pending_tx { 1u16 } else { 500 };
                let _ = poll(&mut fds, PollTimeout::from(timeout));
                let ready = |f: &PollFd<'_>| f.revents().is_some_and(|r| !r.is_empty());
                let wake_ready = ready(&fds[0]);
                let sock_ready: Vec<bool> =
                    fds[1..1 + self.sockets.len()].iter().map(ready).collect();
                let tap_ready: Vec<bool> =
                    fds[1 + self.sockets.len()..].iter().map(ready).collect();
                (wake_ready, sock_ready, tap_ready)
            };
            if wake_ready {
                let mut b = [0u8; 64];
                while self.wake.recv(&mut b).is_ok() {}
            }
            if !self.commands() {
                return;
            }
            for (i, ready) in sock_ready.into_iter().enumerate() {
                if ready {
                    self.receive(i);
                }
            }
            for ((nwid, tap), ready) in taps.iter().zip(tap_ready) {
                if ready {
                    self.read_tap(*nwid, tap);
                }
            }
            self.flush();
            if last_report.elapsed() >= Duration::from_secs(1) {
                last_report = Instant::now();
                let now = self.now();
                self.engine.expire(now);
                let mut a = self.engine.take_activity();
                a.worker = u16::try_from(self.index).unwrap_or(u16::MAX);
                if !a.is_empty() {
                    self.hand_up(Up::Activity(a));
                }
                let udp = self.sockets.iter().map(|s| s.stats()).collect();
                let st = self.engine.stats();
                let drops = self.up_drops;
                self.hand_up(Up::Stats(self.index, st, udp, drops));
            }
        }
    }

    /// Applies queued commands; `false` on shutdown (or when the control side is gone).
    fn commands(&mut self) -> bool {
        loop {
            match self.cmds.try_recv() {
                Ok(Cmd::Tables(t)) => self.tables = t,
                Ok(Cmd::AttachTap(nwid, tap)) => {
                    self.taps.insert(nwid, tap);
                }
                Ok(Cmd::DetachTap(nwid)) => {
                    self.taps.remove(&nwid);
                }
                Ok(Cmd::TapWrite(nwid, frame)) => {
                    // a busy or missing port drops the frame
                    if let Some(t) = self.taps.get(&nwid) {
                        write_plain(t, &frame);
                    }
                }
                Ok(Cmd::Send {
                    local,
                    to,
                    ttl,
                    data,
                }) => {
                    for i in sockets_for(&self.addrs, local, to) {
                        if ttl != 0 {
                            let _ = self.sockets[i].send_ttl(to, ttl, &data);
                        } else {
                            self.tx[i].push(to, &data);
                        }
                    }
                }
                Ok(Cmd::Shutdown) | Err(std_mpsc::TryRecvError::Disconnected) => return false,
                Err(std_mpsc::TryRecvError::Empty) => return true,
            }
        }
    }

    /// Drains socket `i`: batch after batch until it has nothing more.
    fn receive(&mut self, i: usize) {
        for _ in 0..16 {
            let n = match self.sockets[i].recv(&mut self.rx) {
                Ok(n) => n,
                Err(_) => return,
            };
            if n == 0 {
                return;
            }
            let now = self.now();
            let rx = std::mem::replace(&mut self.rx, RxBatch::new(0));
            let batch: Vec<(SocketAddr, &[u8])> = rx.iter().collect();
            let mut verdicts = std::mem::take(&mut self.verdicts);
            self.engine
                .process_rx(&self.tables, now, &batch, &mut verdicts);
            for ((from, data), v) in batch.iter().zip(verdicts.drain(..)) {
                self.verdict(i, *from, data, v);
            }
            drop(batch);
            self.verdicts = verdicts;
            self.flush_coalesced();
            let full = n >= rx.capacity();
            self.rx = rx;
            if !full {
                return;
            }
        }
    }

    fn verdict(&mut self, i: usize, from: SocketAddr, data: &[u8], v: Verdict) {
        match v {
            Verdict::Up => self.hand_up(Up::Datagram {
                local: i as u32,
                from,
                data: data.to_vec(),
            }),
            Verdict::UpPacket(data) => self.hand_up(Up::Packet {
                local: i as u32,
                from,
                data,
            }),
            Verdict::TapWrite { network_id, frame } => {
                if let Some(t) = self.taps.get(&network_id.0) {
                    if t.vnet_hdr() {
                        self.coalesce.entry(network_id.0).or_default().push(&frame);
                    } else {
                        let _ = t.write(&frame);
                    }
                }
            }
            Verdict::Relay {
                local,
                to,
                data,
                ends,
            } => {
                for s in sockets_for(&self.addrs, local, to) {
                    self.tx[s].push(to, &data);
                }
                if let Some((a, b)) = ends {
                    self.hand_up(Up::Relayed(a, b));
                }
            }
            Verdict::Held | Verdict::Drop(_) => {}
        }
    }

    /// Writes the frames merged during a receive batch (super-frames with their headers).
    fn flush_coalesced(&mut self) {
        for (nwid, c) in self.coalesce.iter_mut() {
            if c.is_empty() {
                continue;
            }
            let tap = self.taps.get(nwid);
            for f in c.drain() {
                if let Some(t) = tap {
                    let _ = t.write(&f);
                }
            }
        }
    }

    fn read_tap(&mut self, nwid: u64, tap: &Tap) {
        let mut buf = std::mem::take(&mut self.frame);
        let mut scratch = std::mem::take(&mut self.segment);
        let mut ups = Vec::new();
        let now = self.now();
        for _ in 0..TAP_BATCH {
            let n = match tap.read(&mut buf) {
                Ok(n) => n,
                Err(_) => break,
            };
            let mut out = std::mem::take(&mut self.datagrams);
            let (engine, tables, tx, addrs) =
                (&mut self.engine, &self.tables, &mut self.tx, &self.addrs);
            let mut one = |frame: &[u8]| match engine.process_tap(
                tables,
                now,
                NetworkId(nwid),
                frame,
                &mut out,
            ) {
                TapVerdict::Sent => {
                    for d in out.drain(..) {
                        for s in sockets_for(addrs, d.local, d.to) {
                            tx[s].push(d.to, &d.data);
                        }
                    }
                }
                TapVerdict::Up => ups.push(Up::TapFrame(nwid, frame.to_vec())),
                TapVerdict::Drop(_) => {}
            };
            if tap.vnet_hdr() {
                // super-frames are cut into MTU-sized frames, partial checksums completed:
                // what standard peers expect
                let Some(hdr) = VnetHdr::parse(&buf[..n]) else {
                    continue;
                };
                let frame = &mut buf[offload::VNET_HDR_LEN..n];
                let _ = offload::segment(&hdr, frame, &mut scratch, &mut one);
            } else {
                one(&buf[..n]);
            }
            self.datagrams = out;
        }
        self.frame = buf;
        self.segment = scratch;
        for u in ups {
            self.hand_up(u);
        }
    }

    /// Sends what is queued; what the kernel cannot take now stays for the next round.
    fn flush(&mut self) {
        for (s, tx) in self.sockets.iter_mut().zip(self.tx.iter_mut()) {
            if !tx.is_empty() {
                let _ = s.send(tx);
            }
        }
    }
}

/// Writes a plain frame (no offload) to a TAP, with an all-zero `virtio_net_hdr` in front when
/// the TAP has one.
fn write_plain(t: &Tap, frame: &[u8]) {
    if t.vnet_hdr() {
        let mut v = Vec::with_capacity(offload::VNET_HDR_LEN + frame.len());
        v.extend_from_slice(&VnetHdr::default().to_bytes());
        v.extend_from_slice(frame);
        let _ = t.write(&v);
    } else {
        let _ = t.write(frame);
    }
}

/// Which sockets a datagram goes out on: its local socket if it has the right family, else all
/// sockets of the family (`u32::MAX`: probes without a socket) or the first one.
pub(crate) fn sockets_for(addrs: &[SocketAddr], local: u32, to: SocketAddr) -> Vec<usize> {
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
