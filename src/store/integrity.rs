//! Rows whose parent is missing. The hot-path tables carry no foreign keys (migration 0010
//! says why); the write paths keep them whole by construction, and this is how an operator
//! checks that they did (`dolphin-bridge doctor`).

use sqlx::{FromRow, PgExecutor};

/// Counts of rows without their parent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, FromRow)]
pub struct Orphans {
    /// Messages whose ticket is missing.
    pub messages: i64,
    /// Audit events whose ticket is missing.
    pub ticket_events: i64,
    /// Deliveries whose ticket is missing.
    pub deliveries: i64,
    /// Attempts whose delivery is missing.
    pub delivery_attempts: i64,
}

impl Orphans {
    pub fn total(&self) -> i64 {
        self.messages + self.ticket_events + self.deliveries + self.delivery_attempts
    }
}

/// Reads every table once (an anti-join each): seconds on millions of rows.
pub async fn orphans(db: impl PgExecutor<'_>) -> Result<Orphans, sqlx::Error> {
    sqlx::query_as(
        "SELECT
             (SELECT count(*) FROM messages c WHERE NOT EXISTS
                 (SELECT 1 FROM tickets p WHERE p.owner = c.owner AND p.ticket_number = c.ticket_number)) AS messages,
             (SELECT count(*) FROM ticket_events c WHERE NOT EXISTS
                 (SELECT 1 FROM tickets p WHERE p.owner = c.owner AND p.ticket_number = c.ticket_number))
                 AS ticket_events,
             (SELECT count(*) FROM deliveries c WHERE NOT EXISTS
                 (SELECT 1 FROM tickets p WHERE p.owner = c.owner AND p.ticket_number = c.ticket_number))
                 AS deliveries,
             (SELECT count(*) FROM delivery_attempts c WHERE NOT EXISTS
                 (SELECT 1 FROM deliveries p WHERE p.owner = c.owner AND p.id = c.delivery_id))
                 AS delivery_attempts",
    )
    .fetch_one(db)
    .await
}
