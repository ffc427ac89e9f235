//! The `mmsg` back-end: `recvmmsg` / `sendmmsg`, with UDP GRO on receive (the `UDP_GRO` cmsg
//! gives the segment size) and UDP GSO on send (a `UDP_SEGMENT` cmsg per coalesced run).
#![allow(unsafe_code)]

use std::io;
use std::mem;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use super::sys::{self, CMSG_BUF, CmsgBuf, Group, RawAddr, SendFailure, SendScratch};
use super::{Backend, Options, RX_SLOT_SIZE, RxBatch, TxBatch, UdpIo, UdpStats};

/// The receive-side C structures, reused across calls.
struct RecvScratch {
    hdrs: Vec<libc::mmsghdr>,
    names: Vec<RawAddr>,
    iovs: Vec<libc::iovec>,
    ctrls: Vec<CmsgBuf>,
}

// SAFETY: the raw pointers inside are rewritten before each `recvmmsg` and only used during
// that call on the calling thread; moving the structure between threads is harmless.
unsafe impl Send for RecvScratch {}

impl std::fmt::Debug for RecvScratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvScratch")
            .field("capacity", &self.hdrs.len())
            .finish()
    }
}

/// A UDP socket driven with `recvmmsg` / `sendmmsg`.
#[derive(Debug)]
pub(super) struct MmsgIo {
    sock: socket2::Socket,
    local: SocketAddr,
    v6: bool,
    gso: bool,
    batch: usize,
    stats: UdpStats,
    rx: RecvScratch,
    tx: SendScratch,
    groups: Vec<Group>,
}

impl MmsgIo {
    pub(super) fn new(sock: socket2::Socket, opts: &Options) -> io::Result<MmsgIo> {
        let fd = sock.as_raw_fd();
        // GRO and GSO are used where the kernel has them (5.0 / 4.18); without, mmsg still
        // batches system calls.
        let _ = sys::set_gro(fd, opts.gro);
        let gso = opts.gso && sys::gso_supported(fd);
        let local = super::local_addr_of(&sock)?;
        Ok(MmsgIo {
            v6: local.is_ipv6(),
            sock,
            local,
            gso,
            batch: opts.batch.clamp(1, 1024),
            stats: UdpStats::default(),
            rx: RecvScratch {
                hdrs: Vec::new(),
                names: Vec::new(),
                iovs: Vec::new(),
                ctrls: Vec::new(),
            },
            tx: SendScratch::new(),
            groups: Vec::new(),
        })
    }
}

impl MmsgIo {
    /// Receives into the free slots of `rx` (after those already used, which stay); returns
    /// the batch's datagram count.
    pub(super) fn recv_append(&mut self, rx: &mut RxBatch) -> io::Result<usize> {
        let first = rx.slots_used();
        let n = (rx.capacity() - first).min(self.batch.max(1)).min(1024);
        if n == 0 {
            return Ok(rx.len());
        }

        let s = &mut self.rx;
        if s.hdrs.len() < n {
            // SAFETY: an all-zero mmsghdr is valid (null pointers, zero lengths).
            s.hdrs.resize(n, unsafe { mem::zeroed() });
            s.names.resize(n, RawAddr::zeroed());
            s.iovs.resize(
                n,
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                },
            );
            s.ctrls.resize(n, CmsgBuf::ZERO);
        }
        let base = rx.base_ptr();
        for i in 0..n {
            s.iovs[i] = libc::iovec {
                // SAFETY: slot `first + i < capacity` lies inside the batch's buffer.
                iov_base: unsafe { base.add((first + i) * RX_SLOT_SIZE) }.cast(),
                iov_len: RX_SLOT_SIZE,
            };
            let h = &mut s.hdrs[i];
            h.msg_len = 0;
            h.msg_hdr.msg_name = (&mut s.names[i] as *mut RawAddr).cast();
            h.msg_hdr.msg_namelen = RawAddr::CAPACITY;
            h.msg_hdr.msg_iov = &mut s.iovs[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = s.ctrls[i].0.as_mut_ptr().cast();
            h.msg_hdr.msg_controllen = CMSG_BUF as _;
            h.msg_hdr.msg_flags = 0;
        }
        let got = loop {
            self.stats.rx_syscalls += 1;
            // SAFETY: the `n` headers point at live, exclusively borrowed names, control
            // buffers and slots of `rx` with their true sizes; nothing else touches them until
            // the call returns.
            let rc = unsafe {
                libc::recvmmsg(
                    self.sock.as_raw_fd(),
                    s.hdrs.as_mut_ptr(),
                    n as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if rc >= 0 {
                break rc as usize;
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock => return Ok(rx.len()),
                io::ErrorKind::Interrupted => continue,
                _ => return Err(e),
            }
        };
        for i in 0..got {
            let h = &s.hdrs[i];
            let namelen = (h.msg_hdr.msg_namelen as usize).min(RawAddr::CAPACITY as usize);
            let clen = sys::controllen(&h.msg_hdr).min(CMSG_BUF);
            let meta = sys::parse_cmsgs(&s.ctrls[i].0[..clen]);
            let truncated = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            self.stats.note_rx(&meta, truncated);
            let len = (h.msg_len as usize).min(RX_SLOT_SIZE);
            let from = sys::decode_addr(&s.names[i].bytes()[..namelen]);
            if let (Some(from), false) = (from, truncated) {
                rx.commit_slot(from, len, meta.gro_segment, &mut self.stats);
            }
        }
        Ok(rx.len())
    }
}

impl UdpIo for MmsgIo {
    fn backend(&self) -> Backend {
        Backend::Mmsg
    }

    fn local_addr(&self) -> SocketAddr {
        self.local
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }

    fn recv(&mut self, rx: &mut RxBatch) -> io::Result<usize> {
        rx.clear();
        self.recv_append(rx)
    }

    fn send(&mut self, tx: &mut TxBatch) -> io::Result<usize> {
        let fd = self.sock.as_raw_fd();
        let mut sent = 0;
        while !tx.is_empty() {
            sys::groups(tx, self.gso, self.batch, &mut self.groups);
            self.tx.fill(tx, &self.groups, self.v6);
            self.stats.tx_syscalls += 1;
            // SAFETY: `fill` pointed each header at this scratch's names, iovecs and control
            // buffers and at `tx`'s bytes, none of which change during the call.
            let rc = unsafe {
                libc::sendmmsg(
                    fd,
                    self.tx.hdrs.as_mut_ptr(),
                    self.groups.len() as libc::c_uint,
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
            };
            let done = if rc < 0 { 0 } else { rc as usize };
            for g in &self.groups[..done] {
                sent += super::note_sent(&mut self.stats, tx, g);
            }
            let consumed: usize = self.groups[..done].iter().map(|g| g.count).sum();
            if done == self.groups.len() {
                tx.consume(consumed);
                continue;
            }
            // Group `done` failed (its error is reported by a retry of it alone, which also
            // takes any error sendmmsg left pending on the socket).
            let group = self.groups[done];
            let mut stop = false;
            let mut leave = 0; // datagrams of the failed group still unsent
            let mut retry = true;
            while retry {
                retry = false;
                let (raw, len) = RawAddr::encode(tx.pending()[group.start].to, self.v6);
                let mut c = CmsgBuf::ZERO;
                let clen = if group.count > 1 {
                    let seg = u16::try_from(group.segment).expect("segment fits u16");
                    c.write(sys::SOL_UDP, sys::UDP_SEGMENT, &seg.to_ne_bytes())
                } else {
                    0
                };
                self.stats.tx_syscalls += 1;
                let bytes = tx.group_bytes(group.start, group.count);
                match sys::sendmsg(fd, &raw, len, bytes, Some(&c).filter(|_| clen > 0), clen) {
                    Ok(_) => sent += super::note_sent(&mut self.stats, tx, &group),
                    Err(e) => match sys::classify(&e, group.count > 1) {
                        SendFailure::Again => {
                            stop = true;
                            leave = group.count;
                        }
                        SendFailure::Retry => retry = true,
                        SendFailure::Drop => self.stats.tx_errors += group.count as u64,
                        SendFailure::Unsegment => {
                            let (ok, dropped, again) =
                                sys::send_unsegmented(fd, tx, &group, self.v6);
                            self.stats.tx_syscalls += (ok + dropped + usize::from(again)) as u64;
                            let bytes: usize = tx.pending()[group.start..group.start + ok]
                                .iter()
                                .map(|i| i.len)
                                .sum();
                            self.stats.tx_datagrams += ok as u64;
                            self.stats.tx_bytes += bytes as u64;
                            self.stats.tx_errors += dropped as u64;
                            sent += ok;
                            if again {
                                stop = true;
                                leave = group.count - ok - dropped;
                            }
                        }
                    },
                }
            }
            tx.consume(consumed + group.count - leave);
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
