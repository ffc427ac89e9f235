//! Identity generation and full validation. Both are dominated by the memory-hard hash (2 MiB
//! scratch per evaluation): validation runs it once (plus nothing else for a public identity),
//! generation runs it until the digest criterion is met (about 15 tries on average,
//! geometrically distributed, so the generation figure is noisy even with many samples) and
//! includes drawing keys from the OS RNG.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use rand_core::OsRng;
use weft_wire::Identity;

fn identity(c: &mut Criterion) {
    let mut g = c.benchmark_group("identity");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5));
    // Generation varies per call (number of tries), so give it more iterations.
    g.measurement_time(Duration::from_secs(10));
    g.bench_function("generate", |b| b.iter(|| Identity::generate(&mut OsRng)));
    g.measurement_time(Duration::from_secs(5));
    let id = Identity::generate(&mut OsRng).to_public();
    g.bench_function("validate", |b| {
        b.iter(|| assert!(black_box(&id).validate()))
    });
    g.finish();
}

criterion_group!(benches, identity);
criterion_main!(benches);
