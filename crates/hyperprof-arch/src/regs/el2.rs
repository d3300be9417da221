//! EL2 configuration and context registers (Arm ARM D24.2): MDCR_EL2,
//! HCR_EL2, CONTEXTIDR_EL1/EL2.

/// MDCR_EL2, Monitor Debug Configuration Register (EL2) (Arm ARM D24.3).
///
/// All field positions checked against Linux `arch/arm64/tools/sysreg`
/// (`Sysreg MDCR_EL2 3 4 1 1 1`), including the later EBWE and EnSTEPOP.
pub mod mdcr_el2 {
    #![allow(non_upper_case_globals)]
    use crate::Field;

    /// `HPMN`, bits \[4:0\]: event counters `0..HPMN` belong to EL0/EL1,
    /// `HPMN..N` to EL2. `HPMN == 0` needs FEAT_HPMN0.
    pub const HPMN: Field = Field::bits(4, 0);
    /// `TPMCR`, bit 5: trap PMCR_EL0 accesses to EL2.
    pub const TPMCR: Field = Field::bit(5);
    /// `TPM`, bit 6: trap PMU register accesses to EL2.
    pub const TPM: Field = Field::bit(6);
    /// `HPME`, bit 7: enable the EL2 counters `HPMN..N`.
    pub const HPME: Field = Field::bit(7);
    /// `TDE`, bit 8: route debug exceptions to EL2.
    pub const TDE: Field = Field::bit(8);
    /// `TDA`, bit 9: trap debug register accesses.
    pub const TDA: Field = Field::bit(9);
    /// `TDOSA`, bit 10: trap OS-related debug register accesses.
    pub const TDOSA: Field = Field::bit(10);
    /// `TDRA`, bit 11: trap debug ROM address register accesses.
    pub const TDRA: Field = Field::bit(11);
    /// `E2PB`, bits \[13:12\]: profiling buffer owner and EL1 buffer
    /// register trap ([`E2PB_EL2`], [`E2PB_EL1_TRAP`], [`E2PB_EL1`]).
    pub const E2PB: Field = Field::bits(13, 12);
    /// `TPMS`, bit 14: trap SPE sampling control register accesses.
    pub const TPMS: Field = Field::bit(14);
    /// `EnSPM`, bit 15: System PMU access enable.
    pub const EnSPM: Field = Field::bit(15);
    /// `HPMD`, bit 17: prohibit the EL1 counter range from counting at EL2
    /// (FEAT_PMUv3p1).
    pub const HPMD: Field = Field::bit(17);
    /// `TTRF`, bit 19: trap trace filter control.
    pub const TTRF: Field = Field::bit(19);
    /// `HCCD`, bit 23: prohibit the cycle counter from counting at EL2
    /// (FEAT_PMUv3p5).
    pub const HCCD: Field = Field::bit(23);
    /// `E2TB`, bits \[25:24\]: trace buffer owner.
    pub const E2TB: Field = Field::bits(25, 24);
    /// `HLP`, bit 26: EL2 counters overflow at 64 bits (FEAT_PMUv3p5).
    pub const HLP: Field = Field::bit(26);
    /// `TDCC`, bit 27: trap debug comms channel accesses.
    pub const TDCC: Field = Field::bit(27);
    /// `MTPME`, bit 28: multi-threaded PMU enable.
    pub const MTPME: Field = Field::bit(28);
    /// `HPMFZO`, bit 29: freeze EL2 counters on overflow.
    pub const HPMFZO: Field = Field::bit(29);
    /// `PMSSE`, bits \[31:30\]: PMU snapshot enable.
    pub const PMSSE: Field = Field::bits(31, 30);
    /// `HPMFZS`, bit 36: freeze EL2 counters on SPE buffer event.
    pub const HPMFZS: Field = Field::bit(36);
    /// `PMEE`, bits \[41:40\]: PMU exception enable.
    pub const PMEE: Field = Field::bits(41, 40);
    /// `EBWE`, bit 43: extended breakpoint/watchpoint enable.
    pub const EBWE: Field = Field::bit(43);
    /// `EnSTEPOP`, bit 50: step-operation enable.
    pub const EnSTEPOP: Field = Field::bit(50);
    /// RES0 bits: \[63:51\], \[49:44\], 42, \[39:37\], \[35:32\],
    /// \[22:20\], 18, 16.
    pub const RES0: u64 = Field::bits(63, 51).mask()
        | Field::bits(49, 44).mask()
        | Field::bit(42).mask()
        | Field::bits(39, 37).mask()
        | Field::bits(35, 32).mask()
        | Field::bits(22, 20).mask()
        | Field::bit(18).mask()
        | Field::bit(16).mask();

    /// `E2PB == 0b00`: the profiling buffer is owned by EL2; EL1 accesses to
    /// the buffer registers trap to EL2.
    pub const E2PB_EL2: u64 = 0b00;
    /// `E2PB == 0b10`: owned by EL1; EL1 accesses to the buffer registers
    /// trap to EL2.
    pub const E2PB_EL1_TRAP: u64 = 0b10;
    /// `E2PB == 0b11`: owned by EL1; EL1 accesses are not trapped.
    pub const E2PB_EL1: u64 = 0b11;

    /// True when `E2PB` makes EL1 accesses to the profiling buffer registers
    /// trap to EL2 (`E2PB == 'x0'` in the Arm ARM accessor pseudocode).
    pub const fn e2pb_traps_el1(mdcr: u64) -> bool {
        E2PB.get(mdcr) & 1 == 0
    }
}

/// HCR_EL2, Hypervisor Configuration Register (Arm ARM D24.2). Only the
/// fields hyperprof needs are modelled, so no `RES0` mask is given.
pub mod hcr_el2 {
    use crate::Field;

    /// `VM`, bit 0: stage 2 translation for EL1&0.
    pub const VM: Field = Field::bit(0);
    /// `FMO`, bit 3: physical FIQs go to EL2, virtual FIQs are enabled.
    pub const FMO: Field = Field::bit(3);
    /// `IMO`, bit 4: physical IRQs go to EL2, virtual IRQs are enabled.
    pub const IMO: Field = Field::bit(4);
    /// `VI`, bit 7: a virtual IRQ is pending (with IMO).
    pub const VI: Field = Field::bit(7);
    /// `TWI`, bit 13: WFI at EL0/EL1 traps to EL2.
    pub const TWI: Field = Field::bit(13);
    /// `TWE`, bit 14: WFE at EL0/EL1 traps to EL2.
    pub const TWE: Field = Field::bit(14);
    /// `TSC`, bit 19: SMC at EL1 traps to EL2.
    pub const TSC: Field = Field::bit(19);
    /// `TGE`, bit 27: trap general exceptions (EL0 runs in the EL2&0
    /// regime when set together with E2H).
    pub const TGE: Field = Field::bit(27);
    /// Trap ID group 3: EL1 reads of the ID registers (ID_AA64DFR0_EL1
    /// among them) trap to EL2, so a hypervisor can describe the VM.
    pub const TID3: Field = Field::bit(18);
    /// `E2H`, bit 34: EL2 host (VHE).
    pub const E2H: Field = Field::bit(34);
}

/// CONTEXTIDR_EL1, Context ID Register (EL1) (Arm ARM D24.2; layout checked
/// against Linux `tools/sysreg`, `SysregFields CONTEXTIDR_ELx`).
pub mod contextidr_el1 {
    use crate::Field;

    /// `PROCID`, bits \[31:0\]: process identifier.
    pub const PROCID: Field = Field::bits(31, 0);
    /// RES0 bits: \[63:32\].
    pub const RES0: u64 = Field::bits(63, 32).mask();
}

/// CONTEXTIDR_EL2, Context ID Register (EL2). Same layout as
/// [`contextidr_el1`](crate::contextidr_el1).
pub mod contextidr_el2 {
    pub use super::contextidr_el1::*;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::regs::testutil::assert_layout;

    #[test]
    fn mdcr_layout() {
        use mdcr_el2 as r;
        assert_layout(
            &[
                r::HPMN,
                r::TPMCR,
                r::TPM,
                r::HPME,
                r::TDE,
                r::TDA,
                r::TDOSA,
                r::TDRA,
                r::E2PB,
                r::TPMS,
                r::EnSPM,
                r::HPMD,
                r::TTRF,
                r::HCCD,
                r::E2TB,
                r::HLP,
                r::TDCC,
                r::MTPME,
                r::HPMFZO,
                r::PMSSE,
                r::HPMFZS,
                r::PMEE,
                r::EBWE,
                r::EnSTEPOP,
            ],
            r::RES0,
            true,
        );
        assert_eq!(r::E2PB.mask(), 0x3000);
        assert_eq!(r::HPMN.value(6) | r::HPME.mask(), 0x86);
    }

    #[test]
    fn e2pb_trap_polarity() {
        use mdcr_el2 as r;
        assert!(r::e2pb_traps_el1(r::E2PB.value(r::E2PB_EL2)));
        assert!(r::e2pb_traps_el1(r::E2PB.value(r::E2PB_EL1_TRAP)));
        assert!(!r::e2pb_traps_el1(r::E2PB.value(r::E2PB_EL1)));
    }

    #[test]
    fn hcr_and_contextidr() {
        assert_eq!(hcr_el2::TGE.mask(), 1 << 27);
        assert_eq!(hcr_el2::E2H.mask(), 1 << 34);
        assert_layout(&[contextidr_el1::PROCID], contextidr_el1::RES0, true);
        assert_eq!(contextidr_el2::PROCID, contextidr_el1::PROCID);
    }
}
