//! Planted bugs: each safety rule of the cores, switched off one at a time, so the simulator
//! can show it catches the bug the rule prevents (a rule no planted bug can reach is either
//! redundant or unproven). Compiled in only with the `planted` feature (the simulator's); a
//! build without it, the binary's, has no switch at all: [`on`] is then `false` and the
//! branches it guards vanish.
//!
//! The switch is per thread (the simulator runs one world per thread), off unless
//! [`plant`] turned one bug on.

/// A rule switched off (see each variant for the rule and where it lives).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Bug {
    /// `child`: answers and events leave at once, before the backup acknowledged the change.
    AnswerBeforeBackup,
    /// `quorum`: a member is dead on one vote, not when the voters leave no majority.
    FailoverOnOneVote,
    /// `child`: the child applies messages and answers without the node's quorum lease.
    IgnoreLease,
    /// `quorum`: a lease is believed to run twice as long as it was granted for.
    LeaseTwiceAsLong,
    /// `replicas`: a backup takes a replica of an older epoch than one it knows (no fencing).
    AcceptOlderEpoch,
    /// `quorum`: a member votes another dead as soon as it suspects it, without waiting for
    /// the last lease it granted it to run out.
    VoteBeforeLeaseEnds,
    /// `child`: a move forwards nothing of what it buffered while frozen.
    DropBufferedOnMove,
    /// `tombstones`: a tombstone is collected without waiting for every member to hold it.
    CollectBeforeAllAcked,
    /// `moves`: a target accepts an offered child before its own backup holds the state.
    AcceptMoveBeforeBackup,
    /// `child`: events go to subscribers even from a copy without the lease.
    EventsWithoutLease,
}

impl Bug {
    /// Its name, as the simulator's `--planted` takes it (kebab case).
    pub fn name(self) -> &'static str {
        match self {
            Bug::AnswerBeforeBackup => "answer-before-backup",
            Bug::FailoverOnOneVote => "failover-on-one-vote",
            Bug::IgnoreLease => "ignore-lease",
            Bug::LeaseTwiceAsLong => "lease-twice-as-long",
            Bug::AcceptOlderEpoch => "accept-older-epoch",
            Bug::VoteBeforeLeaseEnds => "vote-before-lease-ends",
            Bug::DropBufferedOnMove => "drop-buffered-on-move",
            Bug::CollectBeforeAllAcked => "collect-before-all-acked",
            Bug::AcceptMoveBeforeBackup => "accept-move-before-backup",
            Bug::EventsWithoutLease => "events-without-lease",
        }
    }

    /// The bug named `name` ([`Bug::name`]).
    pub fn parse(name: &str) -> Option<Bug> {
        Bug::ALL.into_iter().find(|b| b.name() == name)
    }

    /// Every planted bug.
    pub const ALL: [Bug; 10] = [
        Bug::AnswerBeforeBackup,
        Bug::FailoverOnOneVote,
        Bug::IgnoreLease,
        Bug::LeaseTwiceAsLong,
        Bug::AcceptOlderEpoch,
        Bug::VoteBeforeLeaseEnds,
        Bug::DropBufferedOnMove,
        Bug::CollectBeforeAllAcked,
        Bug::AcceptMoveBeforeBackup,
        Bug::EventsWithoutLease,
    ];
}

#[cfg(feature = "planted")]
thread_local! {
    static PLANTED: std::cell::Cell<Option<Bug>> = const { std::cell::Cell::new(None) };
}

/// Turns `bug` on for this thread (`None`: every rule on again).
#[cfg(feature = "planted")]
pub fn plant(bug: Option<Bug>) {
    PLANTED.with(|p| p.set(bug));
}

/// True when `bug` is planted on this thread.
#[inline]
pub fn on(bug: Bug) -> bool {
    #[cfg(feature = "planted")]
    {
        PLANTED.with(|p| p.get() == Some(bug))
    }
    #[cfg(not(feature = "planted"))]
    {
        let _ = bug;
        false
    }
}
