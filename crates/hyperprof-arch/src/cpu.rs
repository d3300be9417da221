//! The hardware boundary: what a kernel, driver or hypervisor may do to a
//! processing element (PE). Mirrors the primitives KVM uses
//! (`read_sysreg_s`, `write_sysreg_s`, `isb()`, `dsb(nsh)`, `psb_csync()`).
//!
//! The simulated PE implements it and counts every call; a real arm64
//! backend would implement it with `mrs`/`msr` and barrier instructions.
//! Nothing that uses this trait may depend on the PE being simulated.

use crate::predicates::ExceptionLevel;
use crate::sysreg::SysReg;

/// Why a system register access did not complete: the exception it takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AccessFault {
    /// The access is UNDEFINED at the current Exception level (for example
    /// an event counter at or above PMCR_EL0.N, or an EL2 register at EL1).
    Undefined,
    /// The access traps to a higher Exception level, which did not handle
    /// it (a hypervisor handles its traps before this is returned).
    Trapped {
        /// Exception level the access traps to.
        to: ExceptionLevel,
    },
}

impl core::fmt::Display for AccessFault {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            AccessFault::Undefined => write!(f, "UNDEFINED"),
            AccessFault::Trapped { to } => write!(f, "trapped to {to}"),
        }
    }
}

/// A load from memory that did not complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MemoryFault {
    /// The virtual address that faulted.
    pub va: u64,
}

impl core::fmt::Display for MemoryFault {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "data abort at {:#x}", self.va)
    }
}

/// A processing element as software sees it.
pub trait Cpu {
    /// `MRS`: reads `reg` at the current Exception level.
    fn read(&mut self, reg: SysReg) -> Result<u64, AccessFault>;
    /// `MSR`: writes `reg` at the current Exception level.
    fn write(&mut self, reg: SysReg, val: u64) -> Result<(), AccessFault>;
    /// `ISB`: a context synchronization event.
    fn isb(&mut self);
    /// `DSB NSH`: completes earlier memory accesses, including profiling
    /// buffer writes made architecturally visible by `PSB CSYNC`.
    fn dsb_nsh(&mut self);
    /// `PSB CSYNC`: profiling synchronization; records held in the profiling
    /// unit become architecturally written.
    fn psb_csync(&mut self);
    /// The current Exception level.
    fn current_el(&self) -> ExceptionLevel;
    /// Loads `buf.len()` bytes from virtual address `va` through the current
    /// translation regime (how a driver reads the buffer it owns).
    fn load(&mut self, va: u64, buf: &mut [u8]) -> Result<(), MemoryFault>;
}

/// A mutable reference to a CPU is a CPU, so drivers taking `&mut impl Cpu`
/// also accept `&mut dyn ...` environments.
impl<T: Cpu + ?Sized> Cpu for &mut T {
    fn read(&mut self, reg: SysReg) -> Result<u64, AccessFault> {
        (**self).read(reg)
    }
    fn write(&mut self, reg: SysReg, val: u64) -> Result<(), AccessFault> {
        (**self).write(reg, val)
    }
    fn isb(&mut self) {
        (**self).isb()
    }
    fn dsb_nsh(&mut self) {
        (**self).dsb_nsh()
    }
    fn psb_csync(&mut self) {
        (**self).psb_csync()
    }
    fn current_el(&self) -> ExceptionLevel {
        (**self).current_el()
    }
    fn load(&mut self, va: u64, buf: &mut [u8]) -> Result<(), MemoryFault> {
        (**self).load(va, buf)
    }
}
