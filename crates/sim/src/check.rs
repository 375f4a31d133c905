//! The invariants, checked after every step and at the end of a run (DESIGN.md, "Second
//! round"):
//! - **S1 one acking owner**: once a copy of a name has answered an input, no older copy of
//!   that name answers again; and in overlapping time, while a newer copy runs, an older one
//!   answers no input the newer one lacks (checked by the world, which sees both copies). A
//!   copy whose node's clock stopped (SIGSTOP, a frozen VM) is outside the clock-rate model:
//!   its late answers are recorded, never taken as the current copy.
//! - **S2 durable ack**: a copy that answers holds every input of its name answered before,
//!   by any copy; at the end the log of each name holds every acknowledged input once, at
//!   the position its answer gave (what an answer showed, the child's timer ticks before it
//!   included, is never rewritten).
//! - **S3 monotone epochs**: no node's registry replica sees a name's epoch go back.
//! - **S4 convergence**: after the faults stop, every replica equals every other and every
//!   name is served by exactly one copy, at the owner the registry names; every input in
//!   flight is answered.
//! - **S5 bounded**: drains end by their deadline; nothing stays frozen; no message between
//!   nodes exceeds the message budget (ractor_cluster closes a link on a frame over its
//!   limit, which reads as a dead node).
//! - **S6 removal**: once a stop was answered, no copy of the name answers an input and no
//!   replica holds it live again; after the quiet period no replica keeps a tombstone.
//! - **S7 versions**: no member receives a message that needs a newer protocol version than
//!   its build speaks (a node of the previous release beside current ones; checked on every
//!   delivery).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::log::{LogEvent, unreplicated};
use crate::time::Time;

/// Who answers for one name, and what was answered.
#[derive(Debug, Default)]
struct NameAcks {
    /// The copy that answered last: instance, node, epoch.
    current: Option<(u64, String, u64)>,
    /// Copies that answered before another took over.
    retired: BTreeSet<u64>,
    /// Ids answered so far.
    acked: BTreeSet<u64>,
}

/// What the checks found.
#[derive(Debug, Default)]
pub struct Checker {
    /// Every event emitted for a replicated name, by (name, sequence number): what it said
    /// and which copy emitted it first.
    events: BTreeMap<(Arc<str>, u64), (LogEvent, u64)>,
    names: BTreeMap<Arc<str>, NameAcks>,
    /// Inputs whose answer reached the client, by name.
    pub(crate) client_acked: BTreeMap<String, BTreeSet<u64>>,
    /// Per name, each answered input with the log's length its answer gave: an answered
    /// state is a prefix of every later one (S2), timers' ticks included.
    pub(crate) positions: BTreeMap<String, Vec<(u64, u64)>>,
    /// Per name, inputs lost by design in a copy's panic (answers of them arriving later are
    /// not counted).
    crashed: BTreeMap<String, BTreeSet<u64>>,
    /// Violations found, first one first.
    pub violations: Vec<String>,
    /// Answers emitted by children.
    pub acks: u64,
    /// The largest message between nodes seen (postcard bytes) and its kind.
    pub largest_message: (usize, &'static str),
    /// Virtual time now (violations say when they were seen).
    pub(crate) now: Time,
}

impl Checker {
    /// Records a violation.
    pub fn violate(&mut self, v: String) {
        if self.violations.len() < 50 {
            let now = self.now;
            self.violations.push(format!(
                "[{:>4}.{:06}] {v}",
                now / 1_000_000,
                now % 1_000_000
            ));
        }
    }

    /// A child copy answered input `id` (S1, S2).
    #[allow(clippy::too_many_arguments)]
    pub fn ack(
        &mut self,
        _now: Time,
        name: &Arc<str>,
        instance: u64,
        node: &str,
        epoch: u64,
        id: u64,
        has: &dyn Fn(u64) -> bool,
        clock_stopped: bool,
    ) -> Result<(), String> {
        self.acks += 1;
        let a = self.names.entry(name.clone()).or_default();
        // Two copies are kept apart by the quorum lease, and a lease is measured on a clock:
        // a copy on a node whose clock stopped (a suspended virtual machine, outside the
        // bounded-rate model) may answer, when it wakes, on a backup acknowledgement it
        // received before the newer copy existed. Its answer is tolerated; for a replicated
        // name what it answers must still be durable (S2 at the end, E1 and E2), since the
        // backups that acknowledged it are the ones the newer copy started from.
        let outside_the_model = clock_stopped;
        if a.retired.contains(&instance) {
            if outside_the_model {
                // The stale copy's answer is tolerated; it does not make it current again.
                a.acked.insert(id);
                return Ok(());
            }
            let (cur, cur_node, cur_epoch) = a.current.clone().unwrap_or_default();
            return Err(format!(
                "S1: `{name}`: copy #{instance} on {node} (epoch {epoch}) answered input {id} after copy #{cur} on {cur_node} (epoch {cur_epoch}) had answered"
            ));
        }
        if outside_the_model
            && a.current
                .as_ref()
                .is_some_and(|(cur, _, cur_epoch)| *cur != instance && *cur_epoch > epoch)
        {
            // A stale copy whose clock stopped answers before it learns of the newer one: it
            // does not become the current copy (nor retire the newer one).
            a.retired.insert(instance);
            a.acked.insert(id);
            return Ok(());
        }
        if let Some((cur, ..)) = &a.current
            && *cur != instance
        {
            a.retired.insert(*cur);
        }
        a.current = Some((instance, node.to_string(), epoch));
        // An unreplicated name keeps nothing across a crash, by design: one owner only.
        if unreplicated(name) {
            a.acked.insert(id);
            return Ok(());
        }
        if let Some(missing) = a.acked.iter().find(|x| !has(**x)) {
            let missing = *missing;
            a.acked.insert(id);
            return Err(format!(
                "S2: `{name}`: copy #{instance} on {node} (epoch {epoch}) answered input {id} but lacks input {missing}, answered before"
            ));
        }
        a.acked.insert(id);
        Ok(())
    }

    /// A copy of `name` emitted event `seq` (E1: an event number always means the same event,
    /// whichever copy emits it; E2, at the end: the event is in the name's final history).
    pub fn event(&mut self, name: &Arc<str>, instance: u64, seq: u64, event: LogEvent) {
        if unreplicated(name) {
            return;
        }
        match self.events.get(&(name.clone(), seq)) {
            Some((first, by)) if *first != event => {
                let v = format!(
                    "E1: `{name}`: copy #{instance} emitted event {seq} as {event:?}, copy #{by} as {first:?}"
                );
                self.violate(v);
            }
            Some(_) => {}
            None => {
                self.events.insert((name.clone(), seq), (event, instance));
            }
        }
    }

    /// E2: events of `name` that are not in its final history `log` (a change the cluster
    /// lost after telling subscribers of it).
    pub fn phantom_events(&self, name: &str, log: &[u64]) -> Vec<(u64, LogEvent)> {
        self.events
            .iter()
            .filter(|((n, _), _)| &**n == name)
            .filter(|(_, (e, _))| {
                let at = e.len as usize;
                at == 0 || log.get(at - 1) != Some(&e.id)
            })
            .map(|((_, seq), (e, _))| (*seq, *e))
            .collect()
    }

    /// A copy of `name` panicked and restarts from its spec: what it had applied is lost by
    /// design (no longer counted against S2), and its events are numbered afresh (E1).
    pub fn child_crashed(&mut self, name: &Arc<str>, applied: &[u64]) {
        let lost: BTreeSet<u64> = applied.iter().copied().collect();
        if let Some(ids) = self.client_acked.get_mut(name.as_ref()) {
            ids.retain(|id| !lost.contains(id));
        }
        if let Some(p) = self.positions.get_mut(name.as_ref()) {
            p.retain(|(id, _)| !lost.contains(id));
        }
        if let Some(a) = self.names.get_mut(name) {
            a.acked.retain(|id| !lost.contains(id));
        }
        self.events.retain(|(n, _), _| n != name);
        self.crashed
            .entry(name.to_string())
            .or_default()
            .extend(lost);
    }

    /// A client received the answer to input `id`; `at`: the log's length the answer gave
    /// (the input's position, plus one), unless it answered a retry of an input applied
    /// before.
    pub fn client_acked(&mut self, name: &str, id: u64, at: Option<u64>) {
        if self
            .crashed
            .get(name)
            .is_some_and(|lost| lost.contains(&id))
        {
            return;
        }
        self.client_acked
            .entry(name.to_string())
            .or_default()
            .insert(id);
        if let Some(at) = at {
            self.positions
                .entry(name.to_string())
                .or_default()
                .push((id, at));
        }
    }
}
