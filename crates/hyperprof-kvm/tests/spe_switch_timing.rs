//! The VHE SPE world switch on units that make the timing of the switch
//! visible (issue 12, the catalogue's survivors that the default unit could
//! not show):
//!
//! - a unit with no record queue (`queue_capacity: 0`) writes each record at
//!   the pointer of the moment it is taken, instead of at the next PSB CSYNC,
//!   so a buffer enabled for one instruction at the wrong pointer loses the
//!   record taken there;
//! - a PE whose direct writes to SPE registers reach the unit early
//!   ([`Pe::set_early_spe_writes`]): a legal order the Arm ARM allows for
//!   indirect reads before a context synchronization event, which exposes a
//!   buffer enabled before the pointer written ahead of it.
//!
//! The host profiles EL2 with the hypervisor's own instructions sampled, as
//! on silicon, and the guest's buffer is live, so at vcpu put the hardware
//! PMBPTR_EL1 still holds the guest's pointer: put must have the host's
//! pointer in effect before the host's buffer is enabled.

use hyperprof_arch::{pmbsr_el1, pmscr_el1, SysReg};
use hyperprof_guest::drivers::spe::SpeSessionConfig;
use hyperprof_guest::guest::GuestEnv;
use hyperprof_kvm::vm::{Kvm, GUEST_RAM_IPA};
use hyperprof_sim::machine::Machine;
use hyperprof_sim::pe::Pe;
use hyperprof_sim::spe::{SpeConfig, SpeStats};
use hyperprof_sim::workload::by_name;
mod spe_vcpu;
use spe_vcpu::{run_to_halt, Once};

const BUF_VA: u64 = 0x0000_0040_0000_0000;
const BUF_IPA: u64 = GUEST_RAM_IPA + (16 << 20);
const HOST_BUF_VA: u64 = 0x0000_7000_0000_0000;

/// A machine whose SPE units write every record as it is taken.
fn machine() -> Machine {
    spe_vcpu::spe_machine(
        SpeConfig {
            queue_capacity: 0,
            ..SpeConfig::default()
        },
        2,
    )
}

fn unit(kvm: &mut Kvm) -> SpeStats {
    *kvm.machine().pe(0).unwrap().spe().unwrap().stats()
}

/// `rounds` of: the host runs (sampled at EL2), the vCPU is loaded, enters
/// the guest (whose enabled buffer goes on the hardware) and is put. Returns
/// the unit's statistics before and after, and the host's PMBSR_EL1.
fn host_profiles_across_puts(early_writes: bool, rounds: usize) -> (SpeStats, SpeStats, u64) {
    let mut kvm = Kvm::new(machine());
    {
        let pe: &mut Pe = kvm.machine().pe_mut(0).unwrap();
        pe.set_instruction_sampling(true);
        pe.set_early_spe_writes(early_writes);
    }
    let (vm, vcpu) = spe_vcpu::spe_vcpu(&mut kvm, 64 << 20, u64::MAX, 1 << 20);
    let ttbr = kvm.guest_map(vm, BUF_VA, BUF_IPA, 64 * 4096).unwrap();
    kvm.load(vcpu, 0).unwrap();
    let mut host = hyperprof_guest::host::start_session(
        kvm.machine(),
        0,
        SysReg::TTBR0_EL2,
        HOST_BUF_VA,
        256 * 4096,
        SpeSessionConfig {
            interval: 256,
            jitter: true,
            ..Default::default()
        },
    )
    .unwrap();
    // The guest profiles itself into a buffer of its own, sampling rarely
    // enough that it never fills.
    run_to_halt(
        &mut kvm,
        vcpu,
        &mut Once(|env: &mut dyn GuestEnv| {
            env.write(SysReg::TTBR0_EL1, ttbr).unwrap();
            env.write(SysReg::PMSIRR_EL1, 0x10000).unwrap();
            env.write(SysReg::PMSCR_EL1, pmscr_el1::E1SPE.mask())
                .unwrap();
            env.write(SysReg::PMBPTR_EL1, BUF_VA).unwrap();
            env.write(SysReg::PMBLIMITR_EL1, (BUF_VA + 64 * 4096) | 1)
                .unwrap();
            env.isb();
        }),
    );
    kvm.put(vcpu).unwrap();
    let before = unit(&mut kvm);
    let mut host_work = by_name("kernel-mix", 1).unwrap();
    let mut guest_work = by_name("mix", 3).unwrap();
    for _ in 0..rounds {
        let mut done = 0;
        kvm.machine()
            .run(0, host_work.as_mut(), 600, &mut done)
            .unwrap();
        kvm.load(vcpu, 0).unwrap();
        run_to_halt(
            &mut kvm,
            vcpu,
            &mut Once(|env: &mut dyn GuestEnv| {
                env.execute(guest_work.as_mut(), 100);
            }),
        );
        kvm.put(vcpu).unwrap();
    }
    let after = unit(&mut kvm);
    let mut c = kvm.machine().cpu(0).unwrap();
    use hyperprof_arch::Cpu;
    let pmbsr = c.read(SysReg::PMBSR_EL1).unwrap();
    host.stop(&mut c).unwrap();
    assert!(!host.take_data().is_empty());
    (before, after, pmbsr)
}

fn assert_no_host_record_lost(early_writes: bool) {
    let (before, after, pmbsr) = host_profiles_across_puts(early_writes, 1500);
    assert!(after.sampled - before.sampled > 1500, "{after:?}");
    assert_eq!(after.lost, before.lost, "records lost: {after:?}");
    assert!(!pmbsr_el1::S.is_set(pmbsr), "host PMBSR_EL1 {pmbsr:#x}");
}

/// vcpu put restores the host's PMBPTR_EL1 before it enables the host's
/// buffer: enabled first, the buffer would take a record of put's own
/// instructions at the guest's pointer, through the host's tables.
#[test]
fn put_enables_the_hosts_buffer_only_at_the_hosts_pointer() {
    assert_no_host_record_lost(false);
}

/// The same, on a PE whose writes of the sampling and limit registers reach
/// the unit at once: put's ISB between writing the host's PMBPTR_EL1 and
/// PMBLIMITR_EL1 is what keeps the unit from seeing the enable first.
#[test]
fn put_synchronizes_the_hosts_pointer_before_the_enable_can_take_effect() {
    assert_no_host_record_lost(true);
}
