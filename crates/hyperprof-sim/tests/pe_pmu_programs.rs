//! The PMU behaviours kvm-unit-tests arm/pmu.c checks, as bare-metal
//! programs at EL1 on a PE: register writes through the `Cpu` interface and
//! real operation streams, with counts compared exactly against the events
//! the operations caused.

use hyperprof_arch::{Cpu, EventCounter, ExceptionLevel, PmuVer, SysReg};
use hyperprof_sim::event::{Event, EventCounts};
use hyperprof_sim::machine::{Machine, MachineConfig};
use hyperprof_sim::pe::{PeConfig, RunExit};
use hyperprof_sim::pmu::PmuConfig;
use hyperprof_sim::workload::by_name;

const N: u8 = 6;

/// One PE at EL1 (no VHE, every counter given to EL1).
fn el1_machine() -> Machine {
    let mut m = Machine::new(&MachineConfig {
        pes: vec![PeConfig {
            pmu: PmuConfig {
                counters: N,
                version: PmuVer::V3p5,
                hpmn0: false,
                el2_implemented: true,
            },
            spe: None,
            fgt: true,
            uarch: Default::default(),
        }],
        ram_base: 0x8000_0000,
        ram_size: 1 << 20,
    })
    .unwrap();
    m.pe_mut(0).unwrap().eret(ExceptionLevel::EL1);
    m
}

fn ctr(n: u8) -> SysReg {
    SysReg::PMEVCNTR_EL0(EventCounter::new(n).unwrap())
}
fn typ(n: u8) -> SysReg {
    SysReg::PMEVTYPER_EL0(EventCounter::new(n).unwrap())
}

/// Runs `ops` operations of `name` at EL1; returns the exit and the events
/// the operations caused.
fn run(m: &mut Machine, name: &str, ops: u64) -> (RunExit, u64, EventCounts) {
    let before = *m.pe(0).unwrap().events();
    let mut w = by_name(name, 11).unwrap();
    let mut done = 0;
    let exit = m.run(0, w.as_mut(), ops, &mut done).unwrap();
    let mut caused = *m.pe(0).unwrap().events();
    for (a, b) in caused.0.iter_mut().zip(before.0.iter()) {
        *a -= b;
    }
    (exit, done, caused)
}

fn w(m: &mut Machine, reg: SysReg, v: u64) {
    m.cpu(0).unwrap().write(reg, v).unwrap();
}
fn r(m: &mut Machine, reg: SysReg) -> u64 {
    m.cpu(0).unwrap().read(reg).unwrap()
}

#[test]
fn basic_event_count_and_mem_access_are_exact() {
    let mut m = el1_machine();
    assert_eq!(r(&mut m, SysReg::PMCR_EL0) >> 11 & 0x1f, N as u64);
    w(&mut m, typ(0), Event::INST_RETIRED.number() as u64);
    w(&mut m, typ(1), Event::MEM_ACCESS.number() as u64);
    w(&mut m, typ(2), Event::L1D_CACHE_REFILL.number() as u64);
    w(&mut m, SysReg::PMCNTENSET_EL0, 0b111);
    w(&mut m, SysReg::PMCR_EL0, 1);
    m.cpu(0).unwrap().isb();
    let (exit, done, caused) = run(&mut m, "mix", 123_457);
    assert_eq!((exit, done), (RunExit::Completed, 123_457));
    assert_eq!(r(&mut m, ctr(0)), 123_457);
    assert_eq!(r(&mut m, ctr(1)), caused.get(Event::MEM_ACCESS));
    assert_eq!(r(&mut m, ctr(2)), caused.get(Event::L1D_CACHE_REFILL));
    assert!(caused.get(Event::MEM_ACCESS) > 10_000);
}

#[test]
fn the_cycle_counter_counts_cycles() {
    let mut m = el1_machine();
    w(&mut m, SysReg::PMCCFILTR_EL0, 0);
    w(&mut m, SysReg::PMCNTENSET_EL0, 1 << 31);
    w(&mut m, SysReg::PMCR_EL0, 1);
    m.cpu(0).unwrap().isb();
    let (_, _, caused) = run(&mut m, "pointer-chase", 50_000);
    let cycles = r(&mut m, SysReg::PMCCNTR_EL0);
    assert_eq!(cycles, caused.get(Event::CPU_CYCLES));
    assert!(cycles > 50_000, "pointer chasing stalls: {cycles}");
}

#[test]
fn an_enable_without_isb_counts_nothing_until_synchronized() {
    let mut m = el1_machine();
    w(&mut m, typ(0), Event::INST_RETIRED.number() as u64);
    w(&mut m, SysReg::PMCNTENSET_EL0, 1);
    w(&mut m, SysReg::PMCR_EL0, 1);
    run(&mut m, "array-sum", 10_000);
    assert_eq!(
        r(&mut m, ctr(0)),
        0,
        "counted before a context synchronization event"
    );
    m.cpu(0).unwrap().isb();
    run(&mut m, "array-sum", 10_000);
    assert_eq!(r(&mut m, ctr(0)), 10_000);
}

#[test]
fn overflow_interrupts_at_the_exact_operation_and_follows_pmovs() {
    let mut m = el1_machine();
    w(&mut m, typ(0), Event::INST_RETIRED.number() as u64);
    w(&mut m, ctr(0), 0xFFFF_FFFF - 999);
    w(&mut m, SysReg::PMINTENSET_EL1, 1);
    w(&mut m, SysReg::PMCNTENSET_EL0, 1);
    w(&mut m, SysReg::PMCR_EL0, 1);
    m.cpu(0).unwrap().isb();
    let (exit, done, _) = run(&mut m, "branchy", 1_000_000);
    assert_eq!(done, 1000, "the run stops at the overflowing operation");
    assert!(matches!(exit, RunExit::Interrupt(l) if l.pmuirq && !l.pmbirq));
    assert_eq!(r(&mut m, SysReg::PMOVSSET_EL0), 1);
    assert_eq!(r(&mut m, ctr(0)) & 0xFFFF_FFFF, 0);
    // Level sensitive: still pending until software clears PMOVS.
    assert!(m.pe(0).unwrap().irq_lines().pmuirq);
    w(&mut m, SysReg::PMOVSCLR_EL0, 1);
    assert!(!m.pe(0).unwrap().irq_lines().pmuirq);
    // Masking PMINTEN instead keeps PMOVS but drops the line.
    w(&mut m, ctr(0), 0xFFFF_FFFF);
    w(&mut m, SysReg::PMINTENCLR_EL1, 1);
    let (exit, done, _) = run(&mut m, "branchy", 10);
    assert_eq!((exit, done), (RunExit::Completed, 10));
    assert_eq!(r(&mut m, SysReg::PMOVSSET_EL0), 1);
}

#[test]
fn chained_counters_count_overflows_of_the_even_one() {
    let mut m = el1_machine();
    w(&mut m, typ(0), Event::INST_RETIRED.number() as u64);
    w(&mut m, typ(1), 0x1E);
    w(&mut m, ctr(0), 0xFFFF_FFF0);
    w(&mut m, SysReg::PMCNTENSET_EL0, 0b11);
    w(&mut m, SysReg::PMCR_EL0, 1);
    m.cpu(0).unwrap().isb();
    run(&mut m, "stream-copy", 100);
    assert_eq!(r(&mut m, ctr(0)) & 0xFFFF_FFFF, 100 - 16);
    assert_eq!(r(&mut m, ctr(1)), 1);
    assert_eq!(r(&mut m, SysReg::PMOVSSET_EL0) & 1, 1);
}

#[test]
fn sw_incr_counts_writes_of_pmswinc_on_enabled_counters_only() {
    let mut m = el1_machine();
    w(&mut m, typ(2), 0x00);
    w(&mut m, typ(3), 0x00);
    w(&mut m, SysReg::PMCNTENSET_EL0, 1 << 2);
    w(&mut m, SysReg::PMCR_EL0, 1);
    m.cpu(0).unwrap().isb();
    for _ in 0..5 {
        w(&mut m, SysReg::PMSWINC_EL0, 0b1100);
    }
    assert_eq!(r(&mut m, ctr(2)), 5);
    assert_eq!(r(&mut m, ctr(3)), 0, "counter 3 is not enabled");
    // Operations never count as SW_INCR.
    run(&mut m, "mix", 1000);
    assert_eq!(r(&mut m, ctr(2)), 5);
}

#[test]
fn filters_exclude_el1_and_el0() {
    let mut m = el1_machine();
    // P (bit 31) excludes EL1; U (bit 30) excludes EL0.
    w(
        &mut m,
        typ(0),
        (1 << 31) | Event::INST_RETIRED.number() as u64,
    );
    w(
        &mut m,
        typ(1),
        (1 << 30) | Event::INST_RETIRED.number() as u64,
    );
    w(&mut m, SysReg::PMCNTENSET_EL0, 0b11);
    w(&mut m, SysReg::PMCR_EL0, 1);
    m.cpu(0).unwrap().isb();
    run(&mut m, "mix", 777);
    assert_eq!(r(&mut m, ctr(0)), 0);
    assert_eq!(r(&mut m, ctr(1)), 777);
    m.pe_mut(0).unwrap().eret(ExceptionLevel::EL0);
    run(&mut m, "mix", 333);
    m.pe_mut(0).unwrap().exception_entry(ExceptionLevel::EL1);
    assert_eq!(r(&mut m, ctr(0)), 333);
    assert_eq!(r(&mut m, ctr(1)), 777);
}

#[test]
fn unimplemented_counters_are_undefined() {
    let mut m = el1_machine();
    assert!(m.cpu(0).unwrap().read(ctr(N)).is_err());
    assert!(m.cpu(0).unwrap().write(typ(30), 0).is_err());
    w(&mut m, SysReg::PMCNTENSET_EL0, u64::MAX);
    assert_eq!(
        r(&mut m, SysReg::PMCNTENSET_EL0),
        (1 << 31) | ((1 << N) - 1)
    );
}
