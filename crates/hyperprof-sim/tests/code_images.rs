//! Real AArch64 images on one PE of the machine, with a minimal platform
//! around it: a PL011 data register and PSCI SYSTEM_OFF. The images are the
//! repository's own guests (guests/), whose output under QEMU's virt board
//! is the reference written here.

use hyperprof_arch::PmuVer;
use hyperprof_sim::machine::{Machine, MachineConfig};
use hyperprof_sim::pe::{CodeContext, CodeStop, PeConfig};
use hyperprof_sim::pmu::PmuConfig;

const RAM: u64 = 0x4000_0000;
const UART_DR: u64 = 0x0900_0000;
const UART_FR: u64 = 0x0900_0018;

fn image(name: &str) -> Vec<u8> {
    let path = format!("{}/../../guests/images/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Boots a raw image at RAM + 0x80000 with x0 = `dtb` and runs it until it
/// powers off; returns its console output and instructions retired.
fn boot(name: &str, dtb: &[u8]) -> (String, u64) {
    let mut m = Machine::new(&MachineConfig {
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
    .unwrap();
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
