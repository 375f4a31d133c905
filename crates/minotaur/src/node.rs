//! Builds a running node from its configuration, runs it until a signal, and shuts it down:
//! discovery, the cluster connector, the games horde, the console, the HTTP server.
//!
//! ```text
//! run()
//!  ├─ discovery poller (task)             DNS_CLUSTER_QUERY / CLUSTER_HOSTS -> watch<PeerSet>
//!  ├─ Connector (actor)                   links, heartbeats, node events
//!  │   ├─ NodeServer, Beacon
//!  │   └─ ConsoleServer (remotable)       `remote` / `rpc`
//!  ├─ Horde<Session> "games"              member + router actors, one actor per game
//!  └─ HTTP server (task)                  API, WebSocket, page, /healthz, /metrics
//! ```
//! Shutdown (SIGTERM/SIGINT), within `SHUTDOWN_TIMEOUT_MS`: report not ready and take no new
//! games; hand every game off through horde (skipped when no node can take them:
//! `RELEASE_DISTRIBUTION=none`, or no discovery and no connected peer); then close
//! WebSockets (their games moved); let in-flight HTTP requests finish; leave the cluster;
//! exit 0. Owns start-up and shutdown order only.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use discovery::{
    Connector, ConnectorConfig, DiscoveryConfig, DiscoveryHandle, DnsQuery, NodeId, NodeName,
    PeerSet,
};
use game::Session;
use horde::{Horde, HordeConfig};
use ractor::Actor;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::config::{Config, Distribution};
use crate::console::protocol::CONSOLE_SERVICE;
use crate::console::server::ConsoleServer;
use crate::games::Games;
use crate::http::{self, AppState, Lifecycle, metrics::Metrics};

/// Longest wait for the first DNS answer used to pick this host's address.
const OWN_ADDRESS_PROBE: Duration = Duration::from_secs(3);
/// Of the shutdown budget, what is kept for closing sockets and HTTP after the drain.
const SHUTDOWN_MARGIN: Duration = Duration::from_millis(1000);
/// The horde scope of games.
pub const GAMES_SCOPE: &str = "games";

/// Handles of the node's parts, shared with the console and the HTTP API.
#[derive(Debug, Clone)]
pub struct NodeContext {
    /// This run of this node.
    pub node: NodeId,
    /// The cluster connector.
    pub connector: Connector,
    /// The games service (and its horde).
    pub games: Games,
    /// Draining, sockets.
    pub lifecycle: Arc<Lifecycle>,
    /// The drain budget (`SHUTDOWN_TIMEOUT_MS`).
    pub shutdown_timeout: Duration,
    /// What `/metrics` exports (the console's `stats` reads the same histograms).
    pub metrics: Arc<Metrics>,
    /// The configuration the node runs with (the `config` and `version` commands).
    pub config: Arc<Config>,
    /// The file holding the generated console cookie (`RELEASE_DISTRIBUTION=none` without
    /// one), once written.
    pub console_cookie: Option<PathBuf>,
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

/// The cookie of a node that was given none (`RELEASE_DISTRIBUTION=none`: a single node whose
/// cluster port only serves consoles on loopback): a random one, written where `remote`/`rpc`
/// of this user on this host find it. When it cannot be written the node still runs, with a
/// cookie nobody knows: no console, but never an open one.
fn console_cookie(config: &Config, name: &NodeName) -> (String, Option<PathBuf>) {
    let cookie = crate::console::cookie::generate();
    let Some(dir) = &config.console_cookie_dir else {
        warn!(
            "no console cookie: none of RELEASE_COOKIE_DIR, XDG_RUNTIME_DIR, HOME is set; set one (or RELEASE_COOKIE) for `minotaur remote`"
        );
        return (cookie, None);
    };
    let path = crate::config::console_cookie_file(dir, &name.to_string());
    match crate::console::cookie::write(&path, &cookie) {
        Ok(()) => {
            info!(file = %path.display(), "console cookie written (mode 0600)");
            (cookie, Some(path))
        }
        Err(e) => {
            warn!(error = %e, "no console cookie: `minotaur remote` cannot attach");
            (cookie, None)
        }
    }
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
    discovery: Option<Arc<DiscoveryHandle>>,
    /// `RELEASE_DISTRIBUTION=none`: no other node can ever take this node's games.
    single: bool,
    http_stop: watch::Sender<bool>,
    http_task: tokio::task::JoinHandle<()>,
}

impl Node {
    /// Starts every part, in dependency order.
    pub async fn start(config: &Config) -> Result<Node, StartError> {
        let name = resolve_node_name(config).await?;
        let node = NodeId::new_incarnation(&name);
        let bind = config.cluster_bind_for(&name);
        let (cookie, console_cookie) = match &config.cookie {
            Some(c) => (c.expose().to_string(), None),
            None => console_cookie(config, &name),
        };

        let discovery = if config.discovers() {
            let dc = DiscoveryConfig {
                self_name: name.clone(),
                basename: name.basename().to_string(),
                cluster_port: config.cluster_port,
                dns_queries: config.dns_queries.clone(),
                interval: config.dns_interval,
                resolver: config.dns_resolver,
                static_hosts: config.cluster_hosts.clone(),
            };
            Some(Arc::new(
                discovery::spawn_discovery(dc, std::future::pending())
                    .map_err(|e| StartError::Config(e.to_string()))?,
            ))
        } else {
            None
        };
        let peers = match &discovery {
            Some(d) => d.subscribe(),
            None => watch::channel(PeerSet::new()).1,
        };

        let mut cc = ConnectorConfig::new(node.clone(), cookie, bind, config.cluster_port);
        cc.heartbeat_interval = config.heartbeat_interval;
        cc.failure_timeout = config.failure_timeout;
        cc.max_frame_size = config.max_frame_bytes;
        cc.tls = config.tls.clone();
        if config.distribution == Distribution::None {
            // A single node still runs its endpoint on loopback so that `rpc` works locally.
            cc.bind = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
        }
        let (connector, _) = Connector::start(cc, peers)
            .await
            .map_err(|e| StartError::Runtime(e.to_string()))?;

        let version = config.app_version.to_string();
        game::set_lifecycle(game::Lifecycle {
            retention_ms: config.game_retention.as_millis() as u64,
            idle_timeout_ms: config.game_idle_timeout.as_millis() as u64,
        });
        let mut hc = HordeConfig::new(GAMES_SCOPE, &version);
        hc.max_children = Some(config.max_games_per_node);
        if let Some(d) = discovery.clone() {
            // A drain with nobody to move to asks discovery to look again at once.
            hc.need_peers = Some(Arc::new(move || d.refresh()));
        }
        let horde = Horde::<Session>::start(hc, &connector)
            .await
            .map_err(|e| StartError::Runtime(e.to_string()))?;
        let games = Games::new(horde.clone());
        let lifecycle = Arc::new(Lifecycle::default());
        let metrics = Arc::new(Metrics::new(&games));
        let ctx = NodeContext {
            node: node.clone(),
            connector: connector.clone(),
            games: games.clone(),
            lifecycle: lifecycle.clone(),
            shutdown_timeout: config.shutdown_timeout,
            metrics: metrics.clone(),
            config: Arc::new(config.clone()),
            console_cookie,
        };
        Actor::spawn_linked(
            Some(node.actor_name(CONSOLE_SERVICE)),
            ConsoleServer { ctx: ctx.clone() },
            (),
            connector.cell(),
        )
        .await
        .map_err(|e| StartError::Runtime(format!("cannot start the console: {e}")))?;

        // Ready once joined: at once when there is nobody to find, else when horde has synced
        // with the peers discovery found (or its join timeout passed).
        match discovery.clone() {
            None => horde.no_peers_expected(),
            Some(d) => {
                let h = horde.clone();
                tokio::spawn(async move {
                    d.first_poll().await;
                    if d.subscribe().borrow().is_empty() {
                        h.no_peers_expected();
                    }
                });
            }
        }

        let state = AppState {
            games: games.clone(),
            connector: connector.clone(),
            lifecycle: lifecycle.clone(),
            metrics,
            dashboard: http::dashboard::Dashboard::spawn(
                games.clone(),
                connector.clone(),
                lifecycle.sockets_closing(),
            ),
        };
        let server = http::Server::bind(SocketAddr::new(config.http_bind, config.http_port), state)
            .await
            .map_err(|e| {
                StartError::Runtime(format!(
                    "cannot listen for HTTP on {}:{}: {e} (set PORT or HTTP_BIND)",
                    config.http_bind, config.http_port
                ))
            })?
            .max_connections(config.max_connections);
        let http_addr = server
            .local_addr()
            .map_err(|e| StartError::Runtime(e.to_string()))?;
        let (http_stop, mut stop_rx) = watch::channel(false);
        let http_task = tokio::spawn(async move {
            let stop = async move {
                let _ = stop_rx.wait_for(|s| *s).await;
            };
            if let Err(e) = server.run(stop).await {
                error!(error = %e, "http server failed");
            }
        });
        info!(node = %name, incarnation = node.incarnation, cluster = %SocketAddr::new(bind, config.cluster_port), http = %http_addr, %version, discovery = config.discovers(), "node started");
        Ok(Node {
            ctx,
            discovery,
            single: config.distribution == Distribution::None,
            http_stop,
            http_task,
        })
    }

    /// Why no other node can take this node's games, if none can: a drain would only wait
    /// out its budget for a peer that cannot come. With discovery on, a peer may turn up while
    /// draining (discovery is asked to look again); without it, only a node that already
    /// dialled in could.
    async fn alone(&self) -> Option<&'static str> {
        if self.single {
            return Some("RELEASE_DISTRIBUTION=none");
        }
        if self.discovery.is_some() {
            return None;
        }
        match self.ctx.connector.nodes().await {
            Ok(peers) if peers.is_empty() => Some("no discovery configured and no connected peer"),
            _ => None,
        }
    }

    /// Stops a node that holds nothing (it never joined): no drain, each part given a
    /// moment.
    pub async fn stop_at_once(self) {
        let moment = Duration::from_secs(2);
        let _ = self.http_stop.send(true);
        let _ = tokio::time::timeout(moment, self.http_task).await;
        if let Some(d) = &self.discovery {
            d.abort();
        }
        let _ = tokio::time::timeout(moment, self.ctx.games.horde().shutdown()).await;
        let _ = tokio::time::timeout(moment, self.ctx.connector.stop()).await;
    }

    /// The ordered shutdown (see the module docs), within `budget`.
    pub async fn shutdown(self, budget: Duration) {
        let started = tokio::time::Instant::now();
        self.ctx.lifecycle.set_draining();
        let drain_budget = match self.alone().await {
            Some(why) => {
                info!("{why}: no other node can take this node's games, exiting without waiting");
                Duration::ZERO
            }
            None => budget.saturating_sub(SHUTDOWN_MARGIN),
        };
        let report = self.ctx.games.horde().drain_and_leave(drain_budget).await;
        info!(
            moved = report.moved,
            fallback = report.fallback,
            stranded = report.stranded,
            ms = report.duration.as_millis() as u64,
            "games handed off"
        );
        // Games have moved: sockets may close now; clients reconnect elsewhere.
        self.ctx.lifecycle.close_sockets();
        let _ = self.http_stop.send(true);
        // What is left of the budget, for the HTTP server, the horde and the links: the
        // process exits within `budget` of the signal, whatever the steps take.
        let left = || budget.saturating_sub(started.elapsed());
        if tokio::time::timeout(left(), self.http_task).await.is_err() {
            warn!("in-flight HTTP requests did not finish in time");
        }
        if let Some(d) = &self.discovery {
            d.abort();
        }
        let _ = tokio::time::timeout(left(), self.ctx.games.horde().shutdown()).await;
        let _ = tokio::time::timeout(left(), self.ctx.connector.stop()).await;
    }
}

/// The exit code of a node that cannot join the cluster it found (see
/// [`horde::membership::Incompatible`]).
pub const EXIT_INCOMPATIBLE: u8 = 3;

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
    let signal = tokio::select! {
        signal = shutdown_signal() => signal,
        refusal = node.ctx.games.horde().refused() => {
            // Refused at the door: a member of the cluster speaks no protocol version this
            // build speaks. It holds nothing and no member counts it: stop, and say why.
            error!(%refusal, "cannot join the cluster; exiting");
            eprintln!("error: {refusal}");
            node.stop_at_once().await;
            return ExitCode::from(EXIT_INCOMPATIBLE);
        }
    };
    info!(
        signal,
        timeout_ms = config.shutdown_timeout.as_millis() as u64,
        "shutting down: draining games"
    );
    let budget = config.shutdown_timeout;
    if tokio::time::timeout(budget, node.shutdown(budget))
        .await
        .is_err()
    {
        warn!("shutdown did not finish in time");
    }
    info!("node stopped");
    ExitCode::SUCCESS
}

/// `minotaur health`: 0 when this host's node answers `/healthz` with 200.
pub async fn health(config: &Config) -> ExitCode {
    let ip = if config.http_bind.is_unspecified() {
        IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
    } else {
        config.http_bind
    };
    let url = format!("http://{}/healthz", SocketAddr::new(ip, config.http_port));
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    match client.get(&url).send().await {
        Ok(r) if r.status().is_success() => ExitCode::SUCCESS,
        Ok(r) => {
            eprintln!("not ready: {} from {url}", r.status());
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("not ready: {e}");
            ExitCode::from(1)
        }
    }
}
