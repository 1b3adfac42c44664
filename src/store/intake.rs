//! The write of one accepted message in a single statement: the optional duplicate check,
//! the ticket's change (under its row lock), the message row, its lifecycle events and its
//! outbox row, whose sequence number comes from the ticket's own counter.
//!
//! One statement is the hottest path of the bridge: outside a transaction it is a
//! transaction of its own (one round trip and one commit per accepted event), so the relay
//! tries it first, guessing the ticket's status, and only opens a transaction when the
//! guess was wrong (new, reopened or closed ticket) or idempotency needs one.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgExecutor;
use uuid::Uuid;

use super::events::NewEvent;
use super::messages::NewMessage;
use super::tickets::{bind_change, ticket_change_set, TicketChange};
use crate::domain::{Target, TicketStatus};

/// The outbox row of a message; its `sequence` is handed out by the ticket update.
pub struct NewOutboxRow<'a> {
    pub id: Uuid,
    pub target: Target,
    pub body: &'a str,
}

/// The optional duplicate check (`BRIDGE_DEDUPE_WINDOW`): an Incoming Event accepted since
/// `since`, identical in type, text and media, with the same raw `createdDate`.
pub struct DuplicateCheck<'a> {
    pub since: DateTime<Utc>,
    pub created_date_raw: Option<&'a str>,
}

/// Everything one message writes.
pub struct MessageIntake<'a> {
    pub message: NewMessage<'a>,
    pub change: TicketChange<'a>,
    /// Apply only if the ticket has this status now; `None`: whatever it is (the caller
    /// holds the row lock and has checked).
    pub expected_status: Option<TicketStatus>,
    pub events: &'a [NewEvent],
    pub delivery: Option<NewOutboxRow<'a>>,
    pub duplicates: Option<DuplicateCheck<'a>>,
}

/// What [`record_message`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Everything was written.
    Applied,
    /// The same Incoming Event was accepted before as this message: nothing was written.
    Duplicate(Uuid),
    /// The ticket does not exist or has another status than expected: nothing was written.
    TicketNotAsExpected,
}

/// Writes one message, its ticket's change, audit and outbox row, or nothing.
pub async fn record_message(db: impl PgExecutor<'_>, intake: &MessageIntake<'_>) -> Result<Recorded, sqlx::Error> {
    let m = &intake.message;
    let kinds: Vec<&str> = intake.events.iter().map(|e| e.kind.as_str()).collect();
    let actors: Vec<&str> = intake.events.iter().map(|e| e.actor.as_str()).collect();
    let details: Vec<&Value> = intake.events.iter().map(|e| &e.detail).collect();
    let delivery = intake.delivery.as_ref();
    let duplicates = intake.duplicates.as_ref();
    // $1 owner, $2 ticket, $3–$16 the ticket change ($13 direction, $16 now), then $17 on.
    let query = sqlx::query_as(concat!(
        "WITH dup AS (
             SELECT id FROM messages
             WHERE $28::timestamptz IS NOT NULL AND owner = $1 AND ticket_number = $2 AND direction = 'in'
               AND source = '3dolphins' AND message_type IS NOT DISTINCT FROM $18
               AND message IS NOT DISTINCT FROM $19 AND COALESCE(media_link, '') = COALESCE($20, '')
               AND raw ->> 'createdDate' IS NOT DISTINCT FROM $29 AND at >= $28
             ORDER BY at LIMIT 1),
         t AS (
             UPDATE tickets SET ",
        ticket_change_set!(),
        "    WHERE owner = $1 AND ticket_number = $2 AND ($30::text IS NULL OR status = $30)
               AND NOT EXISTS (SELECT 1 FROM dup)
             RETURNING seq_third_party, seq_dolphins),
         msg AS (
             INSERT INTO messages (owner, id, ticket_number, direction, message_type, message, media_link, source, at,
                                   warnings, raw)
             SELECT $1, $17, $2, $13, $18, $19, $20, $21, $16, $22, $23 FROM t
             RETURNING 1),
         ev AS (
             INSERT INTO ticket_events (owner, ticket_number, kind, at, actor, detail)
             SELECT $1, $2, e.kind, $16, e.actor, e.detail
             FROM t, UNNEST($24::text[], $25::text[], $26::jsonb[]) WITH ORDINALITY AS e(kind, actor, detail, n)
             ORDER BY e.n
             RETURNING 1),
         dl AS (
             INSERT INTO deliveries (owner, id, ticket_number, message_id, target, peer, sequence, body, status,
                                     next_attempt_at, created_at)
             SELECT $1, $27, $2, $17, $31, $32,
                    CASE WHEN $32 = 'third_party' THEN t.seq_third_party ELSE t.seq_dolphins END,
                    $33, 'pending', $16, $16
             FROM t WHERE $27::uuid IS NOT NULL
             RETURNING 1)
         SELECT (SELECT id FROM dup), EXISTS (SELECT 1 FROM t)"
    ));
    let (duplicate, applied): (Option<Uuid>, bool) = bind_change(query, m.owner, m.ticket_number, &intake.change, m.at)
        .bind(m.id)
        .bind(m.message_type)
        .bind(m.message)
        .bind(m.media_link)
        .bind(m.source.as_str())
        .bind(m.warnings)
        .bind(m.raw)
        .bind(&kinds)
        .bind(&actors)
        .bind(&details)
        .bind(delivery.map(|d| d.id))
        .bind(duplicates.map(|d| d.since))
        .bind(duplicates.and_then(|d| d.created_date_raw))
        .bind(intake.expected_status.map(TicketStatus::as_str))
        .bind(delivery.map(|d| d.target.as_str()))
        .bind(delivery.map(|d| d.target.peer().as_str()))
        .bind(delivery.map(|d| d.body))
        .fetch_one(db)
        .await?;
    Ok(match (duplicate, applied) {
        (Some(first), _) => Recorded::Duplicate(first),
        (None, true) => Recorded::Applied,
        (None, false) => Recorded::TicketNotAsExpected,
    })
}
