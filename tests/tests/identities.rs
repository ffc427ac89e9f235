//! Identities, signatures and key agreements against the reference vectors.
//! spec: vl1.md §1, §2; vectors: identities.jsonl, identities_invalid.jsonl, signatures.jsonl,
//! agreements.jsonl

use weft_conformance::read_jsonl;
use weft_wire::Identity;
use weft_wire::crypto::kbkdf_hmac_sha384;

fn s<'a>(v: &'a serde_json::Value, k: &str) -> &'a str {
    v[k].as_str()
        .unwrap_or_else(|| panic!("field {k} missing in {v}"))
}

#[test]
fn valid_identities() {
    let lines = read_jsonl("identities.jsonl");
    assert_eq!(
        lines.len(),
        10,
        "identities.jsonl should hold 10 identities"
    );
    let mut checked = 0;
    for l in &lines {
        let secret: Identity = s(l, "secret").parse().expect("secret parses");
        let public: Identity = s(l, "public").parse().expect("public parses");
        assert_eq!(secret.address().to_string(), s(l, "address"));
        assert!(secret.validate(), "{} must validate", s(l, "address"));
        assert!(public.validate());
        // getpublic: the public text form of the secret equals `public`
        assert_eq!(secret.to_string(), s(l, "public"));
        assert_eq!(secret.to_secret_string().unwrap().as_str(), s(l, "secret"));
        // public halves derive from the private halves
        let derived = weft_wire::identity::public_from_private(secret.private_key().unwrap());
        assert_eq!(&derived, secret.public_key());
        // binary round trip
        let mut b = Vec::new();
        secret.write_binary(&mut b, true);
        assert_eq!(
            Identity::from_binary(&b).unwrap().0.private_key(),
            secret.private_key()
        );
        checked += 1;
    }
    assert_eq!(checked, lines.len());
}

#[test]
fn invalid_identities() {
    let lines = read_jsonl("identities_invalid.jsonl");
    assert_eq!(lines.len(), 2);
    let mut checked = 0;
    for l in &lines {
        assert_eq!(l["valid"], false);
        let rejected = match s(l, "public").parse::<Identity>() {
            Ok(id) => !id.validate(),
            Err(_) => true,
        };
        assert!(rejected, "must reject: {}", s(l, "reason"));
        checked += 1;
    }
    assert_eq!(checked, lines.len());
}

#[test]
fn signatures() {
    let lines = read_jsonl("signatures.jsonl");
    assert_eq!(lines.len(), 23, "18 valid + 5 invalid");
    let (mut valid, mut invalid, mut reproduced) = (0, 0, 0);
    for l in &lines {
        let public: Identity = s(l, "identity_public").parse().unwrap();
        let msg = hex::decode(s(l, "message_hex")).unwrap();
        let sig = hex::decode(s(l, "signature_hex")).unwrap();
        if l["valid"] == true {
            assert!(public.verify(&msg, &sig), "valid signature rejected");
            let secret: Identity = s(l, "identity_secret").parse().unwrap();
            assert_eq!(
                secret.sign(&msg).unwrap().to_vec(),
                sig,
                "signature not reproduced"
            );
            reproduced += 1;
            valid += 1;
        } else {
            assert!(
                !public.verify(&msg, &sig),
                "invalid signature accepted: {}",
                s(l, "reason")
            );
            invalid += 1;
        }
    }
    assert_eq!((valid, invalid, reproduced), (18, 5, 18));
    assert_eq!(valid + invalid, lines.len());
}

#[test]
fn agreements() {
    let lines = read_jsonl("agreements.jsonl");
    assert_eq!(lines.len(), 10);
    let mut checked = 0;
    for l in &lines {
        let a: Identity = s(l, "a_secret").parse().unwrap();
        let b: Identity = s(l, "b_public").parse().unwrap();
        assert_eq!(a.address().to_string(), s(l, "a_address"));
        assert_eq!(b.address().to_string(), s(l, "b_address"));
        let k = a.agree(&b).unwrap();
        assert_eq!(hex::encode(k.as_bytes()), s(l, "shared_key_48_hex"));
        assert_eq!(
            hex::encode(k.salsa_key()),
            s(l, "salsa2012_poly1305_key_hex")
        );
        assert_eq!(
            hex::encode(*kbkdf_hmac_sha384(k.as_bytes(), b'0')),
            s(l, "aes_gmac_siv_k0_hex")
        );
        assert_eq!(
            hex::encode(*kbkdf_hmac_sha384(k.as_bytes(), b'1')),
            s(l, "aes_gmac_siv_k1_hex")
        );
        checked += 1;
    }
    assert_eq!(checked, lines.len());
}
