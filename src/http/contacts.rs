//! Contacts (README *HTTP surface*): the 3Dolphins Contact API document of a contact seen in the
//! tenant's tickets, cached for `BRIDGE_CONTACT_TTL`, served stale when 3Dolphins is down;
//! and the erasure of a contact's data.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method};
use axum::routing::{delete, get};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::auth::{self, Access, ApiCaller};
use super::error::ApiError;
use super::openapi::{doc, Auth, Routes};
use super::AppState;
use crate::store::{contacts, tenants};

pub fn routes() -> Routes {
    Routes::default()
        .op(
            Method::GET,
            "/api/v1/contacts/{contactId}",
            get(get_contact),
            doc(
                "getContact",
                "A contact seen in the tenant's tickets, from the 3Dolphins Contact API (cached)",
                Auth::Read,
            )
            .reply::<ContactOut>(200, "the contact; `stale` when 3Dolphins is down and the cache answered")
            .errors(&[409, 502]),
        )
        .op(
            Method::DELETE,
            "/api/v1/contacts/{contactId}/data",
            delete(erase),
            doc("eraseContact", "Erase a contact's message texts, media and payloads (data protection)", Auth::Write)
                .reply::<Erased>(200, "erased; counts and durations stay"),
        )
}

/// A contact as the 3Dolphins Contact API describes it, with the age of that answer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Contact)]
pub struct ContactOut {
    /// The Contact API's `data`, as 3Dolphins sent it.
    #[schema(value_type = Object)]
    pub data: Value,
    pub fetched_at: DateTime<Utc>,
    /// Served from the cache because 3Dolphins could not be reached.
    pub stale: bool,
    pub age_seconds: i64,
}

impl ContactOut {
    fn new(data: Value, fetched_at: DateTime<Utc>, now: DateTime<Utc>, stale: bool) -> Self {
        ContactOut { data, fetched_at, stale, age_seconds: (now - fetched_at).num_seconds().max(0) }
    }
}

/// What an erasure removed.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Erased {
    pub contact_id: String,
    pub messages_purged: u64,
}

async fn get_contact(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(contact): Path<String>,
) -> Result<Json<ContactOut>, ApiError> {
    let caller = auth::api(&state, &headers, Access::Read).await?;
    Ok(Json(contact_document(&state, &caller, &contact).await?))
}

/// A contact from the cache or the 3Dolphins Contact API: `{"data","fetchedAt","stale","ageSeconds"}`.
pub async fn contact_document(state: &AppState, caller: &ApiCaller, contact: &str) -> Result<ContactOut, ApiError> {
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
            return Ok(ContactOut::new(c.document.clone(), c.fetched_at, now, false));
        }
    }
    match state.dolphins.contact(&account, contact, now).await {
        Ok(Some(document)) => {
            contacts::put(&state.pool, &caller.owner, contact, &document, now).await?;
            Ok(ContactOut::new(document, now, now, false))
        }
        Ok(None) => Err(ApiError::NotFound("contact")),
        Err(e) => {
            tracing::warn!(owner = %caller.owner, error = %e, "Contact API unavailable");
            match cached {
                Some(c) => Ok(ContactOut::new(c.document, c.fetched_at, now, true)),
                None => Err(ApiError::UpstreamUnavailable(e.to_string())),
            }
        }
    }
}

async fn erase(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(contact): Path<String>,
) -> Result<Json<Erased>, ApiError> {
    let caller = auth::api(&state, &headers, Access::Write).await?;
    if !contacts::seen(&state.pool, &caller.owner, &contact).await? {
        return Err(ApiError::NotFound("contact"));
    }
    let purged = contacts::purge(&state.pool, &caller.owner, &contact, &caller.actor, state.clock.now()).await?;
    tracing::info!(owner = %caller.owner, purged, actor = %caller.actor, "contact data erased");
    Ok(Json(Erased { contact_id: contact, messages_purged: purged }))
}
