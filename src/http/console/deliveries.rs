//! Deliveries: the failed and dead ones across tickets (or found by id, by day, as CSV),
//! each delivery's attempts, and the operator's retry and cancel. The actions are the API's
//! (`store::redelivery`), with the same refusals; the replay is `replay`.

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
use crate::domain::payload::Problem;
use crate::domain::{DeliveryStatus, Target};
use crate::http::csv::{self, Csv};
use crate::http::deliveries::refused;
use crate::http::error::ApiError;
use crate::http::params::{parse_instant, Cursor, Params};
use crate::http::shapes::DeliveryOut;
use crate::http::AppState;
use crate::store::redelivery::{self, DeliveryFilter, DeliveryRow};

const PAGE: i64 = 50;

/// What the list shows when no status is chosen: what needs an operator.
const NEEDS_ATTENTION: [&str; 2] = ["failed", "dead"];

/// The list's filters as the console's form gives them: a status (default: what needs an
/// operator), a target, a ticket, a day range in the tenant's zone (`to` included), and
/// `find`, a delivery id (the `webhook-id` a receiver logged) or a message id.
struct ListQuery {
    statuses: Option<Vec<String>>,
    targets: Option<Vec<String>>,
    ticket: Option<String>,
    find: Option<uuid::Uuid>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
}

/// The form fields the list keeps in its links (next page, CSV).
const FIELDS: [&str; 6] = ["status", "target", "ticket", "find", "from", "to"];

impl ListQuery {
    fn parse(params: &Params, tz: Tz) -> Result<ListQuery, ApiError> {
        let mut problems = Vec::new();
        let find = params.uuid("find").map_err(|e| problems.extend(e.into_problems())).ok().flatten();
        let statuses = match params.get("status") {
            Some(s) if DeliveryStatus::parse(s).is_some() => Some(vec![s.to_string()]),
            Some(s) => {
                problems.push(Problem::new("status", format!("{s:?} is not a delivery status")));
                None
            }
            // Looking one up shows it whatever its status.
            None if find.is_some() => None,
            None => Some(NEEDS_ATTENTION.iter().map(|s| s.to_string()).collect()),
        };
        let targets = match params.get("target") {
            Some(t) if Target::parse(t).is_some() => Some(vec![t.to_string()]),
            Some(t) => {
                problems.push(Problem::new("target", format!("{t:?} is not a delivery target")));
                None
            }
            None => None,
        };
        let mut day = |name: &str, next: bool| {
            let raw = params.get(name)?;
            let raw = match chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
                Ok(d) if next => d.succ_opt().map_or(raw.to_string(), |d| d.to_string()),
                _ => raw.to_string(),
            };
            parse_instant(name, &raw, tz).map_err(|e| problems.extend(e.into_problems())).ok()
        };
        let (from, to) = (day("from", false), day("to", true));
        if let (Some(from), Some(to)) = (from, to) {
            if from >= to {
                problems.push(Problem::new("from", "must be before to"));
            }
        }
        if !problems.is_empty() {
            return Err(ApiError::InvalidParameter(problems));
        }
        Ok(ListQuery { statuses, targets, ticket: params.get("ticket").map(str::to_string), find, from, to })
    }

    /// One page after `after`: with `find`, the delivery of that id, else of that message.
    async fn page(
        &self,
        pool: &sqlx::PgPool,
        owner: &str,
        after: Option<(DateTime<Utc>, uuid::Uuid)>,
        limit: i64,
    ) -> Result<Vec<DeliveryRow>, sqlx::Error> {
        let filter = |id, message_id| DeliveryFilter {
            statuses: self.statuses.as_deref(),
            targets: self.targets.as_deref(),
            ticket_number: self.ticket.as_deref(),
            id,
            message_id,
            from: self.from,
            to: self.to,
            after,
            oldest_first: false,
            limit,
        };
        let Some(find) = self.find else { return redelivery::list(pool, owner, &filter(None, None)).await };
        let by_id = redelivery::list(pool, owner, &filter(Some(find), None)).await?;
        if !by_id.is_empty() {
            return Ok(by_id);
        }
        redelivery::list(pool, owner, &filter(None, Some(find))).await
    }
}

/// The list's own query string, without the cursor.
fn filters_query(params: &Params) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for name in FIELDS {
        if let Some(v) = params.get(name) {
            q.append_pair(name, v);
        }
    }
    q.finish()
}

pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ConsoleError> {
    let viewer = Viewer::from_request(&state, &headers).await?;
    let caller = viewer.tenant()?;
    let params = Params::parse(raw.as_deref());
    let tz = caller.timezone;
    let query = ListQuery::parse(&params, tz)?;
    let filters = params.fingerprint("console-deliveries", &FIELDS);
    let cursor = Cursor::decode(params.get("cursor"), &filters)?;
    let after = cursor.as_ref().map(|c| c.uuid().map(|id| (c.at, id))).transpose()?;
    let rows = query.page(&state.pool, &caller.owner, after, PAGE).await?;
    let shown_filters = filters_query(&params);
    let next = rows.last().filter(|_| rows.len() as i64 == PAGE).map(|d| {
        let mut q = url::form_urlencoded::Serializer::new(shown_filters.clone());
        q.append_pair("cursor", &Cursor::new(&filters, d.created_at, d.id).encode());
        q.finish()
    });
    let shown = crate::http::deliveries::with_logs(&state.pool, &caller.owner, &rows).await?;
    let back = format!("/console/deliveries?{}", raw.as_deref().unwrap_or(""));
    let value = |name: &str| params.get(name).unwrap_or("").to_string();
    let body = html! {
        form.filters method="get" action="/console/deliveries" role="search" {
            div { label for="status" { "Status" }
                select id="status" name="status" {
                    option value="" { "failed or dead" }
                    @for s in DeliveryStatus::ALL {
                        option value=(s.as_str()) selected[params.get("status") == Some(s.as_str())] { (s.as_str()) }
                    }
                }
            }
            div { label for="target" { "Target" }
                select id="target" name="target" {
                    option value="" { "any" }
                    @for t in Target::ALL {
                        option value=(t.as_str()) selected[params.get("target") == Some(t.as_str())] { (t.as_str()) }
                    }
                }
            }
            div { label for="from" { "Accepted from (day)" } input id="from" name="from" type="date" value=(value("from")); }
            div { label for="to" { "To (day, included)" } input id="to" name="to" type="date" value=(value("to")); }
            div.grow { label for="ticket" { "Ticket number" } input id="ticket" name="ticket" value=(value("ticket")); }
            div.grow { label for="find" { "Delivery id, webhook-id or message id" }
                input id="find" name="find" type="search" value=(value("find")); }
            div.buttons {
                button type="submit" { "Filter" }
                a href="/console/deliveries" { "Clear" }
                a href={ "/console/deliveries.csv?" (shown_filters) } download { "Download CSV" }
            }
        }
        p.muted { "Days in " (tz.name()) ". With an id, any status." }
        @if shown.is_empty() {
            p { "No delivery matches." }
        } @else {
            (delivery_cards(&viewer, &html::as_json(&shown), tz, &back))
            @if let Some(next) = next {
                p { a rel="next" href={ "/console/deliveries?" (next) } { "Next page" } }
            }
        }
        @if viewer.role.can_act() {
            section aria-labelledby="replay" {
                h2 id="replay" { "Replay" }
                p { "Re-send every delivery of a kind in a time range, for example after a receiver lost data.
                     You will see how many deliveries that is before anything is sent." }
                (super::replay::blank_form(&viewer))
            }
        }
    };
    let notice = super::notice(params.get("notice"), params.get("n"));
    Ok(page_only(html::page(Some(&viewer), Nav::Deliveries, "Deliveries", notice.as_deref(), body)))
}

/// The list's current filters as CSV (every page), in the API's delivery columns.
pub async fn csv(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ConsoleError> {
    let viewer = Viewer::from_request(&state, &headers).await?;
    let caller = viewer.tenant()?;
    let query = std::sync::Arc::new(ListQuery::parse(&Params::parse(raw.as_deref()), caller.timezone)?);
    let (pool, owner) = (state.pool.clone(), caller.owner.clone());
    Ok(Csv::default().export("deliveries.csv", move |after| {
        let (pool, owner, query) = (pool.clone(), owner.clone(), query.clone());
        async move {
            let rows = query.page(&pool, &owner, after, csv::PAGE).await?;
            let last = rows.last().map(|d| (d.created_at, d.id));
            Ok((rows.iter().map(|d| DeliveryOut::new(d, None)).collect::<Vec<_>>(), last))
        }
    }))
}

/// Deliveries with their attempts, and the buttons the viewer may press. `back` is where
/// an action returns to.
pub fn delivery_cards(viewer: &Viewer, deliveries: &[Value], tz: Tz, back: &str) -> Markup {
    html! {
        @if deliveries.is_empty() {
            p.muted { "Nothing was forwarded for this ticket yet." }
        }
        ul.deliveries {
            @for d in deliveries {
                @let id = html::text(&d["id"]);
                @let status = d["status"].as_str().unwrap_or("");
                li.card {
                    p.delivery-head {
                        strong { (html::text(&d["target"])) } " " (html::badge(status))
                        @if d["target"] == "alerts" {
                            " · operational alert"
                        } @else {
                            " · ticket " a href={ "/console/tickets/" (html::path_segment(&html::text(&d["ticketNumber"]))) } { (html::text(&d["ticketNumber"])) }
                        }
                    }
                    dl.facts.small {
                        div { dt { "Accepted" } dd { (html::time_of(&d["createdAt"], tz)) } }
                        div { dt { "Attempts" } dd { (html::text(&d["attempts"])) } }
                        @if !d["deliveredAt"].is_null() { div { dt { "Delivered" } dd { (html::time_of(&d["deliveredAt"], tz)) } } }
                        @if !d["nextAttemptAt"].is_null() { div { dt { "Next attempt" } dd { (html::time_of(&d["nextAttemptAt"], tz)) } } }
                        @if !d["lastError"].is_null() { div { dt { "Last error" } dd { (html::text(&d["lastError"])) } } }
                    }
                    @if let Some(log) = d["attemptLog"].as_array().filter(|l| !l.is_empty()) {
                        details {
                            summary { "Attempts (" (log.len()) ")" }
                            div.scroll {
                                table {
                                    thead { tr { th scope="col" { "#" } th scope="col" { "At" } th scope="col" { "Took" }
                                                 th scope="col" { "Request sent" }
                                                 th scope="col" { "HTTP" } th scope="col" { "Error" } th scope="col" { "Reply (start)" } } }
                                    tbody {
                                        @for a in log {
                                            tr {
                                                td { (html::text(&a["n"])) }
                                                td { (html::time_of(&a["at"], tz)) }
                                                td { (html::text(&a["durationMs"])) " ms" }
                                                td { (sent_request(&a["request"])) }
                                                td { (html::text(&a["httpStatus"])) }
                                                td { (html::text(&a["error"])) }
                                                td { code.head { (html::text(&a["responseHead"])) } }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    @if viewer.role.can_act() {
                        div.actions {
                            @if matches!(status, "failed" | "dead" | "cancelled") {
                                (action(viewer, &id, "retry", "Retry now", None, back))
                            }
                            @if matches!(status, "pending" | "failed" | "dead") {
                                (action(viewer, &id, "cancel", "Cancel", Some(CANCEL_WARNING), back))
                            }
                        }
                    }
                }
            }
        }
    }
}

/// What an attempt sent: the URL, and its headers on demand (credentials already masked).
fn sent_request(request: &Value) -> Markup {
    html! {
        @if let Some(url) = request["url"].as_str() {
            details.request {
                summary { "POST " code { (url) } }
                dl.headers {
                    @if let Some(headers) = request["headers"].as_object() {
                        @for (name, value) in headers {
                            div { dt { code { (name) } } dd { code { (html::text(value)) } } }
                        }
                    }
                }
            }
        } @else {
            span.muted { "not sent" }
        }
    }
}

const CANCEL_WARNING: &str = "Cancel this delivery? It will not be sent again (unless someone retries it), \
                              and the later deliveries of its ticket to the same target stop waiting for it.";

fn action(viewer: &Viewer, id: &str, verb: &str, label: &str, confirm: Option<&str>, back: &str) -> Markup {
    html! {
        form.inline method="post" action={ "/console/deliveries/" (id) "/" (verb) } data-confirm=[confirm] {
            (html::csrf_field(viewer))
            input type="hidden" name="back" value=(back);
            @if let Some(confirm) = confirm { p.visually-hidden { (confirm) } }
            button type="submit" { (label) }
        }
    }
}

/// Where to go after an action: a console page named by the form, else the deliveries.
fn back_to(fields: &std::collections::HashMap<String, String>, notice: &str) -> String {
    let back = fields
        .get("back")
        .filter(|b| b.starts_with("/console/") && !b.contains("//") && !b.contains('\\'))
        .map_or("/console/deliveries", String::as_str);
    // Drop an older notice before adding this one.
    let (path, query) = back.split_once('?').unwrap_or((back, ""));
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        if k != "notice" && k != "n" {
            q.append_pair(&k, &v);
        }
    }
    q.append_pair("notice", notice);
    format!("{path}?{}", q.finish())
}

fn delivery_id(raw: &str) -> Result<uuid::Uuid, ConsoleError> {
    raw.parse().map_err(|_| ConsoleError::Api(ApiError::NotFound("delivery")))
}

pub async fn retry(
    state: State<AppState>,
    headers: HeaderMap,
    id: Path<String>,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    act(state, headers, id, body, Action::Retry).await
}

pub async fn cancel(
    state: State<AppState>,
    headers: HeaderMap,
    id: Path<String>,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    act(state, headers, id, body, Action::Cancel).await
}

#[derive(Debug, Clone, Copy)]
enum Action {
    Retry,
    Cancel,
}

/// Retries or cancels one delivery with the API's own store action and refusals, then goes
/// back to the page the button was on.
async fn act(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
    action: Action,
) -> Result<Response, ConsoleError> {
    let viewer = Viewer::from_request(&state, &headers).await?;
    let fields = form(&body);
    check_form(&viewer, &headers, &fields)?;
    let caller = viewer.require_act()?;
    let id = delivery_id(&id)?;
    let (pool, owner, actor, now) = (&state.pool, &caller.owner, &caller.actor, state.clock.now());
    let (outcome, notice) = match action {
        Action::Retry => (redelivery::retry(pool, owner, id, actor, now).await?, "retried"),
        Action::Cancel => (redelivery::cancel(pool, owner, id, actor, now).await?, "cancelled"),
    };
    outcome.map_err(refused)?;
    tracing::info!(%owner, delivery = %id, %actor, ?action, "delivery action from the console");
    Ok(Redirect::to(&back_to(&fields, notice)).into_response())
}
