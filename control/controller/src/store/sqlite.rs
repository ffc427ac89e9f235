//! [`SqliteStore`]: the controller database in one SQLite file (bundled SQLite, WAL mode).
//!
//! Records are stored as the JSON objects of §7.2/§7.3 (the same text the file database writes,
//! sorted keys), next to key columns (`nwid`, `address` as lowercase hex, `revision`). Every
//! write runs in a `BEGIN IMMEDIATE` transaction, so the §8.3 compare-and-bump of `put_*` and
//! the read-modify-write of [`Store::update_member`] are atomic even with several processes on
//! one file: a second writer waits (up to [`BUSY_TIMEOUT`]) for the first to commit and then
//! reads its result. spec: controller.md §8.3
//!
//! The schema is versioned: table `schema_version` lists the migrations applied; opening a file
//! applies the missing ones in one transaction and refuses a file from a newer weft.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use weft_wire::{Address, NetworkId};

use super::{
    AuditEntry, Erasure, MemberRecord, MemberUpdate, NetworkRecord, PhysicalAddressRecord,
    Revisioned, Saved, Store, StoreError, apply_revision,
};

/// How long a write waits for another connection's write transaction before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Migration 1: the tables. Key columns are lowercase hex text, which sorts like the numbers.
const MIGRATION_1: &str = "
CREATE TABLE network (
    nwid     TEXT PRIMARY KEY NOT NULL,
    revision INTEGER NOT NULL,
    json     TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE member (
    nwid     TEXT NOT NULL,
    address  TEXT NOT NULL,
    revision INTEGER NOT NULL,
    json     TEXT NOT NULL,
    PRIMARY KEY (nwid, address)
) WITHOUT ROWID;
CREATE TABLE physical_address (
    nwid       TEXT NOT NULL,
    address    TEXT NOT NULL,
    physical   TEXT NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL,
    PRIMARY KEY (nwid, address, physical)
) WITHOUT ROWID;
CREATE INDEX physical_address_last_seen ON physical_address (last_seen);
CREATE TABLE audit (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    time    INTEGER NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    nwid    TEXT NOT NULL,
    address TEXT,
    details TEXT,
    erased  INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX audit_member ON audit (nwid, address);
CREATE INDEX audit_time ON audit (time);
";

/// The migrations, in order; migration `i + 1` is `MIGRATIONS[i]`. Append only.
const MIGRATIONS: &[&str] = &[MIGRATION_1];

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Backend {
            reason: e.to_string(),
        }
    }
}

/// The controller database in a SQLite file. Several handles (in one process or several) may
/// use one file at once.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`: WAL mode, then the missing
    /// migrations.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path.as_ref(), MIGRATIONS)
    }

    fn open_with(path: &Path, migrations: &[&str]) -> Result<Self, StoreError> {
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // WAL: readers never block the writer; NORMAL sync is durable across process crashes
        // (a power loss may drop the last transactions, never corrupt the file).
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Backend {
                reason: format!(
                    "{}: cannot enable WAL (journal mode {mode})",
                    path.display()
                ),
            });
        }
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // deleted rows (erased members, purged addresses) are overwritten, not left in free pages
        conn.pragma_update(None, "secure_delete", "ON")?;
        migrate(&mut conn, migrations)?;
        Ok(SqliteStore {
            conn,
            path: path.to_owned(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version of the file (the number of migrations applied).
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        Ok(self.conn.query_row(
            "SELECT coalesce(max(version), 0) FROM schema_version",
            [],
            |r| r.get(0),
        )?)
    }

    /// Runs `f` in a `BEGIN IMMEDIATE` transaction (the write lock is taken up front, so a
    /// read inside `f` sees the latest committed state and nothing can commit in between);
    /// commits if `f` succeeds, rolls back otherwise.
    fn write<T>(
        &mut self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }
}

/// Applies the migrations `migrations` misses, in one transaction.
fn migrate(conn: &mut Connection, migrations: &[&str]) -> Result<(), StoreError> {
    let supported = migrations.len() as u32;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_version (
            version INTEGER PRIMARY KEY NOT NULL
        )",
    )?;
    let found: u32 = tx.query_row(
        "SELECT coalesce(max(version), 0) FROM schema_version",
        [],
        |r| r.get(0),
    )?;
    if found > supported {
        return Err(StoreError::SchemaTooNew { found, supported });
    }
    for (version, sql) in (1..).zip(migrations).skip(found as usize) {
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES (?1)",
            [version],
        )?;
    }
    tx.commit()?;
    Ok(())
}

fn hex_nwid(nwid: NetworkId) -> String {
    nwid.to_string()
}

fn hex_addr(a: Address) -> String {
    a.to_string()
}

fn decode<T: DeserializeOwned>(what: impl FnOnce() -> String, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        what: what(),
        reason: e.to_string(),
    })
}

fn encode<T: Serialize>(record: &T) -> String {
    // records are plain data: serializing cannot fail
    serde_json::to_string(record).expect("record serializes")
}

fn parse_key<T: std::str::FromStr>(what: &str, text: &str) -> Result<T, StoreError>
where
    T::Err: std::fmt::Display,
{
    text.parse().map_err(|e: T::Err| StoreError::Corrupt {
        what: format!("{what} key {text:?}"),
        reason: e.to_string(),
    })
}

fn read_network(tx: &Connection, nwid: NetworkId) -> Result<Option<NetworkRecord>, StoreError> {
    let text: Option<String> = tx
        .query_row(
            "SELECT json FROM network WHERE nwid = ?1",
            [hex_nwid(nwid)],
            |r| r.get(0),
        )
        .optional()?;
    text.map(|t| decode(|| format!("network {nwid}"), &t))
        .transpose()
}

fn read_member(
    tx: &Connection,
    nwid: NetworkId,
    address: Address,
) -> Result<Option<MemberRecord>, StoreError> {
    let text: Option<String> = tx
        .query_row(
            "SELECT json FROM member WHERE nwid = ?1 AND address = ?2",
            [hex_nwid(nwid), hex_addr(address)],
            |r| r.get(0),
        )
        .optional()?;
    text.map(|t| decode(|| format!("member {nwid}/{address}"), &t))
        .transpose()
}

fn save_member(
    tx: &Connection,
    stored: Option<MemberRecord>,
    record: MemberRecord,
) -> Result<Saved<MemberRecord>, StoreError> {
    match apply_revision(stored.as_ref(), record) {
        Some(r) => {
            tx.execute(
                "INSERT INTO member (nwid, address, revision, json) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (nwid, address) DO UPDATE
                 SET revision = excluded.revision, json = excluded.json",
                params![
                    hex_nwid(r.nwid),
                    hex_addr(r.id),
                    r.revision() as i64,
                    encode(&r)
                ],
            )?;
            Ok(Saved {
                record: r,
                changed: true,
            })
        }
        None => Ok(Saved {
            record: stored.expect("present when unchanged"),
            changed: false,
        }),
    }
}

fn delete_physical(
    tx: &Connection,
    nwid: NetworkId,
    member: Option<Address>,
) -> Result<usize, StoreError> {
    Ok(match member {
        Some(a) => tx.execute(
            "DELETE FROM physical_address WHERE nwid = ?1 AND address = ?2",
            [hex_nwid(nwid), hex_addr(a)],
        )?,
        None => tx.execute(
            "DELETE FROM physical_address WHERE nwid = ?1",
            [hex_nwid(nwid)],
        )?,
    })
}

const AUDIT_COLUMNS: &str = "seq, time, actor, action, nwid, address, details, erased";

/// The raw columns of an `audit` row, decoded outside the row callback.
type AuditRow = (
    i64,
    i64,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    bool,
);

fn audit_rows(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<AuditEntry>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params, |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
            r.get(6)?,
            r.get(7)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, time, actor, action, nwid, address, details, erased): AuditRow = row?;
        out.push(AuditEntry {
            seq: seq as u64,
            time_ms: time,
            actor,
            action: parse_key("audit action", &action)?,
            nwid: parse_key("audit nwid", &nwid)?,
            member: address
                .map(|a| parse_key("audit address", &a))
                .transpose()?,
            details: match details {
                Some(d) => decode(|| format!("audit entry {seq}"), &d)?,
                None => Value::Null,
            },
            erased,
        });
    }
    Ok(out)
}

impl Store for SqliteStore {
    fn network(&self, nwid: NetworkId) -> Result<Option<NetworkRecord>, StoreError> {
        read_network(&self.conn, nwid)
    }

    fn networks(&self) -> Result<Vec<NetworkId>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT nwid FROM network ORDER BY nwid")?;
        let ids = stmt.query_map([], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for id in ids {
            out.push(parse_key("network", &id?)?);
        }
        Ok(out)
    }

    fn put_network(&mut self, record: NetworkRecord) -> Result<Saved<NetworkRecord>, StoreError> {
        self.write(|tx| {
            let stored = read_network(tx, record.id)?;
            match apply_revision(stored.as_ref(), record) {
                Some(r) => {
                    tx.execute(
                        "INSERT INTO network (nwid, revision, json) VALUES (?1, ?2, ?3)
                         ON CONFLICT (nwid) DO UPDATE
                         SET revision = excluded.revision, json = excluded.json",
                        params![hex_nwid(r.id), r.revision() as i64, encode(&r)],
                    )?;
                    Ok(Saved {
                        record: r,
                        changed: true,
                    })
                }
                None => Ok(Saved {
                    record: stored.expect("present when unchanged"),
                    changed: false,
                }),
            }
        })
    }

    fn delete_network(&mut self, nwid: NetworkId) -> Result<Option<NetworkRecord>, StoreError> {
        self.write(|tx| {
            let stored = read_network(tx, nwid)?;
            tx.execute("DELETE FROM member WHERE nwid = ?1", [hex_nwid(nwid)])?;
            delete_physical(tx, nwid, None)?;
            tx.execute("DELETE FROM network WHERE nwid = ?1", [hex_nwid(nwid)])?;
            Ok(stored)
        })
    }

    fn member(
        &self,
        nwid: NetworkId,
        address: Address,
    ) -> Result<Option<MemberRecord>, StoreError> {
        read_member(&self.conn, nwid, address)
    }

    fn members(&self, nwid: NetworkId) -> Result<Vec<MemberRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT address, json FROM member WHERE nwid = ?1 ORDER BY address")?;
        let rows = stmt.query_map([hex_nwid(nwid)], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (address, json) = row?;
            out.push(decode(|| format!("member {nwid}/{address}"), &json)?);
        }
        Ok(out)
    }

    fn put_member(&mut self, record: MemberRecord) -> Result<Saved<MemberRecord>, StoreError> {
        self.write(|tx| {
            let stored = read_member(tx, record.nwid, record.id)?;
            save_member(tx, stored, record)
        })
    }

    fn update_member(
        &mut self,
        nwid: NetworkId,
        address: Address,
        update: &mut MemberUpdate<'_>,
    ) -> Result<Option<Saved<MemberRecord>>, StoreError> {
        self.write(|tx| {
            let stored = read_member(tx, nwid, address)?;
            match update(stored.clone()) {
                Some(mut r) => {
                    // the key is the one read, whatever the closure did to it
                    r.nwid = nwid;
                    r.id = address;
                    save_member(tx, stored, r).map(Some)
                }
                None => Ok(None),
            }
        })
    }

    fn delete_member(
        &mut self,
        nwid: NetworkId,
        address: Address,
    ) -> Result<Option<MemberRecord>, StoreError> {
        self.write(|tx| {
            let stored = read_member(tx, nwid, address)?;
            tx.execute(
                "DELETE FROM member WHERE nwid = ?1 AND address = ?2",
                [hex_nwid(nwid), hex_addr(address)],
            )?;
            delete_physical(tx, nwid, Some(address))?;
            Ok(stored)
        })
    }

    fn record_physical_address(
        &mut self,
        nwid: NetworkId,
        member: Address,
        physical: SocketAddr,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        // one statement: atomic without an explicit transaction
        self.conn
            .prepare_cached(
                "INSERT INTO physical_address (nwid, address, physical, first_seen, last_seen)
                 VALUES (?1, ?2, ?3, ?4, ?4)
                 ON CONFLICT (nwid, address, physical) DO UPDATE
                 SET last_seen = max(last_seen, excluded.last_seen)",
            )?
            .execute(params![
                hex_nwid(nwid),
                hex_addr(member),
                physical.to_string(),
                now_ms
            ])?;
        Ok(())
    }

    fn physical_addresses(
        &self,
        nwid: NetworkId,
        member: Address,
    ) -> Result<Vec<PhysicalAddressRecord>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT physical, first_seen, last_seen FROM physical_address
             WHERE nwid = ?1 AND address = ?2 ORDER BY first_seen, physical",
        )?;
        let rows = stmt.query_map([hex_nwid(nwid), hex_addr(member)], |r| {
            Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (physical, first_seen_ms, last_seen_ms) = row?;
            out.push(PhysicalAddressRecord {
                nwid,
                member,
                physical: parse_key("physical address", &physical)?,
                first_seen_ms,
                last_seen_ms,
            });
        }
        Ok(out)
    }

    fn purge_physical_addresses(&mut self, cutoff_ms: i64) -> Result<usize, StoreError> {
        Ok(self.conn.execute(
            "DELETE FROM physical_address WHERE last_seen < ?1",
            [cutoff_ms],
        )?)
    }

    fn oldest_physical_address_ms(&self) -> Result<Option<i64>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT min(last_seen) FROM physical_address", [], |r| {
                r.get(0)
            })?)
    }

    fn append_audit(&mut self, mut entry: AuditEntry) -> Result<AuditEntry, StoreError> {
        let details = (!entry.details.is_null()).then(|| encode(&entry.details));
        let seq: i64 = self.conn.query_row(
            "INSERT INTO audit (time, actor, action, nwid, address, details, erased)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING seq",
            params![
                entry.time_ms,
                entry.actor,
                entry.action.as_str(),
                hex_nwid(entry.nwid),
                entry.member.map(hex_addr),
                details,
                entry.erased
            ],
            |r| r.get(0),
        )?;
        entry.seq = seq as u64;
        Ok(entry)
    }

    fn audit_log(&self, after_seq: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        audit_rows(
            &self.conn,
            &format!("SELECT {AUDIT_COLUMNS} FROM audit WHERE seq > ?1 ORDER BY seq LIMIT ?2"),
            params![
                i64::try_from(after_seq).unwrap_or(i64::MAX),
                i64::try_from(limit).unwrap_or(i64::MAX)
            ],
        )
    }

    fn member_audit(
        &self,
        nwid: NetworkId,
        member: Address,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        audit_rows(
            &self.conn,
            &format!(
                "SELECT {AUDIT_COLUMNS} FROM audit WHERE nwid = ?1 AND address = ?2 ORDER BY seq"
            ),
            params![hex_nwid(nwid), hex_addr(member)],
        )
    }

    fn purge_audit(&mut self, cutoff_ms: i64) -> Result<usize, StoreError> {
        Ok(self
            .conn
            .execute("DELETE FROM audit WHERE time < ?1", [cutoff_ms])?)
    }

    fn oldest_audit_ms(&self) -> Result<Option<i64>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT min(time) FROM audit", [], |r| r.get(0))?)
    }

    fn erase_member(&mut self, nwid: NetworkId, member: Address) -> Result<Erasure, StoreError> {
        let erasure = self.write(|tx| {
            let keys = [hex_nwid(nwid), hex_addr(member)];
            let deleted = tx.execute(
                "DELETE FROM member WHERE nwid = ?1 AND address = ?2",
                params![keys[0], keys[1]],
            )?;
            let physical_addresses = delete_physical(tx, nwid, Some(member))?;
            let audit_entries = tx.execute(
                "UPDATE audit SET address = NULL, details = NULL, erased = 1
                 WHERE nwid = ?1 AND address = ?2",
                params![keys[0], keys[1]],
            )?;
            Ok(Erasure {
                member: deleted > 0,
                physical_addresses,
                audit_entries,
            })
        })?;
        // Copy the WAL into the file and truncate it, so the old row versions do not linger in
        // the WAL either. Best effort: a concurrent reader can keep the checkpoint from
        // completing; SQLite then finishes it on a later checkpoint.
        let _ = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        Ok(erasure)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testsuite;

    fn temp() -> tempfile::TempDir {
        tempfile::tempdir().expect("temp dir")
    }

    #[test]
    fn store_suite() {
        let dir = temp();
        let mut n = 0;
        let ran = testsuite::run(|| {
            n += 1;
            SqliteStore::open(dir.path().join(format!("suite{n}.db"))).unwrap()
        });
        assert_eq!(ran, testsuite::CASES.len());
    }

    #[test]
    fn two_handles_on_one_file_lose_no_update() {
        let dir = temp();
        let path = dir.path().join("ctl.db");
        let a = SqliteStore::open(&path).unwrap();
        let b = SqliteStore::open(&path).unwrap();
        assert_eq!(testsuite::concurrent_updates(a, b), 82);
    }

    #[test]
    fn new_file_is_wal_at_the_current_version_and_persists() {
        let dir = temp();
        let path = dir.path().join("ctl.db");
        let nwid = NetworkId(0x7c55a8da82c90312);
        {
            let mut s = SqliteStore::open(&path).unwrap();
            assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
            assert_eq!(s.path(), path);
            s.put_network(NetworkRecord::new(nwid, 1)).unwrap();
            let mode: String = s
                .conn
                .query_row("PRAGMA journal_mode", [], |r| r.get(0))
                .unwrap();
            assert_eq!(mode, "wal");
        }
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.network(nwid).unwrap().unwrap().revision, 1);
        // the JSON column is the record's sorted-key JSON, as the file database writes it
        let (text, rev): (String, i64) = s
            .conn
            .query_row("SELECT json, revision FROM network", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!(
            text,
            serde_json::to_string(&s.network(nwid).unwrap().unwrap().to_json()).unwrap()
        );
        assert_eq!(rev, 1);
    }

    #[test]
    fn migrations_apply_to_an_existing_database_once() {
        let dir = temp();
        let path = dir.path().join("ctl.db");
        let nwid = NetworkId(0x7c55a8da82c90312);
        let a: Address = "0a33989140".parse().unwrap();
        {
            // a version-1 database with data in it
            let mut s = SqliteStore::open_with(&path, &[MIGRATION_1]).unwrap();
            s.put_network(NetworkRecord::new(nwid, 1)).unwrap();
            s.put_member(MemberRecord::new(nwid, a, 2)).unwrap();
        }
        // a later build adds migration 2
        const MIGRATION_2: &str = "ALTER TABLE member ADD COLUMN note TEXT;
            UPDATE member SET note = 'migrated';";
        let v2 = [MIGRATION_1, MIGRATION_2];
        let s = SqliteStore::open_with(&path, &v2).unwrap();
        assert_eq!(s.schema_version().unwrap(), 2);
        assert_eq!(s.member(nwid, a).unwrap().unwrap().revision, 1, "data kept");
        let note: String = s
            .conn
            .query_row("SELECT note FROM member", [], |r| r.get(0))
            .unwrap();
        assert_eq!(note, "migrated");
        drop(s);
        // reopening applies nothing again (a second ALTER TABLE would fail)
        let s = SqliteStore::open_with(&path, &v2).unwrap();
        let versions: Vec<u32> = s
            .conn
            .prepare("SELECT version FROM schema_version ORDER BY version")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(versions, [1, 2]);
        drop(s);
        // and this build refuses the newer file instead of misreading it
        match SqliteStore::open(&path) {
            Err(StoreError::SchemaTooNew { found, supported }) => {
                assert_eq!((found, supported), (2, SCHEMA_VERSION));
            }
            other => panic!("expected SchemaTooNew, got {other:?}"),
        }
    }

    #[test]
    fn a_failed_migration_leaves_the_file_unchanged() {
        let dir = temp();
        let path = dir.path().join("ctl.db");
        SqliteStore::open_with(&path, &[MIGRATION_1]).unwrap();
        let err = SqliteStore::open_with(&path, &[MIGRATION_1, "CREATE TABLE x (a); BOGUS;"])
            .unwrap_err();
        assert!(matches!(err, StoreError::Backend { .. }), "{err}");
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap(), 1);
        let x: i64 = s
            .conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'x'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(x, 0, "rolled back");
    }

    #[test]
    fn corrupt_rows_are_reported() {
        let dir = temp();
        let mut s = SqliteStore::open(dir.path().join("ctl.db")).unwrap();
        let nwid = NetworkId(0x7c55a8da82c90312);
        s.conn
            .execute(
                "INSERT INTO network (nwid, revision, json) VALUES (?1, 1, '{not json')",
                [nwid.to_string()],
            )
            .unwrap();
        match s.network(nwid) {
            Err(StoreError::Corrupt { what, .. }) => assert_eq!(what, format!("network {nwid}")),
            other => panic!("expected Corrupt, got {other:?}"),
        }
        // a write that reads the corrupt row fails and changes nothing
        assert!(s.put_network(NetworkRecord::new(nwid, 1)).is_err());
    }
}
