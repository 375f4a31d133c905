//! The rules: a game's state and every change to it.
//!
//! Owns [`Game`] — players, rounds, action points, the round deadline, the record of applied
//! inputs — and decides whether an input is allowed ([`Game::apply`]) and when a round ends
//! ([`Game::tick`]). It is pure and synchronous: no clocks, no I/O, no randomness. Time is the
//! caller's `now_ms` (milliseconds on any monotonic clock of the caller's choosing) and the
//! maze comes from a seed the caller picks. Hosting a game (actors, timers, moving it between
//! nodes) belongs to other crates; they persist and ship this struct as it is.
//!
//! # Rules in short
//! - A game is `waiting` until [`MIN_PLAYERS`] have joined, then `active`, then `over`.
//!   Players may join until round 1 ends (at most [`MAX_PLAYERS`]); each appears at the next
//!   free spawn point of the maze with [`MAX_HEALTH`] health.
//! - When a round starts (the first when the second player joins), every living player gains
//!   [`AP_PER_ROUND`] action points; unspent points carry over up to [`AP_CAP`]. A player who
//!   joins during round 1 gets the round's grant at once.
//! - A move costs one action point per step of the shortest walk through open hexes; walls and
//!   living players block the way (eliminated players leave the board).
//! - An attack costs [`ATTACK_COST`] points, reaches an adjacent player and deals
//!   [`ATTACK_DAMAGE`] damage. A player at 0 health is eliminated; when at most one player
//!   lives the game is over and the survivor wins.
//! - A round ends when every living player has ended the turn, or when its deadline passes
//!   ([`Game::tick`]). The next deadline is `round_ms` after the moment the round ended.
//! - `end_turn` is always accepted from a living player who has not ended the turn in the
//!   current round of an active game, so a round can always be ended by its players.
//! - `leave` before the game has started frees the player's seat (as if never joined); after
//!   it is a forfeit: the player is out like an eliminated one, and when at most one player
//!   is left the game is over and that player wins.
//! - A retried input (same `input_id` as one of the last [`INPUT_WINDOW`] applied) is
//!   recognised and changes nothing.
//!
//! # Bounded state
//! Nothing in a [`Game`] grows with the inputs it applies: at most [`MAX_PLAYERS`] players
//! with names of at most [`crate::MAX_NAME_CHARS`] characters, a board of radius
//! [`maze::DEFAULT_RADIUS`], the last [`INPUT_WINDOW`] input ids of at most
//! [`crate::MAX_INPUT_ID_BYTES`] bytes, and counters. Its postcard encoding is at most
//! [`MAX_STATE_BYTES`]; decoding refuses any state outside these bounds.

use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::hex::Hex;
use crate::input::{Action, Field, Input, InputError, check_name};
use crate::maze::{self, DEFAULT_RADIUS, Maze};

mod window;
use window::InputWindow;

/// Round length when the creator does not choose one.
pub const DEFAULT_ROUND_MS: u64 = 30_000;
/// Shortest round accepted by [`validate_round_ms`]; shorter would end rounds faster than a
/// server can tell its players.
pub const MIN_ROUND_MS: u64 = 100;
/// Longest round accepted by [`validate_round_ms`]: one hour.
pub const MAX_ROUND_MS: u64 = 3_600_000;
/// Players needed to start.
pub const MIN_PLAYERS: usize = 2;
/// Most players in one game: one per spawn point of the maze.
pub const MAX_PLAYERS: usize = maze::SPAWN_POINTS;
/// Health a player starts with, and the most a player ever has.
pub const MAX_HEALTH: u32 = 10;
/// Action points every living player gains when a round starts.
pub const AP_PER_ROUND: u32 = 3;
/// Most action points a player can hold: saving up pays, but only for one round.
pub const AP_CAP: u32 = 6;
/// Action points an attack costs.
pub const ATTACK_COST: u32 = 2;
/// Health an attack takes: four hits eliminate a player.
pub const ATTACK_DAMAGE: u32 = 3;
/// How far an attack reaches, in steps: adjacent hexes only.
pub const ATTACK_RANGE: u32 = 1;
/// How many of its last applied inputs a game remembers by `input_id`: a retry of one of them
/// is recognised ([`Outcome::Duplicate`]); an input older than that, sent again, is treated
/// as new. A round takes at most about 7 inputs per player, so this covers about 24 rounds of
/// a full game: clients retry within seconds.
pub const INPUT_WINDOW: usize = 1024;
/// Longest game id and join code, in bytes. The host chooses them (minotaur uses 15 and 6
/// bytes); [`Game::new`] cuts longer ones and decoding refuses them.
pub const MAX_ID_BYTES: usize = 64;
/// Most bytes a [`Game`] takes in postcard (what nodes ship when it moves or is replicated;
/// the hosted state adds two counters, at most 20 bytes more, still within this). The worst
/// case is 67,934 bytes: the window 1,024 ids × 65 bytes = 66,560; six players with names
/// of 32 four-byte characters about 820; the board at most 127 hexes of 2 bytes; the id and
/// code 130; the rest under 100. A unit test builds that game and checks it.
pub const MAX_STATE_BYTES: usize = 72 * 1024;

/// Checks a `round_ms` chosen by a game's creator: the HTTP layer answers 400 with the error.
/// [`Game::new`] clamps instead, so a game can never hold an out-of-range value.
pub fn validate_round_ms(round_ms: u64) -> Result<u64, InputError> {
    if (MIN_ROUND_MS..=MAX_ROUND_MS).contains(&round_ms) {
        Ok(round_ms)
    } else {
        Err(InputError::RoundMs {
            value: round_ms,
            min: MIN_ROUND_MS,
            max: MAX_ROUND_MS,
        })
    }
}

/// Where a game is in its life. Serialised as `"waiting"`, `"active"`, `"over"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Fewer than [`MIN_PLAYERS`] have joined; no rounds run.
    Waiting,
    /// Rounds run.
    Active,
    /// At most one player lives; nothing changes any more.
    Over,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Waiting => "waiting",
            Status::Active => "active",
            Status::Over => "over",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One player's seat in a game.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Player {
    /// Unique within the game; how inputs and attacks name the player.
    pub name: String,
    /// Always an open hex of the maze. Living players never share one.
    pub position: Hex,
    /// `0..=MAX_HEALTH`; 0 exactly when eliminated.
    pub health: u32,
    /// `0..=AP_CAP`; 0 for eliminated players.
    pub action_points: u32,
    /// Whether the player has ended the turn in the current round; reset when a round ends.
    pub ended_turn: bool,
    /// False once eliminated; an eliminated player no longer acts, blocks or counts.
    pub alive: bool,
}

/// What [`Game::apply`] did with an accepted input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The input changed the game and `seq` grew by one.
    Applied,
    /// An input with this `input_id` was applied before; nothing changed. Answer with the
    /// current state, as for `Applied`: the client is retrying.
    Duplicate,
}

/// How the HTTP layer should answer an error from [`Game::apply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The input is malformed whatever the game's state: 400.
    Invalid,
    /// The input is well-formed but the rules refuse it now: 409.
    Refused,
}

/// What an action point spend was for, in error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Spend {
    Move,
    Attack,
}

impl fmt::Display for Spend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Spend::Move => "move",
            Spend::Attack => "attack",
        })
    }
}

/// Why [`Game::apply`] did not apply an input. A refused input changes nothing and is not
/// recorded as applied. Rounds in messages are counted from 1 (the round being played is
/// `round + 1` of the view, whose `round` counts completed rounds).
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum RuleError {
    #[error(transparent)]
    Invalid(#[from] InputError),
    #[error("player `{player}` has not joined this game; send {{\"type\":\"join\"}} first")]
    NotJoined { player: String },
    #[error("player `{player}` has already joined this game")]
    AlreadyJoined { player: String },
    #[error("the game is full: at most {max} players can join")]
    GameFull { max: usize },
    #[error("players can join only until round 1 ends; this game is in round {round}")]
    JoinClosed { round: u64 },
    #[error("the game has not started: it waits for a second player to join")]
    NotStarted,
    #[error("the game is over; it accepts no more inputs")]
    GameOver,
    #[error("`{player}` has been eliminated and can no longer act")]
    Eliminated { player: String },
    #[error("`{player}` already ended the turn in round {round}; wait for the next round")]
    TurnEnded { player: String, round: u64 },
    #[error("move to {to} is off the map: the board reaches {radius} steps from (0,0)")]
    OffMap { to: Hex, radius: u32 },
    #[error("move to {to} is blocked: it is a wall")]
    Wall { to: Hex },
    #[error("move to {to} is blocked: `{by}` stands there")]
    Occupied { to: Hex, by: String },
    #[error("`{player}` already stands at {to}; a move must go somewhere else")]
    AlreadyThere { player: String, to: Hex },
    #[error("move to {to} is impossible: walls and players block every way there")]
    Unreachable { to: Hex },
    #[error("{spend} costs {cost} action points but `{player}` has {has}")]
    NotEnoughActionPoints {
        player: String,
        spend: Spend,
        cost: u32,
        has: u32,
    },
    #[error("cannot attack `{target}`: no such player in this game")]
    UnknownTarget { target: String },
    #[error("`{player}` cannot attack themselves")]
    SelfTarget { player: String },
    #[error("cannot attack `{target}`: already eliminated")]
    TargetEliminated { target: String },
    #[error("cannot attack `{target}`: {distance} steps away, attacks reach {range}")]
    OutOfReach {
        target: String,
        distance: u32,
        range: u32,
    },
}

impl RuleError {
    /// 400 for [`ErrorKind::Invalid`], 409 for [`ErrorKind::Refused`].
    pub fn kind(&self) -> ErrorKind {
        match self {
            RuleError::Invalid(_) => ErrorKind::Invalid,
            _ => ErrorKind::Refused,
        }
    }
}

/// The whole state of one game: everything needed to continue it on another node.
///
/// Serialise it as it is (JSON or postcard) to move or snapshot a game; the absolute
/// deadline is in the old host's clock, so call [`Game::rebase`] on arrival. Decoding checks
/// the bounds of a game (see the module's "Bounded state") and refuses a state outside them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "GameFields")]
pub struct Game {
    /// The game's permanent name in the cluster, chosen by the caller.
    id: String,
    /// Short code players share to find the game (see [`crate::code_from_seed`]).
    code: String,
    /// Time players get per round.
    round_ms: u64,
    status: Status,
    /// Rounds completed. Joining is open while this is 0.
    round: u64,
    /// Inputs applied so far: clients use it to order states they receive.
    seq: u64,
    /// In joining order, which is also spawn order. Eliminated players stay listed.
    players: Vec<Player>,
    /// The board, stored rather than regenerated from the seed so a game keeps its map even
    /// if the generator ever changed between the builds of two nodes.
    maze: Maze,
    /// The `input_id`s of the last [`INPUT_WINDOW`] applied inputs, oldest first, for
    /// idempotency: a client retries an input after a timeout, a reconnect or a move that
    /// answered late, and applying it twice would spend action points twice. A window, not
    /// every id, so the state stays bounded however long a game runs.
    applied: InputWindow,
    /// The survivor, once the game is over (none if nobody survived).
    winner: Option<String>,
    /// When the current round ends, in the host's clock (`now_ms` units). `Some` exactly
    /// while the game is active. Absolute rather than remaining time so that replies and
    /// snapshots need no clock; [`Game::rebase`] converts it between hosts.
    deadline_ms: Option<u64>,
}

/// The fields of a [`Game`] as decoded, before its bounds are checked.
#[derive(Deserialize)]
struct GameFields {
    id: String,
    code: String,
    round_ms: u64,
    status: Status,
    round: u64,
    seq: u64,
    players: Vec<Player>,
    maze: Maze,
    applied: InputWindow,
    winner: Option<String>,
    deadline_ms: Option<u64>,
}

/// Why a decoded game state was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StateError {
    #[error("game {field} is {bytes} bytes; at most {max} are allowed")]
    IdTooLong {
        field: &'static str,
        bytes: usize,
        max: usize,
    },
    #[error("the game has {players} players; at most {max} can join")]
    TooManyPlayers { players: usize, max: usize },
    #[error("a player's name is malformed: {0}")]
    Name(InputError),
    #[error("the board has radius {radius}; a game's board has at most {max}")]
    Board { radius: u32, max: u32 },
    #[error("the board has a wall or spawn point off the board, or too many spawn points")]
    BoardShape,
    #[error("the game remembers {ids} input ids but applied only {seq} inputs")]
    Window { ids: usize, seq: u64 },
}

impl TryFrom<GameFields> for Game {
    type Error = StateError;

    fn try_from(f: GameFields) -> Result<Game, StateError> {
        for (field, value) in [("id", &f.id), ("code", &f.code)] {
            if value.len() > MAX_ID_BYTES {
                return Err(StateError::IdTooLong {
                    field,
                    bytes: value.len(),
                    max: MAX_ID_BYTES,
                });
            }
        }
        if f.players.len() > MAX_PLAYERS {
            return Err(StateError::TooManyPlayers {
                players: f.players.len(),
                max: MAX_PLAYERS,
            });
        }
        for name in f.players.iter().map(|p| &p.name).chain(&f.winner) {
            check_name(Field::Player, name).map_err(StateError::Name)?;
        }
        let maze = &f.maze;
        if maze.radius() > DEFAULT_RADIUS {
            return Err(StateError::Board {
                radius: maze.radius(),
                max: DEFAULT_RADIUS,
            });
        }
        let on_board = |h: &Hex| maze.contains(*h);
        if !maze.walls().iter().all(on_board)
            || !maze.spawns().iter().all(on_board)
            || maze.spawns().len() > maze::SPAWN_POINTS
        {
            return Err(StateError::BoardShape);
        }
        if f.applied.len() as u64 > f.seq {
            return Err(StateError::Window {
                ids: f.applied.len(),
                seq: f.seq,
            });
        }
        Ok(Game {
            id: f.id,
            code: f.code,
            round_ms: f.round_ms,
            status: f.status,
            round: f.round,
            seq: f.seq,
            players: f.players,
            maze: f.maze,
            applied: f.applied,
            winner: f.winner,
            deadline_ms: f.deadline_ms,
        })
    }
}

/// `text` cut to at most `max` bytes, at a character boundary.
fn cut(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

impl Game {
    /// A new, empty game waiting for players. `round_ms` is clamped to
    /// [`MIN_ROUND_MS`]`..=`[`MAX_ROUND_MS`] (check it with [`validate_round_ms`] first to
    /// report a bad value); `seed` chooses the maze. `id` and `code` are cut to
    /// [`MAX_ID_BYTES`].
    pub fn new(id: impl Into<String>, code: impl Into<String>, round_ms: u64, seed: u64) -> Game {
        Game {
            id: cut(id.into(), MAX_ID_BYTES),
            code: cut(code.into(), MAX_ID_BYTES),
            round_ms: round_ms.clamp(MIN_ROUND_MS, MAX_ROUND_MS),
            status: Status::Waiting,
            round: 0,
            seq: 0,
            players: Vec::new(),
            maze: Maze::generate(seed),
            applied: InputWindow::default(),
            winner: None,
            deadline_ms: None,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Puts the game on another board (a model rebuilding a game from a client's view).
    pub(crate) fn set_maze(&mut self, maze: Maze) {
        self.maze = maze;
    }

    pub fn code(&self) -> &str {
        &self.code
    }

    pub fn round_ms(&self) -> u64 {
        self.round_ms
    }

    pub fn status(&self) -> Status {
        self.status
    }

    /// Rounds completed.
    pub fn round(&self) -> u64 {
        self.round
    }

    /// Inputs applied so far.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub fn players(&self) -> &[Player] {
        &self.players
    }

    pub fn player(&self, name: &str) -> Option<&Player> {
        self.players.iter().find(|p| p.name == name)
    }

    pub fn maze(&self) -> &Maze {
        &self.maze
    }

    pub fn winner(&self) -> Option<&str> {
        self.winner.as_deref()
    }

    /// When the current round ends, in the caller's clock; `None` unless active. A host arms
    /// its timer for this and calls [`Game::tick`] when it fires.
    pub fn deadline_ms(&self) -> Option<u64> {
        self.deadline_ms
    }

    /// Whether an input with this id is one of the last [`INPUT_WINDOW`] applied: a retry of
    /// it would be answered [`Outcome::Duplicate`].
    pub fn is_applied(&self, input_id: &str) -> bool {
        self.applied.contains(input_id)
    }

    /// The ids of the last [`INPUT_WINDOW`] applied inputs, oldest first.
    pub fn recent_input_ids(&self) -> impl Iterator<Item = &str> {
        self.applied.iter()
    }

    /// Number of players still alive.
    pub fn living(&self) -> usize {
        self.players.iter().filter(|p| p.alive).count()
    }

    /// Applies one input at time `now_ms`, or says why not.
    ///
    /// Checks, in order: the input's shape ([`Input::validate`]); whether its `input_id` is
    /// one of the last [`INPUT_WINDOW`] applied (then [`Outcome::Duplicate`], whatever the
    /// game's state now); whether the game is over; then the action's own rules. On
    /// `Ok(Applied)` the game changed and `seq` grew by exactly one; on `Ok(Duplicate)` or any
    /// error the game is unchanged.
    pub fn apply(&mut self, now_ms: u64, input: Input) -> Result<Outcome, RuleError> {
        input.validate()?;
        if self.applied.contains(&input.input_id) {
            return Ok(Outcome::Duplicate);
        }
        if self.status == Status::Over {
            return Err(RuleError::GameOver);
        }
        // Each action checks everything before it changes anything, so an error leaves the
        // game as it was.
        match &input.action {
            Action::Join => self.join(now_ms, &input.player)?,
            Action::Move { to } => self.walk(&input.player, *to)?,
            Action::Attack { target } => self.attack(&input.player, target)?,
            Action::EndTurn => self.end_turn(now_ms, &input.player)?,
            Action::Leave => self.leave(now_ms, &input.player)?,
        }
        self.seq += 1;
        self.applied.push(input.input_id);
        Ok(Outcome::Applied)
    }

    /// Ends the current round if its deadline has passed at `now_ms`; returns whether it did.
    ///
    /// Ends at most one round per call, and the next round's deadline is `round_ms` after
    /// `now_ms`, not after the missed deadline: when a host ticks late (it was paused, or
    /// the game was moving), players still get a full round rather than a burst of rounds
    /// they never saw. Does not change `seq`, which counts inputs only.
    pub fn tick(&mut self, now_ms: u64) -> bool {
        if self.status != Status::Active {
            return false;
        }
        match self.deadline_ms {
            Some(deadline) if now_ms >= deadline => {
                self.end_round(now_ms);
                true
            }
            _ => false,
        }
    }

    /// Ends the game because nobody played for the host's idle timeout: `over`, no winner,
    /// no deadline. Returns whether it changed anything (an over game stays as it is). Does
    /// not change `seq`, which counts inputs only.
    pub fn end_idle(&mut self) -> bool {
        if self.status == Status::Over {
            return false;
        }
        self.status = Status::Over;
        self.winner = None;
        self.deadline_ms = None;
        true
    }

    /// Milliseconds left in the current round at `now_ms` (0 once the deadline has passed);
    /// `None` unless the game is active.
    pub fn deadline_in(&self, now_ms: u64) -> Option<u64> {
        self.deadline_ms
            .map(|deadline| deadline.saturating_sub(now_ms))
    }

    /// Moves the deadline from one clock to another, keeping the time left: call it on the
    /// node that receives a game, with the sender's `now_ms` at the moment it packed the game
    /// (`old_now_ms`) and the receiver's now (`new_now_ms`). An overdue deadline stays
    /// overdue (it becomes `new_now_ms`), so the next tick ends the round.
    pub fn rebase(&mut self, old_now_ms: u64, new_now_ms: u64) {
        if let Some(remaining) = self.deadline_in(old_now_ms) {
            self.deadline_ms = Some(new_now_ms.saturating_add(remaining));
        }
    }

    fn index_of(&self, name: &str) -> Option<usize> {
        self.players.iter().position(|p| p.name == name)
    }

    /// The living player at `hex`, if any.
    fn occupant(&self, hex: Hex) -> Option<&Player> {
        self.players.iter().find(|p| p.alive && p.position == hex)
    }

    /// The index of `name` if that player may act now: joined, game running, alive, turn
    /// not yet ended.
    fn actor(&self, name: &str) -> Result<usize, RuleError> {
        let index = self.index_of(name).ok_or_else(|| RuleError::NotJoined {
            player: name.to_string(),
        })?;
        let player = &self.players[index];
        match self.status {
            Status::Waiting => return Err(RuleError::NotStarted),
            Status::Over => return Err(RuleError::GameOver),
            Status::Active => {}
        }
        if !player.alive {
            return Err(RuleError::Eliminated {
                player: name.to_string(),
            });
        }
        if player.ended_turn {
            return Err(RuleError::TurnEnded {
                player: name.to_string(),
                round: self.round + 1,
            });
        }
        Ok(index)
    }

    fn join(&mut self, now_ms: u64, name: &str) -> Result<(), RuleError> {
        if self.index_of(name).is_some() {
            return Err(RuleError::AlreadyJoined {
                player: name.to_string(),
            });
        }
        if self.round > 0 {
            return Err(RuleError::JoinClosed {
                round: self.round + 1,
            });
        }
        if self.players.len() >= MAX_PLAYERS {
            return Err(RuleError::GameFull { max: MAX_PLAYERS });
        }
        let position = self
            .free_spawn()
            .ok_or(RuleError::GameFull { max: MAX_PLAYERS })?;
        // Joining during round 1 gets that round's grant at once; joining while waiting gets
        // it when the game starts.
        let action_points = if self.status == Status::Active {
            AP_PER_ROUND
        } else {
            0
        };
        self.players.push(Player {
            name: name.to_string(),
            position,
            health: MAX_HEALTH,
            action_points,
            ended_turn: false,
            alive: true,
        });
        if self.status == Status::Waiting && self.players.len() >= MIN_PLAYERS {
            self.status = Status::Active;
            self.start_round(now_ms);
        }
        Ok(())
    }

    /// The first spawn point no living player stands on. With fewer players than spawn
    /// points one is always free; the fallback to any free open hex only guards mazes built
    /// with fewer spawn points than that.
    fn free_spawn(&self) -> Option<Hex> {
        let free = |hex: &Hex| self.occupant(*hex).is_none();
        self.maze
            .spawns()
            .iter()
            .copied()
            .find(free)
            .or_else(|| self.maze.open_hexes().into_iter().find(free))
    }

    fn walk(&mut self, name: &str, to: Hex) -> Result<(), RuleError> {
        let index = self.actor(name)?;
        let player = &self.players[index];
        if !self.maze.contains(to) {
            return Err(RuleError::OffMap {
                to,
                radius: self.maze.radius(),
            });
        }
        if self.maze.is_wall(to) {
            return Err(RuleError::Wall { to });
        }
        if player.position == to {
            return Err(RuleError::AlreadyThere {
                player: name.to_string(),
                to,
            });
        }
        if let Some(other) = self.occupant(to) {
            return Err(RuleError::Occupied {
                to,
                by: other.name.clone(),
            });
        }
        let blocked = |hex: Hex| self.occupant(hex).is_some();
        let cost = self
            .maze
            .path_len(player.position, to, blocked)
            .ok_or(RuleError::Unreachable { to })?;
        if cost > player.action_points {
            return Err(RuleError::NotEnoughActionPoints {
                player: name.to_string(),
                spend: Spend::Move,
                cost,
                has: player.action_points,
            });
        }
        let player = &mut self.players[index];
        player.position = to;
        player.action_points -= cost;
        Ok(())
    }

    fn attack(&mut self, name: &str, target: &str) -> Result<(), RuleError> {
        let index = self.actor(name)?;
        if target == name {
            return Err(RuleError::SelfTarget {
                player: name.to_string(),
            });
        }
        let victim = self
            .index_of(target)
            .ok_or_else(|| RuleError::UnknownTarget {
                target: target.to_string(),
            })?;
        let (attacker, defender) = (&self.players[index], &self.players[victim]);
        if !defender.alive {
            return Err(RuleError::TargetEliminated {
                target: target.to_string(),
            });
        }
        let distance = attacker.position.distance(defender.position);
        if distance > ATTACK_RANGE {
            return Err(RuleError::OutOfReach {
                target: target.to_string(),
                distance,
                range: ATTACK_RANGE,
            });
        }
        if attacker.action_points < ATTACK_COST {
            return Err(RuleError::NotEnoughActionPoints {
                player: name.to_string(),
                spend: Spend::Attack,
                cost: ATTACK_COST,
                has: attacker.action_points,
            });
        }
        self.players[index].action_points -= ATTACK_COST;
        let defender = &mut self.players[victim];
        defender.health = defender.health.saturating_sub(ATTACK_DAMAGE);
        if defender.health == 0 {
            defender.alive = false;
            defender.action_points = 0;
            defender.ended_turn = false;
            if self.living() <= 1 {
                self.finish();
            }
        }
        Ok(())
    }

    fn end_turn(&mut self, now_ms: u64, name: &str) -> Result<(), RuleError> {
        let index = self.actor(name)?;
        self.players[index].ended_turn = true;
        if self.players.iter().all(|p| !p.alive || p.ended_turn) {
            self.end_round(now_ms);
        }
        Ok(())
    }

    /// `leave`: before the game has started, the seat is freed (the player is removed and may
    /// join again; the spawn point is free for the next to join). Once it has started, a
    /// forfeit: the player is out as if eliminated (health and action points 0, listed, no
    /// longer blocking), whatever the turn; an eliminated player cannot leave again. When at
    /// most one player is left the game is over and that player wins; otherwise, if everyone
    /// left has ended the turn, the round ends.
    fn leave(&mut self, now_ms: u64, name: &str) -> Result<(), RuleError> {
        let index = self.index_of(name).ok_or_else(|| RuleError::NotJoined {
            player: name.to_string(),
        })?;
        match self.status {
            Status::Waiting => {
                self.players.remove(index);
                return Ok(());
            }
            Status::Over => return Err(RuleError::GameOver),
            Status::Active => {}
        }
        let player = &mut self.players[index];
        if !player.alive {
            return Err(RuleError::Eliminated {
                player: name.to_string(),
            });
        }
        player.alive = false;
        player.health = 0;
        player.action_points = 0;
        player.ended_turn = false;
        if self.living() <= 1 {
            self.finish();
        } else if self.players.iter().all(|p| !p.alive || p.ended_turn) {
            self.end_round(now_ms);
        }
        Ok(())
    }

    /// Closes the current round and opens the next.
    fn end_round(&mut self, now_ms: u64) {
        self.round += 1;
        self.start_round(now_ms);
    }

    /// Opens a round at `now_ms`: turns reset, action points granted, deadline set.
    fn start_round(&mut self, now_ms: u64) {
        for player in self.players.iter_mut().filter(|p| p.alive) {
            player.ended_turn = false;
            player.action_points = player
                .action_points
                .saturating_add(AP_PER_ROUND)
                .min(AP_CAP);
        }
        self.deadline_ms = Some(now_ms.saturating_add(self.round_ms));
    }

    fn finish(&mut self) {
        self.status = Status::Over;
        self.winner = self
            .players
            .iter()
            .find(|p| p.alive)
            .map(|p| p.name.clone());
        self.deadline_ms = None;
    }
}

#[cfg(test)]
mod tests;
