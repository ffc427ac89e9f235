//! End-to-end tests of `weft idtool` (the built binary, run in temporary directories) against
//! the reference vectors in `shared/vectors` and the spec (service.md §9, vl1.md §2, §7).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use weft_wire::World;
use weft_wire::identity::public_from_private;

const BIN: &str = env!("CARGO_BIN_EXE_weft");

/// Identity A of vl1.md Appendix A.
const A: &str = "2f52c8fb18:0:cc8def6df561ff69117bdeb006b329ebac35349a91e65175032e6d1398f1eb58b1eaefa4507ccf875e8dea63b32b4b1c39ddd567ccb963ead9cfec1d538cb21b:f0bdc71129bf59592ac580ee136b81b2a2a516f156acf41b2515dd1b756a729dd3babe47ff9b1f7e691f6ecd7c11bf10d273b417abc610fed8462fa111036079";
/// Identity B of vl1.md Appendix A (public part).
const B_PUBLIC: &str = "555b5031f8:0:b714a04b47bd65f6b8b9bfa9edb4f9d989d4d86d8f8eeaf22b25e554e8ca036d462dd50d558107241ca9522d77bd8cb9fdf52fd80094701695478270d2b61628";
/// `zerotier-idtool sign` with A over "hello zerotier signature test\n" (vl1.md Appendix A).
const A_SIG: &str = "01d7a16958352289c309aaf3bf73816b2f62e3c301c61684d93e72aa09e3ba4b973d205a68168c8ccba3c4c7fead3d5f9ad90ab3db035cdb10a91531bebc6405732991bea06b11eaca424ac717b8c717da8c5211944026834e140e0ca633d66b";

/// The shared reference vectors; fails loudly when they are not there.
fn vectors() -> PathBuf {
    let p = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/vectors"
    ));
    assert!(
        p.join("README.md").is_file(),
        "reference vectors not found at {} (expected the shared/vectors folder next to the \
         repository); these tests need them and must not be skipped",
        p.display()
    );
    p
}

fn run_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run weft")
}

fn idtool(dir: &Path, args: &[&str]) -> Output {
    let mut v = vec!["idtool"];
    v.extend_from_slice(args);
    run_in(dir, &v)
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("utf-8 stdout")
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).expect("utf-8 stderr")
}

#[track_caller]
fn assert_ok(o: &Output) {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        stdout(o),
        stderr(o)
    );
}

/// A clean failure: exit 1, no panic.
#[track_caller]
fn assert_fails(o: &Output) {
    assert_eq!(
        o.status.code(),
        Some(1),
        "stdout: {}\nstderr: {}",
        stdout(o),
        stderr(o)
    );
    assert!(!stderr(o).contains("panicked"), "{}", stderr(o));
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

#[test]
fn generate_validate_getpublic() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = idtool(d, &["generate", "identity.secret", "identity.public"]);
    assert_ok(&o);
    assert_eq!(
        stdout(&o),
        "identity.secret written\nidentity.public written\n"
    );
    let secret = fs::read(d.join("identity.secret")).unwrap();
    let public = fs::read(d.join("identity.public")).unwrap();
    assert_eq!(secret.len(), 270);
    assert_eq!(public.len(), 141);
    assert!(!secret.ends_with(b"\n") && !public.ends_with(b"\n"));
    assert!(secret.starts_with(&public));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(d.join("identity.secret"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert_eq!(
        fs::read_dir(d).unwrap().count(),
        2,
        "no temporary files left"
    );

    for f in ["identity.secret", "identity.public"] {
        let o = idtool(d, &["validate", f]);
        assert_ok(&o);
        assert_eq!(stdout(&o), format!("{f} is a valid identity\n"));
    }
    let o = idtool(d, &["getpublic", "identity.secret"]);
    assert_ok(&o);
    assert_eq!(o.stdout, public);

    // Literal argument, then a tampered address digit.
    let secret = String::from_utf8(secret).unwrap();
    let o = idtool(d, &["validate", &secret]);
    assert_ok(&o);
    let first = secret.as_bytes()[0];
    let swapped = if first == b'1' { '2' } else { '1' };
    let tampered = format!("{swapped}{}", &secret[1..]);
    let o = idtool(d, &["validate", &tampered]);
    assert_fails(&o);
    assert_eq!(stderr(&o), format!("{tampered} FAILED validation.\n"));
    assert!(stdout(&o).is_empty());
}

#[test]
fn generate_to_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let o = idtool(dir.path(), &["generate"]);
    assert_ok(&o);
    let text = stdout(&o);
    let id: weft_wire::Identity = text.trim().parse().expect("secret identity");
    assert!(id.has_private());
    assert_eq!(text.trim().len(), 270);
    assert!(id.validate());
}

#[test]
fn reference_identities_validate() {
    let v = vectors();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut n = 0;
    for line in fs::read_to_string(v.join("identities.jsonl"))
        .unwrap()
        .lines()
    {
        let j: Value = serde_json::from_str(line).unwrap();
        let secret = j["secret"].as_str().unwrap();
        let public = j["public"].as_str().unwrap();
        let o = idtool(d, &["getpublic", secret]);
        assert_ok(&o);
        assert_eq!(stdout(&o), public);
        assert_ok(&idtool(d, &["validate", secret]));
        n += 1;
    }
    assert_eq!(n, 10);
    for line in fs::read_to_string(v.join("identities_invalid.jsonl"))
        .unwrap()
        .lines()
    {
        let j: Value = serde_json::from_str(line).unwrap();
        let o = idtool(d, &["validate", j["public"].as_str().unwrap()]);
        assert_fails(&o);
        assert!(stderr(&o).ends_with(" FAILED validation.\n"));
        n += 1;
    }
    assert_eq!(n, 12);
    // Identity files from the captures, read as paths.
    let ids = v.join("capture/identities");
    for f in ["root.secret", "ctl.public"] {
        assert_ok(&idtool(d, &["validate", p(&ids.join(f))]));
    }
}

#[test]
fn sign_verify() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(d.join("msg"), b"hello zerotier signature test\n").unwrap();
    fs::write(d.join("a.secret"), A).unwrap();
    fs::write(d.join("b.public"), B_PUBLIC).unwrap();

    let o = idtool(d, &["sign", "a.secret", "msg"]);
    assert_ok(&o);
    assert_eq!(stdout(&o), A_SIG, "vl1.md Appendix A signature");
    let o = idtool(d, &["sign", A, "msg"]);
    assert_eq!(stdout(&o), A_SIG);

    let a_public = &A[..141];
    for who in ["a.secret", a_public] {
        let o = idtool(d, &["verify", who, "msg", A_SIG]);
        assert_ok(&o);
        assert_eq!(stdout(&o), "msg signature valid\n");
    }
    // Signature in a file (as `sign > file` leaves it, and with a newline).
    fs::write(d.join("msg.sig"), A_SIG).unwrap();
    assert_ok(&idtool(d, &["verify", a_public, "msg", "msg.sig"]));
    fs::write(d.join("msg.sig2"), format!("{A_SIG}\n")).unwrap();
    assert_ok(&idtool(d, &["verify", a_public, "msg", "msg.sig2"]));

    // Wrong identity, modified file, modified signature.
    let o = idtool(d, &["verify", "b.public", "msg", A_SIG]);
    assert_fails(&o);
    assert_eq!(stderr(&o), "msg signature check FAILED\n");
    fs::write(d.join("msg2"), b"hello zerotier signature test!").unwrap();
    assert_fails(&idtool(d, &["verify", a_public, "msg2", A_SIG]));
    let mut bad = A_SIG.to_owned();
    bad.replace_range(0..1, "1");
    assert_fails(&idtool(d, &["verify", a_public, "msg", &bad]));

    // Signing needs a private key.
    let o = idtool(d, &["sign", "b.public", "msg"]);
    assert_fails(&o);
    assert!(stderr(&o).contains("no private key"));
}

#[test]
fn reference_signatures() {
    let v = vectors();
    let text = fs::read_to_string(v.join("signatures.jsonl")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (mut valid, mut invalid, mut signed) = (0, 0, 0);
    for (i, line) in text.lines().enumerate() {
        let j: Value = serde_json::from_str(line).unwrap();
        let msg = format!("m{i}");
        fs::write(
            d.join(&msg),
            hex::decode(j["message_hex"].as_str().unwrap()).unwrap(),
        )
        .unwrap();
        let sig = j["signature_hex"].as_str().unwrap();
        let public = j["identity_public"].as_str().unwrap();
        let o = idtool(d, &["verify", public, &msg, sig]);
        if j["valid"].as_bool().unwrap() {
            assert_ok(&o);
            assert_eq!(stdout(&o), format!("{msg} signature valid\n"));
            if let Some(secret) = j["identity_secret"].as_str() {
                let o = idtool(d, &["sign", secret, &msg]);
                assert_ok(&o);
                assert_eq!(stdout(&o), sig, "line {}", i + 1);
                signed += 1;
            }
            valid += 1;
        } else {
            assert_fails(&o);
            assert_eq!(stderr(&o), format!("{msg} signature check FAILED\n"));
            invalid += 1;
        }
    }
    assert_eq!(valid + invalid, text.lines().count());
    assert_eq!((valid, invalid, signed), (18, 5, 18));
}

/// Key order and the JSON shape with every string value blanked.
fn shape(v: &Value) -> Value {
    match v {
        Value::String(_) => Value::String(String::new()),
        Value::Array(a) => Value::Array(a.iter().map(shape).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
        other => other.clone(),
    }
}

#[test]
fn initmoon_matches_reference_shape() {
    let v = vectors();
    let reference = fs::read_to_string(v.join("moon/initmoon-output.json")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ctl = v.join("capture/identities/ctl.public");
    let o = idtool(d, &["initmoon", p(&ctl)]);
    assert_ok(&o);
    let out = stdout(&o);
    // Same text except the three key values (fresh signing key): layout, order, indentation.
    let ref_lines: Vec<&str> = reference.lines().collect();
    let out_lines: Vec<&str> = out.lines().collect();
    assert_eq!(out_lines.len(), ref_lines.len(), "{out}");
    assert_eq!(out.ends_with('\n'), reference.ends_with('\n'));
    for (a, b) in out_lines.iter().zip(&ref_lines) {
        let key_of = |l: &str| l.split(": ").next().unwrap_or("").to_owned();
        if ["signingKey", "signingKey_SECRET", "updatesMustBeSignedBy"]
            .iter()
            .any(|k| key_of(b).trim() == format!("\"{k}\""))
        {
            assert_eq!(key_of(a), key_of(b));
            assert_eq!(a.len(), b.len());
        } else {
            assert_eq!(a, b);
        }
    }
    let out_json: Value = serde_json::from_str(&out).unwrap();
    let ref_json: Value = serde_json::from_str(&reference).unwrap();
    assert_eq!(shape(&out_json), shape(&ref_json));
    let hex64 = |k: &str| -> [u8; 64] {
        hex::decode(out_json[k].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap()
    };
    assert_eq!(
        public_from_private(&hex64("signingKey_SECRET")),
        hex64("signingKey")
    );
    assert_eq!(hex64("updatesMustBeSignedBy"), hex64("signingKey"));

    // The template with an endpoint added goes through genmoon.
    let signing_key = hex64("signingKey");
    let mut j = out_json.clone();
    j["roots"][0]["stableEndpoints"] = serde_json::json!(["10.77.2.1/9993", "fd00::1/9993"]);
    fs::write(d.join("moon.json"), serde_json::to_vec(&j).unwrap()).unwrap();
    let o = idtool(d, &["genmoon", "moon.json"]);
    assert_ok(&o);
    let bytes = fs::read(d.join("0000009cbc6fc098.moon")).unwrap();
    let (w, used) = World::decode(&bytes).unwrap();
    assert_eq!(used, bytes.len());
    assert_eq!(w.roots[0].stable_endpoints.len(), 2);
    assert!(w.verify(&signing_key));
}

#[test]
fn genmoon_reproduces_reference_moon() {
    let v = vectors();
    let reference = fs::read(v.join("moon/0000009cbc6fc098.moon")).unwrap();
    let input = v.join("moon/genmoon-input.json");
    let j: Value = serde_json::from_str(&fs::read_to_string(&input).unwrap()).unwrap();
    let signing_key: [u8; 64] = hex::decode(j["signingKey"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let o = idtool(d, &["genmoon", p(&input)]);
    assert_ok(&o);
    let bytes = fs::read(d.join("0000009cbc6fc098.moon")).unwrap();
    let (w, used) = World::decode(&bytes).unwrap();
    assert_eq!(used, bytes.len());
    assert_eq!(
        stdout(&o),
        format!(
            "wrote 0000009cbc6fc098.moon (signed world with timestamp {})\n",
            w.timestamp
        )
    );
    assert!(w.timestamp >= before && w.timestamp < before + 600_000);
    assert!(w.verify(&signing_key));
    assert_eq!(bytes.len(), reference.len());
    for (i, (a, b)) in bytes.iter().zip(&reference).enumerate() {
        let timestamp = (9..17).contains(&i);
        let signature = (81..177).contains(&i);
        if !timestamp && !signature {
            assert_eq!(a, b, "byte {i} differs from the reference moon");
        }
    }

    // With the reference timestamp the output is byte-identical (deterministic signatures).
    let o = idtool(d, &["genmoon", p(&input), "--timestamp", "1795320853841"]);
    assert_ok(&o);
    assert_eq!(
        fs::read(d.join("0000009cbc6fc098.moon")).unwrap(),
        reference
    );

    // The same description as a planet.
    let mut planet = j.clone();
    planet["worldType"] = "planet".into();
    fs::write(d.join("planet.json"), serde_json::to_vec(&planet).unwrap()).unwrap();
    assert_ok(&idtool(d, &["genmoon", "planet.json"]));
    let bytes = fs::read(d.join("0000009cbc6fc098.moon")).unwrap();
    let (w, _) = World::decode(&bytes).unwrap();
    assert_eq!(w.kind, weft_wire::WorldType::Planet);
    assert_eq!(bytes.len(), reference.len() - 2);
    assert!(w.verify(&signing_key));
}

#[test]
fn planet_vector_is_reproduced() {
    let v = vectors();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let root = v.join("capture/identities/root.public");
    let o = idtool(
        d,
        &[
            "planet",
            "init",
            "--id",
            "0x4c41425a54",
            "--root",
            &format!("{}@10.77.1.1/9993", p(&root)),
            "--keys-dir",
            p(&v.join("planet")),
            "--timestamp",
            "1795319083172",
            "-o",
            "planet",
        ],
    );
    assert_ok(&o);
    assert!(stdout(&o).starts_with("planet written"), "{}", stdout(&o));
    assert_eq!(
        fs::read(d.join("planet")).unwrap(),
        fs::read(v.join("planet/planet.bin")).unwrap(),
        "planet differs from the reference world generator's planet.bin"
    );
    // `planet show` decodes the reference file.
    let o = idtool(d, &["planet", "show", p(&v.join("planet/planet.bin"))]);
    assert_ok(&o);
    let j: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(j["worldType"], "planet");
    assert_eq!(j["id"], "0000004c41425a54");
    assert_eq!(j["timestamp"], 1795319083172u64);
    assert_eq!(j["selfSigned"], true);
    assert_eq!(j["roots"][0]["address"], "0ba9de3d2c");
    assert_eq!(j["roots"][0]["stableEndpoints"][0], "10.77.1.1/9993");
    // And judges the reference updates.
    for (file, ok) in [
        ("planet-v2-rotated.bin", true),
        ("planet-v2-badsig.bin", false),
    ] {
        let o = idtool(
            d,
            &[
                "world",
                "show",
                p(&v.join("planet/update").join(file)),
                "--previous",
                p(&v.join("planet/planet.bin")),
            ],
        );
        assert_ok(&o);
        let j: Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert_eq!(j["previous"]["validUpdate"], ok, "{file}");
    }
}

fn load_world(path: &Path) -> World {
    let b = fs::read(path).unwrap();
    let (w, used) = World::decode(&b).unwrap();
    assert_eq!(used, b.len());
    w
}

#[test]
fn planet_init_and_update() {
    let v = vectors();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ids = v.join("capture/identities");
    let root1 = format!("{}@10.0.0.1/9993,fd00::1/9993", p(&ids.join("root.public")));
    let root2 = format!("{}@10.0.0.2/9993", p(&ids.join("ctl.public")));

    let o = idtool(
        d,
        &[
            "planet",
            "init",
            "--id",
            "1234567",
            "--root",
            &root1,
            "--root",
            &root2,
            "--keys-dir",
            ".",
            "-o",
            "p1",
        ],
    );
    assert_ok(&o);
    let key1 = fs::read(d.join("current.c25519")).unwrap();
    assert_eq!(key1.len(), 128);
    assert_eq!(fs::read(d.join("previous.c25519")).unwrap(), key1);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for f in ["current.c25519", "previous.c25519"] {
            let mode = fs::metadata(d.join(f)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
    }
    let p1 = load_world(&d.join("p1"));
    assert_eq!(p1.kind, weft_wire::WorldType::Planet);
    assert_eq!(p1.id, 1234567);
    assert_eq!(p1.roots.len(), 2);
    assert_eq!(p1.roots[0].stable_endpoints.len(), 2);
    assert_eq!(&p1.updates_must_be_signed_by[..], &key1[..64]);
    assert!(
        p1.verify(&p1.updates_must_be_signed_by),
        "genesis is self-signed"
    );
    assert!(World::should_replace(None, &p1));

    // Plain update: same key, newer timestamp, one root dropped.
    let o = idtool(
        d,
        &[
            "planet",
            "update",
            "--previous",
            "p1",
            "--root",
            &root1,
            "-o",
            "p2",
        ],
    );
    assert_ok(&o);
    let p2 = load_world(&d.join("p2"));
    assert!(p2.timestamp > p1.timestamp);
    assert_eq!(p2.roots.len(), 1);
    assert_eq!(p2.updates_must_be_signed_by, p1.updates_must_be_signed_by);
    assert!(World::should_replace(Some(&p1), &p2));
    assert!(!World::should_replace(Some(&p2), &p1));

    // Rotation: signed with key 1, names key 2; key files move along.
    let o = idtool(
        d,
        &[
            "planet",
            "update",
            "--previous",
            "p2",
            "--rotate",
            "-o",
            "p3",
        ],
    );
    assert_ok(&o);
    let p3 = load_world(&d.join("p3"));
    let key2 = fs::read(d.join("current.c25519")).unwrap();
    assert_ne!(key2, key1);
    assert_eq!(fs::read(d.join("previous.c25519")).unwrap(), key1);
    assert_eq!(&p3.updates_must_be_signed_by[..], &key2[..64]);
    assert_eq!(p3.roots, p2.roots, "roots kept without --root");
    assert!(World::should_replace(Some(&p2), &p3));
    assert!(!p3.verify(&p3.updates_must_be_signed_by), "not self-signed");

    // The next update (in place, explicit timestamp) must be signed with key 2.
    let o = idtool(
        d,
        &[
            "planet",
            "update",
            "--previous",
            "p3",
            "--timestamp",
            &(p3.timestamp + 5).to_string(),
            "-o",
            "p4",
        ],
    );
    assert_ok(&o);
    let p4 = load_world(&d.join("p4"));
    assert_eq!(p4.timestamp, p3.timestamp + 5);
    assert!(World::should_replace(Some(&p3), &p4));
    assert!(!World::should_replace(Some(&p2), &p4));

    // In place (no -o).
    fs::copy(d.join("p4"), d.join("planet")).unwrap();
    assert_ok(&idtool(d, &["planet", "update", "--previous", "planet"]));
    let p5 = load_world(&d.join("planet"));
    assert!(World::should_replace(Some(&p4), &p5));

    // A timestamp that is not newer is refused.
    let o = idtool(
        d,
        &[
            "planet",
            "update",
            "--previous",
            "p4",
            "--timestamp",
            &p4.timestamp.to_string(),
            "-o",
            "x",
        ],
    );
    assert_fails(&o);

    // An update made with unrelated keys is refused by the tool, and a forged one is rejected.
    let other = d.join("other");
    fs::create_dir(&other).unwrap();
    let o = idtool(
        d,
        &[
            "planet",
            "init",
            "--id",
            "1234567",
            "--root",
            &root1,
            "--keys-dir",
            "other",
            "-o",
            "forged0",
        ],
    );
    assert_ok(&o);
    let o = idtool(
        d,
        &[
            "planet",
            "update",
            "--previous",
            "p4",
            "--keys-dir",
            "other",
            "-o",
            "x",
        ],
    );
    assert_fails(&o);
    assert!(
        stderr(&o).contains("requires for updates"),
        "{}",
        stderr(&o)
    );
    // Forge: a newer revision of p4 signed with the other key.
    let mut forged = p4.clone();
    forged.timestamp += 1000;
    let other_key = fs::read(other.join("current.c25519")).unwrap();
    forged.sign(&other_key[64..].try_into().unwrap());
    assert!(!World::should_replace(Some(&p4), &forged));
    let forged0 = load_world(&d.join("forged0"));
    assert!(!forged0.verify(&p1.updates_must_be_signed_by));
}

#[test]
fn bad_inputs_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(d.join("garbage"), [0xffu8, 0, 1, 2, 3]).unwrap();
    fs::write(d.join("text"), "not an identity").unwrap();
    fs::write(d.join("msg"), "x").unwrap();
    fs::write(d.join("bad.json"), "{\"id\": 5").unwrap();
    fs::write(
        d.join("badkey.json"),
        r#"{"id":"2f52c8fb18","roots":[],"signingKey_SECRET":"00"}"#,
    )
    .unwrap();
    let a_pub = &A[..141];
    let cases: Vec<Vec<&str>> = vec![
        vec!["validate", "garbage"],
        vec!["validate", "text"],
        vec!["validate", "missing-file"],
        vec!["getpublic", "text"],
        vec!["sign", "garbage", "msg"],
        vec!["sign", A, "missing-file"],
        vec!["verify", a_pub, "msg", "garbage"],
        vec!["verify", a_pub, "msg", "missing-sig"],
        vec!["initmoon", "text"],
        vec!["genmoon", "bad.json"],
        vec!["genmoon", "badkey.json"],
        vec!["genmoon", "missing.json"],
        vec!["world", "show", "garbage"],
        vec!["world", "show", "msg"],
        vec!["planet", "show", "missing"],
        vec!["planet", "update", "--previous", "garbage"],
        vec![
            "planet",
            "init",
            "--id",
            "5",
            "--root",
            "text@10.0.0.1/9993",
            "-o",
            "p",
        ],
        vec!["planet", "init", "--id", "5", "--root", "x@1.2.3.4:5"],
    ];
    for args in cases {
        let o = idtool(d, &args);
        assert_fails(&o);
        let err = stderr(&o);
        assert!(err.starts_with("error: "), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    }
    // Secret literals are not echoed in errors.
    let bad_literal = A.replacen(":0:", ":7:", 1);
    let o = idtool(d, &["sign", &bad_literal, "msg"]);
    assert_fails(&o);
    assert!(!stderr(&o).contains(&A[150..]), "{}", stderr(&o));
    // Nothing was written by the failed planet commands.
    assert!(!d.join("p").exists() && !d.join("current.c25519").exists());
}

#[test]
fn zerotier_idtool_personality() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let link = d.join("zerotier-idtool");
    #[cfg(unix)]
    std::os::unix::fs::symlink(BIN, &link).unwrap();
    #[cfg(not(unix))]
    fs::copy(BIN, &link).unwrap();
    let o = Command::new(&link)
        .current_dir(d)
        .args(["getpublic", A])
        .output()
        .unwrap();
    assert_ok(&o);
    assert_eq!(stdout(&o), &A[..141]);
    // `weft` itself does not take idtool commands at top level.
    let o = run_in(d, &["getpublic", A]);
    assert!(!o.status.success());
}
