//! The rollup task's side of the report rollups (`store::rollups` has the tables' story
//! and the reads): one step over a tenant — the watermark, the quarters it recomputes, the
//! waiting deliveries it folds in, the hour and day rows — and forgetting them all.

use chrono::{DateTime, Duration, DurationRound, Utc};
use sqlx::PgConnection;

use super::raw_figures::partials_sql;
use super::rollups::{merge, minute_of, quarter_of, split, Range, Span, QUARTER};

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
/// computes the minute rows it passes, recomputes the dirty quarters and those of tickets
/// that got a channel, folds settled deliveries in, and sums the quarter, hour and day rows
/// of all it touched (those holding the new watermark cover their part before it). One
/// transaction holding the watermark row; `None` when another process holds it (it is doing
/// this work).
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
    // Whole quarters, but nothing at or after the new watermark.
    let mut ranges: Vec<Range> = quarters.iter().map(|q| (*q, (*q + QUARTER).min(to))).filter(|(s, e)| s < e).collect();
    ranges.push((from, to));
    let ranges = merge(ranges.into_iter().filter(|(s, e)| s < e).collect());
    let recomputed = ranges.iter().map(|(s, e)| ((*e - *s).num_seconds() + 899) / 900).sum();
    if !ranges.is_empty() {
        recompute_minutes(&mut tx, owner, &ranges).await?;
    }
    settle(&mut tx, owner).await?;
    if !ranges.is_empty() {
        recompute_levels(&mut tx, owner, &ranges, &[Span::Quarter], Span::Minute).await?;
        recompute_levels(&mut tx, owner, &ranges, &[Span::Hour, Span::Day], Span::Quarter).await?;
        super::day_hours::recompute(&mut tx, owner, &ranges).await?;
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
    // Held by another process: its step is under way (the first watermark's search below
    // reads every ticket of the tenant, not to be repeated by every process every pass).
    let exists = "SELECT EXISTS (SELECT 1 FROM report_watermarks WHERE owner = $1)";
    if sqlx::query_scalar(exists).bind(owner).fetch_one(&mut *tx).await? {
        return Ok(None);
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

/// Replaces the minute rows of `ranges` with the raw rows' figures, keeping the totals and
/// the lists of waiting deliveries and channel-less tickets in step.
async fn recompute_minutes(tx: &mut PgConnection, owner: &str, ranges: &[Range]) -> Result<(), sqlx::Error> {
    let (starts, ends) = split(ranges);
    let totals_upsert = "ON CONFLICT (owner, channel) DO UPDATE SET
             tickets_opened = report_totals.tickets_opened + excluded.tickets_opened,
             tickets_closed = report_totals.tickets_closed + excluded.tickets_closed,
             tickets_reopened = report_totals.tickets_reopened + excluded.tickets_reopened";
    forget_minutes(tx, owner, &starts, &ends, totals_upsert).await?;
    let channel_less: i64 = sqlx::query_scalar(&format!(
        "WITH p AS ({partials}),
         ins AS (
             INSERT INTO report_rollups (owner, span, start, channel, tickets_opened, tickets_closed,
                 tickets_reopened, messages_in, messages_out, first_response_n, first_response_sum_us,
                 resolution_n, resolution_sum_us, deliveries_delivered, deliveries_dead, deliveries_cancelled)
             SELECT $1, 'minute', start, channel, tickets_opened, tickets_closed, tickets_reopened,
                    messages_in, messages_out, first_response_n, first_response_sum_us,
                    resolution_n, resolution_sum_us, deliveries_delivered, deliveries_dead, deliveries_cancelled
             FROM p
             RETURNING 1),
         histograms AS (
             INSERT INTO report_histograms (owner, span, start, channel, first_response_bins, first_response_counts,
                 resolution_bins, resolution_counts)
             SELECT $1, 'minute', start, channel, first_response_bins, first_response_counts,
                    resolution_bins, resolution_counts
             FROM p WHERE first_response_n > 0 OR resolution_n > 0
             RETURNING 1),
         totals AS (
             INSERT INTO report_totals (owner, channel, tickets_opened, tickets_closed, tickets_reopened)
             SELECT $1, channel, sum(tickets_opened), sum(tickets_closed), sum(tickets_reopened)
             FROM p GROUP BY channel
             {totals_upsert}
             RETURNING 1)
         SELECT count(*) FROM p WHERE channel = ''",
        partials = partials_sql(),
    ))
    .bind(owner)
    .bind(&starts)
    .bind(&ends)
    .bind(None::<String>)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query(concat!(
        "INSERT INTO report_unsettled (owner, delivery_id, start)
         SELECT $1, d.id, ",
        minute_of!("d.created_at"),
        " FROM unnest($2::timestamptz[], $3::timestamptz[]) AS r(s, e)
         JOIN LATERAL (SELECT id, created_at FROM deliveries d
                       WHERE d.owner = $1 AND d.created_at >= r.s AND d.created_at < r.e
                         AND d.status IN ('pending', 'failed') AND d.target <> 'alerts' OFFSET 0) d ON true
         ON CONFLICT (owner, delivery_id) DO UPDATE SET start = excluded.start"
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

/// Deletes the minute rows of the ranges (less their counts from the totals), their
/// histograms and their lists of waiting deliveries.
async fn forget_minutes(
    tx: &mut PgConnection,
    owner: &str,
    starts: &[DateTime<Utc>],
    ends: &[DateTime<Utc>],
    totals_upsert: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "WITH r AS (SELECT s, e FROM unnest($2::timestamptz[], $3::timestamptz[]) AS r(s, e)),
         old AS (
             DELETE FROM report_rollups x USING r
             WHERE x.owner = $1 AND x.span = 'minute' AND x.start >= r.s AND x.start < r.e
             RETURNING x.channel, x.tickets_opened, x.tickets_closed, x.tickets_reopened)
         INSERT INTO report_totals (owner, channel, tickets_opened, tickets_closed, tickets_reopened)
         SELECT $1, channel, -sum(tickets_opened), -sum(tickets_closed), -sum(tickets_reopened)
         FROM old GROUP BY channel
         {totals_upsert}"
    ))
    .bind(owner)
    .bind(starts)
    .bind(ends)
    .execute(&mut *tx)
    .await?;
    for table in ["report_histograms", "report_unsettled"] {
        let span = if table == "report_unsettled" { "" } else { "AND x.span = 'minute'" };
        sqlx::query(&format!(
            "DELETE FROM {table} x USING unnest($2::timestamptz[], $3::timestamptz[]) AS r(s, e)
             WHERE x.owner = $1 {span} AND x.start >= r.s AND x.start < r.e"
        ))
        .bind(owner)
        .bind(starts)
        .bind(ends)
        .execute(&mut *tx)
        .await?;
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

/// Folds deliveries that were waiting when their minute was rolled up and are settled now
/// into the minute, quarter, hour and day rows.
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
             RETURNING u.start, s.channel, s.status),
         levels AS (SELECT * FROM (VALUES ('minute', interval '1 minute'), ('quarter', interval '15 minutes'), ('hour', interval '1 hour'),
                                          ('day', interval '1 day')) AS l(span, width))
         INSERT INTO report_rollups (owner, span, start, channel, deliveries_delivered, deliveries_dead, deliveries_cancelled)
         SELECT $1, l.span, date_bin(l.width, s.start, TIMESTAMPTZ '2000-01-01 00:00:00+00'), s.channel,
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

/// Rebuilds the rows of `spans` over `ranges` from their rows of the finer span `parts`.
async fn recompute_levels(
    tx: &mut PgConnection,
    owner: &str,
    ranges: &[Range],
    spans: &[Span],
    parts: Span,
) -> Result<(), sqlx::Error> {
    let mut levels: Vec<(Span, DateTime<Utc>)> = Vec::new();
    for span in spans.iter().copied() {
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
    // Each level row sums the rows of `parts` inside it.
    let inside = "l.start + CASE l.span WHEN 'quarter' THEN interval '15 minutes' WHEN 'hour' THEN interval '1 hour'
                                        ELSE interval '1 day' END";
    let parts = parts.as_str();
    sqlx::query(&format!(
        "WITH l AS (SELECT * FROM unnest($2::text[], $3::timestamptz[]) AS l(span, start))
         INSERT INTO report_rollups (owner, span, start, channel, tickets_opened, tickets_closed,
             tickets_reopened, messages_in, messages_out, first_response_n, first_response_sum_us,
             resolution_n, resolution_sum_us, deliveries_delivered, deliveries_dead, deliveries_cancelled)
         SELECT $1, l.span, l.start, q.channel, sum(q.tickets_opened), sum(q.tickets_closed),
                sum(q.tickets_reopened), sum(q.messages_in), sum(q.messages_out), sum(q.first_response_n),
                sum(q.first_response_sum_us), sum(q.resolution_n), sum(q.resolution_sum_us),
                sum(q.deliveries_delivered), sum(q.deliveries_dead), sum(q.deliveries_cancelled)
         FROM l JOIN LATERAL (SELECT * FROM report_rollups q WHERE q.owner = $1 AND q.span = '{parts}'
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
             FROM l JOIN LATERAL (SELECT * FROM report_histograms q WHERE q.owner = $1 AND q.span = '{parts}'
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
        "report_day_hours",
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
