use super::*;

fn two() -> Hierarchy {
    Hierarchy::new(&[UarchConfig::default(), UarchConfig::default()]).unwrap()
}

#[test]
fn a_line_is_fetched_once_then_hits_in_l1() {
    let mut h = two();
    let first = h.access(0, 0x1000, 0x4000_1000, false);
    assert!(first.l1_refill && first.l2_refill && first.llc_miss && first.tlb_walk);
    assert_eq!(first.source, SOURCE_DRAM);
    assert_eq!(first.latency, 120);
    assert_eq!(first.translation, 20);
    // The same line, another word: an L1 hit, and the page is in the TLB.
    let again = h.access(0, 0x1008, 0x4000_1008, false);
    assert_eq!(
        again,
        MemOutcome {
            latency: 4,
            translation: 1,
            source: SOURCE_L1D,
            ..MemOutcome::default()
        }
    );
    // The next line of the same page misses the caches but not the TLB.
    let next = h.access(0, 0x1040, 0x4000_1040, false);
    assert!(next.l1_refill && !next.tlb_walk);
}

#[test]
fn a_streaming_read_refills_once_per_line() {
    let mut h = two();
    let mut refills = 0;
    for i in 0..4096u64 {
        refills += u32::from(h.access(0, i * 8, 0x4000_0000 + i * 8, false).l1_refill);
    }
    assert_eq!(refills, 4096 * 8 / 64);
}

#[test]
fn false_sharing_comes_from_the_peer_core_and_invalidates_its_copy() {
    let mut h = two();
    // Core 0 writes the line; core 1 reads it from core 0's cache.
    h.access(0, 0x2000, 0x4000_2000, true);
    let r = h.access(1, 0x2008, 0x4000_2008, false);
    assert_eq!(r.source, SOURCE_PEER_CORE);
    assert_eq!(r.latency, 50);
    // Both now share it: core 0's read hits its own L1.
    assert_eq!(h.access(0, 0x2000, 0x4000_2000, false).source, SOURCE_L1D);
    // Core 0 writes again: an upgrade that invalidates core 1's copy...
    let w = h.access(0, 0x2000, 0x4000_2000, true);
    assert!(!w.llc_access && !w.l1_refill);
    assert_eq!(w.latency, 35);
    // ...so core 1 misses and gets it from core 0 again.
    let r = h.access(1, 0x2008, 0x4000_2008, false);
    assert!(r.l1_refill);
    assert_eq!(r.source, SOURCE_PEER_CORE);
    // Without sharing, a line another core only read comes from the shared cache.
    h.access(0, 0x3000, 0x4000_3000, false);
    assert_eq!(
        h.access(1, 0x3000, 0x4000_3000, false).source,
        SOURCE_SYS_CACHE
    );
}

#[test]
fn the_shared_cache_is_inclusive() {
    let small = UarchConfig {
        llc: CacheGeometry {
            size: 64 * 16 * 2,
            ways: 16,
            line: 64,
            latency: 35,
        },
        ..UarchConfig::default()
    };
    let mut h = Hierarchy::new(&[small]).unwrap();
    h.access(0, 0, 0x4000_0000, false);
    // 32 more lines mapping to the same LLC set push line 0 out of the
    // LLC, and so out of the L1 although the L1 has room.
    for i in 1..=32u64 {
        h.access(0, i * 128, 0x4000_0000 + i * 128, false);
    }
    assert!(h.access(0, 0, 0x4000_0000, false).llc_miss);
}

#[test]
fn retire_turns_accesses_and_branches_into_ops() {
    let mut h = two();
    let (op, m) = h.retire(0, 0x400, Some((0x1000, 0x4000_1000, false)), None);
    assert_eq!(op.kind, OpKind::Load);
    assert_eq!(op.data_source, SOURCE_DRAM);
    assert_eq!(op.total_latency, m.latency + m.translation);
    assert_eq!(op.cycles, 1 + (120 - 4) + (20 - 1));
    assert!(op.outcome & 1 << spe_event::LLC_MISS != 0);
    let b = BranchInfo {
        conditional: true,
        indirect: false,
        taken: true,
        target: 0x300,
        link: false,
        is_return: false,
    };
    let (op, _) = h.retire(0, 0x404, None, Some(&b));
    assert!(op.outcome & 1 << spe_event::MISPREDICTED != 0);
    assert_eq!(op.cycles, 12);
    let (op, _) = h.retire(0, 0x404, None, Some(&b));
    assert_eq!(op.outcome, 0);
    assert_eq!(op.cycles, 1);
    let (op, _) = h.retire(0, 0x408, None, None);
    assert_eq!(op.kind, OpKind::Other);
}

#[test]
fn bad_configurations_are_refused() {
    assert!(Hierarchy::new(&[]).is_err());
    let odd = UarchConfig {
        l2: CacheGeometry {
            size: 3 << 20,
            ways: 8,
            line: 64,
            latency: 11,
        },
        ..UarchConfig::default()
    };
    assert!(Hierarchy::new(&[odd]).unwrap_err().contains("l2"));
    let lines = UarchConfig {
        l1d: CacheGeometry {
            size: 64 << 10,
            ways: 4,
            line: 128,
            latency: 4,
        },
        ..UarchConfig::default()
    };
    assert!(Hierarchy::new(&[lines]).is_err());
}
