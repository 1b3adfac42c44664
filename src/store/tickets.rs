//! The `tickets` table: one row per `(owner, ticketNumber)` with its running figures.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgExecutor};

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
/// (the caller then locks the existing row instead). A ticket opened (by its createdDate)
/// before `late` marks its quarter dirty in the same statement: the report rollups may
/// have covered it already (see `store::rollups`: the mark is this ticket's own row, and
/// the rollup task only ever deletes marks that are committed).
pub async fn insert_new(
    db: impl PgExecutor<'_>,
    owner: &str,
    ticket: &str,
    opened_at: DateTime<Utc>,
    now: DateTime<Utc>,
    late: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let inserted: i64 = sqlx::query_scalar(concat!(
        "WITH ins AS (
             INSERT INTO tickets (owner, ticket_number, status, opened_at, created_at, updated_at)
             VALUES ($1, $2, 'open', $3, $4, $4) ON CONFLICT DO NOTHING
             RETURNING opened_at),
         mark AS (
             INSERT INTO report_dirty (owner, start, source, marked_at)
             SELECT $1, ",
        super::rollups::quarter_of!("opened_at"),
        ", $2, $4 FROM ins WHERE opened_at < $5
             ON CONFLICT (owner, start, source) DO UPDATE SET marked_at = excluded.marked_at
             RETURNING 1)
         SELECT count(*) FROM ins"
    ))
    .bind(owner)
    .bind(ticket)
    .bind(opened_at)
    .bind(now)
    .bind(late)
    .fetch_one(db)
    .await?;
    Ok(inserted == 1)
}

/// What one accepted event changes on its ticket.
#[derive(Debug, Default, Clone)]
pub struct TicketChange {
    pub status: Option<TicketStatus>,
    pub closed: bool,
    pub reopened: bool,
    pub channel: Option<String>,
    pub account_id: Option<String>,
    pub contact_id: Option<String>,
    pub customer_name: Option<String>,
    pub group_id: Option<String>,
    pub language: Option<String>,
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

/// The `SET` list of a [`TicketChange`], shared by [`apply`] and the message intake
/// ([`super::message_writes`]) so both change a ticket the same way. It reads the change from a
/// relation `c` joined in by `FROM` (one row per ticket changed), whose columns are named
/// so that none shadows a column of `tickets`: `new_status`, `closes`, `reopens`,
/// `new_channel`, `new_account_id`, `new_contact_id`, `new_customer_name`, `new_group_id`,
/// `new_language`, `new_created_date`, `direction`, `next_tp`, `next_d` (0 or 1) and `at`.
///
/// Descriptive fields keep their last non-empty value, except `channel` and `created_date`,
/// which keep the first one seen (a ticket is one channel's conversation; its report figures
/// stay under that channel); first message/response times are set once and never reset by a reopen.
macro_rules! ticket_change_set {
    () => {
        "status = COALESCE(c.new_status, status),
         closed_at = CASE WHEN c.closes THEN c.at WHEN c.reopens THEN NULL ELSE closed_at END,
         reopen_count = reopen_count + CASE WHEN c.reopens THEN 1 ELSE 0 END,
         channel = COALESCE(channel, NULLIF(c.new_channel, '')),
         account_id = COALESCE(NULLIF(c.new_account_id, ''), account_id),
         contact_id = COALESCE(NULLIF(c.new_contact_id, ''), contact_id),
         customer_name = COALESCE(NULLIF(c.new_customer_name, ''), customer_name),
         group_id = COALESCE(NULLIF(c.new_group_id, ''), group_id),
         language = COALESCE(NULLIF(c.new_language, ''), language),
         created_date = COALESCE(created_date, c.new_created_date),
         messages_in = messages_in + CASE WHEN c.direction = 'in' THEN 1 ELSE 0 END,
         messages_out = messages_out + CASE WHEN c.direction = 'out' THEN 1 ELSE 0 END,
         first_message_at = CASE WHEN c.direction = 'in' THEN COALESCE(first_message_at, c.at)
                                 ELSE first_message_at END,
         first_response_at = CASE WHEN c.direction = 'out' THEN COALESCE(first_response_at, c.at)
                                  ELSE first_response_at END,
         last_message_at = CASE WHEN c.direction IS NOT NULL THEN c.at ELSE last_message_at END,
         seq_third_party = seq_third_party + c.next_tp,
         seq_dolphins = seq_dolphins + c.next_d,
         updated_at = c.at"
    };
}
pub(crate) use ticket_change_set;

/// Applies a change to a locked ticket (see `ticket_change_set!`).
pub async fn apply(
    db: impl PgExecutor<'_>,
    owner: &str,
    ticket: &str,
    change: &TicketChange,
    now: DateTime<Utc>,
) -> Result<Sequences, sqlx::Error> {
    sqlx::query_as(concat!(
        "UPDATE tickets SET ",
        ticket_change_set!(),
        " FROM (SELECT $3::text AS new_status, $4::bool AS closes, $5::bool AS reopens, $6::text AS new_channel,
                       $7::text AS new_account_id, $8::text AS new_contact_id, $9::text AS new_customer_name,
                       $10::text AS new_group_id, $11::text AS new_language, $12::timestamptz AS new_created_date,
                       $13::text AS direction, $14::int AS next_tp, $15::int AS next_d, $16::timestamptz AS at) c
         WHERE owner = $1 AND ticket_number = $2
         RETURNING seq_third_party, seq_dolphins"
    ))
    .bind(owner)
    .bind(ticket)
    .bind(change.status.map(TicketStatus::as_str))
    .bind(change.closed)
    .bind(change.reopened)
    .bind(&change.channel)
    .bind(&change.account_id)
    .bind(&change.contact_id)
    .bind(&change.customer_name)
    .bind(&change.group_id)
    .bind(&change.language)
    .bind(change.created_date)
    .bind(change.message.map(Direction::as_str))
    .bind(i32::from(change.next_third_party_sequence))
    .bind(i32::from(change.next_dolphins_sequence))
    .bind(now)
    .fetch_one(db)
    .await
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
