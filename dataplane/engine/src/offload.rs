//! TAP offloads, sans-IO: the `virtio_net_hdr` that prefixes every frame of a TAP opened with
//! `IFF_VNET_HDR`, TCP segmentation of the super-frames the kernel hands over when TSO is on
//! (into MTU-sized frames, as standard ZeroTier peers expect them), checksum completion for
//! frames marked "needs checksum", and the coalescing of received TCP segments into one
//! super-frame for the kernel (GRO in the data plane).
//!
//! Facts used (Linux `virtio_net.h`, the legacy TAP header in host byte order — little-endian
//! on the machines weft targets): flags `NEEDS_CSUM` = 1, `DATA_VALID` = 2; GSO types NONE = 0,
//! TCPV4 = 1, TCPV6 = 4, ECN bit 0x80; a frame marked NEEDS_CSUM carries, at
//! `csum_start + csum_offset`, the folded (not complemented) pseudo-header sum, and the receiver
//! completes the checksum over `csum_start..end`.

/// Length of the `virtio_net_hdr` without `num_buffers`.
pub const VNET_HDR_LEN: usize = 10;
/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`.
pub const F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_F_DATA_VALID`.
pub const F_DATA_VALID: u8 = 2;
/// `VIRTIO_NET_HDR_GSO_NONE`.
pub const GSO_NONE: u8 = 0;
/// `VIRTIO_NET_HDR_GSO_TCPV4`.
pub const GSO_TCPV4: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_TCPV6`.
pub const GSO_TCPV6: u8 = 4;
/// `VIRTIO_NET_HDR_GSO_ECN`.
pub const GSO_ECN: u8 = 0x80;

const ETH_LEN: usize = 14;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;

/// The header in front of each TAP frame.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VnetHdr {
    /// `F_NEEDS_CSUM` / `F_DATA_VALID`.
    pub flags: u8,
    /// `GSO_*`, with `GSO_ECN` possibly or'ed in.
    pub gso_type: u8,
    /// Length of the headers (Ethernet + IP + TCP) of a GSO frame (a hint).
    pub hdr_len: u16,
    /// Payload bytes per segment of a GSO frame (the MSS).
    pub gso_size: u16,
    /// Where checksumming starts (`F_NEEDS_CSUM`).
    pub csum_start: u16,
    /// Where, from `csum_start`, the checksum goes.
    pub csum_offset: u16,
}

impl VnetHdr {
    /// Reads the header at the start of `b` (`None` when shorter).
    pub fn parse(b: &[u8]) -> Option<VnetHdr> {
        let b = b.get(..VNET_HDR_LEN)?;
        let u = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        Some(VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u(2),
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
        })
    }

    /// The 10 header bytes.
    pub fn to_bytes(self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0u8; VNET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        b
    }

    /// Whether the frame is a super-frame to be segmented.
    pub fn is_gso(&self) -> bool {
        self.gso_type & !GSO_ECN != GSO_NONE
    }
}

/// Why a frame from the TAP could not be turned into standard frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OffloadError {
    /// Headers missing, inconsistent or of an unsupported kind (IPv6 extension headers,
    /// UDP fragmentation offload).
    #[error("cannot segment this frame")]
    Unsupported,
    /// The checksum position lies outside the frame.
    #[error("checksum position outside the frame")]
    BadChecksumOffset,
}

/// Adds `b` to a ones'-complement sum (16-bit big-endian words; an odd last byte is padded).
pub fn sum(b: &[u8], mut acc: u64) -> u64 {
    let mut chunks = b.chunks_exact(4);
    for c in &mut chunks {
        acc += u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
    }
    let rest = chunks.remainder();
    let mut i = 0;
    while i + 1 < rest.len() {
        acc += u64::from(u16::from_be_bytes([rest[i], rest[i + 1]]));
        i += 2;
    }
    if i < rest.len() {
        acc += u64::from(rest[i]) << 8;
    }
    acc
}

/// Folds a sum to 16 bits (not complemented).
pub fn fold(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The pseudo-header sum of an L4 packet of `len` bytes between the addresses in `ip` (an IPv4
/// or IPv6 header).
fn pseudo(ip: &[u8], v6: bool, proto: u8, len: usize) -> u64 {
    let addrs = if v6 { &ip[8..40] } else { &ip[12..20] };
    sum(addrs, u64::from(proto) + len as u64)
}

/// Completes the checksum of a frame marked `F_NEEDS_CSUM` in place. spec: virtio NEEDS_CSUM
pub fn complete_checksum(hdr: &VnetHdr, frame: &mut [u8]) -> Result<(), OffloadError> {
    let start = usize::from(hdr.csum_start);
    let at = start + usize::from(hdr.csum_offset);
    if at + 2 > frame.len() || start > frame.len() {
        return Err(OffloadError::BadChecksumOffset);
    }
    let c = !fold(sum(&frame[start..], 0));
    // a UDP checksum of 0 means "none": send 0xffff instead
    let c = if c == 0 && is_udp_at(frame, start) {
        0xffff
    } else {
        c
    };
    frame[at..at + 2].copy_from_slice(&c.to_be_bytes());
    Ok(())
}

fn is_udp_at(frame: &[u8], l4: usize) -> bool {
    matches!(l3(frame), Some(l) if l.l4 == l4 && l.proto == PROTO_UDP)
}

/// The layer-3 facts of an Ethernet frame.
#[derive(Debug, Clone, Copy)]
struct L3 {
    v6: bool,
    /// Offset of the IP header.
    ip: usize,
    /// Offset of the L4 header.
    l4: usize,
    proto: u8,
}

fn l3(frame: &[u8]) -> Option<L3> {
    let et = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    match et {
        ETHERTYPE_IPV4 => {
            let v = *frame.get(ETH_LEN)?;
            let ihl = usize::from(v & 0x0f) * 4;
            if v >> 4 != 4 || ihl < 20 || frame.len() < ETH_LEN + ihl {
                return None;
            }
            Some(L3 {
                v6: false,
                ip: ETH_LEN,
                l4: ETH_LEN + ihl,
                proto: frame[ETH_LEN + 9],
            })
        }
        ETHERTYPE_IPV6 => {
            if frame.len() < ETH_LEN + 40 || frame[ETH_LEN] >> 4 != 6 {
                return None;
            }
            Some(L3 {
                v6: true,
                ip: ETH_LEN,
                l4: ETH_LEN + 40,
                proto: frame[ETH_LEN + 6],
            })
        }
        _ => None,
    }
}

/// Splits a TCP super-frame from the TAP into frames whose TCP payload is at most
/// `hdr.gso_size`, with their IP lengths, IPv4 ids and checksums, TCP sequence numbers, flags
/// (FIN/PSH on the last only, CWR on the first only) and TCP checksums set; calls `emit` with
/// each. A frame that is not GSO is passed through (its checksum completed if marked).
pub fn segment(
    hdr: &VnetHdr,
    frame: &mut [u8],
    scratch: &mut Vec<u8>,
    mut emit: impl FnMut(&[u8]),
) -> Result<(), OffloadError> {
    if !hdr.is_gso() {
        if hdr.flags & F_NEEDS_CSUM != 0 {
            complete_checksum(hdr, frame)?;
        }
        emit(frame);
        return Ok(());
    }
    let gso = hdr.gso_type & !GSO_ECN;
    let l = l3(frame).ok_or(OffloadError::Unsupported)?;
    if l.proto != PROTO_TCP
        || (gso == GSO_TCPV4 && l.v6)
        || (gso == GSO_TCPV6 && !l.v6)
        || (gso != GSO_TCPV4 && gso != GSO_TCPV6)
    {
        return Err(OffloadError::Unsupported);
    }
    let doff = usize::from(*frame.get(l.l4 + 12).ok_or(OffloadError::Unsupported)? >> 4) * 4;
    let hlen = l.l4 + doff;
    if doff < 20 || frame.len() < hlen {
        return Err(OffloadError::Unsupported);
    }
    let mss = usize::from(hdr.gso_size);
    if mss == 0 {
        return Err(OffloadError::Unsupported);
    }
    let payload_len = frame.len() - hlen;
    let seq0 = u32::from_be_bytes([
        frame[l.l4 + 4],
        frame[l.l4 + 5],
        frame[l.l4 + 6],
        frame[l.l4 + 7],
    ]);
    let id0 = u16::from_be_bytes([frame[l.ip + 4], frame[l.ip + 5]]);
    let flags0 = frame[l.l4 + 13];
    let (headers, payload) = frame.split_at(hlen);
    let count = payload_len.div_ceil(mss).max(1);
    for i in 0..count {
        let chunk = &payload[(i * mss).min(payload_len)..((i + 1) * mss).min(payload_len)];
        scratch.clear();
        scratch.extend_from_slice(headers);
        scratch.extend_from_slice(chunk);
        let s = &mut scratch[..];
        let l4_len = doff + chunk.len();
        if l.v6 {
            s[l.ip + 4..l.ip + 6].copy_from_slice(&(l4_len as u16).to_be_bytes());
        } else {
            let total = (l.l4 - l.ip + l4_len) as u16;
            s[l.ip + 2..l.ip + 4].copy_from_slice(&total.to_be_bytes());
            s[l.ip + 4..l.ip + 6].copy_from_slice(&id0.wrapping_add(i as u16).to_be_bytes());
            s[l.ip + 10..l.ip + 12].copy_from_slice(&[0, 0]);
            let c = !fold(sum(&s[l.ip..l.l4], 0));
            s[l.ip + 10..l.ip + 12].copy_from_slice(&c.to_be_bytes());
        }
        let seq = seq0.wrapping_add((i * mss) as u32);
        s[l.l4 + 4..l.l4 + 8].copy_from_slice(&seq.to_be_bytes());
        let mut f = flags0;
        if i + 1 != count {
            f &= !(TCP_FIN | TCP_PSH);
        }
        if i != 0 {
            f &= !TCP_CWR;
        }
        s[l.l4 + 13] = f;
        s[l.l4 + 16..l.l4 + 18].copy_from_slice(&[0, 0]);
        let c = !fold(sum(&s[l.l4..], pseudo(&s[l.ip..], l.v6, PROTO_TCP, l4_len)));
        s[l.l4 + 16..l.l4 + 18].copy_from_slice(&c.to_be_bytes());
        emit(s);
    }
    Ok(())
}

/// A TCP segment's identity for coalescing: everything that must match between neighbours.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FlowKey {
    /// Ethernet + IP addresses, ports, protocol (bytes compared as they are).
    head: Vec<u8>,
}

/// Merges runs of TCP segments of one flow (contiguous sequence numbers, equal sizes except a
/// shorter last one, only ACK/PSH flags, same headers otherwise) into super-frames for a TAP
/// with offloads: each output is `virtio_net_hdr ‖ frame`. Frames that cannot merge are passed
/// through with a header saying their checksum is valid.
#[derive(Debug)]
pub struct Coalescer {
    out: Vec<Vec<u8>>,
    /// The run being built: its index in `out`, key, MSS, next sequence number, segments.
    open: Option<Run>,
    /// Most payload bytes per super-frame.
    limit: usize,
}

#[derive(Debug)]
struct Run {
    at: usize,
    key: FlowKey,
    mss: usize,
    next_seq: u32,
    segments: usize,
    l: (bool, usize, usize, usize),
    closed: bool,
}

/// Largest super-frame payload handed to the kernel (IP total length must fit 16 bits).
const MAX_SUPER: usize = 60_000;

impl Default for Coalescer {
    fn default() -> Coalescer {
        Coalescer::new()
    }
}

impl Coalescer {
    /// An empty coalescer.
    pub fn new() -> Coalescer {
        Coalescer {
            out: Vec::new(),
            open: None,
            limit: MAX_SUPER,
        }
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.out.is_empty()
    }

    /// Adds a received frame (as delivered by the network: complete checksums).
    pub fn push(&mut self, frame: &[u8]) {
        if let Some(info) = tcp_info(frame)
            && self.try_append(frame, &info)
        {
            return;
        }
        self.close();
        let mut v = Vec::with_capacity(VNET_HDR_LEN + frame.len());
        let hdr = VnetHdr {
            flags: F_DATA_VALID,
            ..Default::default()
        };
        v.extend_from_slice(&hdr.to_bytes());
        v.extend_from_slice(frame);
        let at = self.out.len();
        self.out.push(v);
        if let Some(info) = tcp_info(frame)
            && info.payload > 0
            && info.flags & !(TCP_PSH | 0x10) == 0
        {
            self.open = Some(Run {
                at,
                key: info.key,
                mss: info.payload,
                next_seq: info.seq.wrapping_add(info.payload as u32),
                segments: 1,
                l: (info.v6, info.ip, info.l4, info.hlen),
                closed: info.flags & TCP_PSH != 0,
            });
        }
    }

    fn try_append(&mut self, frame: &[u8], info: &TcpInfo) -> bool {
        let Some(run) = self.open.as_mut() else {
            return false;
        };
        if run.closed
            || run.key != info.key
            || info.seq != run.next_seq
            || info.payload == 0
            || info.payload > run.mss
            || info.flags & !(TCP_PSH | 0x10) != 0
            || (info.v6, info.ip, info.l4, info.hlen) != run.l
        {
            return false;
        }
        let buf = &mut self.out[run.at];
        if buf.len() - VNET_HDR_LEN - run.l.3 + info.payload > self.limit {
            return false;
        }
        buf.extend_from_slice(&frame[info.hlen..]);
        run.next_seq = run.next_seq.wrapping_add(info.payload as u32);
        run.segments += 1;
        if info.flags & TCP_PSH != 0 {
            // PSH ends the run; carry it on the super-frame
            buf[VNET_HDR_LEN + run.l.2 + 13] |= TCP_PSH;
            run.closed = true;
        }
        if info.payload < run.mss {
            run.closed = true;
        }
        true
    }

    /// Finishes the open run: a run of several segments becomes a GSO super-frame.
    fn close(&mut self) {
        let Some(run) = self.open.take() else { return };
        if run.segments < 2 {
            return;
        }
        let buf = &mut self.out[run.at];
        let (v6, ip, l4, _) = run.l;
        let f = &mut buf[VNET_HDR_LEN..];
        let l4_len = f.len() - l4;
        if v6 {
            f[ip + 4..ip + 6].copy_from_slice(&(l4_len as u16).to_be_bytes());
        } else {
            let total = (f.len() - ip) as u16;
            f[ip + 2..ip + 4].copy_from_slice(&total.to_be_bytes());
            f[ip + 10..ip + 12].copy_from_slice(&[0, 0]);
            let c = !fold(sum(&f[ip..l4], 0));
            f[ip + 10..ip + 12].copy_from_slice(&c.to_be_bytes());
        }
        // partial checksum: the pseudo-header sum, folded, not complemented
        let p = fold(pseudo(&f[ip..], v6, PROTO_TCP, l4_len));
        f[l4 + 16..l4 + 18].copy_from_slice(&p.to_be_bytes());
        let hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: if v6 { GSO_TCPV6 } else { GSO_TCPV4 },
            hdr_len: run.l.3 as u16,
            gso_size: run.mss as u16,
            csum_start: l4 as u16,
            csum_offset: 16,
        };
        buf[..VNET_HDR_LEN].copy_from_slice(&hdr.to_bytes());
    }

    /// Takes the frames ready for the TAP (each with its header), in arrival order.
    pub fn drain(&mut self) -> std::vec::Drain<'_, Vec<u8>> {
        self.close();
        self.out.drain(..)
    }
}

struct TcpInfo {
    key: FlowKey,
    seq: u32,
    flags: u8,
    payload: usize,
    v6: bool,
    ip: usize,
    l4: usize,
    hlen: usize,
}

/// The facts of a plain TCP segment (no IP options beyond the header length, no IPv6
/// extension headers, IPv4 not fragmented), `None` for anything else.
fn tcp_info(frame: &[u8]) -> Option<TcpInfo> {
    let l = l3(frame)?;
    if l.proto != PROTO_TCP {
        return None;
    }
    let ip_len = if l.v6 {
        40 + usize::from(u16::from_be_bytes([frame[l.ip + 4], frame[l.ip + 5]]))
    } else {
        // fragments and options do not coalesce
        let frag = u16::from_be_bytes([frame[l.ip + 6], frame[l.ip + 7]]);
        if frag & 0x3fff != 0 || l.l4 - l.ip != 20 {
            return None;
        }
        usize::from(u16::from_be_bytes([frame[l.ip + 2], frame[l.ip + 3]]))
    };
    if l.ip + ip_len != frame.len() {
        return None;
    }
    let doff = usize::from(*frame.get(l.l4 + 12)? >> 4) * 4;
    let hlen = l.l4 + doff;
    if doff < 20 || frame.len() < hlen {
        return None;
    }
    let seq = u32::from_be_bytes(frame.get(l.l4 + 4..l.l4 + 8)?.try_into().ok()?);
    // what must be equal between segments: MACs, ethertype, IP header minus length/id/
    // checksum (IPv4) or minus payload length (IPv6), ports, ack number, window, options
    let mut head = Vec::with_capacity(hlen);
    head.extend_from_slice(&frame[..l.ip]);
    if l.v6 {
        head.extend_from_slice(&frame[l.ip..l.ip + 4]);
        head.extend_from_slice(&frame[l.ip + 6..l.l4]);
    } else {
        head.extend_from_slice(&frame[l.ip..l.ip + 2]);
        head.extend_from_slice(&frame[l.ip + 6..l.ip + 10]);
        head.extend_from_slice(&frame[l.ip + 12..l.l4]);
    }
    head.extend_from_slice(&frame[l.l4..l.l4 + 4]);
    head.extend_from_slice(&frame[l.l4 + 8..l.l4 + 13]);
    head.extend_from_slice(&frame[l.l4 + 14..l.l4 + 16]);
    head.extend_from_slice(&frame[l.l4 + 20..hlen]);
    Some(TcpInfo {
        key: FlowKey { head },
        seq,
        flags: frame[l.l4 + 13],
        payload: frame.len() - hlen,
        v6: l.v6,
        ip: l.ip,
        l4: l.l4,
        hlen,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp_frame(v6: bool, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
        let tcp_len = 20 + payload.len();
        if v6 {
            f.extend_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
            f.extend_from_slice(&[0x60, 0, 0, 0]);
            f.extend_from_slice(&(tcp_len as u16).to_be_bytes());
            f.extend_from_slice(&[PROTO_TCP, 64]);
            f.extend_from_slice(&[0xfd; 16]);
            f.extend_from_slice(&[0xfe; 16]);
        } else {
            f.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
            let total = (20 + tcp_len) as u16;
            f.extend_from_slice(&[0x45, 0]);
            f.extend_from_slice(&total.to_be_bytes());
            f.extend_from_slice(&[0x12, 0x34, 0x40, 0, 64, PROTO_TCP, 0, 0]);
            f.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
            let c = !fold(sum(&f[14..34], 0));
            f[24..26].copy_from_slice(&c.to_be_bytes());
        }
        let l4 = f.len();
        f.extend_from_slice(&[0x9c, 0x40, 0x13, 0x89]);
        f.extend_from_slice(&seq.to_be_bytes());
        f.extend_from_slice(&7u32.to_be_bytes());
        f.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        f.extend_from_slice(payload);
        let ip = 14;
        let c = !fold(sum(&f[l4..], pseudo(&f[ip..], v6, PROTO_TCP, tcp_len)));
        f[l4 + 16..l4 + 18].copy_from_slice(&c.to_be_bytes());
        f
    }

    /// A frame's IP and TCP checksums verify (sum over header/segment with pseudo-header is
    /// 0xffff).
    fn checksums_ok(f: &[u8]) -> bool {
        let l = l3(f).unwrap();
        let ip_ok = l.v6 || fold(sum(&f[l.ip..l.l4], 0)) == 0xffff;
        let l4_len = f.len() - l.l4;
        ip_ok && fold(sum(&f[l.l4..], pseudo(&f[l.ip..], l.v6, PROTO_TCP, l4_len))) == 0xffff
    }

    #[test]
    fn header_round_trips() {
        let h = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4 | GSO_ECN,
            hdr_len: 54,
            gso_size: 2746,
            csum_start: 34,
            csum_offset: 16,
        };
        assert_eq!(VnetHdr::parse(&h.to_bytes()), Some(h));
        assert!(h.is_gso());
        assert_eq!(VnetHdr::parse(&[0; 9]), None);
    }

    #[test]
    fn super_frames_segment_into_valid_frames_and_coalesce_back() {
        for v6 in [false, true] {
            let payload: Vec<u8> = (0..10_000u32).map(|i| (i * 31 % 251) as u8).collect();
            let mut big = tcp_frame(v6, 1000, 0x18 | TCP_CWR, &payload);
            // as the kernel hands it over: partial checksum (pseudo-header sum) and a GSO header
            let l = l3(&big).unwrap();
            let l4_len = big.len() - l.l4;
            let p = fold(pseudo(&big[l.ip..], v6, PROTO_TCP, l4_len));
            big[l.l4 + 16..l.l4 + 18].copy_from_slice(&p.to_be_bytes());
            let hdr = VnetHdr {
                flags: F_NEEDS_CSUM,
                gso_type: if v6 { GSO_TCPV6 } else { GSO_TCPV4 },
                hdr_len: (l.l4 + 20) as u16,
                gso_size: 1400,
                csum_start: l.l4 as u16,
                csum_offset: 16,
            };
            let mut segs: Vec<Vec<u8>> = Vec::new();
            let mut scratch = Vec::new();
            segment(&hdr, &mut big, &mut scratch, |s| segs.push(s.to_vec())).unwrap();
            assert_eq!(segs.len(), 8, "10,000 bytes at 1400 per segment");
            let mut joined = Vec::new();
            for (i, s) in segs.iter().enumerate() {
                assert!(checksums_ok(s), "v6 {v6} segment {i}");
                let info = tcp_info(s).unwrap();
                assert_eq!(info.seq, 1000 + (i as u32) * 1400);
                let last = i == segs.len() - 1;
                assert_eq!(info.flags & TCP_PSH != 0, last, "PSH only on the last");
                assert_eq!(info.flags & TCP_CWR != 0, i == 0, "CWR only on the first");
                if !v6 {
                    assert_eq!(u16::from_be_bytes([s[18], s[19]]), 0x1234 + i as u16);
                }
                joined.extend_from_slice(&s[info.hlen..]);
            }
            assert_eq!(joined, payload);

            // the receiving side merges them back into GSO frames for the kernel: the first
            // segment (CWR) stays alone, the other seven become one
            let mut c = Coalescer::new();
            for s in &segs {
                c.push(s);
            }
            let out: Vec<Vec<u8>> = c.drain().collect();
            assert_eq!(
                out.len(),
                2,
                "v6 {v6}: the CWR segment, then one super-frame"
            );
            assert_eq!(
                (out[0][1], &out[0][VNET_HDR_LEN..]),
                (GSO_NONE, &segs[0][..])
            );
            let out = &out[1..];
            let payload = &payload[1400..];
            let h = VnetHdr::parse(&out[0]).unwrap();
            assert_eq!(
                (h.gso_type, h.gso_size, h.flags, h.csum_offset),
                (
                    if v6 { GSO_TCPV6 } else { GSO_TCPV4 },
                    1400,
                    F_NEEDS_CSUM,
                    16
                )
            );
            let mut f = out[0][VNET_HDR_LEN..].to_vec();
            assert_eq!(&f[f.len() - payload.len()..], payload);
            // completing the partial checksum gives a valid frame
            complete_checksum(&h, &mut f).unwrap();
            assert!(checksums_ok(&f), "v6 {v6}: super-frame checksums");
        }
    }

    #[test]
    fn runs_break_on_gaps_flows_and_flags() {
        let a = tcp_frame(false, 0, 0x10, &[1; 100]);
        let b = tcp_frame(false, 100, 0x10, &[2; 100]);
        let gap = tcp_frame(false, 300, 0x10, &[3; 100]);
        let fin = tcp_frame(false, 400, 0x11, &[4; 100]);
        let mut other_flow = tcp_frame(false, 200, 0x10, &[5; 100]);
        other_flow[34] ^= 1; // another source port
        let mut c = Coalescer::new();
        for f in [&a, &b, &other_flow, &gap, &fin] {
            c.push(f);
        }
        let out: Vec<Vec<u8>> = c.drain().collect();
        let kinds: Vec<(u8, usize)> = out.iter().map(|o| (o[1], o.len() - VNET_HDR_LEN)).collect();
        assert_eq!(
            kinds,
            vec![
                (GSO_TCPV4, a.len() + 100),
                (GSO_NONE, other_flow.len()),
                (GSO_NONE, gap.len()),
                (GSO_NONE, fin.len()),
            ]
        );
        // frames passed through say their checksums are valid
        assert_eq!(out[1][0], F_DATA_VALID);
    }

    #[test]
    fn checksum_completion_and_hostile_input() {
        let mut f = tcp_frame(false, 5, 0x18, b"hello");
        let l = l3(&f).unwrap();
        let want = f[l.l4 + 16..l.l4 + 18].to_vec();
        let l4_len = f.len() - l.l4;
        let p = fold(pseudo(&f[l.ip..], false, PROTO_TCP, l4_len));
        f[l.l4 + 16..l.l4 + 18].copy_from_slice(&p.to_be_bytes());
        let hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            csum_start: l.l4 as u16,
            csum_offset: 16,
            ..Default::default()
        };
        let mut out = Vec::new();
        let mut scratch = Vec::new();
        segment(&hdr, &mut f, &mut scratch, |s| out.push(s.to_vec())).unwrap();
        assert_eq!(out[0][l.l4 + 16..l.l4 + 18], want[..]);
        // random headers and frames never panic
        let mut x: u64 = 0x1234_5678_9abc_def1;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut c = Coalescer::new();
        for _ in 0..3000 {
            let len = (next() % 200) as usize;
            let mut f: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if len > 14 && next() % 2 == 0 {
                f[12..14].copy_from_slice(&[0x08, 0x00]);
                f[14] = 0x45;
                if len > 23 {
                    f[23] = PROTO_TCP;
                }
            }
            let h = VnetHdr::parse(&(next() as u128).to_le_bytes()).unwrap();
            let _ = segment(&h, &mut f, &mut scratch, |_| {});
            c.push(&f);
        }
        assert!(c.drain().count() > 0);
    }
}
