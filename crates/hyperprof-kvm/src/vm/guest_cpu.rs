//! The guest's view of the physical CPU while its vCPU runs ([`GuestCpu`]):
//! untrapped accesses reach the hardware, trapped ones exit to the hypervisor.

use super::*;

/// The guest's view of the physical CPU while its vCPU runs.
pub struct GuestCpu<'a> {
    pub(super) kvm: &'a mut Kvm,
    pub(super) vcpu: usize,
    pub(super) vm: usize,
    pub(super) cpu: usize,
    pub(super) exit: Option<Exit>,
    /// The guest's buffer registers are on the hardware (entry restored
    /// them), so the exit half must drain and save them.
    pub(super) buffer_live: bool,
    /// The guest's PSTATE.I: virtual interrupts are not taken.
    pub(super) irqs_masked: bool,
}

impl GuestCpu<'_> {
    pub(super) fn pe(&mut self) -> &mut Pe {
        self.kvm
            .machine
            .pe_mut(self.cpu)
            .expect("loaded on an existing CPU")
    }

    /// Whether the hypervisor is waiting to return to the VMM.
    pub fn exiting(&self) -> bool {
        self.exit.is_some()
    }
}

impl GuestCpu<'_> {
    /// A physical profiling interrupt while the guest runs: exit to the
    /// hypervisor, which moves a guest buffer event into the guest's PMBSR
    /// and the guest's overflow flags into the vCPU, and enter again.
    /// False when the guest must stop (the host's own interrupt is
    /// asserted, so the host must run; or the switch failed).
    pub(super) fn physical_interrupt_exit(&mut self) -> bool {
        let back = self.pe().el();
        self.kvm.vcpus[self.vcpu].stats.irq_exits += 1;
        if self.leave().is_err() {
            return false;
        }
        self.pmu_interrupt_exit();
        if self.enter(back).is_err() {
            return false;
        }
        // The guest's PMU flags have left the hardware, and its buffer
        // event is back only as its own PMBSR: what is still asserted is
        // the host's.
        let lines = self.pe().irq_lines();
        if lines.pmuirq || (lines.pmbirq && !self.virq_pending()) {
            self.exit = Some(Exit::Yield);
            return false;
        }
        // The exit emptied the list registers and the entry filled them
        // again: a maintenance condition that still holds would never end.
        if lines.maintenance {
            self.exit = Some(Exit::FailEntry(format!(
                "vGIC maintenance interrupt still asserted after an exit (ICH_MISR_EL2 {:#x})",
                self.pe().gic().misr()
            )));
            return false;
        }
        true
    }

    /// A vCPU about to wait has a deliverable interrupt the list registers
    /// do not hold yet: an exit and an entry put it there (KVM's vCPU
    /// would leave its WFI wait and enter again).
    pub(super) fn vgic_kick(&mut self) -> Result<(), String> {
        if !self.has_vgic() {
            return Ok(());
        }
        let back = self.pe().el();
        self.leave()?;
        self.enter(back)
    }
}

impl GuestEnv for GuestCpu<'_> {
    /// The guest's virtual PMBIRQ level: its PMBSR_EL1.S.
    fn virq_pending(&self) -> bool {
        let v = &self.kvm.vcpus[self.vcpu];
        v.features.spe && pmbsr_el1::S.is_set(v.spe.buffer.pmbsr_el1)
    }

    fn execute(&mut self, workload: &mut dyn Workload, budget: u64) -> (u64, ExecStop) {
        if self.exit.is_some() || !self.recheck_unpinned_buffer() {
            return (0, ExecStop::Exit);
        }
        let mut total = 0;
        while total < budget {
            if !self.irqs_masked && (self.virq_pending() || self.pmu_level()) {
                return (total, ExecStop::VirtualIrq);
            }
            // A guest's virtual timer is forwarded (its PPI held off while
            // it is pending), never taken by the host.
            self.sync_vtimer_irq();
            let mut done = 0;
            let r = self
                .kvm
                .machine
                .run(self.cpu, workload, budget - total, &mut done);
            total += done;
            match r {
                Some(RunExit::Interrupt(_)) => {
                    if !self.physical_interrupt_exit() {
                        return (total, ExecStop::Exit);
                    }
                }
                Some(RunExit::Completed) => {}
                None => return (total, ExecStop::Exit),
            }
        }
        (total, ExecStop::Completed)
    }

    fn to_el0(&mut self) {
        self.pe().eret(ExceptionLevel::EL0);
    }

    fn to_el1(&mut self) {
        self.pe().exception_entry(ExceptionLevel::EL1);
    }

    fn pmu_virq_pending(&self) -> bool {
        self.pmu_level()
    }

    fn mask_irqs(&mut self, masked: bool) {
        self.irqs_masked = masked;
    }

    fn take_virq(&mut self) {
        let (spe, pmu) = (self.virq_pending(), self.pmu_level());
        let stats = &mut self.kvm.vcpus[self.vcpu].stats;
        stats.virqs += u64::from(spe || !pmu);
        stats.pmu_virqs += u64::from(pmu);
        self.to_el1();
    }
}

impl Kvm {
    /// The guest's TTBR0_EL1: under VHE read through the EL12 alias, as the
    /// hypervisor would at EL2; under nVHE the value the last exit saved
    /// (the host's own is on the hardware while the host emulates).
    pub(super) fn guest_ttbr0_el1(&mut self, vcpu: usize, cpu: usize) -> u64 {
        // While the guest runs (a check made on its behalf between two of
        // its operations) the EL1 register is the guest's own.
        let at_el2 = self
            .machine
            .pe(cpu)
            .is_some_and(|pe| pe.el() == ExceptionLevel::EL2);
        let reg = if at_el2 {
            SysReg::TTBR0_EL12
        } else {
            SysReg::TTBR0_EL1
        };
        let v = match self.mode {
            HostMode::Vhe => self
                .machine
                .cpu(cpu)
                .and_then(|mut c| c.read(reg).ok())
                .unwrap_or(0),
            HostMode::Nvhe => self.vcpus[vcpu].ttbr0_el1,
        };
        v & 0x0000_FFFF_FFFF_FFFE
    }
}

impl GuestCpu<'_> {
    /// An MRS (`write` None) or MSR: on the hardware, or, if it traps to
    /// EL2, through the hypervisor. Nothing executes while an exit to the
    /// VMM is pending.
    pub(super) fn access(&mut self, reg: SysReg, write: Option<u64>) -> Result<u64, AccessFault> {
        let to_el2 = AccessFault::Trapped {
            to: ExceptionLevel::EL2,
        };
        if self.exit.is_some() {
            return Err(to_el2);
        }
        let mut c = self
            .kvm
            .machine
            .cpu(self.cpu)
            .ok_or(AccessFault::Undefined)?;
        let r = match write {
            Some(val) => c.write(reg, val).map(|()| 0),
            None => c.read(reg),
        };
        match r {
            Err(f) if f == to_el2 => self.trap(reg, write),
            r => r,
        }
    }
}

impl Cpu for GuestCpu<'_> {
    fn read(&mut self, reg: SysReg) -> Result<u64, AccessFault> {
        self.access(reg, None)
    }
    fn write(&mut self, reg: SysReg, val: u64) -> Result<(), AccessFault> {
        self.access(reg, Some(val)).map(|_| ())
    }
    fn isb(&mut self) {
        if let Some(mut c) = self.kvm.machine.cpu(self.cpu) {
            c.isb();
        }
    }
    fn dsb_nsh(&mut self) {
        if let Some(mut c) = self.kvm.machine.cpu(self.cpu) {
            c.dsb_nsh();
        }
    }
    fn psb_csync(&mut self) {
        if let Some(mut c) = self.kvm.machine.cpu(self.cpu) {
            c.psb_csync();
        }
    }
    fn current_el(&self) -> ExceptionLevel {
        self.kvm
            .machine
            .pe(self.cpu)
            .map_or(ExceptionLevel::EL1, Pe::el)
    }
    fn load(&mut self, va: u64, buf: &mut [u8]) -> Result<(), MemoryFault> {
        match self.kvm.machine.cpu(self.cpu) {
            Some(mut c) => c.load(va, buf),
            None => Err(MemoryFault { va }),
        }
    }
}
