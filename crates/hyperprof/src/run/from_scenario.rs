//! A scenario file's description ([`crate::scenario::Scenario`], already
//! validated) as the engine's [`Setup`].

use hyperprof_kvm::vm::PmuSetup;

use super::code_vm::CodeImage;
use super::engine::{
    build, GuestPmuSetup, GuestSpeSetup, HostSetup, Schedule, Setup, SpeSetup, System, VmSetup,
};
use super::migration::Migration;
use crate::scenario::{self as sc, Scenario};

/// The engine's setup for `s`. Errors name what the engine cannot run
/// (validation catches everything a file can get wrong; this is the last
/// line).
pub fn setup(s: &Scenario) -> Result<Setup, String> {
    s.validate().map_err(|e| e.to_string())?;
    let vms = s
        .vms
        .iter()
        .map(|v| vm_setup(s, v))
        .collect::<Result<Vec<_>, String>>()?;
    Ok(Setup {
        name: s.name.clone(),
        seed: s.seed,
        machine: s.machine.machine_config(),
        nvhe: s.machine.host_mode == sc::HostMode::Nvhe,
        host: HostSetup {
            workload: s.host.workload.clone(),
            ops: s.run.host_ops,
            pmu_reserved: s.host.pmu_reserved_counters,
            spe: s.host.spe.as_ref().map(spe_setup),
            pmu_events: s
                .host
                .pmu_events
                .iter()
                .map(sc::PmuEventSpec::event_spec)
                .collect(),
        },
        vms,
        slice_ops: s.run.slice_ops,
        host_slice_ops: s.run.host_slice_ops,
        schedule: match s.run.schedule {
            sc::Schedule::Rotate => Schedule::Rotate,
            sc::Schedule::Pinned => Schedule::Pinned,
        },
    })
}

/// One `[[vm]]` of `s` as the engine runs it: its image read, its
/// migrations in round order.
fn vm_setup(s: &Scenario, v: &sc::VmSpec) -> Result<VmSetup, String> {
    let image = match &v.image {
        Some(name) => {
            let bytes = sc::image_bytes(name).map_err(|e| format!("image {name}: {e}"))?;
            Some(CodeImage {
                name: name.clone(),
                label: sc::image_label(name),
                bytes: bytes.into_owned().into(),
                bootargs: v.bootargs.clone().unwrap_or_default(),
                max_insns: v.max_insns(),
            })
        }
        None => None,
    };
    // A step without `pmu` keeps the mode the VM has when it moves.
    let mut mode = v.pmu.as_ref().map(|p| p.mode);
    let migrations = s
        .migrations_of(&v.name)
        .into_iter()
        .map(|m| {
            mode = m.pmu.or(mode);
            Migration {
                round: m.round,
                partitioned: mode == Some(sc::PmuMode::Partitioned),
                twin: m.twin.clone(),
            }
        })
        .collect();
    Ok(VmSetup {
        name: v.name.clone(),
        ram_bytes: v.ram_bytes(),
        memlock_bytes: v.memlock_bytes(),
        workload: v.workload.clone(),
        seed: v.seed,
        image,
        migrations,
        ops: s.run.guest_ops,
        vcpus: v.vcpus as usize,
        pmu: v.pmu.as_ref().map(|p| GuestPmuSetup {
            attrs: PmuSetup {
                irq: p.irq,
                partitioned: p.mode == sc::PmuMode::Partitioned,
                nr_counters: p.nr_counters,
                filters: p
                    .filter
                    .iter()
                    .map(sc::EventFilterSpec::kvm_filter)
                    .collect(),
            },
            events: p.events.iter().map(sc::PmuEventSpec::event_spec).collect(),
        }),
        spe: v.spe.as_ref().map(|g| GuestSpeSetup {
            irq: g.irq,
            max_buffer_size: g.max_buffer_size,
            spe: g.session().as_ref().map(spe_setup),
        }),
    })
}

/// The system `s` describes, built and ready to run: everything `hyperprof
/// run` checks before its first round, so `scenario check` and `run` accept
/// exactly the same files. Errors name what the file, the machine or the
/// hypervisor refused.
pub fn build_checked(s: &Scenario) -> Result<System, String> {
    let setup = setup(s)?;
    build(&setup).map_err(|e| e.to_string())
}

/// An SPE session of the file as the engine runs it.
fn spe_setup(s: &sc::SpeSessionSpec) -> SpeSetup {
    SpeSetup {
        session: s.session_config(),
        buffer_bytes: s.buffer_bytes(),
    }
}
