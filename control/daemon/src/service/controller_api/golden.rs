//! Golden files of the `/controller` API: every response shape, driven through the real router
//! and a real [`Ctl`] (file database in a temporary folder, the reference controller identity
//! `ctl.secret`, a fixed clock and a seeded random generator, so every answer is deterministic).
//!
//! Each file under `control/daemon/tests/golden/controller/` is the transcript of one scenario:
//! requests with their status and response. `WEFT_BLESS=1 cargo test -p weft golden` rewrites
//! them; otherwise a difference fails the test. spec: controller.md §7, §8

use std::path::{Path, PathBuf};

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tower::ServiceExt;
use weft_wire::Identity;

use super::{Ctl, CtlAnswer, FileStore};
use crate::service::api::{ApiRequest, router};

/// The clock of the first request (the §7.2 example's creation time); +1 s per request.
const T0: i64 = 1_795_318_710_651;
const TOKEN: &str = "golden";
/// The reference controller identity's address.
const ME: &str = "9cbc6fc098";

fn identity() -> Identity {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/vectors/capture/identities/ctl.secret");
    let text = std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("*** REFERENCE VECTORS NOT FOUND: {} ({e}) ***", p.display()));
    text.trim().parse().expect("ctl.secret parses")
}

/// The router with a service-loop stand-in that owns a real `Ctl`.
struct Harness {
    app: Router,
    dir: tempfile::TempDir,
    log: Vec<Value>,
}

impl Harness {
    fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let mut ctl = Ctl::open_at(
            &dir.path().join("controller.d"),
            identity(),
            ChaCha20Rng::seed_from_u64(1),
        )
        .unwrap();
        let (tx, mut rx) = mpsc::channel::<ApiRequest>(4);
        tokio::spawn(async move {
            let mut now = T0;
            while let Some(req) = rx.recv().await {
                if let ApiRequest::Controller(r, reply) = req {
                    let _ = reply.send(ctl.handle(now, r));
                    // what a change queued (pushes, revocations) is dropped: no node here
                    while ctl.ctl.poll_output().is_some() {}
                    now += 1000;
                }
            }
        });
        Harness {
            app: router(TOKEN.into(), "metrics-token".into(), Vec::new(), None, tx),
            dir,
            log: Vec::new(),
        }
    }

    /// One request; records it in the transcript and returns (status, parsed JSON or null).
    async fn call(&mut self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("X-ZT1-Auth", TOKEN)
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .unwrap();
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let ctype = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string());
        let raw = resp.into_body().collect().await.unwrap().to_bytes();
        let raw = String::from_utf8(raw.to_vec()).unwrap();
        let mut entry = json!({"request": format!("{method} {path}"), "status": status});
        if let Some(b) = body {
            entry["body"] = serde_json::from_str(b).unwrap_or_else(|_| Value::String(b.into()));
        }
        let parsed = if raw.is_empty() {
            entry["response"] = Value::Null;
            Value::Null
        } else if path == "/controller" {
            entry["text"] = Value::String(raw.clone());
            Value::Null
        } else {
            let v: Value = serde_json::from_str(&raw)
                .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {raw}"));
            // compact, keys sorted (parsing sorts; re-serializing must give the same bytes)
            assert_eq!(raw, serde_json::to_string(&v).unwrap(), "{method} {path}");
            entry["response"] = v.clone();
            v
        };
        if !raw.is_empty() {
            assert_eq!(
                ctype.as_deref(),
                Some("application/json"),
                "{method} {path}"
            );
        }
        self.log.push(entry);
        (status, parsed)
    }

    async fn get(&mut self, path: &str) -> (u16, Value) {
        self.call("GET", path, None).await
    }

    async fn post(&mut self, path: &str, body: &str) -> (u16, Value) {
        self.call("POST", path, Some(body)).await
    }

    /// Compares the transcript with `tests/golden/controller/<name>.json` (or writes it when
    /// `WEFT_BLESS=1`).
    fn check(self, name: &str) {
        let file = golden_dir().join(format!("{name}.json"));
        let got = Value::Array(self.log);
        if std::env::var("WEFT_BLESS").is_ok_and(|v| v == "1") {
            std::fs::create_dir_all(golden_dir()).unwrap();
            let text = serde_json::to_string_pretty(&got).unwrap() + "\n";
            std::fs::write(&file, text).unwrap();
            return;
        }
        let want: Value = serde_json::from_slice(&std::fs::read(&file).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run with WEFT_BLESS=1 to create it)",
                file.display()
            )
        }))
        .unwrap();
        let (got, want) = (got.as_array().unwrap(), want.as_array().unwrap());
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert_eq!(
                g,
                w,
                "{name}: exchange {i} differs from {}\n got: {g}\nwant: {w}",
                file.display()
            );
        }
        assert_eq!(got.len(), want.len(), "{name}: number of exchanges");
    }
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/controller")
}

/// The verified creation example of controller.md §7.2 (its id and creation time replaced).
fn verified_creation(id: &str, creation_time: i64) -> Value {
    let mut v: Value = serde_json::from_str(r#"{"authTokens":[null],"authorizationEndpoint":"","capabilities":[],"clientId":"","creationTime":1795318710651,"dns":[],"enableBroadcast":true,"id":"7c55a8da82c90312","ipAssignmentPools":[],"mtu":2800,"multicastLimit":32,"name":"","nwid":"7c55a8da82c90312","objtype":"network","private":true,"remoteTraceLevel":0,"remoteTraceTarget":null,"revision":1,"routes":[],"rules":[{"not":false,"or":false,"type":"ACTION_ACCEPT"}],"rulesSource":"","ssoEnabled":false,"tags":[],"v4AssignMode":{"zt":false},"v6AssignMode":{"6plane":false,"rfc4193":false,"zt":false}}"#).unwrap();
    v["id"] = id.into();
    v["nwid"] = id.into();
    v["creationTime"] = creation_time.into();
    v
}

async fn create(h: &mut Harness, body: &str) -> String {
    let (code, v) = h
        .post(&format!("/controller/network/{ME}______"), body)
        .await;
    assert_eq!(code, 200, "{v}");
    v["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn golden_info() {
    let mut h = Harness::new();
    assert_eq!(h.get("/controller").await.0, 200);
    h.check("info");
    assert_eq!(
        super::info_answer(5, false),
        CtlAnswer {
            status: 503,
            body: super::CtlBody::Text(
                "{\n\t\"controller\": true,\n\t\"apiVersion\": 4,\n\t\"clock\": 5,\n\t\"databaseReady\": false\n}\n"
                    .into()
            )
        }
    );
}

#[tokio::test]
async fn golden_network_create() {
    let mut h = Harness::new();
    assert_eq!(h.get("/controller/network").await, (200, json!([])));
    let (code, v) = h
        .post(&format!("/controller/network/{ME}______"), "{}")
        .await;
    assert_eq!(code, 200);
    let id = v["id"].as_str().unwrap().to_string();
    assert!(id.starts_with(ME) && !id.ends_with("000000"), "{id}");
    assert_eq!(v, verified_creation(&id, T0 + 1000), "the §7.2 example");
    // the same body again changes nothing (revision stays 1)
    assert_eq!(
        h.post(&format!("/controller/network/{id}"), "{}").await.1["revision"],
        1
    );
    let (code, v2) = h.post("/controller/network", "{\"name\":\"second\"}").await;
    assert_eq!(code, 200);
    let id2 = v2["id"].as_str().unwrap().to_string();
    let mut ids = vec![id.clone(), id2];
    ids.sort();
    assert_eq!(h.get("/controller/network").await, (200, json!(ids)));
    assert_eq!(h.get(&format!("/controller/network/{id}")).await.1, v);
    // uppercase ids in the path are accepted
    let up = id.to_ascii_uppercase();
    assert_eq!(h.get(&format!("/controller/network/{up}")).await.1, v);
    // a foreign or uppercase prefix: 400, empty body
    assert_eq!(
        h.post("/controller/network/0123456789______", "{}").await,
        (400, Value::Null)
    );
    assert_eq!(
        h.post(
            &format!("/controller/network/{}______", ME.to_ascii_uppercase()),
            "{}"
        )
        .await,
        (400, Value::Null)
    );
    // PUT is POST; a foreign network id is created as given (no ownership check)
    let (code, v) = h
        .call(
            "PUT",
            "/controller/network/0123456789abcdef",
            Some("{\"name\":\"foreign\"}"),
        )
        .await;
    assert_eq!((code, v["id"].as_str()), (200, Some("0123456789abcdef")));
    h.check("network_create");
}

#[tokio::test]
async fn golden_network_string_modes() {
    let mut h = Harness::new();
    let body = r#"{"name":"pub","private":false,"v4AssignMode":"zt","v6AssignMode":"rfc4193,6plane",
        "ipAssignmentPools":[{"ipRangeStart":"10.22.0.1","ipRangeEnd":"10.22.0.1"}],
        "routes":[{"target":"10.22.0.0/16"}]}"#;
    let (code, v) = h.post("/controller/network", body).await;
    assert_eq!(code, 200);
    assert_eq!(v["private"], false);
    assert_eq!(v["routes"], json!([{"target":"10.22.0.0/16","via":null}]));
    assert_eq!(v["v4AssignMode"], json!({"zt":true}));
    assert_eq!(
        v["v6AssignMode"],
        json!({"6plane":true,"rfc4193":true,"zt":false})
    );
    h.check("network_string_modes");
}

const FULL_UPDATE: &str = r#"{"name":"testnet","v4AssignMode":{"zt":true},"v6AssignMode":{"zt":true,"rfc4193":true,"6plane":true},
 "ipAssignmentPools":[{"ipRangeStart":"10.147.17.1","ipRangeEnd":"10.147.17.254"},
                      {"ipRangeStart":"fd12:3456:789a::1","ipRangeEnd":"fd12:3456:789a::ffff:ffff:ffff"}],
 "routes":[{"target":"10.147.17.0/24","via":null},{"target":"fd12:3456:789a::/64"},
           {"target":"192.168.100.0/24","via":"10.147.17.1"}],
 "rules":[{"type":"MATCH_ETHERTYPE","not":true,"or":false,"etherType":2048},
          {"type":"MATCH_ETHERTYPE","not":true,"or":false,"etherType":2054},
          {"type":"ACTION_DROP","not":true,"or":true},
          {"type":"MATCH_ICMP","icmpType":8,"icmpCode":null},
          {"type":"ACTION_TEE","address":"deadbeef01","length":64},
          {"type":"INTEGER_RANGE","start":1,"end":5,"idx":20,"bits":16,"little":false},
          {"type":"ACTION_PRIORITY"},{"type":"ACTION_ACCEPT"}],
 "capabilities":[{"id":1000,"default":true,"rules":[{"type":"MATCH_IP_DEST_PORT_RANGE","start":22,"end":22},{"type":"ACTION_ACCEPT"}]}],
 "tags":[{"id":1000,"default":100},{"id":2000,"default":null}],
 "dns":{"domain":"zt.example","servers":["10.147.17.1","fd12:3456:789a::1"]},
 "authTokens":{"abc":0},
 "clock":1,"totalMemberCount":5,"revision":77,"creationTime":3,"ssoEnabled":true,"unknownKey":"x"}"#;

#[tokio::test]
async fn golden_network_full_update() {
    let mut h = Harness::new();
    let id = create(&mut h, "{}").await;
    let (code, v) = h
        .post(&format!("/controller/network/{id}"), FULL_UPDATE)
        .await;
    assert_eq!(code, 200);
    assert_eq!(v["revision"], 2);
    let rules = v["rules"].as_array().unwrap();
    assert!(rules.contains(
        &json!({"icmpCode":null,"icmpType":8,"not":false,"or":false,"type":"MATCH_ICMP"})
    ));
    assert!(
        rules.contains(&json!({"address":"deadbeef01","flags":0,"length":64,"type":"ACTION_TEE"}))
    );
    assert!(
        rules.contains(&json!({"type":"ACTION_DROP"})),
        "actions lose not/or"
    );
    assert!(
        !rules
            .iter()
            .any(|r| r["type"] == "INTEGER_RANGE" || r["type"] == "ACTION_PRIORITY")
    );
    assert_eq!(
        v["dns"],
        json!({"domain":"zt.example","servers":["10.147.17.1","fd12:3456:789a::1"]})
    );
    assert_eq!(v["authTokens"], json!({"abc":0}));
    // read-only and unknown keys are not stored
    assert_eq!(
        (v["creationTime"].clone(), v["ssoEnabled"].clone()),
        (json!(T0), json!(false))
    );
    assert!(v.get("clock").is_none() && v.get("unknownKey").is_none());
    // a partial body changes only its keys; remoteTraceLevel resets unless given
    let (_, v) = h
        .post(
            &format!("/controller/network/{id}"),
            r#"{"remoteTraceLevel":3}"#,
        )
        .await;
    assert_eq!(
        (v["remoteTraceLevel"].clone(), v["revision"].clone()),
        (json!(3), json!(3))
    );
    let (_, v2) = h
        .post(&format!("/controller/network/{id}"), r#"{"mtu":1400}"#)
        .await;
    assert_eq!(
        (v2["remoteTraceLevel"].clone(), v2["mtu"].clone()),
        (json!(0), json!(1400))
    );
    assert_eq!(v2["rules"], v["rules"]);
    assert_eq!(v2["name"], "testnet");
    // a GET-modify-POST round trip of the whole object is accepted and changes nothing else
    let (_, mut whole) = h.get(&format!("/controller/network/{id}")).await;
    whole["name"] = "renamed".into();
    let (code, v3) = h
        .post(&format!("/controller/network/{id}"), &whole.to_string())
        .await;
    assert_eq!(code, 200);
    whole["revision"] = v3["revision"].clone();
    assert_eq!(v3, whole);
    // rulesSource is compiled into rules, capabilities and tags (weft; 1.14 ignores it)
    let (code, v4) = h
        .post(
            &format!("/controller/network/{id}"),
            r#"{"rulesSource":"tag dept id 5 default 1 ;\ncap ssh id 9 accept ipprotocol tcp and dport 22 ; ;\ndrop not ethertype ipv4 and not ethertype arp ;\naccept ;"}"#,
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(v4["tags"], json!([{"default":1,"id":5}]));
    assert_eq!(v4["capabilities"][0]["id"], 9);
    assert_eq!(v4["rules"].as_array().unwrap().len(), 4);
    h.check("network_full_update");
}

#[tokio::test]
async fn golden_members() {
    let mut h = Harness::new();
    let id = create(&mut h, FULL_UPDATE).await;
    let m = format!("/controller/network/{id}/member");
    assert_eq!(h.get(&m).await, (200, json!({})));
    // created through the API before it ever requested (§7.3 example)
    let (code, v) = h
        .post(
            &format!("{m}/0011223344"),
            r#"{"authorized":true,"ipAssignments":["10.147.17.99","fd12:3456:789a::99"],"activeBridge":true,"noAutoAssignIps":true}"#,
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(
        v["ipAssignments"],
        json!(["10.147.17.99", "fd12:3456:789a::99"])
    );
    assert_eq!(v["lastAuthorizedCredentialType"], "api");
    assert_eq!(v["revision"], 1);
    assert!(v.get("identity").is_none() && v.get("name").is_none());
    // uppercase in the URL: stored lowercase (weft normalizes, §10)
    let (_, v) = h
        .post(
            &format!("{m}/0A33989140"),
            r#"{"authorized":true,"capabilities":[1000,7,1000],"tags":[[1000,100],[5,-1]],"name":"laptop"}"#,
        )
        .await;
    assert_eq!(
        (v["id"].as_str(), v["address"].as_str()),
        (Some("0a33989140"), Some("0a33989140"))
    );
    assert_eq!(v["capabilities"], json!([7, 1000]));
    assert_eq!(v["tags"], json!([[5, 4294967295u32], [1000, 100]]));
    // deauthorize stamps lastDeauthorizedTime
    let (_, v) = h
        .post(&format!("{m}/0a33989140"), r#"{"authorized":false}"#)
        .await;
    assert!(
        v["lastDeauthorizedTime"].as_i64().unwrap() > v["lastAuthorizedTime"].as_i64().unwrap()
    );
    assert_eq!(
        h.get(&m).await,
        (200, json!({"0011223344": 1, "0a33989140": 2}))
    );
    assert_eq!(h.get(&format!("{m}/0011223344")).await.0, 200);
    let (code, v) = h
        .get(&format!("/unstable/controller/network/{id}/member"))
        .await;
    assert_eq!(code, 200);
    assert_eq!(v["meta"], json!({"authorizedCount": 1, "totalCount": 2}));
    let (code, v) = h.get("/unstable/controller/network").await;
    assert_eq!(code, 200);
    assert_eq!(v["meta"], json!({"networkCount": 1}));
    assert_eq!(
        v["data"][0]["meta"],
        json!({"authorizedMemberCount": 1, "totalMemberCount": 2})
    );
    // export: everything held about a member; erase: gone, with the counts of what went
    let u = format!("/unstable/controller/network/{id}/member/0011223344");
    let (code, v) = h.get(&format!("{u}/export")).await;
    assert_eq!(code, 200);
    assert_eq!(v["member"]["id"], "0011223344");
    assert_eq!(
        (v["nwid"].as_str(), v["address"].as_str()),
        (Some(id.as_str()), Some("0011223344"))
    );
    let (code, v) = h.post(&format!("{u}/erase"), "{}").await;
    assert_eq!((code, v["member"].clone()), (200, json!(true)));
    assert_eq!(h.get(&format!("{m}/0011223344")).await, (404, Value::Null));
    assert_eq!(h.get(&format!("{u}/export")).await.1["member"], Value::Null);
    h.check("members");
}

#[tokio::test]
async fn golden_ztncui_string_booleans() {
    let mut h = Harness::new();
    let id = create(&mut h, "{}").await;
    let (_, v) = h
        .post(
            &format!("/controller/network/{id}"),
            r#"{"private":"false","enableBroadcast":"true"}"#,
        )
        .await;
    assert_eq!(
        (v["private"].clone(), v["enableBroadcast"].clone()),
        (json!(false), json!(true))
    );
    let m = format!("/controller/network/{id}/member/0a33989140");
    let (_, v) = h.post(&m, r#"{"authorized":"true"}"#).await;
    assert_eq!(v["authorized"], true);
    let (_, v) = h.post(&m, r#"{"activeBridge":"true"}"#).await;
    assert_eq!(
        (v["activeBridge"].clone(), v["authorized"].clone()),
        (json!(true), json!(true))
    );
    let (code, v) = h.post(&m, r#"{"authorized":"yes"}"#).await;
    assert_eq!(code, 400);
    assert!(
        v["description"]
            .as_str()
            .unwrap()
            .starts_with("authorized:")
    );
    let (_, v) = h.post(&m, r#"{"authorized":"false"}"#).await;
    assert_eq!(v["authorized"], false);
    h.check("ztncui_string_booleans");
}

#[tokio::test]
async fn golden_zero_ui_delete_then_repost() {
    let mut h = Harness::new();
    let id = create(&mut h, "{}").await;
    let m = format!("/controller/network/{id}/member/0a33989140");
    let (_, v) = h
        .post(&m, r#"{"authorized":true,"ipAssignments":["10.1.2.3"]}"#)
        .await;
    assert_eq!(v["authorized"], true);
    let (code, deleted) = h.call("DELETE", &m, None).await;
    assert_eq!((code, deleted["authorized"].clone()), (200, json!(true)));
    assert_eq!(h.get(&m).await, (404, Value::Null));
    assert_eq!(
        h.get(&format!("/controller/network/{id}/member")).await,
        (200, json!({}))
    );
    assert_eq!(h.call("DELETE", &m, None).await, (404, Value::Null));
    let (code, v) = h
        .post(
            &m,
            r#"{"authorized":false,"ipAssignments":[],"name":"gone"}"#,
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(
        (
            v["authorized"].clone(),
            v["ipAssignments"].clone(),
            v["revision"].clone()
        ),
        (json!(false), json!([]), json!(1))
    );
    assert_eq!(v["lastAuthorizedTime"], 0, "a new record");
    // deleting the network removes its members and files
    let (code, v) = h
        .call("DELETE", &format!("/controller/network/{id}"), None)
        .await;
    assert_eq!((code, v["id"].as_str()), (200, Some(id.as_str())));
    assert_eq!(h.get(&m).await, (404, Value::Null));
    assert_eq!(
        h.get(&format!("/controller/network/{id}/member")).await,
        (404, Value::Null)
    );
    let db = h.dir.path().join("controller.d/network");
    assert!(!db.join(format!("{id}.json")).exists() && !db.join(&id).exists());
    h.check("zero_ui_delete_then_repost");
}

#[tokio::test]
async fn golden_errors() {
    let mut h = Harness::new();
    let id = create(&mut h, "{}").await;
    let n = format!("/controller/network/{id}");
    let m = format!("{n}/member/0a33989140");
    let cases: &[(&str, &str, &str)] = &[
        (&n, r#"{"private":"yes"}"#, "private"),
        (&n, r#"{"mtu":"1400"}"#, "mtu"),
        (&n, r#"{"name":{"a":1}}"#, "name"),
        (&n, r#"{"v6AssignMode":{"zt":"maybe"}}"#, "v6AssignMode.zt"),
        (
            &n,
            r#"{"ipAssignmentPools":[{"ipRangeStart":"10.0.0.1","ipRangeEnd":"fd00::1"}]}"#,
            "ipAssignmentPools[0]",
        ),
        (
            &n,
            r#"{"routes":[{"target":"10.0.0.0/40"}]}"#,
            "routes[0].target",
        ),
        (
            &n,
            r#"{"rules":[{"type":"ACTION_ACCEPT"},{"type":"MATCH_VLAN_ID","vlanId":true}]}"#,
            "rules[1]",
        ),
        (&n, r#"{"capabilities":[{"id":"x"}]}"#, "capabilities[0].id"),
        (&n, r#"{"tags":[{"id":1,"default":-1}]}"#, "tags[0].default"),
        (&n, r#"{"dns":"example.com"}"#, "dns"),
        (&n, r#"{"authTokens":{"t":"soon"}}"#, "authTokens.t"),
        (&n, r#"{"remoteTraceTarget":12}"#, "remoteTraceTarget"),
        (
            &n,
            r#"{"rulesSource":"accept ;\n  bogus ;"}"#,
            "rulesSource",
        ),
        (&m, r#"{"ipAssignments":[1]}"#, "ipAssignments[0]"),
        (&m, r#"{"tags":[[1,"a"]]}"#, "tags[0]"),
        (&m, r#"{"capabilities":[-3]}"#, "capabilities[0]"),
        (
            &m,
            r#"{"authenticationExpiryTime":"never"}"#,
            "authenticationExpiryTime",
        ),
        (&m, r#"[]"#, "body"),
        (&m, "", "body"),
        (&m, "{not json", "body"),
    ];
    for (path, body, field) in cases {
        let (code, v) = h.post(path, body).await;
        assert_eq!(code, 400, "{body}: {v}");
        assert_eq!(v["error"], 400);
        let d = v["description"].as_str().unwrap();
        assert!(d.starts_with(&format!("{field}: ")), "{body}: {d}");
    }
    // the failed member posts created nothing; the failed network posts changed nothing
    assert_eq!(h.get(&format!("{n}/member")).await, (200, json!({})));
    assert_eq!(h.get(&n).await.1["revision"], 1);
    // 404 (empty body): malformed ids, unknown objects, member posts to a missing network
    for path in [
        "/controller/network/9cbc6fc09",
        "/controller/network/9cbc6fc098zzzzzz",
        "/controller/network/9cbc6fc098000001",
        "/controller/network/9cbc6fc098000001/member",
        "/unstable/controller/network/9cbc6fc098000001/member",
    ] {
        assert_eq!(h.get(path).await, (404, Value::Null), "{path}");
    }
    assert_eq!(
        h.get(&format!("{n}/member/0a3398914")).await,
        (404, Value::Null)
    );
    assert_eq!(
        h.get(&format!("{n}/member/0a3398914g")).await,
        (404, Value::Null)
    );
    assert_eq!(h.get(&m).await, (404, Value::Null));
    assert_eq!(
        h.post(
            "/controller/network/9cbc6fc098000001/member/0a33989140",
            "{}"
        )
        .await,
        (404, Value::Null)
    );
    assert_eq!(
        h.post("/controller/network/zzzzzzzzzz______", "{}").await,
        (404, Value::Null)
    );
    assert_eq!(
        h.call("DELETE", "/controller/network/9cbc6fc098000001", None)
            .await,
        (404, Value::Null)
    );
    h.check("errors");
}

/// What the API saved is what a restart loads. spec: controller.md §8.2
#[tokio::test]
async fn golden_state_survives_reload() {
    let mut h = Harness::new();
    let id = create(&mut h, FULL_UPDATE).await;
    let (_, m) = h
        .post(
            &format!("/controller/network/{id}/member/0a33989140"),
            r#"{"authorized":true}"#,
        )
        .await;
    let (_, n) = h.get(&format!("/controller/network/{id}")).await;
    let store = FileStore::open(&h.dir.path().join("controller.d")).unwrap();
    use weft_controller::Store as _;
    let nwid = weft_wire::NetworkId(u64::from_str_radix(&id, 16).unwrap());
    assert_eq!(store.network(nwid).unwrap().unwrap().to_json(), n);
    let addr = "0a33989140".parse().unwrap();
    assert_eq!(store.member(nwid, addr).unwrap().unwrap().to_json(), m);
}

/// A home with a 1.14 `controller.d/` and no database: the default SQLite database is created
/// and the records are imported once; a second open does not import again.
#[test]
fn controller_d_is_imported_into_sqlite_once() {
    let vectors = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors");
    assert!(
        vectors.is_dir(),
        "the reference vectors are needed: {}",
        vectors.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let home = crate::service::home::Home::open(dir.path()).unwrap();
    let src = vectors.join("capture/controller/controller.d/network");
    let dst = dir
        .path()
        .join("controller.d/network/9cbc6fc0984c4142/member");
    std::fs::create_dir_all(&dst).unwrap();
    std::fs::copy(
        src.join("9cbc6fc0984c4142.json"),
        dir.path()
            .join("controller.d/network/9cbc6fc0984c4142.json"),
    )
    .unwrap();
    for m in ["f6372234a7", "1b56912874"] {
        std::fs::copy(
            src.join(format!("9cbc6fc0984c4142/member/{m}.json")),
            dst.join(format!("{m}.json")),
        )
        .unwrap();
    }
    let ctl = Ctl::open(&home, identity(), None).unwrap();
    assert!(dir.path().join("controller.db").is_file());
    let nwid: weft_wire::NetworkId = "9cbc6fc0984c4142".parse().unwrap();
    assert_eq!(ctl.ctl.store().networks().unwrap(), vec![nwid]);
    assert_eq!(ctl.ctl.store().members(nwid).unwrap().len(), 2);
    drop(ctl);
    // the database exists now: nothing is imported twice (a changed file would not come back)
    std::fs::remove_file(dst.join("f6372234a7.json")).unwrap();
    let ctl = Ctl::open(&home, identity(), None).unwrap();
    assert_eq!(ctl.ctl.store().members(nwid).unwrap().len(), 2);
}
