//! Password rules (NIST SP 800-63B-4 §3.1.1.2), shared by the server, which enforces them,
//! and the client, which checks before sending so the user hears the reason at once.
//!
//! Length over complexity: a minimum length from the organisation policy (raised to 15 when
//! the password is the only factor), at most [`MAX_PASSWORD_CHARS`] characters, any
//! characters allowed (spaces and Unicode included, no composition rules), and refusal of
//! passwords that are common, contain the username, or repeat one character.
//!
//! The common-password list (`common-passwords.txt`, 8,366 entries, lower case) is the list
//! Django ships (`django/contrib/auth/common-passwords.txt.gz`, BSD-3-Clause, Django 5.2.8),
//! itself the 20,000 most common passwords of Royce Williams' compilation of public breach
//! corpora, lower-cased and deduplicated; entries shorter than 8 characters are dropped
//! because no policy admits them anyway, and Ward's earlier 20 hand-picked entries are added.
//! Counting is by Unicode scalar values; the password is not normalised (NFKC) here.

use std::collections::HashSet;
use std::sync::OnceLock;

/// Most characters a password may have. SP 800-63B-4 asks verifiers to allow at least 64.
pub const MAX_PASSWORD_CHARS: usize = 256;
/// The lowest minimum length a policy may set: SP 800-63B-4's minimum for a password used
/// together with a second factor.
pub const MIN_PASSWORD_CHARS_FLOOR: u32 = 8;
/// The highest minimum length a policy may set (still below [`MAX_PASSWORD_CHARS`]).
pub const MIN_PASSWORD_CHARS_CEILING: u32 = 64;
/// SP 800-63B-4's minimum when the password is the only authentication factor.
pub const SINGLE_FACTOR_MIN_PASSWORD_CHARS: u32 = 15;

static COMMON_LIST: &str = include_str!("common-passwords.txt");

/// Why a password is refused. The messages are for the person choosing it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PasswordError {
    /// Shorter than the organisation's minimum.
    #[error("password must be at least {min} characters")]
    TooShort {
        /// The minimum in force.
        min: u32,
    },
    /// Longer than [`MAX_PASSWORD_CHARS`].
    #[error("password must be at most {MAX_PASSWORD_CHARS} characters")]
    TooLong,
    /// In the list of common passwords.
    #[error("password is too easy to guess: it is in a list of common passwords")]
    Common,
    /// Contains the username.
    #[error("password must not contain the username")]
    ContainsUsername,
    /// One character repeated.
    #[error("password must not repeat one character")]
    OneCharacter,
}

/// The minimum length in force: the policy's, raised to
/// [`SINGLE_FACTOR_MIN_PASSWORD_CHARS`] when no second factor is required.
pub fn min_password_chars(policy_min: u32, mfa_required: bool) -> u32 {
    if mfa_required {
        policy_min
    } else {
        policy_min.max(SINGLE_FACTOR_MIN_PASSWORD_CHARS)
    }
}

/// Check a new password for `username` against the rules with `min_chars` in force (see
/// [`min_password_chars`]).
pub fn check_password(password: &str, username: &str, min_chars: u32) -> Result<(), PasswordError> {
    let len = password.chars().count();
    if len < min_chars as usize {
        return Err(PasswordError::TooShort { min: min_chars });
    }
    if len > MAX_PASSWORD_CHARS {
        return Err(PasswordError::TooLong);
    }
    let lower = password.to_lowercase();
    if is_common(&lower) {
        return Err(PasswordError::Common);
    }
    if !username.is_empty() && lower.contains(&username.to_lowercase()) {
        return Err(PasswordError::ContainsUsername);
    }
    let mut chars = password.chars();
    if let Some(first) = chars.next()
        && chars.all(|c| c == first)
    {
        return Err(PasswordError::OneCharacter);
    }
    Ok(())
}

fn is_common(lower: &str) -> bool {
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| {
        COMMON_LIST
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect()
    })
    .contains(lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        assert_eq!(
            check_password("short", "alice", 12),
            Err(PasswordError::TooShort { min: 12 })
        );
        assert_eq!(
            check_password(&"x".repeat(257), "alice", 12),
            Err(PasswordError::TooLong)
        );
        // From the shipped list, any case.
        assert_eq!(
            check_password("Password1234", "alice", 8),
            Err(PasswordError::Common)
        );
        assert_eq!(
            check_password("baseball", "alice", 8),
            Err(PasswordError::Common)
        );
        assert_eq!(
            check_password("alice-is-my-password", "alice", 12),
            Err(PasswordError::ContainsUsername)
        );
        assert_eq!(
            check_password("aaaaaaaaaaaaaaaa", "bob", 12),
            Err(PasswordError::OneCharacter)
        );
        assert!(check_password("correct horse battery staple", "alice", 12).is_ok());
        // Any characters, 64 and more allowed.
        assert!(check_password("Ünïcödé pässwörd mit Leerzeichen ✓", "alice", 12).is_ok());
        assert!(check_password(&"ab".repeat(40), "alice", 15).is_ok());
    }

    #[test]
    fn single_factor_raises_the_minimum() {
        assert_eq!(min_password_chars(8, true), 8);
        assert_eq!(min_password_chars(8, false), 15);
        assert_eq!(min_password_chars(20, false), 20);
    }

    #[test]
    fn list_is_loaded() {
        assert!(COMMON_LIST.lines().count() > 8000);
        assert!(is_common("iloveyou1234"));
        assert!(!is_common("correct horse battery staple"));
    }
}
