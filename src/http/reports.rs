//! Reports (README *HTTP surface*): `summary` and `timeseries`, with the definitions written out in
//! `store::reports`. The timeseries' buckets add up to the summary's counts for the same
//! window.

use std::collections::BTreeMap;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method};
use axum::routing::get;
use axum::Json;
use serde_json::{json, Map, Value};

use super::auth::{self, Access, ApiCaller};
use super::error::ApiError;
use super::openapi::{doc, Auth, Routes};
use super::params::Params;
use super::AppState;
use crate::store::reports::{self, Interval, ReportScope};

pub fn routes() -> Routes {
    Routes::default()
        .op(
            Method::GET,
            "/api/v1/reports/summary",
            get(summary),
            doc(
                "Tickets, messages, response and resolution times, deliveries; overall and by channel",
                Auth::Read,
                "Summary",
            )
            .query(&["from", "to", "channel", "tz"]),
        )
        .op(
            Method::GET,
            "/api/v1/reports/timeseries",
            get(timeseries),
            doc("Counts per local hour or day", Auth::Read, "Timeseries")
                .query(&["from", "to", "interval", "channel", "tz"]),
        )
}

/// The most buckets one timeseries answers (a year of hours is 8 760).
const MAX_BUCKETS: i64 = 10_000;

/// The label a channel gets in `byChannel` when the ticket never said.
const UNKNOWN_CHANNEL: &str = "unknown";

fn durations(d: Option<&reports::Durations>) -> Value {
    json!({"p50": d.and_then(|d| d.p50), "p90": d.and_then(|d| d.p90), "mean": d.and_then(|d| d.mean)})
}

async fn summary(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let caller = auth::api(&state, &headers, Access::Read).await?;
    Ok(Json(summary_document(&state, &caller, &Params::parse(query.as_deref())).await?))
}

/// The summary report for `params` (`from`, `to`, `channel`, `tz`); the console shows the same.
pub async fn summary_document(state: &AppState, caller: &ApiCaller, params: &Params) -> Result<Value, ApiError> {
    let tz = params.timezone(caller.timezone)?;
    let (from, to) = params.time_range(tz, state.clock.now())?;
    let channel = params.get("channel").map(str::to_lowercase);
    let scope = ReportScope { owner: &caller.owner, from, to, channel: channel.as_deref() };
    let s = reports::summary(&state.read_pool, &scope).await?;

    // Every channel any family mentions, plus the overall row (key None).
    let mut keys: Vec<Option<String>> = vec![None];
    let mut note = |total: bool, ch: &Option<String>| {
        let key = Some(ch.clone().unwrap_or_else(|| UNKNOWN_CHANNEL.into()));
        if !total && !keys.contains(&key) {
            keys.push(key);
        }
    };
    s.opened.iter().for_each(|r| note(r.total, &r.channel));
    s.open_now.iter().for_each(|r| note(r.total, &r.channel));
    s.closed.iter().for_each(|r| note(r.total, &r.channel));
    s.first_response.iter().for_each(|r| note(r.total, &r.channel));
    s.messages.iter().for_each(|r| note(r.total, &r.channel));
    s.deliveries.iter().for_each(|r| note(r.total, &r.channel));

    let matches = |total: bool, ch: &Option<String>, key: &Option<String>| match key {
        None => total,
        Some(k) => !total && ch.as_deref().unwrap_or(UNKNOWN_CHANNEL) == k,
    };
    let figures = |key: &Option<String>| -> Map<String, Value> {
        let count =
            |rows: &[reports::Counts]| rows.iter().find(|r| matches(r.total, &r.channel, key)).map_or(0, |r| r.n);
        let closed = s.closed.iter().find(|r| matches(r.total, &r.channel, key));
        let first = s.first_response.iter().find(|r| matches(r.total, &r.channel, key));
        let msgs = s.messages.iter().find(|r| matches(r.total, &r.channel, key));
        let del = s.deliveries.iter().find(|r| matches(r.total, &r.channel, key)).cloned().unwrap_or_default();
        let v = json!({
            "ticketsOpened": count(&s.opened),
            "ticketsClosed": closed.map_or(0, |c| c.n),
            "ticketsOpenNow": count(&s.open_now),
            "messagesIn": msgs.map_or(0, |m| m.n_in),
            "messagesOut": msgs.map_or(0, |m| m.n_out),
            "firstResponseSeconds": durations(first),
            "resolutionSeconds": durations(closed),
            "deliveries": {"delivered": del.delivered, "failed": del.failed, "dead": del.dead,
                           "pending": del.pending, "cancelled": del.cancelled},
        });
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    };
    let mut body = json!({"from": from, "to": to, "tz": tz.name()});
    if let Value::Object(top) = &mut body {
        top.extend(figures(&None));
        let by_channel: BTreeMap<String, Value> =
            keys.iter().filter_map(|k| k.as_ref().map(|name| (name.clone(), Value::Object(figures(k))))).collect();
        top.insert("byChannel".into(), json!(by_channel));
    }
    Ok(body)
}

async fn timeseries(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let caller = auth::api(&state, &headers, Access::Read).await?;
    Ok(Json(timeseries_document(&state, &caller, &Params::parse(query.as_deref())).await?))
}

/// The timeseries report for `params` (`from`, `to`, `interval`, `channel`, `tz`).
pub async fn timeseries_document(state: &AppState, caller: &ApiCaller, params: &Params) -> Result<Value, ApiError> {
    let tz = params.timezone(caller.timezone)?;
    let (from, to) = params.time_range(tz, state.clock.now())?;
    let interval = match params.get("interval") {
        None | Some("day") => Interval::Day,
        Some("hour") => Interval::Hour,
        Some(other) => return Err(ApiError::parameter("interval", format!("{other:?} is not hour or day"))),
    };
    let span = (to - from).num_hours() / if interval == Interval::Day { 24 } else { 1 };
    if span > MAX_BUCKETS {
        return Err(ApiError::parameter("from", format!("the window holds more than {MAX_BUCKETS} buckets")));
    }
    let channel = params.get("channel").map(str::to_lowercase);
    let scope = ReportScope { owner: &caller.owner, from, to, channel: channel.as_deref() };
    let rows = reports::timeseries(&state.read_pool, &scope, interval, tz.name()).await?;
    let data: Vec<Value> = rows
        .iter()
        .map(|b| {
            json!({"bucket": b.bucket, "ticketsOpened": b.tickets_opened, "ticketsClosed": b.tickets_closed,
                   "messagesIn": b.messages_in, "messagesOut": b.messages_out})
        })
        .collect();
    Ok(json!({"interval": interval.as_str(), "tz": tz.name(), "from": from, "to": to, "data": data}))
}
