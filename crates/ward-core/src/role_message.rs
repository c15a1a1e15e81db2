//! Messages sent to a clinical role and their acknowledgements, inside the encrypted content
//! (ADR 0018).
//!
//! Two optional top-level content fields, kept in [`MessageContent::extra`] so that clients
//! that predate them keep them unchanged:
//! - `to_role`: the addressed role and the acting human (the sender's username), so every
//!   recipient records both (HIPAA unique user identification);
//! - `ack`: this message acknowledges another one: which, the response kind, who, and the role
//!   they acted in. A free-text answer is the message's text: it never leaves MLS.

use serde::{Deserialize, Serialize};
use ward_proto::{AckResponse, ClinicalRoleName, MessageId, Username};

use crate::MessageContent;

/// Content field of [`RoleAddressing`].
pub const TO_ROLE_FIELD: &str = "to_role";
/// Content field of [`Acknowledgement`].
pub const ACK_FIELD: &str = "ack";

/// A message addressed to a role, as its recipients see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleAddressing {
    /// The addressed role.
    pub role: ClinicalRoleName,
    /// The acting human who sent it.
    pub sender: Username,
}

/// An acknowledgement of a message sent to a role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acknowledgement {
    /// The acknowledged message.
    pub message_id: MessageId,
    /// The response kind.
    pub response: AckResponse,
    /// The acting human.
    pub by: Username,
    /// The role they acted in, if they were asked through one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_role: Option<ClinicalRoleName>,
}

impl MessageContent {
    /// Mark the content as addressed to a role.
    pub fn set_role_addressing(&mut self, r: &RoleAddressing) {
        if let Ok(v) = serde_json::to_value(r) {
            self.extra.insert(TO_ROLE_FIELD.to_owned(), v);
        }
    }

    /// The role the content is addressed to, if any (malformed values read as none).
    pub fn role_addressing(&self) -> Option<RoleAddressing> {
        self.extra
            .get(TO_ROLE_FIELD)
            .and_then(|v| serde_json::from_value(v.clone()).ok())
    }

    /// Mark the content as an acknowledgement.
    pub fn set_acknowledgement(&mut self, a: &Acknowledgement) {
        if let Ok(v) = serde_json::to_value(a) {
            self.extra.insert(ACK_FIELD.to_owned(), v);
        }
    }

    /// The acknowledgement the content carries, if any (malformed values read as none).
    pub fn acknowledgement(&self) -> Option<Acknowledgement> {
        self.extra
            .get(ACK_FIELD)
            .and_then(|v| serde_json::from_value(v.clone()).ok())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use crate::Priority;

    #[test]
    fn role_and_ack_round_trip_through_bytes() {
        let mut c = MessageContent::text("ST elevation V2-V4", Priority::Stat, 1);
        let to = RoleAddressing {
            role: ClinicalRoleName::parse("cardiology-on-call").unwrap(),
            sender: Username::parse("medic1").unwrap(),
        };
        c.set_role_addressing(&to);
        let ack = Acknowledgement {
            message_id: MessageId::random(),
            response: AckResponse::CallMe,
            by: Username::parse("backup").unwrap(),
            as_role: None,
        };
        c.set_acknowledgement(&ack);
        let back = MessageContent::from_bytes(&c.to_bytes().unwrap()).unwrap();
        assert_eq!(back.role_addressing(), Some(to));
        assert_eq!(back.acknowledgement(), Some(ack));
        let plain = MessageContent::text("hi", Priority::Routine, 1);
        assert_eq!(plain.role_addressing(), None);
        assert_eq!(plain.acknowledgement(), None);
    }
}
