//! What the end-to-end tests that run the binary and perf (`system_run`,
//! `perf_interop`) share: the command, scratch folders, and perf.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The guest image `name` of guests/images.
pub fn guest_image(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../guests/images")
        .join(name)
}

/// qemu-system-aarch64's console for guest image `name` on QEMU's virt
/// board (GICv3, `-cpu max`, 128 MiB) with `extra` arguments (`-smp`,
/// `-icount`); `None` when QEMU is missing and CI is not set (a failure
/// when it is: .ci/run installs QEMU).
pub fn qemu_console(name: &str, extra: &[&str]) -> Option<String> {
    let mut c = Command::new("qemu-system-aarch64");
    c.args(["-M", "virt,gic-version=3", "-cpu", "max", "-m", "128M"]);
    c.args(["-nographic", "-nodefaults", "-serial", "stdio"]);
    c.args(extra);
    c.arg("-kernel").arg(guest_image(name));
    match c.output() {
        Ok(o) => {
            assert!(o.status.success(), "QEMU failed on {name}: {:?}", o.status);
            Some(String::from_utf8(o.stdout).expect("QEMU's console is text"))
        }
        Err(e) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "qemu-system-aarch64 is missing and CI=true ({e}): .ci/run installs it"
            );
            eprintln!("skipped the QEMU comparison: qemu-system-aarch64 is not installed ({e})");
            None
        }
    }
}

/// `hyperprof boot ARGS`, run to its end.
pub fn boot(args: &[&str]) -> Output {
    hyperprof().arg("boot").args(args).output().unwrap()
}

/// A run's stdout (a guest's console), which must be text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

/// A run's stderr.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `hyperprof boot`'s host and guest PMU set-ups: VHE with either PMU,
/// nVHE with the emulated one (the partitioned PMU needs VHE), and no PMU;
/// the host profiles its kernel with SPE and counts it on its reserved
/// counters in every one.
pub const BOOT_SETUPS: [&[&str]; 5] = [
    &["--pmu", "partitioned"],
    &["--pmu", "emulated"],
    &["--nvhe", "--pmu", "emulated"],
    &["--pmu", "off"],
    &["--nvhe", "--pmu", "off"],
];

pub fn hyperprof() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hyperprof"))
}

/// An empty folder `name` of this test binary's own, under the target's
/// temporary directory.
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(env!("CARGO_CRATE_NAME"))
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `out`, which must be a success; else its status and stderr.
pub fn ok(out: Output, what: &str) -> Output {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Whether perf is installed; it must be under CI=true (`.ci/run` installs
/// it). Without it the perf checks say so and pass.
pub fn perf_available() -> bool {
    let found = Command::new("perf")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "perf is not installed but CI=true: .ci/run must install linux-perf"
        );
        eprintln!(
            "perf not installed: skipping the perf checks of {}",
            env!("CARGO_CRATE_NAME")
        );
    }
    found
}

/// What `perf report -D -i data` prints, which must succeed.
pub fn perf_report_d(data: &Path) -> Output {
    ok(
        Command::new("perf")
            .args(["report", "-D", "-i"])
            .arg(data)
            .output()
            .unwrap(),
        "perf report -D",
    )
}
