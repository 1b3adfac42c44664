//! The HTTP edge: one router per area, merged here with the shared limits.
//!
//! Areas: [`webhooks`] (the two peers), [`admin`] (tenants and keys), [`deliveries`]
//! (the delivery side of `/api/v1`), [`endpoints`] (breakers, pause), [`query`] (tickets, conversations, audit, export),
//! [`reports`], [`contacts`], [`ops`] (health, metrics), [`console`] (the operator's web pages), [`docs`] (the API explorer). [`csv`] writes any list as CSV.
//! Errors leave through [`error::ApiError`] only; [`edge`] is the outermost layer of
//! every route (request ids, the access log, the error shape of the lower layers' refusals).

pub mod admin;
pub mod auth;
pub mod bodies;
pub mod console;
pub mod contacts;
pub mod csv;
pub mod deliveries;
pub mod docs;
pub mod edge;
pub mod endpoints;
pub mod error;
pub mod key_cache;
pub mod openapi;
pub mod ops;
pub mod params;
pub mod query;
pub mod rate_limit;
pub mod reports;
pub mod shapes;
pub mod webhooks;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderMap, StatusCode};
use axum::Router;
use sqlx::PgPool;
use tower_http::timeout::TimeoutLayer;

use crate::clock::Clock;
use crate::config::Config;
use crate::heartbeat::Heartbeat;
use error::ApiError;

/// What every handler may use.
#[derive(Clone)]
pub struct AppState {
    /// The primary's main pool: writes, idempotency, and reads that must see them.
    pub pool: PgPool,
    /// Lists, reports and CSV exports: `BRIDGE_READ_DATABASE_URL`'s pool, or `pool` when unset.
    pub read_pool: PgPool,
    /// The summary and timeseries reports: two connections of their own on `read_pool`'s
    /// servers. Their statements are planned once per connection (the raw-row query costs
    /// about 5 ms to plan), and a pool that hands out any of twenty connections made most
    /// reports pay that again.
    pub report_pool: PgPool,
    /// The servers of `DATABASE_URL` and the one in use (`/readyz`).
    pub database: std::sync::Arc<crate::store::topology::Topology>,
    pub config: Arc<Config>,
    pub clock: Arc<dyn Clock>,
    pub workers: Heartbeat,
    /// Per-credential request budgets.
    pub limiter: rate_limit::RateLimiter,
    /// Recently authenticated credentials (cleared by every key or tenant change).
    pub keys: key_cache::KeyCache,
    /// Client of the 3Dolphins APIs (history, contacts), with its token cache.
    pub dolphins: crate::dolphins::client::DolphinsClient,
    /// Writes the messages of concurrent webhook requests together, and hands what they
    /// enqueue to this process's dispatcher.
    pub group_commit: crate::intake::group_commit::GroupCommit,
}

impl AppState {
    /// Seals and opens peer secrets with `BRIDGE_SECRET_KEY`.
    pub fn sealer(&self) -> crate::secrets::Sealer {
        crate::secrets::Sealer::new(self.config.secret_key)
    }

    /// A tenant's 3Dolphins API password, opened.
    pub fn open_password(&self, stored: Option<&str>) -> Result<Option<String>, ApiError> {
        stored.map(|p| self.sealer().open(p)).transpose().map_err(|e| ApiError::Internal(e.to_string()))
    }
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    let (max_body, request_timeout) = (state.config.max_body, state.config.request_timeout);
    all_routes()
        .into_router()
        .fallback(|| async { ApiError::NotFound("route") })
        .layer(DefaultBodyLimit::max(max_body))
        .route_layer(axum::middleware::from_fn(ops::track))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, request_timeout))
        .layer(axum::middleware::from_fn_with_state(edge::Edge { max_body, request_timeout }, edge::layer))
        .with_state(state)
}

/// Every route with its description: the router and the OpenAPI document both come from here.
fn all_routes() -> openapi::Routes {
    webhooks::routes()
        .merge(admin::routes())
        .merge(deliveries::routes())
        .merge(endpoints::routes())
        .merge(query::routes())
        .merge(reports::routes())
        .merge(contacts::routes())
        .merge(ops::routes())
        .merge(docs::routes())
        .merge(console::routes())
}

/// The OpenAPI 3.1 document of [`router`].
pub fn spec() -> serde_json::Value {
    serde_json::to_value(all_routes().document()).unwrap_or_default()
}

/// Refuses bodies not declared as JSON (third-party and API endpoints; 3Dolphins is exempt).
pub fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(ct) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return Err(ApiError::UnsupportedMediaType);
    };
    let essence = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json")) {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType)
    }
}
