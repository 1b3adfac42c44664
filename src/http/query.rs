//! The read side of `/api/v1` (README *HTTP surface*): tickets, a ticket's conversation and
//! lifecycle audit, and the whole-ticket export for audits. Every list pages by keyset.

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::auth::{self, Access, ApiCaller};
use super::csv;
use super::error::ApiError;
use super::openapi::{doc, Auth, Routes};
use super::params::{Cursor, Params};
use super::shapes::{event_json, message_json, page, TicketOut, EVENT_COLUMNS, MESSAGE_COLUMNS};
use super::AppState;
use crate::domain::TicketStatus;
use crate::history;
use crate::store::events;
use crate::store::messages;
use crate::store::redelivery::{self, DeliveryFilter};
use crate::store::tenants;
use crate::store::tickets::{self, TicketFilter, TicketRow};

pub fn routes() -> Routes {
    let page = &["limit", "cursor", "format"];
    Routes::default()
        .op(
            Method::GET,
            "/api/v1/tickets",
            get(list_tickets),
            doc("Tickets, newest first, filtered (CSV with Accept: text/csv)", Auth::Read, "TicketPage").query(&[
                "status",
                "channel",
                "contactId",
                "from",
                "to",
                "tz",
                "q",
                "limit",
                "cursor",
                "format",
            ]),
        )
        .op(Method::GET, "/api/v1/tickets/{ticket}", get(get_ticket), doc("One ticket", Auth::Read, "Ticket"))
        .op(
            Method::GET,
            "/api/v1/tickets/{ticket}/messages",
            get(ticket_messages),
            doc(
                "A ticket's conversation, oldest first; source=merged adds 3Dolphins history",
                Auth::Read,
                "MessagePage",
            )
            .query(&["source", "limit", "cursor", "format"]),
        )
        .op(
            Method::GET,
            "/api/v1/tickets/{ticket}/events",
            get(ticket_events),
            doc("A ticket's lifecycle audit, oldest first", Auth::Read, "EventPage").query(page),
        )
        .op(
            Method::GET,
            "/api/v1/tickets/{ticket}/export",
            get(export_ticket),
            doc("The whole ticket in one document", Auth::Read, "TicketExport"),
        )
}

async fn list_tickets(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let caller = auth::api(&state, &headers, Access::Read).await?;
    let params = Params::parse(query.as_deref());
    let wanted_csv = csv::wanted(&params, &headers);
    let query = TicketQuery::parse(&params, &caller, state.clock.now())?;
    if wanted_csv {
        return Ok(query.csv(&state, &caller));
    }
    let (rows, next) = query.page(&state, &caller).await?;
    Ok(Json(json!({"data": rows.iter().map(TicketOut::json).collect::<Vec<_>>(), "nextCursor": next})).into_response())
}

/// The filters of a ticket list, read and checked once: the API and the console list the
/// same way.
pub struct TicketQuery {
    status: Option<String>,
    channel: Option<String>,
    contact: Option<String>,
    q: Option<String>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    limit: i64,
    filters: String,
    cursor: Option<Cursor>,
}

impl TicketQuery {
    /// Reads `status`, `channel`, `contactId`, `from`, `to`, `tz`, `q`, `limit`, `cursor`.
    pub fn parse(params: &Params, caller: &ApiCaller, now: DateTime<Utc>) -> Result<TicketQuery, ApiError> {
        let statuses: Vec<&str> = TicketStatus::ALL.iter().map(|s| s.as_str()).collect();
        let status = params.list_of("status", &statuses)?.and_then(|s| s.into_iter().next());
        let tz = params.timezone(caller.timezone)?;
        let (from, to) = params.time_range(tz, now)?;
        let limit = params.limit()?;
        let filters = params.fingerprint("tickets", &["status", "channel", "contactId", "from", "to", "tz", "q"]);
        let cursor = Cursor::decode(params.get("cursor"), &filters)?;
        Ok(TicketQuery {
            status,
            channel: params.get("channel").map(str::to_lowercase),
            contact: params.get("contactId").map(str::to_string),
            q: params.get("q").map(str::to_string),
            from,
            to,
            limit,
            filters,
            cursor,
        })
    }

    fn filter<'a>(&'a self, after: Option<(DateTime<Utc>, &'a str)>, limit: i64) -> TicketFilter<'a> {
        TicketFilter {
            status: self.status.as_deref(),
            channel: self.channel.as_deref(),
            contact_id: self.contact.as_deref(),
            from: self.from,
            to: self.to,
            q: self.q.as_deref(),
            after,
            limit,
        }
    }

    /// One page, with the cursor of the next when the page is full.
    pub async fn page(
        &self,
        state: &AppState,
        caller: &ApiCaller,
    ) -> Result<(Vec<TicketRow>, Option<String>), ApiError> {
        let after = self.cursor.as_ref().map(|c| (c.at, c.id.as_str()));
        let rows = tickets::list(&state.read_pool, &caller.owner, &self.filter(after, self.limit)).await?;
        let next = match rows.last() {
            Some(t) if rows.len() as i64 == self.limit => {
                Some(Cursor::new(&self.filters, t.opened_at, &t.ticket_number).encode())
            }
            _ => None,
        };
        Ok((rows, next))
    }

    /// Every matching ticket as a streamed CSV download.
    pub fn csv(self, state: &AppState, caller: &ApiCaller) -> Response {
        let (pool, owner, query) = (state.read_pool.clone(), caller.owner.clone(), std::sync::Arc::new(self));
        csv::export(TicketOut::COLUMNS, "tickets.csv", move |after: Option<(DateTime<Utc>, String)>| {
            let (pool, owner, query) = (pool.clone(), owner.clone(), query.clone());
            async move {
                let filter = query.filter(after.as_ref().map(|(at, n)| (*at, n.as_str())), csv::PAGE);
                let rows = tickets::list(&pool, &owner, &filter).await?;
                Ok((
                    rows.iter().map(TicketOut::json).collect(),
                    rows.last().map(|t| (t.opened_at, t.ticket_number.clone())),
                ))
            }
        })
    }
}

async fn get_ticket(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(ticket): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let caller = auth::api(&state, &headers, Access::Read).await?;
    let row = tickets::get(&state.pool, &caller.owner, &ticket).await?.ok_or(ApiError::TicketNotFound)?;
    Ok(Json(TicketOut::json(&row)))
}

async fn ticket_messages(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(ticket): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let caller = auth::api(&state, &headers, Access::Read).await?;
    let params = Params::parse(query.as_deref());
    let source = params.list_of("source", &["local", "merged"])?.and_then(|s| s.into_iter().next());
    let limit = params.limit()?;
    let filters = params.fingerprint(&format!("messages|{ticket}"), &["source"]);
    let cursor = Cursor::decode(params.get("cursor"), &filters)?;
    // `merged`, first page: fill in from 3Dolphins before reading, so the page includes it
    // (a write, so that page reads the primary; every other page reads the read pool).
    let merges = matches!((source.as_deref(), &cursor), (Some("merged"), None));
    let pool = if merges { &state.pool } else { &state.read_pool };
    let row = tickets::get(pool, &caller.owner, &ticket).await?.ok_or(ApiError::TicketNotFound)?;
    if csv::wanted(&params, &headers) {
        let pool = state.read_pool.clone();
        return Ok(csv::export(MESSAGE_COLUMNS, "messages.csv", move |after| {
            let (pool, owner, ticket) = (pool.clone(), caller.owner.clone(), ticket.clone());
            async move {
                let rows = messages::for_ticket(&pool, &owner, &ticket, after, csv::PAGE).await?;
                Ok((rows.iter().map(message_json).collect(), rows.last().map(|m| (m.at, m.id))))
            }
        }));
    }
    let history = if merges { Some(merge_history(&state, &caller, &row).await) } else { None };
    let after = cursor.as_ref().map(|c| c.uuid().map(|id| (c.at, id))).transpose()?;
    let rows = messages::for_ticket(pool, &caller.owner, &ticket, after, limit).await?;
    let next = rows.last().map(|m| Cursor::new(&filters, m.at, m.id));
    let mut body = page(rows.iter().map(message_json).collect(), next, limit).0;
    if let Some(history) = history {
        body["history"] = history;
    }
    Ok(Json(body).into_response())
}

async fn ticket_events(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(ticket): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let caller = auth::api(&state, &headers, Access::Read).await?;
    let params = Params::parse(query.as_deref());
    let limit = params.limit()?;
    let filters = format!("events|{ticket}");
    let cursor = Cursor::decode(params.get("cursor"), &filters)?;
    tickets::get(&state.read_pool, &caller.owner, &ticket).await?.ok_or(ApiError::TicketNotFound)?;
    if csv::wanted(&params, &headers) {
        let pool = state.read_pool.clone();
        return Ok(csv::export(EVENT_COLUMNS, "events.csv", move |after| {
            let (pool, owner, ticket) = (pool.clone(), caller.owner.clone(), ticket.clone());
            async move {
                let rows = events::for_ticket(&pool, &owner, &ticket, after, csv::PAGE).await?;
                Ok((rows.iter().map(event_json).collect(), rows.last().map(|e| e.id)))
            }
        }));
    }
    let after = match &cursor {
        Some(c) => {
            Some(c.id.parse::<i64>().map_err(|_| ApiError::parameter("cursor", "is not a cursor this list gave out"))?)
        }
        None => None,
    };
    let rows = events::for_ticket(&state.read_pool, &caller.owner, &ticket, after, limit).await?;
    let next = rows.last().map(|e| Cursor::new(&filters, e.at, e.id));
    Ok(page(rows.iter().map(event_json).collect(), next, limit).into_response())
}

/// Everything about one ticket in one document: for audits and support cases.
async fn export_ticket(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(ticket): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let caller = auth::api(&state, &headers, Access::Read).await?;
    let pool = &state.read_pool;
    let row = tickets::get(pool, &caller.owner, &ticket).await?.ok_or(ApiError::TicketNotFound)?;
    let all = i64::MAX;
    let messages = messages::for_ticket(pool, &caller.owner, &ticket, None, all).await?;
    let events = events::for_ticket(pool, &caller.owner, &ticket, None, all).await?;
    let filter = DeliveryFilter {
        statuses: None,
        targets: None,
        ticket_number: Some(&ticket),
        from: None,
        to: None,
        after: None,
        oldest_first: true,
        limit: all,
    };
    let deliveries = redelivery::list(pool, &caller.owner, &filter).await?;
    let deliveries = super::deliveries::with_logs(pool, &caller.owner, &deliveries).await?;
    Ok(Json(json!({
        "ticket": TicketOut::json(&row),
        "messages": messages.iter().map(message_json).collect::<Vec<_>>(),
        "events": events.iter().map(event_json).collect::<Vec<_>>(),
        "deliveries": deliveries,
        "exportedAt": state.clock.now(),
    })))
}

/// Merges the ticket's 3Dolphins history; answers the `history` object of the reply. A
/// 3Dolphins that is down or not configured is reported there, never as an error.
pub async fn merge_history(state: &AppState, caller: &ApiCaller, ticket: &TicketRow) -> Value {
    let password = match tenants::get(&state.pool, &caller.owner).await {
        Ok(row) => match state.open_password(row.and_then(|r| r.dolphins_password).as_deref()) {
            Ok(password) => password,
            Err(e) => return json!({"merged": false, "error": e.to_string()}),
        },
        Err(e) => return json!({"merged": false, "error": format!("reading the tenant: {e}")}),
    };
    let Some(account) = crate::dolphins::account(&caller.settings, password.as_deref()) else {
        return json!({"merged": false, "error": "the 3Dolphins API is not configured for this tenant"});
    };
    let merged = history::merge(
        &state.pool,
        &state.dolphins,
        &account,
        &caller.owner,
        &ticket.ticket_number,
        ticket.opened_at,
        caller.timezone,
        state.clock.now(),
    )
    .await;
    match merged {
        Ok(added) => json!({"merged": true, "added": added}),
        Err(e) => {
            tracing::warn!(owner = %caller.owner, ticket = %ticket.ticket_number, error = %e, "history merge failed");
            json!({"merged": false, "error": e.to_string()})
        }
    }
}
