//! The virtual GICv3 of a VM, in the shape of KVM's vgic-v3
//! (`KVM_DEV_TYPE_ARM_VGIC_V3`): a distributor and one redistributor per
//! vCPU emulated in the hypervisor behind stage-2 MMIO exits (the VMM never
//! sees their accesses), and virtual interrupts injected through the list
//! registers of the PE's GIC virtual CPU interface
//! ([`hyperprof_sim::gic`]).
//!
//! - [`VgicV3`]: the device: its base addresses, the checks of
//!   `KVM_DEV_ARM_VGIC_CTRL_INIT` (regions 64 KiB aligned, apart from each
//!   other and from guest RAM, one redistributor for every vCPU), and the
//!   interrupts' state.
//! - `mmio`: the distributor (GICD_*) and redistributor (GICR_*, RD and SGI
//!   frames) registers.
//! - `lr`: KVM's `vgic_flush_lr_state` and `vgic_sync_hwstate`: at guest
//!   entry the pending and active interrupts of a vCPU go into its list
//!   registers (level-sensitive ones with LR.EOI, so their deactivation
//!   raises a maintenance interrupt and the line is sampled again); at exit
//!   the list registers' state comes back.
//!
//! Level-sensitive PPIs are driven by line levels the hypervisor samples
//! from their sources at every entry ([`VgicV3::set_line_level`]); SGIs and
//! writes of ISPENDR set a pending latch.

use hyperprof_arch::{icc_sgi1r_el1, intid};

use crate::uapi::Errno;

pub(crate) mod lr;
mod mmio;

pub use lr::LrCost;

/// INTIDs the distributor implements: SGIs, PPIs and SPIs `32..NR_IRQS`
/// (KVM's default of 256 when the VMM does not set
/// `KVM_DEV_ARM_VGIC_GRP_NR_IRQS`).
pub const NR_IRQS: u32 = 256;
/// The SGIs and PPIs of one redistributor.
pub const PRIVATE_IRQS: u32 = intid::PPI_END;
/// Bytes of the distributor's region.
pub const DIST_SIZE: u64 = 0x1_0000;
/// Bytes of one redistributor: its RD frame and its SGI frame.
pub const REDIST_STRIDE: u64 = 0x2_0000;
/// The alignment of the regions' bases.
pub const REGION_ALIGN: u64 = 0x1_0000;
/// The most vCPUs a GICv3 distributor with affinity routing serves here
/// (KVM's `VGIC_V3_MAX_CPUS`).
pub const MAX_VCPUS: usize = 512;
/// The priority bits the distributor keeps (the virtual CPU interface's 5).
pub const PRIORITY_MASK: u8 = hyperprof_sim::gic::PRIORITY_MASK;

/// One interrupt's state (KVM's `struct vgic_irq`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Irq {
    /// Enabled (ISENABLER).
    pub enabled: bool,
    /// Pending by an edge, an SGI or an ISPENDR write.
    pub pending_latch: bool,
    /// The level of a level-sensitive interrupt's line.
    pub line_level: bool,
    /// Active (acknowledged, not yet deactivated).
    pub active: bool,
    /// Priority (the implemented bits).
    pub priority: u8,
    /// Group 1 (IGROUPR); every interrupt resets to Group 1, as KVM's
    /// GICv3 does.
    pub group1: bool,
    /// Level-sensitive (ICFGR 0b00) rather than edge (0b10).
    pub level: bool,
    /// IROUTER (SPIs): the affinity of the target vCPU.
    pub route: u64,
}

impl Irq {
    fn reset(level: bool) -> Irq {
        Irq {
            enabled: false,
            pending_latch: false,
            line_level: false,
            active: false,
            priority: 0,
            group1: true,
            level,
            route: 0,
        }
    }

    /// Pending: latched, or a level-sensitive line asserted.
    pub fn pending(&self) -> bool {
        self.pending_latch || (self.level && self.line_level)
    }
}

/// What the vGIC counted for one vCPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VgicStats {
    /// Guest entries with the vGIC flushed into the list registers.
    pub flushes: u64,
    /// Entries that used at least one list register.
    pub flushes_with_lrs: u64,
    /// The hypervisor's `ICH_LR<n>_EL2` writes (entry and exit).
    pub lr_writes: u64,
    /// The hypervisor's `ICH_LR<n>_EL2` reads (exit).
    pub lr_reads: u64,
    /// Its other ICH_* accesses (HCR, ELRSR, VMCR, APRs).
    pub other_accesses: u64,
    /// Exits for the maintenance interrupt.
    pub maintenance_exits: u64,
    /// Distributor and redistributor accesses emulated in the hypervisor.
    pub mmio: u64,
    /// Trapped ICC_SGI1R_EL1 writes.
    pub sgi_traps: u64,
    /// Virtual interrupts the guest acknowledged, by kind of source.
    pub acked_sgi: u64,
    /// Acknowledged PMU overflow interrupts.
    pub acked_pmu: u64,
    /// Acknowledged SPE buffer interrupts.
    pub acked_spe: u64,
    /// Acknowledged other PPIs and SPIs.
    pub acked_other: u64,
    /// More interrupts were deliverable than there are list registers.
    pub overflows: u64,
}

impl std::ops::AddAssign for VgicStats {
    /// Adds the counts of `o` (another stretch of time, or another vCPU).
    fn add_assign(&mut self, o: VgicStats) {
        self.flushes += o.flushes;
        self.flushes_with_lrs += o.flushes_with_lrs;
        self.lr_writes += o.lr_writes;
        self.lr_reads += o.lr_reads;
        self.other_accesses += o.other_accesses;
        self.maintenance_exits += o.maintenance_exits;
        self.mmio += o.mmio;
        self.sgi_traps += o.sgi_traps;
        self.acked_sgi += o.acked_sgi;
        self.acked_pmu += o.acked_pmu;
        self.acked_spe += o.acked_spe;
        self.acked_other += o.acked_other;
        self.overflows += o.overflows;
    }
}

impl std::ops::Add for VgicStats {
    type Output = VgicStats;

    /// The counts of two vCPUs together.
    fn add(mut self, o: VgicStats) -> VgicStats {
        self += o;
        self
    }
}

/// A redistributor and the saved virtual CPU interface of one vCPU.
#[derive(Clone, Debug)]
pub(crate) struct VgicCpu {
    /// The vCPU's MPIDR_EL1 affinity (Aff3..Aff0 as in the register).
    mpidr: u64,
    private: [Irq; PRIVATE_IRQS as usize],
    /// GICR_WAKER.ProcessorSleep.
    sleep: bool,
    /// ICH_VMCR_EL2, ICH_AP0R0_EL2 and ICH_AP1R0_EL2 while not loaded.
    pub(crate) vmcr: u64,
    pub(crate) ap0r0: u64,
    pub(crate) ap1r0: u64,
    /// What the last entry put in the list registers: INTID and value.
    pub(crate) in_lrs: Vec<(u32, u64)>,
    /// The level sources' INTIDs (PMU, SPE, timer) of this vCPU.
    pub(crate) pmu_intid: Option<u32>,
    pub(crate) spe_intid: Option<u32>,
    pub(crate) stats: VgicStats,
}

impl VgicCpu {
    fn new(mpidr: u64) -> VgicCpu {
        // SGIs are edge-triggered, PPIs level-sensitive (read-only).
        let mut private = [Irq::reset(true); PRIVATE_IRQS as usize];
        for irq in private.iter_mut().take(intid::SGI_END as usize) {
            *irq = Irq::reset(false);
        }
        VgicCpu {
            mpidr,
            private,
            sleep: true,
            vmcr: hyperprof_sim::gic::VMCR_RESET,
            ap0r0: 0,
            ap1r0: 0,
            in_lrs: Vec::new(),
            pmu_intid: None,
            spe_intid: None,
            stats: VgicStats::default(),
        }
    }
}

/// KVM's MPIDR_EL1 for the vCPU at `index` in its VM: Aff0 the low four
/// bits, Aff1 the next eight, Aff2 the next eight.
pub fn vcpu_mpidr(index: usize) -> u64 {
    let i = index as u64;
    (i & 0xF) | ((i >> 4) & 0xFF) << 8 | ((i >> 12) & 0xFF) << 16
}

/// The affinity fields of an MPIDR or IROUTER value, packed as
/// Aff3.Aff2.Aff1.Aff0 (GICR_TYPER's Affinity_Value).
fn packed_affinity(mpidr: u64) -> u32 {
    (mpidr & 0xFF_FFFF) as u32 | (((mpidr >> 32) & 0xFF) as u32) << 24
}

/// A VM's virtual GICv3.
#[derive(Clone, Debug)]
pub struct VgicV3 {
    dist_base: Option<u64>,
    redist_base: Option<u64>,
    initialized: bool,
    /// GICD_CTLR.EnableGrp0 and EnableGrp1.
    grp0: bool,
    grp1: bool,
    spis: Vec<Irq>,
    pub(crate) cpus: Vec<VgicCpu>,
    /// The VM's RAM, which no region may overlap.
    ram: (u64, u64),
}

/// An error of the vGIC device, with what it was about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VgicError {
    /// KVM's error number.
    pub errno: Errno,
    /// What was wrong.
    pub why: String,
}

impl std::fmt::Display for VgicError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.why, self.errno)
    }
}

impl std::error::Error for VgicError {}

fn err<T>(errno: Errno, why: impl Into<String>) -> Result<T, VgicError> {
    Err(VgicError {
        errno,
        why: why.into(),
    })
}

impl VgicV3 {
    /// KVM_CREATE_DEVICE: a vGIC for a VM whose RAM is `ram_base..+ram_size`.
    pub fn new(ram_base: u64, ram_size: u64) -> VgicV3 {
        VgicV3 {
            dist_base: None,
            redist_base: None,
            initialized: false,
            grp0: false,
            grp1: false,
            spis: vec![Irq::reset(true); (NR_IRQS - PRIVATE_IRQS) as usize],
            cpus: Vec::new(),
            ram: (ram_base, ram_size),
        }
    }

    /// `KVM_DEV_ARM_VGIC_GRP_ADDR`: sets the distributor's
    /// ([`crate::uapi::KVM_VGIC_V3_ADDR_TYPE_DIST`]) or the redistributors'
    /// ([`crate::uapi::KVM_VGIC_V3_ADDR_TYPE_REDIST`]) base. `EEXIST` when
    /// already set, `EINVAL` when not 64 KiB aligned or over guest RAM,
    /// `ENODEV` for another type, `EBUSY` after init.
    pub fn set_addr(&mut self, kind: u64, base: u64) -> Result<(), VgicError> {
        use crate::uapi::{KVM_VGIC_V3_ADDR_TYPE_DIST, KVM_VGIC_V3_ADDR_TYPE_REDIST};
        if self.initialized {
            return err(Errno::EBUSY, "the vGIC is initialised already");
        }
        let (slot, name, whose, size) = match kind {
            KVM_VGIC_V3_ADDR_TYPE_DIST => (
                &mut self.dist_base,
                "distributor",
                "distributor's",
                DIST_SIZE,
            ),
            KVM_VGIC_V3_ADDR_TYPE_REDIST => (
                &mut self.redist_base,
                "redistributors",
                "redistributors'",
                REDIST_STRIDE,
            ),
            _ => return err(Errno::ENODEV, format!("no vGIC address type {kind}")),
        };
        if slot.is_some() {
            return err(Errno::EEXIST, format!("the {whose} base is set already"));
        }
        if base % REGION_ALIGN != 0 {
            return err(
                Errno::EINVAL,
                format!("the {whose} base {base:#x} is not 64 KiB aligned"),
            );
        }
        let (ram, ram_size) = self.ram;
        if base < ram + ram_size && ram < base.saturating_add(size) {
            return err(
                Errno::EINVAL,
                format!(
                    "the {name} at {base:#x} would overlap guest RAM ({ram:#x}..{:#x})",
                    ram + ram_size
                ),
            );
        }
        *slot = Some(base);
        Ok(())
    }

    /// `KVM_DEV_ARM_VGIC_CTRL_INIT` for a VM with `vcpus` vCPUs: both bases
    /// set (`ENXIO`), at most [`MAX_VCPUS`] (`E2BIG`), every region clear
    /// of the others and of RAM with a redistributor for every vCPU
    /// (`EINVAL`). The vCPUs' MPIDRs are KVM's ([`vcpu_mpidr`]).
    pub fn init(&mut self, vcpus: usize) -> Result<(), VgicError> {
        if self.initialized {
            return err(Errno::EBUSY, "the vGIC is initialised already");
        }
        let (Some(dist), Some(redist)) = (self.dist_base, self.redist_base) else {
            return err(
                Errno::ENXIO,
                "the distributor's and the redistributors' bases must be set first",
            );
        };
        if vcpus == 0 {
            return err(Errno::EINVAL, "the VM has no vCPU");
        }
        if vcpus > MAX_VCPUS {
            return err(
                Errno::E2BIG,
                format!("{vcpus} vCPUs: the vGIC models at most {MAX_VCPUS}"),
            );
        }
        let redist_size = vcpus as u64 * REDIST_STRIDE;
        let r_end = redist.checked_add(redist_size);
        let Some(r_end) = r_end else {
            return err(
                Errno::EINVAL,
                "the redistributors pass the end of the address space",
            );
        };
        let (ram, ram_size) = self.ram;
        if redist < ram + ram_size && ram < r_end {
            return err(
                Errno::EINVAL,
                format!(
                    "{vcpus} redistributors at {redist:#x}..{r_end:#x} overlap guest RAM \
                     ({ram:#x}..{:#x})",
                    ram + ram_size
                ),
            );
        }
        if dist < r_end && redist < dist + DIST_SIZE {
            return err(
                Errno::EINVAL,
                format!(
                    "the distributor at {dist:#x} overlaps the redistributors \
                     ({redist:#x}..{r_end:#x})"
                ),
            );
        }
        self.cpus = (0..vcpus).map(|i| VgicCpu::new(vcpu_mpidr(i))).collect();
        self.initialized = true;
        Ok(())
    }

    /// Whether `KVM_DEV_ARM_VGIC_CTRL_INIT` succeeded.
    pub fn initialized(&self) -> bool {
        self.initialized
    }

    /// The distributor's base, once set.
    pub fn dist_base(&self) -> Option<u64> {
        self.dist_base
    }

    /// The redistributors' base, once set.
    pub fn redist_base(&self) -> Option<u64> {
        self.redist_base
    }

    /// What the vGIC counted for the vCPU at `index` in the VM.
    pub fn stats(&self, index: usize) -> Option<VgicStats> {
        self.cpus.get(index).map(|c| c.stats)
    }

    /// The state of INTID `id` as the vCPU at `index` sees it (its own SGIs
    /// and PPIs, the shared SPIs).
    pub fn irq(&self, index: usize, id: u32) -> Option<&Irq> {
        if id < PRIVATE_IRQS {
            self.cpus.get(index).map(|c| &c.private[id as usize])
        } else {
            self.spis.get((id - PRIVATE_IRQS) as usize)
        }
    }

    fn irq_mut(&mut self, index: usize, id: u32) -> Option<&mut Irq> {
        if id < PRIVATE_IRQS {
            self.cpus
                .get_mut(index)
                .map(|c| &mut c.private[id as usize])
        } else {
            self.spis.get_mut((id - PRIVATE_IRQS) as usize)
        }
    }

    /// Sets the line level of a level-sensitive PPI or SPI as its source
    /// drives it now.
    pub fn set_line_level(&mut self, index: usize, id: u32, level: bool) {
        if id < intid::SGI_END {
            return;
        }
        if let Some(irq) = self.irq_mut(index, id) {
            irq.line_level = level;
        }
    }

    /// Names the PMU overflow and SPE buffer interrupts of the vCPU at
    /// `index` (its PMU and SPE IRQ attributes), for the statistics.
    pub fn set_sources(&mut self, index: usize, pmu: Option<u32>, spe: Option<u32>) {
        if let Some(c) = self.cpus.get_mut(index) {
            c.pmu_intid = pmu;
            c.spe_intid = spe;
        }
    }

    /// Whether the group of `irq` is enabled in GICD_CTLR.
    fn group_enabled(&self, irq: &Irq) -> bool {
        if irq.group1 {
            self.grp1
        } else {
            self.grp0
        }
    }

    /// Whether an SPI routes to the vCPU at `index` (IROUTER equal to its
    /// affinity).
    fn spi_targets(&self, irq: &Irq, index: usize) -> bool {
        self.cpus
            .get(index)
            .is_some_and(|c| packed_affinity(irq.route) == packed_affinity(c.mpidr))
    }

    /// The INTIDs the vCPU at `index` should have in list registers:
    /// active ones, and pending ones that are enabled with their group
    /// enabled; active first, then by priority, then by INTID (KVM's
    /// `vgic_sort_ap_list`).
    pub(crate) fn deliverable(&self, index: usize) -> Vec<u32> {
        let mut out: Vec<(bool, u8, u32)> = Vec::new();
        let mut consider = |id: u32, irq: &Irq| {
            let wanted = irq.active || (irq.pending() && irq.enabled && self.group_enabled(irq));
            if wanted {
                out.push((!irq.active, irq.priority, id));
            }
        };
        if let Some(c) = self.cpus.get(index) {
            for (id, irq) in c.private.iter().enumerate() {
                consider(id as u32, irq);
            }
        }
        for (i, irq) in self.spis.iter().enumerate() {
            if self.spi_targets(irq, index) {
                consider(PRIVATE_IRQS + i as u32, irq);
            }
        }
        out.sort_unstable();
        out.into_iter().map(|(_, _, id)| id).collect()
    }

    /// Whether the vCPU at `index` has an interrupt it would take with its
    /// priority mask at `pmr` (KVM's `kvm_vgic_vcpu_pending_irq`): wakes a
    /// vCPU waiting in WFI.
    pub fn pending_for(&self, index: usize, pmr: u8) -> bool {
        self.deliverable(index).into_iter().any(|id| {
            self.irq(index, id)
                .is_some_and(|irq| !irq.active && irq.pending() && irq.priority < pmr)
        })
    }

    /// Whether the vCPU at `index` has a pending interrupt at its saved
    /// priority mask (for a vCPU that is not running).
    pub fn pending_saved(&self, index: usize) -> bool {
        let Some(c) = self.cpus.get(index) else {
            return false;
        };
        let pmr = hyperprof_arch::ich_vmcr_el2::VPMR.get(c.vmcr) as u8;
        self.pending_for(index, pmr)
    }

    /// A trapped ICC_SGI1R_EL1 (`group1`) or ICC_SGI0R_EL1 write from the
    /// vCPU at `from`: the SGI pends on every target (TargetList in the
    /// Aff3.Aff2.Aff1 cluster, or with IRM every vCPU but the sender)
    /// whose SGI is in that group. Returns the indices of the vCPUs it
    /// reached.
    pub fn dispatch_sgi(&mut self, from: usize, value: u64, group1: bool) -> Vec<usize> {
        if let Some(c) = self.cpus.get_mut(from) {
            c.stats.sgi_traps += 1;
        }
        let id = icc_sgi1r_el1::INTID.get(value) as usize;
        let irm = icc_sgi1r_el1::IRM.is_set(value);
        let cluster = icc_sgi1r_el1::Aff3.get(value) << 32
            | icc_sgi1r_el1::Aff2.get(value) << 16
            | icc_sgi1r_el1::Aff1.get(value) << 8;
        let targets = icc_sgi1r_el1::TargetList.get(value);
        let rs = icc_sgi1r_el1::RS.get(value);
        let mut reached = Vec::new();
        for (i, c) in self.cpus.iter_mut().enumerate() {
            let hit = if irm {
                i != from
            } else {
                let aff0 = c.mpidr & 0xFF;
                c.mpidr & !0xFF & 0xFF_00FF_FF00 == cluster
                    && aff0 >> 4 == rs
                    && targets >> (aff0 & 0xF) & 1 == 1
            };
            if hit && c.private[id].group1 == group1 {
                c.private[id].pending_latch = true;
                reached.push(i);
            }
        }
        reached
    }
}

#[cfg(test)]
mod tests;
