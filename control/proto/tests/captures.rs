//! The protocol core against the reference captures: a weft node holding the capture root's
//! identity is fed the datagrams real ZeroTier One 1.14.1 nodes sent to that root, and what it
//! answers must match, byte for byte after decryption, what the real root answered.
//! spec: vl1.md §5.2, §5.3.1, §5.5, §5.6, §8.3, §8.5, §7.3

use std::net::SocketAddr;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use serde_json::Value;
use weft_conformance::{Datagram, read, read_jsonl, read_pcap, read_text};
use weft_proto::{Event, LocalSocket, Node, NodeConfig, Timestamp, Transmit};
use weft_wire::packet::{IDX_PAYLOAD, Packet, Verb};
use weft_wire::verbs::Hello;
use weft_wire::{Identity, PeerKey, World, armor};

struct Capture {
    dgrams: Vec<Datagram>,
    lines: Vec<Value>,
    /// Wall clock of frame 1 (the root's clock, from the first HELLO's timestamp).
    base: Timestamp,
}

impl Capture {
    fn load(pcap: &str, decoded: &str) -> Capture {
        let dgrams = read_pcap(pcap);
        let lines = read_jsonl(decoded);
        assert_eq!(dgrams.len(), lines.len());
        let first_hello = lines
            .iter()
            .find(|l| l["verb"] == "HELLO")
            .expect("a HELLO");
        let base = first_hello["info"]["timestamp"].as_i64().unwrap()
            - (first_hello["time"].as_f64().unwrap() * 1000.0) as i64;
        Capture {
            dgrams,
            lines,
            base,
        }
    }

    fn frame(&self, n: usize) -> (&Datagram, &Value) {
        let i = self
            .lines
            .iter()
            .position(|l| l["frame"] == n)
            .expect("frame exists");
        (&self.dgrams[i], &self.lines[i])
    }

    fn time(&self, n: usize) -> Timestamp {
        self.base + (self.frame(n).1["time"].as_f64().unwrap() * 1000.0) as Timestamp
    }
}

fn id(name: &str) -> Identity {
    read_text(&format!("capture/identities/{name}.secret"))
        .parse()
        .unwrap()
}

fn node(name: &str, planet: &World, now: Timestamp) -> Node {
    let mut rng = ChaCha20Rng::seed_from_u64(42);
    Node::new(id(name), NodeConfig::new(planet.clone()), now, &mut rng)
}

fn drain(n: &mut Node) -> Vec<Transmit> {
    std::iter::from_fn(|| n.poll_transmit()).collect()
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Dearmors (and shows the HELLO tail decrypted) like the reference decodings' plaintext_hex.
fn plaintext(t: &Transmit, key: &PeerKey) -> (u8, String) {
    let mut p = t.data.clone();
    let cipher = Packet::new_checked(&p[..]).unwrap().cipher_id();
    armor::dearmor(&mut p, key).expect("our packet authenticates");
    let pk = Packet::new_checked(&p[..]).unwrap();
    let mut shown = p[IDX_PAYLOAD - 1..].to_vec();
    if pk.verb() == Verb::HELLO {
        let h = Hello::decode(pk.payload()).unwrap();
        let tail = h.decrypt_tail(key, &pk.id_bytes());
        let start = shown.len() - tail.len();
        shown[start..].copy_from_slice(&tail);
    }
    (cipher, hex::encode(shown))
}

fn verb_of(t: &Transmit, key: &PeerKey) -> Verb {
    let mut p = t.data.clone();
    armor::dearmor(&mut p, key).unwrap();
    Packet::new_checked(&p[..]).unwrap().verb()
}

fn expected_plain(c: &Capture, frame: usize) -> String {
    c.frame(frame).1["plaintext_hex"]
        .as_str()
        .unwrap()
        .to_string()
}

/// HELLO bodies carry the sender's clock: compare everything but those 8 bytes.
fn without_timestamp(hex_plain: &str) -> String {
    format!("{}{}", &hex_plain[..12], &hex_plain[28..])
}

#[test]
fn root_answers_like_the_reference_root() {
    let c = Capture::load("capture/session.pcap", "capture/decoded.jsonl");
    let (planet, _) = World::decode(&read("planet/planet.bin")).unwrap();
    let root_id = id("root");
    let mut root = node("root", &planet, c.base);
    root.handle_timeout(c.base);
    assert!(
        drain(&mut root).is_empty(),
        "a lone root has nobody to ping"
    );

    let mut checked = 0;
    // (member, its HELLO frame, the root's OK frame, the root's own HELLO frame)
    for (name, ip, hello, ok, own_hello) in [
        ("ctl", "10.77.2.1:9993", 1, 3, 4),
        ("a", "10.77.3.1:9993", 2, 7, 8),
        ("b", "10.77.4.1:9993", 6, 10, 11),
    ] {
        let member_id = id(name);
        let key = member_id.agree(&root_id).unwrap();
        let now = c.time(hello);
        root.handle_datagram(now, LocalSocket(0), addr(ip), &c.frame(hello).0.payload);
        let out = drain(&mut root);
        assert!(
            out.iter().all(|t| t.to == addr(ip)),
            "replies go back over the receiving path"
        );
        let oks: Vec<&Transmit> = out
            .iter()
            .filter(|t| verb_of(t, &key) == Verb::OK)
            .collect();
        let hellos: Vec<&Transmit> = out
            .iter()
            .filter(|t| verb_of(t, &key) == Verb::HELLO)
            .collect();
        assert_eq!(
            (oks.len(), hellos.len()),
            (1, 1),
            "{name}: OK(HELLO) and a confirming HELLO"
        );
        // The first OK(HELLO) to a brand-new peer is cipher 1, as in the capture. spec: vl1.md §3.6
        let (cipher, plain) = plaintext(oks[0], &key);
        assert_eq!(cipher, 1, "{name}: first OK(HELLO) uses Salsa20/12");
        assert_eq!(
            plain,
            expected_plain(&c, ok),
            "{name}: OK(HELLO) body (frame {ok})"
        );
        let (cipher, plain) = plaintext(hellos[0], &key);
        assert_eq!(cipher, 0);
        assert_eq!(
            without_timestamp(&plain),
            without_timestamp(&expected_plain(&c, own_hello)),
            "{name}: HELLO (frame {own_hello})"
        );
        checked += 2;
        // Let the member (a weft node with the member's identity) answer our HELLO so the root
        // learns its path, as the real member did.
        let mut member = node(name, &planet, now);
        drain(&mut member);
        member.handle_datagram(now, LocalSocket(0), addr("10.77.1.1:9993"), &hellos[0].data);
        for t in drain(&mut member)
            .into_iter()
            .filter(|t| t.to == addr("10.77.1.1:9993"))
        {
            root.handle_datagram(now + 1, LocalSocket(0), addr(ip), &t.data);
        }
        drain(&mut root);
        let info = root.peer(member_id.address(), now + 1).unwrap();
        assert!(info.is_direct(), "{name}: path learned from the OK(HELLO)");
    }

    // WHOIS for the root itself (frame 13 → 14) and for ctl (frame 17 → 20).
    for (name, whois, ok) in [("ctl", 13, 14), ("a", 17, 20)] {
        let key = id(name).agree(&root_id).unwrap();
        let (d, _) = c.frame(whois);
        root.handle_datagram(c.time(whois), LocalSocket(0), d.src, &d.payload);
        let out = drain(&mut root);
        assert_eq!(out.len(), 1);
        assert_eq!(
            plaintext(&out[0], &key).1,
            expected_plain(&c, ok),
            "OK(WHOIS) frame {ok}"
        );
        checked += 1;
    }

    // A's NETWORK_CONFIG_REQUEST for ctl (frame 21): relayed with hops 1 (frame 22) and
    // RENDEZVOUS to both ends (frames 23, 24).
    let (d, _) = c.frame(21);
    root.handle_datagram(c.time(21), LocalSocket(0), d.src, &d.payload);
    let out = drain(&mut root);
    assert_eq!(out.len(), 3, "relay + two RENDEZVOUS");
    let relayed = out
        .iter()
        .find(|t| t.data == c.frame(22).0.payload)
        .expect("relayed copy");
    assert_eq!(relayed.to, addr("10.77.2.1:9993"));
    let key_ctl = id("ctl").agree(&root_id).unwrap();
    let key_a = id("a").agree(&root_id).unwrap();
    let rv_ctl = out
        .iter()
        .find(|t| t.to == addr("10.77.2.1:9993") && t.data != c.frame(22).0.payload)
        .unwrap();
    let rv_a = out.iter().find(|t| t.to == addr("10.77.3.1:9993")).unwrap();
    assert_eq!(
        plaintext(rv_ctl, &key_ctl).1,
        expected_plain(&c, 23),
        "RENDEZVOUS to ctl"
    );
    assert_eq!(
        plaintext(rv_a, &key_a).1,
        expected_plain(&c, 24),
        "RENDEZVOUS to A"
    );
    checked += 3;

    // The same through the data plane: the engine, working from the tables the node publishes,
    // relays B's NETWORK_CONFIG_REQUEST for ctl (frame 45) exactly as the reference root did
    // (frame 46), and the node, told about it, sends the two RENDEZVOUS (frames 47, 48).
    let now = c.time(45);
    let tables = root.data_plane_tables(now);
    assert!(tables.relay, "a root relays");
    let (d, _) = c.frame(45);
    let mut engine = weft_engine::Engine::default();
    let mut verdicts = Vec::new();
    engine.process_rx(&tables, 0, &[(d.src, &d.payload[..])], &mut verdicts);
    let weft_engine::Verdict::Relay {
        to,
        data,
        ends: Some((src, dst)),
        ..
    } = &verdicts[0]
    else {
        panic!("expected a relay verdict, got {:?}", verdicts[0]);
    };
    assert_eq!(
        (*to, data),
        (addr("10.77.2.1:9993"), &c.frame(46).0.payload)
    );
    root.relayed(now, *src, *dst);
    let out = drain(&mut root);
    let key_b = id("b").agree(&root_id).unwrap();
    let rv_ctl = out
        .iter()
        .find(|t| t.to == addr("10.77.2.1:9993"))
        .expect("RENDEZVOUS to ctl");
    let rv_b = out
        .iter()
        .find(|t| t.to == addr("10.77.4.1:9993"))
        .expect("RENDEZVOUS to B");
    assert_eq!(plaintext(rv_ctl, &key_ctl).1, expected_plain(&c, 47));
    assert_eq!(plaintext(rv_b, &key_b).1, expected_plain(&c, 48));
    root.relayed(now + 1, *src, *dst);
    assert!(
        drain(&mut root).is_empty(),
        "one introduction per pair per 30 s"
    );
    checked += 3;
    assert_eq!(checked, 14);
    assert_eq!(root.stats().mac_failures, 0);
}

#[test]
fn planet_update_pushed_in_ok_hello_and_applied_by_the_rule() {
    let c = Capture::load(
        "capture/planet-update-accepted.pcap",
        "capture/decoded-planet-update-accepted.jsonl",
    );
    let (v1, _) = World::decode(&read("planet/planet.bin")).unwrap();
    let v2_bytes = read("planet/update/planet-v2-rotated.bin");
    let (v2, _) = World::decode(&v2_bytes).unwrap();
    let root_id = id("root");
    let key_b = id("b").agree(&root_id).unwrap();

    // A weft root holding v2 answers B's HELLO (frame 11) exactly as the reference root did
    // (frame 15), including the 257-byte planet in the OK(HELLO).
    let now = c.time(11);
    let mut root = node("root", &v2, now);
    let (d, _) = c.frame(11);
    root.handle_datagram(now, LocalSocket(0), d.src, &d.payload);
    let out = drain(&mut root);
    let ok = out
        .iter()
        .find(|t| verb_of(t, &key_b) == Verb::OK)
        .expect("OK(HELLO)");
    assert_eq!(plaintext(ok, &key_b).1, expected_plain(&c, 15));

    // A weft leaf holding v1 accepts that update and asks for the file to be rewritten; one
    // holding v1 talking to a root with the forged update keeps v1.
    for (update, accept) in [("planet-v2-rotated", true), ("planet-v2-badsig", false)] {
        let (offered, _) = World::decode(&read(&format!("planet/update/{update}.bin"))).unwrap();
        let mut root = node("root", &offered, now);
        let mut leaf = node("b", &v1, now);
        leaf.handle_timeout(now);
        for t in drain(&mut leaf) {
            assert_eq!(
                t.to,
                addr("10.77.1.1:9993"),
                "the leaf only contacts its root"
            );
            root.handle_datagram(now, LocalSocket(0), addr("10.77.4.1:9993"), &t.data);
        }
        for t in drain(&mut root) {
            leaf.handle_datagram(now + 5, LocalSocket(0), addr("10.77.1.1:9993"), &t.data);
        }
        let events: Vec<Event> = std::iter::from_fn(|| leaf.poll_event()).collect();
        let updated = events
            .iter()
            .any(|e| matches!(e, Event::PlanetUpdated { bytes } if *bytes == offered.to_bytes()));
        assert_eq!(updated, accept, "{update}");
        assert_eq!(
            leaf.planet().timestamp,
            if accept { v2.timestamp } else { v1.timestamp }
        );
        assert!(leaf.is_online());
    }
}
