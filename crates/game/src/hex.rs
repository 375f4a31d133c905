//! Hexes in axial coordinates: positions on the board and the geometry between them.
//!
//! Owns pure geometry only (neighbours, distances, rings). It knows nothing about walls,
//! players or the size of the board: that is the dungeon's business (`maze`).
//!
//! Axial coordinates `(q, r)` do not depend on how hexes are drawn (pointy or flat top);
//! the implied third cube coordinate is `s = -q - r`.
//! See <https://www.redblobgames.com/grids/hexagons/>.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One hex of the grid, in axial coordinates. Serialised as `{"q": .., "r": ..}`, the shape of
/// a move's `to` and of the walls in the game view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Hex {
    pub q: i32,
    pub r: i32,
}

/// The six steps to a neighbour, counter-clockwise starting east.
pub const DIRECTIONS: [Hex; 6] = [
    Hex { q: 1, r: 0 },
    Hex { q: 1, r: -1 },
    Hex { q: 0, r: -1 },
    Hex { q: -1, r: 0 },
    Hex { q: -1, r: 1 },
    Hex { q: 0, r: 1 },
];

impl Hex {
    /// The centre of the board.
    pub const ORIGIN: Hex = Hex { q: 0, r: 0 };

    pub const fn new(q: i32, r: i32) -> Hex {
        Hex { q, r }
    }

    /// `self + other * times`, saturating instead of overflowing: coordinates come from users,
    /// and a far-away hex must give a far-away answer, not a panic.
    fn step(self, direction: Hex, times: i32) -> Hex {
        Hex {
            q: self.q.saturating_add(direction.q.saturating_mul(times)),
            r: self.r.saturating_add(direction.r.saturating_mul(times)),
        }
    }

    /// The six adjacent hexes, in the order of [`DIRECTIONS`].
    pub fn neighbours(self) -> [Hex; 6] {
        DIRECTIONS.map(|direction| self.step(direction, 1))
    }

    /// Number of steps between two hexes on an empty grid. Computed in `i64` so any pair of
    /// `i32` coordinates (for instance a move's `to` sent by a user) gives an exact answer;
    /// the result is clamped to `u32::MAX`, far beyond any board.
    pub fn distance(self, other: Hex) -> u32 {
        let dq = i64::from(self.q) - i64::from(other.q);
        let dr = i64::from(self.r) - i64::from(other.r);
        let ds = -dq - dr;
        let steps = (dq.abs() + dr.abs() + ds.abs()) / 2;
        u32::try_from(steps).unwrap_or(u32::MAX)
    }

    /// The hexes at exactly `radius` steps from `self`, walking once around (`6 * radius`
    /// hexes; just `self` for radius 0).
    pub fn ring(self, radius: u32) -> Vec<Hex> {
        if radius == 0 {
            return vec![self];
        }
        let radius = i32::try_from(radius).unwrap_or(i32::MAX);
        let mut hexes = Vec::new();
        // Start `radius` steps towards direction 4, then walk each of the six sides.
        let mut hex = self.step(DIRECTIONS[4], radius);
        for direction in DIRECTIONS {
            for _ in 0..radius {
                hexes.push(hex);
                hex = hex.step(direction, 1);
            }
        }
        hexes
    }

    /// Every hex within `radius` steps of `self`, centre first, then ring by ring outwards
    /// (`3 * radius * (radius + 1) + 1` hexes).
    pub fn spiral(self, radius: u32) -> Vec<Hex> {
        (0..=radius).flat_map(|ring| self.ring(ring)).collect()
    }
}

impl fmt::Display for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({},{})", self.q, self.r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbours_are_at_distance_one_and_distinct() {
        let centre = Hex::new(2, -3);
        let neighbours = centre.neighbours();
        for (i, n) in neighbours.iter().enumerate() {
            assert_eq!(centre.distance(*n), 1);
            assert!(!neighbours[..i].contains(n));
        }
    }

    #[test]
    fn distance_examples() {
        assert_eq!(Hex::ORIGIN.distance(Hex::ORIGIN), 0);
        assert_eq!(Hex::ORIGIN.distance(Hex::new(3, -3)), 3);
        assert_eq!(Hex::ORIGIN.distance(Hex::new(2, 1)), 3);
        assert_eq!(Hex::new(-1, 2).distance(Hex::new(2, -2)), 4);
    }

    #[test]
    fn distance_does_not_overflow_at_the_extremes() {
        let far = Hex::new(i32::MAX, i32::MIN);
        assert_eq!(Hex::ORIGIN.distance(far), 1 << 31);
        assert_eq!(
            Hex::ORIGIN.distance(Hex::new(i32::MAX, i32::MAX)),
            u32::MAX - 1
        );
        // Farther than u32 can count: clamped.
        assert_eq!(
            Hex::new(i32::MIN, i32::MIN).distance(Hex::new(i32::MAX, i32::MAX)),
            u32::MAX
        );
        // Neighbours of an extreme hex saturate rather than panic.
        let _ = far.neighbours();
    }

    #[test]
    fn rings_and_spirals_have_the_expected_sizes() {
        assert_eq!(Hex::ORIGIN.ring(0), vec![Hex::ORIGIN]);
        for radius in 1..8u32 {
            let ring = Hex::ORIGIN.ring(radius);
            assert_eq!(ring.len(), 6 * radius as usize);
            assert!(ring.iter().all(|h| h.distance(Hex::ORIGIN) == radius));
            let spiral = Hex::new(1, 1).spiral(radius);
            let r = radius as usize;
            assert_eq!(spiral.len(), 3 * r * (r + 1) + 1);
            let mut unique = spiral.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), spiral.len());
            assert_eq!(spiral[0], Hex::new(1, 1));
        }
    }

    #[test]
    fn json_shape_is_q_and_r() {
        let json = serde_json::to_string(&Hex::new(1, -1)).unwrap();
        assert_eq!(json, r#"{"q":1,"r":-1}"#);
    }

    #[test]
    fn displays_as_a_pair() {
        assert_eq!(Hex::new(9, 0).to_string(), "(9,0)");
    }
}
