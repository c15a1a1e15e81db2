//! Wire types of the clinical workflow (ADR 0014): organisation-defined clinical roles such as
//! `cardiology-on-call`, who holds them (by assignment or by scheduled shift), shift schedule
//! imports and per-role escalation policies.
//!
//! A *clinical role* is not the account [`Role`](crate::Role) (admin, physician, …): an account
//! role decides what a user may do on the server; a clinical role is a duty that messages can
//! be addressed to ("whoever is the on-call cardiologist now").
//!
//! This module holds only types and name validation; the rules (who holds a role now, schedule
//! parsing, loop detection) are in the server.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::{NameError, UserId, Username};

/// Most tiers an escalation policy may list after the role's own holders.
pub const MAX_ESCALATION_TIERS: usize = 8;
/// Shortest acknowledgement deadline of an escalation policy, seconds.
pub const MIN_ACK_WITHIN_SECS: u64 = 30;
/// Longest acknowledgement deadline of an escalation policy, seconds (one day).
pub const MAX_ACK_WITHIN_SECS: u64 = 86_400;

/// A validated clinical role name: lowercase ASCII, 1 to 64 characters, `[a-z0-9][a-z0-9-]*`
/// (e.g. `cardiology-on-call`, `ward-5-charge-nurse`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, pattern = "^[a-z0-9][a-z0-9-]{0,63}$")]
pub struct ClinicalRoleName(String);

impl ClinicalRoleName {
    /// Parse and validate a clinical role name.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .enumerate()
                .all(|(i, b)| b.is_ascii_lowercase() || b.is_ascii_digit() || (i > 0 && b == b'-'));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(NameError::ClinicalRole(s.chars().take(80).collect()))
        }
    }
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClinicalRoleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for ClinicalRoleName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl<'de> Deserialize<'de> for ClinicalRoleName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// `POST /v1/admin/roles`: define a clinical role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateClinicalRoleRequest {
    /// The role's name.
    pub name: ClinicalRoleName,
    /// What the role is for, shown to senders (at most 200 characters).
    #[serde(default)]
    pub description: Option<String>,
}

/// A clinical role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClinicalRoleInfo {
    /// Name.
    pub name: ClinicalRoleName,
    /// Description, if any.
    pub description: Option<String>,
    /// When it was defined.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// `GET /v1/admin/roles`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClinicalRoleList {
    /// Every role, by name.
    pub roles: Vec<ClinicalRoleInfo>,
}

/// `POST /v1/admin/roles/{name}/assignments`: a user holds the role by assignment (on call
/// until they opt out or are unassigned).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignRoleRequest {
    /// The user.
    pub username: Username,
}

/// `PUT /v1/roles/{name}/on-call`: the caller opts in to or out of a role assigned to them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OnCallRequest {
    /// True to opt in (take calls), false to opt out.
    pub on_call: bool,
}

/// How a user holds a role at the moment asked about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HoldingSource {
    /// Assigned by an administrator and opted in.
    Assignment,
    /// A scheduled shift covers the moment.
    Shift,
}

/// One holder of a role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RoleHolder {
    /// User id.
    pub user_id: UserId,
    /// Username.
    pub username: Username,
    /// How the user holds the role.
    pub source: HoldingSource,
    /// End of the covering shift (for `shift`).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub until: Option<OffsetDateTime>,
    /// Set when this user stands in for the holder, who is on do-not-disturb (ADR 0019).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub covering_for: Option<Username>,
}

/// One step of an escalation chain, resolved to users at the moment asked about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EscalationTier {
    /// The role of this tier, if it is a role (the first tier is the addressed role itself).
    pub role: Option<ClinicalRoleName>,
    /// Who is notified at this tier (a role's holders now, or one named user). May be empty
    /// when nobody holds the role: the tier is then skipped at once.
    pub users: Vec<RoleHolder>,
    /// Seconds the tier has to acknowledge before the next one is notified.
    pub ack_within_secs: Option<u64>,
}

/// `GET /v1/roles/{name}/holders`: who holds a role now, and its whole escalation chain, so
/// a sender's client can put every tier into the message's MLS group at send time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RoleHolders {
    /// The role.
    pub role: ClinicalRoleName,
    /// The moment the answer is for.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Holders now (may be empty: nobody on call).
    pub holders: Vec<RoleHolder>,
    /// The escalation chain: tier 0 is the role's holders, then the policy's targets in order,
    /// a role target expanded with its own policy. Just tier 0 without a policy.
    pub escalation: Vec<EscalationTier>,
}

/// `POST /v1/admin/schedules`: import shifts from CSV text (see ADR 0014 for the format).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleImportRequest {
    /// The CSV document: header `role,username,start,end,time_zone`, one shift a line.
    pub csv: String,
}

/// The outcome of an accepted schedule import (a refused one is a 400 naming every bad line).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ScheduleImportReport {
    /// Shifts stored.
    pub imported: u64,
    /// Distinct roles they belong to, by name.
    pub roles: Vec<ClinicalRoleName>,
}

/// `PUT /v1/admin/roles/{name}/escalation`: the role's escalation policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EscalationPolicyRequest {
    /// How long each tier has to acknowledge before the next one is notified, seconds
    /// ([`MIN_ACK_WITHIN_SECS`] to [`MAX_ACK_WITHIN_SECS`]).
    pub ack_within_secs: u64,
    /// Re-notify an unacknowledged tier this often, seconds (at least 30, less than
    /// `ack_within_secs`); none when absent.
    #[serde(default)]
    pub renotify_every_secs: Option<u64>,
    /// Next tiers in order: `role:NAME`, `user:NAME`, or a bare name that is exactly one of a
    /// role or a user (at most [`MAX_ESCALATION_TIERS`]).
    pub then: Vec<String>,
}

/// A target of an escalation policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", content = "name", rename_all = "snake_case")]
pub enum EscalationTarget {
    /// Whoever holds this role when the tier is reached.
    Role(ClinicalRoleName),
    /// This user.
    User(Username),
}

impl fmt::Display for EscalationTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EscalationTarget::Role(r) => write!(f, "role:{r}"),
            EscalationTarget::User(u) => write!(f, "user:{u}"),
        }
    }
}

/// A role's escalation policy as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EscalationPolicyInfo {
    /// The role.
    pub role: ClinicalRoleName,
    /// Acknowledgement deadline per tier, seconds.
    pub ack_within_secs: u64,
    /// Re-notification interval, seconds.
    pub renotify_every_secs: Option<u64>,
    /// Next tiers in order.
    pub then: Vec<EscalationTarget>,
    /// Last change.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn role_names() {
        assert!(ClinicalRoleName::parse("cardiology-on-call").is_ok());
        assert!(ClinicalRoleName::parse("ward-5-charge-nurse").is_ok());
        for bad in ["", "-x", "Cardio", "a_b", "a.b", "a b", &"a".repeat(65)] {
            assert!(ClinicalRoleName::parse(bad).is_err(), "{bad:?}");
        }
        let e: Result<ClinicalRoleName, _> = serde_json::from_str("\"No\"");
        assert!(e.is_err());
    }

    #[test]
    fn targets_serialize_tagged() {
        let t = EscalationTarget::Role(ClinicalRoleName::parse("cardio").unwrap());
        assert_eq!(
            serde_json::to_value(&t).unwrap(),
            serde_json::json!({"type": "role", "name": "cardio"})
        );
        assert_eq!(t.to_string(), "role:cardio");
    }
}
