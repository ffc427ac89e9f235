//! The bonding part of `local.conf`, parsed into typed policies. spec: vl1.md §9.3, service.md §3.1,
//! §3.3
//!
//! Pure: the daemon hands over the parsed JSON document. Errors name the offending key in full
//! (`settings.policies.fast.failoverInterval: expected integer ms`). Keys 1.14 does not read are
//! not errors (a `local.conf` written for another version must still start); they are reported in
//! [`BondingConfig::warnings`].

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use weft_wire::Address;

/// Default `failoverInterval`. spec: vl1.md §9.2
pub const DEFAULT_FAILOVER_INTERVAL_MS: u32 = 5_000;
/// Smallest `failoverInterval`; smaller values are raised to it. spec: vl1.md §9.2
pub const MIN_FAILOVER_INTERVAL_MS: u32 = 500;
/// Default `packetsPerLink` (balance-rr). spec: vl1.md §9.1
pub const DEFAULT_PACKETS_PER_LINK: u32 = 64;

/// The standard policies. spec: vl1.md §9.1
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BasePolicy {
    /// 0: normal single best path (no bond).
    None,
    /// 1: one active path, failover to the next eligible one.
    ActiveBackup,
    /// 2: every frame on every eligible path.
    Broadcast,
    /// 3: round-robin striping, `packetsPerLink` packets per path.
    BalanceRr,
    /// 4: per-flow hashing onto paths.
    BalanceXor,
    /// 5: per-flow assignment by measured quality, rebalanced.
    BalanceAware,
}

impl BasePolicy {
    /// Every standard policy, by code.
    pub const ALL: [BasePolicy; 6] = [
        BasePolicy::None,
        BasePolicy::ActiveBackup,
        BasePolicy::Broadcast,
        BasePolicy::BalanceRr,
        BasePolicy::BalanceXor,
        BasePolicy::BalanceAware,
    ];

    /// The numeric code (`bondingPolicyCode`).
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The `local.conf` name.
    pub fn name(self) -> &'static str {
        match self {
            BasePolicy::None => "none",
            BasePolicy::ActiveBackup => "active-backup",
            BasePolicy::Broadcast => "broadcast",
            BasePolicy::BalanceRr => "balance-rr",
            BasePolicy::BalanceXor => "balance-xor",
            BasePolicy::BalanceAware => "balance-aware",
        }
    }

    /// Looks a standard name up.
    pub fn from_name(s: &str) -> Option<BasePolicy> {
        BasePolicy::ALL.into_iter().find(|p| p.name() == s)
    }
}

/// Link re-selection for active-backup (`activeReselect`). spec: vl1.md §9.1
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LinkSelect {
    /// 0: the preferred (primary) link regains the active role whenever it is back (default).
    #[default]
    Always,
    /// 1: a returning link takes over only if it is better than the current one.
    Better,
    /// 2: the active link changes only when it fails.
    Failure,
    /// 3: any clearly superior path may take over.
    Optimize,
}

impl LinkSelect {
    /// The numeric code.
    pub fn code(self) -> u8 {
        self as u8
    }
    /// The `local.conf` name.
    pub fn name(self) -> &'static str {
        match self {
            LinkSelect::Always => "always",
            LinkSelect::Better => "better",
            LinkSelect::Failure => "failure",
            LinkSelect::Optimize => "optimize",
        }
    }
    fn from_name(s: &str) -> Option<LinkSelect> {
        [
            LinkSelect::Always,
            LinkSelect::Better,
            LinkSelect::Failure,
            LinkSelect::Optimize,
        ]
        .into_iter()
        .find(|m| m.name() == s)
    }
}

/// Which address families a link may carry (`ipvPref`). spec: vl1.md §9.3
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum IpvPref {
    /// 0: both, no preference.
    #[default]
    Any,
    /// 4: IPv4 only.
    V4Only,
    /// 6: IPv6 only.
    V6Only,
    /// 46: both, IPv4 preferred.
    V4Preferred,
    /// 64: both, IPv6 preferred.
    V6Preferred,
}

impl IpvPref {
    /// The `local.conf` number.
    pub fn code(self) -> u8 {
        match self {
            IpvPref::Any => 0,
            IpvPref::V4Only => 4,
            IpvPref::V6Only => 6,
            IpvPref::V4Preferred => 46,
            IpvPref::V6Preferred => 64,
        }
    }
    fn from_code(n: u64) -> Option<IpvPref> {
        Some(match n {
            0 => IpvPref::Any,
            4 => IpvPref::V4Only,
            6 => IpvPref::V6Only,
            46 => IpvPref::V4Preferred,
            64 => IpvPref::V6Preferred,
            _ => return None,
        })
    }
    /// Whether a path of this family may be used at all.
    pub fn allows(self, ipv6: bool) -> bool {
        match self {
            IpvPref::V4Only => !ipv6,
            IpvPref::V6Only => ipv6,
            _ => true,
        }
    }
    /// Whether a path of this family is the preferred one (for ordering).
    pub fn prefers(self, ipv6: bool) -> bool {
        match self {
            IpvPref::V4Preferred | IpvPref::V4Only => !ipv6,
            IpvPref::V6Preferred | IpvPref::V6Only => ipv6,
            IpvPref::Any => true,
        }
    }
}

/// A link's role. spec: vl1.md §9.3
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LinkMode {
    /// Used normally (weft's default when `mode` is absent; the spec is silent).
    #[default]
    Primary,
    /// Used only when no primary link is eligible.
    Spare,
}

/// Per-link settings (`policies.<name>.links.<ifname>`). spec: vl1.md §9.3
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkConfig {
    /// `enabled` (default true): a disabled link carries nothing.
    pub enabled: bool,
    /// `capacity` (alias `speed`, from older docs): relative capacity; 0 = unspecified.
    pub capacity: u32,
    /// `ipvPref`.
    pub ipv_pref: IpvPref,
    /// `mtu` (0 = unspecified); reported, applied by the data plane.
    pub mtu: u16,
    /// `mode`.
    pub mode: LinkMode,
    /// `failoverTo`: the link to fail over to when this one fails (primaries only).
    pub failover_to: Option<String>,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            enabled: true,
            capacity: 0,
            ipv_pref: IpvPref::Any,
            mtu: 0,
            mode: LinkMode::Primary,
            failover_to: None,
        }
    }
}

/// `linkQuality`: the maxima and weights of the four quality metrics. spec: vl1.md §9.3
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkQuality {
    /// Latency (ms) at which the latency component reaches its worst.
    pub lat_max: f64,
    /// Packet delay variation (ms) at which its component reaches its worst.
    pub pdv_max: f64,
    /// Packet loss ratio at which its component reaches its worst.
    pub plr_max: f64,
    /// Packet error ratio at which its component reaches its worst.
    pub per_max: f64,
    /// Weight of latency.
    pub lat_weight: f64,
    /// Weight of delay variation.
    pub pdv_weight: f64,
    /// Weight of loss.
    pub plr_weight: f64,
    /// Weight of errors.
    pub per_weight: f64,
}

impl Default for LinkQuality {
    fn default() -> Self {
        LinkQuality {
            lat_max: 500.0,
            pdv_max: 100.0,
            plr_max: 0.001,
            per_max: 0.0001,
            lat_weight: 0.25,
            pdv_weight: 0.25,
            plr_weight: 0.25,
            per_weight: 0.25,
        }
    }
}

/// A resolved policy: a standard one, or a custom one on top of its base.
#[derive(Debug, Clone, PartialEq)]
pub struct BondPolicy {
    /// The name it is known by (`active-backup`, or the custom name).
    pub name: String,
    /// The standard policy it behaves as.
    pub base: BasePolicy,
    /// `failoverInterval` (ms, ≥ 500).
    pub failover_interval_ms: u32,
    /// `upDelay` (ms).
    pub up_delay_ms: u32,
    /// `downDelay` (ms).
    pub down_delay_ms: u32,
    /// `packetsPerLink` (balance-rr; 0 = random path per packet).
    pub packets_per_link: u32,
    /// `activeReselect` (alias `linkSelectMethod`).
    pub link_select: LinkSelect,
    /// `linkQuality`.
    pub link_quality: LinkQuality,
    /// `links`, by interface name. Empty: every interface is a primary link with defaults.
    pub links: BTreeMap<String, LinkConfig>,
}

impl BondPolicy {
    /// A standard policy with its defaults.
    pub fn standard(base: BasePolicy) -> BondPolicy {
        BondPolicy {
            name: base.name().to_string(),
            base,
            failover_interval_ms: DEFAULT_FAILOVER_INTERVAL_MS,
            up_delay_ms: 0,
            down_delay_ms: 0,
            packets_per_link: DEFAULT_PACKETS_PER_LINK,
            link_select: LinkSelect::Always,
            link_quality: LinkQuality::default(),
            links: BTreeMap::new(),
        }
    }

    /// The settings of an interface. When the policy lists links, an interface it does not list
    /// is a spare with defaults (weft's choice: the spec is silent); otherwise every interface is
    /// a primary with defaults.
    pub fn link(&self, ifname: &str) -> LinkConfig {
        match self.links.get(ifname) {
            Some(l) => l.clone(),
            None if self.links.is_empty() => LinkConfig::default(),
            None => LinkConfig {
                mode: LinkMode::Spare,
                ..LinkConfig::default()
            },
        }
    }

    /// The position of an interface in the policy's link list (alphabetical: JSON object order
    /// is not kept), unlisted interfaces last.
    pub fn link_order(&self, ifname: &str) -> usize {
        self.links
            .keys()
            .position(|k| k == ifname)
            .unwrap_or(self.links.len())
    }
}

/// A `local.conf` bonding error, naming the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The value has the wrong JSON type.
    #[error("{key}: expected {expected}")]
    Type {
        /// Full key path, e.g. `settings.policies.fast.failoverInterval`.
        key: String,
        /// What was expected, e.g. `integer ms`.
        expected: &'static str,
    },
    /// The value has the right type but is not allowed.
    #[error("{key}: {reason}")]
    Value {
        /// Full key path.
        key: String,
        /// Why.
        reason: String,
    },
}

impl ConfigError {
    /// The key the error is about.
    pub fn key(&self) -> &str {
        match self {
            ConfigError::Type { key, .. } | ConfigError::Value { key, .. } => key,
        }
    }
}

/// The bonding settings of `local.conf`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BondingConfig {
    /// `settings.defaultBondingPolicy`: a standard or custom name.
    pub default_policy: Option<String>,
    /// `settings.policies`, resolved.
    pub policies: BTreeMap<String, BondPolicy>,
    /// `settings.peerSpecificBonds`.
    pub peer_specific: BTreeMap<Address, String>,
    /// Keys present but not read (with the key path), and values adjusted (e.g. a
    /// `failoverInterval` below 500 raised to 500).
    pub warnings: Vec<String>,
}

impl BondingConfig {
    /// Reads the bonding keys of a whole `local.conf` document (absent `settings`: no bonding).
    pub fn from_local_conf(doc: &Value) -> Result<BondingConfig, ConfigError> {
        match doc.get("settings") {
            None | Some(Value::Null) => Ok(BondingConfig::default()),
            Some(s) => BondingConfig::from_settings(s),
        }
    }

    /// Reads the bonding keys of the `settings` object.
    pub fn from_settings(settings: &Value) -> Result<BondingConfig, ConfigError> {
        let settings = object(settings, "settings")?;
        let mut cfg = BondingConfig::default();
        if settings.contains_key("multipathMode") {
            cfg.warnings
                .push("settings.multipathMode: not read by ZeroTier 1.14; ignored".into());
        }
        if let Some(v) = present(settings, "policies") {
            for (name, p) in object(v, "settings.policies")? {
                let key = format!("settings.policies.{name}");
                if BasePolicy::from_name(name).is_some() {
                    return Err(ConfigError::Value {
                        key,
                        reason: "a custom policy may not reuse a standard policy name".into(),
                    });
                }
                let policy = parse_policy(name, p, &key, &mut cfg.warnings)?;
                cfg.policies.insert(name.clone(), policy);
            }
        }
        if let Some(v) = present(settings, "defaultBondingPolicy") {
            let key = "settings.defaultBondingPolicy";
            let name = string(v, key)?;
            cfg.check_name(name, key)?;
            cfg.default_policy = Some(name.to_string());
        }
        if let Some(v) = present(settings, "peerSpecificBonds") {
            for (addr, name) in object(v, "settings.peerSpecificBonds")? {
                let key = format!("settings.peerSpecificBonds.{addr}");
                let a: Address = (addr.len() == 10)
                    .then(|| addr.parse().ok())
                    .flatten()
                    .ok_or_else(|| ConfigError::Value {
                        key: key.clone(),
                        reason: "not a 10-digit hex ZeroTier address".into(),
                    })?;
                let name = string(name, &key)?;
                cfg.check_name(name, &key)?;
                cfg.peer_specific.insert(a, name.to_string());
            }
        }
        Ok(cfg)
    }

    fn check_name(&self, name: &str, key: &str) -> Result<(), ConfigError> {
        if BasePolicy::from_name(name).is_some() || self.policies.contains_key(name) {
            Ok(())
        } else {
            Err(ConfigError::Value {
                key: key.to_string(),
                reason: format!("unknown bonding policy \"{name}\""),
            })
        }
    }

    /// Resolves a policy name (standard or custom).
    pub fn policy(&self, name: &str) -> Option<BondPolicy> {
        self.policies
            .get(name)
            .cloned()
            .or_else(|| BasePolicy::from_name(name).map(BondPolicy::standard))
    }

    /// The policy a peer's bond uses: its `peerSpecificBonds` entry, else the default; `None`
    /// when bonding is not in use for it (no policy, or `none`). Roots and moons never get a
    /// bond; the caller checks that. spec: vl1.md §9.1
    pub fn policy_for(&self, peer: Address) -> Option<BondPolicy> {
        let name = self
            .peer_specific
            .get(&peer)
            .or(self.default_policy.as_ref())?;
        self.policy(name).filter(|p| p.base != BasePolicy::None)
    }

    /// Whether any bonding policy is configured (bonding disables the TCP fallback relay).
    /// spec: vl1.md §9.1, service.md §3.1
    pub fn in_use(&self) -> bool {
        self.default_policy
            .iter()
            .chain(self.peer_specific.values())
            .filter_map(|n| self.policy(n))
            .any(|p| p.base != BasePolicy::None)
    }
}

const POLICY_KEYS: &[&str] = &[
    "basePolicy",
    "failoverInterval",
    "upDelay",
    "downDelay",
    "packetsPerLink",
    "activeReselect",
    "linkSelectMethod",
    "linkQuality",
    "links",
];
const QUALITY_KEYS: [&str; 8] = [
    "lat_max",
    "pdv_max",
    "plr_max",
    "per_max",
    "lat_weight",
    "pdv_weight",
    "plr_weight",
    "per_weight",
];
const LINK_KEYS: &[&str] = &[
    "enabled",
    "capacity",
    "speed",
    "ipvPref",
    "mtu",
    "mode",
    "failoverTo",
];

fn parse_policy(
    name: &str,
    v: &Value,
    key: &str,
    warnings: &mut Vec<String>,
) -> Result<BondPolicy, ConfigError> {
    let o = object(v, key)?;
    for k in o.keys().filter(|k| !POLICY_KEYS.contains(&k.as_str())) {
        warnings.push(format!("{key}.{k}: not read by ZeroTier 1.14; ignored"));
    }
    let bkey = format!("{key}.basePolicy");
    let base_name = string(
        present(o, "basePolicy").ok_or_else(|| ConfigError::Value {
            key: bkey.clone(),
            reason: "required".into(),
        })?,
        &bkey,
    )?;
    let base = BasePolicy::from_name(base_name)
        .filter(|b| *b != BasePolicy::None)
        .ok_or_else(|| ConfigError::Value {
            key: bkey.clone(),
            reason: format!("\"{base_name}\" is not a standard policy other than none"),
        })?;
    let mut p = BondPolicy::standard(base);
    p.name = name.to_string();
    if let Some(v) = present(o, "failoverInterval") {
        let k = format!("{key}.failoverInterval");
        let ms = uint_ms(v, &k)?;
        if ms < MIN_FAILOVER_INTERVAL_MS {
            warnings.push(format!(
                "{k}: {ms} is below the minimum; using {MIN_FAILOVER_INTERVAL_MS}"
            ));
        }
        p.failover_interval_ms = ms.max(MIN_FAILOVER_INTERVAL_MS);
    }
    if let Some(v) = present(o, "upDelay") {
        p.up_delay_ms = uint_ms(v, &format!("{key}.upDelay"))?;
    }
    if let Some(v) = present(o, "downDelay") {
        p.down_delay_ms = uint_ms(v, &format!("{key}.downDelay"))?;
    }
    if let Some(v) = present(o, "packetsPerLink") {
        p.packets_per_link = uint(v, &format!("{key}.packetsPerLink"), "integer")?;
    }
    let reselect = present(o, "activeReselect").map(|v| (v, "activeReselect"));
    let method = present(o, "linkSelectMethod").map(|v| (v, "linkSelectMethod"));
    if reselect.is_some() && method.is_some() && reselect.map(|r| r.0) != method.map(|m| m.0) {
        return Err(ConfigError::Value {
            key: format!("{key}.linkSelectMethod"),
            reason: "disagrees with activeReselect (they are the same setting)".into(),
        });
    }
    if let Some((v, k)) = reselect.or(method) {
        let k = format!("{key}.{k}");
        let s = string(v, &k)?;
        p.link_select = LinkSelect::from_name(s).ok_or_else(|| ConfigError::Value {
            key: k,
            reason: format!("\"{s}\" is not one of always, better, failure, optimize"),
        })?;
    }
    if let Some(v) = present(o, "linkQuality") {
        let k = format!("{key}.linkQuality");
        let q = object(v, &k)?;
        let mut vals = [0f64; 8];
        let mut found = 0;
        for (i, name) in QUALITY_KEYS.iter().enumerate() {
            if let Some(x) = present(q, name) {
                let kk = format!("{k}.{name}");
                let f = x.as_f64().ok_or(ConfigError::Type {
                    key: kk.clone(),
                    expected: "number",
                })?;
                if !(f.is_finite() && f >= 0.0) {
                    return Err(ConfigError::Value {
                        key: kk,
                        reason: "must be a finite number ≥ 0".into(),
                    });
                }
                vals[i] = f;
                found += 1;
            }
        }
        if found == 8 {
            p.link_quality = LinkQuality {
                lat_max: vals[0],
                pdv_max: vals[1],
                plr_max: vals[2],
                per_max: vals[3],
                lat_weight: vals[4],
                pdv_weight: vals[5],
                plr_weight: vals[6],
                per_weight: vals[7],
            };
        } else {
            // spec: vl1.md §9.3 — only applied if all eight keys are present.
            warnings.push(format!(
                "{k}: ignored, it applies only when all eight keys are present ({found} found)"
            ));
        }
    }
    if let Some(v) = present(o, "links") {
        let k = format!("{key}.links");
        for (ifname, l) in object(v, &k)? {
            let lk = format!("{k}.{ifname}");
            let link = parse_link(l, &lk, warnings)?;
            p.links.insert(ifname.clone(), link);
        }
        for (ifname, l) in &p.links {
            if let Some(to) = &l.failover_to
                && !p.links.contains_key(to)
            {
                return Err(ConfigError::Value {
                    key: format!("{k}.{ifname}.failoverTo"),
                    reason: format!("names \"{to}\", which is not a link of this policy"),
                });
            }
        }
    }
    Ok(p)
}

fn parse_link(v: &Value, key: &str, warnings: &mut Vec<String>) -> Result<LinkConfig, ConfigError> {
    let o = object(v, key)?;
    for k in o.keys().filter(|k| !LINK_KEYS.contains(&k.as_str())) {
        warnings.push(format!("{key}.{k}: not read by ZeroTier 1.14; ignored"));
    }
    let mut l = LinkConfig::default();
    if let Some(v) = present(o, "enabled") {
        l.enabled = match v {
            Value::Bool(b) => *b,
            Value::Number(n) if n.as_u64() == Some(0) || n.as_u64() == Some(1) => {
                n.as_u64() == Some(1)
            }
            _ => {
                return Err(ConfigError::Type {
                    key: format!("{key}.enabled"),
                    expected: "true or false",
                });
            }
        };
    }
    if o.contains_key("capacity") && o.contains_key("speed") {
        return Err(ConfigError::Value {
            key: format!("{key}.speed"),
            reason: "give either capacity or speed (the older name), not both".into(),
        });
    }
    for name in ["capacity", "speed"] {
        if let Some(v) = present(o, name) {
            l.capacity = uint(v, &format!("{key}.{name}"), "integer")?;
        }
    }
    if let Some(v) = present(o, "ipvPref") {
        let k = format!("{key}.ipvPref");
        let n = v.as_u64().ok_or(ConfigError::Type {
            key: k.clone(),
            expected: "integer",
        })?;
        l.ipv_pref = IpvPref::from_code(n).ok_or_else(|| ConfigError::Value {
            key: k,
            reason: format!("{n} is not one of 0, 4, 6, 46, 64"),
        })?;
    }
    if let Some(v) = present(o, "mtu") {
        let k = format!("{key}.mtu");
        let n = uint(v, &k, "integer")?;
        l.mtu = u16::try_from(n).map_err(|_| ConfigError::Value {
            key: k,
            reason: format!("{n} is larger than 65535"),
        })?;
    }
    if let Some(v) = present(o, "mode") {
        let k = format!("{key}.mode");
        l.mode = match string(v, &k)? {
            "primary" => LinkMode::Primary,
            "spare" => LinkMode::Spare,
            s => {
                return Err(ConfigError::Value {
                    key: k,
                    reason: format!("\"{s}\" is not primary or spare"),
                });
            }
        };
    }
    if let Some(v) = present(o, "failoverTo") {
        let k = format!("{key}.failoverTo");
        let s = string(v, &k)?;
        if !s.is_empty() {
            if l.mode == LinkMode::Spare {
                // spec: vl1.md §9.3 — a spare link may not have failoverTo.
                return Err(ConfigError::Value {
                    key: k,
                    reason: "a spare link may not have failoverTo".into(),
                });
            }
            l.failover_to = Some(s.to_string());
        }
    }
    Ok(l)
}

/// A key that is present and not null.
fn present<'a>(o: &'a Map<String, Value>, k: &str) -> Option<&'a Value> {
    o.get(k).filter(|v| !v.is_null())
}

fn object<'a>(v: &'a Value, key: &str) -> Result<&'a Map<String, Value>, ConfigError> {
    v.as_object().ok_or_else(|| ConfigError::Type {
        key: key.to_string(),
        expected: "object",
    })
}

fn string<'a>(v: &'a Value, key: &str) -> Result<&'a str, ConfigError> {
    v.as_str().ok_or_else(|| ConfigError::Type {
        key: key.to_string(),
        expected: "string",
    })
}

fn uint(v: &Value, key: &str, expected: &'static str) -> Result<u32, ConfigError> {
    let n = v.as_u64().ok_or_else(|| ConfigError::Type {
        key: key.to_string(),
        expected,
    })?;
    u32::try_from(n).map_err(|_| ConfigError::Value {
        key: key.to_string(),
        reason: format!("{n} is out of range"),
    })
}

fn uint_ms(v: &Value, key: &str) -> Result<u32, ConfigError> {
    uint(v, key, "integer ms")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(doc: Value) -> ConfigError {
        BondingConfig::from_local_conf(&doc).unwrap_err()
    }

    #[test]
    fn absent_settings_means_no_bonding() {
        let c = BondingConfig::from_local_conf(&json!({})).unwrap();
        assert!(!c.in_use());
        let a: Address = "0123456789".parse().unwrap();
        assert_eq!(c.policy_for(a), None);
        let c = BondingConfig::from_local_conf(&json!({"settings": {"primaryPort": 1}})).unwrap();
        assert!(!c.in_use());
    }

    #[test]
    fn standard_default_policy() {
        let c = BondingConfig::from_local_conf(
            &json!({"settings": {"defaultBondingPolicy": "active-backup"}}),
        )
        .unwrap();
        assert!(c.in_use());
        let p = c.policy_for("0123456789".parse().unwrap()).unwrap();
        assert_eq!(p, BondPolicy::standard(BasePolicy::ActiveBackup));
        assert_eq!(p.failover_interval_ms, 5000);
        assert_eq!(p.packets_per_link, 64);
        assert_eq!(p.link_select, LinkSelect::Always);
        let c =
            BondingConfig::from_local_conf(&json!({"settings": {"defaultBondingPolicy": "none"}}))
                .unwrap();
        assert!(!c.in_use());
    }

    #[test]
    fn custom_policy_overrides_its_base() {
        let doc = json!({"settings": {
            "defaultBondingPolicy": "rapid-active-backup",
            "peerSpecificBonds": {"abcdef0123": "stripes"},
            "policies": {
                "rapid-active-backup": {
                    "basePolicy": "active-backup",
                    "failoverInterval": 1000, "upDelay": 200, "downDelay": 300,
                    "linkSelectMethod": "failure",
                    "rebuildInterval": 9,
                    "links": {
                        "eth0": {"mode": "primary", "failoverTo": "wlan0", "capacity": 1000},
                        "wlan0": {"mode": "spare", "ipvPref": 46, "speed": 100, "mtu": 1400},
                        "lte0": {"enabled": false}
                    }
                },
                "stripes": {"basePolicy": "balance-rr", "packetsPerLink": 8,
                    "linkQuality": {"lat_max": 100, "pdv_max": 10, "plr_max": 0.01, "per_max": 0.01,
                        "lat_weight": 0.5, "pdv_weight": 0.1, "plr_weight": 0.3, "per_weight": 0.1}}
            }
        }});
        let c = BondingConfig::from_local_conf(&doc).unwrap();
        let p = c.policy_for("0000000001".parse().unwrap()).unwrap();
        assert_eq!(p.name, "rapid-active-backup");
        assert_eq!(p.base, BasePolicy::ActiveBackup);
        assert_eq!(
            (p.failover_interval_ms, p.up_delay_ms, p.down_delay_ms),
            (1000, 200, 300)
        );
        assert_eq!(p.link_select, LinkSelect::Failure);
        assert_eq!(p.packets_per_link, 64, "not overridden: the base's default");
        let eth0 = p.link("eth0");
        assert_eq!(eth0.failover_to.as_deref(), Some("wlan0"));
        assert_eq!(eth0.capacity, 1000);
        let wlan0 = p.link("wlan0");
        assert_eq!(
            (wlan0.mode, wlan0.ipv_pref, wlan0.capacity, wlan0.mtu),
            (LinkMode::Spare, IpvPref::V4Preferred, 100, 1400)
        );
        assert!(!p.link("lte0").enabled);
        assert_eq!(p.link("docker0").mode, LinkMode::Spare, "unlisted = spare");
        assert_eq!(p.link_order("eth0"), 0);
        assert_eq!(p.link_order("docker0"), 3);
        assert_eq!(
            c.warnings,
            [
                "settings.policies.rapid-active-backup.rebuildInterval: not read by ZeroTier 1.14; ignored"
            ]
        );
        let s = c.policy_for("abcdef0123".parse().unwrap()).unwrap();
        assert_eq!((s.base, s.packets_per_link), (BasePolicy::BalanceRr, 8));
        assert_eq!(s.link_quality.lat_max, 100.0);
        assert_eq!(s.link_quality.plr_weight, 0.3);
        assert_eq!(s.link("anything").mode, LinkMode::Primary);
    }

    #[test]
    fn partial_link_quality_and_low_failover_are_warnings() {
        let doc = json!({"settings": {"policies": {"p": {"basePolicy": "balance-xor",
            "failoverInterval": 100, "linkQuality": {"lat_max": 1}}}}});
        let c = BondingConfig::from_local_conf(&doc).unwrap();
        let p = c.policy("p").unwrap();
        assert_eq!(p.failover_interval_ms, 500);
        assert_eq!(p.link_quality, LinkQuality::default());
        assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
        assert!(!c.in_use(), "a policy nobody uses");
    }

    #[test]
    fn malformed_config_names_the_key() {
        let cases: Vec<(Value, &str, &str)> = vec![
            (
                json!({"settings": {"policies": {"fast": {"basePolicy": "active-backup", "failoverInterval": "1s"}}}}),
                "settings.policies.fast.failoverInterval",
                "settings.policies.fast.failoverInterval: expected integer ms",
            ),
            (
                json!({"settings": {"policies": {"fast": {"basePolicy": "active-backup", "upDelay": -5}}}}),
                "settings.policies.fast.upDelay",
                "settings.policies.fast.upDelay: expected integer ms",
            ),
            (
                json!({"settings": {"policies": {"fast": {"failoverInterval": 1000}}}}),
                "settings.policies.fast.basePolicy",
                "settings.policies.fast.basePolicy: required",
            ),
            (
                json!({"settings": {"policies": {"fast": {"basePolicy": "balance-fast"}}}}),
                "settings.policies.fast.basePolicy",
                "",
            ),
            (
                json!({"settings": {"policies": {"balance-rr": {"basePolicy": "balance-rr"}}}}),
                "settings.policies.balance-rr",
                "",
            ),
            (
                json!({"settings": {"defaultBondingPolicy": "nope"}}),
                "settings.defaultBondingPolicy",
                "settings.defaultBondingPolicy: unknown bonding policy \"nope\"",
            ),
            (
                json!({"settings": {"defaultBondingPolicy": 3}}),
                "settings.defaultBondingPolicy",
                "settings.defaultBondingPolicy: expected string",
            ),
            (
                json!({"settings": {"peerSpecificBonds": {"xyz": "broadcast"}}}),
                "settings.peerSpecificBonds.xyz",
                "",
            ),
            (
                json!({"settings": {"peerSpecificBonds": {"0123456789": "p2"}}}),
                "settings.peerSpecificBonds.0123456789",
                "",
            ),
            (
                json!({"settings": {"policies": {"p": {"basePolicy": "active-backup", "activeReselect": "sometimes"}}}}),
                "settings.policies.p.activeReselect",
                "",
            ),
            (
                json!({"settings": {"policies": {"p": {"basePolicy": "active-backup", "links": {"eth0": {"ipvPref": 5}}}}}}),
                "settings.policies.p.links.eth0.ipvPref",
                "settings.policies.p.links.eth0.ipvPref: 5 is not one of 0, 4, 6, 46, 64",
            ),
            (
                json!({"settings": {"policies": {"p": {"basePolicy": "active-backup", "links": {"eth0": {"mode": "spare", "failoverTo": "eth1"}, "eth1": {}}}}}}),
                "settings.policies.p.links.eth0.failoverTo",
                "settings.policies.p.links.eth0.failoverTo: a spare link may not have failoverTo",
            ),
            (
                json!({"settings": {"policies": {"p": {"basePolicy": "active-backup", "links": {"eth0": {"failoverTo": "eth9"}}}}}}),
                "settings.policies.p.links.eth0.failoverTo",
                "",
            ),
            (
                json!({"settings": {"policies": {"p": {"basePolicy": "active-backup", "links": {"eth0": {"enabled": "yes"}}}}}}),
                "settings.policies.p.links.eth0.enabled",
                "",
            ),
            (
                json!({"settings": {"policies": {"p": {"basePolicy": "active-backup", "links": {"eth0": {"mtu": 70000}}}}}}),
                "settings.policies.p.links.eth0.mtu",
                "",
            ),
            (
                json!({"settings": {"policies": {"p": {"basePolicy": "active-backup", "links": {"eth0": 7}}}}}),
                "settings.policies.p.links.eth0",
                "settings.policies.p.links.eth0: expected object",
            ),
            (
                json!({"settings": {"policies": {"p": {"basePolicy": "balance-aware", "linkQuality": {"lat_max": "x"}}}}}),
                "settings.policies.p.linkQuality.lat_max",
                "",
            ),
            (
                json!({"settings": {"policies": {"p": {"basePolicy": "balance-rr", "packetsPerLink": 1.5}}}}),
                "settings.policies.p.packetsPerLink",
                "",
            ),
            (
                json!({"settings": {"policies": {"p": {"basePolicy": "balance-rr", "failoverInterval": 5_000_000_000u64}}}}),
                "settings.policies.p.failoverInterval",
                "",
            ),
            (
                json!({"settings": {"policies": []}}),
                "settings.policies",
                "",
            ),
            (json!({"settings": 5}), "settings", ""),
        ];
        let n = cases.len();
        for (doc, key, text) in cases {
            let e = err(doc);
            assert_eq!(e.key(), key, "{e}");
            assert!(e.to_string().starts_with(key), "{e}");
            if !text.is_empty() {
                assert_eq!(e.to_string(), text);
            }
        }
        assert_eq!(n, 21);
    }
}
