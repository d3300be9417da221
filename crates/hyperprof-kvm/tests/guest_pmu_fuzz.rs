//! A hostile guest against the guest PMU: arbitrary sequences of PMU
//! register accesses (every PMU register, arbitrary values, reads and
//! writes, at EL1 and at EL0), interleaved with workload slices and moves
//! between the two CPUs, while a second VM in the other mode counts a known
//! workload and the host counts its own EL2 work on its reserved counters;
//! or, on an nVHE host, both VMs emulated while the host counts its EL1
//! work on its top counters.
//!
//! Properties:
//! - nothing panics;
//! - every access returns `Ok`, `Err(Undefined)`, or (EL0 only)
//!   `Err(Trapped { to: EL1 })`: a trap to EL2 never leaks into the guest,
//!   and an EL0 access the guest's PMUSERENR_EL0 (0) forbids never succeeds;
//! - the host's counters count exactly the host's own work, and their
//!   event types, enables and interrupt enables are what the host set;
//! - the other VM's counts are exactly those of its workload.

use hyperprof_arch::{AccessFault, Cpu, ExceptionLevel, SysReg};
use hyperprof_guest::drivers::pmu::PmuDriver;
use hyperprof_guest::guest::{ExecStop, GuestEnv, GuestProgram, GuestStep};
use hyperprof_kvm::vm::{Exit, Kvm};
use hyperprof_sim::event::Event;
use hyperprof_sim::pe::RunExit;
use hyperprof_sim::workload::{by_name, Workload};
use proptest::prelude::*;

mod pmu_common;
use pmu_common::{
    enter, evcntr, events_of, evtyper, new_vm, pmu_regs, pmu_setup, pmu_vcpu, start_host_pmu, Hw,
    COUNTERS, HOST_RESERVED,
};

const CPUS: usize = 2;
/// The victim's workload.
const VICTIM_WORK: (&str, u64) = ("mix", 3);

/// One thing the hostile guest does.
#[derive(Clone, Debug)]
enum Act {
    /// An MRS (`write` None) or MSR, at EL0 or EL1.
    Access {
        el0: bool,
        reg: SysReg,
        write: Option<u64>,
    },
    /// Runs a workload slice (at EL0 or EL1).
    Exec { el0: bool, ops: u64, seed: u64 },
    /// Takes a pending virtual PMU interrupt, if any.
    TakeIrq,
}

/// One step of the schedule.
#[derive(Clone, Debug)]
enum Step {
    /// The hostile vCPU runs `acts` on `cpu` (loaded, run, put).
    Hostile { cpu: usize, acts: Vec<Act> },
    /// The victim vCPU runs a slice on `cpu`.
    Victim { cpu: usize, ops: u64 },
    /// The host kernel works on `cpu`.
    Host { cpu: usize, ops: u64 },
}

/// The hostile guest: performs its acts and records what it saw.
struct Hostile<'a> {
    acts: &'a [Act],
    /// The guest's PMUSERENR_EL0, as it last wrote it.
    userenr: &'a mut u64,
    bad: &'a mut Vec<String>,
}

impl GuestProgram for Hostile<'_> {
    fn run(&mut self, env: &mut dyn GuestEnv) -> GuestStep {
        for act in self.acts {
            match *act {
                Act::Access { el0, reg, write } => {
                    if el0 {
                        env.to_el0();
                    }
                    let r = match write {
                        None => env.read(reg),
                        Some(v) => env.write(reg, v).map(|()| 0),
                    };
                    if el0 {
                        env.to_el1();
                    }
                    let el1_trap = AccessFault::Trapped {
                        to: ExceptionLevel::EL1,
                    };
                    match r {
                        Ok(_) | Err(AccessFault::Undefined) => {}
                        Err(f) if el0 && f == el1_trap => {}
                        Err(f) => self
                            .bad
                            .push(format!("{reg} {write:?} el0={el0}: {f:?} leaked")),
                    }
                    // (A read of PMUSERENR_EL0 itself is always allowed.)
                    let userenr_read = reg == SysReg::PMUSERENR_EL0 && write.is_none();
                    if el0 && *self.userenr == 0 && r.is_ok() && !userenr_read {
                        self.bad.push(format!(
                            "{reg} {write:?} at EL0 succeeded with PMUSERENR_EL0 = 0"
                        ));
                    }
                    if let (SysReg::PMUSERENR_EL0, Some(v), false, Ok(_)) = (reg, write, el0, r) {
                        *self.userenr = v & 0xF;
                    }
                }
                Act::Exec { el0, ops, seed } => {
                    let mut w = by_name("mix", seed).unwrap();
                    if el0 {
                        env.to_el0();
                    }
                    let (done, stop) = env.execute(w.as_mut(), ops);
                    env.to_el1();
                    if done > ops {
                        self.bad.push(format!("executed {done} of {ops}"));
                    }
                    if stop == ExecStop::Exit {
                        // The host needs the CPU: KVM_RUN returns.
                        return GuestStep::More;
                    }
                }
                Act::TakeIrq => {
                    if env.pmu_virq_pending() {
                        env.take_virq();
                    }
                }
            }
        }
        GuestStep::More
    }
}

/// The victim guest: counts its workload at EL0 on four counters and the
/// cycle counter (64-bit, no interrupts), slice by slice.
struct Victim {
    work: Box<dyn Workload>,
    started: bool,
    done: u64,
    slice: u64,
    /// Final read: counters 0..4 and PMCCNTR_EL0.
    result: Option<Vec<u64>>,
    finish: bool,
}

const VICTIM_EVENTS: [Event; 4] = [
    Event::INST_RETIRED,
    Event::MEM_ACCESS,
    Event::BR_MIS_PRED,
    Event::L1D_CACHE_REFILL,
];

impl GuestProgram for Victim {
    fn run(&mut self, env: &mut dyn GuestEnv) -> GuestStep {
        if !self.started {
            for (i, e) in VICTIM_EVENTS.iter().enumerate() {
                let typer = u64::from(e.number()) | 1 << 31; // EL0 only
                env.write(evtyper(i as u8), typer).unwrap();
                env.write(evcntr(i as u8), 0).unwrap();
            }
            env.write(SysReg::PMCCFILTR_EL0, 1 << 31).unwrap();
            env.write(SysReg::PMCCNTR_EL0, 0).unwrap();
            env.write(SysReg::PMCNTENSET_EL0, 0xF | 1 << 31).unwrap();
            env.write(SysReg::PMCR_EL0, 1 | 1 << 7).unwrap(); // E, LP
            self.started = true;
        }
        if self.finish {
            let mut v: Vec<u64> = (0..4).map(|i| env.read(evcntr(i)).unwrap()).collect();
            v.push(env.read(SysReg::PMCCNTR_EL0).unwrap());
            v.push(env.read(SysReg::PMOVSSET_EL0).unwrap());
            self.result = Some(v);
            return GuestStep::Done;
        }
        env.to_el0();
        let (n, _) = env.execute(self.work.as_mut(), self.slice);
        env.to_el1();
        self.done += n;
        GuestStep::More
    }
}

struct World {
    kvm: Kvm,
    hostile: usize,
    victim_vcpu: usize,
    victim: Victim,
    hosts: Vec<PmuDriver>,
    host_work: Vec<Box<dyn Workload>>,
    host_ops: [u64; CPUS],
    /// The host's counter registers as it set them, per CPU.
    host_regs: Vec<Vec<u64>>,
    userenr: u64,
    bad: Vec<String>,
}

/// The host's registers that no guest may change: its counters' event
/// types, and its bits of the enables and interrupt enables.
fn host_regs(c: &mut dyn Cpu) -> Vec<u64> {
    let hi = 0b11 << (COUNTERS - HOST_RESERVED);
    let mut v: Vec<u64> = (COUNTERS - HOST_RESERVED..COUNTERS)
        .map(|i| c.read(evtyper(i)).unwrap())
        .collect();
    v.push(c.read(SysReg::PMCNTENSET_EL0).unwrap() & hi);
    v.push(c.read(SysReg::PMINTENSET_EL1).unwrap() & hi);
    v
}

impl World {
    fn new(nvhe: bool, hostile_partitioned: bool, host_userenr: [u64; CPUS]) -> World {
        let hw = Hw {
            ram_size: 128 << 20,
            nvhe,
            ..Hw::default()
        };
        let mut kvm = hw.kvm(HOST_RESERVED);
        let mut vcpus = Vec::new();
        for partitioned in [!nvhe, false] {
            let vm = new_vm(&mut kvm, 4 << 20);
            let setup = pmu_setup(partitioned, None, Vec::new());
            vcpus.push(pmu_vcpu(&mut kvm, vm, &setup).unwrap());
        }
        let (hostile, victim_vcpu) = if hostile_partitioned {
            (vcpus[0], vcpus[1])
        } else {
            (vcpus[1], vcpus[0])
        };
        let mut hosts = Vec::new();
        let mut regs = Vec::new();
        for (cpu, userenr) in host_userenr.into_iter().enumerate() {
            // The host's perf may let its own user space at the PMU.
            kvm.set_host_pmuserenr(cpu, userenr).unwrap();
            hosts.push(start_host_pmu(&mut kvm, cpu, 1 << 18));
            regs.push(host_regs(&mut kvm.machine().cpu(cpu).unwrap()));
        }
        World {
            kvm,
            hostile,
            victim_vcpu,
            victim: Victim {
                work: by_name(VICTIM_WORK.0, VICTIM_WORK.1).unwrap(),
                started: false,
                done: 0,
                slice: 0,
                result: None,
                finish: false,
            },
            hosts,
            host_work: (0..CPUS as u64)
                .map(|cpu| by_name("kernel-mix", cpu).unwrap())
                .collect(),
            host_ops: [0; CPUS],
            host_regs: regs,
            userenr: 0,
            bad: Vec::new(),
        }
    }

    /// The host takes its own PMU interrupt on `cpu` if the line is up.
    fn host_irq(&mut self, cpu: usize) {
        if self.kvm.machine().pe(cpu).unwrap().irq_lines().pmuirq {
            let mut c = self.kvm.machine().cpu(cpu).unwrap();
            let ovs = self.hosts[cpu].handle_irq(&mut c).unwrap();
            if ovs == 0 {
                self.bad.push(format!(
                    "CPU {cpu}: the host's line up without its overflow"
                ));
            }
        }
    }

    fn check_host_regs(&mut self, when: &str) {
        for cpu in 0..CPUS {
            let mut c = self.kvm.machine().cpu(cpu).unwrap();
            let now = host_regs(&mut c);
            if now != self.host_regs[cpu] {
                self.bad.push(format!(
                    "{when}: CPU {cpu} host registers {now:x?}, set {:x?}",
                    self.host_regs[cpu]
                ));
            }
        }
    }

    fn step(&mut self, step: &Step) {
        match step {
            Step::Host { cpu, ops } => {
                let cpu = *cpu;
                let mut left = *ops;
                while left > 0 {
                    let mut done = 0;
                    let exit = self
                        .kvm
                        .machine()
                        .run(cpu, self.host_work[cpu].as_mut(), left, &mut done)
                        .unwrap();
                    left -= done;
                    self.host_ops[cpu] += done;
                    if let RunExit::Interrupt(_) = exit {
                        self.host_irq(cpu);
                    }
                }
            }
            Step::Hostile { cpu, acts } => {
                let mut p = Hostile {
                    acts,
                    userenr: &mut self.userenr,
                    bad: &mut self.bad,
                };
                let exit = enter(&mut self.kvm, self.hostile, *cpu, &mut p);
                if !matches!(exit, Exit::Yield | Exit::Halt) {
                    self.bad.push(format!("hostile run: {exit:?}"));
                }
                self.host_irq(*cpu);
            }
            Step::Victim { cpu, ops } => {
                self.victim.slice = *ops;
                let exit = enter(&mut self.kvm, self.victim_vcpu, *cpu, &mut self.victim);
                if exit != Exit::Yield {
                    self.bad.push(format!("victim run: {exit:?}"));
                }
                self.host_irq(*cpu);
            }
        }
        self.check_host_regs(&format!("after {step:?}"));
    }

    fn finish(mut self) -> Vec<String> {
        // The victim reads its counters.
        self.victim.finish = true;
        let exit = enter(&mut self.kvm, self.victim_vcpu, 0, &mut self.victim);
        assert_eq!(exit, Exit::Halt);
        let want = events_of(VICTIM_WORK.0, VICTIM_WORK.1, self.victim.done);
        let mut expect: Vec<u64> = VICTIM_EVENTS.iter().map(|e| want.get(*e)).collect();
        expect.push(want.get(Event::CPU_CYCLES));
        expect.push(0);
        if self.victim.result.as_ref() != Some(&expect) {
            self.bad.push(format!(
                "victim counted {:?}, its workload {expect:?}",
                self.victim.result
            ));
        }
        for cpu in 0..CPUS {
            let want = events_of("kernel-mix", cpu as u64, self.host_ops[cpu]);
            let mut c = self.kvm.machine().cpu(cpu).unwrap();
            let got = (
                self.hosts[cpu].read(&mut c, 0).unwrap(),
                self.hosts[cpu].read(&mut c, 1).unwrap(),
            );
            let expect = (want.get(Event::INST_RETIRED), want.get(Event::CPU_CYCLES));
            if got != expect {
                self.bad.push(format!(
                    "CPU {cpu}: host counted {got:?}, its work {expect:?}"
                ));
            }
        }
        self.check_host_regs("at the end");
        self.bad
    }
}

fn value() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(u64::MAX),
        Just(0xFFFF_FFF0u64),
        Just(0xFFFF_FFFF_FFFF_FFF0u64),
        0u64..64,
        any::<u64>(),
    ]
}

fn act() -> impl Strategy<Value = Act> {
    let regs = pmu_regs();
    let n = regs.len();
    prop_oneof![
        6 => (any::<bool>(), 0..n, prop::option::of(value())).prop_map(move |(el0, i, write)| {
            Act::Access {
                el0,
                reg: regs[i],
                write,
            }
        }),
        1 => (any::<bool>(), 0u64..20_000, 0u64..8)
            .prop_map(|(el0, ops, seed)| Act::Exec { el0, ops, seed }),
        1 => Just(Act::TakeIrq),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..CPUS, prop::collection::vec(act(), 1..24))
            .prop_map(|(cpu, acts)| Step::Hostile { cpu, acts }),
        2 => (0..CPUS, 1u64..50_000).prop_map(|(cpu, ops)| Step::Victim { cpu, ops }),
        1 => (0..CPUS, 1u64..100_000).prop_map(|(cpu, ops)| Step::Host { cpu, ops }),
    ]
}

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn play(
    nvhe: bool,
    hostile_partitioned: bool,
    userenr: [u64; CPUS],
    steps: &[Step],
) -> Vec<String> {
    let mut w = World::new(nvhe, hostile_partitioned, userenr);
    for s in steps {
        w.step(s);
    }
    w.finish()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn a_hostile_guest_cannot_touch_the_host_or_the_other_vm(
        nvhe in any::<bool>(),
        hostile_partitioned in any::<bool>(),
        userenr in [prop_oneof![Just(0u64), 0u64..16], prop_oneof![Just(0u64), 0u64..16]],
        steps in prop::collection::vec(step(), 1..16),
    ) {
        let bad = play(nvhe, hostile_partitioned, userenr, &steps);
        prop_assert!(bad.is_empty(), "{}", bad.join("\n"));
    }
}

/// A hand-written case in each mode, so a regression shows without
/// shrinking: everything on every counter, at EL1 and EL0, with the host's
/// user access on (its PMUSERENR_EL0 in the hardware while the guest's
/// state is lazy), overflows, and moves.
#[test]
fn a_hand_written_hostile_session_keeps_every_property() {
    let mut acts = Vec::new();
    for el0 in [true, false] {
        for reg in pmu_regs() {
            for write in [None, Some(u64::MAX), Some(0xFFFF_FFF0)] {
                acts.push(Act::Access { el0, reg, write });
            }
        }
        acts.push(Act::Exec {
            el0,
            ops: 30_000,
            seed: 1,
        });
        acts.push(Act::TakeIrq);
    }
    for (nvhe, hostile_partitioned) in [(false, true), (false, false), (true, false)] {
        let steps = [
            Step::Host {
                cpu: 0,
                ops: 50_000,
            },
            Step::Victim {
                cpu: 1,
                ops: 40_000,
            },
            Step::Hostile {
                cpu: 0,
                acts: acts.clone(),
            },
            Step::Victim {
                cpu: 0,
                ops: 40_000,
            },
            Step::Hostile {
                cpu: 1,
                acts: acts.clone(),
            },
            Step::Host {
                cpu: 1,
                ops: 50_000,
            },
            Step::Victim {
                cpu: 1,
                ops: 40_000,
            },
        ];
        let bad = play(nvhe, hostile_partitioned, [0xF, 0x1], &steps);
        assert!(
            bad.is_empty(),
            "nvhe={nvhe} hostile partitioned={hostile_partitioned}:\n{}",
            bad.join("\n")
        );
    }
}
