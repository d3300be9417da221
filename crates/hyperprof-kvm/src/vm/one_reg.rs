//! One-reg get/set and the register list: what a VMM saves and restores
//! to migrate a vCPU (KVM_GET_REG_LIST, KVM_GET_ONE_REG, KVM_SET_ONE_REG).

use super::*;

impl Kvm {
    /// KVM_GET_REG_LIST, for the SPE part: the registers a VMM saves to
    /// migrate vCPU `vcpu` (none without the SPE feature).
    pub fn spe_reg_list(&self, vcpu: usize) -> Result<Vec<SysReg>, Errno> {
        let v = self.vcpus.get(vcpu).ok_or(Errno::ENODEV)?;
        if !v.features.spe {
            return Ok(Vec::new());
        }
        let f = self.spe_features(vcpu);
        let mut regs = vec![SysReg::PMSCR_EL1];
        if f.fne {
            regs.push(SysReg::PMSNEVFR_EL1);
        }
        regs.extend([
            SysReg::PMSICR_EL1,
            SysReg::PMSIRR_EL1,
            SysReg::PMSFCR_EL1,
            SysReg::PMSEVFR_EL1,
            SysReg::PMSLATFR_EL1,
        ]);
        if f.fds {
            regs.push(SysReg::PMSDSFR_EL1);
        }
        regs.extend([
            SysReg::PMBLIMITR_EL1,
            SysReg::PMBPTR_EL1,
            SysReg::PMBSR_EL1,
            SysReg::TTBR0_EL1,
            SysReg::CONTEXTIDR_EL1,
        ]);
        Ok(regs)
    }

    pub(super) fn one_reg_slot(v: &mut VcpuState, reg: SysReg) -> Option<&mut u64> {
        let (s, b) = (&mut v.spe.sampling, &mut v.spe.buffer);
        Some(match reg {
            SysReg::PMSCR_EL1 => &mut s.pmscr_el1,
            SysReg::PMSNEVFR_EL1 => &mut s.pmsnevfr_el1,
            SysReg::PMSICR_EL1 => &mut s.pmsicr_el1,
            SysReg::PMSIRR_EL1 => &mut s.pmsirr_el1,
            SysReg::PMSFCR_EL1 => &mut s.pmsfcr_el1,
            SysReg::PMSEVFR_EL1 => &mut s.pmsevfr_el1,
            SysReg::PMSLATFR_EL1 => &mut s.pmslatfr_el1,
            SysReg::PMSDSFR_EL1 => &mut s.pmsdsfr_el1,
            SysReg::PMBLIMITR_EL1 => &mut b.pmblimitr_el1,
            SysReg::PMBPTR_EL1 => &mut b.pmbptr_el1,
            SysReg::PMBSR_EL1 => &mut b.pmbsr_el1,
            SysReg::TTBR0_EL1 => &mut v.ttbr0_el1,
            SysReg::CONTEXTIDR_EL1 => &mut v.contextidr_el1,
            _ => return None,
        })
    }

    /// KVM_GET_ONE_REG for one of [`Kvm::spe_reg_list`]'s registers. The
    /// vCPU must not be loaded (its state is then all in memory): EBUSY.
    pub fn get_one_reg(&mut self, vcpu: usize, reg: SysReg) -> Result<u64, Errno> {
        if !self.spe_reg_list(vcpu)?.contains(&reg) {
            return Err(Errno::ENOENT);
        }
        let v = &mut self.vcpus[vcpu];
        if v.loaded_on.is_some() {
            return Err(Errno::EBUSY);
        }
        Kvm::one_reg_slot(v, reg).map(|r| *r).ok_or(Errno::ENOENT)
    }

    /// KVM_SET_ONE_REG for one of [`Kvm::spe_reg_list`]'s registers; the
    /// buffer registers go through the same checks as a guest write (RES0
    /// cleared). The vCPU must not be loaded: EBUSY. Restoring SPE state
    /// makes it live, so the next load switches it in.
    pub fn set_one_reg(&mut self, vcpu: usize, reg: SysReg, val: u64) -> Result<(), Errno> {
        if !self.spe_reg_list(vcpu)?.contains(&reg) {
            return Err(Errno::ENOENT);
        }
        let v = &mut self.vcpus[vcpu];
        if v.loaded_on.is_some() {
            return Err(Errno::EBUSY);
        }
        let val = match reg {
            SysReg::PMBLIMITR_EL1 => val & !pmblimitr_el1::RES0,
            SysReg::PMBSR_EL1 => val & !pmbsr_el1::RES0,
            SysReg::CONTEXTIDR_EL1 => val & 0xFFFF_FFFF,
            _ => val,
        };
        *Kvm::one_reg_slot(v, reg).ok_or(Errno::ENOENT)? = val;
        if !matches!(reg, SysReg::TTBR0_EL1 | SysReg::CONTEXTIDR_EL1) {
            v.spe_live = true;
        }
        // A restored enabled buffer is pinned before it reaches the hardware.
        if reg == SysReg::PMBLIMITR_EL1 || reg == SysReg::PMBPTR_EL1 {
            v.needs_repin = v.spe.buffer.enabled();
        }
        Ok(())
    }
}
