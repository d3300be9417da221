//! The behaviours of the KVM selftest `vpmu_counter_access` (ARM-FACTS §7),
//! as guest programs at guest EL1, in the guest PMU's three set-ups:
//! partitioned with FEAT_FGT, partitioned on a CPU without FEAT_FGT, and
//! emulated. Each behaviour is checked for several numbers of counters.
//!
//! - PMCR_EL0.N is the number of counters the VMM set (or the default).
//! - The SET/CLR bitmaps never show a bit of a counter the guest does not
//!   have; bit 31 (the cycle counter) always exists.
//! - Every implemented counter and its event type read back what was
//!   written, through the direct accessors and through PMSELR_EL0 and
//!   PMXEVCNTR_EL0/PMXEVTYPER_EL0 (PMSELR_EL0 = 31 reaches PMCCFILTR_EL0).
//! - Counters the guest does not have are UNDEFINED, directly and through
//!   PMSELR_EL0.
//! - A vCPU reset keeps N and returns the registers to their reset values.
//! - SET_NR_COUNTERS is refused (EINVAL) above the counters the host leaves
//!   to guests.
//! - ID_AA64DFR0_EL1.PMUVer shows the PMU only to a vCPU that has one; for
//!   a vCPU without it every PMU access is UNDEFINED.

use hyperprof_arch::{id_aa64dfr0_el1, pmcr_el0, AccessFault, PmuVer, SysReg};
use hyperprof_guest::guest::GuestEnv;
use hyperprof_kvm::uapi::{Errno, VcpuFeatures, KVM_ARM_VCPU_PMU_V3_SET_NR_COUNTERS};
use hyperprof_kvm::vm::Kvm;
use hyperprof_kvm::vpmu::GuestPmu;

mod pmu_common;
use pmu_common::{
    evcntr, evtyper, new_vm, pmu_regs, pmu_setup, pmu_vcpu, pmu_vm, run_on, Hw, Mode, COUNTERS,
    HOST_RESERVED, MODES,
};

/// What guests may have: N less the host's reservation.
const GUEST_MAX: u8 = COUNTERS - HOST_RESERVED;
const CYCLE_BIT: u64 = 1 << 31;

fn hw(mode: Mode, hpmn0: bool) -> Hw {
    Hw {
        fgt: mode.fgt(),
        nvhe: mode.nvhe(),
        hpmn0,
        ..Hw::default()
    }
}

/// A hypervisor whose host reserves `reserve` counters, with one VM.
fn host(mode: Mode, hpmn0: bool, reserve: u8) -> (Kvm, usize) {
    let mut kvm = hw(mode, hpmn0).kvm(reserve);
    let vm = new_vm(&mut kvm, 16 << 20);
    (kvm, vm)
}

fn add_vcpu(kvm: &mut Kvm, vm: usize, mode: Mode, nr: Option<u8>) -> Result<usize, (u64, Errno)> {
    pmu_vcpu(kvm, vm, &pmu_setup(mode.partitioned(), nr, Vec::new()))
}

/// A VM with one PMU vCPU of `nr` counters in `mode` (host reserve 2).
fn vm(mode: Mode, nr: u8) -> (Kvm, usize) {
    // HPMN = 0 needs FEAT_HPMN0: a partitioned guest without counters
    // only exists on such a PMU.
    let setup = pmu_setup(mode.partitioned(), Some(nr), Vec::new());
    pmu_vm(hw(mode, nr == 0), &setup)
}

/// The numbers of counters each behaviour is checked with.
const NRS: [u8; 4] = [0, 1, 3, GUEST_MAX];

/// Every (mode, nr) case.
fn cases() -> impl Iterator<Item = (Mode, u8)> {
    MODES
        .into_iter()
        .flat_map(|m| NRS.into_iter().map(move |n| (m, n)))
}

fn rd(env: &mut dyn GuestEnv, reg: SysReg, what: &str) -> u64 {
    env.read(reg)
        .unwrap_or_else(|f| panic!("{what}: MRS {reg}: {f:?}"))
}

fn wr(env: &mut dyn GuestEnv, reg: SysReg, v: u64, what: &str) {
    env.write(reg, v)
        .unwrap_or_else(|f| panic!("{what}: MSR {reg}, {v:#x}: {f:?}"));
}

/// The bitmap bits of the guest's counters.
fn implemented(nr: u8) -> u64 {
    ((1u64 << nr) - 1) | CYCLE_BIT
}

#[test]
fn pmcr_n_is_the_configured_number_of_counters() {
    for (mode, nr) in cases() {
        let (mut kvm, vcpu) = vm(mode, nr);
        let what = format!("{mode:?} nr={nr}");
        run_on(&mut kvm, vcpu, 0, |env| {
            let pmcr = rd(env, SysReg::PMCR_EL0, &what);
            assert_eq!(pmcr_el0::N.get(pmcr), u64::from(nr), "{what}");
            // Writing N changes nothing: it is read-only.
            wr(env, SysReg::PMCR_EL0, pmcr_el0::N.value(31), &what);
            let pmcr = rd(env, SysReg::PMCR_EL0, &what);
            assert_eq!(pmcr_el0::N.get(pmcr), u64::from(nr), "{what}: N read-only");
        });
        // And on the other CPU, with the state switched in at load.
        run_on(&mut kvm, vcpu, 1, |env| {
            let pmcr = rd(env, SysReg::PMCR_EL0, &what);
            assert_eq!(pmcr_el0::N.get(pmcr), u64::from(nr), "{what} (CPU 1)");
        });
    }
}

#[test]
fn the_default_number_of_counters_is_what_the_host_leaves_to_guests() {
    for mode in MODES {
        let (mut kvm, vm) = host(mode, false, HOST_RESERVED);
        let vcpu = add_vcpu(&mut kvm, vm, mode, None).unwrap();
        run_on(&mut kvm, vcpu, 0, |env| {
            let pmcr = rd(env, SysReg::PMCR_EL0, "default");
            assert_eq!(pmcr_el0::N.get(pmcr), u64::from(GUEST_MAX), "{mode:?}");
        });
    }
}

#[test]
fn set_and_clear_bitmaps_show_only_implemented_counters() {
    let pairs = [
        (SysReg::PMCNTENSET_EL0, SysReg::PMCNTENCLR_EL0),
        (SysReg::PMINTENSET_EL1, SysReg::PMINTENCLR_EL1),
        (SysReg::PMOVSSET_EL0, SysReg::PMOVSCLR_EL0),
    ];
    for (mode, nr) in cases() {
        let (mut kvm, vcpu) = vm(mode, nr);
        let want = implemented(nr);
        run_on(&mut kvm, vcpu, 0, |env| {
            for (set, clr) in pairs {
                let what = format!("{mode:?} nr={nr} {set}");
                assert_eq!(rd(env, set, &what), 0, "{what}: reset value");
                wr(env, set, u64::MAX, &what);
                assert_eq!(rd(env, set, &what), want, "{what} after all ones");
                assert_eq!(rd(env, clr, &what), want, "{what}: CLR reads the same");
                wr(env, clr, u64::MAX, &what);
                assert_eq!(rd(env, set, &what), 0, "{what} after CLR of all ones");
                // One unimplemented counter at a time: never shown.
                for i in nr..31 {
                    wr(env, set, 1 << i, &what);
                    assert_eq!(rd(env, set, &what), 0, "{what}: bit {i}");
                    assert_eq!(rd(env, clr, &what), 0, "{what}: bit {i}");
                }
                // Each implemented one is.
                for i in (0..nr).chain([31]) {
                    wr(env, set, 1 << i, &what);
                    assert_eq!(rd(env, set, &what), 1 << i, "{what}: bit {i}");
                    wr(env, clr, 1 << i, &what);
                    assert_eq!(rd(env, clr, &what), 0, "{what}: bit {i} cleared");
                }
            }
        });
    }
}

/// Values a counter and an event type are written with (the PMU is
/// PMUv3p5: event counters are 64 bits; the event type with P and U so
/// nothing counts, and evtCount above 10 bits).
fn counter_value(i: u8) -> u64 {
    0x1234_5678_9ABC_0000 | u64::from(i) << 4
}

fn typer_value(i: u8) -> u64 {
    (1 << 31) | (1 << 30) | 0x0400 | u64::from(i)
}

#[test]
fn implemented_counters_read_back_directly_and_through_pmselr() {
    for (mode, nr) in cases() {
        let (mut kvm, vcpu) = vm(mode, nr);
        let what = format!("{mode:?} nr={nr}");
        run_on(&mut kvm, vcpu, 0, |env| {
            for i in 0..nr {
                let w = format!("{what} counter {i}");
                // Direct write, both reads.
                wr(env, evcntr(i), counter_value(i), &w);
                wr(env, evtyper(i), typer_value(i), &w);
                assert_eq!(rd(env, evcntr(i), &w), counter_value(i), "{w}");
                assert_eq!(rd(env, evtyper(i), &w), typer_value(i), "{w}");
                wr(env, SysReg::PMSELR_EL0, u64::from(i), &w);
                assert_eq!(rd(env, SysReg::PMSELR_EL0, &w), u64::from(i), "{w}");
                assert_eq!(rd(env, SysReg::PMXEVCNTR_EL0, &w), counter_value(i), "{w}");
                assert_eq!(rd(env, SysReg::PMXEVTYPER_EL0, &w), typer_value(i), "{w}");
                // Indirect write, both reads.
                let (c, t) = (!counter_value(i), typer_value(i) ^ 0x3);
                wr(env, SysReg::PMXEVCNTR_EL0, c, &w);
                wr(env, SysReg::PMXEVTYPER_EL0, t, &w);
                assert_eq!(rd(env, SysReg::PMXEVCNTR_EL0, &w), c, "{w}");
                assert_eq!(rd(env, SysReg::PMXEVTYPER_EL0, &w), t, "{w}");
                assert_eq!(rd(env, evcntr(i), &w), c, "{w}");
                assert_eq!(rd(env, evtyper(i), &w), t, "{w}");
            }
            // Every counter kept its own value.
            for i in 0..nr {
                assert_eq!(rd(env, evcntr(i), &what), !counter_value(i), "{what} {i}");
            }
            // The cycle counter and its filter; PMSELR_EL0 = 31 reaches
            // PMCCFILTR_EL0 (evtCount is RES0 there).
            wr(env, SysReg::PMCCNTR_EL0, 0xFEED_0000_0000_BEEF, &what);
            assert_eq!(rd(env, SysReg::PMCCNTR_EL0, &what), 0xFEED_0000_0000_BEEF);
            wr(env, SysReg::PMCCFILTR_EL0, 1 << 31, &what);
            assert_eq!(rd(env, SysReg::PMCCFILTR_EL0, &what), 1 << 31, "{what}");
            wr(env, SysReg::PMSELR_EL0, 31, &what);
            assert_eq!(rd(env, SysReg::PMXEVTYPER_EL0, &what), 1 << 31, "{what}");
            wr(env, SysReg::PMXEVTYPER_EL0, (1 << 30) | 0x11, &what);
            assert_eq!(rd(env, SysReg::PMCCFILTR_EL0, &what), 1 << 30, "{what}");
            assert_eq!(rd(env, SysReg::PMXEVTYPER_EL0, &what), 1 << 30, "{what}");
            // PMXEVCNTR_EL0 has no cycle counter behind SEL = 31.
            assert_eq!(
                env.read(SysReg::PMXEVCNTR_EL0),
                Err(AccessFault::Undefined),
                "{what}"
            );
            assert_eq!(
                env.write(SysReg::PMXEVCNTR_EL0, 1),
                Err(AccessFault::Undefined)
            );
        });
        // The values survive a move to the other CPU.
        run_on(&mut kvm, vcpu, 1, |env| {
            for i in 0..nr {
                assert_eq!(
                    rd(env, evcntr(i), &what),
                    !counter_value(i),
                    "{what} {i} moved"
                );
                assert_eq!(
                    rd(env, evtyper(i), &what),
                    typer_value(i) ^ 0x3,
                    "{what} {i}"
                );
            }
            assert_eq!(rd(env, SysReg::PMCCNTR_EL0, &what), 0xFEED_0000_0000_BEEF);
            assert_eq!(rd(env, SysReg::PMCCFILTR_EL0, &what), 1 << 30, "{what}");
        });
    }
}

#[test]
fn unimplemented_counters_are_undefined() {
    const U: Result<u64, AccessFault> = Err(AccessFault::Undefined);
    for (mode, nr) in cases() {
        let (mut kvm, vcpu) = vm(mode, nr);
        run_on(&mut kvm, vcpu, 0, |env| {
            for i in nr..31 {
                let what = format!("{mode:?} nr={nr} counter {i}");
                assert_eq!(env.read(evcntr(i)), U, "{what}");
                assert_eq!(env.read(evtyper(i)), U, "{what}");
                assert_eq!(
                    env.write(evcntr(i), 5),
                    Err(AccessFault::Undefined),
                    "{what}"
                );
                assert_eq!(env.write(evtyper(i), 0x8), Err(AccessFault::Undefined));
                wr(env, SysReg::PMSELR_EL0, u64::from(i), &what);
                assert_eq!(env.read(SysReg::PMXEVCNTR_EL0), U, "{what}");
                assert_eq!(env.read(SysReg::PMXEVTYPER_EL0), U, "{what}");
                assert_eq!(
                    env.write(SysReg::PMXEVCNTR_EL0, 5),
                    Err(AccessFault::Undefined)
                );
                assert_eq!(
                    env.write(SysReg::PMXEVTYPER_EL0, 8),
                    Err(AccessFault::Undefined)
                );
            }
            // Implemented ones are unchanged by all of that.
            for i in 0..nr {
                assert_eq!(env.read(evcntr(i)), Ok(0), "{mode:?} nr={nr} counter {i}");
                assert_eq!(env.read(evtyper(i)), Ok(0), "{mode:?} nr={nr} counter {i}");
            }
        });
    }
}

#[test]
fn a_vcpu_reset_keeps_n_and_resets_the_registers() {
    for (mode, nr) in cases() {
        let (mut kvm, vcpu) = vm(mode, nr);
        let what = format!("{mode:?} nr={nr}");
        run_on(&mut kvm, vcpu, 0, |env| {
            for i in 0..nr {
                wr(env, evcntr(i), counter_value(i), &what);
                wr(env, evtyper(i), typer_value(i), &what);
            }
            wr(env, SysReg::PMCCNTR_EL0, 77, &what);
            wr(env, SysReg::PMCCFILTR_EL0, 1 << 31, &what);
            wr(env, SysReg::PMCNTENSET_EL0, u64::MAX, &what);
            wr(env, SysReg::PMINTENSET_EL1, u64::MAX, &what);
            wr(env, SysReg::PMOVSSET_EL0, u64::MAX, &what);
            wr(env, SysReg::PMSELR_EL0, 31, &what);
            wr(env, SysReg::PMUSERENR_EL0, 0xF, &what);
            wr(
                env,
                SysReg::PMCR_EL0,
                pmcr_el0::D.mask() | pmcr_el0::LP.mask(),
                &what,
            );
        });
        assert_ne!(kvm.guest_pmu(vcpu), Some(&GuestPmu::reset()), "{what}");
        kvm.reset_vcpu(vcpu).unwrap();
        assert_eq!(kvm.guest_pmu(vcpu), Some(&GuestPmu::reset()), "{what}");
        // On the same CPU (which still holds the old values) and the other.
        for cpu in [0, 1] {
            run_on(&mut kvm, vcpu, cpu, |env| {
                let w = format!("{what} after reset, CPU {cpu}");
                let pmcr = rd(env, SysReg::PMCR_EL0, &w);
                assert_eq!(pmcr_el0::N.get(pmcr), u64::from(nr), "{w}");
                assert_eq!(pmcr & 0xFF, pmcr_el0::LC.mask(), "{w}: only LC");
                for i in 0..nr {
                    assert_eq!(rd(env, evcntr(i), &w), 0, "{w} counter {i}");
                    assert_eq!(rd(env, evtyper(i), &w), 0, "{w} counter {i}");
                }
                for reg in [
                    SysReg::PMCCNTR_EL0,
                    SysReg::PMCCFILTR_EL0,
                    SysReg::PMCNTENSET_EL0,
                    SysReg::PMINTENSET_EL1,
                    SysReg::PMOVSSET_EL0,
                    SysReg::PMSELR_EL0,
                    SysReg::PMUSERENR_EL0,
                ] {
                    assert_eq!(rd(env, reg, &w), 0, "{w}: {reg}");
                }
            });
            kvm.reset_vcpu(vcpu).unwrap();
        }
        kvm.load(vcpu, 0).unwrap();
        assert_eq!(kvm.reset_vcpu(vcpu), Err(Errno::EBUSY), "loaded");
        kvm.put(vcpu).unwrap();
    }
}

#[test]
fn set_nr_counters_is_limited_to_what_the_host_leaves_to_guests() {
    for mode in MODES {
        for reserve in [0, HOST_RESERVED, 5] {
            let limit = COUNTERS - reserve;
            let (mut kvm, vm) = host(mode, false, reserve);
            let above = [limit + 1, COUNTERS, COUNTERS + 1, 31, 32, 255];
            for nr in above.into_iter().filter(|&n| n > limit) {
                let r = add_vcpu(&mut kvm, vm, mode, Some(nr));
                assert_eq!(
                    r,
                    Err((KVM_ARM_VCPU_PMU_V3_SET_NR_COUNTERS, Errno::EINVAL)),
                    "{mode:?} reserve={reserve} nr={nr}"
                );
            }
            // The limit itself is accepted, and the guest sees it.
            let (mut kvm, vm) = host(mode, false, reserve);
            let vcpu = add_vcpu(&mut kvm, vm, mode, Some(limit)).unwrap();
            run_on(&mut kvm, vcpu, 0, |env| {
                let pmcr = rd(env, SysReg::PMCR_EL0, "limit");
                assert_eq!(
                    pmcr_el0::N.get(pmcr),
                    u64::from(limit),
                    "{mode:?} {reserve}"
                );
            });
        }
    }
}

#[test]
fn partitioned_without_counters_needs_hpmn0() {
    // MDCR_EL2.HPMN = 0 is CONSTRAINED UNPREDICTABLE without FEAT_HPMN0
    // (this PE then behaves as HPMN = N, handing the guest every counter,
    // the host's too): a partitioned guest cannot have 0 counters there.
    for mode in [Mode::PartitionedFgt, Mode::PartitionedNoFgt] {
        let (mut kvm, vm) = host(mode, false, HOST_RESERVED);
        assert_eq!(
            add_vcpu(&mut kvm, vm, mode, Some(0)),
            Err((KVM_ARM_VCPU_PMU_V3_SET_NR_COUNTERS, Errno::EINVAL)),
            "{mode:?}"
        );
    }
    // Emulated mode never writes HPMN for the guest: 0 is fine.
    let (mut kvm, vm) = host(Mode::Emulated, false, HOST_RESERVED);
    let vcpu = add_vcpu(&mut kvm, vm, Mode::Emulated, Some(0)).unwrap();
    run_on(&mut kvm, vcpu, 0, |env| {
        let pmcr = rd(env, SysReg::PMCR_EL0, "emulated 0");
        assert_eq!(pmcr_el0::N.get(pmcr), 0);
        assert_eq!(env.read(evcntr(0)), Err(AccessFault::Undefined));
    });
}

/// Every PMU register access a guest can make (reads and writes).
fn every_pmu_access() -> Vec<(SysReg, Option<u64>)> {
    pmu_regs()
        .into_iter()
        .flat_map(|r| [(r, None), (r, Some(0)), (r, Some(u64::MAX))])
        .collect()
}

#[test]
fn pmuver_shows_the_pmu_only_to_a_pmu_vcpu_and_the_others_get_undefined() {
    for mode in MODES {
        let (mut kvm, vm) = host(mode, false, HOST_RESERVED);
        let with = add_vcpu(&mut kvm, vm, mode, None).unwrap();
        let without = kvm.create_vcpu(vm, VcpuFeatures::default()).unwrap();
        run_on(&mut kvm, with, 0, |env| {
            let dfr0 = rd(env, SysReg::ID_AA64DFR0_EL1, "PMU vCPU");
            assert_ne!(id_aa64dfr0_el1::PMUVer.get(dfr0), 0, "{mode:?}");
            assert_eq!(
                id_aa64dfr0_el1::PMUVer.get(dfr0),
                PmuVer::V3p5.to_field(),
                "{mode:?}"
            );
        });
        for cpu in [0, 1] {
            run_on(&mut kvm, without, cpu, |env| {
                let dfr0 = rd(env, SysReg::ID_AA64DFR0_EL1, "no PMU");
                assert_eq!(id_aa64dfr0_el1::PMUVer.get(dfr0), 0, "{mode:?}");
                for (reg, w) in every_pmu_access() {
                    let r = match w {
                        None => env.read(reg),
                        Some(v) => env.write(reg, v).map(|()| 0),
                    };
                    assert_eq!(r, Err(AccessFault::Undefined), "{mode:?}: {reg} {w:?}");
                }
            });
        }
        // The PMU vCPU still sees its counters after the other ran.
        run_on(&mut kvm, with, 1, |env| {
            let pmcr = rd(env, SysReg::PMCR_EL0, "PMU vCPU again");
            assert_eq!(pmcr_el0::N.get(pmcr), u64::from(GUEST_MAX), "{mode:?}");
        });
    }
}
