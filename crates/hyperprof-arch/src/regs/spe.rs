//! Statistical Profiling Extension registers (Arm ARM D24.6 "Statistical
//! Profiling Extension registers"; ARM-FACTS §1).
//!
//! Field positions checked against Linux `arch/arm64/tools/sysreg` (which
//! tracks the Arm register XML), including the FEAT_SPE_EFT/FDS additions to
//! PMSFCR_EL1 and PMSIDR_EL1 and the MaxBuffSize fields of PMBIDR_EL1.

#![allow(non_upper_case_globals)]

/// Values of the `PCT` (physical timestamp) field shared by PMSCR_EL1 and
/// PMSCR_EL2 (Arm ARM D24.6, PMSCR_EL2.PCT).
pub mod pct {
    /// `0b00`: virtual counter (CNTVCT_EL0) timestamps.
    pub const VIRT: u64 = 0b00;
    /// `0b01`: physical counter (CNTPCT_EL0) timestamps.
    pub const PHYS: u64 = 0b01;
    /// `0b11`: guest physical timestamps (physical count minus the
    /// offset an EL2 guest sees; FEAT_ECV).
    pub const GUEST: u64 = 0b11;
}

/// PMSCR_EL1, Statistical Profiling Control Register (EL1) (Arm ARM
/// D24.6). Also the layout of PMSCR_EL12 (see [`pmscr_el12`](crate::pmscr_el12)).
pub mod pmscr_el1 {
    use crate::Field;

    /// `E0SPE`, bit 0: enable sampling at EL0.
    pub const E0SPE: Field = Field::bit(0);
    /// `E1SPE`, bit 1: enable sampling at EL1.
    pub const E1SPE: Field = Field::bit(1);
    /// `CX`, bit 3: CONTEXTIDR_EL1 capture enable.
    pub const CX: Field = Field::bit(3);
    /// `PA`, bit 4: physical address sample enable.
    pub const PA: Field = Field::bit(4);
    /// `TS`, bit 5: timestamp enable.
    pub const TS: Field = Field::bit(5);
    /// `PCT`, bits \[7:6\]: physical timestamp select (values in
    /// [`pct`](crate::pct)).
    pub const PCT: Field = Field::bits(7, 6);
    /// RES0 bits: \[63:8\] and 2.
    pub const RES0: u64 = Field::bits(63, 8).mask() | Field::bit(2).mask();
}

/// PMSCR_EL12: the VHE alias of PMSCR_EL1 used from EL2 when
/// `HCR_EL2.E2H == 1` (Arm ARM D24.6). Same layout as
/// [`pmscr_el1`](crate::pmscr_el1).
pub mod pmscr_el12 {
    pub use super::pmscr_el1::*;
}

/// PMSCR_EL2, Statistical Profiling Control Register (EL2) (Arm ARM D24.6).
pub mod pmscr_el2 {
    use crate::Field;

    /// `E0HSPE`, bit 0: enable sampling at EL0 in the EL2&0 regime
    /// (when `HCR_EL2.TGE == 1`).
    pub const E0HSPE: Field = Field::bit(0);
    /// `E2SPE`, bit 1: enable sampling at EL2.
    pub const E2SPE: Field = Field::bit(1);
    /// `CX`, bit 3: CONTEXTIDR_EL2 capture enable.
    pub const CX: Field = Field::bit(3);
    /// `PA`, bit 4: physical address sample enable.
    pub const PA: Field = Field::bit(4);
    /// `TS`, bit 5: timestamp enable.
    pub const TS: Field = Field::bit(5);
    /// `PCT`, bits \[7:6\]: 0b00 virtual, 0b01 physical, 0b11 guest
    /// physical (values in [`pct`](crate::pct)).
    pub const PCT: Field = Field::bits(7, 6);
    /// RES0 bits: \[63:8\] and 2.
    pub const RES0: u64 = Field::bits(63, 8).mask() | Field::bit(2).mask();
}

/// PMSNEVFR_EL1, Sampling Inverted Event Filter Register (FEAT_SPEv1p2,
/// Arm ARM D24.6).
pub mod pmsnevfr_el1 {
    use crate::Field;

    /// `E`, bits \[63:0\]: bit n set = sample only operations that did
    /// *not* raise event n (used when `PMSFCR_EL1.FnE == 1`).
    pub const E: Field = Field::bits(63, 0);
    /// No RES0 bits in the architectural layout (which event bits are
    /// implemented is IMPLEMENTATION DEFINED).
    pub const RES0: u64 = 0;
}

/// PMSICR_EL1, Sampling Interval Counter Register (Arm ARM D24.6).
pub mod pmsicr_el1 {
    use crate::Field;

    /// `COUNT`, bits \[31:0\]: current interval count (counts down).
    pub const COUNT: Field = Field::bits(31, 0);
    /// `ECOUNT`, bits \[63:56\]: secondary (jitter) count.
    pub const ECOUNT: Field = Field::bits(63, 56);
    /// RES0 bits: \[55:32\].
    pub const RES0: u64 = Field::bits(55, 32).mask();
}

/// PMSIRR_EL1, Sampling Interval Reload Register (Arm ARM D24.6).
pub mod pmsirr_el1 {
    use crate::Field;

    /// `RND`, bit 0: add a random perturbation to each reload.
    pub const RND: Field = Field::bit(0);
    /// `INTERVAL`, bits \[31:8\]: reload value is `INTERVAL << 8`.
    pub const INTERVAL: Field = Field::bits(31, 8);
    /// RES0 bits: \[63:32\] and \[7:1\].
    pub const RES0: u64 = Field::bits(63, 32).mask() | Field::bits(7, 1).mask();
}

/// PMSFCR_EL1, Sampling Filter Control Register (Arm ARM D24.6; the `FP`,
/// `SIMD`, mask (`*m`) and `FDS` bits come from FEAT_SPE_EFT / FEAT_SPE_FDS).
pub mod pmsfcr_el1 {
    #![allow(non_upper_case_globals)]
    use crate::Field;

    /// `FE`, bit 0: filter by event (PMSEVFR_EL1).
    pub const FE: Field = Field::bit(0);
    /// `FT`, bit 1: filter by operation type (B/LD/ST...).
    pub const FT: Field = Field::bit(1);
    /// `FL`, bit 2: filter by latency (PMSLATFR_EL1.MINLAT).
    pub const FL: Field = Field::bit(2);
    /// `FnE`, bit 3: filter by inverted events (PMSNEVFR_EL1; FEAT_SPEv1p2).
    pub const FnE: Field = Field::bit(3);
    /// `FDS`, bit 4: filter by data source (PMSDSFR_EL1; FEAT_SPE_FDS).
    pub const FDS: Field = Field::bit(4);
    /// `B`, bit 16: branch operations.
    pub const B: Field = Field::bit(16);
    /// `LD`, bit 17: load operations.
    pub const LD: Field = Field::bit(17);
    /// `ST`, bit 18: store operations.
    pub const ST: Field = Field::bit(18);
    /// `FP`, bit 19: floating-point operations (FEAT_SPE_EFT).
    pub const FP: Field = Field::bit(19);
    /// `SIMD`, bit 20: SIMD operations (FEAT_SPE_EFT).
    pub const SIMD: Field = Field::bit(20);
    /// `Bm`, bit 48: branch filter mask (FEAT_SPE_EFT).
    pub const Bm: Field = Field::bit(48);
    /// `LDm`, bit 49: load filter mask (FEAT_SPE_EFT).
    pub const LDm: Field = Field::bit(49);
    /// `STm`, bit 50: store filter mask (FEAT_SPE_EFT).
    pub const STm: Field = Field::bit(50);
    /// `FPm`, bit 51: floating-point filter mask (FEAT_SPE_EFT).
    pub const FPm: Field = Field::bit(51);
    /// `SIMDm`, bit 52: SIMD filter mask (FEAT_SPE_EFT).
    pub const SIMDm: Field = Field::bit(52);
    /// RES0 bits: \[63:53\], \[47:21\], \[15:5\].
    pub const RES0: u64 =
        Field::bits(63, 53).mask() | Field::bits(47, 21).mask() | Field::bits(15, 5).mask();
}

/// PMSEVFR_EL1, Sampling Event Filter Register (Arm ARM D24.6).
pub mod pmsevfr_el1 {
    use crate::Field;

    /// `E`, bits \[63:0\]: bit n set = sample only operations that raised
    /// event n (used when `PMSFCR_EL1.FE == 1`).
    pub const E: Field = Field::bits(63, 0);
    /// No RES0 bits in the architectural layout (which event bits are
    /// implemented is IMPLEMENTATION DEFINED).
    pub const RES0: u64 = 0;
}

/// PMSLATFR_EL1, Sampling Latency Filter Register (Arm ARM D24.6).
pub mod pmslatfr_el1 {
    use crate::Field;

    /// `MINLAT`, bits \[15:0\]: minimum total latency to keep a sample.
    pub const MINLAT: Field = Field::bits(15, 0);
    /// RES0 bits: \[63:16\].
    pub const RES0: u64 = Field::bits(63, 16).mask();
}

/// PMSIDR_EL1, Sampling Profiling ID Register (read-only; Arm ARM D24.6).
pub mod pmsidr_el1 {
    #![allow(non_upper_case_globals)]
    use crate::Field;

    /// `FE`, bit 0: event filtering supported.
    pub const FE: Field = Field::bit(0);
    /// `FT`, bit 1: type filtering supported.
    pub const FT: Field = Field::bit(1);
    /// `FL`, bit 2: latency filtering supported.
    pub const FL: Field = Field::bit(2);
    /// `ARCHINST`, bit 3: architectural instruction sampling.
    pub const ARCHINST: Field = Field::bit(3);
    /// `LDS`, bit 4: data source indicator for loads.
    pub const LDS: Field = Field::bit(4);
    /// `ERND`, bit 5: random perturbation (PMSIRR_EL1.RND) supported.
    pub const ERND: Field = Field::bit(5);
    /// `FnE`, bit 6: inverted event filter supported (FEAT_SPE_FnE).
    pub const FnE: Field = Field::bit(6);
    /// `FDS`, bit 7: data source filter supported (FEAT_SPE_FDS).
    pub const FDS: Field = Field::bit(7);
    /// `INTERVAL`, bits \[11:8\]: recommended minimum sampling interval
    /// (see [`interval_from_field`]).
    pub const INTERVAL: Field = Field::bits(11, 8);
    /// `MAXSIZE`, bits \[15:12\]: maximum record size is `2^MAXSIZE` bytes.
    pub const MAXSIZE: Field = Field::bits(15, 12);
    /// `COUNTSIZE`, bits \[19:16\]: counter size (see
    /// [`COUNTSIZE_12_BIT_SAT`], [`COUNTSIZE_16_BIT_SAT`]).
    pub const COUNTSIZE: Field = Field::bits(19, 16);
    /// `FORMAT`, bits \[23:20\]: record format.
    pub const FORMAT: Field = Field::bits(23, 20);
    /// `PBT`, bit 24: previous branch target address packet supported.
    pub const PBT: Field = Field::bit(24);
    /// `CRR`, bit 25: call-return branch records (later revisions).
    pub const CRR: Field = Field::bit(25);
    /// `EFT`, bit 26: extended filtering by type (FEAT_SPE_EFT).
    pub const EFT: Field = Field::bit(26);
    /// `FPF`, bit 27: floating-point flag filtering (later revisions).
    pub const FPF: Field = Field::bit(27);
    /// `ALTCLK`, bits \[31:28\]: alternate clock domain (later revisions).
    pub const ALTCLK: Field = Field::bits(31, 28);
    /// `SME`, bit 32: SME sampling (later revisions).
    pub const SME: Field = Field::bit(32);
    /// RES0 bits: \[63:33\].
    pub const RES0: u64 = Field::bits(63, 33).mask();

    /// `COUNTSIZE == 0b0010`: 12-bit saturating counters.
    pub const COUNTSIZE_12_BIT_SAT: u64 = 0b0010;
    /// `COUNTSIZE == 0b0011`: 16-bit saturating counters.
    pub const COUNTSIZE_16_BIT_SAT: u64 = 0b0011;

    /// `INTERVAL` encodings and the intervals they stand for.
    const INTERVALS: [(u64, u32); 8] = [
        (0b0000, 256),
        (0b0010, 512),
        (0b0011, 768),
        (0b0100, 1024),
        (0b0101, 1536),
        (0b0110, 2048),
        (0b0111, 3072),
        (0b1000, 4096),
    ];

    /// The recommended minimum interval for an `INTERVAL` field value, or
    /// `None` for reserved encodings (0b0001, 0b1001..=0b1111).
    pub const fn interval_from_field(field: u64) -> Option<u32> {
        let mut i = 0;
        while i < INTERVALS.len() {
            if INTERVALS[i].0 == field {
                return Some(INTERVALS[i].1);
            }
            i += 1;
        }
        None
    }

    /// The `INTERVAL` encoding of a recommended minimum interval, or `None`
    /// if the interval has no encoding.
    pub const fn interval_to_field(interval: u32) -> Option<u64> {
        let mut i = 0;
        while i < INTERVALS.len() {
            if INTERVALS[i].1 == interval {
                return Some(INTERVALS[i].0);
            }
            i += 1;
        }
        None
    }

    /// Maximum record size in bytes, `2^MAXSIZE`, from a whole PMSIDR_EL1
    /// value.
    pub const fn max_record_size(pmsidr: u64) -> u64 {
        1 << MAXSIZE.get(pmsidr)
    }
}

/// PMBLIMITR_EL1, Profiling Buffer Limit Address Register (Arm ARM D24.6).
pub mod pmblimitr_el1 {
    use crate::Field;

    /// `E`, bit 0: profiling buffer enable.
    pub const E: Field = Field::bit(0);
    /// `FM`, bits \[2:1\]: fill mode ([`FM_FILL`], [`FM_DISCARD`]).
    pub const FM: Field = Field::bits(2, 1);
    /// `PMFZ`, bit 5: freeze PMU counters on a buffer management event.
    pub const PMFZ: Field = Field::bit(5);
    /// `LIMIT`, bits \[63:12\]: `LIMIT:Zeros(12)` is the first address past
    /// the buffer.
    pub const LIMIT: Field = Field::bits(63, 12);
    /// RES0 bits: \[11:6\] and \[4:3\].
    pub const RES0: u64 = Field::bits(11, 6).mask() | Field::bits(4, 3).mask();

    /// `FM == 0b00`: stop and raise a buffer management event when full.
    pub const FM_FILL: u64 = 0b00;
    /// `FM == 0b10`: discard mode, records are dropped and PMBPTR_EL1 does
    /// not advance.
    pub const FM_DISCARD: u64 = 0b10;

    /// The limit address `LIMIT:Zeros(12)` from a whole register value.
    pub const fn limit_address(v: u64) -> u64 {
        v & LIMIT.mask()
    }
}

/// PMBPTR_EL1, Profiling Buffer Write Pointer Register (Arm ARM D24.6).
pub mod pmbptr_el1 {
    use crate::Field;

    /// `PTR`, bits \[63:0\]: address of the next byte to write.
    pub const PTR: Field = Field::bits(63, 0);
    /// No RES0 bits (low bits may be RES0 per PMBIDR_EL1.ALIGN).
    pub const RES0: u64 = 0;
}

/// PMBSR_EL1, Profiling Buffer Status/syndrome Register (Arm ARM D24.6).
pub mod pmbsr_el1 {
    use crate::Field;

    /// `MSS`, bits \[15:0\]: management event specific syndrome (BSC for
    /// `EC == BUF`, FSC for faults).
    pub const MSS: Field = Field::bits(15, 0);
    /// `COLL`, bit 16: a sample collided with one still in flight.
    pub const COLL: Field = Field::bit(16);
    /// `S`, bit 17: service — a buffer management event is pending;
    /// profiling is stopped and PMBIRQ is asserted while set.
    pub const S: Field = Field::bit(17);
    /// `EA`, bit 18: external abort.
    pub const EA: Field = Field::bit(18);
    /// `DL`, bit 19: partial record lost.
    pub const DL: Field = Field::bit(19);
    /// `EC`, bits \[31:26\]: event class ([`PmbsrEc`]).
    pub const EC: Field = Field::bits(31, 26);
    /// RES0 bits: \[63:32\] and \[25:20\].
    pub const RES0: u64 = Field::bits(63, 32).mask() | Field::bits(25, 20).mask();

    /// `BSC`, `MSS[5:0]` when `EC == BUF`: buffer status code.
    pub const BSC: Field = Field::bits(5, 0);
    /// `FSC`, `MSS[5:0]` when `EC` is a fault: fault status code (as in
    /// ESR_ELx.DFSC).
    pub const FSC: Field = Field::bits(5, 0);

    /// `BSC == 1`: buffer filled.
    pub const BSC_FULL: u64 = 0x1;
    /// `BSC == 4`: buffer size error (later revisions; Linux
    /// `PMBSR_EL1_BUF_BSC_SIZE`).
    pub const BSC_SIZE: u64 = 0x4;

    /// PMBSR_EL1.EC, the class of a profiling buffer management event.
    #[allow(non_camel_case_types)]
    #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
    #[repr(u8)]
    pub enum PmbsrEc {
        /// `0b000000`: other buffer management event (MSS holds BSC).
        BUF = 0b000000,
        /// `0b011110`: granule protection check fault (FEAT_RME).
        FAULT_GPC = 0b011110,
        /// `0b011111`: IMPLEMENTATION DEFINED buffer management event.
        IMP_DEF = 0b011111,
        /// `0b100100`: stage 1 data abort on a write to the buffer.
        FAULT_S1 = 0b100100,
        /// `0b100101`: stage 2 data abort on a write to the buffer.
        FAULT_S2 = 0b100101,
    }

    impl PmbsrEc {
        /// The class for a 6-bit `EC` value, `None` for reserved values.
        pub const fn from_bits(ec: u64) -> Option<PmbsrEc> {
            match ec {
                0b000000 => Some(PmbsrEc::BUF),
                0b011110 => Some(PmbsrEc::FAULT_GPC),
                0b011111 => Some(PmbsrEc::IMP_DEF),
                0b100100 => Some(PmbsrEc::FAULT_S1),
                0b100101 => Some(PmbsrEc::FAULT_S2),
                _ => None,
            }
        }

        /// The 6-bit `EC` value.
        pub const fn bits(self) -> u64 {
            self as u64
        }

        /// True for the fault classes, where MSS holds an FSC.
        pub const fn is_fault(self) -> bool {
            matches!(
                self,
                PmbsrEc::FAULT_S1 | PmbsrEc::FAULT_S2 | PmbsrEc::FAULT_GPC
            )
        }
    }

    /// The event class of a whole PMBSR_EL1 value (`None` if reserved).
    pub const fn ec(pmbsr: u64) -> Option<PmbsrEc> {
        PmbsrEc::from_bits(EC.get(pmbsr))
    }

    /// A PMBSR_EL1 value reporting a buffer management event: `S = 1`,
    /// `EC = ec`, `MSS = mss` (truncated to 16 bits), other bits zero.
    pub const fn event(ec: PmbsrEc, mss: u64) -> u64 {
        MSS.set(EC.value(ec.bits()) | S.mask(), mss)
    }
}

pub use pmbsr_el1::PmbsrEc;

/// PMSDSFR_EL1, Sampling Data Source Filter Register (FEAT_SPE_FDS, Arm
/// ARM D24.6).
pub mod pmsdsfr_el1 {
    use crate::Field;

    /// `S`, bits \[63:0\]: bit n set = keep samples with data source n.
    pub const S: Field = Field::bits(63, 0);
    /// No RES0 bits.
    pub const RES0: u64 = 0;
}

/// PMBIDR_EL1, Profiling Buffer ID Register (read-only; Arm ARM D24.6).
///
/// `AddrMode` position: ARM-FACTS marks it unverified. The Arm register
/// description (DDI0601 2024-12, PMBIDR_EL1) draws the low word as
/// `RES0 | EA | AddrMode | F | P | Align`, and the 2023-09 release has bits
/// \[7:6\] RES0 between EA \[11:8\] and F \[5\]; so AddrMode is bits \[7:6\]
/// (FEAT_SPE_nVM). Linux `tools/sysreg` (which predates it) still shows
/// \[7:6\] as RES0. Chosen: \[7:6\].
pub mod pmbidr_el1 {
    #![allow(non_upper_case_globals)]
    use crate::Field;

    /// `Align`, bits \[3:0\]: PMBPTR_EL1 alignment is `2^Align` bytes.
    pub const ALIGN: Field = Field::bits(3, 0);
    /// `P`, bit 4: programming not allowed (buffer owned by a higher EL).
    pub const P: Field = Field::bit(4);
    /// `F`, bit 5: hardware Access flag / dirty state management.
    pub const F: Field = Field::bit(5);
    /// `AddrMode`, bits \[7:6\] (FEAT_SPE_nVM; position chosen as
    /// documented on the module).
    pub const AddrMode: Field = Field::bits(7, 6);
    /// `EA`, bits \[11:8\]: external abort handling ([`EA_NOT_DESCRIBED`],
    /// [`EA_IGNORED`], [`EA_SERROR`]).
    pub const EA: Field = Field::bits(11, 8);
    /// `MaxBuffSize`, bits \[47:32\]: maximum buffer size (see
    /// [`maxbuffsize`](crate::maxbuffsize)); 0 = no limit.
    pub const MaxBuffSize: Field = Field::bits(47, 32);
    /// `MaxBuffSize.E`, bits \[45:41\]: exponent.
    pub const MaxBuffSize_E: Field = Field::bits(45, 41);
    /// `MaxBuffSize.M`, bits \[40:32\]: mantissa.
    pub const MaxBuffSize_M: Field = Field::bits(40, 32);
    /// RES0 bits: \[63:48\] and \[31:12\]. (MaxBuffSize\[15:14\], bits
    /// \[47:46\], are reserved inside the field.)
    pub const RES0: u64 = Field::bits(63, 48).mask() | Field::bits(31, 12).mask();

    /// `EA == 0b0000`: not described.
    pub const EA_NOT_DESCRIBED: u64 = 0b0000;
    /// `EA == 0b0001`: external aborts on buffer writes are ignored.
    pub const EA_IGNORED: u64 = 0b0001;
    /// `EA == 0b0010`: external aborts on buffer writes raise an SError.
    pub const EA_SERROR: u64 = 0b0010;

    /// PMBPTR_EL1 alignment in bytes, `2^Align`, from a whole PMBIDR_EL1
    /// value.
    pub const fn alignment(pmbidr: u64) -> u64 {
        1 << ALIGN.get(pmbidr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::regs::testutil::assert_layout;

    #[test]
    fn pmscr_layouts() {
        use pmscr_el1 as r;
        assert_layout(
            &[r::E0SPE, r::E1SPE, r::CX, r::PA, r::TS, r::PCT],
            r::RES0,
            true,
        );
        assert_eq!(r::RES0, 0xFFFF_FFFF_FFFF_FF04);
        use pmscr_el2 as h;
        assert_layout(
            &[h::E0HSPE, h::E2SPE, h::CX, h::PA, h::TS, h::PCT],
            h::RES0,
            true,
        );
        assert_eq!(pmscr_el12::E1SPE, pmscr_el1::E1SPE);
        assert_eq!(h::PCT.value(pct::GUEST), 0xC0);
        assert_eq!(h::PCT.value(pct::PHYS), 0x40);
    }

    #[test]
    fn sampling_layouts() {
        assert_layout(&[pmsnevfr_el1::E], pmsnevfr_el1::RES0, true);
        assert_layout(&[pmsevfr_el1::E], pmsevfr_el1::RES0, true);
        assert_layout(&[pmsdsfr_el1::S], pmsdsfr_el1::RES0, true);
        assert_layout(&[pmbptr_el1::PTR], pmbptr_el1::RES0, true);
        assert_layout(
            &[pmsicr_el1::COUNT, pmsicr_el1::ECOUNT],
            pmsicr_el1::RES0,
            true,
        );
        assert_layout(
            &[pmsirr_el1::RND, pmsirr_el1::INTERVAL],
            pmsirr_el1::RES0,
            true,
        );
        assert_layout(&[pmslatfr_el1::MINLAT], pmslatfr_el1::RES0, true);
        use pmsfcr_el1 as f;
        assert_layout(
            &[
                f::FE,
                f::FT,
                f::FL,
                f::FnE,
                f::FDS,
                f::B,
                f::LD,
                f::ST,
                f::FP,
                f::SIMD,
                f::Bm,
                f::LDm,
                f::STm,
                f::FPm,
                f::SIMDm,
            ],
            f::RES0,
            true,
        );
        assert_eq!(pmsirr_el1::INTERVAL.value(0x10), 0x1000);
    }

    #[test]
    fn pmsidr_layout_and_helpers() {
        use pmsidr_el1 as r;
        assert_layout(
            &[
                r::FE,
                r::FT,
                r::FL,
                r::ARCHINST,
                r::LDS,
                r::ERND,
                r::FnE,
                r::FDS,
                r::INTERVAL,
                r::MAXSIZE,
                r::COUNTSIZE,
                r::FORMAT,
                r::PBT,
                r::CRR,
                r::EFT,
                r::FPF,
                r::ALTCLK,
                r::SME,
            ],
            r::RES0,
            true,
        );
        assert_eq!(r::interval_from_field(0), Some(256));
        assert_eq!(r::interval_from_field(1), None);
        assert_eq!(r::interval_from_field(8), Some(4096));
        assert_eq!(r::interval_from_field(9), None);
        assert_eq!(r::interval_to_field(1536), Some(0b0101));
        assert_eq!(r::interval_to_field(1000), None);
        for f in 0..16 {
            if let Some(i) = r::interval_from_field(f) {
                assert_eq!(r::interval_to_field(i), Some(f));
            }
        }
        assert_eq!(r::max_record_size(r::MAXSIZE.value(6)), 64);
    }

    #[test]
    fn pmblimitr_layout() {
        use pmblimitr_el1 as r;
        assert_layout(&[r::E, r::FM, r::PMFZ, r::LIMIT], r::RES0, true);
        assert_eq!(
            r::limit_address(0x1234_5678_9ABC_DFFF),
            0x1234_5678_9ABC_D000
        );
        assert_eq!(r::FM.value(r::FM_DISCARD), 0b100);
    }

    #[test]
    fn pmbsr_layout_and_ec() {
        use pmbsr_el1 as r;
        assert_layout(&[r::MSS, r::COLL, r::S, r::EA, r::DL, r::EC], r::RES0, true);
        for ec in [
            PmbsrEc::BUF,
            PmbsrEc::FAULT_S1,
            PmbsrEc::FAULT_S2,
            PmbsrEc::FAULT_GPC,
            PmbsrEc::IMP_DEF,
        ] {
            assert_eq!(PmbsrEc::from_bits(ec.bits()), Some(ec));
        }
        assert_eq!(PmbsrEc::FAULT_S1.bits(), 0x24);
        assert_eq!(PmbsrEc::FAULT_S2.bits(), 0x25);
        let known = (0..64).filter(|&v| PmbsrEc::from_bits(v).is_some()).count();
        assert_eq!(known, 5);
        assert_eq!(PmbsrEc::from_bits(64), None);
        assert!(PmbsrEc::FAULT_S2.is_fault());
        assert!(!PmbsrEc::BUF.is_fault());
        assert!(!PmbsrEc::IMP_DEF.is_fault());
    }

    #[test]
    fn pmbsr_buffer_full_event() {
        use pmbsr_el1 as r;
        let v = r::event(PmbsrEc::BUF, r::BSC_FULL);
        assert_eq!(v, (1 << 17) | 1);
        assert!(r::S.is_set(v));
        assert_eq!(r::ec(v), Some(PmbsrEc::BUF));
        assert_eq!(r::BSC.get(v), r::BSC_FULL);
        let f = r::event(PmbsrEc::FAULT_S2, 0x07);
        assert_eq!(f, (0x25 << 26) | (1 << 17) | 0x07);
        assert_eq!(r::ec(f), Some(PmbsrEc::FAULT_S2));
        assert_eq!(r::FSC.get(f), 0x07);
        assert_eq!(r::ec(0x3F << 26), None);
    }

    #[test]
    fn pmbidr_layout() {
        use pmbidr_el1 as r;
        assert_layout(
            &[r::ALIGN, r::P, r::F, r::AddrMode, r::EA, r::MaxBuffSize],
            r::RES0,
            true,
        );
        // E and M sit inside MaxBuffSize, above its two reserved bits.
        assert_eq!(r::MaxBuffSize_E.mask() & !r::MaxBuffSize.mask(), 0);
        assert_eq!(r::MaxBuffSize_M.mask() & !r::MaxBuffSize.mask(), 0);
        assert_eq!(r::MaxBuffSize_E.mask() & r::MaxBuffSize_M.mask(), 0);
        assert_eq!(
            r::MaxBuffSize.mask() & !(r::MaxBuffSize_E.mask() | r::MaxBuffSize_M.mask()),
            0x0000_C000_0000_0000
        );
        assert_eq!(r::RES0, 0xFFFF_0000_FFFF_F000);
        assert_eq!(r::alignment(r::ALIGN.value(6)), 64);
        assert_eq!(r::EA.value(r::EA_SERROR), 0x200);
    }
}
