//! The write of accepted messages, several in one statement: for each, the optional
//! duplicate check, the ticket's change (under its row lock), the message row, its
//! lifecycle events and its outbox row, whose sequence number comes from the ticket's own
//! counter.
//!
//! One statement is the hottest path of the bridge: outside a transaction it is a
//! transaction of its own, one round trip and one commit for every message in it. The relay
//! tries it first, guessing the ticket's status, and only opens a transaction when the
//! guess was wrong (new, reopened or closed ticket) or idempotency needs one;
//! [`crate::intake::group_commit`] gathers the messages of concurrent requests into one statement.
//! Every message of a batch is applied or not on its own (its ticket's status, its own
//! duplicate check); the statement as a whole commits or fails.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgExecutor, Row};
use uuid::Uuid;

use super::deliveries::Claimed;
use super::events::NewEvent;
use super::messages::NewMessage;
use super::outbox_rules::{claimed_columns, earlier_waiting, endpoint_open};
use super::tickets::{ticket_change_set, TicketChange};
use crate::domain::{Direction, Target, TicketStatus};

/// The outbox row of a message; its `sequence` is handed out by the ticket update.
#[derive(Debug, Clone)]
pub struct NewOutboxRow {
    pub id: Uuid,
    pub target: Target,
    pub body: String,
}

/// The optional duplicate check (`BRIDGE_DEDUPE_WINDOW`): an Incoming Event accepted since
/// `since`, identical in type, text and media, with the same raw `createdDate`.
#[derive(Debug, Clone)]
pub struct DuplicateCheck {
    pub since: DateTime<Utc>,
    pub created_date_raw: Option<String>,
}

/// Everything one message writes.
#[derive(Debug, Clone)]
pub struct MessageWrite {
    pub message: NewMessage,
    pub change: TicketChange,
    /// Apply only if the ticket has this status now; `None`: whatever it is (the caller
    /// holds the row lock and has checked).
    pub expected_status: Option<TicketStatus>,
    pub events: Vec<NewEvent>,
    pub delivery: Option<NewOutboxRow>,
    pub duplicates: Option<DuplicateCheck>,
    /// Offer to claim the outbox row as it is written, for this process's dispatcher to send
    /// at once ([`crate::delivery::DirectDispatch`]). Taken only when the row is due at once
    /// by the claim's own rules (see `WRITE_MESSAGES`).
    pub lease: Option<DirectLease>,
}

/// The lease an outbox row is written with when it is claimed as it is written.
#[derive(Debug, Clone, Copy)]
pub struct DirectLease {
    pub token: Uuid,
    pub until: DateTime<Utc>,
}

/// What [`write_messages`] did with one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Everything was written.
    Applied,
    /// The same Incoming Event was accepted before as this message: nothing was written.
    Duplicate(Uuid),
    /// The ticket does not exist or has another status than expected: nothing was written.
    TicketNotAsExpected,
}

/// What became of an applied message's outbox row.
#[derive(Debug)]
pub enum Delivery {
    /// Written claimed ([`MessageWrite::lease`]), for this process's dispatcher to send
    /// after the commit.
    Claimed(Box<Claimed>),
    /// Written behind an earlier delivery of its ticket to the same peer that is in flight
    /// (the first of those still waiting holds an unexpired lease, read with a lock, in a
    /// snapshot complete for the ticket): whoever records that one claims the next in turn
    /// ([`super::successes::record_successes`]), so nobody needs to be woken. (Behind one
    /// that is not in flight, the row is [`Delivery::Unclaimed`]: a claim loop must take
    /// that one first, and may have skipped it while this write held its lock.)
    Behind,
    /// Written unclaimed for a claim loop to find (or no outbox row, or nothing applied).
    Unclaimed,
}

impl Delivery {
    /// The claim, if the row was written claimed.
    pub fn claimed(&self) -> Option<&Claimed> {
        match self {
            Delivery::Claimed(claim) => Some(claim),
            _ => None,
        }
    }
}

/// The batch statement. `c` holds one row per message (`n` = its position); the events of
/// all messages come flattened, each with the `n` of its message.
///
/// An outbox row offered a lease (`lease_token`) is written claimed when the claim
/// ([`super::deliveries::claim`]) would take it right now: its endpoint is neither paused nor
/// behind a breaker, and no earlier delivery of its ticket to that peer is `pending` or
/// `failed`. The last rule reads the first such delivery with a lock (`FOR SHARE`, after the
/// ticket's row lock), so that a success being recorded is waited for and seen
/// ([`super::successes::record_successes`], the race with the intake), and tells whether it
/// is in flight (an unexpired lease: then the row is [`Delivery::Behind`]). Rows another
/// intake inserted are still read in the statement's snapshot, which is complete for the ticket only if no other transaction moved
/// the ticket's sequence between that snapshot and this statement's row lock: so the row is
/// claimed (or reported [`Delivery::Behind`]) only when the sequence the update handed out is
/// exactly one more than the snapshot's (else it is written unclaimed and the dispatcher's
/// claim takes it in order).
///
/// Two messages of one ticket in a batch would update the ticket once (PostgreSQL updates a
/// row at most once per statement): one of them then reads as [`Recorded::TicketNotAsExpected`]
/// and is written by the caller's fallback, so nothing is lost even then. Callers keep
/// tickets distinct ([`crate::intake::group_commit`]).
pub const WRITE_MESSAGES: &str = concat!(
    "WITH c AS (
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bool[], $5::bool[], $6::text[], $7::text[],
                              $8::text[], $9::text[], $10::text[], $11::text[], $12::timestamptz[], $13::text[],
                              $14::int[], $15::int[], $16::timestamptz[], $17::uuid[], $18::text[], $19::text[],
                              $20::text[], $21::text[], $22::jsonb[], $23::jsonb[], $24::uuid[], $25::timestamptz[],
                              $26::text[], $27::text[], $28::text[], $29::text[], $30::text[], $35::uuid[],
                              $36::timestamptz[])
             WITH ORDINALITY AS c(owner, ticket_number, new_status, closes, reopens, new_channel, new_account_id,
                                  new_contact_id, new_customer_name, new_group_id, new_language, new_created_date,
                                  direction, next_tp, next_d, at, message_id, message_type, message, media_link,
                                  source, warnings, raw, delivery_id, dup_since, dup_created_raw, expected_status,
                                  target, peer, body, lease_token, lease_until, n)),
     dup AS (
         SELECT c.n, first.id FROM c CROSS JOIN LATERAL (
             SELECT m.id FROM messages m
             WHERE m.owner = c.owner AND m.ticket_number = c.ticket_number AND m.direction = 'in'
               AND m.source = '3dolphins' AND m.message_type IS NOT DISTINCT FROM c.message_type
               AND m.message IS NOT DISTINCT FROM c.message AND COALESCE(m.media_link, '') = COALESCE(c.media_link, '')
               AND m.raw ->> 'createdDate' IS NOT DISTINCT FROM c.dup_created_raw AND m.at >= c.dup_since
             ORDER BY m.at LIMIT 1) AS first
         WHERE c.dup_since IS NOT NULL),
     tu AS (
         UPDATE tickets SET ",
    ticket_change_set!(),
    "    FROM c
         WHERE tickets.owner = c.owner AND tickets.ticket_number = c.ticket_number
           AND (c.expected_status IS NULL OR tickets.status = c.expected_status)
           AND NOT EXISTS (SELECT 1 FROM dup WHERE dup.n = c.n)
         RETURNING c.n, CASE WHEN c.peer = 'third_party' THEN tickets.seq_third_party ELSE tickets.seq_dolphins END
                   AS sequence),
     msg AS (
         INSERT INTO messages (owner, id, ticket_number, direction, message_type, message, media_link, source, at,
                               warnings, raw)
         SELECT c.owner, c.message_id, c.ticket_number, c.direction, c.message_type, c.message, c.media_link,
                c.source, c.at, c.warnings, c.raw
         FROM c JOIN tu ON tu.n = c.n
         RETURNING 1),
     ev AS (
         INSERT INTO ticket_events (owner, ticket_number, kind, at, actor, detail)
         SELECT c.owner, c.ticket_number, e.kind, c.at, e.actor, e.detail
         FROM UNNEST($31::int[], $32::text[], $33::text[], $34::jsonb[]) WITH ORDINALITY AS e(n, kind, actor, detail, k)
         JOIN tu ON tu.n = e.n JOIN c ON c.n = e.n
         ORDER BY e.k
         RETURNING 1),
     place AS MATERIALIZED (
         SELECT c.n, tu.sequence,
                (SELECT CASE WHEN c.peer = 'third_party' THEN b.seq_third_party ELSE b.seq_dolphins END
                 FROM tickets b WHERE b.owner = c.owner AND b.ticket_number = c.ticket_number) = tu.sequence - 1
                    AS complete,
                ",
    earlier_waiting!(
        "c.owner",
        "c.ticket_number",
        "c.peer",
        "tu.sequence",
        "e.lease_until IS NOT NULL AND e.lease_until > c.at",
        "ORDER BY e.sequence LIMIT 1 FOR SHARE OF e"
    ),
    " AS first_waiting_in_flight
         FROM c JOIN tu ON tu.n = c.n
         WHERE c.delivery_id IS NOT NULL),
     seq AS MATERIALIZED (
         SELECT place.n, place.sequence, place.complete AND place.first_waiting_in_flight IS TRUE AS behind,
                c.lease_token IS NOT NULL AND place.complete AND place.first_waiting_in_flight IS NULL
                AND ",
    endpoint_open!("c.owner", "c.target"),
    " AS direct
         FROM place JOIN c ON c.n = place.n),
     dl AS (
         INSERT INTO deliveries (owner, id, ticket_number, message_id, target, peer, sequence, body, status,
                                 next_attempt_at, created_at, lease_until, lease_token)
         SELECT c.owner, c.delivery_id, c.ticket_number, c.message_id, c.target, c.peer, seq.sequence,
                c.body, 'pending', c.at, c.at, CASE WHEN seq.direct THEN c.lease_until END,
                CASE WHEN seq.direct THEN c.lease_token END
         FROM c JOIN seq ON seq.n = c.n
         RETURNING owner, id, ticket_number, target, sequence, body, attempts, schedule_base, lease_token,
                   lease_until, ctid::text AS row_id)
     SELECT dup.id AS duplicate, tu.n IS NOT NULL AS applied, COALESCE(seq.behind, FALSE) AS behind, ",
    claimed_columns!("d.row_id"),
    "
     FROM c LEFT JOIN dup ON dup.n = c.n LEFT JOIN tu ON tu.n = c.n LEFT JOIN seq ON seq.n = c.n
          LEFT JOIN dl d ON d.id = c.delivery_id AND d.lease_token IS NOT NULL
          LEFT JOIN tenants t ON d.id IS NOT NULL AND t.owner = c.owner
     ORDER BY c.n"
);

/// Writes each message with its ticket's change, audit and outbox row, or nothing of it,
/// in one statement; answers what happened to each, in order, and what became of its outbox
/// row.
pub async fn write_messages(
    db: impl PgExecutor<'_>,
    writes: &[&MessageWrite],
) -> Result<Vec<(Recorded, Delivery)>, sqlx::Error> {
    let column = |f: fn(&MessageWrite) -> Option<&str>| -> Vec<Option<&str>> { writes.iter().map(|i| f(i)).collect() };
    let events: Vec<(i32, &NewEvent)> = writes
        .iter()
        .enumerate()
        .flat_map(|(n, i)| i.events.iter().map(move |e| (i32::try_from(n + 1).unwrap_or(i32::MAX), e)))
        .collect();
    let rows = sqlx::query(WRITE_MESSAGES)
        .bind(column(|i| Some(i.message.owner.as_str())))
        .bind(column(|i| Some(i.message.ticket_number.as_str())))
        .bind(column(|i| i.change.status.map(TicketStatus::as_str)))
        .bind(writes.iter().map(|i| i.change.closed).collect::<Vec<_>>())
        .bind(writes.iter().map(|i| i.change.reopened).collect::<Vec<_>>())
        .bind(column(|i| i.change.channel.as_deref()))
        .bind(column(|i| i.change.account_id.as_deref()))
        .bind(column(|i| i.change.contact_id.as_deref()))
        .bind(column(|i| i.change.customer_name.as_deref()))
        .bind(column(|i| i.change.group_id.as_deref()))
        .bind(column(|i| i.change.language.as_deref()))
        .bind(writes.iter().map(|i| i.change.created_date).collect::<Vec<_>>())
        .bind(column(|i| i.change.message.map(Direction::as_str)))
        .bind(writes.iter().map(|i| i32::from(i.change.next_third_party_sequence)).collect::<Vec<_>>())
        .bind(writes.iter().map(|i| i32::from(i.change.next_dolphins_sequence)).collect::<Vec<_>>())
        .bind(writes.iter().map(|i| i.message.at).collect::<Vec<_>>())
        .bind(writes.iter().map(|i| i.message.id).collect::<Vec<_>>())
        .bind(column(|i| i.message.message_type.as_deref()))
        .bind(column(|i| i.message.message.as_deref()))
        .bind(column(|i| i.message.media_link.as_deref()))
        .bind(column(|i| Some(i.message.source.as_str())))
        .bind(writes.iter().map(|i| &i.message.warnings).collect::<Vec<_>>())
        .bind(writes.iter().map(|i| &i.message.raw).collect::<Vec<_>>())
        .bind(writes.iter().map(|i| i.delivery.as_ref().map(|d| d.id)).collect::<Vec<_>>())
        .bind(writes.iter().map(|i| i.duplicates.as_ref().map(|d| d.since)).collect::<Vec<_>>())
        .bind(column(|i| i.duplicates.as_ref().and_then(|d| d.created_date_raw.as_deref())))
        .bind(column(|i| i.expected_status.map(TicketStatus::as_str)))
        .bind(column(|i| i.delivery.as_ref().map(|d| d.target.as_str())))
        .bind(column(|i| i.delivery.as_ref().map(|d| d.target.peer().as_str())))
        .bind(column(|i| i.delivery.as_ref().map(|d| d.body.as_str())))
        .bind(events.iter().map(|(n, _)| *n).collect::<Vec<_>>())
        .bind(events.iter().map(|(_, e)| e.kind.as_str()).collect::<Vec<_>>())
        .bind(events.iter().map(|(_, e)| e.actor.as_str()).collect::<Vec<_>>())
        .bind(events.iter().map(|(_, e)| &e.detail).collect::<Vec<_>>())
        .bind(writes.iter().map(|i| i.lease.map(|l| l.token)).collect::<Vec<_>>())
        .bind(writes.iter().map(|i| i.lease.map(|l| l.until)).collect::<Vec<_>>())
        .fetch_all(db)
        .await?;
    if rows.len() != writes.len() {
        return Err(sqlx::Error::Protocol(format!("{} writes answered {} rows", writes.len(), rows.len())));
    }
    rows.iter().map(answer).collect()
}

/// What one row of [`WRITE_MESSAGES`]'s answer says: the claimed columns are there only
/// for an outbox row written claimed.
fn answer(row: &PgRow) -> Result<(Recorded, Delivery), sqlx::Error> {
    let recorded = match (row.try_get::<Option<Uuid>, _>("duplicate")?, row.try_get::<bool, _>("applied")?) {
        (Some(first), _) => Recorded::Duplicate(first),
        (None, true) => Recorded::Applied,
        (None, false) => Recorded::TicketNotAsExpected,
    };
    let written_claimed = recorded == Recorded::Applied
        && row.try_get::<Option<Uuid>, _>("lease_token")?.is_some()
        && row.try_get::<Option<String>, _>("signing_secret")?.is_some();
    let delivery = if written_claimed {
        Delivery::Claimed(Box::new(Claimed::from_row(row)?))
    } else if recorded == Recorded::Applied && row.try_get::<bool, _>("behind")? {
        Delivery::Behind
    } else {
        Delivery::Unclaimed
    };
    Ok((recorded, delivery))
}
