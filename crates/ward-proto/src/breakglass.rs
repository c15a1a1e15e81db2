//! Break-glass emergency access (HIPAA §164.312(a)(2)(ii), ADR 0016): the request a clinician
//! sends to join a conversation she is not in, and the grant the server keeps and shows.
//!
//! The server cannot add anyone to an MLS group (it never sees the ratchet tree); a grant is
//! fulfilled by a member's client, which commits the grantee's addition naming the grant in
//! [`crate::SendEnvelopeRequest::break_glass_grant`]. The reason is stored in clear in the
//! grant and the audit log, so the client refuses a reason in which its DLP detectors find
//! PHI; the server bounds its length only.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::{ConversationId, UserId, Username};

/// Fewest characters in a reason (after trimming): "emergency" alone says nothing.
pub const BREAK_GLASS_REASON_MIN_CHARS: usize = 10;
/// Most characters in a reason.
pub const BREAK_GLASS_REASON_MAX_CHARS: usize = 500;
/// Minutes of access when the request does not say.
pub const BREAK_GLASS_DEFAULT_MINUTES: u32 = 60;

/// `POST /v1/conversations/{id}/break-glass`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BreakGlassRequest {
    /// Why access is needed, 10 to 500 characters; no PHI (it is stored in clear).
    pub reason: String,
    /// How long, 1 to the organisation's maximum; default
    /// [`BREAK_GLASS_DEFAULT_MINUTES`] (capped by the maximum).
    #[serde(default)]
    pub minutes: Option<u32>,
}

/// One break-glass grant as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BreakGlassGrant {
    /// Id of the grant.
    pub grant_id: uuid::Uuid,
    /// The conversation opened.
    pub conversation_id: ConversationId,
    /// Who received access.
    pub user_id: UserId,
    /// Her username.
    pub username: Username,
    /// The reason she gave.
    pub reason: String,
    /// When access was granted.
    #[serde(with = "time::serde::rfc3339")]
    pub granted_at: OffsetDateTime,
    /// When access ends.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// When a member's commit added her to the MLS group, if one did.
    #[serde(with = "time::serde::rfc3339::option")]
    pub added_at: Option<OffsetDateTime>,
    /// When the server ended the grant (and her membership), if it did.
    #[serde(with = "time::serde::rfc3339::option")]
    pub ended_at: Option<OffsetDateTime>,
}

impl BreakGlassGrant {
    /// True while the grant gives access at `now`.
    pub fn is_active(&self, now: OffsetDateTime) -> bool {
        self.ended_at.is_none() && now < self.expires_at
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn request_rejects_unknown_fields_and_defaults_minutes() {
        let r: BreakGlassRequest = serde_json::from_str(r#"{"reason":"cardiac arrest"}"#).unwrap();
        assert_eq!(r.minutes, None);
        assert!(serde_json::from_str::<BreakGlassRequest>(r#"{"reason":"x","user":"y"}"#).is_err());
    }
}
