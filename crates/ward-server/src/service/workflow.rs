//! Clinical workflow on the server (ADR 0014): clinical roles, who holds them now (standing
//! assignments with opt-in/opt-out, and scheduled shifts imported from CSV), and per-role
//! escalation policies with loop detection.
//!
//! What this module does NOT do yet: send or escalate messages. The server never reads
//! message content; the sender's client resolves a role with [`Services::role_holders`]
//! (holders now and the whole escalation chain) and puts every tier into the message's MLS
//! group itself. The server-side escalation task (whom to notify when) is not built.
//!
//! Layout: this file is the service; `schedule` parses CSV schedules.

pub mod ical;
pub mod schedule;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use time::OffsetDateTime;
use ward_proto::{
    ClinicalRoleInfo, ClinicalRoleName, CreateClinicalRoleRequest, ErrorCode, EscalationPolicyInfo,
    EscalationPolicyRequest, EscalationTarget, EscalationTier, HoldingSource, MAX_ACK_WITHIN_SECS,
    MAX_ESCALATION_TIERS, MIN_ACK_WITHIN_SECS, Role, RoleHolder, RoleHolders, ScheduleImportReport,
    UserId, UserStatus, Username,
};
use ward_store::{ClinicalRole, EscalationPolicy, PolicyTarget, RoleAssignment, Shift, StoreError};

use super::{Actor, AuthSession, Services, require_role};
use crate::error::{ApiError, ApiResult};

/// Longest role description, characters.
pub const MAX_ROLE_DESCRIPTION_CHARS: usize = 200;
/// Shortest re-notification interval, seconds.
pub const MIN_RENOTIFY_SECS: u64 = 30;

/// Account roles that may look up who holds a clinical role (everyone but patients, who do
/// not browse the staff directory either).
const STAFF: &[Role] = &[
    Role::Admin,
    Role::Physician,
    Role::Nurse,
    Role::Pharmacist,
    Role::Compliance,
    Role::Service,
];

fn role_info(r: &ClinicalRole) -> ClinicalRoleInfo {
    ClinicalRoleInfo {
        name: r.name.clone(),
        description: r.description.clone(),
        created_at: r.created_at,
    }
}

fn conflict(message: String) -> ApiError {
    ApiError::new(ErrorCode::Conflict, message)
}

impl Services {
    /// Define a clinical role (admin). Audited `role.create`.
    pub async fn create_clinical_role(
        &self,
        actor: &Actor,
        req: CreateClinicalRoleRequest,
    ) -> ApiResult<ClinicalRoleInfo> {
        require_role(actor, &[Role::Admin])?;
        let description = match req.description.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(d) if d.chars().count() > MAX_ROLE_DESCRIPTION_CHARS => {
                return Err(ApiError::invalid(format!(
                    "a role description has at most {MAX_ROLE_DESCRIPTION_CHARS} characters"
                )));
            }
            Some(d) if d.chars().any(char::is_control) => {
                return Err(ApiError::invalid(
                    "a role description may not contain control characters",
                ));
            }
            Some(d) => Some(d.to_owned()),
        };
        let role = ClinicalRole {
            name: req.name,
            description,
            created_at: self.now(),
        };
        self.store
            .create_clinical_role(&role)
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => {
                    conflict(format!("clinical role {} already exists", role.name))
                }
                other => other.into(),
            })?;
        self.audit
            .record(
                actor,
                "role.create",
                Some(role.name.to_string()),
                serde_json::json!({ "role": role.name }),
            )
            .await?;
        Ok(role_info(&role))
    }

    /// Every clinical role (admin, compliance).
    pub async fn clinical_roles(&self, actor: &Actor) -> ApiResult<Vec<ClinicalRoleInfo>> {
        require_role(actor, &[Role::Admin, Role::Compliance])?;
        Ok(self
            .store
            .clinical_roles()
            .await?
            .iter()
            .map(role_info)
            .collect())
    }

    /// Assign a role to a user, opted in (admin). Audited `role.assign`. Patients cannot hold
    /// clinical roles.
    pub async fn assign_clinical_role(
        &self,
        actor: &Actor,
        role: &ClinicalRoleName,
        username: &Username,
    ) -> ApiResult<bool> {
        require_role(actor, &[Role::Admin])?;
        self.clinical_role_or_404(role).await?;
        let user = self.user_by_name_or_404(username).await?;
        if user.role == Role::Patient {
            return Err(ApiError::invalid(format!(
                "{username} is a patient account; patients cannot hold clinical roles"
            )));
        }
        let now = self.now();
        let added = self
            .store
            .assign_clinical_role(&RoleAssignment {
                role: role.clone(),
                user_id: user.id,
                on_call: true,
                assigned_at: now,
                changed_at: now,
            })
            .await?;
        self.audit
            .record(
                actor,
                "role.assign",
                Some(role.to_string()),
                serde_json::json!({ "role": role, "user_id": user.id, "new": added }),
            )
            .await?;
        Ok(added)
    }

    /// Remove a user's assignment (admin). Audited `role.unassign`. 404 when there is none.
    pub async fn unassign_clinical_role(
        &self,
        actor: &Actor,
        role: &ClinicalRoleName,
        username: &Username,
    ) -> ApiResult<()> {
        require_role(actor, &[Role::Admin])?;
        self.clinical_role_or_404(role).await?;
        let user = self.user_by_name_or_404(username).await?;
        if !self.store.unassign_clinical_role(role, user.id).await? {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                format!("{username} is not assigned to {role}"),
            ));
        }
        self.audit
            .record(
                actor,
                "role.unassign",
                Some(role.to_string()),
                serde_json::json!({ "role": role, "user_id": user.id }),
            )
            .await?;
        Ok(())
    }

    /// The caller opts in to or out of a role assigned to them. Audited `role.on_call`.
    /// 404 when the role does not exist or is not assigned to the caller.
    pub async fn set_on_call(
        &self,
        session: &AuthSession,
        role: &ClinicalRoleName,
        on_call: bool,
    ) -> ApiResult<()> {
        let actor = session.actor();
        self.clinical_role_or_404(role).await?;
        if !self
            .store
            .set_on_call(role, session.user.id, on_call, self.now())
            .await?
        {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                format!("you are not assigned to {role}; an administrator assigns roles"),
            ));
        }
        self.audit
            .record(
                &actor,
                "role.on_call",
                Some(role.to_string()),
                serde_json::json!({ "role": role, "on_call": on_call }),
            )
            .await?;
        Ok(())
    }

    /// Who holds `role` now and the role's escalation chain (staff). An unknown role is 404
    /// ("clinical role not found"); a role nobody holds answers with empty `holders`, and the
    /// caller decides (the client tells the sender at once).
    pub async fn role_holders(
        &self,
        actor: &Actor,
        role: &ClinicalRoleName,
    ) -> ApiResult<RoleHolders> {
        require_role(actor, STAFF)?;
        self.clinical_role_or_404(role).await?;
        let at = self.now();
        let policies: HashMap<ClinicalRoleName, EscalationPolicy> = self
            .store
            .escalation_policies()
            .await?
            .into_iter()
            .map(|p| (p.role.clone(), p))
            .collect();
        let mut escalation = Vec::new();
        let mut visited = BTreeSet::new();
        self.expand_chain(role, None, &policies, at, &mut visited, &mut escalation)
            .await?;
        // The first tier is always the addressed role's holders now.
        let holders = escalation
            .first()
            .map(|t| t.users.clone())
            .unwrap_or_default();
        Ok(RoleHolders {
            role: role.clone(),
            at,
            holders,
            escalation,
        })
    }

    /// Import a CSV shift schedule (admin): all shifts or none. Every malformed line, unknown
    /// role or user and every overlap (within the file or with stored shifts of the same user
    /// and role) is reported with its line number. Audited `schedule.import`.
    pub async fn import_schedule(
        &self,
        actor: &Actor,
        csv: &str,
    ) -> ApiResult<ScheduleImportReport> {
        require_role(actor, &[Role::Admin])?;
        let (parsed, errors) = schedule::parse_all(csv);
        self.import_parsed_shifts(actor, parsed, errors, "csv")
            .await
    }

    /// Import an iCalendar shift schedule (admin), see [`ical`]: the events' shifts then
    /// the same checks and all-or-nothing storage as CSV; errors name the event's line.
    /// Audited `schedule.import` (format `ical`).
    pub async fn import_ical_schedule(
        &self,
        actor: &Actor,
        ics: &str,
    ) -> ApiResult<ScheduleImportReport> {
        require_role(actor, &[Role::Admin])?;
        let (parsed, errors) = ical::parse_all(ics);
        self.import_parsed_shifts(actor, parsed, errors, "ical")
            .await
    }

    /// Checks parsed shifts (names, overlaps within the batch and with stored shifts) and
    /// stores all of them or none. Every problem is reported at once: bad lines, then the
    /// good lines' unknown names and overlaps.
    async fn import_parsed_shifts(
        &self,
        actor: &Actor,
        parsed: Vec<schedule::ParsedShift>,
        mut errors: Vec<schedule::LineError>,
        format: &str,
    ) -> ApiResult<ScheduleImportReport> {
        let mut roles: BTreeMap<ClinicalRoleName, bool> = BTreeMap::new();
        let mut users: HashMap<Username, Option<UserId>> = HashMap::new();
        for p in &parsed {
            if !roles.contains_key(&p.role) {
                let known = self.store.clinical_role(&p.role).await?.is_some();
                roles.insert(p.role.clone(), known);
            }
            if !users.contains_key(&p.username) {
                let id = self
                    .store
                    .user_by_name(&p.username)
                    .await?
                    .filter(|u| u.role != Role::Patient)
                    .map(|u| u.id);
                users.insert(p.username.clone(), id);
            }
            if roles.get(&p.role) == Some(&false) {
                errors.push(schedule::LineError {
                    line: p.line,
                    message: format!(
                        "unknown clinical role {}; create it with `ward admin role create`",
                        p.role
                    ),
                });
            }
            if users.get(&p.username) == Some(&None) {
                errors.push(schedule::LineError {
                    line: p.line,
                    message: format!("unknown user {} (or a patient account)", p.username),
                });
            }
        }
        // Overlaps within the file, naming both lines.
        let mut sorted: Vec<&schedule::ParsedShift> = parsed.iter().collect();
        sorted.sort_by(|a, b| {
            (&a.role, &a.username, a.starts_at).cmp(&(&b.role, &b.username, b.starts_at))
        });
        for w in sorted.windows(2) {
            if w[0].role == w[1].role
                && w[0].username == w[1].username
                && w[1].starts_at < w[0].ends_at
            {
                errors.push(schedule::LineError {
                    line: w[1].line,
                    message: format!(
                        "overlaps line {} ({} in {})",
                        w[0].line, w[1].username, w[1].role
                    ),
                });
            }
        }
        // Overlaps with stored shifts.
        for (role, _) in roles.iter().filter(|(_, known)| **known) {
            let of_role: Vec<_> = parsed.iter().filter(|p| &p.role == role).collect();
            let (Some(from), Some(to)) = (
                of_role.iter().map(|p| p.starts_at).min(),
                of_role.iter().map(|p| p.ends_at).max(),
            ) else {
                continue;
            };
            let stored = self.store.shifts(role, from, to).await?;
            for p in of_role {
                let uid = users.get(&p.username).copied().flatten();
                if let Some(s) = stored.iter().find(|s| {
                    Some(s.user_id) == uid
                        && ward_store::intervals_overlap(
                            p.starts_at,
                            p.ends_at,
                            s.starts_at,
                            s.ends_at,
                        )
                }) {
                    errors.push(schedule::LineError {
                        line: p.line,
                        message: format!(
                            "overlaps a stored shift of {} in {} from {} to {} (UTC)",
                            p.username,
                            role,
                            rfc3339(s.starts_at),
                            rfc3339(s.ends_at)
                        ),
                    });
                }
            }
        }
        if !errors.is_empty() {
            errors.sort_by_key(|e| e.line);
            return Err(refused(errors));
        }
        let shifts: Vec<Shift> = parsed
            .iter()
            .filter_map(|p| {
                users
                    .get(&p.username)
                    .copied()
                    .flatten()
                    .map(|user_id| Shift {
                        role: p.role.clone(),
                        user_id,
                        starts_at: p.starts_at,
                        ends_at: p.ends_at,
                        time_zone: p.time_zone.clone(),
                    })
            })
            .collect();
        self.store.add_shifts(&shifts).await.map_err(|e| match e {
            StoreError::Conflict(_) => conflict(
                "a shift in the schedule overlaps one stored by a concurrent import; \
                 nothing was imported, run the import again to see which line"
                    .to_owned(),
            ),
            StoreError::NotFound(what) => conflict(format!(
                "a {what} named in the schedule was removed during the import; nothing was imported"
            )),
            other => other.into(),
        })?;
        let role_names: Vec<ClinicalRoleName> = roles.into_keys().collect();
        self.audit
            .record(
                actor,
                "schedule.import",
                None,
                serde_json::json!({ "shifts": shifts.len(), "roles": role_names, "format": format }),
            )
            .await?;
        Ok(ScheduleImportReport {
            imported: shifts.len() as u64,
            roles: role_names,
        })
    }

    /// Set a role's escalation policy (admin). Targets are `role:NAME`, `user:NAME` or a bare
    /// name that is exactly one of the two; a policy that would make any chain come back to a
    /// role already in it is refused, naming the loop. Audited `escalation.set`.
    pub async fn set_escalation_policy(
        &self,
        actor: &Actor,
        role: &ClinicalRoleName,
        req: EscalationPolicyRequest,
    ) -> ApiResult<EscalationPolicyInfo> {
        require_role(actor, &[Role::Admin])?;
        self.clinical_role_or_404(role).await?;
        if !(MIN_ACK_WITHIN_SECS..=MAX_ACK_WITHIN_SECS).contains(&req.ack_within_secs) {
            return Err(ApiError::invalid(format!(
                "ack_within must be between {MIN_ACK_WITHIN_SECS} s and {MAX_ACK_WITHIN_SECS} s \
                 (got {} s)",
                req.ack_within_secs
            )));
        }
        if let Some(r) = req.renotify_every_secs
            && (r < MIN_RENOTIFY_SECS || r >= req.ack_within_secs)
        {
            return Err(ApiError::invalid(format!(
                "renotify_every must be at least {MIN_RENOTIFY_SECS} s and shorter than \
                 ack_within ({} s); got {r} s",
                req.ack_within_secs
            )));
        }
        if req.then.len() > MAX_ESCALATION_TIERS {
            return Err(ApiError::invalid(format!(
                "an escalation policy has at most {MAX_ESCALATION_TIERS} next tiers (got {})",
                req.then.len()
            )));
        }
        let mut then = Vec::with_capacity(req.then.len());
        let mut shown = Vec::with_capacity(req.then.len());
        for t in &req.then {
            let (target, display) = self.resolve_target(t).await?;
            if then.contains(&target) {
                return Err(ApiError::invalid(format!(
                    "{display} is listed twice in the escalation policy"
                )));
            }
            then.push(target);
            shown.push(display);
        }
        let mut graph: HashMap<ClinicalRoleName, Vec<ClinicalRoleName>> = self
            .store
            .escalation_policies()
            .await?
            .into_iter()
            .map(|p| (p.role.clone(), role_targets(&p.then)))
            .collect();
        graph.insert(role.clone(), role_targets(&then));
        if let Some(cycle) = find_loop(role, &graph) {
            let path: Vec<String> = cycle.iter().map(ToString::to_string).collect();
            return Err(ApiError::invalid(format!(
                "escalation loop: {}; a tier may not lead back to a role already in the chain",
                path.join(" → ")
            )));
        }
        let policy = EscalationPolicy {
            role: role.clone(),
            ack_within_secs: req.ack_within_secs,
            renotify_every_secs: req.renotify_every_secs,
            then,
            updated_at: self.now(),
        };
        self.store.set_escalation_policy(&policy).await?;
        self.audit
            .record(
                actor,
                "escalation.set",
                Some(role.to_string()),
                serde_json::json!({
                    "role": role,
                    "ack_within_secs": policy.ack_within_secs,
                    "renotify_every_secs": policy.renotify_every_secs,
                    "then": policy.then,
                }),
            )
            .await?;
        Ok(EscalationPolicyInfo {
            role: role.clone(),
            ack_within_secs: policy.ack_within_secs,
            renotify_every_secs: policy.renotify_every_secs,
            then: shown,
            updated_at: policy.updated_at,
        })
    }

    async fn clinical_role_or_404(&self, role: &ClinicalRoleName) -> ApiResult<ClinicalRole> {
        self.store.clinical_role(role).await?.ok_or_else(|| {
            ApiError::new(
                ErrorCode::NotFound,
                format!("clinical role {role} does not exist"),
            )
        })
    }

    /// `role:NAME`, `user:NAME`, or a bare name that is exactly one of a role or a user.
    async fn resolve_target(&self, t: &str) -> ApiResult<(PolicyTarget, EscalationTarget)> {
        let t = t.trim();
        let as_role = |s: &str| {
            ClinicalRoleName::parse(s).map_err(|e| ApiError::invalid(format!("{t:?}: {e}")))
        };
        let as_user =
            |s: &str| Username::parse(s).map_err(|e| ApiError::invalid(format!("{t:?}: {e}")));
        if let Some(r) = t.strip_prefix("role:") {
            let r = as_role(r)?;
            self.clinical_role_or_404(&r).await?;
            return Ok((PolicyTarget::Role(r.clone()), EscalationTarget::Role(r)));
        }
        if let Some(u) = t.strip_prefix("user:") {
            let u = as_user(u)?;
            let user = self.staff_user(&u).await?;
            return Ok((PolicyTarget::User(user), EscalationTarget::User(u)));
        }
        let role = match ClinicalRoleName::parse(t) {
            Ok(r) => self.store.clinical_role(&r).await?.map(|_| r),
            Err(_) => None,
        };
        let user = match Username::parse(t) {
            Ok(u) => self.store.user_by_name(&u).await?.map(|x| (u, x)),
            Err(_) => None,
        };
        match (role, user) {
            (Some(_), Some(_)) => Err(ApiError::invalid(format!(
                "{t:?} is both a clinical role and a user: write role:{t} or user:{t}"
            ))),
            (Some(r), None) => Ok((PolicyTarget::Role(r.clone()), EscalationTarget::Role(r))),
            (None, Some((u, x))) => {
                let id = self.staff_user(&x.username).await?;
                Ok((PolicyTarget::User(id), EscalationTarget::User(u)))
            }
            (None, None) => Err(ApiError::new(
                ErrorCode::NotFound,
                format!("{t:?} is neither a clinical role nor a user"),
            )),
        }
    }

    /// A non-patient user's id.
    async fn staff_user(&self, u: &Username) -> ApiResult<UserId> {
        let user = self.user_by_name_or_404(u).await?;
        if user.role == Role::Patient {
            return Err(ApiError::invalid(format!(
                "{u} is a patient account and cannot be an escalation tier"
            )));
        }
        Ok(user.id)
    }

    /// Active users holding `role` at `at`: opted-in assignments first (oldest first), then
    /// users whose shift covers `at` (by shift start). Each user once.
    async fn holders_at(
        &self,
        role: &ClinicalRoleName,
        at: OffsetDateTime,
    ) -> ApiResult<Vec<RoleHolder>> {
        let mut out: Vec<RoleHolder> = Vec::new();
        for a in self.store.role_assignments(role).await? {
            if a.on_call {
                self.push_holder(&mut out, a.user_id, HoldingSource::Assignment, None)
                    .await?;
            }
        }
        let end = at + time::Duration::microseconds(1);
        for s in self.store.shifts(role, at, end).await? {
            self.push_holder(&mut out, s.user_id, HoldingSource::Shift, Some(s.ends_at))
                .await?;
        }
        Ok(out)
    }

    async fn push_holder(
        &self,
        out: &mut Vec<RoleHolder>,
        user_id: UserId,
        source: HoldingSource,
        until: Option<OffsetDateTime>,
    ) -> ApiResult<()> {
        let Some(u) = self.store.user(user_id).await? else {
            return Ok(());
        };
        if u.status != UserStatus::Active {
            return Ok(());
        }
        // A holder on do-not-disturb is replaced by whoever covers (ADR 0019).
        let (u, covering_for) = match self.effective_cover(user_id).await? {
            Some(cover) => (cover, Some(u.username)),
            None => (u, None),
        };
        if out.iter().any(|h| h.user_id == u.id) {
            return Ok(());
        }
        out.push(RoleHolder {
            user_id: u.id,
            username: u.username,
            source,
            until,
            covering_for,
        });
        Ok(())
    }

    /// Append `role`'s tier and then its policy's targets (a role target expanded the same
    /// way) to `out`. `inherited` is the deadline of the policy that led here, for a role
    /// without a policy of its own. `visited` guards against loops that slipped past
    /// [`find_loop`] (two admins setting policies at once).
    fn expand_chain<'a>(
        &'a self,
        role: &'a ClinicalRoleName,
        inherited: Option<u64>,
        policies: &'a HashMap<ClinicalRoleName, EscalationPolicy>,
        at: OffsetDateTime,
        visited: &'a mut BTreeSet<ClinicalRoleName>,
        out: &'a mut Vec<EscalationTier>,
    ) -> std::pin::Pin<Box<dyn Future<Output = ApiResult<()>> + Send + 'a>> {
        Box::pin(async move {
            if !visited.insert(role.clone()) || out.len() >= 4 * MAX_ESCALATION_TIERS {
                return Ok(());
            }
            let policy = policies.get(role);
            let deadline = policy.map(|p| p.ack_within_secs).or(inherited);
            out.push(EscalationTier {
                role: Some(role.clone()),
                users: self.holders_at(role, at).await?,
                ack_within_secs: deadline,
            });
            let Some(policy) = policy else {
                return Ok(());
            };
            for t in &policy.then {
                match t {
                    PolicyTarget::Role(r) => {
                        self.expand_chain(r, deadline, policies, at, visited, out)
                            .await?;
                    }
                    PolicyTarget::User(u) => {
                        let mut users = Vec::new();
                        self.push_holder(&mut users, *u, HoldingSource::Assignment, None)
                            .await?;
                        out.push(EscalationTier {
                            role: None,
                            users,
                            ack_within_secs: deadline,
                        });
                    }
                }
            }
            Ok(())
        })
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// The 400 for a refused schedule: every line error (up to a limit), one per line.
fn refused(errors: Vec<schedule::LineError>) -> ApiError {
    let total = errors.len();
    let mut lines: Vec<String> = errors
        .iter()
        .take(schedule::MAX_REPORTED_ERRORS)
        .map(ToString::to_string)
        .collect();
    if total > schedule::MAX_REPORTED_ERRORS {
        lines.push(format!(
            "… and {} more",
            total - schedule::MAX_REPORTED_ERRORS
        ));
    }
    ApiError::invalid(format!(
        "schedule refused, nothing imported:\n{}",
        lines.join("\n")
    ))
}

fn role_targets(then: &[PolicyTarget]) -> Vec<ClinicalRoleName> {
    then.iter()
        .filter_map(|t| match t {
            PolicyTarget::Role(r) => Some(r.clone()),
            PolicyTarget::User(_) => None,
        })
        .collect()
}

/// A path from `start` back to a role already on the path, following role targets; `None`
/// when every chain from `start` ends.
fn find_loop(
    start: &ClinicalRoleName,
    graph: &HashMap<ClinicalRoleName, Vec<ClinicalRoleName>>,
) -> Option<Vec<ClinicalRoleName>> {
    fn walk(
        at: &ClinicalRoleName,
        graph: &HashMap<ClinicalRoleName, Vec<ClinicalRoleName>>,
        path: &mut Vec<ClinicalRoleName>,
    ) -> Option<Vec<ClinicalRoleName>> {
        if path.contains(at) {
            let mut cycle = path.clone();
            cycle.push(at.clone());
            return Some(cycle);
        }
        path.push(at.clone());
        for next in graph.get(at).map(Vec::as_slice).unwrap_or_default() {
            if let Some(c) = walk(next, graph, path) {
                return Some(c);
            }
        }
        path.pop();
        None
    }
    walk(start, graph, &mut Vec::new())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn n(s: &str) -> ClinicalRoleName {
        ClinicalRoleName::parse(s).unwrap()
    }

    #[test]
    fn loops_are_found_with_their_path() {
        let mut g = HashMap::new();
        g.insert(n("a"), vec![n("b")]);
        g.insert(n("b"), vec![n("c")]);
        assert_eq!(find_loop(&n("a"), &g), None);
        g.insert(n("c"), vec![n("a")]);
        assert_eq!(
            find_loop(&n("a"), &g),
            Some(vec![n("a"), n("b"), n("c"), n("a")])
        );
        g.insert(n("a"), vec![n("a")]);
        assert_eq!(find_loop(&n("a"), &g), Some(vec![n("a"), n("a")]));
        // A diamond is not a loop.
        let mut d = HashMap::new();
        d.insert(n("a"), vec![n("b"), n("c")]);
        d.insert(n("b"), vec![n("d")]);
        d.insert(n("c"), vec![n("d")]);
        assert_eq!(find_loop(&n("a"), &d), None);
    }
}
