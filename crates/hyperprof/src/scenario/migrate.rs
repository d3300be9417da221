//! `[[migrate]]` steps: at the start of a round, a VM's vCPUs are saved
//! through one-reg (KVM_GET_REG_LIST, KVM_GET_ONE_REG of every PMU
//! register) and restored (KVM_SET_ONE_REG) into a new VM on the
//! destination, whose vPMU may be in another mode; the guest carries on
//! there. With `twin`, the report checks that the migrated VM counted
//! exactly what an identical VM that never moved counted.

use serde::Deserialize;

use super::{impossible, HostMode, PmuMode, Scenario, Violation, I64_MAX};

/// One `[[migrate]]` table.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct MigrateSpec {
    /// The name of the VM that moves.
    pub vm: String,
    /// The round at whose start it moves (1 or later).
    #[serde(deserialize_with = "super::int::<_, u64, 1, I64_MAX, 1>")]
    pub round: u64,
    /// The destination's vPMU mode (default: the source's).
    #[serde(default)]
    pub pmu: Option<PmuMode>,
    /// A VM that does not move and must count exactly what this one does:
    /// the same workload, seed, vCPUs and events.
    #[serde(default)]
    pub twin: Option<String>,
}

impl Scenario {
    /// The migration steps of VM `name`, in round order.
    pub fn migrations_of(&self, name: &str) -> Vec<&MigrateSpec> {
        let mut steps: Vec<&MigrateSpec> =
            self.migrations.iter().filter(|m| m.vm == name).collect();
        steps.sort_by_key(|m| m.round);
        steps
    }

    /// Every `[[migrate]]` step names a VM that can move, at a round after
    /// its previous move, to a destination PMU the host can give it; a
    /// twin is a VM that runs the same operations and never moves.
    pub(super) fn check_migrations(&self) -> Result<(), Violation> {
        for (i, m) in self.migrations.iter().enumerate() {
            let at = format!("migrate[{i}]");
            let Some(vm) = self.vms.iter().find(|v| v.name == m.vm) else {
                return Err(impossible(
                    format!("{at}.vm"),
                    format!("no [[vm]] is named {:?}", m.vm),
                ));
            };
            if vm.is_code() {
                return Err(impossible(
                    format!("{at}.vm"),
                    format!(
                        "{:?} boots an image; migration moves a workload VM (its guest \
                         kernel and its vCPUs' PMU registers)",
                        m.vm
                    ),
                ));
            }
            if vm.spe.is_some() {
                return Err(impossible(
                    format!("{at}.vm"),
                    format!(
                        "{:?} has guest SPE, whose state one-reg does not carry; migrate a VM \
                         with a vPMU and no [vm.spe]",
                        m.vm
                    ),
                ));
            }
            let Some(pmu) = &vm.pmu else {
                return Err(impossible(
                    format!("{at}.vm"),
                    format!(
                        "{:?} has no vPMU: a migration moves its PMU registers",
                        m.vm
                    ),
                ));
            };
            let dest = m.pmu.unwrap_or(pmu.mode);
            if dest == PmuMode::Partitioned && self.machine.host_mode == HostMode::Nvhe {
                return Err(impossible(
                    format!("{at}.pmu"),
                    "a partitioned PMU needs a VHE host; the destination must be \"emulated\"",
                ));
            }
            if let Some(prev) = self.migrations[..i]
                .iter()
                .find(|p| p.vm == m.vm && p.round >= m.round)
            {
                return Err(impossible(
                    format!("{at}.round"),
                    format!(
                        "{:?} already moves at round {}: its moves must come in increasing rounds",
                        m.vm, prev.round
                    ),
                ));
            }
            if let Some(t) = &m.twin {
                self.check_twin(&format!("{at}.twin"), &m.vm, t)?;
            }
        }
        Ok(())
    }

    fn check_twin(&self, at: &str, moved: &str, twin: &str) -> Result<(), Violation> {
        let Some(t) = self.vms.iter().find(|v| v.name == twin) else {
            return Err(impossible(at, format!("no [[vm]] is named {twin:?}")));
        };
        if twin == moved || self.migrations.iter().any(|m| m.vm == twin) {
            return Err(impossible(
                at,
                format!("the twin {twin:?} must be a VM that never moves"),
            ));
        }
        let Some(v) = self.vms.iter().find(|v| v.name == moved) else {
            return Ok(());
        };
        let events = |s: &super::VmSpec| s.pmu.as_ref().map(|p| p.events.clone());
        let differs = [
            ("workload", v.workload != t.workload),
            ("vcpus", v.vcpus != t.vcpus),
            ("pmu.events", events(v) != events(t)),
            ("seed", v.seed.is_none() || v.seed != t.seed),
        ];
        if let Some((key, _)) = differs.iter().find(|(_, d)| *d) {
            return Err(impossible(
                at,
                format!(
                    "the twin {twin:?} must run exactly the operations of {moved:?}: give both \
                     the same {key} (and the same explicit seed)"
                ),
            ));
        }
        Ok(())
    }
}
