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
//! | a worker recorded an outcome itself (a failure, a dead delivery) | always: the ticket's next one may go (`Wake::attempt_finished`) |
//! | a worker handed a success to the recorder | only if the last claim filled every free worker, or found none free (`Wake::attempt_finished`) |
//! | the recorder could not claim successors | always: the claim finds them (`Wake::successor_claim_failed`) |
//!
//! "The last claim filled every free worker, or found none free" (`Wake::claimed`) means
//! due work may be waiting for a worker; otherwise a freed worker changes nothing, and
//! waking would cost an empty claim each time. (The recorder does not wake the loop after a
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

use tokio::sync::{mpsc, Notify};

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
    /// The claim loop took `claimed` deliveries for `free` workers.
    pub(super) fn claimed(&self, claimed: usize, free: usize) {
        self.room_limited.store(claimed >= free, Ordering::Relaxed);
    }

    /// A worker finished an attempt; `recorded_here` when it recorded the outcome itself
    /// (a success handed to the recorder is followed up there).
    pub(super) fn attempt_finished(&self, recorded_here: bool) {
        if recorded_here || self.room_limited.load(Ordering::Relaxed) {
            self.notify.notify_one();
        }
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

    /// The recorder could not claim the recorded tickets' next deliveries.
    pub(super) fn successor_claim_failed(&self) {
        self.notify.notify_one();
    }

    pub(super) async fn notified(&self) {
        self.notify.notified().await;
    }
}

/// Hands deliveries that the intake wrote already claimed straight to this process's
/// running dispatcher: no claim statement, and a send that starts as soon as the commit is
/// done.
///
/// A handed-over delivery waits for a free worker like a claimed one; if its lease would run
/// out before its attempt could end, it is not sent but claimed again once the lease has
/// expired. Deliveries handed over after the dispatcher stopped keep their lease and are
/// claimed again when it expires (by the next process, or this one's successor).
#[derive(Clone)]
pub struct DirectDispatch {
    pub(super) lease: Duration,
    pub(super) wake: Arc<Wake>,
    pub(super) handoffs: mpsc::UnboundedSender<Claimed>,
}

/// The dispatcher's end of [`DirectDispatch`], for [`super::Dispatcher::run`] (whose success
/// recorder hands over the deliveries it claims the same way).
pub struct Handoffs {
    pub(super) receiver: mpsc::UnboundedReceiver<Claimed>,
    pub(super) sender: mpsc::UnboundedSender<Claimed>,
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
        self.wake.unclaimed_written();
    }
}
