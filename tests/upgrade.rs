//! Upgrades between real releases. The previous release runs as its own build (the commit
//! `rel/previous-release` names, built from its sources: `MINOTAUR_PREVIOUS_BIN`, else
//! `rel/build-previous.sh`), this release as the binary under test, side by side in one
//! cluster of real processes behind a real DNS server, with players writing the whole time:
//! - a rolling update previous → this release, then a rollback this release → previous;
//! - a cluster that stays mixed while it serves creations, inputs, games played to their end
//!   and removed, a drain and a SIGKILL;
//! - a node of this release at the door of a cluster it cannot speak with (the build of two
//!   weeks before release 0.1.0, 367b6ad): it refuses to join, exit 3, naming both sides'
//!   versions, and the cluster keeps serving.
//!
//! Every run checks every game and every acknowledged input (present once, nothing applied
//! twice, no input left unanswered, one node answering for a game at a time) and prints the
//! numbers the README's "Upgrading" section quotes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use harness::cluster::{Cluster, ClusterOptions};
use harness::load::{AssertIntegrity, Integrity, Load, LoadResult, verify};
use harness::node::{get_json, metric_sum};
use harness::releases::{binary_at, previous_binary, previous_version};
use harness::wait::{POLL_INTERVAL, poll, scaled};
use serde_json::{Value, json};
use support::MINOTAUR;

/// This release's app version.
const THIS_VERSION: &str = env!("CARGO_PKG_VERSION");
/// The build of two weeks before release 0.1.0: it speaks horde protocol 1, which no release
/// speaks any more (the issue that asked for release upgrades found it could not be upgraded).
const BEFORE_RELEASES: &str = "367b6ad";

async fn previous() -> PathBuf {
    tokio::task::spawn_blocking(previous_binary).await.unwrap()
}

/// What `GET /api/cluster` of `url` says, once it answers.
async fn cluster_json(cluster: &Cluster, url: &str) -> Value {
    poll(scaled(Duration::from_secs(10)), POLL_INTERVAL, || async {
        get_json(cluster.http(), &format!("{url}/api/cluster")).await
    })
    .await
    .unwrap_or_else(|| panic!("{url} does not answer /api/cluster"))
}

/// Waits until every node of this release (those that report it) uses `protocol`, and
/// returns what each node reported (`None`: a node of the previous release, which does not).
async fn wait_protocol(cluster: &Cluster, protocol: u64) -> BTreeMap<String, Option<u64>> {
    let urls = cluster.urls();
    let seen = poll(scaled(Duration::from_secs(15)), POLL_INTERVAL, || async {
        let mut all = BTreeMap::new();
        for url in &urls {
            let v = get_json(cluster.http(), &format!("{url}/api/cluster")).await?;
            let p = v["protocol"].as_u64();
            if p.is_some_and(|p| p != protocol) {
                return None;
            }
            all.insert(v["node"].as_str()?.to_string(), p);
        }
        Some(all)
    })
    .await;
    match seen {
        Some(s) => s,
        None => {
            let mut now = BTreeMap::new();
            for url in &urls {
                now.insert(
                    url.clone(),
                    cluster_json(cluster, url).await["protocol"].clone(),
                );
            }
            panic!("not every node of this release uses protocol {protocol}: {now:?}");
        }
    }
}

/// Versions of the members alive, as the first node sees them, once there are `n`.
async fn wait_versions(
    cluster: &Cluster,
    n: usize,
    want: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let url = cluster.urls()[0].clone();
    let got = poll(scaled(Duration::from_secs(15)), POLL_INTERVAL, || async {
        let v = get_json(cluster.http(), &format!("{url}/api/cluster")).await?;
        let mut versions: Vec<String> = v["members"]
            .as_array()?
            .iter()
            .filter(|m| m["status"] == "alive")
            .filter_map(|m| m["version"].as_str().map(String::from))
            .collect();
        versions.sort();
        (versions.len() == n && want(&versions)).then_some(versions)
    })
    .await;
    match got {
        Some(v) => v,
        None => panic!(
            "members never settled: {}",
            cluster_json(cluster, &url).await
        ),
    }
}

/// The app version of the node at `url` (the first member it lists is itself).
async fn version_of(cluster: &Cluster, url: &str) -> String {
    cluster_json(cluster, url).await["members"][0]["version"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Every game of `load` as its players last saw it: its `(round, seq)`, its `seq` equal to
/// the inputs acknowledged (every one applied once), both players in it, alive, and it still
/// active. Returns the number of games checked.
async fn check_content(cluster: &Cluster, load: &LoadResult) -> usize {
    let urls = cluster.urls();
    for (i, game) in load.games.iter().enumerate() {
        let url = format!("{}/api/games/{}", urls[i % urls.len()], game.code);
        let g = poll(scaled(Duration::from_secs(10)), POLL_INTERVAL, || async {
            get_json(cluster.http(), &url)
                .await
                .filter(|g| g["seq"].is_u64())
        })
        .await
        .unwrap_or_else(|| panic!("{url} does not answer"));
        let now = (g["round"].as_u64().unwrap(), g["seq"].as_u64().unwrap());
        assert_eq!(
            now, game.last_seen,
            "{}: changed behind its players' backs: {g}",
            game.code
        );
        assert_eq!(
            now.1, game.acked,
            "{}: seq is not the inputs acknowledged: {g}",
            game.code
        );
        let players: Vec<(&str, bool)> = g["players"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["name"].as_str().unwrap(), p["alive"] == true))
            .collect();
        assert_eq!(
            players,
            [("ann", true), ("bob", true)],
            "{}: {g}",
            game.code
        );
        assert_eq!(g["status"], "active", "{}: {g}", game.code);
    }
    load.games.len()
}

/// The integrity of a run, asserted: nothing lost, nothing applied twice, no input left
/// unanswered, no game answered by two nodes in turn.
async fn assert_integrity(cluster: &Cluster, what: &str, load: &LoadResult) -> Integrity {
    let integrity = verify(cluster.http(), &cluster.urls(), load).await;
    let pauses = load.pauses();
    eprintln!(
        "UPGRADE REPORT {what}: games {} lost {} | inputs acknowledged {} lost {} applied twice {} unanswered {} | games modelled {} unlike their model {} | acknowledged inputs probed {} forgotten {} | pause p50 {:.1} ms p99 {:.1} ms max {:.1} ms | retried requests {}",
        integrity.games,
        integrity.games_lost,
        integrity.inputs_acked,
        integrity.inputs_lost,
        integrity.inputs_duplicated,
        integrity.inputs_unanswered,
        integrity.games_modelled,
        integrity.games_unlike_model,
        integrity.inputs_acked_probed,
        integrity.inputs_acked_lost,
        pauses.p50_ms,
        pauses.p99_ms,
        pauses.max_ms,
        load.failed_attempts,
    );
    integrity.assert_nothing_lost();
    assert_eq!(load.regressions, 0, "{what}: a state went back");
    assert!(
        load.interleaved().is_empty(),
        "{what}: two nodes answered in turn: {:?}",
        load.interleaved()
    );
    integrity
}

/// Acknowledged inputs after the joins (the traffic that proves something), at least `n`.
fn assert_played(what: &str, load: &LoadResult, n: usize) {
    // (Joins are not counted: `answers` holds the inputs after them.)
    assert!(
        load.answers.len() >= n,
        "{what}: too little play to prove anything ({} inputs after the joins)",
        load.answers.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_previous_release_rolls_forward_to_this_one_and_back_with_nothing_lost() {
    let previous = previous().await;
    let this = PathBuf::from(MINOTAUR);
    let old = previous_version();
    let mut cluster = Cluster::start(ClusterOptions::new(&previous, 131, 3, "upgrade_roll"))
        .await
        .unwrap();
    wait_versions(&cluster, 3, |v| v.iter().all(|v| *v == old)).await;

    // Forward: every node replaced by one of this release, start-first, players writing.
    let load = Load::start(cluster.http(), 150, 30, 300.0, cluster.targets())
        .await
        .unwrap();
    load.measure(true);
    for step in 1..=3 {
        assert!(
            load.wait_for_play(300, scaled(Duration::from_secs(30)))
                .await
        );
        let (took, code) = cluster.replace(0, &this).await.unwrap();
        assert_eq!(
            code,
            Some(0),
            "a node of the previous release drains and exits 0"
        );
        eprintln!("forward: node {step} of 3 replaced in {took:?}");
        if step < 3 {
            // Mixed: this release speaks the previous one's protocol.
            let seen = wait_protocol(&cluster, 2).await;
            assert_eq!(
                seen.values().filter(|p| p.is_some()).count(),
                step,
                "{seen:?}"
            );
        }
    }
    // Only this release left: the protocol in use rises to this release's.
    let seen = wait_protocol(&cluster, u64::from(horde::protocol::PROTOCOL)).await;
    assert!(seen.values().all(Option::is_some), "{seen:?}");
    wait_versions(&cluster, 3, |v| v.iter().all(|v| v == THIS_VERSION)).await;
    assert!(
        load.wait_for_play(300, scaled(Duration::from_secs(30)))
            .await
    );
    let forward = load.stop().await;
    assert_integrity(&cluster, "previous -> this release", &forward).await;
    assert_played("forward", &forward, 1000);
    check_content(&cluster, &forward).await;

    // Back: every node replaced by one of the previous release (`docker service rollback`),
    // with new games being played; the games of the forward run must stay as they were.
    let load = Load::start(cluster.http(), 150, 30, 300.0, cluster.targets())
        .await
        .unwrap();
    load.measure(true);
    for step in 1..=3 {
        assert!(
            load.wait_for_play(300, scaled(Duration::from_secs(30)))
                .await
        );
        let (took, code) = cluster.replace(0, &previous).await.unwrap();
        assert_eq!(code, Some(0), "a node of this release drains and exits 0");
        eprintln!("rollback: node {step} of 3 replaced in {took:?}");
        if step < 3 {
            // A node of the previous release joined: the protocol falls back at once.
            let seen = wait_protocol(&cluster, 2).await;
            assert_eq!(
                seen.values().filter(|p| p.is_some()).count(),
                3 - step,
                "{seen:?}"
            );
        }
    }
    wait_versions(&cluster, 3, |v| v.iter().all(|v| *v == old)).await;
    assert!(
        load.wait_for_play(300, scaled(Duration::from_secs(30)))
            .await
    );
    let back = load.stop().await;
    assert_integrity(&cluster, "this release -> previous (rollback)", &back).await;
    assert_played("rollback", &back, 1000);
    check_content(&cluster, &back).await;
    assert_eq!(
        check_content(&cluster, &forward).await,
        150,
        "the games of the forward run are all there after the rollback"
    );
    cluster.shutdown().await;
}

/// `metric` summed over the nodes of this release (the previous one may not export it).
async fn metric_on(cluster: &Cluster, url: &str, metric: &str) -> f64 {
    let text = cluster
        .http()
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    metric_sum(&text, metric)
}

/// Sends one input to `url` (a game's input endpoint); its status and answer.
async fn input(cluster: &Cluster, url: &str, body: Value) -> (u16, Value) {
    let r = cluster.http().post(url).json(&body).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json::<Value>().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_mixed_cluster_serves_everything_through_a_drain_and_a_kill() {
    let previous = previous().await;
    let this = PathBuf::from(MINOTAUR);
    let old = previous_version();
    let mut opts = ClusterOptions::new(&previous, 132, 3, "upgrade_mixed");
    // Games played to their end are removed 1.5 s later (a tombstone on every node, collected
    // once every node holds it and 30 s passed).
    opts.env.push(("GAME_RETENTION_MS".into(), "1500".into()));
    let mut cluster = Cluster::start(opts).await.unwrap();

    // Games created on the previous release, as a cluster has them when its update starts;
    // 12 of them with both players in, to be played to their end in the mixed cluster.
    let load = Load::start(cluster.http(), 120, 24, 240.0, cluster.targets())
        .await
        .unwrap();
    load.measure(true);
    let urls = cluster.urls();
    let mut ending = Vec::new();
    for n in 0..12 {
        let url = &urls[n % urls.len()];
        let created: Value = cluster
            .http()
            .post(format!("{url}/api/games"))
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let code = created["code"].as_str().unwrap().to_string();
        for p in ["ann", "bob"] {
            let body = json!({"player": p, "input_id": format!("end-{n}-{p}"), "action": {"type": "join"}});
            let (s, v) = input(&cluster, &format!("{url}/api/games/{code}/input"), body).await;
            assert_eq!(s, 200, "{v}");
        }
        ending.push(code);
    }
    assert!(
        load.wait_for_play(300, scaled(Duration::from_secs(30)))
            .await
    );

    // The update starts: two of each release (one old node replaced, one new node added).
    cluster.replace(0, &this).await.unwrap();
    cluster.add(&this).await.unwrap();
    wait_versions(&cluster, 4, |v| {
        v.iter().filter(|v| **v == old).count() == 2
            && v.iter().filter(|v| *v == THIS_VERSION).count() == 2
    })
    .await;
    wait_protocol(&cluster, 2).await;
    let urls = cluster.urls();
    let (mut old_urls, mut new_urls) = (Vec::new(), Vec::new());
    for url in &urls {
        if version_of(&cluster, url).await == old {
            old_urls.push(url.clone());
        } else {
            new_urls.push(url.clone());
        }
    }
    assert_eq!((old_urls.len(), new_urls.len()), (2, 2), "{urls:?}");
    assert!(
        load.wait_for_play(300, scaled(Duration::from_secs(30)))
            .await
    );

    // `leave` (the newest action) through nodes of both releases ends the games; they are
    // removed from every node, and their tombstones collected on every node.
    for (n, code) in ending.iter().enumerate() {
        let url = if n % 2 == 0 {
            &old_urls[n % 4 / 2]
        } else {
            &new_urls[n % 4 / 2]
        };
        let body = json!({"player": "bob", "input_id": format!("end-{n}-leave"), "action": {"type": "leave"}});
        let (s, v) = input(&cluster, &format!("{url}/api/games/{code}/input"), body).await;
        assert_eq!(
            (s, &v["status"], &v["winner"]),
            (200, &json!("over"), &json!("ann")),
            "{v}"
        );
    }
    let removed = poll(scaled(Duration::from_secs(20)), POLL_INTERVAL, || async {
        for url in &urls {
            for code in &ending {
                let r = cluster
                    .http()
                    .get(format!("{url}/api/games/{code}"))
                    .send()
                    .await
                    .ok()?;
                if r.status() != 404 {
                    return None;
                }
            }
        }
        Some(())
    })
    .await;
    assert!(
        removed.is_some(),
        "games played to their end were not removed from every node"
    );
    for url in &urls {
        let collected = poll(
            scaled(Duration::from_secs(90)),
            Duration::from_millis(250),
            || async {
                (metric_on(&cluster, url, "minotaur_registry_tombstones").await == 0.0)
                    .then_some(())
            },
        )
        .await;
        assert!(
            collected.is_some(),
            "{url} ({}) keeps tombstones",
            version_of(&cluster, url).await
        );
    }

    // A drain of a node of the previous release (its games move to the others), then a
    // SIGKILL of one of this release (its games restart from their backups, some of which
    // are on the node of the previous release), then a node of this release joins.
    let drained = cluster
        .nodes
        .iter()
        .position(|n| old_urls.contains(&n.url()))
        .unwrap();
    assert_eq!(
        cluster.drain(drained).await,
        Some(0),
        "the drained node exits 0"
    );
    assert!(
        load.wait_for_play(200, scaled(Duration::from_secs(30)))
            .await
    );
    let killed = cluster
        .nodes
        .iter()
        .position(|n| new_urls.contains(&n.url()))
        .unwrap();
    let _gone = cluster.kill(killed);
    assert!(
        load.wait_for_play(200, scaled(Duration::from_secs(30)))
            .await
    );
    cluster.add(&this).await.unwrap();
    wait_protocol(&cluster, 2).await;
    assert!(
        load.wait_for_play(200, scaled(Duration::from_secs(30)))
            .await
    );
    let result = load.stop().await;
    assert_integrity(&cluster, "mixed cluster (removals, drain, kill)", &result).await;
    check_content(&cluster, &result).await;

    // Nothing the previous release sent was undecodable to this one.
    for url in cluster.urls() {
        if cluster_json(&cluster, &url).await["protocol"].is_u64() {
            let n = metric_on(&cluster, &url, "minotaur_undecodable_messages_total").await;
            assert_eq!(n, 0.0, "{url}");
        }
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_refuses_at_the_door_of_a_cluster_it_cannot_speak_with() {
    let foreign = tokio::task::spawn_blocking(|| binary_at(BEFORE_RELEASES))
        .await
        .unwrap();
    let this = PathBuf::from(MINOTAUR);
    let mut cluster = Cluster::start(ClusterOptions::new(&foreign, 133, 3, "upgrade_door"))
        .await
        .unwrap();
    let theirs = version_of(&cluster, &cluster.urls()[0]).await;
    let load = Load::start(cluster.http(), 40, 8, 80.0, cluster.targets())
        .await
        .unwrap();
    let door = cluster.add_unready(&this).unwrap();
    let code = cluster.nodes[door]
        .wait(scaled(Duration::from_secs(30)))
        .await;
    let log = cluster.nodes[door].log();
    let refused = cluster.remove(door);
    drop(refused);
    assert_eq!(
        code,
        Some(3),
        "exit code of a node refused at the door; its log:\n{log}"
    );
    let error = log
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no `error:` line:\n{log}"));
    eprintln!("REFUSED AT THE DOOR: {error}");
    for (what, text) in [
        ("this node's version", THIS_VERSION.to_string()),
        (
            "this node's protocols",
            horde::protocol::Protocols::THIS.to_string(),
        ),
        ("the member's version", theirs.clone()),
        ("the member's protocol", "protocol 1".to_string()),
        ("what to do", "upgrade the cluster to a release".to_string()),
    ] {
        assert!(
            error.contains(&text),
            "the error does not name {what} (`{text}`): {error}"
        );
    }
    // The cluster kept serving, and never counted the refused node.
    assert!(
        load.wait_for_play(200, scaled(Duration::from_secs(30)))
            .await,
        "the cluster stopped serving after the refusal"
    );
    let result = load.stop().await;
    assert_integrity(
        &cluster,
        "a cluster with a node refused at the door",
        &result,
    )
    .await;
    let members = cluster.members().await;
    assert_eq!(members.len(), 3, "{members:?}");
    assert!(
        members.values().all(|(s, v)| s == "alive" && *v == theirs),
        "{members:?}"
    );
    cluster.shutdown().await;
}
