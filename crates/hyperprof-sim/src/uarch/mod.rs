//! The microarchitecture model behind the operations of real code: per
//! core an L1 data cache, a private L2, a data TLB and a branch predictor;
//! a last-level cache shared by every core with a directory that keeps the
//! private caches coherent; and an in-order timing model (cycles = issue
//! + the penalties of what missed).
//!
//! It is deterministic and configured per CPU group. What it says about an
//! access or a branch becomes an [`Op`]'s latencies, event bits and data
//! source, so SPE records and PMU counts of real code come from the same
//! source. Data sources use the Neoverse encoding Linux perf decodes
//! (L1D 0x0, L2 0x8, peer core 0x9, system cache 0xb, DRAM 0xe).

pub mod branch;
pub mod cache;
pub mod tally;
pub mod tlb;

use std::collections::HashMap;

use hyperprof_spe::packet::event as spe_event;

use crate::op::{Op, OpKind};
pub use branch::{BranchConfig, BranchInfo, Predictor};
pub use cache::{Cache, CacheGeometry, LineState};
pub use tally::Tally;
pub use tlb::{Tlb, TlbConfig};

/// Neoverse data source: L1 data cache.
pub const SOURCE_L1D: u16 = 0x0;
/// Neoverse data source: the core's L2.
pub const SOURCE_L2: u16 = 0x8;
/// Neoverse data source: another core's private cache.
pub const SOURCE_PEER_CORE: u16 = 0x9;
/// Neoverse data source: the shared system-level cache.
pub const SOURCE_SYS_CACHE: u16 = 0xb;
/// Neoverse data source: DRAM.
pub const SOURCE_DRAM: u16 = 0xe;

/// A core's caches, TLB and predictor, and the costs beyond them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UarchConfig {
    /// L1 data cache.
    pub l1d: CacheGeometry,
    /// Private L2.
    pub l2: CacheGeometry,
    /// The shared last-level cache (the machine's, from CPU 0's group).
    pub llc: CacheGeometry,
    /// Data TLB.
    pub tlb: TlbConfig,
    /// Branch predictor.
    pub branch: BranchConfig,
    /// Cycles for a line another core holds modified.
    pub peer_latency: u16,
    /// Cycles for a line from DRAM.
    pub dram_latency: u16,
}

impl Default for UarchConfig {
    /// Roughly a Neoverse N1: 64 KiB 4-way L1D (4 cycles), 1 MiB 8-way L2
    /// (11), an 8 MiB 16-way system cache (35), 48-entry L1 data TLB with
    /// a 20-cycle walk, 11-cycle mispredict, DRAM at 120 cycles.
    fn default() -> Self {
        UarchConfig {
            l1d: CacheGeometry {
                size: 64 << 10,
                ways: 4,
                line: 64,
                latency: 4,
            },
            l2: CacheGeometry {
                size: 1 << 20,
                ways: 8,
                line: 64,
                latency: 11,
            },
            llc: CacheGeometry {
                size: 8 << 20,
                ways: 16,
                line: 64,
                latency: 35,
            },
            tlb: TlbConfig {
                entries: 48,
                ways: 48,
                walk_latency: 20,
            },
            branch: BranchConfig {
                entries: 4096,
                return_stack: 16,
                mispredict_penalty: 11,
            },
            peer_latency: 50,
            dram_latency: 120,
        }
    }
}

impl UarchConfig {
    /// Whether every part describes something buildable.
    pub fn check(&self) -> Result<(), String> {
        for (name, g) in [("l1d", self.l1d), ("l2", self.l2), ("llc", self.llc)] {
            g.check().map_err(|e| format!("{name}: {e}"))?;
        }
        if self.l1d.line != self.l2.line || self.l2.line != self.llc.line {
            return Err("l1d, l2 and llc must have the same line size".into());
        }
        if self.tlb.entries == 0 || self.tlb.ways == 0 || self.tlb.entries % self.tlb.ways != 0 {
            return Err(format!(
                "tlb: {} entries are not a multiple of {} ways",
                self.tlb.entries, self.tlb.ways
            ));
        }
        if !self.branch.entries.is_power_of_two() {
            return Err(format!(
                "branch: {} entries is not a power of two",
                self.branch.entries
            ));
        }
        Ok(())
    }
}

/// What one data access found and cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemOutcome {
    /// Cycles until the data arrived (at least the L1 latency).
    pub latency: u16,
    /// Cycles of the translation (1 on a TLB hit).
    pub translation: u16,
    /// Missed the L1.
    pub l1_refill: bool,
    /// Reached the L2.
    pub l2_access: bool,
    /// Missed the L2.
    pub l2_refill: bool,
    /// Reached the last-level cache.
    pub llc_access: bool,
    /// Missed the last-level cache.
    pub llc_miss: bool,
    /// Walked the translation tables.
    pub tlb_walk: bool,
    /// Where the data came from (Neoverse encoding).
    pub source: u16,
}

#[derive(Clone, Copy, Debug, Default)]
struct Directory {
    /// Cores whose private caches may hold the line.
    sharers: u64,
    /// The core holding it modified, if any.
    owner: Option<u8>,
}

#[derive(Clone, Debug)]
struct Private {
    l1: Cache,
    l2: Cache,
    tlb: Tlb,
    predictor: Predictor,
    /// The most recently used L1 line (u64::MAX: none known) and whether
    /// it is held modified: a repeated access to it is a hit that changes
    /// no LRU order, so it skips the lookups. Coherence actions on it by
    /// other cores forget it.
    mru_line: u64,
    mru_modified: bool,
    /// The most recently used TLB page (u64::MAX: none known).
    mru_page: u64,
}

/// Every core's private caches and the shared last-level cache.
#[derive(Clone, Debug)]
pub struct Hierarchy {
    configs: Vec<UarchConfig>,
    cores: Vec<Private>,
    llc: Cache,
    directory: HashMap<u64, Directory>,
}

impl Hierarchy {
    /// Cold caches for cores with the given configurations (at most 64;
    /// the last-level cache is the first core's).
    pub fn new(configs: &[UarchConfig]) -> Result<Hierarchy, String> {
        if configs.is_empty() || configs.len() > 64 {
            return Err(format!("{} cores: the model holds 1 to 64", configs.len()));
        }
        for (i, c) in configs.iter().enumerate() {
            c.check().map_err(|e| format!("cpu {i}: {e}"))?;
            if c.l1d.line != configs[0].llc.line {
                return Err(format!(
                    "cpu {i}: line size differs from the shared cache's"
                ));
            }
        }
        Ok(Hierarchy {
            configs: configs.to_vec(),
            cores: configs
                .iter()
                .map(|c| Private {
                    l1: Cache::new(c.l1d),
                    l2: Cache::new(c.l2),
                    tlb: Tlb::new(c.tlb),
                    predictor: Predictor::new(c.branch),
                    mru_line: u64::MAX,
                    mru_modified: false,
                    mru_page: u64::MAX,
                })
                .collect(),
            llc: Cache::new(configs[0].llc),
            directory: HashMap::new(),
        })
    }

    /// Number of cores.
    pub fn cores(&self) -> usize {
        self.cores.len()
    }

    /// Core `core`'s configuration.
    pub fn config(&self, core: usize) -> &UarchConfig {
        &self.configs[core]
    }

    /// TLBI or a change of translation regime on `core`.
    pub fn flush_tlb(&mut self, core: usize) {
        self.cores[core].tlb.flush();
        self.cores[core].mru_page = u64::MAX;
    }

    /// Removes `line` from every core's private caches but `keep`'s.
    fn invalidate_others(&mut self, line: u64, sharers: u64, keep: usize) {
        for (i, p) in self.cores.iter_mut().enumerate() {
            if i != keep && sharers >> i & 1 != 0 {
                p.l1.invalidate(line);
                p.l2.invalidate(line);
                if p.mru_line == line {
                    p.mru_line = u64::MAX;
                }
            }
        }
    }

    /// Makes `core` the only holder of `line`, modified.
    fn take_ownership(&mut self, core: usize, line: u64) {
        let d = self.directory.entry(line).or_default();
        let others = d.sharers & !(1u64 << core);
        d.sharers = 1 << core;
        d.owner = Some(core as u8);
        if others != 0 {
            self.invalidate_others(line, others, core);
        }
    }

    /// A data access by `core` to virtual address `va` at physical
    /// address `pa`: the TLB, then L1, L2, the other cores and the shared
    /// cache, in that order, keeping every private cache coherent.
    pub fn access(&mut self, core: usize, va: u64, pa: u64, write: bool) -> MemOutcome {
        let cfg = self.configs[core];
        let mut out = MemOutcome {
            latency: cfg.l1d.latency,
            translation: 1,
            source: SOURCE_L1D,
            ..MemOutcome::default()
        };
        let page = va >> 12;
        let p = &mut self.cores[core];
        if p.mru_page != page {
            if p.tlb.access(va) {
                out.tlb_walk = true;
                out.translation = cfg.tlb.walk_latency;
            }
            p.mru_page = page;
        }
        let line = p.l1.line_of(pa);
        if p.mru_line == line && (!write || p.mru_modified) {
            return out;
        }
        let out = self.access_line(core, line, write, out);
        let p = &mut self.cores[core];
        p.mru_line = line;
        p.mru_modified = p.l1.probe(line) == Some(LineState::Modified);
        out
    }

    /// [`Hierarchy::access`] past the TLB and the most recently used line.
    fn access_line(
        &mut self,
        core: usize,
        line: u64,
        write: bool,
        mut out: MemOutcome,
    ) -> MemOutcome {
        let cfg = self.configs[core];
        let want = if write {
            LineState::Modified
        } else {
            LineState::Shared
        };
        let p = &mut self.cores[core];
        if let Some(state) = p.l1.lookup(line) {
            if write && state == LineState::Shared {
                self.upgrade(core, line, &mut out);
            }
            return out;
        }
        out.l1_refill = true;
        out.l2_access = true;
        if let Some(state) = p.l2.lookup(line) {
            out.latency = cfg.l2.latency;
            out.source = SOURCE_L2;
            let now = if write { LineState::Modified } else { state };
            if write && state == LineState::Shared {
                self.upgrade(core, line, &mut out);
            }
            self.cores[core].l1.fill(line, now);
            return out;
        }
        out.l2_refill = true;
        out.llc_access = true;
        let in_llc = self.llc.lookup(line).is_some();
        let d = self.directory.get(&line).copied().unwrap_or_default();
        match d.owner {
            Some(owner) if usize::from(owner) != core && in_llc => {
                out.latency = cfg.peer_latency;
                out.source = SOURCE_PEER_CORE;
                let o = usize::from(owner);
                if self.cores[o].mru_line == line {
                    self.cores[o].mru_line = u64::MAX;
                }
                if write {
                    self.cores[o].l1.invalidate(line);
                    self.cores[o].l2.invalidate(line);
                } else {
                    self.cores[o].l1.set_state(line, LineState::Shared);
                    self.cores[o].l2.set_state(line, LineState::Shared);
                    if let Some(e) = self.directory.get_mut(&line) {
                        e.owner = None;
                    }
                }
            }
            _ if in_llc => {
                out.latency = cfg.llc.latency;
                out.source = SOURCE_SYS_CACHE;
            }
            _ => {
                out.latency = cfg.dram_latency;
                out.source = SOURCE_DRAM;
                out.llc_miss = true;
                if let Some(v) = self.llc.fill(line, LineState::Shared) {
                    // The shared cache is inclusive: its victim leaves
                    // every private cache.
                    if let Some(vd) = self.directory.remove(&v.line) {
                        self.invalidate_others(v.line, vd.sharers, usize::MAX);
                    }
                }
            }
        }
        if write {
            self.take_ownership(core, line);
        } else {
            self.directory.entry(line).or_default().sharers |= 1 << core;
        }
        let p = &mut self.cores[core];
        if let Some(v) = p.l2.fill(line, want) {
            // The L2 holds everything the L1 does.
            p.l1.invalidate(v.line);
            if v.state == LineState::Modified {
                if let Some(e) = self.directory.get_mut(&v.line) {
                    if e.owner == Some(core as u8) {
                        e.owner = None;
                    }
                }
            }
        }
        self.cores[core].l1.fill(line, want);
        out
    }

    /// A write to a line held shared: the other copies go, at the cost of
    /// a trip to the shared cache's directory (not a cache access: the data
    /// stays where it is).
    fn upgrade(&mut self, core: usize, line: u64, out: &mut MemOutcome) {
        out.latency = out.latency.max(self.configs[core].llc.latency);
        self.take_ownership(core, line);
        let p = &mut self.cores[core];
        p.l1.set_state(line, LineState::Modified);
        p.l2.set_state(line, LineState::Modified);
    }

    /// Trains `core`'s predictor on a retired branch; true if mispredicted.
    #[inline]
    pub fn branch(&mut self, core: usize, pc: u64, b: &BranchInfo) -> bool {
        self.cores[core].predictor.retire(pc, b)
    }

    /// The [`Op`] of a retired instruction on `core`: its data access
    /// (virtual address, physical address, whether it writes) or branch
    /// through the model, and the cycles the in-order pipeline spends.
    #[inline]
    pub fn retire(
        &mut self,
        core: usize,
        pc: u64,
        mem: Option<(u64, u64, bool)>,
        branch: Option<&BranchInfo>,
    ) -> (Op, MemOutcome) {
        if let Some((va, pa, write)) = mem {
            let m = self.access(core, va, pa, write);
            (self.mem_op(core, pc, va, &m, write), m)
        } else if let Some(b) = branch {
            let wrong = self.branch(core, pc, b);
            (self.branch_op(core, pc, b, wrong), MemOutcome::default())
        } else {
            (Op::other(pc), MemOutcome::default())
        }
    }

    /// The operation of a load or store that found `m`.
    #[inline]
    fn mem_op(&self, core: usize, pc: u64, va: u64, m: &MemOutcome, write: bool) -> Op {
        let mut op = Op::other(pc);
        op.kind = if write { OpKind::Store } else { OpKind::Load };
        op.data_va = va;
        op.translation_latency = m.translation;
        op.total_latency = m.latency + m.translation;
        op.data_source = m.source;
        op.cycles = self.mem_cycles(core, m);
        let bit = |on: bool, b: u32| u64::from(on) << b;
        op.outcome = bit(m.l1_refill, spe_event::L1D_REFILL)
            | bit(m.tlb_walk, spe_event::TLB_WALK)
            | bit(m.llc_access, spe_event::LLC_ACCESS)
            | bit(m.llc_miss, spe_event::LLC_MISS);
        op
    }

    /// The in-order pipeline's cycles for a memory access: one to issue,
    /// plus the wait beyond an L1 hit and a TLB hit.
    #[inline]
    fn mem_cycles(&self, core: usize, m: &MemOutcome) -> u32 {
        let l1 = self.configs[core].l1d.latency;
        1 + u32::from(m.latency.saturating_sub(l1)) + u32::from(m.translation - 1)
    }

    /// The operation of a branch, mispredicted or not.
    #[inline]
    fn branch_op(&self, core: usize, pc: u64, b: &BranchInfo, wrong: bool) -> Op {
        let mut op = Op::other(pc);
        op.kind = OpKind::Branch {
            conditional: b.conditional,
            indirect: b.indirect,
            taken: b.taken,
        };
        op.target = b.target;
        if wrong {
            let penalty = self.configs[core].branch.mispredict_penalty;
            op.cycles += u32::from(penalty);
            op.total_latency += penalty;
            op.outcome |= 1 << spe_event::MISPREDICTED;
        }
        if b.conditional && !b.taken {
            op.outcome |= 1 << spe_event::NOT_TAKEN;
        }
        op
    }

    /// [`Hierarchy::retire`] for a load or store whose events go into
    /// `tally`; the operation itself only when `keep` (the sample point).
    #[inline]
    pub fn retire_mem(
        &mut self,
        core: usize,
        pc: u64,
        (va, pa, write): (u64, u64, bool),
        tally: &mut Tally,
        keep: bool,
    ) -> Option<Op> {
        let m = self.access(core, va, pa, write);
        let cycles = self.mem_cycles(core, &m);
        tally.mem(&m, write, cycles);
        keep.then(|| self.mem_op(core, pc, va, &m, write))
    }

    /// [`Hierarchy::retire`] for a branch whose events go into `tally`;
    /// the operation itself only when `keep`.
    #[inline]
    pub fn retire_branch(
        &mut self,
        core: usize,
        pc: u64,
        b: &BranchInfo,
        tally: &mut Tally,
        keep: bool,
    ) -> Option<Op> {
        let wrong = self.branch(core, pc, b);
        let penalty = if wrong {
            u64::from(self.configs[core].branch.mispredict_penalty)
        } else {
            0
        };
        tally.branch(wrong, penalty);
        keep.then(|| self.branch_op(core, pc, b, wrong))
    }
}

#[cfg(test)]
mod tests;
