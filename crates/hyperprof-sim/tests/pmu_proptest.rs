//! Property tests of the PMU model: arbitrary access sequences (any
//! register, value, Exception level and MDCR_EL2, on any configuration)
//! never panic and keep the architectural invariants; counting is exact
//! (a span counts like the same events one at a time, and like two
//! sub-spans); `events_until_overflow` predicts the overflowing event.

use hyperprof_arch::{mdcr_el2, pm_counter_bits, pmcr_el0, ExceptionLevel, PmuVer, SysReg};
use hyperprof_sim::event::{Event, EventCounts, ALL_EVENTS, EVENT_COUNT};
use hyperprof_sim::pmu::{Pmu, PmuConfig, View};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Action {
    Read(usize, ExceptionLevel, u64),
    Write(usize, u64, ExceptionLevel, u64),
    Sync(u64),
    Count(Vec<(usize, u64)>, ExceptionLevel),
    Until(ExceptionLevel),
    Irq(u64),
    SetCounter(u8, u64),
}

fn version() -> impl Strategy<Value = PmuVer> {
    prop::sample::select(vec![
        PmuVer::NotImplemented,
        PmuVer::V3,
        PmuVer::V3p1,
        PmuVer::V3p4,
        PmuVer::V3p5,
        PmuVer::V3p7,
        PmuVer::V3p9,
        PmuVer::ImpDef,
        PmuVer::Other(2),
        PmuVer::Other(12),
    ])
}

fn pmuv3() -> impl Strategy<Value = PmuVer> {
    prop::sample::select(vec![PmuVer::V3, PmuVer::V3p1, PmuVer::V3p4, PmuVer::V3p5])
}

fn config(version: impl Strategy<Value = PmuVer>) -> impl Strategy<Value = PmuConfig> {
    (0u8..=40, version, any::<bool>(), any::<bool>()).prop_map(
        |(counters, version, hpmn0, el2_implemented)| PmuConfig {
            counters,
            version,
            hpmn0,
            el2_implemented,
        },
    )
}

fn el() -> impl Strategy<Value = ExceptionLevel> {
    prop::sample::select(vec![
        ExceptionLevel::EL0,
        ExceptionLevel::EL1,
        ExceptionLevel::EL1,
        ExceptionLevel::EL2,
        ExceptionLevel::EL3,
    ])
}

/// Values near the interesting boundaries, and anything.
fn value() -> impl Strategy<Value = u64> {
    prop_oneof![
        any::<u64>(),
        0u64..300,
        (0u64..300).prop_map(|d| 0xFFFF_FFFF - d),
        (0u64..300).prop_map(|d| u64::MAX - d),
        (0u64..300).prop_map(|d| 0x1_FFFF_FFFF - d),
        (0u32..64).prop_map(|b| 1u64 << b),
    ]
}

/// MDCR_EL2 values: any, or built from the PMU fields.
fn mdcr() -> impl Strategy<Value = u64> {
    prop_oneof![
        any::<u64>(),
        (0u64..32, any::<[bool; 7]>()).prop_map(|(hpmn, b)| {
            let bit = |on: bool, f: hyperprof_arch::Field| if on { f.mask() } else { 0 };
            mdcr_el2::HPMN.value(hpmn)
                | bit(b[0], mdcr_el2::HPME)
                | bit(b[1], mdcr_el2::HPMD)
                | bit(b[2], mdcr_el2::HCCD)
                | bit(b[3], mdcr_el2::HLP)
                | bit(b[4] && b[5], mdcr_el2::TPM)
                | bit(b[6] && b[5], mdcr_el2::TPMCR)
        }),
    ]
}

fn span() -> impl Strategy<Value = Vec<(usize, u64)>> {
    prop::collection::vec(
        (
            0..EVENT_COUNT,
            prop_oneof![0u64..100, 0u64..(1 << 34), 0u64..(1 << 61)],
        ),
        0..4,
    )
}

fn counts(span: &[(usize, u64)]) -> EventCounts {
    let mut c = EventCounts::default();
    for &(i, n) in span {
        c.add(ALL_EVENTS[i], n);
    }
    c
}

fn action() -> impl Strategy<Value = Action> {
    let reg = 0..SysReg::COUNT;
    prop_oneof![
        2 => (reg.clone(), el(), mdcr()).prop_map(|(r, e, m)| Action::Read(r, e, m)),
        3 => (reg, value(), el(), mdcr()).prop_map(|(r, v, e, m)| Action::Write(r, v, e, m)),
        1 => mdcr().prop_map(Action::Sync),
        1 => (span(), el()).prop_map(|(s, e)| Action::Count(s, e)),
        1 => el().prop_map(Action::Until),
        1 => mdcr().prop_map(Action::Irq),
        1 => (0u8..40, value()).prop_map(|(n, v)| Action::SetCounter(n, v)),
    ]
}

/// The number of event counters an accessor at `el` may use (the
/// architecture's rule, written independently of the model).
fn accessible(cfg: &PmuConfig, el: ExceptionLevel, mdcr: u64) -> u64 {
    let n = u64::from(cfg.counters.min(31));
    if !cfg.el2_implemented || el >= ExceptionLevel::EL2 {
        return n;
    }
    let h = mdcr_el2::HPMN.get(mdcr);
    if h > n || (h == 0 && !cfg.hpmn0) {
        n
    } else {
        h
    }
}

fn check_read(cfg: &PmuConfig, reg: SysReg, v: View, val: u64) -> Result<(), TestCaseError> {
    let limit = accessible(cfg, v.el, v.mdcr_el2);
    let visible = pm_counter_bits::counter_range(0, limit as u8) | 1 << 31;
    match reg {
        SysReg::PMCNTENSET_EL0
        | SysReg::PMCNTENCLR_EL0
        | SysReg::PMINTENSET_EL1
        | SysReg::PMINTENCLR_EL1
        | SysReg::PMOVSSET_EL0
        | SysReg::PMOVSCLR_EL0 => {
            prop_assert_eq!(val & !visible, 0, "{} = {:#x}", reg, val);
        }
        SysReg::PMCR_EL0 => {
            prop_assert_eq!(pmcr_el0::N.get(val), limit);
            prop_assert!(pmcr_el0::LC.is_set(val), "LC is RES1");
            prop_assert_eq!(val & pmcr_el0::RAZ, 0);
            if !cfg.version.has_lp() {
                prop_assert!(!pmcr_el0::LP.is_set(val));
            }
        }
        SysReg::PMEVCNTR_EL0(c) | SysReg::PMEVTYPER_EL0(c) => {
            prop_assert!(u64::from(c.index()) < limit);
        }
        SysReg::PMSWINC_EL0 => prop_assert!(false, "PMSWINC_EL0 read succeeded"),
        _ => {}
    }
    Ok(())
}

fn check_invariants(cfg: &PmuConfig, pmu: &Pmu, mdcr: u64) -> Result<(), TestCaseError> {
    let (low, high) = pmu.irq_levels(mdcr);
    prop_assert_eq!(pmu.irq_level(mdcr), low || high);
    if !cfg.version.has_lp() {
        for n in 0..31 {
            prop_assert!(pmu.counter(n) <= 0xFFFF_FFFF, "32-bit counter {}", n);
        }
    }
    for n in cfg.counters.min(31)..31 {
        prop_assert_eq!(pmu.counter(n), 0, "unimplemented counter {}", n);
    }
    if !cfg.version.is_pmuv3() {
        prop_assert!(!pmu.irq_level(mdcr));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::with_cases(512)
    })]

    /// Whatever software does, the model does not panic, and what it shows
    /// respects N, HPMN, RES0/RES1 and the counter widths.
    #[test]
    fn arbitrary_access_sequences_never_panic(
        cfg in config(version()),
        actions in prop::collection::vec(action(), 0..80),
    ) {
        let mut pmu = Pmu::new(cfg);
        let mut last_mdcr = 0;
        for a in actions {
            match a {
                Action::Read(r, el, m) => {
                    let reg = SysReg::ALL[r];
                    let v = View::new(el, m);
                    if let Ok(val) = pmu.read(reg, v) {
                        prop_assert!(cfg.version.is_pmuv3());
                        check_read(&cfg, reg, v, val)?;
                    }
                }
                Action::Write(r, val, el, m) => {
                    let reg = SysReg::ALL[r];
                    let res = pmu.write(reg, val, View::new(el, m));
                    if res.is_ok() {
                        prop_assert!(cfg.version.is_pmuv3());
                        prop_assert!(el != ExceptionLevel::EL3);
                    }
                }
                Action::Sync(m) => {
                    pmu.sync(m);
                    last_mdcr = m;
                    prop_assert_eq!(pmu.effective_mdcr_el2(), m);
                }
                Action::Count(s, el) => pmu.count(&counts(&s), el),
                Action::Until(el) => {
                    for (_, r) in pmu.events_until_overflow(el) {
                        prop_assert!(r > 0);
                    }
                }
                Action::Irq(m) => {
                    let _ = pmu.irq_levels(m);
                }
                Action::SetCounter(n, v) => pmu.set_counter(n, v),
            }
            check_invariants(&cfg, &pmu, last_mdcr)?;
        }
    }
}

/// Register writes (at EL2, which may write everything) that set up
/// counting: event types from a small set, filters, counter values near
/// overflow, enables.
fn setup() -> impl Strategy<Value = Vec<(SysReg, u64)>> {
    let event = prop::sample::select(vec![0x00u64, 0x08, 0x11, 0x13, 0x1B, 0x1E, 0x1E, 0x01]);
    let filter = prop::sample::select(vec![0u64, 1 << 31, 1 << 30, 1 << 27, 0xF800_0000]);
    let typer = (0u8..31, event, filter).prop_map(|(i, e, f)| {
        (
            SysReg::pmevtyper_el0(i).unwrap_or(SysReg::PMCCFILTR_EL0),
            e | f,
        )
    });
    let cntr = (0u8..31, value())
        .prop_map(|(i, v)| (SysReg::pmevcntr_el0(i).unwrap_or(SysReg::PMCCNTR_EL0), v));
    let other = prop_oneof![
        value().prop_map(|v| (SysReg::PMCCNTR_EL0, v)),
        Just((SysReg::PMCNTENSET_EL0, u64::MAX)),
        any::<u32>().prop_map(|v| (SysReg::PMCNTENCLR_EL0, u64::from(v))),
        prop::sample::select(vec![1u64, 1 | 1 << 7, 1 | 1 << 5, 0])
            .prop_map(|v| (SysReg::PMCR_EL0, v)),
        (any::<bool>(), any::<bool>()).prop_map(|(p, u)| (
            SysReg::PMCCFILTR_EL0,
            u64::from(p) << 31 | u64::from(u) << 30 | 1 << 27
        )),
    ];
    prop::collection::vec(prop_oneof![2 => typer, 2 => cntr, 1 => other], 0..40)
}

/// The most privileged view the machine has (EL2, or EL1 without EL2,
/// where MDCR_EL2 does not apply).
fn top(cfg: &PmuConfig) -> View {
    if cfg.el2_implemented {
        View::el2()
    } else {
        View::new(ExceptionLevel::EL1, 0)
    }
}

fn configured(cfg: PmuConfig, writes: &[(SysReg, u64)], mdcr: u64) -> Pmu {
    let mut pmu = Pmu::new(cfg);
    let v = top(&cfg);
    // Enable counting first so that the random writes can turn parts off.
    pmu.write(SysReg::PMCR_EL0, 1, v).expect("PMCR_EL0");
    pmu.write(SysReg::PMCNTENSET_EL0, u64::MAX, v)
        .expect("PMCNTENSET_EL0");
    for &(reg, val) in writes {
        let r = pmu.write(reg, val, v);
        // Only counters beyond N may be refused.
        assert!(r.is_ok() || reg.counter().is_some(), "{reg}: {r:?}");
    }
    pmu.sync(mdcr);
    pmu
}

fn counting_el() -> impl Strategy<Value = ExceptionLevel> {
    prop::sample::select(vec![
        ExceptionLevel::EL0,
        ExceptionLevel::EL1,
        ExceptionLevel::EL2,
    ])
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::with_cases(256)
    })]

    /// Counting a span at once equals counting its events one at a time
    /// (every overflow and every CHAIN is accounted for).
    #[test]
    fn a_span_counts_like_its_operations(
        cfg in config(pmuv3()),
        writes in setup(),
        mdcr in mdcr(),
        el in counting_el(),
        ops in prop::collection::vec((0..EVENT_COUNT, 0u64..4), 1..300),
    ) {
        let mut whole = configured(cfg, &writes, mdcr);
        let mut stepped = whole.clone();
        let mut total = EventCounts::default();
        for &(e, n) in &ops {
            let mut one = EventCounts::default();
            one.add(ALL_EVENTS[e], n);
            stepped.count(&one, el);
            total.add_all(&one);
        }
        whole.count(&total, el);
        prop_assert_eq!(whole, stepped);
    }

    /// Counting is additive over spans of any size.
    #[test]
    fn counting_is_additive(
        cfg in config(pmuv3()),
        writes in setup(),
        mdcr in mdcr(),
        el in counting_el(),
        a in span(),
        b in span(),
    ) {
        let mut one = configured(cfg, &writes, mdcr);
        let mut two = one.clone();
        let (ca, cb) = (counts(&a), counts(&b));
        let mut sum = ca;
        sum.add_all(&cb);
        one.count(&sum, el);
        two.count(&ca, el);
        two.count(&cb, el);
        prop_assert_eq!(one, two);
    }

    /// For each event listed by `events_until_overflow`, one event fewer
    /// than the smallest distance overflows nothing; one more overflows.
    #[test]
    fn events_until_overflow_is_exact(
        cfg in config(pmuv3()),
        writes in setup(),
        mdcr in mdcr(),
        el in counting_el(),
    ) {
        let mut pmu = configured(cfg, &writes, mdcr);
        let v = top(&cfg);
        pmu.write(SysReg::PMOVSCLR_EL0, u64::MAX, v).expect("PMOVSCLR_EL0");
        let list = pmu.events_until_overflow(el);
        for e in ALL_EVENTS {
            let Some(r) = list.iter().filter(|(x, _)| *x == e).map(|&(_, r)| r).min() else {
                continue;
            };
            if r == u64::MAX {
                continue;
            }
            let mut p = pmu.clone();
            let mut c = EventCounts::default();
            c.add(e, r - 1);
            p.count(&c, el);
            prop_assert_eq!(p.read(SysReg::PMOVSSET_EL0, v), Ok(0), "{:?} {}", e, r);
            let mut c = EventCounts::default();
            c.add(e, 1);
            p.count(&c, el);
            prop_assert_ne!(p.read(SysReg::PMOVSSET_EL0, v), Ok(0), "{:?} {}", e, r);
        }
        // An event not listed never overflows anything.
        for e in ALL_EVENTS {
            if list.iter().any(|(x, _)| *x == e) {
                continue;
            }
            let mut p = pmu.clone();
            let mut c = EventCounts::default();
            c.add(e, 1 << 40);
            p.count(&c, el);
            prop_assert_eq!(p.read(SysReg::PMOVSSET_EL0, v), Ok(0), "{:?}", e);
        }
    }
}

#[test]
fn event_list_is_what_the_property_tests_assume() {
    assert_eq!(ALL_EVENTS.len(), EVENT_COUNT);
    assert!(ALL_EVENTS.contains(&Event::CPU_CYCLES));
}
