//! Guest PMUv3 configuration: the VM- and vCPU-level state behind the
//! `KVM_ARM_VCPU_PMU_V3_CTRL` vCPU device attributes, their error rules, the
//! host's counter reservation (the partitioned PMU series' boot parameter)
//! and the MDCR_EL2.HPMN it yields, and the readiness check `KVM_RUN` makes.
//!
//! Pure code: no machine access. The VMM-facing code owns one [`VmPmu`] per
//! VM and one [`VcpuPmu`] per vCPU and describes the host in a
//! [`PmuAttrCtx`] on every call.
//!
//! # Sources
//!
//! - ARM-FACTS §4 (PMCR_EL0.N, MDCR_EL2.HPMN, FEAT_HPMN0) and §6.
//! - Linux `Documentation/virt/kvm/devices/vcpu.rst`, "1. GROUP:
//!   KVM_ARM_VCPU_PMU_V3_CTRL" (error tables, filter semantics), and the
//!   check order of `kvm_arm_pmu_v3_set_attr` it documents.
//! - seeds/001 (partitioned PMU v5 17/24): guest counters are `0..HPMN`,
//!   the host keeps `HPMN..N`.
//! - The partitioned PMU series' latest revision seen (the 21-patch
//!   posting of June 2026, patch 18/21 "Add vCPU device attr to partition
//!   the PMU", and the July 2026 v8 review of its boot parameter): the
//!   vCPU attribute `KVM_ARM_VCPU_PMU_V3_ENABLE_PARTITION` = 5 checks
//!   `EFAULT`, then `EPERM` where the host cannot partition, then `EBUSY`
//!   once the VM ran; `has_attr` answers it like every other attribute;
//!   the host can partition only on VHE, with PMUv3, and when the driver's
//!   boot parameter `arm_pmuv3.reserved_host_counters` was given (v8
//!   defaults it to -1: no partition; a reviewer asked for 0).
//!
//! # Common gate of `set_attr` (in this order)
//!
//! 1. The vCPU lacks `KVM_ARM_VCPU_PMU_V3`: `ENODEV`.
//! 2. The vCPU's PMU is already initialised (`PMU_V3_INIT` succeeded):
//!    `EBUSY`, for every attribute (as KVM: `pmu.created`).
//! 3. The host has no PMU at all: `ENODEV` (KVM: no default PMU).
//! 4. Unknown attribute: `ENXIO`.
//!
//! # Choices made where the sources are silent
//!
//! - **Default PMU.** KVM picks the PMU of the CPU the ioctl runs on; the
//!   simulation has no such CPU, so the default is the first of
//!   [`PmuAttrCtx::host_pmus`]. It is recorded by the first *successful*
//!   `set_attr` (a failed call changes nothing).
//! - **Integer arguments** come as `u64`; the kernel reads an `int`.
//!   Values that do not fit are invalid: IRQ `EINVAL`, PMU id `ENXIO`
//!   (no PMU has it), counter number `EINVAL`, partition flag `EINVAL`.
//! - **FILTER argument**: the 8-byte `struct kvm_pmu_event_filter` as a
//!   little-endian `u64` ([`EventFilter::to_raw`]); the pad bytes are
//!   ignored, as KVM ignores them.
//! - **IRQ** must be a PPI (16..=31): hyperprof has no SPI PMU interrupts.
//!   No "VM has run" rule (the documentation has none: a vCPU that never
//!   initialised its PMU may still set its IRQ).
//! - **SET_PMU** resets the number of counters to the default, even when
//!   the same PMU is selected again (KVM does the same).
//!   In partitioned mode, selecting a PMU that cannot partition: `EINVAL`.
//! - **SET_NR_COUNTERS** has an `EBUSY` "VM has run" check (documented, but
//!   in KVM only the initialised gate enforces it).
//! - **Partition enable (attribute 5)**: value 0 or 1 (the revision takes
//!   any non-zero `u32` as 1; hyperprof refuses other values, `EINVAL`).
//!   Then, as the revision: `EPERM` when the VM's PMU (chosen or default)
//!   cannot partition ([`HostPmu::can_partition`]: an nVHE host, no
//!   reservation, or a reservation the PMU cannot honour), whatever the
//!   value; `EBUSY` once the VM ran. hyperprof adds `EBUSY` when other
//!   vCPUs exist and the value *changes* the mode (setting the current
//!   value again succeeds, so a VMM may set it on every vCPU), and
//!   `EINVAL` when enabling with an explicit 0 counters on a PMU without
//!   FEAT_HPMN0 (the revision clamps a larger number to the guest
//!   counters; here the number cannot exceed them in either mode).
//!   A default number of counters follows the mode; an explicit one stays.
//! - **get_attr** answers `IRQ` (as KVM) and the partition flag (0/1); every
//!   other attribute has no value: `ENXIO`.
//! - **INIT** does not model the vGIC owner check (`EEXIST`).
//!
//! # The host's reservation
//!
//! Chosen per behaviour among the series' revisions:
//!
//! - **How many counters the host keeps** is a boot-time parameter, as
//!   in the later revisions (`arm_pmuv3.reserved_host_counters`): the perf
//!   subsystem assumes a PMU's counters do not change once probed. The RFC's
//!   per-vCPU `KVM_ARM_PARTITION_PMU` ioctl (which set the host's share at
//!   run time) is not offered.
//! - **Not given: no partition** (v8's default of -1): the host keeps
//!   MDCR_EL2.HPMN = N and every PMU vCPU is emulated; the attribute is
//!   `EPERM`.
//! - **MDCR_EL2.HPMN is dynamic**, as the later revisions made it: the
//!   boot parameter only bounds it (`N - reserved`, the `hpmn_max` of
//!   seed 001); while a partitioned vCPU's state is live its HPMN is that
//!   vCPU's own number of counters, and the host's value comes back at
//!   put.

use hyperprof_arch::PmuVer;

use crate::uapi::{
    Errno, UserPtr, VcpuFeatures, KVM_ARM_VCPU_PMU_V3_ENABLE_PARTITION, KVM_ARM_VCPU_PMU_V3_FILTER,
    KVM_ARM_VCPU_PMU_V3_INIT, KVM_ARM_VCPU_PMU_V3_IRQ, KVM_ARM_VCPU_PMU_V3_SET_NR_COUNTERS,
    KVM_ARM_VCPU_PMU_V3_SET_PMU,
};

/// First PPI INTID.
pub const PPI_FIRST: u32 = 16;
/// Last PPI INTID.
pub const PPI_LAST: u32 = 31;

/// Largest PMCR_EL0.N (a 5-bit field, and 31 is the cycle counter's index).
pub const MAX_COUNTERS: u8 = 31;

/// `KVM_PMU_EVENT_ALLOW`.
pub const KVM_PMU_EVENT_ALLOW: u8 = 0;
/// `KVM_PMU_EVENT_DENY`.
pub const KVM_PMU_EVENT_DENY: u8 = 1;

/// SW_INCR: never filtered (vcpu.rst, "Restrictions").
pub const EVENT_SW_INCR: u16 = 0x00;
/// CHAIN: filtering it has no effect (vcpu.rst, "Restrictions").
pub const EVENT_CHAIN: u16 = 0x1E;

/// The attributes of the `KVM_ARM_VCPU_PMU_V3_CTRL` group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PmuAttr {
    /// Overflow interrupt (a PPI, the same on every vCPU).
    Irq,
    /// Initialise the vCPU's PMU.
    Init,
    /// Add an event filter range.
    Filter,
    /// Choose the host PMU by id.
    SetPmu,
    /// Number of event counters (guest PMCR_EL0.N).
    SetNrCounters,
    /// Partitioned PMU on (1) or off (0).
    EnablePartition,
}

impl PmuAttr {
    /// Every attribute, in attribute-number order.
    pub const ALL: [PmuAttr; 6] = [
        PmuAttr::Irq,
        PmuAttr::Init,
        PmuAttr::Filter,
        PmuAttr::SetPmu,
        PmuAttr::SetNrCounters,
        PmuAttr::EnablePartition,
    ];

    /// The attribute with this number, if any.
    pub const fn from_attr(attr: u64) -> Option<PmuAttr> {
        match attr {
            KVM_ARM_VCPU_PMU_V3_IRQ => Some(PmuAttr::Irq),
            KVM_ARM_VCPU_PMU_V3_INIT => Some(PmuAttr::Init),
            KVM_ARM_VCPU_PMU_V3_FILTER => Some(PmuAttr::Filter),
            KVM_ARM_VCPU_PMU_V3_SET_PMU => Some(PmuAttr::SetPmu),
            KVM_ARM_VCPU_PMU_V3_SET_NR_COUNTERS => Some(PmuAttr::SetNrCounters),
            KVM_ARM_VCPU_PMU_V3_ENABLE_PARTITION => Some(PmuAttr::EnablePartition),
            _ => None,
        }
    }

    /// The attribute number (`kvm_device_attr.attr`).
    pub const fn attr(self) -> u64 {
        match self {
            PmuAttr::Irq => KVM_ARM_VCPU_PMU_V3_IRQ,
            PmuAttr::Init => KVM_ARM_VCPU_PMU_V3_INIT,
            PmuAttr::Filter => KVM_ARM_VCPU_PMU_V3_FILTER,
            PmuAttr::SetPmu => KVM_ARM_VCPU_PMU_V3_SET_PMU,
            PmuAttr::SetNrCounters => KVM_ARM_VCPU_PMU_V3_SET_NR_COUNTERS,
            PmuAttr::EnablePartition => KVM_ARM_VCPU_PMU_V3_ENABLE_PARTITION,
        }
    }
}

/// One host PMU, as the host probed it, with the host's reservation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostPmu {
    /// Identifier userspace passes to `SET_PMU` (the perf "type").
    pub id: u32,
    /// PMCR_EL0.N of the hardware (values above [`MAX_COUNTERS`] count as 31).
    pub counters: u8,
    /// The PMU version (ID_AA64DFR0_EL1.PMUVer).
    pub version: PmuVer,
    /// Physical CPUs that have this PMU.
    pub cpus: Vec<usize>,
    /// The boot parameter: event counters the host keeps for itself (the
    /// top ones, `HPMN..N`). Valid values are `0..=counters`.
    pub reserved_for_host: u8,
    /// FEAT_HPMN0: MDCR_EL2.HPMN may be 0.
    pub hpmn0: bool,
    /// The host partitioned this PMU at boot: it was given the reservation
    /// parameter and runs VHE (an nVHE host kernel at EL1 cannot reach the
    /// counters at and above MDCR_EL2.HPMN, and HPMN would have to be reset
    /// and the guest's counters disabled at every exit).
    pub partitioned: bool,
}

impl HostPmu {
    /// The hardware's number of event counters, clamped to [`MAX_COUNTERS`].
    pub fn n(&self) -> u8 {
        self.counters.min(MAX_COUNTERS)
    }

    /// Counters left to guests in partitioned mode: `n() - reserved_for_host`
    /// (0 when the reservation exceeds the hardware).
    pub fn guest_counters(&self) -> u8 {
        self.n().saturating_sub(self.reserved_for_host)
    }

    /// The PMU can be partitioned: the host partitioned it at boot
    /// ([`HostPmu::partitioned`]); it is a PMUv3; the reservation fits the
    /// hardware (`reserved_for_host <= n()`, so the host really gets every
    /// counter it asked for); and HPMN = [`HostPmu::guest_counters`] is
    /// legal, that is at least 1, or 0 with FEAT_HPMN0.
    pub fn can_partition(&self) -> bool {
        self.partitioned
            && self.version.is_pmuv3()
            && self.reserved_for_host <= self.n()
            && (self.guest_counters() > 0 || self.hpmn0)
    }

    /// MDCR_EL2.HPMN in partitioned mode (`guest_counters()`), or `None`
    /// when the PMU cannot be partitioned.
    pub fn hpmn(&self) -> Option<u8> {
        if self.can_partition() {
            Some(self.guest_counters())
        } else {
            None
        }
    }

    /// Number of event numbers a filter may cover: 1024 (10 bits) for
    /// FEAT_PMUv3 and anything not PMUv3p1 or later, 65536 from PMUv3p1.
    pub fn event_space(&self) -> u32 {
        if self.version.at_least(PmuVer::V3p1) {
            1 << 16
        } else {
            1 << 10
        }
    }
}

/// One `struct kvm_pmu_event_filter`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EventFilter {
    /// First event of the range.
    pub base_event: u16,
    /// Number of events in the range.
    pub nevents: u16,
    /// [`KVM_PMU_EVENT_ALLOW`] or [`KVM_PMU_EVENT_DENY`] (others: `EINVAL`).
    pub action: u8,
}

impl EventFilter {
    /// The structure's 8 bytes as a little-endian `u64` (pad bytes zero).
    pub const fn to_raw(self) -> u64 {
        (self.base_event as u64) | ((self.nevents as u64) << 16) | ((self.action as u64) << 32)
    }

    /// Decodes the structure from its little-endian `u64` (pad ignored).
    pub const fn from_raw(raw: u64) -> EventFilter {
        EventFilter {
            base_event: (raw & 0xFFFF) as u16,
            nevents: ((raw >> 16) & 0xFFFF) as u16,
            action: ((raw >> 32) & 0xFF) as u8,
        }
    }
}

/// The host and vCPU as the attribute calls see them.
#[derive(Clone, Copy, Debug)]
pub struct PmuAttrCtx<'a> {
    /// The features the vCPU was initialised with (`pmu_v3` matters).
    pub features: VcpuFeatures,
    /// The PMUs the host probed.
    pub host_pmus: &'a [HostPmu],
    /// The VM uses an in-kernel irqchip (vGIC).
    pub irqchip_in_kernel: bool,
    /// The in-kernel vGIC is initialised.
    pub vgic_initialized: bool,
    /// vCPUs other than this one exist in the VM.
    pub other_vcpus_exist: bool,
}

/// Per-vCPU PMU state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct VcpuPmu {
    irq: Option<u32>,
    initialized: bool,
}

impl VcpuPmu {
    /// A vCPU with nothing configured.
    pub const fn new() -> VcpuPmu {
        VcpuPmu {
            irq: None,
            initialized: false,
        }
    }

    /// The overflow IRQ set on this vCPU.
    pub const fn irq(&self) -> Option<u32> {
        self.irq
    }

    /// `PMU_V3_INIT` succeeded on this vCPU.
    pub const fn is_initialized(&self) -> bool {
        self.initialized
    }
}

/// The event filter bitmap: bit set = event allowed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct FilterMap {
    /// Number of events covered (the PMU's event space).
    events: u32,
    words: Vec<u64>,
}

impl FilterMap {
    fn new(events: u32, fill: bool) -> FilterMap {
        let mut m = FilterMap {
            events,
            words: vec![0; events.div_ceil(64) as usize],
        };
        if fill {
            m.apply(0, events, true);
        }
        m
    }

    fn apply(&mut self, base: u32, count: u32, allow: bool) {
        let end = base.saturating_add(count).min(self.events);
        for e in base..end {
            if let Some(w) = self.words.get_mut((e / 64) as usize) {
                let bit = 1u64 << (e % 64);
                if allow {
                    *w |= bit;
                } else {
                    *w &= !bit;
                }
            }
        }
    }

    fn get(&self, e: u32) -> bool {
        e < self.events
            && self
                .words
                .get((e / 64) as usize)
                .is_some_and(|w| w & (1u64 << (e % 64)) != 0)
    }
}

/// Per-VM PMU state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct VmPmu {
    /// The chosen (or recorded default) host PMU, snapshot at choice time.
    pmu: Option<HostPmu>,
    /// The PMU was chosen with `SET_PMU` (not the default).
    explicit: bool,
    /// `SET_NR_COUNTERS` value; `None`: the mode's default.
    nr_counters: Option<u8>,
    irq: Option<u32>,
    filter: Option<FilterMap>,
    partitioned: bool,
    has_run: bool,
}

impl VmPmu {
    /// A VM with nothing configured.
    pub fn new() -> VmPmu {
        VmPmu::default()
    }

    /// `KVM_SET_DEVICE_ATTR` in the `KVM_ARM_VCPU_PMU_V3_CTRL` group, on
    /// `vcpu`. After the common gate (module docs), per attribute:
    ///
    /// - `IRQ`: `EINVAL` no in-kernel irqchip; `EFAULT`; `EINVAL` not a PPI;
    ///   `EINVAL` differs from the VM's IRQ; `EBUSY` this vCPU has one.
    /// - `INIT` (`arg` unread): with an in-kernel irqchip, `ENODEV` vGIC not
    ///   initialised, then `ENXIO` no IRQ on this vCPU. (Already
    ///   initialised is the gate's `EBUSY`.)
    /// - `FILTER`: `EFAULT`; `EINVAL` `base_event + nevents` beyond the
    ///   PMU's event space or an unknown action; `EBUSY` VM has run. The
    ///   first filter sets the default for all events: deny-all if it
    ///   allows, allow-all if it denies.
    /// - `SET_PMU`: `EFAULT`; `ENXIO` no host PMU with that id; `EBUSY` VM
    ///   has run, or a filter is set and the PMU differs from the VM's;
    ///   `EINVAL` partitioned and the PMU cannot partition.
    /// - `SET_NR_COUNTERS`: `EFAULT`; `EBUSY` VM has run; `EINVAL` no PMU
    ///   chosen with `SET_PMU`; `EINVAL` above the limit,
    ///   [`HostPmu::guest_counters`], in either mode; `EINVAL` 0 when
    ///   partitioned on a PMU without FEAT_HPMN0.
    /// - `ENABLE_PARTITION`: `EFAULT`; `EINVAL` value not 0/1; `EPERM` the
    ///   PMU cannot partition; `EBUSY` VM has run; `EBUSY` other vCPUs
    ///   exist and the value changes the mode; `EINVAL` enabling with an
    ///   explicit counter number above the guest counters, or an explicit 0
    ///   on a PMU without FEAT_HPMN0.
    ///
    /// A failed call changes nothing.
    pub fn set_attr(
        &mut self,
        vcpu: &mut VcpuPmu,
        ctx: &PmuAttrCtx<'_>,
        attr: u64,
        arg: UserPtr<u64>,
    ) -> Result<(), Errno> {
        if !ctx.features.pmu_v3 {
            return Err(Errno::ENODEV);
        }
        if vcpu.initialized {
            return Err(Errno::EBUSY);
        }
        let current = match &self.pmu {
            Some(p) => p.clone(),
            None => ctx.host_pmus.first().cloned().ok_or(Errno::ENODEV)?,
        };
        let attr = PmuAttr::from_attr(attr).ok_or(Errno::ENXIO)?;
        match attr {
            PmuAttr::Irq => self.set_irq(vcpu, ctx, arg)?,
            PmuAttr::Init => {
                if ctx.irqchip_in_kernel {
                    if !ctx.vgic_initialized {
                        return Err(Errno::ENODEV);
                    }
                    if vcpu.irq.is_none() {
                        return Err(Errno::ENXIO);
                    }
                }
                vcpu.initialized = true;
            }
            PmuAttr::Filter => self.set_filter(&current, arg)?,
            PmuAttr::SetPmu => {
                self.set_pmu(ctx, &current, arg)?;
                return Ok(());
            }
            PmuAttr::SetNrCounters => self.set_nr_counters(&current, arg)?,
            PmuAttr::EnablePartition => self.set_partition(ctx, &current, arg)?,
        }
        if self.pmu.is_none() {
            self.pmu = Some(current);
        }
        Ok(())
    }

    /// `KVM_GET_DEVICE_ATTR`: `IRQ` → `EINVAL` no in-kernel irqchip,
    /// `ENODEV` no PMU feature, `ENXIO` unset, else this vCPU's IRQ;
    /// `ENABLE_PARTITION` → `ENODEV` no feature, else 0/1; anything else
    /// `ENXIO`.
    pub fn get_attr(&self, vcpu: &VcpuPmu, ctx: &PmuAttrCtx<'_>, attr: u64) -> Result<u64, Errno> {
        match PmuAttr::from_attr(attr) {
            Some(PmuAttr::Irq) => {
                if !ctx.irqchip_in_kernel {
                    return Err(Errno::EINVAL);
                }
                if !ctx.features.pmu_v3 {
                    return Err(Errno::ENODEV);
                }
                vcpu.irq.map(u64::from).ok_or(Errno::ENXIO)
            }
            Some(PmuAttr::EnablePartition) => {
                if !ctx.features.pmu_v3 {
                    return Err(Errno::ENODEV);
                }
                Ok(u64::from(self.partitioned))
            }
            _ => Err(Errno::ENXIO),
        }
    }

    /// `KVM_HAS_DEVICE_ATTR`: success for attributes 0..=5 when the vCPU has
    /// the PMU feature (the partition enable too, as the series' latest
    /// revision: whether the host can partition is the set's `EPERM`);
    /// `ENXIO` otherwise.
    pub fn has_attr(&self, ctx: &PmuAttrCtx<'_>, attr: u64) -> Result<(), Errno> {
        let ok = ctx.features.pmu_v3 && PmuAttr::from_attr(attr).is_some();
        if ok {
            Ok(())
        } else {
            Err(Errno::ENXIO)
        }
    }

    /// What `KVM_RUN` checks for a vCPU: nothing without the PMU feature;
    /// otherwise `EINVAL` unless `PMU_V3_INIT` succeeded (as
    /// `kvm_arm_pmu_v3_enable`).
    pub fn check_ready(&self, vcpu: &VcpuPmu, ctx: &PmuAttrCtx<'_>) -> Result<(), Errno> {
        if ctx.features.pmu_v3 && !vcpu.initialized {
            return Err(Errno::EINVAL);
        }
        Ok(())
    }

    /// Records that a vCPU of the VM entered the guest.
    pub fn mark_ran(&mut self) {
        self.has_run = true;
    }

    /// A vCPU of the VM has run.
    pub const fn has_run(&self) -> bool {
        self.has_run
    }

    /// The VM's host PMU (explicit or recorded default).
    pub fn pmu(&self) -> Option<&HostPmu> {
        self.pmu.as_ref()
    }

    /// The PMU was chosen with `SET_PMU`.
    pub const fn pmu_is_explicit(&self) -> bool {
        self.explicit
    }

    /// The VM's overflow IRQ.
    pub const fn irq(&self) -> Option<u32> {
        self.irq
    }

    /// Partitioned mode is on.
    pub const fn is_partitioned(&self) -> bool {
        self.partitioned
    }

    /// An event filter is installed.
    pub const fn has_filter(&self) -> bool {
        self.filter.is_some()
    }

    /// The most counters the guest may have: the counters the host leaves
    /// to guests (N less the host's reservation) in either mode, since an
    /// emulated guest's counters are backed by those same hardware
    /// counters; 0 with no PMU recorded.
    pub fn counter_limit(&self) -> u8 {
        self.pmu.as_ref().map_or(0, HostPmu::guest_counters)
    }

    /// The guest's number of event counters (PMCR_EL0.N): the value set
    /// with `SET_NR_COUNTERS`, else the default [`VmPmu::counter_limit`].
    pub fn nr_counters(&self) -> u8 {
        self.nr_counters.unwrap_or_else(|| self.counter_limit())
    }

    /// A VMM's write of PMCR_EL0.N through KVM_SET_ONE_REG (migration):
    /// taken as the number of counters when the VM has not run and `n` is
    /// a number SET_NR_COUNTERS would accept in the current mode, on the
    /// VM's PMU or, when none is recorded yet, on `default` (which is then
    /// recorded, as KVM records the default PMU at vCPU init); otherwise
    /// ignored, as KVM ignores it. Says whether it was taken.
    pub fn set_nr_from_pmcr(&mut self, n: u8, default: Option<&HostPmu>) -> bool {
        let Some(p) = self.pmu.as_ref().or(default) else {
            return false;
        };
        if self.has_run || n > p.guest_counters() || (self.partitioned && n == 0 && !p.hpmn0) {
            return false;
        }
        if self.pmu.is_none() {
            self.pmu = Some(p.clone());
        }
        self.nr_counters = Some(n);
        true
    }

    /// The guest may count `event`: always for SW_INCR and CHAIN, and for
    /// all events with no filter; otherwise per the filter bitmap (events
    /// beyond the PMU's event space: no).
    pub fn event_allowed(&self, event: u16) -> bool {
        if event == EVENT_SW_INCR || event == EVENT_CHAIN {
            return true;
        }
        match &self.filter {
            None => true,
            Some(f) => f.get(u32::from(event)),
        }
    }

    fn set_irq(
        &mut self,
        vcpu: &mut VcpuPmu,
        ctx: &PmuAttrCtx<'_>,
        arg: UserPtr<u64>,
    ) -> Result<(), Errno> {
        if !ctx.irqchip_in_kernel {
            return Err(Errno::EINVAL);
        }
        let irq = match u32::try_from(arg.read()?) {
            Ok(i) if (PPI_FIRST..=PPI_LAST).contains(&i) => i,
            _ => return Err(Errno::EINVAL),
        };
        if self.irq.is_some_and(|v| v != irq) {
            return Err(Errno::EINVAL);
        }
        if vcpu.irq.is_some() {
            return Err(Errno::EBUSY);
        }
        vcpu.irq = Some(irq);
        self.irq = Some(irq);
        Ok(())
    }

    fn set_filter(&mut self, pmu: &HostPmu, arg: UserPtr<u64>) -> Result<(), Errno> {
        let f = EventFilter::from_raw(arg.read()?);
        let space = pmu.event_space();
        let end = u32::from(f.base_event) + u32::from(f.nevents);
        if end > space || (f.action != KVM_PMU_EVENT_ALLOW && f.action != KVM_PMU_EVENT_DENY) {
            return Err(Errno::EINVAL);
        }
        if self.has_run {
            return Err(Errno::EBUSY);
        }
        let allow = f.action == KVM_PMU_EVENT_ALLOW;
        let map = self
            .filter
            .get_or_insert_with(|| FilterMap::new(space, !allow));
        map.apply(u32::from(f.base_event), u32::from(f.nevents), allow);
        Ok(())
    }

    fn set_pmu(
        &mut self,
        ctx: &PmuAttrCtx<'_>,
        current: &HostPmu,
        arg: UserPtr<u64>,
    ) -> Result<(), Errno> {
        let value = arg.read()?;
        let pmu = u32::try_from(value)
            .ok()
            .and_then(|id| ctx.host_pmus.iter().find(|p| p.id == id))
            .ok_or(Errno::ENXIO)?;
        if self.has_run || (self.filter.is_some() && current.id != pmu.id) {
            return Err(Errno::EBUSY);
        }
        if self.partitioned && !pmu.can_partition() {
            return Err(Errno::EINVAL);
        }
        self.pmu = Some(pmu.clone());
        self.explicit = true;
        self.nr_counters = None;
        Ok(())
    }

    fn set_nr_counters(&mut self, current: &HostPmu, arg: UserPtr<u64>) -> Result<(), Errno> {
        let value = arg.read()?;
        if self.has_run {
            return Err(Errno::EBUSY);
        }
        if !self.explicit {
            return Err(Errno::EINVAL);
        }
        // In both modes the guest's counters are backed by the same-numbered
        // hardware counters, so the limit is what the host leaves to guests
        // (N less its reservation), not N: an emulated guest with more would
        // have its PMCNTENCLR_EL0/PMCR_EL0.P emulation (done at EL2, where
        // every counter is visible) stop and zero the host's reserved
        // counters, while the hardware's MDCR_EL2.HPMN still makes those
        // counters UNDEFINED to it.
        let limit = current.guest_counters();
        let n = match u8::try_from(value) {
            Ok(n) if n <= limit => n,
            _ => return Err(Errno::EINVAL),
        };
        // Partitioned, 0 counters means MDCR_EL2.HPMN = 0, CONSTRAINED
        // UNPREDICTABLE without FEAT_HPMN0 (the PE may behave as HPMN = N
        // and hand the guest every counter, the host's too).
        if self.partitioned && n == 0 && !current.hpmn0 {
            return Err(Errno::EINVAL);
        }
        self.nr_counters = Some(n);
        Ok(())
    }

    fn set_partition(
        &mut self,
        ctx: &PmuAttrCtx<'_>,
        current: &HostPmu,
        arg: UserPtr<u64>,
    ) -> Result<(), Errno> {
        let enable = match arg.read()? {
            0 => false,
            1 => true,
            _ => return Err(Errno::EINVAL),
        };
        if !current.can_partition() {
            return Err(Errno::EPERM);
        }
        if self.has_run {
            return Err(Errno::EBUSY);
        }
        if enable == self.partitioned {
            return Ok(());
        }
        if ctx.other_vcpus_exist {
            return Err(Errno::EBUSY);
        }
        if enable {
            // An explicit 0 needs FEAT_HPMN0 (see set_nr_counters).
            if self
                .nr_counters
                .is_some_and(|n| n > current.guest_counters() || (n == 0 && !current.hpmn0))
            {
                return Err(Errno::EINVAL);
            }
        }
        self.partitioned = enable;
        Ok(())
    }
}
