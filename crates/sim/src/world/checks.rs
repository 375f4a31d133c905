//! The invariants the world checks as it runs, where it sees what the checker cannot: S1 on
//! every answer (two copies serving at once), S3 and S6 on every change of a registry.

use std::sync::Arc;

use super::World;
use crate::log::LogReply;

impl World {
    pub(super) fn on_ack(&mut self, slot: usize, instance: u64, r: LogReply) {
        let Some(inst) = self.instances.get(&instance) else {
            return;
        };
        let (name, epoch) = (inst.name.clone(), inst.epoch);
        let node = self.names.get(slot).cloned().unwrap_or_default();
        let now = self.now;
        self.log(|| {
            format!(
                "{name}#{instance} on {node} (epoch {epoch}) answers input {}",
                r.id
            )
        });
        if self.removed.get(name.as_ref()).is_some_and(|at| *at < now) {
            self.check.violate(format!(
                "S6: `{name}`: copy #{instance} on {node} (epoch {epoch}) answered input {} after the name was removed",
                r.id
            ));
        }
        let inst_ref = &self.instances[&instance];
        let clock_stopped = self.clock_stopped.contains(&(slot, inst_ref.inc));
        // S1, in overlapping time: once a newer copy runs, an older one may still answer an
        // input it applied before the newer copy's state was taken (a move's source, its
        // backup's acknowledgement arriving after the handover), never one the newer copy
        // lacks: that is two copies answering at once, whether or not the newer one has
        // answered anything yet. A newer copy still pending (spawned for a move not yet
        // handed over, which its source may still abort) does not run: its router does not
        // serve it.
        if !clock_stopped {
            // The copies that run are the ones the routers serve (one per node at most).
            let newer = self.nodes.iter().flatten().find_map(|n| {
                let (i, pending) = *n.routes.get(&name)?;
                let x = self.instances.get(&i)?;
                (i != instance
                    && !pending
                    && x.alive
                    && x.inc == n.id.incarnation
                    && x.epoch > epoch
                    && !x.core.has(r.id))
                .then_some((i, x))
            });
            if let Some((i, x)) = newer {
                let other = self.names.get(x.slot).cloned().unwrap_or_default();
                self.check.violate(format!(
                    "S1: `{name}`: copy #{instance} on {node} (epoch {epoch}) answered input {} while copy #{i} on {other} (epoch {}) already ran without it",
                    r.id, x.epoch
                ));
            }
        }
        if let Err(v) = self.check.ack(
            now,
            &name,
            instance,
            &node,
            epoch,
            r.id,
            &|id| inst_ref.core.has(id),
            clock_stopped,
        ) {
            self.check.violate(v);
        }
    }

    /// S3 (no epoch goes back in a replica) and S6 (a name whose stop was confirmed is never
    /// live again in any replica), after every input of a member.
    pub(super) fn check_registry(&mut self, slot: usize, inc: u64) {
        let now = self.now;
        let Some(node) = self.nodes[slot]
            .as_mut()
            .filter(|n| n.id.incarnation == inc)
        else {
            return;
        };
        let mut bad = Vec::new();
        // A member cut off while a name was stopped may still hold it live (it never heard);
        // one that held its tombstone must never hold it live again.
        let registry = node.core.registry();
        for (name, at) in &self.removed {
            let key = name.as_str();
            match registry.get_any(key) {
                Some(e) if e.removed && !node.seen_removed.contains(key) => {
                    node.seen_removed.insert(Arc::from(key));
                }
                Some(e) if e.removed => {}
                Some(_) if *at < now && node.seen_removed.contains(key) => bad.push(format!(
                    "S6: `{name}` was removed but is live again in the registry of {}",
                    node.id
                )),
                _ => {}
            }
        }
        // A collected tombstone leaves no record: the name starts over.
        let registry = node.core.registry();
        node.epochs
            .retain(|name, _| registry.get_any(name).is_some());
        for (name, e) in node.core.registry().iter() {
            let seen = node.epochs.entry(name.clone()).or_insert(0);
            if e.epoch < *seen {
                bad.push(format!(
                    "S3: {} saw the epoch of `{name}` go back from {} to {}",
                    node.id, *seen, e.epoch
                ));
            }
            *seen = (*seen).max(e.epoch);
        }
        for v in bad {
            self.check.violate(v);
        }
    }
}
