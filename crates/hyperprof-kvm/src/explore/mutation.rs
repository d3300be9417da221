//! The mutation catalogue: variants of the VHE SPE world switch that only
//! an interleaving exposes. Each is applied by the explorer's probe on the
//! `Cpu` boundary (an access left out, or the interrupt mask of the model
//! moved), never by changing the hypervisor's code.

use hyperprof_arch::{ExceptionLevel, SysReg};
use hyperprof_sim::probe::ProbeAccess;

use super::Phase;

/// One variant of the world switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mutation {
    /// `kvm_vcpu_spe_load` without `local_irq_disable()`: the host's PMBIRQ
    /// handler may run anywhere in it.
    NoIrqMaskInLoad,
    /// Load reads PMBSR_EL1 under the mask but clears it after
    /// `local_irq_enable()`.
    PmbsrClearedAfterIrqEnable,
    /// Load leaves the host's buffer enabled (no `PMBLIMITR_EL1 <- 0`)
    /// when it hands the buffer to EL1.
    LoadKeepsHostBufferEnabled,
    /// Guest exit moves a buffer event to the saved PMBSR_EL1 but leaves
    /// the hardware's set (no `PMBSR_EL1 <- 0`): PMBIRQ stays asserted.
    ExitLeavesPmbsr,
    /// Put does not restore the host's PMBSR_EL1 (a host event stashed at
    /// load is never raised again).
    PutSkipsHostPmbsr,
    /// Load leaves out the ISB after clearing the host's PMBSR_EL1.
    NoIsbAfterLoadPmbsrClear,
    /// Put does not collect the guest's overflow flags (its read of
    /// PMOVSSET_EL0 finds none): they stay on the CPU it leaves.
    PutMissesOverflowFlags,
}

impl Mutation {
    /// The catalogue.
    pub const ALL: [Mutation; 7] = [
        Mutation::NoIrqMaskInLoad,
        Mutation::PmbsrClearedAfterIrqEnable,
        Mutation::LoadKeepsHostBufferEnabled,
        Mutation::ExitLeavesPmbsr,
        Mutation::PutSkipsHostPmbsr,
        Mutation::NoIsbAfterLoadPmbsrClear,
        Mutation::PutMissesOverflowFlags,
    ];

    /// Its command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Mutation::NoIrqMaskInLoad => "no-irq-mask-in-load",
            Mutation::PmbsrClearedAfterIrqEnable => "pmbsr-cleared-after-irq-enable",
            Mutation::LoadKeepsHostBufferEnabled => "load-keeps-host-buffer-enabled",
            Mutation::ExitLeavesPmbsr => "exit-leaves-pmbsr",
            Mutation::PutSkipsHostPmbsr => "put-skips-host-pmbsr",
            Mutation::NoIsbAfterLoadPmbsrClear => "no-isb-after-load-pmbsr-clear",
            Mutation::PutMissesOverflowFlags => "put-misses-overflow-flags",
        }
    }

    /// The mutation called `name`.
    pub fn from_name(name: &str) -> Option<Mutation> {
        Mutation::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Why the mutation cannot break an invariant in this model, for the
    /// ones that cannot.
    pub fn harmless_because(self) -> Option<&'static str> {
        match self {
            Mutation::LoadKeepsHostBufferEnabled => Some(
                "nothing samples between load and entry (PMSCR_EL2 is 0 and the guest's \
                 PMSCR_EL1 samples EL0 only), entry writes the guest's PMBPTR_EL1 and \
                 PMBLIMITR_EL1 whenever the guest's buffer is enabled, and these guests \
                 (Linux's driver order) never run EL0 with the buffer disabled, so the host's \
                 buffer is never written through the guest's tables; a guest that did would \
                 expose it, which is why the series disables the buffer anyway",
            ),
            Mutation::PutMissesOverflowFlags => Some(
                "the simulated PE stops the guest at the very operation whose count \
                 overflows and every interrupt exit moves the flags to the vCPU, and guest \
                 counters do not count at EL2, so put never finds a guest flag set; on \
                 hardware an overflow interrupt can still be in flight when the guest exits \
                 for another reason, and put's collection is what keeps it (the model would \
                 need that in-flight overflow as an injected event to show it)",
            ),
            Mutation::NoIsbAfterLoadPmbsrClear => Some(
                "the model's unit drops PMBIRQ as soon as PMBSR_EL1.S is written (a direct \
                 write to the register it reads), and nothing in load depends on the \
                 interrupt line before spe_activate's ISB after the MDCR_EL2 write; on \
                 hardware the ISB orders the clear before local_irq_enable(), which is \
                 what the interrupt mask already guarantees in the model",
            ),
            _ => None,
        }
    }

    /// What the mutated code reads instead of the register, if it differs.
    pub(super) fn reads_as(self, phase: Phase, access: ProbeAccess) -> Option<u64> {
        match (self, phase, access) {
            (
                Mutation::PutMissesOverflowFlags,
                Phase::Put,
                ProbeAccess::Read(SysReg::PMOVSSET_EL0),
            ) => Some(0),
            _ => None,
        }
    }

    /// Whether the mutated code leaves this access out.
    pub(super) fn skips(
        self,
        phase: Phase,
        el: ExceptionLevel,
        access: ProbeAccess,
        last: Option<ProbeAccess>,
    ) -> bool {
        match (self, phase, access) {
            (Mutation::LoadKeepsHostBufferEnabled, Phase::Load, ProbeAccess::Write(r, 0)) => {
                r == SysReg::PMBLIMITR_EL1
            }
            (Mutation::ExitLeavesPmbsr, Phase::Run, ProbeAccess::Write(r, 0)) => {
                r == SysReg::PMBSR_EL1 && el == ExceptionLevel::EL2
            }
            (Mutation::PutSkipsHostPmbsr, Phase::Put, ProbeAccess::Write(r, _)) => {
                r == SysReg::PMBSR_EL1
            }
            (Mutation::NoIsbAfterLoadPmbsrClear, Phase::Load, ProbeAccess::Isb) => {
                last == Some(ProbeAccess::Write(SysReg::PMBSR_EL1, 0))
            }
            _ => false,
        }
    }
}

/// The interrupt mask of `kvm_vcpu_spe_load`, as the (possibly mutated)
/// code has it: `Some(true)` when `access` is the first one under
/// `local_irq_disable()`, `Some(false)` when it is the first after
/// `local_irq_enable()`, `None` when it changes nothing.
pub(super) fn load_mask_edge(m: Option<Mutation>, access: ProbeAccess) -> Option<bool> {
    if m == Some(Mutation::NoIrqMaskInLoad) {
        return None;
    }
    match access {
        // The first access of the SPE part of load.
        ProbeAccess::Read(SysReg::PMSCR_EL2) => Some(true),
        // Mutated: the mask ends right after PMBSR_EL1 was read, before
        // it is cleared.
        ProbeAccess::Write(SysReg::PMBSR_EL1, _)
            if m == Some(Mutation::PmbsrClearedAfterIrqEnable) =>
        {
            Some(false)
        }
        // The first access after local_irq_enable(): the host's PMBPTR_EL1
        // saved.
        ProbeAccess::Read(SysReg::PMBPTR_EL1) => Some(false),
        _ => None,
    }
}
