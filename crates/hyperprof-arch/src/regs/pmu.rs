//! PMUv3 registers (Arm ARM D24.5 "Performance Monitors registers";
//! ARM-FACTS §4).
//!
//! Where a register gained fields in later PMU revisions that hyperprof does
//! not model (PMCR_EL0.FZO/FZS, `PMEVTYPER<n>_EL0`.MT/SH/T/RLx and the
//! threshold bits \[63:32\], PMUSERENR_EL0.UEN/TID, the instruction counter
//! bit 32 of the counter bitmaps), the module's `RES0` mask includes them:
//! it is the RES0 set of an implementation without those features, which is
//! what the hyperprof machine implements. This is stated on each `RES0`.

use crate::Field;

/// PMCR_EL0, Performance Monitors Control Register (Arm ARM D24.5).
///
/// Positions: E..LP and N from Linux `include/linux/perf/arm_pmuv3.h`; IMP
/// and IDCODE from the Arm core TRMs' PMCR_EL0 descriptions.
pub mod pmcr_el0 {
    use crate::Field;

    /// `E`, bit 0: enable the EL0/EL1 counters (those below HPMN) and the
    /// cycle counter.
    pub const E: Field = Field::bit(0);
    /// `P`, bit 1: event counter reset (write-only; reads as zero). Resets
    /// the counters below HPMN when written from EL0/EL1.
    pub const P: Field = Field::bit(1);
    /// `C`, bit 2: cycle counter reset (write-only; reads as zero).
    pub const C: Field = Field::bit(2);
    /// `D`, bit 3: clock divider (count every 64th cycle).
    pub const D: Field = Field::bit(3);
    /// `X`, bit 4: export enable.
    pub const X: Field = Field::bit(4);
    /// `DP`, bit 5: disable the cycle counter when event counting is
    /// prohibited.
    pub const DP: Field = Field::bit(5);
    /// `LC`, bit 6: cycle counter overflows at 64 bits.
    pub const LC: Field = Field::bit(6);
    /// `LP`, bit 7: event counters overflow at 64 bits (FEAT_PMUv3p5).
    pub const LP: Field = Field::bit(7);
    /// `N`, bits \[15:11\]: number of event counters (reads as
    /// MDCR_EL2.HPMN at EL0/EL1 when EL2 is implemented and enabled).
    pub const N: Field = Field::bits(15, 11);
    /// `IDCODE`, bits \[23:16\]: identification code (read-only).
    pub const IDCODE: Field = Field::bits(23, 16);
    /// `IMP`, bits \[31:24\]: implementer code (read-only).
    pub const IMP: Field = Field::bits(31, 24);
    /// RES0 in the modelled implementation: \[63:32\] (FZS, bit 32, not
    /// modelled) and \[10:8\] (FZO, bit 9, not modelled).
    pub const RES0: u64 = Field::bits(63, 32).mask() | Field::bits(10, 8).mask();
    /// Bits that read as zero: `P` and `C`.
    pub const RAZ: u64 = P.mask() | C.mask();
}

/// Layout shared by the counter bitmap registers PMCNTENSET_EL0,
/// PMCNTENCLR_EL0, PMINTENSET_EL1, PMINTENCLR_EL1, PMOVSSET_EL0 and
/// PMOVSCLR_EL0 (Arm ARM D24.5): bit n is event counter n, bit 31 the cycle
/// counter.
pub mod pm_counter_bits {
    use crate::Field;

    /// `P<n>`, bits \[30:0\]: event counters 0..30.
    pub const P: Field = Field::bits(30, 0);
    /// `C`, bit 31: the cycle counter.
    pub const C: Field = Field::bit(31);
    /// RES0 in the modelled implementation: \[63:32\] (bit 32, the
    /// FEAT_PMUv3_ICNTR instruction counter, is not modelled).
    pub const RES0: u64 = Field::bits(63, 32).mask();
    /// Index used for the cycle counter in these bitmaps and in
    /// PMSELR_EL0.SEL.
    pub const CYCLE_COUNTER: u8 = 31;

    /// The bit for counter `n` (0..=30 event counters, 31 cycle counter);
    /// 0 for `n > 31`.
    pub const fn counter_bit(n: u8) -> u64 {
        if n <= CYCLE_COUNTER {
            1 << n
        } else {
            0
        }
    }

    /// The bits of event counters `[lo, hi)` (for example the EL1 range
    /// `0..HPMN` or the EL2 range `HPMN..N`); empty if `lo >= hi`. Indices
    /// above 31 are clamped to 31, so the cycle counter bit is never included.
    pub const fn counter_range(lo: u8, hi: u8) -> u64 {
        let hi = if hi > CYCLE_COUNTER {
            CYCLE_COUNTER
        } else {
            hi
        };
        if lo >= hi {
            0
        } else {
            (u64::MAX >> (64 - (hi - lo) as u32)) << lo
        }
    }
}

/// PMCNTENSET_EL0 (Arm ARM D24.5); layout in
/// [`pm_counter_bits`](crate::pm_counter_bits).
pub mod pmcntenset_el0 {
    pub use super::pm_counter_bits::*;
}

/// PMCNTENCLR_EL0 (Arm ARM D24.5); layout in
/// [`pm_counter_bits`](crate::pm_counter_bits).
pub mod pmcntenclr_el0 {
    pub use super::pm_counter_bits::*;
}

/// PMINTENSET_EL1 (Arm ARM D24.5); layout in
/// [`pm_counter_bits`](crate::pm_counter_bits).
pub mod pmintenset_el1 {
    pub use super::pm_counter_bits::*;
}

/// PMINTENCLR_EL1 (Arm ARM D24.5); layout in
/// [`pm_counter_bits`](crate::pm_counter_bits).
pub mod pmintenclr_el1 {
    pub use super::pm_counter_bits::*;
}

/// PMOVSSET_EL0 (Arm ARM D24.5); layout in
/// [`pm_counter_bits`](crate::pm_counter_bits).
pub mod pmovsset_el0 {
    pub use super::pm_counter_bits::*;
}

/// PMOVSCLR_EL0 (Arm ARM D24.5); layout in
/// [`pm_counter_bits`](crate::pm_counter_bits).
pub mod pmovsclr_el0 {
    pub use super::pm_counter_bits::*;
}

/// Event filter bits shared by `PMEVTYPER<n>_EL0` and PMCCFILTR_EL0 (Arm ARM
/// D24.5).
const P_BIT: Field = Field::bit(31);
const U_BIT: Field = Field::bit(30);
const NSK_BIT: Field = Field::bit(29);
const NSU_BIT: Field = Field::bit(28);
const NSH_BIT: Field = Field::bit(27);
const M_BIT: Field = Field::bit(26);

/// `PMEVTYPER<n>_EL0`, Performance Monitors Event Type Register n (Arm ARM
/// D24.5). Also the layout seen through PMXEVTYPER_EL0 when PMSELR_EL0.SEL
/// selects an event counter.
pub mod pmevtyper_el0 {
    use crate::Field;

    /// `evtCount`, bits \[15:0\]: event number (bits \[15:10\] from
    /// FEAT_PMUv3p1).
    pub const EVTCOUNT: Field = Field::bits(15, 0);
    /// `M`, bit 26: EL3 filtering bit (with P).
    pub const M: Field = super::M_BIT;
    /// `NSH`, bit 27: count at EL2 when set (include EL2).
    pub const NSH: Field = super::NSH_BIT;
    /// `NSU`, bit 28: Non-secure EL0 filtering bit (with U).
    pub const NSU: Field = super::NSU_BIT;
    /// `NSK`, bit 29: Non-secure EL1 filtering bit (with P).
    pub const NSK: Field = super::NSK_BIT;
    /// `U`, bit 30: do not count at EL0 (exclude EL0).
    pub const U: Field = super::U_BIT;
    /// `P`, bit 31: do not count at EL1 (exclude EL1).
    pub const P: Field = super::P_BIT;
    /// RES0 in the modelled implementation: \[63:32\] (threshold/edge
    /// controls, not modelled) and \[25:16\] (MT, SH, T, RLK, RLU, RLH not
    /// modelled; 19:16 architecturally RES0).
    pub const RES0: u64 = Field::bits(63, 32).mask() | Field::bits(25, 16).mask();
}

/// PMCCFILTR_EL0, Performance Monitors Cycle Count Filter Register (Arm ARM
/// D24.5). Same filter bits as `PMEVTYPER<n>_EL0` but no event number.
pub mod pmccfiltr_el0 {
    use crate::Field;

    /// `M`, bit 26: EL3 filtering bit (with P).
    pub const M: Field = super::M_BIT;
    /// `NSH`, bit 27: count at EL2 when set (include EL2).
    pub const NSH: Field = super::NSH_BIT;
    /// `NSU`, bit 28: Non-secure EL0 filtering bit (with U).
    pub const NSU: Field = super::NSU_BIT;
    /// `NSK`, bit 29: Non-secure EL1 filtering bit (with P).
    pub const NSK: Field = super::NSK_BIT;
    /// `U`, bit 30: do not count at EL0 (exclude EL0).
    pub const U: Field = super::U_BIT;
    /// `P`, bit 31: do not count at EL1 (exclude EL1).
    pub const P: Field = super::P_BIT;
    /// RES0 in the modelled implementation: \[63:32\] and \[25:0\] (later
    /// filter extensions such as SH and RLx are not modelled).
    pub const RES0: u64 = Field::bits(63, 32).mask() | Field::bits(25, 0).mask();
}

/// PMSELR_EL0, Performance Monitors Event Counter Selection Register (Arm
/// ARM D24.5; layout checked against Linux `tools/sysreg`).
pub mod pmselr_el0 {
    use crate::Field;

    /// `SEL`, bits \[4:0\]: counter selected for PMXEVTYPER_EL0 /
    /// PMXEVCNTR_EL0; 31 selects PMCCFILTR_EL0.
    pub const SEL: Field = Field::bits(4, 0);
    /// `SEL` value selecting the cycle counter filter (PMCCFILTR_EL0).
    pub const SEL_CYCLE: u64 = 31;
    /// RES0 bits: \[63:5\].
    pub const RES0: u64 = Field::bits(63, 5).mask();
}

/// PMUSERENR_EL0, Performance Monitors User Enable Register (Arm ARM D24.5).
pub mod pmuserenr_el0 {
    use crate::Field;

    /// `EN`, bit 0: EL0 access to the PMU registers.
    pub const EN: Field = Field::bit(0);
    /// `SW`, bit 1: EL0 writes to PMSWINC_EL0.
    pub const SW: Field = Field::bit(1);
    /// `CR`, bit 2: EL0 reads of PMCCNTR_EL0.
    pub const CR: Field = Field::bit(2);
    /// `ER`, bit 3: EL0 reads of the event counters and PMSELR_EL0.
    pub const ER: Field = Field::bit(3);
    /// RES0 in the modelled implementation: \[63:4\] (later UEN/TID bits are
    /// not modelled).
    pub const RES0: u64 = Field::bits(63, 4).mask();
}

/// Common architectural PMU event numbers used by hyperprof's tests
/// (Arm ARM D17.11 "The PMU event number space and common events").
pub mod pmu_event {
    /// `SW_INCR` (0x00): software increment (writes to PMSWINC_EL0).
    pub const SW_INCR: u16 = 0x00;
    /// `INST_RETIRED` (0x08): instruction architecturally executed.
    pub const INST_RETIRED: u16 = 0x08;
    /// `CPU_CYCLES` (0x11): cycle.
    pub const CPU_CYCLES: u16 = 0x11;
    /// `MEM_ACCESS` (0x13): data memory access.
    pub const MEM_ACCESS: u16 = 0x13;
    /// `INST_SPEC` (0x1B): operation speculatively executed.
    pub const INST_SPEC: u16 = 0x1B;
    /// `CHAIN` (0x1E): on an odd counter, counts overflows of the even
    /// counter below it.
    pub const CHAIN: u16 = 0x1E;
    /// `STALL_FRONTEND` (0x23): no operation issued, frontend.
    pub const STALL_FRONTEND: u16 = 0x23;
    /// `STALL_BACKEND` (0x24): no operation issued, backend.
    pub const STALL_BACKEND: u16 = 0x24;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::regs::testutil::assert_layout;

    #[test]
    fn pmcr_layout() {
        use pmcr_el0 as r;
        assert_layout(
            &[
                r::E,
                r::P,
                r::C,
                r::D,
                r::X,
                r::DP,
                r::LC,
                r::LP,
                r::N,
                r::IDCODE,
                r::IMP,
            ],
            r::RES0,
            true,
        );
        assert_eq!(r::N.get(6 << 11), 6);
        assert_eq!(r::RAZ, 0b110);
    }

    #[test]
    fn counter_bitmaps() {
        use pm_counter_bits as r;
        assert_layout(&[r::P, r::C], r::RES0, true);
        assert_eq!(r::counter_bit(0), 1);
        assert_eq!(r::counter_bit(31), 1 << 31);
        assert_eq!(r::counter_bit(32), 0);
        assert_eq!(r::counter_range(0, 4), 0b1111);
        assert_eq!(r::counter_range(4, 6), 0b11_0000);
        assert_eq!(r::counter_range(6, 6), 0);
        assert_eq!(r::counter_range(7, 3), 0);
        assert_eq!(r::counter_range(0, 31), r::P.mask());
        assert_eq!(r::counter_range(0, 40), r::P.mask());
        assert_eq!(pmovsclr_el0::C, pmintenset_el1::C);
    }

    #[test]
    fn filter_layouts() {
        use pmevtyper_el0 as t;
        assert_layout(
            &[t::EVTCOUNT, t::M, t::NSH, t::NSU, t::NSK, t::U, t::P],
            t::RES0,
            true,
        );
        use pmccfiltr_el0 as c;
        assert_layout(&[c::M, c::NSH, c::NSU, c::NSK, c::U, c::P], c::RES0, true);
        assert_eq!(t::P.mask(), 1 << 31);
        assert_eq!(t::NSH.mask(), 1 << 27);
        assert_eq!(
            t::EVTCOUNT.value(u64::from(pmu_event::CHAIN)) | t::U.mask(),
            0x4000_001E
        );
    }

    #[test]
    fn selr_and_userenr_layouts() {
        assert_layout(&[pmselr_el0::SEL], pmselr_el0::RES0, true);
        assert_eq!(pmselr_el0::SEL.get(u64::MAX), pmselr_el0::SEL_CYCLE);
        use pmuserenr_el0 as u;
        assert_layout(&[u::EN, u::SW, u::CR, u::ER], u::RES0, true);
    }
}
