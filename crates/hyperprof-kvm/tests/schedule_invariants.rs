//! The DESIGN.md invariants under randomized schedules: two VMs whose guest
//! kernels profile themselves with SPE (`GuestKernel` in slices, small
//! buffers so that they fill) on a two-CPU VHE host that profiles its own
//! kernel (or not), while proptest picks the order of host work, vCPU loads
//! (on either CPU), runs and puts.
//!
//! - Isolation: the host's data holds only EL2 records of its own kernel
//!   code with its own CONTEXTIDR_EL2; each guest's only EL0 records of its
//!   own workload (PCs against `Workload::symbols`; the two VMs run
//!   workloads whose code does not overlap).
//! - Conservation: every unit's `sampled == written + filtered + collided +
//!   discarded + queued` at every step; the records the host collected
//!   equal what its units wrote while the host owned the buffer, each
//!   guest's equal what the units wrote while it did, and so the collected
//!   total equals the units' written total once everything is stopped;
//!   puts write and lose nothing, and loads and runs lose records only at
//!   buffer management events (a load's drain may fill the host's buffer,
//!   which loses the rest of its queue as on bare metal).
//! - Interrupts: every virtual PMBIRQ was taken by its own guest (the
//!   driver's interrupts equal the vCPU's virtual interrupts), every
//!   buffer-full event of a guest's buffer reached that guest's driver
//!   (the last may still be pending when its session stops, which collects
//!   it) and every one of the host's reached the host's, across loads and
//!   puts; no guest saw a fault or a spurious interrupt, and none got stuck
//!   (each run is bounded, so an interrupt storm fails instead of hanging).
//! - Limits: pinned bytes never exceed the VM's memlock limit (nor the
//!   maximum buffer size plus its table pages), and are 0 once the guests
//!   stopped.
//!
//! Records are attributed to their owner by when the unit wrote them: host
//! operations run only in host work and guest operations only inside
//! `Kvm::run`. The one host drain that happens inside a run is the lazy SPE
//! switch at a vCPU's first SPE access; so that it does not share a run
//! with guest sampling (a host buffer that fills during that drain would
//! make the split unknowable), each vCPU's first run is a one-instruction
//! program that reads PMBIDR_EL1 and yields, and everything the unit does
//! in it is the host's.

use hyperprof_arch::{pmbsr_el1, AccessFault, Cpu, ExceptionLevel, MemoryFault, SysReg};
use hyperprof_guest::drivers::spe::{Buffer, IrqOutcome, SpeDriver, SpeSessionConfig};
use hyperprof_guest::guest::{ExecStop, GuestEnv, GuestKernel, GuestProgram, GuestStep};
use hyperprof_kvm::vm::{Exit, Kvm, GUEST_RAM_IPA};
use hyperprof_sim::memory::PAGE_SIZE;
use hyperprof_sim::op::Symbol;
use hyperprof_sim::pe::RunExit;
use hyperprof_sim::spe::SpeStats;
use hyperprof_sim::workload::{by_name, Workload};
use hyperprof_spe::record::Record;
use hyperprof_spe::RecordDecoder;
use proptest::prelude::*;

mod common;
use common::*;
mod spe_vcpu;

const VMS: usize = 2;
const GUEST_BUF_VA: u64 = 0x0000_0040_0000_0000;
const GUEST_BUF_IPA: u64 = GUEST_RAM_IPA + (16 << 20);
const MAX_BUFFER: u64 = 64 << 10;
/// A pin of a buffer no larger than `MAX_BUFFER`: its pages, at most two
/// table pages per level below the root, and the root.
const PIN_BOUND: u64 = MAX_BUFFER + 7 * PAGE_SIZE;
/// The host's CONTEXTIDR_EL2 on CPU `c` is `HOST_CONTEXT + c`.
const HOST_CONTEXT: u64 = 0xC0DE_0000;

/// VM 0 runs one of the first, VM 1 one of the second: their code ranges
/// are disjoint, so a record in the wrong guest shows.
const VM_WORKLOADS: [&[&str]; VMS] = [
    &["mix", "stream-copy"],
    &["pointer-chase", "branchy", "array-sum"],
];

// ---------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct GuestCfg {
    workload: usize,
    seed: u64,
    ops: u64,
    slice: u64,
    pages: u64,
    interval: u32,
    jitter: bool,
    /// Memlock limit: the maximum buffer size (a 14-page buffer and its
    /// tables then need more: an Rlimit exit), or roomy.
    tight: bool,
}

#[derive(Clone, Copy, Debug)]
enum Op {
    /// With `masked`, the host stops at its first interrupt and leaves it
    /// pending (as when the next vcpu_load runs with interrupts disabled).
    HostWork {
        cpu: usize,
        ops: u64,
        masked: bool,
    },
    Load {
        vcpu: usize,
        cpu: usize,
    },
    Run {
        vcpu: usize,
    },
    Put {
        vcpu: usize,
    },
}

#[derive(Clone, Debug)]
struct Case {
    /// Host buffer pages per CPU; `None`: the host does not profile.
    host_pages: Option<u64>,
    guests: Vec<GuestCfg>,
    ops: Vec<Op>,
}

fn guest_cfg(vm: usize) -> impl Strategy<Value = GuestCfg> {
    (
        0..VM_WORKLOADS[vm].len(),
        any::<u64>(),
        20_000..80_000u64,
        prop_oneof![500..5_000u64, 5_000..30_000u64],
        prop_oneof![4 => prop::sample::select(vec![1u64, 2]), 1 => Just(14u64)],
        prop::sample::select(vec![256u32, 512]),
        any::<bool>(),
        prop::bool::weighted(0.3),
    )
        .prop_map(
            |(workload, seed, ops, slice, pages, interval, jitter, tight)| GuestCfg {
                workload,
                seed,
                ops,
                slice,
                pages,
                interval,
                jitter,
                tight,
            },
        )
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..CPUS, 1_000..30_000u64, prop::bool::weighted(0.3))
            .prop_map(|(cpu, ops, masked)| Op::HostWork { cpu, ops, masked }),
        3 => (0..VMS, 0..CPUS).prop_map(|(vcpu, cpu)| Op::Load { vcpu, cpu }),
        5 => (0..VMS).prop_map(|vcpu| Op::Run { vcpu }),
        2 => (0..VMS).prop_map(|vcpu| Op::Put { vcpu }),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop_oneof![
            1 => Just(None),
            3 => prop::sample::select(vec![1u64, 2, 64]).prop_map(Some),
        ],
        guest_cfg(0),
        guest_cfg(1),
        prop::collection::vec(op(), 0..60),
    )
        .prop_map(|(host_pages, g0, g1, ops)| Case {
            host_pages,
            guests: vec![g0, g1],
            ops,
        })
}

// ---------------------------------------------------------------------------
// The world
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Inv {
    Isolation,
    Conservation,
    Interrupts,
    Limits,
    /// The schedule could not be carried out as KVM documents.
    Interface,
}

struct Guest {
    vm: usize,
    vcpu: usize,
    kernel: GuestKernel,
    symbols: Vec<Symbol>,
    limit: u64,
    loaded: Option<usize>,
    /// Records units wrote, lost, and buffer events raised while this
    /// guest owned the buffer.
    written: u64,
    lost: u64,
    full_events: u64,
    fault_events: u64,
    rlimits: u64,
    /// Its SPE state went live (the first SPE access happened).
    touched: bool,
    /// A run made no progress: it is not run again.
    stuck: bool,
}

/// Guest accesses one run may make. A slice makes a few dozen; a guest
/// that makes more is stuck (an interrupt that never goes away, say) and
/// would otherwise keep `Kvm::run` from returning.
const RUN_BUDGET: u64 = 20_000;

/// The guest kernel on an environment that ends the run (as an exit to
/// the VMM would) once it has made `RUN_BUDGET` accesses, so that a
/// livelocked guest fails the test instead of hanging it.
struct Bounded<'a> {
    kernel: &'a mut GuestKernel,
    exhausted: bool,
}

impl GuestProgram for Bounded<'_> {
    fn run(&mut self, env: &mut dyn GuestEnv) -> GuestStep {
        let mut env = Counting {
            inner: env,
            calls: 0,
        };
        let step = self.kernel.run(&mut env);
        self.exhausted = env.calls > RUN_BUDGET;
        step
    }
}

struct Counting<'a> {
    inner: &'a mut dyn GuestEnv,
    calls: u64,
}

impl Counting<'_> {
    fn over(&mut self) -> bool {
        self.calls += 1;
        self.calls > RUN_BUDGET
    }
}

const GONE: AccessFault = AccessFault::Trapped {
    to: ExceptionLevel::EL2,
};

impl Cpu for Counting<'_> {
    fn read(&mut self, reg: SysReg) -> Result<u64, AccessFault> {
        if self.over() {
            return Err(GONE);
        }
        self.inner.read(reg)
    }
    fn write(&mut self, reg: SysReg, val: u64) -> Result<(), AccessFault> {
        if self.over() {
            return Err(GONE);
        }
        self.inner.write(reg, val)
    }
    fn isb(&mut self) {
        self.inner.isb();
    }
    fn dsb_nsh(&mut self) {
        self.inner.dsb_nsh();
    }
    fn psb_csync(&mut self) {
        self.inner.psb_csync();
    }
    fn current_el(&self) -> ExceptionLevel {
        self.inner.current_el()
    }
    fn load(&mut self, va: u64, buf: &mut [u8]) -> Result<(), MemoryFault> {
        self.inner.load(va, buf)
    }
}

impl GuestEnv for Counting<'_> {
    fn execute(&mut self, workload: &mut dyn Workload, budget: u64) -> (u64, ExecStop) {
        if self.over() {
            return (0, ExecStop::Exit);
        }
        self.inner.execute(workload, budget)
    }
    fn virq_pending(&self) -> bool {
        self.inner.virq_pending()
    }
    fn pmu_virq_pending(&self) -> bool {
        self.inner.pmu_virq_pending()
    }
    fn take_virq(&mut self) {
        self.inner.take_virq();
    }
    fn to_el0(&mut self) {
        self.inner.to_el0();
    }
    fn to_el1(&mut self) {
        self.inner.to_el1();
    }
    fn mask_irqs(&mut self, masked: bool) {
        self.inner.mask_irqs(masked);
    }
}

/// A guest's first SPE access, alone in a run.
struct Touch;

impl GuestProgram for Touch {
    fn run(&mut self, env: &mut dyn GuestEnv) -> GuestStep {
        let _ = env.read(SysReg::PMBIDR_EL1);
        GuestStep::More
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct HostAcct {
    written: u64,
    lost: u64,
    full_events: u64,
    fault_events: u64,
}

struct World {
    kvm: Kvm,
    guests: Vec<Guest>,
    host: Option<Vec<SpeDriver>>,
    host_work: Vec<Box<dyn Workload>>,
    host_symbols: Vec<Symbol>,
    host_acct: Vec<HostAcct>,
    /// Per vCPU: the host's registers before its load, and whether the
    /// ones the unit updates may be compared too.
    snapshot: Vec<Option<(Vec<u64>, bool)>>,
    problems: Vec<(Inv, String)>,
}

/// Dense enough that a two-page host buffer fills several times a case.
fn host_session() -> SpeSessionConfig {
    SpeSessionConfig {
        interval: 256,
        ..SpeSessionConfig::default()
    }
}

fn decode(data: &[u8]) -> Result<Vec<Record>, String> {
    RecordDecoder::new(data)
        .map(|r| r.map(|(_, rec)| rec).map_err(|e| format!("{e:?}")))
        .collect()
}

fn in_symbols(symbols: &[Symbol], r: &Record, el: u8) -> bool {
    r.pc.is_some_and(|pc| {
        pc.el == el
            && symbols
                .iter()
                .any(|s| (s.start..s.end).contains(&pc.virtual_address()))
    })
}

impl World {
    fn new(case: &Case) -> World {
        let mut kvm = Kvm::new(machine());
        let mut host = None;
        // The host's context ID, set before its session starts.
        for cpu in 0..CPUS {
            let mut c = kvm.machine().cpu(cpu).unwrap();
            c.write(SysReg::CONTEXTIDR_EL2, HOST_CONTEXT + cpu as u64)
                .unwrap();
        }
        if let Some(pages) = case.host_pages {
            host = Some(
                (0..CPUS)
                    .map(|c| start_host(&mut kvm, c, pages, host_session()))
                    .collect(),
            );
        }
        let host_work: Vec<Box<dyn Workload>> = (0..CPUS)
            .map(|c| by_name("kernel-mix", 90 + c as u64).unwrap())
            .collect();
        let host_symbols = host_work[0].symbols().to_vec();
        let guests = case
            .guests
            .iter()
            .enumerate()
            .map(|(i, g)| new_guest(&mut kvm, i, g))
            .collect();
        World {
            kvm,
            guests,
            host,
            host_work,
            host_symbols,
            host_acct: vec![HostAcct::default(); CPUS],
            snapshot: vec![None; VMS],
            problems: Vec::new(),
        }
    }

    fn bad(&mut self, inv: Inv, msg: String) {
        if self.problems.iter().filter(|(i, _)| *i == inv).count() < 8 {
            self.problems.push((inv, msg));
        }
    }

    fn host_delta(&mut self, cpu: usize, before: &SpeStats, after: &SpeStats) {
        let a = &mut self.host_acct[cpu];
        a.written += after.written - before.written;
        a.lost += after.lost - before.lost;
        a.full_events += after.buffer_full_events - before.buffer_full_events;
        a.fault_events += after.fault_events - before.fault_events;
    }

    fn loaded_on(&self, cpu: usize) -> Option<usize> {
        self.guests.iter().position(|g| g.loaded == Some(cpu))
    }

    /// Host kernel work on `cpu`; PMBIRQ goes to the host's driver.
    fn host_work(&mut self, cpu: usize, ops: u64, masked: bool) {
        let (before, _) = unit(&mut self.kvm, cpu);
        let mut left = ops;
        for _ in 0..10_000 {
            if left == 0 {
                break;
            }
            let mut done = 0;
            let exit = self
                .kvm
                .machine()
                .run(cpu, self.host_work[cpu].as_mut(), left, &mut done)
                .unwrap();
            left -= done;
            if let RunExit::Interrupt(lines) = exit {
                if masked || !self.host_irq(cpu, lines.pmbirq, lines.pmuirq) {
                    break;
                }
            }
        }
        if let Some(v) = self.loaded_on(cpu) {
            if let Some((_, whole)) = self.snapshot[v].as_mut() {
                *whole = false;
            }
        }
        let (after, _) = unit(&mut self.kvm, cpu);
        self.host_delta(cpu, &before, &after);
    }

    /// The host takes an interrupt on `cpu`: it must be the host's own.
    fn host_irq(&mut self, cpu: usize, pmbirq: bool, pmuirq: bool) -> bool {
        self.kvm
            .machine()
            .pe_mut(cpu)
            .unwrap()
            .exception_entry(ExceptionLevel::EL2);
        let guest_owns = guest_owns_buffer(&mut self.kvm, cpu);
        let Some(host) = self
            .host
            .as_mut()
            .filter(|_| pmbirq && !pmuirq && !guest_owns)
        else {
            self.bad(
                Inv::Interrupts,
                format!(
                    "cpu {cpu}: the host got an interrupt (PMBIRQ {pmbirq}, PMU {pmuirq}) that is \
                     not its own (guest owns the buffer: {guest_owns})"
                ),
            );
            return false;
        };
        let mut c = self.kvm.machine().cpu(cpu).unwrap();
        match host[cpu].handle_irq(&mut c) {
            Ok(IrqOutcome::BufferFull) => true,
            other => {
                self.bad(
                    Inv::Interrupts,
                    format!("cpu {cpu}: host PMBIRQ: {other:?}"),
                );
                false
            }
        }
    }

    fn host_takes_pending(&mut self, cpu: usize) {
        let lines = self.kvm.machine().pe(cpu).unwrap().irq_lines();
        if lines.any() {
            let (before, _) = unit(&mut self.kvm, cpu);
            self.host_irq(cpu, lines.pmbirq, lines.pmuirq);
            let (after, _) = unit(&mut self.kvm, cpu);
            self.host_delta(cpu, &before, &after);
        }
    }

    fn check_step(&mut self, what: &str) {
        for cpu in 0..CPUS {
            let (s, q) = unit(&mut self.kvm, cpu);
            if s.sampled != s.written + s.filtered + s.collided + s.discarded + q {
                self.bad(
                    Inv::Conservation,
                    format!("{what}: cpu {cpu}: {s:?} with {q} queued"),
                );
            }
        }
        for g in 0..VMS {
            let (vm, limit) = (self.guests[g].vm, self.guests[g].limit);
            let pinned = self.kvm.pinned_bytes(vm).unwrap();
            if pinned > limit || pinned > PIN_BOUND {
                self.bad(
                    Inv::Limits,
                    format!("{what}: VM {vm} pins {pinned} bytes, memlock {limit}"),
                );
            }
        }
    }

    fn load(&mut self, g: usize, cpu: usize) {
        let vcpu = self.guests[g].vcpu;
        if let Some(on) = self.guests[g].loaded {
            if self.kvm.load(vcpu, cpu).is_ok() {
                self.bad(
                    Inv::Interface,
                    format!("vCPU {vcpu} loaded on CPU {cpu} while loaded on {on}"),
                );
            }
            return;
        }
        if self.loaded_on(cpu).is_some() {
            // One vCPU per physical CPU at a time: not a schedule.
            return;
        }
        let regs = host_regs(&mut self.kvm, cpu);
        let (before, queued) = unit(&mut self.kvm, cpu);
        if let Err(e) = self.kvm.load(vcpu, cpu) {
            self.bad(Inv::Interface, format!("load vCPU {vcpu} on {cpu}: {e}"));
            return;
        }
        let (after, _) = unit(&mut self.kvm, cpu);
        // The load drains the host's records into its buffer; if that fills
        // (a buffer event the host will take after the put) the rest are
        // lost, as on bare metal. Nothing else may be.
        let events = after.buffer_full_events + after.fault_events
            - before.buffer_full_events
            - before.fault_events;
        if after.lost - before.lost > loss_per_event() * events {
            self.bad(
                Inv::Conservation,
                format!("load on cpu {cpu} lost records: {before:?} -> {after:?}"),
            );
        }
        self.host_delta(cpu, &before, &after);
        self.guests[g].loaded = Some(cpu);
        self.snapshot[g] = Some((regs, queued == 0));
    }

    fn put(&mut self, g: usize) {
        let vcpu = self.guests[g].vcpu;
        let Some(cpu) = self.guests[g].loaded else {
            if self.kvm.put(vcpu).is_ok() {
                self.bad(Inv::Interface, format!("put of vCPU {vcpu}, not loaded"));
            }
            return;
        };
        let (before, _) = unit(&mut self.kvm, cpu);
        if let Err(e) = self.kvm.put(vcpu) {
            self.bad(Inv::Interface, format!("put vCPU {vcpu}: {e}"));
            return;
        }
        self.guests[g].loaded = None;
        let (after, _) = unit(&mut self.kvm, cpu);
        if after.written != before.written || after.lost != before.lost {
            self.bad(
                Inv::Conservation,
                format!("put on cpu {cpu} wrote or lost records: {before:?} -> {after:?}"),
            );
        }
        let now = host_regs(&mut self.kvm, cpu);
        if let Some((was, whole)) = self.snapshot[g].take() {
            let n = if whole {
                HOST_REGS.len()
            } else {
                HOST_REGS.len() - HOST_DYNAMIC
            };
            for i in 0..n {
                if now[i] != was[i] {
                    self.bad(
                        Inv::Isolation,
                        format!(
                            "cpu {cpu}: the host's {} is {:#x} after putting vCPU {vcpu}, \
                             {:#x} before its load",
                            HOST_REGS[i], now[i], was[i]
                        ),
                    );
                }
            }
        }
        self.host_takes_pending(cpu);
    }

    /// One KVM_RUN of guest `g`; false if it cannot go on.
    fn run(&mut self, g: usize) -> bool {
        let vcpu = self.guests[g].vcpu;
        if self.guests[g].stuck {
            return false;
        }
        let Some(cpu) = self.guests[g].loaded else {
            let exit = self.kvm.run(vcpu, &mut self.guests[g].kernel);
            if !matches!(exit, Exit::FailEntry(_)) {
                self.bad(
                    Inv::Interface,
                    format!("KVM_RUN of vCPU {vcpu}, not loaded: {exit:?}"),
                );
            }
            return false;
        };
        if !self.guests[g].touched {
            let (before, queued) = unit(&mut self.kvm, cpu);
            let exit = self.kvm.run(vcpu, &mut Touch);
            let (after, _) = unit(&mut self.kvm, cpu);
            self.host_delta(cpu, &before, &after);
            self.guests[g].touched = true;
            // The host's queued records reached its buffer, unless it
            // filled on the way (a buffer event, which may lose the rest).
            let written = after.written - before.written;
            let lost = after.lost - before.lost;
            let event = after.buffer_full_events > before.buffer_full_events;
            if exit != Exit::Yield
                || !guest_owns_buffer(&mut self.kvm, cpu)
                || written + lost != queued
                || (lost > 0 && !event)
            {
                self.bad(
                    Inv::Conservation,
                    format!(
                        "cpu {cpu}: vCPU {vcpu}'s first SPE access ({exit:?}): {queued} host \
                         records queued, {written} written, {lost} lost"
                    ),
                );
            }
            self.host_takes_pending(cpu);
        }
        let (before, _) = unit(&mut self.kvm, cpu);
        let owned_before = guest_owns_buffer(&mut self.kvm, cpu);
        let mut program = Bounded {
            kernel: &mut self.guests[g].kernel,
            exhausted: false,
        };
        let exit = self.kvm.run(vcpu, &mut program);
        let stuck = program.exhausted;
        let (after, _) = unit(&mut self.kvm, cpu);
        if !owned_before || !guest_owns_buffer(&mut self.kvm, cpu) {
            self.bad(
                Inv::Interface,
                format!("vCPU {vcpu} ran on cpu {cpu} with its SPE state not switched in"),
            );
        }
        let written = after.written - before.written;
        let guest = &mut self.guests[g];
        guest.written += written;
        guest.lost += after.lost - before.lost;
        guest.full_events += after.buffer_full_events - before.buffer_full_events;
        guest.fault_events += after.fault_events - before.fault_events;
        if stuck {
            self.guests[g].stuck = true;
            self.bad(
                Inv::Interrupts,
                format!(
                    "vCPU {vcpu}: the guest made {RUN_BUDGET} accesses in one run without \
                     finishing a slice (after {} virtual IRQs): it is stuck",
                    self.kvm.vcpu_stats(vcpu).unwrap().virqs
                ),
            );
            return false;
        }
        let guest = &mut self.guests[g];
        let ok = match exit {
            Exit::Halt | Exit::Yield => true,
            Exit::Rlimit {
                needed,
                used,
                limit,
            } => {
                guest.rlimits += 1;
                let vm = guest.vm;
                let want = used.saturating_add(needed);
                if limit != guest.limit || want <= limit {
                    let msg = format!(
                        "vCPU {vcpu}: Rlimit {{ needed: {needed}, used: {used}, limit: {limit} }} \
                         with memlock {}",
                        guest.limit
                    );
                    self.bad(Inv::Limits, msg);
                    false
                } else if let Err(e) = self.kvm.set_memlock_limit(vm, want) {
                    self.bad(
                        Inv::Limits,
                        format!("raising VM {vm}'s memlock to {want}: {e}"),
                    );
                    false
                } else {
                    self.guests[g].limit = want;
                    true
                }
            }
            Exit::FailEntry(why) => {
                self.bad(Inv::Interface, format!("KVM_RUN of vCPU {vcpu}: {why}"));
                false
            }
            other @ (Exit::Hypercall { .. } | Exit::Mmio(_) | Exit::Idle) => {
                let msg = format!("vCPU {vcpu}: a Rust guest's KVM_RUN returned {other:?}");
                self.bad(Inv::Interface, msg);
                false
            }
        };
        self.host_takes_pending(cpu);
        ok
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::HostWork { cpu, ops, masked } => self.host_work(cpu, ops, masked),
            Op::Load { vcpu, cpu } => self.load(vcpu, cpu),
            Op::Run { vcpu } => {
                self.run(vcpu);
            }
            Op::Put { vcpu } => self.put(vcpu),
        }
        self.check_step(&format!("after {op:?}"));
    }

    /// Runs every guest to its end, alternating CPUs, then puts everything.
    fn complete(&mut self) {
        for g in 0..VMS {
            let mut turns = 0;
            while !self.guests[g].kernel.finished() && turns < 2_000 {
                turns += 1;
                if self.guests[g].loaded.is_none() {
                    let cpu = (0..CPUS)
                        .map(|c| (c + turns) % CPUS)
                        .find(|&c| self.loaded_on(c).is_none());
                    let Some(cpu) = cpu else {
                        let other = (g + 1) % VMS;
                        self.put(other);
                        continue;
                    };
                    self.load(g, cpu);
                }
                if !self.run(g) {
                    break;
                }
                self.check_step("completing");
                if turns % 3 == 0 {
                    self.put(g);
                }
            }
            if !self.guests[g].kernel.finished() && !self.guests[g].stuck {
                self.bad(
                    Inv::Interface,
                    format!(
                        "guest {g} did not finish: {:?}",
                        self.guests[g].kernel.error()
                    ),
                );
            }
        }
        for g in 0..VMS {
            if self.guests[g].loaded.is_some() {
                self.put(g);
            }
        }
        self.check_step("at the end");
    }

    fn verdict(mut self) -> Vec<(Inv, String)> {
        self.complete();
        // The host stops its sessions and collects.
        let mut host_records = vec![Vec::new(); CPUS];
        for cpu in 0..CPUS {
            self.host_takes_pending(cpu);
            let (before, _) = unit(&mut self.kvm, cpu);
            if let Some(host) = self.host.as_mut() {
                let mut c = self.kvm.machine().cpu(cpu).unwrap();
                match host[cpu].stop(&mut c) {
                    Ok(()) => match decode(&host[cpu].take_data()) {
                        Ok(r) => host_records[cpu] = r,
                        Err(e) => self.bad(Inv::Isolation, format!("cpu {cpu}: host data: {e}")),
                    },
                    Err(e) => self.bad(Inv::Interface, format!("cpu {cpu}: host stop: {e}")),
                }
            }
            let (after, _) = unit(&mut self.kvm, cpu);
            self.host_delta(cpu, &before, &after);
            // A buffer-full event the stop's own drain raises is collected
            // by the stop, not taken as an interrupt (as for the guests).
            self.host_acct[cpu].full_events -= after.buffer_full_events - before.buffer_full_events;
        }
        self.check_step("after the host stopped");

        // Isolation.
        for (cpu, records) in host_records.iter().enumerate() {
            let context = HOST_CONTEXT as u32 + cpu as u32;
            let foreign = records
                .iter()
                .filter(|r| !in_symbols(&self.host_symbols, r, 2) || r.context_el2 != Some(context))
                .count();
            if foreign > 0 {
                self.bad(
                    Inv::Isolation,
                    format!(
                        "cpu {cpu}: {foreign} of {} host records are not the host's kernel",
                        records.len()
                    ),
                );
            }
        }
        let mut guest_records = Vec::new();
        for g in 0..VMS {
            let records = match decode(self.guests[g].kernel.data()) {
                Ok(r) => r,
                Err(e) => {
                    self.bad(Inv::Isolation, format!("guest {g} data: {e}"));
                    Vec::new()
                }
            };
            let host_context = |r: &Record| {
                r.context_el2.is_some_and(|c| {
                    (HOST_CONTEXT..HOST_CONTEXT + CPUS as u64).contains(&u64::from(c))
                })
            };
            let foreign = records
                .iter()
                .filter(|r| !in_symbols(&self.guests[g].symbols, r, 0) || host_context(r))
                .count();
            if foreign > 0 {
                self.bad(
                    Inv::Isolation,
                    format!(
                        "guest {g}: {foreign} of {} records are not its own EL0 code",
                        records.len()
                    ),
                );
            }
            guest_records.push(records.len() as u64);
        }

        // Conservation.
        let mut unit_written = 0;
        for (cpu, records) in host_records.iter().enumerate() {
            let (s, q) = unit(&mut self.kvm, cpu);
            unit_written += s.written;
            let a = self.host_acct[cpu];
            if records.len() as u64 != a.written {
                self.bad(
                    Inv::Conservation,
                    format!(
                        "cpu {cpu}: the host collected {} records, its unit wrote {} for it",
                        records.len(),
                        a.written
                    ),
                );
            }
            if a.lost > loss_per_event() * (a.full_events + a.fault_events) {
                self.bad(
                    Inv::Conservation,
                    format!("cpu {cpu}: host records lost outside buffer events: {a:?}"),
                );
            }
            if q != 0 {
                self.bad(
                    Inv::Conservation,
                    format!("cpu {cpu}: {q} records still queued"),
                );
            }
        }
        // A stuck guest (reported under interrupts) never collected: its
        // own figures, and so the totals, say nothing more.
        let any_stuck = self.guests.iter().any(|g| g.stuck);
        for (g, &collected) in guest_records.iter().enumerate() {
            let gs = &self.guests[g];
            if gs.stuck {
                continue;
            }
            let msg = (collected != gs.written).then(|| {
                format!(
                    "guest {g}: collected {collected} records, its buffer received {}",
                    gs.written
                )
            });
            let lost =
                (gs.lost > loss_per_event() * (gs.full_events + gs.fault_events)).then(|| {
                    format!(
                        "guest {g}: {} records lost with {} buffer events",
                        gs.lost,
                        gs.full_events + gs.fault_events
                    )
                });
            for m in [msg, lost].into_iter().flatten() {
                self.bad(Inv::Conservation, m);
            }
        }
        let collected: u64 = host_records.iter().map(|r| r.len() as u64).sum::<u64>()
            + guest_records.iter().sum::<u64>();
        if collected != unit_written && !any_stuck {
            self.bad(
                Inv::Conservation,
                format!(
                    "units wrote {unit_written} records, host and guests collected {collected}"
                ),
            );
        }

        // Interrupts.
        for g in 0..VMS {
            let gs = &self.guests[g];
            if gs.stuck {
                continue;
            }
            let vcpu = gs.vcpu;
            let stats = self.kvm.vcpu_stats(vcpu).unwrap();
            let d = gs.kernel.driver_stats().unwrap_or_default();
            // A buffer-full event raised in the guest's last slice is still
            // pending when the session stops (the driver collects it at
            // stop); every earlier one was taken as a virtual interrupt.
            let pending_at_end =
                pmbsr_el1::S.is_set(self.kvm.guest_spe(vcpu).unwrap().buffer.pmbsr_el1);
            let mut msgs = Vec::new();
            if stats.virqs != d.irqs {
                msgs.push(format!(
                    "guest {g}: {} virtual PMBIRQs delivered, its driver took {}",
                    stats.virqs, d.irqs
                ));
            }
            if gs.full_events != d.buffer_full + u64::from(pending_at_end) {
                msgs.push(format!(
                    "guest {g}: its buffer raised {} buffer-full events, its driver handled {} \
                     (one pending at the end: {pending_at_end})",
                    gs.full_events, d.buffer_full
                ));
            }
            if d.faults != 0
                || d.spurious != 0
                || gs.fault_events != 0
                || gs.kernel.error().is_some()
            {
                msgs.push(format!(
                    "guest {g}: faults {:?}, driver {d:?}, error {:?}",
                    gs.kernel.faults(),
                    gs.kernel.error()
                ));
            }
            for m in msgs {
                self.bad(Inv::Interrupts, m);
            }
        }
        if let Some(host) = self.host.as_ref() {
            let msgs: Vec<String> = (0..CPUS)
                .filter_map(|cpu| {
                    let d = host[cpu].stats();
                    let a = self.host_acct[cpu];
                    (d.buffer_full != a.full_events || d.faults != 0 || a.fault_events != 0).then(
                        || {
                            format!(
                                "cpu {cpu}: the host's buffer raised {} buffer-full events, its \
                             driver handled {} ({d:?})",
                                a.full_events, d.buffer_full
                            )
                        },
                    )
                })
                .collect();
            for m in msgs {
                self.bad(Inv::Interrupts, m);
            }
        }

        // Limits.
        for g in 0..VMS {
            if self.guests[g].stuck {
                continue;
            }
            let vm = self.guests[g].vm;
            let pinned = self.kvm.pinned_bytes(vm).unwrap();
            if pinned != 0 {
                self.bad(
                    Inv::Limits,
                    format!("VM {vm}: {pinned} bytes pinned after its guest stopped"),
                );
            }
        }
        self.problems
    }
}

fn new_guest(kvm: &mut Kvm, i: usize, cfg: &GuestCfg) -> Guest {
    let limit = if cfg.tight { MAX_BUFFER } else { 8 << 20 };
    let (vm, vcpu) = spe_vcpu::spe_vcpu(kvm, 64 << 20, limit, MAX_BUFFER);
    let size = cfg.pages * PAGE_SIZE;
    let ttbr = kvm
        .guest_map(vm, GUEST_BUF_VA, GUEST_BUF_IPA, size)
        .unwrap();
    let name = VM_WORKLOADS[i][cfg.workload];
    let symbols = by_name(name, cfg.seed).unwrap().symbols().to_vec();
    let session = SpeSessionConfig {
        interval: cfg.interval,
        jitter: cfg.jitter,
        ..SpeSessionConfig::default()
    };
    let kernel = GuestKernel::new(
        ttbr,
        session,
        Buffer {
            va: GUEST_BUF_VA,
            size,
        },
        by_name(name, cfg.seed).unwrap(),
        cfg.ops,
    )
    .with_slices(cfg.slice);
    Guest {
        vm,
        vcpu,
        kernel,
        symbols,
        limit,
        loaded: None,
        written: 0,
        lost: 0,
        full_events: 0,
        fault_events: 0,
        rlimits: 0,
        touched: false,
        stuck: false,
    }
}

fn play(case: &Case) -> Vec<(Inv, String)> {
    let mut w = World::new(case);
    for &op in &case.ops {
        w.apply(op);
    }
    w.verdict()
}

fn failures(case: &Case, inv: Inv) -> Vec<String> {
    play(case)
        .into_iter()
        .filter(|(i, _)| *i == inv || *i == Inv::Interface)
        .map(|(i, m)| format!("{i:?}: {m}"))
        .collect()
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 24,
        failure_persistence: None,
        max_shrink_iters: 2048,
        ..ProptestConfig::default()
    }
}

#[test]
fn the_two_guest_workloads_have_disjoint_code() {
    for a in VM_WORKLOADS[0] {
        for b in VM_WORKLOADS[1] {
            let (wa, wb) = (by_name(a, 1).unwrap(), by_name(b, 1).unwrap());
            for sa in wa.symbols() {
                for sb in wb.symbols() {
                    assert!(
                        sa.end <= sb.start || sb.end <= sa.start,
                        "{a}:{} overlaps {b}:{}",
                        sa.name,
                        sb.name
                    );
                }
            }
        }
    }
}

/// A case proptest found: the host's buffer, 20 bytes short of full, fills
/// when the host's stop drains the unit; the stop collects that event, and
/// no interrupt is owed for it.
#[test]
fn a_buffer_full_raised_by_the_host_stop_is_collected_by_it() {
    let guest = |ops, slice, jitter| GuestCfg {
        workload: 0,
        seed: 0,
        ops,
        slice,
        pages: 1,
        interval: 256,
        jitter,
        tight: false,
    };
    let case = Case {
        host_pages: Some(1),
        guests: vec![guest(20_000, 5_000, false), guest(30_487, 15_244, true)],
        ops: vec![
            Op::Load { vcpu: 1, cpu: 1 },
            Op::Run { vcpu: 1 },
            Op::Run { vcpu: 1 },
            Op::Run { vcpu: 1 },
            Op::HostWork {
                cpu: 1,
                ops: 2150,
                masked: false,
            },
            Op::Put { vcpu: 1 },
            Op::HostWork {
                cpu: 1,
                ops: 1588,
                masked: false,
            },
            Op::Load { vcpu: 0, cpu: 0 },
            Op::HostWork {
                cpu: 1,
                ops: 22_988,
                masked: false,
            },
            Op::HostWork {
                cpu: 1,
                ops: 12_722,
                masked: false,
            },
        ],
    };
    let bad = failures(&case, Inv::Interrupts);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn isolation_holds_under_any_schedule(case in case()) {
        let bad = failures(&case, Inv::Isolation);
        prop_assert!(bad.is_empty(), "{}", bad.join("\n"));
    }

    #[test]
    fn conservation_holds_under_any_schedule(case in case()) {
        let bad = failures(&case, Inv::Conservation);
        prop_assert!(bad.is_empty(), "{}", bad.join("\n"));
    }

    #[test]
    fn interrupts_reach_their_owner_under_any_schedule(case in case()) {
        let bad = failures(&case, Inv::Interrupts);
        prop_assert!(bad.is_empty(), "{}", bad.join("\n"));
    }

    #[test]
    fn limits_hold_under_any_schedule(case in case()) {
        let bad = failures(&case, Inv::Limits);
        prop_assert!(bad.is_empty(), "{}", bad.join("\n"));
    }
}
