//! Random schedules of 3 to 7 nodes, each checked against S1-S5 after every step and at the
//! end. A failure prints the violations, the command that replays the seed and the trace's
//! tail.

use sim::schedule::{Profile, random};

/// Runs `count` seeds from `from` and fails with the first broken one's report.
fn seeds(profile: Profile, from: u64, count: u64) {
    for seed in from..from + count {
        let plan = random(seed, profile);
        let outcome = sim::run(seed, &plan, false);
        if !outcome.passed() {
            let traced = sim::run(seed, &plan, true);
            panic!("{}", sim::report(&traced));
        }
    }
}

#[test]
fn planned_schedules_hold_every_invariant() {
    // Joins, rolling updates v1 -> v2 (start-first and restarts of the same name), drains.
    seeds(Profile::Planned, 0, 120);
}

// Crashes, restarts (some with the clock behind, some under a new name), pauses, partitions,
// flaps, rollbacks, one at a time, on top of the planned path: 500 seeds in two halves (the
// test harness runs them side by side; `cargo run --release -p sim -- --schedule
// random-faults --seeds 10000` runs ten thousand).

#[test]
fn fault_schedules_hold_every_invariant() {
    seeds(Profile::Faults, 0, 250);
}

#[test]
fn more_fault_schedules_hold_every_invariant() {
    seeds(Profile::Faults, 250, 250);
}

#[test]
fn one_seed_replays_exactly() {
    for seed in [3, 17] {
        let plan = random(seed, Profile::Faults);
        let a = sim::run(seed, &plan, true);
        let b = sim::run(seed, &plan, true);
        assert_eq!(a.trace, b.trace, "seed {seed} did not replay the same");
        assert_eq!(a.violations, b.violations);
        assert!(a.trace.is_some_and(|t| t.len() > 100));
    }
}
