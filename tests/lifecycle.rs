//! A game's lifecycle and the per-node limit, seen from real `minotaur` processes: a game
//! played to `over` or left idle (`GAME_IDLE_TIMEOUT_MS`) is removed after
//! `GAME_RETENTION_MS` from every node (404, `GET /api/games`, the registry counts of
//! `/api/cluster`, `/metrics`, backups); `MAX_GAMES_PER_NODE` makes `POST /api/games` answer
//! 503 with `Retry-After` once every node is full, and a drain still moves every game; bad
//! values exit 2 naming the variable. A WebSocket on a removed game closes with 1000.

mod support;

use std::time::Duration;

use futures::StreamExt;
use harness::cluster::{Cluster, ClusterOptions};
use harness::logs;
use harness::node::{NodeProcess, get_json, metric_sum, node_env};
use harness::ports::{free_port, loopbacks};
use harness::wait::{eventually, scaled};
use serde_json::{Value, json};
use support::MINOTAUR;
use tokio_tungstenite::tungstenite::Message;

/// Longest wait of a step (scaled by `MINOTAUR_TEST_TIME_SCALE`).
const STEP: Duration = Duration::from_secs(30);

/// `POST url` with a JSON body: the status, the `Retry-After` header and the JSON answer.
async fn post(cluster: &Cluster, url: &str, body: &Value) -> (u16, Option<String>, Value) {
    let r = cluster
        .http()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("POST answered");
    let status = r.status().as_u16();
    let retry_after = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (status, retry_after, r.json().await.unwrap_or(Value::Null))
}

async fn get(cluster: &Cluster, url: &str) -> (u16, Value) {
    let r = cluster.http().get(url).send().await.expect("GET answered");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn create(cluster: &Cluster, url: &str) -> String {
    let (status, _, g) = post(cluster, &format!("{url}/api/games"), &json!({})).await;
    assert_eq!(status, 201, "{g}");
    g["code"].as_str().expect("a code").to_string()
}

async fn play(cluster: &Cluster, url: &str, code: &str, player: &str, id: &str, action: Value) {
    let body = json!({ "player": player, "input_id": id, "action": action });
    let (status, _, v) = post(cluster, &format!("{url}/api/games/{code}/input"), &body).await;
    assert_eq!(status, 200, "{v}");
}

/// What one node says about games: the codes `GET /api/games` lists, the registry counts of
/// `/api/cluster` summed over members, and the `/metrics` gauges of hosted games, registry
/// names and backup replicas.
async fn node_games(cluster: &Cluster, url: &str) -> Option<(Vec<String>, u64, [f64; 3])> {
    let http = cluster.http();
    let listed: Vec<String> = get_json(http, &format!("{url}/api/games"))
        .await?
        .as_array()?
        .iter()
        .filter_map(|g| g["code"].as_str().map(str::to_string))
        .collect();
    let members = get_json(http, &format!("{url}/api/cluster")).await?;
    let registry: u64 = members["members"]
        .as_array()?
        .iter()
        .filter_map(|m| m["games"].as_u64())
        .sum();
    let text = http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let gauges = [
        metric_sum(&text, "minotaur_games_hosted"),
        metric_sum(&text, "minotaur_registry_names"),
        metric_sum(&text, "minotaur_backup_replicas"),
    ];
    Some((listed, registry, gauges))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_game_over_or_idle_is_removed_from_every_node_after_the_retention() {
    let mut opts = ClusterOptions::new(MINOTAUR, 121, 3, "lifecycle_removal");
    opts.env = vec![
        ("GAME_RETENTION_MS".into(), "3000".into()),
        ("GAME_IDLE_TIMEOUT_MS".into(), "2000".into()),
    ];
    let cluster = Cluster::start(opts).await.expect("a cluster");
    let urls = cluster.urls();
    // One game to be played to its end, one left idle after a join.
    let over = create(&cluster, &urls[0]).await;
    play(
        &cluster,
        &urls[1],
        &over,
        "ann",
        "a1",
        json!({"type": "join"}),
    )
    .await;
    play(
        &cluster,
        &urls[2],
        &over,
        "bob",
        "b1",
        json!({"type": "join"}),
    )
    .await;
    let idle = create(&cluster, &urls[1]).await;
    play(
        &cluster,
        &urls[2],
        &idle,
        "cat",
        "c1",
        json!({"type": "join"}),
    )
    .await;
    // Both are there, on every node, with their backups.
    for url in &urls {
        let (listed, registry, _) = node_games(&cluster, url).await.expect("answers");
        assert!(
            listed.contains(&over) && listed.contains(&idle),
            "{listed:?}"
        );
        assert_eq!(registry, 2);
    }
    eventually("backups hold both games", STEP, || async {
        let mut held = 0.0;
        for url in &urls {
            held += node_games(&cluster, url).await?.2[2];
        }
        (held >= 2.0).then_some(())
    })
    .await;
    // A client watching the game to be played out, on a node that may not host it.
    let (mut socket, _) = tokio_tungstenite::connect_async(format!(
        "{}/api/games/{over}/ws",
        urls[2].replace("http://", "ws://")
    ))
    .await
    .expect("a WebSocket on the game");
    // ann leaves: bob wins, the game is over by its rules (no `ended`).
    play(
        &cluster,
        &urls[0],
        &over,
        "ann",
        "a2",
        json!({"type": "leave"}),
    )
    .await;
    let (_, g) = get(&cluster, &format!("{}/api/games/{over}", urls[1])).await;
    assert_eq!(g["status"], "over", "{g}");
    assert!(g.get("ended").is_none(), "a game over by its rules: {g}");

    // The idle one becomes over with `ended: idle`, still readable during the retention.
    let g = eventually("the idle game ends", STEP, || async {
        let (status, g) = get(&cluster, &format!("{}/api/games/{idle}", urls[0])).await;
        (status == 200 && g["status"] == "over").then_some(g)
    })
    .await;
    assert_eq!(g["ended"], "idle", "{g}");
    assert_eq!(g["winner"], Value::Null, "{g}");

    // Then both are gone: 404 on every node, not listed, not counted, no metrics, no backup.
    for code in [&over, &idle] {
        for url in &urls {
            eventually("the game is 404", STEP, || async {
                let (status, _) = get(&cluster, &format!("{url}/api/games/{code}")).await;
                (status == 404).then_some(())
            })
            .await;
        }
    }
    // The socket was told, not left open and silent: 1000 with the reason.
    let closed = tokio::time::timeout(scaled(STEP), async {
        while let Some(Ok(m)) = socket.next().await {
            if let Message::Close(frame) = m {
                return frame.map(|f| (u16::from(f.code), f.reason.to_string()));
            }
        }
        None
    })
    .await
    .expect("the socket of a removed game closes");
    let (code, reason) = closed.expect("a close frame");
    assert_eq!(code, 1000, "{reason}");
    assert!(reason.contains("game removed"), "{reason}");
    for url in &urls {
        let (listed, registry, gauges) = eventually("nothing left", STEP, || async {
            let seen = node_games(&cluster, url).await?;
            (seen.0.is_empty() && seen.1 == 0 && seen.2 == [0.0; 3]).then_some(seen)
        })
        .await;
        assert!(
            listed.is_empty() && registry == 0,
            "{url}: {listed:?} {registry}"
        );
        assert_eq!(gauges, [0.0; 3], "{url}");
        let (status, _, v) = post(
            &cluster,
            &format!("{url}/api/games/{over}/input"),
            &json!({"player": "bob", "input_id": "late", "action": {"type": "end_turn"}}),
        )
        .await;
        assert_eq!(status, 404, "{v}");
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_answers_503_with_retry_after_once_every_node_is_full_and_a_drain_still_moves_all() {
    let mut opts = ClusterOptions::new(MINOTAUR, 122, 2, "lifecycle_full");
    opts.env = vec![("MAX_GAMES_PER_NODE".into(), "2".into())];
    let mut cluster = Cluster::start(opts).await.expect("a cluster");
    let urls = cluster.urls();
    let mut codes = Vec::new();
    for i in 0..4 {
        codes.push(create(&cluster, &urls[i % 2]).await);
    }
    let per_node = cluster.games_per_node().await;
    assert_eq!(per_node.values().copied().collect::<Vec<_>>(), [2, 2]);
    for url in &urls {
        let (status, retry_after, v) =
            post(&cluster, &format!("{url}/api/games"), &json!({})).await;
        assert_eq!(status, 503, "{v}");
        let after: u64 = retry_after
            .as_deref()
            .and_then(|s| s.parse().ok())
            .expect("a Retry-After in seconds");
        assert!(after >= 1);
        let reason = v["error"].as_str().expect("a reason");
        assert!(reason.contains("MAX_GAMES_PER_NODE"), "{reason}");
    }
    // A drain is never refused for the limit: node 1's games all move to node 0.
    let code = cluster.drain(1).await;
    assert_eq!(code, Some(0), "the drained node's exit code");
    let url = cluster.urls()[0].clone();
    for code in &codes {
        let (status, g) = get(&cluster, &format!("{url}/api/games/{code}")).await;
        assert_eq!(status, 200, "{g}");
    }
    let per_node = cluster.games_per_node().await;
    // The drained node may still be listed as it leaves, with none.
    let mut counts: Vec<u64> = per_node.values().copied().collect();
    counts.sort();
    assert_eq!(counts.last(), Some(&4), "{per_node:?}");
    assert_eq!(counts.iter().sum::<u64>(), 4, "{per_node:?}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_lifecycle_and_limit_values_exit_2_naming_the_variable() {
    let ip = loopbacks(123, 1)[0];
    let logs = logs::test_dir("lifecycle_bad_values");
    for (var, bad, expected) in [
        (
            "GAME_RETENTION_MS",
            "-1",
            "a whole number of milliseconds from 0 to 2592000000",
        ),
        (
            "GAME_IDLE_TIMEOUT_MS",
            "0",
            "a whole number of milliseconds from 1 to 2592000000",
        ),
        (
            "MAX_GAMES_PER_NODE",
            "none",
            "a whole number of games from 1 to 100000000",
        ),
    ] {
        let mut env = node_env(ip, free_port(&[ip]).expect("a free port"), "lifecycle");
        env.insert(var.into(), bad.into());
        let mut p = NodeProcess::start(MINOTAUR, ip, env, &logs).expect("start a node");
        let code = p.wait(scaled(Duration::from_secs(10))).await;
        assert_eq!(code, Some(2), "{var}={bad}: {}", p.log());
        assert!(
            p.log()
                .contains(&format!("{var}: `{bad}` is not valid: expected {expected}")),
            "{}",
            p.log()
        );
    }
}
