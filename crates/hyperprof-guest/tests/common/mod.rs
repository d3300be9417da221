//! A small machine and host set-up shared by the tests.
#![allow(dead_code)]

use hyperprof_arch::{Cpu, PmuVer, SysReg};
use hyperprof_guest::drivers::pmu::{EventSpec, Filter};
use hyperprof_guest::drivers::spe::{probe, Buffer, Mistakes, SpeDriver, SpeSessionConfig};
use hyperprof_guest::host::{HostConfig, BUFFER_VA};
use hyperprof_sim::machine::{Machine, MachineConfig};
use hyperprof_sim::memory::PAGE_SIZE;
use hyperprof_sim::mmu::{Perm, Stage1Tables};
use hyperprof_sim::pe::PeConfig;
use hyperprof_sim::pmu::PmuConfig;
use hyperprof_sim::spe::SpeConfig;

pub fn pe_config(spe: Option<SpeConfig>) -> PeConfig {
    PeConfig {
        pmu: PmuConfig {
            counters: 6,
            version: PmuVer::V3p5,
            hpmn0: false,
            el2_implemented: true,
        },
        spe,
        fgt: true,
        uarch: Default::default(),
    }
}

pub fn machine(cpus: usize) -> Machine {
    Machine::new(&MachineConfig {
        pes: vec![pe_config(Some(SpeConfig::default())); cpus],
        ram_base: 0x8000_0000,
        ram_size: 256 << 20,
    })
    .unwrap()
}

pub fn host(ops: u64) -> HostConfig {
    HostConfig {
        spe: Some(SpeSessionConfig::default()),
        spe_buffer_bytes: 64 << 10,
        pmu_events: vec![
            EventSpec {
                event: 0x08,
                filter: Filter::ALL,
                period: None,
            },
            EventSpec {
                event: 0x11,
                filter: Filter::ALL,
                period: Some(1_000_000),
            },
        ],
        processes: vec!["mix".into(), "stream-copy".into()],
        kernel_work: Some("kernel-branchy".into()),
        kernel_ops_per_slice: 5_000,
        ops_per_pe: ops,
        slice_ops: 200_000,
        seed: 1,
        mistakes: Default::default(),
    }
}

/// PE 0 as a VHE host at EL2 with a `pages`-page buffer at [`BUFFER_VA`], of
/// which the pages `mapped` accepts are mapped, to RAM or, for the page in
/// `bad_pa`, to that physical address; the driver started with `session`.
pub fn el2_session(
    m: &mut Machine,
    pages: u64,
    mapped: impl Fn(u64) -> bool,
    bad_pa: Option<(u64, u64)>,
    session: SpeSessionConfig,
    mistakes: Mistakes,
) -> SpeDriver {
    let tables = Stage1Tables::new(&mut m.mem, &mut m.alloc).unwrap();
    for p in (0..pages).filter(|p| mapped(*p)) {
        let pa = match bad_pa {
            Some((page, pa)) if page == p => pa,
            _ => m.alloc.alloc(&mut m.mem).unwrap(),
        };
        tables
            .map(
                &mut m.mem,
                &mut m.alloc,
                BUFFER_VA + p * PAGE_SIZE,
                pa,
                PAGE_SIZE,
                Perm::RW,
            )
            .unwrap();
    }
    let mut c = m.cpu(0).unwrap();
    c.write(SysReg::HCR_EL2, (1 << 34) | (1 << 27)).unwrap();
    c.write(SysReg::TTBR0_EL2, tables.root).unwrap();
    c.isb();
    let caps = probe(&mut c).unwrap();
    let buffer = Buffer {
        va: BUFFER_VA,
        size: pages * PAGE_SIZE,
    };
    let mut d = SpeDriver::new(session, caps, buffer)
        .unwrap()
        .with_mistakes(mistakes);
    d.start(&mut c).unwrap();
    d
}
