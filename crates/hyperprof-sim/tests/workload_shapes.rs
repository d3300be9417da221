//! The shapes of the built-in workloads: the outcome rules their
//! documentation states, control flow, address ranges and function shares.

use std::collections::BTreeMap;

use hyperprof_sim::event::{Event, EventCounts};
use hyperprof_sim::op::{Op, OpKind};
use hyperprof_sim::workload::{
    by_name, ArraySum, Branchy, Mix, PointerChase, Space, StreamCopy, Workload, NAMES, SOURCE_DRAM,
    SOURCE_L2,
};
use hyperprof_spe::packet::event as spe;

fn has(op: &Op, bit: u32) -> bool {
    op.outcome >> bit & 1 != 0
}

fn steps(w: &mut dyn Workload, n: usize) -> Vec<Op> {
    (0..n).map(|_| w.step()).collect()
}

fn function_of(w: &dyn Workload, pc: u64) -> &str {
    w.symbols()
        .iter()
        .find(|s| s.start <= pc && pc < s.end)
        .map_or("?", |s| s.name.as_str())
}

#[test]
fn stream_copy_refills_every_eighth_access_of_each_stream() {
    let mut w = StreamCopy::new(5);
    let ops = steps(&mut w, 22 * 1024);
    for kind in [OpKind::Load, OpKind::Store] {
        let accesses: Vec<&Op> = ops.iter().filter(|o| o.kind == kind).collect();
        assert_eq!(accesses.len(), 8 * 1024);
        for (n, op) in accesses.iter().enumerate() {
            assert_eq!(has(op, spe::L1D_REFILL), n % 8 == 0, "{kind:?} access {n}");
        }
        // Consecutive accesses of a stream are 8 bytes apart, crossing a line
        // exactly at each refill.
        for pair in accesses.windows(2) {
            assert_eq!(pair[1].data_va, pair[0].data_va + 8);
            assert_eq!(has(pair[1], spe::L1D_REFILL), pair[1].data_va % 64 == 0);
        }
    }
    let loads: Vec<&Op> = ops.iter().filter(|o| o.kind == OpKind::Load).collect();
    let misses = loads.iter().filter(|o| has(o, spe::LLC_MISS)).count();
    assert_eq!(misses, 1024 / 16);
    assert!(loads
        .iter()
        .filter(|o| has(o, spe::LLC_MISS))
        .all(|o| o.data_source == SOURCE_DRAM && o.total_latency > 100));
    let walks = loads.iter().filter(|o| has(o, spe::TLB_WALK)).count();
    assert_eq!(walks, 1024 / 64);
    assert!(loads
        .iter()
        .filter(|o| has(o, spe::TLB_WALK))
        .all(|o| o.translation_latency > 10 && o.data_va % 4096 == 0));
    let names: Vec<&str> = w.symbols().iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["stream_copy", "memcpy"]);
}

#[test]
fn array_sum_loop_branch_falls_through_once_per_pass() {
    const PASS: u64 = 1 << 17;
    let mut w = ArraySum::new(9);
    let mut c = EventCounts::default();
    w.skip(8 * 3 * PASS, &mut c);
    assert_eq!(c.get(Event::LD_RETIRED), 3 * PASS);
    // Only the three loop exits mispredict.
    assert_eq!(c.get(Event::BR_MIS_PRED), 3);
    assert_eq!(c.get(Event::L1D_CACHE_REFILL), 3 * PASS / 8);
    assert_eq!(c.get(Event::L1D_TLB_REFILL), 3 * PASS / 512);
    assert_eq!(c.get(Event::LL_CACHE_MISS_RD), 3 * PASS / 512);
    // The loop branch of the last two elements of a pass.
    let loop_branch = |w: &ArraySum, element: u64| w.op_at(u128::from(8 * element + 7));
    for pass in 0..3 {
        let last = loop_branch(&w, pass * PASS + PASS - 1);
        let before = loop_branch(&w, pass * PASS + PASS - 2);
        assert!(matches!(
            last.kind,
            OpKind::Branch {
                conditional: true,
                taken: false,
                ..
            }
        ));
        assert!(has(&last, spe::NOT_TAKEN) && has(&last, spe::MISPREDICTED));
        assert!(matches!(
            before.kind,
            OpKind::Branch {
                conditional: true,
                taken: true,
                ..
            }
        ));
        assert_eq!(before.outcome, 0);
        assert_eq!(before.target, w.symbols()[0].start);
    }
    // The array wraps at the end of each pass.
    assert_eq!(w.op_at(0).data_va, w.op_at(u128::from(8 * PASS)).data_va);
    assert_eq!(w.op_at(8).data_va, w.op_at(0).data_va + 8);
}

#[test]
fn pointer_chase_misses_often_with_long_latencies() {
    let mut w = PointerChase::new(1);
    let ops = steps(&mut w, 7 * 4096);
    let keys: Vec<&Op> = ops.iter().skip(1).step_by(7).collect();
    assert!(keys.iter().all(|o| o.kind == OpKind::Load));
    let rate = |bit: u32| keys.iter().filter(|o| has(o, bit)).count() as f64 / keys.len() as f64;
    assert!(
        (0.80..0.90).contains(&rate(spe::L1D_REFILL)),
        "{}",
        rate(spe::L1D_REFILL)
    );
    assert!(
        (0.55..0.65).contains(&rate(spe::LLC_ACCESS)),
        "{}",
        rate(spe::LLC_ACCESS)
    );
    assert!(
        (0.30..0.40).contains(&rate(spe::LLC_MISS)),
        "{}",
        rate(spe::LLC_MISS)
    );
    assert!(
        (0.35..0.45).contains(&rate(spe::TLB_WALK)),
        "{}",
        rate(spe::TLB_WALK)
    );
    let slow = keys.iter().filter(|o| o.total_latency >= 250).count();
    assert!(slow * 4 > keys.len(), "{slow}");
    // The next-pointer load reads the same line as the key load.
    for pair in ops.chunks(7) {
        assert_eq!(pair[1].data_va, pair[2].data_va + 8);
        assert_eq!(pair[2].outcome, 0);
    }
    // Nodes are scattered: hardly any two consecutive nodes share a page.
    let same_page = keys
        .windows(2)
        .filter(|p| p[0].data_va >> 12 == p[1].data_va >> 12)
        .count();
    assert!(same_page < 10, "{same_page}");
    let mut c = EventCounts::default();
    let mut w = PointerChase::new(1);
    w.skip(7_000_000, &mut c);
    let cpi = c.get(Event::CPU_CYCLES) as f64 / c.get(Event::INST_RETIRED) as f64;
    assert!(cpi > 5.0, "{cpi}");
}

#[test]
fn branchy_branches_at_its_stated_rates() {
    let mut w = Branchy::new(4);
    let n = 17 * 4096;
    let ops = steps(&mut w, n);
    let branches = ops
        .iter()
        .filter(|o| matches!(o.kind, OpKind::Branch { .. }))
        .count();
    assert_eq!(branches, 8 * 4096);
    let mut c = EventCounts::default();
    Branchy::new(4).skip(n as u64, &mut c);
    assert_eq!(c.get(Event::BR_RETIRED), 8 * 4096);
    let mis = c.get(Event::BR_MIS_PRED) as f64 / 4096.0;
    // dispatch ~0.31 + 3/16 + 1/16 mispredictions per opcode.
    assert!((0.45..0.65).contains(&mis), "{mis}");
    // Each diamond branch: taken 5/8 (resp. 3/4) of the time.
    for (slot, expect) in [(7usize, 5.0 / 8.0), (11, 3.0 / 4.0)] {
        let taken = ops
            .iter()
            .skip(slot)
            .step_by(17)
            .filter(|o| matches!(o.kind, OpKind::Branch { taken: true, .. }))
            .count() as f64
            / 4096.0;
        assert!((taken - expect).abs() < 0.03, "slot {slot}: {taken}");
    }
    // All three handlers run, with their weights.
    let mut calls: BTreeMap<&str, usize> = BTreeMap::new();
    for op in ops.iter().skip(5).step_by(17) {
        *calls.entry(function_of(&w, op.pc)).or_default() += 1;
    }
    let share = |f: &str| calls.get(f).copied().unwrap_or(0) as f64 / 4096.0;
    assert!((share("op_add") - 0.5).abs() < 0.04, "{calls:?}");
    assert!((share("op_cmp") - 0.3).abs() < 0.04, "{calls:?}");
    assert!((share("op_call") - 0.2).abs() < 0.04, "{calls:?}");
}

/// A taken branch continues at its target, anything else at the next
/// instruction, except where a loop falls through its closing branch (the
/// template re-enters the loop).
#[test]
fn control_flow_is_consistent() {
    for name in [
        "stream-copy",
        "array-sum",
        "pointer-chase",
        "branchy",
        "kernel-branchy",
    ] {
        let mut w = by_name(name, 12).expect(name);
        let mut prev = w.step();
        let mut checked = 0;
        for _ in 0..30_000 {
            let op = w.step();
            match prev.kind {
                OpKind::Branch { taken: true, .. } => {
                    assert_eq!(op.pc, prev.target, "{name}: after {prev:?}");
                    checked += 1;
                }
                OpKind::Branch { taken: false, .. } if has(&prev, spe::MISPREDICTED) => {}
                _ => {
                    assert_eq!(op.pc, prev.pc + 4, "{name}: after {prev:?}");
                    checked += 1;
                }
            }
            prev = op;
        }
        assert!(checked > 29_000, "{name}: {checked}");
    }
}

#[test]
fn mix_shows_several_functions_with_different_shares() {
    let mut w = Mix::new(2);
    let mut samples: BTreeMap<String, u64> = BTreeMap::new();
    let mut c = EventCounts::default();
    let n = 4_000u64;
    for _ in 0..n {
        w.skip(1023, &mut c);
        let op = w.step();
        *samples
            .entry(function_of(&w, op.pc).to_string())
            .or_default() += 1;
    }
    let share = |f: &str| samples.get(f).copied().unwrap_or(0) as f64 / n as f64;
    assert_eq!(share("?"), 0.0);
    for (f, expect) in [
        ("memcpy", 8000.0 / 20164.0),
        ("sum_array", 3000.0 / 20164.0),
        ("hash_lookup", 4000.0 / 20164.0),
        ("interpret", 5100.0 / 20164.0),
    ] {
        assert!((share(f) - expect).abs() < 0.03, "{f}: {samples:?}");
    }
    // By cycles, the pointer chase dominates.
    let mut cycles: BTreeMap<String, u64> = BTreeMap::new();
    let mut m = Mix::new(2);
    for _ in 0..20_164 * 2 {
        let op = m.step();
        *cycles
            .entry(function_of(&m, op.pc).to_string())
            .or_default() += u64::from(op.cycles);
    }
    let top = cycles
        .iter()
        .max_by_key(|(_, &c)| c)
        .map(|(f, _)| f.as_str());
    assert_eq!(top, Some("hash_lookup"), "{cycles:?}");
}

#[test]
fn kernel_variants_live_in_the_kernel_range() {
    for name in NAMES.iter().filter(|n| n.starts_with("kernel-")) {
        let mut w = by_name(name, 8).expect(name);
        for op in steps(w.as_mut(), 5_000) {
            assert!(op.pc >= 0xffff_8000_0000_0000, "{name}: {op:?}");
            if matches!(op.kind, OpKind::Load | OpKind::Store) {
                assert!(op.data_va >= 0xffff_0000_0000_0000, "{name}: {op:?}");
            }
        }
    }
    for name in NAMES.iter().filter(|n| !n.starts_with("kernel-")) {
        let mut w = by_name(name, 8).expect(name);
        for op in steps(w.as_mut(), 5_000) {
            assert_eq!(op.pc >> 32, 0xaaaa, "{name}: {op:?}");
            if matches!(op.kind, OpKind::Load | OpKind::Store) {
                assert!(op.data_va < 0x0001_0000_0000_0000, "{name}: {op:?}");
            }
        }
    }
    // The same code shape, relocated.
    let user = StreamCopy::new(3);
    let kernel = StreamCopy::with_space(3, Space::Kernel);
    assert_eq!(
        user.op_at(7).pc - Space::User.code_base(),
        kernel.op_at(7).pc - Space::Kernel.code_base()
    );
    assert_eq!(user.op_at(7).outcome, kernel.op_at(7).outcome);
    assert_eq!(StreamCopy::kernel(3).op_at(9), kernel.op_at(9));
}

#[test]
fn refills_report_a_data_source() {
    let mut w = StreamCopy::new(0);
    let ops = steps(&mut w, 22 * 64);
    let stores: Vec<&Op> = ops
        .iter()
        .filter(|o| o.kind == OpKind::Store && has(o, spe::L1D_REFILL))
        .collect();
    assert!(!stores.is_empty());
    assert!(stores.iter().any(|o| o.data_source == SOURCE_L2));
    assert!(ops
        .iter()
        .filter(|o| !has(o, spe::L1D_REFILL))
        .all(|o| o.data_source == 0));
}

#[test]
fn position_and_random_access_agree() {
    let mut w = Mix::new(6);
    let mut c = EventCounts::default();
    w.skip(123_456, &mut c);
    assert_eq!(w.position(), 123_456);
    let expect = w.op_at(123_456);
    assert_eq!(w.step(), expect);
    assert_eq!(w.position(), 123_457);
}
