//! Report rollups (the tables of `migrations/…_report_rollups.sql`): the figures of every
//! quarter hour per channel, summed into hour and day rows, maintained by the rollup task up
//! to a per-tenant watermark; and the raw-row figures ("partials") of any set of time ranges,
//! which both fill a quarter and answer the part of a report the rollups do not cover.
//!
//! What keeps them true when the past changes:
//! - a ticket whose `opened_at` (3Dolphins' `createdDate`) lies in the past, and a manual
//!   retry, cancel or replay of a delivery, mark their quarter dirty in their own transaction
//!   (`tickets::insert_new`, [`mark_deliveries_dirty`]), one row per ticket or delivery so
//!   no two transactions wait on one mark; the task deletes only marks it can see, that is
//!   committed ones, before it recomputes their quarters; reports read dirty quarters raw
//!   until then;
//! - deliveries still waiting when their quarter was rolled up are kept in
//!   `report_unsettled` and counted by their status at query time, until the task folds them in;
//! - tickets rolled up without a channel are kept in `report_unknown_channel`; when one gets
//!   a channel the task recomputes its quarters;
//! - retention purges and contact erasure only empty bodies, and history rows never count,
//!   so neither changes a figure.
//!
//! The task's pass over a tenant is one transaction holding the tenant's watermark row, so
//! two processes never roll the same quarters twice.

use chrono::{DateTime, Duration, DurationRound, Utc};
use sqlx::{FromRow, PgConnection, PgExecutor};

use crate::reports::histogram::bin_sql;

/// The width of the finest rollup row.
pub const QUARTER: Duration = Duration::minutes(15);

/// `date_bin` of a timestamp expression to its UTC quarter hour.
macro_rules! quarter_of {
    ($e:expr) => {
        concat!("date_bin('15 minutes', ", $e, ", TIMESTAMPTZ '2000-01-01 00:00:00+00')")
    };
}
pub(crate) use quarter_of;

/// The start of the quarter hour holding `t`.
pub fn floor_quarter(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(QUARTER).unwrap_or(t)
}

/// A half-open time range `[start, end)`.
pub type Range = (DateTime<Utc>, DateTime<Utc>);

fn split(ranges: &[Range]) -> (Vec<DateTime<Utc>>, Vec<DateTime<Utc>>) {
    ranges.iter().copied().unzip()
}

/// The figures of the raw rows of one quarter and channel (`channel` '' when unknown).
#[derive(Debug, Clone, Default, FromRow)]
pub struct Partial {
    pub quarter: DateTime<Utc>,
    pub channel: String,
    pub tickets_opened: i64,
    pub tickets_closed: i64,
    pub tickets_reopened: i64,
    pub messages_in: i64,
    pub messages_out: i64,
    pub first_response_n: i64,
    pub first_response_sum_us: i64,
    pub first_response_bins: Vec<i32>,
    pub first_response_counts: Vec<i64>,
    pub resolution_n: i64,
    pub resolution_sum_us: i64,
    pub resolution_bins: Vec<i32>,
    pub resolution_counts: Vec<i64>,
    pub deliveries_pending: i64,
    pub deliveries_failed: i64,
    pub deliveries_delivered: i64,
    pub deliveries_dead: i64,
    pub deliveries_cancelled: i64,
}

/// A ticket by primary key, joined `LATERAL` to each row that names it (followed by the
/// ticket number expression). Every join of these queries is written so, each subquery
/// fenced with `OFFSET 0` so PostgreSQL cannot flatten it: the ranges come as arrays,
/// whose rows the planner cannot estimate, and a plain join was planned as a hash join
/// over every ticket of the tenant (468 ms for a 200 000-ticket tenant, against 1 ms by
/// key and index range).
const TICKET_OF: &str = "SELECT channel, first_message_at FROM tickets t WHERE t.owner = $1 AND t.ticket_number =";

/// The query of [`Partial`] rows: `$1` owner, `$2`/`$3` the ranges' starts and ends, `$4`
/// a channel or NULL. Each family is read by its own time column (the report definitions
/// in `store::reports`), one index range scan per range.
fn partials_sql() -> String {
    let us = |a: &str, b: &str| format!("(EXTRACT(EPOCH FROM {a} - {b}) * 1000000)::bigint");
    let resolution_us = us("e.at", "t.first_message_at");
    let first_response_us = us("t.first_response_at", "t.first_message_at");
    let channel = "($4::text IS NULL OR t.channel = $4)";
    format!(
        "WITH r AS (SELECT s, e FROM unnest($2::timestamptz[], $3::timestamptz[]) AS r(s, e)),
         opened AS (
             SELECT {opened_q} AS q, COALESCE(t.channel, '') AS ch, count(*) AS n
             FROM r JOIN LATERAL (SELECT opened_at, channel FROM tickets t
                                  WHERE t.owner = $1 AND t.opened_at >= r.s AND t.opened_at < r.e OFFSET 0) t ON true
             WHERE {channel} GROUP BY 1, 2),
         changes AS MATERIALIZED (
             SELECT {event_q} AS q, COALESCE(t.channel, '') AS ch, e.kind,
                    CASE WHEN e.kind = 'closed' AND e.at >= t.first_message_at THEN {resolution_us} END AS us
             FROM r JOIN LATERAL (SELECT at, kind, ticket_number FROM ticket_events e
                                  WHERE e.owner = $1 AND e.kind IN ('closed', 'reopened')
                                    AND e.at >= r.s AND e.at < r.e OFFSET 0) e ON true
             JOIN LATERAL ({ticket_of} e.ticket_number OFFSET 0) t ON true
             WHERE {channel}),
         firsts AS MATERIALIZED (
             SELECT {first_q} AS q, COALESCE(t.channel, '') AS ch, {first_response_us} AS us
             FROM r JOIN LATERAL (SELECT first_response_at, first_message_at, channel FROM tickets t
                                  WHERE t.owner = $1 AND t.first_response_at IS NOT NULL
                                    AND t.first_response_at >= r.s AND t.first_response_at < r.e OFFSET 0) t ON true
             WHERE t.first_message_at IS NOT NULL AND t.first_response_at >= t.first_message_at AND {channel}),
         msgs AS (
             SELECT {message_q} AS q, COALESCE(t.channel, '') AS ch,
                    count(*) FILTER (WHERE m.direction = 'in') AS n_in,
                    count(*) FILTER (WHERE m.direction = 'out') AS n_out
             FROM r JOIN LATERAL (SELECT at, direction, ticket_number FROM messages m
                                  WHERE m.owner = $1 AND m.at >= r.s AND m.at < r.e AND m.source <> 'history' OFFSET 0) m ON true
             JOIN LATERAL ({ticket_of} m.ticket_number OFFSET 0) t ON true
             WHERE {channel} GROUP BY 1, 2),
         dels AS (
             SELECT {delivery_q} AS q, COALESCE(t.channel, '') AS ch,
                    count(*) FILTER (WHERE d.status = 'pending') AS pending,
                    count(*) FILTER (WHERE d.status = 'failed') AS failed,
                    count(*) FILTER (WHERE d.status = 'delivered') AS delivered,
                    count(*) FILTER (WHERE d.status = 'dead') AS dead,
                    count(*) FILTER (WHERE d.status = 'cancelled') AS cancelled
             FROM r JOIN LATERAL (SELECT created_at, status, ticket_number FROM deliveries d
                                  WHERE d.owner = $1 AND d.created_at >= r.s AND d.created_at < r.e OFFSET 0) d ON true
             JOIN LATERAL ({ticket_of} d.ticket_number OFFSET 0) t ON true
             WHERE {channel} GROUP BY 1, 2),
         first_bins AS (
             SELECT q, ch, sum(k)::bigint AS n, sum(us)::bigint AS sum_us,
                    array_agg(bin ORDER BY bin) AS bins, array_agg(k ORDER BY bin) AS counts
             FROM (SELECT q, ch, {first_bin} AS bin, count(*) AS k, sum(us) AS us FROM firsts GROUP BY 1, 2, 3) b
             GROUP BY 1, 2),
         resolution_bins AS (
             SELECT q, ch, sum(k)::bigint AS n, sum(us)::bigint AS sum_us,
                    array_agg(bin ORDER BY bin) AS bins, array_agg(k ORDER BY bin) AS counts
             FROM (SELECT q, ch, {resolution_bin} AS bin, count(*) AS k, sum(us) AS us
                   FROM changes WHERE us IS NOT NULL GROUP BY 1, 2, 3) b
             GROUP BY 1, 2),
         scalars AS (
             SELECT q, ch, sum(opened) AS opened, sum(closed) AS closed, sum(reopened) AS reopened,
                    sum(n_in) AS n_in, sum(n_out) AS n_out, sum(pending) AS pending, sum(failed) AS failed,
                    sum(delivered) AS delivered, sum(dead) AS dead, sum(cancelled) AS cancelled
             FROM (
                 SELECT q, ch, n AS opened, 0 AS closed, 0 AS reopened, 0 AS n_in, 0 AS n_out,
                        0 AS pending, 0 AS failed, 0 AS delivered, 0 AS dead, 0 AS cancelled FROM opened
                 UNION ALL
                 SELECT q, ch, 0, count(*) FILTER (WHERE kind = 'closed'), count(*) FILTER (WHERE kind = 'reopened'),
                        0, 0, 0, 0, 0, 0, 0 FROM changes GROUP BY 1, 2
                 UNION ALL
                 SELECT q, ch, 0, 0, 0, n_in, n_out, 0, 0, 0, 0, 0 FROM msgs
                 UNION ALL
                 SELECT q, ch, 0, 0, 0, 0, 0, pending, failed, delivered, dead, cancelled FROM dels
                 UNION ALL
                 SELECT q, ch, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 FROM first_bins) x
             GROUP BY 1, 2)
         SELECT s.q AS quarter, s.ch AS channel,
                s.opened::bigint AS tickets_opened, s.closed::bigint AS tickets_closed,
                s.reopened::bigint AS tickets_reopened, s.n_in::bigint AS messages_in, s.n_out::bigint AS messages_out,
                COALESCE(f.n, 0) AS first_response_n, COALESCE(f.sum_us, 0) AS first_response_sum_us,
                COALESCE(f.bins, '{{}}') AS first_response_bins, COALESCE(f.counts, '{{}}') AS first_response_counts,
                COALESCE(rb.n, 0) AS resolution_n, COALESCE(rb.sum_us, 0) AS resolution_sum_us,
                COALESCE(rb.bins, '{{}}') AS resolution_bins, COALESCE(rb.counts, '{{}}') AS resolution_counts,
                s.pending::bigint AS deliveries_pending, s.failed::bigint AS deliveries_failed,
                s.delivered::bigint AS deliveries_delivered, s.dead::bigint AS deliveries_dead,
                s.cancelled::bigint AS deliveries_cancelled
         FROM scalars s
         LEFT JOIN first_bins f ON f.q = s.q AND f.ch = s.ch
         LEFT JOIN resolution_bins rb ON rb.q = s.q AND rb.ch = s.ch",
        opened_q = quarter_of!("t.opened_at"),
        event_q = quarter_of!("e.at"),
        first_q = quarter_of!("t.first_response_at"),
        message_q = quarter_of!("m.at"),
        delivery_q = quarter_of!("d.created_at"),
        first_bin = bin_sql("us"),
        resolution_bin = bin_sql("us"),
        ticket_of = TICKET_OF,
    )
}

/// The raw-row figures of `ranges`, per quarter and channel.
pub async fn partials(
    db: impl PgExecutor<'_>,
    owner: &str,
    channel: Option<&str>,
    ranges: &[Range],
) -> Result<Vec<Partial>, sqlx::Error> {
    if ranges.is_empty() {
        return Ok(Vec::new());
    }
    let (starts, ends) = split(ranges);
    sqlx::query_as(&partials_sql()).bind(owner).bind(starts).bind(ends).bind(channel).fetch_all(db).await
}

/// Tickets opened, closed and reopened in `ranges` per channel, from the raw rows (for the
/// tickets open now).
#[derive(Debug, Clone, FromRow)]
pub struct Turnover {
    pub channel: String,
    pub opened: i64,
    pub closed: i64,
    pub reopened: i64,
}

pub async fn raw_turnover(
    db: impl PgExecutor<'_>,
    owner: &str,
    channel: Option<&str>,
    ranges: &[Range],
) -> Result<Vec<Turnover>, sqlx::Error> {
    let (starts, ends) = split(ranges);
    sqlx::query_as(
        "WITH r AS (SELECT s, e FROM unnest($2::timestamptz[], $3::timestamptz[]) AS r(s, e))
         SELECT ch AS channel, sum(o)::bigint AS opened, sum(c)::bigint AS closed, sum(re)::bigint AS reopened FROM (
             SELECT COALESCE(t.channel, '') AS ch, count(*) AS o, 0 AS c, 0 AS re
             FROM r JOIN LATERAL (SELECT channel FROM tickets t
                                  WHERE t.owner = $1 AND t.opened_at >= r.s AND t.opened_at < r.e OFFSET 0) t ON true
             WHERE ($4::text IS NULL OR t.channel = $4) GROUP BY 1
             UNION ALL
             SELECT COALESCE(t.channel, ''), 0, count(*) FILTER (WHERE e.kind = 'closed'),
                    count(*) FILTER (WHERE e.kind = 'reopened')
             FROM r JOIN LATERAL (SELECT kind, ticket_number FROM ticket_events e
                                  WHERE e.owner = $1 AND e.kind IN ('closed', 'reopened')
                                    AND e.at >= r.s AND e.at < r.e OFFSET 0) e ON true
             JOIN LATERAL (SELECT channel FROM tickets t WHERE t.owner = $1 AND t.ticket_number = e.ticket_number OFFSET 0) t ON true
             WHERE ($4::text IS NULL OR t.channel = $4) GROUP BY 1) x
         GROUP BY 1",
    )
    .bind(owner)
    .bind(starts)
    .bind(ends)
    .bind(channel)
    .fetch_all(db)
    .await
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

/// Which rollup rows to read: one span and its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Span {
    Quarter,
    Hour,
    Day,
}

impl Span {
    pub fn as_str(self) -> &'static str {
        match self {
            Span::Quarter => "quarter",
            Span::Hour => "hour",
            Span::Day => "day",
        }
    }

    pub fn width(self) -> Duration {
        match self {
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
fn runs(pieces: &[(Span, DateTime<Utc>)]) -> (Vec<&'static str>, Vec<DateTime<Utc>>, Vec<DateTime<Utc>>) {
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
    sqlx::query_as(
        "SELECT x.* FROM unnest($3::text[], $4::timestamptz[], $5::timestamptz[]) AS p(span, s, e)
         JOIN LATERAL (SELECT start, channel, tickets_opened, tickets_closed, tickets_reopened, messages_in,
                              messages_out, first_response_n, first_response_sum_us, resolution_n, resolution_sum_us,
                              deliveries_delivered, deliveries_dead, deliveries_cancelled
                       FROM report_rollups x
                       WHERE x.owner = $1 AND x.span = p.span AND x.start >= p.s AND x.start < p.e
                         AND ($2::text IS NULL OR x.channel = $2) OFFSET 0) x ON true",
    )
    .bind(owner)
    .bind(channel)
    .bind(spans)
    .bind(froms)
    .bind(tos)
    .fetch_all(db)
    .await
}

/// A timeseries' counts of one rollup row, summed over the channels.
#[derive(Debug, Clone, FromRow)]
pub struct RolledCounts {
    pub start: DateTime<Utc>,
    pub tickets_opened: i64,
    pub tickets_closed: i64,
    pub messages_in: i64,
    pub messages_out: i64,
}

/// The counts a timeseries needs of `pieces`, one row per piece (the channels summed here:
/// a month of hours is 720 rows, not 720 per channel).
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
    sqlx::query_as(
        "SELECT x.start, sum(x.tickets_opened)::bigint AS tickets_opened, sum(x.tickets_closed)::bigint AS tickets_closed,
                sum(x.messages_in)::bigint AS messages_in, sum(x.messages_out)::bigint AS messages_out
         FROM unnest($3::text[], $4::timestamptz[], $5::timestamptz[]) AS p(span, s, e)
         JOIN LATERAL (SELECT start, tickets_opened, tickets_closed, messages_in, messages_out
                       FROM report_rollups x
                       WHERE x.owner = $1 AND x.span = p.span AND x.start >= p.s AND x.start < p.e
                         AND ($2::text IS NULL OR x.channel = $2) OFFSET 0) x ON true
         GROUP BY x.start",
    )
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
    sqlx::query_as(
        "SELECT x.* FROM unnest($3::text[], $4::timestamptz[], $5::timestamptz[]) AS p(span, s, e)
         JOIN LATERAL (SELECT channel, first_response_bins, first_response_counts, resolution_bins, resolution_counts
                       FROM report_histograms x
                       WHERE x.owner = $1 AND x.span = p.span AND x.start >= p.s AND x.start < p.e
                         AND ($2::text IS NULL OR x.channel = $2) OFFSET 0) x ON true",
    )
    .bind(owner)
    .bind(channel)
    .bind(spans)
    .bind(froms)
    .bind(tos)
    .fetch_all(db)
    .await
}

/// Deliveries of rolled-up quarters in `ranges` that were waiting when rolled up, counted by
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
                              WHERE u.owner = $1 AND u.quarter >= r.s AND u.quarter < r.e OFFSET 0) u ON true
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

/// What one step of the rollup task did for a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// The watermark after the step.
    pub rolled_to: DateTime<Utc>,
    /// Quarters recomputed (newly covered, dirty, or re-attributed to a channel).
    pub quarters: i64,
    /// Whether the watermark reached `limit`.
    pub caught_up: bool,
}

/// One step for `owner`: moves its watermark towards `limit` (at most `step` at once) and
/// recomputes the quarters it passes, the dirty ones and those of tickets that got a channel;
/// folds settled deliveries in. One transaction holding the watermark row; `None` when
/// another process holds it (it is doing this work).
pub async fn roll_step(
    conn: &mut PgConnection,
    owner: &str,
    limit: DateTime<Utc>,
    step: Duration,
) -> Result<Option<Step>, sqlx::Error> {
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    let Some(from) = lock_watermark(&mut tx, owner, limit).await? else { return Ok(None) };
    let to = (from + step).min(limit).max(from);
    let mut quarters: Vec<DateTime<Utc>> =
        sqlx::query_scalar("DELETE FROM report_dirty WHERE owner = $1 AND start < $2 RETURNING start")
            .bind(owner)
            .bind(to)
            .fetch_all(&mut *tx)
            .await?;
    quarters.extend(quarters_of_tickets_that_got_a_channel(&mut tx, owner).await?);
    let mut ranges: Vec<Range> = quarters.iter().filter(|q| **q < from).map(|q| (*q, *q + QUARTER)).collect();
    if to > from {
        ranges.push((from, to));
    }
    let ranges = merge(ranges);
    let recomputed = ranges.iter().map(|(s, e)| (*e - *s).num_minutes() / 15).sum();
    if !ranges.is_empty() {
        recompute_quarters(&mut tx, owner, &ranges).await?;
    }
    settle(&mut tx, owner).await?;
    if !ranges.is_empty() {
        recompute_levels(&mut tx, owner, &ranges).await?;
    }
    sqlx::query("UPDATE report_watermarks SET rolled_to = $2 WHERE owner = $1")
        .bind(owner)
        .bind(to)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Some(Step { rolled_to: to, quarters: recomputed, caught_up: to >= limit }))
}

/// Locks `owner`'s watermark row (creating it at the day of its first ticket, or at `limit`
/// for a tenant without any); `None` when another transaction holds it.
async fn lock_watermark(
    tx: &mut PgConnection,
    owner: &str,
    limit: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    let lock = "SELECT rolled_to FROM report_watermarks WHERE owner = $1 FOR UPDATE SKIP LOCKED";
    if let Some(w) = sqlx::query_scalar(lock).bind(owner).fetch_optional(&mut *tx).await? {
        return Ok(Some(w));
    }
    // Every counted row is written with or after its ticket: the first ticket stored (or
    // opened, for a createdDate in the past) bounds them all; a day earlier allows for clocks.
    sqlx::query(
        "INSERT INTO report_watermarks (owner, rolled_to)
         SELECT $1, COALESCE(date_bin('1 day', least(min(opened_at), min(created_at)) - interval '1 day',
                                      TIMESTAMPTZ '2000-01-01 00:00:00+00'), $2)
         FROM tickets WHERE owner = $1
         ON CONFLICT (owner) DO NOTHING",
    )
    .bind(owner)
    .bind(limit)
    .execute(&mut *tx)
    .await?;
    sqlx::query_scalar(lock).bind(owner).fetch_optional(&mut *tx).await
}

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

/// The quarters holding rows of tickets rolled up without a channel that have one now (their
/// rows move from '' to it); forgets those tickets.
async fn quarters_of_tickets_that_got_a_channel(
    tx: &mut PgConnection,
    owner: &str,
) -> Result<Vec<DateTime<Utc>>, sqlx::Error> {
    let named: Vec<String> = sqlx::query_scalar(
        "DELETE FROM report_unknown_channel u
         USING (SELECT k.ticket_number FROM report_unknown_channel k
                JOIN LATERAL (SELECT channel FROM tickets t WHERE t.owner = $1 AND t.ticket_number = k.ticket_number OFFSET 0) t ON true
                WHERE k.owner = $1 AND t.channel IS NOT NULL) named
         WHERE u.owner = $1 AND u.ticket_number = named.ticket_number
         RETURNING u.ticket_number",
    )
    .bind(owner)
    .fetch_all(&mut *tx)
    .await?;
    if named.is_empty() {
        return Ok(Vec::new());
    }
    sqlx::query_scalar(concat!(
        "SELECT DISTINCT ",
        quarter_of!("at"),
        " FROM (
             SELECT opened_at AS at FROM tickets WHERE owner = $1 AND ticket_number = ANY($2)
             UNION ALL SELECT first_response_at FROM tickets
                 WHERE owner = $1 AND ticket_number = ANY($2) AND first_response_at IS NOT NULL
             UNION ALL SELECT at FROM messages WHERE owner = $1 AND ticket_number = ANY($2)
             UNION ALL SELECT at FROM ticket_events WHERE owner = $1 AND ticket_number = ANY($2)
                 AND kind IN ('closed', 'reopened')
             UNION ALL SELECT created_at FROM deliveries WHERE owner = $1 AND ticket_number = ANY($2)) x"
    ))
    .bind(owner)
    .bind(&named)
    .fetch_all(&mut *tx)
    .await
}

/// Replaces the quarter rows of `ranges` with the raw rows' figures, keeping the totals and
/// the lists of waiting deliveries and channel-less tickets in step.
async fn recompute_quarters(tx: &mut PgConnection, owner: &str, ranges: &[Range]) -> Result<(), sqlx::Error> {
    let (starts, ends) = split(ranges);
    let totals_upsert = "ON CONFLICT (owner, channel) DO UPDATE SET
             tickets_opened = report_totals.tickets_opened + excluded.tickets_opened,
             tickets_closed = report_totals.tickets_closed + excluded.tickets_closed,
             tickets_reopened = report_totals.tickets_reopened + excluded.tickets_reopened";
    sqlx::query(&format!(
        "WITH r AS (SELECT s, e FROM unnest($2::timestamptz[], $3::timestamptz[]) AS r(s, e)),
         old AS (
             DELETE FROM report_rollups x USING r
             WHERE x.owner = $1 AND x.span = 'quarter' AND x.start >= r.s AND x.start < r.e
             RETURNING x.channel, x.tickets_opened, x.tickets_closed, x.tickets_reopened)
         INSERT INTO report_totals (owner, channel, tickets_opened, tickets_closed, tickets_reopened)
         SELECT $1, channel, -sum(tickets_opened), -sum(tickets_closed), -sum(tickets_reopened)
         FROM old GROUP BY channel
         {totals_upsert}"
    ))
    .bind(owner)
    .bind(&starts)
    .bind(&ends)
    .execute(&mut *tx)
    .await?;
    for table in ["report_histograms", "report_unsettled"] {
        let column = if table == "report_unsettled" { "quarter" } else { "start" };
        let span = if table == "report_unsettled" { "" } else { "AND x.span = 'quarter'" };
        sqlx::query(&format!(
            "DELETE FROM {table} x USING unnest($2::timestamptz[], $3::timestamptz[]) AS r(s, e)
             WHERE x.owner = $1 {span} AND x.{column} >= r.s AND x.{column} < r.e"
        ))
        .bind(owner)
        .bind(&starts)
        .bind(&ends)
        .execute(&mut *tx)
        .await?;
    }
    let channel_less: i64 = sqlx::query_scalar(&format!(
        "WITH p AS ({partials}),
         ins AS (
             INSERT INTO report_rollups (owner, span, start, channel, tickets_opened, tickets_closed,
                 tickets_reopened, messages_in, messages_out, first_response_n, first_response_sum_us,
                 resolution_n, resolution_sum_us, deliveries_delivered, deliveries_dead, deliveries_cancelled)
             SELECT $1, 'quarter', quarter, channel, tickets_opened, tickets_closed, tickets_reopened,
                    messages_in, messages_out, first_response_n, first_response_sum_us,
                    resolution_n, resolution_sum_us, deliveries_delivered, deliveries_dead, deliveries_cancelled
             FROM p
             RETURNING channel, tickets_opened, tickets_closed, tickets_reopened),
         histograms AS (
             INSERT INTO report_histograms (owner, span, start, channel, first_response_bins, first_response_counts,
                 resolution_bins, resolution_counts)
             SELECT $1, 'quarter', quarter, channel, first_response_bins, first_response_counts,
                    resolution_bins, resolution_counts
             FROM p WHERE first_response_n > 0 OR resolution_n > 0
             RETURNING 1),
         totals AS (
             INSERT INTO report_totals (owner, channel, tickets_opened, tickets_closed, tickets_reopened)
             SELECT $1, channel, sum(tickets_opened), sum(tickets_closed), sum(tickets_reopened)
             FROM ins GROUP BY channel
             {totals_upsert}
             RETURNING 1)
         SELECT count(*) FROM ins WHERE channel = ''",
        partials = partials_sql(),
    ))
    .bind(owner)
    .bind(&starts)
    .bind(&ends)
    .bind(None::<String>)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query(concat!(
        "INSERT INTO report_unsettled (owner, delivery_id, quarter)
         SELECT $1, d.id, ",
        quarter_of!("d.created_at"),
        " FROM unnest($2::timestamptz[], $3::timestamptz[]) AS r(s, e)
         JOIN LATERAL (SELECT id, created_at FROM deliveries d
                       WHERE d.owner = $1 AND d.created_at >= r.s AND d.created_at < r.e
                         AND d.status IN ('pending', 'failed') OFFSET 0) d ON true
         ON CONFLICT (owner, delivery_id) DO UPDATE SET quarter = excluded.quarter"
    ))
    .bind(owner)
    .bind(&starts)
    .bind(&ends)
    .execute(&mut *tx)
    .await?;
    if channel_less > 0 {
        remember_channel_less(tx, owner, &starts, &ends).await?;
    }
    Ok(())
}

/// Records the channel-less tickets with rows in the ranges.
async fn remember_channel_less(
    tx: &mut PgConnection,
    owner: &str,
    starts: &[DateTime<Utc>],
    ends: &[DateTime<Utc>],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "WITH r AS (SELECT s, e FROM unnest($2::timestamptz[], $3::timestamptz[]) AS r(s, e))
         INSERT INTO report_unknown_channel (owner, ticket_number)
         SELECT DISTINCT $1, x.ticket_number FROM (
             SELECT t.ticket_number FROM r JOIN LATERAL (SELECT ticket_number FROM tickets t
                 WHERE t.owner = $1 AND t.opened_at >= r.s AND t.opened_at < r.e OFFSET 0) t ON true
             UNION ALL SELECT t.ticket_number FROM r JOIN LATERAL (SELECT ticket_number FROM tickets t
                 WHERE t.owner = $1 AND t.first_response_at IS NOT NULL
                   AND t.first_response_at >= r.s AND t.first_response_at < r.e OFFSET 0) t ON true
             UNION ALL SELECT m.ticket_number FROM r JOIN LATERAL (SELECT ticket_number FROM messages m
                 WHERE m.owner = $1 AND m.at >= r.s AND m.at < r.e OFFSET 0) m ON true
             UNION ALL SELECT e.ticket_number FROM r JOIN LATERAL (SELECT ticket_number FROM ticket_events e
                 WHERE e.owner = $1 AND e.kind IN ('closed', 'reopened') AND e.at >= r.s AND e.at < r.e OFFSET 0) e ON true
             UNION ALL SELECT d.ticket_number FROM r JOIN LATERAL (SELECT ticket_number FROM deliveries d
                 WHERE d.owner = $1 AND d.created_at >= r.s AND d.created_at < r.e OFFSET 0) d ON true) x
         JOIN LATERAL (SELECT channel FROM tickets t WHERE t.owner = $1 AND t.ticket_number = x.ticket_number OFFSET 0) t ON true
         WHERE t.channel IS NULL
         ON CONFLICT DO NOTHING",
    )
    .bind(owner)
    .bind(starts)
    .bind(ends)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Folds deliveries that were waiting when their quarter was rolled up and are settled now
/// into the quarter, hour and day rows.
async fn settle(tx: &mut PgConnection, owner: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "WITH settled AS (
             DELETE FROM report_unsettled u
             USING (SELECT k.delivery_id, d.status, COALESCE(t.channel, '') AS channel FROM report_unsettled k
                    JOIN LATERAL (SELECT status, ticket_number FROM deliveries d
                                  WHERE d.owner = $1 AND d.id = k.delivery_id OFFSET 0) d ON true
                    JOIN LATERAL (SELECT channel FROM tickets t
                                  WHERE t.owner = $1 AND t.ticket_number = d.ticket_number OFFSET 0) t ON true
                    WHERE k.owner = $1 AND d.status NOT IN ('pending', 'failed')) s
             WHERE u.owner = $1 AND u.delivery_id = s.delivery_id
             RETURNING u.quarter, s.channel, s.status),
         levels AS (SELECT * FROM (VALUES ('quarter', interval '15 minutes'), ('hour', interval '1 hour'),
                                          ('day', interval '1 day')) AS l(span, width))
         INSERT INTO report_rollups (owner, span, start, channel, deliveries_delivered, deliveries_dead, deliveries_cancelled)
         SELECT $1, l.span, date_bin(l.width, s.quarter, TIMESTAMPTZ '2000-01-01 00:00:00+00'), s.channel,
                count(*) FILTER (WHERE s.status = 'delivered'), count(*) FILTER (WHERE s.status = 'dead'),
                count(*) FILTER (WHERE s.status = 'cancelled')
         FROM settled s CROSS JOIN levels l GROUP BY 2, 3, 4
         ON CONFLICT (owner, span, start, channel) DO UPDATE SET
             deliveries_delivered = report_rollups.deliveries_delivered + excluded.deliveries_delivered,
             deliveries_dead = report_rollups.deliveries_dead + excluded.deliveries_dead,
             deliveries_cancelled = report_rollups.deliveries_cancelled + excluded.deliveries_cancelled",
    )
    .bind(owner)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Rebuilds the hour and day rows over `ranges` from their quarter rows.
async fn recompute_levels(tx: &mut PgConnection, owner: &str, ranges: &[Range]) -> Result<(), sqlx::Error> {
    let mut levels: Vec<(Span, DateTime<Utc>)> = Vec::new();
    for span in [Span::Hour, Span::Day] {
        for (s, e) in ranges {
            let mut t = s.duration_trunc(span.width()).unwrap_or(*s);
            while t < *e {
                levels.push((span, t));
                t += span.width();
            }
        }
    }
    levels.sort();
    levels.dedup();
    let spans: Vec<&str> = levels.iter().map(|(s, _)| s.as_str()).collect();
    let starts: Vec<DateTime<Utc>> = levels.iter().map(|(_, t)| *t).collect();
    for table in ["report_rollups", "report_histograms"] {
        sqlx::query(&format!(
            "DELETE FROM {table} x USING unnest($2::text[], $3::timestamptz[]) AS l(span, start)
             WHERE x.owner = $1 AND x.span = l.span AND x.start = l.start"
        ))
        .bind(owner)
        .bind(&spans)
        .bind(&starts)
        .execute(&mut *tx)
        .await?;
    }
    // Each level row sums the quarter rows inside it.
    let inside = "l.start + CASE l.span WHEN 'hour' THEN interval '1 hour' ELSE interval '1 day' END";
    sqlx::query(&format!(
        "WITH l AS (SELECT * FROM unnest($2::text[], $3::timestamptz[]) AS l(span, start))
         INSERT INTO report_rollups (owner, span, start, channel, tickets_opened, tickets_closed,
             tickets_reopened, messages_in, messages_out, first_response_n, first_response_sum_us,
             resolution_n, resolution_sum_us, deliveries_delivered, deliveries_dead, deliveries_cancelled)
         SELECT $1, l.span, l.start, q.channel, sum(q.tickets_opened), sum(q.tickets_closed),
                sum(q.tickets_reopened), sum(q.messages_in), sum(q.messages_out), sum(q.first_response_n),
                sum(q.first_response_sum_us), sum(q.resolution_n), sum(q.resolution_sum_us),
                sum(q.deliveries_delivered), sum(q.deliveries_dead), sum(q.deliveries_cancelled)
         FROM l JOIN LATERAL (SELECT * FROM report_rollups q WHERE q.owner = $1 AND q.span = 'quarter'
                              AND q.start >= l.start AND q.start < {inside} OFFSET 0) q ON true
         GROUP BY l.span, l.start, q.channel"
    ))
    .bind(owner)
    .bind(&spans)
    .bind(&starts)
    .execute(&mut *tx)
    .await?;
    let merged = |prefix: &str| {
        format!(
            "SELECT l_span, l_start, channel, array_agg(k ORDER BY k) AS bins, array_agg(n ORDER BY k) AS counts
             FROM (SELECT l_span, l_start, channel, b.k, sum(b.n)::bigint AS n
                   FROM src, unnest(src.{prefix}_bins, src.{prefix}_counts) AS b(k, n) GROUP BY 1, 2, 3, 4) x
             GROUP BY 1, 2, 3"
        )
    };
    sqlx::query(&format!(
        "WITH l AS (SELECT * FROM unnest($2::text[], $3::timestamptz[]) AS l(span, start)),
         src AS MATERIALIZED (
             SELECT l.span AS l_span, l.start AS l_start, q.*
             FROM l JOIN LATERAL (SELECT * FROM report_histograms q WHERE q.owner = $1 AND q.span = 'quarter'
                                  AND q.start >= l.start AND q.start < {inside} OFFSET 0) q ON true),
         fr AS ({first}),
         res AS ({resolution}),
         keys AS (SELECT DISTINCT l_span, l_start, channel FROM src)
         INSERT INTO report_histograms (owner, span, start, channel, first_response_bins, first_response_counts,
             resolution_bins, resolution_counts)
         SELECT $1, k.l_span, k.l_start, k.channel, COALESCE(fr.bins, '{{}}'), COALESCE(fr.counts, '{{}}'),
                COALESCE(res.bins, '{{}}'), COALESCE(res.counts, '{{}}')
         FROM keys k
         LEFT JOIN fr USING (l_span, l_start, channel)
         LEFT JOIN res USING (l_span, l_start, channel)",
        first = merged("first_response"),
        resolution = merged("resolution"),
    ))
    .bind(owner)
    .bind(&spans)
    .bind(&starts)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Forgets every rollup of `owner` (the next steps rebuild them from the raw rows).
pub async fn forget(db: &mut PgConnection, owner: &str) -> Result<(), sqlx::Error> {
    let mut tx = sqlx::Connection::begin(&mut *db).await?;
    sqlx::query("SELECT 1 FROM report_watermarks WHERE owner = $1 FOR UPDATE").bind(owner).execute(&mut *tx).await?;
    for table in [
        "report_rollups",
        "report_histograms",
        "report_dirty",
        "report_unsettled",
        "report_unknown_channel",
        "report_totals",
    ] {
        sqlx::query(&format!("DELETE FROM {table} WHERE owner = $1")).bind(owner).execute(&mut *tx).await?;
    }
    sqlx::query("DELETE FROM report_watermarks WHERE owner = $1").bind(owner).execute(&mut *tx).await?;
    tx.commit().await
}
