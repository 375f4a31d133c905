//! Memory over a long uptime (`cargo bench -p minotaur --bench soak`): three real `minotaur`
//! processes with a short `GAME_RETENTION_MS`, through repeated cycles of creating many games,
//! playing each to `over` (two players join, one leaves) and letting them expire. After each
//! cycle, once every node's registry is empty again and its tombstones are collected, it
//! samples each node's RSS. Goal: flat,
//! the last cycle within 10% of the first; it also reports the memory per live game (RSS with
//! every game of a cycle created and live, minus RSS before the cycle, over the games).
//!
//! `MINOTAUR_SOAK_GAMES` (default 10000) games per cycle, `MINOTAUR_SOAK_CYCLES` (default 5);
//! `MINOTAUR_BIN` runs another build (e.g. a release build; the client may be built in the
//! test profile: `cargo test -p minotaur --bench soak`). Prints a table and one JSON line.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: failing loudly is the point

use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use harness::cluster::{Cluster, ClusterOptions};
use harness::wait::eventually;
use serde_json::{Value, json};
use tokio::time::Instant;

/// How long an `over` game stays readable here.
const RETENTION_MS: u64 = 2_000;
/// Requests in flight at once.
const CONCURRENCY: usize = 64;

fn binary() -> PathBuf {
    std::env::var_os("MINOTAUR_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_minotaur")))
}

fn env_usize(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Sends `body` to `url` until it is answered with a success (503s and connection errors are
/// retried, as clients do); the answer's JSON.
async fn post(http: &reqwest::Client, url: &str, body: Value) -> Value {
    for _ in 0..200 {
        match http.post(url).json(&body).send().await {
            Ok(r) if r.status().is_success() => return r.json().await.unwrap_or(Value::Null),
            Ok(r) if r.status().is_client_error() => {
                panic!(
                    "{url}: {} {}",
                    r.status(),
                    r.text().await.unwrap_or_default()
                )
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    panic!("{url}: no success after 200 tries");
}

/// A game created on `node`: its code.
async fn create(http: reqwest::Client, node: String) -> String {
    let created = post(
        &http,
        &format!("{node}/api/games"),
        json!({ "round_ms": 600_000 }),
    )
    .await;
    created["code"].as_str().unwrap().to_string()
}

/// The game `code`, through `node`, played to `over`: two players join, one leaves.
async fn play_to_over(http: reqwest::Client, node: String, code: String, i: usize) {
    let input = format!("{node}/api/games/{code}/input");
    for (n, (player, action)) in [("a", "join"), ("b", "join"), ("a", "leave")]
        .into_iter()
        .enumerate()
    {
        post(
            &http,
            &input,
            json!({ "player": player, "input_id": format!("{i}-{n}"), "action": { "type": action } }),
        )
        .await;
    }
}

/// Games every node's registry holds, as `/api/cluster` counts them per member.
async fn registry_games(cluster: &Cluster) -> Vec<u64> {
    let mut out = Vec::new();
    for url in cluster.urls() {
        let v = harness::node::get_json(cluster.http(), &format!("{url}/api/cluster"))
            .await
            .unwrap_or(Value::Null);
        let total: u64 = v["members"]
            .as_array()
            .map(|m| m.iter().filter_map(|m| m["games"].as_u64()).sum())
            .unwrap_or(u64::MAX);
        out.push(total);
    }
    out
}

/// Tombstones in every node's registry, as `/metrics` counts them.
async fn tombstones(cluster: &Cluster) -> f64 {
    let mut total = 0.0;
    for url in cluster.urls() {
        let text = match cluster.http().get(format!("{url}/metrics")).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => return f64::MAX,
        };
        total += harness::node::metric_sum(&text, "minotaur_registry_tombstones");
    }
    total
}

fn rss_mb(cluster: &Cluster) -> Vec<f64> {
    cluster
        .nodes
        .iter()
        .map(|n| n.rss_bytes() as f64 / (1024.0 * 1024.0))
        .collect()
}

async fn run() {
    let games = env_usize("MINOTAUR_SOAK_GAMES", 10_000);
    let cycles = env_usize("MINOTAUR_SOAK_CYCLES", 5);
    let mut opts = ClusterOptions::new(binary(), 73, 3, "bench-soak");
    opts.env = vec![("GAME_RETENTION_MS".into(), RETENTION_MS.to_string())];
    let cluster = Cluster::start(opts).await.unwrap();
    println!("binary: {}", binary().display());
    println!("RSS in MiB per node; {games} games per cycle, each played to over and expired");
    let start = rss_mb(&cluster);
    println!("start            {start:.1?}");
    let mut rows = Vec::new();
    for cycle in 1..=cycles {
        let t0 = Instant::now();
        let urls = cluster.urls();
        let before = rss_mb(&cluster);
        let codes: Vec<String> = futures::stream::iter(0..games)
            .map(|i| create(cluster.http().clone(), urls[i % urls.len()].clone()))
            .buffered(CONCURRENCY)
            .collect()
            .await;
        // Every game of the cycle live (waiting for players): the peak of the cycle.
        let live = rss_mb(&cluster);
        futures::stream::iter(codes.into_iter().enumerate())
            .map(|(i, code)| {
                play_to_over(
                    cluster.http().clone(),
                    urls[(i + 1) % urls.len()].clone(),
                    code,
                    i,
                )
            })
            .buffer_unordered(CONCURRENCY)
            .collect::<Vec<()>>()
            .await;
        let played = t0.elapsed();
        eventually(
            "every node's registry is empty again (every game removed)",
            Duration::from_secs(120),
            || async {
                registry_games(&cluster)
                    .await
                    .iter()
                    .all(|n| *n == 0)
                    .then_some(())
            },
        )
        .await;
        // And their tombstones collected (`tombstone_grace`, 30 s, after every member
        // acknowledged them): nothing of the cycle is left.
        eventually(
            "every node collected the cycle's tombstones",
            Duration::from_secs(180),
            || async { (tombstones(&cluster).await == 0.0).then_some(()) },
        )
        .await;
        let after = rss_mb(&cluster);
        // Each node hosts a third of the games and backs up as many of the others'.
        let per_game_kib: Vec<f64> = live
            .iter()
            .zip(&before)
            .map(|(l, b)| (l - b) * 1024.0 * 3.0 / games as f64)
            .collect();
        println!(
            "cycle {cycle:>2}  live {live:.1?}  after expiry {after:.1?}  (+{per_game_kib:.1?} KiB per live game over the RSS before; {:.1} s)",
            played.as_secs_f64()
        );
        rows.push(json!({ "cycle": cycle, "live_mb": live, "after_mb": after,
            "kib_per_live_game": per_game_kib, "played_s": played.as_secs_f64() }));
    }
    let first = rows
        .first()
        .map(|r| r["after_mb"].clone())
        .unwrap_or(Value::Null);
    let last = rows
        .last()
        .map(|r| r["after_mb"].clone())
        .unwrap_or(Value::Null);
    let growth: Vec<f64> = first
        .as_array()
        .zip(last.as_array())
        .map(|(f, l)| {
            f.iter()
                .zip(l)
                .map(|(f, l)| l.as_f64().unwrap_or(0.0) / f.as_f64().unwrap_or(1.0))
                .collect()
        })
        .unwrap_or_default();
    println!("last cycle / first cycle after expiry, per node: {growth:.3?} (goal <= 1.10)");
    println!(
        "{}",
        json!({ "games_per_cycle": games, "start_mb": start, "cycles": rows, "growth": growth })
    );
    cluster.shutdown().await;
}

fn main() {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(run());
}
