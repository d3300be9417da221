//! `hyperprof boot`: the repository's guest images (guests/) as VMs, their
//! console compared with QEMU's virt board running the same binary, in
//! every host and PMU set-up, and the exit statuses.

#[allow(dead_code)] // the perf helpers serve the other end-to-end tests
mod common;

use std::path::Path;
use std::process::Output;

use common::{
    boot, guest_image as image, hyperprof, qemu_console, scratch, stderr, stdout, BOOT_SETUPS,
};

/// qemu-system-aarch64's console for `name`, with `-icount shift=0` when
/// `icount`.
fn qemu(name: &str, icount: bool) -> Option<String> {
    qemu_console(name, if icount { &["-icount", "shift=0"] } else { &[] })
}

const SETUPS: [&[&str]; 5] = BOOT_SETUPS;

fn in_setup(image: &Path, setup: &[&str], extra: &[&str]) -> Output {
    let mut args = vec![image.to_str().unwrap()];
    args.extend_from_slice(setup);
    args.extend_from_slice(extra);
    boot(&args)
}

fn assert_clean(o: &Output, what: &str) {
    assert!(
        o.status.success(),
        "{what}: status {:?}\n{}{}",
        o.status,
        stdout(o),
        stderr(o)
    );
    assert!(
        stderr(o).contains("invariants: all hold"),
        "{what}: {}",
        stderr(o)
    );
}

#[test]
fn hello_and_selftest_print_what_they_print_on_qemu_in_every_setup() {
    for name in ["hello.bin", "selftest.bin"] {
        let reference = qemu(name, false);
        for setup in SETUPS {
            let o = in_setup(&image(name), setup, &[]);
            assert_clean(&o, &format!("{name} {setup:?}"));
            // stdout is the guest's UART and nothing else.
            if let Some(r) = &reference {
                assert_eq!(stdout(&o), *r, "{name} {setup:?}");
            }
        }
    }
    let o = in_setup(&image("selftest.bin"), SETUPS[0], &[]);
    assert!(stdout(&o).ends_with("SUMMARY: 9 tests, 0 unexpected failures\n"));
    // The ELF image boots by its program headers to the same output.
    let o = boot(&[image("hello.elf").to_str().unwrap()]);
    assert_clean(&o, "hello.elf");
    assert_eq!(stdout(&o), stdout(&boot(&["builtin:hello"])));
}

#[test]
fn the_guests_inst_retired_equals_qemus_icount() {
    let Some(reference) = qemu("icount.bin", true) else {
        return;
    };
    // With the partitioned PMU the guest's own counter counts every
    // instruction it retires: QEMU's count exactly.
    let o = in_setup(&image("icount.bin"), SETUPS[0], &[]);
    assert_clean(&o, "icount partitioned");
    assert_eq!(stdout(&o), reference);
    // With an emulated PMU the MSR that sets PMCR_EL0.E traps and the
    // hypervisor emulates it: it never retires at EL1, so every count is
    // one short of QEMU's, on VHE and nVHE hosts alike.
    let short: String = reference
        .lines()
        .map(|l| match l.split_once(" iterations: ") {
            Some((head, rest)) => {
                let (n, tail) = rest.split_once(' ').unwrap();
                let n: u64 = n.parse().unwrap();
                format!("{head} iterations: {} {tail}\n", n - 1)
            }
            None => format!("{l}\n"),
        })
        .collect();
    for setup in &SETUPS[1..3] {
        let o = in_setup(&image("icount.bin"), setup, &[]);
        assert_clean(&o, &format!("icount {setup:?}"));
        assert_eq!(stdout(&o), short, "{setup:?}");
    }
}

#[test]
fn the_guests_spe_session_records_its_loop_in_every_setup() {
    for setup in SETUPS {
        let o = in_setup(&image("spe.bin"), setup, &["--spe"]);
        assert_clean(&o, &format!("spe {setup:?}"));
        let out = stdout(&o);
        assert!(
            out.ends_with("SUMMARY: 7 tests, 0 unexpected failures\n"),
            "{setup:?}: {out}"
        );
        assert!(!out.contains("FAIL"), "{out}");
    }
    // Without the SPE feature the guest sees PMSVer 0 and skips, as on QEMU.
    let o = in_setup(&image("spe.bin"), SETUPS[0], &[]);
    assert_clean(&o, "spe without the feature");
    if let Some(r) = qemu("spe.bin", false) {
        assert_eq!(stdout(&o), r);
    }
}

#[test]
fn exit_statuses_say_how_the_run_ended() {
    let dir = scratch("exit_statuses");
    // 3: the instruction budget ran out.
    let o = boot(&["builtin:spin", "--max-insns", "100000"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("Budget"), "{}", stderr(&o));
    // 3: WFI with interrupts masked and nothing to raise one.
    let wedge = dir.join("wedge.bin");
    std::fs::write(&wedge, [0x7f, 0x20, 0x03, 0xd5, 0x00, 0x00, 0x00, 0x14]).unwrap();
    let o = boot(&[wedge.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("Wedged"), "{}", stderr(&o));
    // 2: bad images and usage, each one line naming what is wrong.
    let empty = dir.join("empty.bin");
    std::fs::write(&empty, []).unwrap();
    let truncated = dir.join("truncated.elf");
    let elf = std::fs::read(image("hello.elf")).unwrap();
    std::fs::write(&truncated, &elf[..100]).unwrap();
    let cases: [(&[&str], &str); 5] = [
        (&[empty.to_str().unwrap()], "empty"),
        (&[truncated.to_str().unwrap()], "truncated"),
        (&["/nonexistent/image"], "No such file"),
        (&["builtin:nope"], "no built-in image"),
        (
            &["builtin:hello", "--nvhe", "--pmu", "partitioned"],
            "VHE host",
        ),
    ];
    for (args, says) in cases {
        let o = boot(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains(says), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(o.stdout.is_empty());
    }
}

#[test]
fn the_report_file_holds_the_runs_figures() {
    let dir = scratch("report_file");
    let report = dir.join("boot.json");
    let o = boot(&["builtin:hello", "--report", report.to_str().unwrap()]);
    assert_clean(&o, "hello --report");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(v["end"], "power-off");
    assert!(v["instructions"].as_u64().unwrap() > 10_000);
    // hello writes its console byte by byte through the PL011: one MMIO
    // exit per byte, and a flag-register read before each.
    let bytes = stdout(&o).len() as u64;
    assert_eq!(v["exits"]["mmio"].as_u64().unwrap(), 2 * bytes);
    assert_eq!(v["exits"]["hypercalls"].as_u64().unwrap(), 2);
    assert_eq!(v["invariants"].as_array().unwrap().len(), 0);
}

#[test]
fn out_writes_the_hosts_profile_for_perf() {
    let dir = scratch("boot_out");
    let o = boot(&["builtin:hello", "--out", dir.to_str().unwrap()]);
    assert_clean(&o, "hello --out");
    let data = dir.join("host.perf.data");
    assert!(stderr(&o).contains(&format!("wrote {}", data.display())));
    assert!(dir.join("vmlinux-host.elf").exists());
    // hyperprof reads it back: records from both CPUs.
    let stats = hyperprof()
        .args(["spe", "stats", "--json"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(stats.status.success(), "{}", stderr(&stats));
    let v: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    let records = v["records"].as_u64().unwrap();
    assert!(records > 0, "{v}");
    // And perf opens it (perf_report_d asserts it succeeds).
    if common::perf_available() {
        common::perf_report_d(&data);
    }
}
