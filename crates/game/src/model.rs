//! A model of a game rebuilt from what a client saw: the test of a server's content.
//!
//! A client that created a game read its whole board in the answer; a client that is the
//! game's only writer knows every input the server acknowledged, in order. Replaying those
//! inputs through this crate's rules, from that first view, gives the state the server must
//! hold: [`from_created`] builds the starting [`Game`], [`Game::apply`] replays, and
//! [`differences`] names the fields in which the server's view is not the model's. A game
//! that kept its `seq` but lost its board, a player or a turn shows here.
//!
//! Time is the one thing a model does not know: [`differences`] leaves `deadline_in_ms` out,
//! and a model holds only while no round ends by its deadline (create games with a
//! `round_ms` longer than the run).

use crate::maze::Maze;
use crate::rules::{Game, Status};
use crate::view::GameView;

/// The game a client created, from the view the creation answered; `None` unless that view
/// is of a new game (waiting, no input applied, no player).
pub fn from_created(view: &GameView) -> Option<Game> {
    if view.status != Status::Waiting || view.seq != 0 || !view.players.is_empty() {
        return None;
    }
    let maze = Maze::from_parts(view.world.radius, &view.world.walls, &view.world.spawns);
    let mut game = Game::new(view.id.clone(), view.code.clone(), view.round_ms, 0);
    game.set_maze(maze);
    // The view is the only truth: a board or a round length the rules would not build from
    // it (cut, clamped) is a model that cannot match, so refuse it here.
    (game.view(0).world == view.world && game.round_ms() == view.round_ms).then_some(game)
}

/// The fields in which `got` (a server's view) differs from `expected` (the model's),
/// `deadline_in_ms` left out; empty when they agree.
pub fn differences(expected: &GameView, got: &GameView) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut check = |same: bool, field: &'static str| {
        if !same {
            out.push(field);
        }
    };
    check(expected.id == got.id, "id");
    check(expected.code == got.code, "code");
    check(expected.status == got.status, "status");
    check(expected.round == got.round, "round");
    check(expected.seq == got.seq, "seq");
    check(expected.round_ms == got.round_ms, "round_ms");
    check(expected.players == got.players, "players");
    check(expected.world == got.world, "world");
    check(expected.winner == got.winner, "winner");
    check(expected.rules == got.rules, "rules");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Action, Input};

    fn played() -> Game {
        let mut g = Game::new("g1", "ABCD", 600_000, 42);
        g.apply(0, Input::new("ann", "a1", Action::Join)).unwrap();
        g.apply(0, Input::new("bob", "b1", Action::Join)).unwrap();
        g.apply(5, Input::new("ann", "a2", Action::EndTurn))
            .unwrap();
        g
    }

    #[test]
    fn a_replay_from_the_created_view_matches_the_game() {
        let created = Game::new("g1", "ABCD", 600_000, 42).view(0);
        let mut model = from_created(&created).unwrap();
        for (player, id, action) in [
            ("ann", "a1", Action::Join),
            ("bob", "b1", Action::Join),
            ("ann", "a2", Action::EndTurn),
        ] {
            model.apply(0, Input::new(player, id, action)).unwrap();
        }
        assert!(differences(&model.view(0), &played().view(99)).is_empty());
        assert_eq!(
            model.recent_input_ids().collect::<Vec<_>>(),
            ["a1", "b1", "a2"]
        );
    }

    #[test]
    fn a_lost_turn_or_board_is_named_though_seq_agrees() {
        let model = played().view(0);
        let mut other = Game::new("g1", "ABCD", 600_000, 42);
        other
            .apply(0, Input::new("ann", "a1", Action::Join))
            .unwrap();
        other
            .apply(0, Input::new("bob", "b1", Action::Join))
            .unwrap();
        other
            .apply(0, Input::new("bob", "b2", Action::EndTurn))
            .unwrap();
        assert_eq!(differences(&model, &other.view(0)), ["players"]);
        let mut board = played().view(0);
        board.world.walls.pop();
        assert_eq!(differences(&model, &board), ["world"]);
    }

    #[test]
    fn only_a_new_game_starts_a_model() {
        assert!(from_created(&played().view(0)).is_none());
    }
}
