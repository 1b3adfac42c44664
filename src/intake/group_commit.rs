//! Group commit of message writes: the messages of concurrent webhook requests are written
//! by one statement ([`message_writes::write_messages`]) and one commit, and each request is
//! answered once that commit is done, never before. The transaction path writes its message
//! through here too ([`GroupCommit::write_in_transaction`]), so that every message is written
//! by the same statement and its delivery handed to the dispatcher the same way.
//!
//! Why: on the bridge's hot path PostgreSQL spends most of a message's cost on what every
//! statement costs however few rows it writes (setting up four tables and their indexes,
//! the round trip, waking the backend, the commit's WAL flush). Batching spreads that cost.
//!
//! How: a request queues its message and waits. A writer task writes what is queued, taking
//! at most [`MAX_BATCH`] writes of distinct tickets that no other writer holds, in arrival
//! order; more writers (up to [`GroupCommit::new`]'s `writers`) start only while more than a
//! batch is waiting, since one big batch costs PostgreSQL hardly more than a small one. A
//! busy bridge writes whatever queued while the previous statement ran.
//!
//! At a moderate rate nothing queues while a statement runs, and each message would pay a
//! statement and a commit of its own. So a message that finds the writer idle waits for
//! company, at most the intake window (`BRIDGE_INTAKE_WINDOW`, measured from its arrival,
//! so a message that queued behind a statement longer than that goes at once) or until a
//! batch is full. At 750 events/s a window of 2 ms cut the bridge's and PostgreSQL's CPU per
//! event by about a third and the commits per event from about 0.9 to about 0.4, for 2–3 ms
//! more on each webhook's answer (`docs/benchmarks.md`).
//!
//! Keeping each ticket in one batch at a time keeps its messages in arrival order and keeps
//! writers from waiting on each other's row locks (or deadlocking on them).
//!
//! Writers are spawned when work arrives and end when none is left to take: nothing runs
//! while the bridge is idle, and nothing outlives the queue.
//!
//! With a dispatcher in the process ([`DirectDispatch`]) that has room for more work, each
//! outbox row is offered a lease: a row written claimed goes straight to a worker after the
//! commit; a row written behind a delivery of its ticket in flight is claimed by that one's
//! record; any other row written unclaimed (no room, its ticket has a delivery waiting
//! unclaimed, its endpoint is paused or failing) wakes the dispatcher to claim it.

use std::collections::{HashSet, VecDeque};
use std::hash::BuildHasher;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard};

use futures::FutureExt;
use sqlx::PgPool;
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;
use uuid::Uuid;

use crate::delivery::{DirectDispatch, Promise};
use crate::store::deliveries::Claimed;
use crate::store::message_writes::{self, Delivery, DirectLease, MessageWrite, Recorded};

/// Most writes written by one statement.
pub const MAX_BATCH: usize = 64;

/// The queue of writes waiting to be written. Cheap to clone.
#[derive(Clone)]
pub struct GroupCommit {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    writers: usize,
    dispatch: Option<DirectDispatch>,
    /// How long a message may wait for company ([`GroupCommit::new`]).
    window: std::time::Duration,
    /// Tells a writer waiting for company that a whole batch is waiting.
    batch_full: Notify,
    /// Hashes `(owner, ticket)`; a collision only makes two tickets wait for each other.
    hasher: std::collections::hash_map::RandomState,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    waiting: VecDeque<Job>,
    /// Tickets in a batch being written.
    busy: HashSet<u64>,
    /// Writer tasks running.
    running: usize,
}

struct Job {
    write: MessageWrite,
    ticket: u64,
    queued: Instant,
    /// Room promised to the write's delivery when it is offered a lease.
    promise: Option<Promise>,
    reply: oneshot::Sender<Result<Recorded, sqlx::Error>>,
}

type Outcome = Result<(Recorded, Delivery), sqlx::Error>;

impl GroupCommit {
    /// Writes through `pool` with at most `writers` statements in flight, handing the
    /// deliveries it writes to `dispatch` when there is one. A message that finds the writer
    /// idle waits up to `window` after its arrival for others to share its statement and
    /// commit (see the module's doc); zero writes it at once.
    pub fn new(pool: PgPool, writers: usize, window: std::time::Duration, dispatch: Option<DirectDispatch>) -> Self {
        let inner = Inner {
            pool,
            writers: writers.max(1),
            dispatch,
            window,
            batch_full: Notify::new(),
            hasher: Default::default(),
            state: Default::default(),
        };
        GroupCommit { inner: Arc::new(inner) }
    }

    /// Writes `write` (with whatever else is queued) and answers what happened to it,
    /// after the commit.
    pub async fn write(&self, write: MessageWrite) -> Result<Recorded, sqlx::Error> {
        let ticket = self.inner.hasher.hash_one((&write.message.owner, &write.message.ticket_number));
        let (reply, answer) = oneshot::channel();
        let start_writer = {
            let mut state = self.inner.lock();
            state.waiting.push_back(Job { write, ticket, queued: Instant::now(), promise: None, reply });
            if state.waiting.len() == MAX_BATCH {
                self.inner.batch_full.notify_one();
            }
            // One writer unless it cannot keep up: every statement costs about the same
            // whatever it carries, so one big batch beats two halves.
            let start = state.running == 0 || (state.running < self.inner.writers && state.waiting.len() > MAX_BATCH);
            if start {
                state.running += 1;
            }
            start
        };
        if start_writer {
            tokio::spawn(run_writer(self.inner.clone()));
        }
        // The writer always answers; a dropped sender means it was cancelled by a runtime
        // shutdown.
        answer.await.unwrap_or(Err(sqlx::Error::PoolClosed))
    }

    /// Writes `write` alone in the caller's transaction `tx` (which holds its ticket's row
    /// lock); after the commit, pass what became of its delivery to
    /// [`GroupCommit::after_commit`].
    pub async fn write_in_transaction(
        &self,
        tx: &mut sqlx::PgConnection,
        mut write: MessageWrite,
    ) -> Result<(Recorded, Committed), sqlx::Error> {
        let promise = self.offer_lease(&mut write);
        let (recorded, delivery) =
            message_writes::write_messages(tx, &[&write]).await?.pop().ok_or(sqlx::Error::RowNotFound)?;
        Ok((recorded, Committed::of(delivery, promise, &write)))
    }

    /// Offers `write`'s outbox row a lease when this process runs a dispatcher with room to
    /// send it at once (see `delivery::handoff`, backpressure): without, the row is written
    /// unclaimed for the claim loop.
    fn offer_lease(&self, write: &mut MessageWrite) -> Option<Promise> {
        let dispatch = self.inner.dispatch.as_ref().filter(|_| write.delivery.is_some())?;
        let promise = dispatch.promise()?;
        let lease = chrono::Duration::from_std(dispatch.lease()).unwrap_or(chrono::Duration::seconds(30));
        write.lease = Some(DirectLease { token: Uuid::new_v4(), until: write.message.at + lease });
        Some(promise)
    }

    /// After a commit that may have written outbox rows: hands the row to the dispatcher if
    /// it was written claimed, leaves it to its predecessor's record if it was written behind
    /// one (telling the recorder not to wait with that record), else wakes the dispatcher to
    /// claim what was written.
    pub fn after_commit(&self, committed: Committed) {
        let Some(dispatch) = &self.inner.dispatch else { return };
        match committed {
            Committed::Claimed { claim, promise } => dispatch.hand_over(*claim, promise),
            Committed::Behind { owner, ticket_number } => dispatch.written_behind(&owner, &ticket_number),
            Committed::Unclaimed => dispatch.wake(),
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state holds no invariant a panicking holder could break halfway.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits while the oldest waiting message may still wait for company: until it has waited
    /// the window, or a whole batch is waiting. (A stale wake-up only writes a batch early.)
    async fn wait_for_company(&self) {
        if self.window.is_zero() {
            return;
        }
        let deadline = {
            let state = self.lock();
            match state.waiting.front() {
                Some(oldest) if state.waiting.len() < MAX_BATCH => oldest.queued + self.window,
                _ => return,
            }
        };
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => {}
            () = self.batch_full.notified() => {}
        }
    }

    /// Takes the next batch (marking its tickets busy), or ends this writer when nothing
    /// can be taken: every waiting message's ticket is then held by a running writer, which
    /// takes it when done.
    fn next_batch(&self) -> Option<Vec<Job>> {
        let mut state = self.lock();
        let mut batch = Vec::new();
        let mut left = VecDeque::new();
        while let Some(job) = state.waiting.pop_front() {
            if batch.len() < MAX_BATCH && state.busy.insert(job.ticket) {
                batch.push(job);
            } else {
                left.push_back(job);
            }
        }
        state.waiting = left;
        if batch.is_empty() {
            state.running -= 1;
            return None;
        }
        Some(batch)
    }

    fn release(&self, batch: &[Job]) {
        let mut state = self.lock();
        for job in batch {
            state.busy.remove(&job.ticket);
        }
    }
}

/// One writer: batches until nothing is left to take.
async fn run_writer(inner: Arc<Inner>) {
    let group = GroupCommit { inner };
    loop {
        group.inner.wait_for_company().await;
        let Some(mut batch) = group.inner.next_batch() else { break };
        // Tickets are locked in key order, as the success recorder takes them.
        batch.sort_by(|a, b| {
            let (a, b) = (&a.write.message, &b.write.message);
            (&a.owner, &a.ticket_number).cmp(&(&b.owner, &b.ticket_number))
        });
        for job in &mut batch {
            job.promise = group.offer_lease(&mut job.write);
        }
        let outcomes = match AssertUnwindSafe(write_batch(&group.inner.pool, &batch)).catch_unwind().await {
            Ok(outcomes) => outcomes,
            Err(_) => {
                tracing::error!(count = batch.len(), "writing a batch of messages panicked");
                batch.iter().map(|_| Err(sqlx::Error::WorkerCrashed)).collect()
            }
        };
        group.inner.release(&batch);
        for (job, outcome) in batch.into_iter().zip(outcomes) {
            let Job { write, promise, reply, .. } = job;
            let answer = outcome.map(|(recorded, delivery)| {
                if recorded == Recorded::Applied && write.delivery.is_some() {
                    group.after_commit(Committed::of(delivery, promise, &write));
                }
                recorded
            });
            let _ = reply.send(answer);
        }
    }
}

/// What became of a committed write's delivery, for [`GroupCommit::after_commit`].
pub enum Committed {
    /// Written claimed, with the room promised to it.
    Claimed { claim: Box<Claimed>, promise: Promise },
    /// Written behind an earlier delivery of its ticket in flight ([`Delivery::Behind`]).
    Behind { owner: String, ticket_number: String },
    /// Written unclaimed (or nothing written).
    Unclaimed,
}

impl Committed {
    /// What became of a write's delivery; an unused promise is dropped (giving its room back).
    pub(super) fn of(delivery: Delivery, promise: Option<Promise>, write: &MessageWrite) -> Committed {
        match (delivery, promise) {
            (Delivery::Claimed(claim), Some(promise)) => Committed::Claimed { claim, promise },
            (Delivery::Behind, _) => Committed::Behind {
                owner: write.message.owner.clone(),
                ticket_number: write.message.ticket_number.clone(),
            },
            _ => Committed::Unclaimed,
        }
    }
}

/// Writes a batch in one statement. If PostgreSQL refuses it (one message's text it cannot
/// store, a deadlock with another process), each message is written alone so that each
/// request gets its own answer; if the database is away, all get that answer at once.
async fn write_batch(pool: &PgPool, batch: &[Job]) -> Vec<Outcome> {
    let writes: Vec<&MessageWrite> = batch.iter().map(|j| &j.write).collect();
    match message_writes::write_messages(pool, &writes).await {
        Ok(recorded) => recorded.into_iter().map(Ok).collect(),
        Err(e) if writes.len() == 1 => vec![Err(e)],
        Err(e) if crate::store::is_unavailable(&e) => writes.iter().map(|_| Err(unavailable(&e))).collect(),
        Err(e) => {
            tracing::debug!(error = %e, count = writes.len(), "a batch of messages was refused; writing them one by one");
            let mut outcomes = Vec::with_capacity(writes.len());
            for one in writes {
                let written = message_writes::write_messages(pool, &[one]).await;
                outcomes.push(written.and_then(|mut w| w.pop().ok_or(sqlx::Error::RowNotFound)));
            }
            outcomes
        }
    }
}

/// The same "database unavailable" error for every request of a batch (`sqlx::Error` is not
/// `Clone`).
fn unavailable(e: &sqlx::Error) -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::new(std::io::ErrorKind::NotConnected, e.to_string()))
}
