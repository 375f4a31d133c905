//! The test harness of the Minotaur workspace: every helper that tests and benchmarks share,
//! in one place, so that none is copied between test files. Dev-only: nothing here runs in a
//! node, and the binary never links it.
//!
//! The clusters of real nodes and their players are the `local-cluster` crate's, which
//! `minotaur demo` runs too; they are re-exported here under the same paths
//! (`harness::cluster`, `harness::load`, ...), with what only tests add to them: deadlines
//! stretched by `MINOTAUR_TEST_TIME_SCALE` and `eventually` ([`wait`]), the console and metric
//! readers of a node ([`node`]), assertions ([`load::AssertIntegrity`]), and network
//! namespaces that cut nodes off ([`netns`]).
//!
//! Helpers that only tests and benchmarks call panic with a message saying what failed (a
//! failed helper is a failed test); those of `local-cluster` return [`Error`].
//!
//! ```text
//! local-cluster: wait, ports, process, logs, dns, latency, node, network, cluster, load
//!   └─► wait, logs, node, load here: the same modules with the tests' additions
//!   └─► netns (network): nodes in namespaces, real partitions
//! echo, tls, releases                                   (each stands alone)
//! browser (wait): headless Chromium for the page tests
//! prometheus (process, wait): a real Prometheus server and promtool
//! mesh (node names, wait): in-process connectors and horde members
//! ```
//!
//! # Layout
//! - [`wait`]: [`local_cluster::wait`], and deadlines stretched by
//!   `MINOTAUR_TEST_TIME_SCALE` (`eventually`, `scaled`).
//! - [`ports`], [`process`], [`dns`], [`cluster`], [`latency`]: `local-cluster`'s, as they are.
//! - [`logs`]: log directories of tests; tracing output for the test runner.
//! - [`node`]: `local-cluster`'s node process, and its console (`minotaur rpc`) and metrics
//!   as tests read them.
//! - [`load`]: `local-cluster`'s players and integrity check, and its assertion.
//! - [`browser`]: headless Chromium: DOM dumps, screenshots, a live page driven over the
//!   DevTools protocol.
//! - [`mesh`]: in-process nodes: a connector per 127.0.x.y fed peer sets by the test, horde
//!   members on top, meshing them.
//! - [`netns`]: nodes in network namespaces on a bridge, real partitions (iptables), and
//!   clusters on them.
//! - `kubernetes` (feature `kubernetes`): docker/kubernetes read as the kubelet and cluster
//!   DNS use it (a pod's environment, SRV names), and a read-only root file system.
//! - [`prometheus`]: a real Prometheus server scraping nodes, PromQL, `promtool check metrics`.
//! - [`releases`]: other builds to run beside this one: the previous release, built from its
//!   own sources, and this source's `schema-v2` build.
//! - [`tls`]: a CA and node certificates for mutual TLS tests (the `openssl` CLI).
//! - [`echo`]: the raw ractor_cluster echo actor, the benchmarks' baseline.

pub use local_cluster::{Error, cluster, dns, latency, network, ports, process};

pub mod browser;
pub mod echo;
#[cfg(feature = "kubernetes")]
pub mod kubernetes;
pub mod load;
pub mod logs;
pub mod mesh;
pub mod netns;
pub mod node;
pub mod prometheus;
pub mod releases;
pub mod tls;
pub mod wait;
