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
