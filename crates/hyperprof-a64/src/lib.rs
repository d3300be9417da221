//! An A64 execution engine: decoder and interpreter for EL0 and EL1.
//!
//! - [`decode()`]: one instruction word to an [`Insn`], allocation-free.
//!   Armv8.0 integer ISA as compilers emit it, CRC32, LSE atomics, LDAPR
//!   and the system class; FP/SIMD decodes to [`Insn::FpSimd`], anything
//!   else to [`Insn::Undefined`].
//! - [`Cpu`]: the PE's architectural state at EL0/EL1 (X0-X30, SP_EL0,
//!   SP_EL1, PC, PSTATE, ELR/SPSR/ESR/FAR/VBAR/CPACR/SCTLR_EL1, the
//!   exclusive monitor) and the exception model of the Arm ARM.
//!   [`Cpu::run`] executes through a predecoded basic-block cache (with
//!   the `alloc` feature, on by default) until a budget is used up or an
//!   exception goes to EL2 ([`Exit`]).
//! - [`Bus`]: what the embedder provides (memory by virtual address with
//!   its own MMU, the system registers it owns and EL2's trap rules,
//!   barriers/hints/maintenance) and the per-instruction observer that
//!   feeds SPE and the PMU. It is a generic parameter, never `dyn`.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "alloc")]
extern crate alloc;

pub mod bus;
#[cfg(feature = "alloc")]
mod cache;
pub mod cpu;
pub mod decode;
pub mod exception;
mod exec;
pub mod insn;
mod run;

pub use bus::{
    Access, AccessKind, Bus, Fetched, HintAction, MemFault, OpClass, Retired, SysRegEffect,
    SysRegRead, SysRegWrite,
};
pub use cpu::{Cpu, El2Controls, ExclusiveMonitor, Pstate};
pub use decode::decode;
pub use exception::{ec, El2Exit, Exit};
pub use exec::op_class;
pub use insn::{Insn, SysOp, SysOpKind, SysReg};
