//! Pinning on real translation tables: a guest RAM memslot mapped at stage 2
//! by the hypervisor, guest stage-1 tables built inside guest memory, and the
//! profiling buffer collected, pinned and charged against the memlock limit.

use hyperprof_kvm::pin::{
    buffer_span, collect, collect_within, Memlock, PinError, PinSet, PinnedPage, Rlimit, VcpuPins,
};
use hyperprof_sim::memory::{FrameAllocator, PhysMem, PAGE_SIZE};
use hyperprof_sim::mmu::{
    desc, FaultKind, GuestPhysMem, Perm, S2Perm, Stage1Tables, Stage2Params, Stage2Tables,
};
use proptest::prelude::*;

/// Host frames for the hypervisor's stage-2 tables.
const HOST_TABLES: u64 = 0x1000_0000;
/// Host physical memory backing the guest RAM memslot.
const HOST_SLOT: u64 = 0x8000_0000;
/// IPA of the guest RAM memslot.
const GUEST_RAM: u64 = 0x4000_0000;
/// Size of the memslot: 16 MiB.
const SLOT_SIZE: u64 = 0x100_0000;
/// Guest frames for its stage-1 tables: the first 1 MiB of guest RAM.
const GUEST_TABLES: u64 = GUEST_RAM;
/// Guest data pages (buffers) start after the table frames.
const GUEST_DATA: u64 = GUEST_RAM + 0x10_0000;

const P: u64 = PAGE_SIZE;

/// The host PA backing a guest IPA inside the memslot (the slot is linear).
fn slot_pa(ipa: u64) -> u64 {
    ipa - GUEST_RAM + HOST_SLOT
}

fn pp(ipa: u64) -> PinnedPage {
    PinnedPage {
        ipa,
        pa: slot_pa(ipa),
    }
}

struct Guest {
    mem: PhysMem,
    s2t: Stage2Tables,
    s1: Stage1Tables,
    galloc: FrameAllocator,
}

impl Guest {
    fn new() -> Self {
        let mut mem = PhysMem::new();
        mem.add_ram(HOST_TABLES, 0x10_0000).unwrap();
        mem.add_ram(HOST_SLOT, SLOT_SIZE).unwrap();
        let mut halloc = FrameAllocator::new(HOST_TABLES, 0x10_0000).unwrap();
        let s2t = Stage2Tables::new(&mut mem, &mut halloc, 1).unwrap();
        s2t.map(
            &mut mem,
            &mut halloc,
            GUEST_RAM,
            HOST_SLOT,
            SLOT_SIZE,
            S2Perm::RW,
        )
        .unwrap();
        let mut galloc = FrameAllocator::new(GUEST_TABLES, 0x10_0000).unwrap();
        let s1 = {
            let mut g = GuestPhysMem::new(&mut mem, s2t.params());
            Stage1Tables::new(&mut g, &mut galloc).unwrap()
        };
        Self {
            mem,
            s2t,
            s1,
            galloc,
        }
    }

    /// Maps guest `va` to guest `ipa` at stage 1, built in guest memory.
    fn map(&mut self, va: u64, ipa: u64, size: u64, perm: Perm) {
        let mut g = GuestPhysMem::new(&mut self.mem, self.s2t.params());
        self.s1
            .map(&mut g, &mut self.galloc, va, ipa, size, perm)
            .unwrap();
    }

    /// The stage-2 translation regime of the guest.
    fn s2(&self) -> Stage2Params {
        self.s2t.params()
    }

    fn collect(&self, va: u64, len: u64) -> Result<PinSet, PinError> {
        collect(&self.mem, self.s1.root, &self.s2(), va, len)
    }

    /// The stage-1 table pages for `va`, found by reading the descriptors
    /// by hand (level 0 to 3), independently of the simulator's walker.
    fn manual_tables(&self, va: u64) -> Vec<PinnedPage> {
        let mut out = Vec::new();
        let mut table = self.s1.root;
        for level in 0..4u32 {
            out.push(pp(table));
            let idx = (va >> (39 - 9 * level)) & 0x1ff;
            let d = self.mem.read_u64(slot_pa(table) + idx * 8).unwrap();
            assert_eq!(d & desc::TYPE_MASK, desc::TABLE_OR_PAGE, "level {level}");
            table = d & desc::OA_MASK;
        }
        out
    }

    /// Host PA of the stage-1 descriptor used at `level` for `va` (found by hand).
    fn descriptor_pa(&self, va: u64, level: u32) -> u64 {
        let mut table = self.s1.root;
        for l in 0..level {
            let idx = (va >> (39 - 9 * l)) & 0x1ff;
            table = self.mem.read_u64(slot_pa(table) + idx * 8).unwrap() & desc::OA_MASK;
        }
        slot_pa(table) + ((va >> (39 - 9 * level)) & 0x1ff) * 8
    }
}

fn sorted(mut v: Vec<PinnedPage>) -> Vec<PinnedPage> {
    v.sort();
    v.dedup();
    v
}

// ---------------------------------------------------------------------------
// collect
// ---------------------------------------------------------------------------

#[test]
fn collect_finds_buffer_pages_and_four_table_levels() {
    let mut g = Guest::new();
    let va = 0x12_3400_0000;
    g.map(va, GUEST_DATA, 4 * P, Perm::RW);
    let set = g.collect(va, 4 * P).unwrap();
    let want_buf: Vec<_> = (0..4).map(|i| pp(GUEST_DATA + i * P)).collect();
    assert_eq!(set.buffer, want_buf);
    let want_tables = g.manual_tables(va);
    assert_eq!(want_tables.len(), 4);
    assert_eq!(set.tables, sorted(want_tables));
    assert_eq!(set.bytes(), 8 * P);
    assert_eq!(set.pages().count(), 8);
    // Every table page is inside the guest table region and distinct.
    assert!(set
        .tables
        .iter()
        .all(|t| (GUEST_TABLES..GUEST_DATA).contains(&t.ipa)));
}

#[test]
fn buffer_spanning_two_level3_tables_needs_both() {
    let mut g = Guest::new();
    // Two pages either side of a 2 MiB boundary (same level-2 table).
    let va = 0x20_0000 - 2 * P;
    g.map(va, GUEST_DATA + 0x10_0000, 4 * P, Perm::RW);
    let set = g.collect(va, 4 * P).unwrap();
    let mut want = g.manual_tables(va);
    want.extend(g.manual_tables(va + 3 * P));
    let want = sorted(want);
    assert_eq!(want.len(), 5, "L0, L1, L2 shared; two L3 tables");
    assert_eq!(set.tables, want);
    assert_eq!(set.buffer.len(), 4);
    assert_eq!(set.bytes(), 9 * P);
    // Only the first page: one L3 table.
    assert_eq!(g.collect(va, P).unwrap().tables.len(), 4);
}

#[test]
fn buffer_spanning_a_1gib_boundary_needs_two_l2_and_two_l3() {
    let mut g = Guest::new();
    let va = 0x1_0000_0000 - P;
    g.map(va, GUEST_DATA, 2 * P, Perm::RW);
    let set = g.collect(va, 2 * P).unwrap();
    let mut want = g.manual_tables(va);
    want.extend(g.manual_tables(va + P));
    assert_eq!(set.tables, sorted(want));
    assert_eq!(set.tables.len(), 6);
}

#[test]
fn aliased_buffer_pages_are_pinned_once() {
    let mut g = Guest::new();
    let va = 0x40_0000;
    g.map(va, GUEST_DATA, P, Perm::RW);
    g.map(va + P, GUEST_DATA, P, Perm::RW);
    let set = g.collect(va, 2 * P).unwrap();
    assert_eq!(set.buffer, vec![pp(GUEST_DATA)]);
    assert_eq!(set.bytes(), 5 * P);
}

#[test]
fn table_inside_the_buffer_is_charged_once() {
    let mut g = Guest::new();
    let va = 0x60_0000;
    // Map the buffer onto the guest's own level-0 table page.
    let root = g.s1.root;
    g.map(va, root, P, Perm::RW);
    let set = g.collect(va, P).unwrap();
    assert_eq!(set.buffer, vec![pp(root)]);
    assert!(set.tables.contains(&pp(root)));
    assert_eq!(set.pages().count(), 5);
    assert_eq!(set.bytes(), 4 * P);
}

#[test]
fn unmapped_buffer_page_is_a_stage1_fault() {
    let mut g = Guest::new();
    let va = 0x80_0000;
    g.map(va, GUEST_DATA, P, Perm::RW);
    g.map(va + 2 * P, GUEST_DATA + 2 * P, P, Perm::RW);
    let err = g.collect(va, 3 * P).unwrap_err();
    let f = *err.fault().expect("a fault");
    assert_eq!(
        (f.stage, f.level, f.kind, f.addr, f.s1ptw),
        (1, 3, FaultKind::Translation, va + P, false)
    );
    // Nothing at all mapped in another level-1 region: a fault at level 1.
    let f = *g
        .collect(0x80_0000_0000 - P, P)
        .unwrap_err()
        .fault()
        .unwrap();
    assert_eq!((f.stage, f.kind), (1, FaultKind::Translation));
    assert!(f.level < 3);
}

#[test]
fn read_only_buffer_page_is_a_stage1_permission_fault() {
    let mut g = Guest::new();
    let va = 0xa0_0000;
    g.map(va, GUEST_DATA, P, Perm::RO);
    let f = *g.collect(va, P).unwrap_err().fault().unwrap();
    assert_eq!(
        (f.stage, f.level, f.kind, f.addr),
        (1, 3, FaultKind::Permission, va)
    );
}

#[test]
fn buffer_outside_the_memslots_is_a_stage2_fault() {
    let mut g = Guest::new();
    let va = 0xc0_0000;
    let outside = 0x9000_0000;
    g.map(va, outside, P, Perm::RW);
    let f = *g.collect(va, P).unwrap_err().fault().unwrap();
    assert_eq!(
        (f.stage, f.kind, f.addr, f.s1ptw),
        (2, FaultKind::Translation, outside, false)
    );
}

#[test]
fn stage1_table_outside_the_memslots_is_a_stage2_fault_on_the_walk() {
    let mut g = Guest::new();
    let va = 0xe0_0000;
    g.map(va, GUEST_DATA, P, Perm::RW);
    assert!(g.collect(va, P).is_ok());
    // Point the level-2 descriptor at a level-3 table outside guest RAM.
    let outside = 0x9000_0000;
    let d_pa = g.descriptor_pa(va, 2);
    g.mem
        .write_u64(d_pa, outside | desc::TABLE_OR_PAGE)
        .unwrap();
    let f = *g.collect(va, P).unwrap_err().fault().unwrap();
    let l3_index = (va >> 12) & 0x1ff;
    assert_eq!(
        (f.stage, f.kind, f.addr, f.s1ptw),
        (2, FaultKind::Translation, outside + l3_index * 8, true)
    );
    // A stage-1 root outside guest RAM faults on the very first read.
    let f = *collect(&g.mem, 0x2000_0000, &g.s2(), va, P)
        .unwrap_err()
        .fault()
        .unwrap();
    assert_eq!((f.stage, f.s1ptw, f.addr), (2, true, 0x2000_0000));
}

#[test]
fn write_protected_stage2_page_is_a_stage2_permission_fault() {
    let mut g = Guest::new();
    let va = 0x10_0000;
    g.map(va, GUEST_DATA, P, Perm::RW);
    g.s2t
        .set_perm(&mut g.mem, GUEST_DATA, P, S2Perm::RO)
        .unwrap();
    let f = *g.collect(va, P).unwrap_err().fault().unwrap();
    assert_eq!(
        (f.stage, f.kind, f.addr, f.s1ptw),
        (2, FaultKind::Permission, GUEST_DATA, false)
    );
}

#[test]
fn range_errors_come_before_any_walk() {
    let g = Guest::new();
    // Nothing is mapped at VA 0, but the range errors win.
    assert_eq!(g.collect(0, 0), Err(PinError::Empty));
    assert_eq!(
        g.collect(0x10, P),
        Err(PinError::Unaligned { va: 0x10, len: P })
    );
    assert_eq!(
        g.collect(!0xfff_u64, 2 * P),
        Err(PinError::Overflow {
            va: !0xfff_u64,
            len: 2 * P
        })
    );
    // A VA above the 48-bit TTBR0 range is a stage-1 level-0 fault.
    let f = *g.collect(1 << 48, P).unwrap_err().fault().unwrap();
    assert_eq!((f.stage, f.level, f.kind), (1, 0, FaultKind::Translation));
}

#[test]
fn collect_within_refuses_a_buffer_above_the_max_size_before_walking() {
    let mut g = Guest::new();
    let va = 0x100_0000;
    g.map(va, GUEST_DATA, 4 * P, Perm::RW);
    let too_big = collect_within(&g.mem, g.s1.root, &g.s2(), va, 4 * P, 2 * P);
    assert_eq!(
        too_big,
        Err(PinError::TooLarge {
            len: 4 * P,
            max: 2 * P
        })
    );
    // Even an unmapped, huge range: the size error, not a long walk.
    assert_eq!(
        collect_within(&g.mem, g.s1.root, &g.s2(), 0, 1 << 47, 2 * P),
        Err(PinError::TooLarge {
            len: 1 << 47,
            max: 2 * P
        })
    );
    let ok = collect_within(&g.mem, g.s1.root, &g.s2(), va, 4 * P, 4 * P).unwrap();
    assert_eq!(ok, g.collect(va, 4 * P).unwrap());
    // 0 is "no limit".
    assert!(collect_within(&g.mem, g.s1.root, &g.s2(), va, 4 * P, 0).is_ok());
    // The buffer from PMBPTR's page to the limit.
    let (bva, blen) = buffer_span(va + 0x123, va + 4 * P).unwrap();
    assert_eq!(g.collect(bva, blen).unwrap().buffer.len(), 4);
}

// ---------------------------------------------------------------------------
// pinning collected sets
// ---------------------------------------------------------------------------

#[test]
fn pin_unpin_returns_the_account_to_zero() {
    let mut g = Guest::new();
    let va = 0x200_0000;
    g.map(va, GUEST_DATA, 8 * P, Perm::RW);
    let set = g.collect(va, 8 * P).unwrap();
    let mut acct = Memlock::new(1 << 20);
    let mut v = VcpuPins::new();
    v.pin(set.clone(), &mut acct).unwrap();
    assert_eq!(acct.used(), 12 * P);
    assert_eq!(v.bytes(), 12 * P);
    assert_eq!(v.pinned(), &set);
    assert!(v.contains_pa(slot_pa(GUEST_DATA + 7 * P) + 0x10));
    assert!(v.contains_pa(slot_pa(g.s1.root)));
    assert!(!v.contains_pa(slot_pa(GUEST_DATA + 8 * P)));
    v.unpin(&mut acct);
    assert_eq!(acct.used(), 0);
    assert_eq!(v.bytes(), 0);
    assert!(v.pinned().is_empty());
    // Unpinning twice is harmless.
    v.unpin(&mut acct);
    assert_eq!(acct.used(), 0);
}

#[test]
fn replacing_a_pin_charges_only_the_difference() {
    let mut g = Guest::new();
    let va = 0x200_0000;
    g.map(va, GUEST_DATA, 16 * P, Perm::RW);
    let first = g.collect(va, 8 * P).unwrap(); // 8 + 4 tables
    let moved = g.collect(va + 4 * P, 8 * P).unwrap(); // 4 shared, 4 new
    let mut acct = Memlock::new(13 * P);
    let mut v = VcpuPins::new();
    v.pin(first, &mut acct).unwrap();
    assert_eq!(acct.used(), 12 * P);
    // Would need 16 pages if the shared ones were charged twice (or the old
    // ones kept): with 13 pages of limit it fits.
    v.pin(moved.clone(), &mut acct).unwrap();
    assert_eq!(acct.used(), 12 * P);
    assert!(!v.contains_pa(slot_pa(GUEST_DATA)));
    assert!(v.contains_pa(slot_pa(GUEST_DATA + 11 * P)));
    // Growing by one page charges one page.
    let grown = g.collect(va + 4 * P, 9 * P).unwrap();
    v.pin(grown, &mut acct).unwrap();
    assert_eq!(acct.used(), 13 * P);
    // Re-pinning the same set changes nothing.
    let same = v.pinned().clone();
    v.pin(same, &mut acct).unwrap();
    assert_eq!(acct.used(), 13 * P);
    // Shrinking releases.
    v.pin(moved, &mut acct).unwrap();
    assert_eq!(acct.used(), 12 * P);
}

#[test]
fn rlimit_leaves_state_unchanged_and_carries_the_figures() {
    let mut g = Guest::new();
    let va = 0x200_0000;
    g.map(va, GUEST_DATA, 32 * P, Perm::RW);
    let small = g.collect(va, 2 * P).unwrap(); // 6 pages
    let big = g.collect(va, 32 * P).unwrap(); // 36 pages
    let mut acct = Memlock::new(20 * P);
    acct.charge(3 * P).unwrap(); // someone else in the VM
    let mut v = VcpuPins::new();
    v.pin(small.clone(), &mut acct).unwrap();
    assert_eq!(acct.used(), 9 * P);
    let before = v.clone();
    let err = v.pin(big, &mut acct).unwrap_err();
    assert_eq!(
        err,
        Rlimit {
            needed: 36 * P,
            used: 3 * P,
            limit: 20 * P
        }
    );
    assert_eq!(err.required_limit(), 39 * P);
    assert_eq!(err.shortfall(), 19 * P);
    assert_eq!(v, before);
    assert_eq!(v.pinned(), &small);
    assert_eq!(acct.used(), 9 * P);
    // From nothing pinned too.
    let mut w = VcpuPins::new();
    let err = w
        .pin(g.collect(va, 16 * P).unwrap(), &mut acct)
        .unwrap_err();
    assert_eq!(
        err,
        Rlimit {
            needed: 20 * P,
            used: 9 * P,
            limit: 20 * P
        }
    );
    assert!(!w.is_pinned());
    assert_eq!(acct.used(), 9 * P);
    // Userspace raises the limit to what was asked: now it fits.
    acct.set_limit(err.required_limit()).unwrap();
    w.pin(g.collect(va, 16 * P).unwrap(), &mut acct).unwrap();
    assert_eq!(acct.used(), 29 * P);
    assert_eq!(acct.available(), 0);
}

#[test]
fn shared_pages_are_charged_per_vcpu() {
    let mut g = Guest::new();
    let va = 0x200_0000;
    g.map(va, GUEST_DATA, 4 * P, Perm::RW);
    let set = g.collect(va, 4 * P).unwrap();
    let mut acct = Memlock::new(Memlock::UNLIMITED);
    let mut a = VcpuPins::new();
    let mut b = VcpuPins::new();
    a.pin(set.clone(), &mut acct).unwrap();
    b.pin(set, &mut acct).unwrap();
    assert_eq!(acct.used(), 2 * 8 * P);
    a.unpin(&mut acct);
    assert_eq!(acct.used(), 8 * P);
    assert!(b.contains_pa(slot_pa(GUEST_DATA)));
}

#[test]
fn invalidate_unrelated_range_does_nothing_pinned_page_drops_everything() {
    let mut g = Guest::new();
    let va = 0x200_0000;
    g.map(va, GUEST_DATA, 4 * P, Perm::RW);
    let set = g.collect(va, 4 * P).unwrap();
    let mut acct = Memlock::new(1 << 20);
    let mut a = VcpuPins::new();
    let mut b = VcpuPins::new();
    a.pin(set.clone(), &mut acct).unwrap();
    b.pin(g.collect(va, P).unwrap(), &mut acct).unwrap();
    let used = acct.used();
    assert_eq!(used, 8 * P + 5 * P);
    // Unrelated: the page right after the buffer, and the host stage-2 tables.
    let after = slot_pa(GUEST_DATA + 4 * P);
    assert!(!a.invalidate(after..after + P, &mut acct));
    assert!(!a.invalidate(HOST_TABLES..HOST_TABLES + 0x10_0000, &mut acct));
    assert_eq!(acct.used(), used);
    assert_eq!(a.pinned(), &set);
    // The last buffer page (not shared with b): a drops everything.
    let last = slot_pa(GUEST_DATA + 3 * P);
    assert!(!b.invalidate(last..last + 1, &mut acct));
    assert!(a.invalidate(last + 0x800..last + 0x801, &mut acct));
    assert!(!a.is_pinned());
    assert_eq!(acct.used(), 5 * P);
    assert!(b.is_pinned());
    // A table page (the shared level-0 table) hits b too.
    let root = slot_pa(g.s1.root);
    assert!(b.invalidate(root..root + P, &mut acct));
    assert_eq!(acct.used(), 0);
    // Re-pinning after invalidation works.
    a.pin(set, &mut acct).unwrap();
    assert_eq!(acct.used(), 8 * P);
}

// ---------------------------------------------------------------------------
// properties
// ---------------------------------------------------------------------------

/// Number of VA pages in the proptest region.
const REGION_PAGES: u64 = 96;
/// The region straddles a 1 GiB boundary, so buffers use several level-2
/// and level-3 tables.
const REGION_VA: u64 = 0x1_0000_0000 - 48 * P;

/// What the proptest region maps VA page `i` to, if anything:
/// `Some((ipa, writable))`.
fn region_map(i: u64) -> Option<(u64, bool)> {
    if i % 17 == 5 {
        return None;
    }
    let writable = i % 23 != 7;
    // Pages 80.. alias pages 0..; the others are scattered.
    let slot = if i >= 80 {
        (i - 80) * 37 % 80
    } else {
        i * 37 % 80
    };
    Some((GUEST_DATA + slot * P, writable))
}

fn region_guest() -> Guest {
    let mut g = Guest::new();
    for i in 0..REGION_PAGES {
        if let Some((ipa, w)) = region_map(i) {
            g.map(
                REGION_VA + i * P,
                ipa,
                P,
                if w { Perm::RW } else { Perm::RO },
            );
        }
    }
    g
}

#[derive(Debug, Clone)]
enum Op {
    Pin {
        vcpu: usize,
        start: u64,
        pages: u64,
    },
    Unpin {
        vcpu: usize,
    },
    /// An MMU-notifier event, delivered to every vCPU. `aim` 0: a random
    /// host page of the guest's RAM; 1..=3: one of vCPU `aim - 1`'s pinned
    /// pages (chosen by `page`), if it has any.
    Invalidate {
        aim: usize,
        page: u64,
        len: u64,
    },
    Teardown,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3usize, 0..REGION_PAGES, 1..12u64)
            .prop_map(|(vcpu, start, pages)| Op::Pin { vcpu, start, pages }),
        1 => (0..3usize).prop_map(|vcpu| Op::Unpin { vcpu }),
        2 => (0..4usize, 0..(0x10_0000 / P + 100), 1..(3 * P))
            .prop_map(|(aim, page, len)| Op::Invalidate { aim, page, len }),
        1 => Just(Op::Teardown),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random buffers in a region with holes, read-only pages and aliases:
    /// collect finds exactly the pages a hand model predicts, or the first
    /// fault in address order.
    #[test]
    fn collect_matches_the_mapping(start in 0..REGION_PAGES, pages in 1..20u64) {
        let g = region_guest();
        let va = REGION_VA + start * P;
        let got = g.collect(va, pages * P);
        let mut buffer = Vec::new();
        let mut tables = Vec::new();
        let mut fault = None;
        for i in start..start + pages {
            let pva = REGION_VA + i * P;
            match if i < REGION_PAGES { region_map(i) } else { None } {
                None => { fault = Some((pva, FaultKind::Translation)); break; }
                Some((_, false)) => { fault = Some((pva, FaultKind::Permission)); break; }
                Some((ipa, true)) => {
                    buffer.push(pp(ipa));
                    tables.extend(g.manual_tables(pva));
                }
            }
        }
        match fault {
            Some((addr, kind)) => {
                let f = *got.unwrap_err().fault().unwrap();
                prop_assert_eq!((f.stage, f.addr, f.kind), (1, addr, kind));
            }
            None => {
                let set = got.unwrap();
                prop_assert_eq!(&set.buffer, &sorted(buffer));
                prop_assert_eq!(&set.tables, &sorted(tables));
                prop_assert!(set.bytes() <= (pages + 4 + 2 * pages.div_ceil(512) + 2) * P);
            }
        }
    }

    /// Random pin / unpin / invalidate / teardown sequences over three vCPUs:
    /// the account always equals the sum of what the vCPUs pin and never
    /// exceeds the limit; refusals change nothing.
    #[test]
    fn account_is_the_sum_of_vcpu_pins(
        limit_pages in 0..40u64,
        ops in proptest::collection::vec(op(), 1..40),
    ) {
        let g = region_guest();
        let mut acct = Memlock::new(limit_pages * P);
        let mut vcpus = vec![VcpuPins::new(), VcpuPins::new(), VcpuPins::new()];
        for op in ops {
            match op {
                Op::Pin { vcpu, start, pages } => {
                    let Ok(set) = g.collect(REGION_VA + start * P, pages * P) else {
                        continue;
                    };
                    let before = vcpus[vcpu].clone();
                    let used_before = acct.used();
                    match vcpus[vcpu].pin(set.clone(), &mut acct) {
                        Ok(()) => {
                            prop_assert_eq!(vcpus[vcpu].pinned(), &set);
                            prop_assert_eq!(vcpus[vcpu].bytes(), set.bytes());
                            prop_assert_eq!(
                                acct.used(),
                                used_before - before.bytes() + set.bytes()
                            );
                        }
                        Err(r) => {
                            prop_assert_eq!(&vcpus[vcpu], &before);
                            prop_assert_eq!(acct.used(), used_before);
                            prop_assert!(r.used.saturating_add(r.needed) > r.limit);
                            prop_assert_eq!(r.needed, set.bytes());
                            prop_assert_eq!(r.used, used_before - before.bytes());
                            prop_assert_eq!(r.limit, acct.limit());
                        }
                    }
                }
                Op::Unpin { vcpu } => {
                    vcpus[vcpu].unpin(&mut acct);
                    prop_assert!(!vcpus[vcpu].is_pinned());
                }
                Op::Invalidate { aim, page, len } => {
                    let aimed = aim
                        .checked_sub(1)
                        .and_then(|v| vcpus[v].host_pages().nth(page as usize % 8));
                    // Otherwise host pages of the guest's tables and data.
                    let base = aimed.unwrap_or(HOST_SLOT + page * P);
                    let start = base + (len % P) / 2;
                    let range = start..start + len;
                    for v in &mut vcpus {
                        let before = v.clone();
                        let overlaps = before
                            .host_pages()
                            .any(|p| p < range.end && range.start < p + P);
                        let used_before = acct.used();
                        let hit = v.invalidate(range.clone(), &mut acct);
                        prop_assert_eq!(hit, overlaps);
                        if hit {
                            prop_assert!(!v.is_pinned());
                            prop_assert_eq!(acct.used(), used_before - before.bytes());
                        } else {
                            prop_assert_eq!(&*v, &before);
                            prop_assert_eq!(acct.used(), used_before);
                        }
                    }
                    if aimed.is_some() {
                        prop_assert!(!vcpus[aim - 1].is_pinned());
                    }
                }
                Op::Teardown => {
                    for v in &mut vcpus {
                        v.unpin(&mut acct);
                    }
                    prop_assert_eq!(acct.used(), 0);
                }
            }
            let sum: u64 = vcpus.iter().map(VcpuPins::bytes).sum();
            prop_assert_eq!(acct.used(), sum);
            prop_assert!(acct.used() <= acct.limit());
        }
    }
}
