//! Two-stage translation for a guest: stage-1 tables built by the guest in
//! its IPA space, stage-2 faults on stage-1 table pages, priorities,
//! determinism.

use hyperprof_sim::memory::{FrameAllocator, MemError, PhysMem, TableMemory};
use hyperprof_sim::mmu::{
    translate_two_stage, walk_stage1, Access, FaultKind, GuestPhysMem, Perm, S2Perm, Stage1Params,
    Stage1Tables, Stage2Params, Stage2Tables, TablePage, Translation, Walk2,
};

const HOST_RAM: u64 = 0x8000_0000;
const HOST_RAM_SIZE: u64 = 0x800_0000; // 128 MiB
const GUEST_IPA: u64 = 0x4000_0000; // guest RAM at 1 GiB IPA
const GUEST_SIZE: u64 = 0x100_0000; // 16 MiB
const GUEST_PA: u64 = 0x8400_0000; // host PA backing guest RAM
const GUEST_TABLES: u64 = GUEST_IPA; // guest page tables: first 1 MiB of guest RAM
const BUF_VA: u64 = 0x7f_0000_0000;
const BUF_IPA: u64 = GUEST_IPA + 0x80_0000;
const BUF_PAGES: u64 = 4;

struct Vm {
    mem: PhysMem,
    host_alloc: FrameAllocator,
    s2: Stage2Tables,
    s1: Stage1Tables,
}

impl Vm {
    fn tr(&self) -> Translation {
        Translation {
            s1: self.s1.params(),
            s2: Some(self.s2.params()),
        }
    }
    fn translate(&self, va: u64, access: Access) -> Result<Walk2, hyperprof_sim::mmu::Fault> {
        translate_two_stage(
            &self.mem,
            self.s1.root,
            Some((self.s2.root, self.s2.start_level)),
            va,
            access,
        )
    }
    fn ipa_to_pa(ipa: u64) -> u64 {
        ipa - GUEST_IPA + GUEST_PA
    }
}

fn vm(start_level: u8) -> Vm {
    let mut mem = PhysMem::new();
    mem.add_ram(HOST_RAM, HOST_RAM_SIZE).unwrap();
    let mut host_alloc = FrameAllocator::new(HOST_RAM, 0x40_0000).unwrap();
    let s2 = Stage2Tables::new(&mut mem, &mut host_alloc, start_level).unwrap();
    s2.map(
        &mut mem,
        &mut host_alloc,
        GUEST_IPA,
        GUEST_PA,
        GUEST_SIZE,
        S2Perm::RW,
    )
    .unwrap();
    // The guest builds its own stage-1 tables at IPAs, through stage 2.
    let mut guest_alloc = FrameAllocator::new(GUEST_TABLES, 0x10_0000).unwrap();
    let mut gmem = GuestPhysMem::new(&mut mem, s2.params());
    let s1 = Stage1Tables::new(&mut gmem, &mut guest_alloc).unwrap();
    s1.map(
        &mut gmem,
        &mut guest_alloc,
        BUF_VA,
        BUF_IPA,
        BUF_PAGES * 0x1000,
        Perm::RW,
    )
    .unwrap();
    s1.map(
        &mut gmem,
        &mut guest_alloc,
        0x1000,
        GUEST_IPA + 0x20_0000,
        0x1000,
        Perm::USER_RO,
    )
    .unwrap();
    Vm {
        mem,
        host_alloc,
        s2,
        s1,
    }
}

#[test]
fn guest_tables_live_in_guest_memory_and_translate() {
    for sl in [0u8, 1] {
        let v = vm(sl);
        let w = v.translate(BUF_VA + 0x1234, Access::WRITE).unwrap();
        assert_eq!(w.ipa, BUF_IPA + 0x1234);
        assert_eq!(w.pa, Vm::ipa_to_pa(BUF_IPA + 0x1234));
        assert_eq!((w.s1_level, w.s2_level), (3, Some(3)));
        let pages = w.s1_table_pages();
        assert_eq!(pages.len(), 4);
        assert_eq!(pages[0].ipa, v.s1.root);
        for p in pages {
            assert!(
                p.ipa >= GUEST_TABLES && p.ipa < GUEST_TABLES + 0x10_0000,
                "{p:?}"
            );
            assert_eq!(p.pa, Vm::ipa_to_pa(p.ipa), "{p:?}");
        }
        // The guest's root really is at the host PA stage 2 gives for it:
        // walking it as host stage-1 tables fails (its table pointers are
        // IPAs, which are not host RAM), proving the two-stage walk
        // translated every descriptor address.
        let host_view = walk_stage1(&v.mem, Vm::ipa_to_pa(v.s1.root), BUF_VA, Access::READ);
        let f = host_view.unwrap_err();
        assert_eq!((f.kind, f.level), (FaultKind::ExternalAbort, 1));
    }
}

#[test]
fn stage1_permission_and_translation_faults_in_guest() {
    let v = vm(1);
    let f = v.translate(0x1000, Access::EL0_WRITE).unwrap_err();
    assert_eq!(
        (f.stage, f.level, f.kind, f.fsc()),
        (1, 3, FaultKind::Permission, 0x0F)
    );
    assert!(!f.s1ptw);
    assert_eq!(f.addr, 0x1000);
    assert!(v.translate(0x1000, Access::EL0_READ).is_ok());
    let f = v.translate(0x2000, Access::READ).unwrap_err();
    assert_eq!((f.stage, f.level, f.fsc()), (1, 3, 0x07));
    let f = v.translate(1 << 48, Access::READ).unwrap_err();
    assert_eq!((f.stage, f.level, f.fsc()), (1, 0, 0x04));
}

#[test]
fn stage2_fault_on_stage1_table_page_is_a_stage2_fault() {
    let mut v = vm(1);
    let w = v.translate(BUF_VA, Access::WRITE).unwrap();
    let pages: Vec<TablePage> = w.s1_table_pages().to_vec();
    // Remove the stage-2 mapping of each stage-1 table page in turn.
    for (level, page) in pages.iter().enumerate() {
        assert_eq!(v.s2.unmap(&mut v.mem, page.ipa, 0x1000).unwrap(), 1);
        let f = v.translate(BUF_VA, Access::WRITE).unwrap_err();
        assert_eq!(f.stage, 2, "level {level}: {f:?}");
        assert!(f.s1ptw, "{f:?}");
        assert_eq!(
            (f.kind, f.level, f.fsc()),
            (FaultKind::Translation, 3, 0x07)
        );
        // The reported address is the IPA of the stage-1 descriptor.
        assert_eq!(f.addr & !0xfff, page.ipa);
        v.s2.map(
            &mut v.mem,
            &mut v.host_alloc,
            page.ipa,
            page.pa,
            0x1000,
            S2Perm::RW,
        )
        .unwrap();
        assert_eq!(v.translate(BUF_VA, Access::WRITE).unwrap(), w);
    }
    // A stage-1 table page that stage 2 makes write-only (not readable):
    // the walk's read of it is a stage-2 permission fault.
    v.s2.set_perm(&mut v.mem, pages[2].ipa, 0x1000, S2Perm::WO)
        .unwrap();
    let f = v.translate(BUF_VA, Access::READ).unwrap_err();
    assert_eq!(
        (f.stage, f.kind, f.fsc(), f.s1ptw),
        (2, FaultKind::Permission, 0x0F, true)
    );
    // Read-only is enough for the walker (it never writes descriptors).
    v.s2.set_perm(&mut v.mem, pages[2].ipa, 0x1000, S2Perm::RO)
        .unwrap();
    assert_eq!(v.translate(BUF_VA, Access::WRITE).unwrap(), w);
}

#[test]
fn stage2_fault_on_final_access() {
    let mut v = vm(1);
    v.s2.set_perm(&mut v.mem, BUF_IPA + 0x1000, 0x1000, S2Perm::RO)
        .unwrap();
    assert!(v.translate(BUF_VA + 0x1000, Access::READ).is_ok());
    let f = v.translate(BUF_VA + 0x1008, Access::WRITE).unwrap_err();
    assert_eq!(
        (f.stage, f.level, f.kind, f.s1ptw),
        (2, 3, FaultKind::Permission, false)
    );
    assert_eq!(f.addr, BUF_IPA + 0x1008);
    v.s2.unmap(&mut v.mem, BUF_IPA + 0x2000, 0x1000).unwrap();
    let f = v.translate(BUF_VA + 0x2000, Access::READ).unwrap_err();
    assert_eq!((f.stage, f.fsc(), f.s1ptw), (2, 0x07, false));
    assert_eq!(f.addr, BUF_IPA + 0x2000);
}

#[test]
fn stage1_fault_has_priority_over_stage2_fault_of_output() {
    let mut v = vm(1);
    // Page 0x1000 is EL0 read-only at stage 1 and its IPA is unmapped at stage 2.
    v.s2.unmap(&mut v.mem, GUEST_IPA + 0x20_0000, 0x1000)
        .unwrap();
    let f = v.translate(0x1000, Access::EL0_WRITE).unwrap_err();
    assert_eq!((f.stage, f.kind), (1, FaultKind::Permission));
    let f = v.translate(0x1000, Access::EL0_READ).unwrap_err();
    assert_eq!((f.stage, f.kind), (2, FaultKind::Translation));
}

#[test]
fn stage1_table_outside_ram_is_stage1_external_abort() {
    let mut v = vm(1);
    let w = v.translate(BUF_VA, Access::READ).unwrap();
    let l3 = w.s1_table_pages()[3];
    // Stage 2 maps the IPA of the guest's level-3 table to a PA that is not RAM.
    v.s2.unmap(&mut v.mem, l3.ipa, 0x1000).unwrap();
    v.s2.map(
        &mut v.mem,
        &mut v.host_alloc,
        l3.ipa,
        0x10_0000_0000,
        0x1000,
        S2Perm::RW,
    )
    .unwrap();
    let f = v.translate(BUF_VA, Access::READ).unwrap_err();
    assert_eq!(
        (f.stage, f.level, f.kind, f.fsc(), f.s1ptw),
        (1, 3, FaultKind::ExternalAbort, 0x17, false)
    );
    assert_eq!(f.addr, BUF_VA);
}

#[test]
fn stage2_walk_abort_during_stage1_walk() {
    let mut v = vm(1);
    // Point the stage-2 root entry for guest RAM at a non-RAM table.
    let idx = (GUEST_IPA >> 30) & 0x3ff;
    let slot = v.s2.root + idx * 8;
    let saved = v.mem.read_u64(slot).unwrap();
    v.mem.write_u64(slot, 0x10_0000_0000 | 0b11).unwrap();
    let f = v.translate(BUF_VA, Access::READ).unwrap_err();
    assert_eq!(
        (f.stage, f.level, f.kind, f.fsc(), f.s1ptw),
        (2, 2, FaultKind::ExternalAbort, 0x16, true)
    );
    assert_eq!(f.addr, v.s1.root);
    v.mem.write_u64(slot, saved).unwrap();
    assert!(v.translate(BUF_VA, Access::READ).is_ok());
}

#[test]
fn stage2_address_size_fault_on_stage1_table() {
    let v = vm(1);
    let mut tr = v.tr();
    // A 31-bit stage-2 output size cannot hold the host PAs used here: the
    // first stage-2 walk, the one for the stage-1 root descriptor, fails with
    // an address size fault.
    tr.s2 = Some(Stage2Params {
        oa_bits: 31,
        ..v.s2.params()
    });
    let f = tr.translate(&v.mem, BUF_VA, Access::READ).unwrap_err();
    assert_eq!(
        (f.stage, f.kind, f.s1ptw),
        (2, FaultKind::AddressSize, true)
    );
    // Host tables are at 0x8000_0000 which is beyond 31 bits: the VTTBR itself.
    assert_eq!((f.level, f.fsc()), (0, 0x00));
    // Stage-1 output size: 30-bit IPS cannot hold the guest's table IPAs.
    let mut tr = v.tr();
    tr.s1 = Stage1Params {
        oa_bits: 30,
        ..tr.s1
    };
    let f = tr.translate(&v.mem, BUF_VA, Access::READ).unwrap_err();
    assert_eq!((f.stage, f.level, f.kind), (1, 0, FaultKind::AddressSize));
}

#[test]
fn no_stage2_is_plain_stage1() {
    let mut mem = PhysMem::new();
    mem.add_ram(HOST_RAM, HOST_RAM_SIZE).unwrap();
    let mut alloc = FrameAllocator::new(HOST_RAM, 0x10_0000).unwrap();
    let s1 = Stage1Tables::new(&mut mem, &mut alloc).unwrap();
    s1.map(
        &mut mem,
        &mut alloc,
        BUF_VA,
        HOST_RAM + 0x20_0000,
        0x3000,
        Perm::RW,
    )
    .unwrap();
    let a = translate_two_stage(&mem, s1.root, None, BUF_VA + 0x2010, Access::WRITE).unwrap();
    let b = walk_stage1(&mem, s1.root, BUF_VA + 0x2010, Access::WRITE).unwrap();
    assert_eq!((a.pa, a.ipa, a.s2_level), (b.oa, b.oa, None));
    let pas: Vec<u64> = a.s1_table_pages().iter().map(|p| p.pa).collect();
    assert_eq!(pas, b.table_pages());
    assert!(a.s1_table_pages().iter().all(|p| p.ipa == p.pa));
}

#[test]
fn guest_phys_mem_checks_stage2() {
    let mut v = vm(1);
    let s2 = v.s2.params();
    let mut g = GuestPhysMem::new(&mut v.mem, s2);
    g.write_u64(GUEST_IPA + 0x30_0ffc, 0x1122_3344_5566_7788)
        .unwrap();
    assert_eq!(
        g.read_u64(GUEST_IPA + 0x30_0ffc).unwrap(),
        0x1122_3344_5566_7788
    );
    assert_eq!(
        v.mem
            .read_u64(Vm::ipa_to_pa(GUEST_IPA + 0x30_0ffc))
            .unwrap(),
        0x1122_3344_5566_7788
    );
    // A write spanning the end of guest RAM does nothing.
    let mut g = GuestPhysMem::new(&mut v.mem, s2);
    let end = GUEST_IPA + GUEST_SIZE;
    assert_eq!(
        g.write(end - 4, &[9u8; 8]),
        Err(MemError::NotMapped { addr: end })
    );
    let mut back = [0u8; 4];
    g.read(end - 4, &mut back).unwrap();
    assert_eq!(back, [0; 4]);
    // Read-only at stage 2: reads work, writes are refused.
    v.s2.set_perm(&mut v.mem, GUEST_IPA + 0x30_0000, 0x1000, S2Perm::RO)
        .unwrap();
    let mut g = GuestPhysMem::new(&mut v.mem, s2);
    assert!(g.read_u64(GUEST_IPA + 0x30_0000).is_ok());
    assert_eq!(
        g.write_u64(GUEST_IPA + 0x30_0000, 1),
        Err(MemError::NotMapped {
            addr: GUEST_IPA + 0x30_0000
        })
    );
    assert_eq!(
        g.translate(GUEST_IPA + 0x30_0010, false),
        Ok(Vm::ipa_to_pa(GUEST_IPA + 0x30_0010))
    );
}

/// Build the same machine twice: identical memory contents and results.
#[test]
fn determinism() {
    let snapshot = |v: &Vm| {
        let mut bytes = vec![0u8; 0x40_0000];
        v.mem.read(HOST_RAM, &mut bytes).unwrap();
        let mut guest = vec![0u8; 0x10_0000];
        v.mem.read(GUEST_PA, &mut guest).unwrap();
        let walks: Vec<String> = (0..BUF_PAGES + 2)
            .map(|i| format!("{:?}", v.translate(BUF_VA + i * 0x1000, Access::WRITE)))
            .collect();
        (bytes, guest, walks, v.mem.touched_pages())
    };
    let a = snapshot(&vm(1));
    let b = snapshot(&vm(1));
    assert!(a == b, "two identical builds differ");
    assert!(a.0.iter().any(|&x| x != 0), "tables were written");
    assert!(a.2[0].starts_with("Ok("));
    assert!(a.2[BUF_PAGES as usize].starts_with("Err("));
}
