//! Which server of a host list the bridge uses now, and following it through a failover.
//!
//! A [`Topology`] owns one database URL's hosts, the probe that tells what each server is
//! (`pg_is_in_recovery()` and a new session's `transaction_read_only`), the host in use, and
//! the pools that connect to it. Nothing else in the bridge knows there is more than one
//! server:
//!
//! - every pool made by [`Topology::pool`] connects to the host in use; a new connection is
//!   checked against `target_session_attrs` before it is handed out, and one opened before
//!   the last change of host is closed instead of being handed out;
//! - [`Topology::follow`] probes the host in use every second on its own connection. When
//!   that fails or the server no longer fits (it crashed, was shut down, was demoted), the
//!   host is marked lost: new connections are refused (requests answer `503 unavailable`,
//!   `/readyz` 503) while every host is probed four times a second; the first that fits
//!   takes every pool.
//!
//! A single host with `target_session_attrs=any` (the default) is used as before, with no
//! probe and no monitor.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgPool};
use sqlx::{ConnectOptions, Connection, PgConnection};
use tokio::sync::watch;

use super::database_url::{DatabaseUrl, HostUrl, ServerRole, SessionAttrs};
use crate::telemetry::names;

/// How often the host in use is probed.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// How often the hosts are probed while none fits: a promotion is taken up within this.
const SEARCH_EVERY: Duration = Duration::from_millis(250);
/// How long one probe may take (connect and query) before the server counts as away.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// How often "still no host" is logged while the bridge waits for one.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// The servers of one database URL and the pools that use them.
pub struct Topology {
    /// The variable the URL came from, for messages (`DATABASE_URL`, `BRIDGE_READ_DATABASE_URL`).
    pub variable: &'static str,
    url: DatabaseUrl,
    /// Each host's connect options, in the order of the list.
    options: Vec<PgConnectOptions>,
    shared: Arc<Shared>,
    /// Every pool made here, with its session settings, to move when the host changes.
    pools: Mutex<Vec<(PgPool, SessionSettings)>>,
    /// Whether this topology's host changes are the writing pools' failovers (metrics).
    writes: bool,
}

/// A pool's own session settings (`SET name = value` at connect), kept to rebuild its
/// connect options for another host.
type SessionSettings = Vec<(String, String)>;

/// What the pools' connect path reads, without a reference back to the pools.
struct Shared {
    attrs: SessionAttrs,
    /// Whether connections are checked against `attrs` (see [`DatabaseUrl::needs_probe`]).
    checks: bool,
    /// The host in use; `None` while no host fits.
    current: RwLock<Option<usize>>,
    /// When this topology was made; [`Shared::changed_at`] counts from it.
    epoch: Instant,
    /// When the host last changed, in nanoseconds after `epoch`: connections older than
    /// this are not handed out. An atomic, as every acquire of every pool reads it.
    changed_at: AtomicU64,
    /// The last host ever used, to count failovers (a change to another host).
    last: Mutex<Option<usize>>,
}

/// The outcome of probing one host.
pub struct Probe {
    pub host: HostUrl,
    pub outcome: Result<(ServerRole, f64), sqlx::Error>,
}

impl Topology {
    /// Parses `raw` (errors name the bad part). `writes` marks the topology of `DATABASE_URL`.
    pub fn new(variable: &'static str, raw: &str, writes: bool) -> Result<Arc<Self>, String> {
        let url = DatabaseUrl::parse(raw)?;
        let options = url
            .hosts()
            .iter()
            .map(|h| super::connect_options(&h.url).map_err(|e| format!("{}: {e}", h.label)))
            .collect::<Result<Vec<_>, _>>()?;
        let checks = url.needs_probe();
        let shared = Arc::new(Shared {
            attrs: url.attrs,
            checks,
            current: RwLock::new((!checks).then_some(0)),
            epoch: Instant::now(),
            changed_at: AtomicU64::new(0),
            last: Mutex::new(None),
        });
        Ok(Arc::new(Topology { variable, url, options, shared, pools: Mutex::new(Vec::new()), writes }))
    }

    pub fn attrs(&self) -> SessionAttrs {
        self.url.attrs
    }

    pub fn hosts(&self) -> &[HostUrl] {
        self.url.hosts()
    }

    /// The host in use, or `None` while no host fits the attribute.
    pub fn current(&self) -> Option<&HostUrl> {
        let current = *self.shared.current.read().unwrap_or_else(|e| e.into_inner());
        current.map(|i| &self.url.hosts()[i])
    }

    /// Whether probing is on (a host list, or an attribute to check).
    pub fn follows_failovers(&self) -> bool {
        self.shared.checks
    }

    /// A pool of at most `max` connections to the host in use, whose sessions also run with
    /// `settings`.
    ///
    /// A connection that sat idle for `ping_after` or longer is pinged before it is handed
    /// out: after a database restart the pool would otherwise hand out dead sockets, one
    /// failed request each. The main pool checks every connection (`Duration::ZERO`: its work
    /// is transactions of several statements and API reads, where one round trip more is
    /// cheap, and its connections sit idle most of the time); the hot pools of the intake and
    /// the delivery engine only connections idle for a second, so a busy one adds no round trip.
    pub fn pool(&self, max: u32, ping_after: Duration, settings: &[(&str, &str)]) -> PgPool {
        let settings: SessionSettings = settings.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        // Held while the pool is made, so that a change of host cannot slip in between.
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        let (for_connect, for_acquire) = (self.shared.clone(), self.shared.clone());
        let pool = super::pool_options(max)
            .after_connect(move |conn, _| {
                let shared = for_connect.clone();
                Box::pin(async move { shared.check_new_connection(conn).await })
            })
            .before_acquire(move |conn, meta| {
                let shared = for_acquire.clone();
                Box::pin(async move {
                    // Opened before the host changed: to the old host, which may still answer.
                    if meta.age > shared.since_change() {
                        return Ok(false);
                    }
                    if meta.idle_for < ping_after {
                        return Ok(true);
                    }
                    Ok(conn.ping().await.is_ok())
                })
            })
            .connect_lazy_with(self.options_for(self.current_index().unwrap_or(0), &settings));
        pools.push((pool.clone(), settings));
        pool
    }

    /// Probes every host at once.
    pub async fn survey(&self) -> Vec<Probe> {
        let probes = (0..self.options.len())
            .map(|i| async move { Probe { host: self.url.hosts()[i].clone(), outcome: self.probe(i).await } });
        futures::future::join_all(probes).await
    }

    /// Probes the hosts and moves every pool to the first that fits (for `prefer-standby`,
    /// the first standby, else the first that answers). The error lists what each host said.
    pub async fn find(&self) -> Result<&HostUrl, String> {
        let survey = self.survey().await;
        let role = |i: &usize| survey[*i].outcome.as_ref().ok().map(|(role, _)| *role);
        let fits = |i: &usize| role(i).is_some_and(|r| self.url.attrs.accepts(r));
        let standby = |i: &usize| role(i).is_some_and(|r| r.in_recovery);
        let chosen = match self.url.attrs {
            SessionAttrs::PreferStandby => (0..survey.len()).find(standby).or_else(|| (0..survey.len()).find(fits)),
            _ => (0..survey.len()).find(fits),
        };
        match chosen {
            Some(i) => {
                self.use_host(i);
                Ok(&self.url.hosts()[i])
            }
            None => Err(describe(&survey)),
        }
    }

    /// Waits until a host fits, logging what the hosts said every few seconds; gives up
    /// after `patience` (`None`: never).
    pub async fn wait_for_host(&self, patience: Option<Duration>) -> Result<&HostUrl, String> {
        let started = Instant::now();
        let mut logged: Option<Instant> = None;
        loop {
            let why = match self.find().await {
                Ok(host) => return Ok(host),
                Err(why) => why,
            };
            if patience.is_some_and(|p| started.elapsed() >= p) {
                return Err(why);
            }
            if logged.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
                tracing::warn!(variable = self.variable, wanted = self.url.attrs.as_str(), hosts = %why,
                    "no database host fits target_session_attrs yet; still trying");
                logged = Some(Instant::now());
            }
            tokio::time::sleep(SEARCH_EVERY).await;
        }
    }

    /// Follows the host in use until `shutdown`: probes it every second on a connection of
    /// its own, and on a failure (or a server that no longer fits) looks for another host.
    /// With `measure_lag`, also publishes `bridge_read_replica_lag_seconds`.
    pub async fn follow(self: Arc<Self>, measure_lag: bool, mut shutdown: watch::Receiver<bool>) {
        if !self.shared.checks && !measure_lag {
            return;
        }
        let mut watcher: Option<PgConnection> = None;
        let mut lost_at: Option<Instant> = None;
        let mut logged: Option<Instant> = None;
        loop {
            self.follow_once(measure_lag, &mut watcher, &mut lost_at, &mut logged).await;
            let pause = if self.current_index().is_some() { PROBE_EVERY } else { SEARCH_EVERY };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.changed() => break,
            }
        }
    }

    /// One step of [`Topology::follow`]: probe the host in use; if it is gone, look for another.
    async fn follow_once(
        &self,
        measure_lag: bool,
        watcher: &mut Option<PgConnection>,
        lost_at: &mut Option<Instant>,
        logged: &mut Option<Instant>,
    ) {
        {
            if let Some(i) = self.current_index() {
                match self.watch_once(i, watcher).await {
                    Ok((role, lag)) if self.url.attrs.accepts(role) => {
                        if measure_lag {
                            metrics::gauge!(names::READ_REPLICA_LAG).set(lag);
                        }
                        return;
                    }
                    Ok((role, _)) if self.shared.checks => {
                        tracing::warn!(variable = self.variable, host = %self.url.hosts()[i].label, %role,
                            wanted = self.url.attrs.as_str(), "the database host no longer fits; looking for another");
                    }
                    Err(e) if self.shared.checks => {
                        tracing::warn!(variable = self.variable, host = %self.url.hosts()[i].label, error = %e,
                            "lost the database host; looking for another");
                    }
                    // One host, any role: nothing to move to; the pools reconnect by themselves.
                    _ => return,
                }
                *watcher = None;
                self.lose_host();
                *lost_at = Some(Instant::now());
            }
            match self.find().await {
                Ok(host) => {
                    let after = lost_at.take().map(|t| t.elapsed());
                    tracing::info!(variable = self.variable, host = %host.label, after = ?after,
                        "using database host");
                    *logged = None;
                }
                Err(why) if logged.is_none_or(|t| t.elapsed() >= LOG_EVERY) => {
                    tracing::warn!(variable = self.variable, wanted = self.url.attrs.as_str(), hosts = %why,
                        "no database host fits target_session_attrs; requests answer 503 until one does");
                    *logged = Some(Instant::now());
                }
                Err(_) => {}
            }
        }
    }

    /// Closes every pool made here.
    pub async fn close(&self) {
        let pools: Vec<PgPool> =
            self.pools.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(p, _)| p.clone()).collect();
        for pool in pools {
            pool.close().await;
        }
    }

    fn current_index(&self) -> Option<usize> {
        *self.shared.current.read().unwrap_or_else(|e| e.into_inner())
    }

    fn options_for(&self, i: usize, settings: &[(String, String)]) -> PgConnectOptions {
        self.options[i].clone().options(settings.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    /// Moves every pool to host `i` (a no-op when it is in use already).
    fn use_host(&self, i: usize) {
        {
            // Lock order: pools, then current (as in `pool`).
            let pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
            let mut current = self.shared.current.write().unwrap_or_else(|e| e.into_inner());
            if *current == Some(i) {
                return;
            }
            for (pool, settings) in pools.iter() {
                pool.set_connect_options(self.options_for(i, settings));
            }
            let nanos = u64::try_from(self.shared.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
            self.shared.changed_at.store(nanos, Ordering::Release);
            *current = Some(i);
        }
        let previous = self.shared.last.lock().unwrap_or_else(|e| e.into_inner()).replace(i);
        if self.writes {
            if previous.is_some_and(|p| p != i) {
                metrics::counter!(names::DATABASE_FAILOVERS).increment(1);
            }
            self.publish_primary(Some(i));
        }
    }

    /// No host fits now: new connections are refused until [`Topology::find`] finds one.
    fn lose_host(&self) {
        *self.shared.current.write().unwrap_or_else(|e| e.into_inner()) = None;
        if self.writes {
            self.publish_primary(None);
        }
    }

    fn publish_primary(&self, current: Option<usize>) {
        for (n, host) in self.url.hosts().iter().enumerate() {
            let value = if current == Some(n) { 1.0 } else { 0.0 };
            metrics::gauge!(names::DATABASE_PRIMARY, "host" => host.label.clone()).set(value);
        }
    }

    /// Connects to host `i` on a connection of its own and asks what it is. A database that
    /// does not exist yet (first start) is probed through the `postgres` database.
    async fn probe(&self, i: usize) -> Result<(ServerRole, f64), sqlx::Error> {
        let connect = |options: PgConnectOptions| async move {
            let mut conn = tokio::time::timeout(PROBE_TIMEOUT, options.connect()).await.map_err(|_| timed_out())??;
            let role = tokio::time::timeout(PROBE_TIMEOUT, ask_role(&mut conn)).await.map_err(|_| timed_out())?;
            let _ = conn.close().await;
            role
        };
        match connect(self.options[i].clone()).await {
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("3D000") => {
                connect(self.options[i].clone().database("postgres")).await
            }
            outcome => outcome,
        }
    }

    /// One probe of the host in use, on the monitor's own connection (opened when missing).
    async fn watch_once(&self, i: usize, watcher: &mut Option<PgConnection>) -> Result<(ServerRole, f64), sqlx::Error> {
        let outcome = tokio::time::timeout(PROBE_TIMEOUT, async {
            let conn = match watcher {
                Some(conn) => conn,
                None => watcher.insert(self.options[i].connect().await?),
            };
            ask_role(conn).await
        })
        .await
        .unwrap_or_else(|_| Err(timed_out()));
        if outcome.is_err() {
            *watcher = None;
        }
        outcome
    }
}

impl Shared {
    /// How long ago the host last changed (since the topology was made, if never).
    fn since_change(&self) -> Duration {
        let changed = self.epoch + Duration::from_nanos(self.changed_at.load(Ordering::Acquire));
        changed.elapsed()
    }

    /// The pools' check of every new connection: refused while no host fits, or when the
    /// server it reached does not fit the attribute (a demoted primary answering again).
    async fn check_new_connection(&self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        if !self.checks {
            return Ok(());
        }
        if self.current.read().unwrap_or_else(|e| e.into_inner()).is_none() {
            return Err(not_fitting(format!("no database host is {} now", self.attrs.as_str())));
        }
        // `any` and `prefer-standby` take whatever server answers: no round trip to ask.
        if matches!(self.attrs, SessionAttrs::Any | SessionAttrs::PreferStandby) {
            return Ok(());
        }
        let (role, _) = ask_role(conn).await?;
        if self.attrs.accepts(role) {
            Ok(())
        } else {
            Err(not_fitting(format!("the database host is {role}, not {}", self.attrs.as_str())))
        }
    }
}

/// What the server is, and (for a standby) how many seconds its replay trails.
async fn ask_role(conn: &mut PgConnection) -> Result<(ServerRole, f64), sqlx::Error> {
    let (in_recovery, read_only, lag): (bool, bool, f64) = sqlx::query_as(
        "SELECT pg_is_in_recovery(), current_setting('transaction_read_only') = 'on',
                CASE WHEN NOT pg_is_in_recovery() OR pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
                     ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0) END::float8",
    )
    .fetch_one(conn)
    .await?;
    Ok((ServerRole { in_recovery, read_only }, lag))
}

/// A connection refused by the topology: an I/O error, so the HTTP edge answers 503.
fn not_fitting(why: String) -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::new(std::io::ErrorKind::NotConnected, why))
}

fn timed_out() -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, "the database host did not answer in time"))
}

/// One line of what each host said: `127.0.0.1:6001: standby; 127.0.0.1:6002: connection refused`.
fn describe(survey: &[Probe]) -> String {
    let parts: Vec<String> = survey
        .iter()
        .map(|p| match &p.outcome {
            Ok((role, _)) => format!("{}: {role}", p.host.label),
            Err(e) => format!("{}: {e}", p.host.label),
        })
        .collect();
    parts.join("; ")
}
