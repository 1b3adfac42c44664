//! The peer endpoints of `/api/v1` (README *HTTP surface*): each target's breaker, pause and
//! queue, and the operator's maintenance switch.

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::auth::{self, Access, ApiCaller};
use super::csv;
use super::deliveries::target_names;
use super::error::ApiError;
use super::openapi::{doc, Auth, Routes};
use super::params::Params;
use super::shapes::page_type;
use super::AppState;
use crate::domain::Target;
use crate::store::endpoints;

pub fn routes() -> Routes {
    Routes::default()
        .op(
            Method::GET,
            "/api/v1/endpoints",
            get(list_endpoints),
            doc("listEndpoints", "Each target: breaker state, pause, queue depth", Auth::Read)
                .reply::<EndpointPage>(200, "every configured target, and any that deliveries still wait for")
                .csv(),
        )
        .op(
            Method::POST,
            "/api/v1/endpoints/{target}/pause",
            post(pause),
            doc("pauseEndpoint", "Pause a target", Auth::Write).reply::<Paused>(200, "paused"),
        )
        .op(
            Method::POST,
            "/api/v1/endpoints/{target}/resume",
            post(resume),
            doc("resumeEndpoint", "Resume a target", Auth::Write).reply::<Paused>(200, "resumed"),
        )
}

/// A peer endpoint: its breaker, pause and queue.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Endpoint)]
pub struct EndpointOut {
    #[schema(schema_with = super::shapes::target)]
    pub target: &'static str,
    pub url: Option<String>,
    #[schema(schema_with = breaker_states)]
    pub state: String,
    pub paused: bool,
    pub consecutive_failures: i32,
    /// When an open breaker lets its probe through.
    pub retry_at: Option<DateTime<Utc>>,
    /// Deliveries waiting for it.
    pub queue_depth: i64,
    pub oldest_pending_at: Option<DateTime<Utc>>,
}

fn breaker_states() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(["closed", "open", "half_open"]))
        .build()
}

page_type!(
    /// Every endpoint of the tenant.
    EndpointPage of EndpointOut
);

/// Whether a target is paused now.
#[derive(Debug, Serialize, ToSchema)]
pub struct Paused {
    #[schema(schema_with = super::shapes::target)]
    pub target: &'static str,
    pub paused: bool,
}

async fn list_endpoints(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let caller = auth::api(&state, &headers, Access::Read).await?;
    let rows = endpoint_states(&state, &caller).await?;
    if let Some(csv) = csv::wanted(&Params::parse(query.as_deref()), &headers)? {
        return Ok(csv.all("endpoints.csv", &rows));
    }
    Ok(Json(EndpointPage::all(rows)).into_response())
}

/// Each configured target (or one deliveries still wait for): breaker, pause, queue.
pub async fn endpoint_states(state: &AppState, caller: &ApiCaller) -> Result<Vec<EndpointOut>, ApiError> {
    let rows = endpoints::overview(&state.pool, &caller.owner).await?;
    let data: Vec<EndpointOut> = Target::ALL
        .iter()
        .filter_map(|&target| {
            let row = rows.iter().find(|r| r.target == target.as_str());
            let url = caller.settings.url_for(target);
            // Unconfigured targets appear only if deliveries still wait for them.
            if url.is_none() && row.is_none_or(|r| r.queue_depth == 0) {
                return None;
            }
            Some(EndpointOut {
                target: target.as_str(),
                url: url.map(str::to_string),
                state: row.map_or("closed", |r| r.state.as_str()).to_string(),
                paused: row.is_some_and(|r| r.paused),
                consecutive_failures: row.map_or(0, |r| r.consecutive_failures),
                retry_at: row.and_then(|r| r.retry_at),
                queue_depth: row.map_or(0, |r| r.queue_depth),
                oldest_pending_at: row.and_then(|r| r.oldest_pending_at),
            })
        })
        .collect();
    Ok(data)
}

async fn pause(state: State<AppState>, headers: HeaderMap, target: Path<String>) -> Result<Json<Paused>, ApiError> {
    set_paused(state, headers, target, true).await
}

async fn resume(state: State<AppState>, headers: HeaderMap, target: Path<String>) -> Result<Json<Paused>, ApiError> {
    set_paused(state, headers, target, false).await
}

async fn set_paused(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(target): Path<String>,
    paused: bool,
) -> Result<Json<Paused>, ApiError> {
    let caller = auth::api(&state, &headers, Access::Write).await?;
    let target = Target::parse(&target)
        .ok_or_else(|| ApiError::parameter("target", format!("must be one of {}", target_names().join(", "))))?;
    if caller.settings.url_for(target).is_none() {
        return Err(ApiError::NotFound("endpoint"));
    }
    let changed = endpoints::set_paused(&state.pool, &caller.owner, target, paused, state.clock.now()).await?;
    tracing::info!(owner = %caller.owner, %target, paused, changed, actor = %caller.actor, "endpoint pause switched");
    Ok(Json(Paused { target: target.as_str(), paused }))
}
