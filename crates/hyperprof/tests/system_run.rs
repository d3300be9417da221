//! The main job through the command line: the built-in default and every
//! example scenario run and keep their invariants, perf decodes every
//! perf.data they write to the report's record counts, report.json
//! validates against docs/report.schema.json, `hyperprof report` prints the
//! terminal report again byte for byte, and every class of scenario error
//! gets its one-line message and exit status 2.
//!
//! perf is needed for the decode checks: without it they say so and pass,
//! except under CI=true, where `.ci/run` installs it.

use std::path::{Path, PathBuf};

use serde_json::Value;

#[allow(dead_code)] // the guest image and QEMU helpers serve the boot tests
mod common;
use common::{hyperprof, ok, perf_available, perf_report_d, scratch};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn invariants_hold(report: &Value) {
    let inv = report["invariants"].as_array().unwrap();
    assert_eq!(inv.len(), 5);
    for v in inv {
        assert_eq!(v["holds"], true, "{v}");
    }
}

/// Records `perf report -D` decodes from `data`: each ends with a TS or
/// END packet line.
fn perf_records(data: &Path) -> u64 {
    let out = perf_report_d(data);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ARM SPE data"), "perf decoded no SPE data");
    text.lines()
        .filter(|l| l.starts_with(".  ") && (l.contains(" TS ") || l.ends_with(" END")))
        .count() as u64
}

/// perf decodes every perf.data in `dir` to the record count `report`
/// gives its domain.
fn perf_agrees(dir: &Path, report: &Value) {
    if !perf_available() {
        return;
    }
    let mut checked = 0;
    if let Some(spe) = report["host"]["spe"].as_object() {
        assert_eq!(
            perf_records(&dir.join("host.perf.data")),
            spe["records"].as_u64().unwrap()
        );
        checked += 1;
    }
    for vm in report["vms"].as_array().unwrap() {
        if let Some(spe) = vm["spe"].as_object() {
            let name = vm["name"].as_str().unwrap();
            assert_eq!(
                perf_records(&dir.join(format!("{name}.perf.data"))),
                spe["records"].as_u64().unwrap(),
                "{name}"
            );
            checked += 1;
        }
    }
    let files = report["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a.as_str().unwrap().ends_with(".perf.data"))
        .count();
    assert_eq!(checked, files, "every perf.data checked");
}

/// The functions of the built-in image `name` (`builtin:NAME`).
fn builtin_functions(name: &str) -> Vec<String> {
    let bytes = name
        .strip_prefix("builtin:")
        .and_then(hyperprof::builtin::find)
        .unwrap_or_else(|| panic!("{name} is not a built-in image"));
    hyperprof::perf::elf::read_functions(bytes)
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect()
}

#[test]
fn the_default_run_shows_the_whole_system_and_keeps_its_invariants() {
    let cwd = scratch("default");
    // No arguments at all: the main job.
    let out = ok(hyperprof().current_dir(&cwd).output().unwrap(), "hyperprof");
    let text = String::from_utf8(out.stdout).unwrap();
    let dir = cwd.join("hyperprof-out");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    invariants_hold(&report);
    // Heterogeneous CPUs; host SPE and reserved counters; one VM booting
    // a real image with a partitioned PMU and guest SPE, one Rust guest
    // with an emulated PMU without SPE; vCPUs moved.
    let cpus = report["host"]["cpus"].as_array().unwrap();
    assert_eq!(cpus.len(), 4);
    assert_eq!(
        cpus.iter().filter(|c| c["spe_unit"] == true).count(),
        2,
        "two of the four CPUs have SPE"
    );
    assert_eq!(report["host"]["pmu_reserved"], 2);
    assert!(report["host"]["spe"]["records"].as_u64().unwrap() > 1000);
    let vms = report["vms"].as_array().unwrap();
    assert_eq!(vms[0]["pmu_mode"], "partitioned");
    let image = vms[0]["image"].as_str().unwrap();
    assert_eq!(vms[0]["end"], "powered-off");
    // The records the guest's own SPE driver handed over, in its own
    // functions.
    assert!(vms[0]["spe"]["records"].as_u64().unwrap() > 100);
    let top = vms[0]["spe"]["top_functions"][0]["function"]
        .as_str()
        .unwrap();
    assert!(builtin_functions(image).iter().any(|f| f == top), "{top}");
    assert!(vms[0]["hypervisor"]["entries"].as_u64().unwrap() > 10);
    assert_eq!(vms[1]["pmu_mode"], "emulated");
    assert!(vms[1]["spe"].is_null());
    assert!(vms[1]["image"].is_null());
    assert!(vms[1]["hypervisor"]["loads"].as_u64().unwrap() > 10);
    assert!(!vms[1]["pmu"].as_array().unwrap().is_empty());
    let console = std::fs::read_to_string(dir.join("web.console.txt")).unwrap();
    assert_eq!(vms[0]["console_bytes"].as_u64(), Some(console.len() as u64));
    assert!(
        !console.is_empty() && !console.contains("FAIL"),
        "{console}"
    );
    assert!(
        text.contains(&format!("image    {image}: powered-off")),
        "{text}"
    );
    for needle in [
        "top      ",
        "latency  load",
        "pmu      INST_RETIRED",
        "derived  IPC",
        "virtual PMBIRQs",
        "trap exits",
        "per load/put",
        "pinned   peak",
        "ok   exact counts",
        "artifacts in hyperprof-out",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    for file in [
        "host.perf.data",
        "web.perf.data",
        "web.console.txt",
        "vmlinux-web.elf",
        "host.svg",
        "web.svg",
        "db.svg",
        "report.json",
    ] {
        assert!(dir.join(file).is_file(), "{file}");
    }
    let svg = std::fs::read_to_string(dir.join("web.svg")).unwrap();
    assert!(svg.starts_with("<?xml") && svg.contains("<svg") && svg.contains(top));
    perf_agrees(&dir, &report);
    // Deterministic: the same run again gives the same report.
    let again = ok(hyperprof().current_dir(&cwd).output().unwrap(), "hyperprof");
    assert_eq!(again.stdout, text.as_bytes());
}

#[test]
fn every_example_runs_keeps_its_invariants_and_perf_agrees() {
    let mut n = 0;
    for entry in std::fs::read_dir(workspace().join("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let dir = scratch(&format!("example-{stem}"));
        let out = ok(
            hyperprof()
                .arg("run")
                .arg(&path)
                .arg("--json")
                .arg("--out")
                .arg(&dir)
                .output()
                .unwrap(),
            &stem,
        );
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        invariants_hold(&report);
        perf_agrees(&dir, &report);
        let check = ok(
            hyperprof()
                .args(["scenario", "check"])
                .arg(&path)
                .output()
                .unwrap(),
            "scenario check",
        );
        assert!(String::from_utf8_lossy(&check.stdout).contains("VM(s)"));
        n += 1;
    }
    assert!(n >= 3, "{n} examples");
}

#[test]
fn hyperprof_report_prints_the_run_again_byte_for_byte() {
    let dir = scratch("report");
    let run = ok(
        hyperprof()
            .args(["run", "--ops", "4000000", "--out"])
            .arg(&dir)
            .output()
            .unwrap(),
        "run",
    );
    let again = ok(
        hyperprof().arg("report").arg(&dir).output().unwrap(),
        "report",
    );
    assert_eq!(
        String::from_utf8(again.stdout).unwrap(),
        String::from_utf8(run.stdout).unwrap()
    );
    let json = ok(
        hyperprof()
            .arg("report")
            .arg(&dir)
            .arg("--json")
            .output()
            .unwrap(),
        "report --json",
    );
    let file = std::fs::read_to_string(dir.join("report.json")).unwrap();
    let printed = String::from_utf8(json.stdout).unwrap();
    let first_difference = printed.lines().zip(file.lines()).find(|(a, b)| a != b);
    assert_eq!(
        first_difference, None,
        "report --json differs from report.json"
    );
    assert_eq!(printed, file);
    // A directory without a report, and a damaged one: one line, status 2.
    let empty = scratch("report-empty");
    let out = hyperprof().arg("report").arg(&empty).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("report.json"));
    std::fs::write(empty.join("report.json"), "{\"schema_version\": 1,").unwrap();
    let out = hyperprof().arg("report").arg(&empty).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 1 column"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn the_printed_default_is_the_default() {
    let dir = scratch("print-default");
    let text = ok(
        hyperprof()
            .args(["scenario", "print-default"])
            .output()
            .unwrap(),
        "print-default",
    );
    let file = dir.join("default.toml");
    std::fs::write(&file, &text.stdout).unwrap();
    let from_file = ok(
        hyperprof()
            .arg("run")
            .arg(&file)
            .args(["--json", "--out"])
            .arg(dir.join("a"))
            .output()
            .unwrap(),
        "run file",
    );
    let builtin = ok(
        hyperprof()
            .args(["run", "--json", "--out"])
            .arg(dir.join("b"))
            .output()
            .unwrap(),
        "run default",
    );
    let mut a: Value = serde_json::from_slice(&from_file.stdout).unwrap();
    let mut b: Value = serde_json::from_slice(&builtin.stdout).unwrap();
    a["out_dir"] = Value::Null;
    b["out_dir"] = Value::Null;
    assert_eq!(a, b);
}

// --- report.json against its schema ----------------------------------------

/// Checks `v` against the JSON Schema subset docs/report.schema.json uses
/// (type, enum, properties, required, additionalProperties: false, items,
/// minimum, maximum, $ref to #/$defs); returns the first violation.
fn validate(v: &Value, schema: &Value, root: &Value, at: &str) -> Result<(), String> {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r
            .strip_prefix("#/$defs/")
            .ok_or(format!("unsupported $ref {r}"))?;
        return validate(v, &root["$defs"][name], root, at);
    }
    if let Some(t) = schema.get("type") {
        let types: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => return Err(format!("{at}: bad type in schema")),
        };
        let ok = types.iter().any(|t| match *t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "boolean" => v.is_boolean(),
            "null" => v.is_null(),
            "integer" => v.is_u64() || v.is_i64(),
            "number" => v.is_number(),
            _ => false,
        });
        if !ok {
            return Err(format!("{at}: {v} is not {types:?}"));
        }
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array) {
        if !e.contains(v) {
            return Err(format!("{at}: {v} not in {e:?}"));
        }
    }
    if let (Some(min), Some(x)) = (schema.get("minimum").and_then(Value::as_f64), v.as_f64()) {
        if x < min {
            return Err(format!("{at}: {x} below {min}"));
        }
    }
    if let (Some(max), Some(x)) = (schema.get("maximum").and_then(Value::as_f64), v.as_f64()) {
        if x > max {
            return Err(format!("{at}: {x} above {max}"));
        }
    }
    if let Some(obj) = v.as_object() {
        let props = schema.get("properties").and_then(Value::as_object);
        for r in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let key = r.as_str().unwrap_or("");
            if !obj.contains_key(key) {
                return Err(format!("{at}: missing {key}"));
            }
        }
        for (k, x) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(s) => validate(x, s, root, &format!("{at}.{k}"))?,
                None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    return Err(format!("{at}: unexpected key {k}"));
                }
                None => {}
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), v.as_array()) {
        for (i, x) in arr.iter().enumerate() {
            validate(x, items, root, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

#[test]
fn report_json_validates_against_its_schema() {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(workspace().join("docs/report.schema.json")).unwrap(),
    )
    .unwrap();
    let dir = scratch("schema");
    let mut checked = 0;
    let mut runs = vec![vec!["run".to_string(), "--ops".into(), "3000000".into()]];
    for f in [
        "vhe-two-vms.toml",
        "nvhe-guest-spe.toml",
        "emulated-pmu-only.toml",
    ] {
        let path = workspace().join("examples").join(f);
        runs.push(vec!["run".into(), path.display().to_string()]);
    }
    for (i, args) in runs.iter().enumerate() {
        let out_dir = dir.join(i.to_string());
        ok(
            hyperprof()
                .args(args)
                .arg("--out")
                .arg(&out_dir)
                .output()
                .unwrap(),
            "run",
        );
        let report: Value =
            serde_json::from_str(&std::fs::read_to_string(out_dir.join("report.json")).unwrap())
                .unwrap();
        validate(&report, &schema, &schema, "report").unwrap_or_else(|e| panic!("{args:?}: {e}"));
        checked += 1;
        // The validator does fail: an extra key, a wrong type, a bad enum.
        let mut bad = report.clone();
        bad["host"]["surprise"] = Value::from(1);
        assert!(validate(&bad, &schema, &schema, "report").is_err());
        let mut bad = report.clone();
        bad["rounds"] = Value::from("many");
        assert!(validate(&bad, &schema, &schema, "report").is_err());
        let mut bad = report.clone();
        bad["host"]["mode"] = Value::from("hvm");
        assert!(validate(&bad, &schema, &schema, "report").is_err());
    }
    assert_eq!(checked, 4);
}

// --- scenario errors ---------------------------------------------------------

/// Runs `hyperprof run FILE` on `text`; returns its one stderr line.
fn scenario_error(name: &str, text: &str) -> String {
    let dir = scratch(&format!("error-{name}"));
    let file = dir.join(format!("{name}.toml"));
    std::fs::write(&file, text).unwrap();
    let out = hyperprof()
        .arg("run")
        .arg(&file)
        .arg("--out")
        .arg(dir.join("out"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{name}");
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&format!("{name}.toml:")), "{err}");
    assert!(!dir.join("out").exists(), "nothing ran");
    err
}

fn default_text() -> String {
    String::from_utf8(
        ok(
            hyperprof()
                .args(["scenario", "print-default"])
                .output()
                .unwrap(),
            "print-default",
        )
        .stdout,
    )
    .unwrap()
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

#[test]
fn every_class_of_scenario_error_names_file_line_and_field() {
    let base = default_text();
    // Missing field.
    let text = base.replacen("workload = \"kernel-mix\"\n", "", 1);
    let err = scenario_error("missing", &text);
    assert!(
        err.contains("host.workload") && err.contains("missing"),
        "{err}"
    );
    // Wrong type.
    let text = base.replacen("guest_ops = 40_000_000", "guest_ops = \"lots\"", 1);
    let err = scenario_error("wrong-type", &text);
    let line = line_of(&text, "guest_ops = \"lots\"");
    assert!(err.contains(&format!("wrong-type.toml:{line}:")), "{err}");
    assert!(
        err.contains("run.guest_ops") && err.contains("\"lots\""),
        "{err}"
    );
    // Unknown key.
    let text = base.replacen("slice_ops = 200_000", "slice_ops = 200_000\nslices = 3", 1);
    let err = scenario_error("unknown-key", &text);
    let line = line_of(&text, "slices = 3");
    assert!(err.contains(&format!("unknown-key.toml:{line}:")), "{err}");
    assert!(
        err.contains("slices") && err.contains("guest_ops"),
        "lists the accepted keys: {err}"
    );
    // Impossible: a VM maximum buffer size above the SPU's maximum.
    let text = base
        .replacen("version = \"1.2\"", "version = \"1.5\"", 1)
        .replacen("max_buffer_size = 0", "max_buffer_size = 524_288", 1);
    let err = scenario_error("impossible", &text);
    let line = line_of(&text, "max_buffer_size = 1_048_576");
    assert!(err.contains(&format!("impossible.toml:{line}:")), "{err}");
    assert!(err.contains("vm[0].spe.max_buffer_size"), "{err}");
    // Out of range.
    let text = base.replacen("irq = 21", "irq = 40", 1);
    let err = scenario_error("range", &text);
    assert!(
        err.contains("vm[0].spe.irq") && err.contains("16..=31"),
        "{err}"
    );
    // Syntax.
    let err = scenario_error("syntax", &format!("{base}\n[vm\n"));
    assert!(err.contains("syntax.toml:"), "{err}");
    // A file that is not there.
    let out = hyperprof()
        .args(["run", "/nonexistent/x.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/x.toml"));
}
