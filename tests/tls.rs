//! Mutual TLS on node and console links (`CLUSTER_TLS_*`): real `minotaur` processes with
//! certificates made by `openssl` (`harness::tls`), a real packet capture (`tcpdump`).

mod support;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use harness::logs;
use harness::node::{Console, NodeProcess, cluster_view, names, node_env, rpc};
use harness::ports::{free_port, loopbacks};
use harness::process::ChildProcess;
use harness::tls::{Ca, NodeCert};
use harness::wait::{eventually, scaled};
use nix::sys::signal::Signal;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::MINOTAUR;

const COOKIE: &str = "tls-test-cookie-0123";

/// A node on `ip` dialling `hosts`, HTTP on a free port, with `cert` when given.
fn env_for(
    ip: IpAddr,
    port: u16,
    hosts: &[String],
    cert: Option<&NodeCert>,
) -> HashMap<String, String> {
    let mut env = node_env(ip, port, COOKIE);
    env.insert(
        "PORT".into(),
        free_port(&[ip]).expect("a free port").to_string(),
    );
    env.insert("CLUSTER_HOSTS".into(), hosts.join(","));
    if let Some(c) = cert {
        c.apply(&mut env);
    }
    env
}

/// Waits until every node lists exactly the others, and all of them as members.
async fn wait_for_mesh(http: &reqwest::Client, nodes: &[&NodeProcess]) {
    let all: Vec<IpAddr> = nodes.iter().map(|n| n.ip).collect();
    for n in nodes {
        let want: Vec<String> = names(&all).into_iter().filter(|x| *x != n.name).collect();
        eventually(
            &format!("{} lists {want:?} in /api/cluster", n.name),
            Duration::from_secs(20),
            || async {
                let (_, nodes, members) = cluster_view(http, &n.url()).await?;
                (nodes == want && members == names(&all)).then_some(())
            },
        )
        .await;
    }
}

async fn create_game(http: &reqwest::Client, url: &str) -> (String, String) {
    eventually("a game is created", Duration::from_secs(10), || async {
        let r = http.post(format!("{url}/api/games")).send().await.ok()?;
        if r.status() != StatusCode::CREATED {
            return None;
        }
        let v: Value = r.json().await.ok()?;
        Some((
            v["id"].as_str()?.to_string(),
            v["node"].as_str()?.to_string(),
        ))
    })
    .await
}

/// Joins `player` to game `id` through the node at `url`; the state it answers.
async fn join(http: &reqwest::Client, url: &str, id: &str, player: &str) -> Value {
    let r = http
        .post(format!("{url}/api/games/{id}/input"))
        .json(&json!({"player": player, "input_id": format!("{player}-1"), "action": {"type": "join"}}))
        .send()
        .await
        .expect("POST input");
    assert_eq!(r.status(), StatusCode::OK, "join {player}");
    r.json().await.expect("json state")
}

/// Creates a game and plays it through a node that does not host it (so every input crosses
/// a node link); the game's id and its host's name.
async fn play_across_nodes(
    http: &reqwest::Client,
    nodes: &[&NodeProcess],
    players: &[&str],
) -> (String, String) {
    let (id, owner) = create_game(http, &nodes[0].url()).await;
    let via = nodes
        .iter()
        .find(|n| n.name != owner)
        .expect("a node that does not host the game");
    for p in players {
        let state = join(http, &via.url(), &id, p).await;
        assert_eq!(state["node"], owner.as_str(), "{state}");
        assert!(state.to_string().contains(p), "{p} is in {state}");
    }
    (id, owner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_cluster_meshes_plays_and_refuses_another_ca_a_plain_node_and_a_plain_console() {
    let ips = loopbacks(201, 5);
    let port = free_port(&ips).expect("a free port");
    let logs = logs::test_dir("tls_mesh");
    let ca = Ca::new(&logs.join("ca"), "minotaur test CA");
    let hosts = names(&ips[..3]);
    let nodes: Vec<NodeProcess> = ips[..3]
        .iter()
        .enumerate()
        .map(|(i, ip)| {
            let cert = ca.node(&format!("node{i}"));
            NodeProcess::start(
                MINOTAUR,
                *ip,
                env_for(*ip, port, &hosts, Some(&cert)),
                &logs,
            )
            .expect("start a node")
        })
        .collect();
    let http = reqwest::Client::new();
    let three: Vec<&NodeProcess> = nodes.iter().collect();
    wait_for_mesh(&http, &three).await;
    play_across_nodes(&http, &three, &["alice", "bob"]).await;

    // The console attaches over TLS with the node's variables, and not without them.
    let out = nodes[0].rpc(&["members"]).await;
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    for n in &nodes {
        assert!(text.contains(&n.name), "{text}");
    }
    let mut plain = nodes[0].env.clone();
    for v in [
        "CLUSTER_TLS_CERT_FILE",
        "CLUSTER_TLS_KEY_FILE",
        "CLUSTER_TLS_CA_FILE",
    ] {
        plain.remove(v);
    }
    let out = rpc(MINOTAUR, &plain, Some(&nodes[0].name), &["members"]).await;
    assert!(!out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("closed the connection during the handshake"),
        "{err}"
    );
    assert!(err.contains("does it require TLS?"), "{err}");

    // A node with a certificate of another CA (and the right cookie) is refused both ways.
    let other_ca = Ca::new(&logs.join("other-ca"), "another CA");
    let stranger_cert = other_ca.node("stranger");
    let stranger = NodeProcess::start(
        MINOTAUR,
        ips[3],
        env_for(ips[3], port, &hosts, Some(&stranger_cert)),
        &logs,
    )
    .expect("start the stranger");
    eventually(
        "the stranger logs why it cannot join",
        Duration::from_secs(20),
        || async {
            let log = stranger.log();
            hosts
                .iter()
                .all(|h| {
                    log.lines().any(|l| {
                        l.contains(h.split('@').nth(1).unwrap_or(h))
                            && l.contains(
                                "TLS handshake failed: invalid peer certificate: UnknownIssuer",
                            )
                    })
                })
                .then_some(())
        },
    )
    .await;
    eventually(
        "the cluster logs the refused handshake",
        Duration::from_secs(20),
        || async {
            nodes[0]
                .log()
                .lines()
                .any(|l| {
                    l.contains("TLS handshake refused")
                        && l.contains("received fatal alert: UnknownCA")
                })
                .then_some(())
        },
    )
    .await;

    // A node without TLS (same cookie) cannot join either.
    let plain_node =
        NodeProcess::start(MINOTAUR, ips[4], env_for(ips[4], port, &hosts, None), &logs)
            .expect("start the plain node");
    eventually(
        "the cluster refuses the plain node's handshakes",
        Duration::from_secs(20),
        || async {
            let refused = nodes.iter().all(|n| {
                n.log()
                    .contains("error=received corrupt message of type InvalidContentType")
            });
            refused.then_some(())
        },
    )
    .await;
    for n in &nodes {
        let want: Vec<String> = hosts.iter().filter(|h| **h != n.name).cloned().collect();
        let (_, listed, members) = cluster_view(&http, &n.url()).await.expect("/api/cluster");
        assert_eq!(listed, want, "{}", n.log());
        assert_eq!(members, hosts, "{}", n.log());
    }
    for outsider in [&stranger, &plain_node] {
        let (_, listed, _) = cluster_view(&http, &outsider.url())
            .await
            .expect("/api/cluster");
        assert!(
            listed.is_empty(),
            "{} is connected to {listed:?}",
            outsider.name
        );
    }
}

/// Variables set, texts the error must say, variables it must not name.
type Case<'a> = (Vec<(&'a str, String)>, Vec<String>, Vec<&'a str>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tls_variable_with_a_bad_value_exits_2_naming_it() {
    let ip = loopbacks(206, 1)[0];
    let logs = logs::test_dir("tls_bad_vars");
    let ca = Ca::new(&logs.join("ca"), "minotaur test CA");
    let good = ca.node("node");
    let other = ca.node("other");
    let garbage = logs.join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").expect("write");
    let missing = logs.join("missing.pem");
    let p = |p: &Path| p.display().to_string();
    let (cert, key, caf) = (p(&good.cert), p(&good.key), p(&good.ca));
    let cases: Vec<Case<'_>> = vec![
        (
            vec![("CLUSTER_TLS_CERT_FILE", cert.clone())],
            vec![
                "CLUSTER_TLS_KEY_FILE: not set, but CLUSTER_TLS_CERT_FILE is".into(),
                "CLUSTER_TLS_CA_FILE: not set, but CLUSTER_TLS_CERT_FILE is".into(),
            ],
            vec!["CLUSTER_TLS_CERT_FILE:"],
        ),
        (
            vec![("CLUSTER_TLS_CERT_FILE", cert.clone()), ("CLUSTER_TLS_CA_FILE", caf.clone())],
            vec!["CLUSTER_TLS_KEY_FILE: not set, but CLUSTER_TLS_CERT_FILE and CLUSTER_TLS_CA_FILE are".into()],
            vec!["CLUSTER_TLS_CERT_FILE:", "CLUSTER_TLS_CA_FILE:"],
        ),
        (
            vec![("CLUSTER_TLS_CERT_FILE", cert.clone()), ("CLUSTER_TLS_KEY_FILE", p(&missing)), ("CLUSTER_TLS_CA_FILE", caf.clone())],
            vec![format!("CLUSTER_TLS_KEY_FILE: cannot read `{}`: No such file or directory", p(&missing))],
            vec!["CLUSTER_TLS_CERT_FILE:", "CLUSTER_TLS_CA_FILE:"],
        ),
        (
            vec![("CLUSTER_TLS_CERT_FILE", p(&garbage)), ("CLUSTER_TLS_KEY_FILE", key.clone()), ("CLUSTER_TLS_CA_FILE", caf.clone())],
            vec![format!("CLUSTER_TLS_CERT_FILE: `{}`: no `-----BEGIN CERTIFICATE-----` block in the file", p(&garbage))],
            vec!["CLUSTER_TLS_KEY_FILE:", "CLUSTER_TLS_CA_FILE:"],
        ),
        (
            vec![("CLUSTER_TLS_CERT_FILE", cert.clone()), ("CLUSTER_TLS_KEY_FILE", p(&garbage)), ("CLUSTER_TLS_CA_FILE", caf.clone())],
            vec![format!("CLUSTER_TLS_KEY_FILE: `{}`: no PEM private key in the file", p(&garbage))],
            vec!["CLUSTER_TLS_CERT_FILE:", "CLUSTER_TLS_CA_FILE:"],
        ),
        (
            vec![("CLUSTER_TLS_CERT_FILE", cert.clone()), ("CLUSTER_TLS_KEY_FILE", p(&other.key)), ("CLUSTER_TLS_CA_FILE", caf.clone())],
            vec![format!("CLUSTER_TLS_KEY_FILE: `{}`: the private key does not match the certificate", p(&other.key))],
            vec!["CLUSTER_TLS_CERT_FILE:", "CLUSTER_TLS_CA_FILE:"],
        ),
        (
            vec![("CLUSTER_TLS_CERT_FILE", cert.clone()), ("CLUSTER_TLS_KEY_FILE", key.clone()), ("CLUSTER_TLS_CA_FILE", key.clone())],
            vec![format!("CLUSTER_TLS_CA_FILE: `{key}`: no `-----BEGIN CERTIFICATE-----` block in the file")],
            vec!["CLUSTER_TLS_CERT_FILE:", "CLUSTER_TLS_KEY_FILE:"],
        ),
    ];
    for (i, (vars, said, unsaid)) in cases.into_iter().enumerate() {
        let mut env = node_env(ip, 9000, COOKIE);
        env.extend(vars.iter().map(|(k, v)| (k.to_string(), v.clone())));
        // A log of its own per case (a node's log is appended to).
        let case_logs = logs.join(format!("case{i}"));
        std::fs::create_dir_all(&case_logs).expect("log dir");
        let mut p = NodeProcess::start(MINOTAUR, ip, env, &case_logs).expect("start a node");
        let code = p.wait(scaled(Duration::from_secs(10))).await;
        let err = p.log();
        assert_eq!(code, Some(2), "{vars:?}: {err}");
        for s in &said {
            assert!(
                err.contains(s.as_str()),
                "{vars:?}: expected `{s}` in:\n{err}"
            );
        }
        for s in &unsaid {
            assert!(!err.contains(s), "{vars:?}: `{s}` is fine, but:\n{err}");
        }
    }
}

/// Plays a game across two nodes on loopback net `net` (with mutual TLS when `tls`) while
/// `tcpdump` captures their cluster port; the capture, the game's id and a player's name.
async fn capture_play(net: u8, tls: bool) -> (Vec<u8>, String, String) {
    let ips = loopbacks(net, 2);
    let port = free_port(&ips).expect("a free port");
    let logs = logs::test_dir(&format!("tls_capture_{tls}"));
    let ca = Ca::new(&logs.join("ca"), "minotaur test CA");
    let hosts = names(&ips);
    let pcap = logs.join("cluster.pcap");
    let tcpdump_log = logs.join("tcpdump.log");
    let mut tcpdump = ChildProcess::spawn(
        Command::new("tcpdump")
            .args(["-i", "lo", "--immediate-mode", "-U", "-n", "-w"])
            .arg(&pcap)
            .args(["tcp", "port", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&tcpdump_log).expect("log file")),
    )
    .expect("run tcpdump (install the `tcpdump` package; capturing needs root or CAP_NET_RAW)");
    eventually("tcpdump listens", Duration::from_secs(10), || async {
        std::fs::read_to_string(&tcpdump_log)
            .ok()?
            .contains("listening on lo")
            .then_some(())
    })
    .await;
    let nodes: Vec<NodeProcess> = ips
        .iter()
        .enumerate()
        .map(|(i, ip)| {
            let cert = tls.then(|| ca.node(&format!("node{i}")));
            NodeProcess::start(
                MINOTAUR,
                *ip,
                env_for(*ip, port, &hosts, cert.as_ref()),
                &logs,
            )
            .expect("start a node")
        })
        .collect();
    let http = reqwest::Client::new();
    let both: Vec<&NodeProcess> = nodes.iter().collect();
    wait_for_mesh(&http, &both).await;
    let player = "zq-secret-player";
    let (id, _) = play_across_nodes(&http, &both, &[player]).await;
    // Packets after the play (heartbeats every 500 ms) in the file: the play's are there too.
    let size = || std::fs::metadata(&pcap).map(|m| m.len()).unwrap_or(0);
    let after_play = size();
    eventually(
        "the capture goes on after the play",
        Duration::from_secs(10),
        || async { (size() > after_play + 1000).then_some(()) },
    )
    .await;
    tcpdump.signal(Signal::SIGINT);
    let code = tcpdump.wait(scaled(Duration::from_secs(10))).await;
    assert_eq!(
        code,
        Some(0),
        "tcpdump: {:?}",
        std::fs::read_to_string(&tcpdump_log)
    );
    let bytes = std::fs::read(&pcap).expect("read the capture");
    (bytes, id, player.to_string())
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capture_of_the_cluster_port_shows_game_codes_in_clear_only_without_tls() {
    let (bytes, id, player) = capture_play(207, false).await;
    assert!(
        contains(&bytes, &id),
        "plain TCP: the game code {id} is in the capture"
    );
    assert!(
        contains(&bytes, &player),
        "plain TCP: the player {player} is in the capture"
    );

    let (bytes, id, player) = capture_play(208, true).await;
    assert!(
        bytes.len() > 4_000,
        "the TLS capture holds the cluster's traffic ({} bytes)",
        bytes.len()
    );
    assert!(
        !contains(&bytes, &id),
        "TLS: the game code {id} is in the capture"
    );
    assert!(
        !contains(&bytes, &player),
        "TLS: the player {player} is in the capture"
    );
    assert!(
        !contains(&bytes, COOKIE),
        "TLS: the cookie is in the capture"
    );
}
