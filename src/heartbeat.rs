//! A shared "last seen alive" mark: the delivery workers beat it on every loop, and
//! `/readyz` reads it. Lets `http` know about the workers without importing `delivery`.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Heartbeat {
    last_millis: Arc<AtomicI64>,
    max_silence: Duration,
}

impl Heartbeat {
    /// A heartbeat that counts as alive while beaten at least every `max_silence`.
    pub fn new(max_silence: Duration) -> Self {
        Heartbeat { last_millis: Arc::new(AtomicI64::new(0)), max_silence }
    }

    pub fn beat(&self) {
        self.last_millis.store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
    }

    pub fn is_alive(&self) -> bool {
        let last = self.last_millis.load(Ordering::Relaxed);
        let silence = chrono::Utc::now().timestamp_millis().saturating_sub(last);
        last > 0 && u128::try_from(silence).is_ok_and(|s| s <= self.max_silence.as_millis())
    }
}
