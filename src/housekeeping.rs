//! Background housekeeping: per-tenant retention (message bodies and raw payloads purged
//! after `retentionDays`, the lifecycle and counts kept, each batch audited `purged`) and
//! expiry of idempotency replies. Small batches, so it never holds locks for long.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::sync::watch;

use crate::domain::tenant::TenantSettings;
use crate::store::{retention, tenants};

/// Rows per statement.
const BATCH: i64 = 500;
/// How often the background task runs.
pub const INTERVAL: Duration = Duration::from_secs(60);

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    pub messages_purged: i64,
    pub delivery_bodies_purged: u64,
    pub idempotency_keys_expired: u64,
}

/// One pass over every tenant with a retention period: batches until nothing is left.
pub async fn run_once(pool: &PgPool, now: DateTime<Utc>) -> Result<Pass, sqlx::Error> {
    let mut pass = Pass::default();
    for row in tenants::list(pool).await? {
        let settings: TenantSettings = serde_json::from_value(row.settings).unwrap_or_default();
        let Some(days) = settings.retention_days else { continue };
        let cutoff = now - chrono::Duration::days(i64::from(days));
        loop {
            let n = retention::purge_messages(pool, &row.owner, cutoff, BATCH, now).await?;
            pass.messages_purged += n;
            if n < BATCH {
                break;
            }
        }
        loop {
            let n = retention::purge_delivery_bodies(pool, &row.owner, cutoff, BATCH).await?;
            pass.delivery_bodies_purged += n;
            if n < BATCH as u64 {
                break;
            }
        }
    }
    pass.idempotency_keys_expired =
        retention::expire_idempotency_keys(pool, now - crate::intake::IDEMPOTENCY_TTL).await?;
    Ok(pass)
}

/// Runs [`run_once`] every [`INTERVAL`] until `shutdown` turns true.
pub async fn run(pool: PgPool, clock: std::sync::Arc<dyn crate::clock::Clock>, shutdown: watch::Receiver<bool>) {
    let (pool, clock) = (&pool, &clock);
    crate::background::every(INTERVAL, shutdown, move || async move {
        match run_once(pool, clock.now()).await {
            Ok(pass) if pass != Pass::default() => tracing::info!(?pass, "housekeeping"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "housekeeping failed; will retry"),
        }
    })
    .await
}
