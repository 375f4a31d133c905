//! The client side of the Swarm scenario (`tests/swarm/run.sh` deploys the stack with the
//! previous release's image, then runs this with `--ignored`): play games against the stack's
//! tasks while `docker service update` rolls this release out and then while `docker service
//! rollback` brings the previous one back; check that after the update every member runs this
//! release and uses its protocol and every game answers, and at the end that every game
//! survived with its state, every acknowledged input was applied once, and only members of
//! the previous release are left.
//!
//! Clients play through the service's published port, the routing mesh, when it answers. On
//! an engine without IPVS (this one: the published port answers "Connection refused" while
//! every task is healthy) they reach the tasks the way a load balancer in front of the service
//! would: on the tasks' `docker_gwbridge` addresses (reachable from the host), listed every
//! 200 ms and health-checked every 100 ms, so a task leaves the rotation as soon as Swarm stops
//! it or it reports draining. The report says which path was used.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use harness::load::{AssertIntegrity, ExpectPlay, Load, verify};
use harness::wait::eventually;
use serde_json::Value;
use tokio::time::Instant;

/// Container id -> when the lister first saw it, and when it left the running set.
type Seen = BTreeMap<String, (Instant, Option<Instant>)>;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run tests/swarm/run.sh"))
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("run docker");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Containers of the service's tasks that Swarm wants running, with their docker_gwbridge
/// addresses. A task Swarm is stopping (desired state shutdown) is left out at once, as the
/// routing mesh drops it from the service's load balancer about 2 s before its SIGTERM.
fn tasks(service: &str) -> BTreeMap<String, String> {
    let wanted: std::collections::HashSet<String> = docker(&[
        "service",
        "ps",
        "-q",
        "--no-trunc",
        "--filter",
        "desired-state=running",
        service,
    ])
    .lines()
    .map(str::to_string)
    .collect();
    let ids: Vec<String> = docker(&[
        "ps",
        "--no-trunc",
        "--filter",
        &format!("name={service}."),
        "--format",
        "{{.ID}} {{.Label \"com.docker.swarm.task.id\"}}",
    ])
    .lines()
    .filter_map(|l| l.split_once(' '))
    .filter(|(_, task)| wanted.contains(*task))
    .map(|(id, _)| id.to_string())
    .collect();
    let bridge = docker(&[
        "network",
        "inspect",
        "docker_gwbridge",
        "--format",
        "{{range $id, $c := .Containers}}{{$id}} {{$c.IPv4Address}}\n{{end}}",
    ]);
    let mut out = BTreeMap::new();
    for line in bridge.lines() {
        if let Some((id, addr)) = line.split_once(' ')
            && ids.iter().any(|i| i == id)
        {
            out.insert(
                id.to_string(),
                addr.split('/').next().unwrap_or("").to_string(),
            );
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the Swarm stack that tests/swarm/run.sh deploys"]
async fn a_swarm_rolling_update_to_this_release_and_its_rollback_keep_every_game() {
    let service = env("MINOTAUR_SWARM_SERVICE");
    let new_image = env("MINOTAUR_SWARM_NEW_IMAGE");
    let new_version = env("MINOTAUR_SWARM_NEW_VERSION");
    let old_version = env("MINOTAUR_SWARM_OLD_VERSION");
    let games: usize = std::env::var("MINOTAUR_SWARM_GAMES")
        .ok()
        .and_then(|g| g.parse().ok())
        .unwrap_or(300);
    // No pooled connections: task addresses are reused by later tasks, and a pooled
    // connection to a removed container's address hangs instead of failing.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();

    // The load balancer: the service's containers (listed every 200 ms), health-checked every
    // 100 ms; also a log of when tasks appear and go.
    let targets = Arc::new(RwLock::new(Vec::<String>::new()));
    let candidates = Arc::new(RwLock::new(BTreeMap::<String, String>::new()));
    let seen: Arc<RwLock<Seen>> = Arc::default();
    let via_published = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let lister = {
        let (candidates, seen, service) = (candidates.clone(), seen.clone(), service.clone());
        tokio::spawn(async move {
            loop {
                let now = Instant::now();
                let s = service.clone();
                let current = tokio::task::spawn_blocking(move || tasks(&s))
                    .await
                    .unwrap();
                {
                    let mut seen = seen.write().unwrap();
                    for id in current.keys() {
                        seen.entry(id.clone()).or_insert((now, None));
                    }
                    for (id, (_, gone)) in seen.iter_mut() {
                        if gone.is_none() && !current.contains_key(id) {
                            *gone = Some(now);
                        }
                    }
                }
                {
                    let mut c = candidates.write().unwrap();
                    if *c != current {
                        let list: Vec<_> = current.iter().map(|(id, ip)| (&id[..12], ip)).collect();
                        eprintln!("[{:>6} ms] tasks: {list:?}", t0.elapsed().as_millis());
                    }
                    *c = current;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let prober = {
        let (targets, candidates, http, fixed) = (
            targets.clone(),
            candidates.clone(),
            http.clone(),
            via_published.clone(),
        );
        tokio::spawn(async move {
            loop {
                let ips: Vec<String> = candidates.read().unwrap().values().cloned().collect();
                let probes = ips.into_iter().map(|ip| {
                    let http = http.clone();
                    async move {
                        let url = format!("http://{ip}:4000");
                        let ok = matches!(
                            http.get(format!("{url}/healthz")).timeout(Duration::from_millis(300)).send().await,
                            Ok(r) if r.status().is_success()
                        );
                        ok.then_some(url)
                    }
                });
                let healthy: Vec<String> = futures::future::join_all(probes)
                    .await
                    .into_iter()
                    .flatten()
                    .collect();
                if !fixed.load(Ordering::Relaxed) {
                    let mut t = targets.write().unwrap();
                    if *t != healthy {
                        eprintln!("[{:>6} ms] healthy: {healthy:?}", t0.elapsed().as_millis());
                    }
                    *t = healthy;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    eventually(
        "the 3 tasks reachable and healthy",
        Duration::from_secs(60),
        || async { (targets.read().unwrap().len() >= 3).then_some(()) },
    )
    .await;
    // Through the published port (the routing mesh) when this engine has one.
    let published = format!("http://127.0.0.1:{}", env("MINOTAUR_SWARM_HTTP_PORT"));
    let mut mesh_error = String::new();
    for _ in 0..10 {
        match http
            .get(format!("{published}/healthz"))
            .timeout(Duration::from_secs(1))
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => {
                via_published.store(true, Ordering::Relaxed);
                *targets.write().unwrap() = vec![published.clone()];
                break;
            }
            Ok(r) => mesh_error = format!("HTTP {}", r.status()),
            Err(e) => mesh_error = format!("{e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let client_path = if via_published.load(Ordering::Relaxed) {
        format!("the published port ({published})")
    } else {
        eprintln!(
            "the published port {published} does not answer ({mesh_error}); the routing mesh needs \
             IPVS (/proc/net/ip_vs exists: {}): reaching the tasks through docker_gwbridge instead",
            std::path::Path::new("/proc/net/ip_vs").exists()
        );
        "the tasks' docker_gwbridge addresses, health-checked".to_string()
    };
    eprintln!("clients reach the service through {client_path}");

    let load = Load::start(&http, games, 30, 300.0, targets.clone())
        .await
        .unwrap();
    load.expect_play(100).await;
    load.measure(true);
    let update_started = Instant::now();
    let update = service_cmd(&[
        "update",
        "--image",
        &new_image,
        "--update-parallelism",
        "1",
        "--update-order",
        "start-first",
        "--update-delay",
        "1s",
        "--update-monitor",
        "3s",
        "--update-failure-action",
        "rollback",
        "--detach=false",
        "--quiet",
        &service,
    ])
    .await;
    let update_took = update_started.elapsed();
    assert!(
        update.status.success(),
        "docker service update failed: {}",
        String::from_utf8_lossy(&update.stderr)
    );
    // On this release, players still playing: only it is a member, and it uses its own
    // protocol now that no member of the previous release is left; every game answers.
    eventually(
        "only members of this release",
        Duration::from_secs(30),
        || async { members_all_at(&service, &new_version).then_some(()) },
    )
    .await;
    let in_use = protocol_in_use(&service);
    assert_eq!(
        in_use,
        Some(u64::from(horde::protocol::PROTOCOL)),
        "the protocol in use after the update"
    );
    let urls = targets.read().unwrap().clone();
    let after_update = schemas(&http, &urls, &load.codes().await).await;
    assert!(
        after_update.iter().all(|(_, s)| *s == Some(1)),
        "after the update: {after_update:?}"
    );

    // Back to the previous release as operators do it: `docker service rollback` (the
    // stack's rollback_config: one task at a time, start-first).
    let rollback_started = Instant::now();
    let rollback = service_cmd(&["rollback", "--detach=false", "--quiet", &service]).await;
    let rollback_took = rollback_started.elapsed();
    assert!(
        rollback.status.success(),
        "docker service rollback failed: {}",
        String::from_utf8_lossy(&rollback.stderr)
    );
    load.expect_play(100).await;
    load.measure(false);
    let result = load.stop().await;
    let urls = targets.read().unwrap().clone();
    eprintln!("verifying through {urls:?}");
    let integrity = verify(&http, &urls, &result).await;
    lister.abort();
    prober.abort();
    if integrity.games_lost > 0 {
        for (i, code) in result.games.iter().map(|g| &g.code).enumerate() {
            let url = format!("{}/api/games/{code}", urls[i % urls.len()]);
            if let Ok(r) = http.get(&url).send().await
                && !r.status().is_success()
            {
                eprintln!(
                    "{url}: {} {}",
                    r.status(),
                    r.text().await.unwrap_or_default()
                );
            }
        }
    }

    // Tasks that appeared during the update and the rollback, and tasks Swarm stopped.
    let log = seen.read().unwrap().clone();
    let started = log.values().filter(|(a, _)| *a > update_started).count();
    let stopped = log.values().filter(|(_, g)| g.is_some()).count();

    let pauses = result.pauses();
    let report = serde_json::json!({
        "games": integrity.games, "games_lost": integrity.games_lost, "inputs_acked": integrity.inputs_acked,
        "inputs_lost": integrity.inputs_lost, "inputs_duplicated": integrity.inputs_duplicated,
        "inputs_unanswered": integrity.inputs_unanswered, "games_reset": integrity.games_reset,
        "games_modelled": integrity.games_modelled, "games_unlike_model": integrity.games_unlike_model,
        "answers_unlike_model": integrity.answers_unlike_model,
        "inputs_acked_probed": integrity.inputs_acked_probed, "inputs_acked_lost": integrity.inputs_acked_lost,
        "first_difference": integrity.first_difference,
        "client_retries": result.failed_attempts,
        "pause_p99_ms": pauses.p99_ms, "pause_max_ms": pauses.max_ms,
        "update_total_ms": update_took.as_secs_f64() * 1000.0,
        "rollback_total_ms": rollback_took.as_secs_f64() * 1000.0,
        "client_path": client_path, "tasks_started": started, "tasks_stopped": stopped,
    });
    println!("SWARM REPORT {report}");

    assert_eq!(integrity.games, games);
    integrity.assert_nothing_lost();
    assert_eq!(result.regressions, 0, "{report}");
    assert!(
        result.answers.len() > games,
        "too little play after the joins: {report}"
    );
    assert_eq!(
        (started, stopped),
        (6, 6),
        "three tasks replaced by the update, three by the rollback: {report}"
    );

    // Every game answers on the previous release, with every input; only its members.
    let codes: Vec<String> = result.games.iter().map(|g| g.code.clone()).collect();
    for (code, schema) in &schemas(&http, &urls, &codes).await {
        assert_eq!(*schema, Some(1), "{code} after the rollback");
    }
    assert!(
        members_all_at(&service, &old_version),
        "after the rollback every member runs {old_version}"
    );
}

/// The horde protocol the service uses, as a task's `minotaur rpc --json version` says.
fn protocol_in_use(service: &str) -> Option<u64> {
    let any = tasks(service).into_keys().next()?;
    let v: Value = serde_json::from_str(&docker(&[
        "exec", &any, "minotaur", "rpc", "--json", "version",
    ]))
    .ok()?;
    v["protocol_in_use"].as_u64()
}

/// `docker service <args>`, off the runtime's threads.
async fn service_cmd(args: &[&str]) -> std::process::Output {
    let mut full = vec!["service".to_string()];
    full.extend(args.iter().map(|a| a.to_string()));
    tokio::task::spawn_blocking(move || {
        Command::new("docker")
            .args(&full)
            .output()
            .expect("run docker service")
    })
    .await
    .unwrap()
}

/// True when the service's members (as a task's `minotaur rpc --json members` lists them) are
/// three, alive, all at `version`.
fn members_all_at(service: &str, version: &str) -> bool {
    let Some(any) = tasks(service).into_keys().next() else {
        return false;
    };
    let Ok(members) = serde_json::from_str::<Value>(&docker(&[
        "exec", &any, "minotaur", "rpc", "--json", "members",
    ])) else {
        return false;
    };
    members.as_array().is_some_and(|ms| {
        ms.len() == 3
            && ms
                .iter()
                .all(|m| m["status"] == "alive" && m["version"] == version)
    })
}

/// Each game's state schema as the cluster answers it (`None`: no answer in ten tries).
async fn schemas(
    http: &reqwest::Client,
    urls: &[String],
    codes: &[String],
) -> Vec<(String, Option<u64>)> {
    let mut out = Vec::new();
    for (i, code) in codes.iter().enumerate() {
        let mut schema = None;
        for attempt in 0..10 {
            let url = format!("{}/api/games/{code}", urls[(i + attempt) % urls.len()]);
            if let Ok(r) = http.get(&url).timeout(Duration::from_secs(1)).send().await
                && let Ok(v) = r.json::<Value>().await
                && let Some(s) = v["schema"].as_u64()
            {
                schema = Some(s);
                break;
            }
        }
        out.push((code.clone(), schema));
    }
    out
}
