//! Pinning a guest's profiling buffer, and the guest stage-1 table pages that
//! translate it, charged to the VM's memlock limit (DESIGN invariant 4
//! "Limits"; ARM-FACTS §6; seeds/004, `KVM_ARM_VCPU_MAX_BUFFER_SIZE`).
//!
//! When a guest enables its profiling buffer (PMBLIMITR_EL1.E = 1) the
//! Statistical Profiling Unit (SPU) must never take a stage-2 fault while it
//! writes records: a stage-2 fault on an SPE buffer write is not restartable
//! the way a CPU data abort is. The hypervisor therefore keeps mapped, at
//! stage 2, every host page that
//!
//! - backs a page of the buffer (the SPU writes it), and
//! - backs a guest stage-1 translation table page visited when translating
//!   the buffer (the SPU walks the guest's stage 1, and each descriptor read
//!   goes through stage 2).
//!
//! Those pages are "pinned" and count against the VM's `RLIMIT_MEMLOCK`
//! ([`Memlock`]). When the limit would be exceeded at guest enable time the
//! vCPU exits to userspace with `KVM_EXIT_RLIMIT`, carrying the figures in an
//! [`Rlimit`].
//!
//! The pieces:
//!
//! - [`collect`] / [`collect_within`] walk the guest's stage 1 through stage 2
//!   for every page of the buffer, as an SPU write would, and return the
//!   [`PinSet`] of buffer and table pages, or the first fault.
//! - [`Memlock`] is the VM-wide account (one per VM, as the limit is per
//!   process).
//! - [`VcpuPins`] is what one vCPU has pinned now; it makes enable, disable,
//!   buffer moves, teardown and MMU-notifier invalidation exact.
//!
//! # Choices
//!
//! **Shared pages are charged per vCPU.** If two vCPUs' buffers (or, much more
//! commonly, the guest stage-1 tables that translate them, such as the shared
//! level-0 table) use the same host page, each vCPU's pin is charged for it.
//! This is how Linux accounts pins: each pinning (KVM's pin of a vCPU's
//! buffer, like any `account_locked_vm()` user) charges the pages it pins,
//! so a page pinned by two pinners is charged twice. It is also the choice that keeps every operation local and exact:
//! a vCPU's [`VcpuPins::pin`], [`VcpuPins::unpin`] and
//! [`VcpuPins::invalidate`] change the account by exactly that vCPU's own
//! bytes, without a VM-wide reference count that every vCPU would have to
//! consult, and the account always equals the sum of [`VcpuPins::bytes`] over
//! the VM's vCPUs. It over-counts (never under-counts) real memory, which is
//! the safe direction for a limit. Within one vCPU, a host page is charged
//! once, however many buffer VAs or table levels use it (a guest may alias
//! pages, or put a table inside its own buffer).
//!
//! **A buffer larger than the maximum buffer size is refused before any walk.**
//! The VM's maximum buffer size (`KVM_ARM_VCPU_SPE_MAX_BUFFER_SIZE`, advertised
//! in PMBIDR_EL1.MaxBuffSize, 0 = no limit) bounds the buffer the guest may
//! pin; [`check_buffer_size`] tests it and [`collect_within`] applies it
//! before walking, so a hostile guest cannot make the hypervisor walk an
//! unbounded range. What the guest then sees (the hypervisor raises a buffer
//! management event rather than pinning) is the caller's decision;
//! [`PinError::TooLarge`] carries the figures. The table pages come on top of
//! the buffer ("slightly larger than the maximum buffer", seeds/004), so the
//! bound is on the buffer only. With no maximum, the memlock limit is what
//! bounds the pin, but the walk itself is bounded only by `len`: a caller
//! may then compare `len` with [`Memlock::available`] first (a longer buffer
//! can only fit if the guest maps one page at several addresses) and report
//! an `Rlimit` without walking.
//!
//! **Replacing a pin is charged by its net effect.** When the guest moves its
//! buffer, the old pin is no longer needed once the new one is in place (the
//! SPU is not writing while the hypervisor emulates the register write), so
//! [`VcpuPins::pin`] checks that the VM's usage *after* the move fits:
//! pages in both the old and the new set are not charged twice, and pages
//! only in the old set are released.
//!
//! Everything is kept in ordered collections; results are deterministic.

use core::fmt;
use core::ops::Range;
use std::collections::BTreeSet;

use hyperprof_sim::memory::{PhysMem, PAGE_SIZE};
use hyperprof_sim::mmu::{Access, Fault, Stage1Params, Stage2Params, Translation};

/// Mask of the offset bits within a page.
const PAGE_MASK: u64 = PAGE_SIZE - 1;

/// `addr` rounded down to its 4 KiB page.
const fn page_of(addr: u64) -> u64 {
    addr & !PAGE_MASK
}

/// Bytes of `pages` 4 KiB pages, saturating.
fn pages_to_bytes(pages: usize) -> u64 {
    u64::try_from(pages)
        .unwrap_or(u64::MAX)
        .saturating_mul(PAGE_SIZE)
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Why a buffer's pages could not be collected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinError {
    /// The buffer is empty (`len == 0`): nothing to pin.
    Empty,
    /// `va` or `len` is not a multiple of 4 KiB.
    Unaligned {
        /// Start of the buffer.
        va: u64,
        /// Length of the buffer in bytes.
        len: u64,
    },
    /// `va + len` does not fit in 64 bits.
    Overflow {
        /// Start of the buffer.
        va: u64,
        /// Length of the buffer in bytes.
        len: u64,
    },
    /// The buffer is larger than the VM's maximum buffer size
    /// (`KVM_ARM_VCPU_SPE_MAX_BUFFER_SIZE`, PMBIDR_EL1.MaxBuffSize).
    TooLarge {
        /// Length of the buffer in bytes.
        len: u64,
        /// The maximum buffer size in bytes (never 0 here).
        max: u64,
    },
    /// A buffer page cannot be written by the SPU: the translation of that
    /// page faults, at stage 1 (`fault.stage == 1`: guest tables) or stage 2
    /// (`fault.stage == 2`: the page, or a stage-1 table page when
    /// `fault.s1ptw`, is outside the memslots or not writable/readable).
    /// The first faulting page in address order is reported.
    Fault(Fault),
}

impl PinError {
    /// The translation fault, if that is the error.
    pub fn fault(&self) -> Option<&Fault> {
        match self {
            PinError::Fault(f) => Some(f),
            _ => None,
        }
    }
}

impl From<Fault> for PinError {
    fn from(f: Fault) -> Self {
        PinError::Fault(f)
    }
}

impl fmt::Display for PinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PinError::Empty => write!(f, "profiling buffer is empty: nothing to pin"),
            PinError::Unaligned { va, len } => write!(
                f,
                "profiling buffer {va:#x}+{len:#x} is not aligned to 4 KiB pages"
            ),
            PinError::Overflow { va, len } => write!(
                f,
                "profiling buffer {va:#x}+{len:#x} wraps the address space"
            ),
            PinError::TooLarge { len, max } => write!(
                f,
                "profiling buffer of {len:#x} bytes is larger than the maximum buffer size {max:#x}"
            ),
            PinError::Fault(fault) => write!(f, "profiling buffer cannot be pinned: {fault}"),
        }
    }
}

impl std::error::Error for PinError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PinError::Fault(f) => Some(f),
            _ => None,
        }
    }
}

/// Pinning would take the VM over its memlock limit (`RLIMIT_MEMLOCK`): the
/// figures the vCPU reports with its `Rlimit` exit (`KVM_EXIT_RLIMIT`).
///
/// Always `used + needed > limit` (computed without overflow): the request
/// of `needed` bytes on top of `used` does not fit. Userspace can raise the
/// limit to [`Rlimit::required_limit`] and run the vCPU again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rlimit {
    /// Bytes the request needs on top of `used`. For [`Memlock::charge`]
    /// the bytes asked for; for [`VcpuPins::pin`] the vCPU's whole new pin.
    pub needed: u64,
    /// Bytes already charged that the request does not release. For
    /// [`VcpuPins::pin`], the VM's usage without this vCPU's current pin.
    pub used: u64,
    /// The limit in bytes.
    pub limit: u64,
}

impl Rlimit {
    /// The smallest limit with which the request would have succeeded
    /// (`used + needed`, saturating at `u64::MAX`).
    pub fn required_limit(&self) -> u64 {
        self.used.saturating_add(self.needed)
    }

    /// By how many bytes the request exceeds the limit.
    pub fn shortfall(&self) -> u64 {
        self.required_limit().saturating_sub(self.limit)
    }
}

impl fmt::Display for Rlimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "memlock limit exceeded: {} bytes needed with {} bytes in use, limit {} bytes",
            self.needed, self.used, self.limit
        )
    }
}

impl std::error::Error for Rlimit {}

// ---------------------------------------------------------------------------
// Buffer geometry helpers
// ---------------------------------------------------------------------------

/// Checks a buffer length against the VM's maximum buffer size
/// (`KVM_ARM_VCPU_SPE_MAX_BUFFER_SIZE`; 0 means no limit, as in the uAPI and
/// PMBIDR_EL1.MaxBuffSize).
pub fn check_buffer_size(len: u64, max_buffer_size: u64) -> Result<(), PinError> {
    if max_buffer_size != 0 && len > max_buffer_size {
        return Err(PinError::TooLarge {
            len,
            max: max_buffer_size,
        });
    }
    Ok(())
}

/// The page-aligned range `(va, len)` a profiling buffer occupies, from the
/// page holding the write pointer (PMBPTR_EL1) up to the limit
/// (PMBLIMITR_EL1.LIMIT, bits \[63:12\]; low bits of `limit` are ignored).
///
/// `None` when `ptr >= limit`: the buffer has no room, the SPU raises a
/// buffer-full event before writing anything, and nothing needs pinning.
pub fn buffer_span(ptr: u64, limit: u64) -> Option<(u64, u64)> {
    let start = page_of(ptr);
    let end = page_of(limit);
    if ptr >= end {
        return None;
    }
    Some((start, end - start))
}

/// Validates `[va, va + len)` and returns its exclusive end.
fn check_range(va: u64, len: u64) -> Result<u64, PinError> {
    if len == 0 {
        return Err(PinError::Empty);
    }
    if va & PAGE_MASK != 0 || len & PAGE_MASK != 0 {
        return Err(PinError::Unaligned { va, len });
    }
    va.checked_add(len).ok_or(PinError::Overflow { va, len })
}

// ---------------------------------------------------------------------------
// PinSet and collect
// ---------------------------------------------------------------------------

/// One pinned page: its guest IPA and the host PA backing it (both 4 KiB
/// aligned).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PinnedPage {
    /// Intermediate physical address of the page (guest view).
    pub ipa: u64,
    /// Physical address of the host page backing it.
    pub pa: u64,
}

/// The pages one buffer needs pinned: the buffer's own pages and the guest
/// stage-1 table pages that translate them.
///
/// Sets built by [`collect`] or [`PinSet::new`] hold page-aligned entries,
/// sorted by `(ipa, pa)` and without duplicates in each list. The fields are
/// public for inspection; every method of this module stays correct on a
/// hand-built set that breaks those rules (it counts distinct page-aligned
/// host PAs).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PinSet {
    /// Pages of the buffer, as the SPU writes them.
    pub buffer: Vec<PinnedPage>,
    /// Guest stage-1 translation table pages visited when translating the
    /// buffer (every level, every table).
    pub tables: Vec<PinnedPage>,
}

impl PinSet {
    /// A set of the given pages, aligned down to 4 KiB, sorted and
    /// deduplicated.
    pub fn new(
        buffer: impl IntoIterator<Item = PinnedPage>,
        tables: impl IntoIterator<Item = PinnedPage>,
    ) -> Self {
        fn normalise(pages: impl IntoIterator<Item = PinnedPage>) -> Vec<PinnedPage> {
            pages
                .into_iter()
                .map(|p| PinnedPage {
                    ipa: page_of(p.ipa),
                    pa: page_of(p.pa),
                })
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect()
        }
        Self {
            buffer: normalise(buffer),
            tables: normalise(tables),
        }
    }

    /// Every page entry: the buffer pages, then the table pages. A host page
    /// that is both (a table inside the buffer) appears in both lists; it is
    /// pinned and charged once, see [`PinSet::host_pages`].
    pub fn pages(&self) -> impl Iterator<Item = &PinnedPage> {
        self.buffer.iter().chain(self.tables.iter())
    }

    /// The distinct host pages (page-aligned PAs) to pin, in increasing order.
    pub fn host_pages(&self) -> BTreeSet<u64> {
        self.pages().map(|p| page_of(p.pa)).collect()
    }

    /// Bytes pinned: 4 KiB per distinct host page.
    pub fn bytes(&self) -> u64 {
        pages_to_bytes(self.host_pages().len())
    }

    /// Whether the set pins nothing.
    pub fn is_empty(&self) -> bool {
        self.buffer.is_empty() && self.tables.is_empty()
    }
}

/// Collects the pages to pin for the buffer `[va, va + len)` of a guest
/// whose stage-1 tables (TTBR0_EL1 half, 4 KiB granule, 48-bit VA) are rooted
/// at the IPA `s1_root_ipa` and whose stage 2 is `s2`.
///
/// Every page of the range is translated as the SPU writes it: a privileged
/// (EL1) write through stage 1 and stage 2, each stage-1 descriptor read
/// itself translated by stage 2 (Arm ARM D8 two-stage translation). The
/// buffer pages and every stage-1 table page visited are returned with their
/// IPA and PA.
///
/// `va` and `len` must be multiples of 4 KiB (see [`buffer_span`]), `len`
/// non-zero, and `va + len` must fit in 64 bits. The walk is linear in
/// `len`: bound `len` first ([`collect_within`] does).
///
/// Errors: [`PinError::Empty`], [`PinError::Unaligned`],
/// [`PinError::Overflow`], or [`PinError::Fault`] with the first faulting
/// page's fault (stage 1 or stage 2). Nothing is written to memory.
pub fn collect(
    mem: &PhysMem,
    s1_root_ipa: u64,
    s2: &Stage2Params,
    va: u64,
    len: u64,
) -> Result<PinSet, PinError> {
    let end = check_range(va, len)?;
    // A TTBR0_EL1 base of 0 is the model's stage 1 off (SCTLR_EL1.M = 0):
    // the buffer's addresses are IPAs and no stage-1 table needs a pin,
    // as the unit itself translates them.
    let s1_off = hyperprof_sim::translate::Regime::from_bases(s1_root_ipa, None)
        .s1_root
        .is_none();
    let regime = Translation {
        s1: Stage1Params::new(s1_root_ipa),
        s2: Some(*s2),
    };
    let mut buffer = BTreeSet::new();
    let mut tables = BTreeSet::new();
    let mut page = va;
    while page < end {
        if s1_off {
            let walk = s2.walk(mem, page, true)?;
            buffer.insert(PinnedPage {
                ipa: page_of(page),
                pa: page_of(walk.oa),
            });
        } else {
            let walk = regime.translate(mem, page, Access::WRITE)?;
            buffer.insert(PinnedPage {
                ipa: page_of(walk.ipa),
                pa: page_of(walk.pa),
            });
            tables.extend(walk.s1_table_pages().iter().map(|t| PinnedPage {
                ipa: page_of(t.ipa),
                pa: page_of(t.pa),
            }));
        }
        page = match page.checked_add(PAGE_SIZE) {
            Some(next) => next,
            None => break,
        };
    }
    Ok(PinSet {
        buffer: buffer.into_iter().collect(),
        tables: tables.into_iter().collect(),
    })
}

/// [`collect`] for a buffer that must not be larger than `max_buffer_size`
/// bytes (the VM's `KVM_ARM_VCPU_SPE_MAX_BUFFER_SIZE`, 0 = no limit).
///
/// The range is validated first, then the size ([`PinError::TooLarge`]),
/// and only then is anything walked.
pub fn collect_within(
    mem: &PhysMem,
    s1_root_ipa: u64,
    s2: &Stage2Params,
    va: u64,
    len: u64,
    max_buffer_size: u64,
) -> Result<PinSet, PinError> {
    check_range(va, len)?;
    check_buffer_size(len, max_buffer_size)?;
    collect(mem, s1_root_ipa, s2, va, len)
}

// ---------------------------------------------------------------------------
// Memlock
// ---------------------------------------------------------------------------

/// The VM-wide memlock account (`RLIMIT_MEMLOCK` of the VMM process, as KVM
/// charges pinned pages to `mm->pinned_vm`).
///
/// `used` never exceeds `limit`: a charge that would is refused with an
/// [`Rlimit`] and changes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Memlock {
    limit: u64,
    used: u64,
}

impl Memlock {
    /// No limit (`RLIM_INFINITY`).
    pub const UNLIMITED: u64 = u64::MAX;

    /// An account with nothing charged and a limit of `limit` bytes.
    pub fn new(limit: u64) -> Self {
        Self { limit, used: 0 }
    }

    /// Bytes charged.
    pub fn used(&self) -> u64 {
        self.used
    }

    /// The limit in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes that can still be charged.
    pub fn available(&self) -> u64 {
        self.limit.saturating_sub(self.used)
    }

    /// Changes the limit (userspace raising `RLIMIT_MEMLOCK` after an
    /// `Rlimit` exit). A limit below the bytes already charged is refused
    /// (with `needed == 0`) and nothing changes.
    pub fn set_limit(&mut self, limit: u64) -> Result<(), Rlimit> {
        if limit < self.used {
            return Err(Rlimit {
                needed: 0,
                used: self.used,
                limit,
            });
        }
        self.limit = limit;
        Ok(())
    }

    /// Charges `bytes`, or refuses with the figures if `used + bytes` would
    /// exceed the limit (nothing changes then).
    pub fn charge(&mut self, bytes: u64) -> Result<(), Rlimit> {
        let refused = Rlimit {
            needed: bytes,
            used: self.used,
            limit: self.limit,
        };
        match self.used.checked_add(bytes) {
            Some(total) if total <= self.limit => {
                self.used = total;
                Ok(())
            }
            _ => Err(refused),
        }
    }

    /// Releases `bytes`. Releasing more than is charged (a caller bug) leaves
    /// the account at zero rather than wrapping.
    pub fn uncharge(&mut self, bytes: u64) {
        self.used = self.used.saturating_sub(bytes);
    }
}

// ---------------------------------------------------------------------------
// Per-vCPU pins
// ---------------------------------------------------------------------------

/// What one vCPU has pinned now, so that enable, disable, buffer moves, VM
/// teardown and MMU-notifier invalidation charge and release exactly.
///
/// The account passed to the methods must be the VM's one [`Memlock`]
/// (the same for every call and every vCPU of the VM); then the account's
/// `used` equals the sum of [`VcpuPins::bytes`] over the VM's vCPUs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VcpuPins {
    /// The set pinned now (empty when nothing is).
    set: PinSet,
    /// Its distinct host pages (page-aligned PAs): what is charged.
    host: BTreeSet<u64>,
}

impl VcpuPins {
    /// Nothing pinned.
    pub fn new() -> Self {
        Self::default()
    }

    /// Pins `set` in place of what is pinned now (guest enable, or a buffer
    /// move while enabled).
    ///
    /// The account changes by the net difference: host pages in both the old
    /// and the new set are not charged twice, pages only in the old set are
    /// released. If the VM's usage after the change would exceed the limit,
    /// returns [`Rlimit`] (`needed` = the new set's bytes, `used` = the VM's
    /// usage without this vCPU's current pin) and nothing changes: the old
    /// pin, if any, stays.
    pub fn pin(&mut self, set: PinSet, account: &mut Memlock) -> Result<(), Rlimit> {
        let host = set.host_pages();
        let new_bytes = pages_to_bytes(host.len());
        let others = account.used.saturating_sub(self.bytes());
        match others.checked_add(new_bytes) {
            Some(total) if total <= account.limit => {
                account.used = total;
                self.set = set;
                self.host = host;
                Ok(())
            }
            _ => Err(Rlimit {
                needed: new_bytes,
                used: others,
                limit: account.limit,
            }),
        }
    }

    /// Releases everything pinned (guest disable, or VM teardown).
    pub fn unpin(&mut self, account: &mut Memlock) {
        account.uncharge(self.bytes());
        self.set = PinSet::default();
        self.host.clear();
    }

    /// The set pinned now (empty when nothing is).
    pub fn pinned(&self) -> &PinSet {
        &self.set
    }

    /// Whether anything is pinned.
    pub fn is_pinned(&self) -> bool {
        !self.host.is_empty()
    }

    /// Bytes charged for this vCPU: 4 KiB per distinct host page pinned.
    pub fn bytes(&self) -> u64 {
        pages_to_bytes(self.host.len())
    }

    /// The distinct host pages (page-aligned PAs) pinned, in increasing order.
    pub fn host_pages(&self) -> impl Iterator<Item = u64> + '_ {
        self.host.iter().copied()
    }

    /// Whether the host page holding `pa` is pinned by this vCPU.
    pub fn contains_pa(&self, pa: u64) -> bool {
        self.host.contains(&page_of(pa))
    }

    /// An MMU-notifier event on the host physical range `pa_range` (the host
    /// is about to unmap, migrate or change those pages). If any pinned page
    /// overlaps the range, the whole pin is dropped and uncharged and `true`
    /// is returned: the hypervisor must stop profiling on this vCPU until it
    /// re-pins (collects and pins again). Otherwise nothing changes and
    /// `false` is returned. An empty range touches nothing.
    pub fn invalidate(&mut self, pa_range: Range<u64>, account: &mut Memlock) -> bool {
        if pa_range.start >= pa_range.end {
            return false;
        }
        // A page [p, p + 4 KiB) overlaps [start, end) iff
        // page_of(start) <= p < end.
        let hit = self
            .host
            .range(page_of(pa_range.start)..pa_range.end)
            .next()
            .is_some();
        if hit {
            self.unpin(account);
        }
        hit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(ipa: u64, pa: u64) -> PinnedPage {
        PinnedPage { ipa, pa }
    }

    fn set(buffer: &[(u64, u64)], tables: &[(u64, u64)]) -> PinSet {
        PinSet::new(
            buffer.iter().map(|&(i, p)| page(i, p)),
            tables.iter().map(|&(i, p)| page(i, p)),
        )
    }

    #[test]
    fn range_checks() {
        assert_eq!(check_range(0x1000, 0), Err(PinError::Empty));
        assert_eq!(
            check_range(0x1001, 0x1000),
            Err(PinError::Unaligned {
                va: 0x1001,
                len: 0x1000
            })
        );
        assert_eq!(
            check_range(0x1000, 0x800),
            Err(PinError::Unaligned {
                va: 0x1000,
                len: 0x800
            })
        );
        assert_eq!(
            check_range(u64::MAX - 0xfff, 0x1000),
            Err(PinError::Overflow {
                va: u64::MAX - 0xfff,
                len: 0x1000
            })
        );
        assert_eq!(check_range(0x1000, 0x2000), Ok(0x3000));
    }

    #[test]
    fn buffer_size_and_span_helpers() {
        assert_eq!(check_buffer_size(1 << 30, 0), Ok(()));
        assert_eq!(check_buffer_size(0x4000, 0x4000), Ok(()));
        assert_eq!(
            check_buffer_size(0x5000, 0x4000),
            Err(PinError::TooLarge {
                len: 0x5000,
                max: 0x4000
            })
        );
        assert_eq!(buffer_span(0x1234, 0x4000), Some((0x1000, 0x3000)));
        assert_eq!(buffer_span(0x4000, 0x4000), None);
        assert_eq!(buffer_span(0x3fff, 0x4fff), Some((0x3000, 0x1000)));
        assert_eq!(buffer_span(0x5000, 0x4000), None);
        assert_eq!(buffer_span(0, 0xfff), None);
    }

    #[test]
    fn pinset_normalises_and_counts_distinct_host_pages() {
        let s = set(
            &[(0x3000, 0x9000), (0x1000, 0x8000), (0x1000, 0x8000)],
            &[(0x5123, 0xa456), (0x3000, 0x9000)],
        );
        assert_eq!(s.buffer, vec![page(0x1000, 0x8000), page(0x3000, 0x9000)]);
        assert_eq!(s.tables, vec![page(0x3000, 0x9000), page(0x5000, 0xa000)]);
        // The table inside the buffer is one host page.
        assert_eq!(s.bytes(), 3 * PAGE_SIZE);
        assert_eq!(s.pages().count(), 4);
        assert!(!s.is_empty());
        assert!(PinSet::default().is_empty());
        assert_eq!(PinSet::default().bytes(), 0);
    }

    #[test]
    fn memlock_arithmetic() {
        let mut m = Memlock::new(0x3000);
        assert_eq!((m.used(), m.limit(), m.available()), (0, 0x3000, 0x3000));
        m.charge(0x2000).unwrap();
        assert_eq!(m.used(), 0x2000);
        assert_eq!(
            m.charge(0x2000),
            Err(Rlimit {
                needed: 0x2000,
                used: 0x2000,
                limit: 0x3000
            })
        );
        assert_eq!(m.used(), 0x2000);
        m.charge(0x1000).unwrap();
        assert_eq!(m.available(), 0);
        m.uncharge(0x1800);
        assert_eq!(m.used(), 0x1800);
        m.uncharge(u64::MAX);
        assert_eq!(m.used(), 0);
        let mut big = Memlock::new(Memlock::UNLIMITED);
        big.charge(u64::MAX - 1).unwrap();
        assert!(big.charge(2).is_err());
        assert_eq!(big.used(), u64::MAX - 1);
    }

    #[test]
    fn memlock_set_limit() {
        let mut m = Memlock::new(0x4000);
        m.charge(0x3000).unwrap();
        assert_eq!(
            m.set_limit(0x2000),
            Err(Rlimit {
                needed: 0,
                used: 0x3000,
                limit: 0x2000
            })
        );
        assert_eq!(m.limit(), 0x4000);
        m.set_limit(0x3000).unwrap();
        assert_eq!(m.limit(), 0x3000);
        assert!(m.charge(1).is_err());
    }

    #[test]
    fn rlimit_figures() {
        let r = Rlimit {
            needed: 0x5000,
            used: 0x2000,
            limit: 0x4000,
        };
        assert_eq!(r.required_limit(), 0x7000);
        assert_eq!(r.shortfall(), 0x3000);
        let s = r.to_string();
        assert!(
            s.contains("20480") && s.contains("8192") && s.contains("16384"),
            "{s}"
        );
        let huge = Rlimit {
            needed: u64::MAX,
            used: 5,
            limit: 0,
        };
        assert_eq!(huge.required_limit(), u64::MAX);
    }

    #[test]
    fn pin_move_charges_net_difference() {
        let mut acct = Memlock::new(10 * PAGE_SIZE);
        let mut v = VcpuPins::new();
        v.pin(set(&[(0x1000, 0x1000), (0x2000, 0x2000)], &[]), &mut acct)
            .unwrap();
        assert_eq!(acct.used(), 2 * PAGE_SIZE);
        // Move: one page shared, two new.
        v.pin(
            set(&[(0x2000, 0x2000), (0x3000, 0x3000), (0x4000, 0x4000)], &[]),
            &mut acct,
        )
        .unwrap();
        assert_eq!(acct.used(), 3 * PAGE_SIZE);
        assert!(!v.contains_pa(0x1000));
        assert!(v.contains_pa(0x2abc));
        v.unpin(&mut acct);
        assert_eq!(acct.used(), 0);
        assert!(!v.is_pinned());
    }

    #[test]
    fn invalidate_boundaries() {
        let mut acct = Memlock::new(Memlock::UNLIMITED);
        let mut v = VcpuPins::new();
        let s = set(&[(0x5000, 0x5000)], &[]);
        v.pin(s.clone(), &mut acct).unwrap();
        assert!(!v.invalidate(0x4000..0x5000, &mut acct));
        assert!(!v.invalidate(0x6000..0x7000, &mut acct));
        assert!(!v.invalidate(0x5800..0x5800, &mut acct));
        let reversed = Range {
            start: 0x6000,
            end: 0x5000,
        };
        assert!(!v.invalidate(reversed, &mut acct));
        assert_eq!(acct.used(), PAGE_SIZE);
        assert!(v.invalidate(0x5fff..0x6000, &mut acct));
        assert_eq!(acct.used(), 0);
        v.pin(s, &mut acct).unwrap();
        assert!(v.invalidate(0x4fff..0x5001, &mut acct));
        assert!(!v.invalidate(0..u64::MAX, &mut acct));
    }

    #[test]
    fn errors_display_and_source() {
        use std::error::Error as _;
        assert!(PinError::Empty.to_string().contains("empty"));
        let t = PinError::TooLarge {
            len: 0x2000,
            max: 0x1000,
        }
        .to_string();
        assert!(t.contains("0x2000") && t.contains("0x1000"), "{t}");
        let f = Fault {
            stage: 2,
            level: 1,
            kind: hyperprof_sim::mmu::FaultKind::Translation,
            addr: 0x9000_0000,
            s1ptw: true,
        };
        let e = PinError::from(f);
        assert_eq!(e.fault(), Some(&f));
        assert!(e.source().is_some());
        assert!(e.to_string().contains("stage 2"), "{e}");
        assert!(PinError::Empty.fault().is_none());
        assert!(PinError::Empty.source().is_none());
    }
}
