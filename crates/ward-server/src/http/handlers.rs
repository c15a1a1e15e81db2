//! Route handlers: parse, call the service, answer JSON.
#![allow(
    unused_qualifications,
    reason = "utoipa's path macro expands to qualified paths"
)]

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Deserialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi};
use ward_proto::*;

use super::{AppJson, AppPath, AppQuery};
use crate::error::{ApiError, ApiResult};
use crate::service::{AuthSession, DeviceScope, Services};

/// The OpenAPI 3.1 description, generated from these handlers.
#[derive(OpenApi)]
#[openapi(
    info(title = "Ward API", description = "Ward secure clinical messaging: MLS delivery service and governance plane."),
    paths(
        health, server_info, enroll, login, logout, change_password, me, my_devices, revoke_my_device,
        key_package_stock, upload_key_packages, revocations, directory, claim_key_packages,
        list_conversations, create_conversation, get_conversation, send_envelope, message_status,
        commit_log, sync, ack, read_receipts, admin_list_users, admin_create_user,
        admin_suspend_user, admin_reactivate_user, admin_reissue_code, admin_list_devices,
        admin_revoke_device, admin_wipe_device, admin_wipe_status, confirm_wipe, admin_audit,
        admin_audit_verify, admin_policy, admin_update_policy, dlp_policy, attachment_policy, admin_set_dlp_policy,
        journal_keys, journal_mismatch, compliance_journal,
        super::ws::upgrade,
        super::retention::admin_retention, super::retention::admin_set_retention,
        super::retention::admin_run_retention, super::retention::admin_list_holds,
        super::retention::admin_add_hold, super::retention::admin_release_hold,
        super::retention::admin_request_erasure, super::retention::deletion_orders,
        super::retention::ack_deletion_order, super::breakglass::open_break_glass,
        super::breakglass::list_break_glass,
        super::workflow::list_roles, super::workflow::create_role, super::workflow::assign_role,
        super::workflow::unassign_role, super::workflow::set_on_call,
        super::workflow::role_holders, super::workflow::import_schedule,
        super::workflow::set_escalation,
        super::clinical::add_patient_tag, super::clinical::patient_index,
        super::clinical::list_templates, super::clinical::get_template,
        super::clinical::create_template, super::clinical::delete_template,
        super::clinical::set_dnd, super::clinical::clear_dnd,
        super::escalation::ack_message, super::escalation::message_delivery,
        super::blobs::create_blob, super::blobs::put_blob_part, super::blobs::blob_upload,
        super::blobs::complete_blob, super::blobs::download_blob, super::blobs::delete_blob
    ),
    components(schemas(ErrorBody)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub(super) fn parse_id<T: std::str::FromStr>(s: &str, what: &str) -> ApiResult<T> {
    s.parse()
        .map_err(|_| ApiError::invalid(format!("{what} is not a valid id")))
}

fn parse_username(s: &str) -> ApiResult<Username> {
    Username::parse(s).map_err(|e| ApiError::invalid(e.to_string()))
}

/// Liveness and database health.
#[utoipa::path(get, path = "/v1/health", responses((status = 200, body = HealthResponse), (status = 503, body = ErrorBody)))]
pub async fn health(State(s): State<Arc<Services>>) -> ApiResult<Json<HealthResponse>> {
    s.store
        .ping()
        .await
        .map_err(|_| ApiError::new(ErrorCode::Unavailable, "database is not answering"))?;
    Ok(Json(HealthResponse {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    }))
}

/// Prometheus metrics: for loopback clients and admin sessions, or anyone when
/// `metrics_public` is set (metric names and counts only; no ids, no content).
pub async fn metrics(
    State(s): State<Arc<Services>>,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    session: Option<AuthSession>,
) -> ApiResult<impl IntoResponse> {
    let loopback = peer.is_some_and(|p| p.0.0.ip().is_loopback());
    let admin = session.is_some_and(|s| s.user.role == Role::Admin);
    if !(s.metrics_public() || loopback || admin) {
        return Err(ApiError::forbidden(
            "metrics are served to loopback clients and admin sessions; set metrics_public to expose them",
        ));
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(),
    ))
}

/// This description.
pub async fn openapi() -> impl IntoResponse {
    Json(ApiDoc::openapi())
}

/// What clients need to trust the organisation.
#[utoipa::path(get, path = "/v1/server", responses((status = 200, body = ServerInfo)))]
pub async fn server_info(State(s): State<Arc<Services>>) -> Json<ServerInfo> {
    let policy = s.policy();
    Json(ServerInfo {
        organisation: s.organisation_name(),
        org_ca_public_key: s.keys.org_ca.verifying_key().to_bytes().to_vec().into(),
        external_sender_public_key: s
            .keys
            .external_sender
            .verifying_key()
            .to_bytes()
            .to_vec()
            .into(),
        external_sender_identity: crate::service::EXTERNAL_SENDER_IDENTITY.into(),
        ciphersuites: policy.ciphersuites,
        mfa_required: policy.mfa_required,
        password_min_length: ward_proto::min_password_chars(
            policy.password_min_length,
            policy.mfa_required,
        ),
    })
}

/// Use an enrollment code: set password and TOTP, register the first device.
#[utoipa::path(post, path = "/v1/enroll", request_body = EnrollRequest,
    responses((status = 200, body = EnrollResponse), (status = 400, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn enroll(
    State(s): State<Arc<Services>>,
    AppJson(req): AppJson<EnrollRequest>,
) -> ApiResult<Json<EnrollResponse>> {
    Ok(Json(s.enroll(req).await?))
}

/// Log in on an existing or a new device.
#[utoipa::path(post, path = "/v1/login", request_body = LoginRequest,
    responses((status = 200, body = LoginResponse), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn login(
    State(s): State<Arc<Services>>,
    AppJson(req): AppJson<LoginRequest>,
) -> ApiResult<Json<LoginResponse>> {
    Ok(Json(s.login(req).await?))
}

/// End this session.
#[utoipa::path(post, path = "/v1/logout", security(("bearer" = [])), responses((status = 204)))]
pub async fn logout(State(s): State<Arc<Services>>, session: AuthSession) -> ApiResult<StatusCode> {
    s.logout(&session).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Change the caller's password; ends the account's other sessions.
#[utoipa::path(post, path = "/v1/me/password", security(("bearer" = [])), request_body = ChangePasswordRequest, responses((status = 200, body = ChangePasswordResponse), (status = 400), (status = 403)))]
pub async fn change_password(
    State(s): State<Arc<Services>>,
    session: AuthSession,
    AppJson(req): AppJson<ChangePasswordRequest>,
) -> ApiResult<Json<ChangePasswordResponse>> {
    Ok(Json(s.change_password(&session, req).await?))
}

/// The caller.
#[utoipa::path(get, path = "/v1/me", security(("bearer" = [])), responses((status = 200, body = MeResponse)))]
pub async fn me(session: AuthSession) -> Json<MeResponse> {
    Json(MeResponse {
        user: crate::service::user_info(&session.user),
        device_id: session.device_id,
    })
}

/// The caller's devices.
#[utoipa::path(get, path = "/v1/devices", security(("bearer" = [])), responses((status = 200, body = DeviceList)))]
pub async fn my_devices(
    State(s): State<Arc<Services>>,
    session: AuthSession,
) -> ApiResult<Json<DeviceList>> {
    Ok(Json(DeviceList {
        devices: s
            .list_devices(&session.actor(), DeviceScope::Own, None)
            .await?,
    }))
}

/// Revoke one of the caller's own devices (a lost phone).
#[utoipa::path(post, path = "/v1/devices/{device_id}/revoke", security(("bearer" = [])),
    params(("device_id" = String, Path)), responses((status = 200, body = DeviceInfo), (status = 404, body = ErrorBody)))]
pub async fn revoke_my_device(
    State(s): State<Arc<Services>>,
    session: AuthSession,
    AppPath(id): AppPath<String>,
) -> ApiResult<Json<DeviceInfo>> {
    let id = parse_id(&id, "device_id")?;
    Ok(Json(
        s.revoke_device(&session.actor(), DeviceScope::Own, id)
            .await?,
    ))
}

/// The device's KeyPackage stock.
#[utoipa::path(get, path = "/v1/devices/me/key-packages", security(("bearer" = [])), responses((status = 200, body = KeyPackageStock)))]
pub async fn key_package_stock(
    State(s): State<Arc<Services>>,
    session: AuthSession,
) -> ApiResult<Json<KeyPackageStock>> {
    Ok(Json(s.key_package_stock(session.device_id).await?))
}

/// Upload KeyPackages.
#[utoipa::path(post, path = "/v1/devices/me/key-packages", security(("bearer" = [])), request_body = UploadKeyPackagesRequest,
    responses((status = 200, body = KeyPackageStock), (status = 400, body = ErrorBody)))]
pub async fn upload_key_packages(
    State(s): State<Arc<Services>>,
    session: AuthSession,
    AppJson(req): AppJson<UploadKeyPackagesRequest>,
) -> ApiResult<Json<KeyPackageStock>> {
    Ok(Json(s.upload_key_packages(&session, req).await?))
}

/// Revoked devices.
#[utoipa::path(get, path = "/v1/revocations", security(("bearer" = [])), responses((status = 200, body = RevocationList)))]
pub async fn revocations(
    State(s): State<Arc<Services>>,
    _session: AuthSession,
) -> ApiResult<Json<RevocationList>> {
    Ok(Json(RevocationList {
        revoked_devices: s.revocations().await?,
    }))
}

/// Directory entry of a user (staff only).
#[utoipa::path(get, path = "/v1/users/{username}", security(("bearer" = [])), params(("username" = String, Path)),
    responses((status = 200, body = DirectoryEntry), (status = 404, body = ErrorBody)))]
pub async fn directory(
    State(s): State<Arc<Services>>,
    session: AuthSession,
    AppPath(u): AppPath<String>,
) -> ApiResult<Json<DirectoryEntry>> {
    Ok(Json(
        s.directory_entry(&session, &parse_username(&u)?).await?,
    ))
}

/// Claim one KeyPackage per device of a user.
#[utoipa::path(post, path = "/v1/users/{username}/key-packages/claim", security(("bearer" = [])), params(("username" = String, Path)),
    request_body = ClaimKeyPackagesRequest,
    responses((status = 200, body = ClaimKeyPackagesResponse), (status = 409, body = ErrorBody)))]
pub async fn claim_key_packages(
    State(s): State<Arc<Services>>,
    session: AuthSession,
    AppPath(u): AppPath<String>,
    AppJson(req): AppJson<ClaimKeyPackagesRequest>,
) -> ApiResult<Json<ClaimKeyPackagesResponse>> {
    Ok(Json(
        s.claim_key_packages(&session, &parse_username(&u)?, &req.devices)
            .await?,
    ))
}

/// Conversations of this device.
#[utoipa::path(get, path = "/v1/conversations", security(("bearer" = [])), responses((status = 200, body = ConversationList)))]
pub async fn list_conversations(
    State(s): State<Arc<Services>>,
    session: AuthSession,
) -> ApiResult<Json<ConversationList>> {
    Ok(Json(ConversationList {
        conversations: s.list_conversations(&session).await?,
    }))
}

/// Register a new conversation (the caller's device made the MLS group).
#[utoipa::path(post, path = "/v1/conversations", security(("bearer" = [])), request_body = CreateConversationRequest,
    responses((status = 201, body = ConversationInfo), (status = 409, body = ErrorBody)))]
pub async fn create_conversation(
    State(s): State<Arc<Services>>,
    session: AuthSession,
    AppJson(req): AppJson<CreateConversationRequest>,
) -> ApiResult<(StatusCode, Json<ConversationInfo>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.create_conversation(&session, req).await?),
    ))
}

/// One conversation.
#[utoipa::path(get, path = "/v1/conversations/{conversation_id}", security(("bearer" = [])), params(("conversation_id" = String, Path)),
    responses((status = 200, body = ConversationInfo), (status = 404, body = ErrorBody)))]
pub async fn get_conversation(
    State(s): State<Arc<Services>>,
    session: AuthSession,
    AppPath(id): AppPath<String>,
) -> ApiResult<Json<ConversationInfo>> {
    Ok(Json(
        s.get_conversation(&session, parse_id(&id, "conversation_id")?)
            .await?,
    ))
}

/// Send an MLS message. Answered only once it is durable.
#[utoipa::path(post, path = "/v1/conversations/{conversation_id}/envelopes", security(("bearer" = [])), params(("conversation_id" = String, Path)),
    request_body = SendEnvelopeRequest,
    responses((status = 200, body = SendEnvelopeResponse), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn send_envelope(
    State(s): State<Arc<Services>>,
    session: AuthSession,
    AppPath(id): AppPath<String>,
    AppJson(req): AppJson<SendEnvelopeRequest>,
) -> ApiResult<Json<SendEnvelopeResponse>> {
    Ok(Json(
        s.send_envelope(&session, parse_id(&id, "conversation_id")?, req)
            .await?,
    ))
}

/// Delivery and read state of one message per recipient device.
#[utoipa::path(get, path = "/v1/conversations/{conversation_id}/messages/{seq}/status", security(("bearer" = [])),
    params(("conversation_id" = String, Path), ("seq" = u64, Path)),
    responses((status = 200, body = MessageStatus), (status = 404, body = ErrorBody)))]
pub async fn message_status(
    State(s): State<Arc<Services>>,
    session: AuthSession,
    AppPath((id, seq)): AppPath<(String, u64)>,
) -> ApiResult<Json<MessageStatus>> {
    Ok(Json(
        s.message_status(&session, parse_id(&id, "conversation_id")?, seq)
            .await?,
    ))
}

/// The append-only log of accepted commits.
#[utoipa::path(get, path = "/v1/conversations/{conversation_id}/commits", security(("bearer" = [])), params(("conversation_id" = String, Path)),
    responses((status = 200, body = [CommitLogEntry])))]
pub async fn commit_log(
    State(s): State<Arc<Services>>,
    session: AuthSession,
    AppPath(id): AppPath<String>,
) -> ApiResult<Json<Vec<CommitLogEntry>>> {
    Ok(Json(
        s.commit_log(&session, parse_id(&id, "conversation_id")?)
            .await?,
    ))
}

/// Query of `GET /v1/sync`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SyncQuery {
    /// Most items to return (1 to 2000, default 500).
    pub limit: Option<usize>,
}

/// Everything not yet acknowledged by this device.
#[utoipa::path(get, path = "/v1/sync", security(("bearer" = [])), params(SyncQuery), responses((status = 200, body = SyncResponse)))]
pub async fn sync(
    State(s): State<Arc<Services>>,
    session: AuthSession,
    AppQuery(q): AppQuery<SyncQuery>,
) -> ApiResult<Json<SyncResponse>> {
    Ok(Json(s.sync(&session, q.limit).await?))
}

/// Acknowledge receipt (the delivery receipt).
#[utoipa::path(post, path = "/v1/sync/ack", security(("bearer" = [])), request_body = AckRequest, responses((status = 204)))]
pub async fn ack(
    State(s): State<Arc<Services>>,
    session: AuthSession,
    AppJson(req): AppJson<AckRequest>,
) -> ApiResult<StatusCode> {
    s.ack(&session, req).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Report messages as read.
#[utoipa::path(post, path = "/v1/receipts/read", security(("bearer" = [])), request_body = ReadReceiptRequest, responses((status = 204)))]
pub async fn read_receipts(
    State(s): State<Arc<Services>>,
    session: AuthSession,
    AppJson(req): AppJson<ReadReceiptRequest>,
) -> ApiResult<StatusCode> {
    s.read(&session, req).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// All users (admin, compliance).
#[utoipa::path(get, path = "/v1/admin/users", security(("bearer" = [])), responses((status = 200, body = UserList), (status = 403, body = ErrorBody)))]
pub async fn admin_list_users(
    State(s): State<Arc<Services>>,
    session: AuthSession,
) -> ApiResult<Json<UserList>> {
    Ok(Json(UserList {
        users: s.list_users(&session.actor()).await?,
    }))
}

/// Create a user and an enrollment code (admin).
#[utoipa::path(post, path = "/v1/admin/users", security(("bearer" = [])), request_body = CreateUserRequest,
    responses((status = 201, body = EnrollmentCodeResponse), (status = 409, body = ErrorBody)))]
pub async fn admin_create_user(
    State(s): State<Arc<Services>>,
    session: AuthSession,
    AppJson(req): AppJson<CreateUserRequest>,
) -> ApiResult<(StatusCode, Json<EnrollmentCodeResponse>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.create_user(&session.actor(), req).await?),
    ))
}

/// Suspend a user; every session ends at once (admin).
#[utoipa::path(post, path = "/v1/admin/users/{username}/suspend", security(("bearer" = [])), params(("username" = String, Path)),
    responses((status = 200, body = UserInfo)))]
pub async fn admin_suspend_user(
    State(s): State<Arc<Services>>,
    session: AuthSession,
    AppPath(u): AppPath<String>,
) -> ApiResult<Json<UserInfo>> {
    Ok(Json(
        s.suspend_user(&session.actor(), &parse_username(&u)?)
            .await?,
    ))
}

/// Lift a suspension (admin).
#[utoipa::path(post, path = "/v1/admin/users/{username}/reactivate", security(("bearer" = [])), params(("username" = String, Path)),
    responses((status = 200, body = UserInfo)))]
pub async fn admin_reactivate_user(
    State(s): State<Arc<Services>>,
    session: AuthSession,
    AppPath(u): AppPath<String>,
) -> ApiResult<Json<UserInfo>> {
    Ok(Json(
        s.reactivate_user(&session.actor(), &parse_username(&u)?)
            .await?,
    ))
}

/// Issue a new enrollment code for a pending user (admin).
#[utoipa::path(post, path = "/v1/admin/users/{username}/enrollment-code", security(("bearer" = [])), params(("username" = String, Path)),
    responses((status = 200, body = EnrollmentCodeResponse)))]
pub async fn admin_reissue_code(
    State(s): State<Arc<Services>>,
    session: AuthSession,
    AppPath(u): AppPath<String>,
) -> ApiResult<Json<EnrollmentCodeResponse>> {
    Ok(Json(
        s.reissue_enrollment_code(&session.actor(), &parse_username(&u)?)
            .await?,
    ))
}

/// Query of the admin device list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeviceQuery {
    /// Only this user's devices.
    pub user: Option<String>,
}

/// The device inventory (admin).
#[utoipa::path(get, path = "/v1/admin/devices", security(("bearer" = [])), params(DeviceQuery), responses((status = 200, body = DeviceList)))]
pub async fn admin_list_devices(
    State(s): State<Arc<Services>>,
    session: AuthSession,
    AppQuery(q): AppQuery<DeviceQuery>,
) -> ApiResult<Json<DeviceList>> {
    crate::service::require_role(&session.actor(), &[Role::Admin])?;
    let user = q.user.as_deref().map(parse_username).transpose()?;
    Ok(Json(DeviceList {
        devices: s
            .list_devices(&session.actor(), DeviceScope::Any, user.as_ref())
            .await?,
    }))
}

/// Revoke any device (admin).
#[utoipa::path(post, path = "/v1/admin/devices/{device_id}/revoke", security(("bearer" = [])), params(("device_id" = String, Path)),
    responses((status = 200, body = DeviceInfo)))]
pub async fn admin_revoke_device(
    State(s): State<Arc<Services>>,
    session: AuthSession,
    AppPath(id): AppPath<String>,
) -> ApiResult<Json<DeviceInfo>> {
    crate::service::require_role(&session.actor(), &[Role::Admin])?;
    Ok(Json(
        s.revoke_device(
            &session.actor(),
            DeviceScope::Any,
            parse_id(&id, "device_id")?,
        )
        .await?,
    ))
}

/// Order the remote wipe of a device (admin): revokes it now; the device erases its profile
/// on its next contact.
#[utoipa::path(post, path = "/v1/admin/devices/{device_id}/wipe", security(("bearer" = [])), params(("device_id" = String, Path)),
    responses((status = 200, body = WipeOrderInfo), (status = 409, body = ErrorBody)))]
pub async fn admin_wipe_device(
    State(s): State<Arc<Services>>,
    session: AuthSession,
    AppPath(id): AppPath<String>,
) -> ApiResult<Json<WipeOrderInfo>> {
    crate::service::require_role(&session.actor(), &[Role::Admin])?;
    Ok(Json(
        s.wipe_device(&session.actor(), parse_id(&id, "device_id")?)
            .await?,
    ))
}

/// State of a device's wipe order (admin): ordered, delivered, confirmed.
#[utoipa::path(get, path = "/v1/admin/devices/{device_id}/wipe", security(("bearer" = [])), params(("device_id" = String, Path)),
    responses((status = 200, body = WipeOrderInfo), (status = 404, body = ErrorBody)))]
pub async fn admin_wipe_status(
    State(s): State<Arc<Services>>,
    session: AuthSession,
    AppPath(id): AppPath<String>,
) -> ApiResult<Json<WipeOrderInfo>> {
    crate::service::require_role(&session.actor(), &[Role::Admin])?;
    Ok(Json(
        s.wipe_status(&session.actor(), parse_id(&id, "device_id")?)
            .await?,
    ))
}

/// A wiped device confirms it erased its profile (no session; the signature with the device's
/// MLS key is the proof).
#[utoipa::path(post, path = "/v1/devices/{device_id}/wipe-confirmation", params(("device_id" = String, Path)),
    request_body = WipeConfirmation,
    responses((status = 204), (status = 403, body = ErrorBody)))]
pub async fn confirm_wipe(
    State(s): State<Arc<Services>>,
    AppPath(id): AppPath<String>,
    AppJson(req): AppJson<WipeConfirmation>,
) -> ApiResult<StatusCode> {
    s.confirm_wipe(parse_id(&id, "device_id")?, &req).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Query of the audit listing.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Records after this seq (default 0).
    pub after: Option<u64>,
    /// Page size (1 to 1000, default 100).
    pub limit: Option<usize>,
}

/// Read the audit log (admin, compliance).
#[utoipa::path(get, path = "/v1/admin/audit", security(("bearer" = [])), params(AuditQuery), responses((status = 200, body = AuditPage)))]
pub async fn admin_audit(
    State(s): State<Arc<Services>>,
    session: AuthSession,
    AppQuery(q): AppQuery<AuditQuery>,
) -> ApiResult<Json<AuditPage>> {
    Ok(Json(
        s.audit
            .page(
                &session.actor(),
                q.after.unwrap_or(0),
                q.limit.unwrap_or(100),
            )
            .await?,
    ))
}

/// Verify the audit chain and its signed checkpoints (admin, compliance).
#[utoipa::path(get, path = "/v1/admin/audit/verify", security(("bearer" = [])), responses((status = 200, body = AuditVerifyReport)))]
pub async fn admin_audit_verify(
    State(s): State<Arc<Services>>,
    session: AuthSession,
) -> ApiResult<Json<AuditVerifyReport>> {
    Ok(Json(s.audit.verify(&session.actor()).await?))
}

/// The organisation policy (admin, compliance).
#[utoipa::path(get, path = "/v1/admin/policy", security(("bearer" = [])), responses((status = 200, body = PolicyInfo), (status = 403, body = ErrorBody)))]
pub async fn admin_policy(
    State(s): State<Arc<Services>>,
    session: AuthSession,
) -> ApiResult<Json<PolicyInfo>> {
    Ok(Json(s.policy_info(&session.actor())?))
}

/// Change the organisation policy (admin); every change is audited.
#[utoipa::path(put, path = "/v1/admin/policy", security(("bearer" = [])), request_body = UpdatePolicyRequest,
    responses((status = 200, body = PolicyInfo), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn admin_update_policy(
    State(s): State<Arc<Services>>,
    session: AuthSession,
    AppJson(req): AppJson<UpdatePolicyRequest>,
) -> ApiResult<Json<PolicyInfo>> {
    Ok(Json(s.update_policy(&session.actor(), req).await?))
}

/// The organisation's attachment policy: size limit and refused types, which sending clients
/// apply before encrypting (any session).
#[utoipa::path(get, path = "/v1/attachment-policy", security(("bearer" = [])),
    responses((status = 200, body = ward_proto::AttachmentPolicyInfo)))]
pub async fn attachment_policy(
    State(s): State<Arc<Services>>,
    _session: AuthSession,
) -> Json<ward_proto::AttachmentPolicyInfo> {
    Json(s.attachment_policy())
}

/// The organisation's DLP document, signed by the organisation CA (any session).
#[utoipa::path(get, path = "/v1/dlp-policy", security(("bearer" = [])), responses((status = 200, body = SignedDlpPolicy)))]
pub async fn dlp_policy(
    State(s): State<Arc<Services>>,
    _session: AuthSession,
) -> Json<SignedDlpPolicy> {
    Json(s.signed_dlp_policy())
}

/// Replace the DLP document `{"config": …, "policy": …}` (admin).
#[utoipa::path(put, path = "/v1/admin/dlp-policy", security(("bearer" = [])), request_body = Object,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn admin_set_dlp_policy(
    State(s): State<Arc<Services>>,
    session: AuthSession,
    AppJson(doc): AppJson<serde_json::Value>,
) -> ApiResult<StatusCode> {
    s.set_dlp_policy(&session.actor(), doc).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The organisation's journal public keys, oldest first, each signed by the organisation CA
/// (any session). Senders seal each application message's journal copy to the newest.
#[utoipa::path(get, path = "/v1/journal-keys", security(("bearer" = [])), responses((status = 200, body = ward_proto::JournalKeyList)))]
pub async fn journal_keys(
    State(s): State<Arc<Services>>,
    _session: AuthSession,
) -> ApiResult<Json<ward_proto::JournalKeyList>> {
    Ok(Json(s.signed_journal_keys().await?))
}

/// Report a message refused because its journal copy does not match (member of the
/// conversation); recorded in the audit log as `journal.mismatch`.
#[utoipa::path(post, path = "/v1/journal/mismatch", security(("bearer" = [])), request_body = ward_proto::JournalMismatchReport,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn journal_mismatch(
    State(s): State<Arc<Services>>,
    session: AuthSession,
    AppJson(report): AppJson<ward_proto::JournalMismatchReport>,
) -> ApiResult<StatusCode> {
    s.report_journal_mismatch(&session, report).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Query of the journal archive.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct JournalArchiveQuery {
    /// Entries after this archive seq (default 0).
    pub after: Option<u64>,
    /// Page size (1 to 1000, default 500).
    pub limit: Option<usize>,
    /// Only this conversation.
    pub conversation: Option<String>,
    /// Only messages sent by this username.
    pub user: Option<String>,
    /// Only messages accepted at or after this Unix time (seconds).
    pub since: Option<i64>,
    /// Only messages accepted before this Unix time (seconds).
    pub until: Option<i64>,
}

/// A page of the compliance journal archive (ciphertext, decrypted offline); `compliance`
/// only, audited `journal.archive_read`.
#[utoipa::path(get, path = "/v1/compliance/journal", security(("bearer" = [])), params(JournalArchiveQuery),
    responses((status = 200, body = ward_proto::JournalArchivePage), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn compliance_journal(
    State(s): State<Arc<Services>>,
    session: AuthSession,
    AppQuery(q): AppQuery<JournalArchiveQuery>,
) -> ApiResult<Json<ward_proto::JournalArchivePage>> {
    let conversation = q
        .conversation
        .as_deref()
        .map(|c| parse_id(c, "conversation"))
        .transpose()?;
    Ok(Json(
        s.journal_archive(
            &session.actor(),
            q.after.unwrap_or(0),
            q.limit.unwrap_or(500),
            conversation,
            q.user.as_deref(),
            q.since,
            q.until,
        )
        .await?,
    ))
}
