//! The guest timer suite (`guests/programs/timer.c`) booted under
//! `hyperprof boot` in every set-up (partitioned and emulated PMU, VHE and
//! nVHE hosts, guest SPE; the host profiles beside it in all of them),
//! its polled subtests compared with qemu-system-aarch64, and guests that
//! wait for an interrupt that cannot come.

#[allow(dead_code)] // the perf and scratch helpers serve the other tests
mod common;

use std::path::PathBuf;
use std::process::Output;

use common::{guest_image, hyperprof, qemu_console};

fn image() -> PathBuf {
    guest_image("timer.bin")
}

const SETUPS: [&[&str]; 5] = [
    &["--pmu", "off"],
    &["--pmu", "partitioned"],
    &["--pmu", "emulated"],
    &["--nvhe", "--pmu", "emulated"],
    &["--spe", "--pmu", "partitioned"],
];

/// The subtests without bootargs (polled), and with `irq=1 cntfrq=N`: the
/// frequency's value, the counter's rate, the virtual timer's interrupt,
/// IMASK, the physical timer's interrupt (and its promptness) and WFI.
const POLLED: usize = 15;
const WITH_IRQ: usize = POLLED + 1 + 1 + 3 + 2 + 2 + 1;

fn boot(args: &[&str], append: &str) -> Output {
    hyperprof()
        .arg("boot")
        .arg(image())
        .args(args)
        .args(["--append", append])
        .output()
        .unwrap()
}

#[test]
fn every_subtest_passes_in_every_setup() {
    for setup in SETUPS {
        let o = boot(setup, "irq=1 cntfrq=1000000000");
        let out = String::from_utf8_lossy(&o.stdout);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{setup:?}: {:?}\n{out}{err}", o.status);
        assert!(err.contains("invariants: all hold"), "{setup:?}: {err}");
        assert!(!out.contains("FAIL"), "{setup:?}:\n{out}");
        let passes = out.lines().filter(|l| l.starts_with("PASS: ")).count();
        assert_eq!(passes, WITH_IRQ, "{setup:?}:\n{out}");
        assert!(
            out.contains(&format!("SUMMARY: {WITH_IRQ} tests, 0 unexpected failures")),
            "{setup:?}:\n{out}"
        );
        assert!(out.contains("INFO: timer: CNTFRQ_EL0 1000000000"), "{out}");
        // The two interrupts came through physical interrupt exits, and
        // the one WFI slept while the machine skipped to its deadline.
        assert!(
            err.contains("2 interrupt exits, 1 wakes"),
            "{setup:?}: {err}"
        );
        let skipped: u64 = err
            .split(" wakes, ")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{setup:?}: {err}"));
        assert!(
            skipped > 0 && skipped <= 1_000_000,
            "{setup:?}: {skipped} idle ticks\n{err}"
        );
        let per = if setup.contains(&"--nvhe") {
            "7.0 accesses per entry/exit"
        } else {
            "8.0 accesses per load/put"
        };
        assert!(err.contains(per), "{setup:?}: {err}");
    }
}

#[test]
fn a_guest_waiting_for_nothing_is_wedged_with_one_line_and_status_3() {
    for (how, setup) in [
        ("wedge=1", &["--pmu", "emulated"][..]),
        ("wedge=2", &["--nvhe", "--pmu", "off"]),
    ] {
        let o = boot(setup, how);
        let out = String::from_utf8_lossy(&o.stdout);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(3), "{how}: {out}{err}");
        assert!(
            out.contains("waiting for an interrupt that cannot come"),
            "{out}"
        );
        let why: Vec<&str> = err.lines().filter(|l| l.contains("wedged:")).collect();
        assert_eq!(why.len(), 1, "{how}: {err}");
        assert!(why[0].contains("nothing can raise one"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

fn qemu() -> Option<String> {
    // -icount: QEMU's counters follow the instructions it executes, not
    // the host's clock, so a deadline a loaded host would overrun in wall
    // time is the same every run.
    qemu_console("timer.bin", &["-icount", "shift=0"])
}

#[test]
fn the_polled_subtests_pass_on_qemu_as_on_hyperprof() {
    let Some(q) = qemu() else {
        return;
    };
    let o = boot(&[], "");
    assert!(o.status.success());
    let ours = String::from_utf8_lossy(&o.stdout);
    let polled = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| l.starts_with("PASS: ") || l.starts_with("FAIL: "))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(polled(&q).len(), POLLED, "QEMU:\n{q}");
    assert_eq!(polled(&q), polled(&ours), "QEMU:\n{q}\nhyperprof:\n{ours}");
    assert!(polled(&q).iter().all(|l| l.starts_with("PASS: ")), "{q}");
    // QEMU before 9.1 reports its back-compatible 62.5 MHz, later ones
    // 1 GHz for -cpu max, as hyperprof does.
    assert!(
        q.contains("CNTFRQ_EL0 62500000") || q.contains("CNTFRQ_EL0 1000000000"),
        "{q}"
    );
}
