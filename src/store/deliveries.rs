//! The `deliveries` and `delivery_attempts` tables: the outbox and its attempt log.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{FromRow, PgExecutor};
use uuid::Uuid;

use super::outbox_rules::{
    claimed_columns, due_now, endpoint_open, no_earlier_waiting, reset_breakers, BREAKER_COOLDOWN, BREAKER_THRESHOLD,
};
use crate::domain::{DeliveryStatus, EventKind, Target};

/// A delivery of a command (messages' deliveries are written by [`super::message_writes`]).
pub struct NewDelivery<'a> {
    pub owner: &'a str,
    pub id: Uuid,
    pub ticket_number: &'a str,
    pub target: Target,
    pub sequence: i32,
    pub body: &'a str,
    pub now: DateTime<Utc>,
}

/// Writes a delivery into the outbox, due at once. The caller wakes its own process's
/// dispatcher after the commit ([`crate::delivery::DirectDispatch::wake`]).
pub async fn enqueue(db: impl PgExecutor<'_>, d: NewDelivery<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO deliveries (owner, id, ticket_number, target, peer, sequence, body, status, next_attempt_at,
                                 created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $8)",
    )
    .bind(d.owner)
    .bind(d.id)
    .bind(d.ticket_number)
    .bind(d.target.as_str())
    .bind(d.target.peer().as_str())
    .bind(d.sequence)
    .bind(d.body)
    .bind(d.now)
    .execute(db)
    .await?;
    Ok(())
}

/// A delivery claimed by one dispatcher, with what it needs to send it.
#[derive(Debug, Clone, FromRow)]
pub struct Claimed {
    pub owner: String,
    pub id: Uuid,
    pub ticket_number: String,
    pub target: String,
    pub sequence: i32,
    pub body: String,
    /// Attempts made before this one.
    pub attempts: i32,
    /// `attempts` when the retry schedule last (re)started.
    pub schedule_base: i32,
    /// Fences this claim: only the holder of the current token may record the outcome.
    pub lease_token: Uuid,
    /// When the claim runs out: an attempt that could not end before it is not started.
    pub lease_until: DateTime<Utc>,
    /// Where the claimed row version lies (`ctid`, as text): the record finds it there
    /// without choosing an index. If the row was changed since, it is not found, exactly as
    /// when the lease was lost (the token is checked too).
    pub row_id: String,
    pub settings: Value,
    pub signing_secret: String,
    /// During a rotation: the old secret, which still signs too.
    pub previous_signing_secret: Option<String>,
    /// For `useApiToken`: the 3Dolphins API password.
    pub dolphins_password: Option<String>,
}

/// What to claim: due work across tenants, or the one probe of a half-open endpoint.
#[derive(Debug, Clone, Copy)]
pub enum ClaimScope<'a> {
    /// Due deliveries whose endpoint is neither paused nor behind an open breaker.
    Due,
    /// The earliest due delivery of one endpoint, whose breaker is half-open.
    Probe { owner: &'a str, target: &'a str },
}

/// The claim: the first `$3` due deliveries (by `$rule`) leased until `$2` with token `$4`.
/// The update finds each row by its `ctid`, which the row lock keeps stable for the
/// statement: no index choice to get wrong.
macro_rules! claim_statement {
    ($($rule:tt)+) => {
        concat!(
            "WITH due AS (
                 SELECT d.ctid AS row_id, d.owner FROM deliveries d
                 WHERE ", due_now!("d", "$1"), " AND ", $($rule)+, "
                   AND ", no_earlier_waiting!("d.owner", "d.ticket_number", "d.peer", "d.sequence"), "
                 ORDER BY d.next_attempt_at
                 LIMIT $3
                 FOR UPDATE OF d SKIP LOCKED)
             UPDATE deliveries d SET lease_until = $2, lease_token = $4
             FROM due JOIN tenants t ON t.owner = due.owner
             WHERE d.ctid = due.row_id
             RETURNING ", claimed_columns!("d.ctid::text")
        )
    };
}

const CLAIM_DUE: &str = claim_statement!(endpoint_open!("d.owner", "d.target"));
const CLAIM_PROBE: &str = claim_statement!("d.owner = $5 AND d.target = $6");

/// Claims up to `limit` due deliveries for `lease`.
///
/// Correct under concurrency because: rows are locked with `SKIP LOCKED`, so two
/// dispatchers never claim the same row in one instant; a claim is a committed lease
/// (not a held lock), so a crashed holder's rows come back once `lease_until` passes;
/// and a delivery is due only when no earlier delivery of its ticket to the same peer
/// is still waiting (`no_earlier_waiting!`) and its endpoint is open (`endpoint_open!`;
/// a probe takes one delivery of a half-open endpoint instead).
pub async fn claim(
    db: impl PgExecutor<'_>,
    scope: ClaimScope<'_>,
    now: DateTime<Utc>,
    lease: std::time::Duration,
    limit: i64,
    token: Uuid,
) -> Result<Vec<Claimed>, sqlx::Error> {
    let lease_until = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(30));
    let statement = match scope {
        ClaimScope::Due => CLAIM_DUE,
        ClaimScope::Probe { .. } => CLAIM_PROBE,
    };
    let statement = sqlx::query_as(statement).bind(now).bind(lease_until).bind(limit).bind(token);
    match scope {
        ClaimScope::Due => statement.fetch_all(db).await,
        ClaimScope::Probe { owner, target } => statement.bind(owner).bind(target).fetch_all(db).await,
    }
}

/// Gives back deliveries claimed with `tokens` whose claim reply never arrived (the
/// connection broke after PostgreSQL committed it): they were never sent, so they are due
/// again now instead of after the lease.
pub async fn release(db: impl PgExecutor<'_>, tokens: &[Uuid]) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE deliveries SET lease_until = NULL, lease_token = NULL
         WHERE lease_token = ANY($1) AND status IN ('pending', 'failed')",
    )
    .bind(tokens)
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// The outcome of one attempt, to record.
pub struct AttemptRecord<'a> {
    pub status: DeliveryStatus,
    pub event: EventKind,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub duration_ms: i32,
    pub http_status: Option<i32>,
    pub error: Option<&'a str>,
    pub response_head: Option<&'a str>,
    /// What was sent, as JSON text (`SentRequest`).
    pub request: Option<&'a str>,
    /// When to try again (for `failed`).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Whether the endpoint failed (a retryable outcome): feeds its circuit breaker.
    pub endpoint_failed: bool,
}

/// Records an attempt: the delivery's new state, its attempt row, the lifecycle event and
/// the endpoint's breaker, in one statement. Answers `false` (and changes nothing) when
/// the lease was lost — a late result from an expired claim must not overwrite a newer one.
pub async fn record_attempt(
    db: impl PgExecutor<'_>,
    claim: &Claimed,
    a: &AttemptRecord<'_>,
) -> Result<bool, sqlx::Error> {
    let recorded: Option<i32> = sqlx::query_scalar(concat!(
        "WITH upd AS (
             UPDATE deliveries SET status = $4, attempts = attempts + 1,
                 next_attempt_at = COALESCE($5, next_attempt_at), last_error = $6,
                 delivered_at = CASE WHEN $4 = 'delivered' THEN $8 ELSE delivered_at END,
                 lease_until = NULL, lease_token = NULL
             WHERE ctid = $16::tid AND owner = $1 AND id = $2 AND lease_token = $3
             RETURNING owner, id, ticket_number, target, attempts),
         att AS (
             INSERT INTO delivery_attempts (owner, delivery_id, n, at, duration_ms, http_status, error, response_head,
                                            request)
             SELECT owner, id, attempts, $7, $9, $10, $6, $11, $17::text::jsonb FROM upd
             RETURNING n),
         failed AS (
             INSERT INTO endpoints (owner, target, consecutive_failures, state, opened_at, retry_at)
             SELECT owner, target, 1, CASE WHEN 1 >= $14 THEN 'open' ELSE 'closed' END,
                    CASE WHEN 1 >= $14 THEN $8 END, CASE WHEN 1 >= $14 THEN $8 + $15 END
             FROM upd WHERE $13
             ON CONFLICT (owner, target) DO UPDATE SET
                 consecutive_failures = endpoints.consecutive_failures + 1,
                 state = CASE WHEN endpoints.state = 'half_open' OR endpoints.consecutive_failures + 1 >= $14
                              THEN 'open' ELSE endpoints.state END,
                 opened_at = CASE WHEN endpoints.state = 'closed' AND endpoints.consecutive_failures + 1 >= $14
                                  THEN $8 ELSE endpoints.opened_at END,
                 retry_at = CASE WHEN endpoints.state = 'half_open'
                                   OR (endpoints.state = 'closed' AND endpoints.consecutive_failures + 1 >= $14)
                                 THEN $8 + $15 ELSE endpoints.retry_at END,
                 probe_until = NULL
             RETURNING 1),
         succeeded AS (",
        reset_breakers!("upd u", "NOT $13"),
        ")
         INSERT INTO ticket_events (owner, ticket_number, kind, at, actor, detail)
         SELECT upd.owner, upd.ticket_number, $12, $8, 'bridge',
                jsonb_strip_nulls(jsonb_build_object('deliveryId', upd.id, 'target', upd.target,
                    'attempt', upd.attempts, 'httpStatus', $10::int, 'error', $6::text,
                    'nextAttemptAt', $5::timestamptz))
         FROM upd
         RETURNING 1"
    ))
    .bind(&claim.owner)
    .bind(claim.id)
    .bind(claim.lease_token)
    .bind(a.status.as_str())
    .bind(a.next_attempt_at)
    .bind(a.error)
    .bind(a.started_at)
    .bind(a.finished_at)
    .bind(a.duration_ms)
    .bind(a.http_status)
    .bind(a.response_head)
    .bind(a.event.as_str())
    .bind(a.endpoint_failed)
    .bind(BREAKER_THRESHOLD)
    .bind(chrono::Duration::from_std(BREAKER_COOLDOWN).unwrap_or(chrono::Duration::seconds(30)))
    .bind(&claim.row_id)
    .bind(a.request)
    .fetch_optional(db)
    .await?;
    Ok(recorded.is_some())
}

/// Cancels every waiting delivery of a tenant (tenant deletion).
pub async fn cancel_all_waiting(db: impl PgExecutor<'_>, owner: &str) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE deliveries SET status = 'cancelled', lease_until = NULL, lease_token = NULL,
             last_error = COALESCE(last_error, 'tenant deleted')
         WHERE owner = $1 AND status IN ('pending', 'failed')",
    )
    .bind(owner)
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// Whether a delivery to `target` was created for this ticket since `since` (echo check).
pub async fn recent_exists(
    db: impl PgExecutor<'_>,
    owner: &str,
    ticket: &str,
    target: Target,
    since: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM deliveries
                        WHERE owner = $1 AND ticket_number = $2 AND target = $3 AND created_at >= $4)",
    )
    .bind(owner)
    .bind(ticket)
    .bind(target.as_str())
    .bind(since)
    .fetch_one(db)
    .await
}
