//! The Minotaur game server: one node of the cluster, its HTTP/WebSocket API and its console.
//!
//! `main.rs` parses the command line and hands over to [`node::run`] (a node) or to
//! [`console::client`] (`remote`, `rpc`).
//!
//! # Layout
//! - [`config`]: every environment variable, parsed and validated in one place.
//! - [`node`]: start-up and shutdown of a node's parts.
//! - [`console`]: the remote console, both ends.
//! - [`telemetry`]: log output.

pub mod config;
pub mod console;
pub mod node;
pub mod telemetry;
