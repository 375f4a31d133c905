//! Players: clients that play games over HTTP as real ones do. Every input has its own
//! `input_id`, and a failed request is retried with the same `input_id` on the next node
//! until it is acknowledged, so an input is never lost nor applied twice by a retry. Then
//! [`verify`] checks every game against what its players were told.
//!
//! A game's pause is the longest any one of its inputs took (retries included) while
//! measuring; every game moves at least once during a full rolling update.
//!
//! Each game has one writer, so its players also keep a model of it ([`game::model`]): the
//! game as its creation answered it, with every acknowledged input replayed through the
//! rules. Every answer must show the model's state, and so must the game when [`verify`]
//! reads it at the end: a server that kept `seq` but lost a board, a player or a turn fails.
//!
//! # Layout
//! - this file: [`Load`], the players, and what they saw ([`LoadResult`]).
//! - `integrity`: [`verify`] and its [`Integrity`] report.

mod integrity;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use game::{Action, Game, GameView, Input, Outcome};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio::time::Instant;

pub use integrity::{Integrity, verify};

use crate::Error;
use crate::cluster::Targets;
use crate::latency::percentile;

/// Attempts to create one game while nodes answer 503.
const CREATE_TRIES: u32 = 50;
/// Pause between those attempts.
const CREATE_RETRY_PAUSE: Duration = Duration::from_millis(100);
/// How often [`Load::wait_for_play`] counts the answers.
const PLAY_POLL: Duration = Duration::from_millis(20);

/// One game as a client sees it.
#[derive(Debug, Clone)]
struct Tracked {
    code: String,
    /// Inputs acknowledged (2xx).
    acked: u64,
    /// Inputs given up on without an answer (may or may not be applied).
    unknown: u64,
    /// Who has ended the turn in the round the client last saw.
    ended: [bool; 2],
    /// Last state seen: `(round, seq)`; never goes back.
    last: (u64, u64),
    /// Answers whose state was not after the last one seen (gone back, or another copy's
    /// history); must stay 0.
    regressions: u64,
    /// Longest input while the measurement window was open, in ms.
    pause_ms: f64,
    /// The game as the rules make it from its creation and the acknowledged inputs; `None`
    /// once that is unknown (an input that got no answer may or may not be applied).
    model: Option<Game>,
    /// Answers whose state was not the model's: the first one described, and how many.
    mismatch: Option<String>,
    mismatches: u64,
}

impl Tracked {
    /// Records an acknowledged input: replays it on the model and compares the answer's
    /// state with the model's.
    fn acked(&mut self, player: &str, input_id: &str, action: Action, answer: &Value) {
        self.acked += 1;
        let Some(model) = self.model.as_mut() else {
            return;
        };
        let applied = model.apply(0, Input::new(player, input_id, action));
        let why = match (applied, GameView::deserialize(answer)) {
            (Ok(Outcome::Applied), Ok(got)) => {
                let differ = game::model::differences(&model.view(0), &got);
                if differ.is_empty() {
                    return;
                }
                format!("differs in {}", differ.join(", "))
            }
            (applied, Ok(_)) => format!("the rules say {applied:?} to an acknowledged input"),
            (_, Err(e)) => format!("unreadable state: {e}"),
        };
        self.mismatches += 1;
        if self.mismatch.is_none() {
            self.mismatch = Some(format!("{}: answer to {input_id} {why}", self.code));
        }
    }

    /// Records an input that got no answer: the model is unknown from now on.
    fn unanswered(&mut self) {
        self.unknown += 1;
        self.model = None;
    }
}

/// The round length of the games the players create: the longest there is, so no round ends
/// by its deadline during a run and the model (which has no clock) holds.
const ROUND_MS: u64 = game::MAX_ROUND_MS;

const PLAYERS: [&str; 2] = ["ann", "bob"];

/// Clients playing games.
#[derive(Debug)]
pub struct Load {
    games: Arc<Vec<Mutex<Tracked>>>,
    /// Every acknowledged input: (game index, answering node, when the answer arrived).
    answers: Arc<std::sync::Mutex<Vec<Answer>>>,
    /// When the players were told to stop.
    stop: Arc<OnceLock<Instant>>,
    measuring: Arc<AtomicBool>,
    failed_attempts: Arc<AtomicU64>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

/// Prints `line` when `MINOTAUR_DEMO_TRACE` is set (diagnosing a failed run).
fn trace(line: &str) {
    if std::env::var_os("MINOTAUR_DEMO_TRACE").is_some() {
        eprintln!("{line}");
    }
}

/// How an input ended.
enum Sent {
    /// Acknowledged, with the new state.
    Acked(Value),
    /// Refused by the rules (409): not applied.
    Refused,
    /// No answer after many attempts: may or may not have been applied.
    Unknown,
}

/// Attempts per input before giving up (10 ms apart, plus request time).
const MAX_ATTEMPTS: usize = 1000;
/// How long an input still in flight when the players stop keeps being retried.
const STOP_GRACE: Duration = Duration::from_secs(20);
/// One attempt waits this long at most: an input normally takes milliseconds, and a node that
/// vanished without a reset must not hold a client for longer (the retry goes elsewhere).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);

/// Answers slower than this are traced (with `MINOTAUR_DEMO_TRACE`).
const SLOW_TRACE: Duration = Duration::from_millis(25);

/// Sends one input until it is acknowledged or refused: the same `input_id` every time, on
/// the next node after a failure.
async fn send_input(
    http: &reqwest::Client,
    urls: &Targets,
    code: &str,
    body: &Value,
    start: usize,
    failed: &AtomicU64,
    stop: &OnceLock<Instant>,
) -> Sent {
    for attempt in start..start + MAX_ATTEMPTS {
        if stop.get().is_some_and(|at| at.elapsed() > STOP_GRACE) {
            // Stopped long ago and still no answer: give up (the input counts as unanswered).
            return Sent::Unknown;
        }
        let url = match urls.read() {
            Ok(urls) if !urls.is_empty() => {
                format!("{}/api/games/{code}/input", urls[attempt % urls.len()])
            }
            _ => return Sent::Unknown,
        };
        let began = Instant::now();
        let outcome = match http
            .post(&url)
            .timeout(ATTEMPT_TIMEOUT)
            .json(body)
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => match r.json::<Value>().await {
                Ok(v) => {
                    if began.elapsed() > SLOW_TRACE {
                        trace(&format!(
                            "[{:?}] slow answer after {:?}: {url} (node {})",
                            std::time::SystemTime::now(),
                            began.elapsed(),
                            v["node"].as_str().unwrap_or("?")
                        ));
                    }
                    return Sent::Acked(v);
                }
                Err(e) => format!("unreadable answer: {e}"),
            },
            Ok(r) if r.status() == reqwest::StatusCode::CONFLICT => return Sent::Refused,
            Ok(r) => format!("{}: {}", r.status(), r.text().await.unwrap_or_default()),
            Err(e) => format!("{e}"),
        };
        failed.fetch_add(1, Ordering::Relaxed);
        trace(&format!(
            "[{:?}] retrying after {:?}: {url}: {outcome}",
            std::time::SystemTime::now(),
            began.elapsed()
        ));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Sent::Unknown
}

/// How far [`Load::start_counting`] got: games created, games whose players both joined.
#[derive(Debug, Default)]
pub struct Started {
    /// Games created so far.
    pub created: AtomicU64,
    /// Games whose two players have joined so far.
    pub joined: AtomicU64,
}

impl Load {
    /// Creates `count` games (two players each) and starts `clients` players on them, sending
    /// `rate` inputs per second in all (paced, so latencies measure the cluster, not a queue
    /// the benchmark itself built).
    pub async fn start(
        http: &reqwest::Client,
        count: usize,
        clients: usize,
        rate: f64,
        urls: Targets,
    ) -> Result<Load, Error> {
        Self::start_counting(http, count, clients, rate, urls, &Started::default()).await
    }

    /// [`Load::start`], counting in `started` the games created and joined as it goes (a
    /// caller shows progress from it).
    pub async fn start_counting(
        http: &reqwest::Client,
        count: usize,
        clients: usize,
        rate: f64,
        urls: Targets,
        started: &Started,
    ) -> Result<Load, Error> {
        use futures::StreamExt;
        let http = http.clone();
        let nodes: Vec<String> = urls.read().map(|u| u.clone()).unwrap_or_default();
        if nodes.is_empty() {
            return Err(Error::NoNodes);
        }
        let created: Vec<Result<(String, Option<Game>), String>> = futures::stream::iter(0..count)
            .map(|i| {
                let http = http.clone();
                let url = format!("{}/api/games", nodes[i % nodes.len()]);
                async move {
                    // A 503 (a node between quorum leases on a loaded machine, or full) is
                    // retried for a while, as clients do.
                    let mut tries = 0;
                    let r = loop {
                        let r = http
                            .post(&url)
                            .json(&json!({ "round_ms": ROUND_MS }))
                            .send()
                            .await
                            .map_err(|e| e.to_string())?;
                        tries += 1;
                        if r.status() != reqwest::StatusCode::SERVICE_UNAVAILABLE
                            || tries == CREATE_TRIES
                        {
                            break r;
                        }
                        tokio::time::sleep(CREATE_RETRY_PAUSE).await;
                    };
                    if r.status() != reqwest::StatusCode::CREATED {
                        let status = r.status();
                        let why = r.text().await.unwrap_or_default();
                        return Err(format!("create answered {status}: {why}"));
                    }
                    let v: Value = r.json().await.map_err(|e| e.to_string())?;
                    let code = v["code"].as_str().ok_or("no code")?.to_string();
                    started.created.fetch_add(1, Ordering::Relaxed);
                    let model = serde_json::from_value::<GameView>(v)
                        .ok()
                        .and_then(|view| game::model::from_created(&view));
                    Ok((code, model))
                }
            })
            .buffer_unordered(64)
            .collect()
            .await;
        let mut games = Vec::new();
        for c in created {
            let (code, model) = c.map_err(Error::GameNotCreated)?;
            games.push(Mutex::new(Tracked {
                code,
                acked: 0,
                unknown: 0,
                ended: [false; 2],
                last: (0, 0),
                regressions: 0,
                pause_ms: 0.0,
                model,
                mismatch: None,
                mismatches: 0,
            }));
        }
        let mut load = Load {
            games: Arc::new(games),
            answers: Arc::new(std::sync::Mutex::new(Vec::new())),
            stop: Arc::new(OnceLock::new()),
            measuring: Arc::new(AtomicBool::new(false)),
            failed_attempts: Arc::new(AtomicU64::new(0)),
            workers: Vec::new(),
        };
        // Everyone joins first.
        let joins = futures::stream::iter(0..load.games.len())
            .map(|g| {
                let (http, urls, games, failed, stop) = (
                    http.clone(),
                    urls.clone(),
                    load.games.clone(),
                    load.failed_attempts.clone(),
                    load.stop.clone(),
                );
                async move {
                    let code = games[g].lock().await.code.clone();
                    for (p, player) in PLAYERS.iter().enumerate() {
                        let id = format!("{code}-join-{p}");
                        let body = json!({ "player": player, "input_id": id, "action": { "type": "join" } });
                        match send_input(&http, &urls, &code, &body, g + p, &failed, &stop).await {
                            Sent::Acked(state) => games[g].lock().await.acked(player, &id, Action::Join, &state),
                            Sent::Unknown => games[g].lock().await.unanswered(),
                            Sent::Refused => {}
                        }
                    }
                    started.joined.fetch_add(1, Ordering::Relaxed);
                }
            })
            .buffer_unordered(64)
            .collect::<Vec<()>>();
        joins.await;
        let per = load.games.len().div_ceil(clients.max(1));
        for w in 0..clients.max(1) {
            let range = (w * per)..((w + 1) * per).min(load.games.len());
            if range.is_empty() {
                continue;
            }
            let (http, urls, games, stop, measuring, failed, answers) = (
                http.clone(),
                urls.clone(),
                load.games.clone(),
                load.stop.clone(),
                load.measuring.clone(),
                load.failed_attempts.clone(),
                load.answers.clone(),
            );
            let pace = Duration::from_secs_f64(clients.max(1) as f64 / rate.max(1.0));
            load.workers.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(pace);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut n: u64 = 0;
                while stop.get().is_none() {
                    for g in range.clone() {
                        tick.tick().await;
                        if stop.get().is_some() {
                            break;
                        }
                        let mut t = games[g].lock().await;
                        // Whoever has not ended the turn ends it: always a valid input.
                        let p = if !t.ended[0] { 0 } else { 1 };
                        n += 1;
                        let id = format!("{}-{w}-{n}", t.code);
                        let body = json!({ "player": PLAYERS[p], "input_id": id, "action": { "type": "end_turn" } });
                        let began = Instant::now();
                        let answer = send_input(&http, &urls, &t.code, &body, g + n as usize, &failed, &stop).await;
                        let took = began.elapsed().as_secs_f64() * 1000.0;
                        if measuring.load(Ordering::Relaxed) && took > t.pause_ms {
                            t.pause_ms = took;
                        }
                        match answer {
                            Sent::Acked(state) => {
                                t.acked(PLAYERS[p], &id, Action::EndTurn, &state);
                                if let Ok(mut a) = answers.lock() {
                                    a.push(Answer {
                                        game: g,
                                        node: state["node"].as_str().unwrap_or("").to_string(),
                                        at: Instant::now(),
                                    });
                                }
                                let round = state["round"].as_u64().unwrap_or(0);
                                let seq = state["seq"].as_u64().unwrap_or(0);
                                // Each input is new and a game's inputs go one at a time:
                                // the state after it is after the last one seen. One not
                                // after it is a state gone back, or two copies answering
                                // with diverged histories.
                                if (round, seq) <= t.last {
                                    t.regressions += 1;
                                }
                                t.last = t.last.max((round, seq));
                                if let Some(players) = state["players"].as_array() {
                                    for (i, name) in PLAYERS.iter().enumerate() {
                                        t.ended[i] = players.iter().any(|p| p["name"] == *name && p["ended_turn"] == true);
                                    }
                                }
                            }
                            Sent::Refused => {
                                // Our view was stale; the next input asks again.
                                t.ended = [false; 2];
                            }
                            Sent::Unknown => {
                                t.unanswered();
                                t.ended = [false; 2];
                            }
                        }
                    }
                }
            }));
        }
        Ok(load)
    }

    /// The codes of the games being played, in order.
    pub async fn codes(&self) -> Vec<String> {
        let mut out = Vec::with_capacity(self.games.len());
        for g in self.games.iter() {
            out.push(g.lock().await.code.clone());
        }
        out
    }

    /// Inputs acknowledged so far after the joins (to wait for traffic, never to sleep for it).
    pub fn answered(&self) -> usize {
        self.answers.lock().map(|a| a.len()).unwrap_or(0)
    }

    /// Waits until `more` inputs beyond those acknowledged now are acknowledged, for at most
    /// `timeout` (as given: not scaled); false when they were not.
    pub async fn wait_for_play(&self, more: usize, timeout: Duration) -> bool {
        let want = self.answered() + more;
        crate::wait::poll(timeout, PLAY_POLL, || async {
            (self.answered() >= want).then_some(())
        })
        .await
        .is_some()
    }

    /// Starts or stops measuring pauses.
    pub fn measure(&self, on: bool) {
        self.measuring.store(on, Ordering::Relaxed);
    }

    /// Stops the players and returns per-game results.
    pub async fn stop(self) -> LoadResult {
        let _ = self.stop.set(Instant::now());
        for w in self.workers {
            let _ = w.await;
        }
        let mut games = Vec::new();
        for g in self.games.iter() {
            games.push(g.lock().await.clone());
        }
        let answers = self.answers.lock().map(|a| a.clone()).unwrap_or_default();
        LoadResult {
            answers,
            regressions: games.iter().map(|g| g.regressions).sum(),
            answers_unlike_model: games.iter().map(|g| g.mismatches).sum(),
            first_unlike_model: games.iter().find_map(|g| g.mismatch.clone()),
            games: games
                .into_iter()
                .map(|g| GameResult {
                    code: g.code,
                    acked: g.acked,
                    unknown: g.unknown,
                    pause_ms: g.pause_ms,
                    last_seen: g.last,
                    model: g.model,
                })
                .collect(),
            failed_attempts: self.failed_attempts.load(Ordering::Relaxed),
        }
    }
}

/// One acknowledged input, as its player saw it.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The game's index in [`LoadResult::games`].
    pub game: usize,
    /// The node that answered (the game's host then).
    pub node: String,
    /// When the answer arrived.
    pub at: Instant,
}

/// What the players saw.
#[derive(Debug, Clone)]
pub struct LoadResult {
    /// Every acknowledged input after the players joined, in arrival order per player.
    pub answers: Vec<Answer>,
    /// Per game, in the order they were created.
    pub games: Vec<GameResult>,
    /// Answers whose state was not after the last one its game's players saw: gone back
    /// in time, or another copy's history (must be 0).
    pub regressions: u64,
    /// Requests that failed and were retried.
    pub failed_attempts: u64,
    /// Answers whose state was not the one the rules give from the game's creation and its
    /// acknowledged inputs (must be 0).
    pub answers_unlike_model: u64,
    /// The first of them, described.
    pub first_unlike_model: Option<String>,
}

/// What the players of one game saw.
#[derive(Debug, Clone)]
pub struct GameResult {
    /// Its join code.
    pub code: String,
    /// Inputs acknowledged.
    pub acked: u64,
    /// Inputs given up on (may or may not have been applied).
    pub unknown: u64,
    /// Longest input while measuring.
    pub pause_ms: f64,
    /// The newest `(round, seq)` its players saw.
    pub last_seen: (u64, u64),
    /// What the game must hold: its creation with every acknowledged input replayed (`None`
    /// when an input got no answer, or the creation's answer could not start a model).
    pub model: Option<Game>,
}

/// Per-game pauses summarised.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pauses {
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Longest.
    pub max_ms: f64,
}

impl LoadResult {
    /// Games answered by a node after another node had answered for them and then the
    /// first one again (two copies answering at once), with the sequence of nodes seen.
    pub fn interleaved(&self) -> Vec<(String, Vec<String>)> {
        let mut answers = self.answers.clone();
        answers.sort_by_key(|a| a.at);
        let mut seen: std::collections::BTreeMap<usize, Vec<String>> = Default::default();
        let mut bad = std::collections::BTreeSet::new();
        for a in &answers {
            let s = seen.entry(a.game).or_default();
            if s.last() != Some(&a.node) {
                if s.contains(&a.node) {
                    bad.insert(a.game);
                }
                s.push(a.node.clone());
            }
        }
        bad.into_iter()
            .map(|g| {
                (
                    self.games[g].code.clone(),
                    seen.remove(&g).unwrap_or_default(),
                )
            })
            .collect()
    }

    /// For each game `node` answered for last before `at` (when it was killed or cut off):
    /// how long after `at` another node first answered for it, in ms, sorted. Games no other
    /// node answered for are left out.
    pub fn served_again_after(&self, node: &str, at: Instant) -> Vec<f64> {
        let mut back: Vec<f64> = (0..self.games.len())
            .filter_map(|g| {
                let last_before = self.answers.iter().rfind(|a| a.game == g && a.at < at)?;
                if last_before.node != node {
                    return None;
                }
                let first_after = self
                    .answers
                    .iter()
                    .find(|a| a.game == g && a.at > at && a.node != node)?;
                Some(first_after.at.duration_since(at).as_secs_f64() * 1000.0)
            })
            .collect();
        back.sort_by(f64::total_cmp);
        back
    }

    /// The per-game pauses: median, 99th percentile, longest (0 without games).
    pub fn pauses(&self) -> Pauses {
        let mut pauses: Vec<f64> = self.games.iter().map(|g| g.pause_ms).collect();
        pauses.sort_by(f64::total_cmp);
        Pauses {
            p50_ms: percentile(&pauses, 0.5).unwrap_or(0.0),
            p99_ms: percentile(&pauses, 0.99).unwrap_or(0.0),
            max_ms: pauses.last().copied().unwrap_or(0.0),
        }
    }
}
