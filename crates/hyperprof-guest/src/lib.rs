//! Kernel-side code: drivers for the profiling hardware, written like
//! Linux's `arm_spe_pmu` and `arm_pmuv3` drivers against the [`Cpu`] trait
//! only, so the same driver runs in a VHE host at EL2 and in a guest at EL1,
//! on the simulated machine or (with a real backend) on hardware.
//!
//! [`Cpu`]: hyperprof_arch::Cpu
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod drivers;
pub mod guest;
pub mod host;
pub mod per_task;
