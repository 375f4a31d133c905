//! One real `minotaur start` process (`local-cluster`'s [`NodeProcess`]) as tests use it: its
//! environment, its console (`minotaur rpc`) with the same environment, and readers of what
//! it serves (metrics, `/api/cluster`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

pub use local_cluster::node::{DEFAULT_RUST_LOG, NodeProcess, get_json, name, names};

use crate::wait::scaled;

/// How long a console command may take before the test fails (scaled).
const RPC_DEADLINE: Duration = Duration::from_secs(30);

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

/// A node's console, as tests ask it: `minotaur rpc` with the node's own environment.
#[allow(async_fn_in_trait)] // awaited in place by tests, never through a `Send` bound
pub trait Console {
    /// `minotaur rpc --node <this node> ARGS` with this node's environment.
    async fn rpc(&self, args: &[&str]) -> Output;

    /// The names `rpc nodes` prints, sorted; `None` (and the reason on stderr) when the rpc
    /// fails, so that a failing console never passes for an empty cluster.
    async fn try_nodes(&self) -> Option<Vec<String>>;

    /// Like [`Console::try_nodes`].
    ///
    /// # Panics
    /// When the rpc fails, with the node's log.
    async fn nodes(&self) -> Vec<String>;
}

impl Console for NodeProcess {
    async fn rpc(&self, args: &[&str]) -> Output {
        rpc(self.binary(), &self.env, Some(&self.name), args).await
    }

    async fn try_nodes(&self) -> Option<Vec<String>> {
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

    async fn nodes(&self) -> Vec<String> {
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
