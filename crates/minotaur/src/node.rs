//! Builds a running node from its configuration and runs it until a signal: discovery, the
//! cluster connector, the console actor.
//!
//! ```text
//! run()
//!  ├─ discovery poller (task)          DNS_CLUSTER_QUERY / CLUSTER_HOSTS -> watch<PeerSet>
//!  ├─ Connector (actor)                links, heartbeats, node events
//!  │   ├─ NodeServer, Beacon
//!  └─ ConsoleServer (remotable actor)  `remote` / `rpc`
//! ```
//! Owns start-up order and shutdown order. It must not contain protocol logic.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use discovery::{
    Connector, ConnectorConfig, DiscoveryConfig, DiscoveryHandle, DnsQuery, NodeId, NodeName,
    PeerSet,
};
use ractor::Actor;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::config::{Config, Distribution};
use crate::console::protocol::CONSOLE_SERVICE;
use crate::console::server::ConsoleServer;

/// Longest wait for the first DNS answer used to pick this host's address.
const OWN_ADDRESS_PROBE: Duration = Duration::from_secs(3);

/// Handles of the node's parts, shared with the console and (later) the HTTP API.
#[derive(Debug, Clone)]
pub struct NodeContext {
    /// This run of this node.
    pub node: NodeId,
    /// The cluster connector.
    pub connector: Connector,
}

/// Why the node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Configuration that only shows at start (no usable address).
    #[error("{0}")]
    Config(String),
    /// Something failed to start.
    #[error("{0}")]
    Runtime(String),
}

/// Works out this node's name, asking DNS for a peer address first when the name must be
/// derived (the address on the network shared with peers is the right one).
pub async fn resolve_node_name(config: &Config) -> Result<NodeName, StartError> {
    let hint = if matches!(config.node, crate::config::NodeNameSpec::Derive { .. })
        && config.distribution == Distribution::Name
    {
        probe_peer_address(config).await
    } else {
        None
    };
    config
        .node_name(|| discovery::own_address::own_ip(hint))
        .map_err(StartError::Config)
}

async fn probe_peer_address(config: &Config) -> Option<IpAddr> {
    let names: Vec<String> = config
        .dns_queries
        .iter()
        .filter_map(|q| match q {
            DnsQuery::Addresses(n) => Some(n.clone()),
            DnsQuery::Srv(_) => None,
        })
        .collect();
    if names.is_empty() {
        return None;
    }
    let resolver = discovery::dns::resolver(config.dns_resolver).ok()?;
    tokio::time::timeout(OWN_ADDRESS_PROBE, async {
        for n in names {
            if let Ok(ips) = discovery::dns::addresses(&resolver, &n).await
                && let Some(ip) = ips.first()
            {
                return Some(*ip);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
}

/// A started node.
#[derive(Debug)]
pub struct Node {
    /// Shared handles.
    pub ctx: NodeContext,
    discovery: Option<DiscoveryHandle>,
}

impl Node {
    /// Starts every part, in dependency order.
    pub async fn start(config: &Config) -> Result<Node, StartError> {
        let name = resolve_node_name(config).await?;
        let node = NodeId::new_incarnation(&name);
        let bind = config.cluster_bind_for(&name);
        let cookie = config.cookie.clone().unwrap_or_default();

        let (discovery, peers) = if config.discovers() {
            let dc = DiscoveryConfig {
                self_name: name.clone(),
                basename: name.basename().to_string(),
                cluster_port: config.cluster_port,
                dns_queries: config.dns_queries.clone(),
                interval: config.dns_interval,
                resolver: config.dns_resolver,
                static_hosts: config.cluster_hosts.clone(),
            };
            let handle = discovery::spawn_discovery(dc, std::future::pending())
                .map_err(|e| StartError::Config(e.to_string()))?;
            let rx = handle.subscribe();
            (Some(handle), rx)
        } else {
            (None, watch::channel(PeerSet::new()).1)
        };

        let mut cc = ConnectorConfig::new(node.clone(), cookie, bind, config.cluster_port);
        cc.heartbeat_interval = config.heartbeat_interval;
        cc.failure_timeout = config.failure_timeout;
        if config.distribution == Distribution::None {
            // A single node still runs its endpoint on loopback so that `rpc` works locally.
            cc.bind = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
        }
        let (connector, _) = Connector::start(cc, peers)
            .await
            .map_err(|e| StartError::Runtime(e.to_string()))?;
        let ctx = NodeContext {
            node: node.clone(),
            connector: connector.clone(),
        };
        Actor::spawn_linked(
            Some(node.actor_name(CONSOLE_SERVICE)),
            ConsoleServer { ctx: ctx.clone() },
            (),
            connector.cell(),
        )
        .await
        .map_err(|e| StartError::Runtime(format!("cannot start the console: {e}")))?;
        info!(node = %name, incarnation = node.incarnation, cluster = %SocketAddr::new(bind, config.cluster_port), discovery = config.discovers(), "node started");
        Ok(Node { ctx, discovery })
    }

    /// Stops every part, in reverse order.
    pub async fn stop(self) {
        if let Some(d) = &self.discovery {
            d.abort();
        }
        self.ctx.connector.stop().await;
    }
}

/// Waits for SIGTERM or SIGINT.
async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "cannot listen for SIGTERM; only SIGINT will stop the node");
            let _ = tokio::signal::ctrl_c().await;
            return "SIGINT";
        }
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = tokio::signal::ctrl_c() => "SIGINT",
    }
}

/// `minotaur start`: runs a node until SIGTERM/SIGINT, then shuts it down within
/// `SHUTDOWN_TIMEOUT_MS`.
pub async fn run(config: Config) -> ExitCode {
    let node = match Node::start(&config).await {
        Ok(n) => n,
        Err(StartError::Config(e)) => {
            error!(error = %e, "invalid configuration");
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
        Err(StartError::Runtime(e)) => {
            error!(error = %e, "node failed to start");
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let signal = shutdown_signal().await;
    info!(
        signal,
        timeout_ms = config.shutdown_timeout.as_millis() as u64,
        "shutting down"
    );
    if tokio::time::timeout(config.shutdown_timeout, node.stop())
        .await
        .is_err()
    {
        warn!("shutdown did not finish in time");
    }
    info!("node stopped");
    ExitCode::SUCCESS
}
