//! `GET /api/cluster/stream`: the page's live view of the cluster, pushed over a WebSocket
//! (one JSON text frame per tick; the client sends nothing).
//!
//! One loop per node builds a [`Frame`] once per [`TICK`] from this node's own registry
//! replica, membership view and horde counters (no call to any game, no request to another
//! node), encodes it to JSON once, and shares that text with every subscriber: a thousand open
//! pages cost one encode per second, not a thousand. The newest frame waits in a `watch` for
//! pages that just connected; later frames go through a `broadcast` whose bounded ring is the
//! per-subscriber queue: a page that reads nothing for [`QUEUE`] ticks has lagged, and its
//! socket is closed (1008) instead of memory growing, as is one whose frame is not taken by
//! the network within [`SEND_TIMEOUT`]; the page reconnects and starts from the newest frame.
//! At shutdown the loop stops once the node's games have moved and the sockets close (1012).
//!
//! A WebSocket rather than Server-Sent Events, although the stream goes one way: an
//! `EventSource` is a request that never completes, which holds headless Chromium's virtual
//! clock (`--virtual-time-budget`, how `tests/page.rs` lets the page settle) and would keep a
//! whole HTTP/1.1 connection of the browser's six per host.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use futures::{SinkExt, Stream, StreamExt};
use horde::{MemberInfo, MemberStatus, Stats};
use serde::Serialize;
use tokio::sync::{broadcast, watch};

use super::AppState;
use crate::games::Games;

/// How often a frame is built and pushed.
pub const TICK: Duration = Duration::from_secs(1);
/// Frames queued for one subscriber before it counts as too slow and is dropped.
pub const QUEUE: usize = 8;
/// Games listed by name in a frame (the rest are counted): the demo runs a thousand.
pub const MAX_LISTED: usize = 200;
/// Longest wait for the network to take one frame before the reader counts as too slow.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Close code of a reader dropped for being too slow (policy violation).
const CLOSE_SLOW: u16 = 1008;
/// Close code at shutdown: "service restart", reconnect to any node.
const CLOSE_RESTART: u16 = 1012;

/// One member in a frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberRow {
    /// Node name.
    pub node: String,
    /// `alive`, `joining`, `draining` or `left`.
    pub status: String,
    /// App version.
    pub version: String,
    /// Games it hosts, per this node's registry replica.
    pub games: usize,
}

/// One game in a frame's list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GameRow {
    /// Join code (the page opens a game by it).
    pub code: String,
    /// The node hosting it.
    pub node: String,
}

/// This node's recent handoff pauses (games it moved away; horde's counters).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PauseRow {
    /// Games this node moved away since it started.
    pub moves: u64,
    /// Median pause of the recent moves, in ms (null before the first).
    pub p50_ms: Option<f64>,
    /// 99th percentile, in ms.
    pub p99_ms: Option<f64>,
    /// Longest, in ms.
    pub max_ms: Option<f64>,
}

/// What one push carries.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Frame {
    /// Frames built by this node so far (1, 2, ...): a page sees it advance.
    pub tick: u64,
    /// The node serving the stream.
    pub node: String,
    /// Nodes this node is connected to.
    pub nodes: Vec<String>,
    /// Members that are not dead, with their game counts.
    pub members: Vec<MemberRow>,
    /// Games in the registry (the sum of the members' counts, games of dead nodes included).
    pub total_games: usize,
    /// The first [`MAX_LISTED`] games by code.
    pub games: Vec<GameRow>,
    /// This node's handoff pauses.
    pub pauses: PauseRow,
}

fn ms(d: Option<Duration>) -> Option<f64> {
    d.map(|d| (d.as_secs_f64() * 1e5).round() / 100.0)
}

/// Builds a frame from what this node knows (pure: unit-tested without a cluster). `names`
/// is the registry: game code and host.
pub fn frame(
    tick: u64,
    node: &str,
    nodes: Vec<String>,
    members: &[MemberInfo],
    names: Vec<(String, String)>,
    stats: &Stats,
) -> Frame {
    let mut per_node: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, owner) in &names {
        *per_node.entry(owner.as_str()).or_default() += 1;
    }
    let members = members
        .iter()
        .filter(|m| m.status != MemberStatus::Dead)
        .map(|m| MemberRow {
            node: m.node.name.clone(),
            status: m.status.to_string(),
            version: m.version.to_string(),
            games: per_node.get(m.node.name.as_str()).copied().unwrap_or(0),
        })
        .collect();
    let total_games = names.len();
    let mut games: Vec<GameRow> = names
        .into_iter()
        .map(|(code, node)| GameRow { code, node })
        .collect();
    games.sort_by(|a, b| a.code.cmp(&b.code));
    games.truncate(MAX_LISTED);
    Frame {
        tick,
        node: node.to_string(),
        nodes,
        members,
        total_games,
        games,
        pauses: PauseRow {
            moves: stats.handoffs_out,
            p50_ms: ms(stats.pause_p50),
            p99_ms: ms(stats.pause_p99),
            max_ms: ms(stats.pause_max),
        },
    }
}

/// The shared end of the stream: the newest frame and the queue of the next ones, as JSON.
#[derive(Debug, Clone)]
pub struct Dashboard {
    latest: watch::Receiver<Option<Arc<str>>>,
    /// Weak: when the loop stops, its sender goes and every open stream ends (the HTTP
    /// server's graceful shutdown waits for them).
    queue: broadcast::WeakSender<Arc<str>>,
}

impl Dashboard {
    /// Starts the loop that builds a frame every [`TICK`] until `stop` turns true (when the
    /// node's sockets close at shutdown; open streams end then too).
    pub fn spawn(
        games: Games,
        connector: discovery::Connector,
        mut stop: watch::Receiver<bool>,
    ) -> Dashboard {
        let (latest_tx, latest) = watch::channel(None);
        let (tx, _) = broadcast::channel(QUEUE);
        let queue = tx.downgrade();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(TICK);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut tick = 0;
            loop {
                tokio::select! {
                    _ = every.tick() => {
                        tick += 1;
                        let json = build(&games, &connector, tick).await;
                        let _ = latest_tx.send(Some(json.clone()));
                        // No subscriber is not an error: the frame waits in `latest`.
                        let _ = tx.send(json);
                    }
                    changed = stop.changed() => {
                        if changed.is_err() || *stop.borrow() {
                            break;
                        }
                    }
                }
            }
        });
        Dashboard { latest, queue }
    }

    /// The frames from now on as JSON: the newest first, then each new one; ends when this
    /// subscriber lagged [`QUEUE`] frames behind or the loop stopped.
    pub fn subscribe(&self) -> impl Stream<Item = Arc<str>> + Send + 'static {
        // Subscribe before reading `latest`, so that no frame falls between the two.
        let rx = self.queue.upgrade().map(|q| q.subscribe());
        let first = self.latest.borrow().clone();
        futures::stream::unfold((first, rx), |(first, rx)| async move {
            let mut rx = rx?;
            if let Some(f) = first {
                return Some((f, (None, Some(rx))));
            }
            match rx.recv().await {
                Ok(f) => Some((f, (None, Some(rx)))),
                // Lagged: a slow reader is dropped; closed: the node stops.
                Err(_) => None,
            }
        })
    }

    /// False once the loop stopped (the node shuts down).
    pub fn is_running(&self) -> bool {
        self.queue.upgrade().is_some()
    }

    /// Pages subscribed now.
    pub fn subscribers(&self) -> usize {
        self.queue.upgrade().map_or(0, |q| q.receiver_count())
    }
}

async fn build(games: &Games, connector: &discovery::Connector, tick: u64) -> Arc<str> {
    let horde = games.horde();
    let nodes: Vec<String> = connector
        .nodes()
        .await
        .map(|n| n.into_iter().map(|i| i.id.name).collect())
        .unwrap_or_default();
    let names = horde
        .names()
        .into_iter()
        .map(|(n, owner)| (n, owner.name))
        .collect();
    let f = frame(
        tick,
        &connector.node().name,
        nodes,
        &horde.members(),
        names,
        &horde.stats(),
    );
    serde_json::to_string(&f).unwrap_or_default().into()
}

/// `GET /api/cluster/stream`: a WebSocket that gets one text frame of [`Frame`] JSON per
/// tick.
pub async fn stream(ws: WebSocketUpgrade, State(state): State<AppState>) -> Response {
    let dashboard = state.dashboard.clone();
    ws.on_upgrade(move |socket| push(socket, dashboard))
}

async fn push(socket: WebSocket, dashboard: Dashboard) {
    let (mut tx, mut rx) = socket.split();
    let mut frames = Box::pin(dashboard.subscribe());
    let close = loop {
        tokio::select! {
            frame = frames.next() => match frame {
                Some(json) => {
                    let send = tx.send(Message::Text(Utf8Bytes::from(&*json)));
                    match tokio::time::timeout(SEND_TIMEOUT, send).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => break None,
                        Err(_) => break Some((CLOSE_SLOW, "too slow: frames not read")),
                    }
                }
                None if dashboard.is_running() => break Some((CLOSE_SLOW, "too slow: frames not read")),
                None => break Some((CLOSE_RESTART, "node restarting; reconnect to any node")),
            },
            // The client sends nothing but its close; anything else is ignored.
            msg = rx.next() => match msg {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break None,
                Some(Ok(_)) => {}
            },
        }
    };
    if let Some((code, reason)) = close {
        let frame = Message::Close(Some(CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        }));
        let _ = tokio::time::timeout(SEND_TIMEOUT, tx.send(frame)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use discovery::NodeId;
    use horde::Version;

    fn member(name: &str, status: MemberStatus) -> MemberInfo {
        MemberInfo {
            node: NodeId {
                name: name.into(),
                incarnation: 1,
            },
            status,
            version: Version::parse("1.2.0"),
            reads: vec![1],
            protocols: None,
        }
    }

    #[test]
    fn counts_games_per_member_and_lists_the_first_by_code() {
        let members = [
            member("a@x", MemberStatus::Alive),
            member("b@x", MemberStatus::Draining),
            member("c@x", MemberStatus::Dead),
        ];
        let mut names: Vec<(String, String)> = (0..MAX_LISTED + 5)
            .map(|i| (format!("G{i:04}"), "a@x".to_string()))
            .collect();
        names.push(("AAAA".into(), "b@x".into()));
        names.reverse();
        let stats = Stats {
            handoffs_out: 7,
            pause_p99: Some(Duration::from_micros(12_345)),
            ..Stats::default()
        };
        let f = frame(3, "a@x", vec!["b@x".into()], &members, names, &stats);
        assert_eq!(
            f.members,
            [
                MemberRow {
                    node: "a@x".into(),
                    status: "alive".into(),
                    version: "1.2.0".into(),
                    games: MAX_LISTED + 5
                },
                MemberRow {
                    node: "b@x".into(),
                    status: "draining".into(),
                    version: "1.2.0".into(),
                    games: 1
                },
            ]
        );
        assert_eq!(f.total_games, MAX_LISTED + 6);
        assert_eq!(f.games.len(), MAX_LISTED);
        assert_eq!(
            f.games[0],
            GameRow {
                code: "AAAA".into(),
                node: "b@x".into()
            }
        );
        assert_eq!(f.games[1].code, "G0000");
        assert_eq!(f.pauses.moves, 7);
        assert_eq!(f.pauses.p99_ms, Some(12.35));
        assert_eq!(f.pauses.max_ms, None);
    }

    #[tokio::test]
    async fn a_subscriber_gets_the_newest_frame_then_new_ones_and_a_slow_one_is_dropped() {
        use futures::StreamExt;
        let (latest_tx, latest) = watch::channel(Some(Arc::<str>::from("1")));
        let (queue, _) = broadcast::channel(QUEUE);
        let d = Dashboard {
            latest,
            queue: queue.downgrade(),
        };
        let mut fast = Box::pin(d.subscribe());
        let mut slow = Box::pin(d.subscribe());
        assert_eq!(d.subscribers(), 2);
        assert_eq!(fast.next().await.as_deref(), Some("1"));
        for i in 2..=(QUEUE as u32 + 2) {
            let f: Arc<str> = i.to_string().into();
            let _ = latest_tx.send(Some(f.clone()));
            let _ = queue.send(f);
            assert_eq!(fast.next().await.as_deref(), Some(i.to_string().as_str()));
        }
        // The slow one still gets what it had when it subscribed, then its queue overflowed.
        assert_eq!(slow.next().await.as_deref(), Some("1"));
        assert_eq!(slow.next().await, None);
        // The loop stopping ends every stream.
        drop(queue);
        assert_eq!(fast.next().await, None);
    }
}
