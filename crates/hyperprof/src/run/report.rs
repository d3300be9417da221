//! What a run measured, as text and as JSON.

use serde::Serialize;

use hyperprof_guest::host::PeReport;
use hyperprof_sim::event::{Event, ALL_EVENTS};
use hyperprof_spe::RecordDecoder;

/// SPE figures of one CPU.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SpeFigures {
    /// Sample points reached.
    pub sampled: u64,
    /// Records written to the buffer.
    pub written: u64,
    /// Records dropped by filters.
    pub filtered: u64,
    /// Samples lost to collisions.
    pub collided: u64,
    /// Records not written (DISCARD mode, or lost at a buffer event).
    pub discarded: u64,
    /// The part of `discarded` lost (queued in the unit when a buffer
    /// management event stopped profiling) rather than discarded by choice.
    pub lost: u64,
    /// Records still held in the unit at the end.
    pub queued: u64,
    /// Records the collected data decodes to.
    pub records_decoded: u64,
    /// Bytes collected.
    pub bytes: u64,
    /// Buffer-full interrupts the driver handled.
    pub buffer_full_interrupts: u64,
    /// Fault events.
    pub faults: u64,
}

/// One PMU counter.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CounterFigures {
    /// Event name.
    pub event: String,
    /// Event number.
    pub number: u16,
    /// Count.
    pub count: u64,
    /// Overflow interrupts.
    pub overflows: u64,
    /// What the CPU's operations caused (ground truth), for comparison.
    pub expected: u64,
}

/// What the kernel spent on the profiling hardware.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct KernelCost {
    /// System register reads.
    pub reads: u64,
    /// System register writes.
    pub writes: u64,
    /// ISBs.
    pub isb: u64,
    /// DSBs.
    pub dsb: u64,
    /// PSB CSYNCs.
    pub psb: u64,
    /// All of them.
    pub total: u64,
}

impl From<hyperprof_sim::pe::AccessStats> for KernelCost {
    fn from(a: hyperprof_sim::pe::AccessStats) -> Self {
        KernelCost {
            reads: a.reads,
            writes: a.writes,
            isb: a.isb,
            dsb: a.dsb,
            psb: a.psb,
            total: a.total(),
        }
    }
}

/// One CPU.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CpuFigures {
    /// CPU number.
    pub cpu: usize,
    /// Operations executed.
    pub ops: u64,
    /// SPE (absent without an SPE unit).
    pub spe: Option<SpeFigures>,
    /// PMU counters.
    pub pmu: Vec<CounterFigures>,
    /// PMBIRQ interrupts.
    pub pmbirq_interrupts: u64,
    /// PMU overflow interrupts.
    pub pmu_interrupts: u64,
    /// Kernel cost.
    pub kernel_cost: KernelCost,
}

/// An invariant and whether it held.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Verdict {
    /// What was checked.
    pub invariant: String,
    /// Whether it held everywhere.
    pub holds: bool,
    /// Details when it did not.
    pub detail: String,
}

/// A run's report.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Seed.
    pub seed: u64,
    /// Per CPU.
    pub cpus: Vec<CpuFigures>,
    /// Sums over CPUs.
    pub total_ops: u64,
    /// Records written over all CPUs.
    pub total_records: u64,
    /// Invariant verdicts.
    pub invariants: Vec<Verdict>,
}

/// An event's name (`CPU_CYCLES`), or its number in hex when the machine
/// has no such event.
pub(crate) fn event_name(number: u16) -> String {
    ALL_EVENTS
        .iter()
        .find(|e| e.number() == number)
        .map_or_else(|| format!("0x{number:04x}"), |e| format!("{e:?}"))
}

/// Builds the report of a bare-metal run.
pub fn from_pe_reports(scenario: &str, seed: u64, pes: &[PeReport]) -> Report {
    let mut cpus = Vec::new();
    let mut conservation = Vec::new();
    let mut decode = Vec::new();
    let mut counting = Vec::new();
    for p in pes {
        let records_decoded = RecordDecoder::new(&p.spe_data)
            .filter(|r| r.is_ok())
            .count() as u64;
        let spe = p.spe_unit.as_ref().map(|u| {
            let queued = p.spe_queued;
            SpeFigures {
                sampled: u.sampled,
                written: u.written,
                filtered: u.filtered,
                collided: u.collided,
                discarded: u.discarded,
                lost: u.lost,
                queued,
                records_decoded,
                bytes: p.spe_data.len() as u64,
                buffer_full_interrupts: p.spe_driver.map_or(0, |d| d.buffer_full),
                faults: u.fault_events,
            }
        });
        if let Some(s) = &spe {
            if s.sampled != s.written + s.filtered + s.collided + s.discarded + s.queued
                || s.queued != 0
            {
                conservation.push(format!(
                    "cpu {}: sampled {} != written {} + filtered {} + collided {} + discarded {} (queued {})",
                    p.cpu, s.sampled, s.written, s.filtered, s.collided, s.discarded, s.queued
                ));
            }
            if s.records_decoded != s.written {
                decode.push(format!(
                    "cpu {}: {} records written, {} decoded from the collected data",
                    p.cpu, s.written, s.records_decoded
                ));
            }
        }
        let pmu: Vec<CounterFigures> = p
            .counters
            .iter()
            .map(|c| {
                let expected = Event::from_number(c.event).map_or(0, |e| p.events.get(e));
                if c.count != expected {
                    counting.push(format!(
                        "cpu {}: {} counted {}, operations caused {}",
                        p.cpu,
                        event_name(c.event),
                        c.count,
                        expected
                    ));
                }
                CounterFigures {
                    event: event_name(c.event),
                    number: c.event,
                    count: c.count,
                    overflows: c.overflows,
                    expected,
                }
            })
            .collect();
        cpus.push(CpuFigures {
            cpu: p.cpu,
            ops: p.ops,
            spe,
            pmu,
            pmbirq_interrupts: p.pmbirqs,
            pmu_interrupts: p.pmuirqs,
            kernel_cost: p.access.into(),
        });
    }
    let verdict = |name: &str, problems: Vec<String>| Verdict {
        invariant: name.to_string(),
        holds: problems.is_empty(),
        detail: problems.join("; "),
    };
    Report {
        scenario: scenario.to_string(),
        seed,
        total_ops: cpus.iter().map(|c| c.ops).sum(),
        total_records: cpus
            .iter()
            .filter_map(|c| c.spe.as_ref())
            .map(|s| s.written)
            .sum(),
        cpus,
        invariants: vec![
            verdict(
                "conservation: sampled = written + filtered + collided + discarded",
                conservation,
            ),
            verdict("every written record is in the collected data", decode),
            verdict(
                "PMU counts equal the events the operations caused",
                counting,
            ),
        ],
    }
}

/// The report as text.
pub fn render(r: &Report) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "scenario {}  seed {}  {} operations",
        r.scenario, r.seed, r.total_ops
    );
    for c in &r.cpus {
        let _ = writeln!(o, "\ncpu {}  {} operations", c.cpu, c.ops);
        match &c.spe {
            Some(s) => {
                let _ = writeln!(
                    o,
                    "  spe    sampled {}  written {}  filtered {}  collided {}  discarded {} (lost {})  decoded {}  bytes {}",
                    s.sampled, s.written, s.filtered, s.collided, s.discarded, s.lost, s.records_decoded, s.bytes
                );
                let _ = writeln!(
                    o,
                    "         buffer-full interrupts {}  faults {}",
                    s.buffer_full_interrupts, s.faults
                );
            }
            None => {
                let _ = writeln!(o, "  spe    (no SPE unit)");
            }
        }
        for k in &c.pmu {
            let _ = writeln!(
                o,
                "  pmu    {:<22}{:>14}  overflows {}",
                k.event, k.count, k.overflows
            );
        }
        let _ = writeln!(
            o,
            "  irqs   PMBIRQ {}  PMU {}",
            c.pmbirq_interrupts, c.pmu_interrupts
        );
        let k = &c.kernel_cost;
        let _ = writeln!(
            o,
            "  kernel {} register reads, {} writes, {} ISB, {} DSB, {} PSB CSYNC ({} in all)",
            k.reads, k.writes, k.isb, k.dsb, k.psb, k.total
        );
    }
    render_verdicts(&mut o, &r.invariants);
    o
}

/// The invariants section of a report: one line per invariant, the
/// details under one that failed.
pub(crate) fn render_verdicts(o: &mut String, verdicts: &[Verdict]) {
    use std::fmt::Write;
    let _ = writeln!(o, "\ninvariants");
    for v in verdicts {
        let mark = if v.holds { "ok  " } else { "FAIL" };
        let _ = writeln!(o, "  {mark} {}", v.invariant);
        if !v.holds {
            let _ = writeln!(o, "       {}", v.detail);
        }
    }
}
