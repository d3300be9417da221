//! Feature levels advertised in ID_AA64DFR0_EL1 (Arm ARM D24.2,
//! ID_AA64DFR0_EL1.PMSVer and .PMUVer; ARM-FACTS §4).
//!
//! Both fields are 4-bit "unsigned" ID fields: a larger value implies the
//! features of every smaller defined value, except PMUVer `0xF`
//! (IMPLEMENTATION DEFINED, non-PMUv3 PMU), which is not comparable with the
//! PMUv3 levels. Field values without a name here stay representable
//! (`Future` / `Other`), so decoding never fails on a 4-bit value.

use core::cmp::Ordering;
use core::fmt;
use core::hash::{Hash, Hasher};

use crate::id_aa64dfr0_el1;

/// A value that does not fit in a 4-bit ID register field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldOutOfRange {
    /// The rejected value.
    pub value: u64,
}

impl fmt::Display for FieldOutOfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ID field value {:#x} does not fit in 4 bits", self.value)
    }
}

/// ID_AA64DFR0_EL1.PMSVer, the Statistical Profiling Extension version (Arm
/// ARM D24.2; values: 0 none, 1 FEAT_SPE, 2 FEAT_SPEv1p1, 3 FEAT_SPEv1p2,
/// 4 FEAT_SPEv1p3, 5 FEAT_SPEv1p4, 6 FEAT_SPEv1p5).
///
/// Ordered by field value, so "at least v1p2" is `v >= PmsVer::V1p2`.
#[derive(Clone, Copy, Debug)]
pub enum PmsVer {
    /// `0b0000`: SPE not implemented.
    NotImplemented,
    /// `0b0001`: FEAT_SPE.
    V1p0,
    /// `0b0010`: FEAT_SPEv1p1.
    V1p1,
    /// `0b0011`: FEAT_SPEv1p2 (PMSNEVFR_EL1, FnE).
    V1p2,
    /// `0b0100`: FEAT_SPEv1p3.
    V1p3,
    /// `0b0101`: FEAT_SPEv1p4 (data source filtering, FDS).
    V1p4,
    /// `0b0110`: FEAT_SPEv1p5 (PMBIDR_EL1.MaxBuffSize).
    V1p5,
    /// A later version not named here (7..=15 as decoded). Compares by its
    /// raw value, so it counts as newer than every named version.
    Future(u8),
}

impl PmsVer {
    /// Decodes a 4-bit PMSVer value.
    pub const fn from_field(v: u64) -> Result<PmsVer, FieldOutOfRange> {
        Ok(match v {
            0 => PmsVer::NotImplemented,
            1 => PmsVer::V1p0,
            2 => PmsVer::V1p1,
            3 => PmsVer::V1p2,
            4 => PmsVer::V1p3,
            5 => PmsVer::V1p4,
            6 => PmsVer::V1p5,
            7..=15 => PmsVer::Future(v as u8),
            _ => return Err(FieldOutOfRange { value: v }),
        })
    }

    /// The 4-bit PMSVer value (`Future(v)` gives `v & 0xF`).
    pub const fn to_field(self) -> u64 {
        match self {
            PmsVer::NotImplemented => 0,
            PmsVer::V1p0 => 1,
            PmsVer::V1p1 => 2,
            PmsVer::V1p2 => 3,
            PmsVer::V1p3 => 4,
            PmsVer::V1p4 => 5,
            PmsVer::V1p5 => 6,
            PmsVer::Future(v) => (v & 0xF) as u64,
        }
    }

    /// PMSVer of a whole ID_AA64DFR0_EL1 value.
    pub const fn from_id_aa64dfr0(dfr0: u64) -> PmsVer {
        match PmsVer::from_field(id_aa64dfr0_el1::PMSVer.get(dfr0)) {
            Ok(v) => v,
            // A 4-bit field always decodes.
            Err(_) => PmsVer::NotImplemented,
        }
    }

    /// `dfr0` with its PMSVer field replaced by this version.
    pub const fn with_id_aa64dfr0(self, dfr0: u64) -> u64 {
        id_aa64dfr0_el1::PMSVer.set(dfr0, self.to_field())
    }

    /// SPE is implemented (`>= V1p0`).
    pub const fn is_implemented(self) -> bool {
        self.to_field() >= PmsVer::V1p0.to_field()
    }

    /// The version is at least FEAT_SPEv1p2, which introduces PMSNEVFR_EL1
    /// and PMSFCR_EL1.FnE. Whether FnE filtering is present is reported by
    /// PMSIDR_EL1.FnE (FEAT_SPE_FnE); check both.
    pub const fn has_fne(self) -> bool {
        self.to_field() >= PmsVer::V1p2.to_field()
    }

    /// The version is at least FEAT_SPEv1p4, the level at which data source
    /// filtering (PMSDSFR_EL1, PMSFCR_EL1.FDS) can exist; PMSIDR_EL1.FDS
    /// reports whether it does (FEAT_SPE_FDS).
    pub const fn has_fds(self) -> bool {
        self.to_field() >= PmsVer::V1p4.to_field()
    }

    /// The version is at least FEAT_SPEv1p5, which defines
    /// PMBIDR_EL1.MaxBuffSize.
    pub const fn has_max_buff_size(self) -> bool {
        self.to_field() >= PmsVer::V1p5.to_field()
    }
}

impl PartialEq for PmsVer {
    fn eq(&self, other: &Self) -> bool {
        self.to_field() == other.to_field()
    }
}

impl Eq for PmsVer {}

impl Hash for PmsVer {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.to_field().hash(state);
    }
}

impl PartialOrd for PmsVer {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PmsVer {
    fn cmp(&self, other: &Self) -> Ordering {
        self.to_field().cmp(&other.to_field())
    }
}

/// ID_AA64DFR0_EL1.PMUVer, the PMU version (Arm ARM D24.2; values: 0 none,
/// 1 FEAT_PMUv3, 4 v3p1, 5 v3p4, 6 v3p5, 7 v3p7, 8 v3p8, 9 v3p9, 0xF
/// IMPLEMENTATION DEFINED).
///
/// `PartialOrd` orders the PMUv3 levels by field value; `ImpDef` is
/// comparable only with itself, so `ImpDef >= PmuVer::V3p1` is false.
#[derive(Clone, Copy, Debug)]
pub enum PmuVer {
    /// `0b0000`: no PMU (or not PMUv3 and not advertised).
    NotImplemented,
    /// `0b0001`: FEAT_PMUv3.
    V3,
    /// `0b0100`: FEAT_PMUv3p1 (16-bit event numbers, MDCR_EL2.HPMD).
    V3p1,
    /// `0b0101`: FEAT_PMUv3p4.
    V3p4,
    /// `0b0110`: FEAT_PMUv3p5 (64-bit event counters: PMCR_EL0.LP,
    /// MDCR_EL2.HLP, MDCR_EL2.HCCD).
    V3p5,
    /// `0b0111`: FEAT_PMUv3p7.
    V3p7,
    /// `0b1000`: FEAT_PMUv3p8.
    V3p8,
    /// `0b1001`: FEAT_PMUv3p9.
    V3p9,
    /// `0b1111`: IMPLEMENTATION DEFINED form of performance monitors.
    ImpDef,
    /// Any other value (reserved 2, 3 or a later version 10..=14), kept raw.
    /// Compares by its raw value.
    Other(u8),
}

impl PmuVer {
    /// Decodes a 4-bit PMUVer value.
    pub const fn from_field(v: u64) -> Result<PmuVer, FieldOutOfRange> {
        Ok(match v {
            0 => PmuVer::NotImplemented,
            1 => PmuVer::V3,
            4 => PmuVer::V3p1,
            5 => PmuVer::V3p4,
            6 => PmuVer::V3p5,
            7 => PmuVer::V3p7,
            8 => PmuVer::V3p8,
            9 => PmuVer::V3p9,
            0xF => PmuVer::ImpDef,
            2 | 3 | 10..=14 => PmuVer::Other(v as u8),
            _ => return Err(FieldOutOfRange { value: v }),
        })
    }

    /// The 4-bit PMUVer value (`Other(v)` gives `v & 0xF`).
    pub const fn to_field(self) -> u64 {
        match self {
            PmuVer::NotImplemented => 0,
            PmuVer::V3 => 1,
            PmuVer::V3p1 => 4,
            PmuVer::V3p4 => 5,
            PmuVer::V3p5 => 6,
            PmuVer::V3p7 => 7,
            PmuVer::V3p8 => 8,
            PmuVer::V3p9 => 9,
            PmuVer::ImpDef => 0xF,
            PmuVer::Other(v) => (v & 0xF) as u64,
        }
    }

    /// PMUVer of a whole ID_AA64DFR0_EL1 value.
    pub const fn from_id_aa64dfr0(dfr0: u64) -> PmuVer {
        match PmuVer::from_field(id_aa64dfr0_el1::PMUVer.get(dfr0)) {
            Ok(v) => v,
            // A 4-bit field always decodes.
            Err(_) => PmuVer::NotImplemented,
        }
    }

    /// `dfr0` with its PMUVer field replaced by this version.
    pub const fn with_id_aa64dfr0(self, dfr0: u64) -> u64 {
        id_aa64dfr0_el1::PMUVer.set(dfr0, self.to_field())
    }

    /// A PMUv3 is implemented (any value other than 0 and 0xF).
    pub const fn is_pmuv3(self) -> bool {
        let v = self.to_field();
        v != 0 && v != 0xF
    }

    /// `self` is a PMUv3 level at least `min` (false for `ImpDef` and
    /// `NotImplemented` unless `min` is `NotImplemented`).
    pub const fn at_least(self, min: PmuVer) -> bool {
        let (a, b) = (self.to_field(), min.to_field());
        if a == 0xF || b == 0xF {
            a == b
        } else {
            a >= b
        }
    }

    /// MDCR_EL2.HPMD is implemented (FEAT_PMUv3p1 or later).
    pub const fn has_hpmd(self) -> bool {
        self.at_least(PmuVer::V3p1)
    }

    /// MDCR_EL2.HCCD is implemented (FEAT_PMUv3p5 or later).
    pub const fn has_hccd(self) -> bool {
        self.at_least(PmuVer::V3p5)
    }

    /// 64-bit event counters, PMCR_EL0.LP and MDCR_EL2.HLP (FEAT_PMUv3p5 or
    /// later).
    pub const fn has_lp(self) -> bool {
        self.at_least(PmuVer::V3p5)
    }
}

impl PartialEq for PmuVer {
    fn eq(&self, other: &Self) -> bool {
        self.to_field() == other.to_field()
    }
}

impl Eq for PmuVer {}

impl Hash for PmuVer {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.to_field().hash(state);
    }
}

impl PartialOrd for PmuVer {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        let (a, b) = (self.to_field(), other.to_field());
        match (a == 0xF, b == 0xF) {
            (false, false) => Some(a.cmp(&b)),
            (true, true) => Some(Ordering::Equal),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pmsver_roundtrip_and_order() {
        for v in 0..16 {
            let p = PmsVer::from_field(v).unwrap();
            assert_eq!(p.to_field(), v);
        }
        assert_eq!(PmsVer::from_field(16), Err(FieldOutOfRange { value: 16 }));
        assert!(PmsVer::V1p2 > PmsVer::V1p1);
        assert!(PmsVer::Future(9) > PmsVer::V1p5);
        assert_eq!(PmsVer::Future(3), PmsVer::V1p2);
        let mut all: std::vec::Vec<PmsVer> = (0..16)
            .rev()
            .map(|v| PmsVer::from_field(v).unwrap())
            .collect();
        all.sort();
        assert_eq!(all[0], PmsVer::NotImplemented);
        assert_eq!(all[6], PmsVer::V1p5);
    }

    #[test]
    fn pmsver_helpers() {
        let cases = [
            // (version, implemented, fne, fds, max_buff_size)
            (PmsVer::NotImplemented, false, false, false, false),
            (PmsVer::V1p0, true, false, false, false),
            (PmsVer::V1p1, true, false, false, false),
            (PmsVer::V1p2, true, true, false, false),
            (PmsVer::V1p3, true, true, false, false),
            (PmsVer::V1p4, true, true, true, false),
            (PmsVer::V1p5, true, true, true, true),
            (PmsVer::Future(7), true, true, true, true),
        ];
        for (v, imp, fne, fds, mbs) in cases {
            assert_eq!(v.is_implemented(), imp, "{v:?}");
            assert_eq!(v.has_fne(), fne, "{v:?}");
            assert_eq!(v.has_fds(), fds, "{v:?}");
            assert_eq!(v.has_max_buff_size(), mbs, "{v:?}");
        }
    }

    #[test]
    fn pmsver_in_dfr0() {
        let dfr0 = PmsVer::V1p4.with_id_aa64dfr0(u64::MAX);
        assert_eq!(dfr0, !(0xF << 32) | (5 << 32));
        assert_eq!(PmsVer::from_id_aa64dfr0(dfr0), PmsVer::V1p4);
        assert_eq!(PmsVer::from_id_aa64dfr0(0), PmsVer::NotImplemented);
    }

    #[test]
    fn pmuver_roundtrip() {
        for v in 0..16 {
            assert_eq!(PmuVer::from_field(v).unwrap().to_field(), v);
        }
        assert!(PmuVer::from_field(0x10).is_err());
        assert_eq!(PmuVer::from_field(4), Ok(PmuVer::V3p1));
        assert_eq!(PmuVer::from_field(0xF), Ok(PmuVer::ImpDef));
        assert_eq!(PmuVer::from_field(2), Ok(PmuVer::Other(2)));
        assert_eq!(PmuVer::Other(6), PmuVer::V3p5);
    }

    #[test]
    fn pmuver_order_excludes_impdef() {
        assert!(PmuVer::V3p5 > PmuVer::V3p1);
        assert!(PmuVer::V3 < PmuVer::V3p1);
        assert!(PmuVer::NotImplemented < PmuVer::V3);
        assert_eq!(PmuVer::ImpDef.partial_cmp(&PmuVer::V3), None);
        assert_eq!(PmuVer::V3p9.partial_cmp(&PmuVer::ImpDef), None);
        assert_eq!(
            PmuVer::ImpDef.partial_cmp(&PmuVer::ImpDef),
            Some(Ordering::Equal)
        );
        let ge = PmuVer::ImpDef >= PmuVer::V3p1;
        let lt = PmuVer::ImpDef < PmuVer::V3p1;
        assert!(!ge && !lt);
        assert!(PmuVer::Other(12) > PmuVer::V3p9);
    }

    #[test]
    fn pmuver_helpers() {
        let cases = [
            // (version, pmuv3, hpmd, hccd, lp)
            (PmuVer::NotImplemented, false, false, false, false),
            (PmuVer::V3, true, false, false, false),
            (PmuVer::V3p1, true, true, false, false),
            (PmuVer::V3p4, true, true, false, false),
            (PmuVer::V3p5, true, true, true, true),
            (PmuVer::V3p7, true, true, true, true),
            (PmuVer::V3p8, true, true, true, true),
            (PmuVer::V3p9, true, true, true, true),
            (PmuVer::ImpDef, false, false, false, false),
            (PmuVer::Other(3), true, false, false, false),
        ];
        for (v, v3, hpmd, hccd, lp) in cases {
            assert_eq!(v.is_pmuv3(), v3, "{v:?}");
            assert_eq!(v.has_hpmd(), hpmd, "{v:?}");
            assert_eq!(v.has_hccd(), hccd, "{v:?}");
            assert_eq!(v.has_lp(), lp, "{v:?}");
        }
        assert!(PmuVer::ImpDef.at_least(PmuVer::ImpDef));
        assert!(PmuVer::NotImplemented.at_least(PmuVer::NotImplemented));
    }

    #[test]
    fn pmuver_in_dfr0() {
        let dfr0 = PmuVer::V3p5.with_id_aa64dfr0(0);
        assert_eq!(dfr0, 0x600);
        assert_eq!(PmuVer::from_id_aa64dfr0(dfr0 | !0xF00), PmuVer::V3p5);
    }

    #[test]
    fn error_display() {
        use std::format;
        assert_eq!(
            format!("{}", FieldOutOfRange { value: 0x20 }),
            "ID field value 0x20 does not fit in 4 bits"
        );
    }
}
