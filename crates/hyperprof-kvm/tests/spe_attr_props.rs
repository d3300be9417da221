//! Property tests of the SPE vCPU device attributes: arbitrary sequences of
//! set/get/has/run/ready calls on a VM with several vCPUs never panic, are
//! deterministic, never change state on failure or after the VM has run,
//! and never leave a max buffer size that `set_attr` would refuse.

use hyperprof_arch::maxbuffsize;
use hyperprof_kvm::spe_attr::{AttrCtx, NotReady, Spu, VcpuSpe, VmSpe, MEMLOCK_UNLIMITED};
use hyperprof_kvm::uapi::{
    Errno, UserPtr, VcpuFeatures, KVM_ARM_VCPU_SPE_IRQ, KVM_ARM_VCPU_SPE_MAX_BUFFER_SIZE,
    KVM_ARM_VCPU_SPE_SPU,
};
use proptest::prelude::*;

const MIB: u64 = 1 << 20;
const VCPUS: usize = 3;

#[derive(Clone, Debug)]
enum Op {
    /// `value: None` is a faulting pointer.
    Set {
        vcpu: usize,
        attr: u64,
        value: Option<u64>,
    },
    Get {
        vcpu: usize,
        attr: u64,
    },
    Has {
        vcpu: usize,
        attr: u64,
    },
    Run,
    Ready {
        vcpu: usize,
    },
    Memlock {
        limit: u64,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    Set(Result<(), Errno>),
    Get(Result<u64, Errno>),
    Has(Result<(), Errno>),
    Run,
    Ready(Result<(), NotReady>),
    Memlock(Result<(), Errno>),
}

#[derive(Clone, Debug)]
struct Setup {
    spus: Vec<Spu>,
    memlock: u64,
    host_supports_spe: bool,
    features: [bool; VCPUS],
}

fn spus(third_field: u16) -> Vec<Spu> {
    vec![
        Spu {
            id: 0,
            pmsidr: 0xC0,
            pmbidr: 0x226,
            cpus: vec![0],
        },
        Spu {
            id: 1,
            pmsidr: 0,
            pmbidr: maxbuffsize::with_size(0x226, 4 * MIB).unwrap_or(0),
            cpus: vec![1],
        },
        Spu {
            id: 7,
            pmsidr: 0x40,
            pmbidr: maxbuffsize::set(0x226, third_field),
            cpus: vec![2],
        },
    ]
}

fn setup() -> impl Strategy<Value = Setup> {
    (
        any::<u16>(),
        prop_oneof![
            Just(MEMLOCK_UNLIMITED),
            Just(MIB),
            Just(8 * MIB),
            Just(64 * MIB),
            any::<u64>(),
        ],
        prop::bool::weighted(0.9),
        prop::array::uniform3(prop::bool::weighted(0.8)),
    )
        .prop_map(|(f, memlock, host, features)| Setup {
            spus: spus(f),
            memlock,
            host_supports_spe: host,
            features,
        })
}

fn attr() -> impl Strategy<Value = u64> {
    prop_oneof![8 => 0u64..=3, 1 => 4u64..=6, 1 => any::<u64>()]
}

fn value() -> impl Strategy<Value = u64> {
    prop_oneof![
        // IRQs and SPU ids.
        0u64..40,
        // Interesting sizes.
        prop::sample::select(vec![
            0,
            4096,
            2 * MIB,
            2 * MIB + 4096,
            2 * MIB + 1024,
            4 * MIB,
            4 * MIB + 4096,
            4 * MIB + 8192,
            8 * MIB,
            (8 << 30) + 4096,
            maxbuffsize::MAX_SIZE,
            u64::MAX,
        ]),
        // Representable sizes of every magnitude.
        (0u16..=maxbuffsize::FIELD_MAX).prop_map(maxbuffsize::decode),
        // Page multiples, mostly unrepresentable above 2 MiB.
        (0u64..(1 << 40)).prop_map(|p| p << 12),
        any::<u64>(),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..VCPUS, attr(), prop::option::weighted(0.9, value()))
            .prop_map(|(vcpu, attr, value)| Op::Set { vcpu, attr, value }),
        3 => (0..VCPUS, attr()).prop_map(|(vcpu, attr)| Op::Get { vcpu, attr }),
        1 => (0..VCPUS, attr()).prop_map(|(vcpu, attr)| Op::Has { vcpu, attr }),
        1 => Just(Op::Run),
        1 => (0..VCPUS).prop_map(|vcpu| Op::Ready { vcpu }),
        1 => prop_oneof![Just(MEMLOCK_UNLIMITED), Just(MIB), Just(8 * MIB), value()]
            .prop_map(|limit| Op::Memlock { limit }),
    ]
}

fn ctx(s: &Setup, vcpu: usize) -> AttrCtx<'_> {
    AttrCtx {
        features: VcpuFeatures {
            pmu_v3: false,
            spe: s.features.get(vcpu).copied().unwrap_or(false),
        },
        host_spus: &s.spus,
        host_supports_spe: s.host_supports_spe,
    }
}

/// Independent statement of the sizes `set_attr` accepts for an SPU with
/// this PMBIDR_EL1 and this memlock limit (seed 004 + ARM-FACTS §6).
fn acceptable(size: u64, spu_pmbidr: u64, memlock: u64) -> bool {
    let aligned = size % 4096 == 0;
    let representable = if size < 2 * MIB {
        aligned
    } else {
        let msb = 63 - u64::from(size.leading_zeros());
        let granule = 1u64 << (msb - 9);
        size <= maxbuffsize::MAX_SIZE && size % granule == 0
    };
    let spu_max = maxbuffsize::size(spu_pmbidr);
    let in_spu_range = spu_max == 0 || (size != 0 && size <= spu_max);
    let in_memlock = memlock == MEMLOCK_UNLIMITED || (size != 0 && size <= memlock);
    aligned && representable && in_spu_range && in_memlock
}

fn run(s: &Setup, ops: &[Op]) -> Result<Vec<Outcome>, TestCaseError> {
    let mut vm = VmSpe::new(s.memlock);
    let mut vcpus = [VcpuSpe::new(); VCPUS];
    let mut trace = Vec::with_capacity(ops.len());
    for op in ops {
        let before = (vm.clone(), vcpus);
        let outcome = match *op {
            Op::Set { vcpu, attr, value } => {
                let arg = value.map_or(UserPtr::Bad, UserPtr::Value);
                let r = vm.set_attr(&mut vcpus[vcpu], &ctx(s, vcpu), attr, arg);
                if r.is_err() {
                    prop_assert_eq!(&(vm.clone(), vcpus), &before, "failed set changed state");
                }
                if before.0.has_run() {
                    prop_assert!(r.is_err(), "set succeeded after the VM ran");
                }
                Outcome::Set(r)
            }
            Op::Get { vcpu, attr } => {
                let r = vm.get_attr(&vcpus[vcpu], &ctx(s, vcpu), attr);
                if attr == KVM_ARM_VCPU_SPE_MAX_BUFFER_SIZE {
                    match r {
                        Ok(v) => prop_assert_eq!(Some(v), vm.max_buffer_size()),
                        Err(e) => prop_assert!(
                            matches!(e, Errno::EINVAL | Errno::ENXIO | Errno::ENODEV),
                            "get MAX_BUFFER_SIZE gave {:?}",
                            e
                        ),
                    }
                }
                Outcome::Get(r)
            }
            Op::Has { vcpu, attr } => Outcome::Has(vm.has_attr(&ctx(s, vcpu), attr)),
            Op::Run => {
                vm.mark_ran();
                Outcome::Run
            }
            Op::Ready { vcpu } => Outcome::Ready(vm.check_ready(&vcpus[vcpu], &ctx(s, vcpu))),
            Op::Memlock { limit } => {
                let r = vm.set_memlock_limit(limit);
                match r {
                    Ok(()) => prop_assert_eq!(vm.memlock_limit(), limit),
                    Err(_) => prop_assert_eq!(&(vm.clone(), vcpus), &before),
                }
                Outcome::Memlock(r)
            }
        };
        check_invariants(s, &vm, &vcpus)?;
        trace.push(outcome);
    }
    Ok(trace)
}

fn check_invariants(s: &Setup, vm: &VmSpe, vcpus: &[VcpuSpe; VCPUS]) -> Result<(), TestCaseError> {
    if let Some(size) = vm.max_buffer_size() {
        let spu = vm.spu_in(&s.spus);
        prop_assert!(spu.is_some(), "max buffer size set without an SPU");
        let spu = spu.map_or(0, |x| x.pmbidr);
        prop_assert!(
            acceptable(size, spu, vm.memlock_limit()),
            "stored size {:#x} would be refused",
            size
        );
        // And set_attr agrees, on a fresh VM with the same SPU and limit.
        let full = AttrCtx {
            features: VcpuFeatures {
                pmu_v3: false,
                spe: true,
            },
            host_spus: &s.spus,
            host_supports_spe: true,
        };
        let mut fresh = VmSpe::new(vm.memlock_limit());
        let mut v = VcpuSpe::new();
        let id = u64::from(vm.spu().unwrap_or(u32::MAX));
        prop_assert_eq!(
            fresh.set_attr(&mut v, &full, KVM_ARM_VCPU_SPE_SPU, UserPtr::Value(id)),
            Ok(())
        );
        prop_assert_eq!(
            fresh.set_attr(
                &mut v,
                &full,
                KVM_ARM_VCPU_SPE_MAX_BUFFER_SIZE,
                UserPtr::Value(size)
            ),
            Ok(())
        );
        // Whatever vCPU asks (with the feature), it reads the same size.
        prop_assert_eq!(
            vm.get_attr(&VcpuSpe::new(), &full, KVM_ARM_VCPU_SPE_MAX_BUFFER_SIZE),
            Ok(size)
        );
    }
    for v in vcpus {
        if let Some(irq) = v.irq() {
            prop_assert!((16..=31).contains(&irq), "IRQ {} is not a PPI", irq);
            prop_assert_eq!(vm.irq(), Some(irq), "vCPU IRQ differs from the VM's");
        }
        if v.is_initialized() {
            prop_assert!(vm.spu().is_some() && v.irq().is_some() && vm.max_buffer_size().is_some());
        }
    }
    if vm.irq().is_some() {
        prop_assert!(vcpus.iter().any(|v| v.irq() == vm.irq()));
    }
    if let Some(id) = vm.spu() {
        prop_assert!(s.spus.iter().any(|x| x.id == id));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_sequences_keep_invariants(s in setup(), ops in prop::collection::vec(op(), 0..40)) {
        let first = run(&s, &ops)?;
        let second = run(&s, &ops)?;
        prop_assert_eq!(first, second, "not deterministic");
    }

    #[test]
    fn accepted_size_iff_acceptable(
        spu_field in 0u16..=maxbuffsize::FIELD_MAX,
        size in value(),
        memlock in prop_oneof![Just(MEMLOCK_UNLIMITED), any::<u64>(), (0u64..1 << 30).prop_map(|p| p << 12)],
    ) {
        let spus = [Spu { id: 3, pmsidr: 0, pmbidr: maxbuffsize::set(0, spu_field), cpus: vec![] }];
        let c = AttrCtx {
            features: VcpuFeatures { pmu_v3: false, spe: true },
            host_spus: &spus,
            host_supports_spe: true,
        };
        let mut vm = VmSpe::new(memlock);
        let mut vcpu = VcpuSpe::new();
        prop_assert_eq!(vm.set_attr(&mut vcpu, &c, KVM_ARM_VCPU_SPE_SPU, UserPtr::Value(3)), Ok(()));
        let r = vm.set_attr(&mut vcpu, &c, KVM_ARM_VCPU_SPE_MAX_BUFFER_SIZE, UserPtr::Value(size));
        prop_assert_eq!(r.is_ok(), acceptable(size, spus[0].pmbidr, memlock), "{:?} for {:#x}", r, size);
        if r.is_ok() {
            prop_assert_eq!(vm.max_buffer_size(), Some(size));
            prop_assert_eq!(maxbuffsize::size(vm.guest_pmbidr(&spus[0])), size);
        } else {
            prop_assert_eq!(vm.max_buffer_size(), None);
        }
    }

    #[test]
    fn irq_sets_agree_across_vcpus(irqs in prop::collection::vec((0..VCPUS, 0u64..40), 0..20)) {
        let spus = spus(0);
        let c = AttrCtx {
            features: VcpuFeatures { pmu_v3: false, spe: true },
            host_spus: &spus,
            host_supports_spe: true,
        };
        let mut vm = VmSpe::new(MEMLOCK_UNLIMITED);
        let mut vcpus = [VcpuSpe::new(); VCPUS];
        for (i, irq) in irqs {
            let ppi = (16..=31).contains(&irq);
            let expected = if !ppi || vm.irq().is_some_and(|x| u64::from(x) != irq) {
                Err(Errno::EINVAL)
            } else if vcpus[i].irq().is_some() {
                Err(Errno::EBUSY)
            } else {
                Ok(())
            };
            let r = vm.set_attr(&mut vcpus[i], &c, KVM_ARM_VCPU_SPE_IRQ, UserPtr::Value(irq));
            prop_assert_eq!(r, expected);
        }
        let vm_irq = vm.irq();
        for v in &vcpus {
            prop_assert!(v.irq().is_none() || v.irq() == vm_irq);
        }
    }
}
