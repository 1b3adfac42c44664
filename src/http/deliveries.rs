//! The delivery side of `/api/v1` (README *HTTP surface*): deliveries and their attempt logs, a
//! message's delivery state, and the operator's actions on them (retry, cancel, replay). The
//! endpoints they go to are [`super::endpoints`].

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::{self, Access, ApiCaller};
use super::error::ApiError;
use super::openapi::{doc, paging, query_list, query_string, query_time, query_tz, Auth, Routes};
use super::params::{parse_instant, Cursor, Params};
use super::shapes::{DeliveryOut, DeliveryPage, MessageOut, MessageWithDelivery};
use super::AppState;
use super::{bodies, csv};
use crate::domain::payload::Problem;
use crate::domain::{DeliveryStatus, Target};
use crate::store::redelivery::{self, ActionRefused, AttemptRow, DeliveryFilter, DeliveryRow, ReplayFilter};
use crate::store::{messages, tickets};

pub fn routes() -> Routes {
    let statuses = status_names();
    let targets = target_names();
    let list = || {
        [
            query_list("status", "only deliveries in these states", &statuses),
            query_list("target", "only deliveries to these peer endpoints", &targets),
            query_string("id", "one delivery by its id, which is also the webhook-id header it was sent with"),
            query_string("messageId", "the delivery of one message"),
            query_time("from", "created at or after; default 30 days ago (no limit with id or messageId)"),
            query_time("to", "created before; default now"),
            query_tz(),
        ]
    };
    Routes::default()
        .op(
            Method::GET,
            "/api/v1/deliveries",
            get(list_deliveries),
            doc("listDeliveries", "Deliveries across tickets, newest first", Auth::Read)
                .query(list())
                .query(paging())
                .reply::<DeliveryPage>(200, "a page of deliveries")
                .csv(),
        )
        .op(
            Method::POST,
            "/api/v1/deliveries/replay",
            post(replay),
            doc("replayDeliveries", "Re-queue every delivery matching target, time range and status", Auth::Write)
                .body::<bodies::ReplayIn>()
                .reply::<Replayed>(202, "re-queued"),
        )
        .op(
            Method::GET,
            "/api/v1/deliveries/{id}",
            get(get_delivery),
            doc("getDelivery", "One delivery with its attempt log", Auth::Read)
                .reply::<DeliveryOut>(200, "the delivery"),
        )
        .op(
            Method::POST,
            "/api/v1/deliveries/{id}/retry",
            post(retry),
            doc("retryDelivery", "Re-queue now with a fresh schedule", Auth::Write)
                .reply::<DeliveryState>(202, "re-queued")
                .errors(&[409]),
        )
        .op(
            Method::POST,
            "/api/v1/deliveries/{id}/cancel",
            post(cancel),
            doc("cancelDelivery", "Park a delivery that will never succeed", Auth::Write)
                .reply::<DeliveryState>(200, "cancelled")
                .errors(&[409]),
        )
        .op(
            Method::GET,
            "/api/v1/tickets/{ticketNumber}/deliveries",
            get(ticket_deliveries),
            doc("listTicketDeliveries", "A ticket's deliveries with attempt logs, oldest first", Auth::Read)
                .query(paging())
                .reply::<DeliveryPage>(200, "a page of the ticket's deliveries")
                .csv(),
        )
        .op(
            Method::GET,
            "/api/v1/messages/{id}",
            get(get_message),
            doc("getMessage", "A message and its delivery state", Auth::Read)
                .reply::<MessageWithDelivery>(200, "the message"),
        )
}

/// A delivery's state after an operator's action.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryState {
    pub id: Uuid,
    #[schema(schema_with = super::shapes::delivery_status)]
    pub status: &'static str,
}

/// How many deliveries a replay re-queued.
#[derive(Debug, Serialize, ToSchema)]
pub struct Replayed {
    pub count: u64,
}

fn status_names() -> Vec<&'static str> {
    DeliveryStatus::ALL.iter().map(|s| s.as_str()).collect()
}

pub fn target_names() -> Vec<&'static str> {
    Target::ALL.iter().map(|t| t.as_str()).collect()
}

/// Deliveries with their attempt logs attached, read from `pool` (the primary's for a single
/// delivery, the read pool for lists).
pub async fn with_logs(pool: &PgPool, owner: &str, rows: &[DeliveryRow]) -> Result<Vec<DeliveryOut>, sqlx::Error> {
    let ids: Vec<Uuid> = rows.iter().map(|d| d.id).collect();
    let attempts = redelivery::attempts(pool, owner, &ids).await?;
    let mut by_delivery: HashMap<Uuid, Vec<&AttemptRow>> = HashMap::new();
    for a in &attempts {
        by_delivery.entry(a.delivery_id).or_default().push(a);
    }
    Ok(rows.iter().map(|d| DeliveryOut::new(d, Some(by_delivery.get(&d.id).map_or(&[][..], Vec::as_slice)))).collect())
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
    let (id, message_id) = (params.uuid("id")?, params.uuid("messageId")?);
    let (from, to) = params.time_range(tz, state.clock.now())?;
    // Looking one up by its id finds it however old it is, unless a window is given.
    let by_id = (id.is_some() || message_id.is_some()) && params.get("from").is_none() && params.get("to").is_none();
    let (from, to) = if by_id { (None, None) } else { (Some(from), Some(to)) };
    let limit = params.limit()?;
    // The cursor is bound to the filters as given: a defaulted `to` (now) moves between
    // pages, but the keyset position keeps later rows out anyway.
    let filters = params.fingerprint("deliveries", &["status", "target", "id", "messageId", "from", "to", "tz"]);
    let cursor = Cursor::decode(params.get("cursor"), &filters)?;
    if let Some(csv) = csv::wanted(&params, &headers)? {
        let pool = state.read_pool.clone();
        return Ok(csv.export("deliveries.csv", move |after| {
            let (pool, owner, statuses, targets) =
                (pool.clone(), caller.owner.clone(), statuses.clone(), targets.clone());
            async move {
                let filter = DeliveryFilter {
                    statuses: statuses.as_deref(),
                    targets: targets.as_deref(),
                    ticket_number: None,
                    id,
                    message_id,
                    from,
                    to,
                    after,
                    oldest_first: false,
                    limit: csv::PAGE,
                };
                let rows = redelivery::list(&pool, &owner, &filter).await?;
                let last = rows.last().map(|d| (d.created_at, d.id));
                Ok((rows.iter().map(|d| DeliveryOut::new(d, None)).collect::<Vec<_>>(), last))
            }
        }));
    }
    let filter = DeliveryFilter {
        statuses: statuses.as_deref(),
        targets: targets.as_deref(),
        ticket_number: None,
        id,
        message_id,
        from,
        to,
        after: cursor.map(|c| c.uuid().map(|id| (c.at, id))).transpose()?,
        oldest_first: false,
        limit,
    };
    let rows = redelivery::list(&state.read_pool, &caller.owner, &filter).await?;
    let data = rows.iter().map(|d| DeliveryOut::new(d, None)).collect();
    let next = rows.last().map(|d| Cursor::new(&filters, d.created_at, d.id));
    Ok(Json(DeliveryPage::new(data, next, limit)).into_response())
}

async fn ticket_deliveries(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(ticket): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let caller = auth::api(&state, &headers, Access::Read).await?;
    let params = Params::parse(query.as_deref());
    let limit = params.limit()?;
    let filters = format!("ticket-deliveries|{ticket}");
    let cursor = Cursor::decode(params.get("cursor"), &filters)?;
    tickets::get(&state.read_pool, &caller.owner, &ticket).await?.ok_or(ApiError::TicketNotFound)?;
    if let Some(csv) = csv::wanted(&params, &headers)? {
        let pool = state.read_pool.clone();
        return Ok(csv.export("deliveries.csv", move |after| {
            let (pool, owner, ticket) = (pool.clone(), caller.owner.clone(), ticket.clone());
            async move {
                let filter = DeliveryFilter::of_ticket(&ticket, after, csv::PAGE);
                let rows = redelivery::list(&pool, &owner, &filter).await?;
                let last = rows.last().map(|d| (d.created_at, d.id));
                Ok((with_logs(&pool, &owner, &rows).await?, last))
            }
        }));
    }
    let filter = DeliveryFilter::of_ticket(&ticket, cursor.map(|c| c.uuid().map(|id| (c.at, id))).transpose()?, limit);
    let rows = redelivery::list(&state.read_pool, &caller.owner, &filter).await?;
    let data = with_logs(&state.read_pool, &caller.owner, &rows).await?;
    let next = rows.last().map(|d| Cursor::new(&filters, d.created_at, d.id));
    Ok(Json(DeliveryPage::new(data, next, limit)).into_response())
}

fn parse_id(raw: &str, what: &'static str) -> Result<Uuid, ApiError> {
    // A malformed id names nothing that exists: 404, like another tenant's id.
    Uuid::parse_str(raw).map_err(|_| ApiError::NotFound(what))
}

async fn get_delivery(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<DeliveryOut>, ApiError> {
    let caller = auth::api(&state, &headers, Access::Read).await?;
    let id = parse_id(&id, "delivery")?;
    let row = redelivery::get(&state.pool, &caller.owner, id).await?.ok_or(ApiError::NotFound("delivery"))?;
    let data = with_logs(&state.pool, &caller.owner, std::slice::from_ref(&row)).await?;
    data.into_iter().next().map(Json).ok_or(ApiError::NotFound("delivery"))
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
    Ok((StatusCode::ACCEPTED, Json(DeliveryState { id, status: "pending" })).into_response())
}

async fn cancel(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<DeliveryState>, ApiError> {
    let caller = auth::api(&state, &headers, Access::Write).await?;
    let id = parse_id(&id, "delivery")?;
    redelivery::cancel(&state.pool, &caller.owner, id, &caller.actor, state.clock.now()).await?.map_err(refused)?;
    tracing::info!(owner = %caller.owner, delivery = %id, actor = %caller.actor, "delivery cancelled by hand");
    Ok(Json(DeliveryState { id, status: "cancelled" }))
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
    Ok((StatusCode::ACCEPTED, Json(Replayed { count })).into_response())
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
) -> Result<Json<MessageWithDelivery>, ApiError> {
    let caller = auth::api(&state, &headers, Access::Read).await?;
    let id = parse_id(&id, "message")?;
    let m = messages::get(&state.pool, &caller.owner, id).await?.ok_or(ApiError::NotFound("message"))?;
    let delivery = redelivery::for_message(&state.pool, &caller.owner, id).await?;
    let delivery = delivery.as_ref().map(|d| DeliveryOut::new(d, None));
    Ok(Json(MessageWithDelivery { message: MessageOut::from(&m), delivery }))
}
