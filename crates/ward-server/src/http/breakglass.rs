//! Break-glass routes (ADR 0016): open access to a conversation, list grants.
#![allow(
    unused_qualifications,
    reason = "utoipa's path macro expands to qualified paths"
)]

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use ward_proto::{BreakGlassGrant, BreakGlassRequest, ConversationId, ErrorBody};

use super::{AppJson, AppPath};
use crate::error::ApiResult;
use crate::service::{AuthSession, Services};

/// Open time-limited access to a group conversation the caller is not in (roles allowed by
/// the organisation policy; default physician and nurse). Audited; members, the caller and
/// compliance officers are notified; a member's client adds the caller on its next sync.
#[utoipa::path(post, path = "/v1/conversations/{conversation_id}/break-glass", security(("bearer" = [])),
    params(("conversation_id" = String, Path)), request_body = BreakGlassRequest,
    responses((status = 200, body = BreakGlassGrant), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn open_break_glass(
    State(s): State<Arc<Services>>,
    session: AuthSession,
    AppPath(id): AppPath<String>,
    AppJson(req): AppJson<BreakGlassRequest>,
) -> ApiResult<Json<BreakGlassGrant>> {
    let id: ConversationId = super::handlers::parse_id(&id, "conversation_id")?;
    Ok(Json(s.open_break_glass(&session, id, req).await?))
}

/// Break-glass grants: every grant for admins and compliance officers (audited), otherwise
/// those of the caller's conversations and the caller's own.
#[utoipa::path(get, path = "/v1/break-glass", security(("bearer" = [])),
    responses((status = 200, body = Vec<BreakGlassGrant>)))]
pub async fn list_break_glass(
    State(s): State<Arc<Services>>,
    session: AuthSession,
) -> ApiResult<Json<Vec<BreakGlassGrant>>> {
    Ok(Json(s.break_glass_grants(&session).await?))
}
