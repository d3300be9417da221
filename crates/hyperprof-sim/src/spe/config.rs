//! How an SPE unit is built, and what its ID registers (PMSIDR_EL1,
//! PMBIDR_EL1) and register write masks say about it (Arm ARM D24.6 register
//! descriptions; ARM-FACTS §1).

use hyperprof_arch::{
    maxbuffsize, pmbidr_el1, pmblimitr_el1, pmbptr_el1, pmbsr_el1, pmscr_el1, pmscr_el2,
    pmsdsfr_el1, pmsfcr_el1, pmsicr_el1, pmsidr_el1, pmsirr_el1, pmslatfr_el1, PmsVer, SysReg,
};
use hyperprof_spe::packet::event;

/// Smallest maximum record size the model accepts, as `log2(bytes)`
/// (PMSIDR_EL1.MaxSize 0b0110, 64 bytes).
pub const MIN_RECORD_LOG2: u8 = 6;
/// Largest maximum record size, as `log2(bytes)`: 2 KiB, the pseudocode's
/// `SPEMaxRecordSize` (Arm ARM J1.1.1.70 `SPE`).
pub const MAX_RECORD_LOG2: u8 = 11;

/// How one PE's SPE unit is built (the IMPLEMENTATION DEFINED choices of
/// Arm ARM D10 that PMSIDR_EL1 and PMBIDR_EL1 describe, plus the model's
/// record queue and random seed).
///
/// Out-of-range values are never rejected: [`SpeConfig::record_log2`] and
/// [`SpeConfig::align_log2_effective`] say which value the unit uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpeConfig {
    /// The SPE version (ID_AA64DFR0_EL1.PMSVer). FEAT_SPE_FnE (PMSNEVFR_EL1,
    /// PMSFCR_EL1.FnE) and DISCARD mode come with v1p2, FEAT_SPE_FDS
    /// (PMSDSFR_EL1, PMSFCR_EL1.FDS) with v1p4, PMBIDR_EL1.MaxBuffSize with
    /// v1p5.
    pub pms_ver: PmsVer,
    /// PMSIDR_EL1.INTERVAL encoding: the smallest interval the
    /// implementation recommends (0 = 256, 2 = 512, ... 8 = 4096). Reported
    /// only; the unit samples at any interval software programs.
    pub interval_field: u8,
    /// PMSIDR_EL1.MaxSize: the largest record is `2^max_record_log2` bytes.
    /// Clamped to 6..=11 (64 bytes to 2 KiB).
    pub max_record_log2: u8,
    /// PMBIDR_EL1.MaxBuffSize in bytes (FEAT_SPEv1p5); 0 = no limit.
    /// Reported only (as the largest representable size not above it).
    pub max_buff_size: u64,
    /// PMBIDR_EL1.Align: PMBPTR_EL1 and every record are aligned to
    /// `2^align_log2` bytes. Clamped to the record size.
    pub align_log2: u8,
    /// Records the unit holds before it must write the oldest to memory
    /// (0 = every record is written as soon as it is complete).
    pub queue_capacity: usize,
    /// PMSIDR_EL1.CountSize: 16-bit saturating counters when true, 12-bit
    /// saturating otherwise.
    pub countsize_16bit: bool,
    /// Seed of the generator behind PMSIRR_EL1.RND.
    pub seed: u64,
}

impl Default for SpeConfig {
    /// A FEAT_SPEv1p2 unit: recommended interval 256, 64-byte records,
    /// no alignment, 12-bit counters, four records in flight, no buffer
    /// size limit.
    fn default() -> Self {
        SpeConfig {
            pms_ver: PmsVer::V1p2,
            interval_field: 0,
            max_record_log2: 6,
            max_buff_size: 0,
            align_log2: 0,
            queue_capacity: 4,
            countsize_16bit: false,
            seed: 0x5EED_0F5B_E5A3_71E5,
        }
    }
}

/// The events packet bits a unit of version `ver` reports (the architected
/// events of Arm ARM `SPEEvent()`, J1.1.1.83): EXCEPTION_GEN..REMOTE_ACCESS
/// (bits 0..=10) at every version; ALIGNMENT (11) and the SVE predicate
/// events (17, 18) from FEAT_SPEv1p1; bits 19..=23 from FEAT_SPEv1p4.
/// IMPLEMENTATION DEFINED bits are never reported.
pub fn reported_events_mask(ver: PmsVer) -> u64 {
    let mut m = (1u64 << 11) - 1;
    if ver >= PmsVer::V1p1 {
        m |= 1 << event::ALIGNMENT | 1 << event::SVE_PARTIAL_PRED | 1 << event::SVE_EMPTY_PRED;
    }
    if ver >= PmsVer::V1p4 {
        m |= 0x1F << 19;
    }
    m
}

/// The events bits PMSEVFR_EL1 / PMSNEVFR_EL1 can select at version `ver`:
/// the `mask` of Arm ARM `SPEFilterByEvents()` (J1.1.1.85) with every
/// IMPLEMENTATION DEFINED part of it chosen as zero. RETIRED, L1D_REFILL,
/// TLB_WALK and MISPREDICTED always; ALIGNMENT and the SVE predicate events
/// from v1p1; NOT_TAKEN with FEAT_SPE_FnE (v1p2); L1D_ACCESS, TLB_ACCESS,
/// LLC_ACCESS, LLC_MISS, REMOTE_ACCESS and bits 19..=23 from v1p4.
/// EXCEPTION_GEN (bit 0) is never filterable.
pub fn filterable_events_mask(ver: PmsVer) -> u64 {
    let mut m = 1 << event::RETIRED
        | 1 << event::L1D_REFILL
        | 1 << event::TLB_WALK
        | 1 << event::MISPREDICTED;
    if ver >= PmsVer::V1p1 {
        m |= 1 << event::ALIGNMENT | 1 << event::SVE_PARTIAL_PRED | 1 << event::SVE_EMPTY_PRED;
    }
    if ver.has_fne() {
        m |= 1 << event::NOT_TAKEN;
    }
    if ver >= PmsVer::V1p4 {
        m |= 1 << event::L1D_ACCESS
            | 1 << event::TLB_ACCESS
            | 1 << event::LLC_ACCESS
            | 1 << event::LLC_MISS
            | 1 << event::REMOTE_ACCESS
            | 0x1F << 19;
    }
    m
}

impl SpeConfig {
    /// The PMSIDR_EL1.MaxSize the unit uses: `max_record_log2` clamped to
    /// [`MIN_RECORD_LOG2`]..=[`MAX_RECORD_LOG2`].
    pub fn record_log2(&self) -> u8 {
        self.max_record_log2.clamp(MIN_RECORD_LOG2, MAX_RECORD_LOG2)
    }

    /// The maximum record size in bytes, `2^MaxSize` (used by the
    /// buffer-full check, `SPEBufferIsFull()`).
    pub fn max_record_size(&self) -> u64 {
        1 << self.record_log2()
    }

    /// The PMBIDR_EL1.Align the unit uses: `align_log2` clamped to the
    /// record size, so a padded record never exceeds the maximum.
    pub fn align_log2_effective(&self) -> u8 {
        self.align_log2.min(self.record_log2())
    }

    /// Record and PMBPTR_EL1 alignment in bytes, `2^Align`.
    pub fn alignment(&self) -> u64 {
        1 << self.align_log2_effective()
    }

    /// The largest latency counter value (`0xFFF` or `0xFFFF`): counters
    /// saturate there (`SPEConstructRecord()`, J1.1.1.78).
    pub fn counter_max(&self) -> u16 {
        if self.countsize_16bit {
            0xFFFF
        } else {
            0x0FFF
        }
    }

    /// FEAT_SPE_FnE: PMSNEVFR_EL1 and PMSFCR_EL1.FnE (v1p2 and later).
    pub fn has_fne(&self) -> bool {
        self.pms_ver.has_fne()
    }

    /// FEAT_SPE_FDS: PMSDSFR_EL1 and PMSFCR_EL1.FDS (modelled from v1p4).
    pub fn has_fds(&self) -> bool {
        self.pms_ver.has_fds()
    }

    /// DISCARD fill mode, PMBLIMITR_EL1.FM == 0b10 (FEAT_SPEv1p2;
    /// `SPECompleteSample()` honours FM only then).
    pub fn has_discard(&self) -> bool {
        self.pms_ver >= PmsVer::V1p2
    }

    /// PMBLIMITR_EL1.PMFZ (FEAT_SPEv1p2).
    pub fn has_pmfz(&self) -> bool {
        self.pms_ver >= PmsVer::V1p2
    }

    /// The PMBIDR_EL1.MaxBuffSize field: `max_buff_size` rounded down to the
    /// nearest size the field can represent, at least 4 KiB when a limit is
    /// set; 0 (no limit) without FEAT_SPEv1p5.
    pub fn max_buff_size_field(&self) -> u16 {
        if !self.pms_ver.has_max_buff_size() || self.max_buff_size == 0 {
            return 0;
        }
        // decode() is strictly increasing on 0..=FIELD_MAX: binary search for
        // the largest field value whose size is not above the limit.
        let (mut lo, mut hi) = (1u16, maxbuffsize::FIELD_MAX);
        if maxbuffsize::decode(lo) > self.max_buff_size {
            return lo;
        }
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if maxbuffsize::decode(mid) <= self.max_buff_size {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        lo
    }

    /// PMSIDR_EL1 as this unit reports it: FE, FT, FL, ARCHINST (operations
    /// are instructions) and LDS (loads carry a data source) set; FnE from
    /// v1p2; FDS from v1p4; ERND, PBT, EFT, CRR, FPF, SME clear (not
    /// modelled); INTERVAL, MaxSize and CountSize from the configuration.
    pub fn pmsidr(&self) -> u64 {
        use pmsidr_el1 as r;
        let mut v = r::FE.mask() | r::FT.mask() | r::FL.mask() | r::ARCHINST.mask() | r::LDS.mask();
        if self.has_fne() {
            v |= r::FnE.mask();
        }
        if self.has_fds() {
            v |= r::FDS.mask();
        }
        v = r::INTERVAL.set(v, u64::from(self.interval_field));
        v = r::MAXSIZE.set(v, u64::from(self.record_log2()));
        let countsize = if self.countsize_16bit {
            r::COUNTSIZE_16_BIT_SAT
        } else {
            r::COUNTSIZE_12_BIT_SAT
        };
        r::COUNTSIZE.set(v, countsize)
    }

    /// PMBIDR_EL1 as read from the owning Exception level or above: Align,
    /// MaxBuffSize (v1p5); P, F and EA clear (EA "not described": external
    /// aborts are reported through PMBSR_EL1.EA). See `Spe::read_at` for P.
    pub fn pmbidr(&self) -> u64 {
        let v = pmbidr_el1::ALIGN.value(u64::from(self.align_log2_effective()));
        maxbuffsize::set(v, self.max_buff_size_field())
    }

    /// The bits of `reg` that software can write on this unit (the complement
    /// of its RES0 bits, with the fields of features the unit lacks RES0).
    /// 0 for the read-only ID registers and for registers the unit does not
    /// have (PMSNEVFR_EL1 without FnE, PMSDSFR_EL1 without FDS) or that are
    /// not SPE registers. PMSCR_EL12 has PMSCR_EL1's mask.
    ///
    /// Choices (not architectural facts): PMSCR_ELx.PCT bit 7 is RES0
    /// because FEAT_ECV is not modelled (the pseudocode treats PCT<1> as
    /// RES0 then); PMSLATFR_EL1.MINLAT is 12 bits wide with 12-bit counters;
    /// PMBPTR_EL1 bits below PMBIDR_EL1.Align are RES0; PMSEVFR_EL1 and
    /// PMSNEVFR_EL1 keep only [`filterable_events_mask`].
    pub fn write_mask(&self, reg: SysReg) -> u64 {
        const PCT0: u64 = 1 << 6;
        match reg {
            SysReg::PMSCR_EL1 | SysReg::PMSCR_EL12 => {
                use pmscr_el1 as r;
                r::E0SPE.mask()
                    | r::E1SPE.mask()
                    | r::CX.mask()
                    | r::PA.mask()
                    | r::TS.mask()
                    | PCT0
            }
            SysReg::PMSCR_EL2 => {
                use pmscr_el2 as r;
                r::E0HSPE.mask()
                    | r::E2SPE.mask()
                    | r::CX.mask()
                    | r::PA.mask()
                    | r::TS.mask()
                    | PCT0
            }
            SysReg::PMSNEVFR_EL1 if self.has_fne() => filterable_events_mask(self.pms_ver),
            SysReg::PMSICR_EL1 => pmsicr_el1::COUNT.mask(),
            SysReg::PMSIRR_EL1 => pmsirr_el1::RND.mask() | pmsirr_el1::INTERVAL.mask(),
            SysReg::PMSFCR_EL1 => {
                use pmsfcr_el1 as r;
                let mut m = r::FE.mask()
                    | r::FT.mask()
                    | r::FL.mask()
                    | r::B.mask()
                    | r::LD.mask()
                    | r::ST.mask();
                if self.has_fne() {
                    m |= r::FnE.mask();
                }
                if self.has_fds() {
                    m |= r::FDS.mask();
                }
                m
            }
            SysReg::PMSEVFR_EL1 => filterable_events_mask(self.pms_ver),
            SysReg::PMSLATFR_EL1 => {
                if self.countsize_16bit {
                    pmslatfr_el1::MINLAT.mask()
                } else {
                    0x0FFF
                }
            }
            SysReg::PMBLIMITR_EL1 => {
                use pmblimitr_el1 as r;
                let mut m = r::E.mask() | r::FM.mask() | r::LIMIT.mask();
                if self.has_pmfz() {
                    m |= r::PMFZ.mask();
                }
                m
            }
            SysReg::PMBPTR_EL1 => pmbptr_el1::PTR.mask() & !(self.alignment() - 1),
            SysReg::PMBSR_EL1 => !pmbsr_el1::RES0,
            SysReg::PMSDSFR_EL1 if self.has_fds() => pmsdsfr_el1::S.mask(),
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_v1p2_with_64_byte_records() {
        let c = SpeConfig::default();
        assert_eq!(c.pms_ver, PmsVer::V1p2);
        assert_eq!(c.max_record_size(), 64);
        assert_eq!(c.alignment(), 1);
        assert_eq!(c.queue_capacity, 4);
        assert_eq!(
            pmsidr_el1::interval_from_field(pmsidr_el1::INTERVAL.get(c.pmsidr())),
            Some(256)
        );
        assert_eq!(c.counter_max(), 0xFFF);
    }

    #[test]
    fn record_size_and_alignment_are_clamped() {
        let c = SpeConfig {
            max_record_log2: 2,
            align_log2: 15,
            ..SpeConfig::default()
        };
        assert_eq!(c.record_log2(), 6);
        assert_eq!(c.align_log2_effective(), 6);
        let c = SpeConfig {
            max_record_log2: 15,
            ..SpeConfig::default()
        };
        assert_eq!(c.max_record_size(), 2048);
    }

    #[test]
    fn pmsidr_features_follow_the_version() {
        for (ver, fne, fds) in [
            (PmsVer::V1p0, false, false),
            (PmsVer::V1p1, false, false),
            (PmsVer::V1p2, true, false),
            (PmsVer::V1p4, true, true),
            (PmsVer::V1p5, true, true),
        ] {
            let c = SpeConfig {
                pms_ver: ver,
                countsize_16bit: true,
                ..SpeConfig::default()
            };
            let v = c.pmsidr();
            assert_eq!(pmsidr_el1::FnE.is_set(v), fne, "{ver:?}");
            assert_eq!(pmsidr_el1::FDS.is_set(v), fds, "{ver:?}");
            assert_eq!(
                pmsidr_el1::COUNTSIZE.get(v),
                pmsidr_el1::COUNTSIZE_16_BIT_SAT
            );
            assert_eq!(v & pmsidr_el1::RES0, 0);
            assert!(!pmsidr_el1::ERND.is_set(v));
        }
    }

    #[test]
    fn max_buff_size_rounds_down_to_a_representable_size() {
        let mk = |ver, size| SpeConfig {
            pms_ver: ver,
            max_buff_size: size,
            ..SpeConfig::default()
        };
        assert_eq!(mk(PmsVer::V1p4, 1 << 20).max_buff_size_field(), 0);
        assert_eq!(mk(PmsVer::V1p5, 0).max_buff_size_field(), 0);
        let exact = mk(PmsVer::V1p5, 1 << 20);
        assert_eq!(maxbuffsize::decode(exact.max_buff_size_field()), 1 << 20);
        assert_eq!(maxbuffsize::size(exact.pmbidr()), 1 << 20);
        // 4 KiB + 1 is not representable: 4 KiB.
        assert_eq!(
            maxbuffsize::decode(mk(PmsVer::V1p5, 4097).max_buff_size_field()),
            4096
        );
        // Below one granule: the smallest limit.
        assert_eq!(
            maxbuffsize::decode(mk(PmsVer::V1p5, 100).max_buff_size_field()),
            4096
        );
        // Above the largest representable size: the largest.
        assert_eq!(
            mk(PmsVer::V1p5, u64::MAX).max_buff_size_field(),
            maxbuffsize::FIELD_MAX
        );
        for size in [3 << 20, (1 << 30) + 12345, 7 << 12] {
            let f = mk(PmsVer::V1p5, size).max_buff_size_field();
            assert!(maxbuffsize::decode(f) <= size);
            assert!(f == maxbuffsize::FIELD_MAX || maxbuffsize::decode(f + 1) > size);
        }
    }

    #[test]
    fn event_masks_grow_with_the_version() {
        let v0 = filterable_events_mask(PmsVer::V1p0);
        assert_eq!(v0, 0b1010_1010);
        assert_eq!(filterable_events_mask(PmsVer::V1p2) & 1 << 6, 1 << 6);
        assert_eq!(filterable_events_mask(PmsVer::V1p1) & 1 << 6, 0);
        for ver in [PmsVer::V1p0, PmsVer::V1p1, PmsVer::V1p2, PmsVer::V1p4] {
            let f = filterable_events_mask(ver);
            assert_eq!(f & !reported_events_mask(ver), 0, "{ver:?}");
            assert_eq!(f & 1, 0, "EXCEPTION_GEN is never filterable");
        }
    }

    #[test]
    fn write_masks_drop_missing_features() {
        let v1 = SpeConfig {
            pms_ver: PmsVer::V1p1,
            ..SpeConfig::default()
        };
        assert_eq!(v1.write_mask(SysReg::PMSNEVFR_EL1), 0);
        assert_eq!(v1.write_mask(SysReg::PMSDSFR_EL1), 0);
        assert_eq!(
            v1.write_mask(SysReg::PMSFCR_EL1) & pmsfcr_el1::FnE.mask(),
            0
        );
        assert_eq!(
            v1.write_mask(SysReg::PMBLIMITR_EL1) & pmblimitr_el1::PMFZ.mask(),
            0
        );
        let v4 = SpeConfig {
            pms_ver: PmsVer::V1p4,
            align_log2: 4,
            ..SpeConfig::default()
        };
        assert_eq!(v4.write_mask(SysReg::PMSDSFR_EL1), u64::MAX);
        assert_ne!(
            v4.write_mask(SysReg::PMSFCR_EL1) & pmsfcr_el1::FDS.mask(),
            0
        );
        assert_eq!(v4.write_mask(SysReg::PMBPTR_EL1), !0xF);
        assert_eq!(v4.write_mask(SysReg::PMSIDR_EL1), 0);
        assert_eq!(v4.write_mask(SysReg::PMBIDR_EL1), 0);
        assert_eq!(v4.write_mask(SysReg::PMCR_EL0), 0);
    }
}
