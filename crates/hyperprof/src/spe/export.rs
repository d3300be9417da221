//! `hyperprof spe export`: wrap raw SPE buffers into a perf.data file.

use std::io::Write;
use std::path::Path;

use hyperprof_spe::perf_data::{aux_padding, AuxBuffer, PerfData};
use hyperprof_spe::text::DumpWalker;

use super::input::{Format, TraceFile};
use crate::error::{Error, Result};

/// The dynamic PMU type written when none is given: what arm_spe_0 often gets.
pub const DEFAULT_PMU_TYPE: u32 = 8;

/// The bytes of a complete perf.data file holding `buffers` (the header
/// features perf needs, a process per context id; see
/// [`crate::perf::raw_profile_bytes`]).
pub fn perf_data_bytes(buffers: &[AuxBuffer<'_>], pmu_type: u32) -> Vec<u8> {
    crate::perf::raw_profile_bytes(buffers, pmu_type)
}

/// Writes `raws` (each one buffer of `cpu`) as a perf.data file at `out`.
///
/// Every packet is checked where it will lie in the file (alignment packets
/// depend on the address), so that perf shows every packet; a malformed one
/// is reported at its offset in its raw file and nothing is written. The file
/// appears whole or not at all.
pub fn export(raws: &[TraceFile], out: &Path, cpu: u32, pmu_type: u32) -> Result<()> {
    if let Some(f) = raws.iter().find(|f| f.format() == Format::PerfData) {
        return Err(Error::Usage(format!(
            "{}: already a perf.data file; export takes raw SPE buffers",
            f.path.display()
        )));
    }
    let mut aux_offset = 0u64;
    let buffers: Vec<AuxBuffer<'_>> = raws
        .iter()
        .map(|f| {
            let b = AuxBuffer {
                cpu,
                aux_offset,
                data: &f.bytes,
            };
            aux_offset += (f.bytes.len() + aux_padding(f.bytes.len())) as u64;
            b
        })
        .collect();
    let bytes = perf_data_bytes(&buffers, pmu_type);
    let parsed = PerfData::parse(&bytes).map_err(|e| Error::malformed(out, e.to_string()))?;
    for (raw, trace) in raws.iter().zip(parsed.aux_traces()) {
        let trace = trace.map_err(|e| Error::malformed(out, e.to_string()))?;
        // The raw bytes alone, at their file address: the zero padding after
        // them must not complete a packet the raw file cut short.
        let mut walk = DumpWalker::new(&raw.bytes, trace.data_offset);
        if let Some(bad) = walk.find(|i| i.packet.is_err()) {
            let e = bad.packet.expect_err("found by is_err");
            return Err(Error::malformed(
                &raw.path,
                format!("byte offset {:#x}: {e}", bad.offset),
            ));
        }
    }
    write_atomically(out, &bytes)
}

/// Writes `bytes` to `out` through a temporary file and a rename.
pub fn write_atomically(out: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp_name = out.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = out.with_file_name(tmp_name);
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, out)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(out, e));
    }
    Ok(())
}
