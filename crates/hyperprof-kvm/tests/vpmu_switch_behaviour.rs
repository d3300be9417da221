//! Behaviour of the vPMU's world switch that cargo-mutants found untested
//! (issue 12, scripts/cargo-mutants-survivors.md): the host's PMU state
//! across an nVHE round trip, and the physical interrupt a parked overflow
//! flag raises.

use hyperprof_arch::{Cpu, SysReg};
use hyperprof_guest::guest::{GuestEnv, GuestProgram, GuestStep};
use hyperprof_kvm::vm::{Exit, Kvm};
mod pmu_common;
use pmu_common::{enter, evcntr, evtyper, pmu_setup, pmu_vm, start_host_pmu, Hw};

const E: u64 = 1 << 0;
const D: u64 = 1 << 3;
const LC: u64 = 1 << 6;
const LP: u64 = 1 << 7;
const MEM_ACCESS: u64 = 0x13;

/// A guest program made of a closure, run once.
struct Once<F: FnMut(&mut dyn GuestEnv)>(F);
impl<F: FnMut(&mut dyn GuestEnv)> GuestProgram for Once<F> {
    fn run(&mut self, env: &mut dyn GuestEnv) -> GuestStep {
        (self.0)(env);
        GuestStep::Done
    }
}

fn host_pmcr(kvm: &mut Kvm) -> u64 {
    let mut c = kvm.machine().cpu(0).unwrap();
    c.read(SysReg::PMCR_EL0).unwrap()
}

/// An nVHE guest with its PMU counting replaces the host kernel's PMCR_EL0
/// while it runs; the exit gives the host back exactly its own value (not
/// with the guest's state bits, D, X, DP, LC, LP, added).
#[test]
fn an_nvhe_round_trip_gives_the_host_back_its_own_pmcr() {
    let hw = Hw {
        nvhe: true,
        ..Hw::default()
    };
    let (mut kvm, vcpu) = pmu_vm(hw, &pmu_setup(false, None, Vec::new()));
    let _host = start_host_pmu(&mut kvm, 0, 1 << 20);
    let before = host_pmcr(&mut kvm);
    let mut counted = 0;
    let exit = enter(
        &mut kvm,
        vcpu,
        0,
        &mut Once(|env: &mut dyn GuestEnv| {
            env.write(evtyper(0), MEM_ACCESS).unwrap();
            env.write(evcntr(0), 0).unwrap();
            env.write(SysReg::PMCNTENSET_EL0, 1).unwrap();
            env.write(SysReg::PMCR_EL0, E | LC).unwrap();
            let mut w = hyperprof_sim::workload::by_name("mix", 1).unwrap();
            env.execute(w.as_mut(), 1000);
            counted = env.read(evcntr(0)).unwrap();
        }),
    );
    assert_eq!(exit, Exit::Halt);
    assert!(counted > 0, "the guest's counter ran");
    assert_eq!(host_pmcr(&mut kvm), before, "{before:#x}");
}

/// Partitioned with FEAT_FGT, a guest overflow flag that does not assert
/// the guest's interrupt at entry (PMINTENSET_EL1 clear) is parked in the
/// hardware's PMOVSSET_EL0: when the guest then enables the interrupt with
/// untrapped writes, the physical PMU interrupt is raised, as the
/// hypervisor needs to deliver it on silicon (where nothing else looks at
/// the vCPU's copy of the flags until the next exit).
#[test]
fn a_pending_overflow_flag_raises_the_physical_interrupt_once_the_guest_enables_it() {
    let (mut kvm, vcpu) = pmu_vm(Hw::default(), &pmu_setup(true, None, Vec::new()));
    kvm.load(vcpu, 0).unwrap();
    let exit = kvm.run(
        vcpu,
        &mut Once(|env: &mut dyn GuestEnv| {
            // Trapped (PMOVS always is): the flag goes to the vCPU, the
            // interrupt is not enabled, so entry parks it in the hardware.
            env.write(SysReg::PMOVSSET_EL0, 1).unwrap();
            // Untrapped: the guest's own on the hardware.
            env.write(SysReg::PMINTENSET_EL1, 1).unwrap();
            env.write(SysReg::PMCR_EL0, E).unwrap();
            env.isb();
        }),
    );
    assert_eq!(exit, Exit::Halt);
    let lines = kvm.machine().pe(0).unwrap().irq_lines();
    assert!(lines.pmuirq, "the physical PMU interrupt is asserted");
    kvm.put(vcpu).unwrap();
}

/// What a VHE guest wrote to PMCR_EL0 is what it reads after put and load,
/// in both modes (partitioned: the register is the guest's own on the
/// hardware; emulated: trapped and read from the vCPU): put saves only the
/// guest's state bits, it does not add the others.
#[test]
fn a_guests_pmcr_survives_put_and_load_as_written() {
    for partitioned in [true, false] {
        let (mut kvm, vcpu) = pmu_vm(Hw::default(), &pmu_setup(partitioned, None, Vec::new()));
        let mut seen = Vec::new();
        for value in [LC, E | LC] {
            let exit = enter(
                &mut kvm,
                vcpu,
                0,
                &mut Once(|env: &mut dyn GuestEnv| {
                    env.write(SysReg::PMCR_EL0, value).unwrap();
                }),
            );
            assert_eq!(exit, Exit::Halt);
            enter(
                &mut kvm,
                vcpu,
                1,
                &mut Once(|env: &mut dyn GuestEnv| {
                    // Without N, which the guest cannot write.
                    seen.push(env.read(SysReg::PMCR_EL0).unwrap() & (E | D | LC | LP));
                }),
            );
        }
        assert_eq!(seen, vec![LC, E | LC], "partitioned {partitioned}");
    }
}
