//! Report rollups (the tables of `migrations/…_report_rollups.sql`): the figures of every
//! minute per channel, summed into quarter hour, hour and day rows (and each day's hour
//! counts packed in one row, `store::day_hours`, for timeseries by the hour), maintained by
//! the rollup task up to a per-tenant watermark (a whole minute: the quarter, hour and day
//! holding it have rows for their part before it), and their reads. The raw rows' figures of any time
//! ranges, which fill the minute rows and answer the part of a report the rollups do not
//! cover, are `store::raw_figures`.
//!
//! What keeps them true when the past changes:
//! - a ticket whose `opened_at` (3Dolphins' `createdDate`) lies in the past, and a manual
//!   retry, cancel or replay of a delivery, mark their quarter dirty in their own transaction
//!   (`tickets::insert_new`, [`mark_deliveries_dirty`]), one row per ticket or delivery so
//!   no two transactions wait on one mark; the task deletes only marks it can see, that is
//!   committed ones, before it recomputes their quarters; reports read dirty quarters raw
//!   until then;
//! - deliveries still waiting when their minute was rolled up are kept in
//!   `report_unsettled` and counted by their status at query time, until the task folds them in;
//! - tickets rolled up without a channel are kept in `report_unknown_channel`; when one gets
//!   a channel the task recomputes its quarters;
//! - retention purges and contact erasure only empty bodies, and history rows never count,
//!   so neither changes a figure.
//!
//! The task's pass over a tenant is one transaction holding the tenant's watermark row, so
//! two processes never roll the same minutes twice.

use chrono::{DateTime, Duration, Utc};
use sqlx::{FromRow, PgConnection, PgExecutor};

/// The width of the finest rollup row: a window's edges that are not whole minutes, and
/// the time after the watermark, are all a report reads raw.
pub const MINUTE: Duration = Duration::minutes(1);
/// The width of the rows between minutes and hours (every time zone's hours start on a
/// quarter hour), and of what is marked dirty.
pub const QUARTER: Duration = Duration::minutes(15);

/// `date_bin` of a timestamp expression to its UTC quarter hour.
macro_rules! quarter_of {
    ($e:expr) => {
        concat!("date_bin('15 minutes', ", $e, ", TIMESTAMPTZ '2000-01-01 00:00:00+00')")
    };
}
pub(crate) use quarter_of;

/// `date_trunc` of a timestamp expression to its minute.
macro_rules! minute_of {
    ($e:expr) => {
        concat!("date_trunc('minute', ", $e, ")")
    };
}
pub(crate) use minute_of;

/// A half-open time range `[start, end)`.
pub type Range = (DateTime<Utc>, DateTime<Utc>);

/// Sorted, with overlapping or touching ranges joined.
pub fn merge(mut ranges: Vec<Range>) -> Vec<Range> {
    ranges.sort();
    let mut merged: Vec<Range> = Vec::with_capacity(ranges.len());
    for (s, e) in ranges {
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    merged
}

pub(super) fn split(ranges: &[Range]) -> (Vec<DateTime<Utc>>, Vec<DateTime<Utc>>) {
    ranges.iter().copied().unzip()
}

/// Tickets opened, closed and reopened per channel (for the tickets open now).
#[derive(Debug, Clone, FromRow)]
pub struct Turnover {
    pub channel: String,
    pub opened: i64,
    pub closed: i64,
    pub reopened: i64,
}

/// Tickets open now per channel, counted (for a tenant without rollups yet).
pub async fn open_tickets(
    db: impl PgExecutor<'_>,
    owner: &str,
    channel: Option<&str>,
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT COALESCE(channel, ''), count(*) FROM tickets
         WHERE owner = $1 AND status = 'open' AND ($2::text IS NULL OR channel = $2) GROUP BY 1",
    )
    .bind(owner)
    .bind(channel)
    .fetch_all(db)
    .await
}

/// Opened, closed and reopened over every rolled-up quarter, per channel.
pub async fn totals(db: impl PgExecutor<'_>, owner: &str, channel: Option<&str>) -> Result<Vec<Turnover>, sqlx::Error> {
    sqlx::query_as(
        "SELECT channel, tickets_opened AS opened, tickets_closed AS closed, tickets_reopened AS reopened
         FROM report_totals WHERE owner = $1 AND ($2::text IS NULL OR channel = $2)",
    )
    .bind(owner)
    .bind(channel)
    .fetch_all(db)
    .await
}

/// The rollup state a report plans with: the watermark and the dirty quarters.
pub struct Coverage {
    pub rolled_to: Option<DateTime<Utc>>,
    pub dirty: Vec<DateTime<Utc>>,
}

pub async fn coverage(db: &mut PgConnection, owner: &str) -> Result<Coverage, sqlx::Error> {
    let rolled_to = sqlx::query_scalar("SELECT rolled_to FROM report_watermarks WHERE owner = $1")
        .bind(owner)
        .fetch_optional(&mut *db)
        .await?;
    let dirty = sqlx::query_scalar("SELECT DISTINCT start FROM report_dirty WHERE owner = $1 ORDER BY start")
        .bind(owner)
        .fetch_all(&mut *db)
        .await?;
    Ok(Coverage { rolled_to, dirty })
}

/// One rollup row to read: its span and start.
pub type Piece = (Span, DateTime<Utc>);

/// Which rollup rows to read: one span and its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Span {
    Minute,
    Quarter,
    Hour,
    Day,
}

impl Span {
    pub fn as_str(self) -> &'static str {
        match self {
            Span::Minute => "minute",
            Span::Quarter => "quarter",
            Span::Hour => "hour",
            Span::Day => "day",
        }
    }

    pub fn width(self) -> Duration {
        match self {
            Span::Minute => MINUTE,
            Span::Quarter => QUARTER,
            Span::Hour => Duration::hours(1),
            Span::Day => Duration::days(1),
        }
    }
}

/// One rollup row's counts, as read by a report.
#[derive(Debug, Clone, FromRow)]
pub struct Rolled {
    pub start: DateTime<Utc>,
    pub channel: String,
    pub tickets_opened: i64,
    pub tickets_closed: i64,
    pub tickets_reopened: i64,
    pub messages_in: i64,
    pub messages_out: i64,
    pub first_response_n: i64,
    pub first_response_sum_us: i64,
    pub resolution_n: i64,
    pub resolution_sum_us: i64,
    pub deliveries_delivered: i64,
    pub deliveries_dead: i64,
    pub deliveries_cancelled: i64,
}

/// One rollup row's duration histograms.
#[derive(Debug, Clone, FromRow)]
pub struct RolledHistograms {
    pub channel: String,
    pub first_response_bins: Vec<i32>,
    pub first_response_counts: Vec<i64>,
    pub resolution_bins: Vec<i32>,
    pub resolution_counts: Vec<i64>,
}

/// `pieces` as runs of consecutive pieces of one span: `(span, from, to)` arrays.
pub(super) fn runs(pieces: &[(Span, DateTime<Utc>)]) -> (Vec<&'static str>, Vec<DateTime<Utc>>, Vec<DateTime<Utc>>) {
    let mut runs: Vec<(Span, DateTime<Utc>, DateTime<Utc>)> = Vec::new();
    let mut sorted = pieces.to_vec();
    sorted.sort_by_key(|(span, start)| (*start, *span));
    for (span, start) in sorted {
        match runs.last_mut() {
            Some((s, _, end)) if *s == span && *end == start => *end = start + span.width(),
            _ => runs.push((span, start, start + span.width())),
        }
    }
    let spans = runs.iter().map(|(s, _, _)| s.as_str()).collect();
    let froms = runs.iter().map(|(_, f, _)| *f).collect();
    let tos = runs.iter().map(|(_, _, t)| *t).collect();
    (spans, froms, tos)
}

/// The `FROM` of a read of `table`'s rows in the runs of pieces bound as `$3`–`$5` ([`runs`]),
/// `$1` the owner and `$2` a channel or NULL: one index range per run, fenced (`OFFSET 0`).
fn over_pieces(table: &str, columns: &str) -> String {
    format!(
        "FROM unnest($3::text[], $4::timestamptz[], $5::timestamptz[]) AS p(span, s, e)
         JOIN LATERAL (SELECT {columns} FROM {table} x
                       WHERE x.owner = $1 AND x.span = p.span AND x.start >= p.s AND x.start < p.e
                         AND ($2::text IS NULL OR x.channel = $2) OFFSET 0) x ON true"
    )
}

/// The rollup rows (counts) of `pieces`; consecutive pieces of one span are read as one
/// index range.
pub async fn rolled(
    db: impl PgExecutor<'_>,
    owner: &str,
    channel: Option<&str>,
    pieces: &[(Span, DateTime<Utc>)],
) -> Result<Vec<Rolled>, sqlx::Error> {
    if pieces.is_empty() {
        return Ok(Vec::new());
    }
    let (spans, froms, tos) = runs(pieces);
    sqlx::query_as(&format!(
        "SELECT x.* {}",
        over_pieces(
            "report_rollups",
            "start, channel, tickets_opened, tickets_closed, tickets_reopened, messages_in, messages_out,
                 first_response_n, first_response_sum_us, resolution_n, resolution_sum_us,
                 deliveries_delivered, deliveries_dead, deliveries_cancelled"
        )
    ))
    .bind(owner)
    .bind(channel)
    .bind(spans)
    .bind(froms)
    .bind(tos)
    .fetch_all(db)
    .await
}

/// A timeseries' counts of one rollup row.
#[derive(Debug, Clone, FromRow)]
pub struct RolledCounts {
    pub start: DateTime<Utc>,
    pub tickets_opened: i64,
    pub tickets_closed: i64,
    pub messages_in: i64,
    pub messages_out: i64,
}

/// The counts a timeseries needs of `pieces`, one row per piece and channel (the caller
/// adds them into its buckets: summed here, a month of hours cost a sort of every row, half
/// the statement's time).
pub async fn rolled_counts(
    db: impl PgExecutor<'_>,
    owner: &str,
    channel: Option<&str>,
    pieces: &[(Span, DateTime<Utc>)],
) -> Result<Vec<RolledCounts>, sqlx::Error> {
    if pieces.is_empty() {
        return Ok(Vec::new());
    }
    let (spans, froms, tos) = runs(pieces);
    sqlx::query_as(&format!(
        "SELECT x.* {}",
        over_pieces("report_rollups", "start, tickets_opened, tickets_closed, messages_in, messages_out")
    ))
    .bind(owner)
    .bind(channel)
    .bind(spans)
    .bind(froms)
    .bind(tos)
    .fetch_all(db)
    .await
}

/// The duration histograms of `pieces`.
pub async fn rolled_histograms(
    db: impl PgExecutor<'_>,
    owner: &str,
    channel: Option<&str>,
    pieces: &[(Span, DateTime<Utc>)],
) -> Result<Vec<RolledHistograms>, sqlx::Error> {
    if pieces.is_empty() {
        return Ok(Vec::new());
    }
    let (spans, froms, tos) = runs(pieces);
    sqlx::query_as(&format!(
        "SELECT x.* {}",
        over_pieces(
            "report_histograms",
            "channel, first_response_bins, first_response_counts, resolution_bins, resolution_counts"
        )
    ))
    .bind(owner)
    .bind(channel)
    .bind(spans)
    .bind(froms)
    .bind(tos)
    .fetch_all(db)
    .await
}

/// Deliveries of rolled-up minutes in `ranges` that were waiting when rolled up, counted by
/// their status now, per channel.
#[derive(Debug, Clone, FromRow)]
pub struct Unsettled {
    pub channel: String,
    pub status: String,
    pub n: i64,
}

pub async fn unsettled(
    db: impl PgExecutor<'_>,
    owner: &str,
    channel: Option<&str>,
    ranges: &[Range],
) -> Result<Vec<Unsettled>, sqlx::Error> {
    if ranges.is_empty() {
        return Ok(Vec::new());
    }
    let (starts, ends) = split(ranges);
    sqlx::query_as(
        "WITH r AS (SELECT s, e FROM unnest($2::timestamptz[], $3::timestamptz[]) AS r(s, e))
         SELECT COALESCE(t.channel, '') AS channel, d.status, count(*) AS n
         FROM r JOIN LATERAL (SELECT delivery_id FROM report_unsettled u
                              WHERE u.owner = $1 AND u.start >= r.s AND u.start < r.e OFFSET 0) u ON true
         JOIN LATERAL (SELECT status, ticket_number FROM deliveries d WHERE d.owner = $1 AND d.id = u.delivery_id OFFSET 0) d ON true
         JOIN LATERAL (SELECT channel FROM tickets t WHERE t.owner = $1 AND t.ticket_number = d.ticket_number OFFSET 0) t ON true
         WHERE ($4::text IS NULL OR t.channel = $4)
         GROUP BY 1, 2",
    )
    .bind(owner)
    .bind(starts)
    .bind(ends)
    .bind(channel)
    .fetch_all(db)
    .await
}

/// Marks the quarters of deliveries `ids` (created at) dirty: a manual retry, cancel or
/// replay changes the status of deliveries a rollup may count as settled.
pub async fn mark_deliveries_dirty(
    db: impl PgExecutor<'_>,
    owner: &str,
    ids: &[uuid::Uuid],
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(concat!(
        "INSERT INTO report_dirty (owner, start, source, marked_at)
         SELECT $1, ",
        quarter_of!("d.created_at"),
        ", d.id::text, $3::timestamptz FROM deliveries d WHERE d.owner = $1 AND d.id = ANY($2)
         ON CONFLICT (owner, start, source) DO UPDATE SET marked_at = excluded.marked_at"
    ))
    .bind(owner)
    .bind(ids)
    .bind(now)
    .execute(db)
    .await?;
    Ok(())
}
