//! Turning a [`ConfigPlan`] into signed credentials, a `NetworkConfig` and signed chunks; the
//! deauthorization revocation. spec: controller.md §4.2–§4.9, §5.2; vl2.md §9, §11, §13

use std::net::IpAddr;

use ipnet::IpNet;
use rand_core::RngCore;
use serde_json::Value;
use weft_wire::credential::{
    Capability, Com, Coo, CredentialError, CredentialType, NetworkCredentials, Revocation, Tag,
    Thing,
};
use weft_wire::netconf::chunk::ChunkError;
use weft_wire::netconf::{
    self, Dns, NetworkConfig, NetworkType, ROLE_ACTIVE_BRIDGE, Route, Specialist, Sso,
};
use weft_wire::rules::{MAX_CAPABILITY_RULES, MAX_NETWORK_RULES, Rule, RuleKind};
use weft_wire::{Address, Identity, NetworkId};

use crate::plan::ConfigPlan;

/// Revocation flag: fast propagate. spec: vl2.md §13.4
pub const REVOCATION_FLAG_FAST_PROPAGATE: u64 = 0x1;
/// ID of the one certificate of ownership the controller issues. spec: controller.md §4.7
pub const COO_ID: u32 = 1;

/// Errors while issuing (sent to the member as OBJ_NOT_FOUND, controller.md §4.7).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IssueError {
    /// A credential could not be created or signed.
    #[error("signing a credential failed: {source}")]
    Signing {
        /// The credential error.
        #[from]
        source: CredentialError,
    },
    /// The serialized config could not be chunked.
    #[error("chunking the config failed: {source}")]
    Chunking {
        /// The chunking error.
        #[from]
        source: ChunkError,
    },
}

/// Parses JSON rules, skipping the ones that do not parse, keeping at most `max`.
/// spec: controller.md §4.2
fn rules_from_json(values: &[Value], max: usize) -> Vec<Rule> {
    values
        .iter()
        .filter_map(|v| weft_wire::rules::json::rule_from_json(v).ok().flatten())
        .take(max)
        .collect()
}

fn things(static_ips: &[IpNet]) -> Vec<Thing> {
    static_ips
        .iter()
        .map(|n| match n.addr() {
            IpAddr::V4(a) => Thing::Ipv4(a),
            IpAddr::V6(a) => Thing::Ipv6(a),
        })
        .collect()
}

/// The complete, signed network config for `member`. spec: controller.md §4
pub fn build_config(
    signer: &Identity,
    plan: &ConfigPlan,
    member: &Identity,
) -> Result<NetworkConfig, IssueError> {
    let (nwid, ts, to) = (plan.nwid, plan.timestamp, plan.issued_to);
    let mut nc = NetworkConfig::new(nwid, to);
    nc.timestamp = ts;
    nc.credential_time_max_delta = plan.credential_time_max_delta;
    nc.revision = plan.revision;
    nc.remote_trace_target = plan.remote_trace_target;
    nc.remote_trace_level = u64::from(plan.remote_trace_level);
    nc.flags = plan.flags;
    nc.multicast_limit = plan.multicast_limit;
    nc.network_type = if plan.private {
        NetworkType::Private
    } else {
        NetworkType::Public
    };
    nc.name = plan.name.clone();
    nc.mtu = plan.mtu;
    // §4.2: clients without a rules engine get a single ACCEPT
    nc.rules = match &plan.rules {
        None => vec![Rule::new(RuleKind::Accept)],
        Some(r) => rules_from_json(r, MAX_NETWORK_RULES),
    };
    // §4.3
    for (id, rules) in &plan.capabilities {
        let rules = rules_from_json(rules, MAX_CAPABILITY_RULES);
        nc.capabilities
            .push(Capability::issue(nwid, ts, *id, rules, to, signer)?);
    }
    // §4.4
    for &(id, value) in &plan.tags {
        nc.tags.push(Tag::issue(nwid, ts, id, value, to, signer)?);
    }
    // §4.1 S: active bridges, sorted
    nc.specialists = plan
        .active_bridges
        .iter()
        .map(|&address| Specialist {
            address,
            roles: ROLE_ACTIVE_BRIDGE,
        })
        .collect();
    // §4.5
    nc.routes = plan
        .routes
        .iter()
        .map(|r| Route {
            target: r.target,
            via: r.via,
            flags: 0,
            metric: 0,
        })
        .collect();
    nc.static_ips = plan.static_ips.clone();
    // §4.6 (the wire type has no empty slots: unparseable servers are left out)
    nc.dns = Dns {
        domain: plan.dns.domain.clone(),
        servers: plan.dns.servers.iter().flatten().copied().collect(),
    };
    // §4.7
    if !plan.static_ips.is_empty() {
        nc.coos.push(Coo::issue(
            nwid,
            ts,
            COO_ID,
            things(&plan.static_ips),
            to,
            signer,
        )?);
    }
    nc.com = Some(Com::issue(
        ts,
        plan.credential_time_max_delta,
        nwid,
        member,
        signer,
    )?);
    // §4.1 SSO, file-database flavour (version 0, no URL)
    nc.sso = Sso {
        version: 0,
        enabled: plan.sso.enabled,
        authentication_expiry_time: plan.sso.expiry_ms,
        ..Sso::default()
    };
    Ok(nc)
}

/// Builds, serializes and chunks the config with a random non-zero update ID.
/// spec: controller.md §4.9, vl2.md §9.2
pub fn sign_config(
    signer: &Identity,
    plan: &ConfigPlan,
    member: &Identity,
    rng: &mut impl RngCore,
) -> Result<Vec<Vec<u8>>, IssueError> {
    let dict = build_config(signer, plan, member)?.to_bytes();
    let mut update_id = 0;
    while update_id == 0 {
        update_id = rng.next_u64();
    }
    Ok(netconf::chunk::sign_chunks(
        &dict, plan.nwid, update_id, signer,
    )?)
}

/// The NETWORK_CREDENTIALS payload revoking `target`'s COM as of `now_ms`:
/// `00 | 0000 | 0000 | 0001 | revocation | 0000`. spec: controller.md §5.2, vl2.md §13.4
pub fn revocation_credentials(
    signer: &Identity,
    id: u32,
    nwid: NetworkId,
    target: Address,
    now_ms: i64,
) -> Result<Vec<u8>, IssueError> {
    let rev = Revocation::issue(
        id,
        nwid,
        0,
        now_ms,
        REVOCATION_FLAG_FAST_PROPAGATE,
        target,
        CredentialType::Com,
        signer,
    )?;
    let creds = NetworkCredentials {
        revocations: vec![rev],
        ..NetworkCredentials::default()
    };
    let mut out = Vec::new();
    creds.encode(&mut out);
    Ok(out)
}
