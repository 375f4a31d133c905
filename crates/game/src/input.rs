//! Inputs: what a player sends, its wire shapes, and the checks that need no game state.
//!
//! Owns the `Input`/`Action` types and their validation (lengths, printable names). Whether
//! the game accepts an input is decided by the rules (`rules`), not here: this module only
//! answers "is this a well-formed input at all?" — the HTTP layer's 400 — while the rules
//! answer "may this happen now?" — its 409.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

use crate::hex::Hex;

/// Longest player name, in characters.
pub const MAX_NAME_CHARS: usize = 32;
/// Longest input id, in bytes of UTF-8 (an id is 1 to 64 bytes). Counted in bytes, not
/// characters, because a game keeps the ids of its last [`crate::INPUT_WINDOW`] inputs: the
/// byte count is what bounds its state.
pub const MAX_INPUT_ID_BYTES: usize = 64;

/// One input to a game: `{"player": "bob", "input_id": "b-17", "action": {...}}`.
///
/// `input_id` is the idempotency key, unique per game (not per player): clients should use
/// random ids (UUIDs) or prefix a counter with the player's name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Input {
    pub player: String,
    pub input_id: String,
    pub action: Action,
}

/// What a player does. In JSON, internally tagged by `type`:
/// `{"type":"join"}`, `{"type":"move","to":{"q":1,"r":-1}}`, `{"type":"attack","target":"bob"}`,
/// `{"type":"end_turn"}`, `{"type":"leave"}`.
///
/// In non-human-readable formats (postcard, between nodes) it is externally tagged instead:
/// internally tagged enums need `deserialize_any`, which postcard cannot provide, and inputs
/// cross the cluster when a request lands on a node that does not host the game. Postcard
/// numbers variants in declaration order, so new variants go at the end of `PlainAction`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Take a seat in the game.
    Join,
    /// Walk to `to`, paying one action point per step of the shortest open path.
    Move { to: Hex },
    /// Hit the adjacent player named `target`.
    Attack { target: String },
    /// Done for this round.
    EndTurn,
    /// Quit the game. Before the game has started (`waiting`) it frees the player's seat: the
    /// player is removed as if never joined, and may join again. Once it has started it is a
    /// forfeit: the player is out for good (listed, eliminated, no longer acting or blocking),
    /// and when at most one player is left the game is `over` and that player, if any, wins.
    Leave,
}

/// The JSON shape of [`Action`].
#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum TaggedAction {
    Join,
    Move { to: Hex },
    Attack { target: String },
    EndTurn,
    Leave,
}

/// The compact (postcard) shape of [`Action`]. Postcard encodes the variant's index: keep the
/// order, add new variants at the end.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum PlainAction {
    Join,
    Move { to: Hex },
    Attack { target: String },
    EndTurn,
    Leave,
}

impl Serialize for Action {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            let tagged = match self.clone() {
                Action::Join => TaggedAction::Join,
                Action::Move { to } => TaggedAction::Move { to },
                Action::Attack { target } => TaggedAction::Attack { target },
                Action::EndTurn => TaggedAction::EndTurn,
                Action::Leave => TaggedAction::Leave,
            };
            tagged.serialize(serializer)
        } else {
            let plain = match self.clone() {
                Action::Join => PlainAction::Join,
                Action::Move { to } => PlainAction::Move { to },
                Action::Attack { target } => PlainAction::Attack { target },
                Action::EndTurn => PlainAction::EndTurn,
                Action::Leave => PlainAction::Leave,
            };
            plain.serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for Action {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            Ok(match TaggedAction::deserialize(deserializer)? {
                TaggedAction::Join => Action::Join,
                TaggedAction::Move { to } => Action::Move { to },
                TaggedAction::Attack { target } => Action::Attack { target },
                TaggedAction::EndTurn => Action::EndTurn,
                TaggedAction::Leave => Action::Leave,
            })
        } else {
            Ok(match PlainAction::deserialize(deserializer)? {
                PlainAction::Join => Action::Join,
                PlainAction::Move { to } => Action::Move { to },
                PlainAction::Attack { target } => Action::Attack { target },
                PlainAction::EndTurn => Action::EndTurn,
                PlainAction::Leave => Action::Leave,
            })
        }
    }
}

impl Action {
    /// The action's `type` in JSON, for logs and metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Join => "join",
            Action::Move { .. } => "move",
            Action::Attack { .. } => "attack",
            Action::EndTurn => "end_turn",
            Action::Leave => "leave",
        }
    }
}

/// Which field of an input is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Field {
    Player,
    InputId,
    Target,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Field::Player => "player",
            Field::InputId => "input_id",
            Field::Target => "action.target",
        })
    }
}

/// A malformed input or setting: the HTTP layer answers 400 with this message.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum InputError {
    #[error("`{field}` must not be empty")]
    Empty { field: Field },
    #[error("`{field}` is {chars} characters long; at most {max} are allowed")]
    TooLong {
        field: Field,
        chars: usize,
        max: usize,
    },
    #[error("`{field}` is {bytes} bytes long in UTF-8; it must be 1 to {max} bytes")]
    TooManyBytes {
        field: Field,
        bytes: usize,
        max: usize,
    },
    #[error("`{field}` must be printable: no control characters and not only spaces")]
    NotPrintable { field: Field },
    #[error("`round_ms` is {value}; it must be between {min} and {max} milliseconds")]
    RoundMs { value: u64, min: u64, max: u64 },
}

impl Input {
    pub fn new(player: impl Into<String>, input_id: impl Into<String>, action: Action) -> Input {
        Input {
            player: player.into(),
            input_id: input_id.into(),
            action,
        }
    }

    /// Checks the shape of the input: names non-empty, at most [`MAX_NAME_CHARS`] characters
    /// and printable; `input_id` 1 to [`MAX_INPUT_ID_BYTES`] bytes and printable.
    /// [`crate::Game::apply`] runs this too, so a malformed input can never reach the state.
    pub fn validate(&self) -> Result<(), InputError> {
        check_name(Field::Player, &self.player)?;
        check_input_id(&self.input_id)?;
        if let Action::Attack { target } = &self.action {
            check_name(Field::Target, target)?;
        }
        Ok(())
    }
}

/// Checks a player name: 1 to [`MAX_NAME_CHARS`] characters, printable.
pub(crate) fn check_name(field: Field, text: &str) -> Result<(), InputError> {
    if text.is_empty() {
        return Err(InputError::Empty { field });
    }
    let chars = text.chars().count();
    if chars > MAX_NAME_CHARS {
        return Err(InputError::TooLong {
            field,
            chars,
            max: MAX_NAME_CHARS,
        });
    }
    check_printable(field, text)
}

/// Checks an `input_id`: 1 to [`MAX_INPUT_ID_BYTES`] bytes, printable.
pub(crate) fn check_input_id(text: &str) -> Result<(), InputError> {
    let field = Field::InputId;
    if text.is_empty() {
        return Err(InputError::Empty { field });
    }
    if text.len() > MAX_INPUT_ID_BYTES {
        return Err(InputError::TooManyBytes {
            field,
            bytes: text.len(),
            max: MAX_INPUT_ID_BYTES,
        });
    }
    check_printable(field, text)
}

fn check_printable(field: Field, text: &str) -> Result<(), InputError> {
    // Names end up in logs, the console and other players' screens: no control characters
    // (newlines, escapes) and nothing invisible-only.
    if text.chars().any(char::is_control) || text.trim().is_empty() {
        return Err(InputError::NotPrintable { field });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Input, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn parses_every_documented_action_shape() {
        let cases = [
            (r#"{"type":"join"}"#, Action::Join),
            (
                r#"{"type":"move","to":{"q":1,"r":-1}}"#,
                Action::Move {
                    to: Hex::new(1, -1),
                },
            ),
            (
                r#"{"type":"attack","target":"bob"}"#,
                Action::Attack {
                    target: "bob".into(),
                },
            ),
            (r#"{"type":"end_turn"}"#, Action::EndTurn),
            (r#"{"type":"leave"}"#, Action::Leave),
        ];
        for (action_json, action) in cases {
            let json = format!(r#"{{"player":"ann","input_id":"a-1","action":{action_json}}}"#);
            let input = parse(&json).unwrap();
            assert_eq!(input, Input::new("ann", "a-1", action.clone()));
            // And it serialises back to exactly the documented shape.
            assert_eq!(serde_json::to_string(&action).unwrap(), action_json);
        }
    }

    #[test]
    fn rejects_unknown_actions_and_missing_fields() {
        for json in [
            r#"{"player":"ann","input_id":"1","action":{"type":"fly"}}"#,
            r#"{"player":"ann","input_id":"1","action":{}}"#,
            r#"{"player":"ann","input_id":"1","action":{"type":"move"}}"#,
            r#"{"player":"ann","input_id":"1","action":{"type":"attack"}}"#,
            r#"{"player":"ann","input_id":"1","action":{"type":"move","to":{"q":1}}}"#,
            r#"{"player":"ann","input_id":"1","action":"join"}"#,
            r#"{"player":"ann","action":{"type":"join"}}"#,
            r#"{"input_id":"1","action":{"type":"join"}}"#,
            r#"{"player":"ann","input_id":"1"}"#,
            r#"{"player":"ann","input_id":1,"action":{"type":"join"}}"#,
            r#"{"player":"ann","input_id":"1","action":{"type":"move","to":{"q":9999999999,"r":0}}}"#,
        ] {
            assert!(parse(json).is_err(), "accepted {json}");
        }
    }

    #[test]
    fn postcard_round_trips_every_action() {
        for action in [
            Action::Join,
            Action::Move {
                to: Hex::new(-3, 2),
            },
            Action::Attack {
                target: "bob".into(),
            },
            Action::EndTurn,
            Action::Leave,
        ] {
            let input = Input::new("ann", "id", action);
            let bytes = postcard::to_allocvec(&input).unwrap();
            assert_eq!(postcard::from_bytes::<Input>(&bytes).unwrap(), input);
        }
    }

    #[test]
    fn postcard_keeps_the_variant_numbers_of_earlier_builds() {
        // Nodes of the previous build decode these bytes: the old variants keep their index,
        // `leave` comes after them.
        let index = |action: Action| postcard::to_allocvec(&action).unwrap();
        assert_eq!(index(Action::Join), [0]);
        assert_eq!(index(Action::EndTurn), [3]);
        assert_eq!(index(Action::Leave), [4]);
    }

    #[test]
    fn input_id_is_1_to_64_bytes_not_characters() {
        let id = |id: &str| Input::new("ann", id, Action::Join).validate();
        assert_eq!(id(&"x".repeat(64)), Ok(()));
        // 32 two-byte characters: 64 bytes.
        assert_eq!(id(&"é".repeat(32)), Ok(()));
        // 33 characters, 65 bytes: within 64 characters, but over 64 bytes.
        let over = format!("{}x", "é".repeat(32));
        assert_eq!((over.chars().count(), over.len()), (33, 65));
        let err = id(&over).unwrap_err();
        assert_eq!(
            err,
            InputError::TooManyBytes {
                field: Field::InputId,
                bytes: 65,
                max: MAX_INPUT_ID_BYTES
            }
        );
        assert_eq!(
            err.to_string(),
            "`input_id` is 65 bytes long in UTF-8; it must be 1 to 64 bytes"
        );
        assert!(matches!(
            id(&"é".repeat(33)),
            Err(InputError::TooManyBytes { bytes: 66, .. })
        ));
        assert_eq!(
            id("").unwrap_err().to_string(),
            "`input_id` must not be empty"
        );
    }

    #[test]
    fn validate_accepts_ordinary_inputs() {
        assert_eq!(
            Input::new("Zoë the Brave", "x", Action::Join).validate(),
            Ok(())
        );
        let long_ok = "a".repeat(MAX_NAME_CHARS);
        assert_eq!(
            Input::new(long_ok, "x".repeat(64), Action::EndTurn).validate(),
            Ok(())
        );
        // Length counts characters, not bytes.
        assert_eq!(
            Input::new("é".repeat(32), "1", Action::Join).validate(),
            Ok(())
        );
    }

    #[test]
    fn validate_names_the_bad_field() {
        use InputError::*;
        let check = |player: &str, id: &str, action: Action| {
            Input::new(player, id, action).validate().unwrap_err()
        };
        assert_eq!(
            check("", "1", Action::Join),
            Empty {
                field: Field::Player
            }
        );
        assert_eq!(
            check("ann", "", Action::Join),
            Empty {
                field: Field::InputId
            }
        );
        assert_eq!(
            check(&"a".repeat(33), "1", Action::Join),
            TooLong {
                field: Field::Player,
                chars: 33,
                max: 32
            }
        );
        assert_eq!(
            check("ann", &"1".repeat(65), Action::Join),
            TooManyBytes {
                field: Field::InputId,
                bytes: 65,
                max: 64
            }
        );
        assert_eq!(
            check("a\nb", "1", Action::Join),
            NotPrintable {
                field: Field::Player
            }
        );
        assert_eq!(
            check("   ", "1", Action::Join),
            NotPrintable {
                field: Field::Player
            }
        );
        assert_eq!(
            check("ann", "\u{7}", Action::Join),
            NotPrintable {
                field: Field::InputId
            }
        );
        let attack = |target: &str| Action::Attack {
            target: target.into(),
        };
        assert_eq!(
            check("ann", "1", attack("")),
            Empty {
                field: Field::Target
            }
        );
        assert_eq!(
            check("", "1", attack("")),
            Empty {
                field: Field::Player
            },
            "the player is checked first"
        );
    }

    #[test]
    fn messages_say_what_is_wrong() {
        let err = Input::new("a".repeat(40), "1", Action::Join)
            .validate()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "`player` is 40 characters long; at most 32 are allowed"
        );
        let err = Input::new(
            "ann",
            "1",
            Action::Attack {
                target: "\t".into(),
            },
        )
        .validate()
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "`action.target` must be printable: no control characters and not only spaces"
        );
    }
}
