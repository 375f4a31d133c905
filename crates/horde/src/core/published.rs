//! The read side the member core publishes: [`CoreView`], a snapshot of its members,
//! registry and placement that readers use without a message.

use super::*;

/// What the read side sees of the core (published by the shell after every change).
#[derive(Debug, Clone)]
pub struct CoreView {
    /// This node.
    pub me: NodeId,
    /// This node's app version.
    pub version: Version,
    /// This member's own status.
    pub status: MemberStatus,
    /// The registry replica.
    pub registry: Registry,
    /// Other members (dead ones until forgotten).
    pub members: Members,
    /// Members that said hello, by node name: the ones messages may be routed to.
    pub peers: BTreeMap<String, NodeId>,
    /// This member's quorum lease runs until then (its children answer only before it).
    pub lease_until: Option<Instant>,
    /// The state schemas this build reads.
    pub reads: Vec<u16>,
    /// The protocol versions this member speaks.
    pub protocols: Protocols,
    /// The highest protocol version every member speaks: the one in use.
    pub protocol_in_use: u16,
    /// Set when this node cannot join the cluster it found (see [`Incompatible`]).
    pub refusal: Option<Incompatible>,
}

impl CoreView {
    /// True while this member holds its quorum lease.
    pub fn lease_valid(&self, now: Instant) -> bool {
        self.lease_until.is_some_and(|u| now < u)
    }

    /// The live registry entry of `name`.
    pub fn entry(&self, name: &str) -> Option<&Entry> {
        self.registry.get(name)
    }

    /// The member list with this node first.
    pub fn member_list(&self) -> Vec<MemberInfo> {
        let mut out = vec![MemberInfo {
            node: self.me.clone(),
            status: self.status,
            version: self.version.clone(),
            reads: self.reads.clone(),
            protocols: Some(self.protocols),
        }];
        out.extend(self.members.iter().cloned());
        out
    }

    /// Every member including this node, as placement sees them.
    pub fn candidates(&self, wants_load: bool) -> Vec<Candidate> {
        candidates(
            &self.me,
            &self.version,
            &self.reads,
            self.status,
            &self.members,
            &self.registry,
            wants_load,
        )
    }

    /// True when `node` (that incarnation) is a member that said hello and is not dead.
    pub fn is_peer(&self, node: &NodeId) -> bool {
        self.peers.get(&node.name) == Some(node)
    }

    /// Where a routed message for `name` that is not hosted here goes next: the owner the
    /// registry names, or the answer to give instead.
    pub fn forward_to(&self, name: &str, hops: u8) -> Result<NodeId, RouteReply> {
        let Some(entry) = self.registry.get(name) else {
            return Err(RouteReply::NotFound);
        };
        if *entry.owner == self.me {
            return Err(RouteReply::Unavailable(Unavailable::Restarting));
        }
        if hops >= MAX_HOPS {
            return Err(RouteReply::Unavailable(Unavailable::TooManyHops));
        }
        if !self.is_peer(&entry.owner) {
            return Err(RouteReply::Unavailable(Unavailable::OwnerUnreachable {
                owner: entry.owner.name.clone(),
            }));
        }
        Ok((*entry.owner).clone())
    }
}
