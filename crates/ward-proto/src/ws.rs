//! WebSocket frames on `/v1/ws` (JSON text frames).

use serde::{Deserialize, Serialize};

use crate::{AckRequest, Envelope, InboxItem};

/// Server to device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ServerEvent {
    /// A new conversation message.
    Envelope(Envelope),
    /// A new device-addressed item.
    Inbox(InboxItem),
    /// A device sharing a conversation with this one was revoked or wiped: sync now, so the
    /// first member online commits its removal from the MLS groups (ids only, like every
    /// event: no names, labels or content ever travel in a push).
    DeviceRevoked {
        /// The revoked device.
        device_id: crate::DeviceId,
    },
    /// The session ended (logout, suspension, revocation, timeout); the socket closes next.
    SessionEnded {
        /// Why.
        reason: String,
    },
    /// Break-glass access to a conversation was granted or ended (ADR 0016). Sent to the
    /// conversation's devices, the grantee's devices and every compliance officer's devices
    /// (the alert). Ids and times only: the name and reason are fetched over the API.
    BreakGlass {
        /// The grant.
        grant_id: uuid::Uuid,
        /// The conversation.
        conversation_id: crate::ConversationId,
        /// Whom it is for.
        user_id: crate::UserId,
        /// When access ends, Unix seconds.
        expires_at: i64,
        /// True when the grant ended (expired) rather than started.
        ended: bool,
    },
}

/// Device to server.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ClientFrame {
    /// Delivery acknowledgement, same meaning as `POST /v1/sync/ack`.
    Ack(AckRequest),
    /// Keep-alive; the server answers nothing (WebSocket ping frames also work).
    Ping,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Untrusted client frames never panic the decoder.
        #[test]
        fn client_frame_decoder_total(s in ".{0,300}") {
            let _ = serde_json::from_str::<ClientFrame>(&s);
        }

        #[test]
        fn client_frame_decoder_total_on_json_like(
            t in prop_oneof![Just("ack"), Just("ping"), Just("x")],
            seq in any::<i64>(),
        ) {
            let s = format!(r#"{{"type":"{t}","inbox_seq":{seq},"conversations":[]}}"#);
            let _ = serde_json::from_str::<ClientFrame>(&s);
        }
    }

    #[test]
    fn ack_frame_parses() {
        let f: ClientFrame = serde_json::from_str(r#"{"type":"ack","inbox_seq":3}"#).unwrap();
        match f {
            ClientFrame::Ack(a) => assert_eq!(a.inbox_seq, Some(3)),
            _ => panic!("wrong frame"),
        }
    }
}
