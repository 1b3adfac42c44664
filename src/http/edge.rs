//! The outermost layer of every route: the request's id, its access-log line, and the one
//! error shape for the refusals that lower layers write without a body.
//!
//! `X-Request-Id` is taken from the request when it is printable and at most 200
//! characters, else generated; it is echoed on the reply, recorded on every log line written
//! while the request runs (the `request` span) and in error bodies (`error.requestId`, read
//! from a task-local by [`request_id`]). Axum's method router (405), the timeout layer (408) and
//! extractor rejections answer with an empty or plain-text body; here they get the JSON error
//! shape like every other refusal. One `info` line per request names the method, the route
//! template, the status and the duration, never the path's values or the query string (the
//! inbound token can travel there).

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use super::error::ApiError;
use crate::domain::payload::Problem;

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The header, lower-case as HTTP/1 sends it.
pub const HEADER: &str = "x-request-id";

/// The longest id taken from a request.
const MAX_LEN: usize = 200;

/// The id of the request this task is answering, if any.
pub fn request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// What the layer needs to word the refusals it shapes.
#[derive(Debug, Clone, Copy)]
pub struct Edge {
    pub max_body: usize,
    pub request_timeout: Duration,
}

/// An id the client chose, if it is one we can log and echo safely.
fn given(request: &Request) -> Option<String> {
    let value = request.headers().get(HEADER)?.to_str().ok()?;
    let printable = !value.is_empty() && value.len() <= MAX_LEN && value.bytes().all(|b| (0x21..0x7f).contains(&b));
    printable.then(|| value.to_string())
}

pub async fn layer(State(edge): State<Edge>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = given(&request).unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().map_or("(no route)", |p| p.as_str()).to_string();
    let span = tracing::info_span!("request", %method, %route, request_id = %id);
    let response = REQUEST_ID.scope(id.clone(), next.run(request).instrument(span.clone())).await;
    let mut response = if needs_shape(&response) {
        REQUEST_ID.scope(id.clone(), shape(response, &method, edge)).await
    } else {
        response
    };
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, value);
    }
    let status = response.status().as_u16();
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    span.in_scope(|| tracing::info!(status, duration_ms = format!("{duration_ms:.1}"), "request"));
    response
}

/// A refusal written without the JSON error shape (no body, or plain text).
fn needs_shape(response: &Response) -> bool {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return false;
    }
    match response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) {
        None => true,
        Some(ct) => ct.starts_with("text/plain"),
    }
}

/// The same refusal in the error shape (the `Allow` of a 405 kept).
async fn shape(response: Response, method: &axum::http::Method, edge: Edge) -> Response {
    let status = response.status();
    let allow = response.headers().get(header::ALLOW).cloned();
    let text = axum::body::to_bytes(response.into_body(), 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let error = match status {
        StatusCode::NOT_FOUND => ApiError::NotFound("route"),
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed(method.to_string()),
        StatusCode::REQUEST_TIMEOUT => ApiError::RequestTimeout(edge.request_timeout.as_secs().max(1)),
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(edge.max_body),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType,
        s if s.is_client_error() => {
            let problem = if text.is_empty() { s.canonical_reason().unwrap_or("refused").to_string() } else { text };
            ApiError::InvalidParameter(vec![Problem::new("(request)", problem)])
        }
        _ => ApiError::Internal(if text.is_empty() { status.to_string() } else { text }),
    };
    let mut shaped = error.into_response();
    if let Some(allow) = allow {
        shaped.headers_mut().insert(header::ALLOW, allow);
    }
    shaped
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An empty body: what the shaped refusals replace.
    fn empty(status: StatusCode) -> Response {
        let mut response = Response::new(axum::body::Body::empty());
        *response.status_mut() = status;
        response
    }

    #[test]
    fn only_refusals_without_a_json_or_html_body_are_reshaped() {
        assert!(needs_shape(&empty(StatusCode::METHOD_NOT_ALLOWED)));
        assert!(!needs_shape(&empty(StatusCode::OK)));
        let mut html = ([(header::CONTENT_TYPE, "text/html")], "<p>x</p>").into_response();
        *html.status_mut() = StatusCode::NOT_FOUND;
        assert!(!needs_shape(&html), "the console's own error pages stay");
        assert!(!needs_shape(&ApiError::TicketNotFound.into_response()));
    }
}
