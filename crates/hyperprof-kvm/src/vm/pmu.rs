//! The hypervisor's side of the guest PMU ([`crate::vpmu`]): when its state
//! moves between the vCPU and the hardware, the traps that keep the rest
//! with the hypervisor, and the virtual overflow interrupt.

use hyperprof_arch::{
    hdfgrtr_el2, hdfgwtr_el2, mdcr_el2, pm_counter_bits, pmcr_el0, AccessFault, Cpu,
    ExceptionLevel, SysReg,
};
use hyperprof_sim::pe::AccessStats;
use hyperprof_sim::pmu::View;

use super::{GuestCpu, Kvm};
use crate::pmu_attr::EventFilter;
use crate::uapi::{
    Errno, UserPtr, KVM_ARM_VCPU_PMU_V3_CTRL, KVM_ARM_VCPU_PMU_V3_ENABLE_PARTITION,
    KVM_ARM_VCPU_PMU_V3_FILTER, KVM_ARM_VCPU_PMU_V3_INIT, KVM_ARM_VCPU_PMU_V3_IRQ,
    KVM_ARM_VCPU_PMU_V3_SET_NR_COUNTERS, KVM_ARM_VCPU_PMU_V3_SET_PMU,
};

/// What a VMM sets up for a vCPU's PMU ([`Kvm::configure_pmu`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PmuSetup {
    /// The overflow interrupt (a PPI).
    pub irq: u32,
    /// Partitioned mode (else emulated).
    pub partitioned: bool,
    /// `SET_NR_COUNTERS`, or the default.
    pub nr_counters: Option<u8>,
    /// Event filters, in order.
    pub filters: Vec<EventFilter>,
}
use super::HostMode;
use crate::vpmu::{self, GuestPmu, HostPmuRegs, PmuSwitch, VpmuCtx, VpmuMode};

/// The SPE ID registers, which always trap (sanitised, or UNDEFINED for a
/// vCPU without SPE).
pub(super) const SPE_ID_TRAPS: u64 =
    hdfgrtr_el2::PMBIDR_EL1.mask() | hdfgrtr_el2::PMSIDR_EL1.mask();

impl Kvm {
    /// The guest PMU's mode, counters, PMU version and FGT on `cpu`, for a
    /// vCPU with the PMU feature.
    fn vpmu_parts(
        &self,
        vcpu: usize,
        cpu: usize,
    ) -> Option<(VpmuMode, u8, hyperprof_arch::PmuVer, bool)> {
        let v = self.vcpus.get(vcpu)?;
        if !v.features.pmu_v3 {
            return None;
        }
        let vm = &self.vms[v.vm].pmu;
        let mode = if vm.is_partitioned() {
            VpmuMode::Partitioned
        } else {
            VpmuMode::Emulated
        };
        let pe = self.machine.pe(cpu)?;
        Some((
            mode,
            vm.nr_counters(),
            pe.pmu().config().version,
            pe.has_fgt(),
        ))
    }

    /// Runs `f` on the vCPU's guest PMU, its context and CPU `cpu` (the
    /// hypervisor at EL2); `None` for a vCPU without a PMU. The access
    /// cost is added to `cost`.
    pub(super) fn with_vpmu<R>(
        &mut self,
        vcpu: usize,
        cpu: usize,
        cost: impl FnOnce(&mut super::VcpuStats) -> &mut AccessStats,
        f: impl FnOnce(&mut GuestPmu, &VpmuCtx<'_>, &mut dyn Cpu) -> R,
    ) -> Option<R> {
        let (mode, nr, version, fgt) = self.vpmu_parts(vcpu, cpu)?;
        let Kvm {
            machine,
            vms,
            vcpus,
            mode: host_mode,
            ..
        } = self;
        let v = &mut vcpus[vcpu];
        let vm_pmu = &vms[v.vm].pmu;
        let allowed = |e: u16| vm_pmu.event_allowed(e);
        let ctx = VpmuCtx {
            mode,
            nr,
            version,
            fgt,
            nvhe: *host_mode == HostMode::Nvhe,
            allowed: &allowed,
        };
        let mut c = machine.cpu(cpu)?;
        let before = c.pe().access_stats();
        let r = f(&mut v.pmu, &ctx, &mut c);
        let after = c.pe().access_stats();
        *cost(&mut v.stats) += after - before;
        Some(r)
    }

    /// MDCR_EL2 for `vcpu` while it runs on `cpu`, from the host's value
    /// and its SPE bits: the guest PMU's fields, or, for a vCPU without a
    /// PMU, every PMU access trapped (they are UNDEFINED for it).
    pub(super) fn pmu_mdcr(&self, vcpu: usize, cpu: usize, mdcr: u64) -> u64 {
        let v = &self.vcpus[vcpu];
        match self.vpmu_parts(vcpu, cpu) {
            Some((mode, nr, version, fgt)) => {
                let never = |_: u16| false;
                let ctx = VpmuCtx {
                    mode,
                    nr,
                    version,
                    fgt,
                    nvhe: self.mode == HostMode::Nvhe,
                    allowed: &never,
                };
                ctx.mdcr(mdcr, v.pmu_host.is_some())
            }
            None => mdcr_el2::TPMCR.set(mdcr_el2::TPM.set(mdcr, 1), 1),
        }
    }

    /// The fine-grained trap values for `vcpu` on `cpu`: the SPE ID
    /// registers always; the partitioned PMU's trapped registers while its
    /// state is live there.
    pub(super) fn fgt_values(&self, vcpu: usize, cpu: usize) -> (u64, u64) {
        let direct = self.pmu_direct(vcpu, cpu);
        if direct {
            vpmu::partitioned_fgt(SPE_ID_TRAPS)
        } else {
            (
                hdfgrtr_el2::value_trapping(SPE_ID_TRAPS),
                hdfgwtr_el2::TRAP_NOTHING,
            )
        }
    }

    /// The vCPU's PMU state is live on `cpu` in partitioned mode with FGT:
    /// the untrapped registers are the guest's own.
    fn pmu_direct(&self, vcpu: usize, cpu: usize) -> bool {
        self.vcpus[vcpu].pmu_host.is_some()
            && matches!(
                self.vpmu_parts(vcpu, cpu),
                Some((VpmuMode::Partitioned, _, _, true))
            )
    }

    /// Puts the guest PMU state on `cpu` (at load once the guest has
    /// touched its PMU, or at its first access): counters, enables, PMCR,
    /// PMUSERENR; the event types only when the CPU last held another
    /// vCPU's. The caller then writes MDCR_EL2 and the fine-grained traps.
    pub(super) fn pmu_load(&mut self, vcpu: usize, cpu: usize) -> Result<(), String> {
        let types = self.cpu_pmu[cpu].types_of != Some(vcpu);
        let host = HostPmuRegs {
            pmuserenr_el0: self.cpu_pmu[cpu].host_pmuserenr,
        };
        let r = self.with_vpmu(
            vcpu,
            cpu,
            |s| &mut s.pmu_load_put,
            |pmu, ctx, c| pmu.load(c, ctx, types),
        );
        match r {
            None => return Ok(()),
            Some(Err(f)) => return Err(format!("PMU load: {f}")),
            Some(Ok(())) => {}
        }
        self.cpu_pmu[cpu].types_of = Some(vcpu);
        let v = &mut self.vcpus[vcpu];
        v.pmu_host = Some(host);
        v.pmu_live = true;
        v.stats.pmu_live_loads += 1;
        Ok(())
    }

    /// Takes the guest PMU state back from `cpu` (at put): the hardware's
    /// guest counters stopped, the overflow flags with the vCPU.
    pub(super) fn pmu_put(&mut self, vcpu: usize, cpu: usize) -> Result<(), String> {
        let Some(host) = self.vcpus[vcpu].pmu_host else {
            return Ok(());
        };
        let direct = self.pmu_direct(vcpu, cpu);
        let r = self.with_vpmu(
            vcpu,
            cpu,
            |s| &mut s.pmu_load_put,
            |pmu, ctx, c| {
                pmu.put(c, ctx, host)?;
                Ok::<_, AccessFault>((pmu.selr, pmu.irq_level(ctx)))
            },
        );
        let v = &mut self.vcpus[vcpu];
        v.pmu_host = None;
        match r {
            Some(Ok((selr, level))) => {
                v.pmu_virq = level;
                if direct {
                    self.cpu_pmu[cpu].pmselr = selr;
                }
                Ok(())
            }
            Some(Err(f)) => Err(format!("PMU put: {f}")),
            None => Ok(()),
        }
    }

    /// The counters of the host's perf events on `cpu` that exclude guests
    /// (Linux's `kvm_set_pmu_events`/`kvm_clr_pmu_events`, as one bitmap):
    /// an nVHE host kernel at EL1 cannot tell its EL1 from a guest's by
    /// event filters, so the hypervisor stops them at every guest entry and
    /// starts them again at exit. A VHE host excludes guests with its
    /// filters; the bitmap is kept but not switched. Only counters the
    /// host keeps from guests (from `N - reserved` up, and not the cycle
    /// counter, which guests have): EINVAL otherwise; EBUSY while a vCPU
    /// is loaded on `cpu`.
    pub fn set_host_pmu_events(&mut self, cpu: usize, counters: u64) -> Result<(), Errno> {
        let n = self
            .machine
            .pe(cpu)
            .map(|p| p.pmu().config().counters.min(31))
            .ok_or(Errno::EINVAL)?;
        let first = self
            .host_pmus
            .iter()
            .find(|h| h.cpus.contains(&cpu))
            .map_or(0, |h| h.n().saturating_sub(h.reserved_for_host));
        if counters & !pm_counter_bits::counter_range(first, n) != 0 {
            return Err(Errno::EINVAL);
        }
        if self.vcpus.iter().any(|v| v.loaded_on == Some(cpu)) {
            return Err(Errno::EBUSY);
        }
        self.cpu_pmu[cpu].events_host = counters;
        Ok(())
    }

    /// The host's PMUSERENR_EL0 on `cpu` changed (Linux's perf tells KVM
    /// through `kvm_set_pmuserenr()`): written to the hardware, and what
    /// every put restores from now on. Refused while a vCPU is loaded on
    /// the CPU (the hardware holds the guest's value then).
    pub fn set_host_pmuserenr(&mut self, cpu: usize, val: u64) -> Result<(), Errno> {
        if self.vcpus.iter().any(|v| v.loaded_on == Some(cpu)) {
            return Err(Errno::EBUSY);
        }
        let mut c = self.machine.cpu(cpu).ok_or(Errno::EINVAL)?;
        c.write(SysReg::PMUSERENR_EL0, val)
            .map_err(|_| Errno::EINVAL)?;
        let hw = c.read(SysReg::PMUSERENR_EL0).map_err(|_| Errno::EINVAL)?;
        self.cpu_pmu[cpu].host_pmuserenr = hw;
        Ok(())
    }

    /// KVM_ARM_VCPU_INIT on an existing vCPU (a vCPU reset): its PMU
    /// registers return to their reset values; the VM's configuration
    /// (the number of counters, the filter) stays. `EBUSY` while the vCPU
    /// is loaded.
    pub fn reset_vcpu(&mut self, vcpu: usize) -> Result<(), Errno> {
        let v = self.vcpus.get_mut(vcpu).ok_or(Errno::ENODEV)?;
        if v.loaded_on.is_some() {
            return Err(Errno::EBUSY);
        }
        v.pmu = GuestPmu::reset();
        v.pmu_live = false;
        v.pmu_virq = false;
        if let Some(hw) = self.cpu_pmu.iter_mut().find(|h| h.types_of == Some(vcpu)) {
            hw.types_of = None;
        }
        Ok(())
    }

    /// What a VMM does to give a vCPU its PMU: KVM_SET_DEVICE_ATTR of
    /// SET_PMU (the first host PMU) when it sets the number of counters
    /// (KVM requires an explicit PMU for that), the partition enable (when
    /// asked for), SET_NR_COUNTERS, each FILTER, IRQ, then INIT; the first
    /// error and the attribute that gave it.
    pub fn configure_pmu(&mut self, vcpu: usize, setup: &PmuSetup) -> Result<(), (u64, Errno)> {
        let mut steps = Vec::new();
        if setup.nr_counters.is_some() {
            let id = self.host_pmus.first().map_or(0, |p| p.id);
            steps.push((KVM_ARM_VCPU_PMU_V3_SET_PMU, u64::from(id)));
        }
        if setup.partitioned {
            steps.push((KVM_ARM_VCPU_PMU_V3_ENABLE_PARTITION, 1));
        }
        if let Some(n) = setup.nr_counters {
            steps.push((KVM_ARM_VCPU_PMU_V3_SET_NR_COUNTERS, u64::from(n)));
        }
        for f in &setup.filters {
            steps.push((KVM_ARM_VCPU_PMU_V3_FILTER, f.to_raw()));
        }
        steps.push((KVM_ARM_VCPU_PMU_V3_IRQ, u64::from(setup.irq)));
        steps.push((KVM_ARM_VCPU_PMU_V3_INIT, 0));
        for (attr, v) in steps {
            self.set_device_attr(vcpu, KVM_ARM_VCPU_PMU_V3_CTRL, attr, UserPtr::Value(v))
                .map_err(|e| (attr, e))?;
        }
        Ok(())
    }

    /// The guest's PMU registers as the hypervisor holds them (meaningful
    /// while the vCPU is not loaded).
    pub fn guest_pmu(&self, vcpu: usize) -> Option<&GuestPmu> {
        self.vcpus.get(vcpu).map(|v| &v.pmu)
    }

    /// Writes the host's MDCR_EL2.HPMN on every CPU of each PMU that can
    /// be partitioned (the reservation's effect at boot).
    pub(super) fn apply_host_hpmn(&mut self) {
        for h in self.host_pmus.clone() {
            let Some(hpmn) = h.hpmn() else { continue };
            for &cpu in &h.cpus {
                let Some(pe) = self.machine.pe_mut(cpu) else {
                    continue;
                };
                // An nVHE host kernel runs at EL1: the boot code sets EL2
                // state before it drops there.
                let back = pe.el();
                pe.exception_entry(ExceptionLevel::EL2);
                if let Some(mut c) = self.machine.cpu(cpu) {
                    let mdcr = c.read(SysReg::MDCR_EL2).unwrap_or(0);
                    let ok = c
                        .write(SysReg::MDCR_EL2, mdcr_el2::HPMN.set(mdcr, u64::from(hpmn)))
                        .is_ok();
                    debug_assert!(ok, "EL2 writes MDCR_EL2");
                    c.isb();
                }
                if let Some(pe) = self.machine.pe_mut(cpu) {
                    pe.eret(back);
                }
            }
        }
    }
}

impl GuestCpu<'_> {
    /// A trapped PMU access (the hypervisor at EL2, between the exit and
    /// entry halves): the first one makes the state live; then the access
    /// is emulated, or `None` when it must be re-executed after entry (it
    /// no longer traps, or it is an EL0 access that made the state live
    /// and must now meet the guest's PMUSERENR_EL0).
    pub(super) fn pmu_trap(
        &mut self,
        reg: SysReg,
        write: Option<u64>,
        el: ExceptionLevel,
    ) -> Option<Result<u64, AccessFault>> {
        let (vcpu, cpu) = (self.vcpu, self.cpu);
        if !self.kvm.vcpus[vcpu].features.pmu_v3 {
            return Some(Err(AccessFault::Undefined));
        }
        self.kvm.vcpus[vcpu].stats.pmu_trap_exits += 1;
        if self.kvm.vcpus[vcpu].pmu_host.is_none() {
            let fail = AccessFault::Trapped {
                to: ExceptionLevel::EL2,
            };
            // An nVHE host kernel emulates at EL1: the next entry writes
            // the traps.
            let nvhe = self.kvm.mode == HostMode::Nvhe;
            if self.kvm.pmu_load(vcpu, cpu).is_err() || (!nvhe && self.write_traps().is_err()) {
                return Some(Err(fail));
            }
            // An EL0 access got here past the *host's* PMUSERENR_EL0, which
            // the hardware held while the state was lazy: re-executed after
            // entry, it meets the guest's (now loaded), which may refuse it
            // (a trap to the guest's EL1). Emulating it here let guest user
            // space read and write the PMU its kernel had not opened to it
            // whenever the host's perf allowed its own user space access.
            if el == ExceptionLevel::EL0 {
                return None;
            }
        }
        let r = self.kvm.with_vpmu(
            vcpu,
            cpu,
            |s| &mut s.pmu_emulate,
            |pmu, ctx, c| {
                if !vpmu::traps_when_live(ctx, reg, write.is_some()) {
                    return None;
                }
                let r = pmu.emulate(c, ctx, reg, write, el);
                let level = pmu
                    .live_irq_level(c, ctx)
                    .and_then(|l| pmu.park_pending(c, ctx, l).map(|()| l));
                Some((r, level))
            },
        )?;
        let (r, level) = r?;
        self.kvm.vcpus[vcpu].pmu_virq = level.unwrap_or(false);
        Some(r)
    }

    /// Writes MDCR_EL2 and the fine-grained traps for the vCPU's current
    /// PMU and SPE state (after the state went live mid-run).
    fn write_traps(&mut self) -> Result<(), AccessFault> {
        let (vcpu, cpu) = (self.vcpu, self.cpu);
        let (rd, wr) = self.kvm.fgt_values(vcpu, cpu);
        let mut c = self.kvm.machine.cpu(cpu).ok_or(AccessFault::Undefined)?;
        let mdcr = c.read(SysReg::MDCR_EL2)?;
        let mdcr = self.kvm.pmu_mdcr(vcpu, cpu, mdcr);
        let mut c = self.kvm.machine.cpu(cpu).ok_or(AccessFault::Undefined)?;
        c.write(SysReg::MDCR_EL2, mdcr)?;
        if c.pe().has_fgt() {
            c.write(SysReg::HDFGRTR_EL2, rd)?;
            c.write(SysReg::HDFGWTR_EL2, wr)?;
        }
        c.isb();
        Ok(())
    }

    /// nVHE entry (the hypervisor at EL2, just before the ERET): the host's
    /// guest-excluding counters stopped; with the vCPU's PMU state live,
    /// its PMCR_EL0, PMUSERENR_EL0 and enabled counters switched in
    /// (upstream's `__pmu_switch_to_guest`). The cost goes to
    /// `pmu_switch`.
    pub(super) fn pmu_switch_to_guest(&mut self) -> Result<(), String> {
        let (vcpu, cpu) = (self.vcpu, self.cpu);
        let events_host = self.kvm.cpu_pmu[cpu].events_host;
        let host_pmuserenr = self.kvm.cpu_pmu[cpu].host_pmuserenr;
        let sw = if self.kvm.vcpus[vcpu].pmu_host.is_some() {
            self.kvm.with_vpmu(
                vcpu,
                cpu,
                |s| &mut s.pmu_switch,
                |pmu, ctx, c| pmu.switch_to_guest(c, ctx, events_host, host_pmuserenr),
            )
        } else {
            None
        };
        let sw = match sw {
            Some(r) => r,
            None => {
                let mut c = self.kvm.machine.cpu(cpu).ok_or("no such CPU")?;
                let before = c.pe().access_stats();
                let r = PmuSwitch::host_only(&mut c, events_host);
                let cost = c.pe().access_stats() - before;
                self.kvm.vcpus[vcpu].stats.pmu_switch += cost;
                r
            }
        };
        let sw = sw.map_err(|f| format!("PMU entry switch: {f}"))?;
        self.kvm.vcpus[vcpu].pmu_switched = Some(sw);
        Ok(())
    }

    /// nVHE exit (the hypervisor at EL2): what the entry switched is
    /// switched back (upstream's `__pmu_switch_to_host`).
    pub(super) fn pmu_switch_to_host(&mut self) -> Result<(), String> {
        let (vcpu, cpu) = (self.vcpu, self.cpu);
        let Some(sw) = self.kvm.vcpus[vcpu].pmu_switched.take() else {
            return Ok(());
        };
        let mut c = self.kvm.machine.cpu(cpu).ok_or("no such CPU")?;
        let before = c.pe().access_stats();
        let r = sw.switch_to_host(&mut c);
        let cost = c.pe().access_stats() - before;
        self.kvm.vcpus[vcpu].stats.pmu_switch += cost;
        r.map_err(|f| format!("PMU exit switch: {f}"))
    }

    /// Entry: PMSELR_EL0 switched late when the guest owns it.
    pub(super) fn pmu_enter(&mut self) -> Result<(), String> {
        let (vcpu, cpu) = (self.vcpu, self.cpu);
        if !self.kvm.pmu_direct(vcpu, cpu) {
            return Ok(());
        }
        let hw = self.kvm.cpu_pmu[cpu].pmselr;
        let r = self.kvm.with_vpmu(
            vcpu,
            cpu,
            |s| &mut s.pmu_switch,
            |pmu, ctx, c| pmu.enter(c, ctx, hw),
        );
        match r {
            Some(Ok(now)) => {
                self.kvm.cpu_pmu[cpu].pmselr = now;
                Ok(())
            }
            Some(Err(f)) => Err(format!("PMU entry: {f}")),
            None => Ok(()),
        }
    }

    /// A physical interrupt exit: the guest's overflow flags move from the
    /// hardware to the vCPU and its virtual interrupt level is updated.
    pub(super) fn pmu_interrupt_exit(&mut self) {
        let (vcpu, cpu) = (self.vcpu, self.cpu);
        if self.kvm.vcpus[vcpu].pmu_host.is_none() {
            return;
        }
        let r = self.kvm.with_vpmu(
            vcpu,
            cpu,
            |s| &mut s.pmu_switch,
            |pmu, ctx, c| {
                let before = pmu.ovs;
                pmu.fold_overflow(c, ctx)?;
                let new = (pmu.ovs & !before).count_ones();
                let level = pmu.live_irq_level(c, ctx)?;
                pmu.park_pending(c, ctx, level)?;
                Ok::<_, AccessFault>((new, level))
            },
        );
        if let Some(Ok((new, level))) = r {
            let v = &mut self.kvm.vcpus[vcpu];
            v.stats.pmu_overflows += u64::from(new);
            v.pmu_virq = level;
        }
    }

    /// The guest's virtual PMU interrupt level.
    ///
    /// While the state is live, PMCR_EL0.E and PMINTENSET_EL1 are on the
    /// hardware, where a partitioned guest with FEAT_FGT changes them
    /// without an exit, and an overflow on the last operation of a run is
    /// still in the hardware's flags: the level is sampled from where the
    /// state is, as the interrupt controller samples a level-sensitive
    /// line. (Using only the level computed at the last exit left an
    /// overflow pending but never delivered once the guest enabled its
    /// interrupt or PMCR_EL0.E with an untrapped write, and kept a stale
    /// level after an untrapped PMINTENCLR_EL1.)
    pub(super) fn pmu_level(&self) -> bool {
        let v = &self.kvm.vcpus[self.vcpu];
        if !v.features.pmu_v3 {
            return false;
        }
        if v.pmu_host.is_none() {
            return v.pmu_virq;
        }
        let (Some((_, nr, _, _)), Some(pe)) = (
            self.kvm.vpmu_parts(self.vcpu, self.cpu),
            self.kvm.machine.pe(self.cpu),
        ) else {
            return v.pmu_virq;
        };
        let hw = |reg| pe.pmu().read(reg, View::el2()).unwrap_or(0);
        let mask = pm_counter_bits::counter_range(0, nr) | pm_counter_bits::C.mask();
        let ovs = (v.pmu.ovs | hw(SysReg::PMOVSSET_EL0)) & mask;
        // On an nVHE host PMCR_EL0 is the vCPU's.
        let pmcr = match self.kvm.mode {
            HostMode::Nvhe => v.pmu.pmcr,
            HostMode::Vhe => hw(SysReg::PMCR_EL0),
        };
        pmcr_el0::E.is_set(pmcr) && ovs & hw(SysReg::PMINTENSET_EL1) != 0
    }
}
