//! Accepting an event: everything between a webhook's validated payload and its 2xx.
//!
//! One accepted event is applied atomically: ticket upsert, message, lifecycle events,
//! outbox row and the idempotency record. The caller answers 2xx only after [`apply`]
//! returns, i.e. after the commit. Two ways in:
//!
//! - a message on a ticket already open (nearly all traffic) is written by one statement
//!   shared with concurrent requests' messages ([`group_commit`], `message::write_grouped`);
//! - anything else (a new, closed or reopened ticket, commands, echo checks, idempotency
//!   keys) takes one explicit transaction (`message::write_in_transaction`,
//!   `command::apply_command`).
//!
//! The outbox rows written are handed to this process's dispatcher after the commit,
//! claimed or with a wake-up ([`GroupCommit::after_commit`]).
//!
//! Files: `route` (how each kind of event moves), `message`, `command`, `ticket`
//! (lock or create, lifecycle events, the outbox row), [`group_commit`] (the batching). The
//! SQL is in [`crate::store`] (`message_writes` is the grouped statement).

pub mod group_commit;

mod command;
mod message;
mod route;
mod ticket;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::Value;
use uuid::Uuid;

use crate::domain::payload::{CommandEvent, MessageEvent, Problem};
use crate::domain::tenant::TenantSettings;
use crate::domain::ticket::TicketError;
use crate::store::idempotency;
use group_commit::{Committed, GroupCommit};
use route::Way;
use sqlx::PgPool;

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
pub enum IntakeError {
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
) -> Result<Reply, IntakeError> {
    if idem.is_none() {
        if let Some((reply, applied)) = message::write_grouped(group, ctx, event).await? {
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
            return Err(IntakeError::InProgress);
        }
        if let Some(stored) = idempotency::find(&mut *tx, ctx.owner, &idem.key, ctx.now - IDEMPOTENCY_TTL).await? {
            if !crate::credentials::constant_time_eq(&stored.request_hash, &idem.request_hash) {
                return Err(IntakeError::KeyReused);
            }
            let status = u16::try_from(stored.response_status).unwrap_or(200);
            return Ok(Reply { status, body: stored.response_body });
        }
    }
    let ((reply, applied), claimed) = match route::way(event) {
        Way::Message(m, route) => message::write_in_transaction(&mut tx, group, ctx, m, route).await?,
        Way::Command(c, from) => (command::apply_command(&mut tx, ctx, c, from).await?, Committed::Unclaimed),
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

/// The webhooks' 200 reply: `{"status":"success"}`, with the stored message's id when the
/// event carried one.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Accepted {
    #[schema(schema_with = success_literal)]
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<Uuid>,
}

fn success_literal() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(["success"]))
        .build()
}

fn accepted(message_id: Option<Uuid>) -> Reply {
    let body = serde_json::to_value(Accepted { status: "success", message_id }).unwrap_or_default();
    Reply { status: 200, body }
}

fn success_with_id(id: Uuid) -> Reply {
    accepted(Some(id))
}

fn success() -> Reply {
    accepted(None)
}

/// Problems of an event shaped like neither an Outgoing nor a Command Event.
pub fn neither_message_nor_command() -> Vec<Problem> {
    vec![Problem::new("message", "an Outgoing Event needs a \"message\" key, a Command Event an \"event\" key")]
}
