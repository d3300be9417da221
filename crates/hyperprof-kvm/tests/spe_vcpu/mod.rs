//! The VMM steps every guest-SPE test starts from, shared so each test says
//! only what differs: the VM's RAM, its memlock limit and MaxBuffSize.

// Each test binary that includes this module uses some of it.
#![allow(dead_code)]

use hyperprof_arch::PmuVer;
use hyperprof_guest::guest::{GuestEnv, GuestProgram, GuestStep};
use hyperprof_kvm::uapi::VcpuFeatures;
use hyperprof_kvm::vm::{Exit, Kvm, VmConfig};
use hyperprof_sim::machine::{Machine, MachineConfig};
use hyperprof_sim::pe::PeConfig;
use hyperprof_sim::pmu::PmuConfig;
use hyperprof_sim::spe::SpeConfig;

/// PPI of the guest's profiling buffer interrupt in these tests.
pub const SPE_PPI: u32 = 21;

/// A machine of `pes` PEs with the SPE unit `spe`, FEAT_FGT and a PMUv3p5
/// of 6 counters, 512 MiB of RAM at 0x8000_0000.
pub fn spe_machine(spe: SpeConfig, pes: usize) -> Machine {
    let pe = PeConfig {
        pmu: PmuConfig {
            counters: 6,
            version: PmuVer::V3p5,
            hpmn0: false,
            el2_implemented: true,
        },
        spe: Some(spe),
        fgt: true,
        uarch: Default::default(),
    };
    Machine::new(&MachineConfig {
        pes: vec![pe; pes],
        ram_base: 0x8000_0000,
        ram_size: 512 << 20,
    })
    .unwrap()
}

/// A VM of `ram_bytes` under `memlock` with one vCPU that has SPE (and no
/// PMUv3), configured on SPU 0 with MaxBuffSize `max_buffer`, not loaded.
/// Returns (vm, vcpu).
pub fn spe_vcpu(kvm: &mut Kvm, ram_bytes: u64, memlock: u64, max_buffer: u64) -> (usize, usize) {
    let vm = kvm
        .create_vm(VmConfig {
            ram_bytes,
            memlock_limit: memlock,
        })
        .unwrap();
    let features = VcpuFeatures {
        spe: true,
        pmu_v3: false,
    };
    let vcpu = kvm.create_vcpu(vm, features).unwrap();
    kvm.configure_spe(vcpu, 0, SPE_PPI, max_buffer).unwrap();
    (vm, vcpu)
}

/// A guest program made of a closure, run once.
pub struct Once<F: FnMut(&mut dyn GuestEnv)>(pub F);
impl<F: FnMut(&mut dyn GuestEnv)> GuestProgram for Once<F> {
    fn run(&mut self, env: &mut dyn GuestEnv) -> GuestStep {
        (self.0)(env);
        GuestStep::Done
    }
}

/// KVM_RUN until the guest halts (at most 1,000 runs); any other exit
/// fails the test.
pub fn run_to_halt(kvm: &mut Kvm, vcpu: usize, p: &mut dyn GuestProgram) {
    for _ in 0..1_000 {
        match kvm.run(vcpu, p) {
            Exit::Halt => return,
            Exit::Yield => continue,
            e => panic!("unexpected exit {e:?}"),
        }
    }
    panic!("the guest never halted");
}
