//! The GICv3 as guests see it: `guests/programs/gic.c` booted under
//! `hyperprof boot` (one vCPU, VHE and nVHE hosts) and through the board
//! with two vCPUs (SGIs between them), its console compared line for line
//! with qemu-system-aarch64's (`-M virt,gic-version=3 -cpu max`, `-smp 1`
//! and `-smp 2`), the independent implementation of the driver's other
//! side. Then what interrupt delivery costs the hypervisor: exits per
//! interrupt delivered (SGI, PMU overflow, SPE buffer full) and list
//! register accesses per entry.

#[allow(dead_code)] // the perf and scratch helpers serve the other tests
mod common;

use common::{guest_image as image, hyperprof, qemu_console};
use hyperprof_arch::{PmsVer, PmuVer};
use hyperprof_board::map::GicLayout;
use hyperprof_board::vm::{BoardVm, BootOptions, VmState};
use hyperprof_kvm::uapi::VcpuFeatures;
use hyperprof_kvm::vgic::VgicStats;
use hyperprof_kvm::vm::{Kvm, PmuSetup, VcpuStats, VmConfig};
use hyperprof_sim::machine::{Machine, MachineConfig};
use hyperprof_sim::pe::PeConfig;
use hyperprof_sim::pmu::PmuConfig;
use hyperprof_sim::spe::SpeConfig;

/// qemu-system-aarch64's console for gic.bin with `cpus` CPUs.
fn qemu(cpus: u32) -> Option<String> {
    qemu_console("gic.bin", &["-smp", &cpus.to_string()])
}

/// Every line passes (or, with one CPU, the two-CPU group skips) and the
/// summary is clean.
fn assert_clean(out: &str, cpus: u32) {
    assert!(!out.contains("FAIL"), "{out}");
    assert!(
        out.lines()
            .last()
            .is_some_and(|l| l.starts_with("SUMMARY: ") && l.ends_with(" 0 unexpected failures")),
        "{out}"
    );
    let skips = out.lines().filter(|l| l.starts_with("SKIP: ")).count();
    assert_eq!(skips, usize::from(cpus == 1), "{out}");
    let passes = out.lines().filter(|l| l.starts_with("PASS: ")).count();
    assert_eq!(passes, if cpus == 1 { 25 } else { 28 }, "{out}");
}

#[test]
fn hyperprof_boot_prints_what_qemu_prints() {
    let reference = qemu(1);
    for setup in [
        &["--pmu", "partitioned"][..],
        &["--pmu", "emulated"],
        &["--nvhe", "--pmu", "emulated"],
        &["--nvhe", "--pmu", "off"],
    ] {
        let o = hyperprof()
            .arg("boot")
            .arg(image("gic.bin"))
            .args(setup)
            .output()
            .unwrap();
        let out = String::from_utf8(o.stdout).unwrap();
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(o.status.success(), "{setup:?}: {out}{err}");
        assert!(err.contains("invariants: all hold"), "{setup:?}: {err}");
        // Six SGIs to itself, each taken once; GIC MMIO stays in the
        // hypervisor.
        assert!(
            err.contains(
                "gic: 6 interrupts taken (0 PMU, 0 SPE, 6 SGI, 0 other), 0 maintenance exits"
            ),
            "{setup:?}: {err}"
        );
        assert_clean(&out, 1);
        if let Some(q) = &reference {
            assert_eq!(&out, q, "{setup:?}: hyperprof and QEMU differ");
        }
    }
}

/// A machine like `hyperprof boot`'s: two CPUs with an 8-counter PMUv3p5
/// and an SPEv1p5 unit.
fn kvm(nvhe: bool) -> Kvm {
    let pe = PeConfig {
        pmu: PmuConfig {
            counters: 8,
            version: PmuVer::V3p5,
            hpmn0: false,
            el2_implemented: true,
        },
        spe: Some(SpeConfig {
            pms_ver: PmsVer::V1p5,
            ..SpeConfig::default()
        }),
        fgt: true,
        uarch: Default::default(),
    };
    let m = Machine::new(&MachineConfig {
        pes: vec![pe; 2],
        ram_base: 0x8000_0000,
        ram_size: 512 << 20,
    })
    .unwrap();
    if nvhe {
        Kvm::new_nvhe(m)
    } else {
        Kvm::new(m)
    }
}

/// One board run: the console and what the hypervisor counted per vCPU.
struct Run {
    console: String,
    state: VmState,
    vcpu: Vec<VcpuStats>,
    gic: Vec<VgicStats>,
}

/// The guest PMU of a board run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pmu {
    Off,
    Emulated,
    /// The host keeps two counters (VHE only).
    Partitioned,
}

/// Boots `name` with `cpus` vCPUs (with the PMU at INTID 23 and SPE at
/// INTID 21 when asked) and the board's GIC, and runs every runnable vCPU
/// in turn, each slice on the other physical CPU.
fn board_run(name: &str, cpus: usize, nvhe: bool, pmu: Pmu, spe: bool, bootargs: &str) -> Run {
    let mut kvm = kvm(nvhe);
    if pmu == Pmu::Partitioned {
        kvm.set_host_pmu_reserve(2).unwrap();
    }
    let ram = 128 << 20;
    let vm = kvm
        .create_vm(VmConfig {
            ram_bytes: ram,
            memlock_limit: 64 << 20,
        })
        .unwrap();
    let features = VcpuFeatures {
        pmu_v3: pmu != Pmu::Off,
        spe,
    };
    let vcpus: Vec<usize> = (0..cpus)
        .map(|_| kvm.create_vcpu(vm, features).unwrap())
        .collect();
    for &v in &vcpus {
        if spe {
            let spu = kvm.spus()[0].id;
            kvm.configure_spe(v, spu, 21, 4 << 20).unwrap();
        }
        if pmu != Pmu::Off {
            let setup = PmuSetup {
                irq: 23,
                partitioned: pmu == Pmu::Partitioned,
                nr_counters: None,
                filters: Vec::new(),
            };
            kvm.configure_pmu(v, &setup).unwrap();
        }
    }
    let opts = BootOptions {
        bootargs: bootargs.to_string(),
        pmu: pmu != Pmu::Off,
        spe,
        gic: Some(GicLayout::VIRT),
    };
    let bytes = std::fs::read(image(name)).unwrap();
    let mut b = BoardVm::boot(&mut kvm, vm, ram, &vcpus, &bytes, &opts).unwrap();
    let mut round = 0usize;
    while !b.finished() {
        let mut ran = false;
        for (i, &v) in vcpus.iter().enumerate() {
            if !b.runnable(i) {
                continue;
            }
            ran = true;
            kvm.load(v, (i + round) % 2).unwrap();
            b.run_vcpu(&mut kvm, i, 20_000).unwrap();
            kvm.put(v).unwrap();
        }
        round += 1;
        assert!(ran, "{name}: no vCPU can run and the VM is {:?}", b.state());
        assert!(round < 20_000, "{name} never finished");
    }
    Run {
        console: String::from_utf8(b.take_console()).unwrap(),
        state: b.state().clone(),
        vcpu: vcpus.iter().map(|&v| kvm.vcpu_stats(v).unwrap()).collect(),
        gic: vcpus.iter().map(|&v| kvm.vgic_stats(v).unwrap()).collect(),
    }
}

#[test]
fn two_vcpus_exchange_sgis_as_on_qemu() {
    let reference = qemu(2);
    for nvhe in [false, true] {
        let r = board_run("gic.bin", 2, nvhe, Pmu::Off, false, "");
        assert_eq!(r.state, VmState::PoweredOff);
        assert_clean(&r.console, 2);
        if let Some(q) = &reference {
            assert_eq!(&r.console, q, "nvhe={nvhe}: hyperprof and QEMU differ");
        }
        // vCPU 1 took three pings, vCPU 0 its own SGIs and three pongs.
        assert_eq!(r.gic[1].acked_sgi, 3, "{:?}", r.gic[1]);
        assert_eq!(r.gic[1].sgi_traps, 3, "one pong per ping");
        // Edge-triggered SGIs never need a maintenance interrupt.
        assert_eq!(r.gic[0].maintenance_exits + r.gic[1].maintenance_exits, 0);
        // The VMM saw no GIC access: only the console and PSCI.
        let gic_mmio: u64 = r.gic.iter().map(|g| g.mmio).sum();
        assert!(gic_mmio > 0);
    }
}

/// Exits, deliveries and list register traffic of one run, summed over
/// its vCPUs, printed as the figures the test measured.
fn figures(what: &str, r: &Run, delivered: u64) -> (f64, f64) {
    let sum = |f: fn(&VgicStats) -> u64| r.gic.iter().map(f).sum::<u64>();
    let irq_exits: u64 = r.vcpu.iter().map(|s| s.irq_exits).sum();
    let entries: u64 = r.vcpu.iter().map(|s| s.entries).sum();
    let exits = irq_exits + sum(|g| g.sgi_traps);
    let per_irq = exits as f64 / delivered as f64;
    let with_lrs = sum(|g| g.flushes_with_lrs);
    let lr_per_entry = (sum(|g| g.lr_writes) + sum(|g| g.lr_reads)) as f64 / with_lrs.max(1) as f64;
    eprintln!(
        "{what}: {delivered} delivered, {exits} interrupt exits ({irq_exits} physical, of which \
         {} maintenance; {} SGI traps) = {per_irq:.2} per interrupt; {entries} entries, {with_lrs} \
         with list registers, {} LR writes + {} LR reads = {lr_per_entry:.2} LR accesses per such \
         entry and its exit; {} other ICH accesses",
        sum(|g| g.maintenance_exits),
        sum(|g| g.sgi_traps),
        sum(|g| g.lr_writes),
        sum(|g| g.lr_reads),
        sum(|g| g.other_accesses),
    );
    (per_irq, lr_per_entry)
}

#[test]
fn what_delivering_an_interrupt_costs() {
    for nvhe in [false, true] {
        // SGIs: the two-vCPU exchange; each SGI is one trapped
        // ICC_SGI1R_EL1 write, and delivery needs no further exit.
        let r = board_run("gic.bin", 2, nvhe, Pmu::Off, false, "");
        let sgis: u64 = r.gic.iter().map(|g| g.acked_sgi).sum();
        let (per, lr) = figures(&format!("SGI (nvhe={nvhe})"), &r, sgis);
        assert!(per <= 1.0, "{per}");
        assert!(lr <= 2.0 * 4.0, "{lr}");

        // PMU overflow: the physical interrupt's exit, and the
        // maintenance exit that samples the line again after the EOI.
        let pmus: &[Pmu] = if nvhe {
            &[Pmu::Emulated]
        } else {
            &[Pmu::Emulated, Pmu::Partitioned]
        };
        for &pmu in pmus {
            let r = board_run("pmu.bin", 1, nvhe, pmu, false, "pmu-overflow-interrupt");
            assert!(!r.console.contains("FAIL"), "{}", r.console);
            let g = &r.gic[0];
            assert!(g.acked_pmu >= 5, "{g:?}");
            assert_eq!(g.acked_other + g.acked_sgi + g.acked_spe, 0);
            assert_eq!(
                g.maintenance_exits, g.acked_pmu,
                "each level interrupt ends in one maintenance exit"
            );
            let what = format!("PMU overflow, {pmu:?} (nvhe={nvhe})");
            let (per, _) = figures(&what, &r, g.acked_pmu);
            assert!(per <= 2.5, "{per}");
        }

        // SPE buffer full: PMBIRQ at INTID 21.
        let r = board_run("spesuite.bin", 1, nvhe, Pmu::Off, true, "spe.only=events");
        assert!(!r.console.contains("FAIL"), "{}", r.console);
        assert!(
            r.console
                .contains("PASS: spe-events: every PMBIRQ is INTID 21 at the GIC"),
            "{}",
            r.console
        );
        let g = &r.gic[0];
        assert!(g.acked_spe >= 5, "{g:?}");
        assert_eq!(g.maintenance_exits, g.acked_spe);
        let (per, _) = figures(&format!("SPE buffer (nvhe={nvhe})"), &r, g.acked_spe);
        assert!(per <= 2.5, "{per}");
    }
}
