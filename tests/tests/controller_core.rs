//! The controller core against the real 1.14.1 controller of the capture: with the reference
//! records, the controller secret and the reference timestamp it must issue the very configs the
//! members saved, byte for byte. Plus the §3/§5 behaviours on the same network.
//! spec: controller.md §2–§5; vectors: capture/controller/, capture/identities/, netconf/

use weft_conformance::{read, read_json, read_text};
use weft_controller::controller::{Controller, ControllerOutput};
use weft_controller::store::{MemberRecord, MemoryStore, NetworkRecord, Store};
use weft_wire::dictionary::Dictionary;
use weft_wire::verbs::ErrorCode;
use weft_wire::verbs::vl2::ConfigChunk;
use weft_wire::{Address, Identity, NetworkId};

use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;

const MEMBERS: [&str; 2] = ["f6372234a7", "1b56912874"];

fn nwid() -> NetworkId {
    read_text("capture/network_id.txt").trim().parse().unwrap()
}

fn identity(name: &str) -> Identity {
    read_text(&format!("capture/identities/{name}"))
        .trim()
        .parse()
        .unwrap()
}

fn member_identity(addr: &str) -> Identity {
    let id = if addr == "f6372234a7" {
        identity("a.public")
    } else {
        identity("b.public")
    };
    assert_eq!(id.address().to_string(), addr);
    id
}

fn reference_network() -> NetworkRecord {
    NetworkRecord::from_json(&read_json("capture/controller/network.json")).unwrap()
}

fn reference_member(addr: &str) -> MemberRecord {
    MemberRecord::from_json(&read_json(&format!(
        "capture/controller/member-{addr}.json"
    )))
    .unwrap()
}

/// Metadata as a 1.14.1 member sends it. spec: vl2.md §12
fn metadata_1_14_1() -> Dictionary {
    let mut d = Dictionary::new();
    for (k, v) in [
        ("v", 7),
        ("vend", 1),
        ("pv", 12),
        ("majv", 1),
        ("minv", 14),
        ("revv", 1),
        ("mr", 1024),
        ("mc", 128),
        ("mcr", 64),
        ("mt", 128),
        ("f", 0),
        ("revr", 1),
    ] {
        d.add_u64(k, v).unwrap();
    }
    d.add("o", b"linux/x86_64").unwrap();
    d
}

fn reference_conf(addr: &str) -> Vec<u8> {
    read(&format!("netconf/9cbc6fc0984c4142.member-{addr}.conf"))
}

fn rng() -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(0x5eed)
}

fn controller_with(members: &[MemberRecord]) -> Controller<MemoryStore> {
    let mut store = MemoryStore::new();
    store.load_network(reference_network());
    for m in members {
        store.load_member(m.clone());
    }
    Controller::new(identity("ctl.secret"), store).unwrap()
}

fn drain(c: &mut Controller<MemoryStore>) -> Vec<ControllerOutput> {
    std::iter::from_fn(|| c.poll_output()).collect()
}

/// Verifies every chunk with the controller identity and reassembles the dictionary.
fn reassemble(chunks: &[Vec<u8>], nwid: NetworkId) -> Vec<u8> {
    let ctl = identity("ctl.public");
    let mut out = Vec::new();
    let mut update_id = None;
    for c in chunks {
        let chunk = ConfigChunk::decode(c).unwrap();
        assert_eq!(chunk.network_id, nwid);
        assert!(chunk.verify(&ctl), "chunk signature");
        let s = chunk.signed.unwrap();
        assert_ne!(s.update_id, 0);
        assert_eq!(*update_id.get_or_insert(s.update_id), s.update_id);
        assert_eq!(s.index as usize, out.len());
        out.extend_from_slice(chunk.data);
        assert!(out.len() <= s.total_len as usize);
    }
    out
}

/// The member's state before its first config request (created through the API, §7.3).
fn pre_request(addr: &str) -> MemberRecord {
    let mut m = reference_member(addr);
    m.identity = None;
    m.v_major = -1;
    m.v_minor = -1;
    m.v_rev = -1;
    m.v_proto = -1;
    m.revision = 1;
    m
}

#[test]
fn reference_records_round_trip() {
    let mut checked = 0;
    let j = read_json("capture/controller/network.json");
    assert_eq!(NetworkRecord::from_json(&j).unwrap().to_json(), j);
    checked += 1;
    for addr in MEMBERS {
        let j = read_json(&format!("capture/controller/member-{addr}.json"));
        assert_eq!(MemberRecord::from_json(&j).unwrap().to_json(), j, "{addr}");
        // the on-disk copy is the same object, compact with sorted keys
        let disk = read(&format!(
            "capture/controller/controller.d/network/9cbc6fc0984c4142/member/{addr}.json"
        ));
        let rec = MemberRecord::from_json(&serde_json::from_slice(&disk).unwrap()).unwrap();
        assert_eq!(serde_json::to_vec(&rec).unwrap(), disk, "{addr} file bytes");
        checked += 1;
    }
    let disk = read("capture/controller/controller.d/network/9cbc6fc0984c4142.json");
    let rec = NetworkRecord::from_json(&serde_json::from_slice(&disk).unwrap()).unwrap();
    assert_eq!(
        serde_json::to_vec(&rec).unwrap(),
        disk,
        "network file bytes"
    );
    checked += 1;
    assert_eq!(checked, 4);
}

#[test]
fn issues_the_reference_configs_byte_for_byte() {
    let nwid = nwid();
    let mut checked = 0;
    for addr in MEMBERS {
        let reference = reference_conf(addr);
        let ts = Dictionary::parse(&reference)
            .unwrap()
            .get_u64("ts")
            .unwrap() as i64;
        let mut c = controller_with(&[pre_request("f6372234a7"), pre_request("1b56912874")]);
        let requester = member_identity(addr);
        c.handle_request(
            ts,
            nwid,
            &requester,
            &metadata_1_14_1(),
            0x1234,
            None,
            &mut rng(),
        )
        .unwrap();
        let out = drain(&mut c);
        assert_eq!(out.len(), 1, "{addr}: {out:?}");
        let ControllerOutput::Config { to, in_re, chunks } = &out[0] else {
            panic!("{addr}: expected a config, got {:?}", out[0]);
        };
        assert_eq!(to.to_string(), addr);
        assert_eq!(*in_re, Some(0x1234));
        let dict = reassemble(chunks, nwid);
        // Same keys in the same order with the same values first (a readable failure) …
        let ours = Dictionary::parse(&dict).unwrap();
        let theirs = Dictionary::parse(&reference).unwrap();
        let keys = |d: &Dictionary| {
            d.entries()
                .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(keys(&ours), keys(&theirs), "{addr}: keys");
        for ((k, a), (_, b)) in ours.entries().zip(theirs.entries()) {
            assert_eq!(
                hex_of(a),
                hex_of(b),
                "{addr}: key {}",
                String::from_utf8_lossy(k)
            );
        }
        // … then the whole dictionary: Ed25519 is deterministic and the secret is known.
        assert_eq!(dict, reference, "{addr}: byte for byte");
        // the member record ends exactly as the reference controller left it (revision 2)
        let saved = c
            .store()
            .member(nwid, addr.parse().unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(saved.to_json(), reference_member(addr).to_json(), "{addr}");
        assert!(c.authorized_recently(nwid, addr.parse().unwrap(), ts + 179_999));
        assert!(!c.authorized_recently(nwid, addr.parse().unwrap(), ts + 180_000));
        checked += 1;
    }
    assert_eq!(checked, MEMBERS.len());
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn error_of(out: &[ControllerOutput]) -> (ErrorCode, Vec<u8>) {
    assert_eq!(out.len(), 1, "{out:?}");
    match &out[0] {
        ControllerOutput::Error {
            code,
            payload,
            in_re,
            ..
        } => {
            assert_eq!(*in_re, 7);
            (*code, payload.clone())
        }
        o => panic!("expected an error, got {o:?}"),
    }
}

#[test]
fn unauthorized_member_is_denied_and_saved_with_unset_versions() {
    let nwid = nwid();
    let mut c = controller_with(&[]);
    let a = member_identity("f6372234a7");
    c.handle_request(1000, nwid, &a, &metadata_1_14_1(), 7, None, &mut rng())
        .unwrap();
    let (code, payload) = error_of(&drain(&mut c));
    assert_eq!(code, ErrorCode::NETWORK_ACCESS_DENIED);
    assert_eq!(payload, nwid.0.to_be_bytes());
    let m = c.store().member(nwid, a.address()).unwrap().unwrap();
    assert!(!m.authorized);
    assert_eq!((m.v_major, m.v_minor, m.v_rev, m.v_proto), (-1, -1, -1, -1));
    assert_eq!(m.identity.as_deref(), Some(a.to_string().as_str()));
    assert_eq!(m.revision, 1);
    assert_eq!(m.creation_time, 1000);
}

#[test]
fn unknown_network_is_not_found_and_foreign_networks_are_ignored() {
    let mut c = controller_with(&[]);
    let a = member_identity("f6372234a7");
    let unknown = NetworkId(nwid().0 ^ 1);
    c.handle_request(1000, unknown, &a, &metadata_1_14_1(), 7, None, &mut rng())
        .unwrap();
    let (code, payload) = error_of(&drain(&mut c));
    assert_eq!(code, ErrorCode::OBJ_NOT_FOUND);
    assert_eq!(payload, unknown.0.to_be_bytes());
    // not ours: nothing at all
    c.handle_request(
        5000,
        NetworkId(0x1122334455000001),
        &a,
        &metadata_1_14_1(),
        8,
        None,
        &mut rng(),
    )
    .unwrap();
    assert!(c.poll_output().is_none());
}

#[test]
fn identity_mismatch_is_denied_and_not_saved() {
    let nwid = nwid();
    let addr = "f6372234a7";
    let c_ref = reference_member(addr);
    let mut c = controller_with(std::slice::from_ref(&c_ref));
    // same address, another key (B's key under A's address)
    let b = member_identity("1b56912874");
    let forged: Identity = format!("{addr}:0:{}", hex_of(b.public_key()))
        .parse()
        .unwrap();
    c.handle_request(1000, nwid, &forged, &metadata_1_14_1(), 7, None, &mut rng())
        .unwrap();
    let (code, _) = error_of(&drain(&mut c));
    assert_eq!(code, ErrorCode::NETWORK_ACCESS_DENIED);
    assert_eq!(
        c.store().member(nwid, forged.address()).unwrap().unwrap(),
        c_ref
    );
}

fn public_network() -> NetworkRecord {
    let mut n = reference_network();
    n.private = false;
    n.capabilities = vec![serde_json::from_value(
        serde_json::json!({"id":7,"default":true,"rules":[{"type":"ACTION_ACCEPT","not":false,"or":false}]}),
    )
    .unwrap()];
    n.tags = vec![serde_json::from_value(serde_json::json!({"id":5,"default":9})).unwrap()];
    n
}

#[test]
fn public_network_authorizes_with_default_cap_and_tag() {
    let nwid = nwid();
    let mut c = controller_with(&[]);
    c.store_mut().load_network(public_network());
    let a = member_identity("f6372234a7");
    c.handle_request(1000, nwid, &a, &metadata_1_14_1(), 7, None, &mut rng())
        .unwrap();
    let out = drain(&mut c);
    let ControllerOutput::Config { chunks, .. } = &out[0] else {
        panic!("{out:?}");
    };
    let d = Dictionary::parse(&reassemble(chunks, nwid)).unwrap();
    assert_eq!(d.get_u64("t"), Some(1));
    assert!(d.get("CAP").is_some() && d.get("TAG").is_some());
    let m = c.store().member(nwid, a.address()).unwrap().unwrap();
    assert!(m.authorized);
    assert_eq!(m.capabilities, vec![7]);
    assert_eq!(m.tags, vec![(5, 9)]);
    assert_eq!(m.last_authorized_credential_type.as_deref(), Some("public"));
    assert_eq!(m.last_authorized_credential, None);
    assert_eq!(m.last_authorized_time, 1000);
    // pool allocation: 10.147.17.100–200 with route /24 → 100 + (0x2234a7 … mod 100)
    let expect = 100 + (0x6372234a7u64 & 0xffff_ffff) % 100;
    assert_eq!(
        m.ip_assignments,
        vec![
            format!("10.147.17.{expect}")
                .parse::<std::net::IpAddr>()
                .unwrap()
        ]
    );
    assert_eq!((m.v_major, m.v_minor, m.v_rev, m.v_proto), (1, 14, 1, 12));
}

#[test]
fn token_join() {
    let nwid = nwid();
    let mut n = reference_network();
    n.auth_tokens = serde_json::from_value(serde_json::json!({"good":0,"old":500})).unwrap();
    let mut c = controller_with(&[]);
    c.store_mut().load_network(n);
    let (a, b) = (member_identity("f6372234a7"), member_identity("1b56912874"));
    let mut md = metadata_1_14_1();
    md.add("a", b"token:old").unwrap();
    c.handle_request(1000, nwid, &b, &md, 7, None, &mut rng())
        .unwrap();
    assert_eq!(error_of(&drain(&mut c)).0, ErrorCode::NETWORK_ACCESS_DENIED);
    let mut md = metadata_1_14_1();
    md.add("a", b"token:good").unwrap();
    c.handle_request(1000, nwid, &a, &md, 7, None, &mut rng())
        .unwrap();
    assert!(matches!(
        drain(&mut c)[..],
        [ControllerOutput::Config { .. }]
    ));
    let m = c.store().member(nwid, a.address()).unwrap().unwrap();
    assert!(m.authorized);
    assert_eq!(m.last_authorized_credential_type.as_deref(), Some("token"));
    assert_eq!(m.last_authorized_credential.as_deref(), Some("good"));
}

#[test]
fn one_request_per_second_per_member() {
    let nwid = nwid();
    let mut c = controller_with(&[reference_member("f6372234a7")]);
    let a = member_identity("f6372234a7");
    let md = metadata_1_14_1();
    let mut r = rng();
    c.handle_request(10_000, nwid, &a, &md, 1, None, &mut r)
        .unwrap();
    assert_eq!(drain(&mut c).len(), 1);
    c.handle_request(11_000, nwid, &a, &md, 2, None, &mut r)
        .unwrap();
    assert!(drain(&mut c).is_empty(), "≤ 1000 ms: dropped");
    c.handle_request(11_001, nwid, &a, &md, 3, None, &mut r)
        .unwrap();
    assert_eq!(drain(&mut c).len(), 1);
    // request id 0 (internal) is never rate-limited, but also gets no answer on errors
    c.handle_request(11_002, nwid, &a, &md, 0, None, &mut r)
        .unwrap();
    assert!(matches!(
        drain(&mut c)[..],
        [ControllerOutput::Config { in_re: None, .. }]
    ));
}

fn online_pair() -> (Controller<MemoryStore>, Address, Address) {
    let nwid = nwid();
    let mut c = controller_with(&[
        reference_member("f6372234a7"),
        reference_member("1b56912874"),
    ]);
    let (a, b) = (member_identity("f6372234a7"), member_identity("1b56912874"));
    let md = metadata_1_14_1();
    c.handle_request(10_000, nwid, &a, &md, 1, None, &mut rng())
        .unwrap();
    c.handle_request(10_000, nwid, &b, &md, 2, None, &mut rng())
        .unwrap();
    assert_eq!(drain(&mut c).len(), 2);
    (c, a.address(), b.address())
}

#[test]
fn deauthorization_revokes_on_every_online_member_and_pushes() {
    let nwid = nwid();
    let (mut c, a, b) = online_pair();
    c.authorize(20_000, nwid, b, false, &mut rng()).unwrap();
    let out = drain(&mut c);
    let mut revoked_to = Vec::new();
    let mut payloads = Vec::new();
    for o in &out {
        match o {
            ControllerOutput::Credentials { to, payload } => {
                revoked_to.push(*to);
                payloads.push(payload.clone());
            }
            // the push to b ends in ACCESS_DENIED, which is discarded (no request id)
            o => panic!("unexpected {o:?}"),
        }
    }
    revoked_to.sort();
    let mut want = vec![a, b];
    want.sort();
    assert_eq!(revoked_to, want);
    let creds = weft_wire::credential::NetworkCredentials::decode(&payloads[0]).unwrap();
    assert!(creds.coms.is_empty());
    assert_eq!(creds.revocations.len(), 1);
    assert_eq!(payloads[0][..7], [0, 0, 0, 0, 0, 0, 1]);
    assert_eq!(payloads[0][payloads[0].len() - 2..], [0, 0]);
    let m = c.store().member(nwid, b).unwrap().unwrap();
    assert!(!m.authorized);
    assert_eq!(m.last_deauthorized_time, 20_000);
    // b's own next request is denied
    c.handle_request(
        21_000,
        nwid,
        &member_identity("1b56912874"),
        &metadata_1_14_1(),
        9,
        None,
        &mut rng(),
    )
    .unwrap();
    assert_eq!(
        error_of_in_re(&drain(&mut c), 9),
        ErrorCode::NETWORK_ACCESS_DENIED
    );
    // an authorized member's change (not deauthorization) is just a push
    let mut ma = c.store().member(nwid, a).unwrap().unwrap();
    ma.name = Some("renamed".into());
    c.upsert_member(22_000, ma, &mut rng()).unwrap();
    assert!(matches!(
        drain(&mut c)[..],
        [ControllerOutput::Config { in_re: None, to, .. }] if to == a
    ));
}

fn error_of_in_re(out: &[ControllerOutput], id: u64) -> ErrorCode {
    match out {
        [ControllerOutput::Error { code, in_re, .. }] if *in_re == id => *code,
        o => panic!("expected one error, got {o:?}"),
    }
}

#[test]
fn network_change_pushes_to_online_members_only() {
    let nwid = nwid();
    let (mut c, a, b) = online_pair();
    // a asks again later; b stays silent for more than 120 s
    c.handle_request(
        100_000,
        nwid,
        &member_identity("f6372234a7"),
        &metadata_1_14_1(),
        5,
        None,
        &mut rng(),
    )
    .unwrap();
    drain(&mut c);
    let mut n = c.store().network(nwid).unwrap().unwrap();
    n.name = "renamed".into();
    c.create_network(131_000, nwid, n, &mut rng()).unwrap();
    let out = drain(&mut c);
    assert_eq!(out.len(), 1, "{out:?}");
    let ControllerOutput::Config { to, in_re, chunks } = &out[0] else {
        panic!("{out:?}");
    };
    assert_eq!((*to, *in_re), (a, None));
    let d = Dictionary::parse(&reassemble(chunks, nwid)).unwrap();
    assert_eq!(d.get_str("n").as_deref(), Some("renamed"));
    assert_eq!(d.get_u64("r"), Some(2));
    assert!(!c.is_online(nwid, b, 131_000));
    // saving the same network again changes nothing and pushes nothing
    let same = c.store().network(nwid).unwrap().unwrap();
    c.create_network(132_000, nwid, same, &mut rng()).unwrap();
    assert!(c.poll_output().is_none());
}

#[test]
fn sso_required_error_shape_and_expiry_revocation() {
    let nwid = nwid();
    let mut n = reference_network();
    n.sso_enabled = true;
    let mut b = reference_member("1b56912874");
    b.authentication_expiry_time = 0;
    let mut a = reference_member("f6372234a7");
    a.authentication_expiry_time = 50_000;
    let mut c = controller_with(&[a, b]);
    c.store_mut().load_network(n);
    let md = metadata_1_14_1();
    // expired (0 ≤ now): NETWORK_AUTHENTICATION_REQUIRED + nwid + len + {aV=0, aU=}
    c.handle_request(
        10_000,
        nwid,
        &member_identity("1b56912874"),
        &md,
        7,
        None,
        &mut rng(),
    )
    .unwrap();
    let (code, payload) = error_of(&drain(&mut c));
    assert_eq!(code, ErrorCode::NETWORK_AUTHENTICATION_REQUIRED);
    let dict = b"aV=0000000000000000\naU=";
    let mut want = nwid.0.to_be_bytes().to_vec();
    want.extend_from_slice(&(dict.len() as u16).to_be_bytes());
    want.extend_from_slice(dict);
    assert_eq!(payload, want);
    // not yet expired: a config carrying ssoe=1 and aexpt, and an expiry check at 50 s
    c.handle_request(
        10_000,
        nwid,
        &member_identity("f6372234a7"),
        &md,
        8,
        None,
        &mut rng(),
    )
    .unwrap();
    let out = drain(&mut c);
    let [ControllerOutput::Config { chunks, .. }] = &out[..] else {
        panic!("{out:?}");
    };
    let d = Dictionary::parse(&reassemble(chunks, nwid)).unwrap();
    assert_eq!(d.get_bool("ssoe"), Some(true));
    assert_eq!(d.get_u64("aexpt"), Some(50_000));
    assert_eq!(c.poll_timeout(), Some(50_000));
    c.handle_timeout(49_999, &mut rng()).unwrap();
    assert!(c.poll_output().is_none());
    c.handle_timeout(50_000, &mut rng()).unwrap();
    let out = drain(&mut c);
    assert!(
        matches!(&out[..], [ControllerOutput::Credentials { to, .. }] if to.to_string() == "f6372234a7"),
        "{out:?}"
    );
    assert_eq!(c.poll_timeout(), None);
}
