//! A schedule's steps carried out on the world, each at its time.

use super::{MS, SEC, World};
use crate::step::Step;

/// Carries out step `i` of the world's schedule.
pub(crate) fn run_step(w: &mut World, i: usize) {
    let Some(step) = w.steps.get(i).cloned() else {
        return;
    };
    let running = |w: &World, name: &str| -> Option<usize> {
        let slot = w.names.iter().position(|n| n == name)?;
        w.nodes[slot].as_ref().map(|_| slot)
    };
    match step {
        Step::Start { node, schema } => {
            if running(w, &node).is_none() {
                w.start_node(&node, schema);
                w.killed.remove(&node);
            }
        }
        Step::RestartBehind { node, schema } => {
            if running(w, &node).is_none() {
                let slot = w.slot_of(&node);
                let behind = w.rng.range(MS, 10 * SEC) as i64;
                let wall_now = (1_800_000_000_000_000u64 + w.now) as i64;
                w.wall_skew[slot] = w.last_inc[slot] as i64 - wall_now - behind;
                w.start_node(&node, schema);
                w.killed.remove(&node);
            }
        }
        Step::Create { count } => {
            for _ in 0..count {
                let slots = w.up_slots();
                if let Some(slot) = w.rng.pick(&slots).copied() {
                    let name = w.new_child_name();
                    w.op_start(slot, &name);
                }
            }
        }
        Step::CreateAt { node, count } => {
            if let Some(slot) = running(w, &node) {
                for _ in 0..count {
                    let name = w.new_child_name();
                    w.op_start(slot, &name);
                }
            }
        }
        Step::Remove { count } => {
            for _ in 0..count {
                let slots = w.up_slots();
                let names = w.live_names.clone();
                if let (Some(slot), Some(name)) =
                    (w.rng.pick(&slots).copied(), w.rng.pick(&names).cloned())
                {
                    w.op_stop(slot, &name);
                }
            }
        }
        Step::Clients(n) => w.add_clients(n),
        Step::CrashOnAccept => w.crash_on_accept = true,
        Step::ChildCrash => w.crash_child(),
        Step::StopClients => w.stop_clients(),
        Step::Crash(node) => {
            if let Some(slot) = running(w, &node) {
                w.crash(slot);
                w.killed.insert(node);
            }
        }
        Step::Pause { node, dur } => {
            if let Some(slot) = running(w, &node) {
                w.pause(slot, dur);
            }
        }
        Step::Freeze { node, dur } => {
            if let Some(slot) = running(w, &node) {
                w.freeze(slot, dur);
            }
        }
        Step::Partition { node, one_way } => {
            if let Some(slot) = running(w, &node) {
                w.partition(slot, one_way);
            }
        }
        Step::Heal => w.heal(),
        Step::Stall { from, to, dur } => {
            if let (Some(a), Some(b)) = (running(w, &from), running(w, &to)) {
                w.stall(a, b, dur);
            }
        }
        Step::Drain { node, exit } => {
            if let Some(slot) = running(w, &node) {
                w.op_drain(slot, exit);
            }
        }
        Step::Flap { a, b } => {
            if let (Some(a), Some(b)) = (running(w, &a), running(w, &b)) {
                w.flap(a, b);
            }
        }
        Step::DrainDeadline(t) => w.config.drain_deadline = t,
    }
}
