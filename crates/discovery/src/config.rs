//! Typed configuration of discovery and of the connector, with their defaults.
//!
//! Owns the values only; reading them from the environment is the application's job (the
//! variable names in these docs are the ones its binary conventionally reads), so tests and
//! embedders build these structs directly.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::{ClusterTls, NodeId, NodeName};

/// How often DNS is polled (`DNS_CLUSTER_INTERVAL_MS`), as dns_cluster and libcluster do.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(5000);
/// Port of node connections (`CLUSTER_PORT`).
pub const DEFAULT_CLUSTER_PORT: u16 = 9000;
/// Each peer is pinged this often.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(500);
/// A peer that has not answered a heartbeat for this long is disconnected and reported down.
/// With the heartbeat interval this reports a frozen peer within 2.5 s (goal: 3 s).
pub const DEFAULT_FAILURE_TIMEOUT: Duration = Duration::from_millis(2000);
/// A connection that has not authenticated by then is closed (ractor_cluster has no such limit).
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for a TCP connect to a peer.
pub const DEFAULT_DIAL_TIMEOUT: Duration = Duration::from_secs(2);
/// First reconnect delay; doubles per failed attempt, with jitter.
pub const DEFAULT_BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest reconnect delay.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// At most this many connections may be in their handshake; beyond, the oldest is closed.
pub const DEFAULT_MAX_PENDING_HANDSHAKES: usize = 256;
/// Largest inbound cluster frame (live handoff batches are chunked below it).
pub const DEFAULT_MAX_FRAME_SIZE: u64 = 32 * 1024 * 1024;

/// The cluster's shared secret (`RELEASE_COOKIE`). Its `Debug` never shows it, so a config
/// printed with `{:?}` (a log line, a panic message) does not leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct Cookie(String);

impl Cookie {
    /// The secret itself, for the handshake.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Cookie {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

impl From<String> for Cookie {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl From<&str> for Cookie {
    fn from(s: &str) -> Self {
        Self(s.to_string())
    }
}

/// One DNS name to poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsQuery {
    /// A and AAAA records: each address is a peer at `basename@ip:CLUSTER_PORT`
    /// (Swarm's `tasks.<service>`, a Kubernetes headless service, compose's service name).
    Addresses(String),
    /// SRV records (`_service._proto.name`): each target's addresses, at the record's port.
    Srv(String),
}

impl DnsQuery {
    /// A name whose first label starts with `_` is an SRV name, as the SRV naming convention
    /// (`_cluster._tcp.myservice.default.svc.cluster.local`) has it; any other is A/AAAA.
    pub fn parse(name: &str) -> Self {
        if name.starts_with('_') {
            DnsQuery::Srv(name.to_string())
        } else {
            DnsQuery::Addresses(name.to_string())
        }
    }

    /// The DNS name.
    pub fn name(&self) -> &str {
        match self {
            DnsQuery::Addresses(n) | DnsQuery::Srv(n) => n,
        }
    }
}

/// What discovery polls.
#[derive(Debug, Clone)]
pub struct DiscoveryConfig {
    /// This node's own name: never published as a peer.
    pub self_name: NodeName,
    /// Basename of DNS-discovered peers (the part before `@` of this node's name).
    pub basename: String,
    /// Port every node listens on.
    pub cluster_port: u16,
    /// Names to poll (`DNS_CLUSTER_QUERY`).
    pub dns_queries: Vec<DnsQuery>,
    /// Poll period (`DNS_CLUSTER_INTERVAL_MS`).
    pub interval: Duration,
    /// Nameserver to ask instead of `/etc/resolv.conf` (`DNS_CLUSTER_RESOLVER`).
    pub resolver: Option<SocketAddr>,
    /// Static peers (`CLUSTER_HOSTS`).
    pub static_hosts: Vec<NodeName>,
}

impl DiscoveryConfig {
    /// True when there is anything to discover.
    pub fn is_enabled(&self) -> bool {
        !self.dns_queries.is_empty() || !self.static_hosts.is_empty()
    }
}

/// How the connector runs the node's cluster endpoint.
#[derive(Debug, Clone)]
pub struct ConnectorConfig {
    /// This run of this node.
    pub node: NodeId,
    /// Shared secret of the cluster (`RELEASE_COOKIE`).
    pub cookie: Cookie,
    /// Listen port (`CLUSTER_PORT`).
    pub port: u16,
    /// Listen address (`CLUSTER_BIND`).
    pub bind: IpAddr,
    /// See [`DEFAULT_HEARTBEAT_INTERVAL`].
    pub heartbeat_interval: Duration,
    /// See [`DEFAULT_FAILURE_TIMEOUT`].
    pub failure_timeout: Duration,
    /// See [`DEFAULT_HANDSHAKE_TIMEOUT`].
    pub handshake_timeout: Duration,
    /// See [`DEFAULT_DIAL_TIMEOUT`].
    pub dial_timeout: Duration,
    /// See [`DEFAULT_BACKOFF_MIN`].
    pub backoff_min: Duration,
    /// See [`DEFAULT_BACKOFF_MAX`].
    pub backoff_max: Duration,
    /// See [`DEFAULT_MAX_PENDING_HANDSHAKES`].
    pub max_pending_handshakes: usize,
    /// See [`DEFAULT_MAX_FRAME_SIZE`].
    pub max_frame_size: u64,
    /// Mutual TLS on every link (`CLUSTER_TLS_*`); `None`: plain TCP (the cookie either way).
    pub tls: Option<ClusterTls>,
}

impl ConnectorConfig {
    /// Defaults for everything but identity, secret and address.
    pub fn new(node: NodeId, cookie: impl Into<Cookie>, bind: IpAddr, port: u16) -> Self {
        Self {
            node,
            cookie: cookie.into(),
            port,
            bind,
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            failure_timeout: DEFAULT_FAILURE_TIMEOUT,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            dial_timeout: DEFAULT_DIAL_TIMEOUT,
            backoff_min: DEFAULT_BACKOFF_MIN,
            backoff_max: DEFAULT_BACKOFF_MAX,
            max_pending_handshakes: DEFAULT_MAX_PENDING_HANDSHAKES,
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            tls: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_never_shows_in_debug_output() {
        let node = NodeId {
            name: "minotaur@10.0.0.1".into(),
            incarnation: 1,
        };
        let ip = "10.0.0.1".parse().expect("ip");
        let c = ConnectorConfig::new(node, "s3cret-cookie-value", ip, 9000);
        let shown = format!("{c:?} {:?} {:#?}", c.cookie, c);
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
        assert_eq!(c.cookie.expose(), "s3cret-cookie-value");
    }
}
