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

impl GuestCpu<'_> {
    /// After an MMU-notifier event the buffer goes back to the hardware
    /// only once it is pinned again (the entry halves call this).
    pub(super) fn repin_if_needed(&mut self) {
        if !self.kvm.vcpus[self.vcpu].needs_repin {
            return;
        }
        let buffer = self.kvm.vcpus[self.vcpu].spe.buffer;
        if self.repin(buffer).is_ok() && self.kvm.vcpus[self.vcpu].pins.is_pinned() {
            self.kvm.vcpus[self.vcpu].needs_repin = false;
        }
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
            // Disabled, or no room left: nothing to keep pinned.
            k.vcpus[vcpu].pins.unpin(&mut k.vms[vm].memlock);
            return Ok(());
        };
        let max = k.vms[vm].spe.max_buffer_size().unwrap_or(0);
        let s1_root = k.guest_ttbr0_el1(vcpu, cpu);
        let s2 = k.vms[vm].s2.params();
        let outcome = collect_within(&k.machine.mem, s1_root, &s2, start, len, max);
        let (v, memlock) = (&mut k.vcpus[vcpu], &mut k.vms[vm].memlock);
        match outcome {
            Ok(set) => match v.pins.pin(set, memlock) {
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
                v.pins.unpin(memlock);
                let ev = pmbsr_el1::MSS.set(pmbsr_el1::S.set(0, 1), pmbsr_el1::BSC_SIZE);
                v.spe.buffer.pmbsr_el1 = ev;
                Ok(())
            }
            // The guest's own tables do not map the buffer: the unit will
            // report the stage-1 fault to the guest when it writes there.
            Err(PinError::Fault(f)) if f.stage == 1 => {
                v.pins.unpin(memlock);
                Ok(())
            }
            // The buffer is not in guest RAM: an external abort, and a warning.
            Err(_) => {
                v.pins.unpin(memlock);
                v.stats.stage2_aborts += 1;
                let mut pmbsr = pmbsr_el1::S.set(v.spe.buffer.pmbsr_el1, 1);
                pmbsr = pmbsr_el1::EA.set(pmbsr, 1);
                v.spe.buffer.pmbsr_el1 = pmbsr;
                Ok(())
            }
        }
    }
}
