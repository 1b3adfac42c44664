//! The shapes of the API's replies that more than one route shows, each written once: its
//! JSON, its CSV columns and its OpenAPI schema come from the same list of fields.

use axum::Json;
use serde_json::{json, Map, Value};

use super::params::Cursor;
use crate::store::events::EventRow;
use crate::store::messages::MessageRow;
use crate::store::tickets::TicketRow;

// The schema types the shapes (and the document's other components) are built from.
pub(super) fn string() -> Value {
    json!({"type": "string"})
}
pub(super) fn nullable_string() -> Value {
    json!({"type": ["string", "null"]})
}
pub(super) fn time() -> Value {
    json!({"type": ["string", "null"], "format": "date-time"})
}
pub(super) fn int() -> Value {
    json!({"type": "integer"})
}
pub(super) fn object(properties: Value, required: &[&str]) -> Value {
    json!({"type": "object", "properties": properties, "required": required})
}

/// A reply shape over a store row: one line per field, `row_field: "jsonName" => schema`,
/// in the order the JSON and the CSV show them, then the fields the schema requires.
macro_rules! reply_shape {
    ($(#[$doc:meta])* $name:ident over $row:ty {
        $($field:ident: $json:literal => $schema:expr),+ $(,)?
    } required [$($required:literal),* $(,)?]) => {
        $(#[$doc])*
        pub struct $name;

        impl $name {
            /// The CSV columns (the JSON keys, in order).
            pub const COLUMNS: &'static [&'static str] = &[$($json),+];

            /// The JSON of `row`.
            pub fn json(row: &$row) -> Value {
                let mut out = Map::new();
                $(out.insert($json.to_string(), json!(row.$field));)+
                Value::Object(out)
            }

            /// The OpenAPI schema.
            pub fn schema() -> Value {
                let mut properties = Map::new();
                $(properties.insert($json.to_string(), $schema);)+
                object(Value::Object(properties), &[$($required),*])
            }
        }
    };
}

reply_shape! {
    /// A ticket with its running figures.
    TicketOut over TicketRow {
        ticket_number: "ticketNumber" => string(),
        status: "status" => json!({"type": "string", "enum": ["open", "closed"]}),
        channel: "channel" => nullable_string(),
        account_id: "accountId" => nullable_string(),
        contact_id: "contactId" => nullable_string(),
        customer_name: "customerName" => nullable_string(),
        group_id: "groupId" => nullable_string(),
        language: "language" => nullable_string(),
        created_date: "createdDate" => time(),
        opened_at: "openedAt" => time(),
        first_message_at: "firstMessageAt" => time(),
        first_response_at: "firstResponseAt" => time(),
        closed_at: "closedAt" => time(),
        last_message_at: "lastMessageAt" => time(),
        messages_in: "messagesIn" => int(),
        messages_out: "messagesOut" => int(),
        reopen_count: "reopenCount" => int(),
    } required ["ticketNumber", "status", "openedAt"]
}

/// The CSV columns of a message (its JSON without the delivery the API adds).
pub const MESSAGE_COLUMNS: &[&str] =
    &["id", "ticketNumber", "direction", "messageType", "message", "mediaLink", "source", "at", "warnings"];

/// The CSV columns of a lifecycle event.
pub const EVENT_COLUMNS: &[&str] = &["id", "kind", "at", "actor", "detail"];

/// A message of a conversation.
pub fn message_json(m: &MessageRow) -> Value {
    json!({
        "id": m.id, "ticketNumber": m.ticket_number, "direction": m.direction, "messageType": m.message_type,
        "message": m.message, "mediaLink": m.media_link, "source": m.source, "at": m.at, "warnings": m.warnings,
    })
}

/// A lifecycle event (its id as a string: JavaScript clients lose precision on 64-bit ids).
pub fn event_json(e: &EventRow) -> Value {
    json!({"id": e.id.to_string(), "kind": e.kind, "at": e.at, "actor": e.actor, "detail": e.detail})
}

/// `{"data","nextCursor"}`: the cursor of the next page only when this one is full.
pub fn page(data: Vec<Value>, next: Option<Cursor>, limit: i64) -> Json<Value> {
    let next = next.filter(|_| data.len() as i64 == limit).map(|c| c.encode());
    Json(json!({"data": data, "nextCursor": next}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_shows_every_column_in_order_and_its_schema_names_them_all() {
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
        let json = TicketOut::json(&row);
        let keys: Vec<&str> = json.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
        assert_eq!(keys, TicketOut::COLUMNS);
        assert_eq!(json["customerName"], "Ana");
        assert_eq!(json["messagesIn"], 2);
        let schema = TicketOut::schema();
        let properties: Vec<&str> =
            schema["properties"].as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
        assert_eq!(properties, TicketOut::COLUMNS);
    }
}
