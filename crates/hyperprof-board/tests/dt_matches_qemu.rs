//! The board's device tree against QEMU's own for `-M virt,gic-version=3`:
//! every node both describe has the same addresses, interrupts and
//! compatible strings, as Linux's dtc reads them.

use std::path::Path;
use std::process::Command;

use hyperprof_board::fdt::{build, BoardDesc};
use hyperprof_board::map::{GicLayout, Region, RAM_BASE};

/// Whether `tool` runs; when CI=true a missing tool is a failure.
fn have(tool: &str) -> bool {
    let ok = Command::new(tool).arg("--version").output().is_ok();
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{tool} is missing and CI=true: .ci/run installs it"
        );
        eprintln!("skipped: {tool} is not installed");
    }
    ok
}

/// dtc's source form of a blob.
fn dts(dtb: &Path) -> String {
    let out = Command::new("dtc")
        .args(["-q", "-I", "dtb", "-O", "dts"])
        .arg(dtb)
        .output()
        .expect("dtc runs");
    assert!(
        out.status.success(),
        "dtc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("dts is text")
}

/// The value text of `prop` in the node whose path ends with `node`
/// (`/`-separated node names, as dtc prints them).
fn prop(dts: &str, node: &str, prop: &str) -> Option<String> {
    let mut path: Vec<String> = Vec::new();
    for line in dts.lines() {
        let t = line.trim();
        if let Some(name) = t.strip_suffix(" {") {
            path.push(name.to_string());
        } else if t == "};" {
            path.pop();
        } else if path.join("/").ends_with(node) {
            let (k, v) = t.split_once(" = ").unwrap_or((t.trim_end_matches(';'), ""));
            if k == prop {
                return Some(v.trim_end_matches(';').to_string());
            }
        }
    }
    None
}

#[test]
fn nodes_match_qemu_virt() {
    if !have("qemu-system-aarch64") || !have("dtc") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("hyperprof-dt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let qemu_dtb = dir.join("qemu.dtb");
    let out = Command::new("qemu-system-aarch64")
        .arg("-M")
        .arg(format!("virt,gic-version=3,dumpdtb={}", qemu_dtb.display()))
        .args([
            "-cpu",
            "max",
            "-smp",
            "2",
            "-m",
            "128M",
            "-nographic",
            "-nodefaults",
        ])
        .output()
        .expect("qemu-system-aarch64 runs");
    assert!(
        qemu_dtb.exists(),
        "QEMU wrote no dtb: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ours_dtb = dir.join("ours.dtb");
    let blob = build(&BoardDesc {
        ram: Region {
            base: RAM_BASE,
            size: 128 << 20,
        },
        cpus: 2,
        bootargs: String::new(),
        pmu: true,
        spe: true,
        gic: GicLayout::VIRT,
    })
    .unwrap();
    std::fs::write(&ours_dtb, blob).unwrap();
    let (q, o) = (dts(&qemu_dtb), dts(&ours_dtb));
    std::fs::remove_dir_all(&dir).ok();
    let checks = [
        ("", "compatible"),
        ("", "#address-cells"),
        ("", "#size-cells"),
        ("psci", "compatible"),
        ("psci", "method"),
        ("psci", "cpu_on"),
        ("psci", "cpu_off"),
        ("psci", "cpu_suspend"),
        ("memory@40000000", "reg"),
        ("memory@40000000", "device_type"),
        ("cpus", "#address-cells"),
        ("cpus/cpu@0", "reg"),
        ("cpus/cpu@1", "reg"),
        ("cpus/cpu@1", "enable-method"),
        ("intc@8000000", "compatible"),
        ("intc@8000000", "reg"),
        ("intc@8000000", "#interrupt-cells"),
        ("intc@8000000", "#redistributor-regions"),
        ("timer", "compatible"),
        ("timer", "interrupts"),
        ("pmu", "compatible"),
        ("pmu", "interrupts"),
        ("pl011@9000000", "compatible"),
        ("pl011@9000000", "reg"),
        ("pl011@9000000", "interrupts"),
        ("pl011@9000000", "clock-names"),
        ("apb-pclk", "clock-frequency"),
        ("chosen", "stdout-path"),
    ];
    for (node, p) in checks {
        let qv = prop(&q, node, p);
        assert!(qv.is_some(), "QEMU's tree has no {node}:{p}");
        assert_eq!(prop(&o, node, p), qv, "{node}:{p}");
    }
    // QEMU models no SPE; ours names its interrupt, INTID 21 (PPI 5).
    assert_eq!(
        prop(&o, "spe-pmu", "interrupts").as_deref(),
        Some("<0x01 0x05 0x04>")
    );
}
