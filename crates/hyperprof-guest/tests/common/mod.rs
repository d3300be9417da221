//! A small machine and host set-up shared by the tests.
#![allow(dead_code)]

use hyperprof_arch::PmuVer;
use hyperprof_guest::drivers::pmu::{EventSpec, Filter};
use hyperprof_guest::drivers::spe::SpeSessionConfig;
use hyperprof_guest::host::HostConfig;
use hyperprof_sim::machine::{Machine, MachineConfig};
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
