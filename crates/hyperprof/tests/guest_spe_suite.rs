//! The guest SPE suite (`guests/programs/spesuite.c`) under `hyperprof
//! boot --spe`: each group of subtests boots the image in every host and
//! PMU set-up, with the host profiling beside it, and must print exactly
//! its PASS lines, no FAIL, and end with the VM powered off and every
//! invariant holding. Without the SPE feature the suite skips, as it does
//! on QEMU (which has no SPE).

#[allow(dead_code)] // the perf helpers serve the other end-to-end tests
mod common;

use std::path::PathBuf;
use std::process::Output;

use common::{guest_image, hyperprof, qemu_console};

fn image() -> PathBuf {
    guest_image("spesuite.bin")
}

/// The board's SPE is FEAT_SPEv1p5 (PMSVer 6), the version that defines
/// PMBIDR_EL1.MaxBuffSize.
///
/// Host and guest PMU set-ups (as tests/boot.rs), each with the
/// MaxBuffSize the VMM gives the VM (all representable, all above the
/// suite's 64 KiB buffer).
const SETUPS: [(&[&str], u64); 5] = [
    (&["--pmu", "partitioned"], 1 << 20),
    (&["--pmu", "emulated"], 128 << 10),
    (&["--nvhe", "--pmu", "emulated"], 3 << 20),
    (&["--pmu", "off"], 4 << 20),
    (&["--nvhe", "--pmu", "off"], 8 << 20),
];

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Boots the suite with only `group` selected in every set-up and checks
/// that it prints exactly `passes` (the subtest names after
/// "PASS: spe-GROUP: ") and nothing failed.
fn group_passes_everywhere(group: &str, passes: &[&str]) -> Vec<String> {
    let mut stderrs = Vec::new();
    for (setup, max_buffer) in SETUPS {
        let bootargs = format!("spe.only={group} spe.max_buffer={max_buffer} spe.pmsver=6");
        let o = hyperprof()
            .arg("boot")
            .arg(image())
            .args(setup)
            .args(["--spe", "--spe-max-buffer", &max_buffer.to_string()])
            .args(["--append", &bootargs])
            .output()
            .unwrap();
        let (out, err) = (stdout(&o), stderr(&o));
        let what = format!("{group} {setup:?}");
        assert!(o.status.success(), "{what}: {:?}\n{out}{err}", o.status);
        assert!(err.contains("invariants: all hold"), "{what}: {err}");
        assert!(!out.contains("FAIL"), "{what}:\n{out}");
        for p in passes {
            let line = format!("PASS: spe-{group}: {p}\n");
            assert!(out.contains(&line), "{what}: no {line:?} in\n{out}");
        }
        let summary = format!("SUMMARY: {} tests, 0 unexpected failures\n", passes.len());
        assert!(out.ends_with(&summary), "{what}:\n{out}");
        stderrs.push(err);
    }
    stderrs
}

/// The scheduling rounds of a boot's summary ("..., N rounds").
fn rounds(stderr: &str) -> u64 {
    let line = stderr.lines().find(|l| l.starts_with("boot: ")).unwrap();
    let n = line.trim_end_matches(" rounds").rsplit(' ').next().unwrap();
    n.parse().unwrap()
}

#[test]
fn spe_introspection() {
    group_passes_everywhere(
        "introspection",
        &[
            "ID_AA64DFR0_EL1.PMSVer names an SPE version",
            "PMSVer is the version the VMM gave",
            "PMSIDR_EL1 bits [63:33] are RES0",
            "PMSIDR_EL1 FE, FT and FL: every filter",
            "PMSIDR_EL1.Interval is a defined minimum",
            "PMSIDR_EL1.MaxSize is 64 bytes to 2 KiB",
            "PMSIDR_EL1.CountSize is 12 or 16 bits",
            "PMSIDR_EL1.FnE present exactly from FEAT_SPEv1p2",
            "PMBIDR_EL1.P clear, the buffer is the guest's",
            "PMBIDR_EL1.Align at most the record size",
            "PMBIDR_EL1 bits [63:48] are RES0",
            "PMBIDR_EL1.MaxBuffSize only from FEAT_SPEv1p5",
            "PMSIDR_EL1.FDS only from FEAT_SPEv1p4",
            "PMBIDR_EL1.MaxBuffSize is the size the VMM set",
            "writes to PMSIDR_EL1 and PMBIDR_EL1 are UNDEFINED",
        ],
    );
}

#[test]
fn spe_buffer() {
    let stderrs = group_passes_everywhere(
        "buffer",
        &[
            "after reset the buffer and sampling are off",
            "after reset every buffer and sampling register reads 0",
            "PMBPTR_EL1 advances within the buffer",
            "PMBSR_EL1 stays clean",
            "the buffer fills with whole records up to PMBPTR_EL1",
            "nothing is written past PMBPTR_EL1",
            "every record has one PC, in the profiled code",
            "every sampled access's address lies in the workload's data",
            "no physical address packets with PMSCR_EL2.PA clear",
            "every PC packet says EL1, Non-secure",
            "PMSIRR_EL1 reads back, PMSICR_EL1.COUNT stays within the interval",
            "with PMBLIMITR_EL1.E clear nothing is written",
            "with PMSCR_EL1.E1SPE clear EL1 is not sampled",
            "a session across vCPU put, load and migration stays whole",
        ],
    );
    // The long session outlasts a time slice: the vCPU was put and moved.
    for err in stderrs {
        assert!(rounds(&err) >= 2, "{err}");
    }
}

#[test]
fn spe_events() {
    group_passes_everywhere(
        "events",
        &[
            "buffer full raises PMBIRQ once",
            "buffer full: PMBSR_EL1 S=1 EC=BUF BSC=1",
            "buffer full: PMBPTR_EL1 within a record of the limit",
            "buffer full: the records decode and the handler cleared PMBSR_EL1",
            "a buffer beyond MaxBuffSize: S=1 EC=BUF BSC=size, nothing written",
            "a handler that restarts the full buffer gets the next buffer-full event",
            "stage-1 fault: PMBIRQ with PMBSR_EL1 S=1 EC=FAULT_S1",
            "stage-1 fault: FSC is a level 2 translation fault",
            "stage-1 fault: PMBPTR_EL1 holds the faulting address",
            "stage-1 fault after a mapped page: reported at enable, PMBPTR_EL1 unmoved",
            "buffer outside RAM: PMBIRQ with PMBSR_EL1 S=1 EA=1",
            "buffer outside RAM: nothing written",
            "software-set PMBSR_EL1.S reads back",
            "with PMBSR_EL1.S set nothing is profiled",
            "software-set service: the IRQ is taken until PMBSR_EL1.S is cleared",
            "once PMBSR_EL1.S is cleared the buffer fills again",
            // Through the board's GICv3: acknowledged at ICC_IAR1_EL1 as
            // the SPE IRQ attribute's INTID.
            "every PMBIRQ is INTID 21 at the GIC",
        ],
    );
}

#[test]
fn spe_filters() {
    group_passes_everywhere(
        "filters",
        &[
            "unfiltered, the workload's branches, loads, stores and refills are sampled",
            "PMSFCR_EL1.FT with B: only branches",
            "PMSFCR_EL1.FT with LD: only loads",
            "PMSFCR_EL1.FT with ST: only stores",
            "PMSFCR_EL1.FE with PMSEVFR_EL1 L1D-REFILL: only refills",
            "PMSFCR_EL1.FT with B and LD: branches and loads, no stores",
            "PMSFCR_EL1.FnE with PMSNEVFR_EL1 L1D-REFILL: no refills",
            "PMSFCR_EL1.FL with PMSLATFR_EL1: only latencies at least MINLAT",
        ],
    );
}

#[test]
fn spe_discard() {
    group_passes_everywhere(
        "discard",
        &[
            "PMBPTR_EL1 does not move",
            "no record is written",
            "no buffer management event",
        ],
    );
}

#[test]
fn spe_timestamps_and_contextidr() {
    group_passes_everywhere(
        "packets",
        &[
            "with TS and CX clear records end in END and carry no CONTEXT",
            "PMSCR_EL1.TS: every record ends in a timestamp",
            "the timestamps are nonzero and never go back",
            "PMSCR_EL1.CX: every record carries CONTEXTIDR_EL1",
        ],
    );
}

fn qemu() -> Option<String> {
    qemu_console("spesuite.bin", &[])
}

#[test]
fn without_spe_the_suite_skips_as_on_qemu() {
    let skip = "SKIP: spe: no SPE (ID_AA64DFR0_EL1.PMSVer = 0)\n\
                SUMMARY: 0 tests, 0 unexpected failures\n";
    for (setup, _) in SETUPS {
        let o = hyperprof()
            .arg("boot")
            .arg(image())
            .args(setup)
            .output()
            .unwrap();
        assert!(o.status.success(), "{setup:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("invariants: all hold"),
            "{}",
            stderr(&o)
        );
        assert_eq!(stdout(&o), skip, "{setup:?}");
    }
    if let Some(q) = qemu() {
        assert_eq!(q, skip);
    }
}
