//! Peers as discovery finds them: the name a node at an address is expected to have, and the
//! address to dial. Owns nothing but these values; strategies produce them, the connector
//! consumes them.

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;

use crate::NodeName;

/// A node discovery believes exists.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Peer {
    /// The name it should present (`basename@ip` for DNS, as given for static hosts).
    pub name: NodeName,
    /// Where its cluster listener is.
    pub addr: SocketAddr,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.addr)
    }
}

/// Everything discovery currently knows, published on a `tokio::sync::watch` channel.
pub type PeerSet = BTreeSet<Peer>;
