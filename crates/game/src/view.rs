//! The game as clients see it: the JSON state answered by the HTTP API and pushed over
//! WebSockets.
//!
//! Owns only the shape of that JSON; it is computed from a [`Game`] and never read back into
//! one. The server adds `node` itself (for instance with `#[serde(flatten)]` around this).
//! Fields are never skipped when empty (`null` instead), so the shape is stable for clients.

use serde::{Deserialize, Serialize};

use crate::hex::Hex;
use crate::rules::{
    AP_CAP, AP_PER_ROUND, ATTACK_COST, ATTACK_DAMAGE, ATTACK_RANGE, Game, MAX_HEALTH, MAX_PLAYERS,
    Status,
};

/// `GET /api/games/{id}` without `node`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GameView {
    pub id: String,
    pub code: String,
    /// `"waiting"`, `"active"` or `"over"`.
    pub status: Status,
    /// Rounds completed; the round being played is `round + 1`.
    pub round: u64,
    /// Inputs applied so far; a state with a higher `seq` is newer.
    pub seq: u64,
    pub round_ms: u64,
    /// Time left in the current round; `null` unless active.
    pub deadline_in_ms: Option<u64>,
    /// In joining order.
    pub players: Vec<PlayerView>,
    pub world: WorldView,
    /// The survivor once the game is over; `null` before (or if nobody survived).
    pub winner: Option<String>,
    /// The rule constants, so clients can show costs without hard-coding them.
    pub rules: RulesView,
}

/// One player, flattened for clients: `{"name","q","r","health","action_points","ended_turn","alive"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlayerView {
    pub name: String,
    pub q: i32,
    pub r: i32,
    pub health: u32,
    pub action_points: u32,
    pub ended_turn: bool,
    pub alive: bool,
}

/// The board: every hex within `radius` of `(0,0)` that is not a wall is open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorldView {
    pub radius: u32,
    /// Sorted by `q`, then `r`.
    pub walls: Vec<Hex>,
    /// Where players appear, in joining order.
    pub spawns: Vec<Hex>,
}

/// The rule constants of this build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RulesView {
    pub max_players: usize,
    pub max_health: u32,
    pub ap_per_round: u32,
    pub ap_cap: u32,
    pub attack_cost: u32,
    pub attack_damage: u32,
    pub attack_range: u32,
}

impl Game {
    /// The client view of the game at time `now_ms` (which only `deadline_in_ms` depends on).
    pub fn view(&self, now_ms: u64) -> GameView {
        GameView {
            id: self.id().to_string(),
            code: self.code().to_string(),
            status: self.status(),
            round: self.round(),
            seq: self.seq(),
            round_ms: self.round_ms(),
            deadline_in_ms: self.deadline_in(now_ms),
            players: self
                .players()
                .iter()
                .map(|p| PlayerView {
                    name: p.name.clone(),
                    q: p.position.q,
                    r: p.position.r,
                    health: p.health,
                    action_points: p.action_points,
                    ended_turn: p.ended_turn,
                    alive: p.alive,
                })
                .collect(),
            world: WorldView {
                radius: self.maze().radius(),
                walls: self.maze().walls().iter().copied().collect(),
                spawns: self.maze().spawns().to_vec(),
            },
            winner: self.winner().map(str::to_string),
            rules: RulesView {
                max_players: MAX_PLAYERS,
                max_health: MAX_HEALTH,
                ap_per_round: AP_PER_ROUND,
                ap_cap: AP_CAP,
                attack_cost: ATTACK_COST,
                attack_damage: ATTACK_DAMAGE,
                attack_range: ATTACK_RANGE,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::input::{Action, Input};
    use crate::rules::Game;
    use serde_json::{Value, json};

    #[test]
    fn json_has_the_documented_fields() {
        let mut game = Game::new("g1", "ABC234", 30_000, 7);
        let join = |p: &str| Input::new(p, format!("{p}-join"), Action::Join);
        game.apply(1_000, join("ann")).unwrap();
        game.apply(2_000, join("bob")).unwrap();
        let value = serde_json::to_value(game.view(12_000)).unwrap();
        for key in ["id", "code", "round", "seq", "players", "world", "status"] {
            assert!(value.get(key).is_some(), "missing {key} in {value}");
        }
        assert_eq!(value["id"], "g1");
        assert_eq!(value["code"], "ABC234");
        assert_eq!(value["status"], "active");
        assert_eq!(value["round"], 0);
        assert_eq!(value["seq"], 2);
        assert_eq!(value["deadline_in_ms"], 20_000);
        assert_eq!(value["winner"], Value::Null);
        let ann = &value["players"][0];
        let spawn = &value["world"]["spawns"][0];
        assert_eq!(
            ann,
            &json!({
                "name": "ann", "q": spawn["q"], "r": spawn["r"], "health": 10,
                "action_points": 3, "ended_turn": false, "alive": true,
            })
        );
        assert_eq!(value["world"]["radius"], 6);
        assert_eq!(value["world"]["walls"].as_array().map(Vec::len), Some(19));
        assert!(value["world"]["walls"][0].get("q").is_some());
    }

    #[test]
    fn waiting_game_has_no_deadline() {
        let game = Game::new("g", "C", 30_000, 1);
        let value = serde_json::to_value(game.view(0)).unwrap();
        assert_eq!(value["status"], "waiting");
        assert_eq!(value["deadline_in_ms"], Value::Null);
        assert_eq!(value["players"], json!([]));
    }
}
