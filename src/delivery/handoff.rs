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
//! | the intake wrote a delivery unclaimed | always (`Wake::unclaimed_written`) |
//! | a worker recorded an outcome itself (a failure, a dead delivery) | always: the ticket's next one may go (`Wake::outcome_recorded`) |
//! | a worker is freed (an attempt ended, a reservation went unused) | only if work may be waiting for a worker (`WorkerSlot`'s drop) |
//! | the recorder had no worker for a successor | always, and work may now wait for a worker (`Wake::work_may_wait`) |
//! | the recorder could not claim successors | always: the claim finds them (`Wake::successor_claim_failed`) |
//!
//! "Work may be waiting for a worker" is true when the last claim filled every worker it
//! had reserved, or had none to reserve (`Wake::claimed`), or the recorder left a successor
//! for lack of a worker; otherwise a freed worker changes nothing, and waking would cost an
//! empty claim each time.
//!
//! **Backpressure.** A delivery is claimed only together with the worker that will send it
//! (a [`WorkerSlot`], taken before the claim: by the intake for a delivery it writes claimed,
//! by the recorder for a successor, by the claim loop for what it claims). With no worker
//! free, the intake writes the delivery unclaimed and the claim loop takes it, in order, when
//! a worker is freed. So a claimed delivery never waits for a local worker, and its lease
//! cannot run out before its attempt starts, however fast events arrive. (The recorder does not wake the loop after a
//! batch: the worker's own wake came first, and a ticket's next delivery is the recorder's
//! to claim.) The recorder claims the successors of every recorded delivery
//! only when an unclaimed delivery was written since its last batch
//! (`Wake::take_unclaimed_written`); otherwise only those of tickets that had handed out
//! a later sequence. An unclaimed delivery written after the recorder read that flag wakes
//! the claim loop after the record's commit, so the claim finds it.
//!
//! Operator actions (retry, replay, resume) wake every process through `LISTEN/NOTIFY`;
//! other processes' work is found by the poll.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};

use crate::store::deliveries::Claimed;

/// The claim loop's wake-up and the two facts its wake decisions rest on.
#[derive(Default)]
pub(super) struct Wake {
    notify: Notify,
    /// Whether the last claim filled every free worker (or there was none free to claim for).
    room_limited: AtomicBool,
    /// Whether this process's intake wrote a delivery unclaimed since the recorder last looked.
    unclaimed: AtomicBool,
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

    /// The intake committed a delivery unclaimed: it may be due now, or wait behind one the
    /// recorder is about to record.
    pub(super) fn unclaimed_written(&self) {
        self.unclaimed.store(true, Ordering::SeqCst);
        self.notify.notify_one();
    }

    /// For the recorder: whether an unclaimed delivery was written since it last asked.
    pub(super) fn take_unclaimed_written(&self) -> bool {
        self.unclaimed.swap(false, Ordering::SeqCst)
    }

    /// The recorder could not claim the recorded tickets' next deliveries: the claim finds them.
    pub(super) fn successor_claim_failed(&self) {
        self.notify.notify_one();
    }

    pub(super) async fn notified(&self) {
        self.notify.notified().await;
    }
}

/// This process's delivery workers (`BRIDGE_WORKERS`), reserved one at a time.
#[derive(Clone)]
pub(super) struct Workers {
    pub(super) semaphore: Arc<Semaphore>,
    pub(super) wake: Arc<Wake>,
}

impl Workers {
    /// A free worker, if there is one now.
    pub(super) fn reserve(&self) -> Option<WorkerSlot> {
        let permit = self.semaphore.clone().try_acquire_owned().ok()?;
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

/// A claimed delivery with the worker that sends it.
pub struct Handoff {
    pub claim: Claimed,
    pub slot: WorkerSlot,
}

/// Hands deliveries that the intake wrote already claimed straight to this process's
/// running dispatcher: no claim statement, and a send that starts as soon as the commit is
/// done.
///
/// The intake offers a lease only with a worker reserved ([`DirectDispatch::reserve`]), so a
/// handed-over delivery starts at once. Deliveries handed over after the dispatcher stopped
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

    /// A free worker for a delivery about to be written claimed; `None` when all are busy
    /// (then the delivery is written unclaimed, and the claim loop takes it in order).
    pub fn reserve(&self) -> Option<WorkerSlot> {
        let slot = self.workers.reserve();
        if slot.is_none() {
            self.workers.wake.room_limited.store(true, Ordering::Relaxed);
        }
        slot
    }

    /// Gives the dispatcher a committed delivery claimed as it was written, with its worker.
    pub fn hand_over(&self, handoff: Handoff) {
        if self.handoffs.send(handoff).is_err() {
            tracing::debug!("the dispatcher has stopped; the delivery is sent after its lease");
        }
    }

    /// Wakes the dispatcher to claim deliveries committed unclaimed.
    pub fn wake(&self) {
        self.workers.wake.unclaimed_written();
    }
}
