//! The `messages` table: every message in either direction, with its raw JSON.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::domain::{Direction, Source};

/// A message to store ([`super::message_writes::write_messages`]); its direction is the ticket
/// change's `message`.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub owner: String,
    pub id: Uuid,
    pub ticket_number: String,
    pub message_type: Option<String>,
    pub message: Option<String>,
    pub media_link: Option<String>,
    pub source: Source,
    pub at: DateTime<Utc>,
    pub warnings: Value,
    pub raw: Value,
}

/// What identifies "the same message" for echo and duplicate detection.
pub struct Fingerprint<'a> {
    pub owner: &'a str,
    pub ticket_number: &'a str,
    pub message_type: Option<&'a str>,
    pub message: Option<&'a str>,
    pub media_link: Option<&'a str>,
}

/// Finds a third-party reply that the bridge forwarded to 3Dolphins since `since` and that
/// matches `fp`, and marks it as echoed so one original absorbs at most one echo.
pub async fn take_echo_original(
    db: impl PgExecutor<'_>,
    fp: &Fingerprint<'_>,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE messages SET echo_seen_at = $7
         WHERE owner = $1 AND id = (
             SELECT m.id FROM messages m
             WHERE m.owner = $1 AND m.ticket_number = $2 AND m.direction = 'out' AND m.source = 'third_party'
               AND m.message_type IS NOT DISTINCT FROM $3 AND m.message IS NOT DISTINCT FROM $4
               AND COALESCE(m.media_link, '') = COALESCE($5, '')
               AND m.at >= $6 AND m.echo_seen_at IS NULL
               AND EXISTS (SELECT 1 FROM deliveries d
                           WHERE d.owner = m.owner AND d.message_id = m.id AND d.target = 'dolphins_message')
             ORDER BY m.at LIMIT 1
             FOR UPDATE SKIP LOCKED)
         RETURNING id",
    )
    .bind(fp.owner)
    .bind(fp.ticket_number)
    .bind(fp.message_type)
    .bind(fp.message)
    .bind(fp.media_link)
    .bind(since)
    .bind(now)
    .fetch_optional(db)
    .await
}

/// A message as the API shows it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MessageRow {
    pub id: Uuid,
    pub ticket_number: String,
    pub direction: String,
    pub message_type: Option<String>,
    pub message: Option<String>,
    pub media_link: Option<String>,
    pub source: String,
    pub at: DateTime<Utc>,
    pub warnings: Value,
}

const MESSAGE_COLUMNS: &str = "id, ticket_number, direction, message_type, message, media_link, source, at, warnings";

pub async fn get(db: impl PgExecutor<'_>, owner: &str, id: Uuid) -> Result<Option<MessageRow>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE owner = $1 AND id = $2"))
        .bind(owner)
        .bind(id)
        .fetch_optional(db)
        .await
}

/// A ticket's conversation, oldest first, after the keyset position `after` (at, id).
pub async fn for_ticket(
    db: impl PgExecutor<'_>,
    owner: &str,
    ticket: &str,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<MessageRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages
         WHERE owner = $1 AND ticket_number = $2 AND ($3::timestamptz IS NULL OR (at, id) > ($3, $4))
         ORDER BY at, id LIMIT $5"
    ))
    .bind(owner)
    .bind(ticket)
    .bind(after.map(|a| a.0))
    .bind(after.map(|a| a.1))
    .bind(limit)
    .fetch_all(db)
    .await
}

/// A stored message reduced to what history matching compares.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LocalLine {
    pub direction: String,
    pub message: Option<String>,
    pub at: DateTime<Utc>,
}

/// The ticket's messages that came through the bridge (not earlier history merges).
pub async fn local_lines(db: impl PgExecutor<'_>, owner: &str, ticket: &str) -> Result<Vec<LocalLine>, sqlx::Error> {
    sqlx::query_as(
        "SELECT direction, message, at FROM messages
         WHERE owner = $1 AND ticket_number = $2 AND source <> 'history' ORDER BY at",
    )
    .bind(owner)
    .bind(ticket)
    .fetch_all(db)
    .await
}

/// Stores a history line once: a second merge of the same line finds its key taken.
/// Answers whether it was new.
#[allow(clippy::too_many_arguments)]
pub async fn insert_history(
    db: impl PgExecutor<'_>,
    owner: &str,
    ticket: &str,
    direction: Direction,
    message: &str,
    at: DateTime<Utc>,
    key: &str,
    raw: &Value,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO messages (owner, id, ticket_number, direction, message_type, message, media_link, source, at, raw,
                               history_key)
         VALUES ($1, $2, $3, $4, 'text', $5, '', 'history', $6, $7, $8)
         ON CONFLICT (owner, ticket_number, history_key) WHERE history_key IS NOT NULL DO NOTHING",
    )
    .bind(owner)
    .bind(Uuid::now_v7())
    .bind(ticket)
    .bind(direction.as_str())
    .bind(message)
    .bind(at)
    .bind(raw)
    .bind(key)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}
