//! Fine-grained trap registers for debug, PMU and SPE (FEAT_FGT; Arm ARM
//! D24.2 HDFGRTR_EL2 / HDFGWTR_EL2; ARM-FACTS §5).
//!
//! Bit positions checked against Linux `arch/arm64/tools/sysreg`
//! (`Sysreg HDFGRTR_EL2 3 4 3 1 4`, `Sysreg HDFGWTR_EL2 3 4 3 1 5`).
//!
//! Polarity: a bit named after a register traps when **1**. Bits whose name
//! starts with `n` (`nPMSNEVFR_EL1`, and the BRBE bits `nBRBDATA`,
//! `nBRBCTL`, `nBRBIDR`) trap when **0**, so the value that traps nothing is
//! not zero: it is [`hdfgrtr_el2::TRAP_NOTHING`] /
//! [`hdfgwtr_el2::TRAP_NOTHING`] (the negative-polarity bits set). Use
//! `value_trapping(traps)` to turn a set of trap *positions* into a register
//! value and `traps(value)` for the inverse, so callers never handle
//! polarity by hand.
//!
//! The mapping from a register to its trap bit (`trap_bit`) covers the
//! registers in [`SysReg`](crate::SysReg). PMXEVTYPER_EL0 and PMXEVCNTR_EL0
//! map to the `PMEVTYPERn_EL0` / `PMEVCNTRn_EL0` bits (from the Arm ARM
//! accessor pseudocode as remembered; not checked against a source in this
//! session). PMSDSFR_EL1 is trapped by `HDFGRTR2_EL2.nPMSDSFR_EL1` (bit 19 of
//! a different register, not modelled), so it has no bit here.

/// HDFGRTR_EL2, Hypervisor Debug Fine-Grained Read Trap Register (FEAT_FGT,
/// Arm ARM D24.2). SPE and PMU read-trap bits; see the [module
/// docs](crate::hdfgrtr_el2) for polarity.
pub mod hdfgrtr_el2 {
    #![allow(non_upper_case_globals)]
    use crate::{Field, SysReg};

    /// `PMEVCNTRn_EL0`, bit 12: trap reads of `PMEVCNTR<n>_EL0` / PMXEVCNTR_EL0.
    pub const PMEVCNTRn_EL0: Field = Field::bit(12);
    /// `PMEVTYPERn_EL0`, bit 13: trap reads of `PMEVTYPER<n>_EL0` / PMXEVTYPER_EL0.
    pub const PMEVTYPERn_EL0: Field = Field::bit(13);
    /// `PMCCFILTR_EL0`, bit 14.
    pub const PMCCFILTR_EL0: Field = Field::bit(14);
    /// `PMCCNTR_EL0`, bit 15.
    pub const PMCCNTR_EL0: Field = Field::bit(15);
    /// `PMCNTEN`, bit 16: PMCNTENSET_EL0 and PMCNTENCLR_EL0.
    pub const PMCNTEN: Field = Field::bit(16);
    /// `PMINTEN`, bit 17: PMINTENSET_EL1 and PMINTENCLR_EL1.
    pub const PMINTEN: Field = Field::bit(17);
    /// `PMOVS`, bit 18: PMOVSSET_EL0 and PMOVSCLR_EL0.
    pub const PMOVS: Field = Field::bit(18);
    /// `PMSELR_EL0`, bit 19.
    pub const PMSELR_EL0: Field = Field::bit(19);
    /// `PMMIR_EL1`, bit 22.
    pub const PMMIR_EL1: Field = Field::bit(22);
    /// `PMBLIMITR_EL1`, bit 23.
    pub const PMBLIMITR_EL1: Field = Field::bit(23);
    /// `PMBPTR_EL1`, bit 24.
    pub const PMBPTR_EL1: Field = Field::bit(24);
    /// `PMBSR_EL1`, bit 25.
    pub const PMBSR_EL1: Field = Field::bit(25);
    /// `PMSCR_EL1`, bit 26.
    pub const PMSCR_EL1: Field = Field::bit(26);
    /// `PMSEVFR_EL1`, bit 27.
    pub const PMSEVFR_EL1: Field = Field::bit(27);
    /// `PMSFCR_EL1`, bit 28.
    pub const PMSFCR_EL1: Field = Field::bit(28);
    /// `PMSICR_EL1`, bit 29.
    pub const PMSICR_EL1: Field = Field::bit(29);
    /// `PMSIDR_EL1`, bit 30.
    pub const PMSIDR_EL1: Field = Field::bit(30);
    /// `PMSIRR_EL1`, bit 31.
    pub const PMSIRR_EL1: Field = Field::bit(31);
    /// `PMSLATFR_EL1`, bit 32.
    pub const PMSLATFR_EL1: Field = Field::bit(32);
    /// `PMUSERENR_EL0`, bit 57.
    pub const PMUSERENR_EL0: Field = Field::bit(57);
    /// `PMCEIDn_EL0`, bit 58: PMCEID0_EL0 and PMCEID1_EL0.
    pub const PMCEIDn_EL0: Field = Field::bit(58);
    /// `nBRBIDR`, bit 59 (FEAT_BRBE): **traps when 0**.
    pub const nBRBIDR: Field = Field::bit(59);
    /// `nBRBCTL`, bit 60 (FEAT_BRBE): **traps when 0**.
    pub const nBRBCTL: Field = Field::bit(60);
    /// `nBRBDATA`, bit 61 (FEAT_BRBE): **traps when 0**.
    pub const nBRBDATA: Field = Field::bit(61);
    /// `nPMSNEVFR_EL1`, bit 62 (FEAT_SPEv1p2): **traps when 0**.
    pub const nPMSNEVFR_EL1: Field = Field::bit(62);
    /// `PMBIDR_EL1`, bit 63.
    pub const PMBIDR_EL1: Field = Field::bit(63);

    /// Bits with negative polarity (trap when 0) in this register.
    pub const NEGATIVE: u64 =
        nBRBIDR.mask() | nBRBCTL.mask() | nBRBDATA.mask() | nPMSNEVFR_EL1.mask();

    /// The value that traps nothing: every negative-polarity bit set, every
    /// other bit clear.
    pub const TRAP_NOTHING: u64 = NEGATIVE;

    /// SPE read-trap positions (including `nPMSNEVFR_EL1`'s position).
    pub const SPE: u64 = PMBIDR_EL1.mask()
        | nPMSNEVFR_EL1.mask()
        | PMSLATFR_EL1.mask()
        | PMSIRR_EL1.mask()
        | PMSIDR_EL1.mask()
        | PMSICR_EL1.mask()
        | PMSFCR_EL1.mask()
        | PMSEVFR_EL1.mask()
        | PMSCR_EL1.mask()
        | PMBSR_EL1.mask()
        | PMBPTR_EL1.mask()
        | PMBLIMITR_EL1.mask();

    /// PMU read-trap positions.
    pub const PMU: u64 = PMCEIDn_EL0.mask()
        | PMUSERENR_EL0.mask()
        | PMMIR_EL1.mask()
        | PMSELR_EL0.mask()
        | PMOVS.mask()
        | PMINTEN.mask()
        | PMCNTEN.mask()
        | PMCCNTR_EL0.mask()
        | PMCCFILTR_EL0.mask()
        | PMEVTYPERn_EL0.mask()
        | PMEVCNTRn_EL0.mask();

    /// The register value that traps exactly the positions in `traps`
    /// (polarity applied: positive bits set, negative bits cleared).
    pub const fn value_trapping(traps: u64) -> u64 {
        TRAP_NOTHING ^ traps
    }

    /// The trap positions that `value` enables (inverse of
    /// [`value_trapping`]).
    pub const fn traps(value: u64) -> u64 {
        value ^ TRAP_NOTHING
    }

    /// The read-trap bit for `reg`, or `None` if reads of `reg` are not
    /// controlled by this register.
    pub const fn trap_bit(reg: SysReg) -> Option<Field> {
        match reg {
            SysReg::PMBIDR_EL1 => Some(PMBIDR_EL1),
            SysReg::PMSNEVFR_EL1 => Some(nPMSNEVFR_EL1),
            SysReg::PMSLATFR_EL1 => Some(PMSLATFR_EL1),
            SysReg::PMSIRR_EL1 => Some(PMSIRR_EL1),
            SysReg::PMSIDR_EL1 => Some(PMSIDR_EL1),
            SysReg::PMSICR_EL1 => Some(PMSICR_EL1),
            SysReg::PMSFCR_EL1 => Some(PMSFCR_EL1),
            SysReg::PMSEVFR_EL1 => Some(PMSEVFR_EL1),
            SysReg::PMSCR_EL1 => Some(PMSCR_EL1),
            SysReg::PMBSR_EL1 => Some(PMBSR_EL1),
            SysReg::PMBPTR_EL1 => Some(PMBPTR_EL1),
            SysReg::PMBLIMITR_EL1 => Some(PMBLIMITR_EL1),
            SysReg::PMCEID0_EL0 | SysReg::PMCEID1_EL0 => Some(PMCEIDn_EL0),
            SysReg::PMUSERENR_EL0 => Some(PMUSERENR_EL0),
            SysReg::PMMIR_EL1 => Some(PMMIR_EL1),
            SysReg::PMSELR_EL0 => Some(PMSELR_EL0),
            SysReg::PMOVSSET_EL0 | SysReg::PMOVSCLR_EL0 => Some(PMOVS),
            SysReg::PMINTENSET_EL1 | SysReg::PMINTENCLR_EL1 => Some(PMINTEN),
            SysReg::PMCNTENSET_EL0 | SysReg::PMCNTENCLR_EL0 => Some(PMCNTEN),
            SysReg::PMCCNTR_EL0 => Some(PMCCNTR_EL0),
            SysReg::PMCCFILTR_EL0 => Some(PMCCFILTR_EL0),
            SysReg::PMEVTYPER_EL0(_) | SysReg::PMXEVTYPER_EL0 => Some(PMEVTYPERn_EL0),
            SysReg::PMEVCNTR_EL0(_) | SysReg::PMXEVCNTR_EL0 => Some(PMEVCNTRn_EL0),
            _ => None,
        }
    }

    /// True when `value` traps reads of `reg`.
    pub const fn traps_reg(value: u64, reg: SysReg) -> bool {
        match trap_bit(reg) {
            Some(f) => f.is_set(traps(value)),
            None => false,
        }
    }
}

/// HDFGWTR_EL2, Hypervisor Debug Fine-Grained Write Trap Register
/// (FEAT_FGT, Arm ARM D24.2). SPE and PMU write-trap bits; see the [module
/// docs](crate::hdfgwtr_el2) for polarity. Read-only registers (PMBIDR_EL1,
/// PMSIDR_EL1, PMCEIDn_EL0, PMMIR_EL1) have no write-trap bit; PMCR_EL0 and
/// PMSWINC_EL0 have one only here.
pub mod hdfgwtr_el2 {
    #![allow(non_upper_case_globals)]
    use crate::{Field, SysReg};

    /// `PMEVCNTRn_EL0`, bit 12: trap writes of `PMEVCNTR<n>_EL0` / PMXEVCNTR_EL0.
    pub const PMEVCNTRn_EL0: Field = Field::bit(12);
    /// `PMEVTYPERn_EL0`, bit 13: trap writes of `PMEVTYPER<n>_EL0` / PMXEVTYPER_EL0.
    pub const PMEVTYPERn_EL0: Field = Field::bit(13);
    /// `PMCCFILTR_EL0`, bit 14.
    pub const PMCCFILTR_EL0: Field = Field::bit(14);
    /// `PMCCNTR_EL0`, bit 15.
    pub const PMCCNTR_EL0: Field = Field::bit(15);
    /// `PMCNTEN`, bit 16: PMCNTENSET_EL0 and PMCNTENCLR_EL0.
    pub const PMCNTEN: Field = Field::bit(16);
    /// `PMINTEN`, bit 17: PMINTENSET_EL1 and PMINTENCLR_EL1.
    pub const PMINTEN: Field = Field::bit(17);
    /// `PMOVS`, bit 18: PMOVSSET_EL0 and PMOVSCLR_EL0.
    pub const PMOVS: Field = Field::bit(18);
    /// `PMSELR_EL0`, bit 19.
    pub const PMSELR_EL0: Field = Field::bit(19);
    /// `PMSWINC_EL0`, bit 20.
    pub const PMSWINC_EL0: Field = Field::bit(20);
    /// `PMCR_EL0`, bit 21.
    pub const PMCR_EL0: Field = Field::bit(21);
    /// `PMBLIMITR_EL1`, bit 23.
    pub const PMBLIMITR_EL1: Field = Field::bit(23);
    /// `PMBPTR_EL1`, bit 24.
    pub const PMBPTR_EL1: Field = Field::bit(24);
    /// `PMBSR_EL1`, bit 25.
    pub const PMBSR_EL1: Field = Field::bit(25);
    /// `PMSCR_EL1`, bit 26.
    pub const PMSCR_EL1: Field = Field::bit(26);
    /// `PMSEVFR_EL1`, bit 27.
    pub const PMSEVFR_EL1: Field = Field::bit(27);
    /// `PMSFCR_EL1`, bit 28.
    pub const PMSFCR_EL1: Field = Field::bit(28);
    /// `PMSICR_EL1`, bit 29.
    pub const PMSICR_EL1: Field = Field::bit(29);
    /// `PMSIRR_EL1`, bit 31.
    pub const PMSIRR_EL1: Field = Field::bit(31);
    /// `PMSLATFR_EL1`, bit 32.
    pub const PMSLATFR_EL1: Field = Field::bit(32);
    /// `PMUSERENR_EL0`, bit 57.
    pub const PMUSERENR_EL0: Field = Field::bit(57);
    /// `nBRBCTL`, bit 60 (FEAT_BRBE): **traps when 0**.
    pub const nBRBCTL: Field = Field::bit(60);
    /// `nBRBDATA`, bit 61 (FEAT_BRBE): **traps when 0**.
    pub const nBRBDATA: Field = Field::bit(61);
    /// `nPMSNEVFR_EL1`, bit 62 (FEAT_SPEv1p2): **traps when 0**.
    pub const nPMSNEVFR_EL1: Field = Field::bit(62);

    /// Bits with negative polarity (trap when 0) in this register.
    pub const NEGATIVE: u64 = nBRBCTL.mask() | nBRBDATA.mask() | nPMSNEVFR_EL1.mask();

    /// The value that traps nothing: every negative-polarity bit set, every
    /// other bit clear.
    pub const TRAP_NOTHING: u64 = NEGATIVE;

    /// SPE write-trap positions (including `nPMSNEVFR_EL1`'s position).
    pub const SPE: u64 = nPMSNEVFR_EL1.mask()
        | PMSLATFR_EL1.mask()
        | PMSIRR_EL1.mask()
        | PMSICR_EL1.mask()
        | PMSFCR_EL1.mask()
        | PMSEVFR_EL1.mask()
        | PMSCR_EL1.mask()
        | PMBSR_EL1.mask()
        | PMBPTR_EL1.mask()
        | PMBLIMITR_EL1.mask();

    /// PMU write-trap positions.
    pub const PMU: u64 = PMUSERENR_EL0.mask()
        | PMCR_EL0.mask()
        | PMSWINC_EL0.mask()
        | PMSELR_EL0.mask()
        | PMOVS.mask()
        | PMINTEN.mask()
        | PMCNTEN.mask()
        | PMCCNTR_EL0.mask()
        | PMCCFILTR_EL0.mask()
        | PMEVTYPERn_EL0.mask()
        | PMEVCNTRn_EL0.mask();

    /// The register value that traps exactly the positions in `traps`
    /// (polarity applied: positive bits set, negative bits cleared).
    pub const fn value_trapping(traps: u64) -> u64 {
        TRAP_NOTHING ^ traps
    }

    /// The trap positions that `value` enables (inverse of
    /// [`value_trapping`]).
    pub const fn traps(value: u64) -> u64 {
        value ^ TRAP_NOTHING
    }

    /// The write-trap bit for `reg`, or `None` if writes of `reg` are not
    /// controlled by this register.
    pub const fn trap_bit(reg: SysReg) -> Option<Field> {
        match reg {
            SysReg::PMSNEVFR_EL1 => Some(nPMSNEVFR_EL1),
            SysReg::PMSLATFR_EL1 => Some(PMSLATFR_EL1),
            SysReg::PMSIRR_EL1 => Some(PMSIRR_EL1),
            SysReg::PMSICR_EL1 => Some(PMSICR_EL1),
            SysReg::PMSFCR_EL1 => Some(PMSFCR_EL1),
            SysReg::PMSEVFR_EL1 => Some(PMSEVFR_EL1),
            SysReg::PMSCR_EL1 => Some(PMSCR_EL1),
            SysReg::PMBSR_EL1 => Some(PMBSR_EL1),
            SysReg::PMBPTR_EL1 => Some(PMBPTR_EL1),
            SysReg::PMBLIMITR_EL1 => Some(PMBLIMITR_EL1),
            SysReg::PMUSERENR_EL0 => Some(PMUSERENR_EL0),
            SysReg::PMCR_EL0 => Some(PMCR_EL0),
            SysReg::PMSWINC_EL0 => Some(PMSWINC_EL0),
            SysReg::PMSELR_EL0 => Some(PMSELR_EL0),
            SysReg::PMOVSSET_EL0 | SysReg::PMOVSCLR_EL0 => Some(PMOVS),
            SysReg::PMINTENSET_EL1 | SysReg::PMINTENCLR_EL1 => Some(PMINTEN),
            SysReg::PMCNTENSET_EL0 | SysReg::PMCNTENCLR_EL0 => Some(PMCNTEN),
            SysReg::PMCCNTR_EL0 => Some(PMCCNTR_EL0),
            SysReg::PMCCFILTR_EL0 => Some(PMCCFILTR_EL0),
            SysReg::PMEVTYPER_EL0(_) | SysReg::PMXEVTYPER_EL0 => Some(PMEVTYPERn_EL0),
            SysReg::PMEVCNTR_EL0(_) | SysReg::PMXEVCNTR_EL0 => Some(PMEVCNTRn_EL0),
            _ => None,
        }
    }

    /// True when `value` traps writes of `reg`.
    pub const fn traps_reg(value: u64, reg: SysReg) -> bool {
        match trap_bit(reg) {
            Some(f) => f.is_set(traps(value)),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{hdfgrtr_el2 as rd, hdfgwtr_el2 as wr};
    use crate::regs::testutil::assert_layout;
    use crate::{Field, SysReg};

    const RD_BITS: [Field; 26] = [
        rd::PMEVCNTRn_EL0,
        rd::PMEVTYPERn_EL0,
        rd::PMCCFILTR_EL0,
        rd::PMCCNTR_EL0,
        rd::PMCNTEN,
        rd::PMINTEN,
        rd::PMOVS,
        rd::PMSELR_EL0,
        rd::PMMIR_EL1,
        rd::PMBLIMITR_EL1,
        rd::PMBPTR_EL1,
        rd::PMBSR_EL1,
        rd::PMSCR_EL1,
        rd::PMSEVFR_EL1,
        rd::PMSFCR_EL1,
        rd::PMSICR_EL1,
        rd::PMSIDR_EL1,
        rd::PMSIRR_EL1,
        rd::PMSLATFR_EL1,
        rd::PMUSERENR_EL0,
        rd::PMCEIDn_EL0,
        rd::nBRBIDR,
        rd::nBRBCTL,
        rd::nBRBDATA,
        rd::nPMSNEVFR_EL1,
        rd::PMBIDR_EL1,
    ];

    #[test]
    fn read_bits_are_distinct_and_positions_match_facts() {
        assert_layout(&RD_BITS, 0, false);
        assert_eq!(rd::PMBIDR_EL1.lsb(), 63);
        assert_eq!(rd::nPMSNEVFR_EL1.lsb(), 62);
        assert_eq!(rd::PMCEIDn_EL0.lsb(), 58);
        assert_eq!(rd::PMSLATFR_EL1.lsb(), 32);
        assert_eq!(rd::PMBLIMITR_EL1.lsb(), 23);
        assert_eq!(rd::PMEVCNTRn_EL0.lsb(), 12);
        assert_eq!(rd::SPE & rd::PMU, 0);
        assert_eq!(rd::SPE.count_ones(), 12);
        assert_eq!(rd::PMU.count_ones(), 11);
    }

    #[test]
    fn write_bits_are_distinct() {
        assert_layout(
            &[
                wr::PMEVCNTRn_EL0,
                wr::PMEVTYPERn_EL0,
                wr::PMCCFILTR_EL0,
                wr::PMCCNTR_EL0,
                wr::PMCNTEN,
                wr::PMINTEN,
                wr::PMOVS,
                wr::PMSELR_EL0,
                wr::PMSWINC_EL0,
                wr::PMCR_EL0,
                wr::PMBLIMITR_EL1,
                wr::PMBPTR_EL1,
                wr::PMBSR_EL1,
                wr::PMSCR_EL1,
                wr::PMSEVFR_EL1,
                wr::PMSFCR_EL1,
                wr::PMSICR_EL1,
                wr::PMSIRR_EL1,
                wr::PMSLATFR_EL1,
                wr::PMUSERENR_EL0,
                wr::nBRBCTL,
                wr::nBRBDATA,
                wr::nPMSNEVFR_EL1,
            ],
            0,
            false,
        );
        assert_eq!(wr::PMCR_EL0.lsb(), 21);
        assert_eq!(wr::PMSWINC_EL0.lsb(), 20);
        assert_eq!(wr::SPE & wr::PMU, 0);
    }

    #[test]
    fn trap_nothing_sets_only_negative_bits() {
        assert_eq!(
            rd::TRAP_NOTHING,
            (1 << 62) | (1 << 61) | (1 << 60) | (1 << 59)
        );
        assert_eq!(wr::TRAP_NOTHING, (1 << 62) | (1 << 61) | (1 << 60));
        for r in SysReg::iter() {
            assert!(!rd::traps_reg(rd::TRAP_NOTHING, r), "{r}");
            assert!(!wr::traps_reg(wr::TRAP_NOTHING, r), "{r}");
        }
        // Zero is *not* "trap nothing": it traps PMSNEVFR_EL1.
        assert!(rd::traps_reg(0, SysReg::PMSNEVFR_EL1));
        assert!(wr::traps_reg(0, SysReg::PMSNEVFR_EL1));
    }

    #[test]
    fn value_trapping_applies_polarity() {
        let v = rd::value_trapping(rd::SPE);
        // Positive SPE bits set, nPMSNEVFR cleared, BRBE n-bits still set.
        assert!(rd::PMBLIMITR_EL1.is_set(v));
        assert!(!rd::nPMSNEVFR_EL1.is_set(v));
        assert!(rd::nBRBDATA.is_set(v));
        assert_eq!(rd::traps(v), rd::SPE);
        for r in SysReg::iter() {
            let expect = matches!(rd::trap_bit(r), Some(f) if f.mask() & rd::SPE != 0);
            assert_eq!(rd::traps_reg(v, r), expect, "{r}");
        }
        let w = wr::value_trapping(wr::PMU);
        assert!(wr::traps_reg(w, SysReg::PMCR_EL0));
        assert!(!wr::traps_reg(w, SysReg::PMSCR_EL1));
        assert!(!wr::traps_reg(w, SysReg::PMSNEVFR_EL1));
        assert_eq!(wr::traps(w), wr::PMU);
    }

    #[test]
    fn trap_bit_mapping_covers_groups() {
        // Every SPE/PMU position in each register is reached by some SysReg.
        let mut rd_seen = 0;
        let mut wr_seen = 0;
        for r in SysReg::iter() {
            if let Some(f) = rd::trap_bit(r) {
                rd_seen |= f.mask();
            }
            if let Some(f) = wr::trap_bit(r) {
                wr_seen |= f.mask();
            }
        }
        assert_eq!(rd_seen, rd::SPE | rd::PMU);
        assert_eq!(wr_seen, wr::SPE | wr::PMU);
        assert_eq!(rd::trap_bit(SysReg::PMCR_EL0), None);
        assert_eq!(wr::trap_bit(SysReg::PMBIDR_EL1), None);
        assert_eq!(rd::trap_bit(SysReg::PMSCR_EL2), None);
        assert_eq!(rd::trap_bit(SysReg::PMSCR_EL12), None);
        assert_eq!(
            rd::trap_bit(SysReg::pmevcntr_el0(7).unwrap()),
            Some(rd::PMEVCNTRn_EL0)
        );
    }
}
