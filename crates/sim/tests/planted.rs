//! The planted-bug check (STYLE.md rule 21): each safety rule of horde's cores, switched off
//! alone (`horde::core::planted`), must make the simulator report a violation within a
//! bounded number of seeds of the schedule aimed at it. A rule whose bug no schedule catches
//! is unproven; the three the simulator does not reach are listed in `horde::core::planted`
//! with the reason, and are proven here at the core, by the step each rule exists for.
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
    caught(Bug::AcceptMoveBeforeBackup, "move-then-crash", 60);
}

#[test]
fn a_backup_acknowledging_an_owner_after_giving_its_replica_to_a_failover_is_caught() {
    caught(Bug::AckAfterFetch, "frozen-half-seen", 50);
}

#[test]
fn a_failover_in_the_old_term_is_caught() {
    caught(Bug::FailoverInOldTerm, "cut-off-mover", 30);
}

#[test]
fn a_failover_skipping_members_it_has_not_heard_of_is_caught() {
    caught(Bug::FailoverSkipsUnknown, "join-behind-stall", 30);
}

// The rules no schedule reaches (see `horde::core::planted`)
// are proven where they live, at the core, by the step each exists for: the same check with
// the rule on passes and with its bug planted fails, so the suite fails on either bug.

/// Outcome of running `check` with `bug` planted and without: `Ok` when the check holds
/// with the rule and fails with the bug.
fn caught_at_the_core(bug: Bug, check: fn() -> Result<(), String>) {
    planted::plant(None);
    check().unwrap_or_else(|e| panic!("with the rule on, the check fails: {e}"));
    planted::plant(Some(bug));
    let with_bug = check();
    planted::plant(None);
    let why = with_bug.expect_err("the planted bug passed the check: the rule is unproven");
    println!("{}: caught at the core: {why}", bug.name());
}

/// Run 1 of the member called `name`.
fn node(name: &str) -> discovery::NodeId {
    discovery::NodeId {
        name: name.into(),
        incarnation: 1,
    }
}

/// A member core of this release as production configures it (horde's defaults, for a child
/// of this release's schema), started at `now`.
fn member_core(name: &str, now: std::time::Instant) -> horde::core::Core<u64> {
    let config = horde::HordeConfig::new("planted", "2.0.0").core::<sim::log::Log<2>>();
    horde::core::Core::new(
        node(name),
        "2.0.0",
        config,
        std::sync::Arc::new(horde::stats::Counters::default()),
        now,
    )
}

/// A backup that holds epoch 2 of a name, then gets a replica of epoch 1 (a superseded
/// copy's, late): it must refuse it (an acknowledgement would let that copy answer an input
/// the newer copy never saw).
fn older_epoch_refused() -> Result<(), String> {
    use std::time::Instant;

    use horde::core::{Effect, Input};
    use horde::protocol::{Replica, ReplicaRefusal, Wire};

    let now = Instant::now();
    let mut backup = member_core("b", now);
    let replica = |owner: &str, epoch: u64, seq: u64| Replica {
        name: "g".into(),
        owner: node(owner),
        epoch,
        seq,
        schema: 2,
        state: Vec::new(),
        subscribers: Vec::new(),
        event_seq: 0,
    };
    let answer = |effects: Vec<Effect<u64>>| {
        effects.into_iter().find_map(|e| match e {
            Effect::Send {
                wire: w @ (Wire::ReplicaAck { .. } | Wire::ReplicaNack { .. }),
                ..
            } => Some(w),
            _ => None,
        })
    };
    // The newer copy (epoch 2, on c) replicates first.
    let first = answer(backup.on(now, Input::Peer(Wire::Replicate(replica("c", 2, 3)))));
    if !matches!(first, Some(Wire::ReplicaAck { .. })) {
        return Err(format!("epoch 2's replica was not acknowledged: {first:?}"));
    }
    // The superseded copy's (epoch 1, on a, with more changes of its own) arrives late.
    let late = answer(backup.on(now, Input::Peer(Wire::Replicate(replica("a", 1, 9)))));
    match late {
        Some(Wire::ReplicaNack {
            why: ReplicaRefusal::Stale,
            ..
        }) => Ok(()),
        other => Err(format!(
            "a replica of epoch 1 after epoch 2 was answered {other:?}, not refused as stale"
        )),
    }
}

#[test]
fn a_backup_taking_an_older_epochs_replica_is_caught() {
    caught_at_the_core(Bug::AcceptOlderEpoch, older_epoch_refused);
}

/// A copy that applied an input under its lease and lost the lease before its backup
/// acknowledged: once the acknowledgement comes, neither the answer nor the event goes out
/// (a copy without its lease may already be superseded: what it says would be a second
/// copy speaking).
fn no_event_without_lease() -> Result<(), String> {
    use std::time::Instant;

    use horde::core::child_core::{
        Body, ChildCore, ChildEffect, ChildEnv, ChildInput, Envelope, ReplicaAnswer,
    };
    use horde::core::{ChildCmd, Init};
    use horde::protocol::{RouteBody, Subscriber};
    use sim::log::{Log, LogMsg};

    type C = Log<2>;
    let now = Instant::now();
    let leased = ChildEnv::open();
    let lost = ChildEnv {
        lease: false,
        ..ChildEnv::open()
    };
    let init = Init::Fresh {
        spec: postcard::to_stdvec(&0u32)
            .map_err(|e| e.to_string())?
            .into(),
    };
    let (mut core, _) = ChildCore::<C, u32>::start("g".into(), node("a"), now, now, init, 1, false)
        .map_err(|e| e.to_string())?;
    let ack_all = |core: &mut ChildCore<C, u32>, effects: Vec<ChildEffect<C, u32>>, env| {
        let mut out = Vec::new();
        let mut pending: Vec<ChildEffect<C, u32>> = effects;
        while let Some(e) = pending.pop() {
            if let ChildEffect::Replicate { replica, .. } = &e {
                let ack = ChildInput::Replica(ReplicaAnswer::Ack {
                    from: node("b"),
                    epoch: replica.epoch,
                    seq: replica.seq,
                });
                pending.extend(core.on(now, ack, env));
            }
            out.push(e);
        }
        out
    };
    let backup = ChildCmd::Backup {
        node: Some((node("b"), 1)),
        lazy: false,
    };
    let effects = core.on(now, ChildInput::Cmd(backup), &leased);
    ack_all(&mut core, effects, &leased);
    let subscribe = ChildInput::Message(Envelope {
        body: Body::Routed(RouteBody::Subscribe(Subscriber {
            node: node("s"),
            sink: 1,
        })),
        hops: 0,
        reply: Some(1),
    });
    let effects = core.on(now, subscribe, &leased);
    ack_all(&mut core, effects, &leased);
    // An input under the lease: its replica goes out, its answer and event wait.
    let input = ChildInput::Message(Envelope {
        body: Body::Typed(LogMsg::Input { id: 7 }),
        hops: 0,
        reply: Some(2),
    });
    let effects = core.on(now, input, &leased);
    if effects
        .iter()
        .any(|e| matches!(e, ChildEffect::Deliver { .. }))
    {
        return Err("the event left before the backup acknowledged".into());
    }
    // The lease is lost; then the acknowledgement comes.
    let out = ack_all(&mut core, effects, &lost);
    match out
        .iter()
        .find(|e| matches!(e, ChildEffect::Deliver { .. }))
    {
        None => Ok(()),
        Some(_) => Err("a copy without its lease sent its subscribers an event".into()),
    }
}

#[test]
fn events_from_a_copy_without_its_lease_are_caught() {
    caught_at_the_core(Bug::EventsWithoutLease, no_event_without_lease);
}

/// A leaving member (protocol 3) whose `Left` hello its peers have not acknowledged: a hello
/// they send for another reason (one that crossed the farewell, or answered an older one) must
/// not stand for the receipt, or the farewell may be lost with the exiting process's send
/// queue and the peers count it dead instead of left (in their quorum sets, one more fault
/// away from no majority). It exits once each acknowledged that very hello (`FarewellAck`).
///
/// Proven at the core: no schedule of the simulator has yet made a hello sent for another
/// reason cross a farewell that is then lost.
fn farewell_needs_its_receipt() -> Result<(), String> {
    use std::time::{Duration, Instant};

    use horde::core::{Effect, Input, Reply, Request};
    use horde::membership::MemberStatus;
    use horde::protocol::{Hello, Wire};

    let hello = |name: &str, seq: u64| Hello {
        node: node(name),
        protocol: 2,
        version: "2.0.0".into(),
        status: MemberStatus::Alive,
        seq,
        reads: vec![2],
        max_protocol: Some(3),
    };
    let t0 = Instant::now();
    let mut b = member_core("b", t0);
    b.on(t0, Input::Request(Request::NoPeersExpected));
    for peer in ["a", "c"] {
        b.on(t0, Input::NodeUp(node(peer)));
        b.on(t0, Input::PeerReady(node(peer)));
        b.on(t0, Input::Peer(Wire::Hello(hello(peer, 1))));
    }
    if b.status() != MemberStatus::Alive {
        return Err(format!("b is {} before its drain, not alive", b.status()));
    }
    let drained = |effects: &[Effect<u64>]| {
        effects.iter().any(|e| {
            matches!(
                e,
                Effect::Reply {
                    reply: Reply::Drained(_),
                    ..
                }
            )
        })
    };
    let farewell = |effects: &[Effect<u64>]| {
        effects.iter().find_map(|e| match e {
            Effect::Send {
                wire: Wire::Reintroduce(h),
                ..
            } if h.status == MemberStatus::Left => Some(h.seq),
            _ => None,
        })
    };
    let mut now = t0;
    let mut out = b.on(
        now,
        Input::Request(Request::Drain {
            deadline: Duration::from_secs(30),
            leave: true,
            reply: 1,
        }),
    );
    let mut seq = farewell(&out);
    // Nothing to move: the drain reaches its farewell within a few ticks.
    for _ in 0..40 {
        if seq.is_some() || drained(&out) {
            break;
        }
        now += Duration::from_millis(50);
        out = b.on(now, Input::Tick);
        seq = seq.or(farewell(&out));
    }
    let Some(seq) = seq else {
        return Err(format!("no farewell went out: {out:?}"));
    };
    if drained(&out) {
        return Err("the drain answered with its farewell unacknowledged".into());
    }
    // Hellos from both peers that are not receipts (sent before they heard the farewell).
    for peer in ["a", "c"] {
        let out = b.on(now, Input::Peer(Wire::Hello(hello(peer, 2))));
        if drained(&out) {
            return Err(format!(
                "a hello of {peer}'s, not the receipt of the farewell, ended the drain"
            ));
        }
    }
    now += Duration::from_millis(50);
    if drained(&b.on(now, Input::Tick)) {
        return Err("the drain ended on hellos that were no receipt".into());
    }
    // The receipts.
    let mut done = false;
    for peer in ["a", "c"] {
        let out = b.on(
            now,
            Input::Peer(Wire::FarewellAck {
                from: node(peer),
                seq,
            }),
        );
        done |= drained(&out);
    }
    now += Duration::from_millis(50);
    done |= drained(&b.on(now, Input::Tick));
    if done {
        Ok(())
    } else {
        Err("both peers acknowledged the farewell and the drain did not end".into())
    }
}

#[test]
fn a_farewell_taking_any_hello_for_its_receipt_is_caught() {
    caught_at_the_core(Bug::FarewellAnyHello, farewell_needs_its_receipt);
}
