//! `hyperprof spe export --format parquet|csv`: the three tables of Arm's
//! spe-parser, read back with the parquet crate's reader and with DuckDB
//! from Python, hold as many rows as `spe stats` counts loads and stores,
//! branches and other operations, with spe-parser's columns and the
//! functions of the PCs.
//!
//! The DuckDB check needs `python3 -m pip install duckdb`: without it the
//! test says so and passes, except under CI=true.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::RowAccessor;
use serde_json::Value;

#[allow(dead_code)] // the perf helpers serve the perf tests
mod common;
use common::{hyperprof, ok, scratch};

const LDST: [&str; 18] = [
    "cpu",
    "op",
    "pc",
    "el",
    "atomic",
    "excl",
    "ar",
    "subclass",
    "event",
    "issue_lat",
    "total_lat",
    "vaddr",
    "xlat_lat",
    "paddr",
    "data_source",
    "context",
    "ts",
    "symbol",
];
const BR: [&str; 16] = [
    "cpu",
    "op",
    "pc",
    "el",
    "condition",
    "indirect",
    "event",
    "issue_lat",
    "total_lat",
    "br_tgt",
    "br_tgt_lvl",
    "pbt",
    "pbt_lvl",
    "context",
    "ts",
    "symbol",
];
const OTHER: [&str; 15] = [
    "cpu",
    "op",
    "pc",
    "el",
    "subclass",
    "sve_evl",
    "sve_pred",
    "sve_fp",
    "condition",
    "event",
    "issue_lat",
    "total_lat",
    "context",
    "ts",
    "symbol",
];

/// Rows per table `spe stats` counts: loads and stores, branches, other.
fn stats_rows(trace: &Path) -> [u64; 3] {
    let out = ok(
        hyperprof()
            .args(["spe", "stats", "--json"])
            .arg(trace)
            .output()
            .unwrap(),
        "spe stats",
    );
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    let n = |k: &str| s["ops"][k].as_u64().unwrap();
    [n("load") + n("store"), n("branch"), n("other")]
}

fn export(trace: &Path, format: &str, dir: &Path, extra: &[&str]) -> Vec<PathBuf> {
    ok(
        hyperprof()
            .args(["spe", "export", "--format", format, "-o"])
            .arg(dir)
            .args(extra)
            .arg(trace)
            .output()
            .unwrap(),
        "spe export",
    );
    let stem = trace.file_name().unwrap().to_string_lossy();
    let stem = stem
        .strip_suffix(".perf.data")
        .or_else(|| stem.strip_suffix(".spe"))
        .unwrap()
        .to_string();
    ["ldst", "br", "other"]
        .iter()
        .map(|t| dir.join(format!("{stem}-{t}.{format}")))
        .collect()
}

/// Rows, column names and row groups of a Parquet file, by the parquet
/// crate's reader.
fn parquet_read(path: &Path) -> (u64, Vec<String>, usize, SerializedFileReader<File>) {
    let r = SerializedFileReader::new(File::open(path).unwrap()).unwrap();
    let meta = r.metadata();
    let rows = meta.file_metadata().num_rows() as u64;
    let cols = meta
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    let groups = meta.num_row_groups();
    (rows, cols, groups, r)
}

/// Whether DuckDB is importable from python3; under CI=true it must be.
fn duckdb_available() -> bool {
    let found = Command::new("python3")
        .args(["-c", "import duckdb"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "python3 cannot import duckdb but CI=true: .ci/run must run `python3 -m pip install duckdb`"
        );
        eprintln!(
            "duckdb not installed (python3 -m pip install duckdb): skipping the DuckDB checks"
        );
    }
    found
}

/// `sql` run by DuckDB in `dir`; its first column of each row.
fn duckdb(dir: &Path, sql: &str) -> Vec<String> {
    let script =
        format!("import duckdb\nfor row in duckdb.sql({sql:?}).fetchall():\n    print(row[0])\n");
    let out = ok(
        Command::new("python3")
            .args(["-c", &script])
            .current_dir(dir)
            .output()
            .unwrap(),
        "duckdb",
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn parquet_tables_of_a_synthetic_trace_read_back_with_the_counts_of_spe_stats() {
    let dir = scratch("synth");
    let raw = dir.join("big.spe");
    // More loads and stores than one batch: the ldst table has two row groups.
    ok(
        hyperprof()
            .args(["spe", "synth", "--records", "120000", "--seed", "5", "-o"])
            .arg(&raw)
            .output()
            .unwrap(),
        "synth",
    );
    let expect = stats_rows(&raw);
    let out = dir.join("tables");
    let files = export(&raw, "parquet", &out, &["--cpu", "7"]);
    let mut total = 0;
    for ((file, want), cols) in files.iter().zip(expect).zip([&LDST[..], &BR, &OTHER]) {
        let (rows, names, groups, reader) = parquet_read(file);
        assert_eq!(rows, want, "{}", file.display());
        assert_eq!(names, cols, "{}", file.display());
        assert_eq!(groups as u64, want.div_ceil(65_536));
        let first = reader.get_row_iter(None).unwrap().next().unwrap().unwrap();
        assert_eq!(first.get_long(0).unwrap(), 7, "cpu");
        assert!(first.get_string(2).unwrap().starts_with("0x"), "pc");
        total += rows;
    }
    assert!(expect[0] > 65_536, "{expect:?}");
    assert_eq!(total, expect.iter().sum::<u64>());

    if duckdb_available() {
        for (t, want) in ["ldst", "br", "other"].iter().zip(expect) {
            let n = duckdb(&out, &format!("select count(*) from 'big-{t}.parquet'"));
            assert_eq!(n, [want.to_string()], "{t}");
        }
        let ops = duckdb(
            &out,
            "select string_agg(distinct op, ',' order by op) from 'big-ldst.parquet'",
        );
        assert_eq!(ops, ["LD,ST"]);
    }
}

#[test]
fn tables_of_a_run_name_the_functions_and_csv_agrees() {
    let run = scratch("run");
    let out = ok(
        hyperprof()
            .args(["run", "--ops", "4000000", "--out"])
            .arg(&run)
            .output()
            .unwrap(),
        "run",
    );
    assert!(out.status.success());
    // The host kernel's profile: a closed-form workload's functions.
    let trace = run.join("host.perf.data");
    let expect = stats_rows(&trace);
    let tables = scratch("run-tables");
    let pq = export(&trace, "parquet", &tables, &[]);
    let csv = export(&trace, "csv", &tables, &[]);
    for ((p, c), want) in pq.iter().zip(&csv).zip(expect) {
        let (rows, names, _, reader) = parquet_read(p);
        assert_eq!(rows, want);
        let text = std::fs::read_to_string(c).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next().unwrap(), names.join(","));
        assert_eq!(lines.count() as u64, want);
        // Every PC of the host is in a function of its workload.
        let sym = names.iter().position(|n| n == "symbol").unwrap();
        for row in reader.get_row_iter(None).unwrap() {
            let f = row.unwrap().get_string(sym).unwrap().clone();
            assert!(
                ["main", "memcpy", "sum_array", "hash_lookup", "interpret"].contains(&f.as_str()),
                "{f}"
            );
        }
    }
    if duckdb_available() {
        let by_fn = duckdb(
            &tables,
            "select symbol || ' ' || count(*) from 'host-ldst.parquet' group by symbol order by count(*) desc",
        );
        assert!(by_fn[0].starts_with("memcpy "), "{by_fn:?}");
        let n = duckdb(&tables, "select count(*) from read_csv_auto('host-br.csv')");
        assert_eq!(n, [expect[1].to_string()]);
    }
    // The web VM boots a built-in image: its loads are named from the
    // image's own symbols, at the kernel address perf gives an EL1 PC.
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("report.json")).unwrap()).unwrap();
    let image = report["vms"][0]["image"].as_str().unwrap();
    let bytes = hyperprof::builtin::find(image.strip_prefix("builtin:").unwrap()).unwrap();
    let functions: Vec<String> = hyperprof::perf::elf::read_functions(bytes)
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    let web = scratch("run-web-tables");
    let csv = export(&run.join("web.perf.data"), "csv", &web, &[]);
    let text = std::fs::read_to_string(&csv[0]).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let sym = header.iter().position(|n| *n == "symbol").unwrap();
    let rows: Vec<String> = lines
        .map(|l| l.split(',').nth(sym).unwrap().to_string())
        .collect();
    assert!(rows.len() > 100, "{} loads", rows.len());
    assert!(rows.iter().all(|f| functions.contains(f)), "{rows:?}");
}

#[test]
fn a_malformed_trace_leaves_no_tables_and_one_trace_at_a_time() {
    let dir = scratch("bad");
    let bad = dir.join("bad.spe");
    std::fs::write(&bad, [0x49u8, 0x00, 0x01, 0x42]).unwrap();
    let out_dir = dir.join("out");
    let out = hyperprof()
        .args(["spe", "export", "--format", "parquet", "-o"])
        .arg(&out_dir)
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.spe: byte offset 0x3"), "{err}");
    let left: Vec<_> = std::fs::read_dir(&out_dir)
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    let out = hyperprof()
        .args(["spe", "export", "--format", "csv", "-o"])
        .arg(&out_dir)
        .arg(&bad)
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("one trace file at a time"));
}
