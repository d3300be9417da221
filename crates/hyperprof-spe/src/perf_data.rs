//! The perf.data container, as far as SPE traces need it: reading the
//! AUXTRACE buffers out of a file that `perf record` (or hyperprof) wrote, and
//! writing raw SPE buffers as a file that `perf report -D` decodes.
//!
//! Layout facts come from perf's `tools/perf/util/header.h` and
//! `tools/lib/perf/include/perf/event.h`: a 104-byte file header (`PERFILE2`,
//! header size, attr size, attrs/data/event-types sections, feature bitmap),
//! 8-byte record headers (type u32, misc u16, size u16), and AUXTRACE records
//! (type 71) followed by `size` bytes of trace that the header size does not
//! count. Only little-endian files are read.
//!
//! [`write`] writes the bare container (attr, AUXTRACE_INFO, AUXTRACE
//! records) that `perf report -D` needs; [`write_profile`] writes the
//! complete file perf's report, script, mem and c2c commands open.

pub mod features;
pub mod profile;

pub use profile::{
    buffer_data_offsets, write_profile, write_profile_pieces, CodeMap, Comm, MachineInfo, Profile,
    SpeEvent,
};

/// The magic of a little-endian perf.data file (version 2).
pub const MAGIC: [u8; 8] = *b"PERFILE2";
/// The magic as a big-endian writer leaves it.
pub const MAGIC_BIG_ENDIAN: [u8; 8] = *b"2ELIFREP";
/// Size of the file header of a seekable file.
pub const FILE_HEADER_LEN: usize = 104;
/// Size of the file header of a pipe-mode file.
pub const PIPE_HEADER_LEN: usize = 16;
/// Size of `struct perf_event_attr` this writer emits (PERF_ATTR_SIZE_VER7).
pub const ATTR_LEN: usize = 128;
/// Size of one attrs-section entry: the attr and the section of its ids.
pub const FILE_ATTR_LEN: usize = ATTR_LEN + 16;
/// Size of a record header.
pub const RECORD_HEADER_LEN: usize = 8;
/// PERF_RECORD_AUXTRACE_INFO.
pub const RECORD_AUXTRACE_INFO: u32 = 70;
/// PERF_RECORD_AUXTRACE.
pub const RECORD_AUXTRACE: u32 = 71;
/// PERF_RECORD_COMPRESSED (zstd), which this reader does not inflate.
pub const RECORD_COMPRESSED: u32 = 81;
/// Size of a PERF_RECORD_AUXTRACE header.
pub const AUXTRACE_LEN: usize = 48;
/// `enum auxtrace_type` value of Arm SPE.
pub const AUXTRACE_TYPE_ARM_SPE: u32 = 4;
/// Size of the ARM SPE AUXTRACE_INFO record perf 6.1 reads: header, type,
/// reserved, and priv[2] = {PMU type, per-cpu mmaps}.
pub const SPE_INFO_LEN: usize = 32;

/// Why a file is not a perf.data file this reader understands.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum PerfDataError {
    /// Shorter than a header.
    TooShort {
        /// File length.
        len: usize,
    },
    /// The first eight bytes are not `PERFILE2`.
    BadMagic {
        /// What was there.
        found: [u8; 8],
    },
    /// A big-endian file.
    BigEndian,
    /// A header size other than 16 (pipe) or 104.
    UnsupportedHeaderSize {
        /// The size field.
        size: u64,
    },
    /// A section of the header reaches past the end of the file.
    SectionOutOfBounds {
        /// Which section.
        name: &'static str,
        /// Its offset.
        offset: u64,
        /// Its size.
        size: u64,
    },
    /// A record header with a size below 8 (or below its type's minimum).
    BadRecordSize {
        /// File offset of the record.
        offset: usize,
        /// Its type.
        record_type: u32,
        /// Its size field.
        size: u16,
    },
    /// A record, or the trace after an AUXTRACE record, reaches past the data section.
    RecordOutOfBounds {
        /// File offset of the record.
        offset: usize,
        /// Bytes the record claims.
        size: u64,
    },
    /// An AUXTRACE_INFO record for another trace type.
    NotArmSpe {
        /// File offset of the record.
        offset: usize,
        /// The `enum auxtrace_type` it names.
        auxtrace_type: u32,
    },
    /// An AUXTRACE record before any AUXTRACE_INFO record.
    MissingAuxtraceInfo {
        /// File offset of the AUXTRACE record.
        offset: usize,
    },
    /// A compressed record (perf record -z).
    Compressed {
        /// File offset of the record.
        offset: usize,
    },
}

impl core::fmt::Display for PerfDataError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            PerfDataError::TooShort { len } => {
                write!(f, "byte offset 0x0: file of {len} bytes is too short for a perf.data header")
            }
            PerfDataError::BadMagic { found } => write!(
                f,
                "byte offset 0x0: bad perf.data magic {:02x?} (expected \"PERFILE2\")",
                found
            ),
            PerfDataError::BigEndian => {
                write!(f, "byte offset 0x0: big-endian perf.data files are not supported")
            }
            PerfDataError::UnsupportedHeaderSize { size } => write!(
                f,
                "byte offset 0x8: perf.data header size {size} is neither 104 (file) nor 16 (pipe)"
            ),
            PerfDataError::SectionOutOfBounds { name, offset, size } => write!(
                f,
                "byte offset {offset:#x}: perf.data {name} section of {size} bytes runs past the end of the file"
            ),
            PerfDataError::BadRecordSize {
                offset,
                record_type,
                size,
            } => write!(
                f,
                "byte offset {offset:#x}: perf.data record of type {record_type} has invalid size {size}"
            ),
            PerfDataError::RecordOutOfBounds { offset, size } => write!(
                f,
                "byte offset {offset:#x}: perf.data record of {size} bytes runs past the end of the data section"
            ),
            PerfDataError::NotArmSpe {
                offset,
                auxtrace_type,
            } => write!(
                f,
                "byte offset {offset:#x}: AUXTRACE_INFO names trace type {auxtrace_type}, not ARM SPE (4)"
            ),
            PerfDataError::MissingAuxtraceInfo { offset } => write!(
                f,
                "byte offset {offset:#x}: AUXTRACE record before any AUXTRACE_INFO record"
            ),
            PerfDataError::Compressed { offset } => write!(
                f,
                "byte offset {offset:#x}: compressed perf.data records are not supported (record without -z)"
            ),
        }
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

/// Whether `bytes` start like a perf.data file of any version or
/// endianness (`PERFILE…`, the version 1 `PERFFILE`, or byte-swapped), so
/// that a damaged or unsupported one is reported as such rather than read
/// as SPE bytes. No SPE packet stream starts with these bytes: 0x50 is not
/// a packet header.
pub fn is_perf_data(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PERFILE")
        || bytes.starts_with(b"PERFFILE")
        || bytes.starts_with(&MAGIC_BIG_ENDIAN)
}

/// One SPE buffer from an AUXTRACE record.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct AuxTrace<'a> {
    /// File offset of the AUXTRACE record.
    pub record_offset: usize,
    /// File offset of the first trace byte.
    pub data_offset: usize,
    /// Offset of the buffer in the AUX area.
    pub aux_offset: u64,
    /// mmap index.
    pub idx: u32,
    /// Thread, or u32::MAX for a per-CPU trace.
    pub tid: u32,
    /// CPU.
    pub cpu: u32,
    /// The trace bytes.
    pub data: &'a [u8],
}

/// Where the records of a perf.data file lie, from its header alone.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// File offset of the first record.
    pub start: usize,
    /// File offset just past the last record.
    pub end: usize,
}

/// A header section `(offset, size)` read at `at` of `head`, checked to lie
/// inside a file of `file_len` bytes.
fn section(
    head: &[u8],
    at: usize,
    name: &'static str,
    file_len: usize,
) -> Result<(usize, usize), PerfDataError> {
    let offset = u64_at(head, at);
    let size = u64_at(head, at + 8);
    match offset.checked_add(size).filter(|&e| e <= file_len as u64) {
        Some(_) => Ok((offset as usize, size as usize)),
        None => Err(PerfDataError::SectionOutOfBounds { name, offset, size }),
    }
}

/// Checks the header of a perf.data file of `file_len` bytes whose first
/// bytes are `head` (at least [`FILE_HEADER_LEN`] of them when the file has
/// that many) and says where its records lie, so that a reader can stream
/// the records without holding the file. The attrs, data and event-types
/// sections must lie inside the file.
pub fn parse_header(head: &[u8], file_len: usize) -> Result<Layout, PerfDataError> {
    if head.len() < PIPE_HEADER_LEN || file_len < PIPE_HEADER_LEN {
        return Err(PerfDataError::TooShort { len: file_len });
    }
    let mut found = [0u8; 8];
    found.copy_from_slice(&head[..8]);
    if found == MAGIC_BIG_ENDIAN {
        return Err(PerfDataError::BigEndian);
    }
    if found != MAGIC {
        return Err(PerfDataError::BadMagic { found });
    }
    match u64_at(head, 8) {
        16 => Ok(Layout {
            start: PIPE_HEADER_LEN,
            end: file_len,
        }),
        104 => {
            if head.len() < FILE_HEADER_LEN || file_len < FILE_HEADER_LEN {
                return Err(PerfDataError::TooShort { len: file_len });
            }
            section(head, 24, "attrs", file_len)?;
            let (start, size) = section(head, 40, "data", file_len)?;
            section(head, 56, "event types", file_len)?;
            Ok(Layout {
                start,
                end: start + size,
            })
        }
        size => Err(PerfDataError::UnsupportedHeaderSize { size }),
    }
}

/// Where one AUXTRACE buffer lies in a file, without its bytes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct AuxTraceMeta {
    /// File offset of the AUXTRACE record.
    pub record_offset: usize,
    /// File offset of the first trace byte.
    pub data_offset: usize,
    /// Trace bytes.
    pub len: usize,
    /// Offset of the buffer in the AUX area.
    pub aux_offset: u64,
    /// mmap index.
    pub idx: u32,
    /// Thread, or u32::MAX for a per-CPU trace.
    pub tid: u32,
    /// CPU.
    pub cpu: u32,
}

/// Walks the records of a perf.data file one header at a time, for readers
/// that stream the file: the caller reads the bytes at [`position`]
/// (`RecordWalker::position`) and hands them to [`step`](RecordWalker::step).
#[derive(Clone, Debug)]
pub struct RecordWalker {
    pos: usize,
    end: usize,
    seen_info: bool,
}

impl RecordWalker {
    /// Walks the records of `layout`.
    pub fn new(layout: Layout) -> Self {
        RecordWalker {
            pos: layout.start,
            end: layout.end,
            seen_info: false,
        }
    }

    /// File offset of the next record.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes [`step`](RecordWalker::step) needs at [`position`](RecordWalker::position):
    /// an AUXTRACE header's worth, or what is left of the records.
    pub fn wanted(&self) -> usize {
        AUXTRACE_LEN.min(self.end.saturating_sub(self.pos))
    }

    /// Whether every record has been walked.
    pub fn done(&self) -> bool {
        self.pos >= self.end
    }

    /// Reads the record at [`position`](RecordWalker::position) from `head`
    /// (its first [`wanted`](RecordWalker::wanted) bytes at least) and moves
    /// past it, and past its trace for an AUXTRACE record, which is returned.
    pub fn step(&mut self, head: &[u8]) -> Result<Option<AuxTraceMeta>, PerfDataError> {
        let offset = self.pos;
        if self.end - offset < RECORD_HEADER_LEN || head.len() < RECORD_HEADER_LEN {
            return Err(PerfDataError::RecordOutOfBounds {
                offset,
                size: RECORD_HEADER_LEN as u64,
            });
        }
        let record_type = u32_at(head, 0);
        let size = u16_at(head, 6);
        let min = match record_type {
            RECORD_AUXTRACE => AUXTRACE_LEN,
            RECORD_AUXTRACE_INFO => 16,
            _ => RECORD_HEADER_LEN,
        };
        if (size as usize) < min {
            return Err(PerfDataError::BadRecordSize {
                offset,
                record_type,
                size,
            });
        }
        let rec_end = offset + size as usize;
        if rec_end > self.end || head.len() < min {
            return Err(PerfDataError::RecordOutOfBounds {
                offset,
                size: size as u64,
            });
        }
        self.pos = rec_end;
        match record_type {
            RECORD_AUXTRACE_INFO => {
                let auxtrace_type = u32_at(head, 8);
                if auxtrace_type != AUXTRACE_TYPE_ARM_SPE {
                    return Err(PerfDataError::NotArmSpe {
                        offset,
                        auxtrace_type,
                    });
                }
                self.seen_info = true;
                Ok(None)
            }
            RECORD_AUXTRACE => {
                if !self.seen_info {
                    return Err(PerfDataError::MissingAuxtraceInfo { offset });
                }
                let len = u64_at(head, 8);
                let data_end = (rec_end as u64)
                    .checked_add(len)
                    .filter(|&e| e <= self.end as u64)
                    .ok_or(PerfDataError::RecordOutOfBounds {
                        offset,
                        size: len.saturating_add(size as u64),
                    })? as usize;
                self.pos = data_end;
                Ok(Some(AuxTraceMeta {
                    record_offset: offset,
                    data_offset: rec_end,
                    len: data_end - rec_end,
                    aux_offset: u64_at(head, 16),
                    idx: u32_at(head, 32),
                    tid: u32_at(head, 36),
                    cpu: u32_at(head, 40),
                }))
            }
            RECORD_COMPRESSED => Err(PerfDataError::Compressed { offset }),
            _ => Ok(None),
        }
    }
}

/// A parsed perf.data file: its header checked, its records ready to walk.
#[derive(Copy, Clone, Debug)]
pub struct PerfData<'a> {
    bytes: &'a [u8],
    layout: Layout,
}

impl<'a> PerfData<'a> {
    /// Checks the header of `bytes` and locates the records.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, PerfDataError> {
        let layout = parse_header(bytes, bytes.len())?;
        Ok(PerfData { bytes, layout })
    }

    /// The SPE buffers of the file, in file order.
    pub fn aux_traces(&self) -> AuxTraces<'a> {
        AuxTraces {
            bytes: self.bytes,
            walker: RecordWalker::new(self.layout),
            failed: false,
        }
    }
}

/// Iterator over the AUXTRACE buffers of a perf.data file.
#[derive(Clone, Debug)]
pub struct AuxTraces<'a> {
    bytes: &'a [u8],
    walker: RecordWalker,
    failed: bool,
}

impl<'a> AuxTraces<'a> {
    fn step(&mut self) -> Result<Option<AuxTrace<'a>>, PerfDataError> {
        while !self.walker.done() {
            let at = self.walker.position();
            let head = &self.bytes[at..at + self.walker.wanted()];
            if let Some(m) = self.walker.step(head)? {
                return Ok(Some(AuxTrace {
                    record_offset: m.record_offset,
                    data_offset: m.data_offset,
                    aux_offset: m.aux_offset,
                    idx: m.idx,
                    tid: m.tid,
                    cpu: m.cpu,
                    data: &self.bytes[m.data_offset..m.data_offset + m.len],
                }));
            }
        }
        Ok(None)
    }
}

impl<'a> Iterator for AuxTraces<'a> {
    type Item = Result<AuxTrace<'a>, PerfDataError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let r = self.step().transpose();
        if matches!(r, Some(Err(_))) {
            self.failed = true;
        }
        r
    }
}

/// One buffer to write: the CPU whose profiling unit wrote it, where it lay
/// in that CPU's AUX area, and its bytes.
#[derive(Copy, Clone, Debug)]
pub struct AuxBuffer<'a> {
    /// CPU.
    pub cpu: u32,
    /// Offset of the buffer in the CPU's AUX area.
    pub aux_offset: u64,
    /// Raw SPE bytes.
    pub data: &'a [u8],
}

/// Bytes of zero padding perf record adds after a trace of `len` bytes so
/// that the next record starts 8-byte aligned.
pub const fn aux_padding(len: usize) -> usize {
    (8 - (len & 7)) & 7
}

fn put64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}
fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// What the writer needs of a buffer before its bytes: so that a caller can
/// stream the bytes of buffers it does not hold ([`write_profile_pieces`]).
pub trait AuxSlot {
    /// CPU.
    fn cpu(&self) -> u32;
    /// Offset of the buffer in the CPU's AUX area.
    fn aux_offset(&self) -> u64;
    /// Bytes of raw SPE data.
    fn data_len(&self) -> usize;
}

impl AuxSlot for AuxBuffer<'_> {
    fn cpu(&self) -> u32 {
        self.cpu
    }
    fn aux_offset(&self) -> u64 {
        self.aux_offset
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// A piece of the file [`write_profile_pieces`] writes.
#[derive(Copy, Clone, Debug)]
pub enum Piece<'a> {
    /// These bytes.
    Bytes(&'a [u8]),
    /// The raw bytes of buffer `i`: exactly its `data_len()` of them.
    Buffer(usize),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest file perf reads (one attr, AUXTRACE_INFO, AUXTRACE
    /// records): the reader's tests damage it at known offsets. Files the
    /// tools write are complete profiles ([`write_profile`]).
    mod minimal {
        use super::super::*;

        /// Writes a perf.data file holding `buffers` as per-CPU SPE AUXTRACE records
        /// of an SPE PMU with dynamic type `pmu_type`, through `out`.
        ///
        /// The file has one attr (type `pmu_type`, one id), an AUXTRACE_INFO record
        /// for ARM SPE in the v1 layout perf 6.1 reads, and one AUXTRACE record per
        /// buffer, each padded with zero bytes to 8 bytes as perf record does.
        pub(super) fn write<E>(
            buffers: &[AuxBuffer<'_>],
            pmu_type: u32,
            out: &mut dyn FnMut(&[u8]) -> Result<(), E>,
        ) -> Result<(), E> {
            write_pieces(buffers, pmu_type, &mut |piece| match piece {
                Piece::Bytes(b) => out(b),
                Piece::Buffer(i) => out(buffers[i].data),
            })
        }

        /// `write` for buffers whose bytes the caller supplies when asked (a
        /// [`Piece::Buffer`]), so that files of any size are written in bounded
        /// memory.
        pub(super) fn write_pieces<B: AuxSlot, E>(
            buffers: &[B],
            pmu_type: u32,
            out_piece: &mut dyn FnMut(Piece<'_>) -> Result<(), E>,
        ) -> Result<(), E> {
            let attrs_offset = FILE_HEADER_LEN;
            let ids_offset = attrs_offset + FILE_ATTR_LEN;
            let data_offset = ids_offset + 8;
            let data_size: usize = SPE_INFO_LEN
                + buffers
                    .iter()
                    .map(|b| AUXTRACE_LEN + b.data_len() + aux_padding(b.data_len()))
                    .sum::<usize>();

            let mut h = [0u8; FILE_HEADER_LEN];
            h[..8].copy_from_slice(&MAGIC);
            put64(&mut h, 8, FILE_HEADER_LEN as u64);
            put64(&mut h, 16, FILE_ATTR_LEN as u64);
            put64(&mut h, 24, attrs_offset as u64);
            put64(&mut h, 32, FILE_ATTR_LEN as u64);
            put64(&mut h, 40, data_offset as u64);
            put64(&mut h, 48, data_size as u64);
            out_piece(Piece::Bytes(&h))?;

            let mut a = [0u8; FILE_ATTR_LEN + 8];
            put32(&mut a, 0, pmu_type);
            put32(&mut a, 4, ATTR_LEN as u32);
            put64(&mut a, 24, 1); // sample_period
            put64(&mut a, ATTR_LEN, ids_offset as u64);
            put64(&mut a, ATTR_LEN + 8, 8);
            put64(&mut a, FILE_ATTR_LEN, 1); // the one id
            out_piece(Piece::Bytes(&a))?;

            let mut info = [0u8; SPE_INFO_LEN];
            put32(&mut info, 0, RECORD_AUXTRACE_INFO);
            info[6..8].copy_from_slice(&(SPE_INFO_LEN as u16).to_le_bytes());
            put32(&mut info, 8, AUXTRACE_TYPE_ARM_SPE);
            put64(&mut info, 16, pmu_type as u64);
            put64(&mut info, 24, 1); // per-cpu mmaps
            out_piece(Piece::Bytes(&info))?;

            for (reference, b) in buffers.iter().enumerate() {
                let padded = b.data_len() + aux_padding(b.data_len());
                let mut r = [0u8; AUXTRACE_LEN];
                put32(&mut r, 0, RECORD_AUXTRACE);
                r[6..8].copy_from_slice(&(AUXTRACE_LEN as u16).to_le_bytes());
                put64(&mut r, 8, padded as u64);
                put64(&mut r, 16, b.aux_offset());
                put64(&mut r, 24, reference as u64);
                put32(&mut r, 32, b.cpu());
                put32(&mut r, 36, u32::MAX);
                put32(&mut r, 40, b.cpu());
                out_piece(Piece::Bytes(&r))?;
                out_piece(Piece::Buffer(reference))?;
                out_piece(Piece::Bytes(&[0u8; 8][..aux_padding(b.data_len())]))?;
            }
            Ok(())
        }
    }

    fn written(buffers: &[AuxBuffer<'_>]) -> Vec<u8> {
        let mut v = Vec::new();
        minimal::write::<()>(buffers, 8, &mut |b| {
            v.extend_from_slice(b);
            Ok(())
        })
        .unwrap();
        v
    }

    #[test]
    fn written_files_read_back() {
        let a = [0x01u8; 13];
        let b = [0x00u8, 0x01];
        let file = written(&[
            AuxBuffer {
                cpu: 2,
                aux_offset: 0,
                data: &a,
            },
            AuxBuffer {
                cpu: 3,
                aux_offset: 0,
                data: &b,
            },
            AuxBuffer {
                cpu: 2,
                aux_offset: 16,
                data: &b,
            },
        ]);
        let pd = PerfData::parse(&file).unwrap();
        let got: Vec<_> = pd.aux_traces().map(|t| t.unwrap()).collect();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].cpu, 2);
        assert_eq!(&got[0].data[..13], &a);
        assert_eq!(got[0].data.len(), 16);
        assert_eq!(got[1].cpu, 3);
        assert_eq!(got[1].aux_offset, 0);
        assert_eq!(got[2].aux_offset, 16);
        assert_eq!(got[2].tid, u32::MAX);
        assert_eq!(file.len(), got[2].data_offset + 8);
        assert_eq!(got[0].data_offset % 8, 0);
    }

    #[test]
    fn bad_headers_are_reported() {
        assert_eq!(
            PerfData::parse(b"short").unwrap_err(),
            PerfDataError::TooShort { len: 5 }
        );
        let mut f = written(&[]);
        f[..8].copy_from_slice(b"2ELIFREP");
        assert_eq!(PerfData::parse(&f).unwrap_err(), PerfDataError::BigEndian);
        f[..8].copy_from_slice(b"NOTPERF!");
        assert!(matches!(
            PerfData::parse(&f).unwrap_err(),
            PerfDataError::BadMagic { .. }
        ));
        let mut f = written(&[]);
        f[8] = 50;
        assert_eq!(
            PerfData::parse(&f).unwrap_err(),
            PerfDataError::UnsupportedHeaderSize { size: 50 }
        );
        let mut f = written(&[]);
        put64(&mut f, 32, u64::MAX);
        assert_eq!(
            PerfData::parse(&f).unwrap_err(),
            PerfDataError::SectionOutOfBounds {
                name: "attrs",
                offset: FILE_HEADER_LEN as u64,
                size: u64::MAX
            }
        );
        let mut f = written(&[]);
        put64(&mut f, 48, 1 << 40);
        assert!(matches!(
            PerfData::parse(&f).unwrap_err(),
            PerfDataError::SectionOutOfBounds { name: "data", .. }
        ));
    }

    #[test]
    fn bad_records_are_reported_with_offsets() {
        let data = [1u8; 8];
        let file = written(&[AuxBuffer {
            cpu: 0,
            aux_offset: 0,
            data: &data,
        }]);
        let info_at = FILE_HEADER_LEN + FILE_ATTR_LEN + 8;
        let aux_at = info_at + SPE_INFO_LEN;

        let mut f = file.clone();
        put32(&mut f, info_at + 8, 3);
        let e = PerfData::parse(&f).unwrap().aux_traces().next().unwrap();
        assert_eq!(
            e,
            Err(PerfDataError::NotArmSpe {
                offset: info_at,
                auxtrace_type: 3
            })
        );

        let mut f = file.clone();
        put64(&mut f, aux_at + 8, 9);
        let e = PerfData::parse(&f).unwrap().aux_traces().next().unwrap();
        assert!(
            matches!(e, Err(PerfDataError::RecordOutOfBounds { offset, .. }) if offset == aux_at)
        );

        let mut f = file.clone();
        f[aux_at + 6] = 4;
        f[aux_at + 7] = 0;
        let mut it = PerfData::parse(&f).unwrap().aux_traces();
        assert!(matches!(
            it.next(),
            Some(Err(PerfDataError::BadRecordSize { size: 4, .. }))
        ));
        assert_eq!(it.next(), None);

        let mut f = file.clone();
        put32(&mut f, info_at, RECORD_COMPRESSED);
        let e = PerfData::parse(&f).unwrap().aux_traces().next().unwrap();
        assert_eq!(e, Err(PerfDataError::Compressed { offset: info_at }));

        let mut f = file;
        put32(&mut f, info_at, 9); // the info becomes an unknown record
        let e = PerfData::parse(&f).unwrap().aux_traces().next().unwrap();
        assert_eq!(
            e,
            Err(PerfDataError::MissingAuxtraceInfo { offset: aux_at })
        );
    }

    #[test]
    fn perf_data_is_recognised_by_magic_prefix() {
        assert!(is_perf_data(b"PERFILE2...."));
        assert!(is_perf_data(b"PERFILE3"));
        assert!(is_perf_data(b"PERFFILE"));
        assert!(is_perf_data(b"2ELIFREP"));
        assert!(!is_perf_data(b"PERF"));
        assert!(!is_perf_data(&[0xb0, 0, 0, 0, 0, 0, 0, 0, 0]));
        assert!(crate::packet::decode(b"P", 0).is_err());
        let mut f = written(&[]);
        f[7] = b'3';
        assert!(matches!(
            PerfData::parse(&f),
            Err(PerfDataError::BadMagic { .. })
        ));
    }

    #[test]
    fn pipe_mode_files_are_read() {
        let data = [1u8; 8];
        let file = written(&[AuxBuffer {
            cpu: 5,
            aux_offset: 0,
            data: &data,
        }]);
        let mut pipe = Vec::new();
        pipe.extend_from_slice(&MAGIC);
        pipe.extend_from_slice(&16u64.to_le_bytes());
        pipe.extend_from_slice(&file[FILE_HEADER_LEN + FILE_ATTR_LEN + 8..]);
        let got: Vec<_> = PerfData::parse(&pipe)
            .unwrap()
            .aux_traces()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].cpu, 5);
        assert_eq!(got[0].data, &data);
    }
}
