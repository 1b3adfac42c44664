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
//! - [`relay`]: applies one accepted event atomically (ticket, message, audit, outbox): a
//!   message on an open ticket as one statement (`store::message_writes`), anything else in one
//!   transaction.
//! - [`group_commit`]: writes the messages of concurrent requests in one statement and one
//!   commit, answering each after it.
//! - [`housekeeping`]: retention purges and expiry of idempotency replies, in the background.
//! - [`history`]: merging 3Dolphins conversation history into a ticket (the matching rule).
//! - [`tenancy`]: creating tenants with credentials, keys, deletion.
//! - [`credentials`]: key and secret generation, hashing, constant-time comparison.
//! - [`secrets`]: sealing peer secrets at rest with `BRIDGE_SECRET_KEY`.
//! - [`signature`]: Standard Webhooks signing and verification.
//! - [`store`]: all SQL, one file per table family (`deliveries` is the outbox and
//!   dispatcher side, `redelivery` the API and operator side of the same table), and the
//!   database's servers: `database_url` parses libpq's host lists, `topology` chooses the
//!   host every pool uses and follows it through a failover.
//! - [`server`]: the HTTP/1.1 accept loop with connection and header-time limits.
//! - [`http`]: the axum routers (webhooks, admin, query, reports, deliveries, contacts, ops),
//!   the operator console (`http::console`, HTML pages over the same functions), auth, rate limits, the OpenAPI document and the one HTTP error type.
//! - [`dolphins`]: client of the 3Dolphins APIs (token, conversation history, contacts).
//! - [`delivery`]: the dispatcher: claim with lease (or take what the intake wrote claimed),
//!   send, classify, record, reschedule.
//! - [`sim`]: simulators of 3Dolphins and of a third party (demo, tests).
//! - [`clock`], [`heartbeat`]: time as a dependency; the workers' liveness mark.

pub mod cli;
pub mod clock;
pub mod config;
pub mod credentials;
pub mod delivery;
pub mod demo;
pub mod doctor;
pub mod dolphins;
pub mod domain;
pub mod heartbeat;
pub mod history;
pub mod housekeeping;
pub mod http;
pub mod intake;
pub mod secrets;
pub mod server;
pub mod signature;
pub mod sim;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod tenancy;
