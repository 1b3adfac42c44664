//! A message event (Incoming, a reply from either side): what it writes, and its two ways
//! in. The common case, a message on a ticket already open, is written with other requests'
//! messages in one statement by the group commit ([`write_grouped`]); anything else (a new,
//! closed or reopened ticket, an echo check, an idempotency key) is written in the caller's
//! transaction under the ticket's row lock ([`write_in_transaction`]).

use serde_json::{json, Value};
use sqlx::PgConnection;
use uuid::Uuid;

use super::group_commit::{Committed, GroupCommit};
use super::route::{way, MessageRoute, Way};
use super::ticket::{lifecycle, lock_or_create, plan_delivery, since};
use super::{success_with_id, Context, Event, IntakeError, Reply};
use crate::domain::payload::MessageEvent;
use crate::domain::ticket::{transition, Action, Transition};
use crate::domain::{Direction, EventKind, Peer, TicketStatus};
use crate::store::events::NewEvent;
use crate::store::message_writes::{DuplicateCheck, MessageWrite, NewOutboxRow, Recorded};
use crate::store::messages::{self, NewMessage};
use crate::store::tickets::TicketChange;
use crate::store::{events, messages::Fingerprint};

/// Writes the message with concurrent requests' messages, guessing its ticket is open (and
/// stays open). Answers the reply and whether it was applied, or `None` when the guess was
/// wrong or the event needs a transaction: nothing was written, the caller takes the
/// transaction path.
pub(super) async fn write_grouped(
    group: &GroupCommit,
    ctx: &Context<'_>,
    event: &Event,
) -> Result<Option<(Reply, bool)>, IntakeError> {
    let Way::Message(m, route) = way(event) else { return Ok(None) };
    // The echo check reads and marks another message first: that needs the transaction.
    if route.action == Action::DolphinsReply && !ctx.echo_window.is_zero() {
        return Ok(None);
    }
    let assumed = TicketStatus::Open;
    let t = transition(Some(assumed), route.action)?;
    let write = message_write(ctx, m, route, &t, Some(assumed))?;
    let (id, written) = (write.message.id, Written::of(&write));
    Ok(match group.write(write).await? {
        Recorded::Applied => {
            written.log(ctx, m);
            Some((success_with_id(id), true))
        }
        Recorded::Duplicate(first) => Some((success_with_id(first), false)),
        Recorded::TicketNotAsExpected => None,
    })
}

/// Writes the message in `tx`, holding its ticket's row lock; with its delivery if that was
/// written claimed, for after the commit ([`GroupCommit::after_commit`]).
pub(super) async fn write_in_transaction(
    tx: &mut PgConnection,
    group: &GroupCommit,
    ctx: &Context<'_>,
    m: &MessageEvent,
    route: &MessageRoute,
) -> Result<((Reply, bool), Committed), IntakeError> {
    if route.action == Action::DolphinsReply && !ctx.echo_window.is_zero() {
        if let Some(reply) = take_echo(tx, ctx, m, route).await? {
            return Ok(((reply, false), Committed::Unclaimed));
        }
    }
    let opened_at = m.created_date.unwrap_or(ctx.now);
    let t = lock_or_create(tx, ctx, &m.ticket_number, route.action, opened_at).await?;
    let write = message_write(ctx, m, route, &t, None)?;
    let (id, written) = (write.message.id, Written::of(&write));
    match group.write_in_transaction(tx, write).await? {
        (Recorded::Applied, claimed) => {
            written.log(ctx, m);
            Ok(((success_with_id(id), true), claimed))
        }
        (Recorded::Duplicate(first), _) => Ok(((success_with_id(first), false), Committed::Unclaimed)),
        // The row is locked (or was just created) by this transaction.
        (Recorded::TicketNotAsExpected, _) => Err(IntakeError::Database(sqlx::Error::RowNotFound)),
    }
}

/// A reply 3Dolphins reports that is the echo of one the bridge delivered there: recorded as
/// an `echo` event on the ticket, answered with the original's id, not forwarded again.
async fn take_echo(
    tx: &mut PgConnection,
    ctx: &Context<'_>,
    m: &MessageEvent,
    route: &MessageRoute,
) -> Result<Option<Reply>, IntakeError> {
    let fingerprint = Fingerprint {
        owner: ctx.owner,
        ticket_number: &m.ticket_number,
        message_type: m.message_type.as_deref(),
        message: m.message.as_deref(),
        media_link: m.media_link.as_deref(),
    };
    let earliest = since(ctx.now, ctx.echo_window);
    let Some(original) = messages::take_echo_original(&mut *tx, &fingerprint, earliest, ctx.now).await? else {
        return Ok(None);
    };
    let echo = NewEvent {
        kind: EventKind::Echo,
        actor: route.actor.into(),
        detail: json!({"messageId": original, "messageType": m.message_type}),
    };
    events::append(&mut *tx, ctx.owner, &m.ticket_number, ctx.now, &[echo]).await?;
    Ok(Some(success_with_id(original)))
}

/// What message `m` writes with its ticket change `t`: the message, audit and outbox row,
/// unless it is a duplicate or the ticket's status is not `expected`.
fn message_write(
    ctx: &Context<'_>,
    m: &MessageEvent,
    route: &MessageRoute,
    t: &Transition,
    expected: Option<TicketStatus>,
) -> Result<MessageWrite, IntakeError> {
    let url = ctx.settings.url_for(route.target);
    let change = TicketChange {
        status: Some(t.status),
        closed: t.closed,
        reopened: t.reopened,
        channel: m.channel.clone(),
        account_id: m.account_id.clone(),
        contact_id: m.contact_id.clone(),
        customer_name: m.customer_name.clone(),
        group_id: m.group_id.clone(),
        language: m.language.clone(),
        created_date: m.created_date,
        message: Some(route.direction),
        next_third_party_sequence: url.is_some() && route.target.peer() == Peer::ThirdParty,
        next_dolphins_sequence: url.is_some() && route.target.peer() == Peer::Dolphins,
    };
    let id = Uuid::now_v7();
    let warnings = serde_json::to_value(&m.warnings).unwrap_or_else(|_| json!([]));
    let raw = Value::Object(m.body.clone());
    let mut audit = lifecycle(t, route.actor, m.channel.as_deref());
    let kind = if route.direction == Direction::In { EventKind::MessageIn } else { EventKind::MessageOut };
    let mut detail = json!({"messageId": id, "messageType": m.message_type});
    if !m.warnings.is_empty() {
        detail["warnings"] = warnings.clone();
    }
    audit.push(NewEvent { kind, actor: route.actor.into(), detail });
    let planned = plan_delivery(route.target, url, Some(id), &raw, &mut audit)?;
    let duplicates =
        (route.action == Action::IncomingMessage && !ctx.dedupe_window.is_zero()).then(|| DuplicateCheck {
            since: since(ctx.now, ctx.dedupe_window),
            created_date_raw: m.body.get("createdDate").and_then(Value::as_str).map(str::to_string),
        });
    Ok(MessageWrite {
        message: NewMessage {
            owner: ctx.owner.to_string(),
            id,
            ticket_number: m.ticket_number.clone(),
            message_type: m.message_type.clone(),
            message: m.message.clone(),
            media_link: m.media_link.clone(),
            source: route.source,
            at: ctx.now,
            warnings,
            raw,
        },
        change,
        expected_status: expected,
        events: audit,
        delivery: planned.map(|p| NewOutboxRow { id: p.id, target: route.target, body: p.body }),
        duplicates,
        lease: None,
    })
}

/// What an applied write wrote, for the log lines that follow it.
struct Written {
    message: Uuid,
    delivery: Option<(Uuid, crate::domain::Target)>,
}

impl Written {
    fn of(write: &MessageWrite) -> Self {
        Written { message: write.message.id, delivery: write.delivery.as_ref().map(|d| (d.id, d.target)) }
    }

    fn log(&self, ctx: &Context<'_>, m: &MessageEvent) {
        if let Some((delivery, target)) = &self.delivery {
            tracing::debug!(owner = ctx.owner, ticket = %m.ticket_number, %delivery, %target, "delivery enqueued");
        }
        if !m.warnings.is_empty() {
            tracing::warn!(owner = ctx.owner, ticket = %m.ticket_number, message = %self.message,
                warnings = m.warnings.len(), "accepted an event with payload problems");
        }
    }
}
