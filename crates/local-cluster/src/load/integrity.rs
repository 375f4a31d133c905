//! The integrity check after a run: every game still there, its `seq` equal to the inputs
//! its players were told were applied, its content the model's (the game as created with
//! every acknowledged input replayed through the rules), and its acknowledged inputs still
//! recognised as applied.

use std::time::Duration;

use game::GameView;
use serde::Serialize;
use serde_json::{Value, json};

use super::{ATTEMPT_TIMEOUT, GameResult, LoadResult, trace};

/// Acknowledged inputs probed per game (the most recent; a game remembers its last
/// [`game::INPUT_WINDOW`]).
pub const PROBES_PER_GAME: usize = 32;

/// Reads per game, each on the next node, before a game counts as lost.
const READ_TRIES: usize = 20;

/// The integrity check after a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Integrity {
    /// Games checked.
    pub games: usize,
    /// Games no node knows any more.
    pub games_lost: usize,
    /// Acknowledged inputs missing from the state (by `seq`).
    pub inputs_lost: u64,
    /// Inputs applied more often than acknowledged.
    pub inputs_duplicated: u64,
    /// Inputs acknowledged in all.
    pub inputs_acked: u64,
    /// Inputs that never got an answer (clients gave up after many retries).
    pub inputs_unanswered: u64,
    /// Games whose state lacks acknowledged inputs (a game restarted from scratch shows
    /// here).
    pub games_reset: usize,
    /// Games whose final state was compared with their model (the others had an input
    /// without an answer, or could not be read).
    pub games_modelled: usize,
    /// Games whose final state is not their model's: a field lost or changed although `seq`
    /// may agree.
    pub games_unlike_model: usize,
    /// Answers, during play, whose state was not the model's.
    pub answers_unlike_model: u64,
    /// Acknowledged inputs (the last [`PROBES_PER_GAME`] of each game) the game no longer
    /// recognises as applied: sent again with the same `input_id`, they were not answered as
    /// a repeat.
    pub inputs_acked_lost: u64,
    /// Acknowledged inputs probed that way.
    pub inputs_acked_probed: u64,
    /// The first difference found, described (`null` when none).
    pub first_difference: Option<String>,
}

impl Integrity {
    /// No game lost, no acknowledged input lost, none applied twice, every game and answer
    /// the model's.
    pub fn nothing_lost(&self) -> bool {
        self.games_lost == 0
            && self.inputs_lost == 0
            && self.inputs_duplicated == 0
            && self.games_unlike_model == 0
            && self.answers_unlike_model == 0
            && self.inputs_acked_lost == 0
    }
}

/// What one game's check found.
#[derive(Default)]
struct Checked {
    /// `seq` as read; `None`: the game is lost.
    seq: Option<u64>,
    /// Compared with its model, and whether it differed (described).
    modelled: bool,
    difference: Option<String>,
    probed: u64,
    forgotten: u64,
}

/// Checks every game, through the nodes at `urls`, against what its players were told.
pub async fn verify(http: &reqwest::Client, urls: &[String], load: &LoadResult) -> Integrity {
    use futures::StreamExt;
    let results: Vec<(&GameResult, Checked)> = futures::stream::iter(load.games.iter().enumerate())
        .map(|(i, g)| async move { (g, check(http, urls, i, g).await) })
        .buffer_unordered(64)
        .collect()
        .await;
    let mut out = Integrity {
        games: results.len(),
        answers_unlike_model: load.answers_unlike_model,
        first_difference: load.first_unlike_model.clone(),
        ..Default::default()
    };
    for (g, c) in results {
        out.inputs_acked += g.acked;
        out.inputs_unanswered += g.unknown;
        out.inputs_acked_probed += c.probed;
        out.inputs_acked_lost += c.forgotten;
        if c.modelled {
            out.games_modelled += 1;
        }
        if let Some(d) = c.difference {
            out.games_unlike_model += 1;
            out.first_difference.get_or_insert(d);
        }
        match c.seq {
            None => out.games_lost += 1,
            // An unanswered input may or may not be in the state; an acknowledged one must.
            Some(seq) if seq < g.acked => {
                out.inputs_lost += g.acked - seq;
                out.games_reset += 1;
            }
            Some(seq) if seq > g.acked + g.unknown => {
                out.inputs_duplicated += seq - g.acked - g.unknown
            }
            Some(_) => {}
        }
    }
    out
}

/// Reads game `g` (the `i`th) and compares it with its model, then probes its last
/// acknowledged inputs.
async fn check(http: &reqwest::Client, urls: &[String], i: usize, g: &GameResult) -> Checked {
    let mut out = Checked::default();
    let Some(state) = read(http, urls, i, &g.code).await else {
        return out;
    };
    out.seq = state["seq"].as_u64();
    let Some(model) = &g.model else {
        return out;
    };
    out.modelled = true;
    let differ = match serde_json::from_value::<GameView>(state) {
        Ok(got) => game::model::differences(&model.view(0), &got).join(", "),
        Err(e) => format!("unreadable state ({e})"),
    };
    if !differ.is_empty() {
        out.difference = Some(format!("{}: the final state differs in {differ}", g.code));
    }
    let ids: Vec<&str> = model.recent_input_ids().collect();
    for id in &ids[ids.len().saturating_sub(PROBES_PER_GAME)..] {
        out.probed += 1;
        if probe(http, urls, i, &g.code, id).await == Some(false) {
            out.forgotten += 1;
            trace(&format!("verify: {} no longer knows input {id}", g.code));
        }
    }
    out
}

/// The game as some node answers it; `None` when a node that knows the cluster says 404 or
/// no node answers in [`READ_TRIES`].
async fn read(http: &reqwest::Client, urls: &[String], i: usize, code: &str) -> Option<Value> {
    // Each attempt on the next node: one node's hiccup is not a lost game; a 404 from a
    // node that knows the cluster is.
    for attempt in 0..READ_TRIES {
        let url = format!("{}/api/games/{code}", urls[(i + attempt) % urls.len()]);
        let failure = match http.get(&url).timeout(ATTEMPT_TIMEOUT).send().await {
            Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => {
                let body = r.text().await.unwrap_or_default();
                trace(&format!("verify: {url}: 404 {body}"));
                return None;
            }
            Ok(r) => {
                let status = r.status();
                match r.json::<Value>().await {
                    Ok(v) if status.is_success() && v["seq"].is_u64() => return Some(v),
                    Ok(v) => format!("{status} {v}"),
                    Err(e) => format!("{status} {e}"),
                }
            }
            Err(e) => e.to_string(),
        };
        trace(&format!("verify: {url}: {failure}"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// Whether game `code` still recognises `input_id` as applied: the same id is sent again
/// with a move the rules refuse (off the board), so a game that knows the id answers it as
/// a repeat (200, nothing applied) and one that forgot it refuses the move (409, nothing
/// applied either). `None` when no node gave either answer.
async fn probe(
    http: &reqwest::Client,
    urls: &[String],
    i: usize,
    code: &str,
    input_id: &str,
) -> Option<bool> {
    let body = json!({
        "player": super::PLAYERS[0],
        "input_id": input_id,
        "action": { "type": "move", "to": { "q": 10_000, "r": 10_000 } },
    });
    for attempt in 0..READ_TRIES {
        let url = format!(
            "{}/api/games/{code}/input",
            urls[(i + attempt) % urls.len()]
        );
        match http
            .post(&url)
            .timeout(ATTEMPT_TIMEOUT)
            .json(&body)
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => return Some(true),
            Ok(r) if r.status() == reqwest::StatusCode::CONFLICT => return Some(false),
            Ok(r) => trace(&format!("probe: {url}: {}", r.status())),
            Err(e) => trace(&format!("probe: {url}: {e}")),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}
