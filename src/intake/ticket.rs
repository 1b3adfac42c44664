//! What every transaction-path event does to its ticket: lock (or create) it and apply the
//! state machine, list the lifecycle events, and plan the outbox row.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{Context, IntakeError};
use crate::domain::ticket::{transition, Action, Transition};
use crate::domain::{EventKind, Target};
use crate::store::events::NewEvent;
use crate::store::tickets;

/// Locks the ticket (creating it when the action may), and applies the state machine.
pub(super) async fn lock_or_create(
    tx: &mut PgConnection,
    ctx: &Context<'_>,
    ticket: &str,
    action: Action,
    opened_at: DateTime<Utc>,
) -> Result<Transition, IntakeError> {
    let current = tickets::lock(&mut *tx, ctx.owner, ticket).await?;
    let t = transition(current, action)?;
    if !t.created
        || tickets::insert_new(&mut *tx, ctx.owner, ticket, opened_at, ctx.now, ctx.now - crate::rollup_task::LATE)
            .await?
    {
        return Ok(t);
    }
    // A concurrent request created it between our lock and insert: take its row.
    let current = tickets::lock(&mut *tx, ctx.owner, ticket).await?;
    Ok(transition(current, action)?)
}

/// The status-change events a transition produces, in order.
pub(super) fn lifecycle(t: &Transition, actor: &str, channel: Option<&str>) -> Vec<NewEvent> {
    let mut audit = Vec::new();
    if t.created {
        audit.push(NewEvent { kind: EventKind::Created, actor: actor.into(), detail: json!({"channel": channel}) });
    }
    if t.reopened {
        audit.push(NewEvent { kind: EventKind::Reopened, actor: actor.into(), detail: json!({}) });
    }
    if t.closed {
        audit.push(NewEvent { kind: EventKind::Closed, actor: actor.into(), detail: json!({}) });
    }
    audit
}

/// An outbox row about to be written; its sequence comes from the ticket update.
pub(super) struct PlannedDelivery {
    pub id: Uuid,
    pub body: String,
}

/// The outbox row for `target`, or `None` with a `not_forwarded` audit event when the
/// tenant configured no URL for it.
pub(super) fn plan_delivery(
    target: Target,
    url: Option<&str>,
    message_id: Option<Uuid>,
    body: &Value,
    audit: &mut Vec<NewEvent>,
) -> Result<Option<PlannedDelivery>, IntakeError> {
    if url.is_none() {
        audit.push(NewEvent {
            kind: EventKind::NotForwarded,
            actor: "bridge".into(),
            detail: json!({"target": target, "messageId": message_id, "reason": "target not configured"}),
        });
        return Ok(None);
    }
    let body = serde_json::to_string(body).map_err(|e| IntakeError::Database(sqlx::Error::Encode(Box::new(e))))?;
    Ok(Some(PlannedDelivery { id: Uuid::now_v7(), body }))
}

/// The start of a window of `window` that ends `now`.
pub(super) fn since(now: DateTime<Utc>, window: std::time::Duration) -> DateTime<Utc> {
    now - chrono::Duration::from_std(window).unwrap_or(chrono::Duration::zero())
}
