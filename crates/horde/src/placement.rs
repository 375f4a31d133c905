//! Placement: which member should host a name. Pure functions; the strategy is pluggable.
//!
//! The default is rendezvous (highest random weight) hashing over the members that may take
//! children (alive, not draining), restricted to the newest app version while versions differ,
//! so that during a rolling update every child moves once, old -> new, and never back
//! (Pekko's `app-version` ordering). Every node computes the same answer from the same view,
//! which is what lets the failover target of a dead node's children be agreed without talking.

use discovery::NodeId;

use crate::membership::{MemberStatus, Version};

/// A member as placement sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The member.
    pub node: NodeId,
    /// Its app version.
    pub version: Version,
    /// Its status.
    pub status: MemberStatus,
    /// Children it hosts (for strategies that balance load).
    pub load: usize,
    /// The state schemas it reads (callers leave out members that cannot read a child's state
    /// before asking placement).
    pub reads: Vec<u16>,
}

/// Chooses a host for a name.
pub trait Placement: Send + Sync + 'static {
    /// The member that should host `name`, among `candidates` (all known members, any status),
    /// or `None` when none may take children.
    fn place(&self, name: &str, candidates: &[Candidate]) -> Option<NodeId>;

    /// True when [`Candidate::load`] matters to this strategy (counting it costs a pass over
    /// the registry, so strategies that ignore it say no).
    fn wants_load(&self) -> bool {
        false
    }
}

/// Rendezvous hashing over alive members of the newest version, compared as SemVer (the
/// default).
#[derive(Debug, Clone, Copy, Default)]
pub struct Rendezvous;

impl Placement for Rendezvous {
    fn place(&self, name: &str, candidates: &[Candidate]) -> Option<NodeId> {
        let eligible: Vec<&Candidate> = candidates
            .iter()
            .filter(|c| c.status == MemberStatus::Alive)
            .collect();
        let newest = eligible.iter().map(|c| &c.version).max()?;
        eligible
            .iter()
            .filter(|c| &c.version == newest)
            .max_by_key(|c| (score(name, &c.node.name), &c.node.name))
            .map(|c| c.node.clone())
    }
}

/// A weight for (name, node) that every build computes the same: FNV-1a 64 over both, then a
/// finalizer to spread the bits (std's hashers are not stable across Rust releases, and nodes
/// of two releases must agree during a rolling update).
fn score(name: &str, node: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    for b in name.bytes().chain([0xff]).chain(node.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(PRIME);
    }
    // splitmix64 finalizer
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(name: &str, version: &str, status: MemberStatus) -> Candidate {
        Candidate {
            node: NodeId {
                name: name.into(),
                incarnation: 1,
            },
            version: Version::parse(version),
            status,
            load: 0,
            reads: vec![1],
        }
    }

    #[test]
    fn only_alive_members_of_the_newest_version() {
        let c = vec![
            cand("a", "1.0.0", MemberStatus::Alive),
            cand("b", "1.1.0", MemberStatus::Alive),
            cand("c", "1.2.0", MemberStatus::Draining),
            cand("d", "1.1.0", MemberStatus::Joining),
        ];
        for i in 0..100 {
            assert_eq!(Rendezvous.place(&format!("g{i}"), &c).unwrap().name, "b");
        }
        assert_eq!(Rendezvous.place("g", &c[2..]), None);
    }

    #[test]
    fn the_newest_version_is_the_newest_as_semver() {
        let c = vec![
            cand("a", "1.9.0", MemberStatus::Alive),
            cand("b", "1.10.0", MemberStatus::Alive),
            cand("c", "1.10.0-rc1", MemberStatus::Alive),
        ];
        for i in 0..100 {
            assert_eq!(Rendezvous.place(&format!("g{i}"), &c).unwrap().name, "b");
        }
        // A release candidate of the next version is newer than the last release.
        let c = vec![
            cand("a", "1.9.0", MemberStatus::Alive),
            cand("c", "1.10.0-rc1", MemberStatus::Alive),
        ];
        assert_eq!(Rendezvous.place("g", &c).unwrap().name, "c");
    }

    #[test]
    fn spreads_and_moves_little_when_a_member_joins() {
        let three = vec![
            cand("a", "1.0.0", MemberStatus::Alive),
            cand("b", "1.0.0", MemberStatus::Alive),
            cand("c", "1.0.0", MemberStatus::Alive),
        ];
        let mut four = three.clone();
        four.push(cand("d", "1.0.0", MemberStatus::Alive));
        let mut counts = std::collections::HashMap::new();
        let mut moved = 0;
        for i in 0..3000 {
            let n = format!("game-{i}");
            let before = Rendezvous.place(&n, &three).unwrap();
            let after = Rendezvous.place(&n, &four).unwrap();
            *counts.entry(before.name.clone()).or_insert(0) += 1;
            if before != after {
                assert_eq!(after.name, "d", "a join only moves names to the new member");
                moved += 1;
            }
        }
        for (_, c) in counts {
            assert!((800..1200).contains(&c), "uneven spread: {c}");
        }
        assert!(
            (500..1000).contains(&moved),
            "about a quarter should move, {moved} did"
        );
    }

    #[test]
    fn the_score_is_stable_across_builds() {
        // Golden values (computed independently): a change here breaks agreement with nodes
        // of older releases during a rolling update.
        assert_eq!(score("game-1", "minotaur@10.0.1.6"), 0xf2ca_0345_1f46_07e9);
        assert_eq!(score("", ""), 0x4f2d_b50f_1240_40cd);
    }
}
