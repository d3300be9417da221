//! hyperprof-kvm: a KVM-shaped arm64 hypervisor on the simulated machine.
//!
//! - [`uapi`]: errno values, device attribute groups, vCPU features.
//! - [`spe_attr`]: the SPE vCPU device attributes and their error rules.
//! - [`switch`]: the VHE SPE world switch of seed 000.
//! - [`vm`]: the hypervisor: VMs, vCPUs, KVM_RUN, trap emulation.
//! - [`pmu_attr`]: the PMU_V3 vCPU device attributes, served by [`vm`]'s
//!   device-attribute calls.
//! - [`vpmu`]: the guest PMU in partitioned and emulated mode: its world
//!   switch, trap emulation and virtual overflow interrupt.
//! - [`explore`]: a model checker for the world switch (VHE SPE and PMU,
//!   nVHE SPE) and its mutation catalogue.
//! - [`vgic`]: the virtual GICv3 (distributor, redistributors, list
//!   registers), served by [`vm`] in the hypervisor.
//! - [`pin`]: pinning a guest's profiling buffer and the stage-1 tables that
//!   translate it, charged to the VM's memlock limit.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod explore;
pub mod pin;
pub mod pmu_attr;
pub mod spe_attr;
pub mod switch;
pub mod uapi;
pub mod vgic;
pub mod vm;
pub mod vpmu;
