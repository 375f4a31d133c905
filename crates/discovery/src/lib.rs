//! Discovery: finds the peers of a cluster node and keeps it connected to them, over
//! ractor_cluster.
//!
//! Two halves. Strategies turn configuration into peer sets: DNS A/AAAA polling of names such
//! as Docker Swarm's `tasks.<service>` or a Kubernetes headless service, DNS SRV, and static
//! hosts; the [`poller`] publishes their union on a `tokio::sync::watch` channel. The
//! [`connector`] runs the node's ractor_cluster endpoint, dials what discovery publishes,
//! watches every link with heartbeats, and reports nodes up and down. A console
//! ([`console_link`]) attaches to a node as a transient peer that never counts as a node.
//! What runs on the nodes is not this crate's business (`horde` builds on its node events).
//!
//! ```text
//! DNS / static hosts ──► poller ──watch<PeerSet>──► Connector ──► NodeEvent (Up/Down)
//!                                                     │
//!                                      NodeServer (ractor_cluster), Beacon
//! ```
//!
//! A node is a [`Connector`] started from a [`ConnectorConfig`] and a watch channel of
//! [`PeerSet`]s: [`spawn_discovery`] fills it from a [`DiscoveryConfig`], or an application (or
//! a test) publishes peers itself. The quick start of the `horde` crate starts one.
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
//! - [`wire`]: the versioned envelope every cluster message of the layers above travels in.
//! - `dns_server` (feature `dns-server`): an embedded DNS server for tests and demos.
//!
//! # How it works
//! - **Discovery** ([`poller`], [`dns`]) polls every name at once and then every interval,
//!   with hickory's cache off (Docker's DNS answers with TTL 600: a caching resolver misses
//!   new tasks) and names parsed as ASCII (`_` in a Swarm stack's `tasks.stack_service` is
//!   refused by IDNA). A lookup that fails keeps the last good answer and is logged once a
//!   minute, not once a poll.
//! - **The connector** dials each discovered peer that is not connected, concurrently, with a
//!   connect timeout, and redials with jittered exponential backoff (100 ms to 5 s) while the
//!   peer is still discovered. It **never disconnects a live node because it vanished from
//!   DNS**: Swarm removes a task from DNS about 2 s before it sends SIGTERM, and a draining
//!   node still has work to hand off (libcluster's DNSPoll gets this wrong, #190). When both
//!   sides discover each other at once, the node whose name sorts first waits ~150 ms so
//!   ractor_cluster rarely has to elect between two links, and when it does, no down/up flap
//!   is reported.
//! - **A full mesh**, as Erlang's `global` builds one: each heartbeat answer carries a digest
//!   of the nodes the answering node is connected to (and their addresses, when the digest
//!   changed), and the asker dials the ones it lacks. Discovery alone is not enough: in a Swarm
//!   update a new task that starts after an old one left DNS, but before that one drained,
//!   would never meet it, and requests for the old node's work arriving at the new node would
//!   wait until the drain (measured: 1 s client timeouts on about 90 of 4,000 requests before
//!   this). A node nobody lists any more is no longer redialled.
//! - **Failure detection**: ractor_cluster never notices a frozen or cut-off peer. Every
//!   peer's beacon ([`connector::beacon`]) is pinged each
//!   [`ConnectorConfig::heartbeat_interval`]; a peer silent for
//!   [`ConnectorConfig::failure_timeout`] is disconnected and reported down (within 2.5 s by
//!   default), and reconnected when it answers again.
//! - **Incarnations** ([`node_name`]): each run of a node presents `name@host#<boot time in
//!   µs>` in the handshake. A restarted node is a new incarnation, so its link never competes
//!   with a stale one in ractor_cluster's election (which rejected such reconnects in 5 of 10
//!   trials); the stale links are stopped first and the old incarnation is reported down
//!   ([`DownReason::Replaced`]).
//! - **Hostile input on the cluster port**: garbage and oversized length prefixes close the
//!   connection (ractor_cluster bounds frames, [`ConnectorConfig::max_frame_size`]); a
//!   connection that has not authenticated within [`ConnectorConfig::handshake_timeout`] (5 s)
//!   is closed, and beyond [`ConnectorConfig::max_pending_handshakes`] (256) half-open
//!   connections the oldest is closed, so idle connections cost nothing lasting. A peer with
//!   the wrong cookie is refused, logged with its name and address (`peer failed to
//!   authenticate (wrong cookie?)`) and never listed.
//! - **Node events** ([`NodeEvent::Up`] with the peer's incarnation and link,
//!   [`NodeEvent::Down`] with a reason: disconnected, unresponsive, replaced) are delivered in
//!   order to subscribers ([`Connector::subscribe`]), starting from a snapshot.
//!   [`Connector::partition`] and [`Connector::heal`] cut a node off on demand (tests,
//!   fencing).

#![warn(missing_docs)]

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

pub use config::{ConnectorConfig, Cookie, DiscoveryConfig, DnsQuery};
pub use connector::{Connector, ConnectorError, DownReason, NodeEvent, NodeEvents, PeerNode};
pub use node_name::{Host, NodeId, NodeName, NodeNameError};
pub use peer::{Peer, PeerSet};
pub use poller::{DiscoveryHandle, spawn_discovery};
pub use tls::{ClusterTls, TlsError, TlsPem};
pub use wire::{Envelope, WireError};
