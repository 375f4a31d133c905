//! The game WebSocket: pushes the game's state after every change (the first frame is the
//! current state) and takes inputs as JSON text frames shaped like the input body.
//!
//! The socket stays on the node the client connected to; the subscription follows the game
//! wherever it moves (horde carries subscribers with the game), so the client does nothing
//! during a deploy. When this node drains, sockets close only after its games have moved
//! (close code 1012, "service restart"): clients reconnect to any node.
//!
//! Limits: a client's text frames and messages are at most [`MAX_MESSAGE`] bytes (beyond:
//! close 1009, "message too big"). States and answers wait for the client in a queue of
//! [`SOCKET_QUEUE`]; a client that lets it fill up is not reading and is dropped (close 1008,
//! "policy violation"), so a slow reader costs a bounded amount of memory.
//!
//! A game that is over is removed after `GAME_RETENTION_MS`; its sockets then close with
//! 1000 ("normal closure") and a reason saying so, instead of staying open and silent.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use game::{Input, Status};
use serde_json::json;
use tokio::sync::{Mutex, mpsc};
use tokio::time::Sleep;
use tracing::{debug, warn};

use super::AppState;
use super::api::{ApiError, game_json};
use crate::games::GameError;

/// Largest text frame or message a client may send (close 1009 beyond).
pub const MAX_MESSAGE: usize = 64 * 1024;
/// States and answers queued for one client at most; one more and it is dropped (close 1008).
pub const SOCKET_QUEUE: usize = 256;
/// How long a closing frame may wait for a client that does not read before the socket is
/// dropped without it.
const CLOSE_SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a socket stays open after a 1009 close: the rest of the too-big message is never
/// read, and closing a socket with unread data resets it, which can destroy the close frame
/// before the client reads it.
const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// Close code for "the node is restarting; reconnect".
const CLOSE_RESTART: u16 = 1012;
/// Close code for "normal closure": the game is gone (over, then removed after its retention).
const CLOSE_NORMAL: u16 = 1000;
/// After a game's retention, how long its sockets wait for the removal before they look, and
/// between looks while it is still there (another node's clock, a move).
const REMOVAL_SLACK: Duration = Duration::from_secs(1);
/// Close code for "policy violation": the client does not read its states.
const CLOSE_POLICY: u16 = 1008;
/// Close code for "message too big".
const CLOSE_TOO_BIG: u16 = 1009;

type Sink = SplitSink<WebSocket, Message>;

/// `GET /api/games/{id}/ws`.
pub async fn upgrade(
    ws: WebSocketUpgrade,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    // Unknown games get a plain 404, not a socket that closes at once.
    let snapshot = state.games.get(&id).await?;
    let name = snapshot.view.code.clone();
    let over = snapshot.view.status == Status::Over;
    Ok(ws
        .max_message_size(MAX_MESSAGE)
        .max_frame_size(MAX_MESSAGE)
        .on_upgrade(move |socket| serve(socket, state, name, over))
        .into_response())
}

fn text(v: serde_json::Value) -> Message {
    Message::Text(Utf8Bytes::from(v.to_string()))
}

fn close(code: u16, reason: &'static str) -> Option<CloseFrame> {
    Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    })
}

/// True when a read failed because the client's message is over [`MAX_MESSAGE`].
fn too_big(e: &axum::Error) -> bool {
    matches!(
        std::error::Error::source(e).and_then(|s| s.downcast_ref::<tungstenite::Error>()),
        Some(tungstenite::Error::Capacity(_))
    )
}

/// Writes the queued messages to the client, in order, until the queue or the socket closes.
async fn forward(mut queue: mpsc::Receiver<Message>, tx: Arc<Mutex<Sink>>) {
    while let Some(m) = queue.recv().await {
        if tx.lock().await.send(m).await.is_err() {
            break;
        }
    }
}

/// When a game that is over will have been removed: its retention from now, plus slack.
fn removal_after_retention() -> Pin<Box<Sleep>> {
    let retention = Duration::from_millis(game::session::lifecycle().retention_ms);
    Box::pin(tokio::time::sleep(retention + REMOVAL_SLACK))
}

/// Resolves when `removal` is armed and due; never when it is not.
async fn removal_due(removal: &mut Option<Pin<Box<Sleep>>>) {
    match removal {
        Some(r) => r.as_mut().await,
        None => std::future::pending().await,
    }
}

async fn serve(socket: WebSocket, state: AppState, name: String, over: bool) {
    let (mut tx, mut rx) = socket.split();
    let mut sub = match state.games.horde().subscribe(&name).await {
        Ok(s) => s,
        Err(e) => {
            let _ = tx.send(text(json!({ "error": e.to_string() }))).await;
            return;
        }
    };
    state.metrics.websockets.inc();
    let tx = Arc::new(Mutex::new(tx));
    let (queue, queued) = mpsc::channel(SOCKET_QUEUE);
    let writer = tokio::spawn(forward(queued, tx.clone()));
    // Queues `m`; `Err` with the close frame to send when the client must go.
    let enqueue = |m: Message| match queue.try_send(m) {
        Ok(()) => Ok(()),
        Err(mpsc::error::TrySendError::Full(_)) => {
            warn!(game = %name, queued = SOCKET_QUEUE, "dropping a WebSocket client that does not read its states (close 1008)");
            Err(close(CLOSE_POLICY, "not reading: too many states queued"))
        }
        // The writer stopped: the socket is gone.
        Err(mpsc::error::TrySendError::Closed(_)) => Err(None),
    };
    let mut closing = state.lifecycle.sockets_closing();
    // A game that is over is removed after its retention: then its sockets close (1000)
    // instead of staying open and silent. Armed when the socket first sees it over.
    let mut removal: Option<Pin<Box<Sleep>>> = over.then(removal_after_retention);
    let close_with: Option<CloseFrame> = loop {
        tokio::select! {
            event = sub.next() => match event {
                Some((_, snapshot)) => {
                    if snapshot.view.status == Status::Over && removal.is_none() {
                        removal = Some(removal_after_retention());
                    }
                    if let Err(c) = enqueue(text(game_json(&snapshot))) {
                        break c;
                    }
                }
                None => break None,
            },
            () = removal_due(&mut removal) => {
                match state.games.get(&name).await {
                    Err(GameError::NotFound(_)) => {
                        break close(CLOSE_NORMAL, "game removed: it was over and its retention has passed");
                    }
                    // Still there (or the cluster did not answer): look again a little later.
                    _ => removal = Some(Box::pin(tokio::time::sleep(REMOVAL_SLACK))),
                }
            }
            frame = rx.next() => match frame {
                Some(Ok(Message::Text(t))) => {
                    let answer = match serde_json::from_str::<Input>(t.as_str()) {
                        Err(e) => Some(json!({ "error": format!("malformed input: {e}") })),
                        Ok(input) => {
                            let input_id = input.input_id.clone();
                            let started = tokio::time::Instant::now();
                            match state.games.input(&name, input).await {
                                // The new state arrives through the subscription.
                                Ok(_) => {
                                    state.metrics.input_applied(started.elapsed());
                                    None
                                }
                                Err(e) => Some(json!({ "error": e.to_string(), "input_id": input_id })),
                            }
                        }
                    };
                    if let Some(a) = answer
                        && let Err(c) = enqueue(text(a))
                    {
                        break c;
                    }
                }
                Some(Err(e)) if too_big(&e) => {
                    debug!(game = %name, error = %e, "WebSocket message too big (close 1009)");
                    break close(CLOSE_TOO_BIG, "message too big: at most 64 KiB");
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break None,
                Some(Ok(_)) => {}
            },
            changed = closing.changed() => {
                if changed.is_err() || *closing.borrow() {
                    break close(CLOSE_RESTART, "node restarting; reconnect to any node");
                }
            }
        }
    };
    // No more states for this socket, and nothing more written but the closing frame, which
    // goes ahead of whatever is still queued.
    drop(sub);
    writer.abort();
    let _ = writer.await;
    if let Some(frame) = close_with {
        let code = frame.code;
        let mut tx = tx.lock().await;
        let _ =
            tokio::time::timeout(CLOSE_SEND_TIMEOUT, tx.send(Message::Close(Some(frame)))).await;
        if code == CLOSE_TOO_BIG {
            tokio::time::sleep(CLOSE_LINGER).await;
        }
    }
    debug!(game = %name, "websocket closed");
    state.metrics.websockets.dec();
}
