//! One real `minotaur start` process: exactly the environment it was given, and a log file of
//! its own. (Its console, `minotaur rpc`, is the harness's: only tests ask it.)

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::Error;
use crate::process::ChildProcess;

/// `RUST_LOG` of a node unless its environment sets one: discovery's decisions in full.
pub const DEFAULT_RUST_LOG: &str = "info,discovery=debug,ractor=warn,ractor_cluster=error";

/// The port a node listens on for HTTP unless `PORT` says otherwise.
const DEFAULT_HTTP_PORT: u16 = 4000;
/// The port a node listens on for nodes unless `CLUSTER_PORT` says otherwise.
const DEFAULT_CLUSTER_PORT: u16 = 9000;

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

/// A running `minotaur start` process; killed when dropped. Its `Debug` masks the cookie.
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

impl std::fmt::Debug for NodeProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let env: std::collections::BTreeMap<&str, &str> = self
            .env
            .iter()
            .map(|(k, v)| {
                let shown = if k.contains("COOKIE") && !k.ends_with("_FILE") && !k.ends_with("_DIR")
                {
                    "<redacted>"
                } else {
                    v.as_str()
                };
                (k.as_str(), shown)
            })
            .collect();
        f.debug_struct("NodeProcess")
            .field("name", &self.name)
            .field("ip", &self.ip)
            .field("env", &env)
            .field("binary", &self.binary)
            .field("log", &self.log)
            .field("process", &self.process)
            .finish()
    }
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

    /// The binary it runs (its consoles run the same).
    pub fn binary(&self) -> &Path {
        &self.binary
    }
}

/// `GET url` as JSON; `None` when it does not answer or the body is not JSON.
pub async fn get_json(http: &reqwest::Client, url: &str) -> Option<serde_json::Value> {
    http.get(url).send().await.ok()?.json().await.ok()
}
