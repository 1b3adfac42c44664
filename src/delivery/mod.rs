//! The dispatcher: claims due deliveries from the outbox with a lease, sends each with no
//! lock or pooled connection held, and records the outcome under the lease's fencing
//! token. Deliveries its own process has just accepted mostly arrive already claimed
//! ([`DirectDispatch`]: the intake wrote them leased) and are sent at once; it is woken
//! in-process for the rest, by `LISTEN/NOTIFY` for operator actions, and by a slow poll for
//! everything else (other processes' work, retries).

pub mod send;

use send::AttemptOutcome;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::{mpsc, watch, Notify, Semaphore};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::clock::Clock;
use crate::config::{parse_duration, parse_schedule, Config};
use crate::dolphins::token::{Account, TokenCache};
use crate::domain::retry::{classify, next_delay, Verdict};
use crate::domain::tenant::TenantSettings;
use crate::domain::{DeliveryStatus, EventKind, Peer, Target};
use crate::heartbeat::Heartbeat;
use crate::secrets::Sealer;
use crate::store::deliveries::{self, AttemptRecord, ClaimScope, Claimed, Place, Success};
use crate::store::endpoints;
use crate::store::outbox_rules::NOTIFY_CHANNEL;
use crate::telemetry::names;

/// How often the dispatcher looks for due work when nothing woke it.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// How often the dispatcher checks for open circuit breakers ready for a probe.
const PROBE_INTERVAL: Duration = Duration::from_millis(500);

/// Sends deliveries. Cheap to clone; every clone shares the worker limit.
#[derive(Clone)]
pub struct Dispatcher {
    pool: PgPool,
    client: reqwest::Client,
    config: Arc<Config>,
    clock: Arc<dyn Clock>,
    heartbeat: Heartbeat,
    /// `BRIDGE_WORKERS`: attempts in flight at once in this process.
    workers: Arc<Semaphore>,
    /// Signalled when an attempt finishes (its ticket's next delivery can go) and when
    /// this process accepted new work (see [`Dispatcher::waker`]).
    wake: Arc<Notify>,
    /// 3Dolphins API tokens for tenants with `useApiToken`.
    tokens: TokenCache,
    /// Where a running dispatcher hands successful attempts to be recorded in batches
    /// ([`record_successes`]); `None` records each attempt itself ([`Dispatcher::run_once`]).
    successes: Option<mpsc::Sender<Success>>,
    /// Whether the last claim filled every free worker, so due work may be waiting for a
    /// worker: only then does a finished attempt need to wake the claim loop.
    room_limited: Arc<AtomicBool>,
    /// Set when this process's intake wrote a delivery unclaimed: it may be waiting behind
    /// one that the success recorder is about to record (see [`record_successes`]).
    unclaimed_written: Arc<AtomicBool>,
}

/// Most successes written by one statement.
const SUCCESS_BATCH: usize = 64;

/// Hands deliveries that the message intake wrote already claimed
/// ([`crate::store::message_writes::DirectLease`]) straight to this process's running dispatcher:
/// no claim statement, and a send that starts as soon as the commit is done.
///
/// A handed-over delivery waits for a free worker like a claimed one; if its lease would run
/// out before its attempt could end, it is not sent but claimed again once the lease has
/// expired. Deliveries handed over after the dispatcher stopped keep their lease and are
/// claimed again when it expires (by the next process, or this one's successor).
#[derive(Clone)]
pub struct DirectDispatch {
    lease: Duration,
    wake: Arc<Notify>,
    unclaimed_written: Arc<AtomicBool>,
    handoffs: mpsc::UnboundedSender<Claimed>,
}

/// The dispatcher's end of [`DirectDispatch`], for [`Dispatcher::run`] (whose success
/// recorder hands over the deliveries it claims the same way).
pub struct Handoffs {
    receiver: mpsc::UnboundedReceiver<Claimed>,
    sender: mpsc::UnboundedSender<Claimed>,
}

impl DirectDispatch {
    /// How long a delivery claimed as it is written stays claimed.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// Gives the dispatcher a committed delivery claimed as it was written.
    pub fn hand_over(&self, claim: Claimed) {
        if self.handoffs.send(claim).is_err() {
            tracing::debug!("the dispatcher has stopped; the delivery is sent after its lease");
        }
    }

    /// Wakes the dispatcher to claim deliveries committed unclaimed.
    pub fn wake(&self) {
        self.unclaimed_written.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }
}

impl Dispatcher {
    pub fn new(
        pool: PgPool,
        config: Arc<Config>,
        clock: Arc<dyn Clock>,
        heartbeat: Heartbeat,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()?;
        let workers = Arc::new(Semaphore::new(config.workers));
        Ok(Dispatcher {
            pool,
            client,
            config,
            clock,
            heartbeat,
            workers,
            wake: Arc::new(Notify::new()),
            tokens: TokenCache::default(),
            successes: None,
            room_limited: Arc::new(AtomicBool::new(false)),
            unclaimed_written: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The intake's way to hand this dispatcher deliveries claimed as they were written, and
    /// to wake it for deliveries written unclaimed; pass the [`Handoffs`] to
    /// [`Dispatcher::run`]. Other processes find unclaimed work on their next poll: a
    /// `pg_notify` per accepted event would take PostgreSQL's global notify lock at every
    /// commit. Operator actions (retry, replay, resume) still notify every process.
    pub fn direct_dispatch(&self) -> (DirectDispatch, Handoffs) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let direct = DirectDispatch {
            lease: self.config.lease,
            wake: self.wake.clone(),
            unclaimed_written: self.unclaimed_written.clone(),
            handoffs: sender.clone(),
        };
        (direct, Handoffs { receiver, sender })
    }

    /// Claims what is due now (probes of recovering endpoints first) and sends it all,
    /// returning how many attempts were made. Tests call this in a loop instead of sleeping.
    pub async fn run_once(&self) -> Result<usize, sqlx::Error> {
        let batch = self.claim_batch(self.config.workers, true, uuid::Uuid::new_v4()).await?;
        let n = batch.len();
        let mut attempts = JoinSet::new();
        for claim in batch {
            let this = self.clone();
            attempts.spawn(async move { this.deliver(claim).await });
        }
        while attempts.join_next().await.is_some() {}
        Ok(n)
    }

    /// Runs until `shutdown` turns true: claims as many deliveries as there are free
    /// workers, sends them concurrently, and sleeps until notified, an attempt finishes,
    /// or the poll interval passes. On shutdown it stops claiming, lets in-flight
    /// attempts finish (each bounded by its timeout) and records them.
    ///
    /// Successful attempts (nearly all of them) are recorded by a companion task in
    /// batches, one statement each, so a worker is free as soon as its request is answered;
    /// the delivery stays claimed (and its ticket's next delivery waits) until recorded.
    pub async fn run(self, shutdown: watch::Receiver<bool>, handoffs: Option<Handoffs>) {
        let handoffs = handoffs.unwrap_or_else(|| self.direct_dispatch().1);
        let (sender, receiver) = mpsc::channel(4 * SUCCESS_BATCH);
        let recorder = tokio::spawn(record_successes(self.clone(), receiver, handoffs.sender.clone()));
        let this = Dispatcher { successes: Some(sender), ..self };
        this.run_loop(shutdown, handoffs.receiver).await;
        // Every sender is gone once the loop and its attempts are done: the recorder
        // writes what it still holds and ends.
        if recorder.await.is_err() {
            tracing::error!("the success recorder panicked");
        }
    }

    async fn run_loop(self, mut shutdown: watch::Receiver<bool>, handoffs: mpsc::UnboundedReceiver<Claimed>) {
        let mut handoffs = Some(handoffs);
        let mut listener = None;
        let mut in_flight = JoinSet::new();
        let mut failures = 0u32;
        // Tokens of claims that failed: PostgreSQL may have committed them all the same.
        let mut unanswered: Vec<uuid::Uuid> = Vec::new();
        let mut last_probe = tokio::time::Instant::now() - PROBE_INTERVAL;
        loop {
            self.heartbeat.beat();
            if *shutdown.borrow() {
                break;
            }
            if listener.is_none() {
                listener = self.listen().await;
            }
            while in_flight.try_join_next().is_some() {}
            if !unanswered.is_empty() {
                match deliveries::release(&self.pool, &unanswered).await {
                    Ok(released) => {
                        if released > 0 {
                            tracing::info!(released, "released deliveries claimed by a claim whose reply was lost");
                        }
                        unanswered.clear();
                    }
                    Err(e) => tracing::debug!(error = %e, "cannot release unanswered claims yet"),
                }
            }
            let free = self.workers.available_permits();
            if free > 0 {
                let probe = last_probe.elapsed() >= PROBE_INTERVAL;
                if probe {
                    last_probe = tokio::time::Instant::now();
                }
                let token = uuid::Uuid::new_v4();
                match self.claim_batch(free, probe, token).await {
                    Ok(batch) => {
                        failures = 0;
                        let claimed = batch.len();
                        self.room_limited.store(claimed >= free, Ordering::Relaxed);
                        for claim in batch {
                            self.start_attempt(&mut in_flight, claim);
                        }
                        if claimed >= free {
                            continue; // there may be more due right now
                        }
                    }
                    Err(e) => {
                        // Bounded: a forgotten token only means waiting for the lease.
                        if unanswered.len() >= 1024 {
                            unanswered.remove(0);
                        }
                        unanswered.push(token);
                        failures = failures.saturating_add(1);
                        tracing::warn!(error = %e, "claiming deliveries failed; retrying");
                    }
                }
            }
            let pause = if failures > 0 { POLL_INTERVAL * failures.min(5) } else { POLL_INTERVAL };
            let sleep = tokio::time::sleep(pause);
            tokio::pin!(sleep);
            // Deliveries handed over by the intake start here without a claim, so they do
            // not end the wait.
            loop {
                tokio::select! {
                    handed = recv_handoff(&mut handoffs) => {
                        match handed {
                            Some(claim) => self.start_attempt(&mut in_flight, claim),
                            None => handoffs = None,
                        }
                        while in_flight.try_join_next().is_some() {}
                        continue;
                    }
                    woke = recv(&mut listener) => if !woke { listener = None },
                    _ = self.wake.notified() => {}
                    _ = &mut sleep => {}
                    _ = shutdown.changed() => {}
                }
                break;
            }
        }
        // Deliveries handed over before the intake saw the shutdown are sent too.
        if let Some(mut handoffs) = handoffs {
            handoffs.close();
            while let Ok(claim) = handoffs.try_recv() {
                self.start_attempt(&mut in_flight, claim);
            }
        }
        tracing::info!(in_flight = in_flight.len(), "dispatcher stopping; finishing attempts in flight");
        while in_flight.join_next().await.is_some() {}
    }

    /// Sends one claimed delivery in the background, as soon as a worker is free. (Workers
    /// counted free for a claim may have been taken by deliveries handed over since: the wait
    /// is in the attempt's task, never in the loop that hands them out.)
    fn start_attempt(&self, in_flight: &mut JoinSet<()>, claim: Claimed) {
        let this = self.clone();
        in_flight.spawn(async move {
            let Ok(permit) = this.workers.clone().acquire_owned().await else { return };
            let recorded_here = this.deliver(claim).await;
            drop(permit);
            // A success handed to the recorder is followed up there (it claims the ticket's
            // next delivery); an outcome recorded here (a failure, a dead delivery) may free
            // the ticket's next one now. Otherwise a freed worker matters only if work was
            // left for lack of one: waking for nothing costs an empty claim each time.
            if recorded_here || this.room_limited.load(Ordering::Relaxed) {
                this.wake.notify_one();
            }
        });
    }

    /// Claims up to `room` deliveries: first (when `probes`) one probe for each endpoint
    /// whose breaker may be tested again, then due work.
    ///
    /// Every row claimed by one call carries `token` as its lease token (the fence of its
    /// record), so a call whose reply was lost can be undone with [`deliveries::release`].
    async fn claim_batch(&self, room: usize, probes: bool, token: uuid::Uuid) -> Result<Vec<Claimed>, sqlx::Error> {
        let now = self.clock.now();
        let lease = self.config.lease;
        let mut batch = Vec::new();
        if probes {
            for (owner, target) in endpoints::take_probe_slots(&self.pool, now, lease).await? {
                let scope = ClaimScope::Probe { owner: &owner, target: &target };
                let claimed = deliveries::claim(&self.pool, scope, now, lease, 1, token).await?;
                if claimed.is_empty() {
                    endpoints::return_probe_slot(&self.pool, &owner, &target, now).await?;
                } else {
                    tracing::info!(%owner, %target, "probing an endpoint behind an open circuit breaker");
                }
                batch.extend(claimed);
            }
        }
        let room = i64::try_from(room.saturating_sub(batch.len())).unwrap_or(0);
        if room > 0 {
            batch.extend(deliveries::claim(&self.pool, ClaimScope::Due, now, lease, room, token).await?);
        }
        Ok(batch)
    }

    async fn listen(&self) -> Option<PgListener> {
        let mut listener = PgListener::connect_with(&self.pool).await.ok()?;
        listener.listen(NOTIFY_CHANNEL).await.ok()?;
        Some(listener)
    }

    /// Sends one claimed delivery and records the outcome. Answers `false` when a success
    /// was handed to the batch recorder instead of being recorded here.
    async fn deliver(&self, claim: Claimed) -> bool {
        let span =
            tracing::info_span!("delivery", owner = %claim.owner, ticket = %claim.ticket_number, delivery = %claim.id);
        self.deliver_in_span(claim).instrument(span).await
    }

    async fn deliver_in_span(&self, mut claim: Claimed) -> bool {
        // Secrets arrive sealed when BRIDGE_SECRET_KEY is set; a failure here is recorded as
        // a retryable attempt (the key can be fixed), never a send without a signature.
        let sealer = Sealer::new(self.config.secret_key);
        let open_optional = |stored: &Option<String>| stored.as_deref().map(|p| sealer.open(p)).transpose();
        let opened = sealer.open(&claim.signing_secret).and_then(|secret| {
            Ok((secret, open_optional(&claim.previous_signing_secret)?, open_optional(&claim.dolphins_password)?))
        });
        let unopened = match opened {
            Ok((secret, previous, password)) => {
                claim.signing_secret = secret;
                claim.previous_signing_secret = previous;
                claim.dolphins_password = password;
                None
            }
            Err(e) => Some(e),
        };
        let Some(target) = Target::parse(&claim.target) else {
            tracing::error!(target = %claim.target, "unknown target in the outbox");
            return true;
        };
        let settings: TenantSettings = serde_json::from_value(claim.settings.clone()).unwrap_or_default();
        let (schedule, timeout) = self.policy(&settings);
        let started_at = self.clock.now();
        let ends_by = chrono::Duration::from_std(timeout).ok().and_then(|t| started_at.checked_add_signed(t));
        if ends_by.is_none_or(|end| end > claim.lease_until) {
            // It waited too long for a worker: an attempt now could outlive the claim and
            // race the next one. Once the lease has expired it is claimed again, in order.
            tracing::warn!("claim ran out while waiting for a worker; the delivery is sent after its lease");
            return true;
        }
        let outcome = match unopened {
            None => self.send_with_token(&claim, target, &settings, timeout).await,
            Some(e) => AttemptOutcome::not_sent_yet(e.to_string()),
        };
        let finished_at = self.clock.now();
        let attempts_made = u32::try_from(claim.attempts).unwrap_or(0).saturating_add(1);
        // Position in the schedule, which a manual retry or replay restarts.
        let schedule_position = u32::try_from(claim.attempts - claim.schedule_base).unwrap_or(0).saturating_add(1);
        let verdict = classify(&outcome.reply);
        let endpoint_failed = matches!(verdict, Verdict::Retry { .. });
        let (status, event, next_attempt_at) = match verdict {
            Verdict::Delivered => (DeliveryStatus::Delivered, EventKind::Delivered, None),
            Verdict::Permanent => (DeliveryStatus::Dead, EventKind::Dead, None),
            Verdict::Retry { retry_after } => {
                let jitter = rand::thread_rng().gen_range(-1.0..=1.0);
                match next_delay(&schedule, schedule_position, retry_after, jitter) {
                    Some(delay) => (DeliveryStatus::Failed, EventKind::DeliveryFailed, Some(after(finished_at, delay))),
                    None => (DeliveryStatus::Dead, EventKind::Dead, None),
                }
            }
        };
        let record = AttemptRecord {
            status,
            event,
            started_at,
            finished_at,
            duration_ms: i32::try_from(outcome.duration.as_millis()).unwrap_or(i32::MAX),
            http_status: outcome.http_status.map(i32::from),
            error: outcome.error.as_deref(),
            response_head: outcome.response_head.as_deref(),
            next_attempt_at,
            endpoint_failed,
        };
        let outcome_label = match status {
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Dead => "dead",
            _ => "failed",
        };
        metrics::counter!(names::DELIVERY_ATTEMPTS, "target" => target.as_str(), "outcome" => outcome_label)
            .increment(1);
        metrics::histogram!(names::ATTEMPT_DURATION, "target" => target.as_str())
            .record(outcome.duration.as_secs_f64());
        if let (DeliveryStatus::Delivered, Some(successes)) = (status, &self.successes) {
            let success = Success {
                owner: claim.owner.clone(),
                id: claim.id,
                lease_token: claim.lease_token,
                row_id: claim.row_id.clone(),
                started_at,
                finished_at,
                duration_ms: record.duration_ms,
                http_status: record.http_status,
                response_head: outcome.response_head.clone(),
            };
            if successes.send(success).await.is_ok() {
                tracing::debug!(attempt = attempts_made, "delivered");
                return false;
            }
        }
        match self.record(&claim, &record).await {
            Ok(true) => match status {
                DeliveryStatus::Delivered => tracing::debug!(attempt = attempts_made, "delivered"),
                DeliveryStatus::Dead => {
                    tracing::warn!(attempt = attempts_made, error = ?outcome.error, "delivery dead")
                }
                _ => {
                    tracing::info!(attempt = attempts_made, error = ?outcome.error, "delivery failed; will retry")
                }
            },
            Ok(false) => tracing::warn!("lease lost before the outcome was recorded; another dispatcher owns it now"),
            Err(e) => {
                tracing::error!(error = %e, "could not record the attempt; it will be retried after the lease")
            }
        }
        true
    }

    /// Sends one attempt, with the 3Dolphins API token when the tenant asks for it. A 401
    /// with a cached token fetches a fresh one and sends again, once.
    async fn send_with_token(
        &self,
        claim: &Claimed,
        target: Target,
        settings: &TenantSettings,
        timeout: Duration,
    ) -> AttemptOutcome {
        let now = self.clock.now();
        let account = api_account(claim, target, settings);
        let Some(account) = account else {
            return send::attempt(&self.client, claim, target, settings, timeout, now.timestamp(), None).await;
        };
        let token = match self.tokens.get(&self.client, &account, now).await {
            Ok(token) => token,
            Err(e) => return AttemptOutcome::not_sent_yet(e.to_string()),
        };
        let outcome =
            send::attempt(&self.client, claim, target, settings, timeout, now.timestamp(), Some(&token)).await;
        if outcome.http_status != Some(401) {
            return outcome;
        }
        self.tokens.invalidate(&account);
        match self.tokens.get(&self.client, &account, now).await {
            Ok(token) => {
                send::attempt(&self.client, claim, target, settings, timeout, now.timestamp(), Some(&token)).await
            }
            Err(e) => AttemptOutcome::not_sent_yet(e.to_string()),
        }
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

/// The next delivery handed over by the intake; `None` once the intake is gone.
async fn recv_handoff(handoffs: &mut Option<mpsc::UnboundedReceiver<Claimed>>) -> Option<Claimed> {
    match handoffs {
        Some(h) => h.recv().await,
        None => std::future::pending().await,
    }
}

/// Waits for a notification; `false` when the listener is gone (reconnect next loop).
async fn recv(listener: &mut Option<PgListener>) -> bool {
    match listener {
        Some(l) => match l.try_recv().await {
            Ok(Some(_)) => true,
            // The connection dropped: notifications may have been missed, so the loop
            // claims again, and a fresh listener is opened.
            Ok(None) | Err(_) => false,
        },
        None => std::future::pending().await,
    }
}

/// Writes successful attempts in batches until every sender is gone. After each batch it
/// claims the recorded tickets' next deliveries ([`deliveries::claim_successors`]) and hands
/// them to the dispatcher, so a ticket's waiting deliveries follow each other without a scan
/// of the outbox (unless the dispatcher is stopping), and wakes the claim loop only when its
/// last claim was limited by the free workers (a backlog: other tickets are waiting too).
/// The claim of successors is skipped when none can be waiting: the ticket had handed out
/// no later sequence, and this process wrote nothing unclaimed since the last batch (another
/// process's unclaimed delivery is found by that process's claim or poll). A batch that
/// cannot be written after a few tries is dropped; its deliveries are sent again after the
/// lease (at least once).
async fn record_successes(
    dispatcher: Dispatcher,
    mut receiver: mpsc::Receiver<Success>,
    next: mpsc::UnboundedSender<Claimed>,
) {
    let pool = &dispatcher.pool;
    while let Some(first) = receiver.recv().await {
        let mut batch = vec![first];
        while batch.len() < SUCCESS_BATCH {
            match receiver.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let mut tries = 0;
        let recorded = loop {
            match deliveries::record_successes(pool, &batch).await {
                Ok(recorded) => {
                    if recorded.len() < batch.len() {
                        tracing::warn!(
                            lost = batch.len() - recorded.len(),
                            "leases lost before successes were recorded; another dispatcher owns them now"
                        );
                    }
                    break recorded;
                }
                Err(e) if crate::store::is_unavailable(&e) && tries < 5 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(200 * tries)).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, count = batch.len(), "could not record delivered attempts; they will be sent again after the lease");
                    break Vec::new();
                }
            }
        };
        // The last claim took as much as it could: more may be due for the freed workers.
        if dispatcher.room_limited.load(Ordering::Relaxed) {
            dispatcher.wake.notify_one();
        }
        // Successors the record's snapshot saw, or any, if an unclaimed delivery was written
        // since the last look: one written after that flag was read wakes the claim loop
        // after this record's commit, so the claim finds it.
        let anything_unclaimed = dispatcher.unclaimed_written.swap(false, Ordering::SeqCst);
        let recorded: Vec<Place> = recorded.into_iter().filter(|p| anything_unclaimed || p.followed).collect();
        if recorded.is_empty() || next.is_closed() {
            continue;
        }
        let (now, lease) = (dispatcher.clock.now(), dispatcher.config.lease);
        match deliveries::claim_successors(pool, &recorded, now, lease, uuid::Uuid::new_v4()).await {
            Ok(claimed) => {
                for claim in claimed {
                    if next.send(claim).is_err() {
                        tracing::debug!("the dispatcher has stopped; the delivery is sent after its lease");
                    }
                }
            }
            Err(e) => {
                // The claim finds them instead.
                tracing::warn!(error = %e, "claiming the next deliveries of recorded tickets failed");
                dispatcher.wake.notify_one();
            }
        }
    }
}
