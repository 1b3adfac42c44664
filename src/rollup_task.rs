//! The rollup task: keeps every tenant's report rollups (`store::rollups`) up to
//! [`LAG`] behind now, off the webhook path. Each step is one transaction holding the
//! tenant's watermark row, so any number of processes can run it: a tenant being rolled by
//! one is skipped by the others.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, DurationRound, Utc};
use sqlx::PgPool;
use tokio::sync::watch;

use crate::clock::Clock;
use crate::store::{rollup_steps, tenants};

/// How far behind now the rollups stay, at least ([`lag`]). A row is written with its
/// request's clock and committed within the request's time limit; the lag leaves room for
/// that and for clocks of several processes that disagree a little, so no row can commit
/// behind the watermark (rows whose own time lies further in the past mark their quarter
/// dirty instead, see [`LATE`]). Everything after the watermark is read raw by every
/// report, so the lag is as short as that allows.
pub const LAG: chrono::Duration = chrono::Duration::minutes(2);
/// The watermark moves by whole minutes (the quarter holding it has a row for its part
/// before it), so a report's raw tail is the lag and at most a minute more.
pub const TICK: chrono::Duration = chrono::Duration::minutes(1);

/// The lag for a process whose requests may last `request_timeout`: [`LAG`], or twice the
/// time limit when that is longer.
pub fn lag(request_timeout: Duration) -> chrono::Duration {
    let twice = chrono::Duration::from_std(request_timeout * 2).unwrap_or(LAG);
    twice.max(LAG)
}
/// A ticket opened (by its createdDate) more than this before it is stored marks its
/// quarter dirty; well inside [`LAG`].
pub const LATE: chrono::Duration = chrono::Duration::minutes(1);
/// The most one step (one transaction) rolls up at once.
pub const STEP: chrono::Duration = chrono::Duration::days(1);
/// How often the task runs.
pub const INTERVAL: Duration = Duration::from_secs(10);
/// How long one pass keeps rolling a tenant that is far behind before moving on.
const BUDGET: Duration = Duration::from_secs(5);

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    pub steps: u64,
    pub quarters: i64,
}

/// The watermark the rollups aim for at `now` with the default [`LAG`].
pub fn limit(now: DateTime<Utc>) -> DateTime<Utc> {
    limit_with(now, LAG)
}

fn limit_with(now: DateTime<Utc>, lag: chrono::Duration) -> DateTime<Utc> {
    let t = now - lag;
    t.duration_trunc(TICK).unwrap_or(t)
}

/// Rolls every live tenant towards [`limit`]`(now)`, for at most 5 s of work each.
pub async fn run_once(pool: &PgPool, now: DateTime<Utc>) -> Result<Pass, sqlx::Error> {
    run_once_with(pool, now, LAG).await
}

async fn run_once_with(pool: &PgPool, now: DateTime<Utc>, lag: chrono::Duration) -> Result<Pass, sqlx::Error> {
    let mut pass = Pass::default();
    for tenant in tenants::list(pool).await? {
        if tenant.deleted_at.is_some() {
            continue;
        }
        let p = roll_tenant(pool, &tenant.owner, limit_with(now, lag), Some(BUDGET)).await?;
        pass.steps += p.steps;
        pass.quarters += p.quarters;
    }
    Ok(pass)
}

/// Steps `owner` towards `limit` until it is there, another process holds it, or `budget`
/// is spent.
pub async fn roll_tenant(
    pool: &PgPool,
    owner: &str,
    limit: DateTime<Utc>,
    budget: Option<Duration>,
) -> Result<Pass, sqlx::Error> {
    let started = Instant::now();
    let mut conn = pool.acquire().await?;
    let mut pass = Pass::default();
    while let Some(step) = rollup_steps::roll_step(&mut conn, owner, limit, STEP).await? {
        pass.steps += 1;
        pass.quarters += step.quarters;
        if step.caught_up || budget.is_some_and(|b| started.elapsed() >= b) {
            break;
        }
    }
    Ok(pass)
}

/// Forgets `owner`'s rollups and builds them again from the raw rows
/// (`dolphin-bridge rollups rebuild`).
pub async fn rebuild(pool: &PgPool, owner: &str, now: DateTime<Utc>) -> Result<Pass, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    rollup_steps::forget(&mut conn, owner).await?;
    drop(conn);
    roll_tenant(pool, owner, limit(now), None).await
}

/// Runs a pass every [`INTERVAL`] until `shutdown` turns true, `lag` behind now ([`lag`]).
pub async fn run(pool: PgPool, clock: Arc<dyn Clock>, lag: chrono::Duration, shutdown: watch::Receiver<bool>) {
    let (pool, clock) = (&pool, &clock);
    crate::background::every(INTERVAL, shutdown, move || async move {
        match run_once_with(pool, clock.now(), lag).await {
            Ok(pass) if pass.quarters > 0 => tracing::debug!(?pass, "report rollups"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "report rollups failed; will retry"),
        }
    })
    .await
}
