//! The device tree a guest boots with, in the bindings Linux reads and
//! at the addresses and interrupt numbers of QEMU's `virt` board, so that
//! a guest that parses its device tree finds the same machine under
//! hyperprof as under `qemu-system-aarch64 -M virt,gic-version=3`.

use crate::map::{GicLayout, Region, PMU_INTID, SPE_INTID, TIMER_PPIS, UART, UART_SPI};
use thiserror::Error;
use vm_fdt::FdtWriter;

/// What the board has, for [`build`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoardDesc {
    /// Guest RAM.
    pub ram: Region,
    /// Number of vCPUs (MPIDR affinity numbering as KVM gives it:
    /// Aff0 = index % 16, Aff1 = index / 16).
    pub cpus: u32,
    /// `/chosen/bootargs`.
    pub bootargs: String,
    /// A PMU node (`arm,armv8-pmuv3`, INTID 23).
    pub pmu: bool,
    /// An SPE node (`arm,statistical-profiling-extension-v1`, INTID 21).
    pub spe: bool,
    /// The GICv3's regions (QEMU virt's: [`GicLayout::VIRT`]).
    pub gic: GicLayout,
}

/// Why a device tree cannot be built.
#[derive(Debug, Error)]
pub enum FdtError {
    /// No vCPU, or more than the redistributor region holds (the most it
    /// holds).
    #[error("{0} vCPUs: the board's GIC redistributor region holds 1 to {1}")]
    Cpus(u32, u64),
    /// Two device regions overlapping.
    #[error("the {0} at {2:#x} overlaps the {1}")]
    DevicesOverlap(&'static str, &'static str, u64),
    /// RAM overlapping a device region.
    #[error("RAM {start:#x}..{end:#x} overlaps the {device} at {at:#x}", start = .0.base, end = .0.end(), device = .1, at = .2)]
    RamOverlaps(Region, &'static str, u64),
    /// bootargs with a NUL byte.
    #[error("bootargs contain a NUL byte")]
    Bootargs,
    /// The writer's own error.
    #[error("device tree: {0}")]
    Writer(String),
}

impl From<vm_fdt::Error> for FdtError {
    fn from(e: vm_fdt::Error) -> Self {
        FdtError::Writer(e.to_string())
    }
}

const GIC_PHANDLE: u32 = 0x8001;
const CLK_PHANDLE: u32 = 0x8000;
const GIC_SPI: u32 = 0;
const GIC_PPI: u32 = 1;
const IRQ_LEVEL_HIGH: u32 = 4;

/// The MPIDR_EL1 affinity KVM gives vCPU `index` (the `reg` of its node).
pub fn mpidr_affinity(index: u32) -> u64 {
    u64::from(index % 16) | u64::from(index / 16) << 8
}

/// The device tree blob for `desc`.
pub fn build(desc: &BoardDesc) -> Result<Vec<u8>, FdtError> {
    let gic = desc.gic;
    if desc.cpus == 0 || u64::from(desc.cpus) > gic.max_cpus() {
        return Err(FdtError::Cpus(desc.cpus, gic.max_cpus()));
    }
    let devices = [
        ("GIC distributor", gic.dist),
        ("GIC redistributors", gic.redist),
        ("PL011", UART),
    ];
    for (i, (name, r)) in devices.iter().enumerate() {
        if desc.ram.overlaps(r) {
            return Err(FdtError::RamOverlaps(desc.ram, name, r.base));
        }
        if let Some((other, _)) = devices[i + 1..].iter().find(|(_, o)| o.overlaps(r)) {
            return Err(FdtError::DevicesOverlap(name, other, r.base));
        }
    }
    if desc.bootargs.contains('\0') {
        return Err(FdtError::Bootargs);
    }
    // With a GICv3 the flags cell of a PPI carries no CPU mask.
    let ppi_flags = IRQ_LEVEL_HIGH;
    let mut f = FdtWriter::new()?;
    let root = f.begin_node("")?;
    f.property_string("compatible", "linux,dummy-virt")?;
    f.property_string("model", "hyperprof virt")?;
    f.property_u32("#address-cells", 2)?;
    f.property_u32("#size-cells", 2)?;
    f.property_u32("interrupt-parent", GIC_PHANDLE)?;

    let chosen = f.begin_node("chosen")?;
    f.property_string("bootargs", &desc.bootargs)?;
    f.property_string("stdout-path", &format!("/pl011@{:x}", UART.base))?;
    f.end_node(chosen)?;

    let mem = f.begin_node(&format!("memory@{:x}", desc.ram.base))?;
    f.property_string("device_type", "memory")?;
    f.property_array_u64("reg", &[desc.ram.base, desc.ram.size])?;
    f.end_node(mem)?;

    let psci = f.begin_node("psci")?;
    f.property_string_list(
        "compatible",
        vec![
            "arm,psci-1.0".into(),
            "arm,psci-0.2".into(),
            "arm,psci".into(),
        ],
    )?;
    f.property_string("method", "hvc")?;
    f.property_u32("cpu_suspend", 0xC400_0001)?;
    f.property_u32("cpu_off", crate::psci::CPU_OFF)?;
    f.property_u32("cpu_on", 0xC400_0003)?;
    f.property_u32("migrate", 0xC400_0005)?;
    f.end_node(psci)?;

    let cpus = f.begin_node("cpus")?;
    f.property_u32("#address-cells", 1)?;
    f.property_u32("#size-cells", 0)?;
    for i in 0..desc.cpus {
        let aff = mpidr_affinity(i);
        let cpu = f.begin_node(&format!("cpu@{aff:x}"))?;
        f.property_string("device_type", "cpu")?;
        f.property_string("compatible", "arm,arm-v8")?;
        f.property_u32("reg", aff as u32)?;
        f.property_string("enable-method", "psci")?;
        f.end_node(cpu)?;
    }
    f.end_node(cpus)?;

    let intc = f.begin_node(&format!("intc@{:x}", gic.dist.base))?;
    f.property_string("compatible", "arm,gic-v3")?;
    f.property_u32("#interrupt-cells", 3)?;
    f.property_null("interrupt-controller")?;
    f.property_u32("#redistributor-regions", 1)?;
    f.property_array_u64(
        "reg",
        &[
            gic.dist.base,
            gic.dist.size,
            gic.redist.base,
            gic.redist.size,
        ],
    )?;
    f.property_phandle(GIC_PHANDLE)?;
    f.end_node(intc)?;

    let timer = f.begin_node("timer")?;
    f.property_string_list(
        "compatible",
        vec!["arm,armv8-timer".into(), "arm,armv7-timer".into()],
    )?;
    let mut irqs = Vec::new();
    for ppi in TIMER_PPIS {
        irqs.extend_from_slice(&[GIC_PPI, ppi, ppi_flags]);
    }
    f.property_array_u32("interrupts", &irqs)?;
    f.property_null("always-on")?;
    f.end_node(timer)?;

    if desc.pmu {
        let pmu = f.begin_node("pmu")?;
        f.property_string("compatible", "arm,armv8-pmuv3")?;
        f.property_array_u32("interrupts", &[GIC_PPI, PMU_INTID - 16, ppi_flags])?;
        f.end_node(pmu)?;
    }
    if desc.spe {
        let spe = f.begin_node("spe-pmu")?;
        f.property_string("compatible", "arm,statistical-profiling-extension-v1")?;
        f.property_array_u32("interrupts", &[GIC_PPI, SPE_INTID - 16, ppi_flags])?;
        f.end_node(spe)?;
    }

    let clk = f.begin_node("apb-pclk")?;
    f.property_string("compatible", "fixed-clock")?;
    f.property_u32("#clock-cells", 0)?;
    f.property_u32("clock-frequency", 24_000_000)?;
    f.property_string("clock-output-names", "clk24mhz")?;
    f.property_phandle(CLK_PHANDLE)?;
    f.end_node(clk)?;

    let uart = f.begin_node(&format!("pl011@{:x}", UART.base))?;
    f.property_string_list(
        "compatible",
        vec!["arm,pl011".into(), "arm,primecell".into()],
    )?;
    f.property_array_u64("reg", &[UART.base, UART.size])?;
    f.property_array_u32("interrupts", &[GIC_SPI, UART_SPI, IRQ_LEVEL_HIGH])?;
    f.property_string_list("clock-names", vec!["uartclk".into(), "apb_pclk".into()])?;
    f.property_array_u32("clocks", &[CLK_PHANDLE, CLK_PHANDLE])?;
    f.end_node(uart)?;

    f.end_node(root)?;
    Ok(f.finish()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::RAM_BASE;

    fn desc(cpus: u32) -> BoardDesc {
        BoardDesc {
            ram: Region {
                base: RAM_BASE,
                size: 128 << 20,
            },
            cpus,
            bootargs: "console=ttyAMA0".into(),
            pmu: true,
            spe: true,
            gic: GicLayout::VIRT,
        }
    }

    #[test]
    fn the_blob_has_the_fdt_header_and_names_every_node() {
        let dtb = build(&desc(2)).unwrap();
        assert_eq!(&dtb[..4], &[0xd0, 0x0d, 0xfe, 0xed]);
        assert_eq!(
            u32::from_be_bytes(dtb[4..8].try_into().unwrap()) as usize,
            dtb.len()
        );
        let text = String::from_utf8_lossy(&dtb);
        for s in [
            "arm,gic-v3",
            "arm,armv8-timer",
            "arm,armv8-pmuv3",
            "arm,statistical-profiling-extension-v1",
            "arm,pl011",
            "console=ttyAMA0",
            "/pl011@9000000",
            "cpu@1",
            "hvc",
        ] {
            assert!(text.contains(s), "{s} missing");
        }
        let plain = build(&BoardDesc {
            pmu: false,
            spe: false,
            ..desc(1)
        })
        .unwrap();
        let text = String::from_utf8_lossy(&plain);
        assert!(!text.contains("pmuv3") && !text.contains("statistical"));
    }

    #[test]
    fn impossible_boards_are_refused() {
        assert!(matches!(build(&desc(0)), Err(FdtError::Cpus(0, 123))));
        assert!(matches!(build(&desc(124)), Err(FdtError::Cpus(124, 123))));
        // A distributor inside the redistributor region.
        let squeezed = BoardDesc {
            gic: GicLayout {
                dist: Region {
                    base: crate::map::GIC_REDIST.base + 0x2_0000,
                    size: 0x1_0000,
                },
                ..GicLayout::VIRT
            },
            ..desc(1)
        };
        let e = build(&squeezed).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the GIC distributor at 0x80c0000 overlaps the GIC redistributors"
        );
        assert!(build(&desc(123)).is_ok());
        let low = BoardDesc {
            ram: Region {
                base: 0x0800_0000,
                size: 0x1000,
            },
            ..desc(1)
        };
        assert!(matches!(
            build(&low),
            Err(FdtError::RamOverlaps(_, "GIC distributor", _))
        ));
        let nul = BoardDesc {
            bootargs: "a\0b".into(),
            ..desc(1)
        };
        assert!(matches!(build(&nul), Err(FdtError::Bootargs)));
    }

    #[test]
    fn mpidr_numbering() {
        assert_eq!(mpidr_affinity(0), 0);
        assert_eq!(mpidr_affinity(15), 15);
        assert_eq!(mpidr_affinity(17), 0x101);
    }
}
