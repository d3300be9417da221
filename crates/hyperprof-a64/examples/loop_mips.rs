//! Run the benchmark's compute loop once for N iterations (default 20 M,
//! 9 instructions each) and print instructions, seconds and MIPS, for a
//! side-by-side figure with `qemu-aarch64-static` on the same loop.
//!
//! `cargo run --release -p hyperprof-a64 --example loop_mips -- [N]`

use hyperprof_a64::{Cpu, Exit};
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
    let mut cpu = Cpu::new();
    cpu.set_pc(0x1000);
    cpu.set_x(0, iters);
    cpu.set_x(5, 0x10_0000);
    let t = Instant::now();
    let exit = cpu.run(&mut bus, u64::MAX);
    let secs = t.elapsed().as_secs_f64();
    if !matches!(exit, Exit::El2(_)) {
        eprintln!("unexpected exit {exit:?}");
        std::process::exit(1);
    }
    let n = cpu.retired();
    println!(
        "{n} instructions ({} observed) in {secs:.3} s: {:.1} MIPS",
        bus.retired,
        n as f64 / secs / 1e6
    );
}
