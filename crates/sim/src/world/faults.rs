//! Faults: crashes (with what was still unsent lost), a child's panic, pauses and freezes
//! and their end, partitions and stalls and their healing.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use discovery::connector::link_table::LinkInput;
use horde::core::{ChildReport, Input};

use super::{Ev, Life, MS, NetMsg, Time, World};

impl World {
    /// A panic in one running child (a bug in its callbacks): its actor is gone, its node's
    /// core restarts it in place, from its spec (horde's restart policy: what it had is
    /// lost by design, and so is not counted against S2).
    pub(crate) fn crash_child(&mut self) {
        let serving: Vec<u64> = self
            .instances
            .iter()
            .filter(|(i, x)| {
                x.alive
                    && !x.core.is_frozen()
                    && !x.core.is_forwarding()
                    && self
                        .node(x.slot, x.inc)
                        .is_some_and(|n| n.routes.get(&*x.name) == Some(&(**i, false)))
            })
            .map(|(i, _)| *i)
            .collect();
        let Some(instance) = self.rng.pick(&serving).copied() else {
            return;
        };
        let Some(inst) = self.instances.get_mut(&instance) else {
            return;
        };
        inst.alive = false;
        let (slot, inc, name) = (inst.slot, inst.inc, inst.name.clone());
        let applied = inst.core.applied().to_vec();
        self.check.child_crashed(&name, &applied);
        let node = self.names[slot].clone();
        self.log(|| {
            format!(
                "{name}#{instance} on {node} panics ({} changes lost by design)",
                applied.len()
            )
        });
        self.run_member(
            slot,
            inc,
            Input::Child {
                name,
                report: ChildReport::Crashed {
                    error: "a planted panic".into(),
                },
            },
        );
    }

    /// SIGKILL: the process is gone; the OS closes its sockets.
    pub(crate) fn crash(&mut self, slot: usize) {
        let Some(node) = self.nodes[slot].take() else {
            return;
        };
        self.log(|| format!("{} crashes", node.id));
        self.lose_unsent(slot);
        // Its clients' connections close: each retries elsewhere.
        let inc = node.id.incarnation;
        let closed: Vec<(usize, u64)> = self
            .clients
            .iter()
            .enumerate()
            .filter_map(|(c, cl)| {
                let inf = cl.inflight.as_ref()?;
                (inf.via == Some((slot, inc)) && inf.call != 0).then_some((c, inf.call))
            })
            .collect();
        for (client, call) in closed {
            self.reply_client(client, call, Err("connection closed".into()));
        }
        for inst in self.instances.values_mut() {
            if inst.slot == slot && inst.inc == node.id.incarnation {
                inst.alive = false;
            }
        }
        for (link, (peer, peer_inc)) in &node.links {
            self.send_on(slot, *peer, *link, *peer_inc, NetMsg::Fin);
        }
    }

    /// What a process that dies had sent and was not delivered yet: some of it was still in
    /// its own send queues (a ractor session writes to its socket asynchronously), so per
    /// peer a random suffix of it is lost; what reached the socket before arrives.
    pub(super) fn lose_unsent(&mut self, slot: usize) {
        let mut by_peer: BTreeMap<usize, Vec<(Time, u64)>> = BTreeMap::new();
        for Reverse(q) in self.queue.iter() {
            if let Ev::Net { from, slot: to, .. } = &q.ev
                && *from == slot
            {
                by_peer.entry(*to).or_default().push((q.at, q.seq));
            }
        }
        let mut lost: BTreeSet<u64> = BTreeSet::new();
        for (_, mut sent) in by_peer {
            sent.sort();
            let keep = self.rng.range(0, sent.len() as u64 + 1) as usize;
            lost.extend(sent[keep..].iter().map(|(_, seq)| *seq));
        }
        if lost.is_empty() {
            return;
        }
        let n = lost.len();
        self.log(|| format!("slot {slot}: {n} messages it sent are lost with it"));
        let queue = std::mem::take(&mut self.queue);
        self.queue = queue
            .into_iter()
            .filter(|Reverse(q)| !lost.contains(&q.seq))
            .collect();
    }

    /// SIGSTOP for `duration`.
    pub(crate) fn pause(&mut self, slot: usize, duration: Time) {
        let now = self.now;
        let Some(node) = self.nodes[slot].as_mut() else {
            return;
        };
        if node.life == Life::Paused {
            return;
        }
        node.life = Life::Paused;
        let (id, inc) = (node.id.clone(), node.id.incarnation);
        self.log(|| format!("{id} paused for {} ms", duration / MS));
        self.at(now + duration, Ev::Resume { slot, inc });
    }

    /// A freeze for `duration`: paused, and its monotonic clock stops too (a suspended virtual
    /// machine; Linux's CLOCK_MONOTONIC does not count a suspend), so on waking the node
    /// believes no time passed: a lease it held looks valid still.
    pub(crate) fn freeze(&mut self, slot: usize, duration: Time) {
        let now = self.now;
        let Some(node) = self.nodes[slot].as_mut() else {
            return;
        };
        if node.life == Life::Paused {
            return;
        }
        node.life = Life::Paused;
        node.frozen_clock = true;
        let (id, inc) = (node.id.clone(), node.id.incarnation);
        self.clock_stopped.insert((slot, inc));
        self.log(|| format!("{id} frozen for {} ms (its clock stops)", duration / MS));
        self.at(
            now + duration,
            Ev::Thaw {
                slot,
                inc,
                duration,
            },
        );
    }

    pub(super) fn thaw(&mut self, slot: usize, inc: u64, duration: Time) {
        if let Some(node) = self.node_mut(slot, inc)
            && std::mem::take(&mut node.frozen_clock)
        {
            node.boot += duration;
        }
        self.resume(slot, inc);
    }

    pub(super) fn resume(&mut self, slot: usize, inc: u64) {
        let Some(node) = self.node_mut(slot, inc) else {
            return;
        };
        node.life = Life::Running;
        let backlog = std::mem::take(&mut node.backlog);
        let id = node.id.clone();
        self.log(|| format!("{id} resumes ({} queued)", backlog.len()));
        // On waking, the timers may fire before what arrived is read, or after.
        if self.rng.chance(0.5) {
            self.link_input(slot, inc, LinkInput::Tick);
        }
        for ev in backlog {
            self.dispatch(ev);
        }
    }

    /// Cuts `slot` off from every other node (both ways, or only its outgoing side).
    pub(crate) fn partition(&mut self, slot: usize, one_way: bool) {
        self.log(|| format!("partition of slot {slot} (one way: {one_way})"));
        for other in 0..self.names.len() {
            if other != slot {
                self.blocked.insert((slot, other));
                if !one_way {
                    self.blocked.insert((other, slot));
                }
            }
        }
    }

    /// Holds what `from` sends `to` for `dur`, then delivers it in order.
    pub(crate) fn stall(&mut self, from: usize, to: usize, dur: Time) {
        self.log(|| format!("s{from} -> s{to}: stalls {} ms", dur / MS));
        self.blocked.insert((from, to));
        self.at(self.now + dur, Ev::Unstall { from, to });
    }

    pub(super) fn unstall(&mut self, from: usize, to: usize) {
        self.blocked.remove(&(from, to));
        let held = self.held.remove(&(from, to)).unwrap_or_default();
        for (session, msg) in held {
            let inc = self.nodes[to]
                .as_ref()
                .map(|n| n.id.incarnation)
                .unwrap_or(0);
            self.send_on(from, to, session, inc, msg);
        }
    }

    /// Ends every partition; held messages go out in order.
    pub(crate) fn heal(&mut self) {
        self.log(|| "partitions heal".into());
        self.blocked.clear();
        let held = std::mem::take(&mut self.held);
        for ((from, to), msgs) in held {
            for (session, msg) in msgs {
                let inc = self.nodes[to]
                    .as_ref()
                    .map(|n| n.id.incarnation)
                    .unwrap_or(0);
                self.send_on(from, to, session, inc, msg);
            }
        }
    }
}
