//! The guest profiler (`guests/programs/profiler.c`, `builtin:profiler`)
//! under `hyperprof boot --spe --out DIR`: in every host and PMU set-up
//! its driver samples the workloads, services buffer-full interrupts by
//! handing each full buffer to the VMM and restarting it, and the VMM
//! writes the records as `guest.perf.data` with the image's functions
//! beside it. What the VMM refuses is reported on both sides. (perf's view
//! of the file is checked in tests/perf_tools.rs.)

#[allow(dead_code)] // the perf helpers serve the other end-to-end tests
mod common;

use std::path::Path;
use std::process::Output;

use common::{hyperprof, scratch};
use serde_json::Value;

/// Host and guest PMU set-ups where guest SPE applies (as tests/boot.rs).
const SETUPS: [&[&str]; 5] = [
    &["--pmu", "partitioned"],
    &["--pmu", "emulated"],
    &["--nvhe", "--pmu", "emulated"],
    &["--pmu", "off"],
    &["--nvhe", "--pmu", "off"],
];

/// The workload functions every profile must name.
const WORKLOADS: [&str; 4] = ["copy_words", "hash_lookup", "chase_pointers", "interpret"];

fn boot(dir: &Path, args: &[&str]) -> Output {
    hyperprof()
        .args(["boot", "builtin:profiler", "--spe", "--out"])
        .arg(dir)
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn report(dir: &Path) -> Value {
    let bytes = std::fs::read(dir.join("guest.json")).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// The console's per-CPU line of the profiler for `cpu`, as numbers:
/// pieces, bytes, records, interrupts, truncations, refused bytes,
/// collisions, faults, bad pieces.
fn cpu_line(console: &str, cpu: u64) -> Vec<u64> {
    let prefix = format!("profiler: cpu {cpu}: ");
    let line = console
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no line for cpu {cpu} in\n{console}"));
    line.split_whitespace()
        .filter_map(|w| w.trim_end_matches(',').parse().ok())
        .collect()
}

fn top_names(r: &Value) -> Vec<String> {
    r["top_functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["function"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn every_setup_hands_the_records_over_and_names_the_workloads() {
    for (k, setup) in SETUPS.iter().enumerate() {
        let dir = scratch(&format!("setup-{k}"));
        let o = boot(&dir, setup);
        let (out, err) = (text(&o.stdout), text(&o.stderr));
        let what = format!("{setup:?}");
        assert!(o.status.success(), "{what}: {:?}\n{out}{err}", o.status);
        assert!(err.contains("invariants: all hold"), "{what}: {err}");
        assert!(
            out.contains("false-sharing pair skipped (one vCPU)"),
            "{what}: {out}"
        );
        let r = report(&dir);
        let line = cpu_line(&out, 0);
        let (pieces, bytes, records, irqs) = (line[0], line[1], line[2], line[3]);
        // The 16 KiB buffer filled and wrapped several times; every piece
        // the guest handed over is in the profile, none refused or lost.
        assert!(irqs >= 3, "{what}: {irqs} buffer-full interrupts");
        assert_eq!(pieces, irqs + 1, "{what}: a piece per wrap, and the rest");
        assert_eq!(r["bytes"], bytes, "{what}");
        // The guest decoded, before each hand-over, the records the VMM
        // decodes.
        assert_eq!(r["records"], records, "{what}");
        assert_eq!(&line[4..], [0, 0, 0, 0, 0], "{what}: {out}");
        assert_eq!(r["refused_bytes"], 0, "{what}");
        assert_eq!(r["truncations"], 0, "{what}");
        // Whole records, all of EL1 code in the image's text.
        assert!(records > 1000, "{what}: {records} records");
        assert_eq!(r["undecodable"], 0, "{what}");
        assert_eq!(r["malformed"], serde_json::json!([]), "{what}");
        assert_eq!(r["foreign"], 0, "{what}");
        assert_eq!(r["outside_text"], 0, "{what}");
        assert_eq!(r["stats"]["records"], records, "{what}");
        assert_eq!(r["stats"]["incomplete_records"], 0, "{what}");
        let names = top_names(&r);
        for w in WORKLOADS {
            assert!(names.iter().any(|n| n == w), "{what}: {w} not in {names:?}");
        }
        assert!(!names.iter().any(|n| n == "[unknown]"), "{what}: {names:?}");
        let sum: u64 = r["top_functions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["samples"].as_u64().unwrap())
            .sum();
        assert_eq!(sum, records, "{what}: every record in a function");
        for f in [
            "guest.perf.data",
            "vmlinux-guest.elf",
            "guest.svg",
            "host.perf.data",
        ] {
            assert!(dir.join(f).is_file(), "{what}: {f} missing");
        }
        assert!(
            err.contains(&format!("guest records: {bytes} bytes in {pieces} pieces")),
            "{what}: {err}"
        );
    }
}

#[test]
fn the_same_boot_gives_the_same_profile() {
    let (a, b) = (scratch("same-a"), scratch("same-b"));
    for d in [&a, &b] {
        assert!(boot(d, &["--smp", "2"]).status.success());
    }
    for f in ["guest.perf.data", "guest.json", "guest.svg"] {
        assert_eq!(
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
            "{f} differs between two equal boots"
        );
    }
}

#[test]
fn two_vcpus_run_the_false_sharing_pair_each_with_its_own_queue() {
    let dir = scratch("smp");
    let o = boot(&dir, &["--smp", "2"]);
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert!(o.status.success(), "{out}{err}");
    assert!(
        out.contains("false-sharing pair on 2 vCPUs, counters 60000+60000"),
        "{out}"
    );
    let r = report(&dir);
    let vcpus = r["vcpus"].as_array().unwrap();
    assert_eq!(vcpus.len(), 2);
    for (cpu, v) in vcpus.iter().enumerate() {
        let line = cpu_line(&out, cpu as u64);
        assert_eq!(v["bytes"], line[1], "vCPU {cpu}");
        assert_eq!(v["records"], line[2], "vCPU {cpu}");
        assert!(v["records"].as_u64().unwrap() > 100, "vCPU {cpu}: {v}");
    }
    assert!(top_names(&r).iter().any(|n| n == "bump_counter"));
    assert_eq!(r["outside_text"], 0);

    // The flame graph's stacks are the simulator's walks of the guests'
    // frame pointers: each vCPU's samples hang under its entry point.
    assert_eq!(r["stacks"], "simulator");
    assert_eq!(r["records_with_stacks"], r["records"]);
    let svg = std::fs::read_to_string(dir.join("guest.svg")).unwrap();
    assert!(
        svg.contains("stacks from the simulator") && svg.contains("SPE records none"),
        "the title says where the stacks come from"
    );
    for caller in ["_start (", "main (", "run_copy (", "secondary_main ("] {
        assert!(
            svg.contains(&format!("<title>{caller}")),
            "no {caller} frame"
        );
    }
}

#[test]
fn what_the_vmm_refuses_is_reported_by_both_sides() {
    let dir = scratch("refused");
    let o = boot(&dir, &["--guest-records-limit", "40000"]);
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert!(o.status.success(), "{out}{err}");
    let line = cpu_line(&out, 0);
    let (bytes, records, refused) = (line[1], line[2], line[5]);
    assert!(bytes <= 40000 && refused > 0, "{out}");
    let r = report(&dir);
    assert_eq!(r["bytes"], bytes);
    assert_eq!(r["refused_bytes"], refused);
    assert_eq!(r["records"], records);
    // A piece accepted after a refusal carries the flag.
    assert_eq!(r["truncations"], line[4]);
    assert!(err.contains(&format!("{refused} bytes refused")), "{err}");
    assert_eq!(r["undecodable"], 0, "pieces stay whole records");
}

#[test]
fn without_spe_the_workloads_run_unprofiled() {
    let dir = scratch("no-spe");
    let o = hyperprof()
        .args(["boot", "builtin:profiler", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    let out = text(&o.stdout);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("profiler: no SPE: the workloads run unprofiled"),
        "{out}"
    );
    assert!(!dir.join("guest.perf.data").exists());
    assert!(dir.join("host.perf.data").is_file());
}

#[test]
fn bad_profiler_settings_and_vcpu_counts_are_refused() {
    let dir = scratch("bad");
    let o = boot(&dir, &["--append", "profiler.buffer=5000"]);
    assert!(
        text(&o.stdout).contains("profiler.buffer must be a multiple of 4 KiB"),
        "{}",
        text(&o.stdout)
    );
    assert!(!dir.join("guest.perf.data").exists(), "nothing sampled");
    let o = boot(&dir, &["--smp", "124"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("--smp 124: the board's GICv3 redistributor region"));
}

#[test]
fn a_raw_image_gives_a_profile_with_its_functions_unnamed_and_says_why() {
    let dir = scratch("raw");
    let raw = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../guests/images/profiler.bin");
    let o = hyperprof()
        .arg("boot")
        .arg(&raw)
        .args(["--spe", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("guest profile: functions unnamed: not an ELF64 little-endian AArch64 image"),
        "{err}"
    );
    let r = report(&dir);
    assert_eq!(top_names(&r), ["[unknown]"]);
    assert!(r["records"].as_u64().unwrap() > 1000);
}
