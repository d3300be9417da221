//! The PE's system registers as software reaches them: how an access is
//! routed (VHE's `*_EL12`/`*_EL02` aliases and E2H redirection, EL2's
//! trap controls, the fine-grained traps, the GIC's ICC/ICV split) and the
//! registers' reads and writes, the units' and the GIC CPU interface's
//! included.

use super::*;

impl Pe {
    pub(super) fn e2h(&self) -> bool {
        hcr_el2::E2H.is_set(self.regs.hcr_el2)
    }

    /// The access as the PE routes it: VHE redirection of `*_EL1` to
    /// `*_EL2` at EL2, `*_EL12` to the EL1 register, and the EL and trap
    /// checks of the profiling registers.
    pub(super) fn route(&self, reg: SysReg, write: bool) -> Result<SysReg, AccessFault> {
        let el = self.el;
        // The SPE registers do not exist for EL0: UNDEFINED there, before any
        // trap is considered (the Arm ARM's accessor pseudocode tests
        // PSTATE.EL == EL0 first).
        if el == ExceptionLevel::EL0 && reg.is_spe_el1() {
            return undefined();
        }
        // Fine-grained traps come next for EL1 accesses, and for the EL0
        // accesses to the PMU that PMUSERENR_EL0 permits (FEAT_FGT).
        let fgt_applies = match el {
            ExceptionLevel::EL1 => true,
            ExceptionLevel::EL0 => is_pmu_reg(reg) && self.pmu_el0_permits(reg),
            _ => false,
        };
        if self.fgt && fgt_applies {
            let trapped = if write {
                hdfgwtr_el2::traps_reg(self.regs.hdfgwtr_el2, reg)
            } else {
                hdfgrtr_el2::traps_reg(self.regs.hdfgrtr_el2, reg)
            };
            if trapped {
                return trap_to_el2();
            }
        }
        let at_el2 = el == ExceptionLevel::EL2;
        if let Some(route) = GicRoute::of(reg) {
            return self.route_gic(reg, route, write);
        }
        let mdcr = self.regs.mdcr_el2;
        match reg {
            SysReg::PMSCR_EL1 if at_el2 && self.e2h() => Ok(SysReg::PMSCR_EL2),
            SysReg::CONTEXTIDR_EL1 if at_el2 && self.e2h() => Ok(SysReg::CONTEXTIDR_EL2),
            SysReg::TTBR0_EL1 if at_el2 && self.e2h() => Ok(SysReg::TTBR0_EL2),
            // The *_EL12 aliases reach the EL1 registers from a VHE EL2.
            SysReg::PMSCR_EL12 | SysReg::TTBR0_EL12 | SysReg::CONTEXTIDR_EL12 => {
                if at_el2 && self.e2h() {
                    Ok(match reg {
                        SysReg::PMSCR_EL12 => SysReg::PMSCR_EL1,
                        SysReg::TTBR0_EL12 => SysReg::TTBR0_EL1,
                        _ => SysReg::CONTEXTIDR_EL1,
                    })
                } else {
                    undefined()
                }
            }
            SysReg::PMSCR_EL2
            | SysReg::HCR_EL2
            | SysReg::MDCR_EL2
            | SysReg::HDFGRTR_EL2
            | SysReg::HDFGWTR_EL2
            | SysReg::CONTEXTIDR_EL2
            | SysReg::TTBR0_EL2
            | SysReg::VTTBR_EL2 => {
                if at_el2 {
                    Ok(reg)
                } else {
                    undefined()
                }
            }
            r if r.is_spe_el1() => {
                if self.spe.is_none() || el == ExceptionLevel::EL0 {
                    return undefined();
                }
                // The coarse traps: E2PB covers the buffer registers, TPMS
                // the sampling registers and PMSIDR_EL1; PMBIDR_EL1 is
                // trapped by nothing coarse (Linux's emulate-nested.c lists
                // PMSIDR_EL1 under MDCR_EL2.TPMS and PMBIDR_EL1 nowhere).
                let trapped = match r.unit() {
                    Unit::SpeBuffer => mdcr_el2::e2pb_traps_el1(mdcr),
                    Unit::SpeSampling => mdcr_el2::TPMS.is_set(mdcr),
                    Unit::SpeId => r == SysReg::PMSIDR_EL1 && mdcr_el2::TPMS.is_set(mdcr),
                    _ => false,
                };
                if el == ExceptionLevel::EL1 && trapped {
                    return trap_to_el2();
                }
                Ok(r)
            }
            // The PMU applies its own EL, PMUSERENR and MDCR_EL2.TPM/TPMCR
            // checks, in the architected order.
            r if is_pmu_reg(r) => Ok(r),
            SysReg::CONTEXTIDR_EL1 | SysReg::TTBR0_EL1 | SysReg::ID_AA64DFR0_EL1 => {
                if el == ExceptionLevel::EL0 {
                    undefined()
                } else if reg == SysReg::ID_AA64DFR0_EL1
                    && el == ExceptionLevel::EL1
                    && !write
                    && hcr_el2::TID3.is_set(self.regs.hcr_el2)
                {
                    trap_to_el2()
                } else {
                    Ok(reg)
                }
            }
            _ => undefined(),
        }
    }

    /// The GIC's registers: ICH_* and ICC_SRE_EL2 at EL2; from EL1 with
    /// HCR_EL2.IMO set the ICC_* names reach the virtual CPU interface,
    /// SGI generation traps to EL2 and ICC_SRE_EL1 reads as fixed. The
    /// physical CPU interface is not modelled: UNDEFINED elsewhere.
    pub(super) fn route_gic(
        &self,
        reg: SysReg,
        route: GicRoute,
        write: bool,
    ) -> Result<SysReg, AccessFault> {
        match (self.el, route) {
            (ExceptionLevel::EL2, GicRoute::Hyp | GicRoute::SreEl2) => Ok(reg),
            (ExceptionLevel::EL1, GicRoute::Virtual | GicRoute::SreEl1 | GicRoute::Sgi)
                if self.virtual_irqs_routed() =>
            {
                // SGI generation traps with IMO (and ICH_HCR_EL2.TC).
                if route == GicRoute::Sgi {
                    return if write { trap_to_el2() } else { undefined() };
                }
                Ok(reg)
            }
            _ => undefined(),
        }
    }

    /// Whether PMUSERENR_EL0 lets EL0 make this PMU access at all (what
    /// the PMU itself would refuse is not for a fine-grained trap to catch).
    pub(super) fn pmu_el0_permits(&self, reg: SysReg) -> bool {
        let view = View {
            el: ExceptionLevel::EL0,
            mdcr_el2: mdcr_el2::TPM.set(self.regs.mdcr_el2, 0),
        };
        !matches!(
            self.pmu.read(reg, view),
            Err(AccessFault::Undefined)
                | Err(AccessFault::Trapped {
                    to: ExceptionLevel::EL1
                })
        )
    }

    pub(super) fn id_aa64dfr0(&self) -> u64 {
        use hyperprof_arch::id_aa64dfr0_el1 as id;
        let pms = self
            .spe
            .as_ref()
            .map_or(PmsVer::NotImplemented, |s| s.config().pms_ver);
        let v = id::PMUVer.set(0, self.pmu_version.to_field());
        id::PMSVer.set(v, pms.to_field())
    }

    pub(super) fn read_reg(&mut self, reg: SysReg) -> Result<u64, AccessFault> {
        if Self::is_timer_reg(reg) {
            return self.timer_access(reg, None);
        }
        let reg = self.route(reg, false)?;
        let r = &self.regs;
        Ok(match reg {
            SysReg::HCR_EL2 => r.hcr_el2,
            SysReg::MDCR_EL2 => r.mdcr_el2,
            SysReg::HDFGRTR_EL2 => r.hdfgrtr_el2,
            SysReg::HDFGWTR_EL2 => r.hdfgwtr_el2,
            SysReg::CONTEXTIDR_EL1 => r.contextidr_el1,
            SysReg::CONTEXTIDR_EL2 => r.contextidr_el2,
            SysReg::TTBR0_EL1 => r.ttbr0_el1,
            SysReg::TTBR0_EL2 => r.ttbr0_el2,
            SysReg::VTTBR_EL2 => r.vttbr_el2,
            SysReg::ID_AA64DFR0_EL1 => self.id_aa64dfr0(),
            r if GicRoute::of(r).is_some() => return self.read_gic(r),
            r if is_pmu_reg(r) => self.pmu.read(
                r,
                View {
                    el: self.el,
                    mdcr_el2: self.regs.mdcr_el2,
                },
            )?,
            // The unit's own updates of PMBPTR_EL1 and PMBSR_EL1 (the
            // pointer advancing, buffer management events) are visible to
            // software only after a context synchronization event: Linux
            // issues an ISB after the drain "to ensure hardware updates to
            // PMBPTR_EL1 are visible", and seed 000 before reading them. A
            // register software wrote since reads back as written.
            r @ (SysReg::PMBPTR_EL1 | SysReg::PMBSR_EL1) => match self.spe.as_ref() {
                Some(spe) if spe.written_since_sync(r) => spe.read(r),
                Some(_) if r == SysReg::PMBPTR_EL1 => self.synced_pmbptr,
                Some(_) => self.synced_pmbsr,
                None => return undefined(),
            },
            // PMBIDR_EL1.P depends on who asks.
            r => match self.spe.as_ref() {
                Some(spe) => spe.read_at(r, self.el),
                None => return undefined(),
            },
        })
    }

    pub(super) fn write_reg(&mut self, reg: SysReg, val: u64) -> Result<(), AccessFault> {
        if Self::is_timer_reg(reg) {
            return self.timer_access(reg, Some(val)).map(|_| ());
        }
        let reg = self.route(reg, true)?;
        let r = &mut self.regs;
        match reg {
            SysReg::HCR_EL2 => r.hcr_el2 = val,
            SysReg::MDCR_EL2 => r.mdcr_el2 = val & !mdcr_el2::RES0,
            SysReg::HDFGRTR_EL2 => r.hdfgrtr_el2 = val,
            SysReg::HDFGWTR_EL2 => r.hdfgwtr_el2 = val,
            SysReg::CONTEXTIDR_EL1 => r.contextidr_el1 = val & 0xFFFF_FFFF,
            SysReg::CONTEXTIDR_EL2 => r.contextidr_el2 = val & 0xFFFF_FFFF,
            SysReg::TTBR0_EL1 => r.ttbr0_el1 = val,
            SysReg::TTBR0_EL2 => r.ttbr0_el2 = val,
            SysReg::VTTBR_EL2 => r.vttbr_el2 = val,
            r if GicRoute::of(r).is_some() => return self.write_gic(r, val),
            // Read-only registers: an MSR to them is UNDEFINED.
            SysReg::ID_AA64DFR0_EL1 | SysReg::PMBIDR_EL1 | SysReg::PMSIDR_EL1 => {
                return undefined()
            }
            r if is_pmu_reg(r) => self.pmu.write(
                r,
                val,
                View {
                    el: self.el,
                    mdcr_el2: self.regs.mdcr_el2,
                },
            )?,
            r => match self.spe.as_mut() {
                Some(spe) => {
                    spe.write(r, val);
                    if self.early_spe_writes && !matches!(r, SysReg::PMBPTR_EL1 | SysReg::PMBSR_EL1)
                    {
                        spe.take_write_early(r);
                    }
                }
                None => return undefined(),
            },
        }
        Ok(())
    }

    /// A routed read of a GIC register.
    pub(super) fn read_gic(&mut self, reg: SysReg) -> Result<u64, AccessFault> {
        match GicRoute::of(reg) {
            Some(GicRoute::Hyp) => self.gic.read_hyp(reg).map_or_else(undefined, Ok),
            Some(GicRoute::SreEl1) => Ok(crate::gic::SRE_EL1),
            Some(GicRoute::SreEl2) => Ok(crate::gic::SRE_EL2),
            Some(GicRoute::Virtual) => self.gic.read_virtual(reg).or_else(icv_fault),
            _ => undefined(),
        }
    }

    /// A routed write of a GIC register.
    pub(super) fn write_gic(&mut self, reg: SysReg, val: u64) -> Result<(), AccessFault> {
        match GicRoute::of(reg) {
            Some(GicRoute::Hyp) => {
                if self.gic.write_hyp(reg, val) {
                    Ok(())
                } else {
                    undefined()
                }
            }
            // The system register interface cannot be turned off.
            Some(GicRoute::SreEl1 | GicRoute::SreEl2) => Ok(()),
            Some(GicRoute::Virtual) => self.gic.write_virtual(reg, val).or_else(icv_fault),
            _ => undefined(),
        }
    }
}
