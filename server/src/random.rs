//! Randomness for identifiers and secrets, from the OS-seeded thread generator: one place,
//! so every ID is drawn the same way (uniformly from its alphabet, without modulo bias).

use rand::{RngCore, seq::IndexedRandom};

pub const UPPERCASE: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
pub const LETTERS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
pub const ALPHANUMERIC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
pub const HEX: &[u8] = b"0123456789abcdef";

/// `N` random bytes (keys, tokens, salts).
pub fn bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

/// `length` characters drawn uniformly from `alphabet`.
pub fn string(alphabet: &[u8], length: usize) -> String {
    let mut rng = rand::rng();
    // An empty alphabet draws nothing: the callers pass this module's non-empty constants.
    (0..length).filter_map(|_| alphabet.choose(&mut rng)).map(|&byte| byte as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_use_only_their_alphabet_and_differ() {
        let a = string(UPPERCASE, 32);
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_uppercase()));
        assert_ne!(a, string(UPPERCASE, 32));
    }
}
