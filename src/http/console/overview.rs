//! The overview: today's and the last 7 days' figures (the summary report), the health of
//! each delivery target, and a daily chart of tickets opened and closed (the timeseries
//! report), drawn on the server as SVG.

use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use chrono::{Days, Utc};
use maud::{html, Markup};
use serde_json::Value;

use super::html::{self, Nav};
use super::session::Viewer;
use super::{page_only, ConsoleError};
use crate::http::params::Params;
use crate::http::{endpoints, reports, AppState};
use crate::store::redelivery;

/// Days the chart shows.
const CHART_DAYS: u64 = 14;
/// The first-response target the cards measure against unless `?slaSeconds=` says otherwise.
const DEFAULT_SLA_SECONDS: i64 = 300;

pub async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ConsoleError> {
    let viewer = Viewer::from_request(&state, &headers).await?;
    let caller = viewer.tenant()?;
    let params = Params::parse(query.as_deref());
    let now = state.clock.now();
    let today = now.with_timezone(&caller.timezone).date_naive();
    let days_ago = |n: u64| today.checked_sub_days(Days::new(n)).unwrap_or(today);
    let report = |from: chrono::NaiveDate, extra: &str| Params::parse(Some(&format!("from={from}{extra}")));
    // A bad value is refused by the report, naming the parameter, like the API's.
    let sla = params.get("slaSeconds").map_or(DEFAULT_SLA_SECONDS.to_string(), str::to_string);
    let sla_param = format!("&slaSeconds={}", url_escape(&sla));
    let (today_scope, week_scope, chart_scope) =
        (report(today, &sla_param), report(days_ago(6), &sla_param), report(days_ago(CHART_DAYS - 1), "&interval=day"));
    let (today_figures, week_figures, daily, targets, recent) = tokio::try_join!(
        reports::summary_document(&state, caller, &today_scope),
        reports::summary_document(&state, caller, &week_scope),
        reports::timeseries_document(&state, caller, &chart_scope),
        endpoints::endpoint_states(&state, caller),
        async { Ok(redelivery::recent_outcomes(&state.pool, &caller.owner, now - chrono::Duration::hours(1)).await?) },
    )?;
    let (today_figures, week_figures, daily, targets) =
        (html::json(&today_figures), html::json(&week_figures), html::json(&daily), html::as_json(&targets));
    let tz = caller.timezone;
    let body = html! {
        div.refresh {
            button type="button" id="refresh-switch" hidden { "Pause refresh" }
            span.muted id="refresh-state" hidden {}
        }
        div id="live" data-refresh="30" {
            section aria-labelledby="figures" {
                h2 id="figures" { "Tickets" }
                form.inline method="get" action="/console/overview" {
                    label for="sla" { "First-response target (seconds)" }
                    input id="sla" name="slaSeconds" type="number" min="1" value=(sla);
                    button type="submit" { "Show" }
                }
                div.cards {
                    (figures("Today", &today_figures))
                    (figures("Last 7 days", &week_figures))
                }
            }
            section aria-labelledby="health" {
                h2 id="health" { "Delivery health" }
                @if targets.is_empty() {
                    p.muted { "No delivery target is configured for this tenant." }
                } @else {
                    div.scroll {
                        table {
                            caption { "Per target: the last hour's attempts, and what waits now" }
                            thead { tr {
                                th scope="col" { "Target" } th scope="col" { "Delivered (1 h)" }
                                th scope="col" { "Failed attempts (1 h)" } th scope="col" { "Dead (1 h)" }
                                th scope="col" { "Queue" } th scope="col" { "Oldest waiting since" }
                                th scope="col" { "Circuit breaker" }
                                @if viewer.role.can_act() { th scope="col" { "Deliveries" } }
                            } }
                            tbody {
                                @for t in &targets {
                                    @let name = html::text(&t["target"]);
                                    @let outcome = recent.iter().find(|r| r.target == name);
                                    tr {
                                        th scope="row" { (name) }
                                        td { (outcome.map_or(0, |o| o.delivered)) }
                                        td { (outcome.map_or(0, |o| o.failed)) }
                                        td { (outcome.map_or(0, |o| o.dead)) }
                                        td { (html::text(&t["queueDepth"])) }
                                        td { (html::time_of(&t["oldestPendingAt"], tz)) }
                                        td {
                                            (breaker(t["state"].as_str().unwrap_or("closed")))
                                            @if t["paused"].as_bool() == Some(true) { " " (html::badge("paused")) }
                                        }
                                        @if viewer.role.can_act() {
                                            td { (super::operations::pause_switch(&viewer, &name, t["paused"].as_bool() == Some(true))) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            section aria-labelledby="chart" {
                h2 id="chart" { "Tickets per day, last " (CHART_DAYS) " days" }
                (chart(daily["data"].as_array().map_or(&[][..], Vec::as_slice), tz))
            }
            p.muted { "Figures as of " (html::time(Some(now), tz)) " (" (tz.name()) ")." }
        }
    };
    let notice = super::notice(params.get("notice"), params.get("n"));
    Ok(page_only(html::page(Some(&viewer), Nav::Overview, "Overview", notice.as_deref(), body)))
}

/// `value` safe inside a query string.
fn url_escape(value: &str) -> String {
    value
        .bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// A circuit breaker's state in an operator's words.
fn breaker(state: &str) -> Markup {
    let words = match state {
        "closed" => "closed: sending",
        "open" => "open: waiting to probe",
        "half_open" => "half-open: probing",
        other => other,
    };
    html! { span class={ "badge status-breaker-" (state) } { (words) } }
}

/// One period's figures as a card.
fn figures(label: &str, s: &Value) -> Markup {
    let figure = |v: &Value| v.as_i64().unwrap_or(0);
    html! {
        div.card {
            h3 { (label) }
            dl.figures {
                div { dt { "Opened" } dd { (figure(&s["ticketsOpened"])) } }
                div { dt { "Closed" } dd { (figure(&s["ticketsClosed"])) } }
                div { dt { "Open now" } dd { (figure(&s["ticketsOpenNow"])) } }
                div { dt { "First response, median" } dd { (html::duration(s["firstResponseSeconds"]["p50"].as_f64())) } }
                @let within = &s["firstResponseWithinSla"];
                div {
                    dt { "Answered within " (html::duration(within["seconds"].as_f64())) }
                    dd {
                        @match within["share"].as_f64() {
                            Some(share) => { (format!("{:.0} %", share * 100.0)) " (" (figure(&within["count"])) ")" }
                            None => { "—" }
                        }
                    }
                }
                div { dt { "Resolution, median" } dd { (html::duration(s["resolutionSeconds"]["p50"].as_f64())) } }
                div { dt { "Messages in / out" } dd { (figure(&s["messagesIn"])) " / " (figure(&s["messagesOut"])) } }
            }
        }
    }
}

/// Paired bars per day (opened, closed), with the same numbers as a table for screen
/// readers and for anyone who wants the figures.
fn chart(days: &[Value], tz: chrono_tz::Tz) -> Markup {
    let (width, height, pad) = (700.0_f64, 220.0_f64, 28.0_f64);
    let count = |d: &Value, key: &str| d[key].as_i64().unwrap_or(0);
    let max = days.iter().map(|d| count(d, "ticketsOpened").max(count(d, "ticketsClosed"))).max().unwrap_or(0).max(1);
    let slot = (width - pad) / days.len().max(1) as f64;
    let bar = (slot / 2.0 - 2.0).max(1.0);
    let y = |n: i64| height - pad - (n as f64 / max as f64) * (height - 2.0 * pad);
    let label = |d: &Value| {
        d["bucket"]
            .as_str()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&Utc).with_timezone(&tz).format("%m-%d").to_string())
            .unwrap_or_default()
    };
    html! {
        figure.chart {
            svg viewBox={ "0 0 " (width) " " (height) } role="img" aria-labelledby="chart-title" {
                title id="chart-title" { "Tickets opened and closed per day; the highest day has " (max) }
                line x1=(pad) y1=(height - pad) x2=(width) y2=(height - pad) class="axis" {}
                text x="0" y=(pad) class="tick" { (max) }
                text x="0" y=(height - pad) class="tick" { "0" }
                @for (i, d) in days.iter().enumerate() {
                    @let x = pad + i as f64 * slot;
                    @let (opened, closed) = (count(d, "ticketsOpened"), count(d, "ticketsClosed"));
                    rect class="opened" x=(x + 1.0) y=(y(opened)) width=(bar) height=(height - pad - y(opened)) {
                        title { (label(d)) ": " (opened) " opened" }
                    }
                    rect class="closed" x=(x + 1.0 + bar) y=(y(closed)) width=(bar) height=(height - pad - y(closed)) {
                        title { (label(d)) ": " (closed) " closed" }
                    }
                    @if i % 2 == 0 {
                        text x=(x + 1.0) y=(height - 8.0) class="tick" { (label(d)) }
                    }
                }
            }
            figcaption {
                span.key.opened { "opened" } " " span.key.closed { "closed" }
            }
            details id="chart-figures" {
                summary { "The figures" }
                div.scroll {
                    table {
                        thead { tr { th scope="col" { "Day" } th scope="col" { "Opened" } th scope="col" { "Closed" } } }
                        tbody {
                            @for d in days {
                                tr { th scope="row" { (label(d)) } td { (count(d, "ticketsOpened")) } td { (count(d, "ticketsClosed")) } }
                            }
                        }
                    }
                }
            }
        }
    }
}
