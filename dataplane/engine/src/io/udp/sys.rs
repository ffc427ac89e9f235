//! The raw socket layer shared by the UDP back-ends: binding, socket addresses in their C form,
//! control messages (UDP_GRO, UDP_SEGMENT, SO_RXQ_OVFL, TTL), single `sendmsg`/`recvmsg` calls
//! and the scratch arrays that `sendmmsg` and io_uring's `sendmsg` point into.
#![allow(unsafe_code)]

use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};

use super::{Options, TxBatch};

/// `SOL_UDP` (the UDP protocol number), not exported by `libc` for glibc targets.
pub(super) const SOL_UDP: libc::c_int = 17;
/// `UDP_SEGMENT` (Linux 4.18): the GSO segment size, as a socket option or a `u16` cmsg.
pub(super) const UDP_SEGMENT: libc::c_int = 103;
/// `UDP_GRO` (Linux 5.0): coalesce received datagrams; the cmsg (`int`) gives the segment size.
pub(super) const UDP_GRO: libc::c_int = 104;
/// The most segments one GSO send may carry (`UDP_MAX_SEGMENTS` on kernels before 6.9).
pub(super) const GSO_MAX_SEGMENTS: usize = 64;
/// The most payload bytes one GSO send may carry (an IPv4 datagram's limit, the smaller one).
pub(super) const GSO_MAX_BYTES: usize = 65_507;
/// Control buffer size per message: room for UDP_GRO and SO_RXQ_OVFL (24 bytes each).
pub(super) const CMSG_BUF: usize = 64;

/// An aligned control-message buffer.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
pub(super) struct CmsgBuf(pub(super) [u8; CMSG_BUF]);

impl CmsgBuf {
    pub(super) const ZERO: CmsgBuf = CmsgBuf([0; CMSG_BUF]);

    /// Writes one control message at the start and returns the control length to pass.
    pub(super) fn write(&mut self, level: libc::c_int, ty: libc::c_int, data: &[u8]) -> usize {
        let data_len = u32::try_from(data.len()).expect("small cmsg payload");
        // SAFETY: CMSG_SPACE is a pure computation.
        let space = unsafe { libc::CMSG_SPACE(data_len) } as usize;
        assert!(space <= CMSG_BUF, "cmsg payload too large");
        self.0 = [0; CMSG_BUF];
        // SAFETY: a zeroed msghdr is valid; it only carries the control pointer and length that
        // the CMSG macros read, and `self.0` is aligned for `cmsghdr` and `space` bytes long.
        unsafe {
            let mut msg: libc::msghdr = mem::zeroed();
            msg.msg_control = self.0.as_mut_ptr().cast();
            msg.msg_controllen = space as _;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = level;
            (*cmsg).cmsg_type = ty;
            (*cmsg).cmsg_len = libc::CMSG_LEN(data_len) as _;
            std::ptr::copy_nonoverlapping(data.as_ptr(), libc::CMSG_DATA(cmsg), data.len());
        }
        space
    }
}

/// What the control messages of one received datagram said.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct RxMeta {
    /// UDP_GRO: the size of each coalesced segment (the last may be shorter).
    pub(super) gro_segment: Option<usize>,
    /// SO_RXQ_OVFL: datagrams the kernel dropped on this socket so far.
    pub(super) drops: Option<u32>,
}

/// Parses the control messages in `control` (as the kernel wrote them).
pub(super) fn parse_cmsgs(control: &[u8]) -> RxMeta {
    let mut meta = RxMeta::default();
    if control.is_empty() {
        return meta;
    }
    // SAFETY: the msghdr only describes `control` (pointer and length) for the CMSG macros,
    // which never go past `msg_controllen`; data is read unaligned and only within the cmsg's
    // declared length (checked against the payload size first).
    unsafe {
        let mut msg: libc::msghdr = mem::zeroed();
        msg.msg_control = control.as_ptr().cast_mut().cast();
        msg.msg_controllen = control.len() as _;
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            let level = (*cmsg).cmsg_level;
            let ty = (*cmsg).cmsg_type;
            let len = (*cmsg).cmsg_len as usize;
            let data = libc::CMSG_DATA(cmsg);
            let header = data as usize - cmsg as usize;
            let payload = len.saturating_sub(header);
            if level == SOL_UDP && ty == UDP_GRO && payload >= 4 {
                let seg = std::ptr::read_unaligned(data.cast::<libc::c_int>());
                meta.gro_segment = usize::try_from(seg).ok().filter(|&s| s > 0);
            } else if level == libc::SOL_SOCKET && ty == libc::SO_RXQ_OVFL && payload >= 4 {
                meta.drops = Some(std::ptr::read_unaligned(data.cast::<u32>()));
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    meta
}

/// A socket address in its C form (`sockaddr_in` or `sockaddr_in6`).
#[repr(C)]
#[derive(Clone, Copy)]
pub(super) union RawAddr {
    v4: libc::sockaddr_in,
    v6: libc::sockaddr_in6,
}

impl RawAddr {
    /// The size the kernel may write for a name (an IPv6 one).
    pub(super) const CAPACITY: libc::socklen_t = size_of::<RawAddr>() as libc::socklen_t;

    pub(super) fn zeroed() -> RawAddr {
        // SAFETY: both variants are plain-old-data for which all zero bytes are valid.
        unsafe { mem::zeroed() }
    }

    /// `addr` for a socket of the given family: an IPv4 address on an IPv6 socket becomes
    /// IPv4-mapped (an IPv6-only socket then refuses it per destination); an IPv4-mapped one on
    /// an IPv4 socket becomes IPv4.
    pub(super) fn encode(addr: SocketAddr, v6_socket: bool) -> (RawAddr, libc::socklen_t) {
        let mut raw = RawAddr::zeroed();
        let addr = match (addr, v6_socket) {
            (SocketAddr::V4(a), true) => {
                SocketAddr::V6(SocketAddrV6::new(a.ip().to_ipv6_mapped(), a.port(), 0, 0))
            }
            (SocketAddr::V6(a), false) => match a.ip().to_ipv4_mapped() {
                Some(ip) => SocketAddr::V4(SocketAddrV4::new(ip, a.port())),
                None => SocketAddr::V6(a),
            },
            (a, _) => a,
        };
        match addr {
            SocketAddr::V4(a) => {
                let sin = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: a.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(a.ip().octets()),
                    },
                    sin_zero: [0; 8],
                };
                raw.v4 = sin;
                (raw, size_of::<libc::sockaddr_in>() as libc::socklen_t)
            }
            SocketAddr::V6(a) => {
                // SAFETY: all-zero is a valid sockaddr_in6 (private padding fields included).
                let mut sin6: libc::sockaddr_in6 = unsafe { mem::zeroed() };
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_port = a.port().to_be();
                sin6.sin6_flowinfo = a.flowinfo().to_be();
                sin6.sin6_addr.s6_addr = a.ip().octets();
                sin6.sin6_scope_id = a.scope_id();
                raw.v6 = sin6;
                (raw, size_of::<libc::sockaddr_in6>() as libc::socklen_t)
            }
        }
    }

    /// The address as raw bytes (its full capacity).
    pub(super) fn bytes(&self) -> &[u8] {
        // SAFETY: the union is plain-old-data of `size_of::<RawAddr>()` initialized bytes
        // (constructed zeroed, then fields written).
        unsafe {
            std::slice::from_raw_parts((self as *const RawAddr).cast::<u8>(), size_of::<RawAddr>())
        }
    }
}

/// Decodes a kernel-written socket address; IPv4-mapped IPv6 addresses come back as IPv4.
pub(super) fn decode_addr(b: &[u8]) -> Option<SocketAddr> {
    if b.len() < 2 {
        return None;
    }
    let family = i32::from(u16::from_ne_bytes([b[0], b[1]]));
    if family == libc::AF_INET && b.len() >= 8 {
        let port = u16::from_be_bytes([b[2], b[3]]);
        let ip = Ipv4Addr::new(b[4], b[5], b[6], b[7]);
        Some(SocketAddr::V4(SocketAddrV4::new(ip, port)))
    } else if family == libc::AF_INET6 && b.len() >= 28 {
        let port = u16::from_be_bytes([b[2], b[3]]);
        let flow = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
        let mut oct = [0u8; 16];
        oct.copy_from_slice(&b[8..24]);
        let ip = Ipv6Addr::from(oct);
        let scope = u32::from_ne_bytes([b[24], b[25], b[26], b[27]]);
        Some(match ip.to_ipv4_mapped() {
            Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, port)),
            None => SocketAddr::V6(SocketAddrV6::new(ip, port, flow, scope)),
        })
    } else {
        None
    }
}

/// Creates, configures and binds the UDP socket of a back-end: IPv6 sockets are IPv6-only,
/// buffers as asked (best effort), optional `SO_REUSEPORT`, `SO_RXQ_OVFL` on, non-blocking.
pub(super) fn bind(addr: SocketAddr, opts: &Options) -> io::Result<socket2::Socket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, Type::DGRAM.cloexec(), Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    if opts.recv_buffer > 0 {
        let _ = s.set_recv_buffer_size(opts.recv_buffer);
    }
    if opts.send_buffer > 0 {
        let _ = s.set_send_buffer_size(opts.send_buffer);
    }
    if opts.reuse_port {
        s.set_reuse_port(true)?;
    }
    // Drops are only reported where the kernel supports it (2.6.33+); best effort.
    let _ = setsockopt_int(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RXQ_OVFL, 1);
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(s)
}

/// `setsockopt` with an `int` value.
pub(super) fn setsockopt_int(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `value` is a live `c_int` and its size is passed along.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Turns UDP_GRO on or off; `Err` where the kernel lacks it.
pub(super) fn set_gro(fd: RawFd, on: bool) -> io::Result<()> {
    setsockopt_int(fd, SOL_UDP, UDP_GRO, libc::c_int::from(on))
}

/// Whether the kernel supports UDP_SEGMENT (sets the socket default to 0: no segmentation).
pub(super) fn gso_supported(fd: RawFd) -> bool {
    setsockopt_int(fd, SOL_UDP, UDP_SEGMENT, 0).is_ok()
}

/// One non-blocking `sendmsg` of `data` (one or more iovecs) with an optional control message.
pub(super) fn sendmsg(
    fd: RawFd,
    to: &RawAddr,
    to_len: libc::socklen_t,
    data: &[u8],
    control: Option<&CmsgBuf>,
    control_len: usize,
) -> io::Result<usize> {
    let mut iov = libc::iovec {
        iov_base: data.as_ptr().cast_mut().cast(),
        iov_len: data.len(),
    };
    // SAFETY: every pointer in the msghdr refers to memory borrowed for the call (`to`, `iov`
    // over `data`, `control`), with the lengths given; the kernel only reads them.
    let rc = unsafe {
        let mut msg: libc::msghdr = mem::zeroed();
        msg.msg_name = (to as *const RawAddr).cast_mut().cast();
        msg.msg_namelen = to_len;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if let Some(c) = control {
            msg.msg_control = c.0.as_ptr().cast_mut().cast();
            msg.msg_controllen = control_len as _;
        }
        libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc as usize)
    }
}

/// [`send_ttl`], counted in `stats` (one system call; one datagram when it went out).
pub(super) fn send_ttl_counted(
    stats: &mut super::UdpStats,
    fd: RawFd,
    v6: bool,
    to: SocketAddr,
    ttl: u8,
    data: &[u8],
) -> io::Result<()> {
    stats.tx_syscalls += 1;
    send_ttl(fd, v6, to, ttl, data)?;
    stats.tx_datagrams += 1;
    stats.tx_bytes += data.len() as u64;
    Ok(())
}

/// Sends `data` to `to` with IP TTL / IPv6 hop limit `ttl` (as a cmsg, socket default intact).
pub(super) fn send_ttl(
    fd: RawFd,
    v6: bool,
    to: SocketAddr,
    ttl: u8,
    data: &[u8],
) -> io::Result<()> {
    let (raw, len) = RawAddr::encode(to, v6);
    let mut c = CmsgBuf::ZERO;
    let value = libc::c_int::from(ttl);
    let clen = if v6 {
        c.write(
            libc::IPPROTO_IPV6,
            libc::IPV6_HOPLIMIT,
            &value.to_ne_bytes(),
        )
    } else {
        c.write(libc::IPPROTO_IP, libc::IP_TTL, &value.to_ne_bytes())
    };
    sendmsg(fd, &raw, len, data, Some(&c), clen).map(drop)
}

/// One datagram received by a single `recvmsg`.
#[derive(Debug)]
pub(super) struct Received {
    pub(super) len: usize,
    pub(super) from: Option<SocketAddr>,
    pub(super) meta: RxMeta,
    pub(super) truncated: bool,
}

/// One non-blocking `recvmsg` into `buf`, with control messages.
pub(super) fn recvmsg(fd: RawFd, buf: &mut [u8]) -> io::Result<Received> {
    let mut name = RawAddr::zeroed();
    let mut control = CmsgBuf::ZERO;
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: the msghdr points at `name`, `iov` (over `buf`) and `control`, all exclusively
    // borrowed for the call with their true sizes; the kernel writes at most those.
    let (rc, msg) = unsafe {
        let mut msg: libc::msghdr = mem::zeroed();
        msg.msg_name = (&mut name as *mut RawAddr).cast();
        msg.msg_namelen = RawAddr::CAPACITY;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.0.as_mut_ptr().cast();
        msg.msg_controllen = CMSG_BUF as _;
        let rc = libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT);
        (rc, msg)
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let namelen = (msg.msg_namelen as usize).min(size_of::<RawAddr>());
    let clen = controllen(&msg).min(CMSG_BUF);
    Ok(Received {
        len: (rc as usize).min(buf.len()),
        from: decode_addr(&name.bytes()[..namelen]),
        meta: parse_cmsgs(&control.0[..clen]),
        truncated: msg.msg_flags & libc::MSG_TRUNC != 0,
    })
}

/// The control length the kernel wrote (`size_t` on glibc, `socklen_t` on musl).
#[allow(clippy::unnecessary_cast)]
pub(super) fn controllen(msg: &libc::msghdr) -> usize {
    msg.msg_controllen as usize
}

/// What to do after a failed send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SendFailure {
    /// The socket buffer is full: stop, leave the rest queued.
    Again,
    /// Interrupted: try the same datagram again.
    Retry,
    /// This destination or datagram failed: drop it, count it, go on.
    Drop,
    /// A GSO send the path refused (no checksum offload, segment over the MTU): send the
    /// segments one by one.
    Unsegment,
}

/// Classifies a send error; `gso` says whether the failed send was a segmented one.
pub(super) fn classify(err: &io::Error, gso: bool) -> SendFailure {
    match err.raw_os_error() {
        Some(libc::EAGAIN) => SendFailure::Again,
        Some(libc::EINTR) => SendFailure::Retry,
        Some(libc::EIO | libc::EINVAL | libc::EMSGSIZE) if gso => SendFailure::Unsegment,
        _ => SendFailure::Drop,
    }
}

/// A run of queued datagrams sent in one message: same destination, equal sizes (the last may
/// be shorter), coalesced with UDP GSO when it has more than one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Group {
    /// Index of the first datagram among the pending ones.
    pub(super) start: usize,
    pub(super) count: usize,
    /// The segment size (the first datagram's size).
    pub(super) segment: usize,
}

/// Splits the pending datagrams of `tx` into at most `max_groups` groups.
pub(super) fn groups(tx: &TxBatch, gso: bool, max_groups: usize, out: &mut Vec<Group>) {
    out.clear();
    let items = tx.pending();
    let mut i = 0;
    while i < items.len() && out.len() < max_groups {
        let first = items[i];
        let mut count = 1;
        let mut bytes = first.len;
        if gso && first.len > 0 {
            while i + count < items.len() && count < GSO_MAX_SEGMENTS {
                let next = items[i + count];
                if next.to != first.to
                    || next.len == 0
                    || next.len > first.len
                    || bytes + next.len > GSO_MAX_BYTES
                {
                    break;
                }
                count += 1;
                bytes += next.len;
                if next.len < first.len {
                    break; // a shorter one ends the run
                }
            }
        }
        out.push(Group {
            start: i,
            count,
            segment: first.len,
        });
        i += count;
    }
}

/// The C structures one batch of sends points into (`mmsghdr`s, their names, iovecs and
/// control buffers), reused across calls.
pub(super) struct SendScratch {
    pub(super) hdrs: Vec<libc::mmsghdr>,
    names: Vec<RawAddr>,
    iovs: Vec<libc::iovec>,
    ctrls: Vec<CmsgBuf>,
}

// SAFETY: the raw pointers inside the headers are only meaningful during one `fill` + send
// sequence on the owning thread; they are rewritten before every use and never dereferenced
// by Rust code, so moving the scratch to another thread is harmless.
unsafe impl Send for SendScratch {}

impl std::fmt::Debug for SendScratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendScratch")
            .field("capacity", &self.hdrs.len())
            .finish()
    }
}

impl SendScratch {
    pub(super) fn new() -> SendScratch {
        SendScratch {
            hdrs: Vec::new(),
            names: Vec::new(),
            iovs: Vec::new(),
            ctrls: Vec::new(),
        }
    }

    /// Fills one header per group (pointing into `tx`'s memory and this scratch); the headers
    /// stay valid until `tx` or `self` is next changed.
    pub(super) fn fill(&mut self, tx: &TxBatch, groups: &[Group], v6: bool) {
        let n = groups.len();
        if self.hdrs.len() < n {
            // SAFETY: an all-zero mmsghdr (null pointers, zero lengths) is valid.
            self.hdrs.resize(n, unsafe { mem::zeroed() });
            self.names.resize(n, RawAddr::zeroed());
            self.iovs.resize(
                n,
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                },
            );
            self.ctrls.resize(n, CmsgBuf::ZERO);
        }
        let items = tx.pending();
        for (g, group) in groups.iter().enumerate() {
            let first = items[group.start];
            let (raw, raw_len) = RawAddr::encode(first.to, v6);
            self.names[g] = raw;
            let bytes = tx.group_bytes(group.start, group.count);
            self.iovs[g] = libc::iovec {
                iov_base: bytes.as_ptr().cast_mut().cast(),
                iov_len: bytes.len(),
            };
            let control_len = if group.count > 1 {
                let seg = u16::try_from(group.segment).expect("GSO segment fits u16");
                self.ctrls[g].write(SOL_UDP, UDP_SEGMENT, &seg.to_ne_bytes())
            } else {
                0
            };
            // SAFETY: zeroing a plain C struct; then pointing it at this scratch's own
            // elements, which are not moved until the next `fill` (the vectors only grow here).
            let h = &mut self.hdrs[g];
            *h = unsafe { mem::zeroed() };
            h.msg_hdr.msg_name = (&mut self.names[g] as *mut RawAddr).cast();
            h.msg_hdr.msg_namelen = raw_len;
            h.msg_hdr.msg_iov = &mut self.iovs[g];
            h.msg_hdr.msg_iovlen = 1;
            if control_len > 0 {
                h.msg_hdr.msg_control = self.ctrls[g].0.as_mut_ptr().cast();
                h.msg_hdr.msg_controllen = control_len as _;
            }
        }
    }

    /// The header of group `g` (after `fill`).
    pub(super) fn msghdr(&self, g: usize) -> *const libc::msghdr {
        &self.hdrs[g].msg_hdr
    }
}

/// Sends the datagrams of one group one by one (after a GSO send was refused); returns how
/// many went out and how many were dropped, and whether the socket buffer filled up first.
pub(super) fn send_unsegmented(
    fd: RawFd,
    tx: &TxBatch,
    group: &Group,
    v6: bool,
) -> (usize, usize, bool) {
    let items = tx.pending();
    let (mut sent, mut dropped) = (0, 0);
    for k in 0..group.count {
        let item = items[group.start + k];
        let (raw, len) = RawAddr::encode(item.to, v6);
        loop {
            match sendmsg(fd, &raw, len, tx.item_bytes(&item), None, 0) {
                Ok(_) => sent += 1,
                Err(e) => match classify(&e, false) {
                    SendFailure::Retry => continue,
                    SendFailure::Again => return (sent, dropped, true),
                    _ => dropped += 1,
                },
            }
            break;
        }
    }
    (sent, dropped, false)
}

/// Test helper: receives one datagram on `fd` and reports its IP TTL / hop limit.
#[cfg(test)]
pub(super) fn recv_with_ttl(
    fd: RawFd,
    v6: bool,
    buf: &mut [u8],
) -> io::Result<(usize, Option<u8>)> {
    if v6 {
        setsockopt_int(fd, libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT, 1)?;
    } else {
        setsockopt_int(fd, libc::IPPROTO_IP, libc::IP_RECVTTL, 1)?;
    }
    let mut control = CmsgBuf::ZERO;
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: as in `recvmsg`: every pointer refers to a live, exclusively borrowed buffer of
    // the given size; the CMSG macros stay within `msg_controllen`.
    unsafe {
        let mut msg: libc::msghdr = mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.0.as_mut_ptr().cast();
        msg.msg_controllen = CMSG_BUF as _;
        let rc = libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT);
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut ttl = None;
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            let (level, ty) = ((*cmsg).cmsg_level, (*cmsg).cmsg_type);
            if (level == libc::IPPROTO_IP && ty == libc::IP_TTL)
                || (level == libc::IPPROTO_IPV6 && ty == libc::IPV6_HOPLIMIT)
            {
                let v = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>());
                ttl = u8::try_from(v).ok();
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
        Ok((rc as usize, ttl))
    }
}

/// Test helper: waits up to `ms` milliseconds for `fd` to be readable.
#[cfg(test)]
pub(super) fn poll_readable(fd: RawFd, ms: i32) {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `pfd` is one valid pollfd for the duration of the call.
    unsafe { libc::poll(&mut pfd, 1, ms) };
}
