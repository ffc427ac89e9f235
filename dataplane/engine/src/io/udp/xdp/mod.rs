//! The `af_xdp` back-end: receive through AF_XDP sockets, send through the kernel.
//!
//! * Receive: one XSK per receive queue of the interface that owns the bound address, in copy
//!   mode ([`xsk`]); a small XDP program ([`bpf`]) redirects the IPv4 / IPv6 UDP packets for
//!   the bound address and port to the XSK of the queue they arrived on and passes everything
//!   else to the kernel. Frames are parsed ([`parse`]) and their payloads copied into the
//!   caller's [`RxBatch`].
//! * Send: the ordinary UDP socket bound to the same address, driven like the `mmsg` back-end
//!   (sendmmsg with GSO): the kernel keeps doing routing and neighbour resolution.
//! * That socket's receive queue is drained too: the kernel still delivers what the program
//!   passes (IPv4 fragments, which it reassembles; IPv4 with options; IPv6 with extension
//!   headers) and what arrives on other interfaces. [`UdpIo::fd`] is an epoll descriptor over
//!   the socket and every XSK.
//!
//! The program is attached through a BPF link (`BPF_LINK_CREATE`), which the kernel detaches
//! when its fd closes: dropping the back-end, or the process dying, leaves the interface clean.
//!
//! Requirements: Linux 5.9 or later (XDP links), root or `CAP_BPF` + `CAP_NET_ADMIN`, a
//! specific (not wildcard) non-loopback local address, and no other XDP program on the
//! interface.
#![allow(unsafe_code)]

mod bpf;
mod parse;
mod xsk;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::mmsg::MmsgIo;
use super::{Backend, Options, RX_SLOT_SIZE, RxBatch, TxBatch, UdpIo, UdpStats, XdpMode};
use xsk::Xsk;

/// How the program ended up attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Attached {
    /// In the driver.
    Native,
    /// In the kernel's generic receive path.
    Generic,
}

/// A UDP socket receiving through AF_XDP.
#[derive(Debug)]
pub(super) struct XdpIo {
    // Field order is drop order: the link goes first, so the program stops redirecting before
    // the sockets it redirects to close.
    _link: OwnedFd,
    _prog: OwnedFd,
    _map: OwnedFd,
    xsks: Vec<Xsk>,
    epoll: OwnedFd,
    kernel: MmsgIo,
    ifindex: u32,
    ifname: String,
    attached: Attached,
    /// Receive counters of the XSK path (the kernel socket keeps its own).
    stats: UdpStats,
    /// Frames the XSKs delivered that were not a datagram for us.
    invalid: u64,
    /// Which source `recv` reads first (alternates, so neither starves the other).
    turn: usize,
}

/// A refused setup: the socket back (where it was not consumed) and the reason.
type Refusal = (Option<socket2::Socket>, String);

/// What the kernel said, with a hint for the permission errors.
fn refused(what: &str, e: &io::Error) -> String {
    let hint = match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => " (needs root, or CAP_BPF and CAP_NET_ADMIN)",
        _ => "",
    };
    format!("{what}: {e}{hint}")
}

impl XdpIo {
    /// Sets up AF_XDP receive for `sock`'s address; on refusal gives the socket back with the
    /// reason, for the next back-end.
    pub(super) fn new(sock: socket2::Socket, opts: &Options) -> Result<XdpIo, Refusal> {
        let local = match super::local_addr_of(&sock) {
            Ok(a) => a,
            Err(e) => return Err((Some(sock), e.to_string())),
        };
        let ip = local.ip();
        if ip.is_unspecified() {
            return Err((
                Some(sock),
                format!(
                    "bound to the wildcard address {ip}: AF_XDP steers the packets of one \
                     interface and needs that interface's own address"
                ),
            ));
        }
        let Some(iface) = find_interface(ip) else {
            return Err((Some(sock), format!("no interface has the address {ip}")));
        };
        if iface.loopback {
            return Err((
                Some(sock),
                format!("{ip} is on the loopback interface {}", iface.name),
            ));
        }
        let ifindex = match if_index(&iface.name) {
            Ok(i) => i,
            Err(e) => return Err((Some(sock), format!("interface {}: {e}", iface.name))),
        };
        let queues = rx_queues(sock.as_raw_fd(), &iface.name);
        let map = match bpf::create_xskmap(queues) {
            Ok(m) => m,
            Err(e) => return Err((Some(sock), refused("the kernel refused the XSKMAP", &e))),
        };
        let insns = bpf::program(map.as_raw_fd(), ip, local.port());
        let prog = match bpf::load_xdp(&insns) {
            Ok(p) => p,
            Err(e) => {
                return Err((
                    Some(sock),
                    refused("the kernel refused the XDP program", &e),
                ));
            }
        };
        let mut xsks = Vec::new();
        for q in 0..queues {
            let x = match Xsk::open(ifindex, q) {
                Ok(x) => x,
                Err(e) => {
                    let why = refused(&format!("AF_XDP on {} queue {q}", iface.name), &e);
                    return Err((Some(sock), why));
                }
            };
            if let Err(e) = bpf::set_xsk(&map, x.queue(), x.as_fd().as_raw_fd()) {
                return Err((
                    Some(sock),
                    refused("the kernel refused the XSKMAP entry", &e),
                ));
            }
            xsks.push(x);
        }
        let tries: &[(Attached, u32)] = match opts.xdp_mode {
            XdpMode::Native => &[(Attached::Native, bpf::XDP_FLAGS_DRV_MODE)],
            XdpMode::Generic => &[(Attached::Generic, bpf::XDP_FLAGS_SKB_MODE)],
            XdpMode::Auto => &[
                (Attached::Native, bpf::XDP_FLAGS_DRV_MODE),
                (Attached::Generic, bpf::XDP_FLAGS_SKB_MODE),
            ],
        };
        let mut errors = Vec::new();
        let mut link = None;
        for &(mode, flags) in tries {
            match bpf::attach_xdp(&prog, ifindex, flags) {
                Ok(l) => {
                    link = Some((l, mode));
                    break;
                }
                Err(e) => errors.push(format!("{mode:?}: {e}").to_lowercase()),
            }
        }
        let Some((link, attached)) = link else {
            let why = format!(
                "the kernel refused to attach XDP to {} ({}){}",
                iface.name,
                errors.join("; "),
                if errors.iter().any(|e| e.contains("permission")) {
                    " (needs root, or CAP_BPF and CAP_NET_ADMIN)"
                } else {
                    ""
                }
            );
            return Err((Some(sock), why));
        };
        let epoll = match epoll_over(
            std::iter::once(sock.as_raw_fd()).chain(xsks.iter().map(|x| x.as_fd().as_raw_fd())),
        ) {
            Ok(e) => e,
            Err(e) => return Err((Some(sock), format!("epoll: {e}"))),
        };
        let kernel = MmsgIo::new(sock, opts).map_err(|e| (None, e.to_string()))?;
        Ok(XdpIo {
            _link: link,
            _prog: prog,
            _map: map,
            xsks,
            epoll,
            kernel,
            ifindex,
            ifname: iface.name,
            attached,
            stats: UdpStats::default(),
            invalid: 0,
            turn: 0,
        })
    }

    /// Reads the XSKs into `rx` (appending), round-robin from a rotating first queue.
    fn recv_xsks(&mut self, rx: &mut RxBatch) {
        let n = self.xsks.len();
        let ifindex = self.ifindex;
        for k in 0..n {
            let room = rx.capacity() - rx.slots_used();
            if room == 0 {
                break;
            }
            let stats = &mut self.stats;
            let invalid = &mut self.invalid;
            self.xsks[(self.turn + k) % n].drain(room, |frame| {
                match parse::parse(frame, ifindex) {
                    Some(d) if d.payload.len() <= RX_SLOT_SIZE => {
                        let len = d.payload.len();
                        rx.next_slot()[..len].copy_from_slice(d.payload);
                        rx.commit_slot(d.from, len, None, stats);
                    }
                    _ => *invalid += 1,
                }
            });
        }
    }
}

impl UdpIo for XdpIo {
    fn backend(&self) -> Backend {
        Backend::AfXdp
    }

    fn local_addr(&self) -> SocketAddr {
        self.kernel.local_addr()
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.epoll.as_fd()
    }

    fn recv(&mut self, rx: &mut RxBatch) -> io::Result<usize> {
        rx.clear();
        self.turn = self.turn.wrapping_add(1);
        // The socket is read first every 8th call (so a busy XSK cannot starve it), else only
        // when the XSKs left room: under load most batches cost no system call at all.
        if self.turn.is_multiple_of(8) {
            self.kernel.recv_append(rx)?;
            self.recv_xsks(rx);
        } else {
            self.recv_xsks(rx);
            if rx.slots_used() < rx.capacity() {
                self.kernel.recv_append(rx)?;
            }
        }
        Ok(rx.len())
    }

    fn send(&mut self, tx: &mut TxBatch) -> io::Result<usize> {
        self.kernel.send(tx)
    }

    fn send_ttl(&mut self, to: SocketAddr, ttl: u8, data: &[u8]) -> io::Result<()> {
        self.kernel.send_ttl(to, ttl, data)
    }

    fn stats(&self) -> UdpStats {
        let mut s = self.kernel.stats();
        s.rx_datagrams += self.stats.rx_datagrams;
        s.rx_bytes += self.stats.rx_bytes;
        s.rx_drops += self.invalid;
        for x in &self.xsks {
            if let Ok(st) = x.statistics() {
                s.rx_drops += st.rx_dropped + st.rx_ring_full;
            }
        }
        s
    }
}

impl XdpIo {
    /// What was set up, for [`super::Probe::detail`].
    pub(super) fn describe(&self) -> String {
        let mode = match self.attached {
            Attached::Native => "native",
            Attached::Generic => "generic",
        };
        let n = self.xsks.len();
        let s = if n == 1 { "" } else { "s" };
        format!(
            "{} (ifindex {}), {mode} XDP, {n} queue{s}",
            self.ifname, self.ifindex
        )
    }
}

/// An interface found by address.
#[derive(Debug)]
struct Interface {
    name: String,
    loopback: bool,
}

/// The interface that has `ip` (in the calling thread's network namespace).
fn find_interface(ip: IpAddr) -> Option<Interface> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: `getifaddrs` fills `head` with a list we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return None;
    }
    let mut found = None;
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list `getifaddrs` returned, alive until `freeifaddrs`;
        // its address, when present, is a `sockaddr` of the family it says, and its name a C
        // string.
        let (addr, name, flags) = unsafe {
            let ifa = &*cur;
            cur = ifa.ifa_next;
            let addr = if ifa.ifa_addr.is_null() {
                None
            } else {
                match i32::from((*ifa.ifa_addr).sa_family) {
                    libc::AF_INET => {
                        let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                        Some(IpAddr::from(sin.sin_addr.s_addr.to_ne_bytes()))
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                        Some(IpAddr::from(sin6.sin6_addr.s6_addr))
                    }
                    _ => None,
                }
            };
            let name = std::ffi::CStr::from_ptr(ifa.ifa_name)
                .to_string_lossy()
                .into_owned();
            (addr, name, ifa.ifa_flags)
        };
        if addr == Some(ip) {
            found = Some(Interface {
                name,
                loopback: flags & libc::IFF_LOOPBACK as u32 != 0,
            });
            break;
        }
    }
    // SAFETY: `head` came from `getifaddrs` and is freed once.
    unsafe { libc::freeifaddrs(head) };
    found
}

/// The index of interface `name`.
fn if_index(name: &str) -> io::Result<u32> {
    let c = std::ffi::CString::new(name).map_err(io::Error::other)?;
    // SAFETY: `c` is a NUL-terminated string alive for the call.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(i)
    }
}

/// `struct ethtool_channels`.
#[repr(C)]
#[derive(Default)]
struct EthtoolChannels {
    cmd: u32,
    max_rx: u32,
    max_tx: u32,
    max_other: u32,
    max_combined: u32,
    rx_count: u32,
    tx_count: u32,
    other_count: u32,
    combined_count: u32,
}

/// The number of receive queues of `name` (`ETHTOOL_GCHANNELS` through any socket of the
/// namespace; 1 where the driver does not say).
fn rx_queues(sock: RawFd, name: &str) -> u32 {
    const ETHTOOL_GCHANNELS: u32 = 0x3c;
    let mut ch = EthtoolChannels {
        cmd: ETHTOOL_GCHANNELS,
        ..EthtoolChannels::default()
    };
    // SAFETY: an all-zero ifreq is valid.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, b) in ifr
        .ifr_name
        .iter_mut()
        .zip(name.bytes().take(libc::IFNAMSIZ - 1))
    {
        *d = b as libc::c_char;
    }
    ifr.ifr_ifru.ifru_data = (&mut ch as *mut EthtoolChannels).cast();
    // SAFETY: `ifr` names the interface and points at `ch`, a live ethtool_channels the
    // kernel fills; both outlive the call.
    let rc = unsafe { libc::ioctl(sock, libc::SIOCETHTOOL, &mut ifr) };
    if rc < 0 {
        return 1;
    }
    (ch.rx_count + ch.combined_count).clamp(1, 256)
}

/// A level-triggered epoll descriptor, readable when any of `fds` is.
fn epoll_over(fds: impl Iterator<Item = RawFd>) -> io::Result<OwnedFd> {
    // SAFETY: plain descriptor creation.
    let raw = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a new descriptor owned by nobody else.
    let ep = unsafe { OwnedFd::from_raw_fd(raw) };
    for fd in fds {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: fd as u64,
        };
        // SAFETY: `ev` is a live epoll_event for the call; `fd` is open (owned by the caller's
        // socket or XSK, which outlive the epoll descriptor in `XdpIo`).
        if unsafe { libc::epoll_ctl(raw, libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(ep)
}

#[cfg(test)]
mod tests;
