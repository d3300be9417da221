//! `hyperprof explore`: a model checker for the world switch (VHE SPE and
//! PMU, nVHE SPE).
//!
//! Every system-register access and barrier the hypervisor makes on the
//! [`Cpu`](hyperprof_arch::Cpu) boundary during vCPU load and put is a
//! point where, unless interrupts are masked there, the host's PMBIRQ
//! handler (the real driver of `hyperprof-guest`, reading and writing the
//! same registers) may run: a probe on each PE
//! ([`hyperprof_sim::probe`]) offers that event wherever PMBIRQ is
//! asserted and the code has interrupts enabled. Between the guest's runs
//! the vCPU thread is preemptible: it may be preempted (put, then loaded on
//! the same CPU) or migrated (loaded on the other CPU). Entry and exit run
//! with interrupts masked, as KVM's run loop does, so they offer nothing;
//! the guest's own interrupt becomes pending when its buffer fills (the
//! [`Variant`]s with a one-page guest buffer). In the PMU variants the host
//! also samples its kernel's cycles on its reserved counters and the guest
//! counts and samples on a partitioned PMU: the host's overflow handler is
//! an event wherever its line is asserted, and every count and overflow
//! must equal the same schedule's without the injected handlers.
//!
//! The search is stateless and exhaustive up to a bound on the number of
//! injected events, breadth first, so the first violation found has the
//! fewest events and the earliest points: a minimal counterexample. Events
//! are guarded (a handler only while its line is asserted and unmasked, a
//! preemption only where the thread is preemptible), which is the
//! reduction that keeps bound 2 to a few hundred schedules per variant.
//! After each schedule everything runs to its end and DESIGN.md's
//! invariants are checked: isolation (records by Exception level, the
//! buffer's owner after put), conservation (every byte the units wrote is
//! collected once), interrupts (every buffer-full event taken once by its
//! owner, none spurious, no fault, the guest not stuck).
//!
//! [`Mutation`]s are variants of the switch applied by the probe (an
//! access left out, or the model's interrupt mask moved); the unmutated
//! code is the hypervisor's own.

use std::fmt;
use std::time::{Duration, Instant};

mod mutation;
mod probe;
mod trace;
mod world;

pub use mutation::Mutation;

/// Where a schedule is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Setting up, or finishing: no injection.
    Setup,
    /// vcpu_load.
    Load,
    /// KVM_RUN (entry, guest, exit: interrupts masked in the hypervisor).
    Run,
    /// Between runs: the thread is preemptible.
    Slot,
    /// vcpu_put.
    Put,
    /// Everything run to its end.
    Final,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Setup => "setup",
            Phase::Load => "load",
            Phase::Run => "run",
            Phase::Slot => "slot",
            Phase::Put => "put",
            Phase::Final => "final",
        })
    }
}

/// An injected event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Event {
    /// The host's PMBIRQ handler runs.
    HostIrq,
    /// The host's PMU overflow handler runs.
    HostPmuIrq,
    /// The vCPU thread is preempted: put, then load on the same CPU.
    Preempt,
    /// The vCPU thread migrates: put, then load on the other CPU.
    Migrate,
}

/// One injected event at one point of a schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Choice {
    /// The point (the probe's count of accesses in load and put, and of
    /// preemption points).
    pub point: u64,
    /// The event.
    pub event: Event,
}

/// The starting states the schedules explore.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Variant {
    /// The host's buffer on CPU 0 is full and its PMBIRQ pending when the
    /// vCPU is loaded there.
    pub host_full_at_load: bool,
    /// The guest's buffer is one page: it fills during a run, raising the
    /// guest's own interrupt.
    pub guest_fills: bool,
    /// The host is nVHE (its kernel at EL1, the SPE switch at entry and
    /// exit).
    pub nvhe: bool,
    /// The PMU too (VHE only): the host samples its kernel's cycles on its
    /// reserved counters, the guest counts and samples on a partitioned
    /// PMU, and each PMU's overflow interrupt is an event.
    pub pmu: bool,
}

impl Variant {
    /// The starting states: on a VHE host four with SPE alone and four
    /// with the PMU too; on an nVHE host (`nvhe`) the four with SPE alone.
    pub fn all(nvhe: bool) -> Vec<Variant> {
        let pmus: &[bool] = if nvhe { &[false] } else { &[false, true] };
        let mut all = Vec::new();
        for &pmu in pmus {
            for (host_full_at_load, guest_fills) in
                [(false, false), (true, false), (false, true), (true, true)]
            {
                all.push(Variant {
                    host_full_at_load,
                    guest_fills,
                    nvhe,
                    pmu,
                });
            }
        }
        all
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} host{}, host buffer {} at load, guest buffer {}",
            if self.nvhe { "nVHE" } else { "VHE" },
            if self.pmu { " with PMUs" } else { "" },
            if self.host_full_at_load {
                "full (PMBIRQ pending)"
            } else {
                "not full"
            },
            if self.guest_fills { "filling" } else { "roomy" }
        )
    }
}

/// A schedule that broke an invariant.
#[derive(Clone, Debug)]
pub struct Counterexample {
    /// Its starting state.
    pub variant: Variant,
    /// The injected events.
    pub script: Vec<Choice>,
    /// What broke.
    pub violations: Vec<String>,
    /// The accesses of load and put, the injected events among them.
    pub trace: Vec<String>,
}

impl fmt::Display for Counterexample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "counterexample ({}):", self.variant)?;
        for c in &self.script {
            writeln!(f, "  inject {:?} at point #{}", c.event, c.point)?;
        }
        writeln!(f, "trace:")?;
        for l in &self.trace {
            writeln!(f, "  {l}")?;
        }
        writeln!(f, "broken:")?;
        for v in &self.violations {
            writeln!(f, "  - {v}")?;
        }
        Ok(())
    }
}

/// What an exploration found.
#[derive(Clone, Debug)]
pub struct Report {
    /// On an nVHE host.
    pub nvhe: bool,
    /// The mutation explored (`None`: the hypervisor as it is).
    pub mutation: Option<Mutation>,
    /// The bound on injected events.
    pub bound: usize,
    /// Schedules run.
    pub schedules: u64,
    /// Schedules that broke an invariant.
    pub failing: u64,
    /// The first (minimal) counterexample.
    pub counterexample: Option<Counterexample>,
    /// Wall time.
    pub elapsed: Duration,
}

/// Explores every schedule of every [`Variant`] with at most `bound`
/// injected events; stops at the first bound level that has a violation
/// (its first counterexample is minimal) unless `exhaustive`.
pub fn explore(mutation: Option<Mutation>, bound: usize, exhaustive: bool) -> Report {
    explore_host(false, mutation, bound, exhaustive)
}

/// [`explore`] on a VHE host or (`nvhe`) an nVHE one. The mutations are of
/// the VHE load and put; on an nVHE host those hold no SPE state.
pub fn explore_host(
    nvhe: bool,
    mutation: Option<Mutation>,
    bound: usize,
    exhaustive: bool,
) -> Report {
    explore_variants(&Variant::all(nvhe), mutation, bound, exhaustive)
}

/// [`explore`] from the given starting states only (all on one kind of
/// host).
pub fn explore_variants(
    variants: &[Variant],
    mutation: Option<Mutation>,
    bound: usize,
    exhaustive: bool,
) -> Report {
    let nvhe = variants.first().is_some_and(|v| v.nvhe);
    let start = Instant::now();
    let mut schedules = 0;
    let mut failing = 0;
    let mut first: Option<Counterexample> = None;
    let mut references = std::collections::HashMap::new();
    // Breadth first over the number of events, for every variant.
    let mut level: Vec<(Variant, Vec<Choice>)> =
        variants.iter().map(|&v| (v, Vec::new())).collect();
    for depth in 0..=bound {
        let mut next = Vec::new();
        for (v, script) in level {
            let mut out = world::run(v, mutation, &script, false);
            // The PMU counts must not depend on when the handlers ran: the
            // same schedule without them (the interrupts taken at the end)
            // is the reference.
            if v.pmu {
                let key: Vec<Choice> = script
                    .iter()
                    .copied()
                    .filter(|c| matches!(c.event, Event::Preempt | Event::Migrate))
                    .collect();
                let reference = references
                    .entry((v, key.clone()))
                    .or_insert_with(|| world::run(v, None, &key, false).counts)
                    .clone();
                if out.counts != reference {
                    out.violations.push(format!(
                        "interrupts: the PMU counts and overflows differ from the schedule without the \
                         injected handlers: {:?} instead of {:?}",
                        out.counts, reference
                    ));
                }
            }
            schedules += 1;
            if !out.violations.is_empty() {
                failing += 1;
                if first.is_none() {
                    let traced = world::run(v, mutation, &script, true);
                    first = Some(Counterexample {
                        variant: v,
                        script: script.clone(),
                        violations: out.violations,
                        trace: traced.trace,
                    });
                }
                // A failing schedule's extensions fail for the same reason.
                continue;
            }
            if depth == bound {
                continue;
            }
            let after = script.last().map(|c| c.point);
            for &(point, event) in &out.candidates {
                if after.is_some_and(|a| point <= a) {
                    continue;
                }
                let mut s = script.clone();
                s.push(Choice { point, event });
                next.push((v, s));
            }
        }
        if first.is_some() && !exhaustive {
            break;
        }
        level = next;
    }
    Report {
        nvhe,
        mutation,
        bound,
        schedules,
        failing,
        counterexample: first,
        elapsed: start.elapsed(),
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = self
            .mutation
            .map_or("the hypervisor as it is", Mutation::name);
        writeln!(
            f,
            "explore {} world switch, {what}: bound {}, {} schedule(s) in {:.2} s, {} violating",
            if self.nvhe { "nVHE" } else { "VHE" },
            self.bound,
            self.schedules,
            self.elapsed.as_secs_f64(),
            self.failing
        )?;
        match (
            &self.counterexample,
            self.mutation.and_then(Mutation::harmless_because),
        ) {
            (Some(c), _) => write!(f, "{c}"),
            (None, Some(why)) => writeln!(f, "no violation: harmless here because {why}"),
            (None, None) => writeln!(f, "no violation: every invariant held in every schedule"),
        }
    }
}

/// The hypervisor as it is, then every mutation of the catalogue.
pub fn catalogue(bound: usize) -> Vec<Report> {
    catalogue_of(&Variant::all(false), bound)
}

/// [`catalogue`] from the given starting states only.
pub fn catalogue_of(variants: &[Variant], bound: usize) -> Vec<Report> {
    std::iter::once(None)
        .chain(Mutation::ALL.into_iter().map(Some))
        .map(|m| explore_variants(variants, m, bound, false))
        .collect()
}

/// Whether a catalogue run came out as it must: no violation without a
/// mutation, a counterexample for every mutation not known to be harmless,
/// and none for the harmless ones.
pub fn catalogue_holds(reports: &[Report]) -> bool {
    reports.iter().all(|r| match r.mutation {
        None => r.counterexample.is_none(),
        Some(m) => r.counterexample.is_some() != m.harmless_because().is_some(),
    })
}

/// One line per report: what was explored, how much, and the verdict.
pub fn summary(reports: &[Report]) -> String {
    let mut s = format!(
        "{:<32} {:>9} {:>8}  verdict\n",
        "variant of the switch", "schedules", "time"
    );
    for r in reports {
        let verdict = match (r.mutation, &r.counterexample) {
            (None, None) => "passes".to_string(),
            (None, Some(_)) => "VIOLATION".to_string(),
            (Some(_), Some(c)) => format!("caught with {} event(s)", c.script.len()),
            (Some(m), None) if m.harmless_because().is_some() => "harmless (see why)".to_string(),
            (Some(_), None) => "NOT CAUGHT".to_string(),
        };
        s += &format!(
            "{:<32} {:>9} {:>7.2}s  {verdict}\n",
            r.mutation.map_or("(unmutated)", Mutation::name),
            r.schedules,
            r.elapsed.as_secs_f64()
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pmu_variants_have_counts_to_compare() {
        // The differential check is not vacuous: guest and host counted
        // and overflowed, and the same schedule gives the same figures.
        let v = Variant::all(false).into_iter().find(|v| v.pmu).unwrap();
        let a = world::run(v, None, &[], false);
        assert!(a.violations.is_empty(), "{:?}", a.violations);
        // Guest: two totals and two overflow counts; host: the same per CPU.
        assert_eq!(a.counts.len(), 4 + 2 * 4, "{:?}", a.counts);
        assert!(a.counts[0] > 0 && a.counts[3] > 0, "{:?}", a.counts);
        assert!(a.counts[4..].iter().any(|&c| c > 0), "{:?}", a.counts);
        let b = world::run(v, None, &[], false);
        assert_eq!(a.counts, b.counts);
        // A migration changes where the guest runs, not what it counts.
        let slot = a
            .candidates
            .iter()
            .find(|c| c.1 == Event::Migrate)
            .map(|c| c.0)
            .unwrap();
        let m = world::run(
            v,
            None,
            &[Choice {
                point: slot,
                event: Event::Migrate,
            }],
            false,
        );
        assert!(m.violations.is_empty(), "{:?}", m.violations);
        assert_eq!(m.counts[..4], a.counts[..4]);
    }
}
