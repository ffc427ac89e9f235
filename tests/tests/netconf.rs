//! Network-config dictionaries: every `.conf`/`.dict` parses, matches its parsed description
//! and round-trips byte for byte. spec: vl2.md §10, §11; vectors: netconf/, capture/members/

use weft_conformance::{read, read_json, vectors_dir};
use weft_wire::dictionary::Dictionary;

#[test]
fn netconf_dictionaries_round_trip() {
    let dir = vectors_dir().join("netconf");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".conf") || n.ends_with(".dict"))
        .collect();
    files.sort();
    assert_eq!(
        files.len(),
        6,
        "2 member .conf + 4 transmitted .dict: {files:?}"
    );
    let mut checked = 0;
    for f in &files {
        let bytes = read(&format!("netconf/{f}"));
        let d = Dictionary::parse(&bytes).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(!d.is_empty());
        assert_eq!(d.to_bytes(), bytes, "{f} round trip");
        assert_eq!(d.get_u64("v"), Some(7), "{f} version");
        assert_eq!(d.get_str("nwid").as_deref(), Some("9cbc6fc0984c4142"));
        checked += 1;
    }
    assert_eq!(checked, files.len());
}

#[test]
fn netconf_matches_parsed_descriptions() {
    let mut checked = 0;
    for member in ["f6372234a7", "1b56912874"] {
        let conf = read(&format!("netconf/9cbc6fc0984c4142.member-{member}.conf"));
        let d = Dictionary::parse(&conf).unwrap();
        let j = read_json(&format!(
            "netconf/9cbc6fc0984c4142.member-{member}.parsed.json"
        ));
        assert_eq!(j["size"].as_u64().unwrap() as usize, conf.len());
        let entries = j["entries"].as_array().unwrap();
        assert_eq!(d.len(), entries.len(), "{member}: entry count");
        for ((k, v), e) in d.entries().zip(entries) {
            assert_eq!(k, e["key"].as_str().unwrap().as_bytes());
            assert_eq!(
                hex::encode(v),
                e["value_hex"].as_str().unwrap(),
                "{member} key {}",
                e["key"]
            );
            if let Some(n) = e["as_hex_integer"].as_u64() {
                assert_eq!(d.get_u64(e["key"].as_str().unwrap()), Some(n));
            }
        }
        // the copy the member saved under networks.d/ is the same dictionary
        let dir = if member == "f6372234a7" { "a" } else { "b" };
        let saved = read(&format!(
            "capture/members/{dir}-{member}/9cbc6fc0984c4142.conf"
        ));
        assert_eq!(saved, conf);
        let local = read(&format!(
            "capture/members/{dir}-{member}/9cbc6fc0984c4142.local.conf"
        ));
        let l = Dictionary::parse_with_capacity(&local, 4096).unwrap();
        assert_eq!(l.get_bool("allowManaged"), Some(true));
        let mut again = l.to_bytes();
        again.push(b'\n');
        assert_eq!(
            again, local,
            "local.conf is written with a trailing LF per record"
        );
        checked += 1;
    }
    assert_eq!(checked, 2);
}
