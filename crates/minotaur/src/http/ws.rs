//! The game WebSocket: pushes the game's state after every change (the first frame is the
//! current state) and takes inputs as JSON text frames shaped like the input body.
//!
//! The socket stays on the node the client connected to; the subscription follows the game
//! wherever it moves (horde carries subscribers with the game), so the client does nothing
//! during a deploy. When this node drains, sockets close only after its games have moved
//! (close code 1012, "service restart"): clients reconnect to any node.

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use game::Input;
use serde_json::json;
use tracing::debug;

use super::AppState;
use super::api::{ApiError, game_json};

/// Close code for "the node is restarting; reconnect".
const CLOSE_RESTART: u16 = 1012;

/// `GET /api/games/{id}/ws`.
pub async fn upgrade(
    ws: WebSocketUpgrade,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    // Unknown games get a plain 404, not a socket that closes at once.
    let snapshot = state.games.get(&id).await?;
    let name = snapshot.view.code.clone();
    Ok(ws
        .on_upgrade(move |socket| serve(socket, state, name))
        .into_response())
}

async fn send_json(
    tx: &mut futures::stream::SplitSink<WebSocket, Message>,
    v: serde_json::Value,
) -> bool {
    tx.send(Message::Text(Utf8Bytes::from(v.to_string())))
        .await
        .is_ok()
}

async fn serve(socket: WebSocket, state: AppState, name: String) {
    let (mut tx, mut rx) = socket.split();
    let mut sub = match state.games.horde().subscribe(&name).await {
        Ok(s) => s,
        Err(e) => {
            let _ = send_json(&mut tx, json!({ "error": e.to_string() })).await;
            return;
        }
    };
    state.metrics.websockets.inc();
    let mut closing = state.lifecycle.sockets_closing();
    loop {
        tokio::select! {
            event = sub.next() => match event {
                Some((_, snapshot)) => {
                    if !send_json(&mut tx, game_json(&snapshot)).await {
                        break;
                    }
                }
                None => break,
            },
            frame = rx.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    let answer = match serde_json::from_str::<Input>(text.as_str()) {
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
                        && !send_json(&mut tx, a).await
                    {
                        break;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            changed = closing.changed() => {
                if changed.is_err() || *closing.borrow() {
                    let _ = tx
                        .send(Message::Close(Some(CloseFrame {
                            code: CLOSE_RESTART,
                            reason: Utf8Bytes::from_static("node restarting; reconnect to any node"),
                        })))
                        .await;
                    break;
                }
            }
        }
    }
    debug!(game = %name, "websocket closed");
    state.metrics.websockets.dec();
}
