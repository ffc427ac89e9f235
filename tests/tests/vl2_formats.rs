//! VL2 data formats against the reference vectors: every network config parses to a
//! `NetworkConfig` whose credentials verify with the controller's identity and which serializes
//! back byte for byte; member COMs agree; member MACs and groups match what the nodes used;
//! chunks signed with the controller key reproduce the captured ones and reassemble.
//! spec: vl2.md §2–§4, §9–§13; vectors: netconf/, capture/

use std::collections::BTreeMap;

use weft_conformance::{read, read_json, read_jsonl, read_text, vectors_dir};
use weft_wire::address::{Address, NetworkId};
use weft_wire::credential::{Com, CredentialType, NetworkCredentials, Revocation};
use weft_wire::mac::{Mac, MulticastGroup};
use weft_wire::netaddr;
use weft_wire::netconf::chunk::{ChunkAssembler, ChunkError, MAX_CHUNK_DATA, sign_chunks};
use weft_wire::netconf::{NetworkConfig, NetworkType, RequestMetadata};
use weft_wire::verbs::vl2::ConfigChunk;
use weft_wire::{Identity, Verb};

const A: &str = "f6372234a7";
const B: &str = "1b56912874";

fn nwid() -> NetworkId {
    read_text("capture/network_id.txt").trim().parse().unwrap()
}

fn identity(name: &str) -> Identity {
    read_text(&format!("capture/identities/{name}"))
        .trim()
        .parse()
        .unwrap()
}

/// Every `.conf` and `.dict` under netconf/, sorted.
fn config_files() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(vectors_dir().join("netconf"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".conf") || (n.starts_with("transmitted-") && n.ends_with(".dict")))
        .collect();
    files.sort();
    files
}

fn member_conf(member: &str) -> NetworkConfig {
    let f = format!("netconf/{}.member-{member}.conf", nwid());
    NetworkConfig::from_bytes(&read(&f)).unwrap()
}

#[test]
fn every_config_parses_verifies_and_round_trips() {
    let ctl = identity("ctl.public");
    let files = config_files();
    assert_eq!(
        files.len(),
        6,
        "2 member .conf + 4 transmitted .dict: {files:?}"
    );
    let (mut configs, mut credentials) = (0, 0);
    for f in &files {
        let bytes = read(&format!("netconf/{f}"));
        let c = NetworkConfig::from_bytes(&bytes).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert_eq!(c.network_id, nwid(), "{f}");
        assert_eq!(c.network_id.controller(), ctl.address());
        assert!([A, B].contains(&c.issued_to.to_string().as_str()), "{f}");
        assert_eq!(c.to_bytes(), bytes, "{f}: serialization differs");
        assert_eq!(c.to_dictionary().to_bytes(), bytes);
        // what the capture README says about the network
        assert_eq!(
            (c.mtu, c.network_type, c.name.as_str()),
            (2800, NetworkType::Private, "ztlab")
        );
        assert!(c.broadcast_enabled() && !c.ndp_emulation());
        assert_eq!(c.multicast_limit, 32);
        assert_eq!(c.credential_time_max_delta, 1_800_000);
        assert_eq!(c.routes.len(), 1);
        assert_eq!(c.routes[0].target.to_string(), "10.147.17.0/24");
        assert_eq!(c.routes[0].via, None);
        assert_eq!(c.static_ips.len(), 1);
        assert!(c.dns.domain.is_empty() && c.dns.servers.is_empty());
        assert!(!c.sso.enabled && c.sso.version == 0);
        assert_eq!(c.rules.len(), 1);
        // every credential it carries is the controller's, for this member and network
        let com = c.com.as_ref().expect("a COM");
        assert!(com.verify(&ctl), "{f}: COM");
        assert_eq!(
            (com.network_id(), com.issued_to(), com.timestamp()),
            (c.network_id, c.issued_to, c.timestamp)
        );
        assert_eq!(com.max_delta(), c.credential_time_max_delta);
        credentials += 1;
        for cap in &c.capabilities {
            assert!(cap.verify(&ctl), "{f}: capability {}", cap.id());
            credentials += 1;
        }
        for tag in &c.tags {
            assert!(tag.verify(&ctl), "{f}: tag {}", tag.id());
            credentials += 1;
        }
        assert_eq!(c.coos.len(), 1);
        for coo in &c.coos {
            assert!(coo.verify(&ctl), "{f}: COO");
            assert_eq!(
                (coo.issued_to(), coo.network_id()),
                (c.issued_to, c.network_id)
            );
            for ip in &c.static_ips {
                assert!(coo.owns_ip(ip.addr()), "{f}: COO owns {ip}");
            }
            credentials += 1;
        }
        // a verified credential is rejected with any other signer
        assert!(!com.verify(&identity("a.public")));
        configs += 1;
    }
    assert_eq!((configs, credentials), (6, 12));
    println!("vl2_formats: {configs} configs, {credentials} credentials verified");
}

#[test]
fn configs_match_the_member_status() {
    let mut checked = 0;
    for (dir, member) in [("a", A), ("b", B)] {
        let c = member_conf(member);
        let s = read_json(&format!(
            "capture/members/{dir}-{member}/network-status.json"
        ));
        assert_eq!(c.mac().to_string(), s["mac"].as_str().unwrap());
        assert_eq!(u64::from(c.mtu), s["mtu"].as_u64().unwrap());
        assert_eq!(c.name, s["name"].as_str().unwrap());
        assert_eq!(c.revision, s["netconfRevision"].as_u64().unwrap());
        assert_eq!(
            c.broadcast_enabled(),
            s["broadcastEnabled"].as_bool().unwrap()
        );
        let assigned: Vec<String> = c.static_ips.iter().map(ToString::to_string).collect();
        let want: Vec<&str> = s["assignedAddresses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(assigned, want);
        assert_eq!(
            c.is_active_bridge(c.issued_to),
            s["bridge"].as_bool().unwrap()
        );
        checked += 1;
    }
    assert_eq!(checked, 2);
}

#[test]
fn member_coms_agree_and_tampering_breaks_them() {
    let ctl = identity("ctl.public");
    let (ia, ib) = (identity("a.public"), identity("b.public"));
    let ca = member_conf(A).com.unwrap();
    let cb = member_conf(B).com.unwrap();
    let mut cases = 0;
    let mut check = |what: &str, got: bool, want: bool| {
        assert_eq!(got, want, "{what}");
        cases += 1;
    };
    check("A agrees with B", ca.agrees_with(&cb, &ib), true);
    check("B agrees with A", cb.agrees_with(&ca, &ia), true);
    check(
        "B's COM does not bind A's identity",
        ca.agrees_with(&cb, &ia),
        false,
    );
    check(
        "A's COM does not bind B's identity",
        cb.agrees_with(&ca, &ib),
        false,
    );
    // every COM from the capture agrees with every other member's
    for f in config_files() {
        let c = NetworkConfig::from_bytes(&read(&format!("netconf/{f}"))).unwrap();
        let com = c.com.unwrap();
        let (peer, peer_id) = if c.issued_to.to_string() == A {
            (&cb, &ib)
        } else {
            (&ca, &ia)
        };
        check(&format!("{f} agrees"), com.agrees_with(peer, peer_id), true);
    }
    // tampering: a timestamp moved past ctmd no longer agrees, and its signature breaks
    let mut bytes = cb.to_bytes();
    let ts_at = 3 + 8; // format, count, id 0, then the value
    let ts = u64::from_be_bytes(bytes[ts_at..ts_at + 8].try_into().unwrap());
    bytes[ts_at..ts_at + 8].copy_from_slice(&(ts + 1_800_001).to_be_bytes());
    let (late, n) = Com::decode(&bytes).unwrap();
    assert_eq!(n, bytes.len());
    check("tampered COM verifies", late.verify(&ctl), false);
    check(
        "A agrees with B moved past ctmd",
        ca.agrees_with(&late, &ib),
        false,
    );
    // within ctmd the agreement holds (agreement does not check signatures)
    bytes[ts_at..ts_at + 8].copy_from_slice(&(ts + 1_000).to_be_bytes());
    let near = Com::decode(&bytes).unwrap().0;
    check(
        "A agrees with B moved within ctmd",
        ca.agrees_with(&near, &ib),
        true,
    );
    check("that COM verifies", near.verify(&ctl), false);
    // another network id
    let mut bytes = cb.to_bytes();
    bytes[3 + 24 + 8 + 7] ^= 1;
    let other = Com::decode(&bytes).unwrap().0;
    check("other network agrees", ca.agrees_with(&other, &ib), false);
    // an identity hash word changed
    let mut bytes = cb.to_bytes();
    bytes[3 + 3 * 24 + 8] ^= 0x80;
    let rebound = Com::decode(&bytes).unwrap().0;
    check(
        "changed identity hash agrees",
        ca.agrees_with(&rebound, &ib),
        false,
    );
    // a COM that A pushes is carried in NETWORK_CREDENTIALS: round trip through the payload
    let creds = NetworkCredentials {
        coms: vec![ca.clone()],
        coos: member_conf(A).coos,
        ..NetworkCredentials::default()
    };
    let mut p = Vec::new();
    creds.encode(&mut p);
    check(
        "NETWORK_CREDENTIALS round trip",
        NetworkCredentials::decode(&p).unwrap() == creds,
        true,
    );
    assert_eq!(cases, 17);
}

#[test]
fn network_credentials_of_the_capture_verify() {
    let ctl = identity("ctl.public");
    let mut packets = 0;
    for d in read_jsonl("capture/decoded.jsonl") {
        if d["verb"] != "NETWORK_CREDENTIALS" {
            continue;
        }
        let plain = hex::decode(d["plaintext_hex"].as_str().unwrap()).unwrap();
        let c = NetworkCredentials::decode(&plain[1..]).unwrap();
        let sender: Address = d["source"].as_str().unwrap().parse().unwrap();
        assert_eq!(c.coms.len(), 1);
        assert!(c.coms[0].verify(&ctl));
        assert_eq!(c.coms[0].issued_to(), sender);
        assert!(
            c.coos
                .iter()
                .all(|coo| coo.verify(&ctl) && coo.issued_to() == sender)
        );
        let mut again = Vec::new();
        c.encode(&mut again);
        assert_eq!(again, plain[1..], "frame {}", d["frame"]);
        packets += 1;
    }
    assert_eq!(packets, 4);
    // revocations of the shape the controller issues on de-authorization
    let secret = identity("ctl.secret");
    let target: Address = A.parse().unwrap();
    let r = Revocation::issue(
        7,
        nwid(),
        0,
        1_795_320_790_000,
        1,
        target,
        CredentialType::Com,
        &secret,
    )
    .unwrap();
    let (back, _) = Revocation::decode(&r.to_bytes()).unwrap();
    assert!(back.verify(&ctl) && back.fast_propagate());
}

#[test]
fn member_macs_groups_and_derived_addresses() {
    let n = nwid();
    let mut cases = 0;
    for (dir, member, ip, adi) in [
        ("a", A, "10.147.17.11", 0x0a93_110b),
        ("b", B, "10.147.17.12", 0x0a93_110c),
    ] {
        let address: Address = member.parse().unwrap();
        let s = read_json(&format!(
            "capture/members/{dir}-{member}/network-status.json"
        ));
        let mac = Mac::for_member(address, n);
        assert_eq!(mac.to_string(), s["mac"].as_str().unwrap());
        assert_eq!(s["mac"].as_str().unwrap().parse::<Mac>().unwrap(), mac);
        assert_eq!(mac.member_address(n), Some(address));
        assert!(!mac.is_multicast());
        let g = MulticastGroup::for_ipv4_arp(ip.parse().unwrap());
        assert_eq!(g.adi, adi);
        let v6 = netaddr::rfc4193(n, address);
        assert_eq!(netaddr::rfc4193_owner(n, v6), Some(address));
        assert_eq!(
            netaddr::sixplane_owner(n, netaddr::sixplane(n, address)),
            Some(address)
        );
        assert_eq!(
            netaddr::sixplane(n, address).octets()[1..5],
            ((n.0 ^ (n.0 >> 32)) as u32).to_be_bytes()
        );
        cases += 1;
    }
    // the groups each member announced (MULTICAST_LIKE) include the ARP group of its static IP
    let mut likes: BTreeMap<String, Vec<MulticastGroup>> = BTreeMap::new();
    for d in read_jsonl("capture/decoded.jsonl") {
        if d["verb"] != "MULTICAST_LIKE" {
            continue;
        }
        let plain = hex::decode(d["plaintext_hex"].as_str().unwrap()).unwrap();
        for (nw, g) in weft_wire::verbs::vl2::multicast_likes(&plain[1..]).unwrap() {
            assert_eq!(nw, n);
            likes
                .entry(d["source"].as_str().unwrap().to_owned())
                .or_default()
                .push(g);
        }
    }
    for member in [A, B] {
        let c = member_conf(member);
        let groups = &likes[member];
        for ip in &c.static_ips {
            assert!(
                groups.contains(&MulticastGroup::for_address_resolution(ip.addr())),
                "{member} {ip}"
            );
            cases += 1;
        }
        assert!(groups.contains(&MulticastGroup::BROADCAST));
        assert!(groups.contains(&MulticastGroup::new("33:33:00:00:00:01".parse().unwrap())));
        cases += 2;
        // the capture's FRAMEs carry ARP between the members' derived MACs
        let mac = c.mac();
        assert_eq!(mac.member_address(n), Some(c.issued_to));
    }
    let mut a = likes[A].clone();
    a.sort();
    a.dedup();
    assert_eq!(a.first().unwrap().mac.to_string(), "01:00:5e:00:00:01");
    assert_eq!(
        a.last().unwrap(),
        &MulticastGroup::for_ipv4_arp("10.147.17.11".parse().unwrap())
    );
    assert_eq!(cases, 8);
}

/// The chunk payloads (nwid onward) of OK(NETWORK_CONFIG_REQUEST) and NETWORK_CONFIG packets in
/// the capture, with their destination and frame number.
fn captured_chunks() -> Vec<(usize, Address, Vec<u8>)> {
    let mut out = Vec::new();
    for d in read_jsonl("capture/decoded.jsonl") {
        let Some(hexs) = d["plaintext_hex"].as_str() else {
            continue;
        };
        let plain = hex::decode(hexs).unwrap();
        let dest: Address = d["dest"].as_str().unwrap().parse().unwrap();
        let frame = d["frame"].as_u64().unwrap() as usize;
        let verb = Verb::from_byte(plain[0]);
        if verb == Verb::NETWORK_CONFIG {
            out.push((frame, dest, plain[1..].to_vec()));
        } else if verb == Verb::OK && Verb::from_byte(plain[1]) == Verb::NETWORK_CONFIG_REQUEST {
            out.push((frame, dest, plain[10..].to_vec()));
        }
    }
    out
}

#[test]
fn captured_chunks_assemble_to_the_transmitted_dictionaries() {
    let ctl = identity("ctl.public");
    let chunks = captured_chunks();
    assert_eq!(chunks.len(), 5, "2 OK + 2 pushes, one OK relayed twice");
    let mut assemblers: BTreeMap<Address, ChunkAssembler> = BTreeMap::new();
    let (mut complete, mut duplicates) = (0, 0);
    for (frame, dest, payload) in &chunks {
        let c = ConfigChunk::decode(payload).unwrap();
        assert_eq!(c.network_id, nwid());
        assert!(c.verify(&ctl), "frame {frame}");
        let s = c.signed.unwrap();
        let got = assemblers
            .entry(*dest)
            .or_default()
            .add(&c, &ctl, true, *frame as i64)
            .unwrap();
        match got {
            Some(dict) => {
                let f = format!("netconf/transmitted-{}-{:016x}.dict", nwid(), s.update_id);
                assert_eq!(dict, read(&f), "frame {frame}: {f}");
                let conf = NetworkConfig::from_bytes(&dict).unwrap();
                assert_eq!(conf.issued_to, *dest);
                complete += 1;
            }
            None => duplicates += 1,
        }
    }
    assert_eq!((complete, duplicates), (4, 1));
    // the last config each member got is the one it saved
    for (dir, member, update) in [("a", A, "9cce1ead31b6718e"), ("b", B, "72e17f4adc574291")] {
        let saved = read(&format!("capture/members/{dir}-{member}/{}.conf", nwid()));
        assert_eq!(
            saved,
            read(&format!("netconf/transmitted-{}-{update}.dict", nwid()))
        );
    }
}

#[test]
fn signing_with_the_controller_key_reproduces_the_captured_chunks() {
    let secret = identity("ctl.secret");
    let public = identity("ctl.public");
    let mut reproduced = 0;
    for (frame, _, payload) in captured_chunks() {
        let c = ConfigChunk::decode(&payload).unwrap();
        let s = c.signed.unwrap();
        let f = format!("netconf/transmitted-{}-{:016x}.dict", nwid(), s.update_id);
        let dict = read(&f);
        let ours = sign_chunks(&dict, nwid(), s.update_id, &secret).unwrap();
        assert_eq!(ours.len(), 1);
        // Ed25519 is deterministic: the same key, fields and data give the same bytes
        assert_eq!(ours[0], payload, "frame {frame}");
        reproduced += 1;
    }
    assert_eq!(reproduced, 5);

    // a multi-chunk config: a real dictionary padded past three chunks, delivered out of order
    let mut conf = member_conf(A);
    conf.name = "n".repeat(100);
    conf.static_ips = (1..=32)
        .map(|i| format!("10.147.{i}.1/24").parse().unwrap())
        .collect();
    let mut big = conf.to_bytes();
    // pad with a trailing key the reader ignores, to span several chunks
    big.extend_from_slice(b"\nzz=");
    big.extend(std::iter::repeat_n(b'z', 3 * MAX_CHUNK_DATA));
    let chunks = sign_chunks(&big, nwid(), 0x1234_5678_9abc_def0, &secret).unwrap();
    assert_eq!(chunks.len(), 4);
    let mut a = ChunkAssembler::new();
    let mut out = None;
    for i in [3, 1, 0, 2] {
        let c = ConfigChunk::decode(&chunks[i]).unwrap();
        assert!(c.verify(&public));
        out = a.add(&c, &public, false, 0).unwrap();
    }
    let out = out.expect("complete after the last chunk");
    assert_eq!(out, big);
    let back = NetworkConfig::from_bytes(&out).unwrap();
    assert_eq!(back.static_ips, conf.static_ips);
    // the same chunks with a key other than the controller's are refused
    let mut a = ChunkAssembler::new();
    let wrong = identity("a.public");
    let c = ConfigChunk::decode(&chunks[0]).unwrap();
    assert_eq!(a.add(&c, &wrong, false, 0), Err(ChunkError::NotController));
}

#[test]
fn request_metadata_of_the_capture() {
    let mut requests = 0;
    for d in read_jsonl("capture/decoded.jsonl") {
        if d["verb"] != "NETWORK_CONFIG_REQUEST" {
            continue;
        }
        let plain = hex::decode(d["plaintext_hex"].as_str().unwrap()).unwrap();
        let r = weft_wire::verbs::vl2::NetworkConfigRequest::decode(&plain[1..]).unwrap();
        let m = RequestMetadata::parse(r.metadata).unwrap();
        assert_eq!(
            (m.major, m.minor, m.revision, m.protocol_version),
            (1, 14, 1, 12)
        );
        assert_eq!(
            (m.version, m.rules_engine_revision, m.os_arch.as_str()),
            (7, 1, "linux/x86_64")
        );
        let mut ours = RequestMetadata::new(1, 1, 14, 1);
        ours.os_arch = "linux/x86_64".into();
        assert_eq!(ours.to_bytes(), r.metadata);
        requests += 1;
    }
    assert_eq!(requests, 4);
}
