//! Contacts (README *HTTP surface*): the 3Dolphins Contact API document of a contact seen in the
//! tenant's tickets, cached for `BRIDGE_CONTACT_TTL`, served stale when 3Dolphins is down;
//! and the erasure of a contact's data.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method};
use axum::routing::{delete, get};
use axum::Json;
use serde_json::{json, Value};

use super::auth::{self, Access, ApiCaller};
use super::error::ApiError;
use super::openapi::{doc, Auth, Routes};
use super::AppState;
use crate::store::{contacts, tenants};

pub fn routes() -> Routes {
    Routes::default()
        .op(
            Method::GET,
            "/api/v1/contacts/{contact}",
            get(get_contact),
            doc(
                "A contact seen in the tenant's tickets, from the 3Dolphins Contact API (cached)",
                Auth::Read,
                "Contact",
            ),
        )
        .op(
            Method::DELETE,
            "/api/v1/contacts/{contact}/data",
            delete(erase),
            doc("Erase a contact's message texts, media and payloads (data protection)", Auth::Write, "Erased"),
        )
}

fn answer(
    document: Value,
    fetched_at: chrono::DateTime<chrono::Utc>,
    now: chrono::DateTime<chrono::Utc>,
    stale: bool,
) -> Value {
    let age = (now - fetched_at).num_seconds().max(0);
    json!({"data": document, "fetchedAt": fetched_at, "stale": stale, "ageSeconds": age})
}

async fn get_contact(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(contact): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let caller = auth::api(&state, &headers, Access::Read).await?;
    Ok(Json(contact_document(&state, &caller, &contact).await?))
}

/// A contact from the cache or the 3Dolphins Contact API: `{"data","fetchedAt","stale","ageSeconds"}`.
pub async fn contact_document(state: &AppState, caller: &ApiCaller, contact: &str) -> Result<Value, ApiError> {
    // Another tenant's contact is not found before anything else is said about it.
    if !contacts::seen(&state.pool, &caller.owner, contact).await? {
        return Err(ApiError::NotFound("contact"));
    }
    let row = tenants::get(&state.pool, &caller.owner).await?.ok_or(ApiError::NotFound("tenant"))?;
    let account =
        crate::dolphins::account(&caller.settings, state.open_password(row.dolphins_password.as_deref())?.as_deref())
            .ok_or(ApiError::NotConfigured)?;
    let now = state.clock.now();
    let cached = contacts::get(&state.pool, &caller.owner, contact).await?;
    let ttl = chrono::Duration::from_std(state.config.contact_ttl).unwrap_or(chrono::Duration::minutes(15));
    if let Some(c) = &cached {
        if now - c.fetched_at < ttl {
            return Ok(answer(c.document.clone(), c.fetched_at, now, false));
        }
    }
    match state.dolphins.contact(&account, contact, now).await {
        Ok(Some(document)) => {
            contacts::put(&state.pool, &caller.owner, contact, &document, now).await?;
            Ok(answer(document, now, now, false))
        }
        Ok(None) => Err(ApiError::NotFound("contact")),
        Err(e) => {
            tracing::warn!(owner = %caller.owner, error = %e, "Contact API unavailable");
            match cached {
                Some(c) => Ok(answer(c.document, c.fetched_at, now, true)),
                None => Err(ApiError::UpstreamUnavailable(e.to_string())),
            }
        }
    }
}

async fn erase(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(contact): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let caller = auth::api(&state, &headers, Access::Write).await?;
    if !contacts::seen(&state.pool, &caller.owner, &contact).await? {
        return Err(ApiError::NotFound("contact"));
    }
    let purged = contacts::purge(&state.pool, &caller.owner, &contact, &caller.actor, state.clock.now()).await?;
    tracing::info!(owner = %caller.owner, purged, actor = %caller.actor, "contact data erased");
    Ok(Json(json!({"contactId": contact, "messagesPurged": purged})))
}
