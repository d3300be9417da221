//! `hyperprof explore` over the VHE SPE world switch: the hypervisor as it
//! is passes every schedule up to two injected events, and every mutation
//! of the catalogue that matters yields a counterexample that names what
//! broke; the harmless ones say why they are.

use hyperprof_kvm::explore::{
    catalogue_holds, catalogue_of, explore_host, explore_variants, summary, Event, Mutation,
    Variant,
};

/// The starting states with SPE alone, or with the PMUs too (VHE).
fn variants(pmu: bool) -> Vec<Variant> {
    Variant::all(false)
        .into_iter()
        .filter(|v| v.pmu == pmu)
        .collect()
}

#[test]
fn the_switch_as_it_is_passes_every_schedule_at_bound_two() {
    let r = explore_variants(&variants(false), None, 2, true);
    assert!(r.counterexample.is_none(), "{r}");
    assert_eq!(r.failing, 0);
    // Four starting states, and events injected beyond them.
    assert!(r.schedules > 4 * 4, "{}", r.schedules);
    assert!(r.to_string().contains("every invariant held"));
}

#[test]
fn with_the_pmus_the_counts_do_not_depend_on_the_interleaving() {
    // The host's PMU handler injected where its overflow is pending, and
    // preemption and migration: every count and overflow equals the
    // schedule's without the handlers (bound 1 here; the command line
    // runs bound 2).
    let r = explore_variants(&variants(true), None, 1, true);
    assert!(r.counterexample.is_none(), "{r}");
    assert!(r.schedules > 4 * 3, "{}", r.schedules);
    // The mutation of put's overflow collection is explained, not caught.
    let m = Mutation::PutMissesOverflowFlags;
    let r = explore_variants(&variants(true), Some(m), 0, true);
    assert!(
        r.counterexample.is_none() && m.harmless_because().is_some(),
        "{r}"
    );
}

#[test]
fn every_mutation_that_matters_is_caught_with_a_readable_trace() {
    let reports = catalogue_of(&variants(false), 2);
    assert!(catalogue_holds(&reports), "{}", summary(&reports));
    assert_eq!(reports.len(), 1 + Mutation::ALL.len());
    for r in &reports[1..] {
        let m = r.mutation.unwrap();
        match (&r.counterexample, m.harmless_because()) {
            (Some(c), None) => {
                assert!(!c.violations.is_empty(), "{m:?}");
                assert!(!c.trace.is_empty(), "{m:?}");
                let text = c.to_string();
                assert!(
                    text.contains("broken:") && text.contains("trace:"),
                    "{text}"
                );
            }
            (None, Some(why)) => assert!(r.to_string().contains(why)),
            _ => panic!("{m:?}: {r}"),
        }
    }
    let find = |m: Mutation| {
        reports
            .iter()
            .find(|r| r.mutation == Some(m))
            .and_then(|r| r.counterexample.clone())
            .unwrap()
    };
    // The race the series' comment describes: the handler runs between
    // load's read of the host's PMBSR_EL1 and its clear, and the event
    // is taken twice; one injected event shows it.
    for m in [
        Mutation::NoIrqMaskInLoad,
        Mutation::PmbsrClearedAfterIrqEnable,
    ] {
        let c = find(m);
        assert_eq!(c.script.len(), 1, "{c}");
        assert_eq!(c.script[0].event, Event::HostIrq);
        assert!(c.variant.host_full_at_load);
        assert!(c.violations.iter().any(|v| v.contains("duplicated")), "{c}");
        assert!(c.trace.iter().any(|l| l.contains(">> injected")), "{c}");
    }
    // Without the clear at exit the guest's event stays asserted: a storm.
    let c = find(Mutation::ExitLeavesPmbsr);
    assert!(c.variant.guest_fills);
    assert!(
        c.violations.iter().any(|v| v.contains("interrupt storm")),
        "{c}"
    );
    // Without the host's PMBSR_EL1 back at put, its event is lost.
    let c = find(Mutation::PutSkipsHostPmbsr);
    assert!(c.violations.iter().any(|v| v.contains("lost")), "{c}");
    assert!(c.trace.iter().any(|l| l.contains("LEFT OUT")), "{c}");
}

#[test]
fn mutations_are_named_for_the_command_line() {
    for m in Mutation::ALL {
        assert_eq!(Mutation::from_name(m.name()), Some(m));
    }
    assert_eq!(Mutation::from_name("nope"), None);
}

#[test]
fn on_an_nvhe_host_only_preemption_and_migration_interleave() {
    // The nVHE SPE switch lives in entry and exit, which run with
    // interrupts masked; load and put hold no SPE state, so the only
    // events are the vCPU thread's preemption and migration.
    let r = explore_host(true, None, 2, true);
    assert!(r.counterexample.is_none(), "{r}");
    assert!(r.nvhe && r.to_string().contains("nVHE"));
    // Four starting states, each preempted or migrated at its one point.
    assert_eq!(r.schedules, 4 + 4 * 2, "{r}");
}
