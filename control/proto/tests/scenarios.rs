//! Deterministic simulations of whole VL1 networks in virtual time. spec: vl1.md §5–§8

mod sim;

use std::sync::OnceLock;

use sim::{NatKind, Sim, T0, identities, planet};
use weft_proto::{Event, NodeConfig};
use weft_wire::Identity;

const ROOT: &str = "198.18.0.1:9993";

fn ids() -> &'static [Identity] {
    static IDS: OnceLock<Vec<Identity>> = OnceLock::new();
    IDS.get_or_init(|| identities(4))
}

/// Root at ROOT; leaves A and B with the given addresses and NATs. Returns (sim, root, a, b).
fn network(
    seed: u64,
    nat_a: Option<NatKind>,
    nat_b: Option<NatKind>,
) -> (Sim, usize, usize, usize) {
    let ids = ids();
    let w = planet(&[(&ids[0], ROOT.parse().unwrap())]);
    let mut s = Sim::new(seed);
    let root = s.add_node(ids[0].clone(), NodeConfig::new(w.clone()), ROOT, None);
    let a = match nat_a {
        Some(k) => {
            let n = s.add_nat("198.18.1.1", k);
            s.add_node(
                ids[1].clone(),
                NodeConfig::new(w.clone()),
                "10.0.1.2:9993",
                Some(n),
            )
        }
        None => s.add_node(
            ids[1].clone(),
            NodeConfig::new(w.clone()),
            "198.18.0.2:9993",
            None,
        ),
    };
    let b = match nat_b {
        Some(k) => {
            let n = s.add_nat("198.18.2.1", k);
            s.add_node(
                ids[2].clone(),
                NodeConfig::new(w.clone()),
                "10.0.2.2:9993",
                Some(n),
            )
        }
        None => s.add_node(ids[2].clone(), NodeConfig::new(w), "198.18.0.3:9993", None),
    };
    (s, root, a, b)
}

/// Leaves in one /24 share the root's identity-validation gate bucket (2 s), so the second
/// HELLO waits for the next 5 s ping round: give start-up 8 s.
const STARTUP_MS: i64 = 8_000;

fn online(s: &Sim, i: usize) -> bool {
    s.nodes[i].node.is_online()
}

#[test]
fn leaves_come_online_and_form_a_direct_path() {
    let (mut s, root, a, b) = network(1, None, None);
    s.run_for(STARTUP_MS);
    assert!(
        online(&s, a) && online(&s, b),
        "leaves online through the root"
    );
    assert!(
        s.nodes[root].node.is_online(),
        "a root is online by definition"
    );
    s.send_user_message(a, b, 0x1_0000, b"first");
    s.run_for(3_000);
    assert_eq!(
        s.user_messages(b),
        vec![(s.nodes[a].node.address(), 0x1_0000, b"first".to_vec())]
    );
    assert!(
        s.nodes[root].node.stats().relayed > 0,
        "the first message went through the root"
    );
    assert!(
        s.direct(a, b) && s.direct(b, a),
        "RENDEZVOUS formed a direct path"
    );
    assert_eq!(
        s.direct_addr(a, b),
        Some("198.18.0.3:9993".parse().unwrap())
    );
    let relayed = s.nodes[root].node.stats().relayed;
    s.send_user_message(a, b, 0x1_0000, b"second");
    s.run_for(1_000);
    assert_eq!(s.user_messages(b).len(), 2);
    assert_eq!(
        s.nodes[root].node.stats().relayed,
        relayed,
        "later traffic is direct"
    );
}

#[test]
fn port_restricted_nats_punch_through() {
    let (mut s, _root, a, b) = network(
        2,
        Some(NatKind::PortRestricted),
        Some(NatKind::PortRestricted),
    );
    s.run_for(STARTUP_MS);
    assert!(online(&s, a) && online(&s, b));
    s.send_user_message(a, b, 0x1_0000, b"hello through NAT");
    s.run_for(5_000);
    assert_eq!(s.user_messages(b).len(), 1);
    assert!(
        s.direct(a, b) && s.direct(b, a),
        "hole punched after RENDEZVOUS"
    );
    let addr = s.direct_addr(a, b).unwrap();
    assert_eq!(
        addr.ip().to_string(),
        "198.18.2.1",
        "A reaches B at B's NAT"
    );
}

#[test]
fn symmetric_nats_fall_back_to_relay() {
    let (mut s, root, a, b) = network(3, Some(NatKind::Symmetric), Some(NatKind::Symmetric));
    s.run_for(STARTUP_MS);
    for i in 0..5u8 {
        s.send_user_message(a, b, 0x1_0000, &[i]);
        s.run_for(3_000);
    }
    assert_eq!(
        s.user_messages(b).len(),
        5,
        "all messages arrive through the relay"
    );
    assert!(
        !s.direct(a, b) && !s.direct(b, a),
        "no direct path through symmetric NATs"
    );
    assert!(s.nodes[root].node.stats().relayed >= 5);
    // and it keeps working for minutes (keepalives, continued attempts)
    s.run_for(300_000);
    s.send_user_message(b, a, 0x1_0000, b"later");
    s.run_for(STARTUP_MS);
    assert_eq!(s.user_messages(a).len(), 1);
}

#[test]
fn loss_duplication_and_reordering() {
    let (mut s, _root, a, b) = network(4, None, None);
    s.run_for(STARTUP_MS);
    s.send_user_message(a, b, 0x1_0000, b"warm-up");
    s.run_for(5_000);
    assert!(s.direct(a, b));
    s.loss = 0.1;
    s.duplicate = 0.3;
    s.jitter_ms = 40;
    for i in 0..100u32 {
        s.send_user_message(a, b, 0x1_0000, &i.to_be_bytes());
        s.run_for(10);
    }
    s.run_for(STARTUP_MS);
    let got: Vec<u32> = s.user_messages(b)[1..]
        .iter()
        .map(|(_, _, d)| u32::from_be_bytes(d[..4].try_into().unwrap()))
        .collect();
    let mut unique = got.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        got.len(),
        "duplicated datagrams were delivered once"
    );
    assert!(
        got.len() >= 75,
        "most messages survive 10% loss: {}",
        got.len()
    );
    assert!(
        s.nodes[b].node.stats().duplicates > 0,
        "the duplicate filter saw duplicates"
    );
    assert!(
        got.windows(2).any(|w| w[0] > w[1]),
        "jitter reordered some messages"
    );
}

#[test]
fn root_going_away_and_coming_back() {
    let (mut s, root, a, b) = network(5, None, None);
    s.run_for(STARTUP_MS);
    assert!(online(&s, a));
    s.nodes[root].up = false;
    s.run_for(520_000);
    assert!(
        !online(&s, a) && !online(&s, b),
        "offline 500 s after the root went silent"
    );
    assert!(
        s.nodes[a]
            .events
            .iter()
            .any(|(_, e)| *e == Event::Online(false))
    );
    s.nodes[root].up = true;
    s.run_for(30_000);
    assert!(
        online(&s, a) && online(&s, b),
        "back online once the root answers again"
    );
}

#[test]
fn clock_jumps() {
    let (mut s, _root, a, b) = network(6, None, None);
    s.run_for(STARTUP_MS);
    // A's clock jumps forward an hour, then back.
    s.nodes[a].clock_offset = 3_600_000;
    s.run_for(10_000);
    s.nodes[a].clock_offset = 0;
    s.run_for(10_000);
    s.send_user_message(a, b, 0x1_0000, b"after jumps");
    s.run_for(5_000);
    assert_eq!(s.user_messages(b).len(), 1);
    assert!(online(&s, a));
    assert!(s.now > T0);
}

#[test]
fn restarted_root_without_memory_gets_its_leaves_back_quickly() {
    let (mut s, root, a, b) = network(7, Some(NatKind::PortRestricted), None);
    s.run_for(STARTUP_MS);
    assert!(online(&s, a) && online(&s, b));
    // The root restarts and has forgotten every peer (no peer cache).
    let id = ids()[0].clone();
    let config = NodeConfig::new(s.nodes[root].node.planet().clone());
    let mut rng = <rand_chacha::ChaCha20Rng as rand_core::SeedableRng>::seed_from_u64(99);
    s.nodes[root].node = weft_proto::Node::new(id, config, s.now, &mut rng);
    s.run_for(40_000);
    let now = s.now;
    let knows = |leaf: usize| {
        let addr = s.nodes[leaf].node.address();
        s.nodes[root]
            .node
            .peer(addr, now)
            .is_some_and(|p| p.is_direct())
    };
    assert!(
        knows(a) && knows(b),
        "leaves re-introduce themselves within 40 s, not 224 s"
    );
    s.send_user_message(a, b, 0x1_0000, b"after restart");
    s.run_for(3_000);
    assert_eq!(s.user_messages(b).len(), 1);
}

/// Trusted paths (cipher 2) on the send side: between two leaves that both trust their /31, the
/// general send path uses cipher 2 once the path is direct (relayed packets and HELLOs never
/// do); a receiver that does not trust the network refuses those packets. spec: vl1.md §3.5
#[test]
fn trusted_paths_carry_direct_traffic_as_cipher_two() {
    use weft_proto::TrustedPath;
    for receiver_trusts in [true, false] {
        let ids = ids();
        let w = planet(&[(&ids[0], ROOT.parse().unwrap())]);
        let mut s = Sim::new(7);
        s.add_node(ids[0].clone(), NodeConfig::new(w.clone()), ROOT, None);
        let trusted = vec![TrustedPath {
            network: "198.18.0.2".parse().unwrap(),
            prefix: 31,
            id: 42,
        }];
        let mut ca = NodeConfig::new(w.clone());
        ca.trusted_paths = trusted.clone();
        let mut cb = NodeConfig::new(w);
        if receiver_trusts {
            cb.trusted_paths = trusted;
        }
        let a = s.add_node(ids[1].clone(), ca, "198.18.0.2:9993", None);
        let b = s.add_node(ids[2].clone(), cb, "198.18.0.3:9993", None);
        s.run_for(STARTUP_MS);
        s.send_user_message(a, b, 0x2_0000, b"via the root");
        s.run_for(3_000);
        assert!(s.direct(a, b), "direct path formed");
        assert_eq!(s.user_messages(b).len(), 1, "relayed: never cipher 2");
        let failures = s.nodes[b].node.stats().mac_failures;
        s.send_user_message(a, b, 0x2_0000, b"direct");
        s.run_for(500);
        if receiver_trusts {
            assert_eq!(
                s.user_messages(b).len(),
                2,
                "cipher 2 accepted on a trusted path"
            );
        } else {
            assert_eq!(
                s.user_messages(b).len(),
                1,
                "cipher 2 refused where not trusted"
            );
            assert!(s.nodes[b].node.stats().mac_failures > failures);
        }
    }
}

/// Leaves with a bonding policy keep a bond per leaf peer (never for the root), carry traffic
/// over it once the direct path is learned, and publish the bond to the data plane.
/// spec: vl1.md §9.1, §9.2
#[test]
fn bonded_leaves_talk_over_their_bond() {
    let ids = ids();
    let w = planet(&[(&ids[0], ROOT.parse().unwrap())]);
    let mut s = Sim::new(11);
    let bonding = weft_proto::bond::BondingConfig::from_local_conf(&serde_json::json!({
        "settings": {"defaultBondingPolicy": "active-backup"}
    }))
    .unwrap();
    let root = s.add_node(ids[0].clone(), NodeConfig::new(w.clone()), ROOT, None);
    let mut cfg = NodeConfig::new(w);
    cfg.bonding = Some(bonding);
    let a = s.add_node(ids[1].clone(), cfg.clone(), "198.18.0.2:9993", None);
    let b = s.add_node(ids[2].clone(), cfg, "198.18.0.3:9993", None);
    s.run_for(STARTUP_MS);
    assert!(online(&s, a) && online(&s, b));
    s.send_user_message(a, b, 0x1_0000, b"first");
    s.run_for(12_000);
    assert!(s.direct(a, b) && s.direct(b, a));
    let (ra, rb) = (s.nodes[root].node.address(), s.nodes[b].node.address());
    assert!(
        s.nodes[a].node.bond_info(ra, s.now).is_none(),
        "roots are never bonded"
    );
    let info = s.nodes[a]
        .node
        .bond_info(rb, s.now)
        .expect("a bond for the leaf");
    assert_eq!(info.policy_name, "active-backup");
    assert_eq!((info.total_links, info.alive_links), (1, 1), "{info:?}");
    assert!(
        info.paths[0].eligible && info.paths[0].preferred,
        "{info:?}"
    );
    let relayed = s.nodes[root].node.stats().relayed;
    for n in 0..5u8 {
        s.send_user_message(a, b, 0x1_0000, &[n]);
    }
    s.run_for(1_000);
    assert_eq!(s.user_messages(b).len(), 6, "each message delivered once");
    assert_eq!(s.nodes[root].node.stats().relayed, relayed, "over the bond");
    let info = s.nodes[a].node.bond_info(rb, s.now).unwrap();
    assert!(info.paths[0].packets >= 5, "{info:?}");
    // Link names: the driver tells which interface a remote is reached by.
    let now = s.now;
    s.nodes[a]
        .node
        .set_path_interface(now, "198.18.0.3".parse().unwrap(), "eth7");
    let info = s.nodes[a].node.bond_info(rb, s.now).unwrap();
    assert_eq!(info.paths[0].link, "eth7");
    assert_eq!(
        s.nodes[a].node.bonded_remotes(),
        vec!["198.18.0.3".parse::<std::net::IpAddr>().unwrap()]
    );
    // The data plane gets the bond's decision.
    let t = s.nodes[a].node.data_plane_tables(s.now);
    let entry = t.peers[&rb].bond.clone().expect("bond entry");
    assert_eq!(entry.kind, weft_engine::BondKind::ActiveBackup);
    assert_eq!(entry.paths.len(), 1);
    assert!(t.peers[&ra].bond.is_none());
    // Quiet for a while: the bond's probes keep the path eligible.
    s.run_for(60_000);
    let info = s.nodes[a].node.bond_info(rb, s.now).unwrap();
    assert_eq!(info.alive_links, 1, "{info:?}");
}
