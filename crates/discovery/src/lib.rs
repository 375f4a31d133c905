//! Discovery: finds the peers of a Minotaur node and keeps it connected to them.
//!
//! Two halves. Strategies turn configuration into peer sets: DNS A/AAAA polling of names such
//! as `tasks.minotaur-stack_minotaur`, DNS SRV, and static hosts; the [`poller`] publishes
//! their union on a `tokio::sync::watch` channel. The [`connector`] runs the node's
//! ractor_cluster endpoint, dials what discovery publishes, watches every link with heartbeats,
//! and reports nodes up and down. A console ([`console_link`]) attaches to a node as a
//! transient peer that never counts as a node.
//!
//! ```text
//! DNS / CLUSTER_HOSTS ──► poller ──watch<PeerSet>──► Connector ──► NodeEvent (Up/Down)
//!                                                      │
//!                                       NodeServer (ractor_cluster), Beacon
//! ```
//!
//! # Layout
//! - [`node_name`]: `name@host` names, incarnations, and what a handshake name means.
//! - [`peer`]: a discovered peer and the peer set.
//! - [`config`]: discovery and connector settings and their defaults.
//! - [`dns`]: the cache-less hickory resolver and A/AAAA/SRV lookups.
//! - [`poller`]: the discovery loop.
//! - [`own_address`]: which local address peers reach this host on.
//! - [`connector`]: links, reconnects, heartbeats, node events; [`connector::link_table`] makes
//!   every decision about them without IO (for unit tests and simulators);
//!   [`connector::beacon`] answers heartbeats.
//! - [`console_link`]: attaching to a node as a console.
//! - [`tls`]: mutual TLS on node and console links.
//! - [`wire`]: the versioned envelope of every Minotaur cluster message.
//! - `dns_server` (feature `dns-server`): an embedded DNS server for tests and the demo.

pub mod config;
pub mod connector;
pub mod console_link;
pub mod dns;
#[cfg(feature = "dns-server")]
pub mod dns_server;
pub mod node_name;
pub mod own_address;
pub mod peer;
pub mod poller;
pub mod tls;
pub mod wire;

pub use config::{ConnectorConfig, DiscoveryConfig, DnsQuery};
pub use connector::{Connector, ConnectorError, DownReason, NodeEvent, NodeEvents, PeerNode};
pub use node_name::{Host, NodeId, NodeName, NodeNameError};
pub use peer::{Peer, PeerSet};
pub use poller::{DiscoveryHandle, spawn_discovery};
pub use tls::{ClusterTls, TlsError, TlsPem};
pub use wire::{Envelope, WireError};
