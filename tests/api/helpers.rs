//! The test harness: the real application on port 0 against a fresh PostgreSQL database,
//! real HTTP receivers standing in for both peers, and typed request helpers.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use dolphin_bridge::clock::ShiftedClock;
use dolphin_bridge::config::Config;
use dolphin_bridge::delivery::Dispatcher;
use dolphin_bridge::heartbeat::Heartbeat;
use dolphin_bridge::startup::{self, App, StartOptions};
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
pub const OWNER: &str = "9c2f4e7a1b3d5c6e8f0a1b2c3d4e5f60";

/// The server part of the test database URL (no database name): `DATABASE_URL`'s, else the
/// server on 127.0.0.1:5432, else a private cluster started once for the whole run from the
/// installed server binaries (its watchdog stops it when the test process ends).
pub fn server_url() -> String {
    static CHOSEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    static PRIVATE: std::sync::OnceLock<dolphin_bridge::embedded_db::Cluster> = std::sync::OnceLock::new();
    let url = CHOSEN.get_or_init(|| match std::env::var("DATABASE_URL") {
        Ok(url) => url,
        Err(_) if dolphin_bridge::embedded_db::answers(([127, 0, 0, 1], 5432).into()) => {
            "postgres://postgres@127.0.0.1:5432/postgres".into()
        }
        Err(_) => {
            let cluster = PRIVATE.get_or_init(|| {
                let started = dolphin_bridge::embedded_db::Cluster::start_temporary();
                started.unwrap_or_else(|e| panic!("no DATABASE_URL, nothing on 127.0.0.1:5432, and {e:#}"))
            });
            eprintln!("tests use a private PostgreSQL: {}", cluster.url("postgres"));
            cluster.url("postgres")
        }
    });
    let url = url.clone();
    match url.rfind('/') {
        Some(i) if url[..i].contains("://") && i > url.find("://").unwrap_or(0) + 2 => url[..i].to_string(),
        _ => url,
    }
}

/// A fixture from `tests/fixtures/3dolphins/`.
pub fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/3dolphins/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).expect("fixtures are valid JSON")
}

/// One request a receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("deliveries are JSON")
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Default)]
struct ReceiverState {
    received: Vec<Received>,
    /// Scripted replies, used in order; when empty, 200 `{"status":"success"}`.
    script: Vec<ScriptedReply>,
    /// How long to think before answering (a slow peer).
    delay: Duration,
}

/// A reply a receiver gives once: status, headers, body.
struct ScriptedReply(u16, Vec<(String, String)>, String);

/// A real HTTP peer on a random port that records what it gets and answers as scripted.
#[derive(Clone)]
pub struct Receiver {
    pub address: SocketAddr,
    state: Arc<Mutex<ReceiverState>>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        Self::start_on("127.0.0.1:0".parse().expect("address")).await
    }

    /// A receiver on a chosen address (to bring a "down" peer up where it was expected).
    pub async fn start_on(address: SocketAddr) -> Receiver {
        let state = Arc::new(Mutex::new(ReceiverState::default()));
        let app = axum::Router::new().fallback(record).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind(address).await.expect("bind receiver");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { address, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Queues a reply for the next request.
    pub fn reply_next(&self, status: u16, headers: &[(&str, &str)], body: &str) {
        let headers = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.state.lock().expect("receiver lock").script.push(ScriptedReply(status, headers, body.to_string()));
    }

    /// Makes every later reply wait `delay` (requests are recorded on arrival).
    pub fn set_delay(&self, delay: Duration) {
        self.state.lock().expect("receiver lock").delay = delay;
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().expect("receiver lock").received.clone()
    }

    pub fn received_at(&self, path: &str) -> Vec<Received> {
        self.received().into_iter().filter(|r| r.path == path).collect()
    }

    /// Waits until `n` requests arrived at `path`, failing after a deadline.
    pub async fn wait_for(&self, path: &str, n: usize) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let got = self.received_at(path);
            if got.len() >= n {
                return got;
            }
            assert!(tokio::time::Instant::now() < deadline, "waited for {n} requests at {path}, got {}", got.len());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn record(
    State(state): State<Arc<Mutex<ReceiverState>>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let (ScriptedReply(status, headers, body), delay) = {
        let mut s = state.lock().expect("receiver lock");
        s.received.push(Received { path: uri.path().to_string(), headers, body });
        let reply = if s.script.is_empty() {
            let json = vec![("content-type".to_string(), "application/json".to_string())];
            ScriptedReply(200, json, r#"{"status":"success"}"#.to_string())
        } else {
            s.script.remove(0)
        };
        (reply, s.delay)
    };
    tokio::time::sleep(delay).await;
    let mut response = (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), body).into_response();
    for (k, v) in headers {
        if let (Ok(name), Ok(value)) = (k.parse::<axum::http::HeaderName>(), v.parse()) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

/// The credentials of a tenant made through the admin API.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub owner: String,
    pub inbound: String,
    pub third_party: String,
    pub read: String,
    pub signing_secret: String,
    pub created: Value,
}

/// The running bridge and its helpers.
pub struct TestApp {
    pub address: SocketAddr,
    pub pool: PgPool,
    pub db_name: String,
    pub http: reqwest::Client,
    pub clock: ShiftedClock,
    pub config: Config,
    /// Stands in for the third party.
    pub third_party: Receiver,
    /// Stands in for 3Dolphins.
    pub dolphins: Receiver,
    app: Option<App>,
    /// Whether the app's own workers deliver (else [`TestApp::dispatch`] steps a dispatcher).
    workers: bool,
    dispatcher: std::sync::OnceLock<Dispatcher>,
    /// Attempts recorded when [`TestApp::dispatch`] last returned.
    attempts_seen: std::sync::atomic::AtomicI64,
    /// What the app's replies broke of `/openapi.json` ([`crate::schema_check`]).
    pub violations: crate::schema_check::Violations,
}

/// How to start a test app.
pub struct Options {
    /// Run delivery workers in the app, as `serve` does (the default: direct dispatch, the
    /// batch recorder and successor claims are what every delivery test exercises). Off, the
    /// test steps deliveries itself with [`TestApp::dispatch`], one claim at a time.
    pub workers: bool,
    pub admin_token: Option<&'static str>,
    /// Extra environment-style settings.
    pub env: Vec<(&'static str, String)>,
    /// Connect through this address instead of PostgreSQL directly (the outage proxy).
    pub via: Option<SocketAddr>,
    /// Use this `DATABASE_URL` (a host list, say) as `serve` would: found, created and
    /// migrated by `startup::prepare_database`, and not dropped at the end.
    pub database_url: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options { workers: true, admin_token: Some(ADMIN_TOKEN), env: Vec::new(), via: None, database_url: None }
    }
}

impl TestApp {
    /// The app as `serve` runs it, workers on.
    pub async fn spawn() -> TestApp {
        Self::spawn_with(Options::default()).await
    }

    /// The app with its workers off, for tests that look between single delivery steps
    /// ([`TestApp::dispatch`] runs `Dispatcher::run_once` until nothing is due).
    pub async fn spawn_stepped() -> TestApp {
        Self::spawn_with(Options { workers: false, ..Options::default() }).await
    }

    pub async fn spawn_with(options: Options) -> TestApp {
        let db_name = format!("dbt_{}", Uuid::new_v4().simple());
        let server = server_url();
        let direct_url = format!("{server}/{db_name}");
        let app_url = match (&options.database_url, options.via) {
            (Some(url), _) => url.clone(),
            (None, Some(proxy)) => {
                let (scheme_user, _) = server.rsplit_once('@').unwrap_or(("postgres://postgres", ""));
                format!("{scheme_user}@{proxy}/{db_name}")
            }
            (None, None) => direct_url.clone(),
        };
        let mut env: Vec<(&str, String)> = vec![
            ("DATABASE_URL", app_url),
            ("BRIDGE_LISTEN", "127.0.0.1:0".into()),
            ("BRIDGE_WORKERS", "4".into()),
            ("BRIDGE_RETRY_SCHEDULE", "1s,2s".into()),
            ("BRIDGE_DELIVERY_TIMEOUT", "5s".into()),
        ];
        if let Some(token) = options.admin_token {
            env.push(("BRIDGE_ADMIN_TOKEN", token.into()));
        }
        env.extend(options.env);
        let config = Config::from_lookup(|k| env.iter().rev().find(|(name, _)| *name == k).map(|(_, v)| v.clone()))
            .expect("test configuration is valid");
        let db = if options.database_url.is_some() {
            startup::prepare_database(&config, true, startup::Patience::Briefly).await.expect("prepare the database")
        } else {
            // Create and migrate directly, then let the app use its own URL (maybe the proxy).
            let setup = dolphin_bridge::store::create_database_if_missing(&direct_url).await;
            setup.expect("create the test database");
            let direct = dolphin_bridge::store::connect_lazy(&direct_url, 2).expect("pool");
            dolphin_bridge::store::MIGRATOR.run(&direct).await.expect("migrate");
            direct.close().await;
            dolphin_bridge::store::Database::lazy(&config.database_url, 5).expect("pool")
        };
        let pool = db.pool.clone();
        let clock = ShiftedClock::default();
        let violations = crate::schema_check::Violations::default();
        let app = startup::start(
            config.clone(),
            db,
            Arc::new(clock.clone()),
            StartOptions { workers: options.workers, listener: None, wrap: Some(violations.wrap()) },
        )
        .await
        .expect("start the app");
        TestApp {
            address: app.address,
            pool,
            db_name: if options.database_url.is_some() { String::new() } else { db_name },
            http: reqwest::Client::new(),
            clock,
            config,
            third_party: Receiver::start().await,
            dolphins: Receiver::start().await,
            app: Some(app),
            workers: options.workers,
            dispatcher: std::sync::OnceLock::new(),
            attempts_seen: std::sync::atomic::AtomicI64::new(0),
            violations,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// The app's (shifted) time.
    pub fn clock_now(&self) -> chrono::DateTime<chrono::Utc> {
        use dolphin_bridge::clock::Clock;
        self.clock.now()
    }

    /// Creates a tenant whose every endpoint points at the two receivers.
    pub async fn create_tenant(&self, owner: &str) -> Tenant {
        self.create_tenant_with(json!({
            "owner": owner,
            "name": "Test tenant",
            "thirdParty": {
                "incomingUrl": self.third_party.url("/incoming"),
                "outgoingUrl": self.third_party.url("/outgoing"),
                "commandUrl": self.third_party.url("/command"),
                "headers": {"X-Api-Key": "tp-header-value"}
            },
            "dolphins": {
                "sendMessageUrl": self.dolphins.url("/send"),
                "commandUrl": self.dolphins.url("/command")
            }
        }))
        .await
    }

    pub async fn create_tenant_with(&self, body: Value) -> Tenant {
        let response = self.admin_post("/admin/v1/tenants", &body).await;
        assert_eq!(response.status(), 201, "tenant creation");
        let created: Value = response.json().await.expect("JSON reply");
        let c = &created["credentials"];
        let text = |k: &str| c[k].as_str().expect("credential present").to_string();
        Tenant {
            owner: created["owner"].as_str().expect("owner").to_string(),
            inbound: text("inboundToken"),
            third_party: text("thirdPartyKey"),
            read: text("readKey"),
            signing_secret: text("signingSecret"),
            created,
        }
    }

    pub async fn admin_post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http.post(self.url(path)).bearer_auth(ADMIN_TOKEN).json(body).send().await.expect("request")
    }

    /// POSTs to a 3Dolphins-side webhook with the inbound token in the query, as 3Dolphins does.
    pub async fn post_as_dolphins(&self, endpoint: &str, tenant: &Tenant, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url(&format!("/webhooks/3dolphins/{endpoint}?token={}", tenant.inbound)))
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// POSTs to a third-party-side webhook with its bearer key.
    pub async fn post_as_third_party(&self, endpoint: &str, tenant: &Tenant, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url(&format!("/webhooks/third-party/{endpoint}")))
            .bearer_auth(&tenant.third_party)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// Lets deliveries run until nothing is due now or in flight, and answers how many
    /// attempts were made since the last call. With the app's workers on it wakes them (the
    /// test's clock may have moved) and waits; with them off it steps a dispatcher of its
    /// own until a step finds nothing due.
    pub async fn dispatch(&self) -> usize {
        if self.workers {
            self.settle().await;
        } else {
            self.step_until_idle().await;
        }
        let total = self.count("SELECT count(*) FROM delivery_attempts").await;
        let before = self.attempts_seen.swap(total, std::sync::atomic::Ordering::SeqCst);
        usize::try_from(total - before).unwrap_or(0)
    }

    /// Waits until the running workers have nothing due now and nothing in flight (a
    /// leased delivery, claimed, being sent, or waiting for its success to be recorded).
    /// Behind a half-open breaker a probe is due or under way (the dispatcher takes the
    /// probe slot and claims the probe in two statements): that counts as busy too.
    async fn settle(&self) {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(dolphin_bridge::store::outbox_rules::NOTIFY_CHANNEL)
            .execute(&self.pool)
            .await
            .expect("wake the dispatcher");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        // Idle twice in a row: a row committed between reading the clock and the count's
        // snapshot (an alert written with the failure that opened a breaker) is due just
        // after the instant counted, and only the next look sees it due.
        let mut idle_before = false;
        loop {
            let busy: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM deliveries d
                 WHERE d.status IN ('pending', 'failed')
                   AND (d.lease_until > $1
                        OR (d.next_attempt_at <= $1
                            AND NOT EXISTS (SELECT 1 FROM endpoints ep WHERE ep.owner = d.owner
                                            AND ep.target = d.target
                                            AND (ep.paused OR (ep.state <> 'closed'
                                                 AND NOT (ep.state = 'open' AND ep.retry_at <= $1)
                                                 AND ep.state <> 'half_open')))
                            AND NOT EXISTS (SELECT 1 FROM deliveries e WHERE e.owner = d.owner
                                            AND e.ticket_number = d.ticket_number AND e.peer = d.peer
                                            AND e.sequence < d.sequence AND e.status IN ('pending', 'failed'))))",
            )
            .bind(self.clock_now())
            .fetch_one(&self.pool)
            .await
            .expect("count the deliveries in flight");
            if busy == 0 && idle_before {
                return;
            }
            idle_before = busy == 0;
            assert!(std::time::Instant::now() < deadline, "{busy} deliveries still due or in flight after 30 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Runs a dispatcher of the test's own until a step finds nothing due.
    async fn step_until_idle(&self) {
        // One dispatcher per app, as in a process: its token cache lives across calls.
        let dispatcher = self.dispatcher.get_or_init(|| {
            Dispatcher::new(
                self.pool.clone(),
                Arc::new(self.config.clone()),
                Arc::new(self.clock.clone()),
                Heartbeat::new(Duration::from_secs(10)),
            )
            .expect("dispatcher")
        });
        while dispatcher.run_once().await.expect("dispatch") > 0 {}
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&self.pool).await.expect("count query")
    }

    /// Stops the bridge gracefully (as on SIGTERM), keeping the database for inspection.
    /// Claims of the app's dispatcher that ran out before their outcome was recorded.
    pub fn lost_leases(&self) -> u64 {
        self.app.as_ref().map_or(0, |app| app.lost_leases.load(std::sync::atomic::Ordering::Relaxed))
    }

    pub async fn stop_bridge(&mut self) {
        if let Some(app) = self.app.take() {
            app.stop().await;
        }
    }

    /// Stops the app and drops its database; fails the test if a reply broke the document.
    pub async fn finish(mut self) {
        if let Some(app) = self.app.take() {
            app.stop().await;
        }
        let broken = self.violations.take();
        if !self.db_name.is_empty() {
            let admin = dolphin_bridge::store::connect_lazy(&format!("{}/postgres", server_url()), 1).expect("pool");
            let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.db_name);
            let _ = sqlx::query(&drop).execute(&admin).await;
            admin.close().await;
        }
        assert!(broken.is_empty(), "replies that break /openapi.json:\n{}", broken.join("\n"));
    }
}

/// The lifecycle event kinds of a ticket, oldest first.
pub async fn event_kinds(pool: &PgPool, owner: &str, ticket: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT kind FROM ticket_events WHERE owner = $1 AND ticket_number = $2 ORDER BY id")
        .bind(owner)
        .bind(ticket)
        .fetch_all(pool)
        .await
        .expect("events")
}

/// A copy of `body` with `changes` set.
pub fn with(body: &Value, changes: Value) -> Value {
    let mut out = body.clone();
    for (k, v) in changes.as_object().expect("object of changes") {
        out[k] = v.clone();
    }
    out
}

/// A copy of `body` without `key`.
pub fn without(body: &Value, key: &str) -> Value {
    let mut out = body.clone();
    out.as_object_mut().expect("object").remove(key);
    out
}
