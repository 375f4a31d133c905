//! The quorum set, leases and death votes: who may answer, and when a member's children may
//! be restarted elsewhere.
//!
//! - **Quorum set**: the members that count (alive or draining, and dead ones until they are
//!   removed). Every member weighs 2; with an even count the lowest member id weighs 3 (the
//!   tie-breaker, as Pekko's keep-majority keeps the lowest address), so two disjoint sets
//!   can never both be a majority.
//! - **Lease**: a member answers for its children only while a majority of the quorum set
//!   granted its newest lease request; the lease runs from when the request was *sent*
//!   (Raft's leader lease), so it ends on the holder's clock before any granter's view of it.
//!   A member alone in its quorum set holds it alone.
//! - **Votes**: a member that suspects another (its link is down) stops granting it leases;
//!   once its last grant is older than the lease plus a drift margin, its vote that the other
//!   is dead is effective, and travels with its lease requests. A member is dead when the
//!   members that voted so leave no majority without them: every lease the dead one could
//!   still hold needs one of them, and they granted none that is still running. Only then
//!   are its children restarted, and only by a member that holds a lease itself (the
//!   majority side). A member seen again is granted again once it owns nothing any more.
//!
//! # Why no two copies answer, whatever the delays
//! The argument assumes nothing of how long a message takes or how long a process pauses;
//! only that every clock's *rate* stays within ρ of real time (its offset may be anything):
//! with the lease `L` (1 s by default) and [`DRIFT_MARGIN`] `M` (250 ms), ρ ≤ M / (2L + M),
//! 11% by default. The simulator draws rates 1% apart and also stops clocks outright (a
//! frozen virtual machine, outside the model: the checker notes what such a copy answers).
//! - *A lease ends before a vote against it counts.* A holder's lease runs from when it sent
//!   round `r` (its clock): at most `L / (1-ρ)` of real time after that send. A granter
//!   granted `r` after it was sent, and votes the holder dead only `L + M` after its last
//!   grant on its own clock: at least `(L + M) / (1+ρ)` of real time after the send.
//!   `L / (1-ρ) ≤ (L + M) / (1+ρ)` is the bound on ρ above. A delayed request or grant only
//!   moves the granter's clock reading later, never the holder's lease.
//!   Planted bugs: `lease-twice-as-long`, `vote-before-lease-ends`.
//! - *A vote counts only while its voter still keeps it.* Protocol 3: a vote answers one lease
//!   round and counts until that round's *sending* time plus [`VOTE_TRUST`] on the asker's
//!   clock, not from when it arrived, so a vote held up in the network expires as early as a
//!   prompt one. The voter grants the member again only [`READMIT_QUIET`] (`VOTE_TRUST + 2M`)
//!   after its last vote, on its own clock; the answer left after the round was sent, so the
//!   asker stops counting it first as long as `VOTE_TRUST / (1-ρ) ≤ READMIT_QUIET / (1+ρ)`
//!   (ρ ≤ 20%). (Protocol 2, 0.1.0's rule, counts a vote from its arrival, and needed it to
//!   arrive within `M`; it is used only while a 0.1.0 member is in the cluster.)
//! - *Dead takes a majority of voters.* The voters that leave no majority without them each
//!   refuse the dead member's lease from the vote on, so no lease it could hold now or later
//!   (one round needs a majority of the same set) is still running. Planted bug:
//!   `failover-on-one-vote`.
//! - *Only a lease holder answers, restarts or moves.* A copy applies and answers only under its
//!   member's lease (planted bug `ignore-lease`) and only once its backups acknowledged the
//!   change (`answer-before-backup`); a failover runs only on a member that holds a lease and
//!   waits for every member that may hold a replica. So the newer copy starts from every
//!   answered input, and the older one has stopped answering before it starts.
//! - *A replica given to a failover closes the door behind it* (for a clock that stopped,
//!   outside the bound on rates: a frozen virtual machine wakes believing in its lease). A
//!   member that answers a failover's fetch, and the failing-over member itself, refuse the
//!   owner's replicas of that epoch (`Fenced`) until the registry moves past it, for as long
//!   as the failover keeps asking (each fetch renews a 5 s fence; a failover called off
//!   because its owner came back in time stops asking, and the owner answers again). A backup
//!   reads the fetch and the owner's replicas in one order, so every change it acknowledged
//!   is in what it gave the failover, or was refused and never answered. Planted bug: `ack-after-fetch` (scenario
//!   `frozen-half-seen`; found as random fault schedule 1149).
//! - *A failover outranks whatever the old owner did alone.* Cut off, an owner can still raise
//!   a child's epoch where nobody hears it: an offer that goes unanswered thaws the child two
//!   epochs up, a crash restarts it in place one up. None of those copies answered anything
//!   (no lease), but the merge takes the higher epoch. So a failover starts a new *term*
//!   (`registry::failover_epoch`: the high 32 bits of the epoch), above any epoch the old owner
//!   can reach without a majority. Planted bug: `failover-in-old-term` (scenario
//!   `cut-off-mover`; found as random fault schedule 9128).
//! - *Quorum sets that differ.* Weights (2 each, the lowest member 3 with an even count) make
//!   two disjoint subsets of one set unable to both be majorities. Sets change only by a
//!   member's own hello (a join, a drain's farewell, acknowledged by every member with
//!   `FarewellAck`) or by a removal after a majority voted a member dead; a lease round counts
//!   grants against the set of the moment it is recomputed, and a grant is refused to a
//!   member outside the granter's set. A join: the new member holds no child until it is
//!   alive, and is a child's backup only once the owner heard its hello; a member that has
//!   not heard of it yet (its link stalled) may fail a child over, and asks only the members
//!   it knows for their replicas. Every answer names the members its sender knows
//!   ([`crate::protocol::Feature::FetchNamesMembers`]) and the restart waits for those too,
//!   so the new backup is asked as soon as any member that knows it answers. Planted bug:
//!   `failover-skips-unknown` (scenarios `join-behind-stall` and `membership-churn`, seed
//!   161). A drain: the leaving member is in every set until every member acknowledged its
//!   farewell, and it exits only after the children it accepted arrived and moved on. A
//!   removal: only of a member a majority voted dead, whose children are restarted first.
//!   What is left to the simulator's joins, drains and removals under faults, not argued
//!   here: a new member that only the child's owner has heard of when the owner is cut off
//!   (every link of the new member but one stalled at once); its replica then stays unasked.
//!   With a 0.1.0 member answering (no member list), a failover asks only the members it knows,
//!   as 0.1.0 does.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use discovery::NodeId;
use tracing::info;

use super::planted::{self, Bug};
use super::{Core, Effect};
use crate::membership::MemberStatus;
use crate::protocol::{Feature, Wire};

/// How often lease requests go out.
pub const LEASE_EVERY: Duration = Duration::from_millis(200);
/// What votes wait for beyond the lease: clock rates differ a little between machines.
pub const DRIFT_MARGIN: Duration = Duration::from_millis(250);

/// Leases and votes of one member.
#[derive(Debug)]
pub(super) struct Quorum {
    /// How long a lease runs from its request.
    pub lease: Duration,
    round: u64,
    /// Requests sent (round, when), oldest first; a few kept.
    sent: VecDeque<(u64, Instant)>,
    last_sent: Option<Instant>,
    /// Newest round each member granted, by name (with the run that granted it).
    grants: BTreeMap<String, (NodeId, u64)>,
    /// The lease runs until then.
    until: Option<Instant>,
    /// When this member last granted each member a lease.
    granted: BTreeMap<NodeId, Instant>,
    /// Members this member suspects (no more grants), since when.
    suspects: BTreeMap<NodeId, Instant>,
    /// Effective votes of others: voter name → (voter run, members it voted dead, when
    /// received). A vote is trusted for [`VOTE_TRUST`] after it arrived: a live voter repeats
    /// it with every lease request, and one that changed its mind stops.
    votes: BTreeMap<String, (NodeId, BTreeSet<NodeId>, Instant)>,
    /// When this member last told others it votes each member dead: it grants that member
    /// again only once the others stopped trusting that vote (see [`Quorum::readmit`]).
    voted_at: BTreeMap<NodeId, Instant>,
    /// Suspects found safe to grant again, waiting out [`READMIT_QUIET`]: no longer voted.
    readmitting: BTreeSet<NodeId>,
    /// Members this member removed from its quorum set, and when: still voted dead for a
    /// while, so that members that decided later can remove them too.
    removed: BTreeMap<NodeId, Instant>,
    /// Votes answered to this member's lease requests (protocol 3): voter name → (voter run,
    /// members it voted dead, the round it answered, until when the vote counts: the round's
    /// *sending* time plus [`VOTE_TRUST`], on this member's clock).
    answers: BTreeMap<String, (NodeId, BTreeSet<NodeId>, u64, Instant)>,
    /// Members that answer lease requests with their votes (they speak protocol 3): their
    /// votes count by the rounds they answer, and only so; the others' (protocol 2, release
    /// 0.1.0) by when they arrived, as that release does.
    pub round_voters: BTreeSet<NodeId>,
}

/// How long a vote received from another member counts (it repeats its votes every
/// [`LEASE_EVERY`]).
const VOTE_TRUST: Duration = Duration::from_millis(1000);
/// How long after it last voted a member dead a member waits before granting it again: the
/// others trust that vote up to [`VOTE_TRUST`] after it arrived, and it must not arrive to
/// find the member holding a lease from this one.
const READMIT_QUIET: Duration = Duration::from_millis(1000 + 2 * 250);

/// How long a removed member is still voted dead.
const REMOVED_VOTES: Duration = Duration::from_secs(300);

/// The quorum set and its weights.
#[derive(Debug, Clone)]
pub(super) struct Set {
    members: Vec<NodeId>,
}

impl Set {
    pub fn new(mut members: Vec<NodeId>) -> Self {
        members.sort();
        members.dedup();
        Set { members }
    }

    pub fn contains(&self, n: &NodeId) -> bool {
        self.members.binary_search(n).is_ok()
    }

    pub fn members(&self) -> &[NodeId] {
        &self.members
    }

    fn weight_of(&self, n: &NodeId) -> u64 {
        let tie = self.members.len().is_multiple_of(2) && self.members.first() == Some(n);
        if tie { 3 } else { 2 }
    }

    fn total(&self) -> u64 {
        self.members.iter().map(|m| self.weight_of(m)).sum()
    }

    /// True when the members of the set for which `pick` holds are a majority of it.
    pub fn majority(&self, pick: impl Fn(&NodeId) -> bool) -> bool {
        let w: u64 = self
            .members
            .iter()
            .filter(|m| pick(m))
            .map(|m| self.weight_of(m))
            .sum();
        2 * w > self.total()
    }
}

impl Quorum {
    pub fn new(lease: Duration) -> Self {
        Self {
            lease,
            round: 0,
            sent: VecDeque::new(),
            last_sent: None,
            grants: BTreeMap::new(),
            until: None,
            granted: BTreeMap::new(),
            suspects: BTreeMap::new(),
            votes: BTreeMap::new(),
            voted_at: BTreeMap::new(),
            readmitting: BTreeSet::new(),
            removed: BTreeMap::new(),
            answers: BTreeMap::new(),
            round_voters: BTreeSet::new(),
        }
    }

    /// The lease runs until then (`None`: none held).
    pub fn until(&self) -> Option<Instant> {
        self.until
    }

    /// True while the lease runs.
    pub fn valid(&self, now: Instant) -> bool {
        self.until.is_some_and(|u| now < u)
    }

    /// The next [`Quorum::request`] goes out at once, whenever the last one left.
    pub fn due_now(&mut self) {
        self.last_sent = None;
    }

    /// A new request is due: returns its round (and records when it was sent).
    pub fn request(&mut self, now: Instant) -> Option<u64> {
        if self
            .last_sent
            .is_some_and(|t| now.saturating_duration_since(t) < LEASE_EVERY)
        {
            return None;
        }
        self.round += 1;
        self.last_sent = Some(now);
        self.sent.push_back((self.round, now));
        while self.sent.len() > 16 {
            self.sent.pop_front();
        }
        Some(self.round)
    }

    /// A member granted round `round`.
    pub fn grant_received(&mut self, from: NodeId, round: u64) {
        let e = self
            .grants
            .entry(from.name.clone())
            .or_insert((from.clone(), 0));
        if e.0 != from {
            *e = (from, round);
        } else {
            e.1 = e.1.max(round);
        }
    }

    /// Works the lease out again from the grants and the quorum set (`me` included).
    pub fn recompute(&mut self, me: &NodeId, set: &Set, now: Instant) -> bool {
        let before = self.until;
        if !set.contains(me) {
            self.until = None;
        } else if set.members().len() == 1 {
            // Alone: its own majority.
            self.until = Some(now + self.lease);
        } else {
            let mut best = None;
            for (round, at) in self.sent.iter().rev() {
                let ok = set.majority(|m| {
                    m == me
                        || self
                            .grants
                            .get(&m.name)
                            .is_some_and(|(id, r)| id == m && r >= round)
                });
                if ok {
                    let lease = if planted::on(Bug::LeaseTwiceAsLong) {
                        self.lease * 2
                    } else {
                        self.lease
                    };
                    best = Some(*at + lease);
                    break;
                }
            }
            // A lease never shrinks by a recomputation: what was granted stays granted.
            self.until = match (best, self.until) {
                (Some(b), Some(u)) => Some(b.max(u)),
                (b, u) => b.or(u),
            };
        }
        self.until != before
    }

    /// Whether to grant `from` a lease (and records the grant).
    pub fn grant(&mut self, from: &NodeId, in_set: bool, now: Instant) -> bool {
        if !in_set || self.suspects.contains_key(from) {
            return false;
        }
        self.granted.insert(from.clone(), now);
        true
    }

    /// Records the votes another member answered to this member's request of `round`: they
    /// count until the round was sent plus [`VOTE_TRUST`] (a round too old to be remembered
    /// has nothing to count). The newest round answered wins.
    pub fn answer_received(&mut self, from: NodeId, round: u64, votes: Vec<NodeId>) {
        let Some((_, sent)) = self.sent.iter().find(|(r, _)| *r == round) else {
            return;
        };
        let until = *sent + VOTE_TRUST;
        let newer = self
            .answers
            .get(&from.name)
            .is_none_or(|(id, _, r, _)| *id != from || *r < round);
        if newer {
            self.answers.insert(
                from.name.clone(),
                (from, votes.into_iter().collect(), round, until),
            );
        }
    }

    /// Records another member's votes (protocol 2: carried by its own lease requests, and
    /// counted from when they arrived).
    pub fn votes_received(&mut self, from: NodeId, votes: Vec<NodeId>, now: Instant) {
        self.votes
            .insert(from.name.clone(), (from, votes.into_iter().collect(), now));
    }

    /// This member stops granting `node` (its link went down).
    pub fn suspect(&mut self, node: &NodeId, now: Instant) {
        self.suspects.entry(node.clone()).or_insert(now);
        self.readmitting.remove(node);
    }

    /// `node` is known only from another member's list (never connected to here): not
    /// granted until it connects, and voted dead only once a lease it could have got from
    /// this member before it learned of it would have run out, as for a member whose link
    /// went down. (Voting at once let a vote made in the instant between learning of a member
    /// and its hello outlive the hello at the other members: with one other vote, a member
    /// cut off right after a join restarted a live member's children.)
    pub fn suspect_learned(&mut self, node: &NodeId, now: Instant) {
        self.suspects
            .entry(node.clone())
            .or_insert(now + self.lease + DRIFT_MARGIN);
    }

    /// True while this member refuses `node`.
    pub fn suspects(&self, node: &NodeId) -> bool {
        self.suspects.contains_key(node)
    }

    /// Grants `node` again (it is back and owns nothing).
    /// Not before every vote this member sent against it stopped counting at the others
    /// ([`READMIT_QUIET`] after the last): false while it waits (asked again at the member's
    /// next lease request).
    pub fn readmit(&mut self, node: &NodeId, now: Instant) -> bool {
        if let Some(at) = self.voted_at.get(node) {
            if now.saturating_duration_since(*at) < READMIT_QUIET {
                // No more votes against it from now on; granted once the last ran out.
                self.readmitting.insert(node.clone());
                return false;
            }
            self.voted_at.remove(node);
        }
        self.readmitting.remove(node);
        self.suspects.remove(node).is_some()
    }

    /// `node` left the quorum set (a majority voted it dead and its children restarted): it
    /// stays voted dead a while longer, for the members that decide later.
    pub fn removed(&mut self, node: &NodeId, now: Instant) {
        self.forget(node);
        self.removed.insert(node.clone(), now);
    }

    /// Runs removed from the quorum set lately (dead and forgotten, or departed): they may
    /// come back as the same run (a dead one, after a heal) while they are remembered here.
    pub fn removed_runs(&self) -> impl Iterator<Item = &NodeId> {
        self.removed.keys()
    }

    /// `node` is back (it said hello): it counts again, and this member stops voting it dead
    /// for its removal.
    pub fn unremove(&mut self, node: &NodeId) {
        self.removed.remove(node);
    }

    /// Forgets everything about `node` (another run replaced it, or it left).
    pub fn forget(&mut self, node: &NodeId) {
        self.suspects.remove(node);
        self.granted.remove(node);
        if self
            .grants
            .get(&node.name)
            .is_some_and(|(id, _)| id == node)
        {
            self.grants.remove(&node.name);
        }
        if self
            .votes
            .get(&node.name)
            .is_some_and(|(id, _, _)| id == node)
        {
            self.votes.remove(&node.name);
        }
        for (_, (_, v, _)) in self.votes.iter_mut() {
            v.remove(node);
        }
        if self
            .answers
            .get(&node.name)
            .is_some_and(|(id, ..)| id == node)
        {
            self.answers.remove(&node.name);
        }
        for (_, (_, v, _, _)) in self.answers.iter_mut() {
            v.remove(node);
        }
        self.voted_at.remove(node);
        self.readmitting.remove(node);
    }

    /// This member's effective votes: suspects whose last grant is older than the lease plus
    /// the margin.
    pub fn my_votes(&mut self, now: Instant) -> Vec<NodeId> {
        self.removed
            .retain(|_, at| now.saturating_duration_since(*at) < REMOVED_VOTES);
        let votes: Vec<NodeId> = self
            .suspects
            .keys()
            .filter(|n| self.voted(n, now) && !self.readmitting.contains(*n))
            .chain(self.removed.keys())
            .cloned()
            .collect();
        for n in &votes {
            self.voted_at.insert(n.clone(), now);
        }
        // Only members still suspected or removed can be granted again; a removed one whose
        // votes expired is never asked about again: forget it (no entry per member ever lost).
        let (suspects, removed) = (&self.suspects, &self.removed);
        self.voted_at
            .retain(|n, _| suspects.contains_key(n) || removed.contains_key(n));
        votes
    }

    fn voted(&self, node: &NodeId, now: Instant) -> bool {
        let Some(since) = self.suspects.get(node) else {
            return false;
        };
        let from = match self.granted.get(node) {
            Some(_) if planted::on(Bug::VoteBeforeLeaseEnds) => *since,
            Some(g) => (*g + self.lease + DRIFT_MARGIN).max(*since),
            None => *since,
        };
        now >= from
    }

    /// True when `node` is dead: the members that voted so leave no majority without them.
    pub fn dead(&self, me: &NodeId, node: &NodeId, set: &Set, now: Instant) -> bool {
        if !set.contains(node) {
            // Not counted: the caller judges it by what it knows of it.
            return false;
        }
        let voted = |m: &NodeId| -> bool {
            if m == node {
                return false;
            }
            if m == me {
                return self.voted(node, now) && !self.readmitting.contains(node);
            }
            if self.round_voters.contains(m) {
                return self
                    .answers
                    .get(&m.name)
                    .is_some_and(|(id, v, _, until)| id == m && v.contains(node) && now < *until);
            }
            self.votes.get(&m.name).is_some_and(|(id, v, at)| {
                id == m && v.contains(node) && now.saturating_duration_since(*at) < VOTE_TRUST
            })
        };
        if planted::on(Bug::FailoverOnOneVote) {
            return set.members().iter().any(voted);
        }
        if tracing::enabled!(tracing::Level::TRACE) {
            let who: Vec<String> = set
                .members()
                .iter()
                .map(|m| format!("{}:{}", m.name, voted(m)))
                .collect();
            tracing::trace!(%me, %node, votes = ?who, "votes");
        }
        !set.majority(|m| !voted(m))
    }
}

impl<T> Core<T> {
    /// The members that count: this one and every other that is alive or draining, and dead
    /// ones until they are removed.
    pub(super) fn quorum_set(&self) -> Set {
        let mut members: Vec<NodeId> = self
            .members
            .iter()
            .filter(|m| {
                matches!(
                    m.status,
                    MemberStatus::Alive | MemberStatus::Draining | MemberStatus::Dead
                )
            })
            .map(|m| m.node.clone())
            .collect();
        if matches!(self.status, MemberStatus::Alive | MemberStatus::Draining) {
            members.push(self.me.clone());
        }
        Set::new(members)
    }

    /// Sends the next lease request when one is due, and works the lease out again.
    pub(super) fn lease_tick(&mut self, now: Instant, out: &mut Vec<Effect<T>>) {
        let set = self.quorum_set();
        if set.contains(&self.me)
            && let Some(round) = self.quorum.request(now)
        {
            let to: Vec<NodeId> = set
                .members()
                .iter()
                .filter(|m| **m != self.me && self.peers.get(&m.name) == Some(*m))
                .cloned()
                .collect();
            if !to.is_empty() {
                out.push(Effect::Broadcast {
                    to,
                    wire: Wire::Lease {
                        from: self.me.clone(),
                        round,
                        votes: self.quorum.my_votes(now),
                    },
                });
            }
        }
        self.refresh_lease(now);
    }

    pub(super) fn refresh_lease(&mut self, now: Instant) {
        let set = self.quorum_set();
        if self.quorum.recompute(&self.me, &set, now) {
            self.dirty = true;
        }
    }

    /// Another member asks for a lease (and tells its votes).
    pub(super) fn on_lease(
        &mut self,
        now: Instant,
        out: &mut Vec<Effect<T>>,
        from: NodeId,
        round: u64,
        votes: Vec<NodeId>,
    ) {
        self.quorum.votes_received(from.clone(), votes, now);
        let connected = self.peers.get(&from.name) == Some(&from);
        if connected {
            self.readmit_if_safe(now, &from);
        }
        let in_set = self.quorum_set().contains(&from);
        let granted = connected && self.quorum.grant(&from, in_set, now);
        // What the asker reads decides the answer (it counts votes by round if it speaks 3).
        let asker_reads_answers = self
            .members
            .get(&from.name)
            .filter(|m| m.node == from)
            .and_then(|m| m.protocols)
            .is_some_and(|p| p.max >= Feature::VotesByRound.since());
        if asker_reads_answers {
            // Every request is answered, granted or not, with this member's votes as it
            // answers (it grants none of them for a while from now: `Quorum::readmit`).
            if connected {
                let votes = self.quorum.my_votes(now);
                out.push(Effect::Send {
                    to: from,
                    wire: Wire::LeaseAnswer {
                        from: self.me.clone(),
                        round,
                        granted,
                        votes,
                    },
                });
            }
        } else if granted {
            out.push(Effect::Send {
                to: from,
                wire: Wire::LeaseGrant {
                    from: self.me.clone(),
                    round,
                },
            });
        }
    }

    /// A suspected member is connected again (it said hello, or asks for a lease). If no
    /// majority voted it dead, no child of it was restarted elsewhere: grant it again (and
    /// take its replicas). If one did, only once every child it had runs elsewhere (its copies
    /// are then fenced by their epochs).
    pub(super) fn readmit_if_safe(&mut self, now: Instant, node: &NodeId) {
        if !self.quorum.suspects(node) {
            return;
        }
        let set = self.quorum_set();
        if (!self.quorum.dead(&self.me, node, &set, now) || !self.owns_any(node))
            && self.quorum.readmit(node, now)
        {
            info!(member = %node, "member back after being suspected; granting it leases again");
        }
    }

    /// True when `node` owns a live name in this replica.
    fn owns_any(&self, node: &NodeId) -> bool {
        self.registry
            .iter()
            .any(|(_, e)| !e.removed && *e.owner == *node)
    }

    /// True when `node`'s children may be restarted elsewhere: it is an earlier run of a
    /// name, or a majority of the quorum set voted it dead (even if it is connected again:
    /// it answers nothing until every child it had runs elsewhere), or it left the set.
    pub(super) fn dead_for_failover(&self, node: &NodeId, now: Instant) -> bool {
        if *node == self.me {
            return false;
        }
        if node.name == self.me.name || self.superseded.contains(node) {
            return true;
        }
        let set = self.quorum_set();
        if set.contains(node) {
            return self.quorum.dead(&self.me, node, &set, now);
        }
        // Not counted: one that left (and is gone), or one not heard of yet (not dead).
        self.is_dead(node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(name: &str) -> NodeId {
        NodeId {
            name: name.into(),
            incarnation: 1,
        }
    }

    #[test]
    fn two_disjoint_sets_are_never_both_a_majority() {
        for size in 1..=7usize {
            let all: Vec<NodeId> = (0..size).map(|i| n(&format!("m{i}"))).collect();
            let set = Set::new(all.clone());
            for mask in 0u32..(1 << size) {
                let a = |m: &NodeId| {
                    all.iter()
                        .position(|x| x == m)
                        .is_some_and(|i| mask & (1 << i) != 0)
                };
                let b = |m: &NodeId| !a(m);
                assert!(
                    !(set.majority(a) && set.majority(b)),
                    "size {size} mask {mask:b}"
                );
            }
        }
        // With two members, the lowest one alone is the majority.
        let set = Set::new(vec![n("a"), n("b")]);
        assert!(set.majority(|m| m.name == "a"));
        assert!(!set.majority(|m| m.name == "b"));
    }

    #[test]
    fn a_lease_runs_from_the_request_a_majority_granted() {
        let t0 = Instant::now();
        let (a, b, c) = (n("a"), n("b"), n("c"));
        let set = Set::new(vec![a.clone(), b.clone(), c.clone()]);
        let mut q = Quorum::new(Duration::from_secs(1));
        let r1 = q.request(t0).unwrap();
        assert!(
            q.request(t0 + Duration::from_millis(10)).is_none(),
            "not due yet"
        );
        q.recompute(&a, &set, t0);
        assert!(!q.valid(t0), "nobody granted yet");
        q.grant_received(b.clone(), r1);
        q.recompute(&a, &set, t0 + Duration::from_millis(5));
        assert!(q.valid(t0 + Duration::from_millis(999)));
        assert!(
            !q.valid(t0 + Duration::from_millis(1000)),
            "runs from when it was sent"
        );
        // A grant of another run of b does not count.
        let mut q2 = Quorum::new(Duration::from_secs(1));
        let r = q2.request(t0).unwrap();
        q2.grant_received(
            NodeId {
                name: "b".into(),
                incarnation: 9,
            },
            r,
        );
        q2.recompute(&a, &set, t0);
        assert!(!q2.valid(t0));
    }

    #[test]
    fn a_member_is_dead_only_once_votes_leave_no_majority_and_grants_ran_out() {
        let t0 = Instant::now();
        let (a, b, c) = (n("a"), n("b"), n("c"));
        let set = Set::new(vec![a.clone(), b.clone(), c.clone()]);
        let mut q = Quorum::new(Duration::from_secs(1));
        assert!(q.grant(&c, true, t0));
        q.suspect(&c, t0 + Duration::from_millis(100));
        assert!(
            !q.grant(&c, true, t0 + Duration::from_millis(200)),
            "no grant once suspected"
        );
        // Only a's vote, and not yet effective.
        assert!(!q.dead(&a, &c, &set, t0 + Duration::from_millis(500)));
        let later = t0 + Duration::from_secs(1) + DRIFT_MARGIN;
        assert_eq!(q.my_votes(later), vec![c.clone()]);
        // a alone is not enough (b could still grant c a lease with c itself).
        assert!(!q.dead(&a, &c, &set, later));
        q.votes_received(b.clone(), vec![c.clone()], later);
        assert!(q.dead(&a, &c, &set, later));
        // b's vote counts only while b repeats it.
        assert!(!q.dead(&a, &c, &set, later + VOTE_TRUST));
        // a told others it votes c dead: it grants c again only once they stopped trusting
        // that vote.
        assert!(!q.readmit(&c, later + Duration::from_millis(100)));
        assert!(q.suspects(&c));
        let quiet = later + READMIT_QUIET;
        assert!(q.readmit(&c, quiet));
        assert!(!q.dead(&a, &c, &set, quiet));
    }

    /// The vote-timing assumption removed (protocol 3): a vote answers a lease round and counts
    /// until that round's sending time plus `VOTE_TRUST`, so one held up in the network counts
    /// no longer than a prompt one. Counted from its arrival (protocol 2's rule), the late vote
    /// would count until 2.2 s after the round left, past the voter's `READMIT_QUIET`: the
    /// voter could grant the member a lease again while its old vote still counted.
    #[test]
    fn a_vote_held_up_in_the_network_expires_as_early_as_a_prompt_one() {
        let t0 = Instant::now();
        let (a, b, c) = (n("a"), n("b"), n("c"));
        let set = Set::new(vec![a.clone(), b.clone(), c.clone()]);
        let mut q = Quorum::new(Duration::from_secs(1));
        q.round_voters.insert(b.clone());
        q.suspect(&c, t0);
        // a's own vote against c is in effect.
        let voting = t0 + Duration::from_secs(2);
        assert_eq!(q.my_votes(voting), vec![c.clone()]);
        // Round r leaves; b's answer voting c dead arrives 1.2 s later (a stalled link).
        let r = q.request(voting).unwrap();
        let late = voting + Duration::from_millis(1200);
        q.answer_received(b.clone(), r, vec![c.clone()]);
        assert!(
            !q.dead(&a, &c, &set, late),
            "a vote that arrived 1.2 s after its round left counts past the round's trust"
        );
        // The same vote answering a round promptly counts, and only until that round's
        // sending time plus VOTE_TRUST.
        let r2 = q.request(late).unwrap();
        q.answer_received(b.clone(), r2, vec![c.clone()]);
        assert!(q.dead(&a, &c, &set, late + Duration::from_millis(10)));
        assert!(!q.dead(&a, &c, &set, late + VOTE_TRUST));
    }

    #[test]
    fn a_member_only_heard_of_is_voted_dead_only_after_a_lease() {
        let c = n("c");
        let t0 = Instant::now();
        let mut q = Quorum::new(Duration::from_secs(1));
        q.suspect_learned(&c, t0);
        assert!(!q.grant(&c, true, t0), "not granted before it connects");
        assert!(q.my_votes(t0 + Duration::from_millis(500)).is_empty());
        assert_eq!(
            q.my_votes(t0 + Duration::from_secs(1) + DRIFT_MARGIN),
            vec![c.clone()]
        );
    }
}
