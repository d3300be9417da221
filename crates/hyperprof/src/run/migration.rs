//! Live migration of a VM during a system run, as a VMM does it: between
//! two slices (every vCPU put), each vCPU's PMU state is read with
//! KVM_GET_REG_LIST and KVM_GET_ONE_REG, a new VM is created on the
//! destination with its own vPMU mode, the state is written into its vCPUs
//! with KVM_SET_ONE_REG, and the source VM is destroyed. The guest kernel
//! carries on in the new VM.

use hyperprof_arch::SysReg;
use hyperprof_kvm::uapi::VcpuFeatures;
use hyperprof_kvm::vm::{Kvm, PmuSetup, VmConfig};

use super::engine::VmSetup;

/// One migration step of a VM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Migration {
    /// The round at whose start the VM moves.
    pub round: u64,
    /// The destination's vPMU is partitioned (else emulated).
    pub partitioned: bool,
    /// A VM that never moves and must count exactly what this one does.
    pub twin: Option<String>,
}

/// A migration that took place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Migrated {
    /// The step.
    pub step: Migration,
    /// The source's vPMU was partitioned.
    pub from_partitioned: bool,
    /// Registers moved over every vCPU.
    pub registers: u64,
}

/// The registers KVM lists that alias others (the CLR forms of the SET
/// registers) or have no state (PMSWINC): a VMM skips them.
const ALIASES: [SysReg; 4] = [
    SysReg::PMCNTENCLR_EL0,
    SysReg::PMINTENCLR_EL1,
    SysReg::PMOVSCLR_EL0,
    SysReg::PMSWINC_EL0,
];

/// Moves VM `vm` (set up as `setup`, its vCPUs `vcpus`, none loaded) to a
/// new VM whose vPMU is partitioned or emulated as `to_partitioned`, with
/// as many counters as the source's. Returns the new VM, its vCPUs in the
/// same order and the registers moved; the source VM is destroyed.
pub(crate) fn migrate(
    kvm: &mut Kvm,
    vm: usize,
    setup: &VmSetup,
    vcpus: &[usize],
    to_partitioned: bool,
) -> Result<(usize, Vec<usize>, u64), String> {
    let pmu = setup
        .pmu
        .as_ref()
        .ok_or_else(|| format!("{}: no vPMU to migrate", setup.name))?;
    let err = |what: &str, e: &dyn std::fmt::Display| format!("{}: {what}: {e}", setup.name);
    let dest = kvm
        .create_vm(VmConfig {
            ram_bytes: setup.ram_bytes,
            memlock_limit: setup.memlock_bytes,
        })
        .map_err(|e| err("create_vm on the destination", &e))?;
    let mut moved = Vec::new();
    let mut registers = 0u64;
    for &src in vcpus {
        let pmcr = kvm
            .get_one_reg(src, SysReg::PMCR_EL0)
            .map_err(|e| err("KVM_GET_ONE_REG PMCR_EL0", &e))?;
        let attrs = PmuSetup {
            partitioned: to_partitioned,
            nr_counters: Some(((pmcr >> 11) & 0x1f) as u8),
            ..pmu.attrs.clone()
        };
        let features = VcpuFeatures {
            spe: false,
            pmu_v3: true,
        };
        let new = kvm
            .create_vcpu(dest, features)
            .map_err(|e| err("create_vcpu on the destination", &e))?;
        kvm.configure_pmu(new, &attrs)
            .map_err(|(attr, e)| err(&format!("destination PMU attribute {attr}"), &e))?;
        let list = kvm.reg_list(src).map_err(|e| err("KVM_GET_REG_LIST", &e))?;
        for reg in list.into_iter().filter(|r| !ALIASES.contains(r)) {
            let val = kvm
                .get_one_reg(src, reg)
                .map_err(|e| err(&format!("KVM_GET_ONE_REG {reg:?}"), &e))?;
            kvm.set_one_reg(new, reg, val)
                .map_err(|e| err(&format!("KVM_SET_ONE_REG {reg:?}"), &e))?;
            registers += 1;
        }
        moved.push(new);
    }
    kvm.destroy_vm(vm)
        .map_err(|e| err("destroying the source VM", &e))?;
    Ok((dest, moved, registers))
}
