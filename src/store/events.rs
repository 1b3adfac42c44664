//! The `ticket_events` table: the append-only lifecycle audit.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{FromRow, PgExecutor};

use crate::domain::EventKind;

/// One lifecycle event to append.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub kind: EventKind,
    pub actor: String,
    pub detail: Value,
}

/// Appends `events` to one ticket's audit, in order, in one statement.
pub async fn append(
    db: impl PgExecutor<'_>,
    owner: &str,
    ticket: &str,
    at: DateTime<Utc>,
    events: &[NewEvent],
) -> Result<(), sqlx::Error> {
    if events.is_empty() {
        return Ok(());
    }
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    let actors: Vec<&str> = events.iter().map(|e| e.actor.as_str()).collect();
    let details: Vec<&Value> = events.iter().map(|e| &e.detail).collect();
    sqlx::query(
        "INSERT INTO ticket_events (owner, ticket_number, kind, at, actor, detail)
         SELECT $1, $2, e.kind, $3, e.actor, e.detail
         FROM UNNEST($4::text[], $5::text[], $6::jsonb[]) WITH ORDINALITY AS e(kind, actor, detail, n)
         ORDER BY e.n",
    )
    .bind(owner)
    .bind(ticket)
    .bind(at)
    .bind(&kinds)
    .bind(&actors)
    .bind(&details)
    .execute(db)
    .await?;
    Ok(())
}

/// A lifecycle event as the API shows it.
#[derive(Debug, Clone, FromRow)]
pub struct EventRow {
    pub id: i64,
    pub kind: String,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub detail: Value,
}

/// A ticket's audit, oldest first, after event id `after`.
pub async fn for_ticket(
    db: impl PgExecutor<'_>,
    owner: &str,
    ticket: &str,
    after: Option<i64>,
    limit: i64,
) -> Result<Vec<EventRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, kind, at, actor, detail FROM ticket_events
         WHERE owner = $1 AND ticket_number = $2 AND ($3::bigint IS NULL OR id > $3)
         ORDER BY id LIMIT $4",
    )
    .bind(owner)
    .bind(ticket)
    .bind(after)
    .bind(limit)
    .fetch_all(db)
    .await
}
