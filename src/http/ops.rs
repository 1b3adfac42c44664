//! Liveness, readiness and metrics (README *HTTP surface* and *Metrics*).

use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::openapi::{doc, Auth, Routes};
use super::AppState;
use crate::domain::Target;

pub fn routes() -> Routes {
    Routes::default()
        .op(
            Method::GET,
            "/healthz",
            get(healthz),
            doc("healthz", "The process is up", Auth::Public).reply::<HealthOut>(200, "serving HTTP"),
        )
        .op(
            Method::GET,
            "/readyz",
            get(readyz),
            doc("readyz", "Database, migrations and workers are ready", Auth::Public)
                .reply::<ReadyOut>(200, "ready")
                .reply::<ReadyOut>(503, "not ready: the fields say what is missing"),
        )
        .op(
            Method::GET,
            "/metrics",
            get(metrics_text),
            doc("metrics", "Prometheus metrics", Auth::Public).text(200, "text/plain", "Prometheus text format 0.0.4"),
        )
        .op(
            Method::GET,
            "/openapi.json",
            get(openapi),
            doc("openapi", "This document", Auth::Public).reply::<OpenApiDocument>(200, "OpenAPI 3.1"),
        )
}

/// The process is up.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Health)]
pub struct HealthOut {
    pub status: &'static str,
    pub version: &'static str,
}

/// Whether the bridge can do its work, and if not, which part is missing.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Readiness)]
pub struct ReadyOut {
    /// `ready` or `not_ready`.
    pub status: &'static str,
    /// `ok`, `no_primary`, `unreachable` or `timeout`.
    pub database: &'static str,
    /// `ok`, `pending`, `missing` or `unknown`.
    pub migrations: &'static str,
    /// `ok` or `stalled`.
    pub workers: &'static str,
}

/// An OpenAPI 3.1 document.
#[derive(Debug, ToSchema)]
#[schema(value_type = Object, as = OpenApi)]
pub struct OpenApiDocument(#[allow(dead_code)] Value);

/// The process is up and serving HTTP.
async fn healthz() -> Json<HealthOut> {
    Json(HealthOut { status: "ok", version: env!("CARGO_PKG_VERSION") })
}

fn not_ready(workers: &'static str) -> ReadyOut {
    ReadyOut { status: "not_ready", database: "no_primary", migrations: "unknown", workers }
}

/// What `serve` answers while it waits for a database host (see `startup::WaitingServer`).
pub fn waiting_router() -> axum::Router {
    let waiting = || async { (StatusCode::SERVICE_UNAVAILABLE, Json(not_ready("stalled"))) };
    axum::Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(waiting))
        .fallback(|| async { super::error::ApiError::Unavailable })
}

/// Ready when a database host fits `DATABASE_URL` and answers, every embedded migration is
/// applied and the delivery workers have checked in recently.
async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<ReadyOut>) {
    if state.database.current().is_none() {
        let workers = if state.workers.is_alive() { "ok" } else { "stalled" };
        return (StatusCode::SERVICE_UNAVAILABLE, Json(not_ready(workers)));
    }
    let expected = crate::store::schema::migrations_expected();
    let applied =
        tokio::time::timeout(Duration::from_secs(2), crate::store::schema::migrations_applied(&state.pool)).await;
    let (database, migrations) = match applied {
        Ok(Ok(n)) => ("ok", if n >= expected { "ok" } else { "pending" }),
        Ok(Err(e)) if crate::store::is_unavailable(&e) => ("unreachable", "unknown"),
        Ok(Err(_)) => ("ok", "missing"),
        Err(_) => ("timeout", "unknown"),
    };
    let workers = if state.workers.is_alive() { "ok" } else { "stalled" };
    let ready = database == "ok" && migrations == "ok" && workers == "ok";
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(ReadyOut { status: if ready { "ready" } else { "not_ready" }, database, migrations, workers }))
}

/// Prometheus text: counters and histograms from the recorder, plus queue depth, oldest
/// pending age and breaker states read from the database at scrape time (they are shared
/// by every process, so no single process could count them). When that read fails those
/// gauges are left out of the reply: absent, never frozen at their last value.
async fn metrics_text(State(state): State<AppState>) -> Response {
    use crate::telemetry::names;
    let read = crate::store::endpoints::global_overview(&state.pool).await;
    let read_ok = read.is_ok();
    match read {
        Ok(rows) => {
            let now = state.clock.now();
            for target in Target::ALL {
                let row = rows.iter().find(|r| r.target == target.as_str());
                let labels = [("target", target.as_str())];
                metrics::gauge!(names::QUEUE_DEPTH, &labels).set(row.map_or(0.0, |r| r.queue_depth as f64));
                let age = row
                    .and_then(|r| r.oldest_pending_at)
                    .map_or(0.0, |t| (now - t).num_milliseconds().max(0) as f64 / 1000.0);
                metrics::gauge!(names::OLDEST_PENDING, &labels).set(age);
                for (state_name, count) in [
                    ("open", row.map_or(0, |r| r.open_breakers)),
                    ("half_open", row.map_or(0, |r| r.half_open_breakers)),
                ] {
                    metrics::gauge!(names::BREAKERS, "target" => target.as_str(), "state" => state_name)
                        .set(count as f64);
                }
                metrics::gauge!(names::PAUSED, &labels).set(row.map_or(0.0, |r| r.paused as f64));
            }
        }
        Err(e) => tracing::warn!(error = %e, "metrics: could not read the delivery queue"),
    }
    let mut body = crate::telemetry::metrics().render();
    if !read_ok {
        let from_database = [names::QUEUE_DEPTH, names::OLDEST_PENDING, names::BREAKERS, names::PAUSED];
        let fresh = |line: &&str| {
            let name = line.trim_start_matches("# TYPE ").trim_start_matches("# HELP ");
            !from_database.iter().any(|g| name.starts_with(g) && name[g.len()..].starts_with([' ', '{']))
        };
        body = body.lines().filter(fresh).map(|l| format!("{l}\n")).collect();
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// Counts every request by its route template (never the raw path: ticket numbers and
/// ids would make unbounded label sets) and status.
pub async fn track(request: Request, next: Next) -> Response {
    let route =
        request.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = request.method().to_string();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(crate::telemetry::names::HTTP_REQUESTS, "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!(crate::telemetry::names::HTTP_DURATION, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// The document, built on its first request: it is a function of the code alone, and
/// building it allocates a few MiB that a bridge nobody asks for it should not hold.
async fn openapi() -> Response {
    static DOCUMENT: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| serde_json::to_string(&super::spec()).unwrap_or_default());
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT.as_str()).into_response()
}
