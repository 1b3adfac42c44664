//! One attempt at a claimed delivery, in four stages with typed values between them:
//!
//! 1. [`Dispatcher::prepare`]: unseal the secrets, read the tenant's settings and policy,
//!    and check that the attempt can end before the claim does → [`Prepared`];
//! 2. [`Dispatcher::send`]: the HTTP request (with a 3Dolphins API token when the tenant
//!    asks for one) → [`AttemptOutcome`];
//! 3. [`classify_outcome`]: delivered, retry later (with jittered backoff) or dead →
//!    [`Classified`];
//! 4. [`Dispatcher::record_outcome`]: a success goes to the batch recorder, anything else is
//!    recorded here, under the lease's fencing token.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use tracing::Instrument;

use super::send::{self, AttemptOutcome, SentRequest};
use super::Dispatcher;
use crate::config::{parse_duration, parse_schedule};
use crate::dolphins::token::Account;
use crate::domain::retry::{classify, next_delay, Verdict};
use crate::domain::tenant::TenantSettings;
use crate::domain::{DeliveryStatus, EventKind, Peer, Target};
use crate::secrets::Sealer;
use crate::store::deliveries::{self, AttemptRecord, Claimed};
use crate::store::successes::Success;
use crate::telemetry::names;

/// A claimed delivery ready to be sent.
pub(super) struct Prepared {
    claim: Claimed,
    target: Target,
    settings: TenantSettings,
    schedule: Vec<Duration>,
    timeout: Duration,
    started_at: DateTime<Utc>,
    /// Why the secrets could not be unsealed: the attempt is recorded as retryable, never
    /// sent without a signature (the key can be fixed).
    unsealing_failed: Option<String>,
}

/// What an outcome means for the delivery.
pub(super) struct Classified {
    status: DeliveryStatus,
    event: EventKind,
    next_attempt_at: Option<DateTime<Utc>>,
    finished_at: DateTime<Utc>,
    /// A retryable outcome: feeds the endpoint's circuit breaker.
    endpoint_failed: bool,
}

impl Dispatcher {
    /// Sends one claimed delivery and records the outcome. Answers `false` when a success
    /// was handed to the batch recorder instead of being recorded here.
    pub(super) async fn deliver(&self, claim: Claimed) -> bool {
        let span =
            tracing::info_span!("delivery", owner = %claim.owner, ticket = %claim.ticket_number, delivery = %claim.id);
        async {
            let Some(prepared) = self.prepare(claim) else { return true };
            let outcome = match &prepared.unsealing_failed {
                None => self.send(&prepared).await,
                Some(e) => AttemptOutcome::not_sent_yet(e.clone()),
            };
            let classified = classify_outcome(&prepared, &outcome, self.clock.now());
            count_attempt(prepared.target, &classified, &outcome);
            self.record_outcome(prepared, outcome, classified).await
        }
        .instrument(span)
        .await
    }

    /// Everything an attempt needs, or `None` when it must not start: an unknown target, or
    /// a claim that waited so long for a worker that the attempt could outlive it (and race
    /// the next claim). Once the lease has expired the delivery is claimed again, in order.
    fn prepare(&self, mut claim: Claimed) -> Option<Prepared> {
        let Some(target) = Target::parse(&claim.target) else {
            tracing::error!(target = %claim.target, "unknown target in the outbox");
            return None;
        };
        let sealer = Sealer::new(self.config.secret_key);
        let open_optional = |stored: &Option<String>| stored.as_deref().map(|p| sealer.open(p)).transpose();
        let opened = sealer.open(&claim.signing_secret).and_then(|secret| {
            Ok((secret, open_optional(&claim.previous_signing_secret)?, open_optional(&claim.dolphins_password)?))
        });
        let unsealing_failed = match opened {
            Ok((secret, previous, password)) => {
                claim.signing_secret = secret;
                claim.previous_signing_secret = previous;
                claim.dolphins_password = password;
                None
            }
            Err(e) => Some(e.to_string()),
        };
        let settings: TenantSettings = serde_json::from_value(claim.settings.clone()).unwrap_or_default();
        let (schedule, timeout) = self.policy(&settings);
        let started_at = self.clock.now();
        let ends_by = chrono::Duration::from_std(timeout).ok().and_then(|t| started_at.checked_add_signed(t));
        if ends_by.is_none_or(|end| end > claim.lease_until) {
            self.count_lost_leases(1, "waited_for_worker");
            tracing::warn!("claim ran out while waiting for a worker; the delivery is sent after its lease");
            return None;
        }
        Some(Prepared { claim, target, settings, schedule, timeout, started_at, unsealing_failed })
    }

    /// Sends the attempt, with the 3Dolphins API token when the tenant asks for it. A 401
    /// with a cached token fetches a fresh one and sends again, once.
    async fn send(&self, p: &Prepared) -> AttemptOutcome {
        let now = self.clock.now();
        let send = |token: Option<String>| async move {
            send::attempt(&self.client, &p.claim, p.target, &p.settings, p.timeout, now.timestamp(), token.as_deref())
                .await
        };
        let Some(account) = api_account(&p.claim, p.target, &p.settings) else { return send(None).await };
        let token = match self.tokens.get(&self.client, &account, now).await {
            Ok(token) => token,
            Err(e) => return AttemptOutcome::not_sent_yet(e.to_string()),
        };
        let outcome = send(Some(token)).await;
        if outcome.http_status != Some(401) {
            return outcome;
        }
        self.tokens.invalidate(&account);
        match self.tokens.get(&self.client, &account, now).await {
            Ok(token) => send(Some(token)).await,
            Err(e) => AttemptOutcome::not_sent_yet(e.to_string()),
        }
    }

    /// Hands a success to the batch recorder (answers `false`), or records the outcome here.
    async fn record_outcome(&self, p: Prepared, outcome: AttemptOutcome, c: Classified) -> bool {
        let attempt = u32::try_from(p.claim.attempts).unwrap_or(0).saturating_add(1);
        let finished_at = c.finished_at;
        let duration_ms = i32::try_from(outcome.duration.as_millis()).unwrap_or(i32::MAX);
        if let (DeliveryStatus::Delivered, Some(successes)) = (c.status, &self.successes) {
            let success = Success {
                owner: p.claim.owner.clone(),
                id: p.claim.id,
                ticket_number: p.claim.ticket_number.clone(),
                lease_token: p.claim.lease_token,
                row_id: p.claim.row_id.clone(),
                started_at: p.started_at,
                finished_at,
                duration_ms,
                http_status: outcome.http_status.map(i32::from),
                response_head: outcome.response_head.clone(),
                request: outcome.request.as_ref().and_then(SentRequest::to_json),
            };
            if successes.send(success).await.is_ok() {
                tracing::debug!(attempt, "delivered");
                return false;
            }
        }
        let request = outcome.request.as_ref().and_then(SentRequest::to_json);
        let record = AttemptRecord {
            status: c.status,
            event: c.event,
            started_at: p.started_at,
            finished_at,
            duration_ms,
            http_status: outcome.http_status.map(i32::from),
            error: outcome.error.as_deref(),
            response_head: outcome.response_head.as_deref(),
            request: request.as_deref(),
            next_attempt_at: c.next_attempt_at,
            endpoint_failed: c.endpoint_failed,
        };
        match self.record(&p.claim, &record).await {
            Ok(true) => match c.status {
                DeliveryStatus::Delivered => tracing::debug!(attempt, "delivered"),
                DeliveryStatus::Dead => tracing::warn!(attempt, error = ?outcome.error, "delivery dead"),
                _ => tracing::info!(attempt, error = ?outcome.error, "delivery failed; will retry"),
            },
            Ok(false) => {
                self.count_lost_leases(1, "expired_before_record");
                tracing::warn!("lease lost before the outcome was recorded; another dispatcher owns it now")
            }
            Err(e) => tracing::error!(error = %e, "could not record the attempt; it will be retried after the lease"),
        }
        true
    }

    /// Records an outcome, retrying briefly if the database blips: losing the record
    /// only means a duplicate send after the lease, but it is worth a few tries.
    async fn record(&self, claim: &Claimed, record: &AttemptRecord<'_>) -> Result<bool, sqlx::Error> {
        let mut tries = 0;
        loop {
            match deliveries::record_attempt(&self.pool, claim, record).await {
                Err(e) if crate::store::is_unavailable(&e) && tries < 5 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(200 * tries)).await;
                }
                other => return other,
            }
        }
    }

    /// The tenant's retry schedule and timeout, else the process defaults. The timeout
    /// stays below the lease so an attempt always ends before its claim can expire.
    fn policy(&self, settings: &TenantSettings) -> (Vec<Duration>, Duration) {
        let schedule = settings
            .delivery
            .retry_schedule
            .as_deref()
            .and_then(|s| parse_schedule(s).ok())
            .unwrap_or_else(|| self.config.retry_schedule.clone());
        let timeout = settings
            .delivery
            .timeout
            .as_deref()
            .and_then(|s| parse_duration(s).ok())
            .unwrap_or(self.config.delivery_timeout);
        let ceiling = self.config.lease.saturating_sub(Duration::from_secs(1)).max(Duration::from_millis(100));
        (schedule, timeout.min(ceiling))
    }
}

/// What `outcome` means for the delivery, `finished_at` now: the next attempt's time comes
/// from the schedule (restarted by a manual retry or replay), the peer's `Retry-After`, and
/// a jitter.
fn classify_outcome(p: &Prepared, outcome: &AttemptOutcome, finished_at: DateTime<Utc>) -> Classified {
    let schedule_position = u32::try_from(p.claim.attempts - p.claim.schedule_base).unwrap_or(0).saturating_add(1);
    let verdict = classify(&outcome.reply);
    let endpoint_failed = matches!(verdict, Verdict::Retry { .. });
    let (status, event, next_attempt_at) = match verdict {
        Verdict::Delivered => (DeliveryStatus::Delivered, EventKind::Delivered, None),
        Verdict::Permanent => (DeliveryStatus::Dead, EventKind::Dead, None),
        Verdict::Retry { retry_after } => {
            let jitter = rand::thread_rng().gen_range(-1.0..=1.0);
            match next_delay(&p.schedule, schedule_position, retry_after, jitter) {
                Some(delay) => (DeliveryStatus::Failed, EventKind::DeliveryFailed, Some(after(finished_at, delay))),
                None => (DeliveryStatus::Dead, EventKind::Dead, None),
            }
        }
    };
    Classified { status, event, next_attempt_at, finished_at, endpoint_failed }
}

fn count_attempt(target: Target, c: &Classified, outcome: &AttemptOutcome) {
    let label = match c.status {
        DeliveryStatus::Delivered => "delivered",
        DeliveryStatus::Dead => "dead",
        _ => "failed",
    };
    metrics::counter!(names::DELIVERY_ATTEMPTS, "target" => target.as_str(), "outcome" => label).increment(1);
    metrics::histogram!(names::ATTEMPT_DURATION, "target" => target.as_str()).record(outcome.duration.as_secs_f64());
}

/// The 3Dolphins API account whose token a delivery must carry, if `useApiToken` applies.
fn api_account(claim: &Claimed, target: Target, settings: &TenantSettings) -> Option<Account> {
    if target.peer() != Peer::Dolphins || !settings.dolphins.use_api_token {
        return None;
    }
    crate::dolphins::account(settings, claim.dolphins_password.as_deref())
}

fn after(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    t + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::hours(24))
}
