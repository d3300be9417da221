//! The entry and exit halves of the world switch, VHE and nVHE, in the
//! place of KVM's hyp/vhe/switch.c and hyp/nvhe/switch.c.

use super::spe::stage2_fault_as_external_abort;
use super::*;

impl GuestCpu<'_> {
    /// Entry: guest HCR_EL2 and stage 2, the SPE entry half, ERET to the
    /// guest's `to` (EL1 at KVM_RUN; the level an exit interrupted when
    /// the guest resumes after it).
    pub(super) fn enter(&mut self, to: ExceptionLevel) -> Result<(), String> {
        if self.kvm.mode == HostMode::Nvhe {
            return self.enter_nvhe(to);
        }
        let vttbr = {
            let vm = &self.kvm.vms[self.vm];
            vm.s2.root | vm.vmid << 48
        };
        let spe = self.kvm.vcpus[self.vcpu].features.spe;
        let irq_hcr = self.kvm.guest_irq_hcr(self.vm);
        {
            let mut c = self.kvm.machine.cpu(self.cpu).ok_or("no such CPU")?;
            c.write(SysReg::VTTBR_EL2, vttbr)
                .map_err(access(SysReg::VTTBR_EL2))?;
            let hcr = hcr_el2::E2H.set(HCR_VM, 1) | irq_hcr;
            c.write(SysReg::HCR_EL2, hcr)
                .map_err(access(SysReg::HCR_EL2))?;
        }
        // After an MMU-notifier event the buffer goes back to the hardware
        // only once it is pinned again.
        if spe {
            self.repin_if_needed();
        }
        let v = &self.kvm.vcpus[self.vcpu];
        // switch::enter and switch::exit check the saved buffer is enabled
        // themselves; `live` adds the pin, and what counts as a profiling
        // round trip (a buffer left unpinned has an Rlimit exit pending,
        // before which nothing of the guest's runs).
        let live = spe && !v.needs_repin && v.spe.buffer.enabled() && self.buffer_pinned();
        let guest = v.spe;
        let mut c = self.kvm.machine.cpu(self.cpu).ok_or("no such CPU")?;
        let before = c.pe().access_stats();
        if live {
            switch::enter(&mut c, &guest).map_err(|e| format!("SPE entry: {e}"))?;
        }
        let after = c.pe().access_stats();
        let v = &mut self.kvm.vcpus[self.vcpu];
        v.stats.entries += 1;
        v.stats.live_trips += live as u64;
        v.stats.spe_switch += after - before;
        if live {
            v.stats.spe_switch_live += after - before;
        }
        self.buffer_live = live;
        self.pmu_enter()?;
        self.vgic_flush()?;
        self.pe().eret(to);
        Ok(())
    }

    /// Exit: exception entry to EL2, the SPE exit half, host HCR_EL2.
    pub(super) fn leave(&mut self) -> Result<(), String> {
        if self.kvm.mode == HostMode::Nvhe {
            return self.leave_nvhe();
        }
        self.pe().exception_entry(ExceptionLevel::EL2);
        self.vgic_sync()?;
        let live = std::mem::take(&mut self.buffer_live);
        let mut guest = self.kvm.vcpus[self.vcpu].spe;
        let mut c = self.kvm.machine.cpu(self.cpu).ok_or("no such CPU")?;
        let before = c.pe().access_stats();
        let moved =
            live && switch::exit(&mut c, &mut guest).map_err(|e| format!("SPE exit: {e}"))?;
        let after = c.pe().access_stats();
        // Only an event the unit raised is rewritten, never a PMBSR value
        // the guest wrote itself.
        if moved && stage2_fault_as_external_abort(&mut guest.buffer) {
            self.kvm.vcpus[self.vcpu].stats.stage2_aborts += 1;
        }
        let hcr = hcr_el2::E2H.set(hcr_el2::TGE.set(0, 1), 1);
        c.write(SysReg::HCR_EL2, hcr)
            .map_err(access(SysReg::HCR_EL2))?;
        c.isb();
        let v = &mut self.kvm.vcpus[self.vcpu];
        v.spe = guest;
        v.stats.spe_switch += after - before;
        if live {
            v.stats.spe_switch_live += after - before;
        }
        Ok(())
    }

    /// nVHE entry: the hypervisor at EL2 stops and drains the host's EL1
    /// profiling session and disables its buffer (seed 003, and what the
    /// series noted nVHE still needed), switches the EL1 context to the
    /// guest's, hands the buffer to EL1 for the guest (or keeps SPE trapped
    /// while the vCPU's SPE state is lazy), restores the guest's sampling
    /// and buffer registers.
    pub(super) fn enter_nvhe(&mut self, to: ExceptionLevel) -> Result<(), String> {
        self.pe().exception_entry(ExceptionLevel::EL2);
        let (vcpu, vm) = (self.vcpu, self.vm);
        let f = self.kvm.spe_features(vcpu);
        let (vttbr, cntvoff, perfmon) = {
            let v = &self.kvm.vms[vm];
            (v.s2.root | v.vmid << 48, v.cntvoff, v.perfmon)
        };
        let irq_hcr = self.kvm.guest_irq_hcr(vm);
        let v = &self.kvm.vcpus[vcpu];
        let spe_state = v.features.spe && !v.unsupported_cpu && v.spe_live;
        let (g_ttbr, g_ctx) = (v.ttbr0_el1, v.contextidr_el1);
        let hw_f = self.kvm.hw_spe_features(self.cpu);
        let tpms = u64::from(self.kvm.sampling_trapped(vcpu));
        let mut cost = AccessStats::default();
        let mut c = self.kvm.machine.cpu(self.cpu).ok_or("no such CPU")?;
        let t0 = c.pe().access_stats();
        // A CPU without SPE has no host session to stop (its SPE registers
        // are UNDEFINED): a PMU-only nVHE host.
        let host_spe = if c.pe().has_spe() {
            switch::nvhe_save_host(&mut c, spe_state.then_some(hw_f))
                .map_err(|e| format!("nVHE host save: {e}"))?
        } else {
            switch::HostSpeNvhe::default()
        };
        cost += c.pe().access_stats() - t0;
        let h_ttbr = c
            .read(SysReg::TTBR0_EL1)
            .map_err(access(SysReg::TTBR0_EL1))?;
        let h_ctx = c
            .read(SysReg::CONTEXTIDR_EL1)
            .map_err(access(SysReg::CONTEXTIDR_EL1))?;
        let h_mdcr = c.read(SysReg::MDCR_EL2).map_err(access(SysReg::MDCR_EL2))?;
        for (reg, val) in [
            (SysReg::TTBR0_EL1, g_ttbr),
            (SysReg::CONTEXTIDR_EL1, g_ctx),
            (SysReg::VTTBR_EL2, vttbr),
            (SysReg::HCR_EL2, HCR_VM | irq_hcr),
            (SysReg::CNTVOFF_EL2, cntvoff),
            (
                SysReg::HDFGRTR_EL2,
                hyperprof_arch::hdfgrtr_el2::value_trapping(
                    hyperprof_arch::hdfgrtr_el2::PMBIDR_EL1.mask()
                        | hyperprof_arch::hdfgrtr_el2::PMSIDR_EL1.mask(),
                ),
            ),
        ] {
            c.write(reg, val).map_err(access(reg))?;
        }
        let t1 = c.pe().access_stats();
        let mdcr = if spe_state {
            mdcr_el2::TPMS.set(mdcr_el2::E2PB.set(h_mdcr, mdcr_el2::E2PB_EL1_TRAP), tpms)
        } else {
            // Lazy or without SPE: EL2 owns the buffer, EL1 accesses trap.
            mdcr_el2::TPMS.set(mdcr_el2::E2PB.set(h_mdcr, mdcr_el2::E2PB_EL2), 1)
        };
        // The nVHE vPMU is emulated: every PMU access traps (UNDEFINED for
        // a vCPU without the PMU feature).
        let mdcr = mdcr_el2::TPMCR.set(mdcr_el2::TPM.set(mdcr, 1), 1);
        c.write(SysReg::MDCR_EL2, mdcr)
            .map_err(access(SysReg::MDCR_EL2))?;
        if spe_state {
            let pct = if perfmon {
                hyperprof_arch::pct::PHYS
            } else {
                hyperprof_arch::pct::VIRT
            };
            c.write(
                SysReg::PMSCR_EL2,
                hyperprof_arch::pmscr_el2::PCT.set(0, pct),
            )
            .map_err(access(SysReg::PMSCR_EL2))?;
        }
        c.isb();
        if spe_state {
            let sampling = self.kvm.vcpus[vcpu].spe.sampling;
            let mut c = self.kvm.machine.cpu(self.cpu).ok_or("no such CPU")?;
            switch::restore_sampling(&mut c, &sampling, f)
                .map_err(|e| format!("sampling restore: {e}"))?;
        }
        let mut c = self.kvm.machine.cpu(self.cpu).ok_or("no such CPU")?;
        cost += c.pe().access_stats() - t1;
        self.kvm.vcpus[vcpu].nvhe_host = Some(NvheHost {
            spe: host_spe,
            ttbr0_el1: h_ttbr,
            contextidr_el1: h_ctx,
            mdcr_el2: h_mdcr,
        });
        if spe_state {
            self.repin_if_needed();
        }
        let v = &self.kvm.vcpus[vcpu];
        // As in `enter`: the pin, and the round trips counted as profiling.
        let live = spe_state && !v.needs_repin && v.spe.buffer.enabled() && self.buffer_pinned();
        let guest = v.spe;
        let mut c = self.kvm.machine.cpu(self.cpu).ok_or("no such CPU")?;
        let t2 = c.pe().access_stats();
        if live {
            switch::enter(&mut c, &guest).map_err(|e| format!("SPE entry: {e}"))?;
        }
        cost += c.pe().access_stats() - t2;
        let v = &mut self.kvm.vcpus[vcpu];
        v.stats.entries += 1;
        v.stats.live_trips += live as u64;
        v.stats.spe_switch += cost;
        if live {
            v.stats.spe_switch_live += cost;
        }
        self.buffer_live = live;
        self.timer_enter_nvhe()?;
        self.pmu_switch_to_guest()?;
        self.vgic_flush()?;
        self.pe().eret(to);
        Ok(())
    }

    /// nVHE exit: the guest's buffer drained and saved, its sampling
    /// registers saved, the host's EL1 context and profiling session back;
    /// the host kernel resumes at EL1.
    pub(super) fn leave_nvhe(&mut self) -> Result<(), String> {
        self.pe().exception_entry(ExceptionLevel::EL2);
        self.vgic_sync()?;
        self.timer_exit_nvhe()?;
        self.pmu_switch_to_host()?;
        let vcpu = self.vcpu;
        let f = self.kvm.spe_features(vcpu);
        let live = std::mem::take(&mut self.buffer_live);
        let v = &self.kvm.vcpus[vcpu];
        let spe_state = v.features.spe && !v.unsupported_cpu && v.spe_live;
        let host = v.nvhe_host.ok_or("exit without a saved host")?;
        let mut guest = v.spe;
        let hw_f = self.kvm.hw_spe_features(self.cpu);
        let mut cost = AccessStats::default();
        let mut c = self.kvm.machine.cpu(self.cpu).ok_or("no such CPU")?;
        let t0 = c.pe().access_stats();
        let moved =
            live && switch::exit(&mut c, &mut guest).map_err(|e| format!("SPE exit: {e}"))?;
        if spe_state {
            guest.sampling =
                switch::save_sampling(&mut c, f).map_err(|e| format!("sampling save: {e}"))?;
        }
        cost += c.pe().access_stats() - t0;
        let g_ttbr = c
            .read(SysReg::TTBR0_EL1)
            .map_err(access(SysReg::TTBR0_EL1))?;
        let g_ctx = c
            .read(SysReg::CONTEXTIDR_EL1)
            .map_err(access(SysReg::CONTEXTIDR_EL1))?;
        for (reg, val) in [
            (SysReg::TTBR0_EL1, host.ttbr0_el1),
            (SysReg::CONTEXTIDR_EL1, host.contextidr_el1),
            // The host's VMID (0), as __load_host_stage2(): the host's
            // EL1&0 walks must not be tagged as the guest's.
            (SysReg::VTTBR_EL2, 0),
            (SysReg::HCR_EL2, 0),
            (SysReg::CNTVOFF_EL2, 0),
            (
                SysReg::HDFGRTR_EL2,
                hyperprof_arch::hdfgrtr_el2::TRAP_NOTHING,
            ),
        ] {
            c.write(reg, val).map_err(access(reg))?;
        }
        let t1 = c.pe().access_stats();
        c.write(SysReg::MDCR_EL2, host.mdcr_el2)
            .map_err(access(SysReg::MDCR_EL2))?;
        c.isb();
        switch::nvhe_restore_host(&mut c, &host.spe, hw_f)
            .map_err(|e| format!("nVHE host restore: {e}"))?;
        cost += c.pe().access_stats() - t1;
        let v = &mut self.kvm.vcpus[vcpu];
        if moved && stage2_fault_as_external_abort(&mut guest.buffer) {
            v.stats.stage2_aborts += 1;
        }
        v.spe = guest;
        v.ttbr0_el1 = g_ttbr;
        v.contextidr_el1 = g_ctx;
        v.nvhe_host = None;
        v.stats.spe_switch += cost;
        if live {
            v.stats.spe_switch_live += cost;
        }
        self.pe().eret(ExceptionLevel::EL1);
        Ok(())
    }
}
