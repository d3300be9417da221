//! The vCPU run loop, in the place of KVM's arm.c: vcpu_load, vcpu_put
//! and KVM_RUN, each crossing the world switch.

use super::*;

impl Kvm {
    /// vcpu_load on physical CPU `cpu`: SPE state switched (seed 000), the
    /// buffer handed to EL1 with its accesses trapped (MDCR_EL2.E2PB =
    /// 0b10), ID registers trapped by fine-grained traps.
    pub fn load(&mut self, vcpu: usize, cpu: usize) -> Result<(), String> {
        let v = self.vcpus.get(vcpu).ok_or("no such vCPU")?;
        if let Some(on) = v.loaded_on {
            return Err(format!("vCPU {vcpu} is already loaded on CPU {on}"));
        }
        if let Some(other) = self.vcpus.iter().position(|o| o.loaded_on == Some(cpu)) {
            return Err(format!("CPU {cpu} already has vCPU {other} loaded"));
        }
        let vm = v.vm;
        // SPE state is switched only on a CPU that has the VM's SPU; on any
        // other CPU the load completes and KVM_RUN fails entry.
        let spu = self.vms[vm].spe.spu();
        let spu_here = self
            .spus
            .iter()
            .any(|s| Some(s.id) == spu && s.cpus.contains(&cpu));
        let unsupported = v.features.spe && !spu_here;
        let spe = v.features.spe && spu_here;
        // Lazy switching needs the first SPE access to trap; without FGT
        // the ID registers cannot trap (a lazy guest would read PMBIDR_EL1.P
        // set), so the state goes live at load there.
        let fgt = self.machine.pe(cpu).is_some_and(Pe::has_fgt);
        if self.machine.pe(cpu).is_none() {
            return Err(format!("no CPU {cpu}"));
        }
        if self.mode == HostMode::Nvhe {
            // The host kernel at EL1 cannot touch EL2 state: everything is
            // switched by the hypervisor at each entry and exit.
            let v = &mut self.vcpus[vcpu];
            if spe && !fgt {
                v.spe_live = true;
            }
            v.stats.loads += 1;
            v.loaded_on = Some(cpu);
            v.unsupported_cpu = unsupported;
            // The guest's counters, event types and interrupt enables go
            // to the hardware here, in the host kernel at EL1 (MDCR_EL2.HPMN
            // = N leaves it every counter); the enables at each entry.
            if self.vcpus[vcpu].pmu_live {
                self.pmu_load(vcpu, cpu)?;
            }
            self.timer_load(vcpu, cpu)?;
            return self.vgic_load(vcpu, cpu);
        }
        let live = spe && (self.vcpus[vcpu].spe_live || !fgt);
        let host_mdcr = {
            let mut c = self.machine.cpu(cpu).ok_or("no such CPU")?;
            c.read(SysReg::MDCR_EL2).map_err(access(SysReg::MDCR_EL2))?
        };
        let v = &mut self.vcpus[vcpu];
        v.stats.loads += 1;
        v.host_spe = None;
        v.host_mdcr = host_mdcr;
        v.loaded_on = Some(cpu);
        v.unsupported_cpu = unsupported;
        // A guest that has used its PMU gets its state back at load; one
        // that has not keeps trapping (lazy) and costs nothing here.
        if self.vcpus[vcpu].pmu_live {
            self.pmu_load(vcpu, cpu)?;
        }
        // SPE untouched (or absent): the sampling registers trap (TPMS) and
        // the buffer stays the host's, its EL1 accesses trapped (E2PB =
        // 0b00); no SPE register is switched. SPE live: spe_activate
        // writes MDCR_EL2.
        let mdcr = (!live).then(|| {
            let spe_bits = mdcr_el2::TPMS.set(mdcr_el2::E2PB.set(host_mdcr, mdcr_el2::E2PB_EL2), 1);
            self.pmu_mdcr(vcpu, cpu, spe_bits)
        });
        // The SPE ID registers always trap: sanitised for an SPE vCPU,
        // UNDEFINED for one without (the VM does not have SPE); a live
        // partitioned PMU adds its trapped registers.
        let (rd_traps, wr_traps) = self.fgt_values(vcpu, cpu);
        let pmu_fgt = wr_traps != hyperprof_arch::hdfgwtr_el2::TRAP_NOTHING;
        let (ttbr, ctx) = (self.vcpus[vcpu].ttbr0_el1, self.vcpus[vcpu].contextidr_el1);
        let mut c = self.machine.cpu(cpu).ok_or("no such CPU")?;
        if let Some(mdcr) = mdcr {
            c.write(SysReg::MDCR_EL2, mdcr)
                .map_err(access(SysReg::MDCR_EL2))?;
        }
        c.write(SysReg::HDFGRTR_EL2, rd_traps)
            .map_err(access(SysReg::HDFGRTR_EL2))?;
        if pmu_fgt {
            c.write(SysReg::HDFGWTR_EL2, wr_traps)
                .map_err(access(SysReg::HDFGWTR_EL2))?;
        }
        c.write(SysReg::TTBR0_EL12, ttbr)
            .map_err(access(SysReg::TTBR0_EL12))?;
        c.write(SysReg::CONTEXTIDR_EL12, ctx)
            .map_err(access(SysReg::CONTEXTIDR_EL12))?;
        if live {
            self.spe_activate(vcpu, cpu)?;
        }
        self.timer_load(vcpu, cpu)?;
        self.vgic_load(vcpu, cpu)
    }

    /// Without FEAT_FGT PMBIDR_EL1 cannot be trapped: the guest reads the
    /// hardware's value. Guest SPE is then allowed only when it is already
    /// what the guest must see (seed 002's review: an unlimited MaxBuffSize
    /// is a valid value that needs no trap). PMSIDR_EL1 traps with
    /// MDCR_EL2.TPMS.
    pub(super) fn ids_visible_without_fgt(&self, vcpu: usize, cpu: usize) -> Result<(), String> {
        let v = &self.vcpus[vcpu];
        if !v.features.spe || self.machine.pe(cpu).is_none_or(Pe::has_fgt) {
            return Ok(());
        }
        let vm = &self.vms[v.vm].spe;
        let Some(spu) = vm.spu_in(&self.spus) else {
            return Ok(());
        };
        // PMSIDR_EL1 can still be trapped, by MDCR_EL2.TPMS (with every
        // sampling register: see `sampling_trapped`); PMBIDR_EL1 cannot.
        let pmbidr = vm.guest_pmbidr(spu);
        if pmbidr == spu.pmbidr {
            return Ok(());
        }
        Err(format!(
            "CPU {cpu} has no FEAT_FGT, so PMBIDR_EL1 cannot be trapped, and the hardware's \
             {:#x} differs from what the VM must see, {pmbidr:#x} \
             (set SPE_MAX_BUFFER_SIZE to the SPU's own maximum)",
            spu.pmbidr
        ))
    }

    /// Makes a vCPU's SPE state live on `cpu` (at load, or at the guest's
    /// first SPE access): host profiling stopped and drained and the
    /// sampling registers switched (seed 000), then the buffer handed to
    /// EL1 with its accesses trapped (MDCR_EL2.E2PB = 0b10, TPMS clear),
    /// with the ISB that synchronizes the change of owning regime.
    pub(super) fn spe_activate(&mut self, vcpu: usize, cpu: usize) -> Result<(), String> {
        if self.mode == HostMode::Nvhe {
            // The next entry switches the state in.
            self.vcpus[vcpu].spe_live = true;
            return Ok(());
        }
        let f = self.spe_features(vcpu);
        let v = &self.vcpus[vcpu];
        let (guest, host_mdcr, vm) = (v.spe, v.host_mdcr, v.vm);
        let perfmon = self.vms[vm].perfmon;
        let tpms = u64::from(self.sampling_trapped(vcpu));
        let spe_bits =
            mdcr_el2::TPMS.set(mdcr_el2::E2PB.set(host_mdcr, mdcr_el2::E2PB_EL1_TRAP), tpms);
        let mdcr = self.pmu_mdcr(vcpu, cpu, spe_bits);
        let mut c = self.machine.cpu(cpu).ok_or("no such CPU")?;
        let before = c.pe().access_stats();
        let host = switch::load(&mut c, &guest, f).map_err(|e| format!("SPE load: {e}"))?;
        c.write(SysReg::MDCR_EL2, mdcr)
            .map_err(access(SysReg::MDCR_EL2))?;
        if perfmon {
            // PCT = 0b01: the guest's PMSCR_EL1.PCT may pick the physical counter.
            let pct = hyperprof_arch::pmscr_el2::PCT.set(0, hyperprof_arch::pct::PHYS);
            c.write(SysReg::PMSCR_EL2, pct)
                .map_err(access(SysReg::PMSCR_EL2))?;
        }
        c.isb();
        let after = c.pe().access_stats();
        let v = &mut self.vcpus[vcpu];
        v.stats.spe_load_put += after - before;
        v.host_spe = Some(host);
        v.spe_live = true;
        Ok(())
    }

    /// vcpu_put: the host's MDCR_EL2 back (owning regime EL2), then the host
    /// SPE session resumed (seed 000).
    pub fn put(&mut self, vcpu: usize) -> Result<(), String> {
        let v = self.vcpus.get(vcpu).ok_or("no such vCPU")?;
        let cpu = v
            .loaded_on
            .ok_or_else(|| format!("vCPU {vcpu} is not loaded"))?;
        self.vgic_put(vcpu, cpu)?;
        if self.mode == HostMode::Nvhe {
            self.pmu_put(vcpu, cpu)?;
            self.timer_put(vcpu, cpu)?;
            let v = &mut self.vcpus[vcpu];
            v.loaded_on = None;
            v.unsupported_cpu = false;
            return Ok(());
        }
        let f = self.spe_features(vcpu);
        let pmu_fgt = self.fgt_values(vcpu, cpu).1 != hyperprof_arch::hdfgwtr_el2::TRAP_NOTHING;
        self.pmu_put(vcpu, cpu)?;
        self.timer_put(vcpu, cpu)?;
        let v = &self.vcpus[vcpu];
        let (host_mdcr, host_spe) = (v.host_mdcr, v.host_spe);
        let measured_mdcr = host_spe.is_some();
        let mut guest = v.spe;
        let mut c = self.machine.cpu(cpu).ok_or("no such CPU")?;
        if pmu_fgt {
            c.write(
                SysReg::HDFGWTR_EL2,
                hyperprof_arch::hdfgwtr_el2::TRAP_NOTHING,
            )
            .map_err(access(SysReg::HDFGWTR_EL2))?;
        }
        let ttbr = c
            .read(SysReg::TTBR0_EL12)
            .map_err(access(SysReg::TTBR0_EL12))?;
        let ctx = c
            .read(SysReg::CONTEXTIDR_EL12)
            .map_err(access(SysReg::CONTEXTIDR_EL12))?;
        c.write(
            SysReg::HDFGRTR_EL2,
            hyperprof_arch::hdfgrtr_el2::TRAP_NOTHING,
        )
        .map_err(access(SysReg::HDFGRTR_EL2))?;
        let before = c.pe().access_stats();
        c.write(SysReg::MDCR_EL2, host_mdcr)
            .map_err(access(SysReg::MDCR_EL2))?;
        if let Some(host) = host_spe {
            c.isb();
            switch::put(&mut c, &mut guest, &host, f).map_err(|e| format!("SPE put: {e}"))?;
        }
        let after = c.pe().access_stats();
        let v = &mut self.vcpus[vcpu];
        v.spe = guest;
        v.ttbr0_el1 = ttbr;
        v.contextidr_el1 = ctx;
        if measured_mdcr {
            v.stats.spe_load_put += after - before;
        }
        v.host_spe = None;
        v.loaded_on = None;
        v.unsupported_cpu = false;
        Ok(())
    }

    /// KVM_RUN's checks before entry: the vCPU's VM and the CPU it is
    /// loaded on, or why it cannot run. Marks the VM as having run.
    pub(super) fn prepare_run(&mut self, vcpu: usize) -> Result<(usize, usize), Exit> {
        let (vm, cpu) = self.run_checks(vcpu).map_err(Exit::FailEntry)?;
        // Pin-all: every guest page before the first run.
        let v = &mut self.vms[vm];
        if let Err(r) = v.pinning.before_run(&mut v.memlock) {
            return Err(Exit::Rlimit {
                needed: r.needed,
                used: r.used,
                limit: r.limit,
            });
        }
        self.vms[vm].spe.mark_ran();
        self.vms[vm].pmu.mark_ran();
        Ok((vm, cpu))
    }

    fn run_checks(&self, vcpu: usize) -> Result<(usize, usize), String> {
        let Some(v) = self.vcpus.get(vcpu) else {
            return Err(format!("no vCPU {vcpu}"));
        };
        let Some(cpu) = v.loaded_on else {
            return Err(format!("vCPU {vcpu} is not loaded on a CPU"));
        };
        if v.features.spe {
            let ctx = crate::spe_attr::AttrCtx {
                features: v.features,
                host_spus: &self.spus,
                host_supports_spe: !self.spus.is_empty(),
            };
            if let Err(why) = self.vms[v.vm].spe.check_ready(&v.spe_cfg, &ctx) {
                return Err(format!("vCPU {vcpu}: SPE not ready: {why}"));
            }
        }
        if self.vms[v.vm].destroyed {
            return Err(format!("vCPU {vcpu}: its VM was destroyed"));
        }
        self.ids_visible_without_fgt(vcpu, cpu)?;
        let v = &self.vcpus[vcpu];
        if v.unsupported_cpu {
            let spu = self.vms[v.vm].spe.spu().unwrap_or(u32::MAX);
            return Err(format!(
                "KVM_EXIT_FAIL_ENTRY_CPU_UNSUPPORTED: vCPU {vcpu} is on CPU {cpu}, which has no SPU {spu}"
            ));
        }
        if v.features.pmu_v3 {
            let ready = self.pmu_ctx(vcpu).and_then(|(vm, ctx)| {
                self.vms[vm]
                    .pmu
                    .check_ready(&self.vcpus[vcpu].pmu_cfg, &ctx)
            });
            if let Err(e) = ready {
                return Err(format!(
                    "vCPU {vcpu}: PMU not initialised (KVM_ARM_VCPU_PMU_V3_INIT): {e}"
                ));
            }
        }
        Ok((self.vcpus[vcpu].vm, cpu))
    }

    /// KVM_RUN: enters the guest on the CPU the vCPU is loaded on and runs
    /// `program` until it stops or an exit needs the VMM.
    pub fn run(&mut self, vcpu: usize, program: &mut dyn GuestProgram) -> Exit {
        let (vm, cpu) = match self.prepare_run(vcpu) {
            Ok(x) => x,
            Err(exit) => return exit,
        };
        let mut g = GuestCpu {
            kvm: self,
            vcpu,
            vm,
            cpu,
            exit: None,
            buffer_live: false,
            irqs_masked: false,
        };
        if let Err(e) = g.enter(ExceptionLevel::EL1) {
            return Exit::FailEntry(e);
        }
        let step = program.run(&mut g);
        let pending = g.exit.take();
        if let Err(e) = g.leave() {
            return Exit::FailEntry(e);
        }
        match (pending, step) {
            (Some(exit), _) => exit,
            (None, GuestStep::Done) => Exit::Halt,
            (None, GuestStep::More) => Exit::Yield,
        }
    }
}
