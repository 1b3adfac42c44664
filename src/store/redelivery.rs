//! The read and operator side of the outbox: deliveries and attempt logs as the API shows
//! them, and the manual actions (retry, cancel, replay). The dispatcher's side is in
//! `deliveries`.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{FromRow, PgExecutor};
use uuid::Uuid;

use super::outbox_rules::NOTIFY_CHANNEL;
use crate::domain::DeliveryStatus;

/// A delivery as the API shows it.
#[derive(Debug, Clone, FromRow)]
pub struct DeliveryRow {
    pub id: Uuid,
    pub ticket_number: String,
    pub message_id: Option<Uuid>,
    pub target: String,
    pub sequence: i32,
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

const DELIVERY_COLUMNS: &str = "id, ticket_number, message_id, target, sequence, status, attempts, next_attempt_at,
                                last_error, created_at, delivered_at";

pub async fn get(db: impl PgExecutor<'_>, owner: &str, id: Uuid) -> Result<Option<DeliveryRow>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE owner = $1 AND id = $2"))
        .bind(owner)
        .bind(id)
        .fetch_optional(db)
        .await
}

/// The filters of `GET /api/v1/deliveries`.
pub struct DeliveryFilter<'a> {
    pub statuses: Option<&'a [String]>,
    pub targets: Option<&'a [String]>,
    pub ticket_number: Option<&'a str>,
    /// One delivery by its id (which is also the `webhook-id` it was sent with).
    pub id: Option<Uuid>,
    /// The delivery of one message.
    pub message_id: Option<Uuid>,
    /// Acceptance time window; `None` leaves that side open.
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Keyset position: rows strictly after this (created_at, id) in the list's order.
    pub after: Option<(DateTime<Utc>, Uuid)>,
    /// Oldest first (a ticket's own deliveries) instead of newest first.
    pub oldest_first: bool,
    pub limit: i64,
}

impl<'a> DeliveryFilter<'a> {
    /// One ticket's deliveries, oldest first, after `after`.
    pub fn of_ticket(ticket: &'a str, after: Option<(DateTime<Utc>, Uuid)>, limit: i64) -> Self {
        DeliveryFilter {
            statuses: None,
            targets: None,
            ticket_number: Some(ticket),
            id: None,
            message_id: None,
            from: None,
            to: None,
            after,
            oldest_first: true,
            limit,
        }
    }
}

/// Deliveries newest first, by keyset so pages stay stable while new rows arrive.
pub async fn list(
    db: impl PgExecutor<'_>,
    owner: &str,
    f: &DeliveryFilter<'_>,
) -> Result<Vec<DeliveryRow>, sqlx::Error> {
    let (after, order) = if f.oldest_first { (">", "ASC") } else { ("<", "DESC") };
    sqlx::query_as(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries
         WHERE owner = $1 AND ($2::timestamptz IS NULL OR created_at >= $2)
           AND ($3::timestamptz IS NULL OR created_at < $3)
           AND ($4::text[] IS NULL OR status = ANY($4)) AND ($5::text[] IS NULL OR target = ANY($5))
           AND ($6::text IS NULL OR ticket_number = $6)
           AND ($7::timestamptz IS NULL OR (created_at, id) {after} ($7, $8))
           AND ($10::uuid IS NULL OR id = $10) AND ($11::uuid IS NULL OR message_id = $11)
         ORDER BY created_at {order}, id {order}
         LIMIT $9"
    ))
    .bind(owner)
    .bind(f.from)
    .bind(f.to)
    .bind(f.statuses)
    .bind(f.targets)
    .bind(f.ticket_number)
    .bind(f.after.map(|a| a.0))
    .bind(f.after.map(|a| a.1))
    .bind(f.limit)
    .bind(f.id)
    .bind(f.message_id)
    .fetch_all(db)
    .await
}

/// The delivery that forwards a message, if any.
pub async fn for_message(
    db: impl PgExecutor<'_>,
    owner: &str,
    message_id: Uuid,
) -> Result<Option<DeliveryRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE owner = $1 AND message_id = $2 ORDER BY created_at LIMIT 1"
    ))
    .bind(owner)
    .bind(message_id)
    .fetch_optional(db)
    .await
}

/// One attempt in a delivery's log.
#[derive(Debug, Clone, FromRow)]
pub struct AttemptRow {
    pub delivery_id: Uuid,
    pub n: i32,
    pub at: DateTime<Utc>,
    pub duration_ms: i32,
    pub http_status: Option<i32>,
    pub error: Option<String>,
    pub response_head: Option<String>,
    /// What was sent (`delivery::send::SentRequest` as JSON); `None` before it was recorded.
    pub request: Option<Value>,
}

/// The attempt logs of several deliveries of one tenant.
pub async fn attempts(db: impl PgExecutor<'_>, owner: &str, ids: &[Uuid]) -> Result<Vec<AttemptRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT delivery_id, n, at, duration_ms, http_status, error, response_head, request FROM delivery_attempts
         WHERE owner = $1 AND delivery_id = ANY($2) ORDER BY delivery_id, n",
    )
    .bind(owner)
    .bind(ids)
    .fetch_all(db)
    .await
}

/// What happened to one target's attempts in a recent window.
#[derive(Debug, Clone, FromRow)]
pub struct RecentOutcomes {
    pub target: String,
    /// Attempts that succeeded.
    pub delivered: i64,
    /// Attempts that failed (an error, a non-2xx, a reply status other than success).
    pub failed: i64,
    /// Deliveries whose last attempt in the window made them dead.
    pub dead: i64,
}

/// Per target, the attempts since `since` (the console's delivery health).
pub async fn recent_outcomes(
    db: impl PgExecutor<'_>,
    owner: &str,
    since: DateTime<Utc>,
) -> Result<Vec<RecentOutcomes>, sqlx::Error> {
    sqlx::query_as(
        "SELECT d.target,
                count(*) FILTER (WHERE a.error IS NULL) AS delivered,
                count(*) FILTER (WHERE a.error IS NOT NULL) AS failed,
                count(*) FILTER (WHERE d.status = 'dead' AND a.n = d.attempts) AS dead
         FROM delivery_attempts a JOIN deliveries d ON d.owner = a.owner AND d.id = a.delivery_id
         WHERE a.owner = $1 AND a.at >= $2
         GROUP BY d.target",
    )
    .bind(owner)
    .bind(since)
    .fetch_all(db)
    .await
}

/// Why a manual action did not apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionRefused {
    NotFound,
    /// An attempt is in flight right now.
    InFlight,
    /// The delivery's status does not allow it (the status is given).
    WrongState(DeliveryStatus),
}

/// Re-queues one delivery now with a fresh schedule (manual retry) and audits `retried`.
pub async fn retry(
    db: &sqlx::PgPool,
    owner: &str,
    id: Uuid,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<Result<(), ActionRefused>, sqlx::Error> {
    let mut tx = db.begin().await?;
    let Some((status, in_flight)) = lock_for_action(&mut tx, owner, id, now).await? else {
        return Ok(Err(ActionRefused::NotFound));
    };
    if in_flight {
        return Ok(Err(ActionRefused::InFlight));
    }
    if status == DeliveryStatus::Pending {
        return Ok(Err(ActionRefused::WrongState(status)));
    }
    requeue(&mut tx, owner, &[id], actor, now, serde_json::json!({})).await?;
    tx.commit().await?;
    Ok(Ok(()))
}

/// Parks a delivery that will never succeed, unblocking its ticket; audits `cancelled`.
pub async fn cancel(
    db: &sqlx::PgPool,
    owner: &str,
    id: Uuid,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<Result<(), ActionRefused>, sqlx::Error> {
    let mut tx = db.begin().await?;
    let Some((status, in_flight)) = lock_for_action(&mut tx, owner, id, now).await? else {
        return Ok(Err(ActionRefused::NotFound));
    };
    match status {
        DeliveryStatus::Cancelled => return Ok(Ok(())),
        DeliveryStatus::Delivered => return Ok(Err(ActionRefused::WrongState(status))),
        _ if in_flight => return Ok(Err(ActionRefused::InFlight)),
        _ => {}
    }
    sqlx::query(
        "WITH upd AS (
             UPDATE deliveries SET status = 'cancelled', lease_until = NULL, lease_token = NULL
             WHERE owner = $1 AND id = $2 RETURNING owner, id, ticket_number, target)
         INSERT INTO ticket_events (owner, ticket_number, kind, at, actor, detail)
         SELECT owner, ticket_number, 'cancelled', $3, $4, jsonb_build_object('deliveryId', id, 'target', target)
         FROM upd",
    )
    .bind(owner)
    .bind(id)
    .bind(now)
    .bind(actor)
    .execute(&mut *tx)
    .await?;
    super::rollups::mark_deliveries_dirty(&mut *tx, owner, &[id], now).await?;
    tx.commit().await?;
    Ok(Ok(()))
}

/// Locks a delivery for a manual action: its status and whether an attempt is in flight.
async fn lock_for_action(
    tx: &mut sqlx::PgConnection,
    owner: &str,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<Option<(DeliveryStatus, bool)>, sqlx::Error> {
    let row: Option<(String, bool)> = sqlx::query_as(
        "SELECT status, lease_until IS NOT NULL AND lease_until > $3 FROM deliveries
         WHERE owner = $1 AND id = $2 FOR UPDATE",
    )
    .bind(owner)
    .bind(id)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    Ok(row.map(|(s, in_flight)| (DeliveryStatus::parse(&s).unwrap_or(DeliveryStatus::Pending), in_flight)))
}

/// The selection of `POST /api/v1/deliveries/replay`.
pub struct ReplayFilter<'a> {
    pub targets: Option<&'a [String]>,
    pub statuses: &'a [String],
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// What a replay selects: matching deliveries that are not in flight ($1 owner, $2 from,
/// $3 to, $4 statuses, $5 targets, $6 now).
const REPLAY_SELECTION: &str = "owner = $1 AND created_at >= $2 AND created_at < $3 AND status = ANY($4)
     AND ($5::text[] IS NULL OR target = ANY($5)) AND (lease_until IS NULL OR lease_until <= $6)";

/// How many deliveries a replay would re-queue now (the console's preview).
pub async fn replay_count(
    db: impl PgExecutor<'_>,
    owner: &str,
    f: &ReplayFilter<'_>,
    now: DateTime<Utc>,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(&format!("SELECT count(*) FROM deliveries WHERE {REPLAY_SELECTION}"))
        .bind(owner)
        .bind(f.from)
        .bind(f.to)
        .bind(f.statuses)
        .bind(f.targets)
        .bind(now)
        .fetch_one(db)
        .await
}

/// Re-queues every matching delivery that is not in flight; answers how many.
pub async fn replay(
    db: &sqlx::PgPool,
    owner: &str,
    f: &ReplayFilter<'_>,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let mut tx = db.begin().await?;
    let ids: Vec<Uuid> =
        sqlx::query_scalar(&format!("SELECT id FROM deliveries WHERE {REPLAY_SELECTION} FOR UPDATE SKIP LOCKED"))
            .bind(owner)
            .bind(f.from)
            .bind(f.to)
            .bind(f.statuses)
            .bind(f.targets)
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
    requeue(&mut tx, owner, &ids, actor, now, serde_json::json!({"replay": true})).await?;
    tx.commit().await?;
    Ok(ids.len() as u64)
}

/// Makes deliveries due now with a fresh schedule, audits `retried`, wakes dispatchers.
async fn requeue(
    db: &mut sqlx::PgConnection,
    owner: &str,
    ids: &[Uuid],
    actor: &str,
    now: DateTime<Utc>,
    detail: Value,
) -> Result<(), sqlx::Error> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "WITH upd AS (
             UPDATE deliveries SET status = 'pending', next_attempt_at = $3, schedule_base = attempts,
                 delivered_at = NULL, lease_until = NULL, lease_token = NULL
             WHERE owner = $1 AND id = ANY($2)
             RETURNING owner, id, ticket_number, target, status)
         INSERT INTO ticket_events (owner, ticket_number, kind, at, actor, detail)
         SELECT owner, ticket_number, 'retried', $3, $4,
                $5::jsonb || jsonb_build_object('deliveryId', id, 'target', target)
         FROM upd",
    )
    .bind(owner)
    .bind(ids)
    .bind(now)
    .bind(actor)
    .bind(detail)
    .execute(&mut *db)
    .await?;
    super::rollups::mark_deliveries_dirty(&mut *db, owner, ids, now).await?;
    sqlx::query("SELECT pg_notify($1, '')").bind(NOTIFY_CHANNEL).execute(&mut *db).await?;
    Ok(())
}
