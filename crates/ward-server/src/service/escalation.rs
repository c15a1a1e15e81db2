//! Messages sent to a clinical role (ADR 0018): notification of the role's holders,
//! acknowledgement, the escalation task, and per-device delivery states.
//!
//! The sender's client resolved the chain (`GET /v1/roles/{role}/holders`) and put every tier
//! into the conversation's MLS group; the send names the role and the priority
//! (`SendEnvelopeRequest::to_role`). The server resolves the chain again at that moment, keeps
//! the tiers' users who are members of the conversation, and stores an [`Escalation`]. From
//! then on it decides only *whom to notify when*: device-addressed alerts (inbox items of kind
//! `alert`, on sync and over the WebSocket), re-notification every `renotify_every`, the next
//! tier when `ack_within` passes, and "no response" to the sender after the last tier. It never
//! reads the message.
//!
//! Timing: [`Services::run_escalations`] takes the due rows (atomically, so several nodes can
//! run it) and applies one step to each; [`escalation_loop`] calls it whenever the earliest
//! deadline comes (woken early when a send creates a sooner one), and tests call it after
//! moving a `ManualClock`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use ward_proto::{
    AckMessageRequest, AckResponse, AlertKind, ClinicalRoleName, ConversationId, DeliveryState,
    DeliveryStateChange, DeviceDelivery, DeviceId, DeviceStatus, ErrorCode, EscalationOutcome,
    EscalationStatus, InboxItem, MessageAlert, MessageDelivery, MessageId, RoleAddress,
    RoleSendOutcome, ServerEvent, UserId,
};
use ward_store::{
    AlertDelivery, ChainTier, DeliveryEvent, Escalation, EscalationStep, MemberDevice, StoreError,
};

use super::{Actor, AuthSession, Services};
use crate::error::{ApiError, ApiResult};

/// Most due escalations one run takes.
pub const CLAIM_LIMIT: usize = 100;
/// How long a claimed step is reserved for the node that took it; a node that dies mid-step
/// leaves it to another node after this.
pub const CLAIM_LEASE: time::Duration = time::Duration::seconds(30);
/// Longest sleep of [`escalation_loop`]: rows created on other nodes are seen at least this
/// often (a node's own sends wake it at once).
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// Wake-up and mutual exclusion of this node's escalation runs.
#[derive(Debug, Default)]
pub struct EscalationRuntime {
    wake: tokio::sync::Notify,
    running: tokio::sync::Mutex<()>,
}

/// The deadline of the current tier, if it has one.
fn tier_deadline(e: &Escalation) -> Option<OffsetDateTime> {
    e.tiers
        .get(e.tier as usize)
        .and_then(|t| t.ack_within_secs)
        .map(|s| e.tier_started_at + time::Duration::seconds(s as i64))
}

/// When the next step is due: the sooner of the next re-notification and the deadline.
fn next_due(e: &Escalation) -> Option<OffsetDateTime> {
    if e.outcome != EscalationOutcome::Pending || !e.priority.asks_ack() {
        return None;
    }
    let deadline = tier_deadline(e);
    let renotify = e
        .renotify_every_secs
        .map(|r| e.notified_at + time::Duration::seconds(r as i64))
        .filter(|r| deadline.is_none_or(|d| *r < d));
    match (deadline, renotify) {
        (Some(d), Some(r)) => Some(d.min(r)),
        (d, r) => d.or(r),
    }
}

/// Devices of `users` routed in the conversation.
fn devices_of(members: &[MemberDevice], users: &[UserId]) -> Vec<(DeviceId, UserId)> {
    members
        .iter()
        .filter(|m| users.contains(&m.user_id))
        .map(|m| (m.device_id, m.user_id))
        .collect()
}

fn not_found_message(id: MessageId) -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        format!(
            "message {id} is not addressed to you: only its recipients can acknowledge it or see its status"
        ),
    )
}

/// What a step computed: the new row, events, alerts and audit records.
struct Effects {
    events: Vec<DeliveryEvent>,
    alerts: Vec<AlertDelivery>,
    audits: Vec<(&'static str, serde_json::Value)>,
}

impl Effects {
    fn new() -> Self {
        Self {
            events: Vec::new(),
            alerts: Vec::new(),
            audits: Vec::new(),
        }
    }
}

fn alert(e: &Escalation, kind: AlertKind, at: OffsetDateTime) -> MessageAlert {
    MessageAlert {
        kind,
        message_id: e.message_id,
        conversation_id: e.conversation_id,
        seq: e.seq,
        role: e.role.clone(),
        priority: e.priority,
        tier: e.tier,
        tier_role: e.tiers.get(e.tier as usize).and_then(|t| t.role.clone()),
        by_user: e.acked_by,
        response: e.response,
        deadline: tier_deadline(e),
        at,
    }
}

impl Effects {
    fn notify(
        &mut self,
        e: &Escalation,
        devices: &[(DeviceId, UserId)],
        kind: AlertKind,
        at: OffsetDateTime,
    ) {
        let payload = alert(e, kind, at).to_payload();
        for (d, u) in devices {
            self.alerts.push(AlertDelivery {
                device_id: *d,
                payload: payload.clone(),
            });
            self.events.push(DeliveryEvent {
                message_id: e.message_id,
                device_id: *d,
                user_id: *u,
                state: DeliveryState::Sent,
                at,
                tier: Some(e.tier),
                response: None,
            });
        }
    }

    fn tell_sender(
        &mut self,
        e: &Escalation,
        members: &[MemberDevice],
        kind: AlertKind,
        at: OffsetDateTime,
    ) {
        let payload = alert(e, kind, at).to_payload();
        for (d, _) in devices_of(members, &[e.sender_user_id]) {
            self.alerts.push(AlertDelivery {
                device_id: d,
                payload: payload.clone(),
            });
        }
    }

    fn mark(
        &mut self,
        e: &Escalation,
        devices: &[(DeviceId, UserId)],
        state: DeliveryState,
        at: OffsetDateTime,
    ) {
        for (d, u) in devices {
            self.events.push(DeliveryEvent {
                message_id: e.message_id,
                device_id: *d,
                user_id: *u,
                state,
                at,
                tier: Some(e.tier),
                response: None,
            });
        }
    }
}

/// Move to the first tier at or after `from` with anyone on it, notifying it; or end in
/// "no response" when there is none.
fn enter_tier(
    e: &mut Escalation,
    from: usize,
    members: &[MemberDevice],
    now: OffsetDateTime,
    fx: &mut Effects,
    kind: AlertKind,
) {
    let next = (from..e.tiers.len()).find(|i| !devices_of(members, &e.tiers[*i].users).is_empty());
    for skipped in from..next.unwrap_or(e.tiers.len()) {
        fx.audits.push((
            "escalation.tier_skipped",
            serde_json::json!({
                "message_id": e.message_id, "role": e.role, "tier": skipped,
                "tier_role": e.tiers[skipped].role, "reason": "nobody on call",
            }),
        ));
    }
    match next {
        Some(i) => {
            e.tier = i as u32;
            e.tier_started_at = now;
            e.notified_at = now;
            let devices = devices_of(members, &e.tiers[i].users);
            fx.notify(e, &devices, kind, now);
            fx.audits.push((
                if kind == AlertKind::Notify {
                    "escalation.notify"
                } else {
                    "escalation.escalate"
                },
                serde_json::json!({
                    "message_id": e.message_id, "role": e.role, "priority": e.priority,
                    "tier": i, "tier_role": e.tiers[i].role, "users": e.tiers[i].users,
                    "devices": devices.iter().map(|d| d.0).collect::<Vec<_>>(),
                    "deadline": tier_deadline(e).map(|d| d.unix_timestamp()),
                }),
            ));
            if kind == AlertKind::Escalated {
                fx.tell_sender(e, members, AlertKind::Escalated, now);
            }
        }
        None => {
            e.outcome = EscalationOutcome::NoResponse;
            let asked: Vec<UserId> = e.tiers[..from.min(e.tiers.len())]
                .iter()
                .flat_map(|t| t.users.iter().copied())
                .collect();
            fx.mark(e, &devices_of(members, &asked), DeliveryState::Expired, now);
            fx.tell_sender(e, members, AlertKind::NoResponse, now);
            fx.audits.push((
                "escalation.no_response",
                serde_json::json!({
                    "message_id": e.message_id, "role": e.role, "priority": e.priority,
                    "tiers": e.tiers.len(), "sender": e.sender_user_id,
                }),
            ));
        }
    }
}

/// One step of a due escalation at `now` (see the module docs). `force`: the current tier
/// is passed over now (every notified user declined).
fn advance(
    e: &mut Escalation,
    members: &[MemberDevice],
    now: OffsetDateTime,
    force: bool,
) -> Effects {
    let mut fx = Effects::new();
    let current = e.tier as usize;
    let passed = force || tier_deadline(e).is_some_and(|d| now >= d);
    if passed {
        // The last tier's devices end "expired" (below), not "escalated": nothing follows.
        let has_next = (current + 1..e.tiers.len())
            .any(|i| !devices_of(members, &e.tiers[i].users).is_empty());
        if has_next {
            let devices = devices_of(members, &e.tiers[current].users);
            fx.mark(e, &devices, DeliveryState::Escalated, now);
        }
        enter_tier(e, current + 1, members, now, &mut fx, AlertKind::Escalated);
    } else {
        let waiting: Vec<UserId> = e.tiers[current]
            .users
            .iter()
            .filter(|u| !e.declined.contains(u))
            .copied()
            .collect();
        let devices = devices_of(members, &waiting);
        e.notified_at = now;
        fx.notify(e, &devices, AlertKind::Renotify, now);
        fx.audits.push((
            "escalation.renotify",
            serde_json::json!({
                "message_id": e.message_id, "role": e.role, "tier": e.tier,
                "users": waiting, "devices": devices.iter().map(|d| d.0).collect::<Vec<_>>(),
            }),
        ));
    }
    e.due_at = next_due(e);
    fx
}

impl Services {
    /// Wake this node's escalation loop (a new escalation may be due sooner).
    pub fn wake_escalations(&self) {
        self.escalation.wake.notify_one();
    }

    /// Check a send's `to_role` before the message is stored: application messages only, by
    /// staff, to an existing role.
    pub(super) async fn check_role_address(
        &self,
        s: &AuthSession,
        kind: ward_proto::EnvelopeKind,
        to: &RoleAddress,
    ) -> ApiResult<()> {
        if kind != ward_proto::EnvelopeKind::Application {
            return Err(ApiError::invalid(
                "to_role is only allowed with an application message",
            ));
        }
        if s.user.role == ward_proto::Role::Patient {
            return Err(ApiError::forbidden(
                "patients cannot address messages to a clinical role",
            ));
        }
        self.store.clinical_role(&to.role).await?.ok_or_else(|| {
            ApiError::new(
                ErrorCode::NotFound,
                format!("clinical role {} does not exist", to.role),
            )
        })?;
        Ok(())
    }

    /// After a message to a role was stored (or its send retried): resolve the chain, store
    /// the escalation, notify the first tier with anyone on it. Audited `message.send_to_role`
    /// with the role and the acting human.
    pub(super) async fn start_escalation(
        &self,
        s: &AuthSession,
        conversation: ConversationId,
        message_id: MessageId,
        seq: u64,
        to: &RoleAddress,
    ) -> ApiResult<RoleSendOutcome> {
        if let Some(e) = self.store.escalation(message_id).await? {
            return Ok(self.outcome_of(&e));
        }
        let resolved = self.role_holders(&s.actor(), &to.role).await?;
        let members = self.store.member_devices(conversation).await?;
        let member_users: BTreeSet<UserId> = members.iter().map(|m| m.user_id).collect();
        let mut tiers: Vec<ChainTier> = resolved
            .escalation
            .iter()
            .map(|t| ChainTier {
                role: t.role.clone(),
                users: t
                    .users
                    .iter()
                    .map(|h| h.user_id)
                    .filter(|u| *u != s.user.id && member_users.contains(u))
                    .collect(),
                ack_within_secs: t.ack_within_secs,
            })
            .collect();
        if !to.priority.asks_ack() {
            // Routine: the holders are told once; nothing escalates.
            tiers.truncate(1);
        }
        let renotify_every_secs = if to.priority.asks_ack() {
            self.store
                .escalation_policy(&to.role)
                .await?
                .and_then(|p| p.renotify_every_secs)
        } else {
            None
        };
        let now = self.now();
        let mut e = Escalation {
            message_id,
            conversation_id: conversation,
            seq,
            sender_user_id: s.user.id,
            sender_device_id: s.device_id,
            role: to.role.clone(),
            priority: to.priority,
            tiers,
            renotify_every_secs,
            tier: 0,
            tier_started_at: now,
            notified_at: now,
            due_at: None,
            outcome: EscalationOutcome::Pending,
            declined: Vec::new(),
            acked_by: None,
            acked_device: None,
            response: None,
            acked_at: None,
            created_at: now,
            version: 0,
        };
        let mut fx = Effects::new();
        // Every recipient device: queued from the moment the server accepted the message.
        for m in members.iter().filter(|m| m.device_id != s.device_id) {
            fx.events.push(DeliveryEvent {
                message_id,
                device_id: m.device_id,
                user_id: m.user_id,
                state: DeliveryState::Queued,
                at: now,
                tier: None,
                response: None,
            });
        }
        let nobody_on_call = devices_of(&members, &e.tiers[0].users).is_empty();
        if nobody_on_call {
            fx.tell_sender(&e, &members, AlertKind::NobodyOnCall, now);
        }
        enter_tier(&mut e, 0, &members, now, &mut fx, AlertKind::Notify);
        e.due_at = next_due(&e);
        fx.audits.insert(
            0,
            (
                "message.send_to_role",
                serde_json::json!({
                    "message_id": message_id, "conversation_id": conversation, "seq": seq,
                    "role": to.role, "priority": to.priority,
                    "acting_user": s.user.id, "acting_username": s.user.username,
                    "nobody_on_call": nobody_on_call,
                    "tiers": e.tiers.len(),
                }),
            ),
        );
        let step = EscalationStep {
            at: now,
            escalation: e.clone(),
            events: fx.events,
            alerts: fx.alerts,
        };
        let Some(items) = self.store.create_escalation(&step).await? else {
            // A concurrent retry stored it first.
            let stored = self
                .store
                .escalation(message_id)
                .await?
                .ok_or_else(|| ApiError::from(StoreError::NotFound("escalation")))?;
            return Ok(self.outcome_of(&stored));
        };
        self.publish_alerts(items);
        self.record_audits(&s.actor(), &fx.audits).await?;
        if e.due_at.is_some() {
            self.wake_escalations();
        }
        Ok(RoleSendOutcome {
            role: e.role.clone(),
            nobody_on_call,
            tier: e.tier,
            notified: if e.outcome == EscalationOutcome::Pending {
                e.tiers[e.tier as usize].users.clone()
            } else {
                Vec::new()
            },
            awaiting_ack: e.priority.asks_ack(),
        })
    }

    fn outcome_of(&self, e: &Escalation) -> RoleSendOutcome {
        RoleSendOutcome {
            role: e.role.clone(),
            nobody_on_call: e.tiers.first().is_none_or(|t| t.users.is_empty()),
            tier: e.tier,
            notified: e
                .tiers
                .get(e.tier as usize)
                .map(|t| t.users.clone())
                .unwrap_or_default(),
            awaiting_ack: e.priority.asks_ack() && e.outcome == EscalationOutcome::Pending,
        }
    }

    fn publish_alerts(&self, items: Vec<(DeviceId, InboxItem)>) {
        for (device, item) in items {
            self.hub.publish(&[device], &ServerEvent::Inbox(item));
        }
    }

    async fn record_audits(
        &self,
        actor: &Actor,
        audits: &[(&'static str, serde_json::Value)],
    ) -> ApiResult<()> {
        for (action, details) in audits {
            let target = details
                .get("message_id")
                .and_then(|v| v.as_str())
                .map(str::to_owned);
            self.audit
                .record(actor, action, target, details.clone())
                .await?;
        }
        Ok(())
    }

    /// Apply every due step (see the module docs). Returns how many steps were applied. One
    /// run at a time per node; several nodes share the work through the store's claim.
    pub async fn run_escalations(&self) -> ApiResult<usize> {
        let _guard = self.escalation.running.lock().await;
        let mut applied = 0;
        loop {
            let now = self.now();
            let due = self
                .store
                .claim_due_escalations(now, now + CLAIM_LEASE, CLAIM_LIMIT)
                .await?;
            let n = due.len();
            for mut e in due {
                let members = self.store.member_devices(e.conversation_id).await?;
                let fx = advance(&mut e, &members, now, false);
                if self.apply(e, fx, now, &Actor::system()).await? {
                    applied += 1;
                }
            }
            if n < CLAIM_LIMIT {
                return Ok(applied);
            }
        }
    }

    /// Write a step at the version it was computed from; publish and audit it when written.
    async fn apply(
        &self,
        e: Escalation,
        fx: Effects,
        now: OffsetDateTime,
        actor: &Actor,
    ) -> ApiResult<bool> {
        let step = EscalationStep {
            at: now,
            escalation: e,
            events: fx.events,
            alerts: fx.alerts,
        };
        match self.store.apply_escalation_step(&step).await? {
            Some(items) => {
                self.publish_alerts(items);
                self.record_audits(actor, &fx.audits).await?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Acknowledge a message sent to a role (`POST /v1/messages/{id}/ack`). Only a recipient
    /// may: not the sender, not a non-member. Accept, call me and free text end the
    /// escalation; decline is recorded, and when every notified user of the current tier has
    /// declined, the next tier is notified at once. Audited `escalation.ack` with the acting
    /// human and the role they acted in.
    pub async fn ack_message(
        &self,
        s: &AuthSession,
        message_id: MessageId,
        req: AckMessageRequest,
    ) -> ApiResult<MessageDelivery> {
        let (conversation, _) = self
            .store
            .message_location(message_id)
            .await?
            .ok_or_else(|| not_found_message(message_id))?;
        let members = self.store.members(conversation).await?;
        if !members.iter().any(|m| m.user_id == s.user.id) {
            return Err(not_found_message(message_id));
        }
        for _ in 0..5 {
            let mut e = self.store.escalation(message_id).await?.ok_or_else(|| {
                ApiError::new(
                    ErrorCode::Conflict,
                    format!(
                        "message {message_id} was not sent to a clinical role; there is nothing to acknowledge"
                    ),
                )
            })?;
            if e.sender_user_id == s.user.id {
                return Err(ApiError::forbidden(format!(
                    "you sent message {message_id}: only a recipient can acknowledge it"
                )));
            }
            if e.outcome == EscalationOutcome::Acknowledged {
                let by = match e.acked_by {
                    Some(u) => self.user_or_404(u).await?.username.to_string(),
                    None => "someone".to_owned(),
                };
                return Err(ApiError::new(
                    ErrorCode::Conflict,
                    format!("message {message_id} was already acknowledged by {by}"),
                ));
            }
            if req.response == AckResponse::Decline && e.declined.contains(&s.user.id) {
                return Err(ApiError::new(
                    ErrorCode::Conflict,
                    format!("you already declined message {message_id}"),
                ));
            }
            let now = self.now();
            let as_role = e
                .tiers
                .iter()
                .find(|t| t.users.contains(&s.user.id))
                .and_then(|t| t.role.clone());
            let user_tier = e.tiers.iter().position(|t| t.users.contains(&s.user.id));
            let member_devices = self.store.member_devices(conversation).await?;
            let mut fx = Effects::new();
            fx.events.push(DeliveryEvent {
                message_id,
                device_id: s.device_id,
                user_id: s.user.id,
                state: DeliveryState::Acknowledged,
                at: now,
                tier: user_tier.map(|t| t as u32),
                response: Some(req.response),
            });
            fx.audits.push((
                "escalation.ack",
                serde_json::json!({
                    "message_id": message_id, "role": e.role, "priority": e.priority,
                    "acting_user": s.user.id, "acting_username": s.user.username,
                    "acting_device": s.device_id, "as_role": as_role,
                    "response": req.response, "tier": e.tier, "user_tier": user_tier,
                    "late": e.outcome == EscalationOutcome::NoResponse,
                }),
            ));
            if req.response == AckResponse::Decline {
                e.declined.push(s.user.id);
                let current = &e.tiers[e.tier as usize].users;
                let everyone_declined = e.outcome == EscalationOutcome::Pending
                    && !current.is_empty()
                    && current.iter().all(|u| e.declined.contains(u));
                e.acked_by = Some(s.user.id);
                e.response = Some(AckResponse::Decline);
                let declined = alert(&e, AlertKind::Acknowledged, now);
                e.acked_by = None;
                e.response = None;
                for (d, _) in devices_of(&member_devices, &[e.sender_user_id]) {
                    fx.alerts.push(AlertDelivery {
                        device_id: d,
                        payload: declined.to_payload(),
                    });
                }
                if everyone_declined {
                    let more = advance(&mut e, &member_devices, now, true);
                    fx.events.extend(more.events);
                    fx.alerts.extend(more.alerts);
                    fx.audits.extend(more.audits);
                }
            } else {
                e.outcome = EscalationOutcome::Acknowledged;
                e.acked_by = Some(s.user.id);
                e.acked_device = Some(s.device_id);
                e.response = Some(req.response);
                e.acked_at = Some(now);
                e.due_at = None;
                // The sender and every tier asked so far learn it is taken.
                let mut told: Vec<UserId> = vec![e.sender_user_id];
                for t in &e.tiers[..=(e.tier as usize).min(e.tiers.len() - 1)] {
                    told.extend(t.users.iter().filter(|u| **u != s.user.id));
                }
                let payload = alert(&e, AlertKind::Acknowledged, now).to_payload();
                for (d, _) in devices_of(&member_devices, &told) {
                    fx.alerts.push(AlertDelivery {
                        device_id: d,
                        payload: payload.clone(),
                    });
                }
            }
            if self.apply(e, fx, now, &s.actor()).await? {
                self.wake_escalations();
                return self.message_delivery(s, message_id).await;
            }
            // The escalation task (or another acknowledgement) wrote first: read it again.
        }
        Err(ApiError::new(
            ErrorCode::Conflict,
            format!("message {message_id} kept changing; acknowledge again"),
        ))
    }

    /// Per-device delivery states of a message with timestamps, and its escalation
    /// (`GET /v1/messages/{id}/status`; members of its conversation).
    pub async fn message_delivery(
        &self,
        s: &AuthSession,
        message_id: MessageId,
    ) -> ApiResult<MessageDelivery> {
        let (conversation, seq) = self
            .store
            .message_location(message_id)
            .await?
            .ok_or_else(|| not_found_message(message_id))?;
        let members = self.store.members(conversation).await?;
        if !members.iter().any(|m| m.user_id == s.user.id) {
            return Err(not_found_message(message_id));
        }
        let env = self
            .store
            .envelope(conversation, seq)
            .await?
            .ok_or_else(|| not_found_message(message_id))?;
        let receipts = self.store.receipts(conversation, seq).await?;
        let events = self.store.delivery_events(message_id).await?;
        let escalation = self.store.escalation(message_id).await?;
        let mut devices: Vec<DeviceDelivery> = Vec::new();
        let mut ids: Vec<(DeviceId, UserId)> =
            receipts.iter().map(|r| (r.device_id, r.user_id)).collect();
        for ev in &events {
            if ev.device_id != env.sender_device_id && !ids.iter().any(|(d, _)| *d == ev.device_id)
            {
                ids.push((ev.device_id, ev.user_id));
            }
        }
        for (device_id, user_id) in ids {
            let mut states: Vec<DeliveryStateChange> = events
                .iter()
                .filter(|e| e.device_id == device_id)
                .map(|e| DeliveryStateChange {
                    state: e.state,
                    at: e.at,
                    tier: e.tier,
                    response: e.response,
                })
                .collect();
            if !states.iter().any(|c| c.state == DeliveryState::Queued) {
                states.push(change(DeliveryState::Queued, env.sent_at));
            }
            let receipt = receipts.iter().find(|r| r.device_id == device_id);
            if let Some(at) = receipt.and_then(|r| r.delivered_at) {
                states.push(change(DeliveryState::Delivered, at));
            }
            if let Some(at) = receipt.and_then(|r| r.read_at) {
                states.push(change(DeliveryState::Read, at));
            }
            if receipt.and_then(|r| r.delivered_at).is_none()
                && let Some(d) = self.store.device(device_id).await?
                && d.status == DeviceStatus::Revoked
            {
                states.push(change(
                    DeliveryState::Failed,
                    d.revoked_at.unwrap_or(env.sent_at),
                ));
            }
            states.sort_by_key(|c| (c.at, rank(c.state)));
            let username = match self.store.user(user_id).await? {
                Some(u) => u.username,
                None => continue,
            };
            let state = states.last().map_or(DeliveryState::Queued, |c| c.state);
            devices.push(DeviceDelivery {
                user_id,
                username,
                device_id,
                state,
                states,
            });
        }
        devices.sort_by(|a, b| (&a.username, a.device_id).cmp(&(&b.username, b.device_id)));
        let escalation = match escalation {
            Some(e) => Some(self.escalation_status(&e).await?),
            None => None,
        };
        Ok(MessageDelivery {
            message_id,
            conversation_id: conversation,
            seq,
            sent_at: env.sent_at,
            devices,
            escalation,
        })
    }

    async fn escalation_status(&self, e: &Escalation) -> ApiResult<EscalationStatus> {
        let sender = self.user_or_404(e.sender_user_id).await?.username;
        let acked = match e.acked_by {
            Some(u) => Some(self.user_or_404(u).await?.username),
            None => None,
        };
        let acknowledged_as: Option<ClinicalRoleName> = e.acked_by.and_then(|u| {
            e.tiers
                .iter()
                .find(|t| t.users.contains(&u))
                .and_then(|t| t.role.clone())
        });
        Ok(EscalationStatus {
            role: e.role.clone(),
            priority: e.priority,
            sender,
            tier: e.tier,
            tiers: e.tiers.len() as u32,
            outcome: e.outcome,
            acknowledged_by: acked,
            acknowledged_as,
            response: e.response,
            acknowledged_at: e.acked_at,
            next_step_at: next_due(e),
        })
    }
}

fn change(state: DeliveryState, at: OffsetDateTime) -> DeliveryStateChange {
    DeliveryStateChange {
        state,
        at,
        tier: None,
        response: None,
    }
}

/// Order of states that share a timestamp.
fn rank(s: DeliveryState) -> u8 {
    match s {
        DeliveryState::Queued => 0,
        DeliveryState::Sent => 1,
        DeliveryState::Delivered => 2,
        DeliveryState::Read => 3,
        DeliveryState::Acknowledged => 4,
        DeliveryState::Escalated => 5,
        DeliveryState::Expired => 6,
        DeliveryState::Failed => 7,
    }
}

/// Run due escalation steps whenever the earliest one comes due: sleep until then (at most
/// [`POLL_INTERVAL`], and woken at once by a local send), then [`Services::run_escalations`].
pub async fn escalation_loop(services: Arc<Services>) {
    loop {
        let ran = services.run_escalations().await;
        if let Err(e) = &ran {
            tracing::warn!(error = %e.message, "escalation run failed");
        }
        let wait = match services.store.next_escalation_due().await {
            _ if ran.is_err() => POLL_INTERVAL,
            Ok(Some(due)) => {
                let left = due - services.now();
                if left <= time::Duration::ZERO {
                    Duration::ZERO
                } else {
                    Duration::try_from(left)
                        .unwrap_or(POLL_INTERVAL)
                        .min(POLL_INTERVAL)
                }
            }
            Ok(None) => POLL_INTERVAL,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the next escalation deadline");
                POLL_INTERVAL
            }
        };
        if wait.is_zero() {
            tokio::task::yield_now().await;
            continue;
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = services.escalation.wake.notified() => {}
        }
    }
}
