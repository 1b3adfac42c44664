//! The raw rows' figures ("partials") of any set of time ranges, per minute and channel:
//! what fills the report rollups' minute rows (`store::rollup_steps`) and answers the part
//! of a report the rollups do not cover (`crate::reports`). The figures are defined in
//! `store::reports`; `store::rollups` tells how the rollups stay true.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgExecutor};

use super::rollups::{minute_of, split, Range, Turnover};
use crate::reports::histogram::bin_sql;

/// The figures of the raw rows of one minute and channel (`channel` '' when unknown).
#[derive(Debug, Clone, Default, FromRow)]
pub struct Partial {
    pub start: DateTime<Utc>,
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
pub(super) fn partials_sql() -> String {
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
         SELECT s.q AS start, s.ch AS channel,
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
        opened_q = minute_of!("t.opened_at"),
        event_q = minute_of!("e.at"),
        first_q = minute_of!("t.first_response_at"),
        message_q = minute_of!("m.at"),
        delivery_q = minute_of!("d.created_at"),
        first_bin = bin_sql("us"),
        resolution_bin = bin_sql("us"),
        ticket_of = TICKET_OF,
    )
}

/// The raw-row figures of `ranges`, per minute and channel.
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
