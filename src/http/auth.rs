//! Who is calling: the tenant credential (bearer header or `?token=`) or the admin token.
//! The tenant is always taken from the credential, never from a parameter.

use std::sync::Arc;

use axum::http::{header, HeaderMap};
use chrono_tz::Tz;
use sha2::Digest;

use super::{error::ApiError, AppState};
use crate::credentials::{constant_time_eq, hash_key};
use crate::domain::tenant::TenantSettings;
use crate::domain::KeyKind;
use crate::store::keys;

/// An authenticated tenant credential.
#[derive(Debug, Clone)]
pub struct Caller {
    pub owner: String,
    pub key_id: uuid::Uuid,
    pub kind: KeyKind,
    pub timezone: Tz,
    pub settings: Arc<TenantSettings>,
    /// Authenticated by a Standard Webhooks signature instead of a key.
    pub via_signature: bool,
}

/// The bearer token of the `Authorization` header, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

/// Authenticates a tenant credential and checks it is one of `allowed` kinds.
/// `query_token` is the `?token=` value, accepted where 3Dolphins calls (it cannot set headers).
pub async fn tenant(
    state: &AppState,
    headers: &HeaderMap,
    query_token: Option<&str>,
    allowed: &[KeyKind],
) -> Result<Caller, ApiError> {
    let presented = bearer(headers).or(query_token.filter(|t| !t.is_empty())).ok_or(ApiError::Unauthenticated)?;
    let hash = hash_key(presented);
    let (caller, last_used_at) = match state.keys.get(&hash) {
        Some(hit) => hit,
        None => {
            let (caller, last_used_at) = load(state, &hash).await?;
            state.keys.put(hash, caller.clone(), last_used_at);
            (caller, last_used_at)
        }
    };
    if !allowed.contains(&caller.kind) {
        let wanted: Vec<&str> = allowed.iter().map(|k| k.as_str()).collect();
        return Err(ApiError::Forbidden(format!(
            "a {} key cannot call this endpoint (needs: {})",
            caller.kind,
            wanted.join(" or ")
        )));
    }
    if caller.kind != KeyKind::Inbound {
        state.limiter.take(caller.key_id).map_err(ApiError::RateLimited)?;
    }
    tenant_budget(state, &caller.owner, &caller.settings)?;
    let now = state.clock.now();
    if last_used_at.is_none_or(|t| now - t > chrono::Duration::minutes(1)) {
        state.keys.mark_used(&hash, now);
        let (pool, owner, id) = (state.pool.clone(), caller.owner.clone(), caller.key_id);
        tokio::spawn(async move {
            if let Err(e) = keys::touch(&pool, &owner, id).await {
                tracing::debug!(error = %e, "could not record key use");
            }
        });
    }
    Ok(caller)
}

/// Reads a credential from the database; only a valid, live key yields a caller.
async fn load(state: &AppState, hash: &[u8; 32]) -> Result<(Caller, Option<chrono::DateTime<chrono::Utc>>), ApiError> {
    let row = keys::find_by_hash(&state.pool, hash).await?.ok_or(ApiError::Unauthenticated)?;
    // The index lookup found the row by hash; the constant-time check keeps the final
    // decision free of early-exit comparisons all the same.
    if !constant_time_eq(&row.key_hash, hash) {
        return Err(ApiError::Unauthenticated);
    }
    let last_used_at = row.last_used_at;
    Ok((live_caller(row)?, last_used_at))
}

/// The caller a stored credential stands for, if the key and its tenant are still live.
pub fn live_caller(row: keys::CredentialRow) -> Result<Caller, ApiError> {
    if row.revoked || row.tenant_deleted {
        return Err(ApiError::Unauthenticated);
    }
    let kind = KeyKind::parse(&row.kind).ok_or(ApiError::Unauthenticated)?;
    let settings: TenantSettings = serde_json::from_value(row.settings)
        .map_err(|e| ApiError::Internal(format!("stored settings of {}: {e}", row.owner)))?;
    let timezone = row.timezone.parse::<Tz>().unwrap_or(chrono_tz::Asia::Jakarta);
    Ok(Caller {
        owner: row.owner,
        key_id: row.key_id,
        kind,
        timezone,
        settings: Arc::new(settings),
        via_signature: false,
    })
}

/// Authenticates a third-party call by its Standard Webhooks signature (for tenants with
/// `thirdParty.inboundAuth: "signature"`): the body names the tenant, and only a signature
/// made with that tenant's signing secret (or the previous one during a rotation), within
/// the 5-minute tolerance, proves it. Replays are caught by the `webhook-id`, which such
/// requests must use as their idempotency key.
pub async fn signed(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<Caller, ApiError> {
    let owner = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("owner").and_then(|o| o.as_str()).map(str::to_string))
        .ok_or(ApiError::Unauthenticated)?;
    if !headers.contains_key("webhook-id") {
        return Err(ApiError::Unauthenticated);
    }
    let row = crate::store::tenants::get(&state.pool, &owner)
        .await?
        .filter(|t| t.deleted_at.is_none())
        .ok_or(ApiError::Unauthenticated)?;
    let settings: TenantSettings = serde_json::from_value(row.settings).map_err(|_| ApiError::Unauthenticated)?;
    if settings.third_party.inbound_auth != "signature" {
        return Err(ApiError::Unauthenticated);
    }
    let sealer = state.sealer();
    let secrets = std::iter::once(Some(row.signing_secret.as_str()))
        .chain(std::iter::once(row.previous_signing_secret.as_deref()))
        .flatten()
        .filter_map(|stored| sealer.open(stored).ok());
    let mut verified = false;
    for secret in secrets {
        verified |= crate::signature::verify(&secret, body, headers).is_ok();
    }
    if !verified {
        return Err(ApiError::Unauthenticated);
    }
    // One rate-limit budget per signing tenant, as a key would have.
    let key_id = bucket_id(&format!("signature:{owner}"));
    state.limiter.take(key_id).map_err(ApiError::RateLimited)?;
    tenant_budget(state, &row.owner, &settings)?;
    Ok(Caller {
        owner: row.owner,
        key_id,
        kind: KeyKind::ThirdParty,
        timezone: row.timezone.parse().unwrap_or(chrono_tz::Asia::Jakarta),
        settings: Arc::new(settings),
        via_signature: true,
    })
}

/// A stable bucket id for a name (a tenant, a signing tenant).
fn bucket_id(name: &str) -> uuid::Uuid {
    let digest = sha2::Sha256::digest(name.as_bytes());
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    uuid::Uuid::from_bytes(id)
}

/// Takes from the tenant's own budget when it set one (`rateLimit`).
fn tenant_budget(state: &AppState, owner: &str, settings: &TenantSettings) -> Result<(), ApiError> {
    let limit = settings.rate_limit.as_deref().and_then(|r| crate::config::parse_rate_limit(r).ok().flatten());
    match limit {
        Some(limit) => {
            state.limiter.take_under(bucket_id(&format!("tenant:{owner}")), limit).map_err(ApiError::RateLimited)
        }
        None => Ok(()),
    }
}

/// Checks the admin token. Hashing both sides first makes the comparison constant-time
/// even when the lengths differ.
pub fn admin(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = state.config.admin_token.as_deref() else {
        return Err(ApiError::AdminDisabled);
    };
    let presented = bearer(headers).ok_or(ApiError::Unauthenticated)?;
    if constant_time_eq(&hash_key(presented), &hash_key(expected)) {
        Ok(())
    } else {
        Err(ApiError::Unauthenticated)
    }
}

/// What an `/api/v1` caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read key, third-party key or admin.
    Read,
    /// Retry, cancel, replay, pause, resume: third-party key or admin.
    Write,
}

/// An authenticated `/api/v1` caller: a tenant key, or the admin token naming a tenant
/// with `X-Bridge-Owner`.
#[derive(Debug, Clone)]
pub struct ApiCaller {
    pub owner: String,
    pub timezone: Tz,
    pub settings: Arc<TenantSettings>,
    /// Who acts, for the audit: `key:<id>` or `admin`.
    pub actor: String,
}

/// The admin acting on one tenant's resources.
pub async fn admin_acting_for(state: &AppState, owner: &str) -> Result<ApiCaller, ApiError> {
    let row = crate::store::tenants::get(&state.pool, owner)
        .await?
        .filter(|t| t.deleted_at.is_none())
        .ok_or(ApiError::NotFound("tenant"))?;
    let settings: TenantSettings = serde_json::from_value(row.settings)
        .map_err(|e| ApiError::Internal(format!("stored settings of {owner}: {e}")))?;
    Ok(ApiCaller {
        owner: row.owner,
        timezone: row.timezone.parse().unwrap_or(chrono_tz::Asia::Jakarta),
        settings: Arc::new(settings),
        actor: "admin".into(),
    })
}

pub async fn api(state: &AppState, headers: &HeaderMap, access: Access) -> Result<ApiCaller, ApiError> {
    let presented = bearer(headers).ok_or(ApiError::Unauthenticated)?;
    if let Some(expected) = state.config.admin_token.as_deref() {
        if constant_time_eq(&hash_key(presented), &hash_key(expected)) {
            let owner = headers
                .get("x-bridge-owner")
                .and_then(|v| v.to_str().ok())
                .filter(|o| !o.is_empty())
                .ok_or_else(|| ApiError::Forbidden("the admin token needs an X-Bridge-Owner header here".into()))?;
            return admin_acting_for(state, owner).await;
        }
    }
    let allowed: &[KeyKind] = match access {
        Access::Read => &[KeyKind::Read, KeyKind::ThirdParty],
        Access::Write => &[KeyKind::ThirdParty],
    };
    let caller = tenant(state, headers, None, allowed).await?;
    Ok(ApiCaller {
        owner: caller.owner,
        timezone: caller.timezone,
        settings: caller.settings,
        actor: format!("key:{}", caller.key_id),
    })
}
