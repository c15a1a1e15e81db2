//! Wire types of messages sent to a clinical role (ADR 0018): the escalation metadata a send
//! carries, acknowledgements, device-addressed alerts (notify, re-notify, escalate, no
//! response) and per-device delivery states.
//!
//! The server sees only what is here: the addressed role, the priority, who acknowledged and
//! the response *kind*. Message text and a free-text answer travel inside MLS only.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::{
    ClinicalRoleName, ConversationId, DeviceId, InboxItem, InboxKind, MessageId, UserId, Username,
};

/// Clinical priority as the server sees it (the same values as the content's priority).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MessagePriority {
    /// No acknowledgement asked.
    #[default]
    Routine,
    /// Acknowledgement asked; escalates by the role's policy.
    Urgent,
    /// Acknowledgement asked at once; escalates by the role's policy.
    Stat,
}

impl MessagePriority {
    /// Snake-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Routine => "routine",
            Self::Urgent => "urgent",
            Self::Stat => "stat",
        }
    }
    /// Urgent and STAT messages ask for an acknowledgement and escalate.
    pub fn asks_ack(self) -> bool {
        self != Self::Routine
    }
}

impl FromStr for MessagePriority {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "routine" => Ok(Self::Routine),
            "urgent" => Ok(Self::Urgent),
            "stat" => Ok(Self::Stat),
            _ => Err(format!(
                "priority must be routine, urgent or stat (got {:?})",
                s.chars().take(40).collect::<String>()
            )),
        }
    }
}

impl fmt::Display for MessagePriority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `SendEnvelopeRequest::to_role`: this application message is addressed to a clinical role.
/// The conversation must hold the role's escalation chain (the sender's client builds it from
/// `GET /v1/roles/{role}/holders`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleAddress {
    /// The addressed role.
    pub role: ClinicalRoleName,
    /// Priority; urgent and STAT ask for acknowledgement and escalate.
    #[serde(default)]
    pub priority: MessagePriority,
}

/// What the server did with a message sent to a role (`SendEnvelopeResponse::to_role`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RoleSendOutcome {
    /// The role.
    pub role: ClinicalRoleName,
    /// Nobody held the role when the message arrived; escalation went on to the next tier
    /// with anyone on it (or ended in "no response" when there is none).
    pub nobody_on_call: bool,
    /// The tier notified first (0: the role's holders).
    pub tier: u32,
    /// Users notified now.
    pub notified: Vec<UserId>,
    /// True when the message asks for acknowledgement (urgent, STAT).
    pub awaiting_ack: bool,
}

/// How a recipient answered an urgent or STAT message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AckResponse {
    /// "I take it."
    Accept,
    /// "I cannot take it": when every notified user of the tier declines, the next tier is
    /// notified at once.
    Decline,
    /// "Call me."
    CallMe,
    /// A free-text answer; the text itself travels only in the encrypted MLS reply.
    FreeText,
}

impl AckResponse {
    /// Snake-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accept => "accept",
            Self::Decline => "decline",
            Self::CallMe => "call_me",
            Self::FreeText => "free_text",
        }
    }
}

impl fmt::Display for AckResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `POST /v1/messages/{id}/ack`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AckMessageRequest {
    /// The response kind (never the text of a free-text answer).
    pub response: AckResponse,
}

/// Kind of a device-addressed alert about a message sent to a role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// The recipient's tier is asked to acknowledge (first notification).
    Notify,
    /// Reminder: still not acknowledged.
    Renotify,
    /// The previous tier did not acknowledge in time; this tier is asked now. To the sender:
    /// the message moved on to the next tier.
    Escalated,
    /// To the sender: no tier acknowledged; escalation ended.
    NoResponse,
    /// To the sender and the chain: someone answered (see `response`).
    Acknowledged,
    /// To the sender: nobody held the role when the message arrived.
    NobodyOnCall,
}

impl AlertKind {
    /// Snake-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Notify => "notify",
            Self::Renotify => "renotify",
            Self::Escalated => "escalated",
            Self::NoResponse => "no_response",
            Self::Acknowledged => "acknowledged",
            Self::NobodyOnCall => "nobody_on_call",
        }
    }
}

/// An alert about a message sent to a role, delivered to one device as an inbox item of kind
/// `alert` (its `payload` is this, as JSON): on sync, and live over the WebSocket. Ids, the
/// role name and times only — never content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MessageAlert {
    /// What happened.
    pub kind: AlertKind,
    /// The message.
    pub message_id: MessageId,
    /// Its conversation.
    pub conversation_id: ConversationId,
    /// Its seq.
    pub seq: u64,
    /// The addressed role.
    pub role: ClinicalRoleName,
    /// Its priority.
    pub priority: MessagePriority,
    /// The tier concerned (0: the role's holders).
    pub tier: u32,
    /// The role of that tier, when it is a role.
    #[serde(default)]
    pub tier_role: Option<ClinicalRoleName>,
    /// Who answered (`acknowledged`).
    #[serde(default)]
    pub by_user: Option<UserId>,
    /// The answer (`acknowledged`).
    #[serde(default)]
    pub response: Option<AckResponse>,
    /// When the current tier's deadline passes, if it has one.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub deadline: Option<OffsetDateTime>,
    /// When the alert was raised.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

impl MessageAlert {
    /// The inbox payload.
    pub fn to_payload(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
    /// The alert an inbox item carries, if it is one.
    pub fn from_inbox(item: &InboxItem) -> Option<Self> {
        (item.kind == InboxKind::Alert)
            .then(|| serde_json::from_slice(item.payload.as_slice()).ok())
            .flatten()
    }
}

/// Delivery state of a message for one recipient device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Accepted by the server, waiting for the device.
    Queued,
    /// The device was notified (alert raised; repeated for each re-notification).
    Sent,
    /// The device acknowledged receipt (sync ack).
    Delivered,
    /// The device reported it read.
    Read,
    /// The device's user acknowledged (with the response).
    Acknowledged,
    /// The device can no longer receive it (revoked before delivery).
    Failed,
    /// Escalation ended with no response while the device had not acknowledged.
    Expired,
    /// The device's tier let the deadline pass; the next tier was notified.
    Escalated,
}

impl DeliveryState {
    /// Snake-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Read => "read",
            Self::Acknowledged => "acknowledged",
            Self::Failed => "failed",
            Self::Expired => "expired",
            Self::Escalated => "escalated",
        }
    }
}

impl fmt::Display for DeliveryState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One state change of one device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeliveryStateChange {
    /// The state entered.
    pub state: DeliveryState,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The escalation tier, for escalation events.
    #[serde(default)]
    pub tier: Option<u32>,
    /// The answer, for `acknowledged`.
    #[serde(default)]
    pub response: Option<AckResponse>,
}

/// Every state change of one recipient device, oldest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeviceDelivery {
    /// Recipient user.
    pub user_id: UserId,
    /// Their username.
    pub username: Username,
    /// Recipient device.
    pub device_id: DeviceId,
    /// The current state (the last of `states`).
    pub state: DeliveryState,
    /// State changes, oldest first.
    pub states: Vec<DeliveryStateChange>,
}

/// Where an escalation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EscalationOutcome {
    /// Waiting for an acknowledgement.
    Pending,
    /// Someone acknowledged (accept, call me or free text).
    Acknowledged,
    /// Every tier let its deadline pass.
    NoResponse,
}

impl EscalationOutcome {
    /// Snake-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Acknowledged => "acknowledged",
            Self::NoResponse => "no_response",
        }
    }
}

/// The escalation of a message sent to a role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EscalationStatus {
    /// The addressed role.
    pub role: ClinicalRoleName,
    /// Priority.
    pub priority: MessagePriority,
    /// The sender (acting human).
    pub sender: Username,
    /// The tier being asked now (or last asked).
    pub tier: u32,
    /// Tiers in the chain.
    pub tiers: u32,
    /// Where it stands.
    pub outcome: EscalationOutcome,
    /// Who acknowledged.
    #[serde(default)]
    pub acknowledged_by: Option<Username>,
    /// The role they acted in (their tier's role), if any.
    #[serde(default)]
    pub acknowledged_as: Option<ClinicalRoleName>,
    /// Their answer.
    #[serde(default)]
    pub response: Option<AckResponse>,
    /// When.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub acknowledged_at: Option<OffsetDateTime>,
    /// Next scheduled step (re-notification or deadline), while pending.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub next_step_at: Option<OffsetDateTime>,
}

/// `GET /v1/messages/{id}/status` and the answer of `POST /v1/messages/{id}/ack`: per-device
/// delivery states with timestamps, and the escalation when the message went to a role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MessageDelivery {
    /// The message.
    pub message_id: MessageId,
    /// Conversation.
    pub conversation_id: ConversationId,
    /// Seq.
    pub seq: u64,
    /// When the server accepted it.
    #[serde(with = "time::serde::rfc3339")]
    pub sent_at: OffsetDateTime,
    /// One entry per recipient device (the sending device excluded).
    pub devices: Vec<DeviceDelivery>,
    /// The escalation, for a message sent to a role.
    #[serde(default)]
    pub escalation: Option<EscalationStatus>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn alert_round_trips_through_an_inbox_item() {
        let a = MessageAlert {
            kind: AlertKind::Escalated,
            message_id: MessageId::random(),
            conversation_id: ConversationId::random(),
            seq: 4,
            role: ClinicalRoleName::parse("cardiology-on-call").unwrap(),
            priority: MessagePriority::Stat,
            tier: 1,
            tier_role: None,
            by_user: None,
            response: None,
            deadline: None,
            at: OffsetDateTime::UNIX_EPOCH,
        };
        let item = InboxItem {
            inbox_seq: 1,
            kind: InboxKind::Alert,
            conversation_id: a.conversation_id,
            commit_seq: 4,
            payload: a.to_payload().into(),
            created_at: OffsetDateTime::UNIX_EPOCH,
        };
        assert_eq!(MessageAlert::from_inbox(&item), Some(a));
        assert_eq!(
            serde_json::to_value(AckResponse::CallMe).unwrap(),
            serde_json::json!("call_me")
        );
        assert!("bogus".parse::<MessagePriority>().is_err());
        assert_eq!(
            "STAT".parse::<MessagePriority>().unwrap(),
            MessagePriority::Stat
        );
    }
}
