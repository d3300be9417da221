//! hyperprof-sim: a deterministic model of the Arm profiling hardware.
//!
//! - [`event`], [`op`]: what executes, and the PMU events it causes.
//! - [`workload`]: operation generators with symbol tables and skip-ahead.
//! - [`memory`], [`mmu`]: physical memory and translation tables in it.
//! - [`pmu`]: the PMUv3 unit.
//! - [`spe`]: the Statistical Profiling Extension unit.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod event;
pub mod memory;
pub mod mmu;
pub mod op;
pub mod pmu;
pub mod spe;
pub mod workload;
