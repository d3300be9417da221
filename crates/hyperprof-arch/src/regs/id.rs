//! Identification registers (Arm ARM D24.2).

/// ID_AA64DFR0_EL1, AArch64 Debug Feature Register 0 (Arm ARM D24.2). Only
/// the PMU/SPE fields are modelled (positions checked against Linux
/// `tools/sysreg`), so no `RES0` mask is given. Decoded values are in
/// [`features`](crate::features).
pub mod id_aa64dfr0_el1 {
    #![allow(non_upper_case_globals)]
    use crate::Field;

    /// `PMUVer`, bits \[11:8\]: PMU version
    /// ([`PmuVer`](crate::features::PmuVer)).
    pub const PMUVer: Field = Field::bits(11, 8);
    /// `PMSVer`, bits \[35:32\]: Statistical Profiling Extension version
    /// ([`PmsVer`](crate::features::PmsVer)).
    pub const PMSVer: Field = Field::bits(35, 32);
    /// `HPMN0`, bits \[63:60\]: 0b0001 when `MDCR_EL2.HPMN == 0` is defined
    /// (FEAT_HPMN0); 0b0000 when it is CONSTRAINED UNPREDICTABLE.
    pub const HPMN0: Field = Field::bits(63, 60);

    /// `HPMN0 == 0b0001`: FEAT_HPMN0 implemented.
    pub const HPMN0_DEF: u64 = 0b0001;

    /// True when the register advertises FEAT_HPMN0.
    pub const fn has_hpmn0(dfr0: u64) -> bool {
        HPMN0.get(dfr0) >= HPMN0_DEF
    }
}

#[cfg(test)]
mod tests {
    use super::id_aa64dfr0_el1 as r;
    use crate::regs::testutil::assert_layout;

    #[test]
    fn dfr0_fields() {
        assert_layout(&[r::PMUVer, r::PMSVer, r::HPMN0], 0, false);
        assert_eq!(r::PMUVer.mask(), 0xF00);
        assert_eq!(r::PMSVer.mask(), 0xF_0000_0000);
        assert!(r::has_hpmn0(1 << 60));
        assert!(!r::has_hpmn0(0x0FFF_FFFF_FFFF_FFFF));
    }
}
