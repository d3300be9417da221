//! The guest-spe scenarios: two VMs whose guest kernels profile themselves
//! with SPE on a two-CPU host that profiles its own kernel at the same time
//! (a VHE host at EL2, or an nVHE host at EL1 whose buffer every guest entry
//! drains and disables); every round each CPU runs host kernel work, then
//! one vCPU slice, and the vCPUs swap CPUs from round to round.

use serde::Serialize;

use hyperprof_arch::{ExceptionLevel, SysReg};
use hyperprof_guest::drivers::spe::{Buffer, SpeDriver, SpeSessionConfig};
use hyperprof_guest::guest::GuestKernel;
use hyperprof_kvm::uapi::VcpuFeatures;
use hyperprof_kvm::vm::{Exit, Kvm, VmConfig, GUEST_RAM_IPA};
use hyperprof_sim::machine::Machine;
use hyperprof_sim::memory::PAGE_SIZE;
use hyperprof_sim::pe::RunExit;
use hyperprof_sim::workload::{by_name, Workload};
use hyperprof_spe::RecordDecoder;

use super::bare_metal::machine_config;
use super::report::{KernelCost, Verdict};
use crate::error::{Error, Result};

/// Options of the scenario.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Seed.
    pub seed: u64,
    /// Guest user operations per VM.
    pub ops: u64,
    /// The host kernel runs at EL1 (nVHE) instead of EL2 (VHE).
    pub nvhe: bool,
}

const GUEST_BUF_VA: u64 = 0x0000_0040_0000_0000;
const GUEST_BUF_IPA: u64 = GUEST_RAM_IPA + (16 << 20);
const GUEST_BUF_PAGES: u64 = 16;
const HOST_BUF_VA: u64 = 0x0000_7000_0000_0000;
const HOST_BUF_PAGES: u64 = 16;
const SLICE: u64 = 200_000;
const HOST_SLICE: u64 = 50_000;

/// What one VM did.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VmFigures {
    /// VM index.
    pub vm: usize,
    /// Guest workload.
    pub workload: String,
    /// Guest operations run.
    pub ops: u64,
    /// Records the guest collected.
    pub records: u64,
    /// Bytes the guest collected.
    pub bytes: u64,
    /// Records with each SPE event.
    pub events: Vec<(String, u64)>,
    /// Virtual PMBIRQs the guest took.
    pub virtual_interrupts: u64,
    /// Buffer-full events its driver handled.
    pub buffer_full: u64,
    /// Bytes pinned at the end (0: the guest disabled its buffer).
    pub pinned_bytes_at_end: u64,
    /// Guest entries.
    pub entries: u64,
    /// Exits for trapped accesses.
    pub trap_exits: u64,
    /// Exits for physical interrupts.
    pub irq_exits: u64,
    /// Loads (each with a put).
    pub loads: u64,
    /// SPE world-switch accesses and barriers, entry and exit halves.
    pub spe_switch: KernelCost,
    /// SPE accesses and barriers of loads and puts.
    pub spe_load_put: KernelCost,
    /// Of which per round trip with the guest profiling.
    pub spe_switch_per_round_trip: f64,
    /// Per load+put pair.
    pub spe_load_put_per_pair: f64,
}

/// What the host did on one CPU.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct HostCpuFigures {
    /// CPU.
    pub cpu: usize,
    /// Records the host collected.
    pub records: u64,
    /// Records with each SPE event.
    pub events: Vec<(String, u64)>,
    /// Buffer-full interrupts.
    pub buffer_full: u64,
    /// Records the CPU's SPE unit wrote (host and guests).
    pub unit_written: u64,
}

/// The scenario's report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Seed.
    pub seed: u64,
    /// Per VM.
    pub vms: Vec<VmFigures>,
    /// Host per CPU.
    pub host: Vec<HostCpuFigures>,
    /// Invariant verdicts.
    pub invariants: Vec<Verdict>,
}

/// The report and the SPE data (host per CPU, then per VM).
pub struct Outcome {
    /// The report.
    pub report: Report,
    /// Host SPE data per CPU.
    pub host_data: Vec<Vec<u8>>,
    /// Guest SPE data per VM.
    pub vm_data: Vec<Vec<u8>>,
}

fn fail(what: &str) -> impl Fn(String) -> Error + '_ {
    move |e| Error::Usage(format!("guest-spe: {what}: {e}"))
}

/// Records per SPE event in `data` (a buffer a driver collected).
fn events(data: &[u8]) -> Result<Vec<(String, u64)>> {
    let mut agg = crate::spe::stats::Aggregator::default();
    agg.add_buffer(data, 0).map_err(|(off, msg)| {
        Error::Usage(format!("collected SPE data, byte offset {off:#x}: {msg}"))
    })?;
    Ok(agg.finish().events)
}

fn nonzero(events: &[(String, u64)]) -> String {
    events
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(e, n)| format!("{e} {n}"))
        .collect::<Vec<_>>()
        .join("  ")
}

/// Maps and starts the host's SPE session on `cpu`, through the host
/// kernel's own tables (TTBR0_EL2 under VHE, TTBR0_EL1 under nVHE).
fn host_session(m: &mut Machine, cpu: usize, nvhe: bool) -> Result<SpeDriver> {
    let ttbr = if nvhe {
        SysReg::TTBR0_EL1
    } else {
        SysReg::TTBR0_EL2
    };
    let va = HOST_BUF_VA + ((cpu as u64) << 32);
    hyperprof_guest::host::start_session(m, cpu, ttbr, va, HOST_BUF_PAGES * PAGE_SIZE, session())
        .map_err(|e| fail("host session")(e.to_string()))
}

fn session() -> SpeSessionConfig {
    SpeSessionConfig {
        interval: 1024,
        ..SpeSessionConfig::default()
    }
}

/// Runs host kernel work on `cpu`, taking PMBIRQ into the host driver.
fn host_work(
    m: &mut Machine,
    cpu: usize,
    w: &mut dyn Workload,
    d: &mut SpeDriver,
    ops: u64,
    host_el: ExceptionLevel,
) -> Result<()> {
    let err = fail("host work");
    let mut left = ops;
    while left > 0 {
        let mut done = 0;
        let exit = m
            .run(cpu, w, left, &mut done)
            .ok_or_else(|| err("no such CPU".into()))?;
        left -= done;
        if let RunExit::Interrupt(lines) = exit {
            let pe = m.pe_mut(cpu).ok_or_else(|| err("no such CPU".into()))?;
            pe.exception_entry(host_el);
            if !lines.pmbirq {
                return Err(err(format!("unexpected interrupt {lines:?}")));
            }
            let mut c = m.cpu(cpu).ok_or_else(|| err("no such CPU".into()))?;
            d.handle_irq(&mut c).map_err(|e| err(e.to_string()))?;
        }
    }
    Ok(())
}

/// Runs the scenario.
pub fn run(opts: &Options) -> Result<Outcome> {
    let machine = Machine::new(&machine_config(2)).map_err(|e| Error::Usage(e.to_string()))?;
    let (mut kvm, host_el, name) = if opts.nvhe {
        (
            Kvm::new_nvhe(machine),
            ExceptionLevel::EL1,
            "guest-spe-nvhe",
        )
    } else {
        (Kvm::new(machine), ExceptionLevel::EL2, "guest-spe")
    };
    let workloads = ["mix", "pointer-chase"];
    let mut vcpus = Vec::new();
    let mut guests = Vec::new();
    for (i, name) in workloads.iter().enumerate() {
        let vm = kvm
            .create_vm(VmConfig {
                ram_bytes: 64 << 20,
                memlock_limit: 8 << 20,
            })
            .map_err(|e| fail("create_vm")(e.to_string()))?;
        let vcpu = kvm
            .create_vcpu(
                vm,
                VcpuFeatures {
                    spe: true,
                    pmu_v3: false,
                },
            )
            .map_err(|e| fail("create_vcpu")(e.to_string()))?;
        kvm.configure_spe(vcpu, 0, 21, 1 << 20)
            .map_err(|(attr, e)| fail("set_device_attr")(format!("attribute {attr}: {e}")))?;
        let ttbr = kvm
            .guest_map(vm, GUEST_BUF_VA, GUEST_BUF_IPA, GUEST_BUF_PAGES * PAGE_SIZE)
            .map_err(|e| fail("guest_map")(e.to_string()))?;
        let wl = by_name(name, opts.seed ^ (i as u64 + 1))
            .ok_or_else(|| fail("workload")(name.to_string()))?;
        let buf = Buffer {
            va: GUEST_BUF_VA,
            size: GUEST_BUF_PAGES * PAGE_SIZE,
        };
        guests.push(GuestKernel::new(ttbr, session(), buf, wl, opts.ops).with_slices(SLICE));
        vcpus.push((vm, vcpu));
    }
    let mut host = Vec::new();
    let mut host_loads: Vec<Box<dyn Workload>> = Vec::new();
    for cpu in 0..2 {
        host.push(host_session(kvm.machine(), cpu, opts.nvhe)?);
        host_loads.push(
            by_name("kernel-mix", opts.seed ^ 0xa5 ^ cpu as u64)
                .ok_or_else(|| fail("workload")("kernel-mix".into()))?,
        );
    }
    let mut round = 0usize;
    while guests.iter().any(|g| !g.finished()) {
        for cpu in 0..2 {
            host_work(
                kvm.machine(),
                cpu,
                host_loads[cpu].as_mut(),
                &mut host[cpu],
                HOST_SLICE,
                host_el,
            )?;
            let g = (round + cpu) % 2;
            if guests[g].finished() {
                continue;
            }
            let vcpu = vcpus[g].1;
            kvm.load(vcpu, cpu).map_err(fail("load"))?;
            match kvm.run(vcpu, &mut guests[g]) {
                Exit::Halt | Exit::Yield => {}
                other => return Err(fail("run")(format!("{other:?}"))),
            }
            kvm.put(vcpu).map_err(fail("put"))?;
        }
        round += 1;
        if round > 1_000_000 {
            return Err(fail("run")("the guests never finished".into()));
        }
    }
    let mut host_data = Vec::new();
    let mut host_figs = Vec::new();
    let mut isolation = Vec::new();
    let mut conservation = Vec::new();
    for (cpu, d) in host.iter_mut().enumerate() {
        let mut c = kvm
            .machine()
            .cpu(cpu)
            .ok_or_else(|| fail("host")("no such CPU".into()))?;
        d.stop(&mut c)
            .map_err(|e| fail("host stop")(e.to_string()))?;
        let data = d.take_data();
        let recs: Vec<_> = RecordDecoder::new(&data).filter_map(|r| r.ok()).collect();
        if recs
            .iter()
            .any(|(_, r)| r.pc.is_none_or(|pc| pc.el != host_el.as_u8()))
        {
            isolation.push(format!(
                "cpu {cpu}: a host record not from the host kernel's {host_el} code"
            ));
        }
        let unit = *kvm
            .machine()
            .pe(cpu)
            .and_then(|p| p.spe())
            .map(|s| s.stats())
            .ok_or_else(|| fail("host")("no SPE".into()))?;
        if unit.sampled != unit.written + unit.filtered + unit.collided + unit.discarded {
            conservation.push(format!("cpu {cpu}: {unit:?}"));
        }
        host_figs.push(HostCpuFigures {
            cpu,
            records: recs.len() as u64,
            events: events(&data)?,
            buffer_full: d.stats().buffer_full,
            unit_written: unit.written,
        });
        host_data.push(data);
    }
    let mut vms = Vec::new();
    let mut vm_data = Vec::new();
    for (i, g) in guests.iter().enumerate() {
        let (vm, vcpu) = vcpus[i];
        let recs: Vec<_> = RecordDecoder::new(g.data())
            .filter_map(|r| r.ok())
            .collect();
        if recs.iter().any(|(_, r)| r.pc.is_none_or(|pc| pc.el != 0)) {
            isolation.push(format!(
                "vm {vm}: a guest record not from the guest's EL0 code"
            ));
        }
        let s = kvm
            .vcpu_stats(vcpu)
            .ok_or_else(|| fail("stats")("no vCPU".into()))?;
        let d = g.driver_stats().unwrap_or_default();
        let trips = s.live_trips.max(1) as f64;
        vms.push(VmFigures {
            vm,
            workload: workloads[i].to_string(),
            ops: g.ops_done(),
            records: recs.len() as u64,
            bytes: g.data().len() as u64,
            events: events(g.data())?,
            virtual_interrupts: s.virqs,
            buffer_full: d.buffer_full,
            pinned_bytes_at_end: kvm.pinned_bytes(vm).unwrap_or(0),
            entries: s.entries,
            trap_exits: s.trap_exits,
            irq_exits: s.irq_exits,
            loads: s.loads,
            spe_switch: s.spe_switch.into(),
            spe_load_put: s.spe_load_put.into(),
            spe_switch_per_round_trip: s.spe_switch_live.total() as f64 / trips,
            spe_load_put_per_pair: s.spe_load_put.total() as f64 / s.loads.max(1) as f64,
        });
        vm_data.push(g.data().to_vec());
    }
    let collected: u64 = host_figs.iter().map(|h| h.records).sum::<u64>()
        + vms.iter().map(|v| v.records).sum::<u64>();
    let written: u64 = host_figs.iter().map(|h| h.unit_written).sum();
    if collected != written {
        conservation.push(format!(
            "{written} records written, {collected} collected by host and guests"
        ));
    }
    let verdict = |name: &str, problems: Vec<String>| Verdict {
        invariant: name.to_string(),
        holds: problems.is_empty(),
        detail: problems.join("; "),
    };
    let limits: Vec<String> = vms
        .iter()
        .filter(|v| v.pinned_bytes_at_end != 0)
        .map(|v| {
            format!(
                "vm {}: {} bytes still pinned after its session stopped",
                v.vm, v.pinned_bytes_at_end
            )
        })
        .collect();
    Ok(Outcome {
        report: Report {
            scenario: name.into(),
            seed: opts.seed,
            vms,
            host: host_figs,
            invariants: vec![
                verdict(
                    "isolation: host and guest records stay in their own buffers",
                    isolation,
                ),
                verdict(
                    "conservation: every sampled operation accounted for, every record collected",
                    conservation,
                ),
                verdict(
                    "limits: nothing stays pinned after a guest disables its buffer",
                    limits,
                ),
            ],
        },
        host_data,
        vm_data,
    })
}

/// The report as text.
pub fn render(r: &Report) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(o, "scenario {}  seed {}", r.scenario, r.seed);
    for v in &r.vms {
        let _ = writeln!(o, "\nvm {} ({}, {} operations)", v.vm, v.workload, v.ops);
        let _ = writeln!(
            o,
            "  spe     records {}  bytes {}  virtual PMBIRQs {}  buffer-full {}  pinned at end {} bytes",
            v.records, v.bytes, v.virtual_interrupts, v.buffer_full, v.pinned_bytes_at_end
        );
        let _ = writeln!(o, "  events  {}", nonzero(&v.events));
        let _ = writeln!(
            o,
            "  switch  {} entries, {} trap exits, {} irq exits, {} loads",
            v.entries, v.trap_exits, v.irq_exits, v.loads
        );
        let _ = writeln!(
            o,
            "          SPE {:.1} accesses+barriers per entry/exit round trip while profiling, {:.1} per load/put",
            v.spe_switch_per_round_trip, v.spe_load_put_per_pair
        );
    }
    for h in &r.host {
        let _ = writeln!(
            o,
            "\nhost cpu {}  records {}  buffer-full {}  (unit wrote {} records for host and guests)",
            h.cpu, h.records, h.buffer_full, h.unit_written
        );
        let _ = writeln!(o, "  events  {}", nonzero(&h.events));
    }
    let _ = writeln!(o, "\ninvariants");
    for v in &r.invariants {
        let mark = if v.holds { "ok  " } else { "FAIL" };
        let _ = writeln!(o, "  {mark} {}", v.invariant);
        if !v.holds {
            let _ = writeln!(o, "       {}", v.detail);
        }
    }
    o
}
