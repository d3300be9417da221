//! A system run's artifacts: `host.perf.data` and `<vm>.perf.data` (SPE
//! profiles perf opens, one AUXTRACE buffer per CPU or vCPU, with the
//! symbol files they name beside them: `<workload>.elf` per user
//! executable, `vmlinux-host.elf` for the host's kernel text),
//! `host.svg` and `<vm>.svg` (flame graphs of the sampled PCs), and
//! `report.json` (the report, which `hyperprof report DIR` prints again).

use std::path::{Path, PathBuf};

use super::engine::{Outcome, GUEST_PID, HOST_KERNEL_PID};
use super::system::{Stacks, SystemReport};
use crate::error::{Error, Result};
use crate::flame::{render_svg, FlameOptions};
use crate::perf::{write_domain, DomainProfile, Process};
use crate::spe::export::write_atomically;

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
    if let Some(spe) = &o.setup.host.spe {
        let d = DomainProfile {
            buffers: o
                .host
                .iter()
                .map(|h| (h.cpu as u32, h.spe_data.as_slice()))
                .collect(),
            processes: vec![Process {
                pid: HOST_KERNEL_PID,
                tids: vec![HOST_KERNEL_PID],
                comm: o.setup.host.workload.clone(),
                symbols: o.host_symbols.clone(),
                kernel: o.setup.host.workload.starts_with("kernel-"),
            }],
            nr_cpus: o.setup.machine.pes.len() as u32,
            mem_bytes: o.setup.machine.ram_size,
            interval: spe.session.interval.into(),
        };
        wrote.extend(write_domain(dir, "host.perf.data", &d)?);
    }
    for vm in &o.vms {
        let Some(spe) = &vm.setup.spe else {
            continue;
        };
        let d = DomainProfile {
            buffers: vm
                .vcpus
                .iter()
                .enumerate()
                .map(|(j, c)| (j as u32, c.spe_data.as_slice()))
                .collect(),
            processes: vec![Process {
                pid: GUEST_PID,
                tids: (0..vm.vcpus.len() as u32).map(|j| GUEST_PID + j).collect(),
                comm: vm.setup.workload.clone(),
                symbols: vm.symbols.clone(),
                kernel: vm.setup.workload.starts_with("kernel-"),
            }],
            nr_cpus: vm.vcpus.len().max(1) as u32,
            mem_bytes: vm.setup.ram_bytes,
            interval: spe.spe.session.interval.into(),
        };
        let name = format!("{}.perf.data", file_stem(&vm.setup.name));
        wrote.extend(write_domain(dir, &name, &d)?);
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
