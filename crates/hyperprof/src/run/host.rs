//! The host's side of a system run ([`super::engine`]): its kernel's
//! drivers started on every CPU (SPE sampling where a CPU has a unit, PMU
//! events on the counters it reserves), its slices of kernel work with the
//! interrupts they raise taken into those drivers, and what they measured
//! collected at the end.

use hyperprof_arch::{Cpu, ExceptionLevel, SysReg};
use hyperprof_guest::drivers::pmu::{PmuDriver, Range};
use hyperprof_guest::drivers::spe::SpeDriver;
use hyperprof_kvm::vm::Kvm;
use hyperprof_sim::event::EventCounts;
use hyperprof_sim::op::Symbol;
use hyperprof_sim::pe::{IrqLines, RunExit};
use hyperprof_sim::spe::SpeStats;
use hyperprof_sim::workload::{by_name, Workload};

use super::engine::{
    fail, fail_run, HostCpuOutcome, HostSetup, Invariant, HOST_KERNEL_PID, STORM_INTERRUPTS,
};
use crate::error::Result;

const HOST_BUF_VA: u64 = 0x0000_7000_0000_0000;

/// Per-host-CPU drivers and workload.
pub(crate) struct HostCpu {
    pub(crate) spe: Option<SpeDriver>,
    pub(crate) pmu: Option<PmuDriver>,
    pub(crate) work: Box<dyn Workload>,
    pub(crate) truth: EventCounts,
    pub(crate) ops: u64,
    pub(crate) spe_unit: SpeStats,
    pub(crate) pmu_interrupts: u64,
    pub(crate) pmbirqs: u64,
}

/// The counts of `cpu`'s SPE unit so far (zero without one).
pub(crate) fn unit_stats(kvm: &mut Kvm, cpu: usize) -> SpeStats {
    kvm.machine()
        .pe(cpu)
        .and_then(|p| p.spe())
        .map(|s| *s.stats())
        .unwrap_or_default()
}

/// Starts the host on every CPU of `kvm`'s machine: SPE sampling of its
/// kernel where a CPU has a unit (and `host_setup` asks for it), its PMU
/// events on the counters it reserves, and its kernel workload.
pub(crate) fn start_host(
    kvm: &mut Kvm,
    host_setup: &HostSetup,
    seed: u64,
    nvhe: bool,
) -> Result<Vec<HostCpu>> {
    let ncpus = kvm.machine().pes().len();
    let mut host = Vec::new();
    for cpu in 0..ncpus {
        let work = by_name(&host_setup.workload, seed ^ 0xa5 ^ cpu as u64)
            .ok_or_else(|| fail("host workload")(host_setup.workload.clone()))?;
        let has_spe = kvm.machine().pe(cpu).is_some_and(|p| p.has_spe());
        let spe = match (&host_setup.spe, has_spe) {
            (Some(s), true) => {
                let ttbr = if nvhe {
                    SysReg::TTBR0_EL1
                } else {
                    SysReg::TTBR0_EL2
                };
                let va = HOST_BUF_VA + ((cpu as u64) << 32);
                Some(
                    hyperprof_guest::host::start_session(
                        kvm.machine(),
                        cpu,
                        ttbr,
                        va,
                        s.buffer_bytes,
                        s.session,
                    )
                    .map_err(|e| fail("host SPE session")(e.to_string()))?,
                )
            }
            _ => None,
        };
        {
            // The host kernel's thread id, in the CONTEXTIDR of its Exception
            // level (EL1 names EL2's under E2H).
            let mut c = kvm
                .machine()
                .cpu(cpu)
                .ok_or_else(|| fail("host")("no such CPU".into()))?;
            c.write(SysReg::CONTEXTIDR_EL1, HOST_KERNEL_PID.into())
                .map_err(|e| fail("host CONTEXTIDR")(format!("cpu {cpu}: {e}")))?;
            c.isb();
        }
        let pmu = if host_setup.pmu_events.is_empty() {
            None
        } else {
            // An nVHE host kernel at EL1 cannot write MDCR_EL2: it keeps
            // HPMN = N and counts on its top counters, which the hypervisor
            // switches off while guests run.
            let range = match (host_setup.pmu_reserved, nvhe) {
                (0, _) => Range::Low,
                (k, true) => Range::Top(k),
                (_, false) => Range::High,
            };
            let mut c = kvm
                .machine()
                .cpu(cpu)
                .ok_or_else(|| fail("host")("no such CPU".into()))?;
            let mut d = PmuDriver::probe(&mut c, range)
                .map_err(|e| fail("host PMU")(format!("cpu {cpu}: {e}")))?;
            for e in &host_setup.pmu_events {
                d.add(*e)
                    .map_err(|e| fail("host PMU")(format!("cpu {cpu}: {e}")))?;
            }
            d.start(&mut c)
                .map_err(|e| fail("host PMU")(format!("cpu {cpu}: {e}")))?;
            if nvhe && host_setup.pmu_reserved > 0 {
                kvm.set_host_pmu_events(cpu, d.slot_mask())
                    .map_err(|e| fail("host PMU")(format!("cpu {cpu}: {e}")))?;
            }
            Some(d)
        };
        host.push(HostCpu {
            spe,
            pmu,
            work,
            truth: EventCounts::default(),
            ops: 0,
            spe_unit: SpeStats::default(),
            pmu_interrupts: 0,
            pmbirqs: 0,
        });
    }
    Ok(host)
}

/// Stops the host's drivers on every CPU and collects what they measured;
/// an SPE unit whose counts do not add up is a problem of the run.
pub(crate) fn stop_host(
    kvm: &mut Kvm,
    host: Vec<HostCpu>,
    problems: &mut Vec<(Invariant, String)>,
) -> Result<Vec<HostCpuOutcome>> {
    let mut host_out = Vec::new();
    for (cpu, mut h) in host.into_iter().enumerate() {
        let mut c = kvm
            .machine()
            .cpu(cpu)
            .ok_or_else(|| fail_run("host")("no such CPU".into()))?;
        let mut spe_data = Vec::new();
        let mut buffer_full = 0;
        if let Some(d) = h.spe.as_mut() {
            d.stop(&mut c)
                .map_err(|e| fail_run("host SPE stop")(e.to_string()))?;
            spe_data = d.take_data();
            buffer_full = d.stats().buffer_full;
        }
        let (mut counts, mut overflows) = (Vec::new(), Vec::new());
        if let Some(d) = h.pmu.as_mut() {
            for i in 0..d.slots().len() {
                counts.push(
                    d.read(&mut c, i)
                        .map_err(|e| fail_run("host PMU")(e.to_string()))?,
                );
            }
            overflows = d.slots().iter().map(|s| s.overflows).collect();
            d.stop(&mut c)
                .map_err(|e| fail_run("host PMU")(e.to_string()))?;
        }
        let has_spe = c.pe().has_spe();
        let total_unit = c.pe().spe().map(|s| *s.stats());
        if let Some(spe) = c.pe().spe() {
            if !spe.conserved() {
                problems.push((
                    Invariant::Conservation,
                    format!(
                        "cpu {cpu}: the SPE unit's counts do not add up: {:?}",
                        spe.stats()
                    ),
                ));
            }
        }
        host_out.push(HostCpuOutcome {
            cpu,
            ops: h.ops,
            spe_data,
            spe_buffer_full: buffer_full,
            spe_unit: has_spe.then_some(h.spe_unit),
            spe_unit_total: total_unit,
            pmu_counts: counts,
            pmu_overflows: overflows,
            pmu_interrupts: h.pmu_interrupts,
            pmbirqs: h.pmbirqs,
            truth: h.truth,
            has_spe,
        });
    }
    Ok(host_out)
}

/// One slice of host kernel work on `cpu`, its interrupts taken into the
/// host's drivers.
pub(crate) fn host_slice(
    kvm: &mut Kvm,
    cpu: usize,
    h: &mut HostCpu,
    ops: u64,
    host_el: ExceptionLevel,
) -> Result<()> {
    let err = fail_run("host work");
    let before = unit_stats(kvm, cpu);
    let mut left = ops;
    let mut storm = 0u64;
    while left > 0 {
        let mut done = 0;
        let mut counts = EventCounts::default();
        let exit = {
            // The ground truth: what the host's own operations cause.
            let mut probe = Tally {
                inner: h.work.as_mut(),
                counts: &mut counts,
            };
            kvm.machine()
                .run(cpu, &mut probe, left, &mut done)
                .ok_or_else(|| err("no such CPU".into()))?
        };
        h.truth.add_all(&counts);
        left -= done;
        h.ops += done;
        if let RunExit::Interrupt(lines) = exit {
            storm = if done == 0 { storm + 1 } else { 0 };
            if storm >= STORM_INTERRUPTS {
                return Err(err(format!(
                    "cpu {cpu}: {storm} interrupts in a row without an operation done: {lines:?} stays asserted after the host's handlers ran"
                )));
            }
            take_irq(kvm, cpu, h, lines, host_el)?;
        }
    }
    let after = unit_stats(kvm, cpu);
    h.spe_unit.add_window(&before, &after);
    Ok(())
}

/// The host's interrupt handlers on `cpu` for the asserted `lines`.
fn take_irq(
    kvm: &mut Kvm,
    cpu: usize,
    h: &mut HostCpu,
    lines: IrqLines,
    host_el: ExceptionLevel,
) -> Result<()> {
    let err = fail_run("host interrupt");
    let m = kvm.machine();
    let pe = m.pe_mut(cpu).ok_or_else(|| err("no such CPU".into()))?;
    pe.exception_entry(host_el);
    let mut c = m.cpu(cpu).ok_or_else(|| err("no such CPU".into()))?;
    let mut handled = false;
    if lines.pmbirq {
        if let Some(d) = h.spe.as_mut() {
            d.handle_irq(&mut c).map_err(|e| err(e.to_string()))?;
            h.pmbirqs += 1;
            handled = true;
        }
    }
    if lines.pmuirq {
        if let Some(d) = h.pmu.as_mut() {
            d.handle_irq(&mut c).map_err(|e| err(e.to_string()))?;
            h.pmu_interrupts += 1;
            handled = true;
        }
    }
    if !handled {
        return Err(err(format!(
            "cpu {cpu}: an interrupt no host driver owns: {lines:?}"
        )));
    }
    Ok(())
}

/// The interrupts asserted on `cpu` between guest slices, taken by the host.
pub(crate) fn host_irqs(
    kvm: &mut Kvm,
    cpu: usize,
    h: &mut HostCpu,
    host_el: ExceptionLevel,
) -> Result<()> {
    let lines = kvm
        .machine()
        .pe(cpu)
        .map(|p| p.irq_lines())
        .unwrap_or_default();
    if lines.any() {
        let before = unit_stats(kvm, cpu);
        take_irq(kvm, cpu, h, lines, host_el)?;
        let after = unit_stats(kvm, cpu);
        h.spe_unit.add_window(&before, &after);
    }
    Ok(())
}

/// A workload seen through a tally of the events its operations cause.
struct Tally<'a> {
    inner: &'a mut dyn Workload,
    counts: &'a mut EventCounts,
}

impl Workload for Tally<'_> {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn symbols(&self) -> &[Symbol] {
        self.inner.symbols()
    }
    fn skip(&mut self, n: u64, counts: &mut EventCounts) {
        let mut mine = EventCounts::default();
        self.inner.skip(n, &mut mine);
        self.counts.add_all(&mine);
        counts.add_all(&mine);
    }
    fn step(&mut self) -> hyperprof_sim::op::Op {
        let op = self.inner.step();
        op.add_events(self.counts);
        op
    }
    fn ops_until(&self, event: hyperprof_sim::event::Event, k: u64, limit: u64) -> u64 {
        self.inner.ops_until(event, k, limit)
    }
}
