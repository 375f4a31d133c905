//! `/metrics` in the Prometheus formats (prometheus-client). Horde's counters and its pause
//! histogram are read at scrape time by a collector; HTTP requests are timed by a middleware;
//! inputs are timed where they are applied (HTTP and WebSocket).
//!
//! Label values are bounded: `route` is the route template (`/api/games/{id}`), never the
//! path a client sent; `method` is one of the standard methods or `other`.
//!
//! A scrape that accepts OpenMetrics (Prometheus does) gets it as prometheus-client writes it;
//! anything else (`curl`, `promtool check metrics`) gets the Prometheus text format 0.0.4,
//! where a counter's `# TYPE` line names its `_total` sample.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use horde::{Histogram as HordeHistogram, HistogramSnapshot, LATENCY_BUCKETS};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::time::Instant;

use super::AppState;
use crate::games::Games;

/// The `route` label of a request no route matched (the fallback's 404).
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Content type of the OpenMetrics exposition.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Content type of the Prometheus text exposition.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Labels of the HTTP request histogram.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    /// `GET`, `POST`, ... or `other`.
    method: &'static str,
    /// The route template, or [`UNMATCHED_ROUTE`].
    route: String,
    /// The status code.
    status: u16,
}

/// Labels of `minotaur_undecodable_messages_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    /// The message kind as this build names it, or `unknown` (a bounded set).
    kind: &'static str,
}

/// Labels of `minotaur_build_info`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    /// The app version, as `members` shows it.
    version: String,
    /// The game state schema this build writes.
    schema: String,
}

/// The node's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Histogram>,
    /// Games created through this node.
    pub games_created: Counter,
    /// Time to apply an input (HTTP and WebSocket), applied inputs only. A horde histogram
    /// rather than prometheus-client's, whose buckets cannot be read back: the console's
    /// `stats` estimates its percentiles from the same buckets `/metrics` exports.
    inputs: Arc<HordeHistogram>,
    /// Open WebSockets.
    pub websockets: Gauge,
}

/// Writes `h` as a histogram named `name` (no labels).
fn encode_histogram(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    h: &HistogramSnapshot,
) -> Result<(), std::fmt::Error> {
    encoder
        .encode_descriptor(name, help, None, MetricType::Histogram)?
        .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            h.sum.as_secs_f64(),
            h.count,
            &h.buckets,
            None,
        )
}

/// Reads horde's state and the input histogram at scrape time.
#[derive(Debug)]
struct HordeCollector {
    games: Games,
    inputs: Arc<HordeHistogram>,
}

impl Collector for HordeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let horde = self.games.horde();
        let s = horde.stats();
        // Counter names without `_total`: the encoder appends it to the sample.
        let counters: [(&str, &str, u64); 10] = [
            (
                "minotaur_handoffs_out",
                "Games moved away from this node",
                s.handoffs_out,
            ),
            (
                "minotaur_handoffs_in",
                "Games received from other nodes",
                s.handoffs_in,
            ),
            (
                "minotaur_handoff_failures",
                "Moves that failed and were rolled back",
                s.handoff_failures,
            ),
            (
                "minotaur_forwarded_messages",
                "Messages forwarded from a stale owner",
                s.forwarded,
            ),
            (
                "minotaur_routed_messages",
                "Messages routed to another node",
                s.routed,
            ),
            (
                "minotaur_conflicts",
                "Name conflicts settled after a partition",
                s.conflicts,
            ),
            (
                "minotaur_restarts_from_snapshot",
                "Games restarted from a snapshot after their node died",
                s.restarts_from_snapshot,
            ),
            (
                "minotaur_restarts_from_spec",
                "Games restarted from scratch after their node died",
                s.restarts_from_spec,
            ),
            (
                "minotaur_drain_fallbacks",
                "Games a drain could not move live",
                s.drain_fallbacks,
            ),
            (
                "minotaur_game_crashes",
                "Games restarted after a crash",
                s.crashes,
            ),
        ];
        for (name, help, value) in counters {
            let c = ConstCounter::new(value);
            c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        // Messages from other members that did not decode, by kind: a node of another release
        // in the cluster (see the README's "Upgrading"). Only kinds seen have a sample.
        {
            let mut family = encoder.encode_descriptor(
                "minotaur_undecodable_messages",
                "Messages from other nodes that could not be decoded, by kind (dropped; the first of each kind is logged)",
                None,
                MetricType::Counter,
            )?;
            for (kind, n) in &s.undecodable {
                let c = ConstCounter::new(*n);
                c.encode(family.encode_family(&KindLabels { kind })?)?;
            }
        }
        let gauges: [(&str, &str, i64); 7] = [
            (
                "minotaur_protocol_in_use",
                "The horde protocol version the cluster uses: the highest every member speaks",
                i64::from(horde.protocols().1),
            ),
            (
                "minotaur_games_hosted",
                "Games hosted on this node",
                horde.local_names().len() as i64,
            ),
            (
                "minotaur_registry_names",
                "Games in this node's registry replica",
                horde.registry_len() as i64,
            ),
            (
                "minotaur_registry_tombstones",
                "Removed games this node's registry still remembers (collected once every node has them)",
                s.tombstones as i64,
            ),
            (
                "minotaur_backup_replicas",
                "Games whose state this node keeps as their backup",
                s.replicas_held as i64,
            ),
            (
                "minotaur_members",
                "Live horde members, this node included",
                horde
                    .members()
                    .iter()
                    .filter(|m| m.status != horde::MemberStatus::Dead)
                    .count() as i64,
            ),
            (
                "minotaur_ready",
                "1 when this node is ready",
                i64::from(horde.is_ready()),
            ),
        ];
        for (name, help, value) in gauges {
            let g = ConstGauge::new(value);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        encode_histogram(
            &mut encoder,
            "minotaur_handoff_pause_seconds",
            "How long each game that resumed on this node after a move could not process inputs (freeze at its previous node to resume here; recorded by the previous node when it is of the previous release, and by this node for a move that failed)",
            &s.pauses,
        )?;
        encode_histogram(
            &mut encoder,
            "minotaur_input_duration_seconds",
            "Time to apply an input received by this node (HTTP and WebSocket)",
            &self.inputs.snapshot(),
        )
    }
}

impl Metrics {
    /// Metrics reading `games` at scrape time.
    pub fn new(games: &Games) -> Self {
        let mut registry = Registry::default();
        let requests: Family<RequestLabels, Histogram> =
            Family::new_with_constructor(|| Histogram::new(LATENCY_BUCKETS));
        let games_created = Counter::default();
        let inputs = Arc::new(HordeHistogram::default());
        let websockets = Gauge::default();
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: game::APP_VERSION.to_string(),
                schema: game::STATE_SCHEMA.to_string(),
            })
            .set(1);
        registry.register(
            "minotaur_http_request_duration_seconds",
            "HTTP requests by method, route template and status, until the response head",
            requests.clone(),
        );
        registry.register(
            "minotaur_games_created",
            "Games created through this node",
            games_created.clone(),
        );
        registry.register("minotaur_websockets", "Open WebSockets", websockets.clone());
        registry.register(
            "minotaur_build_info",
            "Always 1: the app version and the game state schema this node writes",
            build,
        );
        registry.register_collector(Box::new(HordeCollector {
            games: games.clone(),
            inputs: inputs.clone(),
        }));
        Self {
            registry,
            requests,
            games_created,
            inputs,
            websockets,
        }
    }

    /// Counts one applied input that took `took`.
    pub fn input_applied(&self, took: Duration) {
        self.inputs.observe(took);
    }

    /// Applied inputs' durations so far.
    pub fn input_durations(&self) -> HistogramSnapshot {
        self.inputs.snapshot()
    }

    /// The OpenMetrics exposition.
    fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// The Prometheus text format (0.0.4) of prometheus-client's OpenMetrics text: a counter's
/// `# HELP`/`# TYPE` lines name its `_total` sample, as that format's parsers (Prometheus,
/// `promtool check metrics`) expect; `# UNIT` and `# EOF`, which it lacks, are dropped. The
/// samples are the same in both.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len() + 16 * counters.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let descriptor = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match descriptor {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                out.push_str(prefix);
                out.push_str(name);
                if counters.contains(name) {
                    out.push_str("_total");
                }
                if !tail.is_empty() {
                    out.push(' ');
                    out.push_str(tail);
                }
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// True when the `Accept` header asks for OpenMetrics (Prometheus's scrapes do).
fn wants_openmetrics(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"))
}

/// `GET /metrics`.
pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Ok(body) = state.metrics.encode() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    if wants_openmetrics(&headers) {
        ([(header::CONTENT_TYPE, OPENMETRICS)], body).into_response()
    } else {
        (
            [(header::CONTENT_TYPE, PROMETHEUS_TEXT)],
            to_prometheus_text(&body),
        )
            .into_response()
    }
}

/// The `method` label: the standard methods by name, anything else as `other` (a client may
/// send any token as a method; labels must stay few).
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// Times every request, by method, route template and status.
pub async fn observe_requests(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(req.method());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED_ROUTE, MatchedPath::as_str)
        .to_string();
    let res = next.run(req).await;
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            method,
            route,
            status: res.status().as_u16(),
        })
        .observe(started.elapsed().as_secs_f64());
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_named_by_their_total_sample_in_the_text_format() {
        let om = "# HELP minotaur_games_created Games created.\n\
                  # TYPE minotaur_games_created counter\n\
                  minotaur_games_created_total 3\n\
                  # HELP minotaur_ready 1 when ready.\n\
                  # TYPE minotaur_ready gauge\n\
                  minotaur_ready 1\n\
                  # HELP x_seconds A histogram.\n\
                  # TYPE x_seconds histogram\n\
                  # UNIT x_seconds seconds\n\
                  x_seconds_sum 0.5\n\
                  x_seconds_count 1\n\
                  x_seconds_bucket{le=\"+Inf\"} 1\n\
                  # EOF\n";
        assert_eq!(
            to_prometheus_text(om),
            "# HELP minotaur_games_created_total Games created.\n\
             # TYPE minotaur_games_created_total counter\n\
             minotaur_games_created_total 3\n\
             # HELP minotaur_ready 1 when ready.\n\
             # TYPE minotaur_ready gauge\n\
             minotaur_ready 1\n\
             # HELP x_seconds A histogram.\n\
             # TYPE x_seconds histogram\n\
             x_seconds_sum 0.5\n\
             x_seconds_count 1\n\
             x_seconds_bucket{le=\"+Inf\"} 1\n"
        );
    }

    #[test]
    fn only_standard_methods_are_labelled_by_name() {
        assert_eq!(method_label(&Method::GET), "GET");
        let odd = Method::from_bytes(b"FROBNICATE").unwrap_or(Method::GET);
        assert_eq!(method_label(&odd), "other");
    }
}
