//! The HTTP layer: routes, extractors and the OpenAPI description. Handlers only translate
//! between HTTP and [`crate::service`]; no logic lives here.

mod blobs;
mod breakglass;
mod clinical;
mod escalation;
mod handlers;
mod retention;
mod workflow;
mod ws;

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ward_proto::ErrorCode;

use crate::config::Limits;
use crate::error::ApiError;
use crate::metrics::HttpLabels;
use crate::ratelimit::{LimitState, Limiters};
use crate::service::{AuthSession, Services};

pub use handlers::ApiDoc;

/// JSON body extractor whose rejections use the API's error shape.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct AppJson<T>(pub T);

/// Path extractor with the API's error shape.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct AppPath<T>(pub T);

/// Query extractor with the API's error shape.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct AppQuery<T>(pub T);

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r.status() {
            StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::new(ErrorCode::PayloadTooLarge, "request body is too large")
            }
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "request body must be JSON with Content-Type: application/json",
            ),
            _ => ApiError::invalid(r.body_text()),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::invalid(format!("invalid path parameter: {}", r.body_text()))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::invalid(format!("invalid query parameter: {}", r.body_text()))
    }
}

impl FromRequestParts<Arc<Services>> for AuthSession {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        services: &Arc<Services>,
    ) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| {
                ApiError::unauthenticated("missing Authorization: Bearer <token> header")
            })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| {
                h.get(..7)
                    .filter(|p| p.eq_ignore_ascii_case("bearer "))
                    .map(|_| &h[7..])
            })
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= 128)
            .ok_or_else(|| {
                ApiError::unauthenticated("Authorization header must be 'Bearer <token>'")
            })?;
        services.authenticate(token).await
    }
}

impl axum::extract::OptionalFromRequestParts<Arc<Services>> for AuthSession {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        services: &Arc<Services>,
    ) -> Result<Option<Self>, ApiError> {
        if parts
            .headers
            .contains_key(axum::http::header::AUTHORIZATION)
        {
            <AuthSession as FromRequestParts<Arc<Services>>>::from_request_parts(parts, services)
                .await
                .map(Some)
        } else {
            Ok(None)
        }
    }
}

/// Longest a request may take before the server answers 503 (WebSocket sessions are not
/// requests once upgraded). Bounds slow-body and slow-handler resource use.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

async fn request_timeout(req: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => {
            ApiError::new(ErrorCode::Unavailable, "request took too long; retry").into_response()
        }
    }
}

/// Build the router with every route and middleware.
pub fn router(services: Arc<Services>, limits: &Limits) -> Router {
    let limiters = Arc::new(Limiters::new(limits));
    let weak = Arc::downgrade(&limiters);
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            every.tick().await;
            match weak.upgrade() {
                Some(l) => l.prune(),
                None => break,
            }
        }
    });
    let limit_state = LimitState {
        limiters,
        services: services.clone(),
    };
    Router::new()
        .route("/v1/health", get(handlers::health))
        .route("/metrics", get(handlers::metrics))
        .route("/v1/openapi.json", get(handlers::openapi))
        .route("/v1/server", get(handlers::server_info))
        .route("/v1/enroll", post(handlers::enroll))
        .route("/v1/login", post(handlers::login))
        .route("/v1/logout", post(handlers::logout))
        .route("/v1/me", get(handlers::me))
        .route("/v1/me/password", post(handlers::change_password))
        .route("/v1/devices", get(handlers::my_devices))
        .route(
            "/v1/devices/{device_id}/revoke",
            post(handlers::revoke_my_device),
        )
        .route(
            "/v1/devices/me/key-packages",
            get(handlers::key_package_stock).post(handlers::upload_key_packages),
        )
        .route("/v1/revocations", get(handlers::revocations))
        .route("/v1/users/{username}", get(handlers::directory))
        .route(
            "/v1/users/{username}/key-packages/claim",
            post(handlers::claim_key_packages),
        )
        .route(
            "/v1/conversations",
            get(handlers::list_conversations).post(handlers::create_conversation),
        )
        .route(
            "/v1/conversations/{conversation_id}",
            get(handlers::get_conversation),
        )
        .route(
            "/v1/conversations/{conversation_id}/envelopes",
            post(handlers::send_envelope),
        )
        .route(
            "/v1/conversations/{conversation_id}/messages/{seq}/status",
            get(handlers::message_status),
        )
        .route(
            "/v1/conversations/{conversation_id}/commits",
            get(handlers::commit_log),
        )
        .route(
            "/v1/conversations/{conversation_id}/blobs",
            post(blobs::create_blob),
        )
        .route(
            "/v1/blobs/{blob_id}",
            get(blobs::download_blob)
                .put(blobs::put_blob_part)
                .delete(blobs::delete_blob),
        )
        .route("/v1/blobs/{blob_id}/upload", get(blobs::blob_upload))
        .route("/v1/blobs/{blob_id}/complete", post(blobs::complete_blob))
        .route("/v1/sync", get(handlers::sync))
        .route("/v1/sync/ack", post(handlers::ack))
        .route("/v1/receipts/read", post(handlers::read_receipts))
        .route("/v1/ws", get(ws::upgrade))
        .route(
            "/v1/admin/users",
            get(handlers::admin_list_users).post(handlers::admin_create_user),
        )
        .route(
            "/v1/admin/users/{username}/suspend",
            post(handlers::admin_suspend_user),
        )
        .route(
            "/v1/admin/users/{username}/reactivate",
            post(handlers::admin_reactivate_user),
        )
        .route(
            "/v1/admin/users/{username}/enrollment-code",
            post(handlers::admin_reissue_code),
        )
        .route("/v1/admin/devices", get(handlers::admin_list_devices))
        .route(
            "/v1/admin/devices/{device_id}/revoke",
            post(handlers::admin_revoke_device),
        )
        .route(
            "/v1/admin/devices/{device_id}/wipe",
            get(handlers::admin_wipe_status).post(handlers::admin_wipe_device),
        )
        .route(
            "/v1/devices/{device_id}/wipe-confirmation",
            post(handlers::confirm_wipe),
        )
        .route("/v1/admin/audit", get(handlers::admin_audit))
        .route("/v1/admin/audit/verify", get(handlers::admin_audit_verify))
        .route(
            "/v1/admin/policy",
            get(handlers::admin_policy).put(handlers::admin_update_policy),
        )
        .route(
            "/v1/admin/dlp-policy",
            axum::routing::put(handlers::admin_set_dlp_policy),
        )
        .route("/v1/dlp-policy", get(handlers::dlp_policy))
        .route("/v1/attachment-policy", get(handlers::attachment_policy))
        .route("/v1/journal-keys", get(handlers::journal_keys))
        .route("/v1/journal/mismatch", post(handlers::journal_mismatch))
        .route("/v1/compliance/journal", get(handlers::compliance_journal))
        .route(
            "/v1/admin/retention",
            get(retention::admin_retention).put(retention::admin_set_retention),
        )
        .route(
            "/v1/admin/retention/run",
            post(retention::admin_run_retention),
        )
        .route(
            "/v1/admin/holds",
            get(retention::admin_list_holds).post(retention::admin_add_hold),
        )
        .route(
            "/v1/admin/holds/{hold_id}/release",
            post(retention::admin_release_hold),
        )
        .route(
            "/v1/admin/erasure-requests",
            post(retention::admin_request_erasure),
        )
        .route("/v1/deletion-orders", get(retention::deletion_orders))
        .route(
            "/v1/deletion-orders/{order_id}/ack",
            post(retention::ack_deletion_order),
        )
        .route(
            "/v1/conversations/{conversation_id}/break-glass",
            post(breakglass::open_break_glass),
        )
        .route("/v1/break-glass", get(breakglass::list_break_glass))
        .route(
            "/v1/admin/roles",
            get(workflow::list_roles).post(workflow::create_role),
        )
        .route(
            "/v1/admin/roles/{role}/assignments",
            post(workflow::assign_role),
        )
        .route(
            "/v1/admin/roles/{role}/assignments/{username}",
            axum::routing::delete(workflow::unassign_role),
        )
        .route(
            "/v1/admin/roles/{role}/escalation",
            axum::routing::put(workflow::set_escalation),
        )
        .route("/v1/admin/schedules", post(workflow::import_schedule))
        .route(
            "/v1/roles/{role}/on-call",
            axum::routing::put(workflow::set_on_call),
        )
        .route("/v1/roles/{role}/holders", get(workflow::role_holders))
        .route(
            "/v1/conversations/{conversation_id}/patient-tags",
            post(clinical::add_patient_tag),
        )
        .route("/v1/compliance/patient-index", get(clinical::patient_index))
        .route("/v1/templates", get(clinical::list_templates))
        .route("/v1/templates/{name}", get(clinical::get_template))
        .route("/v1/admin/templates", post(clinical::create_template))
        .route(
            "/v1/me/dnd",
            axum::routing::put(clinical::set_dnd).delete(clinical::clear_dnd),
        )
        .route(
            "/v1/admin/templates/{name}",
            axum::routing::delete(clinical::delete_template),
        )
        .route(
            "/v1/messages/{message_id}/ack",
            post(escalation::ack_message),
        )
        .route(
            "/v1/messages/{message_id}/status",
            get(escalation::message_delivery),
        )
        .fallback(|| async { ApiError::not_found("route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                ErrorCode::MethodNotAllowed,
                "method not allowed on this route",
            )
        })
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(middleware::from_fn(request_timeout))
        .layer(middleware::from_fn_with_state(
            limit_state,
            crate::ratelimit::limit,
        ))
        .layer(middleware::from_fn_with_state(
            services.clone(),
            count_requests,
        ))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            tracing::error!("a request handler panicked");
            ApiError::new(
                ErrorCode::Internal,
                "internal server error; see the server log",
            )
            .into_response()
        }))
        .with_state(services)
}

async fn count_requests(
    State(services): State<Arc<Services>>,
    req: Request,
    next: Next,
) -> Response {
    // Only standard methods become labels: invented ones must not grow the metric set.
    let method = match *req.method() {
        Method::GET
        | Method::POST
        | Method::PUT
        | Method::DELETE
        | Method::PATCH
        | Method::HEAD
        | Method::OPTIONS => req.method().as_str().to_owned(),
        _ => "other".to_owned(),
    };
    let resp = next.run(req).await;
    let status = format!("{}xx", resp.status().as_u16() / 100);
    services
        .metrics
        .http_requests
        .get_or_create(&HttpLabels { method, status })
        .inc();
    resp
}
