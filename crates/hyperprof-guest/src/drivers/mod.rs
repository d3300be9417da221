//! Profiling drivers.

pub mod pmu;
pub mod spe;

use hyperprof_arch::{AccessFault, MemoryFault, SysReg};

/// Why a driver operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriverError {
    /// A system register access took an exception.
    Access {
        /// The register.
        reg: SysReg,
        /// The exception.
        fault: AccessFault,
    },
    /// Reading the buffer faulted.
    Memory(MemoryFault),
    /// The hardware is absent or unusable (the message says why).
    Unsupported(&'static str),
    /// The configuration asks for something the hardware cannot do.
    BadConfig(&'static str),
}

impl core::fmt::Display for DriverError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DriverError::Access { reg, fault } => write!(f, "access to {reg}: {fault}"),
            DriverError::Memory(m) => write!(f, "{m}"),
            DriverError::Unsupported(why) => write!(f, "unsupported: {why}"),
            DriverError::BadConfig(why) => write!(f, "bad configuration: {why}"),
        }
    }
}

/// Reads `reg`, naming it in the error.
pub(crate) fn rd<C: hyperprof_arch::Cpu + ?Sized>(
    cpu: &mut C,
    reg: SysReg,
) -> Result<u64, DriverError> {
    cpu.read(reg)
        .map_err(|fault| DriverError::Access { reg, fault })
}

/// Writes `reg`, naming it in the error.
pub(crate) fn wr<C: hyperprof_arch::Cpu + ?Sized>(
    cpu: &mut C,
    reg: SysReg,
    val: u64,
) -> Result<(), DriverError> {
    cpu.write(reg, val)
        .map_err(|fault| DriverError::Access { reg, fault })
}
