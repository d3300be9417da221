//! `hyperprof run`: the built-in scenarios through the command line.

use std::process::Command;

fn run(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hyperprof"))
        .arg("run")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn the_report_is_deterministic_and_its_invariants_hold() {
    let a = run(&[
        "--scenario",
        "bare-metal",
        "--cpus",
        "2",
        "--ops",
        "2000000",
        "--seed",
        "5",
        "--json",
    ]);
    let b = run(&[
        "--scenario",
        "bare-metal",
        "--cpus",
        "2",
        "--ops",
        "2000000",
        "--seed",
        "5",
        "--json",
    ]);
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    assert_eq!(a.stdout, b.stdout);
    let r: serde_json::Value = serde_json::from_slice(&a.stdout).unwrap();
    assert_eq!(r["scenario"], "bare-metal");
    assert_eq!(r["cpus"].as_array().unwrap().len(), 2);
    for v in r["invariants"].as_array().unwrap() {
        assert_eq!(v["holds"], true, "{v}");
    }
    let cpu = &r["cpus"][0];
    let spe = &cpu["spe"];
    assert_eq!(spe["written"], spe["records_decoded"]);
    assert!(spe["written"].as_u64().unwrap() > 1000);
    let inst = cpu["pmu"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["event"] == "INST_RETIRED")
        .unwrap();
    assert_eq!(inst["count"], cpu["ops"]);
    assert!(cpu["kernel_cost"]["total"].as_u64().unwrap() > 0);
    let c = run(&[
        "--scenario",
        "bare-metal",
        "--cpus",
        "2",
        "--ops",
        "2000000",
        "--seed",
        "6",
        "--json",
    ]);
    assert_ne!(a.stdout, c.stdout);
}

#[test]
fn the_text_report_names_what_it_measured() {
    let out = run(&[
        "--scenario",
        "bare-metal",
        "--cpus",
        "1",
        "--ops",
        "1000000",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "spe    sampled",
        "buffer-full interrupts",
        "pmu    INST_RETIRED",
        "PMBIRQ",
        "register reads",
        "ok   conservation",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
}

#[test]
fn bad_options_fail_with_one_line() {
    let out = run(&["--scenario", "bare-metal", "--cpus", "0"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("--cpus 0"), "{err}");
    let out = run(&["--scenario", "no-such"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn guest_spe_runs_two_vms_beside_a_profiling_host_and_keeps_its_invariants() {
    let out = run(&["--scenario", "guest-spe", "--ops", "2000000", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["scenario"], "guest-spe");
    for v in r["invariants"].as_array().unwrap() {
        assert_eq!(v["holds"], true, "{v}");
    }
    let vms = r["vms"].as_array().unwrap();
    assert_eq!(vms.len(), 2);
    for vm in vms {
        assert_eq!(vm["ops"], 2_000_000);
        assert!(vm["spe"]["records"].as_u64().unwrap() > 1500, "{vm}");
        assert!(vm["spe_interrupts"].as_u64().unwrap() >= 1, "{vm}");
        assert_eq!(vm["spe_interrupts"], vm["spe"]["buffer_full_interrupts"]);
        assert!(
            vm["hypervisor"]["loads"].as_u64().unwrap() >= 2,
            "the vCPU moved between CPUs"
        );
        let per_trip = vm["hypervisor"]["spe_per_round_trip"].as_f64().unwrap();
        assert!((10.0..=12.0).contains(&per_trip), "{per_trip}");
    }
    let host = r["host"]["cpus"].as_array().unwrap();
    assert!(host.iter().all(|h| h["records"].as_u64().unwrap() > 100));
    let again = run(&["--scenario", "guest-spe", "--ops", "2000000", "--json"]);
    assert_eq!(out.stdout, again.stdout, "deterministic");
    let bad = run(&["--scenario", "guest-spe", "--cpus", "3"]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn guest_spe_nvhe_pays_more_per_round_trip_than_vhe() {
    let per_trip = |scenario: &str| {
        let out = run(&["--scenario", scenario, "--ops", "1000000", "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(r["scenario"], scenario);
        for v in r["invariants"].as_array().unwrap() {
            assert_eq!(v["holds"], true, "{v}");
        }
        r["vms"][0]["hypervisor"]["spe_per_round_trip"]
            .as_f64()
            .unwrap()
    };
    let vhe = per_trip("guest-spe");
    let nvhe = per_trip("guest-spe-nvhe");
    assert!((10.0..=12.0).contains(&vhe), "{vhe}");
    assert!(nvhe > 2.0 * vhe, "nVHE {nvhe} vs VHE {vhe}");
}

#[test]
fn guest_pmu_counts_exactly_in_both_modes_beside_a_counting_host() {
    let out = run(&["--scenario", "guest-pmu", "--ops", "3000000", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["scenario"], "guest-pmu");
    for v in r["invariants"].as_array().unwrap() {
        assert_eq!(v["holds"], true, "{v}");
    }
    let vms = r["vms"].as_array().unwrap();
    let modes: Vec<_> = vms.iter().map(|v| v["pmu_mode"].clone()).collect();
    assert_eq!(modes, ["partitioned", "emulated"]);
    for vm in vms {
        assert_eq!(vm["ops"], 3_000_000);
        let pmu = vm["pmu"].as_array().unwrap();
        assert_eq!(pmu.len(), 6);
        for c in pmu {
            assert_eq!(c["count"], c["expected"], "{c}");
        }
        let inst = pmu.iter().find(|c| c["event"] == "INST_RETIRED").unwrap();
        assert_eq!(inst["count"], 3_000_000);
        let refill = pmu
            .iter()
            .find(|c| c["event"] == "L1D_CACHE_REFILL")
            .unwrap();
        let overflows = refill["overflow_interrupts"].as_u64().unwrap();
        assert_eq!(overflows, refill["count"].as_u64().unwrap() / 100_000);
        assert_eq!(vm["pmu_interrupts"], overflows, "each delivered once");
        let kvm = &vm["hypervisor"];
        assert!(kvm["loads"].as_u64().unwrap() >= 10, "the vCPU moved");
    }
    // The emulated guest exits for every PMU access, the partitioned one
    // only for the trapped registers.
    let exits = |i: usize| vms[i]["hypervisor"]["pmu_trap_exits"].as_u64().unwrap();
    assert!(exits(0) < exits(1), "{} vs {}", exits(0), exits(1));
    let host = &r["host"];
    for c in host["pmu"].as_array().unwrap() {
        assert_eq!(c["count"], c["expected"], "{c}");
    }
    let again = run(&["--scenario", "guest-pmu", "--ops", "3000000", "--json"]);
    assert_eq!(out.stdout, again.stdout, "deterministic");
    let text = run(&["--scenario", "guest-pmu", "--ops", "1000000"]);
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains("partitioned PMU"), "{text}");
    assert!(text.contains("ok   exact counts"), "{text}");
}
