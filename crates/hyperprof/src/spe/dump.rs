//! `hyperprof spe dump`: one line per packet, as `perf report -D` prints them.
//!
//! The file is read a window at a time ([`TraceFile::windows`]). A first pass
//! walks each window to find line boundaries every [`SEGMENT`] bytes (and the
//! first malformed packet); the segments are then formatted on all cores,
//! two rounds in flight, and written in order.

use std::io::Write;

use hyperprof_spe::text::{write_dump_line_at, DumpWalker, Sink};

use super::input::{TraceFile, Window};
use super::out::LatchedWriter;
use crate::error::{Error, Result};

/// Input bytes per formatting task.
const SEGMENT: usize = 256 << 10;

/// What a dump saw.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DumpSummary {
    /// Lines printed.
    pub lines: u64,
    /// Bytes perf would call "Bad packet!".
    pub bad_packets: u64,
}

/// How to dump.
#[derive(Debug, Clone, Copy)]
pub struct DumpOptions {
    /// Print undecodable bytes as perf does (`Bad packet!`) and continue,
    /// instead of stopping at the first with an error.
    pub keep_going: bool,
    /// Threads formatting text (at least 1).
    pub jobs: usize,
}

impl Default for DumpOptions {
    fn default() -> Self {
        DumpOptions {
            keep_going: false,
            jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// Dumps every buffer of `file` to `out`. Stops at the first malformed packet
/// with an error naming its file offset, unless `keep_going`.
pub fn dump<W: Write>(file: &TraceFile, out: W, opts: DumpOptions) -> Result<DumpSummary> {
    let mut sink = LatchedWriter::new(out);
    let mut summary = DumpSummary::default();
    let mut first_error = None;
    for &b in file.buffers() {
        file.windows(b, &mut |w| {
            let (next, error) = dump_window(&w, &mut sink, opts, &mut summary);
            if error.is_some() || sink.failed() {
                first_error = error;
                return Ok(None);
            }
            Ok(Some(next))
        })?;
        if first_error.is_some() || sink.failed() {
            break;
        }
    }
    match sink.finish() {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(summary),
        Err(e) => return Err(Error::output("<stdout>", e)),
        Ok(()) => {}
    }
    match first_error {
        Some((offset, message)) => Err(Error::malformed(
            &file.path,
            format!("byte offset {offset:#x}: {message}"),
        )),
        None => Ok(summary),
    }
}

/// A growable byte vector as a formatter sink.
struct VecSink<'a>(&'a mut Vec<u8>);

impl Sink for VecSink<'_> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }
}

/// Formats the lines of `b` from `start` to `end` into `text` (emptied first;
/// its allocation is reused from segment to segment).
fn format_segment(text: &mut Vec<u8>, b: &Window<'_>, (start, end): (usize, usize)) {
    // Work on a local vector: the callers' vectors sit side by side, and
    // updating their lengths from two threads would share a cache line on
    // every line written.
    let mut local = std::mem::take(text);
    local.clear();
    let mut out = VecSink(&mut local);
    for item in DumpWalker::at(b.data, b.file_offset, start).take_while(|i| i.offset < end) {
        // perf shows offsets in the whole buffer, not in the window.
        write_dump_line_at(&mut out, b.data, &item, b.start + item.offset);
    }
    *text = local;
}

/// Dumps the lines of one window that start below its limit; returns where
/// the next window starts and the file offset and message of the first
/// malformed packet unless `opts.keep_going` (the lines before it are printed).
fn dump_window<W: Write>(
    b: &Window<'_>,
    sink: &mut LatchedWriter<W>,
    opts: DumpOptions,
    summary: &mut DumpSummary,
) -> (usize, Option<(usize, String)>) {
    let mut cuts = vec![0];
    let mut error = None;
    let mut next = 0;
    for item in DumpWalker::new(b.data, b.file_offset) {
        if item.offset >= b.limit {
            break;
        }
        if let Err(e) = item.packet {
            if !opts.keep_going {
                error = Some((item.offset, e.to_string()));
                break;
            }
            summary.bad_packets += 1;
        }
        summary.lines += 1;
        let end = item.offset + item.len;
        next = end;
        if end - cuts[cuts.len() - 1] >= SEGMENT {
            cuts.push(end);
        }
    }
    let limit = error.as_ref().map_or(next, |e| e.0);
    if cuts[cuts.len() - 1] != limit {
        cuts.push(limit);
    }
    let segments: Vec<(usize, usize)> = cuts.windows(2).map(|w| (w[0], w[1])).collect();
    let workers = opts.jobs.max(1);
    // Two sets of text buffers: one being formatted while the other is written.
    let mut formatting: Vec<Vec<u8>> = vec![Vec::new(); workers];
    let mut writing: Vec<Vec<u8>> = vec![Vec::new(); workers];
    let mut ready = 0;
    for round in segments.chunks(workers) {
        std::thread::scope(|scope| {
            let mut jobs = round.iter().zip(formatting.iter_mut());
            // The first segment of the round is formatted on this thread
            // after the previous round is written; the rest in parallel.
            let mine = jobs.next();
            for (&seg, text) in jobs {
                scope.spawn(move || format_segment(text, b, seg));
            }
            for text in &writing[..ready] {
                sink.write(text);
            }
            if let Some((&seg, text)) = mine {
                format_segment(text, b, seg);
            }
        });
        std::mem::swap(&mut formatting, &mut writing);
        ready = round.len();
        if sink.failed() {
            break;
        }
    }
    for text in &writing[..ready] {
        sink.write(text);
    }
    (
        next,
        error.map(|(offset, message)| (b.file_offset + offset, message)),
    )
}
