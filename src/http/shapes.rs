//! The reply shapes more than one route shows, each one Rust type: serde writes its JSON,
//! utoipa derives its schema in `/openapi.json`, and a CSV export takes its columns from that
//! schema ([`super::csv`]), so the three cannot disagree.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::params::Cursor;
use crate::delivery::send::SentRequest;
use crate::domain::payload::Problem;
use crate::store::events::EventRow;
use crate::store::messages::MessageRow;
use crate::store::redelivery::{AttemptRow, DeliveryRow};
use crate::store::tickets::TicketRow;

/// A string schema limited to `names` (for values stored as text).
fn names(names: &[&str]) -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(names.iter().copied()))
        .build()
}

fn ticket_status() -> utoipa::openapi::Object {
    names(&["open", "closed"])
}
fn direction() -> utoipa::openapi::Object {
    names(&["in", "out"])
}
fn message_source() -> utoipa::openapi::Object {
    names(&["3dolphins", "third_party", "history"])
}
pub(super) fn delivery_status() -> utoipa::openapi::Object {
    names(&crate::domain::DeliveryStatus::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>())
}
pub(super) fn target() -> utoipa::openapi::Object {
    names(&crate::domain::Target::ALL.iter().map(|t| t.as_str()).collect::<Vec<_>>())
}

/// A ticket with its running figures.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Ticket)]
pub struct TicketOut {
    pub ticket_number: String,
    #[schema(schema_with = ticket_status)]
    pub status: String,
    pub channel: Option<String>,
    pub account_id: Option<String>,
    pub contact_id: Option<String>,
    pub customer_name: Option<String>,
    pub group_id: Option<String>,
    pub language: Option<String>,
    /// The 3Dolphins `createdDate` of the first message.
    pub created_date: Option<DateTime<Utc>>,
    pub opened_at: DateTime<Utc>,
    pub first_message_at: Option<DateTime<Utc>>,
    pub first_response_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub last_message_at: Option<DateTime<Utc>>,
    pub messages_in: i64,
    pub messages_out: i64,
    pub reopen_count: i64,
}

impl From<&TicketRow> for TicketOut {
    fn from(r: &TicketRow) -> Self {
        TicketOut {
            ticket_number: r.ticket_number.clone(),
            status: r.status.clone(),
            channel: r.channel.clone(),
            account_id: r.account_id.clone(),
            contact_id: r.contact_id.clone(),
            customer_name: r.customer_name.clone(),
            group_id: r.group_id.clone(),
            language: r.language.clone(),
            created_date: r.created_date,
            opened_at: r.opened_at,
            first_message_at: r.first_message_at,
            first_response_at: r.first_response_at,
            closed_at: r.closed_at,
            last_message_at: r.last_message_at,
            messages_in: r.messages_in.into(),
            messages_out: r.messages_out.into(),
            reopen_count: r.reopen_count.into(),
        }
    }
}

/// A message of a conversation.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Message)]
pub struct MessageOut {
    pub id: Uuid,
    pub ticket_number: String,
    #[schema(schema_with = direction)]
    pub direction: String,
    pub message_type: Option<String>,
    pub message: Option<String>,
    pub media_link: Option<String>,
    #[schema(schema_with = message_source)]
    pub source: String,
    pub at: DateTime<Utc>,
    /// What was wrong with the payload it came in (accepted anyway).
    #[schema(value_type = Vec<Problem>)]
    pub warnings: Value,
}

impl From<&MessageRow> for MessageOut {
    fn from(m: &MessageRow) -> Self {
        MessageOut {
            id: m.id,
            ticket_number: m.ticket_number.clone(),
            direction: m.direction.clone(),
            message_type: m.message_type.clone(),
            message: m.message.clone(),
            media_link: m.media_link.clone(),
            source: m.source.clone(),
            at: m.at,
            warnings: m.warnings.clone(),
        }
    }
}

/// A lifecycle event (its id as a string: JavaScript clients lose precision on 64-bit ids).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = LifecycleEvent)]
pub struct EventOut {
    pub id: String,
    /// `opened`, `message_in`, `closed`, `reopened`, `delivered`, ... (README *Lifecycle audit*).
    pub kind: String,
    pub at: DateTime<Utc>,
    /// `3dolphins`, `third_party`, `bridge`, or the API caller.
    pub actor: String,
    #[schema(value_type = Object)]
    pub detail: Value,
}

impl From<&EventRow> for EventOut {
    fn from(e: &EventRow) -> Self {
        EventOut {
            id: e.id.to_string(),
            kind: e.kind.clone(),
            at: e.at,
            actor: e.actor.clone(),
            detail: e.detail.clone(),
        }
    }
}

/// One attempt at a delivery.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Attempt)]
pub struct AttemptOut {
    pub n: i32,
    pub at: DateTime<Utc>,
    pub duration_ms: i32,
    pub http_status: Option<i32>,
    pub error: Option<String>,
    /// The first bytes of the peer's reply.
    pub response_head: Option<String>,
    /// What was sent: the URL and every header, credentials masked (absent when nothing
    /// was sent, and for attempts recorded before the bridge kept it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<SentRequest>,
}

impl From<&AttemptRow> for AttemptOut {
    fn from(a: &AttemptRow) -> Self {
        AttemptOut {
            n: a.n,
            at: a.at,
            duration_ms: a.duration_ms,
            http_status: a.http_status,
            error: a.error.clone(),
            response_head: a.response_head.clone(),
            request: a.request.clone().and_then(|r| serde_json::from_value(r).ok()),
        }
    }
}

/// A delivery of one event to one peer endpoint.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Delivery)]
pub struct DeliveryOut {
    pub id: Uuid,
    pub ticket_number: String,
    #[schema(schema_with = target)]
    pub target: String,
    #[schema(schema_with = delivery_status)]
    pub status: String,
    pub attempts: i32,
    /// When it is next tried (waiting deliveries only).
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    /// Its place in the ticket's order for this peer.
    pub sequence: i32,
    pub message_id: Option<Uuid>,
    /// Every attempt, oldest first (absent in lists).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt_log: Option<Vec<AttemptOut>>,
}

impl DeliveryOut {
    /// A delivery in the API's shape, with its attempt log when given.
    pub fn new(d: &DeliveryRow, log: Option<&[&AttemptRow]>) -> Self {
        let waiting = matches!(d.status.as_str(), "pending" | "failed");
        DeliveryOut {
            id: d.id,
            ticket_number: d.ticket_number.clone(),
            target: d.target.clone(),
            status: d.status.clone(),
            attempts: d.attempts,
            next_attempt_at: waiting.then_some(d.next_attempt_at),
            last_error: d.last_error.clone(),
            created_at: d.created_at,
            delivered_at: d.delivered_at,
            sequence: d.sequence,
            message_id: d.message_id,
            attempt_log: log.map(|log| log.iter().map(|a| AttemptOut::from(*a)).collect()),
        }
    }
}

/// Declares a page of a list: `{"data": [...], "nextCursor"}`.
macro_rules! page_type {
    ($(#[$doc:meta])* $name:ident of $item:ty) => {
        $(#[$doc])*
        #[derive(Debug, serde::Serialize, utoipa::ToSchema)]
        #[serde(rename_all = "camelCase")]
        pub struct $name {
            pub data: Vec<$item>,
            /// Pass as `cursor` for the next page; `null` on the last one.
            pub next_cursor: Option<String>,
        }

        impl $name {
            /// A page; the cursor of the next one only when this one is full.
            pub fn new(data: Vec<$item>, next: Option<$crate::http::params::Cursor>, limit: i64) -> Self {
                let next_cursor = next.filter(|_| data.len() as i64 == limit).map(|c| c.encode());
                $name { data, next_cursor }
            }

            /// The whole list in one page.
            pub fn all(data: Vec<$item>) -> Self {
                $name { data, next_cursor: None }
            }
        }
    };
}
pub(crate) use page_type;

page_type!(TicketPage of TicketOut);
page_type!(EventPage of EventOut);
page_type!(DeliveryPage of DeliveryOut);

/// A page of a conversation, with what the 3Dolphins history merge did.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessagePage {
    pub data: Vec<MessageOut>,
    pub next_cursor: Option<String>,
    /// Only with `source=merged`, on the first page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<HistoryMerge>,
}

impl MessagePage {
    pub fn new(data: Vec<MessageOut>, next: Option<Cursor>, limit: i64, history: Option<HistoryMerge>) -> Self {
        let next_cursor = next.filter(|_| data.len() as i64 == limit).map(|c| c.encode());
        MessagePage { data, next_cursor, history }
    }
}

/// What merging the 3Dolphins Conversation History did; a failure is reported, not raised.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryMerge {
    pub merged: bool,
    /// Messages added from the history.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub added: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl HistoryMerge {
    pub fn failed(error: impl Into<String>) -> Self {
        HistoryMerge { merged: false, added: None, error: Some(error.into()) }
    }
}

/// Everything about one ticket, for audits and support cases.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TicketExport {
    pub ticket: TicketOut,
    pub messages: Vec<MessageOut>,
    pub events: Vec<EventOut>,
    pub deliveries: Vec<DeliveryOut>,
    pub exported_at: DateTime<Utc>,
}

/// A message with the delivery that carries it to the other side.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageWithDelivery {
    #[serde(flatten)]
    pub message: MessageOut,
    pub delivery: Option<DeliveryOut>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON keys a value of `T` serializes to, in order.
    fn keys(value: &impl Serialize) -> Vec<String> {
        serde_json::to_value(value)
            .ok()
            .and_then(|v| v.as_object().map(|o| o.keys().cloned().collect()))
            .unwrap_or_default()
    }

    #[test]
    fn a_ticket_serializes_exactly_the_properties_its_schema_names() {
        let now = chrono::Utc::now();
        let row = TicketRow {
            ticket_number: "T-1".into(),
            status: "open".into(),
            channel: Some("whatsapp".into()),
            account_id: None,
            contact_id: None,
            customer_name: Some("Ana".into()),
            group_id: None,
            language: None,
            created_date: None,
            opened_at: now,
            first_message_at: None,
            first_response_at: None,
            closed_at: None,
            last_message_at: None,
            messages_in: 2,
            messages_out: 1,
            reopen_count: 0,
        };
        let ticket = TicketOut::from(&row);
        assert_eq!(keys(&ticket), super::super::csv::columns::<TicketOut>());
        let json = serde_json::to_value(&ticket).unwrap_or_default();
        assert_eq!(json["customerName"], "Ana");
        assert_eq!(json["messagesIn"], 2);
    }
}
