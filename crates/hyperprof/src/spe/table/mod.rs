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

mod output;
mod rows;

use std::io::Write;
use std::path::{Path, PathBuf};

use hyperprof_sim::op::Symbol;
use hyperprof_spe::record::RecordErrorKind;
use hyperprof_spe::RecordDecoder;

use super::input::{Buffer, Format, TraceFile};
use crate::error::{Error, Result};
use output::Output;
use rows::{table_of, TABLES};

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
        // Build ids travel in the MMAP2 records before the trace and in the
        // BUILD_ID feature after it.
        let Ok(ends) = trace.head_and_tail(1 << 20) else {
            return Symbols::default();
        };
        for f in files {
            let Ok(bytes) = std::fs::read(&f) else {
                continue;
            };
            if let Some((id, syms)) = crate::perf::elf::read_symbols(&bytes) {
                if ends.windows(id.len()).any(|w| w == id) {
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
fn buffers(trace: &TraceFile, cpu: u32) -> Vec<Buffer> {
    let mut bufs = trace.buffers().to_vec();
    if trace.format() == Format::Raw {
        for b in &mut bufs {
            b.cpu = cpu;
        }
    }
    bufs
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
    let bufs = buffers(trace, cpu);
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
        bytes: bufs.iter().map(|b| b.len as u64).sum(),
    })
}

fn fill(
    trace: &TraceFile,
    bufs: &[Buffer],
    symbols: &Symbols,
    outputs: &mut [Output],
) -> Result<()> {
    for &b in bufs {
        // Window by window: a record that starts before the window's limit
        // has all its bytes in the window.
        trace.windows(b, &mut |win| {
            let base = b.file_offset + win.start;
            let mut next = win.data.len();
            for item in RecordDecoder::with_base(win.data, base) {
                let r = match item {
                    // Offsets are in the window's bytes.
                    Ok((at, _)) if at >= win.limit => {
                        next = at;
                        break;
                    }
                    Ok((_, r)) => r,
                    Err(e) if e.offset >= win.limit => {
                        next = e.offset;
                        break;
                    }
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
                    o.table.push(&r, b.cpu, symbols);
                    if o.table.rows >= BATCH_ROWS {
                        o.flush()?;
                    }
                }
            }
            Ok(Some(next))
        })?;
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

    #[test]
    fn prefixes_and_symbol_lookup() {
        assert_eq!(prefix_of(Path::new("a/web.perf.data")), "web");
        assert_eq!(prefix_of(Path::new("t.spe")), "t");
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
