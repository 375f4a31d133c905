//! The HTTP and WebSocket limits of a node (INTERFACE.md "Game lifecycle and limits"): text
//! frames over 64 KiB close with 1009, a client that does not read its states is dropped with
//! 1008 and memory stays bounded, request headers must arrive within 10 s (slow-loris), and
//! `MAX_CONNECTIONS`. Real `minotaur` processes, real sockets.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod support;

use std::cell::Cell;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use harness::logs;
use harness::node::{NodeProcess, node_env};
use harness::ports::{free_port, loopbacks};
use harness::wait::{eventually, scaled};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::MINOTAUR;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// What a node logs when it drops a client that does not read.
const NOT_READING: &str = "dropping a WebSocket client that does not read its states (close 1008)";

/// A node on `ip` with HTTP on a port of its own on `ip` and `extra` set.
fn env_on(ip: IpAddr, extra: &[(&str, &str)]) -> HashMap<String, String> {
    let mut env = node_env(ip, free_port(&[ip]).expect("a free port"), "limits");
    env.insert("HTTP_BIND".into(), ip.to_string());
    env.insert(
        "PORT".into(),
        free_port(&[ip]).expect("a free port").to_string(),
    );
    for (k, v) in extra {
        env.insert((*k).into(), (*v).into());
    }
    env
}

/// Starts a node and waits until it is ready. The client that asked is dropped, so that none
/// of its connections stays open.
async fn ready_node(ip: IpAddr, extra: &[(&str, &str)], test: &str) -> NodeProcess {
    let node = NodeProcess::start(MINOTAUR, ip, env_on(ip, extra), &logs::test_dir(test))
        .expect("start a node");
    let http = reqwest::Client::new();
    let url = node.url();
    eventually("the node is ready", Duration::from_secs(10), || async {
        let r = http.get(format!("{url}/healthz")).send().await.ok()?;
        (r.status() == StatusCode::OK).then_some(())
    })
    .await;
    node
}

fn addr(node: &NodeProcess) -> SocketAddr {
    node.url()
        .trim_start_matches("http://")
        .parse()
        .expect("an address")
}

/// Creates a game; its code.
async fn create_game(http: &reqwest::Client, url: &str) -> String {
    let r = http
        .post(format!("{url}/api/games"))
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.expect("json");
    v["code"].as_str().expect("a code").to_string()
}

async fn input(
    http: &reqwest::Client,
    url: &str,
    code: &str,
    player: &str,
    id: &str,
    action: Value,
) {
    let r = http
        .post(format!("{url}/api/games/{code}/input"))
        .json(&json!({ "player": player, "input_id": id, "action": action }))
        .send()
        .await
        .expect("input");
    assert_eq!(r.status(), StatusCode::OK, "{:?}", r.text().await);
}

fn ws_url(node: &NodeProcess, code: &str) -> String {
    format!(
        "{}/api/games/{code}/ws",
        node.url().replace("http://", "ws://")
    )
}

/// Reads `ws` until its close frame; the frame, or `None` when the socket ended without one.
async fn close_frame<S>(ws: &mut S) -> Option<(CloseCode, String)>
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    while let Some(Ok(m)) = ws.next().await {
        if let Message::Close(frame) = m {
            return frame.map(|f| (f.code, f.reason.to_string()));
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_text_frame_over_64_kib_is_closed_with_1009() {
    let ip = loopbacks(181, 1)[0];
    let node = ready_node(ip, &[], "ws_too_big").await;
    let http = reqwest::Client::new();
    let code = create_game(&http, &node.url()).await;
    let (ws, _) = tokio_tungstenite::connect_async(ws_url(&node, &code))
        .await
        .expect("connect");
    let (mut tx, mut rx) = ws.split();
    let first = rx.next().await;
    assert!(matches!(first, Some(Ok(Message::Text(_)))), "{first:?}");

    // Just under the limit: read and answered (it is no input).
    tx.send(Message::Text("x".repeat(60 * 1024).into()))
        .await
        .expect("send 60 KiB");
    match rx.next().await {
        Some(Ok(Message::Text(t))) => {
            assert!(t.starts_with(r#"{"error":"malformed input:"#), "{t}")
        }
        other => panic!("no answer to 60 KiB: {other:?}"),
    }

    // 1 MiB: the node stops reading it, so the send may never finish; it runs apart.
    let sender = tokio::spawn(async move {
        let _ = tx.send(Message::Text("x".repeat(1024 * 1024).into())).await;
        tx
    });
    let closed = tokio::time::timeout(scaled(Duration::from_secs(10)), close_frame(&mut rx))
        .await
        .expect("the socket closes");
    assert_eq!(
        closed,
        Some((
            CloseCode::Size,
            "message too big: at most 64 KiB".to_string()
        )),
        "{}",
        node.log()
    );
    sender.abort();
}

/// A WebSocket to `url` whose receive buffer is small (4 KiB asked), so that a client that
/// does not read stops the node's writes after a few states rather than megabytes.
async fn stingy_socket(at: SocketAddr, url: &str) -> tokio_tungstenite::WebSocketStream<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let tcp = socket.connect(at).await.expect("connect");
    let (ws, _) = tokio_tungstenite::client_async(url, tcp)
        .await
        .expect("upgrade");
    ws
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_clients_that_do_not_read_are_dropped_with_1008_and_memory_stays_bounded() {
    const SOCKETS: usize = 50;
    let ip = loopbacks(182, 1)[0];
    let node = ready_node(ip, &[], "ws_not_reading").await;
    let url = node.url();
    let http = reqwest::Client::new();
    let code = create_game(&http, &url).await;
    for p in ["ann", "bob"] {
        input(
            &http,
            &url,
            &code,
            p,
            &format!("join-{p}"),
            json!({"type": "join"}),
        )
        .await;
    }
    let state_len = http
        .get(format!("{url}/api/games/{code}"))
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("body")
        .len();
    let mut sockets = Vec::new();
    for _ in 0..SOCKETS {
        sockets.push(stingy_socket(addr(&node), &ws_url(&node, &code)).await);
    }
    let rss_before = node.rss_bytes();
    let rss_max = Cell::new(rss_before);

    // The game changes until every socket has been dropped; nobody reads meanwhile.
    let changes = Cell::new(0u64);
    eventually(
        "every non-reading client dropped",
        Duration::from_secs(120),
        || {
            let (http, url, code, node) = (&http, &url, &code, &node);
            let (rss_max, changes) = (&rss_max, &changes);
            async move {
                for _ in 0..20 {
                    let n = changes.get() + 1;
                    changes.set(n);
                    let player = if n % 2 == 0 { "ann" } else { "bob" };
                    input(
                        http,
                        url,
                        code,
                        player,
                        &format!("t-{n}"),
                        json!({"type": "end_turn"}),
                    )
                    .await;
                }
                rss_max.set(rss_max.get().max(node.rss_bytes()));
                (node.log().matches(NOT_READING).count() >= SOCKETS).then_some(())
            }
        },
    )
    .await;
    let (rss_max, n) = (rss_max.get(), changes.get());
    assert_eq!(node.log().matches(NOT_READING).count(), SOCKETS);

    // Each one, read now, ends with the 1008 close (after the states that were on their way).
    let closes = futures::future::join_all(
        sockets
            .iter_mut()
            .map(|ws| tokio::time::timeout(scaled(Duration::from_secs(10)), close_frame(ws))),
    )
    .await;
    for c in closes {
        assert_eq!(
            c.expect("the socket closes"),
            Some((
                CloseCode::Policy,
                "not reading: too many states queued".to_string()
            ))
        );
    }
    // Memory: at most 256 states queued per socket (each sent as JSON), plus slack, however
    // many times the game changed.
    let bound = (SOCKETS * 256 * state_len * 2) as u64 + 64 * 1024 * 1024;
    let grew = rss_max.saturating_sub(rss_before);
    eprintln!(
        "{SOCKETS} non-reading sockets, {n} changes of a {state_len}-byte state: RSS {} MiB before, at most {} MiB (+{} MiB; bound {} MiB)",
        rss_before >> 20,
        rss_max >> 20,
        grew >> 20,
        bound >> 20
    );
    assert!(grew < bound, "RSS grew by {grew} bytes (bound {bound})");
    // The node still serves a reader.
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url(&node, &code))
        .await
        .expect("connect");
    assert!(matches!(ws.next().await, Some(Ok(Message::Text(_)))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_connections_are_closed_after_the_header_timeout_while_healthz_answers() {
    const SLOW: usize = 20;
    let ip = loopbacks(183, 1)[0];
    let node = ready_node(ip, &[], "slow_loris").await;
    let url = node.url();
    let mut slow = Vec::new();
    for i in 0..SLOW {
        let mut tcp = TcpStream::connect(addr(&node)).await.expect("connect");
        // Half of them send part of a head, half send nothing at all.
        if i % 2 == 0 {
            tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: slow\r\nX-Slow: ")
                .await
                .expect("write");
        }
        slow.push(tokio::spawn(async move {
            let mut got = Vec::new();
            // Ends when the node closes the connection.
            let _ = tcp.read_to_end(&mut got).await;
            String::from_utf8_lossy(&got).into_owned()
        }));
    }
    // Meanwhile /healthz answers, each time on a new connection.
    let answered = Cell::new(0);
    eventually(
        "the node closes every slow connection",
        Duration::from_secs(20),
        || {
            let (url, slow, answered) = (&url, &slow, &answered);
            async move {
                let r = reqwest::Client::new()
                    .get(format!("{url}/healthz"))
                    .send()
                    .await
                    .expect("healthz answers while slow connections are open");
                assert_eq!(r.status(), StatusCode::OK);
                answered.set(answered.get() + 1);
                slow.iter().all(|t| t.is_finished()).then_some(())
            }
        },
    )
    .await;
    assert!(answered.get() > 1);
    for t in slow {
        // hyper closes a connection whose head is late without a response.
        assert_eq!(t.await.expect("reader"), "");
    }
}

/// Sends `GET /healthz` on `tcp` and reads one response; its status line, or `None` when the
/// connection closed instead.
async fn healthz_on(tcp: &mut TcpStream) -> Option<String> {
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tcp.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if body.len() >= len {
                return head.lines().next().map(str::to_string);
            }
        }
    }
}

/// A kept-alive connection that has been served `/healthz` once; `None` when refused.
async fn held_http(at: SocketAddr) -> Option<TcpStream> {
    let mut tcp = TcpStream::connect(at).await.ok()?;
    (healthz_on(&mut tcp).await? == "HTTP/1.1 200 OK").then_some(tcp)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_refuses_new_connections_beyond_it_and_serves_the_open_ones() {
    let ip = loopbacks(184, 1)[0];
    let node = ready_node(ip, &[("MAX_CONNECTIONS", "20")], "max_connections").await;
    let at = addr(&node);
    let code = create_game(&reqwest::Client::new(), &node.url()).await;
    // 10 kept-alive HTTP connections and 10 WebSockets. The clients above may still hold a
    // place for a moment after they are gone: a refused one is tried again.
    let mut held = Vec::new();
    for _ in 0..10 {
        held.push(
            eventually("a place for a connection", Duration::from_secs(10), || {
                held_http(at)
            })
            .await,
        );
    }
    let mut sockets = Vec::new();
    for _ in 0..10 {
        sockets.push(
            eventually(
                "a place for a WebSocket",
                Duration::from_secs(10),
                || async {
                    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url(&node, &code))
                        .await
                        .ok()?;
                    matches!(ws.next().await, Some(Ok(Message::Text(_)))).then_some(ws)
                },
            )
            .await,
        );
    }

    // The 21st is answered 503 with the reason and closed, without being read.
    let mut extra = TcpStream::connect(at).await.expect("connect");
    let mut got = String::new();
    tokio::time::timeout(
        scaled(Duration::from_secs(10)),
        extra.read_to_string(&mut got),
    )
    .await
    .expect("the 21st is closed")
    .expect("read");
    assert!(
        got.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{got}"
    );
    assert!(
        got.ends_with(r#"{"error":"too many connections: this node serves at most 20 at once (MAX_CONNECTIONS); retry later or on another node"}"#),
        "{got}"
    );
    // A WebSocket beyond the limit is refused the same way.
    let refused = tokio_tungstenite::connect_async(ws_url(&node, &code)).await;
    assert!(refused.is_err(), "a 21st WebSocket was accepted");

    // The open ones are still served.
    for tcp in &mut held {
        assert_eq!(healthz_on(tcp).await.as_deref(), Some("HTTP/1.1 200 OK"));
    }
    // Closing some makes room.
    sockets.truncate(5);
    held.truncate(8);
    for _ in 0..7 {
        held.push(
            eventually("room after closing some", Duration::from_secs(10), || {
                held_http(at)
            })
            .await,
        );
    }
    let mut beyond = TcpStream::connect(at).await.expect("connect");
    let mut got = String::new();
    tokio::time::timeout(
        scaled(Duration::from_secs(10)),
        beyond.read_to_string(&mut got),
    )
    .await
    .expect("closed")
    .expect("read");
    assert!(
        got.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{got}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_max_connections_values_exit_2_naming_the_variable() {
    let ip = loopbacks(185, 1)[0];
    let logs = logs::test_dir("bad_max_connections");
    for bad in ["0", "abc"] {
        let mut p =
            NodeProcess::start(MINOTAUR, ip, env_on(ip, &[("MAX_CONNECTIONS", bad)]), &logs)
                .expect("start a node");
        let code = p.wait(scaled(Duration::from_secs(10))).await;
        assert_eq!(code, Some(2), "{bad}: {}", p.log());
        assert!(
            p.log().contains(&format!(
                "MAX_CONNECTIONS: `{bad}` is not valid: expected a whole number of connections from 1 to 1000000"
            )),
            "{}",
            p.log()
        );
    }
}
