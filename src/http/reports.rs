//! Reports (README *HTTP surface*): `summary` and `timeseries`, with the definitions written out in
//! `store::reports`. The timeseries' buckets add up to the summary's counts for the same
//! window.

use std::collections::BTreeMap;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method};
use axum::routing::get;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::auth::{self, Access, ApiCaller};
use super::error::ApiError;
use super::openapi::{doc, query_enum, query_string, query_time, query_tz, Auth, Routes};
use super::params::Params;
use super::AppState;
use crate::store::reports::{self, Interval, ReportScope};

pub fn routes() -> Routes {
    let window = || {
        [
            query_time("from", "tickets opened (messages sent) at or after; default 30 days ago"),
            query_time("to", "before; default now"),
            query_string("channel", "only this channel (any case)"),
            query_tz(),
        ]
    };
    Routes::default()
        .op(
            Method::GET,
            "/api/v1/reports/summary",
            get(summary),
            doc(
                "reportSummary",
                "Tickets, messages, response and resolution times, deliveries; overall and by channel",
                Auth::Read,
            )
            .query(window())
            .reply::<SummaryOut>(200, "the figures of the window"),
        )
        .op(
            Method::GET,
            "/api/v1/reports/timeseries",
            get(timeseries),
            doc("reportTimeseries", "Counts per local hour or day", Auth::Read)
                .query(window())
                .query([query_enum("interval", "bucket size, default day", &["hour", "day"])])
                .reply::<TimeseriesOut>(200, "every bucket of the window, zeros too"),
        )
}

/// The summary report: the figures of the window, overall and per channel.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Summary)]
pub struct SummaryOut {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub tz: String,
    #[serde(flatten)]
    pub overall: Figures,
    /// The same figures per channel (`unknown` for tickets that never said).
    pub by_channel: BTreeMap<String, Figures>,
}

/// The figures of a summary (README *Reports* defines each).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Figures {
    pub tickets_opened: i64,
    pub tickets_closed: i64,
    pub tickets_open_now: i64,
    pub messages_in: i64,
    pub messages_out: i64,
    pub first_response_seconds: Seconds,
    pub resolution_seconds: Seconds,
    pub deliveries: DeliveryCounts,
}

/// A duration's distribution, in seconds; `null` when nothing was measured.
#[derive(Debug, Serialize, ToSchema)]
pub struct Seconds {
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub mean: Option<f64>,
}

/// Deliveries of the window's tickets by state.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct DeliveryCounts {
    pub delivered: i64,
    pub failed: i64,
    pub dead: i64,
    pub pending: i64,
    pub cancelled: i64,
}

/// The timeseries report.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Timeseries)]
pub struct TimeseriesOut {
    #[schema(schema_with = intervals)]
    pub interval: &'static str,
    pub tz: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub data: Vec<BucketOut>,
}

fn intervals() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(["hour", "day"]))
        .build()
}

/// One local hour or day.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Bucket)]
pub struct BucketOut {
    /// Its start.
    pub bucket: DateTime<Utc>,
    pub tickets_opened: i64,
    pub tickets_closed: i64,
    pub messages_in: i64,
    pub messages_out: i64,
}

/// The most buckets one timeseries answers (a year of hours is 8 760).
const MAX_BUCKETS: i64 = 10_000;

/// The label a channel gets in `byChannel` when the ticket never said.
const UNKNOWN_CHANNEL: &str = "unknown";

fn seconds(d: Option<&reports::Durations>) -> Seconds {
    Seconds { p50: d.and_then(|d| d.p50), p90: d.and_then(|d| d.p90), mean: d.and_then(|d| d.mean) }
}

async fn summary(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json<SummaryOut>, ApiError> {
    let caller = auth::api(&state, &headers, Access::Read).await?;
    Ok(Json(summary_document(&state, &caller, &Params::parse(query.as_deref())).await?))
}

/// The summary report for `params` (`from`, `to`, `channel`, `tz`).
pub async fn summary_document(state: &AppState, caller: &ApiCaller, params: &Params) -> Result<SummaryOut, ApiError> {
    let tz = params.timezone(caller.timezone)?;
    let (from, to) = params.time_range(tz, state.clock.now())?;
    let channel = params.get("channel").map(str::to_lowercase);
    let scope = ReportScope { owner: &caller.owner, from, to, channel: channel.as_deref() };
    let s = reports::summary(&state.read_pool, &scope).await?;

    // Every channel any family mentions.
    let mut channels: Vec<String> = Vec::new();
    let mut note = |total: bool, ch: &Option<String>| {
        let name = ch.clone().unwrap_or_else(|| UNKNOWN_CHANNEL.into());
        if !total && !channels.contains(&name) {
            channels.push(name);
        }
    };
    s.opened.iter().for_each(|r| note(r.total, &r.channel));
    s.open_now.iter().for_each(|r| note(r.total, &r.channel));
    s.closed.iter().for_each(|r| note(r.total, &r.channel));
    s.first_response.iter().for_each(|r| note(r.total, &r.channel));
    s.messages.iter().for_each(|r| note(r.total, &r.channel));
    s.deliveries.iter().for_each(|r| note(r.total, &r.channel));

    // `None`: the overall row; else the channel's.
    let matches = |total: bool, ch: &Option<String>, key: Option<&str>| match key {
        None => total,
        Some(k) => !total && ch.as_deref().unwrap_or(UNKNOWN_CHANNEL) == k,
    };
    let figures = |key: Option<&str>| -> Figures {
        let count =
            |rows: &[reports::Counts]| rows.iter().find(|r| matches(r.total, &r.channel, key)).map_or(0, |r| r.n);
        let closed = s.closed.iter().find(|r| matches(r.total, &r.channel, key));
        let first = s.first_response.iter().find(|r| matches(r.total, &r.channel, key));
        let msgs = s.messages.iter().find(|r| matches(r.total, &r.channel, key));
        let del = s.deliveries.iter().find(|r| matches(r.total, &r.channel, key)).cloned().unwrap_or_default();
        Figures {
            tickets_opened: count(&s.opened),
            tickets_closed: closed.map_or(0, |c| c.n),
            tickets_open_now: count(&s.open_now),
            messages_in: msgs.map_or(0, |m| m.n_in),
            messages_out: msgs.map_or(0, |m| m.n_out),
            first_response_seconds: seconds(first),
            resolution_seconds: seconds(closed),
            deliveries: DeliveryCounts {
                delivered: del.delivered,
                failed: del.failed,
                dead: del.dead,
                pending: del.pending,
                cancelled: del.cancelled,
            },
        }
    };
    Ok(SummaryOut {
        from,
        to,
        tz: tz.name().to_string(),
        overall: figures(None),
        by_channel: channels.iter().map(|name| (name.clone(), figures(Some(name)))).collect(),
    })
}

async fn timeseries(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json<TimeseriesOut>, ApiError> {
    let caller = auth::api(&state, &headers, Access::Read).await?;
    Ok(Json(timeseries_document(&state, &caller, &Params::parse(query.as_deref())).await?))
}

/// The timeseries report for `params` (`from`, `to`, `interval`, `channel`, `tz`).
pub async fn timeseries_document(
    state: &AppState,
    caller: &ApiCaller,
    params: &Params,
) -> Result<TimeseriesOut, ApiError> {
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
    let data = rows
        .iter()
        .map(|b| BucketOut {
            bucket: b.bucket,
            tickets_opened: b.tickets_opened,
            tickets_closed: b.tickets_closed,
            messages_in: b.messages_in,
            messages_out: b.messages_out,
        })
        .collect();
    Ok(TimeseriesOut { interval: interval.as_str(), tz: tz.name().to_string(), from, to, data })
}
