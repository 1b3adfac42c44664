//! The `endpoints` table: pause switches and circuit breakers per (tenant, target),
//! shared by every bridge process through the database.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgExecutor};

use crate::domain::Target;

fn interval(d: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::seconds(30))
}

/// Moves every open breaker whose cooldown has passed (and every half-open one whose
/// probe was lost) to half-open, and answers them: the caller may now send exactly one
/// delivery to each as the probe.
pub async fn take_probe_slots(
    db: impl PgExecutor<'_>,
    now: DateTime<Utc>,
    lease: std::time::Duration,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE endpoints SET state = 'half_open', probe_until = $2
         WHERE NOT paused AND ((state = 'open' AND retry_at <= $1) OR (state = 'half_open' AND probe_until <= $1))
         RETURNING owner, target",
    )
    .bind(now)
    .bind(now + interval(lease))
    .fetch_all(db)
    .await
}

/// Gives a probe slot back when there was nothing to probe with.
pub async fn return_probe_slot(
    db: impl PgExecutor<'_>,
    owner: &str,
    target: &str,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE endpoints SET state = 'open', probe_until = NULL, retry_at = $3 WHERE owner = $1 AND target = $2 AND state = 'half_open'")
        .bind(owner)
        .bind(target)
        .bind(now)
        .execute(db)
        .await?;
    Ok(())
}

/// Pauses or resumes a target; answers whether anything changed.
pub async fn set_paused(
    db: &sqlx::PgPool,
    owner: &str,
    target: Target,
    paused: bool,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let changed: Option<bool> = sqlx::query_scalar(
        "INSERT INTO endpoints (owner, target, paused, paused_at) VALUES ($1, $2, $3, CASE WHEN $3 THEN $4 END)
         ON CONFLICT (owner, target) DO UPDATE SET paused = EXCLUDED.paused, paused_at = EXCLUDED.paused_at
         WHERE endpoints.paused IS DISTINCT FROM EXCLUDED.paused
         RETURNING true",
    )
    .bind(owner)
    .bind(target.as_str())
    .bind(paused)
    .bind(now)
    .fetch_optional(db)
    .await?;
    if paused {
        return Ok(changed.is_some());
    }
    // Resuming wakes the dispatchers: the target's deliveries are due now.
    sqlx::query("SELECT pg_notify($1, '')").bind(super::outbox_rules::NOTIFY_CHANNEL).execute(db).await?;
    Ok(changed.is_some())
}

/// One target's state and queue, as `GET /api/v1/endpoints` shows it.
#[derive(Debug, Clone, FromRow)]
pub struct EndpointRow {
    pub target: String,
    pub state: String,
    pub paused: bool,
    pub consecutive_failures: i32,
    pub retry_at: Option<DateTime<Utc>>,
    pub queue_depth: i64,
    pub oldest_pending_at: Option<DateTime<Utc>>,
}

/// The state and queue of every target of a tenant that has a row or waiting deliveries.
pub async fn overview(db: impl PgExecutor<'_>, owner: &str) -> Result<Vec<EndpointRow>, sqlx::Error> {
    sqlx::query_as(
        "WITH queue AS (
             SELECT target, count(*) AS depth, min(created_at) AS oldest
             FROM deliveries WHERE owner = $1 AND status IN ('pending', 'failed') GROUP BY target)
         SELECT COALESCE(e.target, q.target) AS target, COALESCE(e.state, 'closed') AS state,
                COALESCE(e.paused, false) AS paused, COALESCE(e.consecutive_failures, 0) AS consecutive_failures,
                e.retry_at, COALESCE(q.depth, 0) AS queue_depth, q.oldest AS oldest_pending_at
         FROM (SELECT * FROM endpoints WHERE owner = $1) e FULL JOIN queue q ON q.target = e.target",
    )
    .bind(owner)
    .fetch_all(db)
    .await
}

/// Every tenant's targets with waiting work or a non-default state, for `/metrics`.
#[derive(Debug, Clone, FromRow)]
pub struct GlobalRow {
    pub target: String,
    pub queue_depth: i64,
    pub oldest_pending_at: Option<DateTime<Utc>>,
    pub open_breakers: i64,
    pub half_open_breakers: i64,
    pub paused: i64,
}

pub async fn global_overview(db: impl PgExecutor<'_>) -> Result<Vec<GlobalRow>, sqlx::Error> {
    sqlx::query_as(
        "WITH queue AS (
             SELECT target, count(*) AS depth, min(created_at) AS oldest
             FROM deliveries WHERE status IN ('pending', 'failed') GROUP BY target),
         eps AS (
             SELECT target, count(*) FILTER (WHERE state = 'open') AS open,
                    count(*) FILTER (WHERE state = 'half_open') AS half_open,
                    count(*) FILTER (WHERE paused) AS paused
             FROM endpoints GROUP BY target)
         SELECT COALESCE(q.target, e.target) AS target, COALESCE(q.depth, 0) AS queue_depth, q.oldest AS oldest_pending_at,
                COALESCE(e.open, 0) AS open_breakers, COALESCE(e.half_open, 0) AS half_open_breakers,
                COALESCE(e.paused, 0) AS paused
         FROM queue q FULL JOIN eps e ON e.target = q.target",
    )
    .fetch_all(db)
    .await
}
