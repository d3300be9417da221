//! Differential test against QEMU user mode: random instructions of every
//! class from random register, flag and memory states, assembled and linked
//! with the cross toolchain at test time, run under `qemu-aarch64-static
//! -cpu max` and under the engine (EL0, with a syscall shim at EL1), and
//! compared register by register and byte by byte.

mod common;
mod gen;

use common::{build_static, run_user, temp_dir, tools_present, FlatBus, UserEnd};
use gen::{gen_case, program, Rng, CLASSES, SCRATCH};
use hyperprof_a64::Cpu;
use std::process::Command;

const CASES_PER_CLASS: usize = 500;
const SEED: u64 = 0x5eed_a64a_64a6_4a64;

const REG_NAMES: [&str; 34] = [
    "x0", "x1", "x2", "x3", "x4", "x5", "x6", "x7", "x8", "x9", "x10", "x11", "x12", "x13", "x14",
    "x15", "x16", "x17", "x18", "x19", "x20", "x21", "x22", "x23", "x24", "x25", "x26", "x27",
    "x28", "x29", "x30", "sp", "nzcv", "pad",
];

#[test]
fn random_instructions_match_qemu_user() {
    if !tools_present(
        "random_instructions_match_qemu_user",
        &[
            "qemu-aarch64-static",
            "aarch64-linux-gnu-as",
            "aarch64-linux-gnu-ld",
        ],
    ) {
        return;
    }
    let mut rng = Rng(SEED);
    let mut cases = Vec::new();
    for i in 0..CASES_PER_CLASS * CLASSES.len() {
        cases.push(gen_case(&mut rng, i, i % CLASSES.len()));
    }
    let dir = temp_dir("differential");
    let exe = build_static(&dir, "diff", &program(&cases))
        .unwrap_or_else(|e| panic!("building the test program: {e}"));
    let image = std::fs::read(&exe).expect("reading the test program");
    let mut bus = FlatBus::new();
    let entry = bus.load_elf(&image).expect("loading the test program");
    let mut cpu = Cpu::new();
    let (end, ours) = run_user(&mut bus, &mut cpu, entry, 50_000_000);
    assert_eq!(
        end,
        UserEnd::Exited(0),
        "engine run ended badly (program kept in {})",
        dir.display()
    );

    let qemu = Command::new("qemu-aarch64-static")
        .args(["-cpu", "max"])
        .arg(&exe)
        .output()
        .expect("running qemu-aarch64-static");
    assert!(
        qemu.status.success(),
        "qemu run failed: {:?} {}",
        qemu.status,
        String::from_utf8_lossy(&qemu.stderr)
    );

    let theirs = qemu.stdout;
    let rec = 272 + SCRATCH;
    assert_eq!(theirs.len(), cases.len() * rec, "qemu output length");
    assert_eq!(ours.len(), theirs.len(), "engine output length");
    let mut failures = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let (a, b) = (
            &ours[i * rec..(i + 1) * rec],
            &theirs[i * rec..(i + 1) * rec],
        );
        if a == b {
            continue;
        }
        let mut what = Vec::new();
        for r in 0..33 {
            let va = u64::from_le_bytes(a[r * 8..r * 8 + 8].try_into().unwrap_or_default());
            let vb = u64::from_le_bytes(b[r * 8..r * 8 + 8].try_into().unwrap_or_default());
            if va != vb {
                what.push(format!("{}: engine {va:#x} qemu {vb:#x}", REG_NAMES[r]));
            }
        }
        for k in 0..SCRATCH {
            if a[272 + k] != b[272 + k] {
                what.push(format!(
                    "scratch[{k}]: engine {:#04x} qemu {:#04x}",
                    a[272 + k],
                    b[272 + k]
                ));
            }
        }
        failures.push(format!(
            "case {i} ({}):\n{}  init {:?}\n  {}",
            CLASSES[i % CLASSES.len()],
            c.body,
            c.init,
            what.join("\n  ")
        ));
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "{} cases over {} classes compared with qemu-aarch64-static",
        cases.len(),
        CLASSES.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures
            .iter()
            .take(12)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
