//! The clinical workflow aggregate (ADR 0014): clinical roles, who holds them by assignment
//! or by scheduled shift, and per-role escalation policies.
//!
//! The store keeps facts and enforces what must hold under concurrency (unique role names, no
//! overlapping shifts of one user in one role, every row naming an existing role and user).
//! Rules that need the whole picture — who holds a role *now*, escalation loops, schedule
//! parsing — are the server's.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use ward_proto::{ClinicalRoleName, UserId};

use crate::StoreResult;

/// An organisation-defined clinical role (`cardiology-on-call`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClinicalRole {
    /// Unique name.
    pub name: ClinicalRoleName,
    /// What it is for.
    pub description: Option<String>,
    /// When it was defined.
    pub created_at: OffsetDateTime,
}

/// A user's standing assignment to a role. The user holds the role while `on_call` (they can
/// opt out and back in; the assignment stays).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleAssignment {
    /// The role.
    pub role: ClinicalRoleName,
    /// The user.
    pub user_id: UserId,
    /// Opted in.
    pub on_call: bool,
    /// When the assignment was made.
    pub assigned_at: OffsetDateTime,
    /// Last opt-in or opt-out (equal to `assigned_at` until then).
    pub changed_at: OffsetDateTime,
}

/// A scheduled shift: the user holds the role from `starts_at` (inclusive) to `ends_at`
/// (exclusive). `time_zone` is the IANA zone the schedule was written in, kept for display.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shift {
    /// The role.
    pub role: ClinicalRoleName,
    /// The user.
    pub user_id: UserId,
    /// Start (inclusive).
    pub starts_at: OffsetDateTime,
    /// End (exclusive), after the start.
    pub ends_at: OffsetDateTime,
    /// IANA time zone name of the source schedule.
    pub time_zone: String,
}

/// A target of an escalation policy, as stored (users by id, so a record survives display
/// name changes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "id", rename_all = "snake_case")]
pub enum PolicyTarget {
    /// Whoever holds this role when the tier is reached.
    Role(ClinicalRoleName),
    /// This user.
    User(UserId),
}

/// A role's escalation policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EscalationPolicy {
    /// The role it applies to.
    pub role: ClinicalRoleName,
    /// Acknowledgement deadline of each tier, seconds.
    pub ack_within_secs: u64,
    /// Re-notification interval, seconds.
    pub renotify_every_secs: Option<u64>,
    /// Next tiers, in order.
    pub then: Vec<PolicyTarget>,
    /// Last change.
    pub updated_at: OffsetDateTime,
}

/// Clinical roles, their holders and escalation policies.
#[async_trait]
pub trait WorkflowStore {
    /// Define a role. `Conflict("clinical role")` if the name is taken.
    async fn create_clinical_role(&self, role: &ClinicalRole) -> StoreResult<()>;
    /// One role by name.
    async fn clinical_role(&self, name: &ClinicalRoleName) -> StoreResult<Option<ClinicalRole>>;
    /// Every role, by name.
    async fn clinical_roles(&self) -> StoreResult<Vec<ClinicalRole>>;
    /// Assign a role to a user (opted in). Returns false, changing nothing, if the user already
    /// has the assignment. `NotFound("clinical role")` or `NotFound("user")`.
    async fn assign_clinical_role(&self, assignment: &RoleAssignment) -> StoreResult<bool>;
    /// Remove an assignment. Returns false if there was none.
    async fn unassign_clinical_role(
        &self,
        role: &ClinicalRoleName,
        user: UserId,
    ) -> StoreResult<bool>;
    /// Opt in or out of an assigned role. Returns false, changing nothing, when the user has
    /// no assignment of the role.
    async fn set_on_call(
        &self,
        role: &ClinicalRoleName,
        user: UserId,
        on_call: bool,
        at: OffsetDateTime,
    ) -> StoreResult<bool>;
    /// Every assignment of a role (opted in or not), oldest first.
    async fn role_assignments(&self, role: &ClinicalRoleName) -> StoreResult<Vec<RoleAssignment>>;
    /// Store shifts atomically: all or none. `NotFound("clinical role")` or `NotFound("user")`
    /// when one names neither; `Conflict("shift")` when one overlaps a stored shift, or
    /// another of the batch, of the same user in the same role; `Corrupt` is never used for
    /// input: a shift not ending after its start is `Conflict("shift")` too.
    async fn add_shifts(&self, shifts: &[Shift]) -> StoreResult<()>;
    /// Shifts of a role overlapping `[from, to)`, by start, then user.
    async fn shifts(
        &self,
        role: &ClinicalRoleName,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> StoreResult<Vec<Shift>>;
    /// Create or replace a role's escalation policy. `NotFound("clinical role")`.
    async fn set_escalation_policy(&self, policy: &EscalationPolicy) -> StoreResult<()>;
    /// A role's escalation policy.
    async fn escalation_policy(
        &self,
        role: &ClinicalRoleName,
    ) -> StoreResult<Option<EscalationPolicy>>;
    /// Every escalation policy, by role name.
    async fn escalation_policies(&self) -> StoreResult<Vec<EscalationPolicy>>;
}

/// Whether two half-open intervals `[a0, a1)` and `[b0, b1)` overlap.
pub fn intervals_overlap(
    a0: OffsetDateTime,
    a1: OffsetDateTime,
    b0: OffsetDateTime,
    b1: OffsetDateTime,
) -> bool {
    a0 < b1 && b0 < a1
}

/// Check a batch of shifts against itself: every shift ends after its start and no two of
/// one user in one role overlap. Backends call this before their stored-overlap check.
pub fn check_shift_batch(shifts: &[Shift]) -> StoreResult<()> {
    if shifts.iter().any(|s| s.ends_at <= s.starts_at) {
        return Err(crate::StoreError::Conflict("shift"));
    }
    let mut sorted: Vec<&Shift> = shifts.iter().collect();
    sorted.sort_by(|a, b| {
        (&a.role, a.user_id.0, a.starts_at).cmp(&(&b.role, b.user_id.0, b.starts_at))
    });
    let clash = sorted.windows(2).any(|w| {
        w[0].role == w[1].role && w[0].user_id == w[1].user_id && w[1].starts_at < w[0].ends_at
    });
    if clash {
        return Err(crate::StoreError::Conflict("shift"));
    }
    Ok(())
}
