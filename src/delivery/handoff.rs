//! The hand-off from the intake to the dispatcher, and the wake protocol.
//!
//! Most deliveries never need the claim loop: the intake writes them claimed
//! ([`crate::store::message_writes::DirectLease`]) and hands them over after the commit
//! ([`DirectDispatch::hand_over`]), and the success recorder claims a ticket's next delivery
//! itself. The claim loop sleeps until one of the events below wakes it (or its poll
//! interval passes). Every decision to wake it is made in `Wake`, so that a reader sees
//! the whole protocol in one place:
//!
//! | event | wakes the claim loop when |
//! |---|---|
//! | the intake wrote a delivery unclaimed | unless it was written behind one in flight (`Wake::unclaimed_written`; then the recorder records that one without waiting, `Wake::successor_written`) |
//! | a worker recorded an outcome itself (a failure, a dead delivery) | always: the ticket's next one may go (`Wake::outcome_recorded`) |
//! | a worker is freed (an attempt ended, a reservation went unused) | only if work may be waiting for a worker (`WorkerSlot`'s drop) |
//! | the recorder had no worker for a successor | always, and work may now wait for a worker (`Wake::work_may_wait`) |
//! | the recorder closed a breaker | always: what it held back may be due (`Wake::breaker_closed`) |
//! | the recorder could not claim successors it knew of, or claimed fewer than it knew of (one held by another transaction is skipped) | always: the claim finds them (`Wake::successor_claim_failed`) |
//!
//! "Work may be waiting for a worker" is true when the last claim filled every worker that
//! was free, or found none free (`Wake::claimed`: the intake's wake for a delivery it wrote
//! unclaimed for lack of room ends so), or the recorder left a successor for lack of room;
//! otherwise a freed worker changes nothing, and waking would cost an empty claim each time.
//!
//! A delivery written behind an earlier one in flight wakes nobody: it is claimed by
//! whoever records that earlier one, in the same statement, or, if it was written while that
//! statement ran, by a second statement right after (`store::successes::record_successes`
//! says why one of the two always sees it); a worker that records an outcome itself wakes
//! the claim loop after its commit. So a deep ticket's deliveries follow each other without
//! the claim loop, whose claim would have to pass the whole backlog of waiting deliveries to
//! find the few that may go.
//!
//! **Backpressure.** The intake and the recorder keep a claim only with room to send it
//! at once ([`Worker`]): a worker free now, or one of `BRIDGE_WORKERS` places in a queue for
//! the next worker freed (the intake is promised that room for the length of its write,
//! [`DirectDispatch::promise`], and takes the worker after the commit). With no room the
//! intake writes the delivery unclaimed (the recorder gives a successor it claimed back at
//! once), and the claim loop takes it, in order, when a worker is freed; the claim loop
//! claims no more than the workers free at that moment. Claims waiting for a worker wait ahead of any new
//! reservation (the semaphore is fair), and there are never more of them than a few times
//! the workers: so none waits much longer than one attempt, however fast events arrive. (A
//! claim that would still outlive its lease is not sent, and is counted in
//! `bridge_delivery_leases_lost_total`.)
//!
//! Operator actions (retry, replay, resume) wake every process through `LISTEN/NOTIFY`;
//! other processes' work is found by the poll.

use std::collections::HashSet;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};

use crate::store::deliveries::Claimed;
use crate::store::successes::Success;

/// The claim loop's wake-up and the fact its wake decisions rest on; and the recorder's.
#[derive(Default)]
pub(super) struct Wake {
    notify: Notify,
    /// Whether the last claim filled every free worker (or there was none free to claim for).
    room_limited: AtomicBool,
    /// Tickets (hashed) with a delivery written behind one in flight in this process: that
    /// one's success is recorded at once, not after the recorder's window (a hash collision
    /// only records a batch early).
    successors_waiting: Mutex<HashSet<u64>>,
    /// Tells the recorder a ticket was added to `successors_waiting`.
    record_now: Notify,
}

/// More tickets than this waiting for a predecessor's record means the set holds the tickets
/// of attempts that failed (recorded by their worker, not the recorder): it is cleared.
const MOST_SUCCESSORS_WAITING: usize = 100_000;

fn ticket_key(owner: &str, ticket_number: &str) -> u64 {
    BuildHasherDefault::<DefaultHasher>::default().hash_one((owner, ticket_number))
}

impl Wake {
    /// The claim loop took `claimed` deliveries for the `reserved` workers it had (none
    /// reserved: every worker was busy, and whatever woke the loop may be waiting for one).
    pub(super) fn claimed(&self, claimed: usize, reserved: usize) {
        self.room_limited.store(claimed >= reserved, Ordering::Relaxed);
    }

    /// Work may be waiting for a worker that is busy now (the recorder had no worker for a
    /// successor, or the intake none for a new delivery): the next freed worker wakes the loop.
    pub(super) fn work_may_wait(&self) {
        self.room_limited.store(true, Ordering::Relaxed);
        self.notify.notify_one();
    }

    /// A worker was freed (its attempt ended, or its reservation went unused).
    fn worker_freed(&self) {
        if self.room_limited.load(Ordering::Relaxed) {
            self.notify.notify_one();
        }
    }

    /// A worker recorded an attempt's outcome itself (a failure, a dead delivery): the
    /// ticket's next delivery may go now. (A success handed to the recorder is followed up
    /// there.)
    pub(super) fn outcome_recorded(&self) {
        self.notify.notify_one();
    }

    /// The intake committed a delivery unclaimed, not behind one in flight: it may be due now.
    pub(super) fn unclaimed_written(&self) {
        self.notify.notify_one();
    }

    /// The recorder's successes closed an endpoint's breaker: the deliveries it held back
    /// may be due now.
    pub(super) fn breaker_closed(&self) {
        self.notify.notify_one();
    }

    /// The recorder could not claim successors it knew of, or left some (skipped while
    /// another transaction held them, or not due): the claim finds those that may go.
    pub(super) fn successor_claim_failed(&self) {
        self.notify.notify_one();
    }

    pub(super) async fn notified(&self) {
        self.notify.notified().await;
    }

    /// The intake committed a delivery of this ticket behind one in flight: its record
    /// should not wait.
    fn successor_written(&self, owner: &str, ticket_number: &str) {
        self.successor_may_follow(owner, ticket_number);
        self.record_now.notify_one();
    }

    /// The recorder claimed a ticket's next delivery, or the claim loop one that waited:
    /// another may wait behind it (a deep ticket's chain), so its record should not wait
    /// either. (At a chain's end that costs one record without a window.)
    pub(super) fn successor_may_follow(&self, owner: &str, ticket_number: &str) {
        if let Ok(mut waiting) = self.successors_waiting.lock() {
            if waiting.len() >= MOST_SUCCESSORS_WAITING {
                waiting.clear();
            }
            waiting.insert(ticket_key(owner, ticket_number));
        }
    }

    /// Whether a delivery of one of `successes`' tickets waits for their record (or work
    /// waits for a worker); their tickets are forgotten (the record claims what waits).
    pub(super) fn successor_waits(&self, successes: &[Success]) -> bool {
        // Work waiting for a worker may be any ticket's next delivery.
        if self.room_limited.load(Ordering::Relaxed) {
            return true;
        }
        let Ok(mut waiting) = self.successors_waiting.lock() else { return true };
        if waiting.is_empty() {
            return false;
        }
        let mut any = false;
        for s in successes {
            any |= waiting.remove(&ticket_key(&s.owner, &s.ticket_number));
        }
        any
    }

    /// Until the intake writes a delivery behind one in flight.
    pub(super) async fn successor_written_notified(&self) {
        self.record_now.notified().await;
    }
}

/// This process's delivery workers (`BRIDGE_WORKERS`), reserved one at a time.
#[derive(Clone)]
pub(super) struct Workers {
    pub(super) semaphore: Arc<Semaphore>,
    /// Places for claims waiting for the next worker freed: as many as there are workers,
    /// so that none waits longer than about one attempt.
    pub(super) queue: Arc<Semaphore>,
    /// Deliveries the intake is writing claimed, each promised a worker after its commit.
    pub(super) promised: Arc<AtomicUsize>,
    pub(super) wake: Arc<Wake>,
}

impl Workers {
    pub(super) fn new(workers: usize, wake: Arc<Wake>) -> Workers {
        Workers {
            semaphore: Arc::new(Semaphore::new(workers)),
            queue: Arc::new(Semaphore::new(workers)),
            promised: Arc::default(),
            wake,
        }
    }

    /// A worker free now, else a place in the queue for the next one freed, else `None`:
    /// then the delivery is better left unclaimed for the claim loop.
    pub(super) fn reserve_or_queue(&self) -> Option<Worker> {
        if let Some(slot) = self.reserve() {
            return Some(Worker::Now(slot));
        }
        let place = self.queue.clone().try_acquire_owned().ok()?;
        Some(Worker::Next(place))
    }

    /// A free worker, if there is one now.
    pub(super) fn reserve(&self) -> Option<WorkerSlot> {
        let permit = self.semaphore.clone().try_acquire_owned().ok()?;
        Some(WorkerSlot { _permit: permit, wake: self.wake.clone() })
    }

    /// The next worker to be freed (`None` only if the workers were closed).
    pub(super) async fn wait_for_worker(&self) -> Option<WorkerSlot> {
        let permit = self.semaphore.clone().acquire_owned().await.ok()?;
        Some(WorkerSlot { _permit: permit, wake: self.wake.clone() })
    }

    /// Up to `n` free workers.
    pub(super) fn reserve_up_to(&self, n: usize) -> Vec<WorkerSlot> {
        std::iter::from_fn(|| self.reserve()).take(n).collect()
    }
}

/// One worker, reserved for one delivery before it is claimed and held through its
/// attempt. Dropping it frees the worker (and wakes the claim loop if work may be waiting).
pub struct WorkerSlot {
    _permit: OwnedSemaphorePermit,
    wake: Arc<Wake>,
}

impl Drop for WorkerSlot {
    fn drop(&mut self) {
        self.wake.worker_freed();
    }
}

/// The worker a claimed delivery will be sent on.
pub enum Worker {
    /// Reserved already.
    Now(WorkerSlot),
    /// The next one freed; the place in the queue is held until then.
    Next(OwnedSemaphorePermit),
    /// The next one freed (the claim loop's own claims: no more than were free).
    Any,
}

impl Worker {
    /// The worker itself: at once if reserved, else the next one freed (a place in the
    /// queue is given up then); `None` only if the workers were closed.
    pub(super) async fn take(self, workers: &Workers) -> Option<WorkerSlot> {
        match self {
            Worker::Now(slot) => Some(slot),
            Worker::Next(_place) => workers.wait_for_worker().await,
            Worker::Any => workers.wait_for_worker().await,
        }
    }
}

/// A claimed delivery with the worker that sends it.
pub struct Handoff {
    pub claim: Claimed,
    pub worker: Worker,
}

/// Room promised to one write in progress ([`DirectDispatch::promise`]); dropping it gives
/// the room back.
pub struct Promise {
    promised: Arc<AtomicUsize>,
}

impl Drop for Promise {
    fn drop(&mut self) {
        self.promised.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Hands deliveries that the intake wrote already claimed straight to this process's
/// running dispatcher: no claim statement, and a send that starts as soon as the commit is
/// done.
///
/// The intake offers a lease only with room promised ([`DirectDispatch::promise`]), so a
/// handed-over delivery starts at once or after the attempts already running. Deliveries
/// handed over after the dispatcher stopped
/// keep their lease and are claimed again when it expires (by the next process, or this
/// one's successor).
#[derive(Clone)]
pub struct DirectDispatch {
    pub(super) lease: Duration,
    pub(super) workers: Workers,
    pub(super) handoffs: mpsc::UnboundedSender<Handoff>,
}

/// The dispatcher's end of [`DirectDispatch`], for [`super::Dispatcher::run`] (whose success
/// recorder hands over the deliveries it claims the same way).
pub struct Handoffs {
    pub(super) receiver: mpsc::UnboundedReceiver<Handoff>,
    pub(super) sender: mpsc::UnboundedSender<Handoff>,
}

impl DirectDispatch {
    /// How long a delivery claimed as it is written stays claimed.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// Room for a delivery about to be written claimed, or `None` (then it is written
    /// unclaimed, and the claim loop takes it in order). Room is a worker free or a place in
    /// the queue for the next one, less what other writes in progress were promised. Nothing
    /// is reserved while the write runs (most writes of a busy ticket end unclaimed, and a
    /// reservation held through them would keep the worker from the recorder); the worker is
    /// taken after the commit ([`DirectDispatch::hand_over`]), and the promise then dropped.
    pub fn promise(&self) -> Option<Promise> {
        let workers = &self.workers;
        let room = workers.semaphore.available_permits() + workers.queue.available_permits();
        let taken = workers
            .promised
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |promised| (promised < room).then_some(promised + 1));
        // Without room the delivery is written unclaimed: unless it is behind one in flight,
        // its wake finds the claim loop without a free worker, which then waits for one.
        taken.ok()?;
        Some(Promise { promised: workers.promised.clone() })
    }

    /// Gives the dispatcher a committed delivery claimed as it was written under `promise`,
    /// with a worker: free now, or a place in the queue for the next one, or (when the
    /// recorder took the room meanwhile) simply the next one freed.
    pub fn hand_over(&self, claim: Claimed, promise: Promise) {
        let worker = self.workers.reserve_or_queue().unwrap_or(Worker::Any);
        drop(promise);
        if self.handoffs.send(Handoff { claim, worker }).is_err() {
            tracing::debug!("the dispatcher has stopped; the delivery is sent after its lease");
        }
    }

    /// Wakes the dispatcher to claim deliveries committed unclaimed.
    pub fn wake(&self) {
        self.workers.wake.unclaimed_written();
    }

    /// A delivery of this ticket was committed behind one in flight: the recorder records
    /// that one's success at once.
    pub fn written_behind(&self, owner: &str, ticket_number: &str) {
        self.workers.wake.successor_written(owner, ticket_number);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn success(owner: &str, ticket_number: &str) -> Success {
        let now = chrono::Utc::now();
        Success {
            owner: owner.into(),
            id: uuid::Uuid::new_v4(),
            ticket_number: ticket_number.into(),
            lease_token: uuid::Uuid::new_v4(),
            row_id: "(0,1)".into(),
            started_at: now,
            finished_at: now,
            duration_ms: 1,
            http_status: Some(200),
            response_head: None,
            request: None,
        }
    }

    #[tokio::test]
    async fn a_record_waited_on_goes_at_once_and_only_once() {
        let wake = Wake::default();
        let batch = [success("acme", "T1"), success("acme", "T2")];
        assert!(!wake.successor_waits(&batch), "nobody waits: the batch may wait for company");
        // The intake writes a delivery of T2 behind one in flight, and tells the recorder.
        wake.successor_written("acme", "T2");
        let told = tokio::time::timeout(Duration::from_secs(1), wake.successor_written_notified()).await;
        assert!(told.is_ok(), "the recorder is told");
        assert!(!wake.successor_waits(&batch[..1]), "another ticket's success still may wait");
        assert!(wake.successor_waits(&batch), "T2's record goes now");
        assert!(!wake.successor_waits(&batch), "and its ticket is forgotten (the record claims what waits)");
        // Another tenant's ticket of the same number is another ticket.
        wake.successor_may_follow("other", "T1");
        assert!(!wake.successor_waits(&batch));
        // Work waiting for a worker may be anyone's next delivery.
        wake.work_may_wait();
        assert!(wake.successor_waits(&batch));
    }
}
