//! The VMM side of a board compatible with QEMU's `virt` machine.
//!
//! What a VMM does around a vCPU before and while it runs: load an image
//! by the boot protocol bare-metal test images and Linux use ([`image`]),
//! describe the machine in a device tree ([`fdt`]), emulate the PL011 UART
//! behind MMIO exits ([`pl011`]), and serve PSCI calls made with HVC the
//! way KVM does in the hypervisor ([`psci`]); take the SPE records a
//! guest profiler hands over ([`vendor`]); and run a booted VM's vCPUs
//! through the hypervisor, serving their exits ([`vm`]).
//!
//! Addresses are those of QEMU's `virt` board ([`map`]), so an image built
//! for `qemu-system-aarch64 -M virt` that uses only RAM, the PL011 and PSCI
//! runs unmodified.

pub mod fdt;
pub mod image;
pub mod map;
pub mod pl011;
pub mod psci;
pub mod vendor;
pub mod vm;
