//! The architectural state of one PE at EL0/EL1 and its public interface.

use crate::insn::SysReg;

/// PSTATE fields the engine models (NZCV is kept apart for speed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Pstate {
    /// Current Exception level, 0 or 1.
    pub el: u8,
    /// SPSel: at EL1, true selects SP_EL1.
    pub sp_sel: bool,
    /// D, A, I, F masks as bits 3..0.
    pub daif: u8,
    /// PSTATE.PAN.
    pub pan: bool,
    /// PSTATE.UAO.
    pub uao: bool,
    /// PSTATE.IL (illegal execution state).
    pub il: bool,
}

/// Controls of EL2 that the engine applies itself (the embedder's
/// hypervisor keeps them equal to its HCR_EL2/CPTR_EL2 view).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct El2Controls {
    /// HCR_EL2.TWI: WFI at EL0/EL1 traps to EL2 (EC 0x01).
    pub twi: bool,
    /// HCR_EL2.TWE: WFE at EL0/EL1 traps to EL2 (EC 0x01).
    pub twe: bool,
    /// HCR_EL2.TSC: SMC at EL1 traps to EL2 (EC 0x17); otherwise SMC is
    /// UNDEFINED (no EL3).
    pub tsc: bool,
    /// CPTR_EL2.TFP (or CPACR_EL2.FPEN in VHE terms): FP/SIMD that EL1
    /// does not trap traps to EL2 (EC 0x07).
    pub tfp: bool,
    /// HCR_EL2.HCD: HVC is UNDEFINED.
    pub hcd: bool,
}

/// SCTLR_EL1 bits the engine uses.
pub mod sctlr {
    /// Alignment check for all data accesses.
    pub const A: u64 = 1 << 1;
    /// SP alignment check at EL1.
    pub const SA: u64 = 1 << 3;
    /// SP alignment check at EL0.
    pub const SA0: u64 = 1 << 4;
    /// EL0 access to DAIF (User Mask Access).
    pub const UMA: u64 = 1 << 9;
    /// EL0 may execute DC ZVA.
    pub const DZE: u64 = 1 << 14;
    /// EL0 WFI is not trapped.
    pub const NTWI: u64 = 1 << 16;
    /// EL0 WFE is not trapped.
    pub const NTWE: u64 = 1 << 18;
    /// SPAN: when 0, PSTATE.PAN is set on exception entry to EL1.
    pub const SPAN: u64 = 1 << 23;
    /// EL0 may execute cache maintenance by VA (DC CVAU/CVAC/CIVAC, IC IVAU).
    pub const UCI: u64 = 1 << 26;
    /// The value at reset (RES1 bits of Armv8.0 and the trap-disable bits
    /// set, MMU and caches off).
    pub const RESET: u64 = 0x30d0_0800 | SPAN | NTWI | NTWE;
}

/// System registers the engine keeps (encodings from the Arm ARM).
pub mod regs {
    use crate::insn::SysReg;
    /// NZCV.
    pub const NZCV: SysReg = SysReg::new(3, 3, 4, 2, 0);
    /// DAIF.
    pub const DAIF: SysReg = SysReg::new(3, 3, 4, 2, 1);
    /// CurrentEL.
    pub const CURRENT_EL: SysReg = SysReg::new(3, 0, 4, 2, 2);
    /// SPSel.
    pub const SPSEL: SysReg = SysReg::new(3, 0, 4, 2, 0);
    /// PAN.
    pub const PAN: SysReg = SysReg::new(3, 0, 4, 2, 3);
    /// UAO.
    pub const UAO: SysReg = SysReg::new(3, 0, 4, 2, 4);
    /// SP_EL0.
    pub const SP_EL0: SysReg = SysReg::new(3, 0, 4, 1, 0);
    /// SP_EL1 (EL2 only).
    pub const SP_EL1: SysReg = SysReg::new(3, 4, 4, 1, 0);
    /// SPSR_EL1.
    pub const SPSR_EL1: SysReg = SysReg::new(3, 0, 4, 0, 0);
    /// ELR_EL1.
    pub const ELR_EL1: SysReg = SysReg::new(3, 0, 4, 0, 1);
    /// ESR_EL1.
    pub const ESR_EL1: SysReg = SysReg::new(3, 0, 5, 2, 0);
    /// FAR_EL1.
    pub const FAR_EL1: SysReg = SysReg::new(3, 0, 6, 0, 0);
    /// VBAR_EL1.
    pub const VBAR_EL1: SysReg = SysReg::new(3, 0, 12, 0, 0);
    /// CPACR_EL1.
    pub const CPACR_EL1: SysReg = SysReg::new(3, 0, 1, 0, 2);
    /// SCTLR_EL1.
    pub const SCTLR_EL1: SysReg = SysReg::new(3, 0, 1, 0, 0);
    /// TPIDR_EL0 (kept by the embedder; named here for tests and tools).
    pub const TPIDR_EL0: SysReg = SysReg::new(3, 3, 13, 0, 2);
}

/// Exclusive monitor of the PE (local monitor; the embedder clears it when
/// another PE writes the monitored location, see [`Cpu::clear_exclusive`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ExclusiveMonitor {
    /// Whether the monitor is in the Exclusive Access state.
    pub armed: bool,
    /// The marked virtual address.
    pub va: u64,
    /// Bytes covered.
    pub size: u8,
}

/// One PE's architectural state at EL0 and EL1, the exception model, and
/// (with the `alloc` feature) its basic-block cache.
pub struct Cpu {
    /// X0..X30, and index 31 always zero (XZR).
    pub(crate) x: [u64; 32],
    /// SP_EL0 and SP_EL1.
    pub(crate) sp: [u64; 2],
    /// Index into `sp` of the current stack pointer.
    pub(crate) sp_idx: usize,
    /// The program counter.
    pub(crate) pc: u64,
    /// NZCV as bits 3..0 (N = 8, Z = 4, C = 2, V = 1).
    pub(crate) nzcv: u8,
    pub(crate) pstate: Pstate,
    pub(crate) elr_el1: u64,
    pub(crate) spsr_el1: u64,
    pub(crate) esr_el1: u64,
    pub(crate) far_el1: u64,
    pub(crate) vbar_el1: u64,
    pub(crate) cpacr_el1: u64,
    pub(crate) sctlr_el1: u64,
    pub(crate) monitor: ExclusiveMonitor,
    pub(crate) event: bool,
    pub(crate) irq_line: bool,
    pub(crate) fiq_line: bool,
    /// EL2 trap controls applied by the engine.
    pub el2: El2Controls,
    pub(crate) retired: u64,
    pub(crate) exceptions: u64,
    pub(crate) obs: crate::bus::Retired,
    #[cfg(feature = "alloc")]
    pub(crate) cache: alloc::boxed::Box<crate::cache::BlockCache>,
}

impl Default for Cpu {
    fn default() -> Self {
        Self::new()
    }
}

impl Cpu {
    /// A PE out of reset: EL1h, DAIF masked, registers zero, SCTLR_EL1 at
    /// its reset value, FP/SIMD trapped (CPACR_EL1.FPEN = 0).
    pub fn new() -> Cpu {
        Cpu {
            x: [0; 32],
            sp: [0; 2],
            sp_idx: 1,
            pc: 0,
            nzcv: 0,
            pstate: Pstate {
                el: 1,
                sp_sel: true,
                daif: 0xf,
                pan: false,
                uao: false,
                il: false,
            },
            elr_el1: 0,
            spsr_el1: 0,
            esr_el1: 0,
            far_el1: 0,
            vbar_el1: 0,
            cpacr_el1: 0,
            sctlr_el1: sctlr::RESET,
            monitor: ExclusiveMonitor::default(),
            event: false,
            irq_line: false,
            fiq_line: false,
            el2: El2Controls::default(),
            retired: 0,
            exceptions: 0,
            obs: crate::bus::Retired::default(),
            #[cfg(feature = "alloc")]
            cache: crate::cache::BlockCache::new_boxed(),
        }
    }

    /// Xn (n = 0..=30); 31 reads as zero.
    #[inline(always)]
    pub fn x(&self, n: usize) -> u64 {
        self.x[n & 31]
    }

    /// Write Xn (n = 0..=30); writes to 31 are discarded.
    #[inline(always)]
    pub fn set_x(&mut self, n: usize, v: u64) {
        self.x[n & 31] = v;
        self.x[31] = 0;
    }

    /// The current stack pointer (SP_EL0 or SP_EL1 per EL and SPSel).
    #[inline(always)]
    pub fn sp(&self) -> u64 {
        self.sp[self.sp_idx]
    }

    /// Write the current stack pointer.
    #[inline(always)]
    pub fn set_sp(&mut self, v: u64) {
        self.sp[self.sp_idx] = v;
    }

    /// SP_EL0.
    pub fn sp_el0(&self) -> u64 {
        self.sp[0]
    }

    /// SP_EL1.
    pub fn sp_el1(&self) -> u64 {
        self.sp[1]
    }

    /// Write SP_EL0.
    pub fn set_sp_el0(&mut self, v: u64) {
        self.sp[0] = v;
    }

    /// Write SP_EL1.
    pub fn set_sp_el1(&mut self, v: u64) {
        self.sp[1] = v;
    }

    /// The program counter (after an exit to EL2: the preferred return
    /// address, i.e. what ELR_EL2 would hold).
    pub fn pc(&self) -> u64 {
        self.pc
    }

    /// Set the program counter.
    pub fn set_pc(&mut self, pc: u64) {
        self.pc = pc;
    }

    /// Skip the current instruction (after emulating a trapped one).
    pub fn skip(&mut self) {
        self.pc = self.pc.wrapping_add(4);
    }

    /// NZCV in the bit positions of the NZCV register (31:28).
    pub fn nzcv(&self) -> u64 {
        (self.nzcv as u64) << 28
    }

    /// Set NZCV from a value in the NZCV register's layout.
    pub fn set_nzcv(&mut self, v: u64) {
        self.nzcv = ((v >> 28) & 0xf) as u8;
    }

    /// Current Exception level (0 or 1).
    pub fn el(&self) -> u8 {
        self.pstate.el
    }

    /// PSTATE (without NZCV).
    pub fn pstate(&self) -> Pstate {
        self.pstate
    }

    /// The number of instructions retired since creation.
    pub fn retired(&self) -> u64 {
        self.retired
    }

    /// The number of exceptions taken to EL1 since creation (synchronous
    /// and interrupts).
    pub fn exceptions_taken(&self) -> u64 {
        self.exceptions
    }

    /// The exclusive monitor.
    pub fn exclusive_monitor(&self) -> ExclusiveMonitor {
        self.monitor
    }

    /// Clear the exclusive monitor (e.g. another PE wrote the location).
    pub fn clear_exclusive(&mut self) {
        self.monitor.armed = false;
    }

    /// Assert or deassert the IRQ line to EL1 (level-sensitive: a physical
    /// IRQ routed to EL1 or a virtual IRQ injected by the hypervisor).
    pub fn set_irq(&mut self, level: bool) {
        self.irq_line = level;
    }

    /// Assert or deassert the FIQ line to EL1.
    pub fn set_fiq(&mut self, level: bool) {
        self.fiq_line = level;
    }

    /// Set the event register (SEV from another PE, or an event the
    /// embedder generates).
    pub fn send_event(&mut self) {
        self.event = true;
    }

    /// The value SPSR_ELx would take for the current PSTATE.
    pub fn spsr_value(&self) -> u64 {
        let p = &self.pstate;
        ((self.nzcv as u64) << 28)
            | ((p.uao as u64) << 23)
            | ((p.pan as u64) << 22)
            | ((p.il as u64) << 20)
            | ((p.daif as u64) << 6)
            | ((p.el as u64) << 2)
            | (p.sp_sel as u64)
    }

    /// Set PSTATE from a value in SPSR layout (for a hypervisor restoring
    /// a vCPU or entering a guest). An EL above 1 or an AArch32 mode is
    /// ignored (EL and SPSel are left as they are).
    pub fn set_pstate_from_spsr(&mut self, spsr: u64) {
        self.nzcv = ((spsr >> 28) & 0xf) as u8;
        self.pstate.uao = spsr & (1 << 23) != 0;
        self.pstate.pan = spsr & (1 << 22) != 0;
        self.pstate.il = spsr & (1 << 20) != 0;
        self.pstate.daif = ((spsr >> 6) & 0xf) as u8;
        let el = ((spsr >> 2) & 3) as u8;
        if spsr & 0x10 == 0 && el <= 1 && !(el == 0 && spsr & 1 != 0) {
            self.pstate.el = el;
            self.pstate.sp_sel = spsr & 1 != 0;
        }
        self.update_sp_idx();
        self.invalidate_translations();
    }

    #[inline(always)]
    pub(crate) fn update_sp_idx(&mut self) {
        self.sp_idx = (self.pstate.el != 0 && self.pstate.sp_sel) as usize;
    }

    /// Read one of the engine's own system registers (for a hypervisor's
    /// world switch or a debugger); None if the engine does not keep it.
    pub fn read_sysreg(&self, reg: SysReg) -> Option<u64> {
        Some(match reg {
            regs::NZCV => self.nzcv(),
            regs::DAIF => (self.pstate.daif as u64) << 6,
            regs::CURRENT_EL => (self.pstate.el as u64) << 2,
            regs::SPSEL => self.pstate.sp_sel as u64,
            regs::PAN => (self.pstate.pan as u64) << 22,
            regs::UAO => (self.pstate.uao as u64) << 23,
            regs::SP_EL0 => self.sp[0],
            regs::SP_EL1 => self.sp[1],
            regs::SPSR_EL1 => self.spsr_el1,
            regs::ELR_EL1 => self.elr_el1,
            regs::ESR_EL1 => self.esr_el1,
            regs::FAR_EL1 => self.far_el1,
            regs::VBAR_EL1 => self.vbar_el1,
            regs::CPACR_EL1 => self.cpacr_el1,
            regs::SCTLR_EL1 => self.sctlr_el1,
            _ => return None,
        })
    }

    /// Write one of the engine's own system registers; false if the engine
    /// does not keep it (CurrentEL is read-only and also gives false).
    pub fn write_sysreg(&mut self, reg: SysReg, v: u64) -> bool {
        match reg {
            regs::NZCV => self.set_nzcv(v),
            regs::DAIF => self.pstate.daif = ((v >> 6) & 0xf) as u8,
            regs::SPSEL => {
                self.pstate.sp_sel = v & 1 != 0;
                self.update_sp_idx();
            }
            regs::PAN => self.pstate.pan = v & (1 << 22) != 0,
            regs::UAO => self.pstate.uao = v & (1 << 23) != 0,
            regs::SP_EL0 => self.sp[0] = v,
            regs::SP_EL1 => self.sp[1] = v,
            regs::SPSR_EL1 => self.spsr_el1 = v,
            regs::ELR_EL1 => self.elr_el1 = v,
            regs::ESR_EL1 => self.esr_el1 = v,
            regs::FAR_EL1 => self.far_el1 = v,
            regs::VBAR_EL1 => self.vbar_el1 = v & !0x7ff,
            regs::CPACR_EL1 => self.cpacr_el1 = v,
            regs::SCTLR_EL1 => {
                self.sctlr_el1 = v;
                self.invalidate_translations();
            }
            _ => return false,
        }
        true
    }

    /// Forget cached instruction translations (the embedder calls this
    /// when translation changed without a TLBI or a system register write
    /// passing through the engine, e.g. a world switch).
    pub fn invalidate_translations(&mut self) {
        #[cfg(feature = "alloc")]
        self.cache.flush_tlb();
    }

    /// Forget all predecoded code (the embedder wrote guest memory behind
    /// the engine's back, e.g. a loader or DMA).
    pub fn invalidate_code(&mut self) {
        #[cfg(feature = "alloc")]
        self.cache.flush_blocks();
    }
}
