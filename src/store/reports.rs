//! The report figures straight from the raw rows: the definitions in the README, *Shapes and
//! reports*, exact. The API answers from rollups (`crate::reports`); these are what the
//! rollups are checked against (`dolphin-bridge rollups verify`, the tests). Each family of figures is one query grouped by
//! `GROUPING SETS ((channel), ())`, so the overall row and the per-channel rows come from
//! the same scan and percentiles are computed over the right samples (they cannot be
//! merged from per-channel figures).
//!
//! Definitions: `ticketsOpened` = tickets whose `opened_at` is in the window (reopens not
//! counted); `ticketsClosed` = close events in the window; `ticketsOpenNow` = open at request
//! time; `messagesIn`/`messagesOut` = messages committed in the window (not `history`; echoes
//! store no message); first response = `first_response_at − first_message_at`, counted when
//! the first response happens (in the window); resolution = each close − `first_message_at`,
//! counted at the close; deliveries = created in the window, by current status.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgPool};

/// The window and filters of a report.
pub struct ReportScope<'a> {
    pub owner: &'a str,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub channel: Option<&'a str>,
    /// The threshold of `firstResponseWithinSla`.
    pub sla_seconds: Option<i64>,
}

/// One row per channel plus the overall row (`total = true`). Channel `None` on a
/// per-channel row means tickets whose channel is unknown.
#[derive(Debug, Clone, Default, FromRow)]
pub struct Counts {
    pub total: bool,
    pub channel: Option<String>,
    pub n: i64,
}

#[derive(Debug, Clone, Default, FromRow)]
pub struct Durations {
    pub total: bool,
    pub channel: Option<String>,
    pub n: i64,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub mean: Option<f64>,
    /// Samples of at most `sla_seconds` (first responses only).
    pub within: Option<i64>,
}

#[derive(Debug, Clone, Default, FromRow)]
pub struct Messages {
    pub total: bool,
    pub channel: Option<String>,
    pub n_in: i64,
    pub n_out: i64,
}

#[derive(Debug, Clone, Default, FromRow)]
pub struct DeliveryCounts {
    pub total: bool,
    pub channel: Option<String>,
    pub pending: i64,
    pub failed: i64,
    pub delivered: i64,
    pub dead: i64,
    pub cancelled: i64,
}

/// Every family of the summary report.
pub struct Summary {
    pub opened: Vec<Counts>,
    pub open_now: Vec<Counts>,
    pub closed: Vec<Durations>,
    pub first_response: Vec<Durations>,
    pub messages: Vec<Messages>,
    pub deliveries: Vec<DeliveryCounts>,
}

const BY_CHANNEL: &str = "GROUP BY GROUPING SETS ((t.channel), ())";

fn durations(expr: &str) -> String {
    format!(
        "percentile_cont(0.5) WITHIN GROUP (ORDER BY {expr}) AS p50,
         percentile_cont(0.9) WITHIN GROUP (ORDER BY {expr}) AS p90,
         avg({expr})::float8 AS mean"
    )
}

pub async fn summary(pool: &PgPool, s: &ReportScope<'_>) -> Result<Summary, sqlx::Error> {
    let head = "GROUPING(t.channel) = 1 AS total, t.channel";
    let channel = "($4::text IS NULL OR t.channel = $4)";
    let opened = format!(
        "SELECT {head}, count(*) AS n FROM tickets t
         WHERE t.owner = $1 AND t.opened_at >= $2 AND t.opened_at < $3 AND {channel} {BY_CHANNEL}"
    );
    let open_now = format!(
        "SELECT {head}, count(*) AS n FROM tickets t
         WHERE t.owner = $1 AND t.status = 'open' AND $2::timestamptz IS NOT NULL AND $3::timestamptz IS NOT NULL
           AND {channel} {BY_CHANNEL}"
    );
    // Resolution samples: closes after the first customer message.
    let resolution = "EXTRACT(EPOCH FROM e.at - t.first_message_at)::float8";
    let closed = format!(
        "SELECT {head}, count(*) AS n, NULL::bigint AS within, {} FROM ticket_events e
         JOIN tickets t ON t.owner = e.owner AND t.ticket_number = e.ticket_number
         WHERE e.owner = $1 AND e.kind = 'closed' AND e.at >= $2 AND e.at < $3 AND {channel} {BY_CHANNEL}",
        durations(&format!("CASE WHEN e.at >= t.first_message_at THEN {resolution} END"))
    );
    let first_response = format!(
        "SELECT {head}, count(*) AS n,
                count(*) FILTER (WHERE t.first_response_at - t.first_message_at <= make_interval(secs => $5)) AS within,
                {} FROM tickets t
         WHERE t.owner = $1 AND t.first_response_at >= $2 AND t.first_response_at < $3
           AND t.first_message_at IS NOT NULL AND t.first_response_at >= t.first_message_at
           AND {channel} {BY_CHANNEL}",
        durations("EXTRACT(EPOCH FROM t.first_response_at - t.first_message_at)::float8")
    );
    let messages = format!(
        "SELECT {head}, count(*) FILTER (WHERE m.direction = 'in') AS n_in,
                count(*) FILTER (WHERE m.direction = 'out') AS n_out
         FROM messages m JOIN tickets t ON t.owner = m.owner AND t.ticket_number = m.ticket_number
         WHERE m.owner = $1 AND m.at >= $2 AND m.at < $3 AND m.source <> 'history' AND {channel} {BY_CHANNEL}"
    );
    let deliveries = format!(
        "SELECT {head},
                count(*) FILTER (WHERE d.status = 'pending') AS pending,
                count(*) FILTER (WHERE d.status = 'failed') AS failed,
                count(*) FILTER (WHERE d.status = 'delivered') AS delivered,
                count(*) FILTER (WHERE d.status = 'dead') AS dead,
                count(*) FILTER (WHERE d.status = 'cancelled') AS cancelled
         FROM deliveries d JOIN tickets t ON t.owner = d.owner AND t.ticket_number = d.ticket_number
         WHERE d.owner = $1 AND d.created_at >= $2 AND d.created_at < $3 AND {channel} {BY_CHANNEL}"
    );
    macro_rules! run {
        ($sql:expr) => {
            sqlx::query_as(&$sql).bind(s.owner).bind(s.from).bind(s.to).bind(s.channel).fetch_all(pool)
        };
    }
    let (opened, open_now, closed, first_response, messages, deliveries) = tokio::try_join!(
        run!(opened),
        run!(open_now),
        run!(closed),
        sqlx::query_as(&first_response)
            .bind(s.owner)
            .bind(s.from)
            .bind(s.to)
            .bind(s.channel)
            .bind(s.sla_seconds.map(|n| n as f64))
            .fetch_all(pool),
        run!(messages),
        run!(deliveries)
    )?;
    Ok(Summary { opened, open_now, closed, first_response, messages, deliveries })
}

/// Bucket width of a timeseries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    Hour,
    Day,
}

impl Interval {
    pub fn as_str(self) -> &'static str {
        match self {
            Interval::Hour => "hour",
            Interval::Day => "day",
        }
    }
}

#[derive(Debug, Clone, FromRow)]
pub struct Bucket {
    pub bucket: DateTime<Utc>,
    pub tickets_opened: i64,
    pub tickets_closed: i64,
    pub messages_in: i64,
    pub messages_out: i64,
}

/// Counts per local hour or day in `tz`, every bucket of the window present (zeros too).
/// Each row is counted in exactly one bucket and only inside the window, so the buckets
/// add up to the summary's counts for the same window.
pub async fn timeseries(
    pool: &PgPool,
    s: &ReportScope<'_>,
    interval: Interval,
    tz: &str,
) -> Result<Vec<Bucket>, sqlx::Error> {
    let local = |col: &str| format!("date_trunc($5, {col} AT TIME ZONE $6)");
    let channel = "($4::text IS NULL OR t.channel = $4)";
    let sql = format!(
        "WITH buckets AS (
             SELECT {minute_local} AS local, min(t) AS start
             FROM generate_series(date_trunc('minute', $2) - interval '2 days', $3, interval '1 minute') AS t
             GROUP BY 1 HAVING {minute_local} >= {start} AND min(t) < $3),
         opened AS (
             SELECT {opened_at} AS local, count(*) AS n FROM tickets t
             WHERE t.owner = $1 AND t.opened_at >= $2 AND t.opened_at < $3 AND {channel} GROUP BY 1),
         closed AS (
             SELECT {closed_at} AS local, count(*) AS n FROM ticket_events e
             JOIN tickets t ON t.owner = e.owner AND t.ticket_number = e.ticket_number
             WHERE e.owner = $1 AND e.kind = 'closed' AND e.at >= $2 AND e.at < $3 AND {channel} GROUP BY 1),
         msgs AS (
             SELECT {message_at} AS local, count(*) FILTER (WHERE m.direction = 'in') AS n_in,
                    count(*) FILTER (WHERE m.direction = 'out') AS n_out
             FROM messages m JOIN tickets t ON t.owner = m.owner AND t.ticket_number = m.ticket_number
             WHERE m.owner = $1 AND m.at >= $2 AND m.at < $3 AND m.source <> 'history' AND {channel} GROUP BY 1)
         SELECT b.start AS bucket, COALESCE(o.n, 0) AS tickets_opened, COALESCE(c.n, 0) AS tickets_closed,
                COALESCE(m.n_in, 0) AS messages_in, COALESCE(m.n_out, 0) AS messages_out
         FROM buckets b LEFT JOIN opened o USING (local) LEFT JOIN closed c USING (local) LEFT JOIN msgs m USING (local)
         ORDER BY b.start",
        start = local("$2"),
        minute_local = local("t"),
        opened_at = local("t.opened_at"),
        closed_at = local("e.at"),
        message_at = local("m.at"),
    );
    sqlx::query_as(&sql)
        .bind(s.owner)
        .bind(s.from)
        .bind(s.to)
        .bind(s.channel)
        .bind(interval.as_str())
        .bind(tz)
        .fetch_all(pool)
        .await
}
