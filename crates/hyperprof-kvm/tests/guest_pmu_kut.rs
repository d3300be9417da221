//! The behaviours kvm-unit-tests `arm/pmu.c` checks (ARM-FACTS §7), as
//! guest programs at guest EL1 through the hypervisor, in the guest PMU's
//! three set-ups (partitioned with FEAT_FGT, partitioned without it,
//! emulated): the same register accesses, barriers and loops the bare-metal
//! versions in `hyperprof-sim/tests/pmu_kut.rs` make, with the virtual
//! overflow interrupt where the bare-metal ones read the physical line.
//!
//! The loops are scripted operation streams ([`Script`]), so every count is
//! exact; the counts of a real workload are checked against an independent
//! copy skipped over the same number of operations.

use hyperprof_arch::{pmcr_el0, AccessFault, PmuVer, SysReg};
use hyperprof_guest::guest::{ExecStop, GuestEnv, GuestProgram, GuestStep};
use hyperprof_kvm::pmu_attr::{EventFilter, KVM_PMU_EVENT_ALLOW, KVM_PMU_EVENT_DENY};
use hyperprof_kvm::vm::{Exit, Kvm};
use hyperprof_sim::event::{Event, EventCounts};
use hyperprof_sim::op::{Op, OpKind, Symbol};
use hyperprof_sim::workload::{by_name, Workload};

mod pmu_common;
use pmu_common::{
    enter, evcntr, events_of, evtyper, pmu_setup, pmu_vm, run_on, Hw, Mode, COUNTERS,
    HOST_RESERVED, MODES,
};

/// The guest's counters (the default: what the host leaves to guests).
const N: u8 = COUNTERS - HOST_RESERVED;

const EXCLUDE_EL1: u64 = 1 << 31;
const EXCLUDE_EL0: u64 = 1 << 30;
const INCLUDE_EL2: u64 = 1 << 27;

const SW_INCR: u64 = 0x00;
const INST_RETIRED: u64 = 0x08;
const CPU_CYCLES: u64 = 0x11;
const MEM_ACCESS: u64 = 0x13;
const CHAIN: u64 = 0x1E;

const PRE_OVERFLOW_32: u64 = 0xFFFF_FFF0;
const PRE_OVERFLOW2_32: u64 = 0xFFFF_FFDC;
const PRE_OVERFLOW_64: u64 = 0xFFFF_FFFF_FFFF_FFF0;
const ALL_SET_32: u64 = 0xFFFF_FFFF;

const E: u64 = 1 << 0;
const P: u64 = 1 << 1;
const C: u64 = 1 << 2;
const LC: u64 = 1 << 6;
const LP: u64 = 1 << 7;

fn vm_with(mode: Mode, version: PmuVer, filters: Vec<EventFilter>) -> (Kvm, usize) {
    let hw = Hw {
        fgt: mode.fgt(),
        nvhe: mode.nvhe(),
        version,
        ..Hw::default()
    };
    pmu_vm(hw, &pmu_setup(mode.partitioned(), None, filters))
}

/// Runs `f` as the guest kernel of a fresh VM in every mode, on CPU 0.
fn in_every_mode(version: PmuVer, mut f: impl FnMut(&mut dyn GuestEnv, Mode)) {
    for mode in MODES {
        let (mut kvm, vcpu) = vm_with(mode, version, Vec::new());
        run_on(&mut kvm, vcpu, 0, |env| f(env, mode));
    }
}

// ---- scripted operation streams ----

fn op(kind: OpKind) -> Op {
    Op {
        pc: 0x40_0000,
        kind,
        data_va: 0x10_0000,
        target: 0,
        issue_latency: 1,
        total_latency: 1,
        translation_latency: 0,
        outcome: 0,
        data_source: 0,
        ldst_subclass: 0,
        cycles: 1,
    }
}

fn other() -> Op {
    op(OpKind::Other)
}

fn load() -> Op {
    op(OpKind::Load)
}

fn branch(taken: bool) -> Op {
    op(OpKind::Branch {
        conditional: true,
        indirect: false,
        taken,
    })
}

/// A finite list of operations as a workload (the guest's own code).
struct Script {
    ops: Vec<Op>,
    at: usize,
}

impl Script {
    fn new(ops: Vec<Op>) -> Script {
        Script { ops, at: 0 }
    }
    fn next_op(&mut self) -> Op {
        let op = self.ops[self.at % self.ops.len()];
        self.at += 1;
        op
    }
}

impl Workload for Script {
    fn name(&self) -> &str {
        "script"
    }
    fn symbols(&self) -> &[Symbol] {
        &[]
    }
    fn skip(&mut self, n: u64, counts: &mut EventCounts) {
        for _ in 0..n {
            self.next_op().add_events(counts);
        }
    }
    fn step(&mut self) -> Op {
        self.next_op()
    }
    fn ops_until(&self, event: Event, k: u64, limit: u64) -> u64 {
        let mut seen = EventCounts::default();
        for m in 0..limit {
            self.ops[(self.at + m as usize) % self.ops.len()].add_events(&mut seen);
            if seen.get(event) >= k {
                return m + 1;
            }
        }
        limit
    }
}

/// `n` iterations of (sub, ldr, cmp, b.gt).
fn mem_access_ops(n: u64) -> Vec<Op> {
    (0..n)
        .flat_map(|i| [other(), load(), other(), branch(i + 1 < n)])
        .collect()
}

/// The ISB, then `loops` iterations of (subs, b.gt).
fn precise_ops(loops: u64) -> Vec<Op> {
    let mut ops = vec![other()];
    ops.extend((0..loops).flat_map(|i| [other(), branch(i + 1 < loops)]));
    ops
}

fn r(env: &mut dyn GuestEnv, reg: SysReg) -> u64 {
    env.read(reg).unwrap_or_else(|f| panic!("MRS {reg}: {f:?}"))
}

fn w(env: &mut dyn GuestEnv, reg: SysReg, v: u64) {
    env.write(reg, v)
        .unwrap_or_else(|f| panic!("MSR {reg}, {v:#x}: {f:?}"));
}

/// Executes `ops` at the current EL; no interrupt may stop it.
fn exec(env: &mut dyn GuestEnv, ops: Vec<Op>) {
    let n = ops.len() as u64;
    let got = env.execute(&mut Script::new(ops), n);
    assert_eq!(got, (n, ExecStop::Completed), "interrupted");
}

/// Executes `ops`, taking each virtual PMU interrupt as kvm-unit-tests'
/// handler does (read PMOVSSET_EL0, record it, clear it); returns the
/// overflow bits the interrupts reported.
fn exec_with_handler(env: &mut dyn GuestEnv, ops: Vec<Op>) -> u64 {
    let total = ops.len() as u64;
    let mut script = Script::new(ops);
    let (mut done, mut seen) = (0, 0);
    while done < total {
        let (n, stop) = env.execute(&mut script, total - done);
        done += n;
        match stop {
            ExecStop::Completed => {}
            ExecStop::VirtualIrq => {
                assert!(env.pmu_virq_pending());
                env.take_virq();
                let ovs = r(env, SysReg::PMOVSSET_EL0);
                assert_ne!(ovs, 0, "a PMU interrupt without an overflow");
                seen |= ovs;
                w(env, SysReg::PMOVSCLR_EL0, ovs);
                assert!(!env.pmu_virq_pending(), "the level drops once cleared");
            }
            ExecStop::Exit => panic!("unexpected exit"),
        }
    }
    seen
}

/// `MSR PMCR_EL0, pmcr; ISB`, the loop, `MSR PMCR_EL0, xzr; ISB`.
fn counted(env: &mut dyn GuestEnv, pmcr: u64, ops: Vec<Op>, handler: bool) -> u64 {
    w(env, SysReg::PMCR_EL0, pmcr);
    env.isb();
    let seen = if handler {
        exec_with_handler(env, ops)
    } else {
        exec(env, ops);
        0
    };
    w(env, SysReg::PMCR_EL0, 0);
    env.isb();
    seen
}

fn mem_access_loop(env: &mut dyn GuestEnv, n: u64, pmcr: u64) {
    counted(env, pmcr, mem_access_ops(n), false);
}

fn precise_instrs_loop(env: &mut dyn GuestEnv, loops: u64, pmcr: u64) {
    counted(env, pmcr, precise_ops(loops), false);
}

fn pmu_reset(env: &mut dyn GuestEnv) {
    w(env, SysReg::PMCR_EL0, LC | C | P);
    w(env, SysReg::PMCNTENCLR_EL0, ALL_SET_32);
    w(env, SysReg::PMOVSCLR_EL0, ALL_SET_32);
    w(env, SysReg::PMINTENCLR_EL1, ALL_SET_32);
    env.isb();
}

fn implemented() -> u64 {
    (1 << N) - 1
}

fn counter_mask(version: PmuVer) -> u64 {
    if version.has_lp() {
        u64::MAX
    } else {
        ALL_SET_32
    }
}

fn is_event_supported(env: &mut dyn GuestEnv, n: u64) -> bool {
    let bits = (r(env, SysReg::PMCEID0_EL0) & ALL_SET_32) | (r(env, SysReg::PMCEID1_EL0) << 32);
    bits & (1 << n) != 0
}

fn pre(lp: bool) -> u64 {
    if lp {
        PRE_OVERFLOW_64
    } else {
        PRE_OVERFLOW_32
    }
}

// ---- pmu-cycle-counter ----

#[test]
fn cycle_counter_increases_exactly_and_stops() {
    in_every_mode(PmuVer::V3p5, |env, mode| {
        pmu_reset(env);
        w(env, SysReg::PMCNTENSET_EL0, 1 << 31);
        w(env, SysReg::PMCCFILTR_EL0, 0);
        env.isb();
        let pmcr = r(env, SysReg::PMCR_EL0);
        assert_eq!(pmcr_el0::N.get(pmcr), u64::from(N), "{mode:?}");
        w(env, SysReg::PMCR_EL0, pmcr | LC | C | E);
        env.isb();
        for _ in 0..10 {
            let a = r(env, SysReg::PMCCNTR_EL0);
            exec(env, vec![other()]);
            let b = r(env, SysReg::PMCCNTR_EL0);
            assert_eq!(b, a + 1, "{mode:?}: one cycle, the exits not counted");
        }
        w(env, SysReg::PMCR_EL0, pmcr);
        env.isb();
        let stopped = r(env, SysReg::PMCCNTR_EL0);
        exec(env, vec![other(); 5]);
        assert_eq!(
            r(env, SysReg::PMCCNTR_EL0),
            stopped,
            "{mode:?}: E = 0 stops it"
        );
        for loops in [1, 10, 100] {
            precise_instrs_loop(env, loops, LC | C | E);
            assert_eq!(r(env, SysReg::PMCCNTR_EL0), 1 + 2 * loops, "{mode:?}");
        }
    });
}

#[test]
fn cycle_counter_filters() {
    in_every_mode(PmuVer::V3p5, |env, mode| {
        w(env, SysReg::PMCNTENSET_EL0, 1 << 31);
        let run = |env: &mut dyn GuestEnv, filter: u64, el0: bool| {
            w(env, SysReg::PMCCFILTR_EL0, filter);
            w(env, SysReg::PMCR_EL0, E | C);
            if el0 {
                env.to_el0();
            } else {
                env.isb();
            }
            exec(env, vec![other(); 7]);
            env.to_el1();
            let v = r(env, SysReg::PMCCNTR_EL0);
            w(env, SysReg::PMCR_EL0, 0);
            v
        };
        assert_eq!(run(env, 0, true), 7, "{mode:?}");
        assert_eq!(run(env, 0, false), 7, "{mode:?}");
        assert_eq!(run(env, EXCLUDE_EL0, true), 0, "{mode:?}");
        assert_eq!(run(env, EXCLUDE_EL0, false), 7, "{mode:?}");
        assert_eq!(run(env, EXCLUDE_EL1, false), 0, "{mode:?}");
        assert_eq!(run(env, EXCLUDE_EL1, true), 7, "{mode:?}");
        // NSH is the guest's to write, but its counters never count the
        // hypervisor (the EL1 run still counts exactly its own 7).
        assert_eq!(run(env, INCLUDE_EL2, false), 7, "{mode:?}");
        assert_eq!(r(env, SysReg::PMCCFILTR_EL0), INCLUDE_EL2, "{mode:?}");
        w(env, SysReg::PMSELR_EL0, 31);
        w(env, SysReg::PMXEVTYPER_EL0, EXCLUDE_EL1 | 0x11);
        assert_eq!(
            r(env, SysReg::PMCCFILTR_EL0),
            EXCLUDE_EL1,
            "evtCount is RES0"
        );
        assert_eq!(r(env, SysReg::PMXEVTYPER_EL0), EXCLUDE_EL1);
    });
}

// ---- pmu-event-introspection ----

#[test]
fn event_introspection() {
    for version in [PmuVer::V3p1, PmuVer::V3p5] {
        in_every_mode(version, |env, mode| {
            for e in [
                SW_INCR,
                CPU_CYCLES,
                INST_RETIRED,
                MEM_ACCESS,
                CHAIN,
                0x23,
                0x24,
            ] {
                assert!(is_event_supported(env, e), "{mode:?} {version:?}: {e:#x}");
            }
            assert!(!is_event_supported(env, 0x01), "{mode:?}");
            // The reads are what the hardware advertises (no filter).
            assert_eq!(
                r(env, SysReg::PMCEID0_EL0),
                hyperprof_sim::pmu::PMCEID0,
                "{mode:?}"
            );
            assert_eq!(
                r(env, SysReg::PMCEID1_EL0),
                hyperprof_sim::pmu::PMCEID1,
                "{mode:?}"
            );
            assert_eq!(
                env.write(SysReg::PMCEID0_EL0, 0),
                Err(AccessFault::Undefined)
            );
        });
    }
}

// ---- pmu-event-counter-config ----

#[test]
fn event_counter_config() {
    in_every_mode(PmuVer::V3p1, |env, mode| {
        pmu_reset(env);
        w(env, SysReg::PMSELR_EL0, 1);
        w(env, SysReg::PMXEVTYPER_EL0, 0xEA);
        w(env, SysReg::PMXEVCNTR_EL0, 0xdead_beef);
        assert_eq!(r(env, evtyper(1)) & 0xFFF, 0xEA, "{mode:?}");
        assert_eq!(r(env, evcntr(1)), 0xdead_beef, "{mode:?}");
        assert_eq!(r(env, evtyper(0)), 0, "{mode:?}: counter 0 untouched");

        let unsupported = (0..=0x3F).find(|&n| !is_event_supported(env, n)).unwrap();
        w(env, SysReg::PMSELR_EL0, 0);
        w(env, SysReg::PMXEVTYPER_EL0, unsupported);
        w(env, SysReg::PMXEVCNTR_EL0, unsupported);
        assert_eq!(r(env, SysReg::PMXEVCNTR_EL0), unsupported, "{mode:?}");
        assert_eq!(r(env, evtyper(0)), unsupported, "{mode:?}");
        w(env, SysReg::PMCNTENSET_EL0, 1);
        mem_access_loop(env, 10, E);
        assert_eq!(r(env, evcntr(0)), unsupported, "{mode:?}: counts nothing");
    });
}

// ---- pmu-basic-event-count ----

fn basic_event_count(version: PmuVer, lp: bool) {
    in_every_mode(version, |env, mode| {
        let lpb = if lp { LP } else { 0 };
        let pre = pre(lp);
        let non_implemented = !((1 << 31) | implemented()) & ALL_SET_32;
        let what = format!("{mode:?} {version:?} lp={lp}");

        w(env, evtyper(0), CPU_CYCLES | EXCLUDE_EL0);
        w(env, evtyper(1), INST_RETIRED | EXCLUDE_EL0);
        w(env, SysReg::PMCNTENCLR_EL0, ALL_SET_32);
        assert_eq!(r(env, SysReg::PMCNTENCLR_EL0), 0, "{what}");
        assert_eq!(r(env, SysReg::PMCNTENSET_EL0), 0, "{what}");

        w(env, SysReg::PMCR_EL0, LC | C | P | lpb);
        env.isb();
        assert_eq!(
            r(env, SysReg::PMCR_EL0),
            pmcr_el0::N.value(u64::from(N)) | LC | lpb,
            "{what}: P and C read as 0"
        );

        w(env, evcntr(0), pre);
        assert_eq!(r(env, evcntr(0)), pre, "{what}");
        assert_eq!(r(env, evcntr(1)), 0, "{what}");

        w(env, SysReg::PMCNTENSET_EL0, implemented() | non_implemented);
        assert_eq!(r(env, SysReg::PMCNTENSET_EL0), implemented(), "{what}");
        assert_eq!(r(env, SysReg::PMCNTENCLR_EL0), implemented(), "{what}");
        w(env, SysReg::PMCNTENCLR_EL0, !0x3);
        assert_eq!(r(env, SysReg::PMCNTENSET_EL0), 0x3, "{what}");
        assert_eq!(r(env, SysReg::PMCNTENCLR_EL0), 0x3, "{what}");

        w(env, SysReg::PMOVSCLR_EL0, ALL_SET_32);
        assert_eq!(r(env, SysReg::PMOVSCLR_EL0), 0, "{what}");
        w(env, SysReg::PMINTENCLR_EL1, ALL_SET_32);
        assert_eq!(r(env, SysReg::PMINTENCLR_EL1), 0, "{what}");
        w(env, SysReg::PMINTENSET_EL1, implemented() | non_implemented);
        assert_eq!(r(env, SysReg::PMINTENSET_EL1), implemented(), "{what}");
        // The guest has no interrupt mask here: the loop runs with the
        // interrupt enables clear, and they are set again after it.
        w(env, SysReg::PMINTENCLR_EL1, ALL_SET_32);

        precise_instrs_loop(env, 20, E | lpb);
        assert_eq!(r(env, evcntr(1)), 41, "{what}");
        assert_eq!(
            r(env, evcntr(0)),
            pre.wrapping_add(41) & counter_mask(version),
            "{what}"
        );
        assert_eq!(
            r(env, SysReg::PMOVSCLR_EL0),
            0x1,
            "{what}: overflow on #0 only"
        );
        w(env, SysReg::PMINTENSET_EL1, implemented());
        assert!(!env.pmu_virq_pending(), "{what}: PMCR_EL0.E = 0 masks it");
        w(env, SysReg::PMCR_EL0, E | lpb);
        assert!(env.pmu_virq_pending(), "{what}: pending and enabled");
        w(env, SysReg::PMCR_EL0, lpb);
        assert!(!env.pmu_virq_pending(), "{what}: masked again");
        w(env, SysReg::PMCR_EL0, E | lpb);
        assert!(env.pmu_virq_pending(), "{what}");
        w(env, SysReg::PMINTENCLR_EL1, 0x1);
        assert!(!env.pmu_virq_pending(), "{what}: its enable cleared");
        w(env, SysReg::PMCR_EL0, 0);
        w(env, SysReg::PMOVSCLR_EL0, ALL_SET_32);
    });
}

#[test]
fn basic_event_count_32bit_overflow() {
    basic_event_count(PmuVer::V3p1, false);
    basic_event_count(PmuVer::V3p5, false);
}

#[test]
fn basic_event_count_64bit_overflow() {
    basic_event_count(PmuVer::V3p5, true);
}

/// The counts of a real workload, exactly, against an independent copy.
#[test]
fn a_real_workload_counts_exactly() {
    let ops = 300_000;
    let want = events_of("mix", 11, ops);
    in_every_mode(PmuVer::V3p5, |env, mode| {
        pmu_reset(env);
        let events = [
            Event::INST_RETIRED,
            Event::MEM_ACCESS,
            Event::BR_MIS_PRED,
            Event::L1D_CACHE_REFILL,
            Event::STALL_BACKEND,
            Event::LD_RETIRED,
        ];
        for (i, e) in events.iter().enumerate() {
            w(env, evtyper(i as u8), u64::from(e.number()));
        }
        w(env, SysReg::PMCCFILTR_EL0, 0);
        w(env, SysReg::PMCNTENSET_EL0, implemented() | 1 << 31);
        w(env, SysReg::PMCR_EL0, E | LP);
        env.to_el0();
        let mut work = by_name("mix", 11).unwrap();
        assert_eq!(env.execute(work.as_mut(), ops), (ops, ExecStop::Completed));
        env.to_el1();
        w(env, SysReg::PMCR_EL0, LP);
        env.isb();
        for (i, e) in events.iter().enumerate() {
            assert_eq!(r(env, evcntr(i as u8)), want.get(*e), "{mode:?} {e:?}");
        }
        assert_eq!(
            r(env, SysReg::PMCCNTR_EL0),
            want.get(Event::CPU_CYCLES),
            "{mode:?}"
        );
        assert_eq!(r(env, SysReg::PMOVSSET_EL0), 0, "{mode:?}");
    });
}

// ---- pmu-mem-access ----

fn mem_access(version: PmuVer, lp: bool) {
    in_every_mode(version, |env, mode| {
        let lpb = if lp { LP } else { 0 };
        let pre = pre(lp);
        pmu_reset(env);
        w(env, evtyper(0), MEM_ACCESS | EXCLUDE_EL0);
        w(env, evtyper(1), MEM_ACCESS | EXCLUDE_EL0);
        w(env, SysReg::PMCNTENSET_EL0, 0x3);
        env.isb();
        mem_access_loop(env, 20, E | lpb);
        assert_eq!(r(env, evcntr(0)), 20, "{mode:?}");
        assert_eq!(r(env, evcntr(1)), 20, "{mode:?}");
        assert_eq!(r(env, SysReg::PMOVSCLR_EL0), 0, "{mode:?}");

        pmu_reset(env);
        w(env, evcntr(0), pre);
        w(env, evcntr(1), pre);
        w(env, SysReg::PMCNTENSET_EL0, 0x3);
        env.isb();
        mem_access_loop(env, 20, E | lpb);
        assert_eq!(r(env, SysReg::PMOVSCLR_EL0), 0x3, "{mode:?}");
        assert_eq!(
            r(env, evcntr(0)),
            pre.wrapping_add(20) & counter_mask(version),
            "{mode:?}"
        );
    });
}

#[test]
fn mem_access_counts() {
    mem_access(PmuVer::V3p1, false);
    mem_access(PmuVer::V3p5, false);
    mem_access(PmuVer::V3p5, true);
}

// ---- pmu-sw-incr ----

fn sw_incr(version: PmuVer, lp: bool) {
    in_every_mode(version, |env, mode| {
        let lpb = if lp { LP } else { 0 };
        let pre = pre(lp);
        pmu_reset(env);
        w(env, evtyper(0), SW_INCR | EXCLUDE_EL0);
        w(env, evtyper(1), SW_INCR | EXCLUDE_EL0);
        w(env, SysReg::PMCNTENSET_EL0, 0x3);
        w(env, evcntr(0), pre);
        env.isb();
        for _ in 0..100 {
            w(env, SysReg::PMSWINC_EL0, 0x1);
        }
        env.isb();
        assert_eq!(r(env, evcntr(0)), pre, "{mode:?}: PMCR.E = 0");

        pmu_reset(env);
        w(env, evcntr(0), pre);
        w(env, SysReg::PMCNTENSET_EL0, 0x3);
        w(env, SysReg::PMCR_EL0, E | lpb);
        env.isb();
        for _ in 0..100 {
            w(env, SysReg::PMSWINC_EL0, 0x3);
        }
        env.isb();
        assert_eq!(
            r(env, evcntr(0)),
            pre.wrapping_add(100) & counter_mask(version),
            "{mode:?}"
        );
        assert_eq!(r(env, evcntr(1)), 100, "{mode:?}");
        assert_eq!(r(env, SysReg::PMOVSCLR_EL0), 0x1, "{mode:?}");
    });
}

#[test]
fn sw_incr_32bit() {
    sw_incr(PmuVer::V3p1, false);
    sw_incr(PmuVer::V3p5, false);
}

#[test]
fn sw_incr_64bit() {
    sw_incr(PmuVer::V3p5, true);
}

#[test]
fn sw_incr_only_for_enabled_sw_incr_counters_allowed_at_the_el() {
    in_every_mode(PmuVer::V3p5, |env, mode| {
        w(env, evtyper(0), SW_INCR);
        w(env, evtyper(1), MEM_ACCESS);
        w(env, evtyper(2), SW_INCR | EXCLUDE_EL1);
        w(env, evtyper(3), SW_INCR);
        w(env, evtyper(4), SW_INCR | EXCLUDE_EL1);
        w(env, SysReg::PMCNTENSET_EL0, 0b10111);
        w(env, SysReg::PMCR_EL0, E);
        env.isb();
        w(env, SysReg::PMSWINC_EL0, 0xFFFF_FFFF);
        let values: Vec<u64> = (0..5).map(|i| r(env, evcntr(i))).collect();
        assert_eq!(values, [1, 0, 0, 0, 0], "{mode:?}");
        // From EL0: refused until PMUSERENR_EL0.SW allows it.
        env.to_el0();
        assert_eq!(
            env.write(SysReg::PMSWINC_EL0, 0b10101),
            Err(AccessFault::Trapped {
                to: hyperprof_arch::ExceptionLevel::EL1
            }),
            "{mode:?}"
        );
        env.to_el1();
        w(env, SysReg::PMUSERENR_EL0, 1 << 1);
        env.to_el0();
        w(env, SysReg::PMSWINC_EL0, 0b10101);
        env.to_el1();
        let values: Vec<u64> = (0..5).map(|i| r(env, evcntr(i))).collect();
        assert_eq!(values, [2, 0, 1, 0, 1], "{mode:?}");
    });
}

// ---- pmu-chained-counters ----

#[test]
fn chained_counters() {
    for version in [PmuVer::V3p1, PmuVer::V3p5] {
        in_every_mode(version, |env, mode| {
            let all_set = counter_mask(version);
            pmu_reset(env);
            w(env, evtyper(0), CPU_CYCLES | EXCLUDE_EL0);
            w(env, evtyper(1), CHAIN | EXCLUDE_EL0);
            w(env, SysReg::PMCNTENSET_EL0, 0x3);
            w(env, evcntr(0), PRE_OVERFLOW_32);
            precise_instrs_loop(env, 22, E);
            assert_eq!(r(env, evcntr(1)), 1, "{mode:?}: CHAIN counted");
            assert_eq!(r(env, SysReg::PMOVSCLR_EL0), 0x1, "{mode:?}");

            pmu_reset(env);
            w(env, SysReg::PMCNTENSET_EL0, 0x3);
            w(env, evcntr(0), PRE_OVERFLOW_32);
            w(env, evcntr(1), 0x1);
            precise_instrs_loop(env, 22, E);
            assert_eq!(r(env, evcntr(1)), 2, "{mode:?}");
            assert_eq!(r(env, SysReg::PMOVSCLR_EL0), 0x1, "{mode:?}");

            w(env, evcntr(0), PRE_OVERFLOW_32);
            w(env, evcntr(1), all_set);
            precise_instrs_loop(env, 22, E);
            assert_eq!(r(env, evcntr(1)), 0, "{mode:?}: CHAIN counter wrapped");
            assert_eq!(r(env, SysReg::PMOVSCLR_EL0), 0x3, "{mode:?}");
        });
    }
}

#[test]
fn chained_sw_incr() {
    for version in [PmuVer::V3p1, PmuVer::V3p5] {
        in_every_mode(version, |env, mode| {
            let mask = counter_mask(version);
            pmu_reset(env);
            w(env, evtyper(0), SW_INCR | EXCLUDE_EL0);
            w(env, evtyper(1), CHAIN | EXCLUDE_EL0);
            w(env, SysReg::PMCNTENSET_EL0, 0x3);
            w(env, evcntr(0), PRE_OVERFLOW_32);
            w(env, SysReg::PMCR_EL0, E);
            env.isb();
            for _ in 0..100 {
                w(env, SysReg::PMSWINC_EL0, 0x1);
            }
            env.isb();
            assert_eq!(r(env, SysReg::PMOVSCLR_EL0), 0x1, "{mode:?}");
            assert_eq!(r(env, evcntr(1)), 1, "{mode:?}");

            pmu_reset(env);
            w(env, evcntr(0), PRE_OVERFLOW_32);
            w(env, evcntr(1), ALL_SET_32);
            w(env, SysReg::PMCNTENSET_EL0, 0x3);
            w(env, SysReg::PMCR_EL0, E);
            env.isb();
            for _ in 0..100 {
                w(env, SysReg::PMSWINC_EL0, 0x1);
            }
            env.isb();
            assert_eq!(r(env, SysReg::PMOVSCLR_EL0), 0x3, "{mode:?}");
            assert_eq!(
                r(env, evcntr(0)),
                (PRE_OVERFLOW_32 + 100) & mask,
                "{mode:?}"
            );
            assert_eq!(r(env, evcntr(1)), (ALL_SET_32 + 1) & mask, "{mode:?}");
        });
    }
}

// ---- pmu-chain-promotion ----

#[test]
fn chain_promotion() {
    in_every_mode(PmuVer::V3p1, |env, mode| {
        let ovs = |env: &mut dyn GuestEnv| r(env, SysReg::PMOVSCLR_EL0);

        pmu_reset(env);
        w(env, evtyper(0), MEM_ACCESS | EXCLUDE_EL0);
        w(env, evtyper(1), CHAIN | EXCLUDE_EL0);
        w(env, SysReg::PMCNTENSET_EL0, 0x2);
        env.isb();
        mem_access_loop(env, 20, E);
        assert_eq!(r(env, evcntr(0)), 0, "{mode:?}");
        assert_eq!(r(env, evcntr(1)), 0, "{mode:?}");

        pmu_reset(env);
        w(env, evcntr(0), PRE_OVERFLOW_32);
        w(env, SysReg::PMCNTENSET_EL0, 0x1);
        env.isb();
        mem_access_loop(env, 20, E);
        assert_eq!(r(env, evcntr(1)), 0, "{mode:?}");
        assert_eq!(ovs(env), 0x1, "{mode:?}");

        pmu_reset(env);
        w(env, SysReg::PMCNTENSET_EL0, 0x3);
        w(env, evcntr(0), PRE_OVERFLOW2_32);
        env.isb();
        mem_access_loop(env, 20, E);
        assert_eq!(r(env, evcntr(0)), PRE_OVERFLOW2_32 + 20, "{mode:?}");
        w(env, SysReg::PMCNTENCLR_EL0, 0x2);
        mem_access_loop(env, 20, E);
        assert_eq!(ovs(env), 0x1, "{mode:?}");
        assert_eq!(r(env, evcntr(1)), 0, "{mode:?}");

        pmu_reset(env);
        w(env, SysReg::PMCNTENSET_EL0, 0x1);
        w(env, evcntr(0), PRE_OVERFLOW2_32);
        env.isb();
        mem_access_loop(env, 20, E);
        w(env, SysReg::PMCNTENSET_EL0, 0x3);
        env.isb();
        mem_access_loop(env, 20, E);
        assert_eq!(r(env, evcntr(1)), 1, "{mode:?}");
        assert_eq!(ovs(env), 0x1, "{mode:?}");

        pmu_reset(env);
        w(env, evtyper(0), MEM_ACCESS | EXCLUDE_EL0);
        w(env, evtyper(1), CPU_CYCLES | EXCLUDE_EL0);
        w(env, SysReg::PMCNTENSET_EL0, 0x3);
        w(env, evcntr(0), PRE_OVERFLOW2_32);
        env.isb();
        mem_access_loop(env, 20, E);
        assert_eq!(r(env, evcntr(1)), 80, "{mode:?}: counted cycles");
        w(env, SysReg::PMCNTENSET_EL0, 0x0);
        w(env, evtyper(1), CHAIN | EXCLUDE_EL0);
        w(env, SysReg::PMCNTENSET_EL0, 0x3);
        w(env, evcntr(1), 0x0);
        mem_access_loop(env, 20, E);
        assert_eq!(r(env, evcntr(1)), 1, "{mode:?}");
        assert_eq!(ovs(env), 0x1, "{mode:?}");

        pmu_reset(env);
        w(env, evtyper(0), MEM_ACCESS | EXCLUDE_EL0);
        w(env, evtyper(1), CHAIN | EXCLUDE_EL0);
        w(env, evcntr(0), PRE_OVERFLOW2_32);
        w(env, SysReg::PMCNTENSET_EL0, 0x3);
        mem_access_loop(env, 20, E);
        assert_eq!(r(env, evcntr(1)), 0, "{mode:?}");
        w(env, SysReg::PMCNTENSET_EL0, 0x0);
        w(env, evtyper(1), CPU_CYCLES | EXCLUDE_EL0);
        w(env, SysReg::PMCNTENSET_EL0, 0x3);
        mem_access_loop(env, 20, E);
        assert_eq!(ovs(env), 0x1, "{mode:?}");
        assert_eq!(r(env, evcntr(1)), 80, "{mode:?}");
    });
}

// ---- pmu-overflow-interrupt ----

fn overflow_interrupt(version: PmuVer, lp: bool) {
    in_every_mode(version, |env, mode| {
        let what = format!("{mode:?} {version:?} lp={lp}");
        let lpb = if lp { LP } else { 0 };
        let pre = pre(lp);
        let all_set = counter_mask(version);

        pmu_reset(env);
        w(env, evtyper(0), MEM_ACCESS | EXCLUDE_EL0);
        w(env, evtyper(1), SW_INCR | EXCLUDE_EL0);
        w(env, SysReg::PMCNTENSET_EL0, 0x3);
        w(env, evcntr(0), pre);
        w(env, evcntr(1), pre);
        w(env, SysReg::PMCR_EL0, E | lpb);
        env.isb();

        // Overflows with PMINTENSET_EL1 = 0: no interrupt.
        exec(env, vec![load(); 200]);
        for _ in 0..100 {
            w(env, SysReg::PMSWINC_EL0, 0x2);
        }
        assert!(!env.pmu_virq_pending(), "{what}");
        assert_eq!(r(env, SysReg::PMOVSSET_EL0), 0x3, "{what}");
        assert!(!env.pmu_virq_pending(), "{what}");

        // Enabling an interrupt raises the level-sensitive line at once.
        w(env, SysReg::PMINTENSET_EL1, 0x2);
        assert!(
            env.pmu_virq_pending(),
            "{what}: enabled with a pending overflow"
        );
        w(env, SysReg::PMCR_EL0, lpb);
        assert!(!env.pmu_virq_pending(), "{what}: PMCR.E = 0 masks it");
        w(env, SysReg::PMCR_EL0, E | lpb);
        assert!(env.pmu_virq_pending(), "{what}");
        w(env, SysReg::PMOVSCLR_EL0, 0x1);
        assert!(env.pmu_virq_pending(), "{what}: the other flag");
        w(env, SysReg::PMOVSCLR_EL0, 0x2);
        assert!(!env.pmu_virq_pending(), "{what}: cleared");

        // With every interrupt enabled, the 16th access raises it.
        w(env, SysReg::PMINTENSET_EL1, ALL_SET_32);
        w(env, evcntr(0), pre);
        env.isb();
        exec(env, vec![load(); 15]);
        assert!(
            !env.pmu_virq_pending(),
            "{what}: 15 accesses do not overflow"
        );
        exec(env, vec![load()]);
        assert!(env.pmu_virq_pending(), "{what}: the 16th does");
        // The next execution is the interrupt: no operation runs first.
        let (n, stop) = env.execute(&mut Script::new(vec![load()]), 1);
        assert_eq!((n, stop), (0, ExecStop::VirtualIrq), "{what}");
        env.take_virq();
        assert_eq!(r(env, SysReg::PMOVSSET_EL0), 0x1, "{what}");
        w(env, SysReg::PMOVSCLR_EL0, ALL_SET_32);
        assert!(!env.pmu_virq_pending(), "{what}");

        // CHAIN on #1: only #0 interrupts (kvm-unit-tests' handler).
        w(env, evtyper(1), CHAIN | EXCLUDE_EL0);
        w(env, evcntr(0), pre);
        w(env, evcntr(1), 0);
        env.isb();
        let seen = counted(env, E | lpb, mem_access_ops(200), true);
        assert_eq!(seen, 0x1, "{what}");
        assert_eq!(r(env, evcntr(1)), if lp { 0 } else { 1 }, "{what}");

        // The odd counter overflows too unless the counters are 64-bit.
        w(env, evcntr(0), pre);
        w(env, evcntr(1), all_set);
        env.isb();
        let seen = counted(env, E | lpb, mem_access_ops(400), true);
        if lp {
            assert_eq!(seen, 0x1, "{what}");
            assert_eq!(r(env, evcntr(1)), all_set, "{what}: odd counter unchanged");
        } else {
            assert_eq!(seen, 0x3, "{what}");
            assert_ne!(r(env, evcntr(1)), all_set, "{what}: odd counter wrapped");
        }
        assert!(!env.pmu_virq_pending(), "{what}");
    });
}

#[test]
fn overflow_interrupt_32bit() {
    overflow_interrupt(PmuVer::V3p1, false);
    overflow_interrupt(PmuVer::V3p5, false);
}

#[test]
fn overflow_interrupt_64bit() {
    overflow_interrupt(PmuVer::V3p5, true);
}

/// A guest program in phases, one per run (the host puts and loads the
/// vCPU between them).
type Phase<'a> = Box<dyn FnMut(&mut dyn GuestEnv) + 'a>;

struct Phases<'a> {
    steps: Vec<Phase<'a>>,
    next: usize,
}

impl GuestProgram for Phases<'_> {
    fn run(&mut self, env: &mut dyn GuestEnv) -> GuestStep {
        (self.steps[self.next])(env);
        self.next += 1;
        if self.next == self.steps.len() {
            GuestStep::Done
        } else {
            GuestStep::More
        }
    }
}

#[test]
fn a_pending_overflow_interrupt_is_delivered_once_across_put_and_load() {
    for mode in MODES {
        let (mut kvm, vcpu) = vm_with(mode, PmuVer::V3p5, Vec::new());
        let mut taken = 0u32;
        {
            let taken = &mut taken;
            let mut p = Phases {
                steps: vec![
                    // Arm counter 0 sixteen accesses from overflow, with its
                    // interrupt; run until the interrupt stops the guest.
                    Box::new(move |env: &mut dyn GuestEnv| {
                        pmu_reset(env);
                        w(env, evtyper(0), MEM_ACCESS | EXCLUDE_EL0);
                        w(env, evcntr(0), PRE_OVERFLOW_32);
                        w(env, SysReg::PMCNTENSET_EL0, 0x1);
                        w(env, SysReg::PMINTENSET_EL1, 0x1);
                        w(env, SysReg::PMCR_EL0, E);
                        env.isb();
                        assert!(!env.pmu_virq_pending());
                        let (n, stop) = env.execute(&mut Script::new(vec![load(); 100]), 100);
                        assert_eq!((n, stop), (16, ExecStop::VirtualIrq), "{mode:?}");
                        assert!(env.pmu_virq_pending(), "{mode:?}");
                        // Not taken yet: the vCPU goes back to the VMM.
                    }),
                    // Loaded again on the other CPU: still pending, taken
                    // once, cleared.
                    Box::new(|env: &mut dyn GuestEnv| {
                        assert!(env.pmu_virq_pending(), "{mode:?}: survives put and load");
                        env.take_virq();
                        *taken += 1;
                        assert_eq!(r(env, SysReg::PMOVSSET_EL0), 0x1, "{mode:?}");
                        w(env, SysReg::PMOVSCLR_EL0, 0x1);
                        assert!(!env.pmu_virq_pending(), "{mode:?}: level dropped");
                        let (n, stop) = env.execute(&mut Script::new(vec![load(); 100]), 100);
                        assert_eq!((n, stop), (100, ExecStop::Completed), "{mode:?}");
                        assert!(!env.pmu_virq_pending(), "{mode:?}");
                    }),
                    // And once more on the first CPU: nothing pending.
                    Box::new(|env: &mut dyn GuestEnv| {
                        assert!(!env.pmu_virq_pending(), "{mode:?}: not delivered twice");
                        assert_eq!(r(env, SysReg::PMOVSSET_EL0), 0, "{mode:?}");
                        assert_eq!(r(env, evcntr(0)), PRE_OVERFLOW_32 + 116, "{mode:?}");
                    }),
                ],
                next: 0,
            };
            for (round, cpu) in [0, 1, 0].into_iter().enumerate() {
                let exit = enter(&mut kvm, vcpu, cpu, &mut p);
                let want = if round == 2 { Exit::Halt } else { Exit::Yield };
                assert_eq!(exit, want, "{mode:?} round {round}");
            }
        }
        assert_eq!(taken, 1, "{mode:?}");
        let s = kvm.vcpu_stats(vcpu).unwrap();
        assert_eq!(s.pmu_virqs, 1, "{mode:?}: delivered exactly once");
        assert_eq!(s.pmu_overflows, 1, "{mode:?}: one overflow, counted once");
    }
}

// ---- 64-bit counters (FEAT_PMUv3p5) ----

#[test]
fn lp_selects_64bit_overflow() {
    in_every_mode(PmuVer::V3p5, |env, mode| {
        w(env, evtyper(0), MEM_ACCESS);
        w(env, SysReg::PMCNTENSET_EL0, 0x1);

        w(env, evcntr(0), PRE_OVERFLOW_32);
        mem_access_loop(env, 100, E | LP);
        assert_eq!(r(env, evcntr(0)), 0x1_0000_0054, "{mode:?}");
        assert_eq!(r(env, SysReg::PMOVSSET_EL0), 0, "{mode:?}");

        w(env, evcntr(0), PRE_OVERFLOW_64);
        mem_access_loop(env, 100, E | LP);
        assert_eq!(r(env, evcntr(0)), 0x54, "{mode:?}");
        assert_eq!(r(env, SysReg::PMOVSSET_EL0), 0x1, "{mode:?}");

        w(env, SysReg::PMOVSCLR_EL0, ALL_SET_32);
        w(env, evcntr(0), 0x7_FFFF_FFF0);
        mem_access_loop(env, 100, E);
        assert_eq!(r(env, evcntr(0)), 0x8_0000_0054, "{mode:?}");
        assert_eq!(r(env, SysReg::PMOVSSET_EL0), 0x1, "{mode:?}");
    });
    // Before FEAT_PMUv3p5 LP is RES0 and the counters 32 bits.
    in_every_mode(PmuVer::V3p4, |env, mode| {
        w(env, evtyper(0), MEM_ACCESS);
        w(env, SysReg::PMCNTENSET_EL0, 0x1);
        w(env, SysReg::PMCR_EL0, LP);
        assert_eq!(r(env, SysReg::PMCR_EL0) & LP, 0, "{mode:?}: LP is RES0");
        w(env, evcntr(0), PRE_OVERFLOW_32);
        mem_access_loop(env, 100, E | LP);
        assert_eq!(r(env, evcntr(0)), 0x54, "{mode:?}");
        assert_eq!(r(env, SysReg::PMOVSSET_EL0), 0x1, "{mode:?}");
    });
}

// ---- the VM's event filter ----

#[test]
fn a_denied_event_counts_nothing_and_is_hidden_from_pmceid() {
    let ops = 200_000;
    let want = events_of("mix", 5, ops);
    let deny = |base: u16| EventFilter {
        base_event: base,
        nevents: 1,
        action: KVM_PMU_EVENT_DENY,
    };
    let allow = |base: u16| EventFilter {
        base_event: base,
        nevents: 1,
        action: KVM_PMU_EVENT_ALLOW,
    };
    // (filters, events allowed among INST_RETIRED, MEM_ACCESS, CPU_CYCLES)
    let setups = [
        (vec![deny(0x08)], [false, true, true]),
        (vec![deny(0x11)], [true, true, false]),
        (vec![allow(0x13)], [false, true, false]),
        (vec![allow(0x08), allow(0x11)], [true, false, true]),
    ];
    for (filters, allowed) in setups {
        for mode in MODES {
            let what = format!("{mode:?} {filters:?}");
            let (mut kvm, vcpu) = vm_with(mode, PmuVer::V3p5, filters.clone());
            run_on(&mut kvm, vcpu, 0, |env| {
                let events = [Event::INST_RETIRED, Event::MEM_ACCESS, Event::CPU_CYCLES];
                for (e, ok) in events.iter().zip(allowed) {
                    let n = u64::from(e.number());
                    assert_eq!(is_event_supported(env, n), ok, "{what}: PMCEID {e:?}");
                }
                // SW_INCR and CHAIN are never filtered.
                assert!(is_event_supported(env, SW_INCR), "{what}");
                assert!(is_event_supported(env, CHAIN), "{what}");
                pmu_reset(env);
                for (i, e) in events.iter().enumerate() {
                    w(env, evtyper(i as u8), u64::from(e.number()));
                }
                w(env, evtyper(3), SW_INCR);
                w(env, SysReg::PMCCFILTR_EL0, 0);
                w(env, SysReg::PMCNTENSET_EL0, 0xF | 1 << 31);
                w(env, SysReg::PMCR_EL0, E | LP);
                env.isb();
                let mut work = by_name("mix", 5).unwrap();
                assert_eq!(env.execute(work.as_mut(), ops), (ops, ExecStop::Completed));
                w(env, SysReg::PMSWINC_EL0, 0x8);
                w(env, SysReg::PMCR_EL0, LP);
                env.isb();
                for (i, (e, ok)) in events.iter().zip(allowed).enumerate() {
                    let expect = if ok { want.get(*e) } else { 0 };
                    assert_eq!(r(env, evcntr(i as u8)), expect, "{what}: {e:?}");
                }
                let cycles = if allowed[2] {
                    want.get(Event::CPU_CYCLES)
                } else {
                    0
                };
                assert_eq!(r(env, SysReg::PMCCNTR_EL0), cycles, "{what}: PMCCNTR");
                assert_eq!(r(env, evcntr(3)), 1, "{what}: SW_INCR");
                // The guest reads back what it wrote, filter or not.
                assert_eq!(r(env, evtyper(0)), INST_RETIRED, "{what}");
                assert_eq!(r(env, SysReg::PMCCFILTR_EL0), 0, "{what}");
            });
        }
    }
}
