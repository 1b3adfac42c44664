//! The read side of `/api/v1` (README *HTTP surface*): tickets, a ticket's conversation and
//! lifecycle audit, and the whole-ticket export for audits. Every list pages by keyset.

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use chrono::{DateTime, Utc};

use super::auth::{self, Access, ApiCaller};
use super::csv::{self, Csv};
use super::error::ApiError;
use super::openapi::{doc, paging, query_enum, query_string, query_time, query_tz, Auth, Routes};
use super::params::{Cursor, Params};
use super::shapes::{EventOut, EventPage, HistoryMerge, MessageOut, MessagePage, TicketExport, TicketOut, TicketPage};
use super::AppState;
use crate::domain::TicketStatus;
use crate::history;
use crate::store::events;
use crate::store::messages;
use crate::store::redelivery::{self, DeliveryFilter};
use crate::store::tenants;
use crate::store::tickets::{self, TicketFilter, TicketRow};

pub fn routes() -> Routes {
    let statuses: Vec<&str> = TicketStatus::ALL.iter().map(|s| s.as_str()).collect();
    Routes::default()
        .op(
            Method::GET,
            "/api/v1/tickets",
            get(list_tickets),
            doc("listTickets", "Tickets, newest first, filtered", Auth::Read)
                .query([
                    query_enum("status", "only open or only closed tickets", &statuses),
                    query_string("channel", "only this channel (any case), e.g. whatsapp"),
                    query_string("contactId", "only this 3Dolphins contact's tickets"),
                    query_time("from", "opened at or after; default 30 days ago"),
                    query_time("to", "opened before; default now"),
                    query_tz(),
                    query_string("q", "ticket number, customer name or account id contains this"),
                ])
                .query(paging())
                .reply::<TicketPage>(200, "a page of tickets")
                .csv(),
        )
        .op(
            Method::GET,
            "/api/v1/tickets/{ticketNumber}",
            get(get_ticket),
            doc("getTicket", "One ticket", Auth::Read).reply::<TicketOut>(200, "the ticket").errors(&[404]),
        )
        .op(
            Method::GET,
            "/api/v1/tickets/{ticketNumber}/messages",
            get(ticket_messages),
            doc(
                "listTicketMessages",
                "A ticket's conversation, oldest first; source=merged adds 3Dolphins history",
                Auth::Read,
            )
            .query([query_enum(
                "source",
                "`merged`: first fill in the ticket's 3Dolphins Conversation History",
                &["local", "merged"],
            )])
            .query(paging())
            .reply::<MessagePage>(200, "a page of the conversation")
            .csv(),
        )
        .op(
            Method::GET,
            "/api/v1/tickets/{ticketNumber}/events",
            get(ticket_events),
            doc("listTicketEvents", "A ticket's lifecycle audit, oldest first", Auth::Read)
                .query(paging())
                .reply::<EventPage>(200, "a page of the audit")
                .csv(),
        )
        .op(
            Method::GET,
            "/api/v1/tickets/{ticketNumber}/export",
            get(export_ticket),
            doc("exportTicket", "The whole ticket in one document", Auth::Read)
                .reply::<TicketExport>(200, "ticket, messages, events and deliveries"),
        )
}

async fn list_tickets(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let caller = auth::api(&state, &headers, Access::Read).await?;
    let params = Params::parse(query.as_deref());
    let wanted_csv = csv::wanted(&params, &headers)?;
    let query = TicketQuery::parse(&params, &caller, state.clock.now())?;
    if let Some(csv) = wanted_csv {
        return Ok(query.csv(&state, &caller, csv));
    }
    let (rows, next_cursor) = query.page(&state, &caller).await?;
    Ok(Json(TicketPage { data: rows.iter().map(TicketOut::from).collect(), next_cursor }).into_response())
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
    pub fn csv(self, state: &AppState, caller: &ApiCaller, csv: Csv) -> Response {
        let (pool, owner, query) = (state.read_pool.clone(), caller.owner.clone(), std::sync::Arc::new(self));
        csv.export("tickets.csv", move |after: Option<(DateTime<Utc>, String)>| {
            let (pool, owner, query) = (pool.clone(), owner.clone(), query.clone());
            async move {
                let filter = query.filter(after.as_ref().map(|(at, n)| (*at, n.as_str())), csv::PAGE);
                let rows = tickets::list(&pool, &owner, &filter).await?;
                let last = rows.last().map(|t| (t.opened_at, t.ticket_number.clone()));
                Ok((rows.iter().map(TicketOut::from).collect::<Vec<_>>(), last))
            }
        })
    }
}

async fn get_ticket(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(ticket): Path<String>,
) -> Result<Json<TicketOut>, ApiError> {
    let caller = auth::api(&state, &headers, Access::Read).await?;
    let row = tickets::get(&state.pool, &caller.owner, &ticket).await?.ok_or(ApiError::TicketNotFound)?;
    Ok(Json(TicketOut::from(&row)))
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
    if let Some(csv) = csv::wanted(&params, &headers)? {
        let pool = state.read_pool.clone();
        return Ok(csv.export("messages.csv", move |after| {
            let (pool, owner, ticket) = (pool.clone(), caller.owner.clone(), ticket.clone());
            async move {
                let rows = messages::for_ticket(&pool, &owner, &ticket, after, csv::PAGE).await?;
                let last = rows.last().map(|m| (m.at, m.id));
                Ok((rows.iter().map(MessageOut::from).collect::<Vec<_>>(), last))
            }
        }));
    }
    let history = if merges { Some(merge_history(&state, &caller, &row).await) } else { None };
    let after = cursor.as_ref().map(|c| c.uuid().map(|id| (c.at, id))).transpose()?;
    let rows = messages::for_ticket(pool, &caller.owner, &ticket, after, limit).await?;
    let next = rows.last().map(|m| Cursor::new(&filters, m.at, m.id));
    Ok(Json(MessagePage::new(rows.iter().map(MessageOut::from).collect(), next, limit, history)).into_response())
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
    if let Some(csv) = csv::wanted(&params, &headers)? {
        let pool = state.read_pool.clone();
        return Ok(csv.export("events.csv", move |after| {
            let (pool, owner, ticket) = (pool.clone(), caller.owner.clone(), ticket.clone());
            async move {
                let rows = events::for_ticket(&pool, &owner, &ticket, after, csv::PAGE).await?;
                let last = rows.last().map(|e| e.id);
                Ok((rows.iter().map(EventOut::from).collect::<Vec<_>>(), last))
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
    Ok(Json(EventPage::new(rows.iter().map(EventOut::from).collect(), next, limit)).into_response())
}

/// Everything about one ticket in one document: for audits and support cases.
async fn export_ticket(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(ticket): Path<String>,
) -> Result<Json<TicketExport>, ApiError> {
    let caller = auth::api(&state, &headers, Access::Read).await?;
    let pool = &state.read_pool;
    let row = tickets::get(pool, &caller.owner, &ticket).await?.ok_or(ApiError::TicketNotFound)?;
    let all = i64::MAX;
    let messages = messages::for_ticket(pool, &caller.owner, &ticket, None, all).await?;
    let events = events::for_ticket(pool, &caller.owner, &ticket, None, all).await?;
    let filter = DeliveryFilter::of_ticket(&ticket, None, all);
    let deliveries = redelivery::list(pool, &caller.owner, &filter).await?;
    let deliveries = super::deliveries::with_logs(pool, &caller.owner, &deliveries).await?;
    Ok(Json(TicketExport {
        ticket: TicketOut::from(&row),
        messages: messages.iter().map(MessageOut::from).collect(),
        events: events.iter().map(EventOut::from).collect(),
        deliveries,
        exported_at: state.clock.now(),
    }))
}

/// Merges the ticket's 3Dolphins history; answers the `history` object of the reply. A
/// 3Dolphins that is down or not configured is reported there, never as an error.
pub async fn merge_history(state: &AppState, caller: &ApiCaller, ticket: &TicketRow) -> HistoryMerge {
    let password = match tenants::get(&state.pool, &caller.owner).await {
        Ok(row) => match state.open_password(row.and_then(|r| r.dolphins_password).as_deref()) {
            Ok(password) => password,
            Err(e) => return HistoryMerge::failed(e.to_string()),
        },
        Err(e) => return HistoryMerge::failed(format!("reading the tenant: {e}")),
    };
    let Some(account) = crate::dolphins::account(&caller.settings, password.as_deref()) else {
        return HistoryMerge::failed("the 3Dolphins API is not configured for this tenant");
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
        Ok(added) => HistoryMerge { merged: true, added: Some(added as u64), error: None },
        Err(e) => {
            tracing::warn!(owner = %caller.owner, ticket = %ticket.ticket_number, error = %e, "history merge failed");
            HistoryMerge::failed(e.to_string())
        }
    }
}
