//! What goes into a member's network configuration: every decision of controller.md §4, before
//! anything is signed or encoded. Pure: the network and member records in, a [`ConfigPlan`] out,
//! and the member record updated with what it gained (default capabilities and tags, pool IPs).

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;
use rand_core::RngCore;
use serde_json::Value;
use weft_wire::dictionary::Dictionary;
use weft_wire::{Address, NetworkId};

use crate::ipalloc::{self, AssignInput, ConfigRoute};
use crate::store::{DnsRecord, MemberRecord, NetworkRecord};

/// Default `ctmd` (credential time max delta, ms). spec: controller.md §4.1
pub const DEFAULT_CTMD: i64 = 1_800_000;
/// Smallest `ctmd` the controller issues.
pub const MIN_CTMD: i64 = 300_000;
/// Largest `ctmd` the controller issues.
pub const MAX_CTMD: i64 = 7_200_000;
/// Config flag: broadcast enabled. spec: vl2.md §11 (`f`)
pub const FLAG_ENABLE_BROADCAST: u64 = 0x02;
/// Config flag: IPv6 NDP emulation (an rfc4193 or 6plane address is assigned).
pub const FLAG_NDP_EMULATION: u64 = 0x04;
/// Longest network name, in bytes. spec: controller.md §4.1
pub const MAX_NAME_BYTES: usize = 127;
/// Longest DNS domain, in bytes. spec: controller.md §4.6
pub const MAX_DNS_DOMAIN_BYTES: usize = 127;
/// Most capabilities in a config. spec: controller.md §4.3
pub const MAX_CAPABILITIES: usize = 128;
/// Most tags in a config. spec: controller.md §4.4
pub const MAX_TAGS: usize = 128;

/// SSO fields of the config (file-database flavour: version 0). spec: controller.md §4.1
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SsoPlan {
    /// `ssoe`.
    pub enabled: bool,
    /// `aexpt` (member `authenticationExpiryTime`), written only when enabled.
    pub expiry_ms: i64,
}

/// DNS of the config. spec: controller.md §4.6
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsPlan {
    /// Search domain (empty when none).
    pub domain: String,
    /// Up to 4 servers; unparseable entries are empty slots.
    pub servers: Vec<Option<IpAddr>>,
}

/// Everything a config will say, before signing.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigPlan {
    /// `nwid`.
    pub nwid: NetworkId,
    /// `ts` (now).
    pub timestamp: i64,
    /// `ctmd`.
    pub credential_time_max_delta: i64,
    /// `r`.
    pub revision: u64,
    /// `id`.
    pub issued_to: Address,
    /// `tt`.
    pub remote_trace_target: Option<Address>,
    /// `tl`.
    pub remote_trace_level: u32,
    /// `f`.
    pub flags: u64,
    /// `ml`.
    pub multicast_limit: u32,
    /// `t`: private (true) or public.
    pub private: bool,
    /// `n` (at most 127 bytes).
    pub name: String,
    /// `mtu` (clamped).
    pub mtu: u32,
    /// `R` in JSON form; `None` = the client has no rules engine: a single ACCEPT.
    pub rules: Option<Vec<Value>>,
    /// `CAP`: (id, JSON rules) in member order.
    pub capabilities: Vec<(u32, Vec<Value>)>,
    /// `TAG`: (id, value), ascending id.
    pub tags: Vec<(u32, u32)>,
    /// `RT`.
    pub routes: Vec<ConfigRoute>,
    /// `I` (also the things of the COO).
    pub static_ips: Vec<IpNet>,
    /// `DNS`.
    pub dns: DnsPlan,
    /// `S`: active bridges, sorted.
    pub active_bridges: Vec<Address>,
    /// SSO keys.
    pub sso: SsoPlan,
}

/// What the network looks like from all its members: active bridges and every IP in use.
/// spec: controller.md §3 step 2
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkSummary {
    /// Members with `activeBridge`, sorted.
    pub active_bridges: Vec<Address>,
    /// Every IP in any member's `ipAssignments`.
    pub allocated: BTreeSet<IpAddr>,
}

impl NetworkSummary {
    /// Summarizes the members of a network.
    pub fn of(members: &[MemberRecord]) -> Self {
        let mut s = NetworkSummary::default();
        for m in members {
            if m.active_bridge {
                s.active_bridges.push(m.address);
            }
            s.allocated.extend(m.ip_assignments.iter().copied());
        }
        s.active_bridges.sort();
        s.active_bridges.dedup();
        s
    }
}

fn truncate_utf8(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// Plans the config for `member` (authorized) and updates the member with what it gains.
/// `new_member`: the member had no record before this request (default capabilities, §4.3).
/// spec: controller.md §4.1–§4.6
#[allow(clippy::too_many_arguments)]
pub fn plan(
    now_ms: i64,
    network: &NetworkRecord,
    member: &mut MemberRecord,
    new_member: bool,
    summary: &NetworkSummary,
    metadata: &Dictionary,
    rng: &mut impl RngCore,
) -> ConfigPlan {
    // §4.1 scalars
    let ctmd = network
        .certificate_timeout_window_size
        .unwrap_or(DEFAULT_CTMD)
        .clamp(MIN_CTMD, MAX_CTMD);
    let (tt, tl) = match member.remote_trace_target {
        Some(t) => (Some(t), member.remote_trace_level),
        None => (network.remote_trace_target, network.remote_trace_level),
    };

    // §4.2–§4.4 rules, capabilities, tags: only for clients with a rules engine
    let rules_engine = metadata.get_u64("revr").unwrap_or(0) != 0;
    let mut capabilities = Vec::new();
    let mut tags = Vec::new();
    let rules = if rules_engine {
        if new_member {
            for c in network.capabilities.iter().filter(|c| c.default) {
                if !member.capabilities.contains(&c.id) {
                    member.capabilities.push(c.id);
                }
            }
        }
        for id in &member.capabilities {
            if capabilities.len() >= MAX_CAPABILITIES {
                break;
            }
            if let Some(c) = network.capabilities.iter().find(|c| c.id == *id) {
                capabilities.push((c.id, c.rules.clone()));
            }
        }
        for t in &network.tags {
            if let Some(d) = t.default
                && !member.tags.iter().any(|(id, _)| *id == t.id)
            {
                member.tags.push((t.id, d));
            }
        }
        tags = member.tags.clone();
        tags.sort_by_key(|(id, _)| *id);
        tags.dedup_by_key(|(id, _)| *id);
        tags.truncate(MAX_TAGS);
        Some(network.rules.clone())
    } else {
        None
    };

    // §4.5 routes and addresses
    let routes = ipalloc::config_routes(&network.routes);
    let assigned = member.ip_assignments.clone();
    let assignment = ipalloc::assign(
        &AssignInput {
            nwid: network.id,
            member: member.address,
            routes: &routes,
            pools: &network.ip_assignment_pools,
            v4_mode: network.v4_assign_mode,
            v6_mode: network.v6_assign_mode,
            no_auto_assign: member.no_auto_assign_ips,
            assigned: &assigned,
            taken: &summary.allocated,
        },
        rng,
    );
    member
        .ip_assignments
        .extend(assignment.allocated.iter().copied());

    let mut flags = 0;
    if network.enable_broadcast {
        flags |= FLAG_ENABLE_BROADCAST;
    }
    if assignment.ndp_emulation {
        flags |= FLAG_NDP_EMULATION;
    }

    // §4.6 DNS
    let dns = match &network.dns {
        DnsRecord::Set { domain, servers } => DnsPlan {
            domain: if domain.len() <= MAX_DNS_DOMAIN_BYTES {
                domain.clone()
            } else {
                String::new()
            },
            servers: servers.iter().take(4).map(|s| s.parse().ok()).collect(),
        },
        DnsRecord::Unset => DnsPlan::default(),
    };

    ConfigPlan {
        nwid: network.id,
        timestamp: now_ms,
        credential_time_max_delta: ctmd,
        revision: network.revision,
        issued_to: member.address,
        remote_trace_target: tt,
        remote_trace_level: tl,
        flags,
        multicast_limit: network.multicast_limit,
        private: network.private,
        name: truncate_utf8(&network.name, MAX_NAME_BYTES),
        mtu: network.mtu.clamp(1280, 10000),
        rules,
        capabilities,
        tags,
        routes,
        static_ips: assignment.static_ips,
        dns,
        active_bridges: summary.active_bridges.clone(),
        sso: SsoPlan {
            enabled: network.sso_enabled && !member.sso_exempt,
            expiry_ms: member.authentication_expiry_time,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{CapabilityRecord, TagRecord};
    use rand_chacha::ChaCha8Rng;
    use rand_core::SeedableRng;

    const NWID: NetworkId = NetworkId(0x7c55a8da82c90312);

    fn meta(revr: bool) -> Dictionary {
        let mut d = Dictionary::new();
        if revr {
            d.add_u64("revr", 1).unwrap();
        }
        d
    }

    fn net() -> NetworkRecord {
        let mut n = NetworkRecord::new(NWID, 0);
        n.capabilities = vec![CapabilityRecord {
            id: 7,
            default: true,
            rules: vec![serde_json::json!({"type":"ACTION_DROP"})],
        }];
        n.tags = vec![
            TagRecord {
                id: 1000,
                default: Some(100),
            },
            TagRecord {
                id: 2000,
                default: None,
            },
            TagRecord {
                id: 5,
                default: Some(9),
            },
        ];
        n
    }

    #[test]
    fn scalars_and_clamps() {
        let mut n = NetworkRecord::new(NWID, 0);
        n.name = "é".repeat(100); // 200 bytes: cut at a char boundary ≤ 127
        n.mtu = 99_999;
        n.certificate_timeout_window_size = Some(1);
        n.private = false;
        n.enable_broadcast = false;
        n.revision = 6;
        let mut m = MemberRecord::new(NWID, "0a33989140".parse().unwrap(), 0);
        let p = plan(
            42,
            &n,
            &mut m,
            false,
            &NetworkSummary::default(),
            &meta(false),
            &mut ChaCha8Rng::seed_from_u64(1),
        );
        assert_eq!(p.name.len(), 126);
        assert_eq!(p.mtu, 10000);
        assert_eq!(p.credential_time_max_delta, MIN_CTMD);
        assert_eq!(p.flags, 0);
        assert!(!p.private);
        assert_eq!(p.revision, 6);
        assert_eq!(p.timestamp, 42);
        assert_eq!(p.rules, None);
    }

    #[test]
    fn no_rules_engine_means_no_caps_tags_and_nothing_persisted() {
        let mut m = MemberRecord::new(NWID, "0a33989140".parse().unwrap(), 0);
        let p = plan(
            1,
            &net(),
            &mut m,
            true,
            &NetworkSummary::default(),
            &meta(false),
            &mut ChaCha8Rng::seed_from_u64(1),
        );
        assert!(p.capabilities.is_empty() && p.tags.is_empty());
        assert!(m.capabilities.is_empty() && m.tags.is_empty());
    }

    #[test]
    fn default_caps_only_for_new_members_default_tags_always() {
        // spec: controller.md §4.3 quirk, §4.4
        let mut m = MemberRecord::new(NWID, "0a33989140".parse().unwrap(), 0);
        m.tags = vec![(5, 1)];
        let p = plan(
            1,
            &net(),
            &mut m,
            false,
            &NetworkSummary::default(),
            &meta(true),
            &mut ChaCha8Rng::seed_from_u64(1),
        );
        assert!(p.capabilities.is_empty());
        assert!(m.capabilities.is_empty());
        // the member's own value of tag 5 wins; 1000 gets its default; 2000 has none
        assert_eq!(m.tags, vec![(5, 1), (1000, 100)]);
        assert_eq!(p.tags, vec![(5, 1), (1000, 100)]);

        let mut m = MemberRecord::new(NWID, "0a33989140".parse().unwrap(), 0);
        let p = plan(
            1,
            &net(),
            &mut m,
            true,
            &NetworkSummary::default(),
            &meta(true),
            &mut ChaCha8Rng::seed_from_u64(1),
        );
        assert_eq!(m.capabilities, vec![7]);
        assert_eq!(p.capabilities.len(), 1);
        assert_eq!(p.capabilities[0].0, 7);
        // member order is kept; ascending ids in the config
        assert_eq!(m.tags, vec![(1000, 100), (5, 9)]);
        assert_eq!(p.tags, vec![(5, 9), (1000, 100)]);
        assert_eq!(p.rules, Some(crate::store::default_rules()));
    }

    #[test]
    fn member_trace_target_overrides_network() {
        let mut n = NetworkRecord::new(NWID, 0);
        n.remote_trace_target = Some("1111111111".parse().unwrap());
        n.remote_trace_level = 10;
        let mut m = MemberRecord::new(NWID, "0a33989140".parse().unwrap(), 0);
        let mut r = ChaCha8Rng::seed_from_u64(1);
        let s = NetworkSummary::default();
        let p = plan(1, &n, &mut m.clone(), false, &s, &meta(false), &mut r);
        assert_eq!(p.remote_trace_target, n.remote_trace_target);
        assert_eq!(p.remote_trace_level, 10);
        m.remote_trace_target = Some("2222222222".parse().unwrap());
        m.remote_trace_level = 20;
        let p = plan(1, &n, &mut m, false, &s, &meta(false), &mut r);
        assert_eq!(p.remote_trace_target, m.remote_trace_target);
        assert_eq!(p.remote_trace_level, 20);
    }

    #[test]
    fn dns_and_summary() {
        let mut n = NetworkRecord::new(NWID, 0);
        n.dns = DnsRecord::Set {
            domain: "zt.example".into(),
            servers: vec![
                "10.147.17.1".into(),
                "bogus".into(),
                "fd12:3456:789a::1".into(),
                "1.1.1.1".into(),
                "8.8.8.8".into(),
            ],
        };
        let mut members = vec![
            MemberRecord::new(NWID, "7c55a8da82".parse().unwrap(), 0),
            MemberRecord::new(NWID, "0a33989140".parse().unwrap(), 0),
        ];
        members[0].active_bridge = true;
        members[1].active_bridge = true;
        members[1].ip_assignments = vec!["10.0.0.1".parse().unwrap()];
        let s = NetworkSummary::of(&members);
        assert_eq!(
            s.active_bridges,
            vec![members[1].address, members[0].address]
        );
        assert!(s.allocated.contains(&"10.0.0.1".parse::<IpAddr>().unwrap()));
        let mut m = members[0].clone();
        let p = plan(
            1,
            &n,
            &mut m,
            false,
            &s,
            &meta(false),
            &mut ChaCha8Rng::seed_from_u64(1),
        );
        assert_eq!(p.dns.domain, "zt.example");
        assert_eq!(
            p.dns.servers,
            vec![
                Some("10.147.17.1".parse().unwrap()),
                None,
                Some("fd12:3456:789a::1".parse().unwrap()),
                Some("1.1.1.1".parse().unwrap()),
            ]
        );
        assert_eq!(p.active_bridges, s.active_bridges);
    }
}
