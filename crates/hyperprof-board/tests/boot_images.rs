//! The repository's guest images booted as VMs under the hypervisor, VHE
//! and nVHE, through the board's VMM side (PSCI, PL011). Their console
//! output is what they print under QEMU's virt board.

use hyperprof_board::vm::{BoardVm, BootOptions, VmState};
use hyperprof_kvm::uapi::VcpuFeatures;
use hyperprof_kvm::vm::{Kvm, VmConfig};
use hyperprof_sim::machine::{Machine, MachineConfig};
use hyperprof_sim::pe::PeConfig;
use hyperprof_sim::pmu::PmuConfig;
use hyperprof_sim::spe::SpeConfig;

fn image(name: &str) -> Vec<u8> {
    let path = format!("{}/../../guests/images/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn kvm(nvhe: bool) -> Kvm {
    let pe = PeConfig {
        pmu: PmuConfig {
            counters: 6,
            version: hyperprof_arch::PmuVer::V3p5,
            hpmn0: false,
            el2_implemented: true,
        },
        spe: Some(SpeConfig::default()),
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

/// Boots `name` and runs it to its end, moving its vCPU between the two
/// CPUs every slice; returns the console output and how it ended.
fn boot(name: &str, nvhe: bool) -> (String, VmState, u64) {
    let mut kvm = kvm(nvhe);
    let ram = 128 << 20;
    let vm = kvm
        .create_vm(VmConfig {
            ram_bytes: ram,
            memlock_limit: 64 << 20,
        })
        .unwrap();
    let vcpu = kvm.create_vcpu(vm, VcpuFeatures::default()).unwrap();
    let mut b = BoardVm::boot(
        &mut kvm,
        vm,
        ram,
        &[vcpu],
        &image(name),
        &BootOptions::default(),
    )
    .unwrap();
    let mut slices = 0u64;
    while !b.finished() {
        let cpu = (slices % 2) as usize;
        kvm.load(vcpu, cpu).unwrap();
        b.run_vcpu(&mut kvm, 0, 50_000).unwrap();
        kvm.put(vcpu).unwrap();
        slices += 1;
        assert!(slices < 10_000, "{name} never finished");
    }
    let out = String::from_utf8(b.take_console()).unwrap();
    (out, b.state().clone(), b.retired(0))
}

const HELLO: &str = "hello from a hyperprof guest\nPSCI 1.1\ndevice tree magic 0x00000000d00dfeed\nCurrentEL 1\nprimes below 4096: 564\n";

#[test]
fn hello_boots_on_vhe_and_nvhe_hosts() {
    for nvhe in [false, true] {
        for img in ["hello.bin", "hello.elf"] {
            let (out, state, insns) = boot(img, nvhe);
            assert_eq!(out, HELLO, "{img} nvhe={nvhe}");
            assert_eq!(state, VmState::PoweredOff);
            assert!(insns > 10_000);
        }
    }
}

#[test]
fn selftest_passes_under_the_hypervisor() {
    for nvhe in [false, true] {
        let (out, state, _) = boot("selftest.bin", nvhe);
        assert!(
            out.ends_with("SUMMARY: 9 tests, 0 unexpected failures\n"),
            "nvhe={nvhe}: {out}"
        );
        assert_eq!(out.matches("PASS: ").count(), 9, "{out}");
        assert_eq!(state, VmState::PoweredOff);
    }
}

mod gic {
    use super::*;
    use hyperprof_board::map::{GicLayout, Region, GIC_REDIST_STRIDE};

    fn boot_with(kvm: &mut Kvm, vcpus: usize, gic: GicLayout) -> Result<BoardVm, String> {
        let ram = 64 << 20;
        let vm = kvm
            .create_vm(VmConfig {
                ram_bytes: ram,
                memlock_limit: 64 << 20,
            })
            .unwrap();
        let ids: Vec<usize> = (0..vcpus)
            .map(|_| kvm.create_vcpu(vm, VcpuFeatures::default()).unwrap())
            .collect();
        let opts = BootOptions {
            gic: Some(gic),
            ..BootOptions::default()
        };
        BoardVm::boot(kvm, vm, ram, &ids, &image("hello.bin"), &opts).map_err(|e| e.to_string())
    }

    #[test]
    fn hello_boots_with_the_gic() {
        for nvhe in [false, true] {
            let mut kvm = kvm(nvhe);
            let mut b = boot_with(&mut kvm, 1, GicLayout::VIRT).unwrap();
            let vcpu = b.vcpus()[0];
            assert!(kvm.vgic(b.vm()).is_some_and(|g| g.initialized()));
            let mut slices = 0;
            while !b.finished() {
                kvm.load(vcpu, slices % 2).unwrap();
                b.run_vcpu(&mut kvm, 0, 50_000).unwrap();
                kvm.put(vcpu).unwrap();
                slices += 1;
                assert!(slices < 10_000);
            }
            assert_eq!(String::from_utf8(b.take_console()).unwrap(), HELLO);
            // hello never touches the GIC: no list register was used.
            let g = kvm.vgic_stats(vcpu).unwrap();
            assert_eq!((g.flushes_with_lrs, g.lr_writes, g.mmio), (0, 0, 0));
            assert!(g.flushes > 0);
        }
    }

    #[test]
    fn impossible_boards_get_one_clear_error_line() {
        // More vCPUs than QEMU virt's redistributor region holds.
        let e = boot_with(&mut kvm(false), 124, GicLayout::VIRT).unwrap_err();
        assert_eq!(
            e,
            "board: 124 vCPUs: the board's GIC redistributor region holds 1 to 123"
        );
        // Redistributors over guest RAM.
        let over_ram = GicLayout {
            redist: Region {
                base: 0x4000_0000 - GIC_REDIST_STRIDE,
                size: 4 * GIC_REDIST_STRIDE,
            },
            ..GicLayout::VIRT
        };
        let e = boot_with(&mut kvm(false), 1, over_ram).unwrap_err();
        assert!(
            e.starts_with("board: RAM 0x40000000..0x44000000 overlaps the GIC redistributors"),
            "{e}"
        );
        assert!(!e.contains('\n'));
        // A layout the device tree accepts but the vGIC cannot place: a
        // distributor that is not 64 KiB aligned.
        let unaligned = GicLayout {
            dist: Region {
                base: 0x0800_8000,
                size: 0x1_0000,
            },
            ..GicLayout::VIRT
        };
        let e = boot_with(&mut kvm(false), 1, unaligned).unwrap_err();
        assert_eq!(
            e,
            "GIC: the distributor's base 0x8008000 is not 64 KiB aligned (EINVAL (22))"
        );
    }
}
