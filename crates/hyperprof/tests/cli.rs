//! The command line as a user meets it: outputs, error lines, exit statuses.
//! Nothing here needs perf.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn hyperprof(args: &[&str], files: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hyperprof"))
        .args(args)
        .args(files)
        .output()
        .unwrap()
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("cli")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

/// Exit status 2 and exactly one stderr line containing `needle`.
fn assert_fails(out: &Output, needle: &str) {
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("hyperprof: "), "{err}");
    assert!(err.contains(needle), "expected {needle:?} in {err}");
}

#[test]
fn dump_prints_perf_lines_for_a_raw_buffer() {
    let dir = scratch("dump");
    let f = dir.join("golden.spe");
    std::fs::write(
        &f,
        hex("b0 f4 d3 29 10 00 80 ff a0 49 00 52 16 00 98 0d 00 71 a5 1f b3 20 14 00 00 00 00 00 01"),
    )
    .unwrap();
    let out = hyperprof(&["spe", "dump"], &[&f]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        ".  00000000:  b0 f4 d3 29 10 00 80 ff a0                      PC 0xff80001029d3f4 el1 ns=1\n\
         .  00000009:  49 00                                           LD GP-REG\n\
         .  0000000b:  52 16 00                                        EV RETIRED L1D-ACCESS TLB-ACCESS\n\
         .  0000000e:  98 0d 00                                        LAT 13 TOT\n\
         .  00000011:  71 a5 1f b3 20 14 00 00 00                      TS 86447955877\n\
         .  0000001a:  00 00                                           PAD\n\
         .  0000001c:  01                                              END\n"
    );
}

#[test]
fn malformed_traces_fail_with_file_and_offset() {
    let dir = scratch("malformed");
    let trunc = dir.join("trunc.spe");
    std::fs::write(&trunc, hex("49 00 b0 01 02")).unwrap();
    for cmd in [&["spe", "dump"][..], &["spe", "stats"]] {
        assert_fails(
            &hyperprof(cmd, &[&trunc]),
            "trunc.spe: byte offset 0x2: truncated SPE packet (header 0xb0): needs 9 bytes, 3 remain",
        );
    }
    let unknown = dir.join("unknown.spe");
    std::fs::write(&unknown, hex("01 01 ff 01")).unwrap();
    assert_fails(
        &hyperprof(&["spe", "stats"], &[&unknown]),
        "unknown.spe: byte offset 0x2: unknown SPE packet header 0xff",
    );
    // The lines before the bad packet are printed, then the error.
    let out = hyperprof(&["spe", "dump"], &[&unknown]);
    assert_fails(&out, "byte offset 0x2");
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 2);
    // --keep-going prints it as perf would and succeeds.
    let out = hyperprof(&["spe", "dump", "--keep-going"], &[&unknown]);
    assert!(out.status.success());
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .contains("ff                                              Bad packet!"));
}

#[test]
fn damaged_perf_data_files_fail_with_offsets() {
    let dir = scratch("perfdata");
    let raw = dir.join("t.spe");
    std::fs::write(&raw, hex("49 00 01")).unwrap();
    let data = dir.join("t.data");
    assert!(hyperprof(&["spe", "export", "-o"], &[&data, &raw])
        .status
        .success());
    let good = std::fs::read(&data).unwrap();

    let bad = dir.join("magic.data");
    let mut b = good.clone();
    b[7] = b'3';
    std::fs::write(&bad, &b).unwrap();
    assert_fails(
        &hyperprof(&["spe", "dump"], &[&bad]),
        "magic.data: byte offset 0x0: bad perf.data magic",
    );

    // Where the data section ends and the AUXTRACE record (preceded by
    // the AUXTRACE_INFO record) lies.
    let word = |at: usize| u64::from_le_bytes(good[at..at + 8].try_into().unwrap()) as usize;
    let (data_offset, data_end) = (word(40), word(40) + word(48));
    let aux_record = hyperprof_spe::perf_data::PerfData::parse(&good)
        .unwrap()
        .aux_traces()
        .next()
        .unwrap()
        .unwrap()
        .record_offset;
    let info_record = aux_record - hyperprof_spe::perf_data::SPE_INFO_LEN;

    let cut = dir.join("cut.data");
    std::fs::write(&cut, &good[..data_end - 3]).unwrap();
    assert_fails(
        &hyperprof(&["spe", "stats"], &[&cut]),
        &format!("cut.data: byte offset {data_offset:#x}: perf.data data section"),
    );

    let size = dir.join("size.data");
    let mut b = good.clone();
    b[aux_record + 8] = 0xff; // the trace claims more bytes than there are
    std::fs::write(&size, &b).unwrap();
    assert_fails(
        &hyperprof(&["spe", "dump"], &[&size]),
        &format!("size.data: byte offset {aux_record:#x}: perf.data record"),
    );

    let other = dir.join("other.data");
    let mut b = good;
    b[info_record + 8] = 3; // CoreSight, not SPE
    std::fs::write(&other, &b).unwrap();
    assert_fails(&hyperprof(&["spe", "dump"], &[&other]), "not ARM SPE (4)");
}

#[test]
fn export_refuses_bad_inputs_and_leaves_nothing_behind() {
    let dir = scratch("export");
    let bad = dir.join("bad.spe");
    std::fs::write(&bad, hex("01 42")).unwrap();
    let out = dir.join("out.data");
    assert_fails(
        &hyperprof(&["spe", "export", "-o"], &[&out, &bad]),
        "bad.spe: byte offset 0x1: truncated SPE packet (header 0x42)",
    );
    assert!(
        std::fs::read_dir(&dir).unwrap().count() == 1,
        "nothing written"
    );

    let good = dir.join("good.spe");
    std::fs::write(&good, hex("01")).unwrap();
    assert!(hyperprof(&["spe", "export", "-o"], &[&out, &good])
        .status
        .success());
    assert_fails(
        &hyperprof(&["spe", "export", "-o"], &[&dir.join("again.data"), &out]),
        "already a perf.data file",
    );
    assert_fails(
        &hyperprof(&["spe", "dump"], &[&dir.join("missing")]),
        "missing: No such file",
    );
}

#[test]
fn synth_is_deterministic_and_stats_count_its_records() {
    let dir = scratch("synth");
    let (a, b) = (dir.join("a.spe"), dir.join("b.spe"));
    for f in [&a, &b] {
        let out = hyperprof(
            &["spe", "synth", "--records", "3000", "--seed", "9", "-o"],
            &[f],
        );
        assert!(out.status.success());
    }
    let bytes = std::fs::read(&a).unwrap();
    assert_eq!(bytes.len(), 3000 * 64);
    assert_eq!(bytes, std::fs::read(&b).unwrap());
    let out = hyperprof(&["spe", "stats", "--json"], &[&a]);
    assert!(out.status.success());
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["records"], 3000);
    assert_eq!(s["incomplete_records"], 0);
    assert_eq!(s["bytes"], 3000 * 64);
    let ops = &s["ops"];
    let sum: u64 = ["load", "store", "branch", "other", "reserved", "none"]
        .iter()
        .map(|k| ops[k].as_u64().unwrap())
        .sum();
    assert_eq!(sum, 3000);
    let total = &s["total_latency"];
    assert!(total["p50"].as_u64() <= total["p90"].as_u64());
    assert!(total["p99"].as_u64() <= total["max"].as_u64());

    assert_fails(
        &hyperprof(&["spe", "synth", "--record-size", "16", "-o"], &[&a]),
        "--record-size 16",
    );
}

#[test]
fn arbitrary_bytes_never_crash_the_tools() {
    let dir = scratch("arbitrary");
    let mut x = 0x1234_5678_9abc_def0u64;
    for i in 0..40 {
        let len = (i * 37) % 300;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let f = dir.join(format!("r{i}"));
        std::fs::write(&f, &bytes).unwrap();
        for cmd in [
            &["spe", "dump"][..],
            &["spe", "dump", "--keep-going"],
            &["spe", "stats"],
        ] {
            let code = hyperprof(cmd, &[&f]).status.code();
            assert!(
                matches!(code, Some(0) | Some(2)),
                "{cmd:?} on {f:?}: {code:?}"
            );
        }
    }
}

#[test]
fn demo_writes_its_artifacts() {
    let dir = scratch("demo");
    let out = Command::new(env!("CARGO_BIN_EXE_hyperprof"))
        .args(["demo", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("records             65536"), "{text}");
    let data = std::fs::read(dir.join("demo.perf.data")).unwrap();
    assert!(data.starts_with(b"PERFILE2"));
}
