//! The statistics task: keeps PostgreSQL's statistics of the hot tables no more than half
//! out of date, whatever the server's autovacuum does, so that no cached plan stays one made
//! on empty tables.
//!
//! The main pool caches the plans of its statements, and the intake's pool always runs its
//! generic ones (planning the message write afresh cost a millisecond of PostgreSQL CPU). A plan cached while a table had
//! no statistics (a fresh database, or a server with autovacuum off) sees every index as
//! equally cheap, and picked `tickets_by_channel`, which holds every ticket of the tenant,
//! to find a ticket by its number: ingest of new tickets then slowed as the table grew.
//! `ANALYZE` gives the planner the table's real size, and it invalidates every plan cached
//! on the table, so the next run plans afresh and finds tickets by their key. With
//! autovacuum on (the default) its own analyses come first and this task has nothing to do.

use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::watch;

/// The tables the webhooks and the delivery engine write on every event.
pub const HOT_TABLES: [&str; 5] = ["tickets", "messages", "ticket_events", "deliveries", "delivery_attempts"];
/// Changes below this never call for an analysis. Low: a plan made on an empty table finds
/// a ticket through an index holding every ticket of the tenant, which at 500 tickets
/// already cost a message write 0.1 ms (`docs/benchmarks.md`); analyzing a small table is cheap.
pub const MIN_CHANGES: i64 = 100;
/// How often the task looks (one cheap query on `pg_stat_user_tables`). Often: until the
/// first analysis of a fresh database every cached generic plan is one made on empty tables,
/// and such a plan of the success record found a ticket's next delivery through an index
/// holding every delivery of the tenant, a cost that grows with each event until it is
/// replaced (at 750 events/s, records ran 10 to 800 ms each for the first 10 s).
pub const INTERVAL: Duration = Duration::from_secs(1);

/// Analyzes each hot table changed, since its last analysis, by at least as many rows as it
/// held then (and at least [`MIN_CHANGES`]); answers the tables analyzed. A table another
/// process is analyzing is skipped.
pub async fn run_once(pool: &PgPool) -> Result<Vec<String>, sqlx::Error> {
    let stale: Vec<String> = sqlx::query_scalar(
        "SELECT s.relname::text FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
         WHERE s.schemaname = current_schema() AND s.relname = ANY($1)
           AND s.n_mod_since_analyze >= greatest($2, c.reltuples::bigint)
         ORDER BY 1",
    )
    .bind(HOT_TABLES)
    .bind(MIN_CHANGES)
    .fetch_all(pool)
    .await?;
    for table in &stale {
        // The name comes from HOT_TABLES (the query matched it against them).
        sqlx::raw_sql(&format!("ANALYZE (SKIP_LOCKED) {table}")).execute(pool).await?;
    }
    Ok(stale)
}

/// Runs [`run_once`] every [`INTERVAL`] until `shutdown` turns true.
pub async fn run(pool: PgPool, shutdown: watch::Receiver<bool>) {
    let pool = &pool;
    crate::background::every(INTERVAL, shutdown, move || async move {
        match run_once(pool).await {
            Ok(tables) if !tables.is_empty() => tracing::debug!(?tables, "analyzed"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "analyzing the hot tables failed; will retry"),
        }
    })
    .await
}
