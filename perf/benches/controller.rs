//! Netconf request handling by the controller over a network of 10,000 members, with the
//! SQLite store, the PostgreSQL store and `MemoryStore` as the baseline (same run, same
//! requests). PostgreSQL runs when a server is available: `WEFT_TEST_POSTGRES_URL`, or a private
//! cluster started by `weft_controller::store::postgres::test_server` (Debian's `postgresql`
//! binaries; `fsync` off, Unix socket); otherwise it is skipped with a message.
//!
//! Each request is a genuine NETWORK_CONFIG_REQUEST from one of a few authorized members
//! (identities are expensive to generate; the other members only exist as records): the §3
//! path reads the network, the member and the whole member list (the network summary: active
//! bridges, allocated IPs), builds and signs the config, and saves the member. The fake clock
//! moves 1001 ms per request so the 1 req/s rate limit never drops one.
//!
//! Besides criterion's per-iteration figures the bench prints requests/s and p50/p99 latency
//! (hdrhistogram) of a timed loop per store, and the SQLite ÷ memory and PostgreSQL ÷ memory
//! ratios. Under `--test`
//! (`cargo test --benches`, `cargo bench -- --test`) the network has 100 members.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use hdrhistogram::Histogram;
use rand_core::OsRng;
use weft_controller::store::postgres::PostgresStore;
use weft_controller::store::postgres::test_server::TestServer;
use weft_controller::store::sqlite::SqliteStore;
use weft_controller::store::{IpPool, RouteRecord, V4AssignMode};
use weft_controller::{Controller, MemberRecord, MemoryStore, NetworkRecord, Store};
use weft_wire::dictionary::Dictionary;
use weft_wire::{Address, Identity, NetworkId};

const MEMBERS: u32 = 10_000;
const TEST_MEMBERS: u32 = 100;
/// Members that send requests (each has a generated identity).
const REQUESTERS: usize = 4;
/// Requests timed one by one for the percentiles.
const TIMED: usize = 400;

/// Criterion's test mode: `--test`, or no `--bench` (`cargo test --bench controller` passes
/// neither).
fn test_mode() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--test") || !args.iter().any(|a| a == "--bench")
}

struct Setup<S: Store> {
    ctl: Controller<S>,
    nwid: NetworkId,
    requesters: Vec<Identity>,
    metadata: Dictionary,
    now: i64,
    next: usize,
}

impl<S: Store> Setup<S> {
    fn new(mut store: S, controller: &Identity, requesters: &[Identity], members: u32) -> Self {
        let nwid = NetworkId((controller.address().to_u64() << 24) | 0x42);
        let mut n = NetworkRecord::new(nwid, 0);
        n.name = "bench".into();
        n.routes.push(RouteRecord {
            target: "10.0.0.0/8".parse().unwrap(),
            via: None,
        });
        n.ip_assignment_pools.push(IpPool {
            start: "10.0.0.1".parse().unwrap(),
            end: "10.255.255.254".parse().unwrap(),
        });
        n.v4_assign_mode = V4AssignMode { zt: true };
        store.put_network(n).unwrap();
        for i in 0..members {
            // addresses that cannot collide with the generated ones' (top byte 0xfe)
            let addr = Address::new(0xfe_0000_0000 | u64::from(i)).unwrap();
            let mut m = MemberRecord::new(nwid, addr, 0);
            m.authorized = true;
            m.ip_assignments = vec![
                format!("10.{}.{}.{}", i >> 16, (i >> 8) & 0xff, (i & 0xff).max(1))
                    .parse()
                    .unwrap(),
            ];
            store.put_member(m).unwrap();
        }
        for r in requesters {
            let mut m = MemberRecord::new(nwid, r.address(), 0);
            m.authorized = true;
            store.put_member(m).unwrap();
        }
        let mut metadata = Dictionary::new();
        for (k, v) in [("majv", 1), ("minv", 14), ("revv", 1), ("pv", 12)] {
            metadata.add_u64(k, v).unwrap();
        }
        let mut s = Setup {
            ctl: Controller::new(controller.clone(), store).unwrap(),
            nwid,
            requesters: requesters.iter().map(Identity::to_public).collect(),
            metadata,
            now: 1_000_000,
            next: 0,
        };
        // first requests assign the requesters' IPs
        for _ in 0..requesters.len() {
            s.request();
        }
        s
    }

    /// One genuine request; returns the number of config chunks sent.
    fn request(&mut self) -> usize {
        let who = &self.requesters[self.next % self.requesters.len()];
        self.next += 1;
        self.now += 1001;
        self.ctl
            .handle_request(
                self.now,
                self.nwid,
                who,
                &self.metadata,
                self.next as u64,
                None,
                &mut OsRng,
            )
            .unwrap();
        let mut chunks = 0;
        while let Some(o) = self.ctl.poll_output() {
            match o {
                weft_controller::ControllerOutput::Config { chunks: c, .. } => chunks += c.len(),
                other => panic!("unexpected output {other:?}"),
            }
        }
        assert!(chunks > 0);
        chunks
    }

    /// Times `n` requests one by one: (requests/s, p50 µs, p99 µs).
    fn timed(&mut self, n: usize) -> (f64, u64, u64) {
        let mut h = Histogram::<u64>::new(3).unwrap();
        let start = Instant::now();
        for _ in 0..n {
            let t = Instant::now();
            black_box(self.request());
            h.record(t.elapsed().as_micros() as u64).unwrap();
        }
        let rate = n as f64 / start.elapsed().as_secs_f64();
        (rate, h.value_at_quantile(0.5), h.value_at_quantile(0.99))
    }
}

fn controller(c: &mut Criterion) {
    let members = if test_mode() { TEST_MEMBERS } else { MEMBERS };
    let timed = if test_mode() { 3 } else { TIMED };
    let ids: Vec<Identity> = (0..=REQUESTERS)
        .map(|_| Identity::generate(&mut OsRng))
        .collect();
    let (ctl_id, requesters) = ids.split_first().unwrap();
    let dir = tempfile::tempdir().unwrap();

    let t = Instant::now();
    let mut memory = Setup::new(MemoryStore::new(), ctl_id, requesters, members);
    let memory_setup = t.elapsed();
    let t = Instant::now();
    let sqlite_store = SqliteStore::open(dir.path().join("bench.db")).unwrap();
    let mut sqlite = Setup::new(sqlite_store, ctl_id, requesters, members);
    let sqlite_setup = t.elapsed();
    // PostgreSQL, when a server can be had
    let pg_server = match TestServer::start() {
        Ok(server) => Some(server),
        Err(e) => {
            eprintln!("controller bench: no PostgreSQL server, skipping it: {e}");
            None
        }
    };
    let t = Instant::now();
    let mut postgres = pg_server.as_ref().map(|server| {
        let url = server.create_database("bench").unwrap();
        let store = PostgresStore::connect(&url).unwrap();
        Setup::new(store, ctl_id, requesters, members)
    });
    let postgres_setup = t.elapsed();
    eprintln!(
        "controller bench: {members} members; setup (inserting them one transaction each): \
         memory {memory_setup:.2?}, sqlite {sqlite_setup:.2?}, postgres {}",
        if postgres.is_some() {
            format!("{postgres_setup:.2?}")
        } else {
            "skipped".into()
        }
    );

    // the timed loops, interleaved so all see the same machine conditions
    let (mut m, mut s, mut p) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..2 {
        m.push(memory.timed(timed / 2));
        s.push(sqlite.timed(timed / 2));
        if let Some(pg) = &mut postgres {
            p.push(pg.timed(timed / 2));
        }
    }
    let avg = |v: &[(f64, u64, u64)]| {
        let n = v.len() as f64;
        (
            v.iter().map(|x| x.0).sum::<f64>() / n,
            v.iter().map(|x| x.1).sum::<u64>() / v.len() as u64,
            v.iter().map(|x| x.2).sum::<u64>() / v.len() as u64,
        )
    };
    let (mr, m50, m99) = avg(&m);
    eprintln!("controller bench: memory: {mr:.0} req/s, p50 {m50} µs, p99 {m99} µs");
    for (name, v) in [("sqlite", &s), ("postgres", &p)] {
        if v.is_empty() {
            continue;
        }
        let (r, p50, p99) = avg(v);
        eprintln!("controller bench: {name}: {r:.0} req/s, p50 {p50} µs, p99 {p99} µs");
        eprintln!(
            "controller bench: {name} / memory: throughput {:.2}×, p50 {:.2}×, p99 {:.2}×",
            r / mr,
            p50 as f64 / m50.max(1) as f64,
            p99 as f64 / m99.max(1) as f64
        );
    }

    let mut g = c.benchmark_group("controller");
    g.throughput(Throughput::Elements(1))
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    g.bench_function(format!("netconf-request/memory/{members}"), |b| {
        b.iter(|| memory.request())
    });
    g.bench_function(format!("netconf-request/sqlite/{members}"), |b| {
        b.iter(|| sqlite.request())
    });
    if let Some(pg) = &mut postgres {
        g.bench_function(format!("netconf-request/postgres/{members}"), |b| {
            b.iter(|| pg.request())
        });
    }
    g.finish();
    // stop the private server (if any) after the stores are gone
    drop(postgres);
    drop(pg_server);
}

criterion_group!(benches, controller);
criterion_main!(benches);
