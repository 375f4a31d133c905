//! The game server end to end: real `minotaur` processes on 127.0.x.y behind a real DNS
//! server, games played over HTTP and WebSocket by clients that retry failed inputs with the
//! same `input_id`, and a full rolling update (start a new node, take the old one out of DNS,
//! SIGTERM it; for every node). Uses the same driver as `minotaur demo`. The state-migration
//! tests run this source's `schema-v2` build as the next version; `tests/upgrade.rs` runs the
//! previous release's own build.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use harness::cluster::{Cluster, ClusterOptions};
use harness::load::{AssertIntegrity, ExpectPlay, Load, verify};
use harness::releases::{V2_VERSION, v2_binary};
use harness::wait::{POLL_INTERVAL, poll, scaled};
use serde_json::{Value, json};
use support::MINOTAUR;
use tokio_tungstenite::tungstenite::Message;

async fn get(cluster: &Cluster, url: &str) -> (u16, Value) {
    let r = cluster.http().get(url).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn post(cluster: &Cluster, url: &str, body: &str, content_type: &str) -> (u16, Value) {
    let r = cluster
        .http()
        .post(url)
        .header("content-type", content_type)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_update_loses_no_game_and_no_input_and_sockets_follow_their_games() {
    let mut cluster = Cluster::start(ClusterOptions::new(MINOTAUR, 41, 3, "rolling"))
        .await
        .unwrap();
    let load = Load::start(cluster.http(), 200, 40, 400.0, cluster.targets())
        .await
        .unwrap();
    load.expect_play(100).await;

    // The first replacement: the new node stays to the end, so a WebSocket on it must see a
    // game hosted elsewhere move and keep streaming every state.
    let (took, code) = cluster.replace(0, &PathBuf::from(MINOTAUR)).await.unwrap();
    assert_eq!(code, Some(0), "the drained node exits 0");
    eprintln!("first node replaced in {took:?}");
    let staying = cluster.nodes.last().unwrap().url();
    let staying_name = get(&cluster, &format!("{staying}/api/cluster")).await.1["node"]
        .as_str()
        .unwrap()
        .to_string();
    // A game of its own (not driven by the load), hosted on a node that will be replaced.
    let (mut watched, mut host) = (String::new(), staying_name.clone());
    for _ in 0..51 {
        let (status, created) = post(
            &cluster,
            &format!("{}/api/games", cluster.nodes[0].url()),
            "{}",
            "application/json",
        )
        .await;
        assert_eq!(status, 201, "{created}");
        watched = created["code"].as_str().unwrap().to_string();
        host = created["node"].as_str().unwrap().to_string();
        if host != staying_name {
            break;
        }
    }
    assert_ne!(host, staying_name);
    let ws_url = format!(
        "{}/api/games/{watched}/ws",
        staying.replace("http://", "ws://")
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
    let first: Value = match ws.next().await {
        Some(Ok(Message::Text(t))) => serde_json::from_str(&t).unwrap(),
        other => panic!("no first frame: {other:?}"),
    };
    assert_eq!(first["seq"], 0);
    // Two players join and play through the socket while the rest of the update happens.
    let seen = std::sync::Arc::new(tokio::sync::Mutex::new(Vec::<Value>::new()));
    let (mut tx, mut rx) = ws.split();
    let collector = {
        let seen = seen.clone();
        tokio::spawn(async move {
            while let Some(Ok(msg)) = rx.next().await {
                if let Message::Text(t) = msg {
                    seen.lock().await.push(serde_json::from_str(&t).unwrap());
                }
            }
        })
    };
    let mut inputs = 0;
    for (p, player) in ["ann", "bob"].iter().enumerate() {
        tx.send(Message::Text(json!({"player": player, "input_id": format!("w-join-{p}"), "action": {"type": "join"}}).to_string().into()))
            .await
            .unwrap();
        inputs += 1;
    }
    let player_task = tokio::spawn(async move {
        let mut n = 0;
        // Alternate end turns, one every 20 ms, until told to stop (the socket closes).
        loop {
            for player in ["ann", "bob"] {
                n += 1;
                let msg = json!({"player": player, "input_id": format!("w-{n}"), "action": {"type": "end_turn"}});
                if tx
                    .send(Message::Text(msg.to_string().into()))
                    .await
                    .is_err()
                {
                    return (tx, n);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if n >= 300 {
                return (tx, n);
            }
        }
    });

    // The rest of the rolling update.
    for _ in 1..3 {
        let (took, code) = cluster.replace(0, &PathBuf::from(MINOTAUR)).await.unwrap();
        assert_eq!(code, Some(0), "the drained node exits 0");
        eprintln!("node replaced in {took:?}");
    }
    let (mut tx, sent_end_turns) = player_task.await.unwrap();
    inputs += sent_end_turns;
    load.expect_play(100).await;
    let result = load.stop().await;

    // Every game is there, with the round and seq its players last saw, and every
    // acknowledged input applied exactly once.
    // Content too: each game is its model (created, every acknowledged input replayed).
    let integrity = verify(cluster.http(), &cluster.urls(), &result).await;
    assert_eq!(integrity.games, 200);
    integrity.assert_nothing_lost();
    assert_eq!(result.regressions, 0);
    // The joins (two per game) are setup, not play.
    assert!(
        result.answers.len() > 600,
        "too little play to prove anything: {} answers after the joins ({integrity:?})",
        result.answers.len()
    );
    let urls = cluster.urls();
    for (i, game) in result.games.iter().enumerate() {
        let code = &game.code;
        let (status, g) = get(
            &cluster,
            &format!("{}/api/games/{code}", urls[i % urls.len()]),
        )
        .await;
        assert_eq!(status, 200);
        let now = (g["round"].as_u64().unwrap(), g["seq"].as_u64().unwrap());
        assert_eq!(
            now, game.last_seen,
            "game {code} changed behind its players' backs"
        );
        assert_eq!(
            now.1, game.acked,
            "game {code}: seq is not the inputs acknowledged"
        );
    }
    // Play continues after the update: one more input per game applies at once.
    for (i, game) in result.games.iter().enumerate().take(50) {
        let code = &game.code;
        let (status, g) = post(
            &cluster,
            &format!("{}/api/games/{code}/input", urls[i % urls.len()]),
            &json!({"player": "ann", "input_id": format!("after-{code}"), "action": {"type": "end_turn"}}).to_string(),
            "application/json",
        )
        .await;
        // 409 only if ann already ended this round; either way the game answers.
        assert!(status == 200 || status == 409, "{status} {g}");
        if status == 200 {
            assert_eq!(g["seq"].as_u64().unwrap(), game.acked + 1);
        }
    }

    // The socket on the staying node saw the game move and every state, in order.
    let _ = tx.close().await;
    collector.abort();
    let frames = seen.lock().await.clone();
    let seqs: Vec<u64> = std::iter::once(0)
        .chain(frames.iter().filter_map(|f| f["seq"].as_u64()))
        .collect();
    let errors: Vec<&Value> = frames.iter().filter(|f| f.get("error").is_some()).collect();
    let final_state = get(&cluster, &format!("{staying}/api/games/{watched}"))
        .await
        .1;
    let final_seq = final_state["seq"].as_u64().unwrap();
    let mut expected: Vec<u64> = (0..=final_seq).collect();
    let mut got = seqs.clone();
    got.dedup();
    expected.dedup();
    assert_eq!(
        got, expected,
        "the socket missed or reordered states (errors: {errors:?})"
    );
    let nodes: std::collections::BTreeSet<&str> =
        frames.iter().filter_map(|f| f["node"].as_str()).collect();
    assert!(nodes.len() >= 2, "the watched game never moved: {nodes:?}");
    assert!(
        final_seq as usize >= inputs / 2,
        "few socket inputs applied: {final_seq} of {inputs}"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors() {
    let cluster = Cluster::start(ClusterOptions {
        nodes: 2,
        ..ClusterOptions::new(MINOTAUR, 42, 3, "bad_requests")
    })
    .await
    .unwrap();
    let url = cluster.urls()[0].clone();
    let (status, g) = post(
        &cluster,
        &format!("{url}/api/games"),
        "",
        "application/json",
    )
    .await;
    assert_eq!(status, 201);
    let code = g["code"].as_str().unwrap().to_string();
    let input = format!("{url}/api/games/{code}/input");
    let cases: Vec<(&str, &str, u16, &str)> = vec![
        ("{not json", "application/json", 400, "malformed JSON"),
        (
            r#"{"player":"ann","action":{"type":"join"}}"#,
            "application/json",
            400,
            "input_id",
        ),
        (
            r#"{"player":"ann","input_id":"x","action":{"type":"fly"}}"#,
            "application/json",
            400,
            "fly",
        ),
        (
            r#"{"player":"ann","input_id":"x","action":{"type":"join"}}"#,
            "text/plain",
            400,
            "Content-Type",
        ),
        (
            r#"{"player":"","input_id":"x","action":{"type":"join"}}"#,
            "application/json",
            400,
            "player",
        ),
        (
            r#"{"player":"zed","input_id":"y","action":{"type":"end_turn"}}"#,
            "application/json",
            409,
            "not joined",
        ),
    ];
    for (body, ct, want, reason) in cases {
        let (status, v) = post(&cluster, &input, body, ct).await;
        assert_eq!(status, want, "{body}: {v}");
        let msg = v["error"].as_str().unwrap_or_default();
        assert!(
            msg.contains(reason),
            "{body}: `{msg}` should mention `{reason}`"
        );
    }
    // A second end of turn in the same round: 409.
    for (p, id) in [("ann", "a"), ("bob", "b")] {
        let (s, _) = post(
            &cluster,
            &input,
            &json!({"player": p, "input_id": id, "action": {"type": "join"}}).to_string(),
            "application/json",
        )
        .await;
        assert_eq!(s, 200);
    }
    let end = |id: &str| {
        json!({"player": "ann", "input_id": id, "action": {"type": "end_turn"}}).to_string()
    };
    assert_eq!(
        post(&cluster, &input, &end("e1"), "application/json")
            .await
            .0,
        200
    );
    let (status, v) = post(&cluster, &input, &end("e2"), "application/json").await;
    assert_eq!(status, 409, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("already ended"),
        "{v}"
    );
    // The same input id again is not an error: it is not applied twice.
    let (status, v) = post(&cluster, &input, &end("e1"), "application/json").await;
    assert_eq!(status, 200);
    assert_eq!(v["seq"], 3);
    // Too large: 413.
    let big = format!(
        r#"{{"player":"ann","input_id":"{}","action":{{"type":"join"}}}}"#,
        "x".repeat(70 * 1024)
    );
    let (status, v) = post(&cluster, &input, &big, "application/json").await;
    assert_eq!(status, 413, "{v}");
    assert!(v["error"].as_str().unwrap().contains("64 KiB"), "{v}");
    // Unknown games and endpoints: 404.
    let (status, v) = get(&cluster, &format!("{url}/api/games/ZZZZZZ")).await;
    assert_eq!((status, v["error"].as_str().is_some()), (404, true));
    let (status, _) = get(&cluster, &format!("{url}/api/games/{code}-deadbeef")).await;
    assert_eq!(
        status, 404,
        "an id whose code exists but whose suffix does not is unknown"
    );
    let (status, _) = post(
        &cluster,
        &format!("{url}/api/games/ZZZZZZ/input"),
        &end("z"),
        "application/json",
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = get(&cluster, &format!("{url}/nope")).await;
    assert_eq!(status, 404);
    // Bad create bodies.
    let (status, v) = post(
        &cluster,
        &format!("{url}/api/games"),
        r#"{"round_ms": 5}"#,
        "application/json",
    )
    .await;
    assert_eq!(status, 400, "{v}");
    // Health and metrics.
    assert_eq!(get(&cluster, &format!("{url}/healthz")).await.0, 200);
    let metrics = cluster
        .http()
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("minotaur_games_created_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "minotaur_http_request_duration_seconds_count{method=\"GET\",route=\"unmatched\",status=\"404\"} 1\n"
        ),
        "{metrics}"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_build_with_a_new_state_schema_takes_over_games_from_the_old_one() {
    let v2 = tokio::task::spawn_blocking(v2_binary).await.unwrap();
    let mut cluster = Cluster::start(ClusterOptions::new(MINOTAUR, 43, 3, "upgrade"))
        .await
        .unwrap();
    let load = Load::start(cluster.http(), 60, 12, 120.0, cluster.targets())
        .await
        .unwrap();
    load.expect_play(50).await;
    for _ in 0..3 {
        let (_, code) = cluster.replace(0, &v2).await.unwrap();
        assert_eq!(code, Some(0));
    }
    load.expect_play(50).await;
    let result = load.stop().await;
    let integrity = verify(cluster.http(), &cluster.urls(), &result).await;
    integrity.assert_nothing_lost();
    // Only the new version is left, and every game runs v2 code on v1-born state.
    let members = settled_members(&cluster, |s, v| s == "alive" && v == V2_VERSION).await;
    assert_eq!(members.len(), 3, "{members:?}");
    assert!(
        members
            .values()
            .all(|(status, version)| status == "alive" && version == V2_VERSION),
        "{members:?}"
    );
    let url = cluster.urls()[0].clone();
    for code in result.games.iter().map(|g| &g.code) {
        let (_, g) = get(&cluster, &format!("{url}/api/games/{code}")).await;
        assert_eq!(g["schema"], 2, "{code} not on v2 code: {g}");
        assert!(
            g["moves"].as_u64().unwrap() >= 1,
            "{code}: v2 state not carried over from v1: {g}"
        );
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rollback_to_the_previous_build_keeps_every_game() {
    let v2 = tokio::task::spawn_blocking(v2_binary).await.unwrap();
    let v1 = PathBuf::from(MINOTAUR);
    let mut cluster = Cluster::start(ClusterOptions::new(v1.clone(), 44, 3, "rollback"))
        .await
        .unwrap();
    let load = Load::start(cluster.http(), 60, 12, 150.0, cluster.targets())
        .await
        .unwrap();
    load.expect_play(50).await;
    // v1 -> v2, then back to v1 (what `docker service rollback` does), writers running.
    for binary in [&v2, &v2, &v2, &v1, &v1, &v1] {
        let (_, code) = cluster.replace(0, binary).await.unwrap();
        assert_eq!(code, Some(0), "a drained node exits 0");
    }
    load.expect_play(50).await;
    let result = load.stop().await;
    let integrity = verify(cluster.http(), &cluster.urls(), &result).await;
    eprintln!("rollback: {integrity:?}");
    integrity.assert_nothing_lost();
    assert!(
        result.interleaved().is_empty(),
        "{:?}",
        result.interleaved()
    );
    // Only the previous version is left, running every game on v1 state.
    let members = settled_members(&cluster, |s, v| s == "alive" && v != V2_VERSION).await;
    assert!(
        members
            .values()
            .all(|(status, version)| status == "alive" && version != V2_VERSION),
        "{members:?}"
    );
    let url = cluster.urls()[0].clone();
    for code in result.games.iter().map(|g| &g.code) {
        let (_, g) = get(&cluster, &format!("{url}/api/games/{code}")).await;
        assert_eq!(g["schema"], 1, "{code} not back on v1 code: {g}");
    }
    cluster.shutdown().await;
}

/// The member list once it settled on three members that all pass `want` (status, version),
/// or as it is after ten seconds (scaled): a member that left is listed as `left` until the
/// next sweep after its link went down.
async fn settled_members(
    cluster: &Cluster,
    want: impl Fn(&str, &str) -> bool,
) -> HashMap<String, (String, String)> {
    let settled =
        |m: &HashMap<String, (String, String)>| m.len() == 3 && m.values().all(|(s, v)| want(s, v));
    let waited = poll(scaled(Duration::from_secs(10)), POLL_INTERVAL, || async {
        let m = cluster.members().await;
        settled(&m).then_some(m)
    })
    .await;
    match waited {
        Some(m) => m,
        None => cluster.members().await,
    }
}
