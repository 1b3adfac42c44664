//! The five webhook endpoints (README *Connecting the peers*): lenient toward 3Dolphins, strict toward
//! the third party. Each authenticates, reads the body, and hands the event to the relay.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::Method;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Json;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::auth::{self, Caller};
use super::bodies;
use super::error::ApiError;
use super::openapi::{doc, Auth, Routes};
use super::AppState;
use crate::domain::payload::{read_command, read_message, MessageShape, Problem, Refusal, Strictness};
use crate::domain::KeyKind;
use crate::intake::{self, Accepted, Event, Idempotency};

pub fn routes() -> Routes {
    Routes::default()
        .op(
            Method::POST,
            "/webhooks/3dolphins/incoming",
            post(handle::<DOLPHINS_INCOMING>),
            doc(
                "dolphinsIncoming",
                "Incoming Event from 3Dolphins (lenient: accepted, stored, forwarded, flagged)",
                Auth::Inbound,
            )
            .body::<bodies::IncomingEvent>()
            .reply::<Accepted>(200, "stored (and flagged if flawed); forwarded to the third party")
            .errors(&[403]),
        )
        .op(
            Method::POST,
            "/webhooks/3dolphins/outgoing",
            post(handle::<DOLPHINS_OUTGOING>),
            doc(
                "dolphinsOutgoing",
                "Outgoing or Command Event from 3Dolphins (mirrored to the third party)",
                Auth::Inbound,
            )
            .body::<bodies::OutgoingOrCommand>()
            .reply::<Accepted>(200, "stored; mirrored to the third party")
            .errors(&[403]),
        )
        .op(
            Method::POST,
            "/webhooks/3dolphins/commands",
            post(handle::<DOLPHINS_COMMANDS>),
            doc("dolphinsCommand", "Command Event from 3Dolphins", Auth::Inbound)
                .body::<bodies::CommandEvent>()
                .reply::<Accepted>(200, "applied; forwarded to the third party")
                .errors(&[403]),
        )
        .op(
            Method::POST,
            "/webhooks/third-party/messages",
            post(handle::<THIRD_PARTY_MESSAGES>),
            doc("thirdPartyMessage", "Agent reply from the third party (strict)", Auth::ThirdParty)
                .body::<bodies::OutgoingEvent>()
                .reply::<Accepted>(200, "stored; delivered to 3Dolphins")
                .errors(&[404]),
        )
        .op(
            Method::POST,
            "/webhooks/third-party/commands",
            post(handle::<THIRD_PARTY_COMMANDS>),
            doc("thirdPartyCommand", "Close a ticket from the third party", Auth::ThirdParty)
                .body::<bodies::CommandEvent>()
                .reply::<Accepted>(200, "closed; delivered to 3Dolphins")
                .errors(&[404]),
        )
}

// The endpoints as const-generic tags, so one handler function serves all five routes.
const DOLPHINS_INCOMING: u8 = 0;
const DOLPHINS_OUTGOING: u8 = 1;
const DOLPHINS_COMMANDS: u8 = 2;
const THIRD_PARTY_MESSAGES: u8 = 3;
const THIRD_PARTY_COMMANDS: u8 = 4;

/// Which shape an endpoint expects.
#[derive(Clone, Copy)]
enum Endpoint {
    DolphinsIncoming,
    DolphinsOutgoing,
    DolphinsCommands,
    ThirdPartyMessages,
    ThirdPartyCommands,
}

impl Endpoint {
    const fn from_tag(tag: u8) -> Endpoint {
        match tag {
            DOLPHINS_INCOMING => Endpoint::DolphinsIncoming,
            DOLPHINS_OUTGOING => Endpoint::DolphinsOutgoing,
            DOLPHINS_COMMANDS => Endpoint::DolphinsCommands,
            THIRD_PARTY_MESSAGES => Endpoint::ThirdPartyMessages,
            _ => Endpoint::ThirdPartyCommands,
        }
    }

    fn is_dolphins_side(self) -> bool {
        matches!(self, Endpoint::DolphinsIncoming | Endpoint::DolphinsOutgoing | Endpoint::DolphinsCommands)
    }
}

async fn handle<const TAG: u8>(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    query: RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    accept(&state, &headers, &uri, query, body, Endpoint::from_tag(TAG)).await
}

async fn accept(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    RawQuery(query): RawQuery,
    body: Result<Bytes, BytesRejection>,
    endpoint: Endpoint,
) -> Result<Response, ApiError> {
    let bytes = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(state.config.max_body),
        _ => ApiError::InvalidJson(rejection.body_text()),
    })?;
    let caller = if endpoint.is_dolphins_side() {
        let token = query.as_deref().and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "token").map(|(_, v)| v.into_owned())
        });
        auth::tenant(state, headers, token.as_deref(), &[KeyKind::Inbound]).await?
    } else if auth::bearer(headers).is_none() && headers.contains_key("webhook-signature") {
        auth::signed(state, headers, &bytes).await?
    } else {
        // The third party can set headers: its key is never taken from the query string.
        auth::tenant(state, headers, None, &[KeyKind::ThirdParty]).await?
    };
    if !endpoint.is_dolphins_side() {
        super::require_json(headers)?;
    }
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::InvalidJson(format!("the body is not valid JSON: {e}")))?;
    // An empty owner is the body's own problem (400 below), not another tenant's (403).
    if let Some(owner) = value.get("owner").and_then(Value::as_str).filter(|o| !o.is_empty()) {
        if owner.replace('\0', "") != caller.owner {
            return Err(ApiError::Forbidden("the body's owner is not the credential's tenant".into()));
        }
    }
    let event = read_event(value, endpoint, &caller)?;
    let idem = idempotency(headers, uri, &bytes, caller.via_signature)?;
    let ctx = intake::Context {
        owner: &caller.owner,
        timezone: caller.timezone,
        settings: &caller.settings,
        now: state.clock.now(),
        echo_window: state.config.echo_window,
        dedupe_window: state.config.dedupe_window,
    };
    let reply = intake::apply(&state.pool, &state.group_commit, &ctx, idem.as_ref(), &event).await?;
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK);
    Ok((status, Json(reply.body)).into_response())
}

fn read_event(value: Value, endpoint: Endpoint, caller: &Caller) -> Result<Event, ApiError> {
    use Strictness::{Lenient, Strict};
    let tz = caller.timezone;
    let event = match endpoint {
        Endpoint::DolphinsIncoming => read_message(value, MessageShape::Incoming, Lenient, tz).map(Event::Incoming),
        Endpoint::DolphinsOutgoing if value.get("message").is_some() => {
            read_message(value, MessageShape::Outgoing, Lenient, tz).map(Event::DolphinsReply)
        }
        Endpoint::DolphinsOutgoing if value.get("event").is_some() => {
            read_command(value, Lenient).map(Event::DolphinsCommand)
        }
        Endpoint::DolphinsOutgoing if !value.is_object() => Err(Refusal::NotAnObject),
        Endpoint::DolphinsOutgoing => Err(Refusal::Invalid(intake::neither_message_nor_command())),
        Endpoint::DolphinsCommands => read_command(value, Lenient).map(Event::DolphinsCommand),
        Endpoint::ThirdPartyMessages => {
            read_message(value, MessageShape::Outgoing, Strict, tz).map(Event::ThirdPartyReply)
        }
        Endpoint::ThirdPartyCommands => read_command(value, Strict).map(Event::ThirdPartyCommand),
    };
    event.map_err(|refusal| match refusal {
        Refusal::NotAnObject => ApiError::InvalidJson("the body must be a JSON object".into()),
        Refusal::Invalid(problems) => ApiError::InvalidPayload(problems),
        Refusal::UnsupportedCommand(problems) => ApiError::UnsupportedEvent(problems),
    })
}

/// The longest idempotency key accepted (it is part of a primary key).
const MAX_IDEMPOTENCY_KEY: usize = 255;

/// `Idempotency-Key`, else `webhook-id`, with a hash of what was asked (path and body).
/// A signed request uses its (signed) `webhook-id` only: that is its replay protection,
/// and an unsigned `Idempotency-Key` must not be able to sidestep it.
fn idempotency(headers: &HeaderMap, uri: &Uri, body: &[u8], signed: bool) -> Result<Option<Idempotency>, ApiError> {
    let names: &[&'static str] = if signed { &["webhook-id"] } else { &["idempotency-key", "webhook-id"] };
    let Some((name, value)) = names.iter().find_map(|&name| headers.get(name).map(|v| (name, v))) else {
        return Ok(None);
    };
    let key = value.to_str().map_err(|_| ApiError::parameter(name, "must be visible ASCII"))?.trim();
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY {
        return Err(ApiError::InvalidParameter(vec![Problem::new(
            name,
            format!("must be 1 to {MAX_IDEMPOTENCY_KEY} characters"),
        )]));
    }
    let mut hash = Sha256::new();
    hash.update(b"POST\n");
    hash.update(uri.path().as_bytes());
    hash.update(b"\n");
    hash.update(body);
    Ok(Some(Idempotency { key: key.to_string(), request_hash: hash.finalize().into() }))
}
