//! The controller state machine: config requests, pushes, deauthorization, SSO expiry.
//! spec: controller.md §2, §3, §5
//!
//! Sans-IO: the driver calls [`Controller::handle_request`] for each NETWORK_CONFIG_REQUEST
//! addressed to this node, the `*_changed` methods after it changed records (or uses the admin
//! helpers, which do both), [`Controller::handle_timeout`] when [`Controller::poll_timeout`]
//! says so, and after each call drains [`Controller::poll_output`] and sends what it returns.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;

use rand_core::RngCore;
use serde_json::{Value, json};
use weft_wire::dictionary::Dictionary;
use weft_wire::verbs::ErrorCode;
use weft_wire::{Address, Identity, NetworkId};

use crate::issue::{self, IssueError};
use crate::plan::{self, NetworkSummary};
use crate::store::{
    AuditAction, AuditEntry, Erasure, MemberRecord, NetworkRecord, Store, StoreError,
    credential_type,
};

/// Minimum spacing of genuine requests from one member for one network. spec: controller.md §2
pub const REQUEST_RATE_LIMIT_MS: i64 = 1000;
/// A member is online while its last request is younger than this. spec: controller.md §5
pub const ONLINE_WINDOW_MS: i64 = 120_000;
/// How long a config sent by the local controller authorizes multicast. spec: vl2.md §7.3
pub const AUTHORIZED_RECENTLY_MS: i64 = 180_000;
/// Request packet id of the node's own in-process requests. spec: controller.md §1
pub const IN_PROCESS_REQUEST_ID: u64 = u64::MAX;
/// The actor the admin helpers called directly on [`Controller`] record in the audit log.
pub const DEFAULT_ACTOR: &str = "api";
const DAY_MS: i64 = 24 * 3600 * 1000;

/// Data-protection settings (see `DATA.md` at the repository root).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControllerConfig {
    /// Store members' physical (underlay) addresses, with first/last-seen times, in the store.
    /// Off by default: the last address of each member is then kept in memory only (as the
    /// reference does) and is gone at restart.
    pub record_physical_addresses: bool,
    /// Recorded physical addresses last seen longer ago than this are deleted (ms; default 30
    /// days). The in-memory last address is forgotten after the same time without requests.
    pub physical_address_retention_ms: i64,
    /// Audit entries older than this are deleted (ms; default 365 days).
    pub audit_retention_ms: i64,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            record_physical_addresses: false,
            physical_address_retention_ms: 30 * DAY_MS,
            audit_retention_ms: 365 * DAY_MS,
        }
    }
}

/// Errors of the controller (not sent to members).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControllerError {
    /// The storage back-end failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The controller identity has no private key, so it cannot sign anything.
    #[error("controller identity {address} has no private key")]
    NoPrivateKey {
        /// The identity's address.
        address: Address,
    },
}

/// Something the driver must send.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ControllerOutput {
    /// A network config: `OK(in-re NETWORK_CONFIG_REQUEST, in_re)` per chunk when `in_re` is
    /// set, otherwise a `NETWORK_CONFIG` push per chunk. Each chunk is the full chunk structure
    /// of vl2.md §9.1 (from the nwid through the signature). Send compressed.
    Config {
        /// The member.
        to: Address,
        /// The request packet id answered, or `None` for a push.
        in_re: Option<u64>,
        /// The signed chunks, in order.
        chunks: Vec<Vec<u8>>,
    },
    /// `ERROR(in-re NETWORK_CONFIG_REQUEST, in_re)` with `code` and `payload` after the code
    /// (nwid, plus `len(2) | dictionary` for NETWORK_AUTHENTICATION_REQUIRED).
    Error {
        /// The member.
        to: Address,
        /// The request packet id.
        in_re: u64,
        /// The error code.
        code: ErrorCode,
        /// What follows the code.
        payload: Vec<u8>,
    },
    /// A `NETWORK_CREDENTIALS` packet carrying one revocation
    /// (`00 | 0000 | 0000 | 0001 | revocation | 0000`, vl2.md §7.6).
    Credentials {
        /// The recipient.
        to: Address,
        /// The NETWORK_CREDENTIALS payload.
        payload: Vec<u8>,
    },
}

/// In-memory status of one (network, member): what the reference keeps outside the database.
#[derive(Debug, Clone, Default)]
struct MemberStatus {
    /// Last genuine request (rate limit and "online").
    last_request_ms: Option<i64>,
    /// Identity and metadata of the last authorized genuine request (for pushes).
    identity: Option<Identity>,
    metadata: Option<Dictionary>,
    /// Last time a config was sent (vl2.md §7.3 multicast authorization).
    authorized_at_ms: Option<i64>,
    /// Source address of the last genuine direct request and when it was seen (memory only
    /// unless recording is enabled; forgotten after the retention window).
    physical: Option<(SocketAddr, i64)>,
}

/// The network controller. See the module documentation for the calling pattern.
#[derive(Debug)]
pub struct Controller<S: Store> {
    identity: Identity,
    store: S,
    status: BTreeMap<(NetworkId, Address), MemberStatus>,
    sso_checks: BTreeSet<(i64, NetworkId, Address)>,
    outputs: VecDeque<ControllerOutput>,
    config: ControllerConfig,
    /// When the oldest retained physical address or audit entry expires, if any.
    next_expiry_ms: Option<i64>,
    /// Per network: the §3 step 2 summary and when it was read from the store. Reading every
    /// member on every request would make request cost grow with the network; the summary is
    /// re-read at most every [`SUMMARY_TTL_MS`] (so changes made by other controllers on a shared
    /// database show within that), dropped on this controller's own member changes, and extended
    /// with what this controller saves.
    summaries: HashMap<NetworkId, (i64, NetworkSummary)>,
}

/// How long a cached network summary is used before it is read again.
const SUMMARY_TTL_MS: i64 = 2_000;

impl<S: Store> Controller<S> {
    /// A controller signing with `identity` (must hold its private key) over `store`, with the
    /// default [`ControllerConfig`] (physical addresses in memory only).
    pub fn new(identity: Identity, store: S) -> Result<Self, ControllerError> {
        Self::with_config(identity, store, ControllerConfig::default())
    }

    /// [`Self::new`] with data-protection settings.
    pub fn with_config(
        identity: Identity,
        store: S,
        config: ControllerConfig,
    ) -> Result<Self, ControllerError> {
        if !identity.has_private() {
            return Err(ControllerError::NoPrivateKey {
                address: identity.address(),
            });
        }
        let mut ctl = Controller {
            identity,
            store,
            status: BTreeMap::new(),
            summaries: HashMap::new(),
            sso_checks: BTreeSet::new(),
            outputs: VecDeque::new(),
            config,
            next_expiry_ms: None,
        };
        ctl.next_expiry_ms = ctl.expiry_horizon()?;
        Ok(ctl)
    }

    /// The data-protection settings.
    pub fn config(&self) -> &ControllerConfig {
        &self.config
    }

    /// Changes the data-protection settings (new retention windows apply from the next
    /// [`Self::handle_timeout`] on; see [`Self::poll_timeout`]).
    pub fn set_config(&mut self, config: ControllerConfig) -> Result<(), ControllerError> {
        self.config = config;
        self.next_expiry_ms = self.expiry_horizon()?;
        Ok(())
    }

    fn physical_retention(&self) -> i64 {
        self.config.physical_address_retention_ms.max(0)
    }

    fn audit_retention(&self) -> i64 {
        self.config.audit_retention_ms.max(0)
    }

    /// When the oldest retained item expires: an item seen at `t` expires at `t + retention`.
    fn expiry_horizon(&self) -> Result<Option<i64>, ControllerError> {
        let (pr, ar) = (self.physical_retention(), self.audit_retention());
        let stored = self.store.oldest_physical_address_ms()?;
        let memory = self
            .status
            .values()
            .filter_map(|s| s.physical.map(|(_, t)| t))
            .min();
        let audit = self.store.oldest_audit_ms()?;
        Ok([
            stored.map(|t| t.saturating_add(pr)),
            memory.map(|t| t.saturating_add(pr)),
            audit.map(|t| t.saturating_add(ar)),
        ]
        .into_iter()
        .flatten()
        .min())
    }

    /// Something retained for `retention` was written at `t`.
    fn note_retained(&mut self, t: i64, retention: i64) {
        let e = t.saturating_add(retention);
        self.next_expiry_ms = Some(self.next_expiry_ms.map_or(e, |x| x.min(e)));
    }

    /// The controller's address (it serves networks `<address><24 bits>`).
    pub fn address(&self) -> Address {
        self.identity.address()
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The store, for changes made outside the controller; call the matching `*_changed`
    /// method afterwards so members hear about them.
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// The next thing to send; call until `None` after every `handle_*` / `*_changed` call.
    pub fn poll_output(&mut self) -> Option<ControllerOutput> {
        self.outputs.pop_front()
    }

    /// When [`Self::handle_timeout`] must be called next (ms), if ever: the earliest scheduled
    /// SSO expiry check, or the moment the oldest retained physical address or audit entry
    /// leaves its retention window.
    pub fn poll_timeout(&self) -> Option<i64> {
        let sso = self.sso_checks.first().map(|(t, _, _)| *t);
        [sso, self.next_expiry_ms].into_iter().flatten().min()
    }

    /// Runs due SSO expiry checks: a member whose `authenticationExpiryTime` has passed is
    /// revoked on every online member (the §5.2 broadcast). spec: controller.md §5.3
    /// Then, when due, applies the retention windows of [`ControllerConfig`]: deletes recorded
    /// physical addresses and audit entries that are as old as their window or older, and
    /// forgets in-memory physical addresses as old.
    pub fn handle_timeout(
        &mut self,
        now_ms: i64,
        rng: &mut impl RngCore,
    ) -> Result<(), ControllerError> {
        while let Some(&(t, nwid, addr)) = self.sso_checks.first() {
            if t > now_ms {
                break;
            }
            self.sso_checks.pop_first();
            if let Some(m) = self.store.member(nwid, addr)?
                && m.authentication_expiry_time <= now_ms
            {
                self.revoke(now_ms, nwid, addr, rng);
            }
        }
        if self.next_expiry_ms.is_some_and(|t| t <= now_ms) {
            self.purge(now_ms)?;
        }
        Ok(())
    }

    /// Applies the retention windows now: an item seen at `t` goes once `now ≥ t + retention`.
    fn purge(&mut self, now_ms: i64) -> Result<(), ControllerError> {
        // the stores delete what is strictly older than the cutoff
        let physical_cutoff = now_ms
            .saturating_sub(self.physical_retention())
            .saturating_add(1);
        self.store.purge_physical_addresses(physical_cutoff)?;
        for st in self.status.values_mut() {
            if st.physical.is_some_and(|(_, t)| t < physical_cutoff) {
                st.physical = None;
            }
        }
        let audit_cutoff = now_ms
            .saturating_sub(self.audit_retention())
            .saturating_add(1);
        self.store.purge_audit(audit_cutoff)?;
        self.next_expiry_ms = self.expiry_horizon()?;
        Ok(())
    }

    /// Whether this controller sent (nwid, member) a config in the last 180 s (the local
    /// controller's multicast authorization). spec: vl2.md §7.3, controller.md §4.9
    pub fn authorized_recently(&self, nwid: NetworkId, member: Address, now_ms: i64) -> bool {
        self.status
            .get(&(nwid, member))
            .and_then(|s| s.authorized_at_ms)
            .is_some_and(|t| now_ms - t < AUTHORIZED_RECENTLY_MS)
    }

    /// Whether a member is online: it requested a config less than 120 s ago and we hold its
    /// request metadata. spec: controller.md §5
    pub fn is_online(&self, nwid: NetworkId, member: Address, now_ms: i64) -> bool {
        self.status
            .get(&(nwid, member))
            .is_some_and(|s| Self::status_online(s, now_ms))
    }

    fn status_online(s: &MemberStatus, now_ms: i64) -> bool {
        s.metadata.is_some()
            && s.identity.is_some()
            && s.last_request_ms
                .is_some_and(|t| now_ms - t < ONLINE_WINDOW_MS)
    }

    fn online_members(&self, nwid: NetworkId, now_ms: i64) -> Vec<Address> {
        self.status
            .range((nwid, Address::default())..)
            .take_while(|((n, _), _)| *n == nwid)
            .filter(|(_, s)| Self::status_online(s, now_ms))
            .map(|((_, a), _)| *a)
            .collect()
    }

    /// A NETWORK_CONFIG_REQUEST from `requester` (already authenticated by VL1).
    /// `request_packet_id` 0 marks an internal push (never rate-limited, errors not sent);
    /// `physical` is the source address when the request arrived directly.
    /// spec: controller.md §2, §3
    #[allow(clippy::too_many_arguments)]
    pub fn handle_request(
        &mut self,
        now_ms: i64,
        nwid: NetworkId,
        requester: &Identity,
        metadata: &Dictionary,
        request_packet_id: u64,
        physical: Option<SocketAddr>,
        rng: &mut impl RngCore,
    ) -> Result<(), ControllerError> {
        // §2.1: only networks we own; others are ignored silently
        if nwid.controller() != self.identity.address() {
            return Ok(());
        }
        // §2.2: one genuine request per second per (network, member)
        let addr = requester.address();
        if request_packet_id != 0 {
            let st = self.status.entry((nwid, addr)).or_default();
            if st
                .last_request_ms
                .is_some_and(|t| now_ms - t <= REQUEST_RATE_LIMIT_MS)
            {
                return Ok(());
            }
            st.last_request_ms = Some(now_ms);
            if let Some(p) = physical {
                st.physical = Some((p, now_ms));
                let retention = self.physical_retention();
                self.note_retained(now_ms, retention);
            }
        }
        // The physical address is "online" bookkeeping (§3 step 1; the file DB keeps it in
        // memory); it reaches the store only when the operator enabled recording.
        let record =
            physical.filter(|_| request_packet_id != 0 && self.config.record_physical_addresses);
        self.process(
            now_ms,
            nwid,
            requester,
            metadata,
            request_packet_id,
            record,
            rng,
        )
    }

    fn error(&mut self, rid: u64, to: Address, code: ErrorCode, payload: Vec<u8>) {
        // §6: pushes (id 0) never carry errors
        if rid != 0 {
            self.outputs.push_back(ControllerOutput::Error {
                to,
                in_re: rid,
                code,
                payload,
            });
        }
    }

    /// §3, in the reference's exact order. `record_physical`: the source address to record in
    /// the store once the requester proved to be the member (recording enabled).
    #[allow(clippy::too_many_arguments)]
    fn process(
        &mut self,
        now_ms: i64,
        nwid: NetworkId,
        requester: &Identity,
        metadata: &Dictionary,
        rid: u64,
        record_physical: Option<SocketAddr>,
        rng: &mut impl RngCore,
    ) -> Result<(), ControllerError> {
        let addr = requester.address();
        let nwid_bytes = nwid.0.to_be_bytes().to_vec();
        // 2–3: network and member
        let Some(network) = self.store.network(nwid)? else {
            self.error(rid, addr, ErrorCode::OBJ_NOT_FOUND, nwid_bytes);
            return Ok(());
        };
        let stored = self.store.member(nwid, addr)?;
        // 4: defaults (a fresh record for a new member)
        let new_member = stored.is_none();
        let mut member = stored.unwrap_or_else(|| MemberRecord::new(nwid, addr, now_ms));
        // [quirk] remoteTraceLevel is reset whenever the record is re-initialized. spec: §7.3
        member.remote_trace_level = 0;
        // 5: identity pinning
        let public = requester.to_public().to_string();
        match member.identity.as_deref() {
            Some(pinned) if !pinned.is_empty() => {
                if !pinned.eq_ignore_ascii_case(&public) {
                    self.error(rid, addr, ErrorCode::NETWORK_ACCESS_DENIED, nwid_bytes);
                    return Ok(());
                }
            }
            _ => member.identity = Some(public),
        }
        // Recorded only for the member's own (identity-checked) requests of a network we have.
        if let Some(physical) = record_physical {
            self.store
                .record_physical_address(nwid, addr, physical, now_ms)?;
            self.note_retained(now_ms, self.physical_retention());
        }
        // 6: canonical ids
        member.id = addr;
        member.address = addr;
        member.nwid = nwid;
        // 7: authorization
        if !member.authorized {
            let token = metadata
                .get_str("a")
                .filter(|a| a.len() > 6)
                .and_then(|a| a.strip_prefix("token:").map(str::to_owned));
            let via = if !network.private {
                Some((credential_type::PUBLIC, None))
            } else {
                token
                    .filter(|t| network.auth_tokens.allows(t, now_ms))
                    .map(|t| (credential_type::TOKEN, Some(t)))
            };
            if let Some((kind, credential)) = via {
                member.authorized = true;
                member.last_authorized_time = now_ms;
                member.last_authorized_credential_type = Some(kind.into());
                member.last_authorized_credential = credential;
            }
        }
        // 8: SSO (file-database flavour: version 0, empty URL)
        if network.sso_enabled && !member.sso_exempt {
            let expiry = member.authentication_expiry_time;
            if expiry <= now_ms {
                let mut auth = Dictionary::new();
                // static keys: cannot fail
                auth.add_u64("aV", 0).expect("static key");
                auth.add("aU", b"").expect("static key");
                let dict = auth.to_bytes();
                let mut payload = nwid_bytes;
                payload.extend_from_slice(&(dict.len() as u16).to_be_bytes());
                payload.extend_from_slice(&dict);
                self.store.put_member(member)?;
                self.error(
                    rid,
                    addr,
                    ErrorCode::NETWORK_AUTHENTICATION_REQUIRED,
                    payload,
                );
                return Ok(());
            }
        }
        // 9: authorized?
        if !member.authorized {
            self.store.put_member(member)?;
            self.error(rid, addr, ErrorCode::NETWORK_ACCESS_DENIED, nwid_bytes);
            return Ok(());
        }
        if rid != 0 {
            let version = |k: &str| metadata.get_u64(k).map_or(0, |v| v as i32);
            member.v_major = version("majv");
            member.v_minor = version("minv");
            member.v_rev = version("revv");
            member.v_proto = version("pv");
            let st = self.status.entry((nwid, addr)).or_default();
            st.identity = Some(requester.to_public());
            st.metadata = Some(metadata.clone());
            let expiry = member.authentication_expiry_time;
            if expiry > 0 {
                self.sso_checks.insert((expiry, nwid, addr));
            }
        }
        // 10: build, save, send
        let fresh = self
            .summaries
            .get(&nwid)
            .is_some_and(|(t, _)| (0..SUMMARY_TTL_MS).contains(&(now_ms - t)));
        if !fresh {
            let summary = NetworkSummary::of(&self.store.members(nwid)?);
            self.summaries.insert(nwid, (now_ms, summary));
        }
        let summary = &self
            .summaries
            .get(&nwid)
            .expect("inserted above when missing or stale")
            .1;
        let plan = plan::plan(
            now_ms,
            &network,
            &mut member,
            new_member,
            summary,
            metadata,
            rng,
        );
        let chunks = match issue::sign_config(&self.identity, &plan, requester, rng) {
            Ok(c) => c,
            Err(IssueError::Signing { .. } | IssueError::Chunking { .. }) => {
                // §4.7: a signing failure is reported as OBJ_NOT_FOUND
                self.error(rid, addr, ErrorCode::OBJ_NOT_FOUND, nwid_bytes);
                return Ok(());
            }
        };
        if let Some((_, sum)) = self.summaries.get_mut(&nwid) {
            // what this request allocated counts at once for the next requests
            sum.allocated.extend(member.ip_assignments.iter().copied());
            if member.active_bridge && !sum.active_bridges.contains(&member.address) {
                sum.active_bridges.push(member.address);
                sum.active_bridges.sort();
            }
        }
        self.store.put_member(member)?;
        self.status
            .entry((nwid, addr))
            .or_default()
            .authorized_at_ms = Some(now_ms);
        self.outputs.push_back(ControllerOutput::Config {
            to: addr,
            in_re: (rid != 0).then_some(rid),
            chunks,
        });
        Ok(())
    }

    /// Pushes a fresh config to an online member (a §3 run with request id 0).
    fn push(
        &mut self,
        now_ms: i64,
        nwid: NetworkId,
        member: Address,
        rng: &mut impl RngCore,
    ) -> Result<(), ControllerError> {
        let Some(st) = self.status.get(&(nwid, member)) else {
            return Ok(());
        };
        if !Self::status_online(st, now_ms) {
            return Ok(());
        }
        let (Some(identity), Some(metadata)) = (st.identity.clone(), st.metadata.clone()) else {
            return Ok(());
        };
        self.process(now_ms, nwid, &identity, &metadata, 0, None, rng)
    }

    /// Revokes `target`'s COM on every online member of `nwid` (target included).
    /// spec: controller.md §5.2, vl2.md §13.4
    fn revoke(&mut self, now_ms: i64, nwid: NetworkId, target: Address, rng: &mut impl RngCore) {
        let recipients = self.online_members(nwid, now_ms);
        if recipients.is_empty() {
            return;
        }
        let id = rng.next_u32();
        let Ok(payload) = issue::revocation_credentials(&self.identity, id, nwid, target, now_ms)
        else {
            return; // the identity holds its private key (checked in new)
        };
        for to in recipients {
            self.outputs.push_back(ControllerOutput::Credentials {
                to,
                payload: payload.clone(),
            });
        }
    }

    /// A network record changed (saved through the API): push to every online member.
    /// spec: controller.md §5.1
    pub fn network_changed(
        &mut self,
        now_ms: i64,
        nwid: NetworkId,
        rng: &mut impl RngCore,
    ) -> Result<(), ControllerError> {
        for m in self.online_members(nwid, now_ms) {
            self.push(now_ms, nwid, m, rng)?;
        }
        Ok(())
    }

    /// A network was deleted together with `members`: revoke every one of them on the online
    /// members, then forget the network's in-memory status. spec: controller.md §5.2
    pub fn network_deleted(
        &mut self,
        now_ms: i64,
        nwid: NetworkId,
        members: &[MemberRecord],
        rng: &mut impl RngCore,
    ) {
        for m in members {
            self.revoke(now_ms, nwid, m.address, rng);
        }
        self.summaries.remove(&nwid);
        self.status.retain(|(n, _), _| *n != nwid);
        self.sso_checks.retain(|(_, n, _)| *n != nwid);
    }

    /// A member record changed (or was deleted: `old` is its last state and the store no longer
    /// has it). Pushes to the member if online; if it went from authorized to not, revokes it
    /// on every online member. spec: controller.md §5.2
    pub fn member_changed(
        &mut self,
        now_ms: i64,
        nwid: NetworkId,
        member: Address,
        old: Option<&MemberRecord>,
        rng: &mut impl RngCore,
    ) -> Result<(), ControllerError> {
        // its IPs or bridge flag may have changed: read the summary again on the next request
        self.summaries.remove(&nwid);
        let current = self.store.member(nwid, member)?;
        let now_authorized = current.as_ref().is_some_and(|m| m.authorized);
        if old.is_some_and(|o| o.authorized) && !now_authorized {
            self.revoke(now_ms, nwid, member, rng);
        }
        // A deleted member gets no push: the push would re-create its record. It reappears
        // (unauthorized on a private network) with its own next request. spec: §7.5
        if current.is_some() {
            self.push(now_ms, nwid, member, rng)?;
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // data subject requests

    /// Everything the controller holds about a member, as JSON: what the store holds
    /// ([`Store::export_member`]: record, recorded physical addresses, audit entries) plus the
    /// in-memory status under `"memory"` (last request time, last physical address, whether
    /// online, the metadata of its last request), or `null` there when there is none.
    pub fn export_member(
        &self,
        nwid: NetworkId,
        member: Address,
        now_ms: i64,
    ) -> Result<Value, ControllerError> {
        let mut out = self.store.export_member(nwid, member)?;
        out["memory"] = match self.status.get(&(nwid, member)) {
            None => Value::Null,
            Some(st) => json!({
                "lastRequestTime": st.last_request_ms,
                "lastPhysicalAddress": st.physical.map(|(p, _)| p.to_string()),
                "lastPhysicalAddressTime": st.physical.map(|(_, t)| t),
                "online": Self::status_online(st, now_ms),
                "lastConfigTime": st.authorized_at_ms,
                "metadata": st.metadata.as_ref().map(|d| {
                    d.entries()
                        .map(|(k, v)| {
                            (
                                String::from_utf8_lossy(k).into_owned(),
                                Value::String(String::from_utf8_lossy(v).into_owned()),
                            )
                        })
                        .collect::<serde_json::Map<_, _>>()
                }),
            }),
        };
        Ok(out)
    }

    /// The admin helpers acting for `actor`, the name the audit log records for each change
    /// (an operator, a token name…; the helpers on [`Controller`] itself use
    /// [`DEFAULT_ACTOR`]).
    pub fn acting_as<'a>(&'a mut self, actor: &'a str) -> Admin<'a, S> {
        Admin { ctl: self, actor }
    }

    fn audit(
        &mut self,
        now_ms: i64,
        actor: &str,
        action: AuditAction,
        nwid: NetworkId,
        member: Option<Address>,
        details: Value,
    ) -> Result<(), ControllerError> {
        self.store.append_audit(AuditEntry::new(
            now_ms, actor, action, nwid, member, details,
        ))?;
        self.note_retained(now_ms, self.audit_retention());
        Ok(())
    }

    /// Audits a saved member change: creation (plus authorization), authorization transition,
    /// or other change, naming the changed keys.
    fn audit_member(
        &mut self,
        now_ms: i64,
        actor: &str,
        old: Option<&MemberRecord>,
        new: &MemberRecord,
    ) -> Result<(), ControllerError> {
        let (nwid, addr) = (new.nwid, new.id);
        let Some(old) = old else {
            let keys = json!({"keys": changed_keys(&MemberRecord::new(nwid, addr, new.creation_time).to_json(), &new.to_json())});
            self.audit(
                now_ms,
                actor,
                AuditAction::MemberCreated,
                nwid,
                Some(addr),
                keys,
            )?;
            if new.authorized {
                self.audit(
                    now_ms,
                    actor,
                    AuditAction::MemberAuthorized,
                    nwid,
                    Some(addr),
                    json!({"keys": ["authorized"]}),
                )?;
            }
            return Ok(());
        };
        let action = match (old.authorized, new.authorized) {
            (false, true) => AuditAction::MemberAuthorized,
            (true, false) => AuditAction::MemberDeauthorized,
            _ => AuditAction::MemberChanged,
        };
        let keys = json!({"keys": changed_keys(&old.to_json(), &new.to_json())});
        self.audit(now_ms, actor, action, nwid, Some(addr), keys)
    }

    // -----------------------------------------------------------------------------------------
    // admin helpers (what the HTTP API calls; they go through the same change path), as actor
    // DEFAULT_ACTOR. See `Admin` for the descriptions.

    /// [`Admin::create_network`] as [`DEFAULT_ACTOR`].
    pub fn create_network(
        &mut self,
        now_ms: i64,
        nwid: NetworkId,
        record: NetworkRecord,
        rng: &mut impl RngCore,
    ) -> Result<NetworkRecord, ControllerError> {
        self.acting_as(DEFAULT_ACTOR)
            .create_network(now_ms, nwid, record, rng)
    }

    /// [`Admin::delete_network`] as [`DEFAULT_ACTOR`].
    pub fn delete_network(
        &mut self,
        now_ms: i64,
        nwid: NetworkId,
        rng: &mut impl RngCore,
    ) -> Result<Option<NetworkRecord>, ControllerError> {
        self.acting_as(DEFAULT_ACTOR)
            .delete_network(now_ms, nwid, rng)
    }

    /// [`Admin::upsert_member`] as [`DEFAULT_ACTOR`].
    pub fn upsert_member(
        &mut self,
        now_ms: i64,
        record: MemberRecord,
        rng: &mut impl RngCore,
    ) -> Result<MemberRecord, ControllerError> {
        self.acting_as(DEFAULT_ACTOR)
            .upsert_member(now_ms, record, rng)
    }

    /// [`Admin::authorize`] as [`DEFAULT_ACTOR`].
    pub fn authorize(
        &mut self,
        now_ms: i64,
        nwid: NetworkId,
        member: Address,
        authorized: bool,
        rng: &mut impl RngCore,
    ) -> Result<MemberRecord, ControllerError> {
        self.acting_as(DEFAULT_ACTOR)
            .authorize(now_ms, nwid, member, authorized, rng)
    }

    /// [`Admin::update_member`] as [`DEFAULT_ACTOR`].
    pub fn update_member(
        &mut self,
        now_ms: i64,
        nwid: NetworkId,
        member: Address,
        change: &mut dyn FnMut(&mut MemberRecord),
        rng: &mut impl RngCore,
    ) -> Result<MemberRecord, ControllerError> {
        self.acting_as(DEFAULT_ACTOR)
            .update_member(now_ms, nwid, member, change, rng)
    }

    /// [`Admin::delete_member`] as [`DEFAULT_ACTOR`].
    pub fn delete_member(
        &mut self,
        now_ms: i64,
        nwid: NetworkId,
        member: Address,
        rng: &mut impl RngCore,
    ) -> Result<Option<MemberRecord>, ControllerError> {
        self.acting_as(DEFAULT_ACTOR)
            .delete_member(now_ms, nwid, member, rng)
    }

    /// [`Admin::erase_member`] as [`DEFAULT_ACTOR`].
    pub fn erase_member(
        &mut self,
        now_ms: i64,
        nwid: NetworkId,
        member: Address,
        rng: &mut impl RngCore,
    ) -> Result<Erasure, ControllerError> {
        self.acting_as(DEFAULT_ACTOR)
            .erase_member(now_ms, nwid, member, rng)
    }
}

/// The top-level keys whose values differ between two JSON objects, `revision` excepted,
/// sorted.
fn changed_keys(old: &Value, new: &Value) -> Vec<String> {
    let empty = serde_json::Map::new();
    let (o, n) = (
        old.as_object().unwrap_or(&empty),
        new.as_object().unwrap_or(&empty),
    );
    let mut keys: Vec<String> = o
        .keys()
        .chain(n.keys())
        .filter(|k| *k != "revision" && o.get(*k) != n.get(*k))
        .cloned()
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// The admin helpers acting for one actor ([`Controller::acting_as`]). Each change goes
/// through the controller's change path (pushes, revocations) and is recorded in the audit log
/// (after the change is saved; if writing the entry fails the error is returned and the change
/// stays).
#[derive(Debug)]
pub struct Admin<'a, S: Store> {
    ctl: &'a mut Controller<S>,
    actor: &'a str,
}

impl<S: Store> Admin<'_, S> {
    /// Creates or replaces a network record (forcing `id`/`nwid`); pushes if it changed.
    /// Audit: `network.created`, or `network.changed` with the changed keys.
    pub fn create_network(
        &mut self,
        now_ms: i64,
        nwid: NetworkId,
        mut record: NetworkRecord,
        rng: &mut impl RngCore,
    ) -> Result<NetworkRecord, ControllerError> {
        record.id = nwid;
        record.nwid = nwid;
        let old = self.ctl.store.network(nwid)?;
        if let Some(old) = &old {
            record.revision = old.revision;
        }
        let saved = self.ctl.store.put_network(record)?;
        if saved.changed {
            let (action, details) = match &old {
                None => (AuditAction::NetworkCreated, Value::Null),
                Some(o) => (
                    AuditAction::NetworkChanged,
                    json!({"keys": changed_keys(&o.to_json(), &saved.record.to_json())}),
                ),
            };
            self.ctl
                .audit(now_ms, self.actor, action, nwid, None, details)?;
            self.ctl.network_changed(now_ms, nwid, rng)?;
        }
        Ok(saved.record)
    }

    /// Deletes a network and its members, revoking them. Returns the deleted record.
    /// Audit: `network.deleted` with `{"members": count}`.
    pub fn delete_network(
        &mut self,
        now_ms: i64,
        nwid: NetworkId,
        rng: &mut impl RngCore,
    ) -> Result<Option<NetworkRecord>, ControllerError> {
        let members = self.ctl.store.members(nwid)?;
        let deleted = self.ctl.store.delete_network(nwid)?;
        if deleted.is_some() {
            self.ctl.audit(
                now_ms,
                self.actor,
                AuditAction::NetworkDeleted,
                nwid,
                None,
                json!({"members": members.len()}),
            )?;
            self.ctl.network_deleted(now_ms, nwid, &members, rng);
        }
        Ok(deleted)
    }

    /// Creates or replaces a member record (keeping the stored revision); pushes / revokes if
    /// it changed. Audit: `member.created` (plus `member.authorized` if created authorized),
    /// `member.authorized` / `member.deauthorized` when `authorized` flipped, else
    /// `member.changed`; each with the changed keys.
    pub fn upsert_member(
        &mut self,
        now_ms: i64,
        mut record: MemberRecord,
        rng: &mut impl RngCore,
    ) -> Result<MemberRecord, ControllerError> {
        let (nwid, addr) = (record.nwid, record.id);
        record.address = addr;
        let old = self.ctl.store.member(nwid, addr)?;
        if let Some(o) = &old {
            record.revision = o.revision;
        }
        let saved = self.ctl.store.put_member(record)?;
        if saved.changed {
            self.ctl
                .audit_member(now_ms, self.actor, old.as_ref(), &saved.record)?;
            self.ctl
                .member_changed(now_ms, nwid, addr, old.as_ref(), rng)?;
        }
        Ok(saved.record)
    }

    /// Authorizes or deauthorizes a member the way the API does (creating it if needed), as
    /// one atomic read-modify-write of the store. Audited like [`Self::upsert_member`].
    pub fn authorize(
        &mut self,
        now_ms: i64,
        nwid: NetworkId,
        member: Address,
        authorized: bool,
        rng: &mut impl RngCore,
    ) -> Result<MemberRecord, ControllerError> {
        self.update_member(
            now_ms,
            nwid,
            member,
            &mut |m| m.set_authorized_by_api(authorized, now_ms),
            rng,
        )
    }

    /// Changes a member with `change`, as one atomic read-modify-write of the store
    /// ([`Store::update_member`]; a fresh record when there is none): unlike
    /// [`Self::upsert_member`], which saves a whole record read earlier, concurrent changes of
    /// different fields from several controllers sharing one database are all kept. `change`
    /// gets the stored record (it runs once per call with the back-ends here); pushes / revokes
    /// if the record changed. Audited like [`Self::upsert_member`].
    pub fn update_member(
        &mut self,
        now_ms: i64,
        nwid: NetworkId,
        member: Address,
        change: &mut dyn FnMut(&mut MemberRecord),
        rng: &mut impl RngCore,
    ) -> Result<MemberRecord, ControllerError> {
        let mut old = None;
        let saved = self
            .ctl
            .store
            .update_member(nwid, member, &mut |stored| {
                old.clone_from(&stored);
                let mut m = stored.unwrap_or_else(|| MemberRecord::new(nwid, member, now_ms));
                change(&mut m);
                Some(m)
            })?
            .expect("the update always writes");
        if saved.changed {
            self.ctl
                .audit_member(now_ms, self.actor, old.as_ref(), &saved.record)?;
            self.ctl
                .member_changed(now_ms, nwid, member, old.as_ref(), rng)?;
        }
        Ok(saved.record)
    }

    /// Deletes a member (revoking it if it was authorized). Returns the deleted record.
    /// Audit: `member.deleted`.
    pub fn delete_member(
        &mut self,
        now_ms: i64,
        nwid: NetworkId,
        member: Address,
        rng: &mut impl RngCore,
    ) -> Result<Option<MemberRecord>, ControllerError> {
        let old = self.ctl.store.delete_member(nwid, member)?;
        if let Some(o) = &old {
            self.ctl.audit(
                now_ms,
                self.actor,
                AuditAction::MemberDeleted,
                nwid,
                Some(member),
                Value::Null,
            )?;
            self.ctl
                .member_changed(now_ms, nwid, member, Some(o), rng)?;
        }
        Ok(old)
    }

    /// Erases every trace of a member (the right to erasure): revokes it if it was authorized
    /// (as deletion does), forgets its in-memory status and scheduled checks, deletes its
    /// record and recorded physical addresses and turns its audit entries into tombstones
    /// ([`Store::erase_member`]). Audit: `member.erased`, naming the network only.
    pub fn erase_member(
        &mut self,
        now_ms: i64,
        nwid: NetworkId,
        member: Address,
        rng: &mut impl RngCore,
    ) -> Result<Erasure, ControllerError> {
        let old = self.ctl.store.member(nwid, member)?;
        if old.as_ref().is_some_and(|m| m.authorized) {
            self.ctl.revoke(now_ms, nwid, member, rng);
        }
        let erasure = self.ctl.store.erase_member(nwid, member)?;
        self.ctl.status.remove(&(nwid, member));
        self.ctl
            .sso_checks
            .retain(|(_, n, a)| !(*n == nwid && *a == member));
        self.ctl.audit(
            now_ms,
            self.actor,
            AuditAction::MemberErased,
            nwid,
            None,
            Value::Null,
        )?;
        Ok(erasure)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use rand_chacha::ChaCha8Rng;
    use rand_core::SeedableRng;

    use super::*;
    use crate::store::MemoryStore;
    #[cfg(feature = "sqlite")]
    use crate::store::sqlite::SqliteStore;

    /// Controller and two members (generation is slow: once per test binary).
    fn identities() -> &'static [Identity; 3] {
        static IDS: OnceLock<[Identity; 3]> = OnceLock::new();
        IDS.get_or_init(|| {
            let mut rng = ChaCha8Rng::seed_from_u64(7);
            [(); 3].map(|_| Identity::generate(&mut rng))
        })
    }

    fn rng() -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(1)
    }

    const DAY: i64 = DAY_MS;

    struct Fixture<S: Store> {
        c: Controller<S>,
        nwid: NetworkId,
        a: Identity,
        b: Identity,
    }

    fn fixture<S: Store>(store: S, config: ControllerConfig) -> Fixture<S> {
        let [ctl, a, b] = identities().clone();
        let nwid = NetworkId((ctl.address().to_u64() << 24) | 1);
        let mut c = Controller::with_config(ctl, store, config).unwrap();
        let mut n = NetworkRecord::new(nwid, 0);
        n.private = false; // members are authorized on their first request
        c.acting_as("setup")
            .create_network(0, nwid, n, &mut rng())
            .unwrap();
        Fixture {
            c,
            nwid,
            a: a.to_public(),
            b: b.to_public(),
        }
    }

    fn metadata() -> Dictionary {
        let mut d = Dictionary::new();
        d.add_u64("majv", 1).unwrap();
        d.add_u64("minv", 14).unwrap();
        d.add("o", b"linux").unwrap();
        d
    }

    fn sock(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn request<S: Store>(f: &mut Fixture<S>, who: &Identity, now: i64, physical: &str) {
        let (nwid, md) = (f.nwid, metadata());
        f.c.handle_request(now, nwid, who, &md, 7, Some(sock(physical)), &mut rng())
            .unwrap();
        while f.c.poll_output().is_some() {}
    }

    fn memory_store() -> MemoryStore {
        MemoryStore::new()
    }

    #[cfg(feature = "sqlite")]
    fn sqlite_store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path().join("ctl.db")).unwrap();
        (dir, s)
    }

    /// Runs `case` on a MemoryStore and on a SqliteStore.
    fn on_both(case: fn(&mut dyn FnMut() -> Box<dyn Store>)) {
        case(&mut || Box::new(memory_store()));
        #[cfg(feature = "sqlite")]
        {
            let mut dirs = Vec::new();
            case(&mut || {
                let (d, s) = sqlite_store();
                dirs.push(d);
                Box::new(s)
            });
        }
    }

    fn actions(c: &Controller<Box<dyn Store>>) -> Vec<(String, Option<String>, Value)> {
        c.store()
            .audit_log(0, usize::MAX)
            .unwrap()
            .into_iter()
            .map(|e| {
                (
                    format!("{}:{}", e.actor, e.action.as_str()),
                    e.member.map(|m| m.to_string()),
                    e.details,
                )
            })
            .collect()
    }

    #[test]
    fn physical_addresses_stay_in_memory_by_default() {
        on_both(|fresh| {
            let mut f = fixture(fresh(), ControllerConfig::default());
            let a = f.a.clone();
            // the audit entry of the network creation (t = 0) expires after a year
            assert_eq!(f.c.poll_timeout(), Some(365 * DAY));
            request(&mut f, &a, 10_000, "192.0.2.1:9993");
            let nwid = f.nwid;
            assert!(f.c.is_online(nwid, a.address(), 10_000));
            assert!(
                f.c.store()
                    .physical_addresses(nwid, a.address())
                    .unwrap()
                    .is_empty()
            );
            assert_eq!(f.c.store().oldest_physical_address_ms().unwrap(), None);
            let x = f.c.export_member(nwid, a.address(), 10_000).unwrap();
            assert_eq!(x["physicalAddresses"], json!([]));
            assert_eq!(x["memory"]["lastPhysicalAddress"], "192.0.2.1:9993");
            // the in-memory address is forgotten after the retention window (30 days)
            assert_eq!(f.c.poll_timeout(), Some(10_000 + 30 * DAY));
            f.c.handle_timeout(10_000 + 30 * DAY - 1, &mut rng())
                .unwrap();
            let x = f.c.export_member(nwid, a.address(), 0).unwrap();
            assert_eq!(x["memory"]["lastPhysicalAddress"], "192.0.2.1:9993");
            f.c.handle_timeout(10_000 + 30 * DAY, &mut rng()).unwrap();
            let x = f.c.export_member(nwid, a.address(), 0).unwrap();
            assert_eq!(x["memory"]["lastPhysicalAddress"], Value::Null);
            assert_eq!(x["memory"]["lastRequestTime"], 10_000);
            assert_eq!(f.c.poll_timeout(), Some(365 * DAY));
        });
    }

    #[test]
    fn recorded_physical_addresses_expire_with_a_fake_clock() {
        on_both(|fresh| {
            let config = ControllerConfig {
                record_physical_addresses: true,
                physical_address_retention_ms: 5_000,
                ..ControllerConfig::default()
            };
            let mut f = fixture(fresh(), config);
            let (a, b, nwid) = (f.a.clone(), f.b.clone(), f.nwid);
            request(&mut f, &a, 10_000, "192.0.2.1:9993");
            request(&mut f, &a, 12_000, "[2001:db8::1]:9993");
            request(&mut f, &a, 12_500, "[2001:db8::1]:9993"); // rate-limited: not seen
            request(&mut f, &b, 13_000, "198.51.100.2:1234");
            let seen = |f: &Fixture<Box<dyn Store>>, who: &Identity| {
                f.c.store()
                    .physical_addresses(nwid, who.address())
                    .unwrap()
                    .iter()
                    .map(|r| (r.physical.to_string(), r.first_seen_ms, r.last_seen_ms))
                    .collect::<Vec<_>>()
            };
            assert_eq!(
                seen(&f, &a),
                [
                    ("192.0.2.1:9993".to_string(), 10_000, 10_000),
                    ("[2001:db8::1]:9993".to_string(), 12_000, 12_000)
                ]
            );
            assert_eq!(f.c.poll_timeout(), Some(15_000));
            f.c.handle_timeout(14_999, &mut rng()).unwrap();
            assert_eq!(seen(&f, &a).len(), 2);
            f.c.handle_timeout(15_000, &mut rng()).unwrap();
            assert_eq!(seen(&f, &a).len(), 1, "10 000 + 5 000 reached");
            assert_eq!(f.c.poll_timeout(), Some(17_000));
            // a request refreshes last-seen, which pushes the expiry back
            request(&mut f, &b, 16_000, "198.51.100.2:1234");
            assert_eq!(
                seen(&f, &b),
                [("198.51.100.2:1234".to_string(), 13_000, 16_000)]
            );
            f.c.handle_timeout(18_000, &mut rng()).unwrap();
            assert!(seen(&f, &a).is_empty());
            assert_eq!(seen(&f, &b).len(), 1);
            assert_eq!(f.c.poll_timeout(), Some(21_000));
            f.c.handle_timeout(21_000, &mut rng()).unwrap();
            assert!(seen(&f, &b).is_empty());
            // only the audit entry of the network creation is left to expire
            assert_eq!(f.c.poll_timeout(), Some(365 * DAY));
        });
    }

    #[test]
    fn only_the_members_own_requests_are_recorded() {
        on_both(|fresh| {
            let config = ControllerConfig {
                record_physical_addresses: true,
                ..ControllerConfig::default()
            };
            let mut f = fixture(fresh(), config);
            let (a, b, nwid) = (f.a.clone(), f.b.clone(), f.nwid);
            // a network we do not have
            let md = metadata();
            let unknown = NetworkId(nwid.0 + 1);
            f.c.handle_request(
                1_000,
                unknown,
                &a,
                &md,
                7,
                Some(sock("192.0.2.9:1")),
                &mut rng(),
            )
            .unwrap();
            assert!(
                f.c.store()
                    .physical_addresses(unknown, a.address())
                    .unwrap()
                    .is_empty()
            );
            // an impostor presenting b's address with a's key (identity pinned to b's)
            request(&mut f, &b, 2_000, "198.51.100.2:1234");
            let forged: Identity = {
                let text = a.to_string();
                let key = text.split_once(':').unwrap().1;
                format!("{}:{key}", b.address()).parse().unwrap()
            };
            f.c.handle_request(
                5_000,
                nwid,
                &forged,
                &md,
                8,
                Some(sock("203.0.113.66:6")),
                &mut rng(),
            )
            .unwrap();
            let got = f.c.store().physical_addresses(nwid, b.address()).unwrap();
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].physical, sock("198.51.100.2:1234"));
            // relayed requests (no physical address) record nothing
            f.c.handle_request(9_000, nwid, &a, &md, 9, None, &mut rng())
                .unwrap();
            assert!(
                f.c.store()
                    .physical_addresses(nwid, a.address())
                    .unwrap()
                    .is_empty()
            );
        });
    }

    #[test]
    fn admin_changes_are_audited() {
        on_both(|fresh| {
            let mut f = fixture(fresh(), ControllerConfig::default());
            let (nwid, m) = (f.nwid, "0a33989140".parse::<Address>().unwrap());
            let mut r = rng();
            let c = &mut f.c;
            // unchanged saves are not audited
            let same = c.store().network(nwid).unwrap().unwrap();
            c.acting_as("alice")
                .create_network(1, nwid, same.clone(), &mut r)
                .unwrap();
            let mut renamed = same;
            renamed.name = "lab".into();
            renamed.mtu = 1400;
            c.acting_as("alice")
                .create_network(2, nwid, renamed, &mut r)
                .unwrap();
            c.acting_as("bob")
                .authorize(3, nwid, m, true, &mut r)
                .unwrap();
            c.acting_as("bob")
                .authorize(4, nwid, m, true, &mut r)
                .unwrap(); // no change
            let mut rec = c.store().member(nwid, m).unwrap().unwrap();
            rec.name = Some("laptop".into());
            c.upsert_member(5, rec, &mut r).unwrap();
            c.authorize(6, nwid, m, false, &mut r).unwrap();
            c.delete_member(7, nwid, m, &mut r).unwrap();
            c.delete_member(8, nwid, m, &mut r).unwrap(); // nothing to delete
            let mut created = MemberRecord::new(nwid, m, 9);
            created.authorized = true;
            c.acting_as("carol")
                .upsert_member(9, created, &mut r)
                .unwrap();
            c.acting_as("carol")
                .delete_network(10, nwid, &mut r)
                .unwrap();
            let addr = Some(m.to_string());
            assert_eq!(
                actions(c),
                [
                    ("setup:network.created".into(), None, Value::Null),
                    (
                        "alice:network.changed".into(),
                        None,
                        json!({"keys": ["mtu", "name"]})
                    ),
                    (
                        "bob:member.created".into(),
                        addr.clone(),
                        json!({"keys": ["authorized", "lastAuthorizedCredentialType", "lastAuthorizedTime"]})
                    ),
                    (
                        "bob:member.authorized".into(),
                        addr.clone(),
                        json!({"keys": ["authorized"]})
                    ),
                    (
                        "api:member.changed".into(),
                        addr.clone(),
                        json!({"keys": ["name"]})
                    ),
                    (
                        "api:member.deauthorized".into(),
                        addr.clone(),
                        json!({"keys": ["authorized", "lastDeauthorizedTime"]})
                    ),
                    ("api:member.deleted".into(), addr.clone(), Value::Null),
                    (
                        "carol:member.created".into(),
                        addr.clone(),
                        json!({"keys": ["authorized"]})
                    ),
                    (
                        "carol:member.authorized".into(),
                        addr.clone(),
                        json!({"keys": ["authorized"]})
                    ),
                    ("carol:network.deleted".into(), None, json!({"members": 1})),
                ]
            );
            let times: Vec<i64> = c
                .store()
                .audit_log(0, 100)
                .unwrap()
                .iter()
                .map(|e| e.time_ms)
                .collect();
            assert_eq!(times, [0, 2, 3, 3, 5, 6, 7, 9, 9, 10]);
        });
    }

    #[test]
    fn audit_entries_expire_with_a_fake_clock() {
        on_both(|fresh| {
            let config = ControllerConfig {
                audit_retention_ms: 100,
                ..ControllerConfig::default()
            };
            let mut f = fixture(fresh(), config);
            let (nwid, m) = (f.nwid, "0a33989140".parse::<Address>().unwrap());
            f.c.authorize(50, nwid, m, true, &mut rng()).unwrap();
            assert_eq!(f.c.poll_timeout(), Some(100));
            f.c.handle_timeout(99, &mut rng()).unwrap();
            assert_eq!(f.c.store().audit_log(0, 10).unwrap().len(), 3);
            f.c.handle_timeout(100, &mut rng()).unwrap();
            assert_eq!(f.c.store().audit_log(0, 10).unwrap().len(), 2);
            assert_eq!(f.c.poll_timeout(), Some(150));
            // a longer window set later applies to what is left
            let mut longer = *f.c.config();
            longer.audit_retention_ms = 1_000;
            f.c.set_config(longer).unwrap();
            assert_eq!(f.c.poll_timeout(), Some(1_050));
            f.c.handle_timeout(1_050, &mut rng()).unwrap();
            assert!(f.c.store().audit_log(0, 10).unwrap().is_empty());
            assert_eq!(f.c.poll_timeout(), None);
        });
    }

    #[test]
    fn export_holds_everything_about_the_member() {
        on_both(|fresh| {
            let config = ControllerConfig {
                record_physical_addresses: true,
                ..ControllerConfig::default()
            };
            let mut f = fixture(fresh(), config);
            let (a, b, nwid) = (f.a.clone(), f.b.clone(), f.nwid);
            request(&mut f, &a, 10_000, "192.0.2.1:9993");
            request(&mut f, &b, 10_000, "192.0.2.2:9993");
            let mut rec = f.c.store().member(nwid, a.address()).unwrap().unwrap();
            rec.name = Some("laptop".into());
            f.c.acting_as("alice")
                .upsert_member(11_000, rec, &mut rng())
                .unwrap();
            let x = f.c.export_member(nwid, a.address(), 11_000).unwrap();
            assert_eq!(x["address"], a.address().to_string());
            assert_eq!(x["member"]["name"], "laptop");
            assert_eq!(x["member"]["identity"], a.to_string());
            assert_eq!(x["member"]["authorized"], true);
            assert_eq!(
                x["physicalAddresses"],
                json!([{"physical": "192.0.2.1:9993", "firstSeen": 10_000, "lastSeen": 10_000}])
            );
            let audit = x["audit"].as_array().unwrap();
            assert_eq!(audit.len(), 1);
            assert_eq!(audit[0]["action"], "member.changed");
            assert_eq!(audit[0]["actor"], "alice");
            assert_eq!(x["memory"]["online"], true);
            assert_eq!(x["memory"]["lastRequestTime"], 10_000);
            assert_eq!(x["memory"]["lastPhysicalAddress"], "192.0.2.1:9993");
            assert_eq!(x["memory"]["metadata"]["o"], "linux");
            assert!(!x.to_string().contains(&b.address().to_string()), "{x}");
            assert!(!x.to_string().contains("192.0.2.2"), "{x}");
        });
    }

    #[test]
    fn erase_leaves_only_tombstones() {
        on_both(|fresh| {
            let config = ControllerConfig {
                record_physical_addresses: true,
                ..ControllerConfig::default()
            };
            let mut f = fixture(fresh(), config);
            let (a, b, nwid) = (f.a.clone(), f.b.clone(), f.nwid);
            let aa = a.address();
            request(&mut f, &a, 10_000, "192.0.2.1:9993");
            request(&mut f, &b, 10_000, "192.0.2.2:9993");
            f.c.acting_as("alice")
                .authorize(10_500, nwid, aa, false, &mut rng())
                .unwrap();
            // (the push after deauthorizing re-authorizes it: the network is public)
            let mut rec = f.c.store().member(nwid, aa).unwrap().unwrap();
            rec.name = Some("laptop".into());
            f.c.acting_as("alice")
                .upsert_member(10_600, rec, &mut rng())
                .unwrap();
            while f.c.poll_output().is_some() {}
            let before = f.c.store().audit_log(0, 100).unwrap();
            let erasure =
                f.c.acting_as("dpo")
                    .erase_member(11_000, nwid, aa, &mut rng())
                    .unwrap();
            assert_eq!(
                erasure,
                Erasure {
                    member: true,
                    physical_addresses: 1,
                    audit_entries: 2
                }
            );
            // it was authorized: its COM is revoked on the online members (b and itself)
            let mut to: Vec<Address> = std::iter::from_fn(|| f.c.poll_output())
                .filter_map(|o| match o {
                    ControllerOutput::Credentials { to, .. } => Some(to),
                    _ => None,
                })
                .collect();
            to.sort();
            let mut want = vec![aa, b.address()];
            want.sort();
            assert_eq!(to, want);
            // nothing about it is left: store, memory, export
            assert!(!f.c.is_online(nwid, aa, 11_000));
            assert!(!f.c.authorized_recently(nwid, aa, 11_000));
            let x = f.c.export_member(nwid, aa, 11_000).unwrap();
            assert_eq!(x["member"], Value::Null);
            assert_eq!(x["physicalAddresses"], json!([]));
            assert_eq!(x["audit"], json!([]));
            assert_eq!(x["memory"], Value::Null);
            let log = f.c.store().audit_log(0, 100).unwrap();
            let text =
                serde_json::to_string(&log.iter().map(AuditEntry::to_json).collect::<Vec<_>>())
                    .unwrap();
            assert!(!text.contains(&aa.to_string()), "{text}");
            assert_eq!(log.len(), before.len() + 1);
            for (old, new) in before.iter().zip(&log) {
                if old.member == Some(aa) {
                    assert_eq!(new, &old.clone().tombstone());
                } else {
                    assert_eq!(new, old);
                }
            }
            let last = log.last().unwrap();
            assert_eq!(
                (last.actor.as_str(), last.action, last.member, last.nwid),
                ("dpo", AuditAction::MemberErased, None, nwid)
            );
            // b is untouched
            assert!(f.c.is_online(nwid, b.address(), 11_000));
            assert_eq!(
                f.c.store()
                    .physical_addresses(nwid, b.address())
                    .unwrap()
                    .len(),
                1
            );
            // it comes back as a new member only by requesting again
            request(&mut f, &a, 20_000, "192.0.2.1:9993");
            let m = f.c.store().member(nwid, aa).unwrap().unwrap();
            assert_eq!(m.creation_time, 20_000);
        });
    }
}
