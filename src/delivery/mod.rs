//! The dispatcher: claims due deliveries from the outbox with a lease, sends each with no
//! lock or pooled connection held, and records the outcome under the lease's fencing
//! token. Its stages, one file each:
//!
//! - [`handoff`]: deliveries the intake wrote already claimed arrive here and are sent at
//!   once; the wake protocol (when the claim loop must look again) is written there.
//! - `claim_loop`: claims as much due work as there are free workers, and sleeps until woken,
//!   notified by another process (`LISTEN/NOTIFY`, operator actions) or the poll interval.
//! - `attempt`: one attempt, prepare → send → classify → record.
//! - `recorder`: writes successes in batches, claiming the recorded tickets' next
//!   deliveries.
//! - [`send`]: the HTTP request itself, signed, and what came back.

pub mod handoff;
pub mod send;

mod attempt;
mod claim_loop;
mod recorder;

pub use handoff::{DirectDispatch, Handoff, Handoffs, Promise, Worker, WorkerSlot};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::clock::Clock;
use crate::config::Config;
use crate::dolphins::token::TokenCache;
use crate::heartbeat::Heartbeat;
use crate::store::successes::Success;
use crate::telemetry::names;
use handoff::{Wake, Workers};

/// Sends deliveries. Cheap to clone; every clone shares the worker limit.
#[derive(Clone)]
pub struct Dispatcher {
    pool: PgPool,
    /// Where the success recorder writes ([`Dispatcher::with_record_pool`]); `pool` unless
    /// told otherwise.
    records: PgPool,
    client: reqwest::Client,
    config: Arc<Config>,
    clock: Arc<dyn Clock>,
    heartbeat: Heartbeat,
    /// `BRIDGE_WORKERS`: attempts in flight at once in this process, each reserved before
    /// its delivery is claimed ([`handoff`]).
    workers: Workers,
    /// When the claim loop must look again ([`handoff`]).
    wake: Arc<Wake>,
    /// Claims of this dispatcher that ran out before their outcome was recorded (each costs
    /// a duplicate send or a wait of a lease): 0 in a healthy process.
    lost_leases: Arc<AtomicU64>,
    /// 3Dolphins API tokens for tenants with `useApiToken`.
    tokens: TokenCache,
    /// Where a running dispatcher hands successful attempts to be recorded in batches
    /// (`recorder`); `None` records each attempt itself ([`Dispatcher::run_once`]).
    successes: Option<mpsc::Sender<Success>>,
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
        let wake: Arc<Wake> = Arc::default();
        let workers = Workers::new(config.workers, wake.clone());
        Ok(Dispatcher {
            records: pool.clone(),
            pool,
            client,
            config,
            clock,
            heartbeat,
            workers,
            wake,
            lost_leases: Arc::default(),
            tokens: TokenCache::default(),
            successes: None,
        })
    }

    /// Writes the success records through `records` (`store::record_pool`: generic plans,
    /// which the batched record's statement is written for) instead of the pool of the claims
    /// and the failures, whose claim needs a plan made for its parameters.
    pub fn with_record_pool(self, records: PgPool) -> Self {
        Dispatcher { records, ..self }
    }

    /// The intake's way to hand this dispatcher deliveries claimed as they were written, and
    /// to wake it for deliveries written unclaimed; pass the [`Handoffs`] to
    /// [`Dispatcher::run`]. Other processes find unclaimed work on their next poll: a
    /// `pg_notify` per accepted event would take PostgreSQL's global notify lock at every
    /// commit. Operator actions (retry, replay, resume) still notify every process.
    pub fn direct_dispatch(&self) -> (DirectDispatch, Handoffs) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let direct =
            DirectDispatch { lease: self.config.lease, workers: self.workers.clone(), handoffs: sender.clone() };
        (direct, Handoffs { receiver, sender })
    }

    /// Claims what is due now (probes of recovering endpoints first) and sends it all,
    /// recording each outcome itself, and returns how many attempts were made: one step, for
    /// the tests that need to look between steps.
    pub async fn run_once(&self) -> Result<usize, sqlx::Error> {
        let slots = self.workers.reserve_up_to(self.config.workers);
        let batch = self.claim_batch(slots.len(), true, uuid::Uuid::new_v4()).await?;
        let n = batch.len();
        let mut attempts = JoinSet::new();
        for (claim, slot) in batch.into_iter().zip(slots) {
            let this = self.clone();
            attempts.spawn(async move {
                this.deliver(claim).await;
                drop(slot);
            });
        }
        while attempts.join_next().await.is_some() {}
        Ok(n)
    }

    /// Runs until `shutdown` turns true: the claim loop, the success recorder, and the
    /// deliveries handed over. On shutdown it stops claiming, lets in-flight attempts finish
    /// (each bounded by its timeout) and records them.
    pub async fn run(self, shutdown: watch::Receiver<bool>, handoffs: Option<Handoffs>) {
        let handoffs = handoffs.unwrap_or_else(|| self.direct_dispatch().1);
        let (sender, receiver) = mpsc::channel(4 * recorder::SUCCESS_BATCH);
        let recorder = tokio::spawn(recorder::record_successes(self.clone(), receiver, handoffs.sender.clone()));
        let this = Dispatcher { successes: Some(sender), ..self };
        this.run_loop(shutdown, handoffs.receiver).await;
        // Every sender is gone once the loop and its attempts are done: the recorder
        // writes what it still holds and ends.
        if recorder.await.is_err() {
            tracing::error!("the success recorder panicked");
        }
    }

    /// How many claims of this dispatcher ran out before their outcome was recorded, shared
    /// with every clone (`bridge_delivery_leases_lost_total` counts all processes' alike).
    pub fn lost_leases(&self) -> Arc<AtomicU64> {
        self.lost_leases.clone()
    }

    /// Counts `n` claims that ran out: `reason` is `waited_for_worker` (never sent) or
    /// `expired_before_record` (sent; its outcome could not be recorded under the lease).
    fn count_lost_leases(&self, n: usize, reason: &'static str) {
        let n = u64::try_from(n).unwrap_or(u64::MAX);
        self.lost_leases.fetch_add(n, Ordering::Relaxed);
        metrics::counter!(names::LEASES_LOST, "reason" => reason).increment(n);
    }
}
