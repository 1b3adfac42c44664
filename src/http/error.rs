//! The one error type at the HTTP edge, and the error shape of README *HTTP surface*, errors:
//! `{"status":"error","error":{"code","message","fields"?,"requestId"}}` ([`ErrorOut`]).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::payload::Problem;
use crate::domain::ticket::TicketError;
use crate::intake::IntakeError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the body is not JSON (or not a JSON object).
    #[error("{0}")]
    InvalidJson(String),
    /// 400: the body breaks the rules; every problem listed.
    #[error("{}", summary(.0))]
    InvalidPayload(Vec<Problem>),
    /// 400: a command word the bridge does not support.
    #[error("{}", summary(.0))]
    UnsupportedEvent(Vec<Problem>),
    /// 400: a bad query parameter or header.
    #[error("{}", summary(.0))]
    InvalidParameter(Vec<Problem>),
    /// 401: no, unknown or revoked credential.
    #[error("a valid credential is required")]
    Unauthenticated,
    /// 403: a key of the wrong kind, or a body `owner` of another tenant.
    #[error("{0}")]
    Forbidden(String),
    /// 403: `BRIDGE_ADMIN_TOKEN` is not set.
    #[error("the admin API is disabled: set BRIDGE_ADMIN_TOKEN")]
    AdminDisabled,
    /// 404: no such ticket for this tenant.
    #[error("ticket not found")]
    TicketNotFound,
    /// 404: no such resource for this tenant.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// 409: the third party replied on a closed ticket.
    #[error("the ticket is closed")]
    TicketClosed,
    /// 409: the same idempotency key is being applied right now.
    #[error("a request with this idempotency key is still being applied; retry shortly")]
    InProgress,
    /// 409: the tenant exists already.
    #[error("a tenant with this owner exists already")]
    TenantExists,
    /// 409: the action does not fit the resource's state.
    #[error("{0}")]
    InvalidState(String),
    /// 409: the tenant has no 3Dolphins API credentials.
    #[error("the 3Dolphins API is not configured for this tenant (dolphins.apiBaseUrl, username, password)")]
    NotConfigured,
    /// 502: 3Dolphins is down and nothing is cached.
    #[error("3Dolphins is unavailable and nothing is cached: {0}")]
    UpstreamUnavailable(String),
    /// 405: the path exists, the method does not.
    #[error("this path does not answer {0}")]
    MethodNotAllowed(String),
    /// 408: the request took longer than `BRIDGE_REQUEST_TIMEOUT`.
    #[error("the request took longer than the server's limit of {0} s; nothing more was done after that")]
    RequestTimeout(u64),
    /// 413: the body is over `BRIDGE_MAX_BODY`.
    #[error("the body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// 415: not JSON.
    #[error("the body must be sent as Content-Type: application/json")]
    UnsupportedMediaType,
    /// 422: the idempotency key was used for another request.
    #[error("this idempotency key was already used for a different request")]
    KeyReused,
    /// 429: the credential's request budget is spent; retry after the given seconds.
    #[error("too many requests for this credential; retry in {0} s")]
    RateLimited(u64),
    /// 503: PostgreSQL is unreachable; nothing was stored.
    #[error("the database is unavailable; nothing was stored, retry")]
    Unavailable,
    /// 500: a bug. Logged with its cause; the client sees only a generic message.
    #[error("internal error")]
    Internal(String),
}

fn summary(problems: &[Problem]) -> String {
    let listed: Vec<String> = problems.iter().map(|p| format!("{} {}", p.field, p.problem)).collect();
    match problems.len() {
        1 => listed.join(""),
        n => format!("{n} problems: {}", listed.join("; ")),
    }
}

/// Every error reply.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorOut {
    #[schema(schema_with = error_literal)]
    pub status: &'static str,
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorDetail {
    #[schema(schema_with = error_codes)]
    pub code: &'static str,
    /// For people; it may change between versions (match on `code`).
    pub message: String,
    /// Every problem of a 400, by field or parameter name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<Vec<Problem>>,
    /// The request's `X-Request-Id`: quote it when asking about this error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

fn error_literal() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(["error"]))
        .build()
}

/// Every `error.code` the bridge answers.
pub const CODES: &[&str] = &[
    "invalid_json",
    "invalid_payload",
    "unsupported_event",
    "invalid_parameter",
    "unauthenticated",
    "forbidden",
    "admin_disabled",
    "ticket_not_found",
    "not_found",
    "ticket_closed",
    "in_progress",
    "tenant_exists",
    "invalid_state",
    "not_configured",
    "upstream_unavailable",
    "method_not_allowed",
    "request_timeout",
    "payload_too_large",
    "unsupported_media_type",
    "idempotency_key_reused",
    "rate_limited",
    "unavailable",
    "internal",
];

fn error_codes() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(CODES.iter().copied()))
        .build()
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidJson(_)
            | ApiError::InvalidPayload(_)
            | ApiError::UnsupportedEvent(_)
            | ApiError::InvalidParameter(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthenticated => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) | ApiError::AdminDisabled => StatusCode::FORBIDDEN,
            ApiError::TicketNotFound | ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::TicketClosed
            | ApiError::InProgress
            | ApiError::TenantExists
            | ApiError::InvalidState(_)
            | ApiError::NotConfigured => StatusCode::CONFLICT,
            ApiError::UpstreamUnavailable(_) => StatusCode::BAD_GATEWAY,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::KeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidJson(_) => "invalid_json",
            ApiError::InvalidPayload(_) => "invalid_payload",
            ApiError::UnsupportedEvent(_) => "unsupported_event",
            ApiError::InvalidParameter(_) => "invalid_parameter",
            ApiError::Unauthenticated => "unauthenticated",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::AdminDisabled => "admin_disabled",
            ApiError::TicketNotFound => "ticket_not_found",
            ApiError::NotFound(_) => "not_found",
            ApiError::TicketClosed => "ticket_closed",
            ApiError::InProgress => "in_progress",
            ApiError::TenantExists => "tenant_exists",
            ApiError::InvalidState(_) => "invalid_state",
            ApiError::NotConfigured => "not_configured",
            ApiError::UpstreamUnavailable(_) => "upstream_unavailable",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::RequestTimeout(_) => "request_timeout",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::KeyReused => "idempotency_key_reused",
            ApiError::RateLimited(_) => "rate_limited",
            ApiError::Unavailable => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    fn fields(&self) -> Option<&[Problem]> {
        match self {
            ApiError::InvalidPayload(p) | ApiError::UnsupportedEvent(p) | ApiError::InvalidParameter(p) => Some(p),
            _ => None,
        }
    }

    /// The problems a refusal of the request names (none for other errors), to collect
    /// several checks' problems into one 400.
    pub fn into_problems(self) -> Vec<Problem> {
        match self {
            ApiError::InvalidPayload(p) | ApiError::UnsupportedEvent(p) | ApiError::InvalidParameter(p) => p,
            _ => Vec::new(),
        }
    }

    pub fn parameter(field: &str, problem: impl Into<String>) -> Self {
        ApiError::InvalidParameter(vec![Problem::new(field, problem)])
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        if crate::store::is_unavailable(&err) {
            ApiError::Unavailable
        } else if crate::store::is_unstorable_text(&err) {
            // A NUL (or similar) in a path or query value: nothing stored can match it.
            ApiError::parameter("(input)", "contains characters PostgreSQL cannot hold (NUL)")
        } else {
            ApiError::Internal(format!("database: {err}"))
        }
    }
}

impl From<IntakeError> for ApiError {
    fn from(err: IntakeError) -> Self {
        match err {
            IntakeError::Ticket(TicketError::NotFound) => ApiError::TicketNotFound,
            IntakeError::Ticket(TicketError::Closed) => ApiError::TicketClosed,
            IntakeError::InProgress => ApiError::InProgress,
            IntakeError::KeyReused => ApiError::KeyReused,
            IntakeError::Database(e) => e.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            ApiError::Internal(cause) => tracing::error!(%cause, "request failed"),
            ApiError::Unavailable => tracing::warn!("database unavailable"),
            _ => tracing::debug!(code = self.code(), "request refused"),
        }
        let body = ErrorOut {
            status: "error",
            error: ErrorDetail {
                code: self.code(),
                message: self.to_string(),
                fields: self.fields().map(<[Problem]>::to_vec),
                request_id: super::edge::request_id(),
            },
        };
        let mut response = (status, Json(body)).into_response();
        if matches!(self, ApiError::Unavailable | ApiError::InProgress) {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let ApiError::RateLimited(seconds) = self {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_the_bridge_answers_is_in_the_documented_list() {
        let p = || vec![Problem::new("x", "y")];
        let all = [
            ApiError::InvalidJson(String::new()),
            ApiError::InvalidPayload(p()),
            ApiError::UnsupportedEvent(p()),
            ApiError::InvalidParameter(p()),
            ApiError::Unauthenticated,
            ApiError::Forbidden(String::new()),
            ApiError::AdminDisabled,
            ApiError::TicketNotFound,
            ApiError::NotFound("x"),
            ApiError::TicketClosed,
            ApiError::InProgress,
            ApiError::TenantExists,
            ApiError::InvalidState(String::new()),
            ApiError::NotConfigured,
            ApiError::UpstreamUnavailable(String::new()),
            ApiError::MethodNotAllowed(String::new()),
            ApiError::RequestTimeout(1),
            ApiError::PayloadTooLarge(1),
            ApiError::UnsupportedMediaType,
            ApiError::KeyReused,
            ApiError::RateLimited(1),
            ApiError::Unavailable,
            ApiError::Internal(String::new()),
        ];
        let codes: Vec<&str> = all.iter().map(ApiError::code).collect();
        assert_eq!(codes, CODES, "one code per variant, each documented, in the same order");
    }
}
