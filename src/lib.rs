//! dolphin-bridge: a relay between 3Dolphins and a third-party contact-center system.
//!
//! Both peers call the bridge's webhooks; every event is stored in PostgreSQL and
//! written to an outbox in the same transaction, then delivered at least once, in
//! per-ticket order, by the dispatcher.
//!
//! # Layout
//!
//! - [`cli`]: the command line (`serve`, `migrate`, `demo`, `doctor`, `encrypt-secrets`, `tenant`).
//! - [`demo`]: the bridge with simulated peers and live traffic.
//! - [`doctor`]: the operator's check of configuration, database, secrets, integrity and endpoints.
//! - [`config`]: typed settings from the environment, validated once.
//! - [`telemetry`]: log setup and the Prometheus recorder.
//! - [`startup`]: builds the pools (the delivery engine and the message intake have their own), router and workers;
//!   graceful shutdown.
//! - [`domain`]: pure rules: event validation and normalisation, ticket states, retry
//!   policy, tenant settings.
//! - [`intake`]: accepting an event, everything between a webhook's validated payload and its
//!   2xx: the route of each kind of event, messages, commands, the ticket's state machine
//!   applied under its row lock, and the group commit (concurrent requests' messages in one
//!   statement and one commit). Answers after the commit; hands the outbox rows it wrote to
//!   this process's dispatcher.
//! - [`housekeeping`]: retention purges and expiry of idempotency replies, in the background.
//! - [`reports`]: the summary and timeseries, from rollups and the raw rows after them;
//!   [`rollup_task`] maintains the rollups in the background.
//! - [`history`]: merging 3Dolphins conversation history into a ticket (the matching rule).
//! - [`tenancy`]: creating tenants with credentials, keys, deletion.
//! - [`credentials`]: key and secret generation, hashing, constant-time comparison.
//! - [`secrets`]: sealing peer secrets at rest with `BRIDGE_SECRET_KEY`.
//! - [`signature`]: Standard Webhooks signing and verification.
//! - [`store`]: all SQL, one file per table family (`deliveries` is the outbox and
//!   dispatcher side, `successes` the batched success records and the claims of successors,
//!   `redelivery` the API and operator side of the same table, `rollups` the report rollups'
//!   tables and reads, `rollup_steps` the rollup task's writes, `message_writes` the intake's
//!   grouped statement, `outbox_rules` the rules every outbox
//!   statement shares: when a delivery may be sent, what a claim returns), and the
//!   database's servers: `database_url` parses libpq's host lists, `topology` chooses the
//!   host every pool uses and follows it through a failover.
//! - [`server`]: the HTTP/1.1 accept loop with connection and header-time limits.
//! - [`http`]: the axum routers (webhooks, admin, query, reports, deliveries, contacts, ops),
//!   the operator console (`http::console`, HTML pages over the same functions), auth, rate
//!   limits, the reply types (`http::shapes` and beside each handler; `http::bodies` for the
//!   request bodies), the OpenAPI document built from them (`http::openapi`) and its explorer
//!   (`http::docs`), the edge layer (`http::edge`: request ids, access log, the error shape of
//!   every layer's refusals) and the one HTTP error type.
//! - [`dolphins`]: client of the 3Dolphins APIs (token, conversation history, contacts).
//! - [`delivery`]: the dispatcher, as stages: the hand-off from the intake and the wake
//!   protocol (`delivery::handoff`), the claim loop, one attempt (prepare → send → classify →
//!   record), the batched success recorder, the HTTP send.
//! - [`sim`]: simulators of 3Dolphins and of a third party (demo, tests).
//! - [`embedded_db`]: a private PostgreSQL from the installed server binaries (`demo` and
//!   the tests when no server runs, `serve --embedded-db DIR`).
//! - [`clock`], [`heartbeat`]: time as a dependency; the workers' liveness mark.

pub mod alert_task;
pub mod background;
pub mod cli;
pub mod clock;
pub mod config;
pub mod credentials;
pub mod delivery;
pub mod demo;
pub mod doctor;
pub mod dolphins;
pub mod domain;
pub mod embedded_db;
pub mod heartbeat;
pub mod history;
pub mod housekeeping;
pub mod http;
pub mod intake;
pub mod reports;
pub mod rollup_task;
pub mod secrets;
pub mod server;
pub mod signature;
pub mod sim;
pub mod startup;
pub mod statistics_task;
pub mod store;
pub mod telemetry;
pub mod tenancy;
