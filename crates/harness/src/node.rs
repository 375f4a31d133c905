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

/// The sum of every series of the counter or gauge `name` in a Prometheus text exposition
/// (`name` and `name{...}` lines; 0 when there is none).
pub fn metric_sum(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let value = match rest.strip_prefix('{') {
                Some(labelled) => labelled.split_once('}')?.1,
                None if rest.starts_with(' ') => rest,
                None => return None,
            };
            value.split_whitespace().next()?.parse::<f64>().ok()
        })
        .sum()
}

/// `GET url` as JSON; `None` when it does not answer or the body is not JSON.
pub async fn get_json(http: &reqwest::Client, url: &str) -> Option<serde_json::Value> {
    http.get(url).send().await.ok()?.json().await.ok()
}

/// From a node's `GET /api/cluster`: its name, the other nodes it is connected to and the
/// members it sees alive (both sorted); `None` when it does not answer.
pub async fn cluster_view(
    http: &reqwest::Client,
    url: &str,
) -> Option<(String, Vec<String>, Vec<String>)> {
    let v = get_json(http, &format!("{url}/api/cluster")).await?;
    let mut nodes: Vec<String> = v["nodes"]
        .as_array()?
        .iter()
        .filter_map(|x| x.as_str().map(String::from))
        .collect();
    nodes.sort();
    let mut alive: Vec<String> = v["members"]
        .as_array()?
        .iter()
        .filter(|m| m["status"] == "alive")
        .filter_map(|m| m["node"].as_str().map(String::from))
        .collect();
    alive.sort();
    Some((v["node"].as_str()?.to_string(), nodes, alive))
}

/// HTTP requests a node answered, by status class (`1xx` .. `5xx`): the `_count` series of
/// `minotaur_http_request_duration_seconds` in a text exposition, summed by the first digit of
/// their `status` label.
pub fn requests_by_status_class(exposition: &str) -> [(&'static str, f64); 5] {
    let mut classes = [
        ("1xx", 0.0),
        ("2xx", 0.0),
        ("3xx", 0.0),
        ("4xx", 0.0),
        ("5xx", 0.0),
    ];
    for line in exposition.lines() {
        let Some(rest) = line.strip_prefix("minotaur_http_request_duration_seconds_count{") else {
            continue;
        };
        let Some((labels, value)) = rest.split_once('}') else {
            continue;
        };
        let digit = labels
            .split(',')
            .find_map(|l| l.strip_prefix("status=\""))
            .and_then(|v| v.chars().next())
            .and_then(|c| c.to_digit(10));
        let value = value
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok());
        if let (Some(d @ 1..=5), Some(v)) = (digit, value) {
            classes[d as usize - 1].1 += v;
        }
    }
    classes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_status_class() {
        let text = "# TYPE minotaur_http_request_duration_seconds histogram\n\
            minotaur_http_request_duration_seconds_bucket{method=\"GET\",route=\"/\",status=\"200\",le=\"0.5\"} 3\n\
            minotaur_http_request_duration_seconds_count{method=\"GET\",route=\"/\",status=\"200\"} 3\n\
            minotaur_http_request_duration_seconds_count{method=\"GET\",route=\"/ws\",status=\"101\"} 1\n\
            minotaur_http_request_duration_seconds_count{method=\"GET\",route=\"unmatched\",status=\"404\"} 2\n";
        assert_eq!(
            requests_by_status_class(text),
            [
                ("1xx", 1.0),
                ("2xx", 3.0),
                ("3xx", 0.0),
                ("4xx", 2.0),
                ("5xx", 0.0)
            ]
        );
    }

    #[test]
    fn metric_sum_adds_every_series_of_one_name_only() {
        let text = "# TYPE minotaur_http_requests counter\n\
                    minotaur_http_requests_total{class=\"2xx\"} 5\n\
                    minotaur_http_requests_total{class=\"4xx\"} 2\n\
                    minotaur_http_requests_total_other 100\n\
                    minotaur_routed_messages_total 7\n";
        assert_eq!(metric_sum(text, "minotaur_http_requests_total"), 7.0);
        assert_eq!(metric_sum(text, "minotaur_routed_messages_total"), 7.0);
        assert_eq!(metric_sum(text, "minotaur_nothing"), 0.0);
    }
}
