//! Architected PMU events the machine counts (Arm ARM D12 "PMU events and
//! event numbers"), and per-event totals for spans of operations.

/// An event the machine can count, by its architected number.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Event {
    /// 0x0000 SW_INCR: software increment (writes of PMSWINC_EL0); never
    /// produced by operations.
    SW_INCR,
    /// 0x0003 L1D_CACHE_REFILL.
    L1D_CACHE_REFILL,
    /// 0x0004 L1D_CACHE.
    L1D_CACHE,
    /// 0x0005 L1D_TLB_REFILL.
    L1D_TLB_REFILL,
    /// 0x0006 LD_RETIRED.
    LD_RETIRED,
    /// 0x0007 ST_RETIRED.
    ST_RETIRED,
    /// 0x0008 INST_RETIRED.
    INST_RETIRED,
    /// 0x0010 BR_MIS_PRED.
    BR_MIS_PRED,
    /// 0x0011 CPU_CYCLES.
    CPU_CYCLES,
    /// 0x0012 BR_PRED.
    BR_PRED,
    /// 0x0013 MEM_ACCESS.
    MEM_ACCESS,
    /// 0x0016 L2D_CACHE: an access that reached the L2 (an L1 refill).
    L2D_CACHE,
    /// 0x0017 L2D_CACHE_REFILL: an L2 access that went beyond it (to the
    /// last-level cache).
    L2D_CACHE_REFILL,
    /// 0x001B INST_SPEC.
    INST_SPEC,
    /// 0x0021 BR_RETIRED.
    BR_RETIRED,
    /// 0x0022 BR_MIS_PRED_RETIRED.
    BR_MIS_PRED_RETIRED,
    /// 0x0023 STALL_FRONTEND.
    STALL_FRONTEND,
    /// 0x0024 STALL_BACKEND.
    STALL_BACKEND,
    /// 0x0025 L1D_TLB.
    L1D_TLB,
    /// 0x0037 LL_CACHE_MISS_RD.
    LL_CACHE_MISS_RD,
}

/// Number of [`Event`] variants.
pub const EVENT_COUNT: usize = 20;

/// Every event, in declaration order.
pub const ALL_EVENTS: [Event; EVENT_COUNT] = [
    Event::SW_INCR,
    Event::L1D_CACHE_REFILL,
    Event::L1D_CACHE,
    Event::L1D_TLB_REFILL,
    Event::LD_RETIRED,
    Event::ST_RETIRED,
    Event::INST_RETIRED,
    Event::BR_MIS_PRED,
    Event::CPU_CYCLES,
    Event::BR_PRED,
    Event::MEM_ACCESS,
    Event::L2D_CACHE,
    Event::L2D_CACHE_REFILL,
    Event::INST_SPEC,
    Event::BR_RETIRED,
    Event::BR_MIS_PRED_RETIRED,
    Event::STALL_FRONTEND,
    Event::STALL_BACKEND,
    Event::L1D_TLB,
    Event::LL_CACHE_MISS_RD,
];

/// The CHAIN event number: an odd counter counts overflows of the even one.
pub const CHAIN: u16 = 0x1E;

impl Event {
    /// The architected event number.
    pub const fn number(self) -> u16 {
        match self {
            Event::SW_INCR => 0x00,
            Event::L1D_CACHE_REFILL => 0x03,
            Event::L1D_CACHE => 0x04,
            Event::L1D_TLB_REFILL => 0x05,
            Event::LD_RETIRED => 0x06,
            Event::ST_RETIRED => 0x07,
            Event::INST_RETIRED => 0x08,
            Event::BR_MIS_PRED => 0x10,
            Event::CPU_CYCLES => 0x11,
            Event::BR_PRED => 0x12,
            Event::MEM_ACCESS => 0x13,
            Event::L2D_CACHE => 0x16,
            Event::L2D_CACHE_REFILL => 0x17,
            Event::INST_SPEC => 0x1B,
            Event::BR_RETIRED => 0x21,
            Event::BR_MIS_PRED_RETIRED => 0x22,
            Event::STALL_FRONTEND => 0x23,
            Event::STALL_BACKEND => 0x24,
            Event::L1D_TLB => 0x25,
            Event::LL_CACHE_MISS_RD => 0x37,
        }
    }

    /// The event with architected number `n`, if the machine counts it.
    pub fn from_number(n: u16) -> Option<Event> {
        ALL_EVENTS.iter().copied().find(|e| e.number() == n)
    }

    /// Index into [`EventCounts`].
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// Totals per event over a span of operations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventCounts(pub [u64; EVENT_COUNT]);

impl EventCounts {
    /// The total for `e`.
    #[inline]
    pub fn get(&self, e: Event) -> u64 {
        self.0[e.index()]
    }
    /// Adds `n` to `e`.
    #[inline]
    pub fn add(&mut self, e: Event, n: u64) {
        self.0[e.index()] += n;
    }
    /// Adds every total of `other`.
    #[inline]
    pub fn add_all(&mut self, other: &EventCounts) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a += b;
        }
    }
    /// Adds `k` times every total of `other`.
    #[inline]
    pub fn add_scaled(&mut self, other: &EventCounts, k: u64) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a += b * k;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_distinct_and_round_trip() {
        for (i, e) in ALL_EVENTS.iter().enumerate() {
            assert_eq!(e.index(), i);
            assert_eq!(Event::from_number(e.number()), Some(*e));
        }
        assert_eq!(Event::from_number(CHAIN), None);
        assert_eq!(Event::from_number(0xFFFF), None);
    }
}
