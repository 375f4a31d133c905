//! The dungeon: the board a game is played on, generated from a seed.
//!
//! Owns the board's shape (a hexagon of hexes around the origin), its walls, its spawn points
//! and path finding through open hexes. It knows nothing about players: the rules pass in what
//! blocks a path (other players) as a predicate.
//!
//! Generation is deterministic and must stay so across versions and platforms: a game's maze
//! is stored in its state, but a seed must still name one map forever (tests, bug reports,
//! replays). The steps below consume the dice in a fixed order; changing the order, the
//! constants or the algorithm changes every map, which the golden test in this module catches.
//!
//! 1. Walls: pick random hexes and keep each as a wall only if the open hexes stay connected
//!    (checked with a breadth-first search), until [`WALL_PERCENT`] of the board is walled or
//!    the attempts run out. Connectivity holds by construction, so no repair pass is needed.
//! 2. Spawn points: a random open hex of the outermost ring that has one, then repeatedly the
//!    open hex farthest from all spawn points chosen so far (farthest-point sampling), ties
//!    broken by a seeded shuffle.

use std::collections::{BTreeSet, HashSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::dice::Dice;
use crate::hex::Hex;

/// Radius of the board of a new game: 127 hexes.
pub const DEFAULT_RADIUS: u32 = 6;
/// Smallest radius [`Maze::with_radius`] builds: enough open hexes for every spawn point.
pub const MIN_RADIUS: u32 = 2;
/// Largest radius [`Maze::with_radius`] builds: generation is quadratic in the board size.
pub const MAX_RADIUS: u32 = 32;
/// Share of the board's hexes that become walls, in percent (rounded down).
pub const WALL_PERCENT: usize = 15;
/// Number of spawn points; one per player a game admits.
pub const SPAWN_POINTS: usize = 6;

/// A generated dungeon. Equal seeds and radii give equal mazes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Maze {
    /// Kept so a map can be named and regenerated (bug reports, tests).
    seed: u64,
    /// The board is every hex within this many steps of the origin.
    radius: u32,
    /// Impassable hexes, all on the board. A set: lookups happen on every move.
    walls: BTreeSet<Hex>,
    /// Open, distinct hexes where players appear, in the order players take them.
    spawns: Vec<Hex>,
}

impl Maze {
    /// The maze of a new game: [`DEFAULT_RADIUS`].
    pub fn generate(seed: u64) -> Maze {
        Maze::with_radius(seed, DEFAULT_RADIUS)
    }

    /// A maze of the given radius, clamped to [`MIN_RADIUS`]`..=`[`MAX_RADIUS`].
    pub fn with_radius(seed: u64, radius: u32) -> Maze {
        let radius = radius.clamp(MIN_RADIUS, MAX_RADIUS);
        let mut dice = Dice::new(seed);
        let cells = Hex::ORIGIN.spiral(radius);

        let wall_target = cells.len() * WALL_PERCENT / 100;
        // Bounded so generation always ends, even on a board where few walls fit.
        let max_attempts = cells.len() * 4;
        let mut walls = BTreeSet::new();
        for _ in 0..max_attempts {
            if walls.len() >= wall_target {
                break;
            }
            let candidate = cells[dice.below(cells.len())];
            if !walls.insert(candidate) {
                continue;
            }
            if !open_is_connected(radius, &walls) {
                walls.remove(&candidate);
            }
        }

        let mut open: Vec<Hex> = cells.into_iter().filter(|h| !walls.contains(h)).collect();
        dice.shuffle(&mut open);
        let spawns = spread_spawns(&open);

        Maze {
            seed,
            radius,
            walls,
            spawns,
        }
    }

    /// A maze with these walls and spawn points (its seed unknown: 0): a hand-made one for
    /// tests of the rules, or one read back from a client's view ([`crate::model`]).
    pub(crate) fn from_parts(radius: u32, walls: &[Hex], spawns: &[Hex]) -> Maze {
        Maze {
            seed: 0,
            radius,
            walls: walls.iter().copied().collect(),
            spawns: spawns.to_vec(),
        }
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn radius(&self) -> u32 {
        self.radius
    }

    pub fn walls(&self) -> &BTreeSet<Hex> {
        &self.walls
    }

    /// Spawn points in the order players take them; consecutive ones are far apart.
    pub fn spawns(&self) -> &[Hex] {
        &self.spawns
    }

    /// Whether `hex` is on the board (wall or not).
    pub fn contains(&self, hex: Hex) -> bool {
        Hex::ORIGIN.distance(hex) <= self.radius
    }

    pub fn is_wall(&self, hex: Hex) -> bool {
        self.walls.contains(&hex)
    }

    /// Whether a player may stand on `hex`: on the board and not a wall.
    pub fn is_open(&self, hex: Hex) -> bool {
        self.contains(hex) && !self.is_wall(hex)
    }

    /// Every open hex, centre first, ring by ring.
    pub fn open_hexes(&self) -> Vec<Hex> {
        Hex::ORIGIN
            .spiral(self.radius)
            .into_iter()
            .filter(|h| !self.walls.contains(h))
            .collect()
    }

    /// Length of the shortest walk from `from` to `to` through open hexes for which `blocked`
    /// is false (`to` included, `from` excluded: you may leave where you stand). `Some(0)`
    /// when `from == to`; `None` when no walk exists.
    pub fn path_len(&self, from: Hex, to: Hex, blocked: impl Fn(Hex) -> bool) -> Option<u32> {
        if from == to {
            return Some(0);
        }
        if !self.is_open(to) || blocked(to) {
            return None;
        }
        let mut seen = HashSet::from([from]);
        let mut queue = VecDeque::from([(from, 0u32)]);
        while let Some((hex, steps)) = queue.pop_front() {
            for next in hex.neighbours() {
                if next == to {
                    return Some(steps + 1);
                }
                if self.is_open(next) && !blocked(next) && seen.insert(next) {
                    queue.push_back((next, steps + 1));
                }
            }
        }
        None
    }

    /// Whether every open hex can reach every other one. Always true for generated mazes;
    /// exposed so tests (and a paranoid loader) can check it.
    pub fn is_connected(&self) -> bool {
        open_is_connected(self.radius, &self.walls)
    }
}

/// Breadth-first search from one open hex; connected when it reaches all of them.
///
/// Runs once per wall candidate during generation, so it works on a dense grid of flags
/// (the board's bounding rhombus) rather than hashing hexes.
fn open_is_connected(radius: u32, walls: &BTreeSet<Hex>) -> bool {
    // Radii are clamped to MAX_RADIUS, so these conversions and products are small.
    let r = radius as i32;
    let side = (2 * radius + 1) as usize;
    let slot = |h: Hex| -> Option<usize> {
        (Hex::ORIGIN.distance(h) <= radius).then(|| (h.q + r) as usize * side + (h.r + r) as usize)
    };
    let mut open = vec![false; side * side];
    let mut open_count = 0;
    let mut start = None;
    for hex in Hex::ORIGIN.spiral(radius) {
        if let Some(i) = slot(hex).filter(|_| !walls.contains(&hex)) {
            open[i] = true;
            open_count += 1;
            start.get_or_insert(hex);
        }
    }
    let Some(start) = start else {
        return true;
    };
    let mut seen = vec![false; side * side];
    let mut reached = 0;
    let mut queue = VecDeque::from([start]);
    if let Some(i) = slot(start) {
        seen[i] = true;
        reached = 1;
    }
    while let Some(hex) = queue.pop_front() {
        for next in hex.neighbours() {
            let Some(i) = slot(next) else { continue };
            if open[i] && !seen[i] {
                seen[i] = true;
                reached += 1;
                queue.push_back(next);
            }
        }
    }
    reached == open_count
}

/// Farthest-point sampling over `open` (already shuffled: the shuffle is the tie-break).
fn spread_spawns(open: &[Hex]) -> Vec<Hex> {
    let mut spawns: Vec<Hex> = Vec::with_capacity(SPAWN_POINTS);
    // First spawn: the first (in shuffled order) of the hexes farthest from the centre.
    let mut first: Option<Hex> = None;
    for &hex in open {
        if first.is_none_or(|best| Hex::ORIGIN.distance(hex) > Hex::ORIGIN.distance(best)) {
            first = Some(hex);
        }
    }
    let Some(first) = first else {
        return spawns;
    };
    spawns.push(first);
    while spawns.len() < SPAWN_POINTS {
        let mut best: Option<(Hex, u32)> = None;
        for &hex in open {
            if spawns.contains(&hex) {
                continue;
            }
            let gap = spawns
                .iter()
                .map(|s| s.distance(hex))
                .min()
                .unwrap_or(u32::MAX);
            if best.is_none_or(|(_, best_gap)| gap > best_gap) {
                best = Some((hex, gap));
            }
        }
        match best {
            Some((hex, _)) => spawns.push(hex),
            None => break,
        }
    }
    spawns
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn same_seed_same_maze_and_different_seeds_differ() {
        assert_eq!(Maze::generate(42), Maze::generate(42));
        assert_ne!(Maze::generate(42).walls(), Maze::generate(43).walls());
    }

    #[test]
    fn default_maze_has_about_fifteen_percent_walls() {
        let maze = Maze::generate(1);
        assert_eq!(maze.radius(), DEFAULT_RADIUS);
        // 127 hexes, 15% rounded down.
        assert_eq!(maze.walls().len(), 19);
        assert_eq!(maze.open_hexes().len(), 127 - 19);
    }

    #[test]
    fn radius_is_clamped() {
        assert_eq!(Maze::with_radius(1, 0).radius(), MIN_RADIUS);
        assert_eq!(Maze::with_radius(1, 1000).radius(), MAX_RADIUS);
    }

    #[test]
    fn golden_map_for_seed_42_never_changes() {
        // The same seed must give the same map in every version (see the module docs). If
        // this fails, the generator changed: revert it rather than updating these values.
        let maze = Maze::generate(42);
        let walls: Vec<(i32, i32)> = maze.walls().iter().map(|h| (h.q, h.r)).collect();
        let spawns: Vec<(i32, i32)> = maze.spawns().iter().map(|h| (h.q, h.r)).collect();
        assert_eq!(walls, GOLDEN_WALLS_42);
        assert_eq!(spawns, GOLDEN_SPAWNS_42);
    }

    const GOLDEN_WALLS_42: &[(i32, i32)] = &[
        (-6, 0),
        (-5, 1),
        (-4, 5),
        (-3, -2),
        (-3, 1),
        (-3, 6),
        (-2, 3),
        (-1, 5),
        (0, 5),
        (1, -1),
        (2, -2),
        (2, 0),
        (2, 2),
        (3, -5),
        (3, -2),
        (3, -1),
        (3, 0),
        (4, 2),
        (5, -6),
    ];
    const GOLDEN_SPAWNS_42: &[(i32, i32)] = &[(6, 0), (0, -6), (-6, 6), (-3, 0), (0, 3), (6, -6)];

    #[test]
    fn spawns_are_spread_apart_on_the_default_board() {
        for seed in 0..200 {
            let maze = Maze::generate(seed);
            let spawns = maze.spawns();
            // The first two players start far apart, and nobody starts next to anyone.
            assert!(
                spawns[0].distance(spawns[1]) >= 8,
                "seed {seed}: {spawns:?}"
            );
            for (i, a) in spawns.iter().enumerate() {
                for b in &spawns[..i] {
                    assert!(a.distance(*b) >= 4, "seed {seed}: {spawns:?}");
                }
            }
        }
    }

    #[test]
    fn path_len_goes_around_walls_and_blockers() {
        let maze = Maze {
            seed: 0,
            radius: 2,
            // A wall straight east of the origin.
            walls: BTreeSet::from([Hex::new(1, 0)]),
            spawns: vec![],
        };
        let to = Hex::new(2, 0);
        assert_eq!(Hex::ORIGIN.distance(to), 2);
        // Around the wall: (0,0) -> (1,-1) -> (2,-1) -> (2,0).
        assert_eq!(maze.path_len(Hex::ORIGIN, to, |_| false), Some(3));
        assert_eq!(maze.path_len(Hex::ORIGIN, Hex::ORIGIN, |_| true), Some(0));
        assert_eq!(maze.path_len(Hex::ORIGIN, Hex::new(1, 0), |_| false), None);
        assert_eq!(maze.path_len(Hex::ORIGIN, Hex::new(3, 0), |_| false), None);
        // Blocking both detours around the wall makes the longer way the only way.
        let blocked = |h: Hex| h == Hex::new(1, -1) || h == Hex::new(0, 1);
        assert_eq!(maze.path_len(Hex::ORIGIN, to, blocked), Some(5));
    }

    proptest! {
        #[test]
        fn generated_mazes_are_connected_with_open_distinct_spawns(
            seed in any::<u64>(),
            radius in MIN_RADIUS..=10u32,
        ) {
            let maze = Maze::with_radius(seed, radius);
            prop_assert!(maze.is_connected());
            prop_assert!(maze.walls().iter().all(|w| maze.contains(*w)));
            prop_assert_eq!(maze.spawns().len(), SPAWN_POINTS);
            for (i, spawn) in maze.spawns().iter().enumerate() {
                prop_assert!(maze.is_open(*spawn));
                prop_assert!(!maze.spawns()[..i].contains(spawn));
            }
            // Every spawn point can reach every other (path_len is a second, independent
            // search besides is_connected).
            for a in maze.spawns() {
                for b in maze.spawns() {
                    prop_assert!(maze.path_len(*a, *b, |_| false).is_some());
                }
            }
        }
    }
}
