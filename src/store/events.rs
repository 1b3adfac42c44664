//! The `ticket_events` table: the append-only lifecycle audit.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgExecutor;

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
