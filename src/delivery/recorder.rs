//! The success recorder: a companion task of the running dispatcher that writes successful
//! attempts (nearly all of them) in batches, one statement each, so that a worker is free as
//! soon as its request is answered. A delivery stays claimed (and its ticket's next delivery
//! waits) until it is recorded here.

use std::time::Duration;

use tokio::sync::mpsc;

use super::handoff::{Handoff, Worker};
use super::Dispatcher;
use crate::store::deliveries::{self, Place, Success};

/// Most successes written by one statement.
pub(super) const SUCCESS_BATCH: usize = 64;

/// Writes successful attempts in batches until every sender is gone. After each batch it
/// claims the recorded tickets' next deliveries ([`deliveries::claim_successors`]) and hands
/// them to the dispatcher through `next`, so a ticket's waiting deliveries follow each other
/// without a scan of the outbox (unless the dispatcher is stopping). Which successors it
/// looks for, and when it wakes the claim loop, is the wake protocol
/// ([`super::handoff`]). A batch that cannot be written after a few tries is dropped; its
/// deliveries are sent again after the lease (at least once).
pub(super) async fn record_successes(
    dispatcher: Dispatcher,
    mut receiver: mpsc::Receiver<Success>,
    next: mpsc::UnboundedSender<Handoff>,
) {
    while let Some(first) = receiver.recv().await {
        let mut batch = vec![first];
        while batch.len() < SUCCESS_BATCH {
            match receiver.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let recorded = write_batch(&dispatcher, &batch).await;
        let anything_unclaimed = dispatcher.wake.take_unclaimed_written();
        let recorded: Vec<Place> = recorded.into_iter().filter(|p| anything_unclaimed || p.followed).collect();
        if recorded.is_empty() || next.is_closed() {
            continue;
        }
        // A successor is claimed only with a worker for it (free now, or a place in the
        // queue for the next one); the rest are the claim loop's, in order (see `handoff`,
        // backpressure).
        let workers: Vec<Worker> =
            std::iter::from_fn(|| dispatcher.workers.reserve_or_queue()).take(recorded.len()).collect();
        if workers.len() < recorded.len() {
            dispatcher.wake.work_may_wait();
        }
        let places = &recorded[..workers.len()];
        let (now, lease) = (dispatcher.clock.now(), dispatcher.config.lease);
        match deliveries::claim_successors(&dispatcher.pool, places, now, lease, uuid::Uuid::new_v4()).await {
            Ok(claimed) => {
                for (claim, worker) in claimed.into_iter().zip(workers) {
                    if next.send(Handoff { claim, worker }).is_err() {
                        tracing::debug!("the dispatcher has stopped; the delivery is sent after its lease");
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "claiming the next deliveries of recorded tickets failed");
                dispatcher.wake.successor_claim_failed();
            }
        }
    }
}

/// Writes one batch, retrying briefly while the database is unavailable; answers where the
/// deliveries that still held their lease stood (none if the batch could not be written).
async fn write_batch(dispatcher: &Dispatcher, batch: &[Success]) -> Vec<Place> {
    let mut tries = 0;
    loop {
        match deliveries::record_successes(&dispatcher.pool, batch).await {
            Ok(recorded) => {
                if recorded.len() < batch.len() {
                    let lost = batch.len() - recorded.len();
                    dispatcher.count_lost_leases(lost, "expired_before_record");
                    tracing::warn!(
                        lost,
                        "leases lost before successes were recorded; another dispatcher owns them now"
                    );
                }
                return recorded;
            }
            Err(e) if crate::store::is_unavailable(&e) && tries < 5 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(200 * tries)).await;
            }
            Err(e) => {
                tracing::error!(error = %e, count = batch.len(), "could not record delivered attempts; they will be sent again after the lease");
                return Vec::new();
            }
        }
    }
}
