//! Faults end to end: real `minotaur` processes, real signals (SIGKILL, SIGSTOP/SIGCONT) and a
//! real network partition (network namespaces, veth pairs, a bridge, iptables), while players
//! write to games through every node, retrying an input with the same `input_id` until it is
//! answered. Each test then checks what INTERFACE.md promises of an answer: every game still
//! there, its `seq` equal to the inputs its players were told were applied (fewer is a loss,
//! more a double), one owner in every node's registry, and no two nodes answering for one
//! game at once.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use harness::cluster::{Cluster, ClusterOptions, disagreeing, registries};
use harness::load::{AssertIntegrity, ExpectPlay, Integrity, Load, LoadResult, verify};
use harness::logs;
use harness::netns::Netns;
use harness::node::NodeProcess;
use harness::wait::eventually;
use nix::sys::signal::Signal;
use support::MINOTAUR;
use tokio::time::Instant;

/// One fault test at a time: three nodes each, real timeouts; on two cores, tests run side by
/// side would starve each other's heartbeats and test the scheduler instead.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Games played on a cluster of three: `GAMES` games, 12 clients, 200 inputs/s in all.
async fn playing(net: u8, name: &str) -> (Cluster, Load) {
    let cluster = Cluster::start(ClusterOptions::new(MINOTAUR, net, 3, name))
        .await
        .unwrap();
    let load = Load::start(cluster.http(), GAMES, 12, 200.0, cluster.targets())
        .await
        .unwrap();
    (cluster, load)
}

/// Games in each fault test but the partition's.
const GAMES: usize = 60;

/// Nothing lost, nothing doubled, every answer seen accounted for.
fn assert_kept(integrity: &Integrity, result: &LoadResult) {
    integrity.assert_nothing_lost();
    assert_eq!(
        integrity.inputs_unanswered, 0,
        "an input went unanswered through every retry: {integrity:?}"
    );
    // The players' joins (two per game) are setup: only the inputs after them count as
    // traffic, and each test also waits for traffic after its fault.
    assert!(
        result.answers.len() > 100,
        "too few answers after the joins to prove anything: {} ({integrity:?})",
        result.answers.len()
    );
    assert_eq!(result.regressions, 0, "a player saw a game go back in time");
    let two = result.interleaved();
    assert!(two.is_empty(), "two nodes answered for one game: {two:?}");
}

/// Stops the players, then checks every game and input ([`assert_kept`]) and one owner per
/// game, and shuts the cluster down.
async fn stop_and_check(cluster: Cluster, load: Load, what: &str) {
    let result = load.stop().await;
    let integrity = verify(cluster.http(), &cluster.urls(), &result).await;
    eprintln!("{what}: {integrity:?}");
    assert_kept(&integrity, &result);
    assert_one_owner(&cluster).await;
    cluster.shutdown().await;
}

/// Every node names the same owner for every game.
async fn assert_one_owner(cluster: &Cluster) {
    eventually(
        "every registry names one owner per game",
        Duration::from_secs(20),
        || async { cluster.owners_disagree().await.is_empty().then_some(()) },
    )
    .await;
}

/// Waits until `dead` has left the members, `alive` members are alive, and every node's
/// registry places all [`GAMES`] games on them.
async fn games_restarted_without(cluster: &Cluster, dead: &str, alive: usize) {
    eventually(
        "the killed node's games restarted and it left the members",
        Duration::from_secs(30),
        || async {
            let m = cluster.members().await;
            if m.len() != alive || m.contains_key(dead) || m.values().any(|(s, _)| s != "alive") {
                return None;
            }
            let views = cluster.registries().await;
            views
                .iter()
                .all(|v| {
                    v.len() == GAMES && v.values().all(|host| host != dead && m.contains_key(host))
                })
                .then_some(())
        },
    )
    .await;
}

/// Waits for 50 acknowledged inputs after the joins: the players are playing.
async fn traffic_before_the_fault(load: &Load) {
    load.expect_play(50).await;
}

/// Waits for 100 more acknowledged inputs: the players played on after the fault.
async fn traffic_after_the_fault(load: &Load) {
    load.expect_play(100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_killed_right_after_a_drain_gave_it_games_loses_none() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let (mut cluster, load) = playing(51, "faults-drain-kill").await;
    traffic_before_the_fault(&load).await;
    // A rolling update step: a new node joins, node 0 drains and exits.
    let (_, code) = cluster.replace(0, &PathBuf::from(MINOTAUR)).await.unwrap();
    assert_eq!(code, Some(0));
    // At once, before their next input: SIGKILL of the node that received the most games.
    let per_node = cluster.games_per_node().await;
    let victim = (0..cluster.nodes.len())
        .max_by_key(|i| per_node.get(&cluster.nodes[*i].name).copied().unwrap_or(0))
        .unwrap();
    let had = per_node
        .get(&cluster.nodes[victim].name)
        .copied()
        .unwrap_or(0);
    assert!(had > 0, "{per_node:?}");
    let dead = cluster.kill(victim);
    games_restarted_without(&cluster, &dead.name, 2).await;
    traffic_after_the_fault(&load).await;
    stop_and_check(cluster, load, &format!("killed a node holding {had} games")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn owners_killed_right_after_answering_lose_no_answered_input() {
    let _serial = ONE_AT_A_TIME.lock().await;
    // `MINOTAUR_FAULT_KILLS` kills (default 6; the closing note's measure used 100).
    let kills: usize = std::env::var("MINOTAUR_FAULT_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let (mut cluster, load) = playing(52, "faults-kill-loop").await;
    for k in 0..kills {
        tokio::time::sleep(Duration::from_millis(300 + 97 * (k as u64 % 5))).await;
        let victim = k % cluster.nodes.len();
        let dead = cluster.kill(victim);
        cluster.add(&PathBuf::from(MINOTAUR)).await.unwrap();
        // The dead one is removed from the quorum set once its games run elsewhere: only
        // then may the next one die (one fault at a time).
        games_restarted_without(&cluster, &dead.name, 3).await;
    }
    traffic_after_the_fault(&load).await;
    stop_and_check(cluster, load, &format!("{kills} kills")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_drain_target_paused_then_resumed_makes_no_second_owner() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let (mut cluster, load) = playing(53, "faults-paused-target").await;
    traffic_before_the_fault(&load).await;
    // Node 1 freezes; node 0 drains meanwhile (a rolling update step), offering it games.
    cluster.nodes[1].signal(Signal::SIGSTOP);
    let paused_at = Instant::now();
    let (_, code) = cluster.replace(0, &PathBuf::from(MINOTAUR)).await.unwrap();
    assert_eq!(code, Some(0));
    let left = Duration::from_secs(4).saturating_sub(paused_at.elapsed());
    tokio::time::sleep(left).await;
    // Node 1 is now index 0 (node 0 was removed).
    cluster.nodes[0].signal(Signal::SIGCONT);
    let resumed = cluster.nodes[0].name.clone();
    eventually(
        "the resumed node is an alive member again",
        Duration::from_secs(30),
        || async {
            let m = cluster.members().await;
            (m.len() == 3 && m.contains_key(&resumed) && m.values().all(|(s, _)| s == "alive"))
                .then_some(())
        },
    )
    .await;
    traffic_after_the_fault(&load).await;
    stop_and_check(cluster, load, "paused target").await;
}

/// Three nodes, each in its own network namespace.
struct NsCluster {
    ns: Netns,
    nodes: Vec<NodeProcess>,
    http: reqwest::Client,
}

impl NsCluster {
    async fn start(net: u8, name: &str) -> NsCluster {
        let ns = Netns::create(net, 3).unwrap();
        let logs = logs::test_dir(name);
        let names: Vec<String> = (0..3).map(|i| format!("minotaur@{}", ns.ip(i))).collect();
        let mut nodes = Vec::new();
        for i in 0..3 {
            let env: HashMap<String, String> = [
                ("RELEASE_NODE", names[i].clone()),
                ("RELEASE_COOKIE", format!("faults-{net}-cluster-cookie")),
                ("CLUSTER_PORT", "9000".to_string()),
                ("PORT", "4000".to_string()),
                ("HTTP_BIND", ns.ip(i).to_string()),
                ("CLUSTER_HOSTS", names.join(",")),
                (
                    "RUST_LOG",
                    "info,ractor=warn,ractor_cluster=error".to_string(),
                ),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
            nodes.push(
                NodeProcess::start_with(&ns.exec_prefix(i), MINOTAUR, ns.ip(i), env, &logs)
                    .unwrap(),
            );
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let c = NsCluster { ns, nodes, http };
        for i in 0..3 {
            let url = c.url(i);
            eventually("node healthy", Duration::from_secs(30), || async {
                let r = c.http.get(format!("{url}/healthz")).send().await.ok()?;
                r.status().is_success().then_some(())
            })
            .await;
        }
        c
    }

    fn url(&self, i: usize) -> String {
        format!("http://{}:4000", self.ns.ip(i))
    }

    fn urls(&self) -> Vec<String> {
        (0..self.nodes.len()).map(|i| self.url(i)).collect()
    }

    /// `GET /api/games/{code}` on node `i`: status and body, `None` without an answer.
    async fn get_game(&self, i: usize, code: &str) -> Option<(u16, String)> {
        let r = self
            .http
            .get(format!("{}/api/games/{code}", self.url(i)))
            .send()
            .await
            .ok()?;
        let status = r.status().as_u16();
        Some((status, r.text().await.ok()?))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_cut_off_for_ten_seconds_stops_answering_and_nothing_answered_is_lost() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let c = NsCluster::start(61, "faults-partition").await;
    let targets = Arc::new(RwLock::new(c.urls()));
    let load = Load::start(&c.http, 45, 9, 150.0, targets).await.unwrap();
    traffic_before_the_fault(&load).await;
    let cut = c.nodes[0].name.clone();
    // (Listed before the cut: a listing shows only the games that answer.)
    let cut_games = games_on(&c, &cut).await;
    assert!(!cut_games.is_empty(), "no game on the node to cut off");
    c.ns.isolate(0).unwrap();
    let cut_at = Instant::now();
    // Within its lease the cut-off node stops answering for its games: a 503 saying why.
    let refused = eventually(
        "the cut-off node refuses with a reason",
        Duration::from_secs(10),
        || async {
            let (status, body) = c.get_game(0, &cut_games[0]).await?;
            (status == 503).then_some(body)
        },
    )
    .await;
    assert!(refused.contains("majority"), "{refused}");
    let refused_after = cut_at.elapsed();
    // Before the heal, the majority side serves every one of the cut-off node's games: a
    // cluster that never failed over (and only caught up once healed) fails here.
    let served = eventually(
        "every game of the cut-off node answered by the majority side before the heal",
        Duration::from_secs(30),
        || async {
            for code in &cut_games {
                for i in 1..3 {
                    let (status, body) = c.get_game(i, code).await?;
                    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
                    if status != 200 || v["node"] == cut.as_str() || v["node"].is_null() {
                        return None;
                    }
                }
            }
            Some(cut_at.elapsed())
        },
    )
    .await;
    // And the cut-off node still refuses every one of them: never two copies answering.
    for code in &cut_games {
        let answer = c.get_game(0, code).await;
        assert!(
            matches!(&answer, Some((503, _))),
            "the cut-off node answered {answer:?} for {code} while the majority serves it"
        );
    }
    eprintln!(
        "cut-off node refused after {refused_after:?}: {refused}; the majority served all {} of its games after {served:?}",
        cut_games.len()
    );
    // The fault lasts ten seconds (when failover was quicker), then heals.
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(cut_at.elapsed())).await;
    c.ns.heal(0).unwrap();
    eventually(
        "the healed node serves again",
        Duration::from_secs(30),
        || async {
            let r = c
                .http
                .get(format!("{}/healthz", c.url(0)))
                .send()
                .await
                .ok()?;
            r.status().is_success().then_some(())
        },
    )
    .await;
    traffic_after_the_fault(&load).await;
    let result = load.stop().await;
    let integrity = verify(&c.http, &c.urls(), &result).await;
    // When the majority side served the cut-off node's games again.
    let back = result.served_again_after(&cut, cut_at);
    eprintln!(
        "partition: {integrity:?}; the cut-off node's games answered again on the majority side after {:?} ms (min, max)",
        (back.first(), back.last())
    );
    assert_kept(&integrity, &result);
    eventually(
        "every registry names one owner per game",
        Duration::from_secs(20),
        || async {
            disagreeing(&registries(&c.http, &c.urls()).await)
                .is_empty()
                .then_some(())
        },
    )
    .await;
    drop(c);
}

/// The games the load plays that `node` hosts, as node 1 lists them.
async fn games_on(c: &NsCluster, node: &str) -> Vec<String> {
    let r = c
        .http
        .get(format!("{}/api/games", c.url(1)))
        .send()
        .await
        .unwrap();
    let games: serde_json::Value = r.json().await.unwrap();
    games
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["node"] == node)
        .filter_map(|g| g["code"].as_str().map(String::from))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_demo_with_a_kill_mid_update_loses_nothing() {
    let _serial = ONE_AT_A_TIME.lock().await;
    // As a user runs it: `minotaur demo --kill --json`, a node SIGKILLed mid-update.
    let out = tokio::process::Command::new(MINOTAUR)
        .args(["demo", "--nodes", "3", "--games", "60", "--kill", "--json"])
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("no JSON report ({e}): {stdout}\n{stderr}"));
    eprintln!("demo --kill: {report}");
    assert!(out.status.success(), "{report}\n{stderr}");
    assert_eq!(report["inputs_acked_lost"], 0, "{report}");
    assert!(
        report["inputs_acked_probed"]
            .as_u64()
            .is_some_and(|p| p > 0),
        "{report}"
    );
    assert_eq!(report["inputs_unanswered"], 0, "{report}");
    assert_eq!(report["games_modelled"], report["games"], "{report}");
    assert_eq!(report["games_unlike_model"], 0, "{report}");
    assert_eq!(report["answers_unlike_model"], 0, "{report}");
    assert_eq!(report["games_reset"], 0, "{report}");
    assert_eq!(report["games_lost"], 0, "{report}");
    assert_eq!(report["inputs_duplicated"], 0, "{report}");
    assert!(report["killed"].is_string(), "{report}");
    assert!(
        report["killed_games"].as_u64().is_some_and(|g| g > 0),
        "{report}"
    );
    // Measured, not a default: null (and a failed run) when no game answered elsewhere.
    assert!(
        report["failover_ms"].as_f64().is_some_and(|ms| ms > 0.0),
        "{report}"
    );
    assert!(stderr.contains("SIGKILL"), "{stderr}");
}
