//! Issue 14: nothing a user feeds the command hangs, balloons or lies.
//! Special files, empty and meaningless inputs, safe output, a report.json
//! that contradicts itself, and the exit status of each class of failure.

#[allow(dead_code)]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{hyperprof, scratch};

/// Runs `cmd`, killing it if it takes over 20 s (which is the failure).
fn run_bounded(cmd: &mut Command) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("{cmd:?} hung: {out:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Fails with `status` and one stderr line holding every needle.
fn assert_fails_with(out: &Output, status: i32, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(status), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    for n in needles {
        assert!(err.contains(n), "expected {n:?} in {err}");
    }
}

fn mkfifo(path: &Path) {
    let st = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(st.success());
}

fn synth(dir: &Path, records: u32) -> PathBuf {
    let raw = dir.join("t.spe");
    let out = hyperprof()
        .args(["spe", "synth", "--records", &records.to_string(), "-o"])
        .arg(&raw)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    raw
}

#[test]
fn fifos_and_devices_are_refused_at_once() {
    let dir = scratch("special");
    let fifo = dir.join("fifo");
    mkfifo(&fifo);
    let f = fifo.to_str().unwrap();
    for args in [
        vec!["spe", "dump", f],
        vec!["spe", "stats", f],
        vec!["scenario", "check", f],
        vec!["run", f],
    ] {
        let out = run_bounded(hyperprof().args(&args));
        assert_fails_with(&out, 2, &[f, "is a FIFO"]);
    }
    let out = run_bounded(
        hyperprof()
            .args(["spe", "export", f, "-o"])
            .arg(dir.join("x.data")),
    );
    assert_fails_with(&out, 2, &[f, "is a FIFO"]);
    assert!(!dir.join("x.data").exists());
    for dev in ["/dev/zero", "/dev/urandom"] {
        let out = run_bounded(hyperprof().args(["spe", "stats", dev]));
        assert_fails_with(&out, 2, &[dev, "is a character device"]);
    }
    // `report DIR` whose report.json is a FIFO.
    let rdir = dir.join("r");
    std::fs::create_dir_all(&rdir).unwrap();
    mkfifo(&rdir.join("report.json"));
    let out = run_bounded(hyperprof().arg("report").arg(&rdir));
    assert_fails_with(&out, 2, &["report.json", "is a FIFO"]);
}

#[test]
fn empty_traces_and_absurd_headers_are_errors() {
    let dir = scratch("empty");
    let empty = dir.join("empty.spe");
    std::fs::write(&empty, b"").unwrap();
    let e = empty.to_str().unwrap();
    for args in [vec!["spe", "dump", e], vec!["spe", "stats", e]] {
        let out = hyperprof().args(&args).output().unwrap();
        assert_fails_with(&out, 2, &[e, "empty"]);
    }
    let out = hyperprof()
        .args(["spe", "export", e, "-o"])
        .arg(dir.join("x.data"))
        .output()
        .unwrap();
    assert_fails_with(&out, 2, &[e, "empty"]);
    assert!(!dir.join("x.data").exists());

    // A perf.data whose attrs section claims 0xffff… bytes.
    let raw = synth(&dir, 4);
    let data = dir.join("t.data");
    let out = hyperprof()
        .args(["spe", "export"])
        .arg(&raw)
        .arg("-o")
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let mut b = std::fs::read(&data).unwrap();
    b[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
    let bad = dir.join("bad.data");
    std::fs::write(&bad, &b).unwrap();
    let out = hyperprof()
        .args(["spe", "stats"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_fails_with(
        &out,
        2,
        &[bad.to_str().unwrap(), "byte offset 0x68", "attrs section"],
    );
}

#[test]
fn outputs_that_are_not_regular_files_are_left_alone() {
    let dir = scratch("outputs");
    let raw = synth(&dir, 8);
    // A symbolic link and a FIFO at -o are refused and stay what they were.
    let target = dir.join("target.data");
    std::fs::write(&target, b"keep").unwrap();
    let link = dir.join("link.data");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let out = hyperprof()
        .args(["spe", "export"])
        .arg(&raw)
        .arg("-o")
        .arg(&link)
        .output()
        .unwrap();
    assert_fails_with(&out, 4, &["link.data", "is a symbolic link"]);
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read(&target).unwrap(), b"keep");
    let fifo = dir.join("fifo.data");
    mkfifo(&fifo);
    let out = run_bounded(
        hyperprof()
            .args(["spe", "export"])
            .arg(&raw)
            .arg("-o")
            .arg(&fifo),
    );
    assert_fails_with(&out, 4, &["fifo.data", "is a FIFO"]);
    let out = hyperprof()
        .args(["spe", "synth", "--records", "4", "-o"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    // A device is never replaced (/dev/null is safe to try as any user).
    assert!(
        std::fs::symlink_metadata("/dev/null")
            .unwrap()
            .file_type()
            .is_char_device_check(),
        "/dev/null is not a character device on this machine"
    );
    let out = hyperprof()
        .args(["spe", "export"])
        .arg(&raw)
        .args(["-o", "/dev/null"])
        .output()
        .unwrap();
    assert_fails_with(&out, 4, &["/dev/null", "is a character device"]);
    assert!(std::fs::metadata("/dev/null")
        .unwrap()
        .file_type()
        .is_char_device_check());
    // Nothing but what the test made is in the directory.
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["fifo.data", "link.data", "t.spe", "target.data"]);
}

/// `is_char_device` under a name that reads as the check it is.
trait CharDeviceCheck {
    fn is_char_device_check(&self) -> bool;
}
impl CharDeviceCheck for std::fs::FileType {
    fn is_char_device_check(&self) -> bool {
        use std::os::unix::fs::FileTypeExt;
        self.is_char_device()
    }
}

#[test]
fn a_full_disk_is_an_error_and_dev_full_stays_a_device() {
    // /dev/full as the target: refused as a device (it is not replaced even
    // when run as root, who could rename over it).
    // Never aim a write at /dev/full unless it is the device: a regular file
    // there would be replaced (this test's own earlier failure mode).
    assert!(
        std::fs::symlink_metadata("/dev/full")
            .unwrap()
            .file_type()
            .is_char_device_check(),
        "/dev/full is not a character device on this machine: restore it (mknod -m 666 /dev/full c 1 7)"
    );
    let dir = scratch("full");
    let raw = synth(&dir, 8);
    let out = hyperprof()
        .args(["spe", "export"])
        .arg(&raw)
        .args(["-o", "/dev/full"])
        .output()
        .unwrap();
    assert_fails_with(&out, 4, &["/dev/full", "is a character device"]);
    assert!(std::fs::metadata("/dev/full")
        .unwrap()
        .file_type()
        .is_char_device_check());
    // Standard output on a full device: ENOSPC is an error, not success.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = hyperprof()
        .args(["spe", "stats"])
        .arg(&raw)
        .stdout(full)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("<stdout>"));
}

#[test]
fn oversized_scenarios_and_reports_are_refused_with_their_size() {
    let dir = scratch("big");
    let big = dir.join("big.toml");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len((16 << 20) + 1).unwrap();
    let out = run_bounded(hyperprof().args(["scenario", "check"]).arg(&big));
    assert_fails_with(&out, 2, &["big.toml", "16777217 bytes"]);
    let rdir = dir.join("r");
    std::fs::create_dir_all(&rdir).unwrap();
    let f = std::fs::File::create(rdir.join("report.json")).unwrap();
    f.set_len(1 << 30).unwrap();
    let out = run_bounded(hyperprof().arg("report").arg(&rdir));
    assert_fails_with(&out, 2, &["report.json", "1073741824 bytes"]);
}

#[test]
fn usage_errors_keep_status_2_and_help_lists_the_statuses() {
    let out = hyperprof()
        .args(["run", "--no-such-flag"])
        .output()
        .unwrap();
    assert_fails_with(&out, 2, &["unexpected argument '--no-such-flag'", "--help"]);
    let out = hyperprof()
        .args(["spe", "dump", "x", "--jobs", "0"])
        .output()
        .unwrap();
    assert_fails_with(&out, 2, &["--jobs"]);
    let out = hyperprof().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for line in [
        "1  the run completed but an invariant did not hold",
        "2  bad input",
        "3  the run could not complete",
        "4  writing an output failed",
    ] {
        assert!(help.contains(line), "{line:?} not in --help:\n{help}");
    }
}

/// A small real run's artifact directory.
fn small_run(dir: &Path) -> PathBuf {
    let out = dir.join("run");
    let o = hyperprof()
        .args(["run", "--scenario", "guest-spe", "--ops", "200000", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    out
}

#[test]
fn report_checks_report_json_and_escapes_what_it_prints() {
    let dir = scratch("report");
    let out = small_run(&dir);
    let good = std::fs::read_to_string(out.join("report.json")).unwrap();
    // The directory moved: paths follow it.
    let moved = dir.join("moved");
    std::fs::rename(&out, &moved).unwrap();
    let o = hyperprof().arg("report").arg(&moved).output().unwrap();
    assert!(o.status.success(), "{o:?}");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains(&format!("artifacts in {}", moved.display())),
        "{text}"
    );
    assert!(!text.contains(&out.display().to_string()), "{text}");
    // A run into a used directory needs --force.
    let o = hyperprof()
        .args(["run", "--scenario", "guest-spe", "--ops", "1000", "--out"])
        .arg(&moved)
        .output()
        .unwrap();
    assert_fails_with(&o, 4, &["not empty", "--force"]);

    let cases: [(&str, String, &str); 6] = [
        (
            "version",
            good.replace("\"schema_version\": 1", "\"schema_version\": 7"),
            "schema_version 7",
        ),
        (
            "unknown",
            good.replacen("\"seed\":", "\"colour\": 1,\n  \"seed\":", 1),
            "unknown field `colour`",
        ),
        (
            "mode",
            good.replace("\"mode\": \"vhe\"", "\"mode\": \"hvm\""),
            "host.mode \"hvm\"",
        ),
        (
            "counts",
            good.replacen("\"records\": ", "\"records\": 9", 1),
            "is not the sum",
        ),
        (
            "latency",
            good.replacen("\"p50\":", "\"p42\": 1, \"p50\":", 1),
            "unknown field `p42`",
        ),
        (
            "artifact",
            good.replace("\"report.json\"", "\"../../etc/passwd\""),
            "is not a file name",
        ),
    ];
    for (name, text, needle) in cases {
        assert_ne!(text, good, "{name}: the edit applies");
        let d = dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("report.json"), text).unwrap();
        let o = hyperprof().arg("report").arg(&d).output().unwrap();
        assert_fails_with(&o, 2, &["report.json", needle]);
    }
    // Control characters in a name are escaped, not sent to the terminal.
    let d = dir.join("escape");
    std::fs::create_dir_all(&d).unwrap();
    let evil = good.replacen(
        "\"scenario\": \"guest-spe\"",
        "\"scenario\": \"a\\u001b[2Jb\"",
        1,
    );
    assert_ne!(evil, good);
    std::fs::write(d.join("report.json"), evil).unwrap();
    let o = hyperprof().arg("report").arg(&d).output().unwrap();
    assert!(o.status.success(), "{o:?}");
    assert!(!o.stdout.contains(&0x1b));
    assert!(String::from_utf8_lossy(&o.stdout).contains("a\\u{1b}[2Jb"));
}

/// A trace larger than a window dumps and aggregates exactly as a walk of
/// the whole buffer in memory does (offsets in the buffer, not the window).
#[test]
fn traces_larger_than_a_window_stream_to_the_same_result() {
    use hyperprof::spe::{dump, input, stats};
    use hyperprof_spe::text::{write_dump_line, DumpWalker, Sink};
    struct V(Vec<u8>);
    impl Sink for V {
        fn put(&mut self, b: &[u8]) {
            self.0.extend_from_slice(b);
        }
    }
    let dir = scratch("window");
    let records = (input::WINDOW + 3 * input::LOOKAHEAD) / 64 + 1000;
    let raw = synth(&dir, records as u32);
    let bytes = std::fs::read(&raw).unwrap();
    assert!(bytes.len() > input::WINDOW + input::LOOKAHEAD);
    let mut whole = V(Vec::new());
    for item in DumpWalker::new(&bytes, 0) {
        write_dump_line(&mut whole, &bytes, &item);
    }
    let file = input::TraceFile::open(&raw).unwrap();
    for jobs in [1, 2] {
        let mut out = Vec::new();
        let opts = dump::DumpOptions {
            keep_going: false,
            jobs,
        };
        dump::dump(&file, &mut out, opts).unwrap();
        assert!(out == whole.0, "jobs {jobs}: the streamed dump differs");
    }
    let mut agg = stats::Aggregator::default();
    agg.add_buffer(&bytes, 0).unwrap();
    assert_eq!(stats::stats(&file).unwrap(), agg.finish());
}
