//! Console commands as the node runs them. Each returns text for people and JSON for scripts.
//! Owns the command table; the data comes from the node's parts through [`NodeContext`].

use serde_json::{Value, json};

use super::protocol::Response;
use crate::node::NodeContext;

/// One line per command, for `help`.
const HELP: &[(&str, &str)] = &[
    ("node", "this node's name"),
    ("nodes", "the connected nodes, one per line (as Node.list)"),
    ("ping NODE", "round trip to another node"),
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
        [] => fail("empty command; try `help`"),
        [cmd, ..] => fail(format!("unknown command `{cmd}`; try `help`")),
    }
}
