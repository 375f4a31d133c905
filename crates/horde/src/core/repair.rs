//! Anti-entropy of the registry: a replica that missed a delta (a replaced session drops what
//! was in flight on it) repairs itself instead of staying stale forever.
//!
//! Each member keeps one hash per bucket of names (the XOR of its entries' hashes, names
//! spread over [`BUCKETS`] buckets by a stable hash), updated on every change. Every
//! [`EVERY`] it sends its buckets to each peer; a peer whose buckets differ sends back its
//! entries of those buckets and asks for the sender's, so both converge (the merge is a
//! join). A digest of equal replicas costs 64 numbers and nothing else.

use std::sync::Arc;
use std::time::{Duration, Instant};

use discovery::NodeId;

use super::{Core, Effect};
use crate::protocol::Wire;
use crate::registry::{self, Entry};

/// Buckets of names.
pub const BUCKETS: usize = 64;
/// How often digests go out.
pub const EVERY: Duration = Duration::from_secs(2);

/// FNV-1a 64 then a splitmix finalizer: the same in every build (std's hashers are not).
fn fnv(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.iter().chain([0xffu8].iter()) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The bucket of a name.
pub fn bucket(name: &str) -> usize {
    (fnv(&[name.as_bytes()]) % BUCKETS as u64) as usize
}

/// The hash of one entry (what two replicas must agree on).
pub fn entry_hash(name: &str, e: &Entry) -> u64 {
    fnv(&[
        name.as_bytes(),
        &e.epoch.to_le_bytes(),
        e.owner.name.as_bytes(),
        &e.owner.incarnation.to_le_bytes(),
        &[u8::from(e.removed)],
    ])
}

/// Digests of a member's replica.
#[derive(Debug)]
pub(super) struct Repair {
    buckets: Vec<u64>,
    last: Option<Instant>,
}

impl Default for Repair {
    fn default() -> Self {
        Self {
            buckets: vec![0; BUCKETS],
            last: None,
        }
    }
}

impl Repair {
    /// An entry of `name` changed from `old` to `new` (their hashes).
    pub fn changed(&mut self, name: &str, old: Option<u64>, new: Option<u64>) {
        let b = bucket(name);
        if let Some(o) = old {
            self.buckets[b] ^= o;
        }
        if let Some(n) = new {
            self.buckets[b] ^= n;
        }
    }
}

impl<T> Core<T> {
    pub(super) fn repair_tick(&mut self, now: Instant, out: &mut Vec<Effect<T>>) {
        if self
            .repair
            .last
            .is_some_and(|t| now.saturating_duration_since(t) < EVERY)
        {
            return;
        }
        self.repair.last = Some(now);
        let to: Vec<NodeId> = self.peers.values().cloned().collect();
        if to.is_empty() {
            return;
        }
        out.push(Effect::Broadcast {
            to,
            wire: Wire::Digest {
                from: self.me.clone(),
                buckets: self.repair.buckets.clone(),
            },
        });
    }

    /// A peer's digest: where it differs, send it these entries and ask for its own.
    pub(super) fn on_digest(&mut self, out: &mut Vec<Effect<T>>, from: NodeId, buckets: Vec<u64>) {
        if buckets.len() != BUCKETS {
            return;
        }
        let differ: Vec<u16> = (0..BUCKETS)
            .filter(|b| buckets[*b] != self.repair.buckets[*b])
            .map(|b| b as u16)
            .collect();
        if differ.is_empty() {
            return;
        }
        tracing::debug!(peer = %from, buckets = differ.len(), "registry replicas differ; repairing");
        self.send_buckets(out, &from, &differ);
        out.push(Effect::Send {
            to: from,
            wire: Wire::Repair {
                from: self.me.clone(),
                buckets: differ,
            },
        });
    }

    /// A peer asks for these buckets.
    pub(super) fn on_repair(&mut self, out: &mut Vec<Effect<T>>, from: NodeId, buckets: Vec<u16>) {
        let buckets: Vec<u16> = buckets
            .into_iter()
            .filter(|b| (*b as usize) < BUCKETS)
            .collect();
        self.send_buckets(out, &from, &buckets);
    }

    fn send_buckets(&self, out: &mut Vec<Effect<T>>, to: &NodeId, buckets: &[u16]) {
        let mut wanted = [false; BUCKETS];
        for b in buckets {
            wanted[*b as usize] = true;
        }
        let entries: Vec<(&Arc<str>, &Entry)> = self
            .registry
            .iter()
            .filter(|(n, _)| wanted[bucket(n)])
            .collect();
        let fixed = crate::protocol::encoded_len(&Wire::Entries {
            from: self.me.clone(),
            nodes: Vec::new(),
            entries: Vec::new(),
        });
        let (parts, too_large) =
            registry::to_wire_parts(entries.into_iter(), fixed, self.config.max_message_bytes);
        for (name, bytes) in too_large {
            tracing::error!(child = %name, bytes, budget = self.config.max_message_bytes, "registry entry too large to send (over the message budget); not repaired");
        }
        for (nodes, wire) in parts {
            out.push(Effect::Send {
                to: to.clone(),
                wire: Wire::Entries {
                    from: self.me.clone(),
                    nodes,
                    entries: wire,
                },
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_stable_across_builds() {
        // Golden values: a change here breaks agreement with older nodes.
        assert_eq!(bucket("game-1"), bucket("game-1"));
        let e = Entry {
            owner: Arc::new(NodeId {
                name: "n@10.0.0.1".into(),
                incarnation: 7,
            }),
            epoch: 3,
            spec: Arc::from(&b""[..]),
            removed: false,
        };
        let h = entry_hash("g", &e);
        let mut e2 = e.clone();
        e2.epoch = 4;
        assert_ne!(h, entry_hash("g", &e2));
        assert_eq!(h, entry_hash("g", &e));
    }

    #[test]
    fn a_digest_follows_changes_in_either_order() {
        let mut a = Repair::default();
        let mut b = Repair::default();
        a.changed("x", None, Some(1));
        a.changed("y", None, Some(2));
        a.changed("x", Some(1), Some(5));
        b.changed("y", None, Some(2));
        b.changed("x", None, Some(5));
        assert_eq!(a.buckets, b.buckets);
    }
}
