//! SPE architectural predicates from the Arm ARM pseudocode (DDI0487,
//! "shared/debug/statisticalprofiling": `ProfilingBufferOwner()`,
//! `ProfilingBufferEnabled()`, `StatisticalProfilingEnabled()`;
//! ARM-FACTS §2).
//!
//! Scope: Non-secure state, AArch64 at every EL, no EL3 controls
//! (MDCR_EL3.NSPB and the security-state checks of the pseudocode are not
//! modelled). `EL2Enabled()` is taken to be "EL2 implemented".

use core::fmt;

use crate::{hcr_el2, mdcr_el2, pmblimitr_el1, pmbsr_el1, pmscr_el1, pmscr_el2};

/// An Exception level, ordered `EL0 < EL1 < EL2 < EL3` like `UInt(el)` in
/// the pseudocode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ExceptionLevel {
    /// EL0, applications.
    EL0 = 0,
    /// EL1, kernel.
    EL1 = 1,
    /// EL2, hypervisor.
    EL2 = 2,
    /// EL3, secure monitor.
    EL3 = 3,
}

impl ExceptionLevel {
    /// The level for a 2-bit EL number (as in `PSTATE.EL`), `None` above 3.
    pub const fn from_u8(el: u8) -> Option<ExceptionLevel> {
        match el {
            0 => Some(ExceptionLevel::EL0),
            1 => Some(ExceptionLevel::EL1),
            2 => Some(ExceptionLevel::EL2),
            3 => Some(ExceptionLevel::EL3),
            _ => None,
        }
    }

    /// The EL number.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }
}

impl fmt::Display for ExceptionLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EL{}", self.as_u8())
    }
}

/// `ProfilingBufferOwner()`: the Exception level that owns the profiling
/// buffer. With EL2 implemented it is EL2 when `MDCR_EL2.E2PB == 0b00` and
/// EL1 otherwise; without EL2 it is EL1 (MDCR_EL2 is then ignored).
pub const fn profiling_buffer_owner(el2_implemented: bool, mdcr_el2: u64) -> ExceptionLevel {
    if el2_implemented && mdcr_el2::E2PB.get(mdcr_el2) == mdcr_el2::E2PB_EL2 {
        ExceptionLevel::EL2
    } else {
        ExceptionLevel::EL1
    }
}

/// `ProfilingBufferEnabled()`: `PMBLIMITR_EL1.E == 1` and
/// `PMBSR_EL1.S == 0`.
pub const fn profiling_buffer_enabled(pmblimitr_el1: u64, pmbsr_el1: u64) -> bool {
    pmblimitr_el1::E.is_set(pmblimitr_el1) && !pmbsr_el1::S.is_set(pmbsr_el1)
}

/// The register state [`statistical_profiling_enabled`] reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProfilingControls {
    /// EL2 is implemented (and enabled).
    pub el2_implemented: bool,
    /// HCR_EL2 (TGE is read; ignored without EL2).
    pub hcr_el2: u64,
    /// MDCR_EL2 (E2PB is read; ignored without EL2).
    pub mdcr_el2: u64,
    /// PMBLIMITR_EL1 (E is read).
    pub pmblimitr_el1: u64,
    /// PMBSR_EL1 (S is read).
    pub pmbsr_el1: u64,
    /// PMSCR_EL1 (E0SPE, E1SPE are read).
    pub pmscr_el1: u64,
    /// PMSCR_EL2 (E0HSPE, E2SPE are read; ignored without EL2).
    pub pmscr_el2: u64,
}

/// `StatisticalProfilingEnabled(el)`: whether operations executed at `el`
/// are sampled.
///
/// False if the buffer is not enabled ([`profiling_buffer_enabled`]), if
/// the owning EL ([`profiling_buffer_owner`]) is below `el`, or if
/// `HCR_EL2.TGE == 1` (with EL2 implemented) and the owner is EL1.
/// Otherwise the enable bit for `el`: EL2 → `PMSCR_EL2.E2SPE`;
/// EL1 → `PMSCR_EL1.E1SPE`; EL0 → `PMSCR_EL2.E0HSPE` if TGE is set, else
/// `PMSCR_EL1.E0SPE`. EL3 is never sampled here (the pseudocode treats it
/// as unreachable).
pub const fn statistical_profiling_enabled(el: ExceptionLevel, c: &ProfilingControls) -> bool {
    if !profiling_buffer_enabled(c.pmblimitr_el1, c.pmbsr_el1) {
        return false;
    }
    let owner = profiling_buffer_owner(c.el2_implemented, c.mdcr_el2);
    let tge = c.el2_implemented && hcr_el2::TGE.is_set(c.hcr_el2);
    if (owner as u8) < (el as u8) {
        return false;
    }
    if tge && matches!(owner, ExceptionLevel::EL1) {
        return false;
    }
    match el {
        ExceptionLevel::EL3 => false,
        ExceptionLevel::EL2 => pmscr_el2::E2SPE.is_set(c.pmscr_el2),
        ExceptionLevel::EL1 => pmscr_el1::E1SPE.is_set(c.pmscr_el1),
        ExceptionLevel::EL0 => {
            if tge {
                pmscr_el2::E0HSPE.is_set(c.pmscr_el2)
            } else {
                pmscr_el1::E0SPE.is_set(c.pmscr_el1)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ExceptionLevel::{EL0, EL1, EL2, EL3};
    use super::*;
    use std::format;

    const E2PB_EL2: u64 = mdcr_el2::E2PB.value(mdcr_el2::E2PB_EL2);
    const E2PB_EL1: u64 = mdcr_el2::E2PB.value(mdcr_el2::E2PB_EL1);
    const E2PB_EL1_TRAP: u64 = mdcr_el2::E2PB.value(mdcr_el2::E2PB_EL1_TRAP);
    const E2PB_RESERVED: u64 = mdcr_el2::E2PB.value(0b01);
    const TGE: u64 = hcr_el2::TGE.mask();
    const BUF_ON: u64 = pmblimitr_el1::E.mask() | 0xFFFF_0000;
    const SERVICE: u64 = pmbsr_el1::S.mask();
    const EL1_ALL: u64 = pmscr_el1::E0SPE.mask() | pmscr_el1::E1SPE.mask();
    const EL2_ALL: u64 = pmscr_el2::E0HSPE.mask() | pmscr_el2::E2SPE.mask();

    #[test]
    fn exception_level_order_and_names() {
        assert!(EL0 < EL1 && EL1 < EL2 && EL2 < EL3);
        assert_eq!(ExceptionLevel::from_u8(2), Some(EL2));
        assert_eq!(ExceptionLevel::from_u8(4), None);
        assert_eq!(EL3.as_u8(), 3);
        assert_eq!(format!("{EL1}"), "EL1");
    }

    #[test]
    fn owner_table() {
        let cases = [
            (true, E2PB_EL2, EL2),
            (true, E2PB_EL1, EL1),
            (true, E2PB_EL1_TRAP, EL1),
            (true, E2PB_RESERVED, EL1),
            (false, E2PB_EL2, EL1),
            (false, E2PB_EL1, EL1),
            // Other MDCR_EL2 bits do not matter.
            (true, !mdcr_el2::E2PB.mask(), EL2),
        ];
        for (el2, mdcr, want) in cases {
            assert_eq!(
                profiling_buffer_owner(el2, mdcr),
                want,
                "el2={el2} mdcr={mdcr:#x}"
            );
        }
    }

    #[test]
    fn buffer_enabled_table() {
        let cases = [
            (0, 0, false),
            (BUF_ON, 0, true),
            (BUF_ON, SERVICE, false),
            (0, SERVICE, false),
            // Only E and S matter.
            (BUF_ON, !SERVICE, true),
            (!pmblimitr_el1::E.mask(), 0, false),
        ];
        for (lim, sr, want) in cases {
            assert_eq!(profiling_buffer_enabled(lim, sr), want, "{lim:#x} {sr:#x}");
        }
    }

    fn controls(el2: bool, hcr: u64, mdcr: u64, pmscr1: u64, pmscr2: u64) -> ProfilingControls {
        ProfilingControls {
            el2_implemented: el2,
            hcr_el2: hcr,
            mdcr_el2: mdcr,
            pmblimitr_el1: BUF_ON,
            pmbsr_el1: 0,
            pmscr_el1: pmscr1,
            pmscr_el2: pmscr2,
        }
    }

    #[test]
    fn buffer_disabled_stops_everything() {
        let on = controls(true, 0, E2PB_EL1, EL1_ALL, EL2_ALL);
        let stopped = ProfilingControls {
            pmbsr_el1: SERVICE,
            ..on
        };
        let disabled = ProfilingControls {
            pmblimitr_el1: 0,
            ..on
        };
        for el in [EL0, EL1, EL2, EL3] {
            assert!(!statistical_profiling_enabled(el, &stopped), "{el}");
            assert!(!statistical_profiling_enabled(el, &disabled), "{el}");
        }
        assert!(statistical_profiling_enabled(EL1, &on));
    }

    #[test]
    fn statistical_profiling_table() {
        // (description, el, controls, expected)
        let cases = [
            // Guest-owned buffer (EL1 owner), TGE clear: PMSCR_EL1 decides EL0/EL1.
            (
                "el1 owner, el1 on",
                EL1,
                controls(true, 0, E2PB_EL1, EL1_ALL, 0),
                true,
            ),
            (
                "el1 owner, el1 off",
                EL1,
                controls(true, 0, E2PB_EL1, pmscr_el1::E0SPE.mask(), EL2_ALL),
                false,
            ),
            (
                "el1 owner, el0 on",
                EL0,
                controls(true, 0, E2PB_EL1, pmscr_el1::E0SPE.mask(), 0),
                true,
            ),
            (
                "el1 owner, el0 off",
                EL0,
                controls(true, 0, E2PB_EL1, pmscr_el1::E1SPE.mask(), EL2_ALL),
                false,
            ),
            // Owner below el: EL2 never sampled into an EL1-owned buffer.
            (
                "el1 owner, el2",
                EL2,
                controls(true, 0, E2PB_EL1, EL1_ALL, EL2_ALL),
                false,
            ),
            (
                "el1 owner (trap), el2",
                EL2,
                controls(true, 0, E2PB_EL1_TRAP, EL1_ALL, EL2_ALL),
                false,
            ),
            // TGE with EL1 owner: nothing.
            (
                "tge, el1 owner, el0",
                EL0,
                controls(true, TGE, E2PB_EL1, EL1_ALL, EL2_ALL),
                false,
            ),
            (
                "tge, el1 owner, el1",
                EL1,
                controls(true, TGE, E2PB_EL1, EL1_ALL, EL2_ALL),
                false,
            ),
            // Host-owned buffer (EL2 owner).
            (
                "el2 owner, el2 on",
                EL2,
                controls(true, 0, E2PB_EL2, 0, pmscr_el2::E2SPE.mask()),
                true,
            ),
            (
                "el2 owner, el2 off",
                EL2,
                controls(true, 0, E2PB_EL2, EL1_ALL, pmscr_el2::E0HSPE.mask()),
                false,
            ),
            (
                "el2 owner, el1 uses pmscr_el1",
                EL1,
                controls(true, 0, E2PB_EL2, pmscr_el1::E1SPE.mask(), 0),
                true,
            ),
            (
                "el2 owner, el1 off",
                EL1,
                controls(true, 0, E2PB_EL2, pmscr_el1::E0SPE.mask(), EL2_ALL),
                false,
            ),
            (
                "el2 owner, no tge, el0 uses e0spe",
                EL0,
                controls(true, 0, E2PB_EL2, pmscr_el1::E0SPE.mask(), 0),
                true,
            ),
            (
                "el2 owner, no tge, el0 ignores e0hspe",
                EL0,
                controls(true, 0, E2PB_EL2, 0, EL2_ALL),
                false,
            ),
            (
                "el2 owner, tge, el0 uses e0hspe",
                EL0,
                controls(true, TGE, E2PB_EL2, 0, pmscr_el2::E0HSPE.mask()),
                true,
            ),
            (
                "el2 owner, tge, el0 ignores e0spe",
                EL0,
                controls(true, TGE, E2PB_EL2, EL1_ALL, pmscr_el2::E2SPE.mask()),
                false,
            ),
            (
                "el2 owner, tge, el2",
                EL2,
                controls(true, TGE, E2PB_EL2, 0, pmscr_el2::E2SPE.mask()),
                true,
            ),
            // EL3 is never sampled.
            (
                "el2 owner, el3",
                EL3,
                controls(true, 0, E2PB_EL2, EL1_ALL, EL2_ALL),
                false,
            ),
            (
                "el1 owner, el3",
                EL3,
                controls(true, 0, E2PB_EL1, EL1_ALL, EL2_ALL),
                false,
            ),
            // No EL2: owner is EL1 whatever MDCR_EL2 says, TGE and PMSCR_EL2 ignored.
            (
                "no el2, el1",
                EL1,
                controls(false, TGE, E2PB_EL2, EL1_ALL, 0),
                true,
            ),
            (
                "no el2, el0",
                EL0,
                controls(false, TGE, E2PB_EL2, pmscr_el1::E0SPE.mask(), 0),
                true,
            ),
            (
                "no el2, el0 ignores e0hspe",
                EL0,
                controls(false, TGE, E2PB_EL2, 0, EL2_ALL),
                false,
            ),
            (
                "no el2, el2",
                EL2,
                controls(false, 0, E2PB_EL2, EL1_ALL, EL2_ALL),
                false,
            ),
        ];
        for (what, el, c, want) in cases {
            assert_eq!(statistical_profiling_enabled(el, &c), want, "{what}");
        }
    }

    #[test]
    fn default_controls_sample_nothing() {
        let c = ProfilingControls::default();
        for el in [EL0, EL1, EL2, EL3] {
            assert!(!statistical_profiling_enabled(el, &c));
        }
    }
}
