//! The PMU driver: what Linux's `arm_pmuv3` does for a set of perf events on
//! one CPU. Counting events, sampling on overflow (the counter starts at
//! `2^32 - period` and the overflow interrupt re-arms it), and 64-bit
//! software totals over 32-bit hardware counters.
//!
//! A kernel uses the counters of its range: a guest or a host without
//! partitioning all of `0..PMCR_EL0.N` (enabled by PMCR_EL0.E); a host that
//! partitions the PMU the counters from MDCR_EL2.HPMN up (enabled by
//! MDCR_EL2.HPME); an nVHE host kernel at EL1 that leaves counters to its
//! guests the top ones of `0..PMCR_EL0.N` (enabled by PMCR_EL0.E, and
//! switched off by the hypervisor while a guest runs).

use hyperprof_arch::{
    mdcr_el2, pm_counter_bits, pmcr_el0, pmevtyper_el0, Cpu, EventCounter, SysReg,
};

use super::{rd, wr, DriverError};

/// Which Exception levels an event counts at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Filter {
    /// Count at EL0.
    pub el0: bool,
    /// Count at EL1.
    pub el1: bool,
    /// Count at EL2.
    pub el2: bool,
}

impl Filter {
    /// Every level.
    pub const ALL: Filter = Filter {
        el0: true,
        el1: true,
        el2: true,
    };

    /// PMEVTYPER/PMCCFILTR filter bits: P excludes EL1, U excludes EL0,
    /// NSH includes EL2.
    fn bits(self) -> u64 {
        let mut v = 0;
        v = pmevtyper_el0::P.set(v, !self.el1 as u64);
        v = pmevtyper_el0::U.set(v, !self.el0 as u64);
        pmevtyper_el0::NSH.set(v, self.el2 as u64)
    }
}

/// One perf event: an event number counted by one hardware counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventSpec {
    /// Architected event number.
    pub event: u16,
    /// Levels counted.
    pub filter: Filter,
    /// Sample every `period` events (raise an interrupt); `None` counts only.
    pub period: Option<u32>,
}

/// A counter the driver programmed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    /// Hardware counter index.
    pub counter: u8,
    /// What it counts.
    pub spec: EventSpec,
    /// Overflows seen.
    pub overflows: u64,
    /// Count before the hardware counter's current value.
    base: u64,
    /// Hardware value programmed at the last (re)arm.
    start: u32,
}

/// The range of counters a kernel owns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Range {
    /// `0..N` as this Exception level sees N (guest, or unpartitioned host).
    Low,
    /// `HPMN..N` (a host at EL2 that left the low range to guests).
    High,
    /// The top `k` counters of `0..N` as this Exception level sees N: an
    /// nVHE host kernel at EL1, which cannot write MDCR_EL2 and leaves the
    /// counters below them to its guests.
    Top(u8),
}

/// The driver's record of what happened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PmuDriverStats {
    /// Interrupts taken.
    pub irqs: u64,
    /// Interrupts without an overflow of ours.
    pub spurious: u64,
}

/// A set of events on one CPU's PMU.
#[derive(Clone, Debug)]
pub struct PmuDriver {
    range: Range,
    first: u8,
    end: u8,
    slots: Vec<Slot>,
    stats: PmuDriverStats,
}

fn counter(n: u8) -> Result<EventCounter, DriverError> {
    EventCounter::new(n).ok_or(DriverError::BadConfig("counter index above 30"))
}

impl PmuDriver {
    /// Probes the counters of `range` (PMCR_EL0.N, and MDCR_EL2.HPMN for
    /// the high range) and resets them.
    pub fn probe(cpu: &mut impl Cpu, range: Range) -> Result<Self, DriverError> {
        let n = pmcr_el0::N.get(rd(cpu, SysReg::PMCR_EL0)?) as u8;
        let (first, end) = match range {
            Range::Low => (0, n),
            Range::Top(k) => (n.saturating_sub(k), n),
            Range::High => {
                let hpmn = mdcr_el2::HPMN.get(rd(cpu, SysReg::MDCR_EL2)?) as u8;
                (hpmn.min(n), n)
            }
        };
        let d = PmuDriver {
            range,
            first,
            end,
            slots: Vec::new(),
            stats: PmuDriverStats::default(),
        };
        // Disable and clear our counters; reset the low range as PMCR.P does.
        let mask = d.mask();
        wr(cpu, SysReg::PMCNTENCLR_EL0, mask)?;
        wr(cpu, SysReg::PMINTENCLR_EL1, mask)?;
        wr(cpu, SysReg::PMOVSCLR_EL0, mask)?;
        for c in first..end {
            wr(cpu, SysReg::PMEVCNTR_EL0(counter(c)?), 0)?;
        }
        Ok(d)
    }

    /// Counters this driver may use.
    pub fn counters(&self) -> core::ops::Range<u8> {
        self.first..self.end
    }

    fn mask(&self) -> u64 {
        pm_counter_bits::counter_range(self.first, self.end)
    }

    /// Claims a free counter for `spec`; returns its index.
    pub fn add(&mut self, spec: EventSpec) -> Result<u8, DriverError> {
        if spec.period == Some(0) {
            return Err(DriverError::BadConfig("sample period 0"));
        }
        let c = (self.first..self.end)
            .find(|c| self.slots.iter().all(|s| s.counter != *c))
            .ok_or(DriverError::BadConfig("no free counter"))?;
        self.slots.push(Slot {
            counter: c,
            spec,
            overflows: 0,
            base: 0,
            start: 0,
        });
        Ok(c)
    }

    /// The counters of the programmed slots, as a PMCNTEN bitmap (what an
    /// nVHE host tells its hypervisor to switch off while guests run).
    pub fn slot_mask(&self) -> u64 {
        self.slots
            .iter()
            .fold(0, |m, s| m | pm_counter_bits::counter_bit(s.counter))
    }

    /// The programmed counters.
    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    /// What the driver saw.
    pub fn stats(&self) -> PmuDriverStats {
        self.stats
    }

    fn arm_value(spec: &EventSpec) -> u32 {
        spec.period.map_or(0, |p| 0u32.wrapping_sub(p))
    }

    /// Programs every slot and enables counting.
    pub fn start(&mut self, cpu: &mut impl Cpu) -> Result<(), DriverError> {
        let mut en = 0;
        let mut inten = 0;
        for s in &mut self.slots {
            let c = counter(s.counter)?;
            let ty = pmevtyper_el0::EVTCOUNT.set(s.spec.filter.bits(), s.spec.event as u64);
            wr(cpu, SysReg::PMEVTYPER_EL0(c), ty)?;
            s.start = Self::arm_value(&s.spec);
            wr(cpu, SysReg::PMEVCNTR_EL0(c), s.start as u64)?;
            en |= pm_counter_bits::counter_bit(s.counter);
            if s.spec.period.is_some() {
                inten |= pm_counter_bits::counter_bit(s.counter);
            }
        }
        wr(cpu, SysReg::PMINTENSET_EL1, inten)?;
        wr(cpu, SysReg::PMCNTENSET_EL0, en)?;
        match self.range {
            Range::Low | Range::Top(_) => {
                let pmcr = rd(cpu, SysReg::PMCR_EL0)?;
                wr(cpu, SysReg::PMCR_EL0, pmcr_el0::E.set(pmcr, 1))?;
            }
            Range::High => {
                let mdcr = rd(cpu, SysReg::MDCR_EL2)?;
                wr(cpu, SysReg::MDCR_EL2, mdcr_el2::HPME.set(mdcr, 1))?;
            }
        }
        cpu.isb();
        Ok(())
    }

    /// The 64-bit total of slot `i` (overflows of the 32-bit counter included).
    pub fn read(&self, cpu: &mut impl Cpu, i: usize) -> Result<u64, DriverError> {
        let s = self
            .slots
            .get(i)
            .ok_or(DriverError::BadConfig("no such slot"))?;
        let hw = rd(cpu, SysReg::PMEVCNTR_EL0(counter(s.counter)?))? as u32;
        Ok(s.base + hw.wrapping_sub(s.start) as u64)
    }

    /// Handles the PMU interrupt: reads and clears our overflow flags,
    /// accounts each overflow and re-arms sampling counters.
    pub fn handle_irq(&mut self, cpu: &mut impl Cpu) -> Result<u64, DriverError> {
        self.stats.irqs += 1;
        let ovs = rd(cpu, SysReg::PMOVSCLR_EL0)? & self.mask();
        if ovs == 0 {
            self.stats.spurious += 1;
            return Ok(0);
        }
        wr(cpu, SysReg::PMOVSCLR_EL0, ovs)?;
        for s in &mut self.slots {
            if ovs & pm_counter_bits::counter_bit(s.counter) == 0 {
                continue;
            }
            let c = counter(s.counter)?;
            s.overflows += 1;
            let hw = rd(cpu, SysReg::PMEVCNTR_EL0(c))? as u32;
            // Events up to the wrap, plus those since.
            s.base += (1u64 << 32) - s.start as u64 + hw as u64;
            s.start = Self::arm_value(&s.spec);
            if s.spec.period.is_some() {
                wr(cpu, SysReg::PMEVCNTR_EL0(c), s.start as u64)?;
            } else {
                s.start = hw;
            }
        }
        cpu.isb();
        Ok(ovs)
    }

    /// Disables our counters.
    pub fn stop(&mut self, cpu: &mut impl Cpu) -> Result<(), DriverError> {
        let mask = self.mask();
        wr(cpu, SysReg::PMCNTENCLR_EL0, mask)?;
        wr(cpu, SysReg::PMINTENCLR_EL1, mask)?;
        cpu.isb();
        Ok(())
    }
}
