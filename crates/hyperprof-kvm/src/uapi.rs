//! The KVM arm64 uAPI shapes hyperprof mirrors: errno values, vCPU device
//! attribute groups and attributes, vCPU features (ARM-FACTS §6; Linux
//! `arch/arm64/include/uapi/asm/kvm.h` and
//! `Documentation/virt/kvm/devices/vcpu.rst`).

use core::fmt;

/// An error number, as KVM returns it (negated) from an ioctl.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Errno {
    /// Operation not permitted (1).
    EPERM,
    /// No such file or directory (2): an unknown one-reg id.
    ENOENT,
    /// No such device or address (6).
    ENXIO,
    /// Argument list too long (7): more vCPUs than a device models.
    E2BIG,
    /// Out of memory (12).
    ENOMEM,
    /// Bad address (14).
    EFAULT,
    /// Device or resource busy (16).
    EBUSY,
    /// File exists (17).
    EEXIST,
    /// No such device (19).
    ENODEV,
    /// Invalid argument (22).
    EINVAL,
    /// Argument out of domain of function (33).
    EDOM,
    /// Result too large (34).
    ERANGE,
}

impl Errno {
    /// The number Linux gives it.
    pub const fn number(self) -> i32 {
        match self {
            Errno::EPERM => 1,
            Errno::ENOENT => 2,
            Errno::ENXIO => 6,
            Errno::E2BIG => 7,
            Errno::ENOMEM => 12,
            Errno::EFAULT => 14,
            Errno::EBUSY => 16,
            Errno::EEXIST => 17,
            Errno::ENODEV => 19,
            Errno::EINVAL => 22,
            Errno::EDOM => 33,
            Errno::ERANGE => 34,
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?} ({})", self.number())
    }
}

/// `KVM_ARM_VCPU_PMU_V3_CTRL`: the vCPU PMU attribute group.
pub const KVM_ARM_VCPU_PMU_V3_CTRL: u32 = 0;
/// PMU overflow interrupt number.
pub const KVM_ARM_VCPU_PMU_V3_IRQ: u64 = 0;
/// Initialise the vCPU PMU.
pub const KVM_ARM_VCPU_PMU_V3_INIT: u64 = 1;
/// PMU event filter.
pub const KVM_ARM_VCPU_PMU_V3_FILTER: u64 = 2;
/// Select the host PMU the vCPU uses.
pub const KVM_ARM_VCPU_PMU_V3_SET_PMU: u64 = 3;
/// Number of event counters.
pub const KVM_ARM_VCPU_PMU_V3_SET_NR_COUNTERS: u64 = 4;
/// Partitioned PMU enable (the proposed attribute).
pub const KVM_ARM_VCPU_PMU_V3_ENABLE_PARTITION: u64 = 5;

/// `KVM_ARM_VCPU_SPE_CTRL`: the vCPU SPE attribute group.
pub const KVM_ARM_VCPU_SPE_CTRL: u32 = 3;
/// Buffer management interrupt number (a PPI, the same on every vCPU).
pub const KVM_ARM_VCPU_SPE_IRQ: u64 = 0;
/// The host SPE instance (SPU) the VM uses.
pub const KVM_ARM_VCPU_SPE_SPU: u64 = 1;
/// Largest buffer the guest may program (seed 004), advertised in
/// PMBIDR_EL1.MaxBuffSize.
pub const KVM_ARM_VCPU_SPE_MAX_BUFFER_SIZE: u64 = 2;
/// Initialise guest SPE on the vCPU once configured. The series has such an
/// attribute; its number is not settled there (ARM-FACTS §6), hyperprof uses 3.
pub const KVM_ARM_VCPU_SPE_INIT: u64 = 3;

/// `KVM_DEV_TYPE_ARM_VGIC_V3`'s address group: the guest physical base
/// of a region (64 KiB aligned).
pub const KVM_DEV_ARM_VGIC_GRP_ADDR: u32 = 0;
/// `KVM_DEV_TYPE_ARM_VGIC_V3`'s group for the number of interrupts.
pub const KVM_DEV_ARM_VGIC_GRP_NR_IRQS: u32 = 3;
/// `KVM_DEV_TYPE_ARM_VGIC_V3`'s control group.
pub const KVM_DEV_ARM_VGIC_GRP_CTRL: u32 = 4;
/// The distributor's base (`KVM_DEV_ARM_VGIC_GRP_ADDR`).
pub const KVM_VGIC_V3_ADDR_TYPE_DIST: u64 = 2;
/// The redistributors' base, one 128 KiB frame pair per vCPU
/// (`KVM_DEV_ARM_VGIC_GRP_ADDR`).
pub const KVM_VGIC_V3_ADDR_TYPE_REDIST: u64 = 3;
/// Initialise the vGIC (`KVM_DEV_ARM_VGIC_GRP_CTRL`).
pub const KVM_DEV_ARM_VGIC_CTRL_INIT: u64 = 0;

/// A value userspace passes by pointer (`kvm_device_attr.addr`): either
/// readable, or an address the kernel cannot access (`EFAULT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserPtr<T> {
    /// The pointer is valid and holds this value.
    Value(T),
    /// The pointer faults.
    Bad,
}

impl<T: Copy> UserPtr<T> {
    /// Reads the value, as `get_user` would.
    pub fn read(self) -> Result<T, Errno> {
        match self {
            UserPtr::Value(v) => Ok(v),
            UserPtr::Bad => Err(Errno::EFAULT),
        }
    }
}

/// vCPU features (`KVM_ARM_VCPU_INIT` feature bits) hyperprof models.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct VcpuFeatures {
    /// `KVM_ARM_VCPU_PMU_V3`.
    pub pmu_v3: bool,
    /// `KVM_ARM_VCPU_HAS_SPE`.
    pub spe: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_numbers_are_linux_ones() {
        assert_eq!(Errno::EBUSY.number(), 16);
        assert_eq!(Errno::EDOM.number(), 33);
        assert_eq!(Errno::ERANGE.number(), 34);
        assert_eq!(Errno::ENODEV.number(), 19);
        assert_eq!(UserPtr::<u64>::Bad.read(), Err(Errno::EFAULT));
        assert_eq!(UserPtr::Value(4096u64).read(), Ok(4096));
    }
}
