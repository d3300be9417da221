//! Real AArch64 images on one PE of the machine, with a minimal platform
//! around it: a PL011 data register and PSCI SYSTEM_OFF. The images are the
//! repository's own guests (guests/), whose output under QEMU's virt board
//! is the reference written here.

use hyperprof_arch::{Cpu, PmuVer, SysReg};
use hyperprof_sim::machine::{Machine, MachineConfig};
use hyperprof_sim::memory::FrameAllocator;
use hyperprof_sim::mmu::{Access, Perm, Stage1Tables};
use hyperprof_sim::pe::{CodeContext, CodeStop, PeConfig};
use hyperprof_sim::pmu::PmuConfig;

const RAM: u64 = 0x4000_0000;
const UART_DR: u64 = 0x0900_0000;
const UART_FR: u64 = 0x0900_0018;

fn image(name: &str) -> Vec<u8> {
    let path = format!("{}/../../guests/images/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// One PE with a PMU and no SPE, 128 MiB of RAM at [`RAM`].
fn machine() -> Machine {
    Machine::new(&MachineConfig {
        pes: vec![PeConfig {
            pmu: PmuConfig {
                counters: 6,
                version: PmuVer::V3p5,
                hpmn0: true,
                el2_implemented: true,
            },
            spe: None,
            fgt: true,
            uarch: Default::default(),
        }],
        ram_base: RAM,
        ram_size: 128 << 20,
    })
    .unwrap()
}

/// Boots a raw image at RAM + 0x80000 with x0 = `dtb` and runs it until it
/// powers off; returns its console output and instructions retired.
fn boot(name: &str, dtb: &[u8]) -> (String, u64) {
    let mut m = machine();
    m.mem.write(RAM + 0x8_0000, &image(name)).unwrap();
    m.mem.write(RAM, dtb).unwrap();
    let mut ctx = CodeContext::new(RAM + 0x8_0000, 0);
    ctx.cpu.set_x(0, RAM);
    let mut out = Vec::new();
    let mut total = 0;
    for _ in 0..100_000 {
        let mut done = 0;
        let stop = m.run_code(0, &mut ctx, 10_000_000, &mut done).unwrap();
        total += done;
        match stop {
            CodeStop::Budget => panic!("{name} did not power off within its budget"),
            CodeStop::Interrupt(l) => panic!("unexpected interrupt {l:?}"),
            CodeStop::Wfi => panic!("{name} waits for an interrupt that never comes"),
            CodeStop::TimerDeasserted => panic!("nothing here holds the timer's PPI off"),
            CodeStop::El2(e) => match e.ec() {
                // HVC: PSCI.
                0x16 => match ctx.cpu.x(0) as u32 {
                    0x8400_0000 => ctx.cpu.set_x(0, 0x1_0001),
                    0x8400_0008 => return (String::from_utf8(out).unwrap(), total),
                    f => panic!("PSCI call {f:#x}"),
                },
                // A data abort on the UART: ISV with the register.
                0x24 => {
                    let iss = e.iss();
                    assert!(iss >> 24 & 1 == 1, "no ISV: {iss:#x}");
                    let srt = (iss >> 16 & 31) as usize;
                    let write = iss >> 6 & 1 == 1;
                    match (e.far, write) {
                        (UART_DR, true) => out.push(ctx.cpu.x(srt) as u8),
                        (UART_FR, false) => ctx.cpu.set_x(srt, 0x90),
                        (far, w) => panic!("device access at {far:#x} (write {w})"),
                    }
                    ctx.cpu.skip();
                }
                ec => panic!("exception to EL2 with EC {ec:#x} at {:#x}", ctx.cpu.pc()),
            },
        }
    }
    panic!("{name} did not finish");
}

const FDT_MAGIC: [u8; 4] = [0xd0, 0x0d, 0xfe, 0xed];

#[test]
fn hello_prints_what_it_prints_under_qemu() {
    let (out, insns) = boot("hello.bin", &FDT_MAGIC);
    assert_eq!(
        out,
        "hello from a hyperprof guest\nPSCI 1.1\ndevice tree magic 0x00000000d00dfeed\nCurrentEL 1\nprimes below 4096: 564\n"
    );
    assert!(insns > 10_000, "{insns}");
}

#[test]
fn selftest_passes_every_line() {
    let (out, _) = boot("selftest.bin", &FDT_MAGIC);
    assert!(
        out.ends_with("SUMMARY: 9 tests, 0 unexpected failures\n"),
        "{out}"
    );
    assert_eq!(out.matches("PASS: ").count(), 9, "{out}");
}

/// Stage 1 in running code, through tables whose data page differs from
/// the identity map (the guests' own tables hide translation mistakes):
/// - turning the MMU on (SCTLR_EL1.M, ISB) translates the next load, even of
///   a VA loaded untranslated just before;
/// - moving TTBR0_EL1 to other tables with another ASID (ISB, no TLBI)
///   reaches the new tables, the old entry being non-global;
/// - rewriting a live descriptor (DSB, TLBI VMALLE1, DSB, ISB) reaches the
///   new page.
#[test]
fn loads_follow_sctlr_ttbr0_and_tlbi() {
    const CODE: u64 = RAM + 0x8_0000;
    const DATA_VA: u64 = RAM + 0x10_0000;
    const PA_A: u64 = RAM + 0x20_0000;
    const PA_B: u64 = RAM + 0x30_0000;
    const PA_C: u64 = RAM + 0x40_0000;
    const NG: u64 = 1 << 11;
    const OA: u64 = 0x0000_FFFF_FFFF_F000;
    let read = Access {
        write: false,
        el0: false,
    };
    let mut m = machine();
    let mut alloc = FrameAllocator::new(RAM + 0x100_0000, 1 << 20).unwrap();
    let mut ttbr = [0u64; 2];
    let mut data_desc = [0u64; 2];
    for (i, pa) in [PA_A, PA_B].into_iter().enumerate() {
        let t = Stage1Tables::new(&mut m.mem, &mut alloc).unwrap();
        t.map(&mut m.mem, &mut alloc, CODE, CODE, 4096, Perm::RO)
            .unwrap();
        t.map(&mut m.mem, &mut alloc, DATA_VA, pa, 4096, Perm::RW)
            .unwrap();
        let leaf_table = *t
            .walk(&m.mem, DATA_VA, read)
            .unwrap()
            .table_pages()
            .last()
            .unwrap();
        t.map(
            &mut m.mem,
            &mut alloc,
            leaf_table,
            leaf_table,
            4096,
            Perm::RW,
        )
        .unwrap();
        // The data page is per-process: nG, under ASID i + 1.
        let at = leaf_table + (DATA_VA >> 12 & 511) * 8;
        let d = m.mem.read_u64(at).unwrap();
        m.mem.write_u64(at, d | NG).unwrap();
        ttbr[i] = t.root | (i as u64 + 1) << 48;
        data_desc[i] = at;
    }
    m.mem.write_u64(DATA_VA, 0xAAAA).unwrap();
    m.mem.write_u64(PA_A, 0x1111).unwrap();
    m.mem.write_u64(PA_B, 0x2222).unwrap();
    m.mem.write_u64(PA_C, 0x3333).unwrap();
    let to_c = (m.mem.read_u64(data_desc[1]).unwrap() & !OA) | PA_C;
    let code: [u32; 16] = [
        0xF940_0006, // ldr x6, [x0]     MMU off
        0xD518_1004, // msr sctlr_el1, x4
        0xD503_3FDF, // isb
        0xF940_0001, // ldr x1, [x0]     tables A
        0xD518_2002, // msr ttbr0_el1, x2
        0xD503_3FDF, // isb
        0xF940_0003, // ldr x3, [x0]     tables B
        0xF900_0149, // str x9, [x10]    B's descriptor now maps PA_C
        0xD503_3B9F, // dsb ish
        0xD508_871F, // tlbi vmalle1
        0xD503_3B9F, // dsb ish
        0xD503_3FDF, // isb
        0xF940_000B, // ldr x11, [x0]
        0xF940_000C, // ldr x12, [x0]    again, from the soft TLB
        0xD400_0002, // hvc #0
        0,
    ];
    let bytes: Vec<u8> = code.iter().flat_map(|w| w.to_le_bytes()).collect();
    m.mem.write(CODE, &bytes).unwrap();
    m.cpu(0).unwrap().write(SysReg::TTBR0_EL1, ttbr[0]).unwrap();
    let mut ctx = CodeContext::new(CODE, 0);
    ctx.cpu.set_x(0, DATA_VA);
    ctx.cpu.set_x(2, ttbr[1]);
    ctx.cpu.set_x(4, 1); // SCTLR_EL1.M
    ctx.cpu.set_x(9, to_c);
    ctx.cpu.set_x(10, data_desc[1]);
    let mut done = 0;
    let stop = m.run_code(0, &mut ctx, 1_000, &mut done).unwrap();
    assert!(
        matches!(&stop, CodeStop::El2(e) if e.ec() == 0x16),
        "{stop:?}"
    );
    assert_eq!(done, code.len() as u64 - 1);
    assert_eq!(ctx.cpu.x(6), 0xAAAA, "the load with the MMU off");
    assert_eq!(ctx.cpu.x(1), 0x1111, "the load after the MMU went on");
    assert_eq!(ctx.cpu.x(3), 0x2222, "the load after the ASID switch");
    assert_eq!(ctx.cpu.x(11), 0x3333, "the load after the TLBI");
    assert_eq!(ctx.cpu.x(12), 0x3333);
}
