//! `hyperprof boot --smp N`: guests with several vCPUs, scheduled over the
//! machine's physical CPUs. guests/images/smp.bin starts its secondaries
//! with PSCI CPU_ON and checks PSCI's answers and shared atomic counters;
//! its console is compared with QEMU's virt board with as many CPUs, and
//! the report says where every vCPU ran.

#[allow(dead_code)] // the perf helpers serve the other end-to-end tests
mod common;

use std::process::Output;

use common::{boot, guest_image as image, qemu_console, scratch, stderr, stdout, BOOT_SETUPS};

/// qemu-system-aarch64's console for `name` with `cpus` CPUs.
fn qemu(name: &str, cpus: usize) -> Option<String> {
    qemu_console(name, &["-smp", &cpus.to_string()])
}

const SETUPS: [&[&str]; 5] = BOOT_SETUPS;

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

fn smp(n: usize, setup: &[&str], extra: &[&str]) -> Output {
    let smp = image("smp.bin");
    let n = n.to_string();
    let mut args = vec![smp.to_str().unwrap(), "--smp", &n];
    args.extend_from_slice(setup);
    args.extend_from_slice(extra);
    boot(&args)
}

#[test]
fn smp_prints_what_qemu_prints_with_one_two_and_four_cpus_in_every_setup() {
    for n in [1, 2, 4] {
        let reference = qemu("smp.bin", n);
        for setup in SETUPS {
            let o = smp(n, setup, &[]);
            assert_clean(&o, &format!("--smp {n} {setup:?}"));
            let out = stdout(&o);
            assert!(!out.contains("FAIL"), "--smp {n} {setup:?}: {out}");
            assert!(out.contains(&format!("cpus: {n}\n")), "{out}");
            if let Some(r) = &reference {
                assert_eq!(out, *r, "--smp {n} {setup:?}");
            }
        }
    }
}

/// The `--report` of a run.
fn report(args: &[&str], name: &str) -> (Output, serde_json::Value) {
    let path = scratch(name).join("boot.json");
    let mut all = args.to_vec();
    all.extend_from_slice(&["--report", path.to_str().unwrap()]);
    let o = boot(&all);
    let v = if o.status.success() {
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
    } else {
        serde_json::Value::Null
    };
    (o, v)
}

#[test]
fn vcpus_move_between_fewer_cpus_and_their_pmu_counts_follow_them() {
    let smp = image("smp.bin");
    let smp = smp.to_str().unwrap();
    // Four vCPUs on two CPUs, slices short enough that every count the
    // guest makes spans several of them: each CPU's INST_RETIRED over a
    // loop must be exact however often its vCPU was put and moved.
    for (i, setup) in SETUPS[..3].iter().enumerate() {
        let mut args = vec![smp, "--smp", "4", "--cpus", "2", "--slice", "300000"];
        args.extend_from_slice(setup);
        args.extend_from_slice(&["--append", "pmu=1"]);
        let (o, v) = report(&args, &format!("migrate{i}"));
        assert_clean(&o, &format!("{setup:?}"));
        let out = stdout(&o);
        assert!(!out.contains("FAIL"), "{setup:?}: {out}");
        for cpu in 0..4 {
            assert!(
                out.contains(&format!(
                    "PASS: pmu: INST_RETIRED follows its CPU (cpu{cpu})"
                )),
                "{out}"
            );
        }
        let vcpus = v["vcpus"].as_array().unwrap();
        assert_eq!(vcpus.len(), 4);
        for (k, vc) in vcpus.iter().enumerate() {
            assert_eq!(vc["mpidr"].as_u64(), Some(0x8000_0000 | k as u64));
            let cpus = vc["cpus"].as_array().unwrap();
            assert_eq!(cpus.len(), 2, "vCPU {k} ran on {cpus:?}");
            assert!(vc["migrations"].as_u64().unwrap() > 0, "{vc}");
            // Every slice is a load and a put: the world switch.
            assert_eq!(vc["loads"], vc["slices"], "{vc}");
            // The guest touched its PMU: its state went to the hardware
            // at loads after that.
            if setup.contains(&"partitioned") {
                assert!(vc["pmu_live_loads"].as_u64().unwrap() > 0, "{vc}");
            }
        }
    }
    // One CPU: the vCPUs take turns on it, nothing moves, the answers and
    // counts are the same.
    let (o, v) = report(
        &[
            smp, "--smp", "2", "--cpus", "1", "--slice", "300000", "--append", "pmu=1",
        ],
        "one_cpu",
    );
    assert_clean(&o, "--cpus 1");
    assert!(!stdout(&o).contains("FAIL"), "{}", stdout(&o));
    for vc in v["vcpus"].as_array().unwrap() {
        assert_eq!(vc["cpus"], serde_json::json!([0]), "{vc}");
        assert_eq!(vc["migrations"], 0, "{vc}");
    }
    // With guest SPE on every vCPU the SMP guest boots the same.
    let o = smp_with_spe();
    assert_clean(&o, "--spe");
    assert!(!stdout(&o).contains("FAIL"), "{}", stdout(&o));
}

fn smp_with_spe() -> Output {
    smp(2, SETUPS[0], &["--spe", "--cpus", "3"])
}

#[test]
fn the_vcpu_count_is_checked_against_the_gic_and_the_cpu_count_against_the_machine() {
    // The redistributor region holds 123 frames: 123 vCPUs boot (hello
    // runs on vCPU 0 and powers off), 124 is refused.
    let hello = boot(&["builtin:hello"]);
    let o = boot(&["builtin:hello", "--smp", "123", "--pmu", "off"]);
    assert_clean(&o, "--smp 123");
    assert_eq!(stdout(&o), stdout(&hello));
    let cases: [(&[&str], &str); 5] = [
        (
            &["--smp", "124"],
            "redistributor region holds 1 to 123 vCPUs",
        ),
        (&["--smp", "0"], "holds 1 to 123 vCPUs"),
        (&["--cpus", "0"], "give 1 to 16 physical CPUs"),
        (&["--cpus", "17"], "give 1 to 16 physical CPUs"),
        (&["--slice", "0"], "at least one instruction"),
    ];
    for (args, says) in cases {
        let mut all = vec!["builtin:hello"];
        all.extend_from_slice(args);
        let o = boot(&all);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains(says), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(o.stdout.is_empty());
    }
}

/// A64 instruction words as the bytes of a raw image.
fn code(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

#[test]
fn an_smp_guest_whose_cpus_all_wait_for_nothing_is_wedged() {
    let dir = scratch("smp_wedge");
    // vCPU 0 starts vCPU 1 (MPIDR 1) at `secondary`, then both wait for
    // an interrupt with interrupts masked and no source of one.
    let words = [
        0xD280_0060, // movz x0, #0x3
        0xF2B8_8000, // movk x0, #0xc400, lsl #16: CPU_ON (SMC64)
        0xD280_0021, // mov x1, #1: the target's MPIDR
        0x1000_00A2, // adr x2, secondary (5 instructions on)
        0xD280_0003, // mov x3, #0: the context id
        0xD400_0002, // hvc #0
        0xD503_207F, // wfi
        0x17FF_FFFF, // b the wfi
        0xD503_207F, // secondary: wfi
        0x17FF_FFFF, // b the wfi
    ];
    let wedge = dir.join("wedge2.bin");
    std::fs::write(&wedge, code(&words)).unwrap();
    // With one vCPU the CPU_ON names no CPU and fails; vCPU 0 waits all
    // the same.
    for n in ["1", "2", "4"] {
        let o = boot(&[wedge.to_str().unwrap(), "--smp", n]);
        assert_eq!(o.status.code(), Some(3), "--smp {n}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.starts_with("boot: Wedged after"), "--smp {n}: {err}");
    }
    // With two vCPUs both went idle; the second retired only its WFI.
    let path = scratch("wedge_report").join("r.json");
    let o = boot(&[
        wedge.to_str().unwrap(),
        "--smp",
        "2",
        "--report",
        path.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(3));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(v["end"], "wedged");
    assert_eq!(v["exits"]["idle"], 2);
    assert_eq!(v["vcpus"][1]["instructions"], 1);
}

#[test]
fn a_guest_that_faults_at_its_own_vector_forever_is_wedged() {
    let dir = scratch("exception_loop");
    // The vectors 2 KiB past the code, in zeroed RAM: the UDF #0 there
    // (0x00000000) faults to the very vector it is at.
    let words = [
        0x1000_4000, // adr x0, . + 0x800
        0xD518_C000, // msr vbar_el1, x0
        0xD503_3FDF, // isb
        0x0000_0000, // udf #0
    ];
    let image = dir.join("loop.bin");
    std::fs::write(&image, code(&words)).unwrap();
    for n in ["1", "2"] {
        let o = boot(&[image.to_str().unwrap(), "--smp", n]);
        assert_eq!(o.status.code(), Some(3), "--smp {n}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.starts_with("boot: Wedged after"), "--smp {n}: {err}");
        // RAM at 0x4000_0000, raw images at + 0x80000: the vector is at
        // 0x4008_0800 + 0x200; UDF's syndrome is EC 0, IL 1.
        assert!(
            err.contains(
                "wedged: vCPU 0 takes an exception at its own vector 0x40080a00 \
                 (ESR_EL1 0x2000000) again and again"
            ),
            "--smp {n}: {err}"
        );
    }
}

#[test]
fn a_secondary_can_reset_the_system_while_the_boot_cpu_spins() {
    let dir = scratch("smp_reset");
    let words = [
        0xD280_0060, // movz x0, #0x3
        0xF2B8_8000, // movk x0, #0xc400, lsl #16: CPU_ON (SMC64)
        0xD280_0021, // mov x1, #1
        0x1000_00A2, // adr x2, secondary (5 instructions on)
        0xD280_0003, // mov x3, #0
        0xD400_0002, // hvc #0
        0x1400_0000, // b . (spins until the secondary ends the run)
        0xD503_201F, // nop
        0xD280_0120, // secondary: movz x0, #0x9
        0xF2B0_8000, // movk x0, #0x8400, lsl #16: SYSTEM_RESET
        0xD400_0002, // hvc #0
        0x1400_0000, // b .
    ];
    let image = dir.join("reset.bin");
    std::fs::write(&image, code(&words)).unwrap();
    let o = boot(&[image.to_str().unwrap(), "--smp", "2"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).starts_with("boot: Reset after"),
        "{}",
        stderr(&o)
    );
    // With one vCPU the CPU_ON fails and the boot CPU spins until the
    // instruction budget runs out.
    let o = boot(&[image.to_str().unwrap(), "--max-insns", "1000000"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).starts_with("boot: Budget after"),
        "{}",
        stderr(&o)
    );
}
