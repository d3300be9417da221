//! The rows of the three tables: their columns, and a record's cells.

use std::io::Write;

use hyperprof_spe::op::Subclass;
use hyperprof_spe::packet::event;
use hyperprof_spe::{OpClass, Record};

use super::Symbols;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Int,
    Bool,
    Str,
}

/// The three tables: file suffix and columns (spe-parser's, then symbol).
pub(super) const TABLES: [(&str, &[(&str, Kind)]); 3] = [
    (
        "ldst",
        &[
            ("cpu", Kind::Int),
            ("op", Kind::Str),
            ("pc", Kind::Str),
            ("el", Kind::Int),
            ("atomic", Kind::Bool),
            ("excl", Kind::Bool),
            ("ar", Kind::Bool),
            ("subclass", Kind::Str),
            ("event", Kind::Str),
            ("issue_lat", Kind::Int),
            ("total_lat", Kind::Int),
            ("vaddr", Kind::Str),
            ("xlat_lat", Kind::Int),
            ("paddr", Kind::Str),
            ("data_source", Kind::Str),
            ("context", Kind::Str),
            ("ts", Kind::Int),
            ("symbol", Kind::Str),
        ],
    ),
    (
        "br",
        &[
            ("cpu", Kind::Int),
            ("op", Kind::Str),
            ("pc", Kind::Str),
            ("el", Kind::Int),
            ("condition", Kind::Bool),
            ("indirect", Kind::Bool),
            ("event", Kind::Str),
            ("issue_lat", Kind::Int),
            ("total_lat", Kind::Int),
            ("br_tgt", Kind::Str),
            ("br_tgt_lvl", Kind::Int),
            ("pbt", Kind::Str),
            ("pbt_lvl", Kind::Int),
            ("context", Kind::Str),
            ("ts", Kind::Int),
            ("symbol", Kind::Str),
        ],
    ),
    (
        "other",
        &[
            ("cpu", Kind::Int),
            ("op", Kind::Str),
            ("pc", Kind::Str),
            ("el", Kind::Int),
            ("subclass", Kind::Str),
            ("sve_evl", Kind::Int),
            ("sve_pred", Kind::Bool),
            ("sve_fp", Kind::Bool),
            ("condition", Kind::Bool),
            ("event", Kind::Str),
            ("issue_lat", Kind::Int),
            ("total_lat", Kind::Int),
            ("context", Kind::Str),
            ("ts", Kind::Int),
            ("symbol", Kind::Str),
        ],
    ),
];

/// One column's buffered values; strings back to back in one buffer.
pub(super) enum Column {
    Int(Vec<i64>),
    Bool(Vec<bool>),
    Str { data: Vec<u8>, ends: Vec<usize> },
}

/// A row being appended: each call fills the next column.
struct RowWriter<'t> {
    columns: &'t mut [Column],
    next: usize,
}

impl RowWriter<'_> {
    fn column(&mut self) -> Option<&mut Column> {
        let c = self.columns.get_mut(self.next);
        self.next += 1;
        c
    }
    fn int(&mut self, v: i64) {
        if let Some(Column::Int(c)) = self.column() {
            c.push(v);
        }
    }
    fn bool(&mut self, v: bool) {
        if let Some(Column::Bool(c)) = self.column() {
            c.push(v);
        }
    }
    fn str(&mut self, v: &str) {
        if let Some(Column::Str { data, ends }) = self.column() {
            data.extend_from_slice(v.as_bytes());
            ends.push(data.len());
        }
    }
    /// `0x…`, or "" for `None`.
    fn hex(&mut self, v: Option<u64>) {
        if let Some(Column::Str { data, ends }) = self.column() {
            if let Some(v) = v {
                // Vec<u8> as io::Write cannot fail.
                let _ = write!(data, "{v:#x}");
            }
            ends.push(data.len());
        }
    }
    /// A string written by `f`.
    fn with(&mut self, f: impl FnOnce(&mut Vec<u8>)) {
        if let Some(Column::Str { data, ends }) = self.column() {
            f(data);
            ends.push(data.len());
        }
    }
}

/// perf's event names (the EV packet's words), by bit: perf 6.1's, then
/// the IMPLEMENTATION DEFINED bits and the names newer perf gives the
/// newer events.
const EVENT_NAMES: [(u32, &str); 26] = [
    (event::EXCEPTION_GEN, "EXCEPTION-GEN"),
    (event::RETIRED, "RETIRED"),
    (event::L1D_ACCESS, "L1D-ACCESS"),
    (event::L1D_REFILL, "L1D-REFILL"),
    (event::TLB_ACCESS, "TLB-ACCESS"),
    (event::TLB_WALK, "TLB-REFILL"),
    (event::NOT_TAKEN, "NOT-TAKEN"),
    (event::MISPREDICTED, "MISPRED"),
    (event::LLC_ACCESS, "LLC-ACCESS"),
    (event::LLC_MISS, "LLC-REFILL"),
    (event::REMOTE_ACCESS, "REMOTE-ACCESS"),
    (event::ALIGNMENT, "ALIGNMENT"),
    (event::SVE_PARTIAL_PRED, "SVE-PARTIAL-PRED"),
    (event::SVE_EMPTY_PRED, "SVE-EMPTY-PRED"),
    (event::IMPDEF_FIRST, "IMPDEF-12"),
    (event::IMPDEF_FIRST + 1, "IMPDEF-13"),
    (event::IMPDEF_FIRST + 2, "IMPDEF-14"),
    (event::IMPDEF_LAST, "IMPDEF-15"),
    (event::TRANSACTIONAL, "TXN"),
    (event::L2D_ACCESS, "L2D-ACCESS"),
    (event::L2D_MISS, "L2D-MISS"),
    (event::CACHE_DATA_MODIFIED, "HITM"),
    (event::RECENTLY_FETCHED, "LFB"),
    (event::DATA_SNOOPED, "SNOOPED"),
    (event::STREAMING_SVE_MODE, "STREAMING-SVE"),
    (event::SMCU, "SMCU"),
];

/// Events spe-parser leaves out of the other table (a CAS erratum sets them).
const MEMORY_EVENTS: u64 = 1 << event::L1D_ACCESS
    | 1 << event::L1D_REFILL
    | 1 << event::TLB_ACCESS
    | 1 << event::TLB_WALK
    | 1 << event::LLC_ACCESS
    | 1 << event::LLC_MISS
    | 1 << event::REMOTE_ACCESS;

fn event_text(bits: u64, out: &mut Vec<u8>) {
    let mut first = true;
    let mut names = EVENT_NAMES;
    names.sort_unstable_by_key(|(bit, _)| *bit);
    for (bit, name) in names {
        if bits >> bit & 1 != 0 {
            if !first {
                out.push(b':');
            }
            out.extend_from_slice(name.as_bytes());
            first = false;
        }
    }
}

/// Neoverse N1 data sources by their spe-parser names.
fn data_source_text(source: u64, out: &mut Vec<u8>) {
    let name = match source {
        0 => "L1D",
        8 => "L2D",
        9 => "PEER-CPU",
        10 => "LOCAL-CLUSTER",
        11 => "LL-CACHE",
        12 => "PEER-CLUSTER",
        13 => "REMOTE",
        14 => "DRAM",
        other => {
            let _ = write!(out, "{other}");
            return;
        }
    };
    out.extend_from_slice(name.as_bytes());
}

/// The table a record goes to (ldst 0, br 1, other 2), or none.
pub(super) fn table_of(r: &Record) -> Option<usize> {
    match r.op?.class {
        OpClass::LoadStore => Some(0),
        OpClass::Branch => Some(1),
        OpClass::Other => Some(2),
        OpClass::Reserved => None,
    }
}

/// Appends `r` to its table's columns (see [`table_of`]).
fn write_row(r: &Record, cpu: u32, symbols: &Symbols, w: &mut RowWriter<'_>) {
    let Some(op) = r.op else {
        return;
    };
    let p = op.payload;
    let pc = r.pc.map(|pc| pc.virtual_address());
    let el = r.pc.map_or(0, |pc| i64::from(pc.el));
    // Looked up where perf looks it up (an EL1 PC is a kernel address).
    let symbol =
        r.pc.and_then(|pc| symbols.name(crate::perf::perf_ip(&pc)))
            .unwrap_or("");
    let events = r.events.unwrap_or(0);
    let context = r.context_el1.or(r.context_el2).map(u64::from);
    let lat = |l: Option<u16>| l.map_or(0, i64::from);
    let ts = r.timestamp.map_or(0, |t| t as i64);
    let sub = Subclass::of(op);
    w.int(cpu.into());
    match op.class {
        OpClass::LoadStore => {
            let (atomic, excl, ar) = match sub {
                Subclass::Extended { atomic, excl, ar } => (atomic, excl, ar),
                _ => (false, false, false),
            };
            w.str(if op.is_store() { "ST" } else { "LD" });
            w.hex(pc);
            w.int(el);
            w.bool(atomic);
            w.bool(excl);
            w.bool(ar);
            w.str(sub.name());
            w.with(|o| event_text(events, o));
            w.int(lat(r.issue_latency));
            w.int(lat(r.total_latency));
            w.hex(r.data_va);
            w.int(lat(r.translation_latency));
            w.hex(r.data_pa.map(|a| a.addr));
            w.with(|o| {
                if let Some(d) = r.data_source {
                    data_source_text(d, o);
                }
            });
        }
        OpClass::Branch => {
            w.str("B");
            w.hex(pc);
            w.int(el);
            w.bool(p & 1 != 0);
            w.bool(p & 0xFE == 0x02);
            w.with(|o| event_text(events, o));
            w.int(lat(r.issue_latency));
            w.int(lat(r.total_latency));
            w.hex(r.branch_target.map(|t| t.virtual_address()));
            w.int(r.branch_target.map_or(0, |t| i64::from(t.el)));
            w.hex(r.prev_branch_target.map(|t| t.virtual_address()));
            w.int(r.prev_branch_target.map_or(0, |t| i64::from(t.el)));
        }
        OpClass::Other => {
            // SME reports its effective tile size where SVE reports its
            // vector length.
            let (len, pred, fp, cond) = match sub {
                Subclass::Sve { evl, fp, pred } => (evl, pred, fp, false),
                Subclass::Sme { ets, fp } => (ets, false, fp, false),
                Subclass::Other { cond } => (0, false, false, cond),
                _ => (0, false, false, false),
            };
            w.str("OTHER");
            w.hex(pc);
            w.int(el);
            w.str(sub.name());
            w.int(len.into());
            w.bool(pred);
            w.bool(fp);
            w.bool(cond);
            w.with(|o| event_text(events & !MEMORY_EVENTS, o));
            w.int(lat(r.issue_latency));
            w.int(lat(r.total_latency));
        }
        OpClass::Reserved => return,
    }
    w.hex(context);
    w.int(ts);
    w.str(symbol);
}

/// Buffered rows of one table.
pub(super) struct Table {
    pub(super) columns: Vec<Column>,
    pub(super) rows: usize,
}

impl Table {
    pub(super) fn new(kinds: &[(&str, Kind)]) -> Table {
        Table {
            columns: kinds
                .iter()
                .map(|(_, k)| match k {
                    Kind::Int => Column::Int(Vec::new()),
                    Kind::Bool => Column::Bool(Vec::new()),
                    Kind::Str => Column::Str {
                        data: Vec::new(),
                        ends: Vec::new(),
                    },
                })
                .collect(),
            rows: 0,
        }
    }

    pub(super) fn push(&mut self, r: &Record, cpu: u32, symbols: &Symbols) {
        let mut w = RowWriter {
            columns: &mut self.columns,
            next: 0,
        };
        write_row(r, cpu, symbols, &mut w);
        self.rows += 1;
    }

    pub(super) fn clear(&mut self) {
        for c in &mut self.columns {
            match c {
                Column::Int(v) => v.clear(),
                Column::Bool(v) => v.clear(),
                Column::Str { data, ends } => {
                    data.clear();
                    ends.clear();
                }
            }
        }
        self.rows = 0;
    }
}

/// String `i` of a string column.
pub(super) fn str_at<'a>(data: &'a [u8], ends: &[usize], i: usize) -> &'a [u8] {
    let start = if i == 0 { 0 } else { ends[i - 1] };
    &data[start..ends[i]]
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyperprof_sim::op::Symbol;
    use hyperprof_spe::record::{CodeAddress, OpType};

    #[test]
    fn every_row_fills_every_column_of_its_table() {
        let base = Record {
            pc: Some(CodeAddress {
                addr: 0x1004,
                el: 0,
                ns: true,
            }),
            events: Some(1 << event::RETIRED | 1 << event::L1D_ACCESS),
            ..Record::default()
        };
        let syms = Symbols::new(vec![Symbol {
            name: "f".into(),
            start: 0x1000,
            end: 0x1010,
        }]);
        for (class, payload, table) in [
            (OpClass::LoadStore, 0u8, 0usize),
            (OpClass::LoadStore, 0x17, 0),
            (OpClass::Branch, 3, 1),
            (OpClass::Other, 0x2e, 2),
            (OpClass::Other, 1, 2),
        ] {
            let r = Record {
                op: Some(OpType { class, payload }),
                ..base
            };
            assert_eq!(table_of(&r), Some(table));
            let mut t = Table::new(TABLES[table].1);
            t.push(&r, 3, &syms);
            t.push(&r, 3, &syms);
            for (c, (name, _)) in t.columns.iter().zip(TABLES[table].1) {
                let n = match c {
                    Column::Int(v) => v.len(),
                    Column::Bool(v) => v.len(),
                    Column::Str { ends, .. } => ends.len(),
                };
                assert_eq!(n, 2, "{name}");
            }
            let Some(Column::Str { data, ends }) = t.columns.last() else {
                panic!("symbol is a string column");
            };
            assert_eq!(str_at(data, ends, 1), b"f");
        }
        let reserved = Record {
            op: Some(OpType {
                class: OpClass::Reserved,
                payload: 0,
            }),
            ..base
        };
        assert_eq!(table_of(&reserved), None);
        assert_eq!(table_of(&base), None);
    }

    #[test]
    fn texts_follow_spe_parser() {
        let text = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut v = Vec::new();
            f(&mut v);
            String::from_utf8(v).unwrap()
        };
        assert_eq!(
            text(&|o| event_text(1 << event::RETIRED | 1 << event::LLC_MISS, o)),
            "RETIRED:LLC-REFILL"
        );
        assert_eq!(text(&|o| data_source_text(14, o)), "DRAM");
        assert_eq!(text(&|o| data_source_text(3, o)), "3");
    }
}
