//! What an operator meets: `/livez`, the app version (`--version`, SemVer, the `version`
//! command), the `config` command, the console of a `RELEASE_DISTRIBUTION=none` node, and a
//! node alone that stops at once. Real `minotaur` processes, real signals, real files.

mod support;

use std::collections::HashMap;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use harness::logs;
use harness::node::{Console, NodeProcess, get_json, node_env, rpc};
use harness::ports::{free_port, loopbacks};
use harness::wait::{eventually, scaled};
use nix::sys::signal::Signal;
use reqwest::StatusCode;
use support::MINOTAUR;

/// A node on `ip` with HTTP on a port of its own on `ip` (so the test knows the URL).
fn env_on(ip: IpAddr, cookie: &str) -> HashMap<String, String> {
    let mut env = node_env(ip, free_port(&[ip]).expect("a free port"), cookie);
    env.insert("HTTP_BIND".into(), ip.to_string());
    env.insert(
        "PORT".into(),
        free_port(&[ip]).expect("a free port").to_string(),
    );
    env
}

async fn status(http: &reqwest::Client, url: &str) -> Option<StatusCode> {
    http.get(url).send().await.ok().map(|r| r.status())
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn create_game(http: &reqwest::Client, url: &str) -> String {
    eventually("a game is created", Duration::from_secs(10), || async {
        let r = http.post(format!("{url}/api/games")).send().await.ok()?;
        if r.status() != StatusCode::CREATED {
            return None;
        }
        let v: serde_json::Value = r.json().await.ok()?;
        v["id"].as_str().map(String::from)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn livez_stays_200_while_draining_when_healthz_says_503() {
    let ip = loopbacks(161, 1)[0];
    let logs = logs::test_dir("livez");
    let node = NodeProcess::start(MINOTAUR, ip, env_on(ip, "c"), &logs).expect("start a node");
    let http = reqwest::Client::new();
    let url = node.url();
    eventually("ready", Duration::from_secs(10), || async {
        (status(&http, &format!("{url}/healthz")).await? == StatusCode::OK).then_some(())
    })
    .await;
    assert_eq!(
        status(&http, &format!("{url}/livez")).await,
        Some(StatusCode::OK)
    );
    let out = node.rpc(&["drain"]).await;
    assert!(out.status.success(), "{out:?}\n{}", node.log());
    // The console's drain leaves the node running and draining.
    assert_eq!(
        status(&http, &format!("{url}/healthz")).await,
        Some(StatusCode::SERVICE_UNAVAILABLE)
    );
    let r = http
        .get(format!("{url}/livez"))
        .send()
        .await
        .expect("livez answers");
    assert_eq!(r.status(), StatusCode::OK);
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["status"], "draining");
    assert_eq!(body["node"], node.name.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_version_that_is_not_semver_is_refused_at_start_naming_the_variable() {
    let ip = loopbacks(162, 1)[0];
    let logs = logs::test_dir("bad_version");
    for bad in ["banana", "1.0", "v1.2.3"] {
        let mut env = env_on(ip, "c");
        env.insert("MINOTAUR_APP_VERSION".into(), bad.into());
        let mut p = NodeProcess::start(MINOTAUR, ip, env, &logs).expect("start a node");
        let code = p.wait(scaled(Duration::from_secs(10))).await;
        assert_eq!(code, Some(2), "{bad}: {}", p.log());
        assert!(
            p.log().contains(&format!(
                "MINOTAUR_APP_VERSION: `{bad}` is not a SemVer version"
            )),
            "{}",
            p.log()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_flag_prints_the_version_members_show_and_version_and_config_commands() {
    let ip = loopbacks(163, 1)[0];
    let logs = logs::test_dir("version");
    let secret = "operations-test-secret-cookie";
    let mut env = env_on(ip, secret);
    env.insert("MINOTAUR_APP_VERSION".into(), "1.10.0-rc.1".into());
    let out = std::process::Command::new(MINOTAUR)
        .arg("--version")
        .env_clear()
        .envs(&env)
        .output()
        .expect("run --version");
    assert!(out.status.success());
    assert_eq!(
        stdout(&out),
        format!(
            "minotaur 1.10.0-rc.1 (protocol {}, state schemas 1)\n",
            horde::protocol::Protocols::THIS
        )
    );

    let node = NodeProcess::start(MINOTAUR, ip, env.clone(), &logs).expect("start a node");
    let members = eventually("members answers", Duration::from_secs(10), || async {
        let out = node.rpc(&["members"]).await;
        out.status.success().then(|| stdout(&out))
    })
    .await;
    assert_eq!(
        members.trim(),
        format!(
            "{}  alive  1.10.0-rc.1  protocol {}  0 games",
            node.name,
            horde::protocol::Protocols::THIS
        )
    );

    let out = node.rpc(&["version"]).await;
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(
        text.starts_with("app       1.10.0-rc.1\nschema    v1 (reads v1)\nprotocol  horde "),
        "{text}"
    );
    let out = node.rpc(&["--json", "version"]).await;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["app"], "1.10.0-rc.1");
    assert_eq!(v["schema"], 1);
    // Alone, it uses the newest protocol it speaks.
    assert_eq!(v["protocol_in_use"], horde::protocol::PROTOCOL);
    assert_eq!(v["protocol_min"], horde::protocol::MIN_PROTOCOL);

    let out = node.rpc(&["config"]).await;
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(!text.contains(secret), "the cookie is shown: {text}");
    let line = |var: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(var))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|| panic!("no {var} in {text}"))
    };
    assert_eq!(line("RELEASE_COOKIE"), "RELEASE_COOKIE *** (environment)");
    assert_eq!(
        line("RELEASE_NODE"),
        format!("RELEASE_NODE {} (environment)", node.name)
    );
    assert_eq!(
        line("SHUTDOWN_TIMEOUT_MS"),
        "SHUTDOWN_TIMEOUT_MS 8000 (default)"
    );
    assert_eq!(
        line("MINOTAUR_APP_VERSION"),
        "MINOTAUR_APP_VERSION 1.10.0-rc.1 (environment)"
    );
    assert_eq!(
        line("DNS_CLUSTER_QUERY"),
        "DNS_CLUSTER_QUERY unset (default)"
    );
    let out = node.rpc(&["--json", "config"]).await;
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("json");
    assert!(rows.iter().any(|r| r["variable"] == "PORT"
        && r["value"] == env["PORT"].as_str()
        && r["source"] == "environment"));
    assert!(!stdout(&out).contains(secret));

    // Without the variable: the version built in, which `members` shows then.
    let out = std::process::Command::new(MINOTAUR)
        .arg("--version")
        .env_clear()
        .output()
        .expect("run --version");
    assert_eq!(
        stdout(&out),
        format!(
            "minotaur {} (protocol {}, state schemas 1)\n",
            game::APP_VERSION,
            horde::protocol::Protocols::THIS
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_without_a_cookie_lets_consoles_of_its_user_attach() {
    let ip = loopbacks(164, 1)[0];
    let lo: IpAddr = "127.0.0.1".parse().expect("ip");
    let logs = logs::test_dir("none_console");
    let home = logs.join("home");
    std::fs::create_dir_all(&home).expect("home");
    let mut env = env_on(ip, "unused");
    env.remove("RELEASE_COOKIE");
    env.insert("RELEASE_DISTRIBUTION".into(), "none".into());
    env.insert(
        "CLUSTER_PORT".into(),
        free_port(&[lo]).expect("a free port").to_string(),
    );
    env.insert("HOME".into(), home.display().to_string());
    let node = NodeProcess::start(MINOTAUR, ip, env.clone(), &logs).expect("start a node");
    // `minotaur rpc` on this host, as this user, with the node's environment and no cookie.
    let name = eventually("rpc node answers", Duration::from_secs(10), || async {
        let out = rpc(MINOTAUR, &env, None, &["node"]).await;
        out.status.success().then(|| stdout(&out))
    })
    .await;
    assert_eq!(name.trim(), node.name);

    let file = home.join(".minotaur").join(format!("{}.cookie", node.name));
    let meta = std::fs::metadata(&file).expect("the cookie file");
    assert_eq!(meta.mode() & 0o777, 0o600);
    let dir = std::fs::metadata(home.join(".minotaur")).expect("its directory");
    assert_eq!(dir.mode() & 0o777, 0o700);
    let cookie = std::fs::read_to_string(&file).expect("read the cookie");
    assert_eq!(cookie.len(), 64, "{cookie}");

    let out = rpc(MINOTAUR, &env, None, &["config"]).await;
    let text = stdout(&out);
    assert!(!text.contains(&cookie), "{text}");
    assert!(
        text.contains(&format!("*** (in {})  (generated)", file.display())),
        "{text}"
    );

    // A console that finds no cookie for the node (another HOME) says why, in one line.
    let mut wrong = env.clone();
    wrong.insert("HOME".into(), logs.join("elsewhere").display().to_string());
    let out = rpc(MINOTAUR, &wrong, None, &["node"]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot read the console cookie"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_discovery_or_peers_exits_at_once_on_sigint_and_sigterm() {
    let ip = loopbacks(165, 1)[0];
    let logs = logs::test_dir("alone");
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // The README's first command: a cookie and nothing else (no discovery).
        let mut env = env_on(ip, "dev");
        // Far beyond the wait below (20 s, scaled): a node that waited for a peer would miss it.
        env.insert("SHUTDOWN_TIMEOUT_MS".into(), "120000".into());
        let mut node = NodeProcess::start(MINOTAUR, ip, env, &logs).expect("start a node");
        let http = reqwest::Client::new();
        create_game(&http, &node.url()).await;
        node.signal(sig);
        let code = node.wait(scaled(Duration::from_secs(20))).await;
        assert_eq!(code, Some(0), "{sig}: {}", node.log());
        assert!(
            node.log().contains(
                "no discovery configured and no connected peer: no other node can take this node's games, exiting without waiting"
            ),
            "{}",
            node.log()
        );
        // Its game stops with it, and the log says so, not that a backup holds it.
        assert!(
            node.log().contains("they stop with this node"),
            "{}",
            node.log()
        );
        assert!(
            !node.log().contains("backups hold"),
            "a lone node claims backups: {}",
            node.log()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_discovery_still_drains_to_a_peer_that_dialled_in() {
    let ips = loopbacks(166, 2);
    let logs = logs::test_dir("alone_with_peer");
    let port = free_port(&ips).expect("a free port");
    let with_port = |ip: IpAddr| {
        let mut env = env_on(ip, "operations-cookie");
        env.insert("CLUSTER_PORT".into(), port.to_string());
        env
    };
    let mut a = NodeProcess::start(MINOTAUR, ips[0], with_port(ips[0]), &logs).expect("start a");
    let mut b_env = with_port(ips[1]);
    b_env.insert("CLUSTER_HOSTS".into(), a.name.clone());
    let b = NodeProcess::start(MINOTAUR, ips[1], b_env, &logs).expect("start b");
    let http = reqwest::Client::new();
    eventually("a sees b", Duration::from_secs(15), || async {
        (a.try_nodes().await? == vec![b.name.clone()]).then_some(())
    })
    .await;
    // A game on a: create on a until one lands there.
    let id = eventually("a game on a", Duration::from_secs(15), || async {
        let id = create_game(&http, &a.url()).await;
        let v = get_json(&http, &format!("{}/api/games/{id}", a.url())).await?;
        (v["node"] == a.name.as_str()).then_some(id)
    })
    .await;
    a.signal(Signal::SIGINT);
    let code = a.wait(scaled(Duration::from_secs(20))).await;
    assert_eq!(code, Some(0), "{}", a.log());
    assert!(!a.log().contains("exiting without waiting"), "{}", a.log());
    let v: serde_json::Value = http
        .get(format!("{}/api/games/{id}", b.url()))
        .send()
        .await
        .expect("b answers")
        .json()
        .await
        .expect("json");
    assert_eq!(v["node"], b.name.as_str(), "{v}\n{}", a.log());
}
