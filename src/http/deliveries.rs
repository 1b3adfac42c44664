//! The delivery side of `/api/v1` (README *HTTP surface*): deliveries and their attempt logs, a
//! message's delivery state, endpoints with their breaker and pause state, and the
//! operator's actions (retry, cancel, replay, pause, resume).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

use super::auth::{self, Access, ApiCaller};
use super::csv;
use super::error::ApiError;
use super::openapi::{doc, Auth, Routes};
use super::params::{parse_instant, Cursor, Params};
use super::shapes::page;
use super::AppState;
use crate::domain::payload::Problem;
use crate::domain::{DeliveryStatus, Target};
use crate::store::redelivery::{self, ActionRefused, AttemptRow, DeliveryFilter, DeliveryRow, ReplayFilter};
use crate::store::{endpoints, messages, tickets};

pub fn routes() -> Routes {
    let list = &["status", "target", "from", "to", "tz", "limit", "cursor", "format"];
    Routes::default()
        .op(
            Method::GET,
            "/api/v1/deliveries",
            get(list_deliveries),
            doc("Deliveries across tickets, newest first (CSV with Accept: text/csv)", Auth::Read, "DeliveryPage")
                .query(list),
        )
        .op(
            Method::POST,
            "/api/v1/deliveries/replay",
            post(replay),
            doc("Re-queue every delivery matching target, time range and status", Auth::Write, "Count")
                .body("ReplayIn"),
        )
        .op(
            Method::GET,
            "/api/v1/deliveries/{id}",
            get(get_delivery),
            doc("One delivery with its attempt log", Auth::Read, "Delivery"),
        )
        .op(
            Method::POST,
            "/api/v1/deliveries/{id}/retry",
            post(retry),
            doc("Re-queue now with a fresh schedule", Auth::Write, "DeliveryState"),
        )
        .op(
            Method::POST,
            "/api/v1/deliveries/{id}/cancel",
            post(cancel),
            doc("Park a delivery that will never succeed", Auth::Write, "DeliveryState"),
        )
        .op(
            Method::GET,
            "/api/v1/tickets/{ticket}/deliveries",
            get(ticket_deliveries),
            doc("A ticket's deliveries with attempt logs, oldest first", Auth::Read, "DeliveryPage")
                .query(&["limit", "cursor"]),
        )
        .op(
            Method::GET,
            "/api/v1/messages/{id}",
            get(get_message),
            doc("A message and its delivery state", Auth::Read, "Message"),
        )
        .op(
            Method::GET,
            "/api/v1/endpoints",
            get(list_endpoints),
            doc("Each target: breaker state, pause, queue depth", Auth::Read, "EndpointList"),
        )
        .op(Method::POST, "/api/v1/endpoints/{target}/pause", post(pause), doc("Pause a target", Auth::Write, "Paused"))
        .op(
            Method::POST,
            "/api/v1/endpoints/{target}/resume",
            post(resume),
            doc("Resume a target", Auth::Write, "Paused"),
        )
}

fn status_names() -> Vec<&'static str> {
    DeliveryStatus::ALL.iter().map(|s| s.as_str()).collect()
}

fn target_names() -> Vec<&'static str> {
    Target::ALL.iter().map(|t| t.as_str()).collect()
}

/// A delivery in the API's shape, with its attempt log when given.
fn delivery_json(d: &DeliveryRow, log: Option<&[&AttemptRow]>) -> Value {
    let waiting = matches!(d.status.as_str(), "pending" | "failed");
    let mut v = json!({
        "id": d.id, "ticketNumber": d.ticket_number, "target": d.target, "status": d.status,
        "attempts": d.attempts, "nextAttemptAt": waiting.then_some(d.next_attempt_at),
        "lastError": d.last_error, "createdAt": d.created_at, "deliveredAt": d.delivered_at,
        "sequence": d.sequence, "messageId": d.message_id,
    });
    if let Some(log) = log {
        v["attemptLog"] = log
            .iter()
            .map(|a| {
                json!({"n": a.n, "at": a.at, "durationMs": a.duration_ms, "httpStatus": a.http_status,
                       "error": a.error, "responseHead": a.response_head})
            })
            .collect();
    }
    v
}

/// Deliveries with their attempt logs attached, read from `pool` (the primary's for a single
/// delivery, the read pool for lists).
pub async fn with_logs(pool: &PgPool, owner: &str, rows: &[DeliveryRow]) -> Result<Vec<Value>, ApiError> {
    let ids: Vec<Uuid> = rows.iter().map(|d| d.id).collect();
    let attempts = redelivery::attempts(pool, owner, &ids).await?;
    let mut by_delivery: HashMap<Uuid, Vec<&AttemptRow>> = HashMap::new();
    for a in &attempts {
        by_delivery.entry(a.delivery_id).or_default().push(a);
    }
    Ok(rows.iter().map(|d| delivery_json(d, Some(by_delivery.get(&d.id).map_or(&[][..], Vec::as_slice)))).collect())
}

async fn list_deliveries(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let caller = auth::api(&state, &headers, Access::Read).await?;
    let params = Params::parse(query.as_deref());
    let statuses = params.list_of("status", &status_names())?;
    let targets = params.list_of("target", &target_names())?;
    let tz = params.timezone(caller.timezone)?;
    let (from, to) = params.time_range(tz, state.clock.now())?;
    let limit = params.limit()?;
    // The cursor is bound to the filters as given: a defaulted `to` (now) moves between
    // pages, but the keyset position keeps later rows out anyway.
    let filters = params.fingerprint("deliveries", &["status", "target", "from", "to", "tz"]);
    let cursor = Cursor::decode(params.get("cursor"), &filters)?;
    if csv::wanted(&params, &headers) {
        let pool = state.read_pool.clone();
        return Ok(csv::export(DELIVERY_COLUMNS, "deliveries.csv", move |after| {
            let (pool, owner, statuses, targets) =
                (pool.clone(), caller.owner.clone(), statuses.clone(), targets.clone());
            async move {
                let filter = DeliveryFilter {
                    statuses: statuses.as_deref(),
                    targets: targets.as_deref(),
                    ticket_number: None,
                    from: Some(from),
                    to: Some(to),
                    after,
                    oldest_first: false,
                    limit: csv::PAGE,
                };
                let rows = redelivery::list(&pool, &owner, &filter).await?;
                Ok((rows.iter().map(|d| delivery_json(d, None)).collect(), rows.last().map(|d| (d.created_at, d.id))))
            }
        }));
    }
    let filter = DeliveryFilter {
        statuses: statuses.as_deref(),
        targets: targets.as_deref(),
        ticket_number: None,
        from: Some(from),
        to: Some(to),
        after: cursor.map(|c| c.uuid().map(|id| (c.at, id))).transpose()?,
        oldest_first: false,
        limit,
    };
    let rows = redelivery::list(&state.read_pool, &caller.owner, &filter).await?;
    let data = rows.iter().map(|d| delivery_json(d, None)).collect();
    Ok(page(data, rows.last().map(|d| Cursor::new(&filters, d.created_at, d.id)), limit).into_response())
}

const DELIVERY_COLUMNS: &[&str] = &[
    "id",
    "ticketNumber",
    "target",
    "status",
    "attempts",
    "nextAttemptAt",
    "lastError",
    "createdAt",
    "deliveredAt",
    "sequence",
    "messageId",
];

async fn ticket_deliveries(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(ticket): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let caller = auth::api(&state, &headers, Access::Read).await?;
    let params = Params::parse(query.as_deref());
    let limit = params.limit()?;
    let filters = format!("ticket-deliveries|{ticket}");
    let cursor = Cursor::decode(params.get("cursor"), &filters)?;
    tickets::get(&state.read_pool, &caller.owner, &ticket).await?.ok_or(ApiError::TicketNotFound)?;
    let filter = DeliveryFilter {
        statuses: None,
        targets: None,
        ticket_number: Some(&ticket),
        from: None,
        to: None,
        after: cursor.map(|c| c.uuid().map(|id| (c.at, id))).transpose()?,
        oldest_first: true,
        limit,
    };
    let rows = redelivery::list(&state.read_pool, &caller.owner, &filter).await?;
    let data = with_logs(&state.read_pool, &caller.owner, &rows).await?;
    Ok(page(data, rows.last().map(|d| Cursor::new(&filters, d.created_at, d.id)), limit))
}

fn parse_id(raw: &str, what: &'static str) -> Result<Uuid, ApiError> {
    // A malformed id names nothing that exists: 404, like another tenant's id.
    Uuid::parse_str(raw).map_err(|_| ApiError::NotFound(what))
}

async fn get_delivery(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let caller = auth::api(&state, &headers, Access::Read).await?;
    let id = parse_id(&id, "delivery")?;
    let row = redelivery::get(&state.pool, &caller.owner, id).await?.ok_or(ApiError::NotFound("delivery"))?;
    let mut data = with_logs(&state.pool, &caller.owner, std::slice::from_ref(&row)).await?;
    Ok(Json(data.pop().unwrap_or(Value::Null)))
}

pub fn refused(r: ActionRefused) -> ApiError {
    match r {
        ActionRefused::NotFound => ApiError::NotFound("delivery"),
        ActionRefused::InFlight => ApiError::InProgress,
        ActionRefused::WrongState(s) => ApiError::InvalidState(format!("the delivery is {s}")),
    }
}

async fn retry(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let caller = auth::api(&state, &headers, Access::Write).await?;
    let id = parse_id(&id, "delivery")?;
    redelivery::retry(&state.pool, &caller.owner, id, &caller.actor, state.clock.now()).await?.map_err(refused)?;
    tracing::info!(owner = %caller.owner, delivery = %id, actor = %caller.actor, "delivery re-queued by hand");
    Ok((StatusCode::ACCEPTED, Json(json!({"id": id, "status": "pending"}))).into_response())
}

async fn cancel(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let caller = auth::api(&state, &headers, Access::Write).await?;
    let id = parse_id(&id, "delivery")?;
    redelivery::cancel(&state.pool, &caller.owner, id, &caller.actor, state.clock.now()).await?.map_err(refused)?;
    tracing::info!(owner = %caller.owner, delivery = %id, actor = %caller.actor, "delivery cancelled by hand");
    Ok(Json(json!({"id": id, "status": "cancelled"})))
}

async fn replay(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let caller = auth::api(&state, &headers, Access::Write).await?;
    let bytes = body.map_err(|r| match r.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(state.config.max_body),
        _ => ApiError::InvalidJson(r.body_text()),
    })?;
    super::require_json(&headers)?;
    let doc: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::InvalidJson(format!("the body is not valid JSON: {e}")))?;
    let filter = read_replay(&doc, &caller, state.clock.now())?;
    let count = redelivery::replay(
        &state.pool,
        &caller.owner,
        &ReplayFilter { targets: filter.0.as_deref(), statuses: &filter.1, from: filter.2, to: filter.3 },
        &caller.actor,
        state.clock.now(),
    )
    .await?;
    tracing::info!(owner = %caller.owner, count, actor = %caller.actor, "deliveries replayed");
    Ok((StatusCode::ACCEPTED, Json(json!({"count": count}))).into_response())
}

pub type ReplaySelection = (Option<Vec<String>>, Vec<String>, DateTime<Utc>, DateTime<Utc>);

/// Reads `{"target","from","to","status"}`, listing every problem.
pub fn read_replay(doc: &Value, caller: &ApiCaller, now: DateTime<Utc>) -> Result<ReplaySelection, ApiError> {
    let Some(obj) = doc.as_object() else {
        return Err(ApiError::InvalidJson("the body must be a JSON object".into()));
    };
    let mut problems = Vec::new();
    let targets = match obj.get("target") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) if Target::parse(t).is_some() => Some(vec![t.clone()]),
        Some(_) => {
            problems.push(Problem::new("target", format!("must be one of {}", target_names().join(", "))));
            None
        }
    };
    let replayable = ["failed", "dead", "cancelled", "delivered"];
    let statuses = match obj.get("status") {
        None | Some(Value::Null) => vec!["dead".to_string()],
        Some(Value::Array(items))
            if !items.is_empty() && items.iter().all(|i| i.as_str().is_some_and(|s| replayable.contains(&s))) =>
        {
            items.iter().filter_map(|i| i.as_str().map(str::to_string)).collect()
        }
        Some(_) => {
            problems.push(Problem::new("status", format!("must be a non-empty array of {}", replayable.join(", "))));
            Vec::new()
        }
    };
    let instant = |name: &str, problems: &mut Vec<Problem>| match obj.get(name) {
        None | Some(Value::Null) => None,
        Some(Value::String(raw)) => match parse_instant(name, raw, caller.timezone) {
            Ok(t) => Some(t),
            Err(_) => {
                problems.push(Problem::new(name, "expected RFC 3339 or YYYY-MM-DD"));
                None
            }
        },
        Some(_) => {
            problems.push(Problem::new(name, "must be a string"));
            None
        }
    };
    let from = instant("from", &mut problems);
    if from.is_none() && !problems.iter().any(|p| p.field == "from") {
        problems.push(Problem::new("from", "is required"));
    }
    let to = instant("to", &mut problems).unwrap_or(now);
    match from {
        Some(from) if problems.is_empty() && from >= to => {
            Err(ApiError::InvalidPayload(vec![Problem::new("from", "must be before to")]))
        }
        Some(from) if problems.is_empty() => Ok((targets, statuses, from, to)),
        _ => Err(ApiError::InvalidPayload(problems)),
    }
}

async fn get_message(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let caller = auth::api(&state, &headers, Access::Read).await?;
    let id = parse_id(&id, "message")?;
    let m = messages::get(&state.pool, &caller.owner, id).await?.ok_or(ApiError::NotFound("message"))?;
    let delivery = redelivery::for_message(&state.pool, &caller.owner, id).await?;
    let mut body = super::shapes::message_json(&m);
    body["delivery"] = delivery.as_ref().map_or(Value::Null, |d| delivery_json(d, None));
    Ok(Json(body))
}

async fn list_endpoints(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let caller = auth::api(&state, &headers, Access::Read).await?;
    Ok(Json(json!({"data": endpoint_states(&state, &caller).await?, "nextCursor": null})))
}

/// Each configured target (or one deliveries still wait for): breaker, pause, queue.
pub async fn endpoint_states(state: &AppState, caller: &ApiCaller) -> Result<Vec<Value>, ApiError> {
    let rows = endpoints::overview(&state.pool, &caller.owner).await?;
    let data: Vec<Value> = Target::ALL
        .iter()
        .filter_map(|&target| {
            let row = rows.iter().find(|r| r.target == target.as_str());
            let url = caller.settings.url_for(target);
            // Unconfigured targets appear only if deliveries still wait for them.
            if url.is_none() && row.is_none_or(|r| r.queue_depth == 0) {
                return None;
            }
            Some(json!({
                "target": target, "url": url,
                "state": row.map_or("closed", |r| r.state.as_str()),
                "paused": row.is_some_and(|r| r.paused),
                "consecutiveFailures": row.map_or(0, |r| r.consecutive_failures),
                "retryAt": row.and_then(|r| r.retry_at),
                "queueDepth": row.map_or(0, |r| r.queue_depth),
                "oldestPendingAt": row.and_then(|r| r.oldest_pending_at),
            }))
        })
        .collect();
    Ok(data)
}

async fn pause(state: State<AppState>, headers: HeaderMap, target: Path<String>) -> Result<Json<Value>, ApiError> {
    set_paused(state, headers, target, true).await
}

async fn resume(state: State<AppState>, headers: HeaderMap, target: Path<String>) -> Result<Json<Value>, ApiError> {
    set_paused(state, headers, target, false).await
}

async fn set_paused(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(target): Path<String>,
    paused: bool,
) -> Result<Json<Value>, ApiError> {
    let caller = auth::api(&state, &headers, Access::Write).await?;
    let target = Target::parse(&target)
        .ok_or_else(|| ApiError::parameter("target", format!("must be one of {}", target_names().join(", "))))?;
    if caller.settings.url_for(target).is_none() {
        return Err(ApiError::NotFound("endpoint"));
    }
    let changed = endpoints::set_paused(&state.pool, &caller.owner, target, paused, state.clock.now()).await?;
    tracing::info!(owner = %caller.owner, %target, paused, changed, actor = %caller.actor, "endpoint pause switched");
    Ok(Json(json!({"target": target, "paused": paused})))
}
