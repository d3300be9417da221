//! The VMM steps every guest-SPE test starts from, shared so each test says
//! only what differs: the VM's RAM, its memlock limit and MaxBuffSize.

use hyperprof_kvm::uapi::VcpuFeatures;
use hyperprof_kvm::vm::{Kvm, VmConfig};

/// PPI of the guest's profiling buffer interrupt in these tests.
pub const SPE_PPI: u32 = 21;

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
