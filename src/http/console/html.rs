//! The console's page frame and the small pieces every page uses. Markup is built with
//! `maud`, which escapes every interpolated value: nothing a customer or a peer wrote can
//! become markup.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use maud::{html, Markup, DOCTYPE};
use serde_json::Value;

use super::session::Viewer;

/// The top navigation entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Overview,
    Tickets,
    Deliveries,
    /// The tenant's keys and signing secret (admin sessions only).
    Keys,
    None,
}

/// A whole page: head, skip link, navigation, the notice of the last action, the body.
pub fn page(viewer: Option<&Viewer>, active: Nav, title: &str, notice: Option<&str>, body: Markup) -> Markup {
    let admin = viewer.is_some_and(|v| v.role == super::session::Role::Admin);
    let nav = [
        (Nav::Overview, "/console/overview", "Overview"),
        (Nav::Tickets, "/console/tickets", "Tickets"),
        (Nav::Deliveries, "/console/deliveries", "Deliveries"),
    ]
    .into_iter()
    .chain(admin.then_some((Nav::Keys, "/console/keys", "Keys")));
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · dolphin-bridge console" }
                link rel="stylesheet" href="/console/assets/console.css";
                script src="/console/assets/console.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/console" { "dolphin-bridge" }
                    @if let Some(viewer) = viewer {
                        nav aria-label="Main" {
                            @for (entry, href, label) in nav {
                                @if entry == active {
                                    a href=(href) aria-current="page" { (label) }
                                } @else {
                                    a href=(href) { (label) }
                                }
                            }
                        }
                        div.who {
                            span { (viewer.owner().unwrap_or("no tenant")) " · " (viewer.role.label()) }
                            @if viewer.role == super::session::Role::Admin {
                                a href="/console/tenants" { "Switch tenant" }
                            }
                            form method="post" action="/console/sign-out" {
                                (csrf_field(viewer))
                                button.link type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main id="main" tabindex="-1" {
                    @if let Some(notice) = notice {
                        p.notice role="status" { (notice) }
                    }
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// The hidden CSRF field every form of a signed-in page carries.
pub fn csrf_field(viewer: &Viewer) -> Markup {
    html! { input type="hidden" name="csrf" value=(viewer.csrf); }
}

/// A one-button form that posts to `action`; `confirm` is asked first when JavaScript runs.
pub fn action_button(viewer: &Viewer, action: &str, label: &str, confirm: Option<&str>) -> Markup {
    html! {
        form.inline method="post" action=(action) data-confirm=[confirm] {
            (csrf_field(viewer))
            button type="submit" { (label) }
        }
    }
}

/// A time in the tenant's zone, with the exact instant for machines and tooltips.
pub fn time(at: Option<DateTime<Utc>>, tz: Tz) -> Markup {
    match at {
        Some(at) => html! {
            time datetime=(at.to_rfc3339()) title=(at.to_rfc3339()) {
                (at.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S"))
            }
        },
        None => html! { span.muted { "—" } },
    }
}

/// A time from an API document (RFC 3339 text or null).
pub fn time_of(value: &Value, tz: Tz) -> Markup {
    time(value.as_str().and_then(|s| DateTime::parse_from_rfc3339(s).ok()).map(|t| t.with_timezone(&Utc)), tz)
}

/// Seconds as "1 h 05 min", "3 min 20 s", "42 s"; "—" when there is no figure.
pub fn duration(seconds: Option<f64>) -> String {
    let Some(seconds) = seconds.filter(|s| s.is_finite() && *s >= 0.0) else {
        return "—".into();
    };
    let s = seconds.round() as i64;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {:02} s", s / 60, s % 60),
        _ => format!("{} h {:02} min", s / 3600, (s % 3600) / 60),
    }
}

/// A status word as a coloured badge (the word itself carries the meaning, not the colour).
pub fn badge(status: &str) -> Markup {
    html! { span class={ "badge status-" (status) } { (status) } }
}

/// A value as one URL path segment. (Form encoding writes a space as `+`, which a path
/// reads back as a plus sign; `%20` reads back as the space.)
pub fn path_segment(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect::<String>().replace('+', "%20")
}

/// The text of a JSON string or number, "" for null.
/// A reply shape as JSON, for pages that show the API's replies field by field.
pub fn json(value: &impl serde::Serialize) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// Each of a list of reply shapes as JSON.
pub fn as_json<T: serde::Serialize>(values: &[T]) -> Vec<Value> {
    values.iter().map(json).collect()
}

pub fn text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
