//! The replay of many deliveries from the console: a form (target, statuses, day range)
//! that first shows how many deliveries it would re-send, and re-sends them only on a
//! second press. The selection and its refusals are the API's (`read_replay`).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};
use serde_json::{json, Value};

use super::html::{self, Nav};
use super::session::Viewer;
use super::{check_form, form, page_only, ConsoleError};
use crate::domain::Target;
use crate::http::deliveries::read_replay;
use crate::http::error::ApiError;
use crate::http::AppState;
use crate::store::redelivery::{self, ReplayFilter};

/// The statuses a replay may pick (as the API's replay).
const REPLAYABLE: [&str; 4] = ["dead", "failed", "cancelled", "delivered"];

/// The replay form with nothing chosen yet (the deliveries page shows it).
pub fn blank_form(viewer: &Viewer) -> Markup {
    replay_form(viewer, &ReplayFields::default())
}

/// The replay form's fields, kept between the preview and the confirmation.
#[derive(Default)]
struct ReplayFields {
    target: String,
    statuses: Vec<String>,
    from: String,
    to: String,
}

impl ReplayFields {
    fn read(body: &[u8]) -> ReplayFields {
        let mut fields = ReplayFields::default();
        for (k, v) in url::form_urlencoded::parse(body) {
            match k.as_ref() {
                "target" => fields.target = v.into_owned(),
                "status" => fields.statuses.push(v.into_owned()),
                "from" => fields.from = v.into_owned(),
                "to" => fields.to = v.into_owned(),
                _ => {}
            }
        }
        fields
    }

    /// The API's replay body; `to` is a day included in the range.
    fn as_api_body(&self) -> Value {
        let to = chrono::NaiveDate::parse_from_str(&self.to, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.succ_opt())
            .map(|d| d.to_string())
            .or_else(|| (!self.to.is_empty()).then(|| self.to.clone()));
        json!({
            "target": (!self.target.is_empty()).then_some(&self.target),
            "status": (!self.statuses.is_empty()).then_some(&self.statuses),
            "from": (!self.from.is_empty()).then_some(&self.from),
            "to": to,
        })
    }
}

fn replay_form(viewer: &Viewer, f: &ReplayFields) -> Markup {
    html! {
        form.card method="post" action="/console/deliveries/replay" {
            (html::csrf_field(viewer))
            div { label for="replay-target" { "Target" }
                select id="replay-target" name="target" {
                    option value="" { "every target" }
                    @for t in Target::ALL {
                        option value=(t.as_str()) selected[f.target == t.as_str()] { (t.as_str()) }
                    }
                }
            }
            fieldset {
                legend { "Deliveries that are" }
                @for s in REPLAYABLE {
                    @let id = format!("replay-status-{s}");
                    span.check {
                        input type="checkbox" id=(id) name="status" value=(s)
                            checked[f.statuses.iter().any(|x| x == s) || (f.statuses.is_empty() && s == "dead")];
                        label for=(id) { (s) }
                    }
                }
            }
            div { label for="replay-from" { "Accepted from (day)" } input id="replay-from" name="from" type="date" required value=(f.from); }
            div { label for="replay-to" { "To (day, included; empty = now)" } input id="replay-to" name="to" type="date" value=(f.to); }
            button type="submit" { "Count what this would re-send" }
        }
    }
}

/// First the count (nothing changes), then, with `confirm`, the replay itself.
pub async fn replay(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, ConsoleError> {
    let viewer = Viewer::from_request(&state, &headers).await?;
    let fields = form(&body);
    check_form(&viewer, &headers, &fields)?;
    let caller = viewer.require_act()?;
    let chosen = ReplayFields::read(&body);
    let now = state.clock.now();
    let selection = match read_replay(&chosen.as_api_body(), caller, now) {
        Ok(selection) => selection,
        Err(ApiError::InvalidPayload(problems)) => {
            let page = html! {
                div.error role="alert" {
                    p { "The replay cannot run with these fields:" }
                    ul { @for p in &problems { li { strong { (p.field) } " " (p.problem) } } }
                }
                (replay_form(&viewer, &chosen))
            };
            let page = html::page(Some(&viewer), Nav::Deliveries, "Replay", None, page);
            return Ok((axum::http::StatusCode::BAD_REQUEST, page_only(page)).into_response());
        }
        Err(other) => return Err(other.into()),
    };
    let (targets, statuses, from, to) = selection;
    let filter = ReplayFilter { targets: targets.as_deref(), statuses: &statuses, from, to };
    if fields.get("confirm").map(String::as_str) == Some("yes") {
        let count = redelivery::replay(&state.pool, &caller.owner, &filter, &caller.actor, now).await?;
        tracing::info!(owner = %caller.owner, count, actor = %caller.actor, "deliveries replayed from the console");
        return Ok(Redirect::to(&format!("/console/deliveries?notice=replayed&n={count}")).into_response());
    }
    let count = redelivery::replay_count(&state.pool, &caller.owner, &filter, now).await?;
    let tz = caller.timezone;
    let page = html! {
        p.notice role="status" id="replay-count" {
            strong { (count) } " deliveries would be sent again: "
            (statuses.join(", ")) ", to " (targets.as_ref().map_or("every target".to_string(), |t| t.join(", ")))
            ", accepted from " (html::time(Some(from), tz)) " to " (html::time(Some(to), tz)) "."
        }
        @if count == 0 {
            p { "Nothing to replay." } p { a href="/console/deliveries" { "Back to deliveries" } }
        } @else {
            form.card method="post" action="/console/deliveries/replay" {
                (html::csrf_field(&viewer))
                input type="hidden" name="target" value=(chosen.target);
                @for s in &chosen.statuses { input type="hidden" name="status" value=(s); }
                input type="hidden" name="from" value=(chosen.from);
                input type="hidden" name="to" value=(chosen.to);
                input type="hidden" name="confirm" value="yes";
                button type="submit" { "Re-send these " (count) " deliveries" }
                " " a href="/console/deliveries" { "Cancel" }
            }
        }
    };
    Ok(page_only(html::page(Some(&viewer), Nav::Deliveries, "Replay", None, page)))
}
