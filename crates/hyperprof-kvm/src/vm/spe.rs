//! Guest SPE buffer management on the hypervisor side: pinning the
//! buffer before it reaches the hardware, and the stage-2 fault rewrite.

use super::*;

/// A stage-2 fault on the guest's buffer is the hypervisor's business, not
/// the guest's: the guest sees an external abort (its buffer is not in its
/// RAM). Rewrites the saved PMBSR_EL1 and says whether it did.
pub(super) fn stage2_fault_as_external_abort(buffer: &mut switch::BufferRegs) -> bool {
    let pmbsr = buffer.pmbsr_el1;
    let s2_fault = pmbsr_el1::S.is_set(pmbsr)
        && hyperprof_arch::PmbsrEc::from_bits(pmbsr_el1::EC.get(pmbsr))
            == Some(hyperprof_arch::PmbsrEc::FAULT_S2);
    if s2_fault {
        buffer.pmbsr_el1 = pmbsr_el1::EA.set(pmbsr_el1::S.set(0, 1), 1);
    }
    s2_fault
}

impl Kvm {
    /// The optional sampling registers physical CPU `cpu` implements (its
    /// SPU's PMSIDR_EL1.FnE and FDS): what the host's state holds, whatever
    /// a VM is shown.
    pub(super) fn hw_spe_features(&self, cpu: usize) -> Features {
        use hyperprof_arch::pmsidr_el1;
        let pmsidr = self
            .spus
            .iter()
            .find(|s| s.cpus.contains(&cpu))
            .map_or(0, |s| s.pmsidr);
        Features {
            fne: pmsidr_el1::FnE.is_set(pmsidr),
            fds: pmsidr_el1::FDS.is_set(pmsidr),
            nvhe: self.mode == HostMode::Nvhe,
        }
    }
}

impl Kvm {
    /// Sets the SPE level VM `vm` advertises in ID_AA64DFR0_EL1.PMSVer (a
    /// VMM writing the ID register before the VM runs): below the SPU's,
    /// FEAT_SPE_FnE and FEAT_SPE_FDS may be hidden from the guest.
    pub fn set_guest_pmsver(
        &mut self,
        vm: usize,
        version: hyperprof_arch::PmsVer,
    ) -> Result<(), Errno> {
        self.vms
            .get_mut(vm)
            .ok_or(Errno::ENODEV)?
            .spe
            .set_guest_pmsver(version)
    }

    /// Write-protects (or unprotects) the stage-2 mapping of the guest page
    /// at `ipa` of VM `vm`, as the host's dirty-page logging or a read-only
    /// memslot would, also while vCPUs are loaded and without dropping any
    /// pin: a guest buffer on that page then takes a stage-2 permission
    /// fault in the unit, which the guest sees as an External abort.
    pub fn set_guest_page_writable(
        &mut self,
        vm: usize,
        ipa: u64,
        writable: bool,
    ) -> Result<(), Errno> {
        use hyperprof_sim::mmu::S2Perm;
        let v = self.vms.get(vm).ok_or(Errno::ENODEV)?;
        let perm = if writable {
            S2Perm::RW
        } else {
            S2Perm {
                read: true,
                write: false,
            }
        };
        v.s2.set_perm(
            &mut self.machine.mem,
            ipa & !(PAGE_SIZE - 1),
            PAGE_SIZE,
            perm,
        )
        .map_err(|_| Errno::EFAULT)?;
        // The TLB flush after a stage-2 change: the SPE units' cached walks
        // of the VM go with the old permission.
        let vmid = v.vmid as u16;
        self.machine.invalidate_buffer_tlbs(Some(vmid));
        Ok(())
    }

    /// Whether the guest's sampling registers must trap (MDCR_EL2.TPMS)
    /// while its SPE state is live: when its PMSIDR_EL1 differs from the
    /// hardware's (TPMS is the only trap of PMSIDR_EL1 without FEAT_FGT),
    /// which is when it hides FEAT_SPE_FnE or FEAT_SPE_FDS, whose registers
    /// must then be UNDEFINED for it and no trap but TPMS reaches.
    pub(super) fn sampling_trapped(&self, vcpu: usize) -> bool {
        let vm = &self.vms[self.vcpus[vcpu].vm].spe;
        vm.spu_in(&self.spus)
            .is_some_and(|spu| vm.guest_pmsidr(spu) != spu.pmsidr)
    }
}

impl GuestCpu<'_> {
    /// Whether the guest's buffer is pinned: by its own pin, or by the VM's
    /// pin of all its RAM (pin-all). A buffer the pin could not cover has
    /// its event pending instead (PMBSR_EL1.S), so it is not enabled.
    pub(super) fn buffer_pinned(&self) -> bool {
        self.kvm.vcpus[self.vcpu].pins.is_pinned() || self.kvm.vms[self.vm].pinning.all_pinned()
    }

    /// A trapped access to a sampling register of a live vCPU (TPMS set,
    /// see [`Kvm::sampling_trapped`]): the registers of features the VM
    /// hides are UNDEFINED, their PMSFCR_EL1 enables stay clear; the rest
    /// are the guest's own: on the hardware under VHE (switched at load),
    /// in the vCPU under nVHE (the host's are on the hardware while the
    /// hypervisor emulates).
    pub(super) fn emulate_sampling(
        &mut self,
        reg: SysReg,
        write: Option<u64>,
    ) -> Result<u64, AccessFault> {
        use hyperprof_arch::pmsfcr_el1;
        let f = self.kvm.spe_features(self.vcpu);
        let hidden =
            (reg == SysReg::PMSNEVFR_EL1 && !f.fne) || (reg == SysReg::PMSDSFR_EL1 && !f.fds);
        if hidden {
            return Err(AccessFault::Undefined);
        }
        let write = match (reg, write) {
            (SysReg::PMSFCR_EL1, Some(v)) => {
                let mut v = v;
                if !f.fne {
                    v = pmsfcr_el1::FnE.clear(v);
                }
                if !f.fds {
                    v = pmsfcr_el1::FDS.clear(v);
                }
                Some(v)
            }
            (_, w) => w,
        };
        if self.kvm.mode == HostMode::Nvhe {
            let regs = &mut self.kvm.vcpus[self.vcpu].spe.sampling;
            let slot = regs.slot(reg).ok_or(AccessFault::Undefined)?;
            return Ok(match write {
                Some(v) => {
                    *slot = v;
                    0
                }
                None => *slot,
            });
        }
        let hw = if reg == SysReg::PMSCR_EL1 {
            SysReg::PMSCR_EL12
        } else {
            reg
        };
        let mut c = self
            .kvm
            .machine
            .cpu(self.cpu)
            .ok_or(AccessFault::Undefined)?;
        match write {
            Some(v) => c.write(hw, v).map(|()| 0),
            None => c.read(hw),
        }
    }

    /// After an MMU-notifier event the buffer goes back to the hardware
    /// only once it is pinned again (the entry halves call this, then put
    /// the buffer on the hardware only if it is pinned).
    pub(super) fn repin_if_needed(&mut self) {
        if !self.kvm.vcpus[self.vcpu].needs_repin {
            return;
        }
        let buffer = self.kvm.vcpus[self.vcpu].spe.buffer;
        if self.repin(buffer).is_ok() && self.buffer_pinned() {
            self.kvm.vcpus[self.vcpu].needs_repin = false;
        }
    }

    /// The guest's buffer goes to the hardware only while it is fully
    /// pinned and within its limit, whatever the guest wrote. An enabled
    /// buffer that is not pinned (a guest that cleared PMBSR_EL1 after a
    /// size or fault event, or a buffer with no room left) stays off the
    /// hardware, and when the guest runs again the event the unit would
    /// raise at its first record is raised again. Returns false when an
    /// exit to the VMM is pending instead (Rlimit).
    pub(super) fn recheck_unpinned_buffer(&mut self) -> bool {
        let v = &self.kvm.vcpus[self.vcpu];
        let buffer = v.spe.buffer;
        if !v.features.spe || v.needs_repin || !buffer.enabled() || self.buffer_pinned() {
            return true;
        }
        if self.repin(buffer).is_err() {
            return false;
        }
        let pinned = self.buffer_pinned();
        let v = &mut self.kvm.vcpus[self.vcpu];
        if v.spe.buffer.enabled() && !pinned {
            // No room left: the unit raises buffer full before writing.
            let b = &mut v.spe.buffer;
            let mut pmbsr = pmbsr_el1::S.set(b.pmbsr_el1, 1);
            pmbsr = pmbsr_el1::EC.set(pmbsr, hyperprof_arch::PmbsrEc::BUF.bits());
            b.pmbsr_el1 = pmbsr_el1::MSS.set(pmbsr, pmbsr_el1::BSC_FULL);
        }
        true
    }

    /// Pins what the guest's buffer needs when it is (still) enabled, or
    /// unpins; an Rlimit makes the access wait for the VMM.
    pub(super) fn repin(&mut self, next: switch::BufferRegs) -> Result<(), AccessFault> {
        let vcpu = self.vcpu;
        let vm = self.vm;
        let cpu = self.cpu;
        let k = &mut *self.kvm;
        let enabled = pmblimitr_el1::E.is_set(next.pmblimitr_el1);
        let limit = pmblimitr_el1::limit_address(next.pmblimitr_el1);
        let span = if enabled {
            buffer_span(next.pmbptr_el1, limit)
        } else {
            None
        };
        let Some((start, len)) = span else {
            // Disabled, or no room left: nothing to keep pinned (the VM's
            // pinning design may keep it).
            let v = &mut k.vms[vm];
            v.pinning
                .release(vcpu, &mut k.vcpus[vcpu].pins, &mut v.memlock);
            return Ok(());
        };
        let max = k.vms[vm].spe.max_buffer_size().unwrap_or(0);
        let s1_root = k.guest_ttbr0_el1(vcpu, cpu);
        let s2 = k.vms[vm].s2.params();
        let outcome = collect_within(&k.machine.mem, s1_root, &s2, start, len, max);
        let (v, vm_state) = (&mut k.vcpus[vcpu], &mut k.vms[vm]);
        let (memlock, pinning) = (&mut vm_state.memlock, &mut vm_state.pinning);
        match outcome {
            Ok(set) => match pinning.pin(vcpu, &mut v.pins, set, memlock) {
                Ok(()) => Ok(()),
                Err(r) => {
                    self.exit = Some(Exit::Rlimit {
                        needed: r.needed,
                        used: r.used,
                        limit: r.limit,
                    });
                    Err(AccessFault::Trapped {
                        to: ExceptionLevel::EL2,
                    })
                }
            },
            // Larger than PMBIDR_EL1.MaxBuffSize advertised: a buffer
            // management event, size error, before anything is walked.
            Err(PinError::TooLarge { .. }) => {
                pinning.release(vcpu, &mut v.pins, memlock);
                let ev = pmbsr_el1::MSS.set(pmbsr_el1::S.set(0, 1), pmbsr_el1::BSC_SIZE);
                v.spe.buffer.pmbsr_el1 = ev;
                Ok(())
            }
            // The guest's own tables do not map all of the buffer: it cannot
            // be pinned, so it never reaches the hardware; the guest gets
            // the stage-1 Data Abort event the unit would have raised, before
            // any record is written.
            Err(PinError::Fault(f)) if f.stage == 1 => {
                pinning.release(vcpu, &mut v.pins, memlock);
                let mut pmbsr = pmbsr_el1::S.set(v.spe.buffer.pmbsr_el1, 1);
                pmbsr = pmbsr_el1::EC.set(pmbsr, hyperprof_arch::PmbsrEc::FAULT_S1.bits());
                v.spe.buffer.pmbsr_el1 = pmbsr_el1::MSS.set(pmbsr, u64::from(f.fsc()));
                Ok(())
            }
            // The buffer is not in guest RAM: an external abort, and a warning.
            Err(_) => {
                pinning.release(vcpu, &mut v.pins, memlock);
                v.stats.stage2_aborts += 1;
                let mut pmbsr = pmbsr_el1::S.set(v.spe.buffer.pmbsr_el1, 1);
                pmbsr = pmbsr_el1::EA.set(pmbsr, 1);
                v.spe.buffer.pmbsr_el1 = pmbsr;
                Ok(())
            }
        }
    }
}
