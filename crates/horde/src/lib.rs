//! horde: cluster membership, a replicated registry and a distributed supervisor that hands
//! live actors between nodes, Horde-like, on ractor_cluster. Generic: it knows nothing of
//! games.
//!
//! An application implements [`Child`] and [`Handoff`] for its actor type and starts a
//! [`Horde`] on a running [`discovery::Connector`]. Then, from any node, `start_child` places
//! a child (rendezvous hashing over alive members, newest app version first), `call`/`cast`
//! reach it wherever it lives, `subscribe` follows its events, and `drain` (what SIGTERM does)
//! moves every child off the node with its state and its pending messages. Children of a node
//! that dies restart elsewhere, from their last replicated snapshot when they opt in.
//!
//! ```text
//! Horde handle ──reads──► View (registry replica, local children, members)
//!      │ messages                     ▲ writes
//!      ▼                              │
//! Member actor (remotable, control) ◄──Cast/Call(Envelope)──► other members
//! Router actor (remotable, data)    ◄──routed messages, events──► other routers
//!      └── Hosted actor per child (local-typed) ── runs the application's Child
//! ```
//! Supervision: the member and the hosted actors are independent ractor actors; the member
//! restarts children of dead nodes (cross-node links do not exist in ractor_cluster).
//!
//! # Layout
//! - [`child`]: the `Child` and `Handoff` traits and the callback context.
//! - [`registry`]: the registry replica and its merge (pure).
//! - [`placement`]: where children go (pure, pluggable).
//! - [`membership`]: member states and versions (pure).
//! - [`handoff`]: drain and rebalance in waves.
//! - `hosted`: the actor that hosts one child and carries out its part of a move.
//! - `member`: the per-node member actor (control plane): membership, registry sync,
//!   receiving moves, failover.
//! - `router`: the per-node router actor (data plane): routed messages and events.
//! - [`wire`]: the protocol between members.
//! - [`supervisor`]: the `Horde` handle.
//! - [`stats`]: counters and events.
//! - `view`: the read side shared by the handle and the actors.

pub mod child;
pub mod handoff;
mod hosted;
mod member;
pub mod membership;
pub mod placement;
pub mod registry;
mod router;
pub mod stats;
pub mod supervisor;
mod view;
pub mod wire;

pub use child::{Child, Ctx, Handoff, HandoffError, RestartPolicy, SnapshotPolicy};
pub use handoff::{DrainReport, MoveConfig};
pub use hosted::CallError;
pub use membership::{MemberInfo, MemberStatus, Version};
pub use placement::{Candidate, Placement, Rendezvous};
pub use stats::{HordeEvent, Stats};
pub use supervisor::{Horde, HordeConfig, HordeError, RebalanceConfig, StartError, Subscription};
pub use view::{ConflictHook, ConflictReport};
