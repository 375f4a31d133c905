//! The dungeon's dice: a small deterministic pseudo-random generator (SplitMix64).
//!
//! Owns nothing but a 64-bit state. Maps and join codes are derived from a seed with these
//! dice instead of the `rand` crate on purpose: the same seed must give the same dungeon on
//! every platform and in every version of Minotaur (a game moved to a node running a newer
//! build, or regenerated from its seed, must see the same walls), and `rand` does not promise
//! stable output across its releases. SplitMix64 is a fixed, published algorithm: it will never
//! change under us. It must not be used for anything that needs unpredictability.

/// SplitMix64 (Steele, Lea, Flood 2014), as in `java.util.SplittableRandom`.
#[derive(Debug, Clone)]
pub(crate) struct Dice {
    state: u64,
}

impl Dice {
    pub(crate) fn new(seed: u64) -> Dice {
        Dice { state: seed }
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0). Uses the multiply-shift reduction rather than
    /// `%`: it is as cheap, less biased, and computed in `u128` so it is identical on 32- and
    /// 64-bit targets.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        let n = n as u64;
        let scaled = (u128::from(self.next_u64()) * u128::from(n)) >> 64;
        // `scaled < n` and `n` came from a usize, so the conversion back cannot truncate.
        scaled as usize
    }

    /// Fisher–Yates shuffle driven by these dice.
    pub(crate) fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_published_splitmix64_sequence() {
        // Reference values of SplitMix64 seeded with 0 (as produced by the C reference
        // implementation by Sebastiano Vigna). If this fails, every map changes: do not
        // "fix" the expected values.
        let mut dice = Dice::new(0);
        assert_eq!(dice.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(dice.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(dice.next_u64(), 0x06C4_5D18_8009_454F);
    }

    #[test]
    fn below_stays_in_range() {
        let mut dice = Dice::new(7);
        assert_eq!(dice.below(0), 0);
        for n in 1..50 {
            for _ in 0..20 {
                assert!(dice.below(n) < n);
            }
        }
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut items: Vec<u32> = (0..20).collect();
        Dice::new(3).shuffle(&mut items);
        let mut sorted = items.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..20).collect::<Vec<_>>());
    }
}
