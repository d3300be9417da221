//! Built-in system setups that `hyperprof run --scenario` names.

use hyperprof_arch::PmuVer;
use hyperprof_guest::drivers::pmu::{EventSpec, Filter};
use hyperprof_guest::drivers::spe::SpeSessionConfig;
use hyperprof_kvm::vm::PmuSetup;
use hyperprof_sim::event::Event;
use hyperprof_sim::machine::MachineConfig;
use hyperprof_sim::pe::PeConfig;
use hyperprof_sim::pmu::PmuConfig;

use super::bare_metal::machine_config;
use super::engine::{GuestPmuSetup, GuestSpeSetup, HostSetup, Schedule, Setup, SpeSetup, VmSetup};

fn at(event: Event, el0: bool, el2: bool, period: Option<u32>) -> EventSpec {
    EventSpec {
        event: event.number(),
        filter: Filter {
            el0,
            el1: false,
            el2,
        },
        period,
    }
}

/// A one-vCPU VM with 64 MiB of RAM and an 8 MiB memlock limit running
/// `ops` operations of `workload`, without PMU or SPE.
fn vm(name: &str, workload: &str, ops: u64) -> VmSetup {
    VmSetup {
        name: name.to_string(),
        ram_bytes: 64 << 20,
        memlock_bytes: 8 << 20,
        workload: workload.to_string(),
        seed: None,
        image: None,
        migrations: Vec::new(),
        ops,
        vcpus: 1,
        pmu: None,
        spe: None,
    }
}

/// What a guest kernel counts: six events of its user space, one sampling.
pub fn guest_events() -> Vec<EventSpec> {
    vec![
        at(Event::CPU_CYCLES, true, false, None),
        at(Event::INST_RETIRED, true, false, None),
        at(Event::L1D_CACHE, true, false, None),
        at(Event::L1D_CACHE_REFILL, true, false, Some(100_000)),
        at(Event::BR_PRED, true, false, None),
        at(Event::BR_MIS_PRED, true, false, None),
    ]
}

/// What the host counts on its two reserved counters: its kernel's cycles
/// (sampling) and instructions, at EL2.
pub fn host_events() -> Vec<EventSpec> {
    vec![
        at(Event::CPU_CYCLES, false, true, Some(1 << 22)),
        at(Event::INST_RETIRED, false, true, None),
    ]
}

/// `guest-pmu`: two CPUs with an 8-counter PMUv3p5 and FEAT_FGT; the host
/// reserves two counters (HPMN = 6) and counts its kernel; one VM with a
/// partitioned PMU and one with an emulated PMU count their user space with
/// six events each while their vCPUs swap CPUs every slice.
pub fn guest_pmu(seed: u64, ops: u64) -> Setup {
    let pe = PeConfig {
        pmu: PmuConfig {
            counters: 8,
            version: PmuVer::V3p5,
            hpmn0: false,
            el2_implemented: true,
        },
        spe: None,
        fgt: true,
        uarch: Default::default(),
    };
    let pmu_vm = |name: &str, workload: &str, partitioned: bool| VmSetup {
        pmu: Some(GuestPmuSetup {
            attrs: PmuSetup {
                irq: 23,
                partitioned,
                nr_counters: None,
                filters: Vec::new(),
            },
            events: guest_events(),
        }),
        ..vm(name, workload, ops)
    };
    Setup {
        name: "guest-pmu".to_string(),
        seed,
        machine: MachineConfig {
            pes: vec![pe; 2],
            ram_base: 0x8000_0000,
            ram_size: 1 << 30,
        },
        nvhe: false,
        host: HostSetup {
            workload: "kernel-mix".to_string(),
            ops: ops / 2,
            pmu_reserved: 2,
            spe: None,
            pmu_events: host_events(),
        },
        vms: vec![
            pmu_vm("partitioned", "mix", true),
            pmu_vm("emulated", "pointer-chase", false),
        ],
        slice_ops: 200_000,
        host_slice_ops: 50_000,
        schedule: Schedule::Rotate,
    }
}

/// SPE every 1024 operations into a 64 KiB buffer: the guest-spe sessions.
fn spe_64k() -> SpeSetup {
    SpeSetup {
        session: SpeSessionConfig {
            interval: 1024,
            ..SpeSessionConfig::default()
        },
        buffer_bytes: 64 << 10,
    }
}

/// `guest-spe` (`nvhe` false) and `guest-spe-nvhe`: two CPUs with an SPE
/// unit and a 6-counter PMUv3p5; the host (at EL2, or at EL1 with nVHE,
/// whose buffer every guest entry drains and disables) samples its kernel;
/// VMs `vm0` (mix) and `vm1` (pointer-chase) each profile their user space
/// with guest SPE (1 MiB maximum buffer, 8 MiB memlock) and swap CPUs every
/// slice. The host works a quarter of a guest's operations per CPU.
pub fn guest_spe(seed: u64, ops: u64, nvhe: bool) -> Setup {
    let spe_vm = |name: &str, workload: &str| VmSetup {
        spe: Some(GuestSpeSetup {
            irq: 21,
            max_buffer_size: 1 << 20,
            spe: Some(spe_64k()),
        }),
        ..vm(name, workload, ops)
    };
    Setup {
        name: if nvhe { "guest-spe-nvhe" } else { "guest-spe" }.to_string(),
        seed,
        machine: machine_config(2),
        nvhe,
        host: HostSetup {
            workload: "kernel-mix".to_string(),
            ops: ops / 4,
            pmu_reserved: 0,
            spe: Some(spe_64k()),
            pmu_events: Vec::new(),
        },
        vms: vec![spe_vm("vm0", "mix"), spe_vm("vm1", "pointer-chase")],
        slice_ops: 200_000,
        host_slice_ops: 50_000,
        schedule: Schedule::Rotate,
    }
}
