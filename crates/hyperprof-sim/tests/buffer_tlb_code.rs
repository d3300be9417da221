//! The SPE unit's translation cache under real code: a guest kernel that
//! rewrites the descriptor of its profiling buffer's page and follows the
//! architecture's sequence (DSB, TLBI VMALLE1, DSB, ISB) has its next
//! records at the new page; the unit's entry for the old one went with the
//! TLBI.

use hyperprof_arch::{mdcr_el2, pmblimitr_el1, pmscr_el1, Cpu, ExceptionLevel, PmuVer, SysReg};
use hyperprof_sim::machine::{Machine, MachineConfig};
use hyperprof_sim::memory::{FrameAllocator, PAGE_SIZE};
use hyperprof_sim::mmu::{Access, Perm, Stage1Tables};
use hyperprof_sim::pe::{CodeContext, CodeStop, PeConfig};
use hyperprof_sim::pmu::PmuConfig;
use hyperprof_sim::spe::SpeConfig;
use hyperprof_spe::RecordDecoder;

const RAM: u64 = 0x4000_0000;
const CODE: u64 = RAM + 0x8_0000;
const BUF_VA: u64 = 0x0000_0040_0000_0000;
const PA_A: u64 = RAM + 0x20_0000;
const PA_B: u64 = RAM + 0x30_0000;
const OA: u64 = 0x0000_FFFF_FFFF_F000;

fn machine() -> Machine {
    Machine::new(&MachineConfig {
        pes: vec![PeConfig {
            pmu: PmuConfig {
                counters: 6,
                version: PmuVer::V3p5,
                hpmn0: true,
                el2_implemented: true,
            },
            spe: Some(SpeConfig::default()),
            fgt: true,
            uarch: Default::default(),
        }],
        ram_base: RAM,
        ram_size: 128 << 20,
    })
    .unwrap()
}

fn page(m: &Machine, pa: u64) -> Vec<u8> {
    let mut b = vec![0u8; PAGE_SIZE as usize];
    m.mem.read(pa, &mut b).unwrap();
    b
}

#[test]
fn a_tlbi_after_remapping_the_buffer_reaches_the_units_cache() {
    let mut m = machine();
    let mut alloc = FrameAllocator::new(RAM + 0x100_0000, 1 << 20).unwrap();
    let t = Stage1Tables::new(&mut m.mem, &mut alloc).unwrap();
    t.map(&mut m.mem, &mut alloc, BUF_VA, PA_A, PAGE_SIZE, Perm::RW)
        .unwrap();
    let walk = t.walk(&m.mem, BUF_VA, Access::WRITE).unwrap();
    let leaf = *walk.table_pages().last().unwrap() + (BUF_VA >> 12 & 511) * 8;
    let to_b = (m.mem.read_u64(leaf).unwrap() & !OA) | PA_B;
    // The hypervisor hands the buffer to EL1 and the kernel's session is
    // on before the code runs; the ISB lets the unit walk its pointer
    // (BUF_VA to PA_A) into its cache.
    {
        let mut c = m.cpu(0).unwrap();
        let mdcr = c.read(SysReg::MDCR_EL2).unwrap();
        let mdcr = mdcr_el2::E2PB.set(mdcr, mdcr_el2::E2PB_EL1);
        c.write(SysReg::MDCR_EL2, mdcr).unwrap();
        c.write(SysReg::TTBR0_EL1, t.root).unwrap();
        c.write(SysReg::PMSIRR_EL1, 1024).unwrap();
        c.write(SysReg::PMSCR_EL1, pmscr_el1::E1SPE.mask()).unwrap();
        c.write(SysReg::PMBPTR_EL1, BUF_VA).unwrap();
        let limit = (BUF_VA + PAGE_SIZE) | pmblimitr_el1::E.mask();
        c.write(SysReg::PMBLIMITR_EL1, limit).unwrap();
        c.isb();
    }
    assert!(!m.pe(0).unwrap().buffer_tlb().is_empty());
    let code: [u32; 13] = [
        0xF900_0149, // str x9, [x10]   the buffer's page is now PA_B
        0xD503_3B9F, // dsb ish
        0xD508_871F, // tlbi vmalle1
        0xD503_3B9F, // dsb ish
        0xD503_3FDF, // isb
        0xF940_0001, // 1: ldr x1, [x0]
        0xF100_0442, // subs x2, x2, #1
        0x54FF_FFC1, // b.ne 1b
        0xD503_223F, // psb csync
        0xD503_379F, // dsb nsh
        0xD400_0002, // hvc #0
        0,
        0,
    ];
    let bytes: Vec<u8> = code.iter().flat_map(|w| w.to_le_bytes()).collect();
    m.mem.write(CODE, &bytes).unwrap();
    let mut ctx = CodeContext::new(CODE, 0);
    ctx.cpu.set_x(0, CODE);
    ctx.cpu.set_x(2, 5_000);
    ctx.cpu.set_x(9, to_b);
    ctx.cpu.set_x(10, leaf);
    let mut done = 0;
    let stop = m.run_code(0, &mut ctx, 100_000, &mut done).unwrap();
    assert!(
        matches!(&stop, CodeStop::El2(e) if e.ec() == 0x16),
        "{stop:?}"
    );
    // The HVC is taken to EL2 (a context synchronization: the unit's
    // pointer becomes visible).
    m.pe_mut(0).unwrap().exception_entry(ExceptionLevel::EL2);
    let ptr = m.cpu(0).unwrap().read(SysReg::PMBPTR_EL1).unwrap();
    let len = (ptr - BUF_VA) as usize;
    let b = page(&m, PA_B);
    let records = RecordDecoder::new(&b[..len])
        .collect::<Result<Vec<_>, _>>()
        .expect("the new page holds records up to the pointer");
    assert!(
        records.len() >= 10,
        "{} records at the new page",
        records.len()
    );
    assert!(
        page(&m, PA_A).iter().all(|&x| x == 0),
        "records at the old page, through a stale entry"
    );
}
