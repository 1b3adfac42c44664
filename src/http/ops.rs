//! Liveness and readiness (CONTRACT §7).

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// The process is up and serving HTTP.
async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}))
}

/// Ready when the database answers, every embedded migration is applied and the
/// delivery workers have checked in recently.
async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let expected = crate::store::MIGRATOR
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .count() as i64;
    let applied = tokio::time::timeout(
        Duration::from_secs(2),
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM _sqlx_migrations WHERE success")
            .fetch_one(&state.pool),
    )
    .await;
    let (database, migrations) = match applied {
        Ok(Ok(n)) => ("ok", if n >= expected { "ok" } else { "pending" }),
        Ok(Err(e)) if crate::store::is_unavailable(&e) => ("unreachable", "unknown"),
        Ok(Err(_)) => ("ok", "missing"),
        Err(_) => ("timeout", "unknown"),
    };
    let workers = if state.workers.is_alive() {
        "ok"
    } else {
        "stalled"
    };
    let ready = database == "ok" && migrations == "ok" && workers == "ok";
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({"status": if ready { "ready" } else { "not_ready" },
                    "database": database, "migrations": migrations, "workers": workers})),
    )
}
