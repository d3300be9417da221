//! The PMU_V3 attribute group through the hypervisor's device-attribute
//! calls: the host's reserve, the errors a VMM meets, and KVM_RUN refusing a
//! vCPU whose PMU is not initialised.

use hyperprof_arch::PmuVer;
use hyperprof_guest::guest::{GuestEnv, GuestProgram, GuestStep};
use hyperprof_kvm::uapi::*;
use hyperprof_kvm::vm::{Exit, Kvm, VmConfig};
use hyperprof_sim::machine::{Machine, MachineConfig};
use hyperprof_sim::pe::PeConfig;
use hyperprof_sim::pmu::PmuConfig;

fn kvm() -> Kvm {
    let pe = PeConfig {
        pmu: PmuConfig {
            counters: 6,
            version: PmuVer::V3p5,
            hpmn0: false,
            el2_implemented: true,
        },
        spe: None,
        fgt: true,
        uarch: Default::default(),
    };
    Kvm::new(
        Machine::new(&MachineConfig {
            pes: vec![pe; 2],
            ram_base: 0x8000_0000,
            ram_size: 64 << 20,
        })
        .unwrap(),
    )
}

fn vm_with_pmu_vcpu(kvm: &mut Kvm) -> usize {
    let vm = kvm
        .create_vm(VmConfig {
            ram_bytes: 16 << 20,
            memlock_limit: u64::MAX,
        })
        .unwrap();
    kvm.create_vcpu(
        vm,
        VcpuFeatures {
            pmu_v3: true,
            spe: false,
        },
    )
    .unwrap()
}

struct Nop;
impl GuestProgram for Nop {
    fn run(&mut self, _: &mut dyn GuestEnv) -> GuestStep {
        GuestStep::Done
    }
}

const G: u32 = KVM_ARM_VCPU_PMU_V3_CTRL;

#[test]
fn the_host_reserve_sets_hpmn_and_is_a_boot_time_choice() {
    let mut kvm = kvm();
    assert_eq!(kvm.host_pmus().len(), 1, "two identical CPUs: one PMU");
    assert_eq!(kvm.host_pmus()[0].cpus, vec![0, 1]);
    assert_eq!(
        kvm.set_host_pmu_reserve(7),
        Err(Errno::EINVAL),
        "more than N = 6"
    );
    kvm.set_host_pmu_reserve(2).unwrap();
    assert_eq!(kvm.host_pmus()[0].guest_counters(), 4);
    assert_eq!(kvm.host_pmus()[0].hpmn(), Some(4));
    vm_with_pmu_vcpu(&mut kvm);
    assert_eq!(kvm.set_host_pmu_reserve(1), Err(Errno::EBUSY), "VMs exist");
}

#[test]
fn a_vmm_configures_the_vcpu_pmu_through_the_device_attributes() {
    let mut kvm = kvm();
    kvm.set_host_pmu_reserve(2).unwrap();
    let vcpu = vm_with_pmu_vcpu(&mut kvm);
    for attr in 0..=4 {
        assert_eq!(
            kvm.has_device_attr(vcpu, G, attr),
            Ok(()),
            "attribute {attr}"
        );
    }
    assert_eq!(
        kvm.set_device_attr(vcpu, G, KVM_ARM_VCPU_PMU_V3_IRQ, UserPtr::Value(40)),
        Err(Errno::EINVAL),
        "not a PPI"
    );
    assert_eq!(
        kvm.set_device_attr(vcpu, G, KVM_ARM_VCPU_PMU_V3_IRQ, UserPtr::Bad),
        Err(Errno::EFAULT)
    );
    kvm.set_device_attr(vcpu, G, KVM_ARM_VCPU_PMU_V3_IRQ, UserPtr::Value(23))
        .unwrap();
    assert_eq!(
        kvm.get_device_attr(vcpu, G, KVM_ARM_VCPU_PMU_V3_IRQ),
        Ok(23)
    );
    kvm.set_device_attr(vcpu, G, KVM_ARM_VCPU_PMU_V3_SET_PMU, UserPtr::Value(0))
        .unwrap();
    assert_eq!(
        kvm.set_device_attr(
            vcpu,
            G,
            KVM_ARM_VCPU_PMU_V3_SET_NR_COUNTERS,
            UserPtr::Value(7)
        ),
        Err(Errno::EINVAL),
        "above the hardware's 6"
    );
    // Partitioned: the guest gets the 4 counters below HPMN.
    kvm.set_device_attr(
        vcpu,
        G,
        KVM_ARM_VCPU_PMU_V3_ENABLE_PARTITION,
        UserPtr::Value(1),
    )
    .unwrap();
    assert_eq!(
        kvm.get_device_attr(vcpu, G, KVM_ARM_VCPU_PMU_V3_ENABLE_PARTITION),
        Ok(1)
    );
    assert_eq!(
        kvm.set_device_attr(
            vcpu,
            G,
            KVM_ARM_VCPU_PMU_V3_SET_NR_COUNTERS,
            UserPtr::Value(5)
        ),
        Err(Errno::EINVAL),
        "above the 4 guest counters"
    );
    kvm.set_device_attr(
        vcpu,
        G,
        KVM_ARM_VCPU_PMU_V3_SET_NR_COUNTERS,
        UserPtr::Value(4),
    )
    .unwrap();
    kvm.load(vcpu, 0).unwrap();
    let Exit::FailEntry(why) = kvm.run(vcpu, &mut Nop) else {
        panic!("ran without INIT")
    };
    assert!(why.contains("PMU not initialised"), "{why}");
    kvm.set_device_attr(vcpu, G, KVM_ARM_VCPU_PMU_V3_INIT, UserPtr::Value(0))
        .unwrap();
    assert_eq!(kvm.run(vcpu, &mut Nop), Exit::Halt);
    assert_eq!(
        kvm.set_device_attr(
            vcpu,
            G,
            KVM_ARM_VCPU_PMU_V3_ENABLE_PARTITION,
            UserPtr::Value(0)
        ),
        Err(Errno::EBUSY),
        "not after the VM ran"
    );
}

#[test]
fn a_vcpu_without_the_pmu_feature_has_no_pmu_attributes() {
    let mut kvm = kvm();
    let vm = kvm
        .create_vm(VmConfig {
            ram_bytes: 16 << 20,
            memlock_limit: u64::MAX,
        })
        .unwrap();
    let vcpu = kvm.create_vcpu(vm, VcpuFeatures::default()).unwrap();
    assert!(kvm
        .has_device_attr(vcpu, G, KVM_ARM_VCPU_PMU_V3_IRQ)
        .is_err());
    assert_eq!(
        kvm.set_device_attr(vcpu, G, KVM_ARM_VCPU_PMU_V3_IRQ, UserPtr::Value(23)),
        Err(Errno::ENODEV)
    );
    assert_eq!(
        kvm.set_device_attr(vcpu, 9, 0, UserPtr::Value(0)),
        Err(Errno::ENXIO),
        "unknown group"
    );
}
