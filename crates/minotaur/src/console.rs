//! The remote console: `minotaur remote` and `minotaur rpc`, as `bin/app remote` and
//! `bin/app rpc` of an Elixir release.
//!
//! A console attaches to a node over the cluster port with the cookie handshake (see
//! `discovery::console_link`) and sends command lines to the node's remotable console actor,
//! which runs them and answers text plus JSON. The node decides which commands exist, so a
//! console of one version works against nodes of another.
//!
//! # Layout
//! - [`protocol`]: the request and answer that cross the link.
//! - [`server`]: the node's console actor.
//! - [`commands`]: what each command does on the node.
//! - [`completion`]: tab completion of `remote` (pure).
//! - [`cookie`]: the generated cookie of a `RELEASE_DISTRIBUTION=none` node.
//! - [`client`]: `rpc` and the interactive `remote` prompt.

pub mod client;
pub mod commands;
pub mod completion;
pub mod cookie;
pub mod protocol;
pub mod server;
