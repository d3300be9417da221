//! How a VM keeps its guests' profiling buffers pinned: the designs the
//! series and its reviewers have discussed, selectable per VM.
//!
//! - [`PinPolicy::OnEnable`] (RFC v6, seed 004): the buffer and the guest
//!   stage-1 table pages that translate it are pinned when the guest
//!   enables the buffer and unpinned when it disables it. The default.
//! - [`PinPolicy::PinAll`]: every page of guest RAM is pinned (and mapped at
//!   stage 2) before the VM's first run, as the later revisions do with
//!   guest_memfd and pre-faulting; enable and disable pin nothing, and no
//!   maximum buffer size is needed to bound what a guest pins.
//! - [`PinPolicy::Cache`]: a disabled buffer's pin is kept, so that the next
//!   enable of the same buffer pins nothing; kept pins are released, least
//!   recently used first, only when a new pin would pass RLIMIT_MEMLOCK.
//!
//! Every pin and unpin is counted ([`PinStats`]); [`PinCostModel`] turns the
//! counts into cycles.

use std::collections::BTreeSet;

use crate::pin::{Memlock, PinSet, Rlimit, VcpuPins};
use hyperprof_sim::memory::PAGE_SIZE;

/// A VM's pinning design ([`crate::vm::Kvm::set_pin_policy`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PinPolicy {
    /// Pin on enable, unpin on disable (RFC v6).
    #[default]
    OnEnable,
    /// Every guest page pinned before the first run.
    PinAll,
    /// Pins kept across disable and enable, up to the memlock limit.
    Cache,
}

impl PinPolicy {
    /// Every design, in the order reports list them.
    pub const ALL: [PinPolicy; 3] = [PinPolicy::OnEnable, PinPolicy::PinAll, PinPolicy::Cache];

    /// A short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            PinPolicy::OnEnable => "v6 pin-on-enable",
            PinPolicy::PinAll => "pin-all",
            PinPolicy::Cache => "pin cache",
        }
    }
}

/// What a VM's pinning did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PinStats {
    /// Pin operations: calls that pinned at least one new page.
    pub pin_ops: u64,
    /// Pages those operations pinned.
    pub pages_pinned: u64,
    /// Unpin operations: calls that released at least one page.
    pub unpin_ops: u64,
    /// Pages those operations released.
    pub pages_unpinned: u64,
    /// Enables served by a pin the cache kept: nothing to pin.
    pub cache_hits: u64,
    /// Kept pins released to make room for a new one (the cache).
    pub evictions: u64,
    /// Pins refused by RLIMIT_MEMLOCK (each an Rlimit exit).
    pub memlock_failures: u64,
    /// The most bytes pinned at once.
    pub peak_bytes: u64,
    /// Pin operations done while the guest was enabling its buffer: each is
    /// a window in which profiling is enabled but no buffer is on the
    /// hardware yet (the vCPU waits in the hypervisor).
    pub blackout_windows: u64,
    /// Pages pinned in those windows.
    pub blackout_pages: u64,
}

/// The cost of pinning in cycles: a fixed part per call (the mmap lock,
/// the memlock account, the stage-2 walk) and a part per page (page
/// lookup, reference count, stage-2 mapping; on unpin the stage-2 unmap and
/// its TLB invalidation). The defaults are assumptions of the model, not
/// measurements: the order of magnitude of `pin_user_pages` plus a
/// stage-2 map on a 2-3 GHz core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PinCostModel {
    /// Cycles per pin call.
    pub pin_call: u64,
    /// Cycles per page pinned.
    pub pin_page: u64,
    /// Cycles per unpin call.
    pub unpin_call: u64,
    /// Cycles per page unpinned.
    pub unpin_page: u64,
}

impl Default for PinCostModel {
    fn default() -> Self {
        PinCostModel {
            pin_call: 2_000,
            pin_page: 400,
            unpin_call: 1_500,
            unpin_page: 250,
        }
    }
}

impl PinCostModel {
    /// Cycles spent pinning.
    pub fn pin_cycles(&self, s: &PinStats) -> u64 {
        s.pin_ops * self.pin_call + s.pages_pinned * self.pin_page
    }
    /// Cycles spent unpinning.
    pub fn unpin_cycles(&self, s: &PinStats) -> u64 {
        s.unpin_ops * self.unpin_call + s.pages_unpinned * self.unpin_page
    }
    /// Cycles of the blackout windows (the pins done at enable).
    pub fn blackout_cycles(&self, s: &PinStats) -> u64 {
        s.blackout_windows * self.pin_call + s.blackout_pages * self.pin_page
    }
}

/// A pin the cache kept after its buffer was disabled.
#[derive(Debug)]
struct Kept {
    vcpu: usize,
    pins: VcpuPins,
    last_use: u64,
}

/// A VM's pinning state.
#[derive(Debug, Default)]
pub(super) struct Pinning {
    pub(super) policy: PinPolicy,
    pub(super) stats: PinStats,
    ram_bytes: u64,
    /// Pin-all: guest RAM is pinned.
    all_pinned: bool,
    kept: Vec<Kept>,
    tick: u64,
}

fn pages(bytes: u64) -> u64 {
    bytes / PAGE_SIZE
}

impl Pinning {
    pub(super) fn new(ram_bytes: u64) -> Self {
        Pinning {
            ram_bytes,
            ..Pinning::default()
        }
    }

    fn note_peak(&mut self, memlock: &Memlock) {
        self.stats.peak_bytes = self.stats.peak_bytes.max(memlock.used());
    }

    fn count_unpin(&mut self, bytes: u64) {
        if bytes > 0 {
            self.stats.unpin_ops += 1;
            self.stats.pages_unpinned += pages(bytes);
        }
    }

    /// Pin-all, and guest RAM is pinned: every buffer the guest's tables
    /// map in RAM is covered without a pin of its own.
    pub(super) fn all_pinned(&self) -> bool {
        self.all_pinned
    }

    /// Pin-all before the first run: every guest page, once.
    pub(super) fn before_run(&mut self, memlock: &mut Memlock) -> Result<(), Rlimit> {
        if self.policy != PinPolicy::PinAll || self.all_pinned {
            return Ok(());
        }
        if let Err(r) = memlock.charge(self.ram_bytes) {
            self.stats.memlock_failures += 1;
            return Err(r);
        }
        self.all_pinned = true;
        self.stats.pin_ops += 1;
        self.stats.pages_pinned += pages(self.ram_bytes);
        self.note_peak(memlock);
        Ok(())
    }

    /// The guest's buffer (of vCPU `vcpu`) is enabled and needs `set`.
    pub(super) fn pin(
        &mut self,
        vcpu: usize,
        active: &mut VcpuPins,
        set: PinSet,
        memlock: &mut Memlock,
    ) -> Result<(), Rlimit> {
        self.tick += 1;
        let wanted = set.host_pages();
        let current: BTreeSet<u64> = active.host_pages().collect();
        if current == wanted && !wanted.is_empty() {
            // Already on: a re-arm of the same buffer.
            return Ok(());
        }
        match self.policy {
            // Everything is pinned already (the run refused to start
            // otherwise).
            PinPolicy::PinAll => Ok(()),
            PinPolicy::OnEnable => match active.pin(set, memlock) {
                Ok(()) => {
                    let new = wanted.difference(&current).count() as u64;
                    let gone = current.difference(&wanted).count() as u64;
                    self.count_unpin(gone * PAGE_SIZE);
                    if new > 0 {
                        self.stats.pin_ops += 1;
                        self.stats.pages_pinned += new;
                        self.stats.blackout_windows += 1;
                        self.stats.blackout_pages += new;
                    }
                    self.note_peak(memlock);
                    Ok(())
                }
                Err(r) => {
                    self.stats.memlock_failures += 1;
                    Err(r)
                }
            },
            PinPolicy::Cache => self.pin_cached(vcpu, active, set, wanted, memlock),
        }
    }

    fn pin_cached(
        &mut self,
        vcpu: usize,
        active: &mut VcpuPins,
        set: PinSet,
        wanted: BTreeSet<u64>,
        memlock: &mut Memlock,
    ) -> Result<(), Rlimit> {
        // The pin in use goes to the cache (still charged).
        if active.is_pinned() {
            let pins = std::mem::take(active);
            self.kept.push(Kept {
                vcpu,
                pins,
                last_use: self.tick,
            });
        }
        if let Some(i) = self
            .kept
            .iter()
            .position(|k| k.vcpu == vcpu && k.pins.host_pages().eq(wanted.iter().copied()))
        {
            *active = self.kept.swap_remove(i).pins;
            self.stats.cache_hits += 1;
            return Ok(());
        }
        let need = wanted.len() as u64 * PAGE_SIZE;
        while memlock.available() < need && !self.kept.is_empty() {
            let lru = self
                .kept
                .iter()
                .enumerate()
                .min_by_key(|(_, k)| k.last_use)
                .map(|(i, _)| i)
                .unwrap_or(0);
            let mut k = self.kept.swap_remove(lru);
            let bytes = k.pins.bytes();
            k.pins.unpin(memlock);
            self.count_unpin(bytes);
            self.stats.evictions += 1;
        }
        match active.pin(set, memlock) {
            Ok(()) => {
                let n = wanted.len() as u64;
                self.stats.pin_ops += 1;
                self.stats.pages_pinned += n;
                self.stats.blackout_windows += 1;
                self.stats.blackout_pages += n;
                self.note_peak(memlock);
                Ok(())
            }
            Err(r) => {
                self.stats.memlock_failures += 1;
                Err(r)
            }
        }
    }

    /// The guest's buffer is disabled (or cannot be used): what is pinned
    /// for it is released, or kept by the cache.
    pub(super) fn release(&mut self, vcpu: usize, active: &mut VcpuPins, memlock: &mut Memlock) {
        self.tick += 1;
        if !active.is_pinned() {
            return;
        }
        if self.policy == PinPolicy::Cache {
            let pins = std::mem::take(active);
            self.kept.push(Kept {
                vcpu,
                pins,
                last_use: self.tick,
            });
            return;
        }
        let bytes = active.bytes();
        active.unpin(memlock);
        self.count_unpin(bytes);
    }

    /// An MMU-notifier event on host physical `range`: kept pins on it are
    /// dropped. Returns whether pin-all holds the range (it cannot move).
    pub(super) fn invalidate(
        &mut self,
        range: std::ops::Range<u64>,
        memlock: &mut Memlock,
    ) -> bool {
        let mut i = 0;
        while i < self.kept.len() {
            let bytes = self.kept[i].pins.bytes();
            if self.kept[i].pins.invalidate(range.clone(), memlock) {
                self.kept.swap_remove(i);
                self.count_unpin(bytes);
            } else {
                i += 1;
            }
        }
        self.all_pinned
    }

    /// VM teardown: every kept pin and pin-all's pin released.
    pub(super) fn teardown(&mut self, memlock: &mut Memlock) {
        for mut k in std::mem::take(&mut self.kept) {
            let bytes = k.pins.bytes();
            k.pins.unpin(memlock);
            self.count_unpin(bytes);
        }
        if self.all_pinned {
            memlock.uncharge(self.ram_bytes);
            self.count_unpin(self.ram_bytes);
            self.all_pinned = false;
        }
    }

    /// Bytes the cache keeps for buffers that are disabled.
    pub(super) fn kept_bytes(&self) -> u64 {
        self.kept.iter().map(|k| k.pins.bytes()).sum()
    }
}

impl super::Kvm {
    /// Chooses VM `vm`'s pinning design; only before it first ran (EBUSY
    /// after, as the other VM-wide SPE settings).
    pub fn set_pin_policy(
        &mut self,
        vm: usize,
        policy: PinPolicy,
    ) -> Result<(), crate::uapi::Errno> {
        let v = self.vms.get_mut(vm).ok_or(crate::uapi::Errno::ENODEV)?;
        if v.spe.has_run() {
            return Err(crate::uapi::Errno::EBUSY);
        }
        v.pinning.policy = policy;
        Ok(())
    }

    /// VM `vm`'s pinning design.
    pub fn pin_policy(&self, vm: usize) -> Option<PinPolicy> {
        self.vms.get(vm).map(|v| v.pinning.policy)
    }

    /// What VM `vm`'s pinning did so far.
    pub fn pin_stats(&self, vm: usize) -> Option<PinStats> {
        self.vms.get(vm).map(|v| v.pinning.stats)
    }

    /// Bytes VM `vm`'s pin cache keeps for disabled buffers (part of
    /// [`super::Kvm::pinned_bytes`]).
    pub fn pin_cache_bytes(&self, vm: usize) -> Option<u64> {
        self.vms.get(vm).map(|v| v.pinning.kept_bytes())
    }
}
