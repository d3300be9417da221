//! The explorer's probe on each PE: it numbers the accesses of vCPU load
//! and put, offers the host's interrupt handlers where their line is
//! asserted and the code has interrupts enabled, runs them where the
//! script says, applies a mutation, and keeps the trace.

use std::sync::{Arc, Mutex, MutexGuard};

use hyperprof_arch::{Cpu, ExceptionLevel};
use hyperprof_guest::drivers::pmu::PmuDriver;
use hyperprof_guest::drivers::spe::SpeDriver;
use hyperprof_sim::pe::PeCpu;
use hyperprof_sim::probe::{Probe, ProbeAccess, ProbeVerdict};

use super::mutation::{load_mask_edge, Mutation};
use super::{Choice, Event, Phase};

/// Hypervisor accesses in one KVM_RUN after which an asserted PMBIRQ is an
/// interrupt storm (a run of these guests needs a few hundred).
const RUN_WATCHDOG: u64 = 20_000;

/// State shared by the schedule and the probes of both CPUs.
pub(super) struct Shared {
    /// The host's driver per CPU (taken out while the world runs it).
    pub(super) hosts: Vec<Option<SpeDriver>>,
    /// The host's PMU driver per CPU, with the PMU variants.
    pub(super) host_pmu: Vec<Option<PmuDriver>>,
    pub(super) phase: Phase,
    pub(super) counter: u64,
    pub(super) script: Vec<Choice>,
    pub(super) next: usize,
    pub(super) masked: bool,
    pub(super) mutation: Option<Mutation>,
    pub(super) last: Option<ProbeAccess>,
    pub(super) candidates: Vec<(u64, Event)>,
    pub(super) tracing: bool,
    pub(super) trace: Vec<String>,
    pub(super) problems: Vec<String>,
    /// Hypervisor accesses in the current KVM_RUN.
    pub(super) run_accesses: u64,
}

pub(super) fn lock(s: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // A poisoned lock only means a panic elsewhere; the data is still ours.
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// An access as a trace shows it.
fn show(a: ProbeAccess) -> String {
    match a {
        ProbeAccess::Read(r) => format!("read  {r}"),
        ProbeAccess::Write(r, v) => format!("write {r} <- {v:#x}"),
        ProbeAccess::Isb => "ISB".into(),
        ProbeAccess::DsbNsh => "DSB NSH".into(),
        ProbeAccess::PsbCsync => "PSB CSYNC".into(),
    }
}

/// The probe of one PE (all share the state).
pub(super) struct ExploreProbe(pub(super) Arc<Mutex<Shared>>);

impl Probe for ExploreProbe {
    fn before(&self, cpu: &mut PeCpu<'_>, access: ProbeAccess) -> ProbeVerdict {
        let mut s = lock(&self.0);
        let phase = s.phase;
        let el = cpu.current_el();
        let id = cpu.pe().id();
        let skip = s
            .mutation
            .is_some_and(|m| m.skips(phase, el, access, s.last));
        let read_as = s.mutation.and_then(|m| m.reads_as(phase, access));
        s.last = Some(access);
        if phase == Phase::Run && el == ExceptionLevel::EL2 {
            s.run_accesses += 1;
            if s.run_accesses == RUN_WATCHDOG && cpu.pe().irq_lines().pmbirq {
                // An interrupt storm: the guest makes no progress. Say so,
                // and let the code go on unmutated so that the run ends.
                s.problems.push(format!(
                    "interrupts: PMBIRQ stayed asserted through {RUN_WATCHDOG} hypervisor accesses \
                     in one KVM_RUN on cpu{id} (an interrupt storm; the guest makes no progress)"
                ));
                s.mutation = None;
            }
        }
        if !matches!(phase, Phase::Load | Phase::Put) {
            if let Some(v) = read_as {
                return ProbeVerdict::ReadAs(v);
            }
            if skip && s.tracing {
                s.trace.push(format!(
                    "      {phase} cpu{id}: {} LEFT OUT (mutation)",
                    show(access)
                ));
            }
            return if skip {
                ProbeVerdict::Skip
            } else {
                ProbeVerdict::Proceed
            };
        }
        if phase == Phase::Load {
            if let Some(m) = load_mask_edge(s.mutation, access) {
                s.masked = m;
            }
        }
        let point = s.counter;
        s.counter += 1;
        let lines = cpu.pe().irq_lines();
        let asserted = lines.pmbirq;
        if asserted && !s.masked {
            s.candidates.push((point, Event::HostIrq));
        }
        let pmu_asserted = lines.pmuirq && s.host_pmu.iter().any(Option::is_some);
        if pmu_asserted && !s.masked {
            s.candidates.push((point, Event::HostPmuIrq));
        }
        if s.tracing {
            let mask = if s.masked { " [irqs masked]" } else { "" };
            let line = if asserted { " PMBIRQ asserted" } else { "" };
            let left = match (skip, read_as) {
                (true, _) => " LEFT OUT (mutation)".to_string(),
                (_, Some(v)) => format!(" READ AS {v:#x} (mutation)"),
                _ => String::new(),
            };
            let line = if pmu_asserted {
                format!("{line} PMU IRQ asserted")
            } else {
                line.to_string()
            };
            s.trace.push(format!(
                "#{point:<4} {phase} cpu{id}: {}{left}{mask}{line}",
                show(access)
            ));
        }
        let due = s.script.get(s.next)
            == Some(&Choice {
                point,
                event: Event::HostIrq,
            });
        if due && asserted && !s.masked {
            s.next += 1;
            let Some(d) = s.hosts[id].as_mut() else {
                return ProbeVerdict::Proceed;
            };
            let before = d.stats();
            let r = d.handle_irq(cpu);
            let after = d.stats();
            let text = format!(
                "      >> injected: the host's PMBIRQ handler runs on cpu{id}: {r:?}, collected {} bytes",
                after.bytes - before.bytes
            );
            if let Err(e) = r {
                s.problems
                    .push(format!("host PMBIRQ handler on cpu{id}: {e}"));
            }
            if s.tracing {
                s.trace.push(text);
            }
        }
        let pmu_due = s.script.get(s.next)
            == Some(&Choice {
                point,
                event: Event::HostPmuIrq,
            });
        if pmu_due && pmu_asserted && !s.masked {
            s.next += 1;
            if let Some(d) = s.host_pmu[id].as_mut() {
                let r = d.handle_irq(cpu);
                let text = format!(
                    "      >> injected: the host's PMU overflow handler runs on cpu{id}: {r:?}"
                );
                if let Err(e) = r {
                    s.problems.push(format!("host PMU handler on cpu{id}: {e}"));
                }
                if s.tracing {
                    s.trace.push(text);
                }
            }
        }
        match (skip, read_as) {
            (true, _) => ProbeVerdict::Skip,
            (_, Some(v)) => ProbeVerdict::ReadAs(v),
            _ => ProbeVerdict::Proceed,
        }
    }
}
