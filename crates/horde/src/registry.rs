//! The replicated registry: name -> (owner node and incarnation, epoch, spec), one full replica
//! on every node so lookups are local.
//!
//! An entry changes only by raising its epoch, and only the owner at epoch `e` writes `e + 1`
//! (a move, a restart by the failover target, a removal), so in a connected cluster there is no
//! race. Replicas merge by a total order on entries: higher epoch wins; at equal epochs (only
//! after a partition, when both sides restarted a name) a removal wins over a live entry, then
//! the larger owner id wins, deterministically on every node. The merge is a join
//! (commutative, associative, idempotent: see the proptests), so replicas converge under any
//! delivery order. Pure: no actors, no I/O.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use discovery::NodeId;

use crate::protocol::WireEntry;

/// One name's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The node (and run) hosting the name, or that hosted it last when `removed`.
    pub owner: Arc<NodeId>,
    /// Raised at every change of owner or state: by one for what the owner does itself (a
    /// move, an aborted move's thaw, a restart in place, a removal), to the next term for a
    /// failover (see [`failover_epoch`]).
    pub epoch: u64,
    /// How to start the name from scratch (the child spec), for restarts elsewhere.
    pub spec: Arc<[u8]>,
    /// A tombstone: the name was stopped on purpose. Kept so an older entry cannot revive it.
    pub removed: bool,
}

/// How many epochs an owner can raise its children by alone within one term: the low 32 bits
/// of an epoch count an owner's own changes, the high 32 bits are the term, raised by a
/// failover.
const TERM: u64 = 1 << 32;

/// The epoch a failover restarts a child at, after `newest` (the newest epoch it knows of the
/// child, from the registry or a replica): the first of the next term.
///
/// The old owner may have raised the child's epoch meanwhile where nobody heard it: a move
/// it offered that went unanswered thaws the child at `e + 2`, a crash restarts it in place
/// at `e + 1`, all while cut off. Raising by one would let that copy (which answered nothing:
/// it had no lease) win the merge when the partition heals, and every input the failover's
/// copy answered would be lost. A new term orders the failover's copy after anything the old
/// owner can reach alone; only another failover, decided by a majority, raises the term.
pub fn failover_epoch(newest: u64) -> u64 {
    (newest / TERM + 1) * TERM
}

impl Entry {
    /// The merge order: epoch, then removal, then owner.
    fn rank(&self) -> (u64, bool, &NodeId) {
        (self.epoch, self.removed, &self.owner)
    }

    /// True when `self` beats `other` in a merge.
    pub fn beats(&self, other: &Entry) -> bool {
        self.rank() > other.rank()
    }
}

/// What a merge did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Merged {
    /// The name was unknown.
    Inserted,
    /// The incoming entry replaced this one.
    Replaced(Entry),
    /// The local entry was newer or equal; nothing changed.
    Kept,
}

/// A full replica. A persistent ordered map: a clone is O(1) and shares structure, so the
/// single writer can publish an immutable copy after every change for readers on other tasks;
/// iteration is in name order, the same on every node and in every run.
///
/// It also keeps, as entries change, how many live names each owner holds and how many live
/// names there are: placement and backup choices read a member's load for every child they
/// place, and recounting the whole registry each time made every new child cost work
/// proportional to all children.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registry {
    entries: imbl::OrdMap<Arc<str>, Entry>,
    /// Live names per owner (by node name, whatever the run).
    loads: BTreeMap<String, usize>,
    /// Live names.
    live: usize,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Merges one entry.
    pub fn merge(&mut self, name: &str, incoming: Entry) -> Merged {
        let (old, added) = match self.entries.get_mut(name) {
            None => {
                self.count(&incoming, true);
                self.entries.insert(Arc::from(name), incoming);
                return Merged::Inserted;
            }
            Some(current) if incoming.beats(current) => {
                let added = (!incoming.removed).then(|| incoming.owner.clone());
                (std::mem::replace(current, incoming), added)
            }
            Some(_) => return Merged::Kept,
        };
        self.count(&old, false);
        if let Some(owner) = added {
            self.tally(&owner.name, true);
        }
        Merged::Replaced(old)
    }

    /// Counts `e` in (or out of) the loads, when it is live.
    fn count(&mut self, e: &Entry, add: bool) {
        if !e.removed {
            self.tally(&e.owner.name, add);
        }
    }

    /// One live name more (or fewer) for `owner`.
    fn tally(&mut self, owner: &str, add: bool) {
        if add {
            self.live += 1;
            match self.loads.get_mut(owner) {
                Some(n) => *n += 1,
                None => {
                    self.loads.insert(owner.to_string(), 1);
                }
            }
        } else {
            self.live = self.live.saturating_sub(1);
            if let Some(n) = self.loads.get_mut(owner) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.loads.remove(owner);
                }
            }
        }
    }

    /// Drops the record of `name` (a collected tombstone); returns it.
    pub fn remove(&mut self, name: &str) -> Option<Entry> {
        let gone = self.entries.remove(name)?;
        self.count(&gone, false);
        Some(gone)
    }

    /// How many live names the node named `owner` holds (any run of it).
    pub fn load_of(&self, owner: &str) -> usize {
        self.loads.get(owner).copied().unwrap_or(0)
    }

    /// Merges another replica into this one.
    pub fn merge_all(&mut self, other: &Registry) {
        for (name, entry) in &other.entries {
            self.merge(name, entry.clone());
        }
    }

    /// The live entry of `name` (tombstones are not returned).
    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.get(name).filter(|e| !e.removed)
    }

    /// The entry of `name`, tombstone or not.
    pub fn get_any(&self, name: &str) -> Option<&Entry> {
        self.entries.get(name)
    }

    /// Number of live names.
    pub fn live(&self) -> usize {
        self.live
    }

    /// Number of records, tombstones included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there is no record at all.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every record.
    pub fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &Entry)> {
        self.entries.iter()
    }
}

/// Converts registry entries to their wire form with a node table.
pub fn to_wire<'a>(
    entries: impl Iterator<Item = (&'a Arc<str>, &'a Entry)>,
) -> (Vec<NodeId>, Vec<WireEntry>) {
    let mut nodes: Vec<NodeId> = Vec::new();
    let mut index: HashMap<NodeId, u32> = HashMap::new();
    let mut out = Vec::new();
    for (name, e) in entries {
        let owner = *index.entry((*e.owner).clone()).or_insert_with(|| {
            nodes.push((*e.owner).clone());
            (nodes.len() - 1) as u32
        });
        out.push(WireEntry {
            name: name.to_string(),
            owner,
            epoch: e.epoch,
            spec: e.spec.to_vec(),
            removed: e.removed,
        });
    }
    (nodes, out)
}

/// One message's worth of entries on the wire: its node table and its entries.
pub type WirePart = (Vec<NodeId>, Vec<WireEntry>);

/// Entries on the wire cut into messages of at most `budget` bytes: each part with the node
/// table of the whole set (a few node ids) and entries that fit beside it and `fixed` (the
/// message without its entries and node table). Entries that alone exceed the budget (a huge
/// spec) are returned apart by name and size: they are never sent.
pub fn to_wire_parts<'a>(
    entries: impl Iterator<Item = (&'a Arc<str>, &'a Entry)>,
    fixed: usize,
    budget: usize,
) -> (Vec<WirePart>, Vec<(String, usize)>) {
    let (nodes, wire) = to_wire(entries);
    let fixed = fixed.saturating_add(crate::protocol::encoded_len(&nodes));
    let crate::protocol::Batches { batches, too_large } =
        crate::protocol::batch_by_size(wire, fixed, budget);
    let parts = batches.into_iter().map(|b| (nodes.clone(), b)).collect();
    let too_large = too_large.into_iter().map(|(e, n)| (e.name, n)).collect();
    (parts, too_large)
}

/// Converts wire entries back; entries whose owner index is out of the table are returned
/// apart (a malformed message), by name.
pub fn from_wire(nodes: &[NodeId], entries: Vec<WireEntry>) -> (Vec<(String, Entry)>, Vec<String>) {
    let owners: Vec<Arc<NodeId>> = nodes.iter().cloned().map(Arc::new).collect();
    let mut good = Vec::with_capacity(entries.len());
    let mut bad = Vec::new();
    for e in entries {
        match owners.get(e.owner as usize) {
            Some(owner) => good.push((
                e.name,
                Entry {
                    owner: owner.clone(),
                    epoch: e.epoch,
                    spec: Arc::from(e.spec),
                    removed: e.removed,
                },
            )),
            None => bad.push(e.name),
        }
    }
    (good, bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn node(name: &str, inc: u64) -> Arc<NodeId> {
        Arc::new(NodeId {
            name: name.into(),
            incarnation: inc,
        })
    }

    fn entry(owner: &str, epoch: u64, removed: bool) -> Entry {
        Entry {
            owner: node(owner, 1),
            epoch,
            spec: Arc::from(&b"spec"[..]),
            removed,
        }
    }

    #[test]
    fn a_registry_with_large_specs_goes_in_parts_within_the_budget_all_of_it() {
        let budget = 16 * 1024;
        let mut r = Registry::new();
        for i in 0..100 {
            let mut e = entry(if i % 2 == 0 { "a" } else { "b" }, 1, false);
            e.spec = Arc::from(vec![1u8; 1000]);
            r.merge(&format!("g{i}"), e);
        }
        let mut huge = entry("a", 1, false);
        huge.spec = Arc::from(vec![1u8; budget]);
        r.merge("huge", huge);
        let (parts, too_large) = to_wire_parts(r.iter(), 100, budget);
        assert_eq!(too_large.len(), 1);
        assert_eq!(too_large[0].0, "huge");
        assert!(parts.len() >= 7, "{} parts", parts.len());
        let mut names = BTreeSet::new();
        for (nodes, entries) in &parts {
            let bytes = crate::protocol::encoded_len(&(nodes, entries)) + 100;
            assert!(bytes <= budget, "{bytes} bytes");
            let (back, bad) = from_wire(nodes, entries.clone());
            assert!(bad.is_empty());
            names.extend(back.into_iter().map(|(n, _)| n));
        }
        assert_eq!(names.len(), 100);
    }

    #[test]
    fn higher_epoch_wins_then_removal_then_owner() {
        let mut r = Registry::new();
        assert_eq!(r.merge("g", entry("a", 1, false)), Merged::Inserted);
        assert_eq!(
            r.merge("g", entry("b", 2, false)).clone(),
            Merged::Replaced(entry("a", 1, false))
        );
        assert_eq!(r.merge("g", entry("a", 1, false)), Merged::Kept);
        // equal epochs after a partition: the deterministic winner is the larger owner
        assert!(matches!(
            r.merge("g", entry("c", 2, false)),
            Merged::Replaced(_)
        ));
        assert_eq!(r.get("g").unwrap().owner.name, "c");
        assert_eq!(r.merge("g", entry("b", 2, false)), Merged::Kept);
        // a removal at the same epoch wins and hides the name
        assert!(matches!(
            r.merge("g", entry("a", 2, true)),
            Merged::Replaced(_)
        ));
        assert!(r.get("g").is_none());
        assert_eq!(r.live(), 0);
        assert_eq!(r.len(), 1);
    }

    fn arb_entry() -> impl Strategy<Value = (String, Entry)> {
        (
            prop::sample::select(vec!["g1", "g2", "g3"]),
            prop::sample::select(vec!["a", "b", "c"]),
            1u64..4,
            0u64..3,
            any::<bool>(),
        )
            .prop_map(|(name, owner, inc, epoch, removed)| {
                (
                    name.to_string(),
                    Entry {
                        owner: node(owner, inc),
                        epoch,
                        spec: Arc::from(&b""[..]),
                        removed,
                    },
                )
            })
    }

    fn replica(entries: &[(String, Entry)]) -> Registry {
        let mut r = Registry::new();
        for (n, e) in entries {
            r.merge(n, e.clone());
        }
        r
    }

    fn merged(a: &Registry, b: &Registry) -> Registry {
        let mut out = a.clone();
        out.merge_all(b);
        out
    }

    proptest! {
        #[test]
        fn merge_is_commutative(a in prop::collection::vec(arb_entry(), 0..12), b in prop::collection::vec(arb_entry(), 0..12)) {
            let (a, b) = (replica(&a), replica(&b));
            prop_assert_eq!(merged(&a, &b), merged(&b, &a));
        }

        #[test]
        fn merge_is_associative(a in prop::collection::vec(arb_entry(), 0..8), b in prop::collection::vec(arb_entry(), 0..8), c in prop::collection::vec(arb_entry(), 0..8)) {
            let (a, b, c) = (replica(&a), replica(&b), replica(&c));
            prop_assert_eq!(merged(&merged(&a, &b), &c), merged(&a, &merged(&b, &c)));
        }

        #[test]
        fn merge_is_idempotent(a in prop::collection::vec(arb_entry(), 0..12)) {
            let a = replica(&a);
            prop_assert_eq!(merged(&a, &a), a);
        }

        #[test]
        fn replicas_converge_under_any_delivery_order(
            updates in prop::collection::vec(arb_entry(), 1..20),
            orders in prop::collection::vec(Just(()).prop_perturb(|_, mut rng| rng.random::<u64>()), 3),
        ) {
            // Three replicas receive the same updates, each in its own shuffled order, some twice.
            let mut replicas = Vec::new();
            for seed in orders {
                let mut order: Vec<usize> = (0..updates.len()).collect();
                let mut s = seed;
                for i in (1..order.len()).rev() {
                    s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    order.swap(i, (s >> 33) as usize % (i + 1));
                }
                let mut r = Registry::new();
                for i in order.iter().chain(order.iter().take(3)) {
                    let (n, e) = &updates[*i];
                    r.merge(n, e.clone());
                }
                replicas.push(r);
            }
            prop_assert_eq!(&replicas[0], &replicas[1]);
            prop_assert_eq!(&replicas[1], &replicas[2]);
        }

        #[test]
        fn loads_are_what_a_recount_finds(
            updates in prop::collection::vec(arb_entry(), 1..30),
            drops in prop::collection::vec(any::<bool>(), 30),
        ) {
            let mut r = Registry::new();
            for (i, (n, e)) in updates.iter().enumerate() {
                r.merge(n, e.clone());
                if drops[i] && i % 3 == 0 {
                    r.remove(n);
                }
            }
            let mut loads: BTreeMap<String, usize> = BTreeMap::new();
            for (_, e) in r.iter().filter(|(_, e)| !e.removed) {
                *loads.entry(e.owner.name.clone()).or_insert(0) += 1;
            }
            for (owner, n) in &loads {
                prop_assert_eq!(r.load_of(owner), *n);
            }
            prop_assert_eq!(&r.loads, &loads);
            prop_assert_eq!(r.live(), r.iter().filter(|(_, e)| !e.removed).count());
        }
    }
}
