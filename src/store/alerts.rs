//! Operational alerts in the outbox. The breaker and dead-delivery alerts are written by
//! triggers in the transaction that makes the change (migration
//! `20261202000013_operational_alerts.sql`, whose `raise_alert` function writes every alert);
//! this module holds the one alert the bridge raises itself, `backlog.stale`.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

use crate::domain::tenant::DEFAULT_BACKLOG_SECONDS;
use crate::domain::Target;

/// What one backlog check did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BacklogCheck {
    /// Episodes that began: a `backlog.stale` alert each.
    pub raised: i64,
    /// Episodes that ended (the backlog is fresh again, or alerts were turned off).
    pub ended: i64,
}

/// For every tenant with alerts, every target whose oldest waiting delivery is older than
/// the tenant's `alerts.backlogSeconds` at `now` starts an episode and raises
/// `backlog.stale`, once; an episode whose target is fresh again ends (the next stale
/// backlog raises a new alert).
///
/// One statement: an episode row is inserted with `ON CONFLICT DO NOTHING` and the alert
/// raised only for the rows inserted, so two processes checking at once raise it once (the
/// second waits for the first's insert and then finds the row).
pub async fn check_backlogs(db: impl PgExecutor<'_>, now: DateTime<Utc>) -> Result<BacklogCheck, sqlx::Error> {
    let watched: Vec<&str> = Target::watched().map(Target::as_str).collect();
    sqlx::query_as(
        "WITH watched AS (
             SELECT t.owner, w.target,
                    COALESCE((t.settings #>> '{alerts,backlogSeconds}')::int, $2) AS backlog_seconds
             FROM tenants t CROSS JOIN unnest($3::text[]) AS w(target)
             WHERE COALESCE(t.settings #>> '{alerts,url}', '') <> ''),
         oldest AS (
             SELECT w.*, o.oldest, o.depth FROM watched w CROSS JOIN LATERAL (
                 SELECT min(d.created_at) AS oldest, count(*) AS depth FROM deliveries d
                 WHERE d.owner = w.owner AND d.target = w.target AND d.status IN ('pending', 'failed') OFFSET 0) o),
         stale AS (
             SELECT * FROM oldest WHERE oldest < $1 - make_interval(secs => backlog_seconds)),
         started AS (
             INSERT INTO backlog_episodes (owner, target, started_at)
             SELECT owner, target, $1 FROM stale
             ON CONFLICT DO NOTHING
             RETURNING owner, target),
         ended AS (
             DELETE FROM backlog_episodes b
             WHERE NOT EXISTS (SELECT 1 FROM stale s WHERE s.owner = b.owner AND s.target = b.target)
             RETURNING 1),
         raised AS (
             SELECT raise_alert(s.owner, 'backlog.stale', s.target, $1,
                        jsonb_build_object('oldestWaitingAt', s.oldest,
                                           'ageSeconds', floor(EXTRACT(EPOCH FROM $1 - s.oldest))::bigint,
                                           'backlogSeconds', s.backlog_seconds, 'queueDepth', s.depth))
             FROM started JOIN stale s ON s.owner = started.owner AND s.target = started.target)
         SELECT (SELECT count(*) FROM raised) AS raised, (SELECT count(*) FROM ended) AS ended",
    )
    .bind(now)
    .bind(i32::try_from(DEFAULT_BACKLOG_SECONDS).unwrap_or(900))
    .bind(watched)
    .fetch_one(db)
    .await
    .map(|(raised, ended)| BacklogCheck { raised, ended })
}
