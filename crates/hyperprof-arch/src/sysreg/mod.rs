//! The system registers hyperprof models, with their encodings and Arm names.
//!
//! Encodings follow the Arm ARM (DDI0487, chapter D24 "AArch64 System
//! Register Descriptions"; DDI0601 register XML).
//!
//! Verification (done while writing this crate, against Linux
//! `arch/arm64/tools/sysreg` and `arch/arm64/include/asm/sysreg.h`, which
//! are generated from / checked against the Arm register XML):
//! - SPE: PMSCR_EL1, PMSNEVFR_EL1, PMSICR_EL1, PMSIRR_EL1, PMSFCR_EL1,
//!   PMSEVFR_EL1, PMSLATFR_EL1, PMSIDR_EL1, PMBLIMITR_EL1, PMBPTR_EL1,
//!   PMBSR_EL1, PMSDSFR_EL1, PMBIDR_EL1, PMSCR_EL2 (tools/sysreg);
//!   PMSCR_EL12 `sys_reg(3, 5, 9, 9, 0)` (sysreg.h).
//! - PMUv3: PMCR_EL0 .. PMOVSSET_EL0, PMINTENSET/CLR_EL1, PMMIR_EL1,
//!   PMCCFILTR_EL0 and the `PMEVCNTRn`/`PMEVTYPERn` CRm/op2 formulae
//!   (`CRm = 0b10:n[4:3]` / `0b11:n[4:3]`, `op2 = n[2:0]`) (sysreg.h).
//! - EL2 and others: HCR_EL2, MDCR_EL2, HDFGRTR_EL2, HDFGWTR_EL2,
//!   CONTEXTIDR_EL2, CNTVOFF_EL2, CNTPCT_EL0, CNTVCT_EL0 (sysreg.h);
//! - Generic Timer: CNTFRQ_EL0, CNTHCTL_EL2, CNTV_TVAL/CTL/CVAL_EL0,
//!   CNTP_TVAL/CTL/CVAL_EL0 and the VHE aliases CNTV_CTL_EL02 and
//!   CNTV_CVAL_EL02 (sysreg.h `SYS_CNT*`);
//!   ID_AA64DFR0_EL1, CONTEXTIDR_EL1 (tools/sysreg).
//! - Translation: TTBR0_EL1, TTBR0_EL2, VTTBR_EL2 (tools/sysreg); the VHE
//!   aliases TTBR0_EL12 and CONTEXTIDR_EL12 (sysreg.h `SYS_TTBR0_EL12`,
//!   `SYS_CONTEXTIDR_EL12`).
//! - GICv3 CPU interface: the ICC_*_EL1, ICC_SRE_EL2 and ICH_*_EL2
//!   registers, `ICH_LR<n>_EL2` at `3, 4, 12, 0b110:n[3], n[2:0]`
//!   (sysreg.h `SYS_ICC_*`, `SYS_ICH_*`, `__SYS__LR0_EL2`/`__SYS__LR8_EL2`;
//!   GICv3 architecture specification IHI 0069, chapter 12).
//!
//! Every encoding listed in this module was checked; none is unverified.

mod counter;
mod encoding;

pub use counter::EventCounter;
pub use encoding::Encoding;

use core::fmt;

macro_rules! sysregs {
    (
        $(
            $(#[$doc:meta])*
            $name:ident = ($op0:literal, $op1:literal, $crn:literal, $crm:literal, $op2:literal);
        )*
    ) => {
        /// An AArch64 system register modelled by hyperprof (Arm ARM D24).
        ///
        /// Variant names are the Arm names. The event counter families
        /// `PMEVCNTR<n>_EL0` and `PMEVTYPER<n>_EL0` carry their index as an
        /// [`EventCounter`] (0..=30), so every value is a real register.
        #[allow(non_camel_case_types)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum SysReg {
            $(
                $(#[$doc])*
                $name,
            )*
            /// `PMEVCNTR<n>_EL0`, Performance Monitors Event Count Register n
            /// (`3, 3, 14, 0b10:n[4:3], n[2:0]`).
            PMEVCNTR_EL0(EventCounter),
            /// `PMEVTYPER<n>_EL0`, Performance Monitors Event Type Register n
            /// (`3, 3, 14, 0b11:n[4:3], n[2:0]`).
            PMEVTYPER_EL0(EventCounter),
        }

        /// Registers without an index, in declaration order.
        const FIXED: &[SysReg] = &[$(SysReg::$name,)*];

        /// The part of the profiling architecture a register belongs to, which
/// decides how it is trapped (MDCR_EL2.TPMS for the SPE sampling controls,
/// MDCR_EL2.E2PB for the buffer, only fine-grained traps for the ID
/// registers) and what a hypervisor switches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unit {
    /// SPE sampling controls: PMSCR_EL1 (and its EL12 alias), PMSNEVFR,
    /// PMSICR, PMSIRR, PMSFCR, PMSEVFR, PMSLATFR, PMSDSFR.
    SpeSampling,
    /// SPE buffer controls: PMBLIMITR, PMBPTR, PMBSR.
    SpeBuffer,
    /// SPE identification: PMSIDR_EL1, PMBIDR_EL1.
    SpeId,
    /// PMSCR_EL2, the EL2 sampling control.
    SpeEl2,
    /// The PMUv3 registers.
    Pmu,
    /// Anything else.
    Other,
}

impl SysReg {
    /// The unit this register belongs to.
    pub const fn unit(self) -> Unit {
        match self {
            SysReg::PMSCR_EL1
            | SysReg::PMSCR_EL12
            | SysReg::PMSNEVFR_EL1
            | SysReg::PMSICR_EL1
            | SysReg::PMSIRR_EL1
            | SysReg::PMSFCR_EL1
            | SysReg::PMSEVFR_EL1
            | SysReg::PMSLATFR_EL1
            | SysReg::PMSDSFR_EL1 => Unit::SpeSampling,
            SysReg::PMBLIMITR_EL1 | SysReg::PMBPTR_EL1 | SysReg::PMBSR_EL1 => Unit::SpeBuffer,
            SysReg::PMSIDR_EL1 | SysReg::PMBIDR_EL1 => Unit::SpeId,
            SysReg::PMSCR_EL2 => Unit::SpeEl2,
            SysReg::PMCR_EL0
            | SysReg::PMCNTENSET_EL0
            | SysReg::PMCNTENCLR_EL0
            | SysReg::PMOVSCLR_EL0
            | SysReg::PMSWINC_EL0
            | SysReg::PMSELR_EL0
            | SysReg::PMCEID0_EL0
            | SysReg::PMCEID1_EL0
            | SysReg::PMCCNTR_EL0
            | SysReg::PMXEVTYPER_EL0
            | SysReg::PMXEVCNTR_EL0
            | SysReg::PMUSERENR_EL0
            | SysReg::PMINTENSET_EL1
            | SysReg::PMINTENCLR_EL1
            | SysReg::PMOVSSET_EL0
            | SysReg::PMMIR_EL1
            | SysReg::PMCCFILTR_EL0
            | SysReg::PMEVCNTR_EL0(_)
            | SysReg::PMEVTYPER_EL0(_) => Unit::Pmu,
            _ => Unit::Other,
        }
    }

    /// An EL1-visible SPE register (sampling, buffer or ID).
    pub const fn is_spe_el1(self) -> bool {
        matches!(self.unit(), Unit::SpeSampling | Unit::SpeBuffer | Unit::SpeId)
    }

            const fn fixed_encoding(self) -> Option<Encoding> {
                match self {
                    $(SysReg::$name => Some(Encoding::new($op0, $op1, $crn, $crm, $op2)),)*
                    SysReg::PMEVCNTR_EL0(_) | SysReg::PMEVTYPER_EL0(_) => None,
                }
            }

            const fn fixed_name(self) -> Option<&'static str> {
                match self {
                    $(SysReg::$name => Some(stringify!($name)),)*
                    SysReg::PMEVCNTR_EL0(_) | SysReg::PMEVTYPER_EL0(_) => None,
                }
            }

            const fn fixed_from_encoding(e: Encoding) -> Option<SysReg> {
                match (e.op0(), e.op1(), e.crn(), e.crm(), e.op2()) {
                    $(($op0, $op1, $crn, $crm, $op2) => Some(SysReg::$name),)*
                    _ => None,
                }
            }
        }
    };
}

sysregs! {
    // ---- Statistical Profiling Extension (Arm ARM D24.6 / ARM-FACTS §1) ----
    /// Statistical Profiling Control Register (EL1).
    PMSCR_EL1 = (3, 0, 9, 9, 0);
    /// PMSCR_EL1 accessed from EL2 when `HCR_EL2.E2H == 1` (VHE alias).
    PMSCR_EL12 = (3, 5, 9, 9, 0);
    /// Statistical Profiling Control Register (EL2).
    PMSCR_EL2 = (3, 4, 9, 9, 0);
    /// Sampling Inverted Event Filter Register (FEAT_SPEv1p2).
    PMSNEVFR_EL1 = (3, 0, 9, 9, 1);
    /// Sampling Interval Counter Register.
    PMSICR_EL1 = (3, 0, 9, 9, 2);
    /// Sampling Interval Reload Register.
    PMSIRR_EL1 = (3, 0, 9, 9, 3);
    /// Sampling Filter Control Register.
    PMSFCR_EL1 = (3, 0, 9, 9, 4);
    /// Sampling Event Filter Register.
    PMSEVFR_EL1 = (3, 0, 9, 9, 5);
    /// Sampling Latency Filter Register.
    PMSLATFR_EL1 = (3, 0, 9, 9, 6);
    /// Sampling Profiling ID Register (read-only).
    PMSIDR_EL1 = (3, 0, 9, 9, 7);
    /// Profiling Buffer Limit Address Register.
    PMBLIMITR_EL1 = (3, 0, 9, 10, 0);
    /// Profiling Buffer Write Pointer Register.
    PMBPTR_EL1 = (3, 0, 9, 10, 1);
    /// Profiling Buffer Status/syndrome Register.
    PMBSR_EL1 = (3, 0, 9, 10, 3);
    /// Sampling Data Source Filter Register (FEAT_SPE_FDS).
    PMSDSFR_EL1 = (3, 0, 9, 10, 4);
    /// Profiling Buffer ID Register (read-only).
    PMBIDR_EL1 = (3, 0, 9, 10, 7);

    // ---- PMUv3 (Arm ARM D24.5 / ARM-FACTS §4) ----
    /// Performance Monitors Control Register.
    PMCR_EL0 = (3, 3, 9, 12, 0);
    /// Performance Monitors Count Enable Set register.
    PMCNTENSET_EL0 = (3, 3, 9, 12, 1);
    /// Performance Monitors Count Enable Clear register.
    PMCNTENCLR_EL0 = (3, 3, 9, 12, 2);
    /// Performance Monitors Overflow Flag Status Clear Register.
    PMOVSCLR_EL0 = (3, 3, 9, 12, 3);
    /// Performance Monitors Software Increment register (write-only).
    PMSWINC_EL0 = (3, 3, 9, 12, 4);
    /// Performance Monitors Event Counter Selection Register.
    PMSELR_EL0 = (3, 3, 9, 12, 5);
    /// Performance Monitors Common Event Identification register 0.
    PMCEID0_EL0 = (3, 3, 9, 12, 6);
    /// Performance Monitors Common Event Identification register 1.
    PMCEID1_EL0 = (3, 3, 9, 12, 7);
    /// Performance Monitors Cycle Count Register.
    PMCCNTR_EL0 = (3, 3, 9, 13, 0);
    /// Performance Monitors Selected Event Type Register.
    PMXEVTYPER_EL0 = (3, 3, 9, 13, 1);
    /// Performance Monitors Selected Event Count Register.
    PMXEVCNTR_EL0 = (3, 3, 9, 13, 2);
    /// Performance Monitors User Enable Register.
    PMUSERENR_EL0 = (3, 3, 9, 14, 0);
    /// Performance Monitors Interrupt Enable Set register.
    PMINTENSET_EL1 = (3, 0, 9, 14, 1);
    /// Performance Monitors Interrupt Enable Clear register.
    PMINTENCLR_EL1 = (3, 0, 9, 14, 2);
    /// Performance Monitors Overflow Flag Status Set register.
    PMOVSSET_EL0 = (3, 3, 9, 14, 3);
    /// Performance Monitors Machine Identification Register.
    PMMIR_EL1 = (3, 0, 9, 14, 6);
    /// Performance Monitors Cycle Count Filter Register.
    PMCCFILTR_EL0 = (3, 3, 14, 15, 7);

    // ---- EL2 controls, identification, context and timers ----
    /// Hypervisor Configuration Register.
    HCR_EL2 = (3, 4, 1, 1, 0);
    /// Monitor Debug Configuration Register (EL2).
    MDCR_EL2 = (3, 4, 1, 1, 1);
    /// Hypervisor Debug Fine-Grained Read Trap Register (FEAT_FGT).
    HDFGRTR_EL2 = (3, 4, 3, 1, 4);
    /// Hypervisor Debug Fine-Grained Write Trap Register (FEAT_FGT).
    HDFGWTR_EL2 = (3, 4, 3, 1, 5);
    /// AArch64 Debug Feature Register 0.
    ID_AA64DFR0_EL1 = (3, 0, 0, 5, 0);
    /// Context ID Register (EL1).
    CONTEXTIDR_EL1 = (3, 0, 13, 0, 1);
    /// Context ID Register (EL2).
    CONTEXTIDR_EL2 = (3, 4, 13, 0, 1);
    /// Counter-timer Physical Count register.
    CNTPCT_EL0 = (3, 3, 14, 0, 1);
    /// Counter-timer Virtual Count register.
    CNTVCT_EL0 = (3, 3, 14, 0, 2);
    /// Counter-timer Virtual Offset register.
    CNTVOFF_EL2 = (3, 4, 14, 0, 3);
    /// Counter-timer Frequency register (read-only below the highest EL).
    CNTFRQ_EL0 = (3, 3, 14, 0, 0);
    /// Counter-timer Hypervisor Control register.
    CNTHCTL_EL2 = (3, 4, 14, 1, 0);
    /// Counter-timer Virtual Timer TimerValue register (EL1 virtual timer).
    CNTV_TVAL_EL0 = (3, 3, 14, 3, 0);
    /// Counter-timer Virtual Timer Control register.
    CNTV_CTL_EL0 = (3, 3, 14, 3, 1);
    /// Counter-timer Virtual Timer CompareValue register.
    CNTV_CVAL_EL0 = (3, 3, 14, 3, 2);
    /// CNTV_CTL_EL0 of the EL1 virtual timer reached from EL2 with
    /// `HCR_EL2.E2H == 1` (FEAT_VHE).
    CNTV_CTL_EL02 = (3, 5, 14, 3, 1);
    /// CNTV_CVAL_EL0 of the EL1 virtual timer reached from EL2 with
    /// `HCR_EL2.E2H == 1` (FEAT_VHE).
    CNTV_CVAL_EL02 = (3, 5, 14, 3, 2);
    /// Counter-timer Physical Timer TimerValue register (EL1 physical timer).
    CNTP_TVAL_EL0 = (3, 3, 14, 2, 0);
    /// Counter-timer Physical Timer Control register.
    CNTP_CTL_EL0 = (3, 3, 14, 2, 1);
    /// Counter-timer Physical Timer CompareValue register.
    CNTP_CVAL_EL0 = (3, 3, 14, 2, 2);

    // ---- Translation table bases (the regimes the profiling buffer is written through) ----
    /// Translation Table Base Register 0 (EL1): the EL1&0 stage-1 tables.
    TTBR0_EL1 = (3, 0, 2, 0, 0);
    /// Translation Table Base Register 0 (EL2): the EL2 (or EL2&0) stage-1 tables.
    TTBR0_EL2 = (3, 4, 2, 0, 0);
    /// Virtualization Translation Table Base Register: the stage-2 tables.
    VTTBR_EL2 = (3, 4, 2, 1, 0);
    /// TTBR0_EL1 as reached from EL2 with HCR_EL2.E2H = 1 (FEAT_VHE).
    TTBR0_EL12 = (3, 5, 2, 0, 0);
    /// CONTEXTIDR_EL1 as reached from EL2 with HCR_EL2.E2H = 1 (FEAT_VHE).
    CONTEXTIDR_EL12 = (3, 5, 13, 0, 1);

    // ---- GICv3 CPU interface (IHI 0069, chapter 12) ----
    /// Interrupt Controller Interrupt Priority Mask Register.
    ICC_PMR_EL1 = (3, 0, 4, 6, 0);
    /// Interrupt Controller Interrupt Acknowledge Register 0.
    ICC_IAR0_EL1 = (3, 0, 12, 8, 0);
    /// Interrupt Controller End Of Interrupt Register 0.
    ICC_EOIR0_EL1 = (3, 0, 12, 8, 1);
    /// Interrupt Controller Highest Priority Pending Interrupt Register 0.
    ICC_HPPIR0_EL1 = (3, 0, 12, 8, 2);
    /// Interrupt Controller Binary Point Register 0.
    ICC_BPR0_EL1 = (3, 0, 12, 8, 3);
    /// Interrupt Controller Active Priorities Group 0 Register 0.
    ICC_AP0R0_EL1 = (3, 0, 12, 8, 4);
    /// Interrupt Controller Active Priorities Group 1 Register 0.
    ICC_AP1R0_EL1 = (3, 0, 12, 9, 0);
    /// Interrupt Controller Deactivate Interrupt Register.
    ICC_DIR_EL1 = (3, 0, 12, 11, 1);
    /// Interrupt Controller Running Priority Register.
    ICC_RPR_EL1 = (3, 0, 12, 11, 3);
    /// Interrupt Controller Software Generated Interrupt Group 1 Register.
    ICC_SGI1R_EL1 = (3, 0, 12, 11, 5);
    /// Interrupt Controller Alias Software Generated Interrupt Group 1 Register.
    ICC_ASGI1R_EL1 = (3, 0, 12, 11, 6);
    /// Interrupt Controller Software Generated Interrupt Group 0 Register.
    ICC_SGI0R_EL1 = (3, 0, 12, 11, 7);
    /// Interrupt Controller Interrupt Acknowledge Register 1.
    ICC_IAR1_EL1 = (3, 0, 12, 12, 0);
    /// Interrupt Controller End Of Interrupt Register 1.
    ICC_EOIR1_EL1 = (3, 0, 12, 12, 1);
    /// Interrupt Controller Highest Priority Pending Interrupt Register 1.
    ICC_HPPIR1_EL1 = (3, 0, 12, 12, 2);
    /// Interrupt Controller Binary Point Register 1.
    ICC_BPR1_EL1 = (3, 0, 12, 12, 3);
    /// Interrupt Controller Control Register (EL1).
    ICC_CTLR_EL1 = (3, 0, 12, 12, 4);
    /// Interrupt Controller System Register Enable register (EL1).
    ICC_SRE_EL1 = (3, 0, 12, 12, 5);
    /// Interrupt Controller Interrupt Group 0 Enable register.
    ICC_IGRPEN0_EL1 = (3, 0, 12, 12, 6);
    /// Interrupt Controller Interrupt Group 1 Enable register.
    ICC_IGRPEN1_EL1 = (3, 0, 12, 12, 7);
    /// Interrupt Controller System Register Enable register (EL2).
    ICC_SRE_EL2 = (3, 4, 12, 9, 5);
    /// Interrupt Controller Hyp Active Priorities Group 0 Register 0.
    ICH_AP0R0_EL2 = (3, 4, 12, 8, 0);
    /// Interrupt Controller Hyp Active Priorities Group 1 Register 0.
    ICH_AP1R0_EL2 = (3, 4, 12, 9, 0);
    /// Interrupt Controller Hyp Control Register.
    ICH_HCR_EL2 = (3, 4, 12, 11, 0);
    /// Interrupt Controller VGIC Type Register.
    ICH_VTR_EL2 = (3, 4, 12, 11, 1);
    /// Interrupt Controller Maintenance Interrupt State Register.
    ICH_MISR_EL2 = (3, 4, 12, 11, 2);
    /// Interrupt Controller End of Interrupt Status Register.
    ICH_EISR_EL2 = (3, 4, 12, 11, 3);
    /// Interrupt Controller Empty List Register Status Register.
    ICH_ELRSR_EL2 = (3, 4, 12, 11, 5);
    /// Interrupt Controller Virtual Machine Control Register.
    ICH_VMCR_EL2 = (3, 4, 12, 11, 7);
    /// List Register 0 (a virtual interrupt for the virtual CPU interface).
    ICH_LR0_EL2 = (3, 4, 12, 12, 0);
    /// List Register 1 (a virtual interrupt for the virtual CPU interface).
    ICH_LR1_EL2 = (3, 4, 12, 12, 1);
    /// List Register 2 (a virtual interrupt for the virtual CPU interface).
    ICH_LR2_EL2 = (3, 4, 12, 12, 2);
    /// List Register 3 (a virtual interrupt for the virtual CPU interface).
    ICH_LR3_EL2 = (3, 4, 12, 12, 3);
    /// List Register 4 (a virtual interrupt for the virtual CPU interface).
    ICH_LR4_EL2 = (3, 4, 12, 12, 4);
    /// List Register 5 (a virtual interrupt for the virtual CPU interface).
    ICH_LR5_EL2 = (3, 4, 12, 12, 5);
    /// List Register 6 (a virtual interrupt for the virtual CPU interface).
    ICH_LR6_EL2 = (3, 4, 12, 12, 6);
    /// List Register 7 (a virtual interrupt for the virtual CPU interface).
    ICH_LR7_EL2 = (3, 4, 12, 12, 7);
    /// List Register 8 (a virtual interrupt for the virtual CPU interface).
    ICH_LR8_EL2 = (3, 4, 12, 13, 0);
    /// List Register 9 (a virtual interrupt for the virtual CPU interface).
    ICH_LR9_EL2 = (3, 4, 12, 13, 1);
    /// List Register 10 (a virtual interrupt for the virtual CPU interface).
    ICH_LR10_EL2 = (3, 4, 12, 13, 2);
    /// List Register 11 (a virtual interrupt for the virtual CPU interface).
    ICH_LR11_EL2 = (3, 4, 12, 13, 3);
    /// List Register 12 (a virtual interrupt for the virtual CPU interface).
    ICH_LR12_EL2 = (3, 4, 12, 13, 4);
    /// List Register 13 (a virtual interrupt for the virtual CPU interface).
    ICH_LR13_EL2 = (3, 4, 12, 13, 5);
    /// List Register 14 (a virtual interrupt for the virtual CPU interface).
    ICH_LR14_EL2 = (3, 4, 12, 13, 6);
    /// List Register 15 (a virtual interrupt for the virtual CPU interface).
    ICH_LR15_EL2 = (3, 4, 12, 13, 7);
}

/// Number of registers without an index.
const FIXED_COUNT: usize = FIXED.len();

/// Builds [`SysReg::ALL`] at compile time.
const fn build_all() -> [SysReg; SysReg::COUNT] {
    let mut out = [SysReg::PMSCR_EL1; SysReg::COUNT];
    let mut i = 0;
    while i < FIXED_COUNT {
        out[i] = FIXED[i];
        i += 1;
    }
    let mut n = 0;
    while n < EventCounter::COUNT {
        let c = EventCounter::saturating(n as u8);
        out[FIXED_COUNT + n] = SysReg::PMEVCNTR_EL0(c);
        out[FIXED_COUNT + EventCounter::COUNT + n] = SysReg::PMEVTYPER_EL0(c);
        n += 1;
    }
    out
}

impl SysReg {
    /// Number of registers in [`SysReg::ALL`] (indexed families expanded).
    pub const COUNT: usize = FIXED_COUNT + 2 * EventCounter::COUNT;

    /// Every register, with `PMEVCNTR0..30_EL0` and `PMEVTYPER0..30_EL0`
    /// expanded: the fixed registers in declaration order, then the 31
    /// counters, then the 31 type registers.
    pub const ALL: [SysReg; SysReg::COUNT] = build_all();

    /// Iterates over [`SysReg::ALL`].
    pub fn iter() -> impl Iterator<Item = SysReg> {
        SysReg::ALL.iter().copied()
    }

    /// `PMEVCNTR<n>_EL0`, or `None` if `n > 30`.
    pub const fn pmevcntr_el0(n: u8) -> Option<SysReg> {
        match EventCounter::new(n) {
            Some(c) => Some(SysReg::PMEVCNTR_EL0(c)),
            None => None,
        }
    }

    /// `PMEVTYPER<n>_EL0`, or `None` if `n > 30`.
    pub const fn pmevtyper_el0(n: u8) -> Option<SysReg> {
        match EventCounter::new(n) {
            Some(c) => Some(SysReg::PMEVTYPER_EL0(c)),
            None => None,
        }
    }

    /// `ICH_LR<n>_EL2`, or `None` if `n > 15`.
    pub const fn ich_lr_el2(n: u8) -> Option<SysReg> {
        const LRS: [SysReg; 16] = [
            SysReg::ICH_LR0_EL2,
            SysReg::ICH_LR1_EL2,
            SysReg::ICH_LR2_EL2,
            SysReg::ICH_LR3_EL2,
            SysReg::ICH_LR4_EL2,
            SysReg::ICH_LR5_EL2,
            SysReg::ICH_LR6_EL2,
            SysReg::ICH_LR7_EL2,
            SysReg::ICH_LR8_EL2,
            SysReg::ICH_LR9_EL2,
            SysReg::ICH_LR10_EL2,
            SysReg::ICH_LR11_EL2,
            SysReg::ICH_LR12_EL2,
            SysReg::ICH_LR13_EL2,
            SysReg::ICH_LR14_EL2,
            SysReg::ICH_LR15_EL2,
        ];
        if n < 16 {
            Some(LRS[n as usize])
        } else {
            None
        }
    }

    /// The list register index of `ICH_LR<n>_EL2`, `None` for any other.
    pub const fn list_register(self) -> Option<u8> {
        let e = self.encoding();
        if e.op0() == 3 && e.op1() == 4 && e.crn() == 12 && (e.crm() == 12 || e.crm() == 13) {
            Some((e.crm() & 1) << 3 | e.op2())
        } else {
            None
        }
    }

    /// The register's `op0, op1, CRn, CRm, op2` encoding.
    pub const fn encoding(self) -> Encoding {
        match self {
            SysReg::PMEVCNTR_EL0(c) => {
                let n = c.index();
                Encoding::new(3, 3, 14, 0b1000 | (n >> 3), n & 7)
            }
            SysReg::PMEVTYPER_EL0(c) => {
                let n = c.index();
                Encoding::new(3, 3, 14, 0b1100 | (n >> 3), n & 7)
            }
            fixed => match fixed.fixed_encoding() {
                Some(e) => e,
                // Unreachable: every non-indexed variant has an encoding.
                None => Encoding::new(0, 0, 0, 0, 0),
            },
        }
    }

    /// The register with encoding `e`, or `None` if hyperprof does not model
    /// it. Inverse of [`SysReg::encoding`].
    pub const fn from_encoding(e: Encoding) -> Option<SysReg> {
        if e.op0() == 3 && e.op1() == 3 && e.crn() == 14 && e.crm() >= 8 {
            let n = ((e.crm() & 0b11) << 3) | e.op2();
            let c = match EventCounter::new(n) {
                Some(c) => c,
                // n == 31: CRm 0b1011 op2 7 is unallocated, CRm 0b1111 op2 7
                // is PMCCFILTR_EL0.
                None => return SysReg::fixed_from_encoding(e),
            };
            return if e.crm() & 0b0100 == 0 {
                Some(SysReg::PMEVCNTR_EL0(c))
            } else {
                Some(SysReg::PMEVTYPER_EL0(c))
            };
        }
        SysReg::fixed_from_encoding(e)
    }

    /// The Arm name. For the indexed families this is the family name as
    /// written in the Arm ARM (`"PMEVCNTR<n>_EL0"`); use `Display` for the
    /// name of one instance (`PMEVCNTR5_EL0`).
    pub const fn name(self) -> &'static str {
        match self {
            SysReg::PMEVCNTR_EL0(_) => "PMEVCNTR<n>_EL0",
            SysReg::PMEVTYPER_EL0(_) => "PMEVTYPER<n>_EL0",
            fixed => match fixed.fixed_name() {
                Some(n) => n,
                None => "",
            },
        }
    }

    /// The event counter index for the indexed families, `None` otherwise.
    pub const fn counter(self) -> Option<EventCounter> {
        match self {
            SysReg::PMEVCNTR_EL0(c) | SysReg::PMEVTYPER_EL0(c) => Some(c),
            _ => None,
        }
    }
}

impl fmt::Display for SysReg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SysReg::PMEVCNTR_EL0(c) => write!(f, "PMEVCNTR{}_EL0", c.index()),
            SysReg::PMEVTYPER_EL0(c) => write!(f, "PMEVTYPER{}_EL0", c.index()),
            fixed => f.write_str(fixed.name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Encoding, EventCounter, SysReg};
    use std::collections::BTreeSet;
    use std::format;
    use std::string::String;

    /// The GICv3 CPU interface registers: 21 ICC, 8 ICH and 16 list registers.
    const FIXED_GIC: usize = 21 + 8 + 16;

    #[test]
    fn all_has_every_register_once() {
        assert_eq!(SysReg::ALL.len(), FIXED_GIC + 57 + 31 + 31);
        let set: BTreeSet<SysReg> = SysReg::iter().collect();
        assert_eq!(set.len(), SysReg::COUNT);
    }

    #[test]
    fn encodings_are_distinct() {
        let encs: BTreeSet<Encoding> = SysReg::iter().map(SysReg::encoding).collect();
        assert_eq!(encs.len(), SysReg::COUNT);
    }

    #[test]
    fn from_encoding_roundtrips_every_register() {
        for r in SysReg::iter() {
            assert_eq!(SysReg::from_encoding(r.encoding()), Some(r), "{r}");
        }
    }

    #[test]
    fn from_encoding_knows_nothing_else() {
        // Every possible encoding: either unknown, or maps to a register
        // whose encoding is exactly it. Exactly COUNT encodings are known.
        let mut known = 0;
        for v in 0..=u16::MAX {
            let e = Encoding::unpack(v);
            if let Some(r) = SysReg::from_encoding(e) {
                assert_eq!(r.encoding(), e);
                known += 1;
            }
        }
        assert_eq!(known, SysReg::COUNT);
    }

    #[test]
    fn spot_check_encodings() {
        let cases = [
            (SysReg::PMSCR_EL1, "S3_0_C9_C9_0"),
            (SysReg::PMSCR_EL12, "S3_5_C9_C9_0"),
            (SysReg::PMSCR_EL2, "S3_4_C9_C9_0"),
            (SysReg::PMBIDR_EL1, "S3_0_C9_C10_7"),
            (SysReg::PMBSR_EL1, "S3_0_C9_C10_3"),
            (SysReg::PMCR_EL0, "S3_3_C9_C12_0"),
            (SysReg::PMMIR_EL1, "S3_0_C9_C14_6"),
            (SysReg::PMCCFILTR_EL0, "S3_3_C14_C15_7"),
            (SysReg::MDCR_EL2, "S3_4_C1_C1_1"),
            (SysReg::TTBR0_EL1, "S3_0_C2_C0_0"),
            (SysReg::TTBR0_EL2, "S3_4_C2_C0_0"),
            (SysReg::VTTBR_EL2, "S3_4_C2_C1_0"),
            (SysReg::TTBR0_EL12, "S3_5_C2_C0_0"),
            (SysReg::CONTEXTIDR_EL12, "S3_5_C13_C0_1"),
            (SysReg::HDFGWTR_EL2, "S3_4_C3_C1_5"),
            (SysReg::ID_AA64DFR0_EL1, "S3_0_C0_C5_0"),
            (SysReg::CNTVOFF_EL2, "S3_4_C14_C0_3"),
            (SysReg::CNTV_CTL_EL0, "S3_3_C14_C3_1"),
            (SysReg::CNTV_CVAL_EL02, "S3_5_C14_C3_2"),
            (SysReg::CNTHCTL_EL2, "S3_4_C14_C1_0"),
            (SysReg::ICC_PMR_EL1, "S3_0_C4_C6_0"),
            (SysReg::ICC_IAR1_EL1, "S3_0_C12_C12_0"),
            (SysReg::ICC_SGI1R_EL1, "S3_0_C12_C11_5"),
            (SysReg::ICC_SRE_EL2, "S3_4_C12_C9_5"),
            (SysReg::ICH_HCR_EL2, "S3_4_C12_C11_0"),
            (SysReg::ICH_VMCR_EL2, "S3_4_C12_C11_7"),
            (SysReg::ICH_LR0_EL2, "S3_4_C12_C12_0"),
            (SysReg::ICH_LR7_EL2, "S3_4_C12_C12_7"),
            (SysReg::ICH_LR8_EL2, "S3_4_C12_C13_0"),
            (SysReg::ICH_LR15_EL2, "S3_4_C12_C13_7"),
        ];
        for (r, s) in cases {
            assert_eq!(format!("{}", r.encoding()), s, "{r}");
        }
    }

    #[test]
    fn indexed_encodings() {
        let c0 = SysReg::pmevcntr_el0(0).unwrap();
        let c5 = SysReg::pmevcntr_el0(5).unwrap();
        let c8 = SysReg::pmevcntr_el0(8).unwrap();
        let c30 = SysReg::pmevcntr_el0(30).unwrap();
        let t30 = SysReg::pmevtyper_el0(30).unwrap();
        let t9 = SysReg::pmevtyper_el0(9).unwrap();
        assert_eq!(c0.encoding(), Encoding::new(3, 3, 14, 8, 0));
        assert_eq!(c5.encoding(), Encoding::new(3, 3, 14, 8, 5));
        assert_eq!(c8.encoding(), Encoding::new(3, 3, 14, 9, 0));
        assert_eq!(c30.encoding(), Encoding::new(3, 3, 14, 11, 6));
        assert_eq!(t30.encoding(), Encoding::new(3, 3, 14, 15, 6));
        assert_eq!(t9.encoding(), Encoding::new(3, 3, 14, 13, 1));
        assert_eq!(SysReg::pmevcntr_el0(31), None);
        assert_eq!(SysReg::pmevtyper_el0(31), None);
        // n == 31 slots: PMCCFILTR_EL0 for the type family, nothing for counters.
        assert_eq!(
            SysReg::from_encoding(Encoding::new(3, 3, 14, 15, 7)),
            Some(SysReg::PMCCFILTR_EL0)
        );
        assert_eq!(SysReg::from_encoding(Encoding::new(3, 3, 14, 11, 7)), None);
    }

    #[test]
    fn list_registers_are_numbered() {
        for n in 0..16u8 {
            let r = SysReg::ich_lr_el2(n).unwrap();
            assert_eq!(r.list_register(), Some(n));
            assert_eq!(format!("{r}"), format!("ICH_LR{n}_EL2"));
        }
        assert_eq!(SysReg::ich_lr_el2(16), None);
        assert_eq!(SysReg::ICH_VMCR_EL2.list_register(), None);
        assert_eq!(SysReg::ICC_IAR1_EL1.list_register(), None);
    }

    #[test]
    fn names_and_display() {
        assert_eq!(SysReg::PMBLIMITR_EL1.name(), "PMBLIMITR_EL1");
        assert_eq!(format!("{}", SysReg::PMBLIMITR_EL1), "PMBLIMITR_EL1");
        let c5 = SysReg::pmevcntr_el0(5).unwrap();
        assert_eq!(c5.name(), "PMEVCNTR<n>_EL0");
        assert_eq!(format!("{c5}"), "PMEVCNTR5_EL0");
        let t17 = SysReg::pmevtyper_el0(17).unwrap();
        assert_eq!(t17.name(), "PMEVTYPER<n>_EL0");
        assert_eq!(format!("{t17}"), "PMEVTYPER17_EL0");
        assert_eq!(t17.counter(), EventCounter::new(17));
        assert_eq!(SysReg::HCR_EL2.counter(), None);
    }

    #[test]
    fn display_names_are_unique_and_arm_shaped() {
        let names: BTreeSet<String> = SysReg::iter().map(|r| format!("{r}")).collect();
        assert_eq!(names.len(), SysReg::COUNT);
        for n in &names {
            assert!(
                n.ends_with("_EL0")
                    || n.ends_with("_EL1")
                    || n.ends_with("_EL2")
                    || n.ends_with("_EL12")
                    || n.ends_with("_EL02"),
                "{n}"
            );
            assert!(!n.is_empty());
        }
    }

    #[test]
    fn all_order_is_fixed_then_counters_then_types() {
        assert_eq!(SysReg::ALL[0], SysReg::PMSCR_EL1);
        assert_eq!(
            SysReg::ALL[FIXED_GIC + 57],
            SysReg::pmevcntr_el0(0).unwrap()
        );
        assert_eq!(
            SysReg::ALL[FIXED_GIC + 57 + 30],
            SysReg::pmevcntr_el0(30).unwrap()
        );
        assert_eq!(
            SysReg::ALL[FIXED_GIC + 57 + 31],
            SysReg::pmevtyper_el0(0).unwrap()
        );
        assert_eq!(
            SysReg::ALL[SysReg::COUNT - 1],
            SysReg::pmevtyper_el0(30).unwrap()
        );
    }

    #[test]
    fn every_register_has_one_unit() {
        use super::Unit;
        let count = |u: Unit| SysReg::iter().filter(|r| r.unit() == u).count();
        assert_eq!(
            count(Unit::SpeSampling),
            9,
            "eight controls and the EL12 alias"
        );
        assert_eq!(count(Unit::SpeBuffer), 3);
        assert_eq!(count(Unit::SpeId), 2);
        assert_eq!(count(Unit::SpeEl2), 1);
        assert_eq!(count(Unit::Pmu), 17 + 2 * 31);
        assert!(SysReg::PMBIDR_EL1.is_spe_el1());
        assert!(!SysReg::PMSCR_EL2.is_spe_el1());
        assert_eq!(SysReg::MDCR_EL2.unit(), Unit::Other);
    }
}
