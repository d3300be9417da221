//! The GICv3 CPU interface and its virtualization registers (GICv3 and
//! GICv4 architecture specification, IHI 0069, chapter 12): the fields a
//! hypervisor programs (ICH_*_EL2) and the ones a guest sees through the
//! ICC_* names (the ICV_* registers when HCR_EL2.IMO/FMO are set).
//!
//! Field positions checked against Linux `arch/arm64/include/asm/sysreg.h`
//! (`ICH_LR_*`, `ICH_HCR_*`, `ICH_VMCR_*`, `ICH_VTR_*`, `ICH_MISR_*`,
//! `ICC_CTLR_EL1_*`, `ICC_SGI1R_*`, `ICC_SRE_EL1_*`).
#![allow(non_upper_case_globals)]

/// `ICH_LR<n>_EL2`, List Register n (IHI 0069 12.5.12).
pub mod ich_lr_el2 {
    use crate::Field;

    /// `vINTID`, bits \[31:0\]: the virtual INTID.
    pub const vINTID: Field = Field::bits(31, 0);
    /// `pINTID`, bits \[44:32\]: the physical INTID when HW = 1.
    pub const pINTID: Field = Field::bits(44, 32);
    /// `EOI`, bit 41 (HW = 0): a maintenance interrupt is asserted when the
    /// interrupt is deactivated (ICH_EISR_EL2 shows the LR).
    pub const EOI: Field = Field::bit(41);
    /// `Priority`, bits \[55:48\].
    pub const Priority: Field = Field::bits(55, 48);
    /// `Group`, bit 60: 1 for Group 1.
    pub const Group: Field = Field::bit(60);
    /// `HW`, bit 61: the virtual interrupt is tied to a physical one.
    pub const HW: Field = Field::bit(61);
    /// `State`, bits \[63:62\]: [`INVALID`], [`PENDING`], [`ACTIVE`],
    /// [`PENDING_ACTIVE`].
    pub const State: Field = Field::bits(63, 62);
    /// State: no interrupt.
    pub const INVALID: u64 = 0b00;
    /// State: pending.
    pub const PENDING: u64 = 0b01;
    /// State: active.
    pub const ACTIVE: u64 = 0b10;
    /// State: active and pending.
    pub const PENDING_ACTIVE: u64 = 0b11;
    /// RES0 bits: \[59:56\], \[47:45\].
    pub const RES0: u64 = Field::bits(59, 56).mask() | Field::bits(47, 45).mask();
}

/// ICH_HCR_EL2, Interrupt Controller Hyp Control Register (IHI 0069 12.5.6).
pub mod ich_hcr_el2 {
    use crate::Field;

    /// `En`, bit 0: the virtual CPU interface is enabled.
    pub const En: Field = Field::bit(0);
    /// `UIE`, bit 1: underflow interrupt enable (at most one valid LR).
    pub const UIE: Field = Field::bit(1);
    /// `LRENPIE`, bit 2: a maintenance interrupt while EOIcount is non-zero.
    pub const LRENPIE: Field = Field::bit(2);
    /// `NPIE`, bit 3: a maintenance interrupt while no LR is pending.
    pub const NPIE: Field = Field::bit(3);
    /// `VGrp0EIE`, bit 4: while virtual Group 0 is enabled.
    pub const VGrp0EIE: Field = Field::bit(4);
    /// `VGrp0DIE`, bit 5: while virtual Group 0 is disabled.
    pub const VGrp0DIE: Field = Field::bit(5);
    /// `VGrp1EIE`, bit 6: while virtual Group 1 is enabled.
    pub const VGrp1EIE: Field = Field::bit(6);
    /// `VGrp1DIE`, bit 7: while virtual Group 1 is disabled.
    pub const VGrp1DIE: Field = Field::bit(7);
    /// `TC`, bit 10: trap the common EL1 registers (SGIs, DIR).
    pub const TC: Field = Field::bit(10);
    /// `TALL0`, bit 11: trap the EL1 Group 0 registers.
    pub const TALL0: Field = Field::bit(11);
    /// `TALL1`, bit 12: trap the EL1 Group 1 registers.
    pub const TALL1: Field = Field::bit(12);
    /// `TDIR`, bit 14: trap EL1 writes of ICC_DIR_EL1 / ICV_DIR_EL1.
    pub const TDIR: Field = Field::bit(14);
    /// `EOIcount`, bits \[31:27\]: EOIs of interrupts not in any LR.
    pub const EOIcount: Field = Field::bits(31, 27);
}

/// ICH_VMCR_EL2, Interrupt Controller Virtual Machine Control Register
/// (IHI 0069 12.5.14): the guest's ICV_CTLR/PMR/BPR/IGRPEN state.
pub mod ich_vmcr_el2 {
    use crate::Field;

    /// `VENG0`, bit 0: ICV_IGRPEN0_EL1.Enable.
    pub const VENG0: Field = Field::bit(0);
    /// `VENG1`, bit 1: ICV_IGRPEN1_EL1.Enable.
    pub const VENG1: Field = Field::bit(1);
    /// `VAckCtl`, bit 2 (RES0 with system register access).
    pub const VAckCtl: Field = Field::bit(2);
    /// `VFIQEn`, bit 3 (RES1 with system register access).
    pub const VFIQEn: Field = Field::bit(3);
    /// `VCBPR`, bit 4: ICV_CTLR_EL1.CBPR.
    pub const VCBPR: Field = Field::bit(4);
    /// `VEOIM`, bit 9: ICV_CTLR_EL1.EOImode.
    pub const VEOIM: Field = Field::bit(9);
    /// `VBPR1`, bits \[20:18\]: ICV_BPR1_EL1.
    pub const VBPR1: Field = Field::bits(20, 18);
    /// `VBPR0`, bits \[23:21\]: ICV_BPR0_EL1.
    pub const VBPR0: Field = Field::bits(23, 21);
    /// `VPMR`, bits \[31:24\]: ICV_PMR_EL1.
    pub const VPMR: Field = Field::bits(31, 24);
}

/// ICH_VTR_EL2, Interrupt Controller VGIC Type Register (IHI 0069 12.5.13).
pub mod ich_vtr_el2 {
    use crate::Field;

    /// `ListRegs`, bits \[4:0\]: the number of list registers minus one.
    pub const ListRegs: Field = Field::bits(4, 0);
    /// `TDS`, bit 19: ICH_HCR_EL2.TDIR is supported.
    pub const TDS: Field = Field::bit(19);
    /// `nV4`, bit 20: no direct injection of virtual LPIs.
    pub const nV4: Field = Field::bit(20);
    /// `A3V`, bit 21: non-zero Aff3 is supported.
    pub const A3V: Field = Field::bit(21);
    /// `SEIS`, bit 22: SEIs are supported.
    pub const SEIS: Field = Field::bit(22);
    /// `IDbits`, bits \[25:23\]: 0b000 for 16-bit virtual INTIDs.
    pub const IDbits: Field = Field::bits(25, 23);
    /// `PREbits`, bits \[28:26\]: virtual preemption bits minus one.
    pub const PREbits: Field = Field::bits(28, 26);
    /// `PRIbits`, bits \[31:29\]: virtual priority bits minus one.
    pub const PRIbits: Field = Field::bits(31, 29);
}

/// ICH_MISR_EL2, Interrupt Controller Maintenance Interrupt State Register
/// (IHI 0069 12.5.9): why the maintenance interrupt is asserted.
pub mod ich_misr_el2 {
    use crate::Field;

    /// `EOI`, bit 0: some LR has EOI set and was deactivated (ICH_EISR_EL2).
    pub const EOI: Field = Field::bit(0);
    /// `U`, bit 1: underflow (UIE and at most one valid LR).
    pub const U: Field = Field::bit(1);
    /// `LRENP`, bit 2: LRENPIE and EOIcount non-zero.
    pub const LRENP: Field = Field::bit(2);
    /// `NP`, bit 3: NPIE and no LR in the pending state.
    pub const NP: Field = Field::bit(3);
    /// `VGrp0E`, bit 4.
    pub const VGrp0E: Field = Field::bit(4);
    /// `VGrp0D`, bit 5.
    pub const VGrp0D: Field = Field::bit(5);
    /// `VGrp1E`, bit 6.
    pub const VGrp1E: Field = Field::bit(6);
    /// `VGrp1D`, bit 7.
    pub const VGrp1D: Field = Field::bit(7);
}

/// ICC_CTLR_EL1 (and ICV_CTLR_EL1), Interrupt Controller Control Register
/// (IHI 0069 12.2.6).
pub mod icc_ctlr_el1 {
    use crate::Field;

    /// `CBPR`, bit 0: ICC_BPR0_EL1 also controls Group 1 preemption.
    pub const CBPR: Field = Field::bit(0);
    /// `EOImode`, bit 1: EOIR drops priority only; DIR deactivates.
    pub const EOImode: Field = Field::bit(1);
    /// `PRIbits`, bits \[10:8\]: priority bits minus one (read-only).
    pub const PRIbits: Field = Field::bits(10, 8);
    /// `IDbits`, bits \[13:11\]: 0b000 for 16-bit INTIDs (read-only).
    pub const IDbits: Field = Field::bits(13, 11);
    /// `SEIS`, bit 14 (read-only).
    pub const SEIS: Field = Field::bit(14);
    /// `A3V`, bit 15 (read-only).
    pub const A3V: Field = Field::bit(15);
}

/// ICC_SGI1R_EL1, Interrupt Controller Software Generated Interrupt Group 1
/// Register (IHI 0069 12.2.22).
pub mod icc_sgi1r_el1 {
    use crate::Field;

    /// `TargetList`, bits \[15:0\]: bit n targets the PE with Aff0 = n (in
    /// the cluster Aff3.Aff2.Aff1).
    pub const TargetList: Field = Field::bits(15, 0);
    /// `Aff1`, bits \[23:16\].
    pub const Aff1: Field = Field::bits(23, 16);
    /// `INTID`, bits \[27:24\]: the SGI.
    pub const INTID: Field = Field::bits(27, 24);
    /// `Aff2`, bits \[39:32\].
    pub const Aff2: Field = Field::bits(39, 32);
    /// `IRM`, bit 40: every PE but the sender.
    pub const IRM: Field = Field::bit(40);
    /// `RS`, bits \[47:44\]: TargetList covers Aff0 `16 * RS ..`.
    pub const RS: Field = Field::bits(47, 44);
    /// `Aff3`, bits \[55:48\].
    pub const Aff3: Field = Field::bits(55, 48);
}

/// ICC_SRE_EL1 / ICC_SRE_EL2, System Register Enable (IHI 0069 12.2.23).
pub mod icc_sre {
    use crate::Field;

    /// `SRE`, bit 0: system register interface enabled.
    pub const SRE: Field = Field::bit(0);
    /// `DFB`, bit 1: FIQ bypass disabled.
    pub const DFB: Field = Field::bit(1);
    /// `DIB`, bit 2: IRQ bypass disabled.
    pub const DIB: Field = Field::bit(2);
    /// `Enable`, bit 3 (ICC_SRE_EL2 only): EL1 may access ICC_SRE_EL1.
    pub const Enable: Field = Field::bit(3);
}

/// The INTIDs the GICv3 architecture reserves (IHI 0069 2.2.1).
pub mod intid {
    /// No pending interrupt (an acknowledge read of nothing).
    pub const SPURIOUS: u32 = 1023;
    /// SGIs are INTIDs `0..16`.
    pub const SGI_END: u32 = 16;
    /// PPIs are INTIDs `16..32`.
    pub const PPI_END: u32 = 32;
    /// SPIs are INTIDs `32..1020`.
    pub const SPI_END: u32 = 1020;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::regs::testutil::assert_layout;

    #[test]
    fn list_register_fields_are_disjoint() {
        assert_layout(
            &[
                ich_lr_el2::vINTID,
                // pINTID shares bit 41 with EOI (which it is when HW = 0).
                crate::Field::bits(40, 32),
                ich_lr_el2::EOI,
                crate::Field::bits(44, 42),
                ich_lr_el2::Priority,
                ich_lr_el2::Group,
                ich_lr_el2::HW,
                ich_lr_el2::State,
            ],
            ich_lr_el2::RES0,
            true,
        );
    }

    #[test]
    fn vmcr_and_hcr_fields() {
        assert_layout(
            &[
                ich_vmcr_el2::VENG0,
                ich_vmcr_el2::VENG1,
                ich_vmcr_el2::VAckCtl,
                ich_vmcr_el2::VFIQEn,
                ich_vmcr_el2::VCBPR,
                ich_vmcr_el2::VEOIM,
                ich_vmcr_el2::VBPR1,
                ich_vmcr_el2::VBPR0,
                ich_vmcr_el2::VPMR,
            ],
            0,
            false,
        );
        assert_eq!(ich_vmcr_el2::VPMR.mask(), 0xFF00_0000);
        assert_eq!(ich_hcr_el2::EOIcount.mask(), 0xF800_0000);
        assert_eq!(ich_lr_el2::State.mask(), 0xC000_0000_0000_0000);
        assert_eq!(icc_sgi1r_el1::IRM.mask(), 1 << 40);
    }
}
