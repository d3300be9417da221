//! `hyperprof spe export FILE --format parquet|csv -o DIR`: SPE records as
//! three tables in the schema of Arm's spe-parser (tools/spe_parser of
//! Arm's telemetry-solution), for DuckDB, Spark or Trino:
//! `PREFIX-ldst` (loads, stores and atomics), `PREFIX-br` (branches) and
//! `PREFIX-other`, with spe-parser's columns and its defaults for absent
//! fields (0, "" or false), plus `symbol`: the function of the PC, from
//! the symbol files (`*.elf`) hyperprof wrote beside the trace.
//!
//! Records stream through bounded batches ([`BATCH_ROWS`] rows per table,
//! one Parquet row group each), so memory does not grow with the trace.
//! Records without an operation type, or with the reserved class, go to no
//! table (spe-parser drops them too); unterminated records at the end of a
//! buffer are not records (as `spe stats` counts them).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyperprof_sim::op::Symbol;
use hyperprof_spe::op::Subclass;
use hyperprof_spe::packet::event;
use hyperprof_spe::perf_data::PerfData;
use hyperprof_spe::record::RecordErrorKind;
use hyperprof_spe::{OpClass, Record, RecordDecoder};

use super::input::{Format, TraceFile};
use super::out::LatchedWriter;
use crate::error::{Error, Result};

/// Rows buffered per table before they are written.
pub const BATCH_ROWS: usize = 65_536;

/// The output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableFormat {
    /// Apache Parquet (snappy-compressed, one row group per batch).
    Parquet,
    /// Comma-separated values with a header line.
    Csv,
}

impl TableFormat {
    fn ext(self) -> &'static str {
        match self {
            TableFormat::Parquet => "parquet",
            TableFormat::Csv => "csv",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Int,
    Bool,
    Str,
}

/// The three tables: file suffix and columns (spe-parser's, then symbol).
const TABLES: [(&str, &[(&str, Kind)]); 3] = [
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
enum Column {
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
fn table_of(r: &Record) -> Option<usize> {
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
    let symbol = pc.and_then(|a| symbols.name(a)).unwrap_or("");
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

/// Functions by address, from symbol files.
#[derive(Default)]
pub struct Symbols {
    sorted: Vec<Symbol>,
}

impl Symbols {
    /// The functions of `symbols`.
    pub fn new(mut symbols: Vec<Symbol>) -> Self {
        symbols.sort_by_key(|s| s.start);
        Symbols { sorted: symbols }
    }

    /// The symbol files beside `trace` whose build ids the trace names (a
    /// perf.data file hyperprof wrote carries them in its MMAP2 records
    /// and BUILD_ID feature).
    pub fn beside(trace: &TraceFile) -> Symbols {
        let dir = match trace.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut all = Vec::new();
        let Ok(files) = crate::perf::setup::symbol_files(&dir) else {
            return Symbols::default();
        };
        for f in files {
            let Ok(bytes) = std::fs::read(&f) else {
                continue;
            };
            if let Some((id, syms)) = crate::perf::elf::read_symbols(&bytes) {
                if trace.bytes.windows(id.len()).any(|w| w == id) {
                    all.extend(syms);
                }
            }
        }
        Symbols::new(all)
    }

    /// The function holding `addr`.
    pub fn name(&self, addr: u64) -> Option<&str> {
        let i = self.sorted.partition_point(|s| s.start <= addr);
        let s = self.sorted.get(i.checked_sub(1)?)?;
        (addr < s.end).then_some(s.name.as_str())
    }
}

/// Buffered rows of one table.
struct Table {
    columns: Vec<Column>,
    rows: usize,
}

impl Table {
    fn new(kinds: &[(&str, Kind)]) -> Table {
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

    fn push(&mut self, r: &Record, cpu: u32, symbols: &Symbols) {
        let mut w = RowWriter {
            columns: &mut self.columns,
            next: 0,
        };
        write_row(r, cpu, symbols, &mut w);
        self.rows += 1;
    }

    fn clear(&mut self) {
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
fn str_at<'a>(data: &'a [u8], ends: &[usize], i: usize) -> &'a [u8] {
    let start = if i == 0 { 0 } else { ends[i - 1] };
    &data[start..ends[i]]
}

/// Where batches go.
enum Writer {
    Parquet(Box<parquet::file::writer::SerializedFileWriter<std::fs::File>>),
    Csv(LatchedWriter<std::io::BufWriter<std::fs::File>>),
}

fn pq(path: &Path) -> impl Fn(parquet::errors::ParquetError) -> Error + '_ {
    move |e| Error::Usage(format!("{}: writing Parquet: {e}", path.display()))
}

fn parquet_schema(name: &str, cols: &[(&str, Kind)]) -> String {
    let mut s = format!("message {name} {{\n");
    for (c, k) in cols {
        let ty = match k {
            Kind::Int => "int64",
            Kind::Bool => "boolean",
            Kind::Str => "binary",
        };
        let ann = if *k == Kind::Str { " (STRING)" } else { "" };
        s += &format!("  required {ty} {c}{ann};\n");
    }
    s + "}\n"
}

fn csv_field(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\"")).into()
    } else {
        s.into()
    }
}

/// One output table: its file (written under a temporary name until the
/// export succeeds) and its buffered rows.
struct Output {
    path: PathBuf,
    tmp: PathBuf,
    writer: Writer,
    table: Table,
    written: u64,
}

impl Output {
    fn create(dir: &Path, prefix: &str, t: usize, format: TableFormat) -> Result<Output> {
        let (name, cols) = TABLES[t];
        let path = dir.join(format!("{prefix}-{name}.{}", format.ext()));
        let tmp = dir.join(format!(".{prefix}-{name}.{}.tmp", format.ext()));
        let file = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let writer = match format {
            TableFormat::Parquet => {
                use parquet::basic::Compression;
                use parquet::file::properties::WriterProperties;
                let schema =
                    parquet::schema::parser::parse_message_type(&parquet_schema(name, cols))
                        .map_err(pq(&path))?;
                use parquet::file::properties::EnabledStatistics;
                use parquet::schema::types::ColumnPath;
                let mut props = WriterProperties::builder()
                    .set_compression(Compression::SNAPPY)
                    .set_created_by(format!("hyperprof {}", env!("CARGO_PKG_VERSION")));
                // Min/max of strings cost a comparison per value and prune
                // nothing (hex text); data addresses rarely repeat, so a
                // dictionary does not pay for them.
                for (c, k) in cols {
                    if *k == Kind::Str {
                        props = props.set_column_statistics_enabled(
                            ColumnPath::from(*c),
                            EnabledStatistics::None,
                        );
                    }
                    if matches!(*c, "vaddr" | "paddr") {
                        props = props.set_column_dictionary_enabled(ColumnPath::from(*c), false);
                    }
                }
                let props = props.build();
                Writer::Parquet(Box::new(
                    parquet::file::writer::SerializedFileWriter::new(
                        file,
                        Arc::new(schema),
                        Arc::new(props),
                    )
                    .map_err(pq(&path))?,
                ))
            }
            TableFormat::Csv => {
                let mut w = LatchedWriter::new(std::io::BufWriter::new(file));
                let header: Vec<&str> = cols.iter().map(|(c, _)| *c).collect();
                w.write(header.join(",").as_bytes());
                w.write(b"\n");
                Writer::Csv(w)
            }
        };
        Ok(Output {
            path,
            tmp,
            writer,
            table: Table::new(cols),
            written: 0,
        })
    }

    fn flush(&mut self) -> Result<()> {
        if self.table.rows == 0 {
            return Ok(());
        }
        match &mut self.writer {
            Writer::Parquet(w) => {
                use parquet::data_type::{BoolType, ByteArray, ByteArrayType, Int64Type};
                let err = pq(&self.path);
                let mut rg = w.next_row_group().map_err(&err)?;
                for col in &self.table.columns {
                    let Some(mut cw) = rg.next_column().map_err(&err)? else {
                        break;
                    };
                    match col {
                        Column::Int(v) => {
                            cw.typed::<Int64Type>()
                                .write_batch(v, None, None)
                                .map_err(&err)?;
                        }
                        Column::Bool(v) => {
                            cw.typed::<BoolType>()
                                .write_batch(v, None, None)
                                .map_err(&err)?;
                        }
                        Column::Str { data, ends } => {
                            // One shared buffer, sliced: no copy per value.
                            let all = bytes::Bytes::copy_from_slice(data);
                            let mut start = 0;
                            let b: Vec<ByteArray> = ends
                                .iter()
                                .map(|&end| {
                                    let v = ByteArray::from(all.slice(start..end));
                                    start = end;
                                    v
                                })
                                .collect();
                            cw.typed::<ByteArrayType>()
                                .write_batch(&b, None, None)
                                .map_err(&err)?;
                        }
                    }
                    cw.close().map_err(&err)?;
                }
                rg.close().map_err(&err)?;
            }
            Writer::Csv(w) => {
                let mut line = String::new();
                for i in 0..self.table.rows {
                    line.clear();
                    for (j, col) in self.table.columns.iter().enumerate() {
                        if j > 0 {
                            line.push(',');
                        }
                        match col {
                            Column::Int(v) => line += &v[i].to_string(),
                            Column::Bool(v) => line += if v[i] { "True" } else { "False" },
                            Column::Str { data, ends } => {
                                line += &csv_field(&String::from_utf8_lossy(str_at(data, ends, i)))
                            }
                        }
                    }
                    line.push('\n');
                    w.write(line.as_bytes());
                }
                if w.failed() {
                    return Ok(());
                }
            }
        }
        self.written += self.table.rows as u64;
        self.table.clear();
        Ok(())
    }

    fn finish(mut self) -> Result<PathBuf> {
        self.flush()?;
        match self.writer {
            Writer::Parquet(w) => {
                w.close().map_err(pq(&self.path))?;
            }
            Writer::Csv(w) => {
                w.finish().map_err(|e| Error::io(&self.tmp, e))?;
            }
        }
        std::fs::rename(&self.tmp, &self.path).map_err(|e| Error::io(&self.path, e))?;
        Ok(self.path)
    }
}

/// What an export wrote.
#[derive(Debug)]
pub struct TableExport {
    /// The three files, ldst, br and other.
    pub files: Vec<PathBuf>,
    /// Rows per table, in the same order.
    pub rows: [u64; 3],
    /// Trace bytes read.
    pub bytes: u64,
}

/// The buffers of `trace` with the CPU of each (`cpu` for a raw buffer).
fn buffers(trace: &TraceFile, cpu: u32) -> Result<Vec<(u32, usize, &[u8])>> {
    match trace.format() {
        Format::Raw => Ok(vec![(cpu, 0, &trace.bytes)]),
        Format::PerfData => {
            let bad = |e: hyperprof_spe::perf_data::PerfDataError| {
                Error::malformed(&trace.path, e.to_string())
            };
            PerfData::parse(&trace.bytes)
                .map_err(bad)?
                .aux_traces()
                .map(|t| t.map(|t| (t.cpu, t.data_offset, t.data)).map_err(bad))
                .collect()
        }
    }
}

/// The file name prefix for `trace`: its name without `.perf.data`,
/// `.data` or `.spe`.
pub fn prefix_of(trace: &Path) -> String {
    let name = trace
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "spe".into());
    let stem = [".perf.data", ".data", ".spe"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(&name);
    crate::run::artifacts::file_stem(stem)
}

fn cleanup(outputs: Vec<Output>) {
    for o in outputs {
        let _ = std::fs::remove_file(&o.tmp);
    }
}

/// Exports the records of `trace` into `dir` (created if missing) as three
/// tables named after the trace; `cpu` is the CPU of a raw buffer. Nothing
/// is left behind when the trace is malformed.
pub fn export_tables(
    trace: &TraceFile,
    dir: &Path,
    format: TableFormat,
    cpu: u32,
    symbols: &Symbols,
) -> Result<TableExport> {
    let bufs = buffers(trace, cpu)?;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let prefix = prefix_of(&trace.path);
    let mut outputs = Vec::new();
    for t in 0..TABLES.len() {
        match Output::create(dir, &prefix, t, format) {
            Ok(o) => outputs.push(o),
            Err(e) => {
                cleanup(outputs);
                return Err(e);
            }
        }
    }
    if let Err(e) = fill(trace, &bufs, symbols, &mut outputs) {
        cleanup(outputs);
        return Err(e);
    }
    let mut rows = [0u64; 3];
    let mut files = Vec::new();
    let mut outputs = outputs.into_iter();
    for (i, o) in outputs.by_ref().enumerate() {
        let last = o.tmp.clone();
        rows[i] = o.written + o.table.rows as u64;
        match o.finish() {
            Ok(p) => files.push(p),
            Err(e) => {
                let _ = std::fs::remove_file(last);
                cleanup(outputs.collect());
                return Err(e);
            }
        }
    }
    Ok(TableExport {
        files,
        rows,
        bytes: bufs.iter().map(|b| b.2.len() as u64).sum(),
    })
}

fn fill(
    trace: &TraceFile,
    bufs: &[(u32, usize, &[u8])],
    symbols: &Symbols,
    outputs: &mut [Output],
) -> Result<()> {
    for &(cpu, base, data) in bufs {
        for item in RecordDecoder::with_base(data, base) {
            let r = match item {
                Ok((_, r)) => r,
                Err(e) if e.kind == RecordErrorKind::Unterminated => break,
                Err(e) => {
                    let why = match e.kind {
                        RecordErrorKind::Packet(p) => p.to_string(),
                        RecordErrorKind::Unterminated => "unterminated record".into(),
                    };
                    return Err(Error::malformed(
                        &trace.path,
                        format!("byte offset {:#x}: {why}", base + e.offset),
                    ));
                }
            };
            if let Some(t) = table_of(&r) {
                let o = &mut outputs[t];
                o.table.push(&r, cpu, symbols);
                if o.table.rows >= BATCH_ROWS {
                    o.flush()?;
                }
            }
        }
    }
    Ok(())
}

/// Writes the files' names, one per line, for the CLI.
pub fn render(e: &TableExport, out: &mut impl Write) -> std::io::Result<()> {
    for (f, rows) in e.files.iter().zip(e.rows) {
        writeln!(out, "{}  {rows} rows", f.display())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
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
        assert_eq!(prefix_of(Path::new("a/web.perf.data")), "web");
        assert_eq!(prefix_of(Path::new("t.spe")), "t");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        let s = Symbols::new(vec![Symbol {
            name: "g".into(),
            start: 0x20,
            end: 0x30,
        }]);
        assert_eq!(s.name(0x20), Some("g"));
        assert_eq!(s.name(0x30), None);
        assert_eq!(s.name(0x10), None);
    }
}
