//! The Minotaur game: the rules of a turn-based, hex-grid dungeon crawler.
//!
//! This crate owns what a game *is* — its state, the inputs players send, whether the rules
//! accept them, how rounds end and what clients see — as pure, synchronous, deterministic
//! code: no clock (callers pass `now_ms`), no randomness (callers pass a seed), no I/O.
//! Hosting a game (an actor, its round timer, moving it between nodes) is built on top of
//! [`Game`] and leaves every rule decision to it. A [`Game`] is plain data (serde, JSON or
//! postcard), so it can be shipped to another node as it is and continued there
//! ([`Game::rebase`] moves the deadline onto the new node's clock).
//!
//! ```
//! use game::{Action, Game, Input, Outcome, Status};
//!
//! let mut game = Game::new("g1", game::code_from_seed(7), game::DEFAULT_ROUND_MS, 7);
//! game.apply(0, Input::new("ann", "a1", Action::Join)).unwrap();
//! game.apply(0, Input::new("bob", "b1", Action::Join)).unwrap();
//! assert_eq!(game.status(), Status::Active);
//! // Retrying an input is harmless.
//! assert_eq!(game.apply(5, Input::new("bob", "b1", Action::Join)), Ok(Outcome::Duplicate));
//! assert_eq!(game.seq(), 2);
//! ```
//!
//! # Layout
//! - [`hex`]: axial hex coordinates and grid geometry.
//! - [`maze`]: the dungeon — board, walls, spawn points — generated from a seed.
//! - `dice`: the deterministic generator behind mazes and join codes (private).
//! - [`rules`]: [`Game`], the state of one game, and [`Game::apply`] / [`Game::tick`], the
//!   only ways it changes; the rule constants; [`RuleError`].
//! - [`input`]: [`Input`] and [`Action`], their JSON shapes and shape checks ([`InputError`]).
//! - [`view`]: [`GameView`], the JSON state clients see.
//! - [`model`]: a game rebuilt from a client's first view and its acknowledged inputs, to
//!   check what a server holds.
//! - [`session`]: the game actor hosted by horde: timer, subscribers, state schema.
//! - [`join_code`]: the short codes players share.
//!
//! # Errors and HTTP
//! [`InputError`] (and [`RuleError::Invalid`]) mean a malformed input: 400.
//! Every other [`RuleError`] is a refusal by the rules: 409. [`RuleError::kind`] says which.

// Tests unwrap freely: a panic is how a test reports failure. Library code is still linted,
// since clippy also checks the crate built without `cfg(test)`.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod hex;
pub mod input;
pub mod join_code;
pub mod maze;
pub mod model;
pub mod rules;
pub mod session;
pub mod view;

mod dice;

pub use hex::Hex;
pub use input::{Action, Field, Input, InputError, MAX_INPUT_ID_BYTES, MAX_NAME_CHARS};
pub use join_code::{CODE_ALPHABET, CODE_LEN, code_from_seed, normalize_code};
pub use maze::Maze;
pub use rules::{
    AP_CAP, AP_PER_ROUND, ATTACK_COST, ATTACK_DAMAGE, ATTACK_RANGE, DEFAULT_ROUND_MS, ErrorKind,
    Game, INPUT_WINDOW, MAX_HEALTH, MAX_ID_BYTES, MAX_PLAYERS, MAX_ROUND_MS, MAX_STATE_BYTES,
    MIN_PLAYERS, MIN_ROUND_MS, Outcome, Player, RuleError, Spend, StateError, Status,
    validate_round_ms,
};
pub use session::{
    APP_VERSION, DEFAULT_IDLE_TIMEOUT_MS, DEFAULT_RETENTION_MS, Ended, GameMsg, GameReply,
    GameSpec, Lifecycle, STATE_SCHEMA, Session, Snapshot, set_lifecycle,
};
pub use view::{GameView, PlayerView, RulesView, WorldView};
