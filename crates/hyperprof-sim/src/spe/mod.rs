//! One PE's Statistical Profiling Unit (Arm ARM D10 "The Statistical
//! Profiling Extension"; pseudocode `aarch64/debug/statisticalprofiling`,
//! J1.1.1.50-126 in the DDI0487 release consulted), as a state machine the
//! PE drives:
//!
//! - software reads and writes the registers ([`Spe::read`], [`Spe::write`]);
//!   the unit acts on them from the next context synchronization event
//!   ([`Spe::sync`]);
//! - while [`Spe::sampling_at`] the current Exception level, the PE runs
//!   [`Spe::ops_to_sample`]` - 1` operations through [`Spe::skip`] and hands
//!   the next one to [`Spe::sample`];
//! - records wait in the unit until `PSB CSYNC` ([`Spe::psb_csync`]) or a
//!   full queue writes them through a [`BufferPort`];
//! - [`Spe::irq_level`] is the PMBIRQ line.
//!
//! # What was checked against the Arm ARM
//!
//! (pseudocode function names; J1 section numbers of the consulted release)
//!
//! - Sample selection, `SPEStartSample()` J1.1.1.122 and
//!   `SPEToCollectSample()` J1.1.1.124: nothing happens unless
//!   `StatisticalProfilingEnabled()`; a COUNT of zero reloads (that
//!   operation is not sampled); otherwise COUNT decrements and the operation
//!   that takes it to zero is the sample. So after a sample the next
//!   operation reloads and samples are `reload + 1` operations apart.
//! - Reload, `SPEResetSampleCounter()` J1.1.1.101: `COUNT<31:8> =
//!   PMSIRR_EL1.INTERVAL`, and `COUNT<7:0>` is a random byte when `RND == 1`
//!   (FEAT_SPE_ERnd, the ECOUNT scheme, is not implemented: PMSIDR_EL1.ERND
//!   = 0, ECOUNT is RES0), zero otherwise.
//! - Collision, `SPEStartSample()` / `SPESampleCollision()` J1.1.1.106: a
//!   sample point while a sample is in flight sets PMBSR_EL1.COLL and
//!   records nothing; S is not set, profiling goes on.
//! - Completion, `SPECompleteSample()` J1.1.1.76: the filters decide
//!   (`SPECollectRecord()`), then DISCARD mode (`PMBLIMITR_EL1.FM == 0b10`,
//!   honoured only with FEAT_SPEv1p2) drops the record without touching
//!   PMBPTR_EL1; otherwise the record is written and `SPEBufferIsFull()`
//!   (J1.1.1.74) is checked: full when `PMBPTR_EL1 > LIMIT:Zeros(12) -
//!   2^PMSIDR_EL1.MaxSize`, i.e. when another maximum-size record might not
//!   fit. Then `OtherSPEManagementEvent('000001')` (J1.1.1.64): if S is 0,
//!   `S = 1, EC = 0b000000 (BUF), MSS = BSC = 1`; COLL, DL, EA unchanged.
//! - Record bytes, `SPEConstructRecord()` J1.1.1.78: counters saturate at
//!   0xFFF (0xFFFF with 16-bit counters), and the record is padded with
//!   zero bytes (PAD packets) to a multiple of `2^PMBIDR_EL1.Align`.
//! - Buffer writes, `SPEWriteToBuffer()` J1.1.1.125: bytes go to PMBPTR_EL1
//!   through the owning Exception level's regime, and PMBPTR_EL1 advances
//!   only while no buffer management event has happened; so after a fault
//!   PMBPTR_EL1 holds the faulting address, and `DebugWriteExternalAbort()`
//!   is given the record's start address to decide DL.
//! - PMBSR_EL1 (register description, D24.6 as hyperprof-arch cites it): EC 0b100100 / 0b100101 for
//!   stage 1 / stage 2 Data Aborts with MSS.FSC holding the fault status
//!   code; DL = 1 "part of a record was lost" (PMBPTR_EL1 might not point
//!   after the last complete record); EA = 1 "an External abort has been
//!   asserted and detected by the unit"; S drives PMBIRQ (`SPECycle()`
//!   J1.1.1.79: the line is high while `PMBSR_EL1.S == 1`).
//! - Who owns the buffer and who is sampled: `ProfilingBufferOwner()`,
//!   `ProfilingBufferEnabled()`, `StatisticalProfilingEnabled()` from
//!   [`hyperprof_arch::predicates`].
//! - Record contents and filters: see [`record`] and [`filter`].
//!
//! # The model's choices
//!
//! - Reset: every register reads 0 (the architected values are UNKNOWN
//!   except `PMBLIMITR_EL1.E`, which resets to 0).
//! - Strict mode: direct writes are visible to [`Spe::read`] at once and
//!   reach the unit at [`Spe::sync`]. A register the unit updates (PMBPTR,
//!   PMBSR, PMSICR) shows the update unless software wrote it since the
//!   last sync; that write then replaces the unit's value at the sync.
//! - Records are written only by [`Spe::psb_csync`] or when the queue
//!   exceeds [`SpeConfig::queue_capacity`] (oldest first); PMBPTR_EL1
//!   advances then, so software that reads it without `PSB CSYNC` sees a
//!   stale pointer. The full check follows each write.
//! - Lost records (counted in [`SpeStats::discarded`] and
//!   [`SpeStats::lost`]): records still queued when a buffer management
//!   event stops profiling, the record whose write faulted, and records
//!   queued when a sync disables the buffer (`E = 0` or `S = 1`) or changes
//!   its owner (writing them through the new owner's regime would leak
//!   them). Software must `PSB CSYNC` first, as the KVM series does.
//! - Writes are split at 4 KiB boundaries; a fault on a later piece leaves
//!   PMBPTR_EL1 at that piece and sets DL. An External abort reports
//!   `EC = FAULT_S1, FSC = 0b010000` (synchronous External abort, not on a
//!   table walk) with `EA = 1`.
//! - A record longer than the maximum record size (only possible with
//!   64-byte records, every packet present and events beyond bit 15) loses
//!   optional packets, data source first.
//! - The sampled operation is in flight for `max(1, total_latency)`
//!   operations: a sample point at `op_index < busy_until` collides.
//! - Not modelled: FEAT_SPE_ERnd, FEAT_SPE_EFT, FEAT_SPE_PBT, FEAT_SPE_CRR,
//!   FEAT_ECV timestamps, FEAT_SPE_EXC, PMBSR_EL1 BSC = 0b000100 (buffer
//!   size) events, alignment faults.

pub mod config;
pub mod filter;
pub mod port;
pub mod record;
mod regs;
mod rng;

use std::collections::VecDeque;

use hyperprof_arch::predicates::{
    profiling_buffer_enabled, profiling_buffer_owner, statistical_profiling_enabled,
    ExceptionLevel, ProfilingControls,
};
use hyperprof_arch::{
    pmbidr_el1, pmblimitr_el1, pmbsr_el1, pmsicr_el1, pmsirr_el1, PmbsrEc, SysReg,
};
use hyperprof_spe::record::Record;

use crate::op::Op;

pub use config::{filterable_events_mask, reported_events_mask, SpeConfig};
pub use filter::{FilterControls, FilterReject};
pub use port::{BufferFault, BufferPort, VecPort};
pub use record::{record_for, RecordControls, SampleContext, TimestampSource};
pub use regs::{Control, REGISTERS};

use regs::{Bank, Reg};
use rng::SplitMix64;

/// Buffer writes are split at this boundary (the smallest translation
/// granule), so one translation covers each piece.
const PAGE: u64 = 4096;

/// FSC reported for an External abort: synchronous External abort, not on
/// a translation table walk.
const FSC_SYNC_EXTERNAL: u64 = 0b01_0000;

/// A bound on the loop iterations of [`Spe::skip`] (reached only when the
/// caller skips past sample points, which the contract forbids).
const SKIP_GUARD: u32 = 1 << 16;

/// What the unit did, for conservation checks and reports.
///
/// Law: `sampled == written + filtered + collided + discarded + queued`
/// where `queued` is [`Spe::queued`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SpeStats {
    /// Sample points reached (operations selected by the interval counter).
    pub sampled: u64,
    /// Records written completely to the buffer.
    pub written: u64,
    /// Records rejected by the filters.
    pub filtered: u64,
    /// Sample points that collided with a sample in flight (PMBSR_EL1.COLL).
    pub collided: u64,
    /// Records not written: DISCARD mode, plus every [`SpeStats::lost`] one.
    pub discarded: u64,
    /// The part of `discarded` lost rather than discarded by configuration:
    /// queued when a buffer management event or a sync stopped profiling or
    /// changed the owner, or faulted while being written.
    pub lost: u64,
    /// Bytes of the records written (padding included).
    pub records_bytes: u64,
    /// Buffer-full events raised.
    pub buffer_full_events: u64,
    /// Fault events raised (stage 1, stage 2 and External aborts).
    pub fault_events: u64,
}

impl SpeStats {
    /// Adds what the unit did between the snapshots `before` and `after`
    /// (taken from the same unit, `before` first) to `self`: the counts of
    /// one window of its activity.
    pub fn add_window(&mut self, before: &SpeStats, after: &SpeStats) {
        let d = |a: u64, b: u64| a.saturating_sub(b);
        self.sampled += d(after.sampled, before.sampled);
        self.written += d(after.written, before.written);
        self.filtered += d(after.filtered, before.filtered);
        self.collided += d(after.collided, before.collided);
        self.discarded += d(after.discarded, before.discarded);
        self.lost += d(after.lost, before.lost);
        self.records_bytes += d(after.records_bytes, before.records_bytes);
        self.buffer_full_events += d(after.buffer_full_events, before.buffer_full_events);
        self.fault_events += d(after.fault_events, before.fault_events);
    }
}

/// One PE's SPE unit. See the [module documentation](self).
#[derive(Clone, Debug)]
pub struct Spe {
    cfg: SpeConfig,
    bank: Bank,
    ctl: Control,
    queue: VecDeque<Vec<u8>>,
    rng: SplitMix64,
    busy_until: u64,
    stats: SpeStats,
}

impl Spe {
    /// A unit after reset: every register 0, buffer disabled, nothing
    /// queued, no EL2 controls until the first [`Spe::sync`].
    pub fn new(cfg: SpeConfig) -> Spe {
        let rng = SplitMix64::new(cfg.seed);
        Spe {
            cfg,
            bank: Bank::default(),
            ctl: Control::default(),
            queue: VecDeque::new(),
            rng,
            busy_until: 0,
            stats: SpeStats::default(),
        }
    }

    /// How the unit is built.
    pub fn config(&self) -> &SpeConfig {
        &self.cfg
    }

    /// `MRS` of an SPE register as seen from the owning Exception level or
    /// above: the last value written or set by the unit; PMSIDR_EL1 and
    /// PMBIDR_EL1 describe the configuration. PMSCR_EL12 reads PMSCR_EL1 (the
    /// PE resolves VHE redirection before calling). Registers the unit does
    /// not have read 0.
    pub fn read(&self, reg: SysReg) -> u64 {
        match reg {
            SysReg::PMSIDR_EL1 => self.cfg.pmsidr(),
            SysReg::PMBIDR_EL1 => self.cfg.pmbidr(),
            r => Reg::from_sysreg(r).map_or(0, |r| self.bank.visible(r) & self.cfg.write_mask(reg)),
        }
    }

    /// `MRS` of `reg` at Exception level `el`: as [`Spe::read`], except that
    /// PMBIDR_EL1.P ("programming not allowed") is 1 when the synchronized
    /// buffer owner is above `el`.
    pub fn read_at(&self, reg: SysReg, el: ExceptionLevel) -> u64 {
        let v = self.read(reg);
        if reg == SysReg::PMBIDR_EL1 && self.buffer_owner() > el {
            v | pmbidr_el1::P.mask()
        } else {
            v
        }
    }

    /// `MSR` of an SPE register: RES0 bits and the fields of features the
    /// unit lacks are dropped ([`SpeConfig::write_mask`]); writes to the ID
    /// registers, to registers the unit lacks and to non-SPE registers are
    /// ignored. The unit uses the value from the next [`Spe::sync`].
    pub fn write(&mut self, reg: SysReg, val: u64) {
        if let Some(r) = Reg::from_sysreg(reg) {
            let mask = self.cfg.write_mask(reg);
            if mask != 0 {
                self.bank.write(r, val & mask);
            }
        }
    }

    /// Software's write of `reg` since the last [`Spe::sync`] reaches the
    /// unit now, before the next context synchronization (allowed: indirect
    /// reads are only guaranteed to see a direct write after one). Records
    /// still queued are lost if the buffer is no longer enabled.
    pub fn take_write_early(&mut self, reg: SysReg) {
        if let Some(r) = Reg::from_sysreg(reg) {
            self.bank.take_early(r);
            if !self.queue.is_empty() && !self.profiling_buffer_enabled() {
                self.lose_queue();
            }
        }
    }

    /// Whether software wrote `reg` since the last [`Spe::sync`].
    pub fn written_since_sync(&self, reg: SysReg) -> bool {
        Reg::from_sysreg(reg).is_some_and(|r| self.bank.written(r))
    }

    /// The value of `reg` the unit is acting on (the last synchronized
    /// write, updated by the unit since). ID registers as in [`Spe::read`].
    pub fn effective(&self, reg: SysReg) -> u64 {
        match Reg::from_sysreg(reg) {
            Some(r) => self.bank.effective(r),
            None => self.read(reg),
        }
    }

    /// A context synchronization event (ISB, exception entry or return):
    /// the registers written since and the PE's EL2 controls `ctl` take
    /// effect. Records still queued are lost if the buffer is no longer
    /// enabled or its owner changed.
    pub fn sync(&mut self, ctl: &Control) {
        let owner_before = self.buffer_owner();
        self.bank.sync();
        self.ctl = *ctl;
        if !self.queue.is_empty()
            && (!self.profiling_buffer_enabled() || self.buffer_owner() != owner_before)
        {
            self.lose_queue();
        }
    }

    /// The EL2 controls of the last [`Spe::sync`].
    pub fn control(&self) -> &Control {
        &self.ctl
    }

    /// `ProfilingBufferOwner()` from the synchronized controls.
    pub fn buffer_owner(&self) -> ExceptionLevel {
        profiling_buffer_owner(self.ctl.el2_implemented, self.ctl.mdcr_el2)
    }

    /// `ProfilingBufferEnabled()` on the effective registers:
    /// `PMBLIMITR_EL1.E == 1 && PMBSR_EL1.S == 0`.
    pub fn profiling_buffer_enabled(&self) -> bool {
        profiling_buffer_enabled(
            self.bank.effective(Reg::Pmblimitr),
            self.bank.effective(Reg::Pmbsr),
        )
    }

    /// `SPEProfilingStopped()`: a buffer management event is pending in the
    /// effective PMBSR_EL1 (for PMU freeze-on-SPE-event logic).
    pub fn profiling_stopped(&self) -> bool {
        pmbsr_el1::S.is_set(self.bank.effective(Reg::Pmbsr))
    }

    /// `StatisticalProfilingEnabled(el)` on the effective registers and the
    /// synchronized EL2 controls.
    pub fn sampling_at(&self, el: ExceptionLevel) -> bool {
        let c = ProfilingControls {
            el2_implemented: self.ctl.el2_implemented,
            hcr_el2: self.ctl.hcr_el2,
            mdcr_el2: self.ctl.mdcr_el2,
            pmblimitr_el1: self.bank.effective(Reg::Pmblimitr),
            pmbsr_el1: self.bank.effective(Reg::Pmbsr),
            pmscr_el1: self.bank.effective(Reg::PmscrEl1),
            pmscr_el2: self.bank.effective(Reg::PmscrEl2),
        };
        self.cfg.pms_ver.is_implemented() && statistical_profiling_enabled(el, &c)
    }

    fn count(&self) -> u64 {
        pmsicr_el1::COUNT.get(self.bank.effective(Reg::Pmsicr))
    }

    fn set_count(&mut self, count: u64) {
        self.bank
            .hw_write(Reg::Pmsicr, pmsicr_el1::COUNT.value(count));
    }

    fn interval(&self) -> u64 {
        self.bank.effective(Reg::Pmsirr) & pmsirr_el1::INTERVAL.mask()
    }

    fn rnd(&self) -> bool {
        pmsirr_el1::RND.is_set(self.bank.effective(Reg::Pmsirr))
    }

    /// `SPEResetSampleCounter()`: the value COUNT reloads with (draws the
    /// random byte when RND is set).
    fn reload_value(&mut self) -> u64 {
        let low = if self.rnd() {
            u64::from(self.rng.next_byte())
        } else {
            0
        };
        self.interval() | low
    }

    /// `SPEToCollectSample()` for one operation: true at a sample point.
    fn count_one(&mut self) -> bool {
        let c = self.count();
        if c == 0 {
            let r = self.reload_value();
            self.set_count(r);
            false
        } else {
            self.set_count(c - 1);
            c == 1
        }
    }

    /// How many operations ahead the next sample point is (at least 1): the
    /// operation that many operations from now, counting the next as 1, is
    /// the one for [`Spe::sample`] — if every operation until then runs
    /// while sampling. From the effective PMSICR_EL1.COUNT; when COUNT is 0
    /// the next operation reloads it (with the random byte the unit will
    /// draw). `u64::MAX` when the interval is 0 without RND: the
    /// pseudocode then reloads 0 forever and never samples.
    pub fn ops_to_sample(&self) -> u64 {
        let c = self.count();
        if c > 0 {
            return c;
        }
        let interval = self.interval();
        if !self.rnd() {
            return if interval == 0 {
                u64::MAX
            } else {
                interval + 1
            };
        }
        let mut rng = self.rng.clone();
        let mut ops = 0u64;
        for _ in 0..64 {
            ops += 1;
            let r = interval | u64::from(rng.next_byte());
            if r > 0 {
                return ops + r;
            }
        }
        u64::MAX
    }

    /// `n` operations ran while sampling (`n < ops_to_sample()`): COUNT
    /// counts them, reloading when it is 0. Skipping past a sample point
    /// (against the contract) loses that sample point without panicking.
    pub fn skip(&mut self, n: u64) {
        let mut n = n;
        let mut guard = 0;
        while n > 0 && guard < SKIP_GUARD {
            guard += 1;
            let c = self.count();
            if c == 0 {
                let r = self.reload_value();
                self.set_count(r);
                n -= 1;
                if r == 0 && !self.rnd() {
                    // Every further operation reloads 0: nothing changes.
                    return;
                }
                continue;
            }
            let k = n.min(c);
            self.set_count(c - k);
            n -= k;
        }
    }

    /// The operation at the sample point (`SPEStartSample()` through
    /// `SPECompleteSample()`). If sampling is not enabled at `ctx.el` nothing
    /// happens; otherwise COUNT counts the operation and, if it is a sample
    /// point: a collision when a previous sample is still in flight
    /// (`ctx.op_index` below its end) sets PMBSR_EL1.COLL; else the record
    /// ([`record_for`]) is filtered ([`FilterControls::check`]), dropped in
    /// DISCARD mode, or queued; a queue above capacity writes its oldest
    /// records through `port`.
    pub fn sample(&mut self, op: &Op, ctx: &SampleContext, port: &mut dyn BufferPort) {
        if !self.sampling_at(ctx.el) || !self.count_one() {
            return;
        }
        self.stats.sampled += 1;
        if ctx.op_index < self.busy_until {
            self.stats.collided += 1;
            let sr = self.bank.effective(Reg::Pmbsr);
            self.bank.hw_write(Reg::Pmbsr, pmbsr_el1::COLL.set(sr, 1));
            return;
        }
        self.busy_until = ctx
            .op_index
            .saturating_add(u64::from(op.total_latency.max(1)));
        let rec = record_for(op, ctx, &self.record_controls());
        if self
            .filter_controls()
            .check(&rec, op.total_latency)
            .is_err()
        {
            self.stats.filtered += 1;
            return;
        }
        if self.discard_mode() {
            self.stats.discarded += 1;
            return;
        }
        match self.encode(&rec) {
            Some(bytes) => self.queue.push_back(bytes),
            None => {
                self.lose(1);
                return;
            }
        }
        while self.queue.len() > self.cfg.queue_capacity {
            self.write_oldest(port);
        }
    }

    /// `PSB CSYNC`: every queued record is written to the buffer now (until
    /// a buffer management event stops profiling).
    pub fn psb_csync(&mut self, port: &mut dyn BufferPort) {
        while !self.queue.is_empty() {
            self.write_oldest(port);
        }
    }

    /// The PMBIRQ line: level-sensitive, high while the software-visible
    /// PMBSR_EL1.S is 1 (also when software wrote S = 1).
    pub fn irq_level(&self) -> bool {
        pmbsr_el1::S.is_set(self.bank.visible(Reg::Pmbsr))
    }

    /// What the unit did so far.
    pub fn stats(&self) -> &SpeStats {
        &self.stats
    }

    /// Records held in the unit, not yet written.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Whether the conservation law of [`SpeStats`] holds (it always should).
    pub fn conserved(&self) -> bool {
        let s = &self.stats;
        s.sampled == s.written + s.filtered + s.collided + s.discarded + self.queue.len() as u64
    }

    /// The controls [`record_for`] reads, from the unit's state.
    pub fn record_controls(&self) -> RecordControls {
        RecordControls {
            pms_ver: self.cfg.pms_ver,
            countsize_16bit: self.cfg.countsize_16bit,
            el2_implemented: self.ctl.el2_implemented,
            hcr_el2: self.ctl.hcr_el2,
            mdcr_el2: self.ctl.mdcr_el2,
            pmscr_el1: self.bank.effective(Reg::PmscrEl1),
            pmscr_el2: self.bank.effective(Reg::PmscrEl2),
        }
    }

    /// The filter registers the unit is acting on.
    pub fn filter_controls(&self) -> FilterControls {
        FilterControls {
            pms_ver: self.cfg.pms_ver,
            pmsfcr: self.bank.effective(Reg::Pmsfcr),
            pmsevfr: self.bank.effective(Reg::Pmsevfr),
            pmsnevfr: self.bank.effective(Reg::Pmsnevfr),
            pmslatfr: self.bank.effective(Reg::Pmslatfr),
            pmsdsfr: self.bank.effective(Reg::Pmsdsfr),
        }
    }

    fn discard_mode(&self) -> bool {
        self.cfg.has_discard()
            && pmblimitr_el1::FM.get(self.bank.effective(Reg::Pmblimitr))
                == pmblimitr_el1::FM_DISCARD
    }

    /// The record's bytes: encoded, trimmed to the maximum record size,
    /// padded to the alignment.
    fn encode(&self, rec: &Record) -> Option<Vec<u8>> {
        let max = usize::try_from(self.cfg.max_record_size()).ok()?;
        let align = usize::try_from(self.cfg.alignment()).ok()?;
        let mut rec = *rec;
        let mut buf = [0u8; 256];
        let mut n = rec.encode(&mut buf).ok()?;
        let mut step = 0;
        while n > max {
            if !record::trim(&mut rec, step) {
                return None;
            }
            step += 1;
            n = rec.encode(&mut buf).ok()?;
        }
        let padded = n.div_ceil(align).checked_mul(align)?;
        let mut bytes = buf.get(..n)?.to_vec();
        bytes.resize(padded, 0);
        Some(bytes)
    }

    fn lose(&mut self, n: u64) {
        self.stats.discarded += n;
        self.stats.lost += n;
    }

    fn lose_queue(&mut self) {
        let n = self.queue.len() as u64;
        self.queue.clear();
        self.lose(n);
    }

    /// `SPEWriteToBuffer()` for the oldest queued record, then the
    /// buffer-full check of `SPECompleteSample()`.
    fn write_oldest(&mut self, port: &mut dyn BufferPort) {
        let Some(bytes) = self.queue.pop_front() else {
            return;
        };
        if !self.profiling_buffer_enabled() {
            self.lose(1);
            self.lose_queue();
            return;
        }
        let start = self.bank.effective(Reg::Pmbptr);
        let mut off = 0usize;
        while off < bytes.len() {
            let va = start.wrapping_add(off as u64);
            let room = usize::try_from(PAGE - (va & (PAGE - 1))).unwrap_or(1);
            let len = room.min(bytes.len() - off);
            if let Err(fault) = port.write(va, &bytes[off..off + len]) {
                self.fault_event(fault, va, off > 0);
                self.lose(1);
                self.lose_queue();
                return;
            }
            off += len;
        }
        let ptr = start.wrapping_add(bytes.len() as u64);
        self.bank.hw_write(Reg::Pmbptr, ptr);
        self.stats.written += 1;
        self.stats.records_bytes += bytes.len() as u64;
        let limit = pmblimitr_el1::limit_address(self.bank.effective(Reg::Pmblimitr));
        // SPEBufferIsFull(): PMBPTR > LIMIT - 2^MaxSize, in unbounded integers.
        if u128::from(ptr) + u128::from(self.cfg.max_record_size()) > u128::from(limit) {
            self.buffer_full_event();
            self.lose_queue();
        }
    }

    /// `OtherSPEManagementEvent('000001')`: buffer full.
    fn buffer_full_event(&mut self) {
        let sr = self.bank.effective(Reg::Pmbsr);
        if pmbsr_el1::S.is_set(sr) {
            return;
        }
        let mut v = pmbsr_el1::S.set(sr, 1);
        v = pmbsr_el1::EC.set(v, PmbsrEc::BUF.bits());
        v = pmbsr_el1::MSS.set(v, pmbsr_el1::BSC_FULL);
        self.bank.hw_write(Reg::Pmbsr, v);
        self.stats.buffer_full_events += 1;
    }

    /// A fault on a buffer write at `va` (`DebugWriteFault()` /
    /// `DebugWriteExternalAbort()`): PMBPTR_EL1 = `va`, S = 1, EC and
    /// MSS.FSC from the fault, DL when part of the record was written, EA
    /// for an External abort.
    fn fault_event(&mut self, fault: BufferFault, va: u64, partial: bool) {
        self.bank.hw_write(Reg::Pmbptr, va);
        let (ec, fsc, ea) = match fault {
            BufferFault::Stage1 { fsc } => (PmbsrEc::FAULT_S1, u64::from(fsc) & 0x3F, false),
            BufferFault::Stage2 { fsc } => (PmbsrEc::FAULT_S2, u64::from(fsc) & 0x3F, false),
            BufferFault::External => (PmbsrEc::FAULT_S1, FSC_SYNC_EXTERNAL, true),
        };
        let mut v = pmbsr_el1::S.set(self.bank.effective(Reg::Pmbsr), 1);
        v = pmbsr_el1::EC.set(v, ec.bits());
        v = pmbsr_el1::MSS.set(v, fsc);
        if partial {
            v = pmbsr_el1::DL.set(v, 1);
        }
        if ea {
            v = pmbsr_el1::EA.set(v, 1);
        }
        self.bank.hw_write(Reg::Pmbsr, v);
        self.stats.fault_events += 1;
    }
}

#[cfg(test)]
mod tests;
