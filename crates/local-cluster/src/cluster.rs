//! A cluster of real `minotaur start` processes on loopback addresses (127.0.NET.x, one
//! `CLUSTER_PORT` and one `PORT` for all, as containers) with the embedded DNS server
//! standing in for Swarm's (`tasks.minotaur-demo_minotaur`).
//!
//! [`Cluster::replace`] does what a Swarm `start-first` update does to one task: start the new
//! one, wait until healthy, put it in DNS, take the old one out, SIGTERM it, wait for it to
//! exit. The cluster also plays the load balancer in front of the service: [`Cluster::targets`]
//! lists the nodes clients may use, a node being in it once healthy and out of it when it
//! leaves DNS, before its SIGTERM.
//!
//! [`Cluster::start_on`] runs the nodes on another [`Network`] instead (the harness's network
//! namespaces, 10.77.NET.x, the DNS server on the bridge's address): then [`Cluster::cut`]
//! cuts a node off from the others (clients still reach it) and [`Cluster::heal`] ends it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;
use tokio::time::Instant;

use crate::dns::DnsServer;
use crate::network::{Loopback, Network, Place};
use crate::node::{self, NodeProcess};
use crate::{Error, wait};

/// The DNS name the cluster's nodes poll.
pub const SERVICE: &str = "tasks.minotaur-demo_minotaur";

/// Longest wait for a node to become healthy, and for all to form one cluster.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for a drained node to exit after its SIGTERM.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest wait for each node to exit at [`Cluster::shutdown`].
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(15);
/// How often health and membership are asked while waiting.
const CHECK_INTERVAL: Duration = Duration::from_millis(20);
/// `RUST_LOG` of the cluster's nodes (less than a lone test node's: many nodes, long runs).
const RUST_LOG: &str = "info,ractor=warn,ractor_cluster=error";

/// The nodes clients may use, as base URLs; shared by the cluster (which writes it) and the
/// players (which read it).
pub type Targets = Arc<RwLock<Vec<String>>>;

/// How to run a cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Nodes at the start.
    pub nodes: usize,
    /// The `minotaur` binary.
    pub binary: PathBuf,
    /// Third byte of the loopback addresses (127.0.NET.x).
    pub net: u8,
    /// Where node logs go.
    pub log_dir: PathBuf,
    /// Wait between taking a node out of DNS and SIGTERM (Swarm waits 2 s).
    pub dns_grace: Duration,
    /// Extra environment for every node.
    pub env: Vec<(String, String)>,
}

impl ClusterOptions {
    /// `nodes` nodes of `binary` on 127.0.`net`.x, logging under the fresh log directory of
    /// the run `test` ([`crate::logs::fresh_dir`]), taken out of DNS 300 ms before their
    /// SIGTERM, with no extra environment.
    pub fn new(binary: impl Into<PathBuf>, net: u8, nodes: usize, test: &str) -> Self {
        ClusterOptions {
            nodes,
            binary: binary.into(),
            net,
            log_dir: crate::logs::fresh_dir(test),
            dns_grace: Duration::from_millis(300),
            env: Vec::new(),
        }
    }
}

/// A cluster of node processes behind an embedded DNS server.
#[derive(Debug)]
pub struct Cluster {
    opts: ClusterOptions,
    dns: DnsServer,
    /// Shared by its nodes; `Debug` shows `"<redacted>"`.
    cookie: discovery::Cookie,
    cluster_port: u16,
    http_port: u16,
    /// The running nodes (replaced ones are removed).
    pub nodes: Vec<NodeProcess>,
    http: reqwest::Client,
    targets: Targets,
    /// Where the nodes run; it gives replacements new addresses, as new tasks get. Dropped
    /// after the nodes (declared after them): a namespace outlives its process.
    network: Box<dyn Network>,
}

impl Cluster {
    /// Starts the DNS server and `opts.nodes` nodes on loopback addresses (127.0.NET.x), and
    /// waits until they form one cluster.
    pub async fn start(opts: ClusterOptions) -> Result<Cluster, Error> {
        let network = Loopback::new(opts.net, opts.nodes);
        Cluster::start_on(opts, Box::new(network)).await
    }

    /// As [`Cluster::start`], with the nodes on `network` (`opts.net` is then the
    /// network's business).
    pub async fn start_on(
        opts: ClusterOptions,
        network: Box<dyn Network>,
    ) -> Result<Cluster, Error> {
        std::fs::create_dir_all(&opts.log_dir)?;
        let dns = DnsServer::start(std::net::SocketAddr::new(network.dns_ip(), 0)).await?;
        let (cluster_port, http_port) = network.ports()?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(64)
            .build()?;
        let mut cluster = Cluster {
            cookie: format!("demo-{:016x}", rand::random::<u64>()).into(),
            opts,
            dns,
            cluster_port,
            http_port,
            nodes: Vec::new(),
            http,
            targets: Arc::new(RwLock::new(Vec::new())),
            network,
        };
        let binary = cluster.opts.binary.clone();
        for _ in 0..cluster.opts.nodes {
            let n = cluster.spawn(&binary)?;
            cluster.nodes.push(n);
        }
        let ips: Vec<IpAddr> = cluster.nodes.iter().map(|n| n.ip).collect();
        cluster.dns.set_addresses(SERVICE, &ips);
        for i in 0..cluster.nodes.len() {
            cluster.wait_healthy(i, START_TIMEOUT).await?;
        }
        cluster.wait_members(START_TIMEOUT).await?;
        // All alive is not yet all ready: a member that just saw the others join needs a
        // majority's lease before it answers (503 "cut off" until then).
        for i in 0..cluster.nodes.len() {
            cluster.wait_healthy(i, START_TIMEOUT).await?;
        }
        cluster.set_targets();
        Ok(cluster)
    }

    fn spawn(&mut self, binary: &Path) -> Result<NodeProcess, Error> {
        let Place { ip, prefix } = self.network.place()?;
        let mut env: HashMap<String, String> = [
            ("RELEASE_NODE", node::name(ip)),
            ("RELEASE_COOKIE", self.cookie.expose().to_string()),
            ("CLUSTER_PORT", self.cluster_port.to_string()),
            ("PORT", self.http_port.to_string()),
            ("HTTP_BIND", ip.to_string()),
            ("DNS_CLUSTER_QUERY", SERVICE.to_string()),
            ("DNS_CLUSTER_RESOLVER", self.dns.addr().to_string()),
            ("DNS_CLUSTER_INTERVAL_MS", "500".to_string()),
            // `MINOTAUR_CLUSTER_RUST_LOG` overrides it (debugging a test or the demo).
            (
                "RUST_LOG",
                std::env::var("MINOTAUR_CLUSTER_RUST_LOG").unwrap_or_else(|_| RUST_LOG.to_string()),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        env.extend(self.opts.env.iter().cloned());
        NodeProcess::start_with(&prefix, binary, ip, env, &self.opts.log_dir)
    }

    /// Cuts node `i` off from every other node, both ways; clients, DNS and the console still
    /// reach it. Only on a network that can ([`Network::cut`]): not on loopback addresses.
    pub fn cut(&self, i: usize) -> Result<(), Error> {
        self.network.cut(self.node_ip(i)?)
    }

    /// Ends node `i`'s cut.
    pub fn heal(&self, i: usize) -> Result<(), Error> {
        self.network.heal(self.node_ip(i)?)
    }

    fn node_ip(&self, i: usize) -> Result<IpAddr, Error> {
        self.nodes.get(i).map(|n| n.ip).ok_or_else(|| {
            Error::Setup(format!(
                "no node {i}: the cluster has {} nodes",
                self.nodes.len()
            ))
        })
    }

    /// The HTTP client the cluster uses.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Base URLs of the running nodes.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(NodeProcess::url).collect()
    }

    /// The nodes clients should use now (for [`crate::load::Load`]).
    pub fn targets(&self) -> Targets {
        self.targets.clone()
    }

    fn set_targets(&self) {
        if let Ok(mut t) = self.targets.write() {
            *t = self.urls();
        }
    }

    async fn wait_healthy(&self, i: usize, timeout: Duration) -> Result<(), Error> {
        let url = self.nodes[i].url();
        let healthz = format!("{url}/healthz");
        // The last answer, for the error: why the node says it is not ready.
        let last = std::sync::Mutex::new(String::from("no answer"));
        let ok = wait::poll(timeout, CHECK_INTERVAL, || async {
            let r = match self.http.get(&healthz).send().await {
                Ok(r) => r,
                Err(e) => {
                    if let Ok(mut l) = last.lock() {
                        *l = e.to_string();
                    }
                    return None;
                }
            };
            let status = r.status();
            if status.is_success() {
                return Some(());
            }
            let body = r.text().await.unwrap_or_default();
            if let Ok(mut l) = last.lock() {
                *l = format!("{status} {body}");
            }
            None
        })
        .await;
        let last = last.into_inner().unwrap_or_default();
        ok.ok_or(Error::Unhealthy { url, timeout, last })
    }

    /// How many members node `url` lists as alive (0 when it does not answer).
    async fn alive_members(&self, url: &str) -> usize {
        let Ok(r) = self.http.get(format!("{url}/api/cluster")).send().await else {
            return 0;
        };
        r.json::<Value>()
            .await
            .ok()
            .and_then(|v| {
                v["members"]
                    .as_array()
                    .map(|m| m.iter().filter(|x| x["status"] == "alive").count())
            })
            .unwrap_or(0)
    }

    async fn wait_members(&self, timeout: Duration) -> Result<(), Error> {
        let want = self.nodes.len();
        wait::poll(timeout, CHECK_INTERVAL, || async {
            for n in &self.nodes {
                if self.alive_members(&n.url()).await != want {
                    return None;
                }
            }
            Some(())
        })
        .await
        .ok_or(Error::NoCluster {
            nodes: want,
            timeout,
        })
    }

    /// Replaces node `i` by a node running `binary`, as a start-first rolling update does;
    /// returns how long it took and the old node's exit code.
    pub async fn replace(
        &mut self,
        i: usize,
        binary: &Path,
    ) -> Result<(Duration, Option<i32>), Error> {
        let started = Instant::now();
        let new = self.spawn(binary)?;
        self.nodes.push(new);
        let last = self.nodes.len() - 1;
        self.wait_healthy(last, START_TIMEOUT).await?;
        // Healthy: in DNS. The old one leaves DNS, then gets SIGTERM, as Swarm does it.
        let mut ips: Vec<IpAddr> = self.nodes.iter().map(|n| n.ip).collect();
        let old_ip = self.nodes[i].ip;
        ips.retain(|ip| *ip != old_ip);
        self.dns.set_addresses(SERVICE, &ips);
        let mut old = self.nodes.remove(i);
        self.set_targets();
        tokio::time::sleep(self.opts.dns_grace).await;
        old.signal(Signal::SIGTERM);
        let code = old.wait(DRAIN_TIMEOUT).await;
        Ok((started.elapsed(), code))
    }

    /// Starts one more node running `binary` and waits until it is healthy and in DNS; its
    /// index in [`Cluster::nodes`].
    pub async fn add(&mut self, binary: &Path) -> Result<usize, Error> {
        let new = self.spawn(binary)?;
        self.nodes.push(new);
        let last = self.nodes.len() - 1;
        self.wait_healthy(last, START_TIMEOUT).await?;
        let ips: Vec<IpAddr> = self.nodes.iter().map(|n| n.ip).collect();
        self.dns.set_addresses(SERVICE, &ips);
        self.set_targets();
        Ok(last)
    }

    /// Starts one more node running `binary` and puts it in DNS at once, without waiting for
    /// it to become healthy (one that should not join: it is not given to clients); its index.
    pub fn add_unready(&mut self, binary: &Path) -> Result<usize, Error> {
        let new = self.spawn(binary)?;
        self.nodes.push(new);
        let ips: Vec<IpAddr> = self.nodes.iter().map(|n| n.ip).collect();
        self.dns.set_addresses(SERVICE, &ips);
        Ok(self.nodes.len() - 1)
    }

    /// Takes node `i` out of the cluster (DNS, the players' targets) as it is, running or not;
    /// the process is the caller's (killed when dropped).
    pub fn remove(&mut self, i: usize) -> NodeProcess {
        let node = self.nodes.remove(i);
        let ips: Vec<IpAddr> = self.nodes.iter().map(|n| n.ip).collect();
        self.dns.set_addresses(SERVICE, &ips);
        self.set_targets();
        node
    }

    /// Scales the cluster in by node `i`, as a rolling update does to an old task without
    /// starting a new one: out of DNS and the targets, SIGTERM, wait for it to exit (its
    /// games move to the others first); returns its exit code.
    pub async fn drain(&mut self, i: usize) -> Option<i32> {
        let mut old = self.nodes.remove(i);
        let ips: Vec<IpAddr> = self.nodes.iter().map(|n| n.ip).collect();
        self.dns.set_addresses(SERVICE, &ips);
        self.set_targets();
        tokio::time::sleep(self.opts.dns_grace).await;
        old.signal(Signal::SIGTERM);
        old.wait(DRAIN_TIMEOUT).await
    }

    /// SIGKILL of node `i` (no drain, no goodbye); it leaves DNS and the players' targets.
    pub fn kill(&mut self, i: usize) -> NodeProcess {
        let mut old = self.nodes.remove(i);
        old.kill();
        let ips: Vec<IpAddr> = self.nodes.iter().map(|n| n.ip).collect();
        self.dns.set_addresses(SERVICE, &ips);
        self.set_targets();
        old
    }

    /// Games each node hosts, as the first node's `/api/cluster` reports them (by node name).
    pub async fn games_per_node(&self) -> HashMap<String, u64> {
        self.members_json()
            .await
            .iter()
            .map(|m| (text(&m["node"]), m["games"].as_u64().unwrap_or(0)))
            .collect()
    }

    /// The `members` of the first node's `/api/cluster` (empty when it does not answer).
    async fn members_json(&self) -> Vec<Value> {
        if let Some(url) = self.urls().first()
            && let Ok(r) = self.http.get(format!("{url}/api/cluster")).send().await
            && let Ok(mut v) = r.json::<Value>().await
            && let Value::Array(ms) = v["members"].take()
        {
            return ms;
        }
        Vec::new()
    }

    /// Every node's registry (`GET /api/games` on each): game code -> host, one map per node
    /// (empty for a node that does not answer).
    pub async fn registries(&self) -> Vec<HashMap<String, String>> {
        registries(&self.http, &self.urls()).await
    }

    /// Every game's host as each node's registry says (`GET /api/games` on each): the games
    /// whose nodes disagree, or that some node does not list.
    pub async fn owners_disagree(&self) -> Vec<String> {
        disagreeing(&self.registries().await)
    }

    /// The cluster's members as the first node sees them: node name -> (status, version);
    /// empty when it does not answer.
    pub async fn members(&self) -> HashMap<String, (String, String)> {
        self.members_json()
            .await
            .iter()
            .map(|m| {
                let status_version = (text(&m["status"]), text(&m["version"]));
                (text(&m["node"]), status_version)
            })
            .collect()
    }

    /// Stops every node: SIGTERM to all, then waits for each to exit.
    pub async fn shutdown(mut self) {
        for n in &self.nodes {
            n.signal(Signal::SIGTERM);
        }
        for n in &mut self.nodes {
            let _ = n.wait(SHUTDOWN_TIMEOUT).await;
        }
    }
}

/// The registries of the nodes at `urls` (`GET /api/games` on each): game code -> host, one
/// map per node (empty for a node that does not answer).
pub async fn registries(http: &reqwest::Client, urls: &[String]) -> Vec<HashMap<String, String>> {
    let mut views: Vec<HashMap<String, String>> = Vec::new();
    for url in urls {
        let mut view = HashMap::new();
        if let Ok(r) = http.get(format!("{url}/api/games")).send().await
            && let Ok(Value::Array(games)) = r.json::<Value>().await
        {
            for g in games {
                view.insert(text(&g["code"]), text(&g["node"]));
            }
        }
        views.push(view);
    }
    views
}

/// The games whose host the registries (as [`Cluster::registries`] returns them) disagree
/// on, or that some of them do not list, sorted.
pub fn disagreeing(views: &[HashMap<String, String>]) -> Vec<String> {
    let Some(first) = views.first() else {
        return Vec::new();
    };
    let mut bad: Vec<String> = first
        .iter()
        .filter(|(code, node)| views.iter().any(|v| v.get(*code) != Some(node)))
        .map(|(code, _)| code.clone())
        .collect();
    bad.sort();
    bad
}

/// A JSON string's text ("" for anything else).
fn text(v: &Value) -> String {
    v.as_str().unwrap_or("").to_string()
}

/// Games per node at one moment, as a node's `/api/cluster` reported them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GamesSample {
    /// Since the sampler started.
    pub at: Duration,
    /// Node name -> games it hosts (members not dead: alive, joining, draining, left).
    pub per_node: std::collections::BTreeMap<String, u64>,
}

/// Samples games per node in the background (see [`Cluster::sample_games`]).
#[derive(Debug)]
pub struct GamesSampler {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Vec<GamesSample>>,
    started: Instant,
}

impl GamesSampler {
    /// Time since the sampler started (to put events on the samples' time line).
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Stops sampling; the samples, oldest first.
    pub async fn stop(self) -> Vec<GamesSample> {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_default()
    }
}

impl Cluster {
    /// Asks the first of the [`Cluster::targets`] for `/api/cluster` every `every` until the
    /// sampler is stopped, through every replacement; a node that does not answer within
    /// `every` leaves a gap rather than holding up the next sample.
    pub fn sample_games(&self, every: Duration) -> GamesSampler {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let http = self.http.clone();
        let targets = self.targets.clone();
        let started = Instant::now();
        let task = tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    // The only change is to stop (and a dropped sampler stops too).
                    _ = stopped.changed() => break,
                }
                let url = targets.read().ok().and_then(|t| t.first().cloned());
                let Some(url) = url else { continue };
                let ask = async {
                    let v = crate::node::get_json(&http, &format!("{url}/api/cluster")).await?;
                    let per_node = v["members"]
                        .as_array()?
                        .iter()
                        .map(|m| (text(&m["node"]), m["games"].as_u64().unwrap_or(0)))
                        .collect();
                    Some(per_node)
                };
                let at = started.elapsed();
                if let Ok(Some(per_node)) = tokio::time::timeout(every, ask).await {
                    samples.push(GamesSample { at, per_node });
                }
            }
            samples
        });
        GamesSampler {
            stop,
            task,
            started,
        }
    }
}
