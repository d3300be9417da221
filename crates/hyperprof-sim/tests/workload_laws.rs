//! The laws of the `Workload` trait, checked for every built-in workload
//! against brute force: skip/step agreement, skip counts, ops_until,
//! determinism, symbols, and loop-free skipping of huge spans.

use hyperprof_sim::event::{Event, EventCounts, ALL_EVENTS};
use hyperprof_sim::op::Op;
use hyperprof_sim::workload::{by_name, Workload, NAMES};
use proptest::prelude::*;

fn make(name: &str, seed: u64) -> Box<dyn Workload> {
    match by_name(name, seed) {
        Some(w) => w,
        None => panic!("unknown workload {name}"),
    }
}

fn step_n(w: &mut dyn Workload, n: u64) -> EventCounts {
    let mut c = EventCounts::default();
    for _ in 0..n {
        w.step().add_events(&mut c);
    }
    c
}

fn name_strategy() -> impl Strategy<Value = &'static str> {
    (0..NAMES.len()).prop_map(|i| NAMES[i])
}

/// Smallest m <= limit whose first m entries of `per_op` count `e` >= k.
fn brute_until(per_op: &[EventCounts], e: Event, k: u64, limit: u64) -> u64 {
    let mut total = 0u64;
    if k == 0 {
        return 0;
    }
    for (m, c) in per_op.iter().enumerate().take(limit as usize) {
        total += c.get(e);
        if total >= k {
            return m as u64 + 1;
        }
    }
    limit
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// (a) and (b): skip(n) then step() is the (n+1)-th step, and skip adds
    /// exactly the events of the skipped operations.
    #[test]
    fn skip_agrees_with_steps(name in name_strategy(), seed in any::<u64>(), start in 0u64..50_000, n in 0u64..3_000) {
        let mut fast = make(name, seed);
        let mut slow = make(name, seed);
        let mut ignored = EventCounts::default();
        fast.skip(start, &mut ignored);
        slow.skip(start, &mut ignored);
        let mut skipped = EventCounts::default();
        fast.skip(n, &mut skipped);
        let stepped = step_n(slow.as_mut(), n);
        prop_assert_eq!(skipped, stepped);
        prop_assert_eq!(skipped.get(Event::INST_RETIRED), n);
        for _ in 0..5 {
            prop_assert_eq!(fast.step(), slow.step());
        }
    }

    /// (c): ops_until equals a brute-force scan for every event and several
    /// k, and does not move the stream.
    #[test]
    fn ops_until_agrees_with_a_scan(name in name_strategy(), seed in any::<u64>(), start in 0u64..100_000, limit in 1u64..1_500) {
        let mut w = make(name, seed);
        let mut scan = make(name, seed);
        let mut ignored = EventCounts::default();
        w.skip(start, &mut ignored);
        scan.skip(start, &mut ignored);
        let per_op: Vec<EventCounts> = (0..limit)
            .map(|_| {
                let mut c = EventCounts::default();
                scan.step().add_events(&mut c);
                c
            })
            .collect();
        for e in ALL_EVENTS {
            for k in [1u64, 2, 3, 8, 50, 400, 5_000, u64::MAX] {
                prop_assert_eq!(
                    w.ops_until(e, k, limit),
                    brute_until(&per_op, e, k, limit),
                    "{:?} k={} limit={}", e, k, limit
                );
            }
        }
        prop_assert_eq!(w.ops_until(Event::INST_RETIRED, 0, limit), 0);
        prop_assert_eq!(w.ops_until(Event::SW_INCR, 1, limit), limit);
        let mut again = make(name, seed);
        again.skip(start, &mut ignored);
        prop_assert_eq!(w.step(), again.step());
    }

    /// Splitting a skip anywhere, with huge spans, changes nothing.
    #[test]
    fn skips_compose(name in name_strategy(), seed in any::<u64>(), a in any::<u64>(), b in any::<u64>()) {
        let (a, b) = (a >> 20, b >> 20); // keep a + b below 2^64
        let mut one = make(name, seed);
        let mut two = make(name, seed);
        let mut c1 = EventCounts::default();
        let mut c2 = EventCounts::default();
        one.skip(a + b, &mut c1);
        two.skip(a, &mut c2);
        two.skip(b, &mut c2);
        prop_assert_eq!(c1, c2);
        prop_assert_eq!(c1.get(Event::INST_RETIRED), a + b);
        for _ in 0..40 {
            prop_assert_eq!(one.step(), two.step());
        }
    }

    /// (d): the same seed gives the same stream, through any mixture of
    /// skips and steps.
    #[test]
    fn deterministic(name in name_strategy(), seed in any::<u64>(), skips in proptest::collection::vec(0u64..10_000, 1..6)) {
        let mut x = make(name, seed);
        let mut y = make(name, seed);
        let mut cx = EventCounts::default();
        let mut cy = EventCounts::default();
        for s in skips {
            x.skip(s, &mut cx);
            y.skip(s, &mut cy);
            prop_assert_eq!(x.step(), y.step());
        }
        prop_assert_eq!(cx, cy);
        prop_assert_eq!(x.symbols(), y.symbols());
    }

    /// (e): every operation's PC lies in one of the workload's functions,
    /// and every operation is well formed.
    #[test]
    fn pcs_fall_in_symbols(name in name_strategy(), seed in any::<u64>(), start in any::<u64>()) {
        let mut w = make(name, seed);
        let mut ignored = EventCounts::default();
        w.skip(start >> 8, &mut ignored);
        for _ in 0..400 {
            let op = w.step();
            prop_assert!(w.symbols().iter().any(|s| s.start <= op.pc && op.pc < s.end), "{:#x} in {}", op.pc, name);
            check_op(&op)?;
        }
    }
}

fn check_op(op: &Op) -> Result<(), TestCaseError> {
    use hyperprof_sim::op::OpKind;
    use hyperprof_spe::packet::event as spe;
    prop_assert!(op.cycles >= 1);
    prop_assert!(op.total_latency >= op.issue_latency);
    prop_assert!(op.total_latency >= op.translation_latency);
    let refill = op.outcome >> spe::L1D_REFILL & 1 != 0;
    prop_assert_eq!(
        refill,
        op.data_source != 0,
        "data source iff refill: {:?}",
        op
    );
    // The cache outcomes nest: an LLC miss was an LLC access, which was an
    // L1D refill.
    let bit = |b: u32| op.outcome >> b & 1 != 0;
    prop_assert!(!bit(spe::LLC_MISS) || bit(spe::LLC_ACCESS), "{:?}", op);
    prop_assert!(!bit(spe::LLC_ACCESS) || bit(spe::L1D_REFILL), "{:?}", op);
    match op.kind {
        OpKind::Load | OpKind::Store => {
            prop_assert!(op.translation_latency >= 1);
            prop_assert!(op.data_va != 0);
            prop_assert_eq!(
                op.outcome & (1 << spe::NOT_TAKEN | 1 << spe::MISPREDICTED),
                0
            );
        }
        OpKind::Branch {
            conditional, taken, ..
        } => {
            prop_assert!(op.target != 0);
            prop_assert_eq!(op.outcome & (1 << spe::L1D_REFILL | 1 << spe::TLB_WALK), 0);
            prop_assert_eq!(!taken, op.outcome >> spe::NOT_TAKEN & 1 != 0);
            prop_assert!(taken || conditional);
        }
        OpKind::Other => prop_assert_eq!(op.outcome, 0),
    }
    Ok(())
}

#[test]
fn symbol_tables_are_well_formed() {
    for name in NAMES {
        let mut w = make(name, 7);
        let syms = w.symbols().to_vec();
        assert!(
            (2..=5).contains(&syms.len()),
            "{name}: {} symbols",
            syms.len()
        );
        for (i, a) in syms.iter().enumerate() {
            assert!(a.start < a.end, "{name}: {a:?}");
            if name.starts_with("kernel-") {
                assert!(a.start >= 0xffff_0000_0000_0000, "{name}: {a:?}");
            } else {
                assert_eq!(a.start >> 32, 0x0000_aaaa, "{name}: {a:?}");
            }
            for b in &syms[i + 1..] {
                assert!(
                    a.end <= b.start || b.end <= a.start,
                    "{name}: {a:?} overlaps {b:?}"
                );
                assert_ne!(a.name, b.name);
            }
        }
        // Every function runs: one Mix period covers all of them.
        let mut hit = vec![false; syms.len()];
        for _ in 0..25_000 {
            let op = w.step();
            for (h, s) in hit.iter_mut().zip(&syms) {
                *h |= s.start <= op.pc && op.pc < s.end;
            }
        }
        assert!(
            hit.iter().all(|&h| h),
            "{name}: functions never run: {hit:?}"
        );
    }
}

#[test]
fn different_seeds_give_different_streams() {
    for name in NAMES {
        for (s, t) in [(0u64, 1u64), (1, 2), (42, 43), (7, 1 << 40)] {
            let mut a = make(name, s);
            let mut b = make(name, t);
            let differ = (0..300).any(|_| a.step() != b.step());
            assert!(differ, "{name}: seeds {s} and {t} agree");
        }
    }
}

/// (f): skipping 10^12 operations costs no more than skipping a few: a
/// thousand such skips, and searches over such spans, finish immediately.
#[test]
fn huge_skips_are_loop_free() {
    const T: u64 = 1_000_000_000_000;
    for name in NAMES {
        let mut w = make(name, 3);
        let mut c = EventCounts::default();
        for _ in 0..1_000 {
            w.skip(T, &mut c);
        }
        assert_eq!(c.get(Event::INST_RETIRED), 1_000 * T, "{name}");
        assert!(c.get(Event::CPU_CYCLES) > 1_000 * T, "{name}");
        assert!(c.get(Event::L1D_CACHE_REFILL) > 0, "{name}");
        assert_eq!(
            c.get(Event::BR_PRED) + c.get(Event::BR_MIS_PRED),
            c.get(Event::BR_RETIRED),
            "{name}"
        );

        // The operation after 1000 huge skips is the one a single skip of
        // the same total reaches.
        let mut v = make(name, 3);
        let mut d = EventCounts::default();
        v.skip(500 * T, &mut d);
        v.skip(500 * T, &mut d);
        assert_eq!(c, d, "{name}");
        assert_eq!(w.step(), v.step(), "{name}");

        // ops_until over a span of 10^13 operations.
        assert_eq!(w.ops_until(Event::INST_RETIRED, T, 10 * T), T, "{name}");
        let k = 3 * T;
        let m = w.ops_until(Event::CPU_CYCLES, k, 10 * T);
        assert!(m < 10 * T && m > 0, "{name}: {m}");
        let mut before = make(name, 3);
        let mut upto = make(name, 3);
        let mut ignored = EventCounts::default();
        for x in [&mut before, &mut upto] {
            x.skip(1_000 * T + 1, &mut ignored);
        }
        let mut cb = EventCounts::default();
        before.skip(m - 1, &mut cb);
        let mut cu = EventCounts::default();
        upto.skip(m, &mut cu);
        assert!(cb.get(Event::CPU_CYCLES) < k, "{name}");
        assert!(cu.get(Event::CPU_CYCLES) >= k, "{name}");
    }
}

#[test]
fn skip_of_zero_changes_nothing() {
    for name in NAMES {
        let mut a = make(name, 11);
        let mut b = make(name, 11);
        let mut c = EventCounts::default();
        a.skip(0, &mut c);
        assert_eq!(c, EventCounts::default(), "{name}");
        assert_eq!(a.step(), b.step(), "{name}");
    }
}

#[test]
fn extreme_inputs_do_not_panic() {
    for name in NAMES {
        let mut w = make(name, u64::MAX);
        let mut c = EventCounts::default();
        w.skip(u64::MAX, &mut c);
        assert_eq!(c.get(Event::INST_RETIRED), u64::MAX, "{name}");
        w.skip(u64::MAX, &mut c);
        let _ = w.step();
        for e in ALL_EVENTS {
            // Searches over the whole range terminate.
            let _ = w.ops_until(e, u64::MAX, u64::MAX);
            assert_eq!(w.ops_until(e, 1, 0), 0, "{name} {e:?}");
        }
        assert_eq!(
            w.ops_until(Event::INST_RETIRED, u64::MAX, u64::MAX),
            u64::MAX
        );
        assert_eq!(w.ops_until(Event::INST_RETIRED, 5, u64::MAX), 5);
        assert!(w.ops_until(Event::CPU_CYCLES, u64::MAX, u64::MAX) < u64::MAX);
    }
}
