//! `hyperprof run --scenario pinning`: each pinning design's invariants on
//! the per-task perf pattern, and the table's figures consistent with one
//! another and with what each design promises.

use hyperprof::run::pinning::{check, designs, render, run, run_design, Options};
use hyperprof_kvm::vm::PinPolicy;

fn options() -> Options {
    Options::builtin(7, 1_000_000)
}

#[test]
fn every_design_keeps_its_invariants_and_the_table_adds_up() {
    let o = options();
    let rep = run(&o).unwrap();
    assert!(rep.violations.is_empty(), "{:?}", rep.violations);
    assert_eq!(rep.rows.len(), 4);
    let [v6, all, cache, cache1] = [&rep.rows[0], &rep.rows[1], &rep.rows[2], &rep.rows[3]];
    // Two tasks of 1M operations in 250k slices: 8 switches, each an enable.
    for r in &rep.rows {
        assert_eq!(r.switches, 8, "{}", r.design);
        assert_eq!(r.pinned_at_end, 0, "{}", r.design);
        assert_eq!(r.pages_pinned, r.pages_unpinned, "{}", r.design);
        assert_eq!(r.samples_lost, 0, "{}", r.design);
        assert!(r.sampled > 0 && r.records_collected == r.records_written);
        assert!(r.mean_pages <= r.peak_pages as f64 + 1e-9, "{}", r.design);
    }
    // The same guest work under every design.
    assert!(rep.rows.iter().all(|r| r.sampled == v6.sampled));
    // v6: one pin and one unpin per enable, of one buffer and its tables.
    assert_eq!(v6.pin_ops, 8);
    assert_eq!(v6.unpin_ops, 8);
    assert_eq!(v6.blackout_windows, 8);
    assert_eq!(v6.pages_pinned, 8 * v6.peak_pages);
    assert!(
        v6.peak_pages > 256 && v6.peak_pages <= 260,
        "{}",
        v6.peak_pages
    );
    assert_eq!(v6.memlock_failures, 0);
    // Pin-all: one pin before the first run, none after; all of guest RAM;
    // a 4 MiB limit refuses it once.
    assert_eq!(all.pin_ops, 1);
    assert_eq!(all.unpin_ops, 1);
    assert_eq!(all.blackout_windows, 0);
    assert_eq!(all.peak_pages, o.ram_bytes / 4096);
    assert_eq!(all.memlock_failures, 1);
    assert_eq!(all.memlock_end, o.ram_bytes);
    // The cache with room for both: each buffer pinned once, then hits.
    assert_eq!(cache.pin_ops, 2);
    assert_eq!(cache.cache_hits, 6);
    assert_eq!(cache.evictions, 0);
    assert_eq!(cache.peak_pages, 2 * v6.peak_pages);
    assert!(cache.pin_cycles < v6.pin_cycles / 3);
    // With room for one it evicts at every enable but the first: v6's cost.
    assert_eq!(cache1.pin_ops, 8);
    assert_eq!(cache1.evictions, 7);
    assert_eq!(cache1.pin_cycles, v6.pin_cycles);
    assert_eq!(cache1.peak_pages, v6.peak_pages);
    let text = render(&rep);
    assert!(text.lines().all(|l| l.len() <= 80), "{text}");
    for want in [
        "v6 pin-on-enable",
        "pin-all",
        "pin cache",
        "blackout windows",
        "memlock failures",
    ] {
        assert!(text.contains(want), "{want}");
    }
    assert!(text.contains("hold."), "{text}");
}

#[test]
fn a_broken_row_is_reported() {
    let o = options();
    let (policy, memlock, name) = designs(&o).remove(0);
    let mut row = run_design(&o, policy, memlock, &name).unwrap();
    assert!(check(&o, policy, &row).is_empty());
    row.pinned_at_end = 4096;
    row.samples_lost = 3;
    let v = check(&o, PinPolicy::OnEnable, &row);
    assert_eq!(v.len(), 2, "{v:?}");
    // A pin-all row that pinned twice is not pin-all.
    let mut all = run_design(&o, PinPolicy::PinAll, o.ram_bytes, "pin-all").unwrap();
    assert!(check(&o, PinPolicy::PinAll, &all).is_empty());
    assert_eq!(all.memlock_failures, 0, "enough memlock from the start");
    all.pin_ops = 2;
    assert_eq!(check(&o, PinPolicy::PinAll, &all).len(), 1);
}
