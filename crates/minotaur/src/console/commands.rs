//! Console commands as the node runs them. Each returns text for people and JSON for scripts.
//! Owns the command table; the data comes from the node's parts through [`NodeContext`].

use horde::Handoff;
use serde_json::{Value, json};

use super::protocol::Response;
use crate::node::NodeContext;

/// One line per command, for `help`.
const HELP: &[(&str, &str)] = &[
    ("node", "this node's name"),
    ("nodes", "the connected nodes, one per line (as Node.list)"),
    (
        "members",
        "cluster members with status, version and number of games",
    ),
    (
        "games",
        "games hosted on this node (`games --all`: all, with their node)",
    ),
    ("whereis ID", "the node hosting game ID (id or join code)"),
    ("registry", "registry size and sync state"),
    (
        "drain",
        "hand off every game of this node and take no new ones, without exiting",
    ),
    ("ping NODE", "round trip to another node"),
    (
        "stats",
        "counters: games, handoffs in and out, messages routed, last handoff, pause and input percentiles",
    ),
    (
        "version",
        "app version, state schema, horde protocol, link envelope, build",
    ),
    (
        "config",
        "the effective configuration: every variable, its value and where it came from (secrets as ***)",
    ),
    ("help", "this list"),
];

fn ok(text: impl Into<String>, json: Value) -> Response {
    Response {
        ok: true,
        text: text.into(),
        json: json.to_string(),
    }
}

fn fail(text: impl Into<String>) -> Response {
    let text = text.into();
    Response {
        ok: false,
        json: json!({ "error": text }).to_string(),
        text,
    }
}

/// `version`: what this node runs, as far as another build cares.
fn version_info(app: &str, in_use: u16) -> Value {
    let features: Vec<&str> = [("schema-v2", cfg!(feature = "schema-v2"))]
        .into_iter()
        .filter_map(|(f, on)| on.then_some(f))
        .collect();
    json!({
        "app": app,
        "schema": game::STATE_SCHEMA,
        "schema_reads": game::Session::reads(),
        "protocol": horde::protocol::PROTOCOL,
        "protocol_min": horde::protocol::MIN_PROTOCOL,
        "protocol_in_use": in_use,
        "envelope": discovery::wire::ENVELOPE_VERSION,
        "build": {
            "crate": env!("CARGO_PKG_VERSION"),
            "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
            "target": format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS),
            "features": features,
        },
    })
}

/// Runs one command line.
pub async fn execute(ctx: &NodeContext, args: &[String]) -> Response {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["help"] => {
            let text = HELP
                .iter()
                .map(|(c, d)| format!("{c:<12} {d}"))
                .collect::<Vec<_>>()
                .join("\n");
            ok(
                text,
                json!(HELP.iter().map(|(c, _)| *c).collect::<Vec<_>>()),
            )
        }
        ["node"] => {
            let name = ctx.connector.node().name.clone();
            ok(name.clone(), json!(name))
        }
        ["nodes"] => match ctx.connector.nodes().await {
            Ok(nodes) => {
                let names: Vec<String> = nodes.into_iter().map(|n| n.id.name).collect();
                ok(names.join("\n"), json!(names))
            }
            Err(e) => fail(e.to_string()),
        },
        ["ping", node] => match ctx.connector.ping(node).await {
            Ok(rtt) => {
                let ms = rtt.as_secs_f64() * 1000.0;
                ok(
                    format!("pong from {node} in {ms:.3} ms"),
                    json!({ "node": node, "rtt_ms": ms }),
                )
            }
            Err(e) => fail(e.to_string()),
        },
        ["ping"] => fail("usage: ping NODE"),
        ["members"] => {
            let rows = ctx.games.members();
            let text = rows
                .iter()
                .map(|r| {
                    format!(
                        "{}  {}  {}  protocol {}  {} games",
                        r.node, r.status, r.version, r.protocol, r.games
                    )
                })
                .collect::<Vec<_>>()
                .join("\n");
            ok(text, json!(rows))
        }
        ["games"] => {
            let mut names = ctx.games.horde().local_names();
            names.sort();
            ok(names.join("\n"), json!(names))
        }
        ["games", "--all"] => {
            let mut all = ctx.games.horde().names();
            all.sort();
            let text = all
                .iter()
                .map(|(n, node)| format!("{n}  {}", node.name))
                .collect::<Vec<_>>()
                .join("\n");
            let rows: Vec<Value> = all
                .iter()
                .map(|(n, node)| json!({ "game": n, "node": node.name }))
                .collect();
            ok(text, json!(rows))
        }
        ["whereis", id] => match ctx
            .games
            .resolve(id)
            .and_then(|n| ctx.games.horde().whereis(&n))
        {
            Some(node) => ok(node.name.clone(), json!(node.name)),
            None => fail(format!("no game `{id}`")),
        },
        ["registry"] => {
            let horde = ctx.games.horde();
            let size = horde.registry_len();
            let status = horde.status();
            let synced = horde.is_ready();
            ok(
                format!(
                    "{size} games registered; member {status}; registry {}",
                    if synced { "synced" } else { "syncing" }
                ),
                json!({ "size": size, "status": status.to_string(), "synced": synced }),
            )
        }
        ["drain"] => {
            ctx.lifecycle.set_draining();
            let report = ctx.games.horde().drain(ctx.shutdown_timeout).await;
            ok(
                format!(
                    "drained: {} games moved, {} pushed as snapshots, {} with nowhere to go, in {} ms",
                    report.moved,
                    report.fallback,
                    report.stranded,
                    report.duration.as_millis()
                ),
                json!({ "moved": report.moved, "fallback": report.fallback, "stranded": report.stranded, "ms": report.duration.as_millis() as u64 }),
            )
        }
        ["stats"] => {
            let horde = ctx.games.horde();
            let s = horde.stats();
            let inputs = ctx.metrics.input_durations();
            let ms = |d: Option<std::time::Duration>| d.map(|d| d.as_secs_f64() * 1000.0);
            let v = json!({
                "games": horde.local_names().len(),
                "registry": horde.registry_len(),
                "handoffs_in": s.handoffs_in,
                "handoffs_out": s.handoffs_out,
                "handoff_failures": s.handoff_failures,
                "messages_routed": s.routed,
                "messages_forwarded": s.forwarded,
                "conflicts": s.conflicts,
                "restarts_from_snapshot": s.restarts_from_snapshot,
                "restarts_from_spec": s.restarts_from_spec,
                "last_handoff_ms": s.last_handoff.as_secs_f64() * 1000.0,
                // Percentiles since start, estimated from the buckets `/metrics` exports.
                "handoff_pauses": s.pauses.count,
                "handoff_pause_p50_ms": ms(s.pause_p50),
                "handoff_pause_p99_ms": ms(s.pause_p99),
                "handoff_pause_max_ms": ms(s.pause_max),
                "inputs_applied": inputs.count,
                "input_p50_ms": ms(inputs.quantile(0.5)),
                "input_p99_ms": ms(inputs.quantile(0.99)),
            });
            let text = v
                .as_object()
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| format!("{k:<24} {v}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .unwrap_or_default();
            ok(text, v)
        }
        ["version"] => {
            let in_use = ctx.games.protocol_in_use();
            let v = version_info(&ctx.config.app_version.to_string(), in_use);
            let reads = game::Session::reads()
                .iter()
                .map(|r| format!("v{r}"))
                .collect::<Vec<_>>()
                .join(", ");
            let b = &v["build"];
            let features = b["features"]
                .as_array()
                .map(|f| {
                    f.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .filter(|f| !f.is_empty())
                .unwrap_or_else(|| "none".into());
            let text = format!(
                "app       {}\nschema    v{} (reads {reads})\nprotocol  horde {} (in use by the cluster: {in_use}), envelope {}\nbuild     minotaur {}, {}, {}, features: {features}",
                ctx.config.app_version,
                game::STATE_SCHEMA,
                horde::protocol::Protocols::THIS,
                discovery::wire::ENVELOPE_VERSION,
                env!("CARGO_PKG_VERSION"),
                b["profile"].as_str().unwrap_or_default(),
                b["target"].as_str().unwrap_or_default(),
            );
            ok(text, v)
        }
        ["config"] => {
            let rows = ctx
                .config
                .settings(&ctx.connector.node().name, ctx.console_cookie.as_deref());
            let width = rows.iter().map(|r| r.variable.len()).max().unwrap_or(0);
            let text = rows
                .iter()
                .map(|r| format!("{:<width$}  {}  ({})", r.variable, r.value, r.source))
                .collect::<Vec<_>>()
                .join("\n");
            ok(text, json!(rows))
        }
        [] => fail("empty command; try `help`"),
        [cmd, ..] => fail(format!("unknown command `{cmd}`; try `help`")),
    }
}
