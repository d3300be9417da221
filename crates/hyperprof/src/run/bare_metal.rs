//! The bare-metal scenario: a VHE host profiling itself with SPE and the PMU
//! on every CPU of the machine, no virtual machines.

use hyperprof_arch::PmuVer;
use hyperprof_guest::drivers::pmu::{EventSpec, Filter};
use hyperprof_guest::drivers::spe::SpeSessionConfig;
use hyperprof_guest::host::{self, HostConfig, PeReport};
use hyperprof_sim::event::Event;
use hyperprof_sim::machine::{Machine, MachineConfig};
use hyperprof_sim::pe::PeConfig;
use hyperprof_sim::pmu::PmuConfig;
use hyperprof_sim::spe::SpeConfig;

use crate::error::{Error, Result};
use crate::perf::{write_domain, DomainProfile, Process};

/// Options of the scenario.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Seed of every random choice.
    pub seed: u64,
    /// User operations per CPU.
    pub ops: u64,
    /// CPUs.
    pub cpus: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            seed: 1,
            ops: 20_000_000,
            cpus: 4,
        }
    }
}

/// The PMU events the host counts on every CPU (the last one samples).
pub fn pmu_events() -> Vec<EventSpec> {
    let count = |e: Event| EventSpec {
        event: e.number(),
        filter: Filter::ALL,
        period: None,
    };
    vec![
        count(Event::CPU_CYCLES),
        count(Event::MEM_ACCESS),
        count(Event::L1D_CACHE_REFILL),
        count(Event::BR_MIS_PRED_RETIRED),
        count(Event::STALL_BACKEND),
        EventSpec {
            event: Event::INST_RETIRED.number(),
            filter: Filter::ALL,
            period: Some(4_000_000),
        },
    ]
}

/// The machine: `cpus` PEs, each with a 6-counter PMUv3p5 and an SPE unit.
pub fn machine_config(cpus: usize) -> MachineConfig {
    let pe = PeConfig {
        pmu: PmuConfig {
            counters: 6,
            version: PmuVer::V3p5,
            hpmn0: false,
            el2_implemented: true,
        },
        spe: Some(SpeConfig::default()),
        fgt: true,
        uarch: Default::default(),
    };
    MachineConfig {
        pes: vec![pe; cpus],
        ram_base: 0x8000_0000,
        ram_size: 1 << 30,
    }
}

/// The host: an SPE session sampling every 1024 operations into a 256 KiB
/// buffer per CPU, the PMU events above, four processes and kernel work.
pub fn host_config(opts: &Options) -> HostConfig {
    HostConfig {
        spe: Some(SpeSessionConfig {
            interval: 1024,
            ..SpeSessionConfig::default()
        }),
        spe_buffer_bytes: 256 << 10,
        pmu_events: pmu_events(),
        processes: ["mix", "pointer-chase", "stream-copy", "branchy"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        kernel_work: Some("kernel-mix".into()),
        kernel_ops_per_slice: 4_000,
        ops_per_pe: opts.ops,
        slice_ops: 250_000,
        seed: opts.seed,
        mistakes: Default::default(),
    }
}

/// Runs the scenario.
pub fn run(opts: &Options) -> Result<Vec<PeReport>> {
    if opts.cpus == 0 || opts.cpus > 64 {
        return Err(Error::Usage(format!(
            "--cpus {} is outside 1..=64",
            opts.cpus
        )));
    }
    let mut m = Machine::new(&machine_config(opts.cpus))
        .map_err(|e| Error::Usage(format!("building the machine: {e}")))?;
    host::run(&mut m, &host_config(opts)).map_err(|e| Error::Run(format!("bare-metal host: {e}")))
}

/// Writes the run's SPE data as `dir/host.perf.data` with its symbol files
/// (each process `1000 + i` as the host kernel numbers them, and the
/// kernel's text); returns the files written.
pub fn write_profile(
    dir: &std::path::Path,
    opts: &Options,
    pes: &[PeReport],
) -> Result<Vec<std::path::PathBuf>> {
    let cfg = host_config(opts);
    let symbols = |name: &str| {
        hyperprof_sim::workload::by_name(name, opts.seed)
            .map(|w| w.symbols().to_vec())
            .ok_or_else(|| Error::Usage(format!("unknown workload {name:?}")))
    };
    let mut processes = Vec::new();
    for (i, name) in cfg.processes.iter().enumerate() {
        let pid = 1000 + i as u32;
        processes.push(Process {
            pid,
            tids: vec![pid],
            comm: name.clone(),
            symbols: symbols(name)?,
            kernel: false,
        });
    }
    if let Some(name) = &cfg.kernel_work {
        processes.push(Process {
            pid: 0,
            tids: Vec::new(),
            comm: name.clone(),
            symbols: symbols(name)?,
            kernel: true,
        });
    }
    let d = DomainProfile {
        buffers: pes
            .iter()
            .map(|p| (p.cpu as u32, p.spe_data.as_slice()))
            .collect(),
        processes,
        nr_cpus: opts.cpus as u32,
        mem_bytes: machine_config(opts.cpus).ram_size,
        interval: cfg.spe.map_or(1, |s| s.interval.into()),
    };
    write_domain(dir, "host.perf.data", &d)
}
