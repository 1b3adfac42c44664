//! The `tickets` table: one row per `(owner, ticketNumber)` with its running figures.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgArguments;
use sqlx::query::QueryAs;
use sqlx::{FromRow, PgExecutor, Postgres};

use crate::domain::{Direction, TicketStatus};

/// Locks the ticket row for the rest of the transaction and answers its status, so
/// concurrent events on one ticket apply one after the other.
pub async fn lock(db: impl PgExecutor<'_>, owner: &str, ticket: &str) -> Result<Option<TicketStatus>, sqlx::Error> {
    let status: Option<String> =
        sqlx::query_scalar("SELECT status FROM tickets WHERE owner = $1 AND ticket_number = $2 FOR UPDATE")
            .bind(owner)
            .bind(ticket)
            .fetch_optional(db)
            .await?;
    // The CHECK constraint allows nothing else; an unknown value reads as open.
    Ok(status.map(|s| TicketStatus::parse(&s).unwrap_or(TicketStatus::Open)))
}

/// Inserts a new open ticket; `false` when another transaction created it first
/// (the caller then locks the existing row instead).
pub async fn insert_new(
    db: impl PgExecutor<'_>,
    owner: &str,
    ticket: &str,
    opened_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO tickets (owner, ticket_number, status, opened_at, created_at, updated_at)
         VALUES ($1, $2, 'open', $3, $4, $4) ON CONFLICT DO NOTHING",
    )
    .bind(owner)
    .bind(ticket)
    .bind(opened_at)
    .bind(now)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// What one accepted event changes on its ticket.
#[derive(Debug, Default)]
pub struct TicketChange<'a> {
    pub status: Option<TicketStatus>,
    pub closed: bool,
    pub reopened: bool,
    pub channel: Option<&'a str>,
    pub account_id: Option<&'a str>,
    pub contact_id: Option<&'a str>,
    pub customer_name: Option<&'a str>,
    pub group_id: Option<&'a str>,
    pub language: Option<&'a str>,
    pub created_date: Option<DateTime<Utc>>,
    /// The direction of the message this event carries, if it carries one.
    pub message: Option<Direction>,
    /// Hand out the next `x-ticket-sequence` for these peers.
    pub next_third_party_sequence: bool,
    pub next_dolphins_sequence: bool,
}

/// The sequence numbers after [`apply`]: the last one handed out per peer.
#[derive(Debug, Clone, Copy, FromRow)]
pub struct Sequences {
    pub seq_third_party: i32,
    pub seq_dolphins: i32,
}

/// The `SET` list of a [`TicketChange`], shared by [`apply`] and the one-statement message
/// intake ([`super::intake`]) so both change a ticket the same way. Placeholders: `$3`–`$16`
/// as [`bind_change`] binds them.
///
/// Descriptive fields keep their last non-empty value; `created_date` keeps the first one
/// seen; first message/response times are set once and never reset by a reopen.
macro_rules! ticket_change_set {
    () => {
        "status = COALESCE($3, status),
         closed_at = CASE WHEN $4 THEN $16 WHEN $5 THEN NULL ELSE closed_at END,
         reopen_count = reopen_count + CASE WHEN $5 THEN 1 ELSE 0 END,
         channel = COALESCE(NULLIF($6, ''), channel),
         account_id = COALESCE(NULLIF($7, ''), account_id),
         contact_id = COALESCE(NULLIF($8, ''), contact_id),
         customer_name = COALESCE(NULLIF($9, ''), customer_name),
         group_id = COALESCE(NULLIF($10, ''), group_id),
         language = COALESCE(NULLIF($11, ''), language),
         created_date = COALESCE(created_date, $12),
         messages_in = messages_in + CASE WHEN $13 = 'in' THEN 1 ELSE 0 END,
         messages_out = messages_out + CASE WHEN $13 = 'out' THEN 1 ELSE 0 END,
         first_message_at = CASE WHEN $13 = 'in' THEN COALESCE(first_message_at, $16) ELSE first_message_at END,
         first_response_at = CASE WHEN $13 = 'out' THEN COALESCE(first_response_at, $16) ELSE first_response_at END,
         last_message_at = CASE WHEN $13 IS NOT NULL THEN $16 ELSE last_message_at END,
         seq_third_party = seq_third_party + $14,
         seq_dolphins = seq_dolphins + $15,
         updated_at = $16"
    };
}
pub(crate) use ticket_change_set;

/// Binds `$1` (owner), `$2` (ticket) and the change's `$3`–`$16` of [`ticket_change_set!`].
pub(crate) fn bind_change<'q, O>(
    query: QueryAs<'q, Postgres, O, PgArguments>,
    owner: &'q str,
    ticket: &'q str,
    change: &TicketChange<'q>,
    now: DateTime<Utc>,
) -> QueryAs<'q, Postgres, O, PgArguments> {
    query
        .bind(owner)
        .bind(ticket)
        .bind(change.status.map(TicketStatus::as_str))
        .bind(change.closed)
        .bind(change.reopened)
        .bind(change.channel)
        .bind(change.account_id)
        .bind(change.contact_id)
        .bind(change.customer_name)
        .bind(change.group_id)
        .bind(change.language)
        .bind(change.created_date)
        .bind(change.message.map(Direction::as_str))
        .bind(i32::from(change.next_third_party_sequence))
        .bind(i32::from(change.next_dolphins_sequence))
        .bind(now)
}

/// Applies a change to a locked ticket (see [`ticket_change_set!`]).
pub async fn apply(
    db: impl PgExecutor<'_>,
    owner: &str,
    ticket: &str,
    change: &TicketChange<'_>,
    now: DateTime<Utc>,
) -> Result<Sequences, sqlx::Error> {
    let query = sqlx::query_as(concat!(
        "UPDATE tickets SET ",
        ticket_change_set!(),
        " WHERE owner = $1 AND ticket_number = $2 RETURNING seq_third_party, seq_dolphins"
    ));
    bind_change(query, owner, ticket, change, now).fetch_one(db).await
}

/// A ticket as the API shows it.
#[derive(Debug, Clone, FromRow)]
pub struct TicketRow {
    pub ticket_number: String,
    pub status: String,
    pub channel: Option<String>,
    pub account_id: Option<String>,
    pub contact_id: Option<String>,
    pub customer_name: Option<String>,
    pub group_id: Option<String>,
    pub language: Option<String>,
    pub created_date: Option<DateTime<Utc>>,
    pub opened_at: DateTime<Utc>,
    pub first_message_at: Option<DateTime<Utc>>,
    pub first_response_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub last_message_at: Option<DateTime<Utc>>,
    pub messages_in: i32,
    pub messages_out: i32,
    pub reopen_count: i32,
}

const TICKET_COLUMNS: &str = "ticket_number, status, channel, account_id, contact_id, customer_name, group_id,
    language, created_date, opened_at, first_message_at, first_response_at, closed_at, last_message_at,
    messages_in, messages_out, reopen_count";

pub async fn get(db: impl PgExecutor<'_>, owner: &str, ticket: &str) -> Result<Option<TicketRow>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {TICKET_COLUMNS} FROM tickets WHERE owner = $1 AND ticket_number = $2"))
        .bind(owner)
        .bind(ticket)
        .fetch_optional(db)
        .await
}

/// The filters of `GET /api/v1/tickets`.
pub struct TicketFilter<'a> {
    pub status: Option<&'a str>,
    pub channel: Option<&'a str>,
    pub contact_id: Option<&'a str>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Case-insensitive prefix of the ticket number or the customer name.
    pub q: Option<&'a str>,
    /// Keyset position: rows strictly after this (opened_at, ticket_number), newest first.
    pub after: Option<(DateTime<Utc>, &'a str)>,
    pub limit: i64,
}

/// Escapes `LIKE` wildcards so a search text matches literally.
fn like_prefix(text: &str) -> String {
    let mut escaped = text.to_lowercase().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    escaped.push('%');
    escaped
}

/// Tickets newest first (by `openedAt`), by keyset so paging is stable under inserts.
pub async fn list(db: impl PgExecutor<'_>, owner: &str, f: &TicketFilter<'_>) -> Result<Vec<TicketRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {TICKET_COLUMNS} FROM tickets
         WHERE owner = $1 AND opened_at >= $2 AND opened_at < $3
           AND ($4::text IS NULL OR status = $4) AND ($5::text IS NULL OR channel = $5)
           AND ($6::text IS NULL OR contact_id = $6)
           AND ($7::text IS NULL OR lower(ticket_number) LIKE $7 OR lower(customer_name) LIKE $7)
           AND ($8::timestamptz IS NULL OR (opened_at, ticket_number) < ($8, $9))
         ORDER BY opened_at DESC, ticket_number DESC
         LIMIT $10"
    ))
    .bind(owner)
    .bind(f.from)
    .bind(f.to)
    .bind(f.status)
    .bind(f.channel)
    .bind(f.contact_id)
    .bind(f.q.map(like_prefix))
    .bind(f.after.map(|a| a.0))
    .bind(f.after.map(|a| a.1))
    .bind(f.limit)
    .fetch_all(db)
    .await
}
