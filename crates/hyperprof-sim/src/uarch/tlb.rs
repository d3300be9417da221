//! The data TLB's timing: a set-associative cache of 4 KiB page
//! translations. Translation itself is done by the MMU model; this only
//! says whether the walk was needed and what it cost.

/// Size and cost of the TLB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlbConfig {
    /// Entries (a multiple of `ways` with a power-of-two set count).
    pub entries: u16,
    /// Associativity.
    pub ways: u16,
    /// Cycles a walk costs (the translation latency SPE reports).
    pub walk_latency: u16,
}

/// One core's data TLB.
#[derive(Clone, Debug)]
pub struct Tlb {
    cfg: TlbConfig,
    inner: super::cache::Cache,
}

impl Tlb {
    /// An empty TLB.
    pub fn new(cfg: TlbConfig) -> Tlb {
        let ways = cfg.ways.max(1);
        let sets = (u32::from(cfg.entries) / u32::from(ways))
            .max(1)
            .next_power_of_two();
        Tlb {
            cfg,
            inner: super::cache::Cache::new(super::cache::CacheGeometry {
                size: sets * u32::from(ways) * 4096,
                ways,
                line: 4096,
                latency: 0,
            }),
        }
    }

    /// Its configuration.
    pub fn config(&self) -> TlbConfig {
        self.cfg
    }

    /// Looks the page of `va` up; returns true when it had to be walked.
    #[inline]
    pub fn access(&mut self, va: u64) -> bool {
        let page = va >> 12;
        if self.inner.lookup(page).is_some() {
            return false;
        }
        self.inner.fill(page, super::cache::LineState::Shared);
        true
    }

    /// TLBI, or a change of translation regime: every entry goes.
    pub fn flush(&mut self) {
        self.inner.clear();
    }
}
