//! Builds the running service: database, HTTP server and delivery workers, and stops
//! them in order. Tests start the same thing on port 0.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::PgPool;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::config::{redact_url, Config};
use crate::delivery::Dispatcher;
use crate::dolphins::client::DolphinsClient;
use crate::dolphins::token::TokenCache;
use crate::group_commit::GroupCommit;
use crate::heartbeat::Heartbeat;
use crate::http::{self, AppState};
use crate::secrets::Sealer;
use crate::store;
use crate::tenancy;

/// Creates the database if missing, connects, and (unless told not to) migrates.
pub async fn prepare_database(config: &Config, migrate: bool) -> anyhow::Result<PgPool> {
    let url = &config.database_url;
    let mut wait = Duration::from_millis(250);
    // PostgreSQL may still be starting (containers): try for about half a minute.
    let created = loop {
        match store::create_database_if_missing(url).await {
            Ok(created) => break created,
            Err(e) if store::is_unavailable(&e) && wait < Duration::from_secs(16) => {
                tracing::warn!(database = %redact_url(url), error = %e, "database not reachable yet; retrying");
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            Err(e) if store::is_unavailable(&e) => {
                return Err(e).with_context(|| format!("cannot reach the database at {}", redact_url(url)))
            }
            // E.g. no right to open the maintenance database: the database may well exist;
            // connecting to it below says for sure.
            Err(e) => {
                tracing::warn!(error = %e, "could not check whether the database exists; trying to use it");
                break false;
            }
        }
    };
    if created {
        tracing::info!(database = %redact_url(url), "created the database");
    }
    let pool = store::connect_lazy(url, pool_size(config)).context("DATABASE_URL")?;
    if migrate {
        store::MIGRATOR.run(&pool).await.context("applying migrations")?;
    }
    Ok(pool)
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

/// Connections of the main pool (HTTP requests, housekeeping): as many as workers plus
/// eight, at most 64. PostgreSQL gains nothing from more sessions than it has cores to
/// run them; the rest wait in the pool's queue.
pub fn pool_size(config: &Config) -> u32 {
    u32::try_from(config.workers).unwrap_or(16).saturating_add(8).min(64)
}

/// Connections of the delivery engine's own pool: the claim loop, the success recorder,
/// and failures recorded one by one.
const DELIVERY_CONNECTIONS: u32 = 4;

/// Connections of the message intake's own pool: the most group-commit writers at once.
/// One writes while less than a batch waits (measured on 2 cores, 32 senders: one writer
/// 4 300–4 900 events/s, two 3 750–4 490, four 3 785–4 295: fewer writers make bigger
/// batches, and each statement costs about the same); the others start when the queue
/// outgrows a batch, or a slow statement holds the first one up.
const INTAKE_WRITERS: u32 = 4;

/// A running bridge.
pub struct App {
    pub address: SocketAddr,
    pub pool: PgPool,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<()>,
    dispatcher: Option<JoinHandle<()>>,
    housekeeping: Option<JoinHandle<()>>,
}

/// Options for [`start`].
pub struct StartOptions {
    /// Run the delivery workers and housekeeping in this process (tests may drive
    /// `Dispatcher::run_once` and `housekeeping::run_once` instead).
    pub workers: bool,
}

impl Default for StartOptions {
    fn default() -> Self {
        StartOptions { workers: true }
    }
}

/// Binds `config.listen` (port 0 picks a free port) and starts serving.
pub async fn start(config: Config, pool: PgPool, clock: Arc<dyn Clock>, options: StartOptions) -> anyhow::Result<App> {
    tracing::info!(config = ?config, "effective configuration");
    let config = Arc::new(config);
    crate::telemetry::metrics();
    let heartbeat = Heartbeat::new(config.lease.max(Duration::from_secs(10)));
    let (shutdown, shutdown_rx) = watch::channel(false);
    let housekeeping = options
        .workers
        .then(|| tokio::spawn(crate::housekeeping::run(pool.clone(), clock.clone(), shutdown_rx.clone())));
    let (dispatcher, direct) = if options.workers {
        let delivery_pool = store::delivery_pool(&pool, DELIVERY_CONNECTIONS);
        let dispatcher = Dispatcher::new(delivery_pool, config.clone(), clock.clone(), heartbeat.clone())
            .context("building the HTTP client")?;
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
    let openapi = Arc::new(crate::http::spec());
    let intake = GroupCommit::new(store::intake_pool(&pool, INTAKE_WRITERS), INTAKE_WRITERS as usize, direct);
    let state = AppState {
        pool: pool.clone(),
        intake,
        config: config.clone(),
        clock,
        workers: heartbeat,
        keys,
        limiter,
        openapi,
        dolphins,
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on BRIDGE_LISTEN={}", config.listen))?;
    let address = listener.local_addr()?;
    let router = http::router(state);
    let (max_connections, header_timeout) = (config.max_connections, config.header_timeout);
    let server = tokio::spawn(crate::server::serve(listener, router, max_connections, header_timeout, shutdown_rx));
    tracing::info!(%address, "dolphin-bridge listening");
    Ok(App { address, pool, shutdown, server, dispatcher, housekeeping })
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
        if let Some(housekeeping) = self.housekeeping {
            let _ = housekeeping.await;
        }
        self.pool.close().await;
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

async fn wait_for_signal() {
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
