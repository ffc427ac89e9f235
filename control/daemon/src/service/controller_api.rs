//! The node's network controller: answers NETWORK_CONFIG_REQUESTs for networks whose id starts
//! with our address, keeps its records in `<home>/controller.d/` (the 1.14 file database,
//! [`filedb`]) and serves the ZeroTier-compatible `/controller` API. spec: controller.md §1–§8
//!
//! [`Ctl::handle`] answers one API request without any I/O besides the database files, so the
//! API is testable without a node (the golden tests drive the real router and a real `Ctl`).
//! Changes go through the controller's change path, which only queues outputs (pushes to online
//! members, revocations); [`Ctl::api`] hands them to the node after answering, so an API answer
//! never waits on the network. spec: controller.md §7.5 ("slow answers")

mod filedb;
#[cfg(test)]
mod golden;
mod input;

use std::net::SocketAddr;
#[cfg(test)]
use std::path::Path;

use anyhow::{Context, Result};
use rand_core::{OsRng, RngCore};
use serde_json::{Map, Value, json};
use weft_controller::controller::{Controller, ControllerOutput};
use weft_controller::{MemberRecord, NetworkRecord, Store};
use weft_proto::{Node, Timestamp};
use weft_wire::dictionary::Dictionary;
use weft_wire::{Address, Identity, NetworkId};

pub(crate) use filedb::FileStore;

use super::home::Home;

/// Where a network POST goes. spec: controller.md §7.1
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NetworkTarget {
    /// `POST /controller/network/<nwid>`: create or update that network.
    Id(NetworkId),
    /// `POST /controller/network` (`None`) or `/controller/network/<10 hex>______` (the hex as
    /// typed): a new network with a random id; the prefix must be our address in lowercase.
    Random(Option<String>),
}

/// A `/controller…` request. spec: controller.md §7.1
#[derive(Debug)]
pub(crate) enum ControllerRequest {
    /// `GET /controller`.
    Info,
    /// `GET /controller/network`.
    Networks,
    /// `GET /controller/network/<nwid>`.
    Network(NetworkId),
    /// `POST`/`PUT` a network.
    PostNetwork(NetworkTarget, Value),
    /// `DELETE /controller/network/<nwid>`.
    DeleteNetwork(NetworkId),
    /// `GET /controller/network/<nwid>/member`.
    Members(NetworkId),
    /// `GET /controller/network/<nwid>/member/<address>`.
    Member(NetworkId, Address),
    /// `POST`/`PUT /controller/network/<nwid>/member/<address>`.
    PostMember(NetworkId, Address, Value),
    /// `DELETE /controller/network/<nwid>/member/<address>`.
    DeleteMember(NetworkId, Address),
    /// `GET /unstable/controller/network`.
    UnstableNetworks,
    /// `GET /unstable/controller/network/<nwid>/member`.
    UnstableMembers(NetworkId),
    /// `GET /unstable/controller/network/<nwid>/member/<address>/export` (weft).
    ExportMember(NetworkId, Address),
    /// `POST /unstable/controller/network/<nwid>/member/<address>/erase` (weft).
    EraseMember(NetworkId, Address),
}

/// The body of an answer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum CtlBody {
    /// Compact JSON with sorted keys.
    Json(Value),
    /// Literal text (`GET /controller`), served as `application/json`.
    Text(String),
    /// No body.
    Empty,
}

/// What the API answers: a status and a body.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CtlAnswer {
    pub(crate) status: u16,
    pub(crate) body: CtlBody,
}

impl CtlAnswer {
    fn ok(v: Value) -> CtlAnswer {
        CtlAnswer {
            status: 200,
            body: CtlBody::Json(v),
        }
    }

    /// An error without a body (404 for unknown objects, 400 for a foreign id prefix).
    pub(crate) fn empty(status: u16) -> CtlAnswer {
        CtlAnswer {
            status,
            body: CtlBody::Empty,
        }
    }

    /// An error with the reference's JSON error shape `{"description", "error": code}`.
    pub(crate) fn error(status: u16, description: impl std::fmt::Display) -> CtlAnswer {
        CtlAnswer {
            status,
            body: CtlBody::Json(json!({"error": status, "description": description.to_string()})),
        }
    }
}

/// The `GET /controller` text, byte for byte (tab-indented, trailing newline); 503 with
/// `databaseReady: false` when the database is not ready. spec: controller.md §7.1
pub(crate) fn info_answer(now: Timestamp, ready: bool) -> CtlAnswer {
    CtlAnswer {
        status: if ready { 200 } else { 503 },
        body: CtlBody::Text(format!(
            "{{\n\t\"controller\": true,\n\t\"apiVersion\": 4,\n\t\"clock\": {now},\n\t\"databaseReady\": {ready}\n}}\n"
        )),
    }
}

/// The controller and its file database. `R` is its randomness (network ids, revocation ids);
/// the daemon uses the OS generator, tests a seeded one.
pub(crate) struct Ctl<R: RngCore = OsRng> {
    ctl: Controller<Box<dyn Store + Send>>,
    rng: R,
}

impl<R: RngCore> std::fmt::Debug for Ctl<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctl")
            .field("address", &self.ctl.address())
            .finish()
    }
}

impl Ctl {
    /// Opens the controller's database: `settings.controllerDbPath` from local.conf when set
    /// (`postgres:…`/`postgresql://…` for PostgreSQL, else an SQLite file relative to the home),
    /// otherwise SQLite at `<home>/controller.db` (the default; zero setup). A home that has a
    /// 1.14 `controller.d/` and no database yet is imported once (controller.d is left as it
    /// is). spec: controller.md §8, service.md §3.1 (weft's default differs: SQLite)
    pub(crate) fn open(home: &Home, identity: Identity, db_path: Option<&str>) -> Result<Ctl> {
        let legacy = home.path("controller.d");
        let fresh_default =
            db_path.is_none() && !home.path(weft_controller::store::DEFAULT_DB_FILE).exists();
        let mut store = weft_controller::store::open_from_setting(db_path, &home.dir)
            .context("controller database")?;
        if fresh_default && legacy.join("network").is_dir() {
            let old = FileStore::open(&legacy).context("reading controller.d")?;
            let mut n = 0;
            for nwid in old.networks()? {
                if let Some(net) = old.network(nwid)? {
                    store.put_network(net)?;
                }
                for m in old.members(nwid)? {
                    store.put_member(m)?;
                    n += 1;
                }
            }
            eprintln!(
                "weft: imported controller.d ({} networks, {n} members) into {}",
                old.networks()?.len(),
                weft_controller::store::DEFAULT_DB_FILE
            );
        }
        let ctl = Controller::new(identity, store).context("controller identity")?;
        Ok(Ctl { ctl, rng: OsRng })
    }
}

impl<R: RngCore> Ctl<R> {
    /// Opens the controller over the file database in `dir` (created if missing); the golden
    /// tests use it.
    #[cfg(test)]
    pub(crate) fn open_at(dir: &Path, identity: Identity, rng: R) -> Result<Ctl<R>> {
        let store: Box<dyn Store + Send> =
            Box::new(FileStore::open(dir).context("controller database")?);
        let ctl = Controller::new(identity, store).context("controller identity")?;
        Ok(Ctl { ctl, rng })
    }

    /// Sends whatever the controller queued through the node.
    fn drain(&mut self, node: &mut Node, now: Timestamp) {
        while let Some(o) = self.ctl.poll_output() {
            match o {
                ControllerOutput::Config { to, in_re, chunks } => {
                    if let Some(c) = chunks.first()
                        && let Some(nwid) = NetworkId::from_slice(c)
                    {
                        node.note_controller_authorized(now, nwid, to);
                    }
                    node.send_network_config(now, to, in_re, &chunks);
                }
                ControllerOutput::Error {
                    to,
                    in_re,
                    code,
                    payload,
                } => node.send_network_config_error(now, to, in_re, code, &payload),
                ControllerOutput::Credentials { to, payload } => {
                    node.send_network_credentials(now, to, &payload)
                }
                _ => {}
            }
        }
    }

    /// A NETWORK_CONFIG_REQUEST from the node. spec: controller.md §2, §3
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn request(
        &mut self,
        node: &mut Node,
        now: Timestamp,
        nwid: NetworkId,
        requester: &Identity,
        packet_id: u64,
        metadata: &[u8],
        physical: Option<SocketAddr>,
    ) {
        let md = Dictionary::parse_with_capacity(metadata, 1024).unwrap_or_default();
        if let Err(e) = self.ctl.handle_request(
            now,
            nwid,
            requester,
            &md,
            packet_id,
            physical,
            &mut self.rng,
        ) {
            eprintln!(
                "weft: controller: request from {}: {e}",
                requester.address()
            );
        }
        self.drain(node, now);
    }

    /// Runs the controller's timers (SSO expiry).
    pub(crate) fn tick(&mut self, node: &mut Node, now: Timestamp) {
        if self.ctl.poll_timeout().is_some_and(|t| t <= now) {
            let _ = self.ctl.handle_timeout(now, &mut self.rng);
            self.drain(node, now);
        }
    }

    /// A `/controller…` request from the API; what it queued for members goes to the node.
    pub(crate) fn api(
        &mut self,
        node: &mut Node,
        now: Timestamp,
        req: ControllerRequest,
    ) -> CtlAnswer {
        let r = self.handle(now, req);
        self.drain(node, now);
        r
    }

    /// Answers one API request (no network I/O: pushes and revocations stay queued until the
    /// caller drains them). spec: controller.md §7
    pub(crate) fn handle(&mut self, now: Timestamp, req: ControllerRequest) -> CtlAnswer {
        self.handle_inner(now, req).unwrap_or_else(|a| a)
    }

    fn handle_inner(
        &mut self,
        now: Timestamp,
        req: ControllerRequest,
    ) -> Result<CtlAnswer, CtlAnswer> {
        let server = |e: &dyn std::fmt::Display| CtlAnswer::error(500, e);
        let not_found = || CtlAnswer::empty(404);
        Ok(match req {
            ControllerRequest::Info => info_answer(now, true),
            ControllerRequest::Networks => {
                let ids = self.ctl.store().networks().map_err(|e| server(&e))?;
                CtlAnswer::ok(Value::Array(
                    ids.iter().map(|n| Value::String(n.to_string())).collect(),
                ))
            }
            ControllerRequest::Network(nwid) => {
                CtlAnswer::ok(self.network(nwid)?.ok_or_else(not_found)?.to_json())
            }
            ControllerRequest::PostNetwork(target, body) => {
                let nwid = match target {
                    NetworkTarget::Id(n) => n,
                    NetworkTarget::Random(prefix) => {
                        let me = self.ctl.address().to_string();
                        if prefix.is_some_and(|p| p != me) {
                            return Err(CtlAnswer::empty(400));
                        }
                        self.free_network_id()?
                    }
                };
                let body = body_object(&body)?;
                let mut rec = self
                    .network(nwid)?
                    .unwrap_or_else(|| NetworkRecord::new(nwid, now));
                input::apply_network(&mut rec, body).map_err(|e| CtlAnswer::error(400, e))?;
                let saved = self
                    .ctl
                    .create_network(now, nwid, rec, &mut self.rng)
                    .map_err(|e| server(&e))?;
                CtlAnswer::ok(saved.to_json())
            }
            ControllerRequest::DeleteNetwork(nwid) => {
                let deleted = self
                    .ctl
                    .delete_network(now, nwid, &mut self.rng)
                    .map_err(|e| server(&e))?;
                CtlAnswer::ok(deleted.ok_or_else(not_found)?.to_json())
            }
            ControllerRequest::Members(nwid) => {
                self.network(nwid)?.ok_or_else(not_found)?;
                let mut m = Map::new();
                for r in self.members(nwid)? {
                    m.insert(r.id.to_string(), r.revision.into());
                }
                CtlAnswer::ok(Value::Object(m))
            }
            ControllerRequest::Member(nwid, a) => {
                self.network(nwid)?.ok_or_else(not_found)?;
                CtlAnswer::ok(self.member(nwid, a)?.ok_or_else(not_found)?.to_json())
            }
            ControllerRequest::PostMember(nwid, a, body) => {
                // spec: controller.md §7.4 (404 if the network does not exist; a member that
                // never requested is created)
                self.network(nwid)?.ok_or_else(not_found)?;
                let body = body_object(&body)?;
                let mut rec = self
                    .member(nwid, a)?
                    .unwrap_or_else(|| MemberRecord::new(nwid, a, now));
                input::apply_member(&mut rec, body, now).map_err(|e| CtlAnswer::error(400, e))?;
                rec.id = a;
                rec.address = a;
                rec.nwid = nwid;
                let saved = self
                    .ctl
                    .upsert_member(now, rec, &mut self.rng)
                    .map_err(|e| server(&e))?;
                CtlAnswer::ok(saved.to_json())
            }
            ControllerRequest::DeleteMember(nwid, a) => {
                let deleted = self
                    .ctl
                    .delete_member(now, nwid, a, &mut self.rng)
                    .map_err(|e| server(&e))?;
                CtlAnswer::ok(deleted.ok_or_else(not_found)?.to_json())
            }
            ControllerRequest::UnstableNetworks => {
                let ids = self.ctl.store().networks().map_err(|e| server(&e))?;
                let mut data = Vec::new();
                for nwid in &ids {
                    let Some(n) = self.network(*nwid)? else {
                        continue;
                    };
                    let members = self.members(*nwid)?;
                    let mut v = n.to_json();
                    v["meta"] = json!({
                        "authorizedMemberCount": members.iter().filter(|m| m.authorized).count(),
                        "totalMemberCount": members.len(),
                    });
                    data.push(v);
                }
                CtlAnswer::ok(json!({"data": data, "meta": {"networkCount": data.len()}}))
            }
            ControllerRequest::UnstableMembers(nwid) => {
                self.network(nwid)?.ok_or_else(not_found)?;
                let members = self.members(nwid)?;
                let authorized = members.iter().filter(|m| m.authorized).count();
                CtlAnswer::ok(json!({
                    "data": members.iter().map(MemberRecord::to_json).collect::<Vec<_>>(),
                    "meta": {"authorizedCount": authorized, "totalCount": members.len()},
                }))
            }
            // everything held about a member (record, physical addresses, audit, in-memory
            // status), even after it was deleted
            ControllerRequest::ExportMember(nwid, a) => CtlAnswer::ok(
                self.ctl
                    .export_member(nwid, a, now)
                    .map_err(|e| server(&e))?,
            ),
            // record, physical addresses and audit details removed (revoked if authorized)
            ControllerRequest::EraseMember(nwid, a) => {
                let e = self
                    .ctl
                    .erase_member(now, nwid, a, &mut self.rng)
                    .map_err(|e| server(&e))?;
                CtlAnswer::ok(json!({
                    "auditEntries": e.audit_entries,
                    "member": e.member,
                    "physicalAddresses": e.physical_addresses,
                }))
            }
        })
    }

    fn network(&self, nwid: NetworkId) -> Result<Option<NetworkRecord>, CtlAnswer> {
        self.ctl
            .store()
            .network(nwid)
            .map_err(|e| CtlAnswer::error(500, e))
    }

    fn member(&self, nwid: NetworkId, a: Address) -> Result<Option<MemberRecord>, CtlAnswer> {
        self.ctl
            .store()
            .member(nwid, a)
            .map_err(|e| CtlAnswer::error(500, e))
    }

    fn members(&self, nwid: NetworkId) -> Result<Vec<MemberRecord>, CtlAnswer> {
        self.ctl
            .store()
            .members(nwid)
            .map_err(|e| CtlAnswer::error(500, e))
    }

    /// A random unused id `<our address><24 random bits>`, never ending in 000000.
    /// spec: controller.md §7.1
    fn free_network_id(&mut self) -> Result<NetworkId, CtlAnswer> {
        let me = self.ctl.address().to_u64();
        for _ in 0..16_384 {
            let low = u64::from(self.rng.next_u32() & 0x00ff_ffff);
            if low == 0 {
                continue;
            }
            let id = NetworkId((me << 24) | low);
            if self.network(id)?.is_none() {
                return Ok(id);
            }
        }
        Err(CtlAnswer::error(503, "no free network id"))
    }
}

/// A POST body must be a JSON object. spec: controller.md §7.1
fn body_object(body: &Value) -> Result<&Map<String, Value>, CtlAnswer> {
    body.as_object()
        .ok_or_else(|| CtlAnswer::error(400, "body: expected a JSON object"))
}
