//! Signing in and out, and the admin's tenant picker.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};

use super::html::{self, Nav};
use super::session::{self, Role, Viewer};
use super::{check_form, form, page_only, ConsoleError};
use crate::http::AppState;
use crate::store::tenants;

fn sign_in_page(error: Option<&str>) -> Markup {
    let body = html! {
        p { "Sign in with one of your tenant's keys: a " strong { "read key" } " shows everything; the "
            strong { "third-party key" } " can also retry, cancel and replay deliveries. The bridge's admin token
            shows every tenant." }
        @if let Some(error) = error {
            p.error role="alert" id="sign-in-error" { (error) }
        }
        form.card method="post" action="/console/sign-in" {
            label for="key" { "Key or admin token" }
            input id="key" name="key" type="password" autocomplete="current-password" required
                aria-describedby=[error.map(|_| "sign-in-error")];
            button type="submit" { "Sign in" }
        }
        p.muted { "The key is checked once and exchanged for a session cookie that lasts "
            (session::LIFETIME.num_hours()) " hours; it is not stored in the browser." }
    };
    html::page(None, Nav::None, "Sign in", None, body)
}

pub async fn show(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ConsoleError> {
    // Already signed in: straight to the overview.
    if Viewer::from_request(&state, &headers).await.is_ok() {
        return Ok(Redirect::to("/console/overview").into_response());
    }
    Ok(page_only(sign_in_page(None)))
}

pub async fn submit(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, ConsoleError> {
    if !session::same_origin(&headers) {
        return Err(ConsoleError::Forbidden("This form was posted from another site.".into()));
    }
    let fields = form(&body);
    let presented = fields.get("key").map(String::as_str).unwrap_or("");
    if presented.trim().is_empty() {
        return Ok((StatusCode::BAD_REQUEST, page_only(sign_in_page(Some("Enter a key.")))).into_response());
    }
    match session::sign_in(&state, presented).await? {
        Ok(claims) => {
            let cookie = session::cookie(&state, &claims, &headers);
            tracing::info!("console sign-in");
            Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/console/overview")).into_response())
        }
        Err(reason) => {
            tracing::info!("console sign-in refused");
            Ok((StatusCode::UNAUTHORIZED, page_only(sign_in_page(Some(reason)))).into_response())
        }
    }
}

pub async fn sign_out(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    let viewer = Viewer::from_request(&state, &headers).await?;
    check_form(&viewer, &headers, &form(&body))?;
    Ok(([(header::SET_COOKIE, session::cleared_cookie())], Redirect::to("/console/sign-in")).into_response())
}

fn admin_only(viewer: &Viewer) -> Result<(), ConsoleError> {
    if viewer.role != Role::Admin {
        return Err(ConsoleError::Forbidden("Only the admin token can switch tenants.".into()));
    }
    Ok(())
}

pub async fn tenants(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ConsoleError> {
    let viewer = Viewer::from_request(&state, &headers).await?;
    admin_only(&viewer)?;
    let rows = tenants::list(&state.pool).await?;
    let live: Vec<_> = rows.iter().filter(|t| t.deleted_at.is_none()).collect();
    let body = html! {
        @if live.is_empty() {
            p { "There is no tenant yet: create one with " code { "POST /admin/v1/tenants" } " or "
                code { "dolphin-bridge tenant add" } "." }
        } @else {
            form.card method="post" action="/console/tenants" {
                (html::csrf_field(&viewer))
                label for="owner" { "Tenant" }
                select id="owner" name="owner" {
                    @for t in &live {
                        option value=(t.owner) selected[viewer.owner() == Some(t.owner.as_str())] {
                            (t.name) " (" (t.owner) ")"
                        }
                    }
                }
                button type="submit" { "Show this tenant" }
            }
        }
    };
    Ok(page_only(html::page(Some(&viewer), Nav::None, "Choose a tenant", None, body)))
}

pub async fn pick_tenant(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    let viewer = Viewer::from_request(&state, &headers).await?;
    admin_only(&viewer)?;
    let fields = form(&body);
    check_form(&viewer, &headers, &fields)?;
    let owner = fields.get("owner").map(String::as_str).unwrap_or("");
    let exists = tenants::get(&state.pool, owner).await?.is_some_and(|t| t.deleted_at.is_none());
    if !exists {
        return Err(ConsoleError::Api(crate::http::error::ApiError::NotFound("tenant")));
    }
    let cookie = viewer.switched_to(&state, owner, &headers);
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/console/overview?notice=tenant")).into_response())
}
