//! The system run: a host that profiles its own kernel with SPE and counts
//! with its reserved PMU counters, and VMs whose guest kernels profile
//! themselves with guest SPE and the guest PMU (partitioned or emulated),
//! their vCPUs moving between the physical CPUs. Every scenario that has
//! VMs with a PMU, or a heterogeneous machine, runs here; [`Setup`] is what
//! a scenario file describes.
//!
//! A VM's guest is either a Rust guest kernel running a closed-form
//! workload, or real AArch64 code booted from an image
//! ([`super::code_vm`]). Each round starts with the migrations due then
//! ([`super::migration`]); every CPU runs a slice of host kernel work
//! (taking the host's PMBIRQ and PMU interrupts into its drivers), then
//! each vCPU runs one slice on the CPU the schedule gives it: load,
//! KVM_RUN, put.

use hyperprof_arch::ExceptionLevel;
use hyperprof_guest::drivers::pmu::EventSpec;
use hyperprof_guest::drivers::spe::{Buffer, SpeSessionConfig};
use hyperprof_guest::guest::GuestKernel;
use hyperprof_kvm::uapi::VcpuFeatures;
use hyperprof_kvm::vm::{Exit, Kvm, PmuSetup, VcpuStats, VmConfig, GUEST_RAM_IPA};
use hyperprof_sim::event::EventCounts;
use hyperprof_sim::machine::{Machine, MachineConfig};
use hyperprof_sim::op::Symbol;
use hyperprof_sim::spe::SpeStats;
use hyperprof_sim::workload::by_name;

use super::code_vm::{CodeImage, CodeOutcome, CodeVm};
use super::host::{host_irqs, unit_stats};
pub(crate) use super::host::{host_slice, start_host, stop_host, HostCpu};
use super::migration::{migrate, Migrated, Migration};
use crate::error::{Error, Result};

/// A whole run.
#[derive(Clone, Debug)]
pub struct Setup {
    /// Name shown in the report.
    pub name: String,
    /// Seed of every workload.
    pub seed: u64,
    /// The machine.
    pub machine: MachineConfig,
    /// The host kernel runs at EL1 (nVHE) rather than EL2 (VHE).
    pub nvhe: bool,
    /// The host.
    pub host: HostSetup,
    /// The VMs.
    pub vms: Vec<VmSetup>,
    /// Guest operations a vCPU runs before it gives the CPU back.
    pub slice_ops: u64,
    /// Host kernel operations per CPU per round.
    pub host_slice_ops: u64,
    /// How vCPUs move between CPUs.
    pub schedule: Schedule,
}

/// How vCPUs are placed each round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// vCPU `j` runs on the `(j + round)`-th of the CPUs it may use.
    Rotate,
    /// vCPU `j` always runs on the `j`-th of the CPUs it may use.
    Pinned,
}

/// The host's profiling.
#[derive(Clone, Debug)]
pub struct HostSetup {
    /// The host kernel's workload (a `kernel-` workload).
    pub workload: String,
    /// Host kernel operations per CPU: the host works a slice each round
    /// until it has done them (the run lasts until both host and guests
    /// are done).
    pub ops: u64,
    /// Event counters the host keeps for itself (the boot parameter).
    pub pmu_reserved: u8,
    /// SPE sampling of the host kernel on every CPU with an SPE unit.
    pub spe: Option<SpeSetup>,
    /// PMU events counted on every CPU: on the reserved counters, or on
    /// all counters when none are reserved (then no VM may have a PMU).
    pub pmu_events: Vec<EventSpec>,
}

/// An SPE session: its configuration and buffer size.
#[derive(Clone, Copy, Debug)]
pub struct SpeSetup {
    /// The driver's session.
    pub session: SpeSessionConfig,
    /// Buffer bytes (a page multiple).
    pub buffer_bytes: u64,
}

/// Guest SPE of a VM.
#[derive(Clone, Copy, Debug)]
pub struct GuestSpeSetup {
    /// PMBIRQ's PPI.
    pub irq: u32,
    /// SPE_MAX_BUFFER_SIZE (0: the SPU's own maximum).
    pub max_buffer_size: u64,
    /// The guest driver's session and buffer (`None` for a VM that boots
    /// an image, whose own driver chooses).
    pub spe: Option<SpeSetup>,
}

/// Guest PMU of a VM.
#[derive(Clone, Debug)]
pub struct GuestPmuSetup {
    /// The device attributes.
    pub attrs: PmuSetup,
    /// The guest kernel's perf events.
    pub events: Vec<EventSpec>,
}

/// One VM.
#[derive(Clone, Debug)]
pub struct VmSetup {
    /// Name.
    pub name: String,
    /// Guest RAM bytes.
    pub ram_bytes: u64,
    /// RLIMIT_MEMLOCK of its VMM.
    pub memlock_bytes: u64,
    /// The guest's user workload (empty for a VM that boots an image).
    pub workload: String,
    /// The seed of its workload, when not derived from the run's.
    pub seed: Option<u64>,
    /// The image it boots instead of running a workload.
    pub image: Option<CodeImage>,
    /// Where and when it migrates, in round order.
    pub migrations: Vec<Migration>,
    /// Guest user operations (shared between its vCPUs).
    pub ops: u64,
    /// vCPUs.
    pub vcpus: usize,
    /// Guest PMU.
    pub pmu: Option<GuestPmuSetup>,
    /// Guest SPE.
    pub spe: Option<GuestSpeSetup>,
}

/// What one vCPU did.
pub struct VcpuOutcome {
    /// Its index in the hypervisor.
    pub vcpu: usize,
    /// Guest operations run.
    pub ops: u64,
    /// The hypervisor's counts.
    pub stats: VcpuStats,
    /// The counts of the vCPUs it was before each migration.
    pub former_stats: Vec<VcpuStats>,
    /// SPE data the guest collected.
    pub spe_data: Vec<u8>,
    /// Buffer-full interrupts its SPE driver handled.
    pub spe_buffer_full: u64,
    /// What the CPUs' SPE units did while it ran.
    pub spe_unit: SpeStats,
    /// PMU totals per event (the setup's order).
    pub pmu_counts: Vec<u64>,
    /// Overflow interrupts per event.
    pub pmu_overflows: Vec<u64>,
    /// Events its operations caused (the ground truth).
    pub truth: EventCounts,
    /// A driver error, if one ended its session.
    pub error: Option<String>,
}

/// What one VM did.
pub struct VmOutcome {
    /// Its setup.
    pub setup: VmSetup,
    /// Per vCPU.
    pub vcpus: Vec<VcpuOutcome>,
    /// Bytes still pinned at the end.
    pub pinned_at_end: u64,
    /// Most bytes pinned at once.
    pub pinned_peak: u64,
    /// The workload's (or the image's) functions.
    pub symbols: Vec<Symbol>,
    /// What a VM that booted an image did.
    pub code: Option<CodeOutcome>,
    /// The migrations that took place.
    pub migrated: Vec<Migrated>,
}

/// What the host did on one CPU.
pub struct HostCpuOutcome {
    /// The CPU.
    pub cpu: usize,
    /// Host kernel operations.
    pub ops: u64,
    /// SPE data (empty without an SPE unit or session).
    pub spe_data: Vec<u8>,
    /// Buffer-full interrupts.
    pub spe_buffer_full: u64,
    /// The SPE unit's counts while the host ran.
    pub spe_unit: Option<SpeStats>,
    /// The unit's counts for host and guests together.
    pub spe_unit_total: Option<SpeStats>,
    /// PMU totals per host event.
    pub pmu_counts: Vec<u64>,
    /// Overflow interrupts per host event.
    pub pmu_overflows: Vec<u64>,
    /// PMU interrupts the host took.
    pub pmu_interrupts: u64,
    /// PMBIRQs the host took.
    pub pmbirqs: u64,
    /// Events of the host's own work.
    pub truth: EventCounts,
    /// The CPU has an SPE unit.
    pub has_spe: bool,
}

/// Everything a run produced.
pub struct Outcome {
    /// The setup it ran.
    pub setup: Setup,
    /// Per VM.
    pub vms: Vec<VmOutcome>,
    /// Per CPU.
    pub host: Vec<HostCpuOutcome>,
    /// The host workload's functions.
    pub host_symbols: Vec<Symbol>,
    /// Rounds run.
    pub rounds: u64,
    /// Problems the run saw (each fails the invariant it names).
    pub problems: Vec<(Invariant, String)>,
}

/// The invariants a run checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invariant {
    /// Host and guest SPE records stay in their own buffers.
    Isolation,
    /// Every sampled operation is accounted for; every record collected.
    Conservation,
    /// Guest and host PMU counts equal the events of their own work.
    ExactCounts,
    /// Nothing stays pinned after a guest disables its buffer.
    Limits,
    /// Every guest kernel finished without a driver error.
    Completion,
}

/// A failure building the system: the scenario asks for something the
/// machine or the hypervisor refuses (bad input, found by `scenario check`).
pub(super) fn fail(what: &str) -> impl Fn(String) -> Error + '_ {
    move |e| Error::Usage(format!("{what}: {e}"))
}

/// A failure while the system runs: the run could not complete.
pub(super) fn fail_run(what: &str) -> impl Fn(String) -> Error + '_ {
    move |e| Error::Run(format!("run: {what}: {e}"))
}

/// Consecutive rounds without any guest or host operation done after which
/// a run is declared wedged.
pub const STALL_ROUNDS: u64 = 64;

/// Consecutive interrupts without an operation done, in one host slice,
/// after which the CPU is declared stormed.
pub const STORM_INTERRUPTS: u64 = 1000;

/// The pid of the host's kernel work: CONTEXTIDR of the host's samples
/// (CONTEXTIDR_EL2 on a VHE host, CONTEXTIDR_EL1 on an nVHE one).
pub const HOST_KERNEL_PID: u32 = 100;
/// The pid of each VM's user process; vCPU `j` runs its thread
/// `GUEST_PID + j` (the guest's CONTEXTIDR_EL1).
pub const GUEST_PID: u32 = 1000;

const GUEST_BUF_VA: u64 = 0x0000_0040_0000_0000;

struct Vcpu {
    vm: usize,
    vcpu: usize,
    guest: Guest,
    allowed_cpus: Vec<usize>,
    spe_unit: SpeStats,
    /// The hypervisor vCPUs it was before each migration.
    former: Vec<usize>,
}

/// What runs on a vCPU.
enum Guest {
    /// A Rust guest kernel running a workload.
    Kernel(Box<GuestKernel>),
    /// vCPU `n` of the VM's booted image.
    Code(usize),
}

impl Vcpu {
    /// The guest kernel, for a workload VM.
    fn kernel(&self) -> Option<&GuestKernel> {
        match &self.guest {
            Guest::Kernel(k) => Some(k),
            Guest::Code(_) => None,
        }
    }

    /// Whether it will not run again.
    fn done(&self, code: &[Option<CodeVm>]) -> bool {
        match &self.guest {
            Guest::Kernel(k) => k.finished(),
            Guest::Code(n) => code[self.vm].as_ref().is_none_or(|c| !c.wants(*n)),
        }
    }

    /// Operations (instructions, for code) it has run.
    fn work(&self, code: &[Option<CodeVm>]) -> u64 {
        match &self.guest {
            Guest::Kernel(k) => k.ops_done(),
            Guest::Code(n) => code[self.vm].as_ref().map_or(0, |c| c.retired_by(*n)),
        }
    }
}

/// The seed of vCPU `j` of VM `i`'s workload.
fn workload_seed(setup: &Setup, i: usize, j: usize) -> u64 {
    let vm = setup.vms[i]
        .seed
        .unwrap_or(setup.seed ^ ((i as u64 + 1) << 8));
    vm ^ j as u64
}

/// A system built from a [`Setup`], ready to run: the machine, the
/// hypervisor with every VM and vCPU created and configured, and the host's
/// drivers started. Building it is everything a run does before its first
/// round, so a setup that builds is one the hypervisor accepts (`scenario
/// check` builds it and stops there).
pub struct System {
    setup: Setup,
    kvm: Kvm,
    host: Vec<HostCpu>,
    host_el: ExceptionLevel,
    host_symbols: Vec<Symbol>,
    vcpus: Vec<Vcpu>,
    vm_ids: Vec<usize>,
    symbols: Vec<Vec<Symbol>>,
    code: Vec<Option<CodeVm>>,
}

/// Runs `setup`; `progress(done, total)` is called after every round with
/// guest operations done and to do.
pub fn run(setup: &Setup, progress: &mut dyn FnMut(u64, u64)) -> Result<Outcome> {
    build(setup)?.run(progress)
}

/// Builds the system of `setup` without running it. Errors name what the
/// machine or the hypervisor refused (as [`Error::Usage`]: bad input).
pub fn build(setup: &Setup) -> Result<System> {
    let machine = Machine::new(&setup.machine).map_err(|e| fail("machine")(e.to_string()))?;
    let ncpus = setup.machine.pes.len();
    let mut kvm = if setup.nvhe {
        Kvm::new_nvhe(machine)
    } else {
        Kvm::new(machine)
    };
    let host_el = if setup.nvhe {
        ExceptionLevel::EL1
    } else {
        ExceptionLevel::EL2
    };
    kvm.set_host_pmu_reserve(setup.host.pmu_reserved)
        .map_err(|e| fail("host PMU reservation")(e.to_string()))?;

    let host = start_host(&mut kvm, &setup.host, setup.seed, setup.nvhe)?;
    let host_symbols = host
        .first()
        .map(|h| h.work.symbols().to_vec())
        .unwrap_or_default();

    // The VMs.
    let mut vcpus: Vec<Vcpu> = Vec::new();
    let mut vm_ids = Vec::new();
    let mut symbols = Vec::new();
    let mut code = Vec::new();
    for (i, v) in setup.vms.iter().enumerate() {
        let vm = kvm
            .create_vm(VmConfig {
                ram_bytes: v.ram_bytes,
                memlock_limit: v.memlock_bytes,
            })
            .map_err(|e| fail("create_vm")(format!("{}: {e}", v.name)))?;
        vm_ids.push(vm);
        symbols.push(match &v.image {
            Some(image) => image.symbols(),
            None => by_name(&v.workload, 0)
                .map(|w| w.symbols().to_vec())
                .ok_or_else(|| fail("workload")(v.workload.clone()))?,
        });
        let features = VcpuFeatures {
            spe: v.spe.is_some(),
            pmu_v3: v.pmu.is_some(),
        };
        let n = v.vcpus.max(1);
        let mut vm_vcpus = Vec::new();
        for j in 0..n {
            let vcpu = kvm
                .create_vcpu(vm, features)
                .map_err(|e| fail("create_vcpu")(format!("{}: {e}", v.name)))?;
            vm_vcpus.push(vcpu);
            if v.image.is_some() {
                let allowed = configure_code_vcpu(&mut kvm, v, vcpu, ncpus)?;
                vcpus.push(Vcpu {
                    vm: i,
                    vcpu,
                    guest: Guest::Code(j),
                    allowed_cpus: allowed,
                    spe_unit: SpeStats::default(),
                    former: Vec::new(),
                });
                continue;
            }
            let ops = v.ops / n as u64 + u64::from((j as u64) < v.ops % n as u64);
            let seed = workload_seed(setup, i, j);
            let wl =
                by_name(&v.workload, seed).ok_or_else(|| fail("workload")(v.workload.clone()))?;
            let mut allowed: Vec<usize> = (0..ncpus).collect();
            let mut kernel = match &v.spe {
                Some(s) => {
                    let spu = kvm
                        .spus()
                        .first()
                        .map(|s| (s.id, s.cpus.clone(), s.max_buffer_size()))
                        .ok_or_else(|| {
                            fail("guest SPE")(format!("{}: the machine has no SPE", v.name))
                        })?;
                    allowed = spu.1;
                    // 0 in the setup: the SPU's own maximum (0 there, for
                    // KVM too: no limit).
                    let max = if s.max_buffer_size == 0 {
                        spu.2
                    } else {
                        s.max_buffer_size
                    };
                    kvm.configure_spe(vcpu, spu.0, s.irq, max)
                        .map_err(|(attr, e)| {
                            fail("guest SPE")(format!("{}: attribute {attr}: {e}", v.name))
                        })?;
                    let va = GUEST_BUF_VA + ((j as u64) << 32);
                    let session = s.spe.ok_or_else(|| {
                        fail("guest SPE")(format!("{}: no session for its driver", v.name))
                    })?;
                    let ipa = GUEST_RAM_IPA + (16 << 20) + j as u64 * session.buffer_bytes;
                    let ttbr = kvm
                        .guest_map(vm, va, ipa, session.buffer_bytes)
                        .map_err(|e| fail("guest_map")(format!("{}: {e}", v.name)))?;
                    let buf = Buffer {
                        va,
                        size: session.buffer_bytes,
                    };
                    GuestKernel::new(ttbr, session.session, buf, wl, ops)
                }
                None => GuestKernel::without_spe(0, wl, ops),
            };
            if let Some(p) = &v.pmu {
                kvm.configure_pmu(vcpu, &p.attrs).map_err(|(attr, e)| {
                    fail("guest PMU")(format!("{}: attribute {attr}: {e}", v.name))
                })?;
                kernel = kernel.with_pmu(p.events.clone());
            }
            vcpus.push(Vcpu {
                vm: i,
                vcpu,
                guest: Guest::Kernel(Box::new(
                    kernel
                        .with_slices(setup.slice_ops)
                        .with_context_id(GUEST_PID + j as u32),
                )),
                allowed_cpus: allowed,
                spe_unit: SpeStats::default(),
                former: Vec::new(),
            });
        }
        code.push(match &v.image {
            Some(image) => Some(
                CodeVm::boot(
                    &mut kvm,
                    vm,
                    v.ram_bytes,
                    &vm_vcpus,
                    image,
                    features.pmu_v3,
                    features.spe,
                )
                .map_err(|e| fail("boot")(format!("{}: {e}", v.name)))?,
            ),
            None => None,
        });
    }

    Ok(System {
        setup: setup.clone(),
        kvm,
        host,
        host_el,
        host_symbols,
        vcpus,
        vm_ids,
        symbols,
        code,
    })
}

/// Gives vCPU `vcpu` of code VM `v` its guest SPE and vPMU (the image runs
/// its own drivers); returns the CPUs it may run on: its SPU's with guest
/// SPE, else every one of the `ncpus`.
fn configure_code_vcpu(
    kvm: &mut Kvm,
    v: &VmSetup,
    vcpu: usize,
    ncpus: usize,
) -> Result<Vec<usize>> {
    let mut allowed: Vec<usize> = (0..ncpus).collect();
    if let Some(s) = &v.spe {
        let (spu, cpus, own) = kvm
            .spus()
            .first()
            .map(|s| (s.id, s.cpus.clone(), s.max_buffer_size()))
            .ok_or_else(|| fail("guest SPE")(format!("{}: the machine has no SPE", v.name)))?;
        allowed = cpus;
        let max = if s.max_buffer_size == 0 {
            own
        } else {
            s.max_buffer_size
        };
        kvm.configure_spe(vcpu, spu, s.irq, max)
            .map_err(|(attr, e)| fail("guest SPE")(format!("{}: attribute {attr}: {e}", v.name)))?;
    }
    if let Some(p) = &v.pmu {
        kvm.configure_pmu(vcpu, &p.attrs)
            .map_err(|(attr, e)| fail("guest PMU")(format!("{}: attribute {attr}: {e}", v.name)))?;
    }
    Ok(allowed)
}

impl System {
    /// The setup it was built from.
    pub fn setup(&self) -> &Setup {
        &self.setup
    }

    /// Runs the rounds until host and guests are done; a run that makes no
    /// progress for [`STALL_ROUNDS`] rounds fails at once, saying what was
    /// pending.
    pub fn run(self, progress: &mut dyn FnMut(u64, u64)) -> Result<Outcome> {
        let System {
            setup,
            mut kvm,
            mut host,
            host_el,
            host_symbols,
            mut vcpus,
            mut vm_ids,
            symbols,
            mut code,
        } = self;
        let setup = &setup;
        let total: u64 = setup
            .vms
            .iter()
            .filter(|v| v.image.is_none())
            .map(|v| v.ops)
            .sum();
        let mut pinned_peak = vec![0u64; setup.vms.len()];
        let mut migrated: Vec<Vec<Migrated>> = vec![Vec::new(); setup.vms.len()];
        let mut problems = Vec::new();
        let mut round = 0u64;
        let mut stalled = 0u64;
        let host_ops = setup.host.ops;
        while vcpus.iter().any(|v| !v.done(&code)) || host.iter().any(|h| h.ops < host_ops) {
            let before = work_done(&vcpus, &host, &code);
            migrate_due(
                &mut kvm,
                setup,
                round,
                (&mut vcpus, &mut vm_ids, &code),
                &mut migrated,
                &mut problems,
            )?;
            for (cpu, h) in host.iter_mut().enumerate() {
                let slice = setup.host_slice_ops.min(host_ops - h.ops.min(host_ops));
                if slice > 0 {
                    host_slice(&mut kvm, cpu, h, slice, host_el)?;
                }
            }
            for (j, v) in vcpus.iter_mut().enumerate() {
                if v.done(&code) {
                    continue;
                }
                let k = v.allowed_cpus.len().max(1) as u64;
                let slot = match setup.schedule {
                    Schedule::Rotate => (j as u64 + round) % k,
                    Schedule::Pinned => j as u64 % k,
                };
                let cpu = v.allowed_cpus.get(slot as usize).copied().unwrap_or(0);
                // What the SPE unit does at load and put (draining and
                // resuming the host's session) is the host's; what it does
                // between entry and exit, the guest's.
                let t0 = unit_stats(&mut kvm, cpu);
                kvm.load(v.vcpu, cpu).map_err(fail_run("load"))?;
                let t1 = unit_stats(&mut kvm, cpu);
                let exit = match &mut v.guest {
                    Guest::Kernel(k) => kvm.run(v.vcpu, k.as_mut()),
                    Guest::Code(n) => {
                        if let Some(c) = code[v.vm].as_mut() {
                            c.slice(&mut kvm, *n, setup.slice_ops);
                        }
                        // The board served every exit that needed the VMM.
                        Exit::Yield
                    }
                };
                let t2 = unit_stats(&mut kvm, cpu);
                kvm.put(v.vcpu).map_err(fail_run("put"))?;
                let t3 = unit_stats(&mut kvm, cpu);
                v.spe_unit.add_window(&t1, &t2);
                host[cpu].spe_unit.add_window(&t0, &t1);
                host[cpu].spe_unit.add_window(&t2, &t3);
                match exit {
                    Exit::Halt | Exit::Yield => {}
                    other => {
                        return Err(fail_run("KVM_RUN")(format!(
                            "{} vCPU {j}: {other:?}",
                            setup.vms[v.vm].name
                        )))
                    }
                }
                // Back in the host with interrupts enabled: it takes what the
                // guest exited for. Left pending, a host interrupt would make
                // every later entry exit at once (once the host has no work of
                // its own left, nothing else would take it).
                host_irqs(&mut kvm, cpu, &mut host[cpu], host_el)?;
                let vm = vm_ids[v.vm];
                let pinned = kvm.pinned_bytes(vm).unwrap_or(0);
                pinned_peak[v.vm] = pinned_peak[v.vm].max(pinned);
            }
            round += 1;
            let done: u64 = vcpus
                .iter()
                .filter_map(|v| v.kernel().map(GuestKernel::ops_done))
                .sum();
            progress(done, total);
            if work_done(&vcpus, &host, &code) == before {
                stalled += 1;
                if stalled >= STALL_ROUNDS {
                    return Err(fail_run("no progress")(pending(
                        &mut kvm, setup, &vcpus, &host, &code, round,
                    )));
                }
            } else {
                stalled = 0;
            }
        }

        // Collect.
        let host_out = stop_host(&mut kvm, host, &mut problems)?;
        for s in &setup.vms {
            for step in s.migrations.iter().filter(|m| m.round >= round) {
                problems.push((
                    Invariant::Completion,
                    format!(
                        "{}: the migration of round {} did not happen: the run ended at round {round}",
                        s.name, step.round
                    ),
                ));
            }
        }
        let work: Vec<u64> = vcpus.iter().map(|v| v.work(&code)).collect();
        let mut code_out: Vec<Option<(CodeOutcome, Vec<Vec<u8>>)>> = code
            .into_iter()
            .map(|c| c.map(|c| c.finish(&mut kvm)))
            .collect();
        let mut vms: Vec<VmOutcome> = setup
            .vms
            .iter()
            .enumerate()
            .map(|(i, s)| VmOutcome {
                setup: s.clone(),
                vcpus: Vec::new(),
                pinned_at_end: kvm.pinned_bytes(vm_ids[i]).unwrap_or(0),
                pinned_peak: pinned_peak[i],
                symbols: symbols[i].clone(),
                code: None,
                migrated: std::mem::take(&mut migrated[i]),
            })
            .collect();
        for (v, ops) in vcpus.into_iter().zip(work) {
            let stats = kvm
                .vcpu_stats(v.vcpu)
                .ok_or_else(|| fail_run("stats")("no vCPU".into()))?;
            let former_stats = v.former.iter().filter_map(|&f| kvm.vcpu_stats(f)).collect();
            let mut out = VcpuOutcome {
                vcpu: v.vcpu,
                ops,
                stats,
                former_stats,
                spe_data: Vec::new(),
                spe_buffer_full: 0,
                spe_unit: v.spe_unit,
                pmu_counts: Vec::new(),
                pmu_overflows: Vec::new(),
                truth: EventCounts::default(),
                error: None,
            };
            match &v.guest {
                Guest::Kernel(k) => {
                    out.pmu_overflows = k.pmu_driver().map(|(_, o)| o).unwrap_or_default();
                    out.spe_buffer_full = k.driver_stats().map_or(0, |d| d.buffer_full);
                    out.spe_data = k.data().to_vec();
                    out.pmu_counts = k.pmu_counts().to_vec();
                    out.error = k.error().map(|e| e.to_string());
                }
                Guest::Code(n) => {
                    // The image's own driver counts nothing for us: the
                    // unit's buffer-full events are the vCPU's.
                    out.spe_buffer_full = v.spe_unit.buffer_full_events;
                    if let Some((c, records)) = code_out[v.vm].as_mut() {
                        out.spe_data = records.get_mut(*n).map(std::mem::take).unwrap_or_default();
                        out.error = c.error.clone().filter(|_| *n == 0);
                    }
                }
            }
            vms[v.vm].vcpus.push(out);
        }
        for (vm, c) in vms.iter_mut().zip(code_out) {
            vm.code = c.map(|(c, _)| c);
        }
        // The ground truth of each workload vCPU: its workload from the
        // same seed, skipped over the operations it ran.
        for (i, vm) in vms.iter_mut().enumerate() {
            if vm.setup.image.is_some() {
                continue;
            }
            for (j, out) in vm.vcpus.iter_mut().enumerate() {
                let seed = workload_seed(setup, i, j);
                let mut w = by_name(&vm.setup.workload, seed)
                    .ok_or_else(|| fail_run("workload")(vm.setup.workload.clone()))?;
                w.skip(out.ops, &mut out.truth);
            }
        }
        Ok(Outcome {
            setup: setup.clone(),
            vms,
            host: host_out,
            host_symbols,
            rounds: round,
            problems,
        })
    }
}

/// Moves every VM whose migration is due at the start of `round` (each of
/// `vcpus` then runs on its new hypervisor vCPU, `vm_ids` names the new
/// VMs) and records it in `migrated`; a VM that had already finished does
/// not move, which is a completion problem.
fn migrate_due(
    kvm: &mut Kvm,
    setup: &Setup,
    round: u64,
    (vcpus, vm_ids, code): (&mut [Vcpu], &mut [usize], &[Option<CodeVm>]),
    migrated: &mut [Vec<Migrated>],
    problems: &mut Vec<(Invariant, String)>,
) -> Result<()> {
    for (i, s) in setup.vms.iter().enumerate() {
        for step in s.migrations.iter().filter(|m| m.round == round) {
            let mine: Vec<usize> = (0..vcpus.len()).filter(|&k| vcpus[k].vm == i).collect();
            if mine.iter().all(|&k| vcpus[k].done(code)) {
                problems.push((
                    Invariant::Completion,
                    format!(
                        "{}: the migration of round {round} did not happen: the VM had finished",
                        s.name
                    ),
                ));
                continue;
            }
            let from: Vec<usize> = mine.iter().map(|&k| vcpus[k].vcpu).collect();
            let (dest, moved, registers) = migrate(kvm, vm_ids[i], s, &from, step.partitioned)
                .map_err(fail_run("migration"))?;
            for (&k, new) in mine.iter().zip(moved) {
                let old = std::mem::replace(&mut vcpus[k].vcpu, new);
                vcpus[k].former.push(old);
            }
            let from_partitioned = migrated[i]
                .last()
                .map_or(s.pmu.as_ref().is_some_and(|p| p.attrs.partitioned), |m| {
                    m.step.partitioned
                });
            migrated[i].push(Migrated {
                step: step.clone(),
                from_partitioned,
                registers,
            });
            vm_ids[i] = dest;
        }
    }
    Ok(())
}

/// Guest and host operations done so far.
fn work_done(vcpus: &[Vcpu], host: &[HostCpu], code: &[Option<CodeVm>]) -> (u64, u64) {
    (
        vcpus.iter().map(|v| v.work(code)).sum(),
        host.iter().map(|h| h.ops).sum(),
    )
}

/// What a wedged run was waiting for: every unfinished vCPU and host CPU
/// with its operations and the interrupt lines of the CPUs.
fn pending(
    kvm: &mut Kvm,
    setup: &Setup,
    vcpus: &[Vcpu],
    host: &[HostCpu],
    code: &[Option<CodeVm>],
    round: u64,
) -> String {
    let mut parts = vec![format!(
        "nothing ran for {STALL_ROUNDS} rounds (at round {round})"
    )];
    for (j, v) in vcpus.iter().enumerate() {
        if v.done(code) {
            continue;
        }
        let name = &setup.vms[v.vm].name;
        match (&v.guest, code[v.vm].as_ref()) {
            (Guest::Kernel(k), _) => parts.push(format!(
                "{name} vCPU {j} at {} operations{}",
                k.ops_done(),
                k.error().map(|e| format!(" ({e})")).unwrap_or_default()
            )),
            (Guest::Code(n), Some(c)) => {
                parts.push(format!("{name} vCPU {n}: image {}", c.describe()))
            }
            (Guest::Code(_), None) => {}
        }
    }
    for (cpu, h) in host.iter().enumerate() {
        let lines = kvm
            .machine()
            .pe(cpu)
            .map(|p| p.irq_lines())
            .unwrap_or_default();
        if h.ops < setup.host.ops || lines.any() {
            parts.push(format!(
                "cpu {cpu}: host at {} of {} operations, interrupt lines {lines:?}",
                h.ops, setup.host.ops
            ));
        }
    }
    parts.join("; ")
}
