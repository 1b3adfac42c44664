//! The admin API (README *HTTP surface*, admin and credentials): tenants and their keys, behind `BRIDGE_ADMIN_TOKEN`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post};
use axum::Json;
use serde_json::{json, Value};
use uuid::Uuid;

use super::auth;
use super::error::ApiError;
use super::openapi::{doc, Auth, Routes};
use super::AppState;
use crate::domain::payload::Problem;
use crate::domain::tenant::{merge_patch, read_tenant, to_document};
use crate::domain::KeyKind;
use crate::store::{keys, tenants};
use crate::tenancy::{self, TenancyError};

pub fn routes() -> Routes {
    let t = "/admin/v1/tenants/{owner}";
    Routes::default()
        .op(
            Method::GET,
            "/admin/v1/tenants",
            get(list_tenants),
            doc("List tenants (no secrets)", Auth::Admin, "TenantList"),
        )
        .op(
            Method::POST,
            "/admin/v1/tenants",
            post(create_tenant),
            doc("Create a tenant; its credentials are shown once", Auth::Admin, "TenantCreated").body("TenantIn"),
        )
        .op(Method::GET, t, get(get_tenant), doc("One tenant", Auth::Admin, "Tenant"))
        .op(
            Method::PATCH,
            t,
            patch(patch_tenant),
            doc("Change a tenant (JSON merge patch)", Auth::Admin, "Tenant").body("TenantPatch"),
        )
        .op(
            Method::DELETE,
            t,
            delete(delete_tenant),
            doc("Delete a tenant: revoke keys, cancel waiting deliveries, keep the data", Auth::Admin, "Deleted"),
        )
        .op(
            Method::GET,
            "/admin/v1/tenants/{owner}/keys",
            get(list_keys),
            doc("A tenant's keys", Auth::Admin, "KeyList"),
        )
        .op(
            Method::POST,
            "/admin/v1/tenants/{owner}/keys",
            post(create_key),
            doc("Add a key (shown once)", Auth::Admin, "KeyCreated").body("KeyIn"),
        )
        .op(
            Method::DELETE,
            "/admin/v1/tenants/{owner}/keys/{id}",
            delete(revoke_key),
            doc("Revoke a key", Auth::Admin, "Deleted"),
        )
        .op(
            Method::POST,
            "/admin/v1/tenants/{owner}/signing-secrets",
            post(rotate_signing_secret),
            doc(
                "Rotate the signing secret; the previous one keeps signing until retired",
                Auth::Admin,
                "SigningSecret",
            ),
        )
        .op(
            Method::DELETE,
            "/admin/v1/tenants/{owner}/signing-secrets/previous",
            delete(retire_signing_secret),
            doc("Stop signing with the previous secret", Auth::Admin, "Deleted"),
        )
}

impl From<TenancyError> for ApiError {
    fn from(err: TenancyError) -> Self {
        match err {
            TenancyError::Exists => ApiError::TenantExists,
            TenancyError::NotFound => ApiError::NotFound("tenant"),
            TenancyError::Secret(e) => ApiError::Internal(e.to_string()),
            TenancyError::Database(e) => e.into(),
        }
    }
}

/// Reads a JSON object body for the admin API.
fn json_body(state: &AppState, headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> Result<Value, ApiError> {
    let bytes = body.map_err(|r| match r.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(state.config.max_body),
        _ => ApiError::InvalidJson(r.body_text()),
    })?;
    super::require_json(headers)?;
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::InvalidJson(format!("the body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::InvalidJson("the body must be a JSON object".into()));
    }
    Ok(value)
}

async fn create_tenant(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    auth::admin(&state, &headers)?;
    let doc = json_body(&state, &headers, body)?;
    let draft = read_tenant(&doc).map_err(ApiError::InvalidPayload)?;
    let created = tenancy::create(&state.pool, &draft, &state.sealer()).await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

async fn list_tenants(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    auth::admin(&state, &headers)?;
    let rows = tenants::list(&state.pool).await?;
    Ok(Json(json!({"data": rows.iter().map(tenancy::view).collect::<Vec<_>>(), "nextCursor": null})))
}

async fn get_tenant(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(owner): Path<String>,
) -> Result<Json<Value>, ApiError> {
    auth::admin(&state, &headers)?;
    let row = tenants::get(&state.pool, &owner).await?.ok_or(ApiError::NotFound("tenant"))?;
    Ok(Json(tenancy::view(&row)))
}

async fn patch_tenant(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(owner): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    auth::admin(&state, &headers)?;
    let patch = json_body(&state, &headers, body)?;
    let mut tx = state.pool.begin().await?;
    let row = tenants::get_for_update(&mut *tx, &owner).await?.ok_or(ApiError::NotFound("tenant"))?;
    let sealer = state.sealer();
    let mut doc = to_document(&tenancy::draft_of(&row, &sealer).map_err(|e| ApiError::Internal(e.to_string()))?);
    merge_patch(&mut doc, &patch);
    let draft = read_tenant(&doc).map_err(ApiError::InvalidPayload)?;
    if draft.owner != row.owner {
        return Err(ApiError::InvalidPayload(vec![Problem::new("owner", "cannot be changed")]));
    }
    let settings = serde_json::to_value(&draft.settings).map_err(|e| ApiError::Internal(e.to_string()))?;
    let password = draft.dolphins_password.as_deref().map(|p| sealer.seal(p));
    tenants::update(&mut *tx, &owner, &draft.name, &draft.timezone, &settings, password.as_deref()).await?;
    let row = tenants::get(&mut *tx, &owner).await?.ok_or(ApiError::NotFound("tenant"))?;
    tx.commit().await?;
    state.keys.clear();
    tracing::info!(owner, "tenant updated");
    Ok(Json(tenancy::view(&row)))
}

async fn delete_tenant(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(owner): Path<String>,
) -> Result<Json<Value>, ApiError> {
    auth::admin(&state, &headers)?;
    let cancelled = tenancy::delete(&state.pool, &owner).await?;
    state.keys.clear();
    Ok(Json(json!({"owner": owner, "deleted": true, "cancelledDeliveries": cancelled})))
}

async fn list_keys(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(owner): Path<String>,
) -> Result<Json<Value>, ApiError> {
    auth::admin(&state, &headers)?;
    tenants::get(&state.pool, &owner).await?.ok_or(ApiError::NotFound("tenant"))?;
    let rows = keys::list(&state.pool, &owner).await?;
    let data: Vec<Value> = rows
        .iter()
        .map(|k| {
            json!({"id": k.id, "kind": k.kind, "prefix": k.prefix, "createdAt": k.created_at,
                   "lastUsedAt": k.last_used_at, "revoked": k.revoked_at.is_some(), "revokedAt": k.revoked_at})
        })
        .collect();
    Ok(Json(json!({"data": data, "nextCursor": null})))
}

async fn create_key(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(owner): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    auth::admin(&state, &headers)?;
    let doc = json_body(&state, &headers, body)?;
    let kind = doc.get("kind").and_then(Value::as_str).and_then(KeyKind::parse).ok_or_else(|| {
        ApiError::InvalidPayload(vec![Problem::new("kind", "must be one of inbound, third_party, read")])
    })?;
    let (id, key) = tenancy::add_key(&state.pool, &owner, kind).await?;
    Ok((StatusCode::CREATED, Json(json!({"id": id, "kind": kind, "key": key}))).into_response())
}

async fn revoke_key(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((owner, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    auth::admin(&state, &headers)?;
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::NotFound("key"))?;
    if !keys::exists(&state.pool, &owner, id).await? {
        return Err(ApiError::NotFound("key"));
    }
    keys::revoke(&state.pool, &owner, id).await?;
    state.keys.clear();
    Ok(Json(json!({"id": id, "revoked": true})))
}

/// Adds a new signing secret (shown once); the current one keeps signing beside it until
/// it is retired, so the third party can switch without a gap.
async fn rotate_signing_secret(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(owner): Path<String>,
) -> Result<Response, ApiError> {
    auth::admin(&state, &headers)?;
    let secret = crate::credentials::generate_signing_secret();
    if !tenants::rotate_signing_secret(&state.pool, &owner, &state.sealer().seal(&secret)).await? {
        return Err(ApiError::NotFound("tenant"));
    }
    tracing::info!(owner, "signing secret rotated; the previous one still signs");
    Ok((StatusCode::CREATED, Json(json!({"signingSecret": secret, "previousStillSigns": true}))).into_response())
}

async fn retire_signing_secret(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(owner): Path<String>,
) -> Result<Json<Value>, ApiError> {
    auth::admin(&state, &headers)?;
    if !tenants::retire_previous_signing_secret(&state.pool, &owner).await? {
        return Err(ApiError::NotFound("previous signing secret"));
    }
    tracing::info!(owner, "previous signing secret retired");
    Ok(Json(json!({"previousRetired": true})))
}
