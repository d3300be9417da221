//! `hyperprof spe export`: wrap raw SPE buffers into a perf.data file.

use std::io::Write;
use std::path::Path;

use hyperprof_spe::perf_data::{
    aux_padding, buffer_data_offsets, write_profile_pieces, AuxBuffer, AuxSlot, Piece,
};
use hyperprof_spe::text::DumpWalker;

use super::input::{Format, TraceFile};
use crate::error::{Error, Result};
use crate::files;

/// The dynamic PMU type written when none is given: what arm_spe_0 often gets.
pub const DEFAULT_PMU_TYPE: u32 = 8;

/// The bytes of a complete perf.data file holding `buffers` (the header
/// features perf needs, a process per context id; see
/// [`crate::perf::RawTrace::with_profile`]).
pub fn perf_data_bytes(buffers: &[AuxBuffer<'_>], pmu_type: u32) -> Vec<u8> {
    crate::perf::raw_profile_bytes(buffers, pmu_type)
}

/// One raw file as a buffer of the output.
#[derive(Clone, Copy)]
struct Slot {
    cpu: u32,
    aux_offset: u64,
    len: usize,
}

impl AuxSlot for Slot {
    fn cpu(&self) -> u32 {
        self.cpu
    }
    fn aux_offset(&self) -> u64 {
        self.aux_offset
    }
    fn data_len(&self) -> usize {
        self.len
    }
}

/// Writes `raws` (each one buffer of `cpu`) as a complete perf.data file
/// at `out` (a process per context id the records carry, so that perf
/// report, script, mem and c2c open it).
///
/// Every packet is checked where it will lie in the file (alignment packets
/// depend on the address), so that perf shows every packet; a malformed one
/// is reported at its offset in its raw file and nothing is written. The file
/// appears whole or not at all, and the raw files are streamed (one pass to
/// learn their contexts, one to copy them): memory does not grow with their
/// size.
pub fn export(raws: &[TraceFile], out: &Path, cpu: u32, pmu_type: u32) -> Result<()> {
    if let Some(f) = raws.iter().find(|f| f.format() == Format::PerfData) {
        return Err(Error::Usage(format!(
            "{}: already a perf.data file; export takes raw SPE buffers",
            f.path.display()
        )));
    }
    let mut aux_offset = 0u64;
    let slots: Vec<Slot> = raws
        .iter()
        .map(|f| {
            let len = f.len() as usize;
            let s = Slot {
                cpu,
                aux_offset,
                len,
            };
            aux_offset += (len + aux_padding(len)) as u64;
            s
        })
        .collect();
    let mut trace = crate::perf::RawTrace::default();
    for raw in raws {
        scan(raw, &mut trace)?;
    }
    trace.with_profile(&slots, pmu_type, |profile| {
        // Where each buffer's first byte will lie in the file.
        let offsets: Vec<usize> = buffer_data_offsets(profile).collect();
        files::write_with(out, &mut |w| {
            write_profile_pieces(profile, &mut |piece| match piece {
                Piece::Bytes(b) => w.write_all(b).map_err(|e| Error::output(out, e)),
                Piece::Buffer(i) => copy_checked(&raws[i], offsets[i], w, out),
            })
        })
    })
}

/// Reads what raw file `raw` says of itself (its contexts, user or kernel
/// code) into `trace`, window by window.
fn scan(raw: &TraceFile, trace: &mut crate::perf::RawTrace) -> Result<()> {
    let Some(&b) = raw.buffers().first() else {
        return Ok(());
    };
    raw.windows(b, &mut |win| {
        let mut next = 0;
        for item in DumpWalker::new(win.data, win.start) {
            if item.offset >= win.limit {
                break;
            }
            // Malformed packets are reported by the copy, at their offset.
            if let Ok(p) = &item.packet {
                trace.add(p);
            }
            next = item.offset + item.len;
        }
        Ok(Some(next))
    })
}

/// Copies the one buffer of raw file `raw` to `w`, checking every packet at
/// the file address `at` it will have. The raw bytes are walked alone: the
/// zero padding after them must not complete a packet the raw file cut short.
fn copy_checked(raw: &TraceFile, at: usize, w: &mut dyn Write, out: &Path) -> Result<()> {
    let Some(&b) = raw.buffers().first() else {
        return Ok(());
    };
    raw.windows(b, &mut |win| {
        let mut next = 0;
        for item in DumpWalker::new(win.data, at + win.start) {
            if item.offset >= win.limit {
                break;
            }
            if let Err(e) = item.packet {
                return Err(Error::malformed(
                    &raw.path,
                    format!("byte offset {:#x}: {e}", win.start + item.offset),
                ));
            }
            next = item.offset + item.len;
        }
        w.write_all(&win.data[..next])
            .map_err(|e| Error::output(out, e))?;
        Ok(Some(next))
    })
}

/// Writes `bytes` to `out` safely: see [`files::write_atomically`].
pub fn write_atomically(out: &Path, bytes: &[u8]) -> Result<()> {
    files::write_atomically(out, bytes)
}
