//! Operator actions beyond single deliveries: pausing and resuming a target (third-party
//! key or admin, from the overview's health table), and, for admin sessions, the tenant's
//! keys (list, create read keys, revoke) and its signing secret (rotate, retire the
//! previous one). Each calls the same store functions as the API; a new key or secret is
//! shown once, on the page the form answers with (never in a URL).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};

use super::html::{self, Nav};
use super::session::{Role, Viewer};
use super::{check_form, form, page_only, ConsoleError};
use crate::domain::{KeyKind, Target};
use crate::http::error::ApiError;
use crate::http::AppState;
use crate::store::{endpoints, keys, tenants};
use crate::tenancy;

/// Pauses a target of the tenant (its deliveries wait, using none of their schedule).
pub async fn pause(
    state: State<AppState>,
    headers: HeaderMap,
    target: Path<String>,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    switch_pause(state, headers, target, body, true).await
}

/// Resumes a paused target: its deliveries are due at once.
pub async fn resume(
    state: State<AppState>,
    headers: HeaderMap,
    target: Path<String>,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    switch_pause(state, headers, target, body, false).await
}

async fn switch_pause(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(target): Path<String>,
    body: Bytes,
    paused: bool,
) -> Result<Response, ConsoleError> {
    let viewer = Viewer::from_request(&state, &headers).await?;
    check_form(&viewer, &headers, &form(&body))?;
    let caller = viewer.require_act()?;
    let target = Target::parse(&target)
        .filter(|t| caller.settings.url_for(*t).is_some())
        .ok_or(ConsoleError::Api(ApiError::NotFound("endpoint")))?;
    let changed = endpoints::set_paused(&state.pool, &caller.owner, target, paused, state.clock.now()).await?;
    tracing::info!(owner = %caller.owner, %target, paused, changed, actor = %caller.actor, "endpoint pause switched from the console");
    let notice = if paused { "paused" } else { "resumed" };
    Ok(Redirect::to(&format!("/console/overview?notice={notice}")).into_response())
}

/// The admin's tenant page: keys and signing secret.
pub async fn keys_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    raw: axum::extract::RawQuery,
) -> Result<Response, ConsoleError> {
    let viewer = admin(&state, &headers).await?;
    let params = crate::http::params::Params::parse(raw.0.as_deref());
    let notice = super::notice(params.get("notice"), None);
    render_keys(&state, &viewer, notice.as_deref(), None).await
}

/// Only admin sessions manage keys and secrets (as the admin API does).
async fn admin(state: &AppState, headers: &HeaderMap) -> Result<Viewer, ConsoleError> {
    let viewer = Viewer::from_request(state, headers).await?;
    if viewer.role != Role::Admin {
        return Err(ConsoleError::Forbidden(
            "Keys and signing secrets are managed by the admin: sign in with the admin token.".into(),
        ));
    }
    viewer.tenant()?;
    Ok(viewer)
}

/// An admin's form post: the session (checked as every form is) and the tenant it acts on.
async fn admin_form(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<(Viewer, String), ConsoleError> {
    let viewer = admin(state, headers).await?;
    check_form(&viewer, headers, &form(body))?;
    let owner = viewer.tenant()?.owner.clone();
    Ok((viewer, owner))
}

/// A credential or secret shown once, right after it was made.
struct ShownOnce<'a> {
    what: &'a str,
    value: &'a str,
}

async fn render_keys(
    state: &AppState,
    viewer: &Viewer,
    notice: Option<&str>,
    shown: Option<ShownOnce<'_>>,
) -> Result<Response, ConsoleError> {
    let caller = viewer.tenant()?;
    let (rows, tenant) =
        tokio::try_join!(keys::list(&state.pool, &caller.owner), tenants::get(&state.pool, &caller.owner))?;
    let rotating = tenant.as_ref().is_some_and(|t| t.previous_signing_secret.is_some());
    let tz = caller.timezone;
    let body = html! {
        @if let Some(shown) = shown {
            div.notice.secret role="status" id="shown-once" {
                p { strong { (shown.what) } " — copy it now; it is not shown again:" }
                p { code { (shown.value) } }
            }
        }
        section aria-labelledby="keys" {
            h2 id="keys" { "Keys" }
            div.scroll {
                table.list {
                    caption.visually-hidden { "The tenant's keys, oldest first" }
                    thead { tr {
                        th scope="col" { "Kind" } th scope="col" { "Starts with" } th scope="col" { "Created" }
                        th scope="col" { "Last used" } th scope="col" { "State" } th scope="col" { "Action" }
                    } }
                    tbody {
                        @for k in &rows {
                            tr data-key=(k.id) {
                                td { (k.kind) } td { code { (k.prefix) "…" } }
                                td { (html::time(Some(k.created_at), tz)) } td { (html::time(k.last_used_at, tz)) }
                                td { @if k.revoked_at.is_some() { (html::badge("revoked")) } @else { (html::badge("active")) } }
                                td {
                                    @if k.revoked_at.is_none() {
                                        (html::action_button(viewer, &format!("/console/keys/{}/revoke", k.id), "Revoke",
                                            Some(REVOKE_WARNING)))
                                    }
                                }
                            }
                        }
                    }
                }
            }
            (html::action_button(viewer, "/console/keys", "Create a read key", None))
        }
        section aria-labelledby="signing" {
            h2 id="signing" { "Signing secret" }
            p { "Deliveries to the third party and alerts are signed with it (Standard Webhooks)." }
            @if rotating {
                p { "A rotation is in progress: deliveries carry both signatures until the previous secret is retired." }
                (html::action_button(viewer, "/console/signing-secret/retire", "Retire the previous secret", Some(RETIRE_WARNING)))
            } @else {
                (html::action_button(viewer, "/console/signing-secret/rotate", "Rotate the signing secret", Some(ROTATE_WARNING)))
            }
        }
    };
    Ok(page_only(html::page(Some(viewer), Nav::Keys, "Keys and signing secret", notice, body)))
}

const REVOKE_WARNING: &str = "Revoke this key? Whoever uses it is refused from now on, and its console sessions end.";
const ROTATE_WARNING: &str =
    "Make a new signing secret? Deliveries carry both signatures until you retire the old one.";
const RETIRE_WARNING: &str =
    "Retire the previous signing secret? Receivers still checking with it will refuse deliveries.";

/// Creates a read key and shows it once.
pub async fn create_key(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    let (viewer, owner) = admin_form(&state, &headers, &body).await?;
    let (id, key) = tenancy::add_key(&state.pool, &owner, KeyKind::Read).await.map_err(ApiError::from)?;
    tracing::info!(%owner, key = %id, "read key created from the console");
    let shown = ShownOnce { what: "The new read key", value: &key };
    render_keys(&state, &viewer, None, Some(shown)).await
}

/// Revokes a key; its sessions end with it.
pub async fn revoke_key(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    let (_, owner) = admin_form(&state, &headers, &body).await?;
    let id = uuid::Uuid::parse_str(&id).map_err(|_| ApiError::NotFound("key"))?;
    if !keys::revoke(&state.pool, &owner, id).await? {
        return Err(ApiError::NotFound("key").into());
    }
    state.keys.clear();
    tracing::info!(%owner, key = %id, "key revoked from the console");
    Ok(Redirect::to("/console/keys?notice=revoked").into_response())
}

/// Adds a new signing secret (shown once); the previous one keeps signing beside it.
pub async fn rotate_secret(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    let (viewer, owner) = admin_form(&state, &headers, &body).await?;
    let secret = crate::credentials::generate_signing_secret();
    if !tenants::rotate_signing_secret(&state.pool, &owner, &state.sealer().seal(&secret)).await? {
        return Err(ApiError::NotFound("tenant").into());
    }
    tracing::info!(%owner, "signing secret rotated from the console; the previous one still signs");
    let shown = ShownOnce { what: "The new signing secret", value: &secret };
    render_keys(&state, &viewer, None, Some(shown)).await
}

/// Retires the previous signing secret: deliveries carry only the new signature.
pub async fn retire_secret(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    let (_, owner) = admin_form(&state, &headers, &body).await?;
    if !tenants::retire_previous_signing_secret(&state.pool, &owner).await? {
        return Err(ApiError::NotFound("previous signing secret").into());
    }
    tracing::info!(%owner, "previous signing secret retired from the console");
    Ok(Redirect::to("/console/keys?notice=retired").into_response())
}

/// The pause switch of one target, for the overview's health table.
pub fn pause_switch(viewer: &Viewer, target: &str, paused: bool) -> Markup {
    let (verb, label) = if paused { ("resume", "Resume") } else { ("pause", "Pause") };
    html::action_button(viewer, &format!("/console/endpoints/{target}/{verb}"), label, None)
}
