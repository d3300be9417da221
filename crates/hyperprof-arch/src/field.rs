//! Bit fields of 64-bit system registers.
//!
//! The Arm ARM (DDI0487, "Registers" chapters D23/D24 and the DDI0601 register
//! XML) describes every system register field as `NAME, bits [hi:lo]` or
//! `NAME, bit [n]`. [`Field`] is that description as a value, usable in `const`
//! context so that per-register modules can declare their layout as constants.

/// A contiguous field `[lsb + width - 1 : lsb]` of a 64-bit register value,
/// as written `bits [hi:lo]` in the Arm ARM register descriptions.
///
/// Invariant: `1 <= width` and `lsb + width <= 64` (checked by the
/// constructors).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Field {
    lsb: u8,
    width: u8,
}

impl Field {
    /// The single-bit field `bit [n]`.
    ///
    /// # Panics
    ///
    /// If `n > 63`. In a `const` item this is a compile-time error.
    pub const fn bit(n: u8) -> Field {
        assert!(n < 64, "bit index out of range");
        Field { lsb: n, width: 1 }
    }

    /// The field `bits [hi:lo]` (both ends inclusive, as in the Arm ARM).
    ///
    /// # Panics
    ///
    /// If `hi < lo` or `hi > 63`. In a `const` item this is a compile-time
    /// error; use [`Field::try_bits`] for run-time values.
    pub const fn bits(hi: u8, lo: u8) -> Field {
        match Field::try_bits(hi, lo) {
            Some(f) => f,
            None => panic!("invalid bit range"),
        }
    }

    /// Like [`Field::bits`] but returns `None` instead of panicking when
    /// `hi < lo` or `hi > 63`.
    pub const fn try_bits(hi: u8, lo: u8) -> Option<Field> {
        if hi < lo || hi > 63 {
            None
        } else {
            Some(Field {
                lsb: lo,
                width: hi - lo + 1,
            })
        }
    }

    /// Position of the least significant bit (`lo` in `bits [hi:lo]`).
    pub const fn lsb(self) -> u8 {
        self.lsb
    }

    /// Position of the most significant bit (`hi` in `bits [hi:lo]`).
    pub const fn msb(self) -> u8 {
        self.lsb + self.width - 1
    }

    /// Number of bits in the field.
    pub const fn width(self) -> u8 {
        self.width
    }

    /// The largest value the field can hold (`2^width - 1`).
    pub const fn max(self) -> u64 {
        u64::MAX >> (64 - self.width as u32)
    }

    /// The field's bits in place within the register (`GENMASK(hi, lo)`).
    pub const fn mask(self) -> u64 {
        self.max() << self.lsb
    }

    /// Extracts the field from a register value, shifted down to bit 0.
    pub const fn get(self, v: u64) -> u64 {
        (v & self.mask()) >> self.lsb
    }

    /// Returns `v` with the field replaced by `x`. Bits of `x` above the
    /// field width are discarded (the value is truncated, never spills into
    /// neighbouring fields).
    pub const fn set(self, v: u64, x: u64) -> u64 {
        (v & !self.mask()) | ((x << self.lsb) & self.mask())
    }

    /// The register value that has `x` in this field and zeros elsewhere
    /// (`FIELD_PREP`). `x` is truncated to the field width.
    pub const fn value(self, x: u64) -> u64 {
        self.set(0, x)
    }

    /// Returns `v` with every bit of the field cleared.
    pub const fn clear(self, v: u64) -> u64 {
        v & !self.mask()
    }

    /// True when any bit of the field is set in `v` (for a one-bit field:
    /// the bit is 1).
    pub const fn is_set(self, v: u64) -> bool {
        v & self.mask() != 0
    }

    /// True when `x` fits in the field without truncation.
    pub const fn fits(self, x: u64) -> bool {
        x <= self.max()
    }
}

#[cfg(test)]
mod tests {
    use super::Field;

    const PCT: Field = Field::bits(7, 6);
    const E: Field = Field::bit(0);
    const ALL: Field = Field::bits(63, 0);
    const TOP: Field = Field::bit(63);
    // Usable in const context all the way through.
    const PCT_PHYS: u64 = PCT.value(0b01);
    const PCT_GET: u64 = PCT.get(0xC0);

    #[test]
    fn const_context_values() {
        assert_eq!(PCT_PHYS, 0x40);
        assert_eq!(PCT_GET, 0b11);
    }

    #[test]
    fn geometry() {
        assert_eq!(PCT.lsb(), 6);
        assert_eq!(PCT.msb(), 7);
        assert_eq!(PCT.width(), 2);
        assert_eq!(PCT.mask(), 0xC0);
        assert_eq!(PCT.max(), 3);
        assert_eq!(E.mask(), 1);
        assert_eq!(ALL.mask(), u64::MAX);
        assert_eq!(ALL.max(), u64::MAX);
        assert_eq!(TOP.mask(), 1 << 63);
        assert_eq!(Field::bits(47, 32).mask(), 0x0000_FFFF_0000_0000);
    }

    #[test]
    fn get_set_roundtrip() {
        let v = 0xFFFF_FFFF_FFFF_FFFF;
        assert_eq!(PCT.set(v, 0), 0xFFFF_FFFF_FFFF_FF3F);
        assert_eq!(PCT.get(PCT.set(v, 2)), 2);
        assert_eq!(ALL.set(0, 0x1234), 0x1234);
        assert_eq!(ALL.get(0xDEAD_BEEF), 0xDEAD_BEEF);
        assert_eq!(TOP.set(0, 1), 1 << 63);
        assert_eq!(TOP.get(1 << 63), 1);
    }

    #[test]
    fn set_truncates_to_width() {
        // 0b111 does not fit in two bits: only 0b11 is written and bit 8 stays clear.
        assert_eq!(PCT.set(0, 0b111), 0xC0);
        assert!(!PCT.fits(0b100));
        assert!(PCT.fits(0b11));
        assert_eq!(TOP.set(0, 0b10), 0);
    }

    #[test]
    fn is_set_and_clear() {
        assert!(E.is_set(1));
        assert!(!E.is_set(2));
        assert!(PCT.is_set(0x80));
        assert!(!PCT.is_set(0x3F));
        assert_eq!(PCT.clear(0xFF), 0x3F);
    }

    #[test]
    fn try_bits_rejects_bad_ranges() {
        assert_eq!(Field::try_bits(3, 4), None);
        assert_eq!(Field::try_bits(64, 0), None);
        assert_eq!(Field::try_bits(4, 4), Some(Field::bit(4)));
    }

    #[test]
    #[should_panic]
    fn bits_panics_on_reversed_range() {
        let hi = core::hint::black_box(1);
        let _ = Field::bits(hi, 2);
    }
}
