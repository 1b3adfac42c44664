//! Builds the running service: database, HTTP server and delivery workers, and stops
//! them in order. Tests start the same thing on port 0.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::PgPool;
use store::topology::Topology;
use store::Database;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::config::{redact_url, Config};
use crate::delivery::Dispatcher;
use crate::dolphins::client::DolphinsClient;
use crate::dolphins::token::TokenCache;
use crate::heartbeat::Heartbeat;
use crate::http::{self, AppState};
use crate::intake::group_commit::GroupCommit;
use crate::secrets::Sealer;
use crate::store;
use crate::tenancy;

/// How long `prepare_database` waits for a host of `DATABASE_URL` that fits.
#[derive(Debug, Clone, Copy)]
pub enum Patience {
    /// One-shot commands: about half a minute (PostgreSQL may still be starting), then an error.
    Briefly,
    /// `serve`: until one fits, logging what the hosts say every few seconds (never a crash loop).
    Forever,
}

/// Finds the host to write to, creates the database there if missing, connects, and
/// (unless told not to) migrates.
pub async fn prepare_database(config: &Config, migrate: bool, patience: Patience) -> anyhow::Result<Database> {
    let db =
        Database::lazy(&config.database_url, pool_size(config)).map_err(anyhow::Error::msg).context("DATABASE_URL")?;
    let topology = &db.topology;
    if topology.hosts().len() > 1 && topology.attrs() == store::database_url::SessionAttrs::Any {
        tracing::warn!("DATABASE_URL lists several hosts with target_session_attrs=any: add target_session_attrs=read-write, or the bridge may write to a standby after a failover");
    }
    let wait = match patience {
        Patience::Briefly => Some(Duration::from_secs(30)),
        Patience::Forever => None,
    };
    let url = loop {
        let host = topology.wait_for_host(wait).await.map_err(|why| {
            anyhow::anyhow!("cannot reach the database at {}: {why}", redact_url(&config.database_url))
        })?;
        let url = host.url.clone();
        match store::create_database_if_missing(&url).await {
            Ok(true) => tracing::info!(database = %redact_url(&url), "created the database"),
            Ok(false) => {}
            // Lost it again between the probe and the check: look again.
            Err(e) if store::is_unavailable(&e) => {
                tracing::warn!(database = %redact_url(&url), error = %e, "database not reachable; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            // E.g. no right to open the maintenance database: the database may well exist;
            // connecting to it below says for sure.
            Err(e) => tracing::warn!(error = %e, "could not check whether the database exists; trying to use it"),
        }
        break url;
    };
    tracing::info!(database = %redact_url(&url), "using the database");
    if migrate {
        store::MIGRATOR.run(&db.pool).await.context("applying migrations")?;
    }
    Ok(db)
}

/// Binds `config.listen` for `serve`, before the database is ready (see [`WaitingServer`]).
pub fn bind(config: &Config) -> anyhow::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(config.listen)
        .with_context(|| format!("cannot listen on BRIDGE_LISTEN={}", config.listen))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// What `serve` answers while it waits for the database: `/healthz` 200, `/readyz` 503,
/// everything else `503 unavailable`. An orchestrator sees a live process that is not ready
/// (instead of a crash loop), and a 3Dolphins retry is told nothing was stored.
pub struct WaitingServer {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl WaitingServer {
    /// Serves on a copy of `listener`'s socket; [`start`] takes the socket over after [`WaitingServer::stop`].
    pub fn start(listener: &std::net::TcpListener, config: &Config) -> anyhow::Result<WaitingServer> {
        let copy = tokio::net::TcpListener::from_std(listener.try_clone()?)?;
        let (stop, stopped) = watch::channel(false);
        let router = http::ops::waiting_router();
        let task = tokio::spawn(crate::server::serve(copy, router, 64, config.header_timeout, stopped));
        Ok(WaitingServer { stop, task })
    }

    /// Stops accepting on the copy and lets the requests in flight finish.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Refuses to start when sealed secrets cannot be opened (no key or a wrong one), and
/// warns about secrets in the clear.
pub async fn check_secrets(pool: &sqlx::PgPool, config: &Config) -> anyhow::Result<()> {
    let clear = tenancy::check_secrets(pool, &Sealer::new(config.secret_key))
        .await
        .context("checking the stored peer secrets")?;
    match (config.secret_key.is_some(), clear) {
        (false, _) => tracing::warn!(
            "BRIDGE_SECRET_KEY is not set: signing secrets and 3Dolphins passwords are stored in the clear"
        ),
        (true, n) if n > 0 => {
            tracing::warn!(
                secrets = n,
                "some peer secrets are still in the clear: run `dolphin-bridge encrypt-secrets`"
            )
        }
        _ => {}
    }
    Ok(())
}

/// Connections of the reports' pool (`AppState::report_pool`).
const REPORT_CONNECTIONS: u32 = 2;

/// Connections of the main pool (HTTP requests, housekeeping): as many as workers plus
/// eight, at most 64. PostgreSQL gains nothing from more sessions than it has cores to
/// run them; the rest wait in the pool's queue.
pub fn pool_size(config: &Config) -> u32 {
    u32::try_from(config.workers).unwrap_or(16).saturating_add(8).min(64)
}

/// Connections of the delivery engine's own pool: the claim loop, the success recorder,
/// and failures recorded one by one.
const DELIVERY_CONNECTIONS: u32 = 4;

/// Connections of the success recorder's own pool: its two batches in flight, and the claim
/// of successors one of them could not see.
const RECORD_CONNECTIONS: u32 = 3;

/// Connections of the message intake's own pool: the most group-commit writers at once.
/// One writes while less than a batch waits (fewer writers make bigger batches, and each
/// statement costs about the same; `docs/benchmarks.md` has the measurements); the others
/// start when the queue outgrows a batch, or a slow statement holds the first one up.
const INTAKE_WRITERS: u32 = 4;

/// A running bridge.
pub struct App {
    pub address: SocketAddr,
    pub pool: PgPool,
    /// The servers of `DATABASE_URL`, and of `BRIDGE_READ_DATABASE_URL` when set.
    topologies: Vec<Arc<Topology>>,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<()>,
    dispatcher: Option<JoinHandle<()>>,
    /// Claims of this process's dispatcher that ran out before their outcome was recorded
    /// (0 without workers).
    pub lost_leases: Arc<std::sync::atomic::AtomicU64>,
    /// Housekeeping and the report rollups.
    background: Vec<JoinHandle<()>>,
    followers: Vec<JoinHandle<()>>,
}

/// Options for [`start`].
pub struct StartOptions {
    /// Run the delivery workers, housekeeping, the report rollups and the backlog alerts in
    /// this process (tests may drive `Dispatcher::run_once`, `housekeeping::run_once`,
    /// `rollup_task::run_once` and `alert_task::run_once` instead).
    pub workers: bool,
    /// A socket bound already (by `serve`, which answers 503 on it while it waits for the
    /// database); `None`: bind `config.listen`.
    pub listener: Option<std::net::TcpListener>,
    /// Wraps the whole router, outside every layer of its own: how an embedding watches
    /// every exchange (the integration suite checks each reply against `/openapi.json`).
    pub wrap: Option<RouterWrap>,
}

/// See [`StartOptions::wrap`].
pub type RouterWrap = Box<dyn FnOnce(axum::Router) -> axum::Router + Send>;

impl Default for StartOptions {
    fn default() -> Self {
        StartOptions { workers: true, listener: None, wrap: None }
    }
}

/// Binds `config.listen` (port 0 picks a free port), or takes `options.listener`, and
/// starts serving.
pub async fn start(config: Config, db: Database, clock: Arc<dyn Clock>, options: StartOptions) -> anyhow::Result<App> {
    tracing::info!(config = ?config, "effective configuration");
    let config = Arc::new(config);
    crate::telemetry::metrics();
    let heartbeat = Heartbeat::new(config.lease.max(Duration::from_secs(10)));
    let (shutdown, shutdown_rx) = watch::channel(false);
    let Database { topology, pool } = db;
    let mut topologies = vec![topology.clone()];
    let mut followers = vec![tokio::spawn(topology.clone().follow(false, shutdown_rx.clone()))];
    let (read_pool, report_pool) = match &config.read_database_url {
        Some(url) => {
            let reads = Topology::new("BRIDGE_READ_DATABASE_URL", url, false).map_err(anyhow::Error::msg)?;
            let pools = (
                reads.pool(pool_size(&config), Duration::ZERO, &[]),
                reads.pool(REPORT_CONNECTIONS, Duration::ZERO, &[]),
            );
            followers.push(tokio::spawn(reads.clone().follow(true, shutdown_rx.clone())));
            topologies.push(reads);
            pools
        }
        None => (pool.clone(), topology.pool(REPORT_CONNECTIONS, Duration::ZERO, &[])),
    };
    let background = if options.workers {
        vec![
            tokio::spawn(crate::housekeeping::run(pool.clone(), clock.clone(), shutdown_rx.clone())),
            tokio::spawn(crate::rollup_task::run(
                pool.clone(),
                clock.clone(),
                crate::rollup_task::lag(config.request_timeout),
                shutdown_rx.clone(),
            )),
            tokio::spawn(crate::alert_task::run(pool.clone(), clock.clone(), shutdown_rx.clone())),
            tokio::spawn(crate::statistics_task::run(pool.clone(), shutdown_rx.clone())),
        ]
    } else {
        Vec::new()
    };
    let mut lost_leases = Arc::default();
    let (dispatcher, direct) = if options.workers {
        let delivery_pool = store::delivery_pool(&topology, DELIVERY_CONNECTIONS);
        let dispatcher = Dispatcher::new(delivery_pool, config.clone(), clock.clone(), heartbeat.clone())
            .context("building the HTTP client")?
            .with_record_pool(store::record_pool(&topology, RECORD_CONNECTIONS));
        lost_leases = dispatcher.lost_leases();
        let (direct, handoffs) = dispatcher.direct_dispatch();
        (Some(tokio::spawn(dispatcher.run(shutdown_rx.clone(), Some(handoffs)))), Some(direct))
    } else {
        heartbeat.beat();
        (None, None)
    };
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .build()
        .context("building the HTTP client")?;
    let dolphins = DolphinsClient::new(http, TokenCache::default());
    let keys = crate::http::key_cache::KeyCache::default();
    let limiter = crate::http::rate_limit::RateLimiter::new(config.rate_limit);
    let group_commit = GroupCommit::new(
        store::intake_pool(&topology, INTAKE_WRITERS),
        INTAKE_WRITERS as usize,
        config.intake_window,
        direct,
    );
    let state = AppState {
        pool: pool.clone(),
        read_pool,
        report_pool,
        database: topology.clone(),
        group_commit,
        config: config.clone(),
        clock,
        workers: heartbeat,
        keys,
        limiter,
        dolphins,
    };
    let listener = match options.listener {
        Some(bound) => tokio::net::TcpListener::from_std(bound)?,
        None => tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on BRIDGE_LISTEN={}", config.listen))?,
    };
    let address = listener.local_addr()?;
    let router = http::router(state);
    let router = match options.wrap {
        Some(wrap) => wrap(router),
        None => router,
    };
    let (max_connections, header_timeout) = (config.max_connections, config.header_timeout);
    let server = tokio::spawn(crate::server::serve(listener, router, max_connections, header_timeout, shutdown_rx));
    tracing::info!(%address, "dolphin-bridge listening");
    Ok(App { address, pool, topologies, shutdown, server, dispatcher, lost_leases, background, followers })
}

impl App {
    /// Stops accepting, finishes in-flight requests and delivery attempts, then returns.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        if let Err(e) = self.server.await {
            tracing::error!(error = %e, "HTTP server task panicked");
        }
        if let Some(dispatcher) = self.dispatcher {
            let _ = dispatcher.await;
        }
        for task in self.background {
            let _ = task.await;
        }
        for follower in self.followers {
            let _ = follower.await;
        }
        for topology in &self.topologies {
            topology.close().await;
        }
        tracing::info!("dolphin-bridge stopped");
    }

    /// Runs until SIGTERM or Ctrl-C, then stops gracefully.
    pub async fn run_until_signal(self) {
        self.run_until_signal_then(async {}).await;
    }

    /// Like [`App::run_until_signal`], running `before_stop` (e.g. stopping traffic
    /// generators) between the signal and the shutdown.
    pub async fn run_until_signal_then(self, before_stop: impl std::future::Future<Output = ()>) {
        wait_for_signal().await;
        tracing::info!("shutdown requested");
        before_stop.await;
        self.stop().await;
    }
}

/// Returns on Ctrl-C or SIGTERM.
pub async fn wait_for_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
