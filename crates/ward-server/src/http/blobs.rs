//! Blob routes (ADR 0017, contract in `ward_proto::blobs`): bodies stream through; nothing
//! holds a whole file.
#![allow(
    unused_qualifications,
    reason = "utoipa's path macro expands to qualified paths"
)]

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;
use ward_proto::{BlobUpload, CompleteBlobRequest, CreateBlobRequest, ErrorBody, ErrorCode};

use super::handlers::parse_id;
use super::{AppJson, AppPath, AppQuery};
use crate::error::{ApiError, ApiResult};
use crate::service::{AuthSession, Services};

/// Start an upload into a conversation (member devices).
#[utoipa::path(post, path = "/v1/conversations/{conversation_id}/blobs", security(("bearer" = [])),
    params(("conversation_id" = String, Path)), request_body = CreateBlobRequest,
    responses((status = 201, body = BlobUpload), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn create_blob(
    State(s): State<Arc<Services>>,
    session: AuthSession,
    AppPath(id): AppPath<String>,
    AppJson(req): AppJson<CreateBlobRequest>,
) -> ApiResult<(StatusCode, Json<BlobUpload>)> {
    let id = parse_id(&id, "conversation_id")?;
    Ok((
        StatusCode::CREATED,
        Json(s.create_blob(&session, id, req).await?),
    ))
}

/// Query of `PUT /v1/blobs/{blob}`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PartQuery {
    /// Where these bytes start; must equal the upload's `received`.
    pub offset: u64,
}

/// Send the next bytes of an upload (the uploading device).
#[utoipa::path(put, path = "/v1/blobs/{blob_id}", security(("bearer" = [])),
    params(("blob_id" = String, Path), PartQuery), request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 200, body = BlobUpload), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn put_blob_part(
    State(s): State<Arc<Services>>,
    session: AuthSession,
    AppPath(id): AppPath<String>,
    AppQuery(q): AppQuery<PartQuery>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<BlobUpload>> {
    let id = parse_id(&id, "blob_id")?;
    let declared = match headers.get(header::CONTENT_LENGTH) {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| ApiError::invalid("Content-Length is not a number"))?,
        ),
        None => None,
    };
    Ok(Json(
        s.put_blob_part(&session, id, q.offset, declared, body.into_data_stream())
            .await?,
    ))
}

/// Where an interrupted upload resumes (the uploading device).
#[utoipa::path(get, path = "/v1/blobs/{blob_id}/upload", security(("bearer" = [])),
    params(("blob_id" = String, Path)),
    responses((status = 200, body = BlobUpload), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn blob_upload(
    State(s): State<Arc<Services>>,
    session: AuthSession,
    AppPath(id): AppPath<String>,
) -> ApiResult<Json<BlobUpload>> {
    Ok(Json(
        s.blob_upload(&session, parse_id(&id, "blob_id")?).await?,
    ))
}

/// Finish an upload with the SHA-256 of its ciphertext (the uploading device).
#[utoipa::path(post, path = "/v1/blobs/{blob_id}/complete", security(("bearer" = [])),
    params(("blob_id" = String, Path)), request_body = CompleteBlobRequest,
    responses((status = 200, body = BlobUpload), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn complete_blob(
    State(s): State<Arc<Services>>,
    session: AuthSession,
    AppPath(id): AppPath<String>,
    AppJson(req): AppJson<CompleteBlobRequest>,
) -> ApiResult<Json<BlobUpload>> {
    Ok(Json(
        s.complete_blob(&session, parse_id(&id, "blob_id")?, req)
            .await?,
    ))
}

/// Download a complete blob, whole or one `Range` (member devices of its conversation).
#[utoipa::path(get, path = "/v1/blobs/{blob_id}", security(("bearer" = [])),
    params(("blob_id" = String, Path)),
    responses((status = 200, body = Vec<u8>, content_type = "application/octet-stream"),
        (status = 206, body = Vec<u8>, content_type = "application/octet-stream"),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 416, body = ErrorBody)))]
pub async fn download_blob(
    State(s): State<Arc<Services>>,
    session: AuthSession,
    AppPath(id): AppPath<String>,
    headers: HeaderMap,
) -> Response {
    let id = match parse_id(&id, "blob_id") {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let d = match s.download_blob(&session, id, range).await {
        Ok(d) => d,
        Err(e) if e.code == ErrorCode::RangeNotSatisfiable => {
            let total = s
                .store
                .blob(id)
                .await
                .ok()
                .flatten()
                .map(|b| b.size)
                .unwrap_or(0);
            let mut resp = e.into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{total}")) {
                resp.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return resp;
        }
        Err(e) => return e.into_response(),
    };
    let mut resp = Response::new(Body::from_stream(d.body));
    *resp.status_mut() = if d.partial {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(d.end - d.start));
    if d.partial
        && let Ok(v) =
            HeaderValue::from_str(&format!("bytes {}-{}/{}", d.start, d.end - 1, d.total))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    resp
}

/// Abandon an upload in progress (the uploading device).
#[utoipa::path(delete, path = "/v1/blobs/{blob_id}", security(("bearer" = [])),
    params(("blob_id" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_blob(
    State(s): State<Arc<Services>>,
    session: AuthSession,
    AppPath(id): AppPath<String>,
) -> ApiResult<StatusCode> {
    s.delete_upload(&session, parse_id(&id, "blob_id")?).await?;
    Ok(StatusCode::NO_CONTENT)
}
