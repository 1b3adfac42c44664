//! Tenant lifecycle shared by the admin API and the CLI: create with credentials,
//! add and revoke keys, delete (keeping the data).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::credentials::{generate_key, generate_signing_secret};
use crate::domain::tenant::{Alerts, Delivery, Dolphins, TenantDraft, TenantSettings, ThirdParty};
use crate::domain::KeyKind;
use crate::secrets::{is_sealed, Sealer, SecretError};
use crate::store::{deliveries, keys, tenants, tenants::TenantRow};

/// The secrets of a new tenant, shown once.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Credentials {
    pub inbound_token: String,
    pub third_party_key: String,
    pub read_key: String,
    pub signing_secret: String,
}

/// The ids of a new tenant's keys (for revoking them later).
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyIds {
    pub inbound: Uuid,
    #[serde(rename = "thirdParty")]
    pub third_party: Uuid,
    pub read: Uuid,
}

/// A tenant as the admin API shows it: its settings without secrets.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Tenant)]
pub struct TenantOut {
    pub owner: String,
    pub name: String,
    /// IANA time zone of its reports' local dates.
    pub timezone: String,
    pub third_party: ThirdParty,
    pub dolphins: DolphinsOut,
    pub delivery: Delivery,
    /// Where operational alerts go (absent: no alerts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alerts: Option<Alerts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

/// The 3Dolphins side of a tenant; the password only as whether one is set.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = TenantDolphins)]
pub struct DolphinsOut {
    #[serde(flatten)]
    pub settings: Dolphins,
    pub password_set: bool,
}

/// A new tenant: its view plus, this once, its credentials.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = TenantCreated)]
pub struct TenantCreatedOut {
    #[serde(flatten)]
    pub tenant: TenantOut,
    pub credentials: Credentials,
    pub key_ids: KeyIds,
}

#[derive(Debug, thiserror::Error)]
pub enum TenancyError {
    #[error("a tenant with this owner exists already")]
    Exists,
    #[error("no such tenant")]
    NotFound,
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Creates a tenant and its three keys and signing secret in one transaction; the signing
/// secret and the 3Dolphins password are stored sealed when the process has a key.
/// Answers the admin API's 201 body: the tenant view plus `credentials` and `keyIds`.
pub async fn create(pool: &PgPool, draft: &TenantDraft, sealer: &Sealer) -> Result<TenantCreatedOut, TenancyError> {
    let settings = serde_json::to_value(&draft.settings).unwrap_or_else(|_| json!({}));
    let signing_secret = generate_signing_secret();
    let stored_secret = sealer.seal(&signing_secret);
    let stored_password = draft.dolphins_password.as_deref().map(|p| sealer.seal(p));
    let mut tx = pool.begin().await?;
    let inserted = tenants::insert(
        &mut *tx,
        tenants::NewTenant {
            owner: &draft.owner,
            name: &draft.name,
            timezone: &draft.timezone,
            settings: &settings,
            signing_secret: &stored_secret,
            dolphins_password: stored_password.as_deref(),
        },
    )
    .await?;
    if !inserted {
        return Err(TenancyError::Exists);
    }
    let mut made = Vec::new();
    for kind in [KeyKind::Inbound, KeyKind::ThirdParty, KeyKind::Read] {
        let key = generate_key(kind);
        let id = Uuid::new_v4();
        keys::insert(&mut *tx, &draft.owner, id, kind.as_str(), &key.prefix, &key.hash).await?;
        made.push((id, key.key));
    }
    let row = tenants::get(&mut *tx, &draft.owner).await?.ok_or(TenancyError::NotFound)?;
    tx.commit().await?;
    tracing::info!(owner = %draft.owner, "tenant created");
    let [(inbound_id, inbound), (tp_id, third_party), (read_id, read)] = <[_; 3]>::try_from(made)
        .map_err(|_| TenancyError::Database(sqlx::Error::Protocol("three keys expected".into())))?;
    Ok(TenantCreatedOut {
        tenant: view(&row),
        credentials: Credentials {
            inbound_token: inbound,
            third_party_key: third_party,
            read_key: read,
            signing_secret,
        },
        key_ids: KeyIds { inbound: inbound_id, third_party: tp_id, read: read_id },
    })
}

/// Adds a key of `kind`; answers its id and the key (shown once).
pub async fn add_key(pool: &PgPool, owner: &str, kind: KeyKind) -> Result<(Uuid, String), TenancyError> {
    let mut tx = pool.begin().await?;
    match tenants::get_for_update(&mut *tx, owner).await? {
        Some(_) => {}
        None => return Err(TenancyError::NotFound),
    }
    let key = generate_key(kind);
    let id = Uuid::new_v4();
    keys::insert(&mut *tx, owner, id, kind.as_str(), &key.prefix, &key.hash).await?;
    tx.commit().await?;
    Ok((id, key.key))
}

/// Deletes a tenant: revokes its keys and cancels its waiting deliveries; the data stays.
/// Answers how many deliveries were cancelled.
pub async fn delete(pool: &PgPool, owner: &str) -> Result<u64, TenancyError> {
    let mut tx = pool.begin().await?;
    if !tenants::mark_deleted(&mut *tx, owner).await? {
        return Err(TenancyError::NotFound);
    }
    keys::revoke_all(&mut *tx, owner).await?;
    let cancelled = deliveries::cancel_all_waiting(&mut *tx, owner).await?;
    tx.commit().await?;
    tracing::info!(owner, cancelled, "tenant deleted");
    Ok(cancelled)
}

/// A tenant as the admin API shows it: settings, never secrets.
pub fn view(row: &TenantRow) -> TenantOut {
    let settings: TenantSettings = serde_json::from_value(row.settings.clone()).unwrap_or_default();
    TenantOut {
        owner: row.owner.clone(),
        name: row.name.clone(),
        timezone: row.timezone.clone(),
        third_party: settings.third_party,
        dolphins: DolphinsOut { settings: settings.dolphins, password_set: row.dolphins_password.is_some() },
        delivery: settings.delivery,
        alerts: settings.alerts,
        retention_days: settings.retention_days,
        rate_limit: settings.rate_limit,
        created_at: row.created_at,
        updated_at: row.updated_at,
        deleted_at: row.deleted_at,
    }
}

/// The draft a stored tenant came from (for PATCH): its settings and opened password.
pub fn draft_of(row: &TenantRow, sealer: &Sealer) -> Result<TenantDraft, SecretError> {
    Ok(TenantDraft {
        owner: row.owner.clone(),
        name: row.name.clone(),
        timezone: row.timezone.clone(),
        settings: serde_json::from_value(row.settings.clone()).unwrap_or_default(),
        dolphins_password: row.dolphins_password.as_deref().map(|p| sealer.open(p)).transpose()?,
    })
}

/// Seals every secret stored in the clear (after a key was set); answers how many.
pub async fn seal_clear_secrets(pool: &PgPool, sealer: &Sealer) -> Result<u64, TenancyError> {
    let mut sealed = 0;
    let mut tx = pool.begin().await?;
    for row in tenants::list(&mut *tx).await? {
        let secret = (!is_sealed(&row.signing_secret)).then(|| sealer.seal(&row.signing_secret));
        let previous = row.previous_signing_secret.as_deref().filter(|p| !is_sealed(p)).map(|p| sealer.seal(p));
        let password = row.dolphins_password.as_deref().filter(|p| !is_sealed(p)).map(|p| sealer.seal(p));
        sealed += u64::from(secret.is_some()) + u64::from(previous.is_some()) + u64::from(password.is_some());
        if secret.is_some() || previous.is_some() || password.is_some() {
            tenants::set_secrets(&mut *tx, &row.owner, secret.as_deref(), previous.as_deref(), password.as_deref())
                .await?;
        }
    }
    tx.commit().await?;
    Ok(sealed)
}

/// Checks at start that every sealed secret opens with this process's key: a missing or
/// wrong key is found now, not at the first delivery. Answers how many secrets are still
/// in the clear.
pub async fn check_secrets(pool: &PgPool, sealer: &Sealer) -> Result<usize, TenancyError> {
    let mut clear = 0;
    for row in tenants::list(pool).await? {
        let optional = row.previous_signing_secret.as_deref().into_iter().chain(row.dolphins_password.as_deref());
        for stored in std::iter::once(row.signing_secret.as_str()).chain(optional) {
            if is_sealed(stored) {
                sealer.open(stored)?;
            } else {
                clear += 1;
            }
        }
    }
    Ok(clear)
}
