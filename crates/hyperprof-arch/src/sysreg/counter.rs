//! Index `n` of the PMUv3 event counter registers `PMEVCNTR<n>_EL0` and
//! `PMEVTYPER<n>_EL0` (Arm ARM D24.5, n = 0..30).

use core::fmt;

/// The index `n` of an event counter, `0 <= n <= 30` (Arm ARM
/// `PMEVCNTR<n>_EL0`, `PMEVTYPER<n>_EL0`). Index 31 is the cycle counter,
/// which has its own registers (`PMCCNTR_EL0`, `PMCCFILTR_EL0`), so it is not
/// an `EventCounter`.
///
/// Out-of-range indices cannot be represented, which keeps every
/// [`SysReg`](crate::SysReg) value a real register.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventCounter(u8);

impl EventCounter {
    /// Largest event counter index (30).
    pub const MAX: u8 = 30;

    /// Number of architected event counter indices (31).
    pub const COUNT: usize = 31;

    /// Returns the counter `n`, or `None` if `n > 30`.
    pub const fn new(n: u8) -> Option<EventCounter> {
        if n <= EventCounter::MAX {
            Some(EventCounter(n))
        } else {
            None
        }
    }

    /// The index `n`.
    pub const fn index(self) -> u8 {
        self.0
    }

    /// All counters `0..=30` in order.
    pub fn all() -> impl Iterator<Item = EventCounter> {
        (0..=EventCounter::MAX).map(EventCounter)
    }

    /// Crate-internal constructor for indices already known to be valid.
    pub(crate) const fn saturating(n: u8) -> EventCounter {
        // Callers pass loop indices bounded by MAX; keep the invariant even
        // if one did not.
        EventCounter(if n <= EventCounter::MAX {
            n
        } else {
            EventCounter::MAX
        })
    }
}

impl fmt::Display for EventCounter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::EventCounter;

    #[test]
    fn range_is_0_to_30() {
        assert_eq!(EventCounter::new(0).map(EventCounter::index), Some(0));
        assert_eq!(EventCounter::new(30).map(EventCounter::index), Some(30));
        assert_eq!(EventCounter::new(31), None);
        assert_eq!(EventCounter::new(255), None);
        assert_eq!(EventCounter::all().count(), EventCounter::COUNT);
        assert_eq!(
            EventCounter::all().last().map(EventCounter::index),
            Some(30)
        );
    }

    #[test]
    fn internal_constructor_keeps_invariant() {
        assert_eq!(EventCounter::saturating(40).index(), 30);
        assert_eq!(EventCounter::saturating(7).index(), 7);
    }
}
