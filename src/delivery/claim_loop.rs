//! The claim loop of a running dispatcher: claims as many due deliveries as there are free
//! workers (probes of recovering endpoints first), starts their attempts, takes the
//! deliveries handed over by the intake and the recorder, and sleeps until woken
//! ([`super::handoff`]), notified by another process, or the poll interval passes.

use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use uuid::Uuid;

use super::handoff::{Handoff, Worker};
use super::Dispatcher;
use crate::store::deliveries::{self, ClaimScope, Claimed};
use crate::store::endpoints;
use crate::store::outbox_rules::NOTIFY_CHANNEL;

/// How often the dispatcher checks for open circuit breakers ready for a probe.
const PROBE_INTERVAL: Duration = Duration::from_millis(500);

/// Most claim tokens remembered for release: a forgotten one only means waiting for the lease.
const MAX_UNANSWERED: usize = 1024;

impl Dispatcher {
    pub(super) async fn run_loop(
        self,
        mut shutdown: watch::Receiver<bool>,
        handoffs: mpsc::UnboundedReceiver<Handoff>,
    ) {
        let mut handoffs = Some(handoffs);
        let mut listener = None;
        let mut in_flight = JoinSet::new();
        let mut failures = 0u32;
        // Tokens of claims that failed: PostgreSQL may have committed them all the same.
        let mut unanswered: Vec<Uuid> = Vec::new();
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
            self.release_unanswered(&mut unanswered).await;
            let free = self.workers.semaphore.available_permits();
            if free == 0 {
                // Every worker is busy: whatever woke the loop may be due work left for the
                // next worker to finish.
                self.wake.claimed(0, 0);
            } else {
                let probe = last_probe.elapsed() >= PROBE_INTERVAL;
                if probe {
                    last_probe = tokio::time::Instant::now();
                }
                let token = Uuid::new_v4();
                match self.claim_batch(free, probe, token).await {
                    Ok(batch) => {
                        failures = 0;
                        let claimed = batch.len();
                        self.wake.claimed(claimed, free);
                        for claim in batch {
                            // It waited: more of its ticket may wait behind it.
                            self.wake.successor_may_follow(&claim.owner, &claim.ticket_number);
                            self.start_attempt(&mut in_flight, Handoff { claim, worker: Worker::Any });
                        }
                        if claimed >= free {
                            continue; // there may be more due right now
                        }
                    }
                    Err(e) => {
                        if unanswered.len() >= MAX_UNANSWERED {
                            unanswered.remove(0);
                        }
                        unanswered.push(token);
                        failures = failures.saturating_add(1);
                        tracing::warn!(error = %e, "claiming deliveries failed; retrying");
                    }
                }
            }
            let poll = self.config.poll_interval;
            let pause = if failures > 0 { poll * failures.min(5) } else { poll };
            let sleep = tokio::time::sleep(pause);
            tokio::pin!(sleep);
            // Deliveries handed over by the intake start here without a claim, so they do
            // not end the wait.
            loop {
                tokio::select! {
                    handed = recv_handoff(&mut handoffs) => {
                        match handed {
                            Some(handoff) => self.start_attempt(&mut in_flight, handoff),
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
            while let Ok(handoff) = handoffs.try_recv() {
                self.start_attempt(&mut in_flight, handoff);
            }
        }
        tracing::info!(in_flight = in_flight.len(), "dispatcher stopping; finishing attempts in flight");
        while in_flight.join_next().await.is_some() {}
    }

    /// Gives back what claims whose reply was lost had taken, as soon as the database answers.
    async fn release_unanswered(&self, unanswered: &mut Vec<Uuid>) {
        if unanswered.is_empty() {
            return;
        }
        match deliveries::release(&self.pool, unanswered).await {
            Ok(released) => {
                if released > 0 {
                    tracing::info!(released, "released deliveries claimed by a claim whose reply was lost");
                }
                unanswered.clear();
            }
            Err(e) => tracing::debug!(error = %e, "cannot release unanswered claims yet"),
        }
    }

    /// Sends a claimed delivery in the background, on its reserved worker or the next one
    /// freed (see `handoff`, backpressure).
    fn start_attempt(&self, in_flight: &mut JoinSet<()>, handoff: Handoff) {
        let this = self.clone();
        in_flight.spawn(async move {
            let Handoff { claim, worker } = handoff;
            let Some(slot) = worker.take(&this.workers).await else { return };
            let recorded_here = this.deliver(claim).await;
            drop(slot);
            if recorded_here {
                this.wake.outcome_recorded();
            }
        });
    }

    /// Claims up to `room` deliveries: first (when `probes`) one probe for each endpoint
    /// whose breaker may be tested again, then due work.
    ///
    /// Every row claimed by one call carries `token` as its lease token (the fence of its
    /// record), so a call whose reply was lost can be undone with [`deliveries::release`].
    pub(super) async fn claim_batch(
        &self,
        room: usize,
        probes: bool,
        token: Uuid,
    ) -> Result<Vec<Claimed>, sqlx::Error> {
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
}

/// The next delivery handed over by the intake; `None` once the intake is gone.
async fn recv_handoff(handoffs: &mut Option<mpsc::UnboundedReceiver<Handoff>>) -> Option<Handoff> {
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
