//! One-reg get/set and the register list: what a VMM saves and restores
//! to migrate a vCPU (KVM_GET_REG_LIST, KVM_GET_ONE_REG, KVM_SET_ONE_REG).

use super::*;
use crate::vpmu::{VpmuCtx, VpmuMode};

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

    /// KVM_GET_ONE_REG for one of [`Kvm::reg_list`]'s registers (ENOENT
    /// for any other; ENODEV no such vCPU). The vCPU must not be loaded
    /// (its state is then all in memory): EBUSY.
    pub fn get_one_reg(&mut self, vcpu: usize, reg: SysReg) -> Result<u64, Errno> {
        let spe = self.spe_reg_list(vcpu)?.contains(&reg);
        if !spe && !self.pmu_reg_list(vcpu)?.contains(&reg) {
            return Err(Errno::ENOENT);
        }
        let v = &mut self.vcpus[vcpu];
        if v.loaded_on.is_some() {
            return Err(Errno::EBUSY);
        }
        if !spe {
            return Ok(self.get_pmu_reg(vcpu, reg));
        }
        Kvm::one_reg_slot(v, reg).map(|r| *r).ok_or(Errno::ENOENT)
    }

    /// KVM_SET_ONE_REG for one of [`Kvm::reg_list`]'s registers (ENOENT for
    /// any other; ENODEV no such vCPU); the SPE buffer registers go through
    /// the same checks as a guest write (RES0 cleared), the PMU registers
    /// have KVM's semantics ([`Kvm::pmu_reg_list`]). The vCPU must not be
    /// loaded: EBUSY. Restoring SPE or PMU state makes it live, so the
    /// next load switches it in.
    pub fn set_one_reg(&mut self, vcpu: usize, reg: SysReg, val: u64) -> Result<(), Errno> {
        let spe = self.spe_reg_list(vcpu)?.contains(&reg);
        if !spe && !self.pmu_reg_list(vcpu)?.contains(&reg) {
            return Err(Errno::ENOENT);
        }
        if self.vcpus[vcpu].loaded_on.is_some() {
            return Err(Errno::EBUSY);
        }
        if !spe {
            self.set_pmu_reg(vcpu, reg, val);
            return Ok(());
        }
        let v = &mut self.vcpus[vcpu];
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

/// The guest PMU's registers in KVM's register list (what the KVM selftest
/// `get-reg-list` expects of a PMU vCPU): every `PMEVCNTR<n>_EL0` and
/// `PMEVTYPER<n>_EL0`, whatever the vCPU's number of counters.
fn pmu_regs() -> Vec<SysReg> {
    let mut regs = vec![
        SysReg::PMCR_EL0,
        SysReg::PMCNTENSET_EL0,
        SysReg::PMCNTENCLR_EL0,
        SysReg::PMINTENSET_EL1,
        SysReg::PMINTENCLR_EL1,
        SysReg::PMOVSSET_EL0,
        SysReg::PMOVSCLR_EL0,
        SysReg::PMSWINC_EL0,
        SysReg::PMSELR_EL0,
        SysReg::PMCCNTR_EL0,
        SysReg::PMUSERENR_EL0,
    ];
    for n in 0..=hyperprof_arch::EventCounter::MAX {
        if let Some(c) = hyperprof_arch::EventCounter::new(n) {
            regs.push(SysReg::PMEVCNTR_EL0(c));
        }
    }
    for n in 0..=hyperprof_arch::EventCounter::MAX {
        if let Some(c) = hyperprof_arch::EventCounter::new(n) {
            regs.push(SysReg::PMEVTYPER_EL0(c));
        }
    }
    regs.push(SysReg::PMCCFILTR_EL0);
    regs
}

impl Kvm {
    /// KVM_GET_REG_LIST, for the PMU part: the registers a VMM saves to
    /// migrate vCPU `vcpu`'s PMU (none without the PMU feature).
    pub fn pmu_reg_list(&self, vcpu: usize) -> Result<Vec<SysReg>, Errno> {
        let v = self.vcpus.get(vcpu).ok_or(Errno::ENODEV)?;
        Ok(if v.features.pmu_v3 {
            pmu_regs()
        } else {
            Vec::new()
        })
    }

    /// KVM_GET_REG_LIST: the SPE part ([`Kvm::spe_reg_list`]), then the
    /// PMU part ([`Kvm::pmu_reg_list`]).
    pub fn reg_list(&self, vcpu: usize) -> Result<Vec<SysReg>, Errno> {
        let mut regs = self.spe_reg_list(vcpu)?;
        regs.extend(self.pmu_reg_list(vcpu)?);
        Ok(regs)
    }

    /// The guest PMU's context for migration: the VM's number of counters,
    /// the PMU version of its host PMU and the guest's counter mask (with
    /// the first host PMU's default while the VM has recorded none, as the
    /// default KVM records at vCPU init).
    fn pmu_one_reg_ctx(&self, vcpu: usize) -> (u8, hyperprof_arch::PmuVer, u64) {
        let vm = &self.vms[self.vcpus[vcpu].vm].pmu;
        let pmu = vm.pmu().or(self.host_pmus.first());
        let version = pmu.map_or(hyperprof_arch::PmuVer::V3, |p| p.version);
        let nr = match vm.pmu() {
            Some(_) => vm.nr_counters(),
            None => pmu.map_or(0, HostPmu::guest_counters),
        };
        let mask = hyperprof_arch::pm_counter_bits::counter_range(0, nr)
            | hyperprof_arch::pm_counter_bits::C.mask();
        (nr, version, mask)
    }

    /// KVM_GET_ONE_REG of a PMU register, as KVM's userspace accessors
    /// answer: PMCR_EL0 with the VM's N; a SET/CLR pair both the same
    /// bitmap, masked to the guest's counters; PMSWINC_EL0 reads as zero;
    /// counters and event types as the vCPU holds them (also those above
    /// N).
    fn get_pmu_reg(&self, vcpu: usize, reg: SysReg) -> u64 {
        let (nr, _, mask) = self.pmu_one_reg_ctx(vcpu);
        let p = &self.vcpus[vcpu].pmu;
        match reg {
            SysReg::PMCR_EL0 => hyperprof_arch::pmcr_el0::N.set(p.pmcr, u64::from(nr)),
            SysReg::PMCNTENSET_EL0 | SysReg::PMCNTENCLR_EL0 => p.cnten & mask,
            SysReg::PMINTENSET_EL1 | SysReg::PMINTENCLR_EL1 => p.inten & mask,
            SysReg::PMOVSSET_EL0 | SysReg::PMOVSCLR_EL0 => p.ovs & mask,
            SysReg::PMSELR_EL0 => p.selr,
            SysReg::PMCCNTR_EL0 => p.ccntr,
            SysReg::PMUSERENR_EL0 => p.userenr,
            SysReg::PMEVCNTR_EL0(n) => p.evcntr[usize::from(n.index())],
            SysReg::PMEVTYPER_EL0(n) => p.evtyper[usize::from(n.index())],
            SysReg::PMCCFILTR_EL0 => p.ccfiltr,
            // PMSWINC_EL0, the one other listed register: RAZ.
            _ => 0,
        }
    }

    /// KVM_SET_ONE_REG of a PMU register, with KVM's semantics:
    /// PMCR_EL0.N sets the VM's number of counters before it ran (when
    /// SET_NR_COUNTERS would accept it, else ignored), its other stored
    /// bits kept (P and C do not reset anything); a SET register ORs and
    /// a CLR register clears, masked to the guest's counters (PMOVSSET_EL0
    /// so carries a pending overflow across); PMSWINC_EL0 is ignored;
    /// RES0 bits are dropped. The state then goes to the hardware at the
    /// next load, as after a guest access.
    fn set_pmu_reg(&mut self, vcpu: usize, reg: SysReg, val: u64) {
        use hyperprof_arch::{pmccfiltr_el0, pmcr_el0, pmselr_el0, pmuserenr_el0};
        let vm = self.vcpus[vcpu].vm;
        if reg == SysReg::PMCR_EL0 {
            let n = u8::try_from(pmcr_el0::N.get(val)).unwrap_or(u8::MAX);
            let default = self.host_pmus.first();
            self.vms[vm].pmu.set_nr_from_pmcr(n, default);
        }
        let (nr, version, mask) = self.pmu_one_reg_ctx(vcpu);
        let never = |_: u16| false;
        let ctx = VpmuCtx {
            mode: VpmuMode::Emulated,
            nr,
            version,
            fgt: false,
            nvhe: false,
            allowed: &never,
        };
        let v = &mut self.vcpus[vcpu];
        let p = &mut v.pmu;
        let bits = val & mask;
        match reg {
            SysReg::PMCR_EL0 => p.pmcr = ctx.pmcr_stored(val),
            SysReg::PMCNTENSET_EL0 => p.cnten |= bits,
            SysReg::PMCNTENCLR_EL0 => p.cnten &= !bits,
            SysReg::PMINTENSET_EL1 => p.inten |= bits,
            SysReg::PMINTENCLR_EL1 => p.inten &= !bits,
            SysReg::PMOVSSET_EL0 => p.ovs |= bits,
            SysReg::PMOVSCLR_EL0 => p.ovs &= !bits,
            SysReg::PMSELR_EL0 => p.selr = val & pmselr_el0::SEL.mask(),
            SysReg::PMCCNTR_EL0 => p.ccntr = val,
            SysReg::PMUSERENR_EL0 => p.userenr = val & !pmuserenr_el0::RES0,
            SysReg::PMEVCNTR_EL0(n) => {
                // 32-bit counters before FEAT_PMUv3p5.
                let keep = if version.has_lp() {
                    val
                } else {
                    val & 0xFFFF_FFFF
                };
                p.evcntr[usize::from(n.index())] = keep;
            }
            SysReg::PMEVTYPER_EL0(n) => {
                p.evtyper[usize::from(n.index())] = val & ctx.evtyper_writable();
            }
            SysReg::PMCCFILTR_EL0 => p.ccfiltr = val & !pmccfiltr_el0::RES0,
            // PMSWINC_EL0: WI.
            _ => return,
        }
        v.pmu_virq = p.irq_level(&ctx);
        v.pmu_live = true;
        // The event types a CPU holds for this vCPU may be stale now.
        for hw in &mut self.cpu_pmu {
            if hw.types_of == Some(vcpu) {
                hw.types_of = None;
            }
        }
    }
}
