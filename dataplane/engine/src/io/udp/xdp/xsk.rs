//! One AF_XDP socket (XSK) for receiving, in copy mode: its own UMEM (an anonymous mapping cut
//! into fixed frames), the fill ring that hands free frames to the kernel, the RX ring that
//! returns filled ones, and the completion ring the kernel requires (unused: nothing is sent
//! through the XSK).
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};

/// `SOL_XDP`.
const SOL_XDP: libc::c_int = 283;
const XDP_MMAP_OFFSETS: libc::c_int = 1;
const XDP_RX_RING: libc::c_int = 2;
const XDP_UMEM_REG: libc::c_int = 4;
const XDP_UMEM_FILL_RING: libc::c_int = 5;
const XDP_UMEM_COMPLETION_RING: libc::c_int = 6;
const XDP_STATISTICS: libc::c_int = 7;
/// `sxdp_flags`: copy mode (works with generic and native XDP on every driver).
const XDP_COPY: u16 = 1 << 1;
const XDP_PGOFF_RX_RING: libc::off_t = 0;
const XDP_UMEM_PGOFF_FILL_RING: libc::off_t = 0x1_0000_0000;
const XDP_UMEM_PGOFF_COMPLETION_RING: libc::off_t = 0x1_8000_0000;

/// The size of one UMEM frame (the largest frame received is this less the kernel's 256-byte
/// headroom).
pub(super) const FRAME_SIZE: usize = 4096;
/// Frames per XSK (16 MiB of UMEM, pinned by the kernel): the fill ring holds them all.
pub(super) const FRAMES: u32 = 4096;
/// RX ring entries.
const RX_ENTRIES: u32 = 4096;
/// How many times a bind refused with EBUSY is retried, 10 ms apart.
const BIND_BUSY_RETRIES: u32 = 30;
/// Completion ring entries (required, unused).
const COMP_ENTRIES: u32 = 64;

/// `struct xdp_ring_offset`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct RingOffset {
    producer: u64,
    consumer: u64,
    desc: u64,
    flags: u64,
}

/// `struct xdp_mmap_offsets`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct MmapOffsets {
    rx: RingOffset,
    tx: RingOffset,
    fr: RingOffset,
    cr: RingOffset,
}

/// `struct xdp_umem_reg` (with the `flags` and `tx_metadata_len` fields zero).
#[repr(C)]
struct UmemReg {
    addr: u64,
    len: u64,
    chunk_size: u32,
    headroom: u32,
    flags: u32,
    tx_metadata_len: u32,
}

/// `struct sockaddr_xdp`.
#[repr(C)]
struct SockaddrXdp {
    family: u16,
    flags: u16,
    ifindex: u32,
    queue_id: u32,
    shared_umem_fd: u32,
}

/// `struct xdp_desc`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct XdpDesc {
    addr: u64,
    len: u32,
    options: u32,
}

/// `struct xdp_statistics`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct XdpStatistics {
    pub(super) rx_dropped: u64,
    pub(super) rx_invalid_descs: u64,
    pub(super) tx_invalid_descs: u64,
    pub(super) rx_ring_full: u64,
    pub(super) rx_fill_ring_empty_descs: u64,
    pub(super) tx_ring_empty_descs: u64,
}

/// A shared mapping of the socket or an anonymous one (the UMEM).
#[derive(Debug)]
struct Map {
    ptr: *mut u8,
    len: usize,
}

impl Map {
    fn new(len: usize, fd: Option<(RawFd, libc::off_t)>) -> io::Result<Map> {
        let (flags, fd, off) = match fd {
            Some((fd, off)) => (libc::MAP_SHARED | libc::MAP_POPULATE, fd, off),
            None => (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0),
        };
        // SAFETY: a fresh mapping (of the socket's ring at `off`, or anonymous); no existing
        // memory is affected.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                off,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Map {
            ptr: ptr.cast(),
            len,
        })
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by `Map::new` with this length and is unmapped once.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// A single-producer single-consumer ring shared with the kernel.
#[derive(Debug)]
struct Ring {
    /// Keeps the ring mapped.
    _map: Map,
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    descs: *mut u8,
    mask: u32,
}

impl Ring {
    fn new(
        fd: RawFd,
        off: &RingOffset,
        entries: u32,
        elem: usize,
        pgoff: libc::off_t,
    ) -> io::Result<Ring> {
        let len = off.desc as usize + entries as usize * elem;
        let map = Map::new(len, Some((fd, pgoff)))?;
        // SAFETY: the kernel-given offsets lie inside the mapping of `len` bytes; the producer
        // and consumer words are 4-byte aligned `u32`s the kernel accesses atomically.
        let (producer, consumer, descs) = unsafe {
            (
                map.ptr.add(off.producer as usize).cast::<AtomicU32>() as *const AtomicU32,
                map.ptr.add(off.consumer as usize).cast::<AtomicU32>() as *const AtomicU32,
                map.ptr.add(off.desc as usize),
            )
        };
        Ok(Ring {
            _map: map,
            producer,
            consumer,
            descs,
            mask: entries - 1,
        })
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: points into `self.map`, alive as long as `self`.
        unsafe { &*self.producer }
    }

    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as for `producer`.
        unsafe { &*self.consumer }
    }
}

/// An AF_XDP socket bound to one queue of one interface, receiving in copy mode.
#[derive(Debug)]
pub(super) struct Xsk {
    // Field order is drop order: the socket closes before its rings and UMEM are unmapped.
    fd: OwnedFd,
    fill: Ring,
    rx: Ring,
    _comp: Ring,
    umem: Map,
    queue: u32,
}

// SAFETY: the raw pointers point into mappings owned by this value; they are only used through
// `&mut self` (or `&self` for reads of kernel counters), so moving the socket between threads is
// harmless.
unsafe impl Send for Xsk {}

fn setsockopt<T>(fd: RawFd, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` is a live `repr(C)` value of the size passed; the kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            SOL_XDP,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn getsockopt<T: Default>(fd: RawFd, name: libc::c_int) -> io::Result<T> {
    let mut value = T::default();
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: `value` is a live, exclusively borrowed `repr(C)` value; `len` says its size and
    // the kernel writes at most that.
    let rc =
        unsafe { libc::getsockopt(fd, SOL_XDP, name, (&mut value as *mut T).cast(), &mut len) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(value)
    }
}

/// Adds what happened to an error.
fn ctx(what: &str) -> impl FnOnce(io::Error) -> io::Error + '_ {
    move |e| io::Error::new(e.kind(), format!("{what}: {e}"))
}

impl Xsk {
    /// An XSK on queue `queue` of interface `ifindex`, its fill ring full of free frames.
    pub(super) fn open(ifindex: u32, queue: u32) -> io::Result<Xsk> {
        // SAFETY: plain socket creation.
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(ctx("AF_XDP socket")(io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a new socket owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let s = fd.as_raw_fd();
        let umem = Map::new(FRAMES as usize * FRAME_SIZE, None).map_err(ctx("UMEM mmap"))?;
        let reg = UmemReg {
            addr: umem.ptr as u64,
            len: umem.len as u64,
            chunk_size: FRAME_SIZE as u32,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        setsockopt(s, XDP_UMEM_REG, &reg).map_err(ctx("XDP_UMEM_REG"))?;
        setsockopt(s, XDP_UMEM_FILL_RING, &FRAMES).map_err(ctx("XDP_UMEM_FILL_RING"))?;
        setsockopt(s, XDP_UMEM_COMPLETION_RING, &COMP_ENTRIES)
            .map_err(ctx("XDP_UMEM_COMPLETION_RING"))?;
        setsockopt(s, XDP_RX_RING, &RX_ENTRIES).map_err(ctx("XDP_RX_RING"))?;
        let off: MmapOffsets = getsockopt(s, XDP_MMAP_OFFSETS).map_err(ctx("XDP_MMAP_OFFSETS"))?;
        let fill = Ring::new(s, &off.fr, FRAMES, 8, XDP_UMEM_PGOFF_FILL_RING)
            .map_err(ctx("fill ring mmap"))?;
        let comp = Ring::new(s, &off.cr, COMP_ENTRIES, 8, XDP_UMEM_PGOFF_COMPLETION_RING)
            .map_err(ctx("completion ring mmap"))?;
        let rx = Ring::new(
            s,
            &off.rx,
            RX_ENTRIES,
            size_of::<XdpDesc>(),
            XDP_PGOFF_RX_RING,
        )
        .map_err(ctx("RX ring mmap"))?;
        let mut xsk = Xsk {
            fd,
            fill,
            rx,
            _comp: comp,
            umem,
            queue,
        };
        // Every frame starts in the fill ring.
        let start = xsk.fill.producer().load(Ordering::Relaxed);
        for i in 0..FRAMES {
            xsk.fill_slot(start.wrapping_add(i), u64::from(i) * FRAME_SIZE as u64);
        }
        xsk.fill
            .producer()
            .store(start.wrapping_add(FRAMES), Ordering::Release);
        let addr = SockaddrXdp {
            family: libc::AF_XDP as u16,
            flags: XDP_COPY,
            ifindex,
            queue_id: queue,
            shared_umem_fd: 0,
        };
        // A closed XSK releases its queue asynchronously (the kernel defers the pool's
        // teardown to a work item): a queue freed a moment ago may still be busy, so EBUSY is
        // retried for a short while before it is taken to mean another live XSK.
        let mut tries = 0;
        loop {
            // SAFETY: `addr` is a live `sockaddr_xdp` of the size passed.
            let rc = unsafe {
                libc::bind(
                    s,
                    (&addr as *const SockaddrXdp).cast(),
                    size_of::<SockaddrXdp>() as libc::socklen_t,
                )
            };
            if rc == 0 {
                return Ok(xsk);
            }
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EBUSY) || tries >= BIND_BUSY_RETRIES {
                return Err(ctx("XSK bind")(e));
            }
            tries += 1;
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// The queue this socket receives from.
    pub(super) fn queue(&self) -> u32 {
        self.queue
    }

    /// Writes frame address `addr` into fill-ring position `pos` (not yet published).
    fn fill_slot(&mut self, pos: u32, addr: u64) {
        let i = (pos & self.fill.mask) as usize;
        // SAFETY: `i <= mask`, so the 8-byte slot lies inside the ring's descriptor area, which
        // only we write while the slot is ours (between the kernel's consumer and our producer).
        unsafe { self.fill.descs.cast::<u64>().add(i).write(addr) };
    }

    /// Takes up to `max` received frames, calling `each` with the frame's bytes, and gives the
    /// frames back to the kernel; returns how many were taken.
    pub(super) fn drain(&mut self, max: usize, mut each: impl FnMut(&[u8])) -> usize {
        let cons = self.rx.consumer().load(Ordering::Relaxed);
        let prod = self.rx.producer().load(Ordering::Acquire);
        let n = (prod.wrapping_sub(cons) as usize).min(max);
        if n == 0 {
            return 0;
        }
        let fill_prod = self.fill.producer().load(Ordering::Relaxed);
        for k in 0..n {
            let i = (cons.wrapping_add(k as u32) & self.rx.mask) as usize;
            // SAFETY: `i <= mask`: the descriptor lies in the RX ring, published by the kernel
            // (its producer was read with acquire ordering) and not yet released by us.
            let desc = unsafe { self.rx.descs.cast::<XdpDesc>().add(i).read() };
            let (addr, len) = (desc.addr as usize, desc.len as usize);
            if addr
                .checked_add(len)
                .is_some_and(|end| end <= self.umem.len)
            {
                // SAFETY: the range lies inside the UMEM (checked); the kernel wrote the frame
                // before publishing it and does not touch it until it is back in the fill ring.
                let frame = unsafe { std::slice::from_raw_parts(self.umem.ptr.add(addr), len) };
                each(frame);
            }
            // Back to the kernel (aligned mode: the frame's base address).
            self.fill_slot(
                fill_prod.wrapping_add(k as u32),
                (addr & !(FRAME_SIZE - 1)) as u64,
            );
        }
        self.rx
            .consumer()
            .store(cons.wrapping_add(n as u32), Ordering::Release);
        // The fill ring holds every frame not in flight, so these always fit.
        self.fill
            .producer()
            .store(fill_prod.wrapping_add(n as u32), Ordering::Release);
        n
    }

    /// The kernel's counters for this socket.
    pub(super) fn statistics(&self) -> io::Result<XdpStatistics> {
        getsockopt(self.fd.as_raw_fd(), XDP_STATISTICS)
    }
}

impl AsFd for Xsk {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
