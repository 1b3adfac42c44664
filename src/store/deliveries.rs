//! The `deliveries` and `delivery_attempts` tables: the outbox and its attempt log.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{FromRow, PgExecutor, Row};
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
             INSERT INTO delivery_attempts (owner, delivery_id, n, at, duration_ms, http_status, error, response_head)
             SELECT owner, id, attempts, $7, $9, $10, $6, $11 FROM upd
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
    .fetch_optional(db)
    .await?;
    Ok(recorded.is_some())
}

/// A successful attempt waiting to be recorded with others ([`record_successes`]).
#[derive(Debug, Clone)]
pub struct Success {
    pub owner: String,
    pub id: Uuid,
    pub ticket_number: String,
    pub lease_token: Uuid,
    /// [`Claimed::row_id`].
    pub row_id: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub duration_ms: i32,
    pub http_status: Option<i32>,
    pub response_head: Option<String>,
}

/// Records many successful attempts in one statement: the same rows as
/// [`record_attempt`] writes for a success (delivery delivered, attempt logged, breaker
/// reset, `delivered` audited), under the same fencing; and, with `successors`, claims in
/// the same statement each recorded ticket's next delivery to the same peer when the claim
/// ([`claim`]) would take it now, so that it follows its predecessor's acknowledgement
/// without another round trip (and without a scan of the outbox).
///
/// The successor is read in the statement's snapshot, where its predecessor is still
/// `pending`: so "no earlier delivery waiting" is asked of the sequences before the
/// predecessor's, which this statement records as delivered.
///
/// **The race with the intake.** A successor written while this statement runs is not in
/// its snapshot, and its intake may have seen the predecessor still in flight (and so left
/// it to this record: [`super::message_writes::Delivery::Behind`]). Both sides take the
/// ticket's row first, so one of them sees the other: this statement share-locks the
/// recorded tickets (in key order, one primary-key lookup each) before it changes any
/// delivery, and the intake's write, which updates the ticket, reads the earlier deliveries
/// with a lock (`WRITE_MESSAGES`). If the intake had the ticket first, the lock here returns
/// the ticket as the intake left it, whose sequence shows a successor the snapshot lacks:
/// the place comes back in [`SuccessesRecorded::unseen`], for [`claim_successors`] after the
/// commit. If this statement had it first, the intake's locking read waits for this commit,
/// finds the predecessor delivered, and writes its delivery claimed (or for the claim loop).
///
/// The rows are found by TID scans of arrays of `ctid`s (the recorded rows' from their
/// claims, the successors' from the unique `(owner, ticket, peer, sequence)` index):
/// PostgreSQL 15 cannot look up a row by a `ctid` that comes from a join, and planned on
/// stale statistics it hash-joined the batch against a sequential scan of the whole outbox
/// instead (a cost that grows with the table).
pub async fn record_successes(
    db: impl PgExecutor<'_>,
    batch: &[Success],
    successors: Option<SuccessorLease>,
) -> Result<SuccessesRecorded, sqlx::Error> {
    // Each ticket is locked once (a batch may hold its deliveries to both peers), in key
    // order, as every other batch takes them.
    let locks: std::collections::BTreeSet<(&str, &str)> =
        batch.iter().map(|s| (s.owner.as_str(), s.ticket_number.as_str())).collect();
    let owners: Vec<&str> = batch.iter().map(|s| s.owner.as_str()).collect();
    let ids: Vec<Uuid> = batch.iter().map(|s| s.id).collect();
    let tokens: Vec<Uuid> = batch.iter().map(|s| s.lease_token).collect();
    let started: Vec<DateTime<Utc>> = batch.iter().map(|s| s.started_at).collect();
    let finished: Vec<DateTime<Utc>> = batch.iter().map(|s| s.finished_at).collect();
    let durations: Vec<i32> = batch.iter().map(|s| s.duration_ms).collect();
    let statuses: Vec<Option<i32>> = batch.iter().map(|s| s.http_status).collect();
    let heads: Vec<Option<&str>> = batch.iter().map(|s| s.response_head.as_deref()).collect();
    let row_ids: Vec<&str> = batch.iter().map(|s| s.row_id.as_str()).collect();
    let successor_token = successors.map(|_| Uuid::new_v4());
    let now = successors.map(|s| s.now);
    let lease_until = successors.map(|s| s.until());
    let rows = sqlx::query(concat!(
        "WITH input AS (
             SELECT * FROM UNNEST($1::text[], $2::uuid[], $3::uuid[], $4::timestamptz[], $5::timestamptz[],
                                  $6::int[], $7::int[], $8::text[], $9::text[]::tid[])
                 AS i(owner, id, token, started_at, finished_at, duration_ms, http_status, head, row_id)),
         locked AS (
             SELECT l.* FROM UNNEST($13::text[], $14::text[]) AS k(owner, ticket_number) CROSS JOIN LATERAL (
                 SELECT t.owner, t.ticket_number, t.seq_third_party, t.seq_dolphins FROM tickets t
                 WHERE t.owner = k.owner AND t.ticket_number = k.ticket_number
                 FOR SHARE OF t) AS l),
         upd AS (
             UPDATE deliveries d SET status = 'delivered', attempts = d.attempts + 1, last_error = NULL,
                 delivered_at = i.finished_at, lease_until = NULL, lease_token = NULL
             FROM input i
             WHERE d.ctid = ANY($9::text[]::tid[]) AND d.ctid = i.row_id AND d.owner = i.owner AND d.id = i.id
               AND d.lease_token = i.token AND (SELECT count(*) FROM locked) >= 0
             RETURNING d.owner, d.id, d.ticket_number, d.target, d.peer, d.sequence, d.attempts, i.started_at,
                       i.finished_at, i.duration_ms, i.http_status, i.head),
         att AS (
             INSERT INTO delivery_attempts (owner, delivery_id, n, at, duration_ms, http_status, error, response_head)
             SELECT owner, id, attempts, started_at, duration_ms, http_status, NULL, head FROM upd
             RETURNING 1),
         reset AS (",
        reset_breakers!("(SELECT DISTINCT owner, target FROM upd) u", "TRUE"),
        "),
         ev AS (
             INSERT INTO ticket_events (owner, ticket_number, kind, at, actor, detail)
             SELECT owner, ticket_number, 'delivered', finished_at, 'bridge',
                    jsonb_strip_nulls(jsonb_build_object('deliveryId', id, 'target', target, 'attempt', attempts,
                                                         'httpStatus', http_status))
             FROM upd ORDER BY finished_at
             RETURNING 1),
         next AS (
             SELECT upd.id AS after, (SELECT s.ctid FROM deliveries s
                     WHERE s.owner = upd.owner AND s.ticket_number = upd.ticket_number AND s.peer = upd.peer
                       AND s.sequence = upd.sequence + 1) AS row_id
             FROM upd),
         successor AS (
             UPDATE deliveries d SET lease_until = $12, lease_token = $10
             FROM tenants t
             WHERE $10::uuid IS NOT NULL AND d.ctid = ANY (ARRAY(SELECT row_id FROM next WHERE row_id IS NOT NULL))
               AND t.owner = d.owner
               AND ",
        due_now!("d", "$11"),
        "
               AND ",
        endpoint_open!("d.owner", "d.target"),
        "
               AND ",
        no_earlier_waiting!("d.owner", "d.ticket_number", "d.peer", "d.sequence - 1"),
        "
             RETURNING d.peer AS successor_peer, ",
        claimed_columns!("d.ctid::text"),
        ")
         SELECT upd.owner AS place_owner, upd.ticket_number AS place_ticket, upd.peer AS place_peer,
                upd.sequence AS place_sequence, EXISTS (SELECT 1 FROM reset) AS breaker_reset,
                next.row_id IS NULL
                  AND (SELECT CASE WHEN upd.peer = 'third_party' THEN l.seq_third_party ELSE l.seq_dolphins END
                       FROM locked l WHERE l.owner = upd.owner AND l.ticket_number = upd.ticket_number)
                      > upd.sequence AS unseen,
                s.*
         FROM upd JOIN next ON next.after = upd.id
              LEFT JOIN successor s ON s.owner = upd.owner AND s.ticket_number = upd.ticket_number
                                   AND s.successor_peer = upd.peer AND s.sequence = upd.sequence + 1"
    ))
    .bind(owners)
    .bind(ids)
    .bind(tokens)
    .bind(started)
    .bind(finished)
    .bind(durations)
    .bind(statuses)
    .bind(heads)
    .bind(row_ids)
    .bind(successor_token)
    .bind(now)
    .bind(lease_until)
    .bind(locks.iter().map(|(owner, _)| *owner).collect::<Vec<_>>())
    .bind(locks.iter().map(|(_, ticket)| *ticket).collect::<Vec<_>>())
    .fetch_all(db)
    .await?;
    let mut recorded = SuccessesRecorded { recorded: rows.len(), ..SuccessesRecorded::default() };
    for row in &rows {
        recorded.breaker_reset |= row.try_get::<bool, _>("breaker_reset")?;
        if row.try_get::<Option<Uuid>, _>("lease_token")?.is_some() {
            recorded.successors.push(Claimed::from_row(row)?);
        } else if row.try_get::<Option<bool>, _>("unseen")?.unwrap_or(false) {
            recorded.unseen.push(Place {
                owner: row.try_get("place_owner")?,
                ticket_number: row.try_get("place_ticket")?,
                peer: row.try_get("place_peer")?,
                sequence: row.try_get("place_sequence")?,
            });
        }
    }
    Ok(recorded)
}

/// The lease [`record_successes`] and [`claim_successors`] claim successors with.
#[derive(Debug, Clone, Copy)]
pub struct SuccessorLease {
    pub now: DateTime<Utc>,
    pub lease: std::time::Duration,
}

impl SuccessorLease {
    fn until(self) -> DateTime<Utc> {
        self.now + chrono::Duration::from_std(self.lease).unwrap_or(chrono::Duration::seconds(30))
    }
}

/// What [`record_successes`] did.
#[derive(Debug, Default)]
pub struct SuccessesRecorded {
    /// Successes recorded: those whose delivery still held its lease.
    pub recorded: usize,
    /// The recorded tickets' next deliveries, claimed (with one lease token).
    pub successors: Vec<Claimed>,
    /// Recorded deliveries whose ticket has a next delivery that the statement's snapshot
    /// did not show (written meanwhile): for [`claim_successors`], after the commit.
    pub unseen: Vec<Place>,
    /// Whether an endpoint's breaker was closed by these successes: deliveries it held back
    /// (other than the successors) may be due now.
    pub breaker_reset: bool,
}

/// A recorded delivery's place: its ticket's next delivery to the same peer has the next
/// sequence.
#[derive(Debug, Clone)]
pub struct Place {
    pub owner: String,
    pub ticket_number: String,
    pub peer: String,
    pub sequence: i32,
}

/// Claims, for each place, its ticket's next delivery to the same peer when the claim
/// ([`claim`]) would take it now: the successors [`record_successes`] knew of but could not
/// see. Each is found by the unique `(owner, ticket, peer, sequence)` index and updated by
/// a TID scan of the `ctid`s found: no join for the planner to get wrong.
pub async fn claim_successors(
    db: impl PgExecutor<'_>,
    places: &[Place],
    lease: SuccessorLease,
) -> Result<Vec<Claimed>, sqlx::Error> {
    sqlx::query_as(concat!(
        "WITH next AS (
             SELECT (SELECT s.ctid FROM deliveries s
                     WHERE s.owner = r.owner AND s.ticket_number = r.ticket_number AND s.peer = r.peer
                       AND s.sequence = r.sequence + 1) AS row_id
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int[]) AS r(owner, ticket_number, peer, sequence))
         UPDATE deliveries d SET lease_until = $6, lease_token = $7
         FROM tenants t
         WHERE d.ctid = ANY (ARRAY(SELECT row_id FROM next WHERE row_id IS NOT NULL)) AND t.owner = d.owner
           AND ",
        due_now!("d", "$5"),
        "
           AND ",
        endpoint_open!("d.owner", "d.target"),
        "
           AND ",
        no_earlier_waiting!("d.owner", "d.ticket_number", "d.peer", "d.sequence"),
        "
         RETURNING ",
        claimed_columns!("d.ctid::text")
    ))
    .bind(places.iter().map(|p| p.owner.as_str()).collect::<Vec<_>>())
    .bind(places.iter().map(|p| p.ticket_number.as_str()).collect::<Vec<_>>())
    .bind(places.iter().map(|p| p.peer.as_str()).collect::<Vec<_>>())
    .bind(places.iter().map(|p| p.sequence).collect::<Vec<_>>())
    .bind(lease.now)
    .bind(lease.until())
    .bind(Uuid::new_v4())
    .fetch_all(db)
    .await
}

/// Gives back claims that will not be sent now (no worker for them): due again at once,
/// for the claim loop to take in order. Found by `ctid`, fenced by their tokens.
pub async fn give_back(db: impl PgExecutor<'_>, claims: &[Claimed]) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE deliveries SET lease_until = NULL, lease_token = NULL
         WHERE ctid = ANY($1::text[]::tid[]) AND lease_token = ANY($2) AND status IN ('pending', 'failed')",
    )
    .bind(claims.iter().map(|c| c.row_id.as_str()).collect::<Vec<_>>())
    .bind(claims.iter().map(|c| c.lease_token).collect::<Vec<_>>())
    .execute(db)
    .await?;
    Ok(done.rows_affected())
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
