//! The alert task: checks every few seconds whether a target's backlog has gone stale
//! (`store::alerts::check_backlogs`) and wakes every dispatcher when it raised an alert.
//! The other alerts need no task: they are written with the change they report.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::sync::watch;

use crate::clock::Clock;
use crate::store::alerts::{self, BacklogCheck};
use crate::store::outbox_rules::NOTIFY_CHANNEL;

/// How often backlogs are checked: a stale backlog is reported at most this late.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// One check at `now`; raised alerts wake the dispatchers of every process.
pub async fn run_once(pool: &PgPool, now: DateTime<Utc>) -> Result<BacklogCheck, sqlx::Error> {
    let check = alerts::check_backlogs(pool, now).await?;
    if check.raised > 0 {
        sqlx::query("SELECT pg_notify($1, '')").bind(NOTIFY_CHANNEL).execute(pool).await?;
    }
    Ok(check)
}

/// Runs [`run_once`] every [`INTERVAL`] until `shutdown` turns true.
pub async fn run(pool: PgPool, clock: Arc<dyn Clock>, shutdown: watch::Receiver<bool>) {
    let (pool, clock) = (&pool, &clock);
    crate::background::every(INTERVAL, shutdown, move || async move {
        match run_once(pool, clock.now()).await {
            Ok(check) if check != BacklogCheck::default() => tracing::info!(?check, "backlog alerts"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "checking backlogs for alerts failed; will retry"),
        }
    })
    .await
}
