//! [`MemoryStore`]: everything in ordered maps, nothing persisted.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use weft_wire::{Address, NetworkId};

use super::{
    AuditEntry, Erasure, MemberRecord, MemberUpdate, NetworkRecord, PhysicalAddressRecord,
    Revisioned, Saved, Store, StoreError, apply_revision,
};

/// Everything in memory: networks and members in ordered maps.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    networks: BTreeMap<NetworkId, NetworkRecord>,
    members: BTreeMap<(NetworkId, Address), MemberRecord>,
    /// (first seen, last seen) per (network, member, physical address).
    physical: BTreeMap<(NetworkId, Address, SocketAddr), (i64, i64)>,
    /// Ascending by `seq`.
    audit: Vec<AuditEntry>,
    last_seq: u64,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts a network exactly as given (revision untouched), as loading a database at
    /// startup does. spec: controller.md §8.2
    pub fn load_network(&mut self, record: NetworkRecord) {
        self.networks.insert(record.id, record);
    }

    /// Inserts a member exactly as given (revision untouched). spec: controller.md §8.2
    pub fn load_member(&mut self, record: MemberRecord) {
        self.members.insert((record.nwid, record.id), record);
    }

    fn forget_physical(&mut self, nwid: NetworkId, member: Option<Address>) -> usize {
        let before = self.physical.len();
        self.physical
            .retain(|(n, a, _), _| !(*n == nwid && member.is_none_or(|m| m == *a)));
        before - self.physical.len()
    }
}

fn put<K: Ord, T: Revisioned>(map: &mut BTreeMap<K, T>, key: K, record: T) -> Saved<T> {
    match apply_revision(map.get(&key), record) {
        Some(r) => {
            map.insert(key, r.clone());
            Saved {
                record: r,
                changed: true,
            }
        }
        None => Saved {
            // the key was present (apply_revision returns None only then)
            record: map.get(&key).cloned().expect("present when unchanged"),
            changed: false,
        },
    }
}

impl Store for MemoryStore {
    fn network(&self, nwid: NetworkId) -> Result<Option<NetworkRecord>, StoreError> {
        Ok(self.networks.get(&nwid).cloned())
    }

    fn networks(&self) -> Result<Vec<NetworkId>, StoreError> {
        Ok(self.networks.keys().copied().collect())
    }

    fn put_network(&mut self, record: NetworkRecord) -> Result<Saved<NetworkRecord>, StoreError> {
        Ok(put(&mut self.networks, record.id, record))
    }

    fn delete_network(&mut self, nwid: NetworkId) -> Result<Option<NetworkRecord>, StoreError> {
        self.members.retain(|(n, _), _| *n != nwid);
        self.forget_physical(nwid, None);
        Ok(self.networks.remove(&nwid))
    }

    fn member(
        &self,
        nwid: NetworkId,
        address: Address,
    ) -> Result<Option<MemberRecord>, StoreError> {
        Ok(self.members.get(&(nwid, address)).cloned())
    }

    fn members(&self, nwid: NetworkId) -> Result<Vec<MemberRecord>, StoreError> {
        Ok(self
            .members
            .range((nwid, Address::default())..)
            .take_while(|((n, _), _)| *n == nwid)
            .map(|(_, m)| m.clone())
            .collect())
    }

    fn put_member(&mut self, record: MemberRecord) -> Result<Saved<MemberRecord>, StoreError> {
        Ok(put(&mut self.members, (record.nwid, record.id), record))
    }

    fn update_member(
        &mut self,
        nwid: NetworkId,
        address: Address,
        update: &mut MemberUpdate<'_>,
    ) -> Result<Option<Saved<MemberRecord>>, StoreError> {
        let current = self.members.get(&(nwid, address)).cloned();
        Ok(update(current).map(|r| put(&mut self.members, (nwid, address), r)))
    }

    fn delete_member(
        &mut self,
        nwid: NetworkId,
        address: Address,
    ) -> Result<Option<MemberRecord>, StoreError> {
        self.forget_physical(nwid, Some(address));
        Ok(self.members.remove(&(nwid, address)))
    }

    fn record_physical_address(
        &mut self,
        nwid: NetworkId,
        member: Address,
        physical: SocketAddr,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let seen = self
            .physical
            .entry((nwid, member, physical))
            .or_insert((now_ms, now_ms));
        seen.1 = seen.1.max(now_ms);
        Ok(())
    }

    fn physical_addresses(
        &self,
        nwid: NetworkId,
        member: Address,
    ) -> Result<Vec<PhysicalAddressRecord>, StoreError> {
        let mut out: Vec<PhysicalAddressRecord> = self
            .physical
            .iter()
            .filter(|((n, a, _), _)| *n == nwid && *a == member)
            .map(
                |(&(nwid, member, physical), &(first, last))| PhysicalAddressRecord {
                    nwid,
                    member,
                    physical,
                    first_seen_ms: first,
                    last_seen_ms: last,
                },
            )
            .collect();
        out.sort_by_key(|r| (r.first_seen_ms, r.physical.to_string()));
        Ok(out)
    }

    fn purge_physical_addresses(&mut self, cutoff_ms: i64) -> Result<usize, StoreError> {
        let before = self.physical.len();
        self.physical.retain(|_, (_, last)| *last >= cutoff_ms);
        Ok(before - self.physical.len())
    }

    fn oldest_physical_address_ms(&self) -> Result<Option<i64>, StoreError> {
        Ok(self.physical.values().map(|(_, last)| *last).min())
    }

    fn append_audit(&mut self, mut entry: AuditEntry) -> Result<AuditEntry, StoreError> {
        self.last_seq += 1;
        entry.seq = self.last_seq;
        self.audit.push(entry.clone());
        Ok(entry)
    }

    fn audit_log(&self, after_seq: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let start = self.audit.partition_point(|e| e.seq <= after_seq);
        Ok(self.audit[start..].iter().take(limit).cloned().collect())
    }

    fn member_audit(
        &self,
        nwid: NetworkId,
        member: Address,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        Ok(self
            .audit
            .iter()
            .filter(|e| e.nwid == nwid && e.member == Some(member))
            .cloned()
            .collect())
    }

    fn purge_audit(&mut self, cutoff_ms: i64) -> Result<usize, StoreError> {
        let before = self.audit.len();
        self.audit.retain(|e| e.time_ms >= cutoff_ms);
        Ok(before - self.audit.len())
    }

    fn oldest_audit_ms(&self) -> Result<Option<i64>, StoreError> {
        Ok(self.audit.iter().map(|e| e.time_ms).min())
    }

    fn erase_member(&mut self, nwid: NetworkId, member: Address) -> Result<Erasure, StoreError> {
        let mut erasure = Erasure {
            member: self.members.remove(&(nwid, member)).is_some(),
            physical_addresses: self.forget_physical(nwid, Some(member)),
            audit_entries: 0,
        };
        for e in &mut self.audit {
            if e.nwid == nwid && e.member == Some(member) {
                *e = e.clone().tombstone();
                erasure.audit_entries += 1;
            }
        }
        Ok(erasure)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testsuite;

    #[test]
    fn store_suite() {
        assert_eq!(testsuite::run(MemoryStore::new), testsuite::CASES.len());
    }

    #[test]
    fn boxed_store_is_usable() {
        // the trait is object safe: a back-end can be chosen at run time
        let mut store: Box<dyn Store> = Box::new(MemoryStore::new());
        testsuite::revision_rule_networks(store.as_mut());
    }
}
