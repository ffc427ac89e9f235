//! The controller's JSON form of rules (feature `json`). spec: vl2.md §15.7, controller.md §7.2
//!
//! [`rule_from_json`] reads what the 1.14 controller accepts (it returns `None` for the rules
//! that controller silently drops: INTEGER_RANGE, ACTION_PRIORITY and unknown types), and
//! [`rule_to_json`] renders a rule exactly as that controller re-renders it: actions without
//! `not`/`or`, keys in sorted order (`serde_json::Map` is a sorted map unless its
//! `preserve_order` feature is enabled, which this workspace does not do).

use std::net::IpAddr;

use serde_json::{Map, Value, json};

use super::{Forward, Rule, RuleKind, TagOp};
use crate::address::Address;
use crate::verbs::vl2::Mac;

/// Errors reading one rule object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RuleJsonError {
    /// The rule is not a JSON object.
    #[error("rule is not a JSON object")]
    NotAnObject,
    /// A field is missing, of the wrong JSON type, or out of range.
    #[error("rule field {field:?}: {problem}")]
    Field {
        /// The field name.
        field: &'static str,
        /// What is wrong with it.
        problem: &'static str,
    },
}

fn bad(field: &'static str, problem: &'static str) -> RuleJsonError {
    RuleJsonError::Field { field, problem }
}

/// A field that must be an unsigned integer (a JSON number or a decimal string) ≤ `max`;
/// absent means 0, as in the reference controller (e.g. `flags` of a compiled TEE).
fn uint(o: &Map<String, Value>, field: &'static str, max: u64) -> Result<u64, RuleJsonError> {
    let v = match o.get(field) {
        None | Some(Value::Null) => 0,
        Some(Value::Number(n)) => n.as_u64().ok_or(bad(field, "not a non-negative integer"))?,
        Some(Value::String(s)) => s
            .parse::<u64>()
            .map_err(|_| bad(field, "not a decimal integer"))?,
        Some(_) => return Err(bad(field, "not a number")),
    };
    if v > max {
        return Err(bad(field, "out of range"));
    }
    Ok(v)
}

fn flag(o: &Map<String, Value>, field: &'static str) -> Result<bool, RuleJsonError> {
    match o.get(field) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(bad(field, "not a boolean")),
    }
}

fn string<'a>(o: &'a Map<String, Value>, field: &'static str) -> Result<&'a str, RuleJsonError> {
    match o.get(field) {
        Some(Value::String(s)) => Ok(s),
        None => Err(bad(field, "missing")),
        Some(_) => Err(bad(field, "not a string")),
    }
}

fn address(o: &Map<String, Value>, field: &'static str) -> Result<Address, RuleJsonError> {
    string(o, field)?
        .parse()
        .map_err(|_| bad(field, "not a 10-digit hex address"))
}

fn forward(o: &Map<String, Value>, with_length: bool) -> Result<Forward, RuleJsonError> {
    Ok(Forward {
        address: address(o, "address")?,
        flags: uint(o, "flags", u64::from(u32::MAX))? as u32,
        length: if with_length {
            uint(o, "length", u64::from(u16::MAX))? as u16
        } else {
            0
        },
    })
}

fn mac(o: &Map<String, Value>) -> Result<Mac, RuleJsonError> {
    let s = string(o, "mac")?;
    let err = || bad("mac", "not a MAC address (xx:xx:xx:xx:xx:xx)");
    let mut m = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut m {
        let p = parts.next().ok_or_else(err)?;
        if p.len() != 2 {
            return Err(err());
        }
        *b = u8::from_str_radix(p, 16).map_err(|_| err())?;
    }
    if parts.next().is_some() {
        return Err(err());
    }
    Ok(Mac(m))
}

/// `addr/bits` of the family the rule type needs.
fn ip(o: &Map<String, Value>, v6: bool) -> Result<(IpAddr, u8), RuleJsonError> {
    let s = string(o, "ip")?;
    let (addr, bits) = s
        .split_once('/')
        .ok_or(bad("ip", "not in the form address/bits"))?;
    let addr: IpAddr = addr.parse().map_err(|_| bad("ip", "not an IP address"))?;
    let bits: u8 = bits.parse().map_err(|_| bad("ip", "bad prefix length"))?;
    let max = if v6 { 128 } else { 32 };
    if addr.is_ipv6() != v6 {
        return Err(bad("ip", "wrong address family for the rule type"));
    }
    if bits > max {
        return Err(bad("ip", "prefix length too long"));
    }
    Ok((addr, bits))
}

fn characteristics_mask(o: &Map<String, Value>) -> Result<u64, RuleJsonError> {
    match o.get("mask") {
        Some(Value::String(s)) => {
            if s.is_empty() || s.len() > 16 {
                return Err(bad("mask", "not 1..16 hex digits"));
            }
            u64::from_str_radix(s, 16).map_err(|_| bad("mask", "not hex"))
        }
        Some(Value::Number(n)) => n.as_u64().ok_or(bad("mask", "not a non-negative integer")),
        None => Err(bad("mask", "missing")),
        Some(_) => Err(bad("mask", "not a hex string or number")),
    }
}

fn tag_op(t: &str) -> Option<TagOp> {
    Some(match t {
        "MATCH_TAGS_DIFFERENCE" => TagOp::Difference,
        "MATCH_TAGS_BITWISE_AND" => TagOp::BitwiseAnd,
        "MATCH_TAGS_BITWISE_OR" => TagOp::BitwiseOr,
        "MATCH_TAGS_BITWISE_XOR" => TagOp::BitwiseXor,
        "MATCH_TAGS_EQUAL" => TagOp::Equal,
        "MATCH_TAG_SENDER" => TagOp::Sender,
        "MATCH_TAG_RECEIVER" => TagOp::Receiver,
        _ => return None,
    })
}

fn tag_name(op: TagOp) -> &'static str {
    match op {
        TagOp::Difference => "MATCH_TAGS_DIFFERENCE",
        TagOp::BitwiseAnd => "MATCH_TAGS_BITWISE_AND",
        TagOp::BitwiseOr => "MATCH_TAGS_BITWISE_OR",
        TagOp::BitwiseXor => "MATCH_TAGS_BITWISE_XOR",
        TagOp::Equal => "MATCH_TAGS_EQUAL",
        TagOp::Sender => "MATCH_TAG_SENDER",
        TagOp::Receiver => "MATCH_TAG_RECEIVER",
    }
}

/// Reads one rule object. `Ok(None)`: a rule the 1.14 controller drops (INTEGER_RANGE,
/// ACTION_PRIORITY, unknown types). Absent numeric fields read as 0 (the reference does the
/// same); absent address, MAC, IP and mask fields are errors. spec: vl2.md §15.7
pub fn rule_from_json(v: &Value) -> Result<Option<Rule>, RuleJsonError> {
    let o = v.as_object().ok_or(RuleJsonError::NotAnObject)?;
    let t = string(o, "type")?;
    let u8f = |f| uint(o, f, 0xff).map(|v| v as u8);
    let u16f = |f| uint(o, f, 0xffff).map(|v| v as u16);
    let u32f = |f| uint(o, f, u64::from(u32::MAX)).map(|v| v as u32);
    use RuleKind::*;
    let kind = match t {
        "ACTION_DROP" => Drop,
        "ACTION_ACCEPT" => Accept,
        "ACTION_BREAK" => Break,
        "ACTION_TEE" => Tee(forward(o, true)?),
        "ACTION_WATCH" => Watch(forward(o, true)?),
        "ACTION_REDIRECT" => Redirect(forward(o, false)?),
        "MATCH_SOURCE_ZEROTIER_ADDRESS" => SourceZtAddress(address(o, "zt")?),
        "MATCH_DEST_ZEROTIER_ADDRESS" => DestZtAddress(address(o, "zt")?),
        "MATCH_VLAN_ID" => VlanId(u16f("vlanId")?),
        "MATCH_VLAN_PCP" => VlanPcp(u8f("vlanPcp")?),
        "MATCH_VLAN_DEI" => VlanDei(u8f("vlanDei")?),
        "MATCH_MAC_SOURCE" => MacSource(mac(o)?),
        "MATCH_MAC_DEST" => MacDest(mac(o)?),
        "MATCH_IPV4_SOURCE" | "MATCH_IPV4_DEST" => {
            let (IpAddr::V4(ip), bits) = ip(o, false)? else {
                return Err(bad("ip", "wrong address family for the rule type"));
            };
            if t == "MATCH_IPV4_SOURCE" {
                Ipv4Source { ip, bits }
            } else {
                Ipv4Dest { ip, bits }
            }
        }
        "MATCH_IPV6_SOURCE" | "MATCH_IPV6_DEST" => {
            let (IpAddr::V6(ip), bits) = ip(o, true)? else {
                return Err(bad("ip", "wrong address family for the rule type"));
            };
            if t == "MATCH_IPV6_SOURCE" {
                Ipv6Source { ip, bits }
            } else {
                Ipv6Dest { ip, bits }
            }
        }
        "MATCH_IP_TOS" => IpTos {
            mask: u8f("mask")?,
            start: u8f("start")?,
            end: u8f("end")?,
        },
        "MATCH_IP_PROTOCOL" => IpProtocol(u8f("ipProtocol")?),
        "MATCH_ETHERTYPE" => Ethertype(u16f("etherType")?),
        "MATCH_ICMP" => {
            let code = o.get("icmpCode").filter(|c| !c.is_null());
            Icmp {
                icmp_type: u8f("icmpType")?,
                code: if code.is_some() { u8f("icmpCode")? } else { 0 },
                match_code: code.is_some(),
            }
        }
        "MATCH_IP_SOURCE_PORT_RANGE" => SourcePortRange {
            start: u16f("start")?,
            end: u16f("end")?,
        },
        "MATCH_IP_DEST_PORT_RANGE" => DestPortRange {
            start: u16f("start")?,
            end: u16f("end")?,
        },
        "MATCH_FRAME_SIZE_RANGE" => FrameSizeRange {
            start: u16f("start")?,
            end: u16f("end")?,
        },
        "MATCH_CHARACTERISTICS" => Characteristics(characteristics_mask(o)?),
        "MATCH_RANDOM" => Random(u32f("probability")?),
        other => match tag_op(other) {
            Some(op) => Tag {
                op,
                id: u32f("id")?,
                value: u32f("value")?,
            },
            // INTEGER_RANGE, ACTION_PRIORITY and anything unknown: dropped by 1.14
            None => return Ok(None),
        },
    };
    let action = matches!(
        kind,
        Drop | Accept | Break | Tee(_) | Watch(_) | Redirect(_)
    );
    let (not, or) = if action {
        (false, false)
    } else {
        (flag(o, "not")?, flag(o, "or")?)
    };
    Ok(Some(Rule { kind, not, or }))
}

/// Renders one rule as the 1.14 controller does: actions carry only their own fields, matches
/// carry `not` and `or`; TEE/WATCH render `address`, `flags`, `length`, REDIRECT `address`,
/// `flags`; ICMP renders `icmpCode: null` when the code is not matched; the characteristics
/// mask is 16 hex digits. Rules the controller never stores (PRIORITY, INTEGER_RANGE, reserved
/// and unassigned ids) get a rendering of our own: the spec's field names where it lists them,
/// otherwise `type` `"ACTION_RESERVED"` / `"MATCH_UNASSIGNED"` with the rule `id`.
pub fn rule_to_json(rule: &Rule) -> Value {
    use RuleKind::*;
    let fwd = |t: &str, f: &Forward, with_length: bool| {
        let mut v = json!({"type": t, "address": f.address.to_string(), "flags": f.flags});
        if with_length {
            v["length"] = json!(f.length);
        }
        v
    };
    let (t, mut v): (&str, Value) = match &rule.kind {
        Drop => return json!({"type": "ACTION_DROP"}),
        Accept => return json!({"type": "ACTION_ACCEPT"}),
        Break => return json!({"type": "ACTION_BREAK"}),
        Priority => return json!({"type": "ACTION_PRIORITY"}),
        Tee(f) => return fwd("ACTION_TEE", f, true),
        Watch(f) => return fwd("ACTION_WATCH", f, true),
        Redirect(f) => return fwd("ACTION_REDIRECT", f, false),
        Other { id, .. } if *id & 0x3f <= 15 => {
            return json!({"type": "ACTION_RESERVED", "id": id & 0x3f});
        }
        SourceZtAddress(a) => (
            "MATCH_SOURCE_ZEROTIER_ADDRESS",
            json!({"zt": a.to_string()}),
        ),
        DestZtAddress(a) => ("MATCH_DEST_ZEROTIER_ADDRESS", json!({"zt": a.to_string()})),
        VlanId(x) => ("MATCH_VLAN_ID", json!({"vlanId": x})),
        VlanPcp(x) => ("MATCH_VLAN_PCP", json!({"vlanPcp": x})),
        VlanDei(x) => ("MATCH_VLAN_DEI", json!({"vlanDei": x})),
        MacSource(m) => ("MATCH_MAC_SOURCE", json!({"mac": m.to_string()})),
        MacDest(m) => ("MATCH_MAC_DEST", json!({"mac": m.to_string()})),
        Ipv4Source { ip, bits } => ("MATCH_IPV4_SOURCE", json!({"ip": format!("{ip}/{bits}")})),
        Ipv4Dest { ip, bits } => ("MATCH_IPV4_DEST", json!({"ip": format!("{ip}/{bits}")})),
        Ipv6Source { ip, bits } => ("MATCH_IPV6_SOURCE", json!({"ip": format!("{ip}/{bits}")})),
        Ipv6Dest { ip, bits } => ("MATCH_IPV6_DEST", json!({"ip": format!("{ip}/{bits}")})),
        IpTos { mask, start, end } => (
            "MATCH_IP_TOS",
            json!({"mask": mask, "start": start, "end": end}),
        ),
        IpProtocol(p) => ("MATCH_IP_PROTOCOL", json!({"ipProtocol": p})),
        Ethertype(e) => ("MATCH_ETHERTYPE", json!({"etherType": e})),
        Icmp {
            icmp_type,
            code,
            match_code,
        } => {
            let code = if *match_code {
                json!(code)
            } else {
                Value::Null
            };
            (
                "MATCH_ICMP",
                json!({"icmpType": icmp_type, "icmpCode": code}),
            )
        }
        SourcePortRange { start, end } => (
            "MATCH_IP_SOURCE_PORT_RANGE",
            json!({"start": start, "end": end}),
        ),
        DestPortRange { start, end } => (
            "MATCH_IP_DEST_PORT_RANGE",
            json!({"start": start, "end": end}),
        ),
        FrameSizeRange { start, end } => (
            "MATCH_FRAME_SIZE_RANGE",
            json!({"start": start, "end": end}),
        ),
        Characteristics(m) => (
            "MATCH_CHARACTERISTICS",
            json!({"mask": format!("{m:016x}")}),
        ),
        Random(p) => ("MATCH_RANDOM", json!({"probability": p})),
        Tag { op, id, value } => (tag_name(*op), json!({"id": id, "value": value})),
        IntegerRange {
            start,
            end_delta,
            index,
            format,
        } => (
            "INTEGER_RANGE",
            json!({
                "start": format!("{start:x}"),
                "end": format!("{:x}", start.wrapping_add(u64::from(*end_delta))),
                "idx": index,
                "little": format & 0x80 != 0,
                "bits": (format & 63) + 1,
            }),
        ),
        Other { id, .. } => ("MATCH_UNASSIGNED", json!({"id": id & 0x3f})),
    };
    v["type"] = json!(t);
    v["not"] = json!(rule.not);
    v["or"] = json!(rule.or);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{decode_all, encode_all};
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn parse_all(s: &str) -> Vec<Rule> {
        let v: Value = serde_json::from_str(s).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .filter_map(|r| rule_from_json(r).unwrap())
            .collect()
    }

    fn binary(rules: &[Rule]) -> String {
        let mut b = Vec::new();
        encode_all(rules, &mut b);
        hex::encode(b)
    }

    // spec: vl2.md §15.8 — the compiler's output for the bundled example, and its binary form
    // (vl2.md §15.1 example blobs)
    #[test]
    fn compiler_example() {
        let rules = parse_all(
            r#"[{"type":"MATCH_ETHERTYPE","not":true,"or":false,"etherType":2048},
                {"type":"ACTION_DROP"},
                {"type":"MATCH_TAGS_DIFFERENCE","not":false,"or":false,"id":1000,"value":0},
                {"type":"ACTION_ACCEPT"},{"type":"ACTION_ACCEPT"}]"#,
        );
        assert_eq!(
            binary(&rules),
            "a5020800".to_owned() + "0000" + "2c08000003e800000000" + "0100" + "0100"
        );
        let cap = parse_all(
            r#"[{"type":"MATCH_IP_PROTOCOL","not":false,"or":false,"ipProtocol":6},
                {"type":"MATCH_IP_DEST_PORT_RANGE","not":false,"or":false,"start":22,"end":22},
                {"type":"ACTION_ACCEPT"}]"#,
        );
        assert_eq!(binary(&cap), "24010628040016001601".to_owned() + "00");
    }

    // spec: controller.md §7.2 — the full-update example and its re-rendering
    #[test]
    fn controller_update_example() {
        let input: Value = serde_json::from_str(
            r#"[{"type":"MATCH_ETHERTYPE","not":true,"or":false,"etherType":2048},
                {"type":"MATCH_ICMP","icmpType":8,"icmpCode":null},
                {"type":"ACTION_TEE","address":"deadbeef01","length":64},
                {"type":"INTEGER_RANGE","start":1,"end":5,"idx":20,"bits":16,"little":false},
                {"type":"ACTION_PRIORITY"},{"type":"ACTION_ACCEPT"}]"#,
        )
        .unwrap();
        let parsed: Vec<Option<Rule>> = input
            .as_array()
            .unwrap()
            .iter()
            .map(|r| rule_from_json(r).unwrap())
            .collect();
        assert!(parsed[3].is_none() && parsed[4].is_none());
        let rendered: Vec<String> = parsed
            .iter()
            .flatten()
            .map(|r| serde_json::to_string(&rule_to_json(r)).unwrap())
            .collect();
        assert_eq!(
            rendered,
            [
                r#"{"etherType":2048,"not":true,"or":false,"type":"MATCH_ETHERTYPE"}"#,
                r#"{"icmpCode":null,"icmpType":8,"not":false,"or":false,"type":"MATCH_ICMP"}"#,
                r#"{"address":"deadbeef01","flags":0,"length":64,"type":"ACTION_TEE"}"#,
                r#"{"type":"ACTION_ACCEPT"}"#,
            ]
        );
        // the binary form of the ICMP and TEE rules (vl2.md §15.1 examples)
        assert_eq!(binary(&[parsed[1].clone().unwrap()]), "2603080000");
        assert_eq!(
            binary(&[parsed[2].clone().unwrap()]),
            "020e000000deadbeef01000000000040"
        );
    }

    #[test]
    fn actions_lose_not_and_or() {
        let r = rule_from_json(&json!({"type":"ACTION_DROP","not":true,"or":true}))
            .unwrap()
            .unwrap();
        assert_eq!(r, Rule::new(RuleKind::Drop));
        assert_eq!(rule_to_json(&r), json!({"type":"ACTION_DROP"}));
        let redirect = rule_from_json(
            &json!({"type":"ACTION_REDIRECT","address":"0102030405","flags":7,"length":9}),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            serde_json::to_string(&rule_to_json(&redirect)).unwrap(),
            r#"{"address":"0102030405","flags":7,"type":"ACTION_REDIRECT"}"#
        );
    }

    #[test]
    fn dropped_and_bad_rules() {
        for t in [
            "INTEGER_RANGE",
            "MATCH_INTEGER_RANGE",
            "ACTION_PRIORITY",
            "MATCH_WHATEVER",
        ] {
            assert_eq!(rule_from_json(&json!({"type": t})), Ok(None), "{t}");
        }
        let field = |v: Value| match rule_from_json(&v) {
            Err(RuleJsonError::Field { field, .. }) => field,
            other => panic!("{v}: {other:?}"),
        };
        assert_eq!(rule_from_json(&json!([1])), Err(RuleJsonError::NotAnObject));
        assert_eq!(field(json!({"etherType": 1})), "type");
        assert_eq!(
            field(json!({"type":"MATCH_ETHERTYPE","etherType":65536})),
            "etherType"
        );
        assert_eq!(
            field(json!({"type":"MATCH_ETHERTYPE","etherType":-1})),
            "etherType"
        );
        assert_eq!(
            field(json!({"type":"MATCH_ETHERTYPE","etherType":[1]})),
            "etherType"
        );
        assert_eq!(
            field(json!({"type":"MATCH_ETHERTYPE","etherType":1,"not":"yes"})),
            "not"
        );
        assert_eq!(
            field(json!({"type":"MATCH_MAC_SOURCE","mac":"11:22:33"})),
            "mac"
        );
        assert_eq!(
            field(json!({"type":"MATCH_IPV4_SOURCE","ip":"fd00::/8"})),
            "ip"
        );
        assert_eq!(
            field(json!({"type":"MATCH_IPV4_SOURCE","ip":"10.0.0.0/33"})),
            "ip"
        );
        assert_eq!(field(json!({"type":"MATCH_IPV6_DEST","ip":"fd00::"})), "ip");
        assert_eq!(field(json!({"type":"ACTION_TEE","length":1})), "address");
        assert_eq!(
            field(json!({"type":"MATCH_SOURCE_ZEROTIER_ADDRESS","zt":"xyz"})),
            "zt"
        );
        assert_eq!(
            field(json!({"type":"MATCH_CHARACTERISTICS","mask":"12345678901234567"})),
            "mask"
        );
        assert_eq!(
            field(json!({"type":"MATCH_RANDOM","probability":4294967296u64})),
            "probability"
        );
        // numbers as decimal strings, a characteristics mask as a number
        assert_eq!(
            rule_from_json(&json!({"type":"MATCH_IP_PROTOCOL","ipProtocol":"17"})).unwrap(),
            Some(Rule::new(RuleKind::IpProtocol(17)))
        );
        assert_eq!(
            rule_from_json(&json!({"type":"MATCH_CHARACTERISTICS","mask":18})).unwrap(),
            Some(Rule::new(RuleKind::Characteristics(18)))
        );
    }

    fn every_rule() -> Vec<Rule> {
        use RuleKind::*;
        let f = Forward {
            address: Address::new(0xdeadbeef01).unwrap(),
            flags: 3,
            length: 64,
        };
        let kinds = vec![
            Drop,
            Accept,
            Break,
            Tee(f),
            Watch(f),
            Redirect(Forward { length: 0, ..f }),
            SourceZtAddress(Address::new(0x0a33989140).unwrap()),
            DestZtAddress(Address::new(0x7c55a8da82).unwrap()),
            VlanId(42),
            VlanPcp(3),
            VlanDei(1),
            MacSource(Mac([2, 0x11, 0x22, 0x33, 0x44, 0x55])),
            MacDest(Mac([0xff; 6])),
            Ipv4Source {
                ip: Ipv4Addr::new(10, 147, 17, 0),
                bits: 24,
            },
            Ipv4Dest {
                ip: Ipv4Addr::new(0, 0, 0, 0),
                bits: 0,
            },
            Ipv6Source {
                ip: "fd7c:55a8:da82:c903:1299:9300::"
                    .parse::<Ipv6Addr>()
                    .unwrap(),
                bits: 88,
            },
            Ipv6Dest {
                ip: "fc00::1".parse::<Ipv6Addr>().unwrap(),
                bits: 128,
            },
            IpTos {
                mask: 0xfc,
                start: 0xb8,
                end: 0xbc,
            },
            IpProtocol(58),
            Ethertype(0x86dd),
            Icmp {
                icmp_type: 8,
                code: 0,
                match_code: false,
            },
            Icmp {
                icmp_type: 3,
                code: 4,
                match_code: true,
            },
            SourcePortRange {
                start: 1024,
                end: 65535,
            },
            DestPortRange { start: 22, end: 22 },
            Characteristics(0x8000_0000_0000_0012),
            FrameSizeRange {
                start: 0,
                end: 1500,
            },
            Random(0x7fff_ffff),
            Tag {
                op: TagOp::Difference,
                id: 1000,
                value: 0,
            },
            Tag {
                op: TagOp::BitwiseAnd,
                id: 1,
                value: 2,
            },
            Tag {
                op: TagOp::BitwiseOr,
                id: 3,
                value: 4,
            },
            Tag {
                op: TagOp::BitwiseXor,
                id: 5,
                value: 6,
            },
            Tag {
                op: TagOp::Equal,
                id: 7,
                value: 8,
            },
            Tag {
                op: TagOp::Sender,
                id: 9,
                value: u32::MAX,
            },
            Tag {
                op: TagOp::Receiver,
                id: u32::MAX,
                value: 0,
            },
        ];
        let mut rules = Vec::new();
        for (i, kind) in kinds.into_iter().enumerate() {
            let action = matches!(
                kind,
                Drop | Accept | Break | Tee(_) | Watch(_) | Redirect(_)
            );
            rules.push(Rule {
                kind,
                not: !action && i % 2 == 0,
                or: !action && i % 3 == 0,
            });
        }
        rules
    }

    // JSON → Rule → binary → Rule → JSON for every rule type the controller keeps
    #[test]
    fn round_trip_every_rule_type() {
        let rules = every_rule();
        let json: Vec<Value> = rules.iter().map(rule_to_json).collect();
        let parsed: Vec<Rule> = json
            .iter()
            .map(|j| rule_from_json(j).unwrap().unwrap())
            .collect();
        assert_eq!(parsed, rules);
        let mut bin = Vec::new();
        encode_all(&parsed, &mut bin);
        let decoded = decode_all(&bin, 1024).unwrap();
        assert_eq!(decoded, rules);
        let again: Vec<Value> = decoded.iter().map(rule_to_json).collect();
        assert_eq!(again, json);
        // every type string is distinct: all ids covered
        let mut types: Vec<&str> = json.iter().map(|j| j["type"].as_str().unwrap()).collect();
        types.sort_unstable();
        types.dedup();
        assert_eq!(types.len(), 33);
    }

    #[test]
    fn renderings() {
        let r = |kind| serde_json::to_string(&rule_to_json(&Rule::new(kind))).unwrap();
        use RuleKind::*;
        assert_eq!(
            r(Characteristics(2)),
            r#"{"mask":"0000000000000002","not":false,"or":false,"type":"MATCH_CHARACTERISTICS"}"#
        );
        assert_eq!(
            r(MacSource(Mac([2, 0x11, 0x22, 0x33, 0x44, 0x55]))),
            r#"{"mac":"02:11:22:33:44:55","not":false,"or":false,"type":"MATCH_MAC_SOURCE"}"#
        );
        assert_eq!(
            r(Ipv6Source {
                ip: "fd00::1".parse().unwrap(),
                bits: 64
            }),
            r#"{"ip":"fd00::1/64","not":false,"or":false,"type":"MATCH_IPV6_SOURCE"}"#
        );
        assert_eq!(
            r(Icmp {
                icmp_type: 3,
                code: 4,
                match_code: true
            }),
            r#"{"icmpCode":4,"icmpType":3,"not":false,"or":false,"type":"MATCH_ICMP"}"#
        );
        assert_eq!(
            r(IntegerRange {
                start: 1,
                end_delta: 4,
                index: 20,
                format: 15
            }),
            r#"{"bits":16,"end":"5","idx":20,"little":false,"not":false,"or":false,"start":"1","type":"INTEGER_RANGE"}"#
        );
        assert_eq!(r(Priority), r#"{"type":"ACTION_PRIORITY"}"#);
        // what we render for these is dropped again on input, like the controller does
        for kind in [
            Priority,
            IntegerRange {
                start: 1,
                end_delta: 4,
                index: 20,
                format: 15,
            },
            Other {
                id: 20,
                operand: vec![],
            },
            Other {
                id: 9,
                operand: vec![],
            },
        ] {
            let j = rule_to_json(&Rule::new(kind));
            assert_eq!(rule_from_json(&j), Ok(None), "{j}");
        }
    }
}
