//! Fuzz target bodies, shared by `cargo fuzz` (dataplane/wire/fuzz) and the corpus replay test
//! that the test command runs. Each must never panic on any input.
#![doc(hidden)]

use crate::crypto::PeerKey;
use crate::fragment::{DatagramKind, Fragment, Reassembler, classify};
use crate::packet::{IDX_PAYLOAD, MAX_PACKET_LEN, Packet};

fn fixed_key() -> PeerKey {
    PeerKey::from_bytes(&[0x5a; 48])
}

/// Datagram classification, header parsing, dearmor (all suites), decompression and verb
/// decoding.
pub fn datagram(data: &[u8]) {
    match classify(data) {
        DatagramKind::Packet => {
            let mut buf = data.to_vec();
            if let Ok(p) = Packet::new_checked(&buf[..]) {
                let _ = (
                    p.id(),
                    p.source(),
                    p.destination(),
                    p.hops(),
                    p.cipher(),
                    p.verb(),
                );
            }
            let key = fixed_key();
            let _ = crate::armor::dearmor(&mut buf, &key);
            // Also decode as though it had authenticated, to reach the payload decoders.
            let mut out = vec![0u8; MAX_PACKET_LEN];
            let plain: &[u8] = match Packet::new_checked(&buf[..]) {
                Ok(p) if p.is_compressed() => {
                    match crate::compress::decompress_packet(&buf, &mut out) {
                        Ok(n) => &out[..n],
                        Err(_) => return,
                    }
                }
                Ok(_) => &buf,
                Err(_) => return,
            };
            verb_payloads(plain.get(IDX_PAYLOAD..).unwrap_or_default());
        }
        DatagramKind::Fragment => {
            if let Ok(f) = Fragment::new_checked(data) {
                let _ = (f.packet_id(), f.destination(), f.hops(), f.data());
            }
        }
        DatagramKind::Beacon | DatagramKind::Ignored => {}
    }
}

/// Every verb payload decoder over the same bytes.
pub fn verb_payloads(p: &[u8]) {
    use crate::verbs::{self, vl2};
    if let Ok(h) = verbs::Hello::decode(p) {
        let t = h.decrypt_tail(&fixed_key(), &[0; 8]);
        let _ = verbs::Hello::parse_moons(&t);
    }
    if let Ok(o) = verbs::OkHello::decode(p) {
        let mut rest = &o.world_updates[..];
        while let Ok((_, n)) = crate::world::World::decode(rest) {
            rest = &rest[n..];
        }
    }
    let _ = verbs::OkHeader::decode(p);
    let _ = verbs::ErrorHeader::decode(p);
    let _ = verbs::Whois::decode(p);
    let _ = verbs::ok_whois_identities(p);
    let _ = verbs::Rendezvous::decode(p);
    let _ = verbs::PushDirectPaths::decode(p);
    let _ = verbs::UserMessage::decode(p);
    let _ = vl2::Frame::decode(p);
    let _ = vl2::ExtFrame::decode(p);
    let _ = vl2::multicast_likes(p);
    let _ = vl2::MulticastGather::decode(p);
    let _ = vl2::OkMulticastGather::decode(p);
    let _ = vl2::MulticastFrame::decode(p);
    let _ = vl2::OkMulticastFrame::decode(p);
    let _ = vl2::NetworkConfigRequest::decode(p);
    let _ = vl2::ConfigChunk::decode(p);
}

/// Fragment reassembly: the input is cut into datagrams by a 2-byte length prefix and fed to one
/// reassembler with advancing time.
pub fn reassembly(data: &[u8]) {
    let mut r = Reassembler::new();
    let mut i = 0;
    let mut now = 0i64;
    while i + 2 <= data.len() {
        let len = usize::from(u16::from_be_bytes([data[i], data[i + 1]])) % 2048;
        i += 2;
        let end = (i + len).min(data.len());
        let d = &data[i..end];
        i = end;
        now += 100;
        match classify(d) {
            DatagramKind::Fragment => {
                if let Ok(f) = Fragment::new_checked(d) {
                    let _ = r.add_fragment(now, &f);
                }
            }
            DatagramKind::Packet => {
                let _ = r.add_head(now, d);
            }
            _ => {}
        }
        assert!(r.pending() <= crate::fragment::REASSEMBLY_SLOTS);
    }
}

/// Dictionary parsing and round trip: anything that parses must re-parse to the same entries.
pub fn dictionary(data: &[u8]) {
    if let Ok(d) = crate::dictionary::Dictionary::parse(data) {
        let again = crate::dictionary::Dictionary::parse(&d.to_bytes());
        assert_eq!(again.as_ref(), Ok(&d), "dictionary round trip");
        let _ = (d.get_u64("v"), d.get_bool("b"), d.get_str("n"));
    }
}

/// World parsing; anything that parses must serialize and re-parse to the same world.
pub fn world(data: &[u8]) {
    if let Ok((w, _)) = crate::world::World::decode(data) {
        let bytes = w.to_bytes();
        let (again, n) = crate::world::World::decode(&bytes).expect("re-parse of serialized world");
        assert_eq!(n, bytes.len());
        assert_eq!(again, w);
        let _ = w.verify(&w.updates_must_be_signed_by);
    }
}

/// Identity text and binary forms (no hashcash: validation is too slow for fuzzing and takes no
/// untrusted structure beyond the 64 bytes).
pub fn identity(data: &[u8]) {
    if let Ok(s) = std::str::from_utf8(data)
        && let Ok(id) = s.parse::<crate::identity::Identity>()
    {
        let back: crate::identity::Identity = id.to_string().parse().expect("re-parse public text");
        assert_eq!(back, id);
    }
    if let Ok((id, n)) = crate::identity::Identity::from_binary(data) {
        let mut v = Vec::new();
        id.write_binary(&mut v, true);
        assert_eq!(&v[..], &data[..n]);
    }
}

/// Physical address encodings: InetAddress and PUSH_DIRECT_PATHS records.
pub fn addresses(data: &[u8]) {
    if let Ok((a, _)) = crate::inet::InetAddress::decode(data)
        && let Some(sa) = a.socket_addr()
    {
        let mut v = Vec::new();
        a.encode(&mut v);
        assert_eq!(
            crate::inet::InetAddress::decode(&v).map(|x| x.0.socket_addr()),
            Ok(Some(sa))
        );
        let _ = crate::inet::ip_scope(sa.ip());
    }
    if let Ok((r, _)) = crate::inet::PathRecord::decode(data)
        && r.address.is_some()
    {
        let mut v = Vec::new();
        r.encode(&mut v);
        assert_eq!(crate::inet::PathRecord::decode(&v).map(|x| x.0), Ok(r));
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = s.parse::<crate::inet::IpPort>();
        let _ = s.parse::<crate::address::Address>();
    }
}

/// TCP fallback tunnel stream decoding: the input is one connection's byte stream, fed to a
/// decoder in chunks whose size comes from the first byte. Every record body must re-encode to
/// the bytes it came from, and the parsed and raw decoders must agree. spec: vl1.md §8.13
pub fn tcp_tunnel(data: &[u8]) {
    use crate::tcp_tunnel::{
        MAX_RECORD_LEN, RECORD_HEADER_LEN, Record, TunnelDecoder, encode_datagram, encode_greeting,
        encode_record,
    };
    let chunk = 1 + usize::from(data.first().copied().unwrap_or(0));
    let (mut raw, mut parsed) = (TunnelDecoder::new(), TunnelDecoder::new());
    'stream: for piece in data.chunks(chunk) {
        let (mut rest_raw, mut rest_parsed) = (piece, piece);
        while !rest_raw.is_empty() || !rest_parsed.is_empty() {
            rest_raw = &rest_raw[raw.push(rest_raw)..];
            rest_parsed = &rest_parsed[parsed.push(rest_parsed)..];
            assert!(raw.buffered() <= MAX_RECORD_LEN && parsed.buffered() <= MAX_RECORD_LEN);
            loop {
                let body = match raw.next_body() {
                    Ok(Some(b)) => b,
                    Ok(None) => break,
                    Err(e) => {
                        assert_eq!(parsed.next_record().err(), Some(e), "raw vs parsed error");
                        break 'stream;
                    }
                };
                let from_body = Record::parse(body);
                assert_eq!(
                    parsed.next_record().map(|r| r.expect("same framing")),
                    from_body
                );
                let mut again = Vec::new();
                match from_body {
                    Ok(Record::Greeting {
                        major,
                        minor,
                        revision,
                    }) => again.extend_from_slice(&encode_greeting(major, minor, revision)),
                    Ok(Record::Datagram {
                        addr: Some(addr),
                        payload,
                    }) => {
                        encode_datagram(addr, payload, &mut again).expect("re-encode datagram");
                        // IPv4-mapped IPv6 addresses re-encode as (shorter) IPv4 records.
                        if again.len() != RECORD_HEADER_LEN + body.len() {
                            assert!(matches!(addr.ip(), std::net::IpAddr::V6(ip)
                                if ip.to_ipv4_mapped().is_some()));
                            continue;
                        }
                    }
                    Ok(Record::Datagram { addr: None, .. }) => {
                        encode_record(body, &mut again).expect("re-encode raw")
                    }
                    Err(_) => break 'stream,
                }
                assert_eq!(&again[RECORD_HEADER_LEN..], body, "record round trip");
            }
        }
    }
}

/// VL2 credentials, NETWORK_CREDENTIALS payloads, network configs, request metadata and config
/// chunks. Every credential that decodes re-encodes to bytes that decode to the same value; a
/// config that parses serializes to a dictionary that parses, and a second round is a fixpoint.
pub fn netconf(data: &[u8]) {
    use crate::credential::{Capability, Com, Coo, NetworkCredentials, Revocation, Tag};
    use crate::netconf::NetworkConfig;
    use crate::netconf::chunk::ChunkAssembler;

    macro_rules! round_trip {
        ($t:ty) => {
            if let Ok((v, n)) = <$t>::decode(data) {
                assert!(n <= data.len());
                let mut b = Vec::new();
                v.encode(&mut b);
                let (again, m) = <$t>::decode(&b).expect("re-decode");
                assert_eq!(m, b.len());
                assert_eq!(again, v);
                let _ = v.signed_bytes();
            }
        };
    }
    round_trip!(Com);
    round_trip!(Capability);
    round_trip!(Tag);
    round_trip!(Revocation);
    round_trip!(Coo);
    if let Ok(c) = NetworkCredentials::decode(data) {
        let mut b = Vec::new();
        c.encode(&mut b);
        assert_eq!(NetworkCredentials::decode(&b).as_ref(), Ok(&c));
    }
    if let Ok(c1) = NetworkConfig::from_bytes(data) {
        let b1 = c1.to_bytes();
        if b1.len() < crate::dictionary::NETWORK_CONFIG_CAPACITY {
            let c2 = NetworkConfig::from_bytes(&b1).expect("re-parse of a written config");
            let b2 = c2.to_bytes();
            let c3 = NetworkConfig::from_bytes(&b2).expect("re-parse of a written config");
            assert_eq!(c3, c2, "config round trip");
            assert_eq!(c3.to_bytes(), b2);
        }
        let _ = (c1.mac(), c1.active_bridges(), c1.is_public());
    }
    let _ = crate::netconf::RequestMetadata::parse(data);
    if let Ok(chunk) = crate::verbs::vl2::ConfigChunk::decode(data) {
        let controller =
            crate::identity::Identity::from_parts(chunk.network_id.controller(), [0x42; 64], None);
        if let Ok(controller) = controller {
            let mut a = ChunkAssembler::new();
            let _ = a.add(&chunk, &controller, true, 0);
            let _ = a.add(&chunk, &controller, false, 1);
        }
    }
}
