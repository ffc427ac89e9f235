//! Reading `/controller` POST bodies into records: only the keys present are applied, unknown
//! keys are ignored, every writable field is type-checked (a wrong type is an error naming the
//! field, answered as HTTP 400) and normalized the way 1.14 stores it.
//! spec: controller.md §7.2–§7.5, §10

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{Map, Value};
use weft_controller::store::{
    AuthTokens, CapabilityRecord, DnsRecord, IpPool, RouteRecord, TagRecord, V4AssignMode,
    V6AssignMode,
};
use weft_controller::{MemberRecord, NetworkRecord};
use weft_wire::Address;
use weft_wire::rules::json::{rule_from_json, rule_to_json};

/// A body field that cannot be applied: `<field path>: <problem>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub(crate) struct FieldError {
    /// Where, e.g. `ipAssignments[0]` or `routes[1].via`.
    pub(crate) field: String,
    /// What is wrong.
    pub(crate) problem: String,
}

type R<T> = Result<T, FieldError>;

fn bad<T>(field: &str, problem: impl Into<String>) -> R<T> {
    Err(FieldError {
        field: field.to_string(),
        problem: problem.into(),
    })
}

const NULL: &Value = &Value::Null;

/// A boolean: JSON `true`/`false` or the strings `"true"`/`"false"` (ztncui), nothing else.
/// spec: controller.md §7.5
fn boolean(f: &str, v: &Value) -> R<bool> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s == "true" => Ok(true),
        Value::String(s) if s == "false" => Ok(false),
        _ => bad(f, "expected a boolean (true, false, \"true\" or \"false\")"),
    }
}

/// An optional boolean member of an object (absent or null ⇒ false).
fn opt_boolean(f: &str, o: &Map<String, Value>, key: &str) -> R<bool> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(v) => boolean(&format!("{f}.{key}"), v),
    }
}

/// Any JSON scalar as a string (1.14 converts numbers and booleans); null ⇒ empty.
fn scalar_string(f: &str, v: &Value) -> R<String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null => Ok(String::new()),
        _ => bad(f, "expected a string"),
    }
}

fn uint(f: &str, v: &Value, max: u64) -> R<u64> {
    match v.as_u64() {
        Some(n) if n <= max => Ok(n),
        _ => bad(f, format!("expected an integer from 0 to {max}")),
    }
}

fn u32_field(f: &str, v: &Value) -> R<u32> {
    uint(f, v, u64::from(u32::MAX)).map(|n| n as u32)
}

fn int(f: &str, v: &Value) -> R<i64> {
    v.as_i64().map_or_else(|| bad(f, "expected an integer"), Ok)
}

fn array<'a>(f: &str, v: &'a Value) -> R<&'a [Value]> {
    v.as_array()
        .map(Vec::as_slice)
        .map_or_else(|| bad(f, "expected an array"), Ok)
}

fn object<'a>(f: &str, v: &'a Value, shape: &str) -> R<&'a Map<String, Value>> {
    v.as_object()
        .map_or_else(|| bad(f, format!("expected an object {shape}")), Ok)
}

/// A plain IP address string.
fn ip(f: &str, v: &Value) -> R<IpAddr> {
    match v.as_str().map(str::parse::<IpAddr>) {
        Some(Ok(ip)) => Ok(ip),
        _ => bad(f, "expected an IP address string"),
    }
}

/// An IP address string, optionally with `/bits` (dropped: assignments are plain IPs).
fn ip_maybe_bits(f: &str, v: &Value) -> R<IpAddr> {
    let s = v.as_str().unwrap_or("");
    match (s.parse::<IpAddr>(), s.parse::<IpNet>()) {
        (Ok(ip), _) => Ok(ip),
        (_, Ok(net)) => Ok(net.addr()),
        _ => bad(f, "expected an IP address string"),
    }
}

/// `remoteTraceTarget`: a 10-hex-digit address, or null; other string lengths read as null
/// (1.14). spec: controller.md §7.2
fn trace_target(f: &str, v: &Value) -> R<Option<Address>> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if s.len() == 10 => match s.to_ascii_lowercase().parse() {
            Ok(a) => Ok(Some(a)),
            Err(_) => bad(f, "expected a 10-hex-digit address or null"),
        },
        Value::String(_) => Ok(None),
        _ => bad(f, "expected a 10-hex-digit address or null"),
    }
}

/// Rules: each parsed and re-rendered; INTEGER_RANGE, ACTION_PRIORITY and unknown types are
/// dropped; actions lose `not`/`or`. spec: controller.md §7.2, vl2.md §15.7
fn rules(f: &str, v: &Value) -> R<Vec<Value>> {
    let mut out = Vec::new();
    for (i, r) in array(f, v)?.iter().enumerate() {
        match rule_from_json(r) {
            Ok(Some(rule)) => out.push(rule_to_json(&rule)),
            Ok(None) => {}
            Err(e) => return bad(&format!("{f}[{i}]"), e.to_string()),
        }
    }
    Ok(out)
}

fn v4_mode(f: &str, v: &Value) -> R<V4AssignMode> {
    match v {
        // string form: "zt" ⇒ true, anything else ⇒ false. spec: §7.2
        Value::String(s) => Ok(V4AssignMode { zt: s == "zt" }),
        Value::Object(o) => Ok(V4AssignMode {
            zt: opt_boolean(f, o, "zt")?,
        }),
        _ => bad(f, "expected an object {\"zt\": bool} or a string"),
    }
}

fn v6_mode(f: &str, v: &Value) -> R<V6AssignMode> {
    match v {
        // string form: a comma list of rfc4193, zt, 6plane. spec: §7.2
        Value::String(s) => {
            let has = |k: &str| s.split(',').any(|t| t.trim() == k);
            Ok(V6AssignMode {
                sixplane: has("6plane"),
                rfc4193: has("rfc4193"),
                zt: has("zt"),
            })
        }
        // the object replaces the whole mode; missing keys are false. spec: §7.2
        Value::Object(o) => Ok(V6AssignMode {
            sixplane: opt_boolean(f, o, "6plane")?,
            rfc4193: opt_boolean(f, o, "rfc4193")?,
            zt: opt_boolean(f, o, "zt")?,
        }),
        _ => bad(
            f,
            "expected an object {\"6plane\", \"rfc4193\", \"zt\": bool} or a string",
        ),
    }
}

fn pools(f: &str, v: &Value) -> R<Vec<IpPool>> {
    let mut out = Vec::new();
    for (i, p) in array(f, v)?.iter().enumerate() {
        let f = format!("{f}[{i}]");
        let o = object(&f, p, "{ipRangeStart, ipRangeEnd}")?;
        let start = ip(
            &format!("{f}.ipRangeStart"),
            o.get("ipRangeStart").unwrap_or(NULL),
        )?;
        let end = ip(
            &format!("{f}.ipRangeEnd"),
            o.get("ipRangeEnd").unwrap_or(NULL),
        )?;
        if start.is_ipv4() != end.is_ipv4() {
            return bad(&f, "ipRangeStart and ipRangeEnd must be of the same family");
        }
        if start > end {
            return bad(&f, "ipRangeStart must not be greater than ipRangeEnd");
        }
        out.push(IpPool { end, start });
    }
    Ok(out)
}

fn routes(f: &str, v: &Value) -> R<Vec<RouteRecord>> {
    let mut out = Vec::new();
    for (i, r) in array(f, v)?.iter().enumerate() {
        let f = format!("{f}[{i}]");
        let o = object(&f, r, "{target, via}")?;
        let target = match o
            .get("target")
            .and_then(Value::as_str)
            .map(str::parse::<IpNet>)
        {
            Some(Ok(t)) => t,
            _ => return bad(&format!("{f}.target"), "expected an \"ip/bits\" string"),
        };
        let via = match o.get("via") {
            None | Some(Value::Null) => None,
            Some(v) => {
                let via = ip(&format!("{f}.via"), v)?;
                // a gateway of the other family is stored as null. spec: §7.2
                (via.is_ipv4() == target.addr().is_ipv4()).then_some(via)
            }
        };
        out.push(RouteRecord { target, via });
    }
    Ok(out)
}

fn capabilities(f: &str, v: &Value) -> R<Vec<CapabilityRecord>> {
    let mut by_id = BTreeMap::new();
    for (i, c) in array(f, v)?.iter().enumerate() {
        let f = format!("{f}[{i}]");
        let o = object(&f, c, "{id, default, rules}")?;
        let id = u32_field(&format!("{f}.id"), o.get("id").unwrap_or(NULL))?;
        let rules = match o.get("rules") {
            None | Some(Value::Null) => Vec::new(),
            Some(r) => rules(&format!("{f}.rules"), r)?,
        };
        let default = opt_boolean(&f, o, "default")?;
        by_id.insert(id, CapabilityRecord { default, id, rules });
    }
    Ok(by_id.into_values().collect())
}

fn network_tags(f: &str, v: &Value) -> R<Vec<TagRecord>> {
    let mut by_id = BTreeMap::new();
    for (i, t) in array(f, v)?.iter().enumerate() {
        let f = format!("{f}[{i}]");
        let o = object(&f, t, "{id, default}")?;
        let id = u32_field(&format!("{f}.id"), o.get("id").unwrap_or(NULL))?;
        let default = match o.get("default") {
            None | Some(Value::Null) => None,
            Some(d) => Some(u32_field(&format!("{f}.default"), d)?),
        };
        by_id.insert(id, TagRecord { default, id });
    }
    Ok(by_id.into_values().collect())
}

fn dns(f: &str, v: &Value) -> R<DnsRecord> {
    match v {
        // the unset forms (the stored default `[]`, so a GET-modify-POST round trip works)
        Value::Null => Ok(DnsRecord::Unset),
        Value::Array(a) if a.is_empty() => Ok(DnsRecord::Unset),
        Value::Object(o) => {
            let domain = match o.get("domain") {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(_) => return bad(&format!("{f}.domain"), "expected a string"),
            };
            let mut servers = Vec::new();
            if let Some(s) = o.get("servers").filter(|s| !s.is_null()) {
                for (i, x) in array(&format!("{f}.servers"), s)?.iter().enumerate() {
                    match x.as_str() {
                        Some(x) => servers.push(x.to_string()),
                        None => return bad(&format!("{f}.servers[{i}]"), "expected a string"),
                    }
                }
            }
            Ok(DnsRecord::Set { domain, servers })
        }
        _ => bad(f, "expected an object {domain, servers}"),
    }
}

fn auth_tokens(f: &str, v: &Value) -> R<AuthTokens> {
    match v {
        // the unset forms, including the stored default `[null]`
        Value::Null => Ok(AuthTokens(None)),
        Value::Array(a) if a.iter().all(Value::is_null) => Ok(AuthTokens(None)),
        Value::Object(o) => {
            let mut m = BTreeMap::new();
            for (k, x) in o {
                let Some(exp) = x.as_u64() else {
                    return bad(
                        &format!("{f}.{k}"),
                        "expected a non-negative integer (expiry in ms, 0 = never)",
                    );
                };
                m.insert(k.clone(), exp);
            }
            Ok(AuthTokens(Some(m)))
        }
        _ => bad(f, "expected an object {token: expiry ms}"),
    }
}

/// `rulesSource`: compiled server-side (weft; 1.14 ignores it): a non-empty source replaces
/// `rules`, `capabilities` and `tags` with what it compiles to and is stored; an error is
/// reported with its line and column. An empty string clears the stored source only.
/// spec: vl2.md §15.8, controller.md §7.2
fn rules_source(n: &mut NetworkRecord, f: &str, v: &Value) -> R<()> {
    let src = match v {
        Value::String(s) => s,
        Value::Null => "",
        _ => return bad(f, "expected a string"),
    };
    n.rules_source = src.to_string();
    if src.trim().is_empty() {
        return Ok(());
    }
    let c = weft_controller::rulesc::compile(src).map_or_else(|e| bad(f, e.to_string()), Ok)?;
    n.rules = rules(f, &Value::Array(c.rules))?;
    n.capabilities = capabilities(f, &Value::Array(c.capabilities))?;
    n.tags = network_tags(f, &Value::Array(c.tags))?;
    Ok(())
}

/// Applies a network POST body to `n` (the stored record, or a new one). spec: controller.md
/// §7.2
pub(crate) fn apply_network(n: &mut NetworkRecord, body: &Map<String, Value>) -> R<()> {
    // quirk: reset on every POST that does not include it. spec: controller.md §7.2, §10
    n.remote_trace_level = 0;
    for (k, v) in body {
        let f = k.as_str();
        match f {
            "name" => n.name = scalar_string(f, v)?,
            "private" => n.private = boolean(f, v)?,
            "enableBroadcast" => n.enable_broadcast = boolean(f, v)?,
            "multicastLimit" => n.multicast_limit = u32_field(f, v)?,
            // clamped to [1280, 10000]. spec: §7.2
            "mtu" => n.mtu = int(f, v)?.clamp(1280, 10_000) as u32,
            "v4AssignMode" => n.v4_assign_mode = v4_mode(f, v)?,
            "v6AssignMode" => n.v6_assign_mode = v6_mode(f, v)?,
            "ipAssignmentPools" => n.ip_assignment_pools = pools(f, v)?,
            "routes" => n.routes = routes(f, v)?,
            "rules" => n.rules = rules(f, v)?,
            "capabilities" => n.capabilities = capabilities(f, v)?,
            "tags" => n.tags = network_tags(f, v)?,
            "dns" => n.dns = dns(f, v)?,
            "authTokens" => n.auth_tokens = auth_tokens(f, v)?,
            "remoteTraceTarget" => n.remote_trace_target = trace_target(f, v)?,
            "remoteTraceLevel" => n.remote_trace_level = u32_field(f, v)?,
            // compiled after the other keys, so it wins over rules/capabilities/tags
            "rulesSource" => {}
            // read-only and unknown keys are ignored (not stored). spec: §7.2
            _ => {}
        }
    }
    if let Some(v) = body.get("rulesSource") {
        rules_source(n, "rulesSource", v)?;
    }
    Ok(())
}

/// A member tag `[id, value]`, both masked to 32 bits. spec: controller.md §7.3
fn member_tag(f: &str, v: &Value) -> R<(u32, u32)> {
    let mask = |x: &Value| {
        x.as_u64()
            .or_else(|| x.as_i64().map(|i| i as u64))
            .map(|n| (n & 0xffff_ffff) as u32)
    };
    match v.as_array().map(Vec::as_slice) {
        Some([id, value]) => match (mask(id), mask(value)) {
            (Some(id), Some(value)) => Ok((id, value)),
            _ => bad(f, "expected [id, value] with integers"),
        },
        _ => bad(f, "expected [id, value]"),
    }
}

/// Applies a member POST body to `m` (the stored record, or a new one); `now` stamps
/// authorization changes. spec: controller.md §7.3, §7.4
pub(crate) fn apply_member(m: &mut MemberRecord, body: &Map<String, Value>, now: i64) -> R<()> {
    // quirk: reset whenever the record is re-initialized unless supplied. spec: §7.3, §10
    m.remote_trace_level = 0;
    for (k, v) in body {
        let f = k.as_str();
        match f {
            "authorized" => m.set_authorized_by_api(boolean(f, v)?, now),
            "activeBridge" => m.active_bridge = boolean(f, v)?,
            "noAutoAssignIps" => m.no_auto_assign_ips = boolean(f, v)?,
            "ipAssignments" => {
                let mut ips = Vec::new();
                for (i, x) in array(f, v)?.iter().enumerate() {
                    ips.push(ip_maybe_bits(&format!("{f}[{i}]"), x)?);
                }
                m.ip_assignments = ips;
            }
            "tags" => {
                // dedupe by id (last wins), sorted by id. spec: §7.3
                let mut by_id = BTreeMap::new();
                for (i, t) in array(f, v)?.iter().enumerate() {
                    let (id, value) = member_tag(&format!("{f}[{i}]"), t)?;
                    by_id.insert(id, value);
                }
                m.tags = by_id.into_iter().collect();
            }
            "capabilities" => {
                let mut ids = BTreeSet::new();
                for (i, c) in array(f, v)?.iter().enumerate() {
                    ids.insert(u32_field(&format!("{f}[{i}]"), c)?);
                }
                m.capabilities = ids.into_iter().collect();
            }
            "name" => {
                m.name = match v {
                    Value::Null => None,
                    v => Some(scalar_string(f, v)?),
                }
            }
            "authenticationExpiryTime" => m.authentication_expiry_time = int(f, v)?,
            "remoteTraceTarget" => m.remote_trace_target = trace_target(f, v)?,
            "remoteTraceLevel" => m.remote_trace_level = u32_field(f, v)?,
            // read-only, computed (authenticationURL) and unknown keys are ignored. spec: §7.3
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use weft_wire::NetworkId;

    fn net(body: Value) -> R<NetworkRecord> {
        let mut n = NetworkRecord::new(NetworkId(0x9cbc6fc098000001), 1);
        apply_network(&mut n, body.as_object().unwrap()).map(|()| n)
    }

    fn member(body: Value) -> R<MemberRecord> {
        let mut m = MemberRecord::new(
            NetworkId(0x9cbc6fc098000001),
            "0a33989140".parse().unwrap(),
            1,
        );
        apply_member(&mut m, body.as_object().unwrap(), 7).map(|()| m)
    }

    fn err_of<T: std::fmt::Debug>(r: R<T>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn booleans_take_true_false_and_their_strings_only() {
        assert!(!net(json!({"private": "false"})).unwrap().private);
        assert!(net(json!({"private": true})).unwrap().private);
        assert!(err_of(net(json!({"private": "yes"}))).starts_with("private: expected a boolean"));
        assert!(err_of(net(json!({"enableBroadcast": 1}))).starts_with("enableBroadcast:"));
        let m = member(json!({"authorized": "true", "activeBridge": "true"})).unwrap();
        assert!(m.authorized && m.active_bridge);
        assert_eq!(m.last_authorized_time, 7);
        assert!(err_of(member(json!({"noAutoAssignIps": null}))).starts_with("noAutoAssignIps:"));
    }

    #[test]
    fn scalars_modes_and_quirks() {
        let n = net(json!({"name": 12, "mtu": 100, "v4AssignMode": "zt",
            "v6AssignMode": "rfc4193, 6plane", "remoteTraceTarget": "short"}))
        .unwrap();
        assert_eq!(n.name, "12");
        assert_eq!(n.mtu, 1280);
        assert!(n.v4_assign_mode.zt);
        assert!(n.v6_assign_mode.rfc4193 && n.v6_assign_mode.sixplane && !n.v6_assign_mode.zt);
        assert_eq!(net(json!({"mtu": 99999})).unwrap().mtu, 10_000);
        // the object form replaces the whole v6 mode
        let mut n = net(json!({"v6AssignMode": {"zt": true, "rfc4193": true}})).unwrap();
        apply_network(
            &mut n,
            json!({"v6AssignMode": {"6plane": true}})
                .as_object()
                .unwrap(),
        )
        .unwrap();
        assert!(n.v6_assign_mode.sixplane && !n.v6_assign_mode.zt && !n.v6_assign_mode.rfc4193);
        // remoteTraceLevel resets when absent
        n.remote_trace_level = 3;
        apply_network(&mut n, &Map::new()).unwrap();
        assert_eq!(n.remote_trace_level, 0);
        assert!(err_of(net(json!({"name": [1]}))).starts_with("name: expected a string"));
        assert!(err_of(net(json!({"multicastLimit": -1}))).starts_with("multicastLimit:"));
        assert!(err_of(net(json!({"v4AssignMode": 1}))).starts_with("v4AssignMode:"));
    }

    #[test]
    fn pools_routes_normalized_and_checked() {
        let n = net(json!({
            "ipAssignmentPools": [{"ipRangeStart": "fd12:3456:789a:0:0::1", "ipRangeEnd": "fd12:3456:789a::ffff"}],
            "routes": [{"target": "10.1.0.0/16", "via": "fd00::1"}, {"target": "10.2.0.0/16", "via": "10.1.0.1"}]
        }))
        .unwrap();
        let j = n.to_json();
        assert_eq!(
            j["ipAssignmentPools"],
            json!([{"ipRangeEnd":"fd12:3456:789a::ffff","ipRangeStart":"fd12:3456:789a::1"}])
        );
        assert_eq!(
            j["routes"],
            json!([{"target":"10.1.0.0/16","via":null},{"target":"10.2.0.0/16","via":"10.1.0.1"}])
        );
        assert_eq!(
            err_of(net(
                json!({"ipAssignmentPools": [{"ipRangeStart": "10.0.0.1", "ipRangeEnd": "fd00::1"}]})
            )),
            "ipAssignmentPools[0]: ipRangeStart and ipRangeEnd must be of the same family"
        );
        assert_eq!(
            err_of(net(
                json!({"ipAssignmentPools": [{"ipRangeStart": 5, "ipRangeEnd": "10.0.0.1"}]})
            )),
            "ipAssignmentPools[0].ipRangeStart: expected an IP address string"
        );
        assert_eq!(
            err_of(net(json!({"routes": [{"target": "10.0.0.0/33"}]}))),
            "routes[0].target: expected an \"ip/bits\" string"
        );
        assert_eq!(
            err_of(net(
                json!({"routes": [{"target": "10.0.0.0/8", "via": "x"}]})
            )),
            "routes[0].via: expected an IP address string"
        );
    }

    #[test]
    fn rules_caps_tags_dns_tokens() {
        let n = net(json!({
            "rules": [{"type": "ACTION_DROP", "not": true}, {"type": "INTEGER_RANGE"}, {"type": "ACTION_ACCEPT"}],
            "capabilities": [{"id": 9, "rules": []}, {"id": 2, "default": "true"}, {"id": 9, "default": true}],
            "tags": [{"id": 5, "default": 1}, {"id": 3}],
            "dns": {"domain": "d", "servers": ["1.2.3.4"]},
            "authTokens": {"abc": 0}
        }))
        .unwrap();
        assert_eq!(
            n.rules,
            vec![
                json!({"type":"ACTION_DROP"}),
                json!({"type":"ACTION_ACCEPT"})
            ]
        );
        let caps: Vec<(u32, bool)> = n.capabilities.iter().map(|c| (c.id, c.default)).collect();
        assert_eq!(caps, [(2, true), (9, true)]);
        assert_eq!(
            n.to_json()["tags"],
            json!([{"default":null,"id":3},{"default":1,"id":5}])
        );
        assert_eq!(
            n.to_json()["dns"],
            json!({"domain":"d","servers":["1.2.3.4"]})
        );
        assert_eq!(n.to_json()["authTokens"], json!({"abc":0}));
        // the stored defaults posted back read as unset
        let n = net(json!({"dns": [], "authTokens": [null]})).unwrap();
        assert_eq!(
            (
                n.to_json()["dns"].clone(),
                n.to_json()["authTokens"].clone()
            ),
            (json!([]), json!([null]))
        );
        assert!(
            err_of(net(
                json!({"rules": [{"type": "MATCH_ETHERTYPE", "etherType": "x"}]})
            ))
            .starts_with("rules[0]: rule field \"etherType\"")
        );
        assert!(err_of(net(json!({"rules": [7]}))).starts_with("rules[0]:"));
        assert!(
            err_of(net(json!({"capabilities": [{"id": -1}]}))).starts_with("capabilities[0].id:")
        );
        assert!(
            err_of(net(json!({"tags": [{"id": 1, "default": "x"}]})))
                .starts_with("tags[0].default:")
        );
        assert!(err_of(net(json!({"dns": {"servers": [1]}}))).starts_with("dns.servers[0]:"));
        assert!(err_of(net(json!({"authTokens": {"t": -5}}))).starts_with("authTokens.t:"));
        assert!(err_of(net(json!({"rulesSource": 5}))).starts_with("rulesSource:"));
        let n = net(json!({"rulesSource": "tag t id 5 default 1 ;\ndrop not ethertype ipv4 ;\naccept ;", "rules": []}))
            .unwrap();
        assert_eq!(n.rules.len(), 3, "{:?}", n.rules);
        assert_eq!(n.rules[0]["etherType"], 2048);
        assert_eq!(n.to_json()["tags"], json!([{"default":1,"id":5}]));
        assert!(n.rules_source.starts_with("tag t"));
        let e = err_of(net(json!({"rulesSource": "accept ;\n  bogus ;"})));
        assert!(e.starts_with("rulesSource: line 2, column 3"), "{e}");
    }

    #[test]
    fn member_fields() {
        let m = member(json!({
            "ipAssignments": ["10.0.0.1", "fd00:0::2/64"],
            "tags": [[5, 1], [2, -1], [5, 4294967297u64]],
            "capabilities": [3, 1, 3],
            "name": "n", "authenticationURL": "x", "identity": "ignored", "bogus": 1
        }))
        .unwrap();
        let j = m.to_json();
        assert_eq!(j["ipAssignments"], json!(["10.0.0.1", "fd00::2"]));
        assert_eq!(j["tags"], json!([[2, 4294967295u32], [5, 1]]));
        assert_eq!(j["capabilities"], json!([1, 3]));
        assert_eq!(j["name"], "n");
        assert!(j.get("identity").is_none() && j.get("authenticationURL").is_none());
        assert_eq!(
            err_of(member(json!({"ipAssignments": [1]}))),
            "ipAssignments[0]: expected an IP address string"
        );
        assert!(err_of(member(json!({"tags": [[1]]}))).starts_with("tags[0]:"));
        assert!(err_of(member(json!({"capabilities": ["a"]}))).starts_with("capabilities[0]:"));
        let m = member(json!({"authorized": false})).unwrap();
        assert_eq!(
            (m.last_deauthorized_time, m.last_authorized_time),
            (0, 0),
            "no transition"
        );
    }
}
