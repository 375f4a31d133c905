//! Cluster formation benchmark (`cargo bench -p minotaur --bench cluster`).
//!
//! Measures, on this machine, over real TCP and a real DNS server:
//! 1. DNS to full mesh: from the moment a new node's address appears in DNS until every node
//!    has it up (goal: within one poll interval + 50 ms);
//! 2. failure detection: from SIGKILL / SIGSTOP of a real `minotaur` process until an observer
//!    reports it down, and from SIGCONT until it is up again;
//! 3. `ping` round trip beside a raw ractor_cluster call over the same link (goal: ratio <= 1.2).
//!
//! The observer runs in this process; peers are separate processes (the real binary, or this
//! benchmark in `peer` mode for the raw-call target). Prints a table and one JSON line.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: failing loudly is the point

use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::Duration;

use discovery::config::DiscoveryConfig;
use discovery::{Connector, DnsQuery, NodeEvent, PeerSet};
use harness::dns::{self, DnsServer};
use harness::echo::{self, EchoMsg};
use harness::latency::{ms, percentile};
use harness::mesh::{connector_config, node_name, peer, start_connector, wait_down, wait_up};
use harness::node;
use harness::ports::free_port;
use harness::process::ChildProcess;
use harness::wait::eventually;
use nix::sys::signal::Signal;
use ractor::ActorRef;
use tokio::sync::watch;
use tokio::time::Instant;

const COOKIE: &str = "bench-cluster-cookie";
const SERVICE: &str = "tasks.minotaur-bench_minotaur";
const POLL: Duration = Duration::from_millis(1000);

/// A connector on `ip` in this process, dialling what `peers` publishes.
async fn connector(ip: IpAddr, port: u16, peers: watch::Receiver<PeerSet>) -> Connector {
    start_connector(connector_config(ip, port, COOKIE), peers).await
}

fn dns_discovery(ip: IpAddr, port: u16, dns: SocketAddr, query: &str) -> watch::Receiver<PeerSet> {
    let cfg = DiscoveryConfig {
        self_name: node_name(ip),
        basename: "minotaur".into(),
        cluster_port: port,
        dns_queries: vec![DnsQuery::parse(query)],
        interval: POLL,
        resolver: Some(dns),
        static_hosts: vec![],
    };
    let handle = discovery::spawn_discovery(cfg, std::future::pending()).unwrap();
    let rx = handle.subscribe();
    std::mem::forget(handle); // runs for the whole benchmark
    rx
}

/// Part 1: a node's address appears in DNS: time until both existing nodes have it up.
async fn dns_to_mesh(dns: &DnsServer, rounds: usize) -> Vec<f64> {
    let base: Vec<IpAddr> = (2..=3).map(|i| IpAddr::from([127, 0, 61, i])).collect();
    let newcomers: Vec<IpAddr> = (10..10 + rounds as u8)
        .map(|i| IpAddr::from([127, 0, 61, i]))
        .collect();
    let all: Vec<IpAddr> = base.iter().chain(newcomers.iter()).copied().collect();
    let port = free_port(&all).unwrap();
    dns.set_addresses(SERVICE, &base);
    let a = connector(
        base[0],
        port,
        dns_discovery(base[0], port, dns.addr(), SERVICE),
    )
    .await;
    let b = connector(
        base[1],
        port,
        dns_discovery(base[1], port, dns.addr(), SERVICE),
    )
    .await;
    let mut ea = a.subscribe().await.unwrap();
    let mut eb = b.subscribe().await.unwrap();
    // a and b first find each other.
    let mut ea0 = a.subscribe().await.unwrap();
    if ea0.current.is_empty() {
        wait_up(&mut ea0, &node::name(base[1])).await;
    }
    let mut out = Vec::new();
    let mut listed = base.clone();
    for ip in newcomers {
        // The newcomer itself discovers nothing (its own name lists only itself): only the
        // existing nodes' DNS polling can connect it.
        let own = format!("self-{}.minotaur-bench", ip.to_string().replace('.', "-"));
        dns.set_addresses(&own, &[ip]);
        let c = connector(ip, port, dns_discovery(ip, port, dns.addr(), &own)).await;
        // Random phase against the pollers, as in real life.
        tokio::time::sleep(Duration::from_millis(rand::random::<u64>() % 1000)).await;
        listed.push(ip);
        let t0 = Instant::now();
        dns.set_addresses(SERVICE, &listed);
        let who = node::name(ip);
        let (ta, tb) = tokio::join!(wait_up(&mut ea, &who), wait_up(&mut eb, &who));
        out.push(ms(ta.max(tb) - t0));
        // keep c running; it is part of the DNS answer from now on
        std::mem::forget(c);
    }
    out
}

/// A real node on `ip` that dials the observer (and whom the observer learns of that way).
fn spawn_minotaur(ip: IpAddr, port: u16, observer: IpAddr) -> ChildProcess {
    ChildProcess::spawn(
        Command::new(env!("CARGO_BIN_EXE_minotaur"))
            .arg("start")
            .env_clear()
            .env("RELEASE_NODE", node::name(ip))
            .env("RELEASE_COOKIE", COOKIE)
            .env("CLUSTER_PORT", port.to_string())
            .env("PORT", "0")
            .env("CLUSTER_HOSTS", node::name(observer))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .expect("spawn minotaur")
}

/// Part 2: failure detection against real processes.
async fn failures(rounds: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let observer_ip = IpAddr::from([127, 0, 62, 2]);
    let victims: Vec<IpAddr> = (3..3 + rounds as u8)
        .map(|i| IpAddr::from([127, 0, 62, i]))
        .collect();
    let mut ips = vec![observer_ip];
    ips.extend(&victims);
    let port = free_port(&ips).unwrap();
    let (_tx, rx) = watch::channel(PeerSet::new());
    let observer = connector(observer_ip, port, rx).await;
    let mut events = observer.subscribe().await.unwrap();
    let (mut killed, mut frozen, mut thawed) = (Vec::new(), Vec::new(), Vec::new());
    for ip in victims {
        let who = node::name(ip);
        let mut p = spawn_minotaur(ip, port, observer_ip);
        wait_up(&mut events, &who).await;
        tokio::time::sleep(Duration::from_millis(600)).await; // a few heartbeats in
        let t0 = Instant::now();
        p.signal(Signal::SIGSTOP);
        frozen.push(ms(wait_down(&mut events, &who).await - t0));
        let t1 = Instant::now();
        p.signal(Signal::SIGCONT);
        thawed.push(ms(wait_up(&mut events, &who).await - t1));
        tokio::time::sleep(Duration::from_millis(600)).await;
        let t2 = Instant::now();
        p.signal(Signal::SIGKILL);
        killed.push(ms(wait_down(&mut events, &who).await - t2));
        p.kill(); // reap it
    }
    (killed, frozen, thawed)
}

/// Part 3: `ping` (the console command: through the connector and the peer's beacon) beside
/// a raw ractor_cluster call to an echo actor in the same peer process, over the same link.
async fn ping_vs_raw(calls: usize) -> (Vec<f64>, Vec<f64>) {
    let me = IpAddr::from([127, 0, 63, 2]);
    let peer_ip = IpAddr::from([127, 0, 63, 3]);
    let port = free_port(&[me, peer_ip]).unwrap();
    let (_tx, rx) = watch::channel([peer(SocketAddr::new(peer_ip, port))].into());
    let observer = connector(me, port, rx).await;
    let mut events = observer.subscribe().await.unwrap();
    let _child = ChildProcess::spawn(
        Command::new(std::env::current_exe().unwrap())
            .args(["peer", &peer_ip.to_string(), &port.to_string()])
            .stdin(Stdio::null()),
    )
    .expect("spawn peer");
    let peer = match tokio::time::timeout(Duration::from_secs(30), events.events.recv()).await {
        Ok(Some(NodeEvent::Up(p))) => p,
        other => panic!("peer never came up: {other:?}"),
    };
    let echo: ActorRef<EchoMsg> =
        eventually("the peer's echo actor", Duration::from_secs(30), || async {
            peer.remote_actor(echo::SERVICE)
        })
        .await;
    let who = peer.id.name.clone();
    // Warm up both paths, then interleave them so both see the same machine state.
    for i in 0..500 {
        observer.ping(&who).await.unwrap();
        ractor::call_t!(echo, EchoMsg::Echo, 1000, i).unwrap();
    }
    let (mut ping, mut raw) = (Vec::with_capacity(calls), Vec::with_capacity(calls));
    for i in 0..calls as u64 {
        let t = Instant::now();
        ractor::call_t!(echo, EchoMsg::Echo, 1000, i).unwrap();
        raw.push(ms(t.elapsed()));
        let t = Instant::now();
        observer.ping(&who).await.unwrap();
        ping.push(ms(t.elapsed()));
    }
    (ping, raw)
}

/// `peer` mode: a connector plus the raw echo actor, until killed.
async fn run_peer(ip: IpAddr, port: u16) {
    let config = connector_config(ip, port, COOKIE);
    echo::spawn(&config.node).await;
    let (_tx, rx) = watch::channel(PeerSet::new());
    let _c = start_connector(config, rx).await;
    std::future::pending::<()>().await;
}

fn summary(label: &str, mut v: Vec<f64>) -> serde_json::Value {
    v.sort_by(f64::total_cmp);
    let (p50, p99, max) = (
        percentile(&v, 0.5).unwrap_or(f64::NAN),
        percentile(&v, 0.99).unwrap_or(f64::NAN),
        v.last().copied().unwrap_or(f64::NAN),
    );
    println!(
        "{label:<44} n={:<6} p50={p50:>9.3} ms  p99={p99:>9.3} ms  max={max:>9.3} ms",
        v.len()
    );
    serde_json::json!({ "n": v.len(), "p50_ms": p50, "p99_ms": p99, "max_ms": max })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if args.get(1).map(String::as_str) == Some("peer") {
        let ip: IpAddr = args[2].parse().unwrap();
        let port: u16 = args[3].parse().unwrap();
        rt.block_on(run_peer(ip, port));
        return;
    }
    if args.iter().any(|a| a == "--list") {
        return; // `cargo bench -- --list` compatibility
    }
    rt.block_on(async {
        let dns = dns::start().await.unwrap();
        println!("cluster formation benchmark (poll interval {} ms)", POLL.as_millis());
        let mesh = dns_to_mesh(&dns, 10).await;
        let (killed, frozen, thawed) = failures(5).await;
        let (ping, raw) = ping_vs_raw(10_000).await;
        let mesh = summary("DNS change -> full mesh", mesh);
        let killed = summary("SIGKILL -> reported down", killed);
        let frozen = summary("SIGSTOP -> reported down", frozen);
        let thawed = summary("SIGCONT -> up again", thawed);
        let ping_s = summary("ping (console path, connector + beacon)", ping);
        let raw_s = summary("raw ractor_cluster call (u64 echo)", raw);
        let ratio50 = ping_s["p50_ms"].as_f64().unwrap() / raw_s["p50_ms"].as_f64().unwrap();
        let ratio99 = ping_s["p99_ms"].as_f64().unwrap() / raw_s["p99_ms"].as_f64().unwrap();
        println!("ping / raw: p50 ratio {ratio50:.2}, p99 ratio {ratio99:.2}");
        let report = serde_json::json!({
            "poll_interval_ms": POLL.as_millis() as u64,
            "dns_to_mesh": mesh, "kill_detect": killed, "freeze_detect": frozen, "thaw_rejoin": thawed,
            "ping": ping_s, "raw_call": raw_s, "ping_raw_ratio_p50": ratio50, "ping_raw_ratio_p99": ratio99,
        });
        println!("{report}");
    });
}
