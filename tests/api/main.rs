//! Integration tests: the real application, a real PostgreSQL (one fresh database per
//! test) and real HTTP receivers for both peers. One file per feature.

mod helpers;

mod admin;
mod alerts;
mod auth;
mod breaker;
mod browser;
mod cli;
mod console;
mod database_outage;
mod delivery;
mod dolphins_api;
mod dolphins_side;
mod edge;
mod embedded;
mod failover;
mod faults;
mod formation;
mod group_commit;
mod hostile;
mod idempotency;
mod incoming;
mod isolation;
mod limits;
mod logs;
mod openapi;
mod packaging;
mod plans;
mod query;
mod read_replica;
mod redelivery;
mod reports;
mod retention;
mod rollups;
mod schema_check;
mod secrets;
mod simulators;
mod third_party;
mod topology;
mod wake;
