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
use super::openapi::{doc, query_enum, query_integer, query_string, query_time, query_tz, Auth, Routes};
use super::params::Params;
use super::AppState;
use crate::reports::{self, Figures as ReportFigures, Window};
use crate::store::reports::Interval;

pub fn routes() -> Routes {
    let window = || {
        [
            query_time("from", "tickets opened (messages sent) at or after; default 30 days ago"),
            query_time("to", "before; default now"),
            query_string("channel", "only this channel (any case)"),
            query_tz(),
        ]
    };
    let sla = query_integer(
        "slaSeconds",
        "adds firstResponseWithinSla: first responses within this many seconds",
        1,
        MAX_SLA_SECONDS,
    );
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
            .query([sla])
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
    /// With `slaSeconds=N`: the first responses of the window that came within N seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_response_within_sla: Option<WithinSla>,
    pub resolution_seconds: Seconds,
    pub deliveries: DeliveryCounts,
}

/// First responses within the SLA: exact for whole seconds up to 100, whole minutes up to an
/// hour and whole hours up to a day; for other thresholds a response within 1 % of it may be
/// counted either side (the README, *Reports at any size*).
#[derive(Debug, Serialize, ToSchema)]
pub struct WithinSla {
    /// The threshold asked for.
    pub seconds: i64,
    pub count: i64,
    /// `count` over the window's first responses; `null` without any.
    pub share: Option<f64>,
}

/// A duration's distribution, in seconds; `null` when nothing was measured. Percentiles are
/// within 1 % of the exact `percentile_cont` (they are merged from rollup histograms); the
/// mean is exact.
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

/// The largest `slaSeconds` (a year).
const MAX_SLA_SECONDS: i64 = 31_536_000;

/// The label a channel gets in `byChannel` when the ticket never said.
const UNKNOWN_CHANNEL: &str = "unknown";

fn figures(f: &ReportFigures, sla: Option<i64>) -> Figures {
    let first = &f.first_response;
    Figures {
        tickets_opened: f.tickets_opened,
        tickets_closed: f.tickets_closed,
        tickets_open_now: f.tickets_open_now,
        messages_in: f.messages_in,
        messages_out: f.messages_out,
        first_response_seconds: seconds(first),
        first_response_within_sla: sla.map(|seconds| {
            let count = first.histogram.at_most(seconds as f64);
            WithinSla { seconds, count, share: (first.n > 0).then(|| count as f64 / first.n as f64) }
        }),
        resolution_seconds: seconds(&f.resolution),
        deliveries: DeliveryCounts {
            delivered: f.deliveries.delivered,
            failed: f.deliveries.failed,
            dead: f.deliveries.dead,
            pending: f.deliveries.pending,
            cancelled: f.deliveries.cancelled,
        },
    }
}

fn seconds(d: &reports::Durations) -> Seconds {
    Seconds { p50: d.histogram.percentile(0.5), p90: d.histogram.percentile(0.9), mean: d.mean() }
}

async fn summary(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json<SummaryOut>, ApiError> {
    let caller = auth::api(&state, &headers, Access::Read).await?;
    Ok(Json(summary_document(&state, &caller, &Params::parse(query.as_deref())).await?))
}

/// `slaSeconds`, if given: a whole number of seconds, 1 to a year.
fn sla_seconds(params: &Params) -> Result<Option<i64>, ApiError> {
    let Some(raw) = params.get("slaSeconds") else { return Ok(None) };
    match raw.parse::<i64>() {
        Ok(n) if (1..=MAX_SLA_SECONDS).contains(&n) => Ok(Some(n)),
        _ => Err(ApiError::parameter(
            "slaSeconds",
            format!("{raw:?} is not a whole number of seconds from 1 to {MAX_SLA_SECONDS}"),
        )),
    }
}

/// The summary report for `params` (`from`, `to`, `channel`, `tz`, `slaSeconds`).
pub async fn summary_document(state: &AppState, caller: &ApiCaller, params: &Params) -> Result<SummaryOut, ApiError> {
    let tz = params.timezone(caller.timezone)?;
    let (from, to) = params.time_range(tz, state.clock.now())?;
    let sla = sla_seconds(params)?;
    let channel = params.get("channel").map(str::to_lowercase);
    let window = Window { owner: &caller.owner, from, to, channel: channel.as_deref() };
    let by_channel = reports::summary(&state.report_pool, &window).await?;
    let mut overall = ReportFigures::default();
    let mut labelled: BTreeMap<String, ReportFigures> = BTreeMap::new();
    for (channel, f) in &by_channel {
        overall.merge(f);
        let label = if channel.is_empty() { UNKNOWN_CHANNEL } else { channel };
        labelled.entry(label.to_string()).or_default().merge(f);
    }
    Ok(SummaryOut {
        from,
        to,
        tz: tz.name().to_string(),
        overall: figures(&overall, sla),
        by_channel: labelled.iter().map(|(name, f)| (name.clone(), figures(f, sla))).collect(),
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
    let window = Window { owner: &caller.owner, from, to, channel: channel.as_deref() };
    let starts = reports::buckets::bucket_starts(from, to, interval, tz);
    let counts = reports::timeseries(&state.report_pool, &window, &starts).await?;
    let data = starts
        .iter()
        .zip(counts)
        .map(|(bucket, c)| BucketOut {
            bucket: *bucket,
            tickets_opened: c.tickets_opened,
            tickets_closed: c.tickets_closed,
            messages_in: c.messages_in,
            messages_out: c.messages_out,
        })
        .collect();
    Ok(TimeseriesOut { interval: interval.as_str(), tz: tz.name().to_string(), from, to, data })
}
