//! Counting: spans of machine events, software increments, overflow and
//! CHAIN (Arm ARM D12 "Performance Monitors Extension", pseudocode
//! `CountPMUEvents()`, `IncrementEventCounter()`, `PMUEvent()`).

use hyperprof_arch::ExceptionLevel;

use super::{Pmu, Source, CYCLE_BIT, LOW32};
use crate::event::{Event, EventCounts};

/// Bits of the event counters in a counter bitmap.
const EVENT_BITS: u64 = hyperprof_arch::pm_counter_bits::P.mask();

/// `(v + d)` on a 64-bit counter that overflows at 64 bits (`wide`) or at 32
/// bits (a carry out of bit 31): the new value and the number of overflows.
/// A span can overflow a counter many times; every one is counted.
fn add(v: u64, d: u64, wide: bool) -> (u64, u64) {
    let new = v.wrapping_add(d);
    let overflows = if wide {
        (u128::from(v) + u128::from(d)) >> 64
    } else {
        (u128::from(v & LOW32) + u128::from(d)) >> 32
    };
    // At most 2^32 + 1 overflows (32-bit) or 1 (64-bit): fits.
    (new, u64::try_from(overflows).unwrap_or(u64::MAX))
}

/// How many more increments make a counter holding `v` overflow: in
/// `1..=2^32` at 32 bits; `2^64 - v` at 64 bits, reported as `u64::MAX`
/// when that is 2^64 (`v == 0`).
fn until_overflow(v: u64, wide: bool) -> u64 {
    if wide {
        if v == 0 {
            u64::MAX
        } else {
            v.wrapping_neg()
        }
    } else {
        (1u64 << 32) - (v & LOW32)
    }
}

/// Index of the effective configuration's per-EL tables, `None` for an
/// Exception level the machine does not have.
fn el_slot(pmu: &Pmu, el: ExceptionLevel) -> Option<usize> {
    match el {
        ExceptionLevel::EL0 => Some(0),
        ExceptionLevel::EL1 => Some(1),
        ExceptionLevel::EL2 if pmu.cfg.el2_implemented => Some(2),
        _ => None,
    }
}

impl Pmu {
    /// Adds a span of operations executed at `el`, whose events are
    /// `counts`, to every counter that counts at `el` under the effective
    /// configuration (module documentation, "Strict mode"):
    ///
    /// - enabled: PMCNTENSET_EL0 bit and PMCR_EL0.E (counters below
    ///   MDCR_EL2.HPMN and the cycle counter) or MDCR_EL2.HPME (the others);
    /// - not prohibited: at EL2, MDCR_EL2.HPMD stops the counters below HPMN
    ///   (FEAT_PMUv3p1), and stops the cycle counter when PMCR_EL0.DP is 1;
    ///   MDCR_EL2.HCCD stops the cycle counter (FEAT_PMUv3p5);
    /// - not filtered: `PMEVTYPER<n>_EL0`/PMCCFILTR_EL0 U excludes EL0, P
    ///   excludes EL1, EL2 counts only with NSH = 1.
    ///
    /// An event counter counts `counts` of the [`Event`] its evtCount names
    /// (SW_INCR only through PMSWINC_EL0, events the machine does not have
    /// never); PMCCNTR_EL0 counts CPU_CYCLES. Each overflow (at 64 bits with
    /// PMCR_EL0.LP below HPMN or MDCR_EL2.HLP above, FEAT_PMUv3p5; PMCR_EL0.LC
    /// for the cycle counter; at 32 bits otherwise) sets the counter's
    /// PMOVSSET_EL0 bit, and every overflow of an even counter at 32 bits is
    /// one CHAIN event for the odd counter above it.
    pub fn count(&mut self, counts: &EventCounts, el: ExceptionLevel) {
        let Some(slot) = el_slot(self, el) else {
            return;
        };
        let active = self.eff.active[slot];
        if active == 0 {
            return;
        }
        self.advance(active, |_, src| match src {
            Source::Event(e) => counts.get(e),
            _ => 0,
        });
        if active & CYCLE_BIT != 0 {
            let d = counts.get(Event::CPU_CYCLES);
            let (new, overflows) = add(self.ccntr, d, self.eff.cycle_wide);
            self.ccntr = new;
            if overflows > 0 {
                self.ovs |= CYCLE_BIT;
            }
        }
    }

    /// PMSWINC_EL0 write of `bits` (already limited to the counters the
    /// accessor can see) at `el`: +1 on each selected counter whose event is
    /// SW_INCR and that counts at `el` (effective configuration), with
    /// overflow and CHAIN as in [`Pmu::count`].
    pub(super) fn software_increment(&mut self, bits: u64, el: ExceptionLevel) {
        let Some(slot) = el_slot(self, el) else {
            return;
        };
        let active = self.eff.active[slot] & EVENT_BITS;
        if active == 0 {
            return;
        }
        self.advance(active, |i, src| {
            u64::from(src == Source::SwIncr && bits & (1 << i) != 0)
        });
    }

    /// Adds to each active event counter `i`, in ascending order, what
    /// `delta(i, source)` gives, and to CHAIN counters the overflows of the
    /// even counter below.
    fn advance(&mut self, active: u64, delta: impl Fn(usize, Source) -> u64) {
        let mut bits = active & EVENT_BITS;
        // (odd counter, CHAIN events for it) from the even counter below.
        let mut carry: (usize, u64) = (usize::MAX, 0);
        while bits != 0 {
            let i = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let src = self.eff.src.get(i).copied().unwrap_or(Source::Nothing);
            let d = match src {
                Source::Chain if i % 2 == 1 && carry.0 == i => carry.1,
                Source::Chain => 0,
                _ => delta(i, src),
            };
            if d == 0 {
                continue;
            }
            let wide = self.eff.wide & (1 << i) != 0;
            let Some(c) = self.evcntr.get_mut(i) else {
                continue;
            };
            let (new, overflows) = add(*c, d, wide);
            *c = if self.cfg.version.has_lp() {
                new
            } else {
                new & LOW32
            };
            if overflows > 0 {
                self.ovs |= 1 << i;
                if self.eff.chains & (1 << i) != 0 {
                    carry = (i + 1, overflows);
                }
            }
        }
    }

    /// For every counter that counts a machine event at `el` under the
    /// effective configuration: the event and how many more of it make the
    /// counter overflow (the PE can stop exactly at the overflowing
    /// operation). Event counters come in ascending order, the cycle
    /// counter (CPU_CYCLES) last; an event may appear more than once (take
    /// the minimum per event).
    ///
    /// A CHAIN counter is reported with the event of the even counter below
    /// it and the number of those events until the odd counter itself
    /// overflows (`r_even + (r_odd - 1) * 2^32`); the even counter is
    /// reported on its own too, so the earliest overflow is always listed.
    /// SW_INCR counters and events the machine does not produce are not
    /// listed. A distance of 2^64 is reported as `u64::MAX`.
    ///
    /// Collects [`Pmu::for_each_until_overflow`]; the PE's run loop uses
    /// that directly so that the hot path does not allocate.
    pub fn events_until_overflow(&self, el: ExceptionLevel) -> Vec<(Event, u64)> {
        let mut out = Vec::new();
        self.for_each_until_overflow(el, |e, k| out.push((e, k)));
        out
    }

    /// Calls `f(event, distance)` for each entry that
    /// [`Pmu::events_until_overflow`] lists, in the same order.
    pub fn for_each_until_overflow(&self, el: ExceptionLevel, mut f: impl FnMut(Event, u64)) {
        let Some(slot) = el_slot(self, el) else {
            return;
        };
        let active = self.eff.active[slot];
        let mut bits = active & EVENT_BITS;
        while bits != 0 {
            let i = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let value = self.evcntr.get(i).copied().unwrap_or(0);
            match self.eff.src.get(i).copied().unwrap_or(Source::Nothing) {
                Source::Event(e) => {
                    f(e, until_overflow(value, self.eff.wide & (1 << i) != 0));
                }
                Source::Chain if i % 2 == 1 => {
                    let j = i - 1;
                    let even_counts = active & (1 << j) != 0 && self.eff.chains & (1 << j) != 0;
                    let even_src = self.eff.src.get(j).copied().unwrap_or(Source::Nothing);
                    if let (true, Source::Event(e)) = (even_counts, even_src) {
                        let even_value = self.evcntr.get(j).copied().unwrap_or(0);
                        let first = u128::from(until_overflow(even_value, false));
                        let more = u128::from(until_overflow(value, false) - 1) << 32;
                        let total = u64::try_from(first + more).unwrap_or(u64::MAX);
                        f(e, total);
                    }
                }
                _ => {}
            }
        }
        if active & CYCLE_BIT != 0 {
            f(
                Event::CPU_CYCLES,
                until_overflow(self.ccntr, self.eff.cycle_wide),
            );
        }
    }
}

#[cfg(test)]
mod arithmetic {
    use super::{add, until_overflow};

    #[test]
    fn add_counts_every_32_bit_overflow() {
        assert_eq!(add(0xFFFF_FFF0, 0x10, false), (0x1_0000_0000, 1));
        assert_eq!(add(0xFFFF_FFF0, 0xF, false), (0xFFFF_FFFF, 0));
        // Three carries out of bit 31 in one span.
        assert_eq!(add(0xFFFF_FFFF, 2 << 32 | 1, false).1, 3);
        // The upper half of a 64-bit storage counter does not matter.
        assert_eq!(add(0x7_FFFF_FFFF, 1, false), (0x8_0000_0000, 1));
        assert_eq!(add(u64::MAX, u64::MAX, false).1, 1 << 32);
    }

    #[test]
    fn add_at_64_bits() {
        assert_eq!(add(u64::MAX - 15, 16, true), (0, 1));
        assert_eq!(add(0xFFFF_FFF0, 0x10, true), (0x1_0000_0000, 0));
        assert_eq!(add(u64::MAX, u64::MAX, true), (u64::MAX - 1, 1));
    }

    #[test]
    fn distances() {
        assert_eq!(until_overflow(0xFFFF_FFF0, false), 16);
        assert_eq!(until_overflow(0, false), 1 << 32);
        assert_eq!(until_overflow(0x5_FFFF_FFFF, false), 1);
        assert_eq!(until_overflow(u64::MAX - 3, true), 4);
        assert_eq!(until_overflow(0, true), u64::MAX);
        for (v, wide) in [(17, false), (0xFFFF_FFFF, false), (u64::MAX - 9, true)] {
            let r = until_overflow(v, wide);
            assert_eq!(add(v, r - 1, wide).1, 0);
            assert_eq!(add(v, r, wide).1, 1);
        }
    }
}
