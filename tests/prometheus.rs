//! Metrics as Prometheus sees them, end to end: `promtool check metrics` on a real node's
//! `/metrics`, and a real Prometheus server scraping three real nodes every second while
//! games are played and one node drains (the console's `drain`: the node stays up, so its
//! last counts are scraped), then PromQL through Prometheus's HTTP API.
//!
//! Needs `prometheus` and `promtool` on `PATH` (Debian package `prometheus`). Without them
//! the tests pass with a loud notice, so that `cargo test` runs on any machine, except when
//! `CI` is set: there they fail, telling to `apt-get install prometheus`.
//!
//! Run with `--nocapture` to see each query and what it returned.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use harness::cluster::{Cluster, ClusterOptions};
use harness::load::Load;
use harness::node::Console;
use harness::ports::free_port;
use harness::prometheus::{self, Prometheus, Sample};
use harness::wait::eventually;
use serde_json::Value;
use support::MINOTAUR;

/// Every route template of the HTTP server, and the label of requests none matched: the only
/// values `route` may take.
const ROUTES: [&str; 9] = [
    "/",
    "/healthz",
    "/metrics",
    "/api/cluster",
    "/api/games",
    "/api/games/{id}",
    "/api/games/{id}/input",
    "/api/games/{id}/ws",
    "unmatched",
];

/// The lines of `text` that are samples of `metric` (its name then `{` or a space).
fn samples<'a>(text: &'a str, metric: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    text.lines().filter(move |l| {
        l.strip_prefix(metric)
            .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
    })
}

/// The value of the one sample of `metric` exactly as `series` (name and labels) in `text`.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_finds_nothing_wrong_in_a_nodes_metrics() {
    let Some(tools) = prometheus::tools("promtool_finds_nothing_wrong_in_a_nodes_metrics") else {
        return;
    };
    let cluster = Cluster::start(ClusterOptions::new(MINOTAUR, 78, 1, "prometheus-promtool"))
        .await
        .unwrap();
    let url = cluster.urls()[0].clone();
    let http = cluster.http().clone();
    // Games played, so that every histogram has observations and labelled series.
    let load = Load::start(&http, 2, 2, 50.0, cluster.targets())
        .await
        .unwrap();
    let metrics = || async {
        let r = http.get(format!("{url}/metrics")).send().await.ok()?;
        let content_type = r.headers().get("content-type")?.to_str().ok()?.to_string();
        Some((content_type, r.text().await.ok()?))
    };
    eventually("inputs applied", Duration::from_secs(20), || async {
        let (_, text) = metrics().await?;
        (value(&text, "minotaur_input_duration_seconds_count")? >= 10.0).then_some(())
    })
    .await;
    load.stop().await;
    let r = http
        .get(format!("{url}/api/games/ABCDEF/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    let (content_type, text) = metrics().await.unwrap();
    let (passed, lint) = prometheus::check_metrics(&tools.promtool, &text);
    eprintln!("promtool check metrics: passed={passed}, output:\n{lint}");
    assert!(
        passed && lint.trim().is_empty(),
        "promtool: {lint}\non:\n{text}"
    );

    // The text format, which promtool and curl get: counters are named by their sample.
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert!(
        text.contains(
            "# TYPE minotaur_games_created_total counter\nminotaur_games_created_total 2\n"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "# TYPE minotaur_handoffs_out_total counter\nminotaur_handoffs_out_total 0\n"
        ),
        "{text}"
    );
    assert!(!text.contains("# EOF"), "{text}");
    assert!(
        text.contains(&format!(
            "minotaur_build_info{{version=\"{}\",schema=\"{}\"}} 1\n",
            game::APP_VERSION,
            game::STATE_SCHEMA
        )),
        "{text}"
    );
    for h in [
        "minotaur_handoff_pause_seconds",
        "minotaur_input_duration_seconds",
        "minotaur_http_request_duration_seconds",
    ] {
        assert!(
            text.contains(&format!("# TYPE {h} histogram\n")),
            "{h}: {text}"
        );
    }
    assert!(
        text.contains("minotaur_handoff_pause_seconds_bucket{le=\"0.001\"} 0\n"),
        "{text}"
    );
    let inputs = value(&text, "minotaur_input_duration_seconds_count").unwrap();
    assert_eq!(
        value(&text, "minotaur_input_duration_seconds_bucket{le=\"+Inf\"}"),
        Some(inputs)
    );
    assert!(
        samples(&text, "minotaur_http_request_duration_seconds_count").any(|l| l
            .starts_with(
                "minotaur_http_request_duration_seconds_count{method=\"POST\",route=\"/api/games/{id}/input\",status=\"200\"} "
            )),
        "{text}"
    );
    assert!(
        text.contains("minotaur_http_request_duration_seconds_count{method=\"GET\",route=\"unmatched\",status=\"404\"} 1\n"),
        "{text}"
    );
    assert!(!text.contains("/nope"), "a raw path became a label: {text}");

    // Prometheus asks for OpenMetrics, and gets it as prometheus-client writes it.
    let r = http
        .get(format!("{url}/metrics"))
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let om = r.text().await.unwrap();
    assert!(
        om.contains("# TYPE minotaur_games_created counter\nminotaur_games_created_total 2\n"),
        "{om}"
    );
    assert!(om.ends_with("# EOF\n"), "{om}");
    cluster.shutdown().await;
}

/// Prints `promql` and what it returned (seen with `--nocapture`).
fn show(promql: &str, result: &[Sample]) {
    let values: Vec<String> = result
        .iter()
        .map(|s| {
            let labels: Vec<String> = s
                .labels
                .iter()
                .filter(|(k, _)| *k != "job")
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            format!("{{{}}} {}", labels.join(","), s.value)
        })
        .collect();
    println!("  {promql}\n    => {}", values.join("\n       "));
}

/// The one value `promql` returns, once it returns one that `ok` accepts.
async fn scalar(p: &Prometheus, promql: &str, ok: impl Fn(f64) -> bool) -> f64 {
    eventually(
        &format!("{promql} (log: see prometheus.log)"),
        Duration::from_secs(30),
        || async {
            let r = p.try_query(promql).await?;
            match r.as_slice() {
                [one] if ok(one.value) => {
                    show(promql, &r);
                    Some(one.value)
                }
                _ => None,
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_three_nodes_through_a_drain() {
    let Some(tools) = prometheus::tools("prometheus_scrapes_three_nodes_through_a_drain") else {
        return;
    };
    let net = 77;
    let opts = ClusterOptions::new(MINOTAUR, net, 3, "prometheus-drain");
    let log_dir = opts.log_dir.clone();
    let cluster = Cluster::start(opts).await.unwrap();
    // A node that drains and exits must not take its games' pauses with it: they are recorded
    // where each game resumes (README, "Metrics").
    let load = Load::start(cluster.http(), 30, 6, 100.0, cluster.targets())
        .await
        .unwrap();
    let targets: Vec<String> = cluster
        .urls()
        .iter()
        .map(|u| u.trim_start_matches("http://").to_string())
        .collect();
    let drained = targets[0].clone();
    let ip = std::net::IpAddr::from([127, 0, net, 1]);
    let listen = SocketAddr::new(ip, free_port(&[ip]).unwrap());
    let prom = Prometheus::start(
        &tools.prometheus,
        listen,
        &targets,
        Duration::from_secs(1),
        &log_dir,
    )
    .await;
    println!("Prometheus at {} scraping {targets:?} every 1 s", prom.url);

    println!("before the drain:");
    scalar(&prom, "sum(up{job=\"minotaur\"})", |v| v == 3.0).await;
    // Scraped with nothing moved yet: the drain's pauses show as an increase.
    scalar(&prom, "sum(minotaur_handoff_pause_seconds_count)", |v| {
        v == 0.0
    })
    .await;
    scalar(&prom, "sum(minotaur_input_duration_seconds_count)", |v| {
        v > 0.0
    })
    .await;

    // Replaced as an update does it: out of DNS, SIGTERM, its games handed off, exit. Its
    // pauses are recorded by the nodes where its games resume, which stay to be scraped.
    let hosted = format!("minotaur_games_hosted{{instance=\"{drained}\"}}");
    let moved = scalar(&prom, &hosted, |v| v >= 1.0).await as u64;
    let mut cluster = cluster;
    let code = cluster.drain(0).await;
    assert_eq!(code, Some(0), "the drained node exits 0");
    println!("drained and stopped {drained}, which hosted {moved} games");

    println!("after the drain:");
    let elsewhere = format!("sum(minotaur_handoff_pause_seconds_count{{instance!=\"{drained}\"}})");
    let scraped = scalar(&prom, &elsewhere, |v| v >= moved as f64).await;
    // What Prometheus scraped is what the console's `stats` reads from the same histograms.
    let mut pauses = 0.0;
    let mut handed_in = 0;
    for node in &cluster.nodes {
        let out = node.rpc(&["--json", "stats"]).await;
        assert!(out.status.success(), "stats: {out:?}");
        let stats: Value = serde_json::from_slice(&out.stdout).unwrap();
        println!("console stats on {}: {stats}", node.name);
        pauses += stats["handoff_pauses"].as_f64().unwrap();
        handed_in += stats["handoffs_in"].as_u64().unwrap();
        if stats["handoff_pauses"].as_f64() > Some(0.0) {
            assert!(
                stats["handoff_pause_p99_ms"].as_f64().unwrap() > 0.0,
                "{stats}"
            );
        }
    }
    assert_eq!(pauses, scraped, "console stats and Prometheus disagree");
    assert!(handed_in >= moved, "{handed_in} handed in, {moved} moved");
    scalar(&prom, "sum(minotaur_handoffs_in_total)", |v| {
        v >= moved as f64
    })
    .await;
    let q99 = scalar(
        &prom,
        "histogram_quantile(0.99, sum by (le) (increase(minotaur_handoff_pause_seconds_bucket[5m])))",
        |v| v.is_finite() && v > 0.0,
    )
    .await;
    // The largest finite bucket bound: a quantile in the +Inf bucket would be reported as it.
    assert!(q99 <= 10.0, "{q99}");
    scalar(
        &prom,
        "histogram_quantile(0.5, sum by (le) (increase(minotaur_handoff_pause_seconds_bucket[5m])))",
        |v| v.is_finite() && v > 0.0,
    )
    .await;
    scalar(
        &prom,
        "histogram_quantile(0.99, sum by (le) (rate(minotaur_input_duration_seconds_bucket[1m])))",
        |v| v.is_finite() && v > 0.0,
    )
    .await;
    scalar(
        &prom,
        "sum(rate(minotaur_http_request_duration_seconds_count{route=\"/api/games/{id}/input\",status=\"200\"}[1m]))",
        |v| v > 0.0,
    )
    .await;
    scalar(
        &prom,
        "histogram_quantile(0.99, sum by (le) (rate(minotaur_http_request_duration_seconds_bucket{route=\"/api/games/{id}/input\"}[1m])))",
        |v| v.is_finite() && v > 0.0,
    )
    .await;

    // Bounded labels: every route is a template of the router, every method a name.
    let routes = "count by (route, method) (minotaur_http_request_duration_seconds_count)";
    let r = prom.try_query(routes).await.unwrap();
    show(routes, &r);
    let seen: BTreeSet<&str> = r.iter().map(|s| s.labels["route"].as_str()).collect();
    assert!(seen.contains("/api/games/{id}/input"), "{seen:?}");
    assert!(seen.iter().all(|r| ROUTES.contains(r)), "{seen:?}");

    let info = "minotaur_build_info";
    let r = prom.try_query(info).await.unwrap();
    show(info, &r);
    assert!(r.len() >= 2, "{r:?}");
    for s in &r {
        assert_eq!(s.labels["version"], game::APP_VERSION);
        assert_eq!(s.labels["schema"], game::STATE_SCHEMA.to_string());
        assert_eq!(s.value, 1.0);
    }

    load.stop().await;
    cluster.shutdown().await;
    drop(prom);
}
