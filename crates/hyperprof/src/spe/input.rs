//! Loading SPE traces: a raw buffer, or the AUXTRACE buffers of a perf.data
//! file, streamed in windows so that memory does not grow with the file.
//!
//! A file is opened as a regular file only ([`crate::files::open_input`]);
//! a perf.data file's header and record headers are read where they lie, and
//! each buffer's bytes are handed out a window at a time ([`TraceFile::windows`]).
//! Consecutive windows overlap by [`LOOKAHEAD`] bytes, more than any packet
//! or `perf report -D` line can span, so a consumer that stops at a window's
//! [`Window::limit`] sees exactly what a walk of the whole buffer sees.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use hyperprof_spe::perf_data::{is_perf_data, parse_header, RecordWalker, FILE_HEADER_LEN};

use crate::error::{Error, Result};
use crate::files::open_input;

/// Bytes a window holds beyond its [`LOOKAHEAD`].
pub const WINDOW: usize = 8 << 20;
/// Bytes a packet or dump line may look ahead of its first byte, at most: a
/// 64 KiB alignment boundary and the 16 bytes of a PAD group, rounded up.
pub const LOOKAHEAD: usize = 128 << 10;

/// Where one SPE buffer of an input file lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buffer {
    /// File offset of its first byte (alignment packets pad relative to it,
    /// and errors are reported at file offsets).
    pub file_offset: usize,
    /// Its length in bytes.
    pub len: usize,
    /// The CPU whose unit wrote it (from its AUXTRACE record; 0 for a raw
    /// file).
    pub cpu: u32,
}

/// A part of a buffer in memory.
#[derive(Debug, Clone, Copy)]
pub struct Window<'a> {
    /// The bytes, from `start` of the buffer.
    pub data: &'a [u8],
    /// Offset of `data[0]` in the buffer.
    pub start: usize,
    /// File offset of `data[0]`.
    pub file_offset: usize,
    /// Offsets in `data` below this are this window's to consume: items
    /// that start there have all their bytes in `data`. The whole of `data`
    /// in the buffer's last window.
    pub limit: usize,
    /// This is the buffer's last window.
    pub last: bool,
}

/// A trace file: its buffers located, its bytes read on demand.
#[derive(Debug)]
pub struct TraceFile {
    /// Where it came from.
    pub path: PathBuf,
    file: File,
    len: u64,
    format: Format,
    buffers: Vec<Buffer>,
}

/// What kind of file a trace is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Raw SPE bytes.
    Raw,
    /// perf.data with ARM SPE AUXTRACE records.
    PerfData,
}

impl TraceFile {
    /// Opens `path` (a regular, non-empty file) and locates its buffers.
    pub fn open(path: &Path) -> Result<TraceFile> {
        let (file, meta) = open_input(path)?;
        let len = meta.len();
        if len == 0 {
            return Err(Error::Usage(format!(
                "{}: is empty; a trace has at least one SPE packet",
                path.display()
            )));
        }
        let mut head = vec![0u8; FILE_HEADER_LEN.min(len as usize)];
        file.read_exact_at(&mut head, 0)
            .map_err(|e| Error::io(path, e))?;
        let mut t = TraceFile {
            path: path.to_path_buf(),
            file,
            len,
            format: Format::Raw,
            buffers: Vec::new(),
        };
        if is_perf_data(&head) {
            t.format = Format::PerfData;
            t.buffers = t.locate_buffers(&head)?;
        } else {
            t.buffers = vec![Buffer {
                file_offset: 0,
                len: len as usize,
                cpu: 0,
            }];
        }
        Ok(t)
    }

    /// Walks the records of a perf.data file by their headers.
    fn locate_buffers(&self, head: &[u8]) -> Result<Vec<Buffer>> {
        let bad = |e: hyperprof_spe::perf_data::PerfDataError| {
            Error::malformed(&self.path, e.to_string())
        };
        let layout = parse_header(head, self.len as usize).map_err(bad)?;
        let mut walker = RecordWalker::new(layout);
        let mut buffers = Vec::new();
        let mut rec = [0u8; 64];
        while !walker.done() {
            let n = walker.wanted();
            self.file
                .read_exact_at(&mut rec[..n], walker.position() as u64)
                .map_err(|e| Error::io(&self.path, e))?;
            if let Some(m) = walker.step(&rec[..n]).map_err(bad)? {
                buffers.push(Buffer {
                    file_offset: m.data_offset,
                    len: m.len,
                    cpu: m.cpu,
                });
            }
        }
        Ok(buffers)
    }

    /// The file's format, from its magic.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The file's length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the file is empty (never: [`TraceFile::open`] refuses that).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The SPE buffers in the file, in file order.
    pub fn buffers(&self) -> &[Buffer] {
        &self.buffers
    }

    /// Up to `n` bytes from the start of the file and up to `n` from its
    /// end (where a perf.data file keeps its mappings and its features).
    pub fn head_and_tail(&self, n: usize) -> Result<Vec<u8>> {
        let len = self.len as usize;
        let head = n.min(len);
        let tail_start = len.saturating_sub(n).max(head);
        let mut out = vec![0u8; head + (len - tail_start)];
        self.file
            .read_exact_at(&mut out[..head], 0)
            .and_then(|()| self.file.read_exact_at(&mut out[head..], tail_start as u64))
            .map_err(|e| Error::io(&self.path, e))?;
        Ok(out)
    }

    /// Hands `b` to `consume` one [`Window`] at a time. `consume` returns
    /// the offset in the window where the next window must start (the end
    /// of the last item it took, which started below `limit`), or `None` to
    /// stop reading. Stops at the first error.
    pub fn windows(
        &self,
        b: Buffer,
        consume: &mut dyn FnMut(Window<'_>) -> Result<Option<usize>>,
    ) -> Result<()> {
        let mut data: Vec<u8> = Vec::with_capacity((WINDOW + LOOKAHEAD).min(b.len));
        let mut start = 0usize;
        loop {
            let have = data.len();
            let want = (WINDOW + LOOKAHEAD).min(b.len - start);
            data.resize(want, 0);
            self.file
                .read_exact_at(&mut data[have..], (b.file_offset + start + have) as u64)
                .map_err(|e| Error::io(&self.path, e))?;
            let last = start + want == b.len;
            let limit = if last { want } else { want - LOOKAHEAD };
            let next = consume(Window {
                data: &data,
                start,
                file_offset: b.file_offset + start,
                limit,
                last,
            })?;
            let Some(next) = next.filter(|_| !last) else {
                return Ok(());
            };
            // A consumer that takes nothing would never end.
            let next = next.clamp(1, want);
            data.drain(..next);
            start += next;
        }
    }
}
