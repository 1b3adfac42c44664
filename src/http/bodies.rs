//! The request bodies, as the document describes them. The handlers read bodies by hand
//! rather than deserializing these types, so that a refusal names every problem at once
//! and 3Dolphins' flawed events are accepted and flagged instead of refused; these types say
//! what those readers read (`domain::payload`, `domain::tenant::read`,
//! `deliveries::read_replay`), and the integration suite checks every body the server
//! accepts from the third party or an API client against them.
#![allow(dead_code)] // described, never constructed: see above

use std::collections::BTreeMap;

use utoipa::ToSchema;

use crate::domain::tenant::{Alerts, Delivery, ThirdParty};

/// An Incoming Event: a customer's message, from 3Dolphins. Lenient: anything naming
/// `owner` and `ticketNumber` is accepted, stored and forwarded; what breaks a rule is listed
/// in the message's `warnings`.
#[derive(serde::Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IncomingEvent {
    /// The 3Dolphins ticket.
    #[schema(min_length = 1, max_length = 512, pattern = "\\S")]
    ticket_number: String,
    /// The social channel, e.g. `whatsapp`.
    channel: Option<String>,
    /// The customer's account on that channel (a phone number on WhatsApp).
    account_id: Option<String>,
    /// The 3Dolphins contact (key of the Contact API).
    contact_id: Option<String>,
    #[schema(schema_with = message_types)]
    message_type: Option<String>,
    /// The content; its form depends on `messageType` (`latitude,longitude` for a location).
    message: Option<String>,
    media_link: Option<String>,
    customer_name: Option<String>,
    /// `yyyy-MM-dd'T'HH:mm:ss.SSS`, in the tenant's time zone.
    #[schema(example = "2024-01-31T09:15:02.456")]
    created_date: Option<String>,
    /// The tenant; must be the credential's.
    #[schema(min_length = 1, max_length = 512, pattern = "\\S")]
    owner: String,
    group_id: Option<String>,
    language: Option<String>,
}

/// An Outgoing Event: an agent's reply. From the third party it is strict (every field but
/// `mediaLink` and `createdDate` required); from 3Dolphins it is mirrored leniently.
#[derive(serde::Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutgoingEvent {
    #[schema(min_length = 1, max_length = 512, pattern = "\\S")]
    ticket_number: String,
    #[schema(min_length = 1, pattern = "\\S")]
    channel: String,
    #[schema(schema_with = message_types)]
    message_type: String,
    /// May be empty for media messages.
    message: String,
    #[schema(nullable = false)]
    media_link: Option<String>,
    #[schema(min_length = 1, pattern = "\\S")]
    customer_name: String,
    #[schema(nullable = false)]
    created_date: Option<String>,
    #[schema(min_length = 1, max_length = 512, pattern = "\\S")]
    owner: String,
}

/// A Command Event: close the ticket.
#[derive(serde::Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommandEvent {
    #[schema(min_length = 1, max_length = 512, pattern = "\\S")]
    ticket_number: String,
    channel: String,
    #[schema(min_length = 1, max_length = 512, pattern = "\\S")]
    owner: String,
    #[schema(schema_with = commands)]
    event: String,
}

/// What 3Dolphins posts to its outgoing URL: an Outgoing Event (it has `message`) or a
/// Command Event (it has `event`).
#[derive(serde::Deserialize, ToSchema)]
#[serde(untagged)]
pub enum OutgoingOrCommand {
    Outgoing(OutgoingEvent),
    Command(CommandEvent),
}

fn instant_or_date() -> utoipa::openapi::Schema {
    use utoipa::openapi::schema::{KnownFormat, SchemaFormat, Type};
    let with = |format| {
        utoipa::openapi::ObjectBuilder::new().schema_type(Type::String).format(Some(SchemaFormat::KnownFormat(format)))
    };
    let any =
        utoipa::openapi::schema::AnyOfBuilder::new().item(with(KnownFormat::DateTime)).item(with(KnownFormat::Date));
    utoipa::openapi::Schema::AnyOf(any.build())
}

fn replayable() -> utoipa::openapi::Array {
    let status = utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(["failed", "dead", "cancelled", "delivered"]));
    utoipa::openapi::ArrayBuilder::new().items(status).min_items(Some(1)).unique_items(true).build()
}

fn message_types() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(crate::domain::payload::MESSAGE_TYPES))
        .build()
}

/// `close`, in any case (the only command).
fn commands() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .pattern(Some("^[Cc][Ll][Oo][Ss][Ee]$"))
        .examples(["close"])
        .build()
}

/// A new tenant.
#[derive(serde::Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantIn {
    /// The 3Dolphins owner id; cannot change later.
    #[schema(min_length = 1, max_length = 200)]
    owner: String,
    name: Option<String>,
    /// IANA time zone, default `Asia/Jakarta`.
    timezone: Option<String>,
    third_party: ThirdParty,
    dolphins: Option<DolphinsIn>,
    delivery: Option<Delivery>,
    /// Where operational alerts go, and when a backlog is stale (`backlogSeconds`, 60 to
    /// 604800, default 900); `null` or no `url`: no alerts.
    alerts: Option<Alerts>,
    /// Days a closed ticket's messages are kept (1 to 3650; default forever).
    #[schema(minimum = 1, maximum = 3650)]
    retention_days: Option<u32>,
    /// Requests per second per credential, as `N/s` or `N/min`.
    rate_limit: Option<String>,
}

/// The 3Dolphins side of a tenant, as written.
#[derive(serde::Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DolphinsIn {
    send_message_url: Option<String>,
    command_url: Option<String>,
    /// Base URL of the 3Dolphins APIs (history, contacts).
    api_base_url: Option<String>,
    username: Option<String>,
    /// Stored sealed; shown only as `passwordSet`.
    password: Option<String>,
    use_api_token: Option<bool>,
    headers: Option<BTreeMap<String, String>>,
}

/// A JSON merge patch of [`TenantIn`] (`owner` cannot change; `null` removes a setting).
#[derive(serde::Deserialize, ToSchema)]
#[schema(value_type = Object)]
pub struct TenantPatch(serde_json::Value);

/// A new key for a tenant.
#[derive(serde::Deserialize, ToSchema)]
pub struct KeyIn {
    #[schema(schema_with = key_kinds)]
    kind: String,
}

fn key_kinds() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(["inbound", "third_party", "read"]))
        .build()
}

/// The console's sign-in form.
#[derive(serde::Deserialize, ToSchema)]
pub struct SignInForm {
    /// A read key, a third-party key, or the admin token.
    #[schema(min_length = 1)]
    key: String,
}

/// Which deliveries to send again.
#[derive(serde::Deserialize, ToSchema)]
pub struct ReplayIn {
    /// Only deliveries to this peer endpoint.
    #[schema(schema_with = super::shapes::target)]
    target: Option<String>,
    /// RFC 3339 or `YYYY-MM-DD` (tenant's local date): created at or after; before `to`.
    #[schema(schema_with = instant_or_date)]
    from: String,
    /// Created before; default now.
    #[schema(schema_with = instant_or_date)]
    to: Option<String>,
    /// Default `["dead"]`.
    #[schema(schema_with = replayable, nullable = false)]
    status: Option<Vec<String>>,
}
