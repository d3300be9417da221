//! Decode throughput, and interpreter instructions per second on a
//! compute loop (ALU, multiply-add, a load and a store per iteration,
//! 9 instructions) with the observer counting every retired instruction.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use hyperprof_a64::{decode, Access, Bus, Cpu, Exit, Fetched, MemFault};

#[path = "../tests/common/mod.rs"]
mod common;

/// The loop body; x0 counts down, x5 points at a 1 KiB buffer.
const LOOP: [u32; 10] = [
    0x8b00_0021, // add  x1, x1, x0
    0xca01_0c42, // eor  x2, x2, x1, lsl #3
    0x9b02_0c23, // madd x3, x1, x2, x3
    0xf866_78a4, // ldr  x4, [x5, x6, lsl #3]
    0x9100_04c6, // add  x6, x6, #1
    0x9240_14c6, // and  x6, x6, #63
    0xf901_00a4, // str  x4, [x5, #512]
    0xf100_0400, // subs x0, x0, #1
    0x54ff_ff01, // b.ne loop
    0xd400_0002, // hvc  #0
];
const CODE: u64 = 0x1000;
const BUF: u64 = 0x10_0000;
const ITERS: u64 = 1_000_000;

fn bench_decode(c: &mut Criterion) {
    let mut words = Vec::with_capacity(4096);
    let mut x = 0x9e37_79b9u32;
    for i in 0..4096 {
        if i % 2 == 0 {
            words.push(LOOP[i / 2 % LOOP.len()]);
        } else {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            words.push(x);
        }
    }
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(words.len() as u64));
    g.bench_function("mixed_4096", |b| {
        b.iter(|| {
            for w in &words {
                black_box(decode(black_box(*w)));
            }
        })
    });
    g.finish();
}

/// The same memory with the observer compiled out.
struct Quiet(common::FlatBus);

impl Bus for Quiet {
    const OBSERVE: bool = false;
    fn fetch(&mut self, va: u64, a: Access) -> Result<Fetched, MemFault> {
        self.0.fetch(va, a)
    }
    fn read(&mut self, va: u64, s: u8, a: Access) -> Result<u64, MemFault> {
        self.0.read(va, s, a)
    }
    fn write(&mut self, va: u64, s: u8, v: u64, a: Access) -> Result<u64, MemFault> {
        self.0.write(va, s, v, a)
    }
}

fn run_loop<B: Bus>(cpu: &mut Cpu, bus: &mut B) -> u64 {
    cpu.set_pc(CODE);
    cpu.set_x(0, ITERS);
    cpu.set_x(5, BUF);
    cpu.set_x(6, 0);
    let exit = cpu.run(bus, u64::MAX);
    assert!(matches!(exit, Exit::El2(_)));
    cpu.x(3)
}

fn bench_interp(c: &mut Criterion) {
    let mut bus = common::FlatBus::new();
    bus.map(CODE, 0x1000);
    bus.map(BUF, 0x1000);
    for (i, w) in LOOP.iter().enumerate() {
        bus.write_u32(CODE + 4 * i as u64, *w);
    }
    let mut cpu = Cpu::new();
    let insns = ITERS * 9 + 1;
    let mut g = c.benchmark_group("interpreter");
    g.throughput(Throughput::Elements(insns));
    g.sample_size(20);
    g.bench_function("compute_loop_1M_iterations", |b| {
        b.iter(|| black_box(run_loop(&mut cpu, &mut bus)))
    });
    let mut quiet = Quiet(bus);
    g.bench_function("compute_loop_1M_iterations_no_observer", |b| {
        b.iter(|| black_box(run_loop(&mut cpu, &mut quiet)))
    });
    g.finish();
}

criterion_group!(benches, bench_decode, bench_interp);
criterion_main!(benches);
