//! The report of a system run ([`super::engine`]): per VM and for the host,
//! SPE records and what happened to samples, top functions, latency
//! percentiles, PMU counts with derived figures, interrupts, pinned memory,
//! the hypervisor's own cost, and the invariant verdicts. It is written as
//! `report.json` and read back by `hyperprof report`, which prints the same
//! text ([`render`] is a function of the report alone).

use serde::{Deserialize, Serialize};

use hyperprof_guest::drivers::pmu::EventSpec;
use hyperprof_kvm::vm::VcpuStats;
use hyperprof_sim::event::{Event, EventCounts};
use hyperprof_sim::spe::SpeStats;
use hyperprof_spe::RecordDecoder;

use super::code_report::{self, MigrationReport};
use super::engine::{Invariant, Outcome};
use super::profile::{ClassLatency, FunctionShare, Profile};
use super::report::{event_name, Verdict};

/// The version of the report's JSON layout (docs/REPORT.md).
pub const SCHEMA_VERSION: u32 = 1;

/// Functions listed per domain.
const TOP_FUNCTIONS: usize = 8;

/// What happened to one domain's samples.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SpeReport {
    /// Records the domain's driver collected (decoded).
    pub records: u64,
    /// Bytes collected.
    pub bytes: u64,
    /// Sample points reached while the domain ran.
    pub sampled: u64,
    /// Records written to its buffer.
    pub written: u64,
    /// Records dropped by its filters.
    pub filtered: u64,
    /// Samples lost to collisions.
    pub collided: u64,
    /// Records not written (DISCARD mode, or lost at a buffer event).
    pub discarded: u64,
    /// Buffer-full interrupts its driver handled.
    pub buffer_full_interrupts: u64,
    /// Functions by samples.
    pub top_functions: Vec<FunctionShare>,
    /// Total latency by kind of operation.
    pub latency: Vec<ClassLatency>,
}

/// One PMU event.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PmuCount {
    /// Event name.
    pub event: String,
    /// Event number.
    pub number: u16,
    /// The domain's total.
    pub count: u64,
    /// What the domain's own operations caused, where the filter makes
    /// that exact (counting its own Exception levels only).
    pub expected: Option<u64>,
    /// Overflow interrupts (sampling events).
    pub overflow_interrupts: u64,
}

/// Figures derived from the counts.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Derived {
    /// INST_RETIRED / CPU_CYCLES.
    pub ipc: Option<f64>,
    /// L1D_CACHE_REFILL / L1D_CACHE.
    pub l1d_miss_rate: Option<f64>,
    /// BR_MIS_PRED / BR_PRED, or BR_MIS_PRED_RETIRED / BR_RETIRED.
    pub branch_miss_rate: Option<f64>,
}

/// The hypervisor's own cost for one VM.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HypervisorCost {
    /// Guest entries (world switches in; as many out).
    pub entries: u64,
    /// vCPU loads (each with a put).
    pub loads: u64,
    /// Exits for trapped register accesses.
    pub trap_exits: u64,
    /// Of which PMU accesses.
    pub pmu_trap_exits: u64,
    /// Exits for physical interrupts.
    pub irq_exits: u64,
    /// SPE register accesses and barriers per entry/exit round trip while
    /// the guest profiles.
    pub spe_per_round_trip: f64,
    /// SPE accesses and barriers per load/put pair.
    pub spe_per_load_put: f64,
    /// PMU register accesses per load/put pair with the PMU state live.
    pub pmu_per_load_put: f64,
    /// Loads with the PMU state live.
    pub pmu_live_loads: u64,
    /// PMU accesses of the entry/exit path (late PMSELR, overflow moves,
    /// and on an nVHE host the enables, PMCR and PMUSERENR switched), not
    /// the emulation of trapped accesses.
    pub pmu_switch_accesses: u64,
}

/// One VM.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VmReport {
    /// Name.
    pub name: String,
    /// Workload.
    pub workload: String,
    /// vCPUs.
    pub vcpus: usize,
    /// Guest operations run.
    pub ops: u64,
    /// `partitioned` or `emulated`; absent without a PMU.
    pub pmu_mode: Option<String>,
    /// Guest SPE.
    pub spe: Option<SpeReport>,
    /// Guest PMU events.
    pub pmu: Vec<PmuCount>,
    /// Derived figures.
    pub derived: Derived,
    /// Virtual PMU overflow interrupts taken.
    pub pmu_interrupts: u64,
    /// Virtual PMBIRQs taken.
    pub spe_interrupts: u64,
    /// Most bytes pinned at once.
    pub pinned_peak_bytes: u64,
    /// Bytes pinned at the end.
    pub pinned_at_end_bytes: u64,
    /// The hypervisor's cost.
    pub hypervisor: HypervisorCost,
    /// The image a code VM booted (`builtin:NAME` or its path); absent for
    /// a workload VM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// How a code VM's run ended: `powered-off`, `reset`, `wedged`,
    /// `running` (its instruction budget ran out) or `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// Console bytes a code VM wrote (kept in `<vm>.console.txt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_bytes: Option<u64>,
    /// Pieces of records a code VM handed over saying that records were
    /// lost before them (its buffer filled while it could not drain it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated_handovers: Option<u64>,
    /// Its migrations, in round order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub migrations: Vec<MigrationReport>,
}

/// One host CPU.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HostCpu {
    /// CPU.
    pub cpu: usize,
    /// It has an SPE unit.
    pub spe_unit: bool,
    /// Host kernel operations.
    pub ops: u64,
    /// Records the host collected on it.
    pub records: u64,
}

/// The host.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HostReport {
    /// `vhe` or `nvhe`.
    pub mode: String,
    /// Workload of the host kernel.
    pub workload: String,
    /// Host kernel operations over all CPUs.
    pub ops: u64,
    /// Counters the host reserved (HPMN = N less these).
    pub pmu_reserved: u8,
    /// Host SPE over all CPUs.
    pub spe: Option<SpeReport>,
    /// Host PMU events over all CPUs.
    pub pmu: Vec<PmuCount>,
    /// Derived figures.
    pub derived: Derived,
    /// PMU interrupts taken.
    pub pmu_interrupts: u64,
    /// PMBIRQs taken.
    pub spe_interrupts: u64,
    /// Per CPU.
    pub cpus: Vec<HostCpu>,
}

/// A system run's report.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SystemReport {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Scenario name.
    pub scenario: String,
    /// Seed.
    pub seed: u64,
    /// Rounds of the schedule.
    pub rounds: u64,
    /// The host.
    pub host: HostReport,
    /// The VMs.
    pub vms: Vec<VmReport>,
    /// Invariant verdicts.
    pub invariants: Vec<Verdict>,
    /// The artifact directory, as given (absent when none was written).
    pub out_dir: Option<String>,
    /// Files written there.
    pub artifacts: Vec<String>,
}

/// Flame graph input per domain, in report order (host first).
pub struct Stacks {
    /// `(file stem, stacks)`.
    pub domains: Vec<(String, crate::flame::FoldedStacks)>,
}

fn spe_report(p: &Profile, unit: &SpeStats, bytes: u64, buffer_full: u64) -> SpeReport {
    SpeReport {
        records: p.records,
        bytes,
        sampled: unit.sampled,
        written: unit.written,
        filtered: unit.filtered,
        collided: unit.collided,
        discarded: unit.discarded,
        buffer_full_interrupts: buffer_full,
        top_functions: p.functions.iter().take(TOP_FUNCTIONS).cloned().collect(),
        latency: p.latency.clone(),
    }
}

fn derived(pmu: &[PmuCount]) -> Derived {
    let get = |e: Event| pmu.iter().find(|c| c.number == e.number()).map(|c| c.count);
    let ratio = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) if b > 0 => Some(a as f64 / b as f64),
        _ => None,
    };
    Derived {
        ipc: ratio(get(Event::INST_RETIRED), get(Event::CPU_CYCLES)),
        l1d_miss_rate: ratio(get(Event::L1D_CACHE_REFILL), get(Event::L1D_CACHE)),
        branch_miss_rate: ratio(get(Event::BR_MIS_PRED), get(Event::BR_PRED))
            .or_else(|| ratio(get(Event::BR_MIS_PRED_RETIRED), get(Event::BR_RETIRED))),
    }
}

/// Whether a VM's event filters let it count `event` (KVM's rule: the first
/// filter's action makes every other event the opposite; later filters
/// apply in order; SW_INCR and CHAIN are always counted).
fn filter_allows(filters: &[hyperprof_kvm::pmu_attr::EventFilter], event: u16) -> bool {
    use hyperprof_kvm::pmu_attr::{KVM_PMU_EVENT_ALLOW, KVM_PMU_EVENT_DENY};
    if event == Event::SW_INCR.number() || event == hyperprof_kvm::pmu_attr::EVENT_CHAIN {
        return true;
    }
    let Some(first) = filters.first() else {
        return true;
    };
    let mut allowed = first.action == KVM_PMU_EVENT_DENY;
    for f in filters {
        let end = u32::from(f.base_event) + u32::from(f.nevents);
        if (u32::from(f.base_event)..end).contains(&u32::from(event)) {
            allowed = f.action == KVM_PMU_EVENT_ALLOW;
        }
    }
    allowed
}

/// PMU counts summed over a domain's parts, with the expected totals.
fn pmu_counts(
    events: &[EventSpec],
    parts: &[(&[u64], &[u64], &EventCounts)],
    exact: impl Fn(&EventSpec) -> bool,
) -> Vec<PmuCount> {
    events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let count = parts.iter().map(|p| p.0.get(i).copied().unwrap_or(0)).sum();
            let overflow_interrupts = parts.iter().map(|p| p.1.get(i).copied().unwrap_or(0)).sum();
            let expected = exact(e).then(|| {
                let truth = Event::from_number(e.event).filter(|ev| *ev != Event::SW_INCR);
                parts
                    .iter()
                    .map(|p| truth.map_or(0, |ev| p.2.get(ev)))
                    .sum()
            });
            PmuCount {
                event: event_name(e.event),
                number: e.event,
                count,
                expected,
                overflow_interrupts,
            }
        })
        .collect()
}

/// Builds the report and the flame graph input of a run.
pub fn build(o: &Outcome) -> (SystemReport, Stacks) {
    let s = &o.setup;
    let mut problems = o.problems.clone();
    let mut stacks = Vec::new();

    // The host.
    let mut host_data = Vec::new();
    let mut unit = SpeStats::default();
    for h in &o.host {
        host_data.extend_from_slice(&h.spe_data);
        if let Some(u) = &h.spe_unit {
            unit.add_window(&SpeStats::default(), u);
        }
    }
    // The host kernel runs at EL2 under VHE, at EL1 under nVHE; guests'
    // workloads at EL0.
    let host_el = if s.nvhe { 1 } else { 2 };
    let hp = Profile::of(
        &host_data,
        "host",
        &s.host.workload,
        host_el,
        &o.host_symbols,
    );
    let host_el2 = !s.nvhe;
    let host_exact = |e: &EventSpec| {
        let f = e.filter;
        !f.el0 && f.el1 != host_el2 && f.el2 == host_el2
    };
    let parts: Vec<_> = o
        .host
        .iter()
        .map(|h| {
            (
                h.pmu_counts.as_slice(),
                h.pmu_overflows.as_slice(),
                &h.truth,
            )
        })
        .collect();
    let host_pmu = pmu_counts(&s.host.pmu_events, &parts, host_exact);
    if hp.foreign > 0 {
        problems.push((
            Invariant::Isolation,
            format!(
                "host: {} records not from the host kernel's EL{host_el}",
                hp.foreign
            ),
        ));
    }
    if hp.undecodable > 0 {
        problems.push((
            Invariant::Conservation,
            format!("host: {} undecodable bytes", hp.undecodable),
        ));
    }
    let mut host_cpus = Vec::new();
    for h in &o.host {
        let records = RecordDecoder::new(&h.spe_data)
            .filter(Result::is_ok)
            .count() as u64;
        host_cpus.push(HostCpu {
            cpu: h.cpu,
            spe_unit: h.has_spe,
            ops: h.ops,
            records,
        });
    }
    let host = HostReport {
        mode: if s.nvhe { "nvhe" } else { "vhe" }.to_string(),
        workload: s.host.workload.clone(),
        ops: o.host.iter().map(|h| h.ops).sum(),
        pmu_reserved: s.host.pmu_reserved,
        spe: s.host.spe.map(|_| {
            let bf = o.host.iter().map(|h| h.spe_buffer_full).sum();
            spe_report(&hp, &unit, host_data.len() as u64, bf)
        }),
        derived: derived(&host_pmu),
        pmu: host_pmu,
        pmu_interrupts: o.host.iter().map(|h| h.pmu_interrupts).sum(),
        spe_interrupts: o.host.iter().map(|h| h.pmbirqs).sum(),
        cpus: host_cpus,
    };
    let host_records = hp.records;
    stacks.push(("host".to_string(), hp.stacks));

    // The VMs.
    let mut vms = Vec::new();
    let mut guest_records = 0;
    // Records the SPE units wrote for code VMs that had not powered off
    // and that they had not handed over.
    let mut code_unhanded = 0;
    for vm in &o.vms {
        let v = &vm.setup;
        let mut data = Vec::new();
        let mut unit = SpeStats::default();
        let mut cost = HypervisorCost::default();
        let (mut ops, mut bf) = (0, 0);
        // A migrated vCPU's costs add up over every vCPU it has been.
        let st: VcpuStats = vm
            .vcpus
            .iter()
            .flat_map(|c| std::iter::once(c.stats).chain(c.former_stats.iter().copied()))
            .sum();
        cost.entries = st.entries;
        cost.loads = st.loads;
        cost.trap_exits = st.trap_exits;
        cost.pmu_trap_exits = st.pmu_trap_exits;
        cost.irq_exits = st.irq_exits;
        cost.pmu_live_loads = st.pmu_live_loads;
        cost.pmu_switch_accesses = st.pmu_switch.total();
        for c in &vm.vcpus {
            data.extend_from_slice(&c.spe_data);
            unit.add_window(&SpeStats::default(), &c.spe_unit);
            ops += c.ops;
            bf += c.spe_buffer_full;
            if let Some(e) = &c.error {
                problems.push((
                    Invariant::Completion,
                    format!("{} vCPU {}: {e}", v.name, c.vcpu),
                ));
            }
        }
        let per = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        cost.spe_per_round_trip = per(st.spe_switch_live.total(), st.live_trips);
        cost.spe_per_load_put = per(st.spe_load_put.total(), cost.loads);
        cost.pmu_per_load_put = per(st.pmu_load_put.total(), cost.pmu_live_loads);
        // A workload runs at EL0; an image's code at EL1 and EL0.
        let (workload, levels, where_) = match &v.image {
            Some(image) => (image.label.clone(), &[0u8, 1][..], "EL0 or EL1"),
            None => (v.workload.clone(), &[0u8][..], "EL0"),
        };
        let p = Profile::of_levels(&data, &v.name, &workload, levels, &vm.symbols);
        if p.foreign > 0 {
            problems.push((
                Invariant::Isolation,
                format!(
                    "{}: {} records not from the guest's {where_}",
                    v.name, p.foreign
                ),
            ));
        }
        if let Some(c) = &vm.code {
            // An image still running may hold records in its buffer, and
            // one that said it lost records (FLAG_TRUNCATED) has accounted
            // for them: either bounds the balance rather than breaking it.
            // Records the VMM refused are lost.
            if c.end != super::code_vm::CodeEnd::PoweredOff || c.truncations > 0 {
                code_unhanded += unit.written.saturating_sub(p.records);
            }
            if c.refused_bytes > 0 {
                problems.push((
                    Invariant::Conservation,
                    format!(
                        "{}: the VMM's record store was full: {} bytes handed over were refused",
                        v.name, c.refused_bytes
                    ),
                ));
            }
        }
        if p.undecodable > 0 {
            problems.push((
                Invariant::Conservation,
                format!("{}: {} undecodable bytes", v.name, p.undecodable),
            ));
        }
        guest_records += p.records;
        let events = v.pmu.as_ref().map(|g| g.events.clone()).unwrap_or_default();
        let parts: Vec<_> = vm
            .vcpus
            .iter()
            .map(|c| {
                (
                    c.pmu_counts.as_slice(),
                    c.pmu_overflows.as_slice(),
                    &c.truth,
                )
            })
            .collect();
        // A guest runs operations only at EL0: counts that include EL0 are
        // exactly its operations' events, others are 0, and so are events
        // the VM's filter denies.
        let mut pmu = match &vm.code {
            Some(c) => code_report::code_pmu(c),
            None => pmu_counts(&events, &parts, |_| true),
        };
        let filters = v
            .pmu
            .as_ref()
            .map(|g| g.attrs.filters.as_slice())
            .unwrap_or(&[]);
        for (c, e) in pmu.iter_mut().zip(&events) {
            if !e.filter.el0 || !filter_allows(filters, e.event) {
                c.expected = Some(0);
            }
        }
        vms.push(VmReport {
            name: v.name.clone(),
            workload,
            vcpus: vm.vcpus.len(),
            ops,
            pmu_mode: code_report::final_pmu_mode(vm),
            spe: v.spe.map(|_| spe_report(&p, &unit, data.len() as u64, bf)),
            derived: derived(&pmu),
            pmu,
            pmu_interrupts: st.pmu_virqs,
            spe_interrupts: st.virqs,
            pinned_peak_bytes: vm.pinned_peak,
            pinned_at_end_bytes: vm.pinned_at_end,
            hypervisor: cost,
            image: v.image.as_ref().map(|i| i.name.clone()),
            end: vm.code.as_ref().map(|c| c.end.name().to_string()),
            console_bytes: vm
                .code
                .as_ref()
                .map(|c| c.console.len() as u64 + c.console_dropped),
            truncated_handovers: vm.code.as_ref().map(|c| c.truncations),
            migrations: code_report::migrations(&vm.migrated),
        });
        stacks.push((v.name.clone(), p.stacks));
    }

    // Invariants from the figures.
    let written: u64 = o
        .host
        .iter()
        .filter_map(|h| h.spe_unit_total.map(|u| u.written))
        .sum();
    code_report::compare_twins(&mut vms, &mut problems);
    // A code VM still running at the end may hold records in its buffer:
    // at most what its unit wrote while it ran and it has not handed over.
    let collected = host_records + guest_records;
    if written < collected || written > collected + code_unhanded {
        let held = if code_unhanded > 0 {
            format!(
                " (and at most {code_unhanded} held or dropped by images that are still \
                 running or said they lost records)"
            )
        } else {
            String::new()
        };
        problems.push((
            Invariant::Conservation,
            format!("{written} records written, {collected} collected by host and guests{held}"),
        ));
    }
    for (domain, counts) in
        std::iter::once(("host", &host.pmu)).chain(vms.iter().map(|v| (v.name.as_str(), &v.pmu)))
    {
        for c in counts {
            if let Some(want) = c.expected {
                if want != c.count {
                    problems.push((
                        Invariant::ExactCounts,
                        format!(
                            "{domain}: {} counted {}, its operations caused {want}",
                            c.event, c.count
                        ),
                    ));
                }
            }
        }
    }
    for v in &vms {
        if v.pinned_at_end_bytes != 0 {
            problems.push((
                Invariant::Limits,
                format!(
                    "{}: {} bytes still pinned after its session stopped",
                    v.name, v.pinned_at_end_bytes
                ),
            ));
        }
        if let (Some(spe), None) = (&v.spe, &v.image) {
            if spe.top_functions.iter().any(|f| f.function == "[unknown]") {
                problems.push((
                    Invariant::Isolation,
                    format!("{}: a record outside the guest's own code", v.name),
                ));
            }
        }
    }
    if let Some(spe) = &host.spe {
        if spe.top_functions.iter().any(|f| f.function == "[unknown]") {
            problems.push((
                Invariant::Isolation,
                "host: a record outside the host kernel's code".into(),
            ));
        }
    }
    let verdict = |inv: Invariant, name: &str| {
        let found: Vec<String> = problems
            .iter()
            .filter(|(i, _)| *i == inv)
            .map(|(_, m)| m.clone())
            .collect();
        Verdict {
            invariant: name.to_string(),
            holds: found.is_empty(),
            detail: found.join("; "),
        }
    };
    let invariants = vec![
        verdict(
            Invariant::Isolation,
            "isolation: host and guest records stay in their own buffers",
        ),
        verdict(
            Invariant::Conservation,
            "conservation: every sampled operation accounted for, every record collected",
        ),
        verdict(
            Invariant::ExactCounts,
            "exact counts: every PMU count equals the events of its own domain's work",
        ),
        verdict(
            Invariant::Limits,
            "limits: nothing stays pinned after a guest disables its buffer",
        ),
        verdict(
            Invariant::Completion,
            "completion: every guest kernel finished without a driver error",
        ),
    ];
    (
        SystemReport {
            schema_version: SCHEMA_VERSION,
            scenario: s.name.clone(),
            seed: s.seed,
            rounds: o.rounds,
            host,
            vms,
            invariants,
            out_dir: None,
            artifacts: Vec::new(),
        },
        Stacks { domains: stacks },
    )
}

fn fmt_rate(v: Option<f64>, pct: bool) -> String {
    match v {
        Some(x) if pct => format!("{:.2}%", x * 100.0),
        Some(x) => format!("{x:.3}"),
        None => "-".to_string(),
    }
}

fn render_spe(o: &mut String, s: &SpeReport, irqs: u64, what: &str) {
    use std::fmt::Write;
    let _ = writeln!(
        o,
        "  spe      {} records ({} bytes); samples: {} sampled, {} written, {} filtered, {} collided, {} discarded; {} buffer-full, {} {what}",
        s.records, s.bytes, s.sampled, s.written, s.filtered, s.collided, s.discarded, s.buffer_full_interrupts, irqs
    );
    if !s.top_functions.is_empty() {
        let top: Vec<String> = s
            .top_functions
            .iter()
            .map(|f| format!("{} {:.1}%", f.function, f.percent))
            .collect();
        let _ = writeln!(o, "  top      {}", top.join(", "));
    }
    for l in &s.latency {
        let _ = writeln!(
            o,
            "  latency  {:<6} n={:<7} mean {:>7.1}  p50 {:>5}  p90 {:>5}  p99 {:>5}  max {:>5}",
            l.class,
            l.summary.samples,
            l.summary.mean,
            l.summary.p50,
            l.summary.p90,
            l.summary.p99,
            l.summary.max
        );
    }
}

fn render_pmu(o: &mut String, counts: &[PmuCount], d: &Derived, irqs: u64) {
    use std::fmt::Write;
    for c in counts {
        let check = match c.expected {
            Some(e) if e == c.count => "exact".to_string(),
            Some(e) => format!("EXPECTED {e}"),
            None => String::new(),
        };
        let ovf = if c.overflow_interrupts > 0 {
            format!("  {} overflows", c.overflow_interrupts)
        } else {
            String::new()
        };
        let _ = writeln!(
            o,
            "  pmu      {:<20} {:>14}  {check}{ovf}",
            c.event, c.count
        );
    }
    if !counts.is_empty() {
        let _ = writeln!(
            o,
            "  derived  IPC {}  L1D miss {}  branch miss {}  ({irqs} PMU interrupts)",
            fmt_rate(d.ipc, false),
            fmt_rate(d.l1d_miss_rate, true),
            fmt_rate(d.branch_miss_rate, true)
        );
    }
}

/// The report as text.
pub fn render(r: &SystemReport) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let h = &r.host;
    let _ = writeln!(
        o,
        "scenario {}  seed {}  {} host, {} CPUs, {} rounds",
        r.scenario,
        r.seed,
        h.mode.to_uppercase(),
        h.cpus.len(),
        r.rounds
    );
    let spe_cpus: Vec<String> = h
        .cpus
        .iter()
        .filter(|c| c.spe_unit)
        .map(|c| c.cpu.to_string())
        .collect();
    let _ = writeln!(
        o,
        "\nhost ({}, {} operations; SPE on CPUs [{}]; {} PMU counters reserved)",
        h.workload,
        h.ops,
        spe_cpus.join(", "),
        h.pmu_reserved
    );
    if let Some(s) = &h.spe {
        render_spe(&mut o, s, h.spe_interrupts, "PMBIRQs");
    }
    render_pmu(&mut o, &h.pmu, &h.derived, h.pmu_interrupts);
    for v in &r.vms {
        let mode = v.pmu_mode.as_deref().unwrap_or("no");
        let spe = if v.spe.is_some() {
            "guest SPE"
        } else {
            "no SPE"
        };
        let what = if v.image.is_some() {
            "instructions"
        } else {
            "operations"
        };
        let _ = writeln!(
            o,
            "\n{} ({}, {} vCPU{}, {} {what}; {mode} PMU, {spe})",
            v.name,
            v.workload,
            v.vcpus,
            if v.vcpus == 1 { "" } else { "s" },
            v.ops
        );
        if let Some(s) = &v.spe {
            render_spe(&mut o, s, v.spe_interrupts, "virtual PMBIRQs");
            let _ = writeln!(
                o,
                "  pinned   peak {} bytes, {} at the end",
                v.pinned_peak_bytes, v.pinned_at_end_bytes
            );
        }
        render_pmu(&mut o, &v.pmu, &v.derived, v.pmu_interrupts);
        code_report::render(&mut o, v);
        let c = &v.hypervisor;
        let _ = writeln!(
            o,
            "  kvm      {} entries, {} loads, {} trap exits ({} PMU), {} irq exits",
            c.entries, c.loads, c.trap_exits, c.pmu_trap_exits, c.irq_exits
        );
        if v.spe.is_some() {
            let _ = writeln!(
                o,
                "  switch   SPE: {:.1} accesses+barriers per profiling round trip, {:.1} per load/put",
                c.spe_per_round_trip, c.spe_per_load_put
            );
        }
        if v.pmu_mode.is_some() {
            let _ = writeln!(
                o,
                "  switch   PMU: {:.1} accesses per load/put with the state live ({} of {} loads), {} on entries and exits",
                c.pmu_per_load_put, c.pmu_live_loads, c.loads, c.pmu_switch_accesses
            );
        }
    }
    super::report::render_verdicts(&mut o, &r.invariants);
    if let Some(dir) = &r.out_dir {
        let _ = writeln!(o, "\nartifacts in {dir}");
        for a in &r.artifacts {
            let path = std::path::Path::new(dir).join(a);
            let hint = if a.ends_with(".perf.data") {
                format!("  perf report --stdio --itrace=i1i -i {}", path.display())
            } else if a.ends_with(".elf") {
                format!("  symbols: hyperprof perf-setup {dir}")
            } else if a.ends_with(".console.txt") {
                "  the guest's console output".to_string()
            } else if a.ends_with(".svg") {
                "  flame graph, open in a browser".to_string()
            } else {
                "  hyperprof report re-prints this report".to_string()
            };
            let _ = writeln!(o, "  {a:<24}{hint}");
        }
    }
    o
}
