//! `hyperprof spe stats`: decode a trace and aggregate what its records say.

use serde::Serialize;

use hyperprof_spe::op::Subclass;
use hyperprof_spe::packet::{decode, event, OpClass, Packet};
use hyperprof_spe::Record;

use super::input::TraceFile;
use crate::error::{Error, Result};

/// Exact latency distribution of one counter (values are 16-bit).
#[derive(Clone)]
pub struct LatencyHistogram {
    counts: Box<[u64; 65536]>,
    total: u64,
    sum: u64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            counts: vec![0u64; 65536]
                .into_boxed_slice()
                .try_into()
                .expect("65536 entries"),
            total: 0,
            sum: 0,
        }
    }
}

/// Percentiles of a latency counter.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencySummary {
    /// Records carrying the counter.
    pub samples: u64,
    /// Mean in cycles.
    pub mean: f64,
    /// Median.
    pub p50: u16,
    /// 90th percentile.
    pub p90: u16,
    /// 99th percentile.
    pub p99: u16,
    /// Largest value.
    pub max: u16,
}

impl LatencyHistogram {
    /// Counts one value.
    #[inline]
    pub fn add(&mut self, v: u16) {
        self.counts[v as usize] += 1;
        self.total += 1;
        self.sum += v as u64;
    }

    /// The smallest value at or below which `q` of the samples lie (nearest rank).
    fn quantile(&self, q: f64) -> u16 {
        let rank = ((q * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (v, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return v as u16;
            }
        }
        u16::MAX
    }

    /// The percentiles, or `None` without values.
    pub fn summary(&self) -> Option<LatencySummary> {
        if self.total == 0 {
            return None;
        }
        let max = self.counts.iter().rposition(|&c| c != 0).unwrap_or(0) as u16;
        Some(LatencySummary {
            samples: self.total,
            mean: self.sum as f64 / self.total as f64,
            p50: self.quantile(0.50),
            p90: self.quantile(0.90),
            p99: self.quantile(0.99),
            max,
        })
    }
}

/// Packets by kind.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct PacketCounts {
    /// PAD bytes.
    pub pad: u64,
    /// END packets.
    pub end: u64,
    /// TIMESTAMP packets.
    pub timestamp: u64,
    /// EVENTS packets.
    pub events: u64,
    /// DATA SOURCE packets.
    pub data_source: u64,
    /// CONTEXT packets.
    pub context: u64,
    /// OP TYPE packets.
    pub op_type: u64,
    /// ADDRESS packets with index PC.
    pub address_pc: u64,
    /// ADDRESS packets with index branch target.
    pub address_target: u64,
    /// ADDRESS packets with index data VA.
    pub address_va: u64,
    /// ADDRESS packets with index data PA.
    pub address_pa: u64,
    /// ADDRESS packets with index previous branch target (FEAT_SPE_PBT).
    pub address_pbt: u64,
    /// ADDRESS packets with another index.
    pub address_other: u64,
    /// COUNTER packets.
    pub counter: u64,
    /// Alignment packets.
    pub alignment: u64,
}

/// Operations by class.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct OpCounts {
    /// Loads.
    pub load: u64,
    /// Stores.
    pub store: u64,
    /// Branches.
    pub branch: u64,
    /// Of which conditional.
    pub branch_conditional: u64,
    /// Of which indirect.
    pub branch_indirect: u64,
    /// Of which branches checked against the guarded control stack.
    pub branch_gcs: u64,
    /// Of which calls (branch with link).
    pub branch_call: u64,
    /// Of which returns.
    pub branch_return: u64,
    /// Loads and stores that are atomic, exclusive or acquire/release.
    pub ldst_atomic_excl_ar: u64,
    /// Loads and stores of SIMD&FP registers.
    pub ldst_simd_fp: u64,
    /// SVE or SME loads and stores.
    pub ldst_sve_sme: u64,
    /// Loads and stores of MTE allocation tags.
    pub ldst_mte_tag: u64,
    /// Memory copy (CPY*) loads and stores.
    pub ldst_memcpy: u64,
    /// Memory set (SET*) stores.
    pub ldst_memset: u64,
    /// Guarded control stack accesses.
    pub ldst_gcs: u64,
    /// Other operations.
    pub other: u64,
    /// Of which SVE data processing.
    pub other_sve: u64,
    /// Of which SME data processing.
    pub other_sme: u64,
    /// Reserved class.
    pub reserved: u64,
    /// Records without an operation type packet.
    pub none: u64,
}

/// Records by exception level of their PC.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct ElCounts {
    /// EL0.
    pub el0: u64,
    /// EL1.
    pub el1: u64,
    /// EL2.
    pub el2: u64,
    /// EL3.
    pub el3: u64,
    /// Records without a PC.
    pub no_pc: u64,
}

/// Event names and bits, in the order reports list them: the events perf
/// 6.1 names, the IMPLEMENTATION DEFINED bits, then the newer ones by the
/// names newer perf prints (txn, l2d-access, l2d-miss, hitm, lfb, snooped,
/// streaming-sve, smcu).
pub const EVENTS: [(&str, u32); 26] = [
    ("exception-gen", event::EXCEPTION_GEN),
    ("retired", event::RETIRED),
    ("l1d-access", event::L1D_ACCESS),
    ("l1d-refill", event::L1D_REFILL),
    ("tlb-access", event::TLB_ACCESS),
    ("tlb-walk", event::TLB_WALK),
    ("not-taken", event::NOT_TAKEN),
    ("mispredicted", event::MISPREDICTED),
    ("llc-access", event::LLC_ACCESS),
    ("llc-miss", event::LLC_MISS),
    ("remote-access", event::REMOTE_ACCESS),
    ("alignment", event::ALIGNMENT),
    ("sve-partial-pred", event::SVE_PARTIAL_PRED),
    ("sve-empty-pred", event::SVE_EMPTY_PRED),
    ("impdef-12", event::IMPDEF_FIRST),
    ("impdef-13", event::IMPDEF_FIRST + 1),
    ("impdef-14", event::IMPDEF_FIRST + 2),
    ("impdef-15", event::IMPDEF_LAST),
    ("txn", event::TRANSACTIONAL),
    ("l2d-access", event::L2D_ACCESS),
    ("l2d-miss", event::L2D_MISS),
    ("hitm", event::CACHE_DATA_MODIFIED),
    ("lfb", event::RECENTLY_FETCHED),
    ("snooped", event::DATA_SNOOPED),
    ("streaming-sve", event::STREAMING_SVE_MODE),
    ("smcu", event::SMCU),
];

/// Everything `spe stats` reports.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Stats {
    /// Trace bytes decoded.
    pub bytes: u64,
    /// SPE buffers (1 for a raw file).
    pub buffers: u64,
    /// Complete records.
    pub records: u64,
    /// Buffers that ended inside a record.
    pub incomplete_records: u64,
    /// Records with a timestamp.
    pub timestamped_records: u64,
    /// Packets by kind.
    pub packets: PacketCounts,
    /// Operations by class.
    pub ops: OpCounts,
    /// Records with each event.
    pub events: Vec<(String, u64)>,
    /// Records by PC exception level.
    pub el: ElCounts,
    /// Total latency.
    pub total_latency: Option<LatencySummary>,
    /// Issue latency.
    pub issue_latency: Option<LatencySummary>,
    /// Translation latency.
    pub translation_latency: Option<LatencySummary>,
}

/// Accumulates records and packets.
pub struct Aggregator {
    bytes: u64,
    buffers: u64,
    records: u64,
    incomplete: u64,
    timestamped: u64,
    packets: PacketCounts,
    ops: OpCounts,
    events: Vec<u64>,
    el: ElCounts,
    total: LatencyHistogram,
    issue: LatencyHistogram,
    xlat: LatencyHistogram,
}

impl Default for Aggregator {
    fn default() -> Self {
        Aggregator {
            bytes: 0,
            buffers: 0,
            records: 0,
            incomplete: 0,
            timestamped: 0,
            packets: PacketCounts::default(),
            ops: OpCounts::default(),
            events: vec![0; 64],
            el: ElCounts::default(),
            total: LatencyHistogram::default(),
            issue: LatencyHistogram::default(),
            xlat: LatencyHistogram::default(),
        }
    }
}

impl Aggregator {
    #[inline]
    fn count_packet(&mut self, p: &Packet) {
        let c = &mut self.packets;
        match *p {
            Packet::Pad => c.pad += 1,
            Packet::End => c.end += 1,
            Packet::Timestamp(_) => c.timestamp += 1,
            Packet::Events { .. } => c.events += 1,
            Packet::DataSource { .. } => c.data_source += 1,
            Packet::Context { .. } => c.context += 1,
            Packet::OpType { .. } => c.op_type += 1,
            Packet::Address { index: 0, .. } => c.address_pc += 1,
            Packet::Address { index: 1, .. } => c.address_target += 1,
            Packet::Address { index: 2, .. } => c.address_va += 1,
            Packet::Address { index: 3, .. } => c.address_pa += 1,
            Packet::Address { index: 4, .. } => c.address_pbt += 1,
            Packet::Address { .. } => c.address_other += 1,
            Packet::Counter { .. } => c.counter += 1,
            Packet::Alignment { .. } => c.alignment += 1,
        }
    }

    #[inline]
    fn count_subclass(&mut self, sub: Subclass) {
        let o = &mut self.ops;
        match sub {
            Subclass::Extended { .. } => o.ldst_atomic_excl_ar += 1,
            Subclass::SimdFp => o.ldst_simd_fp += 1,
            Subclass::SveSme { .. } => o.ldst_sve_sme += 1,
            Subclass::MteTag => o.ldst_mte_tag += 1,
            Subclass::Memcpy => o.ldst_memcpy += 1,
            Subclass::Memset => o.ldst_memset += 1,
            Subclass::Gcs { .. } => o.ldst_gcs += 1,
            Subclass::Sve { .. } => o.other_sve += 1,
            Subclass::Sme { .. } => o.other_sme += 1,
            Subclass::Branch {
                gcs, call_return, ..
            } => {
                o.branch_gcs += u64::from(gcs);
                o.branch_call += u64::from(call_return == 1);
                o.branch_return += u64::from(call_return == 2);
            }
            _ => {}
        }
    }

    #[inline]
    fn add_record(&mut self, r: &Record) {
        self.records += 1;
        self.timestamped += r.timestamp.is_some() as u64;
        match r.op {
            None => self.ops.none += 1,
            Some(op) => {
                match op.class {
                    OpClass::LoadStore if op.is_store() => self.ops.store += 1,
                    OpClass::LoadStore => self.ops.load += 1,
                    OpClass::Branch => {
                        self.ops.branch += 1;
                        self.ops.branch_conditional += op.is_conditional() as u64;
                        self.ops.branch_indirect += (op.payload & 0xFE == 0x02) as u64;
                    }
                    OpClass::Other => self.ops.other += 1,
                    OpClass::Reserved => self.ops.reserved += 1,
                }
                self.count_subclass(Subclass::of(op));
            }
        }
        if let Some(mut e) = r.events {
            while e != 0 {
                let bit = e.trailing_zeros();
                self.events[bit as usize] += 1;
                e &= e - 1;
            }
        }
        match r.pc.map(|pc| pc.el) {
            None => self.el.no_pc += 1,
            Some(0) => self.el.el0 += 1,
            Some(1) => self.el.el1 += 1,
            Some(2) => self.el.el2 += 1,
            Some(_) => self.el.el3 += 1,
        }
        if let Some(v) = r.total_latency {
            self.total.add(v);
        }
        if let Some(v) = r.issue_latency {
            self.issue.add(v);
        }
        if let Some(v) = r.translation_latency {
            self.xlat.add(v);
        }
    }

    /// Decodes and counts one whole buffer `data` whose first byte lies at
    /// address `base`; on a malformed packet, its offset in `data` and why.
    pub fn add_buffer(
        &mut self,
        data: &[u8],
        base: usize,
    ) -> std::result::Result<(), (usize, String)> {
        self.buffers += 1;
        self.bytes += data.len() as u64;
        let mut scan = Scan::default();
        self.add_window(&mut scan, data, base, data.len())?;
        self.incomplete += scan.open as u64;
        Ok(())
    }

    /// Decodes and counts the packets of `data` (at address `base`) that
    /// start below `limit`, continuing `scan`; returns where it stopped.
    fn add_window(
        &mut self,
        scan: &mut Scan,
        data: &[u8],
        base: usize,
        limit: usize,
    ) -> std::result::Result<usize, (usize, String)> {
        let mut pos = 0;
        while pos < limit {
            if data[pos] == 0 {
                // Runs of padding, the commonest packet, without the decoder.
                let run = data[pos..].iter().take_while(|&&b| b == 0).count();
                self.packets.pad += run as u64;
                pos += run;
                continue;
            }
            let (p, n) =
                decode(&data[pos..], base.wrapping_add(pos)).map_err(|e| (pos, e.to_string()))?;
            pos += n;
            self.count_packet(&p);
            scan.open = true;
            if scan.rec.apply(&p) {
                self.add_record(&scan.rec);
                scan.rec = Record::default();
                scan.open = false;
            }
        }
        Ok(pos)
    }

    /// The report.
    pub fn finish(&self) -> Stats {
        Stats {
            bytes: self.bytes,
            buffers: self.buffers,
            records: self.records,
            incomplete_records: self.incomplete,
            timestamped_records: self.timestamped,
            packets: self.packets.clone(),
            ops: self.ops.clone(),
            events: EVENTS
                .iter()
                .map(|&(name, bit)| (name.to_string(), self.events[bit as usize]))
                .collect(),
            el: self.el.clone(),
            total_latency: self.total.summary(),
            issue_latency: self.issue.summary(),
            translation_latency: self.xlat.summary(),
        }
    }
}

/// A record being assembled across the windows of one buffer.
#[derive(Default)]
struct Scan {
    rec: Record,
    open: bool,
}

/// Decodes every buffer of `file`, a window at a time, and aggregates.
pub fn stats(file: &TraceFile) -> Result<Stats> {
    let mut agg = Aggregator::default();
    for &b in file.buffers() {
        agg.buffers += 1;
        agg.bytes += b.len as u64;
        let mut scan = Scan::default();
        file.windows(b, &mut |w| {
            agg.add_window(&mut scan, w.data, w.file_offset, w.limit)
                .map(Some)
                .map_err(|(off, msg)| {
                    Error::malformed(
                        &file.path,
                        format!("byte offset {:#x}: {msg}", w.file_offset + off),
                    )
                })
        })?;
        agg.incomplete += scan.open as u64;
    }
    Ok(agg.finish())
}

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

/// The report as text.
pub fn render(s: &Stats) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let r = s.records;
    let _ = writeln!(o, "bytes               {}", s.bytes);
    let _ = writeln!(o, "buffers             {}", s.buffers);
    let _ = writeln!(o, "records             {}", r);
    let _ = writeln!(o, "  with timestamp    {}", s.timestamped_records);
    let _ = writeln!(o, "  incomplete        {}", s.incomplete_records);
    let _ = writeln!(o, "packets");
    let p = &s.packets;
    for (name, v) in [
        ("pad (bytes)", p.pad),
        ("end", p.end),
        ("timestamp", p.timestamp),
        ("events", p.events),
        ("data-source", p.data_source),
        ("context", p.context),
        ("op-type", p.op_type),
        ("address pc", p.address_pc),
        ("address target", p.address_target),
        ("address va", p.address_va),
        ("address pa", p.address_pa),
        ("address pbt", p.address_pbt),
        ("address other", p.address_other),
        ("counter", p.counter),
        ("alignment", p.alignment),
    ] {
        let _ = writeln!(o, "  {name:<18}{v}");
    }
    let _ = writeln!(o, "ops");
    let ops = &s.ops;
    for (name, v) in [
        ("load", ops.load),
        ("store", ops.store),
        ("  ls atomic etc.", ops.ldst_atomic_excl_ar),
        ("  ls simd-fp", ops.ldst_simd_fp),
        ("  ls sve/sme", ops.ldst_sve_sme),
        ("  ls mte-tag", ops.ldst_mte_tag),
        ("  ls memcpy", ops.ldst_memcpy),
        ("  ls memset", ops.ldst_memset),
        ("  ls gcs", ops.ldst_gcs),
        ("branch", ops.branch),
        ("  conditional", ops.branch_conditional),
        ("  indirect", ops.branch_indirect),
        ("  call", ops.branch_call),
        ("  return", ops.branch_return),
        ("  gcs", ops.branch_gcs),
        ("other", ops.other),
        ("  sve", ops.other_sve),
        ("  sme", ops.other_sme),
        ("reserved", ops.reserved),
        ("none", ops.none),
    ] {
        let _ = writeln!(o, "  {name:<18}{v:<12}{:6.2}%", pct(v, r));
    }
    let _ = writeln!(o, "events (records with the event)");
    for (name, v) in &s.events {
        let _ = writeln!(o, "  {name:<18}{v:<12}{:6.2}%", pct(*v, r));
    }
    let _ = writeln!(o, "exception level of PC");
    for (name, v) in [
        ("el0", s.el.el0),
        ("el1", s.el.el1),
        ("el2", s.el.el2),
        ("el3", s.el.el3),
        ("no pc", s.el.no_pc),
    ] {
        let _ = writeln!(o, "  {name:<18}{v:<12}{:6.2}%", pct(v, r));
    }
    let _ = writeln!(
        o,
        "latency (cycles)    samples      mean     p50     p90     p99     max"
    );
    for (name, l) in [
        ("total", s.total_latency),
        ("issue", s.issue_latency),
        ("translation", s.translation_latency),
    ] {
        match l {
            Some(l) => {
                let _ = writeln!(
                    o,
                    "  {name:<18}{:<10}{:>8.1}{:>8}{:>8}{:>8}{:>8}",
                    l.samples, l.mean, l.p50, l.p90, l.p99, l.max
                );
            }
            None => {
                let _ = writeln!(o, "  {name:<18}0");
            }
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_nearest_rank() {
        let mut h = LatencyHistogram::default();
        for v in 1..=100u16 {
            h.add(v);
        }
        let s = h.summary().unwrap();
        assert_eq!((s.p50, s.p90, s.p99, s.max), (50, 90, 99, 100));
        assert_eq!(s.samples, 100);
        assert!((s.mean - 50.5).abs() < 1e-9);
        assert!(LatencyHistogram::default().summary().is_none());
    }
}
