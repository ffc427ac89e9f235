//! The controller state machine: config requests, pushes, deauthorization, SSO expiry.
//! spec: controller.md §2, §3, §5
//!
//! Sans-IO: the driver calls [`Controller::handle_request`] for each NETWORK_CONFIG_REQUEST
//! addressed to this node, the `*_changed` methods after it changed records (or uses the admin
//! helpers, which do both), [`Controller::handle_timeout`] when [`Controller::poll_timeout`]
//! says so, and after each call drains [`Controller::poll_output`] and sends what it returns.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;

use rand_core::RngCore;
use weft_wire::dictionary::Dictionary;
use weft_wire::verbs::ErrorCode;
use weft_wire::{Address, Identity, NetworkId};

use crate::issue::{self, IssueError};
use crate::plan::{self, NetworkSummary};
use crate::store::{MemberRecord, NetworkRecord, Store, StoreError, credential_type};

/// Minimum spacing of genuine requests from one member for one network. spec: controller.md §2
pub const REQUEST_RATE_LIMIT_MS: i64 = 1000;
/// A member is online while its last request is younger than this. spec: controller.md §5
pub const ONLINE_WINDOW_MS: i64 = 120_000;
/// How long a config sent by the local controller authorizes multicast. spec: vl2.md §7.3
pub const AUTHORIZED_RECENTLY_MS: i64 = 180_000;
/// Request packet id of the node's own in-process requests. spec: controller.md §1
pub const IN_PROCESS_REQUEST_ID: u64 = u64::MAX;

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
}

/// The network controller. See the module documentation for the calling pattern.
#[derive(Debug)]
pub struct Controller<S: Store> {
    identity: Identity,
    store: S,
    status: BTreeMap<(NetworkId, Address), MemberStatus>,
    sso_checks: BTreeSet<(i64, NetworkId, Address)>,
    outputs: VecDeque<ControllerOutput>,
}

impl<S: Store> Controller<S> {
    /// A controller signing with `identity` (must hold its private key) over `store`.
    pub fn new(identity: Identity, store: S) -> Result<Self, ControllerError> {
        if !identity.has_private() {
            return Err(ControllerError::NoPrivateKey {
                address: identity.address(),
            });
        }
        Ok(Controller {
            identity,
            store,
            status: BTreeMap::new(),
            sso_checks: BTreeSet::new(),
            outputs: VecDeque::new(),
        })
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
    /// SSO expiry check.
    pub fn poll_timeout(&self) -> Option<i64> {
        self.sso_checks.first().map(|(t, _, _)| *t)
    }

    /// Runs due SSO expiry checks: a member whose `authenticationExpiryTime` has passed is
    /// revoked on every online member (the §5.2 broadcast). spec: controller.md §5.3
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
        }
        // The physical address is only "online" bookkeeping in the reference (file DB: memory).
        let _ = physical;
        self.process(now_ms, nwid, requester, metadata, request_packet_id, rng)
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

    /// §3, in the reference's exact order.
    fn process(
        &mut self,
        now_ms: i64,
        nwid: NetworkId,
        requester: &Identity,
        metadata: &Dictionary,
        rid: u64,
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
        let summary = NetworkSummary::of(&self.store.members(nwid)?);
        let plan = plan::plan(
            now_ms,
            &network,
            &mut member,
            new_member,
            &summary,
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
        self.process(now_ms, nwid, &identity, &metadata, 0, rng)
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
    // admin helpers (what the HTTP API will call; they go through the same change path)

    /// Creates or replaces a network record (forcing `id`/`nwid`); pushes if it changed.
    pub fn create_network(
        &mut self,
        now_ms: i64,
        nwid: NetworkId,
        mut record: NetworkRecord,
        rng: &mut impl RngCore,
    ) -> Result<NetworkRecord, ControllerError> {
        record.id = nwid;
        record.nwid = nwid;
        if let Some(old) = self.store.network(nwid)? {
            record.revision = old.revision;
        }
        let saved = self.store.put_network(record)?;
        if saved.changed {
            self.network_changed(now_ms, nwid, rng)?;
        }
        Ok(saved.record)
    }

    /// Deletes a network and its members, revoking them. Returns the deleted record.
    pub fn delete_network(
        &mut self,
        now_ms: i64,
        nwid: NetworkId,
        rng: &mut impl RngCore,
    ) -> Result<Option<NetworkRecord>, ControllerError> {
        let members = self.store.members(nwid)?;
        let deleted = self.store.delete_network(nwid)?;
        if deleted.is_some() {
            self.network_deleted(now_ms, nwid, &members, rng);
        }
        Ok(deleted)
    }

    /// Creates or replaces a member record (keeping the stored revision); pushes / revokes if it
    /// changed.
    pub fn upsert_member(
        &mut self,
        now_ms: i64,
        mut record: MemberRecord,
        rng: &mut impl RngCore,
    ) -> Result<MemberRecord, ControllerError> {
        let (nwid, addr) = (record.nwid, record.id);
        record.address = addr;
        let old = self.store.member(nwid, addr)?;
        if let Some(o) = &old {
            record.revision = o.revision;
        }
        let saved = self.store.put_member(record)?;
        if saved.changed {
            self.member_changed(now_ms, nwid, addr, old.as_ref(), rng)?;
        }
        Ok(saved.record)
    }

    /// Authorizes or deauthorizes a member the way the API does (creating it if needed).
    pub fn authorize(
        &mut self,
        now_ms: i64,
        nwid: NetworkId,
        member: Address,
        authorized: bool,
        rng: &mut impl RngCore,
    ) -> Result<MemberRecord, ControllerError> {
        let mut m = self
            .store
            .member(nwid, member)?
            .unwrap_or_else(|| MemberRecord::new(nwid, member, now_ms));
        m.set_authorized_by_api(authorized, now_ms);
        self.upsert_member(now_ms, m, rng)
    }

    /// Deletes a member (revoking it if it was authorized). Returns the deleted record.
    pub fn delete_member(
        &mut self,
        now_ms: i64,
        nwid: NetworkId,
        member: Address,
        rng: &mut impl RngCore,
    ) -> Result<Option<MemberRecord>, ControllerError> {
        let old = self.store.delete_member(nwid, member)?;
        if let Some(o) = &old {
            self.member_changed(now_ms, nwid, member, Some(o), rng)?;
        }
        Ok(old)
    }
}
