//! `minotaur demo --report FILE.html`: the demo's measurements as one self-contained page,
//! readable offline: inline CSS and SVG drawn here, no script, no external URL.
//!
//! Two charts and the table the demo prints: a histogram of the per-game pauses (each game's
//! longest input while the nodes were replaced), and every node's game count over time
//! through the rolling update, one line per node, with a marker where each replacement
//! started. Every text that comes from the run (node names) is escaped.

use std::fmt::Write as _;

use super::Report;

/// Bucket edges of the pause histogram, in ms: bucket `i` holds `[EDGES[i], EDGES[i + 1])`,
/// the last one everything from its edge on.
pub const PAUSE_EDGES_MS: [f64; 12] = [
    0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0,
];
/// Line colours of the nodes, in order of appearance (then again).
const COLORS: [&str; 8] = [
    "#e0a84a", "#5aa9e0", "#59c27a", "#d678c8", "#e0605a", "#9c8be0", "#4fd1c5", "#c9d35a",
];
const WIDTH: f64 = 1000.0;
const HEIGHT: f64 = 320.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 24.0;
const BOTTOM: f64 = 44.0;

/// How many of `values` fall in each bucket of `edges` (see [`PAUSE_EDGES_MS`]); values below
/// the first edge count in the first bucket.
pub fn histogram(values: &[f64], edges: &[f64]) -> Vec<u64> {
    let mut counts = vec![0; edges.len()];
    for v in values {
        let i = edges.iter().rposition(|e| v >= e).unwrap_or(0);
        counts[i] += 1;
    }
    counts
}

/// `s` safe inside HTML text and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A round step for an axis from 0 to `max` with about `ticks` ticks (1, 2 or 5 times a
/// power of ten).
fn nice_step(max: f64, ticks: f64) -> f64 {
    let raw = (max / ticks).max(1e-9);
    let pow = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * pow)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * pow)
}

/// `v` printed as the axis step allows (no `0.30000000000000004`).
fn number(v: f64, step: f64) -> String {
    if step >= 1.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn bucket_label(i: usize) -> String {
    let e = PAUSE_EDGES_MS;
    match e.get(i + 1) {
        Some(hi) if i == 0 => format!("<{hi}"),
        Some(hi) => format!("{}–{hi}", e[i]),
        None => format!("≥{}", e[i]),
    }
}

/// The pause histogram as SVG.
fn pause_chart(pauses_ms: &[f64]) -> String {
    let counts = histogram(pauses_ms, &PAUSE_EDGES_MS);
    let max = counts.iter().copied().max().unwrap_or(0).max(1) as f64;
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let slot = plot_w / counts.len() as f64;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart" id="pause-histogram" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="histogram of per-game pauses">"#
    );
    axes(&mut s, max, "games");
    for (i, c) in counts.iter().enumerate() {
        let h = plot_h * *c as f64 / max;
        let x = LEFT + slot * i as f64 + slot * 0.12;
        let y = TOP + plot_h - h;
        let _ = write!(
            s,
            r#"<rect class="bucket" data-bucket="{i}" data-count="{c}" x="{x:.1}" y="{y:.1}" width="{:.1}" height="{h:.1}"><title>{} ms: {c} games</title></rect>"#,
            slot * 0.76,
            escape(&bucket_label(i)),
        );
        let _ = write!(
            s,
            r#"<text class="count" x="{:.1}" y="{:.1}">{c}</text>"#,
            x + slot * 0.38,
            y - 4.0
        );
        let _ = write!(
            s,
            r#"<text class="tick" x="{:.1}" y="{:.1}">{}</text>"#,
            x + slot * 0.38,
            TOP + plot_h + 16.0,
            escape(&bucket_label(i))
        );
    }
    let _ = write!(
        s,
        r#"<text class="axis-label" x="{:.1}" y="{:.1}">longest input of each game during the update, ms</text></svg>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 6.0
    );
    s
}

/// Horizontal grid lines and their labels from 0 to `max`.
fn axes(s: &mut String, max: f64, unit: &str) {
    let plot_h = HEIGHT - TOP - BOTTOM;
    let step = nice_step(max, 4.0);
    let mut v = 0.0;
    while v <= max + 1e-9 {
        let y = TOP + plot_h - plot_h * v / max;
        let _ = write!(
            s,
            r#"<line class="grid" x1="{LEFT}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}"/><text class="ylabel" x="{:.1}" y="{:.1}">{}</text>"#,
            WIDTH - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            number(v, step)
        );
        v += step;
    }
    let _ = write!(
        s,
        r#"<text class="axis-label" transform="translate(14 {:.1}) rotate(-90)">{}</text>"#,
        TOP + plot_h / 2.0,
        escape(unit)
    );
}

/// The nodes of `timeline` in order of first appearance.
fn nodes_of(timeline: &[local_cluster::cluster::GamesSample]) -> Vec<String> {
    let mut nodes: Vec<String> = Vec::new();
    for sample in timeline {
        for n in sample.per_node.keys() {
            if !nodes.contains(n) {
                nodes.push(n.clone());
            }
        }
    }
    nodes
}

/// Games per node over time as SVG (one `polyline.series` per node) and its legend.
fn games_chart(r: &Report) -> String {
    let timeline = &r.timeline;
    let nodes = nodes_of(timeline);
    let end_s = timeline.last().map_or(1.0, |s| s.at.as_secs_f64()).max(1.0);
    let max = timeline
        .iter()
        .flat_map(|s| s.per_node.values())
        .copied()
        .max()
        .unwrap_or(0)
        .max(1) as f64
        * 1.1;
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x_of = |t: f64| LEFT + plot_w * t / end_s;
    let y_of = |v: f64| TOP + plot_h - plot_h * v / max;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart" id="games-per-node" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="games per node over time">"#
    );
    axes(&mut s, max, "games hosted");
    let step = nice_step(end_s, 10.0);
    let mut t = 0.0;
    while t <= end_s + 1e-9 {
        let _ = write!(
            s,
            r#"<text class="tick" x="{:.1}" y="{:.1}">{}</text>"#,
            x_of(t),
            TOP + plot_h + 16.0,
            number(t, step)
        );
        t += step;
    }
    for (i, (at, label)) in r.steps.iter().enumerate() {
        let x = x_of(*at);
        let _ = write!(
            s,
            r#"<line class="step" x1="{x:.1}" x2="{x:.1}" y1="{TOP}" y2="{:.1}"><title>{}</title></line><text class="step-label" x="{:.1}" y="{:.1}">{}</text>"#,
            TOP + plot_h,
            escape(label),
            x + 3.0,
            TOP + 10.0,
            i + 1
        );
    }
    for (i, node) in nodes.iter().enumerate() {
        // From the node's first sample to the one after its last (a node no longer reported
        // has left: 0 games); absent in between (not reported for a moment) counts as 0.
        let first = timeline.iter().position(|s| s.per_node.contains_key(node));
        let last = timeline.iter().rposition(|s| s.per_node.contains_key(node));
        let (Some(first), Some(last)) = (first, last) else {
            continue;
        };
        let last = (last + 1).min(timeline.len() - 1);
        let points: Vec<String> = timeline[first..=last]
            .iter()
            .map(|s| {
                let v = s.per_node.get(node).copied().unwrap_or(0) as f64;
                format!("{:.1},{:.1}", x_of(s.at.as_secs_f64()), y_of(v))
            })
            .collect();
        let _ = write!(
            s,
            r#"<polyline class="series" data-node="{}" stroke="{}" points="{}"><title>{}</title></polyline>"#,
            escape(node),
            COLORS[i % COLORS.len()],
            points.join(" "),
            escape(node)
        );
    }
    let _ = write!(
        s,
        r#"<text class="axis-label" x="{:.1}" y="{:.1}">seconds since the cluster formed</text></svg>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 6.0
    );
    s.push_str(r#"<ul class="legend">"#);
    for (i, node) in nodes.iter().enumerate() {
        let _ = write!(
            s,
            r#"<li><span class="swatch" style="background:{}"></span>{}</li>"#,
            COLORS[i % COLORS.len()],
            escape(node)
        );
    }
    s.push_str("</ul>");
    s
}

/// The whole page.
pub fn html(r: &Report) -> String {
    let mut s = String::new();
    s.push_str(concat!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
        "<title>Minotaur demo report</title>\n<style>\n",
        "body{margin:0;padding:1.2em 2em;font:14px/1.45 system-ui,sans-serif;background:#14161a;color:#e4e6ea}\n",
        "h1{color:#e0a84a;font-size:1.4em;margin:0 0 .3em}h2{font-size:1em;color:#8b919c;text-transform:uppercase;letter-spacing:.08em;margin:1.6em 0 .4em}\n",
        "p{color:#8b919c;max-width:70em}.chart{width:100%;max-width:1000px;height:auto;display:block;background:#1d2026;border:1px solid #2f343d;border-radius:6px}\n",
        ".grid{stroke:#2f343d}.ylabel{fill:#8b919c;font-size:11px;text-anchor:end}.tick,.count{fill:#8b919c;font-size:11px;text-anchor:middle}\n",
        ".count{fill:#e4e6ea}.axis-label{fill:#8b919c;font-size:12px;text-anchor:middle}.bucket{fill:#e0a84a}\n",
        ".series{fill:none;stroke-width:2.2;stroke-linejoin:round}.step{stroke:#8b919c;stroke-dasharray:4 4}.step-label{fill:#8b919c;font-size:11px}\n",
        "ul.legend{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:.4em 1.4em;font-family:ui-monospace,monospace}\n",
        ".swatch{display:inline-block;width:.9em;height:.9em;border-radius:2px;margin-right:.4em;vertical-align:middle}\n",
        "table{border-collapse:collapse}th,td{text-align:left;padding:.2em .8em;border-bottom:1px solid #2f343d}th{color:#8b919c;font-weight:normal}\n",
        "</style>\n</head>\n<body>\n<h1>Minotaur demo: a rolling update, measured</h1>\n",
    ));
    let _ = writeln!(
        s,
        "<p>{} nodes replaced one by one while {} games were played; minotaur {}.</p>",
        r.nodes,
        r.integrity.games,
        escape(game::APP_VERSION)
    );
    let _ = writeln!(
        s,
        "<h2>Games per node</h2>\n<p>Games each node hosts, sampled every {} ms from <code>/api/cluster</code>; \
         dashed lines: a replacement starts (the new node joins, then the old one drains).</p>",
        super::SAMPLE_EVERY.as_millis()
    );
    s.push_str(&games_chart(r));
    let _ = writeln!(
        s,
        "\n<h2>Pauses</h2>\n<p>Per game, the longest input while nodes were replaced \
         (p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {} games).</p>",
        r.pause_p50_ms,
        r.pause_p99_ms,
        r.pause_max_ms,
        r.pauses_ms.len()
    );
    s.push_str(&pause_chart(&r.pauses_ms));
    s.push_str("\n<h2>Result</h2>\n<table id=\"result\">\n");
    for (k, v) in super::rows(r) {
        let _ = writeln!(s, "<tr><th>{}</th><td>{}</td></tr>", escape(k), escape(&v));
    }
    s.push_str("</table>\n</body>\n</html>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_puts_each_value_in_its_bucket() {
        let edges = [0.0, 1.0, 5.0, 10.0];
        assert_eq!(
            histogram(&[0.2, 1.0, 4.9, 5.0, 9.99, 10.0, 500.0, -1.0], &edges),
            [2, 2, 2, 2]
        );
        assert_eq!(histogram(&[], &edges), [0, 0, 0, 0]);
    }

    #[test]
    fn escape_leaves_no_markup() {
        assert_eq!(
            escape(r#"<a href="x">&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn steps_are_round() {
        assert_eq!(nice_step(100.0, 4.0), 50.0);
        assert_eq!(nice_step(7.0, 10.0), 1.0);
        assert_eq!(nice_step(0.3, 4.0), 0.1);
    }

    fn report() -> Report {
        use local_cluster::cluster::GamesSample;
        use std::time::Duration;
        let sample = |ms: u64, nodes: &[(&str, u64)]| GamesSample {
            at: Duration::from_millis(ms),
            per_node: nodes.iter().map(|(n, g)| (n.to_string(), *g)).collect(),
        };
        Report {
            integrity: local_cluster::load::Integrity {
                games: 3,
                games_modelled: 3,
                ..Default::default()
            },
            pause_p50_ms: 1.0,
            pause_p99_ms: 2.0,
            pause_max_ms: 3.0,
            server_pauses: 0,
            server_pause_p50_ms: None,
            server_pause_p99_ms: None,
            node_replace_ms: 0.0,
            node_replace_each_ms: vec![],
            client_retries: 0,
            state_regressions: 0,
            exit_codes: vec![Some(0)],
            memory_per_game_bytes: 0.0,
            nodes: 2,
            killed: None,
            killed_games: 0,
            failover_ms: None,
            pauses_ms: vec![0.5, 3.0, 3000.0],
            timeline: vec![
                sample(0, &[("a", 2), ("<b>", 1)]),
                sample(250, &[("a", 0), ("<b>", 3)]),
                sample(500, &[("<b>", 3), ("c", 0)]),
                sample(750, &[("<b>", 3), ("c", 0)]),
            ],
            steps: vec![(0.1, "replace <a>".into())],
        }
    }

    #[test]
    fn the_page_has_one_line_per_node_every_pause_and_escaped_names() {
        let html = html(&report());
        assert_eq!(html.matches(r#"<polyline class="series""#).count(), 3);
        assert!(html.contains(r#"data-node="&lt;b&gt;""#));
        assert!(!html.contains("<b>"), "an unescaped name");
        assert!(html.contains("<title>replace &lt;a&gt;</title>"));
        // `a` is drawn until the sample after its last one, where it counts 0.
        let a = html
            .split(r#"data-node="a""#)
            .nth(1)
            .and_then(|r| r.split("points=\"").nth(1))
            .and_then(|r| r.split('"').next())
            .expect("a's points");
        assert_eq!(a.split(' ').count(), 3, "{a}");
        let counts: Vec<&str> = html
            .match_indices("data-count=\"")
            .map(|(i, m)| &html[i + m.len()..][..1])
            .collect();
        assert_eq!(
            counts.iter().filter(|c| **c == "1").count(),
            3,
            "{counts:?}"
        );
        assert!(html.contains("<tr><th>games</th><td>3</td></tr>"));
        assert!(!html.contains("http://") && !html.contains("https://"));
    }

    #[test]
    fn a_run_fails_when_it_lost_changed_or_did_not_measure_something() {
        let mut r = report();
        assert!(r.failures().is_empty(), "{:?}", r.failures());
        // A kill with no game seen answering elsewhere: failover unmeasured, not 0.
        r.killed = Some("minotaur@x".into());
        assert!(r.failures()[0].contains("failover not measured"));
        r.failover_ms = Some(1500.0);
        assert!(r.failures().is_empty());
        // Content changed though every count agrees.
        r.integrity.games_unlike_model = 1;
        r.integrity.first_difference = Some("ABCD: the final state differs in players".into());
        assert!(r.failures()[0].contains("ABCD"), "{:?}", r.failures());
        r.integrity.games_unlike_model = 0;
        r.integrity.games_modelled = 2;
        assert!(r.failures()[0].contains("1 of 3 games could not be compared"));
        r.integrity.inputs_unanswered = 2;
        assert!(r.failures()[0].contains("2 inputs got no answer"));
    }

    #[test]
    fn bucket_labels_cover_the_edges() {
        assert_eq!(bucket_label(0), "<1");
        assert_eq!(bucket_label(2), "2–5");
        assert_eq!(bucket_label(PAUSE_EDGES_MS.len() - 1), "≥2000");
    }
}
