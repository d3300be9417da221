//! Scenarios with VMs that boot real images and VMs that migrate:
//! examples/migration.toml moves a VM's vPMU from partitioned to emulated
//! through one-reg mid-run and its counts and overflow interrupts equal
//! its unmigrated twin's exactly, as the report says; a malformed image a
//! scenario names (not ELF, truncated, segments outside RAM, entry outside
//! the image, an unknown built-in) is one clear line and exit status 2
//! from `run` and `scenario check`, never a panic or a hang.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

#[allow(dead_code)] // the perf helpers serve the other end-to-end tests
mod common;
use common::{hyperprof, ok, scratch};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `hyperprof run FILE --out OUT`, for the caller to add to and run.
fn run_scenario(file: impl AsRef<std::ffi::OsStr>, out: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = hyperprof();
    c.arg("run").arg(file).arg("--out").arg(out);
    c
}

fn report_of(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap()
}

fn vm<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["vms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no VM {name}"))
}

#[test]
fn the_migrated_vm_counts_exactly_as_its_unmigrated_twin() {
    let dir = scratch("migration");
    let out = ok(
        run_scenario(workspace().join("examples/migration.toml"), &dir)
            .output()
            .unwrap(),
        "run migration.toml",
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let report = report_of(&dir);
    let (moved, twin) = (vm(&report, "moved"), vm(&report, "twin"));

    let m = &moved["migrations"].as_array().unwrap()[0];
    assert_eq!(m["round"], 8);
    assert_eq!(
        (m["from"].as_str(), m["to"].as_str()),
        (Some("partitioned"), Some("emulated"))
    );
    assert!(m["registers"].as_u64().unwrap() > 60, "{m}");
    assert_eq!(m["equals_twin"], true);
    assert_eq!(moved["pmu_mode"], "emulated");
    assert_eq!(twin["pmu_mode"], "partitioned");
    assert!(twin["migrations"].is_null());

    // The report's figures themselves, count by count.
    let figures = |v: &Value| -> Vec<(String, u64, u64)> {
        v["pmu"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["event"].as_str().unwrap().to_string(),
                    c["count"].as_u64().unwrap(),
                    c["overflow_interrupts"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(figures(moved), figures(twin));
    assert_eq!(moved["pmu_interrupts"], twin["pmu_interrupts"]);
    assert_eq!(moved["ops"], twin["ops"]);
    // Not a vacuous equality: both counted, and took overflows before and
    // after the move (4 M operations, the move after 0.8 M).
    let overflows: u64 = figures(moved).iter().map(|f| f.2).sum();
    assert!(overflows > 10, "{overflows}");
    assert!(figures(moved).iter().all(|f| f.1 > 0));
    // The emulated destination trapped what the partitioned source did not.
    assert!(
        moved["hypervisor"]["pmu_trap_exits"].as_u64()
            > twin["hypervisor"]["pmu_trap_exits"].as_u64()
    );
    assert!(report["invariants"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["holds"] == true));
    assert!(
        text.contains(
            "migrated at round 8: partitioned -> emulated PMU, 70 registers through one-reg; \
             counts and overflow interrupts equal twin's exactly"
        ),
        "{text}"
    );
}

#[test]
fn a_vm_that_moves_there_and_back_still_counts_as_its_twin() {
    let dir = scratch("round-trip");
    // Every move needs a destination VM's RAM: four VMs of 64 MiB.
    let text = std::fs::read_to_string(workspace().join("examples/migration.toml"))
        .unwrap()
        .replace("ram_mib = 512", "ram_mib = 1024")
        + "\n[[migrate]]\nvm = \"moved\"\nround = 20\npmu = \"partitioned\"\ntwin = \"twin\"\n\
           \n[[migrate]]\nvm = \"moved\"\nround = 30\ntwin = \"twin\"\n";
    let file = dir.join("round-trip.toml");
    std::fs::write(&file, text).unwrap();
    ok(
        run_scenario(&file, dir.join("out")).output().unwrap(),
        "run round-trip",
    );
    let report = report_of(&dir.join("out"));
    let moved = vm(&report, "moved");
    let steps: Vec<(u64, &str, &str, bool)> = moved["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["round"].as_u64().unwrap(),
                m["from"].as_str().unwrap(),
                m["to"].as_str().unwrap(),
                m["equals_twin"].as_bool().unwrap(),
            )
        })
        .collect();
    // A step without `pmu` keeps the mode the VM has when it moves.
    assert_eq!(
        steps,
        [
            (8, "partitioned", "emulated", true),
            (20, "emulated", "partitioned", true),
            (30, "partitioned", "partitioned", true)
        ]
    );
    assert_eq!(moved["pmu_mode"], "partitioned");
    assert_eq!(moved["pmu"], vm(&report, "twin")["pmu"]);
}

#[test]
fn a_migration_after_the_vm_finished_fails_completion() {
    let dir = scratch("late-migration");
    let text = std::fs::read_to_string(workspace().join("examples/migration.toml"))
        .unwrap()
        .replace("round = 8", "round = 500");
    let file = dir.join("late.toml");
    std::fs::write(&file, text).unwrap();
    let out = run_scenario(&file, dir.join("out")).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "an invariant failed");
    let report = report_of(&dir.join("out"));
    let completion = report["invariants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["invariant"].as_str().unwrap().starts_with("completion"))
        .unwrap();
    assert_eq!(completion["holds"], false);
    assert!(
        completion["detail"]
            .as_str()
            .unwrap()
            .contains("moved: the migration of round 500 did not happen"),
        "{completion}"
    );
}

/// A scenario with one VM booting `image` (as written in the file).
fn image_scenario(dir: &Path, image: &str) -> PathBuf {
    let text = format!(
        r#"name = "img"
seed = 1
[run]
guest_ops = 1000
host_ops = 1000
[machine]
host_mode = "vhe"
ram_mib = 512
[[machine.cpus]]
count = 2
[machine.cpus.pmu]
counters = 8
version = "3.5"
[machine.cpus.spe]
[host]
workload = "kernel-mix"
[[vm]]
name = "guest"
ram_mib = 128
image = "{image}"
[vm.spe]
"#
    );
    let file = dir.join("img.toml");
    std::fs::write(&file, text).unwrap();
    file
}

/// `run` and `scenario check` of a scenario naming `image` both fail with
/// status 2 and one line that contains every one of `needles`.
fn refused(dir: &Path, image: &str, needles: &[&str]) {
    let file = image_scenario(dir, image);
    for args in [vec!["run"], vec!["scenario", "check"]] {
        let mut cmd = hyperprof();
        cmd.args(&args).arg(&file);
        if args[0] == "run" {
            cmd.arg("--out").arg(dir.join("out"));
        }
        let out = cmd.output().unwrap();
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?} {image}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: one line: {err}");
        for n in needles {
            assert!(err.contains(n), "{args:?}: {n:?} not in {err}");
        }
        assert!(!err.contains("panicked"), "{err}");
    }
}

fn le64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn malformed_images_are_one_line_and_status_2() {
    let dir = scratch("bad-images");
    let good = std::fs::read(workspace().join("guests/images/spe.elf")).unwrap();

    // Not ELF.
    let p = dir.join("notes.txt");
    std::fs::write(&p, b"just some text\n").unwrap();
    refused(
        &dir,
        p.to_str().unwrap(),
        &["img.toml", "vm[0].image", "notes.txt", "not an ELF file"],
    );

    // Truncated: the program headers cut off.
    let p = dir.join("truncated.elf");
    std::fs::write(&p, &good[..80]).unwrap();
    refused(&dir, p.to_str().unwrap(), &["truncated.elf", "truncated"]);

    // A segment below RAM: the first PT_LOAD's physical address at 0.
    let phoff = u64::from_le_bytes(good[32..40].try_into().unwrap()) as usize;
    let mut b = good.clone();
    le64(&mut b, phoff + 24, 0x1000);
    let p = dir.join("low.elf");
    std::fs::write(&p, &b).unwrap();
    refused(&dir, p.to_str().unwrap(), &["low.elf", "outside"]);

    // The entry point outside every segment.
    let mut b = good.clone();
    le64(&mut b, 24, 0x7000_0000);
    let p = dir.join("entry.elf");
    std::fs::write(&p, &b).unwrap();
    refused(
        &dir,
        p.to_str().unwrap(),
        &[
            "entry.elf",
            "entry point 0x70000000 is outside the loaded image",
        ],
    );

    // Missing, and a directory.
    refused(
        &dir,
        "/nonexistent/x.elf",
        &["/nonexistent/x.elf", "No such file"],
    );
    refused(&dir, dir.to_str().unwrap(), &["not a regular file"]);

    // An unknown built-in lists the known ones.
    refused(
        &dir,
        "builtin:nope",
        &[
            "builtin:nope",
            "builtin:hello",
            "builtin:spe",
            "builtin:spin",
        ],
    );
}

#[test]
fn a_relative_image_path_is_relative_to_the_scenario_and_runs() {
    let dir = scratch("relative");
    std::fs::copy(
        workspace().join("guests/images/hello.elf"),
        dir.join("hello.elf"),
    )
    .unwrap();
    let file = image_scenario(&dir, "hello.elf");
    let out = ok(
        run_scenario(&file, dir.join("out"))
            .current_dir("/")
            .output()
            .unwrap(),
        "run hello.elf",
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("hello.elf: powered-off"), "{text}");
    let report = report_of(&dir.join("out"));
    assert_eq!(vm(&report, "guest")["end"], "powered-off");
    let console = std::fs::read_to_string(dir.join("out/guest.console.txt")).unwrap();
    assert_eq!(
        vm(&report, "guest")["console_bytes"].as_u64(),
        Some(console.len() as u64)
    );
    assert!(console.contains("hello"), "{console}");
}

#[test]
fn an_image_that_never_stops_is_running_at_its_instruction_budget() {
    let dir = scratch("spin");
    let file = image_scenario(&dir, "builtin:spin");
    let text = std::fs::read_to_string(&file).unwrap().replace(
        "image = \"builtin:spin\"",
        "image = \"builtin:spin\"\nmax_insns = 3_000_000",
    );
    std::fs::write(&file, text).unwrap();
    ok(
        run_scenario(&file, dir.join("out")).output().unwrap(),
        "run spin",
    );
    let report = report_of(&dir.join("out"));
    let g = vm(&report, "guest");
    assert_eq!(g["end"], "running");
    assert_eq!(g["ops"], 3_000_000);
}

#[test]
fn an_image_profiles_itself_beside_an_nvhe_host_with_an_emulated_pmu() {
    let dir = scratch("nvhe");
    let out = ok(
        hyperprof()
            .args(["scenario", "print-default"])
            .output()
            .unwrap(),
        "print-default",
    );
    let text = String::from_utf8(out.stdout)
        .unwrap()
        .replace("host_mode = \"vhe\"", "host_mode = \"nvhe\"")
        .replace("mode = \"partitioned\"", "mode = \"emulated\"");
    let file = dir.join("nvhe.toml");
    std::fs::write(&file, text).unwrap();
    ok(
        run_scenario(&file, dir.join("out"))
            .args(["--ops", "1000000"])
            .output()
            .unwrap(),
        "run nvhe",
    );
    let report = report_of(&dir.join("out"));
    assert_eq!(report["host"]["mode"], "nvhe");
    let web = vm(&report, "web");
    assert_eq!(web["pmu_mode"], "emulated");
    assert_eq!(web["end"], "powered-off");
    assert!(web["spe"]["records"].as_u64().unwrap() > 100);
    let image = web["image"]
        .as_str()
        .unwrap()
        .strip_prefix("builtin:")
        .unwrap();
    let functions =
        hyperprof::perf::elf::read_functions(hyperprof::builtin::find(image).unwrap()).unwrap();
    let top = web["spe"]["top_functions"][0]["function"].as_str().unwrap();
    assert!(functions.iter().any(|f| f.name == top), "{top}");
    assert!(report["invariants"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["holds"] == true));
}

#[test]
fn the_vendor_call_checks_what_a_guest_hands_over_and_counts_lost_records() {
    let dir = scratch("handover");
    let file = image_scenario(&dir, "builtin:handover");
    let out = ok(
        run_scenario(&file, dir.join("out")).output().unwrap(),
        "run handover",
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let console = std::fs::read_to_string(dir.join("out/guest.console.txt")).unwrap();
    assert!(
        console.contains("SUMMARY: 5 tests, 0 unexpected failures"),
        "{console}"
    );
    let report = report_of(&dir.join("out"));
    let g = vm(&report, "guest");
    assert_eq!(g["end"], "powered-off");
    assert_eq!(g["truncated_handovers"], 1);
    // No bytes were handed over: an empty profile, nothing unaccounted.
    assert_eq!(g["spe"]["records"], 0);
    assert!(text.contains("; 1 hand-over after lost records"), "{text}");
    assert!(report["invariants"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["holds"] == true));
}
