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
//! ```text
//! Horde handle ──loads──► Published read side (view): registry, members, children, peers
//!      │ requests                     ▲ stores (single writer)
//!      ▼                              │
//! Member actor (remotable, control) ── runs core::Core ◄──Cast(Envelope)──► other members
//! Router actor (remotable, data)    ◄──routed messages, events──► other routers
//!      └── Hosted actor per child (local-typed) ── runs core::child::ChildCore
//! ```
//! Supervision: hosted actors are linked to the member, which restarts children that panic
//! and children of dead nodes (cross-node links do not exist in ractor_cluster).
//!
//! # Layout (each layer imports only the ones above it)
//! - [`protocol`]: messages between members, codecs, typed requests, refusals (the bottom).
//! - [`registry`], [`membership`], [`placement`], [`child`], [`stats`]: pure data, the
//!   application's contract, counters.
//! - [`core`]: the member's core (sync, moves, failover) and [`core::child`], a child's core.
//! - `mailbox`: the actors' local message types and reply tokens.
//! - `view`: the published read side.
//! - `hosted`, `router`, `member`: the actors (shells).
//! - [`supervisor`]: the [`Horde`] handle; [`errors`]: what it returns.

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
