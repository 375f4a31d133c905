//! The page as a live dashboard, end to end: three real nodes behind the harness's DNS, games
//! on all of them, and headless Chromium keeping the page open on a node that stays, driven
//! over the DevTools protocol (the page never settles: its stream pushes a frame a second, so
//! the DOM is read with `document.querySelector` as often as needed, not dumped once). One
//! node drains; the RENDERED page must show its game count going to 0 while the staying
//! nodes' counts add up to every game, and keep receiving frames. A screenshot of the page is
//! saved in the test's log directory (its path is printed).
//!
//! Server side, the node serving the page must have answered nothing but the page, its one
//! stream and the test's own scrape of `/metrics`, and routed no message to any game: the
//! page no longer asks every game for its state every 2 s.
//!
//! Needs Chromium, as `tests/page.rs` does (skipped with a notice without it, except in CI).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use harness::browser::{Browser, chromium_or_skip};
use harness::cluster::{Cluster, ClusterOptions};
use harness::logs;
use harness::node::{metric_sum, requests_by_status_class};
use harness::wait::eventually;
use serde_json::Value;
use support::MINOTAUR;

/// Games created before the page opens.
const GAMES: u64 = 24;

/// What the page shows: its members table (node -> (status, games)), the games total, the
/// stream's state and the newest frame's number.
#[derive(Debug, Clone, PartialEq)]
struct Shown {
    members: BTreeMap<String, (String, u64)>,
    total: String,
    stream: String,
    tick: u64,
}

/// Reads what the page renders, from its DOM.
async fn shown(browser: &Browser) -> Shown {
    let v = browser
        .eval(
            "(() => {
                const t = (e, id) => (e.querySelector('[data-testid=' + id + ']') || {}).textContent;
                const members = [...document.querySelectorAll('[data-testid=member]')].map((r) =>
                    [r.dataset.node, t(r, 'member-status'), t(r, 'member-games')]);
                return { members, total: t(document, 'games-total'),
                         stream: t(document, 'stream-state'), tick: t(document, 'stream-tick') };
            })()",
        )
        .await;
    let text = |v: &Value| v.as_str().unwrap_or("").to_string();
    Shown {
        members: v["members"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| {
                let games = text(&m[2]).parse().unwrap_or(u64::MAX);
                (text(&m[0]), (text(&m[1]), games))
            })
            .collect(),
        total: text(&v["total"]),
        stream: text(&v["stream"]),
        tick: text(&v["tick"]).parse().unwrap_or(0),
    }
}

async fn metrics(http: &reqwest::Client, base: &str) -> String {
    http.get(format!("{base}/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_follows_a_drain_live_without_asking_any_game() {
    let Some(chromium) = chromium_or_skip("dashboard") else {
        return;
    };
    let logs = logs::test_dir("dashboard");
    let mut cluster = Cluster::start(ClusterOptions {
        nodes: 3,
        binary: PathBuf::from(MINOTAUR),
        net: 71,
        log_dir: logs.clone(),
        dns_grace: Duration::from_millis(200),
        env: Vec::new(),
    })
    .await
    .expect("start three nodes");
    let http = cluster.http().clone();
    // The page is on the first node, which stays; games are created through the second; the
    // third drains.
    let (page_node, page_url) = (cluster.nodes[0].name.clone(), cluster.nodes[0].url());
    let other_url = cluster.nodes[1].url();
    let staying = [page_node.clone(), cluster.nodes[1].name.clone()];
    let drained = cluster.nodes[2].name.clone();
    for _ in 0..GAMES {
        let r = http
            .post(format!("{other_url}/api/games"))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body("{}")
            .send()
            .await
            .expect("POST /api/games");
        assert_eq!(r.status(), reqwest::StatusCode::CREATED);
    }

    // From here on, every request to the page's node is the page's, or the two scrapes.
    let before = metrics(&http, &page_url).await;
    let browser = Browser::start(&chromium, &logs, (1280, 900)).await;
    browser.navigate(&format!("{page_url}/")).await;
    let context = |b: &Browser| format!("logs in {}; chromium log:\n{}", logs.display(), b.log());

    let browser_ref = &browser;
    let drained_ref = &drained;
    let staying_ref = &staying;
    let first = eventually(
        "the page shows three alive members whose games add up to every game, some on the node that will drain",
        Duration::from_secs(30),
        || async move {
            let s = shown(browser_ref).await;
            let alive = s.members.values().filter(|(st, _)| st == "alive").count();
            let sum: u64 = s.members.values().map(|(_, g)| *g).sum();
            let on_drained = s.members.get(drained_ref).map_or(0, |(_, g)| *g);
            (alive == 3 && sum == GAMES && s.total == GAMES.to_string() && on_drained > 0)
                .then_some(s)
        },
    )
    .await;
    assert_eq!(first.stream, "live", "{first:?}; {}", context(&browser));
    println!("before the drain the page shows {first:?}");

    let code = cluster.drain(2).await;
    assert_eq!(code, Some(0), "the drained node's exit code");

    let after = eventually(
        "the page shows the drained node with 0 games and the staying nodes holding every game",
        Duration::from_secs(30),
        || async move {
            let s = shown(browser_ref).await;
            let on_drained = s.members.get(drained_ref).map(|(_, g)| *g);
            let sum: u64 = staying_ref
                .iter()
                .filter_map(|n| s.members.get(n))
                .map(|(_, g)| *g)
                .sum();
            let staying_alive = staying_ref
                .iter()
                .all(|n| s.members.get(n).is_some_and(|(st, _)| st == "alive"));
            (on_drained == Some(0) && staying_alive && sum == GAMES && s.total == GAMES.to_string())
                .then_some(s)
        },
    )
    .await;
    println!("after the drain the page shows {after:?}");
    assert_eq!(after.stream, "live", "{after:?}; {}", context(&browser));
    // The stream keeps pushing (and the page stays open long enough for a poller to show).
    let later = eventually(
        "three more frames pushed to the page",
        Duration::from_secs(30),
        || async move {
            let s = shown(browser_ref).await;
            (s.tick >= after.tick + 3).then_some(s)
        },
    )
    .await;
    let counts = |s: &Shown| -> Vec<(String, u64)> {
        s.members
            .iter()
            .map(|(n, (_, g))| (n.clone(), *g))
            .collect()
    };
    assert_eq!(
        counts(&later),
        counts(&after),
        "no game moved since: {later:?}"
    );

    let png = logs.join("dashboard.png");
    browser.screenshot(&png).await;
    println!("dashboard screenshot: {}", png.display());
    let log = browser.log();
    assert!(
        !log.contains("Uncaught"),
        "JavaScript error in the page:\n{log}"
    );

    // The page's node answered the page, its stream, maybe a favicon, and the first scrape;
    // it asked no game anything on the page's behalf.
    let after_metrics = metrics(&http, &page_url).await;
    let (after, was) = (
        requests_by_status_class(&after_metrics),
        requests_by_status_class(&before),
    );
    let by_class: Vec<(&str, f64)> = after
        .iter()
        .zip(was.iter())
        .map(|((c, n), (_, m))| (*c, n - m))
        .collect();
    let requests: f64 = by_class.iter().map(|(_, n)| n).sum();
    let routed = metric_sum(&after_metrics, "minotaur_routed_messages_total")
        - metric_sum(&before, "minotaur_routed_messages_total");
    println!(
        "while the page was open its node answered {requests} HTTP requests {by_class:?} and \
         routed {routed} messages to games"
    );
    // 2xx: the page and the first scrape; 1xx: the stream's upgrade; 4xx: a favicon, if
    // the browser asks for one.
    let favicon = by_class[3].1.min(1.0);
    assert_eq!(
        by_class,
        [
            ("1xx", 1.0),
            ("2xx", 2.0),
            ("3xx", 0.0),
            ("4xx", favicon),
            ("5xx", 0.0)
        ],
        "HTTP requests that reached the page's node while the page was open; {}",
        context(&browser)
    );
    assert_eq!(
        routed, 0.0,
        "the page's node called games elsewhere while the page was open"
    );
    drop(browser);
    cluster.shutdown().await;
}
