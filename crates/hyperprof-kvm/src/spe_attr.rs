//! Guest SPE configuration: the VM- and vCPU-level state behind the
//! `KVM_ARM_VCPU_SPE_CTRL` vCPU device attributes, the attribute error rules,
//! the readiness check `KVM_RUN` makes, and the PMBIDR_EL1 / PMSIDR_EL1
//! values a guest reads.
//!
//! Pure code: no machine access. The VMM-facing code owns one [`VmSpe`] per
//! VM and one [`VcpuSpe`] per vCPU, and describes the host in an
//! [`AttrCtx`] on every call.
//!
//! # Sources
//!
//! - ARM-FACTS §6 (uAPI shapes, the SPE_MAX_BUFFER_SIZE error table, memlock).
//! - seeds/004 (RFC v6 14/35): the `KVM_ARM_VCPU_MAX_BUFFER_SIZE` documentation
//!   table and the check order of `kvm_spe_set_max_buffer_size`, followed
//!   exactly (see [`VmSpe::set_attr`]).
//! - seeds/002 (RFC v6 19/35): how PMBIDR_EL1 and PMSIDR_EL1 are sanitised
//!   for the guest ([`VmSpe::guest_pmbidr`], [`VmSpe::guest_pmsidr`]).
//! - Linux `Documentation/virt/kvm/devices/vcpu.rst` and `pmu-emul.c` for the
//!   PMU attributes, mirrored where the SPE sources are silent.
//!
//! # Error precedence, common to every attribute
//!
//! 1. The host has no SPE support at all: `ENXIO`.
//! 2. `attr` is not one of [`SpeAttr`]: `ENXIO` (an unknown attribute is
//!    `ENXIO` even on a vCPU without the SPE feature: there is no such
//!    attribute to lack the feature for).
//! 3. The vCPU does not have the `KVM_ARM_VCPU_HAS_SPE` feature: `ENODEV`.
//!
//! The attribute group is the caller's to check.
//!
//! # Choices made where the sources are silent
//!
//! - **`EFAULT` position.** KVM reads the user value (`get_user`) in
//!   `kvm_spe_set_attr` *before* calling `kvm_spe_set_max_buffer_size`, so a
//!   bad pointer is reported before any state check, including "VM has run".
//!   hyperprof does the same for the three attributes that take a value
//!   (IRQ, SPU, MAX_BUFFER_SIZE): after the common gate above, `EFAULT` comes
//!   first. `SPE_INIT` takes no value and never reads the pointer (like
//!   `KVM_ARM_VCPU_PMU_V3_INIT`).
//! - **IRQ order.** Mirrors `kvm_arm_pmu_v3_set_attr` for
//!   `KVM_ARM_VCPU_PMU_V3_IRQ`: `EINVAL` for a non-PPI, then `EINVAL` if the
//!   VM's IRQ (chosen by any vCPU, this one included) differs, then `EBUSY`
//!   if this vCPU already has an IRQ. So re-setting the same IRQ on a vCPU is
//!   `EBUSY`, setting a different one is `EINVAL`. The "VM has run" `EBUSY`
//!   precedes these (after `EFAULT`), as in the max buffer size rules.
//! - **Get of an unset IRQ**: `ENXIO`, as the PMU's "overflow interrupt not
//!   set when attempting to get it". The IRQ read back is the vCPU's own.
//! - **Get of an unset SPU**: `ENXIO` (same reasoning: a not-yet-configured
//!   value; `EINVAL` is reserved for the max buffer size, where seed 004
//!   says so).
//! - **Get of SPE_INIT**: `ENXIO`, as the PMU's `get_attr` answers for
//!   `KVM_ARM_VCPU_PMU_V3_INIT` (it has no value).
//! - **SPU id that fits no host SPU** (including ids above `u32::MAX`):
//!   `ENODEV`, as the brief says. Choosing a different SPU once one is chosen:
//!   `EINVAL`; the same one again: success.
//! - **SPE_INIT** needs the VM's SPU, *this vCPU's* IRQ and the VM's max
//!   buffer size; any missing: `ENXIO`. `EBUSY` (already initialised, or VM
//!   has run) is checked first, as `kvm_arm_pmu_v3_init` checks `created`
//!   before the IRQ.
//! - **ENOMEM (memlock).** Checked last, after `ERANGE`. A size exceeds the
//!   limit when `size > limit`; `0` ("no limit") exceeds every finite limit,
//!   so it needs an unlimited memlock (`u64::MAX`). The per-vCPU total and the
//!   stage-1 table pages are charged at run time by the pinning code.
//!   [`VmSpe::set_memlock_limit`] follows a changed limit but refuses
//!   (`ENOMEM`) one the stored size would exceed, so a stored size is always
//!   one `set_attr` would accept.
//! - **Nothing is rechecked after SPE_INIT**: every attribute is set-once
//!   (same value: success; different: `EINVAL`/`EBUSY`), so initialising a
//!   vCPU does not need its own `EBUSY` rule for later sets.
//! - **Guest PMBIDR_EL1 before a max buffer size is set** shows the SPU's own
//!   MaxBuffSize (reserved bits cleared). KVM would encode its "unset" marker
//!   (1) as field 0; [`VmSpe::check_ready`] keeps a guest from running in
//!   that state anyway.
//! - **AddrMode.** hyperprof-arch puts `PMBIDR_EL1.AddrMode` at bits \[7:6\].
//!   The Arm ARM (DDI0487, D24.7.1 PMBIDR_EL1, "AddrMode, bits \[7:6\]":
//!   0b00 only virtual address mode, 0b01 virtual and physical, 0b11
//!   reserved for software use under virtualization to show physical-only;
//!   RES0 without FEAT_SPE_nVM) makes "VM only" (virtual addresses only)
//!   `0b00`: [`PMBIDR_ADDRMODE_VM_ONLY`]. (TRBIDR_EL1.AddrMode, the trace
//!   buffer's field at the same bits, encodes virtual-only as 0b01; not the
//!   one used here.)

use core::fmt;

use hyperprof_arch::{maxbuffsize, pmbidr_el1, pmsidr_el1, PmsVer};

use crate::uapi::{
    Errno, UserPtr, VcpuFeatures, KVM_ARM_VCPU_SPE_INIT, KVM_ARM_VCPU_SPE_IRQ,
    KVM_ARM_VCPU_SPE_MAX_BUFFER_SIZE, KVM_ARM_VCPU_SPE_SPU,
};

/// The host page size; a max buffer size must be a multiple of it.
pub const HOST_PAGE_SIZE: u64 = 4096;

/// First PPI INTID (GIC private peripheral interrupts are 16..=31).
pub const PPI_FIRST: u32 = 16;
/// Last PPI INTID.
pub const PPI_LAST: u32 = 31;

/// PMBIDR_EL1.AddrMode value meaning "only virtual address mode is
/// supported" (Arm ARM D24.7.1; 0b00). Guests see it because hyperprof never
/// gives them FEAT_SPE_nVM.
pub const PMBIDR_ADDRMODE_VM_ONLY: u64 = 0b00;

/// The memlock limit meaning "unlimited" (`RLIM_INFINITY`).
pub const MEMLOCK_UNLIMITED: u64 = u64::MAX;

/// The attributes of the `KVM_ARM_VCPU_SPE_CTRL` group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SpeAttr {
    /// [`KVM_ARM_VCPU_SPE_IRQ`]: the buffer management interrupt (a PPI).
    Irq,
    /// [`KVM_ARM_VCPU_SPE_SPU`]: the host SPE instance the VM uses.
    Spu,
    /// [`KVM_ARM_VCPU_SPE_MAX_BUFFER_SIZE`]: largest guest buffer, in bytes.
    MaxBufferSize,
    /// [`KVM_ARM_VCPU_SPE_INIT`]: initialise SPE on the vCPU.
    Init,
}

impl SpeAttr {
    /// Every attribute, in attribute-number order.
    pub const ALL: [SpeAttr; 4] = [
        SpeAttr::Irq,
        SpeAttr::Spu,
        SpeAttr::MaxBufferSize,
        SpeAttr::Init,
    ];

    /// The attribute with this number, if any.
    pub const fn from_attr(attr: u64) -> Option<SpeAttr> {
        match attr {
            KVM_ARM_VCPU_SPE_IRQ => Some(SpeAttr::Irq),
            KVM_ARM_VCPU_SPE_SPU => Some(SpeAttr::Spu),
            KVM_ARM_VCPU_SPE_MAX_BUFFER_SIZE => Some(SpeAttr::MaxBufferSize),
            KVM_ARM_VCPU_SPE_INIT => Some(SpeAttr::Init),
            _ => None,
        }
    }

    /// The attribute number (`kvm_device_attr.attr`).
    pub const fn attr(self) -> u64 {
        match self {
            SpeAttr::Irq => KVM_ARM_VCPU_SPE_IRQ,
            SpeAttr::Spu => KVM_ARM_VCPU_SPE_SPU,
            SpeAttr::MaxBufferSize => KVM_ARM_VCPU_SPE_MAX_BUFFER_SIZE,
            SpeAttr::Init => KVM_ARM_VCPU_SPE_INIT,
        }
    }
}

/// One host SPE instance (SPU), as the host probed it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Spu {
    /// Identifier userspace passes to `KVM_ARM_VCPU_SPE_SPU`.
    pub id: u32,
    /// The instance's PMSIDR_EL1.
    pub pmsidr: u64,
    /// The instance's PMBIDR_EL1 (MaxBuffSize 0: no limit).
    pub pmbidr: u64,
    /// Physical CPUs that have this SPU.
    pub cpus: Vec<usize>,
}

impl Spu {
    /// The instance's own maximum buffer size from its PMBIDR_EL1
    /// (0 = no limit).
    pub const fn max_buffer_size(&self) -> u64 {
        maxbuffsize::size(self.pmbidr)
    }
}

/// The host as the attribute calls see it.
#[derive(Clone, Copy, Debug)]
pub struct AttrCtx<'a> {
    /// The features the vCPU was initialised with.
    pub features: VcpuFeatures,
    /// The SPUs the host probed.
    pub host_spus: &'a [Spu],
    /// The host can give guests SPE at all (otherwise every SPE attribute is
    /// `ENXIO`).
    pub host_supports_spe: bool,
}

/// Why a vCPU with the SPE feature cannot run yet ([`VmSpe::check_ready`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NotReady {
    /// The vCPU has the SPE feature but the host does not support guest SPE.
    HostUnsupported,
    /// No SPU was chosen for the VM (`KVM_ARM_VCPU_SPE_SPU`).
    NoSpu,
    /// The chosen SPU is not among the host's SPUs any more.
    SpuUnavailable(u32),
    /// The vCPU has no buffer management IRQ (`KVM_ARM_VCPU_SPE_IRQ`).
    NoIrq,
    /// No maximum buffer size was set (`KVM_ARM_VCPU_SPE_MAX_BUFFER_SIZE`).
    NoMaxBufferSize,
    /// SPE was not initialised on the vCPU (`KVM_ARM_VCPU_SPE_INIT`).
    NotInitialized,
}

impl fmt::Display for NotReady {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotReady::HostUnsupported => {
                write!(f, "guest SPE: the host does not support SPE")
            }
            NotReady::NoSpu => write!(f, "guest SPE: no SPU chosen (KVM_ARM_VCPU_SPE_SPU)"),
            NotReady::SpuUnavailable(id) => {
                write!(f, "guest SPE: SPU {id} is not present on the host")
            }
            NotReady::NoIrq => write!(f, "guest SPE: vCPU has no IRQ (KVM_ARM_VCPU_SPE_IRQ)"),
            NotReady::NoMaxBufferSize => write!(
                f,
                "guest SPE: no maximum buffer size set (KVM_ARM_VCPU_SPE_MAX_BUFFER_SIZE)"
            ),
            NotReady::NotInitialized => {
                write!(f, "guest SPE: vCPU not initialised (KVM_ARM_VCPU_SPE_INIT)")
            }
        }
    }
}

impl std::error::Error for NotReady {}

/// Per-vCPU SPE state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct VcpuSpe {
    irq: Option<u32>,
    initialized: bool,
}

impl VcpuSpe {
    /// A vCPU with nothing configured.
    pub const fn new() -> VcpuSpe {
        VcpuSpe {
            irq: None,
            initialized: false,
        }
    }

    /// The buffer management IRQ set on this vCPU.
    pub const fn irq(&self) -> Option<u32> {
        self.irq
    }

    /// `KVM_ARM_VCPU_SPE_INIT` succeeded on this vCPU.
    pub const fn is_initialized(&self) -> bool {
        self.initialized
    }
}

/// The SPU the VM uses: its id and the PMBIDR_EL1 it had when chosen (the
/// SPU's own maximum buffer size is checked against that snapshot).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct ChosenSpu {
    id: u32,
    pmbidr: u64,
}

/// Per-VM SPE state.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct VmSpe {
    spu: Option<ChosenSpu>,
    /// `None`: unset. `Some(0)`: no limit.
    max_buffer_size: Option<u64>,
    /// The IRQ shared by every vCPU (set by the first vCPU that sets one).
    irq: Option<u32>,
    has_run: bool,
    memlock_limit: u64,
    /// `None`: the SPU's own version (the feature bits pass through).
    guest_pmsver: Option<PmsVer>,
}

impl VmSpe {
    /// A VM with nothing configured, whose pinned memory may not exceed
    /// `memlock_limit` bytes ([`MEMLOCK_UNLIMITED`] for no limit).
    pub const fn new(memlock_limit: u64) -> VmSpe {
        VmSpe {
            spu: None,
            max_buffer_size: None,
            irq: None,
            has_run: false,
            memlock_limit,
            guest_pmsver: None,
        }
    }

    /// `KVM_SET_DEVICE_ATTR` in the `KVM_ARM_VCPU_SPE_CTRL` group, on `vcpu`.
    ///
    /// After the common gate (module docs: `ENXIO`, `ENXIO`, `ENODEV`):
    ///
    /// - `SPE_MAX_BUFFER_SIZE`: `EFAULT` (value unreadable), then exactly
    ///   the order of `kvm_spe_set_max_buffer_size`: `EBUSY` VM has run;
    ///   `EINVAL` not a multiple of [`HOST_PAGE_SIZE`]; `ENODEV` no SPU;
    ///   a size already set: same value succeeds, another is `EINVAL`;
    ///   `EDOM` not representable in PMBIDR_EL1.MaxBuffSize; `ERANGE` the
    ///   SPU has a limit and the size is 0 or above it; then `ENOMEM` above
    ///   the memlock limit. The size is shared by every vCPU of the VM.
    /// - `SPE_IRQ`: `EFAULT`; `EBUSY` VM has run; `EINVAL` not a PPI;
    ///   `EINVAL` the VM already uses another IRQ; `EBUSY` this vCPU already
    ///   has its IRQ.
    /// - `SPE_SPU`: `EFAULT`; `EBUSY` VM has run; `ENODEV` no host SPU with
    ///   that id; `EINVAL` the VM already uses another SPU (same: success).
    /// - `SPE_INIT` (`arg` ignored): `EBUSY` already initialised or VM has
    ///   run; `ENXIO` no SPU, no IRQ on this vCPU, or no max buffer size.
    ///
    /// A failed call changes nothing.
    pub fn set_attr(
        &mut self,
        vcpu: &mut VcpuSpe,
        ctx: &AttrCtx<'_>,
        attr: u64,
        arg: UserPtr<u64>,
    ) -> Result<(), Errno> {
        match gate(ctx, attr)? {
            SpeAttr::Irq => {
                let value = arg.read()?;
                self.set_irq(vcpu, value)
            }
            SpeAttr::Spu => {
                let value = arg.read()?;
                self.set_spu(ctx.host_spus, value)
            }
            SpeAttr::MaxBufferSize => {
                let value = arg.read()?;
                self.set_max_buffer_size(value)
            }
            SpeAttr::Init => self.init(vcpu),
        }
    }

    /// `KVM_GET_DEVICE_ATTR` in the `KVM_ARM_VCPU_SPE_CTRL` group, on `vcpu`.
    ///
    /// After the common gate: `SPE_IRQ` this vCPU's IRQ or `ENXIO`;
    /// `SPE_SPU` the VM's SPU id or `ENXIO`; `SPE_MAX_BUFFER_SIZE` the VM's
    /// size or `EINVAL` (seed 004); `SPE_INIT` has no value: `ENXIO`.
    /// (`EFAULT` from `put_user` is the caller's: the value is returned.)
    pub fn get_attr(&self, vcpu: &VcpuSpe, ctx: &AttrCtx<'_>, attr: u64) -> Result<u64, Errno> {
        match gate(ctx, attr)? {
            SpeAttr::Irq => vcpu.irq.map(u64::from).ok_or(Errno::ENXIO),
            SpeAttr::Spu => self.spu.map(|s| u64::from(s.id)).ok_or(Errno::ENXIO),
            SpeAttr::MaxBufferSize => self.max_buffer_size.ok_or(Errno::EINVAL),
            SpeAttr::Init => Err(Errno::ENXIO),
        }
    }

    /// `KVM_HAS_DEVICE_ATTR` in the `KVM_ARM_VCPU_SPE_CTRL` group: success
    /// for the four [`SpeAttr`]s when the host supports SPE and the vCPU has
    /// the feature, `ENXIO` otherwise.
    pub fn has_attr(&self, ctx: &AttrCtx<'_>, attr: u64) -> Result<(), Errno> {
        if ctx.host_supports_spe && ctx.features.spe && SpeAttr::from_attr(attr).is_some() {
            Ok(())
        } else {
            Err(Errno::ENXIO)
        }
    }

    /// Records that a vCPU of the VM has entered the guest (configuration is
    /// frozen from now on).
    pub fn mark_ran(&mut self) {
        self.has_run = true;
    }

    /// A vCPU of the VM has run.
    pub const fn has_run(&self) -> bool {
        self.has_run
    }

    /// The id of the SPU the VM uses.
    pub fn spu(&self) -> Option<u32> {
        self.spu.map(|s| s.id)
    }

    /// The VM's SPU among `spus` (the first with its id).
    pub fn spu_in<'a>(&self, spus: &'a [Spu]) -> Option<&'a Spu> {
        let id = self.spu()?;
        spus.iter().find(|s| s.id == id)
    }

    /// The maximum buffer size; `None` when unset, `Some(0)` for no limit.
    pub const fn max_buffer_size(&self) -> Option<u64> {
        self.max_buffer_size
    }

    /// The buffer management IRQ shared by the VM's vCPUs.
    pub const fn irq(&self) -> Option<u32> {
        self.irq
    }

    /// The memlock limit in bytes ([`MEMLOCK_UNLIMITED`] for none).
    pub const fn memlock_limit(&self) -> u64 {
        self.memlock_limit
    }

    /// Changes the memlock limit the max buffer size is checked against
    /// (the VMM raised or lowered RLIMIT_MEMLOCK). Refused with `ENOMEM`,
    /// changing nothing, if the max buffer size already set would exceed the
    /// new limit: a stored size always stays one `set_attr` accepts.
    pub fn set_memlock_limit(&mut self, limit: u64) -> Result<(), Errno> {
        if self
            .max_buffer_size
            .is_some_and(|size| exceeds_memlock(size, limit))
        {
            return Err(Errno::ENOMEM);
        }
        self.memlock_limit = limit;
        Ok(())
    }

    /// The guest's PMSVer as set by [`VmSpe::set_guest_pmsver`]; `None`
    /// means the SPU's own version.
    pub const fn guest_pmsver(&self) -> Option<PmsVer> {
        self.guest_pmsver
    }

    /// Sets the PMSVer the guest sees (ID_AA64DFR0_EL1.PMSVer, as written by
    /// the VMM). Like ID register writes, refused with `EBUSY` once the VM
    /// has run, unless the value is unchanged.
    pub fn set_guest_pmsver(&mut self, version: PmsVer) -> Result<(), Errno> {
        if self.has_run && self.guest_pmsver != Some(version) {
            return Err(Errno::EBUSY);
        }
        self.guest_pmsver = Some(version);
        Ok(())
    }

    /// What `KVM_RUN` checks for a vCPU: nothing without the SPE feature;
    /// otherwise host support, the VM's SPU (still present on the host), this
    /// vCPU's IRQ, the VM's max buffer size, and `SPE_INIT` on this vCPU, in
    /// that order. The error names the first missing piece.
    pub fn check_ready(&self, vcpu: &VcpuSpe, ctx: &AttrCtx<'_>) -> Result<(), NotReady> {
        if !ctx.features.spe {
            return Ok(());
        }
        if !ctx.host_supports_spe {
            return Err(NotReady::HostUnsupported);
        }
        let spu = self.spu.ok_or(NotReady::NoSpu)?;
        if !ctx.host_spus.iter().any(|s| s.id == spu.id) {
            return Err(NotReady::SpuUnavailable(spu.id));
        }
        if vcpu.irq.is_none() {
            return Err(NotReady::NoIrq);
        }
        if self.max_buffer_size.is_none() {
            return Err(NotReady::NoMaxBufferSize);
        }
        if !vcpu.initialized {
            return Err(NotReady::NotInitialized);
        }
        Ok(())
    }

    /// PMBIDR_EL1 as the guest reads it (seed 002 `kvm_spe_get_pmbidr_el1`):
    /// `spu`'s value with RES0 bits \[63:48\] and \[31:12\] cleared, AddrMode
    /// set to [`PMBIDR_ADDRMODE_VM_ONLY`] (no FEAT_SPE_nVM for guests), and
    /// MaxBuffSize encoding the VM's max buffer size (before one is set: the
    /// SPU's own field, reserved bits cleared).
    pub fn guest_pmbidr(&self, spu: &Spu) -> u64 {
        let mut v = spu.pmbidr & !pmbidr_el1::RES0;
        v = pmbidr_el1::AddrMode.set(v, PMBIDR_ADDRMODE_VM_ONLY);
        let own = maxbuffsize::get(spu.pmbidr) & maxbuffsize::FIELD_MAX;
        let field = match self.max_buffer_size.map(maxbuffsize::encode) {
            Some(Ok(f)) => f,
            // Unset (or, impossibly, a stored size that does not encode).
            _ => own,
        };
        maxbuffsize::set(v, field)
    }

    /// PMSIDR_EL1 as the guest reads it (seed 002 `kvm_spe_get_pmsidr_el1`):
    /// `spu`'s value with RES0 bits \[63:33\] cleared, FnE kept only if
    /// [`VmSpe::guest_has_fne`], FDS only if [`VmSpe::guest_has_fds`].
    pub fn guest_pmsidr(&self, spu: &Spu) -> u64 {
        let mut v = spu.pmsidr & !pmsidr_el1::RES0;
        if !self.guest_has_fne(spu) {
            v = pmsidr_el1::FnE.clear(v);
        }
        if !self.guest_has_fds(spu) {
            v = pmsidr_el1::FDS.clear(v);
        }
        v
    }

    /// The guest has FEAT_SPE_FnE: its PMSVer is at least FEAT_SPEv1p2 and
    /// the hardware reports PMSIDR_EL1.FnE.
    pub fn guest_has_fne(&self, spu: &Spu) -> bool {
        self.guest_pmsver.is_none_or(PmsVer::has_fne) && pmsidr_el1::FnE.is_set(spu.pmsidr)
    }

    /// The guest has FEAT_SPE_FDS: its PMSVer is at least FEAT_SPEv1p4 and
    /// the hardware reports PMSIDR_EL1.FDS.
    pub fn guest_has_fds(&self, spu: &Spu) -> bool {
        self.guest_pmsver.is_none_or(PmsVer::has_fds) && pmsidr_el1::FDS.is_set(spu.pmsidr)
    }

    fn set_irq(&mut self, vcpu: &mut VcpuSpe, value: u64) -> Result<(), Errno> {
        if self.has_run {
            return Err(Errno::EBUSY);
        }
        let irq = match u32::try_from(value) {
            Ok(i) if (PPI_FIRST..=PPI_LAST).contains(&i) => i,
            _ => return Err(Errno::EINVAL),
        };
        if self.irq.is_some_and(|vm_irq| vm_irq != irq) {
            return Err(Errno::EINVAL);
        }
        if vcpu.irq.is_some() {
            return Err(Errno::EBUSY);
        }
        vcpu.irq = Some(irq);
        self.irq = Some(irq);
        Ok(())
    }

    fn set_spu(&mut self, host_spus: &[Spu], value: u64) -> Result<(), Errno> {
        if self.has_run {
            return Err(Errno::EBUSY);
        }
        let spu = u32::try_from(value)
            .ok()
            .and_then(|id| host_spus.iter().find(|s| s.id == id))
            .ok_or(Errno::ENODEV)?;
        match self.spu {
            Some(chosen) if chosen.id == spu.id => Ok(()),
            Some(_) => Err(Errno::EINVAL),
            None => {
                self.spu = Some(ChosenSpu {
                    id: spu.id,
                    pmbidr: spu.pmbidr,
                });
                Ok(())
            }
        }
    }

    /// `kvm_spe_set_max_buffer_size`, check for check, then memlock.
    fn set_max_buffer_size(&mut self, size: u64) -> Result<(), Errno> {
        if self.has_run {
            return Err(Errno::EBUSY);
        }
        if size % HOST_PAGE_SIZE != 0 {
            return Err(Errno::EINVAL);
        }
        let spu = self.spu.ok_or(Errno::ENODEV)?;
        if let Some(current) = self.max_buffer_size {
            return if current == size {
                Ok(())
            } else {
                Err(Errno::EINVAL)
            };
        }
        if maxbuffsize::encode(size).map(maxbuffsize::decode) != Ok(size) {
            return Err(Errno::EDOM);
        }
        let spu_max = maxbuffsize::size(spu.pmbidr);
        if spu_max != 0 && (size == 0 || size > spu_max) {
            return Err(Errno::ERANGE);
        }
        if exceeds_memlock(size, self.memlock_limit) {
            return Err(Errno::ENOMEM);
        }
        self.max_buffer_size = Some(size);
        Ok(())
    }

    fn init(&mut self, vcpu: &mut VcpuSpe) -> Result<(), Errno> {
        if vcpu.initialized || self.has_run {
            return Err(Errno::EBUSY);
        }
        if self.spu.is_none() || vcpu.irq.is_none() || self.max_buffer_size.is_none() {
            return Err(Errno::ENXIO);
        }
        vcpu.initialized = true;
        Ok(())
    }
}

/// The checks common to every SPE attribute call (module docs, "Error
/// precedence").
fn gate(ctx: &AttrCtx<'_>, attr: u64) -> Result<SpeAttr, Errno> {
    if !ctx.host_supports_spe {
        return Err(Errno::ENXIO);
    }
    let attr = SpeAttr::from_attr(attr).ok_or(Errno::ENXIO)?;
    if !ctx.features.spe {
        return Err(Errno::ENODEV);
    }
    Ok(attr)
}

/// A max buffer size of `size` bytes (0: no limit) cannot be pinned within
/// `limit` bytes.
const fn exceeds_memlock(size: u64, limit: u64) -> bool {
    if limit == MEMLOCK_UNLIMITED {
        false
    } else {
        size == 0 || size > limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attr_numbers_roundtrip() {
        for a in SpeAttr::ALL {
            assert_eq!(SpeAttr::from_attr(a.attr()), Some(a));
        }
        assert_eq!(SpeAttr::from_attr(4), None);
        assert_eq!(SpeAttr::Init.attr(), 3);
    }

    #[test]
    fn memlock_rule() {
        assert!(!exceeds_memlock(0, MEMLOCK_UNLIMITED));
        assert!(exceeds_memlock(0, 1 << 30));
        assert!(!exceeds_memlock(4096, 4096));
        assert!(exceeds_memlock(8192, 4096));
    }

    #[test]
    fn failed_set_changes_nothing() {
        let spus = [Spu {
            id: 7,
            pmsidr: 0,
            pmbidr: 0,
            cpus: vec![0],
        }];
        let ctx = AttrCtx {
            features: VcpuFeatures {
                pmu_v3: false,
                spe: true,
            },
            host_spus: &spus,
            host_supports_spe: true,
        };
        let mut vm = VmSpe::new(1 << 20);
        let mut vcpu = VcpuSpe::new();
        let before = (vm.clone(), vcpu);
        let r = vm.set_attr(
            &mut vcpu,
            &ctx,
            KVM_ARM_VCPU_SPE_MAX_BUFFER_SIZE,
            UserPtr::Value(4096),
        );
        assert_eq!(r, Err(Errno::ENODEV));
        assert_eq!((vm.clone(), vcpu), before);
        vm.set_attr(&mut vcpu, &ctx, KVM_ARM_VCPU_SPE_SPU, UserPtr::Value(7))
            .unwrap();
        let r = vm.set_attr(
            &mut vcpu,
            &ctx,
            KVM_ARM_VCPU_SPE_MAX_BUFFER_SIZE,
            UserPtr::Value(2 << 20),
        );
        assert_eq!(r, Err(Errno::ENOMEM));
        assert_eq!(vm.max_buffer_size(), None);
    }
}
