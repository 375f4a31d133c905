//! `minotaur demo`: a rolling deploy on one machine, measured. Also the scenario driver of the
//! end-to-end tests, which compose the same pieces.
//!
//! [`Cluster`] runs real `minotaur start` processes on loopback addresses (127.0.NET.x, one
//! `CLUSTER_PORT` and one `PORT` for all, as containers) with an embedded DNS server standing
//! in for Swarm's (`tasks.minotaur-demo_minotaur`). [`Load`] plays games over HTTP like
//! clients do: every input has its own `input_id`, and a failed request is retried with the
//! same `input_id` on another node until it is acknowledged. [`Cluster::replace`] does what a
//! Swarm `start-first` update does to one task: start the new one, wait until healthy, put it
//! in DNS, take the old one out, SIGTERM it, wait for it to exit. [`verify`] checks every
//! game afterwards: still there, and `seq` equal to the inputs acknowledged (none lost, none
//! applied twice).
//!
//! A game's pause is the longest any one of its inputs took (retries included) while nodes
//! were being replaced; every game moves at least once during a full rolling update.

use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use discovery::dns_server::DnsServer;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio::time::Instant;

/// The DNS name the demo's nodes poll.
pub const SERVICE: &str = "tasks.minotaur-demo_minotaur";

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// Something needed could not start.
    #[error("{0}")]
    Setup(String),
    /// A node did something it must not.
    #[error("{0}")]
    Node(String),
}

fn setup(e: impl std::fmt::Display) -> DemoError {
    DemoError::Setup(e.to_string())
}

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

/// One node process.
#[derive(Debug)]
pub struct NodeProcess {
    /// Its address.
    pub ip: IpAddr,
    /// Its HTTP base URL.
    pub url: String,
    child: Option<Child>,
}

impl NodeProcess {
    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Resident memory in bytes.
    pub fn rss(&self) -> u64 {
        self.pid().map_or(0, rss_bytes)
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        if let Some(pid) = self.pid() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
        }
    }

    /// Waits for the process to exit; its exit code.
    async fn wait(&mut self, timeout: Duration) -> Option<i32> {
        wait_child(&mut self.child, timeout).await
    }
}

/// Resident memory of process `pid` in bytes (0 when it cannot be read).
pub fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// Waits up to `timeout` for `child` to exit and reaps it (`child` becomes `None`); its exit
/// code, or `None` on timeout, without a process, or when a signal ended it.
pub async fn wait_child(child: &mut Option<Child>, timeout: Duration) -> Option<i32> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(c) = child.as_mut()
            && let Ok(Some(status)) = c.try_wait()
        {
            *child = None;
            return status.code();
        }
        if Instant::now() > end {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A cluster of node processes behind an embedded DNS server.
#[derive(Debug)]
pub struct Cluster {
    opts: ClusterOptions,
    dns: DnsServer,
    cookie: String,
    cluster_port: u16,
    http_port: u16,
    next_host: u8,
    /// The running nodes (replaced ones are removed).
    pub nodes: Vec<NodeProcess>,
    http: reqwest::Client,
    /// The nodes clients may use: as a load balancer in front of a Swarm service, a node is in
    /// it once healthy and out of it when it leaves DNS, before its SIGTERM.
    targets: Arc<std::sync::RwLock<Vec<String>>>,
}

/// A TCP port free on every address of `ips` (at least one).
pub fn free_port(ips: &[IpAddr]) -> Result<u16, DemoError> {
    for _ in 0..200 {
        let probe = std::net::TcpListener::bind((ips[0], 0)).map_err(setup)?;
        let port = probe.local_addr().map_err(setup)?.port();
        if ips[1..]
            .iter()
            .all(|ip| std::net::TcpListener::bind((*ip, port)).is_ok())
        {
            return Ok(port);
        }
    }
    Err(DemoError::Setup(
        "no free port on the loopback addresses".into(),
    ))
}

/// Two different TCP ports, each free on every address of `ips`.
pub fn free_ports(ips: &[IpAddr]) -> Result<(u16, u16), DemoError> {
    let a = free_port(ips)?;
    loop {
        let b = free_port(ips)?;
        if b != a {
            return Ok((a, b));
        }
    }
}

impl Cluster {
    /// Starts the DNS server and `opts.nodes` nodes, and waits until they form one cluster.
    pub async fn start(opts: ClusterOptions) -> Result<Cluster, DemoError> {
        std::fs::create_dir_all(&opts.log_dir).map_err(setup)?;
        let dns = DnsServer::start(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .map_err(setup)?;
        // Room for the first nodes and one replacement each.
        let ips: Vec<IpAddr> = (0..(opts.nodes * 2 + 2) as u8)
            .map(|i| IpAddr::from([127, 0, opts.net, 2 + i]))
            .collect();
        let (cluster_port, http_port) = free_ports(&ips)?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(64)
            .build()
            .map_err(setup)?;
        let mut cluster = Cluster {
            cookie: format!("demo-{:016x}", rand::random::<u64>()),
            opts,
            dns,
            cluster_port,
            http_port,
            next_host: 2,
            nodes: Vec::new(),
            http,
            targets: Arc::new(std::sync::RwLock::new(Vec::new())),
        };
        let binary = cluster.opts.binary.clone();
        for _ in 0..cluster.opts.nodes {
            let n = cluster.spawn(&binary)?;
            cluster.nodes.push(n);
        }
        let ips: Vec<IpAddr> = cluster.nodes.iter().map(|n| n.ip).collect();
        cluster.dns.set_addresses(SERVICE, &ips);
        for i in 0..cluster.nodes.len() {
            cluster.wait_healthy(i, Duration::from_secs(30)).await?;
        }
        cluster.wait_members(Duration::from_secs(30)).await?;
        cluster.set_targets();
        Ok(cluster)
    }

    fn spawn(&mut self, binary: &Path) -> Result<NodeProcess, DemoError> {
        let ip = IpAddr::from([127, 0, self.opts.net, self.next_host]);
        self.next_host += 1;
        let log =
            std::fs::File::create(self.opts.log_dir.join(format!("{ip}.log"))).map_err(setup)?;
        let child = Command::new(binary)
            .arg("start")
            .env_clear()
            .env("RELEASE_NODE", format!("minotaur@{ip}"))
            .env("RELEASE_COOKIE", &self.cookie)
            .env("CLUSTER_PORT", self.cluster_port.to_string())
            .env("PORT", self.http_port.to_string())
            .env("HTTP_BIND", ip.to_string())
            .env("DNS_CLUSTER_QUERY", SERVICE)
            .env("DNS_CLUSTER_RESOLVER", self.dns.addr().to_string())
            .env("DNS_CLUSTER_INTERVAL_MS", "500")
            .env("RUST_LOG", "info,ractor=warn,ractor_cluster=error")
            .envs(self.opts.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| setup(format!("cannot start {}: {e}", binary.display())))?;
        Ok(NodeProcess {
            ip,
            url: format!("http://{ip}:{}", self.http_port),
            child: Some(child),
        })
    }

    /// The HTTP client the cluster uses.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Base URLs of the running nodes.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.url.clone()).collect()
    }

    /// The nodes clients should use now (shared with [`Load`]).
    pub fn targets(&self) -> Arc<std::sync::RwLock<Vec<String>>> {
        self.targets.clone()
    }

    fn set_targets(&self) {
        if let Ok(mut t) = self.targets.write() {
            *t = self.urls();
        }
    }

    async fn wait_healthy(&self, i: usize, timeout: Duration) -> Result<(), DemoError> {
        let url = format!("{}/healthz", self.nodes[i].url);
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Ok(r) = self.http.get(&url).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(DemoError::Node(format!(
            "{} did not become healthy in {timeout:?}",
            self.nodes[i].url
        )))
    }

    async fn wait_members(&self, timeout: Duration) -> Result<(), DemoError> {
        let end = Instant::now() + timeout;
        let want = self.nodes.len();
        'outer: while Instant::now() < end {
            for n in &self.nodes {
                let alive = match self.http.get(format!("{}/api/cluster", n.url)).send().await {
                    Ok(r) => r
                        .json::<Value>()
                        .await
                        .ok()
                        .and_then(|v| {
                            v["members"]
                                .as_array()
                                .map(|m| m.iter().filter(|x| x["status"] == "alive").count())
                        })
                        .unwrap_or(0),
                    Err(_) => 0,
                };
                if alive != want {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue 'outer;
                }
            }
            return Ok(());
        }
        Err(DemoError::Node(format!(
            "the {want} nodes did not form one cluster in {timeout:?}"
        )))
    }

    /// Replaces node `i` as a start-first rolling update does; returns how long it took and
    /// the old node's exit code.
    pub async fn replace(
        &mut self,
        i: usize,
        binary: &Path,
    ) -> Result<(Duration, Option<i32>), DemoError> {
        let started = Instant::now();
        let new = self.spawn(binary)?;
        self.nodes.push(new);
        let last = self.nodes.len() - 1;
        self.wait_healthy(last, Duration::from_secs(30)).await?;
        // Healthy: in DNS. The old one leaves DNS, then gets SIGTERM, as Swarm does it.
        let mut ips: Vec<IpAddr> = self.nodes.iter().map(|n| n.ip).collect();
        let old_ip = self.nodes[i].ip;
        ips.retain(|ip| *ip != old_ip);
        self.dns.set_addresses(SERVICE, &ips);
        let mut old = self.nodes.remove(i);
        self.set_targets();
        tokio::time::sleep(self.opts.dns_grace).await;
        old.signal(nix::sys::signal::Signal::SIGTERM);
        let code = old.wait(Duration::from_secs(20)).await;
        Ok((started.elapsed(), code))
    }

    /// Stops every node.
    pub async fn shutdown(mut self) {
        for n in &self.nodes {
            n.signal(nix::sys::signal::Signal::SIGTERM);
        }
        for n in &mut self.nodes {
            let _ = n.wait(Duration::from_secs(15)).await;
        }
    }
}

/// One game as a client sees it.
#[derive(Debug, Clone)]
struct Tracked {
    code: String,
    /// Inputs acknowledged (2xx).
    acked: u64,
    /// Inputs given up on without an answer (may or may not be applied).
    unknown: u64,
    /// Who has ended the turn in the round the client last saw.
    ended: [bool; 2],
    /// Last state seen: `(round, seq)`; never goes back.
    last: (u64, u64),
    /// States seen going back (must stay 0).
    regressions: u64,
    /// Longest input while the measurement window was open, in ms.
    pause_ms: f64,
}

const PLAYERS: [&str; 2] = ["ann", "bob"];

/// Clients playing games.
#[derive(Debug)]
pub struct Load {
    games: Arc<Vec<Mutex<Tracked>>>,
    stop: Arc<AtomicBool>,
    measuring: Arc<AtomicBool>,
    failed_attempts: Arc<AtomicU64>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

/// Prints `line` when `MINOTAUR_DEMO_TRACE` is set (diagnosing a failed run).
fn trace(line: &str) {
    if std::env::var_os("MINOTAUR_DEMO_TRACE").is_some() {
        eprintln!("{line}");
    }
}

/// How an input ended.
enum Sent {
    /// Acknowledged, with the new state.
    Acked(Value),
    /// Refused by the rules (409): not applied.
    Refused,
    /// No answer after many attempts: may or may not have been applied.
    Unknown,
}

/// Attempts per input before giving up (10 ms apart, plus request time).
const MAX_ATTEMPTS: usize = 1000;
/// One attempt waits this long at most: an input normally takes milliseconds, and a node that
/// vanished without a reset must not hold a client for longer (the retry goes elsewhere).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);

/// Answers slower than this are traced (with `MINOTAUR_DEMO_TRACE`).
const SLOW_TRACE: Duration = Duration::from_millis(25);

/// Sends one input until it is acknowledged or refused: the same `input_id` every time, on
/// the next node after a failure.
async fn send_input(
    http: &reqwest::Client,
    urls: &Arc<std::sync::RwLock<Vec<String>>>,
    code: &str,
    body: &Value,
    start: usize,
    failed: &AtomicU64,
) -> Sent {
    for attempt in start..start + MAX_ATTEMPTS {
        let url = match urls.read() {
            Ok(urls) if !urls.is_empty() => {
                format!("{}/api/games/{code}/input", urls[attempt % urls.len()])
            }
            _ => return Sent::Unknown,
        };
        let began = Instant::now();
        let outcome = match http
            .post(&url)
            .timeout(ATTEMPT_TIMEOUT)
            .json(body)
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => match r.json::<Value>().await {
                Ok(v) => {
                    if began.elapsed() > SLOW_TRACE {
                        trace(&format!(
                            "[{:?}] slow answer after {:?}: {url} (node {})",
                            std::time::SystemTime::now(),
                            began.elapsed(),
                            v["node"].as_str().unwrap_or("?")
                        ));
                    }
                    return Sent::Acked(v);
                }
                Err(e) => format!("unreadable answer: {e}"),
            },
            Ok(r) if r.status() == reqwest::StatusCode::CONFLICT => return Sent::Refused,
            Ok(r) => format!("{}: {}", r.status(), r.text().await.unwrap_or_default()),
            Err(e) => format!("{e}"),
        };
        failed.fetch_add(1, Ordering::Relaxed);
        trace(&format!(
            "[{:?}] retrying after {:?}: {url}: {outcome}",
            std::time::SystemTime::now(),
            began.elapsed()
        ));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Sent::Unknown
}

impl Load {
    /// Creates `count` games (two players each) and starts `clients` players on them, sending
    /// `rate` inputs per second in all (paced, so latencies measure the cluster, not a queue
    /// the benchmark itself built).
    pub async fn start(
        http: &reqwest::Client,
        count: usize,
        clients: usize,
        rate: f64,
        urls: Arc<std::sync::RwLock<Vec<String>>>,
    ) -> Result<Load, DemoError> {
        use futures::StreamExt;
        let http = http.clone();
        let nodes: Vec<String> = urls.read().map(|u| u.clone()).unwrap_or_default();
        if nodes.is_empty() {
            return Err(DemoError::Setup("no node to create games on".into()));
        }
        let created: Vec<Result<String, String>> = futures::stream::iter(0..count)
            .map(|i| {
                let http = http.clone();
                let url = format!("{}/api/games", nodes[i % nodes.len()]);
                async move {
                    let r = http
                        .post(&url)
                        .json(&json!({ "round_ms": 600_000 }))
                        .send()
                        .await
                        .map_err(|e| e.to_string())?;
                    if r.status() != reqwest::StatusCode::CREATED {
                        return Err(format!("create answered {}", r.status()));
                    }
                    let v: Value = r.json().await.map_err(|e| e.to_string())?;
                    v["code"]
                        .as_str()
                        .map(String::from)
                        .ok_or_else(|| "no code".into())
                }
            })
            .buffer_unordered(64)
            .collect()
            .await;
        let mut games = Vec::new();
        for c in created {
            let code = c.map_err(DemoError::Node)?;
            games.push(Mutex::new(Tracked {
                code,
                acked: 0,
                unknown: 0,
                ended: [false; 2],
                last: (0, 0),
                regressions: 0,
                pause_ms: 0.0,
            }));
        }
        let mut load = Load {
            games: Arc::new(games),
            stop: Arc::new(AtomicBool::new(false)),
            measuring: Arc::new(AtomicBool::new(false)),
            failed_attempts: Arc::new(AtomicU64::new(0)),
            workers: Vec::new(),
        };
        // Everyone joins first.
        let joins = futures::stream::iter(0..load.games.len())
            .map(|g| {
                let (http, urls, games, failed) = (http.clone(), urls.clone(), load.games.clone(), load.failed_attempts.clone());
                async move {
                    let code = games[g].lock().await.code.clone();
                    for (p, player) in PLAYERS.iter().enumerate() {
                        let body = json!({ "player": player, "input_id": format!("{code}-join-{p}"), "action": { "type": "join" } });
                        match send_input(&http, &urls, &code, &body, g + p, &failed).await {
                            Sent::Acked(_) => games[g].lock().await.acked += 1,
                            Sent::Unknown => games[g].lock().await.unknown += 1,
                            Sent::Refused => {}
                        }
                    }
                }
            })
            .buffer_unordered(64)
            .collect::<Vec<()>>();
        joins.await;
        let per = load.games.len().div_ceil(clients.max(1));
        for w in 0..clients.max(1) {
            let range = (w * per)..((w + 1) * per).min(load.games.len());
            if range.is_empty() {
                continue;
            }
            let (http, urls, games, stop, measuring, failed) = (
                http.clone(),
                urls.clone(),
                load.games.clone(),
                load.stop.clone(),
                load.measuring.clone(),
                load.failed_attempts.clone(),
            );
            let pace = Duration::from_secs_f64(clients.max(1) as f64 / rate.max(1.0));
            load.workers.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(pace);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut n: u64 = 0;
                while !stop.load(Ordering::Relaxed) {
                    for g in range.clone() {
                        tick.tick().await;
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let mut t = games[g].lock().await;
                        // Whoever has not ended the turn ends it: always a valid input.
                        let p = if !t.ended[0] { 0 } else { 1 };
                        n += 1;
                        let body = json!({ "player": PLAYERS[p], "input_id": format!("{}-{w}-{n}", t.code), "action": { "type": "end_turn" } });
                        let began = Instant::now();
                        let answer = send_input(&http, &urls, &t.code, &body, g + n as usize, &failed).await;
                        let took = began.elapsed().as_secs_f64() * 1000.0;
                        if measuring.load(Ordering::Relaxed) && took > t.pause_ms {
                            t.pause_ms = took;
                        }
                        match answer {
                            Sent::Acked(state) => {
                                t.acked += 1;
                                let round = state["round"].as_u64().unwrap_or(0);
                                let seq = state["seq"].as_u64().unwrap_or(0);
                                if (round, seq) < t.last {
                                    t.regressions += 1;
                                }
                                t.last = t.last.max((round, seq));
                                if let Some(players) = state["players"].as_array() {
                                    for (i, name) in PLAYERS.iter().enumerate() {
                                        t.ended[i] = players.iter().any(|p| p["name"] == *name && p["ended_turn"] == true);
                                    }
                                }
                            }
                            Sent::Refused => {
                                // Our view was stale; the next input asks again.
                                t.ended = [false; 2];
                            }
                            Sent::Unknown => {
                                t.unknown += 1;
                                t.ended = [false; 2];
                            }
                        }
                    }
                }
            }));
        }
        Ok(load)
    }

    /// Starts or stops measuring pauses.
    pub fn measure(&self, on: bool) {
        self.measuring.store(on, Ordering::Relaxed);
    }

    /// Stops the players and returns per-game results.
    pub async fn stop(self) -> LoadResult {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers {
            let _ = w.await;
        }
        let mut games = Vec::new();
        for g in self.games.iter() {
            games.push(g.lock().await.clone());
        }
        LoadResult {
            regressions: games.iter().map(|g| g.regressions).sum(),
            games: games
                .into_iter()
                .map(|g| GameResult {
                    code: g.code,
                    acked: g.acked,
                    unknown: g.unknown,
                    pause_ms: g.pause_ms,
                    last_seen: g.last,
                })
                .collect(),
            failed_attempts: self.failed_attempts.load(Ordering::Relaxed),
        }
    }
}

/// What the players saw.
#[derive(Debug, Clone)]
pub struct LoadResult {
    /// Per game, in the order they were created.
    pub games: Vec<GameResult>,
    /// States that went back in time (must be 0).
    pub regressions: u64,
    /// Requests that failed and were retried.
    pub failed_attempts: u64,
}

/// What the players of one game saw.
#[derive(Debug, Clone)]
pub struct GameResult {
    /// Its join code.
    pub code: String,
    /// Inputs acknowledged.
    pub acked: u64,
    /// Inputs given up on (may or may not have been applied).
    pub unknown: u64,
    /// Longest input while measuring.
    pub pause_ms: f64,
    /// The newest `(round, seq)` its players saw.
    pub last_seen: (u64, u64),
}

/// Per-game pauses summarised.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pauses {
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Longest.
    pub max_ms: f64,
}

impl LoadResult {
    /// The per-game pauses: median, 99th percentile, longest (0 without games).
    pub fn pauses(&self) -> Pauses {
        let mut pauses: Vec<f64> = self.games.iter().map(|g| g.pause_ms).collect();
        pauses.sort_by(f64::total_cmp);
        Pauses {
            p50_ms: percentile(&pauses, 0.5),
            p99_ms: percentile(&pauses, 0.99),
            max_ms: pauses.last().copied().unwrap_or(0.0),
        }
    }
}

/// The integrity check after a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Integrity {
    /// Games checked.
    pub games: usize,
    /// Games no node knows any more.
    pub games_lost: usize,
    /// Acknowledged inputs missing from the state.
    pub inputs_lost: u64,
    /// Inputs applied more often than acknowledged.
    pub inputs_duplicated: u64,
    /// Inputs acknowledged in all.
    pub inputs_acked: u64,
    /// Inputs that never got an answer (clients gave up after many retries).
    pub inputs_unanswered: u64,
}

impl Integrity {
    /// No game lost, no acknowledged input lost, none applied twice.
    pub fn nothing_lost(&self) -> bool {
        self.games_lost == 0 && self.inputs_lost == 0 && self.inputs_duplicated == 0
    }
}

/// Checks every game, through the nodes at `urls`, against what its players were told.
pub async fn verify(http: &reqwest::Client, urls: &[String], load: &LoadResult) -> Integrity {
    use futures::StreamExt;
    let http = http.clone();
    let results: Vec<(u64, u64, Option<u64>)> =
        futures::stream::iter(load.games.iter().enumerate())
            .map(|(i, g)| {
                let (code, acked, unknown) = (&g.code, g.acked, g.unknown);
                let http = http.clone();
                let urls: Vec<String> = urls
                    .iter()
                    .map(|u| format!("{u}/api/games/{code}"))
                    .collect();
                async move {
                    // Each attempt on the next node: one node's hiccup is not a lost game; a 404 from
                    // a node that knows the cluster is.
                    for attempt in 0..20 {
                        let url = &urls[(i + attempt) % urls.len()];
                        let failure = match http.get(url).timeout(ATTEMPT_TIMEOUT).send().await {
                            Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => {
                                let body = r.text().await.unwrap_or_default();
                                trace(&format!("verify: {url}: 404 {body}"));
                                return (acked, unknown, None);
                            }
                            Ok(r) => {
                                let status = r.status();
                                match r.json::<Value>().await {
                                    Ok(v) => match v["seq"].as_u64() {
                                        Some(seq) => return (acked, unknown, Some(seq)),
                                        None => format!("{status} {v}"),
                                    },
                                    Err(e) => format!("{status} {e}"),
                                }
                            }
                            Err(e) => e.to_string(),
                        };
                        trace(&format!("verify: {url}: {failure}"));
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    (acked, unknown, None)
                }
            })
            .buffer_unordered(64)
            .collect()
            .await;
    let mut out = Integrity {
        games: results.len(),
        ..Default::default()
    };
    for (acked, unknown, seq) in results {
        out.inputs_acked += acked;
        out.inputs_unanswered += unknown;
        match seq {
            None => out.games_lost += 1,
            // An unanswered input may or may not be in the state; an acknowledged one must.
            Some(seq) if seq < acked => out.inputs_lost += acked - seq,
            Some(seq) if seq > acked + unknown => out.inputs_duplicated += seq - acked - unknown,
            Some(_) => {}
        }
    }
    out
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

/// The demo's report (`--json` prints it).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Games played, lost; inputs acknowledged, lost, applied twice, unanswered.
    #[serde(flatten)]
    pub integrity: Integrity,
    /// Per-game pause, median.
    pub pause_p50_ms: f64,
    /// Per-game pause, 99th percentile.
    pub pause_p99_ms: f64,
    /// Per-game pause, longest.
    pub pause_max_ms: f64,
    /// Mean time to replace one node (start new .. old exited).
    pub node_replace_ms: f64,
    /// Each replacement.
    pub node_replace_each_ms: Vec<f64>,
    /// Requests that failed and were retried by clients.
    pub client_retries: u64,
    /// States seen going back in time.
    pub state_regressions: u64,
    /// Exit codes of the replaced nodes (all 0 after a clean drain).
    pub exit_codes: Vec<Option<i32>>,
    /// Resident memory per game across nodes (bytes), measured before the update.
    pub memory_per_game_bytes: f64,
    /// Nodes replaced.
    pub nodes: usize,
}

/// Options of `minotaur demo`.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Nodes.
    pub nodes: usize,
    /// Games.
    pub games: usize,
    /// The binary to run as nodes (and as replacements).
    pub binary: PathBuf,
    /// The binary of the replacements (a newer build), if different.
    pub new_binary: Option<PathBuf>,
    /// Print progress lines.
    pub progress: bool,
    /// Loopback net.
    pub net: u8,
    /// Logs.
    pub log_dir: PathBuf,
    /// Inputs per second in all (default: two per game per second, at most 2000).
    pub rate: Option<f64>,
}

fn say(on: bool, line: impl AsRef<str>) {
    if on {
        let mut err = std::io::stderr();
        let _ = writeln!(err, "{}", line.as_ref());
    }
}

/// Runs the whole demo: cluster, games, players, rolling update, checks.
pub async fn run(opts: DemoOptions) -> Result<Report, DemoError> {
    let p = opts.progress;
    say(
        p,
        format!("starting {} nodes (DNS name {SERVICE}) ...", opts.nodes),
    );
    let mut cluster = Cluster::start(ClusterOptions {
        nodes: opts.nodes,
        binary: opts.binary.clone(),
        net: opts.net,
        log_dir: opts.log_dir.clone(),
        dns_grace: Duration::from_millis(500),
        env: Vec::new(),
    })
    .await?;
    let base_rss: u64 = cluster.nodes.iter().map(NodeProcess::rss).sum();
    say(p, format!("cluster formed: {}", cluster.urls().join(", ")));
    let urls = cluster.targets();
    let t = Instant::now();
    let clients = opts.games.clamp(1, 128);
    let rate = opts
        .rate
        .unwrap_or_else(|| (opts.games as f64 * 2.0).min(2000.0));
    let load = Load::start(cluster.http(), opts.games, clients, rate, urls.clone()).await?;
    say(
        p,
        format!(
            "{} games created and joined in {:.1} s; {clients} clients playing, {rate:.0} inputs/s",
            opts.games,
            t.elapsed().as_secs_f64()
        ),
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let loaded_rss: u64 = cluster.nodes.iter().map(NodeProcess::rss).sum();
    let memory_per_game = loaded_rss.saturating_sub(base_rss) as f64 / opts.games.max(1) as f64;

    load.measure(true);
    let new_binary = opts
        .new_binary
        .clone()
        .unwrap_or_else(|| opts.binary.clone());
    let mut each = Vec::new();
    let mut codes = Vec::new();
    for step in 0..opts.nodes {
        let old = cluster.nodes[0].url.clone();
        let (took, code) = cluster.replace(0, &new_binary).await?;
        each.push(took.as_secs_f64() * 1000.0);
        codes.push(code);
        say(
            p,
            format!(
                "[{}/{}] replaced {old} by {} in {:.0} ms (old node exit code {code:?})",
                step + 1,
                opts.nodes,
                cluster.nodes.last().map(|n| n.url.as_str()).unwrap_or("?"),
                took.as_secs_f64() * 1000.0
            ),
        );
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    load.measure(false);
    let result = load.stop().await;
    let integrity = verify(cluster.http(), &cluster.urls(), &result).await;
    let pauses = result.pauses();
    let report = Report {
        integrity,
        pause_p50_ms: pauses.p50_ms,
        pause_p99_ms: pauses.p99_ms,
        pause_max_ms: pauses.max_ms,
        node_replace_ms: each.iter().sum::<f64>() / each.len().max(1) as f64,
        node_replace_each_ms: each,
        client_retries: result.failed_attempts,
        state_regressions: result.regressions,
        exit_codes: codes,
        memory_per_game_bytes: memory_per_game,
        nodes: opts.nodes,
    };
    cluster.shutdown().await;
    Ok(report)
}

/// The final table.
pub fn table(r: &Report) -> String {
    let rows: Vec<(&str, String)> = vec![
        ("games", r.integrity.games.to_string()),
        ("games lost", r.integrity.games_lost.to_string()),
        ("inputs acknowledged", r.integrity.inputs_acked.to_string()),
        (
            "inputs unanswered",
            r.integrity.inputs_unanswered.to_string(),
        ),
        ("inputs lost", r.integrity.inputs_lost.to_string()),
        (
            "inputs applied twice",
            r.integrity.inputs_duplicated.to_string(),
        ),
        ("pause per game p50", format!("{:.1} ms", r.pause_p50_ms)),
        ("pause per game p99", format!("{:.1} ms", r.pause_p99_ms)),
        ("pause per game max", format!("{:.1} ms", r.pause_max_ms)),
        (
            "time per node replaced",
            format!(
                "{:.0} ms (each: {})",
                r.node_replace_ms,
                r.node_replace_each_ms
                    .iter()
                    .map(|m| format!("{m:.0}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        ("client retries", r.client_retries.to_string()),
        ("old nodes' exit codes", format!("{:?}", r.exit_codes)),
        (
            "memory per game",
            format!("{:.0} bytes", r.memory_per_game_bytes),
        ),
    ];
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(k, v)| format!("{k:<width$}  {v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The report as the JSON object `--json` prints.
pub fn json(r: &Report) -> Value {
    serde_json::to_value(r).unwrap_or_else(|_| json!({}))
}

/// Per-node map of a cluster's members, for tests: node -> (status, version).
pub async fn members(cluster: &Cluster) -> HashMap<String, (String, String)> {
    let mut out = HashMap::new();
    if let Some(url) = cluster.urls().first()
        && let Ok(r) = cluster
            .http()
            .get(format!("{url}/api/cluster"))
            .send()
            .await
        && let Ok(v) = r.json::<Value>().await
        && let Some(ms) = v["members"].as_array()
    {
        for m in ms {
            out.insert(
                m["node"].as_str().unwrap_or("").to_string(),
                (
                    m["status"].as_str().unwrap_or("").to_string(),
                    m["version"].as_str().unwrap_or("").to_string(),
                ),
            );
        }
    }
    out
}
