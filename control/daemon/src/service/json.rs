//! JSON views of the node in the shapes of ZeroTier One's local API (`/status`, `/peer`), so
//! the status file today and the HTTP API later share them. spec: service.md §4.3, §4.5

use serde_json::{Value, json};
use weft_proto::{Node, PeerInfo, PeerRole, Timestamp};
use weft_wire::inet::IpPort;

/// One peer object.
/// A peer object with its bond: `isBonded`, the bond's fields, and per path the bond's view of
/// it (merged into the matching path; all of them also under `bondPaths`). spec: service.md §4.5
pub(crate) fn bonded_peer(mut v: Value, bond: Option<&weft_proto::bond::BondInfo>) -> Value {
    let Some(bond) = bond else {
        return v;
    };
    let b = bond.to_json();
    v["isBonded"] = Value::Bool(true);
    if let (Some(obj), Some(bobj)) = (v.as_object_mut(), b.as_object()) {
        for (k, x) in bobj {
            if k != "paths" {
                obj.insert(k.clone(), x.clone());
            }
        }
        obj.insert("bondPaths".into(), b["paths"].clone());
    }
    if let Some(paths) = v["paths"].as_array_mut() {
        for p in paths {
            let Some(bp) = b["paths"].as_array().and_then(|bp| {
                bp.iter()
                    .find(|x| x["address"] == p["address"] && x["localSocket"] == p["localSocket"])
            }) else {
                continue;
            };
            if let (Some(po), Some(bo)) = (p.as_object_mut(), bp.as_object()) {
                for (k, x) in bo {
                    if !po.contains_key(k) {
                        po.insert(k.clone(), x.clone());
                    }
                }
            }
        }
    }
    v
}

pub(crate) fn peer(p: &PeerInfo, tunneled: bool) -> Value {
    let (maj, min, rev) = p.version.map_or((-1, -1, -1), |(_, a, b, c)| {
        (i64::from(a), i64::from(b), i64::from(c))
    });
    let latency = p
        .paths
        .iter()
        .find(|x| x.preferred)
        .and_then(|x| x.latency)
        .map_or(-1, i64::from);
    let paths: Vec<Value> = p
        .paths
        .iter()
        .map(|x| {
            json!({
                "active": true,
                "address": IpPort(x.addr).to_string(),
                "expired": false,
                "lastReceive": x.last_receive,
                "lastSend": x.last_send,
                "localPort": 0,
                "localSocket": x.local.0,
                "preferred": x.preferred,
                "trustedPathId": 0,
            })
        })
        .collect();
    json!({
        "address": p.address.to_string(),
        "isBonded": false,
        // weft extension: last packet from this peer over any path, relayed ones included
        "lastReceive": p.last_receive,
        "latency": latency,
        "paths": paths,
        "role": match p.role { PeerRole::Leaf => "LEAF", PeerRole::Moon => "MOON", PeerRole::Planet => "PLANET" },
        "tunneled": tunneled,
        "version": format!("{maj}.{min}.{rev}"),
        "versionMajor": maj,
        "versionMinor": min,
        "versionRev": rev,
    })
}

/// The status object.
pub(crate) fn status(
    node: &Node,
    now: Timestamp,
    settings: Value,
    version: (u8, u8, u16),
    tunneled: bool,
) -> Value {
    json!({
        "address": node.address().to_string(),
        "clock": now,
        "config": { "settings": settings },
        "online": node.is_online(),
        "planetWorldId": node.planet().id,
        "planetWorldTimestamp": node.planet().timestamp,
        "publicIdentity": node.identity().to_string(),
        "tcpFallbackActive": tunneled,
        "version": format!("{}.{}.{}", version.0, version.1, version.2),
        "versionBuild": 0,
        "versionMajor": version.0,
        "versionMinor": version.1,
        "versionRev": version.2,
    })
}

/// A moon object. spec: service.md §4.6
pub(crate) fn moon(w: &weft_wire::World, waiting: bool) -> Value {
    let roots: Vec<Value> = w
        .roots
        .iter()
        .map(|r| {
            json!({
                "identity": r.identity.to_string(),
                "stableEndpoints": r.stable_endpoints.iter().map(|e| IpPort(*e).to_string()).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "id": format!("{:016x}", w.id),
        "roots": roots,
        "signature": hex::encode(w.signature),
        "timestamp": w.timestamp,
        "updatesMustBeSignedBy": hex::encode(w.updates_must_be_signed_by),
        "waiting": waiting,
    })
}

/// A moon being fetched from its seed.
pub(crate) fn waiting_moon(id: u64) -> Value {
    json!({"id": format!("{id:016x}"), "roots": [], "signature": null, "timestamp": 0, "updatesMustBeSignedBy": null, "waiting": true})
}

/// One network object. spec: service.md §4.4
pub(crate) fn network(
    n: &weft_proto::NetworkInfo,
    mac: weft_wire::mac::Mac,
    port_name: Option<&str>,
    settings: &crate::host::managed::LocalNetSettings,
    own: weft_wire::Address,
) -> Value {
    let c = n.config.as_deref();
    let id = format!("{:016x}", n.network_id.0);
    let assigned: Vec<String> = c
        .map(|c| c.static_ips.iter().map(ToString::to_string).collect())
        .unwrap_or_default();
    let routes: Vec<Value> = c
        .map(|c| {
            c.routes
                .iter()
                .map(|r| {
                    json!({
                        "flags": r.flags,
                        "metric": r.metric,
                        "target": r.target.to_string(),
                        "via": r.via.map(|v| v.to_string()),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let subs: Vec<Value> = n
        .multicast_subscriptions
        .iter()
        .map(|g| json!({ "adi": g.adi, "mac": g.mac.to_string() }))
        .collect();
    let dns = c.map_or_else(
        || json!({ "domain": "", "servers": [] }),
        |c| {
            json!({
                "domain": c.dns.domain,
                "servers": c.dns.servers.iter().map(ToString::to_string).collect::<Vec<_>>(),
            })
        },
    );
    let mut v = json!({
        "allowDNS": settings.allow_dns,
        "allowDefault": settings.allow_default,
        "allowGlobal": settings.allow_global,
        "allowManaged": settings.allow_managed,
        "assignedAddresses": assigned,
        "bridge": c.is_some_and(|c| c.is_active_bridge(own)),
        "broadcastEnabled": c.is_some_and(|c| c.broadcast_enabled()),
        "dhcp": false,
        "dns": dns,
        "id": id,
        "mac": mac.to_string(),
        "mtu": c.map_or(2800, |c| c.mtu),
        "multicastSubscriptions": subs,
        "name": c.map_or("", |c| c.name.as_str()),
        "netconfRevision": c.map_or(0, |c| c.revision),
        "nwid": id,
        "portDeviceName": port_name.unwrap_or(""),
        "portError": i32::from(n.status == weft_proto::NetworkStatus::PortError),
        "routes": routes,
        "status": n.status.as_str(),
        "type": if c.is_some_and(|c| c.is_public()) { "PUBLIC" } else { "PRIVATE" },
    });
    if let Some(c) = c
        && c.sso.enabled
    {
        v["authenticationExpiryTime"] = json!(c.sso.authentication_expiry_time);
        v["authenticationURL"] = json!(n.authentication_url.clone().unwrap_or_default());
        v["ssoEnabled"] = json!(true);
    }
    v
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use weft_wire::dictionary::Dictionary;
    use weft_wire::mac::Mac;
    use weft_wire::netconf::NetworkConfig;
    use weft_wire::verbs::vl2::MulticastGroup;

    use super::*;

    /// The `/network/<nwid>` objects ZeroTier One 1.14.1 returned for the capture's members
    /// (vectors capture/members/*/network-status.json) are reproduced exactly from the configs
    /// those members saved. spec: service.md §4.4
    #[test]
    fn network_objects_match_the_reference() {
        let base =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors/capture/members");
        assert!(
            base.is_dir(),
            "*** REFERENCE VECTORS NOT FOUND: {} ***",
            base.display()
        );
        let mut checked = 0;
        for (dir, addr) in [
            ("a-f6372234a7", "f6372234a7"),
            ("b-1b56912874", "1b56912874"),
        ] {
            let conf = std::fs::read(base.join(dir).join("9cbc6fc0984c4142.conf")).unwrap();
            let want: Value = serde_json::from_slice(
                &std::fs::read(base.join(dir).join("network-status.json")).unwrap(),
            )
            .unwrap();
            let d = Dictionary::parse_with_capacity(&conf, 484_520).unwrap();
            let config = NetworkConfig::from_dictionary(&d).unwrap();
            let own: weft_wire::Address = addr.parse().unwrap();
            let groups: Vec<MulticastGroup> = want["multicastSubscriptions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|g| MulticastGroup {
                    mac: g["mac"].as_str().unwrap().parse::<Mac>().unwrap(),
                    adi: g["adi"].as_u64().unwrap() as u32,
                })
                .collect();
            let info = weft_proto::NetworkInfo {
                network_id: config.network_id,
                status: weft_proto::NetworkStatus::Ok,
                config: Some(Arc::new(config.clone())),
                multicast_subscriptions: groups,
                authentication_url: None,
                filter: Default::default(),
            };
            let got = network(
                &info,
                Mac::for_member(own, config.network_id),
                want["portDeviceName"].as_str(),
                &crate::host::managed::LocalNetSettings::default(),
                own,
            );
            assert_eq!(got, want, "{dir}");
            checked += 1;
        }
        assert_eq!(checked, 2);
    }
}
