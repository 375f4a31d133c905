//! One real `minotaur start` process: exactly the environment it was given, a log file of its
//! own, and its console (`minotaur rpc`) with the same environment.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::Error;
use crate::process::ChildProcess;
use crate::wait::scaled;

/// `RUST_LOG` of a node unless its environment sets one: discovery's decisions in full.
pub const DEFAULT_RUST_LOG: &str = "info,discovery=debug,ractor=warn,ractor_cluster=error";

/// The port a node listens on for HTTP unless `PORT` says otherwise.
const DEFAULT_HTTP_PORT: u16 = 4000;
/// The port a node listens on for nodes unless `CLUSTER_PORT` says otherwise.
const DEFAULT_CLUSTER_PORT: u16 = 9000;

/// How long a console command may take before the test fails (scaled).
const RPC_DEADLINE: Duration = Duration::from_secs(30);

/// The name of the node on `ip`: `minotaur@ip`.
pub fn name(ip: IpAddr) -> String {
    format!("minotaur@{ip}")
}

/// The names of the nodes on `ips`, sorted (as `minotaur rpc nodes` prints them).
pub fn names(ips: &[IpAddr]) -> Vec<String> {
    let mut v: Vec<String> = ips.iter().map(|ip| name(*ip)).collect();
    v.sort();
    v
}

/// The environment of the node `minotaur@ip` with cluster port `port` and cookie `cookie`,
/// HTTP on a port of the system's choosing.
pub fn node_env(ip: IpAddr, port: u16, cookie: &str) -> HashMap<String, String> {
    HashMap::from([
        ("RELEASE_NODE".to_string(), name(ip)),
        ("RELEASE_COOKIE".to_string(), cookie.to_string()),
        ("CLUSTER_PORT".to_string(), port.to_string()),
        ("PORT".to_string(), "0".to_string()),
    ])
}

/// A running `minotaur start` process; killed when dropped.
#[derive(Debug)]
pub struct NodeProcess {
    /// Its node name (`RELEASE_NODE`, else `minotaur@ip`).
    pub name: String,
    /// The address it runs on.
    pub ip: IpAddr,
    /// The environment it runs with, and its consoles too (cookie, port).
    pub env: HashMap<String, String>,
    /// The binary it runs; its consoles run the same.
    binary: PathBuf,
    /// Its stderr.
    log: PathBuf,
    process: ChildProcess,
}

impl NodeProcess {
    /// Starts `binary start` on `ip` with exactly `env` (and [`DEFAULT_RUST_LOG`] unless `env`
    /// sets `RUST_LOG`), its stderr appended to `<logs>/<ip>.log`.
    pub fn start(
        binary: impl AsRef<Path>,
        ip: IpAddr,
        env: HashMap<String, String>,
        logs: &Path,
    ) -> Result<NodeProcess, Error> {
        Self::start_with(&[], binary, ip, env, logs)
    }

    /// As [`NodeProcess::start`], with the command run through `prefix` (e.g. `ip netns exec
    /// NAME`, which execs it: the process is the node's own).
    pub fn start_with(
        prefix: &[String],
        binary: impl AsRef<Path>,
        ip: IpAddr,
        env: HashMap<String, String>,
        logs: &Path,
    ) -> Result<NodeProcess, Error> {
        let binary = binary.as_ref().to_path_buf();
        let node_name = env.get("RELEASE_NODE").cloned().unwrap_or_else(|| name(ip));
        let log = logs.join(format!("{ip}.log"));
        // Appended: a node restarted on the same address keeps the story in one file.
        let file = OpenOptions::new().create(true).append(true).open(&log)?;
        let mut command = match prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(&binary);
                c
            }
            None => Command::new(&binary),
        };
        let process = ChildProcess::spawn(
            command
                .arg("start")
                .env_clear()
                .env("RUST_LOG", DEFAULT_RUST_LOG)
                .envs(&env)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(file),
        )
        .map_err(|source| Error::Spawn {
            binary: binary.clone(),
            source,
        })?;
        Ok(NodeProcess {
            name: node_name,
            ip,
            env,
            binary,
            log,
            process,
        })
    }

    /// Sends `sig` to the process while it is ours.
    pub fn signal(&self, sig: Signal) {
        self.process.signal(sig);
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Waits up to `timeout` (not scaled) for the process to exit; its exit code.
    pub async fn wait(&mut self, timeout: Duration) -> Option<i32> {
        self.process.wait(timeout).await
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// Resident memory in bytes.
    pub fn rss_bytes(&self) -> u64 {
        self.process.rss_bytes()
    }

    /// What it has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its HTTP base URL (`http://ip:PORT`).
    pub fn url(&self) -> String {
        format!(
            "http://{}:{}",
            self.ip,
            self.port("PORT", DEFAULT_HTTP_PORT)
        )
    }

    /// Where it listens for nodes and consoles.
    pub fn cluster_addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.port("CLUSTER_PORT", DEFAULT_CLUSTER_PORT))
    }

    fn port(&self, var: &str, default: u16) -> u16 {
        self.env
            .get(var)
            .and_then(|p| p.parse().ok())
            .unwrap_or(default)
    }

    /// `minotaur rpc --node <this node> ARGS` with this node's environment.
    pub async fn rpc(&self, args: &[&str]) -> Output {
        rpc(&self.binary, &self.env, Some(&self.name), args).await
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
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        v.sort();
        Some(v)
    }

    /// Like [`NodeProcess::try_nodes`].
    ///
    /// # Panics
    /// When the rpc fails, with the node's log.
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
}

/// Runs `binary rpc [--node NODE] ARGS` with exactly `env` (cookie, port).
///
/// # Panics
/// When the console cannot run or hangs for 30 s (scaled).
pub async fn rpc(
    binary: impl AsRef<Path>,
    env: &HashMap<String, String>,
    node: Option<&str>,
    args: &[&str],
) -> Output {
    let mut cmd = tokio::process::Command::new(binary.as_ref());
    cmd.arg("rpc");
    if let Some(n) = node {
        cmd.args(["--node", n]);
    }
    cmd.args(args).env_clear().envs(env).kill_on_drop(true);
    match tokio::time::timeout(scaled(RPC_DEADLINE), cmd.output()).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => panic!("cannot run minotaur rpc: {e}"),
        Err(_) => panic!("minotaur rpc {args:?} hung"),
    }
}
