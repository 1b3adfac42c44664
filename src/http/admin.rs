//! The admin API (README *HTTP surface*, admin and credentials): tenants and their keys, behind `BRIDGE_ADMIN_TOKEN`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::error::ApiError;
use super::openapi::{doc, Auth, Routes};
use super::params::Params;
use super::shapes::page_type;
use super::AppState;
use super::{auth, bodies, csv};
use crate::domain::payload::Problem;
use crate::domain::tenant::{merge_patch, read_tenant, to_document};
use crate::domain::KeyKind;
use crate::store::{keys, tenants};
use crate::tenancy::{self, TenancyError, TenantCreatedOut, TenantOut};

pub fn routes() -> Routes {
    let t = "/admin/v1/tenants/{owner}";
    Routes::default()
        .op(
            Method::GET,
            "/admin/v1/tenants",
            get(list_tenants),
            doc("listTenants", "List tenants (no secrets)", Auth::Admin).reply::<TenantPage>(200, "every tenant").csv(),
        )
        .op(
            Method::POST,
            "/admin/v1/tenants",
            post(create_tenant),
            doc("createTenant", "Create a tenant; its credentials are shown once", Auth::Admin)
                .body::<bodies::TenantIn>()
                .reply::<TenantCreatedOut>(201, "created, with its credentials (shown this once)")
                .errors(&[409]),
        )
        .op(
            Method::GET,
            t,
            get(get_tenant),
            doc("getTenant", "One tenant", Auth::Admin).reply::<TenantOut>(200, "the tenant"),
        )
        .op(
            Method::PATCH,
            t,
            patch(patch_tenant),
            doc("patchTenant", "Change a tenant (JSON merge patch)", Auth::Admin)
                .body::<bodies::TenantPatch>()
                .reply::<TenantOut>(200, "the tenant as changed"),
        )
        .op(
            Method::DELETE,
            t,
            delete(delete_tenant),
            doc("deleteTenant", "Delete a tenant: revoke keys, cancel waiting deliveries, keep the data", Auth::Admin)
                .reply::<TenantDeleted>(200, "deleted"),
        )
        .op(
            Method::GET,
            "/admin/v1/tenants/{owner}/keys",
            get(list_keys),
            doc("listKeys", "A tenant's keys", Auth::Admin).reply::<KeyPage>(200, "every key, revoked ones too").csv(),
        )
        .op(
            Method::POST,
            "/admin/v1/tenants/{owner}/keys",
            post(create_key),
            doc("createKey", "Add a key (shown once)", Auth::Admin)
                .body::<bodies::KeyIn>()
                .reply::<KeyCreated>(201, "the key, shown this once"),
        )
        .op(
            Method::DELETE,
            "/admin/v1/tenants/{owner}/keys/{id}",
            delete(revoke_key),
            doc("revokeKey", "Revoke a key", Auth::Admin).reply::<KeyRevoked>(200, "revoked"),
        )
        .op(
            Method::POST,
            "/admin/v1/tenants/{owner}/signing-secrets",
            post(rotate_signing_secret),
            doc(
                "rotateSigningSecret",
                "Rotate the signing secret; the previous one keeps signing until retired",
                Auth::Admin,
            )
            .reply::<SigningSecret>(201, "the new secret, shown this once"),
        )
        .op(
            Method::DELETE,
            "/admin/v1/tenants/{owner}/signing-secrets/previous",
            delete(retire_signing_secret),
            doc("retireSigningSecret", "Stop signing with the previous secret", Auth::Admin)
                .reply::<PreviousRetired>(200, "only the current secret signs now"),
        )
}

page_type!(
    /// Every tenant.
    TenantPage of TenantOut
);

/// A key, without the key itself.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Key)]
pub struct KeyOut {
    pub id: Uuid,
    #[schema(schema_with = key_kind)]
    pub kind: String,
    /// The key's first characters, to tell keys apart.
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked: bool,
    pub revoked_at: Option<DateTime<Utc>>,
}

fn key_kind() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(KeyKind::ALL.iter().map(|k| k.as_str())))
        .build()
}

page_type!(
    /// A tenant's keys.
    KeyPage of KeyOut
);

/// A new key (the only time it is shown).
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyCreated {
    pub id: Uuid,
    #[schema(schema_with = key_kind)]
    pub kind: String,
    pub key: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyRevoked {
    pub id: Uuid,
    pub revoked: bool,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantDeleted {
    pub owner: String,
    pub deleted: bool,
    /// Deliveries that were waiting and will not be sent.
    pub cancelled_deliveries: u64,
}

/// A new signing secret (the only time it is shown).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SigningSecret {
    /// `whsec_` and base64.
    pub signing_secret: String,
    /// The previous secret keeps signing beside it until retired.
    pub previous_still_signs: bool,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreviousRetired {
    pub previous_retired: bool,
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

async fn list_tenants(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    auth::admin(&state, &headers)?;
    let rows: Vec<TenantOut> = tenants::list(&state.pool).await?.iter().map(tenancy::view).collect();
    if let Some(csv) = csv::wanted(&Params::parse(query.as_deref()), &headers)? {
        return Ok(csv.all("tenants.csv", &rows));
    }
    Ok(Json(TenantPage::all(rows)).into_response())
}

async fn get_tenant(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(owner): Path<String>,
) -> Result<Json<TenantOut>, ApiError> {
    auth::admin(&state, &headers)?;
    let row = tenants::get(&state.pool, &owner).await?.ok_or(ApiError::NotFound("tenant"))?;
    Ok(Json(tenancy::view(&row)))
}

async fn patch_tenant(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(owner): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<TenantOut>, ApiError> {
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
) -> Result<Json<TenantDeleted>, ApiError> {
    auth::admin(&state, &headers)?;
    let cancelled = tenancy::delete(&state.pool, &owner).await?;
    state.keys.clear();
    Ok(Json(TenantDeleted { owner, deleted: true, cancelled_deliveries: cancelled }))
}

async fn list_keys(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(owner): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    auth::admin(&state, &headers)?;
    tenants::get(&state.pool, &owner).await?.ok_or(ApiError::NotFound("tenant"))?;
    let rows: Vec<KeyOut> = keys::list(&state.pool, &owner)
        .await?
        .into_iter()
        .map(|k| KeyOut {
            id: k.id,
            kind: k.kind,
            prefix: k.prefix,
            created_at: k.created_at,
            last_used_at: k.last_used_at,
            revoked: k.revoked_at.is_some(),
            revoked_at: k.revoked_at,
        })
        .collect();
    if let Some(csv) = csv::wanted(&Params::parse(query.as_deref()), &headers)? {
        return Ok(csv.all("keys.csv", &rows));
    }
    Ok(Json(KeyPage::all(rows)).into_response())
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
    Ok((StatusCode::CREATED, Json(KeyCreated { id, kind: kind.as_str().to_string(), key })).into_response())
}

async fn revoke_key(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((owner, id)): Path<(String, String)>,
) -> Result<Json<KeyRevoked>, ApiError> {
    auth::admin(&state, &headers)?;
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::NotFound("key"))?;
    if !keys::exists(&state.pool, &owner, id).await? {
        return Err(ApiError::NotFound("key"));
    }
    keys::revoke(&state.pool, &owner, id).await?;
    state.keys.clear();
    Ok(Json(KeyRevoked { id, revoked: true }))
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
    let body = SigningSecret { signing_secret: secret, previous_still_signs: true };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

async fn retire_signing_secret(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(owner): Path<String>,
) -> Result<Json<PreviousRetired>, ApiError> {
    auth::admin(&state, &headers)?;
    if !tenants::retire_previous_signing_secret(&state.pool, &owner).await? {
        return Err(ApiError::NotFound("previous signing secret"));
    }
    tracing::info!(owner, "previous signing secret retired");
    Ok(Json(PreviousRetired { previous_retired: true }))
}
