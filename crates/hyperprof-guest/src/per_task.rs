//! A guest kernel running per-task `perf record -e arm_spe//`: two (or
//! more) user tasks share one vCPU and each is profiled by its own perf
//! event with its own AUX buffer. As Linux's perf core does for per-task
//! events, the kernel enables the task's SPE session when it schedules the
//! task in (`arm_spe_pmu_start`: buffer registers, then PMBLIMITR_EL1.E)
//! and stops it when it schedules the task out (`arm_spe_pmu_stop`: the
//! buffer disabled and its records collected), so the guest's buffer is
//! enabled and disabled at every context switch: the pattern James Clark
//! reported against pinning on enable.
//!
//! Each slice ends with the scheduler tick, a timer interrupt that exits to
//! the host (the program returns [`GuestStep::More`]); the context switch
//! (stop the old task's session, start the new one's) runs at the start of
//! the next run, so between runs the current task's buffer is enabled.

use hyperprof_sim::workload::Workload;

use crate::drivers::spe::{self, Buffer, IrqOutcome, SpeDriver, SpeSessionConfig};
use crate::drivers::DriverError;
use crate::guest::{ExecStop, GuestEnv, GuestProgram, GuestStep};

/// One profiled user task.
pub struct Task {
    workload: Box<dyn Workload>,
    buffer: Buffer,
    driver: Option<SpeDriver>,
    ops: u64,
    done: u64,
    data: Vec<u8>,
    faults: Vec<IrqOutcome>,
}

impl Task {
    /// A task running `ops` operations of `workload`, profiled into
    /// `buffer` (mapped by the kernel's tables).
    pub fn new(workload: Box<dyn Workload>, buffer: Buffer, ops: u64) -> Self {
        Task {
            workload,
            buffer,
            driver: None,
            ops,
            done: 0,
            data: Vec::new(),
            faults: Vec::new(),
        }
    }
    /// The SPE records collected for this task.
    pub fn data(&self) -> &[u8] {
        &self.data
    }
    /// Buffer management faults its session saw.
    pub fn faults(&self) -> &[IrqOutcome] {
        &self.faults
    }
    /// Operations it ran.
    pub fn ops_done(&self) -> u64 {
        self.done
    }
    /// Its driver's record (interrupts, buffer-full events, bytes).
    pub fn driver_stats(&self) -> Option<spe::SpeDriverStats> {
        self.driver.as_ref().map(SpeDriver::stats)
    }
    fn finished(&self) -> bool {
        self.done >= self.ops
    }
}

/// Where the kernel is in a task's slice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Boot,
    /// Scheduling the current task in: its session starts.
    SchedIn,
    /// The current task runs its slice.
    Run,
    /// Scheduling the current task out: its session stops.
    SchedOut,
    Done,
}

/// The per-task profiling guest kernel.
pub struct PerTaskKernel {
    ttbr0_el1: u64,
    session: SpeSessionConfig,
    tasks: Vec<Task>,
    current: usize,
    slice: u64,
    slice_left: u64,
    phase: Phase,
    switches: u64,
    error: Option<DriverError>,
}

impl PerTaskKernel {
    /// A kernel (tables at IPA `ttbr0_el1`) scheduling `tasks` round robin
    /// in slices of `slice` operations, each profiled with `session`.
    pub fn new(ttbr0_el1: u64, session: SpeSessionConfig, tasks: Vec<Task>, slice: u64) -> Self {
        PerTaskKernel {
            ttbr0_el1,
            session,
            tasks,
            current: 0,
            slice: slice.max(1),
            slice_left: 0,
            phase: Phase::Boot,
            switches: 0,
            error: None,
        }
    }
    /// The tasks.
    pub fn tasks(&self) -> &[Task] {
        &self.tasks
    }
    /// Context switches done (each a session stop and a session start).
    pub fn switches(&self) -> u64 {
        self.switches
    }
    /// Whether every task finished.
    pub fn finished(&self) -> bool {
        self.phase == Phase::Done
    }
    /// A driver error that ended the kernel.
    pub fn error(&self) -> Option<DriverError> {
        self.error
    }

    fn boot(&mut self, mut env: &mut dyn GuestEnv) -> Result<(), DriverError> {
        crate::drivers::wr(env, hyperprof_arch::SysReg::TTBR0_EL1, self.ttbr0_el1)?;
        env.isb();
        let caps = spe::probe(&mut env)?;
        for t in &mut self.tasks {
            if t.driver.is_none() {
                t.driver = Some(SpeDriver::new(self.session, caps, t.buffer)?);
            }
        }
        Ok(())
    }

    /// The next unfinished task after the current one (round robin).
    fn next_task(&self) -> Option<usize> {
        let n = self.tasks.len();
        (1..=n)
            .map(|i| (self.current + i) % n)
            .find(|&i| !self.tasks[i].finished())
    }

    /// One step of the kernel; `Ok(Some(step))` returns from the run.
    fn step(&mut self, mut env: &mut dyn GuestEnv) -> Result<Option<GuestStep>, DriverError> {
        match self.phase {
            Phase::Boot => {
                self.boot(env)?;
                self.phase = match self.tasks.iter().position(|t| !t.finished()) {
                    Some(i) => {
                        self.current = i;
                        Phase::SchedIn
                    }
                    None => Phase::Done,
                };
            }
            Phase::SchedIn => {
                if let Some(d) = self.tasks[self.current].driver.as_mut() {
                    d.start(&mut env)?;
                }
                self.slice_left = self.slice;
                self.phase = Phase::Run;
            }
            Phase::Run => {
                let t = &mut self.tasks[self.current];
                if env.virq_pending() {
                    env.take_virq();
                    if let Some(d) = t.driver.as_mut() {
                        if let f @ IrqOutcome::Fault { .. } = d.handle_irq(&mut env)? {
                            t.faults.push(f);
                        }
                    }
                }
                let want = self.slice_left.min(t.ops - t.done);
                env.to_el0();
                let (n, stop) = env.execute(t.workload.as_mut(), want);
                t.done += n;
                self.slice_left -= n.min(self.slice_left);
                env.to_el1();
                if self.slice_left == 0 || t.finished() {
                    // The scheduler tick (a timer interrupt, which exits to
                    // the host): the switch happens on the next run.
                    self.phase = Phase::SchedOut;
                    return Ok(Some(GuestStep::More));
                }
                if stop == ExecStop::Exit {
                    return Ok(Some(GuestStep::More));
                }
            }
            Phase::SchedOut => {
                let t = &mut self.tasks[self.current];
                if let Some(d) = t.driver.as_mut() {
                    d.stop(&mut env)?;
                    t.data.extend(d.take_data());
                }
                self.switches += 1;
                self.phase = match self.next_task() {
                    Some(i) => {
                        self.current = i;
                        Phase::SchedIn
                    }
                    None => Phase::Done,
                };
            }
            Phase::Done => return Ok(Some(GuestStep::Done)),
        }
        Ok(None)
    }
}

impl GuestProgram for PerTaskKernel {
    fn run(&mut self, env: &mut dyn GuestEnv) -> GuestStep {
        loop {
            match self.step(env) {
                Ok(Some(step)) => return step,
                Ok(None) => {}
                // The hypervisor went to its VMM: redo this step next run.
                Err(e) if is_exit(&e) => return GuestStep::More,
                Err(e) => {
                    self.error = Some(e);
                    self.phase = Phase::Done;
                }
            }
        }
    }
}

fn is_exit(e: &DriverError) -> bool {
    matches!(
        e,
        DriverError::Access {
            fault: hyperprof_arch::AccessFault::Trapped { .. },
            ..
        }
    )
}
