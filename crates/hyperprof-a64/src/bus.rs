//! The boundary between the engine and its embedder (the simulated PE).
//!
//! The embedder owns memory and translation (stage 1 with the guest's
//! tables, stage 2 per VM), every system register the engine does not keep
//! (see [`crate::Cpu`] for the ones it does), the trap rules of EL2, and the
//! effects of barriers, hints and maintenance. The engine owns the
//! general-purpose registers, PSTATE, the EL1 exception registers and the
//! exception model.

use crate::insn::{Barrier, Hint, SysOp, SysReg};

/// Kind of a memory access, as the translation needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessKind {
    /// Instruction fetch.
    Fetch,
    /// Data read.
    Read,
    /// Data write.
    Write,
    /// The read half of an atomic read-modify-write (LSE atomics, CAS,
    /// SWP): the embedder must check write permission as well.
    ReadModifyWrite,
}

/// Everything about an access that translation and permission checks need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    /// Kind of access.
    pub kind: AccessKind,
    /// The Exception level whose permissions apply (0 for LDTR/STTR at
    /// EL1 unless PSTATE.UAO is set).
    pub el: u8,
    /// PSTATE.PAN at the time of the access.
    pub pan: bool,
    /// LDTR/STTR family (unprivileged access instructions).
    pub unpriv: bool,
    /// Acquire or release semantics (LDAR/STLR/LDAPR, acquire/release
    /// forms of exclusives and atomics).
    pub ordered: bool,
    /// Exclusive (LDXR/STXR family) or atomic access.
    pub atomic: bool,
}

/// A memory access that did not complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemFault {
    /// A stage-1 fault (translation, access flag, permission, alignment on
    /// Device memory, synchronous external abort ...) taken to EL1 as an
    /// Instruction or Data Abort; `fsc` is the DFSC/IFSC value (e.g.
    /// 0b0001LL translation fault at level LL, 0b0011LL permission fault,
    /// 0b100001 alignment, 0b010000 synchronous external abort).
    Stage1 {
        /// Fault status code.
        fsc: u8,
    },
    /// A stage-2 fault or an access to an emulated (MMIO) region: the
    /// exception is taken to EL2 and [`crate::Cpu::run`] returns with the
    /// ESR_EL2 syndrome, FAR and HPFAR.
    Stage2 {
        /// Fault status code.
        fsc: u8,
        /// The intermediate physical address.
        ipa: u64,
        /// The fault happened on a stage-2 walk of a stage-1 table.
        s1ptw: bool,
    },
}

/// A completed instruction fetch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fetched {
    /// The physical address the instruction came from.
    pub pa: u64,
    /// The instruction word.
    pub insn: u32,
}

/// Outcome of a system register read that is not one of the engine's own
/// PSTATE views.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SysRegRead {
    /// The embedder supplies the value.
    Value(u64),
    /// The register is one the engine keeps (EL1 exception registers,
    /// SCTLR_EL1, CPACR_EL1, SP_EL0 ...); anything else is UNDEFINED.
    Engine,
    /// Trapped to EL1 (EC 0x18), e.g. an EL0 access that SCTLR_EL1 does
    /// not permit.
    TrapToEl1,
    /// Trapped to EL2 (EC 0x18): `run` returns with the syndrome.
    TrapToEl2,
    /// UNDEFINED at the current Exception level.
    Undefined,
}

/// Outcome of a system register write or a SYS instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SysRegWrite {
    /// The embedder took the write (the engine also updates its own copy
    /// if the register is one it keeps).
    Done,
    /// The engine handles it (its own registers; DC ZVA zeroes memory
    /// through the bus; other SYS operations have no effect here).
    Engine,
    /// Trapped to EL1 (EC 0x18).
    TrapToEl1,
    /// Trapped to EL2 (EC 0x18).
    TrapToEl2,
    /// UNDEFINED.
    Undefined,
}

/// What an MRS or MSR the embedder answered changed beyond the register
/// ([`Bus::after_sysreg`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SysRegEffect {
    /// Nothing the engine needs to know.
    Unchanged,
    /// The IRQ line's level is now this (e.g. an interrupt controller's
    /// virtual CPU interface: an acknowledge raised the running priority,
    /// an end of interrupt dropped it, the priority mask moved).
    Irq(bool),
    /// Retire the instruction and leave `run` with [`crate::Exit::Hint`]
    /// (e.g. an interrupt to EL2 became pending); the embedder sets the
    /// lines again before it resumes.
    Exit,
}

/// Outcome of a hint or barrier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HintAction {
    /// Carry on.
    Continue,
    /// Retire the instruction and leave `run` with [`crate::Exit::Hint`],
    /// so that the embedder can act on it (strict mode at an ISB, a PSB
    /// CSYNC that must drain the profiling buffer, a YIELD ...).
    Exit,
}

/// The class of a retired instruction, as SPE and the PMU see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct OpClass(pub u16);

impl OpClass {
    /// Neither a memory access nor a branch.
    pub const OTHER: OpClass = OpClass(0);
    /// Reads memory.
    pub const LOAD: u16 = 1 << 0;
    /// Writes memory.
    pub const STORE: u16 = 1 << 1;
    /// An LSE atomic, CAS or SWP.
    pub const ATOMIC: u16 = 1 << 2;
    /// A load/store exclusive.
    pub const EXCLUSIVE: u16 = 1 << 3;
    /// Acquire or release semantics.
    pub const ACQ_REL: u16 = 1 << 4;
    /// A branch.
    pub const BRANCH: u16 = 1 << 5;
    /// A conditional branch (B.cond, CBZ/CBNZ, TBZ/TBNZ).
    pub const CONDITIONAL: u16 = 1 << 6;
    /// An indirect branch (BR, BLR, RET, ERET).
    pub const INDIRECT: u16 = 1 << 7;
    /// A branch with link (BL, BLR).
    pub const LINK: u16 = 1 << 8;
    /// A return (RET).
    pub const RETURN: u16 = 1 << 9;
    /// A system register access, SYS, hint or barrier.
    pub const SYSTEM: u16 = 1 << 10;
    /// An exception-generating instruction or ERET.
    pub const EXCEPTION: u16 = 1 << 11;

    /// True if every bit of `flags` is set.
    pub fn has(self, flags: u16) -> bool {
        self.0 & flags == flags
    }
    /// True if the operation accesses memory.
    pub fn is_memory(self) -> bool {
        self.0 & (Self::LOAD | Self::STORE) != 0
    }
    /// True for branches.
    pub fn is_branch(self) -> bool {
        self.0 & Self::BRANCH != 0
    }
}

/// What the observer sees of one retired instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Retired {
    /// Its address.
    pub pc: u64,
    /// The Exception level it executed at.
    pub el: u8,
    /// The instruction word's class.
    pub class: OpClass,
    /// Data virtual address. Valid only when `class` is a memory
    /// operation (the first access of a pair); stale otherwise.
    pub va: u64,
    /// Total bytes accessed (0 for a prefetch or a store exclusive that
    /// failed). Valid only for memory operations.
    pub size: u8,
    /// Branch target, whether taken or not. Valid only for branches.
    pub target: u64,
    /// Whether a branch was taken. Valid only for branches.
    pub taken: bool,
}

/// The embedder of the engine: memory by virtual address, the system
/// registers it owns, barriers/hints and maintenance, and an observer of
/// retired instructions.
///
/// All methods are called with the engine's current context; nothing is
/// boxed or dynamic, so an embedder's empty defaults cost nothing.
pub trait Bus {
    /// Set to false to skip [`Bus::retired`] calls altogether.
    const OBSERVE: bool = true;

    /// Fetch the instruction at `va` (4-byte aligned; the engine checks
    /// PC alignment first).
    fn fetch(&mut self, va: u64, access: Access) -> Result<Fetched, MemFault>;

    /// Read `size` bytes (1, 2, 4 or 8) at `va`, little-endian, zero-extended.
    /// The embedder handles accesses that cross a page.
    fn read(&mut self, va: u64, size: u8, access: Access) -> Result<u64, MemFault>;

    /// Write the low `size` bytes of `value` at `va`. Returns the physical
    /// address written, which the engine uses to invalidate cached code.
    fn write(&mut self, va: u64, size: u8, value: u64, access: Access) -> Result<u64, MemFault>;

    /// MRS of a register the engine does not answer itself. `el` is the
    /// current Exception level.
    fn sysreg_read(&mut self, reg: SysReg, el: u8) -> SysRegRead {
        let _ = (reg, el);
        SysRegRead::Engine
    }

    /// MSR of a register the engine does not answer itself.
    fn sysreg_write(&mut self, reg: SysReg, value: u64, el: u8) -> SysRegWrite {
        let _ = (reg, value, el);
        SysRegWrite::Engine
    }

    /// Called after every MRS or MSR that [`Bus::sysreg_read`] answered with
    /// a value or [`Bus::sysreg_write`] took: interrupt controller registers
    /// change the interrupt lines.
    fn after_sysreg(&mut self) -> SysRegEffect {
        SysRegEffect::Unchanged
    }

    /// A SYS instruction (DC, IC, TLBI, AT) with the value of Xt.
    fn sys(&mut self, op: SysOp, value: u64, el: u8) -> SysRegWrite {
        let _ = (op, value, el);
        SysRegWrite::Engine
    }

    /// A hint (NOP, YIELD, SEV, SEVL, PSB CSYNC ...). WFI and WFE reach
    /// this only when the PE is about to wait: not trapped (SCTLR_EL1.nTWx,
    /// [`crate::El2Controls`]), no interrupt pending, and for WFE the event
    /// register clear; `run` then returns [`crate::Exit::Wfi`] or
    /// [`crate::Exit::Wfe`] whatever this returns.
    fn hint(&mut self, hint: Hint, el: u8) -> HintAction {
        let _ = (hint, el);
        HintAction::Continue
    }

    /// A barrier (DSB, DMB, ISB).
    fn barrier(&mut self, barrier: Barrier, el: u8) -> HintAction {
        let _ = (barrier, el);
        HintAction::Continue
    }

    /// Called once per retired instruction when [`Bus::OBSERVE`] is true.
    #[inline(always)]
    fn retired(&mut self, info: &Retired) {
        let _ = info;
    }
}
