//! The node's network controller: answers NETWORK_CONFIG_REQUESTs for networks whose id starts
//! with our address, keeps its records in `<home>/controller.d/` (the 1.14 file-database
//! layout), and serves the basic `/controller` API. The full API (every quirk, golden files),
//! SQLite and PostgreSQL are the controller-product work; this is what a member needs to be
//! configured. spec: controller.md §1–§8
//!
//! Writes that change a record run the controller's change path (pushes to online members,
//! revocations on deauthorization) before the answer is returned.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use rand_core::{OsRng, RngCore};
use serde_json::{Map, Value, json};
use weft_controller::controller::{Controller, ControllerOutput};
use weft_controller::{MemberRecord, MemoryStore, NetworkRecord, Store};
use weft_proto::{Node, Timestamp};
use weft_wire::dictionary::Dictionary;
use weft_wire::{Address, Identity, NetworkId};

use super::home::Home;
use crate::fsutil::{self, SECRET_MODE};

/// A `/controller…` request. spec: controller.md §7.1
#[derive(Debug)]
pub(crate) enum ControllerRequest {
    /// `GET /controller`.
    Info,
    /// `GET /controller/network`.
    Networks,
    /// `GET /controller/network/<nwid>`.
    Network(NetworkId),
    /// `POST /controller/network/<nwid>`, or `<prefix>______` (a random new id; the prefix
    /// must be our address in lowercase).
    PostNetwork(Result<NetworkId, String>, Value),
    /// `DELETE /controller/network/<nwid>`.
    DeleteNetwork(NetworkId),
    /// `GET /controller/network/<nwid>/member`.
    Members(NetworkId),
    /// `GET /controller/network/<nwid>/member/<address>`.
    Member(NetworkId, Address),
    /// `POST /controller/network/<nwid>/member/<address>`.
    PostMember(NetworkId, Address, Value),
    /// `DELETE /controller/network/<nwid>/member/<address>`.
    DeleteMember(NetworkId, Address),
}

/// What the API answers: a JSON value, or an error status with a message naming the field.
pub(crate) type CtlAnswer = Result<Value, (u16, String)>;

/// The controller and its file database.
pub(crate) struct Ctl {
    ctl: Controller<MemoryStore>,
    dir: PathBuf,
}

impl std::fmt::Debug for Ctl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctl").field("dir", &self.dir).finish()
    }
}

/// Keys of a network object the API may set. spec: controller.md §7.2
const NETWORK_WRITABLE: &[&str] = &[
    "name",
    "private",
    "enableBroadcast",
    "multicastLimit",
    "mtu",
    "v4AssignMode",
    "v6AssignMode",
    "ipAssignmentPools",
    "routes",
    "rules",
    "capabilities",
    "tags",
    "dns",
    "authTokens",
    "remoteTraceTarget",
    "remoteTraceLevel",
];

/// Keys of a member object the API may set. spec: controller.md §7.3
const MEMBER_WRITABLE: &[&str] = &[
    "authorized",
    "activeBridge",
    "noAutoAssignIps",
    "ipAssignments",
    "tags",
    "capabilities",
    "name",
    "authenticationExpiryTime",
    "remoteTraceTarget",
    "remoteTraceLevel",
];

/// Booleans may come as JSON booleans or the strings "true"/"false" (ztncui). spec:
/// controller.md §7.5
fn boolean(key: &str, v: &Value) -> Result<Value, (u16, String)> {
    match v {
        Value::Bool(_) => Ok(v.clone()),
        Value::String(s) if s == "true" => Ok(Value::Bool(true)),
        Value::String(s) if s == "false" => Ok(Value::Bool(false)),
        _ => Err((400, format!("{key}: expected a boolean"))),
    }
}

/// Merges the writable keys of `body` into `stored`.
fn merge(
    stored: Value,
    body: &Value,
    writable: &[&str],
    booleans: &[&str],
) -> Result<Value, (u16, String)> {
    let Value::Object(b) = body else {
        return Err((400, "body: expected a JSON object".into()));
    };
    let mut m: Map<String, Value> = match stored {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    for (k, v) in b {
        if !writable.contains(&k.as_str()) {
            continue;
        }
        let v = if booleans.contains(&k.as_str()) {
            boolean(k, v)?
        } else {
            v.clone()
        };
        m.insert(k.clone(), v);
    }
    Ok(Value::Object(m))
}

impl Ctl {
    /// Opens the controller with the records found in `<home>/controller.d/`.
    pub(crate) fn open(home: &Home, identity: Identity) -> Result<Ctl> {
        let dir = home.path("controller.d");
        let mut store = MemoryStore::new();
        let net_dir = dir.join("network");
        if let Ok(rd) = std::fs::read_dir(&net_dir) {
            for e in rd.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "json")
                    && let Ok(text) = std::fs::read(&p)
                    && let Ok(v) = serde_json::from_slice::<Value>(&text)
                    && let Ok(n) = NetworkRecord::from_json(&v)
                {
                    let members = net_dir.join(n.id.to_string()).join("member");
                    let _ = store.put_network(n);
                    if let Ok(rd) = std::fs::read_dir(&members) {
                        for e in rd.flatten() {
                            if let Ok(text) = std::fs::read(e.path())
                                && let Ok(v) = serde_json::from_slice::<Value>(&text)
                                && let Ok(m) = MemberRecord::from_json(&v)
                            {
                                let _ = store.put_member(m);
                            }
                        }
                    }
                }
            }
        }
        let ctl = Controller::new(identity, store).context("controller identity")?;
        Ok(Ctl { ctl, dir })
    }

    fn save_network(&self, n: &NetworkRecord) {
        let p = self.dir.join("network").join(format!("{}.json", n.id));
        let r = std::fs::create_dir_all(self.dir.join("network")).map_err(anyhow::Error::from);
        let text = serde_json::to_vec_pretty(&n.to_json()).unwrap_or_default();
        if let Err(e) = r.and_then(|()| fsutil::write_atomic(&p, &text, SECRET_MODE)) {
            eprintln!("weft: controller: cannot save {}: {e:#}", p.display());
        }
    }

    fn save_member(&self, m: &MemberRecord) {
        let d = self
            .dir
            .join("network")
            .join(m.nwid.to_string())
            .join("member");
        let p = d.join(format!("{}.json", m.id));
        let r = std::fs::create_dir_all(&d).map_err(anyhow::Error::from);
        let text = serde_json::to_vec_pretty(&m.to_json()).unwrap_or_default();
        if let Err(e) = r.and_then(|()| fsutil::write_atomic(&p, &text, SECRET_MODE)) {
            eprintln!("weft: controller: cannot save {}: {e:#}", p.display());
        }
    }

    fn remove_file(&self, rel: PathBuf) {
        let p = self.dir.join(rel);
        let _ = if p.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
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
        if let Err(e) = self
            .ctl
            .handle_request(now, nwid, requester, &md, packet_id, physical, &mut OsRng)
        {
            eprintln!(
                "weft: controller: request from {}: {e}",
                requester.address()
            );
        }
        if let Ok(Some(m)) = self.ctl.store().member(nwid, requester.address()) {
            self.save_member(&m);
        }
        self.drain(node, now);
    }

    /// Runs the controller's timers (SSO expiry).
    pub(crate) fn tick(&mut self, node: &mut Node, now: Timestamp) {
        if self.ctl.poll_timeout().is_some_and(|t| t <= now) {
            let _ = self.ctl.handle_timeout(now, &mut OsRng);
            self.drain(node, now);
        }
    }

    /// A `/controller…` request.
    pub(crate) fn api(
        &mut self,
        node: &mut Node,
        now: Timestamp,
        req: ControllerRequest,
    ) -> CtlAnswer {
        let r = self.api_inner(now, req);
        self.drain(node, now);
        r
    }

    fn err(e: impl std::fmt::Display) -> (u16, String) {
        (500, e.to_string())
    }

    fn api_inner(&mut self, now: Timestamp, req: ControllerRequest) -> CtlAnswer {
        let me = self.ctl.address();
        match req {
            ControllerRequest::Info => Ok(json!({
                "controller": true,
                "apiVersion": 4,
                "clock": now,
                "databaseReady": true,
            })),
            ControllerRequest::Networks => {
                let ids = self.ctl.store().networks().map_err(Self::err)?;
                Ok(Value::Array(
                    ids.iter().map(|n| Value::String(n.to_string())).collect(),
                ))
            }
            ControllerRequest::Network(nwid) => match self.ctl.store().network(nwid) {
                Ok(Some(n)) => Ok(n.to_json()),
                Ok(None) => Err((404, String::new())),
                Err(e) => Err(Self::err(e)),
            },
            ControllerRequest::PostNetwork(id, body) => {
                let nwid = match id {
                    Ok(n) => n,
                    Err(prefix) if prefix == me.to_string() => self.free_network_id(me)?,
                    Err(_) => return Err((400, String::new())),
                };
                let stored = match self.ctl.store().network(nwid).map_err(Self::err)? {
                    Some(n) => n,
                    None => NetworkRecord::new(nwid, now),
                };
                let merged = merge(
                    stored.to_json(),
                    &body,
                    NETWORK_WRITABLE,
                    &["private", "enableBroadcast"],
                )?;
                let rec = NetworkRecord::from_json(&merged).map_err(|e| (400, e.to_string()))?;
                let saved = self
                    .ctl
                    .create_network(now, nwid, rec, &mut OsRng)
                    .map_err(Self::err)?;
                self.save_network(&saved);
                Ok(saved.to_json())
            }
            ControllerRequest::DeleteNetwork(nwid) => {
                match self
                    .ctl
                    .delete_network(now, nwid, &mut OsRng)
                    .map_err(Self::err)?
                {
                    Some(n) => {
                        self.remove_file(PathBuf::from(format!("network/{nwid}.json")));
                        self.remove_file(PathBuf::from(format!("network/{nwid}")));
                        Ok(n.to_json())
                    }
                    None => Err((404, String::new())),
                }
            }
            ControllerRequest::Members(nwid) => {
                if self.ctl.store().network(nwid).map_err(Self::err)?.is_none() {
                    return Err((404, String::new()));
                }
                let mut m = Map::new();
                for r in self.ctl.store().members(nwid).map_err(Self::err)? {
                    m.insert(r.id.to_string(), r.revision.into());
                }
                Ok(Value::Object(m))
            }
            ControllerRequest::Member(nwid, a) => match self.ctl.store().member(nwid, a) {
                Ok(Some(m)) => Ok(m.to_json()),
                Ok(None) => Err((404, String::new())),
                Err(e) => Err(Self::err(e)),
            },
            ControllerRequest::PostMember(nwid, a, body) => {
                if self.ctl.store().network(nwid).map_err(Self::err)?.is_none() {
                    return Err((404, String::new()));
                }
                let stored = self
                    .ctl
                    .store()
                    .member(nwid, a)
                    .map_err(Self::err)?
                    .unwrap_or_else(|| MemberRecord::new(nwid, a, now));
                let was = stored.authorized;
                let merged = merge(
                    stored.to_json(),
                    &body,
                    MEMBER_WRITABLE,
                    &["authorized", "activeBridge", "noAutoAssignIps"],
                )?;
                let mut rec = MemberRecord::from_json(&merged).map_err(|e| (400, e.to_string()))?;
                // the authorization stamps follow the API's rule. spec: controller.md §7.3
                let now_auth = rec.authorized;
                rec.authorized = was;
                rec.set_authorized_by_api(now_auth, now);
                let saved = self
                    .ctl
                    .upsert_member(now, rec, &mut OsRng)
                    .map_err(Self::err)?;
                self.save_member(&saved);
                Ok(saved.to_json())
            }
            ControllerRequest::DeleteMember(nwid, a) => {
                match self
                    .ctl
                    .delete_member(now, nwid, a, &mut OsRng)
                    .map_err(Self::err)?
                {
                    Some(m) => {
                        self.remove_file(PathBuf::from(format!("network/{nwid}/member/{a}.json")));
                        Ok(m.to_json())
                    }
                    None => Err((404, String::new())),
                }
            }
        }
    }

    /// A random unused id `<our address><24 random bits>`, never ending in 000000.
    /// spec: controller.md §7.1
    fn free_network_id(&self, me: Address) -> Result<NetworkId, (u16, String)> {
        for _ in 0..16_384 {
            let low = u64::from(OsRng.next_u32() & 0x00ff_ffff);
            let id = NetworkId((me.to_u64() << 24) | low.max(1));
            if matches!(self.ctl.store().network(id), Ok(None)) {
                return Ok(id);
            }
        }
        Err((503, "no free network id".into()))
    }
}
