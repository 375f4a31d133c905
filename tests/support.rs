//! Shared harness of the end-to-end tests: real `minotaur` processes, a real DNS server, ports
//! and loopback addresses per test, and a poll-with-deadline helper. Processes are killed when
//! their handle drops, so a failing test leaves nothing behind.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use discovery::dns_server::DnsServer;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::time::Instant;

/// The binary under test.
pub const MINOTAUR: &str = env!("CARGO_BIN_EXE_minotaur");

/// Scales every deadline (slow CI machines): `MINOTAUR_TEST_TIME_SCALE=3`.
pub fn scaled(d: Duration) -> Duration {
    let scale: f64 = std::env::var("MINOTAUR_TEST_TIME_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    d.mul_f64(scale)
}

/// Polls `check` every 50 ms until it returns `Some`, or panics after `deadline`.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let end = Instant::now() + scaled(deadline);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {deadline:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `count` loopback addresses 127.0.`net`.2, .3, ... (each test uses its own `net`).
pub fn loopbacks(net: u8, count: u8) -> Vec<IpAddr> {
    (2..2 + count)
        .map(|i| IpAddr::from([127, 0, net, i]))
        .collect()
}

/// A TCP port free on every address given.
pub fn free_port(ips: &[IpAddr]) -> u16 {
    minotaur::demo::free_port(ips).expect("a free port")
}

/// A real DNS server (hickory-server) on 127.0.0.1 whose records the test sets.
pub async fn dns() -> DnsServer {
    DnsServer::start("127.0.0.1:0".parse().expect("literal address"))
        .await
        .expect("start the test DNS server")
}

/// Where a test keeps its logs.
pub fn log_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join("minotaur-e2e").join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create log dir");
    dir
}

/// A running `minotaur start` process; killed on drop.
pub struct NodeProc {
    pub name: String,
    pub ip: IpAddr,
    pub env: HashMap<String, String>,
    child: Option<Child>,
    log: PathBuf,
}

impl NodeProc {
    /// Starts `minotaur start` with exactly `env` (plus PATH/HOME for sanity).
    pub fn start(ip: IpAddr, env: HashMap<String, String>, logs: &std::path::Path) -> NodeProc {
        let name = env
            .get("RELEASE_NODE")
            .cloned()
            .unwrap_or_else(|| format!("minotaur@{ip}"));
        let log = logs.join(format!("{ip}.log"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("open log");
        let child = Command::new(MINOTAUR)
            .arg("start")
            .env_clear()
            .envs(&env)
            .env(
                "RUST_LOG",
                "info,discovery=debug,ractor=warn,ractor_cluster=error",
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawn minotaur");
        NodeProc {
            name,
            ip,
            env,
            child: Some(child),
            log,
        }
    }

    /// The process id while the process is ours to signal.
    pub fn pid(&self) -> Option<Pid> {
        self.child.as_ref().map(|c| Pid::from_raw(c.id() as i32))
    }

    /// Sends `sig` to the process (never to pid 0, which would be the whole process group).
    pub fn signal(&self, sig: Signal) {
        if let Some(pid) = self.pid() {
            let _ = kill(pid, sig);
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits for the process to exit and returns its status code.
    pub async fn wait_exit(&mut self, deadline: Duration) -> Option<i32> {
        minotaur::demo::wait_child(&mut self.child, scaled(deadline)).await
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Resident memory in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.child
            .as_ref()
            .map_or(0, |c| minotaur::demo::rss_bytes(c.id()) / 1024)
    }

    /// `minotaur rpc --node <this node> ARGS` with this node's environment.
    pub async fn rpc(&self, args: &[&str]) -> Output {
        rpc(&self.env, Some(&self.name), args).await
    }

    /// The names `rpc nodes` prints, sorted; `None` (and the reason on stderr) when the rpc
    /// fails, so that a failing console never passes for an empty cluster.
    pub async fn try_nodes(&self) -> Option<Vec<String>> {
        let out = self.rpc(&["nodes"]).await;
        if !out.status.success() {
            eprintln!(
                "rpc nodes on {} failed: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr)
            );
            return None;
        }
        let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .filter(|l| !l.is_empty())
            .collect();
        v.sort();
        Some(v)
    }

    /// Like [`NodeProc::try_nodes`], panicking when the rpc fails.
    pub async fn nodes(&self) -> Vec<String> {
        match self.try_nodes().await {
            Some(v) => v,
            None => panic!(
                "`minotaur rpc nodes` failed on {}:\n{}",
                self.name,
                self.log()
            ),
        }
    }

    pub fn cluster_addr(&self) -> SocketAddr {
        let port = self
            .env
            .get("CLUSTER_PORT")
            .and_then(|p| p.parse().ok())
            .unwrap_or(9000);
        SocketAddr::new(self.ip, port)
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        // A stopped process ignores SIGKILL until continued only in exotic kernels; continue
        // it first anyway.
        self.signal(Signal::SIGCONT);
        self.kill();
    }
}

/// Runs `minotaur rpc` with `env` (cookie, port) against `node`.
pub async fn rpc(env: &HashMap<String, String>, node: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::new(MINOTAUR);
    cmd.arg("rpc");
    if let Some(n) = node {
        cmd.args(["--node", n]);
    }
    cmd.args(args).env_clear().envs(env).kill_on_drop(true);
    match tokio::time::timeout(scaled(Duration::from_secs(30)), cmd.output()).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => panic!("cannot run minotaur rpc: {e}"),
        Err(_) => panic!("minotaur rpc {args:?} hung"),
    }
}

/// The environment of a node named `minotaur@ip`.
pub fn node_env(ip: IpAddr, port: u16, cookie: &str) -> HashMap<String, String> {
    HashMap::from([
        ("RELEASE_NODE".to_string(), format!("minotaur@{ip}")),
        ("RELEASE_COOKIE".to_string(), cookie.to_string()),
        ("CLUSTER_PORT".to_string(), port.to_string()),
        ("PORT".to_string(), "0".to_string()),
    ])
}

/// Names of `ips` as nodes, sorted.
pub fn names(ips: &[IpAddr]) -> Vec<String> {
    let mut v: Vec<String> = ips.iter().map(|ip| format!("minotaur@{ip}")).collect();
    v.sort();
    v
}
