//! Random one-time secrets: enrollment codes and session tokens.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};

/// Unambiguous characters (no 0/O, 1/I/L, U) for codes people type.
const CODE_ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTVWXYZ23456789";

/// A fresh enrollment code: 20 characters from a 30-letter alphabet (about 98 bits) in
/// groups of five.
pub fn generate_enrollment_code() -> String {
    let mut rng = OsRng;
    let chars: Vec<char> = (0..20)
        .map(|_| CODE_ALPHABET[rng.gen_range(0..CODE_ALPHABET.len())] as char)
        .collect();
    chars
        .chunks(5)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join("-")
}

/// A fresh session token (256 bits).
pub fn generate_token() -> String {
    let mut b = [0u8; 32];
    OsRng.fill(&mut b);
    format!("wt_{}", URL_SAFE_NO_PAD.encode(b))
}

/// What is stored for a token or code: its SHA-256. Tokens carry 256 bits, so a fast hash
/// suffices and lookups by hash leak nothing useful through timing.
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_the_expected_shape() {
        let c = generate_enrollment_code();
        assert_eq!(c.len(), 23);
        assert!(c.split('-').all(|g| g.len() == 5));
        assert_ne!(c, generate_enrollment_code());
        assert!(generate_token().starts_with("wt_"));
    }
}
