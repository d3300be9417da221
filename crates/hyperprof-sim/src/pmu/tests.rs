//! Unit tests of the PMU state machine: reset values, register masks,
//! access checks and the effective-configuration bookkeeping.

use hyperprof_arch::{
    mdcr_el2, pmcr_el0, pmevtyper_el0, pmu_event, AccessFault, EventCounter, ExceptionLevel,
    PmuVer, SysReg,
};

use super::{Pmu, PmuConfig, View, PMCEID0, PMCEID1};
use crate::event::{Event, EventCounts, ALL_EVENTS};

const EL0: ExceptionLevel = ExceptionLevel::EL0;
const EL1: ExceptionLevel = ExceptionLevel::EL1;
const EL2: ExceptionLevel = ExceptionLevel::EL2;
const EL3: ExceptionLevel = ExceptionLevel::EL3;
const UNDEF: AccessFault = AccessFault::Undefined;

fn pmu(counters: u8, version: PmuVer) -> Pmu {
    Pmu::new(PmuConfig {
        counters,
        version,
        hpmn0: true,
        el2_implemented: true,
    })
}

/// MDCR_EL2 giving EL1 all `n` counters.
fn all_to_el1(n: u8) -> u64 {
    mdcr_el2::HPMN.value(u64::from(n))
}

fn el1(n: u8) -> View {
    View::new(EL1, all_to_el1(n))
}

fn evcntr(n: u8) -> SysReg {
    SysReg::pmevcntr_el0(n).unwrap()
}

fn evtyper(n: u8) -> SysReg {
    SysReg::pmevtyper_el0(n).unwrap()
}

fn counts(e: Event, n: u64) -> EventCounts {
    let mut c = EventCounts::default();
    c.add(e, n);
    c
}

#[test]
fn reset_values() {
    let p = pmu(6, PmuVer::V3p5);
    let pmcr = p.read(SysReg::PMCR_EL0, View::el2()).unwrap();
    // N = 6, LC RES1, everything else 0 (E, D, X, DP, LP, IMP, IDCODE).
    assert_eq!(pmcr, pmcr_el0::N.value(6) | pmcr_el0::LC.mask());
    for reg in [
        SysReg::PMCNTENSET_EL0,
        SysReg::PMINTENSET_EL1,
        SysReg::PMOVSSET_EL0,
        SysReg::PMSELR_EL0,
        SysReg::PMUSERENR_EL0,
        SysReg::PMCCNTR_EL0,
        SysReg::PMCCFILTR_EL0,
        evcntr(5),
        evtyper(5),
    ] {
        assert_eq!(p.read(reg, View::el2()), Ok(0), "{reg}");
    }
    // The effective MDCR_EL2 starts with HPMN = N.
    assert_eq!(mdcr_el2::HPMN.get(p.effective_mdcr_el2()), 6);
    assert_eq!(p.config().counters, 6);
}

#[test]
fn pmceid_advertises_machine_events_and_chain() {
    for e in ALL_EVENTS {
        let n = e.number();
        let reg = if n < 32 { PMCEID0 } else { PMCEID1 };
        assert_ne!(reg & (1 << (n % 32)), 0, "{e:?}");
    }
    assert_ne!(PMCEID0 & (1 << pmu_event::CHAIN), 0);
    // Events the machine does not have: 0x01, 0x02, 0x3F; no 0x4000 events.
    assert_eq!(PMCEID0 & 0b110, 0);
    assert_eq!(PMCEID1 & (1 << 31), 0);
    assert_eq!(PMCEID0 >> 32, 0);
    assert_eq!(PMCEID1 >> 32, 0);
    let p = pmu(2, PmuVer::V3p1);
    assert_eq!(p.read(SysReg::PMCEID0_EL0, el1(2)), Ok(PMCEID0));
    assert_eq!(p.read(SysReg::PMCEID1_EL0, el1(2)), Ok(PMCEID1));
}

#[test]
fn pmcr_writable_bits_per_version() {
    let all = u64::MAX;
    let ctl = pmcr_el0::E.mask()
        | pmcr_el0::D.mask()
        | pmcr_el0::X.mask()
        | pmcr_el0::DP.mask()
        | pmcr_el0::LC.mask();
    let mut p = pmu(4, PmuVer::V3p5);
    p.write(SysReg::PMCR_EL0, all, el1(4)).unwrap();
    assert_eq!(
        p.read(SysReg::PMCR_EL0, el1(4)),
        Ok(ctl | pmcr_el0::LP.mask() | pmcr_el0::N.value(4))
    );
    // LP is RES0 before FEAT_PMUv3p5; LC stays 1 when written 0.
    let mut p = pmu(4, PmuVer::V3p4);
    p.write(SysReg::PMCR_EL0, all, el1(4)).unwrap();
    assert_eq!(
        p.read(SysReg::PMCR_EL0, el1(4)),
        Ok(ctl | pmcr_el0::N.value(4))
    );
    p.write(SysReg::PMCR_EL0, 0, el1(4)).unwrap();
    assert_eq!(
        p.read(SysReg::PMCR_EL0, el1(4)),
        Ok(pmcr_el0::LC.mask() | pmcr_el0::N.value(4))
    );
}

#[test]
fn evtyper_masks_per_version() {
    let mut p = pmu(2, PmuVer::V3);
    p.write(evtyper(0), u64::MAX, el1(2)).unwrap();
    // P U NSK NSU NSH M and a 10-bit event number.
    assert_eq!(p.read(evtyper(0), el1(2)), Ok(0xFC00_03FF));
    let mut p = pmu(2, PmuVer::V3p1);
    p.write(evtyper(0), u64::MAX, el1(2)).unwrap();
    assert_eq!(p.read(evtyper(0), el1(2)), Ok(0xFC00_FFFF));
    p.write(SysReg::PMCCFILTR_EL0, u64::MAX, el1(2)).unwrap();
    assert_eq!(p.read(SysReg::PMCCFILTR_EL0, el1(2)), Ok(0xFC00_0000));
    p.write(SysReg::PMSELR_EL0, u64::MAX, el1(2)).unwrap();
    assert_eq!(p.read(SysReg::PMSELR_EL0, el1(2)), Ok(31));
    p.write(SysReg::PMUSERENR_EL0, u64::MAX, el1(2)).unwrap();
    assert_eq!(p.read(SysReg::PMUSERENR_EL0, el1(2)), Ok(0xF));
}

#[test]
fn counter_width_follows_pmuv3p5() {
    let mut p = pmu(2, PmuVer::V3p4);
    p.write(evcntr(1), 0x1234_5678_9ABC_DEF0, el1(2)).unwrap();
    assert_eq!(p.read(evcntr(1), el1(2)), Ok(0x9ABC_DEF0));
    p.set_counter(0, u64::MAX);
    assert_eq!(p.counter(0), 0xFFFF_FFFF);
    // PMCCNTR_EL0 is 64 bits in every version.
    p.write(SysReg::PMCCNTR_EL0, u64::MAX - 1, el1(2)).unwrap();
    assert_eq!(p.read(SysReg::PMCCNTR_EL0, el1(2)), Ok(u64::MAX - 1));
    let mut p = pmu(2, PmuVer::V3p5);
    p.write(evcntr(1), 0x1234_5678_9ABC_DEF0, el1(2)).unwrap();
    assert_eq!(p.read(evcntr(1), el1(2)), Ok(0x1234_5678_9ABC_DEF0));
}

#[test]
fn snapshot_helpers() {
    let mut p = pmu(3, PmuVer::V3p5);
    p.set_counter(2, 77);
    p.set_counter(31, 99);
    p.set_counter(3, 5); // not implemented: ignored
    assert_eq!(p.counter(2), 77);
    assert_eq!(p.counter(31), 99);
    assert_eq!(p.counter(3), 0);
    assert_eq!(p.counter(200), 0);
    assert_eq!(p.read(evcntr(2), View::el2()), Ok(77));
    assert_eq!(p.read(SysReg::PMCCNTR_EL0, View::el2()), Ok(99));
}

#[test]
fn encodings_that_are_undefined() {
    let mut p = pmu(4, PmuVer::V3p1);
    let v = el1(4);
    assert_eq!(p.read(SysReg::PMSWINC_EL0, v), Err(UNDEF));
    assert_eq!(p.write(SysReg::PMCEID0_EL0, 0, v), Err(UNDEF));
    assert_eq!(p.write(SysReg::PMCEID1_EL0, 0, v), Err(UNDEF));
    // PMMIR_EL1 needs FEAT_PMUv3p4.
    assert_eq!(p.read(SysReg::PMMIR_EL1, v), Err(UNDEF));
    assert_eq!(pmu(4, PmuVer::V3p4).read(SysReg::PMMIR_EL1, v), Ok(0));
    assert_eq!(
        pmu(4, PmuVer::V3p4).write(SysReg::PMMIR_EL1, 0, v),
        Err(UNDEF)
    );
    // Registers that are not PMU registers.
    assert_eq!(p.read(SysReg::PMSCR_EL1, v), Err(UNDEF));
    assert_eq!(p.write(SysReg::MDCR_EL2, 0, View::el2()), Err(UNDEF));
    // No EL3 on this machine; no EL2 when not implemented.
    assert_eq!(p.read(SysReg::PMCR_EL0, View::new(EL3, 0)), Err(UNDEF));
    let no_el2 = Pmu::new(PmuConfig {
        counters: 4,
        version: PmuVer::V3p1,
        hpmn0: false,
        el2_implemented: false,
    });
    assert_eq!(no_el2.read(SysReg::PMCR_EL0, View::el2()), Err(UNDEF));
    assert!(no_el2.read(SysReg::PMCR_EL0, View::new(EL1, 0)).is_ok());
}

#[test]
fn no_pmuv3_means_no_registers_and_no_counting() {
    for version in [PmuVer::NotImplemented, PmuVer::ImpDef] {
        let mut p = pmu(4, version);
        assert_eq!(p.read(SysReg::PMCR_EL0, View::el2()), Err(UNDEF));
        assert_eq!(p.write(SysReg::PMCR_EL0, 1, View::el2()), Err(UNDEF));
        p.set_counter(31, u64::MAX);
        p.count(&counts(Event::CPU_CYCLES, 10), EL1);
        assert_eq!(p.counter(31), u64::MAX);
        assert!(!p.irq_level(0));
    }
}

#[test]
fn counters_above_31_are_clamped() {
    let p = pmu(200, PmuVer::V3p5);
    assert_eq!(
        pmcr_el0::N.get(p.read(SysReg::PMCR_EL0, View::el2()).unwrap()),
        31
    );
    assert_eq!(p.read(evcntr(30), View::el2()), Ok(0));
}

#[test]
fn el1_only_registers_are_undefined_at_el0() {
    let mut p = pmu(4, PmuVer::V3p4);
    p.write(SysReg::PMUSERENR_EL0, 0xF, el1(4)).unwrap();
    let v = View::new(EL0, all_to_el1(4));
    for reg in [
        SysReg::PMINTENSET_EL1,
        SysReg::PMINTENCLR_EL1,
        SysReg::PMMIR_EL1,
    ] {
        assert_eq!(p.read(reg, v), Err(UNDEF), "{reg}");
    }
    assert_eq!(p.write(SysReg::PMINTENSET_EL1, 1, v), Err(UNDEF));
    // PMUSERENR_EL0 is read-only at EL0 even with EN set.
    assert_eq!(p.write(SysReg::PMUSERENR_EL0, 0, v), Err(UNDEF));
    assert_eq!(p.read(SysReg::PMUSERENR_EL0, v), Ok(0xF));
}

#[test]
fn pmuserenr_controls_el0() {
    use hyperprof_arch::pmuserenr_el0 as u;
    let trap = Err(AccessFault::Trapped { to: EL1 });
    let v = View::new(EL0, all_to_el1(4));
    let mut p = pmu(4, PmuVer::V3p5);
    // Nothing enabled: everything but PMUSERENR_EL0 reads traps to EL1.
    for reg in [
        SysReg::PMCR_EL0,
        SysReg::PMCNTENSET_EL0,
        SysReg::PMOVSCLR_EL0,
        SysReg::PMSELR_EL0,
        SysReg::PMCEID0_EL0,
        SysReg::PMCCNTR_EL0,
        SysReg::PMXEVCNTR_EL0,
        SysReg::PMCCFILTR_EL0,
        evcntr(0),
        evtyper(0),
    ] {
        assert_eq!(p.read(reg, v), trap, "{reg}");
    }
    assert_eq!(p.write(SysReg::PMSWINC_EL0, 1, v), trap.map(|_| ()));
    assert_eq!(p.read(SysReg::PMUSERENR_EL0, v), Ok(0));

    // ER: event counter reads and PMSELR_EL0, not counter writes.
    p.write(SysReg::PMUSERENR_EL0, u::ER.mask(), el1(4))
        .unwrap();
    assert_eq!(p.read(evcntr(3), v), Ok(0));
    assert_eq!(p.write(SysReg::PMSELR_EL0, 3, v), Ok(()));
    assert_eq!(p.read(SysReg::PMXEVCNTR_EL0, v), Ok(0));
    assert_eq!(
        p.write(evcntr(3), 1, v),
        Err(AccessFault::Trapped { to: EL1 })
    );
    assert_eq!(p.read(SysReg::PMCCNTR_EL0, v), trap);
    assert_eq!(p.read(evtyper(3), v), trap);

    // CR: PMCCNTR_EL0 reads only.
    p.write(SysReg::PMUSERENR_EL0, u::CR.mask(), el1(4))
        .unwrap();
    assert_eq!(p.read(SysReg::PMCCNTR_EL0, v), Ok(0));
    assert_eq!(
        p.write(SysReg::PMCCNTR_EL0, 1, v),
        Err(AccessFault::Trapped { to: EL1 })
    );
    assert_eq!(p.read(evcntr(0), v), trap);

    // SW: PMSWINC_EL0 writes only.
    p.write(SysReg::PMUSERENR_EL0, u::SW.mask(), el1(4))
        .unwrap();
    assert_eq!(p.write(SysReg::PMSWINC_EL0, 1, v), Ok(()));
    assert_eq!(p.read(SysReg::PMCR_EL0, v), trap);

    // EN: everything EL0 may have.
    p.write(SysReg::PMUSERENR_EL0, u::EN.mask(), el1(4))
        .unwrap();
    assert_eq!(p.write(SysReg::PMCR_EL0, 1, v), Ok(()));
    assert_eq!(p.write(evcntr(2), 9, v), Ok(()));
    assert_eq!(p.read(evcntr(2), v), Ok(9));
}

#[test]
fn tpm_and_tpmcr_trap_lower_els_to_el2() {
    let trap = Err(AccessFault::Trapped { to: EL2 });
    let p = pmu(4, PmuVer::V3p5);
    let tpm = View::new(EL1, all_to_el1(4) | mdcr_el2::TPM.mask());
    assert_eq!(p.read(SysReg::PMCR_EL0, tpm), trap);
    assert_eq!(p.read(evcntr(0), tpm), trap);
    assert_eq!(p.read(SysReg::PMUSERENR_EL0, tpm), trap);
    let tpmcr = View::new(EL1, all_to_el1(4) | mdcr_el2::TPMCR.mask());
    assert_eq!(p.read(SysReg::PMCR_EL0, tpmcr), trap);
    assert_eq!(p.read(evcntr(0), tpmcr), Ok(0));
    // An EL0 access not allowed by PMUSERENR_EL0 traps to EL1 first.
    let el0 = View::new(EL0, all_to_el1(4) | mdcr_el2::TPM.mask());
    assert_eq!(
        p.read(SysReg::PMCR_EL0, el0),
        Err(AccessFault::Trapped { to: EL1 })
    );
    // UNDEFINED counters take priority over the trap.
    let small = View::new(EL1, mdcr_el2::HPMN.value(2) | mdcr_el2::TPM.mask());
    assert_eq!(p.read(evcntr(3), small), Err(UNDEF));
    // EL2 is never trapped by its own controls.
    let el2 = View::new(EL2, mdcr_el2::TPM.mask() | mdcr_el2::TPMCR.mask());
    assert_eq!(p.read(SysReg::PMCR_EL0, el2).map(|v| v & 1), Ok(0));
    // Without EL2, MDCR_EL2 is ignored.
    let no_el2 = Pmu::new(PmuConfig {
        counters: 4,
        version: PmuVer::V3p5,
        hpmn0: false,
        el2_implemented: false,
    });
    let v = View::new(EL1, mdcr_el2::TPM.mask() | mdcr_el2::HPMN.value(1));
    assert!(no_el2.read(evcntr(3), v).is_ok());
}

#[test]
fn hpmn_constrained_unpredictable_values_act_as_n() {
    let mut cfg = PmuConfig {
        counters: 4,
        version: PmuVer::V3p5,
        hpmn0: false,
        el2_implemented: true,
    };
    let n_seen = |p: &Pmu, hpmn: u64| {
        let v = View::new(EL1, mdcr_el2::HPMN.value(hpmn));
        pmcr_el0::N.get(p.read(SysReg::PMCR_EL0, v).unwrap())
    };
    let p = Pmu::new(cfg);
    assert_eq!(n_seen(&p, 0), 4);
    assert_eq!(n_seen(&p, 9), 4);
    assert_eq!(n_seen(&p, 3), 3);
    cfg.hpmn0 = true;
    let p = Pmu::new(cfg);
    assert_eq!(n_seen(&p, 0), 0);
    assert_eq!(n_seen(&p, 31), 4);
}

#[test]
fn evtyper_decoding() {
    use super::Source;
    assert_eq!(Source::of(0x11), Source::Event(Event::CPU_CYCLES));
    assert_eq!(Source::of(0x0), Source::SwIncr);
    assert_eq!(Source::of(0x1E), Source::Chain);
    assert_eq!(Source::of(0x01), Source::Nothing);
    assert_eq!(Source::of(0x4011), Source::Nothing);
    // Filter bits do not change the event.
    assert_eq!(
        Source::of(0x13 | pmevtyper_el0::P.mask() | pmevtyper_el0::U.mask()),
        Source::Event(Event::MEM_ACCESS)
    );
}

#[test]
fn counting_at_missing_levels_does_nothing() {
    let mut p = pmu(2, PmuVer::V3p5);
    p.write(SysReg::PMCNTENSET_EL0, 0x8000_0001, View::el2())
        .unwrap();
    p.write(evtyper(0), 0x11 | pmevtyper_el0::NSH.mask(), View::el2())
        .unwrap();
    p.write(
        SysReg::PMCCFILTR_EL0,
        pmevtyper_el0::NSH.mask(),
        View::el2(),
    )
    .unwrap();
    p.write(SysReg::PMCR_EL0, 1, View::el2()).unwrap();
    p.sync(all_to_el1(2));
    p.count(&counts(Event::CPU_CYCLES, 5), EL3);
    assert_eq!((p.counter(0), p.counter(31)), (0, 0));
    assert!(p.events_until_overflow(EL3).is_empty());
    p.count(&counts(Event::CPU_CYCLES, 5), EL2);
    assert_eq!((p.counter(0), p.counter(31)), (5, 5));
}

#[test]
fn event_counter_index_type_covers_all_slots() {
    // The storage arrays have one slot per architected event counter.
    let p = pmu(31, PmuVer::V3p5);
    for c in EventCounter::all() {
        assert_eq!(p.read(SysReg::PMEVCNTR_EL0(c), View::el2()), Ok(0));
    }
}
