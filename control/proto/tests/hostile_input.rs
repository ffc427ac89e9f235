//! Hostile input: the node must never panic and must stay bounded whatever arrives. Mutations of
//! real captured datagrams (so parsing gets past classification and into HELLO, fragments and
//! relaying) and random datagrams are fed to a root and to a leaf, with time advancing.
//! spec: vl1.md §3.8, §4

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use weft_conformance::{read, read_pcap, read_text};
use weft_proto::{LocalSocket, Node, NodeConfig};
use weft_wire::{Identity, World};

fn node(name: &str, planet: &World, now: i64) -> Node {
    let id: Identity = read_text(&format!("capture/identities/{name}.secret"))
        .parse()
        .unwrap();
    Node::new(
        id,
        NodeConfig::new(planet.clone()),
        now,
        &mut ChaCha20Rng::seed_from_u64(1),
    )
}

#[test]
fn mutated_and_random_datagrams_never_panic() {
    let (planet, _) = World::decode(&read("planet/planet.bin")).unwrap();
    let mut seeds: Vec<Vec<u8>> = Vec::new();
    for pcap in [
        "capture/session.pcap",
        "capture/fragments.pcap",
        "capture/planet-update-accepted.pcap",
    ] {
        seeds.extend(read_pcap(pcap).into_iter().map(|d| d.payload));
    }
    assert!(seeds.len() > 200);
    let mut now = 1_795_320_780_000i64;
    let mut nodes = [node("root", &planet, now), node("a", &planet, now)];
    let mut rng = ChaCha20Rng::seed_from_u64(2024);
    let mut fed = 0u64;
    for round in 0..20_000u32 {
        let mut d = if round % 10 == 0 {
            let len = (rng.next_u32() % 1600) as usize;
            let mut v = vec![0u8; len];
            rng.fill_bytes(&mut v);
            v
        } else {
            seeds[(rng.next_u32() as usize) % seeds.len()].clone()
        };
        // Mutate: flip bytes, truncate, or extend.
        match rng.next_u32() % 4 {
            0 if !d.is_empty() => {
                for _ in 0..1 + rng.next_u32() % 4 {
                    let i = (rng.next_u32() as usize) % d.len();
                    d[i] ^= 1 << (rng.next_u32() % 8);
                }
            }
            1 if !d.is_empty() => d.truncate((rng.next_u32() as usize) % d.len()),
            2 => d.extend((0..rng.next_u32() % 64).map(|_| rng.next_u32() as u8)),
            _ => {}
        }
        let from = format!(
            "10.77.{}.{}:9993",
            1 + rng.next_u32() % 4,
            1 + rng.next_u32() % 3
        )
        .parse()
        .unwrap();
        let n = &mut nodes[(round % 2) as usize];
        n.handle_datagram(now, LocalSocket(0), from, &d);
        while n.poll_transmit().is_some() {}
        while n.poll_event().is_some() {}
        fed += 1;
        if round % 100 == 0 {
            now += 700;
            for n in &mut nodes {
                n.handle_timeout(now);
                while n.poll_transmit().is_some() {}
                while n.poll_event().is_some() {}
            }
        }
    }
    assert_eq!(fed, 20_000);
    for n in &nodes {
        let s = n.stats();
        assert_eq!(s.datagrams_in, 10_000);
        assert!(
            s.mac_failures + s.malformed + s.duplicates + s.rate_limited > 0,
            "{s:?}"
        );
        // Bounded: only a handful of real identities exist in the inputs.
        assert!(n.peers(now).len() <= 8, "{}", n.peers(now).len());
    }
}
