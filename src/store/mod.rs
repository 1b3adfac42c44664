//! All SQL lives here, one file per table family. Functions take an executor (a pool,
//! a connection or a transaction) so callers decide the transaction boundaries.

pub mod alerts;
pub mod contacts;
pub mod database_url;
pub mod day_hours;
pub mod deliveries;
pub mod endpoints;
pub mod events;
pub mod idempotency;
pub mod integrity;
pub mod keys;
pub mod message_writes;
pub mod messages;
pub mod outbox_rules;
pub mod raw_figures;
pub mod redelivery;
pub mod reports;
pub mod retention;
pub mod rollup_steps;
pub mod rollups;
pub mod schema;
pub mod successes;
pub mod tenants;
pub mod tickets;
pub mod topology;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
use sqlx::{migrate::MigrateDatabase, PgPool, Postgres};

use topology::Topology;

/// The database the bridge writes to: the servers of `DATABASE_URL` and the main pool.
#[derive(Clone)]
pub struct Database {
    pub topology: Arc<Topology>,
    /// HTTP requests' transactions, API reads of the primary, housekeeping.
    pub pool: PgPool,
}

impl Database {
    /// The topology of `url` and a main pool of `max_connections`, connecting lazily. When
    /// the URL needs a probe (a host list, or a `target_session_attrs`), no connection is
    /// made until a host fits ([`Topology::find`], or [`Topology::follow`] in a running bridge).
    pub fn lazy(url: &str, max_connections: u32) -> Result<Database, String> {
        let topology = Topology::new("DATABASE_URL", url, true)?;
        // The main pool pings every connection it hands out: see `pool_options`. It keeps
        // PostgreSQL's plan cache: planning the intake's transaction path afresh (new,
        // closed and reopened tickets, commands run here) cost 1.2 ms of PostgreSQL CPU per
        // new ticket, a third of the new-ticket ingest (`docs/benchmarks.md`).
        let pool = topology.pool(max_connections, Duration::ZERO, &[]);
        Ok(Database { topology, pool })
    }
}

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
/// [`Topology::pool`] adds the checks of a connection on its way out.
pub fn pool_options(max_connections: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(3))
        .test_before_acquire(false)
}

/// The delivery engine's own pool: same database and settings, separate connections.
///
/// Separate, because a burst of webhook requests queueing for the main pool's connections
/// must not hold back claims and outcome records (deliveries fell ever further behind
/// acceptance while each claim waited behind the requests; see `docs/benchmarks.md`).
///
/// Its sessions never scan a table sequentially, bitmap-scan or sort, its statements find
/// the rows they change by `ctid` (the claim returns each claimed row's), and the rules they
/// share are subqueries keyed by the delivery at hand (`outbox_rules`): every delivery
/// query is meant to walk one index in order and stop early. On a fresh or fast-growing
/// database (or one without autovacuum) the planner's statistics describe nearly empty
/// tables, where every plan costs the same; it chose to read and sort the whole backlog to
/// claim a few rows, found each claimed row through `(owner, created_at, id)` by reading
/// every delivery of the tenant, and (in the batched success record) found each successor
/// through an index on `owner` alone and picked successors out of a scan of every due
/// delivery, and it kept those plans while the tables grew. So every statement is also
/// planned for its own parameters at each run (`plan_cache_mode = force_custom_plan`): a
/// fresh plan sees the table's real size even where no `ANALYZE` ran. The batched success
/// record, whose planning cost about a millisecond of PostgreSQL CPU a batch, has a pool of
/// its own with generic plans ([`record_pool`]).
///
/// Its commits do not wait for the WAL flush (`synchronous_commit = off`; visibility to
/// other sessions is immediate, only durability trails by at most a few hundred
/// milliseconds, and on a replicated cluster these commits do not wait for a standby
/// either). What it writes is bookkeeping whose loss in a database crash or failover costs
/// only duplicate sends, which at-least-once delivery allows: a lost lease or a lost success
/// makes the delivery due again, and it is sent again, in its ticket's order. What the
/// webhooks accept is written through the intake's pool or the main pool, and always waits
/// for the flush (and for the synchronous standby).
pub fn delivery_pool(topology: &Topology, max_connections: u32) -> PgPool {
    let settings = [
        ("synchronous_commit", "off"),
        ("plan_cache_mode", "force_custom_plan"),
        ("enable_seqscan", "off"),
        ("enable_bitmapscan", "off"),
        ("enable_sort", "off"),
    ];
    topology.pool(max_connections, IDLE_BEFORE_PING, &settings)
}

/// The success recorder's own pool (`delivery::recorder`): the delivery pool's durability
/// (`synchronous_commit = off`: what it writes is bookkeeping whose loss costs only duplicate
/// sends) with the intake's plan rules ([`INTAKE_SESSION`]). Its statements name their rows
/// (by `ctid`, by primary and unique keys), so a generic plan serves them as well as a fresh
/// one once the statistics task has analyzed the tables (before that, on a fresh database,
/// its plan found a ticket's next delivery through an index holding every delivery of the
/// tenant: `crate::statistics_task` looks every second for that reason). Planning the batched
/// success record afresh cost about a millisecond of PostgreSQL CPU a batch, a fifth of
/// PostgreSQL's CPU at full load (`docs/benchmarks.md`).
pub fn record_pool(topology: &Topology, max_connections: u32) -> PgPool {
    let mut settings = INTAKE_SESSION.to_vec();
    settings.push(("synchronous_commit", "off"));
    topology.pool(max_connections, IDLE_BEFORE_PING, &settings)
}

/// The message intake's own pool ([`crate::intake::group_commit`]): same database and settings,
/// separate connections, so that batches never queue behind other requests' transactions.
///
/// Its sessions join only by nested loops over indexes: a batch names its tickets, and the
/// planner, left to its statistics, may prefer to hash-join them against a whole table, or
/// scan it, when it believes the table small (fresh databases, tables grown since the last
/// `ANALYZE`, servers without autovacuum). It always runs the generic plans it caches
/// (`force_generic_plan`), replaced as the tables grow by the statistics task's analyses
/// ([`crate::statistics_task`]): planning the batched message write afresh cost 1.1–1.3 ms
/// of PostgreSQL CPU a batch, a fifth of its CPU at 750 events/s, and PostgreSQL's own
/// choice (`auto`) kept planning it afresh. Without memoizing, hash aggregation or
/// materializing: a generic plan sizes them for the rows it cannot estimate, and a batch
/// holds a few.
/// Commits wait for the WAL flush: this is what the webhooks answer 2xx on.
pub fn intake_pool(topology: &Topology, max_connections: u32) -> PgPool {
    topology.pool(max_connections, IDLE_BEFORE_PING, &INTAKE_SESSION)
}

/// The session settings of [`intake_pool`]'s connections.
pub const INTAKE_SESSION: [(&str, &str); 8] = [
    ("enable_hashjoin", "off"),
    ("enable_mergejoin", "off"),
    ("enable_seqscan", "off"),
    ("enable_bitmapscan", "off"),
    ("plan_cache_mode", "force_generic_plan"),
    ("enable_memoize", "off"),
    ("enable_hashagg", "off"),
    ("enable_material", "off"),
];

/// How long a connection of a hot pool may sit idle before it is checked on the way out.
const IDLE_BEFORE_PING: Duration = Duration::from_secs(1);

/// Connects to a single-host `url` without waiting for the server: the first query opens
/// the first connection. (Tools and tests; the bridge itself goes through [`Database`].)
pub fn connect_lazy(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(3))
        .connect_lazy_with(connect_options(url)?))
}

/// The connect options of one single-host URL, with the bridge's session rules.
///
/// JIT compilation is turned off for the bridge's sessions: its queries are short or
/// index-driven, and PostgreSQL's JIT, which kicks in on cost estimates, added several
/// times the queries' own run time in compilation to the reports.
///
/// A server on the same machine (loopback or a Unix socket) is reached without TLS unless
/// the URL asks for an `sslmode`: encrypting loopback traffic protects nothing and was a
/// visible share of the bridge's and PostgreSQL's CPU under load.
pub fn connect_options(url: &str) -> Result<PgConnectOptions, sqlx::Error> {
    let mut options = PgConnectOptions::from_str(url)?.options([("jit", "off")]);
    if is_local(&options) && !asks_for_sslmode(url) {
        options = options.ssl_mode(PgSslMode::Disable);
    }
    Ok(options)
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
        // admin_shutdown, crash_shutdown, cannot_connect_now, too_many_connections, and
        // read_only_sql_transaction: a server demoted (or not yet writable) under a session
        // opened before; the topology moves the pools to the new primary.
        sqlx::Error::Database(e) => {
            matches!(e.code().as_deref(), Some("57P01" | "57P02" | "57P03" | "53300" | "25006"))
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
