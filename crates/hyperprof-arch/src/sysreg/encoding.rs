//! The `op0, op1, CRn, CRm, op2` encoding of an AArch64 system register
//! (Arm ARM DDI0487 C5.3, "A64 System instructions for ... system register
//! access": `MRS`/`MSR` operand `S<op0>_<op1>_C<n>_C<m>_<op2>`).

use core::fmt;

/// A system register encoding: `op0` (2 bits), `op1` (3 bits), `CRn`
/// (4 bits), `CRm` (4 bits), `op2` (3 bits), as in the `MRS`/`MSR`
/// instruction encodings (Arm ARM C5.3) and in the ISS of an
/// `EC == 0x18` trap.
///
/// Displays in the generic assembler form `S3_0_C9_C9_0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Encoding {
    op0: u8,
    op1: u8,
    crn: u8,
    crm: u8,
    op2: u8,
}

impl Encoding {
    /// Builds an encoding. Each operand is truncated to its architectural
    /// width (op0: 2 bits, op1: 3, CRn: 4, CRm: 4, op2: 3).
    pub const fn new(op0: u8, op1: u8, crn: u8, crm: u8, op2: u8) -> Encoding {
        Encoding {
            op0: op0 & 0x3,
            op1: op1 & 0x7,
            crn: crn & 0xF,
            crm: crm & 0xF,
            op2: op2 & 0x7,
        }
    }

    /// `op0`.
    pub const fn op0(self) -> u8 {
        self.op0
    }

    /// `op1`.
    pub const fn op1(self) -> u8 {
        self.op1
    }

    /// `CRn`.
    pub const fn crn(self) -> u8 {
        self.crn
    }

    /// `CRm`.
    pub const fn crm(self) -> u8 {
        self.crm
    }

    /// `op2`.
    pub const fn op2(self) -> u8 {
        self.op2
    }

    /// Packs the encoding into 16 bits: `op0[15:14] op1[13:11] CRn[10:7]
    /// CRm[6:3] op2[2:0]`. Ordering of packed values equals the ordering of
    /// encodings. Handy as a compact table key.
    pub const fn pack(self) -> u16 {
        ((self.op0 as u16) << 14)
            | ((self.op1 as u16) << 11)
            | ((self.crn as u16) << 7)
            | ((self.crm as u16) << 3)
            | (self.op2 as u16)
    }

    /// Inverse of [`Encoding::pack`]; every `u16` is a valid packed
    /// encoding.
    pub const fn unpack(v: u16) -> Encoding {
        Encoding::new(
            (v >> 14) as u8,
            (v >> 11) as u8,
            (v >> 7) as u8,
            (v >> 3) as u8,
            v as u8,
        )
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "S{}_{}_C{}_C{}_{}",
            self.op0, self.op1, self.crn, self.crm, self.op2
        )
    }
}

#[cfg(test)]
mod tests {
    use super::Encoding;
    use std::format;

    #[test]
    fn display_generic_form() {
        assert_eq!(format!("{}", Encoding::new(3, 0, 9, 9, 0)), "S3_0_C9_C9_0");
        assert_eq!(
            format!("{}", Encoding::new(3, 3, 14, 15, 7)),
            "S3_3_C14_C15_7"
        );
    }

    #[test]
    fn new_truncates_operands() {
        let e = Encoding::new(0xFF, 0xFF, 0xFF, 0xFF, 0xFF);
        assert_eq!(
            (e.op0(), e.op1(), e.crn(), e.crm(), e.op2()),
            (3, 7, 15, 15, 7)
        );
    }

    #[test]
    fn pack_unpack_roundtrip_all() {
        for v in 0..=u16::MAX {
            assert_eq!(Encoding::unpack(v).pack(), v);
        }
        let e = Encoding::new(3, 4, 1, 1, 1);
        assert_eq!(Encoding::unpack(e.pack()), e);
    }

    #[test]
    fn pack_preserves_order() {
        let a = Encoding::new(3, 0, 9, 10, 7);
        let b = Encoding::new(3, 3, 9, 12, 0);
        assert!(a < b);
        assert!(a.pack() < b.pack());
    }
}
