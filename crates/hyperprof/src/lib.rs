//! hyperprof: SPE and partitioned-PMU virtualization for arm64, on a
//! deterministic software model of the Arm profiling hardware.
//!
//! This crate is the command line's library: each subcommand is a module
//! whose functions the `hyperprof` binary, the tests and the benchmarks call.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod boot;
pub mod builtin;
pub mod error;
pub mod explore;
pub mod files;
pub mod flame;
pub mod fuzzing;
pub mod guest_profile;
pub mod perf;
pub mod rng;
pub mod run;
pub mod scenario;
pub mod spe;
