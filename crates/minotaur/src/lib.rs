//! The Minotaur game server: one node of the cluster, its HTTP/WebSocket API and its console.
//!
//! `main.rs` parses the command line and hands over to [`node::run`] (a node) or to
//! [`console::client`] (`remote`, `rpc`).
//!
//! # Layout
//! - [`config`]: every environment variable, parsed and validated in one place.
//! - [`node`]: start-up and shutdown of a node's parts.
//! - [`console`]: the remote console, both ends.
//! - [`demo`]: `minotaur demo`, a measured rolling deploy built from the `local-cluster`
//!   crate's cluster and players.
//! - [`games`]: what the API does with games, on top of horde (naming, creation, retries).
//! - [`http`]: the HTTP API, WebSocket, web page, health and metrics.
//! - [`telemetry`]: log output.

pub mod config;
pub mod console;
pub mod demo;
pub mod games;
pub mod http;
pub mod node;
pub mod telemetry;
