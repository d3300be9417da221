//! `hyperprof boot IMAGE`: one VM on the virt-compatible board, running a
//! real AArch64 image on the A64 engine under the hypervisor, beside a host
//! that keeps running (and profiling) on every CPU.
//!
//! The guest's console goes to the writer the caller gives (stdout for the
//! command) as it is written; what the run measured comes back as a
//! [`BootOutcome`] for the summary and the JSON report.

use std::io::Write;
use std::time::Instant;

use hyperprof_arch::{ExceptionLevel, PmsVer, PmuVer};
use hyperprof_board::vm::{BoardVm, BootOptions, VmState, VmmStats};
use hyperprof_kvm::uapi::VcpuFeatures;
use hyperprof_kvm::vm::{Kvm, PmuSetup, VcpuStats, VmConfig};
use hyperprof_sim::machine::{Machine, MachineConfig};
use hyperprof_sim::pe::{AccessStats, PeConfig};
use hyperprof_sim::pmu::PmuConfig;
use hyperprof_sim::spe::SpeConfig;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::guest_profile::{
    image_symbols, write_vm_profile, GuestProfileReport, GuestRecords, ImageSymbols, VcpuRecords,
};
use crate::run::engine::{
    host_slice, start_host, stop_host, HostCpuOutcome, HostSetup, Invariant, SpeSetup,
    HOST_KERNEL_PID,
};
use crate::run::presets::host_events;

/// The images built into the binary (guests/images, built from guests/
/// by `make -C guests`). The profiler is its ELF, whose symbol table names
/// the functions its records sample.
pub const BUILTIN_IMAGES: [(&str, &[u8]); 4] = [
    ("hello", include_bytes!("../../../guests/images/hello.bin")),
    (
        "selftest",
        include_bytes!("../../../guests/images/selftest.bin"),
    ),
    ("spin", include_bytes!("../../../guests/images/spin.bin")),
    (
        "profiler",
        include_bytes!("../../../guests/images/profiler.elf"),
    ),
];

/// The guest PMU a boot gives its vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PmuMode {
    /// No PMU (PMUVer 0; every PMU access UNDEFINED).
    Off,
    /// The partitioned PMU of the series (VHE hosts).
    Partitioned,
    /// The emulated vPMU.
    Emulated,
}

/// What `hyperprof boot` is asked to do.
#[derive(Clone, Debug)]
pub struct BootArgs {
    /// The image's name, for messages.
    pub name: String,
    /// The image: ELF64 AArch64 or a raw binary.
    pub image: Vec<u8>,
    /// `/chosen/bootargs`.
    pub append: String,
    /// Guest RAM in MiB.
    pub mem_mib: u64,
    /// An nVHE host.
    pub nvhe: bool,
    /// The guest PMU.
    pub pmu: PmuMode,
    /// PMU_V3 SET_NR_COUNTERS (the default: all the host leaves).
    pub pmu_counters: Option<u8>,
    /// Guest SPE.
    pub spe: bool,
    /// vCPUs (1 to [`CPUS`]); vCPU 0 boots, the others wait for PSCI
    /// CPU_ON.
    pub smp: usize,
    /// The most bytes of SPE records the guest may hand over (0: the
    /// VMM's default, `hyperprof_board::vendor::DEFAULT_STORE_LIMIT`).
    pub records_limit: u64,
    /// SPE_MAX_BUFFER_SIZE in bytes (0: [`DEFAULT_SPE_MAX_BUFFER`], or the
    /// SPU's own maximum when that is smaller).
    pub spe_max_buffer: u64,
    /// Instructions the guest may retire before the run is cut short.
    pub max_insns: u64,
    /// Seed of the host's workload.
    pub seed: u64,
    /// Where to write the host's profile (`host.perf.data` and its symbol
    /// files) and the guest's, when its profiler handed records over
    /// (`guest.perf.data`, see [`crate::guest_profile`]), if anywhere.
    pub out: Option<std::path::PathBuf>,
}

/// How the guest's run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BootEnd {
    /// PSCI SYSTEM_OFF.
    PowerOff,
    /// PSCI SYSTEM_RESET.
    Reset,
    /// `--max-insns` ran out.
    Budget,
    /// The guest waits for an interrupt that can never come.
    Wedged,
}

/// What a boot measured.
pub struct BootOutcome {
    /// How the guest's run ended.
    pub end: BootEnd,
    /// Instructions the guest retired.
    pub insns: u64,
    /// Wall-clock seconds of the run.
    pub seconds: f64,
    /// The hypervisor's counts for vCPU 0 (the one that boots).
    pub vcpu: VcpuStats,
    /// The VMM's counts.
    pub vmm: VmmStats,
    /// Host CPUs.
    pub host: Vec<HostCpuOutcome>,
    /// Invariants that failed, with why.
    pub problems: Vec<(Invariant, String)>,
    /// Scheduling rounds.
    pub rounds: u64,
    /// The files `--out` wrote.
    pub wrote: Vec<std::path::PathBuf>,
    /// What the guest's profiler handed over.
    pub handed: HandedOver,
    /// hyperprof's report of the guest's profile, when `--out` wrote it.
    pub guest_profile: Option<GuestProfileReport>,
    /// Why the guest profile names no functions (the image's symbols could
    /// not be read), when so.
    pub unnamed: Option<String>,
}

/// What a guest profiler handed to the VMM (SPE_RECORDS), all vCPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HandedOver {
    /// Pieces the VMM accepted.
    pub pieces: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Pieces the guest flagged as following lost records.
    pub truncations: u64,
    /// Bytes the VMM refused (its store was full).
    pub refused_bytes: u64,
}

/// Host operations per CPU between two guest slices.
const HOST_SLICE: u64 = 20_000;
/// Guest instructions per slice (then the vCPU is put and may move).
const GUEST_SLICE: u64 = 2_000_000;
/// SPE_MAX_BUFFER_SIZE when `--spe-max-buffer` is not given.
pub const DEFAULT_SPE_MAX_BUFFER: u64 = 4 << 20;
/// CPUs of the machine: the vCPUs move between them each slice.
pub const CPUS: usize = 2;
/// Guest instructions of one turn when several vCPUs run in a round.
const SMP_TURN: u64 = 64;
/// Guest instructions of one turn of a vCPU running alone.
const SOLO_TURN: u64 = 100_000;

fn usage(e: impl std::fmt::Display) -> Error {
    Error::Usage(format!("boot: {e}"))
}

/// The image named `builtin:NAME`, or `None` for another name.
pub fn builtin(name: &str) -> Option<&'static [u8]> {
    let n = name.strip_prefix("builtin:")?;
    BUILTIN_IMAGES
        .iter()
        .find(|(b, _)| *b == n)
        .map(|(_, bytes)| *bytes)
}

fn machine_config(mem_mib: u64) -> MachineConfig {
    let pe = PeConfig {
        pmu: PmuConfig {
            counters: 8,
            version: PmuVer::V3p5,
            hpmn0: false,
            el2_implemented: true,
        },
        // FEAT_SPEv1p5: the version that defines PMBIDR_EL1.MaxBuffSize,
        // which the VM is given (`--spe-max-buffer`); below it the field
        // is RES0 and a guest could not be told its limit.
        spe: Some(SpeConfig {
            pms_ver: PmsVer::V1p5,
            ..SpeConfig::default()
        }),
        fgt: true,
        uarch: Default::default(),
    };
    MachineConfig {
        pes: vec![pe; CPUS],
        ram_base: 0x8000_0000,
        // The guest's RAM, its stage-2 tables and the host's buffers.
        ram_size: (mem_mib << 20) + (256 << 20),
    }
}

/// Boots `args.image`; the guest's console bytes go to `console` as they
/// are written.
pub fn boot(args: &BootArgs, console: &mut dyn Write) -> Result<BootOutcome> {
    if args.mem_mib == 0 || args.mem_mib > 4096 {
        return Err(usage(format!(
            "--mem {} MiB: give 1 to 4096 MiB",
            args.mem_mib
        )));
    }
    if args.smp == 0 || args.smp > CPUS {
        return Err(usage(format!(
            "--smp {}: give 1 to {CPUS} vCPUs (one per CPU of the machine)",
            args.smp
        )));
    }
    if args.nvhe && args.pmu == PmuMode::Partitioned {
        return Err(usage(
            "the partitioned PMU needs a VHE host (an nVHE host kernel at EL1 \
             cannot use counters above HPMN); use --pmu emulated or drop --nvhe",
        ));
    }
    let started = Instant::now();
    let machine = Machine::new(&machine_config(args.mem_mib)).map_err(usage)?;
    let mut kvm = if args.nvhe {
        Kvm::new_nvhe(machine)
    } else {
        Kvm::new(machine)
    };
    let host_el = if args.nvhe {
        ExceptionLevel::EL1
    } else {
        ExceptionLevel::EL2
    };
    let reserved = if args.pmu == PmuMode::Off { 0 } else { 2 };
    kvm.set_host_pmu_reserve(reserved)
        .map_err(|e| usage(format!("host PMU reservation: {e}")))?;
    // The host profiles its kernel with SPE and counts it on the counters it
    // reserves (an nVHE host kernel on its top counters, which the
    // hypervisor switches off while the guest runs).
    let host_setup = HostSetup {
        workload: "kernel-mix".to_string(),
        ops: u64::MAX,
        pmu_reserved: reserved,
        spe: Some(SpeSetup {
            session: Default::default(),
            buffer_bytes: 256 << 10,
        }),
        pmu_events: if reserved == 0 {
            Vec::new()
        } else {
            // The host kernel's own level: EL2 under VHE, EL1 under nVHE.
            host_events()
                .into_iter()
                .map(|mut e| {
                    e.filter.el1 = args.nvhe;
                    e.filter.el2 = !args.nvhe;
                    e
                })
                .collect()
        },
    };
    let mut host = start_host(&mut kvm, &host_setup, args.seed, args.nvhe)?;

    let ram = args.mem_mib << 20;
    let vm = kvm
        .create_vm(VmConfig {
            ram_bytes: ram,
            memlock_limit: 64 << 20,
        })
        .map_err(|e| usage(format!("create_vm: {e}")))?;
    let features = VcpuFeatures {
        spe: args.spe,
        pmu_v3: args.pmu != PmuMode::Off,
    };
    let mut vcpus = Vec::new();
    for _ in 0..args.smp {
        let vcpu = kvm
            .create_vcpu(vm, features)
            .map_err(|e| usage(format!("create_vcpu: {e}")))?;
        configure_vcpu(&mut kvm, vcpu, args)?;
        vcpus.push(vcpu);
    }
    let vcpu = vcpus[0];
    let opts = BootOptions {
        bootargs: args.append.clone(),
        pmu: features.pmu_v3,
        spe: features.spe,
    };
    let mut board = BoardVm::boot(&mut kvm, vm, ram, &vcpus, &args.image, &opts)
        .map_err(|e| Error::malformed(&args.name, e.to_string()))?;
    if args.records_limit != 0 {
        board.set_records_limit(args.records_limit);
    }
    if args.spe && args.out.is_some() {
        // For the guest profile's flame graph: SPE records no stacks.
        board.capture_stacks();
    }

    let mut problems = Vec::new();
    let mut rounds = 0u64;
    let mut insns = 0u64;
    let end = loop {
        match board.state() {
            VmState::PoweredOff => break BootEnd::PowerOff,
            VmState::Reset => break BootEnd::Reset,
            VmState::Wedged => break BootEnd::Wedged,
            VmState::Running => {}
        }
        if insns >= args.max_insns {
            break BootEnd::Budget;
        }
        for (cpu, h) in host.iter_mut().enumerate() {
            host_slice(&mut kvm, cpu, h, HOST_SLICE, host_el)?;
        }
        // Each vCPU that can run is loaded on its own CPU (they swap CPUs
        // every round) and put at the end of the round.
        let live: Vec<usize> = (0..vcpus.len()).filter(|&i| board.runnable(i)).collect();
        for (k, &i) in live.iter().enumerate() {
            let cpu = (k + rounds as usize) % CPUS;
            kvm.load(vcpus[i], cpu)
                .map_err(|e| usage(format!("load: {e}")))?;
        }
        let slice = GUEST_SLICE.min(args.max_insns - insns);
        let ran = run_round(&mut board, &mut kvm, &live, slice);
        for &i in &live {
            kvm.put(vcpus[i])
                .map_err(|e| Error::Run(format!("boot: put: {e}")))?;
        }
        let out = board.take_console();
        console
            .write_all(&out)
            .and_then(|_| console.flush())
            .map_err(|e| Error::io("<stdout>", e))?;
        match ran {
            Ok(n) => insns += n,
            Err(e) => {
                return Err(Error::Run(format!(
                    "boot: {}: {e} (after {insns} instructions)",
                    args.name
                )))
            }
        }
        rounds += 1;
    };
    let vcpu_count = board.vcpus().len();
    let guest_records: Vec<VcpuRecords> = (0..vcpu_count)
        .map(|i| VcpuRecords {
            bytes: board.take_spe_records(i),
            truncations: board.records().truncations(i),
            stacks: board.take_stacks(i).0,
        })
        .collect();
    let handed = HandedOver {
        pieces: (0..vcpu_count).map(|i| board.records().pieces(i)).sum(),
        bytes: guest_records.iter().map(|v| v.bytes.len() as u64).sum(),
        truncations: guest_records.iter().map(|v| v.truncations).sum(),
        refused_bytes: board.records().refused_bytes(),
    };
    let host_symbols = host
        .first()
        .map(|h| h.work.symbols().to_vec())
        .unwrap_or_default();
    let host_out = stop_host(&mut kvm, host, &mut problems)?;
    let mut wrote = Vec::new();
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir).map_err(|e| Error::output(dir, e))?;
        let d = crate::perf::DomainProfile {
            buffers: host_out
                .iter()
                .map(|h| (h.cpu as u32, h.spe_data.as_slice()))
                .collect(),
            processes: vec![crate::perf::Process {
                pid: HOST_KERNEL_PID,
                tids: vec![HOST_KERNEL_PID],
                comm: host_setup.workload.clone(),
                symbols: host_symbols,
                kernel: true,
            }],
            nr_cpus: CPUS as u32,
            mem_bytes: machine_config(args.mem_mib).ram_size,
            interval: host_setup.spe.map_or(0, |s| s.session.interval.into()),
        };
        wrote = crate::perf::write_domain(dir, "host.perf.data", &d)?;
    }
    let mut guest_profile = None;
    let mut unnamed = None;
    if let (Some(dir), true) = (&args.out, handed.pieces + handed.refused_bytes > 0) {
        // A stripped or raw image still gives a profile, its PCs unnamed
        // (the summary says why).
        let image = image_symbols(&args.image).unwrap_or_else(|e| {
            unnamed = Some(e.to_string());
            ImageSymbols::default()
        });
        let interval = kvm
            .get_one_reg(vcpu, hyperprof_arch::SysReg::PMSIRR_EL1)
            .map_or(0, |v| v & 0xFFFF_FF00);
        let comm = image_comm(&args.name);
        let g = GuestRecords {
            vm: "guest",
            comm: &comm,
            vcpus: guest_records,
            refused_bytes: handed.refused_bytes,
            image: &image,
            interval,
            ram_bytes: ram,
        };
        let (report, files) = write_vm_profile(dir, &g)?;
        wrote.extend(files);
        guest_profile = Some(report);
    }
    for h in &host_out {
        // The host's counts must be those of its own work, exactly.
        let own = host_setup
            .pmu_events
            .iter()
            .zip(&h.pmu_counts)
            .filter_map(|(e, &c)| {
                let ev = hyperprof_sim::event::Event::from_number(e.event)?;
                let truth = h.truth.get(ev);
                (c != truth).then(|| {
                    format!(
                        "cpu {}: event {ev:?} counted {c}, its work caused {truth}",
                        h.cpu
                    )
                })
            });
        for p in own {
            problems.push((Invariant::ExactCounts, p));
        }
    }
    if kvm.pinned_bytes(vm).unwrap_or(0) != 0 && end == BootEnd::PowerOff {
        problems.push((
            Invariant::Limits,
            format!(
                "{} bytes of guest memory still pinned after power-off",
                kvm.pinned_bytes(vm).unwrap_or(0)
            ),
        ));
    }
    let vcpu_stats = kvm
        .vcpu_stats(vcpu)
        .ok_or_else(|| usage("no vCPU statistics"))?;
    Ok(BootOutcome {
        end,
        insns,
        seconds: started.elapsed().as_secs_f64(),
        vcpu: vcpu_stats,
        vmm: board.stats(),
        host: host_out,
        problems,
        rounds,
        wrote,
        handed,
        guest_profile,
        unnamed,
    })
}

/// The process name of an image: `builtin:NAME`'s NAME, or the file's
/// stem.
fn image_comm(name: &str) -> String {
    let n = name.strip_prefix("builtin:").unwrap_or(name);
    std::path::Path::new(n)
        .file_stem()
        .map_or_else(|| n.to_string(), |s| s.to_string_lossy().into_owned())
}

/// Gives `vcpu` the guest SPE and PMU `args` asks for.
fn configure_vcpu(kvm: &mut Kvm, vcpu: usize, args: &BootArgs) -> Result<()> {
    if args.spe {
        let (spu, spu_max) = kvm
            .spus()
            .first()
            .map(|s| (s.id, s.max_buffer_size()))
            .ok_or_else(|| usage("the machine has no SPE unit"))?;
        // 0 asks for the default: 4 MiB, or the SPU's own maximum when
        // that is smaller (0 there: no limit).
        let max = match (args.spe_max_buffer, spu_max) {
            (0, 0) => DEFAULT_SPE_MAX_BUFFER,
            (0, m) => m.min(DEFAULT_SPE_MAX_BUFFER),
            (b, _) => b,
        };
        kvm.configure_spe(vcpu, spu, 21, max)
            .map_err(|(attr, e)| usage(format!("guest SPE attribute {attr}: {e}")))?;
    }
    if args.pmu != PmuMode::Off {
        let setup = PmuSetup {
            irq: 23,
            partitioned: args.pmu == PmuMode::Partitioned,
            nr_counters: args.pmu_counters,
            filters: Vec::new(),
        };
        kvm.configure_pmu(vcpu, &setup)
            .map_err(|(attr, e)| usage(format!("guest PMU attribute {attr}: {e}")))?;
    }
    Ok(())
}

/// Runs the loaded vCPUs `live` for about `slice` instructions each: one
/// alone runs the slice in turns of [`SOLO_TURN`] and stops early when it
/// powers another vCPU on (so that the next round runs both); several take
/// turns of [`SMP_TURN`] instructions, so that their accesses to shared
/// memory interleave as on CPUs running side by side. Returns the
/// instructions retired.
fn run_round(
    board: &mut BoardVm,
    kvm: &mut Kvm,
    live: &[usize],
    slice: u64,
) -> std::result::Result<u64, hyperprof_board::vm::BoardError> {
    let mut total = 0;
    if let [i] = live {
        let others = |b: &BoardVm| (0..b.vcpus().len()).any(|j| j != *i && b.runnable(j));
        while total < slice && board.runnable(*i) && !others(board) {
            let n = board.run_vcpu(kvm, *i, SOLO_TURN.min(slice - total))?;
            if n == 0 {
                break;
            }
            total += n;
        }
        return Ok(total);
    }
    let mut left = slice;
    while left > 0 {
        let mut progressed = false;
        for &i in live {
            if board.runnable(i) {
                let n = board.run_vcpu(kvm, i, SMP_TURN.min(left))?;
                total += n;
                progressed |= n > 0;
            }
        }
        if !progressed || board.finished() {
            break;
        }
        left = left.saturating_sub(SMP_TURN);
    }
    Ok(total)
}

fn per(a: AccessStats, n: u64) -> f64 {
    if n == 0 {
        0.0
    } else {
        a.total() as f64 / n as f64
    }
}

impl BootOutcome {
    /// The short summary `hyperprof boot` prints on stderr.
    pub fn summary(&self) -> String {
        let mips = self.insns as f64 / self.seconds.max(1e-9) / 1e6;
        let v = &self.vcpu;
        let mut s = format!(
            "boot: {:?} after {} instructions in {:.2} s ({:.1} MIPS), {} rounds\n",
            self.end, self.insns, self.seconds, mips, self.rounds
        );
        s += &format!(
            "exits: {} sysreg traps ({} PMU), {} hypercalls, {} MMIO, {} physical interrupts, {} idle\n",
            v.sysreg_exits, v.pmu_trap_exits, self.vmm.hypercalls, self.vmm.mmio, v.irq_exits, self.vmm.idle
        );
        s += &format!(
            "switch: SPE {:.1} accesses+barriers per round trip ({} of {} entries live), PMU {:.1} per load/put\n",
            per(v.spe_switch_live, v.live_trips),
            v.live_trips,
            v.entries,
            per(v.pmu_load_put, v.pmu_live_loads)
        );
        for h in &self.host {
            s += &format!(
                "host cpu {}: {} kernel operations, {} SPE bytes, {} PMBIRQs\n",
                h.cpu,
                h.ops,
                h.spe_data.len(),
                h.pmbirqs
            );
        }
        let h = &self.handed;
        if h.pieces + h.refused_bytes > 0 {
            s += &format!(
                "guest records: {} bytes in {} pieces ({:.0} bytes per hand-over), {} truncated, {} bytes refused\n",
                h.bytes,
                h.pieces,
                h.bytes as f64 / h.pieces.max(1) as f64,
                h.truncations,
                h.refused_bytes
            );
        }
        if let Some(g) = &self.guest_profile {
            s += &format!(
                "guest profile: {} records ({:.0} per second handed over), top {}\n",
                g.records,
                g.records as f64 / self.seconds.max(1e-9),
                g.top_functions
                    .iter()
                    .take(5)
                    .map(|f| format!("{} {:.1}%", f.function, f.percent))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            for m in &g.malformed {
                s += &format!("guest profile: records malformed: {m}\n");
            }
        }
        if let Some(why) = &self.unnamed {
            s += &format!("guest profile: functions unnamed: {why}\n");
        }
        for f in &self.wrote {
            s += &format!("wrote {}\n", f.display());
        }
        if self.problems.is_empty() {
            s += "invariants: all hold\n";
        } else {
            for (inv, why) in &self.problems {
                s += &format!("invariant {inv:?} FAILED: {why}\n");
            }
        }
        s
    }

    /// The report as JSON (`--report FILE.json`).
    pub fn json(&self) -> serde_json::Value {
        let v = &self.vcpu;
        serde_json::json!({
            "end": self.end,
            "instructions": self.insns,
            "seconds": self.seconds,
            "rounds": self.rounds,
            "exits": {
                "sysreg": v.sysreg_exits,
                "pmu_traps": v.pmu_trap_exits,
                "hypercalls": self.vmm.hypercalls,
                "mmio": self.vmm.mmio,
                "irq": v.irq_exits,
                "idle": self.vmm.idle,
            },
            "switch": {
                "entries": v.entries,
                "live_trips": v.live_trips,
                "spe_per_live_trip": per(v.spe_switch_live, v.live_trips),
                "pmu_per_load_put": per(v.pmu_load_put, v.pmu_live_loads),
            },
            "host": self.host.iter().map(|h| serde_json::json!({
                "cpu": h.cpu,
                "ops": h.ops,
                "spe_bytes": h.spe_data.len(),
                "pmbirqs": h.pmbirqs,
                "pmu_counts": h.pmu_counts,
            })).collect::<Vec<_>>(),
            "guest_records": self.handed,
            "guest_profile": self.guest_profile,
            "invariants": self.problems.iter().map(|(i, w)| format!("{i:?}: {w}")).collect::<Vec<_>>(),
        })
    }
}
