//! Loading SPE traces: a raw buffer, or the AUXTRACE buffers of a perf.data file.

use std::path::{Path, PathBuf};

use hyperprof_spe::perf_data::{is_perf_data, PerfData};

use crate::error::{Error, Result};

/// One SPE buffer of an input file.
#[derive(Debug, Clone, Copy)]
pub struct Buffer<'a> {
    /// File offset of its first byte (alignment packets pad relative to it,
    /// and errors are reported at file offsets).
    pub file_offset: usize,
    /// The bytes.
    pub data: &'a [u8],
}

/// A trace file read into memory.
#[derive(Debug)]
pub struct TraceFile {
    /// Where it came from.
    pub path: PathBuf,
    /// Its contents.
    pub bytes: Vec<u8>,
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
    /// Reads `path`.
    pub fn read(path: &Path) -> Result<TraceFile> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Ok(TraceFile {
            path: path.to_path_buf(),
            bytes,
        })
    }

    /// The file's format, from its magic.
    pub fn format(&self) -> Format {
        if is_perf_data(&self.bytes) {
            Format::PerfData
        } else {
            Format::Raw
        }
    }

    /// The SPE buffers in the file, in file order.
    pub fn buffers(&self) -> Result<Vec<Buffer<'_>>> {
        match self.format() {
            Format::Raw => Ok(vec![Buffer {
                file_offset: 0,
                data: &self.bytes,
            }]),
            Format::PerfData => {
                let pd = PerfData::parse(&self.bytes)
                    .map_err(|e| Error::malformed(&self.path, e.to_string()))?;
                pd.aux_traces()
                    .map(|t| {
                        t.map(|t| Buffer {
                            file_offset: t.data_offset,
                            data: t.data,
                        })
                        .map_err(|e| Error::malformed(&self.path, e.to_string()))
                    })
                    .collect()
            }
        }
    }
}
