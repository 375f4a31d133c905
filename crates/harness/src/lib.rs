//! The test harness of the Minotaur workspace: every helper that tests, benchmarks and
//! `minotaur demo` share, in one place, so that none is copied between test files. Nothing
//! here runs in a node; the binary links it only for `minotaur demo`.
//!
//! Real nodes on one machine: each test takes a loopback net of its own (127.0.NET.x; Linux
//! routes all of 127/8 to `lo`), ports free on every address of it, and waits for conditions
//! under a deadline instead of sleeping. Child processes die with their handle, so a failed
//! test leaves nothing running.
//!
//! Helpers that only tests and benchmarks call panic with a message saying what failed (a
//! failed helper is a failed test). Those the demo calls too return [`Error`].
//!
//! ```text
//! wait, ports, process, logs, dns, latency, echo      (each stands alone)
//!   └─► browser (wait): headless Chromium for the page tests
//!   └─► prometheus (process, wait): a real Prometheus server and promtool
//!   └─► node (process, wait) ─► cluster (node, dns, ports, wait) ─► load (its targets)
//!         └─► mesh (node names, wait): in-process connectors and horde members
//! ```
//!
//! # Layout
//! - [`wait`]: polling under a deadline (`eventually`), stretched by
//!   `MINOTAUR_TEST_TIME_SCALE`.
//! - [`ports`]: a test's loopback addresses and ports free on all of them.
//! - [`process`]: child processes killed on drop; signals, waiting with a timeout, RSS.
//! - [`logs`]: log directories of tests; tracing output for the test runner.
//! - [`dns`]: the embedded DNS server (`discovery`, feature `dns-server`).
//! - [`browser`]: headless Chromium: DOM dumps, screenshots, a live page driven over the
//!   DevTools protocol.
//! - [`node`]: one real `minotaur start` process, its log and its console (`minotaur rpc`).
//! - [`cluster`]: real nodes behind the DNS server, replaced one by one as a rolling update
//!   does (the demo's cluster).
//! - [`mesh`]: in-process nodes: a connector per 127.0.x.y fed peer sets by the test, horde
//!   members on top, meshing them.
//! - [`load`]: players over HTTP that retry an input with the same `input_id`, and the
//!   integrity check of every game afterwards.
//! - [`netns`]: nodes in network namespaces on a bridge, and real partitions (iptables).
//! - `kubernetes` (feature `kubernetes`): docker/kubernetes read as the kubelet and cluster
//!   DNS use it (a pod's environment, SRV names), and a read-only root file system.
//! - [`prometheus`]: a real Prometheus server scraping nodes, PromQL, `promtool check metrics`.
//! - [`releases`]: other builds to run beside this one: the previous release, built from its
//!   own sources, and this source's `schema-v2` build.
//! - [`tls`]: a CA and node certificates for mutual TLS tests (the `openssl` CLI).
//! - [`latency`]: percentiles and milliseconds.
//! - [`echo`]: the raw ractor_cluster echo actor, the benchmarks' baseline.

use std::path::PathBuf;
use std::time::Duration;

pub mod browser;
pub mod cluster;
pub mod dns;
pub mod echo;
#[cfg(feature = "kubernetes")]
pub mod kubernetes;
pub mod latency;
pub mod load;
pub mod logs;
pub mod mesh;
pub mod netns;
pub mod node;
pub mod ports;
pub mod process;
pub mod prometheus;
pub mod releases;
pub mod tls;
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
    /// Namespaces, links or firewall rules could not be set up.
    #[error("{0}")]
    Setup(String),
}
