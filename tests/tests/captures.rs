//! Every datagram of every reference capture: classified, authenticated, decrypted, reassembled,
//! decompressed and parsed, and compared field by field with the expected decoding.
//! spec: vl1.md §3–§6, vl2.md §7, §9; vectors: capture/

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value, json};
use weft_conformance::{Datagram, ip_colon_port, read, read_jsonl, read_pcap, read_text};
use weft_wire::address::{Address, NetworkId};
use weft_wire::compress::decompress_packet;
use weft_wire::dictionary::Dictionary;
use weft_wire::fragment::{DatagramKind, Fragment, Reassembler, classify};
use weft_wire::inet::{InetAddress, IpPort};
use weft_wire::packet::{IDX_PAYLOAD, MAX_PACKET_LEN, Packet, Verb};
use weft_wire::verbs::{self, vl2};
use weft_wire::{Identity, PeerKey, World, armor};

/// The four nodes of the capture network and their pairwise keys.
struct Net {
    ids: HashMap<Address, Identity>,
    keys: HashMap<(Address, Address), PeerKey>,
}

impl Net {
    fn load() -> Net {
        let mut ids = HashMap::new();
        for n in ["root", "ctl", "a", "b"] {
            let id: Identity = read_text(&format!("capture/identities/{n}.secret"))
                .parse()
                .unwrap();
            let public: Identity = read_text(&format!("capture/identities/{n}.public"))
                .parse()
                .unwrap();
            assert_eq!(id, public);
            ids.insert(id.address(), id);
        }
        let mut keys = HashMap::new();
        for a in ids.values() {
            for b in ids.values() {
                if a != b {
                    keys.insert((a.address(), b.address()), a.agree(b).unwrap());
                }
            }
        }
        Net { ids, keys }
    }

    fn key(&self, src: Address, dst: Address) -> &PeerKey {
        self.keys
            .get(&(src, dst))
            .unwrap_or_else(|| panic!("no key for {src} -> {dst}"))
    }
}

/// Assemblies of network-config chunks, by update id.
#[derive(Default)]
struct Netconf {
    parts: BTreeMap<u64, (u32, BTreeMap<u32, Vec<u8>>)>,
    complete: BTreeMap<u64, (NetworkId, Vec<u8>)>,
}

fn hex8(v: u64) -> String {
    format!("{v:016x}")
}

fn ethernet_inner(ethertype: u16, p: &[u8]) -> String {
    match ethertype {
        0x0806 => {
            assert!(p.len() >= 28, "short ARP");
            let op = match u16::from_be_bytes([p[6], p[7]]) {
                1 => "request",
                2 => "reply",
                o => panic!("ARP op {o}"),
            };
            let spa = std::net::Ipv4Addr::new(p[14], p[15], p[16], p[17]);
            let tpa = std::net::Ipv4Addr::new(p[24], p[25], p[26], p[27]);
            format!("ARP {op} {spa} -> {tpa}")
        }
        0x0800 => {
            let ip = etherparse::Ipv4Slice::from_slice(p).expect("IPv4 frame");
            let h = ip.header();
            let (s, d) = (h.source_addr(), h.destination_addr());
            let proto = h.protocol().0;
            if proto == 1 {
                format!("IPv4 ICMP type {} {s} -> {d}", ip.payload().payload[0])
            } else {
                format!("IPv4 proto {proto} {s} -> {d}")
            }
        }
        e => panic!("unexpected ethertype {e:#06x}"),
    }
}

fn chunk_info(c: &vl2::ConfigChunk<'_>, net: &Net, nc: &mut Netconf, out: &mut Map<String, Value>) {
    let s = c.signed.expect("1.14 controllers send signed chunks");
    out.insert("network_id".into(), json!(c.network_id.to_string()));
    out.insert("chunk_len".into(), json!(c.data.len()));
    out.insert("flags".into(), json!(s.flags));
    out.insert("config_update_id".into(), json!(hex8(s.update_id)));
    out.insert("total_size".into(), json!(s.total_len));
    out.insert("chunk_index".into(), json!(s.index));
    let controller = &net.ids[&c.network_id.controller()];
    out.insert("signature_valid".into(), json!(c.verify(controller)));
    let e = nc
        .parts
        .entry(s.update_id)
        .or_insert_with(|| (s.total_len, BTreeMap::new()));
    e.1.insert(s.index, c.data.to_vec());
    let have: usize = e.1.values().map(Vec::len).sum();
    let complete = have == s.total_len as usize;
    if complete {
        let dict: Vec<u8> = e.1.values().flatten().copied().collect();
        nc.complete.insert(s.update_id, (c.network_id, dict));
    }
    out.insert("dictionary_complete".into(), json!(complete));
}

/// Decodes the verb-specific summary of a dearmored, decompressed packet.
fn info(plain: &[u8], net: &Net, nc: &mut Netconf, updates: &mut Vec<World>) -> Value {
    let p = Packet::new_checked(plain).unwrap();
    let payload = p.payload();
    let mut m = Map::new();
    match p.verb() {
        Verb::HELLO => {
            let h = verbs::Hello::decode(payload).unwrap();
            let key = net.key(p.source(), p.destination());
            m.insert("proto".into(), json!(h.protocol_version));
            m.insert(
                "version".into(),
                json!(format!("{}.{}.{}", h.major, h.minor, h.revision)),
            );
            m.insert("timestamp".into(), json!(h.timestamp));
            m.insert("identity".into(), json!(h.identity.to_string()));
            assert_eq!(h.identity, net.ids[&p.source()].to_public());
            if let Some(InetAddress::Ip(a)) = h.destination {
                m.insert("to_address".into(), json!(IpPort(a).to_string()));
            }
            let (pid, pts) = h.planet.unwrap();
            m.insert("planet_id".into(), json!(pid));
            m.insert("planet_ts".into(), json!(pts));
            let tail = h.decrypt_tail(key, &p.id_bytes());
            verbs::Hello::parse_moons(&tail).unwrap();
            m.insert("encrypted_tail_plain".into(), json!(hex::encode(tail)));
        }
        Verb::OK => {
            let ok = verbs::OkHeader::decode(payload).unwrap();
            let body = &payload[verbs::OkHeader::LEN..];
            m.insert("in_re_verb".into(), json!(ok.in_re_verb.name().unwrap()));
            m.insert("in_re_packet_id".into(), json!(hex8(ok.in_re_packet_id)));
            match ok.in_re_verb {
                Verb::HELLO => {
                    let o = verbs::OkHello::decode(body).unwrap();
                    m.insert("timestamp_echo".into(), json!(o.timestamp_echo));
                    m.insert("proto".into(), json!(o.protocol_version));
                    m.insert(
                        "version".into(),
                        json!(format!("{}.{}.{}", o.major, o.minor, o.revision)),
                    );
                    if let Some(InetAddress::Ip(a)) = o.your_address {
                        m.insert("your_address".into(), json!(IpPort(a).to_string()));
                    }
                    m.insert("world_update_len".into(), json!(o.world_updates.len()));
                    let mut rest = &o.world_updates[..];
                    while !rest.is_empty() {
                        let (w, n) = World::decode(rest).unwrap();
                        assert_eq!(w.to_bytes(), rest[..n], "world in OK(HELLO) round-trips");
                        updates.push(w);
                        rest = &rest[n..];
                    }
                }
                Verb::WHOIS => {
                    let ids = verbs::ok_whois_identities(body).unwrap();
                    m.insert("identity".into(), json!(ids[0].to_string()));
                }
                Verb::ECHO => {
                    if body.len() == 16 {
                        m.insert(
                            "network_id".into(),
                            json!(NetworkId::from_slice(body).unwrap().to_string()),
                        );
                        m.insert("config_update_id".into(), json!(hex::encode(&body[8..16])));
                        m.insert("note".into(), json!("ack of NETWORK_CONFIG"));
                    } else {
                        assert!(body.is_empty(), "ECHO probes are empty");
                    }
                }
                Verb::NETWORK_CONFIG_REQUEST => {
                    let c = vl2::ConfigChunk::decode(body).unwrap();
                    chunk_info(&c, net, nc, &mut m);
                }
                Verb::MULTICAST_GATHER => {
                    let o = vl2::OkMulticastGather::decode(body).unwrap();
                    m.insert("network_id".into(), json!(o.network_id.to_string()));
                }
                Verb::MULTICAST_FRAME => {
                    let o = vl2::OkMulticastFrame::decode(body).unwrap();
                    m.insert("network_id".into(), json!(o.network_id.to_string()));
                }
                v => panic!("unexpected OK in re {v}"),
            }
        }
        Verb::ERROR => {
            let e = verbs::ErrorHeader::decode(payload).unwrap();
            m.insert("in_re_verb".into(), json!(e.in_re_verb.name().unwrap()));
            m.insert("in_re_packet_id".into(), json!(hex8(e.in_re_packet_id)));
            m.insert("error_code".into(), json!(e.code.0));
        }
        Verb::WHOIS => {
            let w = verbs::Whois::decode(payload).unwrap();
            let a: Vec<String> = w.addresses.iter().map(Address::to_string).collect();
            m.insert("addresses".into(), json!(a));
        }
        Verb::RENDEZVOUS => {
            let r = verbs::Rendezvous::decode(payload).unwrap();
            m.insert("with".into(), json!(r.with.to_string()));
            m.insert("port".into(), json!(r.address.port()));
            m.insert("ip".into(), json!(r.address.ip().to_string()));
        }
        Verb::PUSH_DIRECT_PATHS => {
            let d = verbs::PushDirectPaths::decode(payload).unwrap();
            assert!(d.records.iter().all(|r| r.address.is_some()));
            m.insert("count".into(), json!(d.records.len()));
        }
        Verb::ECHO | Verb::NETWORK_CREDENTIALS => {}
        Verb::MULTICAST_LIKE => {
            let likes: Vec<Value> = vl2::multicast_likes(payload)
                .unwrap()
                .into_iter()
                .map(|(n, g)| json!({"network_id": n.to_string(), "mac": hex::encode(g.mac.0), "adi": format!("{:08x}", g.adi)}))
                .collect();
            m.insert("likes".into(), json!(likes));
        }
        Verb::MULTICAST_GATHER => {
            let g = vl2::MulticastGather::decode(payload).unwrap();
            m.insert("network_id".into(), json!(g.network_id.to_string()));
            m.insert("mac".into(), json!(hex::encode(g.group.mac.0)));
            m.insert("adi".into(), json!(format!("{:08x}", g.group.adi)));
            m.insert("gather_limit".into(), json!(g.gather_limit));
        }
        Verb::MULTICAST_FRAME => {
            let f = vl2::MulticastFrame::decode(payload).unwrap();
            m.insert("network_id".into(), json!(f.network_id.to_string()));
            m.insert("flags".into(), json!(f.flags));
        }
        Verb::NETWORK_CONFIG_REQUEST => {
            let r = vl2::NetworkConfigRequest::decode(payload).unwrap();
            m.insert("network_id".into(), json!(r.network_id.to_string()));
            Dictionary::parse(r.metadata).expect("metadata is a dictionary");
            m.insert(
                "metadata".into(),
                json!(String::from_utf8_lossy(r.metadata)),
            );
        }
        Verb::NETWORK_CONFIG => {
            let c = vl2::ConfigChunk::decode(payload).unwrap();
            chunk_info(&c, net, nc, &mut m);
        }
        Verb::FRAME => {
            let f = vl2::Frame::decode(payload).unwrap();
            m.insert("network_id".into(), json!(f.network_id.to_string()));
            m.insert("ethertype".into(), json!(format!("{:#06x}", f.ethertype)));
            m.insert(
                "inner".into(),
                json!(ethernet_inner(f.ethertype, f.payload)),
            );
        }
        v => panic!("unexpected verb {v}"),
    }
    Value::Object(m)
}

/// Dearmors, decompresses and decodes a complete packet into `o`.
fn decode_packet(
    packet: &[u8],
    net: &Net,
    nc: &mut Netconf,
    updates: &mut Vec<World>,
    o: &mut Map<String, Value>,
) {
    let mut buf = packet.to_vec();
    let p = Packet::new_checked(&buf[..]).unwrap();
    let key = net.key(p.source(), p.destination());
    let ok = armor::dearmor(&mut buf, key).is_ok();
    o.insert("mac_ok".into(), json!(ok));
    assert!(ok, "authentication failed");
    let mut out = vec![0u8; MAX_PACKET_LEN];
    let compressed = Packet::new_checked(&buf[..]).unwrap().is_compressed();
    let plain: Vec<u8> = if compressed {
        let n = decompress_packet(&buf, &mut out).unwrap();
        o.insert("compressed".into(), json!(true));
        out[..n].to_vec()
    } else {
        buf
    };
    let p = Packet::new_checked(&plain[..]).unwrap();
    o.insert("verb".into(), json!(p.verb().name().unwrap()));
    o.insert("info".into(), info(&plain, net, nc, updates));
    let mut shown = plain[IDX_PAYLOAD - 1..].to_vec();
    if p.verb() == Verb::HELLO {
        let h = verbs::Hello::decode(p.payload()).unwrap();
        let tail = h.decrypt_tail(net.key(p.source(), p.destination()), &p.id_bytes());
        let start = shown.len() - tail.len();
        shown[start..].copy_from_slice(&tail);
    }
    o.insert("plaintext_hex".into(), json!(hex::encode(shown)));
}

struct Outcome {
    datagrams: usize,
    packets: usize,
    fragments: usize,
    keepalives: usize,
    netconf: Netconf,
    updates: Vec<World>,
}

fn run(pcap: &str, decoded: &str) -> Outcome {
    let net = Net::load();
    let dgrams: Vec<Datagram> = read_pcap(pcap);
    let expected = read_jsonl(decoded);
    assert_eq!(
        dgrams.len(),
        expected.len(),
        "{pcap}: datagram count differs from {decoded}"
    );
    let mut reasm = Reassembler::new();
    let mut nc = Netconf::default();
    let mut updates = Vec::new();
    let (mut packets, mut fragments, mut keepalives) = (0, 0, 0);
    for (d, exp) in dgrams.iter().zip(&expected) {
        let mut o = Map::new();
        o.insert("frame".into(), json!(d.frame));
        o.insert("src".into(), json!(ip_colon_port(&d.src)));
        o.insert("dst".into(), json!(ip_colon_port(&d.dst)));
        o.insert("udp_len".into(), json!(d.payload.len()));
        let now = (exp["time"].as_f64().unwrap() * 1000.0) as i64;
        match classify(&d.payload) {
            DatagramKind::Packet => {
                packets += 1;
                let p = Packet::new_checked(&d.payload[..]).unwrap();
                o.insert("kind".into(), json!("packet"));
                o.insert("packet_id".into(), json!(hex::encode(p.id_bytes())));
                o.insert("dest".into(), json!(p.destination().to_string()));
                o.insert("source".into(), json!(p.source().to_string()));
                o.insert("hops".into(), json!(p.hops()));
                o.insert("cipher".into(), json!(p.cipher().unwrap().name()));
                o.insert("fragmented".into(), json!(p.is_fragmented()));
                if p.is_fragmented() {
                    if let Some(whole) = reasm.add_head(now, &d.payload).unwrap() {
                        decode_packet(&whole, &net, &mut nc, &mut updates, &mut o);
                    }
                } else {
                    decode_packet(&d.payload, &net, &mut nc, &mut updates, &mut o);
                }
            }
            DatagramKind::Fragment => {
                fragments += 1;
                let f = Fragment::new_checked(&d.payload).unwrap();
                o.insert("kind".into(), json!("fragment"));
                o.insert("packet_id".into(), json!(format!("{:016x}", f.packet_id())));
                o.insert("dest".into(), json!(f.destination().to_string()));
                o.insert("fragment_no".into(), json!(f.number()));
                o.insert("fragments_total".into(), json!(f.total()));
                o.insert("hops".into(), json!(f.hops()));
                if let Some(whole) = reasm.add_fragment(now, &f).unwrap() {
                    o.insert("reassembled_len".into(), json!(whole.len()));
                    let p = Packet::new_checked(&whole[..]).unwrap();
                    o.insert("source".into(), json!(p.source().to_string()));
                    decode_packet(&whole, &net, &mut nc, &mut updates, &mut o);
                }
            }
            DatagramKind::Ignored if d.payload.len() < 16 => {
                keepalives += 1;
                o.insert("kind".into(), json!("keepalive"));
            }
            k => panic!("{pcap} frame {}: unexpected {k:?}", d.frame),
        }
        let mut want = exp.as_object().unwrap().clone();
        want.remove("time");
        let got = Value::Object(o);
        let want = Value::Object(want);
        assert_eq!(got, want, "{pcap} frame {}", d.frame);
    }
    assert_eq!(reasm.pending(), 0, "{pcap}: incomplete reassemblies left");
    Outcome {
        datagrams: dgrams.len(),
        packets,
        fragments,
        keepalives,
        netconf: nc,
        updates,
    }
}

#[test]
fn session_capture() {
    let o = run("capture/session.pcap", "capture/decoded.jsonl");
    // spec: the totals stated in capture/README.md
    assert_eq!(
        (o.datagrams, o.packets, o.keepalives, o.fragments),
        (189, 186, 3, 0)
    );
    assert_eq!(o.netconf.complete.len(), 4, "netconf dictionaries");
    let nwid = read_text("capture/network_id.txt");
    let mut matched = 0;
    for (update_id, (network_id, dict)) in &o.netconf.complete {
        assert_eq!(network_id.to_string(), nwid.trim());
        let file = format!("netconf/transmitted-{network_id}-{update_id:016x}.dict");
        assert_eq!(dict, &read(&file), "{file}");
        let d = Dictionary::parse(dict).unwrap();
        assert_eq!(d.to_bytes(), *dict, "{file} round-trips");
        matched += 1;
    }
    assert_eq!(matched, 4);
}

#[test]
fn fragments_capture() {
    let o = run("capture/fragments.pcap", "capture/decoded-fragments.jsonl");
    assert_eq!(o.datagrams, 26);
    assert_eq!(o.fragments, 6);
}

#[test]
fn planet_update_accepted_capture() {
    let o = run(
        "capture/planet-update-accepted.pcap",
        "capture/decoded-planet-update-accepted.jsonl",
    );
    assert_eq!(o.datagrams, 28);
    let (v1, _) = World::decode(&read("planet/planet.bin")).unwrap();
    let v2 = read("planet/update/planet-v2-rotated.bin");
    assert!(!o.updates.is_empty());
    for u in &o.updates {
        assert_eq!(u.to_bytes(), v2);
        assert!(
            World::should_replace(Some(&v1), u),
            "B accepts the rotated planet"
        );
    }
}

#[test]
fn planet_update_rejected_capture() {
    let o = run(
        "capture/planet-update-rejected.pcap",
        "capture/decoded-planet-update-rejected.jsonl",
    );
    assert_eq!(o.datagrams, 67);
    let (v1, _) = World::decode(&read("planet/planet.bin")).unwrap();
    let bad = read("planet/update/planet-v2-badsig.bin");
    assert!(!o.updates.is_empty());
    for u in &o.updates {
        assert_eq!(u.to_bytes(), bad);
        assert!(
            !World::should_replace(Some(&v1), u),
            "B rejects the forged planet"
        );
    }
}
