//! Break-glass emergency access (HIPAA §164.312(a)(2)(ii), ADR 0016).
//!
//! A user whose role the organisation policy allows (default physician and nurse) opens
//! time-limited access to a group conversation she is not in, giving a reason. The server
//! stores a grant, audits `breakglass.granted`, and pushes a `break_glass` event (ids and
//! times only) to the conversation's devices, to hers and to every compliance officer's
//! devices (the alert). A refusal is audited as `breakglass.refused` and changes nothing else.
//!
//! What this does NOT do: add her to the MLS group. The server never sees the ratchet tree
//! (ADR 0011), so a member's client, on its next sync, commits her addition naming the grant
//! (`SendEnvelopeRequest::break_glass_grant`); [`Services::check_break_glass_commit`] refuses
//! the commit once the grant has ended, and [`Services::break_glass_committed`] records
//! `added_at` (audited `breakglass.added`) or, when the grant ended while the commit was in
//! flight, ends the membership the commit created at once. It cannot give her the history
//! from before her addition (MLS forward secrecy), and the addition waits for a member to
//! be online.
//!
//! Expiry: [`expiry_loop`] calls [`Services::expire_break_glass`] every
//! [`EXPIRY_INTERVAL`]; it ends each expired grant and, in the same store transaction, her
//! membership and routing, audits `breakglass.expired` and pushes the event again. Members'
//! clients then commit the MLS removal of her devices in their maintenance.

use std::sync::Arc;
use std::time::Duration;

use ward_proto::{
    BREAK_GLASS_DEFAULT_MINUTES, BREAK_GLASS_REASON_MAX_CHARS, BREAK_GLASS_REASON_MIN_CHARS,
    BreakGlassGrant, BreakGlassRequest, ConversationId, ConversationKind, DeviceId, DeviceStatus,
    ErrorCode, Role, ServerEvent, UserId, UserStatus,
};
use ward_store::{BreakGlassRecord, StoreError};

use super::{Actor, AuthSession, Services, require_role};
use crate::error::{ApiError, ApiResult};

/// Roles the policy may allow to open break-glass access: the clinical ones. Admin,
/// compliance, patient and service accounts never can (least privilege).
pub const CLINICAL_ROLES: [Role; 3] = [Role::Physician, Role::Nurse, Role::Pharmacist];
/// Smallest value of the policy's longest access, in minutes.
pub const MIN_MAX_MINUTES: u32 = 5;
/// Largest value of the policy's longest access, in minutes (one day).
pub const MAX_MAX_MINUTES: u32 = 24 * 60;
/// How often each node looks for expired grants. Access can outlive `expires_at` by at most
/// this much.
pub const EXPIRY_INTERVAL: Duration = Duration::from_secs(10);
/// Most grants one listing returns (compliance and admins: newest first).
pub const LIST_LIMIT: usize = 500;
/// Most grants per conversation shown to its members.
pub const PER_CONVERSATION_LIMIT: usize = 20;

/// Validate the roles an admin allows; duplicates are dropped.
pub(crate) fn check_roles(roles: Vec<Role>) -> ApiResult<Vec<Role>> {
    let mut out: Vec<Role> = Vec::new();
    for r in roles {
        if !CLINICAL_ROLES.contains(&r) {
            return Err(ApiError::invalid(format!(
                "break_glass_roles may only name physician, nurse or pharmacist (got {r})"
            )));
        }
        if !out.contains(&r) {
            out.push(r);
        }
    }
    Ok(out)
}

impl Services {
    /// Open break-glass access to conversation `id` for the caller (see the module docs).
    pub async fn open_break_glass(
        &self,
        s: &AuthSession,
        id: ConversationId,
        req: BreakGlassRequest,
    ) -> ApiResult<BreakGlassGrant> {
        let policy = self.policy();
        if !policy.break_glass_roles.contains(&s.user.role) {
            self.audit
                .record(
                    &s.actor(),
                    "breakglass.refused",
                    Some(id.to_string()),
                    serde_json::json!({"conversation_id": id, "reason": "role not allowed"}),
                )
                .await?;
            let allowed: Vec<String> = policy
                .break_glass_roles
                .iter()
                .map(|r| r.to_string())
                .collect();
            return Err(ApiError::forbidden(format!(
                "the {} role may not open break-glass access (allowed: {})",
                s.user.role,
                if allowed.is_empty() {
                    "none; break-glass is off".to_owned()
                } else {
                    allowed.join(", ")
                }
            )));
        }
        let reason = req.reason.trim();
        let chars = reason.chars().count();
        if !(BREAK_GLASS_REASON_MIN_CHARS..=BREAK_GLASS_REASON_MAX_CHARS).contains(&chars) {
            return Err(ApiError::invalid(format!(
                "reason must be {BREAK_GLASS_REASON_MIN_CHARS} to {BREAK_GLASS_REASON_MAX_CHARS} characters (got {chars})"
            )));
        }
        if reason.chars().any(|c| c.is_control() && c != '\n') {
            return Err(ApiError::invalid(
                "reason must not contain control characters",
            ));
        }
        let max = policy.break_glass_max_minutes;
        let minutes = req.minutes.unwrap_or(BREAK_GLASS_DEFAULT_MINUTES.min(max));
        if minutes == 0 || minutes > max {
            return Err(ApiError::invalid(format!(
                "minutes must be 1 to {max} (the organisation's longest break-glass access; got {minutes})"
            )));
        }
        let conv = self
            .store
            .conversation(id)
            .await?
            .ok_or_else(|| ApiError::not_found("conversation"))?;
        if conv.kind != ConversationKind::Group {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                "break-glass opens group conversations only: a direct conversation never gains a third member",
            ));
        }
        // An expired grant not yet swept must not block a new one.
        self.expire_break_glass().await?;
        let now = self.now();
        let record = BreakGlassRecord {
            id: uuid::Uuid::new_v4(),
            conversation_id: id,
            user_id: s.user.id,
            reason: reason.to_owned(),
            granted_at: now,
            expires_at: now + time::Duration::minutes(i64::from(minutes)),
            added_at: None,
            ended_at: None,
        };
        match self.store.create_break_glass(&record).await {
            Ok(()) => {}
            Err(StoreError::Conflict("conversation member")) => {
                return Err(ApiError::new(
                    ErrorCode::Conflict,
                    "you are already a member of this conversation",
                ));
            }
            Err(StoreError::Conflict(_)) => {
                return Err(ApiError::new(
                    ErrorCode::Conflict,
                    "you already have active break-glass access to this conversation",
                ));
            }
            Err(e) => return Err(e.into()),
        }
        self.audit
            .record(
                &s.actor(),
                "breakglass.granted",
                Some(record.id.to_string()),
                serde_json::json!({
                    "conversation_id": id,
                    "user_id": s.user.id,
                    "role": s.user.role,
                    "reason": record.reason,
                    "minutes": minutes,
                    "expires_at": record.expires_at.unix_timestamp(),
                }),
            )
            .await?;
        let mut to = self.conversation_devices(id).await?;
        to.extend(self.active_devices(s.user.id).await?);
        self.notify_break_glass(&record, false, to).await?;
        self.grant_info(&record).await
    }

    /// Break-glass grants the caller may see: for admins and compliance officers every grant
    /// (newest first, at most [`LIST_LIMIT`]; audited `breakglass.list`); for anyone else
    /// the grants of the conversations their device is in, and their own.
    pub async fn break_glass_grants(&self, s: &AuthSession) -> ApiResult<Vec<BreakGlassGrant>> {
        if matches!(s.user.role, Role::Admin | Role::Compliance) {
            return self.all_break_glass(&s.actor()).await;
        }
        let records = {
            let mut out: Vec<BreakGlassRecord> = Vec::new();
            for c in self.store.conversations_of_device(s.device_id).await? {
                out.extend(
                    self.store
                        .break_glass_grants(Some(c.id), PER_CONVERSATION_LIMIT)
                        .await?,
                );
            }
            for g in self.store.break_glass_grants(None, LIST_LIMIT).await? {
                if g.user_id == s.user.id && !out.iter().any(|o| o.id == g.id) {
                    out.push(g);
                }
            }
            out.sort_by(|a, b| b.granted_at.cmp(&a.granted_at).then(a.id.cmp(&b.id)));
            out
        };
        let mut grants = Vec::with_capacity(records.len());
        for r in &records {
            grants.push(self.grant_info(r).await?);
        }
        Ok(grants)
    }

    /// Every grant, newest first, at most [`LIST_LIMIT`] (admins and compliance officers;
    /// also the local admin CLI). Audited `breakglass.list`.
    pub async fn all_break_glass(&self, actor: &Actor) -> ApiResult<Vec<BreakGlassGrant>> {
        require_role(actor, &[Role::Admin, Role::Compliance])?;
        let all = self.store.break_glass_grants(None, LIST_LIMIT).await?;
        self.audit
            .record(
                actor,
                "breakglass.list",
                None,
                serde_json::json!({"grants": all.len()}),
            )
            .await?;
        let mut grants = Vec::with_capacity(all.len());
        for r in &all {
            grants.push(self.grant_info(r).await?);
        }
        Ok(grants)
    }

    /// Refuse a commit naming a grant unless the grant is for this conversation, adds its
    /// grantee, and is active now (409 once it ended: the grantee is not added).
    pub(crate) async fn check_break_glass_commit(
        &self,
        grant: uuid::Uuid,
        conversation: ConversationId,
        add_users: &[UserId],
    ) -> ApiResult<()> {
        let g = self
            .store
            .break_glass(grant)
            .await?
            .filter(|g| g.conversation_id == conversation)
            .ok_or_else(|| ApiError::not_found("break-glass grant"))?;
        if !add_users.contains(&g.user_id) {
            return Err(ApiError::invalid(
                "a commit fulfilling a break-glass grant must add its grantee",
            ));
        }
        if g.ended_at.is_some() || self.now() >= g.expires_at {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!("break-glass grant {grant} has ended; its grantee is not added"),
            ));
        }
        Ok(())
    }

    /// After a commit fulfilling `grant` was accepted: record `added_at` (audited
    /// `breakglass.added`), or, if the grant ended meanwhile, end the membership the commit
    /// just created (audited `breakglass.expired` with `late_commit`). Never fails the send:
    /// the commit is accepted and the sender must merge it; problems are logged.
    pub(crate) async fn break_glass_committed(&self, s: &AuthSession, grant: uuid::Uuid) {
        let now = self.now();
        let result = match self.store.mark_break_glass_added(grant, now).await {
            Ok(true) => {
                self.audit
                    .record(
                        &s.actor(),
                        "breakglass.added",
                        Some(grant.to_string()),
                        serde_json::json!({"by_device": s.device_id}),
                    )
                    .await
            }
            Ok(false) => self.end_grant(grant, true).await.map(|_| ()),
            Err(e) => Err(e.into()),
        };
        if let Err(e) = result {
            tracing::warn!(grant = %grant, error = %e.message, "break-glass fulfilment bookkeeping failed");
        }
    }

    /// End every grant past its `expires_at` (see the module docs). Returns how many ended.
    pub async fn expire_break_glass(&self) -> ApiResult<usize> {
        let expired = self.store.expired_break_glass(self.now()).await?;
        let mut n = 0;
        for g in expired {
            if self.end_grant(g.id, false).await? {
                n += 1;
            }
        }
        Ok(n)
    }

    /// End one grant and the membership it gave; audit and notify when something changed.
    /// Returns true when this call ended the grant.
    async fn end_grant(&self, grant: uuid::Uuid, late_commit: bool) -> ApiResult<bool> {
        let end = self.store.end_break_glass(grant, self.now()).await?;
        if !end.ended_now && end.devices.is_empty() {
            return Ok(false);
        }
        self.audit
            .record(
                &Actor::system(),
                "breakglass.expired",
                Some(grant.to_string()),
                serde_json::json!({
                    "conversation_id": end.grant.conversation_id,
                    "user_id": end.grant.user_id,
                    "devices_removed": end.devices,
                    "late_commit": late_commit,
                }),
            )
            .await?;
        let mut to = self.conversation_devices(end.grant.conversation_id).await?;
        to.extend(end.devices.iter().copied());
        self.notify_break_glass(&end.grant, true, to).await?;
        Ok(end.ended_now)
    }

    /// Push the event to `to` and to every active compliance officer's devices.
    async fn notify_break_glass(
        &self,
        g: &BreakGlassRecord,
        ended: bool,
        mut to: Vec<DeviceId>,
    ) -> ApiResult<()> {
        for u in self.store.list_users().await? {
            if u.role == Role::Compliance && u.status == UserStatus::Active {
                to.extend(self.active_devices(u.id).await?);
            }
        }
        to.sort();
        to.dedup();
        self.hub.publish(
            &to,
            &ServerEvent::BreakGlass {
                grant_id: g.id,
                conversation_id: g.conversation_id,
                user_id: g.user_id,
                expires_at: g.expires_at.unix_timestamp(),
                ended,
            },
        );
        Ok(())
    }

    async fn conversation_devices(&self, id: ConversationId) -> ApiResult<Vec<DeviceId>> {
        Ok(self
            .store
            .member_devices(id)
            .await?
            .into_iter()
            .map(|m| m.device_id)
            .collect())
    }

    async fn active_devices(&self, user: UserId) -> ApiResult<Vec<DeviceId>> {
        Ok(self
            .store
            .devices_of_user(user)
            .await?
            .into_iter()
            .filter(|d| d.status == DeviceStatus::Active)
            .map(|d| d.id)
            .collect())
    }

    async fn grant_info(&self, r: &BreakGlassRecord) -> ApiResult<BreakGlassGrant> {
        let user = self.user_or_404(r.user_id).await?;
        Ok(BreakGlassGrant {
            grant_id: r.id,
            conversation_id: r.conversation_id,
            user_id: r.user_id,
            username: user.username,
            reason: r.reason.clone(),
            granted_at: r.granted_at,
            expires_at: r.expires_at,
            added_at: r.added_at,
            ended_at: r.ended_at,
        })
    }
}

/// Each node ends expired grants every [`EXPIRY_INTERVAL`] (several nodes doing it at once
/// is harmless: ending a grant is idempotent and only the first call audits it).
pub async fn expiry_loop(services: Arc<Services>) {
    let mut every = tokio::time::interval(EXPIRY_INTERVAL);
    loop {
        every.tick().await;
        match services.expire_break_glass().await {
            Ok(n) if n > 0 => tracing::info!(grants = n, "break-glass grants expired"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e.message, "break-glass expiry failed"),
        }
    }
}
