//! horde: cluster membership, a replicated registry and a distributed supervisor that hands
//! live actors between nodes, Horde-like, on ractor_cluster. Generic: it knows nothing of the
//! application it hosts.
//!
//! An application implements [`Child`] and [`Handoff`] for its actor type and starts a
//! [`Horde`] on a running [`discovery::Connector`]. Then, from any node, `start_child` places
//! a child (rendezvous hashing over alive members, newest app version first), `call`/`cast`
//! reach it wherever it lives, `subscribe` follows its events, and `drain` (what SIGTERM does)
//! moves every child off the node with its state and its pending messages. Children of a node
//! that dies restart elsewhere, from their last replicated snapshot when they opt in.
//!
//! Every decision is made by pure cores ([`core`]: one per member, one per hosted child) that
//! take the time and an input and return effects; the actors only run those effects, and a
//! deterministic simulator runs the same cores under virtual time and injected faults.
//!
//! # Quick start
//! A child type, one node, one child, one call. `cargo run -p horde --example counter` runs
//! three nodes in one process and drains one of them.
//! ```
//! use std::time::Duration;
//!
//! use discovery::{Connector, ConnectorConfig, NodeId, NodeName, PeerSet};
//! use horde::{Child, Ctx, Handoff, HandoffError, Horde, HordeConfig};
//! use serde::{Deserialize, Serialize};
//!
//! /// The child: a count; each message adds to it.
//! #[derive(Debug, Serialize, Deserialize)]
//! struct Counter(u64);
//!
//! impl Child for Counter {
//!     type Spec = u64; // how to start one: its first count (kept for restarts)
//!     type Msg = u64; // how much to add
//!     type Reply = u64; // the count after it
//!     type Event = u64; // what subscribers would get
//!
//!     fn start(_name: &str, first: u64, _ctx: &mut Ctx<Self>) -> Self {
//!         Counter(first)
//!     }
//!
//!     fn handle(&mut self, add: u64, _ctx: &mut Ctx<Self>) -> u64 {
//!         self.0 += add;
//!         self.0
//!     }
//! }
//!
//! /// Its state as bytes, so it can move to another node live.
//! impl Handoff for Counter {
//!     const SCHEMA: u16 = 1;
//!
//!     fn dehydrate(&self, _ctx: &Ctx<Self>) -> Vec<u8> {
//!         self.0.to_le_bytes().to_vec()
//!     }
//!
//!     fn rehydrate(
//!         _name: &str,
//!         _schema: u16,
//!         state: &[u8],
//!         _ctx: &mut Ctx<Self>,
//!     ) -> Result<Self, HandoffError> {
//!         let bytes = state.try_into().map_err(|_| HandoffError::Corrupt("not a u64".into()))?;
//!         Ok(Counter(u64::from_le_bytes(bytes)))
//!     }
//! }
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A node: its cluster endpoint on a free port, with no peers to discover (other nodes
//! // would be published on `peers`, as `discovery::spawn_discovery` does from DNS).
//! let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
//! let node = NodeId::new_incarnation(&NodeName::parse("app@127.0.0.1")?);
//! let ip = [127, 0, 0, 1].into();
//! let config = ConnectorConfig::new(node, "a-cluster-wide-secret", ip, port);
//! let (_peers, discovered) = tokio::sync::watch::channel(PeerSet::new());
//! let (connector, _) = Connector::start(config, discovered).await?;
//!
//! // Its horde member, ready once it holds its quorum lease (alone, it is its own majority).
//! let horde = Horde::<Counter>::start(HordeConfig::new("counters", "1.0.0"), &connector).await?;
//! horde.no_peers_expected();
//! horde.wait_ready(1, Duration::from_secs(10)).await?;
//!
//! // A child, and a call to it: from any node of the cluster, wherever the child lives.
//! horde.start_child("visits", &40).await?;
//! assert_eq!(horde.call("visits", 2, Duration::from_secs(5)).await?, 42);
//! assert_eq!(horde.whereis("visits"), Some(horde.node().clone()));
//! # horde.shutdown().await;
//! # connector.stop().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Supervision tree
//! ```text
//! Horde handle ──loads──► Published read side (view): registry, members, children, peers
//!      │ requests                     ▲ stores (single writer)
//!      ▼                              │
//! Member actor (remotable, control) ── runs core::Core ◄──Cast(Envelope)──► other members
//! Router actor (remotable, data)    ◄──routed messages, events──► other routers
//!      └── Hosted actor per child (local-typed) ── runs core::child_core::ChildCore
//! ```
//! Supervision: hosted actors are linked to the member, which restarts children that panic
//! and children of dead nodes (cross-node links do not exist in ractor_cluster).
//!
//! # Layout (each layer imports only the ones above it)
//! - [`protocol`]: messages between members, codecs, typed requests, refusals (the bottom).
//! - [`registry`], [`membership`], [`placement`], [`child`], [`stats`]: pure data, the
//!   application's contract, counters.
//! - [`core`]: the member's core (sync, moves, failover; its inputs in `core/input.rs`, its
//!   effects in `core/effect.rs`) and [`core::child_core`], a hosted child's core. Not to be
//!   confused with [`child`], the application's contract, nor with `hosted`, the actor that
//!   runs a child's core.
//! - `mailbox`: the actors' local message types and reply tokens.
//! - `view`: the published read side.
//! - `hosted`, `router`, `member`: the actors (shells).
//! - [`supervisor`]: the [`Horde`] handle; [`errors`]: what it returns.
//!
//! # How it works
//! - **Pure cores, thin shells**: every decision (membership, registry merge and repair,
//!   leases and votes, backups, moves, drains, failover) is made by [`core::Core`], one per
//!   member, and [`core::child_core::ChildCore`], one per hosted child: `on(now, input) -> effects`,
//!   no tokio, no locks, no clock of their own. The actors only carry out effects (send, spawn,
//!   reply, publish). The [`protocol`] (messages, codecs, typed requests with their reply
//!   type, refusals as enums) is the bottom module; the modules form layers with no import
//!   cycle. The same cores run in a deterministic simulator under virtual time, with crashes,
//!   pauses, partitions, drains and version mixes, checking the invariants below after every
//!   step.
//! - **Only two remotable actors per node** (per horde scope): ractor_cluster advertises every
//!   remotable actor to every peer (100,000 of them cost a peer 1.08 GB, measured), so
//!   children stay local-typed and all traffic crosses through the member (moves, registry,
//!   membership, replicas, leases) and the router (application messages, events), so control
//!   never waits behind data. Both speak a versioned postcard envelope
//!   ([`discovery::Envelope`]).
//! - **Releases side by side** ([`protocol`]): a build speaks a range of protocol versions,
//!   its own and the previous release's ([`protocol::Protocols::THIS`]), and says so in its
//!   hello. The cluster uses the highest version every member speaks, worked out again at
//!   every membership change (it falls again when a node of the previous release joins in a
//!   rollback), and what a version added ([`protocol::Feature`]) is sent only while it is in
//!   use; fields a version adds to a message travel appended after it, where an older reader
//!   never looks. A message that does not decode is counted per kind and logged once; it never
//!   closes a link. A joining member that meets an established member it shares no version
//!   with refuses to join ([`Horde::refused`], [`HordeError::Incompatible`] naming both sides'
//!   versions) and never becomes alive; the others refuse it too, and never count it.
//! - **[`registry`]**: name → (owner node and incarnation, epoch, spec), replicated on every
//!   node, read without a message from the published snapshot. A change raises the epoch and
//!   only the owner at epoch `e` writes `e + 1`; replicas merge by (epoch, removal, owner), a
//!   join semilattice (property-tested). A joining node receives every member's full registry
//!   (and the members it knows) before it is `Alive`; new names are acknowledged by every
//!   member before `start_child` returns. Every 2 s each member sends its peers a digest (64
//!   buckets of XORed entry hashes); a bucket that differs is repaired by sending its entries,
//!   so a lost delta does not leave a replica stale forever ([`core`]'s `repair`).
//! - **Replicated before the answer** ([`Replication::BeforeReply`], opt-in per child type):
//!   every change a child makes reaches its *backup*, a second member, before the replies and
//!   events it caused leave. Group commit: replies are held and released in order as the
//!   backup acknowledges; the child never blocks, and changes made while one replica is in
//!   flight leave together in the next. The backup is placement's pick among the other alive
//!   members that read a schema this build writes; every membership change recomputes it, and
//!   a child with a new backup sends it its whole state before it answers again. Two
//!   exceptions keep a rolling update from making every child send its state at once: a child
//!   backed up on a draining member keeps it until that member has handed its replicas to
//!   their next holders (it sends its state at once only if that member dies instead); and
//!   when a member joins, children whose backup is still alive and good move to it 200 per
//!   tick (50 ms), not all at once. A backup refuses a replica of an older epoch than one it
//!   knows (that copy was superseded and stops) and one from a member it stopped granting
//!   leases to (the child waits or tries another backup).
//! - **Majority leases** ([`core`]'s `quorum`): a member answers for its children only while
//!   it holds a lease: every 200 ms it asks the others, and a majority of the *quorum set*
//!   granting makes it valid for [`HordeConfig::lease`] (1 s) from when it asked. The quorum
//!   set is the members alive or draining, plus crashed ones until they are removed; with an
//!   even count the lowest-named member breaks the tie. A member whose link went down is no
//!   longer granted; once its last lease surely ran out (the grant + lease + 250 ms) this
//!   member votes it dead, and when the members voting so leave no majority without them, it
//!   is dead. Cut off from the majority, a member loses its lease within a second and its
//!   children answer nothing ([`CallError::NoQuorum`]); the majority restarts them only after.
//! - **Failover** ([`core`]'s `failover`): only a member holding the lease restarts anything,
//!   and only the children of a member voted dead. The member placement picks asks every
//!   member for the replicas it holds of each orphan, waits for all of them (and for the
//!   members their answers name that it has not heard of yet), and restarts it from the newest
//!   in a new *term* ([`registry::failover_epoch`]), above any epoch the old owner could reach
//!   alone; a member that gave its replica to a failover takes no more of that epoch from the
//!   old owner (a copy whose clock stopped may still believe in its lease); a child nobody
//!   held a replica of restarts from its spec (logged and counted in [`Stats`]: state lost).
//!   Once a dead member's children all run elsewhere it leaves the quorum set (its remaining
//!   voters keep it voted dead until it says hello again). A node that comes back as a new
//!   incarnation is recognised as a restart whatever its wall clock says. A child that panics
//!   restarts in place from its spec, up to [`HordeConfig::max_restarts`] (3) times in
//!   [`HordeConfig::restart_window`] (5 s).
//! - **Handoff** ([`core`]'s `moves`, [`core::child_core`]): freeze a child (behind its queued
//!   messages), offer its state in the schema the target reads (members advertise the schemas
//!   they read; placement skips targets that read none, so a v2 node hands v1 nodes v1 state
//!   on rollback), start it at the target as pending, and accept only once the target's backup
//!   holds that state; then write the registry at `epoch + 1`, release: the old copy forwards
//!   what it buffered, in order, and becomes a forwarding pointer. A refused offer thaws the
//!   child at its epoch; an offer that got no answer (the target paused) is aborted and the
//!   child thaws at `epoch + 2`, published, so a late commit at `epoch + 1` loses. At most one
//!   copy answers at any time, each message is applied once, and a move never forks a child.
//! - **Drain**: [`Horde::drain_and_leave`] (what SIGTERM should call) moves children in waves
//!   of 16 per target, 4 waves at a time ([`MoveConfig`]), each child frozen only for its own
//!   wave; then it waits until every member acknowledged the registry changes and it has
//!   handed the replicas it kept for others to the members that keep them from then on (it
//!   refuses new ones meanwhile), and leaves the quorum set. At the deadline nothing stays
//!   frozen: children not moved keep running here (their backups hold them; if the process
//!   exits they restart elsewhere from there). With no other member the drain calls
//!   [`HordeConfig::need_peers`] (ask discovery to look again) and waits. [`Horde::drain`]
//!   does the same but the member stays, with no children.
//! - **Removal** ([`Horde::stop_child`] from any node, or [`Ctx::stop`] from the child
//!   itself): the owner writes a tombstone at `epoch + 1` that every member learns (a stop is
//!   confirmed once every member that could serve the name acknowledged it), and backups drop
//!   the state. Tombstones are collected once every member run acknowledged them and
//!   [`HordeConfig::tombstone_grace`] passed; the rule, and why an older entry cannot revive
//!   a collected name, is in [`core`]'s `tombstones`. [`HordeConfig::max_children`] caps the
//!   children started on one member (moves and failover may exceed it).
//! - **Rebalance on join** is opt-in ([`HordeConfig::rebalance`], Horde's
//!   `process_redistribution: :active`): moves at a bounded rate, never while versions differ.
//!   Leave it off when rolling updates already move children to the new nodes.
//! - **Bounded messages**: ractor_cluster closes a link on any frame over its limit, and a
//!   closed link reads as a dead node, so no message between members exceeds
//!   [`HordeConfig::max_message_bytes`] (4 MiB by default, at most half the connector's frame
//!   limit). The core cuts every batch by its encoded size, not by a count: a drain's waves
//!   (a wave whose states do not fit one offer goes as several), handovers, registry syncs,
//!   deltas and repairs. What cannot be cut is refused where it would be sent, with an error
//!   naming its size, and nothing is lost: a child whose state alone exceeds the budget is not
//!   offered (it thaws and keeps running here; a drain leaves it, as at its deadline) and its
//!   replica is not sent (the answers it holds wait); a start whose name and spec exceed a
//!   quarter of the budget is refused; a message, reply or event over it fails its call.
//! - **Routing** ([`Horde::call`], [`Horde::cast`] from any node): a local child is reached
//!   without encoding; a remote one through its node's router, forwarded by the registry when
//!   the message reached a stale owner (at most 4 hops). [`Horde::subscribe`] follows a
//!   child's events across moves and crash restarts, in order. `call` retries
//!   [`CallError::NoQuorum`] (a lease on its way, a failover about to serve the child) until
//!   its deadline.
//!
//! # What an answer costs and buys
//! For a child type with [`Replication::BeforeReply`]:
//! - **An answer survives the crash of any one node at any moment** (during a move, right
//!   after a drain, right after the answer), and its message is never applied twice: the
//!   change is on two members before the answer leaves, and a restart takes the newest replica
//!   any member holds. It costs one round trip to the backup member per answer (batched under
//!   load).
//! - **Majority**: three nodes tolerate one crash, pause or cut-off node at a time; a member
//!   that drained and left no longer counts; one that crashed counts until its children
//!   restarted elsewhere. A node cut off from the majority answers [`CallError::NoQuorum`]
//!   within a second; the majority serves its children again within the connector's failure
//!   timeout plus about 2 s. Two copies never both answer.
//! - **Two nodes**: a set of two has no majority without a tie-breaker, so the lowest-named
//!   member (by node name) breaks ties: if the other one crashes or is cut off, it carries on
//!   and restarts the other's children; if it is the one that goes, the survivor stops
//!   answering until it comes back, rather than risk two copies answering. A graceful drain of
//!   either leaves the survivor alone in the set, and a start-first rolling update always has
//!   three. Run three nodes to survive any single crash.
//! - **One node** is its own majority; it has no backup, so a crash loses what it had.
//!
//! Without replication ([`Replication::None`], the default) moves and drains still keep every
//! child's state; a crash restarts its children from their spec.
//!
//! Should two copies of a name still meet (a registry merge after a heal), the copy with the
//! higher epoch, then the larger owner name, wins; the other's state goes to
//! [`HordeConfig::on_conflict`] and the log.

#![warn(missing_docs)]

pub mod child;
pub mod core;
pub mod errors;
mod hosted;
mod mailbox;
mod member;
pub mod membership;
pub mod placement;
pub mod protocol;
pub mod registry;
mod router;
pub mod stats;
pub mod supervisor;
mod view;

pub use child::{Child, Ctx, Handoff, HandoffError, Replication, RestartPolicy};
pub use core::{ConflictReport, DrainReport, MoveConfig, RebalanceConfig};
pub use errors::{CallError, HordeError, StartError};
pub use membership::{MemberInfo, MemberStatus, Version};
pub use placement::{Candidate, Placement, Rendezvous};
pub use stats::{Histogram, HistogramSnapshot, HordeEvent, LATENCY_BUCKETS, Stats};
pub use supervisor::{Horde, HordeConfig, Subscription};
pub use view::ConflictHook;
