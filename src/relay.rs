//! Applies one accepted event atomically: ticket upsert, message, lifecycle events, outbox
//! rows and the idempotency record. A message on an open ticket is part of one statement,
//! its own transaction ([`intake`]), shared with concurrent requests' messages
//! ([`GroupCommit`]); anything else (a new, closed or reopened ticket, commands, echo
//! checks, idempotency keys) takes one explicit transaction. The caller answers 2xx only
//! after [`apply`] returns, i.e. after the commit. The outbox rows written are handed to
//! this process's dispatcher, claimed or with a wake-up ([`GroupCommit::after_commit`]).

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::{json, Value};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::domain::payload::{CommandEvent, MessageEvent, Problem};
use crate::domain::tenant::TenantSettings;
use crate::domain::ticket::{transition, Action, TicketError, Transition};
use crate::domain::{Direction, EventKind, Peer, Source, Target, TicketStatus};
use crate::group_commit::GroupCommit;
use crate::store::deliveries::Claimed;
use crate::store::events::NewEvent;
use crate::store::intake::{self, Recorded};
use crate::store::tickets::TicketChange;
use crate::store::{deliveries, events, idempotency, messages, tickets};

/// Who is speaking, for what tenant, at what time.
pub struct Context<'a> {
    pub owner: &'a str,
    pub timezone: Tz,
    pub settings: &'a TenantSettings,
    pub now: DateTime<Utc>,
    /// `BRIDGE_ECHO_WINDOW`.
    pub echo_window: std::time::Duration,
    /// `BRIDGE_DEDUPE_WINDOW` (zero: off).
    pub dedupe_window: std::time::Duration,
}

/// An event that passed validation, tagged with the side it came from.
pub enum Event {
    /// Customer message from 3Dolphins → third party.
    Incoming(MessageEvent),
    /// Reply reported by 3Dolphins → third party (mirrored).
    DolphinsReply(MessageEvent),
    /// Command reported by 3Dolphins → third party (mirrored).
    DolphinsCommand(CommandEvent),
    /// Agent reply from the third party → 3Dolphins.
    ThirdPartyReply(MessageEvent),
    /// Close from the third party → 3Dolphins.
    ThirdPartyCommand(CommandEvent),
}

/// A request's idempotency key and the hash of what it asked.
pub struct Idempotency {
    pub key: String,
    pub request_hash: [u8; 32],
}

/// The committed reply (also what an idempotent repeat gets back).
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Ticket(#[from] TicketError),
    #[error("a request with this idempotency key is still being applied")]
    InProgress,
    #[error("this idempotency key was used for a different request")]
    KeyReused,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// How long an idempotency key is remembered.
pub const IDEMPOTENCY_TTL: chrono::Duration = chrono::Duration::hours(24);

/// Applies `event` for the tenant in `ctx`, once per idempotency key.
pub async fn apply(
    pool: &PgPool,
    group: &GroupCommit,
    ctx: &Context<'_>,
    idem: Option<&Idempotency>,
    event: &Event,
) -> Result<Reply, RelayError> {
    if idem.is_none() {
        if let Some((reply, applied)) = apply_alone(group, ctx, event).await? {
            if applied {
                count_accepted(event);
            }
            return Ok(reply);
        }
    }
    let mut tx = pool.begin().await?;
    if let Some(idem) = idem {
        // The advisory lock makes a concurrent twin fail fast (409) instead of queueing
        // behind us; after our commit the twin finds the stored reply.
        if !idempotency::try_lock(&mut *tx, ctx.owner, &idem.key).await? {
            return Err(RelayError::InProgress);
        }
        if let Some(stored) = idempotency::find(&mut *tx, ctx.owner, &idem.key, ctx.now - IDEMPOTENCY_TTL).await? {
            if !crate::credentials::constant_time_eq(&stored.request_hash, &idem.request_hash) {
                return Err(RelayError::KeyReused);
            }
            let status = u16::try_from(stored.response_status).unwrap_or(200);
            return Ok(Reply { status, body: stored.response_body });
        }
    }
    let ((reply, applied), claimed) = match event {
        Event::Incoming(m) => relay_message(&mut tx, group, ctx, m, &INCOMING).await?,
        Event::DolphinsReply(m) => relay_message(&mut tx, group, ctx, m, &DOLPHINS_REPLY).await?,
        Event::ThirdPartyReply(m) => relay_message(&mut tx, group, ctx, m, &THIRD_PARTY_REPLY).await?,
        Event::DolphinsCommand(c) => (relay_command(&mut tx, ctx, c, Side::Dolphins).await?, None),
        Event::ThirdPartyCommand(c) => (relay_command(&mut tx, ctx, c, Side::ThirdParty).await?, None),
    };
    if let Some(idem) = idem {
        idempotency::save(&mut *tx, ctx.owner, &idem.key, &idem.request_hash, reply.status, &reply.body, ctx.now)
            .await?;
    }
    tx.commit().await?;
    if applied {
        group.after_commit(claimed);
        count_accepted(event);
    }
    Ok(reply)
}

/// Counts a committed event and its payload warnings. Warning labels are limited to the
/// documented field names, so hostile keys cannot grow the label set.
fn count_accepted(event: &Event) {
    use crate::telemetry::names;
    let (kind, warnings) = match event {
        Event::Incoming(m) => ("incoming", &m.warnings),
        Event::DolphinsReply(m) => ("dolphins_reply", &m.warnings),
        Event::ThirdPartyReply(m) => ("third_party_reply", &m.warnings),
        Event::DolphinsCommand(c) => ("dolphins_command", &c.warnings),
        Event::ThirdPartyCommand(c) => ("third_party_command", &c.warnings),
    };
    metrics::counter!(names::EVENTS_ACCEPTED, "kind" => kind).increment(1);
    for w in warnings {
        let field =
            crate::domain::payload::DOCUMENTED_FIELDS.iter().find(|f| **f == w.field).copied().unwrap_or("other");
        metrics::counter!(names::PAYLOAD_WARNINGS, "field" => field).increment(1);
    }
}

/// How one kind of message event moves through the bridge.
struct MessageRoute {
    action: Action,
    direction: Direction,
    source: Source,
    target: Target,
    actor: &'static str,
}

const INCOMING: MessageRoute = MessageRoute {
    action: Action::IncomingMessage,
    direction: Direction::In,
    source: Source::Dolphins,
    target: Target::ThirdPartyIncoming,
    actor: "3dolphins",
};
const DOLPHINS_REPLY: MessageRoute = MessageRoute {
    action: Action::DolphinsReply,
    direction: Direction::Out,
    source: Source::Dolphins,
    target: Target::ThirdPartyOutgoing,
    actor: "3dolphins",
};
const THIRD_PARTY_REPLY: MessageRoute = MessageRoute {
    action: Action::ThirdPartyReply,
    direction: Direction::Out,
    source: Source::ThirdParty,
    target: Target::DolphinsMessage,
    actor: "third_party",
};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Dolphins,
    ThirdParty,
}

fn success_with_id(id: Uuid) -> Reply {
    Reply { status: 200, body: json!({"status": "success", "messageId": id}) }
}

fn success() -> Reply {
    Reply { status: 200, body: json!({"status": "success"}) }
}

fn since(now: DateTime<Utc>, window: std::time::Duration) -> DateTime<Utc> {
    now - chrono::Duration::from_std(window).unwrap_or(chrono::Duration::zero())
}

/// The common case as one statement outside any transaction (see [`intake`]), written
/// together with concurrent requests' messages ([`GroupCommit`]): a message on an open
/// ticket, which leaves it open. `None` when it was not that case (nothing was written): the
/// caller takes the transaction path.
async fn apply_alone(
    group: &GroupCommit,
    ctx: &Context<'_>,
    event: &Event,
) -> Result<Option<(Reply, bool)>, RelayError> {
    let (m, route) = match event {
        Event::Incoming(m) => (m, &INCOMING),
        Event::ThirdPartyReply(m) => (m, &THIRD_PARTY_REPLY),
        // The echo check reads and marks another message first: that needs the transaction.
        Event::DolphinsReply(m) if ctx.echo_window.is_zero() => (m, &DOLPHINS_REPLY),
        _ => return Ok(None),
    };
    let assumed = TicketStatus::Open;
    let t = transition(Some(assumed), route.action)?;
    let intake = message_intake(ctx, m, route, &t, Some(assumed))?;
    let (id, written) = (intake.message.id, Written::of(&intake));
    Ok(match group.record(intake).await? {
        Recorded::Applied => {
            written.log(ctx, m);
            Some((success_with_id(id), true))
        }
        Recorded::Duplicate(first) => Some((success_with_id(first), false)),
        Recorded::TicketNotAsExpected => None,
    })
}

/// A message in the transaction; with its delivery if that was written claimed, for after
/// the commit ([`GroupCommit::after_commit`]).
async fn relay_message(
    tx: &mut PgConnection,
    group: &GroupCommit,
    ctx: &Context<'_>,
    m: &MessageEvent,
    route: &MessageRoute,
) -> Result<((Reply, bool), Option<Claimed>), RelayError> {
    if route.action == Action::DolphinsReply && !ctx.echo_window.is_zero() {
        let fingerprint = messages::Fingerprint {
            owner: ctx.owner,
            ticket_number: &m.ticket_number,
            message_type: m.message_type.as_deref(),
            message: m.message.as_deref(),
            media_link: m.media_link.as_deref(),
        };
        let earliest = since(ctx.now, ctx.echo_window);
        if let Some(original) = messages::take_echo_original(&mut *tx, &fingerprint, earliest, ctx.now).await? {
            let echo = NewEvent {
                kind: EventKind::Echo,
                actor: route.actor.into(),
                detail: json!({"messageId": original, "messageType": m.message_type}),
            };
            events::append(&mut *tx, ctx.owner, &m.ticket_number, ctx.now, &[echo]).await?;
            return Ok(((success_with_id(original), false), None));
        }
    }
    let opened_at = m.created_date.unwrap_or(ctx.now);
    let t = lock_or_create(tx, ctx, &m.ticket_number, route.action, opened_at).await?;
    let mut intake = message_intake(ctx, m, route, &t, None)?;
    let (id, written) = (intake.message.id, Written::of(&intake));
    group.offer_lease(&mut intake);
    let (recorded, claimed) = intake::record_messages(&mut *tx, &[&intake])
        .await?
        .pop()
        .ok_or(RelayError::Database(sqlx::Error::RowNotFound))?;
    match recorded {
        Recorded::Applied => {
            written.log(ctx, m);
            Ok(((success_with_id(id), true), claimed))
        }
        Recorded::Duplicate(first) => Ok(((success_with_id(first), false), None)),
        // The row is locked (or was just created) by this transaction.
        Recorded::TicketNotAsExpected => Err(RelayError::Database(sqlx::Error::RowNotFound)),
    }
}

/// What message `m` writes with its ticket change `t`: the message, audit and outbox row,
/// unless it is a duplicate or the ticket's status is not `expected` (see [`intake`]).
fn message_intake(
    ctx: &Context<'_>,
    m: &MessageEvent,
    route: &MessageRoute,
    t: &Transition,
    expected: Option<TicketStatus>,
) -> Result<intake::MessageIntake, RelayError> {
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
        (route.action == Action::IncomingMessage && !ctx.dedupe_window.is_zero()).then(|| intake::DuplicateCheck {
            since: since(ctx.now, ctx.dedupe_window),
            created_date_raw: m.body.get("createdDate").and_then(Value::as_str).map(str::to_string),
        });
    Ok(intake::MessageIntake {
        message: messages::NewMessage {
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
        delivery: planned.map(|p| intake::NewOutboxRow { id: p.id, target: route.target, body: p.body }),
        duplicates,
        lease: None,
    })
}

/// What an applied intake wrote, for the log lines that follow it.
struct Written {
    message: Uuid,
    delivery: Option<(Uuid, Target)>,
}

impl Written {
    fn of(intake: &intake::MessageIntake) -> Self {
        Written { message: intake.message.id, delivery: intake.delivery.as_ref().map(|d| (d.id, d.target)) }
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

async fn relay_command(
    tx: &mut PgConnection,
    ctx: &Context<'_>,
    c: &CommandEvent,
    side: Side,
) -> Result<(Reply, bool), RelayError> {
    let (actor, target) = match side {
        Side::Dolphins => ("3dolphins", Target::ThirdPartyCommand),
        Side::ThirdParty => ("third_party", Target::DolphinsCommand),
    };
    let action = match (side, c.is_close()) {
        (Side::Dolphins, true) => Action::DolphinsClose,
        // An unknown word from 3Dolphins: recorded and mirrored, no state change.
        (Side::Dolphins, false) => Action::DolphinsReply,
        (Side::ThirdParty, _) => Action::ThirdPartyClose,
    };
    if side == Side::Dolphins && c.is_close() && !ctx.echo_window.is_zero() {
        let earliest = since(ctx.now, ctx.echo_window);
        let current = tickets::lock(&mut *tx, ctx.owner, &c.ticket_number).await?;
        if current == Some(TicketStatus::Closed)
            && deliveries::recent_exists(&mut *tx, ctx.owner, &c.ticket_number, Target::DolphinsCommand, earliest)
                .await?
        {
            let echo = NewEvent { kind: EventKind::Echo, actor: actor.into(), detail: json!({"event": c.event}) };
            events::append(&mut *tx, ctx.owner, &c.ticket_number, ctx.now, &[echo]).await?;
            return Ok((success(), false));
        }
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
        let sequence = match target.peer() {
            Peer::ThirdParty => seqs.seq_third_party,
            Peer::Dolphins => seqs.seq_dolphins,
        };
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

/// Locks the ticket (creating it when the action may), and applies the state machine.
async fn lock_or_create(
    tx: &mut PgConnection,
    ctx: &Context<'_>,
    ticket: &str,
    action: Action,
    opened_at: DateTime<Utc>,
) -> Result<Transition, RelayError> {
    let current = tickets::lock(&mut *tx, ctx.owner, ticket).await?;
    let t = transition(current, action)?;
    if !t.created || tickets::insert_new(&mut *tx, ctx.owner, ticket, opened_at, ctx.now).await? {
        return Ok(t);
    }
    // A concurrent request created it between our lock and insert: take its row.
    let current = tickets::lock(&mut *tx, ctx.owner, ticket).await?;
    Ok(transition(current, action)?)
}

/// The status-change events a transition produces, in order.
fn lifecycle(t: &Transition, actor: &str, channel: Option<&str>) -> Vec<NewEvent> {
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
struct PlannedDelivery {
    id: Uuid,
    body: String,
}

/// The outbox row for `target`, or `None` with a `not_forwarded` audit event when the
/// tenant configured no URL for it.
fn plan_delivery(
    target: Target,
    url: Option<&str>,
    message_id: Option<Uuid>,
    body: &Value,
    audit: &mut Vec<NewEvent>,
) -> Result<Option<PlannedDelivery>, RelayError> {
    if url.is_none() {
        audit.push(NewEvent {
            kind: EventKind::NotForwarded,
            actor: "bridge".into(),
            detail: json!({"target": target, "messageId": message_id, "reason": "target not configured"}),
        });
        return Ok(None);
    }
    let body = serde_json::to_string(body).map_err(|e| RelayError::Database(sqlx::Error::Encode(Box::new(e))))?;
    Ok(Some(PlannedDelivery { id: Uuid::now_v7(), body }))
}

/// Problems of an event shaped like neither an Outgoing nor a Command Event.
pub fn neither_message_nor_command() -> Vec<Problem> {
    vec![Problem::new("message", "an Outgoing Event needs a \"message\" key, a Command Event an \"event\" key")]
}
