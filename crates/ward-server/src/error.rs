//! The one HTTP error type. Its conversion never puts internals into a response body:
//! server errors are logged here with a generic body, client errors name the problem.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ward_proto::{ErrorBody, ErrorCode, ErrorDetail, WipeInstruction};
use ward_store::{AppendError, StoreError};

/// An error answered to a client.
#[derive(Debug)]
pub struct ApiError {
    /// Code.
    pub code: ErrorCode,
    /// Message for the client (for `Internal`, a generic text).
    pub message: String,
    /// For epoch conflicts.
    pub current_epoch: Option<u64>,
    /// For `device_wiped`: the signed instruction.
    pub wipe: Option<Box<WipeInstruction>>,
}

/// Result of handlers and services.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// A client error.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            current_epoch: None,
            wipe: None,
        }
    }
    /// 400 with a message naming the problem.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }
    /// 404.
    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }
    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }
    /// 401.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthenticated, message)
    }
    /// 401 `device_wiped` with the signed instruction for the device.
    pub fn device_wiped(instruction: WipeInstruction) -> Self {
        Self {
            wipe: Some(Box::new(instruction)),
            ..Self::new(
                ErrorCode::DeviceWiped,
                "this device was wiped by an administrator; it must erase its data",
            )
        }
    }
    /// 500: logs `cause` (which must not hold PHI) and answers a generic message.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            ErrorCode::Internal,
            "internal server error; see the server log",
        )
    }

    /// HTTP status of the code.
    pub fn status(&self) -> StatusCode {
        match self.code {
            ErrorCode::InvalidRequest | ErrorCode::InvalidEnrollmentCode => StatusCode::BAD_REQUEST,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::Unauthenticated | ErrorCode::InvalidCredentials | ErrorCode::DeviceWiped => {
                StatusCode::UNAUTHORIZED
            }
            ErrorCode::AccountLocked | ErrorCode::AccountSuspended | ErrorCode::Forbidden => {
                StatusCode::FORBIDDEN
            }
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::Conflict | ErrorCode::EpochConflict | ErrorCode::NoKeyPackage => {
                StatusCode::CONFLICT
            }
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::RangeNotSatisfiable => StatusCode::RANGE_NOT_SATISFIABLE,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The JSON body.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message.clone(),
                current_epoch: self.current_epoch,
                wipe: self.wipe.as_deref().cloned(),
            },
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status(), Json(self.body())).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => ApiError::not_found(what),
            StoreError::Conflict(what) => {
                ApiError::new(ErrorCode::Conflict, format!("{what} already exists"))
            }
            other => {
                let chain = error_chain(&other);
                ApiError::internal(&chain)
            }
        }
    }
}

impl From<AppendError> for ApiError {
    fn from(e: AppendError) -> Self {
        match e {
            AppendError::NotFound => ApiError::not_found("conversation"),
            AppendError::NotMember => {
                ApiError::forbidden("this device is not a member of the conversation")
            }
            AppendError::EpochConflict { current_epoch } => ApiError {
                code: ErrorCode::EpochConflict,
                message: format!(
                    "the conversation is at epoch {current_epoch}; process the pending commits and retry"
                ),
                current_epoch: Some(current_epoch),
                wipe: None,
            },
            AppendError::InvalidWelcomeDevice(d) => ApiError::invalid(format!(
                "welcome names device {d}, which is not an active device of a member after this commit"
            )),
            AppendError::InvalidMember => {
                ApiError::invalid("add_users or remove_users names an unknown or inactive user")
            }
            AppendError::Store(s) => s.into(),
            other => ApiError::internal(&other),
        }
    }
}

/// An error and its sources on one line (for logs; store errors hold no PHI).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
