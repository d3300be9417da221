//! Issue 14, cases 6 and 7: `scenario check` accepts exactly what `run`
//! can build, and every run makes progress or fails at once saying why.

use std::path::Path;

use hyperprof::error::Error;
use hyperprof::run::from_scenario::build_checked;
use hyperprof::scenario::Scenario;
use proptest::prelude::*;

fn example(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples")
            .join(name),
    )
    .unwrap()
}

/// The livelock of issue 14 made small: an nVHE host whose INST_RETIRED
/// overflows every 10000 operations (its EL1 filter counts the guests too)
/// and whose own work ends long before the guests'. The overflow that a
/// guest exits for was left pending once the host had no slices left, so
/// every later entry exited at once.
#[test]
fn a_host_interrupt_pending_after_the_host_is_done_does_not_wedge_the_guests() {
    let text = example("nvhe-guest-spe.toml")
        .replace("guest_ops = 20_000_000", "guest_ops = 600_000")
        .replace("host_ops = 5_000_000", "host_ops = 100_000")
        .replace("slice_ops = 200_000", "slice_ops = 100_000")
        .replace("period = 4_000_000", "period = 10_000");
    let s = Scenario::parse(&text, Path::new("wedge.toml")).unwrap();
    let o = build_checked(&s)
        .unwrap()
        .run(&mut |_, _| {})
        .unwrap_or_else(|e| panic!("{e}"));
    for vm in &o.vms {
        assert_eq!(vm.vcpus[0].ops, 300_000 * 2 / vm.vcpus.len() as u64);
    }
    assert!(o.rounds < 100, "{} rounds", o.rounds);
    let irqs: u64 = o.host.iter().map(|h| h.pmu_interrupts).sum();
    assert!(irqs >= 100, "the host took {irqs} PMU interrupts");
}

/// The built-in default with `edit` applied, or the error `scenario check`
/// gives.
fn checked(edit: &dyn Fn(&mut Scenario)) -> Result<hyperprof::run::engine::System, String> {
    let mut s = Scenario::builtin_default();
    edit(&mut s);
    build_checked(&s)
}

#[test]
fn check_refuses_what_run_cannot_build() {
    use hyperprof::scenario::HostMode;
    // An nVHE host under the default's partitioned-PMU VM: the partitioned
    // PMU needs VHE, and check says so with the field's line.
    let e = checked(&|s| s.machine.host_mode = HostMode::Nvhe)
        .err()
        .unwrap();
    assert!(
        e.contains("vm[0].pmu.mode") && e.contains("VHE host"),
        "{e}"
    );
    // nVHE with emulated vPMUs and no host counters reserved: the
    // hypervisor's own vCPU set-up decides, not a rule of the check (it
    // accepts them now, so the run must complete).
    let r = checked(&|s| {
        s.machine.host_mode = HostMode::Nvhe;
        s.host.pmu_reserved_counters = 0;
        s.host.pmu_events.clear();
        for vm in &mut s.vms {
            if let Some(p) = vm.pmu.as_mut() {
                p.mode = hyperprof::scenario::PmuMode::Emulated;
            }
        }
        s.run.guest_ops = 20_000;
        s.run.host_ops = 10_000;
    });
    match r {
        Err(e) => assert!(e.contains("create_vcpu"), "{e}"),
        Ok(system) => {
            if let Err(e) = system.run(&mut |_, _| {}) {
                panic!("nVHE vPMU: check passed, run failed: {e}");
            }
        }
    }
    // Four VMs around the machine's RAM: each size is refused by check or
    // runs (the file's RAM check once passed sizes create_vm refused).
    let mut refused = 0;
    for ram_mib in (96..=136).step_by(4) {
        let r = checked(&|s| {
            s.run.guest_ops = 20_000;
            s.run.host_ops = 10_000;
            let template = s.vms[1].clone();
            s.vms.clear();
            for i in 0..4 {
                let mut vm = template.clone();
                vm.name = format!("vm{i}");
                vm.ram_mib = ram_mib;
                s.vms.push(vm);
            }
        });
        match r {
            Ok(system) => {
                if let Err(e) = system.run(&mut |_, _| {}) {
                    panic!("{ram_mib} MiB: check passed, run failed: {e}");
                }
            }
            Err(e) => {
                assert!(e.contains("RAM") || e.contains("create_vm"), "{e}");
                refused += 1;
            }
        }
    }
    assert!(refused > 0, "the sizes reach past the machine's RAM");
}

#[test]
fn a_wedge_is_a_run_failure_with_status_3() {
    assert_eq!(Error::Run("x".into()).exit_status().code(), 3);
    assert_eq!(hyperprof::run::engine::STALL_ROUNDS, 64);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// check ⇒ run: every scenario `scenario check` accepts runs to the end.
    #[test]
    fn what_check_accepts_runs(
        nvhe in any::<bool>(),
        reserved in 0u8..=3,
        vms in 0usize..=3,
        ram_mib in prop::sample::select(vec![64u64, 256, 512]),
        vcpus in 1u8..=2,
        guest_spe in any::<bool>(),
        pmu in 0u8..=2,
        period in prop::sample::select(vec![0u32, 5_000, 50_000]),
    ) {
        use hyperprof::scenario::{HostMode, PmuMode};
        let mut s = Scenario::builtin_default();
        s.run.guest_ops = 40_000;
        s.run.host_ops = 20_000;
        s.run.slice_ops = 10_000;
        s.run.host_slice_ops = 5_000;
        if nvhe {
            s.machine.host_mode = HostMode::Nvhe;
        }
        s.host.pmu_reserved_counters = reserved;
        if let Some(e) = s.host.pmu_events.first_mut() {
            e.period = (period > 0).then_some(period);
        }
        let template = s.vms[0].clone();
        s.vms.truncate(0);
        for i in 0..vms {
            let mut vm = template.clone();
            vm.name = format!("vm{i}");
            vm.ram_mib = ram_mib;
            vm.vcpus = if guest_spe { 1 } else { u32::from(vcpus) };
            if !guest_spe {
                vm.spe = None;
            }
            match pmu {
                0 => vm.pmu = None,
                1 => if let Some(p) = vm.pmu.as_mut() { p.mode = PmuMode::Emulated; },
                _ => {}
            }
            s.vms.push(vm);
        }
        if let Ok(system) = build_checked(&s) {
            let o = system.run(&mut |_, _| {});
            prop_assert!(o.is_ok(), "check passed but run failed: {}", o.err().unwrap());
        }
    }
}
