//! The `controller.d/` file database: every record in memory, each change written as one file
//! (compact single-line JSON, sorted keys, no trailing newline). spec: controller.md §8
//!
//! [`FileStore`] is a [`Store`] over a [`MemoryStore`]: reads come from memory; a `put_*` that
//! changes a record writes its file first and updates memory only when the write succeeded.
//! Recorded physical addresses and the audit log live in memory only (the 1.14 layout has no
//! place for them): they are lost on restart.

use std::path::{Path, PathBuf};

use std::net::SocketAddr;

use weft_controller::store::{
    AuditEntry, Erasure, MemberUpdate, PhysicalAddressRecord, apply_revision,
};
use weft_controller::{MemberRecord, MemoryStore, NetworkRecord, Saved, Store, StoreError};
use weft_wire::{Address, NetworkId};

use crate::fsutil::{self, SECRET_MODE};

/// Mode of `controller.d/` and its folders. spec: controller.md §8.1
const DIR_MODE: u32 = 0o700;

/// The file database rooted at a `controller.d/` folder.
#[derive(Debug)]
pub(crate) struct FileStore {
    mem: MemoryStore,
    dir: PathBuf,
}

fn backend(what: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend {
        reason: format!("{}: {e:#}", what.display()),
    }
}

fn mkdir(p: &Path) -> Result<(), StoreError> {
    std::fs::create_dir_all(p).map_err(|e| backend(p, e))?;
    fsutil::chmod(p, DIR_MODE).map_err(|e| backend(p, e))
}

/// The file text of a record: compact JSON with sorted keys, no newline. spec: §8.1
fn text(v: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

/// Reads `path` as a JSON object whose `id` is a string of `id_len` characters. spec: §8.2
fn read_record(path: &Path, id_len: usize) -> Option<serde_json::Value> {
    let bytes = std::fs::read(path).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    (v.get("id")?.as_str()?.len() == id_len).then_some(v)
}

/// Entries of `dir` whose file name is exactly `len` characters and ends in `.json`.
fn json_files(dir: &Path, len: usize) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.len() == len && n.ends_with(".json")
        })
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

impl FileStore {
    /// Opens (creating it if needed) the database in `dir` and loads every record: network
    /// files named `<16 hex>.json` whose `id` has 16 characters, then their members
    /// (`<10 hex>.json`, `id` of 10 characters). Unreadable files are skipped. spec: §8.1, §8.2
    pub(crate) fn open(dir: &Path) -> Result<FileStore, StoreError> {
        mkdir(dir)?;
        mkdir(&dir.join("network"))?;
        mkdir(&dir.join("trace"))?;
        let mut mem = MemoryStore::new();
        for p in json_files(&dir.join("network"), 21) {
            let Some(n) = read_record(&p, 16).and_then(|v| NetworkRecord::from_json(&v).ok())
            else {
                eprintln!("weft: controller: skipping unreadable {}", p.display());
                continue;
            };
            let members = dir.join("network").join(n.id.to_string()).join("member");
            for mp in json_files(&members, 15) {
                match read_record(&mp, 10).and_then(|v| MemberRecord::from_json(&v).ok()) {
                    Some(m) if m.nwid == n.id => mem.load_member(m),
                    _ => eprintln!("weft: controller: skipping unreadable {}", mp.display()),
                }
            }
            mem.load_network(n);
        }
        Ok(FileStore {
            mem,
            dir: dir.to_path_buf(),
        })
    }

    fn network_file(&self, nwid: NetworkId) -> PathBuf {
        self.dir.join("network").join(format!("{nwid}.json"))
    }

    fn member_dir(&self, nwid: NetworkId) -> PathBuf {
        self.dir
            .join("network")
            .join(nwid.to_string())
            .join("member")
    }

    fn write(&self, path: &Path, v: &serde_json::Value) -> Result<(), StoreError> {
        if let Some(parent) = path.parent() {
            mkdir(parent)?;
        }
        fsutil::write_atomic(path, &text(v), SECRET_MODE).map_err(|e| backend(path, e))
    }
}

fn remove(p: &Path) -> Result<(), StoreError> {
    let r = if p.is_dir() {
        std::fs::remove_dir_all(p)
    } else {
        std::fs::remove_file(p)
    };
    match r {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(backend(p, e)),
        _ => Ok(()),
    }
}

impl Store for FileStore {
    fn network(&self, nwid: NetworkId) -> Result<Option<NetworkRecord>, StoreError> {
        self.mem.network(nwid)
    }

    fn networks(&self) -> Result<Vec<NetworkId>, StoreError> {
        self.mem.networks()
    }

    fn put_network(&mut self, record: NetworkRecord) -> Result<Saved<NetworkRecord>, StoreError> {
        let stored = self.mem.network(record.id)?;
        match apply_revision(stored.as_ref(), record) {
            Some(r) => {
                self.write(&self.network_file(r.id), &r.to_json())?;
                self.mem.load_network(r.clone());
                Ok(Saved {
                    record: r,
                    changed: true,
                })
            }
            None => Ok(Saved {
                record: stored.expect("unchanged means stored"),
                changed: false,
            }),
        }
    }

    fn delete_network(&mut self, nwid: NetworkId) -> Result<Option<NetworkRecord>, StoreError> {
        remove(&self.network_file(nwid))?;
        remove(&self.dir.join("network").join(nwid.to_string()))?;
        self.mem.delete_network(nwid)
    }

    fn member(
        &self,
        nwid: NetworkId,
        address: Address,
    ) -> Result<Option<MemberRecord>, StoreError> {
        self.mem.member(nwid, address)
    }

    fn members(&self, nwid: NetworkId) -> Result<Vec<MemberRecord>, StoreError> {
        self.mem.members(nwid)
    }

    fn put_member(&mut self, record: MemberRecord) -> Result<Saved<MemberRecord>, StoreError> {
        let stored = self.mem.member(record.nwid, record.id)?;
        match apply_revision(stored.as_ref(), record) {
            Some(r) => {
                let p = self.member_dir(r.nwid).join(format!("{}.json", r.id));
                self.write(&p, &r.to_json())?;
                self.mem.load_member(r.clone());
                Ok(Saved {
                    record: r,
                    changed: true,
                })
            }
            None => Ok(Saved {
                record: stored.expect("unchanged means stored"),
                changed: false,
            }),
        }
    }

    fn delete_member(
        &mut self,
        nwid: NetworkId,
        address: Address,
    ) -> Result<Option<MemberRecord>, StoreError> {
        remove(&self.member_dir(nwid).join(format!("{address}.json")))?;
        self.mem.delete_member(nwid, address)
    }

    fn update_member(
        &mut self,
        nwid: NetworkId,
        address: Address,
        update: &mut MemberUpdate<'_>,
    ) -> Result<Option<Saved<MemberRecord>>, StoreError> {
        // one process owns the folder, so read-modify-write is already serialized
        match update(self.mem.member(nwid, address)?) {
            Some(r) => self.put_member(r).map(Some),
            None => Ok(None),
        }
    }

    fn record_physical_address(
        &mut self,
        nwid: NetworkId,
        member: Address,
        physical: SocketAddr,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.mem
            .record_physical_address(nwid, member, physical, now_ms)
    }

    fn physical_addresses(
        &self,
        nwid: NetworkId,
        member: Address,
    ) -> Result<Vec<PhysicalAddressRecord>, StoreError> {
        self.mem.physical_addresses(nwid, member)
    }

    fn purge_physical_addresses(&mut self, cutoff_ms: i64) -> Result<usize, StoreError> {
        self.mem.purge_physical_addresses(cutoff_ms)
    }

    fn oldest_physical_address_ms(&self) -> Result<Option<i64>, StoreError> {
        self.mem.oldest_physical_address_ms()
    }

    fn append_audit(&mut self, entry: AuditEntry) -> Result<AuditEntry, StoreError> {
        self.mem.append_audit(entry)
    }

    fn audit_log(&self, after_seq: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        self.mem.audit_log(after_seq, limit)
    }

    fn member_audit(
        &self,
        nwid: NetworkId,
        member: Address,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        self.mem.member_audit(nwid, member)
    }

    fn purge_audit(&mut self, cutoff_ms: i64) -> Result<usize, StoreError> {
        self.mem.purge_audit(cutoff_ms)
    }

    fn oldest_audit_ms(&self) -> Result<Option<i64>, StoreError> {
        self.mem.oldest_audit_ms()
    }

    fn erase_member(&mut self, nwid: NetworkId, member: Address) -> Result<Erasure, StoreError> {
        remove(&self.member_dir(nwid).join(format!("{member}.json")))?;
        self.mem.erase_member(nwid, member)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The controller crate's generic store suite, on a fresh folder per case.
    #[test]
    fn store_suite() {
        let n = weft_controller::store::testsuite::run(|| {
            let dir = tempfile::tempdir().unwrap().keep();
            FileStore::open(&dir.join("controller.d")).unwrap()
        });
        assert_eq!(n, weft_controller::store::testsuite::CASES.len());
    }

    const NWID: NetworkId = NetworkId(0x9cbc6fc098000001);

    #[test]
    fn files_are_compact_sorted_and_reload_with_their_revisions() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("controller.d");
        let a: Address = "0a33989140".parse().unwrap();
        {
            let mut s = FileStore::open(&db).unwrap();
            let mut n = NetworkRecord::new(NWID, 5);
            n.name = "x".into();
            let saved = s.put_network(n).unwrap().record;
            assert_eq!(saved.revision, 1);
            n = saved;
            n.name = "y".into();
            assert_eq!(s.put_network(n).unwrap().record.revision, 2);
            s.put_member(MemberRecord::new(NWID, a, 6)).unwrap();
        }
        let text = std::fs::read_to_string(db.join("network/9cbc6fc098000001.json")).unwrap();
        assert!(text.starts_with("{\"authTokens\":[null],") && !text.ends_with('\n'));
        let canonical: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(text, serde_json::to_string(&canonical).unwrap(), "compact");
        assert!(text.contains("\"name\":\"y\",") && text.contains("\"revision\":2,"));
        let m = std::fs::read_to_string(db.join("network/9cbc6fc098000001/member/0a33989140.json"))
            .unwrap();
        assert!(m.starts_with("{\"activeBridge\":false,\"address\":\"0a33989140\""));
        assert!(db.join("trace").is_dir());
        // junk that §8.2 skips: wrong name lengths, unparseable, short id
        std::fs::write(db.join("network/abc.json"), "{}").unwrap();
        std::fs::write(db.join("network/9cbc6fc098000002.json"), "{not json").unwrap();
        std::fs::write(
            db.join("network/9cbc6fc098000003.json"),
            r#"{"id":"9cbc6fc098"}"#,
        )
        .unwrap();
        let s = FileStore::open(&db).unwrap();
        assert_eq!(s.networks().unwrap(), vec![NWID]);
        assert_eq!(
            s.network(NWID).unwrap().unwrap().revision,
            2,
            "not bumped by loading"
        );
        assert_eq!(s.members(NWID).unwrap().len(), 1);
        let mut s = s;
        assert!(s.delete_member(NWID, a).unwrap().is_some());
        assert!(
            !db.join("network/9cbc6fc098000001/member/0a33989140.json")
                .exists()
        );
        assert!(s.delete_network(NWID).unwrap().is_some());
        assert!(!db.join("network/9cbc6fc098000001.json").exists());
        assert!(!db.join("network/9cbc6fc098000001").exists());
    }
}
