//! PMU state migration through one-reg (KVM_GET_REG_LIST, KVM_GET_ONE_REG,
//! KVM_SET_ONE_REG): the register list, round trips of every listed PMU
//! register with KVM's semantics in every mode, every errno, and migrated
//! guests (mid-run, with an overflow pending, from a partitioned source to
//! an emulated destination that cannot partition) whose counts and
//! overflow interrupts equal an unmigrated run's.

use hyperprof_arch::{pmccfiltr_el0, pmcr_el0, pmevtyper_el0, PmuVer, SysReg};
use hyperprof_guest::drivers::pmu::{EventSpec, Filter};
use hyperprof_guest::guest::{ExecStop, GuestEnv, GuestKernel, GuestProgram, GuestStep};
use hyperprof_kvm::uapi::{
    Errno, UserPtr, VcpuFeatures, KVM_ARM_VCPU_PMU_V3_CTRL, KVM_ARM_VCPU_PMU_V3_ENABLE_PARTITION,
};
use hyperprof_kvm::vm::{Exit, Kvm};
use hyperprof_sim::event::{Event, EventCounts};
use hyperprof_sim::op::{Op, OpKind, Symbol};
use hyperprof_sim::workload::{by_name, Workload};

mod pmu_common;
use pmu_common::{
    enter, evcntr, evtyper, new_vm, pmu_setup, pmu_vcpu, pmu_vm, run_on, Hw, Mode, MODES,
};

const CYCLE: u64 = 1 << 31;
const E: u64 = 1 << 0;
const P: u64 = 1 << 1;
const C: u64 = 1 << 2;
const LC: u64 = 1 << 6;
const LP: u64 = 1 << 7;

/// The PMU registers KVM lists, in the order hyperprof lists them.
fn listed() -> Vec<SysReg> {
    let mut regs = vec![
        SysReg::PMCR_EL0,
        SysReg::PMCNTENSET_EL0,
        SysReg::PMCNTENCLR_EL0,
        SysReg::PMINTENSET_EL1,
        SysReg::PMINTENCLR_EL1,
        SysReg::PMOVSSET_EL0,
        SysReg::PMOVSCLR_EL0,
        SysReg::PMSWINC_EL0,
        SysReg::PMSELR_EL0,
        SysReg::PMCCNTR_EL0,
        SysReg::PMUSERENR_EL0,
    ];
    regs.extend((0..31).map(evcntr));
    regs.extend((0..31).map(evtyper));
    regs.push(SysReg::PMCCFILTR_EL0);
    regs
}

fn hw(mode: Mode) -> Hw {
    Hw {
        fgt: mode.fgt(),
        nvhe: mode.nvhe(),
        ..Hw::default()
    }
}

/// One VM with one PMU vCPU of `nr` counters (or the default) in `mode`.
fn vm(mode: Mode, nr: Option<u8>) -> (Kvm, usize) {
    pmu_vm(hw(mode), &pmu_setup(mode.partitioned(), nr, Vec::new()))
}

#[test]
fn the_register_list_has_every_pmu_register_kvm_lists() {
    for mode in MODES {
        let (mut kvm, vcpu) = vm(mode, None);
        assert_eq!(kvm.pmu_reg_list(vcpu), Ok(listed()), "{mode:?}");
        assert_eq!(kvm.reg_list(vcpu), Ok(listed()), "{mode:?}: no SPE part");
        let vm = new_vm(&mut kvm, 4 << 20);
        let plain = kvm.create_vcpu(vm, VcpuFeatures::default()).unwrap();
        assert_eq!(kvm.pmu_reg_list(plain), Ok(Vec::new()), "{mode:?}");
        assert_eq!(kvm.reg_list(plain), Ok(Vec::new()), "{mode:?}");
    }
}

#[test]
fn every_errno_of_one_reg() {
    for mode in MODES {
        let (mut kvm, vcpu) = vm(mode, None);
        // No such vCPU.
        assert_eq!(kvm.get_one_reg(99, SysReg::PMCR_EL0), Err(Errno::ENODEV));
        assert_eq!(kvm.set_one_reg(99, SysReg::PMCR_EL0, 0), Err(Errno::ENODEV));
        assert_eq!(kvm.pmu_reg_list(99), Err(Errno::ENODEV));
        // Not in the list: PMU registers KVM does not migrate, and others.
        for reg in [
            SysReg::PMCEID0_EL0,
            SysReg::PMCEID1_EL0,
            SysReg::PMXEVCNTR_EL0,
            SysReg::PMXEVTYPER_EL0,
            SysReg::PMMIR_EL1,
            SysReg::PMSCR_EL1,
            SysReg::MDCR_EL2,
        ] {
            assert_eq!(kvm.get_one_reg(vcpu, reg), Err(Errno::ENOENT), "{reg}");
            assert_eq!(kvm.set_one_reg(vcpu, reg, 0), Err(Errno::ENOENT), "{reg}");
        }
        // A vCPU without the PMU feature has none of them.
        let vm = new_vm(&mut kvm, 4 << 20);
        let plain = kvm.create_vcpu(vm, VcpuFeatures::default()).unwrap();
        for reg in listed() {
            assert_eq!(kvm.get_one_reg(plain, reg), Err(Errno::ENOENT), "{reg}");
            assert_eq!(kvm.set_one_reg(plain, reg, 0), Err(Errno::ENOENT), "{reg}");
        }
        // Loaded: the state is (partly) on the hardware.
        kvm.load(vcpu, 0).unwrap();
        for reg in listed() {
            assert_eq!(kvm.get_one_reg(vcpu, reg), Err(Errno::EBUSY), "{reg}");
            assert_eq!(kvm.set_one_reg(vcpu, reg, 0), Err(Errno::EBUSY), "{reg}");
        }
        kvm.put(vcpu).unwrap();
        assert!(kvm.get_one_reg(vcpu, SysReg::PMCR_EL0).is_ok());
    }
}

#[test]
fn every_listed_register_round_trips_with_kvm_semantics_in_every_mode() {
    for mode in MODES {
        let what = format!("{mode:?}");
        let (mut kvm, vcpu) = vm(mode, Some(4));
        let get = |kvm: &mut Kvm, reg| kvm.get_one_reg(vcpu, reg).unwrap();
        let set = |kvm: &mut Kvm, reg, v| kvm.set_one_reg(vcpu, reg, v).unwrap();
        let mine = 0xF | CYCLE;

        // PMCR_EL0: E, LP kept, LC reads as one, P and C reset nothing and
        // read as zero, N is the VM's number of counters.
        set(&mut kvm, evcntr(0), 77);
        set(
            &mut kvm,
            SysReg::PMCR_EL0,
            E | P | C | LP | pmcr_el0::N.value(4),
        );
        let pmcr = get(&mut kvm, SysReg::PMCR_EL0);
        assert_eq!(pmcr, E | LC | LP | pmcr_el0::N.value(4), "{what}");
        assert_eq!(get(&mut kvm, evcntr(0)), 77, "{what}: P reset nothing");

        // SET/CLR pairs: one bitmap, masked to the guest's counters.
        for (s, c) in [
            (SysReg::PMCNTENSET_EL0, SysReg::PMCNTENCLR_EL0),
            (SysReg::PMINTENSET_EL1, SysReg::PMINTENCLR_EL1),
            (SysReg::PMOVSSET_EL0, SysReg::PMOVSCLR_EL0),
        ] {
            set(&mut kvm, s, u64::MAX);
            assert_eq!(get(&mut kvm, s), mine, "{what}: {s}");
            assert_eq!(get(&mut kvm, c), mine, "{what}: {c}");
            set(&mut kvm, c, 0b0101 | 1 << 20);
            assert_eq!(get(&mut kvm, s), 0b1010 | CYCLE, "{what}: {s}");
            set(&mut kvm, c, u64::MAX);
            assert_eq!(get(&mut kvm, c), 0, "{what}: {c}");
            set(&mut kvm, s, 0b0110);
            assert_eq!(get(&mut kvm, c), 0b0110, "{what}: {c}");
        }

        // PMSWINC_EL0: RAZ/WI, no increment.
        set(&mut kvm, SysReg::PMSWINC_EL0, 0xF);
        assert_eq!(get(&mut kvm, SysReg::PMSWINC_EL0), 0, "{what}");
        assert_eq!(
            get(&mut kvm, evcntr(0)),
            77,
            "{what}: PMSWINC counted nothing"
        );

        // The others: RES0 bits dropped.
        set(&mut kvm, SysReg::PMSELR_EL0, u64::MAX);
        assert_eq!(get(&mut kvm, SysReg::PMSELR_EL0), 0x1F, "{what}");
        set(&mut kvm, SysReg::PMUSERENR_EL0, u64::MAX);
        assert_eq!(get(&mut kvm, SysReg::PMUSERENR_EL0), 0xF, "{what}");
        set(&mut kvm, SysReg::PMCCNTR_EL0, u64::MAX - 5);
        assert_eq!(get(&mut kvm, SysReg::PMCCNTR_EL0), u64::MAX - 5, "{what}");
        set(&mut kvm, SysReg::PMCCFILTR_EL0, u64::MAX);
        assert_eq!(
            get(&mut kvm, SysReg::PMCCFILTR_EL0),
            !pmccfiltr_el0::RES0,
            "{what}"
        );
        // Every counter and event type, those above N too (KVM keeps them).
        for i in 0..31u8 {
            let v = 0x1_2345_6789 + u64::from(i);
            set(&mut kvm, evcntr(i), v);
            assert_eq!(get(&mut kvm, evcntr(i)), v, "{what}: counter {i}");
            set(&mut kvm, evtyper(i), u64::MAX);
            assert_eq!(
                get(&mut kvm, evtyper(i)),
                !pmevtyper_el0::RES0,
                "{what}: type {i}"
            );
        }

        // PMCR_EL0.N: above what the host leaves to guests is ignored;
        // a smaller one is the VM's number of counters, which masks the
        // bitmaps from then on.
        set(&mut kvm, SysReg::PMCR_EL0, E | pmcr_el0::N.value(7));
        assert_eq!(
            pmcr_el0::N.get(get(&mut kvm, SysReg::PMCR_EL0)),
            4,
            "{what}"
        );
        set(&mut kvm, SysReg::PMCR_EL0, E | pmcr_el0::N.value(2));
        assert_eq!(
            pmcr_el0::N.get(get(&mut kvm, SysReg::PMCR_EL0)),
            2,
            "{what}"
        );
        set(&mut kvm, SysReg::PMCNTENSET_EL0, u64::MAX);
        assert_eq!(
            get(&mut kvm, SysReg::PMCNTENSET_EL0),
            0b11 | CYCLE,
            "{what}"
        );
        set(&mut kvm, SysReg::PMCR_EL0, E | pmcr_el0::N.value(4));

        // Once the VM ran, N no longer changes.
        run_on(&mut kvm, vcpu, 0, |_| {});
        set(&mut kvm, SysReg::PMCR_EL0, E | pmcr_el0::N.value(1));
        assert_eq!(
            pmcr_el0::N.get(get(&mut kvm, SysReg::PMCR_EL0)),
            4,
            "{what}"
        );
    }
}

#[test]
fn the_guest_sees_what_the_vmm_restored_and_the_vmm_what_the_guest_wrote() {
    for mode in MODES {
        let what = format!("{mode:?}");
        let (mut kvm, vcpu) = vm(mode, Some(4));
        // PMCR_EL0.E clear: nothing counts while the guest reads.
        let restore = [
            (SysReg::PMCR_EL0, LP | pmcr_el0::N.value(4)),
            (SysReg::PMCNTENSET_EL0, 0b1011 | CYCLE),
            (SysReg::PMINTENSET_EL1, 0b0110),
            (SysReg::PMSELR_EL0, 3),
            (SysReg::PMUSERENR_EL0, 0b1),
            (SysReg::PMCCNTR_EL0, 0xABCD_0000_1234),
            (SysReg::PMCCFILTR_EL0, 1 << 30),
            (evcntr(0), 0x1_0000_0010),
            (evcntr(1), 11),
            (evcntr(2), 0xFFFF_FFF0),
            (evcntr(3), 13),
            (evtyper(0), 0x08),
            (evtyper(1), 0x11 | 1 << 31),
            (evtyper(2), 0x13),
            (evtyper(3), 0x1E),
        ];
        for (reg, v) in restore {
            kvm.set_one_reg(vcpu, reg, v).unwrap();
        }
        let seen: Vec<u64> = {
            let mut out = Vec::new();
            run_on(&mut kvm, vcpu, 1, |env| {
                for (reg, _) in restore {
                    out.push(env.read(reg).unwrap());
                }
                assert_eq!(env.read(SysReg::PMXEVTYPER_EL0).unwrap(), 0x1E);
                // The guest changes some.
                env.write(SysReg::PMCNTENCLR_EL0, 0b0011).unwrap();
                env.write(evcntr(1), 99).unwrap();
                env.write(SysReg::PMSELR_EL0, 1).unwrap();
                env.write(evtyper(3), 0x08).unwrap();
            });
            out
        };
        let want: Vec<u64> = restore
            .iter()
            .map(|&(reg, v)| match reg {
                SysReg::PMCR_EL0 => v | LC,
                _ => v,
            })
            .collect();
        assert_eq!(seen, want, "{what}");
        let get = |kvm: &mut Kvm, reg| kvm.get_one_reg(vcpu, reg).unwrap();
        assert_eq!(
            get(&mut kvm, SysReg::PMCNTENSET_EL0),
            0b1000 | CYCLE,
            "{what}"
        );
        assert_eq!(get(&mut kvm, evcntr(1)), 99, "{what}");
        assert_eq!(get(&mut kvm, SysReg::PMSELR_EL0), 1, "{what}");
        assert_eq!(get(&mut kvm, evtyper(3)), 0x08, "{what}");
        assert_eq!(get(&mut kvm, SysReg::PMINTENSET_EL1), 0b0110, "{what}");
    }
}

/// The listed registers of `vcpu` on `from`, set on `vcpu2` of `to`: what
/// a VMM does to migrate the PMU. As QEMU, it leaves out the CLR aliases
/// (their value is the SET register's; writing it would clear the bits)
/// and PMSWINC_EL0 (no state).
fn migrate(from: &mut Kvm, vcpu: usize, to: &mut Kvm, vcpu2: usize) {
    let alias = [
        SysReg::PMCNTENCLR_EL0,
        SysReg::PMINTENCLR_EL1,
        SysReg::PMOVSCLR_EL0,
        SysReg::PMSWINC_EL0,
    ];
    for reg in from.reg_list(vcpu).unwrap() {
        if alias.contains(&reg) {
            continue;
        }
        let v = from.get_one_reg(vcpu, reg).unwrap();
        to.set_one_reg(vcpu2, reg, v).unwrap();
    }
}

fn user(event: u16, period: Option<u32>) -> EventSpec {
    EventSpec {
        event,
        filter: Filter {
            el0: true,
            el1: false,
            el2: false,
        },
        period,
    }
}

fn kernel(ops: u64) -> GuestKernel {
    GuestKernel::without_spe(0, by_name("mix", 3).unwrap(), ops)
        .with_pmu(vec![
            user(Event::INST_RETIRED.number(), None),
            user(Event::L1D_CACHE_REFILL.number(), Some(2_000)),
            user(Event::BR_MIS_PRED.number(), Some(1_000)),
        ])
        .with_slices(40_000)
}

/// Runs `k` on `vcpu` (alternating CPUs) for at most `rounds` KVM_RUNs or
/// until it halts; whether it halted.
fn run_rounds(kvm: &mut Kvm, vcpu: usize, k: &mut GuestKernel, rounds: usize) -> bool {
    for round in 0..rounds {
        match enter(kvm, vcpu, round % 2, k) {
            Exit::Halt => return true,
            Exit::Yield => {}
            e => panic!("unexpected exit {e:?}"),
        }
    }
    false
}

/// A destination host that cannot partition (no reservation): the
/// partition enable is EPERM there, so the VMM sets up an emulated PMU;
/// PMCR_EL0.N from the source then gives it the source's counters.
fn emulated_destination() -> (Kvm, usize) {
    let mut kvm = Kvm::new(Hw::default().machine());
    let vm = new_vm(&mut kvm, 16 << 20);
    let vcpu = pmu_vcpu(&mut kvm, vm, &pmu_setup(false, None, Vec::new())).unwrap();
    assert_eq!(
        kvm.set_device_attr(
            vcpu,
            KVM_ARM_VCPU_PMU_V3_CTRL,
            KVM_ARM_VCPU_PMU_V3_ENABLE_PARTITION,
            UserPtr::Value(1)
        ),
        Err(Errno::EBUSY),
        "initialised already; before INIT it is EPERM"
    );
    (kvm, vcpu)
}

#[test]
fn a_partition_enable_on_a_host_that_cannot_partition_is_eperm() {
    for nvhe in [false, true] {
        let hw = Hw {
            nvhe,
            ..Hw::default()
        };
        let mut kvm = if nvhe {
            Kvm::new_nvhe(hw.machine())
        } else {
            Kvm::new(hw.machine())
        };
        if nvhe {
            // The reservation does not make an nVHE host partition.
            kvm.set_host_pmu_reserve(2).unwrap();
        }
        let vm = new_vm(&mut kvm, 16 << 20);
        let err = pmu_vcpu(&mut kvm, vm, &pmu_setup(true, None, Vec::new()));
        assert_eq!(
            err,
            Err((KVM_ARM_VCPU_PMU_V3_ENABLE_PARTITION, Errno::EPERM))
        );
        assert_eq!(
            kvm.has_device_attr(
                0,
                KVM_ARM_VCPU_PMU_V3_CTRL,
                KVM_ARM_VCPU_PMU_V3_ENABLE_PARTITION
            ),
            Ok(()),
            "the attribute exists; the host cannot honour it"
        );
    }
}

#[test]
fn a_guest_migrated_mid_run_counts_and_takes_overflows_as_an_unmigrated_one() {
    let ops = 1_500_000;
    // The reference: the whole run on one host, partitioned.
    let (mut kvm, vcpu) = vm(Mode::PartitionedFgt, None);
    let mut k = kernel(ops);
    assert!(run_rounds(&mut kvm, vcpu, &mut k, 1_000));
    let reference = (k.pmu_counts().to_vec(), k.pmu_driver().unwrap().1);
    let virqs = kvm.vcpu_stats(vcpu).unwrap().pmu_virqs;
    assert!(reference.1[1..].iter().all(|&o| o > 10), "{reference:?}");

    let pairs: [(Mode, Option<Mode>); 5] = [
        (Mode::PartitionedFgt, Some(Mode::PartitionedFgt)),
        (Mode::PartitionedFgt, None),
        (Mode::PartitionedNoFgt, Some(Mode::EmulatedNvhe)),
        (Mode::EmulatedNvhe, Some(Mode::Emulated)),
        (Mode::Emulated, Some(Mode::PartitionedFgt)),
    ];
    for (src, dst) in pairs {
        let what = format!("{src:?} -> {dst:?}");
        let (mut a, va) = vm(src, None);
        let mut k = kernel(ops);
        // Halfway through, between two KVM_RUNs.
        for round in 0.. {
            if k.ops_done() >= ops / 2 {
                break;
            }
            assert_eq!(enter(&mut a, va, round % 2, &mut k), Exit::Yield, "{what}");
        }
        assert!(!k.finished(), "{what}: still running");
        let (mut b, vb) = match dst {
            Some(m) => vm(m, Some(6)),
            None => emulated_destination(),
        };
        migrate(&mut a, va, &mut b, vb);
        assert!(run_rounds(&mut b, vb, &mut k, 1_000), "{what}");
        assert_eq!(k.error(), None, "{what}");
        let (stats, overflows) = k.pmu_driver().unwrap();
        assert_eq!(k.pmu_counts(), &reference.0[..], "{what}: counts");
        assert_eq!(overflows, reference.1, "{what}: overflow interrupts");
        assert_eq!(stats.spurious, 0, "{what}");
        let taken = a.vcpu_stats(va).unwrap().pmu_virqs + b.vcpu_stats(vb).unwrap().pmu_virqs;
        assert_eq!(taken, virqs, "{what}: each delivered once");
    }
}

/// One phase of a guest program.
type Phase = Box<dyn FnMut(&mut dyn GuestEnv)>;

/// A guest program in phases, one per KVM_RUN.
struct Phases(Vec<Phase>, usize);

impl GuestProgram for Phases {
    fn run(&mut self, env: &mut dyn GuestEnv) -> GuestStep {
        (self.0[self.1])(env);
        self.1 += 1;
        if self.1 == self.0.len() {
            GuestStep::Done
        } else {
            GuestStep::More
        }
    }
}

/// A stream of loads (one MEM_ACCESS each).
struct Loads;

fn a_load() -> Op {
    Op {
        pc: 0x40_0000,
        kind: OpKind::Load,
        data_va: 0x10_0000,
        target: 0,
        issue_latency: 1,
        total_latency: 1,
        translation_latency: 0,
        outcome: 0,
        data_source: 0,
        ldst_subclass: 0,
        cycles: 1,
    }
}

impl Workload for Loads {
    fn name(&self) -> &str {
        "loads"
    }
    fn symbols(&self) -> &[Symbol] {
        &[]
    }
    fn skip(&mut self, n: u64, counts: &mut EventCounts) {
        for _ in 0..n {
            a_load().add_events(counts);
        }
    }
    fn step(&mut self) -> Op {
        a_load()
    }
    fn ops_until(&self, event: Event, k: u64, limit: u64) -> u64 {
        let mut one = EventCounts::default();
        a_load().add_events(&mut one);
        match one.get(event) {
            0 => limit,
            per => k.div_ceil(per).min(limit),
        }
    }
}

#[test]
fn a_pending_overflow_migrates_and_is_delivered_once() {
    const MEM_ACCESS: u64 = 0x13;
    const PRE: u64 = 0xFFFF_FFF0;
    for (src, dst) in [
        (Mode::PartitionedFgt, None),
        (Mode::PartitionedFgt, Some(Mode::EmulatedNvhe)),
        (Mode::EmulatedNvhe, Some(Mode::PartitionedNoFgt)),
    ] {
        let what = format!("{src:?} -> {dst:?}");
        let mut p = Phases(
            vec![
                Box::new(|env: &mut dyn GuestEnv| {
                    env.write(evtyper(0), MEM_ACCESS | 1 << 30).unwrap();
                    env.write(evcntr(0), PRE).unwrap();
                    env.write(SysReg::PMCNTENSET_EL0, 1).unwrap();
                    env.write(SysReg::PMINTENSET_EL1, 1).unwrap();
                    env.write(SysReg::PMCR_EL0, E | LC).unwrap();
                    env.isb();
                    let (n, stop) = env.execute(&mut Loads, 100);
                    assert_eq!((n, stop), (16, ExecStop::VirtualIrq));
                    // Not taken: the VMM migrates the vCPU now.
                }),
                Box::new(|env: &mut dyn GuestEnv| {
                    assert!(env.pmu_virq_pending(), "pending after migration");
                    env.take_virq();
                    assert_eq!(env.read(SysReg::PMOVSSET_EL0).unwrap(), 1);
                    env.write(SysReg::PMOVSCLR_EL0, 1).unwrap();
                    assert!(!env.pmu_virq_pending());
                    let (n, stop) = env.execute(&mut Loads, 100);
                    assert_eq!((n, stop), (100, ExecStop::Completed));
                }),
                Box::new(|env: &mut dyn GuestEnv| {
                    assert!(!env.pmu_virq_pending(), "delivered once");
                    assert_eq!(env.read(SysReg::PMOVSSET_EL0).unwrap(), 0);
                    assert_eq!(env.read(evcntr(0)).unwrap(), (PRE + 116) & 0xFFFF_FFFF_FFFF);
                }),
            ],
            0,
        );
        let (mut a, va) = vm(src, None);
        assert_eq!(enter(&mut a, va, 0, &mut p), Exit::Yield, "{what}");
        assert_ne!(a.get_one_reg(va, SysReg::PMOVSSET_EL0), Ok(0), "{what}");
        let (mut b, vb) = match dst {
            Some(m) => vm(m, Some(6)),
            None => emulated_destination(),
        };
        migrate(&mut a, va, &mut b, vb);
        assert_eq!(enter(&mut b, vb, 1, &mut p), Exit::Yield, "{what}");
        assert_eq!(enter(&mut b, vb, 0, &mut p), Exit::Halt, "{what}");
        let taken = a.vcpu_stats(va).unwrap().pmu_virqs + b.vcpu_stats(vb).unwrap().pmu_virqs;
        assert_eq!(taken, 1, "{what}");
    }
}

#[test]
fn thirty_two_bit_counters_keep_their_low_half() {
    let hw = Hw {
        version: PmuVer::V3p4,
        ..Hw::default()
    };
    let (mut kvm, vcpu) = pmu_vm(hw, &pmu_setup(false, None, Vec::new()));
    kvm.set_one_reg(vcpu, evcntr(2), 0x7_0000_0042).unwrap();
    assert_eq!(kvm.get_one_reg(vcpu, evcntr(2)), Ok(0x42));
    kvm.set_one_reg(vcpu, SysReg::PMCR_EL0, LP | E).unwrap();
    assert_eq!(
        kvm.get_one_reg(vcpu, SysReg::PMCR_EL0)
            .map(|v| v & (LP | E)),
        Ok(E),
        "LP is RES0 before FEAT_PMUv3p5"
    );
}

#[test]
fn registers_restored_before_the_pmu_attributes_use_the_default_pmu() {
    for mode in [Mode::Emulated, Mode::EmulatedNvhe] {
        let what = format!("{mode:?}");
        let mut kvm = hw(mode).kvm(2);
        let vm = new_vm(&mut kvm, 16 << 20);
        let vcpu = kvm
            .create_vcpu(
                vm,
                VcpuFeatures {
                    pmu_v3: true,
                    spe: false,
                },
            )
            .unwrap();
        // Before any attribute: the default PMU's six guest counters mask
        // the bitmaps, and PMCR_EL0.N may lower them.
        kvm.set_one_reg(vcpu, SysReg::PMCNTENSET_EL0, u64::MAX)
            .unwrap();
        assert_eq!(
            kvm.get_one_reg(vcpu, SysReg::PMCNTENSET_EL0),
            Ok(0x3F | CYCLE),
            "{what}"
        );
        kvm.set_one_reg(vcpu, SysReg::PMCR_EL0, pmcr_el0::N.value(3))
            .unwrap();
        assert_eq!(
            kvm.get_one_reg(vcpu, SysReg::PMCNTENSET_EL0),
            Ok(0x7 | CYCLE),
            "{what}"
        );
        kvm.configure_pmu(vcpu, &pmu_setup(false, None, Vec::new()))
            .unwrap();
        run_on(&mut kvm, vcpu, 0, |env| {
            let pmcr = env.read(SysReg::PMCR_EL0).unwrap();
            assert_eq!(pmcr_el0::N.get(pmcr), 3, "{what}");
            assert_eq!(env.read(SysReg::PMCNTENSET_EL0).unwrap(), 0x7 | CYCLE);
            assert!(
                env.read(evcntr(3)).is_err(),
                "{what}: counter 3 is not the guest's"
            );
        });
    }
}
