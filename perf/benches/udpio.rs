//! UDP I/O back-ends over loopback: one sender and one receiver socket of the same back-end;
//! each iteration queues 64 datagrams, sends them and receives all 64. Two traffic shapes:
//! `equal` (64 × 1200 bytes to one destination: GSO/GRO coalesce them) and `mixed`
//! (alternating 1200/1100 bytes: runs of two at most). Throughput is datagrams; compare the
//! back-ends within one run (loopback numbers include both ends' kernel work on one machine).

use std::time::Duration;

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use weft_engine::io::udp::{self, Backend, Options, RxBatch, TxBatch, UdpIo};

const BATCH: usize = 64;

fn pair(b: Backend) -> Option<(Box<dyn UdpIo>, Box<dyn UdpIo>)> {
    let opts = Options {
        prefer: Some(b),
        ..Options::default()
    };
    let addr = "127.0.0.1:0".parse().unwrap();
    let (s, _) = udp::open(addr, &opts).ok()?;
    let (r, _) = udp::open(addr, &opts).ok()?;
    Some((s, r))
}

fn round(
    s: &mut dyn UdpIo,
    r: &mut dyn UdpIo,
    tx: &mut TxBatch,
    rx: &mut RxBatch,
    sizes: &[usize],
) {
    let to = r.local_addr();
    let payload = [0x5au8; 1500];
    for &n in sizes {
        tx.push(to, &payload[..n]);
    }
    while !tx.is_empty() {
        s.send(tx).unwrap();
    }
    let mut got = 0;
    let mut spins = 0u64;
    while got < sizes.len() {
        got += r.recv(rx).unwrap();
        spins += 1;
        assert!(spins < 10_000_000, "datagrams lost on loopback");
    }
}

fn udpio(c: &mut Criterion) {
    let mut g = c.benchmark_group("udpio");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(BATCH as u64));
    let equal = vec![1200; BATCH];
    let mixed: Vec<usize> = (0..BATCH).map(|i| 1200 - (i % 2) * 100).collect();
    for (shape, sizes) in [("equal", &equal), ("mixed", &mixed)] {
        for b in [Backend::Plain, Backend::Mmsg, Backend::IoUring] {
            let Some((mut s, mut r)) = pair(b) else {
                eprintln!("udpio: {b} unavailable here, skipped");
                continue;
            };
            let mut tx = TxBatch::new();
            let mut rx = RxBatch::new(BATCH);
            g.bench_function(format!("{shape}/{b}"), |bench| {
                bench.iter(|| round(s.as_mut(), r.as_mut(), &mut tx, &mut rx, sizes))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, udpio);
criterion_main!(benches);
