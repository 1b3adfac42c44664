//! The success recorder: a companion task of the running dispatcher that writes successful
//! attempts (nearly all of them) in batches, one statement each, so that a worker is free as
//! soon as its request is answered. A delivery stays claimed (and its ticket's next delivery
//! waits) until it is recorded here; the same statement claims that next delivery.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

use super::handoff::{Handoff, Worker};
use super::Dispatcher;
use crate::store::deliveries::Claimed;
use crate::store::successes::{self, Place, Success, SuccessesRecorded, SuccessorLease};

/// Most successes written by one statement.
pub(super) const SUCCESS_BATCH: usize = 64;

/// How long a batch may wait for more successes when nobody waits for its record. A record
/// costs about as much with one success as with dozens (a statement, a round trip, a commit;
/// when it was still planned afresh each time, a millisecond of planning too), so at a
/// moderate rate each success paying its own cost was a third of PostgreSQL's CPU. Nobody
/// waits on a record except a ticket's next delivery, which the intake reports (`Wake::successor_written`), as does the recorder when it claims
/// one (`Wake::successor_may_follow`): those records go at once, with whatever queued. One
/// written by another process waits up to this long. A delivery stays claimed that much
/// longer, well inside its lease.
pub(super) const RECORD_WINDOW: Duration = Duration::from_millis(20);

/// Batches written at once. A ticket's next delivery waits for its predecessor's record,
/// so a success should not wait for the statement before it: with two, the next batch is
/// written while the last one is still in PostgreSQL. (Batches hold distinct deliveries;
/// they share only the tickets' share locks and, rarely, a breaker's row.)
const RECORDERS: usize = 2;

/// Writes successful attempts in batches until every sender is gone. Each batch's
/// statement also claims the recorded tickets' next deliveries
/// ([`successes::record_successes`]), which go to the dispatcher through `next`, so a
/// ticket's waiting deliveries follow each other's acknowledgements without another
/// statement or a scan of the outbox (unless the dispatcher is stopping); a successor
/// written while the statement ran is claimed by a second one. When it wakes the claim loop
/// is the wake protocol ([`super::handoff`]). A batch that cannot be written after a few
/// tries is dropped; its deliveries are sent again after the lease (at least once).
pub(super) async fn record_successes(
    dispatcher: Dispatcher,
    mut receiver: mpsc::Receiver<Success>,
    next: mpsc::UnboundedSender<Handoff>,
) {
    let writers = Arc::new(Semaphore::new(RECORDERS));
    let mut running = JoinSet::new();
    loop {
        let Ok(writer) = writers.clone().acquire_owned().await else { break };
        let Some(first) = receiver.recv().await else { break };
        let batch = collect_batch(&dispatcher, first, &mut receiver).await;
        let (dispatcher, next) = (dispatcher.clone(), next.clone());
        running.spawn(async move {
            record_batch(&dispatcher, &batch, &next).await;
            drop(writer);
        });
        while running.try_join_next().is_some() {}
    }
    while running.join_next().await.is_some() {}
}

/// The successes to record together with `first`: those queued already, then more as they
/// come, until the batch is full, [`RECORD_WINDOW`] has passed, the senders are gone, or a
/// delivery waits for one of them.
async fn collect_batch(
    dispatcher: &Dispatcher,
    first: Success,
    receiver: &mut mpsc::Receiver<Success>,
) -> Vec<Success> {
    let wake = &dispatcher.wake;
    let deadline = tokio::time::Instant::now() + RECORD_WINDOW;
    let mut batch = vec![first];
    // What queued meanwhile goes in any case (as many as fit).
    while batch.len() < SUCCESS_BATCH {
        match receiver.try_recv() {
            Ok(next) => batch.push(next),
            Err(_) => break,
        }
    }
    let mut waited_on = wake.successor_waits(&batch);
    while !waited_on && batch.len() < SUCCESS_BATCH {
        tokio::select! {
            next = receiver.recv() => match next {
                Some(success) => {
                    waited_on = wake.successor_waits(std::slice::from_ref(&success));
                    batch.push(success);
                }
                None => break,
            },
            () = wake.successor_written_notified() => waited_on = wake.successor_waits(&batch),
            () = tokio::time::sleep_until(deadline) => break,
        }
    }
    batch
}

/// Records one batch and hands over the successors it claimed.
async fn record_batch(dispatcher: &Dispatcher, batch: &[Success], next: &mpsc::UnboundedSender<Handoff>) {
    let lease =
        (!next.is_closed()).then(|| SuccessorLease { now: dispatcher.clock.now(), lease: dispatcher.config.lease });
    let recorded = write_batch(dispatcher, batch, lease).await;
    if recorded.breaker_reset {
        dispatcher.wake.breaker_closed();
    }
    let mut successors = recorded.successors;
    if let (Some(lease), false) = (lease, recorded.unseen.is_empty()) {
        successors.extend(claim_unseen(dispatcher, &recorded.unseen, lease).await);
    }
    for claim in &successors {
        dispatcher.wake.successor_may_follow(&claim.owner, &claim.ticket_number);
    }
    hand_over(dispatcher, successors, next).await;
}

/// Claims the successors the record's snapshot could not show (written while it ran). If
/// that fails, or leaves some (held by another transaction, or not due), the claim loop is
/// woken to find them.
async fn claim_unseen(dispatcher: &Dispatcher, unseen: &[Place], lease: SuccessorLease) -> Vec<Claimed> {
    match successes::claim_successors(&dispatcher.records, unseen, lease).await {
        Ok(claimed) => {
            if claimed.len() < unseen.len() {
                dispatcher.wake.successor_claim_failed();
            }
            claimed
        }
        Err(e) => {
            tracing::warn!(error = %e, "claiming the next deliveries of recorded tickets failed");
            dispatcher.wake.successor_claim_failed();
            Vec::new()
        }
    }
}

/// Hands the claimed successors to the dispatcher, each with a worker free now or a place in
/// the queue for the next one; those without room are given back to the claim loop, which
/// takes them in order when a worker is freed (backpressure, see [`super::handoff`]).
async fn hand_over(dispatcher: &Dispatcher, successors: Vec<Claimed>, next: &mpsc::UnboundedSender<Handoff>) {
    let mut no_room = Vec::new();
    for claim in successors {
        match dispatcher.workers.reserve_or_queue() {
            Some(worker) => pass_on(next, Handoff { claim, worker }),
            None => no_room.push(claim),
        }
    }
    if no_room.is_empty() {
        return;
    }
    match successes::give_back(&dispatcher.records, &no_room).await {
        Ok(_) => dispatcher.wake.work_may_wait(),
        // Still claimed: sent on the next worker freed, or after the lease if none is in time.
        Err(e) => {
            tracing::warn!(error = %e, count = no_room.len(), "could not give back successors with no worker");
            for claim in no_room {
                pass_on(next, Handoff { claim, worker: Worker::Any });
            }
        }
    }
}

/// Gives the dispatcher a claimed successor with its worker.
fn pass_on(next: &mpsc::UnboundedSender<Handoff>, handoff: Handoff) {
    if next.send(handoff).is_err() {
        tracing::debug!("the dispatcher has stopped; the delivery is sent after its lease");
    }
}

/// Writes one batch, retrying briefly while the database is unavailable; answers what was
/// recorded (nothing if the batch could not be written).
async fn write_batch(
    dispatcher: &Dispatcher,
    batch: &[Success],
    successors: Option<SuccessorLease>,
) -> SuccessesRecorded {
    let mut tries = 0;
    loop {
        match successes::record_successes(&dispatcher.records, batch, successors).await {
            Ok(recorded) => {
                if recorded.recorded < batch.len() {
                    let lost = batch.len() - recorded.recorded;
                    dispatcher.count_lost_leases(lost, "expired_before_record");
                    tracing::warn!(
                        lost,
                        "leases lost before successes were recorded; another dispatcher owns them now"
                    );
                }
                return recorded;
            }
            // A deadlock (40P01) rolled the whole statement back: it can simply run again.
            Err(e) if (crate::store::is_unavailable(&e) || is_deadlock(&e)) && tries < 5 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(200 * tries)).await;
            }
            Err(e) => {
                tracing::error!(error = %e, count = batch.len(), "could not record delivered attempts; they will be sent again after the lease");
                return SuccessesRecorded::default();
            }
        }
    }
}

fn is_deadlock(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("40P01"))
}
