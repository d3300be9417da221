//! The in-kernel irqchip: `KVM_CREATE_DEVICE` of a
//! `KVM_DEV_TYPE_ARM_VGIC_V3` and its attributes, and the vGIC's hooks in
//! the hypervisor (KVM's vgic glue in arm.c and the world switch):
//! ICH_VMCR_EL2 and the active priorities at load and put, the list
//! registers at every entry and exit, distributor and redistributor MMIO
//! emulated at the stage-2 abort, trapped ICC_SGI1R_EL1 writes, and the
//! wake-up check of a vCPU waiting for an interrupt.
//!
//! A VM without a vGIC keeps the single virtual interrupt line (its PMU
//! and SPE levels ORed) of the code guests that predate it.

use super::*;
use crate::uapi::{
    KVM_DEV_ARM_VGIC_CTRL_INIT, KVM_DEV_ARM_VGIC_GRP_ADDR, KVM_DEV_ARM_VGIC_GRP_CTRL,
    KVM_DEV_ARM_VGIC_GRP_NR_IRQS,
};
use crate::vgic::{VgicError, VgicStats, VgicV3, NR_IRQS};
use hyperprof_sim::pe::CodeContext;

fn vgic_err(errno: Errno, why: &str) -> VgicError {
    VgicError {
        errno,
        why: why.to_string(),
    }
}

impl Kvm {
    /// KVM_CREATE_DEVICE(`KVM_DEV_TYPE_ARM_VGIC_V3`) for VM `vm`:
    /// `EEXIST` when it has one, `EBUSY` once a vCPU ran.
    pub fn create_vgic_v3(&mut self, vm: usize) -> Result<(), Errno> {
        let v = self.vms.get_mut(vm).ok_or(Errno::ENODEV)?;
        if v.vgic.is_some() {
            return Err(Errno::EEXIST);
        }
        if v.spe.has_run() {
            return Err(Errno::EBUSY);
        }
        v.vgic = Some(VgicV3::new(GUEST_RAM_IPA, v.ram_bytes));
        Ok(())
    }

    /// KVM_SET_DEVICE_ATTR on VM `vm`'s vGIC: `KVM_DEV_ARM_VGIC_GRP_ADDR`
    /// (the distributor's or the redistributors' base),
    /// `KVM_DEV_ARM_VGIC_GRP_NR_IRQS` (only the modelled 256 is accepted),
    /// `KVM_DEV_ARM_VGIC_GRP_CTRL`/`KVM_DEV_ARM_VGIC_CTRL_INIT` (with
    /// every vCPU the VM has). `ENODEV` without a vGIC, `ENXIO` for an
    /// unknown group or attribute; the device's own checks otherwise.
    pub fn set_vgic_attr(
        &mut self,
        vm: usize,
        group: u32,
        attr: u64,
        arg: UserPtr<u64>,
    ) -> Result<(), VgicError> {
        let vcpus = self.vcpus.iter().filter(|c| c.vm == vm).count();
        let v = self
            .vms
            .get_mut(vm)
            .ok_or_else(|| vgic_err(Errno::ENODEV, "no such VM"))?;
        let g = v
            .vgic
            .as_mut()
            .ok_or_else(|| vgic_err(Errno::ENODEV, "the VM has no vGIC"))?;
        let read = |arg: UserPtr<u64>| {
            arg.read()
                .map_err(|e| vgic_err(e, "the attribute's address faults"))
        };
        match (group, attr) {
            (KVM_DEV_ARM_VGIC_GRP_ADDR, kind) => g.set_addr(kind, read(arg)?),
            (KVM_DEV_ARM_VGIC_GRP_NR_IRQS, 0) => {
                let n = read(arg)?;
                if g.initialized() {
                    Err(vgic_err(Errno::EBUSY, "the vGIC is initialised already"))
                } else if n == u64::from(NR_IRQS) {
                    Ok(())
                } else {
                    Err(vgic_err(
                        Errno::EINVAL,
                        "the vGIC models 256 interrupts (SPIs 32..255)",
                    ))
                }
            }
            (KVM_DEV_ARM_VGIC_GRP_CTRL, KVM_DEV_ARM_VGIC_CTRL_INIT) => {
                g.init(vcpus)?;
                let mut sources = Vec::new();
                for c in self.vcpus.iter().filter(|c| c.vm == vm) {
                    let pmu = c.features.pmu_v3.then(|| c.pmu_cfg.irq()).flatten();
                    let spe = c.features.spe.then(|| c.spe_cfg.irq()).flatten();
                    sources.push((pmu, spe));
                }
                if let Some(g) = self.vms[vm].vgic.as_mut() {
                    for (i, (pmu, spe)) in sources.into_iter().enumerate() {
                        g.set_sources(i, pmu, spe);
                    }
                }
                Ok(())
            }
            _ => Err(vgic_err(Errno::ENXIO, "no such vGIC attribute")),
        }
    }

    /// VM `vm`'s vGIC.
    pub fn vgic(&self, vm: usize) -> Option<&VgicV3> {
        self.vms.get(vm).and_then(|v| v.vgic.as_ref())
    }

    /// The index of vCPU `vcpu` in its VM (its redistributor).
    fn vgic_index(&self, vcpu: usize) -> usize {
        let vm = self.vcpus[vcpu].vm;
        self.vcpus[..vcpu].iter().filter(|c| c.vm == vm).count()
    }

    /// The vGIC of vCPU `vcpu`'s VM, once initialised, and the vCPU's index.
    fn vcpu_vgic(&self, vcpu: usize) -> Option<(&VgicV3, usize)> {
        let v = self.vcpus.get(vcpu)?;
        let g = self.vms[v.vm].vgic.as_ref().filter(|g| g.initialized())?;
        Some((g, self.vgic_index(vcpu)))
    }

    /// What the vGIC counted for vCPU `vcpu` (list register accesses,
    /// maintenance exits, acknowledged interrupts ...).
    pub fn vgic_stats(&self, vcpu: usize) -> Option<VgicStats> {
        let (g, i) = self.vcpu_vgic(vcpu)?;
        g.stats(i)
    }

    /// Whether vCPU `vcpu` has an interrupt it would take at its priority
    /// mask (KVM's `kvm_vgic_vcpu_pending_irq`): a vCPU idle in WFI wakes.
    pub fn vgic_vcpu_pending(&self, vcpu: usize) -> bool {
        let Some((g, i)) = self.vcpu_vgic(vcpu) else {
            return false;
        };
        // While loaded, the CPU interface holds the vCPU's mask.
        match self.vcpus[vcpu]
            .loaded_on
            .and_then(|cpu| self.machine.pe(cpu))
        {
            Some(pe) => {
                let pmr = hyperprof_arch::ich_vmcr_el2::VPMR.get(pe.gic().vmcr()) as u8;
                g.pending_for(i, pmr)
            }
            None => g.pending_saved(i),
        }
    }

    /// HCR_EL2's interrupt routing for VM `vm`'s guests: IMO and FMO with a
    /// vGIC (virtual interrupts from the GIC's virtual CPU interface).
    pub(super) fn guest_irq_hcr(&self, vm: usize) -> u64 {
        let on = self.vms[vm].vgic.as_ref().is_some_and(VgicV3::initialized);
        if on {
            hcr_el2::IMO.set(hcr_el2::FMO.set(0, 1), 1)
        } else {
            0
        }
    }

    /// Runs `f` on CPU `cpu` at EL2 (the nVHE host is at EL1: a hypercall
    /// in KVM), returning to the level it was at.
    fn at_el2<R>(
        &mut self,
        cpu: usize,
        f: impl FnOnce(&mut Option<VgicV3>, &mut dyn Cpu) -> R,
        vm: usize,
    ) -> Result<R, String> {
        let Kvm { machine, vms, .. } = self;
        let mut c = machine.cpu(cpu).ok_or("no such CPU")?;
        let el = c.pe().el();
        if el != ExceptionLevel::EL2 {
            c.pe().exception_entry(ExceptionLevel::EL2);
        }
        let r = f(&mut vms[vm].vgic, &mut c);
        if el != ExceptionLevel::EL2 {
            c.pe().eret(el);
        }
        Ok(r)
    }

    /// vcpu_load's vGIC part: ICH_VMCR_EL2 and the active priorities.
    pub(super) fn vgic_load(&mut self, vcpu: usize, cpu: usize) -> Result<(), String> {
        if self.vcpu_vgic(vcpu).is_none() {
            return Ok(());
        }
        let (vm, i) = (self.vcpus[vcpu].vm, self.vgic_index(vcpu));
        self.at_el2(cpu, |g, c| g.as_mut().map_or(Ok(()), |g| g.load(i, c)), vm)?
    }

    /// vcpu_put's vGIC part: ICH_VMCR_EL2 and the active priorities saved.
    pub(super) fn vgic_put(&mut self, vcpu: usize, cpu: usize) -> Result<(), String> {
        if self.vcpu_vgic(vcpu).is_none() {
            return Ok(());
        }
        let (vm, i) = (self.vcpus[vcpu].vm, self.vgic_index(vcpu));
        self.at_el2(cpu, |g, c| g.as_mut().map_or(Ok(()), |g| g.put(i, c)), vm)?
    }
}

impl GuestCpu<'_> {
    /// Whether the VM has an initialised vGIC.
    pub(super) fn has_vgic(&self) -> bool {
        self.kvm.vcpu_vgic(self.vcpu).is_some()
    }

    /// The level-sensitive interrupt lines of this vCPU as their sources
    /// drive them now, one entry per source (INTID, level): the PMU
    /// overflow interrupt (`PMCR_EL0.E && PMOVS & PMINTEN`), at its PMU IRQ
    /// attribute, and the SPE buffer interrupt (the guest's PMBSR_EL1.S),
    /// at its SPE IRQ attribute, and the EL1 virtual and physical timers
    /// at KVM's default PPIs.
    pub(super) fn line_levels(&self) -> Vec<(u32, bool)> {
        let v = &self.kvm.vcpus[self.vcpu];
        let mut lines = Vec::with_capacity(4);
        lines.push((VTIMER_INTID, self.vtimer_level()));
        lines.push((PTIMER_INTID, self.ptimer_level()));
        if v.features.pmu_v3 {
            if let Some(id) = v.pmu_cfg.irq() {
                lines.push((id, self.pmu_level()));
            }
        }
        if v.features.spe {
            if let Some(id) = v.spe_cfg.irq() {
                lines.push((id, self.virq_pending()));
            }
        }
        lines
    }

    /// Guest entry (at EL2): the vGIC's interrupts into the list registers.
    pub(super) fn vgic_flush(&mut self) -> Result<(), String> {
        if !self.has_vgic() {
            return Ok(());
        }
        let levels = self.line_levels();
        let i = self.kvm.vgic_index(self.vcpu);
        let Kvm { machine, vms, .. } = &mut *self.kvm;
        let mut c = machine.cpu(self.cpu).ok_or("no such CPU")?;
        match vms[self.vm].vgic.as_mut() {
            Some(g) => g.flush(i, &mut c, &levels),
            None => Ok(()),
        }
    }

    /// Guest exit (at EL2): the list registers' state back into the vGIC.
    pub(super) fn vgic_sync(&mut self) -> Result<(), String> {
        if !self.has_vgic() {
            return Ok(());
        }
        let before = self.kvm.vgic_stats(self.vcpu).unwrap_or_default();
        let i = self.kvm.vgic_index(self.vcpu);
        let Kvm { machine, vms, .. } = &mut *self.kvm;
        let mut c = machine.cpu(self.cpu).ok_or("no such CPU")?;
        if let Some(g) = vms[self.vm].vgic.as_mut() {
            g.sync(i, &mut c)?;
        }
        // The PMBIRQs and PMU interrupts the guest took: the vCPU's counts,
        // as the single-line path keeps them.
        let after = self.kvm.vgic_stats(self.vcpu).unwrap_or_default();
        let s = &mut self.kvm.vcpus[self.vcpu].stats;
        s.virqs += after.acked_spe - before.acked_spe;
        s.pmu_virqs += after.acked_pmu - before.acked_pmu;
        Ok(())
    }

    /// Counts an exit for the maintenance interrupt.
    pub(super) fn vgic_maintenance_exit(&mut self) {
        let i = self.kvm.vgic_index(self.vcpu);
        if let Some(g) = self.kvm.vms[self.vm].vgic.as_mut() {
            if let Some(c) = g.cpus.get_mut(i) {
                c.stats.maintenance_exits += 1;
            }
        }
    }

    /// A trapped ICC_SGI1R_EL1 (`group1`) or ICC_SGI0R_EL1 write.
    pub(super) fn vgic_sgi(&mut self, value: u64, group1: bool) {
        let i = self.kvm.vgic_index(self.vcpu);
        if let Some(g) = self.kvm.vms[self.vm].vgic.as_mut() {
            g.dispatch_sgi(i, value, group1);
        }
    }

    /// Whether an access at `ipa` is the vGIC's distributor or a
    /// redistributor.
    pub(super) fn vgic_claims(&self, ipa: u64) -> bool {
        self.kvm.vms[self.vm]
            .vgic
            .as_ref()
            .is_some_and(|g| g.claims(ipa))
    }

    /// A stage-2 abort at `ipa` the vGIC emulates in the hypervisor: the
    /// access completes (a read lands in the register) and the guest goes
    /// on past it. False when the address is not the vGIC's.
    pub(super) fn vgic_mmio(&mut self, code: &mut CodeContext, m: &Mmio) -> bool {
        let i = self.kvm.vgic_index(self.vcpu);
        let Some(g) = self.kvm.vms[self.vm]
            .vgic
            .as_mut()
            .filter(|g| g.claims(m.ipa))
        else {
            return false;
        };
        let done = match m.write {
            Some(v) => {
                let v = if m.len < 8 {
                    v & ((1u64 << (8 * u32::from(m.len))) - 1)
                } else {
                    v
                };
                g.mmio_write(i, m.ipa, m.len, v);
                *m
            }
            None => m.with_data(g.mmio_read(i, m.ipa, m.len)),
        };
        Kvm::complete_mmio(code, &done);
        true
    }

    /// Whether a vCPU waiting for an interrupt wakes: with a vGIC, a
    /// deliverable interrupt at its priority mask (the lines sampled
    /// again); without, its PMBIRQ, PMU or timer level.
    pub(super) fn wakes_from_wfi(&mut self) -> bool {
        if !self.has_vgic() {
            return self.irq_line();
        }
        let levels = self.line_levels();
        let i = self.kvm.vgic_index(self.vcpu);
        if let Some(g) = self.kvm.vms[self.vm].vgic.as_mut() {
            for (id, level) in levels {
                g.set_line_level(i, id, level);
            }
        }
        self.kvm.vgic_vcpu_pending(self.vcpu)
    }
}
