//! The engine behind the built-in workloads: a loop over a fixed template of
//! operation slots whose variable parts are pure functions of the operation's
//! index, so that any operation and any span's event totals can be computed
//! directly, without producing the operations in between.
//!
//! # Model
//!
//! A [`Program`] has `S` slots. Operation number `g` is slot `j = g mod S` of
//! iteration `i = g / S`. A slot has a kind, a PC (fixed, or chosen by the
//! iteration's *variant*, or switched by the outcome of an earlier branch in
//! the same iteration), an address generator and a list of conditions. A
//! condition is a [`Rule`] (a predicate on `i`) and an [`Effect`] (outcome
//! bits, extra cycles and latencies) applied when the rule fires.
//!
//! Every rule is periodic with a power-of-two period, and the number of
//! iterations below `x` at which it fires has a closed form (`Every`) or a
//! rank query in a precomputed bit table (`Table`). Because
//! [`Op::add_events`] is additive in the outcome bits and cycles, and the
//! conditions of a slot own disjoint bits, the events of a slot are its base
//! events plus, for each condition, the condition's event delta times the
//! number of times it fired. The totals over operations `[0, x)` are thus a
//! sum of `O(S + conditions)` closed-form terms, and the totals over any span
//! are a difference of two of them.
//!
//! An [`Engine`] interleaves one or more programs in fixed phases (program
//! `k` runs `reps_k` iterations, then the next program, ...). Each program
//! keeps its own iteration count, so the operations of program `k` before
//! engine position `x` form a prefix of program `k`'s stream whose length is
//! a closed form of `x`.
//!
//! The engine keeps each program's totals at its current position, so a
//! skip evaluates one closed form per program that runs in the skipped span,
//! and a step adds the stepped operation's events. Totals for skips are kept
//! modulo 2^64 (wrapping, like the counters they feed); the single-event
//! totals `ops_until` searches over are kept modulo 2^128, so that their
//! differences are exact and monotonic for any span below 2^64 operations.

use hyperprof_spe::packet::event as spe;

use crate::event::{Event, EventCounts, EVENT_COUNT};
use crate::op::{Op, OpKind, Symbol};

const N: usize = EVENT_COUNT;
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;
const NOT_TAKEN: u64 = 1 << spe::NOT_TAKEN;

/// The SplitMix64 output function.
pub(crate) const fn fmix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Output number `index` of the SplitMix64 generator seeded with `key`: a
/// pure function of `(key, index)`.
pub(crate) const fn mix(key: u64, index: u64) -> u64 {
    fmix(key.wrapping_add(index.wrapping_add(1).wrapping_mul(GOLDEN)))
}

/// A key for an independent hash stream, from a seed and a salt.
pub(crate) const fn key(seed: u64, salt: u64) -> u64 {
    mix(seed ^ 0x6A09_E667_F3BC_C909, salt)
}

/// The top 16 bits of a hash, as a fraction of 65536.
pub(crate) const fn unit16(h: u64) -> u32 {
    (h >> 48) as u32
}

/// `2^shift - 1` (all ones from 64 on).
#[inline]
const fn low_mask(shift: u32) -> u64 {
    if shift >= 64 {
        u64::MAX
    } else {
        (1u64 << shift) - 1
    }
}

/// `x / d` and `x % d`, with a fast path when `x` fits in 64 bits.
#[inline]
fn divrem(x: u128, d: u64) -> (u128, usize) {
    let d = d.max(1);
    if x >> 64 == 0 {
        let x = x as u64;
        ((x / d) as u128, (x % d) as usize)
    } else {
        (x / d as u128, (x % d as u128) as usize)
    }
}

/// When a condition fires, as a function of the iteration number `i`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rule {
    /// Every iteration.
    Always,
    /// When `i mod 2^shift == phase`.
    Every {
        /// log2 of the period (at most 63).
        shift: u32,
        /// The residue at which the rule fires (below `2^shift`).
        phase: u64,
    },
    /// When bit `i mod P` of the program's table number `.0` is set.
    Table(usize),
}

impl Rule {
    /// Fires once every `2^shift` iterations, at residue `phase`.
    pub(crate) fn every(shift: u32, phase: u64) -> Rule {
        let shift = shift.min(63);
        Rule::Every {
            shift,
            phase: phase & low_mask(shift),
        }
    }
}

/// What a firing condition adds to an operation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Effect {
    /// SPE outcome bits set.
    pub bits: u64,
    /// Extra CPU cycles.
    pub cycles: u32,
    /// Extra execution latency (added to the total latency).
    pub latency: u16,
    /// Extra translation latency (added to the translation and total latency).
    pub translation: u16,
    /// Data source; the largest of the fired conditions' sources is reported.
    pub source: u16,
}

/// The class of a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SlotKind {
    /// A load.
    Load,
    /// A store.
    Store,
    /// A branch; conditional branches are taken unless `NOT_TAKEN` fires.
    Branch {
        /// Conditional.
        conditional: bool,
        /// Indirect.
        indirect: bool,
    },
    /// Anything else.
    Other,
}

/// An address that may depend on the iteration's variant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Loc {
    /// The same address in every iteration.
    Fixed(u64),
    /// Entry `v` for variant `v`.
    PerVariant(Vec<u64>),
}

impl Loc {
    /// The address for variant `v`.
    #[inline]
    fn at(&self, v: usize) -> u64 {
        match self {
            Loc::Fixed(a) => *a,
            Loc::PerVariant(list) => list.get(v).or(list.first()).copied().unwrap_or(0),
        }
    }
}

impl From<u64> for Loc {
    fn from(a: u64) -> Loc {
        Loc::Fixed(a)
    }
}

/// The data address of a load or store, as a function of the iteration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Addr {
    /// Not a memory access.
    None,
    /// Always the same address.
    Fixed(u64),
    /// `base + stride * (i & mask)`: a stream that wraps around a buffer.
    Linear {
        /// First address.
        base: u64,
        /// Bytes per iteration.
        stride: u64,
        /// Iterations per pass minus one (a power of two minus one).
        mask: u64,
    },
    /// `base + 64 * (hash(key, i & iter_mask) & line_mask)`: a random line.
    Hashed {
        /// Address of line 0 plus the offset in the line.
        base: u64,
        /// Hash key.
        key: u64,
        /// Iterations before the sequence repeats, minus one.
        iter_mask: u64,
        /// Lines in the pool, minus one.
        line_mask: u64,
    },
    /// `base + stride * variant`.
    PerVariant {
        /// Address for variant 0.
        base: u64,
        /// Bytes between variants.
        stride: u64,
    },
}

impl Addr {
    #[inline]
    fn at(&self, i: u64, v: usize) -> u64 {
        match *self {
            Addr::None => 0,
            Addr::Fixed(a) => a,
            Addr::Linear { base, stride, mask } => base.wrapping_add(stride.wrapping_mul(i & mask)),
            Addr::Hashed {
                base,
                key,
                iter_mask,
                line_mask,
            } => base.wrapping_add((mix(key, i & iter_mask) & line_mask) << 6),
            Addr::PerVariant { base, stride } => base.wrapping_add(stride.wrapping_mul(v as u64)),
        }
    }
}

/// An alternative placement of a slot, used when an earlier conditional
/// branch of the same iteration was taken (the other arm of an if/else).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Alt {
    /// Index of the conditional branch slot that selects the arm.
    pub branch: usize,
    /// PC when that branch was taken.
    pub pc: Loc,
    /// Branch target when that branch was taken.
    pub target: Loc,
}

/// One slot of a template, as the template builders describe it.
#[derive(Clone, Debug)]
pub(crate) struct Inst {
    pc: Loc,
    alt: Option<Alt>,
    kind: SlotKind,
    target: Loc,
    addr: Addr,
    cycles: u32,
    issue: u16,
    issue_jitter: u16,
    exec: u16,
    exec_jitter: u16,
    conds: Vec<(Rule, Effect)>,
}

impl Inst {
    fn new(pc: Loc, kind: SlotKind, addr: Addr, target: Loc, exec: u16) -> Inst {
        Inst {
            pc,
            alt: None,
            kind,
            target,
            addr,
            cycles: 1,
            issue: 1,
            issue_jitter: 0,
            exec,
            exec_jitter: 0,
            conds: Vec::new(),
        }
    }

    /// An arithmetic or other non-memory, non-branch operation.
    pub(crate) fn other(pc: impl Into<Loc>) -> Inst {
        Inst::new(pc.into(), SlotKind::Other, Addr::None, Loc::Fixed(0), 1)
    }

    /// A load from `addr` (4 cycles of latency on an L1 hit).
    pub(crate) fn load(pc: impl Into<Loc>, addr: Addr) -> Inst {
        Inst::new(pc.into(), SlotKind::Load, addr, Loc::Fixed(0), 4).exec_jitter(1)
    }

    /// A store to `addr`.
    pub(crate) fn store(pc: impl Into<Loc>, addr: Addr) -> Inst {
        Inst::new(pc.into(), SlotKind::Store, addr, Loc::Fixed(0), 1)
    }

    /// An unconditional direct branch (B, BL).
    pub(crate) fn branch(pc: impl Into<Loc>, target: impl Into<Loc>) -> Inst {
        let kind = SlotKind::Branch {
            conditional: false,
            indirect: false,
        };
        Inst::new(pc.into(), kind, Addr::None, target.into(), 1)
    }

    /// A conditional direct branch (B.cond, CBNZ), taken unless a
    /// condition sets NOT_TAKEN.
    pub(crate) fn cond(pc: impl Into<Loc>, target: impl Into<Loc>) -> Inst {
        let kind = SlotKind::Branch {
            conditional: true,
            indirect: false,
        };
        Inst::new(pc.into(), kind, Addr::None, target.into(), 1)
    }

    /// An unconditional indirect branch (BR, BLR, RET).
    pub(crate) fn indirect(pc: impl Into<Loc>, target: impl Into<Loc>) -> Inst {
        let kind = SlotKind::Branch {
            conditional: false,
            indirect: true,
        };
        Inst::new(pc.into(), kind, Addr::None, target.into(), 1)
    }

    /// Adds a condition: when `rule` fires, `effect` applies.
    pub(crate) fn when(mut self, rule: Rule, effect: Effect) -> Inst {
        self.conds.push((rule, effect));
        self
    }

    /// Sets the issue latency: `issue` plus up to `jitter_mask` (a power of
    /// two minus one) cycles of hash jitter.
    pub(crate) fn issue(mut self, issue: u16, jitter_mask: u16) -> Inst {
        self.issue = issue;
        self.issue_jitter = jitter_mask;
        self
    }

    /// Sets the execution latency jitter (a power of two minus one).
    pub(crate) fn exec_jitter(mut self, jitter_mask: u16) -> Inst {
        self.exec_jitter = jitter_mask;
        self
    }

    /// Places the slot at `pc` (with branch target `target`) in iterations
    /// where conditional branch slot `branch` was taken.
    pub(crate) fn alt(mut self, branch: usize, pc: Loc, target: Loc) -> Inst {
        self.alt = Some(Alt { branch, pc, target });
        self
    }
}

/// A periodic bit table with rank queries.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Table {
    words: Vec<u64>,
    /// Number of set bits in the words before each word.
    before: Vec<u64>,
    /// Number of set bits in the whole table.
    total: u64,
}

impl Table {
    fn from_fn(len: u64, f: impl Fn(u64) -> bool) -> Table {
        let nwords = len.div_ceil(64) as usize;
        let mut words = vec![0u64; nwords];
        for i in 0..len {
            if f(i) {
                if let Some(w) = words.get_mut((i >> 6) as usize) {
                    *w |= 1 << (i & 63);
                }
            }
        }
        let mut before = Vec::with_capacity(nwords);
        let mut total = 0u64;
        for w in &words {
            before.push(total);
            total += u64::from(w.count_ones());
        }
        Table {
            words,
            before,
            total,
        }
    }

    #[inline]
    fn bit(&self, i: u64) -> bool {
        self.words
            .get((i >> 6) as usize)
            .is_some_and(|w| w >> (i & 63) & 1 != 0)
    }

    /// Number of set bits below bit `i`.
    #[inline]
    fn rank(&self, i: u64) -> u64 {
        let w = (i >> 6) as usize;
        let (Some(word), Some(before)) = (self.words.get(w), self.before.get(w)) else {
            return self.total;
        };
        let below = word & ((1u64 << (i & 63)) - 1);
        before + u64::from(below.count_ones())
    }
}

/// Builds a [`Program`].
pub(crate) struct Builder {
    pshift: u32,
    variants: Vec<u8>,
    slots: Vec<Inst>,
    tables: Vec<Table>,
    jitter_key: u64,
}

impl Builder {
    /// A builder for a program whose table rules and variants repeat every
    /// `2^pshift` iterations (`pshift` at most 20).
    pub(crate) fn new(seed: u64, pshift: u32) -> Builder {
        let pshift = pshift.min(20);
        Builder {
            pshift,
            variants: vec![0; 1 << pshift],
            slots: Vec::new(),
            tables: Vec::new(),
            jitter_key: key(seed, 0x4A17),
        }
    }

    /// Iterations per period of the table rules.
    pub(crate) fn period(&self) -> u64 {
        1 << self.pshift
    }

    /// Chooses the variant of each iteration by hash with key `k`: variant
    /// `v` with weight `weights[v]` (out of their sum).
    pub(crate) fn set_variants(&mut self, k: u64, weights: &[u32]) {
        let sum: u64 = weights.iter().map(|&w| u64::from(w)).sum::<u64>().max(1);
        for (i, slot) in self.variants.iter_mut().enumerate() {
            let x = (u64::from(unit16(mix(k, i as u64))) * sum) >> 16;
            let mut acc = 0u64;
            let mut chosen = 0u8;
            for (v, &w) in weights.iter().enumerate() {
                acc += u64::from(w);
                if x < acc {
                    chosen = v as u8;
                    break;
                }
            }
            *slot = chosen;
        }
    }

    /// The variant of iteration `i`.
    pub(crate) fn variant(&self, i: u64) -> u8 {
        self.variants
            .get((i & (self.period() - 1)) as usize)
            .copied()
            .unwrap_or(0)
    }

    /// A rule that fires at the iterations `i` (taken modulo the period)
    /// where `f(i mod P)` holds.
    pub(crate) fn pred(&mut self, f: impl Fn(u64) -> bool) -> Rule {
        self.tables.push(Table::from_fn(self.period(), f));
        Rule::Table(self.tables.len() - 1)
    }

    /// Appends a slot; returns its index.
    pub(crate) fn push(&mut self, inst: Inst) -> usize {
        self.slots.push(inst);
        self.slots.len() - 1
    }

    /// The finished program.
    pub(crate) fn build(self) -> Program {
        let mut slots = Vec::with_capacity(self.slots.len().max(1));
        let mut conds = Vec::new();
        let mut prefix_base = vec![[0u64; N]];
        let mut iter_base = [0u64; N];
        let mut insts = self.slots;
        if insts.is_empty() {
            insts.push(Inst::other(0u64));
        }
        for (j, inst) in insts.into_iter().enumerate() {
            let mut slot = Slot {
                pc: inst.pc,
                alt: inst.alt,
                kind: inst.kind,
                target: inst.target,
                addr: inst.addr,
                bits: 0,
                cycles: inst.cycles.max(1),
                issue: inst.issue,
                issue_jitter: inst.issue_jitter,
                exec: inst.exec,
                exec_jitter: inst.exec_jitter,
                translation: u16::from(matches!(inst.kind, SlotKind::Load | SlotKind::Store)),
                source: 0,
                conds: (conds.len(), conds.len()),
            };
            // Conditions that always fire are part of the slot itself; each
            // outcome bit is owned by the first condition that sets it, so
            // the events stay additive.
            let mut owned = 0u64;
            let mut pending = Vec::new();
            for (rule, mut effect) in inst.conds {
                effect.bits &= !owned;
                owned |= effect.bits;
                if rule == Rule::Always {
                    slot.apply(&effect);
                } else {
                    pending.push((rule, effect));
                }
            }
            let base = slot.events(slot.bits, slot.cycles);
            for (rule, effect) in pending {
                let with = slot.events(
                    slot.bits | effect.bits,
                    slot.cycles.saturating_add(effect.cycles),
                );
                let mut delta = [0u64; N];
                for ((d, w), b) in delta.iter_mut().zip(with).zip(base) {
                    *d = w.wrapping_sub(b);
                }
                conds.push(Cond {
                    slot: j,
                    rule,
                    effect,
                    delta,
                });
            }
            slot.conds.1 = conds.len();
            let mut next = prefix_base.last().copied().unwrap_or([0; N]);
            for ((n, t), b) in next.iter_mut().zip(iter_base.iter_mut()).zip(base) {
                *n = n.wrapping_add(b);
                *t = t.wrapping_add(b);
            }
            prefix_base.push(next);
            slots.push(slot);
        }
        let by_event = (0..N)
            .map(|e| {
                (0..conds.len())
                    .filter(|&c| conds.get(c).is_some_and(|c: &Cond| c.delta[e] != 0))
                    .collect()
            })
            .collect();
        Program {
            slots,
            conds,
            by_event,
            tables: self.tables,
            variants: self.variants,
            pshift: self.pshift,
            iter_base,
            prefix_base,
            jitter_key: self.jitter_key,
        }
    }
}

#[derive(Clone, Debug)]
struct Slot {
    pc: Loc,
    alt: Option<Alt>,
    kind: SlotKind,
    target: Loc,
    addr: Addr,
    bits: u64,
    cycles: u32,
    issue: u16,
    issue_jitter: u16,
    exec: u16,
    exec_jitter: u16,
    translation: u16,
    source: u16,
    /// Range of this slot's conditions in [`Program::conds`].
    conds: (usize, usize),
}

impl Slot {
    fn apply(&mut self, e: &Effect) {
        self.bits |= e.bits;
        self.cycles = self.cycles.saturating_add(e.cycles);
        self.exec = self.exec.saturating_add(e.latency);
        self.translation = self.translation.saturating_add(e.translation);
        self.source = self.source.max(e.source);
    }

    fn op_kind(&self, bits: u64) -> OpKind {
        match self.kind {
            SlotKind::Load => OpKind::Load,
            SlotKind::Store => OpKind::Store,
            SlotKind::Other => OpKind::Other,
            SlotKind::Branch {
                conditional,
                indirect,
            } => OpKind::Branch {
                conditional,
                indirect,
                taken: !(conditional && bits & NOT_TAKEN != 0),
            },
        }
    }

    /// The PMU events of this slot with the given outcome bits and cycles.
    fn events(&self, bits: u64, cycles: u32) -> [u64; N] {
        let op = Op {
            pc: 0,
            kind: self.op_kind(bits),
            data_va: 0,
            target: 0,
            issue_latency: 0,
            total_latency: 0,
            translation_latency: 0,
            outcome: bits,
            data_source: 0,
            ldst_subclass: 0,
            cycles,
        };
        let mut c = EventCounts::default();
        op.add_events(&mut c);
        c.0
    }
}

#[derive(Clone, Debug)]
struct Cond {
    slot: usize,
    rule: Rule,
    effect: Effect,
    /// Events this condition adds when it fires (two's complement: a
    /// misprediction removes a BR_PRED).
    delta: [u64; N],
}

/// A template of slots repeated forever; see the module documentation.
#[derive(Clone, Debug)]
pub(crate) struct Program {
    slots: Vec<Slot>,
    conds: Vec<Cond>,
    /// For each event, the conditions that change its count.
    by_event: Vec<Vec<usize>>,
    tables: Vec<Table>,
    variants: Vec<u8>,
    pshift: u32,
    iter_base: [u64; N],
    /// Base events of slots `0..j`, for `j` in `0..=S`.
    prefix_base: Vec<[u64; N]>,
    jitter_key: u64,
}

impl Program {
    /// Operations per iteration.
    pub(crate) fn slots(&self) -> u64 {
        self.slots.len() as u64
    }

    fn pmask(&self) -> u64 {
        low_mask(self.pshift)
    }

    #[inline]
    fn fires(&self, rule: Rule, i: u64) -> bool {
        match rule {
            Rule::Always => true,
            Rule::Every { shift, phase } => i & low_mask(shift) == phase,
            Rule::Table(t) => self
                .tables
                .get(t)
                .is_some_and(|tb| tb.bit(i & self.pmask())),
        }
    }

    /// Number of iterations in `[0, x)` at which `rule` fires (mod 2^128).
    #[inline]
    fn ones(&self, rule: Rule, x: u128) -> u128 {
        match rule {
            Rule::Always => x,
            Rule::Every { shift, phase } => {
                let rest = x as u64 & low_mask(shift);
                (x >> shift.min(127)) + u128::from(rest > phase)
            }
            Rule::Table(t) => match self.tables.get(t) {
                Some(tb) => (x >> self.pshift)
                    .wrapping_mul(u128::from(tb.total))
                    .wrapping_add(u128::from(tb.rank(x as u64 & self.pmask()))),
                None => 0,
            },
        }
    }

    fn variant(&self, i: u64) -> usize {
        self.variants
            .get((i & self.pmask()) as usize)
            .copied()
            .unwrap_or(0) as usize
    }

    /// The outcome bits and combined effect of slot `j` at iteration `i`.
    fn outcome(&self, slot: &Slot, i: u64) -> Effect {
        let mut acc = Effect {
            bits: slot.bits,
            cycles: slot.cycles,
            latency: slot.exec,
            translation: slot.translation,
            source: slot.source,
        };
        let (lo, hi) = slot.conds;
        for c in self.conds.get(lo..hi).unwrap_or(&[]) {
            if self.fires(c.rule, i) {
                acc.bits |= c.effect.bits;
                acc.cycles = acc.cycles.saturating_add(c.effect.cycles);
                acc.latency = acc.latency.saturating_add(c.effect.latency);
                acc.translation = acc.translation.saturating_add(c.effect.translation);
                acc.source = acc.source.max(c.effect.source);
            }
        }
        acc
    }

    /// Operation number `g` of the program's stream.
    pub(crate) fn op_at(&self, g: u128) -> Op {
        let (i, j) = divrem(g, self.slots());
        let i = i as u64;
        let Some(slot) = self.slots.get(j) else {
            return Op {
                pc: 0,
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
            };
        };
        let v = self.variant(i);
        let out = self.outcome(slot, i);
        let (pc, target) = match &slot.alt {
            Some(alt)
                if self
                    .slots
                    .get(alt.branch)
                    .is_some_and(|b| self.outcome(b, i).bits & NOT_TAKEN == 0) =>
            {
                (alt.pc.at(v), alt.target.at(v))
            }
            _ => (slot.pc.at(v), slot.target.at(v)),
        };
        let jitter = mix(self.jitter_key, g as u64);
        let issue = slot.issue.saturating_add(jitter as u16 & slot.issue_jitter);
        let exec = out
            .latency
            .saturating_add((jitter >> 16) as u16 & slot.exec_jitter);
        let is_branch = matches!(slot.kind, SlotKind::Branch { .. });
        Op {
            pc,
            kind: slot.op_kind(out.bits),
            data_va: slot.addr.at(i, v),
            target: if is_branch { target } else { 0 },
            issue_latency: issue,
            total_latency: issue.saturating_add(exec).saturating_add(out.translation),
            translation_latency: out.translation,
            outcome: out.bits,
            data_source: out.source,
            ldst_subclass: 0,
            cycles: out.cycles,
        }
    }

    /// Adds the event totals of operations `[0, x)` to `out` (modulo 2^64,
    /// like the counters they feed).
    fn totals(&self, x: u128, out: &mut [u64; N]) {
        let (ix, jx) = divrem(x, self.slots());
        let prefix = self.prefix_base.get(jx).copied().unwrap_or([0; N]);
        let iters = ix as u64;
        for ((o, per_iter), p) in out.iter_mut().zip(self.iter_base).zip(prefix) {
            *o = o.wrapping_add(iters.wrapping_mul(per_iter)).wrapping_add(p);
        }
        for c in &self.conds {
            let f = self.ones(c.rule, ix.wrapping_add(u128::from(c.slot < jx))) as u64;
            if f != 0 {
                for (o, d) in out.iter_mut().zip(c.delta) {
                    *o = o.wrapping_add(d.wrapping_mul(f));
                }
            }
        }
    }

    /// Total of event `e` over operations `[0, x)` (modulo 2^128).
    fn total(&self, x: u128, e: usize) -> u128 {
        let (ix, jx) = divrem(x, self.slots());
        let per_iter = self.iter_base.get(e).copied().unwrap_or(0);
        let prefix = self
            .prefix_base
            .get(jx)
            .and_then(|p| p.get(e))
            .copied()
            .unwrap_or(0);
        let mut t = ix
            .wrapping_mul(u128::from(per_iter))
            .wrapping_add(u128::from(prefix));
        for c in self.by_event.get(e).map_or(&[][..], |v| &v[..]) {
            if let Some(c) = self.conds.get(*c) {
                let d = c.delta.get(e).copied().unwrap_or(0) as i64 as i128 as u128;
                let f = self.ones(c.rule, ix.wrapping_add(u128::from(c.slot < jx)));
                t = t.wrapping_add(d.wrapping_mul(f));
            }
        }
        t
    }
}

/// One phase of an [`Engine`]: a program, where its iterations sit in the
/// engine's period, and its totals at the engine's position.
#[derive(Clone, Debug)]
struct Phase {
    program: Program,
    /// First operation of the phase within the period.
    start: u128,
    /// Operations of the phase per period.
    len: u128,
    /// Operations of this program before the engine's position.
    at: u128,
    /// The program's event totals of operations `[0, at)`, modulo 2^64.
    here: [u64; N],
}

/// A stream of operations interleaving one or more programs in fixed phases,
/// with a position; implements the [`Workload`](super::Workload) laws.
#[derive(Clone, Debug)]
pub(crate) struct Engine {
    name: String,
    symbols: Vec<Symbol>,
    phases: Vec<Phase>,
    period: u128,
    pos: u128,
}

impl Engine {
    /// An engine running `program` alone.
    pub(crate) fn single(name: String, symbols: Vec<Symbol>, program: Program) -> Engine {
        Engine::phased(name, symbols, vec![(program, 1)])
    }

    /// An engine running, in each period, `reps` iterations of each program
    /// in turn.
    pub(crate) fn phased(name: String, symbols: Vec<Symbol>, parts: Vec<(Program, u64)>) -> Engine {
        let mut phases = Vec::with_capacity(parts.len().max(1));
        let mut start = 0u128;
        for (program, reps) in parts {
            let len = u128::from(reps.max(1)) * u128::from(program.slots());
            phases.push(Phase {
                program,
                start,
                len,
                at: 0,
                here: [0; N],
            });
            start += len;
        }
        if phases.is_empty() {
            let program = Builder::new(0, 0).build();
            start = u128::from(program.slots());
            phases.push(Phase {
                program,
                start: 0,
                len: start,
                at: 0,
                here: [0; N],
            });
        }
        Engine {
            name,
            symbols,
            phases,
            period: start.max(1),
            pos: 0,
        }
    }

    /// The workload's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The workload's functions.
    pub(crate) fn symbols(&self) -> &[Symbol] {
        &self.symbols
    }

    /// Index of the next operation.
    pub(crate) fn position(&self) -> u128 {
        self.pos
    }

    /// `x` as (periods, operations into the period).
    #[inline]
    fn split(&self, x: u128) -> (u128, u128) {
        if (x | self.period) >> 64 == 0 {
            let (x, d) = (x as u64, (self.period as u64).max(1));
            (u128::from(x / d), u128::from(x % d))
        } else {
            (x / self.period, x % self.period)
        }
    }

    /// Operations of phase `p`'s program before engine position `x`.
    #[inline]
    fn before(&self, p: &Phase, x: u128) -> u128 {
        if self.phases.len() == 1 {
            return x;
        }
        let (q, r) = self.split(x);
        q * p.len + r.saturating_sub(p.start).min(p.len)
    }

    /// The phase running operation `g`, and the index of that operation in
    /// the phase's program.
    #[inline]
    fn locate(&self, g: u128) -> (usize, u128) {
        if self.phases.len() == 1 {
            return (0, g);
        }
        let (q, r) = self.split(g);
        let k = self
            .phases
            .iter()
            .position(|p| r >= p.start && r - p.start < p.len)
            .unwrap_or(0);
        let sub = self
            .phases
            .get(k)
            .map_or(0, |p| q * p.len + r.saturating_sub(p.start));
        (k, sub)
    }

    /// Operation number `g` of the stream.
    pub(crate) fn op_at(&self, g: u128) -> Op {
        let (k, sub) = self.locate(g);
        match self.phases.get(k) {
            Some(p) => p.program.op_at(sub),
            None => Builder::new(0, 0).build().op_at(0),
        }
    }

    /// [`Workload::skip`](super::Workload::skip): one closed-form
    /// evaluation per phase that runs in the skipped span, each phase's
    /// totals at the current position being kept.
    pub(crate) fn skip(&mut self, n: u64, counts: &mut EventCounts) {
        let end = self.pos.saturating_add(u128::from(n));
        for k in 0..self.phases.len() {
            let Some(p) = self.phases.get(k) else {
                continue;
            };
            let at = self.before(p, end);
            if at == p.at {
                continue;
            }
            let mut there = [0u64; N];
            p.program.totals(at, &mut there);
            for ((c, t), h) in counts.0.iter_mut().zip(there).zip(p.here) {
                *c = c.wrapping_add(t.wrapping_sub(h));
            }
            if let Some(p) = self.phases.get_mut(k) {
                p.at = at;
                p.here = there;
            }
        }
        self.pos = end;
    }

    /// [`Workload::step`](super::Workload::step).
    pub(crate) fn step(&mut self) -> Op {
        let (k, sub) = self.locate(self.pos);
        let Some(p) = self.phases.get_mut(k) else {
            return Builder::new(0, 0).build().op_at(0);
        };
        let op = p.program.op_at(sub);
        if self.pos != u128::MAX {
            self.pos += 1;
            p.at = sub.wrapping_add(1);
            let mut c = EventCounts::default();
            op.add_events(&mut c);
            for (h, x) in p.here.iter_mut().zip(c.0) {
                *h = h.wrapping_add(x);
            }
        }
        op
    }

    /// [`Workload::ops_until`](super::Workload::ops_until): a binary search
    /// over closed-form totals, `O(log limit)` evaluations, of only the
    /// phases that run in the next `limit` operations.
    pub(crate) fn ops_until(&self, event: Event, k: u64, limit: u64) -> u64 {
        if k == 0 {
            return 0;
        }
        let e = event.index();
        let k = u128::from(k);
        let end = self.pos.saturating_add(u128::from(limit));
        // (phase, its exact total at the current position)
        let active: Vec<(&Phase, u128)> = self
            .phases
            .iter()
            .filter(|p| self.before(p, end) != p.at)
            .map(|p| (p, p.program.total(p.at, e)))
            .collect();
        let count = |m: u64| {
            let x = self.pos.saturating_add(u128::from(m));
            active.iter().fold(0u128, |t, (p, start)| {
                t.wrapping_add(p.program.total(self.before(p, x), e).wrapping_sub(*start))
            })
        };
        if count(limit) < k {
            return limit;
        }
        // count(lo) < k <= count(hi)
        let (mut lo, mut hi) = (0u64, limit);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if count(mid) >= k {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        hi
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_rank_matches_a_scan() {
        let t = Table::from_fn(300, |i| mix(7, i) & 3 == 0);
        let mut ones = 0;
        for i in 0..300 {
            assert_eq!(t.rank(i), ones, "rank({i})");
            if t.bit(i) {
                ones += 1;
            }
        }
        assert_eq!(t.total, ones);
        assert!(ones > 30 && ones < 120, "{ones}");
    }

    #[test]
    fn every_counts_match_a_scan() {
        let b = Builder::new(1, 4);
        let p = b.build();
        for (shift, phase) in [(0, 0), (1, 1), (3, 5), (4, 0), (6, 63)] {
            let rule = Rule::every(shift, phase);
            let mut ones = 0u128;
            for x in 0..300u64 {
                assert_eq!(p.ones(rule, u128::from(x)), ones, "{rule:?} {x}");
                if p.fires(rule, x) {
                    ones += 1;
                }
            }
        }
    }

    #[test]
    fn mix_is_a_pure_function() {
        assert_eq!(mix(1, 2), mix(1, 2));
        assert_ne!(mix(1, 2), mix(1, 3));
        assert_ne!(mix(1, 2), mix(2, 2));
        assert_ne!(key(1, 1), key(1, 2));
    }

    #[test]
    fn variants_follow_the_weights() {
        let mut b = Builder::new(3, 12);
        b.set_variants(key(3, 9), &[50, 30, 20]);
        let mut seen = [0u32; 3];
        for i in 0..4096 {
            seen[b.variant(i) as usize] += 1;
        }
        assert!(seen[0] > 1800 && seen[0] < 2300, "{seen:?}");
        assert!(seen[1] > 1000 && seen[1] < 1500, "{seen:?}");
        assert!(seen[2] > 600 && seen[2] < 1050, "{seen:?}");
    }

    #[test]
    fn overlapping_bits_are_owned_by_the_first_condition() {
        let l1 = 1u64 << spe::L1D_REFILL;
        let mut b = Builder::new(0, 4);
        b.push(
            Inst::load(0x1000u64, Addr::Fixed(0x2000))
                .when(
                    Rule::every(1, 0),
                    Effect {
                        bits: l1,
                        ..Effect::default()
                    },
                )
                .when(
                    Rule::every(2, 0),
                    Effect {
                        bits: l1,
                        cycles: 5,
                        ..Effect::default()
                    },
                ),
        );
        let p = b.build();
        let mut e = Engine::single("t".into(), Vec::new(), p);
        let mut f = e.clone();
        let mut brute = EventCounts::default();
        for _ in 0..16 {
            e.step().add_events(&mut brute);
        }
        let mut fast = EventCounts::default();
        f.skip(16, &mut fast);
        assert_eq!(fast, brute);
        assert_eq!(fast.get(Event::L1D_CACHE_REFILL), 8);
        assert_eq!(fast.get(Event::CPU_CYCLES), 16 + 4 * 5);
    }
}
