//! A system run's artifacts: `host.perf.data` and `<vm>.perf.data` (SPE
//! data `perf report -D` decodes, one AUXTRACE buffer per CPU or vCPU),
//! `host.svg` and `<vm>.svg` (flame graphs of the sampled PCs), and
//! `report.json` (the report, which `hyperprof report DIR` prints again).

use std::path::{Path, PathBuf};

use hyperprof_spe::perf_data::AuxBuffer;

use super::engine::Outcome;
use super::system::{Stacks, SystemReport};
use crate::error::{Error, Result};
use crate::flame::{render_svg, FlameOptions};
use crate::spe::export::{perf_data_bytes, write_atomically, DEFAULT_PMU_TYPE};

/// The report's file in an artifact directory.
pub const REPORT_JSON: &str = "report.json";

/// A file name for a domain: its name with anything but letters, digits,
/// `-`, `_` and `.` replaced by `_`.
pub fn file_stem(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.starts_with('.') {
        format!("_{s}")
    } else {
        s
    }
}

fn perf_data(path: &Path, buffers: &[(u32, &[u8])]) -> Result<()> {
    let buffers: Vec<_> = buffers
        .iter()
        .filter(|(_, d)| !d.is_empty())
        .map(|&(cpu, data)| AuxBuffer {
            cpu,
            aux_offset: 0,
            data,
        })
        .collect();
    write_atomically(path, &perf_data_bytes(&buffers, DEFAULT_PMU_TYPE))
}

/// Writes every artifact of the run into `dir` (created if missing),
/// recording them in the report (so that the report printed later lists
/// them too); returns the files written.
pub fn write(
    dir: &Path,
    o: &Outcome,
    report: &mut SystemReport,
    stacks: &Stacks,
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut wrote = Vec::new();
    if o.setup.host.spe.is_some() {
        let path = dir.join("host.perf.data");
        let bufs: Vec<_> = o
            .host
            .iter()
            .map(|h| (h.cpu as u32, h.spe_data.as_slice()))
            .collect();
        perf_data(&path, &bufs)?;
        wrote.push(path);
    }
    for vm in &o.vms {
        if vm.setup.spe.is_none() {
            continue;
        }
        let path = dir.join(format!("{}.perf.data", file_stem(&vm.setup.name)));
        let bufs: Vec<_> = vm
            .vcpus
            .iter()
            .enumerate()
            .map(|(j, c)| (j as u32, c.spe_data.as_slice()))
            .collect();
        perf_data(&path, &bufs)?;
        wrote.push(path);
    }
    // One flame graph per domain; one without SPE samples says so.
    for (name, folded) in &stacks.domains {
        let path = dir.join(format!("{}.svg", file_stem(name)));
        let opts = FlameOptions {
            title: format!(
                "{name}: SPE samples by function ({} scenario)",
                report.scenario
            ),
            ..FlameOptions::default()
        };
        let svg = render_svg(folded, &opts);
        write_atomically(&path, svg.as_bytes())?;
        wrote.push(path);
    }
    let path = dir.join(REPORT_JSON);
    wrote.push(path.clone());
    report.out_dir = Some(dir.display().to_string());
    report.artifacts = wrote
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    let json =
        serde_json::to_string_pretty(report).map_err(|e| Error::Usage(e.to_string()))? + "\n";
    write_atomically(&path, json.as_bytes())?;
    Ok(wrote)
}

/// Reads `report.json` back from an artifact directory.
pub fn read_report(dir: &Path) -> Result<SystemReport> {
    let path = dir.join(REPORT_JSON);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_str(&text).map_err(|e| {
        Error::malformed(
            &path,
            format!("line {} column {}: {e}", e.line(), e.column()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_stems_are_safe() {
        assert_eq!(file_stem("vm0"), "vm0");
        assert_eq!(file_stem("a/b c"), "a_b_c");
        assert_eq!(file_stem(".."), "_..");
        assert_eq!(file_stem(""), "_");
    }
}
