//! Tickets: the filterable list (and its CSV), one ticket's page (conversation and
//! lifecycle as one timeline, deliveries with their attempts), its 3Dolphins history, and
//! the contact behind it.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use maud::{html, Markup};
use serde_json::Value;

use super::html::{self, Nav};
use super::session::Viewer;
use super::{check_form, form, page_only, ConsoleError};
use crate::domain::TicketStatus;
use crate::http::csv::Csv;
use crate::http::error::ApiError;
use crate::http::params::Params;
use crate::http::query::{self, TicketQuery};
use crate::http::{contacts, deliveries, AppState};
use crate::store::events::{self, EventRow};
use crate::store::messages::{self, MessageRow};
use crate::store::redelivery::{self, DeliveryFilter};
use crate::store::tickets::{self, TicketRow};

/// The most messages and events one ticket page shows (the API pages through the rest).
const TIMELINE_LIMIT: i64 = 1000;

/// The console's filter fields, as the API's ticket-list parameters. The form's `to` is a
/// day included in the range; the API's `to` is exclusive, so a date moves to the next day.
fn api_params(raw: Option<&str>) -> Params {
    let console = Params::parse(raw);
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for name in ["status", "channel", "contactId", "q", "from", "to", "cursor"] {
        let Some(value) = console.get(name) else { continue };
        let value = match (name, chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d")) {
            ("to", Ok(day)) => day.succ_opt().map_or(value.to_string(), |d| d.to_string()),
            _ => value.to_string(),
        };
        query.append_pair(name, &value);
    }
    Params::parse(Some(&query.finish()))
}

/// The list's own query string without the cursor (for the CSV link and the next page).
fn filters_query(raw: Option<&str>) -> String {
    let console = Params::parse(raw);
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for name in ["status", "channel", "contactId", "q", "from", "to"] {
        if let Some(value) = console.get(name) {
            query.append_pair(name, value);
        }
    }
    query.finish()
}

pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ConsoleError> {
    let viewer = Viewer::from_request(&state, &headers).await?;
    let caller = viewer.tenant()?;
    let shown = Params::parse(raw.as_deref());
    let params = api_params(raw.as_deref());
    let filters = filters_query(raw.as_deref());
    let listing = match TicketQuery::parse(&params, caller, state.clock.now()) {
        Ok(q) => Ok(q.page(&state, caller).await?),
        Err(ApiError::InvalidParameter(problems)) => Err(problems),
        Err(other) => return Err(other.into()),
    };
    let tz = caller.timezone;
    let value = |name: &str| shown.get(name).unwrap_or("").to_string();
    let body = html! {
        form.filters method="get" action="/console/tickets" role="search" {
            div { label for="status" { "Status" }
                select id="status" name="status" {
                    option value="" { "any" }
                    @for s in TicketStatus::ALL {
                        option value=(s.as_str()) selected[shown.get("status") == Some(s.as_str())] { (s.as_str()) }
                    }
                }
            }
            div { label for="channel" { "Channel" }
                input id="channel" name="channel" value=(value("channel")) list="channels" placeholder="any";
                datalist id="channels" {
                    @for c in ["whatsapp", "telegram", "webchat", "facebook", "instagram", "line", "email", "twitter"] {
                        option value=(c) {}
                    }
                }
            }
            div { label for="from" { "From (day)" } input id="from" name="from" type="date" value=(value("from")); }
            div { label for="to" { "To (day, included)" } input id="to" name="to" type="date" value=(value("to")); }
            div.grow { label for="q" { "Ticket number or customer name starts with" }
                input id="q" name="q" type="search" value=(value("q")); }
            div.buttons {
                button type="submit" { "Filter" }
                a href="/console/tickets" { "Clear" }
                a href={ "/console/tickets.csv?" (filters) } download { "Download CSV" }
            }
        }
        p.muted { "Without dates, the last 30 days. Times in " (tz.name()) "." }
        @match &listing {
            Err(problems) => {
                div.error role="alert" {
                    p { "These filters cannot be used:" }
                    ul { @for p in problems { li { strong { (p.field) } " " (p.problem) } } }
                }
            }
            Ok((rows, next)) => {
                @if rows.is_empty() {
                    p { "No ticket matches." }
                } @else {
                    div.scroll {
                        table.list {
                            caption.visually-hidden { "Tickets, newest first" }
                            thead { tr {
                                th scope="col" { "Ticket" } th scope="col" { "Customer" } th scope="col" { "Channel" }
                                th scope="col" { "Status" } th scope="col" { "Opened" } th scope="col" { "Last message" }
                                th scope="col" { "In / out" }
                            } }
                            tbody {
                                @for t in rows {
                                    tr {
                                        td { a href=(ticket_href(&t.ticket_number)) { (short(&t.ticket_number)) } }
                                        td { (t.customer_name.as_deref().unwrap_or("—")) }
                                        td { (t.channel.as_deref().unwrap_or("—")) }
                                        td { (html::badge(&t.status)) }
                                        td { (html::time(Some(t.opened_at), tz)) }
                                        td { (html::time(t.last_message_at, tz)) }
                                        td { (t.messages_in) " / " (t.messages_out) }
                                    }
                                }
                            }
                        }
                    }
                    @if let Some(next) = next {
                        p { a rel="next" href={ "/console/tickets?" (with_cursor(&filters, next)) } { "Next page" } }
                    }
                }
            }
        }
    };
    Ok(page_only(html::page(Some(&viewer), Nav::Tickets, "Tickets", None, body)))
}

fn with_cursor(filters: &str, cursor: &str) -> String {
    let mut query = url::form_urlencoded::Serializer::new(filters.to_string());
    query.append_pair("cursor", cursor);
    query.finish()
}

/// A ticket number as a path segment.
fn ticket_href(ticket: &str) -> String {
    format!("/console/tickets/{}", html::path_segment(ticket))
}

/// Long ticket numbers (3Dolphins uses 32 hex digits) shortened for tables; the full
/// number is on the ticket's page.
fn short(ticket: &str) -> String {
    if ticket.chars().count() > 14 {
        format!("{}…", ticket.chars().take(12).collect::<String>())
    } else {
        ticket.to_string()
    }
}

/// The CSV of the list's current filters, through the API's own export.
pub async fn csv(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ConsoleError> {
    let viewer = Viewer::from_request(&state, &headers).await?;
    let caller = viewer.tenant()?;
    let params = api_params(raw.as_deref());
    let query = TicketQuery::parse(&params, caller, state.clock.now())?;
    Ok(query.csv(&state, caller, Csv::default()))
}

pub async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(ticket): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ConsoleError> {
    let viewer = Viewer::from_request(&state, &headers).await?;
    let params = Params::parse(raw.as_deref());
    let notice = super::notice(params.get("notice"), params.get("n"));
    render(&state, &viewer, &ticket, notice.as_deref(), None).await
}

/// The ticket's page, with the notice of an action just done or the error it met.
async fn render(
    state: &AppState,
    viewer: &Viewer,
    ticket: &str,
    notice: Option<&str>,
    error: Option<&str>,
) -> Result<Response, ConsoleError> {
    let caller = viewer.tenant()?;
    let row = tickets::get(&state.pool, &caller.owner, ticket).await?.ok_or(ApiError::TicketNotFound)?;
    let ticket_deliveries = DeliveryFilter::of_ticket(ticket, None, TIMELINE_LIMIT);
    let (messages, events, delivery_rows) = tokio::try_join!(
        messages::for_ticket(&state.pool, &caller.owner, ticket, None, TIMELINE_LIMIT),
        events::for_ticket(&state.pool, &caller.owner, ticket, None, TIMELINE_LIMIT),
        redelivery::list(&state.pool, &caller.owner, &ticket_deliveries),
    )?;
    let deliveries = deliveries::with_logs(&state.pool, &caller.owner, &delivery_rows).await?;
    let tz = caller.timezone;
    let here = ticket_href(ticket);
    let body = html! {
        (header(&row, tz))
        div.actions {
            form.inline method="post" action={ (here) "/history" } {
                (html::csrf_field(viewer))
                button type="submit" { "Fetch 3Dolphins history" }
            }
            @if let Some(contact) = &row.contact_id {
                a.button href={ "/console/contacts/" (html::path_segment(contact)) } { "Show contact" }
            }
        }
        @if let Some(error) = error {
            p.error role="alert" { "The 3Dolphins history could not be merged: " (error) }
        }
        div.ticket-columns {
            section aria-labelledby="conversation" {
                h2 id="conversation" { "Conversation and lifecycle" }
                (timeline(&messages, &events, tz))
            }
            section aria-labelledby="deliveries" {
                h2 id="deliveries" { "Deliveries" }
                (super::deliveries::delivery_cards(viewer, &html::as_json(&deliveries), tz, &here))
            }
        }
    };
    let title = format!("Ticket {}", short(&row.ticket_number));
    Ok(page_only(html::page(Some(viewer), Nav::Tickets, &title, notice, body)))
}

fn header(t: &TicketRow, tz: Tz) -> Markup {
    html! {
        dl.facts {
            div { dt { "Ticket" } dd { code { (t.ticket_number) } } }
            div { dt { "Customer" } dd { (t.customer_name.as_deref().unwrap_or("—")) } }
            div { dt { "Channel" } dd { (t.channel.as_deref().unwrap_or("—")) } }
            div { dt { "Status" } dd { (html::badge(&t.status)) @if t.reopen_count > 0 { " (reopened " (t.reopen_count) "×)" } } }
            div { dt { "Created (3Dolphins)" } dd { (html::time(t.created_date, tz)) } }
            div { dt { "Opened" } dd { (html::time(Some(t.opened_at), tz)) } }
            div { dt { "First response" } dd { (html::time(t.first_response_at, tz)) } }
            div { dt { "Closed" } dd { (html::time(t.closed_at, tz)) } }
            div { dt { "Messages in / out" } dd { (t.messages_in) " / " (t.messages_out) } }
        }
    }
}

/// Messages and lifecycle events in one list, by time: customer messages on the left,
/// agent replies on the right, lifecycle events as thin lines between them.
fn timeline(messages: &[MessageRow], events: &[EventRow], tz: Tz) -> Markup {
    enum Item<'a> {
        Message(&'a MessageRow),
        Event(&'a EventRow),
    }
    let at = |item: &Item| -> DateTime<Utc> {
        match item {
            Item::Message(m) => m.at,
            Item::Event(e) => e.at,
        }
    };
    let mut items: Vec<Item> = messages.iter().map(Item::Message).chain(events.iter().map(Item::Event)).collect();
    items.sort_by_key(at);
    html! {
        ol.timeline {
            @for item in &items {
                @match item {
                    Item::Message(m) => {
                        li class={ "message " (m.direction) } {
                            p.meta {
                                (if m.direction == "in" { "Customer" } else { "Agent" })
                                @if m.source == "history" { " (3Dolphins history)" }
                                " · " (html::time(Some(m.at), tz))
                            }
                            (message_body(m))
                            @if m.warnings.as_array().is_some_and(|w| !w.is_empty()) {
                                p.warning { "Flagged: " (m.warnings.to_string()) }
                            }
                        }
                    }
                    Item::Event(e) => {
                        li.event {
                            (html::time(Some(e.at), tz)) " · " strong { (e.kind) }
                            " by " (e.actor)
                            @if let Some(detail) = e.detail.as_object().filter(|d| !d.is_empty()) {
                                br;
                                span.muted {
                                    @for (i, (name, value)) in detail.iter().enumerate() {
                                        @if i > 0 { " · " }
                                        (name) ": " (html::text(value))
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if messages.len() as i64 == TIMELINE_LIMIT || events.len() as i64 == TIMELINE_LIMIT {
            p.muted { "Only the first " (TIMELINE_LIMIT) " messages and events are shown; the API's export has them all." }
        }
    }
}

/// What a message shows: its text; media as a link; a location as coordinates. Only
/// http(s) links are made clickable.
fn message_body(m: &MessageRow) -> Markup {
    let text = m.message.as_deref().unwrap_or("");
    let link = m.media_link.as_deref().filter(|l| l.starts_with("https://") || l.starts_with("http://"));
    html! {
        @match m.message_type.as_deref().unwrap_or("text") {
            "location" => {
                p { "Location: " (text.replace(',', ", ")) }
            }
            kind @ ("image" | "video" | "audio" | "file") => {
                @if !text.is_empty() { p { (text) } }
                p { @match link {
                    Some(href) => { a href=(href) rel="noopener noreferrer" target="_blank" { "Open " (kind) } }
                    None => { (kind) " (no link): " (m.media_link.as_deref().unwrap_or("")) }
                } }
            }
            _ => {
                p { (text) }
                @if let Some(href) = link { p { a href=(href) rel="noopener noreferrer" target="_blank" { "Attachment" } } }
            }
        }
    }
}

/// Merges the ticket's 3Dolphins history (as `?source=merged` does), then shows the ticket.
pub async fn fetch_history(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(ticket): Path<String>,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    let viewer = Viewer::from_request(&state, &headers).await?;
    check_form(&viewer, &headers, &form(&body))?;
    let caller = viewer.tenant()?;
    let row = tickets::get(&state.pool, &caller.owner, &ticket).await?.ok_or(ApiError::TicketNotFound)?;
    let outcome = query::merge_history(&state, caller, &row).await;
    if outcome.merged {
        let added = outcome.added.unwrap_or(0);
        return Ok(Redirect::to(&format!("{}?notice=history&n={added}", ticket_href(&ticket))).into_response());
    }
    let error = outcome.error.as_deref().unwrap_or("unknown error");
    render(&state, &viewer, &ticket, None, Some(error)).await
}

/// The contact as the 3Dolphins Contact API describes it (cached as the API caches it).
pub async fn contact(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(contact): Path<String>,
) -> Result<Response, ConsoleError> {
    let viewer = Viewer::from_request(&state, &headers).await?;
    let caller = viewer.tenant()?;
    let doc = html::json(&contacts::contact_document(&state, caller, &contact).await?);
    let tz = caller.timezone;
    let fields: Vec<(&String, &Value)> = doc["data"].as_object().map(|o| o.iter().collect()).unwrap_or_default();
    let body = html! {
        p.muted {
            "From 3Dolphins, fetched " (html::time_of(&doc["fetchedAt"], tz))
            @if doc["stale"].as_bool() == Some(true) { " — 3Dolphins is unreachable, so this copy may be out of date" }
            "."
        }
        dl.facts {
            @for (name, value) in fields {
                div { dt { (name) } dd { (html::text(value)) } }
            }
        }
        p { a href={ "/console/tickets?" (url::form_urlencoded::Serializer::new(String::new()).append_pair("contactId", &contact).finish()) } { "This contact's tickets" } }
    };
    Ok(page_only(html::page(Some(&viewer), Nav::Tickets, "Contact", None, body)))
}
