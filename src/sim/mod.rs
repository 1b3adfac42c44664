//! Simulators of both peers, as axum apps on random ports: what `demo` runs, and what
//! end-to-end tests talk to. They speak the payloads of `tests/fixtures/3dolphins/`.
//!
//! - [`dolphins`]: 3Dolphins: emits Incoming Events, takes agent replies and closes, serves
//!   `/graph/auth`, the conversation-history report and the Contact API from what it saw.
//! - [`third_party`]: a contact centre: verifies Standard Webhooks signatures, records what
//!   it receives, answers as an agent after a think time, and closes tickets.
//! - [`standalone`]: `dolphin-bridge sim …`, each simulator alone against any bridge.

pub mod dolphins;
pub mod standalone;
pub mod third_party;

use std::net::SocketAddr;

/// Serves `app` on a random loopback port (or `address`) in the background.
pub async fn serve(app: axum::Router, address: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "simulator stopped");
        }
    });
    Ok(bound)
}

/// How a simulator answers the bridge, switchable at run time (tests, demo faults).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Behaviour {
    /// 200 `{"status":"success"}` at once.
    #[default]
    Healthy,
    /// 500 on every call.
    Failing,
    /// Answers after 3 seconds.
    Slow,
}
