//! The native API's errors: a status and `{"error": {"code": "...", "message": "..."}}`.
//! Bad input is a 4xx naming what was wrong, never a 500.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("authentication required")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    TooManyRequests(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::Conflict(_) => "conflict",
            ApiError::Refused(_) => "refused",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::TooManyRequests(_) => "too_many_requests",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": { "code": self.code(), "message": self.to_string() } });
        let mut resp = (self.status(), Json(body)).into_response();
        if matches!(self, ApiError::Unauthorized) {
            resp.headers_mut()
                .insert("www-authenticate", axum::http::HeaderValue::from_static("Basic realm=\"baton\""));
        }
        resp
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl From<crate::discovery::DiscoveryError> for ApiError {
    fn from(e: crate::discovery::DiscoveryError) -> Self {
        use crate::discovery::DiscoveryError::*;
        match e {
            UnknownHint(_) | BadKey(_) => ApiError::NotFound(e.to_string()),
            SeedUnreachable { .. } => ApiError::Unavailable(e.to_string()),
            NotAllowed(_) => ApiError::Forbidden(e.to_string()),
            Store(_) => ApiError::Internal(e.to_string()),
        }
    }
}

/// Validates `host` and `port` path parts into a key; a 400 names the part that is wrong.
pub fn key_from_parts(host: &str, port: &str) -> Result<crate::topology::InstanceKey, ApiError> {
    crate::topology::InstanceKey::from_parts(host, port).map_err(|e| ApiError::BadRequest(e.to_string()))
}
