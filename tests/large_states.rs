//! Games at their largest state cross node links without closing them: real `minotaur`
//! processes with a small frame limit (`CLUSTER_MAX_FRAME_BYTES`, 256 KiB: a few games at
//! their bounded size, about 67 KB each, exceed it together), many games filled to near
//! their maximum (the 1,024-id window of 64-byte ids), one node drained. Every batch between
//! nodes (the offers of the drain's waves, the replicas it hands over, the registry deltas)
//! must be cut to fit; a frame over the limit closes the link, which the other node reads as
//! this one going down.

mod support;

use std::time::Duration;

use harness::cluster::{Cluster, ClusterOptions};
use harness::wait::eventually;
use serde_json::{Value, json};
use support::MINOTAUR;

/// Games in the test: with three nodes the drained one hosts about 12, about 6 per target,
/// and holds the backups of about 12 others: with the drain's waves of 16 and handovers of 64
/// replicas, several would share one frame.
const GAMES: usize = 36;
/// Inputs per game past its two joins: the window of 1,024 ids is full, every id 64 bytes.
const INPUTS: usize = 1_030;
/// The frame limit of every node (the smallest the binary accepts).
const FRAME: &str = "262144";

async fn post(http: &reqwest::Client, url: &str, body: &Value) -> (u16, Value) {
    for _ in 0..50 {
        match http
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
        {
            Ok(r) => {
                let status = r.status().as_u16();
                let v = r.json().await.unwrap_or(Value::Null);
                if status != 503 {
                    return (status, v);
                }
            }
            Err(e) => eprintln!("POST {url}: {e}; again"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("POST {url} not answered");
}

async fn get(http: &reqwest::Client, url: &str) -> (u16, Value) {
    match http.get(url).send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.json().await.unwrap_or(Value::Null))
        }
        Err(_) => (0, Value::Null),
    }
}

fn input(player: &str, id: &str, kind: &str) -> Value {
    json!({ "player": player, "input_id": id, "action": { "type": kind } })
}

/// A new game filled to near its largest state: two players, then `INPUTS` turns ended with
/// 64-byte ids. Its code and its last `seq`.
async fn filled_game(http: reqwest::Client, url: String, n: usize) -> (String, u64) {
    let (status, g) = post(&http, &format!("{url}/api/games"), &json!({})).await;
    assert_eq!(status, 201, "{g}");
    let code = g["code"].as_str().expect("a code").to_string();
    let to = format!("{url}/api/games/{code}/input");
    for p in ["ann", "bob"] {
        let (status, v) = post(&http, &to, &input(p, &format!("join-{p}"), "join")).await;
        assert_eq!(status, 200, "{v}");
    }
    let mut seq = 0;
    for i in 0..INPUTS {
        let player = if i.is_multiple_of(2) { "ann" } else { "bob" };
        let id = format!("{n:0>8}{i:0>56}");
        assert_eq!(id.len(), 64);
        let (status, v) = post(&http, &to, &input(player, &id, "end_turn")).await;
        assert_eq!(status, 200, "game {code}, input {i}: {v}");
        seq = v["seq"].as_u64().expect("a seq");
    }
    (code, seq)
}

/// Lines of `log` saying a node other than `except` (a node name) went down (a link closed).
fn downs(log: &str, except: &str) -> Vec<String> {
    let except = format!("{except} ");
    log.lines()
        .filter(|l| l.contains("node down") && !l.contains(&except))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_of_games_at_their_largest_state_closes_no_link_and_loses_nothing() {
    let mut opts = ClusterOptions::new(MINOTAUR, 44, 3, "large_states_drain");
    opts.env
        .push(("CLUSTER_MAX_FRAME_BYTES".into(), FRAME.into()));
    // Filling the games loads the machine: a node starved of CPU for 2 s would be dropped for
    // missed heartbeats, a "node down" this test is not about (a refused frame closes the
    // link at once, whatever this timeout).
    opts.env
        .push(("CLUSTER_FAILURE_TIMEOUT_MS".into(), "10000".into()));
    // ractor_cluster's warning when it refuses a frame, which the default filter hides.
    opts.env.push((
        "RUST_LOG".into(),
        "info,ractor=warn,ractor_cluster=warn".into(),
    ));
    let logs = opts.log_dir.clone();
    let mut cluster = Cluster::start(opts).await.expect("a cluster");
    let urls = cluster.urls();
    let http = cluster.http().clone();

    // Games created through every node (placement spreads them), filled in parallel.
    let fills = (0..GAMES).map(|n| {
        let url = urls[n % urls.len()].clone();
        tokio::spawn(filled_game(http.clone(), url, n))
    });
    let mut games = Vec::new();
    for f in futures::future::join_all(fills).await {
        games.push(f.expect("a filled game"));
    }
    for (code, seq) in &games {
        assert_eq!(*seq, (INPUTS + 2) as u64, "{code}");
    }

    // The node hosting the most games drains and exits.
    let per_node = cluster.games_per_node().await;
    let (busiest, hosted) = per_node
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(n, c)| (n.clone(), *c))
        .expect("nodes");
    assert!(hosted >= 8, "{per_node:?}");
    let i = cluster
        .nodes
        .iter()
        .position(|n| harness::node::name(n.ip) == busiest)
        .expect("the busiest node");
    let leaving = busiest.clone();
    let leaving_log = logs.join(format!("{}.log", cluster.nodes[i].ip));
    let code = cluster.drain(i).await;
    assert_eq!(code, Some(0), "the drained node exits 0");

    // No link closed: nobody refused a frame; the survivors saw no node go down but the one
    // that left, and that one once (when it exited); it saw none go down while it drained.
    let log = std::fs::read_to_string(&leaving_log).expect("the drained node's log");
    let (draining, _) = log
        .split_once("drain complete")
        .unwrap_or_else(|| panic!("the drain completed:\n{log}"));
    assert!(!draining.contains("node down"), "{leaving}:\n{log}");
    assert!(
        !log.contains("exceeds configured limit"),
        "{leaving}:\n{log}"
    );
    for n in &cluster.nodes {
        let log = n.log();
        assert!(
            downs(&log, &leaving).is_empty(),
            "{}: {:?}",
            n.ip,
            downs(&log, &leaving)
        );
        let left = format!("node down node={leaving} ");
        assert_eq!(log.matches(&left).count(), 1, "{}:\n{log}", n.ip);
        assert!(
            !log.contains("exceeds configured limit") && !log.contains("framing error"),
            "{}:\n{log}",
            n.ip
        );
    }

    // Every game is on a survivor with every input it answered, and answers again (an answer
    // waits for its backup: the state was replicated there).
    let urls = cluster.urls();
    for (n, (code, seq)) in games.iter().enumerate() {
        let url = &urls[n % urls.len()];
        let g = eventually(
            &format!("game {code} served"),
            Duration::from_secs(20),
            || {
                let http = http.clone();
                let at = format!("{url}/api/games/{code}");
                async move {
                    let (status, g) = get(&http, &at).await;
                    (status == 200).then_some(g)
                }
            },
        )
        .await;
        assert_eq!(g["seq"].as_u64(), Some(*seq), "game {code}: {g}");
        let to = format!("{url}/api/games/{code}/input");
        let player = if INPUTS.is_multiple_of(2) {
            "ann"
        } else {
            "bob"
        };
        let (status, v) = post(&http, &to, &input(player, "after-the-drain", "end_turn")).await;
        assert_eq!(status, 200, "game {code}: {v}");
        assert_eq!(v["seq"].as_u64(), Some(seq + 1), "game {code}: {v}");
    }
    let owners = cluster.registries().await;
    for (code, _) in &games {
        for r in &owners {
            let host = r.get(code).map(String::as_str).unwrap_or("none");
            assert!(host != leaving && host != "none", "{code} on {host}");
        }
    }
    cluster.shutdown().await;
}
