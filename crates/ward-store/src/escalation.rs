//! Escalation state of messages sent to a clinical role, and per-device delivery events
//! (ADR 0018).
//!
//! The store keeps the facts and makes the steps atomic: a step (the row's new state, the
//! delivery events and the device alerts it raises) is written in one transaction, and only
//! if the row's `version` is still the one the caller read, so a concurrent acknowledgement
//! or another node's step wins cleanly. Deciding *what* the next step is belongs to the
//! server (`ward_server::service::escalation`).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use ward_proto::{
    AckResponse, ClinicalRoleName, ConversationId, DeliveryState, DeviceId, EscalationOutcome,
    InboxItem, MessageId, MessagePriority, UserId,
};

use crate::StoreResult;

/// One tier of a message's escalation chain, fixed when the message was sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainTier {
    /// The tier's role, when it is a role.
    pub role: Option<ClinicalRoleName>,
    /// The users asked at this tier (members of the conversation only).
    pub users: Vec<UserId>,
    /// Seconds the tier has to acknowledge; none: it waits without escalating.
    pub ack_within_secs: Option<u64>,
}

/// The escalation of one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Escalation {
    /// The message.
    pub message_id: MessageId,
    /// Its conversation.
    pub conversation_id: ConversationId,
    /// Its seq.
    pub seq: u64,
    /// Sender.
    pub sender_user_id: UserId,
    /// Sending device.
    pub sender_device_id: DeviceId,
    /// Addressed role.
    pub role: ClinicalRoleName,
    /// Priority.
    pub priority: MessagePriority,
    /// The chain, tier 0 first.
    pub tiers: Vec<ChainTier>,
    /// Re-notify the current tier this often, seconds.
    pub renotify_every_secs: Option<u64>,
    /// The tier being asked.
    pub tier: u32,
    /// When the current tier was first notified.
    pub tier_started_at: OffsetDateTime,
    /// Last (re-)notification of the current tier.
    pub notified_at: OffsetDateTime,
    /// When the next step is due; none when nothing is scheduled.
    pub due_at: Option<OffsetDateTime>,
    /// Where it stands.
    pub outcome: EscalationOutcome,
    /// Users of the current tier who declined.
    pub declined: Vec<UserId>,
    /// Who acknowledged, from which device, how and when.
    pub acked_by: Option<UserId>,
    /// See `acked_by`.
    pub acked_device: Option<DeviceId>,
    /// See `acked_by`.
    pub response: Option<AckResponse>,
    /// See `acked_by`.
    pub acked_at: Option<OffsetDateTime>,
    /// Creation time.
    pub created_at: OffsetDateTime,
    /// Bumped by every write; a step applies only to the version it was computed from.
    pub version: u64,
}

/// One delivery state change of one device for one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryEvent {
    /// The message.
    pub message_id: MessageId,
    /// The device.
    pub device_id: DeviceId,
    /// Its user.
    pub user_id: UserId,
    /// The state entered.
    pub state: DeliveryState,
    /// When.
    pub at: OffsetDateTime,
    /// Escalation tier, if any.
    pub tier: Option<u32>,
    /// Answer, for `acknowledged`.
    pub response: Option<AckResponse>,
}

/// An alert for one device: the payload of an inbox item of kind `alert`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertDelivery {
    /// The device.
    pub device_id: DeviceId,
    /// [`ward_proto::MessageAlert`] as JSON.
    pub payload: Vec<u8>,
}

/// One escalation step: the new row and what it raises, written together.
#[derive(Clone, Debug)]
pub struct EscalationStep {
    /// When the step happened (the alerts' time).
    pub at: OffsetDateTime,
    /// The row after the step; its `version` is the one the step was computed from.
    pub escalation: Escalation,
    /// Delivery events to append.
    pub events: Vec<DeliveryEvent>,
    /// Alerts to put in device inboxes.
    pub alerts: Vec<AlertDelivery>,
}

/// Escalations and delivery events.
#[async_trait]
pub trait EscalationStore {
    /// Store a new escalation with its first events and alerts, atomically. Returns the inbox
    /// items created, or `None`, writing nothing, when the message already has one (a retried
    /// send). `NotFound("message")` when the message is not stored.
    async fn create_escalation(
        &self,
        step: &EscalationStep,
    ) -> StoreResult<Option<Vec<(DeviceId, InboxItem)>>>;
    /// One escalation.
    async fn escalation(&self, message: MessageId) -> StoreResult<Option<Escalation>>;
    /// Atomically take up to `limit` pending escalations due at `now` (oldest due first):
    /// each gets `due_at = lease_until` and a new version, so no other node takes it before
    /// the lease ends (a node that dies mid-step is retried then). Returns them as updated.
    async fn claim_due_escalations(
        &self,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: usize,
    ) -> StoreResult<Vec<Escalation>>;
    /// Write a step if the row's version is still `step.escalation.version` (the new row gets
    /// version + 1). Returns the inbox items created, or `None`, writing nothing, when the row
    /// changed meanwhile. `NotFound("escalation")` when there is none.
    async fn apply_escalation_step(
        &self,
        step: &EscalationStep,
    ) -> StoreResult<Option<Vec<(DeviceId, InboxItem)>>>;
    /// Earliest `due_at` of a pending escalation.
    async fn next_escalation_due(&self) -> StoreResult<Option<OffsetDateTime>>;
    /// Delivery events of a message, by time then insertion order.
    async fn delivery_events(&self, message: MessageId) -> StoreResult<Vec<DeliveryEvent>>;
    /// Where a message is: its conversation and seq.
    async fn message_location(
        &self,
        message: MessageId,
    ) -> StoreResult<Option<(ConversationId, u64)>>;
}

/// Stored names of the enums of this module (their wire names) and back, shared by the
/// backends.
pub mod names {
    use ward_proto::{AckResponse, DeliveryState, EscalationOutcome, MessagePriority};

    use crate::{StoreError, StoreResult};

    fn bad(what: &str, s: &str) -> StoreError {
        StoreError::Corrupt(format!(
            "unknown {what} {:?}",
            s.chars().take(40).collect::<String>()
        ))
    }

    /// Parse a stored priority.
    pub fn priority(s: &str) -> StoreResult<MessagePriority> {
        s.parse().map_err(|_| bad("priority", s))
    }

    /// Parse a stored outcome.
    pub fn outcome(s: &str) -> StoreResult<EscalationOutcome> {
        [
            EscalationOutcome::Pending,
            EscalationOutcome::Acknowledged,
            EscalationOutcome::NoResponse,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
        .ok_or_else(|| bad("escalation outcome", s))
    }

    /// Parse a stored response kind.
    pub fn response(s: &str) -> StoreResult<AckResponse> {
        [
            AckResponse::Accept,
            AckResponse::Decline,
            AckResponse::CallMe,
            AckResponse::FreeText,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
        .ok_or_else(|| bad("response", s))
    }

    /// Parse a stored delivery state.
    pub fn state(s: &str) -> StoreResult<DeliveryState> {
        [
            DeliveryState::Queued,
            DeliveryState::Sent,
            DeliveryState::Delivered,
            DeliveryState::Read,
            DeliveryState::Acknowledged,
            DeliveryState::Failed,
            DeliveryState::Expired,
            DeliveryState::Escalated,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
        .ok_or_else(|| bad("delivery state", s))
    }

    /// JSON text of a serialisable value.
    pub fn json<T: serde::Serialize>(v: &T) -> StoreResult<String> {
        serde_json::to_string(v).map_err(|e| StoreError::Corrupt(format!("encoding: {e}")))
    }

    /// A value from JSON text.
    pub fn from_json<T: serde::de::DeserializeOwned>(what: &str, s: &str) -> StoreResult<T> {
        serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
    }
}
