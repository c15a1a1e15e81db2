//! Route handlers of the patient index and message templates (ADR 0019).
#![allow(
    unused_qualifications,
    reason = "utoipa's path macro expands to qualified paths"
)]

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::IntoParams;
use ward_proto::*;

use super::handlers::parse_id;
use super::{AppJson, AppPath, AppQuery};
use crate::error::{ApiError, ApiResult};
use crate::service::{AuthSession, Services};

fn template_name(s: &str) -> ApiResult<TemplateName> {
    TemplateName::parse(s).map_err(|e| ApiError::invalid(e.to_string()))
}

/// Store a patient tag (sealed to the journal key) for a conversation the caller is in;
/// audited `patient_index.tag`.
#[utoipa::path(post, path = "/v1/conversations/{conversation_id}/patient-tags", security(("bearer" = [])),
    params(("conversation_id" = String, Path)), request_body = PatientTagRequest,
    responses((status = 201), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn add_patient_tag(
    State(s): State<Arc<Services>>,
    session: AuthSession,
    AppPath(conversation): AppPath<String>,
    AppJson(req): AppJson<PatientTagRequest>,
) -> ApiResult<StatusCode> {
    let conversation: ConversationId = parse_id(&conversation, "conversation")?;
    s.add_patient_tag(&session, conversation, req).await?;
    Ok(StatusCode::CREATED)
}

/// Query of the patient index.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PatientIndexQuery {
    /// Entries after this index seq (default 0).
    pub after: Option<u64>,
    /// Page size (1 to 1000, default 1000).
    pub limit: Option<usize>,
}

/// A page of the patient index (compliance only; audited `patient_index.read`).
#[utoipa::path(get, path = "/v1/compliance/patient-index", security(("bearer" = [])), params(PatientIndexQuery),
    responses((status = 200, body = PatientIndexPage), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn patient_index(
    State(s): State<Arc<Services>>,
    session: AuthSession,
    AppQuery(q): AppQuery<PatientIndexQuery>,
) -> ApiResult<Json<PatientIndexPage>> {
    Ok(Json(
        s.patient_index(
            &session.actor(),
            q.after.unwrap_or(0),
            q.limit.unwrap_or(MAX_PATIENT_INDEX_PAGE),
        )
        .await?,
    ))
}

/// Every message template (staff).
#[utoipa::path(get, path = "/v1/templates", security(("bearer" = [])),
    responses((status = 200, body = TemplateList), (status = 403, body = ErrorBody)))]
pub async fn list_templates(
    State(s): State<Arc<Services>>,
    session: AuthSession,
) -> ApiResult<Json<TemplateList>> {
    Ok(Json(TemplateList {
        templates: s.templates(&session.actor()).await?,
    }))
}

/// One message template (staff).
#[utoipa::path(get, path = "/v1/templates/{name}", security(("bearer" = [])), params(("name" = String, Path)),
    responses((status = 200, body = TemplateInfo), (status = 404, body = ErrorBody)))]
pub async fn get_template(
    State(s): State<Arc<Services>>,
    session: AuthSession,
    AppPath(name): AppPath<String>,
) -> ApiResult<Json<TemplateInfo>> {
    Ok(Json(
        s.template(&session.actor(), &template_name(&name)?).await?,
    ))
}

/// Define a message template (admin); audited `template.create`.
#[utoipa::path(post, path = "/v1/admin/templates", security(("bearer" = [])), request_body = CreateTemplateRequest,
    responses((status = 201, body = TemplateInfo), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_template(
    State(s): State<Arc<Services>>,
    session: AuthSession,
    AppJson(req): AppJson<CreateTemplateRequest>,
) -> ApiResult<(StatusCode, Json<TemplateInfo>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.create_template(&session.actor(), req).await?),
    ))
}

/// Delete a message template (admin); audited `template.delete`.
#[utoipa::path(delete, path = "/v1/admin/templates/{name}", security(("bearer" = [])), params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_template(
    State(s): State<Arc<Services>>,
    session: AuthSession,
    AppPath(name): AppPath<String>,
) -> ApiResult<StatusCode> {
    s.delete_template(&session.actor(), &template_name(&name)?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Turn the caller's do-not-disturb on with a covering colleague; audited `dnd.on`.
#[utoipa::path(put, path = "/v1/me/dnd", security(("bearer" = [])), request_body = DndRequest,
    responses((status = 200, body = DndInfo), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn set_dnd(
    State(s): State<Arc<Services>>,
    session: AuthSession,
    AppJson(req): AppJson<DndRequest>,
) -> ApiResult<Json<DndInfo>> {
    Ok(Json(s.set_dnd(&session, req).await?))
}

/// Turn the caller's do-not-disturb off; audited `dnd.off`.
#[utoipa::path(delete, path = "/v1/me/dnd", security(("bearer" = [])),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn clear_dnd(
    State(s): State<Arc<Services>>,
    session: AuthSession,
) -> ApiResult<StatusCode> {
    s.clear_dnd(&session).await?;
    Ok(StatusCode::NO_CONTENT)
}
