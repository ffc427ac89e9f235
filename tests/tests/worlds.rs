//! Planet and moon files: parse, verify, re-serialize byte-identically, and the update rule.
//! spec: vl1.md §7; vectors: planet/, moon/

use weft_conformance::{read, read_json};
use weft_wire::inet::IpPort;
use weft_wire::{World, WorldType};

fn check_against_json(w: &World, j: &serde_json::Value) {
    assert_eq!(
        hex::encode(w.updates_must_be_signed_by),
        j["updatesMustBeSignedBy"].as_str().unwrap()
    );
    assert_eq!(hex::encode(w.signature), j["signature"].as_str().unwrap());
    let roots = j["roots"].as_array().unwrap();
    assert_eq!(w.roots.len(), roots.len());
    for (r, jr) in w.roots.iter().zip(roots) {
        assert_eq!(r.identity.to_string(), jr["identity"].as_str().unwrap());
        let eps: Vec<String> = r
            .stable_endpoints
            .iter()
            .map(|e| IpPort(*e).to_string())
            .collect();
        let jeps: Vec<String> = jr["stableEndpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_str().unwrap().to_string())
            .collect();
        assert_eq!(eps, jeps);
    }
    assert_eq!(
        hex::encode(w.signed_message()),
        j["signed_message_hex"].as_str().unwrap()
    );
}

#[test]
fn planet_parses_verifies_and_round_trips() {
    let bytes = read("planet/planet.bin");
    let hexed = String::from_utf8(read("planet/planet.hex")).unwrap();
    assert_eq!(hex::encode(&bytes), hexed.trim());
    let (w, used) = World::decode(&bytes).unwrap();
    assert_eq!(used, bytes.len());
    assert_eq!(w.kind, WorldType::Planet);
    let j = read_json("planet/planet.json");
    assert_eq!(w.id, j["world_id"].as_u64().unwrap());
    assert_eq!(w.timestamp, j["timestamp_ms"].as_u64().unwrap());
    check_against_json(&w, &j);
    // genesis: self-signed
    assert!(w.verify(&w.updates_must_be_signed_by));
    assert_eq!(w.to_bytes(), bytes);
    // the mkworld key files: public(64) ‖ private(64); re-signing reproduces the signature
    let prev = read("planet/previous.c25519");
    assert_eq!(prev.len(), 128);
    assert_eq!(&prev[..64], &w.updates_must_be_signed_by);
    let mut again = w.clone();
    again.sign(prev[64..].try_into().unwrap());
    assert_eq!(
        again.to_bytes(),
        bytes,
        "deterministic signature reproduced"
    );
    // an empty slot takes it
    assert!(World::should_replace(None, &w));
}

#[test]
fn planet_updates() {
    let (v1, _) = World::decode(&read("planet/planet.bin")).unwrap();
    let j = read_json("planet/update/updates.json");
    let mut cases = 0;
    for (name, accept) in [("planet-v2-rotated", true), ("planet-v2-badsig", false)] {
        let bytes = read(&format!("planet/update/{name}.bin"));
        let hexed = String::from_utf8(read(&format!("planet/update/{name}.hex"))).unwrap();
        assert_eq!(hex::encode(&bytes), hexed.trim());
        let (u, used) = World::decode(&bytes).unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(u.to_bytes(), bytes);
        let ju = &j["updates"][name];
        assert_eq!(u.timestamp, ju["timestamp_ms"].as_u64().unwrap());
        check_against_json(&u, ju);
        assert_eq!(World::should_replace(Some(&v1), &u), accept, "{name}");
        // never the other way round, and never replayed
        assert!(!World::should_replace(Some(&u), &v1));
        assert!(!World::should_replace(Some(&u), &u));
        cases += 1;
    }
    assert_eq!(cases, j["updates"].as_object().unwrap().len());
}

#[test]
fn moon_parses_verifies_and_round_trips() {
    let bytes = read("moon/0000009cbc6fc098.moon");
    let hexed = String::from_utf8(read("moon/0000009cbc6fc098.moon.hex")).unwrap();
    assert_eq!(hex::encode(&bytes), hexed.trim());
    let (w, used) = World::decode(&bytes).unwrap();
    assert_eq!(used, bytes.len());
    assert_eq!(w.kind, WorldType::Moon);
    let j = read_json("moon/0000009cbc6fc098.moon.decoded.json");
    assert_eq!(w.id, j["id"].as_u64().unwrap());
    assert_eq!(w.timestamp, j["timestamp"].as_u64().unwrap());
    assert_eq!(bytes.len() as u64, j["serialized_length"].as_u64().unwrap());
    check_against_json(&w, &j);
    assert!(w.verify(&w.updates_must_be_signed_by));
    assert_eq!(w.to_bytes(), bytes);
    // the signing key in the idtool JSON is the one named in the moon
    let genmoon = read_json("moon/genmoon-input.json");
    assert_eq!(
        genmoon["updatesMustBeSignedBy"].as_str().unwrap(),
        hex::encode(w.updates_must_be_signed_by)
    );
}
