//! Simulation speed: the bare-metal host on one CPU, SPE sampling every 1024
//! operations into a 256 KiB buffer and six PMU counters counting (one of
//! them sampling), over 20 million user operations plus kernel work.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hyperprof::run::bare_metal::{run, Options};

fn benches(c: &mut Criterion) {
    let opts = Options {
        seed: 1,
        ops: 20_000_000,
        cpus: 1,
    };
    let ops = run(&opts).expect("scenario runs")[0].ops;
    let mut g = c.benchmark_group("sim");
    g.throughput(Throughput::Elements(ops));
    g.sample_size(10);
    g.bench_function("bare-metal-1cpu-spe1024-6counters", |b| {
        b.iter(|| run(&opts).expect("scenario runs")[0].ops)
    });
    g.finish();
}

criterion_group!(sim_benches, benches);
criterion_main!(sim_benches);
