//! The JSON endpoints (see the README's API table). Bodies are parsed by hand so that every
//! malformed request gets 400 with a reason (axum's extractors answer 415/422 in places).

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use game::{DEFAULT_ROUND_MS, Input, Snapshot};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use crate::games::GameError;

/// The web page.
const PAGE: &str = include_str!("page.html");

/// An error answer: status and `{"error": reason}`.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.0, Json(json!({ "error": self.1 }))).into_response();
        if self.0 == StatusCode::SERVICE_UNAVAILABLE {
            // Every 503 is worth retrying: a full cluster, a drain, a node cut off.
            r.headers_mut().insert(
                header::RETRY_AFTER,
                header::HeaderValue::from_static(RETRY_AFTER_S),
            );
        }
        r
    }
}

/// `Retry-After` of a 503, in seconds.
const RETRY_AFTER_S: &str = "5";

impl From<GameError> for ApiError {
    fn from(e: GameError) -> Self {
        let status = match &e {
            GameError::NotFound(_) => StatusCode::NOT_FOUND,
            GameError::Invalid(_) => StatusCode::BAD_REQUEST,
            GameError::Refused(_) => StatusCode::CONFLICT,
            GameError::Draining | GameError::Full(_) | GameError::Unavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        };
        ApiError(status, e.to_string())
    }
}

/// A body that could not be read: over the limit (413) or broken (400).
fn body_error(e: BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body over {} KiB", super::MAX_BODY / 1024),
        )
    } else {
        bad_request(format!("cannot read the request body: {e}"))
    }
}

fn bad_request(reason: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, reason.into())
}

/// The JSON of a game: the client view plus `node`, `schema` and `moves`, and `ended` when it
/// ended other than by its rules (`"idle"`).
pub fn game_json(s: &Snapshot) -> Value {
    let mut v = serde_json::to_value(&s.view).unwrap_or_else(|_| json!({}));
    if let Value::Object(map) = &mut v {
        map.insert("node".into(), json!(s.node));
        map.insert("schema".into(), json!(s.schema));
        map.insert("moves".into(), json!(s.moves));
        if let Some(ended) = s.ended {
            map.insert("ended".into(), json!(ended.as_str()));
        }
    }
    v
}

/// Checks `Content-Type: application/json` and parses the body.
pub fn parse_json<T: for<'de> Deserialize<'de>>(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<T, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/json") {
        return Err(bad_request(format!(
            "expected Content-Type: application/json, got `{}`",
            if ct.is_empty() { "nothing" } else { ct }
        )));
    }
    serde_json::from_slice(body).map_err(|e| bad_request(format!("malformed JSON body: {e}")))
}

/// `GET /`.
pub async fn page() -> Html<&'static str> {
    Html(PAGE)
}

/// `GET /healthz`: 200 when joined and synced, 503 while starting or draining.
pub async fn healthz(State(state): State<AppState>) -> Response {
    let (code, status) = match state.ready() {
        Ok(()) => (StatusCode::OK, "ok"),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
    };
    (
        code,
        Json(json!({ "status": status, "node": state.connector.node().name })),
    )
        .into_response()
}

/// `GET /livez`: 200 while the process serves HTTP, draining included (the liveness check:
/// a draining node is alive and must not be restarted; `/healthz` is the readiness check).
pub async fn livez(State(state): State<AppState>) -> Response {
    let status = if state.lifecycle.is_draining() {
        "draining"
    } else {
        "ok"
    };
    (
        StatusCode::OK,
        Json(json!({ "status": status, "node": state.connector.node().name })),
    )
        .into_response()
}

/// `GET /api/cluster`.
pub async fn cluster(State(state): State<AppState>) -> Json<Value> {
    let nodes: Vec<String> = state
        .connector
        .nodes()
        .await
        .map(|n| n.into_iter().map(|i| i.id.name).collect())
        .unwrap_or_default();
    let members = state.games.members();
    Json(json!({
        "node": state.connector.node().name,
        "nodes": nodes,
        "members": members,
        "protocol": state.games.protocol_in_use(),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    round_ms: Option<u64>,
}

/// `POST /api/games`: body optional `{"round_ms"}`; 201 and the state.
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(body_error)?;
    if state.lifecycle.is_draining() {
        return Err(GameError::Draining.into());
    }
    let round_ms = if body.iter().all(u8::is_ascii_whitespace) {
        DEFAULT_ROUND_MS
    } else {
        let b: CreateBody = parse_json(&headers, &body)?;
        match b.round_ms {
            Some(ms) => game::validate_round_ms(ms).map_err(|e| bad_request(e.to_string()))?,
            None => DEFAULT_ROUND_MS,
        }
    };
    let s = state.games.create(round_ms).await?;
    state.metrics.games_created.inc();
    Ok((StatusCode::CREATED, Json(game_json(&s))).into_response())
}

/// `GET /api/games`.
pub async fn list(State(state): State<AppState>) -> Json<Value> {
    Json(json!(state.games.list().await))
}

/// `GET /api/games/{id}` (id or join code).
pub async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(game_json(&state.games.get(&id).await?)))
}

/// `POST /api/games/{id}/input`.
pub async fn input(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = body.map_err(body_error)?;
    let input: Input = parse_json(&headers, &body)?;
    let started = tokio::time::Instant::now();
    let s = state.games.input(&id, input).await?;
    state.metrics.input_applied(started.elapsed());
    Ok(Json(game_json(&s)))
}

/// Anything else: 404 with a reason.
pub async fn not_found() -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        "no such endpoint; see GET / or the README".into(),
    )
}
