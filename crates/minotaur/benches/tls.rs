//! What mutual TLS on node links costs (`cargo bench -p minotaur --bench tls`): two clusters of
//! three real `minotaur` processes side by side, one on plain TCP + cookie, one with
//! `CLUSTER_TLS_*` (certificates made with the openssl CLI, as the README says), measured in
//! the same run and interleaved call by call so that the machine's noise falls on both:
//!
//! 1. routed reads: `GET /api/games/{code}` sent to a node that does not host the game, so the
//!    call crosses a node link (goal: TLS p50 and p99 within 1.3× of plain);
//! 2. a drain: a node of each cluster replaced (SIGTERM, its games handed to the others) while
//!    players write, with the per-game pause its log and the players report.
//!
//! `MINOTAUR_BIN` runs another build of the binary (e.g. the static release build of
//! `docker/build-offline.sh`) with a client built in the test profile
//! (`cargo test -p minotaur --bench tls`). `MINOTAUR_BENCH_CALLS` (default 4000) reads per mode.
//! Prints a table and one JSON line. Needs root for nothing; needs `openssl`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: failing loudly is the point

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use harness::cluster::{Cluster, ClusterOptions};
use harness::latency::{ms, percentile};
use harness::load::Load;
use harness::tls::Ca;
use serde_json::{Value, json};
use tokio::time::Instant;

const GAMES: usize = 30;

fn binary() -> PathBuf {
    std::env::var_os("MINOTAUR_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_minotaur")))
}

/// Games created on `cluster`, each with the URL of a node that does not host it.
async fn routed_targets(cluster: &Cluster) -> Vec<String> {
    let http = cluster.http();
    let urls = cluster.urls();
    let mut out = Vec::new();
    for i in 0..GAMES {
        let created: Value = http
            .post(format!("{}/api/games", urls[i % urls.len()]))
            .json(&json!({ "round_ms": 600_000 }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let code = created["code"].as_str().unwrap().to_string();
        // The node that answers names the host; any other node routes.
        let read = harness::node::get_json(http, &format!("{}/api/games/{code}", urls[0]))
            .await
            .unwrap();
        let host = read["node"].as_str().unwrap_or_default().to_string();
        let via = cluster
            .nodes
            .iter()
            .find(|n| n.name != host)
            .map(|n| n.url())
            .unwrap();
        out.push(format!("{via}/api/games/{code}"));
    }
    out
}

fn summary(v: &mut [f64]) -> Value {
    v.sort_by(f64::total_cmp);
    json!({
        "n": v.len(),
        "p50_ms": percentile(v, 0.50).unwrap_or(0.0),
        "p99_ms": percentile(v, 0.99).unwrap_or(0.0),
        "max_ms": v.last().copied().unwrap_or(0.0),
    })
}

/// Replaces node 0 of `cluster` while players write; returns the pause summary and the
/// drained node's own report line.
async fn drain(cluster: &mut Cluster, log_dir: &std::path::Path) -> (Value, String) {
    let load = Load::start(cluster.http(), GAMES, 6, 150.0, cluster.targets())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    load.measure(true);
    let old_log = log_dir.join(format!("{}.log", cluster.nodes[0].ip));
    let (took, code) = cluster.replace(0, &binary()).await.unwrap();
    assert_eq!(code, Some(0));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let result = load.stop().await;
    let p = result.pauses();
    let pauses = json!({ "p50_ms": p.p50_ms, "p99_ms": p.p99_ms, "max_ms": p.max_ms,
        "replace_ms": ms(took) });
    let log = std::fs::read_to_string(&old_log).unwrap_or_default();
    let line = log
        .lines()
        .find(|l| l.contains("games handed off"))
        .map(|l| {
            l.split("games handed off")
                .nth(1)
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_default();
    (pauses, line)
}

async fn run() {
    let calls: usize = std::env::var("MINOTAUR_BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4000);
    let logs = harness::logs::test_dir("bench-tls");
    let ca = Ca::new(&logs.join("ca"), "minotaur bench CA");
    let mut tls_env = HashMap::new();
    ca.node("node").apply(&mut tls_env);

    let plain_opts = ClusterOptions::new(binary(), 71, 3, "bench-tls-plain");
    let mut tls_opts = ClusterOptions::new(binary(), 72, 3, "bench-tls-tls");
    let (plain_logs, tls_logs) = (plain_opts.log_dir.clone(), tls_opts.log_dir.clone());
    tls_opts.env = tls_env.into_iter().collect();
    let mut plain = Cluster::start(plain_opts).await.unwrap();
    let mut tls = Cluster::start(tls_opts).await.unwrap();
    println!("binary: {}", binary().display());

    let plain_targets = routed_targets(&plain).await;
    let tls_targets = routed_targets(&tls).await;
    // Warm both (connection pools, lazily made routes).
    for (p, t) in plain_targets.iter().zip(&tls_targets) {
        plain.http().get(p).send().await.unwrap();
        tls.http().get(t).send().await.unwrap();
    }
    let (mut p_ms, mut t_ms) = (Vec::with_capacity(calls), Vec::with_capacity(calls));
    for i in 0..calls {
        // Alternate which goes first, so neither always follows the other.
        let order = if i % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for is_tls in order {
            let (cluster, targets, out) = if is_tls {
                (&tls, &tls_targets, &mut t_ms)
            } else {
                (&plain, &plain_targets, &mut p_ms)
            };
            let url = &targets[i % targets.len()];
            let t0 = Instant::now();
            let r = cluster.http().get(url).send().await.unwrap();
            assert!(r.status().is_success(), "{url}: {}", r.status());
            r.bytes().await.unwrap();
            out.push(ms(t0.elapsed()));
        }
    }
    let reads_plain = summary(&mut p_ms);
    let reads_tls = summary(&mut t_ms);
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(0.0);
    let ratio = |k: &str| reads_tls[k].as_f64().unwrap() / reads_plain[k].as_f64().unwrap();
    println!(
        "routed read (GET through a node that does not host the game), {calls} per mode, interleaved"
    );
    println!(
        "  plain TCP   p50 {:.3} ms  p99 {:.3} ms",
        f(&reads_plain, "p50_ms"),
        f(&reads_plain, "p99_ms")
    );
    println!(
        "  mutual TLS  p50 {:.3} ms  p99 {:.3} ms",
        f(&reads_tls, "p50_ms"),
        f(&reads_tls, "p99_ms")
    );
    println!(
        "  TLS / plain p50 {:.2}x  p99 {:.2}x  (goal <= 1.3x)",
        ratio("p50_ms"),
        ratio("p99_ms")
    );

    let (plain_drain, plain_line) = drain(&mut plain, &plain_logs).await;
    let (tls_drain, tls_line) = drain(&mut tls, &tls_logs).await;
    println!("drain of one node of three, {GAMES} games, players writing");
    println!("  plain TCP   {plain_line}  pauses {plain_drain}");
    println!("  mutual TLS  {tls_line}  pauses {tls_drain}");
    println!(
        "{}",
        json!({
            "routed_read": { "plain": reads_plain, "tls": reads_tls,
                "ratio_p50": ratio("p50_ms"), "ratio_p99": ratio("p99_ms") },
            "drain": { "plain": { "node": plain_line, "pauses": plain_drain },
                       "tls": { "node": tls_line, "pauses": tls_drain } },
        })
    );
    plain.shutdown().await;
    tls.shutdown().await;
}

fn main() {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(run());
}
