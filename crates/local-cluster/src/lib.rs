//! Local clusters of real `minotaur start` processes and the players that play them: what
//! `minotaur demo` runs, and what the end-to-end tests compose (through `harness`, which
//! re-exports these modules under the same paths). The binary links this crate, so nothing
//! here is test-only: no browser, no network namespaces, no panicking assertions; every
//! failure is an [`Error`] saying what to do.
//!
//! Real nodes on one machine: each run takes a loopback net of its own (127.0.NET.x; Linux
//! routes all of 127/8 to `lo`), ports free on every address of it, and waits for conditions
//! under a deadline instead of sleeping. Child processes die with their handle, so a failed
//! run leaves nothing running.
//!
//! ```text
//! wait, ports, logs, dns, latency          (each stands alone)
//!   process (wait) ─► node (process) ─► cluster (node, network, dns, wait) ─► load (its targets)
//!   network (ports): where a cluster's nodes run (loopback here; harness adds namespaces)
//! ```
//!
//! # Layout
//! - [`wait`]: polling under a deadline ([`wait::poll`]).
//! - [`ports`]: a run's loopback addresses and ports free on all of them.
//! - [`process`]: child processes killed on drop; signals, waiting with a timeout, RSS.
//! - [`logs`]: where a run's node logs go.
//! - [`dns`]: the embedded DNS server (`discovery`, feature `dns-server`).
//! - [`node`]: one real `minotaur start` process and its log.
//! - [`network`]: where a cluster's nodes run ([`network::Network`]): loopback addresses
//!   ([`network::Loopback`]), or another network given by the caller (the harness's
//!   namespaces, which can also cut a node off).
//! - [`cluster`]: real nodes behind the DNS server, replaced one by one as a rolling update
//!   does (the demo's cluster).
//! - [`load`]: players over HTTP that retry an input with the same `input_id`, and the
//!   integrity check of every game afterwards.
//! - [`latency`]: percentiles and milliseconds.

use std::path::PathBuf;
use std::time::Duration;

pub mod cluster;
pub mod dns;
pub mod latency;
pub mod load;
pub mod logs;
pub mod network;
pub mod node;
pub mod ports;
pub mod process;
pub mod wait;

/// Why a cluster, a node or the players could not be set up. The messages are those
/// `minotaur demo` prints after `error: demo failed:`, with where the node logs are.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A directory, a log file, a socket or the DNS server could not be set up.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Every port tried was taken on one of the addresses.
    #[error("no free port on the loopback addresses")]
    NoFreePort,
    /// The node binary would not start.
    #[error("cannot start {}: {source}", binary.display())]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The HTTP client could not be built.
    #[error("{0}")]
    Http(#[from] reqwest::Error),
    /// A node never answered `GET /healthz` with 200.
    #[error("{url} did not become healthy in {timeout:?} (last answer: {last})")]
    Unhealthy {
        /// The node's base URL.
        url: String,
        /// How long it had.
        timeout: Duration,
        /// Its last answer to `/healthz` (status and body), or why there was none.
        last: String,
    },
    /// The nodes never all saw each other alive.
    #[error("the {nodes} nodes did not form one cluster in {timeout:?}")]
    NoCluster {
        /// How many nodes.
        nodes: usize,
        /// How long they had.
        timeout: Duration,
    },
    /// Players were started without a node to play on.
    #[error("no node to create games on")]
    NoNodes,
    /// A node did not create a game (the reason as the client saw it).
    #[error("{0}")]
    GameNotCreated(String),
    /// The network the nodes run on could not be set up, has no room for another node, or
    /// cannot do what was asked (a cut on loopback addresses); the message says which.
    #[error("{0}")]
    Setup(String),
}
