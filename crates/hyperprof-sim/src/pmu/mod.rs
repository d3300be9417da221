//! The PMUv3 unit of one PE (Arm ARM D12 "The Performance Monitors
//! Extension", D13 "The PMU event number space"; registers in D24.5;
//! ARM-FACTS §4).
//!
//! [`Pmu`] is a pure state machine: the PE calls [`Pmu::read`] and
//! [`Pmu::write`] for the PMU system registers (`MRS`/`MSR`), [`Pmu::sync`]
//! at every context synchronization event, [`Pmu::count`] for each span of
//! executed operations, and samples [`Pmu::irq_level`] for the PMU
//! interrupt line. Nothing here panics, whatever a guest writes.
//!
//! # The modelled implementation
//!
//! - AArch64 only, Non-secure only, no EL3. EL2 is present when
//!   [`PmuConfig::el2_implemented`]. Because EL3 is absent, the
//!   `PMEVTYPER<n>_EL0`/PMCCFILTR_EL0 bits NSK, NSU and M are stored (they
//!   read back as written) but have no effect on counting; at EL0 only `U`
//!   and at EL1 only `P` filter, and at EL2 the counter counts only when
//!   `NSH == 1` (the `CountPMUEvents()` filter rules with `HaveEL(EL3)`
//!   false).
//! - `N = PmuConfig::counters` event counters (a value above 31 is treated
//!   as 31) plus the cycle counter PMCCNTR_EL0.
//! - Counter storage is 64 bits. With FEAT_PMUv3p5 `PMEVCNTR<n>_EL0` is a
//!   64-bit counter that overflows at 32 bits (a carry out of bit 31, the
//!   upper half keeps counting) or at 64 bits (PMCR_EL0.LP for counters
//!   below HPMN, MDCR_EL2.HLP for the others); before FEAT_PMUv3p5 it is a
//!   32-bit counter, bits \[63:32\] RES0 (a write keeps bits \[31:0\] only).
//!   PMCCNTR_EL0 is always 64 bits.
//! - PMCR_EL0.LC is RES1: the Arm ARM makes LC RES1 in an implementation
//!   without AArch32 ("In an AArch64 only implementation, this field is
//!   RES1"), so the cycle counter always overflows at 64 bits. PMCR_EL0.D
//!   (divide the cycle count by 64) applies only when LC is 0, so on this
//!   machine D is stored and read back but never divides. PMCR_EL0.X
//!   (export) is stored and has no effect.
//! - Reset values ([`Pmu::new`]): the architecture makes the counters,
//!   event types, PMCCFILTR_EL0, the enable/overflow bitmaps, PMSELR_EL0,
//!   PMUSERENR_EL0 and PMCR_EL0.{D,X,DP,LP} UNKNOWN at reset; this model
//!   resets all of them to 0. PMCR_EL0.E resets to 0, LC reads as 1,
//!   N = [`PmuConfig::counters`], IMP and IDCODE are 0. The effective
//!   MDCR_EL2 (for counting, see below) starts with HPMN = N, the value
//!   MDCR_EL2.HPMN takes at reset.
//! - CONSTRAINED UNPREDICTABLE choices: MDCR_EL2.HPMN greater than N, or 0
//!   without FEAT_HPMN0, behaves as HPMN = N. An access to PMXEVCNTR_EL0
//!   with PMSELR_EL0.SEL = 31 or selecting a counter the accessor cannot
//!   use, and to PMXEVTYPER_EL0 selecting such a counter, is UNDEFINED (what
//!   the KVM selftest `vpmu_counter_access` expects). A CHAIN event never
//!   crosses the HPMN boundary: when HPMN is odd, counter HPMN does not count
//!   overflows of counter HPMN-1 (so a guest's counter cannot move a host's).
//!
//! # Strict mode (DESIGN.md "Strict mode")
//!
//! The architecture only guarantees that a system register write affects
//! counting after a context synchronization event. This model uses that
//! latitude fully:
//!
//! - The counting configuration — PMCR_EL0.{E,D,X,DP,LC,LP},
//!   PMCNTENSET/CLR_EL0, `PMEVTYPER<n>_EL0`, PMCCFILTR_EL0, and the
//!   MDCR_EL2 fields HPMN, HPME, HPMD, HCCD and HLP — is copied into the
//!   *effective* configuration only by [`Pmu::sync`], which the PE calls at
//!   every context synchronization event (ISB, exception entry, exception
//!   return). [`Pmu::count`], software increments through PMSWINC_EL0 and
//!   [`Pmu::events_until_overflow`] use only the effective configuration.
//! - Reads return the written values at once.
//! - Writes of counter values (`PMEVCNTR<n>_EL0`, PMCCNTR_EL0, PMCR_EL0.P
//!   and PMCR_EL0.C) and of the overflow flags (PMOVSSET/CLR_EL0) take
//!   effect at once, as does PMINTENSET/CLR_EL1.
//! - The interrupt request ([`Pmu::irq_level`]) is computed from the
//!   current register values (PMOVSSET_EL0, PMINTENSET_EL1, PMCR_EL0.E) and
//!   the MDCR_EL2 value passed in, not from the effective configuration.
//! - PMSELR_EL0 selects the register seen through PMXEVTYPER_EL0 and
//!   PMXEVCNTR_EL0 at once (software usually puts an ISB in between, but
//!   kvm-unit-tests `pmu-event-counter-config` does not).
//!
//! # Access checks
//!
//! [`Pmu::read`] and [`Pmu::write`] apply, for an accessor at EL0 or EL1,
//! in this order: UNDEFINED encodings (read of the write-only PMSWINC_EL0,
//! write of a read-only register, EL1 registers at EL0, a write of
//! PMUSERENR_EL0 at EL0, PMMIR_EL1 before FEAT_PMUv3p4); UNDEFINED for
//! `PMEVCNTR<n>_EL0`/`PMEVTYPER<n>_EL0` with n >= N or, when EL2 is
//! implemented, n >= MDCR_EL2.HPMN; the PMUSERENR_EL0 EL0 controls (trap to
//! EL1); MDCR_EL2.TPM and TPMCR (trap to EL2); finally the PMSELR_EL0.SEL
//! checks of the PMXEV* registers. Fine-grained traps (HDFGRTR_EL2 /
//! HDFGWTR_EL2) are the caller's job. HCR_EL2.TGE is not modelled, so EL0
//! traps always go to EL1. An access at an Exception level the machine does
//! not have (EL3, or EL2 without EL2) is UNDEFINED, and so is every access
//! when [`PmuConfig::version`] is not a PMUv3.

mod access;
mod counting;
#[cfg(test)]
mod tests;

use hyperprof_arch::{
    mdcr_el2, pm_counter_bits, pmcr_el0, pmevtyper_el0, pmu_event, ExceptionLevel, PmuVer,
};

use crate::event::{Event, ALL_EVENTS};

/// The build-time parameters of one PE's PMU (Arm ARM D12.1; the values an
/// implementation reports in PMCR_EL0.N and ID_AA64DFR0_EL1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PmuConfig {
    /// Number of event counters, PMCR_EL0.N (0..=31; larger values are
    /// treated as 31).
    pub counters: u8,
    /// PMU version, ID_AA64DFR0_EL1.PMUVer. FEAT_PMUv3p1 adds MDCR_EL2.HPMD
    /// and 16-bit event numbers; FEAT_PMUv3p4 adds PMMIR_EL1; FEAT_PMUv3p5
    /// adds 64-bit event counters, PMCR_EL0.LP, MDCR_EL2.HLP and HCCD. A
    /// value that is not a PMUv3 makes every register UNDEFINED.
    pub version: PmuVer,
    /// FEAT_HPMN0: MDCR_EL2.HPMN == 0 is defined (no counter for EL0/EL1).
    pub hpmn0: bool,
    /// EL2 is implemented (MDCR_EL2 partitions the counters).
    pub el2_implemented: bool,
}

/// Who accesses a PMU register: the accessor's Exception level and the
/// effective value of MDCR_EL2 at the time (HPMN, TPM, TPMCR). MDCR_EL2 is
/// ignored when EL2 is not implemented or the accessor is at EL2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct View {
    /// Exception level of the `MRS`/`MSR`.
    pub el: ExceptionLevel,
    /// Effective MDCR_EL2 value.
    pub mdcr_el2: u64,
}

impl View {
    /// A view from `el` with MDCR_EL2 = `mdcr_el2`.
    pub const fn new(el: ExceptionLevel, mdcr_el2: u64) -> View {
        View { el, mdcr_el2 }
    }

    /// The view of EL2 software (MDCR_EL2 does not restrict EL2).
    pub const fn el2() -> View {
        View {
            el: ExceptionLevel::EL2,
            mdcr_el2: 0,
        }
    }
}

/// PMCEID0_EL0 of this machine: bit n (n < 32) set when common event n is
/// implemented (the [`Event`]s with numbers 0x00..0x1F, and CHAIN 0x1E);
/// bits \[63:32\] (events 0x4000..0x401F) are 0.
pub const PMCEID0: u64 = pmceid(0);

/// PMCEID1_EL0 of this machine: bit n (n < 32) set when common event
/// 0x20 + n is implemented; bits \[63:32\] (events 0x4020..0x403F) are 0.
pub const PMCEID1: u64 = pmceid(1);

const fn pmceid(half: u16) -> u64 {
    let mut bits = 0u64;
    let mut i = 0;
    while i < ALL_EVENTS.len() {
        let n = ALL_EVENTS[i].number();
        if n / 32 == half {
            bits |= 1 << (n % 32);
        }
        i += 1;
    }
    if pmu_event::CHAIN / 32 == half {
        bits |= 1 << (pmu_event::CHAIN % 32);
    }
    bits
}

/// Index of the cycle counter in the counter bitmaps.
const CYCLE: u8 = pm_counter_bits::CYCLE_COUNTER;
/// Bit of the cycle counter in the counter bitmaps.
const CYCLE_BIT: u64 = 1 << CYCLE;
/// Bits \[31:0\] of a counter.
const LOW32: u64 = 0xFFFF_FFFF;

/// What an event counter counts, decoded from its event type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// A machine event produced by operations.
    Event(Event),
    /// SW_INCR: incremented by writes to PMSWINC_EL0 only.
    SwIncr,
    /// CHAIN: overflows of the even counter below (odd counters only).
    Chain,
    /// An event the machine never produces.
    Nothing,
}

impl Source {
    fn of(evtyper: u64) -> Source {
        let number = pmevtyper_el0::EVTCOUNT.get(evtyper);
        if number == u64::from(pmu_event::CHAIN) {
            return Source::Chain;
        }
        match u16::try_from(number).ok().and_then(Event::from_number) {
            Some(Event::SW_INCR) => Source::SwIncr,
            Some(e) => Source::Event(e),
            None => Source::Nothing,
        }
    }
}

/// The counting configuration as of the last context synchronization
/// event, pre-digested for [`Pmu::count`].
#[derive(Clone, Debug, PartialEq, Eq)]
struct Effective {
    /// MDCR_EL2 passed to the last [`Pmu::sync`].
    mdcr: u64,
    /// What each event counter counts.
    src: [Source; 31],
    /// Per Exception level (EL0, EL1, EL2): the counters (bit 31: the cycle
    /// counter) that are enabled, not prohibited and not filtered out.
    active: [u64; 3],
    /// Event counters that overflow at 64 bits.
    wide: u64,
    /// Even event counters whose overflows are CHAIN events for the odd
    /// counter above.
    chains: u64,
    /// The cycle counter overflows at 64 bits (PMCR_EL0.LC).
    cycle_wide: bool,
}

/// One PE's PMUv3 (Arm ARM D12): N event counters and the cycle counter
/// with their controls, the overflow flags and the PMU interrupt request.
///
/// See the [module documentation](self) for the implementation choices and
/// the strict-mode timing of configuration writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pmu {
    cfg: PmuConfig,
    /// N, clamped to 31.
    n: u8,
    /// PMCR_EL0 read/write control bits (E, D, X, DP, LC, LP) as written.
    pmcr: u64,
    /// PMCNTENSET_EL0 as written.
    cnten: u64,
    /// PMINTENSET_EL1.
    inten: u64,
    /// PMOVSSET_EL0.
    ovs: u64,
    /// PMSELR_EL0.
    selr: u64,
    /// PMUSERENR_EL0.
    userenr: u64,
    /// `PMEVTYPER<n>_EL0` as written.
    evtyper: [u64; 31],
    /// PMCCFILTR_EL0 as written.
    ccfiltr: u64,
    /// `PMEVCNTR<n>_EL0`.
    evcntr: [u64; 31],
    /// PMCCNTR_EL0.
    ccntr: u64,
    /// Counting configuration as of the last [`Pmu::sync`].
    eff: Effective,
}

impl Pmu {
    /// A PMU in its reset state (see the module documentation for the
    /// values chosen for the architecturally UNKNOWN fields).
    pub fn new(cfg: PmuConfig) -> Pmu {
        let n = cfg.counters.min(MAX_EVENT_COUNTERS);
        let mut pmu = Pmu {
            cfg,
            n,
            pmcr: pmcr_el0::LC.mask(),
            cnten: 0,
            inten: 0,
            ovs: 0,
            selr: 0,
            userenr: 0,
            evtyper: [0; 31],
            ccfiltr: 0,
            evcntr: [0; 31],
            ccntr: 0,
            eff: Effective {
                mdcr: 0,
                src: [Source::Nothing; 31],
                active: [0; 3],
                wide: 0,
                chains: 0,
                cycle_wide: true,
            },
        };
        pmu.sync(mdcr_el2::HPMN.value(u64::from(n)));
        pmu
    }

    /// The configuration this PMU was built with.
    pub fn config(&self) -> PmuConfig {
        self.cfg
    }

    /// A context synchronization event (ISB, exception entry or return):
    /// the written counting configuration, and `mdcr_el2` (the effective
    /// MDCR_EL2 from now on: HPMN, HPME, HPMD, HCCD, HLP), take effect for
    /// counting. See "Strict mode" in the module documentation.
    pub fn sync(&mut self, mdcr_el2: u64) {
        let hpmn = self.hpmn(mdcr_el2);
        let ver = self.cfg.version;
        let el2 = self.cfg.el2_implemented;
        let n = self.n;
        let low = pm_counter_bits::counter_range(0, hpmn);
        let high = pm_counter_bits::counter_range(hpmn, n);
        let e = pmcr_el0::E.is_set(self.pmcr);
        let hpme = el2 && mdcr_el2::HPME.is_set(mdcr_el2);
        let hpmd = el2 && ver.has_hpmd() && mdcr_el2::HPMD.is_set(mdcr_el2);
        let hccd = el2 && ver.has_hccd() && mdcr_el2::HCCD.is_set(mdcr_el2);
        let lp = ver.has_lp() && pmcr_el0::LP.is_set(self.pmcr);
        let hlp = el2 && ver.has_lp() && mdcr_el2::HLP.is_set(mdcr_el2);
        let dp = pmcr_el0::DP.is_set(self.pmcr);

        let mut enabled =
            self.cnten & ((if e { low | CYCLE_BIT } else { 0 }) | (if hpme { high } else { 0 }));
        if !ver.is_pmuv3() {
            enabled = 0;
        }
        let wide = (if lp { low } else { 0 }) | (if hlp { high } else { 0 });

        let mut src = [Source::Nothing; 31];
        let mut active = [0u64; 3];
        for i in 0..n {
            let typer = self.evtyper[usize::from(i)];
            src[usize::from(i)] = Source::of(typer);
            let bit = 1u64 << i;
            if enabled & bit == 0 {
                continue;
            }
            let (el0, el1, el2_ok) = filter(typer);
            let prohibited_at_el2 = hpmd && i < hpmn;
            active[0] |= if el0 { bit } else { 0 };
            active[1] |= if el1 { bit } else { 0 };
            active[2] |= if el2 && el2_ok && !prohibited_at_el2 {
                bit
            } else {
                0
            };
        }
        if enabled & CYCLE_BIT != 0 {
            let (el0, el1, el2_ok) = filter(self.ccfiltr);
            // CountPMUEvents(): HPMD prohibits counting at EL2 for the
            // counters below HPMN; the cycle counter then stops only when
            // PMCR_EL0.DP is 1. HCCD (FEAT_PMUv3p5) stops it regardless.
            let prohibited_at_el2 = (hpmd && dp) || hccd;
            active[0] |= if el0 { CYCLE_BIT } else { 0 };
            active[1] |= if el1 { CYCLE_BIT } else { 0 };
            active[2] |= if el2 && el2_ok && !prohibited_at_el2 {
                CYCLE_BIT
            } else {
                0
            };
        }

        // Even counter i chains into i + 1 when it overflows at 32 bits,
        // i + 1 exists, and both are on the same side of HPMN.
        let mut chains = 0u64;
        let mut i = 0u8;
        while i + 1 < n {
            let same_side = (i + 1 < hpmn) || (i >= hpmn);
            if same_side && wide & (1 << i) == 0 {
                chains |= 1 << i;
            }
            i += 2;
        }

        self.eff = Effective {
            mdcr: mdcr_el2,
            src,
            active,
            wide,
            chains,
            cycle_wide: pmcr_el0::LC.is_set(self.pmcr),
        };
    }

    /// The PMU interrupt request (Arm ARM `CheckForPMUOverflow()`):
    /// level-sensitive, high while some counter has both its PMOVSSET_EL0
    /// and PMINTENSET_EL1 bits set and its range is enabled — PMCR_EL0.E
    /// for the cycle counter and the counters below MDCR_EL2.HPMN,
    /// MDCR_EL2.HPME for the others. Computed from the current register
    /// values and `mdcr_el2`.
    pub fn irq_level(&self, mdcr_el2: u64) -> bool {
        let (low, high) = self.irq_levels(mdcr_el2);
        low || high
    }

    /// [`Pmu::irq_level`] split by owner: `(low, high)` where `low` is
    /// asserted by the cycle counter or a counter below MDCR_EL2.HPMN (the
    /// EL0/EL1 range, a guest's in a partitioned PMU) and `high` by a
    /// counter at or above HPMN (the EL2 range, the host's), so that a
    /// hypervisor can route each overflow to its owner.
    pub fn irq_levels(&self, mdcr_el2: u64) -> (bool, bool) {
        if !self.cfg.version.is_pmuv3() {
            return (false, false);
        }
        let hpmn = self.hpmn(mdcr_el2);
        let pending = self.ovs & self.inten;
        let low = pm_counter_bits::counter_range(0, hpmn) | CYCLE_BIT;
        let high = pm_counter_bits::counter_range(hpmn, self.n);
        let e = pmcr_el0::E.is_set(self.pmcr);
        let hpme = self.cfg.el2_implemented && mdcr_el2::HPME.is_set(mdcr_el2);
        (e && pending & low != 0, hpme && pending & high != 0)
    }

    /// Counter `n` without access checks (for a hypervisor's save/restore):
    /// `PMEVCNTR<n>_EL0` for `n < N`, PMCCNTR_EL0 for `n == 31`, 0 for any
    /// other `n`.
    pub fn counter(&self, n: u8) -> u64 {
        if n == CYCLE {
            self.ccntr
        } else if n < self.n {
            self.evcntr[usize::from(n)]
        } else {
            0
        }
    }

    /// Sets counter `n` without access checks or overflow (for a
    /// hypervisor's save/restore): `PMEVCNTR<n>_EL0` for `n < N` (bits
    /// \[63:32\] are dropped before FEAT_PMUv3p5), PMCCNTR_EL0 for
    /// `n == 31`; ignored for any other `n`. Takes effect at once.
    pub fn set_counter(&mut self, n: u8, v: u64) {
        if n == CYCLE {
            self.ccntr = v;
        } else if n < self.n {
            self.evcntr[usize::from(n)] = self.event_counter_value(v);
        }
    }

    /// The MDCR_EL2 value passed to the last [`Pmu::sync`] (the one that
    /// currently governs counting).
    pub fn effective_mdcr_el2(&self) -> u64 {
        self.eff.mdcr
    }

    /// Effective HPMN for `mdcr`: N without EL2; MDCR_EL2.HPMN, with the
    /// CONSTRAINED UNPREDICTABLE values (above N, or 0 without FEAT_HPMN0)
    /// treated as N.
    fn hpmn(&self, mdcr: u64) -> u8 {
        if !self.cfg.el2_implemented {
            return self.n;
        }
        let raw = mdcr_el2::HPMN.get(mdcr);
        match u8::try_from(raw) {
            Ok(h) if h <= self.n && (h != 0 || self.cfg.hpmn0) => h,
            _ => self.n,
        }
    }

    /// A value as stored in an event counter: 64 bits with FEAT_PMUv3p5,
    /// bits \[31:0\] before.
    fn event_counter_value(&self, v: u64) -> u64 {
        if self.cfg.version.has_lp() {
            v
        } else {
            v & LOW32
        }
    }
}

/// Largest number of event counters (31).
const MAX_EVENT_COUNTERS: u8 = hyperprof_arch::EventCounter::MAX + 1;

/// Whether a PMEVTYPER/PMCCFILTR value lets its counter count at (EL0, EL1,
/// EL2), for Non-secure state without EL3 (`CountPMUEvents()`): U excludes
/// EL0, P excludes EL1, and EL2 is counted only when NSH is 1.
fn filter(typer: u64) -> (bool, bool, bool) {
    (
        !pmevtyper_el0::U.is_set(typer),
        !pmevtyper_el0::P.is_set(typer),
        pmevtyper_el0::NSH.is_set(typer),
    )
}
