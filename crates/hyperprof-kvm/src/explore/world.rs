//! One schedule of the VHE SPE world switch on the real hypervisor: a
//! two-CPU host profiling its kernel on both CPUs with the host driver of
//! `hyperprof-guest`, one VM whose guest kernel profiles itself, and the
//! probe that lets injected events in at the points a script names.

use std::sync::{Arc, Mutex};

use hyperprof_arch::{mdcr_el2, pmbsr_el1, Cpu, ExceptionLevel, PmuVer, SysReg};
use hyperprof_guest::drivers::pmu::{EventSpec, Filter, PmuDriver, Range};
use hyperprof_guest::drivers::spe::{Buffer, SpeDriver, SpeSessionConfig};
use hyperprof_guest::guest::GuestKernel;
use hyperprof_sim::event::Event as PmuEvent;
use hyperprof_sim::machine::{Machine, MachineConfig};
use hyperprof_sim::pe::{PeConfig, RunExit};
use hyperprof_sim::pmu::PmuConfig;
use hyperprof_sim::probe::ProbeHandle;
use hyperprof_sim::spe::{SpeConfig, SpeStats};
use hyperprof_sim::workload::{by_name, Workload};
use hyperprof_spe::RecordDecoder;

use super::mutation::Mutation;
use super::probe::{lock, ExploreProbe, Shared};
use super::trace::compact;
use super::{Choice, Event, Phase, Variant};
use crate::uapi::VcpuFeatures;
use crate::vm::{Exit, Kvm, VmConfig, GUEST_RAM_IPA};

const CPUS: usize = 2;
const HOST_VA: u64 = 0x0000_7000_0000_0000;
const HOST_PAGES: u64 = 1;
const GUEST_VA: u64 = 0x0000_0040_0000_0000;
const GUEST_IPA: u64 = GUEST_RAM_IPA + (4 << 20);
const GUEST_SLICE: u64 = 24_000;
const GUEST_OPS: u64 = 72_000;
/// The host samples its kernel's cycles every this many.
const HOST_PMU_PERIOD: u32 = 40_000;
/// The guest samples its user space's cycles every this many.
const GUEST_PMU_PERIOD: u32 = 30_000;

/// What a schedule produced.
#[derive(Debug, Default)]
pub(super) struct Outcome {
    /// Invariants broken.
    pub violations: Vec<String>,
    /// Every point with the events enabled there.
    pub candidates: Vec<(u64, Event)>,
    /// The readable trace (when asked for).
    pub trace: Vec<String>,
    /// The PMU figures that must not depend on the schedule: the guest's
    /// totals and overflows, the host's totals and overflows.
    pub counts: Vec<u64>,
}

fn machine() -> Result<Machine, String> {
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
    Machine::new(&MachineConfig {
        pes: vec![pe; CPUS],
        ram_base: 0x8000_0000,
        ram_size: 128 << 20,
    })
    .map_err(|e| format!("machine: {e}"))
}

struct World {
    kvm: Kvm,
    shared: Arc<Mutex<Shared>>,
    host_work: Vec<Box<dyn Workload>>,
    vcpu: usize,
    kernel: GuestKernel,
    loaded: Option<usize>,
    /// Where the host kernel runs (EL2 with VHE, EL1 without).
    host_el: ExceptionLevel,
}

fn session() -> SpeSessionConfig {
    SpeSessionConfig {
        interval: 256,
        jitter: false,
        ..SpeSessionConfig::default()
    }
}

impl World {
    fn new(
        v: Variant,
        mutation: Option<Mutation>,
        script: &[Choice],
        tracing: bool,
    ) -> Result<World, String> {
        let mut kvm = if v.nvhe {
            Kvm::new_nvhe(machine()?)
        } else {
            Kvm::new(machine()?)
        };
        // The host kernel's regime: EL2&0 with VHE, EL1&0 without.
        let (host_ttbr, host_el) = if v.nvhe {
            (SysReg::TTBR0_EL1, ExceptionLevel::EL1)
        } else {
            (SysReg::TTBR0_EL2, ExceptionLevel::EL2)
        };
        // The PMU variants: the host keeps two counters, on which it
        // samples its kernel's cycles.
        let mut host_pmu = Vec::new();
        if v.pmu {
            kvm.set_host_pmu_reserve(2)
                .map_err(|e| format!("host PMU reserve: {e}"))?;
            for cpu in 0..CPUS {
                let mut c = kvm.machine().cpu(cpu).ok_or("no cpu")?;
                let mut d =
                    PmuDriver::probe(&mut c, Range::High).map_err(|e| format!("host PMU: {e}"))?;
                for (event, period) in [
                    (PmuEvent::INST_RETIRED, None),
                    (PmuEvent::CPU_CYCLES, Some(HOST_PMU_PERIOD)),
                ] {
                    d.add(EventSpec {
                        event: event.number(),
                        filter: Filter {
                            el0: false,
                            el1: false,
                            el2: true,
                        },
                        period,
                    })
                    .map_err(|e| format!("host PMU: {e}"))?;
                }
                d.start(&mut c).map_err(|e| format!("host PMU: {e}"))?;
                host_pmu.push(Some(d));
            }
        }
        let mut hosts = Vec::new();
        for cpu in 0..CPUS {
            let d = hyperprof_guest::host::start_session(
                kvm.machine(),
                cpu,
                host_ttbr,
                HOST_VA + ((cpu as u64) << 32),
                HOST_PAGES * 4096,
                session(),
            )
            .map_err(|e| format!("host session: {e:?}"))?;
            hosts.push(Some(d));
        }
        let shared = Arc::new(Mutex::new(Shared {
            hosts,
            host_pmu,
            phase: Phase::Setup,
            counter: 0,
            script: script.to_vec(),
            next: 0,
            masked: false,
            mutation,
            last: None,
            candidates: Vec::new(),
            tracing,
            trace: Vec::new(),
            problems: Vec::new(),
            run_accesses: 0,
        }));
        for cpu in 0..CPUS {
            let probe = ProbeHandle(Arc::new(ExploreProbe(shared.clone())));
            if let Some(pe) = kvm.machine().pe_mut(cpu) {
                pe.set_probe(Some(probe));
            }
        }
        let vm = kvm
            .create_vm(VmConfig {
                ram_bytes: 16 << 20,
                memlock_limit: u64::MAX,
            })
            .map_err(|e| format!("create_vm: {e}"))?;
        let vcpu = kvm
            .create_vcpu(
                vm,
                VcpuFeatures {
                    spe: true,
                    pmu_v3: v.pmu,
                },
            )
            .map_err(|e| format!("create_vcpu: {e}"))?;
        if v.pmu {
            let setup = crate::vm::PmuSetup {
                irq: 23,
                partitioned: true,
                nr_counters: None,
                filters: Vec::new(),
            };
            kvm.configure_pmu(vcpu, &setup)
                .map_err(|(a, e)| format!("configure_pmu {a}: {e}"))?;
        }
        kvm.configure_spe(vcpu, 0, 21, 1 << 20)
            .map_err(|(a, e)| format!("configure_spe {a}: {e}"))?;
        let pages = if v.guest_fills { 1 } else { 16 };
        let ttbr = kvm
            .guest_map(vm, GUEST_VA, GUEST_IPA, pages * 4096)
            .map_err(|e| format!("guest_map: {e}"))?;
        let buf = Buffer {
            va: GUEST_VA,
            size: pages * 4096,
        };
        let wl = by_name("mix", 5).ok_or("no workload mix")?;
        let mut kernel =
            GuestKernel::new(ttbr, session(), buf, wl, GUEST_OPS).with_slices(GUEST_SLICE);
        if v.pmu {
            let user = Filter {
                el0: true,
                el1: false,
                el2: false,
            };
            kernel = kernel.with_pmu(vec![
                EventSpec {
                    event: PmuEvent::INST_RETIRED.number(),
                    filter: user,
                    period: None,
                },
                EventSpec {
                    event: PmuEvent::CPU_CYCLES.number(),
                    filter: user,
                    period: Some(GUEST_PMU_PERIOD),
                },
            ]);
        }
        let host_work = (0..CPUS)
            .map(|c| by_name("kernel-mix", 11 + c as u64).ok_or("no workload kernel-mix"))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(World {
            kvm,
            shared,
            host_work,
            vcpu,
            kernel,
            loaded: None,
            host_el,
        })
    }

    fn phase(&self, p: Phase) {
        let mut s = lock(&self.shared);
        s.phase = p;
        s.masked = false;
        s.run_accesses = 0;
    }

    fn note(&self, text: String) {
        let mut s = lock(&self.shared);
        if s.tracing {
            s.trace.push(text);
        }
    }

    /// The host's PMBIRQ handler on `cpu`, as the interrupt is taken.
    fn host_irq(&mut self, cpu: usize) -> Result<(), String> {
        let el = self.host_el;
        if let Some(pe) = self.kvm.machine().pe_mut(cpu) {
            pe.exception_entry(el);
        }
        let mut d = self.take_host(cpu)?;
        let r = match self.kvm.machine().cpu(cpu) {
            Some(mut c) => d.handle_irq(&mut c).map(|_| ()).map_err(|e| e.to_string()),
            None => Err("no cpu".into()),
        };
        lock(&self.shared).hosts[cpu] = Some(d);
        r.map_err(|e| format!("host PMBIRQ handler on cpu{cpu}: {e}"))
    }

    /// The host's PMU overflow handler on `cpu`, as the interrupt is taken.
    fn host_pmu_irq(&mut self, cpu: usize) -> Result<(), String> {
        let el = self.host_el;
        if let Some(pe) = self.kvm.machine().pe_mut(cpu) {
            pe.exception_entry(el);
        }
        let Some(mut d) = lock(&self.shared)
            .host_pmu
            .get_mut(cpu)
            .and_then(Option::take)
        else {
            return Err(format!(
                "cpu{cpu}: a PMU interrupt, and the host does not use its PMU"
            ));
        };
        let r = match self.kvm.machine().cpu(cpu) {
            Some(mut c) => d.handle_irq(&mut c).map(|_| ()).map_err(|e| e.to_string()),
            None => Err("no cpu".into()),
        };
        lock(&self.shared).host_pmu[cpu] = Some(d);
        r.map_err(|e| format!("host PMU handler on cpu{cpu}: {e}"))
    }

    fn pmu_line(&mut self, cpu: usize) -> bool {
        self.kvm
            .machine()
            .pe(cpu)
            .is_some_and(|p| p.irq_lines().pmuirq)
    }

    /// The host's driver of `cpu`, out of the shared state while the world
    /// runs it (its accesses reach the probes, which lock that state).
    fn take_host(&mut self, cpu: usize) -> Result<SpeDriver, String> {
        lock(&self.shared).hosts[cpu]
            .take()
            .ok_or_else(|| format!("cpu{cpu}: no host driver"))
    }

    fn line(&mut self, cpu: usize) -> bool {
        self.kvm
            .machine()
            .pe(cpu)
            .is_some_and(|p| p.irq_lines().pmbirq)
    }

    /// Host kernel work on `cpu`: `ops` operations taking interrupts, or
    /// (`stop_at_irq`) until the first PMBIRQ, left pending.
    fn host_work(&mut self, cpu: usize, ops: u64, stop_at_irq: bool) -> Result<bool, String> {
        let mut left = ops;
        for _ in 0..10_000 {
            if left == 0 {
                return Ok(false);
            }
            let mut done = 0;
            let exit = self
                .kvm
                .machine()
                .run(cpu, self.host_work[cpu].as_mut(), left, &mut done)
                .ok_or("no cpu")?;
            left -= done.min(left);
            if let RunExit::Interrupt(l) = exit {
                if stop_at_irq {
                    return Ok(true);
                }
                if l.pmuirq {
                    self.host_pmu_irq(cpu)?;
                }
                if l.pmbirq {
                    self.host_irq(cpu)?;
                }
            }
        }
        Err(format!("cpu{cpu}: host work did not finish"))
    }

    fn load(&mut self, cpu: usize) -> Result<(), String> {
        self.phase(Phase::Load);
        self.kvm.load(self.vcpu, cpu)?;
        self.loaded = Some(cpu);
        Ok(())
    }

    fn put(&mut self) -> Result<(), String> {
        self.phase(Phase::Put);
        self.kvm.put(self.vcpu)?;
        self.loaded = None;
        Ok(())
    }

    fn run(&mut self) -> Result<bool, String> {
        self.phase(Phase::Run);
        match self.kvm.run(self.vcpu, &mut self.kernel) {
            Exit::Halt => Ok(true),
            Exit::Yield => Ok(false),
            e => Err(format!("KVM_RUN: {e:?}")),
        }
    }

    /// A point where the vCPU thread is preemptible: the script may
    /// preempt it (put, load on the same CPU) or migrate it.
    fn slot(&mut self) -> Result<(), String> {
        let chosen = {
            let mut s = lock(&self.shared);
            let point = s.counter;
            s.counter += 1;
            s.candidates.push((point, Event::Preempt));
            s.candidates.push((point, Event::Migrate));
            if s.tracing {
                s.trace.push(format!(
                    "#{point:<4} slot: the vCPU thread is preemptible here"
                ));
            }
            match s.script.get(s.next).copied() {
                Some(c) if c.point == point => {
                    s.next += 1;
                    Some(c.event)
                }
                _ => None,
            }
        };
        let Some(ev) = chosen else { return Ok(()) };
        let from = self.loaded.ok_or("slot without a loaded vCPU")?;
        let to = match ev {
            Event::Migrate => (from + 1) % CPUS,
            _ => from,
        };
        self.note(format!(
            "      >> injected: {ev:?}: put on cpu{from}, load on cpu{to}"
        ));
        self.put()?;
        self.load(to)
    }

    /// The schedule: the setup, the explored part, then everything run to
    /// its end and stopped.
    fn schedule(&mut self, v: Variant) -> Result<(), String> {
        // Setup: the guest's first run makes its SPE state live.
        self.load(0)?;
        self.phase(Phase::Setup);
        self.run()?;
        self.phase(Phase::Setup);
        self.put()?;
        self.phase(Phase::Setup);
        self.host_work(1, 3_000, false)?;
        // The host's buffer on CPU 0: full, its PMBIRQ pending, or not.
        if v.host_full_at_load {
            if !self.host_work(0, 400_000, true)? {
                return Err("the host's buffer did not fill".into());
            }
        } else {
            self.host_work(0, 3_000, false)?;
        }
        self.note("---- explored: load, run, (preemption point), run, put".into());
        self.load(0)?;
        self.run()?;
        self.phase(Phase::Slot);
        self.slot()?;
        self.run()?;
        self.put()?;
        self.phase(Phase::Final);
        self.note("---- then: pending host interrupts taken, everything run to its end".into());
        for cpu in 0..CPUS {
            if self.pmu_line(cpu) {
                self.host_pmu_irq(cpu)?;
            }
            if self.line(cpu) {
                self.host_irq(cpu)?;
            }
            self.host_work(cpu, 3_000, false)?;
        }
        let mut cpu = 0;
        for _ in 0..200 {
            if self.kernel.finished() {
                break;
            }
            self.phase(Phase::Final);
            self.kvm.load(self.vcpu, cpu)?;
            self.phase(Phase::Final);
            let r = self.kvm.run(self.vcpu, &mut self.kernel);
            self.phase(Phase::Final);
            self.kvm.put(self.vcpu)?;
            match r {
                Exit::Halt | Exit::Yield => {}
                e => return Err(format!("KVM_RUN: {e:?}")),
            }
            if self.pmu_line(cpu) {
                self.host_pmu_irq(cpu)?;
            }
            if self.line(cpu) {
                self.host_irq(cpu)?;
            }
            cpu = (cpu + 1) % CPUS;
        }
        for cpu in 0..CPUS {
            for _ in 0..4 {
                if self.pmu_line(cpu) {
                    self.host_pmu_irq(cpu)?;
                }
                if self.line(cpu) {
                    self.host_irq(cpu)?;
                }
            }
        }
        Ok(())
    }

    fn unit(&mut self, cpu: usize) -> SpeStats {
        self.kvm
            .machine()
            .pe(cpu)
            .and_then(|p| p.spe())
            .map(|s| *s.stats())
            .unwrap_or_default()
    }

    /// The PMU figures of [`Outcome::counts`], and the host's PMU driver
    /// never seeing an interrupt that is not its own.
    fn pmu_counts(&mut self, bad: &mut Vec<String>) -> Vec<u64> {
        let mut counts = self.kernel.pmu_counts().to_vec();
        if let Some((_, ovf)) = self.kernel.pmu_driver() {
            counts.extend(ovf);
        }
        for cpu in 0..CPUS {
            let Some(d) = lock(&self.shared)
                .host_pmu
                .get_mut(cpu)
                .and_then(Option::take)
            else {
                continue;
            };
            if let Some(mut c) = self.kvm.machine().cpu(cpu) {
                for i in 0..d.slots().len() {
                    counts.push(d.read(&mut c, i).unwrap_or(u64::MAX));
                }
            }
            counts.extend(d.slots().iter().map(|s| s.overflows));
            let st = d.stats();
            if st.spurious > 0 {
                bad.push(format!(
                    "isolation: the host's PMU driver on cpu{cpu} took {} interrupt(s) without an overflow of its own",
                    st.spurious
                ));
            }
            lock(&self.shared).host_pmu[cpu] = Some(d);
        }
        counts
    }

    /// DESIGN.md's invariants once everything stopped.
    fn check(&mut self) -> Vec<String> {
        let mut bad = Vec::new();
        if !self.kernel.finished() {
            bad.push("interrupts: the guest did not finish (stuck on an interrupt)".into());
        }
        if let Some(e) = self.kernel.error() {
            bad.push(format!("the guest's driver failed: {e}"));
        }
        let gstats = self.kernel.driver_stats().unwrap_or_default();
        if gstats.spurious > 0 || gstats.faults > 0 {
            bad.push(format!(
                "interrupts: the guest saw {} spurious PMBIRQ(s) and {} fault(s)",
                gstats.spurious, gstats.faults
            ));
        }
        let mut host_data = Vec::new();
        let mut host_full = 0;
        for cpu in 0..CPUS {
            let Ok(mut d) = self.take_host(cpu) else {
                bad.push(format!("cpu{cpu}: no host driver"));
                continue;
            };
            let Some(mut c) = self.kvm.machine().cpu(cpu) else {
                continue;
            };
            // The buffer's owner after put: EL2 for a VHE host (an nVHE
            // host at EL1 cannot read MDCR_EL2; its exits restore it).
            if self.host_el == ExceptionLevel::EL2 {
                let mdcr = c.read(SysReg::MDCR_EL2).unwrap_or(0);
                if mdcr_el2::E2PB.get(mdcr) != mdcr_el2::E2PB_EL2 {
                    bad.push(format!(
                        "isolation: cpu{cpu}'s buffer is not the host's after put"
                    ));
                }
            }
            if !d.running() {
                bad.push(format!("cpu{cpu}: the host's session is no longer running"));
            }
            if let Err(e) = d.stop(&mut c) {
                bad.push(format!("cpu{cpu}: the host's session did not stop: {e}"));
            }
            let st = d.stats();
            if st.spurious > 0 || st.faults > 0 {
                bad.push(format!(
                    "interrupts: the host on cpu{cpu} saw {} spurious PMBIRQ(s) and {} fault(s)",
                    st.spurious, st.faults
                ));
            }
            host_full += st.buffer_full;
            host_data.push(d.take_data());
        }
        let units: Vec<SpeStats> = (0..CPUS).map(|c| self.unit(c)).collect();
        let written: u64 = units.iter().map(|u| u.records_bytes).sum();
        let events: u64 = units.iter().map(|u| u.buffer_full_events).sum();
        let faults: u64 = units.iter().map(|u| u.fault_events).sum();
        let guest_data = self.kernel.data().len() as u64;
        let collected = guest_data + host_data.iter().map(|d| d.len() as u64).sum::<u64>();
        if faults > 0 {
            bad.push(format!("the units raised {faults} fault event(s)"));
        }
        if collected != written {
            bad.push(format!(
                "conservation: the units wrote {written} bytes of records, the drivers collected {collected} \
                 ({} duplicated or misplaced, or {} lost)",
                collected.saturating_sub(written),
                written.saturating_sub(collected)
            ));
        }
        let guest_pending =
            self.kvm
                .guest_spe(self.vcpu)
                .is_some_and(|g| pmbsr_el1::S.is_set(g.buffer.pmbsr_el1)) as u64;
        let handled = host_full + gstats.buffer_full + guest_pending;
        if handled != events {
            bad.push(format!(
                "interrupts: the units raised {events} buffer-full event(s); the host took {host_full}, \
                 the guest {} (+{guest_pending} pending at its stop): {}",
                gstats.buffer_full,
                if handled > events { "duplicated" } else { "lost" }
            ));
        }
        let host_el = match self.host_el {
            ExceptionLevel::EL2 => 2,
            _ => 1,
        };
        for (cpu, d) in host_data.iter().enumerate() {
            if RecordDecoder::new(d)
                .any(|r| r.map_or(true, |(_, r)| r.pc.is_none_or(|pc| pc.el != host_el)))
            {
                bad.push(format!(
                    "isolation: the host's data on cpu{cpu} holds a record not of its own kernel"
                ));
            }
        }
        if RecordDecoder::new(self.kernel.data())
            .any(|r| r.map_or(true, |(_, r)| r.pc.is_none_or(|pc| pc.el != 0)))
        {
            bad.push("isolation: the guest's data holds a record not of its EL0 workload".into());
        }
        bad
    }
}

/// Runs one schedule.
pub(super) fn run(
    v: Variant,
    mutation: Option<Mutation>,
    script: &[Choice],
    tracing: bool,
) -> Outcome {
    let mut w = match World::new(v, mutation, script, tracing) {
        Ok(w) => w,
        Err(e) => {
            return Outcome {
                violations: vec![format!("setup: {e}")],
                ..Outcome::default()
            }
        }
    };
    let mut violations = Vec::new();
    if let Err(e) = w.schedule(v) {
        violations.push(format!("the schedule could not complete: {e}"));
    }
    w.phase(Phase::Final);
    violations.extend(w.check());
    let counts = if v.pmu {
        w.pmu_counts(&mut violations)
    } else {
        Vec::new()
    };
    let mut s = lock(&w.shared);
    violations.append(&mut s.problems);
    if s.next < s.script.len() {
        violations.push(format!(
            "script: only {} of {} choices taken",
            s.next,
            s.script.len()
        ));
    }
    Outcome {
        violations,
        candidates: std::mem::take(&mut s.candidates),
        trace: compact(std::mem::take(&mut s.trace)),
        counts,
    }
}
