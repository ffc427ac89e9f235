//! The record types: network and member objects as the HTTP API and the file database hold them.
//! spec: controller.md §7.2, §7.3
//!
//! The record types serialize to exactly the reference JSON shapes, quirks included (`dns`
//! defaults to `[]`, `authTokens` to `[null]`, `vMajor`… to −1). Struct fields are declared in
//! lexicographic order of their JSON names so that serializing a record directly gives the sorted
//! keys the reference writes (§7: "compact JSON with lexicographically sorted keys").

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::de::Deserializer;
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use weft_wire::{Address, NetworkId};

use super::Revisioned;

/// Default MTU of a network. spec: controller.md §4.1
pub const DEFAULT_MTU: u32 = 2800;
/// Default multicast limit. spec: controller.md §4.1
pub const DEFAULT_MULTICAST_LIMIT: u32 = 32;

// ---------------------------------------------------------------------------------------------
// Network record. spec: controller.md §7.2

/// `authTokens`: `[null]` until set (quirk), else `{token: expiryMs}` (0 = never expires).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthTokens(pub Option<BTreeMap<String, u64>>);

impl AuthTokens {
    /// Whether `token` is a valid join token at `now_ms`: its expiry is 0 or greater than now.
    /// spec: controller.md §3 step 7
    pub fn allows(&self, token: &str, now_ms: i64) -> bool {
        match self.0.as_ref().and_then(|m| m.get(token)) {
            Some(&0) => true,
            Some(&exp) => i64::try_from(exp).map_or(true, |e| e > now_ms),
            None => false,
        }
    }
}

impl Serialize for AuthTokens {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Some(m) => m.serialize(s),
            None => [()].serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for AuthTokens {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // only non-negative numeric values are kept; a non-object means "unset". spec: §7.2
        Ok(match Value::deserialize(d)? {
            Value::Object(o) => AuthTokens(Some(
                o.into_iter()
                    .filter_map(|(k, v)| v.as_u64().map(|n| (k, n)))
                    .collect(),
            )),
            _ => AuthTokens(None),
        })
    }
}

/// `dns`: `[]` until set (quirk), else `{domain, servers}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum DnsRecord {
    /// Never set: serialized as `[]`.
    #[default]
    Unset,
    /// Set through the API.
    Set {
        /// Search domain.
        domain: String,
        /// Server addresses as given (validated only when a config is built, §4.6).
        servers: Vec<String>,
    },
}

impl Serialize for DnsRecord {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            DnsRecord::Unset => Vec::<()>::new().serialize(s),
            DnsRecord::Set { domain, servers } => {
                let mut m = serde_json::Map::new();
                m.insert("domain".into(), Value::String(domain.clone()));
                m.insert(
                    "servers".into(),
                    Value::Array(servers.iter().cloned().map(Value::String).collect()),
                );
                m.serialize(s)
            }
        }
    }
}

impl<'de> Deserialize<'de> for DnsRecord {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::Object(o) => DnsRecord::Set {
                domain: o
                    .get("domain")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                servers: o
                    .get("servers")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .map(|v| v.as_str().unwrap_or_default().to_owned())
                            .collect()
                    })
                    .unwrap_or_default(),
            },
            _ => DnsRecord::Unset,
        })
    }
}

/// One `ipAssignmentPools` entry (start and end of the same family).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpPool {
    /// Last address of the range.
    #[serde(rename = "ipRangeEnd")]
    pub end: IpAddr,
    /// First address of the range.
    #[serde(rename = "ipRangeStart")]
    pub start: IpAddr,
}

/// One `routes` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteRecord {
    /// Destination network, `ip/bits`.
    pub target: IpNet,
    /// Gateway, or `null` for a route onto the network itself.
    #[serde(default)]
    pub via: Option<IpAddr>,
}

/// One `capabilities` entry of a network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapabilityRecord {
    /// Whether new members receive it automatically (see the quirk in §4.3).
    #[serde(default)]
    pub default: bool,
    /// Capability ID (also the evaluation order).
    pub id: u32,
    /// Rules in their JSON form (vl2.md §15.7).
    #[serde(default)]
    pub rules: Vec<Value>,
}

/// One `tags` entry of a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagRecord {
    /// Value given to members that lack this tag, or `null`.
    #[serde(default)]
    pub default: Option<u32>,
    /// Tag ID.
    pub id: u32,
}

/// `v4AssignMode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct V4AssignMode {
    /// Allocate from the IPv4 pools.
    #[serde(default)]
    pub zt: bool,
}

/// `v6AssignMode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct V6AssignMode {
    /// Assign the 6PLANE address (vl2.md §4.2).
    #[serde(rename = "6plane", default)]
    pub sixplane: bool,
    /// Assign the RFC4193 address (vl2.md §4.1).
    #[serde(default)]
    pub rfc4193: bool,
    /// Allocate from the IPv6 pools.
    #[serde(default)]
    pub zt: bool,
}

/// A network object. spec: controller.md §7.2
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkRecord {
    /// `authTokens`.
    #[serde(rename = "authTokens")]
    pub auth_tokens: AuthTokens,
    /// `authorizationEndpoint` (SSO; not writable through the API).
    #[serde(rename = "authorizationEndpoint")]
    pub authorization_endpoint: String,
    /// `capabilities`.
    pub capabilities: Vec<CapabilityRecord>,
    /// `certificateTimeoutWindowSize` (ctmd; only by editing the database). Absent by default.
    #[serde(
        rename = "certificateTimeoutWindowSize",
        skip_serializing_if = "Option::is_none"
    )]
    pub certificate_timeout_window_size: Option<i64>,
    /// `clientId` (SSO).
    #[serde(rename = "clientId")]
    pub client_id: String,
    /// `creationTime` (ms).
    #[serde(rename = "creationTime")]
    pub creation_time: i64,
    /// `dns`.
    pub dns: DnsRecord,
    /// `enableBroadcast`.
    #[serde(rename = "enableBroadcast")]
    pub enable_broadcast: bool,
    /// `id` (16 hex digits).
    #[serde(with = "nwid_hex")]
    pub id: NetworkId,
    /// `ipAssignmentPools`.
    #[serde(rename = "ipAssignmentPools")]
    pub ip_assignment_pools: Vec<IpPool>,
    /// `mtu`.
    pub mtu: u32,
    /// `multicastLimit`.
    #[serde(rename = "multicastLimit")]
    pub multicast_limit: u32,
    /// `name`.
    pub name: String,
    /// `nwid` (same as `id`).
    #[serde(with = "nwid_hex")]
    pub nwid: NetworkId,
    /// `objtype` (`"network"`).
    pub objtype: String,
    /// `private` (false ⇒ public: members are authorized automatically).
    pub private: bool,
    /// `remoteTraceLevel`.
    #[serde(rename = "remoteTraceLevel")]
    pub remote_trace_level: u32,
    /// `remoteTraceTarget`.
    #[serde(rename = "remoteTraceTarget", with = "opt_address_hex")]
    pub remote_trace_target: Option<Address>,
    /// `revision`.
    pub revision: u64,
    /// `routes`.
    pub routes: Vec<RouteRecord>,
    /// `rules` in their JSON form (vl2.md §15.7).
    pub rules: Vec<Value>,
    /// `rulesSource` (never stored from the API).
    #[serde(rename = "rulesSource")]
    pub rules_source: String,
    /// `ssoEnabled`.
    #[serde(rename = "ssoEnabled")]
    pub sso_enabled: bool,
    /// `tags`.
    pub tags: Vec<TagRecord>,
    /// `v4AssignMode`.
    #[serde(rename = "v4AssignMode")]
    pub v4_assign_mode: V4AssignMode,
    /// `v6AssignMode`.
    #[serde(rename = "v6AssignMode")]
    pub v6_assign_mode: V6AssignMode,
}

/// The default `rules`: a single accept. spec: controller.md §7.2
pub fn default_rules() -> Vec<Value> {
    vec![serde_json::json!({"not": false, "or": false, "type": "ACTION_ACCEPT"})]
}

impl Default for NetworkRecord {
    fn default() -> Self {
        NetworkRecord {
            auth_tokens: AuthTokens::default(),
            authorization_endpoint: String::new(),
            capabilities: Vec::new(),
            certificate_timeout_window_size: None,
            client_id: String::new(),
            creation_time: 0,
            dns: DnsRecord::Unset,
            enable_broadcast: true,
            id: NetworkId::default(),
            ip_assignment_pools: Vec::new(),
            mtu: DEFAULT_MTU,
            multicast_limit: DEFAULT_MULTICAST_LIMIT,
            name: String::new(),
            nwid: NetworkId::default(),
            objtype: "network".into(),
            private: true,
            remote_trace_level: 0,
            remote_trace_target: None,
            revision: 0,
            routes: Vec::new(),
            rules: default_rules(),
            rules_source: String::new(),
            sso_enabled: false,
            tags: Vec::new(),
            v4_assign_mode: V4AssignMode::default(),
            v6_assign_mode: V6AssignMode::default(),
        }
    }
}

impl NetworkRecord {
    /// A network with every default of §7.2 (revision 0: the first save makes it 1).
    pub fn new(nwid: NetworkId, creation_time_ms: i64) -> Self {
        NetworkRecord {
            id: nwid,
            nwid,
            creation_time: creation_time_ms,
            ..Self::default()
        }
    }

    /// The record as a JSON value (sorted keys).
    pub fn to_json(&self) -> Value {
        // serializing plain data into a Value cannot fail
        serde_json::to_value(self).expect("network record serializes")
    }

    /// Parses a stored or reference network object.
    pub fn from_json(v: &Value) -> Result<Self, serde_json::Error> {
        NetworkRecord::deserialize(v)
    }
}

impl Revisioned for NetworkRecord {
    fn revision(&self) -> u64 {
        self.revision
    }
    fn set_revision(&mut self, revision: u64) {
        self.revision = revision;
    }
}

// ---------------------------------------------------------------------------------------------
// Member record. spec: controller.md §7.3

/// How a member was last authorized (`lastAuthorizedCredentialType`).
pub mod credential_type {
    /// Through the API.
    pub const API: &str = "api";
    /// Automatically, on a public network.
    pub const PUBLIC: &str = "public";
    /// With a join token.
    pub const TOKEN: &str = "token";
}

/// A member object. spec: controller.md §7.3
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MemberRecord {
    /// `activeBridge`.
    #[serde(rename = "activeBridge")]
    pub active_bridge: bool,
    /// `address` (10 hex digits).
    #[serde(with = "address_hex")]
    pub address: Address,
    /// `authenticationExpiryTime` (ms; SSO).
    #[serde(rename = "authenticationExpiryTime")]
    pub authentication_expiry_time: i64,
    /// `authorized`.
    pub authorized: bool,
    /// `capabilities` (IDs).
    pub capabilities: Vec<u32>,
    /// `creationTime` (ms).
    #[serde(rename = "creationTime")]
    pub creation_time: i64,
    /// `id` (same as `address`).
    #[serde(with = "address_hex")]
    pub id: Address,
    /// `identity`: the pinned public identity, absent until the first request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// `ipAssignments` (plain IPs, no bits).
    #[serde(rename = "ipAssignments")]
    pub ip_assignments: Vec<IpAddr>,
    /// `lastAuthorizedCredential` (the token for token joins).
    #[serde(rename = "lastAuthorizedCredential")]
    pub last_authorized_credential: Option<String>,
    /// `lastAuthorizedCredentialType` (see [`credential_type`]).
    #[serde(rename = "lastAuthorizedCredentialType")]
    pub last_authorized_credential_type: Option<String>,
    /// `lastAuthorizedTime` (ms).
    #[serde(rename = "lastAuthorizedTime")]
    pub last_authorized_time: i64,
    /// `lastDeauthorizedTime` (ms).
    #[serde(rename = "lastDeauthorizedTime")]
    pub last_deauthorized_time: i64,
    /// `name`: absent until set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `noAutoAssignIps`.
    #[serde(rename = "noAutoAssignIps")]
    pub no_auto_assign_ips: bool,
    /// `nwid`.
    #[serde(with = "nwid_hex")]
    pub nwid: NetworkId,
    /// `objtype` (`"member"`).
    pub objtype: String,
    /// `remoteTraceLevel`.
    #[serde(rename = "remoteTraceLevel")]
    pub remote_trace_level: u32,
    /// `remoteTraceTarget`.
    #[serde(rename = "remoteTraceTarget", with = "opt_address_hex")]
    pub remote_trace_target: Option<Address>,
    /// `revision`.
    pub revision: u64,
    /// `ssoExempt`.
    #[serde(rename = "ssoExempt")]
    pub sso_exempt: bool,
    /// `tags` as `[id, value]` pairs.
    pub tags: Vec<(u32, u32)>,
    /// `vMajor` (−1 until an authorized request).
    #[serde(rename = "vMajor")]
    pub v_major: i32,
    /// `vMinor`.
    #[serde(rename = "vMinor")]
    pub v_minor: i32,
    /// `vProto`.
    #[serde(rename = "vProto")]
    pub v_proto: i32,
    /// `vRev`.
    #[serde(rename = "vRev")]
    pub v_rev: i32,
}

impl Default for MemberRecord {
    fn default() -> Self {
        MemberRecord {
            active_bridge: false,
            address: Address::default(),
            authentication_expiry_time: 0,
            authorized: false,
            capabilities: Vec::new(),
            creation_time: 0,
            id: Address::default(),
            identity: None,
            ip_assignments: Vec::new(),
            last_authorized_credential: None,
            last_authorized_credential_type: None,
            last_authorized_time: 0,
            last_deauthorized_time: 0,
            name: None,
            no_auto_assign_ips: false,
            nwid: NetworkId::default(),
            objtype: "member".into(),
            remote_trace_level: 0,
            remote_trace_target: None,
            revision: 0,
            sso_exempt: false,
            tags: Vec::new(),
            v_major: -1,
            v_minor: -1,
            v_proto: -1,
            v_rev: -1,
        }
    }
}

impl MemberRecord {
    /// A member with every default of §7.3 (revision 0: the first save makes it 1).
    pub fn new(nwid: NetworkId, address: Address, creation_time_ms: i64) -> Self {
        MemberRecord {
            address,
            id: address,
            nwid,
            creation_time: creation_time_ms,
            ..Self::default()
        }
    }

    /// The record as a JSON value (sorted keys).
    pub fn to_json(&self) -> Value {
        // serializing plain data into a Value cannot fail
        serde_json::to_value(self).expect("member record serializes")
    }

    /// Parses a stored or reference member object.
    pub fn from_json(v: &Value) -> Result<Self, serde_json::Error> {
        MemberRecord::deserialize(v)
    }

    /// Sets `authorized`, stamping the transition as the API does: authorizing sets
    /// `lastAuthorizedTime`, type `"api"`, credential null; deauthorizing sets
    /// `lastDeauthorizedTime`. No change if the value is the same. spec: controller.md §7.3
    pub fn set_authorized_by_api(&mut self, authorized: bool, now_ms: i64) {
        if self.authorized == authorized {
            return;
        }
        self.authorized = authorized;
        if authorized {
            self.last_authorized_time = now_ms;
            self.last_authorized_credential_type = Some(credential_type::API.into());
            self.last_authorized_credential = None;
        } else {
            self.last_deauthorized_time = now_ms;
        }
    }
}

impl Revisioned for MemberRecord {
    fn revision(&self) -> u64 {
        self.revision
    }
    fn set_revision(&mut self, revision: u64) {
        self.revision = revision;
    }
}

// ---------------------------------------------------------------------------------------------
// serde helpers

pub(crate) mod nwid_hex {
    use super::*;
    pub fn serialize<S: Serializer>(n: &NetworkId, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&n.to_string())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NetworkId, D::Error> {
        let s = String::deserialize(d)?;
        if s.len() != 16 {
            return Err(serde::de::Error::custom(format!(
                "network id must be 16 hex digits: {s:?}"
            )));
        }
        s.parse().map_err(serde::de::Error::custom)
    }
}

pub(crate) mod address_hex {
    use super::*;
    pub fn serialize<S: Serializer>(a: &Address, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&a.to_string())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Address, D::Error> {
        let s = String::deserialize(d)?;
        if s.len() != 10 {
            return Err(serde::de::Error::custom(format!(
                "address must be 10 hex digits: {s:?}"
            )));
        }
        s.parse().map_err(serde::de::Error::custom)
    }
}

pub(crate) mod opt_address_hex {
    use super::*;
    pub fn serialize<S: Serializer>(a: &Option<Address>, s: S) -> Result<S::Ok, S::Error> {
        match a {
            Some(a) => s.serialize_str(&a.to_string()),
            None => s.serialize_none(),
        }
    }
    /// Anything that is not a 10-character address string reads as none. spec: §7.2
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Address>, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::String(s) if s.len() == 10 => s.parse().ok(),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MemoryStore, Store};

    const NWID: NetworkId = NetworkId(0x7c55a8da82c90312);

    fn addr(s: &str) -> Address {
        s.parse().unwrap()
    }

    #[test]
    fn new_network_matches_the_verified_creation_example() {
        // spec: controller.md §7.2, creation with body {} (revision 1 after the first save)
        let mut store = MemoryStore::new();
        let saved = store
            .put_network(NetworkRecord::new(NWID, 1795318710651))
            .unwrap();
        assert!(saved.changed);
        let expected: Value = serde_json::from_str(r#"{"authTokens":[null],"authorizationEndpoint":"","capabilities":[],"clientId":"","creationTime":1795318710651,"dns":[],"enableBroadcast":true,"id":"7c55a8da82c90312","ipAssignmentPools":[],"mtu":2800,"multicastLimit":32,"name":"","nwid":"7c55a8da82c90312","objtype":"network","private":true,"remoteTraceLevel":0,"remoteTraceTarget":null,"revision":1,"routes":[],"rules":[{"not":false,"or":false,"type":"ACTION_ACCEPT"}],"rulesSource":"","ssoEnabled":false,"tags":[],"v4AssignMode":{"zt":false},"v6AssignMode":{"6plane":false,"rfc4193":false,"zt":false}}"#).unwrap();
        assert_eq!(saved.record.to_json(), expected);
        // and the direct serialization has the keys in sorted order, byte for byte
        assert_eq!(
            serde_json::to_string(&saved.record).unwrap(),
            serde_json::to_string(&expected).unwrap()
        );
    }

    #[test]
    fn new_member_matches_the_verified_unauthorized_example() {
        let mut m = MemberRecord::new(NWID, addr("0a33989140"), 1795318949355);
        m.identity = Some("0a33989140:0:3698".into());
        m.revision = 0;
        let saved = MemoryStore::new().put_member(m).unwrap();
        let expected: Value = serde_json::from_str(r#"{"activeBridge":false,"address":"0a33989140","authenticationExpiryTime":0,"authorized":false,"capabilities":[],
 "creationTime":1795318949355,"id":"0a33989140","identity":"0a33989140:0:3698","ipAssignments":[],
 "lastAuthorizedCredential":null,"lastAuthorizedCredentialType":null,"lastAuthorizedTime":0,"lastDeauthorizedTime":0,
 "noAutoAssignIps":false,"nwid":"7c55a8da82c90312","objtype":"member","remoteTraceLevel":0,"remoteTraceTarget":null,
 "revision":1,"ssoExempt":false,"tags":[],"vMajor":-1,"vMinor":-1,"vProto":-1,"vRev":-1}"#).unwrap();
        assert_eq!(saved.record.to_json(), expected);
        assert_eq!(
            serde_json::to_string(&saved.record).unwrap(),
            serde_json::to_string(&expected).unwrap()
        );
    }

    #[test]
    fn set_records_serialize_objects() {
        let mut n = NetworkRecord::new(NWID, 1);
        n.dns = DnsRecord::Set {
            domain: "zt.example".into(),
            servers: vec!["10.147.17.1".into()],
        };
        n.auth_tokens = AuthTokens(Some([("abc".to_string(), 0)].into()));
        n.remote_trace_target = Some(addr("deadbeef01"));
        n.routes.push(RouteRecord {
            target: "fd12:3456:789a::/64".parse().unwrap(),
            via: None,
        });
        let j = n.to_json();
        assert_eq!(
            j["dns"],
            serde_json::json!({"domain":"zt.example","servers":["10.147.17.1"]})
        );
        assert_eq!(j["authTokens"], serde_json::json!({"abc":0}));
        assert_eq!(j["remoteTraceTarget"], "deadbeef01");
        assert_eq!(
            j["routes"],
            serde_json::json!([{"target":"fd12:3456:789a::/64","via":null}])
        );
        assert_eq!(NetworkRecord::from_json(&j).unwrap(), n);
    }

    #[test]
    fn lenient_fields_read_as_unset() {
        let j = serde_json::json!({"id":"7c55a8da82c90312","nwid":"7c55a8da82c90312",
            "authTokens":{"ok":5,"neg":-1,"str":"x"},"remoteTraceTarget":"short"});
        let n = NetworkRecord::from_json(&j).unwrap();
        assert_eq!(
            n.auth_tokens,
            AuthTokens(Some([("ok".to_string(), 5)].into()))
        );
        assert_eq!(n.remote_trace_target, None);
        // missing keys take the §7.2 defaults
        assert_eq!(n.mtu, 2800);
        assert!(n.private && n.enable_broadcast);
        assert_eq!(n.rules, default_rules());
    }

    #[test]
    fn auth_tokens_expiry() {
        let t = AuthTokens(Some([("a".into(), 0), ("b".into(), 1000)].into()));
        assert!(t.allows("a", 5000));
        assert!(t.allows("b", 999));
        assert!(!t.allows("b", 1000));
        assert!(!t.allows("c", 0));
        assert!(!AuthTokens(None).allows("a", 0));
    }

    #[test]
    fn api_authorization_stamps() {
        let mut m = MemberRecord::new(NWID, addr("0a33989140"), 0);
        m.set_authorized_by_api(true, 100);
        assert_eq!(m.last_authorized_time, 100);
        assert_eq!(m.last_authorized_credential_type.as_deref(), Some("api"));
        m.set_authorized_by_api(true, 200);
        assert_eq!(m.last_authorized_time, 100);
        m.set_authorized_by_api(false, 300);
        assert_eq!(m.last_deauthorized_time, 300);
        assert!(!m.authorized);
    }
}
