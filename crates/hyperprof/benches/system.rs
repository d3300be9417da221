//! The main job's speed: the built-in default scenario (four CPUs, host SPE
//! and PMU, a partitioned VM with guest SPE and an emulated VM with two
//! vCPUs), engine and report, in simulated guest and host operations per
//! second; and the guest-pmu scenario's world switches.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hyperprof::run::{engine, from_scenario, presets, system};
use hyperprof::scenario::Scenario;

fn ops(o: &engine::Outcome) -> u64 {
    let guest: u64 = o.vms.iter().flat_map(|v| &v.vcpus).map(|c| c.ops).sum();
    guest + o.host.iter().map(|h| h.ops).sum::<u64>()
}

fn benches(c: &mut Criterion) {
    let default = from_scenario::setup(&Scenario::builtin_default()).expect("the default is valid");
    let pmu = presets::guest_pmu(1, 20_000_000);
    let mut g = c.benchmark_group("system");
    g.sample_size(10);
    for (name, setup) in [("default-scenario", &default), ("guest-pmu", &pmu)] {
        let first = engine::run(setup, &mut |_, _| {}).expect("runs");
        g.throughput(Throughput::Elements(ops(&first)));
        g.bench_function(name, |b| {
            b.iter(|| {
                let o = engine::run(setup, &mut |_, _| {}).expect("runs");
                system::build(&o).0.rounds
            })
        });
    }
    g.finish();
}

criterion_group!(system_benches, benches);
criterion_main!(system_benches);
