//! Route handlers of the clinical workflow (ADR 0014): clinical roles, assignments, on-call
//! opt-in/opt-out, who holds a role now, schedule import and escalation policies.
#![allow(
    unused_qualifications,
    reason = "utoipa's path macro expands to qualified paths"
)]

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use ward_proto::*;

use super::{AppJson, AppPath};
use crate::error::{ApiError, ApiResult};
use crate::service::{AuthSession, Services};

fn role_name(s: &str) -> ApiResult<ClinicalRoleName> {
    ClinicalRoleName::parse(s).map_err(|e| ApiError::invalid(e.to_string()))
}

/// Every clinical role (admin, compliance).
#[utoipa::path(get, path = "/v1/admin/roles", security(("bearer" = [])),
    responses((status = 200, body = ClinicalRoleList), (status = 403, body = ErrorBody)))]
pub async fn list_roles(
    State(s): State<Arc<Services>>,
    session: AuthSession,
) -> ApiResult<Json<ClinicalRoleList>> {
    Ok(Json(ClinicalRoleList {
        roles: s.clinical_roles(&session.actor()).await?,
    }))
}

/// Define a clinical role (admin); audited `role.create`.
#[utoipa::path(post, path = "/v1/admin/roles", security(("bearer" = [])), request_body = CreateClinicalRoleRequest,
    responses((status = 201, body = ClinicalRoleInfo), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_role(
    State(s): State<Arc<Services>>,
    session: AuthSession,
    AppJson(req): AppJson<CreateClinicalRoleRequest>,
) -> ApiResult<(StatusCode, Json<ClinicalRoleInfo>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.create_clinical_role(&session.actor(), req).await?),
    ))
}

/// Assign a role to a user, opted in (admin); audited `role.assign`. 201 when new, 200 when
/// the user already had it.
#[utoipa::path(post, path = "/v1/admin/roles/{role}/assignments", security(("bearer" = [])), params(("role" = String, Path)),
    request_body = AssignRoleRequest,
    responses((status = 201), (status = 200), (status = 404, body = ErrorBody)))]
pub async fn assign_role(
    State(s): State<Arc<Services>>,
    session: AuthSession,
    AppPath(role): AppPath<String>,
    AppJson(req): AppJson<AssignRoleRequest>,
) -> ApiResult<StatusCode> {
    let added = s
        .assign_clinical_role(&session.actor(), &role_name(&role)?, &req.username)
        .await?;
    Ok(if added {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    })
}

/// Remove a user's assignment (admin); audited `role.unassign`.
#[utoipa::path(delete, path = "/v1/admin/roles/{role}/assignments/{username}", security(("bearer" = [])),
    params(("role" = String, Path), ("username" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn unassign_role(
    State(s): State<Arc<Services>>,
    session: AuthSession,
    AppPath((role, username)): AppPath<(String, String)>,
) -> ApiResult<StatusCode> {
    let username = Username::parse(&username).map_err(|e| ApiError::invalid(e.to_string()))?;
    s.unassign_clinical_role(&session.actor(), &role_name(&role)?, &username)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller opts in to or out of a role assigned to them; audited `role.on_call`.
#[utoipa::path(put, path = "/v1/roles/{role}/on-call", security(("bearer" = [])), params(("role" = String, Path)),
    request_body = OnCallRequest,
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn set_on_call(
    State(s): State<Arc<Services>>,
    session: AuthSession,
    AppPath(role): AppPath<String>,
    AppJson(req): AppJson<OnCallRequest>,
) -> ApiResult<StatusCode> {
    s.set_on_call(&session, &role_name(&role)?, req.on_call)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Who holds a role now, and its escalation chain (staff; patients 403). Unknown role: 404.
#[utoipa::path(get, path = "/v1/roles/{role}/holders", security(("bearer" = [])), params(("role" = String, Path)),
    responses((status = 200, body = RoleHolders), (status = 404, body = ErrorBody)))]
pub async fn role_holders(
    State(s): State<Arc<Services>>,
    session: AuthSession,
    AppPath(role): AppPath<String>,
) -> ApiResult<Json<RoleHolders>> {
    Ok(Json(
        s.role_holders(&session.actor(), &role_name(&role)?).await?,
    ))
}

/// Import a CSV shift schedule, all or nothing (admin); audited `schedule.import`. A refused
/// schedule is a 400 naming every bad line.
#[utoipa::path(post, path = "/v1/admin/schedules", security(("bearer" = [])), request_body = ScheduleImportRequest,
    responses((status = 201, body = ScheduleImportReport), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn import_schedule(
    State(s): State<Arc<Services>>,
    session: AuthSession,
    AppJson(req): AppJson<ScheduleImportRequest>,
) -> ApiResult<(StatusCode, Json<ScheduleImportReport>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.import_schedule(&session.actor(), &req.csv).await?),
    ))
}

/// Set a role's escalation policy (admin); loops are refused; audited `escalation.set`.
#[utoipa::path(put, path = "/v1/admin/roles/{role}/escalation", security(("bearer" = [])), params(("role" = String, Path)),
    request_body = EscalationPolicyRequest,
    responses((status = 200, body = EscalationPolicyInfo), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn set_escalation(
    State(s): State<Arc<Services>>,
    session: AuthSession,
    AppPath(role): AppPath<String>,
    AppJson(req): AppJson<EscalationPolicyRequest>,
) -> ApiResult<Json<EscalationPolicyInfo>> {
    Ok(Json(
        s.set_escalation_policy(&session.actor(), &role_name(&role)?, req)
            .await?,
    ))
}
