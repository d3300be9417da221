//! Exceptions: synchronous ones and interrupts taken to EL1 inside the
//! engine (AArch64.TakeException), exception return, and the syndromes of
//! exceptions taken to EL2, which leave `run` as [`Exit::El2`].

use crate::bus::MemFault;
use crate::cpu::Cpu;

/// Exception classes (ESR_ELx.EC) the engine produces.
pub mod ec {
    /// Unknown reason (UNDEFINED instruction).
    pub const UNKNOWN: u8 = 0x00;
    /// Trapped WFI/WFE.
    pub const WFX: u8 = 0x01;
    /// Access to SIMD/FP trapped (CPACR_EL1.FPEN, CPTR_EL2.TFP).
    pub const FP_ASIMD: u8 = 0x07;
    /// Illegal Execution state.
    pub const ILLEGAL: u8 = 0x0e;
    /// SVC from AArch64.
    pub const SVC64: u8 = 0x15;
    /// HVC from AArch64.
    pub const HVC64: u8 = 0x16;
    /// SMC from AArch64 (trapped by HCR_EL2.TSC).
    pub const SMC64: u8 = 0x17;
    /// Trapped MSR, MRS or System instruction.
    pub const SYS64: u8 = 0x18;
    /// Instruction Abort from a lower Exception level.
    pub const IABT_LOW: u8 = 0x20;
    /// Instruction Abort without a change in Exception level.
    pub const IABT_CUR: u8 = 0x21;
    /// PC alignment fault.
    pub const PC_ALIGN: u8 = 0x22;
    /// Data Abort from a lower Exception level.
    pub const DABT_LOW: u8 = 0x24;
    /// Data Abort without a change in Exception level.
    pub const DABT_CUR: u8 = 0x25;
    /// SP alignment fault.
    pub const SP_ALIGN: u8 = 0x26;
    /// BRK instruction.
    pub const BRK64: u8 = 0x3c;
}

/// DFSC of an alignment fault.
pub const FSC_ALIGNMENT: u8 = 0x21;

/// ESR_ELx.IL: the trapped instruction was 32 bits (always, for A64).
pub const ESR_IL: u64 = 1 << 25;

/// An ESR value from EC and ISS (IL set).
pub fn esr(ec: u8, iss: u32) -> u64 {
    ((ec as u64) << 26) | ESR_IL | (iss as u64 & 0x1ff_ffff)
}

/// An exception taken to EL2: the engine's state is left as at the
/// exception (PC = the preferred return address, i.e. ELR_EL2) and `run`
/// returns this. The hypervisor emulates, adjusts registers/PC (e.g.
/// [`Cpu::skip`]) or injects an exception, then calls `run` again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct El2Exit {
    /// ESR_EL2.
    pub esr: u64,
    /// FAR_EL2 (aborts; 0 otherwise).
    pub far: u64,
    /// HPFAR_EL2 (stage-2 aborts: FIPA = IPA\[51:12\] in bits \[43:4\]; 0 otherwise).
    pub hpfar: u64,
}

impl El2Exit {
    /// The exception class.
    pub fn ec(&self) -> u8 {
        ((self.esr >> 26) & 0x3f) as u8
    }
    /// The instruction-specific syndrome.
    pub fn iss(&self) -> u32 {
        (self.esr & 0x1ff_ffff) as u32
    }
}

/// Why [`Cpu::run`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// The instruction budget was used up.
    Budget,
    /// An exception to EL2.
    El2(El2Exit),
    /// WFI executed (not trapped) with no interrupt pending; PC is past it.
    /// The embedder runs again once an interrupt is pending.
    Wfi,
    /// WFE executed (not trapped) with the event register clear; PC is past it.
    Wfe,
    /// A hint or barrier whose bus call asked to exit; PC is past it.
    Hint,
}

/// Why an instruction stopped instead of completing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// A synchronous exception to EL1.
    El1 {
        esr: u64,
        far: Option<u64>,
        pref: u64,
        retired: bool,
    },
    /// Leave `run`; `retired` says whether the instruction completed.
    Exit { exit: Exit, retired: bool },
}

/// Vector offsets from VBAR_EL1 by exception type.
pub(crate) const VECT_SYNC: u64 = 0x000;
pub(crate) const VECT_IRQ: u64 = 0x080;
pub(crate) const VECT_FIQ: u64 = 0x100;

impl Cpu {
    /// Take an exception to EL1 (AArch64.TakeException): SPSR_EL1, ELR_EL1,
    /// ESR_EL1/FAR_EL1 when given, PSTATE (EL1h, DAIF all set, PAN per
    /// SCTLR_EL1.SPAN, UAO and IL cleared), PC = vector.
    pub(crate) fn take_el1(&mut self, vect: u64, esr: Option<u64>, far: Option<u64>, pref: u64) {
        let base = if self.pstate.el == 0 {
            0x400
        } else if self.pstate.sp_sel {
            0x200
        } else {
            0
        };
        self.exceptions += 1;
        self.spsr_el1 = self.spsr_value();
        self.elr_el1 = pref;
        if let Some(e) = esr {
            self.esr_el1 = e;
        }
        if let Some(f) = far {
            self.far_el1 = f;
        }
        self.pstate.el = 1;
        self.pstate.sp_sel = true;
        self.pstate.daif = 0xf;
        self.pstate.il = false;
        self.pstate.uao = false;
        if self.sctlr_el1 & crate::cpu::sctlr::SPAN == 0 {
            self.pstate.pan = true;
        }
        self.update_sp_idx();
        self.pc = (self.vbar_el1 & !0x7ff).wrapping_add(base + vect);
    }

    /// Take an IRQ or FIQ to EL1 if one is pending and unmasked; true if taken.
    #[inline(always)]
    pub(crate) fn take_pending_interrupt(&mut self) -> bool {
        if self.fiq_line && self.pstate.daif & 1 == 0 {
            self.take_el1(VECT_FIQ, None, None, self.pc);
            true
        } else if self.irq_line && self.pstate.daif & 2 == 0 {
            self.take_el1(VECT_IRQ, None, None, self.pc);
            true
        } else {
            false
        }
    }

    /// Inject a synchronous exception into EL1 with this syndrome (and FAR
    /// for aborts), returning to the current PC. For a hypervisor that
    /// emulated a trapped access and decided the guest gets an exception.
    pub fn inject_sync(&mut self, esr: u64, far: Option<u64>) {
        self.take_el1(VECT_SYNC, Some(esr), far, self.pc);
    }

    /// Inject an UNDEFINED exception (EC 0x00) for the instruction at PC.
    pub fn inject_undef(&mut self) {
        self.inject_sync(esr(ec::UNKNOWN, 0), None);
    }

    /// Exception return from EL1 (ERET): PSTATE from SPSR_EL1, PC from
    /// ELR_EL1; an illegal return sets PSTATE.IL and keeps EL and SPSel.
    pub(crate) fn eret(&mut self) {
        let spsr = self.spsr_el1;
        let el = ((spsr >> 2) & 3) as u8;
        let illegal = spsr & 0x10 != 0 || spsr & 2 != 0 || el > 1 || (el == 0 && spsr & 1 != 0);
        self.nzcv = ((spsr >> 28) & 0xf) as u8;
        self.pstate.daif = ((spsr >> 6) & 0xf) as u8;
        self.pstate.pan = spsr & (1 << 22) != 0;
        self.pstate.uao = spsr & (1 << 23) != 0;
        if illegal {
            self.pstate.il = true;
        } else {
            self.pstate.il = spsr & (1 << 20) != 0;
            self.pstate.el = el;
            self.pstate.sp_sel = spsr & 1 != 0;
        }
        self.update_sp_idx();
        self.monitor.armed = false;
        self.pc = self.elr_el1;
    }

    /// A synchronous exception to EL1 for the instruction at `pc`.
    #[inline]
    pub(crate) fn sync_el1(&self, ec: u8, iss: u32, far: Option<u64>, pc: u64) -> Stop {
        Stop::El1 {
            esr: esr(ec, iss),
            far,
            pref: pc,
            retired: false,
        }
    }

    /// UNDEFINED at `pc`.
    #[inline]
    pub(crate) fn undef(&self, pc: u64) -> Stop {
        self.sync_el1(ec::UNKNOWN, 0, None, pc)
    }

    /// An exception to EL2 (not retired; PC stays at the instruction).
    pub(crate) fn to_el2(ec: u8, iss: u32, far: u64, hpfar: u64) -> Stop {
        Stop::Exit {
            exit: Exit::El2(El2Exit {
                esr: esr(ec, iss),
                far,
                hpfar,
            }),
            retired: false,
        }
    }

    /// The Data Abort for a failed access at `va`. `isv` carries the
    /// ISV/SAS/SSE/SRT/SF/AR bits (ISS\[24:14\]) for a stage-2 abort on a
    /// single-register access, else 0; `cm` marks cache maintenance.
    pub(crate) fn data_abort(
        &self,
        f: MemFault,
        va: u64,
        wnr: bool,
        isv: u32,
        cm: bool,
        pc: u64,
    ) -> Stop {
        let extra = ((wnr as u32) << 6) | ((cm as u32) << 8);
        match f {
            MemFault::Stage1 { fsc } => {
                let ec = if self.pstate.el == 0 {
                    ec::DABT_LOW
                } else {
                    ec::DABT_CUR
                };
                self.sync_el1(ec, extra | (fsc as u32 & 0x3f), Some(va), pc)
            }
            MemFault::Stage2 { fsc, ipa, s1ptw } => {
                let isv = if s1ptw { 0 } else { isv };
                let iss = isv | ((s1ptw as u32) << 7) | extra | (fsc as u32 & 0x3f);
                Self::to_el2(ec::DABT_LOW, iss, va, (ipa >> 12) << 4)
            }
        }
    }

    /// The Instruction Abort for a failed fetch at `va`.
    pub(crate) fn insn_abort(&self, f: MemFault, va: u64) -> Stop {
        match f {
            MemFault::Stage1 { fsc } => {
                let ec = if self.pstate.el == 0 {
                    ec::IABT_LOW
                } else {
                    ec::IABT_CUR
                };
                self.sync_el1(ec, fsc as u32 & 0x3f, Some(va), va)
            }
            MemFault::Stage2 { fsc, ipa, s1ptw } => {
                let iss = ((s1ptw as u32) << 7) | (fsc as u32 & 0x3f);
                Self::to_el2(ec::IABT_LOW, iss, va, (ipa >> 12) << 4)
            }
        }
    }

    /// Act on a stop that is an exception to EL1.
    pub(crate) fn take_stop_el1(&mut self, esr: u64, far: Option<u64>, pref: u64) {
        self.take_el1(VECT_SYNC, Some(esr), far, pref);
    }
}
