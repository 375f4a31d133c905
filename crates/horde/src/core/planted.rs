//! Planted bugs: each safety rule of the cores, switched off one at a time, so the simulator
//! can show it catches the bug the rule prevents (a rule no planted bug can reach is either
//! redundant or unproven). Compiled in only with the `planted` feature (the simulator's); a
//! build without it, the binary's, has no switch at all: [`on`] is then `false` and the
//! branches it guards vanish.
//!
//! The switch is per thread (the simulator runs one world per thread), off unless
//! `plant` turned one bug on. `crates/sim/tests/planted.rs` runs each bug against the
//! schedule aimed at it and fails unless a violation shows within a bounded number of seeds.
//!
//! Three rules no schedule reaches yet, two because another rule shadows each (defence in
//! depth, kept; their bugs stay here so the day a change removes the shadow, a schedule can
//! show it), one because no schedule makes its fault yet. The planted suite proves each at
//! the core instead, by the step it exists for (a late replica of an older epoch; an
//! acknowledgement reaching a copy that lost its lease; a hello that is no receipt reaching a
//! leaving member): the check passes with the rule and fails with its bug.
//! - [`Bug::AcceptOlderEpoch`]: a backup refuses a replica of an older epoch than it knows.
//!   A copy sends replicas only under its lease, which ends before a newer epoch can exist
//!   (a failover waits for the lease; a move freezes the copy first, and what it sent
//!   before is at most the moved state, which the `(epoch, seq)` order keeps). The one copy
//!   that outlives its lease is one whose clock stopped (a frozen virtual machine): its old
//!   sessions were closed (their messages are dropped), its backups suspect it (`Fenced`),
//!   and on a new session a backup sends its registry before it reads anything the copy
//!   sends, so the copy learns it was superseded before any acknowledgement reaches it.
//! - [`Bug::EventsWithoutLease`]: a copy emits events only with its lease. Events leave
//!   only after the backups acknowledged the change, so the change is durable: a newer copy
//!   starts from a replica that holds it, and the same event number means the same event
//!   (E1, E2) whoever emits it.
//! - [`Bug::FarewellAnyHello`]: a leaving member exits only once every member acknowledged
//!   the very hello that said it left (protocol 3). The fault it guards against is a farewell
//!   lost with the exiting process's send queue while a hello the peer sent for another
//!   reason crossed it. No schedule has made that happen yet (a peer answers a farewell with
//!   a hello of its own, which the old rule rightly took as the receipt; 300 seeds each of
//!   `drain-then-crash`, `membership-churn` and `random-planned` with the bug planted pass).

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
    /// `replicas`: a backup keeps acknowledging an owner's replicas of a name after it gave
    /// its replica of that name to a failover.
    AckAfterFetch,
    /// `registry`: a failover restarts a child at the next epoch, not the next term, so a copy
    /// the old owner raised alone (cut off) wins the merge on heal.
    FailoverInOldTerm,
    /// `failover`: a failover restarts a child once the members it asked answered, ignoring
    /// members the answers name that it has not heard of.
    FailoverSkipsUnknown,
    /// `moves`: a leaving member takes any hello from a member as its farewell's receipt, not
    /// only that member's `FarewellAck` of the very hello that said it left.
    FarewellAnyHello,
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
            Bug::AckAfterFetch => "ack-after-fetch",
            Bug::FailoverInOldTerm => "failover-in-old-term",
            Bug::FailoverSkipsUnknown => "failover-skips-unknown",
            Bug::FarewellAnyHello => "farewell-any-hello",
        }
    }

    /// The bug named `name` ([`Bug::name`]).
    pub fn parse(name: &str) -> Option<Bug> {
        Bug::ALL.into_iter().find(|b| b.name() == name)
    }

    /// Every planted bug.
    pub const ALL: [Bug; 14] = [
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
        Bug::AckAfterFetch,
        Bug::FailoverInOldTerm,
        Bug::FailoverSkipsUnknown,
        Bug::FarewellAnyHello,
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
