//! The discovery loop: polls every strategy (static hosts, DNS A/AAAA, DNS SRV) at once and then
//! every interval, and publishes the union as a [`PeerSet`] on a watch channel.
//!
//! Owns the last good answer of each source and the rate limit of failure logs. It must not
//! dial or disconnect anything: a peer that vanishes from DNS is only no longer *discovered*;
//! whether to keep its connection is the connector's decision.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, info, warn};

use crate::config::{DiscoveryConfig, DnsQuery};
use crate::dns::{self, DnsError};
use crate::node_name::Host;
use crate::{NodeName, Peer, PeerSet};

/// A source that keeps failing is logged again at most this often.
const FAILURE_LOG_EVERY: Duration = Duration::from_secs(60);

/// Handle of a running discovery loop.
#[derive(Debug)]
pub struct DiscoveryHandle {
    peers: watch::Receiver<PeerSet>,
    polled: watch::Receiver<bool>,
    refresh: Arc<Notify>,
    task: JoinHandle<()>,
}

impl DiscoveryHandle {
    /// A receiver of the current peer set and its changes.
    pub fn subscribe(&self) -> watch::Receiver<PeerSet> {
        self.peers.clone()
    }

    /// Waits until the first poll of every source has finished (its answer is then in
    /// [`DiscoveryHandle::subscribe`]).
    pub async fn first_poll(&self) {
        let mut polled = self.polled.clone();
        let _ = polled.wait_for(|p| *p).await;
    }

    /// Polls at once instead of waiting for the interval (a draining node with no peer left
    /// asks this: the replacement may have just appeared).
    pub fn refresh(&self) {
        self.refresh.notify_one();
    }

    /// Stops the loop.
    pub fn abort(&self) {
        self.task.abort();
    }
}

impl Drop for DiscoveryHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the loop on the current tokio runtime; the first poll runs at once.
/// Fails only when DNS is configured and no resolver can be built.
pub fn spawn_discovery(
    config: DiscoveryConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<DiscoveryHandle, DnsError> {
    let needs_dns = !config.dns_queries.is_empty()
        || config
            .static_hosts
            .iter()
            .any(|n| matches!(n.host(), Some(Host::Domain(_))));
    let resolver = if needs_dns {
        Some(dns::resolver(config.resolver)?)
    } else {
        None
    };
    let (tx, rx) = watch::channel(PeerSet::new());
    let (polled_tx, polled) = watch::channel(false);
    let refresh = Arc::new(Notify::new());
    let poller = Poller {
        config,
        resolver,
        sources: BTreeMap::new(),
    };
    let task = tokio::spawn(poller.run(tx, polled_tx, refresh.clone(), shutdown));
    Ok(DiscoveryHandle {
        peers: rx,
        polled,
        refresh,
        task,
    })
}

/// Health and last answer of one source (a DNS query or a static host name).
#[derive(Debug, Default)]
struct Source {
    /// Last successful answer: kept while the source fails, so one bad poll drops nobody.
    peers: Vec<Peer>,
    /// When the current run of failures began, for the recovery log line.
    failing_since: Option<Instant>,
    /// When a failure was last logged, for the rate limit.
    last_logged: Option<Instant>,
    /// Failures since the last log line.
    unlogged_failures: u64,
}

struct Poller {
    config: DiscoveryConfig,
    resolver: Option<TokioResolver>,
    sources: BTreeMap<String, Source>,
}

impl Poller {
    async fn run(
        mut self,
        tx: watch::Sender<PeerSet>,
        polled: watch::Sender<bool>,
        refresh: Arc<Notify>,
        shutdown: impl Future<Output = ()>,
    ) {
        let mut ticker = tokio::time::interval(self.config.interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = ticker.tick() => self.poll(&tx).await,
                _ = refresh.notified() => self.poll(&tx).await,
                _ = &mut shutdown => return,
            }
            polled.send_if_modified(|p| !std::mem::replace(p, true));
        }
    }

    async fn poll(&mut self, tx: &watch::Sender<PeerSet>) {
        let answers = self.lookup_all().await;
        for (key, answer) in answers {
            self.record(key, answer);
        }
        let set: PeerSet = self
            .sources
            .values()
            .flat_map(|s| s.peers.iter().cloned())
            .filter(|p| p.name != self.config.self_name)
            .collect();
        tx.send_if_modified(|current| {
            if *current == set {
                false
            } else {
                debug!(peers = set.len(), "discovered peers changed");
                *current = set;
                true
            }
        });
    }

    /// Asks every source concurrently: one slow name must not delay the others.
    async fn lookup_all(&self) -> Vec<(String, Result<Vec<Peer>, DnsError>)> {
        let mut lookups = Vec::new();
        for host in &self.config.static_hosts {
            lookups.push(Lookup::Static(host.clone()));
        }
        for q in &self.config.dns_queries {
            lookups.push(Lookup::Dns(q.clone()));
        }
        let futures = lookups.into_iter().map(|l| {
            let key = l.key();
            let fut = l.run(
                self.resolver.as_ref(),
                &self.config.basename,
                self.config.cluster_port,
            );
            async move { (key, fut.await) }
        });
        futures::future::join_all(futures).await
    }

    fn record(&mut self, key: String, answer: Result<Vec<Peer>, DnsError>) {
        let source = self.sources.entry(key.clone()).or_default();
        let now = Instant::now();
        match answer {
            Ok(peers) => {
                if let Some(since) = source.failing_since.take() {
                    info!(source = %key, failed_for_ms = since.elapsed().as_millis() as u64, "peer lookup recovered");
                }
                source.last_logged = None;
                source.unlogged_failures = 0;
                source.peers = peers;
            }
            Err(error) => {
                source.failing_since.get_or_insert(now);
                source.unlogged_failures += 1;
                let due = source
                    .last_logged
                    .is_none_or(|t| now.duration_since(t) >= FAILURE_LOG_EVERY);
                if due {
                    warn!(source = %key, %error, failures = source.unlogged_failures, kept_peers = source.peers.len(), "peer lookup failed");
                    source.last_logged = Some(now);
                    source.unlogged_failures = 0;
                }
            }
        }
    }
}

enum Lookup {
    Static(NodeName),
    Dns(DnsQuery),
}

impl Lookup {
    fn key(&self) -> String {
        match self {
            Lookup::Static(n) => format!("static {n}"),
            Lookup::Dns(DnsQuery::Addresses(n)) => format!("dns {n}"),
            Lookup::Dns(DnsQuery::Srv(n)) => format!("dns srv {n}"),
        }
    }

    async fn run(
        self,
        resolver: Option<&TokioResolver>,
        basename: &str,
        port: u16,
    ) -> Result<Vec<Peer>, DnsError> {
        match self {
            Lookup::Static(name) => {
                let ip = match name.host() {
                    Some(Host::Ip(ip)) => Some(*ip),
                    Some(Host::Domain(d)) => match resolver {
                        Some(r) => dns::addresses(r, d).await?.first().copied(),
                        None => None,
                    },
                    None => None,
                };
                Ok(ip
                    .map(|ip| Peer {
                        name,
                        addr: SocketAddr::new(ip, port),
                    })
                    .into_iter()
                    .collect())
            }
            Lookup::Dns(query) => {
                let Some(r) = resolver else {
                    return Ok(Vec::new());
                };
                let addrs: Vec<SocketAddr> = match &query {
                    DnsQuery::Addresses(n) => dns::addresses(r, n)
                        .await?
                        .into_iter()
                        .map(|ip| SocketAddr::new(ip, port))
                        .collect(),
                    DnsQuery::Srv(n) => dns::srv(r, n).await?,
                };
                Ok(addrs
                    .into_iter()
                    .filter_map(|addr| {
                        NodeName::new(basename, Host::Ip(addr.ip()))
                            .ok()
                            .map(|name| Peer { name, addr })
                    })
                    .collect())
            }
        }
    }
}
