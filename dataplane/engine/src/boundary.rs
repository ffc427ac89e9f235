//! The messages between the control plane and a data-plane process (one message per
//! SOCK_SEQPACKET record). Pure codec: decoding checks every length and never panics.
//!
//! Control → data: [`ToDataPlane`] — the published tables (per-peer session keys and paths;
//! never the identity secret), datagrams to send, shutdown. Data → control: [`ToControlPlane`] —
//! the sockets bound, datagrams handed up (everything the engine does not finish itself), the
//! ends of relayed packets (for introductions), and counters.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use weft_wire::credential::{Capability, Coo};
use weft_wire::crypto::PEER_KEY_LEN;
use weft_wire::inet::TrustedPath;
use weft_wire::netconf::NetworkConfig;
use weft_wire::{Address, CipherSuite, InetAddress, NetworkId, PeerKey};

use crate::{
    Activity, BondActivity, BondEntry, BondKind, EngineStats, MemberEntry, NetworkEntry, PathEntry,
    PeerEntry, QosSample, Tables,
};

/// Version of this message set; both sides check it in the first message.
pub const BOUNDARY_VERSION: u8 = 3;
/// Largest record (a datagram plus headers); SOCK_SEQPACKET buffers must allow it.
pub const MAX_MESSAGE: usize = 70_000;

/// Errors decoding a boundary message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BoundaryError {
    /// The message ended early.
    #[error("boundary message truncated")]
    Truncated,
    /// Unknown message type or field value.
    #[error("boundary message invalid: {0}")]
    Invalid(&'static str),
}

/// From the control plane to the data plane.
#[derive(Debug, Clone)]
pub enum ToDataPlane {
    /// Bind these addresses (first message).
    Start {
        /// Protocol version ([`BOUNDARY_VERSION`]).
        version: u8,
        /// Local addresses to bind, in `LocalSocket` order.
        bind: Vec<SocketAddr>,
        /// The UDP back-end to use (`af_xdp`, `io_uring`, `mmsg`, `plain`); empty: the best
        /// one that works here.
        backend: String,
        /// Worker threads (each with its own sockets on the same addresses, `SO_REUSEPORT`,
        /// and its own queue of every TAP).
        workers: u16,
    },
    /// A new snapshot of the tables.
    Tables(Tables),
    /// Send a datagram from local socket `local` (`u32::MAX`: from every socket of the family).
    Send {
        /// Local socket index.
        local: u32,
        /// Destination.
        to: SocketAddr,
        /// IP TTL for this datagram only (0 = default).
        ttl: u8,
        /// Payload.
        data: Vec<u8>,
    },
    /// Stop.
    Shutdown,
    /// Serve the TAP whose descriptor travels with this record (SCM_RIGHTS).
    AttachTap {
        /// Network id.
        nwid: u64,
        /// Opened with `IFF_VNET_HDR` and offloads (frames carry a `virtio_net_hdr`).
        vnet_hdr: bool,
        /// Which queue of a multi-queue TAP this descriptor is (worker `queue % workers`).
        queue: u16,
        /// Interface name (informational).
        name: String,
    },
    /// Stop serving a network's TAP.
    DetachTap {
        /// Network id.
        nwid: u64,
    },
    /// Write an Ethernet frame to a network's TAP.
    TapWrite {
        /// Network id.
        nwid: u64,
        /// The frame.
        frame: Vec<u8>,
    },
}

/// From the data plane to the control plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToControlPlane {
    /// The sockets bound (index = `LocalSocket`), or why binding failed (empty list + reason).
    Started {
        /// Protocol version.
        version: u8,
        /// Bound addresses.
        bound: Vec<SocketAddr>,
        /// The UDP back-end chosen and why better ones were not (for status and logs).
        backend: String,
        /// Error text when nothing could be bound.
        error: String,
    },
    /// A datagram for the control plane.
    Up {
        /// Local socket index.
        local: u32,
        /// Source.
        from: SocketAddr,
        /// Payload.
        data: Vec<u8>,
    },
    /// A packet head was relayed between these two addresses.
    Relayed {
        /// Source address.
        source: Address,
        /// Destination address.
        dest: Address,
    },
    /// Counters.
    Stats(EngineStats),
    /// An Ethernet frame read from a network's TAP.
    TapFrame {
        /// Network id.
        nwid: u64,
        /// The frame.
        frame: Vec<u8>,
    },
    /// A fragmented packet for the control plane, reassembled by the data plane (still armored).
    UpPacket {
        /// Local socket index.
        local: u32,
        /// Source.
        from: SocketAddr,
        /// The whole packet.
        data: Vec<u8>,
    },
    /// What the fast path did since the last report (paths used, members heard from and sent
    /// to), so the control plane keeps paths alive and credentials pushed.
    Activity(Activity),
}

struct R<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> R<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], BoundaryError> {
        let s = self
            .b
            .get(self.i..self.i.checked_add(n).ok_or(BoundaryError::Truncated)?)
            .ok_or(BoundaryError::Truncated)?;
        self.i += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, BoundaryError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, BoundaryError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, BoundaryError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, BoundaryError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
    fn addr(&mut self) -> Result<SocketAddr, BoundaryError> {
        let (ia, n) = InetAddress::decode(&self.b[self.i..])
            .map_err(|_| BoundaryError::Invalid("address"))?;
        self.i += n;
        ia.socket_addr().ok_or(BoundaryError::Invalid("address"))
    }
    fn zt(&mut self) -> Result<Address, BoundaryError> {
        Address::from_slice(self.take(5)?).ok_or(BoundaryError::Truncated)
    }
    fn rest(&mut self) -> Vec<u8> {
        let v = self.b[self.i..].to_vec();
        self.i = self.b.len();
        v
    }
}

fn put_addr(out: &mut Vec<u8>, a: SocketAddr) {
    InetAddress::Ip(a).encode(out);
}

fn put_addrs(out: &mut Vec<u8>, v: &[SocketAddr]) {
    out.extend_from_slice(&(v.len() as u32).to_be_bytes());
    for a in v {
        put_addr(out, *a);
    }
}

fn addrs(r: &mut R<'_>) -> Result<Vec<SocketAddr>, BoundaryError> {
    let n = r.u32()? as usize;
    if n > 1024 {
        return Err(BoundaryError::Invalid("count"));
    }
    (0..n).map(|_| r.addr()).collect()
}

fn cipher_byte(c: CipherSuite) -> u8 {
    match c {
        CipherSuite::Poly1305None => 0,
        CipherSuite::Poly1305Salsa2012 => 1,
        CipherSuite::TrustedPath => 2,
        CipherSuite::AesGmacSiv => 3,
    }
}

fn cipher_of(b: u8) -> Result<CipherSuite, BoundaryError> {
    Ok(match b {
        0 => CipherSuite::Poly1305None,
        1 => CipherSuite::Poly1305Salsa2012,
        2 => CipherSuite::TrustedPath,
        3 => CipherSuite::AesGmacSiv,
        _ => return Err(BoundaryError::Invalid("cipher")),
    })
}

/// Most entries of any list in a record (peers, paths, networks, members, credentials).
const MAX_ITEMS: usize = 1 << 20;

fn count(r: &mut R<'_>) -> Result<usize, BoundaryError> {
    let n = r.u32()? as usize;
    if n > MAX_ITEMS || n > r.b.len().saturating_sub(r.i) {
        return Err(BoundaryError::Invalid("count"));
    }
    Ok(n)
}

fn put_count(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&(n as u32).to_be_bytes());
}

fn put_path(out: &mut Vec<u8>, p: &PathEntry) {
    out.extend_from_slice(&p.local.to_be_bytes());
    put_addr(out, p.addr);
}

fn path(r: &mut R<'_>) -> Result<PathEntry, BoundaryError> {
    Ok(PathEntry {
        local: r.u32()?,
        addr: r.addr()?,
    })
}

fn put_blob(out: &mut Vec<u8>, b: &[u8]) {
    put_count(out, b.len());
    out.extend_from_slice(b);
}

fn blob<'a>(r: &mut R<'a>) -> Result<&'a [u8], BoundaryError> {
    let n = count(r)?;
    r.take(n)
}

fn encode_tables(t: &Tables, out: &mut Vec<u8>) {
    out.extend_from_slice(&t.own.to_bytes());
    out.push(u8::from(t.relay));
    out.extend_from_slice(&t.physical_mtu.to_be_bytes());
    put_count(out, t.trusted_paths.len());
    for tp in &t.trusted_paths {
        put_addr(out, SocketAddr::new(tp.network, 0));
        out.push(tp.prefix);
        out.extend_from_slice(&tp.id.to_be_bytes());
    }
    put_count(out, t.peers.len());
    let mut peers: Vec<_> = t.peers.iter().collect();
    peers.sort_by_key(|(a, _)| **a);
    for (a, p) in peers {
        out.extend_from_slice(&a.to_bytes());
        out.extend_from_slice(p.key.as_bytes());
        out.push(cipher_byte(p.cipher));
        match &p.preferred {
            Some(path) => {
                out.push(1);
                put_path(out, path);
            }
            None => out.push(0),
        }
        put_count(out, p.paths.len());
        for path in &p.paths {
            put_path(out, path);
        }
        match &p.bond {
            Some(bond) => {
                out.push(bond.kind.code());
                out.extend_from_slice(&bond.packets_per_link.to_be_bytes());
                put_count(out, bond.paths.len());
                for path in &bond.paths {
                    put_path(out, path);
                }
                put_count(out, bond.weights.len());
                for w in &bond.weights {
                    out.extend_from_slice(&w.to_be_bytes());
                }
                put_count(out, bond.mtus.len());
                for m in &bond.mtus {
                    out.extend_from_slice(&m.to_be_bytes());
                }
                out.extend_from_slice(&bond.qos_interval_ms.to_be_bytes());
            }
            None => out.push(0),
        }
    }
    put_count(out, t.networks.len());
    let mut nets: Vec<_> = t.networks.iter().collect();
    nets.sort_by_key(|(n, _)| **n);
    for (nwid, n) in nets {
        out.extend_from_slice(&nwid.0.to_be_bytes());
        put_blob(out, &n.config.to_bytes());
        put_count(out, n.members.len());
        let mut members: Vec<_> = n.members.iter().collect();
        members.sort_by_key(|(a, _)| **a);
        for (a, m) in members {
            out.extend_from_slice(&a.to_bytes());
            out.push(u8::from(m.pushed));
            put_count(out, m.tags.len());
            for (id, v) in &m.tags {
                out.extend_from_slice(&id.to_be_bytes());
                out.extend_from_slice(&v.to_be_bytes());
            }
            put_count(out, m.capabilities.len());
            for c in &m.capabilities {
                c.encode(out);
            }
            put_count(out, m.coos.len());
            for c in &m.coos {
                c.encode(out);
            }
        }
    }
}

fn decode_tables(r: &mut R<'_>) -> Result<Tables, BoundaryError> {
    let own = r.zt()?;
    let relay = r.u8()? != 0;
    let physical_mtu = r.u32()?;
    let mut trusted_paths = Vec::new();
    for _ in 0..count(r)? {
        let network = r.addr()?.ip();
        let prefix = r.u8()?;
        let id = r.u64()?;
        trusted_paths.push(TrustedPath {
            network,
            prefix,
            id,
        });
    }
    let n = count(r)?;
    let mut peers = HashMap::with_capacity(n.min(4096));
    for _ in 0..n {
        let a = r.zt()?;
        let mut key = [0u8; PEER_KEY_LEN];
        key.copy_from_slice(r.take(PEER_KEY_LEN)?);
        let cipher = cipher_of(r.u8()?)?;
        let preferred = match r.u8()? {
            0 => None,
            1 => Some(path(r)?),
            _ => return Err(BoundaryError::Invalid("path flag")),
        };
        let paths = (0..count(r)?).map(|_| path(r)).collect::<Result<_, _>>()?;
        let bond = match r.u8()? {
            0 => None,
            c => {
                let kind = BondKind::from_code(c).ok_or(BoundaryError::Invalid("bond kind"))?;
                let packets_per_link = r.u32()?;
                let paths = (0..count(r)?).map(|_| path(r)).collect::<Result<_, _>>()?;
                let weights = (0..count(r)?)
                    .map(|_| r.take(2).map(|b| u16::from_be_bytes([b[0], b[1]])))
                    .collect::<Result<_, _>>()?;
                let mtus = (0..count(r)?).map(|_| r.u16()).collect::<Result<_, _>>()?;
                let qos_interval_ms = r.u32()?;
                Some(BondEntry {
                    kind,
                    paths,
                    weights,
                    mtus,
                    qos_interval_ms,
                    packets_per_link,
                })
            }
        };
        peers.insert(
            a,
            PeerEntry {
                key: Arc::new(PeerKey::from_bytes(&key)),
                cipher,
                preferred,
                paths,
                bond,
            },
        );
    }
    let mut networks = HashMap::new();
    for _ in 0..count(r)? {
        let nwid = NetworkId(r.u64()?);
        let config = NetworkConfig::from_bytes(blob(r)?)
            .map_err(|_| BoundaryError::Invalid("network config"))?;
        let mut members = HashMap::new();
        for _ in 0..count(r)? {
            let a = r.zt()?;
            let pushed = r.u8()? != 0;
            let mut m = MemberEntry {
                pushed,
                ..Default::default()
            };
            for _ in 0..count(r)? {
                m.tags.push((r.u32()?, r.u32()?));
            }
            for _ in 0..count(r)? {
                let (c, used) = Capability::decode(&r.b[r.i..])
                    .map_err(|_| BoundaryError::Invalid("capability"))?;
                r.i += used;
                m.capabilities.push(c);
            }
            for _ in 0..count(r)? {
                let (c, used) =
                    Coo::decode(&r.b[r.i..]).map_err(|_| BoundaryError::Invalid("coo"))?;
                r.i += used;
                m.coos.push(c);
            }
            m.tags.sort_unstable();
            members.insert(a, m);
        }
        networks.insert(
            nwid,
            NetworkEntry {
                config: Arc::new(config),
                members,
            },
        );
    }
    Ok(Tables {
        own,
        relay,
        peers,
        networks,
        trusted_paths,
        physical_mtu,
    })
}

fn encode_activity(a: &Activity, out: &mut Vec<u8>) {
    out.extend_from_slice(&a.worker.to_be_bytes());
    put_count(out, a.paths.len());
    for (peer, p) in &a.paths {
        out.extend_from_slice(&peer.to_bytes());
        put_path(out, p);
    }
    for list in [&a.received, &a.sent] {
        put_count(out, list.len());
        for (nwid, m) in list {
            out.extend_from_slice(&nwid.0.to_be_bytes());
            out.extend_from_slice(&m.to_bytes());
        }
    }
    put_count(out, a.bonded.len());
    for b in &a.bonded {
        out.extend_from_slice(&b.peer.to_bytes());
        put_path(out, &b.path);
        out.extend_from_slice(&b.frames.to_be_bytes());
        out.extend_from_slice(&b.flows.to_be_bytes());
    }
    out.extend_from_slice(&a.now_ms.to_be_bytes());
    for list in [&a.qos_sent, &a.qos_received] {
        put_count(out, list.len());
        for q in list {
            out.extend_from_slice(&q.peer.to_bytes());
            put_path(out, &q.path);
            out.extend_from_slice(&q.packet_id.to_be_bytes());
            out.extend_from_slice(&q.at_ms.to_be_bytes());
        }
    }
}

fn decode_activity(r: &mut R<'_>) -> Result<Activity, BoundaryError> {
    let mut a = Activity {
        worker: r.u16()?,
        ..Activity::default()
    };
    for _ in 0..count(r)? {
        let peer = r.zt()?;
        a.paths.push((peer, path(r)?));
    }
    for list in [&mut a.received, &mut a.sent] {
        for _ in 0..count(r)? {
            list.push((NetworkId(r.u64()?), r.zt()?));
        }
    }
    for _ in 0..count(r)? {
        a.bonded.push(BondActivity {
            peer: r.zt()?,
            path: path(r)?,
            frames: r.u64()?,
            flows: r.u32()?,
        });
    }
    a.now_ms = r.u64()? as i64;
    for list in [&mut a.qos_sent, &mut a.qos_received] {
        for _ in 0..count(r)? {
            list.push(QosSample {
                peer: r.zt()?,
                path: path(r)?,
                packet_id: r.u64()?,
                at_ms: r.u64()? as i64,
            });
        }
    }
    Ok(a)
}

impl ToDataPlane {
    /// The record bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            ToDataPlane::Start {
                version,
                bind,
                backend,
                workers,
            } => {
                out.push(1);
                out.push(*version);
                put_addrs(&mut out, bind);
                put_blob(&mut out, backend.as_bytes());
                out.extend_from_slice(&workers.to_be_bytes());
            }
            ToDataPlane::Tables(t) => {
                out.push(2);
                encode_tables(t, &mut out);
            }
            ToDataPlane::Send {
                local,
                to,
                ttl,
                data,
            } => {
                out.push(3);
                out.extend_from_slice(&local.to_be_bytes());
                put_addr(&mut out, *to);
                out.push(*ttl);
                out.extend_from_slice(data);
            }
            ToDataPlane::Shutdown => out.push(4),
            ToDataPlane::AttachTap {
                nwid,
                vnet_hdr,
                queue,
                name,
            } => {
                out.push(5);
                out.extend_from_slice(&nwid.to_be_bytes());
                out.push(u8::from(*vnet_hdr));
                out.extend_from_slice(&queue.to_be_bytes());
                out.extend_from_slice(name.as_bytes());
            }
            ToDataPlane::DetachTap { nwid } => {
                out.push(6);
                out.extend_from_slice(&nwid.to_be_bytes());
            }
            ToDataPlane::TapWrite { nwid, frame } => {
                out.push(7);
                out.extend_from_slice(&nwid.to_be_bytes());
                out.extend_from_slice(frame);
            }
        }
        out
    }

    /// Decodes a record.
    pub fn decode(b: &[u8]) -> Result<Self, BoundaryError> {
        let mut r = R { b, i: 0 };
        Ok(match r.u8()? {
            1 => ToDataPlane::Start {
                version: r.u8()?,
                bind: addrs(&mut r)?,
                backend: String::from_utf8_lossy(blob(&mut r)?).into_owned(),
                workers: u16::from_be_bytes([r.u8()?, r.u8()?]),
            },
            2 => ToDataPlane::Tables(decode_tables(&mut r)?),
            3 => ToDataPlane::Send {
                local: r.u32()?,
                to: r.addr()?,
                ttl: r.u8()?,
                data: r.rest(),
            },
            4 => ToDataPlane::Shutdown,
            5 => ToDataPlane::AttachTap {
                nwid: r.u64()?,
                vnet_hdr: r.u8()? != 0,
                queue: u16::from_be_bytes([r.u8()?, r.u8()?]),
                name: String::from_utf8_lossy(&r.rest()).into_owned(),
            },
            6 => ToDataPlane::DetachTap { nwid: r.u64()? },
            7 => ToDataPlane::TapWrite {
                nwid: r.u64()?,
                frame: r.rest(),
            },
            _ => return Err(BoundaryError::Invalid("type")),
        })
    }
}

impl ToControlPlane {
    /// The record bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            ToControlPlane::Started {
                version,
                bound,
                backend,
                error,
            } => {
                out.push(11);
                out.push(*version);
                put_addrs(&mut out, bound);
                put_blob(&mut out, backend.as_bytes());
                out.extend_from_slice(error.as_bytes());
            }
            ToControlPlane::Up { local, from, data } => {
                out.push(12);
                out.extend_from_slice(&local.to_be_bytes());
                put_addr(&mut out, *from);
                out.extend_from_slice(data);
            }
            ToControlPlane::Relayed { source, dest } => {
                out.push(13);
                out.extend_from_slice(&source.to_bytes());
                out.extend_from_slice(&dest.to_bytes());
            }
            ToControlPlane::Stats(s) => {
                out.push(14);
                for v in [
                    s.relayed,
                    s.up,
                    s.dropped,
                    s.frames_in,
                    s.frames_out,
                    s.frames_up,
                    s.filtered,
                ] {
                    out.extend_from_slice(&v.to_be_bytes());
                }
            }
            ToControlPlane::TapFrame { nwid, frame } => {
                out.push(15);
                out.extend_from_slice(&nwid.to_be_bytes());
                out.extend_from_slice(frame);
            }
            ToControlPlane::Activity(a) => {
                out.push(16);
                encode_activity(a, &mut out);
            }
            ToControlPlane::UpPacket { local, from, data } => {
                out.push(17);
                out.extend_from_slice(&local.to_be_bytes());
                put_addr(&mut out, *from);
                out.extend_from_slice(data);
            }
        }
        out
    }

    /// Decodes a record.
    pub fn decode(b: &[u8]) -> Result<Self, BoundaryError> {
        let mut r = R { b, i: 0 };
        Ok(match r.u8()? {
            11 => ToControlPlane::Started {
                version: r.u8()?,
                bound: addrs(&mut r)?,
                backend: String::from_utf8_lossy(blob(&mut r)?).into_owned(),
                error: String::from_utf8_lossy(&r.rest()).into_owned(),
            },
            12 => ToControlPlane::Up {
                local: r.u32()?,
                from: r.addr()?,
                data: r.rest(),
            },
            13 => ToControlPlane::Relayed {
                source: r.zt()?,
                dest: r.zt()?,
            },
            14 => ToControlPlane::Stats(EngineStats {
                relayed: r.u64()?,
                up: r.u64()?,
                dropped: r.u64()?,
                frames_in: r.u64()?,
                frames_out: r.u64()?,
                frames_up: r.u64()?,
                filtered: r.u64()?,
            }),
            16 => ToControlPlane::Activity(decode_activity(&mut r)?),
            17 => ToControlPlane::UpPacket {
                local: r.u32()?,
                from: r.addr()?,
                data: r.rest(),
            },
            15 => ToControlPlane::TapFrame {
                nwid: r.u64()?,
                frame: r.rest(),
            },
            _ => return Err(BoundaryError::Invalid("type")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn every_message_round_trips() {
        let mut config = NetworkConfig::new(
            NetworkId(0x8056c2e21c000001),
            Address::new(0x0102030405).unwrap(),
        );
        config.mtu = 2800;
        config.rules = vec![weft_wire::rules::Rule {
            kind: weft_wire::rules::RuleKind::Accept,
            not: false,
            or: false,
        }];
        let mut members = HashMap::new();
        members.insert(
            Address::new(0xaabbccddee).unwrap(),
            MemberEntry {
                tags: vec![(1, 2), (1000, 100)],
                capabilities: Vec::new(),
                coos: Vec::new(),
                pushed: true,
            },
        );
        members.insert(Address::new(0x1122334455).unwrap(), MemberEntry::default());
        let mut networks = HashMap::new();
        networks.insert(
            NetworkId(0x8056c2e21c000001),
            NetworkEntry {
                config: Arc::new(config),
                members,
            },
        );
        let mut t = Tables {
            own: Address::new(0x0102030405).unwrap(),
            relay: true,
            peers: HashMap::new(),
            networks,
            trusted_paths: vec![TrustedPath {
                network: "10.0.0.0".parse().unwrap(),
                prefix: 8,
                id: 77,
            }],
            physical_mtu: 1400,
        };
        t.peers.insert(
            Address::new(0xaabbccddee).unwrap(),
            PeerEntry {
                key: Arc::new(PeerKey::from_bytes(&[7u8; PEER_KEY_LEN])),
                cipher: CipherSuite::AesGmacSiv,
                preferred: Some(PathEntry {
                    local: 1,
                    addr: a("[2001:db8::1]:9993"),
                }),
                paths: vec![
                    PathEntry {
                        local: 1,
                        addr: a("[2001:db8::1]:9993"),
                    },
                    PathEntry {
                        local: 0,
                        addr: a("192.0.2.7:41000"),
                    },
                ],
                bond: Some(BondEntry {
                    kind: BondKind::BalanceAware,
                    paths: vec![
                        PathEntry {
                            local: 0,
                            addr: a("192.0.2.7:41000"),
                        },
                        PathEntry {
                            local: 1,
                            addr: a("[2001:db8::1]:9993"),
                        },
                    ],
                    weights: vec![40000, 25535],
                    mtus: vec![0, 1280],
                    qos_interval_ms: 2_000,
                    packets_per_link: 64,
                }),
            },
        );
        t.peers.insert(
            Address::new(0x1122334455).unwrap(),
            PeerEntry {
                key: Arc::new(PeerKey::from_bytes(&[9u8; PEER_KEY_LEN])),
                cipher: CipherSuite::Poly1305Salsa2012,
                preferred: None,
                paths: Vec::new(),
                bond: None,
            },
        );
        let b = ToDataPlane::Tables(t.clone()).encode();
        let ToDataPlane::Tables(back) = ToDataPlane::decode(&b).unwrap() else {
            panic!("not tables");
        };
        assert_eq!(
            (back.own, back.relay, back.peers.len()),
            (t.own, t.relay, 2)
        );
        for (addr, p) in &t.peers {
            let q = &back.peers[addr];
            assert_eq!(q.key.as_bytes(), p.key.as_bytes());
            assert_eq!(q.cipher, p.cipher);
            assert_eq!(q.preferred, p.preferred);
            assert_eq!(q.paths, p.paths);
            assert_eq!(q.bond, p.bond);
        }
        assert_eq!(
            (back.trusted_paths, back.physical_mtu),
            (t.trusted_paths.clone(), 1400)
        );
        assert_eq!(back.networks.len(), 1);
        for (nwid, n) in &t.networks {
            let m = &back.networks[nwid];
            assert_eq!(*m.config, *n.config);
            assert_eq!(m.members, n.members);
        }
        let s = ToDataPlane::Send {
            local: 2,
            to: a("10.0.0.1:9993"),
            ttl: 2,
            data: vec![1, 2, 3],
        };
        let ToDataPlane::Send {
            local,
            to,
            ttl,
            data,
        } = ToDataPlane::decode(&s.encode()).unwrap()
        else {
            panic!("not send");
        };
        assert_eq!(
            (local, to, ttl, data),
            (2, a("10.0.0.1:9993"), 2, vec![1, 2, 3])
        );
        for m in [
            ToControlPlane::Started {
                version: BOUNDARY_VERSION,
                bound: vec![a("0.0.0.0:9993"), a("[::]:9993")],
                backend: "io_uring (af_xdp: not built)".into(),
                error: String::new(),
            },
            ToControlPlane::Up {
                local: 0,
                from: a("192.0.2.1:1234"),
                data: vec![9; 100],
            },
            ToControlPlane::Relayed {
                source: Address::new(1).unwrap(),
                dest: Address::new(2).unwrap(),
            },
            ToControlPlane::Stats(EngineStats {
                relayed: 1,
                up: 2,
                dropped: 3,
                frames_in: 4,
                frames_out: 5,
                frames_up: 6,
                filtered: 7,
            }),
            ToControlPlane::UpPacket {
                local: 1,
                from: a("[2001:db8::2]:9993"),
                data: vec![3; 3000],
            },
            ToControlPlane::Activity(Activity {
                worker: 3,
                bonded: vec![BondActivity {
                    peer: Address::new(5).unwrap(),
                    path: PathEntry {
                        local: 1,
                        addr: a("10.0.1.9:9993"),
                    },
                    frames: 1234,
                    flows: 7,
                }],
                now_ms: 987_654,
                qos_sent: vec![QosSample {
                    peer: Address::new(5).unwrap(),
                    path: PathEntry {
                        local: 1,
                        addr: a("10.0.1.9:9993"),
                    },
                    packet_id: 0x1122_3344_5566_7789,
                    at_ms: 987_000,
                }],
                qos_received: vec![QosSample {
                    peer: Address::new(5).unwrap(),
                    path: PathEntry {
                        local: 0,
                        addr: a("[2001:db8::1]:9993"),
                    },
                    packet_id: 3,
                    at_ms: -5,
                }],
                paths: vec![(
                    Address::new(5).unwrap(),
                    PathEntry {
                        local: 0,
                        addr: a("10.0.0.9:9993"),
                    },
                )],
                received: vec![(NetworkId(9), Address::new(6).unwrap())],
                sent: vec![(NetworkId(9), Address::new(7).unwrap())],
            }),
            ToControlPlane::TapFrame {
                nwid: 0xff00160016000000,
                frame: vec![1; 60],
            },
        ] {
            assert_eq!(ToControlPlane::decode(&m.encode()).unwrap(), m);
        }
    }

    #[test]
    fn truncated_and_garbage_records_are_errors() {
        let b = ToDataPlane::Start {
            version: 1,
            bind: vec![a("0.0.0.0:9993")],
            backend: "mmsg".into(),
            workers: 2,
        }
        .encode();
        for n in 0..b.len() {
            assert!(ToDataPlane::decode(&b[..n]).is_err(), "prefix {n}");
        }
        let mut x: u32 = 0x1234_5678;
        for len in 0..400 {
            let v: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            let _ = ToDataPlane::decode(&v);
            let _ = ToControlPlane::decode(&v);
        }
        assert!(ToControlPlane::decode(&[99]).is_err());
    }
}
