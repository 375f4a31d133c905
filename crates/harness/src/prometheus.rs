//! A real Prometheus server scraping real nodes, PromQL through its HTTP API, and
//! `promtool check metrics`: the Debian package `prometheus` ships both binaries.
//!
//! The server runs with a config, a TSDB and a log of the test's own, on a port of the
//! test's loopback net, so it never meets a system Prometheus (the package's service listens
//! on :9090 where an init system starts it). Test-only helpers: they panic with what failed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::process::ChildProcess;
use crate::wait::{eventually, scaled};

/// How long Prometheus may take to open its TSDB and answer `/-/ready`.
const READY_DEADLINE: Duration = Duration::from_secs(30);

/// The two binaries of the `prometheus` package.
#[derive(Debug, Clone)]
pub struct Tools {
    /// The server.
    pub prometheus: PathBuf,
    /// Its linter and query tool.
    pub promtool: PathBuf,
}

/// The first executable called `name` on `PATH`.
fn on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// `prometheus` and `promtool` from `PATH`. Without them: `None` after a loud notice on the
/// process's stderr (libtest would capture `eprintln!` of a passing test), so that `test`
/// passes on a machine without them; under `CI` a panic telling to install the package.
///
/// # Panics
/// Under `CI` when either binary is missing.
pub fn tools(test: &str) -> Option<Tools> {
    match (on_path("prometheus"), on_path("promtool")) {
        (Some(prometheus), Some(promtool)) => Some(Tools {
            prometheus,
            promtool,
        }),
        _ if std::env::var_os("CI").is_some() => {
            panic!("install Prometheus for the {test} test (apt-get install prometheus)")
        }
        _ => {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr().lock(),
                "\n\
                 ################################################################\n\
                 ## SKIPPED {test}: no prometheus or promtool on PATH\n\
                 ## (apt-get install prometheus).\n\
                 ################################################################\n"
            );
            None
        }
    }
}

/// `promtool check metrics` on `exposition`: whether it passed, and what it printed.
///
/// # Panics
/// When promtool cannot run.
pub fn check_metrics(promtool: &Path, exposition: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", promtool.display()));
    if let Some(mut stdin) = child.stdin.take() {
        // A write error shows as promtool's own complaint below.
        let _ = stdin.write_all(exposition.as_bytes());
    }
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("promtool did not finish: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// One sample of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The series' labels (`__name__` included when the result keeps it).
    pub labels: BTreeMap<String, String>,
    /// Its value (`NaN` and `±Inf` as Prometheus wrote them).
    pub value: f64,
}

/// A running Prometheus server; killed when dropped.
#[derive(Debug)]
pub struct Prometheus {
    /// `http://host:port`.
    pub url: String,
    http: reqwest::Client,
    log: PathBuf,
    _process: ChildProcess,
}

impl Prometheus {
    /// Starts `binary` listening on `listen`, scraping `targets` (`host:port`, job
    /// `minotaur`) every `interval`, with its config, TSDB and log (`prometheus.log`) in
    /// `dir`; returns once it is ready.
    ///
    /// # Panics
    /// When it does not start or is not ready within 30 s (scaled).
    pub async fn start(
        binary: &Path,
        listen: SocketAddr,
        targets: &[String],
        interval: Duration,
        dir: &Path,
    ) -> Prometheus {
        let secs = format!("{}ms", interval.as_millis());
        let list = targets
            .iter()
            .map(|t| format!("'{t}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let config = format!(
            "global:\n  scrape_interval: {secs}\n  scrape_timeout: {secs}\n  evaluation_interval: {secs}\n\
             scrape_configs:\n  - job_name: minotaur\n    static_configs:\n      - targets: [{list}]\n"
        );
        let config_file = dir.join("prometheus.yml");
        let data = dir.join("tsdb");
        let log = dir.join("prometheus.log");
        std::fs::write(&config_file, config)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", config_file.display()));
        let file = std::fs::File::create(&log)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
        let err = file
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot share {}: {e}", log.display()));
        let process = ChildProcess::spawn(
            Command::new(binary)
                .arg(format!("--config.file={}", config_file.display()))
                .arg(format!("--storage.tsdb.path={}", data.display()))
                .arg(format!("--web.listen-address={listen}"))
                .stdin(Stdio::null())
                .stdout(file)
                .stderr(err),
        )
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_else(|e| panic!("cannot build an HTTP client: {e}"));
        let prometheus = Prometheus {
            url: format!("http://{listen}"),
            http,
            log,
            _process: process,
        };
        let ready = format!("{}/-/ready", prometheus.url);
        eventually(
            &format!(
                "Prometheus ready at {ready} (log: {})",
                prometheus.log.display()
            ),
            scaled(READY_DEADLINE),
            || async {
                let r = prometheus.http.get(&ready).send().await.ok()?;
                r.status().is_success().then_some(())
            },
        )
        .await;
        prometheus
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The instant vector `promql` evaluates to now; `None` when Prometheus did not answer
    /// (the reason on stderr).
    ///
    /// # Panics
    /// When Prometheus refuses the query (bad PromQL is the test's bug) or its answer is not
    /// a vector.
    pub async fn try_query(&self, promql: &str) -> Option<Vec<Sample>> {
        let url = reqwest::Url::parse_with_params(
            &format!("{}/api/v1/query", self.url),
            &[("query", promql)],
        )
        .unwrap_or_else(|e| panic!("bad query URL: {e}"));
        let answer: Value = match self.http.get(url).send().await {
            Ok(r) => match r.json().await {
                Ok(v) => v,
                Err(e) => {
                    eprintln!("prometheus answer to {promql} unreadable: {e}");
                    return None;
                }
            },
            Err(e) => {
                eprintln!("prometheus did not answer {promql}: {e}");
                return None;
            }
        };
        assert_eq!(
            answer["status"], "success",
            "Prometheus refused {promql}: {answer}"
        );
        assert_eq!(
            answer["data"]["resultType"], "vector",
            "{promql} is not an instant vector: {answer}"
        );
        let result = answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        Some(
            result
                .iter()
                .map(|s| Sample {
                    labels: s["metric"]
                        .as_object()
                        .map(|m| {
                            m.iter()
                                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().into()))
                                .collect()
                        })
                        .unwrap_or_default(),
                    // [timestamp, "value"]; Prometheus writes NaN, +Inf, -Inf as Go does.
                    value: match s["value"][1].as_str().unwrap_or_default() {
                        "+Inf" => f64::INFINITY,
                        "-Inf" => f64::NEG_INFINITY,
                        v => v.parse().unwrap_or(f64::NAN),
                    },
                })
                .collect(),
        )
    }
}
