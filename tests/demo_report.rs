//! `minotaur demo --report FILE.html` end to end: the real binary runs its demo (three nodes,
//! 200 games, every node replaced) with `--json`, and the page it writes must hold the two
//! charts (one line per node that took part: the three first ones and their three
//! replacements; a histogram counting every game), the table with the values the JSON says,
//! and nothing to fetch: no script, no `http://` or `https://` anywhere. Headless Chromium then
//! renders it to a PNG in the test's log directory (its path is printed) to look at.
//!
//! Needs Chromium for the picture, as `tests/page.rs` does (skipped with a notice without it,
//! except in CI); the rest runs without.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use harness::browser::{chromium_or_skip, screenshot};
use harness::logs;
use harness::wait::scaled;
use serde_json::Value;
use support::MINOTAUR;

/// The values of every `name="..."` attribute in `html`.
fn attribute_values<'a>(html: &'a str, name: &str) -> Vec<&'a str> {
    let key = format!("{name}=\"");
    html.match_indices(&key)
        .filter_map(|(i, _)| {
            let rest = &html[i + key.len()..];
            rest.find('"').map(|end| &rest[..end])
        })
        .collect()
}

/// The table row `label` of the report: `<tr><th>label</th><td>VALUE</td></tr>`'s value.
fn row<'a>(html: &'a str, label: &str) -> Option<&'a str> {
    let start = format!("<tr><th>{label}</th><td>");
    let i = html.find(&start)? + start.len();
    html[i..].find("</td>").map(|end| &html[i..i + end])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_writes_a_self_contained_report_with_its_numbers() {
    let logs = logs::test_dir("demo_report");
    let file = logs.join("r.html");
    let run = tokio::process::Command::new(MINOTAUR)
        .args([
            "demo", "--nodes", "3", "--games", "200", "--json", "--report",
        ])
        .arg(&file)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(scaled(Duration::from_secs(300)), run)
        .await
        .expect("the demo did not finish in 300 s")
        .expect("run minotaur demo");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "demo failed ({}):\n{stderr}",
        out.status
    );
    assert!(
        stderr.contains(&format!("report: {}", file.display())),
        "the demo does not say where the report is:\n{stderr}"
    );
    let json: Value = serde_json::from_slice(&out.stdout).expect("--json prints one JSON object");
    let html = std::fs::read_to_string(&file).expect("the report file");

    // Nothing to fetch: no script, no absolute URL, no source or link attribute.
    for bad in [
        "http://", "https://", "<script", "src=", "href=", "@import", "url(",
    ] {
        assert!(!html.contains(bad), "the report contains `{bad}`");
    }

    // Games per node: one line per node that took part, 3 first ones and 3 replacements.
    assert!(html.contains(r#"<svg class="chart" id="games-per-node""#));
    let series = html.matches(r#"<polyline class="series""#).count();
    let nodes: BTreeSet<&str> = attribute_values(&html, "data-node").into_iter().collect();
    assert_eq!(series, 6, "one line per node");
    assert_eq!(nodes.len(), 6, "six distinct nodes: {nodes:?}");
    assert!(
        nodes.iter().all(|n| n.starts_with("minotaur@127.0.240.")),
        "{nodes:?}"
    );

    // The pause histogram counts every game once.
    assert!(html.contains(r#"<svg class="chart" id="pause-histogram""#));
    let counted: u64 = attribute_values(&html, "data-count")
        .iter()
        .map(|c| c.parse::<u64>().expect("a bucket count"))
        .sum();
    assert_eq!(Some(counted), json["games"].as_u64(), "{json}");

    // The table says what --json says.
    let n = |k: &str| {
        json[k]
            .as_u64()
            .unwrap_or_else(|| panic!("{k} in {json}"))
            .to_string()
    };
    let ms1 = |k: &str| format!("{:.1} ms", json[k].as_f64().expect(k));
    let expected = [
        ("games", n("games")),
        ("games lost", n("games_lost")),
        ("inputs acknowledged", n("inputs_acked")),
        ("inputs lost", n("inputs_lost")),
        ("inputs applied twice", n("inputs_duplicated")),
        ("pause per game p50", ms1("pause_p50_ms")),
        ("pause per game p99", ms1("pause_p99_ms")),
        ("pause per game max", ms1("pause_max_ms")),
        ("client retries", n("client_retries")),
        ("games reset", n("games_reset")),
    ];
    for (label, value) in expected {
        assert_eq!(row(&html, label), Some(value.as_str()), "row `{label}`");
    }
    assert_eq!(n("games"), "200");
    // Every input answered, every game its model, acknowledged inputs still recognised.
    assert_eq!(n("inputs_unanswered"), "0", "{json}");
    assert_eq!(n("games_modelled"), "200", "{json}");
    assert_eq!(n("games_unlike_model"), "0", "{json}");
    assert_eq!(n("answers_unlike_model"), "0", "{json}");
    assert_eq!(n("inputs_acked_lost"), "0", "{json}");
    assert_ne!(n("inputs_acked_probed"), "0", "{json}");
    // Every game moves at least once in a full rolling update, and each move's pause is
    // recorded where the game resumed: none lost with the nodes that exited.
    assert!(
        json["server_pauses"].as_u64().is_some_and(|p| p >= 200),
        "{json}"
    );
    assert!(json["server_pause_p99_ms"].as_f64().is_some(), "{json}");

    let Some(chromium) = chromium_or_skip("demo_report picture") else {
        return;
    };
    let png = logs.join("report.png");
    let log = screenshot(
        &chromium,
        &logs.join("chromium-profile"),
        &format!("file://{}", file.display()),
        &png,
        (1200, 1600),
    )
    .await;
    assert!(!log.contains("Uncaught"), "{log}");
    println!(
        "report: {}\nreport picture: {}",
        file.display(),
        png.display()
    );
}
