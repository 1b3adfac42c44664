//! The operator console at `/console`: server-rendered pages over the same store and the
//! same rules as `/api/v1` (each page calls the API's own functions for what it shows, and
//! the same store actions for what it changes). It works without JavaScript; the little
//! script only asks for confirmations and refreshes the overview.
//!
//! Pages: [`sign_in`] (sign-in, sign-out, tenant picker), [`overview`], [`tickets`] (list,
//! CSV, one ticket, its history and contact), [`deliveries`] (failed and dead deliveries,
//! retry, cancel, replay). [`session`] holds the cookie and CSRF rules, [`mod@html`] the frame.

pub mod deliveries;
pub mod html;
pub mod operations;
pub mod overview;
pub mod replay;
pub mod session;
pub mod sign_in;
pub mod tickets;

use axum::http::Method;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post, MethodRouter};
use axum::Router;
use maud::{html, Markup};

use super::error::ApiError;
use super::openapi::{doc, Auth, Routes};
use super::AppState;
use html::Nav;

/// The console's routes. Its two ways in are in the OpenAPI document (`/console` and the
/// sign-in page, `text/html`); the pages behind them are for people, not API operations,
/// so they are served beside the document ([`Routes::pages`]).
pub fn routes() -> Routes {
    let protected = |page: MethodRouter<AppState>| page.layer(axum::middleware::map_response(protect));
    Routes::default()
        .op(
            Method::GET,
            "/console",
            protected(get(|| async { Redirect::to("/console/overview") })),
            doc("console", "The operator console (HTML pages; sign in with a key)", Auth::Public)
                .redirect(303, "to the overview, which sends a visitor who is not signed in to the sign-in page"),
        )
        .op(
            Method::GET,
            "/console/sign-in",
            protected(get(sign_in::show)),
            doc("consoleSignIn", "The console's sign-in page", Auth::Public).text(200, "text/html", "the sign-in form"),
        )
        .op(
            Method::POST,
            "/console/sign-in",
            protected(post(sign_in::submit)),
            doc("consoleSignInSubmit", "Sign in with a key", Auth::Public)
                .form::<crate::http::bodies::SignInForm>()
                .redirect(
                    303,
                    "signed in (a session cookie): to the overview, or to the tenant picker for the admin token",
                )
                .text(400, "text/html", "the form again: no key entered")
                .text(401, "text/html", "the form again, saying why the key was refused")
                .text(403, "text/html", "posted from another site"),
        )
        .pages(pages())
}

fn pages() -> Router<AppState> {
    Router::new()
        .route("/console/", get(|| async { Redirect::to("/console/overview") }))
        .route("/console/assets/console.css", get(stylesheet))
        .route("/console/assets/console.js", get(script))
        .route("/console/sign-out", post(sign_in::sign_out))
        .route("/console/tenants", get(sign_in::tenants).post(sign_in::pick_tenant))
        .route("/console/overview", get(overview::show))
        .route("/console/tickets", get(tickets::list))
        .route("/console/tickets.csv", get(tickets::csv))
        .route("/console/tickets/{ticket}", get(tickets::show))
        .route("/console/tickets/{ticket}/history", post(tickets::fetch_history))
        .route("/console/contacts/{contact}", get(tickets::contact))
        .route("/console/deliveries", get(deliveries::list))
        .route("/console/deliveries.csv", get(deliveries::csv))
        .route("/console/deliveries/replay", post(replay::replay))
        .route("/console/deliveries/{id}/retry", post(deliveries::retry))
        .route("/console/deliveries/{id}/cancel", post(deliveries::cancel))
        .route("/console/endpoints/{target}/pause", post(operations::pause))
        .route("/console/endpoints/{target}/resume", post(operations::resume))
        .route("/console/keys", get(operations::keys_page).post(operations::create_key))
        .route("/console/keys/{id}/revoke", post(operations::revoke_key))
        .route("/console/signing-secret/rotate", post(operations::rotate_secret))
        .route("/console/signing-secret/retire", post(operations::retire_secret))
        .layer(axum::middleware::map_response(protect))
}

/// Headers every console response carries: nothing may frame it, load from elsewhere, or
/// keep a copy of a page that shows customer data.
async fn protect(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; connect-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

async fn stylesheet() -> Response {
    asset("text/css; charset=utf-8", include_str!("assets/console.css"))
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", include_str!("assets/console.js"))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "public, max-age=3600")], body).into_response()
}

/// Why a console request did not get its page.
#[derive(Debug)]
pub enum ConsoleError {
    /// No valid session: to the sign-in page.
    SignIn,
    /// An admin who has not picked a tenant: to the picker.
    PickTenant,
    /// Not allowed (read-only session, bad CSRF token, foreign origin).
    Forbidden(String),
    /// What the API would have answered, shown as a page.
    Api(ApiError),
}

impl From<ApiError> for ConsoleError {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::Unauthenticated => ConsoleError::SignIn,
            other => ConsoleError::Api(other),
        }
    }
}

impl From<sqlx::Error> for ConsoleError {
    fn from(e: sqlx::Error) -> Self {
        ConsoleError::Api(e.into())
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            ConsoleError::SignIn => return Redirect::to("/console/sign-in").into_response(),
            ConsoleError::PickTenant => return Redirect::to("/console/tenants").into_response(),
            ConsoleError::Forbidden(message) => (StatusCode::FORBIDDEN, message),
            ConsoleError::Api(e) => {
                if let ApiError::Internal(cause) = &e {
                    tracing::error!(%cause, "console request failed");
                }
                (e.status(), e.to_string())
            }
        };
        let body = html! {
            p.error role="alert" { (message) }
            p { a href="/console/overview" { "Back to the overview" } }
        };
        let title = status.canonical_reason().unwrap_or("Error");
        (status, page_only(html::page(None, Nav::None, title, None, body))).into_response()
    }
}

/// An HTML response.
pub fn page_only(markup: Markup) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], markup.into_string()).into_response()
}

/// The text shown after an action, by the code the action's redirect carries (codes, not
/// text, so a link cannot make the console say something it did not).
pub fn notice(code: Option<&str>, count: Option<&str>) -> Option<String> {
    let n = count.and_then(|c| c.parse::<u64>().ok()).unwrap_or(0);
    Some(match code? {
        "retried" => "The delivery is queued again and will be sent in a moment.".into(),
        "cancelled" => "The delivery is cancelled; later deliveries of its ticket can go ahead.".into(),
        "replayed" => format!("{n} deliveries are queued again."),
        "history" => format!("3Dolphins history merged: {n} new messages."),
        "tenant" => "Tenant switched.".into(),
        "paused" => "The target is paused: its deliveries wait, using none of their retry schedule.".into(),
        "resumed" => "The target is resumed: its waiting deliveries go out now.".into(),
        "revoked" => "The key is revoked; its sessions have ended.".into(),
        "retired" => "The previous signing secret is retired; deliveries carry the new signature only.".into(),
        _ => return None,
    })
}

/// Reads an `application/x-www-form-urlencoded` body.
pub fn form(body: &[u8]) -> std::collections::HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

/// Refuses a form posted from another site, then checks the session's CSRF token.
pub fn check_form(
    viewer: &session::Viewer,
    headers: &HeaderMap,
    form: &std::collections::HashMap<String, String>,
) -> Result<(), ConsoleError> {
    if !session::same_origin(headers) {
        return Err(ConsoleError::Forbidden("This form was posted from another site.".into()));
    }
    viewer.check_csrf(form.get("csrf").map(String::as_str))
}
