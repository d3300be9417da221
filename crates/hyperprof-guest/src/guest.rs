//! Guest kernels: code that runs on a vCPU. The hypervisor gives a guest an
//! environment ([`GuestEnv`]): the [`Cpu`] interface (untrapped accesses
//! reach the hardware, trapped ones are emulated) plus running operations
//! and the guest's own exception-level changes.
//!
//! A guest program's run can end early when the hypervisor needs its VMM
//! (an access then fails with `AccessFault::Trapped`): the program must be
//! able to repeat what it was doing on its next run, as an instruction that
//! trapped is re-executed after KVM_RUN returns and is called again.

use hyperprof_arch::Cpu;
use hyperprof_sim::workload::Workload;

use crate::drivers::pmu::{EventSpec, PmuDriver, PmuDriverStats, Range};
use crate::drivers::spe::{self, Buffer, IrqOutcome, SpeDriver, SpeDriverStats, SpeSessionConfig};
use crate::drivers::DriverError;

/// Why [`GuestEnv::execute`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExecStop {
    /// The budget ran out.
    Completed,
    /// A virtual interrupt (PMBIRQ or the PMU's) is pending: take it.
    VirtualIrq,
    /// The hypervisor needs the VMM: stop and return.
    Exit,
}

/// What a vCPU offers the guest running on it.
pub trait GuestEnv: Cpu {
    /// Runs `budget` operations of `workload` at the current Exception level.
    fn execute(&mut self, workload: &mut dyn Workload, budget: u64) -> (u64, ExecStop);
    /// Whether the virtual PMBIRQ is pending.
    fn virq_pending(&self) -> bool;
    /// Whether the virtual PMU overflow interrupt is pending.
    fn pmu_virq_pending(&self) -> bool;
    /// The guest takes the virtual interrupt (exception entry to EL1).
    fn take_virq(&mut self);
    /// Exception return to EL0 (user space).
    fn to_el0(&mut self);
    /// Exception entry to EL1 (the kernel).
    fn to_el1(&mut self);
    /// Masks (`MSR DAIFSet, #2`) or unmasks (`MSR DAIFClr, #2`) IRQs at
    /// the guest's PSTATE.I: while masked, a pending virtual interrupt does
    /// not stop [`GuestEnv::execute`] (physical interrupts still exit to
    /// the hypervisor, which routes them with HCR_EL2.IMO).
    fn mask_irqs(&mut self, masked: bool);
}

/// What a guest program's run ended with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestStep {
    /// It has finished.
    Done,
    /// It has more to do; run it again.
    More,
}

/// Guest code.
pub trait GuestProgram {
    /// Runs until done, or until it gives the CPU back.
    fn run(&mut self, env: &mut dyn GuestEnv) -> GuestStep;
}

/// Where a guest SPE session is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Boot,
    Run,
    Stop,
    Done,
}

/// A guest kernel that profiles its user space, as Linux with `perf record
/// -e arm_spe//` and `perf stat` would inside a VM: it installs its page
/// tables, probes and starts the SPE driver and the PMU driver (each when
/// asked for), runs a workload at EL0 in slices, takes the virtual PMBIRQ
/// and PMU interrupts into the drivers, and stops and collects.
pub struct GuestKernel {
    ttbr0_el1: u64,
    contextidr_el1: u64,
    spe: Option<(SpeSessionConfig, Buffer)>,
    pmu_events: Vec<EventSpec>,
    pmu: Option<PmuDriver>,
    pmu_counts: Vec<u64>,
    workload: Box<dyn Workload>,
    ops: u64,
    done: u64,
    slice: u64,
    yield_each_slice: bool,
    /// Kernel work run at EL1 with IRQs masked after each user slice.
    masked_work: Option<(Box<dyn Workload>, u64)>,
    driver: Option<SpeDriver>,
    phase: Phase,
    faults: Vec<IrqOutcome>,
    error: Option<DriverError>,
    data: Vec<u8>,
}

impl GuestKernel {
    /// A session over `buffer` (mapped by the tables at IPA `ttbr0_el1`)
    /// running `ops` operations of `workload`.
    pub fn new(
        ttbr0_el1: u64,
        session: SpeSessionConfig,
        buffer: Buffer,
        workload: Box<dyn Workload>,
        ops: u64,
    ) -> Self {
        GuestKernel {
            ttbr0_el1,
            contextidr_el1: 0,
            spe: Some((session, buffer)),
            pmu_events: Vec::new(),
            pmu: None,
            pmu_counts: Vec::new(),
            workload,
            ops,
            done: 0,
            slice: 100_000,
            yield_each_slice: false,
            masked_work: None,
            driver: None,
            phase: Phase::Boot,
            faults: Vec::new(),
            error: None,
            data: Vec::new(),
        }
    }

    /// A kernel without SPE (add PMU events with [`GuestKernel::with_pmu`]),
    /// running `ops` operations of `workload` under the tables at IPA
    /// `ttbr0_el1`.
    pub fn without_spe(ttbr0_el1: u64, workload: Box<dyn Workload>, ops: u64) -> Self {
        let mut k = GuestKernel::new(
            ttbr0_el1,
            SpeSessionConfig::default(),
            Buffer { va: 0, size: 0 },
            workload,
            ops,
        );
        k.spe = None;
        k
    }

    /// Counts (and, with a period, samples) `events` with the PMU driver on
    /// the vCPU's counters `0..PMCR_EL0.N`.
    pub fn with_pmu(mut self, events: Vec<EventSpec>) -> Self {
        self.pmu_events = events;
        self
    }

    /// The PMU events' totals, read when the session stopped (in the order
    /// given to [`GuestKernel::with_pmu`]).
    pub fn pmu_counts(&self) -> &[u64] {
        &self.pmu_counts
    }

    /// The PMU driver's record: interrupts taken, and per event its
    /// overflows.
    pub fn pmu_driver(&self) -> Option<(PmuDriverStats, Vec<u64>)> {
        self.pmu
            .as_ref()
            .map(|d| (d.stats(), d.slots().iter().map(|s| s.overflows).collect()))
    }

    /// Runs its user process as thread `tid`: CONTEXTIDR_EL1 holds it, so
    /// the CONTEXT packets of its samples name it (by default the kernel
    /// leaves CONTEXTIDR_EL1 alone, at its reset value 0).
    pub fn with_context_id(mut self, tid: u32) -> Self {
        self.contextidr_el1 = tid.into();
        self
    }

    /// Runs user space in slices of `ops` operations and gives the CPU back
    /// after each (a timer tick: the host may then schedule something else,
    /// or move the vCPU to another CPU).
    pub fn with_slices(mut self, ops: u64) -> Self {
        self.slice = ops.max(1);
        self.yield_each_slice = true;
        self
    }

    /// After each user slice, runs `ops` operations of `work` at EL1 with
    /// IRQs masked (a critical section of the kernel's): a virtual
    /// interrupt raised meanwhile is taken only after it.
    pub fn with_masked_kernel_work(mut self, work: Box<dyn Workload>, ops: u64) -> Self {
        self.masked_work = Some((work, ops));
        self
    }

    /// Whether the program has finished.
    pub fn finished(&self) -> bool {
        self.phase == Phase::Done
    }

    /// The SPE data collected.
    pub fn data(&self) -> &[u8] {
        &self.data
    }
    /// Buffer management faults the driver saw.
    pub fn faults(&self) -> &[IrqOutcome] {
        &self.faults
    }
    /// The driver's record.
    pub fn driver_stats(&self) -> Option<SpeDriverStats> {
        self.driver.as_ref().map(|d| d.stats())
    }
    /// A driver error that ended the session.
    pub fn error(&self) -> Option<DriverError> {
        self.error
    }
    /// Operations run so far.
    pub fn ops_done(&self) -> u64 {
        self.done
    }

    fn boot(&mut self, mut env: &mut dyn GuestEnv) -> Result<(), DriverError> {
        super::drivers::wr(env, hyperprof_arch::SysReg::TTBR0_EL1, self.ttbr0_el1)?;
        if self.contextidr_el1 != 0 {
            super::drivers::wr(
                env,
                hyperprof_arch::SysReg::CONTEXTIDR_EL1,
                self.contextidr_el1,
            )?;
        }
        env.isb();
        if let Some((session, buffer)) = self.spe {
            if self.driver.is_none() {
                let caps = spe::probe(&mut env)?;
                self.driver = Some(SpeDriver::new(session, caps, buffer)?);
            }
            if let Some(d) = self.driver.as_mut() {
                d.start(&mut env)?;
            }
        }
        if !self.pmu_events.is_empty() {
            if self.pmu.is_none() {
                let mut d = PmuDriver::probe(&mut env, Range::Low)?;
                for e in &self.pmu_events {
                    d.add(*e)?;
                }
                self.pmu = Some(d);
            }
            if let Some(d) = self.pmu.as_mut() {
                d.start(&mut env)?;
            }
        }
        Ok(())
    }
}

impl GuestKernel {
    /// The interrupt handlers of the pending virtual interrupts.
    fn handle_irqs(
        &mut self,
        mut env: &mut dyn GuestEnv,
        spe_irq: bool,
        pmu_irq: bool,
    ) -> Result<(), DriverError> {
        if spe_irq {
            if let Some(d) = self.driver.as_mut() {
                if let f @ IrqOutcome::Fault { .. } = d.handle_irq(&mut env)? {
                    self.faults.push(f);
                }
            }
        }
        if pmu_irq {
            if let Some(d) = self.pmu.as_mut() {
                d.handle_irq(&mut env)?;
            }
        }
        Ok(())
    }
}

impl GuestProgram for GuestKernel {
    fn run(&mut self, mut env: &mut dyn GuestEnv) -> GuestStep {
        loop {
            match self.phase {
                Phase::Boot => match self.boot(env) {
                    Ok(()) => self.phase = Phase::Run,
                    Err(e) if is_exit(&e) => return GuestStep::More,
                    Err(e) => {
                        self.error = Some(e);
                        self.phase = Phase::Done;
                    }
                },
                Phase::Run => {
                    if self.done >= self.ops {
                        self.phase = Phase::Stop;
                        continue;
                    }
                    let (spe_irq, pmu_irq) = (env.virq_pending(), env.pmu_virq_pending());
                    if spe_irq || pmu_irq {
                        env.take_virq();
                        let r = self.handle_irqs(env, spe_irq, pmu_irq);
                        match r {
                            Ok(()) => {}
                            Err(e) if is_exit(&e) => return GuestStep::More,
                            Err(e) => {
                                self.error = Some(e);
                                self.phase = Phase::Done;
                                continue;
                            }
                        }
                    }
                    env.to_el0();
                    let budget = self.slice.min(self.ops - self.done);
                    let (n, stop) = env.execute(self.workload.as_mut(), budget);
                    self.done += n;
                    env.to_el1();
                    if let Some((work, ops)) = self.masked_work.as_mut() {
                        if stop != ExecStop::Exit {
                            env.mask_irqs(true);
                            let (_, masked_stop) = env.execute(work.as_mut(), *ops);
                            env.mask_irqs(false);
                            if masked_stop == ExecStop::Exit {
                                return GuestStep::More;
                            }
                        }
                    }
                    if stop == ExecStop::Exit
                        || (self.yield_each_slice && stop == ExecStop::Completed)
                    {
                        return GuestStep::More;
                    }
                }
                Phase::Stop => {
                    if let Some(d) = self.driver.as_mut() {
                        match d.stop(&mut env) {
                            Ok(()) => self.data.extend(d.take_data()),
                            Err(e) if is_exit(&e) => return GuestStep::More,
                            Err(e) => self.error = Some(e),
                        }
                    }
                    if let Some(d) = self.pmu.as_mut() {
                        let totals: Result<Vec<u64>, _> =
                            (0..d.slots().len()).map(|i| d.read(&mut env, i)).collect();
                        match totals.and_then(|t| d.stop(&mut env).map(|()| t)) {
                            Ok(t) => self.pmu_counts = t,
                            Err(e) if is_exit(&e) => return GuestStep::More,
                            Err(e) => self.error = Some(e),
                        }
                    }
                    self.phase = Phase::Done;
                }
                Phase::Done => return GuestStep::Done,
            }
        }
    }
}

/// A failed access that only means "the hypervisor went to its VMM".
fn is_exit(e: &DriverError) -> bool {
    matches!(
        e,
        DriverError::Access {
            fault: hyperprof_arch::AccessFault::Trapped { .. },
            ..
        }
    )
}
