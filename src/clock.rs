//! Time as a dependency: the app asks a [`Clock`], so tests can move time forward
//! (retry schedules, leases, echo and idempotency windows) without sleeping.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, SubsecRound, Utc};

pub trait Clock: Send + Sync + 'static {
    /// The current time, to the microsecond: what PostgreSQL stores, so a time the API
    /// shows right after a write equals what it shows when read back.
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now().trunc_subsecs(6)
    }
}

/// A clock that runs with the wall clock plus an offset the test can advance.
#[derive(Debug, Clone, Default)]
pub struct ShiftedClock {
    offset: Arc<Mutex<chrono::Duration>>,
}

impl ShiftedClock {
    /// Moves this clock (and every copy of it) forward.
    pub fn advance(&self, by: std::time::Duration) {
        let by = chrono::Duration::from_std(by).unwrap_or(chrono::Duration::zero());
        if let Ok(mut offset) = self.offset.lock() {
            *offset += by;
        }
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> DateTime<Utc> {
        let offset = self.offset.lock().map(|o| *o).unwrap_or(chrono::Duration::zero());
        (Utc::now() + offset).trunc_subsecs(6)
    }
}
