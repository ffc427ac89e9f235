//! The behaviour every [`Store`] back-end must have, as plain functions that panic on a
//! failure, so any back-end's tests can run them (cargo feature `testsuite`):
//!
//! ```ignore
//! weft_controller::store::testsuite::run(|| MyStore::fresh());
//! weft_controller::store::testsuite::concurrent_updates(handle_a, handle_b);
//! ```
//!
//! [`run`] runs every single-handle case, each on a fresh empty store from the factory, and
//! returns how many ran. [`concurrent_updates`] needs two handles on one database.

use std::net::SocketAddr;
use std::sync::{Barrier, mpsc};
use std::thread;
use std::time::Duration;

use serde_json::{Value, json};
use weft_wire::{Address, NetworkId};

use super::{
    AuditAction, AuditEntry, AuthTokens, DnsRecord, IpPool, MemberRecord, NetworkRecord,
    RouteRecord, Store,
};

const NWID: NetworkId = NetworkId(0x7c55a8da82c90312);
const OTHER: NetworkId = NetworkId(0x7c55a8da82000001);
/// Sorts after every other id numerically: catches back-ends that order signed integers.
const HIGH: NetworkId = NetworkId(0xfedcba9876000001);

fn addr(s: &str) -> Address {
    s.parse().expect("test address")
}

fn sock(s: &str) -> SocketAddr {
    s.parse().expect("test socket address")
}

/// A single-handle case: gets a fresh, empty store.
pub type Case = fn(&mut dyn Store);

/// Every single-handle case, by name.
pub const CASES: &[(&str, Case)] = &[
    ("revision_rule_networks", revision_rule_networks),
    ("revision_rule_members", revision_rule_members),
    ("records_round_trip", records_round_trip),
    ("list_order", list_order),
    ("delete_cascades", delete_cascades),
    ("update_member", update_member),
    ("physical_addresses", physical_addresses),
    ("audit_log", audit_log),
    ("export_member", export_member),
    ("erase_member", erase_member),
];

/// Runs every case of [`CASES`] on a fresh store from `fresh`; returns the number of cases.
pub fn run<S: Store>(mut fresh: impl FnMut() -> S) -> usize {
    for (name, case) in CASES {
        eprintln!("store suite: {name}");
        let mut store = fresh();
        case(&mut store);
    }
    eprintln!("store suite: {} cases passed", CASES.len());
    CASES.len()
}

/// §8.3 for networks: the first save makes revision 1, saving identical content (whatever its
/// revision) changes nothing, a change bumps `record.revision + 1`.
pub fn revision_rule_networks(store: &mut dyn Store) {
    let first = store.put_network(NetworkRecord::new(NWID, 5)).unwrap();
    assert!(first.changed);
    assert_eq!(first.record.revision, 1);
    let mut stale = first.record.clone();
    stale.revision = 0;
    let again = store.put_network(stale).unwrap();
    assert!(!again.changed);
    assert_eq!(again.record, first.record);
    let mut renamed = first.record.clone();
    renamed.name = "renamed".into();
    let second = store.put_network(renamed).unwrap();
    assert!(second.changed);
    assert_eq!(second.record.revision, 2);
    assert_eq!(store.network(NWID).unwrap(), Some(second.record.clone()));
    // the rule is record.revision + 1, not stored + 1 (§8.3)
    let mut jump = second.record;
    jump.revision = 10;
    jump.mtu = 1400;
    assert_eq!(store.put_network(jump).unwrap().record.revision, 11);
    assert_eq!(store.network(OTHER).unwrap(), None);
}

/// §8.3 for members.
pub fn revision_rule_members(store: &mut dyn Store) {
    let a = addr("0a33989140");
    let first = store.put_member(MemberRecord::new(NWID, a, 5)).unwrap();
    assert!(first.changed);
    assert_eq!(first.record.revision, 1);
    let again = store.put_member(first.record.clone()).unwrap();
    assert!(!again.changed);
    assert_eq!(again.record.revision, 1);
    let mut stale = first.record.clone();
    stale.revision = 0;
    assert!(!store.put_member(stale).unwrap().changed);
    let mut c = first.record.clone();
    c.authorized = true;
    let second = store.put_member(c).unwrap();
    assert!(second.changed);
    assert_eq!(second.record.revision, 2);
    assert_eq!(store.member(NWID, a).unwrap(), Some(second.record));
    // a member's network need not exist
    assert_eq!(store.network(NWID).unwrap(), None);
}

/// Every field survives a save and a load exactly (the JSON text is the record).
pub fn records_round_trip(store: &mut dyn Store) {
    let mut n = NetworkRecord::new(HIGH, 1_795_318_710_651);
    n.name = "ünïcode \"quoted\"".into();
    n.dns = DnsRecord::Set {
        domain: "zt.example".into(),
        servers: vec!["10.147.17.1".into()],
    };
    n.auth_tokens = AuthTokens(Some([("tok".to_string(), 0)].into()));
    n.ip_assignment_pools.push(IpPool {
        start: "10.0.0.1".parse().unwrap(),
        end: "10.0.0.254".parse().unwrap(),
    });
    n.routes.push(RouteRecord {
        target: "10.0.0.0/24".parse().unwrap(),
        via: None,
    });
    n.certificate_timeout_window_size = Some(7_200_000);
    let saved = store.put_network(n).unwrap().record;
    assert_eq!(store.network(HIGH).unwrap(), Some(saved.clone()));
    assert_eq!(
        store.network(HIGH).unwrap().unwrap().to_json(),
        saved.to_json()
    );

    let mut m = MemberRecord::new(HIGH, addr("ffffffffff"), 9);
    m.identity = Some("ffffffffff:0:00".into());
    m.name = Some("laptop".into());
    m.ip_assignments = vec!["10.0.0.7".parse().unwrap(), "fd00::7".parse().unwrap()];
    m.tags = vec![(1, 2), (3, 4)];
    m.capabilities = vec![5];
    m.v_major = 1;
    let saved = store.put_member(m).unwrap().record;
    assert_eq!(store.member(HIGH, addr("ffffffffff")).unwrap(), Some(saved));
}

/// Networks ascend by id (numerically, top bit included), members by address, per network.
pub fn list_order(store: &mut dyn Store) {
    for n in [HIGH, NWID, OTHER] {
        store.put_network(NetworkRecord::new(n, 0)).unwrap();
    }
    assert_eq!(store.networks().unwrap(), vec![OTHER, NWID, HIGH]);
    for a in ["7c55a8da82", "0a33989140", "ff00000000", "0011223344"] {
        store
            .put_member(MemberRecord::new(NWID, addr(a), 0))
            .unwrap();
    }
    store
        .put_member(MemberRecord::new(OTHER, addr("0a33989140"), 0))
        .unwrap();
    let list: Vec<String> = store
        .members(NWID)
        .unwrap()
        .iter()
        .map(|m| m.address.to_string())
        .collect();
    assert_eq!(
        list,
        ["0011223344", "0a33989140", "7c55a8da82", "ff00000000"]
    );
    assert_eq!(store.members(OTHER).unwrap().len(), 1);
    assert!(store.members(HIGH).unwrap().is_empty());
}

/// Deleting a network deletes its members and their physical addresses (not other networks'),
/// keeps the audit log; deleting a member deletes its physical addresses.
pub fn delete_cascades(store: &mut dyn Store) {
    let (a, b) = (addr("0a33989140"), addr("7c55a8da82"));
    for n in [NWID, OTHER] {
        store.put_network(NetworkRecord::new(n, 0)).unwrap();
        for m in [a, b] {
            store.put_member(MemberRecord::new(n, m, 0)).unwrap();
            store
                .record_physical_address(n, m, sock("192.0.2.1:9993"), 100)
                .unwrap();
        }
    }
    store
        .append_audit(AuditEntry::new(
            1,
            "api",
            AuditAction::MemberCreated,
            NWID,
            Some(a),
            Value::Null,
        ))
        .unwrap();
    let deleted = store.delete_network(NWID).unwrap().expect("existed");
    assert_eq!(deleted.id, NWID);
    assert_eq!(store.network(NWID).unwrap(), None);
    assert!(store.members(NWID).unwrap().is_empty());
    assert_eq!(store.member(NWID, a).unwrap(), None);
    assert!(store.physical_addresses(NWID, a).unwrap().is_empty());
    assert_eq!(store.members(OTHER).unwrap().len(), 2);
    assert_eq!(store.physical_addresses(OTHER, a).unwrap().len(), 1);
    assert_eq!(store.member_audit(NWID, a).unwrap().len(), 1, "audit kept");
    assert_eq!(store.delete_network(NWID).unwrap(), None);

    let gone = store.delete_member(OTHER, a).unwrap().expect("existed");
    assert_eq!(gone.address, a);
    assert!(store.physical_addresses(OTHER, a).unwrap().is_empty());
    assert_eq!(store.physical_addresses(OTHER, b).unwrap().len(), 1);
    assert_eq!(store.delete_member(OTHER, a).unwrap(), None);
    assert_eq!(store.members(OTHER).unwrap().len(), 1);
}

/// `update_member` creates, changes (revision rule) and can decline to write.
pub fn update_member(store: &mut dyn Store) {
    let a = addr("0a33989140");
    let none = store.update_member(NWID, a, &mut |_| None).unwrap();
    assert_eq!(none, None);
    assert_eq!(store.member(NWID, a).unwrap(), None);
    let created = store
        .update_member(NWID, a, &mut |m| {
            assert!(m.is_none());
            Some(MemberRecord::new(NWID, a, 3))
        })
        .unwrap()
        .expect("written");
    assert!(created.changed);
    assert_eq!(created.record.revision, 1);
    let same = store.update_member(NWID, a, &mut |m| m).unwrap().unwrap();
    assert!(!same.changed);
    assert_eq!(same.record.revision, 1);
    let named = store
        .update_member(NWID, a, &mut |m| {
            let mut m = m.expect("exists");
            m.name = Some("n".into());
            Some(m)
        })
        .unwrap()
        .unwrap();
    assert!(named.changed);
    assert_eq!(named.record.revision, 2);
    assert_eq!(store.member(NWID, a).unwrap(), Some(named.record));
}

/// Recording keeps the first-seen time and moves last-seen forward; purge removes entries last
/// seen before the cutoff (an entry seen exactly at the cutoff stays).
pub fn physical_addresses(store: &mut dyn Store) {
    let (a, b) = (addr("0a33989140"), addr("7c55a8da82"));
    let v4 = sock("192.0.2.1:9993");
    let v6 = sock("[2001:db8::1]:9993");
    assert_eq!(store.oldest_physical_address_ms().unwrap(), None);
    store.record_physical_address(NWID, a, v6, 2_000).unwrap();
    store.record_physical_address(NWID, a, v4, 1_000).unwrap();
    store.record_physical_address(NWID, a, v4, 5_000).unwrap();
    store.record_physical_address(NWID, a, v4, 4_000).unwrap(); // out of order: no regression
    store.record_physical_address(NWID, b, v4, 3_000).unwrap();
    store.record_physical_address(OTHER, a, v4, 3_000).unwrap();
    let got = store.physical_addresses(NWID, a).unwrap();
    let summary: Vec<(SocketAddr, i64, i64)> = got
        .iter()
        .map(|r| (r.physical, r.first_seen_ms, r.last_seen_ms))
        .collect();
    assert_eq!(summary, [(v4, 1_000, 5_000), (v6, 2_000, 2_000)]);
    assert!(got.iter().all(|r| r.nwid == NWID && r.member == a));
    assert_eq!(
        got[1].to_json(),
        json!({"physical": "[2001:db8::1]:9993", "firstSeen": 2000, "lastSeen": 2000})
    );
    assert_eq!(store.oldest_physical_address_ms().unwrap(), Some(2_000));
    // cutoff 3000: v6 (2000) goes; b's and OTHER's (3000) stay; v4 (5000) stays
    assert_eq!(store.purge_physical_addresses(3_000).unwrap(), 1);
    assert_eq!(store.physical_addresses(NWID, a).unwrap().len(), 1);
    assert_eq!(store.physical_addresses(NWID, b).unwrap().len(), 1);
    assert_eq!(store.oldest_physical_address_ms().unwrap(), Some(3_000));
    assert_eq!(store.purge_physical_addresses(i64::MAX).unwrap(), 3);
    assert_eq!(store.oldest_physical_address_ms().unwrap(), None);
    assert!(store.physical_addresses(OTHER, a).unwrap().is_empty());
}

fn entry(t: i64, action: AuditAction, nwid: NetworkId, member: Option<&str>) -> AuditEntry {
    AuditEntry::new(
        t,
        "admin",
        action,
        nwid,
        member.map(addr),
        json!({"keys": ["name"]}),
    )
}

/// Sequence numbers ascend and are never reused; paging; per-member selection; retention.
pub fn audit_log(store: &mut dyn Store) {
    let a = "0a33989140";
    assert_eq!(store.oldest_audit_ms().unwrap(), None);
    let e1 = store
        .append_audit(entry(100, AuditAction::NetworkCreated, NWID, None))
        .unwrap();
    let e2 = store
        .append_audit(entry(200, AuditAction::MemberAuthorized, NWID, Some(a)))
        .unwrap();
    let e3 = store
        .append_audit(entry(300, AuditAction::MemberChanged, OTHER, Some(a)))
        .unwrap();
    assert!(e1.seq > 0 && e1.seq < e2.seq && e2.seq < e3.seq);
    assert_eq!(e2.actor, "admin");
    let all = store.audit_log(0, usize::MAX).unwrap();
    assert_eq!(all, vec![e1.clone(), e2.clone(), e3.clone()]);
    assert_eq!(store.audit_log(e1.seq, 1).unwrap(), vec![e2.clone()]);
    assert!(store.audit_log(e3.seq, 10).unwrap().is_empty());
    assert_eq!(store.member_audit(NWID, addr(a)).unwrap(), vec![e2.clone()]);
    assert_eq!(
        e2.to_json(),
        json!({"seq": e2.seq, "time": 200, "actor": "admin", "action": "member.authorized",
               "nwid": "7c55a8da82c90312", "member": a, "details": {"keys": ["name"]},
               "erased": false})
    );
    // retention: entries older than the cutoff go; an entry exactly at the cutoff stays
    assert_eq!(store.oldest_audit_ms().unwrap(), Some(100));
    assert_eq!(store.purge_audit(300).unwrap(), 2);
    assert_eq!(store.oldest_audit_ms().unwrap(), Some(300));
    assert_eq!(store.audit_log(0, 10).unwrap(), vec![e3.clone()]);
    assert_eq!(store.purge_audit(i64::MAX).unwrap(), 1);
    // sequence numbers are not reused after the newest entry was purged
    let e4 = store
        .append_audit(entry(400, AuditAction::NetworkDeleted, NWID, None))
        .unwrap();
    assert!(e4.seq > e3.seq);
}

fn populate_member(store: &mut dyn Store, nwid: NetworkId, a: Address) {
    let mut m = MemberRecord::new(nwid, a, 10);
    m.identity = Some(format!("{a}:0:1234"));
    m.authorized = true;
    store.put_member(m).unwrap();
    store
        .record_physical_address(nwid, a, sock("198.51.100.7:45000"), 20)
        .unwrap();
    for (t, action) in [
        (10, AuditAction::MemberCreated),
        (11, AuditAction::MemberAuthorized),
    ] {
        store
            .append_audit(AuditEntry::new(
                t,
                "admin",
                action,
                nwid,
                Some(a),
                json!({"keys": ["authorized"]}),
            ))
            .unwrap();
    }
}

/// The export holds the record, the recorded addresses and the member's audit entries, and
/// nothing about other members.
pub fn export_member(store: &mut dyn Store) {
    let (a, b) = (addr("0a33989140"), addr("7c55a8da82"));
    populate_member(store, NWID, a);
    populate_member(store, NWID, b);
    let x = store.export_member(NWID, a).unwrap();
    assert_eq!(x["nwid"], "7c55a8da82c90312");
    assert_eq!(x["address"], "0a33989140");
    assert_eq!(
        x["member"],
        store.member(NWID, a).unwrap().unwrap().to_json()
    );
    assert_eq!(x["member"]["identity"], "0a33989140:0:1234");
    assert_eq!(
        x["physicalAddresses"],
        json!([{"physical": "198.51.100.7:45000", "firstSeen": 20, "lastSeen": 20}])
    );
    let audit = x["audit"].as_array().expect("array");
    assert_eq!(audit.len(), 2);
    assert!(audit.iter().all(|e| e["member"] == "0a33989140"));
    assert_eq!(audit[1]["action"], "member.authorized");
    assert!(!x.to_string().contains("7c55a8da82\""), "no trace of b");
    // an unknown member exports as empty
    let none = store.export_member(OTHER, a).unwrap();
    assert_eq!(none["member"], Value::Null);
    assert_eq!(none["physicalAddresses"], json!([]));
    assert_eq!(none["audit"], json!([]));
}

/// Erasing leaves no trace of the member: its record and addresses are gone, its audit entries
/// are tombstones (time, action, network, actor; no member, no details); others are untouched.
pub fn erase_member(store: &mut dyn Store) {
    let (a, b) = (addr("0a33989140"), addr("7c55a8da82"));
    populate_member(store, NWID, a);
    populate_member(store, NWID, b);
    populate_member(store, OTHER, a);
    let before = store.audit_log(0, usize::MAX).unwrap();
    let report = store.erase_member(NWID, a).unwrap();
    assert!(report.member);
    assert_eq!(report.physical_addresses, 1);
    assert_eq!(report.audit_entries, 2);
    assert_eq!(store.member(NWID, a).unwrap(), None);
    assert!(store.physical_addresses(NWID, a).unwrap().is_empty());
    assert!(store.member_audit(NWID, a).unwrap().is_empty());
    let x = store.export_member(NWID, a).unwrap();
    assert_eq!(x["member"], Value::Null);
    assert_eq!(x["physicalAddresses"], json!([]));
    assert_eq!(x["audit"], json!([]));

    let after = store.audit_log(0, usize::MAX).unwrap();
    assert_eq!(after.len(), before.len(), "tombstones, not deletions");
    for (old, new) in before.iter().zip(&after) {
        if old.nwid == NWID && old.member == Some(a) {
            assert_eq!(new, &old.clone().tombstone());
            assert_eq!(
                (new.seq, new.time_ms, new.action, new.actor.as_str()),
                (old.seq, old.time_ms, old.action, "admin")
            );
            assert!(new.erased && new.member.is_none() && new.details.is_null());
            let j = new.to_json().to_string();
            assert!(!j.contains("0a33989140"), "{j}");
            assert!(j.contains("\"member\":\"erased\""), "{j}");
        } else {
            assert_eq!(new, old, "other entries untouched");
        }
    }
    // b, and a on the other network, are untouched
    assert!(store.member(NWID, b).unwrap().is_some());
    assert!(store.member(OTHER, a).unwrap().is_some());
    assert_eq!(store.physical_addresses(OTHER, a).unwrap().len(), 1);
    assert_eq!(store.member_audit(OTHER, a).unwrap().len(), 2);
    // erasing again finds nothing
    assert_eq!(store.erase_member(NWID, a).unwrap(), Default::default());
}

/// Two handles on one database update different keys of one member concurrently, without
/// losing an update: first a forced interleaving (the second handle's transaction starts while
/// the first one's is open and must wait for it), then both hammering the member at once.
/// Returns the number of updates checked.
pub fn concurrent_updates<S: Store + Send>(mut a: S, mut b: S) -> usize {
    let m = addr("0a33989140");
    a.put_member(MemberRecord::new(NWID, m, 0)).unwrap();

    // 1. forced interleaving: a's transaction is open (it has read the record) when b starts
    let (started_tx, started_rx) = mpsc::channel::<()>();
    thread::scope(|s| {
        let b = &mut b;
        let waiter = s.spawn(move || {
            started_rx.recv().unwrap();
            b.update_member(NWID, m, &mut |r| {
                let mut r = r.expect("exists");
                r.tags.push((1, 1));
                Some(r)
            })
            .unwrap()
            .unwrap()
        });
        let first = a
            .update_member(NWID, m, &mut |r| {
                let mut r = r.expect("exists");
                started_tx.send(()).unwrap();
                // b now tries to write; it must wait for this transaction to end
                thread::sleep(Duration::from_millis(200));
                r.name = Some("from a".into());
                Some(r)
            })
            .unwrap()
            .unwrap();
        assert_eq!(first.record.revision, 2);
        let second = waiter.join().unwrap();
        assert_eq!(second.record.revision, 3);
        assert_eq!(
            second.record.name.as_deref(),
            Some("from a"),
            "b saw a's commit"
        );
    });
    let r = a.member(NWID, m).unwrap().unwrap();
    assert_eq!(r.name.as_deref(), Some("from a"));
    assert_eq!(r.tags, [(1, 1)]);

    // 2. both at once, different keys
    const N: u32 = 40;
    let barrier = Barrier::new(2);
    thread::scope(|s| {
        let barrier = &barrier;
        let (a, b) = (&mut a, &mut b);
        s.spawn(move || {
            barrier.wait();
            for i in 0..N {
                a.update_member(NWID, m, &mut |r| {
                    let mut r = r.expect("exists");
                    r.capabilities.push(i);
                    Some(r)
                })
                .unwrap();
            }
        });
        s.spawn(move || {
            barrier.wait();
            for i in 0..N {
                b.update_member(NWID, m, &mut |r| {
                    let mut r = r.expect("exists");
                    r.tags.push((100 + i, i));
                    Some(r)
                })
                .unwrap();
            }
        });
    });
    for store in [&a, &b] {
        let r = store.member(NWID, m).unwrap().unwrap();
        assert_eq!(r.capabilities, (0..N).collect::<Vec<_>>());
        let mut want = vec![(1, 1)];
        want.extend((0..N).map(|i| (100 + i, i)));
        assert_eq!(r.tags, want);
        assert_eq!(r.revision, 3 + 2 * u64::from(N), "every update bumped once");
    }
    2 + 2 * N as usize
}
