//! Token buckets. Per credential (`BRIDGE_RATE_LIMIT`) on the third-party webhooks and
//! `/api/v1`: one bucket per key, so a burst on one tenant's key never slows another's.
//! Per tenant when the tenant sets its own `rateLimit`, then on every call of the tenant —
//! the 3Dolphins webhooks included, which are otherwise never limited (3Dolphins documents
//! no retry, and a 429 there could lose a customer message).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use uuid::Uuid;

use crate::config::RateLimit;

struct Bucket {
    tokens: f64,
    refilled: Instant,
}

#[derive(Clone)]
pub struct RateLimiter {
    limit: Option<RateLimit>,
    buckets: Arc<Mutex<HashMap<Uuid, Bucket>>>,
}

impl RateLimiter {
    pub fn new(limit: Option<RateLimit>) -> Self {
        RateLimiter { limit, buckets: Arc::default() }
    }

    /// Takes one token for `key` under the process limit; `Err(seconds)` says how long
    /// until the next one.
    pub fn take(&self, key: Uuid) -> Result<(), u64> {
        match self.limit {
            Some(limit) => self.take_under(key, limit),
            None => Ok(()),
        }
    }

    /// Takes one token for `key` under `limit` (a tenant's own limit).
    pub fn take_under(&self, key: Uuid, limit: RateLimit) -> Result<(), u64> {
        let Ok(mut buckets) = self.buckets.lock() else { return Ok(()) };
        let now = Instant::now();
        let bucket = buckets.entry(key).or_insert(Bucket { tokens: limit.burst, refilled: now });
        let elapsed = now.duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * limit.per_second).min(limit.burst);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / limit.per_second;
            Err(wait.ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_refused_per_key_only() {
        let limiter = RateLimiter::new(Some(RateLimit { per_second: 1.0, burst: 3.0 }));
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        for _ in 0..3 {
            assert_eq!(limiter.take(a), Ok(()));
        }
        assert_eq!(limiter.take(a), Err(1));
        assert_eq!(limiter.take(b), Ok(()), "another key has its own bucket");
        assert_eq!(RateLimiter::new(None).take(a), Ok(()));
    }
}
