//! Moving live children to other nodes: the drain (what SIGTERM does) and rebalancing.
//!
//! Children move in waves: a wave is up to `wave_size` children bound for one target. Each
//! child is frozen only just before its own wave's offer, so its pause is one wave (a round
//! trip plus copying its state), not the whole drain; several waves run at once. A wave:
//! freeze each child (its state includes every message accepted before), offer the batch,
//! and on acceptance write the registry (the new owner at epoch + 1, on the wire before
//! anything else) and release each child (its buffered messages go to the new owner in order);
//! on refusal or timeout, abort at the target and thaw each child here. After a drain's
//! deadline, what could not move live pushes a final snapshot to its failover target (it
//! restarts from it when this node is gone) and is counted.
//!
//! The planning ([`plan_waves`]) is pure; the rest drives the member and hosted actors by
//! messages. This module must not touch the registry directly.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use discovery::{Envelope, NodeId};
use futures::StreamExt;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::child::Child;
use crate::hosted::{Frozen, HostedMsg};
use crate::member::LocalMsg;
use crate::membership::MemberStatus;
use crate::stats::Counters;
use crate::view::{MemberRef, View};
use crate::wire::{MemberMsg, OfferItem, SnapshotItem, Wire, call_member};

/// How waves are sized and paced.
#[derive(Debug, Clone, Copy)]
pub struct MoveConfig {
    /// Children per wave.
    pub wave_size: usize,
    /// Waves in flight at once.
    pub parallel_waves: usize,
    /// Longest wait for a target to answer an offer.
    pub offer_timeout: Duration,
}

impl Default for MoveConfig {
    fn default() -> Self {
        Self {
            wave_size: 16,
            parallel_waves: 4,
            offer_timeout: Duration::from_secs(3),
        }
    }
}

/// Groups children by target and cuts each group into waves of at most `wave_size`.
pub fn plan_waves(
    moves: impl IntoIterator<Item = (String, NodeId)>,
    wave_size: usize,
) -> Vec<(NodeId, Vec<String>)> {
    let mut by_target: BTreeMap<NodeId, Vec<String>> = BTreeMap::new();
    for (name, target) in moves {
        by_target.entry(target).or_default().push(name);
    }
    let mut waves = Vec::new();
    for (target, names) in by_target {
        for chunk in names.chunks(wave_size.max(1)) {
            waves.push((target.clone(), chunk.to_vec()));
        }
    }
    // Interleave targets so parallel waves spread over the nodes.
    let mut interleaved = Vec::with_capacity(waves.len());
    let mut queues: BTreeMap<NodeId, std::collections::VecDeque<Vec<String>>> = BTreeMap::new();
    for (t, w) in waves {
        queues.entry(t).or_default().push_back(w);
    }
    while !queues.is_empty() {
        queues.retain(|t, q| {
            if let Some(w) = q.pop_front() {
                interleaved.push((t.clone(), w));
            }
            !q.is_empty()
        });
    }
    interleaved
}

/// What a drain did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DrainReport {
    /// Children moved live.
    pub moved: usize,
    /// Children that could not move before the deadline (final snapshot pushed instead).
    pub fallback: usize,
    /// Children left with no other member to go to.
    pub stranded: usize,
    /// How long the drain took.
    pub duration: Duration,
}

/// Outcome of one wave.
#[derive(Debug, Default)]
struct WaveOutcome {
    moved: usize,
    failed: usize,
}

/// A child frozen for a wave: name, its actor, what it handed over, its next epoch, its spec.
type FrozenChild<C> = (String, ractor::ActorRef<HostedMsg<C>>, Frozen, u64, Vec<u8>);

/// Moves `names` to `target` in one wave.
async fn move_wave<C: Child>(
    view: &Arc<View<C>>,
    member: &MemberRef<C>,
    target: NodeId,
    names: Vec<String>,
    config: MoveConfig,
) -> WaveOutcome {
    let Some(target_peer) = view.peer_of(&target) else {
        return WaveOutcome {
            moved: 0,
            failed: names.len(),
        };
    };
    let (node, target_member) = (target_peer.node.clone(), target_peer.member.clone());
    let started = Instant::now();
    // Freeze, each child behind the messages already in its mailbox.
    let mut frozen_waits = Vec::new();
    for name in names {
        let Some(actor) = view.local(&name) else {
            continue;
        };
        let (tx, rx) = oneshot::channel();
        if actor.cast(HostedMsg::Freeze { reply: tx }).is_ok() {
            frozen_waits.push((name, actor, rx));
        }
    }
    let mut frozen: Vec<FrozenChild<C>> = Vec::new();
    for (name, actor, rx) in frozen_waits {
        let Ok(Ok(Some(f))) = tokio::time::timeout(config.offer_timeout, rx).await else {
            continue;
        };
        let entry = view.entry(&name);
        match entry {
            Some(e) if *e.owner == view.me => {
                let spec = e.spec.to_vec();
                frozen.push((name, actor, f, e.epoch + 1, spec));
            }
            _ => {
                let _ = actor.cast(HostedMsg::Thaw);
            }
        }
    }
    if frozen.is_empty() {
        return WaveOutcome::default();
    }
    let items: Vec<OfferItem> = frozen
        .iter()
        .map(|(name, _, f, epoch, spec)| OfferItem {
            name: name.clone(),
            epoch: *epoch,
            spec: spec.clone(),
            schema: f.schema,
            state: f.state.clone(),
            subscribers: f.subscribers.clone(),
            event_seq: f.event_seq,
        })
        .collect();
    let offer = Wire::Offer {
        from: view.me.clone(),
        items,
    };
    let reply = call_member(&target_member, &offer, config.offer_timeout)
        .await
        .and_then(|e| e.decode::<Wire>().ok());
    let Some(Wire::OfferReply { accepted, refused }) = reply else {
        warn!(target = %node, children = frozen.len(), "offer not answered; aborting the wave");
        let names = frozen
            .iter()
            .map(|(n, _, _, e, _)| (n.clone(), *e))
            .collect();
        if let Ok(env) = Envelope::encode(&Wire::Abort { names }) {
            let _ = target_member.cast(MemberMsg::Cast(env));
        }
        Counters::add(&view.counters.handoff_failures, frozen.len() as u64);
        let failed = frozen.len();
        for (_, actor, ..) in frozen {
            let _ = actor.cast(HostedMsg::Thaw);
        }
        return WaveOutcome { moved: 0, failed };
    };
    let accepted: std::collections::HashSet<String> = accepted.into_iter().collect();
    let moved_names: Vec<(String, u64)> = frozen
        .iter()
        .filter(|(n, ..)| accepted.contains(n))
        .map(|(n, _, _, e, _)| (n.clone(), *e))
        .collect();
    // The registry change goes out before any child forwards its buffer.
    let (tx, rx) = oneshot::channel();
    let _ = member.cast(MemberMsg::Local(LocalMsg::Moved {
        target: node.clone(),
        names: moved_names,
        reply: tx,
    }));
    let _ = rx.await;
    for (name, actor, ..) in &frozen {
        if accepted.contains(name) {
            let _ = actor.cast(HostedMsg::Release {
                to: target_peer.router.clone(),
                target: node.clone(),
            });
        } else {
            let _ = actor.cast(HostedMsg::Thaw);
        }
    }
    for (name, reason) in &refused {
        warn!(child = %name, target = %node, %reason, "move refused");
    }
    Counters::add(&view.counters.handoff_failures, refused.len() as u64);
    view.counters.last_handoff_us.store(
        started.elapsed().as_micros() as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
    WaveOutcome {
        moved: accepted.len(),
        failed: refused.len(),
    }
}

/// Moves the given children (name, target) in waves; returns how many moved.
pub(crate) async fn move_children<C: Child>(
    view: &Arc<View<C>>,
    member: &MemberRef<C>,
    moves: Vec<(String, NodeId)>,
    config: MoveConfig,
) -> (usize, usize) {
    let waves = plan_waves(moves, config.wave_size);
    let outcomes: Vec<WaveOutcome> = futures::stream::iter(waves)
        .map(|(target, names)| move_wave(view, member, target, names, config))
        .buffer_unordered(config.parallel_waves.max(1))
        .collect()
        .await;
    outcomes
        .iter()
        .fold((0, 0), |(m, f), o| (m + o.moved, f + o.failed))
}

/// Hands every child of this node to the others within `deadline`.
pub(crate) async fn drain<C: Child>(
    view: &Arc<View<C>>,
    member: &MemberRef<C>,
    deadline: Duration,
    config: MoveConfig,
    need_peers: Option<&(dyn Fn() + Send + Sync)>,
) -> DrainReport {
    let started = Instant::now();
    let end = started + deadline;
    let _ = member.cast(MemberMsg::Local(LocalMsg::SetStatus(
        MemberStatus::Draining,
    )));
    let mut report = DrainReport::default();
    let mut last_refresh: Option<Instant> = None;
    loop {
        let names: Vec<String> = view.local_names();
        if names.is_empty() || Instant::now() >= end {
            break;
        }
        let others = view.others();
        let moves: Vec<(String, NodeId)> = names
            .iter()
            .filter_map(|n| view.placement.place(n, &others).map(|t| (n.clone(), t)))
            .collect();
        if moves.is_empty() {
            // Nobody to move to (replicas: 1 with start-first: the new container may not be
            // known yet). Ask discovery to look again, and wait.
            if last_refresh.is_none_or(|t| t.elapsed() > Duration::from_millis(500)) {
                if last_refresh.is_none() {
                    info!(
                        children = names.len(),
                        "drain: no other member yet; looking for peers until the deadline"
                    );
                } else {
                    debug!(children = names.len(), "drain: still no other member");
                }
                if let Some(f) = need_peers {
                    f();
                }
                last_refresh = Some(Instant::now());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let remaining = end.saturating_duration_since(Instant::now());
        let round =
            tokio::time::timeout(remaining, move_children(view, member, moves, config)).await;
        match round {
            Ok((moved, failed)) => {
                report.moved += moved;
                if moved == 0 && failed > 0 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            Err(_) => break,
        }
    }
    // What is left: push a final snapshot to its failover target.
    let left: Vec<String> = view.local_names();
    for name in left {
        let Some(target) = view.place_elsewhere(&name) else {
            report.stranded += 1;
            continue;
        };
        let Some(target_member) = view.peer(&target.name).map(|p| p.member) else {
            report.stranded += 1;
            continue;
        };
        let Some(actor) = view.local(&name) else {
            continue;
        };
        let (tx, rx) = oneshot::channel();
        if actor.cast(HostedMsg::Freeze { reply: tx }).is_err() {
            continue;
        }
        let Ok(Ok(Some(f))) = tokio::time::timeout(Duration::from_millis(200), rx).await else {
            report.stranded += 1;
            continue;
        };
        let epoch = view
            .registry
            .read()
            .ok()
            .and_then(|r| r.get(&name).map(|e| e.epoch))
            .unwrap_or(0);
        let item = SnapshotItem {
            name: name.clone(),
            epoch,
            handled: u64::MAX,
            schema: f.schema,
            state: f.state,
        };
        if let Ok(env) = Envelope::encode(&Wire::Snapshots { items: vec![item] }) {
            let _ = target_member.cast(MemberMsg::Cast(env));
        }
        report.fallback += 1;
        Counters::add(&view.counters.drain_fallbacks, 1);
    }
    // Every member knows where the children went before this node may go.
    let (tx, rx) = oneshot::channel();
    if member.cast(MemberMsg::Local(LocalMsg::Barrier(tx))).is_ok() {
        let left = end
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(500));
        if tokio::time::timeout(left, rx).await.is_err() {
            warn!("drain: registry changes not acknowledged by every member before the deadline");
        }
    }
    report.duration = started.elapsed();
    if report.stranded > 0 {
        warn!(
            moved = report.moved,
            fallback = report.fallback,
            stranded = report.stranded,
            "drain deadline passed with no member to take some children: they stop with this \
             node (with a snapshot elsewhere, a member restarts them from it when it sees this \
             node down)"
        );
    } else if report.fallback > 0 {
        warn!(
            moved = report.moved,
            fallback = report.fallback,
            "drain deadline passed: children left restart from their last snapshot elsewhere"
        );
    } else {
        info!(
            moved = report.moved,
            ms = report.duration.as_millis() as u64,
            "drain complete"
        );
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(n: &str) -> NodeId {
        NodeId {
            name: n.into(),
            incarnation: 1,
        }
    }

    #[test]
    fn waves_group_by_target_cap_their_size_and_interleave_targets() {
        let moves: Vec<(String, NodeId)> = (0..10)
            .map(|i| (format!("g{i}"), node(if i % 2 == 0 { "a" } else { "b" })))
            .collect();
        let waves = plan_waves(moves, 2);
        assert_eq!(waves.len(), 6);
        assert!(waves.iter().all(|(_, w)| w.len() <= 2));
        let targets: Vec<&str> = waves.iter().map(|(t, _)| t.name.as_str()).collect();
        assert_eq!(targets, ["a", "b", "a", "b", "a", "b"]);
        let mut all: Vec<String> = waves.into_iter().flat_map(|(_, w)| w).collect();
        all.sort();
        assert_eq!(all.len(), 10);
        all.dedup();
        assert_eq!(all.len(), 10, "no child in two waves");
    }

    #[test]
    fn no_moves_no_waves() {
        assert!(plan_waves(Vec::new(), 64).is_empty());
    }
}
