//! Operations: the unit of execution of the machine. A workload produces a
//! stream of operations; the PE counts their events and the SPE unit samples
//! them.

use hyperprof_spe::packet::event as spe_event;

use crate::event::{Event, EventCounts};

/// The class of an operation, as SPE's operation type packet reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// A load from `data_va`.
    Load,
    /// A store to `data_va`.
    Store,
    /// A branch to `target`.
    Branch {
        /// Conditional branch.
        conditional: bool,
        /// Indirect (register) branch.
        indirect: bool,
        /// Whether it was taken (a conditional branch may fall through).
        taken: bool,
    },
    /// Anything else (arithmetic, system, ...).
    Other,
}

/// One executed operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Op {
    /// Virtual address of the instruction.
    pub pc: u64,
    /// What it does.
    pub kind: OpKind,
    /// Data virtual address (loads and stores).
    pub data_va: u64,
    /// Branch target (branches).
    pub target: u64,
    /// Cycles from dispatch to issue.
    pub issue_latency: u16,
    /// Cycles from dispatch to completion.
    pub total_latency: u16,
    /// Cycles of the data address translation (loads and stores).
    pub translation_latency: u16,
    /// Microarchitectural outcomes as SPE event bits
    /// ([`hyperprof_spe::packet::event`]): L1D_REFILL, TLB_WALK, LLC_ACCESS,
    /// LLC_MISS, MISPREDICTED, NOT_TAKEN. RETIRED, L1D_ACCESS and TLB_ACCESS
    /// follow from the kind and are added by [`Op::spe_events`].
    pub outcome: u64,
    /// Data source (implementation defined; 0 when not from memory).
    pub data_source: u16,
    /// Loads and stores: the OP TYPE packet's subclass bits beyond ST
    /// (0 for a general-purpose register access; 0b10 with AT (0x04),
    /// EXCL (0x08) and AR (0x10) for atomics, exclusives and
    /// acquire/release accesses).
    pub ldst_subclass: u8,
    /// Cycles the operation occupies the pipeline (CPU_CYCLES), at least 1.
    pub cycles: u32,
}

impl Op {
    /// An operation that neither accesses memory nor branches, in one cycle.
    pub fn other(pc: u64) -> Op {
        Op {
            pc,
            kind: OpKind::Other,
            data_va: 0,
            target: 0,
            issue_latency: 1,
            total_latency: 1,
            translation_latency: 0,
            outcome: 0,
            data_source: 0,
            ldst_subclass: 0,
            cycles: 1,
        }
    }

    /// The SPE events packet bits for this operation.
    pub fn spe_events(&self) -> u64 {
        let mut e = self.outcome | 1 << spe_event::RETIRED;
        if matches!(self.kind, OpKind::Load | OpKind::Store) {
            e |= 1 << spe_event::L1D_ACCESS | 1 << spe_event::TLB_ACCESS;
        }
        e
    }

    /// Adds the PMU events this operation causes to `counts`.
    #[inline]
    pub fn add_events(&self, counts: &mut EventCounts) {
        let o = |bit: u32| self.outcome >> bit & 1;
        counts.add(Event::INST_RETIRED, 1);
        counts.add(Event::INST_SPEC, 1);
        counts.add(Event::CPU_CYCLES, self.cycles as u64);
        let stall = (self.cycles as u64).saturating_sub(1);
        match self.kind {
            OpKind::Load | OpKind::Store => {
                let load = self.kind == OpKind::Load;
                counts.add(Event::MEM_ACCESS, 1);
                counts.add(Event::L1D_CACHE, 1);
                counts.add(Event::L1D_TLB, 1);
                counts.add(Event::LD_RETIRED, load as u64);
                counts.add(Event::ST_RETIRED, !load as u64);
                counts.add(Event::L1D_CACHE_REFILL, o(spe_event::L1D_REFILL));
                // Every L1 refill is an L2 access; every access beyond the
                // L2 is an L2 refill (so each event stays additive in the
                // outcome bits, as the workloads' closed forms need).
                counts.add(Event::L2D_CACHE, o(spe_event::L1D_REFILL));
                counts.add(Event::L2D_CACHE_REFILL, o(spe_event::LLC_ACCESS));
                counts.add(Event::L1D_TLB_REFILL, o(spe_event::TLB_WALK));
                counts.add(
                    Event::LL_CACHE_MISS_RD,
                    o(spe_event::LLC_MISS) * load as u64,
                );
                counts.add(Event::STALL_BACKEND, stall);
            }
            OpKind::Branch { .. } => {
                let mis = o(spe_event::MISPREDICTED);
                counts.add(Event::BR_RETIRED, 1);
                counts.add(Event::BR_PRED, 1 - mis);
                counts.add(Event::BR_MIS_PRED, mis);
                counts.add(Event::BR_MIS_PRED_RETIRED, mis);
                counts.add(Event::STALL_FRONTEND, stall);
            }
            OpKind::Other => counts.add(Event::STALL_BACKEND, stall),
        }
    }
}

/// A named code region, for profiles that name functions.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Symbol {
    /// Function name.
    pub name: String,
    /// First instruction address.
    pub start: u64,
    /// One past the last instruction address.
    pub end: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_follow_the_kind() {
        let op = Op {
            pc: 0x1000,
            kind: OpKind::Load,
            data_va: 0x2000,
            target: 0,
            issue_latency: 1,
            total_latency: 40,
            translation_latency: 1,
            outcome: 1 << spe_event::L1D_REFILL | 1 << spe_event::LLC_MISS,
            data_source: 3,
            ldst_subclass: 0,
            cycles: 4,
        };
        let mut c = EventCounts::default();
        op.add_events(&mut c);
        assert_eq!(c.get(Event::INST_RETIRED), 1);
        assert_eq!(c.get(Event::CPU_CYCLES), 4);
        assert_eq!(c.get(Event::LD_RETIRED), 1);
        assert_eq!(c.get(Event::ST_RETIRED), 0);
        assert_eq!(c.get(Event::L1D_CACHE_REFILL), 1);
        assert_eq!(c.get(Event::LL_CACHE_MISS_RD), 1);
        assert_eq!(c.get(Event::STALL_BACKEND), 3);
        let ev = op.spe_events();
        assert!(ev & 1 << spe_event::RETIRED != 0);
        assert!(ev & 1 << spe_event::L1D_ACCESS != 0);
    }
}
