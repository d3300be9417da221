//! Closing figures on a loaded machine: decode throughput and interpreter
//! MIPS on the benchmark's compute loop (9 instructions per iteration,
//! observer on and off), each timed by wall clock and by this process's
//! CPU time (from /proc/self/stat, 10 ms resolution), for a side-by-side
//! figure with `qemu-aarch64-static` on the same loop.
//!
//! `cargo run --release -p hyperprof-a64 --example loop_mips -- [ITERATIONS]`

use hyperprof_a64::{decode, Access, Bus, Cpu, Exit, Fetched, MemFault};
use std::hint::black_box;
use std::time::Instant;

#[path = "../tests/common/mod.rs"]
mod common;

const LOOP: [u32; 10] = [
    0x8b00_0021,
    0xca01_0c42,
    0x9b02_0c23,
    0xf866_78a4,
    0x9100_04c6,
    0x9240_14c6,
    0xf901_00a4,
    0xf100_0400,
    0x54ff_ff01,
    0xd400_0002,
];

/// User+system CPU seconds of this process, if /proc is there.
fn cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = rest.get(11)?.parse::<f64>().ok()? + rest.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Runs `f`, returning (wall seconds, CPU seconds).
fn timed(f: impl FnOnce()) -> (f64, f64) {
    let c0 = cpu_secs();
    let t = Instant::now();
    f();
    let wall = t.elapsed().as_secs_f64();
    let cpu = match (c0, cpu_secs()) {
        (Some(a), Some(b)) => b - a,
        _ => wall,
    };
    (wall, cpu)
}

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

fn run_loop<B: Bus>(bus: &mut B, iters: u64) -> u64 {
    let mut cpu = Cpu::new();
    cpu.set_pc(0x1000);
    cpu.set_x(0, iters);
    cpu.set_x(5, 0x10_0000);
    let exit = cpu.run(bus, u64::MAX);
    if !matches!(exit, Exit::El2(_)) {
        eprintln!("unexpected exit {exit:?}");
        std::process::exit(1);
    }
    cpu.retired()
}

fn main() {
    let iters: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000_000);
    let mut bus = common::FlatBus::new();
    bus.map(0x1000, 0x1000);
    bus.map(0x10_0000, 0x1000);
    for (i, w) in LOOP.iter().enumerate() {
        bus.write_u32(0x1000 + 4 * i as u64, *w);
    }

    let mut words = Vec::with_capacity(1 << 16);
    let mut x = 0x9e37_79b9u32;
    for i in 0..1 << 16 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        words.push(if i % 2 == 0 {
            LOOP[i / 2 % LOOP.len()]
        } else {
            x
        });
    }
    let rounds = 400u64;
    let (w, c) = timed(|| {
        for _ in 0..rounds {
            for word in &words {
                black_box(decode(black_box(*word)));
            }
        }
    });
    let n = rounds as f64 * words.len() as f64;
    println!(
        "decode, half loop words, half random: {:.0} M words/s wall, {:.0} M words/s CPU",
        n / w / 1e6,
        n / c / 1e6
    );

    // Real compiled code, when the cross toolchain's libc is installed.
    if let Ok(img) = std::fs::read("/usr/aarch64-linux-gnu/lib/libc.so.6") {
        let code: Vec<u32> = img
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let rounds = 20u64;
        let (w, c) = timed(|| {
            for _ in 0..rounds {
                for word in &code {
                    black_box(decode(black_box(*word)));
                }
            }
        });
        let n = rounds as f64 * code.len() as f64;
        println!(
            "decode of libc.so.6's words: {:.0} M words/s wall, {:.0} M words/s CPU",
            n / w / 1e6,
            n / c / 1e6
        );
    }

    let mut n = 0;
    let (w, c) = timed(|| n = run_loop(&mut bus, iters));
    println!(
        "interpreter, observer on: {n} instructions, {:.1} MIPS wall, {:.1} MIPS CPU",
        n as f64 / w / 1e6,
        n as f64 / c / 1e6
    );
    let mut quiet = Quiet(bus);
    let (w, c) = timed(|| n = run_loop(&mut quiet, iters));
    println!(
        "interpreter, observer off: {n} instructions, {:.1} MIPS wall, {:.1} MIPS CPU",
        n as f64 / w / 1e6,
        n as f64 / c / 1e6
    );
}
