//! The games service: what the HTTP API, the WebSocket and the console do with games, on top
//! of horde. Owns naming (a game's registry name is its join code; its id is
//! `CODE-xxxxxxxx`), creation, and retries: inputs and reads are idempotent (inputs by
//! `input_id`), so when a call to a game fails because it is moving or its node just died,
//! the service tries again until its deadline instead of failing the client.

use std::time::Duration;

use game::{GameMsg, GameReply, GameSpec, Input, RuleError, Session, Snapshot};
use horde::{CallError, Horde, StartError};
use tokio::time::Instant;

/// How long one request may spend on a game, retries included.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(10);
/// Why a node cut off from the majority answers 503.
pub const CUT_OFF: &str = "this node is cut off from the majority of the cluster (no quorum lease); retry through another node";
/// One attempt of a call (retried until `REQUEST_DEADLINE`).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause between retries of an idempotent call.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// What went wrong, in terms of the HTTP answer it maps to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GameError {
    /// No such game (404).
    #[error("no game `{0}`")]
    NotFound(String),
    /// A malformed input (400).
    #[error("{0}")]
    Invalid(String),
    /// The rules refuse the input (409).
    #[error("{0}")]
    Refused(String),
    /// The node is draining and takes no new games (503).
    #[error("this node is shutting down and takes no new games; use another node")]
    Draining,
    /// Every member hosts `MAX_GAMES_PER_NODE` games (503 with `Retry-After`).
    #[error(
        "every node hosts its limit of {0} games (MAX_GAMES_PER_NODE); retry once games have ended, or add a node"
    )]
    Full(usize),
    /// The cluster could not answer in time (503).
    #[error("{0}")]
    Unavailable(String),
}

impl From<RuleError> for GameError {
    fn from(e: RuleError) -> Self {
        match e.kind() {
            game::ErrorKind::Invalid => GameError::Invalid(e.to_string()),
            game::ErrorKind::Refused => GameError::Refused(e.to_string()),
        }
    }
}

/// A game in the listing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    /// Its id.
    pub id: String,
    /// Its join code.
    pub code: String,
    /// The node hosting it.
    pub node: String,
    /// Rounds completed.
    pub round: u64,
    /// Inputs applied.
    pub seq: u64,
}

/// The games service; cheap to clone.
#[derive(Debug, Clone)]
pub struct Games {
    horde: Horde<Session>,
}

impl Games {
    /// Wraps a running horde of game sessions.
    pub fn new(horde: Horde<Session>) -> Self {
        Self { horde }
    }

    /// The horde underneath.
    pub fn horde(&self) -> &Horde<Session> {
        &self.horde
    }

    /// Creates a game and returns its state once every node knows it.
    pub async fn create(&self, round_ms: u64) -> Result<Snapshot, GameError> {
        for _ in 0..8 {
            let seed = rand::random::<u64>();
            let code = game::code_from_seed(seed);
            let spec = GameSpec {
                id: format!("{code}-{:08x}", rand::random::<u32>()),
                code: code.clone(),
                round_ms,
                seed,
            };
            match self.horde.start_child(&code, &spec).await {
                Ok(_) => return self.get(&code).await,
                // The code is taken: draw another.
                Err(StartError::AlreadyStarted { .. }) => continue,
                Err(StartError::Full { limit }) => return Err(GameError::Full(limit)),
                Err(StartError::NoMember) => {
                    return Err(GameError::Unavailable(
                        "no node can take new games right now (starting or draining); retry".into(),
                    ));
                }
                Err(e) => return Err(GameError::Unavailable(e.to_string())),
            }
        }
        Err(GameError::Unavailable(
            "could not find a free join code; retry".into(),
        ))
    }

    /// The registry name of a game given its id (`CODE-xxxxxxxx`) or its code.
    fn name_of(id_or_code: &str) -> Option<(String, Option<&str>)> {
        match id_or_code.split_once('-') {
            Some((code, _)) => game::normalize_code(code).map(|c| (c, Some(id_or_code))),
            None => game::normalize_code(id_or_code).map(|c| (c, None)),
        }
    }

    /// Calls a game, retrying while it is moving or restarting (the message is idempotent).
    async fn call(&self, id_or_code: &str, msg: GameMsg) -> Result<Snapshot, GameError> {
        let (name, id) =
            Self::name_of(id_or_code).ok_or_else(|| GameError::NotFound(id_or_code.into()))?;
        let deadline = Instant::now() + REQUEST_DEADLINE;
        loop {
            if self.cut_off() {
                // Waiting cannot help while this side has no majority: the majority side
                // serves the game (or will, once the lease this node held ran out).
                return Err(GameError::Unavailable(CUT_OFF.into()));
            }
            // One attempt waits a second at most, so a node that loses its quorum meanwhile
            // says so soon rather than at the deadline.
            let left = deadline
                .saturating_duration_since(Instant::now())
                .min(ATTEMPT_TIMEOUT);
            let result: Result<GameReply, CallError> =
                self.horde.call(&name, msg.clone(), left).await;
            match result {
                Ok(Ok(snapshot)) => {
                    if id.is_some_and(|id| id != snapshot.view.id) {
                        return Err(GameError::NotFound(id_or_code.into()));
                    }
                    return Ok(snapshot);
                }
                Ok(Err(rule)) => return Err(rule.into()),
                Err(CallError::NotFound(_)) => return Err(GameError::NotFound(id_or_code.into())),
                Err(_) if self.cut_off() => {
                    // Retrying here cannot help: the majority side serves the game.
                    return Err(GameError::Unavailable(CUT_OFF.into()));
                }
                Err(e) => {
                    if Instant::now() + RETRY_PAUSE >= deadline {
                        return Err(GameError::Unavailable(e.to_string()));
                    }
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
            }
        }
    }

    /// True when this node is a member cut off from the majority of the cluster (it holds no
    /// quorum lease): it answers for no game.
    fn cut_off(&self) -> bool {
        self.horde.status() == horde::MemberStatus::Alive && !self.horde.has_quorum()
    }

    /// The state of a game.
    pub async fn get(&self, id_or_code: &str) -> Result<Snapshot, GameError> {
        self.call(id_or_code, GameMsg::Get).await
    }

    /// Applies an input (checked for shape first) and returns the new state.
    pub async fn input(&self, id_or_code: &str, input: Input) -> Result<Snapshot, GameError> {
        input
            .validate()
            .map_err(|e| GameError::Invalid(e.to_string()))?;
        self.call(id_or_code, GameMsg::Input(input)).await
    }

    /// Every game of the cluster, asked concurrently.
    pub async fn list(&self) -> Vec<Summary> {
        use futures::StreamExt;
        let names: Vec<String> = self.horde.names().into_iter().map(|(n, _)| n).collect();
        let mut out: Vec<Summary> = futures::stream::iter(names)
            .map(|name| async move {
                self.get(&name).await.ok().map(|s| Summary {
                    id: s.view.id,
                    code: s.view.code,
                    node: s.node,
                    round: s.view.round,
                    seq: s.view.seq,
                })
            })
            .buffer_unordered(256)
            .filter_map(|s| async move { s })
            .collect()
            .await;
        out.sort_by(|a, b| a.code.cmp(&b.code));
        out
    }

    /// The registry name (join code) of a game.
    pub fn resolve(&self, id_or_code: &str) -> Option<String> {
        Self::name_of(id_or_code).map(|(n, _)| n)
    }

    /// The cluster's members that are not dead, with the number of games each hosts (what
    /// `members` and `GET /api/cluster` show).
    pub fn members(&self) -> Vec<MemberRow> {
        self.horde
            .members()
            .into_iter()
            .filter(|m| m.status != horde::MemberStatus::Dead)
            .map(|m| MemberRow {
                games: self.horde.names_held_by(&m.node.name),
                node: m.node.name,
                status: m.status.to_string(),
                version: m.version.to_string(),
                protocol: m
                    .protocols
                    .map_or_else(|| "unknown".to_string(), |p| p.to_string()),
            })
            .collect()
    }

    /// The horde protocol version in use: the highest every member speaks.
    pub fn protocol_in_use(&self) -> u16 {
        self.horde.protocols().1
    }
}

/// One member as the API and the console show it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MemberRow {
    /// Node name.
    pub node: String,
    /// `alive`, `joining` or `draining`.
    pub status: String,
    /// App version.
    pub version: String,
    /// The horde protocol versions it speaks (`2-3`; `unknown` until its hello arrives).
    pub protocol: String,
    /// Games it hosts.
    pub games: usize,
}
