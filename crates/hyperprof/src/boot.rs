//! `hyperprof boot IMAGE`: one VM on the virt-compatible board, running a
//! real AArch64 image on the A64 engine under the hypervisor, beside a host
//! that keeps running (and profiling) on every CPU.
//!
//! The VM has `--smp` vCPUs (vCPU 0 boots, the others wait for PSCI
//! CPU_ON) and the machine `--cpus` physical CPUs. Each round the host runs
//! a slice on every CPU, then the vCPUs that can run take turns on the
//! CPUs by the round-robin of [`schedule`], each loaded on its CPU, run
//! for a slice and put: every load, put, entry and exit is the
//! hypervisor's world switch, so a vCPU's PMU and SPE state follow it
//! from CPU to CPU. vCPUs that are off or wait for an interrupt are not
//! run; when every vCPU that is on waits and nothing can wake it, the VM
//! is wedged.
//!
//! The guest's console goes to the writer the caller gives (stdout for the
//! command) as it is written; what the run measured comes back as a
//! [`BootOutcome`] for the summary and the JSON report.

mod schedule;

use std::io::Write;
use std::time::Instant;

use hyperprof_arch::{ExceptionLevel, PmsVer, PmuVer};
use hyperprof_board::map::max_redistributors;
use hyperprof_board::vm::{BoardVm, BootOptions, VmState, VmmStats};
use hyperprof_kvm::uapi::VcpuFeatures;
use hyperprof_kvm::vgic::VgicStats;
use hyperprof_kvm::vm::{Kvm, PmuSetup, VcpuStats, VmConfig};
use hyperprof_sim::machine::{Machine, MachineConfig};
use hyperprof_sim::pe::{AccessStats, CodeContext, PeConfig, CNTFRQ};
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
    /// The most bytes of SPE records the guest may hand over (0: the
    /// VMM's default, `hyperprof_board::vendor::DEFAULT_STORE_LIMIT`).
    pub records_limit: u64,
    /// vCPUs of the VM (`--smp`): vCPU 0 boots, the others wait for PSCI
    /// CPU_ON. 1 to [`max_redistributors`].
    pub smp: usize,
    /// Physical CPUs of the machine (`--cpus`), 1 to [`MAX_CPUS`]: each
    /// runs the host and, by the schedule, vCPUs.
    pub cpus: usize,
    /// Guest instructions per slice (`--slice`): a vCPU is loaded on a
    /// CPU, runs at most this many, and is put.
    pub slice: u64,
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
    /// The guest can never make progress: every vCPU that is on waits for
    /// an interrupt that can never come or takes the same exception at its
    /// own exception vector again and again ([`BootOutcome::wedged`] says
    /// which).
    Wedged,
}

/// What one vCPU did under the schedule.
#[derive(Clone, Debug)]
pub struct VcpuRun {
    /// Its MPIDR_EL1 affinity.
    pub mpidr: u64,
    /// Instructions it retired.
    pub insns: u64,
    /// Slices it was given (each a load, a run and a put).
    pub slices: u64,
    /// Slices that loaded it on another CPU than its previous slice.
    pub migrations: u64,
    /// The physical CPUs it ran on, ascending.
    pub cpus: Vec<usize>,
    /// The hypervisor's counts for it.
    pub stats: VcpuStats,
}

impl VcpuRun {
    fn new(mpidr: u64) -> VcpuRun {
        VcpuRun {
            mpidr,
            insns: 0,
            slices: 0,
            migrations: 0,
            cpus: Vec::new(),
            stats: VcpuStats::default(),
        }
    }

    /// Counts a slice on `cpu`, after one on `last` (if it had one).
    fn slice_on(&mut self, cpu: usize, last: Option<usize>) {
        self.slices += 1;
        if last.is_some_and(|c| c != cpu) {
            self.migrations += 1;
        }
        if let Err(at) = self.cpus.binary_search(&cpu) {
            self.cpus.insert(at, cpu);
        }
    }
}

/// What a boot measured.
pub struct BootOutcome {
    /// How the guest's run ended.
    pub end: BootEnd,
    /// Why the guest is wedged, when it is.
    pub wedged: Option<String>,
    /// Instructions the guest retired.
    pub insns: u64,
    /// Wall-clock seconds of the run.
    pub seconds: f64,
    /// Seconds of the machine's time the run took: the cycles of its
    /// busiest CPU at the generic counter's frequency.
    pub machine_seconds: f64,
    /// The hypervisor's counts, summed over the vCPUs.
    pub vcpu: VcpuStats,
    /// What the vGIC counted summed over the vCPUs.
    pub gic: VgicStats,
    /// Each vCPU's part, in the VM's order.
    pub vcpus: Vec<VcpuRun>,
    /// The VMM's counts.
    pub vmm: VmmStats,
    /// Host CPUs.
    pub host: Vec<HostCpuOutcome>,
    /// Invariants that failed, with why.
    pub problems: Vec<(Invariant, String)>,
    /// Scheduling rounds.
    pub rounds: u64,
    /// The host was nVHE (the timer moves at entry and exit there).
    pub nvhe: bool,
    /// Counter ticks (ns at CNTFRQ's 1 GHz) the machine skipped while
    /// every vCPU waited in WFI for its timer: no CPU executed and no PMU
    /// counted meanwhile.
    pub idle_ticks: u64,
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

/// Guest instructions of one turn of a vCPU while others of its round run
/// on the other CPUs.
const SIDE_BY_SIDE_TURN: u64 = 64;

/// Host operations per CPU between two guest slices.
const HOST_SLICE: u64 = 20_000;
/// Guest instructions per slice when `--slice` is not given (then the
/// vCPU is put and may move).
pub const DEFAULT_SLICE: u64 = 2_000_000;
/// SPE_MAX_BUFFER_SIZE when `--spe-max-buffer` is not given.
pub const DEFAULT_SPE_MAX_BUFFER: u64 = 4 << 20;
/// Physical CPUs when `--cpus` is not given.
pub const DEFAULT_CPUS: usize = 2;
/// The most physical CPUs a boot's machine has.
pub const MAX_CPUS: usize = 16;

fn usage(e: impl std::fmt::Display) -> Error {
    Error::Usage(format!("boot: {e}"))
}

/// The image named `builtin:NAME` ([`crate::builtin`]), or `None` for
/// another name.
pub fn builtin(name: &str) -> Option<&'static [u8]> {
    crate::builtin::find(name.strip_prefix(crate::builtin::PREFIX)?)
}

fn machine_config(mem_mib: u64, cpus: usize) -> MachineConfig {
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
        pes: vec![pe; cpus],
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
    if args.nvhe && args.pmu == PmuMode::Partitioned {
        return Err(usage(
            "the partitioned PMU needs a VHE host (an nVHE host kernel at EL1 \
             cannot use counters above HPMN); use --pmu emulated or drop --nvhe",
        ));
    }
    if args.smp == 0 || args.smp as u64 > max_redistributors() {
        return Err(usage(format!(
            "--smp {}: the board's GICv3 redistributor region holds 1 to {} vCPUs",
            args.smp,
            max_redistributors()
        )));
    }
    if args.cpus == 0 || args.cpus > MAX_CPUS {
        return Err(usage(format!(
            "--cpus {}: give 1 to {MAX_CPUS} physical CPUs",
            args.cpus
        )));
    }
    if args.slice == 0 {
        return Err(usage("--slice 0: a slice runs at least one instruction"));
    }
    let started = Instant::now();
    let machine = Machine::new(&machine_config(args.mem_mib, args.cpus)).map_err(usage)?;
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
    let spe_unit = if args.spe {
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
        Some((spu, max))
    } else {
        None
    };
    let mut vcpus = Vec::with_capacity(args.smp);
    for _ in 0..args.smp {
        let vcpu = kvm
            .create_vcpu(vm, features)
            .map_err(|e| usage(format!("create_vcpu: {e}")))?;
        if let Some((spu, max)) = spe_unit {
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
        vcpus.push(vcpu);
    }
    // The VM has QEMU virt's GICv3, in the hypervisor: the PMU overflow
    // (INTID 23) and SPE buffer (INTID 21) interrupts reach the guest
    // through it.
    let opts = BootOptions {
        bootargs: args.append.clone(),
        pmu: features.pmu_v3,
        spe: features.spe,
        gic: Some(hyperprof_board::map::GicLayout::VIRT),
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
    let mut idle_ticks = 0u64;
    let mut runs: Vec<VcpuRun> = (0..vcpus.len())
        .map(|i| VcpuRun::new(board.context(i).map_or(0, |c| c.mpidr)))
        .collect();
    let mut last_cpu: Vec<Option<usize>> = vec![None; vcpus.len()];
    // Where each vCPU is caught in an exception loop, as of its last slice.
    let mut looping: Vec<Option<ExceptionLoop>> = vec![None; vcpus.len()];
    let waiting = "every vCPU that is on waits for an interrupt, and nothing can raise one \
                   (none pending, no timer armed and unmasked)";
    let mut wedged = None;
    let end = loop {
        match board.state() {
            VmState::PoweredOff => break BootEnd::PowerOff,
            VmState::Reset => break BootEnd::Reset,
            VmState::Wedged => {
                wedged = Some(waiting.to_string());
                break BootEnd::Wedged;
            }
            VmState::Running => {}
        }
        if insns >= args.max_insns {
            break BootEnd::Budget;
        }
        // Every vCPU waits for its timer: the machine's clock jumps to the
        // first deadline (deterministic; no CPU runs in between).
        if let Some(wake) = board.next_wake(&kvm) {
            let skip = wake.saturating_sub(kvm.now());
            kvm.machine().advance_clock(skip);
            idle_ticks += skip;
        }
        board.wake_idle(&kvm);
        let runnable: Vec<usize> = (0..vcpus.len()).filter(|&i| board.runnable(i)).collect();
        if runnable.is_empty() {
            // Every vCPU that is on is idle with no interrupt to come (the
            // board says so first; this guards the loop all the same).
            wedged = Some(waiting.to_string());
            break BootEnd::Wedged;
        }
        // A vCPU in an exception loop changes nothing but its own counts;
        // while another can run, that one might still rewrite its vectors.
        if runnable.iter().all(|&i| looping[i].is_some()) {
            let (i, l) = runnable
                .iter()
                .find_map(|&i| looping[i].map(|l| (i, l)))
                .unwrap_or_default();
            wedged = Some(format!(
                "vCPU {i} takes an exception at its own vector {:#x} (ESR_EL1 {:#x}) again \
                 and again, and every other vCPU that is on waits",
                l.pc, l.esr
            ));
            break BootEnd::Wedged;
        }
        for (cpu, h) in host.iter_mut().enumerate() {
            host_slice(&mut kvm, cpu, h, HOST_SLICE, host_el)?;
        }
        // The round's vCPUs are loaded on their CPUs and run side by side:
        // turns of SIDE_BY_SIDE_TURN instructions each, so that their
        // accesses to shared lines interleave as on CPUs running at once.
        let placed: Vec<(usize, usize)> = schedule::placements(rounds, args.cpus, &runnable);
        for &(i, cpu) in &placed {
            kvm.load(vcpus[i], cpu)
                .map_err(|e| usage(format!("load: {e}")))?;
        }
        let budget = args.max_insns - insns;
        let slice = args.slice.min(budget);
        let mut ran = vec![0u64; placed.len()];
        let mut failed = None;
        'round: loop {
            let mut progressed = false;
            for (k, &(i, _)) in placed.iter().enumerate() {
                let spent: u64 = ran.iter().sum();
                if ran[k] >= slice || spent >= budget || !board.runnable(i) {
                    continue;
                }
                let turn = if placed.len() == 1 {
                    slice - ran[k]
                } else {
                    SIDE_BY_SIDE_TURN.min(slice - ran[k])
                }
                .min(budget - spent);
                match board.run_vcpu(&mut kvm, i, turn) {
                    Ok(n) => {
                        ran[k] += n;
                        progressed |= n > 0;
                    }
                    Err(e) => {
                        failed = Some(e);
                        break 'round;
                    }
                }
                looping[i] = board.context(i).and_then(exception_loop);
            }
            // A vCPU powered on meanwhile waits for a free CPU: end the
            // round so that the next one places it beside the others.
            let woken =
                (0..vcpus.len()).any(|j| board.runnable(j) && placed.iter().all(|&(i, _)| i != j));
            if !progressed || board.finished() || (woken && placed.len() < args.cpus) {
                break;
            }
        }
        for (k, &(i, cpu)) in placed.iter().enumerate() {
            kvm.put(vcpus[i])
                .map_err(|e| Error::Run(format!("boot: put: {e}")))?;
            let run = &mut runs[i];
            run.slice_on(cpu, last_cpu[i]);
            last_cpu[i] = Some(cpu);
            run.insns += ran[k];
            insns += ran[k];
        }
        let out = board.take_console();
        console
            .write_all(&out)
            .and_then(|_| console.flush())
            .map_err(|e| Error::io("<stdout>", e))?;
        if let Some(e) = failed {
            return Err(Error::Run(format!(
                "boot: {}: {e} (after {insns} instructions)",
                args.name
            )));
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
            nr_cpus: args.cpus as u32,
            mem_bytes: machine_config(args.mem_mib, args.cpus).ram_size,
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
            .get_one_reg(vcpus[0], hyperprof_arch::SysReg::PMSIRR_EL1)
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
    for (run, &vcpu) in runs.iter_mut().zip(&vcpus) {
        run.stats = kvm
            .vcpu_stats(vcpu)
            .ok_or_else(|| usage("no vCPU statistics"))?;
    }
    let busiest = kvm.machine().pes().iter().map(|p| p.cycles()).max();
    Ok(BootOutcome {
        end,
        wedged,
        insns,
        seconds: started.elapsed().as_secs_f64(),
        machine_seconds: busiest.unwrap_or(0) as f64 / CNTFRQ as f64,
        vcpu: runs.iter().map(|r| r.stats).sum(),
        gic: vcpus
            .iter()
            .map(|&v| kvm.vgic_stats(v).unwrap_or_default())
            .fold(VgicStats::default(), |a, b| a + b),
        vcpus: runs,
        vmm: board.stats(),
        host: host_out,
        problems,
        rounds,
        nvhe: args.nvhe,
        idle_ticks,
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

/// A vCPU stuck taking one exception forever.
#[derive(Clone, Copy, Debug, Default)]
struct ExceptionLoop {
    /// The vector, which is also the faulting instruction.
    pc: u64,
    /// The syndrome of the exception.
    esr: u64,
}

/// The offset in the vector table of a synchronous exception from EL1
/// using SP_EL1, where every exception taken at EL1h goes.
const SYNC_CURRENT_SPX: u64 = 0x200;

/// Whether `ctx` is caught in an exception loop: its last exception was
/// taken from the first instruction of the vector it was taken to (a
/// synchronous exception at EL1h, whose preferred return is the faulting
/// instruction: ELR_EL1 equals the PC). Taking it masked every interrupt
/// and left the registers as they were, so the vector faults the same way
/// each time: nothing but another CPU's store can get it out.
fn exception_loop(ctx: &CodeContext) -> Option<ExceptionLoop> {
    use hyperprof_a64::cpu::regs;
    let c = &ctx.cpu;
    let vbar = c.read_sysreg(regs::VBAR_EL1)? & !0x7FF;
    let elr = c.read_sysreg(regs::ELR_EL1)?;
    let pc = c.pc();
    (c.el() == 1 && pc == elr && pc == vbar.wrapping_add(SYNC_CURRENT_SPX)).then(|| ExceptionLoop {
        pc,
        esr: c.read_sysreg(regs::ESR_EL1).unwrap_or(0),
    })
}

fn per(a: AccessStats, n: u64) -> f64 {
    if n == 0 {
        0.0
    } else {
        a.total() as f64 / n as f64
    }
}

impl BootOutcome {
    /// How often the guest's timer moved to or from the hardware: at each
    /// load (VHE) or each entry (nVHE).
    fn timer_switches(&self) -> u64 {
        if self.nvhe {
            self.vcpu.entries
        } else {
            self.vcpu.loads
        }
    }

    /// World switches (vCPU loads, each with its put) per vCPU per second
    /// of the machine's time.
    pub fn switch_rate(&self) -> f64 {
        let loads: u64 = self.vcpus.iter().map(|r| r.stats.loads).sum();
        if self.vcpus.is_empty() || self.machine_seconds <= 0.0 {
            0.0
        } else {
            loads as f64 / self.vcpus.len() as f64 / self.machine_seconds
        }
    }

    /// The short summary `hyperprof boot` prints on stderr.
    pub fn summary(&self) -> String {
        let mips = self.insns as f64 / self.seconds.max(1e-9) / 1e6;
        let v = &self.vcpu;
        let mut s = format!(
            "boot: {:?} after {} instructions in {:.2} s ({:.1} MIPS), {} rounds\n",
            self.end, self.insns, self.seconds, mips, self.rounds
        );
        if let Some(why) = &self.wedged {
            s += &format!("wedged: {why}\n");
        }
        let loads: u64 = self.vcpus.iter().map(|r| r.stats.loads).sum();
        let migrations: u64 = self.vcpus.iter().map(|r| r.migrations).sum();
        s += &format!(
            "schedule: {} vCPUs on {} CPUs for {:.4} machine seconds: {} loads ({:.0} per vCPU \
             per machine second), {} migrations\n",
            self.vcpus.len(),
            self.host.len(),
            self.machine_seconds,
            loads,
            self.switch_rate(),
            migrations
        );
        s += &format!(
            "exits: {} sysreg traps ({} PMU), {} hypercalls, {} MMIO, {} physical interrupts, {} idle\n",
            v.sysreg_exits, v.pmu_trap_exits, self.vmm.hypercalls, self.vmm.mmio, v.irq_exits, self.vmm.idle
        );
        s += &format!(
            "timer: {:.1} accesses per {}, {} interrupt exits, {} wakes, {} idle ticks skipped\n",
            per(v.timer_switch, self.timer_switches()),
            if self.nvhe { "entry/exit" } else { "load/put" },
            v.timer_irqs,
            self.vmm.timer_wakes,
            self.idle_ticks
        );
        s += &format!(
            "switch: SPE {:.1} accesses+barriers per round trip ({} of {} entries live), PMU {:.1} per load/put\n",
            per(v.spe_switch_live, v.live_trips),
            v.live_trips,
            v.entries,
            per(v.pmu_load_put, v.pmu_live_loads)
        );
        let g = &self.gic;
        s += &format!(
            "gic: {} interrupts taken ({} PMU, {} SPE, {} SGI, {} other), {} maintenance exits, \
             {} GIC MMIO in the hypervisor, {} LR writes and {} LR reads over {} entries with LRs\n",
            g.acked_pmu + g.acked_spe + g.acked_sgi + g.acked_other,
            g.acked_pmu,
            g.acked_spe,
            g.acked_sgi,
            g.acked_other,
            g.maintenance_exits,
            g.mmio,
            g.lr_writes,
            g.lr_reads,
            g.flushes_with_lrs
        );
        for (i, r) in self.vcpus.iter().enumerate() {
            s += &format!(
                "vcpu {i} (MPIDR {:#x}): {} instructions, {} slices, {} migrations, \
                 {} entries, on CPUs {:?}\n",
                r.mpidr, r.insns, r.slices, r.migrations, r.stats.entries, r.cpus
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
        for h in &self.host {
            s += &format!(
                "host cpu {}: {} kernel operations, {} SPE bytes, {} PMBIRQs\n",
                h.cpu,
                h.ops,
                h.spe_data.len(),
                h.pmbirqs
            );
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
            "wedged": self.wedged,
            "instructions": self.insns,
            "seconds": self.seconds,
            "machine_seconds": self.machine_seconds,
            "loads_per_vcpu_per_machine_second": self.switch_rate(),
            "rounds": self.rounds,
            "vcpus": self.vcpus.iter().map(|r| serde_json::json!({
                "mpidr": r.mpidr,
                "instructions": r.insns,
                "slices": r.slices,
                "migrations": r.migrations,
                "cpus": r.cpus,
                "loads": r.stats.loads,
                "entries": r.stats.entries,
                "pmu_live_loads": r.stats.pmu_live_loads,
                "live_trips": r.stats.live_trips,
            })).collect::<Vec<_>>(),
            "exits": {
                "sysreg": v.sysreg_exits,
                "pmu_traps": v.pmu_trap_exits,
                "hypercalls": self.vmm.hypercalls,
                "mmio": self.vmm.mmio,
                "irq": v.irq_exits,
                "idle": self.vmm.idle,
            },
            "timer": {
                "per_switch": per(v.timer_switch, self.timer_switches()),
                "irqs": v.timer_irqs,
                "wakes": self.vmm.timer_wakes,
                "idle_ticks": self.idle_ticks,
            },
            "switch": {
                "entries": v.entries,
                "live_trips": v.live_trips,
                "spe_per_live_trip": per(v.spe_switch_live, v.live_trips),
                "pmu_per_load_put": per(v.pmu_load_put, v.pmu_live_loads),
            },
            "gic": {
                "acked_pmu": self.gic.acked_pmu,
                "acked_spe": self.gic.acked_spe,
                "acked_sgi": self.gic.acked_sgi,
                "acked_other": self.gic.acked_other,
                "maintenance_exits": self.gic.maintenance_exits,
                "mmio": self.gic.mmio,
                "lr_writes": self.gic.lr_writes,
                "lr_reads": self.gic.lr_reads,
                "entries_with_lrs": self.gic.flushes_with_lrs,
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
