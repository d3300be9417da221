//! The PMU events of many operations, gathered without building each
//! [`Op`](crate::op::Op): per operation a few additions instead of a whole
//! operation and [`Op::add_events`](crate::op::Op::add_events). What it
//! adds up is exactly what `add_events` would for the same operations (a
//! test below checks it on every kind of outcome).

use super::MemOutcome;
use crate::event::{Event, EventCounts};

/// Events of loads, stores and branches, summed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    loads: u64,
    stores: u64,
    l1_refills: u64,
    beyond_l2: u64,
    tlb_walks: u64,
    llc_miss_loads: u64,
    mem_cycles: u64,
    branches: u64,
    mispredicts: u64,
    branch_cycles: u64,
}

impl Tally {
    /// A load or store that found `m` and took `cycles`.
    #[inline]
    pub fn mem(&mut self, m: &MemOutcome, write: bool, cycles: u32) {
        self.loads += u64::from(!write);
        self.stores += u64::from(write);
        self.l1_refills += u64::from(m.l1_refill);
        self.beyond_l2 += u64::from(m.llc_access);
        self.tlb_walks += u64::from(m.tlb_walk);
        self.llc_miss_loads += u64::from(m.llc_miss && !write);
        self.mem_cycles += u64::from(cycles);
    }

    /// A branch, and the cycles its misprediction cost (0 when predicted).
    #[inline]
    pub fn branch(&mut self, mispredicted: bool, penalty: u64) {
        self.branches += 1;
        self.mispredicts += u64::from(mispredicted);
        self.branch_cycles += 1 + penalty;
    }

    /// Adds the events to `c`.
    pub fn add_to(&self, c: &mut EventCounts) {
        let n = self.loads + self.stores;
        let b = self.branches;
        c.add(Event::INST_RETIRED, n + b);
        c.add(Event::INST_SPEC, n + b);
        c.add(Event::CPU_CYCLES, self.mem_cycles + self.branch_cycles);
        c.add(Event::MEM_ACCESS, n);
        c.add(Event::L1D_CACHE, n);
        c.add(Event::L1D_TLB, n);
        c.add(Event::LD_RETIRED, self.loads);
        c.add(Event::ST_RETIRED, self.stores);
        c.add(Event::L1D_CACHE_REFILL, self.l1_refills);
        c.add(Event::L2D_CACHE, self.l1_refills);
        c.add(Event::L2D_CACHE_REFILL, self.beyond_l2);
        c.add(Event::L1D_TLB_REFILL, self.tlb_walks);
        c.add(Event::LL_CACHE_MISS_RD, self.llc_miss_loads);
        c.add(Event::STALL_BACKEND, self.mem_cycles - n);
        c.add(Event::BR_RETIRED, b);
        c.add(Event::BR_PRED, b - self.mispredicts);
        c.add(Event::BR_MIS_PRED, self.mispredicts);
        c.add(Event::BR_MIS_PRED_RETIRED, self.mispredicts);
        c.add(Event::STALL_FRONTEND, self.branch_cycles - b);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{BranchInfo, Hierarchy, UarchConfig};
    use super::*;

    #[test]
    fn a_tally_adds_up_to_what_each_operation_adds() {
        // Two hierarchies see the same accesses: one builds every
        // operation, the other tallies.
        let cores = [UarchConfig::default(), UarchConfig::default()];
        let (mut a, mut b) = (
            Hierarchy::new(&cores).unwrap(),
            Hierarchy::new(&cores).unwrap(),
        );
        let mut by_op = EventCounts::default();
        let mut tally = Tally::default();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for i in 0..20_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let core = (x & 1) as usize;
            let pc = 0x1000 + (x >> 8 & 0xfff) * 4;
            if x >> 40 & 3 == 0 {
                let br = BranchInfo {
                    conditional: x >> 42 & 1 == 1,
                    indirect: x >> 43 & 1 == 1,
                    taken: x >> 44 & 1 == 1,
                    target: 0x2000 + (x >> 45 & 0xff) * 4,
                    link: x >> 53 & 7 == 0,
                    is_return: x >> 56 & 7 == 0,
                };
                let (op, _) = a.retire(core, pc, None, Some(&br));
                op.add_events(&mut by_op);
                let kept = b.retire_branch(core, pc, &br, &mut tally, i % 7 == 0);
                assert_eq!(kept.is_some(), i % 7 == 0);
                if let Some(k) = kept {
                    assert_eq!(k, op);
                }
            } else {
                // Addresses over a few MiB, shared by both cores: hits,
                // misses, peer transfers, upgrades and TLB walks.
                let va = (x >> 20) & 0x3f_fff8;
                let access = (va, 0x4000_0000 + va, x >> 62 & 1 == 1);
                let (op, _) = a.retire(core, pc, Some(access), None);
                op.add_events(&mut by_op);
                let kept = b.retire_mem(core, pc, access, &mut tally, i % 5 == 0);
                if let Some(k) = kept {
                    assert_eq!(k, op);
                }
            }
        }
        let mut by_tally = EventCounts::default();
        tally.add_to(&mut by_tally);
        assert_eq!(by_tally, by_op);
        assert!(by_op.get(Event::L2D_CACHE_REFILL) > 0 && by_op.get(Event::BR_MIS_PRED) > 0);
    }
}
