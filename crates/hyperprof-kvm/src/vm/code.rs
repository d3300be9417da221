//! KVM_RUN for vCPUs that run real A64 machine code ([`Kvm::run_code`]):
//! the guest runs on the engine until something needs EL2, and the exit is
//! handled as KVM's handle_exit does: trapped system registers emulated
//! (the same emulation the Rust guests' accesses reach), HVC and SMC and
//! MMIO handed to the VMM, WFI with nothing pending reported as idle.

use super::*;
use hyperprof_sim::pe::{CodeContext, CodeStop};

/// ESR_EL2.EC values the run loop handles.
mod ec {
    pub const WFX: u8 = 0x01;
    pub const HVC64: u8 = 0x16;
    pub const SMC64: u8 = 0x17;
    pub const SYS64: u8 = 0x18;
    pub const IABT_LOW: u8 = 0x20;
    pub const DABT_LOW: u8 = 0x24;
}

/// An MMIO access waiting for the VMM ([`Exit::Mmio`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mmio {
    /// Guest physical address.
    pub ipa: u64,
    /// Bytes accessed: 1, 2, 4 or 8.
    pub len: u8,
    /// The value written; `None` for a read.
    pub write: Option<u64>,
    /// The register a read lands in (ISS.SRT).
    rt: u8,
    /// Sign-extend a read (ISS.SSE).
    sign_extend: bool,
    /// A read into a 64-bit register (ISS.SF).
    sixty_four: bool,
    /// The value the VMM gave a read.
    data: Option<u64>,
}

/// The ID registers of HCR_EL2.TID3's group 3 that a code guest reads, as
/// the VM describes them: EL0 and EL1 in AArch64 only, no EL2 or EL3, no
/// FP/AdvSIMD (the engine has none), LSE atomics and CRC32, 4 KiB pages
/// with a 40-bit IPA, PAN. ID_AA64DFR0_EL1 is described by the SPE/PMU
/// emulation. Everything else in the group reads as zero.
fn id_group3(op2: u8, crm: u8) -> u64 {
    match (crm, op2) {
        // ID_AA64PFR0_EL1: EL0 = EL1 = 1, FP = AdvSIMD = 0xF.
        (4, 0) => 0x1 | 0x1 << 4 | 0xF << 16 | 0xF << 20,
        // ID_AA64ISAR0_EL1: CRC32 = 1, Atomic = 2.
        (6, 0) => 0x1 << 16 | 0x2 << 20,
        // ID_AA64MMFR0_EL1: PARange = 40 bits, TGran64 and TGran16 absent.
        (7, 0) => 0x2 | 0xF << 24,
        // ID_AA64MMFR1_EL1: PAN = 1.
        (7, 1) => 0x1 << 20,
        _ => 0,
    }
}

impl Kvm {
    /// KVM_RUN for vCPU `vcpu` running the machine code of `code`, for at
    /// most `budget` instructions. `Exit::Yield` means the budget ran out.
    pub fn run_code(&mut self, vcpu: usize, code: &mut CodeContext, budget: u64) -> Exit {
        let (vm, cpu) = match self.prepare_run(vcpu) {
            Ok(x) => x,
            Err(exit) => return exit,
        };
        if let Some(m) = self.vcpus[vcpu].mmio.take() {
            // Userspace completed the access: KVM_RUN finishes the load.
            Self::complete_mmio(code, &m);
        }
        // The entry is an exception return from EL2, which clears the
        // local exclusive monitor: a LDXR before the exit cannot pair with
        // a STXR after it, whatever other vCPUs stored in between.
        code.cpu.clear_exclusive();
        let mut g = GuestCpu {
            kvm: self,
            vcpu,
            vm,
            cpu,
            exit: None,
            buffer_live: false,
            // A code guest masks its interrupts itself, in PSTATE.
            irqs_masked: false,
        };
        let el = if code.cpu.el() == 0 {
            ExceptionLevel::EL0
        } else {
            ExceptionLevel::EL1
        };
        if let Err(e) = g.enter(el) {
            return Exit::FailEntry(e);
        }
        if let Err(e) = g.load_el1_context() {
            return Exit::FailEntry(e);
        }
        let exit = g.run_code_loop(code, budget);
        if let Err(e) = g.save_el1_context() {
            return Exit::FailEntry(e);
        }
        if let Err(e) = g.leave() {
            return Exit::FailEntry(e);
        }
        exit
    }

    /// Finishes an MMIO read with the value the VMM put in the exit, or
    /// skips a write: the instruction retires.
    pub(super) fn complete_mmio(code: &mut CodeContext, m: &Mmio) {
        if m.write.is_none() {
            let bits = u32::from(m.len) * 8;
            let mut v = m.data_or_zero();
            if bits < 64 {
                v &= (1u64 << bits) - 1;
                if m.sign_extend && v >> (bits - 1) & 1 == 1 {
                    v |= !((1u64 << bits) - 1);
                }
            }
            if !m.sixty_four {
                v &= 0xFFFF_FFFF;
            }
            code.cpu.set_x(usize::from(m.rt), v);
        }
        code.cpu.skip();
    }

    /// The VMM's answer to an [`Exit::Mmio`] read of vCPU `vcpu`: the value
    /// the next [`Kvm::run_code`] puts in the guest's register.
    pub fn set_mmio_data(&mut self, vcpu: usize, data: u64) -> Result<(), Errno> {
        let v = self.vcpus.get_mut(vcpu).ok_or(Errno::ENODEV)?;
        match v.mmio.as_mut() {
            Some(m) if m.write.is_none() => {
                m.data = Some(data);
                Ok(())
            }
            _ => Err(Errno::EINVAL),
        }
    }
}

impl Mmio {
    fn data_or_zero(&self) -> u64 {
        self.data.unwrap_or(0)
    }

    /// The read completed with `data`.
    pub(super) fn with_data(&self, data: u64) -> Mmio {
        Mmio {
            data: Some(data),
            ..*self
        }
    }
}

impl GuestCpu<'_> {
    /// VHE: the guest's TTBR0_EL1 and CONTEXTIDR_EL1 go to the hardware
    /// through the EL12 aliases (nVHE entry restores them itself).
    fn load_el1_context(&mut self) -> Result<(), String> {
        if self.kvm.mode != HostMode::Vhe {
            return Ok(());
        }
        let (ttbr, ctx) = {
            let v = &self.kvm.vcpus[self.vcpu];
            (v.ttbr0_el1, v.contextidr_el1)
        };
        let mut c = self.kvm.machine.cpu(self.cpu).ok_or("no such CPU")?;
        // The writes are made at EL2.
        let el = c.pe().el();
        c.pe().exception_entry(ExceptionLevel::EL2);
        let r = c
            .write(SysReg::TTBR0_EL12, ttbr)
            .and_then(|_| c.write(SysReg::CONTEXTIDR_EL12, ctx))
            .map_err(|e| format!("loading the guest's EL1 context: {e:?}"));
        c.pe().eret(el);
        r
    }

    /// VHE: the guest's TTBR0_EL1 and CONTEXTIDR_EL1 back to the vCPU.
    fn save_el1_context(&mut self) -> Result<(), String> {
        if self.kvm.mode != HostMode::Vhe {
            return Ok(());
        }
        let mut c = self.kvm.machine.cpu(self.cpu).ok_or("no such CPU")?;
        let el = c.pe().el();
        c.pe().exception_entry(ExceptionLevel::EL2);
        let r = c
            .read(SysReg::TTBR0_EL12)
            .and_then(|t| c.read(SysReg::CONTEXTIDR_EL12).map(|x| (t, x)));
        c.pe().eret(el);
        let (ttbr, ctx) = r.map_err(|e| format!("saving the guest's EL1 context: {e:?}"))?;
        let v = &mut self.kvm.vcpus[self.vcpu];
        v.ttbr0_el1 = ttbr;
        v.contextidr_el1 = ctx;
        Ok(())
    }

    /// The vCPU's virtual interrupt line: its PMBIRQ, PMU and timer levels
    /// (one line until the VM has an interrupt controller).
    pub(super) fn irq_line(&self) -> bool {
        self.virq_pending() || self.pmu_level() || self.vtimer_level() || self.ptimer_level()
    }

    fn run_code_loop(&mut self, code: &mut CodeContext, budget: u64) -> Exit {
        let mut total = 0u64;
        loop {
            if let Some(exit) = self.exit.take() {
                return exit;
            }
            if total >= budget {
                return Exit::Yield;
            }
            self.sync_vtimer_irq();
            // Without a vGIC the virtual interrupt line is the OR of the
            // guest's level sources; with one, the PE's virtual CPU
            // interface drives it from the list registers the entry filled.
            if !self.has_vgic() {
                code.cpu.set_irq(self.irq_line());
            }
            // The emulated physical timer must not fire late: every
            // instruction takes at least a cycle.
            let slice = match self.ticks_to_ptimer() {
                Some(t) => (budget - total).min(t),
                None => budget - total,
            };
            let mut done = 0;
            let cpu = self.cpu;
            let stop = self.kvm.machine.run_code(cpu, code, slice, &mut done);
            total += done;
            let stop = match stop {
                Some(s) => s,
                None => return Exit::FailEntry(format!("no CPU {cpu}")),
            };
            match stop {
                // A chunk spent taking exceptions without retiring one
                // instruction (a vector that faults on itself): the VMM
                // decides, not another turn here.
                CodeStop::Budget if done < slice => return Exit::Yield,
                // The emulated physical timer's deadline: with a vGIC its
                // level reaches the list registers through an exit and an
                // entry, as KVM's timer would kick the vCPU.
                CodeStop::Budget if total < budget => {
                    if self.has_vgic() && self.ptimer_level() {
                        if let Err(e) = self.vgic_kick() {
                            return Exit::FailEntry(e);
                        }
                    }
                }
                CodeStop::Budget => return Exit::Yield,
                CodeStop::TimerDeasserted => {}
                CodeStop::Interrupt(lines) => {
                    self.kvm.vcpus[self.vcpu].stats.timer_irqs += u64::from(lines.vtimer);
                    if lines.maintenance {
                        self.vgic_maintenance_exit();
                    }
                    if !self.physical_interrupt_exit() {
                        return self.exit.take().unwrap_or(Exit::Yield);
                    }
                }
                CodeStop::Wfi => {
                    if !self.wakes_from_wfi() {
                        self.kvm.vcpus[self.vcpu].stats.wfi_exits += 1;
                        return Exit::Idle;
                    }
                    if let Err(e) = self.vgic_kick() {
                        return Exit::FailEntry(e);
                    }
                }
                CodeStop::El2(e) => {
                    if let Some(exit) = self.handle_el2(code, e) {
                        return exit;
                    }
                }
            }
        }
    }

    /// One exception to EL2 (KVM's handle_exit); `Some` when the VMM must
    /// act before the guest runs again.
    fn handle_el2(&mut self, code: &mut CodeContext, e: hyperprof_a64::El2Exit) -> Option<Exit> {
        let iss = e.iss();
        match e.ec() {
            ec::SYS64 => {
                self.kvm.vcpus[self.vcpu].stats.sysreg_exits += 1;
                self.sysreg_exit(code, iss)
            }
            ec::HVC64 => {
                self.kvm.vcpus[self.vcpu].stats.hvc_exits += 1;
                Some(Exit::Hypercall {
                    imm: (iss & 0xFFFF) as u16,
                })
            }
            ec::SMC64 => {
                // The VM has no EL3: the hypervisor answers SMCCC calls made
                // with SMC like those made with HVC, past the instruction.
                code.cpu.skip();
                self.kvm.vcpus[self.vcpu].stats.hvc_exits += 1;
                Some(Exit::Hypercall {
                    imm: (iss & 0xFFFF) as u16,
                })
            }
            ec::WFX => {
                code.cpu.skip();
                if !self.wakes_from_wfi() {
                    return Some(Exit::Idle);
                }
                self.vgic_kick().err().map(Exit::FailEntry)
            }
            ec::DABT_LOW => self.data_abort(code, e),
            ec::IABT_LOW => Some(Exit::FailEntry(format!(
                "instruction fetch outside the VM's memory at IPA {:#x} (PC {:#x})",
                (e.hpfar >> 4) << 12 | (e.far & 0xFFF),
                code.cpu.pc()
            ))),
            other => Some(Exit::FailEntry(format!(
                "unexpected exception to EL2: EC {other:#x} ISS {iss:#x} at PC {:#x}",
                code.cpu.pc()
            ))),
        }
    }

    /// A trapped MRS/MSR (ISS encoding for EC 0x18).
    fn sysreg_exit(&mut self, code: &mut CodeContext, iss: u32) -> Option<Exit> {
        let field = |lsb: u32, bits: u32| ((iss >> lsb) & ((1 << bits) - 1)) as u8;
        let (op0, op2, op1, crn, rt, crm) = (
            field(20, 2),
            field(17, 3),
            field(14, 3),
            field(10, 4),
            field(5, 5),
            field(1, 4),
        );
        let read = iss & 1 == 1;
        let write = (!read).then(|| code.cpu.x(usize::from(rt)));
        let reg = SysReg::from_encoding(hyperprof_arch::Encoding::new(op0, op1, crn, crm, op2));
        let r = match reg {
            Some(reg) => self.trap(reg, write),
            None if read && op0 == 3 && op1 == 0 && crn == 0 && (1..=7).contains(&crm) => {
                Ok(id_group3(op2, crm))
            }
            None => Err(AccessFault::Undefined),
        };
        match r {
            Ok(v) => {
                if read {
                    code.cpu.set_x(usize::from(rt), v);
                }
                code.cpu.skip();
                None
            }
            Err(AccessFault::Undefined) => {
                code.cpu.inject_undef();
                None
            }
            // The VMM is needed (an Rlimit): the access runs again after it.
            Err(AccessFault::Trapped { .. }) => Some(self.exit.take().unwrap_or(Exit::Yield)),
        }
    }

    /// A stage-2 data abort: outside the VM's memory it is MMIO for the VMM.
    fn data_abort(&mut self, code: &mut CodeContext, e: hyperprof_a64::El2Exit) -> Option<Exit> {
        let iss = e.iss();
        let ipa = (e.hpfar >> 4) << 12 | (e.far & 0xFFF);
        let in_ram = {
            let vm = &self.kvm.vms[self.vm];
            ipa >= GUEST_RAM_IPA && ipa - GUEST_RAM_IPA < vm.ram_bytes
        };
        if in_ram {
            return Some(Exit::FailEntry(format!(
                "stage-2 fault inside guest RAM at IPA {ipa:#x} (ISS {iss:#x})"
            )));
        }
        if iss >> 24 & 1 == 0 {
            // KVM_EXIT_ARM_NISV's case: no syndrome to emulate from.
            return Some(Exit::FailEntry(format!(
                "MMIO access at IPA {ipa:#x} without a valid syndrome (ISV = 0): \
                 the guest used an instruction a VMM cannot emulate"
            )));
        }
        let len = 1u8 << (iss >> 22 & 3);
        let rt = (iss >> 16 & 31) as u8;
        let is_write = iss >> 6 & 1 == 1;
        let m = Mmio {
            ipa,
            len,
            write: None,
            rt,
            sign_extend: iss >> 21 & 1 == 1,
            sixty_four: iss >> 15 & 1 == 1,
            data: None,
        };
        let m = if is_write {
            Mmio {
                write: Some(code.cpu.x(usize::from(rt))),
                ..m
            }
        } else {
            m
        };
        // The distributor and redistributors are the hypervisor's own: a
        // full exit, so that the emulation sees the list registers' state
        // and its changes reach them at the entry.
        if self.vgic_claims(ipa) {
            let back = self.pe().el();
            if let Err(e) = self.leave() {
                return Some(Exit::FailEntry(e));
            }
            self.vgic_mmio(code, &m);
            return self.enter(back).err().map(Exit::FailEntry);
        }
        self.kvm.vcpus[self.vcpu].stats.mmio_exits += 1;
        // Kept until the next KVM_RUN completes the access.
        self.kvm.vcpus[self.vcpu].mmio = Some(m);
        Some(Exit::Mmio(m))
    }
}
