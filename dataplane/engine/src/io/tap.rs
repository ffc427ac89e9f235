//! The TAP device of a virtual network (Linux): creation through `/dev/net/tun`, MAC, MTU and
//! flags through interface ioctls, non-blocking frame reads and writes, the interface naming rule,
//! and the multicast groups the kernel has joined on the device.
//!
//! The device lives in the network namespace of the thread that calls [`Tap::create`]; the
//! control socket used for the interface ioctls is opened at the same time, so later calls act on
//! the same namespace whichever thread makes them.
//!
//! spec: service.md §8.1 (creation, naming, frames), vl2.md §3.2 (multicast subscriptions)
#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The MTU of a network whose configuration does not say otherwise. spec: service.md §8.1
pub const DEFAULT_MTU: u32 = 2800;

/// The longest interface name the kernel accepts (`IFNAMSIZ` less the NUL).
pub const MAX_IFNAME_LEN: usize = libc::IFNAMSIZ - 1;

/// The clone devices tried in order. spec: service.md §8.1
const TUN_PATHS: [&str; 2] = ["/dev/net/tun", "/dev/tun"];

/// Where an interface named `<name>` shows up while it exists (in the caller's namespace).
/// spec: service.md §8.1
const IPV4_CONF_DIR: &str = "/proc/sys/net/ipv4/conf";

/// How a TAP is opened. The defaults are what ZeroTier does: one queue, no virtio header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TapOptions {
    /// `IFF_MULTI_QUEUE`: the device accepts more queues under the same name (one per worker).
    /// Only the first queue is opened by [`Tap::create`].
    pub multi_queue: bool,
    /// `IFF_VNET_HDR`: every frame read or written starts with a `virtio_net_hdr` (the way to
    /// checksum and segmentation offloads). With it set the caller owns that header; no offloads
    /// are negotiated here yet.
    pub vnet_hdr: bool,
}

impl TapOptions {
    /// The `ifr_flags` for `TUNSETIFF`: always a TAP without the packet-info prefix.
    fn ifr_flags(&self) -> libc::c_short {
        let mut flags = libc::IFF_TAP | libc::IFF_NO_PI;
        if self.multi_queue {
            flags |= libc::IFF_MULTI_QUEUE;
        }
        if self.vnet_hdr {
            flags |= libc::IFF_VNET_HDR;
        }
        // The TUN flags all fit in the 16-bit `ifr_flags` field.
        flags as libc::c_short
    }
}

/// An open TAP device (one queue). Closing it (drop) removes the interface, since it is not
/// persistent. The descriptor is non-blocking: [`Tap::read`] and [`Tap::write`] return
/// [`io::ErrorKind::WouldBlock`] instead of waiting; wait for readiness on [`AsFd::as_fd`].
#[derive(Debug)]
pub struct Tap {
    fd: OwnedFd,
    /// An `AF_INET` datagram socket in the device's namespace, for the interface ioctls.
    ctl: OwnedFd,
    name: String,
    /// Frames carry a `virtio_net_hdr` (opened with `IFF_VNET_HDR`).
    vnet_hdr: bool,
}

impl Tap {
    /// Creates (or, with `multi_queue`, attaches to) the TAP interface `name` in the calling
    /// thread's network namespace: opens `/dev/net/tun` (fallback `/dev/tun`) non-blocking and
    /// issues `TUNSETIFF` with `IFF_TAP | IFF_NO_PI`. An empty `name` lets the kernel choose
    /// (`tap%d`). The interface starts down; see [`Tap::set_up`]. spec: service.md §8.1
    pub fn create(name: &str, opts: &TapOptions) -> io::Result<Tap> {
        if !name.is_empty() && !is_valid_ifname(name) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid interface name {name:?}"),
            ));
        }
        let file = open_clone_device()?;
        let fd = OwnedFd::from(file);
        let mut ifr = ifreq_named(name);
        ifr.ifr_ifru.ifru_flags = opts.ifr_flags();
        // SAFETY: `fd` is an open tun clone device; TUNSETIFF reads and writes one `ifreq`, and
        // `ifr` is a valid, exclusively borrowed `ifreq` for the duration of the call.
        let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut ifr) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        let name = ifreq_name(&ifr);
        let ctl = control_socket()?;
        Ok(Tap {
            fd,
            ctl,
            name,
            vnet_hdr: opts.vnet_hdr,
        })
    }

    /// Wraps a TAP descriptor created elsewhere (passed by the control plane over a Unix
    /// socket): reads and writes frames; `name` is informational. The descriptor must be an
    /// attached TAP queue; `vnet_hdr` says whether it was opened with `IFF_VNET_HDR`.
    pub fn from_fd(fd: OwnedFd, name: &str, vnet_hdr: bool) -> io::Result<Tap> {
        let ctl = control_socket()?;
        Ok(Tap {
            fd,
            ctl,
            name: name.to_owned(),
            vnet_hdr,
        })
    }

    /// Whether every frame read or written starts with a `virtio_net_hdr`.
    pub fn vnet_hdr(&self) -> bool {
        self.vnet_hdr
    }

    /// A duplicate of the device descriptor (to pass to another process).
    pub fn dup_fd(&self) -> io::Result<OwnedFd> {
        self.fd.try_clone()
    }

    /// The interface name the kernel gave the device.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The interface index (`SIOCGIFINDEX`).
    pub fn ifindex(&self) -> io::Result<u32> {
        let mut ifr = ifreq_named(&self.name);
        self.ctl_ioctl(libc::SIOCGIFINDEX, &mut ifr)?;
        // SAFETY: SIOCGIFINDEX succeeded, so the kernel filled `ifru_ifindex`; every bit
        // pattern is a valid `c_int`.
        let index = unsafe { ifr.ifr_ifru.ifru_ifindex };
        u32::try_from(index).map_err(|_| io::Error::other("negative interface index"))
    }

    /// Sets the interface's Ethernet address (`SIOCSIFHWADDR`); for a network this is the node's
    /// MAC on it (vl2.md §2.1). spec: service.md §8.1
    pub fn set_mac(&self, mac: [u8; 6]) -> io::Result<()> {
        let mut ifr = ifreq_named(&self.name);
        // SAFETY: writing a plain-old-data field of a union that we own; no reads of other fields.
        let hw = unsafe { &mut ifr.ifr_ifru.ifru_hwaddr };
        hw.sa_family = libc::ARPHRD_ETHER;
        for (dst, &b) in hw.sa_data.iter_mut().zip(mac.iter()) {
            *dst = libc::c_char::from_ne_bytes([b]);
        }
        self.ctl_ioctl(libc::SIOCSIFHWADDR, &mut ifr)
    }

    /// Sets the interface MTU (`SIOCSIFMTU`); the network MTU, [`DEFAULT_MTU`] unless configured.
    /// spec: service.md §8.1
    pub fn set_mtu(&self, mtu: u32) -> io::Result<()> {
        let mtu = libc::c_int::try_from(mtu)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "MTU out of range"))?;
        let mut ifr = ifreq_named(&self.name);
        ifr.ifr_ifru.ifru_mtu = mtu;
        self.ctl_ioctl(libc::SIOCSIFMTU, &mut ifr)
    }

    /// Brings the interface up with `UP | MULTICAST` (spec: service.md §8.1), or takes it down
    /// (clears `UP`, leaves the other flags).
    pub fn set_up(&self, up: bool) -> io::Result<()> {
        let mut ifr = ifreq_named(&self.name);
        self.ctl_ioctl(libc::SIOCGIFFLAGS, &mut ifr)?;
        // SAFETY: SIOCGIFFLAGS succeeded, so the kernel filled `ifru_flags`; every bit pattern is
        // a valid `c_short`.
        let mut flags = unsafe { ifr.ifr_ifru.ifru_flags };
        // IFF_UP and IFF_MULTICAST are in the low 16 bits (the width of `ifr_flags`).
        let want = (libc::IFF_UP | libc::IFF_MULTICAST) as libc::c_short;
        if up {
            flags |= want;
        } else {
            flags &= !(libc::IFF_UP as libc::c_short);
        }
        ifr.ifr_ifru.ifru_flags = flags;
        self.ctl_ioctl(libc::SIOCSIFFLAGS, &mut ifr)
    }

    /// Turns on checksum and TCP segmentation offloads for a TAP opened with `vnet_hdr`: every
    /// read and write carries a 10-byte `virtio_net_hdr` (see [`crate::offload`]), the kernel
    /// may hand over TCP super-frames (up to 64 KiB) and frames with partial checksums, and
    /// accepts the same on write (`TUNSETVNETHDRSZ` 10, `TUNSETOFFLOAD` CSUM | TSO4 | TSO6).
    pub fn enable_offloads(&self) -> io::Result<()> {
        let size: libc::c_int = crate::offload::VNET_HDR_LEN as libc::c_int;
        // SAFETY: `fd` is an attached TAP queue; TUNSETVNETHDRSZ reads one `int` through the
        // pointer, which is valid for the call.
        let rc = unsafe { libc::ioctl(self.fd.as_raw_fd(), libc::TUNSETVNETHDRSZ, &size) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        let flags = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6;
        // SAFETY: TUNSETOFFLOAD takes the flags as the (integer) argument itself.
        let rc = unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                libc::TUNSETOFFLOAD,
                libc::c_ulong::from(flags),
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Reads one frame (`dst(6) src(6) ethertype(2) payload`, spec: service.md §8.1) into `buf`;
    /// a frame longer than `buf` is truncated by the kernel. [`io::ErrorKind::WouldBlock`] when
    /// none is waiting.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes and outlives the call; the fd is
        // open for as long as `self` lives.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        // A negative return (only -1) is an error; the conversion fails exactly then.
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }

    /// Writes one frame to the interface (the kernel receives it as if from the wire).
    /// [`io::ErrorKind::WouldBlock`] when the device queue is full.
    pub fn write(&self, frame: &[u8]) -> io::Result<usize> {
        // SAFETY: `frame` is valid for reads of `frame.len()` bytes and outlives the call; the fd
        // is open for as long as `self` lives.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len()) };
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }

    /// One interface ioctl on the control socket with `ifr`.
    fn ctl_ioctl(&self, request: libc::Ioctl, ifr: &mut libc::ifreq) -> io::Result<()> {
        // SAFETY: `ctl` is an open socket; the SIOC[GS]IF* requests used here read and write one
        // `ifreq`, and `ifr` is a valid, exclusively borrowed `ifreq` for the call.
        let rc = unsafe { libc::ioctl(self.ctl.as_raw_fd(), request, ifr as *mut libc::ifreq) };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}

impl AsFd for Tap {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Tap {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Opens the first tun clone device that exists, non-blocking and close-on-exec.
fn open_clone_device() -> io::Result<File> {
    let mut last = None;
    for path in TUN_PATHS {
        match OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
        {
            Ok(f) => return Ok(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::from(io::ErrorKind::NotFound)))
}

/// A datagram socket for interface ioctls, in the calling thread's namespace.
fn control_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call with constant arguments; no pointers involved.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2), is open, and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A zeroed `ifreq` carrying `name` (already checked to fit, or empty).
fn ifreq_named(name: &str) -> libc::ifreq {
    // SAFETY: `ifreq` is a C struct of integers, arrays and a union of such (and one raw
    // pointer); the all-zero bit pattern is a valid value of each.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, &b) in ifr
        .ifr_name
        .iter_mut()
        .zip(name.as_bytes().iter().take(MAX_IFNAME_LEN))
    {
        *dst = libc::c_char::from_ne_bytes([b]);
    }
    ifr
}

/// The NUL-terminated name the kernel left in `ifr`.
fn ifreq_name(ifr: &libc::ifreq) -> String {
    let bytes: Vec<u8> = ifr
        .ifr_name
        .iter()
        .map(|c| c.to_ne_bytes()[0])
        .take_while(|&b| b != 0)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Whether the kernel would accept `name` as an interface name: 1 to 15 bytes, none of them
/// `/`, `:`, whitespace or NUL, and not `.` or `..`.
pub fn is_valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_IFNAME_LEN
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace())
}

/// The base32 alphabet of interface names. spec: service.md §8.1
const NAME_ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// The interface name for network `nwid` at attempt `trial`: `zt` followed by the 40-bit value
/// `((nwid ^ (nwid >> 24)) + trial) mod 2^40` in base32, big-endian, five bits per character.
/// spec: service.md §8.1
pub fn tap_name(nwid: u64, trial: u32) -> String {
    let v = (nwid ^ (nwid >> 24)).wrapping_add(u64::from(trial)) & 0xff_ffff_ffff;
    let mut name = String::with_capacity(10);
    name.push_str("zt");
    for i in (0..8).rev() {
        // The mask keeps the index below 32.
        name.push(char::from(NAME_ALPHABET[((v >> (5 * i)) & 31) as usize]));
    }
    name
}

/// Whether an interface called `name` exists in the calling thread's network namespace.
/// spec: service.md §8.1 (`/proc/sys/net/ipv4/conf/<name>`)
pub fn interface_exists(name: &str) -> bool {
    is_valid_ifname(name) && Path::new(IPV4_CONF_DIR).join(name).exists()
}

/// The name to create network `nwid`'s TAP under: the `devicemap` name (from
/// `<home>/devicemap`, looked up by the caller) when it is a valid name and no interface has it,
/// otherwise the first [`tap_name`] trial that no interface has. spec: service.md §8.1
pub fn choose_tap_name(nwid: u64, devicemap: Option<&str>) -> String {
    choose_tap_name_with(nwid, devicemap, interface_exists)
}

/// [`choose_tap_name`] with the existence test as a parameter.
fn choose_tap_name_with(
    nwid: u64,
    devicemap: Option<&str>,
    mut exists: impl FnMut(&str) -> bool,
) -> String {
    if let Some(name) = devicemap
        && is_valid_ifname(name)
        && !exists(name)
    {
        return name.to_owned();
    }
    let mut trial = 0u32;
    loop {
        let name = tap_name(nwid, trial);
        // 2^32 trials cannot all be taken (an interface count is far below that); stop at the
        // last one rather than loop forever regardless.
        if !exists(&name) || trial == u32::MAX {
            return name;
        }
        trial += 1;
    }
}

/// The multicast MACs the kernel has joined on interface `ifname` (its `/proc/net/dev_mcast`
/// lines), sorted and without duplicates. Read through `/proc/thread-self` so that a thread in
/// another network namespace sees its own. spec: vl2.md §3.2
pub fn multicast_macs(ifname: &str) -> io::Result<Vec<[u8; 6]>> {
    let text = match std::fs::read_to_string("/proc/thread-self/net/dev_mcast") {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::read_to_string("/proc/net/dev_mcast")?
        }
        Err(e) => return Err(e),
    };
    Ok(parse_dev_mcast(&text, ifname))
}

/// The MACs of `ifname` in `/proc/net/dev_mcast` text (`index name users global hex-mac` per
/// line); malformed lines are skipped.
pub fn parse_dev_mcast(text: &str, ifname: &str) -> Vec<[u8; 6]> {
    let mut macs: Vec<[u8; 6]> = text
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let _index = fields.next()?;
            if fields.next()? != ifname {
                return None;
            }
            let hex = fields.nth(2)?;
            parse_hex_mac(hex)
        })
        .collect();
    macs.sort_unstable();
    macs.dedup();
    macs
}

/// Twelve hex digits to a MAC.
fn parse_hex_mac(hex: &str) -> Option<[u8; 6]> {
    if hex.len() != 12 || !hex.is_ascii() {
        return None;
    }
    let mut mac = [0u8; 6];
    for (i, b) in mac.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    // spec: service.md §8.1 — the five verified examples.
    #[test]
    fn tap_names_match_verified_examples() {
        let cases = [
            (0x7c55a8da82c90312u64, "ztu3lwdwmq"),
            (0x7c55a8da822e39e2, "ztu3lyny3a"),
            (0xff00160016000000, "zt74lbmaaw"),
            (0x7c55a8da82000099, "ztu3l2rwq3"),
            (0x1122334455000001, "ztkv3tgrcu"),
        ];
        for (nwid, want) in cases {
            assert_eq!(tap_name(nwid, 0), want, "nwid {nwid:016x}");
        }
    }

    #[test]
    fn tap_name_trials_count_up_and_wrap_at_40_bits() {
        let nwid = 0x7c55a8da82c90312u64;
        assert_eq!(tap_name(nwid, 1), "ztu3lwdwmr");
        // nwid ^ (nwid >> 24) is all ones here; + 1 wraps to 0 ("aaaaaaaa").
        let all_ones = 0xffff_ff00_0000_ffffu64;
        assert_eq!(tap_name(all_ones, 0), "zt77777777");
        assert_eq!(tap_name(all_ones, 1), "ztaaaaaaaa");
        for t in 0..50 {
            let n = tap_name(nwid, t);
            assert_eq!(n.len(), 10);
            assert!(is_valid_ifname(&n));
        }
    }

    #[test]
    fn choose_skips_taken_names_and_honours_devicemap() {
        let nwid = 0x7c55a8da82c90312u64;
        let taken = [tap_name(nwid, 0), tap_name(nwid, 1), "zt-mine".to_owned()];
        let exists = |n: &str| taken.iter().any(|t| t == n);
        assert_eq!(choose_tap_name_with(nwid, None, exists), tap_name(nwid, 2));
        assert_eq!(
            choose_tap_name_with(nwid, Some("office0"), exists),
            "office0"
        );
        // A mapped name already in use, or an invalid one, falls back to the generated names.
        assert_eq!(
            choose_tap_name_with(nwid, Some("zt-mine"), exists),
            tap_name(nwid, 2)
        );
        assert_eq!(
            choose_tap_name_with(nwid, Some("bad/name"), exists),
            tap_name(nwid, 2)
        );
        assert_eq!(choose_tap_name_with(nwid, None, |_| false), "ztu3lwdwmq");
    }

    #[test]
    fn interface_names_are_validated() {
        assert!(is_valid_ifname("ztu3lwdwmq"));
        assert!(is_valid_ifname("a23456789012345"));
        for bad in [
            "",
            "a234567890123456",
            ".",
            "..",
            "a/b",
            "a:1",
            "a b",
            "a\0",
        ] {
            assert!(!is_valid_ifname(bad), "{bad:?}");
        }
        assert!(Tap::create("a/b", &TapOptions::default()).is_err());
    }

    #[test]
    fn options_map_to_tun_flags() {
        let base = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
        assert_eq!(TapOptions::default().ifr_flags(), base);
        let all = TapOptions {
            multi_queue: true,
            vnet_hdr: true,
        };
        assert_eq!(
            all.ifr_flags(),
            base | (libc::IFF_MULTI_QUEUE | libc::IFF_VNET_HDR) as libc::c_short
        );
    }

    #[test]
    fn ifreq_names_round_trip() {
        let ifr = ifreq_named("ztu3lwdwmq");
        assert_eq!(ifreq_name(&ifr), "ztu3lwdwmq");
        assert_eq!(ifreq_name(&ifreq_named("")), "");
    }

    #[test]
    fn dev_mcast_is_parsed_per_interface() {
        let text = "\
1    lo              1     0     01005e000001
2    ztu3lwdwmq      1     0     333300000001
2    ztu3lwdwmq      1     0     01005e000001
2    ztu3lwdwmq      2     0     333300000001
3    eth0            1     0     333300000002
2    ztu3lwdwmq      1     0     zz3300000001
garbage
";
        assert_eq!(
            parse_dev_mcast(text, "ztu3lwdwmq"),
            vec![
                [0x01, 0x00, 0x5e, 0x00, 0x00, 0x01],
                [0x33, 0x33, 0x00, 0x00, 0x00, 0x01]
            ]
        );
        assert!(parse_dev_mcast(text, "nope").is_empty());
    }
}
