//! The schedule of `hyperprof boot`: which vCPUs run in a round, and on
//! which physical CPUs.
//!
//! Time-slice round-robin over the vCPUs that can run, as a host's
//! scheduler gives vCPU threads their turns: each round runs up to one
//! vCPU per physical CPU for a slice, continuing the rotation where the
//! last round stopped, so every runnable vCPU gets a slice before any gets
//! a second one. A vCPU's CPU is its index plus the number of full passes
//! over the runnable vCPUs so far (laps), modulo the CPUs; when another
//! vCPU of the round already has that CPU it takes the next free one. The
//! shift at every lap moves vCPUs between physical CPUs even when there
//! are as many CPUs as vCPUs. The schedule depends on nothing but the
//! round number and which vCPUs can run: two runs of the same guest are
//! scheduled alike.

/// Where the vCPUs of round `round` run: `(vCPU, physical CPU)` pairs,
/// one per CPU at most, for the `runnable` vCPUs (their indices, in the
/// VM's order) on `cpus` physical CPUs.
pub(crate) fn placements(round: u64, cpus: usize, runnable: &[usize]) -> Vec<(usize, usize)> {
    let n = runnable.len() as u64;
    if n == 0 || cpus == 0 {
        return Vec::new();
    }
    let k = (cpus as u64).min(n);
    // Slices handed out before this round, and the laps they made.
    let first = round.wrapping_mul(k);
    let lap = first / n;
    let mut taken = vec![false; cpus];
    (0..k)
        .map(|j| {
            let vcpu = runnable[((first + j) % n) as usize];
            let preferred = ((vcpu as u64 + lap) % cpus as u64) as usize;
            // At most k - 1 <= cpus - 1 CPUs are taken: one is free.
            let cpu = (0..cpus)
                .map(|d| (preferred + d) % cpus)
                .find(|&c| !taken[c])
                .unwrap_or(preferred);
            taken[cpu] = true;
            (vcpu, cpu)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_vcpu_alternates_between_two_cpus() {
        let cpus: Vec<usize> = (0..4).map(|r| placements(r, 2, &[0])[0].1).collect();
        assert_eq!(cpus, [0, 1, 0, 1]);
    }

    #[test]
    fn each_round_uses_each_cpu_at_most_once_and_every_vcpu_gets_its_turn() {
        for cpus in 1..5 {
            for n in 1..7 {
                let runnable: Vec<usize> = (0..n).collect();
                let mut turns = vec![0u64; n];
                let mut seen_on = vec![std::collections::BTreeSet::new(); n];
                for r in 0..(n * cpus * 4) as u64 {
                    let p = placements(r, cpus, &runnable);
                    assert_eq!(p.len(), cpus.min(n));
                    let mut used = vec![false; cpus];
                    for &(v, c) in &p {
                        assert!(!used[c], "CPU {c} twice in round {r}");
                        used[c] = true;
                        turns[v] += 1;
                        seen_on[v].insert(c);
                    }
                }
                let (lo, hi) = (turns.iter().min(), turns.iter().max());
                assert!(
                    hi.unwrap() - lo.unwrap() <= 1,
                    "{cpus} CPUs, {n} vCPUs: {turns:?}"
                );
                if cpus > 1 {
                    // Every vCPU moves.
                    assert!(
                        seen_on.iter().all(|s| s.len() > 1),
                        "{cpus} CPUs, {n} vCPUs"
                    );
                }
            }
        }
    }

    #[test]
    fn four_vcpus_on_two_cpus_take_turns_and_move() {
        let all = [0, 1, 2, 3];
        assert_eq!(placements(0, 2, &all), [(0, 0), (1, 1)]);
        assert_eq!(placements(1, 2, &all), [(2, 0), (3, 1)]);
        assert_eq!(placements(2, 2, &all), [(0, 1), (1, 0)]);
        // Only the runnable vCPUs are placed.
        assert_eq!(placements(0, 2, &[2]), [(2, 0)]);
        assert_eq!(placements(1, 2, &[2]), [(2, 1)]);
        assert!(placements(5, 2, &[]).is_empty());
    }
}
