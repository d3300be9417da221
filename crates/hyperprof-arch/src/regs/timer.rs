//! The Generic Timer's control registers (Arm ARM D12, "The Generic
//! Timer in AArch64 state"; register layouts in D24.9): the EL1 timers'
//! control, CNTKCTL_EL1 (EL0 access) and CNTHCTL_EL2 (EL1 access).
//!
//! Field positions checked against Linux `arch/arm64/include/asm/
//! arch_timer.h` (`ARCH_TIMER_CTRL_*`, `ARCH_TIMER_USR_*`) and
//! `arch/arm64/include/asm/kvm_arm.h` (`CNTHCTL_*`).

/// CNTV_CTL_EL0 and CNTP_CTL_EL0, the EL1 virtual and physical timers'
/// control registers (the layouts are the same).
pub mod cnt_ctl {
    use crate::Field;

    /// `ENABLE`, bit 0: the timer is enabled.
    pub const ENABLE: Field = Field::bit(0);
    /// `IMASK`, bit 1: the timer's interrupt is masked.
    pub const IMASK: Field = Field::bit(1);
    /// `ISTATUS`, bit 2 (read-only): the timer condition is met
    /// (the count has reached the compare value while enabled).
    pub const ISTATUS: Field = Field::bit(2);
    /// Bits software may write (ISTATUS is read-only, the rest RES0).
    pub const WRITABLE: u64 = ENABLE.mask() | IMASK.mask();

    /// The timer's interrupt output: enabled, unmasked and the condition
    /// met (`count >= cval`, counts compared as unsigned 64-bit values).
    pub const fn output(ctl: u64, count: u64, cval: u64) -> bool {
        ENABLE.is_set(ctl) && !IMASK.is_set(ctl) && count >= cval
    }

    /// The value a read returns: the written bits and ISTATUS, which is set
    /// while the timer is enabled and its condition is met (whatever IMASK).
    pub const fn read(ctl: u64, count: u64, cval: u64) -> u64 {
        let istatus = ENABLE.is_set(ctl) && count >= cval;
        ISTATUS.set(ctl & WRITABLE, istatus as u64)
    }
}

/// CNTKCTL_EL1, Counter-timer Kernel Control register: which counters
/// and timers EL0 may access (a denied access traps to EL1, EC 0x18).
pub mod cntkctl_el1 {
    #![allow(non_upper_case_globals)]
    use crate::Field;

    /// `EL0PCTEN`, bit 0: EL0 may read CNTPCT_EL0 (and CNTFRQ_EL0).
    pub const EL0PCTEN: Field = Field::bit(0);
    /// `EL0VCTEN`, bit 1: EL0 may read CNTVCT_EL0 (and CNTFRQ_EL0).
    pub const EL0VCTEN: Field = Field::bit(1);
    /// `EVNTEN`, bit 2: the event stream is enabled.
    pub const EVNTEN: Field = Field::bit(2);
    /// `EL0VTEN`, bit 8: EL0 may access the virtual timer's registers.
    pub const EL0VTEN: Field = Field::bit(8);
    /// `EL0PTEN`, bit 9: EL0 may access the physical timer's registers.
    pub const EL0PTEN: Field = Field::bit(9);
}

/// CNTHCTL_EL2, Counter-timer Hypervisor Control register, in its
/// `HCR_EL2.E2H == 1` layout (FEAT_VHE), which a VHE host uses: the EL1
/// traps of the physical counter and timer are bits 10 and 11 there.
/// With E2H == 0 they are bits 0 and 1 ([`EL1PCTEN_NVHE`],
/// [`EL1PCEN_NVHE`]), as an nVHE hypervisor writes them.
pub mod cnthctl_el2 {
    #![allow(non_upper_case_globals)]
    use crate::Field;

    /// `EL1PCTEN`, bit 10 (E2H == 1): EL0/EL1 reads of CNTPCT_EL0 are not
    /// trapped to EL2.
    pub const EL1PCTEN: Field = Field::bit(10);
    /// `EL1PTEN`, bit 11 (E2H == 1): EL0/EL1 accesses to the physical
    /// timer's registers are not trapped to EL2.
    pub const EL1PTEN: Field = Field::bit(11);
    /// `EL1PCTEN`, bit 0 (E2H == 0).
    pub const EL1PCTEN_NVHE: Field = Field::bit(0);
    /// `EL1PCEN`, bit 1 (E2H == 0): the physical timer, as EL1PTEN.
    pub const EL1PCEN_NVHE: Field = Field::bit(1);

    /// Whether EL1 (and EL0) reads of the physical counter trap to EL2
    /// under `cnthctl` with HCR_EL2.E2H `e2h`.
    pub const fn traps_counter(cnthctl: u64, e2h: bool) -> bool {
        if e2h {
            !EL1PCTEN.is_set(cnthctl)
        } else {
            !EL1PCTEN_NVHE.is_set(cnthctl)
        }
    }

    /// Whether EL1 (and EL0) accesses to the physical timer trap to EL2.
    pub const fn traps_timer(cnthctl: u64, e2h: bool) -> bool {
        if e2h {
            !EL1PTEN.is_set(cnthctl)
        } else {
            !EL1PCEN_NVHE.is_set(cnthctl)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istatus_is_the_condition_and_the_output_needs_it_unmasked() {
        let on = cnt_ctl::ENABLE.mask();
        let masked = on | cnt_ctl::IMASK.mask();
        assert_eq!(cnt_ctl::read(on, 10, 10), on | cnt_ctl::ISTATUS.mask());
        assert_eq!(cnt_ctl::read(on, 9, 10), on);
        assert_eq!(
            cnt_ctl::read(masked, 11, 10),
            masked | cnt_ctl::ISTATUS.mask()
        );
        // Disabled: no condition, whatever the count.
        assert_eq!(cnt_ctl::read(0, 11, 10), 0);
        // A written ISTATUS is ignored.
        assert_eq!(cnt_ctl::read(cnt_ctl::ISTATUS.mask(), 11, 10), 0);
        assert!(cnt_ctl::output(on, 10, 10));
        assert!(!cnt_ctl::output(masked, 10, 10));
        assert!(!cnt_ctl::output(on, 9, 10));
    }

    #[test]
    fn the_el1_traps_sit_where_e2h_puts_them() {
        assert!(cnthctl_el2::traps_counter(0, true));
        assert!(!cnthctl_el2::traps_counter(1 << 10, true));
        assert!(cnthctl_el2::traps_counter(1 << 10, false));
        assert!(!cnthctl_el2::traps_counter(1, false));
        assert!(!cnthctl_el2::traps_timer(1 << 11, true));
        assert!(!cnthctl_el2::traps_timer(2, false));
        assert!(cnthctl_el2::traps_timer(2, true));
    }
}
