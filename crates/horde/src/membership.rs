//! Membership: who takes part in this horde, in which state and with which app version.
//!
//! Built from the connector's node events plus the `Hello`/`Status` messages members send each
//! other. A member is `Joining` until its registry is synced, then `Alive`; `Draining` while it
//! hands its children off (it gets no new ones); `Dead` once its node is down. Pure data and
//! transitions; the member actor applies them.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

use discovery::NodeId;
use serde::{Deserialize, Serialize};

pub use crate::protocol::MemberStatus;
use crate::protocol::Protocols;

/// An app version as a member announces it, compared as SemVer (`1.10.0` > `1.9.0` >
/// `1.9.0-rc1`: a pre-release comes before its release). The text is kept as sent, so a
/// member of another build that announces something that is not SemVer is still a member: it
/// sorts below every SemVer version (then by its text), so placement never prefers it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Version(pub String);

impl Version {
    /// Wraps a version string.
    pub fn parse(s: &str) -> Self {
        Version(s.to_string())
    }

    /// The SemVer reading, when it is one.
    pub fn semver(&self) -> Option<semver::Version> {
        semver::Version::parse(&self.0).ok()
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        // `None` < `Some`: not SemVer sorts first. Two texts that are equal as SemVer are the
        // same text (SemVer has one spelling per version, build metadata included), so this
        // agrees with `Eq`; the text comparison only orders non-SemVer ones.
        (self.semver(), &self.0).cmp(&(other.semver(), &other.0))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What this node knows of one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    /// Which run of which node.
    pub node: NodeId,
    /// Its state.
    pub status: MemberStatus,
    /// Its app version.
    pub version: Version,
    /// The state schemas its build reads.
    pub reads: Vec<u16>,
    /// The protocol versions it speaks, from its hello (`None`: known only from another
    /// member's list, not heard from yet).
    pub protocols: Option<Protocols>,
}

/// Why this node may not join the cluster it found: a member of it speaks no protocol
/// version this build speaks (or nothing it sends can be decoded). The node refuses at the
/// door (`minotaur start` exits 3 with this text): nothing was handed to it and no member
/// counts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incompatible {
    /// This node.
    pub node: NodeId,
    /// This node's app version.
    pub version: Version,
    /// The protocol versions this node speaks.
    pub protocols: Protocols,
    /// The member it cannot speak with (`None`: several, none of whose messages decode).
    pub peer: Option<NodeId>,
    /// That member's app version, when its hello said it.
    pub peer_version: Option<String>,
    /// The protocol versions that member speaks (`None`: not known, its messages do not
    /// decode).
    pub peer_protocols: Option<Protocols>,
    /// Messages received that did not decode.
    pub undecodable: u64,
}

impl fmt::Display for Incompatible {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "this node ({}, version {}, protocol {}) cannot join the cluster: ",
            self.node.name, self.version, self.protocols
        )?;
        let peer = self.peer.as_ref().map_or_else(
            || "its members".to_string(),
            |p| format!("member {}", p.name),
        );
        let version = self.peer_version.as_deref().unwrap_or("unknown");
        match self.peer_protocols {
            Some(theirs) if theirs.max < self.protocols.min => write!(
                f,
                "{peer} runs version {version}, protocol {theirs}, which this release no longer \
                 speaks. A release rolls forward only from the one before it: upgrade the \
                 cluster to a release that speaks protocol {} first (see CHANGELOG.md), or run \
                 version {version} on this node",
                self.protocols.min
            ),
            Some(theirs) => write!(
                f,
                "{peer} runs version {version}, protocol {theirs}, newer than this release \
                 speaks. Run version {version} (or a release that speaks protocol {}) on this \
                 node",
                theirs.min
            ),
            None => write!(
                f,
                "{peer} send messages this release cannot decode ({} received, none readable; \
                 version {version}): they run a release this one cannot speak with. Run the \
                 cluster's release on this node (see CHANGELOG.md)",
                self.undecodable
            ),
        }
    }
}

/// The membership view: one entry per node name (the current incarnation).
#[derive(Debug, Clone, Default)]
pub struct Members {
    by_name: BTreeMap<String, MemberInfo>,
}

impl Members {
    /// An empty view.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records what a member said about itself. Another run of the same name replaces the one
    /// known, whatever their incarnation numbers (a restarted node's wall clock may be behind
    /// its previous run's): two runs of one name cannot both be up, so the one heard from now
    /// is the live one. Returns the previous info when something changed.
    pub fn upsert(&mut self, info: MemberInfo) -> Option<Option<MemberInfo>> {
        match self.by_name.get(&info.node.name) {
            Some(cur) if *cur == info => None,
            _ => Some(self.by_name.insert(info.node.name.clone(), info)),
        }
    }

    /// Marks `node` dead (if that incarnation is the one known). A member that left stays
    /// left: it no longer counts, alive or not.
    pub fn mark_dead(&mut self, node: &NodeId) -> bool {
        match self.by_name.get_mut(&node.name) {
            Some(m)
                if m.node == *node
                    && !matches!(m.status, MemberStatus::Dead | MemberStatus::Left) =>
            {
                m.status = MemberStatus::Dead;
                true
            }
            _ => false,
        }
    }

    /// Marks `node` as having left (if that run is the one known and it had not): another
    /// member heard its farewell. A member that left stays left, whatever this member thought
    /// of it (a farewell sent while its link to this member was down is relayed so).
    pub fn mark_left(&mut self, node: &NodeId) -> bool {
        match self.by_name.get_mut(&node.name) {
            Some(m) if m.node == *node && m.status != MemberStatus::Left => {
                m.status = MemberStatus::Left;
                true
            }
            _ => false,
        }
    }

    /// The member called `name`.
    pub fn get(&self, name: &str) -> Option<&MemberInfo> {
        self.by_name.get(name)
    }

    /// Every member, dead ones included.
    pub fn iter(&self) -> impl Iterator<Item = &MemberInfo> {
        self.by_name.values()
    }

    /// Members that are not dead and did not leave.
    pub fn live(&self) -> impl Iterator<Item = &MemberInfo> {
        self.by_name
            .values()
            .filter(|m| !matches!(m.status, MemberStatus::Dead | MemberStatus::Left))
    }

    /// Forgets one dead (or departed) member run (after its children were taken care of).
    pub fn forget(&mut self, node: &NodeId) {
        if self.by_name.get(&node.name).is_some_and(|m| {
            m.node == *node && matches!(m.status, MemberStatus::Dead | MemberStatus::Left)
        }) {
            self.by_name.remove(&node.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_as_semver() {
        let v = Version::parse;
        assert!(v("1.10.0") > v("1.9.0"));
        assert!(v("1.9.0") > v("1.9.0-rc1"));
        assert!(v("1.10.0") > v("1.9.0-rc1"));
        assert!(v("2.0.0") > v("1.99.99"));
        assert!(v("1.0.0-rc.2") > v("1.0.0-rc.1"));
        assert!(
            v("1.0.0-rc.10") > v("1.0.0-rc.9"),
            "numeric identifiers compare as numbers"
        );
        assert!(v("1.0.0-alpha") < v("1.0.0-alpha.1"));
        assert_eq!(v("1.0.0").cmp(&v("1.0.0")), Ordering::Equal);
        let mut sorted = vec![v("1.10.0"), v("1.9.0-rc1"), v("0.2.0"), v("1.9.0")];
        sorted.sort();
        assert_eq!(
            sorted,
            vec![v("0.2.0"), v("1.9.0-rc1"), v("1.9.0"), v("1.10.0")]
        );
    }

    #[test]
    fn a_version_that_is_not_semver_sorts_below_every_semver_one() {
        let v = Version::parse;
        assert!(v("2") < v("0.0.1"));
        assert!(v("banana") < v("0.0.1-alpha"));
        assert!(v("1.0") < v("1.0.0"));
        assert_eq!(v("banana").cmp(&v("banana")), Ordering::Equal);
        assert!(v("a") < v("b"));
    }

    #[test]
    fn the_run_heard_from_last_replaces_the_other_whatever_its_incarnation() {
        let mut m = Members::new();
        let info = |inc, status| MemberInfo {
            protocols: None,
            node: NodeId {
                name: "a".into(),
                incarnation: inc,
            },
            status,
            version: Version::parse("1.0.0"),
            reads: vec![1],
        };
        assert!(m.upsert(info(2, MemberStatus::Alive)).is_some());
        assert!(m.upsert(info(2, MemberStatus::Alive)).is_none());
        // A restart whose clock was behind: a lower incarnation, still the live run.
        assert!(m.upsert(info(1, MemberStatus::Joining)).is_some());
        assert_eq!(m.get("a").unwrap().node.incarnation, 1);
        assert!(!m.mark_dead(&info(2, MemberStatus::Alive).node));
        assert!(m.mark_dead(&info(1, MemberStatus::Alive).node));
        assert_eq!(m.live().count(), 0);
    }
}
