//! The integrity check after a run: every game still there, and its `seq` equal to the
//! inputs its players were told were applied.

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::{ATTEMPT_TIMEOUT, LoadResult, trace};

/// The integrity check after a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Integrity {
    /// Games checked.
    pub games: usize,
    /// Games no node knows any more.
    pub games_lost: usize,
    /// Acknowledged inputs missing from the state.
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
}

impl Integrity {
    /// No game lost, no acknowledged input lost, none applied twice.
    pub fn nothing_lost(&self) -> bool {
        self.games_lost == 0 && self.inputs_lost == 0 && self.inputs_duplicated == 0
    }
}

/// Checks every game, through the nodes at `urls`, against what its players were told.
pub async fn verify(http: &reqwest::Client, urls: &[String], load: &LoadResult) -> Integrity {
    use futures::StreamExt;
    let http = http.clone();
    let results: Vec<(u64, u64, Option<u64>)> =
        futures::stream::iter(load.games.iter().enumerate())
            .map(|(i, g)| {
                let (code, acked, unknown) = (&g.code, g.acked, g.unknown);
                let http = http.clone();
                let urls: Vec<String> = urls
                    .iter()
                    .map(|u| format!("{u}/api/games/{code}"))
                    .collect();
                async move {
                    // Each attempt on the next node: one node's hiccup is not a lost game; a 404 from
                    // a node that knows the cluster is.
                    for attempt in 0..20 {
                        let url = &urls[(i + attempt) % urls.len()];
                        let failure = match http.get(url).timeout(ATTEMPT_TIMEOUT).send().await {
                            Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => {
                                let body = r.text().await.unwrap_or_default();
                                trace(&format!("verify: {url}: 404 {body}"));
                                return (acked, unknown, None);
                            }
                            Ok(r) => {
                                let status = r.status();
                                match r.json::<Value>().await {
                                    Ok(v) => match v["seq"].as_u64() {
                                        Some(seq) => return (acked, unknown, Some(seq)),
                                        None => format!("{status} {v}"),
                                    },
                                    Err(e) => format!("{status} {e}"),
                                }
                            }
                            Err(e) => e.to_string(),
                        };
                        trace(&format!("verify: {url}: {failure}"));
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    (acked, unknown, None)
                }
            })
            .buffer_unordered(64)
            .collect()
            .await;
    let mut out = Integrity {
        games: results.len(),
        ..Default::default()
    };
    for (acked, unknown, seq) in results {
        out.inputs_acked += acked;
        out.inputs_unanswered += unknown;
        match seq {
            None => out.games_lost += 1,
            // An unanswered input may or may not be in the state; an acknowledged one must.
            Some(seq) if seq < acked => {
                out.inputs_lost += acked - seq;
                out.games_reset += 1;
            }
            Some(seq) if seq > acked + unknown => out.inputs_duplicated += seq - acked - unknown,
            Some(_) => {}
        }
    }
    out
}
