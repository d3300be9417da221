//! PSCI 1.1 through HVC, the way KVM serves it in the hypervisor (Arm DEN
//! 0022, and KVM's arch/arm64/kvm/psci.c for which functions a VM gets).
//!
//! [`call`] decodes one call from the caller's X0–X3 and says what the
//! hypervisor must do: return a value in X0, or change a vCPU's power
//! state. The caller's X0 gets [`SUCCESS`] after a successful CPU_ON.

/// PSCI_VERSION.
pub const PSCI_VERSION: u32 = 0x8400_0000;
/// CPU_SUSPEND (SMC32; the SMC64 form has bit 30 set).
pub const CPU_SUSPEND: u32 = 0x8400_0001;
/// CPU_OFF.
pub const CPU_OFF: u32 = 0x8400_0002;
/// CPU_ON (SMC32).
pub const CPU_ON: u32 = 0x8400_0003;
/// AFFINITY_INFO (SMC32).
pub const AFFINITY_INFO: u32 = 0x8400_0004;
/// MIGRATE_INFO_TYPE.
pub const MIGRATE_INFO_TYPE: u32 = 0x8400_0006;
/// SYSTEM_OFF.
pub const SYSTEM_OFF: u32 = 0x8400_0008;
/// SYSTEM_RESET.
pub const SYSTEM_RESET: u32 = 0x8400_0009;
/// PSCI_FEATURES.
pub const PSCI_FEATURES: u32 = 0x8400_000A;
/// SMCCC_VERSION (the SMC Calling Convention's own query).
pub const SMCCC_VERSION: u32 = 0x8000_0000;
/// SMCCC_ARCH_FEATURES.
pub const SMCCC_ARCH_FEATURES: u32 = 0x8000_0001;
/// The SMC64 bit of a function ID.
pub const SMC64: u32 = 1 << 30;

/// The PSCI version served: 1.1.
pub const VERSION_1_1: u64 = 0x0001_0001;
/// The SMCCC version served: 1.1.
pub const SMCCC_1_1: u64 = 0x0001_0001;

/// Success.
pub const SUCCESS: u64 = 0;
/// NOT_SUPPORTED (-1).
pub const NOT_SUPPORTED: u64 = -1i64 as u64;
/// INVALID_PARAMETERS (-2).
pub const INVALID_PARAMETERS: u64 = -2i64 as u64;
/// ALREADY_ON (-4).
pub const ALREADY_ON: u64 = -4i64 as u64;
/// ON_PENDING (-5).
pub const ON_PENDING: u64 = -5i64 as u64;

/// AFFINITY_INFO: some matching CPU is on.
pub const AFFINITY_ON: u64 = 0;
/// AFFINITY_INFO: every matching CPU is off.
pub const AFFINITY_OFF: u64 = 1;
/// AFFINITY_INFO: a matching CPU is being turned on.
pub const AFFINITY_ON_PENDING: u64 = 2;

/// MIGRATE_INFO_TYPE: no Trusted OS, nothing to migrate.
pub const TOS_NOT_PRESENT_MP: u64 = 2;

/// The affinity fields of MPIDR_EL1 (Aff3 [39:32], Aff2..Aff0 [23:0]).
pub const MPIDR_AFFINITY: u64 = 0xFF_00FF_FFFF;

/// A vCPU's power state as PSCI sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerState {
    /// Running (or runnable).
    On,
    /// Off: not run until a CPU_ON names it.
    Off,
    /// A CPU_ON named it and it has not run yet.
    OnPending,
}

/// What the hypervisor does for a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Write the value to the caller's X0 and resume it.
    Return(u64),
    /// Power on vCPU `vcpu` at `entry` (EL1h, MMU off, interrupts masked)
    /// with X0 = `context_id`; the caller's X0 gets [`SUCCESS`].
    CpuOn {
        /// Index of the vCPU in the slice given to [`call`].
        vcpu: usize,
        /// Its first instruction.
        entry: u64,
        /// Its X0.
        context_id: u64,
    },
    /// Power the caller off.
    CpuOff,
    /// Suspend the caller until an interrupt is pending (KVM treats
    /// CPU_SUSPEND as WFI); the caller's X0 gets [`SUCCESS`].
    Suspend,
    /// The VM powers off.
    SystemOff,
    /// The VM resets.
    SystemReset,
}

fn affinity_mask(level: u64) -> u64 {
    match level {
        0 => MPIDR_AFFINITY,
        1 => MPIDR_AFFINITY & !0xFF,
        2 => MPIDR_AFFINITY & !0xFFFF,
        _ => MPIDR_AFFINITY & !0xFF_FFFF,
    }
}

/// Serves the call in `x` (the caller's X0–X3) for a VM whose vCPUs have
/// the given MPIDRs and power states.
pub fn call(x: [u64; 4], vcpus: &[(u64, PowerState)]) -> Outcome {
    let fid = x[0] as u32;
    // An SMC32 call's arguments are 32 bits wide.
    let arg = |i: usize| {
        if fid & SMC64 != 0 {
            x[i]
        } else {
            x[i] & 0xFFFF_FFFF
        }
    };
    match fid {
        PSCI_VERSION => Outcome::Return(VERSION_1_1),
        SMCCC_VERSION => Outcome::Return(SMCCC_1_1),
        f if f == CPU_SUSPEND || f == CPU_SUSPEND | SMC64 => Outcome::Suspend,
        CPU_OFF => Outcome::CpuOff,
        f if f == CPU_ON || f == CPU_ON | SMC64 => {
            let target = arg(1) & MPIDR_AFFINITY;
            match vcpus.iter().position(|(m, _)| m & MPIDR_AFFINITY == target) {
                None => Outcome::Return(INVALID_PARAMETERS),
                Some(i) => match vcpus[i].1 {
                    PowerState::On => Outcome::Return(ALREADY_ON),
                    PowerState::OnPending => Outcome::Return(ON_PENDING),
                    PowerState::Off => Outcome::CpuOn {
                        vcpu: i,
                        entry: arg(2),
                        context_id: arg(3),
                    },
                },
            }
        }
        f if f == AFFINITY_INFO || f == AFFINITY_INFO | SMC64 => {
            let level = arg(2);
            if level > 3 {
                return Outcome::Return(INVALID_PARAMETERS);
            }
            let mask = affinity_mask(level);
            let target = arg(1) & mask;
            let states = vcpus
                .iter()
                .filter(|(m, _)| m & mask == target)
                .map(|(_, s)| *s);
            // No vCPU with that affinity: KVM answers INVALID_PARAMETERS.
            let mut answer = INVALID_PARAMETERS;
            for s in states {
                match s {
                    PowerState::On => return Outcome::Return(AFFINITY_ON),
                    PowerState::OnPending => answer = AFFINITY_ON_PENDING,
                    PowerState::Off if answer == INVALID_PARAMETERS => answer = AFFINITY_OFF,
                    PowerState::Off => {}
                }
            }
            Outcome::Return(answer)
        }
        MIGRATE_INFO_TYPE => Outcome::Return(TOS_NOT_PRESENT_MP),
        SYSTEM_OFF => Outcome::SystemOff,
        SYSTEM_RESET => Outcome::SystemReset,
        PSCI_FEATURES => Outcome::Return(if supported(arg(1) as u32) {
            SUCCESS
        } else {
            NOT_SUPPORTED
        }),
        SMCCC_ARCH_FEATURES => Outcome::Return(NOT_SUPPORTED),
        _ => Outcome::Return(NOT_SUPPORTED),
    }
}

/// Whether PSCI_FEATURES reports `fid` as implemented.
fn supported(fid: u32) -> bool {
    matches!(
        fid,
        PSCI_VERSION
            | CPU_OFF
            | MIGRATE_INFO_TYPE
            | SYSTEM_OFF
            | SYSTEM_RESET
            | PSCI_FEATURES
            | SMCCC_VERSION
    ) || [CPU_SUSPEND, CPU_ON, AFFINITY_INFO]
        .iter()
        .any(|f| fid == *f || fid == f | SMC64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: [(u64, PowerState); 2] = [
        (0x8000_0000, PowerState::On),
        (0x8000_0001, PowerState::Off),
    ];

    #[test]
    fn version_and_features() {
        assert_eq!(
            call([PSCI_VERSION as u64, 0, 0, 0], &TWO),
            Outcome::Return(0x1_0001)
        );
        for f in [
            CPU_ON,
            CPU_ON | SMC64,
            SYSTEM_OFF,
            AFFINITY_INFO | SMC64,
            SMCCC_VERSION,
        ] {
            assert_eq!(
                call([PSCI_FEATURES as u64, f as u64, 0, 0], &TWO),
                Outcome::Return(SUCCESS),
                "{f:#x}"
            );
        }
        for f in [0x8400_0005u32, 0xC400_0012, 0x1234] {
            assert_eq!(
                call([PSCI_FEATURES as u64, f as u64, 0, 0], &TWO),
                Outcome::Return(NOT_SUPPORTED)
            );
        }
        assert_eq!(
            call([0xC400_00FF, 0, 0, 0], &TWO),
            Outcome::Return(NOT_SUPPORTED)
        );
    }

    #[test]
    fn cpu_on_names_the_target_or_says_why_not() {
        assert_eq!(
            call(
                [(CPU_ON | SMC64) as u64, 1, 0x4008_1000, 0xdead_beef_0000],
                &TWO
            ),
            Outcome::CpuOn {
                vcpu: 1,
                entry: 0x4008_1000,
                context_id: 0xdead_beef_0000
            }
        );
        // SMC32: the upper halves of the arguments are ignored.
        assert_eq!(
            call(
                [CPU_ON as u64, 0xffff_0000_0000_0001, 0x1_4008_1000, 7],
                &TWO
            ),
            Outcome::CpuOn {
                vcpu: 1,
                entry: 0x4008_1000,
                context_id: 7
            }
        );
        assert_eq!(
            call([CPU_ON as u64, 0, 0, 0], &TWO),
            Outcome::Return(ALREADY_ON)
        );
        assert_eq!(
            call([CPU_ON as u64, 5, 0, 0], &TWO),
            Outcome::Return(INVALID_PARAMETERS)
        );
        let pending = [(0, PowerState::OnPending)];
        assert_eq!(
            call([CPU_ON as u64, 0, 0, 0], &pending),
            Outcome::Return(ON_PENDING)
        );
    }

    #[test]
    fn affinity_info_by_level() {
        let ai = |t, l| call([(AFFINITY_INFO | SMC64) as u64, t, l, 0], &TWO);
        assert_eq!(ai(0, 0), Outcome::Return(AFFINITY_ON));
        assert_eq!(ai(1, 0), Outcome::Return(AFFINITY_OFF));
        assert_eq!(ai(0x100, 0), Outcome::Return(INVALID_PARAMETERS));
        assert_eq!(ai(1, 1), Outcome::Return(AFFINITY_ON));
        assert_eq!(ai(1, 4), Outcome::Return(INVALID_PARAMETERS));
    }

    #[test]
    fn power_calls() {
        assert_eq!(call([SYSTEM_OFF as u64, 0, 0, 0], &TWO), Outcome::SystemOff);
        assert_eq!(
            call([SYSTEM_RESET as u64, 0, 0, 0], &TWO),
            Outcome::SystemReset
        );
        assert_eq!(call([CPU_OFF as u64, 0, 0, 0], &TWO), Outcome::CpuOff);
        assert_eq!(
            call([(CPU_SUSPEND | SMC64) as u64, 0, 0, 0], &TWO),
            Outcome::Suspend
        );
        assert_eq!(
            call([MIGRATE_INFO_TYPE as u64, 0, 0, 0], &TWO),
            Outcome::Return(2)
        );
    }
}
