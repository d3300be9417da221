//! The host side shared by the VHE property tests (`guest_fuzz`,
//! `schedule_invariants`): the machine, the host's SPE sessions, and the
//! host state a vCPU load and put must leave as it was.

use hyperprof_arch::{mdcr_el2, Cpu, ExceptionLevel, SysReg};
use hyperprof_guest::drivers::spe::{SpeDriver, SpeSessionConfig};
use hyperprof_kvm::vm::Kvm;
use hyperprof_sim::machine::{Machine, MachineConfig};
use hyperprof_sim::memory::PAGE_SIZE;
use hyperprof_sim::pe::PeConfig;
use hyperprof_sim::pmu::PmuConfig;
use hyperprof_sim::spe::{SpeConfig, SpeStats};

/// PEs of the [`machine`].
pub const CPUS: usize = 2;

/// Where the host maps its buffers (EL2&0, TTBR0 half), a 4 GiB window per
/// CPU.
pub const HOST_VA: u64 = 0x0000_7000_0000_0000;

/// The most one buffer management event may lose: every record the unit
/// can hold at once, and the one whose write faulted.
pub fn loss_per_event() -> u64 {
    SpeConfig::default().queue_capacity as u64 + 1
}

/// [`CPUS`] PEs with FGT, a six-counter PMUv3p5 and the default SPE unit.
pub fn machine() -> Machine {
    let pe = PeConfig {
        pmu: PmuConfig {
            counters: 6,
            version: hyperprof_arch::PmuVer::V3p5,
            hpmn0: false,
            el2_implemented: true,
        },
        spe: Some(SpeConfig::default()),
        fgt: true,
        uarch: Default::default(),
    };
    Machine::new(&MachineConfig {
        pes: vec![pe; CPUS],
        ram_base: 0x8000_0000,
        ram_size: 512 << 20,
    })
    .unwrap()
}

/// Maps a `pages`-page host buffer on `cpu` in the host's own EL2&0 tables
/// and starts `session` there.
pub fn start_host(kvm: &mut Kvm, cpu: usize, pages: u64, session: SpeSessionConfig) -> SpeDriver {
    hyperprof_guest::host::start_session(
        kvm.machine(),
        cpu,
        SysReg::TTBR0_EL2,
        HOST_VA + ((cpu as u64) << 32),
        pages * PAGE_SIZE,
        session,
    )
    .unwrap()
}

/// The SPE unit of `cpu`: its accounting and the records it still holds.
pub fn unit(kvm: &mut Kvm, cpu: usize) -> (SpeStats, u64) {
    let spe = kvm.machine().pe(cpu).unwrap().spe().unwrap();
    (*spe.stats(), spe.queued() as u64)
}

/// Who owns the profiling buffer of `cpu` now: the guest (MDCR_EL2.E2PB
/// says EL1) or the host.
pub fn guest_owns_buffer(kvm: &mut Kvm, cpu: usize) -> bool {
    let mut c = kvm.machine().cpu(cpu).unwrap();
    let mdcr = c.read(SysReg::MDCR_EL2).unwrap();
    mdcr_el2::E2PB.get(mdcr) != mdcr_el2::E2PB_EL2
}

/// The host's registers that a load and put must leave as they were. The
/// last [`HOST_DYNAMIC`] are updated by the unit while the host samples.
pub const HOST_REGS: [SysReg; 18] = [
    SysReg::PMSCR_EL2,
    SysReg::PMSCR_EL12,
    SysReg::PMSNEVFR_EL1,
    SysReg::PMSIRR_EL1,
    SysReg::PMSFCR_EL1,
    SysReg::PMSEVFR_EL1,
    SysReg::PMSLATFR_EL1,
    SysReg::PMSDSFR_EL1,
    SysReg::PMBLIMITR_EL1,
    SysReg::MDCR_EL2,
    SysReg::HCR_EL2,
    SysReg::HDFGRTR_EL2,
    SysReg::TTBR0_EL2,
    SysReg::CONTEXTIDR_EL2,
    SysReg::CNTVOFF_EL2,
    SysReg::PMSICR_EL1,
    SysReg::PMBPTR_EL1,
    SysReg::PMBSR_EL1,
];

/// How many of [`HOST_REGS`], at its end, the unit updates.
pub const HOST_DYNAMIC: usize = 3;

/// The values of [`HOST_REGS`] on `cpu`, read at EL2 where the host runs;
/// PMBPTR_EL1 and PMBSR_EL1 as the unit holds them (software sees the
/// unit's updates of them only after an ISB, which the harness must not
/// issue on the host's behalf).
pub fn host_regs(kvm: &mut Kvm, cpu: usize) -> Vec<u64> {
    let unit_view: Vec<u64> = {
        let spe = kvm.machine().pe(cpu).unwrap().spe();
        [SysReg::PMBPTR_EL1, SysReg::PMBSR_EL1]
            .iter()
            .map(|&r| spe.map_or(0, |s| s.read(r)))
            .collect()
    };
    let mut c = kvm.machine().cpu(cpu).unwrap();
    assert_eq!(c.current_el(), ExceptionLevel::EL2, "the host runs at EL2");
    HOST_REGS
        .iter()
        .map(|&r| match r {
            SysReg::PMBPTR_EL1 => unit_view[0],
            SysReg::PMBSR_EL1 => unit_view[1],
            r => c.read(r).unwrap(),
        })
        .collect()
}
