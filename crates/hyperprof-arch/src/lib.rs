//! Arm profiling architecture for hyperprof: system register encodings and
//! fields, feature levels, the SPE architectural predicates and the
//! PMBIDR_EL1.MaxBuffSize codec.
//!
//! Everything here models the Arm Architecture Reference Manual (DDI0487)
//! and the register descriptions (DDI0601); names are the Arm names so that
//! each item can be looked up there.
//!
//! - [`Field`]: a `bits [hi:lo]` register field, usable in `const` context.
//! - [`SysReg`], [`Encoding`], [`EventCounter`]: the modelled system
//!   registers and their `op0, op1, CRn, CRm, op2` encodings.
//! - One module per register with its fields and RES0 mask:
//!   SPE ([`pmscr_el1`], [`pmscr_el12`], [`pmscr_el2`], [`pmsnevfr_el1`],
//!   [`pmsicr_el1`], [`pmsirr_el1`], [`pmsfcr_el1`], [`pmsevfr_el1`],
//!   [`pmslatfr_el1`], [`pmsidr_el1`], [`pmblimitr_el1`], [`pmbptr_el1`],
//!   [`pmbsr_el1`], [`pmsdsfr_el1`], [`pmbidr_el1`]), PMUv3 ([`pmcr_el0`],
//!   [`pm_counter_bits`] and the SET/CLR registers, [`pmevtyper_el0`],
//!   [`pmccfiltr_el0`], [`pmselr_el0`], [`pmuserenr_el0`], [`pmu_event`]),
//!   EL2 ([`mdcr_el2`], [`hcr_el2`], [`contextidr_el1`], [`contextidr_el2`]),
//!   identification ([`id_aa64dfr0_el1`]), fine-grained traps
//!   ([`hdfgrtr_el2`], [`hdfgwtr_el2`]) and the GICv3 CPU interface
//!   ([`ich_lr_el2`], [`ich_hcr_el2`], [`ich_vmcr_el2`], [`ich_vtr_el2`],
//!   [`ich_misr_el2`], [`icc_ctlr_el1`], [`icc_sgi1r_el1`], [`icc_sre`],
//!   [`intid`]).
//! - [`cpu`]: the [`Cpu`] trait, the boundary between software and a PE.
//! - [`features`]: PMSVer / PMUVer levels.
//! - [`maxbuffsize`]: PMBIDR_EL1.MaxBuffSize encode/decode.
//! - [`predicates`]: `ProfilingBufferOwner()`, `ProfilingBufferEnabled()`,
//!   `StatisticalProfilingEnabled()`.

#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(test)]
extern crate std;

pub mod cpu;
pub mod features;
pub mod field;
pub mod maxbuffsize;
pub mod predicates;
mod regs;
pub mod sysreg;

pub use cpu::{AccessFault, Cpu, MemoryFault};
pub use features::{PmsVer, PmuVer};
pub use field::Field;
pub use predicates::{ExceptionLevel, ProfilingControls};
pub use regs::*;
pub use sysreg::{Encoding, EventCounter, SysReg, Unit};
