//! `/metrics` in the Prometheus text format (prometheus-client). Horde's counters are read at
//! scrape time by a collector; HTTP requests are counted by a middleware.

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;

use super::AppState;
use crate::games::Games;

/// Labels of the request counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    /// `2xx`, `4xx`, ...
    class: String,
}

/// The node's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    /// Games created through this node.
    pub games_created: Counter,
    /// Inputs applied through this node (HTTP and WebSocket).
    pub inputs: Counter,
    /// Open WebSockets.
    pub websockets: Gauge,
}

/// Reads horde's state at scrape time.
#[derive(Debug)]
struct HordeCollector(Games);

impl Collector for HordeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let horde = self.0.horde();
        let s = horde.stats();
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
        let gauges: [(&str, &str, i64); 4] = [
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
        let pause = s.pause_p99.map(|d| d.as_secs_f64()).unwrap_or(0.0);
        let g = ConstGauge::new(pause);
        g.encode(encoder.encode_descriptor(
            "minotaur_handoff_pause_p99_seconds",
            "99th percentile pause of recent game moves",
            None,
            g.metric_type(),
        )?)?;
        Ok(())
    }
}

impl Metrics {
    /// Metrics reading `games` at scrape time.
    pub fn new(games: &Games) -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let games_created = Counter::default();
        let inputs = Counter::default();
        let websockets = Gauge::default();
        registry.register(
            "minotaur_http_requests",
            "HTTP requests by status class",
            requests.clone(),
        );
        registry.register(
            "minotaur_games_created",
            "Games created through this node",
            games_created.clone(),
        );
        registry.register(
            "minotaur_inputs_applied",
            "Inputs applied through this node",
            inputs.clone(),
        );
        registry.register("minotaur_websockets", "Open WebSockets", websockets.clone());
        registry.register_collector(Box::new(HordeCollector(games.clone())));
        Self {
            registry,
            requests,
            games_created,
            inputs,
            websockets,
        }
    }

    fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// `GET /metrics`.
pub async fn metrics(State(state): State<AppState>) -> Response {
    match state.metrics.encode() {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Counts every request by status class.
pub async fn count_requests(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    let class = format!("{}xx", res.status().as_u16() / 100);
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels { class })
        .inc();
    res
}
