//! A Command Event (a close, or another word 3Dolphins reports), always in the caller's
//! transaction: it changes the ticket's status, so it holds the ticket's row lock.

use serde_json::{json, Value};
use sqlx::PgConnection;

use super::route::command_route;
use super::ticket::{lifecycle, lock_or_create, plan_delivery, since};
use super::{success, Context, IntakeError, Reply};
use crate::domain::payload::CommandEvent;
use crate::domain::{EventKind, Peer, Target, TicketStatus};
use crate::store::events::NewEvent;
use crate::store::tickets::TicketChange;
use crate::store::{deliveries, events, tickets};

/// Applies command `c` sent by `from`; answers the reply and whether anything was applied
/// (an echo of our own close, or a close of a closed ticket, applies nothing).
pub(super) async fn apply_command(
    tx: &mut PgConnection,
    ctx: &Context<'_>,
    c: &CommandEvent,
    from: Peer,
) -> Result<(Reply, bool), IntakeError> {
    let (actor, target, action) = command_route(from, c.is_close());
    if from == Peer::Dolphins && c.is_close() && is_echo_of_our_close(tx, ctx, c).await? {
        let echo = NewEvent { kind: EventKind::Echo, actor: actor.into(), detail: json!({"event": c.event}) };
        events::append(&mut *tx, ctx.owner, &c.ticket_number, ctx.now, &[echo]).await?;
        return Ok((success(), false));
    }
    let t = lock_or_create(tx, ctx, &c.ticket_number, action, ctx.now).await?;
    if t.is_noop_close(action) {
        return Ok((success(), false));
    }
    let url = ctx.settings.url_for(target);
    let change = TicketChange {
        status: Some(t.status),
        closed: t.closed,
        reopened: t.reopened,
        channel: c.channel.clone(),
        next_third_party_sequence: url.is_some() && target.peer() == Peer::ThirdParty,
        next_dolphins_sequence: url.is_some() && target.peer() == Peer::Dolphins,
        ..TicketChange::default()
    };
    let seqs = tickets::apply(&mut *tx, ctx.owner, &c.ticket_number, &change, ctx.now).await?;
    let mut audit = lifecycle(&t, actor, c.channel.as_deref());
    if !c.is_close() {
        audit.push(NewEvent { kind: EventKind::Command, actor: actor.into(), detail: json!({"event": c.event}) });
    }
    if !c.warnings.is_empty() {
        if let Some(last) = audit.last_mut() {
            last.detail["warnings"] = serde_json::to_value(&c.warnings).unwrap_or_else(|_| json!([]));
        }
    }
    let raw = Value::Object(c.body.clone());
    let planned = plan_delivery(target, url, None, &raw, &mut audit)?;
    events::append(&mut *tx, ctx.owner, &c.ticket_number, ctx.now, &audit).await?;
    if let Some(p) = &planned {
        // A command goes to one of the two relayed systems (never to the alerts receiver).
        let sequence = if target.peer() == Peer::ThirdParty { seqs.seq_third_party } else { seqs.seq_dolphins };
        tracing::debug!(owner = ctx.owner, ticket = %c.ticket_number, delivery = %p.id, target = %target,
            "delivery enqueued");
        let delivery = deliveries::NewDelivery {
            owner: ctx.owner,
            id: p.id,
            ticket_number: &c.ticket_number,
            target,
            sequence,
            body: &p.body,
            now: ctx.now,
        };
        deliveries::enqueue(&mut *tx, delivery).await?;
    }
    Ok((success(), true))
}

/// Whether a close reported by 3Dolphins is the echo of a close the bridge delivered there
/// within the echo window (the ticket is closed, and a close went out to 3Dolphins lately).
async fn is_echo_of_our_close(tx: &mut PgConnection, ctx: &Context<'_>, c: &CommandEvent) -> Result<bool, IntakeError> {
    if ctx.echo_window.is_zero() {
        return Ok(false);
    }
    let current = tickets::lock(&mut *tx, ctx.owner, &c.ticket_number).await?;
    if current != Some(TicketStatus::Closed) {
        return Ok(false);
    }
    let earliest = since(ctx.now, ctx.echo_window);
    Ok(deliveries::recent_exists(&mut *tx, ctx.owner, &c.ticket_number, Target::DolphinsCommand, earliest).await?)
}
