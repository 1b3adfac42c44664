//! A short-lived in-process cache of authenticated credentials: a webhook under load would
//! otherwise spend one database query per request only to learn what it learned a moment
//! ago. Only valid keys are cached (an attacker's guesses never fill it); entries live
//! [`TTL`], and every change made through this process (revoke, tenant patch or delete)
//! clears it at once. Another process sees such a change within [`TTL`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::auth::Caller;

/// How long a cached credential is trusted without asking the database again.
pub const TTL: Duration = Duration::from_secs(5);
/// Entries kept at most; past it the cache starts over.
const CAPACITY: usize = 10_000;

struct Entry {
    caller: Caller,
    loaded: Instant,
    last_used_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Default)]
pub struct KeyCache {
    entries: Arc<Mutex<HashMap<[u8; 32], Entry>>>,
}

impl KeyCache {
    /// The cached caller for a key hash and when the key was last recorded as used.
    pub fn get(&self, hash: &[u8; 32]) -> Option<(Caller, Option<DateTime<Utc>>)> {
        let entries = self.entries.lock().ok()?;
        let entry = entries.get(hash).filter(|e| e.loaded.elapsed() < TTL)?;
        Some((entry.caller.clone(), entry.last_used_at))
    }

    pub fn put(&self, hash: [u8; 32], caller: Caller, last_used_at: Option<DateTime<Utc>>) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= CAPACITY {
                entries.clear();
            }
            entries.insert(hash, Entry { caller, loaded: Instant::now(), last_used_at });
        }
    }

    /// Notes that the key's use was just recorded, so the next requests do not record it again.
    pub fn mark_used(&self, hash: &[u8; 32], at: DateTime<Utc>) {
        if let Ok(mut entries) = self.entries.lock() {
            if let Some(e) = entries.get_mut(hash) {
                e.last_used_at = Some(at);
            }
        }
    }

    /// Forgets everything (a key or tenant changed).
    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }
}
