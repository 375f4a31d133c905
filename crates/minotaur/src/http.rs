//! The HTTP server on `PORT`: the JSON API, the WebSocket, the web page, `/healthz`,
//! `/livez` and `/metrics`, with axum.
//!
//! Any node answers for any game (requests for a game hosted elsewhere are routed through
//! horde). Owns request parsing and the mapping of errors to status codes (400 malformed,
//! 404 unknown, 409 refused by the rules, 413 too large, 503 not ready or draining); what
//! happens to a game is the games service's business.
//!
//! # Layout
//! - [`api`]: the JSON endpoints.
//! - [`dashboard`]: `/api/cluster/stream`, the page's live view of the cluster (SSE).
//! - [`ws`]: the game WebSocket.
//! - [`metrics`]: Prometheus metrics.
//! - `page.html`: the web page served at `/`.

pub mod api;
pub mod dashboard;
pub mod metrics;
pub mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use discovery::Connector;
use tokio::sync::watch;

use crate::games::Games;

/// Largest request body (413 beyond).
pub const MAX_BODY: usize = 64 * 1024;

/// Where a node is in its life, as the HTTP side needs to know it.
#[derive(Debug)]
pub struct Lifecycle {
    /// Set on SIGTERM (or the `drain` command): `/healthz` says 503, no new games here.
    draining: AtomicBool,
    /// Flips to true once this node's games have moved: WebSockets close then, not before.
    sockets_close: watch::Sender<bool>,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self {
            draining: AtomicBool::new(false),
            sockets_close: watch::channel(false).0,
        }
    }
}

impl Lifecycle {
    /// Starts draining.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// True while draining.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Closes every WebSocket (their games have moved; clients reconnect to another node).
    pub fn close_sockets(&self) {
        let _ = self.sockets_close.send(true);
    }

    /// Resolves when sockets must close.
    pub fn sockets_closing(&self) -> watch::Receiver<bool> {
        self.sockets_close.subscribe()
    }
}

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The games service.
    pub games: Games,
    /// The cluster connector (for `/api/cluster`).
    pub connector: Connector,
    /// Draining, sockets.
    pub lifecycle: Arc<Lifecycle>,
    /// Metrics.
    pub metrics: Arc<metrics::Metrics>,
    /// The frames of `/api/cluster/stream`, built once per tick for every page.
    pub dashboard: dashboard::Dashboard,
}

impl AppState {
    /// Ready: joined the cluster and synced the registry, and not draining.
    pub fn ready(&self) -> Result<(), &'static str> {
        if self.lifecycle.is_draining() {
            Err("draining")
        } else if self.games.horde().status() != horde::MemberStatus::Alive {
            Err("joining the cluster")
        } else if !self.games.horde().is_ready() {
            Err("no quorum lease: not granted by a majority of the members yet")
        } else {
            Ok(())
        }
    }
}

/// The router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(api::page))
        .route("/healthz", get(api::healthz))
        .route("/livez", get(api::livez))
        .route("/metrics", get(metrics::metrics))
        .route("/api/cluster", get(api::cluster))
        .route("/api/cluster/stream", get(dashboard::stream))
        .route("/api/games", post(api::create).get(api::list))
        .route("/api/games/{id}", get(api::show))
        .route("/api/games/{id}/input", post(api::input))
        .route("/api/games/{id}/ws", get(ws::upgrade))
        .fallback(api::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::observe_requests,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// A bound HTTP listener.
#[derive(Debug)]
pub struct Server {
    listener: tokio::net::TcpListener,
    app: Router,
}

impl Server {
    /// Binds `addr` (port 0 picks one).
    pub async fn bind(addr: SocketAddr, state: AppState) -> std::io::Result<Server> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        Ok(Server {
            listener,
            app: router(state),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests finish.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        use axum::serve::ListenerExt;
        // Without TCP_NODELAY a response written in two segments waits for the client's
        // delayed ACK: 40 ms per request.
        let listener = self.listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, self.app)
            .with_graceful_shutdown(shutdown)
            .await
    }
}
