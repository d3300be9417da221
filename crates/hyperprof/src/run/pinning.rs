//! `hyperprof run --scenario pinning`: the guest buffer pinning designs side
//! by side on the per-task `perf record` pattern (issue 15).
//!
//! One VM with one SPE vCPU runs [`PerTaskKernel`]: two user tasks, each
//! profiled by its own perf event into its own 1 MiB buffer, switching
//! every `slice` operations; every switch disables one buffer and enables
//! the other. The same guest, seed and schedule run once per design
//! ([`PinPolicy`]), each on a fresh machine; the VMM starts every VM with
//! the same RLIMIT_MEMLOCK and raises it when a run stops with an Rlimit
//! exit (each such exit is a memlock failure in the table).
//!
//! The table gives per design: pin and unpin operations and pages, pages
//! pinned at peak and on average over guest time, the cycles of pinning and
//! unpinning under [`PinCostModel`], the blackout windows (profiling enabled
//! by the guest, buffer not yet on the hardware because the hypervisor is
//! pinning it), samples lost by the unit, memlock failures.

use hyperprof_guest::drivers::spe::{Buffer, SpeSessionConfig};
use hyperprof_guest::per_task::{PerTaskKernel, Task};
use hyperprof_kvm::uapi::VcpuFeatures;
use hyperprof_kvm::vm::{Exit, Kvm, PinCostModel, PinPolicy, PinStats, VmConfig, GUEST_RAM_IPA};
use hyperprof_sim::machine::Machine;
use hyperprof_sim::memory::PAGE_SIZE;
use hyperprof_sim::workload::by_name;
use hyperprof_spe::RecordDecoder;
use serde::Serialize;

use super::bare_metal::machine_config;
use crate::error::{Error, Result};

/// Guest virtual address of task `i`'s buffer.
fn buffer_va(i: u64) -> u64 {
    0x0000_0040_0000_0000 + (i << 24)
}

/// Guest IPA of task `i`'s buffer.
fn buffer_ipa(i: u64) -> u64 {
    GUEST_RAM_IPA + (16 << 20) + (i << 21)
}

/// The scenario's parameters.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Options {
    /// Seed of the workloads.
    pub seed: u64,
    /// Operations per task.
    pub ops: u64,
    /// Operations per scheduler slice (between context switches).
    pub slice: u64,
    /// Bytes of each task's buffer.
    pub buffer_bytes: u64,
    /// Guest RAM.
    pub ram_bytes: u64,
    /// RLIMIT_MEMLOCK the VMM starts with.
    pub memlock_bytes: u64,
    /// SPE sampling interval.
    pub interval: u32,
    /// Clock of the cost model, to turn cycles into time (MHz).
    pub clock_mhz: u64,
}

impl Options {
    /// The built-in: 1 MiB buffers, a switch every 250 000 operations
    /// (about 1 500 switches a second with these workloads' cycles per
    /// operation at 2.5 GHz: between CFS time slices of CPU-bound tasks
    /// and an I/O-bound mix), a 64 MiB guest, 4 MiB of memlock, sampling
    /// every 1024.
    pub fn builtin(seed: u64, ops: u64) -> Self {
        Options {
            seed,
            ops,
            slice: 250_000,
            buffer_bytes: 1 << 20,
            ram_bytes: 64 << 20,
            memlock_bytes: 4 << 20,
            interval: 1024,
            clock_mhz: 2_500,
        }
    }
}

/// One design's run.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// The design.
    pub design: String,
    /// RLIMIT_MEMLOCK it started with.
    pub memlock_start: u64,
    /// RLIMIT_MEMLOCK it ended with (raised after memlock failures).
    pub memlock_end: u64,
    /// Context switches in the guest.
    pub switches: u64,
    /// Guest cycles.
    pub cycles: u64,
    /// Pin and unpin counts.
    pub pin_ops: u64,
    /// Pages pinned by those operations.
    pub pages_pinned: u64,
    /// Unpin operations.
    pub unpin_ops: u64,
    /// Pages unpinned.
    pub pages_unpinned: u64,
    /// Enables served by the cache.
    pub cache_hits: u64,
    /// Kept pins evicted by the cache.
    pub evictions: u64,
    /// Pages pinned at peak.
    pub peak_pages: u64,
    /// Pages pinned on average over guest time.
    pub mean_pages: f64,
    /// Cycles of pinning under the cost model.
    pub pin_cycles: u64,
    /// Cycles of unpinning.
    pub unpin_cycles: u64,
    /// Blackout windows (pins at enable).
    pub blackout_windows: u64,
    /// Their cycles.
    pub blackout_cycles: u64,
    /// Samples the unit took in the guest.
    pub sampled: u64,
    /// Samples the unit lost (queued when profiling stopped, or at a
    /// buffer event).
    pub samples_lost: u64,
    /// Samples the guest's tasks would have taken in the blackout windows,
    /// at their sampling rate (they do not run then: these are delayed, not
    /// lost).
    pub samples_in_blackout: f64,
    /// Records the tasks collected.
    pub records_collected: u64,
    /// Records the unit wrote.
    pub records_written: u64,
    /// Memlock failures (Rlimit exits).
    pub memlock_failures: u64,
    /// Bytes pinned after the VM was torn down.
    pub pinned_at_end: u64,
}

/// The scenario's report.
#[derive(Clone, Debug, Serialize)]
pub struct PinningReport {
    /// Parameters.
    pub options: Options,
    /// The cost model used.
    pub cost_model: CostModelFigures,
    /// One row per design.
    pub rows: Vec<Row>,
    /// Invariant violations (empty when everything held).
    pub violations: Vec<String>,
}

/// [`PinCostModel`] as figures.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct CostModelFigures {
    /// Cycles per pin call.
    pub pin_call: u64,
    /// Cycles per page pinned.
    pub pin_page: u64,
    /// Cycles per unpin call.
    pub unpin_call: u64,
    /// Cycles per page unpinned.
    pub unpin_page: u64,
}

/// The designs the scenario compares: each with the memlock limit it starts
/// with. The cache runs twice: with room for both buffers, and with room
/// for one (it then evicts at every switch).
pub fn designs(o: &Options) -> Vec<(PinPolicy, u64, String)> {
    let one = o.buffer_bytes + o.buffer_bytes / 2;
    vec![
        (
            PinPolicy::OnEnable,
            o.memlock_bytes,
            PinPolicy::OnEnable.name().into(),
        ),
        (
            PinPolicy::PinAll,
            o.memlock_bytes,
            PinPolicy::PinAll.name().into(),
        ),
        (
            PinPolicy::Cache,
            o.memlock_bytes,
            PinPolicy::Cache.name().into(),
        ),
        (
            PinPolicy::Cache,
            one,
            format!("{} (1 buffer)", PinPolicy::Cache.name()),
        ),
    ]
}

/// Runs one design.
pub fn run_design(o: &Options, policy: PinPolicy, memlock: u64, name: &str) -> Result<Row> {
    let fail =
        |what: &str, e: String| Error::Usage(format!("pinning scenario, {name}: {what}: {e}"));
    let machine = Machine::new(&machine_config(1)).map_err(|e| fail("machine", e.to_string()))?;
    let mut kvm = Kvm::new(machine);
    let vm = kvm
        .create_vm(VmConfig {
            ram_bytes: o.ram_bytes,
            memlock_limit: memlock,
        })
        .map_err(|e| fail("create_vm", e.to_string()))?;
    kvm.set_pin_policy(vm, policy)
        .map_err(|e| fail("set_pin_policy", e.to_string()))?;
    let vcpu = kvm
        .create_vcpu(
            vm,
            VcpuFeatures {
                spe: true,
                pmu_v3: false,
            },
        )
        .map_err(|e| fail("create_vcpu", e.to_string()))?;
    kvm.configure_spe(vcpu, 0, 21, o.buffer_bytes)
        .map_err(|(a, e)| fail("configure_spe", format!("attribute {a}: {e}")))?;
    let mut ttbr = 0;
    for i in 0..2 {
        ttbr = kvm
            .guest_map(vm, buffer_va(i), buffer_ipa(i), o.buffer_bytes)
            .map_err(|e| fail("guest_map", e.to_string()))?;
    }
    let workloads = ["mix", "pointer-chase"];
    let tasks = workloads
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let wl = by_name(w, o.seed.wrapping_add(i as u64))
                .ok_or_else(|| fail("workload", (*w).to_string()))?;
            let buf = Buffer {
                va: buffer_va(i as u64),
                size: o.buffer_bytes,
            };
            Ok(Task::new(wl, buf, o.ops))
        })
        .collect::<Result<Vec<_>>>()?;
    let session = SpeSessionConfig {
        interval: o.interval,
        ..SpeSessionConfig::default()
    };
    let mut kernel = PerTaskKernel::new(ttbr, session, tasks, o.slice);
    kvm.load(vcpu, 0).map_err(|e| fail("load", e))?;
    let (mut cycles, mut weighted, mut limit) = (0u64, 0f64, memlock);
    let max_runs = (o.ops.saturating_mul(2) / o.slice.max(1))
        .saturating_add(2)
        .saturating_mul(8)
        .saturating_add(16);
    let mut halted = false;
    for _ in 0..max_runs {
        let c0 = kvm.machine().pe(0).map_or(0, |p| p.cycles());
        let exit = kvm.run(vcpu, &mut kernel);
        let dt = kvm.machine().pe(0).map_or(0, |p| p.cycles()) - c0;
        cycles += dt;
        let pinned = kvm.pinned_bytes(vm).unwrap_or(0) / PAGE_SIZE;
        weighted += pinned as f64 * dt as f64;
        match exit {
            Exit::Halt => {
                halted = true;
                break;
            }
            Exit::Yield => {}
            Exit::Rlimit { needed, used, .. } => {
                // The VMM raises RLIMIT_MEMLOCK to what the pin needs.
                limit = used + needed;
                kvm.set_memlock_limit(vm, limit)
                    .map_err(|e| fail("set_memlock_limit", e.to_string()))?;
            }
            Exit::FailEntry(why) => return Err(fail("KVM_RUN", why)),
            other @ (Exit::Hypercall { .. } | Exit::Mmio(_) | Exit::Idle) => {
                return Err(fail(
                    "KVM_RUN",
                    format!("a Rust guest's run returned a machine-code exit: {other:?}"),
                ))
            }
        }
    }
    if !halted {
        return Err(fail("run", "the guest did not finish".into()));
    }
    if let Some(e) = kernel.error() {
        return Err(fail("guest", e.to_string()));
    }
    kvm.put(vcpu).map_err(|e| fail("put", e))?;
    let unit = kvm
        .machine()
        .pe(0)
        .and_then(|p| p.spe())
        .map(|s| *s.stats())
        .unwrap_or_default();
    kvm.destroy_vm(vm)
        .map_err(|e| fail("destroy_vm", e.to_string()))?;
    let stats: PinStats = kvm.pin_stats(vm).unwrap_or_default();
    let model = PinCostModel::default();
    let records_collected = kernel
        .tasks()
        .iter()
        .map(|t| RecordDecoder::new(t.data()).filter(|r| r.is_ok()).count() as u64)
        .sum();
    let blackout_cycles = model.blackout_cycles(&stats);
    Ok(Row {
        design: name.to_string(),
        memlock_start: memlock,
        memlock_end: limit,
        switches: kernel.switches(),
        cycles,
        pin_ops: stats.pin_ops,
        pages_pinned: stats.pages_pinned,
        unpin_ops: stats.unpin_ops,
        pages_unpinned: stats.pages_unpinned,
        cache_hits: stats.cache_hits,
        evictions: stats.evictions,
        peak_pages: stats.peak_bytes / PAGE_SIZE,
        mean_pages: if cycles == 0 {
            0.0
        } else {
            weighted / cycles as f64
        },
        pin_cycles: model.pin_cycles(&stats),
        unpin_cycles: model.unpin_cycles(&stats),
        blackout_windows: stats.blackout_windows,
        blackout_cycles,
        sampled: unit.sampled,
        samples_lost: unit.lost,
        samples_in_blackout: if cycles == 0 {
            0.0
        } else {
            blackout_cycles as f64 * unit.sampled as f64 / cycles as f64
        },
        records_collected,
        records_written: unit.written,
        memlock_failures: stats.memlock_failures,
        pinned_at_end: kvm.pinned_bytes(vm).unwrap_or(0),
    })
}

/// The invariants of one row: limits, nothing pinned at the end, every
/// record written collected, nothing lost but what the design explains,
/// and the design's own shape.
pub fn check(o: &Options, policy: PinPolicy, r: &Row) -> Vec<String> {
    let mut v = Vec::new();
    let mut need = |ok: bool, what: String| {
        if !ok {
            v.push(format!("{}: {what}", r.design));
        }
    };
    need(
        r.peak_pages * PAGE_SIZE <= r.memlock_end,
        format!(
            "peak {} pages above memlock {}",
            r.peak_pages, r.memlock_end
        ),
    );
    need(
        r.pinned_at_end == 0,
        format!("{} bytes pinned after teardown", r.pinned_at_end),
    );
    need(
        r.pages_pinned == r.pages_unpinned,
        format!(
            "{} pages pinned, {} unpinned",
            r.pages_pinned, r.pages_unpinned
        ),
    );
    need(
        r.records_collected == r.records_written,
        format!(
            "{} records written, {} collected",
            r.records_written, r.records_collected
        ),
    );
    // Each task's session stops with PMSCR_EL1.E0SPE clear, an ISB and a
    // drain before its buffer is disabled: no switch loses a record.
    need(
        r.samples_lost == 0,
        format!("{} samples lost", r.samples_lost),
    );
    // A buffer and its stage-1 tables: at most 4 table pages for a 1 MiB
    // buffer in one 2 MiB block of VA.
    let one_pin = o.buffer_bytes / PAGE_SIZE + 4;
    match policy {
        PinPolicy::OnEnable => {
            need(
                r.peak_pages <= one_pin,
                format!("v6 peak {} > one buffer", r.peak_pages),
            );
            need(r.pin_ops >= r.switches, "v6 pins at every enable".into());
        }
        PinPolicy::PinAll => {
            need(
                r.pin_ops == 1,
                format!("pin-all pinned {} times", r.pin_ops),
            );
            need(r.blackout_windows == 0, "pin-all has a blackout".into());
            need(
                r.peak_pages == o.ram_bytes / PAGE_SIZE,
                "pin-all pins all RAM".into(),
            );
        }
        PinPolicy::Cache => {
            if r.memlock_start >= 2 * one_pin * PAGE_SIZE {
                need(
                    r.pin_ops == 2 && r.evictions == 0,
                    format!("cache with room for both pinned {} times", r.pin_ops),
                );
            }
            need(
                r.pin_ops + r.cache_hits >= r.switches,
                "cache: every enable is a pin or a hit".into(),
            );
        }
    }
    v
}

/// Runs every design.
pub fn run(o: &Options) -> Result<PinningReport> {
    let m = PinCostModel::default();
    let mut rows = Vec::new();
    let mut violations = Vec::new();
    for (policy, memlock, name) in designs(o) {
        let row = run_design(o, policy, memlock, &name)?;
        violations.extend(check(o, policy, &row));
        rows.push(row);
    }
    Ok(PinningReport {
        options: *o,
        cost_model: CostModelFigures {
            pin_call: m.pin_call,
            pin_page: m.pin_page,
            unpin_call: m.unpin_call,
            unpin_page: m.unpin_page,
        },
        rows,
        violations,
    })
}

fn mib(b: u64) -> String {
    if b % (1 << 20) == 0 {
        format!("{} MiB", b >> 20)
    } else {
        format!("{:.1} MiB", b as f64 / (1 << 20) as f64)
    }
}

/// The report as a table a reviewer can paste into a mail (designs as
/// columns, at most 80 characters wide with four designs).
pub fn render(rep: &PinningReport) -> String {
    let o = &rep.options;
    let us = |c: u64| c as f64 / o.clock_mhz as f64;
    let mut s = format!(
        "Guest SPE buffer pinning, per-task perf record in the guest\n\
         (hyperprof run --scenario pinning --seed {} --ops {})\n\n\
         2 tasks x {} ops, a context switch every {} ops, each task's own\n\
         {} buffer enabled at sched-in and disabled at sched-out; guest RAM\n\
         {}, RLIMIT_MEMLOCK {} at start (the VMM raises it after an Rlimit\n\
         exit); SPE interval {}.\n\
         Cost model (cycles): pin {} + {}/page, unpin {} + {}/page; {} MHz.\n\n",
        o.seed,
        o.ops,
        o.ops,
        o.slice,
        mib(o.buffer_bytes),
        mib(o.ram_bytes),
        mib(o.memlock_bytes),
        o.interval,
        rep.cost_model.pin_call,
        rep.cost_model.pin_page,
        rep.cost_model.unpin_call,
        rep.cost_model.unpin_page,
        o.clock_mhz,
    );
    let w = 13;
    let mut line = |label: &str, f: &dyn Fn(&Row) -> String| {
        s += &format!("{label:<21}");
        for r in &rep.rows {
            s += &format!(" {:>w$}", f(r));
        }
        s += "\n";
    };
    line("", &|r| {
        r.design.split(" (").next().unwrap_or("").to_string()
    });
    line("", &|r| {
        r.design
            .split_once(" (")
            .map(|(_, b)| format!("({b}"))
            .unwrap_or_default()
    });
    line("context switches", &|r| r.switches.to_string());
    line("  per second", &|r| {
        format!("{:.0}", r.switches as f64 * 1e6 / us(r.cycles).max(1e-9))
    });
    line("pin ops", &|r| r.pin_ops.to_string());
    line("  pages pinned", &|r| r.pages_pinned.to_string());
    line("unpin ops", &|r| r.unpin_ops.to_string());
    line("  pages unpinned", &|r| r.pages_unpinned.to_string());
    line("cache hits/evictions", &|r| {
        format!("{}/{}", r.cache_hits, r.evictions)
    });
    line("pages pinned, peak", &|r| r.peak_pages.to_string());
    line("pages pinned, mean", &|r| format!("{:.1}", r.mean_pages));
    line("pin cycles", &|r| r.pin_cycles.to_string());
    line("unpin cycles", &|r| r.unpin_cycles.to_string());
    line("pin+unpin per switch", &|r| {
        format!(
            "{:.2} us",
            us(r.pin_cycles + r.unpin_cycles) / r.switches.max(1) as f64
        )
    });
    line("  % of guest time", &|r| {
        format!(
            "{:.2}%",
            100.0 * (r.pin_cycles + r.unpin_cycles) as f64 / r.cycles.max(1) as f64
        )
    });
    line("blackout windows", &|r| r.blackout_windows.to_string());
    line("  total", &|r| format!("{:.0} us", us(r.blackout_cycles)));
    line("  samples delayed", &|r| {
        format!("{:.0}", r.samples_in_blackout)
    });
    line("samples taken", &|r| r.sampled.to_string());
    line("samples lost", &|r| r.samples_lost.to_string());
    line("memlock failures", &|r| r.memlock_failures.to_string());
    line("memlock needed", &|r| mib(r.peak_pages * PAGE_SIZE));
    line("pinned after teardown", &|r| r.pinned_at_end.to_string());
    s += "\nBlackout: the guest enabled its buffer, the hypervisor is still pinning it\n\
          (the vCPU waits, so its samples are delayed, not lost). Pin-all pins guest\n\
          RAM once before the first run (its cost per switch is that one pin and\n\
          unpin spread over the run) and needs RLIMIT_MEMLOCK >= guest RAM.\n";
    if rep.violations.is_empty() {
        s += "Invariants: memlock never exceeded, nothing pinned after teardown, every\n\
              record written collected, no sample lost: hold.\n";
    } else {
        for v in &rep.violations {
            s += &format!("VIOLATED: {v}\n");
        }
    }
    s
}
