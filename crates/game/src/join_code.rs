//! Join codes: the short, speakable name of a game that players share with friends.
//!
//! Owns the code alphabet and the mapping from a seed to a code. Uniqueness is not decided
//! here: about a billion codes exist, and whoever registers games (the cluster registry) must
//! draw another seed on the rare collision.

use crate::dice::Dice;

/// Length of a join code.
pub const CODE_LEN: usize = 6;

/// Upper-case letters and digits without the look-alikes `0`/`O` and `1`/`I`: 32 symbols,
/// so each one is exactly 5 random bits.
pub const CODE_ALPHABET: &[u8; 32] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";

/// The join code for `seed`: [`CODE_LEN`] symbols of [`CODE_ALPHABET`]. Deterministic.
pub fn code_from_seed(seed: u64) -> String {
    let mut bits = Dice::new(seed).next_u64();
    let mut code = String::with_capacity(CODE_LEN);
    for _ in 0..CODE_LEN {
        // The mask keeps the index below 32, the alphabet's length.
        let index = (bits & 0x1F) as usize;
        code.push(char::from(CODE_ALPHABET[index]));
        bits >>= 5;
    }
    code
}

/// `text` as a join code if it could be one: trimmed, upper-cased, [`CODE_LEN`] symbols of
/// [`CODE_ALPHABET`]. Lets the HTTP layer accept `abc234` for `ABC234` and tell codes from ids.
pub fn normalize_code(text: &str) -> Option<String> {
    let code = text.trim().to_ascii_uppercase();
    let valid = code.len() == CODE_LEN && code.bytes().all(|b| CODE_ALPHABET.contains(&b));
    valid.then_some(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_six_unambiguous_symbols_and_deterministic() {
        for seed in 0..1000 {
            let code = code_from_seed(seed);
            assert_eq!(code.len(), CODE_LEN);
            assert!(!code.contains(['0', 'O', '1', 'I']), "{code}");
            assert_eq!(code, code_from_seed(seed));
            assert_eq!(normalize_code(&code), Some(code.clone()));
        }
        assert_ne!(code_from_seed(1), code_from_seed(2));
    }

    #[test]
    fn normalize_accepts_lower_case_and_rejects_others() {
        assert_eq!(normalize_code(" abc234 "), Some("ABC234".to_string()));
        assert_eq!(normalize_code("ABC23"), None);
        assert_eq!(normalize_code("ABC2345"), None);
        assert_eq!(normalize_code("ABC230"), None);
        assert_eq!(normalize_code("ABCDÉF"), None);
    }
}
