//! Compiled code against QEMU user mode: a freestanding C workload
//! (tests/c/workload.c: sorting, CRC, recursion, switch tables, 64/128-bit
//! arithmetic and division, byte/halfword accesses, atomics) built by the
//! cross gcc at several optimization levels, for Armv8.0 (exclusives) and
//! Armv8.1 (LSE), runs under `qemu-aarch64-static -cpu max` and under the
//! engine at EL0; stdout must be identical.

mod common;

use common::{run_user, temp_dir, tools_present, FlatBus, UserEnd};
use hyperprof_a64::Cpu;
use std::process::Command;

#[test]
fn compiled_c_workload_matches_qemu_user() {
    if !tools_present(
        "compiled_c_workload_matches_qemu_user",
        &["qemu-aarch64-static", "aarch64-linux-gnu-gcc"],
    ) {
        return;
    }
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/workload.c");
    let dir = temp_dir("compiled");
    let mut runs = 0;
    for march in ["armv8-a", "armv8.1-a"] {
        for opt in ["-O0", "-O2", "-Os"] {
            let exe = dir.join(format!("w-{march}{opt}"));
            let cc = Command::new("aarch64-linux-gnu-gcc")
                .args([
                    opt,
                    &format!("-march={march}"),
                    "-mno-outline-atomics",
                    "-mgeneral-regs-only",
                ])
                .args([
                    "-ffreestanding",
                    "-nostdlib",
                    "-static",
                    "-fno-stack-protector",
                    "-o",
                ])
                .arg(&exe)
                .arg(&src)
                .arg("-lgcc")
                .output()
                .expect("running aarch64-linux-gnu-gcc");
            assert!(
                cc.status.success(),
                "gcc {march} {opt}: {}",
                String::from_utf8_lossy(&cc.stderr)
            );
            let qemu = Command::new("qemu-aarch64-static")
                .args(["-cpu", "max"])
                .arg(&exe)
                .output()
                .expect("running qemu");
            assert!(
                qemu.status.success(),
                "qemu {march} {opt}: {:?}",
                qemu.status
            );
            let image = std::fs::read(&exe).expect("reading the workload");
            let mut bus = FlatBus::new();
            let entry = bus.load_elf(&image).expect("loading the workload");
            let mut cpu = Cpu::new();
            let (end, out) = run_user(&mut bus, &mut cpu, entry, 200_000_000);
            assert_eq!(end, UserEnd::Exited(0), "{march} {opt}");
            assert!(qemu.stdout.len() > 100, "the workload printed its results");
            assert_eq!(
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&qemu.stdout),
                "{march} {opt}: engine vs qemu-aarch64-static"
            );
            runs += 1;
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(runs, 6);
}
