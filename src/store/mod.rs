//! All SQL lives here, one file per table family. Functions take an executor (a pool,
//! a connection or a transaction) so callers decide the transaction boundaries.

pub mod contacts;
pub mod deliveries;
pub mod endpoints;
pub mod events;
pub mod idempotency;
pub mod intake;
pub mod integrity;
pub mod keys;
pub mod messages;
pub mod redelivery;
pub mod reports;
pub mod retention;
pub mod tenants;
pub mod tickets;

use std::time::Duration;

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
use sqlx::{migrate::MigrateDatabase, PgPool, Postgres};

/// The embedded migrations (`migrations/`), applied by `serve` and `migrate`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Creates the database named in `url` if it does not exist yet.
pub async fn create_database_if_missing(url: &str) -> Result<bool, sqlx::Error> {
    if Postgres::database_exists(url).await? {
        return Ok(false);
    }
    match Postgres::create_database(url).await {
        Ok(()) => Ok(true),
        // Another process created it between the check and the create.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => Ok(false),
        Err(e) => Err(e),
    }
}

/// A pool that fails fast when PostgreSQL is away: a request waits at most
/// `acquire_timeout` for a connection and then answers 503 instead of hanging.
///
/// A connection that sat idle for `ping_after` or longer is checked before it is handed
/// out: after a database restart the pool would otherwise hand out dead sockets, one failed
/// request each. The main pool checks every connection (its work is transactions of several
/// statements and API reads, where one round trip more is cheap, and its connections sit
/// idle most of the time); the hot pools of the intake and the delivery engine check only
/// connections idle for [`IDLE_BEFORE_PING`], so a busy connection adds no round trip.
pub fn pool_options(max_connections: u32, ping_after: Duration) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(3))
        .test_before_acquire(false)
        .before_acquire(move |conn, meta| {
            Box::pin(async move {
                if meta.idle_for < ping_after {
                    return Ok(true);
                }
                Ok(sqlx::Connection::ping(conn).await.is_ok())
            })
        })
}

/// The delivery engine's own pool: same database and settings, separate connections.
///
/// Separate, because a burst of webhook requests queueing for the main pool's connections
/// must not hold back claims and outcome records (measured: deliveries fell ever further
/// behind acceptance while each claim waited behind 32 requests).
///
/// Its sessions never bitmap-scan or sort, and its statements find the rows they change by
/// `ctid` (the claim returns each claimed row's): every delivery query is meant to walk one
/// index in order and stop early, and then no plan is left to choose. On a fresh or
/// fast-growing database (or one without autovacuum) the planner's statistics still
/// describe nearly empty tables; measured, it then chose to read and sort the whole backlog
/// to claim 16 rows (58 ms per claim with 4 800 waiting, instead of 0.6 ms), and kept a
/// generic plan that found each claimed row through `(owner, created_at, id)` by reading
/// every delivery of the tenant: delivery collapsed to ~150/s in one run out of three.
/// Planning every statement afresh also cured it, but cost 0.4 ms of planning per claim
/// for 0.1 ms of execution.
///
/// Its commits do not wait for the WAL flush (`synchronous_commit = off`; visibility to
/// other sessions is immediate, only durability trails by at most a few hundred
/// milliseconds). What it writes is bookkeeping whose loss in a database crash costs only
/// duplicate sends, which at-least-once delivery allows: a lost lease or a lost success
/// makes the delivery due again, and it is sent again, in its ticket's order. What the
/// webhooks accept is written through the intake's pool or the main pool, and always waits
/// for the flush.
pub fn delivery_pool(pool: &PgPool, max_connections: u32) -> PgPool {
    let settings = [("synchronous_commit", "off"), ("enable_bitmapscan", "off"), ("enable_sort", "off")];
    hot_pool(pool, max_connections, settings)
}

/// The message intake's own pool ([`crate::group_commit`]): same database and settings,
/// separate connections, so that batches never queue behind other requests' transactions.
///
/// Its sessions join only by nested loops over indexes: a batch names its tickets, and the
/// planner, left to its statistics, may prefer to hash-join them against a whole table it
/// believes small (fresh databases, tables grown since the last `ANALYZE`, servers without
/// autovacuum). Commits wait for the WAL flush: this is what the webhooks answer 2xx on.
pub fn intake_pool(pool: &PgPool, max_connections: u32) -> PgPool {
    let settings = [("enable_hashjoin", "off"), ("enable_mergejoin", "off"), ("enable_bitmapscan", "off")];
    hot_pool(pool, max_connections, settings)
}

/// A pool of `pool`'s database and settings whose sessions also run with `settings`.
fn hot_pool(pool: &PgPool, max_connections: u32, settings: [(&str, &str); 3]) -> PgPool {
    let options = (*pool.connect_options()).clone().options(settings);
    pool_options(max_connections, IDLE_BEFORE_PING).connect_lazy_with(options)
}

/// How long a connection of a hot pool may sit idle before it is checked on the way out.
const IDLE_BEFORE_PING: Duration = Duration::from_secs(1);

/// Connects without waiting for the server: the first query opens the first connection.
///
/// JIT compilation is turned off for the bridge's sessions: its queries are short or
/// index-driven, and PostgreSQL's JIT, which kicks in on cost estimates, was measured to
/// add 0.5–1 s of compile time to report queries that run in 0.2 s without it.
///
/// A server on the same machine (loopback or a Unix socket) is reached without TLS unless
/// the URL asks for an `sslmode`: encrypting loopback traffic protects nothing and was a
/// visible share of the bridge's and PostgreSQL's CPU under load.
pub fn connect_lazy(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    let mut options = PgConnectOptions::from_str(url)?.options([("jit", "off")]);
    if is_local(&options) && !asks_for_sslmode(url) {
        options = options.ssl_mode(PgSslMode::Disable);
    }
    Ok(pool_options(max_connections, Duration::ZERO).connect_lazy_with(options))
}

fn is_local(options: &PgConnectOptions) -> bool {
    let host = options.get_host();
    host.starts_with('/') || matches!(host, "localhost" | "127.0.0.1" | "::1" | "[::1]")
}

fn asks_for_sslmode(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| u.query_pairs().any(|(k, _)| k.eq_ignore_ascii_case("sslmode")))
}

/// Whether `err` means the database could not be reached (as opposed to a query that
/// PostgreSQL refused): the HTTP edge answers 503 for these.
pub fn is_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        // admin_shutdown, crash_shutdown, cannot_connect_now, too_many_connections
        sqlx::Error::Database(e) => {
            matches!(e.code().as_deref(), Some("57P01" | "57P02" | "57P03" | "53300"))
        }
        _ => false,
    }
}

/// Whether PostgreSQL refused a text value it cannot hold (a NUL byte, an untranslatable
/// character): client input, never a server fault.
pub fn is_unstorable_text(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(e) if matches!(e.code().as_deref(), Some("22021" | "22P05")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(url: &str) -> PgConnectOptions {
        PgConnectOptions::from_str(url).expect("a valid URL")
    }

    #[test]
    fn only_a_local_server_without_an_explicit_sslmode_goes_without_tls() {
        for local in ["postgres://u@127.0.0.1:5432/db", "postgres://u@localhost/db", "postgres://u@[::1]:5432/db"] {
            assert!(is_local(&options(local)), "{local}");
            assert!(!asks_for_sslmode(local), "{local}");
        }
        assert!(!is_local(&options("postgres://u@db.example.com/db")));
        assert!(asks_for_sslmode("postgres://u@127.0.0.1/db?sslmode=require"));
    }
}
