//! Shared helpers for the conformance suites: where the reference vectors are, reading JSON
//! lines, and reading UDP datagrams out of the reference pcaps.
//!
//! The vectors live outside the repository (`../shared/vectors` from the repo root) and are read
//! in place. When they are missing, every suite fails loudly: a conformance suite that cannot see
//! its ground truth must not pass.

pub mod bondlab;
pub mod netns;
pub mod weftnode;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// The reference vectors directory. Panics with an explanation when it does not exist.
pub fn vectors_dir() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors");
    assert!(
        p.join("README.md").is_file(),
        "\n\n*** CONFORMANCE VECTORS NOT FOUND at {} ***\n\
         The ZeroTier One 1.14.1 reference vectors (shared/vectors) must sit beside the\n\
         repository. Without them the conformance suite cannot pass.\n\n",
        p.display()
    );
    p
}

/// A path inside the vectors directory.
pub fn vector(rel: &str) -> PathBuf {
    vectors_dir().join(rel)
}

/// Reads a file from the vectors directory.
pub fn read(rel: &str) -> Vec<u8> {
    let p = vector(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

/// Reads a text file from the vectors directory.
pub fn read_text(rel: &str) -> String {
    String::from_utf8(read(rel)).unwrap_or_else(|e| panic!("{rel} is not UTF-8: {e}"))
}

/// Reads a JSON file.
pub fn read_json(rel: &str) -> Value {
    serde_json::from_slice(&read(rel)).unwrap_or_else(|e| panic!("{rel}: bad JSON: {e}"))
}

/// Reads a JSON-lines file; also returns the number of non-empty lines so suites can check that
/// they processed every case.
pub fn read_jsonl(rel: &str) -> Vec<Value> {
    read_text(rel)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("{rel} line {}: {e}", i + 1))
        })
        .collect()
}

/// One UDP datagram from a capture.
#[derive(Debug, Clone)]
pub struct Datagram {
    /// 1-based frame number in the pcap.
    pub frame: usize,
    /// Source address.
    pub src: SocketAddr,
    /// Destination address.
    pub dst: SocketAddr,
    /// UDP payload.
    pub payload: Vec<u8>,
}

/// Reads every UDP datagram (Ethernet/IPv4-or-IPv6/UDP) of a pcap in order. Frames that are not
/// UDP are skipped but still counted in `frame` numbering.
pub fn read_pcap(rel: &str) -> Vec<Datagram> {
    let data = read(rel);
    let mut reader = pcap_file::pcap::PcapReader::new(&data[..])
        .unwrap_or_else(|e| panic!("{rel}: not a pcap: {e}"));
    let mut out = Vec::new();
    let mut frame = 0;
    while let Some(pkt) = reader.next_packet() {
        let pkt = pkt.unwrap_or_else(|e| panic!("{rel}: bad pcap record: {e}"));
        frame += 1;
        let sliced = etherparse::SlicedPacket::from_ethernet(&pkt.data)
            .unwrap_or_else(|e| panic!("{rel} frame {frame}: {e}"));
        let (Some(net), Some(etherparse::TransportSlice::Udp(udp))) =
            (&sliced.net, &sliced.transport)
        else {
            continue;
        };
        let (sip, dip): (std::net::IpAddr, std::net::IpAddr) = match net {
            etherparse::NetSlice::Ipv4(v4) => (
                v4.header().source_addr().into(),
                v4.header().destination_addr().into(),
            ),
            etherparse::NetSlice::Ipv6(v6) => (
                v6.header().source_addr().into(),
                v6.header().destination_addr().into(),
            ),
        };
        out.push(Datagram {
            frame,
            src: SocketAddr::new(sip, udp.source_port()),
            dst: SocketAddr::new(dip, udp.destination_port()),
            payload: udp.payload().to_vec(),
        });
    }
    out
}

/// Formats a socket address the way the reference decodings do (`IP:port`).
pub fn ip_colon_port(a: &SocketAddr) -> String {
    format!("{}:{}", a.ip(), a.port())
}
