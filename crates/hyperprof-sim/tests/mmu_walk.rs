//! Single-stage walks: round trips, every fault kind at every level with its
//! FSC, permissions, hand-written block descriptors.

use hyperprof_sim::memory::{FrameAllocator, PhysMem};
use hyperprof_sim::mmu::{
    desc, walk_stage1, walk_stage2, Access, Fault, FaultKind, MapError, Perm, S2Perm, Stage1Params,
    Stage1Tables, Stage2Params, Stage2Tables,
};
use proptest::prelude::*;

const RAM: u64 = 0x8000_0000;
const RAM_SIZE: u64 = 0x400_0000; // 64 MiB
const TABLES: u64 = RAM; // first 4 MiB for tables
const TABLES_SIZE: u64 = 0x40_0000;
const NOT_RAM: u64 = 0x1_0000_0000;

fn setup() -> (PhysMem, FrameAllocator) {
    let mut mem = PhysMem::new();
    mem.add_ram(RAM, RAM_SIZE).unwrap();
    (mem, FrameAllocator::new(TABLES, TABLES_SIZE).unwrap())
}

fn table_desc(next: u64) -> u64 {
    next | desc::TABLE_OR_PAGE
}

fn s1_leaf(oa: u64, block: bool) -> u64 {
    oa | if block {
        desc::BLOCK
    } else {
        desc::TABLE_OR_PAGE
    } | desc::AF
        | desc::SH_INNER
}

/// Hand-built stage-1 tables: root, one table per level below, all linked for
/// VA 0. Returns the table addresses [L0, L1, L2, L3].
fn chain(mem: &mut PhysMem, alloc: &mut FrameAllocator) -> [u64; 4] {
    let t: Vec<u64> = (0..4).map(|_| alloc.alloc(mem).unwrap()).collect();
    for l in 0..3 {
        mem.write_u64(t[l], table_desc(t[l + 1])).unwrap();
    }
    [t[0], t[1], t[2], t[3]]
}

fn expect(r: Result<impl std::fmt::Debug, Fault>, stage: u8, level: u8, kind: FaultKind, fsc: u8) {
    let f = r.expect_err("expected a fault");
    assert_eq!((f.stage, f.level, f.kind), (stage, level, kind), "{f:?}");
    assert_eq!(f.fsc(), fsc, "{f:?}");
    assert!(!f.s1ptw);
}

#[test]
fn s1_translation_fault_at_every_level() {
    let (mut mem, mut alloc) = setup();
    let t = Stage1Tables::new(&mut mem, &mut alloc).unwrap();
    t.map(&mut mem, &mut alloc, 0, RAM + 0x100_0000, 0x1000, Perm::RW)
        .unwrap();
    let r = |va| walk_stage1(&mem, t.root, va, Access::READ);
    assert!(r(0).is_ok());
    expect(r(1 << 39), 1, 0, FaultKind::Translation, 0x04);
    expect(r(1 << 30), 1, 1, FaultKind::Translation, 0x05);
    expect(r(1 << 21), 1, 2, FaultKind::Translation, 0x06);
    expect(r(1 << 12), 1, 3, FaultKind::Translation, 0x07);
    // Beyond the 48-bit TTBR0 range (including TTBR1-half addresses).
    expect(r(1 << 48), 1, 0, FaultKind::Translation, 0x04);
    expect(r(0xffff_0000_0000_0000), 1, 0, FaultKind::Translation, 0x04);
    assert_eq!(r(0x234).unwrap().oa, RAM + 0x100_0234);
}

#[test]
fn s1_invalid_encodings_are_translation_faults() {
    let (mut mem, mut alloc) = setup();
    let [l0, l1, l2, l3] = chain(&mut mem, &mut alloc);
    let r = |mem: &PhysMem| walk_stage1(mem, l0, 0, Access::READ);
    mem.write_u64(l3, s1_leaf(RAM, false)).unwrap();
    assert!(r(&mem).is_ok());
    // Block encoding at level 3 is reserved.
    mem.write_u64(l3, s1_leaf(RAM, true)).unwrap();
    expect(r(&mem), 1, 3, FaultKind::Translation, 0x07);
    // 0b10 is invalid whatever the other bits.
    mem.write_u64(l3, s1_leaf(RAM, false) & !1).unwrap();
    expect(r(&mem), 1, 3, FaultKind::Translation, 0x07);
    // Block at level 0 is not allowed with the 4 KiB granule (no FEAT_LPA2).
    mem.write_u64(l0, s1_leaf(0, true)).unwrap();
    expect(r(&mem), 1, 0, FaultKind::Translation, 0x04);
    // Invalid table descriptor at level 1 and level 2.
    mem.write_u64(l0, table_desc(l1)).unwrap();
    mem.write_u64(l1, table_desc(l2) & !1).unwrap();
    expect(r(&mem), 1, 1, FaultKind::Translation, 0x05);
    mem.write_u64(l1, table_desc(l2)).unwrap();
    mem.write_u64(l2, 0).unwrap();
    expect(r(&mem), 1, 2, FaultKind::Translation, 0x06);
}

#[test]
fn s1_blocks_at_levels_1_and_2() {
    let (mut mem, mut alloc) = setup();
    let [l0, l1, l2, _] = chain(&mut mem, &mut alloc);
    // VA 1 GiB..2 GiB: level-1 block to PA 0x40_0000_0000 (low bits of the
    // OA field below the block size are ignored).
    mem.write_u64(
        l1 + 8,
        s1_leaf(0x40_0000_0000 | 0x1000, true) | desc::S1_AP_EL0,
    )
    .unwrap();
    let w = walk_stage1(&mem, l0, 0x4abc_def0, Access::EL0_WRITE).unwrap();
    assert_eq!(w.oa, 0x40_0abc_def0);
    assert_eq!((w.level, w.block_size()), (1, 1 << 30));
    assert_eq!(w.table_pages(), &[l0, l1]);
    // VA 2 MiB..4 MiB: level-2 block, read-only.
    mem.write_u64(l2 + 8, s1_leaf(0x8060_0000, true) | desc::S1_AP_RO)
        .unwrap();
    let w = walk_stage1(&mem, l0, 0x2f_fff8, Access::READ).unwrap();
    assert_eq!(w.oa, 0x806f_fff8);
    assert_eq!((w.level, w.block_size()), (2, 1 << 21));
    assert_eq!(w.table_pages(), &[l0, l1, l2]);
    expect(
        walk_stage1(&mem, l0, 0x2f_fff8, Access::WRITE),
        1,
        2,
        FaultKind::Permission,
        0x0E,
    );
    // map() refuses to split a block.
    let t = Stage1Tables { root: l0 };
    assert_eq!(
        t.map(&mut mem, &mut alloc, 0x20_0000, RAM, 0x1000, Perm::RW),
        Err(MapError::BlockInTheWay {
            addr: 0x20_0000,
            level: 2
        })
    );
    assert_eq!(
        t.unmap(&mut mem, 0x4000_0000, 0x1000),
        Err(MapError::BlockInTheWay {
            addr: 0x4000_0000,
            level: 1
        })
    );
}

#[test]
fn s1_access_flag_faults() {
    let (mut mem, mut alloc) = setup();
    let [l0, l1, l2, l3] = chain(&mut mem, &mut alloc);
    let no_af = |d: u64| d & !desc::AF;
    mem.write_u64(l1 + 8, no_af(s1_leaf(0x4000_0000, true)))
        .unwrap();
    mem.write_u64(l2 + 8, no_af(s1_leaf(0x20_0000, true)))
        .unwrap();
    mem.write_u64(l3 + 8, no_af(s1_leaf(0x1000, false)))
        .unwrap();
    let r = |va| walk_stage1(&mem, l0, va, Access::READ);
    expect(r(0x4000_0000), 1, 1, FaultKind::AccessFlag, 0x09);
    expect(r(0x20_0000), 1, 2, FaultKind::AccessFlag, 0x0A);
    expect(r(0x1000), 1, 3, FaultKind::AccessFlag, 0x0B);
    // Access flag takes priority over permission.
    mem.write_u64(l3 + 16, no_af(s1_leaf(0x2000, false)) | desc::S1_AP_RO)
        .unwrap();
    expect(
        walk_stage1(&mem, l0, 0x2000, Access::EL0_WRITE),
        1,
        3,
        FaultKind::AccessFlag,
        0x0B,
    );
}

#[test]
fn s1_permissions_ap_and_aptable() {
    let (mut mem, mut alloc) = setup();
    let t = Stage1Tables::new(&mut mem, &mut alloc).unwrap();
    let cases = [
        (Perm::RW, [true, true, false, false]),
        (Perm::RO, [true, false, false, false]),
        (Perm::USER_RW, [true, true, true, true]),
        (Perm::USER_RO, [true, false, true, false]),
    ];
    let accesses = [
        Access::READ,
        Access::WRITE,
        Access::EL0_READ,
        Access::EL0_WRITE,
    ];
    for (i, (perm, allowed)) in cases.iter().enumerate() {
        let va = 0x10_0000 + i as u64 * 0x1000;
        t.map(&mut mem, &mut alloc, va, RAM + 0x200_0000, 0x1000, *perm)
            .unwrap();
        for (acc, ok) in accesses.iter().zip(allowed) {
            let r = walk_stage1(&mem, t.root, va + 8, *acc);
            if *ok {
                assert_eq!(r.unwrap().oa, RAM + 0x200_0008, "{perm:?} {acc:?}");
            } else {
                expect(r, 1, 3, FaultKind::Permission, 0x0F);
            }
        }
    }
    // set_perm changes an existing mapping and keeps the output address.
    t.set_perm(&mut mem, 0x10_0000, 0x1000, Perm::USER_RO)
        .unwrap();
    assert!(walk_stage1(&mem, t.root, 0x10_0000, Access::EL0_READ).is_ok());
    expect(
        walk_stage1(&mem, t.root, 0x10_0000, Access::WRITE),
        1,
        3,
        FaultKind::Permission,
        0x0F,
    );
    assert_eq!(
        t.set_perm(&mut mem, 0x10_0000, 0x10_000, Perm::RW),
        Err(MapError::NotMapped { addr: 0x10_4000 })
    );
    // Nothing changed by the failed set_perm.
    expect(
        walk_stage1(&mem, t.root, 0x10_0000, Access::WRITE),
        1,
        3,
        FaultKind::Permission,
        0x0F,
    );
    // APTable in the level-0 table descriptor restricts everything below.
    let l0 = mem.read_u64(t.root).unwrap();
    mem.write_u64(t.root, l0 | desc::S1_APTABLE_RO).unwrap();
    expect(
        walk_stage1(&mem, t.root, 0x10_2000, Access::EL0_WRITE),
        1,
        3,
        FaultKind::Permission,
        0x0F,
    );
    assert!(walk_stage1(&mem, t.root, 0x10_2000, Access::EL0_READ).is_ok());
    mem.write_u64(t.root, l0 | desc::S1_APTABLE_NO_EL0).unwrap();
    expect(
        walk_stage1(&mem, t.root, 0x10_2000, Access::EL0_READ),
        1,
        3,
        FaultKind::Permission,
        0x0F,
    );
    assert!(walk_stage1(&mem, t.root, 0x10_2000, Access::WRITE).is_ok());
}

#[test]
fn s1_address_size_faults_at_every_level() {
    let (mut mem, mut alloc) = setup();
    let [l0, l1, l2, l3] = chain(&mut mem, &mut alloc);
    let p = Stage1Params {
        root: l0,
        oa_bits: 36,
    };
    let big = 1u64 << 40; // beyond 36 bits
    mem.write_u64(l3, s1_leaf(RAM, false)).unwrap();
    assert!(p.walk(&mem, 0, Access::READ).is_ok());
    // Root (TTBR) beyond the output size: level 0.
    let bad_root = Stage1Params {
        root: big,
        oa_bits: 36,
    };
    expect(
        bad_root.walk(&mem, 0, Access::READ),
        1,
        0,
        FaultKind::AddressSize,
        0x00,
    );
    // Default 48-bit output size: a root above 2^48 is out of range too.
    expect(
        walk_stage1(&mem, 1 << 48, 0, Access::READ),
        1,
        0,
        FaultKind::AddressSize,
        0x00,
    );
    // Next-level table address out of range at levels 0, 1, 2.
    for (level, table, next) in [(0u8, l0, l1), (1, l1, l2), (2, l2, l3)] {
        mem.write_u64(table, table_desc(big | next)).unwrap();
        expect(
            p.walk(&mem, 0, Access::READ),
            1,
            level,
            FaultKind::AddressSize,
            level,
        );
        mem.write_u64(table, table_desc(next)).unwrap();
    }
    // Page output address out of range: level 3.
    mem.write_u64(l3, s1_leaf(big, false)).unwrap();
    expect(
        p.walk(&mem, 0, Access::READ),
        1,
        3,
        FaultKind::AddressSize,
        0x03,
    );
    // Block output addresses out of range: levels 1 and 2.
    mem.write_u64(l1 + 8, s1_leaf(big, true)).unwrap();
    expect(
        p.walk(&mem, 0x4000_0000, Access::READ),
        1,
        1,
        FaultKind::AddressSize,
        0x01,
    );
    mem.write_u64(l2 + 8, s1_leaf(big, true)).unwrap();
    expect(
        p.walk(&mem, 0x20_0000, Access::READ),
        1,
        2,
        FaultKind::AddressSize,
        0x02,
    );
    // Address size is checked before the access flag.
    mem.write_u64(l2 + 8, s1_leaf(big, true) & !desc::AF)
        .unwrap();
    expect(
        p.walk(&mem, 0x20_0000, Access::READ),
        1,
        2,
        FaultKind::AddressSize,
        0x02,
    );
}

#[test]
fn s1_external_abort_on_walk_at_every_level() {
    let (mut mem, mut alloc) = setup();
    let [l0, l1, l2, l3] = chain(&mut mem, &mut alloc);
    mem.write_u64(l3, s1_leaf(RAM, false)).unwrap();
    let r = |mem: &PhysMem, root| walk_stage1(mem, root, 0, Access::READ);
    assert!(r(&mem, l0).is_ok());
    expect(r(&mem, NOT_RAM), 1, 0, FaultKind::ExternalAbort, 0x14);
    for (level, table, next) in [(1u8, l0, l1), (2, l1, l2), (3, l2, l3)] {
        mem.write_u64(table, table_desc(NOT_RAM)).unwrap();
        expect(
            r(&mem, l0),
            1,
            level,
            FaultKind::ExternalAbort,
            0x14 + level,
        );
        mem.write_u64(table, table_desc(next)).unwrap();
    }
    // The final output address is not checked by the walk: the data access
    // itself is what aborts, later.
    mem.write_u64(l3, s1_leaf(NOT_RAM, false)).unwrap();
    assert_eq!(r(&mem, l0).unwrap().oa, NOT_RAM);
}

#[test]
fn s2_faults_at_every_level_start_level_1() {
    let (mut mem, mut alloc) = setup();
    let t = Stage2Tables::new(&mut mem, &mut alloc, 1).unwrap();
    assert_eq!(t.root % 0x2000, 0, "concatenated root is 8 KiB aligned");
    t.map(
        &mut mem,
        &mut alloc,
        0,
        RAM + 0x100_0000,
        0x1000,
        S2Perm::RW,
    )
    .unwrap();
    let root = t.root;
    let r = |mem: &PhysMem, ipa, write| walk_stage2(mem, root, 1, ipa, write);
    let mem_ref = &mem;
    let r0 = |ipa, write| r(mem_ref, ipa, write);
    assert_eq!(r0(0x10, true).unwrap().oa, RAM + 0x100_0010);
    assert_eq!(r0(0, false).unwrap().table_pages().len(), 3);
    expect(r0(1 << 30, false), 2, 1, FaultKind::Translation, 0x05);
    expect(r0(1 << 21, false), 2, 2, FaultKind::Translation, 0x06);
    expect(r0(1 << 12, false), 2, 3, FaultKind::Translation, 0x07);
    // Beyond the 40-bit IPA: level 0 translation fault.
    expect(r0(1 << 40, false), 2, 0, FaultKind::Translation, 0x04);
    // The second concatenated root table serves IPAs with bit 39 set.
    t.map(
        &mut mem,
        &mut alloc,
        0xff_ffff_f000,
        RAM,
        0x1000,
        S2Perm::RO,
    )
    .unwrap();
    let w = r(&mem, 0xff_ffff_f008, false).unwrap();
    assert_eq!(w.oa, RAM + 8);
    assert_eq!(w.table_pages()[0], t.root + 0x1000);
    expect(
        r(&mem, 0xff_ffff_f008, true),
        2,
        3,
        FaultKind::Permission,
        0x0F,
    );
}

#[test]
fn s2_permissions_blocks_access_flag_address_size_and_abort() {
    let (mut mem, mut alloc) = setup();
    let t = Stage2Tables::new(&mut mem, &mut alloc, 1).unwrap();
    for (i, perm) in [S2Perm::NONE, S2Perm::RO, S2Perm::WO, S2Perm::RW]
        .into_iter()
        .enumerate()
    {
        let ipa = i as u64 * 0x1000;
        t.map(&mut mem, &mut alloc, ipa, RAM, 0x1000, perm).unwrap();
        for write in [false, true] {
            let r = walk_stage2(&mem, t.root, 1, ipa, write);
            let allowed = if write { perm.write } else { perm.read };
            if allowed {
                assert_eq!(r.unwrap().oa, RAM);
            } else {
                expect(r, 2, 3, FaultKind::Permission, 0x0F);
            }
        }
    }
    // Hand-written blocks: level 1 at IPA 1 GiB, level 2 at IPA 2 MiB.
    let root = t.root;
    let l2 = mem.read_u64(root).unwrap() & desc::OA_MASK;
    let l3 = mem.read_u64(l2).unwrap() & desc::OA_MASK;
    let blk = |oa: u64, s2ap: u64| oa | desc::BLOCK | desc::AF | s2ap;
    mem.write_u64(root + 8, blk(0x1_4000_0000, desc::S2AP_READ))
        .unwrap();
    mem.write_u64(l2 + 8, blk(0x1_0020_0000, desc::S2AP_WRITE))
        .unwrap();
    let w = walk_stage2(&mem, root, 1, 0x4123_4567, false).unwrap();
    assert_eq!((w.oa, w.level, w.block_size()), (0x1_4123_4567, 1, 1 << 30));
    expect(
        walk_stage2(&mem, root, 1, 0x4123_4567, true),
        2,
        1,
        FaultKind::Permission,
        0x0D,
    );
    let w = walk_stage2(&mem, root, 1, 0x3f_ffff, true).unwrap();
    assert_eq!((w.oa, w.level), (0x1_003f_ffff, 2));
    expect(
        walk_stage2(&mem, root, 1, 0x3f_ffff, false),
        2,
        2,
        FaultKind::Permission,
        0x0E,
    );
    // Access flag at levels 1, 2, 3.
    let clear_af = |mem: &mut PhysMem, a: u64| {
        let d = mem.read_u64(a).unwrap();
        mem.write_u64(a, d & !desc::AF).unwrap();
    };
    clear_af(&mut mem, root + 8);
    clear_af(&mut mem, l2 + 8);
    clear_af(&mut mem, l3 + 8 * 3);
    expect(
        walk_stage2(&mem, root, 1, 0x4000_0000, false),
        2,
        1,
        FaultKind::AccessFlag,
        0x09,
    );
    expect(
        walk_stage2(&mem, root, 1, 0x20_0000, true),
        2,
        2,
        FaultKind::AccessFlag,
        0x0A,
    );
    expect(
        walk_stage2(&mem, root, 1, 0x3000, true),
        2,
        3,
        FaultKind::AccessFlag,
        0x0B,
    );
    // Address size with a 36-bit PA: the level-1 block at 0x1_4000_0000 fits,
    // a page at 2^40 does not.
    mem.write_u64(
        l3 + 8 * 3,
        RAM | (1 << 40) | desc::TABLE_OR_PAGE | desc::AF | desc::S2AP_READ,
    )
    .unwrap();
    let p = Stage2Params {
        oa_bits: 36,
        ..Stage2Params::new(root, 1)
    };
    expect(
        p.walk(&mem, 0x3000, false),
        2,
        3,
        FaultKind::AddressSize,
        0x03,
    );
    let p40 = Stage2Params { root: 1 << 40, ..p };
    expect(
        p40.walk(&mem, 0x3000, false),
        2,
        0,
        FaultKind::AddressSize,
        0x00,
    );
    // External abort: the level-2 table pointer leads outside RAM.
    let saved = mem.read_u64(root).unwrap();
    mem.write_u64(root, NOT_RAM | desc::TABLE_OR_PAGE).unwrap();
    expect(
        walk_stage2(&mem, root, 1, 0, false),
        2,
        2,
        FaultKind::ExternalAbort,
        0x16,
    );
    mem.write_u64(root, saved).unwrap();
    expect(
        walk_stage2(&mem, NOT_RAM, 1, 0, false),
        2,
        1,
        FaultKind::ExternalAbort,
        0x15,
    );
}

#[test]
fn s2_start_level_0() {
    let (mut mem, mut alloc) = setup();
    let t = Stage2Tables::new(&mut mem, &mut alloc, 0).unwrap();
    assert_eq!(t.params().root_frames(), Some(1));
    t.map(
        &mut mem,
        &mut alloc,
        0x80_0000_0000,
        RAM + 0x5000,
        0x2000,
        S2Perm::RW,
    )
    .unwrap();
    let w = t.walk(&mem, 0x80_0000_1004, true).unwrap();
    assert_eq!(w.oa, RAM + 0x6004);
    assert_eq!(w.table_pages().len(), 4);
    // Entry 1 of the level-0 table is used for bit 39.
    assert_ne!(mem.read_u64(t.root + 8).unwrap(), 0);
    expect(t.walk(&mem, 0, false), 2, 0, FaultKind::Translation, 0x04);
    expect(
        t.walk(&mem, 1 << 40, false),
        2,
        0,
        FaultKind::Translation,
        0x04,
    );
    // Same IPAs walked as start level 1 tables would be inconsistent data,
    // but never a panic.
    let _ = walk_stage2(&mem, t.root, 1, 0x80_0000_1004, true);
}

#[test]
fn unmap_counts_and_removes() {
    let (mut mem, mut alloc) = setup();
    let t = Stage1Tables::new(&mut mem, &mut alloc).unwrap();
    t.map(
        &mut mem,
        &mut alloc,
        0x40_0000,
        RAM + 0x100_0000,
        0x8000,
        Perm::RW,
    )
    .unwrap();
    assert_eq!(t.unmap(&mut mem, 0x40_2000, 0x10000).unwrap(), 6);
    assert!(walk_stage1(&mem, t.root, 0x40_1fff, Access::READ).is_ok());
    expect(
        walk_stage1(&mem, t.root, 0x40_2000, Access::READ),
        1,
        3,
        FaultKind::Translation,
        0x07,
    );
    assert_eq!(t.unmap(&mut mem, 0x40_2000, 0x10000).unwrap(), 0);
    // Re-map after unmap with a different PA is fine.
    t.map(
        &mut mem,
        &mut alloc,
        0x40_2000,
        RAM + 0x180_0000,
        0x1000,
        Perm::RO,
    )
    .unwrap();
    assert_eq!(
        walk_stage1(&mem, t.root, 0x40_2010, Access::READ)
            .unwrap()
            .oa,
        RAM + 0x180_0010
    );
}

#[test]
fn walk_does_not_allocate_or_write() {
    let (mut mem, mut alloc) = setup();
    let t = Stage1Tables::new(&mut mem, &mut alloc).unwrap();
    t.map(&mut mem, &mut alloc, 0, RAM + 0x100_0000, 0x1000, Perm::RW)
        .unwrap();
    let before = mem.touched_pages();
    for va in [0u64, 0x1000, 1 << 39, 1 << 47] {
        let _ = walk_stage1(&mem, t.root, va, Access::WRITE);
    }
    assert_eq!(mem.touched_pages(), before);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Map many random pages, then every walk gives back the right PA and
    /// permissions, and unmapped pages fault.
    #[test]
    fn random_pages_round_trip(
        pages in proptest::collection::btree_map(0u64..(1u64 << 36), (0u64..0x3000, 0u8..4), 1..200),
        probes in proptest::collection::vec(0u64..(1u64 << 36), 0..50),
    ) {
        let (mut mem, mut alloc) = setup();
        let t = Stage1Tables::new(&mut mem, &mut alloc).unwrap();
        let perms = [Perm::RW, Perm::RO, Perm::USER_RW, Perm::USER_RO];
        for (&vpn, &(pfn, p)) in &pages {
            // Spread VPNs over the whole 48-bit space.
            let va = vpn << 12;
            let pa = RAM + 0x40_0000 + (pfn << 12);
            t.map(&mut mem, &mut alloc, va, pa, 0x1000, perms[usize::from(p)]).unwrap();
        }
        for (&vpn, &(pfn, p)) in &pages {
            let va = (vpn << 12) | 0xabc;
            let perm = perms[usize::from(p)];
            let w = walk_stage1(&mem, t.root, va, Access::READ).unwrap();
            prop_assert_eq!(w.oa, RAM + 0x40_0000 + (pfn << 12) + 0xabc);
            prop_assert_eq!(w.level, 3);
            prop_assert_eq!(w.table_pages().len(), 4);
            prop_assert_eq!(w.table_pages()[0], t.root);
            prop_assert_eq!(walk_stage1(&mem, t.root, va, Access::WRITE).is_ok(), perm.write);
            prop_assert_eq!(walk_stage1(&mem, t.root, va, Access::EL0_READ).is_ok(), perm.el0);
        }
        for vpn in probes {
            let r = walk_stage1(&mem, t.root, vpn << 12, Access::READ);
            if pages.contains_key(&vpn) {
                prop_assert!(r.is_ok());
            } else {
                prop_assert_eq!(r.unwrap_err().kind, FaultKind::Translation);
            }
        }
        // Unmap every other page; the rest still translate.
        for (i, &vpn) in pages.keys().enumerate() {
            if i % 2 == 0 {
                prop_assert_eq!(t.unmap(&mut mem, vpn << 12, 0x1000).unwrap(), 1);
            }
        }
        for (i, (&vpn, &(pfn, _))) in pages.iter().enumerate() {
            let r = walk_stage1(&mem, t.root, vpn << 12, Access::READ);
            if i % 2 == 0 {
                prop_assert_eq!(r.unwrap_err().fsc(), 0x07);
            } else {
                prop_assert_eq!(r.unwrap().oa, RAM + 0x40_0000 + (pfn << 12));
            }
        }
    }

    /// Stage-2 round trip over the 40-bit IPA space with both start levels.
    #[test]
    fn random_s2_pages_round_trip(
        pages in proptest::collection::btree_map(0u64..(1u64 << 28), 0u64..0x3000, 1..100),
        start_level in 0u8..2,
    ) {
        let (mut mem, mut alloc) = setup();
        let t = Stage2Tables::new(&mut mem, &mut alloc, start_level).unwrap();
        for (&ipn, &pfn) in &pages {
            t.map(&mut mem, &mut alloc, ipn << 12, RAM + 0x40_0000 + (pfn << 12), 0x1000, S2Perm::RW).unwrap();
        }
        for (&ipn, &pfn) in &pages {
            let w = walk_stage2(&mem, t.root, start_level, (ipn << 12) + 0x7f8, true).unwrap();
            prop_assert_eq!(w.oa, RAM + 0x40_0000 + (pfn << 12) + 0x7f8);
            prop_assert_eq!(w.table_pages().len(), 4 - usize::from(start_level));
        }
    }

    /// Walks never panic, whatever the table contents and addresses.
    #[test]
    fn arbitrary_tables_never_panic(
        words in proptest::collection::vec(any::<u64>(), 1..64),
        va in any::<u64>(),
        root_off in 0u64..0x2000,
        sl in 0u8..4,
        ipa_bits in 0u8..70,
        oa_bits in 0u8..70,
        write in any::<bool>(),
        el0 in any::<bool>(),
    ) {
        let (mut mem, _) = setup();
        // Scatter the words as descriptors at the start of several pages,
        // with output addresses pointing back into those pages sometimes.
        for (i, w) in words.iter().enumerate() {
            let page = RAM + (i as u64 % 4) * 0x1000;
            let d = if w & 0x100 != 0 { (w & !desc::OA_MASK) | (RAM + (w >> 60) * 0x1000) } else { *w };
            mem.write_u64(page + (w >> 3 & 0x1ff) * 8, d).unwrap();
        }
        let root = RAM + root_off;
        let acc = Access { write, el0 };
        let _ = Stage1Params { root, oa_bits }.walk(&mem, va, acc);
        let s2 = Stage2Params { root, start_level: sl, ipa_bits, oa_bits };
        let _ = s2.walk(&mem, va, write);
        let tr = hyperprof_sim::mmu::Translation { s1: Stage1Params::new(root), s2: Some(s2) };
        if let Err(f) = tr.translate(&mem, va, acc) {
            prop_assert!(f.level <= 3);
            prop_assert!(f.stage == 1 || f.stage == 2);
        }
    }
}
