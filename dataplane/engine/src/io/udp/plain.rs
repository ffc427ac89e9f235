//! The `plain` back-end: one `recvmsg` / `sendmsg` per datagram, no offloads. It works on any
//! Linux kernel and is the fallback when nothing better is available.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use super::sys::{self, RawAddr, SendFailure};
use super::{Backend, RxBatch, TxBatch, UdpIo, UdpStats};

/// A UDP socket driven one datagram per system call.
#[derive(Debug)]
pub(super) struct PlainIo {
    sock: socket2::Socket,
    local: SocketAddr,
    v6: bool,
    stats: UdpStats,
}

impl PlainIo {
    pub(super) fn new(sock: socket2::Socket) -> io::Result<PlainIo> {
        // Without cmsgs a GRO super-datagram could not be split: make sure it is off.
        let _ = sys::set_gro(sock.as_raw_fd(), false);
        let local = super::local_addr_of(&sock)?;
        Ok(PlainIo {
            v6: local.is_ipv6(),
            sock,
            local,
            stats: UdpStats::default(),
        })
    }
}

impl UdpIo for PlainIo {
    fn backend(&self) -> Backend {
        Backend::Plain
    }

    fn local_addr(&self) -> SocketAddr {
        self.local
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }

    fn recv(&mut self, rx: &mut RxBatch) -> io::Result<usize> {
        rx.clear();
        let fd = self.sock.as_raw_fd();
        while rx.slots_used() < rx.capacity() {
            self.stats.rx_syscalls += 1;
            let got = match sys::recvmsg(fd, rx.next_slot()) {
                Ok(got) => got,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    if rx.is_empty() {
                        return Err(e);
                    }
                    break;
                }
            };
            self.stats.note_rx(&got.meta, got.truncated);
            if let Some(from) = got.from {
                rx.commit_slot(from, got.len, None, &mut self.stats);
            }
        }
        Ok(rx.len())
    }

    fn send(&mut self, tx: &mut TxBatch) -> io::Result<usize> {
        let fd = self.sock.as_raw_fd();
        let mut sent = 0;
        while let Some(&item) = tx.pending().first() {
            let (raw, len) = RawAddr::encode(item.to, self.v6);
            self.stats.tx_syscalls += 1;
            match sys::sendmsg(fd, &raw, len, tx.item_bytes(&item), None, 0) {
                Ok(_) => {
                    sent += 1;
                    self.stats.tx_datagrams += 1;
                    self.stats.tx_bytes += item.len as u64;
                }
                Err(e) => match sys::classify(&e, false) {
                    SendFailure::Again => break,
                    SendFailure::Retry => continue,
                    SendFailure::Drop | SendFailure::Unsegment => self.stats.tx_errors += 1,
                },
            }
            tx.consume(1);
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
