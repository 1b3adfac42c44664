//! Schema components of the OpenAPI document: the shapes the README shows
//! (*Connecting the peers*, *HTTP surface*), written once.

use serde_json::{json, Value};

use super::shapes::{int, nullable_string, object, string, time};

fn page(item: &str) -> Value {
    object(
        json!({"data": {"type": "array", "items": {"$ref": format!("#/components/schemas/{item}")}},
                  "nextCursor": nullable_string()}),
        &["data", "nextCursor"],
    )
}
fn stats() -> Value {
    json!({"type": "object", "properties": {"p50": {"type": ["number", "null"]}, "p90": {"type": ["number", "null"]},
                                            "mean": {"type": ["number", "null"]}}})
}

/// Every schema component by name.
pub fn all() -> Value {
    let event_fields = json!({
        "ticketNumber": string(), "channel": string(), "accountId": string(), "contactId": string(),
        "messageType": {"type": "string", "enum": ["text", "image", "video", "audio", "file", "location", "sticker"]},
        "message": string(), "mediaLink": string(), "customerName": string(), "createdDate": string(),
        "owner": string(), "groupId": string(), "language": string(),
    });
    let message = object(
        json!({
            "id": string(), "ticketNumber": string(), "direction": {"type": "string", "enum": ["in", "out"]},
            "messageType": nullable_string(), "message": nullable_string(), "mediaLink": nullable_string(),
            "source": {"type": "string", "enum": ["3dolphins", "third_party", "history"]}, "at": time(),
            "warnings": {"type": "array", "items": {"$ref": "#/components/schemas/Problem"}},
            "delivery": {"oneOf": [{"$ref": "#/components/schemas/Delivery"}, {"type": "null"}]},
        }),
        &["id", "ticketNumber", "direction", "source", "at"],
    );
    let delivery = object(
        json!({
            "id": string(), "ticketNumber": string(), "target": string(),
            "status": {"type": "string", "enum": ["pending", "failed", "delivered", "dead", "cancelled"]},
            "attempts": int(), "nextAttemptAt": time(), "lastError": nullable_string(), "createdAt": time(),
            "deliveredAt": time(), "sequence": int(), "messageId": nullable_string(),
            "attemptLog": {"type": "array", "items": object(json!({"n": int(), "at": time(), "durationMs": int(),
                "httpStatus": {"type": ["integer", "null"]}, "error": nullable_string(), "responseHead": nullable_string()}), &[])},
        }),
        &["id", "ticketNumber", "target", "status", "attempts"],
    );
    let figures = json!({
        "ticketsOpened": int(), "ticketsClosed": int(), "ticketsOpenNow": int(), "messagesIn": int(), "messagesOut": int(),
        "firstResponseSeconds": stats(), "resolutionSeconds": stats(),
        "deliveries": {"type": "object", "additionalProperties": {"type": "integer"}},
    });
    let mut all = serde_json::Map::new();
    let part1 = json!({
        "Problem": object(json!({"field": string(), "problem": string()}), &["field", "problem"]),
        "Error": object(json!({"status": {"const": "error"}, "error": object(json!({
            "code": string(), "message": string(),
            "fields": {"type": "array", "items": {"$ref": "#/components/schemas/Problem"}}}), &["code", "message"])}),
            &["status", "error"]),
        "Success": object(json!({"status": {"const": "success"}}), &["status"]),
        "MessageAccepted": object(json!({"status": {"const": "success"}, "messageId": string()}), &["status"]),
        "IncomingEvent": {"type": "object", "properties": event_fields.clone(), "required": ["owner", "ticketNumber"],
                          "description": "lenient: anything naming owner and ticketNumber is accepted and flagged"},
        "OutgoingOrCommandEvent": {"type": "object", "description": "an Outgoing Event (has message) or a Command Event (has event)"},
        "OutgoingEvent": {"type": "object", "properties": event_fields,
                          "required": ["ticketNumber", "channel", "messageType", "message", "mediaLink", "customerName", "owner"]},
        "CommandEvent": object(json!({"ticketNumber": string(), "channel": string(), "owner": string(),
                                      "event": {"type": "string", "enum": ["close"]}}), &["ticketNumber", "channel", "owner", "event"]),
        "TenantIn": {"type": "object", "required": ["owner", "thirdParty"], "properties": {
            "owner": string(), "name": string(), "timezone": string(), "retentionDays": int(),
            "thirdParty": object(json!({"incomingUrl": string(), "outgoingUrl": string(), "commandUrl": string(),
                "headers": {"type": "object"}, "inboundAuth": {"type": "string", "enum": ["bearer", "signature"]}}), &["incomingUrl"]),
            "dolphins": object(json!({"sendMessageUrl": string(), "commandUrl": string(), "apiBaseUrl": string(),
                "username": string(), "password": string(), "useApiToken": {"type": "boolean"}, "headers": {"type": "object"}}), &[]),
            "delivery": object(json!({"retrySchedule": string(), "timeout": string()}), &[])}},
        "TenantPatch": {"type": "object", "description": "a JSON merge patch of TenantIn (owner cannot change)"},
        "Tenant": {"type": "object", "description": "TenantIn without secrets (dolphins.passwordSet instead), plus createdAt, updatedAt, deletedAt"},
        "TenantCreated": {"type": "object", "description": "Tenant plus, this once, credentials {inboundToken, thirdPartyKey, readKey, signingSecret} and keyIds"},
        "TenantList": page("Tenant"),
        "Deleted": {"type": "object"},
        "KeyIn": object(json!({"kind": {"type": "string", "enum": ["inbound", "third_party", "read"]}}), &["kind"]),
        "Key": object(json!({"id": string(), "kind": string(), "prefix": string(), "createdAt": time(),
                             "lastUsedAt": time(), "revoked": {"type": "boolean"}}), &["id", "kind"]),
        "KeyList": page("Key"),
        "KeyCreated": object(json!({"id": string(), "kind": string(), "key": string()}), &["id", "key"]),
        "SigningSecret": object(json!({"signingSecret": string()}), &["signingSecret"]),
    });
    let part2 = json!({
        "Ticket": super::shapes::TicketOut::schema(),
        "TicketPage": page("Ticket"),
        "Message": message,
        "MessagePage": {"allOf": [page("Message"), {"type": "object", "properties": {"history": object(json!({
            "merged": {"type": "boolean"}, "added": int(), "error": string()}), &["merged"])}}]},
        "LifecycleEvent": object(json!({"id": string(), "kind": string(), "at": time(), "actor": string(),
                                        "detail": {"type": "object"}}), &["id", "kind", "at", "actor"]),
        "EventPage": page("LifecycleEvent"),
        "Delivery": delivery,
        "DeliveryPage": page("Delivery"),
        "TicketExport": object(json!({"ticket": {"$ref": "#/components/schemas/Ticket"},
            "messages": {"type": "array", "items": {"$ref": "#/components/schemas/Message"}},
            "events": {"type": "array", "items": {"$ref": "#/components/schemas/LifecycleEvent"}},
            "deliveries": {"type": "array", "items": {"$ref": "#/components/schemas/Delivery"}}}), &["ticket"]),
    });
    let part3 = json!({
        "DeliveryState": object(json!({"id": string(), "status": string()}), &["id", "status"]),
        "ReplayIn": object(json!({"target": string(), "from": string(), "to": string(),
                                  "status": {"type": "array", "items": string()}}), &["from"]),
        "Count": object(json!({"count": int()}), &["count"]),
        "Endpoint": object(json!({"target": string(), "url": nullable_string(),
            "state": {"type": "string", "enum": ["closed", "open", "half_open"]}, "paused": {"type": "boolean"},
            "queueDepth": int(), "oldestPendingAt": time()}), &["target", "state", "paused"]),
        "EndpointList": page("Endpoint"),
        "Paused": object(json!({"target": string(), "paused": {"type": "boolean"}}), &["target", "paused"]),
        "Summary": {"type": "object", "properties": figures.clone(),
                    "description": "plus from, to, tz and byChannel (the same figures per channel)"},
        "Timeseries": object(json!({"interval": string(), "tz": string(), "data": {"type": "array", "items": object(json!({
            "bucket": time(), "ticketsOpened": int(), "ticketsClosed": int(), "messagesIn": int(), "messagesOut": int()}), &[])}}),
            &["interval", "tz", "data"]),
        "Contact": object(json!({"data": {"type": "object"}, "fetchedAt": time(), "stale": {"type": "boolean"},
                                 "ageSeconds": int()}), &["data", "fetchedAt", "stale", "ageSeconds"]),
        "Erased": object(json!({"contactId": string(), "messagesPurged": int()}), &["contactId"]),
        "Health": object(json!({"status": string()}), &["status"]),
        "Text": {"type": "string", "description": "text/plain (Prometheus) or text/html"},
        "OpenApi": {"type": "object"},
    });
    for part in [part1, part2, part3] {
        if let Value::Object(map) = part {
            all.extend(map);
        }
    }
    Value::Object(all)
}
