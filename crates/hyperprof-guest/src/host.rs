//! A bare-metal host kernel: a VHE kernel at EL2 on every PE of a machine,
//! profiling itself with SPE and the PMU while it runs user processes at EL0
//! (and some kernel work at EL2), the way Linux with `perf record -e
//! arm_spe//` and `perf stat` would.
//!
//! Per PE it sets HCR_EL2.{E2H,TGE}, keeps the profiling buffer at EL2
//! (MDCR_EL2.E2PB = 0b00) and all counters (MDCR_EL2.HPMN = N), maps the
//! buffer through its own EL2&0 stage-1 tables, and starts the drivers; then
//! it schedules processes in slices, taking PMBIRQ and the PMU interrupt
//! into the drivers, and at the end stops and collects.

use hyperprof_arch::{hcr_el2, mdcr_el2, Cpu, ExceptionLevel, SysReg};
use hyperprof_sim::event::EventCounts;
use hyperprof_sim::machine::Machine;
use hyperprof_sim::memory::{MemError, PAGE_SIZE};
use hyperprof_sim::mmu::{MapError, Perm, Stage1Tables};
use hyperprof_sim::pe::{AccessStats, RunExit};
use hyperprof_sim::spe::SpeStats;
use hyperprof_sim::workload::{by_name, Workload};

use crate::drivers::pmu::{EventSpec, PmuDriver, Range};
use crate::drivers::spe::{self, Buffer, Mistakes, SpeDriver, SpeDriverStats, SpeSessionConfig};
use crate::drivers::DriverError;

/// Where each PE's profiling buffer is mapped (EL2&0, TTBR0 half), one
/// 4 GiB window per CPU.
pub const BUFFER_VA: u64 = 0x0000_7000_0000_0000;

/// The host's configuration.
#[derive(Clone, Debug)]
pub struct HostConfig {
    /// The SPE session every PE with an SPE unit runs (`None`: no SPE).
    pub spe: Option<SpeSessionConfig>,
    /// Profiling buffer size per PE, in bytes (page multiple).
    pub spe_buffer_bytes: u64,
    /// PMU events every PE counts (or samples).
    pub pmu_events: Vec<EventSpec>,
    /// User processes (workload names) each PE runs in turn at EL0.
    pub processes: Vec<String>,
    /// Kernel work (a workload name) run at EL2 after every slice.
    pub kernel_work: Option<String>,
    /// Operations of kernel work per slice.
    pub kernel_ops_per_slice: u64,
    /// User operations per PE.
    pub ops_per_pe: u64,
    /// Scheduling slice, in operations.
    pub slice_ops: u64,
    /// Seed of the workloads.
    pub seed: u64,
    /// Mistakes the SPE driver makes (tests of the strict machine).
    pub mistakes: Mistakes,
}

/// Why the host could not run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostError {
    /// Out of memory, or a memory error.
    Mem(MemError),
    /// Building the buffer mapping failed.
    Map(MapError),
    /// A driver failed (on which CPU).
    Driver {
        /// CPU.
        cpu: usize,
        /// What failed.
        error: DriverError,
    },
    /// A workload name that does not exist.
    UnknownWorkload(String),
    /// An interrupt stayed asserted after its handler ran.
    InterruptStorm {
        /// CPU.
        cpu: usize,
        /// PMBIRQ level.
        pmbirq: bool,
        /// PMU interrupt level.
        pmuirq: bool,
    },
    /// The configuration cannot run.
    BadConfig(String),
}

impl core::fmt::Display for HostError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            HostError::Mem(e) => write!(f, "memory: {e}"),
            HostError::Map(e) => write!(f, "mapping the profiling buffer: {e}"),
            HostError::Driver { cpu, error } => write!(f, "cpu {cpu}: {error}"),
            HostError::UnknownWorkload(n) => write!(f, "unknown workload {n:?}"),
            HostError::InterruptStorm { cpu, pmbirq, pmuirq } => write!(
                f,
                "cpu {cpu}: interrupt still asserted after its handler (PMBIRQ {pmbirq}, PMU {pmuirq})"
            ),
            HostError::BadConfig(why) => write!(f, "{why}"),
        }
    }
}

/// One counter's result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CounterReport {
    /// Event number.
    pub event: u16,
    /// Hardware counter used.
    pub counter: u8,
    /// 64-bit total.
    pub count: u64,
    /// Overflow interrupts taken for it.
    pub overflows: u64,
}

/// What one PE did.
#[derive(Clone, Debug)]
pub struct PeReport {
    /// CPU number.
    pub cpu: usize,
    /// Operations executed (user and kernel).
    pub ops: u64,
    /// The SPE unit's own accounting (`None` without an SPE unit).
    pub spe_unit: Option<SpeStats>,
    /// Records still held in the SPE unit at the end (0 after a clean stop).
    pub spe_queued: u64,
    /// The SPE driver's accounting.
    pub spe_driver: Option<SpeDriverStats>,
    /// The SPE data collected, in order.
    pub spe_data: Vec<u8>,
    /// PMU results.
    pub counters: Vec<CounterReport>,
    /// PMBIRQ interrupts taken.
    pub pmbirqs: u64,
    /// PMU interrupts taken.
    pub pmuirqs: u64,
    /// Register accesses and barriers the kernel spent.
    pub access: AccessStats,
    /// Every event the PE's operations caused (ground truth).
    pub events: EventCounts,
}

fn drv(cpu: usize) -> impl Fn(DriverError) -> HostError {
    move |error| HostError::Driver { cpu, error }
}

/// The per-PE kernel state.
struct PerPe {
    spe: Option<SpeDriver>,
    pmu: PmuDriver,
    procs: Vec<Box<dyn Workload>>,
    kernel: Option<Box<dyn Workload>>,
    pmbirqs: u64,
    pmuirqs: u64,
}

/// Boots PE `cpu`: VHE controls, the EL2 buffer mapping, the drivers.
fn boot(m: &mut Machine, cpu: usize, cfg: &HostConfig) -> Result<PerPe, HostError> {
    let has_spe = m.pe(cpu).is_some_and(|p| p.has_spe());
    let buffer = match (&cfg.spe, has_spe) {
        (Some(_), true) => Some(map_buffer(
            m,
            BUFFER_VA + ((cpu as u64) << 32),
            cfg.spe_buffer_bytes,
        )?),
        _ => None,
    };
    let mut c = m
        .cpu(cpu)
        .ok_or_else(|| HostError::BadConfig(format!("no cpu {cpu}")))?;
    let d = drv(cpu);
    let hcr = hcr_el2::E2H.set(hcr_el2::TGE.set(0, 1), 1);
    c.write(SysReg::HCR_EL2, hcr).map_err(|fault| {
        d(DriverError::Access {
            reg: SysReg::HCR_EL2,
            fault,
        })
    })?;
    // The host keeps the buffer (E2PB = 0b00) and every counter (HPMN = N).
    let mdcr = c.read(SysReg::MDCR_EL2).map_err(|fault| {
        d(DriverError::Access {
            reg: SysReg::MDCR_EL2,
            fault,
        })
    })?;
    let mdcr = mdcr_el2::E2PB.set(mdcr, mdcr_el2::E2PB_EL2);
    c.write(SysReg::MDCR_EL2, mdcr).map_err(|fault| {
        d(DriverError::Access {
            reg: SysReg::MDCR_EL2,
            fault,
        })
    })?;
    if let Some((root, _)) = buffer {
        c.write(SysReg::TTBR0_EL2, root).map_err(|fault| {
            d(DriverError::Access {
                reg: SysReg::TTBR0_EL2,
                fault,
            })
        })?;
    }
    c.isb();
    let spe = match (&cfg.spe, buffer) {
        (Some(session), Some((_, buf))) => {
            let caps = spe::probe(&mut c).map_err(&d)?;
            let mut drvr = SpeDriver::new(*session, caps, buf)
                .map_err(&d)?
                .with_mistakes(cfg.mistakes);
            drvr.start(&mut c).map_err(&d)?;
            Some(drvr)
        }
        _ => None,
    };
    let mut pmu = PmuDriver::probe(&mut c, Range::Low).map_err(&d)?;
    for spec in &cfg.pmu_events {
        pmu.add(*spec).map_err(&d)?;
    }
    pmu.start(&mut c).map_err(&d)?;
    let seed = cfg.seed ^ (cpu as u64) << 40;
    let procs = cfg
        .processes
        .iter()
        .enumerate()
        .map(|(i, name)| {
            by_name(name, seed ^ (i as u64) << 20)
                .ok_or_else(|| HostError::UnknownWorkload(name.clone()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let kernel = cfg
        .kernel_work
        .as_ref()
        .map(|name| {
            by_name(name, seed ^ 0xfeed).ok_or_else(|| HostError::UnknownWorkload(name.clone()))
        })
        .transpose()?;
    Ok(PerPe {
        spe,
        pmu,
        procs,
        kernel,
        pmbirqs: 0,
        pmuirqs: 0,
    })
}

/// Allocates `bytes` of buffer and maps it at `va` in fresh stage-1 tables;
/// returns the table root and the buffer.
pub fn map_buffer(m: &mut Machine, va: u64, bytes: u64) -> Result<(u64, Buffer), HostError> {
    if bytes == 0 || bytes % PAGE_SIZE != 0 || bytes > 1 << 32 {
        return Err(HostError::BadConfig(format!(
            "SPE buffer of {bytes} bytes: must be a non-zero page multiple up to 4 GiB"
        )));
    }
    let tables = Stage1Tables::new(&mut m.mem, &mut m.alloc).map_err(HostError::Map)?;
    for page in 0..bytes / PAGE_SIZE {
        let pa = m.alloc.alloc(&mut m.mem).map_err(HostError::Mem)?;
        tables
            .map(
                &mut m.mem,
                &mut m.alloc,
                va + page * PAGE_SIZE,
                pa,
                PAGE_SIZE,
                Perm::RW,
            )
            .map_err(HostError::Map)?;
    }
    Ok((tables.root, Buffer { va, size: bytes }))
}

/// A host kernel's SPE session on `cpu`, the way the host starts perf:
/// a buffer of `bytes` at `va` in fresh tables installed in `ttbr` (the
/// kernel's own: TTBR0_EL2 for a VHE host at EL2, TTBR0_EL1 for one at EL1),
/// then the driver probed and started.
pub fn start_session(
    m: &mut Machine,
    cpu: usize,
    ttbr: SysReg,
    va: u64,
    bytes: u64,
    session: SpeSessionConfig,
) -> Result<SpeDriver, HostError> {
    let (root, buf) = map_buffer(m, va, bytes)?;
    let d = drv(cpu);
    let mut c = m
        .cpu(cpu)
        .ok_or_else(|| HostError::BadConfig(format!("no cpu {cpu}")))?;
    c.write(ttbr, root)
        .map_err(|fault| d(DriverError::Access { reg: ttbr, fault }))?;
    c.isb();
    let caps = spe::probe(&mut c).map_err(&d)?;
    let mut driver = SpeDriver::new(session, caps, buf).map_err(&d)?;
    driver.start(&mut c).map_err(&d)?;
    Ok(driver)
}

/// Takes the interrupts asserted on `cpu` into the drivers (at EL2).
fn take_interrupts(m: &mut Machine, cpu: usize, k: &mut PerPe) -> Result<(), HostError> {
    let d = drv(cpu);
    let pe = m
        .pe_mut(cpu)
        .ok_or_else(|| HostError::BadConfig(format!("no cpu {cpu}")))?;
    let back_to = pe.el();
    pe.exception_entry(ExceptionLevel::EL2);
    let lines = pe.irq_lines();
    let mut c = m
        .cpu(cpu)
        .ok_or_else(|| HostError::BadConfig(format!("no cpu {cpu}")))?;
    if lines.pmbirq {
        k.pmbirqs += 1;
        match k.spe.as_mut() {
            Some(s) => {
                s.handle_irq(&mut c).map_err(&d)?;
            }
            None => {
                return Err(HostError::InterruptStorm {
                    cpu,
                    pmbirq: true,
                    pmuirq: false,
                })
            }
        }
    }
    if lines.pmuirq {
        k.pmuirqs += 1;
        k.pmu.handle_irq(&mut c).map_err(&d)?;
    }
    let pe = c.pe();
    let after = pe.irq_lines();
    if after.any() {
        return Err(HostError::InterruptStorm {
            cpu,
            pmbirq: after.pmbirq,
            pmuirq: after.pmuirq,
        });
    }
    pe.eret(back_to);
    Ok(())
}

/// Runs `w` at the PE's current EL for `budget` operations, taking interrupts.
fn run_for(
    m: &mut Machine,
    cpu: usize,
    k: &mut PerPe,
    which: Option<usize>,
    budget: u64,
) -> Result<u64, HostError> {
    let mut left = budget;
    while left > 0 {
        let mut done = 0;
        let w: &mut dyn Workload = match which {
            Some(i) => k.procs[i].as_mut(),
            None => match k.kernel.as_mut() {
                Some(w) => w.as_mut(),
                None => return Ok(budget),
            },
        };
        let exit = m
            .run(cpu, w, left, &mut done)
            .ok_or_else(|| HostError::BadConfig(format!("no cpu {cpu}")))?;
        left -= done;
        if let RunExit::Interrupt(_) = exit {
            take_interrupts(m, cpu, k)?;
        }
    }
    Ok(budget)
}

/// Boots the host on every PE of `m`, runs the processes and reports.
pub fn run(m: &mut Machine, cfg: &HostConfig) -> Result<Vec<PeReport>, HostError> {
    if cfg.processes.is_empty() {
        return Err(HostError::BadConfig("no processes to run".into()));
    }
    if cfg.slice_ops == 0 {
        return Err(HostError::BadConfig("slice_ops must be at least 1".into()));
    }
    let n = m.pes().len();
    let mut reports = Vec::with_capacity(n);
    for cpu in 0..n {
        let mut k = boot(m, cpu, cfg)?;
        let mut user_done = 0;
        let mut next = 0;
        while user_done < cfg.ops_per_pe {
            // Context switch: CONTEXTIDR_EL1 (EL2 under E2H) holds the PID.
            {
                let mut c = m
                    .cpu(cpu)
                    .ok_or_else(|| HostError::BadConfig(format!("no cpu {cpu}")))?;
                c.write(SysReg::CONTEXTIDR_EL1, 1000 + next as u64)
                    .map_err(|fault| {
                        drv(cpu)(DriverError::Access {
                            reg: SysReg::CONTEXTIDR_EL1,
                            fault,
                        })
                    })?;
            }
            let slice = cfg.slice_ops.min(cfg.ops_per_pe - user_done);
            if let Some(pe) = m.pe_mut(cpu) {
                pe.eret(ExceptionLevel::EL0);
            }
            user_done += run_for(m, cpu, &mut k, Some(next), slice)?;
            // The tick: back in the kernel, some kernel work, then the next process.
            if let Some(pe) = m.pe_mut(cpu) {
                pe.exception_entry(ExceptionLevel::EL2);
            }
            if cfg.kernel_ops_per_slice > 0 {
                run_for(m, cpu, &mut k, None, cfg.kernel_ops_per_slice)?;
            }
            next = (next + 1) % k.procs.len();
        }
        let mut c = m
            .cpu(cpu)
            .ok_or_else(|| HostError::BadConfig(format!("no cpu {cpu}")))?;
        let d = drv(cpu);
        let mut spe_data = Vec::new();
        if let Some(s) = k.spe.as_mut() {
            s.stop(&mut c).map_err(&d)?;
            spe_data = s.take_data();
        }
        let mut counters = Vec::new();
        for (i, slot) in k.pmu.slots().iter().enumerate() {
            counters.push(CounterReport {
                event: slot.spec.event,
                counter: slot.counter,
                count: k.pmu.read(&mut c, i).map_err(&d)?,
                overflows: slot.overflows,
            });
        }
        k.pmu.stop(&mut c).map_err(&d)?;
        let pe = c.pe();
        reports.push(PeReport {
            cpu,
            ops: pe.ops(),
            spe_unit: pe.spe().map(|s| *s.stats()),
            spe_queued: pe.spe().map_or(0, |s| s.queued() as u64),
            spe_driver: k.spe.as_ref().map(|s| s.stats()),
            spe_data,
            counters,
            pmbirqs: k.pmbirqs,
            pmuirqs: k.pmuirqs,
            access: pe.access_stats(),
            events: *pe.events(),
        });
    }
    Ok(reports)
}
