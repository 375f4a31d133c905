//! The planted-bug check (STYLE.md rule 21): each safety rule of horde's cores, switched off
//! alone (`horde::core::planted`), must make the simulator report a violation within a
//! bounded number of seeds of the schedule aimed at it. A rule whose bug no schedule catches
//! is unproven; the two the simulator cannot reach are listed in `horde::core::planted`
//! with the reason (another rule shadows each).
//!
//! Each test runs on its own thread (the switch is per thread), so the bugs never mix.

use horde::core::planted::{self, Bug};
use sim::schedule::{Profile, random, scenario};

/// Runs `schedule` with `bug` planted from seed 0 until a seed breaks an invariant, at most
/// `bound` seeds; fails if none does. Returns the seeds it took.
fn caught(bug: Bug, schedule: &str, bound: u64) -> u64 {
    planted::plant(Some(bug));
    for seed in 0..bound {
        let plan = match schedule {
            "random-faults" => random(seed, Profile::Faults),
            "random-planned" => random(seed, Profile::Planned),
            name => scenario(name, seed).expect("a known scenario"),
        };
        let outcome = sim::run(seed, &plan, false);
        if !outcome.passed() {
            planted::plant(None);
            println!(
                "{}: caught by {schedule} at seed {seed} ({} seeds): {}",
                bug.name(),
                seed + 1,
                outcome.violations.first().cloned().unwrap_or_default()
            );
            return seed + 1;
        }
    }
    planted::plant(None);
    panic!(
        "planted bug `{}` ran {bound} seeds of {schedule} without a violation: the simulator no \
         longer sees the rule it breaks (replay one: cargo run -p sim --release -- --planted {} \
         --schedule {schedule})",
        bug.name(),
        bug.name()
    );
}

#[test]
fn a_child_answering_before_its_backup_acknowledged_is_caught() {
    caught(Bug::AnswerBeforeBackup, "frozen-owner", 10);
}

#[test]
fn a_failover_on_one_vote_is_caught() {
    caught(Bug::FailoverOnOneVote, "cut-off-owner", 10);
}

#[test]
fn a_child_ignoring_its_lease_is_caught() {
    caught(Bug::IgnoreLease, "cut-off-owner", 10);
}

#[test]
fn a_lease_believed_twice_as_long_is_caught() {
    caught(Bug::LeaseTwiceAsLong, "cut-off-owner", 40);
}

#[test]
fn a_vote_before_the_granted_lease_ran_out_is_caught() {
    caught(Bug::VoteBeforeLeaseEnds, "cut-off-owner", 40);
}

#[test]
fn a_move_dropping_the_inputs_buffered_while_frozen_is_caught() {
    // Only fault-free schedules make an input that waited for its client's retry a
    // violation (no_retries).
    caught(Bug::DropBufferedOnMove, "random-planned", 80);
}

#[test]
fn a_tombstone_collected_before_every_member_holds_it_is_caught() {
    caught(Bug::CollectBeforeAllAcked, "removals-cut-off", 10);
}

#[test]
fn a_move_accepted_before_the_targets_backup_holds_it_is_caught() {
    caught(Bug::AcceptMoveBeforeBackup, "move-then-crash", 30);
}
