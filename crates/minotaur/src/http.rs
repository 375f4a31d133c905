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
//! - [`dashboard`]: `/api/cluster/stream`, the page's live view of the cluster (a WebSocket).
//! - [`ws`]: the game WebSocket.
//! - [`conn`]: one connection's limits (header and keep-alive timeouts, `MAX_CONNECTIONS`).
//! - [`metrics`]: Prometheus metrics.
//! - `page.html`: the web page served at `/`.

pub mod api;
pub mod conn;
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
/// Open HTTP + WebSocket connections a node serves at once unless `MAX_CONNECTIONS` says.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

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
    max_connections: usize,
}

impl Server {
    /// Binds `addr` (port 0 picks one).
    pub async fn bind(addr: SocketAddr, state: AppState) -> std::io::Result<Server> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        Ok(Server {
            listener,
            app: router(state),
            max_connections: DEFAULT_MAX_CONNECTIONS,
        })
    }

    /// Serves at most `n` connections at once (`MAX_CONNECTIONS`); beyond, a new one gets 503.
    pub fn max_connections(mut self, n: usize) -> Server {
        self.max_connections = n;
        self
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests finish.
    ///
    /// Each connection is served by hyper's HTTP/1.1 with the limits of [`conn`]; upgraded
    /// WebSockets run on their own and keep their place among `max_connections`.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        use hyper_util::rt::TokioIo;
        use hyper_util::service::TowerToHyperService;

        let places = Arc::new(tokio::sync::Semaphore::new(self.max_connections));
        let refusal = conn::refusal(self.max_connections);
        let service = TowerToHyperService::new(self.app);
        // Every connection holds a receiver: told to finish, and waited for until all dropped.
        let (stopping, stop) = watch::channel(false);
        tokio::pin!(shutdown);
        loop {
            let tcp = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((tcp, _)) => tcp,
                    Err(e) => {
                        // Out of file descriptors and the like: wait rather than spin.
                        tracing::warn!(error = %e, "cannot accept an HTTP connection");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            // Without TCP_NODELAY a response written in two segments waits for the client's
            // delayed ACK: 40 ms per request.
            let _ = tcp.set_nodelay(true);
            let Ok(place) = places.clone().try_acquire_owned() else {
                // Written whole into the fresh socket's buffer; the request is never read.
                let _ = tcp.try_write(&refusal);
                tracing::debug!(
                    max = self.max_connections,
                    "connection refused: MAX_CONNECTIONS reached"
                );
                continue;
            };
            let connection = conn::builder()
                .serve_connection(
                    TokioIo::new(conn::Counted::new(tcp, place)),
                    service.clone(),
                )
                .with_upgrades();
            let mut stop = stop.clone();
            tokio::spawn(async move {
                tokio::pin!(connection);
                let ended = tokio::select! {
                    ended = connection.as_mut() => ended,
                    _ = stop.changed() => {
                        // Finishes the request in flight, then closes.
                        connection.as_mut().graceful_shutdown();
                        connection.await
                    }
                };
                if let Err(e) = ended {
                    tracing::debug!(error = %e, "HTTP connection ended");
                }
            });
        }
        drop(self.listener);
        drop(stop);
        let _ = stopping.send(true);
        stopping.closed().await;
        Ok(())
    }
}
