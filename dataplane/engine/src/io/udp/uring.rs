//! The `io_uring` back-end. Receive: one multishot `IORING_OP_RECVMSG` over a ring of provided
//! buffers (`IORING_REGISTER_PBUF_RING`, Linux 5.19; multishot recvmsg, 6.0) keeps receiving
//! without further submissions; each completion names the buffer that holds the header, the
//! source address, the control messages (UDP_GRO, SO_RXQ_OVFL) and the payload, which is copied
//! into the caller's [`RxBatch`] before the buffer goes back to the ring. Completions signal an
//! eventfd, which is the back-end's readiness descriptor. Send: a second ring, one linked chain
//! of `sendmsg`s (UDP GSO per coalesced run, `MSG_DONTWAIT`) per `io_uring_enter`; a failure
//! cancels the rest of the chain, which is resubmitted after the failed datagram is dealt with.
//!
//! Registered (fixed) buffers are not used: `sendmsg` cannot take them before Linux 6.x's
//! zero-copy variants, and receive buffers are already registered as the provided-buffer ring.
#![allow(unsafe_code)]

use std::collections::VecDeque;
use std::io;
use std::mem;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::{BufRingEntry, Fd, RecvMsgOut};
use io_uring::{IoUring, cqueue, opcode, squeue};

use super::sys::{self, CMSG_BUF, Group, SendFailure, SendScratch};
use super::{Backend, Options, RX_SLOT_SIZE, RxBatch, TxBatch, UdpIo, UdpStats};

/// `user_data` of the multishot receive.
const RECV_TAG: u64 = u64::MAX;
/// `user_data` of its cancellation.
const CANCEL_TAG: u64 = u64::MAX - 1;
/// The provided-buffer group id.
const BGID: u16 = 0;
/// Bytes before the payload in a provided buffer: `io_uring_recvmsg_out`, the name field
/// (a `sockaddr_in6`, rounded up) and the control field.
const BUF_HEADER: usize = 16 + 32 + CMSG_BUF;

/// An anonymous private mapping (page-aligned, zeroed, lazily backed).
struct Mmap {
    ptr: *mut u8,
    len: usize,
}

impl Mmap {
    fn new(len: usize) -> io::Result<Mmap> {
        // SAFETY: a fresh anonymous mapping; no existing memory is affected.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mmap {
            ptr: ptr.cast(),
            len,
        })
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: the mapping was created by `Mmap::new` with this length and is unmapped once.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// The provided-buffer ring: `entries` buffers of `buf_size` bytes, handed to the kernel
/// through a ring of `io_uring_buf` descriptors whose tail we advance.
struct BufRing {
    ring: Mmap,
    mem: Mmap,
    entries: u16,
    buf_size: usize,
    /// Our tail (published to the kernel by `publish`).
    tail: u16,
}

impl BufRing {
    fn new(entries: u16, buf_size: usize) -> io::Result<BufRing> {
        let ring = Mmap::new(usize::from(entries) * size_of::<BufRingEntry>())?;
        let mem = Mmap::new(usize::from(entries) * buf_size)?;
        let mut br = BufRing {
            ring,
            mem,
            entries,
            buf_size,
            tail: 0,
        };
        for bid in 0..entries {
            br.give(bid);
        }
        br.publish();
        Ok(br)
    }

    fn base(&self) -> *mut BufRingEntry {
        self.ring.ptr.cast()
    }

    /// Queues buffer `bid` for the kernel (visible after `publish`).
    fn give(&mut self, bid: u16) {
        let idx = usize::from(self.tail & (self.entries - 1));
        // SAFETY: `idx < entries`, inside the ring mapping; the kernel only reads entries
        // between its head and the published tail, and this one is past the tail.
        unsafe {
            let e = &mut *self.base().add(idx);
            e.set_addr(self.mem.ptr.add(usize::from(bid) * self.buf_size) as u64);
            e.set_len(self.buf_size as u32);
            e.set_bid(bid);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes the queued buffers visible to the kernel.
    fn publish(&self) {
        // SAFETY: the tail field lies in the ring mapping (entry 0's reserved field), is
        // 2-aligned, and is only written by us; the kernel reads it atomically.
        unsafe {
            AtomicU16::from_ptr(BufRingEntry::tail(self.base()).cast_mut())
                .store(self.tail, Ordering::Release);
        }
    }

    /// The bytes of buffer `bid` that the kernel filled (`len` of them).
    fn filled(&self, bid: u16, len: usize) -> &[u8] {
        assert!(bid < self.entries && len <= self.buf_size);
        // SAFETY: buffer `bid` is inside the mapping; the kernel completed a receive into it
        // and no longer owns it (it is ours until `give`).
        unsafe {
            std::slice::from_raw_parts(self.mem.ptr.add(usize::from(bid) * self.buf_size), len)
        }
    }
}

/// A UDP socket driven through io_uring.
pub(super) struct UringIo {
    // Field order: the rings are torn down (after `Drop` cancelled the receive) before the
    // buffer memory goes.
    recv_ring: IoUring,
    send_ring: IoUring,
    event: OwnedFd,
    sock: socket2::Socket,
    local: SocketAddr,
    v6: bool,
    gso: bool,
    batch: usize,
    bufs: BufRing,
    /// The template of the multishot receive (only its name and control lengths are used).
    msghdr: Box<libc::msghdr>,
    armed: bool,
    /// Receive completions taken from the ring but not yet processed: (result, flags).
    backlog: VecDeque<(i32, u32)>,
    stats: UdpStats,
    tx: SendScratch,
    groups: Vec<Group>,
    results: Vec<Option<i32>>,
}

// SAFETY: the raw pointers (mappings, the msghdr template, scratch headers) refer to memory
// owned by this value and are only used through `&mut self`; the kernel side is not tied to a
// thread (the rings are not created with SINGLE_ISSUER).
unsafe impl Send for UringIo {}

impl std::fmt::Debug for UringIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringIo")
            .field("local", &self.local)
            .field("buffers", &self.bufs.entries)
            .field("armed", &self.armed)
            .field("gso", &self.gso)
            .finish()
    }
}

/// Why the kernel refused to create a ring, in words.
fn refusal(e: &io::Error) -> String {
    let sysctl = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()
        .map(|s| s.trim().to_owned());
    match (e.raw_os_error(), sysctl.as_deref()) {
        (Some(libc::EPERM), Some(v)) if v != "0" => {
            format!("io_uring disabled by kernel.io_uring_disabled={v}")
        }
        (Some(libc::EPERM), _) => {
            "io_uring_setup not permitted (EPERM: seccomp or container policy)".to_owned()
        }
        (Some(libc::ENOSYS), _) => "kernel without io_uring (ENOSYS)".to_owned(),
        _ => format!("io_uring_setup failed: {e}"),
    }
}

impl UringIo {
    /// Sets up the rings, buffers and the multishot receive on `sock`; on failure gives the
    /// socket back with the reason.
    pub(super) fn new(
        sock: socket2::Socket,
        opts: &Options,
    ) -> Result<UringIo, (socket2::Socket, String)> {
        match UringIo::setup(&sock, opts) {
            Ok(parts) => Ok(parts.finish(sock)),
            Err(why) => Err((sock, why)),
        }
    }

    fn setup(sock: &socket2::Socket, opts: &Options) -> Result<Parts, String> {
        let batch = opts.batch.clamp(1, 1024);
        let recv_ring = IoUring::builder()
            .setup_cqsize(4096)
            .build(8)
            .map_err(|e| refusal(&e))?;
        let send_ring = IoUring::builder()
            .build(batch.next_power_of_two().max(8) as u32)
            .map_err(|e| refusal(&e))?;
        let mut probe = io_uring::Probe::new();
        recv_ring
            .submitter()
            .register_probe(&mut probe)
            .map_err(|e| format!("IORING_REGISTER_PROBE failed (kernel before 5.6?): {e}"))?;
        for (code, name) in [
            (opcode::RecvMsg::CODE, "IORING_OP_RECVMSG"),
            (opcode::SendMsg::CODE, "IORING_OP_SENDMSG"),
            (opcode::AsyncCancel::CODE, "IORING_OP_ASYNC_CANCEL"),
        ] {
            if !probe.is_supported(code) {
                return Err(format!("kernel io_uring lacks {name}"));
            }
        }

        // SAFETY: eventfd creates a new descriptor, owned below.
        let efd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if efd < 0 {
            return Err(format!("eventfd: {}", io::Error::last_os_error()));
        }
        // SAFETY: `efd` is a fresh descriptor that nothing else owns.
        let event = unsafe { OwnedFd::from_raw_fd(efd) };
        recv_ring
            .submitter()
            .register_eventfd(event.as_raw_fd())
            .map_err(|e| format!("IORING_REGISTER_EVENTFD failed: {e}"))?;

        let entries = u16::try_from((batch * 2).next_power_of_two().clamp(64, 4096))
            .expect("at most 4096 buffers");
        let bufs = BufRing::new(entries, BUF_HEADER + RX_SLOT_SIZE)
            .map_err(|e| format!("buffer memory: {e}"))?;
        // SAFETY: the ring mapping holds `entries` descriptors and lives in `Parts`/`UringIo`
        // until `Drop` unregisters it (or the ring is closed, after the receive is cancelled).
        unsafe {
            recv_ring.submitter().register_buf_ring_with_flags(
                bufs.ring.ptr as u64,
                entries,
                BGID,
                0,
            )
        }
        .map_err(|e| format!("provided-buffer rings unsupported (Linux 5.19+): {e}"))?;

        let fd = sock.as_raw_fd();
        let _ = sys::set_gro(fd, opts.gro);
        let gso = opts.gso && sys::gso_supported(fd);
        // SAFETY: all-zero is a valid msghdr; only the two lengths are read by the kernel
        // (for the multishot layout) and by `RecvMsgOut::parse`.
        let mut msghdr: Box<libc::msghdr> = Box::new(unsafe { mem::zeroed() });
        msghdr.msg_namelen = 32;
        msghdr.msg_controllen = CMSG_BUF as _;
        let local = super::local_addr_of(sock).map_err(|e| e.to_string())?;
        let mut parts = Parts {
            recv_ring,
            send_ring,
            event,
            bufs,
            msghdr,
            gso,
            batch,
            local,
            backlog: VecDeque::new(),
        };
        parts.arm(fd)?;
        Ok(parts)
    }

    /// Handles one receive completion: copies the datagram into `rx` and recycles the buffer.
    fn complete(&mut self, res: i32, flags: u32, rx: &mut RxBatch) -> Option<io::Error> {
        if !cqueue::more(flags) {
            self.armed = false;
        }
        let bid = cqueue::buffer_select(flags);
        let mut error = None;
        if res < 0 {
            match -res {
                libc::ENOBUFS | libc::ECANCELED => {}
                e => error = Some(io::Error::from_raw_os_error(e)),
            }
        } else if let Some(bid) = bid {
            let buf = self
                .bufs
                .filled(bid, (res as usize).min(self.bufs.buf_size));
            if let Ok(out) = RecvMsgOut::parse(buf, &self.msghdr) {
                let meta = sys::parse_cmsgs(out.control_data());
                let truncated = out.is_payload_truncated();
                self.stats.note_rx(&meta, truncated);
                let from = sys::decode_addr(out.name_data());
                if let (Some(from), false) = (from, truncated) {
                    let payload = out.payload_data();
                    let len = payload.len().min(RX_SLOT_SIZE);
                    rx.next_slot()[..len].copy_from_slice(&payload[..len]);
                    rx.commit_slot(from, len, meta.gro_segment, &mut self.stats);
                }
            }
        }
        if let Some(bid) = bid {
            self.bufs.give(bid);
        }
        error
    }
}

/// A set-up ring before it gets its socket.
struct Parts {
    recv_ring: IoUring,
    send_ring: IoUring,
    event: OwnedFd,
    bufs: BufRing,
    msghdr: Box<libc::msghdr>,
    gso: bool,
    batch: usize,
    local: SocketAddr,
    backlog: VecDeque<(i32, u32)>,
}

impl Parts {
    /// Submits the multishot receive and checks that the kernel accepted it (an old kernel
    /// fails it at once with EINVAL).
    fn arm(&mut self, fd: i32) -> Result<(), String> {
        arm(&mut self.recv_ring, fd, &self.msghdr).map_err(|e| format!("submit: {e}"))?;
        let mut cq = self.recv_ring.completion();
        for cqe in &mut cq {
            if cqe.user_data() != RECV_TAG {
                continue;
            }
            if cqe.result() < 0 && !cqueue::more(cqe.flags()) && cqe.result() != -libc::ENOBUFS {
                let e = io::Error::from_raw_os_error(-cqe.result());
                return Err(format!("multishot recvmsg refused (Linux 6.0+): {e}"));
            }
            self.backlog.push_back((cqe.result(), cqe.flags()));
        }
        Ok(())
    }

    fn finish(self, sock: socket2::Socket) -> UringIo {
        let armed = !self.backlog.iter().any(|&(_, flags)| !cqueue::more(flags));
        UringIo {
            recv_ring: self.recv_ring,
            send_ring: self.send_ring,
            event: self.event,
            v6: self.local.is_ipv6(),
            local: self.local,
            sock,
            gso: self.gso,
            batch: self.batch,
            bufs: self.bufs,
            msghdr: self.msghdr,
            armed,
            backlog: self.backlog,
            stats: UdpStats::default(),
            tx: SendScratch::new(),
            groups: Vec::new(),
            results: Vec::new(),
        }
    }
}

/// Pushes and submits the multishot receive.
fn arm(ring: &mut IoUring, fd: i32, msghdr: &libc::msghdr) -> io::Result<()> {
    let sqe = opcode::RecvMsgMulti::new(Fd(fd), msghdr, BGID)
        .build()
        .user_data(RECV_TAG);
    // SAFETY: the msghdr outlives the request (boxed in the back-end, which cancels the
    // request before dropping it); the kernel reads only its lengths.
    unsafe { ring.submission().push(&sqe) }.map_err(|_| io::Error::other("SQ full"))?;
    ring.submit()?;
    Ok(())
}

impl UdpIo for UringIo {
    fn backend(&self) -> Backend {
        Backend::IoUring
    }

    fn local_addr(&self) -> SocketAddr {
        self.local
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.event.as_fd()
    }

    fn recv(&mut self, rx: &mut RxBatch) -> io::Result<usize> {
        rx.clear();
        // Reset the readiness first: completions posted from now on signal it again.
        let mut counter = [0u8; 8];
        // SAFETY: reads 8 bytes into a local array from our non-blocking eventfd.
        unsafe { libc::read(self.event.as_raw_fd(), counter.as_mut_ptr().cast(), 8) };
        self.stats.rx_syscalls += 1;
        let mut error = None;
        let mut rearmed = false;
        let mut more_pending;
        loop {
            let room = rx.capacity() - rx.slots_used();
            {
                let mut cq = self.recv_ring.completion();
                while self.backlog.len() < room {
                    let Some(cqe) = cq.next() else { break };
                    if cqe.user_data() == RECV_TAG {
                        self.backlog.push_back((cqe.result(), cqe.flags()));
                    }
                }
                more_pending = !cq.is_empty();
            }
            while rx.slots_used() < rx.capacity() {
                let Some((res, flags)) = self.backlog.pop_front() else {
                    break;
                };
                if let Some(e) = self.complete(res, flags, rx) {
                    error.get_or_insert(e);
                }
            }
            self.bufs.publish();
            if rx.slots_used() == rx.capacity() || self.armed || rearmed {
                break;
            }
            // The multishot receive ended (out of buffers, or an error): buffers are back,
            // start it again; data already queued completes inline.
            arm(&mut self.recv_ring, self.sock.as_raw_fd(), &self.msghdr)?;
            self.stats.rx_syscalls += 1;
            self.armed = true;
            rearmed = true;
        }
        if more_pending || !self.backlog.is_empty() {
            // Keep the descriptor readable for what is left in the ring.
            let one = 1u64.to_ne_bytes();
            // SAFETY: writes 8 bytes from a local array to our eventfd.
            unsafe { libc::write(self.event.as_raw_fd(), one.as_ptr().cast(), 8) };
        }
        match error {
            Some(e) if rx.is_empty() => Err(e),
            _ => Ok(rx.len()),
        }
    }

    fn send(&mut self, tx: &mut TxBatch) -> io::Result<usize> {
        let fd = self.sock.as_raw_fd();
        let flags = (libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) as u32;
        let mut sent = 0;
        let max = self
            .batch
            .min(self.send_ring.params().sq_entries() as usize);
        while !tx.is_empty() {
            sys::groups(tx, self.gso, max, &mut self.groups);
            self.tx.fill(tx, &self.groups, self.v6);
            let n = self.groups.len();
            {
                let mut sq = self.send_ring.submission();
                for g in 0..n {
                    let mut sqe = opcode::SendMsg::new(Fd(fd), self.tx.msghdr(g))
                        .flags(flags)
                        .build()
                        .user_data(g as u64);
                    if g + 1 < n {
                        sqe = sqe.flags(squeue::Flags::IO_LINK);
                    }
                    // SAFETY: the headers and everything they point at (scratch and `tx`)
                    // stay untouched until all `n` completions are reaped below.
                    unsafe { sq.push(&sqe) }.map_err(|_| io::Error::other("SQ full"))?;
                }
            }
            self.results.clear();
            self.results.resize(n, None);
            let mut reaped = 0;
            while reaped < n {
                self.stats.tx_syscalls += 1;
                match self.send_ring.submit_and_wait(n - reaped) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
                for cqe in self.send_ring.completion() {
                    if let Some(slot) = self.results.get_mut(cqe.user_data() as usize) {
                        *slot = Some(cqe.result());
                        reaped += 1;
                    }
                }
            }
            let mut consumed = 0;
            let mut stop = false;
            for g in 0..n {
                let group = self.groups[g];
                let res = self.results[g].unwrap_or(-libc::ECANCELED);
                if res >= 0 {
                    sent += super::note_sent(&mut self.stats, tx, &group);
                    consumed += group.count;
                    continue;
                }
                if res == -libc::ECANCELED {
                    break; // after a failure in the chain: resubmitted next round
                }
                let e = io::Error::from_raw_os_error(-res);
                match sys::classify(&e, group.count > 1) {
                    SendFailure::Again => stop = true,
                    SendFailure::Retry => {}
                    SendFailure::Drop => {
                        self.stats.tx_errors += group.count as u64;
                        consumed += group.count;
                    }
                    SendFailure::Unsegment => {
                        let (ok, dropped, again) = sys::send_unsegmented(fd, tx, &group, self.v6);
                        self.stats.tx_syscalls += (ok + dropped + usize::from(again)) as u64;
                        let bytes: usize = tx.pending()[group.start..group.start + ok]
                            .iter()
                            .map(|i| i.len)
                            .sum();
                        self.stats.tx_datagrams += ok as u64;
                        self.stats.tx_bytes += bytes as u64;
                        self.stats.tx_errors += dropped as u64;
                        sent += ok;
                        consumed += ok + dropped;
                        stop = again;
                    }
                }
                break;
            }
            tx.consume(consumed);
            if stop {
                break;
            }
        }
        Ok(sent)
    }

    fn send_ttl(&mut self, to: SocketAddr, ttl: u8, data: &[u8]) -> io::Result<()> {
        sys::send_ttl_counted(
            &mut self.stats,
            self.sock.as_raw_fd(),
            self.v6,
            to,
            ttl,
            data,
        )
    }

    fn stats(&self) -> UdpStats {
        self.stats
    }
}

impl Drop for UringIo {
    fn drop(&mut self) {
        // Stop the multishot receive so the kernel no longer writes into the buffers, then
        // take the buffer ring back; only then may the memory go.
        let mut stopped = !self.armed;
        if !stopped {
            let sqe = opcode::AsyncCancel::new(RECV_TAG)
                .build()
                .user_data(CANCEL_TAG);
            // SAFETY: a cancel request carries no pointers.
            let pushed = unsafe { self.recv_ring.submission().push(&sqe) }.is_ok();
            for _ in 0..100 {
                if !pushed || self.recv_ring.submit_and_wait(1).is_err() {
                    break;
                }
                for cqe in self.recv_ring.completion() {
                    if cqe.user_data() == RECV_TAG && !cqueue::more(cqe.flags()) {
                        stopped = true;
                    }
                }
                if stopped {
                    break;
                }
            }
        }
        let unregistered = self.recv_ring.submitter().unregister_buf_ring(BGID).is_ok();
        if !(stopped && unregistered) {
            // The kernel might still own buffers: leak the memory rather than free it.
            let bufs = mem::replace(
                &mut self.bufs,
                BufRing {
                    ring: Mmap {
                        ptr: std::ptr::null_mut(),
                        len: 0,
                    },
                    mem: Mmap {
                        ptr: std::ptr::null_mut(),
                        len: 0,
                    },
                    entries: 0,
                    buf_size: 0,
                    tail: 0,
                },
            );
            mem::forget(bufs);
        }
    }
}
