//! API errors: an HTTP status, a stable snake_case `code`, a human message, and
//! optional details (e.g. the provider-style `reason` for a refused send).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use sms_core::relay::Refusal;
use sms_core::send::SendRefusal;

use crate::store::StoreError;

/// An error answered to an API caller.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable snake_case code.
    pub code: &'static str,
    /// Human-readable explanation.
    pub message: String,
    /// Extra fields merged into the JSON body.
    pub details: Value,
}

impl ApiError {
    /// An error with no details.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: Value::Null,
        }
    }

    /// Adds details to the JSON body.
    pub fn with(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    /// 401: no or bad credentials.
    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", "sign in first")
    }

    /// 500: something broke on our side (logged).
    pub fn internal(what: impl std::fmt::Display) -> Self {
        tracing::error!(error = %what, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }

    /// 410: the events after the asked position were pruned; the client starts
    /// from a snapshot (X10). `pruned_through`: the last event deleted.
    pub fn snapshot_required(pruned_through: i64) -> Self {
        Self::new(
            StatusCode::GONE,
            "snapshot_required",
            "events after that position were pruned: start from a snapshot",
        )
        .with(json!({ "pruned_through": pruned_through }))
    }

    /// 400: a malformed request.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
}

impl From<Refusal> for ApiError {
    /// The HTTP status of each refusal the core decides; sends also carry the
    /// provider-style `reason` and `error_code` the same send would get (B5).
    fn from(r: Refusal) -> Self {
        let status = match &r {
            Refusal::NotVisible | Refusal::Send(SendRefusal::NotYourNumber) => {
                StatusCode::FORBIDDEN
            }
            Refusal::NoSuchConversation => StatusCode::CONFLICT,
            Refusal::NoSuchRecord | Refusal::Send(SendRefusal::NoSuchRecord) => {
                StatusCode::NOT_FOUND
            }
            Refusal::SameRecord
            | Refusal::InvalidNumber
            | Refusal::RecordWithoutOwner(_)
            | Refusal::Send(SendRefusal::InvalidClientRef | SendRefusal::NoRecord) => {
                StatusCode::BAD_REQUEST
            }
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        let error = Self::new(status, r.code(), r.to_string());
        match &r {
            Refusal::Send(s) => match s.provider_error() {
                Some(code) => {
                    let reason = sms_core::failure::explain(Some(code), "", None).reason;
                    error.with(json!({ "reason": reason, "error_code": code }))
                }
                None => error,
            },
            _ => error,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Pruned { through, .. } => Self::snapshot_required(through),
            e => Self::internal(e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "code": self.code, "message": self.message });
        if let (Value::Object(extra), Some(map)) = (self.details, body.as_object_mut()) {
            map.extend(extra);
        }
        (self.status, Json(body)).into_response()
    }
}
