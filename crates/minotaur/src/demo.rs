//! `minotaur demo`: a rolling deploy on one machine, measured.
//!
//! The pieces are the `local-cluster` crate's, which the end-to-end tests compose too: a
//! [`Cluster`] of real `minotaur start` processes behind an embedded DNS server, replaced one by
//! one as a Swarm `start-first` update does, while [`Load`] plays games over HTTP like clients
//! do (an input retried with the same `input_id` until acknowledged); then [`verify`] checks
//! every game: still there, and `seq` equal to the inputs acknowledged (none lost, none applied
//! twice). This module runs that scenario and reports it: a table, JSON, and with
//! `--report` a self-contained HTML page ([`report`]).
//!
//! # Layout
//! - [`report`]: the HTML report (pause histogram, games per node over time, the table).

pub mod report;

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use local_cluster::cluster::{Cluster, ClusterOptions, GamesSample, SERVICE};
use local_cluster::load::{Integrity, Load, Started, verify};
use local_cluster::node::NodeProcess;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::time::Instant;

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
    /// Handoff pauses the nodes recorded where each game resumed (`/metrics`, every node
    /// scraped just before it was replaced and the rest at the end; a killed node's are
    /// lost with it): how many, and the median and 99th percentile estimated from the
    /// buckets as Prometheus does (null without pauses). Every move counts here, also those
    /// of games no client wrote to during the update, which the client-side pause misses.
    pub server_pauses: u64,
    /// See `server_pauses`.
    pub server_pause_p50_ms: Option<f64>,
    /// See `server_pauses`.
    pub server_pause_p99_ms: Option<f64>,
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
    /// With `--kill`: the node killed mid-update, its games then, and how long after the kill
    /// its games were answered again elsewhere (the longest, in ms; null without `--kill`).
    pub killed: Option<String>,
    /// Games the killed node hosted when it died.
    pub killed_games: u64,
    /// Longest time from the kill until one of the killed node's games answered again
    /// elsewhere; null without `--kill`, and null (a failed run) when none was measured.
    pub failover_ms: Option<f64>,
    /// Each game's pause (its longest input during the update), ms: the report's histogram.
    #[serde(skip)]
    pub pauses_ms: Vec<f64>,
    /// Games per node every [`SAMPLE_EVERY`] from the cluster's forming to the end of the
    /// update: the report's time line.
    #[serde(skip)]
    pub timeline: Vec<GamesSample>,
    /// When each step of the update started (s on the time line) and what it was.
    #[serde(skip)]
    pub steps: Vec<(f64, String)>,
}

/// How often games per node are sampled for the report.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(250);

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
    /// SIGKILL, in the middle of the update, the node that just received the most games
    /// (an orchestrator starts a replacement, as Swarm would).
    pub kill: bool,
}

fn say(on: bool, line: impl AsRef<str>) {
    if on {
        let mut err = std::io::stderr();
        let _ = writeln!(err, "{}", line.as_ref());
    }
}

/// Runs the whole demo: cluster, games, players, rolling update, checks.
pub async fn run(opts: DemoOptions) -> Result<Report, local_cluster::Error> {
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
    let base_rss: u64 = cluster.nodes.iter().map(NodeProcess::rss_bytes).sum();
    say(p, format!("cluster formed: {}", cluster.urls().join(", ")));
    let sampler = cluster.sample_games(SAMPLE_EVERY);
    let mut steps: Vec<(f64, String)> = Vec::new();
    let urls = cluster.targets();
    let t = Instant::now();
    let clients = opts.games.clamp(1, 128);
    let rate = opts
        .rate
        .unwrap_or_else(|| (opts.games as f64 * 2.0).min(2000.0));
    // Progress every 2 s while games are created and joined (a large run takes minutes).
    let started = std::sync::Arc::new(Started::default());
    let shown = tokio::spawn({
        let (started, games) = (started.clone(), opts.games);
        async move {
            let mut every = tokio::time::interval(Duration::from_secs(2));
            every.tick().await;
            loop {
                every.tick().await;
                let created = started.created.load(Ordering::Relaxed);
                let joined = started.joined.load(Ordering::Relaxed);
                say(
                    p,
                    format!(
                        "  {created}/{games} games created, {joined} joined ({:.0} s)",
                        t.elapsed().as_secs_f64()
                    ),
                );
            }
        }
    });
    let load = Load::start_counting(
        cluster.http(),
        opts.games,
        clients,
        rate,
        urls.clone(),
        &started,
    )
    .await;
    shown.abort();
    let load = load?;
    say(
        p,
        format!(
            "{} games created and joined in {:.1} s; {clients} clients playing, {rate:.0} inputs/s",
            opts.games,
            t.elapsed().as_secs_f64()
        ),
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let loaded_rss: u64 = cluster.nodes.iter().map(NodeProcess::rss_bytes).sum();
    let memory_per_game = loaded_rss.saturating_sub(base_rss) as f64 / opts.games.max(1) as f64;

    load.measure(true);
    let new_binary = opts
        .new_binary
        .clone()
        .unwrap_or_else(|| opts.binary.clone());
    let mut each = Vec::new();
    let mut codes = Vec::new();
    // Replaced one by one, oldest first; with `--kill`, after half of them the node that
    // just received the most games dies and a replacement starts.
    let mut old: Vec<String> = cluster.nodes.iter().map(|n| n.name.clone()).collect();
    let kill_after = (opts.nodes / 2).max(1);
    let mut killed: Option<(String, u64, Instant)> = None;
    let mut server_pauses = Buckets::default();
    let mut step = 0;
    while let Some(i) = cluster.nodes.iter().position(|n| old.contains(&n.name)) {
        step += 1;
        let before = cluster.nodes[i].url();
        steps.push((
            sampler.elapsed().as_secs_f64(),
            format!("replace {}", cluster.nodes[i].name),
        ));
        old.retain(|n| *n != cluster.nodes[i].name);
        // Its pauses, before it goes (they were recorded where its games resumed: here).
        server_pauses.add(&scrape(cluster.http(), &before).await);
        let (took, code) = cluster.replace(i, &new_binary).await?;
        each.push(took.as_secs_f64() * 1000.0);
        codes.push(code);
        say(
            p,
            format!(
                "[{step}/{}] replaced {before} by {} in {:.0} ms (old node exit code {code:?})",
                opts.nodes,
                cluster
                    .nodes
                    .last()
                    .map_or_else(|| "?".to_string(), NodeProcess::url),
                took.as_secs_f64() * 1000.0
            ),
        );
        if opts.kill && killed.is_none() && step == kill_after {
            let per_node = cluster.games_per_node().await;
            let games_of = |i: usize| per_node.get(&cluster.nodes[i].name).copied().unwrap_or(0);
            let Some(victim) = (0..cluster.nodes.len()).max_by_key(|i| games_of(*i)) else {
                continue;
            };
            let games = games_of(victim);
            let at = Instant::now();
            steps.push((
                sampler.elapsed().as_secs_f64(),
                format!("SIGKILL {}", cluster.nodes[victim].name),
            ));
            let dead = cluster.kill(victim);
            old.retain(|n| *n != dead.name);
            say(
                p,
                format!(
                    "SIGKILL {} (it hosted {games} games); starting a replacement ...",
                    dead.url()
                ),
            );
            killed = Some((dead.name.clone(), games, at));
            cluster.add(&new_binary).await?;
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    load.measure(false);
    let timeline = sampler.stop().await;
    for url in cluster.urls() {
        server_pauses.add(&scrape(cluster.http(), &url).await);
    }
    let server = server_pauses.snapshot();
    let quantile_ms = |q: f64| server.quantile(q).map(|d| d.as_secs_f64() * 1000.0);
    let result = load.stop().await;
    let integrity = verify(cluster.http(), &cluster.urls(), &result).await;
    let pauses = result.pauses();
    let failover_ms = killed
        .as_ref()
        .and_then(|(name, _, at)| result.served_again_after(name, *at).last().copied());
    let report = Report {
        killed: killed.as_ref().map(|(n, _, _)| n.clone()),
        killed_games: killed.as_ref().map_or(0, |(_, g, _)| *g),
        failover_ms,
        integrity,
        pause_p50_ms: pauses.p50_ms,
        pause_p99_ms: pauses.p99_ms,
        pause_max_ms: pauses.max_ms,
        server_pauses: server.count,
        server_pause_p50_ms: quantile_ms(0.5),
        server_pause_p99_ms: quantile_ms(0.99),
        node_replace_ms: each.iter().sum::<f64>() / each.len().max(1) as f64,
        node_replace_each_ms: each,
        client_retries: result.failed_attempts,
        state_regressions: result.regressions,
        exit_codes: codes,
        memory_per_game_bytes: memory_per_game,
        nodes: opts.nodes,
        pauses_ms: result.games.iter().map(|g| g.pause_ms).collect(),
        timeline,
        steps,
    };
    cluster.shutdown().await;
    Ok(report)
}

/// The cumulative buckets of `minotaur_handoff_pause_seconds` summed over the nodes scraped:
/// upper bound (seconds) -> observations at or below it.
#[derive(Debug, Default)]
struct Buckets(Vec<(f64, u64)>);

impl Buckets {
    fn add(&mut self, scraped: &[(f64, u64)]) {
        for &(le, n) in scraped {
            match self.0.iter_mut().find(|(b, _)| *b == le) {
                Some((_, total)) => *total += n,
                None => self.0.push((le, n)),
            }
        }
        self.0.sort_by(|a, b| a.0.total_cmp(&b.0));
    }

    /// As horde's histogram snapshot (per bucket, not cumulative), for its quantiles.
    fn snapshot(&self) -> horde::HistogramSnapshot {
        let mut below = 0;
        let buckets: Vec<(f64, u64)> = self
            .0
            .iter()
            .map(|&(le, cumulative)| {
                let n = cumulative.saturating_sub(below);
                below = below.max(cumulative);
                (le, n)
            })
            .collect();
        horde::HistogramSnapshot {
            count: buckets.iter().map(|(_, n)| n).sum(),
            buckets,
            sum: Duration::ZERO,
            max: Duration::MAX,
        }
    }
}

/// The `minotaur_handoff_pause_seconds` buckets a node's `/metrics` shows (empty when it
/// does not answer).
async fn scrape(http: &reqwest::Client, url: &str) -> Vec<(f64, u64)> {
    let Ok(r) = http.get(format!("{url}/metrics")).send().await else {
        return Vec::new();
    };
    let text = r.text().await.unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("minotaur_handoff_pause_seconds_bucket{le=\"")?;
            let (le, count) = rest.split_once("\"}")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse::<f64>().ok()? as u64))
        })
        .collect()
}

impl Report {
    /// What the run failed to keep, one line each; empty when it kept every promise.
    pub fn failures(&self) -> Vec<String> {
        let i = &self.integrity;
        let mut out = Vec::new();
        if !i.nothing_lost() {
            out.push(format!(
                "games or inputs lost, doubled or changed: {} games lost, {} inputs lost, {} applied twice, {} acknowledged inputs forgotten, {} games and {} answers unlike their model{}",
                i.games_lost,
                i.inputs_lost,
                i.inputs_duplicated,
                i.inputs_acked_lost,
                i.games_unlike_model,
                i.answers_unlike_model,
                i.first_difference
                    .as_ref()
                    .map(|d| format!(" (first: {d})"))
                    .unwrap_or_default()
            ));
        }
        if i.inputs_unanswered > 0 {
            out.push(format!(
                "{} inputs got no answer through every retry",
                i.inputs_unanswered
            ));
        }
        if i.games_modelled < i.games && i.inputs_unanswered == 0 {
            out.push(format!(
                "{} of {} games could not be compared with their model (their creation's answer did not start one)",
                i.games - i.games_modelled,
                i.games
            ));
        }
        if self.state_regressions > 0 {
            out.push(format!(
                "{} answers showed a state older than one already seen",
                self.state_regressions
            ));
        }
        if let Some(killed) = &self.killed
            && self.failover_ms.is_none()
        {
            out.push(format!(
                "no game of the killed node {killed} was seen answering on another node: failover not measured"
            ));
        }
        out
    }
}

/// The final table's rows: label and value (the text table and the HTML report show these).
pub fn rows(r: &Report) -> Vec<(&'static str, String)> {
    vec![
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
            "handoff pauses, server-side",
            match (r.server_pause_p50_ms, r.server_pause_p99_ms) {
                (Some(p50), Some(p99)) => format!(
                    "{} moves: p50 {p50:.1} ms, p99 {p99:.1} ms (from /metrics buckets)",
                    r.server_pauses
                ),
                _ => "none recorded".to_string(),
            },
        ),
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
        (
            "node killed mid-update",
            match (&r.killed, r.failover_ms) {
                (Some(n), Some(ms)) => format!(
                    "{n} ({} games): served again elsewhere within {ms:.0} ms",
                    r.killed_games
                ),
                (Some(n), None) => format!(
                    "{n} ({} games): not seen answering elsewhere",
                    r.killed_games
                ),
                _ => "none (--kill kills one)".to_string(),
            },
        ),
        (
            "acknowledged inputs forgotten",
            format!(
                "{} of {} probed",
                r.integrity.inputs_acked_lost, r.integrity.inputs_acked_probed
            ),
        ),
        (
            "games unlike their model",
            format!(
                "{} of {} (answers unlike it: {})",
                r.integrity.games_unlike_model,
                r.integrity.games_modelled,
                r.integrity.answers_unlike_model
            ),
        ),
        ("games reset", r.integrity.games_reset.to_string()),
        ("old nodes' exit codes", format!("{:?}", r.exit_codes)),
        (
            "memory per game",
            format!("{:.0} bytes", r.memory_per_game_bytes),
        ),
    ]
}

/// The final table.
pub fn table(r: &Report) -> String {
    let rows = rows(r);
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
