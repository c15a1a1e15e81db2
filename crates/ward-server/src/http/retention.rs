//! Routes of retention, legal holds, erasure requests and device deletion orders (ADR 0013).
#![allow(
    unused_qualifications,
    reason = "utoipa's path macro expands to qualified paths"
)]

use super::handlers::parse_id;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use ward_proto::{
    AddHoldRequest, DeletionOrderList, ErasureReport, ErasureRequestBody, ErrorBody, HoldInfo,
    HoldList, PurgeReport, RetentionPolicyInfo, Role, SetRetentionRequest,
};

use super::{AppJson, AppPath};
use crate::error::ApiResult;
use crate::service::{AuthSession, Services, require_role};

/// The retention policy (admin, compliance).
#[utoipa::path(get, path = "/v1/admin/retention", security(("bearer" = [])),
    responses((status = 200, body = RetentionPolicyInfo), (status = 403, body = ErrorBody)))]
pub async fn admin_retention(
    State(s): State<Arc<Services>>,
    session: AuthSession,
) -> ApiResult<Json<RetentionPolicyInfo>> {
    Ok(Json(s.retention_policy(&session.actor())?))
}

/// Change retention rules (admin); durations like `30d` or `7y`, `none` clears.
#[utoipa::path(put, path = "/v1/admin/retention", security(("bearer" = [])), request_body = SetRetentionRequest,
    responses((status = 200, body = RetentionPolicyInfo), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn admin_set_retention(
    State(s): State<Arc<Services>>,
    session: AuthSession,
    AppJson(req): AppJson<SetRetentionRequest>,
) -> ApiResult<Json<RetentionPolicyInfo>> {
    Ok(Json(s.set_retention(&session.actor(), req).await?))
}

/// Run the purge now (admin).
#[utoipa::path(post, path = "/v1/admin/retention/run", security(("bearer" = [])),
    responses((status = 200, body = PurgeReport), (status = 403, body = ErrorBody)))]
pub async fn admin_run_retention(
    State(s): State<Arc<Services>>,
    session: AuthSession,
) -> ApiResult<Json<PurgeReport>> {
    Ok(Json(s.run_retention(&session.actor()).await?))
}

/// Every legal hold, released ones included (admin, compliance).
#[utoipa::path(get, path = "/v1/admin/holds", security(("bearer" = [])),
    responses((status = 200, body = HoldList), (status = 403, body = ErrorBody)))]
pub async fn admin_list_holds(
    State(s): State<Arc<Services>>,
    session: AuthSession,
) -> ApiResult<Json<HoldList>> {
    Ok(Json(s.list_holds(&session.actor()).await?))
}

/// Place a legal hold on a user or a conversation (admin, compliance).
#[utoipa::path(post, path = "/v1/admin/holds", security(("bearer" = [])), request_body = AddHoldRequest,
    responses((status = 200, body = HoldInfo), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn admin_add_hold(
    State(s): State<Arc<Services>>,
    session: AuthSession,
    AppJson(req): AppJson<AddHoldRequest>,
) -> ApiResult<Json<HoldInfo>> {
    Ok(Json(s.add_hold(&session.actor(), req).await?))
}

/// Release a legal hold (admin, compliance).
#[utoipa::path(post, path = "/v1/admin/holds/{hold_id}/release", security(("bearer" = [])), params(("hold_id" = String, Path)),
    responses((status = 200, body = HoldInfo), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn admin_release_hold(
    State(s): State<Arc<Services>>,
    session: AuthSession,
    AppPath(id): AppPath<String>,
) -> ApiResult<Json<HoldInfo>> {
    require_role(&session.actor(), &[Role::Admin, Role::Compliance])?;
    Ok(Json(
        s.release_hold(&session.actor(), parse_id::<uuid::Uuid>(&id, "hold_id")?)
            .await?,
    ))
}

/// Honour a GDPR/APPI erasure request for a user (admin, compliance); answers the report of
/// what was erased and what was kept, and why.
#[utoipa::path(post, path = "/v1/admin/erasure-requests", security(("bearer" = [])), request_body = ErasureRequestBody,
    responses((status = 200, body = ErasureReport), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn admin_request_erasure(
    State(s): State<Arc<Services>>,
    session: AuthSession,
    AppJson(req): AppJson<ErasureRequestBody>,
) -> ApiResult<Json<ErasureReport>> {
    Ok(Json(s.request_erasure(&session.actor(), req).await?))
}

/// The deletion orders, signed by the organisation CA, that this device has not
/// acknowledged (any session).
#[utoipa::path(get, path = "/v1/deletion-orders", security(("bearer" = [])),
    responses((status = 200, body = DeletionOrderList)))]
pub async fn deletion_orders(
    State(s): State<Arc<Services>>,
    session: AuthSession,
) -> ApiResult<Json<DeletionOrderList>> {
    Ok(Json(s.deletion_orders(session.device_id).await?))
}

/// The device applied a deletion order to its local history.
#[utoipa::path(post, path = "/v1/deletion-orders/{order_id}/ack", security(("bearer" = [])), params(("order_id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn ack_deletion_order(
    State(s): State<Arc<Services>>,
    session: AuthSession,
    AppPath(id): AppPath<String>,
) -> ApiResult<StatusCode> {
    s.ack_deletion_order(&session.actor(), parse_id::<uuid::Uuid>(&id, "order_id")?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
