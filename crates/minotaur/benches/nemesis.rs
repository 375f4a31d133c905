//! A real-process nemesis, as Jepsen runs one (`cargo bench -p minotaur --bench nemesis`, as
//! root): three real `minotaur` nodes, each in a network namespace of its own behind the
//! embedded DNS server, with players writing to games throughout, while random single faults
//! follow each other, each healed (and the cluster back to steady) before the next:
//! - **kill**: SIGKILL of a node, and a new node started under a new name (a task replaced);
//! - **pause**: SIGSTOP of a node for 1 to 6 s, then SIGCONT;
//! - **cut**: a node cut off from the others (iptables in its namespace) for 3 to 10 s; the
//!   players still reach it, and are told 503 while it is cut off;
//! - **drain**: a node drained and removed (SIGTERM), a rolling update's step: with four
//!   nodes it leaves three; with three, a new node joins first (start-first);
//! - **join**: a fourth node joins.
//!
//! At the end: every game read back and compared with what its players were told (lost,
//! doubled, unanswered inputs, states gone back), one owner in every registry. Two copies of a
//! game answering at once show as an input lost or doubled, or a state gone back (each game's
//! players see one history); the shorter tests' check that a game never returns to a node it
//! left does not apply over minutes of moves, where games do return. Prints the faults applied by kind, the inputs acknowledged, lost
//! and doubled, and the longest time a game went unanswered (an input's wait, its retries
//! included), then one JSON line; exits non-zero on any loss.
//!
//! `MINOTAUR_NEMESIS_SECS` (default 300) of faults, `MINOTAUR_NEMESIS_SEED` (default: from the
//! clock, printed) picks them, `MINOTAUR_BIN` runs another build (e.g. the release build).
//! Not part of `cargo test`: it runs for minutes and needs root.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: failing loudly is the point

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use harness::cluster::{Cluster, ClusterOptions, disagreeing};
use harness::load::{AssertIntegrity, Load, verify};
use harness::netns;
use harness::wait::eventually;
use nix::sys::signal::Signal;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::json;
use tokio::time::Instant;

/// Games the players write to.
const GAMES: usize = 60;
/// Namespaces for the cluster's whole life: the first three nodes, and every node a kill, a
/// drain or a join starts.
const NAMESPACES: usize = 120;
/// Longest wait for the cluster to be steady again after a fault.
const STEADY: Duration = Duration::from_secs(60);

fn binary() -> PathBuf {
    std::env::var_os("MINOTAUR_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_minotaur")))
}

fn env_u64(var: &str) -> Option<u64> {
    std::env::var(var).ok().and_then(|v| v.parse().ok())
}

/// Steady: every node healthy, every one a live member as every other sees it, and every
/// registry naming the same live owner for every game.
async fn steady(cluster: &Cluster, what: &str) {
    eventually(
        &format!("the cluster steady again after {what}"),
        STEADY,
        || async {
            let m = cluster.members().await;
            let names: Vec<&String> = cluster.nodes.iter().map(|n| &n.name).collect();
            if m.len() != names.len()
                || names
                    .iter()
                    .any(|n| m.get(*n).is_none_or(|(s, _)| s != "alive"))
            {
                return None;
            }
            for url in cluster.urls() {
                let ok = cluster
                    .http()
                    .get(format!("{url}/healthz"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if !ok {
                    return None;
                }
            }
            let views = cluster.registries().await;
            let agree = disagreeing(&views).is_empty();
            (agree
                && views
                    .iter()
                    .all(|v| v.len() == GAMES && v.values().all(|host| names.contains(&host))))
            .then_some(())
        },
    )
    .await;
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let secs = env_u64("MINOTAUR_NEMESIS_SECS").unwrap_or(300);
    let seed = env_u64("MINOTAUR_NEMESIS_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    });
    let mut rng = StdRng::seed_from_u64(seed);
    let bin = binary();
    eprintln!(
        "nemesis: {secs} s of faults, seed {seed} (MINOTAUR_NEMESIS_SEED={seed} replays the choices), {}",
        bin.display()
    );
    let opts = ClusterOptions::new(&bin, 81, 3, "nemesis");
    let mut cluster = netns::cluster(opts, NAMESPACES)
        .await
        .expect("a cluster of three");
    let load = Load::start(cluster.http(), GAMES, 12, 200.0, cluster.targets())
        .await
        .expect("players");
    load.measure(true);
    steady(&cluster, "the start").await;

    let started = Instant::now();
    let mut applied: BTreeMap<&str, u64> = BTreeMap::new();
    let answered_before = load.answered();
    while started.elapsed() < Duration::from_secs(secs) {
        let kinds: &[&str] = if cluster.nodes.len() > 3 {
            &["kill", "pause", "cut", "drain"]
        } else {
            &["kill", "pause", "cut", "drain", "join"]
        };
        let kind = kinds[rng.random_range(0..kinds.len())];
        let i = rng.random_range(0..cluster.nodes.len());
        let name = cluster.nodes[i].name.clone();
        let at = started.elapsed().as_secs_f64();
        match kind {
            "kill" => {
                let dead = cluster.kill(i);
                let new = cluster.add(&bin).await.expect("a new node");
                eprintln!(
                    "[{at:7.1} s] kill: SIGKILL {name}; {} started",
                    cluster.nodes[new].name
                );
                drop(dead);
            }
            "pause" => {
                let ms = rng.random_range(1_000..6_000);
                eprintln!("[{at:7.1} s] pause: SIGSTOP {name} for {ms} ms");
                cluster.nodes[i].signal(Signal::SIGSTOP);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                cluster.nodes[i].signal(Signal::SIGCONT);
            }
            "cut" => {
                let ms = rng.random_range(3_000..10_000);
                eprintln!("[{at:7.1} s] cut: {name} cut off for {ms} ms");
                cluster.cut(i).expect("cut");
                tokio::time::sleep(Duration::from_millis(ms)).await;
                cluster.heal(i).expect("heal");
            }
            "drain" if cluster.nodes.len() > 3 => {
                eprintln!("[{at:7.1} s] drain: {name} drained and removed");
                let code = cluster.drain(i).await;
                assert_eq!(code, Some(0), "{name} did not drain cleanly");
            }
            "drain" => {
                let (took, code) = cluster.replace(i, &bin).await.expect("a replacement");
                eprintln!(
                    "[{at:7.1} s] drain: {name} replaced by {} (start-first) in {took:?}",
                    cluster.nodes.last().map(|n| n.name.as_str()).unwrap_or("?")
                );
                assert_eq!(code, Some(0), "{name} did not drain cleanly");
            }
            _ => {
                let new = cluster.add(&bin).await.expect("a fourth node");
                eprintln!("[{at:7.1} s] join: {}", cluster.nodes[new].name);
            }
        }
        *applied.entry(kind).or_default() += 1;
        steady(&cluster, kind).await;
        tokio::time::sleep(Duration::from_millis(rng.random_range(500..2_500))).await;
    }
    let answered_during = load.answered() - answered_before;

    let result = load.stop().await;
    let integrity = verify(cluster.http(), &cluster.urls(), &result).await;
    let disagree = cluster.owners_disagree().await;
    let pauses = result.pauses();
    eprintln!("faults applied: {applied:?}");
    eprintln!("{integrity:?}");
    eprintln!(
        "inputs acknowledged {} ({answered_during} during the faults), lost {}, doubled {}, unanswered {}, states gone back {}; longest a game went unanswered {:.0} ms (p99 over games {:.0} ms); registries disagreeing: {}",
        integrity.inputs_acked,
        integrity.inputs_lost,
        integrity.inputs_duplicated,
        integrity.inputs_unanswered,
        result.regressions,
        pauses.max_ms,
        pauses.p99_ms,
        disagree.len()
    );
    println!(
        "{}",
        json!({
            "seed": seed,
            "seconds": secs,
            "faults": applied,
            "games": integrity.games,
            "games_lost": integrity.games_lost,
            "inputs_acked": integrity.inputs_acked,
            "inputs_acked_during_faults": answered_during,
            "inputs_lost": integrity.inputs_lost,
            "inputs_duplicated": integrity.inputs_duplicated,
            "inputs_unanswered": integrity.inputs_unanswered,
            "regressions": result.regressions,
            "longest_unanswered_ms": pauses.max_ms,
            "owners_disagree": disagree.len(),
        })
    );
    cluster.shutdown().await;
    integrity.assert_nothing_lost();
    assert_eq!(integrity.inputs_unanswered, 0, "{integrity:?}");
    assert_eq!(result.regressions, 0, "a player saw a game go back in time");
    assert!(disagree.is_empty(), "registries disagree: {disagree:?}");
}
