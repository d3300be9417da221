//! The PMBIDR_EL1.MaxBuffSize codec (Arm ARM DDI0601 PMBIDR_EL1.MaxBuffSize,
//! bits \[47:32\]; ARM-FACTS §1; seeds/004).
//!
//! The 16-bit field is `RES[15:14] : E[13:9] : M[8:0]` (E is 5 bits, M is 9
//! bits) and stands for
//!
//! ```text
//! size = if E == 0 { M << 12 } else { (1 << (9 + E + 11)) | (M << (E + 11)) }
//! ```
//!
//! i.e. `M:Zeros(12)` for `E == 0` and `'1':M:Zeros(E + 11)` otherwise.
//! A size of 0 means "no limit". A size is representable only if some field
//! decodes to it exactly; [`encode`] returns that field or
//! [`NotRepresentable`].
//!
//! Laws (tested below): [`decode`] is strictly increasing on the 14-bit
//! field values `0..=0x3FFF`, so it is injective and [`encode`] is its exact
//! inverse on its image. The image is: 0, the multiples of 4 KiB below
//! 2 MiB, and for each `E` in 1..=31 the sizes in `[2^(20+E), 2^(21+E))` that
//! are multiples of `2^(E+11)` (the 9 bits after the leading one are free,
//! everything below them must be zero). Consecutive field values differ by
//! exactly one granule, so there are no gaps between exponents.

use core::fmt;

use crate::{pmbidr_el1, Field};

/// `E`, bits \[13:9\] of the MaxBuffSize field: exponent.
pub const E: Field = Field::bits(13, 9);
/// `M`, bits \[8:0\] of the MaxBuffSize field: mantissa.
pub const M: Field = Field::bits(8, 0);
/// Reserved bits \[15:14\] of the field (ignored by [`decode`], never set by
/// [`encode`]).
pub const RES: u16 = 0xC000;
/// Largest field value with the reserved bits clear.
pub const FIELD_MAX: u16 = 0x3FFF;
/// The largest representable size, `decode(FIELD_MAX)`
/// (`2^51 + 511 * 2^42` bytes).
pub const MAX_SIZE: u64 = decode(FIELD_MAX);

/// A size that no MaxBuffSize field value decodes to exactly (KVM answers
/// `EDOM` for it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotRepresentable {
    /// The rejected size in bytes.
    pub size: u64,
}

impl fmt::Display for NotRepresentable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "buffer size {:#x} cannot be represented in PMBIDR_EL1.MaxBuffSize",
            self.size
        )
    }
}

/// The size in bytes a MaxBuffSize field value stands for (0 = no limit).
/// The reserved bits \[15:14\] are ignored.
pub const fn decode(field: u16) -> u64 {
    let e = E.get(field as u64);
    let m = M.get(field as u64);
    if e == 0 {
        m << 12
    } else {
        (1 << (9 + e + 11)) | (m << (e + 11))
    }
}

/// The MaxBuffSize field value that decodes to exactly `size`, or
/// [`NotRepresentable`]. `encode(0) == Ok(0)` ("no limit").
pub const fn encode(size: u64) -> Result<u16, NotRepresentable> {
    if size < (1 << 21) {
        // E == 0: size = M:Zeros(12), M < 512.
        if size & 0xFFF != 0 {
            return Err(NotRepresentable { size });
        }
        return Ok((size >> 12) as u16);
    }
    // E >= 1: size = '1':M:Zeros(E + 11), leading one at bit 20 + E.
    let msb = 63 - size.leading_zeros() as u64;
    let e = msb - 20;
    if e > 31 {
        return Err(NotRepresentable { size });
    }
    let shift = e + 11;
    if size & ((1 << shift) - 1) != 0 {
        return Err(NotRepresentable { size });
    }
    let m = (size & !(1 << msb)) >> shift;
    Ok(((e << 9) | m) as u16)
}

/// The size a field stands for as a limit: `None` for 0 (no limit).
pub const fn limit(field: u16) -> Option<u64> {
    match decode(field) {
        0 => None,
        s => Some(s),
    }
}

/// The MaxBuffSize field of a whole PMBIDR_EL1 value.
pub const fn get(pmbidr: u64) -> u16 {
    pmbidr_el1::MaxBuffSize.get(pmbidr) as u16
}

/// `pmbidr` with its MaxBuffSize field replaced by `field`.
pub const fn set(pmbidr: u64, field: u16) -> u64 {
    pmbidr_el1::MaxBuffSize.set(pmbidr, field as u64)
}

/// The maximum buffer size in bytes advertised by a whole PMBIDR_EL1 value
/// (0 = no limit).
pub const fn size(pmbidr: u64) -> u64 {
    decode(get(pmbidr))
}

/// `pmbidr` advertising a maximum buffer size of `size` bytes, or
/// [`NotRepresentable`].
pub const fn with_size(pmbidr: u64, size: u64) -> Result<u64, NotRepresentable> {
    match encode(size) {
        Ok(f) => Ok(set(pmbidr, f)),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KIB: u64 = 1 << 10;
    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    /// The spacing between consecutive representable sizes at field `f`.
    fn granule(f: u16) -> u64 {
        let e = E.get(u64::from(f)).max(1);
        1 << (e + 11)
    }

    /// Independent statement of the image of `decode`.
    fn representable(size: u64) -> bool {
        if size < 2 * MIB {
            return size & (4096 - 1) == 0;
        }
        let msb = 63 - u64::from(size.leading_zeros());
        let granule: u64 = 1 << (msb - 9);
        size <= MAX_SIZE && size & (granule - 1) == 0
    }

    /// Some field decodes to `size` (binary search; relies on monotonicity,
    /// which `decode_strictly_increasing` checks).
    fn some_field_decodes_to(size: u64) -> bool {
        let (mut lo, mut hi) = (0u32, u32::from(FIELD_MAX) + 1);
        while lo < hi {
            let mid = (lo + hi) / 2;
            let d = decode(mid as u16);
            if d == size {
                return true;
            }
            if d < size {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        false
    }

    #[test]
    fn concrete_values() {
        assert_eq!(encode(0), Ok(0));
        assert_eq!(encode(4096), Ok(1));
        assert_eq!(encode(2 * MIB - 4 * KIB), Ok(511));
        assert_eq!(encode(2 * MIB), Ok(1 << 9));
        assert_eq!(encode(2 * MIB + 4 * KIB), Ok((1 << 9) | 1));
        assert_eq!(encode(4 * MIB), Ok(2 << 9));
        assert_eq!(encode(4 * GIB), Ok(12 << 9));
        assert_eq!(encode(0x2_0100_0000), Ok((13 << 9) | 1));
        assert_eq!(encode(1 << 51), Ok(31 << 9));
        assert_eq!(encode(MAX_SIZE), Ok(FIELD_MAX));
        for bad in [
            1,
            4095,
            4097,
            2 * MIB + KIB,
            4 * MIB + 4 * KIB, // granule is 8 KiB for E = 2
            0x2_0000_1000,     // 8 GiB + 4 KiB: granule is 16 MiB
            1 << 52,
            MAX_SIZE + (1 << 42),
            u64::MAX,
        ] {
            assert_eq!(encode(bad), Err(NotRepresentable { size: bad }), "{bad:#x}");
        }
        assert_eq!(decode(0), 0);
        assert_eq!(decode(1), 4096);
        assert_eq!(decode(1 << 9), 2 * MIB);
        assert_eq!(decode(12 << 9), 4 * GIB);
        assert_eq!(MAX_SIZE, (1 << 51) | (511 << 42));
    }

    #[test]
    fn reserved_bits_are_ignored() {
        assert_eq!(decode(RES | 5), decode(5));
        assert_eq!(decode(0xFFFF), MAX_SIZE);
    }

    #[test]
    fn encode_decode_exhaustive() {
        for f in 0..=FIELD_MAX {
            assert_eq!(encode(decode(f)), Ok(f), "{f:#x}");
        }
    }

    #[test]
    fn decode_strictly_increasing_by_one_granule() {
        for f in 0..FIELD_MAX {
            let (a, b) = (decode(f), decode(f + 1));
            assert!(a < b, "{f:#x}");
            assert_eq!(b - a, granule(f), "{f:#x}");
        }
        // Exponent boundaries line up: the first size of E is the power of two
        // one granule past the last size of E - 1.
        for e in 1..=31u16 {
            assert_eq!(decode(e << 9), 1 << (20 + e));
        }
    }

    #[test]
    fn pmbidr_helpers() {
        let pmbidr = 0x0000_0000_0000_0036; // EA/F/P/Align bits set
        let with = with_size(pmbidr, 4 * GIB).unwrap();
        assert_eq!(with & !pmbidr_el1::MaxBuffSize.mask(), pmbidr);
        assert_eq!(get(with), 12 << 9);
        assert_eq!(pmbidr_el1::MaxBuffSize_E.get(with), 12);
        assert_eq!(pmbidr_el1::MaxBuffSize_M.get(with), 0);
        assert_eq!(size(with), 4 * GIB);
        assert_eq!(
            with_size(pmbidr, 2 * MIB + KIB),
            Err(NotRepresentable {
                size: 2 * MIB + KIB
            })
        );
        assert_eq!(size(set(u64::MAX, 0)), 0);
        assert_eq!(limit(0), None);
        assert_eq!(limit(1), Some(4096));
    }

    #[test]
    fn error_display() {
        use std::format;
        assert_eq!(
            format!("{}", NotRepresentable { size: 0x1001 }),
            "buffer size 0x1001 cannot be represented in PMBIDR_EL1.MaxBuffSize"
        );
    }

    proptest! {
        #[test]
        fn prop_field_roundtrip(f in 0u16..=FIELD_MAX) {
            prop_assert_eq!(encode(decode(f)), Ok(f));
        }

        #[test]
        fn prop_decode_ignores_res(f in any::<u16>()) {
            prop_assert_eq!(decode(f), decode(f & FIELD_MAX));
        }

        #[test]
        fn prop_encode_ok_iff_exact(s in any::<u64>()) {
            match encode(s) {
                Ok(f) => {
                    prop_assert!(f <= FIELD_MAX);
                    prop_assert_eq!(decode(f), s);
                }
                Err(e) => {
                    prop_assert_eq!(e.size, s);
                    prop_assert!(!some_field_decodes_to(s));
                }
            }
            prop_assert_eq!(encode(s).is_ok(), representable(s));
        }

        #[test]
        fn prop_near_representable(f in 0u16..=FIELD_MAX, d in -8192i64..=8192) {
            // Sizes close to representable ones exercise both outcomes.
            let s = decode(f).wrapping_add_signed(d);
            let ok = encode(s).is_ok();
            prop_assert_eq!(ok, representable(s));
            if let Ok(g) = encode(s) {
                prop_assert_eq!(decode(g), s);
            }
        }

        #[test]
        fn prop_one_extra_bit(f in 0u16..=FIELD_MAX, k in 0u32..53) {
            // A representable size with one more bit set: representable only
            // if the bit is within the mantissa window (or already set).
            let s = decode(f) | (1 << k);
            prop_assert_eq!(encode(s).is_ok(), representable(s));
            match encode(s) {
                Ok(g) => prop_assert_eq!(decode(g), s),
                Err(e) => prop_assert!(!some_field_decodes_to(e.size)),
            }
        }

        #[test]
        fn prop_structured_sizes(raw in any::<u64>(), sh in 0u32..64, k in 0u32..52) {
            // Sizes of every magnitude with many trailing zeros, so that both
            // outcomes are common (plain random u64 are almost never Ok).
            let s = (raw >> sh) & !((1u64 << k) - 1);
            prop_assert_eq!(encode(s).is_ok(), representable(s));
            match encode(s) {
                Ok(g) => prop_assert_eq!(decode(g), s),
                Err(e) => prop_assert!(!some_field_decodes_to(e.size)),
            }
        }

        #[test]
        fn prop_decode_monotone(a in 0u16..=FIELD_MAX, b in 0u16..=FIELD_MAX) {
            prop_assert_eq!(a.cmp(&b), decode(a).cmp(&decode(b)));
        }

        #[test]
        fn prop_with_size_preserves_other_bits(pmbidr in any::<u64>(), f in 0u16..=FIELD_MAX) {
            let s = decode(f);
            let v = with_size(pmbidr, s).unwrap();
            prop_assert_eq!(v & !pmbidr_el1::MaxBuffSize.mask(), pmbidr & !pmbidr_el1::MaxBuffSize.mask());
            prop_assert_eq!(size(v), s);
        }
    }
}
