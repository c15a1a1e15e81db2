//! Route handlers of messages sent to a role (ADR 0018): acknowledgement and per-device
//! delivery states.
#![allow(
    unused_qualifications,
    reason = "utoipa's path macro expands to qualified paths"
)]

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use ward_proto::*;

use super::handlers::parse_id;
use super::{AppJson, AppPath};
use crate::error::ApiResult;
use crate::service::{AuthSession, Services};

/// Acknowledge a message sent to a role (recipients only; not the sender). The body names
/// the response kind only; a free-text answer travels in an MLS reply. Audited
/// `escalation.ack`.
#[utoipa::path(post, path = "/v1/messages/{message_id}/ack", security(("bearer" = [])),
    params(("message_id" = String, Path)), request_body = AckMessageRequest,
    responses((status = 200, body = MessageDelivery), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn ack_message(
    State(s): State<Arc<Services>>,
    session: AuthSession,
    AppPath(id): AppPath<String>,
    AppJson(req): AppJson<AckMessageRequest>,
) -> ApiResult<Json<MessageDelivery>> {
    Ok(Json(
        s.ack_message(&session, parse_id(&id, "message_id")?, req)
            .await?,
    ))
}

/// Per-device delivery states of a message with timestamps, and its escalation when it was
/// sent to a role (members of its conversation).
#[utoipa::path(get, path = "/v1/messages/{message_id}/status", security(("bearer" = [])),
    params(("message_id" = String, Path)),
    responses((status = 200, body = MessageDelivery), (status = 404, body = ErrorBody)))]
pub async fn message_delivery(
    State(s): State<Arc<Services>>,
    session: AuthSession,
    AppPath(id): AppPath<String>,
) -> ApiResult<Json<MessageDelivery>> {
    Ok(Json(
        s.message_delivery(&session, parse_id(&id, "message_id")?)
            .await?,
    ))
}
