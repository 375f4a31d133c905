//! The web page end to end: a real `minotaur` node serves `GET /`, headless Chromium opens the
//! deep link `/?game=CODE&player=ann` and dumps the DOM once the page has settled. The dump must
//! show this node's name, the game, its board and `ann` as a player, and the API must then say
//! that `ann` really joined (one input applied: `seq` 1).
//!
//! Chromium waits with `--virtual-time-budget`: its virtual clock runs the page's timers fast but
//! stands still while a fetch is pending, so the page's GET and join POST complete before the dump
//! (an open WebSocket does not hold the clock). A request the server never answers therefore
//! stalls Chromium; it is killed after 60 s.
//!
//! Needs Chromium (`chromium`, `chromium-browser` or `google-chrome` on `PATH`). Without it the
//! test prints a loud notice and passes, so that a developer machine without a browser can still
//! run the suite, except when `CI` is set: there it fails, telling to
//! `apt-get install chromium`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use harness::browser::{chromium_or_skip, dump_dom};
use harness::logs;
use harness::node::{NodeProcess, node_env};
use harness::ports::{free_ports, loopbacks};
use harness::wait::eventually;
use serde_json::Value;
use support::MINOTAUR;

/// The opening tags of `dom`, without `<` and `>` (`div class="x" data-testid="y"`).
fn tags(dom: &str) -> impl Iterator<Item = &str> {
    dom.split('<')
        .skip(1)
        .map(|t| t.split('>').next().unwrap_or(""))
}

/// The text right after the first element with `data-testid="id"` (up to the next tag).
fn testid_text(dom: &str, id: &str) -> Option<String> {
    let attr = format!("data-testid=\"{id}\"");
    let start = dom.find(&attr)?;
    let after_tag = start + dom[start..].find('>')? + 1;
    let text = &dom[after_tag..after_tag + dom[after_tag..].find('<')?];
    Some(
        text.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&amp;", "&"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_link_opens_the_game_and_joins() {
    let Some(chromium) = chromium_or_skip("page") else {
        return;
    };

    // One node, HTTP on a known port of its own loopback address.
    let ip = loopbacks(27, 1)[0];
    let (cluster_port, http_port) = free_ports(&[ip]).expect("free ports");
    let logs = logs::test_dir("page");
    let mut env = node_env(ip, cluster_port, "page-test-cookie-0123");
    env.insert("PORT".into(), http_port.to_string());
    env.insert("HTTP_BIND".into(), ip.to_string());
    let node = NodeProcess::start(MINOTAUR, ip, env, &logs).expect("start the node");
    let base = node.url();

    let health = format!("{base}/healthz");
    let health = health.as_str();
    eventually(
        "GET /healthz answers 200",
        Duration::from_secs(30),
        || async move {
            let r = reqwest::get(health).await.ok()?;
            (r.status() == reqwest::StatusCode::OK).then_some(())
        },
    )
    .await;

    // A new game, shared by its code.
    let client = reqwest::Client::new();
    let created = client
        .post(format!("{base}/api/games"))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body("{}")
        .send()
        .await
        .expect("POST /api/games");
    assert_eq!(created.status(), reqwest::StatusCode::CREATED);
    let game: Value = created.json().await.expect("game JSON");
    let id = game["id"].as_str().expect("game id").to_string();
    let code = game["code"].as_str().expect("game code").to_string();
    let radius = game["world"]["radius"].as_u64().expect("world radius");
    assert_eq!(game["seq"], 0, "{game}");

    // The page, through the deep link.
    let url = format!("{base}/?game={code}&player=ann");
    let (dom, log) = dump_dom(&chromium, &logs.join("chromium-profile"), &url).await;
    std::fs::write(logs.join("dom.html"), &dom).expect("save the DOM");
    // The page's own script is dumped too: only the markup before it counts.
    let dom = &dom[..dom.find("<script").unwrap_or(dom.len())];
    let context = || format!("DOM saved in {}; node log:\n{}", logs.display(), node.log());

    assert!(
        !log.contains("Uncaught"),
        "JavaScript error in the page:\n{log}\n{}",
        context()
    );
    assert_eq!(
        testid_text(dom, "node-name").as_deref(),
        Some(node.name.as_str()),
        "node name; {}",
        context()
    );
    assert_eq!(
        testid_text(dom, "game-id").as_deref(),
        Some(id.as_str()),
        "game id; {}",
        context()
    );
    assert_eq!(
        testid_text(dom, "game-node").as_deref(),
        Some(node.name.as_str()),
        "hosting node; {}",
        context()
    );
    let hexes = tags(dom)
        .filter(|t| t.contains("data-testid=\"hex\""))
        .count() as u64;
    assert_eq!(
        hexes,
        3 * radius * (radius + 1) + 1,
        "every hex of the board drawn; {}",
        context()
    );
    assert!(
        tags(dom).any(|t| t.contains("data-testid=\"player\"") && t.contains("data-name=\"ann\"")),
        "no player entry for ann; {}",
        context()
    );

    // The page really joined: the game has ann, and exactly one input was applied.
    let state: Value = reqwest::get(format!("{base}/api/games/{code}"))
        .await
        .expect("GET the game")
        .json()
        .await
        .expect("game JSON");
    let players: Vec<&str> = state["players"]
        .as_array()
        .expect("players")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(players, ["ann"], "{state}");
    assert_eq!(
        state["seq"], 1,
        "the page joined more than once or not at all: {state}"
    );
}
