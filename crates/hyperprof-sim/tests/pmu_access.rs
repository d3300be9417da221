//! Register access behaviours: what the KVM selftest
//! `vpmu_counter_access` checks (PMCR_EL0.N, the SET/CLR registers never
//! showing unimplemented counters, UNDEFINED for counters >= N directly and
//! through PMSELR_EL0), the MDCR_EL2.HPMN partition seen from EL1 and EL2,
//! MDCR_EL2.HPMD/HCCD/HLP at EL2, and strict-mode timing.

#[path = "pmu_common.rs"]
mod common;

use common::*;
use hyperprof_arch::{mdcr_el2, pmcr_el0, AccessFault, PmuVer, SysReg};
use hyperprof_sim::event::{Event, EventCounts};
use hyperprof_sim::pmu::PmuConfig;

/// Counters of the "host" PMU.
const HOST_N: u8 = 8;

const BITMAPS: [SysReg; 6] = [
    SysReg::PMCNTENSET_EL0,
    SysReg::PMCNTENCLR_EL0,
    SysReg::PMINTENSET_EL1,
    SysReg::PMINTENCLR_EL1,
    SysReg::PMOVSSET_EL0,
    SysReg::PMOVSCLR_EL0,
];

fn cfg(version: PmuVer) -> PmuConfig {
    PmuConfig {
        counters: HOST_N,
        version,
        hpmn0: true,
        el2_implemented: true,
    }
}

fn hpmn(n: u8) -> u64 {
    mdcr_el2::HPMN.value(u64::from(n))
}

/// A guest at EL1 given `n` counters by MDCR_EL2.HPMN.
fn guest(n: u8) -> Cpu {
    Cpu::with(cfg(PmuVer::V3p5), EL1, hpmn(n) | mdcr_el2::HPME.mask())
}

fn span(e: Event, n: u64) -> EventCounts {
    let mut c = EventCounts::default();
    c.add(e, n);
    c
}

/// How a test reads/writes `PMEVCNTR<n>`/`PMEVTYPER<n>`: directly or
/// through PMSELR_EL0 and PMXEV*.
#[derive(Clone, Copy, Debug)]
struct Accessor {
    indirect_read: bool,
    indirect_write: bool,
}

const ACCESSORS: [Accessor; 4] = [
    Accessor {
        indirect_read: false,
        indirect_write: false,
    },
    Accessor {
        indirect_read: true,
        indirect_write: true,
    },
    Accessor {
        indirect_read: false,
        indirect_write: true,
    },
    Accessor {
        indirect_read: true,
        indirect_write: false,
    },
];

impl Accessor {
    fn reg(&self, cpu: &mut Cpu, indirect: bool, idx: u8, typer: bool) -> Result<SysReg, ()> {
        if indirect {
            cpu.w(SysReg::PMSELR_EL0, u64::from(idx));
            cpu.isb();
            Ok(if typer {
                SysReg::PMXEVTYPER_EL0
            } else {
                SysReg::PMXEVCNTR_EL0
            })
        } else {
            match (typer, SysReg::pmevtyper_el0(idx), SysReg::pmevcntr_el0(idx)) {
                (true, Some(r), _) | (false, _, Some(r)) => Ok(r),
                _ => Err(()),
            }
        }
    }

    fn read(&self, cpu: &mut Cpu, idx: u8, typer: bool) -> Result<u64, AccessFault> {
        let reg = self
            .reg(cpu, self.indirect_read, idx, typer)
            .map_err(|_| AccessFault::Undefined)?;
        cpu.pmu.read(reg, cpu.view())
    }

    fn write(&self, cpu: &mut Cpu, idx: u8, typer: bool, v: u64) -> Result<(), AccessFault> {
        let reg = self
            .reg(cpu, self.indirect_write, idx, typer)
            .map_err(|_| AccessFault::Undefined)?;
        let r = cpu.pmu.write(reg, v, cpu.view());
        cpu.isb();
        r
    }
}

/// `test_bitmap_pmu_regs`: set or clear counter `idx` in the three SET/CLR
/// pairs and check it reads as expected (set only if implemented).
fn bitmap_set_clear(cpu: &mut Cpu, idx: u8, set: bool) {
    let bit = 1u64 << idx;
    let expected = set && idx < pmcr_el0::N.get(cpu.r(SysReg::PMCR_EL0)) as u8;
    let regs = if set {
        [
            SysReg::PMCNTENSET_EL0,
            SysReg::PMINTENSET_EL1,
            SysReg::PMOVSSET_EL0,
        ]
    } else {
        [
            SysReg::PMCNTENCLR_EL0,
            SysReg::PMINTENCLR_EL1,
            SysReg::PMOVSCLR_EL0,
        ]
    };
    for reg in regs {
        cpu.w(reg, bit);
    }
    for reg in BITMAPS {
        assert_eq!(cpu.r(reg) & bit != 0, expected, "{reg} bit {idx}");
    }
}

/// The guest program of `vpmu_counter_access` for a guest given `n`
/// counters.
fn guest_code(cpu: &mut Cpu, n: u8) {
    assert_eq!(pmcr_el0::N.get(cpu.r(SysReg::PMCR_EL0)), u64::from(n));
    let unimplemented = ((1u64 << 31) - 1) & !((1u64 << n) - 1);
    for reg in BITMAPS {
        assert_eq!(cpu.r(reg) & unimplemented, 0, "{reg}");
    }
    for acc in ACCESSORS {
        for idx in 0..n {
            // Disable and reset all counters.
            let pmcr = cpu.r(SysReg::PMCR_EL0) & !E;
            cpu.w(SysReg::PMCR_EL0, pmcr | P);
            cpu.isb();
            bitmap_set_clear(cpu, idx, false);
            bitmap_set_clear(cpu, idx, true);
            bitmap_set_clear(cpu, idx, false);

            let typer = EXCLUDE_EL1 | INST_RETIRED;
            acc.write(cpu, idx, true, typer).unwrap();
            assert_eq!(acc.read(cpu, idx, true), Ok(typer), "{acc:?} {idx}");
            assert_eq!(acc.read(cpu, idx, false), Ok(0), "{acc:?} {idx}");
            let v = idx as u64 + 0x12345;
            acc.write(cpu, idx, false, v).unwrap();
            assert_eq!(acc.read(cpu, idx, false), Ok(v), "{acc:?} {idx}");
        }
        for idx in n..31 {
            let undef = Err(AccessFault::Undefined);
            assert_eq!(acc.read(cpu, idx, false), undef, "{acc:?} {idx}");
            assert_eq!(acc.write(cpu, idx, false, 0), undef.map(|_| ()));
            assert_eq!(acc.read(cpu, idx, true), undef, "{acc:?} {idx}");
            assert_eq!(acc.write(cpu, idx, true, 0), undef.map(|_| ()));
            bitmap_set_clear(cpu, idx, true);
            bitmap_set_clear(cpu, idx, false);
        }
    }
}

#[test]
fn vpmu_counter_access_for_every_guest_size() {
    for n in 0..=HOST_N {
        let mut cpu = guest(n);
        guest_code(&mut cpu, n);
        // The host, at EL2, still has all its counters.
        cpu.el = EL2;
        assert_eq!(pmcr_el0::N.get(cpu.r(SysReg::PMCR_EL0)), u64::from(HOST_N));
        let last = cpu.r(evcntr(HOST_N - 1));
        let guest_wrote = u64::from(HOST_N - 1) + 0x12345;
        assert_eq!(last, if n == HOST_N { guest_wrote } else { 0 });
        assert_eq!(
            cpu.pmu.read(evcntr(HOST_N), cpu.view()),
            Err(AccessFault::Undefined)
        );
    }
}

#[test]
fn vpmu_counter_access_without_el2() {
    for n in [0, 1, 5, 31] {
        let cfg = PmuConfig {
            counters: n,
            version: PmuVer::V3p1,
            hpmn0: false,
            el2_implemented: false,
        };
        // MDCR_EL2 is ignored without EL2.
        let mut cpu = Cpu::with(cfg, EL1, hpmn(1));
        guest_code(&mut cpu, n);
    }
}

#[test]
fn set_registers_discard_unimplemented_counters() {
    for n in [0, 3, HOST_N] {
        let mut cpu = guest(n);
        let valid = ((1u64 << n) - 1) | 1 << 31;
        for (set, clr) in [
            (SysReg::PMCNTENSET_EL0, SysReg::PMCNTENCLR_EL0),
            (SysReg::PMINTENSET_EL1, SysReg::PMINTENCLR_EL1),
            (SysReg::PMOVSSET_EL0, SysReg::PMOVSCLR_EL0),
        ] {
            cpu.w(set, u64::MAX);
            assert_eq!(cpu.r(set), valid, "{set}");
            assert_eq!(cpu.r(clr), valid, "{clr}");
            cpu.w(clr, u64::MAX);
            assert_eq!(cpu.r(set), 0, "{set}");
        }
    }
}

// ---- the HPMN partition ----

#[test]
fn partition_views_from_el1_and_el2() {
    let mut cpu = guest(3);
    // The guest enables, and asks for interrupts on, everything it can.
    for reg in [SysReg::PMCNTENSET_EL0, SysReg::PMINTENSET_EL1] {
        cpu.w(reg, u64::MAX);
    }
    assert_eq!(cpu.r(SysReg::PMCNTENSET_EL0), 0x8000_0007);
    cpu.el = EL2;
    assert_eq!(cpu.r(SysReg::PMCNTENSET_EL0), 0x8000_0007);
    // The host takes counters 3..8 for itself.
    cpu.w(SysReg::PMCNTENSET_EL0, 0xF8);
    cpu.w(evcntr(5), 555);
    cpu.el = EL1;
    assert_eq!(
        cpu.r(SysReg::PMCNTENSET_EL0),
        0x8000_0007,
        "host bits hidden"
    );
    cpu.w(SysReg::PMCNTENCLR_EL0, u64::MAX);
    assert_eq!(cpu.r(SysReg::PMCNTENSET_EL0), 0);
    cpu.el = EL2;
    assert_eq!(cpu.r(SysReg::PMCNTENSET_EL0), 0xF8, "host bits kept");

    // PMCR_EL0.P from EL1 resets only the guest's counters.
    for i in 0..HOST_N {
        cpu.w(evcntr(i), 100 + u64::from(i));
    }
    cpu.el = EL1;
    cpu.w(SysReg::PMCR_EL0, P);
    cpu.el = EL2;
    let values: Vec<u64> = (0..HOST_N).map(|i| cpu.r(evcntr(i))).collect();
    assert_eq!(values, [0, 0, 0, 103, 104, 105, 106, 107]);
    cpu.w(SysReg::PMCR_EL0, P);
    assert!((0..HOST_N).all(|i| cpu.r(evcntr(i)) == 0));

    // PMSWINC_EL0 from EL1 cannot touch host counters (counting at EL2
    // needs NSH).
    for i in 0..HOST_N {
        cpu.w(evtyper(i), SW_INCR | INCLUDE_EL2);
    }
    cpu.w(SysReg::PMCNTENSET_EL0, 0xFF);
    cpu.w(SysReg::PMCR_EL0, E);
    cpu.switch_to(EL1);
    cpu.w(SysReg::PMSWINC_EL0, 0xFF);
    cpu.el = EL2;
    let values: Vec<u64> = (0..HOST_N).map(|i| cpu.r(evcntr(i))).collect();
    assert_eq!(values, [1, 1, 1, 0, 0, 0, 0, 0]);
    cpu.w(SysReg::PMSWINC_EL0, 0xFF);
    let values: Vec<u64> = (0..HOST_N).map(|i| cpu.r(evcntr(i))).collect();
    assert_eq!(values, [2, 2, 2, 1, 1, 1, 1, 1]);
}

#[test]
fn partition_enables_pmcr_e_low_and_hpme_high() {
    let mut cpu = Cpu::with(cfg(PmuVer::V3p5), EL2, hpmn(2));
    for i in 0..4 {
        cpu.w(evtyper(i), MEM_ACCESS);
    }
    cpu.w(SysReg::PMCNTENSET_EL0, 0xF);
    cpu.w(SysReg::PMCR_EL0, E);
    cpu.switch_to(EL1);
    cpu.pmu.count(&span(Event::MEM_ACCESS, 10), EL1);
    let read = |cpu: &Cpu| -> Vec<u64> { (0..4).map(|i| cpu.pmu.counter(i)).collect() };
    assert_eq!(
        read(&cpu),
        [10, 10, 0, 0],
        "HPME = 0: host counters stopped"
    );
    cpu.mdcr |= mdcr_el2::HPME.mask();
    cpu.isb();
    cpu.pmu.count(&span(Event::MEM_ACCESS, 10), EL1);
    assert_eq!(read(&cpu), [20, 20, 10, 10]);
    cpu.el = EL2;
    cpu.w(SysReg::PMCR_EL0, 0);
    cpu.switch_to(EL1);
    cpu.pmu.count(&span(Event::MEM_ACCESS, 10), EL1);
    assert_eq!(read(&cpu), [20, 20, 20, 20], "PMCR.E = 0: guest stopped");
}

#[test]
fn interrupt_levels_per_partition() {
    let mut cpu = Cpu::with(cfg(PmuVer::V3p5), EL2, hpmn(4) | mdcr_el2::HPME.mask());
    cpu.w(SysReg::PMINTENSET_EL1, u64::MAX);
    cpu.w(SysReg::PMCR_EL0, E);
    let levels = |cpu: &Cpu| cpu.pmu.irq_levels(cpu.mdcr);
    assert_eq!(levels(&cpu), (false, false));
    cpu.w(SysReg::PMOVSSET_EL0, 1 << 5);
    assert_eq!(levels(&cpu), (false, true), "host counter");
    assert!(cpu.pmu.irq_level(cpu.mdcr));
    cpu.w(SysReg::PMOVSSET_EL0, 1 << 1);
    assert_eq!(levels(&cpu), (true, true));
    cpu.w(SysReg::PMOVSCLR_EL0, 1 << 5);
    assert_eq!(levels(&cpu), (true, false), "guest counter");
    cpu.w(SysReg::PMOVSCLR_EL0, 1 << 1);
    cpu.w(SysReg::PMOVSSET_EL0, 1 << 31);
    assert_eq!(
        levels(&cpu),
        (true, false),
        "the cycle counter is the guest's"
    );
    // Each range has its own enable: PMCR_EL0.E and MDCR_EL2.HPME.
    cpu.w(SysReg::PMOVSSET_EL0, 1 << 6);
    cpu.w(SysReg::PMCR_EL0, 0);
    assert_eq!(levels(&cpu), (false, true));
    assert_eq!(cpu.pmu.irq_levels(hpmn(4)), (false, false));
    // The routing follows the MDCR_EL2 value given.
    cpu.w(SysReg::PMCR_EL0, E);
    assert_eq!(cpu.pmu.irq_levels(hpmn(7)), (true, false));
}

#[test]
fn chain_does_not_cross_the_partition() {
    for (h, expected) in [(3u8, 0u64), (4, 1), (2, 1)] {
        let mut cpu = Cpu::with(cfg(PmuVer::V3p5), EL2, hpmn(h) | mdcr_el2::HPME.mask());
        cpu.w(evtyper(2), MEM_ACCESS);
        cpu.w(evtyper(3), CHAIN);
        cpu.w(evcntr(2), PRE_OVERFLOW_32);
        cpu.w(SysReg::PMCNTENSET_EL0, 0xC);
        cpu.w(SysReg::PMCR_EL0, E);
        cpu.isb();
        cpu.pmu.count(&span(Event::MEM_ACCESS, 100), EL1);
        assert_eq!(cpu.r(SysReg::PMOVSSET_EL0), 0x4, "HPMN {h}");
        assert_eq!(cpu.r(evcntr(3)), expected, "HPMN {h}");
    }
}

#[test]
fn lp_for_the_low_range_hlp_for_the_high_range() {
    for (lp, hlp) in [(true, false), (false, true)] {
        let mdcr = hpmn(2) | mdcr_el2::HPME.mask() | if hlp { mdcr_el2::HLP.mask() } else { 0 };
        let mut cpu = Cpu::with(cfg(PmuVer::V3p5), EL2, mdcr);
        for i in 0..4 {
            cpu.w(evtyper(i), MEM_ACCESS);
            cpu.w(evcntr(i), PRE_OVERFLOW_32);
        }
        cpu.w(evtyper(1), CHAIN);
        cpu.w(evtyper(3), CHAIN);
        cpu.w(SysReg::PMCNTENSET_EL0, 0xF);
        cpu.w(SysReg::PMCR_EL0, E | if lp { LP } else { 0 });
        cpu.isb();
        cpu.pmu.count(&span(Event::MEM_ACCESS, 0x20), EL1);
        let (wide, narrow) = if lp { (0, 2) } else { (2, 0) };
        assert_eq!(cpu.r(evcntr(wide)), 0x1_0000_0010);
        assert_eq!(cpu.r(evcntr(narrow)), 0x1_0000_0010);
        assert_eq!(cpu.r(SysReg::PMOVSSET_EL0), 1 << narrow);
        assert_eq!(cpu.r(evcntr(wide + 1)), PRE_OVERFLOW_32, "no CHAIN at 64");
        assert_eq!(cpu.r(evcntr(narrow + 1)), PRE_OVERFLOW_32 + 1);
    }
    // HLP needs FEAT_PMUv3p5.
    let mdcr = hpmn(2) | mdcr_el2::HPME.mask() | mdcr_el2::HLP.mask();
    let mut cpu = Cpu::with(cfg(PmuVer::V3p4), EL2, mdcr);
    cpu.w(evtyper(2), MEM_ACCESS);
    cpu.w(evcntr(2), PRE_OVERFLOW_32);
    cpu.w(SysReg::PMCNTENSET_EL0, 0x4);
    cpu.isb();
    cpu.pmu.count(&span(Event::MEM_ACCESS, 0x20), EL1);
    assert_eq!(cpu.r(SysReg::PMOVSSET_EL0), 0x4);
}

#[test]
fn hpmn_zero_leaves_only_the_cycle_counter_to_el1() {
    let mut cpu = guest(0);
    assert_eq!(pmcr_el0::N.get(cpu.r(SysReg::PMCR_EL0)), 0);
    cpu.w(SysReg::PMCNTENSET_EL0, u64::MAX);
    assert_eq!(cpu.r(SysReg::PMCNTENSET_EL0), 1 << 31);
    assert_eq!(
        cpu.pmu.read(SysReg::PMXEVCNTR_EL0, cpu.view()),
        Err(AccessFault::Undefined)
    );
    // Without FEAT_HPMN0, HPMN = 0 is CONSTRAINED UNPREDICTABLE: as N here.
    let mut c = cfg(PmuVer::V3p5);
    c.hpmn0 = false;
    let cpu = Cpu::with(c, EL1, hpmn(0));
    assert_eq!(pmcr_el0::N.get(cpu.r(SysReg::PMCR_EL0)), u64::from(HOST_N));
}

// ---- HPMD and HCCD: counting at EL2 ----

fn el2_counts(version: PmuVer, mdcr_extra: u64, pmcr_extra: u64) -> Vec<u64> {
    let mdcr = hpmn(2) | mdcr_el2::HPME.mask() | mdcr_extra;
    let mut cpu = Cpu::with(cfg(version), EL2, mdcr);
    for i in 0..4 {
        cpu.w(evtyper(i), INST_RETIRED | INCLUDE_EL2);
    }
    cpu.w(SysReg::PMCCFILTR_EL0, INCLUDE_EL2);
    cpu.w(SysReg::PMCNTENSET_EL0, 0xF | 1 << 31);
    cpu.w(SysReg::PMCR_EL0, E | pmcr_extra);
    cpu.isb();
    cpu.instrs(5);
    let mut v: Vec<u64> = (0..4).map(|i| cpu.r(evcntr(i))).collect();
    v.push(cpu.r(SysReg::PMCCNTR_EL0));
    // At EL1 none of HPMD, HCCD, DP matters.
    cpu.switch_to(EL1);
    cpu.instrs(1);
    cpu.el = EL2;
    let again: Vec<u64> = (0..4).map(|i| cpu.r(evcntr(i))).collect();
    assert_eq!(again, v[..4].iter().map(|x| x + 1).collect::<Vec<_>>());
    v
}

#[test]
fn hpmd_and_hccd_at_el2() {
    let hpmd = mdcr_el2::HPMD.mask();
    let hccd = mdcr_el2::HCCD.mask();
    assert_eq!(el2_counts(PmuVer::V3p5, 0, 0), [5, 5, 5, 5, 5]);
    // HPMD: the guest's counters stop at EL2, the cycle counter only with DP.
    assert_eq!(el2_counts(PmuVer::V3p5, hpmd, 0), [0, 0, 5, 5, 5]);
    assert_eq!(el2_counts(PmuVer::V3p5, hpmd, DP), [0, 0, 5, 5, 0]);
    assert_eq!(el2_counts(PmuVer::V3p5, 0, DP), [5, 5, 5, 5, 5]);
    // HCCD: the cycle counter stops at EL2.
    assert_eq!(el2_counts(PmuVer::V3p5, hccd, 0), [5, 5, 5, 5, 0]);
    // HCCD needs FEAT_PMUv3p5, HPMD FEAT_PMUv3p1.
    assert_eq!(el2_counts(PmuVer::V3p4, hccd, 0), [5, 5, 5, 5, 5]);
    assert_eq!(el2_counts(PmuVer::V3, hpmd, DP), [5, 5, 5, 5, 5]);
    assert_eq!(el2_counts(PmuVer::V3p1, hpmd, 0), [0, 0, 5, 5, 5]);
}

#[test]
fn el2_counts_only_with_nsh() {
    let mut cpu = Cpu::with(cfg(PmuVer::V3p5), EL2, hpmn(HOST_N));
    cpu.w(evtyper(0), INST_RETIRED);
    cpu.w(
        evtyper(1),
        INST_RETIRED | INCLUDE_EL2 | EXCLUDE_EL1 | EXCLUDE_EL0,
    );
    cpu.w(SysReg::PMCNTENSET_EL0, 0x3);
    cpu.w(SysReg::PMCR_EL0, E);
    cpu.isb();
    cpu.instrs(3);
    assert_eq!((cpu.r(evcntr(0)), cpu.r(evcntr(1))), (0, 3));
}

// ---- EL0 ----

#[test]
fn el0_program_with_user_access() {
    let mut cpu = guest(HOST_N);
    cpu.w(evtyper(0), INST_RETIRED | EXCLUDE_EL1);
    cpu.w(SysReg::PMCNTENSET_EL0, 0x1 | 1 << 31);
    cpu.w(SysReg::PMCR_EL0, E);
    // Let EL0 read the counters (ER, CR) but not configure them.
    cpu.w(SysReg::PMUSERENR_EL0, 1 << 3 | 1 << 2);
    cpu.switch_to(EL0);
    cpu.instrs(4);
    assert_eq!(cpu.r(evcntr(0)), 4);
    assert_eq!(cpu.r(SysReg::PMCCNTR_EL0), 4);
    assert_eq!(
        cpu.pmu.write(SysReg::PMCR_EL0, 0, cpu.view()),
        Err(AccessFault::Trapped { to: EL1 })
    );
    assert_eq!(
        cpu.pmu.write(evcntr(0), 0, cpu.view()),
        Err(AccessFault::Trapped { to: EL1 })
    );
    // Back at EL1, the kernel's own instructions are not counted by #0.
    cpu.switch_to(EL1);
    cpu.instrs(4);
    assert_eq!(cpu.r(evcntr(0)), 4);
    assert_eq!(cpu.r(SysReg::PMCCNTR_EL0), 8);
}

// ---- strict mode ----

#[test]
fn configuration_takes_effect_only_at_a_context_synchronization_event() {
    let mut cpu = guest(4);
    cpu.w(evtyper(0), MEM_ACCESS);
    cpu.w(SysReg::PMCNTENSET_EL0, 0x1);
    cpu.w(SysReg::PMCR_EL0, E);
    assert_eq!(
        cpu.r(SysReg::PMCR_EL0) & E,
        E,
        "reads see the write at once"
    );
    cpu.exec(load());
    assert_eq!(cpu.r(evcntr(0)), 0, "no ISB yet: not counting");
    cpu.isb();
    cpu.exec(load());
    assert_eq!(cpu.r(evcntr(0)), 1);

    // Disabling is deferred too.
    cpu.w(SysReg::PMCNTENCLR_EL0, 0x1);
    assert_eq!(cpu.r(SysReg::PMCNTENSET_EL0), 0);
    cpu.exec(load());
    assert_eq!(cpu.r(evcntr(0)), 2, "still counting until the ISB");
    cpu.isb();
    cpu.exec(load());
    assert_eq!(cpu.r(evcntr(0)), 2);

    // So is a new event type.
    cpu.w(SysReg::PMCNTENSET_EL0, 0x1);
    cpu.isb();
    cpu.w(evtyper(0), INST_RETIRED);
    cpu.exec(other());
    assert_eq!(cpu.r(evcntr(0)), 2, "still MEM_ACCESS");
    cpu.exec(load());
    assert_eq!(cpu.r(evcntr(0)), 3);
    cpu.isb();
    cpu.exec(other());
    assert_eq!(cpu.r(evcntr(0)), 4, "now INST_RETIRED");

    // And a software increment needs the synchronized configuration.
    cpu.w(evtyper(1), SW_INCR);
    cpu.w(SysReg::PMCNTENSET_EL0, 0x2);
    cpu.w(SysReg::PMSWINC_EL0, 0x2);
    assert_eq!(cpu.r(evcntr(1)), 0);
    cpu.isb();
    cpu.w(SysReg::PMSWINC_EL0, 0x2);
    assert_eq!(cpu.r(evcntr(1)), 1);
}

#[test]
fn mdcr_el2_takes_effect_only_at_sync() {
    let mut cpu = Cpu::with(cfg(PmuVer::V3p5), EL2, hpmn(2));
    cpu.w(evtyper(3), INST_RETIRED);
    cpu.w(SysReg::PMCNTENSET_EL0, 0x8);
    cpu.isb();
    cpu.mdcr |= mdcr_el2::HPME.mask();
    cpu.switch_to(EL1); // exception return: synchronizes
    cpu.instrs(2);
    assert_eq!(cpu.pmu.counter(3), 2);
    // A new MDCR_EL2 not yet synchronized does not change counting...
    cpu.mdcr = hpmn(2);
    cpu.instrs(2);
    assert_eq!(cpu.pmu.counter(3), 4);
    assert_ne!(cpu.pmu.effective_mdcr_el2(), cpu.mdcr);
    // ... until the next context synchronization event.
    cpu.isb();
    cpu.instrs(2);
    assert_eq!(cpu.pmu.counter(3), 4);
    assert_eq!(cpu.pmu.effective_mdcr_el2(), cpu.mdcr);
}

#[test]
fn counter_and_flag_writes_take_effect_at_once() {
    let mut cpu = guest(4);
    cpu.w(evtyper(0), MEM_ACCESS);
    cpu.w(SysReg::PMCNTENSET_EL0, 0x1);
    cpu.w(SysReg::PMINTENSET_EL1, 0x1);
    cpu.w(SysReg::PMCR_EL0, E);
    cpu.isb();
    cpu.w(evcntr(0), ALL_SET_32);
    cpu.exec(load()); // no ISB between the write and the count
    assert_eq!(cpu.r(SysReg::PMOVSSET_EL0), 0x1);
    assert!(cpu.pmu.irq_level(cpu.mdcr));
    cpu.w(SysReg::PMOVSCLR_EL0, 0x1);
    assert!(
        !cpu.pmu.irq_level(cpu.mdcr),
        "no ISB needed to drop the line"
    );
    cpu.w(SysReg::PMCR_EL0, E | P);
    cpu.exec(load());
    assert_eq!(cpu.r(evcntr(0)), 1, "P reset the counter at once");
}
