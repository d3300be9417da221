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
//! - [`gic`]: the GICv3 CPU interface's virtualization part (ICH_*_EL2,
//!   the ICV_* registers a guest reaches through the ICC_* names).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod buffer_tlb;
pub mod event;
pub mod gic;
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
