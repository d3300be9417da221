//! The parts of a system run's report ([`super::system`]) that only some
//! VMs have: what a VM that booted an image counted on its own counters,
//! and the migrations a VM went through, checked against its twin.

use serde::{Deserialize, Serialize};

use super::code_vm::CodeOutcome;
use super::engine::{Invariant, VmOutcome};
use super::migration::Migrated;
use super::report::event_name;
use super::system::{PmuCount, VmReport};

/// One migration of a VM.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MigrationReport {
    /// The round at whose start it moved.
    pub round: u64,
    /// The source's vPMU mode: `partitioned` or `emulated`.
    pub from: String,
    /// The destination's vPMU mode.
    pub to: String,
    /// PMU registers moved through one-reg over all its vCPUs.
    pub registers: u64,
    /// The VM that never moved and must count what this one counts.
    pub twin: Option<String>,
    /// Whether every count and overflow interrupt equals the twin's.
    pub equals_twin: Option<bool>,
}

fn mode(partitioned: bool) -> String {
    if partitioned {
        "partitioned"
    } else {
        "emulated"
    }
    .to_string()
}

/// The report's entries for `migrated` (twins are compared later, by
/// [`compare_twins`]).
pub fn migrations(migrated: &[Migrated]) -> Vec<MigrationReport> {
    migrated
        .iter()
        .map(|m| MigrationReport {
            round: m.step.round,
            from: mode(m.from_partitioned),
            to: mode(m.step.partitioned),
            registers: m.registers,
            twin: m.step.twin.clone(),
            equals_twin: None,
        })
        .collect()
}

/// The vPMU mode a VM ends the run in: its last migration's destination,
/// or its own.
pub fn final_pmu_mode(vm: &VmOutcome) -> Option<String> {
    let pmu = vm.setup.pmu.as_ref()?;
    Some(mode(
        vm.migrated
            .last()
            .map_or(pmu.attrs.partitioned, |m| m.step.partitioned),
    ))
}

/// A code VM's counters at the end, as PMU counts: what its own code
/// programmed, with no expectation (hyperprof does not know what the code
/// meant to count) and overflow interrupts unknown per event (the VM's
/// total is its `pmu_interrupts`).
pub fn code_pmu(code: &CodeOutcome) -> Vec<PmuCount> {
    code.pmu
        .iter()
        .map(|&(number, count)| PmuCount {
            event: event_name(number),
            number,
            count,
            expected: None,
            overflow_interrupts: 0,
        })
        .collect()
}

/// Fills in every migration's `equals_twin`: the migrated VM's counts,
/// overflow interrupts per event and PMU interrupts must equal its twin's
/// exactly; a difference is an exact-counts problem.
pub fn compare_twins(vms: &mut [VmReport], problems: &mut Vec<(Invariant, String)>) {
    for i in 0..vms.len() {
        for k in 0..vms[i].migrations.len() {
            let Some(twin) = vms[i].migrations[k].twin.clone() else {
                continue;
            };
            let Some(t) = vms.iter().find(|v| v.name == twin) else {
                continue;
            };
            let figures = |v: &VmReport| {
                let counts: Vec<(u16, u64, u64)> = v
                    .pmu
                    .iter()
                    .map(|c| (c.number, c.count, c.overflow_interrupts))
                    .collect();
                (counts, v.pmu_interrupts, v.ops)
            };
            let (mine, theirs) = (figures(&vms[i]), figures(t));
            let equal = mine == theirs;
            if !equal {
                problems.push((
                    Invariant::ExactCounts,
                    format!(
                        "{}: after migrating at round {} it counted {:?} with {} PMU interrupts, \
                         its twin {twin} {:?} with {}",
                        vms[i].name, vms[i].migrations[k].round, mine.0, mine.1, theirs.0, theirs.1
                    ),
                ));
            }
            vms[i].migrations[k].equals_twin = Some(equal);
        }
    }
}

/// The report's lines for a VM's image and migrations.
pub fn render(o: &mut String, v: &VmReport) {
    use std::fmt::Write;
    if let Some(image) = &v.image {
        let lost = match v.truncated_handovers {
            Some(1) => "; 1 hand-over after lost records".to_string(),
            Some(n) if n > 1 => format!("; {n} hand-overs after lost records"),
            _ => String::new(),
        };
        let _ = writeln!(
            o,
            "  image    {image}: {}, {} console bytes{lost}",
            v.end.as_deref().unwrap_or("-"),
            v.console_bytes.unwrap_or(0)
        );
    }
    for m in &v.migrations {
        let twin = match (&m.twin, m.equals_twin) {
            (Some(t), Some(true)) => {
                format!("; counts and overflow interrupts equal {t}'s exactly")
            }
            (Some(t), _) => format!("; counts DIFFER from {t}'s"),
            (None, _) => String::new(),
        };
        let _ = writeln!(
            o,
            "  migrated at round {}: {} -> {} PMU, {} registers through one-reg{twin}",
            m.round, m.from, m.to, m.registers
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::system::{Derived, HypervisorCost};

    fn vm(name: &str, count: u64, overflows: u64, twin: Option<&str>) -> VmReport {
        VmReport {
            name: name.into(),
            workload: "mix".into(),
            vcpus: 1,
            ops: 1000,
            pmu_mode: Some("emulated".into()),
            spe: None,
            pmu: vec![PmuCount {
                event: "INST_RETIRED".into(),
                number: 8,
                count,
                expected: Some(count),
                overflow_interrupts: overflows,
            }],
            derived: Derived::default(),
            pmu_interrupts: overflows,
            spe_interrupts: 0,
            pinned_peak_bytes: 0,
            pinned_at_end_bytes: 0,
            hypervisor: HypervisorCost::default(),
            image: None,
            end: None,
            console_bytes: None,
            truncated_handovers: None,
            migrations: twin
                .map(|t| MigrationReport {
                    round: 3,
                    from: "partitioned".into(),
                    to: "emulated".into(),
                    registers: 70,
                    twin: Some(t.into()),
                    equals_twin: None,
                })
                .into_iter()
                .collect(),
        }
    }

    #[test]
    fn a_twin_that_counted_otherwise_is_an_exact_counts_problem() {
        let mut same = vec![vm("a", 500, 2, Some("b")), vm("b", 500, 2, None)];
        let mut problems = Vec::new();
        compare_twins(&mut same, &mut problems);
        assert_eq!(same[0].migrations[0].equals_twin, Some(true));
        assert!(problems.is_empty());

        for (count, overflows) in [(501, 2), (500, 3)] {
            let mut vms = vec![vm("a", count, overflows, Some("b")), vm("b", 500, 2, None)];
            compare_twins(&mut vms, &mut problems);
            assert_eq!(vms[0].migrations[0].equals_twin, Some(false));
        }
        assert_eq!(problems.len(), 2);
        assert!(problems.iter().all(|(i, _)| *i == Invariant::ExactCounts));
        let mut text = String::new();
        render(&mut text, &{
            let mut v = vm("a", 1, 0, Some("b"));
            v.migrations[0].equals_twin = Some(false);
            v
        });
        assert!(text.contains("counts DIFFER from b's"), "{text}");
    }
}
