//! Trapped system-register accesses: the exit, the emulation, the entry
//! (KVM's sys_regs.c role).

use super::*;

impl GuestCpu<'_> {
    /// A trapped access: exit, emulate, enter.
    pub(super) fn trap(&mut self, reg: SysReg, write: Option<u64>) -> Result<u64, AccessFault> {
        let fail = |_| AccessFault::Trapped {
            to: ExceptionLevel::EL2,
        };
        self.kvm.vcpus[self.vcpu].stats.trap_exits += 1;
        let el = self.pe().el();
        self.leave().map_err(fail)?;
        // The guest's first SPE access makes its SPE state live.
        let v = &self.kvm.vcpus[self.vcpu];
        let lazy = v.features.spe && !v.spe_live && !v.unsupported_cpu && reg.is_spe_el1();
        if lazy {
            self.kvm.spe_activate(self.vcpu, self.cpu).map_err(fail)?;
        }
        let r = if reg.unit() == Unit::Pmu {
            self.pmu_trap(reg, write, el)
        } else {
            (!(lazy && reg.unit() == Unit::SpeSampling)).then(|| self.emulate(reg, write))
        };
        // Back to the Exception level that trapped (EL0 PMU accesses too).
        self.enter(el).map_err(fail)?;
        match r {
            Some(r) => r,
            // A sampling register, or an untrapped PMU register, is the
            // guest's own on the hardware now: the access is re-executed
            // there. (Through `access`, so that an EL0 PMU access that only
            // made the PMU state live meets the guest's PMUSERENR_EL0 and,
            // if that allows it, traps again to be emulated, rather than
            // leaking the hardware's trap to EL2.)
            None => self.access(reg, write),
        }
    }

    /// The VM's ID_AA64DFR0_EL1: the hardware's, with PMSVer the VM's SPE
    /// level (the SPU's unless the VMM lowered it; 0 without the SPE feature).
    pub(super) fn guest_id_aa64dfr0(&mut self, spu: Option<&Spu>) -> u64 {
        use hyperprof_arch::{id_aa64dfr0_el1 as id, PmsVer};
        let hw = self
            .kvm
            .machine
            .cpu(self.cpu)
            .and_then(|mut c| c.read(SysReg::ID_AA64DFR0_EL1).ok())
            .unwrap_or(0);
        let v = &self.kvm.vcpus[self.vcpu];
        let level = match (v.features.spe, spu) {
            (true, Some(_)) => self.kvm.vms[self.vm].spe.guest_pmsver().unwrap_or_else(|| {
                PmsVer::from_field(id::PMSVer.get(hw)).unwrap_or(PmsVer::NotImplemented)
            }),
            _ => PmsVer::NotImplemented,
        };
        // A vCPU without the PMU feature has no PMU.
        let hw = if v.features.pmu_v3 {
            hw
        } else {
            id::PMUVer.set(hw, 0)
        };
        id::PMSVer.set(hw, level.to_field())
    }

    pub(super) fn emulate(&mut self, reg: SysReg, write: Option<u64>) -> Result<u64, AccessFault> {
        if let Some(r) = self.timer_emulate(reg, write) {
            return r;
        }
        let undef = Err(AccessFault::Undefined);
        let vcpu = self.vcpu;
        let vm = self.vm;
        let spu = {
            let id = self.kvm.vms[vm].spe.spu();
            self.kvm.spus.iter().find(|s| Some(s.id) == id).cloned()
        };
        if (reg, write) == (SysReg::ID_AA64DFR0_EL1, None) {
            return Ok(self.guest_id_aa64dfr0(spu.as_ref()));
        }
        // SGI generation traps with HCR_EL2.IMO: the vGIC sends it.
        match (reg, write) {
            (SysReg::ICC_SGI1R_EL1 | SysReg::ICC_ASGI1R_EL1, Some(v)) if self.has_vgic() => {
                self.vgic_sgi(v, true);
                return Ok(0);
            }
            (SysReg::ICC_SGI0R_EL1, Some(v)) if self.has_vgic() => {
                self.vgic_sgi(v, false);
                return Ok(0);
            }
            _ => {}
        }
        let Some(spu) = spu else { return undef };
        match (reg, write) {
            (SysReg::PMBIDR_EL1, None) => Ok(self.kvm.vms[vm].spe.guest_pmbidr(&spu)),
            (SysReg::PMSIDR_EL1, None) => Ok(self.kvm.vms[vm].spe.guest_pmsidr(&spu)),
            // Read-only ID registers: a write is UNDEFINED.
            (SysReg::PMBIDR_EL1 | SysReg::PMSIDR_EL1, Some(_)) => undef,
            (SysReg::PMBLIMITR_EL1, None) => Ok(self.kvm.vcpus[vcpu].spe.buffer.pmblimitr_el1),
            (SysReg::PMBPTR_EL1, None) => Ok(self.kvm.vcpus[vcpu].spe.buffer.pmbptr_el1),
            (SysReg::PMBSR_EL1, None) => Ok(self.kvm.vcpus[vcpu].spe.buffer.pmbsr_el1),
            (SysReg::PMBSR_EL1, Some(v)) => {
                self.kvm.vcpus[vcpu].spe.buffer.pmbsr_el1 = v & !pmbsr_el1::RES0;
                // Under VHE the hardware holds the guest's collision flag
                // while the vCPU is loaded (see `switch::exit`): a guest
                // that clears it clears the hardware's too. Never S: the
                // virtual PMBIRQ is the copy's S, not the physical line.
                if self.kvm.mode == HostMode::Vhe && self.kvm.vcpus[vcpu].spe_live {
                    let coll = v & pmbsr_el1::COLL.mask();
                    let mut c = self
                        .kvm
                        .machine
                        .cpu(self.cpu)
                        .ok_or(AccessFault::Undefined)?;
                    c.write(SysReg::PMBSR_EL1, coll)?;
                }
                Ok(0)
            }
            (SysReg::PMBPTR_EL1 | SysReg::PMBLIMITR_EL1, Some(v)) => {
                let mut next = self.kvm.vcpus[vcpu].spe.buffer;
                if reg == SysReg::PMBPTR_EL1 {
                    next.pmbptr_el1 = v;
                } else {
                    next.pmblimitr_el1 = v & !pmblimitr_el1::RES0;
                }
                self.repin(next)?;
                // repin may have raised an event in PMBSR: keep it.
                let b = &mut self.kvm.vcpus[vcpu].spe.buffer;
                b.pmbptr_el1 = next.pmbptr_el1;
                b.pmblimitr_el1 = next.pmblimitr_el1;
                Ok(0)
            }
            (r, w) if r.unit() == Unit::SpeSampling && self.kvm.vcpus[vcpu].spe_live => {
                self.emulate_sampling(r, w)
            }
            _ => undef,
        }
    }
}
