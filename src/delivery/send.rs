//! One attempt: build the request for a claimed delivery, send it, and read enough of
//! the reply to classify it. Holds no database connection.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::retry::{parse_retry_after, Reply};
use crate::domain::tenant::{check_target_url, TenantSettings};
use crate::domain::{Peer, Target};
use crate::signature;
use crate::store::deliveries::Claimed;

/// How much of a reply is kept in the attempt log.
pub const RESPONSE_HEAD_BYTES: usize = 1024;
/// How much of a reply is read to find its JSON `status`; the rest is discarded.
const MAX_READ_BYTES: usize = 64 * 1024;

pub const USER_AGENT_VALUE: &str = concat!("dolphin-bridge/", env!("CARGO_PKG_VERSION"));

/// What one attempt produced.
#[derive(Debug)]
pub struct AttemptOutcome {
    pub reply: Reply,
    pub http_status: Option<u16>,
    pub error: Option<String>,
    pub response_head: Option<String>,
    pub duration: Duration,
    /// What was sent (`None` when nothing was).
    pub request: Option<SentRequest>,
}

/// The request of one attempt as the attempt log keeps it: the URL and every header sent,
/// names in lower case, with credentials masked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = AttemptRequest)]
pub struct SentRequest {
    pub url: String,
    /// Header name → value; `Authorization` and the tenant's own configured headers (often
    /// API keys) read `***`.
    pub headers: BTreeMap<String, String>,
}

/// What a masked header value reads in the attempt log.
pub const MASKED: &str = "***";

impl SentRequest {
    /// The record of `headers` sent to `url`; `secret` headers (the tenant's configured ones)
    /// and `Authorization` are masked.
    fn new(url: &str, headers: &HeaderMap, secret: &BTreeMap<String, String>) -> SentRequest {
        let masked =
            |name: &HeaderName| *name == AUTHORIZATION || secret.keys().any(|s| s.eq_ignore_ascii_case(name.as_str()));
        let headers = headers
            .iter()
            .map(|(name, value)| {
                let shown = if masked(name) {
                    MASKED.to_string()
                } else {
                    String::from_utf8_lossy(value.as_bytes()).into_owned()
                };
                (name.as_str().to_string(), shown)
            })
            .collect();
        SentRequest { url: url.to_string(), headers }
    }

    /// The record as the database stores it (JSON text).
    pub fn to_json(&self) -> Option<String> {
        serde_json::to_string(self).ok()
    }
}

impl AttemptOutcome {
    fn failed_before_sending(error: String) -> Self {
        // A delivery that cannot even be built will not get better by retrying.
        AttemptOutcome {
            reply: Reply::Http { status: 400, json_status: None, retry_after: None },
            http_status: None,
            error: Some(error),
            response_head: None,
            duration: Duration::ZERO,
            request: None,
        }
    }

    /// Not sent for a reason that may pass (the 3Dolphins token could not be had).
    pub fn not_sent_yet(error: String) -> Self {
        AttemptOutcome {
            reply: Reply::Connection,
            http_status: None,
            error: Some(error),
            response_head: None,
            duration: Duration::ZERO,
            request: None,
        }
    }
}

/// Sends `claim` to its target once.
pub async fn attempt(
    client: &reqwest::Client,
    claim: &Claimed,
    target: Target,
    settings: &TenantSettings,
    timeout: Duration,
    now_unix: i64,
    bearer: Option<&str>,
) -> AttemptOutcome {
    let Some(url) = settings.url_for(target) else {
        return AttemptOutcome::failed_before_sending(format!("{target} is no longer configured for this tenant"));
    };
    if let Err(problem) = check_target_url(url) {
        return AttemptOutcome::failed_before_sending(format!("target URL refused: {problem}"));
    }
    let headers = match build_headers(claim, target, settings, now_unix, bearer) {
        Ok(h) => h,
        Err(e) => return AttemptOutcome::failed_before_sending(e),
    };
    let request = Some(SentRequest::new(url, &headers, settings.headers_for(target.peer())));
    let started = Instant::now();
    let sent = client.post(url).headers(headers).body(claim.body.clone()).timeout(timeout).send().await;
    let response = match sent {
        Ok(r) => r,
        Err(e) => {
            let reply = if e.is_timeout() { Reply::Timeout } else { Reply::Connection };
            return AttemptOutcome {
                reply,
                http_status: None,
                error: Some(describe(&e)),
                response_head: None,
                duration: started.elapsed(),
                request,
            };
        }
    };
    let status = response.status().as_u16();
    let retry_after = response.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(parse_retry_after);
    let (body, read_error) = read_capped(response).await;
    let duration = started.elapsed();
    let json_status = serde_json::from_slice::<Value>(&body).ok().and_then(|v| match v.get("status") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
        None => None,
    });
    let head = String::from_utf8_lossy(&body[..body.len().min(RESPONSE_HEAD_BYTES)]).replace('\0', "");
    let error = read_error.or_else(|| match (status, &json_status) {
        (200..=299, Some(s)) if !s.eq_ignore_ascii_case("success") => {
            Some(format!("reply status {s:?} is not success"))
        }
        (200..=299, _) => None,
        _ => Some(format!("HTTP {status}")),
    });
    AttemptOutcome {
        reply: Reply::Http { status, json_status, retry_after },
        http_status: Some(status),
        error,
        response_head: (!head.is_empty()).then_some(head),
        duration,
        request,
    }
}

fn build_headers(
    claim: &Claimed,
    target: Target,
    settings: &TenantSettings,
    now_unix: i64,
    bearer: Option<&str>,
) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    for (name, value) in settings.headers_for(target.peer()) {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| format!("tenant header {name}: {e}"))?;
        let value = HeaderValue::from_str(value).map_err(|e| format!("tenant header {name}: {e}"))?;
        headers.insert(name, value);
    }
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
    headers.insert("x-ticket-sequence", HeaderValue::from(claim.sequence));
    if let Some(token) = bearer {
        let value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| "the 3Dolphins token is not a valid header")?;
        headers.insert(AUTHORIZATION, value);
    }
    // The third party and the alerts receiver verify Standard Webhooks signatures.
    if target.peer() != Peer::Dolphins {
        let id = claim.id.to_string();
        // During a rotation both secrets sign; receivers accept either entry.
        let mut signature = signature::sign(&claim.signing_secret, &id, now_unix, claim.body.as_bytes())
            .map_err(|e| format!("cannot sign: {e}"))?;
        if let Some(previous) = &claim.previous_signing_secret {
            let old = signature::sign(previous, &id, now_unix, claim.body.as_bytes())
                .map_err(|e| format!("cannot sign with the previous secret: {e}"))?;
            signature = format!("{signature} {old}");
        }
        let value = |s: &str| HeaderValue::from_str(s).map_err(|e| e.to_string());
        headers.insert("webhook-id", value(&id)?);
        headers.insert("webhook-timestamp", HeaderValue::from(now_unix));
        headers.insert("webhook-signature", value(&signature)?);
    }
    Ok(headers)
}

/// Reads at most [`MAX_READ_BYTES`] of the body, so a huge or endless reply cannot
/// exhaust memory.
async fn read_capped(mut response: reqwest::Response) -> (Vec<u8>, Option<String>) {
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = MAX_READ_BYTES - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if body.len() >= MAX_READ_BYTES {
                    return (body, None);
                }
            }
            Ok(None) => return (body, None),
            Err(e) => return (body, Some(format!("reading the reply: {}", describe(&e)))),
        }
    }
}

/// A one-line description of a transport error, with its cause chain.
fn describe(err: &reqwest::Error) -> String {
    let mut text = if err.is_timeout() {
        "timed out".to_string()
    } else if err.is_connect() {
        "connection failed".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
