//! The profiles hyperprof writes open in the tools performance engineers
//! use: after `hyperprof perf-setup DIR`, `perf report`, `perf script`,
//! `perf mem report` and `perf c2c report` exit 0 on every perf.data of the
//! default run, every example scenario and the bare-metal host, name the
//! workloads' functions, give each function the share of samples
//! hyperprof's own report gives it, and count the samples and events
//! `hyperprof spe stats` counts; `perf report -D` prints the packet lines
//! `hyperprof spe dump` prints.
//!
//! perf runs with HOME set to a scratch folder, so its build-id cache
//! (`~/.debug`) is the test's own. Without perf the checks say so and
//! pass, except under CI=true.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

#[allow(dead_code)] // the guest image and QEMU helpers serve the boot tests
mod common;
use common::{hyperprof, ok, perf_available, perf_report_d, scratch};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// perf with its own build-id cache under `home`.
fn perf(home: &Path) -> Command {
    let mut c = Command::new("perf");
    c.env("HOME", home);
    c
}

fn stdout_of(cmd: &mut Command, what: &str) -> String {
    String::from_utf8(ok(cmd.output().unwrap(), what).stdout).unwrap()
}

/// `perf report` and `perf mem report` rows: the lines that are not
/// comments, split on white space.
fn rows(text: &str) -> Vec<Vec<&str>> {
    text.lines()
        .filter(|l| !l.starts_with('#') && l.contains('%'))
        .map(|l| l.split_whitespace().collect())
        .collect()
}

/// `# Event count (approx.): N` per event of a `perf report --stdio`.
fn event_counts(text: &str) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    let mut event = None;
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("# Samples: ") {
            event = rest.split('\'').nth(1).map(str::to_owned);
        } else if let Some(n) = l.strip_prefix("# Event count (approx.): ") {
            let e = event.take().expect("an event before its count");
            counts.insert(e, n.trim().parse().unwrap());
        }
    }
    counts
}

/// The number after `label` and a colon in a c2c report.
fn c2c_figure(text: &str, label: &str) -> u64 {
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with(label))
        .unwrap_or_else(|| panic!("no {label:?} in\n{text}"));
    line.rsplit(':').next().unwrap().trim().parse().unwrap()
}

fn stats(data: &Path) -> Value {
    let out = ok(
        hyperprof()
            .args(["spe", "stats", "--json"])
            .arg(data)
            .output()
            .unwrap(),
        "spe stats",
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn stat_event(stats: &Value, name: &str) -> u64 {
    stats["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e[0] == name)
        .and_then(|e| e[1].as_u64())
        .unwrap_or_else(|| panic!("no event {name} in spe stats"))
}

/// The SPE packet lines of `perf report -D` (which resolves no symbols:
/// the build-id cache is not touched).
fn perf_packet_lines(data: &Path) -> Vec<String> {
    let out = perf_report_d(data);
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| {
            let b = l.as_bytes();
            b.len() > 12
                && l.starts_with(".  ")
                && b[3..11].iter().all(u8::is_ascii_hexdigit)
                && b[11] == b':'
        })
        .map(str::to_owned)
        .collect()
}

/// What a domain's perf.data must show: its functions' shares (percent)
/// as hyperprof's report gives them (all of them when `complete`), the
/// functions perf must name, and its process names.
struct Expect<'a> {
    functions: Vec<String>,
    shares: Vec<(String, f64)>,
    complete: bool,
    comm: &'a [&'a str],
}

/// Every check of one perf.data file against `spe stats` and `expect`.
fn check_profile(home: &Path, data: &Path, expect: &Expect<'_>) {
    let what = data.display().to_string();
    let st = stats(data);
    let records = st["records"].as_u64().unwrap();
    assert!(records > 0, "{what}: no records");
    let functions: Vec<&str> = expect.functions.iter().map(String::as_str).collect();

    // perf report, one "instructions" sample per record: the shares.
    let text = stdout_of(
        perf(home)
            .args(["report", "--stdio", "--itrace=i1i", "--sort", "sym", "-i"])
            .arg(data),
        "perf report --itrace=i1i",
    );
    assert_eq!(
        event_counts(&text).get("instructions"),
        Some(&records),
        "{what}: perf's samples\n{text}"
    );
    let mut perf_shares = BTreeMap::new();
    for r in rows(&text) {
        // "39.66%  [.] memcpy"
        let pct: f64 = r[0].trim_end_matches('%').parse().unwrap();
        perf_shares.insert(r[2].to_string(), pct);
    }
    for (f, share) in &expect.shares {
        let got = perf_shares
            .get(f)
            .unwrap_or_else(|| panic!("{what}: perf does not name {f}\n{text}"));
        assert!(
            (got - share).abs() <= 0.0051,
            "{what}: {f}: perf {got}% hyperprof {share}%"
        );
    }
    if expect.complete {
        assert_eq!(perf_shares.len(), expect.shares.len(), "{what}\n{text}");
    }

    // perf report with its default events: the event counts of spe stats.
    let text = stdout_of(
        perf(home).args(["report", "--stdio", "-i"]).arg(data),
        "perf report",
    );
    let counts = event_counts(&text);
    let ops = &st["ops"];
    let memory = ops["load"].as_u64().unwrap() + ops["store"].as_u64().unwrap();
    for (perf_event, ours) in [
        ("l1d-miss", stat_event(&st, "l1d-refill")),
        ("l1d-access", stat_event(&st, "l1d-access")),
        ("llc-miss", stat_event(&st, "llc-miss")),
        ("llc-access", stat_event(&st, "llc-access")),
        ("tlb-miss", stat_event(&st, "tlb-walk")),
        ("tlb-access", stat_event(&st, "tlb-access")),
        ("branch-miss", stat_event(&st, "mispredicted")),
        ("remote-access", stat_event(&st, "remote-access")),
        ("memory", memory),
    ] {
        assert_eq!(
            counts.get(perf_event).copied().unwrap_or(0),
            ours,
            "{what}: {perf_event}"
        );
    }

    // perf script: one line per record, each in a named function of the
    // domain's process.
    let text = stdout_of(
        perf(home)
            .args(["script", "--itrace=i1i", "-F", "comm,tid,cpu,ip,sym", "-i"])
            .arg(data),
        "perf script",
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len() as u64, records, "{what}: perf script lines");
    for l in &lines {
        let f: Vec<&str> = l.split_whitespace().collect();
        assert!(expect.comm.contains(&f[0]), "{what}: comm in {l}");
        let sym = f.last().unwrap();
        assert!(
            !expect.complete || functions.contains(sym),
            "{what}: unnamed sample {l}"
        );
    }

    // perf mem report: rows of the memory samples, in named functions.
    let text = stdout_of(
        perf(home)
            .args(["mem", "report", "--stdio", "--sort", "mem,sym", "-i"])
            .arg(data),
        "perf mem report",
    );
    let mem_rows = rows(&text);
    assert_eq!(memory > 0, !mem_rows.is_empty(), "{what}: perf mem rows");
    if !functions.is_empty() {
        assert!(
            mem_rows
                .iter()
                .any(|r| functions.iter().any(|f| r.contains(f))),
            "{what}: perf mem names no function\n{text}"
        );
    }

    // perf c2c report: the loads and stores of spe stats.
    let text = stdout_of(
        perf(home)
            .args(["c2c", "report", "--stdio", "-i"])
            .arg(data),
        "perf c2c report",
    );
    assert_eq!(
        c2c_figure(&text, "Load Operations"),
        ops["load"].as_u64().unwrap(),
        "{what}: c2c loads"
    );
    assert_eq!(
        c2c_figure(&text, "Store Operations"),
        ops["store"].as_u64().unwrap(),
        "{what}: c2c stores"
    );

    // perf report -D: the packet lines of spe dump.
    let perf_lines = perf_packet_lines(data);
    let ours = stdout_of(
        hyperprof().args(["spe", "dump"]).arg(data),
        "hyperprof spe dump",
    );
    let ours: Vec<&str> = ours.lines().collect();
    assert!(!perf_lines.is_empty(), "{what}: perf decoded no packets");
    assert_eq!(perf_lines, ours, "{what}: packet lines differ");
}

/// Runs `perf-setup` on `dir` with the build-id cache under a fresh
/// `dir/home`, and returns that home for the perf commands.
fn perf_setup(dir: &Path) -> PathBuf {
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let text = stdout_of(
        hyperprof().env("HOME", &home).arg("perf-setup").arg(dir),
        "perf-setup",
    );
    assert!(text.starts_with("added "), "{text}");
    home
}

/// Every perf.data of a system run in `dir`, checked against its report.
fn check_system_run(dir: &Path, report: &Value) -> usize {
    let files = report["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a.as_str().unwrap().ends_with(".perf.data"))
        .count();
    if files == 0 {
        return 0;
    }
    let home = perf_setup(dir);
    let shares = |spe: &Value| -> Vec<(String, f64)> {
        spe["top_functions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["function"].as_str().unwrap().to_string(),
                    f["percent"].as_f64().unwrap(),
                )
            })
            .collect()
    };
    let names = |spe: &Value| shares(spe).into_iter().map(|(f, _)| f).collect();
    let mut checked = 0;
    let host = &report["host"];
    if host["spe"].is_object() {
        let comm = [host["workload"].as_str().unwrap()];
        let expect = Expect {
            functions: names(&host["spe"]),
            shares: shares(&host["spe"]),
            complete: true,
            comm: &comm,
        };
        check_profile(&home, &dir.join("host.perf.data"), &expect);
        checked += 1;
    }
    for vm in report["vms"].as_array().unwrap() {
        if vm["spe"].is_object() {
            let comm = [vm["workload"].as_str().unwrap()];
            let expect = Expect {
                functions: names(&vm["spe"]),
                shares: shares(&vm["spe"]),
                complete: true,
                comm: &comm,
            };
            let name = vm["name"].as_str().unwrap();
            check_profile(&home, &dir.join(format!("{name}.perf.data")), &expect);
            checked += 1;
        }
    }
    assert_eq!(checked, files, "every perf.data checked");
    checked
}

fn run_json(args: &[&str], dir: &Path) -> Value {
    let out = ok(
        hyperprof()
            .args(args)
            .arg("--json")
            .arg("--out")
            .arg(dir)
            .output()
            .unwrap(),
        &args.join(" "),
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_default_run_opens_in_perf_report_script_mem_and_c2c() {
    if !perf_available() {
        return;
    }
    let dir = scratch("default");
    let report = run_json(&["run", "--ops", "4000000"], &dir);
    assert_eq!(check_system_run(&dir, &report), 2);
}

#[test]
fn every_example_opens_in_perf_report_script_mem_and_c2c() {
    if !perf_available() {
        return;
    }
    let mut profiles = 0;
    for entry in std::fs::read_dir(workspace().join("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let dir = scratch(&format!("example-{stem}"));
        let report = run_json(&["run", path.to_str().unwrap(), "--ops", "2000000"], &dir);
        profiles += check_system_run(&dir, &report);
        if stem == "false-sharing" {
            false_sharing_shows_in_c2c(&dir);
        }
    }
    assert!(profiles >= 5, "{profiles} profiles");
}

/// The false-sharing example's line is perf c2c's shared cache line, its
/// peer loads the loads the trace says a peer core served.
fn false_sharing_shows_in_c2c(dir: &Path) {
    let data = dir.join("counters.perf.data");
    let tables = dir.join("tables");
    ok(
        hyperprof()
            .args(["spe", "export", "--format", "csv", "-o"])
            .arg(&tables)
            .arg(&data)
            .output()
            .unwrap(),
        "export csv",
    );
    let csv = std::fs::read_to_string(tables.join("counters-ldst.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|c| *c == name).unwrap();
    let (op, source) = (col("op"), col("data_source"));
    let peer_loads = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| f[op] == "LD" && f[source] == "PEER-CPU")
        .count() as u64;
    assert!(peer_loads > 100, "{peer_loads} peer loads");
    let text = stdout_of(
        perf(&dir.join("home"))
            .args(["c2c", "report", "--stdio", "-i"])
            .arg(&data),
        "perf c2c report",
    );
    assert_eq!(c2c_figure(&text, "Total Shared Cache Lines"), 1, "{text}");
    assert_eq!(c2c_figure(&text, "Load HIT Local Peer"), peer_loads);
    assert!(
        text.contains("Peer Snoop") && text.contains("bump_counter"),
        "{text}"
    );
}

#[test]
fn the_bare_metal_host_opens_in_perf_with_every_process_named() {
    if !perf_available() {
        return;
    }
    let dir = scratch("bare-metal");
    ok(
        hyperprof()
            .args([
                "run",
                "--scenario",
                "bare-metal",
                "--ops",
                "1000000",
                "--cpus",
                "2",
                "--out",
            ])
            .arg(&dir)
            .output()
            .unwrap(),
        "bare-metal",
    );
    let home = perf_setup(&dir);
    // The shares are the processes' own (the report gives none): here
    // every process and the kernel must be named.
    let expect = Expect {
        functions: ["memcpy", "lookup", "list_next", "interpret"]
            .iter()
            .map(|f| f.to_string())
            .collect(),
        shares: Vec::new(),
        complete: false,
        comm: &["mix", "pointer-chase", "stream-copy", "branchy"],
    };
    let data = dir.join("host.perf.data");
    let text = stdout_of(
        perf(&home)
            .args([
                "report",
                "--stdio",
                "--itrace=i1i",
                "--sort",
                "comm,dso,sym",
                "-i",
            ])
            .arg(&data),
        "perf report",
    );
    for needle in [
        "stream-copy.elf",
        "pointer-chase.elf",
        "[kernel.kallsyms]",
        "[k] memcpy",
        "[.] list_next",
        "[.] op_add",
    ] {
        assert!(text.contains(needle), "no {needle:?} in\n{text}");
    }
    assert!(!text.contains("[unknown]"), "{text}");
    check_profile(&home, &data, &expect);
}

#[test]
fn exported_raw_buffers_open_in_perf_with_their_contexts() {
    if !perf_available() {
        return;
    }
    let dir = scratch("export");
    let raw = dir.join("t.spe");
    let data = dir.join("t.data");
    ok(
        hyperprof()
            .args(["spe", "synth", "--records", "3000", "-o"])
            .arg(&raw)
            .output()
            .unwrap(),
        "synth",
    );
    ok(
        hyperprof()
            .args(["spe", "export", "--cpu", "1", "-o"])
            .arg(&data)
            .arg(&raw)
            .output()
            .unwrap(),
        "export",
    );
    // The synthetic trace's code is in no file: the samples stay
    // unresolved but carry their process (context) and CPU.
    let expect = Expect {
        functions: Vec::new(),
        shares: Vec::new(),
        complete: false,
        comm: &["context-4242", "context-0"],
    };
    check_profile(&dir, &data, &expect);
    let text = stdout_of(
        perf(&dir)
            .args(["script", "--itrace=i1i", "-F", "comm,cpu", "-i"])
            .arg(&data),
        "perf script",
    );
    assert!(
        text.lines().all(|l| l.trim_end().ends_with("[001]")),
        "{text}"
    );
}

#[test]
fn perf_setup_lists_the_commands_without_perf_and_refuses_empty_dirs() {
    let dir = scratch("setup");
    let out = ok(
        hyperprof()
            .args(["run", "--ops", "100000", "--out"])
            .arg(&dir)
            .output()
            .unwrap(),
        "run",
    );
    // The default's web VM boots an image: its kernel's symbols.
    assert!(String::from_utf8_lossy(&out.stdout).contains("vmlinux-web.elf"));
    let out = ok(
        hyperprof()
            .arg("perf-setup")
            .arg(&dir)
            .args(["--perf", "/nonexistent/perf"])
            .output()
            .unwrap(),
        "perf-setup",
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for f in ["vmlinux-web.elf", "vmlinux-host.elf"] {
        let line = format!(
            "/nonexistent/perf buildid-cache -a {}",
            dir.join(f).display()
        );
        assert!(text.contains(&line), "{line:?} not in\n{text}");
    }
    let empty = scratch("setup-empty");
    let out = hyperprof().arg("perf-setup").arg(&empty).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no symbol files"));
}

#[test]
fn the_demo_profile_names_its_synthetic_functions() {
    if !perf_available() {
        return;
    }
    let dir = scratch("demo");
    ok(
        hyperprof()
            .args(["demo", "--out"])
            .arg(&dir)
            .output()
            .unwrap(),
        "demo",
    );
    let home = perf_setup(&dir);
    let expect = Expect {
        functions: ["parse_request", "hash_insert", "memcpy", "copy_to_user"]
            .iter()
            .map(|f| f.to_string())
            .collect(),
        shares: Vec::new(),
        complete: false,
        comm: &["synth-app", "synth-kernel"],
    };
    let data = dir.join("demo.perf.data");
    check_profile(&home, &data, &expect);
    let text = stdout_of(
        perf(&home)
            .args([
                "report",
                "--stdio",
                "--itrace=i1i",
                "--sort",
                "dso,sym",
                "-i",
            ])
            .arg(&data),
        "perf report",
    );
    for f in &expect.functions {
        assert!(text.contains(&format!("] {f}")), "{f} in\n{text}");
    }
    assert!(
        text.contains("libsynth.so.elf") && !text.contains("[unknown]"),
        "{text}"
    );
}

/// The guest profiler's own perf.data (`hyperprof boot builtin:profiler
/// --spe --out DIR`, the records its driver handed to the VMM), in every
/// host and PMU set-up where guest SPE applies: perf names the workloads'
/// functions with the shares of hyperprof's report of it (guest.json) and
/// counts the events that report counts; with two vCPUs perf c2c finds the
/// line the false-sharing pair shares.
#[test]
fn the_guest_profilers_perf_data_opens_in_perf_report_script_mem_and_c2c() {
    if !perf_available() {
        return;
    }
    let setups: [&[&str]; 5] = [
        &["--pmu", "partitioned", "--smp", "2"],
        &["--pmu", "emulated"],
        &["--nvhe", "--pmu", "emulated"],
        &["--pmu", "off"],
        &["--nvhe", "--pmu", "off"],
    ];
    for (k, setup) in setups.iter().enumerate() {
        let dir = scratch(&format!("guest-profiler-{k}"));
        ok(
            hyperprof()
                .args(["boot", "builtin:profiler", "--spe", "--out"])
                .arg(&dir)
                .args(*setup)
                .output()
                .unwrap(),
            &format!("boot builtin:profiler {setup:?}"),
        );
        check_guest_profile(&dir, setup.contains(&"--smp"));
    }
}

/// The checks of one guest profile in `dir`; `pair`: the false-sharing
/// pair ran on two vCPUs.
fn check_guest_profile(dir: &Path, pair: bool) {
    let home = perf_setup(dir);
    let data = dir.join("guest.perf.data");
    let report: Value =
        serde_json::from_slice(&std::fs::read(dir.join("guest.json")).unwrap()).unwrap();
    let shares: Vec<(String, f64)> = report["top_functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["function"].as_str().unwrap().to_string(),
                f["percent"].as_f64().unwrap(),
            )
        })
        .collect();
    let mut workloads = vec!["copy_words", "hash_lookup", "chase_pointers", "interpret"];
    if pair {
        workloads.push("bump_counter");
    }
    for w in workloads {
        assert!(shares.iter().any(|(f, _)| f == w), "{w} not sampled");
    }
    let expect = Expect {
        functions: shares.iter().map(|(f, _)| f.clone()).collect(),
        shares: shares.clone(),
        complete: true,
        comm: &["profiler"],
    };
    check_profile(&home, &data, &expect);
    // check_profile compared perf's counts with spe stats of the file;
    // hyperprof's report of the guest counts the same.
    let st = stats(&data);
    assert_eq!(report["stats"]["events"], st["events"]);
    assert_eq!(report["stats"]["ops"], st["ops"]);
    assert_eq!(report["records"], st["records"]);
    if pair {
        let text = stdout_of(
            perf(&home)
                .args(["c2c", "report", "--stdio", "-i"])
                .arg(&data),
            "perf c2c report",
        );
        assert_eq!(c2c_figure(&text, "Total Shared Cache Lines"), 1, "{text}");
        assert!(c2c_figure(&text, "Load HIT Local Peer") > 0, "{text}");
        assert!(text.contains("bump_counter"), "{text}");
    }
}
