use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

/// Why a name failed to parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The username is empty, too long, or has characters outside `[a-z0-9._-]`.
    #[error(
        "invalid username {0:?}: use 1 to 64 characters a-z, 0-9, '.', '_' or '-', starting with a letter or digit"
    )]
    Username(String),
    /// The role is not one Ward knows.
    #[error(
        "unknown role {0:?}: expected one of admin, physician, nurse, pharmacist, compliance, patient, service"
    )]
    Role(String),
    /// The clinical role name is empty, too long, or has characters outside `[a-z0-9-]`.
    #[error(
        "invalid clinical role name {0:?}: use 1 to 64 characters a-z, 0-9 or '-', starting with a letter or digit"
    )]
    ClinicalRole(String),
}

/// A validated username: lowercase ASCII, 1 to 64 characters, `[a-z0-9][a-z0-9._-]*`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, pattern = "^[a-z0-9][a-z0-9._-]{0,63}$")]
pub struct Username(String);

impl Username {
    /// Parse and validate a username.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes().enumerate().all(|(i, b)| {
                b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || (i > 0 && matches!(b, b'.' | b'_' | b'-'))
            });
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(NameError::Username(s.chars().take(80).collect()))
        }
    }
    /// The username as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Username {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl<'de> Deserialize<'de> for Username {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// An account's role. Decides what the account may do (see `docs/architecture.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Organisation administrator: manages users, devices and policy. Not a reader of messages.
    Admin,
    /// Physician.
    Physician,
    /// Nurse.
    Nurse,
    /// Pharmacist.
    Pharmacist,
    /// Compliance officer: reads the audit log and (later) exports; no user management.
    Compliance,
    /// Patient: may message their care team only in conversations they were added to.
    Patient,
    /// Service account for bots and integrations.
    Service,
}

impl Role {
    /// Every role, in a stable order.
    pub const ALL: [Role; 7] = [
        Role::Admin,
        Role::Physician,
        Role::Nurse,
        Role::Pharmacist,
        Role::Compliance,
        Role::Patient,
        Role::Service,
    ];

    /// The role's name as used in the API and CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Physician => "physician",
            Role::Nurse => "nurse",
            Role::Pharmacist => "pharmacist",
            Role::Compliance => "compliance",
            Role::Patient => "patient",
            Role::Service => "service",
        }
    }

    /// True for roles that may create conversations with arbitrary staff.
    pub fn is_clinical_staff(self) -> bool {
        matches!(
            self,
            Role::Admin | Role::Physician | Role::Nurse | Role::Pharmacist | Role::Service
        )
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| NameError::Role(s.chars().take(40).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn usernames() {
        assert!(Username::parse("alice").is_ok());
        assert!(Username::parse("dr.bob-2_x").is_ok());
        for bad in ["", "Alice", ".a", "-a", "a b", "ä", &"a".repeat(65)] {
            assert!(Username::parse(bad).is_err(), "{bad:?} accepted");
        }
        let err = serde_json::from_str::<Username>("\"Bad Name\"").unwrap_err();
        assert!(err.to_string().contains("invalid username"));
    }

    #[test]
    fn roles_round_trip() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{r}\""));
        }
        assert!("root".parse::<Role>().is_err());
    }

    proptest! {
        #[test]
        fn username_parse_never_panics_and_accepts_only_valid(s in ".{0,80}") {
            if let Ok(u) = Username::parse(&s) {
                prop_assert!(u.as_str().len() <= 64);
                prop_assert!(u.as_str().bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)));
            }
        }
    }
}
