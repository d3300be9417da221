//! The behaviours kvm-unit-tests `arm/pmu.c` checks (ARM-FACTS §7),
//! written as bare-metal EL1 programs against the PMU model: each test
//! makes the register accesses, barriers and operations the guest test
//! would, and asserts what the architecture requires.

#[path = "pmu_common.rs"]
mod common;

use common::*;
use hyperprof_arch::{pmcr_el0, PmuVer, SysReg};
use hyperprof_sim::event::{Event, EventCounts};

const N: u8 = 6;

fn pmcr_ro() -> u64 {
    pmcr_el0::N.value(u64::from(N))
}

/// Bits of the implemented event counters.
fn implemented() -> u64 {
    (1 << N) - 1
}

/// What a full-width counter reads after `v` was written and `add` events
/// counted: 64-bit counters from FEAT_PMUv3p5, 32-bit before.
fn counter_mask(version: PmuVer) -> u64 {
    if version.has_lp() {
        u64::MAX
    } else {
        ALL_SET_32
    }
}

fn is_event_supported(cpu: &Cpu, n: u64) -> bool {
    let low = (cpu.r(SysReg::PMCEID0_EL0) & ALL_SET_32) | (cpu.r(SysReg::PMCEID1_EL0) << 32);
    low & (1 << n) != 0
}

// ---- pmu-cycle-counter ----

#[test]
fn cycle_counter_increases_between_reads() {
    let mut cpu = Cpu::el1(N, PmuVer::V3p5);
    cpu.pmu_reset();
    cpu.w(SysReg::PMCNTENSET_EL0, 1 << 31);
    cpu.w(SysReg::PMCCFILTR_EL0, 0); // EL0 and EL1, not EL2
    cpu.isb();
    let pmcr = cpu.r(SysReg::PMCR_EL0);
    cpu.w(SysReg::PMCR_EL0, pmcr | LC | C | E);
    cpu.isb();
    for _ in 0..10 {
        let a = cpu.r(SysReg::PMCCNTR_EL0);
        cpu.instrs(1); // the MRS itself
        let b = cpu.r(SysReg::PMCCNTR_EL0);
        assert!(a < b, "read {a} then {b}");
    }
    cpu.w(SysReg::PMCR_EL0, pmcr);
    cpu.isb();
    let stopped = cpu.r(SysReg::PMCCNTR_EL0);
    cpu.instrs(5);
    assert_eq!(cpu.r(SysReg::PMCCNTR_EL0), stopped, "PMCR.E = 0 stops it");
}

#[test]
fn cycle_counter_measures_exact_cycles() {
    let mut cpu = Cpu::el1(N, PmuVer::V3p1);
    cpu.pmu_reset();
    cpu.w(SysReg::PMCNTENSET_EL0, 1 << 31);
    cpu.w(SysReg::PMCCFILTR_EL0, 0);
    cpu.isb();
    for loops in [1, 10, 100] {
        cpu.precise_instrs_loop(loops, LC | C | E);
        // One cycle per operation: the ISB and 2 per iteration.
        assert_eq!(cpu.r(SysReg::PMCCNTR_EL0), 1 + 2 * loops);
    }
}

#[test]
fn cycle_counter_filters() {
    let mut cpu = Cpu::el1(N, PmuVer::V3p5);
    cpu.w(SysReg::PMCNTENSET_EL0, 1 << 31);
    cpu.w(SysReg::PMCR_EL0, E);
    let run = |cpu: &mut Cpu, filter: u64, el| {
        cpu.el = EL1;
        cpu.w(SysReg::PMCCFILTR_EL0, filter);
        cpu.w(SysReg::PMCR_EL0, E | C);
        cpu.switch_to(el);
        cpu.instrs(7);
        cpu.switch_to(EL1);
        cpu.r(SysReg::PMCCNTR_EL0)
    };
    assert_eq!(run(&mut cpu, 0, EL0), 7);
    assert_eq!(run(&mut cpu, 0, EL1), 7);
    assert_eq!(run(&mut cpu, 0, EL2), 0, "EL2 needs NSH");
    assert_eq!(run(&mut cpu, EXCLUDE_EL0, EL0), 0);
    assert_eq!(run(&mut cpu, EXCLUDE_EL0, EL1), 7);
    assert_eq!(run(&mut cpu, EXCLUDE_EL1, EL1), 0);
    assert_eq!(run(&mut cpu, EXCLUDE_EL1, EL0), 7);
    assert_eq!(run(&mut cpu, INCLUDE_EL2, EL2), 7);
    // PMCCFILTR_EL0 through PMSELR_EL0.SEL = 31 and PMXEVTYPER_EL0.
    cpu.w(SysReg::PMSELR_EL0, 31);
    cpu.w(SysReg::PMXEVTYPER_EL0, EXCLUDE_EL1 | 0x11);
    assert_eq!(
        cpu.r(SysReg::PMCCFILTR_EL0),
        EXCLUDE_EL1,
        "evtCount is RES0"
    );
    assert_eq!(cpu.r(SysReg::PMXEVTYPER_EL0), EXCLUDE_EL1);
}

// ---- pmu-event-introspection ----

#[test]
fn event_introspection() {
    for version in [PmuVer::V3, PmuVer::V3p1, PmuVer::V3p5] {
        let cpu = Cpu::el1(N, version);
        let required = is_event_supported(&cpu, SW_INCR)
            && is_event_supported(&cpu, CPU_CYCLES)
            && (is_event_supported(&cpu, INST_RETIRED) || is_event_supported(&cpu, 0x1B));
        assert!(required, "{version:?}");
        if version >= PmuVer::V3p1 {
            assert!(is_event_supported(&cpu, 0x23) && is_event_supported(&cpu, 0x24));
        }
        assert!(is_event_supported(&cpu, MEM_ACCESS));
        assert!(is_event_supported(&cpu, CHAIN));
        // Some event in 0x00..=0x3F is not implemented (0x01, L1I_CACHE_REFILL).
        assert!(!is_event_supported(&cpu, 0x01));
        assert!((0..=0x3F).any(|n| !is_event_supported(&cpu, n)));
    }
}

// ---- pmu-event-counter-config ----

#[test]
fn event_counter_config() {
    let mut cpu = Cpu::el1(N, PmuVer::V3p1);
    cpu.pmu_reset();
    // Counter 1 through PMSELR_EL0 (no ISB in between, as in the test).
    cpu.w(SysReg::PMSELR_EL0, 1);
    cpu.w(SysReg::PMXEVTYPER_EL0, 0xEA);
    cpu.w(SysReg::PMXEVCNTR_EL0, 0xdead_beef);
    assert_eq!(cpu.r(evtyper(1)) & 0xFFF, 0xEA);
    assert_eq!(cpu.r(evcntr(1)), 0xdead_beef);
    assert_eq!(cpu.r(evtyper(0)), 0, "counter 0 untouched");

    // A counter programmed with an unsupported event reads what was written.
    let unsupported = (0..=0x3F).find(|&n| !is_event_supported(&cpu, n)).unwrap();
    cpu.w(SysReg::PMSELR_EL0, 0);
    cpu.w(SysReg::PMXEVTYPER_EL0, unsupported);
    cpu.w(SysReg::PMXEVCNTR_EL0, unsupported);
    assert_eq!(cpu.r(SysReg::PMXEVCNTR_EL0), unsupported);
    assert_eq!(cpu.r(evtyper(0)), unsupported);
    // ... and counts nothing.
    cpu.w(SysReg::PMCNTENSET_EL0, 1);
    cpu.mem_access_loop(10, E);
    assert_eq!(cpu.r(evcntr(0)), unsupported);
}

// ---- pmu-basic-event-count ----

fn basic_event_count(version: PmuVer, overflow_at_64bits: bool) {
    let mut cpu = Cpu::el1(N, version);
    let lp = if overflow_at_64bits { LP } else { 0 };
    let pre = if overflow_at_64bits {
        PRE_OVERFLOW_64
    } else {
        PRE_OVERFLOW_32
    };
    let non_implemented = !((1 << 31) | implemented()) & ALL_SET_32;

    cpu.w(evtyper(0), CPU_CYCLES | EXCLUDE_EL0);
    cpu.w(evtyper(1), INST_RETIRED | EXCLUDE_EL0);
    cpu.w(SysReg::PMCNTENCLR_EL0, ALL_SET_32);
    assert_eq!(cpu.r(SysReg::PMCNTENCLR_EL0), 0);
    assert_eq!(cpu.r(SysReg::PMCNTENSET_EL0), 0);

    cpu.w(SysReg::PMCR_EL0, LC | C | P | lp);
    cpu.isb();
    assert_eq!(
        cpu.r(SysReg::PMCR_EL0),
        pmcr_ro() | LC | lp,
        "P, C read as 0"
    );

    cpu.w(evcntr(0), pre);
    assert_eq!(cpu.r(evcntr(0)), pre);
    assert_eq!(cpu.r(evcntr(1)), 0);

    cpu.w(SysReg::PMCNTENSET_EL0, implemented() | non_implemented);
    assert_eq!(cpu.r(SysReg::PMCNTENSET_EL0), implemented());
    assert_eq!(cpu.r(SysReg::PMCNTENCLR_EL0), implemented());
    cpu.w(SysReg::PMCNTENCLR_EL0, !0x3);
    assert_eq!(cpu.r(SysReg::PMCNTENSET_EL0), 0x3);
    assert_eq!(cpu.r(SysReg::PMCNTENCLR_EL0), 0x3);

    cpu.w(SysReg::PMOVSCLR_EL0, ALL_SET_32);
    assert_eq!(cpu.r(SysReg::PMOVSCLR_EL0), 0);
    cpu.w(SysReg::PMINTENCLR_EL1, ALL_SET_32);
    assert_eq!(cpu.r(SysReg::PMINTENCLR_EL1), 0);
    cpu.w(SysReg::PMINTENSET_EL1, implemented() | non_implemented);
    assert_eq!(cpu.r(SysReg::PMINTENSET_EL1), implemented());

    cpu.precise_instrs_loop(20, E | lp);
    // The ISB and 40 loop instructions, one cycle each.
    assert_eq!(cpu.r(evcntr(1)), 41);
    assert_eq!(
        cpu.r(evcntr(0)),
        pre.wrapping_add(41) & counter_mask(version)
    );
    assert_eq!(cpu.r(SysReg::PMOVSCLR_EL0), 0x1, "overflow on #0 only");
    // The overflow is pending with its interrupt enabled, but PMCR.E = 0.
    assert!(!cpu.pmu.irq_level(cpu.mdcr));
    cpu.w(SysReg::PMCR_EL0, E | lp);
    assert!(cpu.pmu.irq_level(cpu.mdcr));
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

// ---- pmu-mem-access ----

fn mem_access(version: PmuVer, overflow_at_64bits: bool) {
    let mut cpu = Cpu::el1(N, version);
    let lp = if overflow_at_64bits { LP } else { 0 };
    let pre = if overflow_at_64bits {
        PRE_OVERFLOW_64
    } else {
        PRE_OVERFLOW_32
    };
    cpu.pmu_reset();
    cpu.w(evtyper(0), MEM_ACCESS | EXCLUDE_EL0);
    cpu.w(evtyper(1), MEM_ACCESS | EXCLUDE_EL0);
    cpu.w(SysReg::PMCNTENSET_EL0, 0x3);
    cpu.isb();
    cpu.mem_access_loop(20, E | lp);
    assert_eq!(cpu.r(evcntr(0)), 20);
    assert_eq!(cpu.r(evcntr(1)), 20);
    assert_eq!(cpu.r(SysReg::PMOVSCLR_EL0), 0);

    cpu.pmu_reset();
    cpu.w(evcntr(0), pre);
    cpu.w(evcntr(1), pre);
    cpu.w(SysReg::PMCNTENSET_EL0, 0x3);
    cpu.isb();
    cpu.mem_access_loop(20, E | lp);
    assert_eq!(cpu.r(SysReg::PMOVSCLR_EL0), 0x3);
    assert_eq!(
        cpu.r(evcntr(0)),
        pre.wrapping_add(20) & counter_mask(version)
    );
}

#[test]
fn mem_access_counts() {
    mem_access(PmuVer::V3, false);
    mem_access(PmuVer::V3p5, false);
    mem_access(PmuVer::V3p5, true);
}

// ---- pmu-sw-incr ----

fn sw_incr(version: PmuVer, overflow_at_64bits: bool) {
    let mut cpu = Cpu::el1(N, version);
    let lp = if overflow_at_64bits { LP } else { 0 };
    let pre = if overflow_at_64bits {
        PRE_OVERFLOW_64
    } else {
        PRE_OVERFLOW_32
    };
    cpu.pmu_reset();
    cpu.w(evtyper(0), SW_INCR | EXCLUDE_EL0);
    cpu.w(evtyper(1), SW_INCR | EXCLUDE_EL0);
    cpu.w(SysReg::PMCNTENSET_EL0, 0x3);
    cpu.w(evcntr(0), pre);
    cpu.isb();
    for _ in 0..100 {
        cpu.w(SysReg::PMSWINC_EL0, 0x1);
    }
    cpu.isb();
    assert_eq!(cpu.r(evcntr(0)), pre, "no increment while PMCR.E is 0");

    cpu.pmu_reset();
    cpu.w(evcntr(0), pre);
    cpu.w(SysReg::PMCNTENSET_EL0, 0x3);
    cpu.w(SysReg::PMCR_EL0, E | lp);
    cpu.isb();
    for _ in 0..100 {
        cpu.w(SysReg::PMSWINC_EL0, 0x3);
    }
    cpu.isb();
    assert_eq!(
        cpu.r(evcntr(0)),
        pre.wrapping_add(100) & counter_mask(version)
    );
    assert_eq!(cpu.r(evcntr(1)), 100);
    assert_eq!(cpu.r(SysReg::PMOVSCLR_EL0), 0x1);
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
fn sw_incr_only_for_enabled_sw_incr_counters_allowed_here() {
    let mut cpu = Cpu::el1(N, PmuVer::V3p5);
    cpu.w(evtyper(0), SW_INCR); // counts
    cpu.w(evtyper(1), MEM_ACCESS); // wrong event
    cpu.w(evtyper(2), SW_INCR | EXCLUDE_EL1); // filtered at EL1
    cpu.w(evtyper(3), SW_INCR); // not enabled
    cpu.w(evtyper(4), SW_INCR | EXCLUDE_EL1); // counts at EL0
    cpu.w(SysReg::PMCNTENSET_EL0, 0b10111);
    cpu.w(SysReg::PMCR_EL0, E);
    cpu.isb();
    cpu.w(SysReg::PMSWINC_EL0, 0xFFFF_FFFF);
    let values: Vec<u64> = (0..5).map(|i| cpu.r(evcntr(i))).collect();
    assert_eq!(values, [1, 0, 0, 0, 0]);
    // From EL0 (allowed by PMUSERENR_EL0.SW) only the EL0 filters matter.
    cpu.w(SysReg::PMUSERENR_EL0, 1 << 1);
    cpu.switch_to(EL0);
    cpu.w(SysReg::PMSWINC_EL0, 0b10101);
    cpu.switch_to(EL1);
    let values: Vec<u64> = (0..5).map(|i| cpu.r(evcntr(i))).collect();
    assert_eq!(values, [2, 0, 1, 0, 1]);
}

// ---- pmu-chained-counters ----

fn chained_counters(version: PmuVer) {
    let mut cpu = Cpu::el1(N, version);
    let all_set = counter_mask(version);
    cpu.pmu_reset();
    cpu.w(evtyper(0), CPU_CYCLES | EXCLUDE_EL0);
    cpu.w(evtyper(1), CHAIN | EXCLUDE_EL0);
    cpu.w(SysReg::PMCNTENSET_EL0, 0x3);
    cpu.w(evcntr(0), PRE_OVERFLOW_32);
    cpu.precise_instrs_loop(22, E);
    assert_eq!(cpu.r(evcntr(1)), 1, "CHAIN counter incremented");
    assert_eq!(cpu.r(SysReg::PMOVSCLR_EL0), 0x1);

    cpu.pmu_reset();
    cpu.w(SysReg::PMCNTENSET_EL0, 0x3);
    cpu.w(evcntr(0), PRE_OVERFLOW_32);
    cpu.w(evcntr(1), 0x1);
    cpu.precise_instrs_loop(22, E);
    assert_eq!(cpu.r(evcntr(1)), 2);
    assert_eq!(cpu.r(SysReg::PMOVSCLR_EL0), 0x1);

    cpu.w(evcntr(0), PRE_OVERFLOW_32);
    cpu.w(evcntr(1), all_set);
    cpu.precise_instrs_loop(22, E);
    assert_eq!(cpu.r(evcntr(1)), 0, "CHAIN counter wrapped");
    assert_eq!(cpu.r(SysReg::PMOVSCLR_EL0), 0x3);
}

#[test]
fn chained_counters_32_and_64bit_storage() {
    chained_counters(PmuVer::V3p1);
    chained_counters(PmuVer::V3p5);
}

#[test]
fn chained_sw_incr() {
    for version in [PmuVer::V3p1, PmuVer::V3p5] {
        let mut cpu = Cpu::el1(N, version);
        let mask = counter_mask(version);
        cpu.pmu_reset();
        cpu.w(evtyper(0), SW_INCR | EXCLUDE_EL0);
        cpu.w(evtyper(1), CHAIN | EXCLUDE_EL0);
        cpu.w(SysReg::PMCNTENSET_EL0, 0x3);
        cpu.w(evcntr(0), PRE_OVERFLOW_32);
        cpu.w(SysReg::PMCR_EL0, E);
        cpu.isb();
        for _ in 0..100 {
            cpu.w(SysReg::PMSWINC_EL0, 0x1);
        }
        cpu.isb();
        assert_eq!(cpu.r(SysReg::PMOVSCLR_EL0), 0x1);
        assert_eq!(cpu.r(evcntr(1)), 1);

        cpu.pmu_reset();
        cpu.w(evcntr(0), PRE_OVERFLOW_32);
        cpu.w(evcntr(1), ALL_SET_32);
        cpu.w(SysReg::PMCNTENSET_EL0, 0x3);
        cpu.w(SysReg::PMCR_EL0, E);
        cpu.isb();
        for _ in 0..100 {
            cpu.w(SysReg::PMSWINC_EL0, 0x1);
        }
        cpu.isb();
        assert_eq!(cpu.r(SysReg::PMOVSCLR_EL0), 0x3);
        assert_eq!(cpu.r(evcntr(0)), (PRE_OVERFLOW_32 + 100) & mask);
        assert_eq!(cpu.r(evcntr(1)), (ALL_SET_32 + 1) & mask);
    }
}

// ---- pmu-chain-promotion ----

#[test]
fn chain_promotion() {
    let mut cpu = Cpu::el1(N, PmuVer::V3p1);
    let ovs = |cpu: &Cpu| cpu.r(SysReg::PMOVSCLR_EL0);

    // Only the CHAIN counter enabled: nothing counts.
    cpu.pmu_reset();
    cpu.w(evtyper(0), MEM_ACCESS | EXCLUDE_EL0);
    cpu.w(evtyper(1), CHAIN | EXCLUDE_EL0);
    cpu.w(SysReg::PMCNTENSET_EL0, 0x2);
    cpu.isb();
    cpu.mem_access_loop(20, E);
    assert_eq!(cpu.r(evcntr(0)), 0);
    assert_eq!(cpu.r(evcntr(1)), 0);

    // Only the even counter enabled: the odd one does not see its overflow.
    cpu.pmu_reset();
    cpu.w(evcntr(0), PRE_OVERFLOW_32);
    cpu.w(SysReg::PMCNTENSET_EL0, 0x1);
    cpu.isb();
    cpu.mem_access_loop(20, E);
    assert_eq!(cpu.r(evcntr(1)), 0);
    assert_eq!(ovs(&cpu), 0x1);

    // +20 chained, then CHAIN disabled, +20: the overflow is not chained.
    cpu.pmu_reset();
    cpu.w(SysReg::PMCNTENSET_EL0, 0x3);
    cpu.w(evcntr(0), PRE_OVERFLOW2_32);
    cpu.isb();
    cpu.mem_access_loop(20, E);
    assert_eq!(cpu.r(evcntr(0)), PRE_OVERFLOW2_32 + 20);
    cpu.w(SysReg::PMCNTENCLR_EL0, 0x2);
    cpu.mem_access_loop(20, E);
    assert_eq!(ovs(&cpu), 0x1);
    assert_eq!(cpu.r(evcntr(1)), 0);

    // +20 unchained, then CHAIN enabled, +20: the overflow is chained.
    cpu.pmu_reset();
    cpu.w(SysReg::PMCNTENSET_EL0, 0x1);
    cpu.w(evcntr(0), PRE_OVERFLOW2_32);
    cpu.isb();
    cpu.mem_access_loop(20, E);
    cpu.w(SysReg::PMCNTENSET_EL0, 0x3);
    cpu.isb();
    cpu.mem_access_loop(20, E);
    assert_eq!(cpu.r(evcntr(1)), 1);
    assert_eq!(ovs(&cpu), 0x1);

    // MEM_ACCESS/CPU_CYCLES becomes MEM_ACCESS/CHAIN.
    cpu.pmu_reset();
    cpu.w(evtyper(0), MEM_ACCESS | EXCLUDE_EL0);
    cpu.w(evtyper(1), CPU_CYCLES | EXCLUDE_EL0);
    cpu.w(SysReg::PMCNTENSET_EL0, 0x3);
    cpu.w(evcntr(0), PRE_OVERFLOW2_32);
    cpu.isb();
    cpu.mem_access_loop(20, E);
    assert_eq!(cpu.r(evcntr(1)), 80, "counted cycles as CPU_CYCLES");
    cpu.w(SysReg::PMCNTENSET_EL0, 0x0);
    cpu.w(evtyper(1), CHAIN | EXCLUDE_EL0);
    cpu.w(SysReg::PMCNTENSET_EL0, 0x3);
    cpu.w(evcntr(1), 0x0);
    cpu.mem_access_loop(20, E);
    assert_eq!(cpu.r(evcntr(1)), 1);
    assert_eq!(ovs(&cpu), 0x1);

    // MEM_ACCESS/CHAIN becomes MEM_ACCESS/CPU_CYCLES: no overflow on #1.
    cpu.pmu_reset();
    cpu.w(evtyper(0), MEM_ACCESS | EXCLUDE_EL0);
    cpu.w(evtyper(1), CHAIN | EXCLUDE_EL0);
    cpu.w(evcntr(0), PRE_OVERFLOW2_32);
    cpu.w(SysReg::PMCNTENSET_EL0, 0x3);
    cpu.mem_access_loop(20, E);
    assert_eq!(cpu.r(evcntr(1)), 0);
    cpu.w(SysReg::PMCNTENSET_EL0, 0x0);
    cpu.w(evtyper(1), CPU_CYCLES | EXCLUDE_EL0);
    cpu.w(SysReg::PMCNTENSET_EL0, 0x3);
    cpu.mem_access_loop(20, E);
    assert_eq!(ovs(&cpu), 0x1);
    assert_eq!(cpu.r(evcntr(1)), 80);
}

// ---- pmu-overflow-interrupt ----

fn overflow_interrupt(version: PmuVer, overflow_at_64bits: bool) {
    let mut cpu = Cpu::el1(N, version);
    let lp = if overflow_at_64bits { LP } else { 0 };
    let pre = if overflow_at_64bits {
        PRE_OVERFLOW_64
    } else {
        PRE_OVERFLOW_32
    };
    let all_set = counter_mask(version);
    let irq = |cpu: &Cpu| cpu.pmu.irq_level(cpu.mdcr);

    cpu.pmu_reset();
    cpu.w(evtyper(0), MEM_ACCESS | EXCLUDE_EL0);
    cpu.w(evtyper(1), SW_INCR | EXCLUDE_EL0);
    cpu.w(SysReg::PMCNTENSET_EL0, 0x3);
    cpu.w(evcntr(0), pre);
    cpu.w(evcntr(1), pre);
    cpu.w(SysReg::PMCR_EL0, E | lp);
    cpu.isb();

    // Overflows with PMINTENSET_EL1 = 0: no interrupt.
    for _ in 0..200 {
        cpu.exec(load());
    }
    for _ in 0..100 {
        cpu.w(SysReg::PMSWINC_EL0, 0x2);
    }
    assert_eq!(cpu.r(SysReg::PMOVSSET_EL0), 0x3);
    assert!(!irq(&cpu));

    // Enabling the interrupts raises the (level-sensitive) line at once.
    cpu.w(SysReg::PMINTENSET_EL1, 0x2);
    assert!(irq(&cpu));
    assert_eq!(cpu.pmu.irq_levels(cpu.mdcr), (true, false));
    // PMCR_EL0.E = 0 masks it, as long as it stays 0.
    cpu.w(SysReg::PMCR_EL0, lp);
    assert!(!irq(&cpu));
    cpu.w(SysReg::PMCR_EL0, E | lp);
    assert!(irq(&cpu));
    // Clearing the overflow that has no interrupt enable changes nothing;
    // clearing the enabled one drops the line.
    cpu.w(SysReg::PMOVSCLR_EL0, 0x1);
    assert!(irq(&cpu));
    cpu.w(SysReg::PMOVSCLR_EL0, 0x2);
    assert!(!irq(&cpu));

    // With all interrupts enabled, a new overflow raises it again.
    cpu.w(SysReg::PMINTENSET_EL1, ALL_SET_32);
    cpu.w(evcntr(0), pre);
    cpu.isb();
    for _ in 0..15 {
        cpu.exec(load());
    }
    assert!(!irq(&cpu), "15 accesses do not overflow");
    cpu.exec(load());
    assert!(irq(&cpu), "the 16th does");
    cpu.w(SysReg::PMOVSCLR_EL0, ALL_SET_32);
    assert!(!irq(&cpu));

    // CHAIN on #1: only #0 overflows (and interrupts).
    cpu.w(evtyper(1), CHAIN | EXCLUDE_EL0);
    cpu.w(evcntr(0), pre);
    cpu.w(evcntr(1), 0);
    cpu.isb();
    cpu.mem_access_loop(200, E | lp);
    assert_eq!(cpu.r(SysReg::PMOVSCLR_EL0), 0x1);
    assert_eq!(cpu.r(evcntr(1)), if overflow_at_64bits { 0 } else { 1 });

    // Overflow on the odd counter too, unless counters are 64-bit (LP),
    // where CHAIN does not count.
    cpu.w(SysReg::PMOVSCLR_EL0, ALL_SET_32);
    cpu.w(evcntr(0), pre);
    cpu.w(evcntr(1), all_set);
    cpu.isb();
    cpu.mem_access_loop(400, E | lp);
    if overflow_at_64bits {
        assert_eq!(cpu.r(SysReg::PMOVSCLR_EL0), 0x1);
        assert_eq!(cpu.r(evcntr(1)), all_set, "odd counter did not change");
    } else {
        assert_eq!(cpu.r(SysReg::PMOVSCLR_EL0), 0x3);
        assert_ne!(cpu.r(evcntr(1)), all_set, "odd counter wrapped");
    }
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

// ---- 64-bit counters (FEAT_PMUv3p5) ----

#[test]
fn lp_selects_64bit_overflow() {
    let mut cpu = Cpu::el1(N, PmuVer::V3p5);
    cpu.w(evtyper(0), MEM_ACCESS);
    cpu.w(SysReg::PMCNTENSET_EL0, 0x1);

    // LP = 1: crossing bit 32 is not an overflow; the counter keeps going.
    cpu.w(evcntr(0), PRE_OVERFLOW_32);
    cpu.mem_access_loop(100, E | LP);
    assert_eq!(cpu.r(evcntr(0)), 0x1_0000_0054);
    assert_eq!(cpu.r(SysReg::PMOVSSET_EL0), 0);

    // LP = 1: wrapping at 64 bits is.
    cpu.w(evcntr(0), PRE_OVERFLOW_64);
    cpu.mem_access_loop(100, E | LP);
    assert_eq!(cpu.r(evcntr(0)), 0x54);
    assert_eq!(cpu.r(SysReg::PMOVSSET_EL0), 0x1);

    // LP = 0: a carry out of bit 31 is an overflow, bits [63:32] still count.
    cpu.w(SysReg::PMOVSCLR_EL0, ALL_SET_32);
    cpu.w(evcntr(0), 0x7_FFFF_FFF0);
    cpu.mem_access_loop(100, E);
    assert_eq!(cpu.r(evcntr(0)), 0x8_0000_0054);
    assert_eq!(cpu.r(SysReg::PMOVSSET_EL0), 0x1);

    // Before FEAT_PMUv3p5, LP is RES0: overflow at 32 bits, 32-bit counter.
    let mut old = Cpu::el1(N, PmuVer::V3p4);
    old.w(evtyper(0), MEM_ACCESS);
    old.w(SysReg::PMCNTENSET_EL0, 0x1);
    old.w(evcntr(0), PRE_OVERFLOW_32);
    old.mem_access_loop(100, E | LP);
    assert_eq!(old.r(evcntr(0)), 0x54);
    assert_eq!(old.r(SysReg::PMOVSSET_EL0), 0x1);
}

// ---- spans: exact overflow accounting ----

#[test]
fn a_span_can_overflow_many_times() {
    let mut cpu = Cpu::el1(N, PmuVer::V3p5);
    cpu.w(evtyper(0), MEM_ACCESS);
    cpu.w(evtyper(1), CHAIN);
    cpu.w(evtyper(2), MEM_ACCESS);
    cpu.w(SysReg::PMCNTENSET_EL0, 0x7 | 1 << 31);
    cpu.w(SysReg::PMCR_EL0, E);
    cpu.isb();
    let mut span = EventCounts::default();
    span.add(Event::MEM_ACCESS, (3 << 32) + 5);
    span.add(Event::CPU_CYCLES, 1 << 40);
    cpu.pmu.count(&span, EL1);
    assert_eq!(cpu.r(evcntr(0)), (3 << 32) + 5);
    assert_eq!(cpu.r(evcntr(1)), 3, "three overflows of #0, three CHAINs");
    assert_eq!(cpu.r(SysReg::PMCCNTR_EL0), 1 << 40);
    assert_eq!(cpu.r(SysReg::PMOVSSET_EL0), 0x5);
}

#[test]
fn events_until_overflow_stops_at_the_overflowing_operation() {
    let mut cpu = Cpu::el1(N, PmuVer::V3p5);
    cpu.w(evtyper(0), MEM_ACCESS | EXCLUDE_EL0);
    cpu.w(evtyper(1), CHAIN | EXCLUDE_EL0);
    cpu.w(evtyper(2), INST_RETIRED);
    cpu.w(evtyper(3), SW_INCR);
    cpu.w(SysReg::PMCNTENSET_EL0, 0xF | 1 << 31);
    cpu.w(evcntr(0), PRE_OVERFLOW_32);
    cpu.w(evcntr(1), 0xFFFF_FFFE);
    cpu.w(evcntr(2), 0xFFFF_FFFF_FFFF_FFF9);
    cpu.w(SysReg::PMCCNTR_EL0, u64::MAX - 99);
    cpu.w(SysReg::PMCR_EL0, E | LP);
    cpu.isb();
    // LP: #0 is a 64-bit counter, so #1 does not chain.
    assert_eq!(
        cpu.pmu.events_until_overflow(EL1),
        [
            (Event::MEM_ACCESS, 0xFFFF_FFFF_0000_0010),
            (Event::INST_RETIRED, 7),
            (Event::CPU_CYCLES, 100),
        ]
    );
    assert_eq!(
        cpu.pmu.events_until_overflow(EL0),
        [(Event::INST_RETIRED, 7), (Event::CPU_CYCLES, 100)]
    );
    assert!(cpu.pmu.events_until_overflow(EL2).is_empty(), "no NSH");

    cpu.w(SysReg::PMCR_EL0, E);
    cpu.isb();
    let list = cpu.pmu.events_until_overflow(EL1);
    // #0 in 16 accesses, #1 (CHAIN) after 16 + 2^32 accesses.
    assert_eq!(
        list,
        [
            (Event::MEM_ACCESS, 16),
            (Event::MEM_ACCESS, 16 + (1 << 32)),
            (Event::INST_RETIRED, 7),
            (Event::CPU_CYCLES, 100),
        ]
    );
    // Run up to the predicted operations, one short, then the one.
    for _ in 0..6 {
        cpu.exec(other());
    }
    assert_eq!(cpu.r(SysReg::PMOVSSET_EL0), 0);
    cpu.exec(other());
    assert_eq!(
        cpu.r(SysReg::PMOVSSET_EL0),
        0x4,
        "#2 on the 7th instruction"
    );
    let mut span = EventCounts::default();
    span.add(Event::MEM_ACCESS, 16 + (1 << 32) - 8);
    cpu.pmu.count(&span, EL1);
    assert_eq!(cpu.r(SysReg::PMOVSSET_EL0), 0x5);
    for _ in 0..7 {
        cpu.exec(load());
    }
    assert_eq!(cpu.r(SysReg::PMOVSSET_EL0), 0x5, "#1 not yet");
    cpu.exec(load());
    assert_eq!(cpu.r(SysReg::PMOVSSET_EL0), 0x7, "#1 exactly then");
}
