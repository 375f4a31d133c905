//! Cluster formation end to end: real `minotaur` processes on 127.0.x.y finding each other
//! through a real DNS server, watched through `minotaur rpc`.

mod support;

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use harness::node::{Console, NodeProcess, names, node_env, rpc};
use harness::ports::{free_port, loopbacks};
use harness::wait::{eventually, scaled};
use harness::{dns, logs};
use nix::sys::signal::Signal;
use support::MINOTAUR;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SERVICE: &str = "tasks.minotaur-test_minotaur";
/// A cookie of the shortest length allowed with discovery.
const COOKIE_16: &str = "sixteen-bytes-ok";

fn dns_env(ip: IpAddr, port: u16, dns: &dns::DnsServer) -> HashMap<String, String> {
    let mut env = node_env(ip, port, "e2e-test-cookie-0123");
    env.insert("DNS_CLUSTER_QUERY".into(), SERVICE.into());
    env.insert("DNS_CLUSTER_RESOLVER".into(), dns.addr().to_string());
    env.insert("DNS_CLUSTER_INTERVAL_MS".into(), "200".into());
    env
}

/// Nodes on `ips`, all published under [`SERVICE`], once they form a full mesh.
async fn dns_mesh(
    ips: &[IpAddr],
    port: u16,
    dns: &dns::DnsServer,
    logs: &std::path::Path,
) -> Vec<NodeProcess> {
    dns.set_addresses(SERVICE, ips);
    let nodes: Vec<NodeProcess> = ips
        .iter()
        .map(|ip| {
            NodeProcess::start(MINOTAUR, *ip, dns_env(*ip, port, dns), logs).expect("start a node")
        })
        .collect();
    wait_for_mesh(&nodes.iter().collect::<Vec<_>>()).await;
    nodes
}

/// A node on `ip` (`ips` is everyone's address) that joins `nodes` under [`SERVICE`], once
/// every one of them and it form a full mesh.
async fn join_mesh(
    nodes: &[NodeProcess],
    ip: IpAddr,
    ips: &[IpAddr],
    port: u16,
    dns: &dns::DnsServer,
    logs: &std::path::Path,
) -> NodeProcess {
    let node =
        NodeProcess::start(MINOTAUR, ip, dns_env(ip, port, dns), logs).expect("start a node");
    dns.set_addresses(SERVICE, ips);
    let mut all: Vec<&NodeProcess> = nodes.iter().collect();
    all.push(&node);
    wait_for_mesh(&all).await;
    node
}

async fn wait_for_mesh(nodes: &[&NodeProcess]) {
    let all: Vec<IpAddr> = nodes.iter().map(|n| n.ip).collect();
    for n in nodes {
        let want: Vec<String> = names(&all).into_iter().filter(|x| *x != n.name).collect();
        eventually(
            &format!("{} sees {want:?}", n.name),
            Duration::from_secs(15),
            || async { (n.try_nodes().await? == want).then_some(()) },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_find_each_other_through_dns_and_a_new_name_joins() {
    let ips = loopbacks(21, 4);
    let port = free_port(&ips).expect("a free port");
    let dns = dns::start().await.expect("start the DNS server");
    let logs = logs::test_dir("dns_mesh");
    let nodes = dns_mesh(&ips[..3], port, &dns, &logs).await;

    // A fourth task appears in DNS: everyone connects to it, it connects to everyone.
    let fourth = join_mesh(&nodes, ips[3], &ips, port, &dns, &logs).await;

    // `node`, `ping` and JSON answers through the console.
    let out = nodes[0].rpc(&["node"]).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), nodes[0].name);
    let out = nodes[0].rpc(&["--json", "ping", &fourth.name]).await;
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json answer");
    assert_eq!(v["node"], fourth.name.as_str());
    assert!(v["rtt_ms"].as_f64().is_some_and(|ms| ms > 0.0), "{v}");

    // A node that leaves DNS (as a Swarm task does ~2 s before SIGTERM) stays connected.
    // Nothing happens: proved once the nodes have asked DNS again many times since.
    dns.set_addresses(SERVICE, &ips[..3]);
    let asked = dns.queries();
    eventually(
        "the nodes polled DNS again",
        Duration::from_secs(10),
        || async { (dns.queries() >= asked + 20).then_some(()) },
    )
    .await;
    assert_eq!(
        nodes[0].nodes().await.len(),
        3,
        "a live node was dropped because it left DNS"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_is_reported_down_and_a_frozen_one_too_until_it_thaws() {
    let ips = loopbacks(22, 3);
    let port = free_port(&ips).expect("a free port");
    let dns = dns::start().await.expect("start the DNS server");
    let logs = logs::test_dir("failures");
    let mut nodes = dns_mesh(&ips, port, &dns, &logs).await;

    // SIGSTOP: TCP stays open, only heartbeats can tell. Reported down, then back on SIGCONT.
    nodes[1].signal(Signal::SIGSTOP);
    let frozen = nodes[1].name.clone();
    eventually(
        "frozen node reported down",
        Duration::from_secs(10),
        || async { (!nodes[0].try_nodes().await?.contains(&frozen)).then_some(()) },
    )
    .await;
    assert!(
        nodes[0].log().contains("node stopped answering heartbeats"),
        "{}",
        nodes[0].log()
    );
    nodes[1].signal(Signal::SIGCONT);
    eventually("thawed node back", Duration::from_secs(15), || async {
        nodes[0].try_nodes().await?.contains(&frozen).then_some(())
    })
    .await;
    wait_for_mesh(&nodes.iter().collect::<Vec<_>>()).await;

    // SIGKILL: reported down by every survivor.
    let killed = nodes[2].name.clone();
    nodes[2].kill();
    for n in &nodes[..2] {
        eventually(
            "killed node reported down",
            Duration::from_secs(10),
            || async { (!n.try_nodes().await?.contains(&killed)).then_some(()) },
        )
        .await;
    }
    // It is still in DNS, so the survivors keep trying; a restart (new incarnation) rejoins.
    let restarted = NodeProcess::start(MINOTAUR, ips[2], dns_env(ips[2], port, &dns), &logs)
        .expect("start a node");
    let all: Vec<&NodeProcess> = vec![&nodes[0], &nodes[1], &restarted];
    wait_for_mesh(&all).await;
    assert!(nodes[0].log().contains("node up"), "{}", nodes[0].log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_cookie_is_refused_logged_and_never_listed() {
    let ips = loopbacks(23, 2);
    let port = free_port(&ips).expect("a free port");
    let dns = dns::start().await.expect("start the DNS server");
    let logs = logs::test_dir("cookie");
    dns.set_addresses(SERVICE, &ips);
    let good = NodeProcess::start(MINOTAUR, ips[0], dns_env(ips[0], port, &dns), &logs)
        .expect("start a node");
    let mut bad_env = dns_env(ips[1], port, &dns);
    bad_env.insert("RELEASE_COOKIE".into(), "not-the-cluster-cookie".into());
    let bad = NodeProcess::start(MINOTAUR, ips[1], bad_env, &logs).expect("start a node");

    eventually("refusal logged", Duration::from_secs(10), || async {
        good.log().contains("failed to authenticate").then_some(())
    })
    .await;
    assert!(
        good.log().contains(&format!("minotaur@{}", ips[1])),
        "{}",
        good.log()
    );
    assert!(good.nodes().await.is_empty());
    assert!(bad.nodes().await.is_empty());

    // A console with the wrong cookie gets a one-line reason and a non-zero exit.
    let mut env = good.env.clone();
    env.insert("RELEASE_COOKIE".into(), "a-guessed-cookie-0123".into());
    let out = rpc(MINOTAUR, &env, Some(&good.name), &["nodes"]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("wrong cookie"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    // The console never shows up as a node.
    assert!(good.nodes().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bytes_on_the_cluster_port_neither_crash_stall_nor_bloat_the_node() {
    let ips = loopbacks(24, 2);
    let port = free_port(&ips).expect("a free port");
    let logs = logs::test_dir("hostile");
    let mut env = node_env(ips[0], port, "e2e-test-cookie-0123");
    env.insert("CLUSTER_HOSTS".into(), format!("minotaur@{}", ips[1]));
    let mut node = NodeProcess::start(MINOTAUR, ips[0], env, &logs).expect("start a node");
    eventually("node answers", Duration::from_secs(10), || async {
        node.rpc(&["node"]).await.status.success().then_some(())
    })
    .await;
    let addr = node.cluster_addr();
    let rss_before = node.rss_bytes() / 1024;
    let mut rss_warm = rss_before;

    for round in 0..3 {
        // Garbage, an HTTP request, a huge length prefix, a truncated frame.
        for payload in [
            b"\x00\x01garbage garbage garbage".to_vec(),
            b"GET / HTTP/1.1\r\nHost: minotaur\r\n\r\n".to_vec(),
            u64::MAX.to_be_bytes().to_vec(),
            [(1u64 << 40).to_be_bytes().to_vec(), vec![7; 100]].concat(),
            [100u64.to_be_bytes().to_vec(), vec![0xff; 50]].concat(),
        ] {
            let mut s = TcpStream::connect(addr).await.expect("connect");
            let _ = s.write_all(&payload).await;
            let mut buf = [0u8; 256];
            let _ = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await;
        }
        // 400 idle connections held open while a console works.
        let mut idle = Vec::new();
        for _ in 0..400 {
            if let Ok(s) = TcpStream::connect(addr).await {
                idle.push(s);
            }
        }
        let out = node.rpc(&["node"]).await;
        assert!(out.status.success(), "round {round}: node stalled: {out:?}");
        // The node closes them at its handshake deadline.
        for mut s in idle {
            let mut b = [0u8; 1];
            let r = tokio::time::timeout(scaled(Duration::from_secs(20)), s.read(&mut b)).await;
            assert!(
                matches!(r, Ok(Ok(0)) | Ok(Err(_))),
                "idle connection never closed"
            );
        }
        if round == 0 {
            rss_warm = node.rss_bytes() / 1024;
        }
    }
    assert!(node.is_running(), "node died");
    let out = node.rpc(&["node"]).await;
    assert!(out.status.success(), "{out:?}");
    let rss_after = node.rss_bytes() / 1024;
    // A burst of connections raises the footprint once (the allocator keeps what the
    // sessions used: ~20-35 MB measured for 400 at once); repeating it must not raise it
    // again by much, whatever the allocator's arenas do.
    assert!(
        rss_after < rss_warm + 24 * 1024 && rss_after < rss_before + 64 * 1024,
        "memory grew from {rss_before} KiB to {rss_warm} KiB after the first round \
         and {rss_after} KiB after the last"
    );
    // A peer still joins after all that.
    let peer_env = {
        let mut e = node_env(ips[1], port, "e2e-test-cookie-0123");
        e.insert("CLUSTER_HOSTS".into(), node.name.clone());
        e
    };
    let peer = NodeProcess::start(MINOTAUR, ips[1], peer_env, &logs).expect("start a node");
    eventually("peer joins", Duration::from_secs(10), || async {
        (node.try_nodes().await? == vec![peer.name.clone()]).then_some(())
    })
    .await;
}

/// A connection of the flood, and what it sent.
struct Flooder {
    stream: TcpStream,
    kind: &'static str,
}

/// Reads until the node closes `f` (EOF or reset), for at most `within`.
async fn closed_by_the_node(mut f: Flooder, within: Duration) -> Result<(), String> {
    let mut buf = [0u8; 4096];
    let read_to_end = async {
        loop {
            match f.stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, read_to_end)
        .await
        .map_err(|_| format!("a {} connection was never closed", f.kind))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unauthenticated_connections_is_capped_closed_and_keeps_no_one_out() {
    const SILENT: usize = 200;
    const GARBAGE: usize = 50;
    const OVERSIZED: usize = 100;
    /// What each oversized connection tries to send: a frame header announcing 16 MiB (under
    /// the 32 MiB frame limit, so ractor_cluster alone would keep reading), then 2 MiB.
    const OVERSIZED_BYTES: usize = 2 * 1024 * 1024;
    let ips = loopbacks(29, 4);
    let port = free_port(&ips).expect("a free port");
    let dns = dns::start().await.expect("start the DNS server");
    let logs = logs::test_dir("flood");
    let nodes = dns_mesh(&ips[..3], port, &dns, &logs).await;
    let target = nodes[0].cluster_addr();
    let rss_before = nodes[0].rss_bytes() / 1024;

    // The flood on the first node's cluster port: silent connections first (the oldest, so the
    // ones closed when the pending cap is reached), junk, then connections that try to send
    // megabytes before any handshake.
    let mut flood = Vec::new();
    for _ in 0..SILENT {
        let stream = TcpStream::connect(target).await.expect("connect");
        flood.push(Flooder {
            stream,
            kind: "silent",
        });
    }
    for i in 0..GARBAGE {
        let mut stream = TcpStream::connect(target).await.expect("connect");
        let junk = format!("\x00\x00garbage {i}\r\n\x1b[2J");
        let _ = stream.write_all(junk.as_bytes()).await;
        flood.push(Flooder {
            stream,
            kind: "garbage",
        });
    }
    let mut writers = Vec::new();
    for _ in 0..OVERSIZED {
        let mut stream = TcpStream::connect(target).await.expect("connect");
        writers.push(tokio::spawn(async move {
            let mut bytes = (16u64 << 20).to_be_bytes().to_vec();
            bytes.resize(8 + OVERSIZED_BYTES, 0x5a);
            // Blocks once the node stops reading and the socket buffers are full.
            let _ = tokio::time::timeout(Duration::from_secs(2), stream.write_all(&bytes)).await;
            Flooder {
                stream,
                kind: "oversized",
            }
        }));
    }
    for w in writers {
        flood.push(w.await.expect("writer task"));
    }
    // Without the cap, the node would now hold what the oversized connections sent (200 MiB).
    let rss_flooded = nodes[0].rss_bytes() / 1024;

    // While the flood is open: a fourth node joins all three, a console attaches.
    let started = std::time::Instant::now();
    let fourth = join_mesh(&nodes, ips[3], &ips, port, &dns, &logs).await;
    let joined = started.elapsed();
    let started = std::time::Instant::now();
    let console = nodes[0].nodes().await;
    let attached = started.elapsed();
    assert_eq!(console.len(), 3, "{console:?}");

    // Every flood connection is closed by the node: the oversized and garbage ones at the
    // latest at the 5 s handshake deadline, the silent ones then or earlier to make room.
    let started = std::time::Instant::now();
    let closing = flood
        .into_iter()
        .map(|f| closed_by_the_node(f, scaled(Duration::from_secs(20))));
    let results = futures::future::join_all(closing).await;
    let errors: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    assert!(
        errors.is_empty(),
        "{} still open: {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    let all_closed = started.elapsed();
    println!(
        "flood of {} connections on {target}: the fourth node joined in {joined:?} \
         (process start and a 200 ms DNS poll included), a console answered in {attached:?}, \
         every flood connection closed {all_closed:?} after the join; node RSS {rss_before} KiB \
         before, {rss_flooded} KiB flooded",
        SILENT + GARBAGE + OVERSIZED
    );
    assert!(
        rss_flooded < rss_before + 64 * 1024,
        "the unauthenticated connections' bytes were kept: RSS {rss_before} KiB -> {rss_flooded} KiB"
    );
    // No authenticated link dropped, anywhere.
    for n in nodes.iter().chain([&fourth]) {
        assert!(!n.log().contains("node down"), "{}: {}", n.name, n.log());
    }
    assert!(
        nodes[0]
            .log()
            .contains("too many connections in their handshake"),
        "{}",
        nodes[0].log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_without_a_long_name_exits_2_naming_release_node() {
    let logs = logs::test_dir("short_name");
    for node in ["minotaur", "minotaur@myhost"] {
        let mut env = node_env("127.0.25.2".parse().expect("ip"), 9000, COOKIE_16);
        env.insert("RELEASE_NODE".into(), node.into());
        env.insert("DNS_CLUSTER_QUERY".into(), SERVICE.into());
        let mut p = NodeProcess::start(MINOTAUR, "127.0.25.2".parse().expect("ip"), env, &logs)
            .expect("start a node");
        let code = p.wait(scaled(Duration::from_secs(10))).await;
        assert_eq!(code, Some(2));
    }
    let out = std::process::Command::new(MINOTAUR)
        .arg("start")
        .env_clear()
        .env("RELEASE_NODE", "minotaur")
        .env("RELEASE_COOKIE", COOKIE_16)
        .env("DNS_CLUSTER_QUERY", SERVICE)
        .env("CLUSTER_PORT", "nine")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("RELEASE_NODE") && err.contains("long name"),
        "{err}"
    );
    assert!(
        err.contains("CLUSTER_PORT"),
        "every bad variable is reported: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_cookie_with_discovery_or_a_cookie_file_others_read_exits_2() {
    use std::os::unix::fs::PermissionsExt;
    let ip: IpAddr = "127.0.25.3".parse().expect("ip");
    let logs = logs::test_dir("cookie_rules");
    let exits = |env: HashMap<String, String>| {
        let logs = logs.clone();
        async move {
            let mut p = NodeProcess::start(MINOTAUR, ip, env, &logs).expect("start a node");
            let code = p.wait(scaled(Duration::from_secs(10))).await;
            (code, p.log())
        }
    };
    // 15 bytes and discovery on (static or DNS): refused, naming RELEASE_COOKIE.
    for (var, value) in [
        ("CLUSTER_HOSTS", "minotaur@127.0.25.4"),
        ("DNS_CLUSTER_QUERY", SERVICE),
    ] {
        let mut env = node_env(ip, 9000, "fifteen-bytes!!");
        env.insert(var.into(), value.into());
        let (code, log) = exits(env).await;
        assert_eq!(code, Some(2), "{var}: {log}");
        assert!(
            log.contains("RELEASE_COOKIE") && log.contains("at least 16"),
            "{log}"
        );
        assert!(
            !log.contains("fifteen-bytes!!"),
            "the cookie was printed: {log}"
        );
    }
    // A cookie file group or others may read: refused, naming the file and the fix.
    let file = logs.join("shared.cookie");
    std::fs::write(&file, "a-cookie-long-enough-for-discovery\n").expect("write");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let mut env = node_env(ip, 9000, "unused");
    env.remove("RELEASE_COOKIE");
    env.insert("RELEASE_COOKIE_FILE".into(), file.display().to_string());
    env.insert("CLUSTER_HOSTS".into(), "minotaur@127.0.25.4".into());
    let (code, log) = exits(env.clone()).await;
    assert_eq!(code, Some(2), "{log}");
    assert!(
        log.contains("RELEASE_COOKIE_FILE")
            && log.contains(&format!("chmod 600 {}", file.display())),
        "{log}"
    );
    assert!(
        !log.contains("a-cookie-long-enough"),
        "the cookie was printed: {log}"
    );
    // After the fix the same node starts.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let node = NodeProcess::start(MINOTAUR, ip, env, &logs).expect("start a node");
    eventually("node answers", Duration::from_secs(10), || async {
        node.rpc(&["node"]).await.status.success().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_errors_are_one_line_and_non_zero() {
    let ips = loopbacks(26, 1);
    let port = free_port(&ips).expect("a free port");
    let logs = logs::test_dir("rpc_errors");
    let node = NodeProcess::start(MINOTAUR, ips[0], node_env(ips[0], port, "c"), &logs)
        .expect("start a node");
    eventually("node answers", Duration::from_secs(10), || async {
        node.rpc(&["node"]).await.status.success().then_some(())
    })
    .await;
    let out = node.rpc(&["frobnicate"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown command `frobnicate`"));

    let out = rpc(MINOTAUR, &node.env, Some("minotaur@127.0.26.9"), &["nodes"]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot reach"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_exits_at_once_on_sigterm_as_no_node_can_take_its_games() {
    let ip = loopbacks(28, 1)[0];
    let lo: IpAddr = "127.0.0.1".parse().expect("ip");
    let logs = logs::test_dir("single");
    let mut env = node_env(ip, free_port(&[lo]).expect("a free port"), "c");
    let http_port = free_port(&[ip]).expect("a free port");
    env.insert("RELEASE_DISTRIBUTION".into(), "none".into());
    env.insert("HTTP_BIND".into(), ip.to_string());
    env.insert("PORT".into(), http_port.to_string());
    // Far beyond the wait below (20 s, scaled by MINOTAUR_TEST_TIME_SCALE up to 60 s in CI): a
    // node that waited for a peer would miss it.
    env.insert("SHUTDOWN_TIMEOUT_MS".into(), "120000".into());
    let mut node = NodeProcess::start(MINOTAUR, ip, env, &logs).expect("start a node");
    let url = format!("http://{ip}:{http_port}");
    let http = reqwest::Client::new();
    eventually("a game is created", Duration::from_secs(10), || async {
        let r = http.post(format!("{url}/api/games")).send().await.ok()?;
        (r.status() == reqwest::StatusCode::CREATED).then_some(())
    })
    .await;
    node.signal(Signal::SIGTERM);
    let code = node.wait(scaled(Duration::from_secs(20))).await;
    assert_eq!(code, Some(0), "{}", node.log());
    assert!(
        node.log()
            .contains("RELEASE_DISTRIBUTION=none: no other node can take this node's games"),
        "{}",
        node.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_sh_exports_the_name_the_binary_works_out_and_records_it_for_consoles() {
    let root = logs::test_dir("env_sh");
    std::fs::create_dir_all(root.join("bin")).expect("bin dir");
    let bin = root.join("bin/minotaur.bin");
    let _ = std::fs::remove_file(&bin);
    std::os::unix::fs::symlink(MINOTAUR, &bin).expect("link the binary");
    let env_sh = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rel/env.sh");
    let source = |command: &str, extra: &[(&str, &str)]| {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                ". '{}' && printf '%s' \"${{RELEASE_NODE:-}}\"",
                env_sh.display()
            ))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RELEASE_ROOT", &root)
            .env("RELEASE_TMP", &root)
            .env("RELEASE_COMMAND", command)
            .env("RELEASE_COOKIE", "c")
            .envs(extra.iter().copied())
            .output()
            .expect("run sh");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let expected = std::process::Command::new(MINOTAUR)
        .arg("node-name")
        .env_clear()
        .env("RELEASE_COOKIE", "c")
        .output()
        .expect("run node-name");
    assert!(expected.status.success(), "{expected:?}");
    let expected = String::from_utf8_lossy(&expected.stdout).trim().to_string();
    assert!(expected.starts_with("minotaur@"), "{expected}");

    let _ = std::fs::remove_file(root.join("minotaur.node"));
    assert_eq!(source("start", &[]), expected);
    assert_eq!(
        std::fs::read_to_string(root.join("minotaur.node")).expect("the record"),
        format!("{expected}\n")
    );
    // A console reuses the record, whatever it would work out now.
    std::fs::write(root.join("minotaur.node"), "minotaur@10.9.8.7\n").expect("write record");
    assert_eq!(source("remote", &[]), "minotaur@10.9.8.7");
    // A name the operator gave is never changed; a bad one is left for the binary to refuse.
    assert_eq!(source("start", &[("RELEASE_NODE", "minotaur")]), "minotaur");
    // No name can be worked out with a bad variable: RELEASE_NODE stays unset.
    assert_eq!(source("start", &[("CLUSTER_PORT", "nine")]), "");
}
