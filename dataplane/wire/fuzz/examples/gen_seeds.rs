//! Writes the seed corpora for the fuzz targets, built with the weft-wire API itself (no copied
//! vectors). Deterministic: the same seeds come out on every run.
//!
//!     cd dataplane/wire/fuzz && cargo run --release --example gen_seeds -- corpus
//!
//! Files are named `seed-<what>`; existing files are overwritten, others are left alone.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use rand_core::{CryptoRng, RngCore};
use weft_wire::address::{Address, NetworkId};
use weft_wire::armor::{armor, armor_trusted_path};
use weft_wire::compress::compress_packet;
use weft_wire::crypto::PeerKey;
use weft_wire::dictionary::Dictionary;
use weft_wire::fragment::Fragmenter;
use weft_wire::identity::{Identity, public_from_private};
use weft_wire::inet::{InetAddress, PathRecord};
use weft_wire::packet::{CipherSuite, FLAG_FRAGMENTED, IDX_FLAGS, Verb, build};
use weft_wire::verbs::vl2::{Frame, NetworkConfigRequest};
use weft_wire::verbs::{
    ErrorCode, ErrorHeader, Hello, MoonRef, OkHeader, OkHello, PushDirectPaths, Rendezvous,
    UserMessage, Whois,
};
use weft_wire::world::{Root, World, WorldType};

/// The key `weft_wire::fuzzing::datagram` dearmors with, so that seeds authenticate.
const FUZZ_KEY: [u8; 48] = [0x5a; 48];

/// splitmix64: deterministic seeds only, not a real CSPRNG.
struct SeedRng(u64);

impl RngCore for SeedRng {
    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for c in dest.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}
impl CryptoRng for SeedRng {}

struct Out {
    root: PathBuf,
    count: usize,
}

impl Out {
    fn put(&mut self, target: &str, name: &str, data: &[u8]) {
        let dir = self.root.join(target);
        std::fs::create_dir_all(&dir).expect("create corpus dir");
        std::fs::write(dir.join(format!("seed-{name}")), data).expect("write seed");
        self.count += 1;
    }
}

fn addr(v: u64) -> Address {
    Address::new(v).expect("40-bit address")
}

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

/// A cheap identity (address not derived through the hash; the fuzz targets do not validate).
fn cheap_identity(rng: &mut SeedRng, address: u64) -> Identity {
    let mut private = [0u8; 64];
    rng.fill_bytes(&mut private);
    Identity::from_parts(addr(address), public_from_private(&private), Some(private))
        .expect("identity")
}

fn armored(mut p: Vec<u8>, key: &PeerKey, suite: CipherSuite) -> Vec<u8> {
    armor(&mut p, key, suite).expect("armor");
    p
}

fn world(rng: &mut SeedRng, kind: WorldType, roots: usize, endpoints: usize) -> (World, [u8; 64]) {
    let mut signer = [0u8; 64];
    rng.fill_bytes(&mut signer);
    let mut w = World {
        kind,
        id: rng.next_u64(),
        timestamp: 1_700_000_000_000 + rng.next_u64() % 1_000_000,
        updates_must_be_signed_by: public_from_private(&signer),
        signature: [0; 96],
        roots: (0..roots)
            .map(|i| Root {
                identity: cheap_identity(rng, 0x10_0000_0000 + i as u64).to_public(),
                stable_endpoints: (0..endpoints)
                    .map(|j| {
                        if j % 2 == 0 {
                            sa(&format!("203.0.113.{}:{}", i + 1, 9993 + j))
                        } else {
                            sa(&format!("[2001:db8::{:x}]:{}", i + 1, 9993 + j))
                        }
                    })
                    .collect(),
            })
            .collect(),
    };
    w.sign(&signer);
    (w, signer)
}

fn main() {
    let root = std::env::args_os()
        .nth(1)
        .map_or_else(|| PathBuf::from("corpus"), PathBuf::from);
    let mut out = Out { root, count: 0 };
    let mut rng = SeedRng(0x7765_6674_2d66_757a);
    let key = PeerKey::from_bytes(&FUZZ_KEY);

    // Identities: one real (hashcash-derived) identity, one cheap one.
    let real = Identity::generate(&mut rng);
    assert!(real.validate());
    let cheap = cheap_identity(&mut rng, 0x2f_52c8_fb18);
    let (src, dst) = (real.address(), addr(0x55_5b50_31f8));

    identity_seeds(&mut out, &real, &cheap);
    address_seeds(&mut out);
    dictionary_seeds(&mut out);
    let worlds = world_seeds(&mut out, &mut rng);
    datagram_seeds(&mut out, &key, &real, src, dst, &worlds);
    reassembly_seeds(&mut out, &key, src, dst);
    println!(
        "wrote {} seeds under {}",
        out.count,
        Path::new(&out.root).display()
    );
}

fn identity_seeds(out: &mut Out, real: &Identity, cheap: &Identity) {
    for (n, id) in [("real", real), ("cheap", cheap)] {
        out.put(
            "identity",
            &format!("{n}-public-text"),
            id.to_string().as_bytes(),
        );
        out.put(
            "identity",
            &format!("{n}-secret-text"),
            id.to_secret_string().expect("secret").as_bytes(),
        );
        let mut b = Vec::new();
        id.write_binary(&mut b, false);
        out.put("identity", &format!("{n}-public-bin"), &b);
        let mut b = Vec::new();
        id.write_binary(&mut b, true);
        out.put("identity", &format!("{n}-secret-bin"), &b);
    }
    out.put(
        "identity",
        "bad-type-text",
        format!("{}:1:00", real.address()).as_bytes(),
    );
}

fn address_seeds(out: &mut Out) {
    let ips = [
        "10.1.2.3:9993",
        "0.0.0.0:0",
        "[fd00::1]:9993",
        "[::ffff:192.0.2.1]:443",
        "[fe80::1]:1",
    ];
    for (i, s) in ips.iter().enumerate() {
        let a = sa(s);
        let mut b = Vec::new();
        InetAddress::Ip(a).encode(&mut b);
        out.put("addresses", &format!("inet-{i}"), &b);
        let mut b = Vec::new();
        PathRecord {
            flags: PathRecord::FLAG_FORGET * (i as u8 & 1),
            address: Some(a),
        }
        .encode(&mut b);
        out.put("addresses", &format!("path-{i}"), &b);
        out.put(
            "addresses",
            &format!("text-{i}"),
            format!("{}/{}", a.ip(), a.port()).as_bytes(),
        );
    }
    out.put("addresses", "inet-nil", &[0]);
    out.put("addresses", "inet-reserved-1", &[1, 0, 0, 0, 0, 0, 0]);
    out.put("addresses", "inet-reserved-3", &[3, 0, 2, 0xaa, 0xbb]);
    // A path record with extension bytes and an unknown address kind (skipped by receivers).
    out.put(
        "addresses",
        "path-ext-unknown",
        &[0x02, 0, 2, 9, 9, 5, 3, 1, 2, 3],
    );
    out.put("addresses", "text-address", b"2f52c8fb18");
}

fn dictionary_seeds(out: &mut Out) {
    let mut d = Dictionary::new();
    d.add_u64("v", 7).unwrap();
    d.add_bool("b", true).unwrap();
    d.add("n", b"my network").unwrap();
    d.add("esc", b"a=b\r\n\\\0end").unwrap();
    out.put("dictionary", "basic", &d.to_bytes());
    let mut d = Dictionary::new();
    d.add_u64("r", 0xdead_beef).unwrap();
    d.add_u64("ts", 1_700_000_000_000).unwrap();
    d.add("C", &[0u8, 1, 2, 0xff, b'=', b'\n']).unwrap();
    let mut bytes = d.to_bytes();
    bytes.extend_from_slice(b"\r\n\n");
    out.put("dictionary", "crlf", &bytes);
    out.put("dictionary", "nul-terminated", b"a=1\nb=2\0c=3");
    out.put("dictionary", "empty-value", b"k=\nj=\\");
}

fn world_seeds(out: &mut Out, rng: &mut SeedRng) -> Vec<Vec<u8>> {
    let mut all = Vec::new();
    for (name, kind, roots, eps) in [
        ("planet-4x2", WorldType::Planet, 4, 2),
        ("planet-1x1", WorldType::Planet, 1, 1),
        ("moon-2x3", WorldType::Moon, 2, 3),
        ("moon-empty", WorldType::Moon, 0, 0),
    ] {
        let (w, _) = world(rng, kind, roots, eps);
        let b = w.to_bytes();
        out.put("world", name, &b);
        all.push(b);
    }
    // Two worlds back to back, as OK(HELLO) carries them.
    out.put("world", "two", &[all[1].clone(), all[2].clone()].concat());
    all
}

fn datagram_seeds(
    out: &mut Out,
    key: &PeerKey,
    real: &Identity,
    src: Address,
    dst: Address,
    worlds: &[Vec<u8>],
) {
    let id = [1, 2, 3, 4, 5, 6, 7, 8];
    let hello = Hello {
        protocol_version: 12,
        major: 1,
        minor: 14,
        revision: 2,
        timestamp: 1_700_000_000_123,
        identity: real.to_public(),
        destination: Some(InetAddress::Ip(sa("198.51.100.7:9993"))),
        planet: Some((0x0000_0000_ea9d_1ca5, 1_567_191_349_589)),
        encrypted_tail: Vec::new(),
    };
    let moons = [MoonRef {
        kind: 127,
        id: 0xde_adbe_ef00,
        timestamp: 0,
    }];
    out.put(
        "datagram",
        "hello",
        &hello.to_packet(id, dst, &moons, key).expect("hello"),
    );
    out.put(
        "datagram",
        "hello-nomoons",
        &hello.to_packet(id, dst, &[], key).expect("hello"),
    );

    let mut payloads: Vec<(&str, Verb, Vec<u8>)> = Vec::new();
    let mut ok = Vec::new();
    OkHeader {
        in_re_verb: Verb::HELLO,
        in_re_packet_id: 0x0102_0304_0506_0708,
    }
    .encode(&mut ok);
    let okh = OkHello {
        timestamp_echo: 1_700_000_000_123,
        protocol_version: 12,
        major: 1,
        minor: 14,
        revision: 2,
        your_address: Some(InetAddress::Ip(sa("[2001:db8::5]:41000"))),
        world_updates: [worlds[1].clone(), worlds[2].clone()].concat(),
    };
    okh.encode(&mut ok);
    payloads.push(("ok-hello", Verb::OK, ok));
    let mut body = Vec::new();
    okh.encode(&mut body);
    payloads.push(("ok-hello-body", Verb::OK, body));
    let mut e = Vec::new();
    ErrorHeader {
        in_re_verb: Verb::NETWORK_CONFIG_REQUEST,
        in_re_packet_id: 9,
        code: ErrorCode::OBJ_NOT_FOUND,
    }
    .encode(&mut e);
    payloads.push(("error", Verb::ERROR, e));
    let mut w = Vec::new();
    Whois {
        addresses: vec![src, addr(0x01_2345_6789)],
    }
    .encode(&mut w);
    payloads.push(("whois", Verb::WHOIS, w));
    payloads.push(("ok-whois-body", Verb::OK, real.to_public_bytes().to_vec()));
    let mut r = Vec::new();
    Rendezvous {
        flags: 0,
        with: dst,
        address: sa("10.77.3.1:9993"),
    }
    .encode(&mut r);
    payloads.push(("rendezvous4", Verb::RENDEZVOUS, r));
    let mut r = Vec::new();
    Rendezvous {
        flags: 0,
        with: dst,
        address: sa("[fd00::77]:9993"),
    }
    .encode(&mut r);
    payloads.push(("rendezvous6", Verb::RENDEZVOUS, r));
    let mut p = Vec::new();
    PushDirectPaths {
        records: vec![
            PathRecord {
                flags: 0,
                address: Some(sa("192.0.2.44:9993")),
            },
            PathRecord {
                flags: PathRecord::FLAG_FORGET,
                address: Some(sa("[2001:db8::44]:9993")),
            },
        ],
    }
    .encode(&mut p);
    payloads.push(("push-direct-paths", Verb::PUSH_DIRECT_PATHS, p));
    let mut u = Vec::new();
    UserMessage {
        type_id: 0x1_0000,
        data: b"hello, user".to_vec(),
    }
    .encode(&mut u);
    payloads.push(("user-message", Verb::USER_MESSAGE, u));
    let nwid = NetworkId(0x8056_c2e2_1c00_0001);
    let eth: Vec<u8> = (0..200u8).collect();
    let mut f = Vec::new();
    Frame {
        network_id: nwid,
        ethertype: 0x0800,
        payload: &eth,
    }
    .encode(&mut f);
    payloads.push(("frame", Verb::FRAME, f));
    let mut xf = nwid.0.to_be_bytes().to_vec();
    xf.push(0x10);
    xf.extend_from_slice(&[0x32, 0, 0, 0, 0, 1, 0x32, 0, 0, 0, 0, 2]);
    xf.extend_from_slice(&0x86ddu16.to_be_bytes());
    xf.extend_from_slice(&eth[..60]);
    payloads.push(("ext-frame", Verb::EXT_FRAME, xf));
    let mut like = Vec::new();
    for adi in [0u32, 0x0a00_0001] {
        like.extend_from_slice(&nwid.0.to_be_bytes());
        like.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        like.extend_from_slice(&adi.to_be_bytes());
    }
    payloads.push(("multicast-like", Verb::MULTICAST_LIKE, like.clone()));
    let mut g = nwid.0.to_be_bytes().to_vec();
    g.push(0);
    g.extend_from_slice(&like[8..18]);
    g.extend_from_slice(&32u32.to_be_bytes());
    payloads.push(("multicast-gather", Verb::MULTICAST_GATHER, g));
    let mut okg = Vec::new();
    OkHeader {
        in_re_verb: Verb::MULTICAST_GATHER,
        in_re_packet_id: 77,
    }
    .encode(&mut okg);
    okg.extend_from_slice(&nwid.0.to_be_bytes());
    okg.extend_from_slice(&like[8..18]);
    okg.extend_from_slice(&3u32.to_be_bytes());
    okg.extend_from_slice(&2u16.to_be_bytes());
    okg.extend_from_slice(&src.to_bytes());
    okg.extend_from_slice(&dst.to_bytes());
    payloads.push(("ok-multicast-gather", Verb::OK, okg.clone()));
    payloads.push(("ok-multicast-gather-body", Verb::OK, okg[9..].to_vec()));
    let mut mf = nwid.0.to_be_bytes().to_vec();
    mf.push(0x06);
    mf.extend_from_slice(&16u32.to_be_bytes());
    mf.extend_from_slice(&[0x32, 0, 0, 0, 0, 9]);
    mf.extend_from_slice(&like[8..18]);
    mf.extend_from_slice(&0x0806u16.to_be_bytes());
    mf.extend_from_slice(&eth[..28]);
    payloads.push(("multicast-frame", Verb::MULTICAST_FRAME, mf));
    let mut okmf = nwid.0.to_be_bytes().to_vec();
    okmf.extend_from_slice(&like[8..18]);
    okmf.push(0x02);
    okmf.extend_from_slice(&1u32.to_be_bytes());
    okmf.extend_from_slice(&1u16.to_be_bytes());
    okmf.extend_from_slice(&src.to_bytes());
    payloads.push(("ok-multicast-frame-body", Verb::OK, okmf));
    let mut md = Dictionary::new();
    md.add_u64("v", 7).unwrap();
    md.add_u64("vend", 1).unwrap();
    let meta = md.to_bytes();
    let mut ncr = Vec::new();
    NetworkConfigRequest {
        network_id: nwid,
        metadata: &meta,
        revision: 3,
        timestamp: 1_700_000_000_000,
    }
    .encode(&mut ncr);
    payloads.push(("network-config-request", Verb::NETWORK_CONFIG_REQUEST, ncr));
    // A signed config chunk: nwid, len, data, flags, update id, total, index, sig type/len, sig.
    let mut cfg = Dictionary::new();
    cfg.add_u64("r", 4).unwrap();
    cfg.add("n", b"fuzz").unwrap();
    let data = cfg.to_bytes();
    let mut chunk = nwid.0.to_be_bytes().to_vec();
    chunk.extend_from_slice(&(data.len() as u16).to_be_bytes());
    chunk.extend_from_slice(&data);
    chunk.push(0);
    chunk.extend_from_slice(&0x1234_5678_9abc_def0u64.to_be_bytes());
    chunk.extend_from_slice(&(data.len() as u32).to_be_bytes());
    chunk.extend_from_slice(&0u32.to_be_bytes());
    let sig = real.sign(&chunk).expect("sign");
    chunk.push(1);
    chunk.extend_from_slice(&(sig.len() as u16).to_be_bytes());
    chunk.extend_from_slice(&sig);
    payloads.push(("network-config", Verb::NETWORK_CONFIG, chunk));
    payloads.push(("echo", Verb::ECHO, b"ping".to_vec()));
    payloads.push(("nop", Verb::NOP, Vec::new()));

    let suites = [
        ("c0", CipherSuite::Poly1305None),
        ("c1", CipherSuite::Poly1305Salsa2012),
        ("c3", CipherSuite::AesGmacSiv),
    ];
    for (name, verb, payload) in &payloads {
        let plain = build(id, dst, src, *verb, payload);
        for (sname, suite) in suites {
            out.put(
                "datagram",
                &format!("{name}-{sname}"),
                &armored(plain.clone(), key, suite),
            );
        }
        // Compressed variant where LZ4 shrinks it.
        let mut c = vec![0u8; plain.len()];
        if let Some(n) = compress_packet(&plain, &mut c) {
            c.truncate(n);
            out.put(
                "datagram",
                &format!("{name}-lz4-c1"),
                &armored(c, key, CipherSuite::Poly1305Salsa2012),
            );
        }
    }
    // A highly compressible frame, compressed.
    let mut f = Vec::new();
    Frame {
        network_id: nwid,
        ethertype: 0x0800,
        payload: &[0x41; 1200],
    }
    .encode(&mut f);
    let plain = build(id, dst, src, Verb::FRAME, &f);
    let mut c = vec![0u8; plain.len()];
    let n = compress_packet(&plain, &mut c).expect("compressible");
    c.truncate(n);
    out.put(
        "datagram",
        "frame-lz4-c0",
        &armored(c.clone(), key, CipherSuite::Poly1305None),
    );
    out.put(
        "datagram",
        "frame-lz4-c3",
        &armored(c, key, CipherSuite::AesGmacSiv),
    );
    // Trusted path (cipher 2), a beacon, a keepalive.
    let mut tp = build(id, dst, src, Verb::ECHO, b"trusted");
    armor_trusted_path(&mut tp, 0x1122_3344_5566_7788).expect("trusted path");
    out.put("datagram", "trusted-path", &tp);
    let mut beacon = vec![0u8; 8];
    beacon.extend_from_slice(&src.to_bytes());
    out.put("datagram", "beacon", &beacon);
    out.put("datagram", "keepalive", &[0, 0, 0, 0]);
    // Head and a fragment of a large packet.
    let mut big = build(id, dst, src, Verb::FRAME, &[7u8; 3000]);
    big[IDX_FLAGS] |= FLAG_FRAGMENTED;
    armor(&mut big, key, CipherSuite::Poly1305Salsa2012).expect("armor");
    let fr = Fragmenter::new(&big, 1432).expect("fragmenter");
    out.put("datagram", "fragment-head", fr.head());
    out.put(
        "datagram",
        "fragment-1",
        &fr.fragment(1).expect("fragment 1"),
    );
}

/// Length-prefixed datagram sequences, as `weft_wire::fuzzing::reassembly` reads them.
fn reassembly_seeds(out: &mut Out, key: &PeerKey, src: Address, dst: Address) {
    fn seq(parts: &[&[u8]]) -> Vec<u8> {
        let mut v = Vec::new();
        for p in parts {
            v.extend_from_slice(&(p.len() as u16).to_be_bytes());
            v.extend_from_slice(p);
        }
        v
    }
    let mut packets = Vec::new();
    for (i, (len, suite)) in [
        (1500usize, CipherSuite::Poly1305Salsa2012),
        (3000, CipherSuite::AesGmacSiv),
    ]
    .into_iter()
    .enumerate()
    {
        let id = [9, 9, 9, 9, 0, 0, 0, i as u8];
        let mut p = build(id, dst, src, Verb::FRAME, &vec![i as u8; len]);
        p[IDX_FLAGS] |= FLAG_FRAGMENTED;
        armor(&mut p, key, suite).expect("armor");
        packets.push(p);
    }
    for (pi, p) in packets.iter().enumerate() {
        for mtu in [576usize, 1432] {
            let fr = Fragmenter::new(p, mtu).expect("fragmenter");
            let frags: Vec<Vec<u8>> = (1..fr.total())
                .map(|n| fr.fragment(n).expect("fragment"))
                .collect();
            let mut in_order: Vec<&[u8]> = vec![fr.head()];
            in_order.extend(frags.iter().map(Vec::as_slice));
            out.put(
                "reassembly",
                &format!("p{pi}-mtu{mtu}-in-order"),
                &seq(&in_order),
            );
            let mut reversed: Vec<&[u8]> = frags.iter().rev().map(Vec::as_slice).collect();
            reversed.push(fr.head());
            out.put(
                "reassembly",
                &format!("p{pi}-mtu{mtu}-reversed"),
                &seq(&reversed),
            );
            let mut dup: Vec<&[u8]> = vec![&frags[0], fr.head(), &frags[0]];
            dup.extend(frags.iter().skip(1).map(Vec::as_slice));
            out.put(
                "reassembly",
                &format!("p{pi}-mtu{mtu}-duplicate"),
                &seq(&dup),
            );
        }
    }
    // Two packets interleaved.
    let a = Fragmenter::new(&packets[0], 576).expect("fragmenter");
    let b = Fragmenter::new(&packets[1], 1432).expect("fragmenter");
    let (a1, b1, b2) = (
        a.fragment(1).unwrap(),
        b.fragment(1).unwrap(),
        b.fragment(2).unwrap(),
    );
    let a2 = a.fragment(2).unwrap();
    out.put(
        "reassembly",
        "interleaved",
        &seq(&[&b1, a.head(), &b2, &a1, b.head(), &a2]),
    );
}
