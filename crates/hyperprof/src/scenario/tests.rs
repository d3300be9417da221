//! Tests of the scenario format: the default and the examples load, and every
//! error class names the right line and field.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use proptest::prelude::*;

use super::*;

/// A small valid scenario the tests change one thing in.
const BASE: &str = r#"name = "t"
seed = 7

[run]
guest_ops = 1000
host_ops = 1000

[machine]
host_mode = "vhe"
ram_mib = 512

[[machine.cpus]]
count = 2
[machine.cpus.pmu]
counters = 6
version = "3.5"
[machine.cpus.spe]

[host]
workload = "kernel-mix"
pmu_reserved_counters = 2

[[vm]]
name = "a"
ram_mib = 64
workload = "mix"
[vm.pmu]
mode = "partitioned"
[vm.spe]
interval = 1024
buffer_kib = 64
"#;

fn parse(text: &str) -> Result<Scenario, ScenarioError> {
    Scenario::parse(text, Path::new("t.toml"))
}

fn err(text: &str) -> ScenarioError {
    match parse(text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e,
    }
}

/// `BASE` with `from` (which must occur once) replaced by `to`.
fn edit(from: &str, to: &str) -> String {
    assert_eq!(BASE.matches(from).count(), 1, "{from:?} in BASE");
    BASE.replacen(from, to, 1)
}

/// 1-based number of the only line of `text` that contains `needle`.
fn line_of(text: &str, needle: &str) -> u32 {
    let lines: Vec<u32> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains(needle))
        .map(|(i, _)| u32::try_from(i + 1).unwrap_or(u32::MAX))
        .collect();
    assert_eq!(lines.len(), 1, "{needle:?} must be on exactly one line");
    lines[0]
}

/// Asserts the error's field and line, that its message is one line naming
/// both, and that it is an impossible configuration whose reason contains
/// `reason`.
fn assert_impossible(e: &ScenarioError, field: &str, line: u32, reason: &str) {
    assert_eq!(e.field, field, "{e}");
    assert_eq!(e.line, Some(line), "{e}");
    let ErrorKind::Impossible { reason: r } = &e.kind else {
        panic!("not an impossible configuration: {e}");
    };
    assert!(r.contains(reason), "{r:?} does not contain {reason:?}");
    let msg = e.to_string();
    assert!(!msg.contains('\n'), "{msg}");
    assert!(msg.starts_with(&format!("t.toml:{line}:")), "{msg}");
    assert!(
        msg.contains(&format!(" {field}: impossible configuration: ")),
        "{msg}"
    );
}

fn assert_out_of_range(e: &ScenarioError, field: &str, line: u32, expected: &str, found: &str) {
    assert_eq!(e.field, field, "{e}");
    assert_eq!(e.line, Some(line), "{e}");
    assert_eq!(
        e.kind,
        ErrorKind::OutOfRange {
            expected: expected.into(),
            found: found.into()
        },
        "{e}"
    );
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!("t.toml:{line}:"))
            && msg.contains(&format!(
                " {field}: value out of range: expected {expected}, found {found}"
            )),
        "{msg}"
    );
}

// --- The default and the examples --------------------------------------------

#[test]
fn builtin_default_parses_and_validates() {
    let s = Scenario::builtin_default();
    assert_eq!(s.name, "default");
    assert_eq!(s.seed, 1);
    assert_eq!(s.validate(), Ok(()));
    assert_eq!(s.cpu_count(), 4);
    assert_eq!(s.machine.host_mode, HostMode::Vhe);
    // Heterogeneous: two CPUs with SPE, two without.
    let spe: Vec<bool> = (0..4)
        .map(|c| s.machine.group_of(c).is_some_and(|g| g.spe.is_some()))
        .collect();
    assert_eq!(spe, [true, true, false, false]);
    // The VM with guest SPE keeps to the SPE CPUs, the other uses all.
    assert_eq!(s.vm_cpus(0), vec![0, 1]);
    assert_eq!(s.vm_cpus(1), vec![0, 1, 2, 3]);
    assert!(s.vms[0].spe.is_some() && s.vms[1].spe.is_none());
    assert_eq!(s.vms.len(), 2);
    assert_eq!(
        s.vms[0].pmu.as_ref().map(|p| p.mode),
        Some(PmuMode::Partitioned)
    );
    assert_eq!(
        s.vms[1].pmu.as_ref().map(|p| p.mode),
        Some(PmuMode::Emulated)
    );
    assert_eq!(s.vm_nr_counters(0), Some(6));
    assert_eq!(s.vm_max_buffer_size(0), Some(1 << 20));
    assert_eq!(s.host.pmu_events[0].period, Some(8_000_000));
    assert_eq!(
        s.host.pmu_events[0].event,
        hyperprof_sim::event::Event::CPU_CYCLES.number()
    );
    // parse() of the text gives the same scenario.
    assert_eq!(parse(Scenario::default_text()), Ok(s));
}

/// Every key of the format, with array indices as `[]`.
const ALL_KEYS: &[&str] = &[
    "name",
    "seed",
    "run.guest_ops",
    "run.host_ops",
    "run.slice_ops",
    "run.host_slice_ops",
    "run.schedule",
    "machine.host_mode",
    "machine.ram_mib",
    "machine.cpus[].count",
    "machine.cpus[].fgt",
    "machine.cpus[].pmu.counters",
    "machine.cpus[].pmu.version",
    "machine.cpus[].pmu.hpmn0",
    "machine.cpus[].spe.version",
    "machine.cpus[].spe.interval_field",
    "machine.cpus[].spe.max_record_log2",
    "machine.cpus[].spe.max_buffer_size",
    "machine.cpus[].spe.align_log2",
    "machine.cpus[].spe.queue_capacity",
    "machine.cpus[].spe.countsize_16bit",
    "machine.cpus[].uarch.line_bytes",
    "machine.cpus[].uarch.l1d_kib",
    "machine.cpus[].uarch.l1d_ways",
    "machine.cpus[].uarch.l1d_latency",
    "machine.cpus[].uarch.l2_kib",
    "machine.cpus[].uarch.l2_ways",
    "machine.cpus[].uarch.l2_latency",
    "machine.cpus[].uarch.llc_kib",
    "machine.cpus[].uarch.llc_ways",
    "machine.cpus[].uarch.llc_latency",
    "machine.cpus[].uarch.tlb_entries",
    "machine.cpus[].uarch.tlb_ways",
    "machine.cpus[].uarch.tlb_walk_latency",
    "machine.cpus[].uarch.branch_entries",
    "machine.cpus[].uarch.return_stack",
    "machine.cpus[].uarch.mispredict_penalty",
    "machine.cpus[].uarch.peer_latency",
    "machine.cpus[].uarch.dram_latency",
    "host.workload",
    "host.pmu_reserved_counters",
    "host.spe.interval",
    "host.spe.buffer_kib",
    "host.pmu_events[].event",
    "host.pmu_events[].el0",
    "host.pmu_events[].el1",
    "host.pmu_events[].el2",
    "host.pmu_events[].period",
    "vm[].name",
    "vm[].ram_mib",
    "vm[].memlock_kib",
    "vm[].workload",
    "vm[].image",
    "vm[].bootargs",
    "vm[].max_insns",
    "vm[].vcpus",
    "vm[].pmu.mode",
    "vm[].pmu.nr_counters",
    "vm[].pmu.irq",
    "vm[].pmu.filter[].action",
    "vm[].pmu.filter[].first_event",
    "vm[].pmu.filter[].count",
    "vm[].pmu.events[].event",
    "vm[].pmu.events[].el0",
    "vm[].pmu.events[].el1",
    "vm[].pmu.events[].el2",
    "vm[].pmu.events[].period",
    "vm[].spe.irq",
    "vm[].spe.max_buffer_size",
];

/// Keys the default cannot set (they do not apply to its VMs, or it has
/// no migration): it documents each in a comment that writes `KEY =`.
const DOCUMENTED_KEYS: &[&str] = &[
    "vm[].seed",
    "vm[].spe.interval",
    "vm[].spe.buffer_kib",
    "migrate[].vm",
    "migrate[].round",
    "migrate[].pmu",
    "migrate[].twin",
];

/// The keys set in `text`, with array indices as `[]`.
fn keys_of(text: &str) -> BTreeSet<String> {
    let tree = match DeTable::parse(text) {
        Ok(t) => t,
        Err(e) => panic!("{e}"),
    };
    let mut out = BTreeSet::new();
    for e in SpanIndex::new(&tree).entries {
        if e.key.is_none() {
            continue;
        }
        let mut p = String::new();
        let mut in_index = false;
        for c in e.path.chars() {
            match c {
                '[' => {
                    in_index = true;
                    p.push('[');
                }
                ']' => {
                    in_index = false;
                    p.push(']');
                }
                _ if in_index => {}
                _ => p.push(c),
            }
        }
        out.insert(p);
    }
    out
}

#[test]
fn default_text_sets_and_documents_every_key() {
    let text = Scenario::default_text();
    let keys = keys_of(text);
    for k in ALL_KEYS {
        assert!(keys.contains(*k), "the default does not set {k}");
    }
    for k in DOCUMENTED_KEYS {
        let leaf = k.rsplit('.').next().unwrap_or(k);
        let leaf = leaf.rsplit(']').next().unwrap_or(leaf);
        assert!(
            text.lines()
                .any(|l| l.starts_with('#') && l.contains(&format!("{leaf} ="))),
            "the default does not document {k}"
        );
        assert!(!keys.contains(*k), "the default sets {k}");
    }
    // Nothing else but the tables that hold them.
    for k in &keys {
        let is_key = ALL_KEYS.contains(&k.as_str());
        let is_table = ALL_KEYS
            .iter()
            .any(|a| a.starts_with(&format!("{k}.")) || a.starts_with(&format!("{k}[")));
        assert!(is_key || is_table, "unexpected key {k}");
    }
    // Every key has a comment: the line above the first line setting it is
    // a comment, or the key shares its comment with the key before it (the
    // el0/el1/el2 triple).
    let lines: Vec<&str> = text.lines().collect();
    for k in ALL_KEYS {
        let leaf = k.rsplit('.').next().unwrap_or(k);
        let first = lines
            .iter()
            .position(|l| l.starts_with(&format!("{leaf} =")))
            .unwrap_or_else(|| panic!("{leaf} not set at the start of a line"));
        let above = lines[..first]
            .iter()
            .rev()
            .find(|l| !(l.starts_with("el0 =") || l.starts_with("el1 =")))
            .copied()
            .unwrap_or("");
        assert!(above.starts_with('#'), "{k} has no comment above it");
    }
    // The documented event names are the machine's.
    for name in pmu_event_names() {
        assert!(
            text.contains(&name),
            "the default does not name event {name}"
        );
    }
    for w in NAMES {
        assert!(
            text.contains(&format!("\"{w}\"")),
            "workload {w} not listed"
        );
    }
}

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
}

#[test]
fn examples_parse_and_validate() {
    let two = Scenario::load(&example("vhe-two-vms.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(two.machine.host_mode, HostMode::Vhe);
    assert_eq!(two.vms.len(), 2);
    assert_eq!(two.run.schedule, Schedule::Pinned);
    assert_eq!(two.validate(), Ok(()));

    let nvhe = Scenario::load(&example("nvhe-guest-spe.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(nvhe.machine.host_mode, HostMode::Nvhe);
    assert!(nvhe.vms.iter().all(|v| v.spe.is_some() && v.pmu.is_none()));
    assert_eq!(nvhe.validate(), Ok(()));

    let emu = Scenario::load(&example("emulated-pmu-only.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert!(emu.machine.cpus.iter().all(|g| g.spe.is_none()));
    assert!(emu.host.spe.is_none());
    assert!(emu
        .vms
        .iter()
        .all(|v| v.spe.is_none() && v.pmu.as_ref().map(|p| p.mode) == Some(PmuMode::Emulated)));
    assert_eq!(emu.validate(), Ok(()));
}

#[test]
fn base_is_valid_and_fills_defaults() {
    let s = parse(BASE).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.run.slice_ops, 200_000);
    assert_eq!(s.run.host_slice_ops, 50_000);
    assert_eq!(s.run.schedule, Schedule::Rotate);
    let g = &s.machine.cpus[0];
    assert!(g.fgt);
    assert!(!g.pmu.hpmn0);
    let spe = g.spe.as_ref().map(SpeUnitSpec::spe_config);
    let want = SpeConfig::default();
    assert_eq!(spe, Some(want));
    let vm = &s.vms[0];
    assert_eq!(vm.vcpus, 1);
    assert_eq!(vm.memlock_kib, None);
    assert_eq!(vm.memlock_bytes(), u64::MAX);
    let pmu = vm.pmu.as_ref().map(|p| (p.irq, p.nr_counters));
    assert_eq!(pmu, Some((DEFAULT_PMU_IRQ, None)));
    assert_eq!(vm.spe.as_ref().map(|p| p.irq), Some(DEFAULT_SPE_IRQ));
    assert_eq!(s.vm_nr_counters(0), Some(4));
    assert_eq!(s.vm_max_buffer_size(0), Some(0));
    assert!(s.host.pmu_events.is_empty());
}

// --- Parse errors --------------------------------------------------------------

#[test]
fn syntax_error_names_line_column_and_key() {
    let text = edit("host_ops = 1000", "host_ops = = 1000");
    let e = err(&text);
    let line = line_of(&text, "host_ops = =");
    assert_eq!(e.line, Some(line));
    assert_eq!(e.column, Some(12));
    assert_eq!(e.field, "run.host_ops");
    assert!(matches!(e.kind, ErrorKind::Syntax { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!(
            "t.toml:{line}:12: run.host_ops: TOML syntax error: "
        )),
        "{msg}"
    );
    assert!(!msg.contains('\n'));

    // A duplicate key is a syntax error too.
    let text = edit("seed = 7", "seed = 7\nseed = 8");
    let e = err(&text);
    assert!(matches!(e.kind, ErrorKind::Syntax { .. }), "{e}");
    assert_eq!(e.line, Some(3));
    assert!(e.to_string().contains("duplicate key"), "{e}");
}

#[test]
fn missing_key_names_its_table_line_and_path() {
    let text = edit("workload = \"mix\"\n", "");
    let e = err(&text);
    assert_eq!(e.kind, ErrorKind::MissingKey);
    assert_eq!(e.field, "vm[0].workload");
    assert_eq!(e.line, Some(line_of(&text, "[[vm]]")));
    let msg = e.to_string();
    assert_eq!(
        msg,
        format!(
            "t.toml:{}:1: vm[0].workload: missing required key",
            line_of(&text, "[[vm]]")
        )
    );

    // In a nested table.
    let text = edit("counters = 6\n", "");
    let e = err(&text);
    assert_eq!(e.kind, ErrorKind::MissingKey);
    assert_eq!(e.field, "machine.cpus[0].pmu.counters");
    assert_eq!(e.line, Some(line_of(&text, "[machine.cpus.pmu]")));

    // A missing top-level table is reported at the top of the file.
    let text = edit(
        "[host]\nworkload = \"kernel-mix\"\npmu_reserved_counters = 2\n",
        "",
    );
    let e = err(&text);
    assert_eq!(e.kind, ErrorKind::MissingKey);
    assert_eq!(e.field, "host");
    assert_eq!(e.line, Some(1));
}

/// The brief's example: line 14, `vm[1].pmu.nr_counters`, a string.
#[test]
fn wrong_type_names_line_field_expected_and_found() {
    let text = r#"name = "x"
seed = 1
run = { guest_ops = 1, host_ops = 1 }
machine = { host_mode = "vhe", ram_mib = 512, cpus = [{ count = 1, pmu = { counters = 6, version = "3.5" } }] }
host = { workload = "kernel-mix" }
[[vm]]
name = "a"
ram_mib = 64
workload = "mix"
[[vm]]
name = "b"
ram_mib = 64
[vm.pmu]
nr_counters = "four"
"#;
    let e = err(text);
    assert_eq!(
        e.to_string(),
        "t.toml:14:15: vm[1].pmu.nr_counters: wrong type: expected an integer in 0..=31, \
         found \"four\""
    );
    assert_eq!(
        e.kind,
        ErrorKind::WrongType {
            expected: "an integer in 0..=31".into(),
            found: "\"four\"".into()
        }
    );

    // A table where a value belongs, and a value where a table belongs.
    let e = err(&edit("count = 2", "count = { n = 2 }"));
    assert_eq!(e.field, "machine.cpus[0].count");
    assert!(
        matches!(&e.kind, ErrorKind::WrongType { found, .. } if found == "a table"),
        "{e}"
    );
    let text = edit("[run]\n", "run = 5\n[xrun]\n");
    let e = err(&text);
    assert_eq!(e.field, "run");
    assert_eq!(e.line, Some(line_of(&text, "run = 5")));
    assert_eq!(
        e.kind,
        ErrorKind::WrongType {
            expected: "a table".into(),
            found: "5".into()
        }
    );
    // A keyword given as a number, a flag as a string.
    let e = err(&edit("version = \"3.5\"", "version = 3.5"));
    assert_eq!(e.field, "machine.cpus[0].pmu.version");
    assert!(
        e.to_string()
            .ends_with("wrong type: expected one of \"3.0\", \"3.1\", \"3.4\", \"3.5\", \"3.7\", \"3.8\", \"3.9\", found 3.5"),
        "{e}"
    );
    let e = err(&edit("seed = 7", "seed = 1979-05-27"));
    assert_eq!(e.line, Some(2));
    assert_eq!(
        e.kind,
        ErrorKind::WrongType {
            expected: "a non-negative integer".into(),
            found: "a datetime (1979-05-27)".into()
        }
    );
    let e = err(&edit("count = 2", "count = 2\nfgt = \"yes\""));
    assert_eq!(e.field, "machine.cpus[0].fgt");
    assert_eq!(
        e.kind,
        ErrorKind::WrongType {
            expected: "a boolean".into(),
            found: "\"yes\"".into()
        }
    );
}

#[test]
fn unknown_key_lists_the_accepted_keys() {
    let text = edit(
        "mode = \"partitioned\"",
        "mode = \"partitioned\"\nbogus = 1",
    );
    let e = err(&text);
    assert_eq!(e.field, "vm[0].pmu.bogus");
    assert_eq!(e.line, Some(line_of(&text, "bogus")));
    assert_eq!(
        e.kind,
        ErrorKind::UnknownKey {
            key: "bogus".into(),
            accepted: ["mode", "nr_counters", "irq", "filter", "events"]
                .map(String::from)
                .to_vec(),
        }
    );
    assert_eq!(
        e.to_string(),
        format!(
            "t.toml:{}:1: vm[0].pmu.bogus: unknown key \"bogus\"; accepted keys here: mode, \
             nr_counters, irq, filter, events",
            line_of(&text, "bogus")
        )
    );

    // At the top level, and a misspelt table.
    let text = edit("seed = 7", "seed = 7\nseeds = 8");
    let e = err(&text);
    assert_eq!(e.field, "seeds");
    assert_eq!(e.line, Some(3));
    assert!(
        e.to_string().ends_with(
            "unknown key \"seeds\"; accepted keys here: name, seed, run, machine, host, vm, migrate"
        ),
        "{e}"
    );
    let text = edit("[vm.spe]", "[vm.sep]");
    let e = err(&text);
    assert_eq!(e.field, "vm[0].sep");
    assert_eq!(e.line, Some(line_of(&text, "[vm.sep]")));
    assert!(
        matches!(&e.kind, ErrorKind::UnknownKey { accepted, .. } if accepted.contains(&"spe".to_string()))
    );
}

#[test]
fn out_of_range_values_name_the_range() {
    let text = edit("mode = \"partitioned\"", "mode = \"partitioned\"\nirq = 40");
    assert_out_of_range(
        &err(&text),
        "vm[0].pmu.irq",
        line_of(&text, "irq = 40"),
        "an integer in 16..=31",
        "40",
    );
    let text = edit("counters = 6", "counters = 32");
    assert_out_of_range(
        &err(&text),
        "machine.cpus[0].pmu.counters",
        line_of(&text, "counters = 32"),
        "an integer in 0..=31",
        "32",
    );
    let text = edit("seed = 7", "seed = -7");
    assert_out_of_range(&err(&text), "seed", 2, "a non-negative integer", "-7");
    let text = edit("mode = \"partitioned\"", "mode = \"partitionned\"");
    assert_out_of_range(
        &err(&text),
        "vm[0].pmu.mode",
        line_of(&text, "partitionned"),
        "one of \"partitioned\", \"emulated\"",
        "\"partitionned\"",
    );
    let text = edit("interval = 1024", "interval = 1000");
    assert_out_of_range(
        &err(&text),
        "vm[0].spe.interval",
        line_of(&text, "interval = 1000"),
        "a multiple of 256 in 256..=4294967040",
        "1000",
    );
    let text = edit("buffer_kib = 64", "buffer_kib = 6");
    assert_out_of_range(
        &err(&text),
        "vm[0].spe.buffer_kib",
        line_of(&text, "buffer_kib = 6"),
        "a multiple of 4 in 4..=1073741824",
        "6",
    );
    let text = edit(
        "[machine.cpus.spe]",
        "[machine.cpus.spe]\ninterval_field = 1",
    );
    assert_out_of_range(
        &err(&text),
        "machine.cpus[0].spe.interval_field",
        line_of(&text, "interval_field"),
        "a PMSIDR_EL1.INTERVAL encoding: 0 or 2..=8",
        "1",
    );
    let text = edit(
        "[vm.spe]",
        "[[vm.pmu.events]]\nevent = \"cpu_cylces\"\n[vm.spe]",
    );
    let e = err(&text);
    assert_eq!(e.field, "vm[0].pmu.events[0].event");
    assert_eq!(e.line, Some(line_of(&text, "cpu_cylces")));
    assert!(
        matches!(&e.kind, ErrorKind::OutOfRange { expected, found }
            if found == "\"cpu_cylces\"" && expected.contains("cpu_cycles, ")),
        "{e}"
    );
    let text = edit("[vm.spe]", "[[vm.pmu.events]]\nevent = 0x10000\n[vm.spe]");
    let e = err(&text);
    assert_eq!(e.field, "vm[0].pmu.events[0].event");
    assert!(
        matches!(&e.kind, ErrorKind::OutOfRange { found, .. } if found == "65536"),
        "{e}"
    );
}

#[test]
fn zero_ops_slices_and_cpus_are_out_of_range() {
    for (from, to, field) in [
        ("guest_ops = 1000", "guest_ops = 0", "run.guest_ops"),
        ("host_ops = 1000", "host_ops = 0", "run.host_ops"),
        (
            "host_ops = 1000",
            "host_ops = 1000\nslice_ops = 0",
            "run.slice_ops",
        ),
        (
            "host_ops = 1000",
            "host_ops = 1000\nhost_slice_ops = 0",
            "run.host_slice_ops",
        ),
    ] {
        let text = edit(from, to);
        let e = err(&text);
        assert_out_of_range(
            &e,
            field,
            line_of(&text, to.lines().last().unwrap_or(to)),
            "a positive integer",
            "0",
        );
    }
    let text = edit("count = 2", "count = 0");
    assert_out_of_range(
        &err(&text),
        "machine.cpus[0].count",
        line_of(&text, "count = 0"),
        "an integer in 1..=64",
        "0",
    );
    let text = edit("workload = \"mix\"", "workload = \"mix\"\nvcpus = 0");
    assert_out_of_range(
        &err(&text),
        "vm[0].vcpus",
        line_of(&text, "vcpus"),
        "an integer in 1..=64",
        "0",
    );
}

// --- Validation ------------------------------------------------------------------

#[test]
fn a_machine_without_cpus_is_impossible() {
    let text = r#"name = "t"
seed = 7
[run]
guest_ops = 1000
host_ops = 1000
[machine]
host_mode = "vhe"
ram_mib = 512
cpus = []
[host]
workload = "kernel-mix"
"#;
    assert_impossible(&err(text), "machine.cpus", 9, "the machine has no CPUs");
    // And more than 64 in all.
    let text = edit("count = 2", "count = 40");
    let text = text.replacen(
        "[host]",
        "[[machine.cpus]]\ncount = 40\n[machine.cpus.pmu]\ncounters = 6\nversion = \"3.5\"\n\n[host]",
        1,
    );
    assert_impossible(
        &err(&text),
        "machine.cpus",
        12,
        "the groups have 80 CPUs in all",
    );
}

#[test]
fn cpu_groups_must_agree_on_the_pmu() {
    let second = "[[machine.cpus]]\ncount = 2\n[machine.cpus.pmu]\ncounters = 4\nversion = \"3.5\"\n\n[host]";
    let text = BASE.replacen("[host]", second, 1);
    assert_impossible(
        &err(&text),
        "machine.cpus[1].pmu.counters",
        line_of(&text, "counters = 4"),
        "CPU groups with different PMUs are not supported",
    );
    let second = "[[machine.cpus]]\ncount = 2\n[machine.cpus.pmu]\ncounters = 6\nversion = \"3.1\"\n\n[host]";
    let text = BASE.replacen("[host]", second, 1);
    assert_impossible(
        &err(&text),
        "machine.cpus[1].pmu.version",
        line_of(&text, "\"3.1\""),
        "not supported",
    );
}

#[test]
fn machine_spe_max_buffer_size_needs_v1p5_and_a_representable_size() {
    let text = edit(
        "[machine.cpus.spe]",
        "[machine.cpus.spe]\nmax_buffer_size = 1048576",
    );
    assert_impossible(
        &err(&text),
        "machine.cpus[0].spe.max_buffer_size",
        line_of(&text, "max_buffer_size"),
        "from SPE version 1.5",
    );
    let text = edit(
        "[machine.cpus.spe]",
        "[machine.cpus.spe]\nversion = \"1.5\"\nmax_buffer_size = 5000",
    );
    assert_impossible(
        &err(&text),
        "machine.cpus[0].spe.max_buffer_size",
        line_of(&text, "max_buffer_size"),
        "5000 bytes cannot be represented in PMBIDR_EL1.MaxBuffSize; the nearest representable \
         sizes are 4096 and 8192",
    );
    // 4 MiB + 4 KiB: from 4 MiB on the granule is 8 KiB.
    let text = edit(
        "[machine.cpus.spe]",
        "[machine.cpus.spe]\nversion = \"1.5\"\nmax_buffer_size = 4198400",
    );
    assert_impossible(
        &err(&text),
        "machine.cpus[0].spe.max_buffer_size",
        line_of(&text, "max_buffer_size"),
        "nearest representable sizes are 4194304 and 4202496",
    );
    // Representable with v1.5: valid (2 MiB + 4 KiB still has a 4 KiB
    // granule).
    for size in [4202496, 2101248] {
        let text = edit(
            "[machine.cpus.spe]",
            &format!("[machine.cpus.spe]\nversion = \"1.5\"\nmax_buffer_size = {size}"),
        );
        let s = parse(&text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            s.machine.cpus[0].spe.as_ref().map(|u| u.max_buffer_size),
            Some(size)
        );
    }
}

#[test]
fn spe_align_may_not_exceed_the_record_size() {
    let text = edit("[machine.cpus.spe]", "[machine.cpus.spe]\nalign_log2 = 7");
    assert_impossible(
        &err(&text),
        "machine.cpus[0].spe.align_log2",
        line_of(&text, "align_log2"),
        "cannot exceed PMSIDR_EL1.MaxSize",
    );
}

#[test]
fn unknown_or_misplaced_workloads_are_rejected() {
    let text = edit("workload = \"mix\"", "workload = \"mixx\"");
    assert_out_of_range(
        &err(&text),
        "vm[0].workload",
        line_of(&text, "mixx"),
        "a user-space workload (stream-copy, array-sum, pointer-chase, branchy, mix, \
         false-sharing)",
        "\"mixx\"",
    );
    let text = edit("workload = \"kernel-mix\"", "workload = \"mix\"");
    assert_out_of_range(
        &err(&text),
        "host.workload",
        20,
        "a kernel workload (kernel-stream-copy, kernel-array-sum, kernel-pointer-chase, \
         kernel-branchy, kernel-mix, kernel-false-sharing)",
        "\"mix\"",
    );
}

#[test]
fn names_must_be_unique_and_well_formed() {
    let text = BASE.to_string() + "\n[[vm]]\nname = \"a\"\nram_mib = 64\nworkload = \"branchy\"\n";
    let e = err(&text);
    let line = text
        .lines()
        .enumerate()
        .filter(|(_, l)| *l == "name = \"a\"")
        .map(|(i, _)| u32::try_from(i + 1).unwrap_or(0))
        .last();
    assert_eq!(line.map(|l| l > 20), Some(true));
    assert_impossible(
        &e,
        "vm[1].name",
        line.unwrap_or(0),
        "vm[0] is already named \"a\"",
    );

    let text = edit("name = \"t\"", "name = \"a b\"");
    assert_out_of_range(
        &err(&text),
        "name",
        1,
        "a name of 1 to 64 ASCII letters, digits, '-', '_' or '.'",
        "\"a b\"",
    );
}

#[test]
fn host_reservation_is_at_most_the_counters() {
    let text = edit("pmu_reserved_counters = 2", "pmu_reserved_counters = 7");
    assert_impossible(
        &err(&text),
        "host.pmu_reserved_counters",
        line_of(&text, "pmu_reserved_counters"),
        "the host reserves 7 counters but the PMU has 6",
    );
}

#[test]
fn a_partitioned_pmu_needs_a_vhe_host() {
    let text = edit("host_mode = \"vhe\"", "host_mode = \"nvhe\"");
    assert_impossible(
        &err(&text),
        "vm[0].pmu.mode",
        line_of(&text, "mode = \"partitioned\""),
        "a partitioned PMU needs a VHE host",
    );
    let emu = Scenario::load(&example("nvhe-emulated-pmu.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(emu.machine.host_mode, HostMode::Nvhe);
    assert_eq!(
        emu.vms[0].pmu.as_ref().map(|p| p.mode),
        Some(PmuMode::Emulated)
    );
    assert_eq!(emu.validate(), Ok(()));
}

#[test]
fn vm_nr_counters_is_bounded_in_both_modes() {
    let text = edit(
        "mode = \"partitioned\"",
        "mode = \"partitioned\"\nnr_counters = 5",
    );
    assert_impossible(
        &err(&text),
        "vm[0].pmu.nr_counters",
        line_of(&text, "nr_counters"),
        "5 counters requested but the VM may have at most 4 (counters 6 - pmu_reserved_counters 2)",
    );
    let text = edit(
        "mode = \"partitioned\"",
        "mode = \"emulated\"\nnr_counters = 5",
    );
    assert_impossible(
        &err(&text),
        "vm[0].pmu.nr_counters",
        line_of(&text, "nr_counters"),
        "at most 4",
    );
    let text = edit(
        "mode = \"partitioned\"",
        "mode = \"emulated\"\nnr_counters = 4",
    );
    assert!(parse(&text).is_ok());
}

#[test]
fn partitioning_with_no_guest_counters_needs_hpmn0() {
    let text = edit("pmu_reserved_counters = 2", "pmu_reserved_counters = 6");
    assert_impossible(
        &err(&text),
        "vm[0].pmu.mode",
        line_of(&text, "mode = \"partitioned\""),
        "needs FEAT_HPMN0",
    );
    // With FEAT_HPMN0 the guest may have no counters.
    let text = text.replacen("version = \"3.5\"", "version = \"3.5\"\nhpmn0 = true", 1);
    let s = parse(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.vm_nr_counters(0), Some(0));
    // Emulated needs no HPMN.
    let text = edit("pmu_reserved_counters = 2", "pmu_reserved_counters = 6").replacen(
        "\"partitioned\"",
        "\"emulated\"",
        1,
    );
    assert!(parse(&text).is_ok());
}

#[test]
fn irqs_must_be_distinct_ppis() {
    let text = edit("interval = 1024", "irq = 23\ninterval = 1024");
    assert_impossible(
        &err(&text),
        "vm[0].spe.irq",
        line_of(&text, "irq = 23"),
        "PPI 23 is already the VM's PMU interrupt (vm[0].pmu.irq)",
    );
    // Left-out irqs are 23 and 21: fine (BASE). An SPE irq outside the PPIs:
    let text = edit("interval = 1024", "irq = 15\ninterval = 1024");
    assert_out_of_range(
        &err(&text),
        "vm[0].spe.irq",
        line_of(&text, "irq = 15"),
        "an integer in 16..=31",
        "15",
    );
}

#[test]
fn host_events_fit_the_reservation_when_a_vm_has_a_vpmu() {
    let events = "[[host.pmu_events]]\nevent = \"cpu_cycles\"\n[[host.pmu_events]]\nevent = \"inst_retired\"\n[[host.pmu_events]]\nevent = 0x13\n\n[[vm]]";
    let text = edit("[[vm]]", events);
    assert_impossible(
        &err(&text),
        "host.pmu_events[2]",
        line_of(&text, "event = 0x13") - 1,
        "3 events need 3 counters but there are 2: a VM has a vPMU",
    );
    // Without a vPMU the host has every counter.
    let text = text.replacen("[vm.pmu]\nmode = \"partitioned\"\n", "", 1);
    assert!(parse(&text).is_ok());
}

#[test]
fn guest_events_fit_the_vms_counters() {
    let events = "nr_counters = 1\n[[vm.pmu.events]]\nevent = \"cpu_cycles\"\n[[vm.pmu.events]]\nevent = \"l1d_cache\"\n[vm.spe]";
    let text = edit("[vm.spe]", events);
    assert_impossible(
        &err(&text),
        "vm[0].pmu.events[1]",
        line_of(&text, "l1d_cache") - 1,
        "2 events need 2 counters but there are 1: the VM has 1 counters",
    );
}

#[test]
fn event_numbers_and_filters_must_fit_the_pmu_version() {
    let text = edit("version = \"3.5\"", "version = \"3.0\"").replacen(
        "[vm.spe]",
        "[[vm.pmu.events]]\nevent = 0x4000\n[vm.spe]",
        1,
    );
    assert_impossible(
        &err(&text),
        "vm[0].pmu.events[0].event",
        line_of(&text, "0x4000"),
        "needs 16-bit event numbers",
    );
    let filter = "[[vm.pmu.filter]]\naction = \"deny\"\nfirst_event = 1000\ncount = 100\n[vm.spe]";
    let text = edit("version = \"3.5\"", "version = \"3.0\"").replacen("[vm.spe]", filter, 1);
    assert_impossible(
        &err(&text),
        "vm[0].pmu.filter[0].count",
        line_of(&text, "count = 100"),
        "beyond the PMU's 1024 event numbers",
    );
    let text = edit("[vm.spe]", filter);
    let s = parse(&text).unwrap_or_else(|e| panic!("{e}"));
    let f = s.vms[0].pmu.as_ref().map(|p| p.filter[0].kvm_filter());
    assert_eq!(
        f,
        Some(EventFilter {
            base_event: 1000,
            nevents: 100,
            action: KVM_PMU_EVENT_DENY
        })
    );
}

#[test]
fn guest_spe_needs_spe_cpus() {
    let text = edit("[machine.cpus.spe]\n", "");
    assert_impossible(
        &err(&text),
        "vm[0].spe",
        line_of(&text, "[vm.spe]"),
        "guest SPE needs a CPU with an SPE unit",
    );
    // Also with a max_buffer_size: the table is what is impossible.
    let text = edit("[machine.cpus.spe]\n", "").replacen(
        "interval = 1024",
        "max_buffer_size = 65536\ninterval = 1024",
        1,
    );
    assert_impossible(
        &err(&text),
        "vm[0].spe",
        line_of(&text, "[vm.spe]"),
        "no CPU group has one",
    );
    // The host's session too.
    let text = edit("[machine.cpus.spe]\n", "")
        .replacen(
            "[[vm]]",
            "[host.spe]\ninterval = 1024\nbuffer_kib = 64\n\n[[vm]]",
            1,
        )
        .replacen("[vm.spe]\ninterval = 1024\nbuffer_kib = 64\n", "", 1);
    assert_impossible(
        &err(&text),
        "host.spe",
        line_of(&text, "[host.spe]"),
        "no CPU group has an SPE unit",
    );
}

/// BASE on SPE v1.5 units with a 1 MiB maximum buffer size.
fn base_v1p5() -> String {
    edit(
        "[machine.cpus.spe]",
        "[machine.cpus.spe]\nversion = \"1.5\"\nmax_buffer_size = 1048576",
    )
}

#[test]
fn vm_max_buffer_size_is_bounded_by_the_spu() {
    let text = base_v1p5().replacen(
        "interval = 1024",
        "max_buffer_size = 2097152\ninterval = 1024",
        1,
    );
    assert_impossible(
        &err(&text),
        "vm[0].spe.max_buffer_size",
        line_of(&text, "max_buffer_size = 2097152"),
        "2097152 bytes (2 MiB) is above the SPU's maximum, \
         machine.cpus[0].spe.max_buffer_size = 1048576 bytes (1 MiB)",
    );
    let text = base_v1p5().replacen(
        "interval = 1024",
        "max_buffer_size = 524288\ninterval = 1024",
        1,
    );
    let s = parse(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.vm_max_buffer_size(0), Some(512 << 10));
    // Left out: the SPU's own.
    let s = parse(&base_v1p5()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.vm_max_buffer_size(0), Some(1 << 20));
}

#[test]
fn vm_max_buffer_size_must_be_representable() {
    let text = edit(
        "interval = 1024",
        "max_buffer_size = 12345\ninterval = 1024",
    );
    assert_impossible(
        &err(&text),
        "vm[0].spe.max_buffer_size",
        line_of(&text, "max_buffer_size"),
        "12345 bytes cannot be represented in PMBIDR_EL1.MaxBuffSize; the nearest \
         representable sizes are 12288 and 16384",
    );
}

#[test]
fn without_fgt_the_guest_sees_the_spus_maximum() {
    let text = base_v1p5()
        .replacen("count = 2", "count = 2\nfgt = false", 1)
        .replacen(
            "interval = 1024",
            "max_buffer_size = 524288\ninterval = 1024",
            1,
        );
    assert_impossible(
        &err(&text),
        "vm[0].spe.max_buffer_size",
        line_of(&text, "max_buffer_size = 524288"),
        "no FEAT_FGT",
    );
    let text = base_v1p5()
        .replacen("count = 2", "count = 2\nfgt = false", 1)
        .replacen(
            "interval = 1024",
            "max_buffer_size = 1048576\ninterval = 1024",
            1,
        );
    assert!(parse(&text).is_ok());
}

#[test]
fn guest_spe_vcpus_run_only_on_the_cpus_of_their_spu() {
    let second =
        "[[machine.cpus]]\ncount = 2\n[machine.cpus.pmu]\ncounters = 6\nversion = \"3.5\"\n\n[host]";
    // Rotate: CPUs 2 and 3 have no SPE, so the vCPU rotates over 0 and 1.
    let text = BASE.replacen("[host]", second, 1);
    let s = parse(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.vm_cpus(0), vec![0, 1]);
    // Pinned: vCPU 0 is on CPU 0, which has SPE.
    let pinned = text.replacen(
        "host_ops = 1000",
        "host_ops = 1000\nschedule = \"pinned\"",
        1,
    );
    let s = parse(&pinned).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.vm_cpus(0), vec![0]);
    // Pinned after a first VM (without SPE) with 2 vCPUs: global index 2
    // is the first of the SPU's two CPUs again.
    let first =
        "[[vm]]\nname = \"z\"\nram_mib = 64\nworkload = \"mix\"\nvcpus = 2\n\n[[vm]]\nname = \"a\"";
    let text = pinned.replacen("[[vm]]\nname = \"a\"", first, 1);
    let s = parse(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.vm_cpus(0), vec![0, 1], "a VM without SPE may use any CPU");
    assert_eq!(s.vm_cpus(1), vec![0]);
    // A second, different SPE unit: the VM keeps to the first SPU's CPUs.
    let second = "[[machine.cpus]]\ncount = 2\n[machine.cpus.pmu]\ncounters = 6\nversion = \"3.5\"\n[machine.cpus.spe]\nmax_record_log2 = 7\n\n[host]";
    let text = BASE.replacen("[host]", second, 1);
    let s = parse(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.vm_cpus(0), vec![0, 1]);
}

#[test]
fn spe_intervals_respect_the_recommended_minimum() {
    let text = edit(
        "[machine.cpus.spe]",
        "[machine.cpus.spe]\ninterval_field = 5",
    );
    assert_impossible(
        &err(&text),
        "vm[0].spe.interval",
        line_of(&text, "interval = 1024"),
        "1024 is below the minimum interval 1536",
    );
}

#[test]
fn guest_buffers_fit_the_maximum_ram_and_memlock() {
    let text = base_v1p5().replacen("buffer_kib = 64", "buffer_kib = 2048", 1);
    assert_impossible(
        &err(&text),
        "vm[0].spe.buffer_kib",
        line_of(&text, "buffer_kib"),
        "larger than the VM's maximum buffer size, 1048576 bytes (1 MiB)",
    );
    let text = edit("buffer_kib = 64", "buffer_kib = 61440");
    assert_impossible(
        &err(&text),
        "vm[0].spe.buffer_kib",
        line_of(&text, "buffer_kib"),
        "does not fit in the VM's RAM",
    );
    // A memlock limit needs a finite maximum buffer size...
    let text = edit(
        "workload = \"mix\"",
        "workload = \"mix\"\nmemlock_kib = 8192",
    );
    assert_impossible(
        &err(&text),
        "vm[0].spe.max_buffer_size",
        line_of(&text, "[vm.spe]"),
        "an unlimited one needs an unlimited memlock",
    );
    // ... no larger than the limit ...
    let text = edit(
        "workload = \"mix\"",
        "workload = \"mix\"\nmemlock_kib = 512",
    )
    .replacen(
        "interval = 1024",
        "max_buffer_size = 1048576\ninterval = 1024",
        1,
    );
    assert_impossible(
        &err(&text),
        "vm[0].spe.max_buffer_size",
        line_of(&text, "max_buffer_size"),
        "exceeds vm[0].memlock_kib (524288 bytes (512 KiB))",
    );
    // ... and every vCPU's pinned buffer and tables must fit.
    let text = edit(
        "workload = \"mix\"",
        "workload = \"mix\"\nvcpus = 4\nmemlock_kib = 256",
    )
    .replacen(
        "interval = 1024",
        "max_buffer_size = 65536\ninterval = 1024",
        1,
    );
    assert_impossible(
        &err(&text),
        "vm[0].memlock_kib",
        line_of(&text, "memlock_kib"),
        "4 vCPU(s) pin at least 327680 bytes (320 KiB)",
    );
}

#[test]
fn machine_ram_holds_the_vms_and_host_buffers() {
    let text = edit("ram_mib = 512", "ram_mib = 60");
    assert_impossible(
        &err(&text),
        "machine.ram_mib",
        10,
        "62914560 bytes (60 MiB) of RAM cannot hold the VMs' RAM (67108864 bytes (64 MiB))",
    );
    // The host's SPE buffers count too: 2 CPUs x 64 MiB.
    let text = edit(
        "[[vm]]",
        "[host.spe]\ninterval = 1024\nbuffer_kib = 262144\n\n[[vm]]",
    );
    assert_impossible(
        &err(&text),
        "machine.ram_mib",
        10,
        "and the host's SPE buffers (536870912 bytes (512 MiB))",
    );
}

// --- The API around the errors -------------------------------------------------

#[test]
fn validate_reports_the_field_of_a_scenario_built_in_code() {
    let mut s = Scenario::builtin_default();
    if let Some(p) = s.vms[0].pmu.as_mut() {
        p.nr_counters = Some(9);
    }
    let e = s.validate().err();
    let Some(e) = e else { panic!("accepted") };
    assert_eq!(e.field, "vm[0].pmu.nr_counters");
    assert_eq!(e.line, None);
    assert!(
        e.to_string()
            .starts_with("<scenario>: vm[0].pmu.nr_counters: impossible configuration: 9 counters"),
        "{e}"
    );
    // Ranges the deserializers enforce are checked too.
    let mut s = Scenario::builtin_default();
    s.run.slice_ops = 0;
    let e = s.validate().err().map(|e| (e.field, e.kind));
    assert_eq!(
        e,
        Some((
            "run.slice_ops".to_string(),
            ErrorKind::OutOfRange {
                expected: "a positive integer".into(),
                found: "0".into()
            }
        ))
    );
    let mut s = Scenario::builtin_default();
    s.machine.cpus.clear();
    assert_eq!(
        s.validate().err().map(|e| e.field),
        Some("machine.cpus".to_string())
    );
}

#[test]
fn load_reports_unreadable_files() {
    let path = Path::new("/nonexistent/hyperprof/scenario.toml");
    let e = Scenario::load(path).err();
    let Some(e) = e else { panic!("loaded") };
    assert!(matches!(e, crate::error::Error::Io { .. }), "{e:?}");
    assert!(
        e.to_string()
            .starts_with("/nonexistent/hyperprof/scenario.toml: No such file"),
        "{e}"
    );
    let e = Scenario::load(Path::new("/dev/zero")).err();
    let Some(e) = e else { panic!("loaded") };
    assert_eq!(
        e.to_string(),
        "/dev/zero: is a character device; only regular files are read"
    );
}

#[test]
fn conversions_build_the_machine_and_the_drivers_inputs() {
    let s = Scenario::builtin_default();
    let m = s.machine.machine_config();
    assert_eq!(m.pes.len(), 4);
    assert_eq!(m.ram_size, 512 << 20);
    assert_eq!(m.ram_base, RAM_BASE);
    assert!(m.pes.iter().all(|p| p.fgt && p.pmu.counters == 8));
    assert_eq!(m.pes.iter().filter(|p| p.spe.is_some()).count(), 2);
    assert_eq!(m.pes[0].pmu.version, PmuVer::V3p5);
    let e = s.vms[1].pmu.as_ref().map(|p| p.events[2].event_spec());
    assert_eq!(
        e,
        Some(EventSpec {
            event: 0x37,
            filter: Filter {
                el0: true,
                el1: false,
                el2: true
            },
            period: Some(500_000)
        })
    );
    assert_eq!(
        s.host.spe.as_ref().map(|h| h.buffer_bytes()),
        Some(256 << 10)
    );
    // "web" boots an image, whose own driver picks its session.
    assert!(s.vms[0].is_code() && !s.vms[1].is_code());
    assert!(s.vms[0]
        .image
        .as_deref()
        .is_some_and(|i| i.starts_with("builtin:")));
    assert_eq!(s.vms[0].spe.as_ref().map(|v| v.session()), Some(None));
    assert_eq!(
        s.machine.host_mode.kvm_mode(),
        hyperprof_kvm::vm::HostMode::Vhe
    );
    assert_eq!(pmu_event_number("CPU_CYCLES"), Some(0x11));
    assert_eq!(pmu_event_number("nope"), None);
}

#[test]
fn line_col_counts_characters() {
    assert_eq!(line_col("a\nbc", 3), (2, 2));
    assert_eq!(line_col("é = 1\nx", 6), (1, 6));
    assert_eq!(line_col("é", 1), (1, 1));
    assert_eq!(line_col("", 10), (1, 1));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Arbitrary text never panics, and every error is one line whose line
    /// number is inside the text.
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        if let Err(e) = parse(&text) {
            let msg = e.to_string();
            prop_assert!(!msg.contains('\n'));
            if let Some(l) = e.line {
                prop_assert!(l >= 1 && l as usize <= text.lines().count().max(1) + 1);
            }
        }
    }

    /// The default with one line dropped or one byte range replaced never
    /// panics, and errors name a line of the text.
    #[test]
    fn mutated_default_never_panics(
        drop_line in 0usize..400,
        start in 0usize..12000,
        len in 0usize..8,
        with in "[ -~]{0,4}",
    ) {
        let text = Scenario::default_text();
        let dropped: String = text
            .lines()
            .enumerate()
            .filter(|(i, _)| *i != drop_line)
            .map(|(_, l)| format!("{l}\n"))
            .collect();
        let mut bytes = text.as_bytes().to_vec();
        let s = start.min(bytes.len());
        let e = (s + len).min(bytes.len());
        bytes.splice(s..e, with.bytes());
        let replaced = String::from_utf8_lossy(&bytes).into_owned();
        for t in [dropped, replaced] {
            if let Err(e) = parse(&t) {
                let msg = e.to_string();
                prop_assert!(!msg.contains('\n'));
                prop_assert!(e.line.is_some(), "{}", msg);
                prop_assert!(e.line.unwrap_or(0) as usize <= t.lines().count() + 1, "{}", msg);
            }
        }
    }
}

#[test]
fn integer_ranges_are_described_in_words() {
    assert_eq!(describe_int(0, I64_MAX, 1), "a non-negative integer");
    assert_eq!(describe_int(1, I64_MAX, 1), "a positive integer");
    assert_eq!(describe_int(5, I64_MAX, 1), "an integer of at least 5");
    assert_eq!(describe_int(0, I64_MAX, 4), "a non-negative multiple of 4");
    assert_eq!(describe_int(0, 31, 1), "an integer in 0..=31");
    assert_eq!(
        describe_int(256, 512, 256),
        "a multiple of 256 in 256..=512"
    );
}

#[test]
fn an_unbuildable_microarchitecture_is_impossible() {
    let with = |table: &str| {
        edit(
            "[machine.cpus.spe]\n",
            &format!("[machine.cpus.spe]\n[machine.cpus.uarch]\n{table}\n"),
        )
    };
    // 48 KiB in 4 ways of 64 bytes is 192 sets: not a power of two.
    let text = with("l1d_kib = 48");
    assert_impossible(
        &err(&text),
        "machine.cpus[0].uarch",
        line_of(&text, "[machine.cpus.uarch]"),
        "l1d: size 49152 is not a power-of-two number of sets",
    );
    let text = with("line_bytes = 48");
    assert_impossible(
        &err(&text),
        "machine.cpus[0].uarch",
        line_of(&text, "[machine.cpus.uarch]"),
        "a power of two",
    );
    // A valid change reaches the simulator's model; the rest keep their
    // defaults.
    let s = parse(&with("l2_kib = 512")).unwrap();
    assert_eq!(s.validate(), Ok(()));
    let cfg = s.machine.machine_config();
    assert_eq!(cfg.pes[0].uarch.l2.size, 512 << 10);
    assert_eq!(cfg.pes[0].uarch.l1d.size, 64 << 10);
    // Without the table the model is the default.
    let s = parse(BASE).unwrap();
    assert_eq!(
        s.machine.machine_config().pes[0].uarch,
        hyperprof_sim::uarch::UarchConfig::default()
    );
}
