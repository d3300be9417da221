//! PMU system register accesses (`MRS`/`MSR`): the access checks and the
//! register semantics of Arm ARM D24.5 "Performance Monitors registers".

use hyperprof_arch::{
    mdcr_el2, pm_counter_bits, pmccfiltr_el0, pmcr_el0, pmevtyper_el0, pmselr_el0, pmuserenr_el0,
    AccessFault, ExceptionLevel, Field, PmuVer, SysReg,
};

use super::{Pmu, View, CYCLE, CYCLE_BIT, PMCEID0, PMCEID1};

/// The register an access reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Pmcr,
    CntenSet,
    CntenClr,
    IntenSet,
    IntenClr,
    OvsSet,
    OvsClr,
    Swinc,
    Selr,
    Ceid0,
    Ceid1,
    Ccntr,
    /// PMXEVTYPER_EL0 before PMSELR_EL0.SEL is resolved.
    XevTyper,
    /// PMXEVCNTR_EL0 before PMSELR_EL0.SEL is resolved.
    XevCntr,
    Evcntr(u8),
    Evtyper(u8),
    Ccfiltr,
    Userenr,
    Mmir,
}

/// What an EL0 access needs from PMUSERENR_EL0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum El0 {
    /// Allowed when any of these PMUSERENR_EL0 bits is 1, else trapped to
    /// EL1.
    Any(u64),
    /// Always allowed (a read of PMUSERENR_EL0).
    Always,
    /// UNDEFINED at EL0 (EL1 registers, a write of PMUSERENR_EL0).
    Undefined,
}

/// Bits \[15:10\] of `evtCount`: RES0 before FEAT_PMUv3p1 (10-bit event
/// numbers).
const EVTCOUNT_HIGH: Field = Field::bits(15, 10);

impl Pmu {
    /// `MRS`: reads `reg` as the accessor described by `v` sees it.
    ///
    /// Errors: [`AccessFault::Undefined`] and [`AccessFault::Trapped`] as
    /// listed under "Access checks" in the module documentation, and
    /// `Undefined` for a register that is not a PMU register.
    pub fn read(&self, reg: SysReg, v: View) -> Result<u64, AccessFault> {
        let target = self.resolve(reg, false, v)?;
        let limit = self.limit(v);
        let visible = pm_counter_bits::counter_range(0, limit) | CYCLE_BIT;
        Ok(match target {
            Target::Pmcr => self.pmcr | pmcr_el0::N.value(u64::from(limit)),
            Target::CntenSet | Target::CntenClr => self.cnten & visible,
            Target::IntenSet | Target::IntenClr => self.inten & visible,
            Target::OvsSet | Target::OvsClr => self.ovs & visible,
            Target::Selr => self.selr,
            Target::Ceid0 => PMCEID0,
            Target::Ceid1 => PMCEID1,
            Target::Ccntr => self.ccntr,
            Target::Evcntr(i) => self.evcntr.get(usize::from(i)).copied().unwrap_or(0),
            Target::Evtyper(i) => self.evtyper.get(usize::from(i)).copied().unwrap_or(0),
            Target::Ccfiltr => self.ccfiltr,
            Target::Userenr => self.userenr,
            // PMMIR_EL1: no slots, bus or threshold information.
            Target::Mmir => 0,
            // Resolved away or write-only: `resolve` never returns these
            // for a read.
            Target::Swinc | Target::XevTyper | Target::XevCntr => 0,
        })
    }

    /// `MSR`: writes `val` to `reg` as the accessor described by `v`.
    ///
    /// RES0 bits are dropped; bits of the counter bitmaps for counters the
    /// accessor cannot see are ignored (RAZ/WI); PMCR_EL0.P resets the
    /// event counters the accessor can see (those below MDCR_EL2.HPMN from
    /// EL0/EL1 when EL2 is implemented, all of them otherwise) and
    /// PMCR_EL0.C resets PMCCNTR_EL0. Configuration writes take effect for
    /// counting only at the next [`Pmu::sync`]; counter and overflow-flag
    /// writes at once (module documentation, "Strict mode").
    ///
    /// Errors: as for [`Pmu::read`].
    pub fn write(&mut self, reg: SysReg, val: u64, v: View) -> Result<(), AccessFault> {
        let target = self.resolve(reg, true, v)?;
        let limit = self.limit(v);
        let events = pm_counter_bits::counter_range(0, limit);
        let visible = events | CYCLE_BIT;
        match target {
            Target::Pmcr => self.write_pmcr(val, limit),
            Target::CntenSet => self.cnten |= val & visible,
            Target::CntenClr => self.cnten &= !(val & visible),
            Target::IntenSet => self.inten |= val & visible,
            Target::IntenClr => self.inten &= !(val & visible),
            Target::OvsSet => self.ovs |= val & visible,
            Target::OvsClr => self.ovs &= !(val & visible),
            Target::Swinc => self.software_increment(val & events, v.el),
            Target::Selr => self.selr = val & pmselr_el0::SEL.mask(),
            Target::Ccntr => self.ccntr = val,
            Target::Evcntr(i) => {
                let stored = self.event_counter_value(val);
                if let Some(c) = self.evcntr.get_mut(usize::from(i)) {
                    *c = stored;
                }
            }
            Target::Evtyper(i) => {
                let stored = val & self.evtyper_writable();
                if let Some(t) = self.evtyper.get_mut(usize::from(i)) {
                    *t = stored;
                }
            }
            Target::Ccfiltr => self.ccfiltr = val & !pmccfiltr_el0::RES0,
            Target::Userenr => self.userenr = val & !pmuserenr_el0::RES0,
            // Read-only (`resolve` refuses writes) or resolved away.
            Target::Ceid0 | Target::Ceid1 | Target::Mmir | Target::XevTyper | Target::XevCntr => {}
        }
        Ok(())
    }

    /// PMCR_EL0 write: E, D, X, DP and (FEAT_PMUv3p5) LP are stored, LC is
    /// RES1, N/IDCODE/IMP are read-only; P and C are reset actions.
    fn write_pmcr(&mut self, val: u64, limit: u8) {
        let mut writable =
            pmcr_el0::E.mask() | pmcr_el0::D.mask() | pmcr_el0::X.mask() | pmcr_el0::DP.mask();
        if self.cfg.version.has_lp() {
            writable |= pmcr_el0::LP.mask();
        }
        self.pmcr = (val & writable) | pmcr_el0::LC.mask();
        if pmcr_el0::P.is_set(val) {
            for c in self.evcntr.iter_mut().take(usize::from(limit)) {
                *c = 0;
            }
        }
        if pmcr_el0::C.is_set(val) {
            self.ccntr = 0;
        }
    }

    /// The `PMEVTYPER<n>_EL0` bits that are not RES0 in this implementation.
    fn evtyper_writable(&self) -> u64 {
        let mut res0 = pmevtyper_el0::RES0;
        if !self.cfg.version.at_least(PmuVer::V3p1) {
            res0 |= EVTCOUNT_HIGH.mask();
        }
        !res0
    }

    /// The number of event counters the accessor can use: MDCR_EL2.HPMN
    /// (effective) from EL0/EL1 when EL2 is implemented, N otherwise.
    pub(super) fn limit(&self, v: View) -> u8 {
        if self.cfg.el2_implemented && v.el < ExceptionLevel::EL2 {
            self.hpmn(v.mdcr_el2)
        } else {
            self.n
        }
    }

    /// Whether the machine has Exception level `el` (no EL3; EL2 only when
    /// implemented).
    pub(super) fn el_exists(&self, el: ExceptionLevel) -> bool {
        match el {
            ExceptionLevel::EL0 | ExceptionLevel::EL1 => true,
            ExceptionLevel::EL2 => self.cfg.el2_implemented,
            ExceptionLevel::EL3 => false,
        }
    }

    /// The access checks, in the order given in the module documentation,
    /// and the PMSELR_EL0 indirection.
    fn resolve(&self, reg: SysReg, write: bool, v: View) -> Result<Target, AccessFault> {
        use pmuserenr_el0 as u;
        const UNDEF: AccessFault = AccessFault::Undefined;
        if !self.cfg.version.is_pmuv3() || !self.el_exists(v.el) {
            return Err(UNDEF);
        }
        let en = u::EN.mask();
        let er = u::ER.mask();
        let counter_read = if write { en } else { en | er };
        let (target, el0) = match reg {
            SysReg::PMCR_EL0 => (Target::Pmcr, El0::Any(en)),
            SysReg::PMCNTENSET_EL0 => (Target::CntenSet, El0::Any(en)),
            SysReg::PMCNTENCLR_EL0 => (Target::CntenClr, El0::Any(en)),
            SysReg::PMOVSSET_EL0 => (Target::OvsSet, El0::Any(en)),
            SysReg::PMOVSCLR_EL0 => (Target::OvsClr, El0::Any(en)),
            SysReg::PMINTENSET_EL1 => (Target::IntenSet, El0::Undefined),
            SysReg::PMINTENCLR_EL1 => (Target::IntenClr, El0::Undefined),
            SysReg::PMSWINC_EL0 if write => (Target::Swinc, El0::Any(en | u::SW.mask())),
            SysReg::PMSELR_EL0 => (Target::Selr, El0::Any(en | er)),
            SysReg::PMCEID0_EL0 if !write => (Target::Ceid0, El0::Any(en)),
            SysReg::PMCEID1_EL0 if !write => (Target::Ceid1, El0::Any(en)),
            SysReg::PMCCNTR_EL0 => {
                let bits = if write { en } else { en | u::CR.mask() };
                (Target::Ccntr, El0::Any(bits))
            }
            SysReg::PMXEVTYPER_EL0 => (Target::XevTyper, El0::Any(en)),
            SysReg::PMXEVCNTR_EL0 => (Target::XevCntr, El0::Any(counter_read)),
            SysReg::PMEVCNTR_EL0(c) => (Target::Evcntr(c.index()), El0::Any(counter_read)),
            SysReg::PMEVTYPER_EL0(c) => (Target::Evtyper(c.index()), El0::Any(en)),
            SysReg::PMCCFILTR_EL0 => (Target::Ccfiltr, El0::Any(en)),
            SysReg::PMUSERENR_EL0 if write => (Target::Userenr, El0::Undefined),
            SysReg::PMUSERENR_EL0 => (Target::Userenr, El0::Always),
            SysReg::PMMIR_EL1 if !write && self.cfg.version.at_least(PmuVer::V3p4) => {
                (Target::Mmir, El0::Undefined)
            }
            // Not a PMU register, a read of PMSWINC_EL0, a write of a
            // read-only register, or PMMIR_EL1 before FEAT_PMUv3p4.
            _ => return Err(UNDEF),
        };
        let at_el0 = v.el == ExceptionLevel::EL0;
        if at_el0 && el0 == El0::Undefined {
            return Err(UNDEF);
        }
        let limit = self.limit(v);
        if let Target::Evcntr(i) | Target::Evtyper(i) = target {
            if i >= limit {
                return Err(UNDEF);
            }
        }
        if at_el0 {
            if let El0::Any(bits) = el0 {
                if self.userenr & bits == 0 {
                    return Err(AccessFault::Trapped {
                        to: ExceptionLevel::EL1,
                    });
                }
            }
        }
        if self.cfg.el2_implemented && v.el < ExceptionLevel::EL2 {
            let tpm = mdcr_el2::TPM.is_set(v.mdcr_el2);
            let tpmcr = target == Target::Pmcr && mdcr_el2::TPMCR.is_set(v.mdcr_el2);
            if tpm || tpmcr {
                return Err(AccessFault::Trapped {
                    to: ExceptionLevel::EL2,
                });
            }
        }
        let sel = u8::try_from(pmselr_el0::SEL.get(self.selr)).unwrap_or(CYCLE);
        Ok(match target {
            Target::XevTyper if sel == CYCLE => Target::Ccfiltr,
            Target::XevTyper if sel < limit => Target::Evtyper(sel),
            Target::XevCntr if sel < limit => Target::Evcntr(sel),
            Target::XevTyper | Target::XevCntr => return Err(UNDEF),
            other => other,
        })
    }
}
