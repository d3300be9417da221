//! Error rules of the SPE vCPU device attributes (seed 004's table for
//! KVM_ARM_VCPU_MAX_BUFFER_SIZE, ARM-FACTS §6, the mirrored PMU rules), the
//! KVM_RUN readiness check, and the guest's PMBIDR_EL1 / PMSIDR_EL1.

use hyperprof_arch::{maxbuffsize, pmbidr_el1, pmsidr_el1, PmsVer};
use hyperprof_kvm::spe_attr::{
    AttrCtx, NotReady, SpeAttr, Spu, VcpuSpe, VmSpe, HOST_PAGE_SIZE, MEMLOCK_UNLIMITED,
    PMBIDR_ADDRMODE_VM_ONLY,
};
use hyperprof_kvm::uapi::{
    Errno, UserPtr, VcpuFeatures, KVM_ARM_VCPU_SPE_INIT, KVM_ARM_VCPU_SPE_IRQ,
    KVM_ARM_VCPU_SPE_MAX_BUFFER_SIZE as MAX, KVM_ARM_VCPU_SPE_SPU,
};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// SPU 0: no buffer size limit.
const UNLIMITED_SPU: u32 = 0;
/// SPU 1: at most 4 MiB.
const LIMITED_SPU: u32 = 1;
const LIMITED_MAX: u64 = 4 * MIB;

fn host_spus() -> Vec<Spu> {
    // EA = SError, F, Align = 64 bytes, plus RES0 bits the guest must not see.
    let base_pmbidr = 0xFFFF_0000_ABCD_0000 | 0x226;
    vec![
        Spu {
            id: UNLIMITED_SPU,
            pmsidr: 0x1_0000_0000 | 0x0122_68FF, // SME, PBT, FnE, FDS, ...
            pmbidr: base_pmbidr,
            cpus: vec![0, 1],
        },
        Spu {
            id: LIMITED_SPU,
            pmsidr: 0x0122_683F, // FnE and FDS absent
            pmbidr: maxbuffsize::with_size(base_pmbidr, LIMITED_MAX).unwrap(),
            cpus: vec![2, 3],
        },
    ]
}

fn spe() -> VcpuFeatures {
    VcpuFeatures {
        pmu_v3: false,
        spe: true,
    }
}

fn ctx(spus: &[Spu]) -> AttrCtx<'_> {
    AttrCtx {
        features: spe(),
        host_spus: spus,
        host_supports_spe: true,
    }
}

fn no_feature(spus: &[Spu]) -> AttrCtx<'_> {
    AttrCtx {
        features: VcpuFeatures::default(),
        ..ctx(spus)
    }
}

fn no_host(spus: &[Spu]) -> AttrCtx<'_> {
    AttrCtx {
        host_supports_spe: false,
        ..ctx(spus)
    }
}

fn set(
    vm: &mut VmSpe,
    vcpu: &mut VcpuSpe,
    c: &AttrCtx<'_>,
    attr: u64,
    v: u64,
) -> Result<(), Errno> {
    vm.set_attr(vcpu, c, attr, UserPtr::Value(v))
}

/// A VM (unlimited memlock) with `spu` chosen through the attribute.
fn vm_with_spu(spus: &[Spu], spu: u32) -> (VmSpe, VcpuSpe) {
    let mut vm = VmSpe::new(MEMLOCK_UNLIMITED);
    let mut vcpu = VcpuSpe::new();
    set(
        &mut vm,
        &mut vcpu,
        &ctx(spus),
        KVM_ARM_VCPU_SPE_SPU,
        u64::from(spu),
    )
    .unwrap();
    (vm, vcpu)
}

/// A VM fully configured on one vCPU (SPU 0, IRQ 21, 2 MiB), not initialised.
fn configured(spus: &[Spu]) -> (VmSpe, VcpuSpe) {
    let (mut vm, mut vcpu) = vm_with_spu(spus, UNLIMITED_SPU);
    let c = ctx(spus);
    set(&mut vm, &mut vcpu, &c, KVM_ARM_VCPU_SPE_IRQ, 21).unwrap();
    set(&mut vm, &mut vcpu, &c, MAX, 2 * MIB).unwrap();
    (vm, vcpu)
}

// ---------------------------------------------------------------------------
// Seed 004 table, one test per row (SPE_MAX_BUFFER_SIZE).

#[test]
fn max_size_ebusy_vm_has_run() {
    let spus = host_spus();
    let (mut vm, mut vcpu) = vm_with_spu(&spus, UNLIMITED_SPU);
    vm.mark_ran();
    assert_eq!(
        set(&mut vm, &mut vcpu, &ctx(&spus), MAX, 2 * MIB),
        Err(Errno::EBUSY)
    );
    assert_eq!(vm.max_buffer_size(), None);
}

#[test]
fn max_size_edom_not_representable() {
    let spus = host_spus();
    let (mut vm, mut vcpu) = vm_with_spu(&spus, UNLIMITED_SPU);
    // E = 2 above 4 MiB: granule 8 KiB, so 4 MiB + 4 KiB has no encoding.
    assert!(maxbuffsize::encode(4 * MIB + 4 * KIB).is_err());
    assert_eq!(
        set(&mut vm, &mut vcpu, &ctx(&spus), MAX, 4 * MIB + 4 * KIB),
        Err(Errno::EDOM)
    );
    assert_eq!(vm.max_buffer_size(), None);
}

#[test]
fn max_size_efault_bad_pointer() {
    let spus = host_spus();
    let (mut vm, mut vcpu) = vm_with_spu(&spus, UNLIMITED_SPU);
    assert_eq!(
        vm.set_attr(&mut vcpu, &ctx(&spus), MAX, UserPtr::Bad),
        Err(Errno::EFAULT)
    );
}

#[test]
fn max_size_einval_different_size_already_set() {
    let spus = host_spus();
    let (mut vm, mut vcpu) = vm_with_spu(&spus, UNLIMITED_SPU);
    let c = ctx(&spus);
    set(&mut vm, &mut vcpu, &c, MAX, 2 * MIB).unwrap();
    assert_eq!(
        set(&mut vm, &mut vcpu, &c, MAX, 4 * MIB),
        Err(Errno::EINVAL)
    );
    assert_eq!(vm.max_buffer_size(), Some(2 * MIB));
}

#[test]
fn max_size_einval_not_page_aligned() {
    let spus = host_spus();
    let (mut vm, mut vcpu) = vm_with_spu(&spus, UNLIMITED_SPU);
    let c = ctx(&spus);
    for size in [1, 4095, 4097, 2 * MIB + KIB, u64::MAX] {
        assert_eq!(
            set(&mut vm, &mut vcpu, &c, MAX, size),
            Err(Errno::EINVAL),
            "{size:#x}"
        );
    }
}

#[test]
fn max_size_enxio_host_without_spe() {
    let spus = host_spus();
    let (mut vm, mut vcpu) = vm_with_spu(&spus, UNLIMITED_SPU);
    assert_eq!(
        set(&mut vm, &mut vcpu, &no_host(&spus), MAX, 2 * MIB),
        Err(Errno::ENXIO)
    );
    assert_eq!(vm.get_attr(&vcpu, &no_host(&spus), MAX), Err(Errno::ENXIO));
}

#[test]
fn max_size_enodev_without_vcpu_feature() {
    let spus = host_spus();
    let (mut vm, mut vcpu) = vm_with_spu(&spus, UNLIMITED_SPU);
    assert_eq!(
        set(&mut vm, &mut vcpu, &no_feature(&spus), MAX, 2 * MIB),
        Err(Errno::ENODEV)
    );
    assert_eq!(
        vm.get_attr(&vcpu, &no_feature(&spus), MAX),
        Err(Errno::ENODEV)
    );
}

#[test]
fn max_size_enodev_without_spu() {
    let spus = host_spus();
    let mut vm = VmSpe::new(MEMLOCK_UNLIMITED);
    let mut vcpu = VcpuSpe::new();
    assert_eq!(
        set(&mut vm, &mut vcpu, &ctx(&spus), MAX, 2 * MIB),
        Err(Errno::ENODEV)
    );
}

#[test]
fn max_size_erange_above_spu_max() {
    let spus = host_spus();
    let (mut vm, mut vcpu) = vm_with_spu(&spus, LIMITED_SPU);
    // 4 MiB + 8 KiB is representable (E = 2, granule 8 KiB) but above 4 MiB.
    assert!(maxbuffsize::encode(LIMITED_MAX + 8 * KIB).is_ok());
    assert_eq!(
        set(&mut vm, &mut vcpu, &ctx(&spus), MAX, LIMITED_MAX + 8 * KIB),
        Err(Errno::ERANGE)
    );
    assert_eq!(
        set(&mut vm, &mut vcpu, &ctx(&spus), MAX, 8 * GIB),
        Err(Errno::ERANGE)
    );
    assert_eq!(vm.max_buffer_size(), None);
}

#[test]
fn max_size_at_spu_max_is_accepted() {
    let spus = host_spus();
    let (mut vm, mut vcpu) = vm_with_spu(&spus, LIMITED_SPU);
    assert_eq!(
        set(&mut vm, &mut vcpu, &ctx(&spus), MAX, LIMITED_MAX),
        Ok(())
    );
    assert_eq!(vm.max_buffer_size(), Some(LIMITED_MAX));
}

// ---------------------------------------------------------------------------
// Further max buffer size rules.

#[test]
fn max_size_zero_erange_on_limited_spu() {
    let spus = host_spus();
    let (mut vm, mut vcpu) = vm_with_spu(&spus, LIMITED_SPU);
    assert_eq!(
        set(&mut vm, &mut vcpu, &ctx(&spus), MAX, 0),
        Err(Errno::ERANGE)
    );
}

#[test]
fn max_size_zero_accepted_on_unlimited_spu() {
    let spus = host_spus();
    let (mut vm, mut vcpu) = vm_with_spu(&spus, UNLIMITED_SPU);
    assert_eq!(set(&mut vm, &mut vcpu, &ctx(&spus), MAX, 0), Ok(()));
    assert_eq!(vm.max_buffer_size(), Some(0));
    assert_eq!(vm.get_attr(&vcpu, &ctx(&spus), MAX), Ok(0));
}

#[test]
fn max_size_enomem_above_memlock() {
    let spus = host_spus();
    let c = ctx(&spus);
    let mut vm = VmSpe::new(2 * MIB);
    let mut vcpu = VcpuSpe::new();
    set(
        &mut vm,
        &mut vcpu,
        &c,
        KVM_ARM_VCPU_SPE_SPU,
        u64::from(UNLIMITED_SPU),
    )
    .unwrap();
    assert_eq!(
        set(&mut vm, &mut vcpu, &c, MAX, 2 * MIB + 4 * KIB),
        Err(Errno::ENOMEM)
    );
    assert_eq!(vm.max_buffer_size(), None);
    // Exactly the limit fits.
    assert_eq!(set(&mut vm, &mut vcpu, &c, MAX, 2 * MIB), Ok(()));
}

#[test]
fn max_size_zero_enomem_with_finite_memlock() {
    let spus = host_spus();
    let c = ctx(&spus);
    let mut vm = VmSpe::new(64 * MIB);
    let mut vcpu = VcpuSpe::new();
    set(
        &mut vm,
        &mut vcpu,
        &c,
        KVM_ARM_VCPU_SPE_SPU,
        u64::from(UNLIMITED_SPU),
    )
    .unwrap();
    assert_eq!(set(&mut vm, &mut vcpu, &c, MAX, 0), Err(Errno::ENOMEM));
}

#[test]
fn max_size_same_value_twice_ok() {
    let spus = host_spus();
    let (mut vm, mut vcpu) = vm_with_spu(&spus, UNLIMITED_SPU);
    let c = ctx(&spus);
    assert_eq!(set(&mut vm, &mut vcpu, &c, MAX, 2 * MIB), Ok(()));
    assert_eq!(set(&mut vm, &mut vcpu, &c, MAX, 2 * MIB), Ok(()));
    assert_eq!(vm.max_buffer_size(), Some(2 * MIB));
}

#[test]
fn max_size_get_before_set_einval() {
    let spus = host_spus();
    let (vm, vcpu) = vm_with_spu(&spus, UNLIMITED_SPU);
    assert_eq!(vm.get_attr(&vcpu, &ctx(&spus), MAX), Err(Errno::EINVAL));
}

#[test]
fn max_size_shared_by_all_vcpus() {
    let spus = host_spus();
    let c = ctx(&spus);
    let (mut vm, mut vcpu0) = vm_with_spu(&spus, UNLIMITED_SPU);
    let mut vcpu1 = VcpuSpe::new();
    set(&mut vm, &mut vcpu0, &c, MAX, 8 * MIB).unwrap();
    assert_eq!(vm.get_attr(&vcpu1, &c, MAX), Ok(8 * MIB));
    assert_eq!(set(&mut vm, &mut vcpu1, &c, MAX, 8 * MIB), Ok(()));
    assert_eq!(
        set(&mut vm, &mut vcpu1, &c, MAX, 16 * MIB),
        Err(Errno::EINVAL)
    );
}

#[test]
fn representable_2mib_plus_4kib_is_accepted() {
    // The codec: E = 1 covers [2 MiB, 4 MiB) in 4 KiB steps.
    assert_eq!(maxbuffsize::encode(2 * MIB + 4 * KIB), Ok((1 << 9) | 1));
    assert_eq!(maxbuffsize::decode((1 << 9) | 1), 2 * MIB + 4 * KIB);
    let spus = host_spus();
    let (mut vm, mut vcpu) = vm_with_spu(&spus, UNLIMITED_SPU);
    assert_eq!(
        set(&mut vm, &mut vcpu, &ctx(&spus), MAX, 2 * MIB + 4 * KIB),
        Ok(())
    );
}

#[test]
fn unaligned_2mib_plus_1kib_is_einval_before_edom() {
    // Not representable either, but alignment is checked first.
    assert!(maxbuffsize::encode(2 * MIB + KIB).is_err());
    let spus = host_spus();
    let (mut vm, mut vcpu) = vm_with_spu(&spus, UNLIMITED_SPU);
    assert_eq!(
        set(&mut vm, &mut vcpu, &ctx(&spus), MAX, 2 * MIB + KIB),
        Err(Errno::EINVAL)
    );
}

#[test]
fn large_page_aligned_unrepresentable_is_edom() {
    let spus = host_spus();
    let (mut vm, mut vcpu) = vm_with_spu(&spus, UNLIMITED_SPU);
    let c = ctx(&spus);
    // 8 GiB + 4 KiB: granule is 16 MiB there. 2^52: above the largest size.
    // The largest page multiple (u64::MAX rounded down): far above it.
    for size in [8 * GIB + 4 * KIB, 1 << 52, !(HOST_PAGE_SIZE - 1)] {
        assert!(maxbuffsize::encode(size).is_err(), "{size:#x}");
        assert_eq!(
            set(&mut vm, &mut vcpu, &c, MAX, size),
            Err(Errno::EDOM),
            "{size:#x}"
        );
    }
    // The largest representable size is accepted on an unlimited SPU.
    assert_eq!(
        set(&mut vm, &mut vcpu, &c, MAX, maxbuffsize::MAX_SIZE),
        Ok(())
    );
}

// ---------------------------------------------------------------------------
// Ordering where two errors apply.

#[test]
fn order_vm_ran_and_unaligned_is_ebusy() {
    let spus = host_spus();
    let (mut vm, mut vcpu) = vm_with_spu(&spus, UNLIMITED_SPU);
    vm.mark_ran();
    assert_eq!(
        set(&mut vm, &mut vcpu, &ctx(&spus), MAX, 4097),
        Err(Errno::EBUSY)
    );
}

#[test]
fn order_vm_ran_and_bad_pointer_is_efault() {
    // KVM reads the value (get_user) before kvm_spe_set_max_buffer_size runs.
    let spus = host_spus();
    let (mut vm, mut vcpu) = vm_with_spu(&spus, UNLIMITED_SPU);
    vm.mark_ran();
    assert_eq!(
        vm.set_attr(&mut vcpu, &ctx(&spus), MAX, UserPtr::Bad),
        Err(Errno::EFAULT)
    );
}

#[test]
fn order_unaligned_and_no_spu_is_einval() {
    let spus = host_spus();
    let mut vm = VmSpe::new(MEMLOCK_UNLIMITED);
    let mut vcpu = VcpuSpe::new();
    assert_eq!(
        set(&mut vm, &mut vcpu, &ctx(&spus), MAX, 4097),
        Err(Errno::EINVAL)
    );
}

#[test]
fn order_no_spu_and_unrepresentable_is_enodev() {
    let spus = host_spus();
    let mut vm = VmSpe::new(MEMLOCK_UNLIMITED);
    let mut vcpu = VcpuSpe::new();
    assert_eq!(
        set(&mut vm, &mut vcpu, &ctx(&spus), MAX, 8 * GIB + 4 * KIB),
        Err(Errno::ENODEV)
    );
}

#[test]
fn order_already_set_and_unrepresentable_is_einval() {
    let spus = host_spus();
    let (mut vm, mut vcpu) = vm_with_spu(&spus, UNLIMITED_SPU);
    let c = ctx(&spus);
    set(&mut vm, &mut vcpu, &c, MAX, 2 * MIB).unwrap();
    assert_eq!(
        set(&mut vm, &mut vcpu, &c, MAX, 8 * GIB + 4 * KIB),
        Err(Errno::EINVAL)
    );
}

#[test]
fn order_unrepresentable_and_above_spu_max_is_edom() {
    let spus = host_spus();
    let (mut vm, mut vcpu) = vm_with_spu(&spus, LIMITED_SPU);
    assert_eq!(
        set(&mut vm, &mut vcpu, &ctx(&spus), MAX, 8 * GIB + 4 * KIB),
        Err(Errno::EDOM)
    );
}

#[test]
fn order_above_spu_max_and_above_memlock_is_erange() {
    let spus = host_spus();
    let c = ctx(&spus);
    let mut vm = VmSpe::new(MIB);
    let mut vcpu = VcpuSpe::new();
    set(
        &mut vm,
        &mut vcpu,
        &c,
        KVM_ARM_VCPU_SPE_SPU,
        u64::from(LIMITED_SPU),
    )
    .unwrap();
    assert_eq!(
        set(&mut vm, &mut vcpu, &c, MAX, 8 * MIB),
        Err(Errno::ERANGE)
    );
    // Within the SPU's maximum, only memlock is left to fail.
    assert_eq!(
        set(&mut vm, &mut vcpu, &c, MAX, 2 * MIB),
        Err(Errno::ENOMEM)
    );
}

#[test]
fn order_no_host_and_no_feature_is_enxio() {
    let spus = host_spus();
    let c = AttrCtx {
        features: VcpuFeatures::default(),
        host_supports_spe: false,
        host_spus: &spus,
    };
    let mut vm = VmSpe::new(MEMLOCK_UNLIMITED);
    let mut vcpu = VcpuSpe::new();
    for a in SpeAttr::ALL {
        assert_eq!(
            set(&mut vm, &mut vcpu, &c, a.attr(), 21),
            Err(Errno::ENXIO),
            "{a:?}"
        );
        assert_eq!(vm.get_attr(&vcpu, &c, a.attr()), Err(Errno::ENXIO), "{a:?}");
    }
}

#[test]
fn order_no_feature_and_bad_pointer_is_enodev() {
    let spus = host_spus();
    let mut vm = VmSpe::new(MEMLOCK_UNLIMITED);
    let mut vcpu = VcpuSpe::new();
    for a in SpeAttr::ALL {
        let r = vm.set_attr(&mut vcpu, &no_feature(&spus), a.attr(), UserPtr::Bad);
        assert_eq!(r, Err(Errno::ENODEV), "{a:?}");
    }
}

#[test]
fn order_unknown_attr_and_no_feature_is_enxio() {
    let spus = host_spus();
    let mut vm = VmSpe::new(MEMLOCK_UNLIMITED);
    let mut vcpu = VcpuSpe::new();
    assert_eq!(
        set(&mut vm, &mut vcpu, &no_feature(&spus), 4, 0),
        Err(Errno::ENXIO)
    );
    assert_eq!(vm.get_attr(&vcpu, &no_feature(&spus), 4), Err(Errno::ENXIO));
}

// ---------------------------------------------------------------------------
// Common gate.

#[test]
fn unknown_attr_is_enxio() {
    let spus = host_spus();
    let c = ctx(&spus);
    let mut vm = VmSpe::new(MEMLOCK_UNLIMITED);
    let mut vcpu = VcpuSpe::new();
    for attr in [4, 5, 0x100, u64::MAX] {
        assert_eq!(
            set(&mut vm, &mut vcpu, &c, attr, 0),
            Err(Errno::ENXIO),
            "{attr}"
        );
        assert_eq!(
            vm.set_attr(&mut vcpu, &c, attr, UserPtr::Bad),
            Err(Errno::ENXIO)
        );
        assert_eq!(vm.get_attr(&vcpu, &c, attr), Err(Errno::ENXIO), "{attr}");
        assert_eq!(vm.has_attr(&c, attr), Err(Errno::ENXIO), "{attr}");
    }
}

#[test]
fn every_attr_enodev_without_feature() {
    let spus = host_spus();
    let (mut vm, mut vcpu) = configured(&spus);
    let nf = no_feature(&spus);
    for a in SpeAttr::ALL {
        assert_eq!(
            set(&mut vm, &mut vcpu, &nf, a.attr(), 21),
            Err(Errno::ENODEV),
            "{a:?}"
        );
        assert_eq!(
            vm.get_attr(&vcpu, &nf, a.attr()),
            Err(Errno::ENODEV),
            "{a:?}"
        );
    }
}

#[test]
fn every_attr_enxio_without_host_support() {
    let spus = host_spus();
    let (mut vm, mut vcpu) = configured(&spus);
    let nh = no_host(&spus);
    for a in SpeAttr::ALL {
        assert_eq!(
            set(&mut vm, &mut vcpu, &nh, a.attr(), 21),
            Err(Errno::ENXIO),
            "{a:?}"
        );
        assert_eq!(
            vm.get_attr(&vcpu, &nh, a.attr()),
            Err(Errno::ENXIO),
            "{a:?}"
        );
    }
}

#[test]
fn has_attr_rules() {
    let spus = host_spus();
    let vm = VmSpe::new(MEMLOCK_UNLIMITED);
    for a in SpeAttr::ALL {
        assert_eq!(vm.has_attr(&ctx(&spus), a.attr()), Ok(()), "{a:?}");
        assert_eq!(
            vm.has_attr(&no_feature(&spus), a.attr()),
            Err(Errno::ENXIO),
            "{a:?}"
        );
        assert_eq!(
            vm.has_attr(&no_host(&spus), a.attr()),
            Err(Errno::ENXIO),
            "{a:?}"
        );
    }
    assert_eq!(
        SpeAttr::ALL.map(SpeAttr::attr),
        [
            KVM_ARM_VCPU_SPE_IRQ,
            KVM_ARM_VCPU_SPE_SPU,
            MAX,
            KVM_ARM_VCPU_SPE_INIT
        ]
    );
}

// ---------------------------------------------------------------------------
// SPE_IRQ.

#[test]
fn irq_set_and_get() {
    let spus = host_spus();
    let c = ctx(&spus);
    let mut vm = VmSpe::new(MEMLOCK_UNLIMITED);
    let mut vcpu = VcpuSpe::new();
    assert_eq!(
        set(&mut vm, &mut vcpu, &c, KVM_ARM_VCPU_SPE_IRQ, 21),
        Ok(())
    );
    assert_eq!(vm.get_attr(&vcpu, &c, KVM_ARM_VCPU_SPE_IRQ), Ok(21));
    assert_eq!(vm.irq(), Some(21));
    assert_eq!(vcpu.irq(), Some(21));
}

#[test]
fn irq_get_before_set_enxio() {
    let spus = host_spus();
    let vm = VmSpe::new(MEMLOCK_UNLIMITED);
    let vcpu = VcpuSpe::new();
    assert_eq!(
        vm.get_attr(&vcpu, &ctx(&spus), KVM_ARM_VCPU_SPE_IRQ),
        Err(Errno::ENXIO)
    );
}

#[test]
fn irq_get_is_per_vcpu() {
    let spus = host_spus();
    let c = ctx(&spus);
    let mut vm = VmSpe::new(MEMLOCK_UNLIMITED);
    let mut vcpu0 = VcpuSpe::new();
    let vcpu1 = VcpuSpe::new();
    set(&mut vm, &mut vcpu0, &c, KVM_ARM_VCPU_SPE_IRQ, 21).unwrap();
    assert_eq!(
        vm.get_attr(&vcpu1, &c, KVM_ARM_VCPU_SPE_IRQ),
        Err(Errno::ENXIO)
    );
}

#[test]
fn irq_ebusy_vm_has_run() {
    let spus = host_spus();
    let mut vm = VmSpe::new(MEMLOCK_UNLIMITED);
    let mut vcpu = VcpuSpe::new();
    vm.mark_ran();
    assert_eq!(
        set(&mut vm, &mut vcpu, &ctx(&spus), KVM_ARM_VCPU_SPE_IRQ, 21),
        Err(Errno::EBUSY)
    );
    assert_eq!(vcpu.irq(), None);
}

#[test]
fn irq_efault_bad_pointer() {
    let spus = host_spus();
    let mut vm = VmSpe::new(MEMLOCK_UNLIMITED);
    let mut vcpu = VcpuSpe::new();
    let r = vm.set_attr(&mut vcpu, &ctx(&spus), KVM_ARM_VCPU_SPE_IRQ, UserPtr::Bad);
    assert_eq!(r, Err(Errno::EFAULT));
    vm.mark_ran();
    let r = vm.set_attr(&mut vcpu, &ctx(&spus), KVM_ARM_VCPU_SPE_IRQ, UserPtr::Bad);
    assert_eq!(r, Err(Errno::EFAULT));
}

#[test]
fn irq_einval_not_a_ppi() {
    let spus = host_spus();
    let c = ctx(&spus);
    let mut vm = VmSpe::new(MEMLOCK_UNLIMITED);
    let mut vcpu = VcpuSpe::new();
    for irq in [0, 15, 32, 40, 1020, (1 << 32) | 21, u64::MAX] {
        assert_eq!(
            set(&mut vm, &mut vcpu, &c, KVM_ARM_VCPU_SPE_IRQ, irq),
            Err(Errno::EINVAL),
            "{irq}"
        );
    }
    assert_eq!(vcpu.irq(), None);
    assert_eq!(
        set(&mut vm, &mut vcpu, &c, KVM_ARM_VCPU_SPE_IRQ, 16),
        Ok(())
    );
    let mut vcpu2 = VcpuSpe::new();
    let mut vm2 = VmSpe::new(MEMLOCK_UNLIMITED);
    assert_eq!(
        set(&mut vm2, &mut vcpu2, &c, KVM_ARM_VCPU_SPE_IRQ, 31),
        Ok(())
    );
}

#[test]
fn irq_ebusy_vcpu_already_has_irq() {
    let spus = host_spus();
    let c = ctx(&spus);
    let mut vm = VmSpe::new(MEMLOCK_UNLIMITED);
    let mut vcpu = VcpuSpe::new();
    set(&mut vm, &mut vcpu, &c, KVM_ARM_VCPU_SPE_IRQ, 21).unwrap();
    assert_eq!(
        set(&mut vm, &mut vcpu, &c, KVM_ARM_VCPU_SPE_IRQ, 21),
        Err(Errno::EBUSY)
    );
}

#[test]
fn irq_einval_other_vcpu_chose_another() {
    let spus = host_spus();
    let c = ctx(&spus);
    let mut vm = VmSpe::new(MEMLOCK_UNLIMITED);
    let mut vcpu0 = VcpuSpe::new();
    let mut vcpu1 = VcpuSpe::new();
    set(&mut vm, &mut vcpu0, &c, KVM_ARM_VCPU_SPE_IRQ, 21).unwrap();
    assert_eq!(
        set(&mut vm, &mut vcpu1, &c, KVM_ARM_VCPU_SPE_IRQ, 22),
        Err(Errno::EINVAL)
    );
    assert_eq!(vcpu1.irq(), None);
    assert_eq!(
        set(&mut vm, &mut vcpu1, &c, KVM_ARM_VCPU_SPE_IRQ, 21),
        Ok(())
    );
    assert_eq!(vcpu1.irq(), Some(21));
}

#[test]
fn irq_order_different_irq_on_same_vcpu_is_einval_before_ebusy() {
    // pmu-emul.c: pmu_irq_is_valid (EINVAL) before irq_initialized (EBUSY).
    let spus = host_spus();
    let c = ctx(&spus);
    let mut vm = VmSpe::new(MEMLOCK_UNLIMITED);
    let mut vcpu = VcpuSpe::new();
    set(&mut vm, &mut vcpu, &c, KVM_ARM_VCPU_SPE_IRQ, 21).unwrap();
    assert_eq!(
        set(&mut vm, &mut vcpu, &c, KVM_ARM_VCPU_SPE_IRQ, 22),
        Err(Errno::EINVAL)
    );
    assert_eq!(vcpu.irq(), Some(21));
}

#[test]
fn irq_order_vm_ran_and_not_ppi_is_ebusy() {
    let spus = host_spus();
    let mut vm = VmSpe::new(MEMLOCK_UNLIMITED);
    let mut vcpu = VcpuSpe::new();
    vm.mark_ran();
    assert_eq!(
        set(&mut vm, &mut vcpu, &ctx(&spus), KVM_ARM_VCPU_SPE_IRQ, 40),
        Err(Errno::EBUSY)
    );
}

// ---------------------------------------------------------------------------
// SPE_SPU.

#[test]
fn spu_set_and_get() {
    let spus = host_spus();
    let (vm, vcpu) = vm_with_spu(&spus, LIMITED_SPU);
    assert_eq!(
        vm.get_attr(&vcpu, &ctx(&spus), KVM_ARM_VCPU_SPE_SPU),
        Ok(u64::from(LIMITED_SPU))
    );
    assert_eq!(vm.spu(), Some(LIMITED_SPU));
    assert_eq!(vm.spu_in(&spus), Some(&spus[1]));
}

#[test]
fn spu_get_before_set_enxio() {
    let spus = host_spus();
    let vm = VmSpe::new(MEMLOCK_UNLIMITED);
    let vcpu = VcpuSpe::new();
    assert_eq!(
        vm.get_attr(&vcpu, &ctx(&spus), KVM_ARM_VCPU_SPE_SPU),
        Err(Errno::ENXIO)
    );
}

#[test]
fn spu_ebusy_vm_has_run() {
    let spus = host_spus();
    let mut vm = VmSpe::new(MEMLOCK_UNLIMITED);
    let mut vcpu = VcpuSpe::new();
    vm.mark_ran();
    assert_eq!(
        set(&mut vm, &mut vcpu, &ctx(&spus), KVM_ARM_VCPU_SPE_SPU, 0),
        Err(Errno::EBUSY)
    );
    // Also before the unknown-id check.
    assert_eq!(
        set(&mut vm, &mut vcpu, &ctx(&spus), KVM_ARM_VCPU_SPE_SPU, 99),
        Err(Errno::EBUSY)
    );
    assert_eq!(vm.spu(), None);
}

#[test]
fn spu_efault_bad_pointer() {
    let spus = host_spus();
    let mut vm = VmSpe::new(MEMLOCK_UNLIMITED);
    let mut vcpu = VcpuSpe::new();
    let r = vm.set_attr(&mut vcpu, &ctx(&spus), KVM_ARM_VCPU_SPE_SPU, UserPtr::Bad);
    assert_eq!(r, Err(Errno::EFAULT));
}

#[test]
fn spu_enodev_unknown_id() {
    let spus = host_spus();
    let mut vm = VmSpe::new(MEMLOCK_UNLIMITED);
    let mut vcpu = VcpuSpe::new();
    for id in [2, 99, u64::from(u32::MAX), 1 << 32, u64::MAX] {
        assert_eq!(
            set(&mut vm, &mut vcpu, &ctx(&spus), KVM_ARM_VCPU_SPE_SPU, id),
            Err(Errno::ENODEV),
            "{id}"
        );
    }
    assert_eq!(vm.spu(), None);
}

#[test]
fn spu_einval_different_spu() {
    let spus = host_spus();
    let (mut vm, mut vcpu) = vm_with_spu(&spus, UNLIMITED_SPU);
    let r = set(
        &mut vm,
        &mut vcpu,
        &ctx(&spus),
        KVM_ARM_VCPU_SPE_SPU,
        u64::from(LIMITED_SPU),
    );
    assert_eq!(r, Err(Errno::EINVAL));
    assert_eq!(vm.spu(), Some(UNLIMITED_SPU));
}

#[test]
fn spu_same_twice_ok_from_any_vcpu() {
    let spus = host_spus();
    let (mut vm, _) = vm_with_spu(&spus, UNLIMITED_SPU);
    let mut other = VcpuSpe::new();
    let r = set(
        &mut vm,
        &mut other,
        &ctx(&spus),
        KVM_ARM_VCPU_SPE_SPU,
        u64::from(UNLIMITED_SPU),
    );
    assert_eq!(r, Ok(()));
}

#[test]
fn spu_order_unknown_and_different_is_enodev() {
    let spus = host_spus();
    let (mut vm, mut vcpu) = vm_with_spu(&spus, UNLIMITED_SPU);
    assert_eq!(
        set(&mut vm, &mut vcpu, &ctx(&spus), KVM_ARM_VCPU_SPE_SPU, 99),
        Err(Errno::ENODEV)
    );
}

// ---------------------------------------------------------------------------
// SPE_INIT.

#[test]
fn init_ok_when_configured() {
    let spus = host_spus();
    let (mut vm, mut vcpu) = configured(&spus);
    assert_eq!(
        set(&mut vm, &mut vcpu, &ctx(&spus), KVM_ARM_VCPU_SPE_INIT, 0),
        Ok(())
    );
    assert!(vcpu.is_initialized());
}

#[test]
fn init_ignores_pointer() {
    let spus = host_spus();
    let (mut vm, mut vcpu) = configured(&spus);
    let r = vm.set_attr(&mut vcpu, &ctx(&spus), KVM_ARM_VCPU_SPE_INIT, UserPtr::Bad);
    assert_eq!(r, Ok(()));
}

#[test]
fn init_ebusy_twice() {
    let spus = host_spus();
    let (mut vm, mut vcpu) = configured(&spus);
    set(&mut vm, &mut vcpu, &ctx(&spus), KVM_ARM_VCPU_SPE_INIT, 0).unwrap();
    assert_eq!(
        set(&mut vm, &mut vcpu, &ctx(&spus), KVM_ARM_VCPU_SPE_INIT, 0),
        Err(Errno::EBUSY)
    );
}

#[test]
fn init_ebusy_vm_has_run() {
    let spus = host_spus();
    let (mut vm, mut vcpu) = configured(&spus);
    vm.mark_ran();
    assert_eq!(
        set(&mut vm, &mut vcpu, &ctx(&spus), KVM_ARM_VCPU_SPE_INIT, 0),
        Err(Errno::EBUSY)
    );
    assert!(!vcpu.is_initialized());
}

#[test]
fn init_order_vm_ran_and_unconfigured_is_ebusy() {
    let spus = host_spus();
    let mut vm = VmSpe::new(MEMLOCK_UNLIMITED);
    let mut vcpu = VcpuSpe::new();
    vm.mark_ran();
    assert_eq!(
        set(&mut vm, &mut vcpu, &ctx(&spus), KVM_ARM_VCPU_SPE_INIT, 0),
        Err(Errno::EBUSY)
    );
}

#[test]
fn init_enxio_without_spu() {
    let spus = host_spus();
    let c = ctx(&spus);
    let mut vm = VmSpe::new(MEMLOCK_UNLIMITED);
    let mut vcpu = VcpuSpe::new();
    set(&mut vm, &mut vcpu, &c, KVM_ARM_VCPU_SPE_IRQ, 21).unwrap();
    assert_eq!(
        set(&mut vm, &mut vcpu, &c, KVM_ARM_VCPU_SPE_INIT, 0),
        Err(Errno::ENXIO)
    );
    assert!(!vcpu.is_initialized());
}

#[test]
fn init_enxio_without_irq_on_this_vcpu() {
    let spus = host_spus();
    let c = ctx(&spus);
    let (mut vm, _vcpu0) = configured(&spus);
    let mut vcpu1 = VcpuSpe::new();
    assert_eq!(
        set(&mut vm, &mut vcpu1, &c, KVM_ARM_VCPU_SPE_INIT, 0),
        Err(Errno::ENXIO)
    );
    set(&mut vm, &mut vcpu1, &c, KVM_ARM_VCPU_SPE_IRQ, 21).unwrap();
    assert_eq!(
        set(&mut vm, &mut vcpu1, &c, KVM_ARM_VCPU_SPE_INIT, 0),
        Ok(())
    );
}

#[test]
fn init_enxio_without_max_buffer_size() {
    let spus = host_spus();
    let c = ctx(&spus);
    let (mut vm, mut vcpu) = vm_with_spu(&spus, UNLIMITED_SPU);
    set(&mut vm, &mut vcpu, &c, KVM_ARM_VCPU_SPE_IRQ, 21).unwrap();
    assert_eq!(
        set(&mut vm, &mut vcpu, &c, KVM_ARM_VCPU_SPE_INIT, 0),
        Err(Errno::ENXIO)
    );
}

#[test]
fn init_get_is_enxio() {
    let spus = host_spus();
    let (mut vm, mut vcpu) = configured(&spus);
    assert_eq!(
        vm.get_attr(&vcpu, &ctx(&spus), KVM_ARM_VCPU_SPE_INIT),
        Err(Errno::ENXIO)
    );
    set(&mut vm, &mut vcpu, &ctx(&spus), KVM_ARM_VCPU_SPE_INIT, 0).unwrap();
    assert_eq!(
        vm.get_attr(&vcpu, &ctx(&spus), KVM_ARM_VCPU_SPE_INIT),
        Err(Errno::ENXIO)
    );
}

// ---------------------------------------------------------------------------
// KVM_RUN readiness.

#[test]
fn check_ready_names_the_missing_piece() {
    let spus = host_spus();
    let c = ctx(&spus);
    let mut vm = VmSpe::new(MEMLOCK_UNLIMITED);
    let mut vcpu = VcpuSpe::new();
    assert_eq!(vm.check_ready(&vcpu, &c), Err(NotReady::NoSpu));
    set(&mut vm, &mut vcpu, &c, KVM_ARM_VCPU_SPE_SPU, 0).unwrap();
    assert_eq!(vm.check_ready(&vcpu, &c), Err(NotReady::NoIrq));
    set(&mut vm, &mut vcpu, &c, KVM_ARM_VCPU_SPE_IRQ, 21).unwrap();
    assert_eq!(vm.check_ready(&vcpu, &c), Err(NotReady::NoMaxBufferSize));
    set(&mut vm, &mut vcpu, &c, MAX, 2 * MIB).unwrap();
    assert_eq!(vm.check_ready(&vcpu, &c), Err(NotReady::NotInitialized));
    set(&mut vm, &mut vcpu, &c, KVM_ARM_VCPU_SPE_INIT, 0).unwrap();
    assert_eq!(vm.check_ready(&vcpu, &c), Ok(()));
}

#[test]
fn check_ready_without_feature_is_ok() {
    let spus = host_spus();
    let vm = VmSpe::new(MEMLOCK_UNLIMITED);
    assert_eq!(vm.check_ready(&VcpuSpe::new(), &no_feature(&spus)), Ok(()));
}

#[test]
fn check_ready_host_unsupported_and_spu_gone() {
    let spus = host_spus();
    let (mut vm, mut vcpu) = configured(&spus);
    set(&mut vm, &mut vcpu, &ctx(&spus), KVM_ARM_VCPU_SPE_INIT, 0).unwrap();
    assert_eq!(
        vm.check_ready(&vcpu, &no_host(&spus)),
        Err(NotReady::HostUnsupported)
    );
    let fewer = [spus[1].clone()];
    assert_eq!(
        vm.check_ready(&vcpu, &ctx(&fewer)),
        Err(NotReady::SpuUnavailable(UNLIMITED_SPU))
    );
}

#[test]
fn not_ready_display() {
    let cases = [
        (
            NotReady::HostUnsupported,
            "guest SPE: the host does not support SPE",
        ),
        (
            NotReady::NoSpu,
            "guest SPE: no SPU chosen (KVM_ARM_VCPU_SPE_SPU)",
        ),
        (
            NotReady::SpuUnavailable(3),
            "guest SPE: SPU 3 is not present on the host",
        ),
        (
            NotReady::NoIrq,
            "guest SPE: vCPU has no IRQ (KVM_ARM_VCPU_SPE_IRQ)",
        ),
        (
            NotReady::NoMaxBufferSize,
            "guest SPE: no maximum buffer size set (KVM_ARM_VCPU_SPE_MAX_BUFFER_SIZE)",
        ),
        (
            NotReady::NotInitialized,
            "guest SPE: vCPU not initialised (KVM_ARM_VCPU_SPE_INIT)",
        ),
    ];
    for (e, s) in cases {
        assert_eq!(e.to_string(), s);
    }
}

// ---------------------------------------------------------------------------
// Guest ID registers.

fn spu_with(pmsidr: u64, pmbidr: u64) -> Spu {
    Spu {
        id: 9,
        pmsidr,
        pmbidr,
        cpus: vec![0],
    }
}

#[test]
fn guest_pmbidr_bit_exact() {
    let spus = [spu_with(0, !pmbidr_el1::MaxBuffSize.mask())];
    let c = ctx(&spus);
    let mut vm = VmSpe::new(MEMLOCK_UNLIMITED);
    let mut vcpu = VcpuSpe::new();
    set(&mut vm, &mut vcpu, &c, KVM_ARM_VCPU_SPE_SPU, 9).unwrap();
    set(&mut vm, &mut vcpu, &c, MAX, 4 * MIB).unwrap();
    let g = vm.guest_pmbidr(&spus[0]);
    // RES0 [63:48] and [31:12] clear; AddrMode [7:6] = 0b00; MaxBuffSize =
    // E 2, M 0 = 0x0400; EA, F, P, Align kept.
    assert_eq!(g, 0x0000_0400_0000_0F3F);
    assert_eq!(g & pmbidr_el1::RES0, 0);
    assert_eq!(pmbidr_el1::AddrMode.get(g), PMBIDR_ADDRMODE_VM_ONLY);
    assert_eq!(PMBIDR_ADDRMODE_VM_ONLY, 0b00);
    assert_eq!(maxbuffsize::size(g), 4 * MIB);
}

#[test]
fn guest_pmbidr_advertises_vm_size_not_spu_size() {
    let spus = host_spus();
    let (mut vm, mut vcpu) = vm_with_spu(&spus, LIMITED_SPU);
    set(&mut vm, &mut vcpu, &ctx(&spus), MAX, 2 * MIB + 4 * KIB).unwrap();
    let g = vm.guest_pmbidr(&spus[1]);
    assert_eq!(maxbuffsize::get(g), (1 << 9) | 1);
    assert_eq!(maxbuffsize::size(g), 2 * MIB + 4 * KIB);
    // Low bits 0x226 of the host value: AddrMode already 0, kept as is.
    assert_eq!(g, 0x0000_0201_0000_0226);
}

#[test]
fn guest_pmbidr_zero_size_means_no_limit() {
    let spus = host_spus();
    let (mut vm, mut vcpu) = vm_with_spu(&spus, UNLIMITED_SPU);
    set(&mut vm, &mut vcpu, &ctx(&spus), MAX, 0).unwrap();
    let g = vm.guest_pmbidr(&spus[0]);
    assert_eq!(maxbuffsize::get(g), 0);
    assert_eq!(g, 0x226);
}

#[test]
fn guest_pmbidr_before_size_set_shows_spu_field() {
    let spus = host_spus();
    let (vm, _) = vm_with_spu(&spus, LIMITED_SPU);
    let g = vm.guest_pmbidr(&spus[1]);
    assert_eq!(maxbuffsize::size(g), LIMITED_MAX);
    // The field's reserved bits [47:46] are not passed on.
    let odd = spu_with(0, pmbidr_el1::MaxBuffSize.value(0xC001));
    assert_eq!(vm.guest_pmbidr(&odd), pmbidr_el1::MaxBuffSize.value(0x0001));
}

#[test]
fn guest_pmbidr_addrmode_forced_to_vm_only() {
    let vm = VmSpe::new(MEMLOCK_UNLIMITED);
    let hw = spu_with(0, pmbidr_el1::AddrMode.value(0b01) | 0x20);
    assert_eq!(vm.guest_pmbidr(&hw), 0x20);
}

#[test]
fn guest_pmsidr_res0_cleared_host_version() {
    let vm = VmSpe::new(MEMLOCK_UNLIMITED);
    let hw = spu_with(u64::MAX, 0);
    assert_eq!(vm.guest_pmsidr(&hw), 0x0000_0001_FFFF_FFFF);
    assert!(vm.guest_has_fne(&hw));
    assert!(vm.guest_has_fds(&hw));
}

#[test]
fn guest_pmsidr_fne_fds_per_version() {
    let hw = spu_with(u64::MAX, 0);
    let fne = pmsidr_el1::FnE.mask();
    let fds = pmsidr_el1::FDS.mask();
    let all = 0x0000_0001_FFFF_FFFF;
    let cases = [
        (PmsVer::NotImplemented, all & !fne & !fds, false, false),
        (PmsVer::V1p0, all & !fne & !fds, false, false),
        (PmsVer::V1p1, all & !fne & !fds, false, false),
        (PmsVer::V1p2, all & !fds, true, false),
        (PmsVer::V1p3, all & !fds, true, false),
        (PmsVer::V1p4, all, true, true),
        (PmsVer::V1p5, all, true, true),
        (PmsVer::Future(9), all, true, true),
    ];
    for (ver, want, has_fne, has_fds) in cases {
        let mut vm = VmSpe::new(MEMLOCK_UNLIMITED);
        vm.set_guest_pmsver(ver).unwrap();
        assert_eq!(vm.guest_pmsver(), Some(ver));
        assert_eq!(vm.guest_pmsidr(&hw), want, "{ver:?}");
        assert_eq!(vm.guest_has_fne(&hw), has_fne, "{ver:?}");
        assert_eq!(vm.guest_has_fds(&hw), has_fds, "{ver:?}");
    }
    assert_eq!(0x0000_0001_FFFF_FF3F, all & !fne & !fds);
}

#[test]
fn guest_pmsidr_hardware_without_fne_fds() {
    let spus = host_spus();
    let mut vm = VmSpe::new(MEMLOCK_UNLIMITED);
    vm.set_guest_pmsver(PmsVer::V1p5).unwrap();
    assert!(!vm.guest_has_fne(&spus[1]));
    assert!(!vm.guest_has_fds(&spus[1]));
    assert_eq!(vm.guest_pmsidr(&spus[1]), 0x0122_683F);
    // SPU 0 has both, plus SME (bit 32) which is kept.
    assert_eq!(vm.guest_pmsidr(&spus[0]), 0x1_0122_68FF);
}

#[test]
fn guest_pmsver_frozen_after_run() {
    let mut vm = VmSpe::new(MEMLOCK_UNLIMITED);
    vm.set_guest_pmsver(PmsVer::V1p2).unwrap();
    vm.mark_ran();
    assert!(vm.has_run());
    assert_eq!(vm.set_guest_pmsver(PmsVer::V1p4), Err(Errno::EBUSY));
    assert_eq!(vm.set_guest_pmsver(PmsVer::V1p2), Ok(()));
    assert_eq!(vm.guest_pmsver(), Some(PmsVer::V1p2));
}

#[test]
fn spu_max_buffer_size_helper() {
    let spus = host_spus();
    assert_eq!(spus[0].max_buffer_size(), 0);
    assert_eq!(spus[1].max_buffer_size(), LIMITED_MAX);
}

#[test]
fn memlock_limit_change_keeps_stored_size_valid() {
    let spus = host_spus();
    let c = ctx(&spus);
    let mut vm = VmSpe::new(MIB);
    let mut vcpu = VcpuSpe::new();
    set(
        &mut vm,
        &mut vcpu,
        &c,
        KVM_ARM_VCPU_SPE_SPU,
        u64::from(UNLIMITED_SPU),
    )
    .unwrap();
    assert_eq!(
        set(&mut vm, &mut vcpu, &c, MAX, 2 * MIB),
        Err(Errno::ENOMEM)
    );
    // Raising the limit lets the same size through.
    assert_eq!(vm.set_memlock_limit(4 * MIB), Ok(()));
    assert_eq!(vm.memlock_limit(), 4 * MIB);
    assert_eq!(set(&mut vm, &mut vcpu, &c, MAX, 2 * MIB), Ok(()));
    // Lowering it below the stored size is refused and changes nothing.
    assert_eq!(vm.set_memlock_limit(MIB), Err(Errno::ENOMEM));
    assert_eq!(vm.memlock_limit(), 4 * MIB);
    assert_eq!(vm.set_memlock_limit(2 * MIB), Ok(()));
    assert_eq!(vm.set_memlock_limit(MEMLOCK_UNLIMITED), Ok(()));
}

#[test]
fn memlock_limit_cannot_become_finite_under_a_zero_size() {
    let spus = host_spus();
    let (mut vm, mut vcpu) = vm_with_spu(&spus, UNLIMITED_SPU);
    set(&mut vm, &mut vcpu, &ctx(&spus), MAX, 0).unwrap();
    assert_eq!(vm.set_memlock_limit(u64::MAX - 1), Err(Errno::ENOMEM));
    assert_eq!(vm.memlock_limit(), MEMLOCK_UNLIMITED);
}
