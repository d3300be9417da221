//! The physical memory map of QEMU's `virt` board (hw/arm/virt.c), and the
//! interrupt numbers its device tree gives.

/// A region of the guest's physical address space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// First byte.
    pub base: u64,
    /// Size in bytes.
    pub size: u64,
}

impl Region {
    /// One past the last byte.
    pub const fn end(&self) -> u64 {
        self.base + self.size
    }

    /// Whether `addr` lies in the region.
    pub const fn contains(&self, addr: u64) -> bool {
        addr >= self.base && addr - self.base < self.size
    }

    /// Whether the two regions share a byte.
    pub const fn overlaps(&self, other: &Region) -> bool {
        self.base < other.end() && other.base < self.end()
    }
}

/// The GICv3 distributor.
pub const GIC_DIST: Region = Region {
    base: 0x0800_0000,
    size: 0x1_0000,
};
/// The GICv3 redistributors: two 64 KiB frames (RD and SGI) per CPU.
pub const GIC_REDIST: Region = Region {
    base: 0x080A_0000,
    size: 0x00F6_0000,
};
/// Bytes of one redistributor (its RD and SGI frames).
pub const GIC_REDIST_STRIDE: u64 = 0x2_0000;
/// The PL011 UART.
pub const UART: Region = Region {
    base: 0x0900_0000,
    size: 0x1000,
};
/// Where RAM starts.
pub const RAM_BASE: u64 = 0x4000_0000;

/// The PL011's interrupt: SPI 1 (INTID 33).
pub const UART_SPI: u32 = 1;
/// Generic timer PPIs as the device tree numbers them (INTID - 16): secure
/// physical, non-secure physical, virtual, hypervisor.
pub const TIMER_PPIS: [u32; 4] = [13, 14, 11, 10];
/// The PMU overflow interrupt, INTID 23 (PPI 7).
pub const PMU_INTID: u32 = 23;
/// The SPE buffer interrupt (PMBIRQ), INTID 21 (PPI 5).
pub const SPE_INTID: u32 = 21;

/// The offset from the start of RAM at which a raw image is loaded
/// (the arm64 boot protocol's historical text offset, QEMU's
/// KERNEL64_LOAD_ADDR).
pub const RAW_IMAGE_OFFSET: u64 = 0x8_0000;

/// The most vCPUs the redistributor region holds.
pub const fn max_redistributors() -> u64 {
    GIC_REDIST.size / GIC_REDIST_STRIDE
}

/// Where a board's GICv3 is: its distributor and its redistributor region
/// (one [`GIC_REDIST_STRIDE`] frame pair per vCPU).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GicLayout {
    /// The distributor.
    pub dist: Region,
    /// The redistributors.
    pub redist: Region,
}

impl GicLayout {
    /// QEMU virt's.
    pub const VIRT: GicLayout = GicLayout {
        dist: GIC_DIST,
        redist: GIC_REDIST,
    };

    /// The most vCPUs its redistributor region holds.
    pub const fn max_cpus(&self) -> u64 {
        self.redist.size / GIC_REDIST_STRIDE
    }
}

impl Default for GicLayout {
    fn default() -> Self {
        GicLayout::VIRT
    }
}
