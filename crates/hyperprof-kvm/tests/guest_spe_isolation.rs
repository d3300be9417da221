//! Isolation and limits of guest SPE (issue 12): whatever a guest writes,
//! its buffer reaches the hardware only while fully pinned and within its
//! limit; PMBSR_EL1.COLL does not cross between host and guest; MDCR_EL2.TPMS
//! traps PMSIDR_EL1; hidden FnE/FDS registers are UNDEFINED for the guest.

use hyperprof_arch::{
    pmbsr_el1, pmscr_el1, pmsidr_el1, AccessFault, Cpu, PmbsrEc, PmsVer, PmuVer, SysReg,
};
use hyperprof_guest::guest::GuestEnv;
use hyperprof_kvm::uapi::*;
use hyperprof_kvm::vm::{Kvm, VmConfig, GUEST_RAM_IPA};
use hyperprof_sim::event::{Event, EventCounts};
use hyperprof_sim::machine::{Machine, MachineConfig};
use hyperprof_sim::op::{Op, OpKind, Symbol};
use hyperprof_sim::pe::PeConfig;
use hyperprof_sim::pmu::PmuConfig;
use hyperprof_sim::spe::{SpeConfig, SpeStats};
use hyperprof_sim::workload::{by_name, Workload};
mod spe_vcpu;
use spe_vcpu::{run_to_halt, Once};

const BUF_VA: u64 = 0x0000_0040_0000_0000;
const BUF_IPA: u64 = GUEST_RAM_IPA + (16 << 20);

fn machine(spe: SpeConfig, fgt: bool) -> Machine {
    let pe = PeConfig {
        pmu: PmuConfig {
            counters: 6,
            version: PmuVer::V3p5,
            hpmn0: false,
            el2_implemented: true,
        },
        spe: Some(spe),
        fgt,
        uarch: Default::default(),
    };
    Machine::new(&MachineConfig {
        pes: vec![pe; 2],
        ram_base: 0x8000_0000,
        ram_size: 512 << 20,
    })
    .unwrap()
}

/// One SPE vCPU with MaxBuffSize `max_buffer`, its guest tables mapping
/// `pages` pages at BUF_VA, loaded on CPU 0. Returns (vm, vcpu, guest TTBR).
fn spe_vm(kvm: &mut Kvm, max_buffer: u64, pages: u64) -> (usize, usize, u64) {
    let (vm, vcpu) = spe_vcpu::spe_vcpu(kvm, 64 << 20, u64::MAX, max_buffer);
    let ttbr = kvm.guest_map(vm, BUF_VA, BUF_IPA, pages * 4096).unwrap();
    kvm.load(vcpu, 0).unwrap();
    (vm, vcpu, ttbr)
}

/// What a guest kernel writes to profile itself at EL1 every 256
/// operations into `bytes` at BUF_VA, with no driver's care.
fn enable(env: &mut dyn GuestEnv, ttbr: u64, bytes: u64) {
    env.write(SysReg::TTBR0_EL1, ttbr).unwrap();
    env.write(SysReg::PMSIRR_EL1, 0x100).unwrap();
    env.write(SysReg::PMSCR_EL1, pmscr_el1::E1SPE.mask())
        .unwrap();
    env.write(SysReg::PMBPTR_EL1, BUF_VA).unwrap();
    env.write(SysReg::PMBLIMITR_EL1, (BUF_VA + bytes) | 1)
        .unwrap();
    env.isb();
}

fn unit(kvm: &mut Kvm) -> SpeStats {
    *kvm.machine().pe(0).unwrap().spe().unwrap().stats()
}

fn ec(pmbsr: u64) -> Option<PmbsrEc> {
    PmbsrEc::from_bits(pmbsr_el1::EC.get(pmbsr))
}

/// A hostile guest clears the event its buffer raised and runs on: the
/// event comes back, and the unit writes nothing.
fn clear_and_run(env: &mut dyn GuestEnv) -> u64 {
    let mut w = by_name("mix", 2).unwrap();
    for _ in 0..3 {
        env.write(SysReg::PMBSR_EL1, 0).unwrap();
        env.execute(w.as_mut(), 50_000);
    }
    env.read(SysReg::PMBSR_EL1).unwrap()
}

#[test]
fn an_oversized_buffer_never_reaches_the_hardware_even_after_pmbsr_is_cleared() {
    let mut kvm = Kvm::new(machine(SpeConfig::default(), true));
    // MaxBuffSize 64 KiB; the guest maps and enables 128 KiB.
    let (vm, vcpu, ttbr) = spe_vm(&mut kvm, 64 * 1024, 32);
    let mut after = 0;
    run_to_halt(
        &mut kvm,
        vcpu,
        &mut Once(|env: &mut dyn GuestEnv| {
            enable(env, ttbr, 128 * 1024);
            let pmbsr = env.read(SysReg::PMBSR_EL1).unwrap();
            assert_eq!(ec(pmbsr), Some(PmbsrEc::BUF));
            assert_eq!(pmbsr_el1::MSS.get(pmbsr), pmbsr_el1::BSC_SIZE);
            after = clear_and_run(env);
        }),
    );
    assert!(pmbsr_el1::S.is_set(after), "the size event is raised again");
    assert_eq!(pmbsr_el1::MSS.get(after), pmbsr_el1::BSC_SIZE);
    let u = unit(&mut kvm);
    assert_eq!((u.written, u.records_bytes), (0, 0), "{u:?}");
    assert_eq!(kvm.pinned_bytes(vm), Some(0));
}

#[test]
fn a_partly_mapped_buffer_never_reaches_the_hardware_and_the_guest_gets_fault_s1() {
    let mut kvm = Kvm::new(machine(SpeConfig::default(), true));
    // The guest enables 4 pages; its tables map only the first.
    let (vm, vcpu, ttbr) = spe_vm(&mut kvm, 1 << 20, 1);
    let mut first = 0;
    let mut after = 0;
    run_to_halt(
        &mut kvm,
        vcpu,
        &mut Once(|env: &mut dyn GuestEnv| {
            enable(env, ttbr, 4 * 4096);
            first = env.read(SysReg::PMBSR_EL1).unwrap();
            after = clear_and_run(env);
        }),
    );
    for pmbsr in [first, after] {
        assert!(pmbsr_el1::S.is_set(pmbsr), "{pmbsr:#x}");
        assert_eq!(ec(pmbsr), Some(PmbsrEc::FAULT_S1));
        assert_eq!(pmbsr_el1::MSS.get(pmbsr) & 0x3f, 0x07, "level 3");
    }
    let u = unit(&mut kvm);
    assert_eq!((u.written, u.records_bytes), (0, 0), "{u:?}");
    assert_eq!(kvm.pinned_bytes(vm), Some(0));
}

/// Loads of the given total latency. A latency of 1000 cycles outlasts the
/// sampling interval: every sample point after the first collides with
/// the one in flight; a latency of 1 never collides.
struct Loads(u16);
impl Loads {
    fn op(&self) -> Op {
        Op {
            pc: 0x1000,
            kind: OpKind::Load,
            data_va: BUF_VA,
            target: 0,
            issue_latency: 1,
            total_latency: self.0,
            translation_latency: 1,
            outcome: 0,
            data_source: 0,
            ldst_subclass: 0,
            cycles: 1,
        }
    }
}
impl Workload for Loads {
    fn name(&self) -> &str {
        "slow-loads"
    }
    fn symbols(&self) -> &[Symbol] {
        &[]
    }
    fn skip(&mut self, n: u64, counts: &mut EventCounts) {
        let mut one = EventCounts::default();
        self.op().add_events(&mut one);
        counts.add_scaled(&one, n);
    }
    fn step(&mut self) -> Op {
        self.op()
    }
    fn ops_until(&self, event: Event, k: u64, limit: u64) -> u64 {
        let mut one = EventCounts::default();
        self.op().add_events(&mut one);
        match one.get(event) {
            0 => limit,
            per => k.div_ceil(per).min(limit),
        }
    }
}

fn host_pmbsr(kvm: &mut Kvm) -> u64 {
    let mut c = kvm.machine().cpu(0).unwrap();
    c.read(SysReg::PMBSR_EL1).unwrap()
}

#[test]
fn a_host_collision_flag_does_not_reach_the_guests_buffer_event() {
    for nvhe in [false, true] {
        let mut kvm = if nvhe {
            Kvm::new_nvhe(machine(SpeConfig::default(), true))
        } else {
            Kvm::new(machine(SpeConfig::default(), true))
        };
        let (_, vcpu, ttbr) = spe_vm(&mut kvm, 1 << 20, 2);
        // The host's last session lost a sample to a collision.
        {
            let mut c = kvm.machine().cpu(0).unwrap();
            c.write(SysReg::PMBSR_EL1, pmbsr_el1::COLL.mask()).unwrap();
            c.isb();
        }
        let mut seen = 0;
        run_to_halt(
            &mut kvm,
            vcpu,
            &mut Once(|env: &mut dyn GuestEnv| {
                enable(env, ttbr, 2 * 4096);
                let (_, stop) = env.execute(&mut Loads(1), 200_000);
                assert_eq!(stop, hyperprof_guest::guest::ExecStop::VirtualIrq);
                seen = env.read(SysReg::PMBSR_EL1).unwrap();
            }),
        );
        assert_eq!(unit(&mut kvm).collided, 0, "the guest never collided");
        assert!(pmbsr_el1::S.is_set(seen));
        assert_eq!(ec(seen), Some(PmbsrEc::BUF));
        assert!(
            !pmbsr_el1::COLL.is_set(seen),
            "nVHE {nvhe}: {seen:#x}: the host's COLL"
        );
        kvm.put(vcpu).unwrap();
        assert_eq!(host_pmbsr(&mut kvm), pmbsr_el1::COLL.mask());
    }
}

/// An exit without a buffer event leaves a guest that never collided with
/// a clear PMBSR_EL1: only a COLL the hardware shows is carried into the
/// guest's copy, never one of its own making.
#[test]
fn an_exit_without_an_event_adds_no_collision_flag() {
    let mut kvm = Kvm::new(machine(SpeConfig::default(), true));
    let (_, vcpu, ttbr) = spe_vm(&mut kvm, 1 << 20, 2);
    let mut seen = u64::MAX;
    run_to_halt(
        &mut kvm,
        vcpu,
        &mut Once(|env: &mut dyn GuestEnv| {
            enable(env, ttbr, 2 * 4096);
            env.execute(&mut Loads(1), 2_000);
            // Trapped: an exit and an entry with the buffer live.
            env.read(SysReg::PMSIDR_EL1).unwrap();
            seen = env.read(SysReg::PMBSR_EL1).unwrap();
        }),
    );
    assert_eq!(unit(&mut kvm).collided, 0, "the guest never collided");
    assert_eq!(seen, 0, "{seen:#x}: no event, no collision");
}

/// A collision flag the guest has not cleared is still in its PMBSR_EL1
/// when its buffer then raises an event: the exit merges the unit's event
/// with the flag the guest's copy kept (the hardware kept it too).
#[test]
fn a_guest_collision_flag_survives_its_next_buffer_event() {
    let mut kvm = Kvm::new(machine(SpeConfig::default(), true));
    let (_, vcpu, ttbr) = spe_vm(&mut kvm, 1 << 20, 2);
    let mut seen = 0;
    run_to_halt(
        &mut kvm,
        vcpu,
        &mut Once(|env: &mut dyn GuestEnv| {
            enable(env, ttbr, 2 * 4096);
            env.execute(&mut Loads(1000), 5_000);
            // Trapped: an exit moves the flag into the guest's copy.
            env.read(SysReg::PMSIDR_EL1).unwrap();
            let (_, stop) = env.execute(&mut Loads(1), 200_000);
            assert_eq!(stop, hyperprof_guest::guest::ExecStop::VirtualIrq);
            seen = env.read(SysReg::PMBSR_EL1).unwrap();
        }),
    );
    assert!(unit(&mut kvm).collided > 0);
    assert!(pmbsr_el1::S.is_set(seen), "{seen:#x}");
    assert_eq!(ec(seen), Some(PmbsrEc::BUF));
    assert!(pmbsr_el1::COLL.is_set(seen), "{seen:#x}: the guest's COLL");
}

#[test]
fn a_guest_collision_flag_stays_the_guests_and_never_reaches_the_host() {
    let mut kvm = Kvm::new(machine(SpeConfig::default(), true));
    let (_, vcpu, ttbr) = spe_vm(&mut kvm, 1 << 20, 64);
    let mut seen = 0;
    run_to_halt(
        &mut kvm,
        vcpu,
        &mut Once(|env: &mut dyn GuestEnv| {
            enable(env, ttbr, 64 * 4096);
            env.execute(&mut Loads(1000), 20_000);
            seen = env.read(SysReg::PMBSR_EL1).unwrap();
        }),
    );
    assert!(unit(&mut kvm).collided > 10);
    assert_eq!(seen, pmbsr_el1::COLL.mask(), "the guest's own collisions");
    kvm.put(vcpu).unwrap();
    assert_eq!(host_pmbsr(&mut kvm), 0, "nothing of the guest's");
    let g = kvm.guest_spe(vcpu).unwrap();
    assert_eq!(g.buffer.pmbsr_el1, pmbsr_el1::COLL.mask());
}

/// A machine whose units are FEAT_SPEv1p4 (FnE and FDS), with or without
/// FEAT_FGT, VHE or nVHE.
fn v1p4_kvm(fgt: bool, nvhe: bool) -> Kvm {
    let spe = SpeConfig {
        pms_ver: PmsVer::V1p4,
        ..SpeConfig::default()
    };
    let m = machine(spe, fgt);
    if nvhe {
        Kvm::new_nvhe(m)
    } else {
        Kvm::new(m)
    }
}

#[test]
fn without_fgt_tpms_traps_pmsidr_for_a_vcpu_without_spe() {
    let mut kvm = v1p4_kvm(false, false);
    let vm = kvm
        .create_vm(VmConfig {
            ram_bytes: 16 << 20,
            memlock_limit: u64::MAX,
        })
        .unwrap();
    let vcpu = kvm.create_vcpu(vm, VcpuFeatures::default()).unwrap();
    kvm.load(vcpu, 0).unwrap();
    let mut seen = Ok(0);
    run_to_halt(
        &mut kvm,
        vcpu,
        &mut Once(|env: &mut dyn GuestEnv| seen = env.read(SysReg::PMSIDR_EL1)),
    );
    assert_eq!(
        seen,
        Err(AccessFault::Undefined),
        "not the host's PMSIDR_EL1"
    );
}

/// The host's PMSNEVFR_EL1 and PMSDSFR_EL1 on CPU 0 (from the host's EL).
fn host_filters(kvm: &mut Kvm) -> (u64, u64) {
    let mut c = kvm.machine().cpu(0).unwrap();
    (
        c.read(SysReg::PMSNEVFR_EL1).unwrap(),
        c.read(SysReg::PMSDSFR_EL1).unwrap(),
    )
}

/// A VM that advertises FEAT_SPEv1p1 on v1p4 hardware: FnE and FDS hidden.
/// The guest finds PMSNEVFR_EL1 and PMSDSFR_EL1 UNDEFINED, PMSIDR_EL1 says
/// so, PMSFCR_EL1.FnE/FDS stay clear, and the host's values of the hidden
/// registers survive the guest.
fn hidden_filters_are_undefined_and_never_reach_the_host(fgt: bool, nvhe: bool) {
    let mut kvm = v1p4_kvm(fgt, nvhe);
    let (vm, vcpu) = spe_vcpu::spe_vcpu(&mut kvm, 64 << 20, u64::MAX, 0);
    kvm.set_guest_pmsver(vm, PmsVer::V1p1).unwrap();
    {
        let mut c = kvm.machine().cpu(0).unwrap();
        c.write(SysReg::PMSNEVFR_EL1, 0xABCD).unwrap();
        c.write(SysReg::PMSDSFR_EL1, 0x1234).unwrap();
        c.isb();
    }
    let host_before = host_filters(&mut kvm);
    assert_ne!(host_before, (0, 0));
    kvm.load(vcpu, 0).unwrap();
    let mut seen = Vec::new();
    run_to_halt(
        &mut kvm,
        vcpu,
        &mut Once(|env: &mut dyn GuestEnv| {
            seen = vec![
                env.read(SysReg::PMSIDR_EL1),
                env.write(SysReg::PMSNEVFR_EL1, 0x77).map(|()| 0),
                env.read(SysReg::PMSNEVFR_EL1),
                env.write(SysReg::PMSDSFR_EL1, 0x77).map(|()| 0),
                env.read(SysReg::PMSDSFR_EL1),
                env.write(SysReg::PMSFCR_EL1, 0x1F).map(|()| 0),
                env.read(SysReg::PMSFCR_EL1),
                env.write(SysReg::PMSIRR_EL1, 0x300).map(|()| 0),
                env.read(SysReg::PMSIRR_EL1),
            ];
        }),
    );
    let pmsidr = seen[0].unwrap();
    assert!(!pmsidr_el1::FnE.is_set(pmsidr) && !pmsidr_el1::FDS.is_set(pmsidr));
    for r in &seen[1..5] {
        assert_eq!(*r, Err(AccessFault::Undefined));
    }
    assert_eq!(seen[6], Ok(0x7), "FE, FT, FL kept; FnE, FDS clear");
    assert_eq!(seen[8], Ok(0x300), "the other registers are the guest's");
    if !nvhe {
        kvm.put(vcpu).unwrap();
    }
    assert_eq!(host_filters(&mut kvm), host_before);
}

#[test]
fn hidden_fne_and_fds_registers_are_undefined_for_the_guest_with_fgt() {
    hidden_filters_are_undefined_and_never_reach_the_host(true, false);
}

#[test]
fn hidden_fne_and_fds_registers_are_undefined_for_the_guest_without_fgt() {
    hidden_filters_are_undefined_and_never_reach_the_host(false, false);
}

#[test]
fn hidden_fne_and_fds_registers_are_undefined_for_an_nvhe_guest() {
    hidden_filters_are_undefined_and_never_reach_the_host(true, true);
}

#[test]
fn a_stage2_fault_of_the_unit_reaches_the_guest_as_an_external_abort() {
    for nvhe in [false, true] {
        let mut kvm = if nvhe {
            Kvm::new_nvhe(machine(SpeConfig::default(), true))
        } else {
            Kvm::new(machine(SpeConfig::default(), true))
        };
        let (vm, vcpu, ttbr) = spe_vm(&mut kvm, 1 << 20, 64);
        run_to_halt(
            &mut kvm,
            vcpu,
            &mut Once(|env: &mut dyn GuestEnv| enable(env, ttbr, 64 * 4096)),
        );
        // The host write-protects the buffer's first page behind the pin.
        kvm.set_guest_page_writable(vm, BUF_IPA, false).unwrap();
        let mut seen = 0;
        run_to_halt(
            &mut kvm,
            vcpu,
            &mut Once(|env: &mut dyn GuestEnv| {
                let (_, stop) = env.execute(&mut Loads(1), 100_000);
                assert_eq!(stop, hyperprof_guest::guest::ExecStop::VirtualIrq);
                seen = env.read(SysReg::PMBSR_EL1).unwrap();
            }),
        );
        assert!(
            unit(&mut kvm).fault_events >= 1,
            "the unit faulted at stage 2"
        );
        assert!(pmbsr_el1::S.is_set(seen), "{seen:#x}");
        assert!(pmbsr_el1::EA.is_set(seen), "{seen:#x}: an External abort");
        assert_ne!(
            ec(seen),
            Some(PmbsrEc::FAULT_S2),
            "stage 2 is not the guest's"
        );
        assert_eq!(kvm.vcpu_stats(vcpu).unwrap().stage2_aborts, 1);
    }
}

#[test]
fn a_fault_s2_value_the_guest_writes_itself_is_not_rewritten() {
    for nvhe in [false, true] {
        let mut kvm = if nvhe {
            Kvm::new_nvhe(machine(SpeConfig::default(), true))
        } else {
            Kvm::new(machine(SpeConfig::default(), true))
        };
        let (_, vcpu, ttbr) = spe_vm(&mut kvm, 1 << 20, 64);
        let mut w = pmbsr_el1::S.set(0, 1);
        w = pmbsr_el1::EC.set(w, PmbsrEc::FAULT_S2.bits());
        w = pmbsr_el1::MSS.set(w, 0x0F);
        let mut seen = 0;
        run_to_halt(
            &mut kvm,
            vcpu,
            &mut Once(|env: &mut dyn GuestEnv| {
                enable(env, ttbr, 64 * 4096);
                env.write(SysReg::PMBSR_EL1, w).unwrap();
                let mut l = Loads(1);
                env.execute(&mut l, 1_000);
                seen = env.read(SysReg::PMBSR_EL1).unwrap();
            }),
        );
        assert_eq!(seen, w, "nVHE: {nvhe}");
        assert_eq!(kvm.vcpu_stats(vcpu).unwrap().stage2_aborts, 0);
    }
}

/// A guest that masks IRQs with its buffer event pending (in a critical
/// section, or in its handler before it reads PMBSR_EL1) keeps running; the
/// hypervisor must not put its buffer back on the hardware while the saved
/// PMBSR_EL1.S is set, or the unit writes on past the event.
#[test]
fn a_buffer_with_its_event_pending_stays_off_the_hardware_while_the_guest_masks_irqs() {
    for nvhe in [false, true] {
        let mut kvm = if nvhe {
            Kvm::new_nvhe(machine(SpeConfig::default(), true))
        } else {
            Kvm::new(machine(SpeConfig::default(), true))
        };
        let (_, vcpu, ttbr) = spe_vm(&mut kvm, 1 << 20, 2);
        run_to_halt(
            &mut kvm,
            vcpu,
            &mut Once(|env: &mut dyn GuestEnv| {
                enable(env, ttbr, 2 * 4096);
                let (_, stop) = env.execute(&mut Loads(1), 1_000_000);
                assert_eq!(stop, hyperprof_guest::guest::ExecStop::VirtualIrq);
            }),
        );
        let written = unit(&mut kvm).written;
        let event = kvm.guest_spe(vcpu).unwrap().buffer;
        assert!(pmbsr_el1::S.is_set(event.pmbsr_el1));
        let mut seen = (0, 0);
        run_to_halt(
            &mut kvm,
            vcpu,
            &mut Once(|env: &mut dyn GuestEnv| {
                env.mask_irqs(true);
                for _ in 0..4 {
                    // Trapped: an exit and an entry each.
                    env.read(SysReg::PMSIDR_EL1).unwrap();
                    let (n, _) = env.execute(&mut Loads(1), 20_000);
                    assert_eq!(n, 20_000, "masked: the virtual IRQ does not stop it");
                }
                seen = (
                    env.read(SysReg::PMBPTR_EL1).unwrap(),
                    env.read(SysReg::PMBSR_EL1).unwrap(),
                );
                env.mask_irqs(false);
            }),
        );
        assert_eq!(unit(&mut kvm).written, written, "nVHE: {nvhe}");
        assert_eq!(seen, (event.pmbptr_el1, event.pmbsr_el1));
    }
}

/// With the host profiling EL2 and the hypervisor's own instructions
/// sampled (as on silicon), load stops host sampling with PMSCR_EL2 = 0 and
/// an ISB before draining: no record of the hypervisor's is taken once the
/// buffer is being handed over, so none is lost when it changes owner.
#[test]
fn no_host_record_of_the_world_switch_is_lost_while_the_buffer_changes_hands() {
    let mut kvm = Kvm::new(machine(SpeConfig::default(), true));
    kvm.machine()
        .pe_mut(0)
        .unwrap()
        .set_instruction_sampling(true);
    let (_, vcpu, ttbr) = spe_vm(&mut kvm, 1 << 20, 16);
    let mut host = hyperprof_guest::host::start_session(
        kvm.machine(),
        0,
        SysReg::TTBR0_EL2,
        0x0000_7000_0000_0000,
        256 * 4096,
        hyperprof_guest::drivers::spe::SpeSessionConfig {
            interval: 256,
            jitter: true,
            ..Default::default()
        },
    )
    .unwrap();
    // The guest's SPE state goes live at its first access.
    run_to_halt(
        &mut kvm,
        vcpu,
        &mut Once(|env: &mut dyn GuestEnv| enable(env, ttbr, 16 * 4096)),
    );
    kvm.put(vcpu).unwrap();
    let before = unit(&mut kvm);
    let mut host_work = by_name("kernel-mix", 1).unwrap();
    for _ in 0..1500 {
        let mut done = 0;
        kvm.machine()
            .run(0, host_work.as_mut(), 600, &mut done)
            .unwrap();
        kvm.load(vcpu, 0).unwrap();
        kvm.put(vcpu).unwrap();
    }
    let after = unit(&mut kvm);
    assert!(after.sampled - before.sampled > 1500, "{after:?}");
    assert_eq!(after.lost, before.lost, "records lost: {after:?}");
    let mut c = kvm.machine().cpu(0).unwrap();
    host.stop(&mut c).unwrap();
    assert!(!host.take_data().is_empty());
}

/// A guest that turns sampling on without a buffer of its own samples
/// nothing: the host's buffer, still enabled when the vCPU is loaded or
/// entered, must be disabled before the guest's context is in, or the
/// guest's records go through the guest's tables to the host's pointer.
#[test]
fn a_guest_sampling_without_a_buffer_never_uses_the_hosts() {
    for nvhe in [false, true] {
        let mut kvm = if nvhe {
            Kvm::new_nvhe(machine(SpeConfig::default(), true))
        } else {
            Kvm::new(machine(SpeConfig::default(), true))
        };
        let (_, vcpu, ttbr) = spe_vm(&mut kvm, 1 << 20, 16);
        let mut host = hyperprof_guest::host::start_session(
            kvm.machine(),
            0,
            if nvhe {
                SysReg::TTBR0_EL1
            } else {
                SysReg::TTBR0_EL2
            },
            0x0000_7000_0000_0000,
            64 * 4096,
            hyperprof_guest::drivers::spe::SpeSessionConfig {
                interval: 4096,
                jitter: false,
                ..Default::default()
            },
        )
        .unwrap();
        if !nvhe {
            // The first SPE access made the state live; load it again live.
            run_to_halt(
                &mut kvm,
                vcpu,
                &mut Once(|env: &mut dyn GuestEnv| {
                    env.read(SysReg::PMSIRR_EL1).unwrap();
                }),
            );
            kvm.put(vcpu).unwrap();
            kvm.load(vcpu, 0).unwrap();
        }
        let before = unit(&mut kvm);
        run_to_halt(
            &mut kvm,
            vcpu,
            &mut Once(|env: &mut dyn GuestEnv| {
                env.write(SysReg::TTBR0_EL1, ttbr).unwrap();
                env.write(SysReg::PMSIRR_EL1, 0x100).unwrap();
                env.write(
                    SysReg::PMSCR_EL1,
                    pmscr_el1::E0SPE.mask() | pmscr_el1::E1SPE.mask(),
                )
                .unwrap();
                env.isb();
                env.execute(&mut Loads(1), 50_000);
            }),
        );
        let after = unit(&mut kvm);
        assert_eq!(after.sampled, before.sampled, "nVHE {nvhe}: {after:?}");
        assert_eq!(after.fault_events, before.fault_events);
        if !nvhe {
            kvm.put(vcpu).unwrap();
        }
        let mut c = kvm.machine().cpu(0).unwrap();
        host.stop(&mut c).unwrap();
        let recs: Vec<_> = hyperprof_spe::RecordDecoder::new(&host.take_data())
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(recs
            .iter()
            .all(|(_, r)| r.pc.is_some_and(|pc| pc.addr != 0x1000)));
    }
}

/// A guest kernel that runs critical sections with IRQs masked after each
/// user slice takes its buffer events late but loses none: every virtual
/// PMBIRQ reaches its driver, and nothing is written while one is pending.
#[test]
fn a_guest_kernel_with_masked_sections_takes_every_buffer_event_late_and_loses_none() {
    for nvhe in [false, true] {
        let mut kvm = if nvhe {
            Kvm::new_nvhe(machine(SpeConfig::default(), true))
        } else {
            Kvm::new(machine(SpeConfig::default(), true))
        };
        let (_, vcpu, ttbr) = spe_vm(&mut kvm, 1 << 20, 4);
        let buf = hyperprof_guest::drivers::spe::Buffer {
            va: BUF_VA,
            size: 4 * 4096,
        };
        let session = hyperprof_guest::drivers::spe::SpeSessionConfig {
            interval: 256,
            jitter: false,
            ..Default::default()
        };
        let mut k = hyperprof_guest::guest::GuestKernel::new(
            ttbr,
            session,
            buf,
            by_name("mix", 3).unwrap(),
            300_000,
        )
        .with_slices(10_000)
        .with_masked_kernel_work(by_name("kernel-array-sum", 2).unwrap(), 5_000);
        run_to_halt(&mut kvm, vcpu, &mut k);
        assert_eq!(k.error(), None);
        let d = k.driver_stats().unwrap();
        assert!(d.buffer_full >= 2, "nVHE {nvhe}: {d:?}");
        assert_eq!(kvm.vcpu_stats(vcpu).unwrap().virqs, d.irqs);
        let recs: Vec<_> = hyperprof_spe::RecordDecoder::new(k.data())
            .collect::<Result<_, _>>()
            .unwrap();
        // User slices at EL0 and the masked kernel sections at EL1.
        assert!(recs.iter().any(|(_, r)| r.pc.is_some_and(|pc| pc.el == 1)));
        assert!(recs.iter().any(|(_, r)| r.pc.is_some_and(|pc| pc.el == 0)));
        let u = unit(&mut kvm);
        assert_eq!(u.written as usize, recs.len(), "{u:?}");
    }
}
