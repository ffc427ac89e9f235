//! Controller storage: the records (the JSON objects of the HTTP API and the file database), the
//! [`Store`] trait every back-end implements, and the back-ends: [`MemoryStore`], with the
//! `sqlite` feature (default) `sqlite::SqliteStore`, and with the `postgres` feature (default)
//! `postgres::PostgresStore`. [`open_from_setting`] picks the back-end from the daemon's
//! `settings.controllerDbPath`. spec: controller.md §7.2, §7.3, §8
//!
//! Besides networks and members a store keeps the data-protection records (see `DATA.md` at the
//! repository root): recorded physical addresses of members ([`PhysicalAddressRecord`], only
//! when the operator enables recording) and the audit log of admin changes ([`AuditEntry`]).
//! [`Store::erase_member`] removes every trace of a member in one step.

use std::net::SocketAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use weft_wire::{Address, NetworkId};

mod memory;
#[cfg(feature = "postgres")]
pub mod postgres;
mod records;
#[cfg(feature = "sqlite")]
pub mod sqlite;
#[cfg(any(test, feature = "testsuite"))]
pub mod testsuite;

pub use memory::MemoryStore;
pub use records::*;

/// Errors from a storage back-end.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The back-end cannot be reached or failed (database error, I/O error).
    #[error("storage back-end failed: {reason}")]
    Backend {
        /// What went wrong, as the back-end reports it.
        reason: String,
    },
    /// A stored record could not be decoded.
    #[error("stored {what} is corrupt: {reason}")]
    Corrupt {
        /// Which record (e.g. `member 9cbc6fc0984c4142/f6372234a7`).
        what: String,
        /// The decoding error.
        reason: String,
    },
    /// The database was written by a newer weft (its schema version is unknown here).
    #[error("database schema version {found} is newer than the supported {supported}")]
    SchemaTooNew {
        /// The version found in the database.
        found: u32,
        /// The newest version this build knows.
        supported: u32,
    },
}

/// What a `put_*` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved<T> {
    /// The record as stored now (with its revision).
    pub record: T,
    /// Whether anything changed (a new record, or a difference other than `revision`).
    pub changed: bool,
}

/// The read-modify-write step of [`Store::update_member`]: gets the stored record (`None` if
/// there is none) and returns the record to save, or `None` to leave the store as it is.
pub type MemberUpdate<'a> = dyn FnMut(Option<MemberRecord>) -> Option<MemberRecord> + 'a;

/// Storage of networks, members, recorded physical addresses and the audit log.
/// Implementations: [`MemoryStore`] (tests, embedded use), `sqlite::SqliteStore`,
/// `postgres::PostgresStore` (several controllers on one database). The behaviour every back-end must have is the suite in `testsuite` (feature
/// `testsuite`). The trait is object safe (`Box<dyn Store>` works).
///
/// `put_*` must follow §8.3: compare the new record with the stored one ignoring `revision`; if
/// identical, change nothing and report `changed: false`; otherwise store it with
/// `revision = record.revision + 1`. [`apply_revision`] implements that rule for back-ends.
/// Each write is atomic: a back-end shared by several processes must not lose an update made
/// through [`Store::update_member`].
pub trait Store {
    /// The network record, if it exists.
    fn network(&self, nwid: NetworkId) -> Result<Option<NetworkRecord>, StoreError>;
    /// Every network ID, ascending.
    fn networks(&self) -> Result<Vec<NetworkId>, StoreError>;
    /// Creates or updates a network (revision rule above).
    fn put_network(&mut self, record: NetworkRecord) -> Result<Saved<NetworkRecord>, StoreError>;
    /// Deletes a network, all its members and their recorded physical addresses; returns the
    /// deleted network record. The audit log is kept (it has its own retention).
    fn delete_network(&mut self, nwid: NetworkId) -> Result<Option<NetworkRecord>, StoreError>;
    /// The member record, if it exists.
    fn member(&self, nwid: NetworkId, address: Address)
    -> Result<Option<MemberRecord>, StoreError>;
    /// Every member of a network, ascending by address.
    fn members(&self, nwid: NetworkId) -> Result<Vec<MemberRecord>, StoreError>;
    /// Creates or updates a member (revision rule above). The member's network need not exist.
    fn put_member(&mut self, record: MemberRecord) -> Result<Saved<MemberRecord>, StoreError>;
    /// Reads the member, lets `update` change it and saves the result (revision rule above),
    /// all in one transaction: concurrent updates of one member from several handles or
    /// processes are applied one after the other, none is lost. Returns `None` when `update`
    /// returned `None` (nothing written).
    fn update_member(
        &mut self,
        nwid: NetworkId,
        address: Address,
        update: &mut MemberUpdate<'_>,
    ) -> Result<Option<Saved<MemberRecord>>, StoreError>;
    /// Deletes a member and its recorded physical addresses; returns the deleted record.
    fn delete_member(
        &mut self,
        nwid: NetworkId,
        address: Address,
    ) -> Result<Option<MemberRecord>, StoreError>;

    /// Records that `member` of `nwid` was seen at `physical` at `now_ms`: creates the entry
    /// (first and last seen = now) or moves its last-seen time forward.
    fn record_physical_address(
        &mut self,
        nwid: NetworkId,
        member: Address,
        physical: SocketAddr,
        now_ms: i64,
    ) -> Result<(), StoreError>;
    /// The recorded physical addresses of a member, by first-seen time (then address).
    fn physical_addresses(
        &self,
        nwid: NetworkId,
        member: Address,
    ) -> Result<Vec<PhysicalAddressRecord>, StoreError>;
    /// Removes recorded physical addresses last seen before `cutoff_ms`; returns how many.
    fn purge_physical_addresses(&mut self, cutoff_ms: i64) -> Result<usize, StoreError>;
    /// The oldest last-seen time of any recorded physical address (the next to expire).
    fn oldest_physical_address_ms(&self) -> Result<Option<i64>, StoreError>;

    /// Appends an audit entry (its `seq` is ignored and assigned by the store: one more than
    /// any before, never reused); returns the stored entry.
    fn append_audit(&mut self, entry: AuditEntry) -> Result<AuditEntry, StoreError>;
    /// Up to `limit` audit entries with `seq > after_seq`, ascending by `seq`.
    fn audit_log(&self, after_seq: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError>;
    /// Every audit entry concerning a member (not yet erased), ascending by `seq`.
    fn member_audit(&self, nwid: NetworkId, member: Address)
    -> Result<Vec<AuditEntry>, StoreError>;
    /// Removes audit entries older than `cutoff_ms`; returns how many.
    fn purge_audit(&mut self, cutoff_ms: i64) -> Result<usize, StoreError>;
    /// The time of the oldest audit entry (the next to expire).
    fn oldest_audit_ms(&self) -> Result<Option<i64>, StoreError>;

    /// Erases a member atomically: deletes its record and recorded physical addresses and
    /// reduces its audit entries to tombstones ([`AuditEntry::tombstone`]).
    fn erase_member(&mut self, nwid: NetworkId, member: Address) -> Result<Erasure, StoreError>;

    /// Everything this store holds about a member, as JSON: `{"nwid", "address", "member"
    /// (record or null), "physicalAddresses", "audit"}`.
    fn export_member(&self, nwid: NetworkId, member: Address) -> Result<Value, StoreError> {
        let record = self.member(nwid, member)?;
        let physical: Vec<Value> = self
            .physical_addresses(nwid, member)?
            .iter()
            .map(PhysicalAddressRecord::to_json)
            .collect();
        let audit: Vec<Value> = self
            .member_audit(nwid, member)?
            .iter()
            .map(AuditEntry::to_json)
            .collect();
        Ok(json!({
            "nwid": nwid.to_string(),
            "address": member.to_string(),
            "member": record.map_or(Value::Null, |r| r.to_json()),
            "physicalAddresses": physical,
            "audit": audit,
        }))
    }
}

/// A boxed store is a store: `Controller<Box<dyn Store>>` picks its back-end at run time.
impl<S: Store + ?Sized> Store for Box<S> {
    fn network(&self, nwid: NetworkId) -> Result<Option<NetworkRecord>, StoreError> {
        (**self).network(nwid)
    }
    fn networks(&self) -> Result<Vec<NetworkId>, StoreError> {
        (**self).networks()
    }
    fn put_network(&mut self, record: NetworkRecord) -> Result<Saved<NetworkRecord>, StoreError> {
        (**self).put_network(record)
    }
    fn delete_network(&mut self, nwid: NetworkId) -> Result<Option<NetworkRecord>, StoreError> {
        (**self).delete_network(nwid)
    }
    fn member(
        &self,
        nwid: NetworkId,
        address: Address,
    ) -> Result<Option<MemberRecord>, StoreError> {
        (**self).member(nwid, address)
    }
    fn members(&self, nwid: NetworkId) -> Result<Vec<MemberRecord>, StoreError> {
        (**self).members(nwid)
    }
    fn put_member(&mut self, record: MemberRecord) -> Result<Saved<MemberRecord>, StoreError> {
        (**self).put_member(record)
    }
    fn update_member(
        &mut self,
        nwid: NetworkId,
        address: Address,
        update: &mut MemberUpdate<'_>,
    ) -> Result<Option<Saved<MemberRecord>>, StoreError> {
        (**self).update_member(nwid, address, update)
    }
    fn delete_member(
        &mut self,
        nwid: NetworkId,
        address: Address,
    ) -> Result<Option<MemberRecord>, StoreError> {
        (**self).delete_member(nwid, address)
    }
    fn record_physical_address(
        &mut self,
        nwid: NetworkId,
        member: Address,
        physical: SocketAddr,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        (**self).record_physical_address(nwid, member, physical, now_ms)
    }
    fn physical_addresses(
        &self,
        nwid: NetworkId,
        member: Address,
    ) -> Result<Vec<PhysicalAddressRecord>, StoreError> {
        (**self).physical_addresses(nwid, member)
    }
    fn purge_physical_addresses(&mut self, cutoff_ms: i64) -> Result<usize, StoreError> {
        (**self).purge_physical_addresses(cutoff_ms)
    }
    fn oldest_physical_address_ms(&self) -> Result<Option<i64>, StoreError> {
        (**self).oldest_physical_address_ms()
    }
    fn append_audit(&mut self, entry: AuditEntry) -> Result<AuditEntry, StoreError> {
        (**self).append_audit(entry)
    }
    fn audit_log(&self, after_seq: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        (**self).audit_log(after_seq, limit)
    }
    fn member_audit(
        &self,
        nwid: NetworkId,
        member: Address,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        (**self).member_audit(nwid, member)
    }
    fn purge_audit(&mut self, cutoff_ms: i64) -> Result<usize, StoreError> {
        (**self).purge_audit(cutoff_ms)
    }
    fn oldest_audit_ms(&self) -> Result<Option<i64>, StoreError> {
        (**self).oldest_audit_ms()
    }
    fn erase_member(&mut self, nwid: NetworkId, member: Address) -> Result<Erasure, StoreError> {
        (**self).erase_member(nwid, member)
    }
    fn export_member(&self, nwid: NetworkId, member: Address) -> Result<Value, StoreError> {
        (**self).export_member(nwid, member)
    }
}

/// The file name of the SQLite database in the home folder when `controllerDbPath` is unset.
pub const DEFAULT_DB_FILE: &str = "controller.db";

/// Whether a `controllerDbPath` setting names a PostgreSQL database: it starts with
/// `postgres:` (ZeroTier's form, `postgres:host=… dbname=…`) or `postgresql://`.
/// spec: controller.md §8.4, service.md §3.1
pub fn is_postgres_setting(db_path: &str) -> bool {
    let s = db_path.trim_start();
    s.starts_with("postgres:") || s.starts_with("postgresql://")
}

/// Opens the store the daemon's `settings.controllerDbPath` names (spec: service.md §3.1,
/// controller.md §8.4):
///
/// * unset: SQLite at `<home>/controller.db`;
/// * starting with `postgres:` or `postgresql://`: PostgreSQL (`postgres::PostgresStore`; the
///   rest is a libpq `key=value` string or the URL), migrated to the current schema;
/// * anything else: a SQLite file at that path (relative to `home`).
///
/// The reference's default (`<home>/controller.d`, a folder of JSON files) is not a SQLite
/// file; a setting that names an existing folder is refused rather than misread.
pub fn open_from_setting(
    db_path: Option<&str>,
    home: &std::path::Path,
) -> Result<Box<dyn Store + Send>, StoreError> {
    match db_path.map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) if is_postgres_setting(s) => open_postgres(s),
        Some(path) => open_sqlite(&home.join(path)),
        None => open_sqlite(&home.join(DEFAULT_DB_FILE)),
    }
}

#[cfg(feature = "postgres")]
fn open_postgres(setting: &str) -> Result<Box<dyn Store + Send>, StoreError> {
    Ok(Box::new(postgres::PostgresStore::connect(setting)?))
}

#[cfg(not(feature = "postgres"))]
fn open_postgres(_setting: &str) -> Result<Box<dyn Store + Send>, StoreError> {
    Err(StoreError::Backend {
        reason: "controllerDbPath names PostgreSQL, but this build has no PostgreSQL support \
                 (cargo feature `postgres`)"
            .into(),
    })
}

#[cfg(feature = "sqlite")]
fn open_sqlite(path: &std::path::Path) -> Result<Box<dyn Store + Send>, StoreError> {
    if path.is_dir() {
        return Err(StoreError::Backend {
            reason: format!(
                "controllerDbPath {} is a folder (a file database?); weft needs a SQLite file \
                 path or a postgres: setting",
                path.display()
            ),
        });
    }
    Ok(Box::new(sqlite::SqliteStore::open(path)?))
}

#[cfg(not(feature = "sqlite"))]
fn open_sqlite(path: &std::path::Path) -> Result<Box<dyn Store + Send>, StoreError> {
    Err(StoreError::Backend {
        reason: format!(
            "{}: this build has no SQLite support (cargo feature `sqlite`)",
            path.display()
        ),
    })
}

/// A record with a revision counter (the §8.3 save rule).
pub trait Revisioned: Clone + PartialEq {
    /// The revision.
    fn revision(&self) -> u64;
    /// Sets the revision.
    fn set_revision(&mut self, revision: u64);
}

/// Applies the §8.3 save rule to `new` given the stored record: returns `None` when nothing but
/// the revision differs (nothing to store), otherwise the record to store, with
/// `revision = new.revision + 1`. spec: controller.md §8.3
pub fn apply_revision<T: Revisioned>(stored: Option<&T>, new: T) -> Option<T> {
    if let Some(old) = stored {
        let mut cmp = new.clone();
        cmp.set_revision(old.revision());
        if &cmp == old {
            return None;
        }
    }
    let mut out = new;
    out.set_revision(out.revision().saturating_add(1));
    Some(out)
}

/// What [`Store::erase_member`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Erasure {
    /// Whether a member record existed (and was deleted).
    pub member: bool,
    /// Recorded physical addresses deleted.
    pub physical_addresses: usize,
    /// Audit entries reduced to tombstones.
    pub audit_entries: usize,
}

/// A physical (underlay) address a member was seen at: its IP address and port, which is
/// personal data. Recorded only when the operator enables it, kept for the configured
/// retention window (see `DATA.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhysicalAddressRecord {
    /// The network the member requested a config for.
    pub nwid: NetworkId,
    /// The member.
    pub member: Address,
    /// The source address of its request.
    pub physical: SocketAddr,
    /// First request from this address (ms).
    pub first_seen_ms: i64,
    /// Latest request from this address (ms).
    pub last_seen_ms: i64,
}

impl PhysicalAddressRecord {
    /// `{"physical": "ip:port", "firstSeen": ms, "lastSeen": ms}`.
    pub fn to_json(&self) -> Value {
        json!({
            "physical": self.physical.to_string(),
            "firstSeen": self.first_seen_ms,
            "lastSeen": self.last_seen_ms,
        })
    }
}

/// What an audit entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum AuditAction {
    /// A network record was created.
    #[serde(rename = "network.created")]
    NetworkCreated,
    /// A network record changed (`details.keys` names the changed keys).
    #[serde(rename = "network.changed")]
    NetworkChanged,
    /// A network and its members were deleted.
    #[serde(rename = "network.deleted")]
    NetworkDeleted,
    /// A member record was created through the API.
    #[serde(rename = "member.created")]
    MemberCreated,
    /// A member record changed, `authorized` unchanged (`details.keys`).
    #[serde(rename = "member.changed")]
    MemberChanged,
    /// A member was deleted.
    #[serde(rename = "member.deleted")]
    MemberDeleted,
    /// A member became authorized (`details.keys`: every changed key).
    #[serde(rename = "member.authorized")]
    MemberAuthorized,
    /// A member lost its authorization (`details.keys`).
    #[serde(rename = "member.deauthorized")]
    MemberDeauthorized,
    /// A member was erased (the entry names the network only, not the member).
    #[serde(rename = "member.erased")]
    MemberErased,
}

impl AuditAction {
    /// Every action.
    pub const ALL: [AuditAction; 9] = [
        AuditAction::NetworkCreated,
        AuditAction::NetworkChanged,
        AuditAction::NetworkDeleted,
        AuditAction::MemberCreated,
        AuditAction::MemberChanged,
        AuditAction::MemberDeleted,
        AuditAction::MemberAuthorized,
        AuditAction::MemberDeauthorized,
        AuditAction::MemberErased,
    ];

    /// The stored name (`"member.authorized"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::NetworkCreated => "network.created",
            AuditAction::NetworkChanged => "network.changed",
            AuditAction::NetworkDeleted => "network.deleted",
            AuditAction::MemberCreated => "member.created",
            AuditAction::MemberChanged => "member.changed",
            AuditAction::MemberDeleted => "member.deleted",
            AuditAction::MemberAuthorized => "member.authorized",
            AuditAction::MemberDeauthorized => "member.deauthorized",
            AuditAction::MemberErased => "member.erased",
        }
    }
}

/// An unknown audit action name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown audit action {0:?}")]
pub struct UnknownAuditAction(pub String);

impl FromStr for AuditAction {
    type Err = UnknownAuditAction;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AuditAction::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| UnknownAuditAction(s.to_owned()))
    }
}

/// What a tombstone shows in place of the member address (JSON form).
pub const ERASED: &str = "erased";

/// One entry of the audit log of admin changes. Append-only, except that retention removes old
/// entries and erasing a member turns its entries into tombstones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Sequence number, assigned by the store (ascending, never reused).
    pub seq: u64,
    /// When (ms).
    pub time_ms: i64,
    /// Who made the change, as the caller names it (e.g. `"api"`, an operator name). Operators
    /// are accountable for changes, so tombstones keep it.
    pub actor: String,
    /// What happened.
    pub action: AuditAction,
    /// The network concerned.
    pub nwid: NetworkId,
    /// The member concerned (`None` for network actions and tombstones).
    pub member: Option<Address>,
    /// Details (for changes `{"keys": [changed keys]}`; never record values); `null` in
    /// tombstones.
    pub details: Value,
    /// Whether this is the tombstone of an erased member's entry.
    pub erased: bool,
}

impl AuditEntry {
    /// A new entry (`seq` 0 until stored).
    pub fn new(
        time_ms: i64,
        actor: &str,
        action: AuditAction,
        nwid: NetworkId,
        member: Option<Address>,
        details: Value,
    ) -> Self {
        AuditEntry {
            seq: 0,
            time_ms,
            actor: actor.to_owned(),
            action,
            nwid,
            member,
            details,
            erased: false,
        }
    }

    /// The entry with its member and details dropped: what erasing the member leaves (time,
    /// action, network and actor stay).
    pub fn tombstone(mut self) -> Self {
        self.member = None;
        self.details = Value::Null;
        self.erased = true;
        self
    }

    /// `{"seq", "time", "actor", "action", "nwid", "member" ("erased" in tombstones, else the
    /// address or null), "details", "erased"}`.
    pub fn to_json(&self) -> Value {
        let member = match (self.member, self.erased) {
            (_, true) => Value::String(ERASED.into()),
            (Some(a), false) => Value::String(a.to_string()),
            (None, false) => Value::Null,
        };
        json!({
            "seq": self.seq,
            "time": self.time_ms,
            "actor": self.actor,
            "action": self.action.as_str(),
            "nwid": self.nwid.to_string(),
            "member": member,
            "details": self.details,
            "erased": self.erased,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_select_the_back_end() {
        for s in [
            "postgres:host=/x dbname=y",
            "postgresql://u@h/db",
            " postgres://u@h/db",
        ] {
            assert!(is_postgres_setting(s), "{s}");
        }
        for s in [
            "/var/lib/weft/controller.db",
            "controller.d",
            "postgresdb.sqlite",
        ] {
            assert!(!is_postgres_setting(s), "{s}");
        }
        let home = tempfile::tempdir().unwrap();
        // unset: SQLite in the home folder
        let mut s = open_from_setting(None, home.path()).unwrap();
        s.put_network(NetworkRecord::new(NetworkId(0x7c55a8da82c90312), 1))
            .unwrap();
        assert!(home.path().join(DEFAULT_DB_FILE).is_file());
        // a relative path is under the home folder; a folder is refused
        open_from_setting(Some("other.db"), home.path()).unwrap();
        assert!(home.path().join("other.db").is_file());
        std::fs::create_dir(home.path().join("controller.d")).unwrap();
        let Err(err) = open_from_setting(Some("controller.d"), home.path()) else {
            panic!("a folder opened as SQLite");
        };
        assert!(err.to_string().contains("is a folder"), "{err}");
        // PostgreSQL: connecting is attempted (here to a socket that does not exist)
        let Err(err) = open_from_setting(
            Some("postgres:host=/nonexistent/weft dbname=x"),
            home.path(),
        ) else {
            panic!("connected to nothing");
        };
        assert!(matches!(err, StoreError::Backend { .. }), "{err}");
    }
}
