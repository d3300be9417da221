//! Error rules, filter semantics, HPMN computation and robustness of the
//! `KVM_ARM_VCPU_PMU_V3_CTRL` attributes (`pmu_attr`).

use hyperprof_arch::PmuVer;
use hyperprof_kvm::pmu_attr::*;
use hyperprof_kvm::uapi::{
    Errno, UserPtr, VcpuFeatures, KVM_ARM_VCPU_PMU_V3_ENABLE_PARTITION as PART,
    KVM_ARM_VCPU_PMU_V3_FILTER as FILTER, KVM_ARM_VCPU_PMU_V3_INIT as INIT,
    KVM_ARM_VCPU_PMU_V3_IRQ as IRQ, KVM_ARM_VCPU_PMU_V3_SET_NR_COUNTERS as NR,
    KVM_ARM_VCPU_PMU_V3_SET_PMU as SETPMU,
};
use proptest::prelude::*;

fn pmu(id: u32, counters: u8, reserved: u8, hpmn0: bool) -> HostPmu {
    HostPmu {
        id,
        counters,
        version: PmuVer::V3p5,
        cpus: vec![0, 1],
        reserved_for_host: reserved,
        hpmn0,
        partitioned: true,
    }
}

fn host() -> Vec<HostPmu> {
    vec![pmu(7, 6, 2, false), pmu(9, 4, 4, false)]
}

fn ctx(pmus: &[HostPmu]) -> PmuAttrCtx<'_> {
    PmuAttrCtx {
        features: VcpuFeatures {
            pmu_v3: true,
            spe: false,
        },
        host_pmus: pmus,
        irqchip_in_kernel: true,
        vgic_initialized: true,
        other_vcpus_exist: false,
    }
}

fn v(x: u64) -> UserPtr<u64> {
    UserPtr::Value(x)
}

fn filt(base: u16, n: u16, action: u8) -> UserPtr<u64> {
    v(EventFilter {
        base_event: base,
        nevents: n,
        action,
    }
    .to_raw())
}

fn set(
    vm: &mut VmPmu,
    c: &mut VcpuPmu,
    cx: &PmuAttrCtx<'_>,
    a: u64,
    x: UserPtr<u64>,
) -> Result<(), Errno> {
    vm.set_attr(c, cx, a, x)
}

// ---- common gate ----

#[test]
fn no_pmu_feature_is_enodev_for_every_attr() {
    let h = host();
    let mut cx = ctx(&h);
    cx.features.pmu_v3 = false;
    let (mut vm, mut c) = (VmPmu::new(), VcpuPmu::new());
    for a in 0..=6 {
        assert_eq!(set(&mut vm, &mut c, &cx, a, v(0)), Err(Errno::ENODEV));
    }
}

#[test]
fn initialized_vcpu_is_ebusy_for_every_attr() {
    let h = host();
    let cx = ctx(&h);
    let (mut vm, mut c) = (VmPmu::new(), VcpuPmu::new());
    set(&mut vm, &mut c, &cx, IRQ, v(23)).unwrap();
    set(&mut vm, &mut c, &cx, INIT, v(0)).unwrap();
    for a in 0..=6 {
        assert_eq!(
            set(&mut vm, &mut c, &cx, a, v(1)),
            Err(Errno::EBUSY),
            "attr {a}"
        );
    }
}

#[test]
fn no_host_pmu_is_enodev_and_unknown_attr_enxio() {
    let cx = ctx(&[]);
    let (mut vm, mut c) = (VmPmu::new(), VcpuPmu::new());
    assert_eq!(set(&mut vm, &mut c, &cx, IRQ, v(23)), Err(Errno::ENODEV));
    let h = host();
    let cx = ctx(&h);
    assert_eq!(set(&mut vm, &mut c, &cx, 6, v(0)), Err(Errno::ENXIO));
}

#[test]
fn order_feature_before_unknown_attr() {
    let h = host();
    let mut cx = ctx(&h);
    cx.features.pmu_v3 = false;
    let (mut vm, mut c) = (VmPmu::new(), VcpuPmu::new());
    assert_eq!(set(&mut vm, &mut c, &cx, 99, v(0)), Err(Errno::ENODEV));
}

// ---- IRQ ----

#[test]
fn irq_rules() {
    let h = host();
    let cx = ctx(&h);
    let (mut vm, mut a, mut b) = (VmPmu::new(), VcpuPmu::new(), VcpuPmu::new());
    assert_eq!(
        set(&mut vm, &mut a, &cx, IRQ, UserPtr::Bad),
        Err(Errno::EFAULT)
    );
    assert_eq!(set(&mut vm, &mut a, &cx, IRQ, v(15)), Err(Errno::EINVAL));
    assert_eq!(set(&mut vm, &mut a, &cx, IRQ, v(32)), Err(Errno::EINVAL));
    assert_eq!(
        set(&mut vm, &mut a, &cx, IRQ, v(1 << 32 | 23)),
        Err(Errno::EINVAL)
    );
    set(&mut vm, &mut a, &cx, IRQ, v(23)).unwrap();
    assert_eq!(set(&mut vm, &mut a, &cx, IRQ, v(23)), Err(Errno::EBUSY));
    assert_eq!(set(&mut vm, &mut b, &cx, IRQ, v(22)), Err(Errno::EINVAL));
    set(&mut vm, &mut b, &cx, IRQ, v(23)).unwrap();
    assert_eq!(vm.irq(), Some(23));
    assert_eq!(vm.get_attr(&b, &cx, IRQ), Ok(23));
}

#[test]
fn irq_order_differs_before_already_set() {
    let h = host();
    let cx = ctx(&h);
    let (mut vm, mut a) = (VmPmu::new(), VcpuPmu::new());
    set(&mut vm, &mut a, &cx, IRQ, v(23)).unwrap();
    assert_eq!(set(&mut vm, &mut a, &cx, IRQ, v(24)), Err(Errno::EINVAL));
}

#[test]
fn irq_without_irqchip_is_einval_before_efault() {
    let h = host();
    let mut cx = ctx(&h);
    cx.irqchip_in_kernel = false;
    let (mut vm, mut a) = (VmPmu::new(), VcpuPmu::new());
    assert_eq!(
        set(&mut vm, &mut a, &cx, IRQ, UserPtr::Bad),
        Err(Errno::EINVAL)
    );
    assert_eq!(vm.get_attr(&a, &cx, IRQ), Err(Errno::EINVAL));
}

#[test]
fn get_irq_errors() {
    let h = host();
    let mut cx = ctx(&h);
    let vm = VmPmu::new();
    let a = VcpuPmu::new();
    assert_eq!(vm.get_attr(&a, &cx, IRQ), Err(Errno::ENXIO));
    assert_eq!(vm.get_attr(&a, &cx, INIT), Err(Errno::ENXIO));
    cx.features.pmu_v3 = false;
    assert_eq!(vm.get_attr(&a, &cx, IRQ), Err(Errno::ENODEV));
}

// ---- INIT and check_ready ----

#[test]
fn init_rules_and_check_ready() {
    let h = host();
    let mut cx = ctx(&h);
    let (mut vm, mut a) = (VmPmu::new(), VcpuPmu::new());
    assert_eq!(vm.check_ready(&a, &cx), Err(Errno::EINVAL));
    cx.vgic_initialized = false;
    assert_eq!(set(&mut vm, &mut a, &cx, INIT, v(0)), Err(Errno::ENODEV));
    cx.vgic_initialized = true;
    assert_eq!(set(&mut vm, &mut a, &cx, INIT, v(0)), Err(Errno::ENXIO));
    set(&mut vm, &mut a, &cx, IRQ, v(23)).unwrap();
    set(&mut vm, &mut a, &cx, INIT, UserPtr::Bad).unwrap();
    assert!(a.is_initialized());
    assert_eq!(vm.check_ready(&a, &cx), Ok(()));
    assert_eq!(set(&mut vm, &mut a, &cx, INIT, v(0)), Err(Errno::EBUSY));
    cx.features.pmu_v3 = false;
    assert_eq!(vm.check_ready(&VcpuPmu::new(), &cx), Ok(()));
}

#[test]
fn init_without_irqchip_needs_no_irq() {
    let h = host();
    let mut cx = ctx(&h);
    cx.irqchip_in_kernel = false;
    let (mut vm, mut a) = (VmPmu::new(), VcpuPmu::new());
    set(&mut vm, &mut a, &cx, INIT, v(0)).unwrap();
    assert!(a.is_initialized());
}

// ---- FILTER ----

#[test]
fn filter_errors_and_order() {
    let h = host();
    let cx = ctx(&h);
    let (mut vm, mut a) = (VmPmu::new(), VcpuPmu::new());
    assert_eq!(
        set(&mut vm, &mut a, &cx, FILTER, UserPtr::Bad),
        Err(Errno::EFAULT)
    );
    assert_eq!(
        set(&mut vm, &mut a, &cx, FILTER, filt(0, 1, 2)),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        set(&mut vm, &mut a, &cx, FILTER, filt(0xFFFF, 2, 0)),
        Err(Errno::EINVAL)
    );
    vm.mark_ran();
    // invalid range is reported before "has run"
    assert_eq!(
        set(&mut vm, &mut a, &cx, FILTER, filt(0xFFFF, 2, 0)),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        set(&mut vm, &mut a, &cx, FILTER, filt(0, 1, 0)),
        Err(Errno::EBUSY)
    );
    assert!(!vm.has_filter());
}

#[test]
fn filter_event_ffff_limits() {
    let h = host();
    let cx = ctx(&h);
    let (mut vm, mut a) = (VmPmu::new(), VcpuPmu::new());
    set(
        &mut vm,
        &mut a,
        &cx,
        FILTER,
        filt(0xFFFF, 1, KVM_PMU_EVENT_ALLOW),
    )
    .unwrap();
    assert!(vm.event_allowed(0xFFFF));
    assert!(!vm.event_allowed(0xFFFE));
    assert!(!vm.event_allowed(0x11));
    let mut vm2 = VmPmu::new();
    set(
        &mut vm2,
        &mut a,
        &cx,
        FILTER,
        filt(0, 0xFFFF, KVM_PMU_EVENT_DENY),
    )
    .unwrap();
    assert!(vm2.event_allowed(0xFFFF));
    assert!(!vm2.event_allowed(0xFFFE));
}

#[test]
fn filter_pmuv3_has_10_bit_event_space() {
    let mut p = pmu(1, 6, 0, false);
    p.version = PmuVer::V3;
    let h = vec![p];
    let cx = ctx(&h);
    let (mut vm, mut a) = (VmPmu::new(), VcpuPmu::new());
    assert_eq!(
        set(&mut vm, &mut a, &cx, FILTER, filt(1000, 25, 0)),
        Err(Errno::EINVAL)
    );
    set(&mut vm, &mut a, &cx, FILTER, filt(1000, 24, 0)).unwrap();
    assert!(vm.event_allowed(1023));
}

#[test]
fn filter_allow_list_defaults_to_deny() {
    let h = host();
    let cx = ctx(&h);
    let (mut vm, mut a) = (VmPmu::new(), VcpuPmu::new());
    assert!(vm.event_allowed(0x11));
    set(
        &mut vm,
        &mut a,
        &cx,
        FILTER,
        filt(0x10, 4, KVM_PMU_EVENT_ALLOW),
    )
    .unwrap();
    assert!(vm.event_allowed(0x11) && vm.event_allowed(0x13));
    assert!(!vm.event_allowed(0x14) && !vm.event_allowed(0x0F) && !vm.event_allowed(0x08));
}

#[test]
fn filter_deny_list_defaults_to_allow() {
    let h = host();
    let cx = ctx(&h);
    let (mut vm, mut a) = (VmPmu::new(), VcpuPmu::new());
    set(
        &mut vm,
        &mut a,
        &cx,
        FILTER,
        filt(0x10, 4, KVM_PMU_EVENT_DENY),
    )
    .unwrap();
    assert!(!vm.event_allowed(0x11));
    assert!(vm.event_allowed(0x14) && vm.event_allowed(0x08));
}

#[test]
fn filter_overlapping_ranges_last_wins_default_stays() {
    let h = host();
    let cx = ctx(&h);
    let (mut vm, mut a) = (VmPmu::new(), VcpuPmu::new());
    set(
        &mut vm,
        &mut a,
        &cx,
        FILTER,
        filt(0, 10, KVM_PMU_EVENT_ALLOW),
    )
    .unwrap();
    set(
        &mut vm,
        &mut a,
        &cx,
        FILTER,
        filt(5, 10, KVM_PMU_EVENT_DENY),
    )
    .unwrap();
    assert!(vm.event_allowed(4));
    assert!(!vm.event_allowed(5) && !vm.event_allowed(9) && !vm.event_allowed(14));
    // cancelling with the opposite action does not change the default
    set(
        &mut vm,
        &mut a,
        &cx,
        FILTER,
        filt(0, 10, KVM_PMU_EVENT_DENY),
    )
    .unwrap();
    assert!(!vm.event_allowed(4) && !vm.event_allowed(20));
}

#[test]
fn filter_never_blocks_sw_incr_or_chain() {
    let h = host();
    let cx = ctx(&h);
    let (mut vm, mut a) = (VmPmu::new(), VcpuPmu::new());
    set(
        &mut vm,
        &mut a,
        &cx,
        FILTER,
        filt(0, 0x40, KVM_PMU_EVENT_DENY),
    )
    .unwrap();
    assert!(vm.event_allowed(EVENT_SW_INCR) && vm.event_allowed(EVENT_CHAIN));
    assert!(!vm.event_allowed(0x11));
}

#[test]
fn filter_empty_first_range_sets_policy() {
    let h = host();
    let cx = ctx(&h);
    let (mut vm, mut a) = (VmPmu::new(), VcpuPmu::new());
    set(
        &mut vm,
        &mut a,
        &cx,
        FILTER,
        filt(0x11, 0, KVM_PMU_EVENT_ALLOW),
    )
    .unwrap();
    assert!(!vm.event_allowed(0x11));
}

#[test]
fn filter_raw_roundtrip_ignores_pad() {
    let f = EventFilter {
        base_event: 0x1234,
        nevents: 0xFFFF,
        action: 1,
    };
    assert_eq!(EventFilter::from_raw(f.to_raw() | 0xAB << 40), f);
}

// ---- SET_PMU ----

#[test]
fn set_pmu_rules() {
    let h = host();
    let cx = ctx(&h);
    let (mut vm, mut a) = (VmPmu::new(), VcpuPmu::new());
    assert_eq!(
        set(&mut vm, &mut a, &cx, SETPMU, UserPtr::Bad),
        Err(Errno::EFAULT)
    );
    assert_eq!(set(&mut vm, &mut a, &cx, SETPMU, v(8)), Err(Errno::ENXIO));
    assert_eq!(
        set(&mut vm, &mut a, &cx, SETPMU, v(1 << 32 | 7)),
        Err(Errno::ENXIO)
    );
    set(&mut vm, &mut a, &cx, SETPMU, v(9)).unwrap();
    assert_eq!(vm.pmu().map(|p| p.id), Some(9));
    assert!(vm.pmu_is_explicit());
    vm.mark_ran();
    assert_eq!(set(&mut vm, &mut a, &cx, SETPMU, v(7)), Err(Errno::EBUSY));
    // unknown id reported before "has run"
    assert_eq!(set(&mut vm, &mut a, &cx, SETPMU, v(8)), Err(Errno::ENXIO));
}

#[test]
fn set_pmu_after_filter_busy_unless_same_pmu() {
    let h = host();
    let cx = ctx(&h);
    let (mut vm, mut a) = (VmPmu::new(), VcpuPmu::new());
    set(&mut vm, &mut a, &cx, FILTER, filt(0, 1, 0)).unwrap();
    // the filter recorded the default PMU (the first, id 7)
    assert_eq!(vm.pmu().map(|p| p.id), Some(7));
    assert_eq!(set(&mut vm, &mut a, &cx, SETPMU, v(9)), Err(Errno::EBUSY));
    set(&mut vm, &mut a, &cx, SETPMU, v(7)).unwrap();
}

#[test]
fn set_pmu_resets_nr_counters() {
    let h = host();
    let cx = ctx(&h);
    let (mut vm, mut a) = (VmPmu::new(), VcpuPmu::new());
    set(&mut vm, &mut a, &cx, SETPMU, v(7)).unwrap();
    set(&mut vm, &mut a, &cx, NR, v(2)).unwrap();
    assert_eq!(vm.nr_counters(), 2);
    set(&mut vm, &mut a, &cx, SETPMU, v(7)).unwrap();
    assert_eq!(
        vm.nr_counters(),
        4,
        "the default again: N = 6 less the host's 2"
    );
}

#[test]
fn set_pmu_unpartitionable_while_partitioned_is_einval() {
    let h = host();
    let cx = ctx(&h);
    let (mut vm, mut a) = (VmPmu::new(), VcpuPmu::new());
    set(&mut vm, &mut a, &cx, PART, v(1)).unwrap();
    // PMU 9 reserves all 4 counters and lacks HPMN0
    assert_eq!(set(&mut vm, &mut a, &cx, SETPMU, v(9)), Err(Errno::EINVAL));
    assert_eq!(vm.pmu().map(|p| p.id), Some(7));
}

// ---- SET_NR_COUNTERS ----

#[test]
fn nr_counters_rules() {
    let h = host();
    let cx = ctx(&h);
    let (mut vm, mut a) = (VmPmu::new(), VcpuPmu::new());
    assert_eq!(
        set(&mut vm, &mut a, &cx, NR, UserPtr::Bad),
        Err(Errno::EFAULT)
    );
    assert_eq!(
        set(&mut vm, &mut a, &cx, NR, v(2)),
        Err(Errno::EINVAL),
        "no explicit PMU"
    );
    set(&mut vm, &mut a, &cx, SETPMU, v(7)).unwrap();
    assert_eq!(set(&mut vm, &mut a, &cx, NR, v(7)), Err(Errno::EINVAL));
    assert_eq!(
        set(&mut vm, &mut a, &cx, NR, v(256 + 2)),
        Err(Errno::EINVAL)
    );
    // Emulated too, the limit is what the host leaves to guests (6 - 2):
    // the guest's counters are backed by the same-numbered hardware ones.
    assert_eq!(set(&mut vm, &mut a, &cx, NR, v(6)), Err(Errno::EINVAL));
    assert_eq!(set(&mut vm, &mut a, &cx, NR, v(5)), Err(Errno::EINVAL));
    set(&mut vm, &mut a, &cx, NR, v(4)).unwrap();
    set(&mut vm, &mut a, &cx, NR, v(0)).unwrap();
    assert_eq!(vm.nr_counters(), 0);
    vm.mark_ran();
    assert_eq!(
        set(&mut vm, &mut a, &cx, NR, v(7)),
        Err(Errno::EBUSY),
        "busy before range"
    );
}

#[test]
fn nr_counters_partitioned_limit_is_guest_counters() {
    let h = host();
    let cx = ctx(&h);
    let (mut vm, mut a) = (VmPmu::new(), VcpuPmu::new());
    set(&mut vm, &mut a, &cx, SETPMU, v(7)).unwrap();
    set(&mut vm, &mut a, &cx, PART, v(1)).unwrap();
    assert_eq!(vm.nr_counters(), 4, "default is guest_counters()");
    assert_eq!(set(&mut vm, &mut a, &cx, NR, v(5)), Err(Errno::EINVAL));
    set(&mut vm, &mut a, &cx, NR, v(4)).unwrap();
    assert_eq!(vm.nr_counters(), 4);
}

// ---- partition enable ----

#[test]
fn partition_rules() {
    let h = host();
    let mut cx = ctx(&h);
    let (mut vm, mut a) = (VmPmu::new(), VcpuPmu::new());
    assert_eq!(
        set(&mut vm, &mut a, &cx, PART, UserPtr::Bad),
        Err(Errno::EFAULT)
    );
    assert_eq!(set(&mut vm, &mut a, &cx, PART, v(2)), Err(Errno::EINVAL));
    cx.other_vcpus_exist = true;
    assert_eq!(set(&mut vm, &mut a, &cx, PART, v(1)), Err(Errno::EBUSY));
    set(&mut vm, &mut a, &cx, PART, v(0)).unwrap(); // unchanged mode
    cx.other_vcpus_exist = false;
    set(&mut vm, &mut a, &cx, PART, v(1)).unwrap();
    assert!(vm.is_partitioned());
    assert_eq!(vm.get_attr(&a, &cx, PART), Ok(1));
    cx.other_vcpus_exist = true;
    set(&mut vm, &mut a, &cx, PART, v(1)).unwrap(); // same value on another vCPU
    vm.mark_ran();
    assert_eq!(set(&mut vm, &mut a, &cx, PART, v(1)), Err(Errno::EBUSY));
    assert_eq!(
        set(&mut vm, &mut a, &cx, PART, v(3)),
        Err(Errno::EINVAL),
        "value before ran"
    );
}

#[test]
fn partition_unsupported_is_eperm() {
    // The reservation leaves no counter (no FEAT_HPMN0), and a host that
    // did not partition at boot (no reservation, or nVHE).
    let mut unpartitioned = pmu(7, 6, 2, false);
    unpartitioned.partitioned = false;
    for h in [vec![pmu(9, 4, 4, false)], vec![unpartitioned]] {
        let cx = ctx(&h);
        let (mut vm, mut a) = (VmPmu::new(), VcpuPmu::new());
        assert_eq!(set(&mut vm, &mut a, &cx, PART, v(1)), Err(Errno::EPERM));
        assert_eq!(
            set(&mut vm, &mut a, &cx, PART, v(0)),
            Err(Errno::EPERM),
            "disabling too, as the revision"
        );
        assert_eq!(vm.has_attr(&cx, PART), Ok(()), "the attribute exists");
        assert!(!vm.is_partitioned());
        assert!(vm.pmu().is_none(), "failed call records nothing");
        assert_eq!(
            set(&mut vm, &mut a, &cx, PART, UserPtr::Bad),
            Err(Errno::EFAULT),
            "EFAULT first"
        );
    }
}

#[test]
fn partition_eperm_before_busy_after_run() {
    let h = vec![pmu(9, 4, 4, false)];
    let cx = ctx(&h);
    let (mut vm, mut a) = (VmPmu::new(), VcpuPmu::new());
    vm.mark_ran();
    assert_eq!(set(&mut vm, &mut a, &cx, PART, v(1)), Err(Errno::EPERM));
    let h = host();
    let cx = ctx(&h);
    assert_eq!(set(&mut vm, &mut a, &cx, PART, v(1)), Err(Errno::EBUSY));
}

#[test]
fn partition_with_explicit_nr_above_guest_is_einval() {
    let h = host();
    let cx = ctx(&h);
    let (mut vm, mut a) = (VmPmu::new(), VcpuPmu::new());
    set(&mut vm, &mut a, &cx, SETPMU, v(7)).unwrap();
    // Above the guest counters is refused in emulated mode already; an
    // explicit 0 is fine there but not partitioned without FEAT_HPMN0
    // (MDCR_EL2.HPMN = 0 would be CONSTRAINED UNPREDICTABLE).
    assert_eq!(set(&mut vm, &mut a, &cx, NR, v(5)), Err(Errno::EINVAL));
    set(&mut vm, &mut a, &cx, NR, v(0)).unwrap();
    assert_eq!(set(&mut vm, &mut a, &cx, PART, v(1)), Err(Errno::EINVAL));
    set(&mut vm, &mut a, &cx, NR, v(3)).unwrap();
    set(&mut vm, &mut a, &cx, PART, v(1)).unwrap();
    assert_eq!(vm.nr_counters(), 3);
}

#[test]
fn has_attr_rules() {
    let h = host();
    let mut cx = ctx(&h);
    let vm = VmPmu::new();
    for a in 0..=5 {
        assert_eq!(vm.has_attr(&cx, a), Ok(()));
    }
    assert_eq!(vm.has_attr(&cx, 6), Err(Errno::ENXIO));
    cx.features.pmu_v3 = false;
    assert_eq!(vm.has_attr(&cx, IRQ), Err(Errno::ENXIO));
}

// ---- HPMN from the reservation ----

#[test]
fn hpmn_from_reserve() {
    assert_eq!(pmu(1, 6, 2, false).guest_counters(), 4);
    assert_eq!(pmu(1, 6, 2, false).hpmn(), Some(4));
    assert_eq!(pmu(1, 6, 0, false).hpmn(), Some(6));
    assert_eq!(pmu(1, 6, 5, false).hpmn(), Some(1));
    assert_eq!(pmu(1, 6, 6, false).hpmn(), None, "HPMN 0 needs FEAT_HPMN0");
    assert_eq!(pmu(1, 6, 6, true).hpmn(), Some(0));
    assert_eq!(pmu(1, 0, 0, true).hpmn(), Some(0));
    assert_eq!(pmu(1, 0, 0, false).hpmn(), None);
    assert_eq!(pmu(1, 6, 7, true).hpmn(), None, "reserve larger than N");
    assert_eq!(pmu(1, 6, 7, true).guest_counters(), 0);
    assert_eq!(pmu(1, 40, 1, false).hpmn(), Some(30), "N clamps to 31");
    let mut p = pmu(1, 6, 2, false);
    p.version = PmuVer::ImpDef;
    assert!(!p.can_partition());
}

#[test]
fn failed_set_changes_nothing() {
    let h = host();
    let cx = ctx(&h);
    let (mut vm, mut a) = (VmPmu::new(), VcpuPmu::new());
    let before = (vm.clone(), a);
    assert_eq!(set(&mut vm, &mut a, &cx, NR, v(3)), Err(Errno::EINVAL));
    assert_eq!(set(&mut vm, &mut a, &cx, IRQ, v(3)), Err(Errno::EINVAL));
    assert_eq!((vm, a), before);
}

// ---- property: arbitrary call sequences ----

#[derive(Clone, Debug)]
enum Op {
    Set {
        vcpu: usize,
        attr: u64,
        arg: Option<u64>,
    },
    Get {
        vcpu: usize,
        attr: u64,
    },
    Run,
}

fn op() -> impl Strategy<Value = Op> {
    let arg = prop_oneof![
        Just(None),
        (0u64..40).prop_map(Some),
        any::<u64>().prop_map(Some),
        (any::<u16>(), any::<u16>(), 0u8..3).prop_map(|(b, n, a)| Some(
            EventFilter {
                base_event: b,
                nevents: n,
                action: a
            }
            .to_raw()
        )),
    ];
    prop_oneof![
        (0usize..2, 0u64..7, arg).prop_map(|(vcpu, attr, arg)| Op::Set { vcpu, attr, arg }),
        (0usize..2, 0u64..7).prop_map(|(vcpu, attr)| Op::Get { vcpu, attr }),
        Just(Op::Run),
    ]
}

fn host_pmu_strategy() -> impl Strategy<Value = HostPmu> {
    (
        0u32..4,
        0u8..33,
        0u8..33,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(id, n, r, h0, v1, part)| HostPmu {
            id,
            counters: n,
            version: if v1 { PmuVer::V3 } else { PmuVer::V3p8 },
            cpus: vec![0],
            reserved_for_host: r,
            hpmn0: h0,
            partitioned: part,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_sequences_keep_invariants(
        pmus in prop::collection::vec(host_pmu_strategy(), 0..3),
        ops in prop::collection::vec(op(), 0..40),
    ) {
        let mut vm = VmPmu::new();
        let mut vcpus = [VcpuPmu::new(), VcpuPmu::new()];
        for o in ops {
            match o {
                Op::Set { vcpu, attr, arg } => {
                    let cx = PmuAttrCtx { other_vcpus_exist: vcpu == 1, ..ctx(&pmus) };
                    let before = (vm.clone(), vcpus[vcpu]);
                    let arg = arg.map_or(UserPtr::Bad, UserPtr::Value);
                    if vm.set_attr(&mut vcpus[vcpu], &cx, attr, arg).is_err() {
                        prop_assert_eq!(&(vm.clone(), vcpus[vcpu]), &before);
                    }
                }
                Op::Get { vcpu, attr } => {
                    let _ = vm.get_attr(&vcpus[vcpu], &ctx(&pmus), attr);
                    let _ = vm.has_attr(&ctx(&pmus), attr);
                }
                Op::Run => {
                    if vcpus.iter().all(|c| vm.check_ready(c, &ctx(&pmus)).is_ok()) {
                        vm.mark_ran();
                    }
                }
            }
            prop_assert!(vm.nr_counters() <= vm.counter_limit());
            if let Some(p) = vm.pmu() {
                prop_assert!(vm.counter_limit() <= p.n());
                prop_assert!(!vm.is_partitioned() || p.can_partition());
            }
            if let Some(irq) = vm.irq() {
                prop_assert!((PPI_FIRST..=PPI_LAST).contains(&irq));
            }
            for c in &vcpus {
                if let Some(i) = c.irq() {
                    prop_assert_eq!(Some(i), vm.irq());
                }
            }
            if vm.has_run() {
                prop_assert!(vcpus.iter().all(|c| c.is_initialized()));
            }
        }
    }
}
