//! Batched UDP I/O for the data plane (Linux): one socket, several back-ends behind one trait.
//!
//! * `io_uring`: a multishot `recvmsg` over a ring of provided buffers (one submission keeps
//!   receiving), and linked `sendmsg`s with UDP GSO, one `io_uring_enter` per send batch.
//! * `mmsg`: `recvmmsg` / `sendmmsg` with UDP GRO on receive and UDP GSO on send.
//! * `plain`: one `recvmsg` / `sendmsg` per datagram (any kernel).
//! * `af_xdp`: AF_XDP sockets (copy mode) receive the datagrams for the bound address and port,
//!   steered by a small XDP program on the interface that owns the address; sending and
//!   everything the program leaves to the kernel go through the ordinary socket, as `mmsg`.
//!   Needs root (or `CAP_BPF` + `CAP_NET_ADMIN`) and a specific, non-loopback local address.
//!
//! [`open`] binds the socket the way the daemon always has (IPv6 sockets IPv6-only, large
//! buffers, non-blocking) and picks the best back-end that works here, saying in [`Probe`] why
//! each better one was passed over. Every back-end is non-blocking: wait for [`UdpIo::fd`] to be
//! readable, then call [`UdpIo::recv`] until it returns 0.
//!
//! Batches own their memory: an [`RxBatch`] has fixed 64 KiB slots (a GRO super-datagram can be
//! that large; untouched pages cost nothing) and yields datagrams already split at the GRO
//! segment size; a [`TxBatch`] is one growing byte buffer plus descriptors.

mod mmsg;
mod plain;
mod sys;
mod uring;
mod xdp;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::BorrowedFd;
use std::str::FromStr;

/// The size of one receive slot: the largest UDP payload, GRO super-datagrams included.
pub const RX_SLOT_SIZE: usize = 65_536;

/// A UDP I/O back-end, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Backend {
    /// AF_XDP sockets receive (copy mode, steered by an XDP program); the kernel sends.
    AfXdp,
    /// io_uring: multishot `recvmsg` with a provided-buffer ring, `sendmsg` with GSO.
    IoUring,
    /// `recvmmsg` / `sendmmsg` with UDP GRO and GSO.
    Mmsg,
    /// One system call per datagram.
    Plain,
}

impl Backend {
    /// All back-ends, best first (the probing order of [`open`]).
    pub const ALL: [Backend; 4] = [
        Backend::AfXdp,
        Backend::IoUring,
        Backend::Mmsg,
        Backend::Plain,
    ];

    /// The name used in configuration and logs.
    pub fn name(self) -> &'static str {
        match self {
            Backend::AfXdp => "af_xdp",
            Backend::IoUring => "io_uring",
            Backend::Mmsg => "mmsg",
            Backend::Plain => "plain",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown back-end name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown UDP back-end {0:?} (expected af_xdp, io_uring, mmsg or plain)")]
#[non_exhaustive]
pub struct UnknownBackend(pub String);

impl FromStr for Backend {
    type Err = UnknownBackend;

    fn from_str(s: &str) -> Result<Backend, UnknownBackend> {
        Backend::ALL
            .into_iter()
            .find(|b| b.name() == s)
            .ok_or_else(|| UnknownBackend(s.to_owned()))
    }
}

/// What [`open`] chose, and why each better back-end was not chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// The back-end in use.
    pub chosen: Backend,
    /// Each back-end better than `chosen`, best first, with the reason it was passed over.
    pub skipped: Vec<(Backend, String)>,
    /// What the chosen back-end set up, where there is more to say than its name (AF_XDP: the
    /// interface, the XDP mode and the queue count); empty otherwise.
    pub detail: String,
}

/// Where the AF_XDP back-end attaches its XDP program.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum XdpMode {
    /// Native (in the driver) where the driver has it, else generic.
    #[default]
    Auto,
    /// Generic XDP (in the kernel's receive path; every driver, slower).
    Generic,
    /// Native XDP only.
    Native,
}

/// How a UDP socket is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Use exactly this back-end; [`open`] fails if it is unavailable.
    pub prefer: Option<Backend>,
    /// `SO_RCVBUF` asked for (best effort; 0 keeps the default).
    pub recv_buffer: usize,
    /// `SO_SNDBUF` asked for (best effort; 0 keeps the default).
    pub send_buffer: usize,
    /// The most messages per system call (and the io_uring buffer count, doubled).
    pub batch: usize,
    /// Receive with UDP GRO (mmsg, io_uring) where the kernel has it.
    pub gro: bool,
    /// Send with UDP GSO (mmsg, io_uring) where the kernel has it.
    pub gso: bool,
    /// `SO_REUSEPORT` (several sockets, one per worker, on one port).
    pub reuse_port: bool,
    /// Where the AF_XDP back-end attaches its program.
    pub xdp_mode: XdpMode,
}

impl Default for Options {
    /// What the daemon uses: 4 MiB buffers, batches of 64, GRO and GSO on.
    fn default() -> Options {
        Options {
            prefer: None,
            recv_buffer: 4 << 20,
            send_buffer: 4 << 20,
            batch: 64,
            gro: true,
            gso: true,
            reuse_port: false,
            xdp_mode: XdpMode::Auto,
        }
    }
}

/// Counters of one socket since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UdpStats {
    /// Datagrams received (GRO super-datagrams counted per segment).
    pub rx_datagrams: u64,
    /// Payload bytes received.
    pub rx_bytes: u64,
    /// Datagrams sent (GSO super-datagrams counted per segment).
    pub tx_datagrams: u64,
    /// Payload bytes sent.
    pub tx_bytes: u64,
    /// Receive system calls (`recvmsg`, `recvmmsg`, `io_uring_enter`, eventfd reads).
    pub rx_syscalls: u64,
    /// Send system calls (`sendmsg`, `sendmmsg`, `io_uring_enter`).
    pub tx_syscalls: u64,
    /// GRO super-datagrams received (more than one segment).
    pub gro_batches: u64,
    /// GSO super-datagrams sent (more than one segment).
    pub gso_batches: u64,
    /// Datagrams the kernel dropped on the socket's receive queue (SO_RXQ_OVFL), as last
    /// reported: the kernel's own running count, updated with each received datagram (so drops
    /// show once a later datagram is queued; a dropped GRO super-datagram counts once).
    pub rx_drops: u64,
    /// Received datagrams cut short (larger than a slot; not delivered).
    pub rx_truncated: u64,
    /// Datagrams dropped because their send failed (unreachable destination, refused, ...).
    pub tx_errors: u64,
}

impl UdpStats {
    fn note_rx(&mut self, meta: &sys::RxMeta, truncated: bool) {
        if let Some(d) = meta.drops {
            self.rx_drops = self.rx_drops.max(u64::from(d));
        }
        if truncated {
            self.rx_truncated += 1;
        }
    }
}

/// A non-blocking, batched UDP socket.
pub trait UdpIo: Send + fmt::Debug {
    /// Which back-end this is.
    fn backend(&self) -> Backend;
    /// The bound address (with the port the kernel chose for port 0).
    fn local_addr(&self) -> SocketAddr;
    /// Readable when [`UdpIo::recv`] may have something: the socket, or for io_uring an eventfd
    /// signalled on completions (level-triggered wait via epoll, poll or tokio's `AsyncFd`).
    fn fd(&self) -> BorrowedFd<'_>;
    /// Fills `rx` (cleared first) with as many datagrams as are ready, up to its capacity;
    /// `Ok(0)` when none are. A full batch means more may be waiting: call again before waiting.
    fn recv(&mut self, rx: &mut RxBatch) -> io::Result<usize>;
    /// Sends the queued datagrams, coalescing runs to one destination with UDP GSO when
    /// enabled; returns how many were sent. Sent ones and ones whose destination failed
    /// (counted in [`UdpStats::tx_errors`]) leave the queue; when the socket buffer is full the
    /// rest stay queued, to be sent after the socket is writable again.
    fn send(&mut self, tx: &mut TxBatch) -> io::Result<usize>;
    /// Sends one datagram with IP TTL (IPv6 hop limit) `ttl`, immediately.
    fn send_ttl(&mut self, to: SocketAddr, ttl: u8, data: &[u8]) -> io::Result<()>;
    /// The counters so far.
    fn stats(&self) -> UdpStats;
}

/// Opens a UDP socket on `addr`: with `opts.prefer` exactly that back-end (an error if it is
/// unavailable), else the best one that works here, probing AF_XDP, io_uring, mmsg, plain.
pub fn open(addr: SocketAddr, opts: &Options) -> io::Result<(Box<dyn UdpIo>, Probe)> {
    let mut skipped = Vec::new();
    let candidates: Vec<Backend> = match opts.prefer {
        Some(b) => {
            for better in Backend::ALL.into_iter().filter(|x| *x < b) {
                skipped.push((better, format!("not requested ({b} was)")));
            }
            vec![b]
        }
        None => Backend::ALL.to_vec(),
    };
    let mut sock = Some(sys::bind(addr, opts)?);
    for backend in candidates {
        let s = match sock.take() {
            Some(s) => s,
            None => sys::bind(addr, opts)?,
        };
        let mut detail = String::new();
        let attempt: Result<Box<dyn UdpIo>, (Option<socket2::Socket>, String)> = match backend {
            Backend::AfXdp => xdp::XdpIo::new(s, opts).map(|io| {
                detail = io.describe();
                Box::new(io) as Box<dyn UdpIo>
            }),
            Backend::IoUring => uring::UringIo::new(s, opts)
                .map(|io| Box::new(io) as Box<dyn UdpIo>)
                .map_err(|(s, why)| (Some(s), why)),
            Backend::Mmsg => mmsg::MmsgIo::new(s, opts)
                .map(|io| Box::new(io) as Box<dyn UdpIo>)
                .map_err(|e| (None, e.to_string())),
            Backend::Plain => plain::PlainIo::new(s)
                .map(|io| Box::new(io) as Box<dyn UdpIo>)
                .map_err(|e| (None, e.to_string())),
        };
        match attempt {
            Ok(io) => {
                let probe = Probe {
                    chosen: backend,
                    skipped,
                    detail,
                };
                return Ok((io, probe));
            }
            Err((back, why)) => {
                sock = back;
                if opts.prefer.is_some() {
                    return Err(io::Error::new(
                        io::ErrorKind::Unsupported,
                        format!("UDP back-end {backend} unavailable: {why}"),
                    ));
                }
                skipped.push((backend, why));
            }
        }
    }
    Err(io::Error::other("no UDP back-end available"))
}

/// The bound address of a socket.
fn local_addr_of(sock: &socket2::Socket) -> io::Result<SocketAddr> {
    sock.local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("socket has no IP address"))
}

/// One received message in a slot of an [`RxBatch`].
#[derive(Debug, Clone, Copy)]
struct RxMsg {
    from: SocketAddr,
    len: usize,
    /// The GRO segment size; `len` when the message is a single datagram.
    segment: usize,
}

/// Received datagrams, in owned slots of [`RX_SLOT_SIZE`] bytes (one per message the kernel
/// returns; a GRO super-datagram fills one slot and yields several datagrams).
pub struct RxBatch {
    buf: Vec<u8>,
    slots: usize,
    msgs: Vec<RxMsg>,
    datagrams: usize,
}

impl fmt::Debug for RxBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RxBatch")
            .field("slots", &self.slots)
            .field("messages", &self.msgs.len())
            .field("datagrams", &self.datagrams)
            .finish()
    }
}

impl RxBatch {
    /// A batch of `slots` receive slots (at least one).
    pub fn new(slots: usize) -> RxBatch {
        let slots = slots.max(1);
        RxBatch {
            // Zeroed allocation: pages are only backed once the kernel writes into them.
            buf: vec![0; slots * RX_SLOT_SIZE],
            slots,
            msgs: Vec::with_capacity(slots),
            datagrams: 0,
        }
    }

    /// How many messages (slots) one receive can fill.
    pub fn capacity(&self) -> usize {
        self.slots
    }

    /// The number of datagrams received (GRO super-datagrams split).
    pub fn len(&self) -> usize {
        self.datagrams
    }

    /// Whether nothing was received.
    pub fn is_empty(&self) -> bool {
        self.datagrams == 0
    }

    /// Empties the batch (receives do this first).
    pub fn clear(&mut self) {
        self.msgs.clear();
        self.datagrams = 0;
    }

    /// Each datagram with its source, in arrival order, GRO super-datagrams split at their
    /// segment size.
    pub fn iter(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> + '_ {
        self.msgs.iter().enumerate().flat_map(move |(i, m)| {
            let start = i * RX_SLOT_SIZE;
            self.buf[start..start + m.len]
                .chunks(m.segment.max(1))
                .map(move |d| (m.from, d))
        })
    }

    fn slots_used(&self) -> usize {
        self.msgs.len()
    }

    /// The next free slot.
    fn next_slot(&mut self) -> &mut [u8] {
        let start = self.msgs.len() * RX_SLOT_SIZE;
        &mut self.buf[start..start + RX_SLOT_SIZE]
    }

    /// The start of the slot memory (for vectored receives that fill several slots at once).
    fn base_ptr(&mut self) -> *mut u8 {
        self.buf.as_mut_ptr()
    }

    /// Records that the next free slot holds `len` bytes from `from`, coalesced by GRO at
    /// `segment` bytes when given.
    fn commit_slot(
        &mut self,
        from: SocketAddr,
        len: usize,
        segment: Option<usize>,
        stats: &mut UdpStats,
    ) {
        debug_assert!(self.msgs.len() < self.slots && len <= RX_SLOT_SIZE);
        let segment = match segment {
            Some(s) if s > 0 && s < len => s,
            _ => len,
        };
        let count = if len == 0 { 1 } else { len.div_ceil(segment) };
        if count > 1 {
            stats.gro_batches += 1;
        }
        stats.rx_datagrams += count as u64;
        stats.rx_bytes += len as u64;
        self.datagrams += count;
        self.msgs.push(RxMsg { from, len, segment });
    }
}

/// One queued datagram of a [`TxBatch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TxItem {
    to: SocketAddr,
    off: usize,
    len: usize,
}

/// Datagrams waiting to be sent; the memory is reused once the queue empties.
#[derive(Debug, Default)]
pub struct TxBatch {
    data: Vec<u8>,
    items: Vec<TxItem>,
    /// Items before this index have left the queue.
    head: usize,
}

impl TxBatch {
    /// An empty queue.
    pub fn new() -> TxBatch {
        TxBatch::default()
    }

    /// Queues one datagram to `to`.
    pub fn push(&mut self, to: SocketAddr, datagram: &[u8]) {
        let off = self.data.len();
        self.data.extend_from_slice(datagram);
        self.items.push(TxItem {
            to,
            off,
            len: datagram.len(),
        });
    }

    /// The number of datagrams still queued.
    pub fn len(&self) -> usize {
        self.items.len() - self.head
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops everything queued.
    pub fn clear(&mut self) {
        self.data.clear();
        self.items.clear();
        self.head = 0;
    }

    /// The queued datagrams, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> + '_ {
        self.pending().iter().map(|i| (i.to, self.item_bytes(i)))
    }

    fn pending(&self) -> &[TxItem] {
        &self.items[self.head..]
    }

    fn item_bytes(&self, item: &TxItem) -> &[u8] {
        &self.data[item.off..item.off + item.len]
    }

    /// The bytes of `count` consecutive pending datagrams from pending index `start` (they are
    /// contiguous in memory).
    fn group_bytes(&self, start: usize, count: usize) -> &[u8] {
        let items = self.pending();
        let first = items[start];
        let last = items[start + count - 1];
        &self.data[first.off..last.off + last.len]
    }

    /// Removes the `n` oldest datagrams from the queue.
    fn consume(&mut self, n: usize) {
        self.head = (self.head + n).min(self.items.len());
        if self.head == self.items.len() {
            self.clear();
        }
    }
}

/// Accounts for the groups of a send that went out (shared by mmsg and io_uring).
fn note_sent(stats: &mut UdpStats, tx: &TxBatch, group: &sys::Group) -> usize {
    let bytes = tx.group_bytes(group.start, group.count).len();
    stats.tx_datagrams += group.count as u64;
    stats.tx_bytes += bytes as u64;
    if group.count > 1 {
        stats.gso_batches += 1;
    }
    group.count
}

#[cfg(test)]
mod tests;
