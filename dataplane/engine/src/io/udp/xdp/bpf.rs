//! The steering XDP program, hand-assembled, and the `bpf(2)` calls that load and attach it:
//! an `XSKMAP` (one entry per receive queue), the program (`BPF_PROG_TYPE_XDP`, the map fd and
//! the node's address and port patched in as immediates) and a `BPF_LINK_CREATE` link, which the
//! kernel detaches when its last fd is closed (so a crashed process leaves nothing attached).
//!
//! No compiler is needed: the program is built here from its instructions. `ebpf/steer.bpf.c`
//! (in this crate) is the same program in C, as documentation.
//!
//! The program passes to the kernel (`XDP_PASS`) everything but unfragmented IPv4 packets without
//! options and IPv6 packets whose next header is UDP, addressed to the bound address and port;
//! those it redirects to the XSK of the receiving queue, falling back to `XDP_PASS` where that
//! queue has none.
#![allow(unsafe_code)]

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

// bpf(2) commands.
const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;

/// `BPF_MAP_TYPE_XSKMAP`: queue index → AF_XDP socket.
const BPF_MAP_TYPE_XSKMAP: u32 = 17;
/// `BPF_PROG_TYPE_XDP`.
const BPF_PROG_TYPE_XDP: u32 = 6;
/// `BPF_XDP`: the attach type of an XDP link.
const BPF_XDP: u32 = 37;

/// `XDP_FLAGS_SKB_MODE`: generic XDP (in the kernel's receive path, any driver).
pub(super) const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
/// `XDP_FLAGS_DRV_MODE`: native XDP (in the driver).
pub(super) const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

// Instruction classes, sizes, modes, sources and operations (linux/bpf_common.h, linux/bpf.h).
const BPF_LD: u8 = 0x00;
const BPF_LDX: u8 = 0x01;
const BPF_JMP: u8 = 0x05;
const BPF_JMP32: u8 = 0x06;
const BPF_ALU64: u8 = 0x07;
const BPF_W: u8 = 0x00;
const BPF_H: u8 = 0x08;
const BPF_B: u8 = 0x10;
const BPF_DW: u8 = 0x18;
const BPF_IMM: u8 = 0x00;
const BPF_MEM: u8 = 0x60;
const BPF_K: u8 = 0x00;
const BPF_X: u8 = 0x08;
const BPF_ADD: u8 = 0x00;
const BPF_MOV: u8 = 0xb0;
const BPF_AND: u8 = 0x50;
const BPF_JA: u8 = 0x00;
const BPF_JGT: u8 = 0x20;
const BPF_JNE: u8 = 0x50;
const BPF_CALL: u8 = 0x80;
const BPF_EXIT: u8 = 0x90;
/// `src_reg` of a `BPF_LD_IMM64` whose immediate is a map fd.
const BPF_PSEUDO_MAP_FD: u8 = 1;

/// The `bpf_redirect_map` helper.
const FN_REDIRECT_MAP: i32 = 51;
/// The `XDP_PASS` action.
const XDP_PASS: i32 = 2;

// `struct xdp_md` field offsets.
const MD_DATA: i16 = 0;
const MD_DATA_END: i16 = 4;
const MD_RX_QUEUE_INDEX: i16 = 16;

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Insn {
    code: u8,
    /// `dst_reg:4, src_reg:4` in the bit-field order of the target.
    regs: u8,
    off: i16,
    imm: i32,
}

impl Insn {
    fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        let regs = if cfg!(target_endian = "little") {
            dst | (src << 4)
        } else {
            (dst << 4) | src
        };
        Insn {
            code,
            regs,
            off,
            imm,
        }
    }
}

/// A jump target in [`Asm`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Label {
    Pass,
    V4,
    V6,
    Redirect,
}

/// A tiny assembler: instructions plus jumps to labels resolved at the end.
#[derive(Debug, Default)]
struct Asm {
    insns: Vec<Insn>,
    jumps: Vec<(usize, Label)>,
    labels: Vec<(Label, usize)>,
}

// Registers.
const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;
const R6: u8 = 6;

impl Asm {
    fn label(&mut self, l: Label) {
        self.labels.push((l, self.insns.len()));
    }
    fn mov_reg(&mut self, dst: u8, src: u8) {
        self.insns
            .push(Insn::new(BPF_ALU64 | BPF_MOV | BPF_X, dst, src, 0, 0));
    }
    fn mov_imm(&mut self, dst: u8, imm: i32) {
        self.insns
            .push(Insn::new(BPF_ALU64 | BPF_MOV | BPF_K, dst, 0, 0, imm));
    }
    fn add_imm(&mut self, dst: u8, imm: i32) {
        self.insns
            .push(Insn::new(BPF_ALU64 | BPF_ADD | BPF_K, dst, 0, 0, imm));
    }
    fn and_imm(&mut self, dst: u8, imm: i32) {
        self.insns
            .push(Insn::new(BPF_ALU64 | BPF_AND | BPF_K, dst, 0, 0, imm));
    }
    /// `dst = *(size *)(src + off)`.
    fn load(&mut self, size: u8, dst: u8, src: u8, off: i16) {
        self.insns
            .push(Insn::new(BPF_LDX | BPF_MEM | size, dst, src, off, 0));
    }
    /// `if dst > src (64-bit, unsigned) goto l` (packet bounds checks).
    fn jgt_reg(&mut self, dst: u8, src: u8, l: Label) {
        self.jumps.push((self.insns.len(), l));
        self.insns
            .push(Insn::new(BPF_JMP | BPF_JGT | BPF_X, dst, src, 0, 0));
    }
    /// `if (u32)dst != imm goto l` (a 32-bit compare: no sign extension of the immediate).
    fn jne32_imm(&mut self, dst: u8, imm: u32, l: Label) {
        self.jumps.push((self.insns.len(), l));
        self.insns.push(Insn::new(
            BPF_JMP32 | BPF_JNE | BPF_K,
            dst,
            0,
            0,
            imm as i32,
        ));
    }
    /// `if (u32)dst == imm goto l`.
    fn jeq32_imm(&mut self, dst: u8, imm: u32, l: Label) {
        self.jumps.push((self.insns.len(), l));
        // BPF_JEQ = 0x10.
        self.insns
            .push(Insn::new(BPF_JMP32 | 0x10 | BPF_K, dst, 0, 0, imm as i32));
    }
    fn ja(&mut self, l: Label) {
        self.jumps.push((self.insns.len(), l));
        self.insns.push(Insn::new(BPF_JMP | BPF_JA, 0, 0, 0, 0));
    }
    /// `dst = map` (`BPF_LD_IMM64` with `BPF_PSEUDO_MAP_FD`, two slots).
    fn ld_map_fd(&mut self, dst: u8, fd: RawFd) {
        self.insns.push(Insn::new(
            BPF_LD | BPF_DW | BPF_IMM,
            dst,
            BPF_PSEUDO_MAP_FD,
            0,
            fd,
        ));
        self.insns.push(Insn::new(0, 0, 0, 0, 0));
    }
    fn call(&mut self, helper: i32) {
        self.insns
            .push(Insn::new(BPF_JMP | BPF_CALL, 0, 0, 0, helper));
    }
    fn exit(&mut self) {
        self.insns.push(Insn::new(BPF_JMP | BPF_EXIT, 0, 0, 0, 0));
    }
    fn finish(mut self) -> Vec<Insn> {
        for (at, l) in self.jumps {
            let target = self
                .labels
                .iter()
                .find(|(x, _)| *x == l)
                .map(|(_, i)| *i)
                .expect("every label is placed");
            let off = target as isize - at as isize - 1;
            self.insns[at].off = i16::try_from(off).expect("short program");
        }
        self.insns
    }
}

/// Two bytes as they appear on the wire, as the program's native-endian 16-bit load sees them.
fn wire16(b: [u8; 2]) -> u32 {
    u32::from(u16::from_ne_bytes(b))
}

/// Four bytes as they appear on the wire, as a native-endian 32-bit load sees them.
fn wire32(b: [u8; 4]) -> u32 {
    u32::from_ne_bytes(b)
}

/// The steering program for packets to `addr`:`port`, redirecting through the XSKMAP `map_fd`.
/// spec: none (a local receive path; the datagrams it steers are ordinary VL1 packets).
pub(super) fn program(map_fd: RawFd, addr: IpAddr, port: u16) -> Vec<Insn> {
    const ETH: i16 = 14;
    let port = wire16(port.to_be_bytes());
    let mut a = Asm::default();
    a.mov_reg(R6, R1); // r6 = ctx
    a.load(BPF_W, R2, R1, MD_DATA); // r2 = data
    a.load(BPF_W, R3, R1, MD_DATA_END); // r3 = data_end
    a.mov_reg(R4, R2);
    a.add_imm(R4, i32::from(ETH));
    a.jgt_reg(R4, R3, Label::Pass); // Ethernet header present
    a.load(BPF_H, R5, R2, 12); // EtherType
    match addr {
        IpAddr::V4(_) => a.jeq32_imm(R5, wire16([0x08, 0x00]), Label::V4),
        IpAddr::V6(_) => a.jeq32_imm(R5, wire16([0x86, 0xdd]), Label::V6),
    }
    a.ja(Label::Pass);
    match addr {
        IpAddr::V4(ip) => {
            a.label(Label::V4);
            a.mov_reg(R4, R2);
            a.add_imm(R4, i32::from(ETH + 20 + 8));
            a.jgt_reg(R4, R3, Label::Pass); // IPv4 (no options) + UDP headers present
            a.load(BPF_B, R5, R2, ETH);
            a.jne32_imm(R5, 0x45, Label::Pass); // version 4, header length 20
            a.load(BPF_B, R5, R2, ETH + 9);
            a.jne32_imm(R5, 17, Label::Pass); // UDP
            a.load(BPF_H, R5, R2, ETH + 6);
            a.and_imm(R5, wire16([0x3f, 0xff]) as i32);
            a.jne32_imm(R5, 0, Label::Pass); // a fragment (MF or an offset): the kernel reassembles
            a.load(BPF_W, R5, R2, ETH + 16);
            a.jne32_imm(R5, wire32(ip.octets()), Label::Pass); // destination address
            a.load(BPF_H, R5, R2, ETH + 20 + 2);
            a.jne32_imm(R5, port, Label::Pass); // destination port
            a.ja(Label::Redirect);
        }
        IpAddr::V6(ip) => {
            a.label(Label::V6);
            a.mov_reg(R4, R2);
            a.add_imm(R4, i32::from(ETH + 40 + 8));
            a.jgt_reg(R4, R3, Label::Pass); // IPv6 + UDP headers present
            a.load(BPF_B, R5, R2, ETH + 6);
            a.jne32_imm(R5, 17, Label::Pass); // next header UDP (no extension headers)
            let o = ip.octets();
            for k in 0..4 {
                let w = [o[4 * k], o[4 * k + 1], o[4 * k + 2], o[4 * k + 3]];
                a.load(BPF_W, R5, R2, ETH + 24 + 4 * k as i16);
                a.jne32_imm(R5, wire32(w), Label::Pass); // destination address
            }
            a.load(BPF_H, R5, R2, ETH + 40 + 2);
            a.jne32_imm(R5, port, Label::Pass); // destination port
            a.ja(Label::Redirect);
        }
    }
    a.label(Label::Redirect);
    a.load(BPF_W, R2, R6, MD_RX_QUEUE_INDEX); // key: the receiving queue
    a.ld_map_fd(R1, map_fd);
    a.mov_imm(R3, XDP_PASS); // no XSK on this queue: pass
    a.call(FN_REDIRECT_MAP);
    a.exit();
    a.label(Label::Pass);
    a.mov_imm(R0, XDP_PASS);
    a.exit();
    a.finish()
}

/// One `bpf(2)` call with the attribute block `attr`; returns the fd or value it gave.
fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<RawFd> {
    // SAFETY: `attr` is a live, initialized `repr(C)` attribute block of the size passed; the
    // kernel reads it (and writes back into it only within that size).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            (attr as *mut T).cast::<libc::c_void>(),
            size_of::<T>() as libc::c_uint,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc as RawFd)
    }
}

/// Wraps a new fd returned by the kernel.
fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: `fd` was just returned by the kernel to us and is owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// A 16-byte object name as the kernel takes it.
fn name16(s: &str) -> [u8; 16] {
    let mut n = [0u8; 16];
    for (d, b) in n.iter_mut().zip(s.bytes().take(15)) {
        *d = b;
    }
    n
}

/// The `BPF_MAP_CREATE` part of `union bpf_attr` (padded to the fields older kernels know).
#[repr(C)]
#[derive(Default)]
struct MapCreate {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
    map_ifindex: u32,
    btf_fd: u32,
    btf_key_type_id: u32,
    btf_value_type_id: u32,
    btf_vmlinux_value_type_id: u32,
    map_extra: u64,
}

/// Creates an XSKMAP with `entries` slots (queue index → XSK fd).
pub(super) fn create_xskmap(entries: u32) -> io::Result<OwnedFd> {
    let mut attr = MapCreate {
        map_type: BPF_MAP_TYPE_XSKMAP,
        key_size: 4,
        value_size: 4,
        max_entries: entries.max(1),
        map_name: name16("weft_xsks"),
        ..MapCreate::default()
    };
    bpf(BPF_MAP_CREATE, &mut attr).map(owned)
}

/// The `BPF_MAP_*_ELEM` part of `union bpf_attr`.
#[repr(C)]
struct MapElem {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// Sets `map[queue] = xsk`.
pub(super) fn set_xsk(map: &OwnedFd, queue: u32, xsk: RawFd) -> io::Result<()> {
    let key = queue;
    let value = xsk as u32;
    let mut attr = MapElem {
        map_fd: map.as_raw_fd() as u32,
        _pad: 0,
        key: &key as *const u32 as u64,
        value: &value as *const u32 as u64,
        flags: 0, // BPF_ANY
    };
    bpf(BPF_MAP_UPDATE_ELEM, &mut attr).map(drop)
}

/// The `BPF_PROG_LOAD` part of `union bpf_attr` (up to `expected_attach_type`).
#[repr(C)]
#[derive(Default)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// Loads `insns` as an XDP program. On refusal, the error carries the verifier's last words.
pub(super) fn load_xdp(insns: &[Insn]) -> io::Result<OwnedFd> {
    let license = c"Apache-2.0";
    let attempt = |log: Option<&mut Vec<u8>>| {
        let mut attr = ProgLoad {
            prog_type: BPF_PROG_TYPE_XDP,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            prog_name: name16("weft_steer"),
            expected_attach_type: BPF_XDP,
            ..ProgLoad::default()
        };
        if let Some(buf) = log {
            attr.log_level = 1;
            attr.log_size = buf.len() as u32;
            attr.log_buf = buf.as_mut_ptr() as u64;
        }
        bpf(BPF_PROG_LOAD, &mut attr).map(owned)
    };
    match attempt(None) {
        Ok(fd) => Ok(fd),
        Err(e)
            if e.raw_os_error() == Some(libc::EACCES) || e.raw_os_error() == Some(libc::EINVAL) =>
        {
            let mut log = vec![0u8; 64 << 10];
            let again = attempt(Some(&mut log));
            let text =
                String::from_utf8_lossy(&log[..log.iter().position(|&b| b == 0).unwrap_or(0)])
                    .trim_end()
                    .lines()
                    .last()
                    .unwrap_or("")
                    .to_owned();
            match again {
                Ok(fd) => Ok(fd),
                Err(_) if text.is_empty() => Err(e),
                Err(_) => Err(io::Error::new(e.kind(), format!("{e}; verifier: {text}"))),
            }
        }
        Err(e) => Err(e),
    }
}

/// The `BPF_LINK_CREATE` part of `union bpf_attr` (XDP: no target-specific fields).
#[repr(C)]
#[derive(Default)]
struct LinkCreate {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
    _rest: [u64; 4],
}

/// Attaches `prog` to interface `ifindex` (`flags`: [`XDP_FLAGS_SKB_MODE`] or
/// [`XDP_FLAGS_DRV_MODE`]); the program stays attached while the returned link fd is open.
pub(super) fn attach_xdp(prog: &OwnedFd, ifindex: u32, flags: u32) -> io::Result<OwnedFd> {
    let mut attr = LinkCreate {
        prog_fd: prog.as_raw_fd() as u32,
        target_ifindex: ifindex,
        attach_type: BPF_XDP,
        flags,
        ..LinkCreate::default()
    };
    bpf(BPF_LINK_CREATE, &mut attr).map(owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn programs_are_small_and_jumps_resolve() {
        for addr in [
            IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)),
            IpAddr::V6(Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 1)),
        ] {
            let p = program(7, addr, 9993);
            assert!(p.len() < 64, "{} instructions", p.len());
            // Every jump lands inside the program.
            for (i, insn) in p.iter().enumerate() {
                let class = insn.code & 0x07;
                let op = insn.code & 0xf0;
                if (class == BPF_JMP || class == BPF_JMP32) && op != BPF_CALL && op != BPF_EXIT {
                    let to = i as isize + 1 + insn.off as isize;
                    assert!(to > i as isize && (to as usize) < p.len(), "jump at {i}");
                }
            }
            // The last two instructions are `r0 = XDP_PASS; exit`.
            assert_eq!(p[p.len() - 1].code, BPF_JMP | BPF_EXIT);
            assert_eq!(p[p.len() - 2].imm, XDP_PASS);
            // The map fd and the port are patched in.
            assert!(
                p.iter()
                    .any(|i| i.code == BPF_LD | BPF_DW | BPF_IMM && i.imm == 7)
            );
            assert!(
                p.iter()
                    .any(|i| i.imm as u32 == wire16(9993u16.to_be_bytes()))
            );
        }
    }
}
