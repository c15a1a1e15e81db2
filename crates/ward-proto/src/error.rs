use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::WipeInstruction;

/// The one error shape of the API: `{ "error": { "code": "...", "message": "..." } }`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// Machine-readable code plus a human-readable message naming the problem.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code.
    pub code: ErrorCode,
    /// Human-readable explanation. Never contains internals for server errors.
    pub message: String,
    /// For `epoch_conflict`: the conversation's current epoch, so the client can catch up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_epoch: Option<u64>,
    /// For `device_wiped`: the signed instruction the device verifies before erasing itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wipe: Option<WipeInstruction>,
}

/// Stable error codes. Clients match on these, never on messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The request body or a parameter is malformed or out of range.
    InvalidRequest,
    /// The route exists but not with this HTTP method.
    MethodNotAllowed,
    /// The request body is not JSON or has the wrong content type.
    UnsupportedMediaType,
    /// The request body exceeds the size limit.
    PayloadTooLarge,
    /// No valid session token was presented, or it expired or was revoked.
    Unauthenticated,
    /// Username, password or second factor wrong (deliberately not saying which).
    InvalidCredentials,
    /// The account is locked after repeated failures; retry later.
    AccountLocked,
    /// The account is suspended by an administrator.
    AccountSuspended,
    /// Authenticated, but this role or device may not do this.
    Forbidden,
    /// The named resource does not exist (or is not visible to the caller).
    NotFound,
    /// The resource already exists.
    Conflict,
    /// A commit was sent for an epoch that is not the conversation's current one.
    EpochConflict,
    /// The enrollment code is wrong, used or expired.
    InvalidEnrollmentCode,
    /// No KeyPackage is available for a device.
    NoKeyPackage,
    /// Too many requests; slow down.
    RateLimited,
    /// The server failed; details are in its log, not here.
    Internal,
    /// The server is not ready (starting or shutting down).
    Unavailable,
    /// This device was wiped by an administrator: it may not log in or use its session again,
    /// and the error carries the signed instruction to erase its profile.
    DeviceWiped,
    /// HTTP 422: the request is well formed but what it names cannot be accepted (an upload
    /// completed before every byte arrived, a ciphertext whose hash does not match, a message
    /// naming a blob that is not a complete blob of its conversation).
    Unprocessable,
    /// HTTP 416: the `Range` of a blob download lies outside the blob.
    RangeNotSatisfiable,
}
