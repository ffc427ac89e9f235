//! VL2 in virtual time: a weft controller configures two members of a private network, which
//! then exchange ARP (multicast with gathering), unicast frames and rules-filtered traffic; a
//! deauthorized member is cut off by the revocation; an unauthorized one is denied.
//! spec: vl2.md §6, §7, §9, §13, §14, §16; controller.md §3–§5

mod sim;

use std::net::Ipv4Addr;
use std::sync::OnceLock;

use serde_json::json;
use sim::{Sim, T0, identities, planet};
use weft_controller::controller::Controller;
use weft_controller::{MemoryStore, NetworkRecord, Store};
use weft_proto::{Event, NetworkStatus, NodeConfig};
use weft_wire::mac::Mac;
use weft_wire::verbs::vl2::MulticastGroup;
use weft_wire::{Identity, NetworkId};

const ROOT: &str = "198.18.0.1:9993";

fn ids() -> &'static [Identity] {
    static IDS: OnceLock<Vec<Identity>> = OnceLock::new();
    IDS.get_or_init(|| identities(5))
}

struct Net {
    s: Sim,
    ctl: usize,
    a: usize,
    b: usize,
    c: usize,
    nwid: NetworkId,
}

fn ipv4_of(s: &Sim, i: usize, nwid: NetworkId) -> Ipv4Addr {
    let n = s.nodes[i].node.network(nwid).expect("joined");
    let c = n.config.expect("configured");
    c.static_ips
        .iter()
        .find_map(|ip| match ip.addr() {
            std::net::IpAddr::V4(v4) => Some(v4),
            _ => None,
        })
        .expect("an IPv4 address")
}

fn setup(rules: serde_json::Value) -> Net {
    setup_with(rules, json!([]), &[])
}

/// `capabilities` go into the network record; `a_caps` are given to member a.
fn setup_with(rules: serde_json::Value, capabilities: serde_json::Value, a_caps: &[u32]) -> Net {
    let ids = ids();
    let w = planet(&[(&ids[0], ROOT.parse().unwrap())]);
    let mut s = Sim::new(42);
    let _root = s.add_node(ids[0].clone(), NodeConfig::new(w.clone()), ROOT, None);
    let mut cc = NodeConfig::new(w.clone());
    cc.controller = true;
    let ctl = s.add_node(ids[1].clone(), cc, "198.18.0.2:9993", None);
    let a = s.add_node(
        ids[2].clone(),
        NodeConfig::new(w.clone()),
        "198.18.0.3:9993",
        None,
    );
    let b = s.add_node(
        ids[3].clone(),
        NodeConfig::new(w.clone()),
        "198.18.0.4:9993",
        None,
    );
    let c = s.add_node(ids[4].clone(), NodeConfig::new(w), "198.18.0.5:9993", None);
    let nwid = NetworkId((ids[1].address().to_u64() << 24) | 0x01);
    let mut controller = Controller::new(ids[1].clone(), MemoryStore::new()).unwrap();
    let rec = NetworkRecord::from_json(&json!({
        "id": nwid.to_string(), "nwid": nwid.to_string(), "name": "sim",
        "v4AssignMode": {"zt": true},
        "v6AssignMode": {"rfc4193": true, "6plane": true, "zt": false},
        "ipAssignmentPools": [{"ipRangeStart": "10.147.17.1", "ipRangeEnd": "10.147.17.254"}],
        "routes": [{"target": "10.147.17.0/24", "via": null}],
        "rules": rules,
        "capabilities": capabilities,
    }))
    .unwrap();
    controller
        .create_network(T0, nwid, rec, &mut s.rng)
        .unwrap();
    for m in [a, b] {
        controller
            .authorize(T0, nwid, ids[m].address(), true, &mut s.rng)
            .unwrap();
    }
    if !a_caps.is_empty() {
        let mut m = controller
            .store()
            .member(nwid, ids[2].address())
            .unwrap()
            .unwrap();
        m.capabilities = a_caps.to_vec();
        controller.upsert_member(T0, m, &mut s.rng).unwrap();
    }
    s.controllers.insert(ctl, controller);
    s.run_for(3_000);
    for m in [a, b, c] {
        s.join(m, nwid);
    }
    // leaves in one /24 share the root's identity-validation bucket (2 s), and an unanswered
    // request is repeated on the 5 s network tick
    s.run_for(15_000);
    Net {
        s,
        ctl,
        a,
        b,
        c,
        nwid,
    }
}

fn arp_request(src_mac: Mac, src_ip: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&src_mac.0);
    f.extend_from_slice(&[0x08, 0x06]);
    f.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f.extend_from_slice(&src_mac.0);
    f.extend_from_slice(&src_ip.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target.octets());
    f
}

/// An IPv4 frame with protocol `proto` and 8 payload bytes (headers are not checksummed: only
/// the rules engine and the far TAP see them).
fn ipv4_frame(dst: Mac, src: Mac, from: Ipv4Addr, to: Ipv4Addr, proto: u8) -> Vec<u8> {
    let mut f = dst.0.to_vec();
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&[0x45, 0, 0, 28, 0, 0, 0, 0, 64, proto, 0, 0]);
    f.extend_from_slice(&from.octets());
    f.extend_from_slice(&to.octets());
    f.extend_from_slice(&[8, 0, 0, 0, 0, 1, 0, 1]);
    f
}

#[test]
fn members_get_configs_and_exchange_frames() {
    let mut n = setup(json!([{"type": "ACTION_ACCEPT"}]));
    let (a, b, c, nwid) = (n.a, n.b, n.c, n.nwid);
    for m in [a, b] {
        let info = n.s.nodes[m].node.network(nwid).unwrap();
        assert_eq!(info.status, NetworkStatus::Ok, "member {m}");
        let cfg = info.config.unwrap();
        assert_eq!(cfg.name, "sim");
        assert_eq!(cfg.issued_to, n.s.nodes[m].node.address());
        assert!(cfg.com.is_some());
        assert!(n.s.nodes[m].events.iter().any(|(_, e)| matches!(
            e,
            Event::NetworkConfigured {
                dictionary: Some(_),
                ..
            }
        )));
    }
    // not authorized: denied, no config
    let ci = n.s.nodes[c].node.network(nwid).unwrap();
    assert_eq!(ci.status, NetworkStatus::AccessDenied);
    assert!(ci.config.is_none());

    let (ma, mb) = (
        Mac::for_member(n.s.nodes[a].node.address(), nwid),
        Mac::for_member(n.s.nodes[b].node.address(), nwid),
    );
    let (ipa, ipb) = (ipv4_of(&n.s, a, nwid), ipv4_of(&n.s, b, nwid));
    assert_ne!(ipa, ipb);
    // b's host subscribes to the ARP group of its address (what the daemon derives from the TAP)
    let now = n.s.now;
    n.s.nodes[b].node.set_multicast_subscriptions(
        now,
        nwid,
        vec![MulticastGroup::for_ipv4_arp(ipb)],
    );
    n.s.drain(b);
    n.s.run_for(1_000);

    // ARP request: multicast to the per-IP group, found by gathering
    let arp = arp_request(ma, ipa, ipb);
    n.s.tap_send(a, nwid, &arp);
    n.s.run_for(2_000);
    let got = n.s.tap_frames(b, nwid);
    assert!(got.contains(&arp), "b's port saw the ARP request: {got:?}");

    // unicast both ways
    let ping = ipv4_frame(mb, ma, ipa, ipb, 1);
    n.s.tap_send(a, nwid, &ping);
    let pong = ipv4_frame(ma, mb, ipb, ipa, 1);
    n.s.tap_send(b, nwid, &pong);
    n.s.run_for(1_000);
    assert!(n.s.tap_frames(b, nwid).contains(&ping));
    assert!(n.s.tap_frames(a, nwid).contains(&pong));
    // c (denied) gets nothing and cannot inject: its frames are not even sent
    n.s.tap_send(
        c,
        nwid,
        &ipv4_frame(
            mb,
            Mac::for_member(n.s.nodes[c].node.address(), nwid),
            ipa,
            ipb,
            17,
        ),
    );
    n.s.run_for(1_000);
    assert!(n.s.tap_frames(c, nwid).is_empty());

    // deauthorize b: the revocation reaches a, which then drops b's frames
    let ctl = n.ctl;
    let baddr = n.s.nodes[b].node.address();
    let now = n.s.now;
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(9);
    n.s.controllers
        .get_mut(&ctl)
        .unwrap()
        .authorize(now, nwid, baddr, false, &mut rng)
        .unwrap();
    n.s.controller_changed(ctl);
    n.s.run_for(1_000);
    let before = n.s.tap_frames(a, nwid).len();
    let late = ipv4_frame(ma, mb, ipb, ipa, 17);
    n.s.tap_send(b, nwid, &late);
    n.s.run_for(2_000);
    let after = n.s.tap_frames(a, nwid);
    assert_eq!(
        after.len(),
        before,
        "a accepted a frame from a revoked member"
    );
}

use rand_core::SeedableRng;

#[test]
fn icmp_drop_rule_is_enforced_but_udp_passes() {
    let mut n = setup(json!([
        {"type": "MATCH_IP_PROTOCOL", "not": false, "or": false, "ipProtocol": 1},
        {"type": "ACTION_DROP"},
        {"type": "ACTION_ACCEPT"}
    ]));
    let (a, b, nwid) = (n.a, n.b, n.nwid);
    let (ma, mb) = (
        Mac::for_member(n.s.nodes[a].node.address(), nwid),
        Mac::for_member(n.s.nodes[b].node.address(), nwid),
    );
    let (ipa, ipb) = (ipv4_of(&n.s, a, nwid), ipv4_of(&n.s, b, nwid));
    let icmp = ipv4_frame(mb, ma, ipa, ipb, 1);
    let udp = ipv4_frame(mb, ma, ipa, ipb, 17);
    n.s.tap_send(a, nwid, &icmp);
    n.s.tap_send(a, nwid, &udp);
    n.s.run_for(1_000);
    let got = n.s.tap_frames(b, nwid);
    assert!(got.contains(&udp), "UDP passes");
    assert!(!got.contains(&icmp), "ICMP is dropped");
    assert!(n.s.nodes[a].node.stats().frames_dropped >= 1);
}

/// Authenticated packets from a real member with random or mutated VL2 payloads (so parsing
/// gets past authentication into every VL2 handler) never panic a member or the controller, and
/// the held-packet queue stays bounded. spec: vl2.md §7
#[test]
fn hostile_vl2_payloads_never_panic() {
    use weft_wire::packet::{self, Verb};
    use weft_wire::{CipherSuite, armor};
    let mut n = setup(json!([{"type": "ACTION_ACCEPT"}]));
    let ids = ids();
    let (a, b, ctl, nwid) = (n.a, n.b, n.ctl, n.nwid);
    let from = n.s.nodes[b].addr;
    let verbs = [
        Verb::FRAME,
        Verb::EXT_FRAME,
        Verb::MULTICAST_LIKE,
        Verb::NETWORK_CREDENTIALS,
        Verb::NETWORK_CONFIG_REQUEST,
        Verb::NETWORK_CONFIG,
        Verb::MULTICAST_GATHER,
        Verb::MULTICAST_FRAME,
        Verb::OK,
        Verb::ERROR,
    ];
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(77);
    use rand_core::RngCore;
    for round in 0..6_000u32 {
        let verb = verbs[(rng.next_u32() as usize) % verbs.len()];
        let len = (rng.next_u32() % 300) as usize;
        let mut payload = vec![0u8; len];
        rng.fill_bytes(&mut payload);
        // most payloads name the real network (and, for OK/ERROR, a VL2 in-re verb) so the
        // handlers get past their first checks
        match verb {
            Verb::OK | Verb::ERROR if payload.len() > 18 => {
                payload[0] = [0x0b, 0x0d, 0x0e, 0x06][(rng.next_u32() % 4) as usize];
                let at = if verb == Verb::ERROR { 10 } else { 9 };
                payload[at..at + 8].copy_from_slice(&nwid.0.to_be_bytes());
            }
            _ if payload.len() >= 8 && round % 4 != 0 => {
                payload[..8].copy_from_slice(&nwid.0.to_be_bytes())
            }
            _ => {}
        }
        for (target, idx) in [(a, 2usize), (ctl, 1usize)] {
            let key = ids[3].agree(&ids[idx]).unwrap();
            let mut id = [0u8; 8];
            rng.fill_bytes(&mut id);
            let mut p = packet::build(id, ids[idx].address(), ids[3].address(), verb, &payload);
            armor(&mut p, &key, CipherSuite::Poly1305Salsa2012).unwrap();
            let now = n.s.now;
            n.s.nodes[target]
                .node
                .handle_datagram(now, weft_proto::LocalSocket(0), from, &p);
            n.s.drain(target);
        }
        if round % 500 == 0 {
            n.s.run_for(600);
        }
    }
    n.s.run_for(10_000);
    // still working: a and b exchange a frame
    let (ma, mb) = (
        Mac::for_member(n.s.nodes[a].node.address(), nwid),
        Mac::for_member(n.s.nodes[b].node.address(), nwid),
    );
    let (ipa, ipb) = (ipv4_of(&n.s, a, nwid), ipv4_of(&n.s, b, nwid));
    let f = ipv4_frame(ma, mb, ipb, ipa, 17);
    n.s.tap_send(b, nwid, &f);
    n.s.run_for(1_000);
    assert!(n.s.tap_frames(a, nwid).contains(&f));
}

/// A capability lets its holder send UDP; the receiver evaluates the capability the sender
/// presented, and a member without it cannot send UDP at all. spec: vl2.md §13.2, §15.6
#[test]
fn capabilities_are_presented_and_evaluated() {
    let mut n = setup_with(
        json!([
            {"type": "MATCH_IP_PROTOCOL", "not": false, "or": false, "ipProtocol": 1},
            {"type": "ACTION_ACCEPT"}
        ]),
        json!([{"id": 1000, "default": false, "rules": [
            {"type": "MATCH_IP_PROTOCOL", "not": false, "or": false, "ipProtocol": 17},
            {"type": "ACTION_ACCEPT"}
        ]}]),
        &[1000],
    );
    let (a, b, nwid) = (n.a, n.b, n.nwid);
    let cfg_a = n.s.nodes[a].node.network(nwid).unwrap().config.unwrap();
    assert_eq!(cfg_a.capabilities.len(), 1, "a holds the capability");
    let cfg_b = n.s.nodes[b].node.network(nwid).unwrap().config.unwrap();
    assert!(cfg_b.capabilities.is_empty());
    let (ma, mb) = (
        Mac::for_member(n.s.nodes[a].node.address(), nwid),
        Mac::for_member(n.s.nodes[b].node.address(), nwid),
    );
    let (ipa, ipb) = (ipv4_of(&n.s, a, nwid), ipv4_of(&n.s, b, nwid));
    let udp_ab = ipv4_frame(mb, ma, ipa, ipb, 17);
    let udp_ba = ipv4_frame(ma, mb, ipb, ipa, 17);
    let icmp_ba = ipv4_frame(ma, mb, ipb, ipa, 1);
    let tcp_ab = ipv4_frame(mb, ma, ipa, ipb, 6);
    n.s.tap_send(a, nwid, &udp_ab);
    n.s.tap_send(a, nwid, &tcp_ab);
    n.s.tap_send(b, nwid, &udp_ba);
    n.s.tap_send(b, nwid, &icmp_ba);
    n.s.run_for(2_000);
    let at_b = n.s.tap_frames(b, nwid);
    let at_a = n.s.tap_frames(a, nwid);
    assert!(at_b.contains(&udp_ab), "a's capability lets UDP through");
    assert!(!at_b.contains(&tcp_ab), "the capability covers UDP only");
    assert!(!at_a.contains(&udp_ba), "b holds no capability");
    assert!(at_a.contains(&icmp_ba), "the base rules accept ICMP");
}

/// Members of a shared network push their bound and mapped addresses (PUSH_DIRECT_PATHS) and
/// the other side probes them; a node that shares no network with us gets nothing.
/// spec: vl1.md §5.8
#[test]
fn trusted_members_push_direct_paths() {
    let mut n = setup(json!([{"type": "ACTION_ACCEPT"}]));
    let (a, b, c, nwid) = (n.a, n.b, n.c, n.nwid);
    let mapped: std::net::SocketAddr = "203.0.113.77:40123".parse().unwrap();
    n.s.nodes[a].node.set_local_addresses(vec![mapped]);
    // traffic between a and b (and c, which is not a member) makes pushes due
    let (ma, mb) = (
        Mac::for_member(n.s.nodes[a].node.address(), nwid),
        Mac::for_member(n.s.nodes[b].node.address(), nwid),
    );
    let (ipa, ipb) = (ipv4_of(&n.s, a, nwid), ipv4_of(&n.s, b, nwid));
    n.s.tap_send(a, nwid, &ipv4_frame(mb, ma, ipa, ipb, 17));
    n.s.tap_send(b, nwid, &ipv4_frame(ma, mb, ipb, ipa, 17));
    let now = n.s.now;
    let ca = n.s.nodes[a].node.address();
    n.s.nodes[c]
        .node
        .send_user_message(now, ca, 0x7777_0000_0001, b"hi");
    n.s.drain(c);
    n.s.run_for(130_000);
    assert!(
        n.s.sent_to.contains(&(b, mapped)),
        "b probes a's mapped address"
    );
    assert!(
        !n.s.sent_to.contains(&(c, mapped)),
        "c is not trusted: no push"
    );
}
