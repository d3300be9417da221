//! A system run's artifacts: `host.perf.data` and `<vm>.perf.data` (SPE
//! profiles perf opens, one AUXTRACE buffer per CPU or vCPU, with the
//! symbol files they name beside them: `<workload>.elf` per user
//! executable, `vmlinux-host.elf` for the host's kernel text),
//! `host.svg` and `<vm>.svg` (flame graphs of the sampled PCs),
//! `<vm>.console.txt` (the console of a VM that booted an image), and
//! `report.json` (the report, which `hyperprof report DIR` prints again).

use std::path::{Path, PathBuf};

use super::engine::{Outcome, GUEST_PID, HOST_KERNEL_PID};
use super::system::{Stacks, SystemReport, SCHEMA_VERSION};
use crate::error::{Error, Result};
use crate::flame::{render_svg, FlameOptions};
use crate::perf::{write_domain, DomainProfile, Process};
use crate::spe::export::write_atomically;

/// The pid (and thread) a code VM's kernel samples are given: the
/// CONTEXTIDR_EL1 a bare-metal image leaves at its reset value.
const CODE_KERNEL_PID: u32 = 0;

/// The threads of an image's kernel in its profile: [`CODE_KERNEL_PID`]
/// and every CONTEXTIDR_EL1 its records carry, ascending.
fn code_threads<'a>(buffers: impl Iterator<Item = &'a [u8]>) -> Vec<u32> {
    let mut tids = std::collections::BTreeSet::from([CODE_KERNEL_PID]);
    for b in buffers {
        let records = hyperprof_spe::record::RecordDecoder::new(b).map_while(|r| r.ok());
        tids.extend(records.filter_map(|(_, r)| r.context_el1));
    }
    tids.into_iter().collect()
}

/// A function of an image's kernel at the address perf computes for its
/// samples ([`crate::perf::perf_ip`] of an EL1 PC), whatever half of the
/// address space the image was linked in.
fn as_perf_kernel_text(s: &hyperprof_sim::op::Symbol) -> hyperprof_sim::op::Symbol {
    let at = |addr: u64| {
        crate::perf::perf_ip(&hyperprof_spe::record::CodeAddress {
            addr: addr & 0x00ff_ffff_ffff_ffff,
            el: 1,
            ns: true,
        })
    };
    hyperprof_sim::op::Symbol {
        name: s.name.clone(),
        start: at(s.start),
        end: at(s.end.saturating_sub(1)) + 1,
    }
}

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
    std::fs::create_dir_all(dir).map_err(|e| Error::output(dir, e))?;
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
        if let Some(code) = &vm.code {
            let path = dir.join(format!("{}.console.txt", file_stem(&vm.setup.name)));
            write_atomically(&path, &code.console)?;
            wrote.push(path);
        }
        let Some(spe) = &vm.setup.spe else {
            continue;
        };
        // A workload VM's samples are its user process's; an image's are
        // its kernel's (the image's own functions). perf takes a record's
        // CONTEXTIDR_EL1 as its thread, so every value the image's records
        // carry (a profiler's per-CPU ids, say) is a thread of the kernel.
        let (process, interval) = match &vm.code {
            Some(code) => (
                Process {
                    pid: CODE_KERNEL_PID,
                    tids: code_threads(vm.vcpus.iter().map(|c| c.spe_data.as_slice())),
                    comm: code.image.label.clone(),
                    symbols: vm.symbols.iter().map(as_perf_kernel_text).collect(),
                    kernel: true,
                },
                code.sampling_interval,
            ),
            None => (
                Process {
                    pid: GUEST_PID,
                    tids: (0..vm.vcpus.len() as u32).map(|j| GUEST_PID + j).collect(),
                    comm: vm.setup.workload.clone(),
                    symbols: vm.symbols.clone(),
                    kernel: vm.setup.workload.starts_with("kernel-"),
                },
                spe.spe.map_or(0, |s| s.session.interval.into()),
            ),
        };
        let d = DomainProfile {
            buffers: vm
                .vcpus
                .iter()
                .enumerate()
                .map(|(j, c)| (j as u32, c.spe_data.as_slice()))
                .collect(),
            processes: vec![process],
            nr_cpus: vm.vcpus.len().max(1) as u32,
            mem_bytes: vm.setup.ram_bytes,
            interval,
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
    let json = serde_json::to_string_pretty(report).map_err(|e| Error::output(&path, e))? + "\n";
    write_atomically(&path, json.as_bytes())?;
    Ok(wrote)
}

/// Reads `report.json` back from an artifact directory: a regular file of at
/// most 16 MiB, checked against docs/report.schema.json's rules
/// ([`parse_report`]). Its paths are derived from `dir`, where it is now,
/// not from the directory it was written to.
pub fn read_report(dir: &Path) -> Result<SystemReport> {
    let path = dir.join(REPORT_JSON);
    let text = crate::files::read_small_text(&path)?;
    let mut report = parse_report(&text).map_err(|e| Error::malformed(&path, e))?;
    report.out_dir = Some(dir.display().to_string());
    Ok(report)
}

/// Parses and validates the text of a report.json: the schema's rules (no
/// unknown fields, a known schema_version, known modes and latency classes,
/// percentages and rates in range) and counts that agree with each other
/// (the host's operations and records are the sums over its CPUs; no more
/// samples by function or by class than records; percentiles in order).
/// Every string is returned with its control characters escaped, so that
/// printing the report cannot drive the terminal.
pub fn parse_report(text: &str) -> std::result::Result<SystemReport, String> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| format!("line {} column {}: {e}", e.line(), e.column()))?;
    if let Some(v) = value.get("schema_version") {
        if v.as_u64() != Some(SCHEMA_VERSION as u64) {
            return Err(format!(
                "schema_version {v} is not one this hyperprof reads ({SCHEMA_VERSION})"
            ));
        }
    }
    // Latency entries flatten their percentiles, which serde cannot check
    // for unknown fields: check their keys here.
    const LATENCY_KEYS: [&str; 7] = ["class", "samples", "mean", "p50", "p90", "p99", "max"];
    let spes = std::iter::once(value.pointer("/host/spe")).chain(
        value
            .get("vms")
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
            .map(|vm| vm.get("spe")),
    );
    for spe in spes.flatten() {
        for l in spe
            .get("latency")
            .and_then(|l| l.as_array())
            .into_iter()
            .flatten()
        {
            if let Some(k) = l
                .as_object()
                .and_then(|o| o.keys().find(|k| !LATENCY_KEYS.contains(&k.as_str())))
            {
                return Err(format!("unknown field `{k}` in a latency entry"));
            }
        }
    }
    let mut r: SystemReport = serde_json::from_value(value).map_err(|e| e.to_string())?;
    validate(&r)?;
    escape_strings(&mut r);
    Ok(r)
}

fn validate(r: &SystemReport) -> std::result::Result<(), String> {
    if !matches!(r.host.mode.as_str(), "vhe" | "nvhe") {
        return Err(format!(
            "host.mode {:?} is neither \"vhe\" nor \"nvhe\"",
            r.host.mode
        ));
    }
    if r.host.pmu_reserved > 31 {
        return Err(format!(
            "host.pmu_reserved {} is over 31",
            r.host.pmu_reserved
        ));
    }
    let cpu_ops: u64 = r
        .host
        .cpus
        .iter()
        .map(|c| c.ops)
        .fold(0, u64::saturating_add);
    if !r.host.cpus.is_empty() && cpu_ops != r.host.ops {
        return Err(format!(
            "host.ops {} is not the sum of its CPUs' operations ({cpu_ops})",
            r.host.ops
        ));
    }
    if let Some(spe) = &r.host.spe {
        let cpu_records: u64 = r
            .host
            .cpus
            .iter()
            .map(|c| c.records)
            .fold(0, u64::saturating_add);
        if cpu_records != spe.records {
            return Err(format!(
                "host.spe.records {} is not the sum of its CPUs' records ({cpu_records})",
                spe.records
            ));
        }
    }
    let mut domains = vec![("host".to_string(), r.host.spe.as_ref(), &r.host.derived)];
    for vm in &r.vms {
        if vm.vcpus == 0 {
            return Err(format!("vm {:?}: vcpus is 0", vm.name));
        }
        if let Some(m) = &vm.pmu_mode {
            if !matches!(m.as_str(), "partitioned" | "emulated") {
                return Err(format!(
                    "vm {:?}: pmu_mode {m:?} is neither \"partitioned\" nor \"emulated\"",
                    vm.name
                ));
            }
        }
        if let Some(end) = &vm.end {
            if !matches!(
                end.as_str(),
                "powered-off" | "reset" | "wedged" | "running" | "failed"
            ) {
                return Err(format!("vm {:?}: end {end:?} is not a known end", vm.name));
            }
        }
        for m in &vm.migrations {
            let known = |x: &str| matches!(x, "partitioned" | "emulated");
            if m.round == 0 || !known(&m.from) || !known(&m.to) {
                return Err(format!(
                    "vm {:?}: migration at round {} from {:?} to {:?} is not one a run makes",
                    vm.name, m.round, m.from, m.to
                ));
            }
        }
        if vm.pinned_at_end_bytes > vm.pinned_peak_bytes {
            return Err(format!(
                "vm {:?}: {} bytes pinned at the end but a peak of {}",
                vm.name, vm.pinned_at_end_bytes, vm.pinned_peak_bytes
            ));
        }
        domains.push((format!("vm {:?}", vm.name), vm.spe.as_ref(), &vm.derived));
    }
    for (name, spe, derived) in domains {
        for (what, rate) in [
            ("l1d_miss_rate", derived.l1d_miss_rate),
            ("branch_miss_rate", derived.branch_miss_rate),
        ] {
            if rate.is_some_and(|x| !(0.0..=1.0).contains(&x)) {
                return Err(format!("{name}: derived.{what} is not between 0 and 1"));
            }
        }
        let Some(spe) = spe else { continue };
        let by_function: u64 = spe
            .top_functions
            .iter()
            .map(|f| f.samples)
            .fold(0, u64::saturating_add);
        if by_function > spe.records {
            return Err(format!(
                "{name}: {by_function} samples by function but {} records",
                spe.records
            ));
        }
        for f in &spe.top_functions {
            if !(0.0..=100.0).contains(&f.percent) {
                return Err(format!(
                    "{name}: function {:?} has {}%",
                    f.function, f.percent
                ));
            }
        }
        let by_class: u64 = spe
            .latency
            .iter()
            .map(|l| l.summary.samples)
            .fold(0, u64::saturating_add);
        if by_class > spe.records {
            return Err(format!(
                "{name}: {by_class} latency samples but {} records",
                spe.records
            ));
        }
        for l in &spe.latency {
            let s = &l.summary;
            if !matches!(l.class.as_str(), "load" | "store" | "branch" | "other") {
                return Err(format!("{name}: unknown latency class {:?}", l.class));
            }
            if s.samples == 0 || !(s.p50 <= s.p90 && s.p90 <= s.p99 && s.p99 <= s.max) {
                return Err(format!(
                    "{name}: {} latency: percentiles out of order or no samples",
                    l.class
                ));
            }
        }
    }
    for a in &r.artifacts {
        let p = Path::new(a);
        if p.components().count() != 1 || p.file_name().is_none() {
            return Err(format!("artifact {a:?} is not a file name"));
        }
    }
    Ok(())
}

/// `s` with every control character written as `\u{…}`.
fn escape(s: &mut String) {
    if s.chars().any(char::is_control) {
        *s = s
            .chars()
            .map(|c| {
                if c.is_control() {
                    format!("\\u{{{:x}}}", c as u32)
                } else {
                    c.to_string()
                }
            })
            .collect();
    }
}

/// Escapes the control characters of every string of `r`.
fn escape_strings(r: &mut SystemReport) {
    escape(&mut r.scenario);
    escape(&mut r.host.mode);
    escape(&mut r.host.workload);
    let mut spes: Vec<&mut super::system::SpeReport> = Vec::new();
    let mut pmus: Vec<&mut super::system::PmuCount> = Vec::new();
    if let Some(s) = r.host.spe.as_mut() {
        spes.push(s);
    }
    pmus.extend(r.host.pmu.iter_mut());
    for vm in &mut r.vms {
        escape(&mut vm.name);
        escape(&mut vm.workload);
        for s in [vm.image.as_mut(), vm.end.as_mut()].into_iter().flatten() {
            escape(s);
        }
        for m in &mut vm.migrations {
            escape(&mut m.from);
            escape(&mut m.to);
            if let Some(t) = m.twin.as_mut() {
                escape(t);
            }
        }
        if let Some(m) = vm.pmu_mode.as_mut() {
            escape(m);
        }
        if let Some(s) = vm.spe.as_mut() {
            spes.push(s);
        }
        pmus.extend(vm.pmu.iter_mut());
    }
    for s in spes {
        for f in &mut s.top_functions {
            escape(&mut f.function);
        }
        for l in &mut s.latency {
            escape(&mut l.class);
        }
    }
    for p in pmus {
        escape(&mut p.event);
    }
    for v in &mut r.invariants {
        escape(&mut v.invariant);
        escape(&mut v.detail);
    }
    for a in &mut r.artifacts {
        escape(a);
    }
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
