//! [`PostgresStore`]: the controller database on a PostgreSQL server, for operators who run
//! several controllers (several `weft` daemons sharing one controller identity) against one
//! database. spec: controller.md §8.4 (`controllerDbPath` starting with `postgres:`)
//!
//! The layout is the SQLite store's (`sqlite.rs`): records as the JSON text of §7.2/§7.3 (sorted
//! keys, exactly what the file database writes; `text`, not `jsonb`, which would reorder keys
//! and drop duplicates) next to key columns (`nwid`, `address` as lowercase hex in the `"C"`
//! collation, so text order is numeric order whatever the database's locale), plus the
//! recorded physical addresses and the audit log.
//!
//! Concurrency: every write runs in a transaction (READ COMMITTED) that first takes a
//! transaction-scoped advisory lock on the record's key (`pg_advisory_xact_lock`, which also
//! covers records that do not exist yet, where `FOR UPDATE` has no row to lock) and then reads
//! the row `FOR UPDATE` (which orders it against bulk deletes). A second writer of the same
//! record, from any connection or process, waits until the first commits and then reads its
//! result: the §8.3 compare-and-bump of `put_*` and the read-modify-write of
//! [`Store::update_member`] never lose an update. spec: controller.md §8.3
//!
//! The schema is versioned like SQLite's: table `schema_version` lists the migrations applied;
//! connecting applies the missing ones in one transaction, under an advisory lock so that
//! controllers starting together migrate once, and refuses a database from a newer weft.
//!
//! Connections use no TLS (`NoTls`): reach the server over a Unix socket or a trusted network.

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Mutex, MutexGuard, PoisonError};

use postgres::types::ToSql;
use postgres::{Client, Config, GenericClient, NoTls, Row, Transaction};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use weft_wire::{Address, NetworkId};

use super::{
    AuditEntry, Erasure, MemberRecord, MemberUpdate, NetworkRecord, PhysicalAddressRecord,
    Revisioned, Saved, Store, StoreError, apply_revision,
};

#[cfg(any(test, feature = "testsuite"))]
pub mod test_server;

/// Migration 1: the tables (the SQLite schema in PostgreSQL types).
const MIGRATION_1: &str = r#"
CREATE TABLE network (
    nwid     text COLLATE "C" PRIMARY KEY,
    revision bigint NOT NULL,
    json     text NOT NULL
);
CREATE TABLE member (
    nwid     text COLLATE "C" NOT NULL,
    address  text COLLATE "C" NOT NULL,
    revision bigint NOT NULL,
    json     text NOT NULL,
    PRIMARY KEY (nwid, address)
);
CREATE TABLE physical_address (
    nwid       text COLLATE "C" NOT NULL,
    address    text COLLATE "C" NOT NULL,
    physical   text COLLATE "C" NOT NULL,
    first_seen bigint NOT NULL,
    last_seen  bigint NOT NULL,
    PRIMARY KEY (nwid, address, physical)
);
CREATE INDEX physical_address_last_seen ON physical_address (last_seen);
CREATE TABLE audit (
    seq     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    time    bigint NOT NULL,
    actor   text NOT NULL,
    action  text NOT NULL,
    nwid    text COLLATE "C" NOT NULL,
    address text COLLATE "C",
    details text,
    erased  boolean NOT NULL DEFAULT false
);
CREATE INDEX audit_member ON audit (nwid, address);
CREATE INDEX audit_time ON audit (time);
"#;

/// The migrations, in order; migration `i + 1` is `MIGRATIONS[i]`. Append only.
const MIGRATIONS: &[&str] = &[MIGRATION_1];

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// The advisory lock taken while migrating (any 64-bit constant; "weftmigr").
const MIGRATION_LOCK: i64 = 0x7765_6674_6d69_6772;

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        // the server's message (e.g. a constraint name) is in the source, not in Display
        let reason = match e.as_db_error() {
            Some(db) => format!("{e}: {}", db.message()),
            None => match std::error::Error::source(&e) {
                Some(src) => format!("{e}: {src}"),
                None => e.to_string(),
            },
        };
        StoreError::Backend { reason }
    }
}

/// Parses a connection setting: a `postgresql://` / `postgres://` URL, or a libpq-style
/// `key=value` string (`host=/run/postgresql dbname=weft user=weft`), optionally prefixed with
/// `postgres:` as in ZeroTier's `controllerDbPath` (`postgres:host=… dbname=…`).
pub fn parse_config(setting: &str) -> Result<Config, StoreError> {
    let s = setting.trim();
    let s = if s.starts_with("postgres://") || s.starts_with("postgresql://") {
        s
    } else {
        s.strip_prefix("postgres:").unwrap_or(s)
    };
    Config::from_str(s).map_err(|e| StoreError::Backend {
        reason: format!("invalid PostgreSQL connection setting: {e}"),
    })
}

/// The controller database on a PostgreSQL server. One connection per store; several stores
/// (in one process or several) may share a database.
pub struct PostgresStore {
    /// The read methods of [`Store`] take `&self`; the client needs `&mut`.
    client: Mutex<Client>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects with `setting` (see [`parse_config`]) and applies the missing migrations.
    pub fn connect(setting: &str) -> Result<Self, StoreError> {
        Self::connect_with(&parse_config(setting)?, MIGRATIONS)
    }

    /// Connects with a parsed configuration and applies the missing migrations.
    pub fn connect_config(config: &Config) -> Result<Self, StoreError> {
        Self::connect_with(config, MIGRATIONS)
    }

    fn connect_with(config: &Config, migrations: &[&str]) -> Result<Self, StoreError> {
        let mut client = config.connect(NoTls)?;
        migrate(&mut client, migrations)?;
        Ok(PostgresStore {
            client: Mutex::new(client),
        })
    }

    /// The schema version of the database (the number of migrations applied).
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        let v: i32 = self
            .client()
            .query_one("SELECT coalesce(max(version), 0) FROM schema_version", &[])?
            .get(0);
        Ok(v as u32)
    }

    fn client(&self) -> MutexGuard<'_, Client> {
        // a panic while holding the lock leaves no open transaction behind (dropping a
        // `Transaction` rolls it back), so the client is still usable
        self.client.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` in a transaction; commits if `f` succeeds, rolls back otherwise.
    fn write<T>(
        &mut self,
        f: impl FnOnce(&mut Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let client = self
            .client
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        let mut tx = client.transaction()?;
        let out = f(&mut tx)?;
        tx.commit()?;
        Ok(out)
    }
}

/// Applies the migrations `migrations` misses, in one transaction.
fn migrate(client: &mut Client, migrations: &[&str]) -> Result<(), StoreError> {
    let supported = migrations.len() as u32;
    let mut tx = client.transaction()?;
    // controllers starting together: the second waits here and then finds nothing to do
    // (without the lock, two concurrent CREATE TABLE IF NOT EXISTS can both fail)
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version integer PRIMARY KEY)")?;
    let found: i32 = tx
        .query_one("SELECT coalesce(max(version), 0) FROM schema_version", &[])?
        .get(0);
    let found = found as u32;
    if found > supported {
        return Err(StoreError::SchemaTooNew { found, supported });
    }
    for (version, sql) in (1i32..).zip(migrations).skip(found as usize) {
        tx.batch_execute(sql)?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES ($1)",
            &[&version],
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

fn parse_key<T: FromStr>(what: &str, text: &str) -> Result<T, StoreError>
where
    T::Err: std::fmt::Display,
{
    text.parse().map_err(|e: T::Err| StoreError::Corrupt {
        what: format!("{what} key {text:?}"),
        reason: e.to_string(),
    })
}

/// Takes the transaction-scoped lock of one record key (released at commit or rollback).
fn lock_key(tx: &mut Transaction<'_>, key: &str) -> Result<(), StoreError> {
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        &[&key],
    )?;
    Ok(())
}

fn read_network(
    c: &mut impl GenericClient,
    nwid: NetworkId,
    for_update: bool,
) -> Result<Option<NetworkRecord>, StoreError> {
    let sql = if for_update {
        "SELECT json FROM network WHERE nwid = $1 FOR UPDATE"
    } else {
        "SELECT json FROM network WHERE nwid = $1"
    };
    let row = c.query_opt(sql, &[&hex_nwid(nwid)])?;
    row.map(|r| decode(|| format!("network {nwid}"), r.get::<_, &str>(0)))
        .transpose()
}

fn read_member(
    c: &mut impl GenericClient,
    nwid: NetworkId,
    address: Address,
    for_update: bool,
) -> Result<Option<MemberRecord>, StoreError> {
    let sql = if for_update {
        "SELECT json FROM member WHERE nwid = $1 AND address = $2 FOR UPDATE"
    } else {
        "SELECT json FROM member WHERE nwid = $1 AND address = $2"
    };
    let row = c.query_opt(sql, &[&hex_nwid(nwid), &hex_addr(address)])?;
    row.map(|r| decode(|| format!("member {nwid}/{address}"), r.get::<_, &str>(0)))
        .transpose()
}

/// Locks the member's key and reads it for update: the start of every member write.
fn lock_member(
    tx: &mut Transaction<'_>,
    nwid: NetworkId,
    address: Address,
) -> Result<Option<MemberRecord>, StoreError> {
    lock_key(tx, &format!("weft member {nwid}/{address}"))?;
    read_member(tx, nwid, address, true)
}

fn save_member(
    tx: &mut Transaction<'_>,
    stored: Option<MemberRecord>,
    record: MemberRecord,
) -> Result<Saved<MemberRecord>, StoreError> {
    match apply_revision(stored.as_ref(), record) {
        Some(r) => {
            tx.execute(
                "INSERT INTO member (nwid, address, revision, json) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (nwid, address) DO UPDATE
                 SET revision = excluded.revision, json = excluded.json",
                &[
                    &hex_nwid(r.nwid),
                    &hex_addr(r.id),
                    &(r.revision() as i64),
                    &encode(&r),
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
    tx: &mut Transaction<'_>,
    nwid: NetworkId,
    member: Option<Address>,
) -> Result<usize, StoreError> {
    let n = match member {
        Some(a) => tx.execute(
            "DELETE FROM physical_address WHERE nwid = $1 AND address = $2",
            &[&hex_nwid(nwid), &hex_addr(a)],
        )?,
        None => tx.execute(
            "DELETE FROM physical_address WHERE nwid = $1",
            &[&hex_nwid(nwid)],
        )?,
    };
    Ok(n as usize)
}

const AUDIT_COLUMNS: &str = "seq, time, actor, action, nwid, address, details, erased";

fn audit_entry(row: &Row) -> Result<AuditEntry, StoreError> {
    let seq: i64 = row.get(0);
    let details: Option<&str> = row.get(6);
    Ok(AuditEntry {
        seq: seq as u64,
        time_ms: row.get(1),
        actor: row.get(2),
        action: parse_key("audit action", row.get(3))?,
        nwid: parse_key("audit nwid", row.get(4))?,
        member: row
            .get::<_, Option<&str>>(5)
            .map(|a| parse_key("audit address", a))
            .transpose()?,
        details: match details {
            Some(d) => decode(|| format!("audit entry {seq}"), d)?,
            None => Value::Null,
        },
        erased: row.get(7),
    })
}

fn audit_rows(
    client: &mut Client,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<AuditEntry>, StoreError> {
    client.query(sql, params)?.iter().map(audit_entry).collect()
}

impl Store for PostgresStore {
    fn network(&self, nwid: NetworkId) -> Result<Option<NetworkRecord>, StoreError> {
        read_network(&mut *self.client(), nwid, false)
    }

    fn networks(&self) -> Result<Vec<NetworkId>, StoreError> {
        self.client()
            .query("SELECT nwid FROM network ORDER BY nwid", &[])?
            .iter()
            .map(|r| parse_key("network", r.get(0)))
            .collect()
    }

    fn put_network(&mut self, record: NetworkRecord) -> Result<Saved<NetworkRecord>, StoreError> {
        self.write(|tx| {
            lock_key(tx, &format!("weft network {}", record.id))?;
            let stored = read_network(tx, record.id, true)?;
            match apply_revision(stored.as_ref(), record) {
                Some(r) => {
                    tx.execute(
                        "INSERT INTO network (nwid, revision, json) VALUES ($1, $2, $3)
                         ON CONFLICT (nwid) DO UPDATE
                         SET revision = excluded.revision, json = excluded.json",
                        &[&hex_nwid(r.id), &(r.revision() as i64), &encode(&r)],
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
            lock_key(tx, &format!("weft network {nwid}"))?;
            let stored = read_network(tx, nwid, true)?;
            tx.execute("DELETE FROM member WHERE nwid = $1", &[&hex_nwid(nwid)])?;
            delete_physical(tx, nwid, None)?;
            tx.execute("DELETE FROM network WHERE nwid = $1", &[&hex_nwid(nwid)])?;
            Ok(stored)
        })
    }

    fn member(
        &self,
        nwid: NetworkId,
        address: Address,
    ) -> Result<Option<MemberRecord>, StoreError> {
        read_member(&mut *self.client(), nwid, address, false)
    }

    fn members(&self, nwid: NetworkId) -> Result<Vec<MemberRecord>, StoreError> {
        self.client()
            .query(
                "SELECT address, json FROM member WHERE nwid = $1 ORDER BY address",
                &[&hex_nwid(nwid)],
            )?
            .iter()
            .map(|r| {
                let address: &str = r.get(0);
                decode(|| format!("member {nwid}/{address}"), r.get(1))
            })
            .collect()
    }

    fn put_member(&mut self, record: MemberRecord) -> Result<Saved<MemberRecord>, StoreError> {
        self.write(|tx| {
            let stored = lock_member(tx, record.nwid, record.id)?;
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
            let stored = lock_member(tx, nwid, address)?;
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
            let stored = lock_member(tx, nwid, address)?;
            tx.execute(
                "DELETE FROM member WHERE nwid = $1 AND address = $2",
                &[&hex_nwid(nwid), &hex_addr(address)],
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
        // one statement: atomic without an explicit transaction (ON CONFLICT takes the row lock)
        self.client().execute(
            "INSERT INTO physical_address (nwid, address, physical, first_seen, last_seen)
             VALUES ($1, $2, $3, $4, $4)
             ON CONFLICT (nwid, address, physical) DO UPDATE
             SET last_seen = greatest(physical_address.last_seen, excluded.last_seen)",
            &[
                &hex_nwid(nwid),
                &hex_addr(member),
                &physical.to_string(),
                &now_ms,
            ],
        )?;
        Ok(())
    }

    fn physical_addresses(
        &self,
        nwid: NetworkId,
        member: Address,
    ) -> Result<Vec<PhysicalAddressRecord>, StoreError> {
        self.client()
            .query(
                "SELECT physical, first_seen, last_seen FROM physical_address
                 WHERE nwid = $1 AND address = $2 ORDER BY first_seen, physical",
                &[&hex_nwid(nwid), &hex_addr(member)],
            )?
            .iter()
            .map(|r| {
                Ok(PhysicalAddressRecord {
                    nwid,
                    member,
                    physical: parse_key("physical address", r.get(0))?,
                    first_seen_ms: r.get(1),
                    last_seen_ms: r.get(2),
                })
            })
            .collect()
    }

    fn purge_physical_addresses(&mut self, cutoff_ms: i64) -> Result<usize, StoreError> {
        Ok(self.client().execute(
            "DELETE FROM physical_address WHERE last_seen < $1",
            &[&cutoff_ms],
        )? as usize)
    }

    fn oldest_physical_address_ms(&self) -> Result<Option<i64>, StoreError> {
        Ok(self
            .client()
            .query_one("SELECT min(last_seen) FROM physical_address", &[])?
            .get(0))
    }

    fn append_audit(&mut self, mut entry: AuditEntry) -> Result<AuditEntry, StoreError> {
        let details = (!entry.details.is_null()).then(|| encode(&entry.details));
        let seq: i64 = self
            .client()
            .query_one(
                "INSERT INTO audit (time, actor, action, nwid, address, details, erased)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING seq",
                &[
                    &entry.time_ms,
                    &entry.actor,
                    &entry.action.as_str(),
                    &hex_nwid(entry.nwid),
                    &entry.member.map(hex_addr),
                    &details,
                    &entry.erased,
                ],
            )?
            .get(0);
        entry.seq = seq as u64;
        Ok(entry)
    }

    fn audit_log(&self, after_seq: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        audit_rows(
            &mut self.client(),
            &format!("SELECT {AUDIT_COLUMNS} FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2"),
            &[
                &i64::try_from(after_seq).unwrap_or(i64::MAX),
                &i64::try_from(limit).unwrap_or(i64::MAX),
            ],
        )
    }

    fn member_audit(
        &self,
        nwid: NetworkId,
        member: Address,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        audit_rows(
            &mut self.client(),
            &format!(
                "SELECT {AUDIT_COLUMNS} FROM audit WHERE nwid = $1 AND address = $2 ORDER BY seq"
            ),
            &[&hex_nwid(nwid), &hex_addr(member)],
        )
    }

    fn purge_audit(&mut self, cutoff_ms: i64) -> Result<usize, StoreError> {
        Ok(self
            .client()
            .execute("DELETE FROM audit WHERE time < $1", &[&cutoff_ms])? as usize)
    }

    fn oldest_audit_ms(&self) -> Result<Option<i64>, StoreError> {
        Ok(self
            .client()
            .query_one("SELECT min(time) FROM audit", &[])?
            .get(0))
    }

    fn erase_member(&mut self, nwid: NetworkId, member: Address) -> Result<Erasure, StoreError> {
        let erasure = self.write(|tx| {
            lock_member(tx, nwid, member)?;
            let keys = [hex_nwid(nwid), hex_addr(member)];
            let deleted = tx.execute(
                "DELETE FROM member WHERE nwid = $1 AND address = $2",
                &[&keys[0], &keys[1]],
            )?;
            let physical_addresses = delete_physical(tx, nwid, Some(member))?;
            let audit_entries = tx.execute(
                "UPDATE audit SET address = NULL, details = NULL, erased = true
                 WHERE nwid = $1 AND address = $2",
                &[&keys[0], &keys[1]],
            )?;
            Ok(Erasure {
                member: deleted > 0,
                physical_addresses,
                audit_entries: audit_entries as usize,
            })
        })?;
        // PostgreSQL keeps deleted and updated row versions in the table until VACUUM removes
        // them. Best effort (VACUUM needs table ownership and waits for older snapshots; the
        // autovacuum gets there later otherwise). The WAL and backups are the operator's: see
        // DATA.md.
        let _ = self
            .client()
            .batch_execute("VACUUM member, physical_address, audit");
        Ok(erasure)
    }
}

#[cfg(test)]
mod tests {
    use super::test_server::TestServer;
    use super::*;
    use crate::store::testsuite;

    fn server() -> TestServer {
        TestServer::start().expect("a PostgreSQL server for the tests")
    }

    #[test]
    fn settings_parse() {
        for s in [
            "postgres:host=/run/postgresql port=5433 dbname=weft user=ctl",
            "host=/run/postgresql port=5433 dbname=weft user=ctl",
            "postgresql://ctl@%2Frun%2Fpostgresql:5433/weft",
            "postgres://ctl@localhost:5433/weft",
        ] {
            let c = parse_config(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(c.get_dbname(), Some("weft"), "{s}");
            assert_eq!(c.get_user(), Some("ctl"), "{s}");
            assert_eq!(c.get_ports(), [5433], "{s}");
        }
        assert!(parse_config("postgres:nonsense").is_err());
    }

    #[test]
    fn store_suite_and_two_connections() {
        let server = server();
        let mut n = 0;
        let ran = testsuite::run(|| {
            n += 1;
            PostgresStore::connect(&server.create_database(&format!("suite{n}")).unwrap()).unwrap()
        });
        assert_eq!(ran, testsuite::CASES.len());

        let url = server.create_database("concurrent").unwrap();
        let a = PostgresStore::connect(&url).unwrap();
        let b = PostgresStore::connect(&url).unwrap();
        assert_eq!(testsuite::concurrent_updates(a, b), 82);
    }

    #[test]
    fn migrations_apply_once_and_newer_databases_are_refused() {
        let server = server();
        let url = server.create_database("migrations").unwrap();
        let config = parse_config(&url).unwrap();
        let nwid = NetworkId(0x7c55a8da82c90312);
        let a: Address = "0a33989140".parse().unwrap();
        {
            let mut s = PostgresStore::connect_with(&config, &[MIGRATION_1]).unwrap();
            assert_eq!(s.schema_version().unwrap(), 1);
            s.put_network(NetworkRecord::new(nwid, 1)).unwrap();
            s.put_member(MemberRecord::new(nwid, a, 2)).unwrap();
        }
        const MIGRATION_2: &str = "ALTER TABLE member ADD COLUMN note text;
            UPDATE member SET note = 'migrated';";
        let v2 = [MIGRATION_1, MIGRATION_2];
        // two controllers starting at once: the advisory lock makes one migrate, the other wait
        let (x, y) = std::thread::scope(|s| {
            let h = s.spawn(|| PostgresStore::connect_with(&config, &v2));
            let x = PostgresStore::connect_with(&config, &v2);
            (x.unwrap(), h.join().unwrap().unwrap())
        });
        assert_eq!(x.schema_version().unwrap(), 2);
        assert_eq!(y.member(nwid, a).unwrap().unwrap().revision, 1, "data kept");
        let note: String = x
            .client()
            .query_one("SELECT note FROM member", &[])
            .unwrap()
            .get(0);
        assert_eq!(note, "migrated");
        let versions: Vec<i32> = x
            .client()
            .query("SELECT version FROM schema_version ORDER BY version", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(versions, [1, 2]);
        match PostgresStore::connect(&url) {
            Err(StoreError::SchemaTooNew { found, supported }) => {
                assert_eq!((found, supported), (2, SCHEMA_VERSION));
            }
            other => panic!("expected SchemaTooNew, got {other:?}"),
        }

        // a failed migration leaves the database as it was
        let bad = server.create_database("failed_migration").unwrap();
        PostgresStore::connect(&bad).unwrap();
        let err = PostgresStore::connect_with(
            &parse_config(&bad).unwrap(),
            &[MIGRATION_1, "CREATE TABLE x (a int); BOGUS;"],
        )
        .unwrap_err();
        assert!(matches!(err, StoreError::Backend { .. }), "{err}");
        let s = PostgresStore::connect(&bad).unwrap();
        assert_eq!(s.schema_version().unwrap(), 1);
        let x: Option<String> = s
            .client()
            .query_one("SELECT to_regclass('x')::text", &[])
            .unwrap()
            .get(0);
        assert_eq!(x, None, "rolled back");
    }

    #[test]
    fn json_column_is_the_file_database_text_and_corrupt_rows_are_reported() {
        let server = server();
        let mut s = PostgresStore::connect(&server.create_database("json").unwrap()).unwrap();
        let nwid = NetworkId(0x7c55a8da82c90312);
        let saved = s.put_network(NetworkRecord::new(nwid, 1)).unwrap().record;
        let text: String = s
            .client()
            .query_one("SELECT json FROM network", &[])
            .unwrap()
            .get(0);
        assert_eq!(text, serde_json::to_string(&saved.to_json()).unwrap());

        let other = NetworkId(0x7c55a8da82000001);
        s.client()
            .execute(
                "INSERT INTO network (nwid, revision, json) VALUES ($1, 1, '{not json')",
                &[&other.to_string()],
            )
            .unwrap();
        match s.network(other) {
            Err(StoreError::Corrupt { what, .. }) => assert_eq!(what, format!("network {other}")),
            r => panic!("expected Corrupt, got {r:?}"),
        }
        assert!(s.put_network(NetworkRecord::new(other, 1)).is_err());
        // the failed write rolled back and the connection is still usable
        assert_eq!(s.network(nwid).unwrap(), Some(saved));
    }

    #[test]
    fn unreachable_server_is_a_backend_error() {
        let err =
            PostgresStore::connect("host=/nonexistent/weft-test dbname=x user=x").unwrap_err();
        assert!(matches!(err, StoreError::Backend { .. }), "{err}");
    }
}
