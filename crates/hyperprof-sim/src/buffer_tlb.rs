//! The SPE unit's own translation cache: the walks it made for the
//! profiling buffer, kept as a TLB keeps them.
//!
//! As any TLB entry (Arm ARM D8.16), a cached buffer translation is tagged
//! with the context it was walked in, not with the tables it came from:
//! the owning translation regime, the VMID (for the EL1&0 regime, the
//! VMID of VTTBR_EL2 whether or not HCR_EL2.VM enables stage 2) and the
//! ASID of the TTBR. Writing a TTBR, VTTBR_EL2 or MDCR_EL2 does not flush
//! it; only TLB maintenance does (or a replacement). So a walk made with a
//! mix of registers that belongs to no context (the guest's VMID with the
//! host's stage 1, or with stage 2 off) leaves an entry that the context
//! owning the tag later uses: the seeds' reason to disable the buffer
//! before the owning regime or its tables change ("to avoid the wrong
//! translation table entries being cached while KVM restores the guest
//! context", seed 000).
//!
//! Only successful walks are cached (a fault is never cached); entries are
//! 4 KiB pages with the final physical address (stage 1 and stage 2
//! combined, as a combined TLB entry).

use hyperprof_arch::ExceptionLevel;

use crate::memory::PAGE_SIZE;

/// Entries the cache holds (replaced round robin).
pub const BUFFER_TLB_ENTRIES: usize = 8;

/// The context a buffer translation was walked in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TlbTag {
    /// The owning Exception level (EL1: the EL1&0 regime; EL2: the EL2 or
    /// EL2&0 regime).
    pub owner: ExceptionLevel,
    /// VTTBR_EL2.VMID for the EL1&0 regime; 0 for EL2's.
    pub vmid: u16,
    /// The ASID of the owning regime's TTBR0 (bits [63:48]).
    pub asid: u16,
}

impl TlbTag {
    /// The tag of a walk by an `owner`-owned buffer with the given TTBR0 of
    /// that regime and VTTBR_EL2.
    pub fn new(owner: ExceptionLevel, ttbr0: u64, vttbr_el2: u64) -> TlbTag {
        TlbTag {
            owner,
            vmid: if owner == ExceptionLevel::EL2 {
                0
            } else {
                (vttbr_el2 >> 48) as u16
            },
            asid: (ttbr0 >> 48) as u16,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    tag: TlbTag,
    va_page: u64,
    pa_page: u64,
}

/// What the cache did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BufferTlbStats {
    /// Translations answered by an entry.
    pub hits: u64,
    /// Successful walks cached.
    pub fills: u64,
    /// TLB maintenance operations that reached the cache.
    pub invalidations: u64,
}

/// The unit's translation cache.
#[derive(Clone, Debug, Default)]
pub struct BufferTlb {
    entries: [Option<Entry>; BUFFER_TLB_ENTRIES],
    next: usize,
    stats: BufferTlbStats,
}

impl BufferTlb {
    /// The physical address of `va` from an entry of context `tag`, if one
    /// is cached (counted as a hit).
    pub fn lookup(&mut self, tag: TlbTag, va: u64) -> Option<u64> {
        let page = va & !(PAGE_SIZE - 1);
        let e = self
            .entries
            .iter()
            .flatten()
            .find(|e| e.tag == tag && e.va_page == page)?;
        self.stats.hits += 1;
        Some(e.pa_page | (va & (PAGE_SIZE - 1)))
    }

    /// Caches a successful walk of `va` to `pa` in context `tag`.
    pub fn fill(&mut self, tag: TlbTag, va: u64, pa: u64) {
        let entry = Entry {
            tag,
            va_page: va & !(PAGE_SIZE - 1),
            pa_page: pa & !(PAGE_SIZE - 1),
        };
        let slot = match self
            .entries
            .iter()
            .position(|e| e.is_some_and(|e| e.tag == tag && e.va_page == entry.va_page))
        {
            Some(i) => i,
            None => {
                let i = self.next;
                self.next = (self.next + 1) % BUFFER_TLB_ENTRIES;
                i
            }
        };
        self.entries[slot] = Some(entry);
        self.stats.fills += 1;
    }

    /// TLB maintenance: drops every entry of the EL1&0 regime tagged with
    /// `vmid` (`TLBI VMALLS12E1` for that VMID), or with `None` every entry.
    pub fn invalidate(&mut self, vmid: Option<u16>) {
        for e in &mut self.entries {
            let hit = e.is_some_and(|e| {
                vmid.is_none_or(|v| e.tag.owner != ExceptionLevel::EL2 && e.tag.vmid == v)
            });
            if hit {
                *e = None;
            }
        }
        self.stats.invalidations += 1;
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.entries.iter().flatten().count()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What the cache did so far.
    pub fn stats(&self) -> &BufferTlbStats {
        &self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EL1: ExceptionLevel = ExceptionLevel::EL1;
    const EL2: ExceptionLevel = ExceptionLevel::EL2;

    #[test]
    fn tags_take_vmid_only_for_el1_and_asid_from_the_ttbr() {
        let t = TlbTag::new(EL1, 3 << 48 | 0x4000, 7 << 48 | 0x9000);
        assert_eq!((t.vmid, t.asid), (7, 3));
        let t = TlbTag::new(EL2, 5 << 48, 7 << 48);
        assert_eq!((t.vmid, t.asid), (0, 5));
    }

    #[test]
    fn an_entry_answers_only_its_own_context_and_page() {
        let mut tlb = BufferTlb::default();
        let guest = TlbTag::new(EL1, 0, 1 << 48);
        let other = TlbTag::new(EL1, 0, 2 << 48);
        let host = TlbTag::new(EL2, 0, 1 << 48);
        tlb.fill(guest, 0x40_0123, 0x8800_0fff);
        assert_eq!(tlb.lookup(guest, 0x40_0abc), Some(0x8800_0abc));
        assert_eq!(tlb.lookup(other, 0x40_0abc), None);
        assert_eq!(tlb.lookup(host, 0x40_0abc), None);
        assert_eq!(tlb.lookup(guest, 0x40_1000), None);
        assert_eq!(tlb.stats().hits, 1);
    }

    #[test]
    fn a_refill_replaces_in_place_and_capacity_is_bounded() {
        let mut tlb = BufferTlb::default();
        let t = TlbTag::new(EL1, 0, 1 << 48);
        tlb.fill(t, 0x1000, 0xA000);
        tlb.fill(t, 0x1000, 0xB000);
        assert_eq!(tlb.len(), 1);
        assert_eq!(tlb.lookup(t, 0x1010), Some(0xB010));
        for i in 0..(BUFFER_TLB_ENTRIES as u64 + 3) {
            tlb.fill(t, 0x10_0000 + i * PAGE_SIZE, i * PAGE_SIZE);
        }
        assert_eq!(tlb.len(), BUFFER_TLB_ENTRIES);
        assert_eq!(tlb.lookup(t, 0x10_0000), None, "the oldest was replaced");
    }

    #[test]
    fn invalidation_by_vmid_keeps_other_vms_and_el2() {
        let mut tlb = BufferTlb::default();
        let (g1, g2) = (TlbTag::new(EL1, 0, 1 << 48), TlbTag::new(EL1, 0, 2 << 48));
        let host = TlbTag::new(EL2, 0, 0);
        for t in [g1, g2, host] {
            tlb.fill(t, 0x1000, 0x2000);
        }
        tlb.invalidate(Some(1));
        assert_eq!(tlb.lookup(g1, 0x1000), None);
        assert_eq!(tlb.lookup(g2, 0x1000), Some(0x2000));
        assert_eq!(tlb.lookup(host, 0x1000), Some(0x2000));
        tlb.invalidate(None);
        assert!(tlb.is_empty());
        assert_eq!(tlb.stats().invalidations, 2);
    }
}
