//! hyperprof-sim: a deterministic model of the Arm profiling hardware.
//!
//! - [`event`], [`op`]: what executes, and the PMU events it causes.
//! - [`workload`]: operation generators with symbol tables and skip-ahead.
//! - [`memory`], [`mmu`]: physical memory and translation tables in it.
//! - [`machine`]: PEs sharing memory.
//! - [`pmu`]: the PMUv3 unit.
//! - [`spe`]: the Statistical Profiling Extension unit.
//! - [`pe`]: a processing element: registers, strict synchronization, the
//!   `Cpu` interface, skip-ahead execution; [`translate`]: its regimes.
//! - [`uarch`]: caches, TLB, branch predictor and timing for real code;
//!   [`stack`]: call stacks of sampled instructions from frame pointers.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod event;
pub mod machine;
pub mod memory;
pub mod mmu;
pub mod op;
pub mod pe;
pub mod pmu;
pub mod probe;
pub mod spe;
pub mod stack;
pub mod translate;
pub mod uarch;
pub mod workload;
