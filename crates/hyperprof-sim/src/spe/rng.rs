//! The unit's pseudo-random source for `SPEGetRandomInterval()` (Arm ARM
//! J1.1.1.93: "a random or pseudo-random byte for resetting COUNT"). The
//! architecture leaves the generator IMPLEMENTATION DEFINED; the model uses
//! SplitMix64 (a 64-bit counter passed through an invertible mixing
//! function) so that a seed fixes every perturbation.

/// SplitMix64 generator state. Cloning it gives a generator that produces
/// the same sequence, which is how the unit looks ahead without consuming
/// values (`Spe::ops_to_sample`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator whose sequence is fixed by `seed`.
    pub(crate) const fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The next random byte (the top byte of the next 64-bit value).
    pub(crate) fn next_byte(&mut self) -> u8 {
        (self.next_u64() >> 56) as u8
    }
}

#[cfg(test)]
mod tests {
    use super::SplitMix64;

    #[test]
    fn same_seed_same_sequence_and_clone_looks_ahead() {
        let mut a = SplitMix64::new(42);
        let mut b = SplitMix64::new(42);
        let ahead = a.clone().next_byte();
        assert_eq!(a.next_byte(), ahead);
        b.next_byte();
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        let mut c = SplitMix64::new(43);
        let mut a2 = SplitMix64::new(42);
        assert_ne!(a2.next_u64(), c.next_u64());
    }

    #[test]
    fn bytes_cover_the_range() {
        let mut g = SplitMix64::new(7);
        let mut seen = [false; 256];
        for _ in 0..10_000 {
            seen[g.next_byte() as usize] = true;
        }
        assert!(seen.iter().all(|&s| s), "every byte value appears");
    }
}
