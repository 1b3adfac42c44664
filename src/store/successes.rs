//! The success records: successful attempts written in batches, each batch's statement also
//! claiming the recorded tickets' next deliveries (so a ticket's deliveries follow each
//! other's acknowledgements without the claim loop), and the claims of successors that
//! statement could not see. Used by the dispatcher's success recorder
//! (`delivery::recorder`).

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgExecutor, Row};
use uuid::Uuid;

use super::deliveries::Claimed;
use super::outbox_rules::{claimed_columns, reset_breakers, successor_may_go};

/// A successful attempt waiting to be recorded with others ([`record_successes`]).
#[derive(Debug, Clone)]
pub struct Success {
    pub owner: String,
    pub id: Uuid,
    pub ticket_number: String,
    pub lease_token: Uuid,
    /// [`Claimed::row_id`].
    pub row_id: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub duration_ms: i32,
    pub http_status: Option<i32>,
    pub response_head: Option<String>,
    /// What was sent, as JSON text (`delivery::send::SentRequest`).
    pub request: Option<String>,
}

/// Records many successful attempts in one statement: the same rows as
/// [`super::deliveries::record_attempt`] writes for a success (delivery delivered, attempt logged, breaker
/// reset, `delivered` audited), under the same fencing; and, with `successors`, claims in
/// the same statement each recorded ticket's next delivery to the same peer when the claim
/// ([`super::deliveries::claim`]) would take it now, so that it follows its predecessor's acknowledgement
/// without another round trip (and without a scan of the outbox).
///
/// The successor is read in the statement's snapshot, where its predecessor is still
/// `pending`: so "no earlier delivery waiting" is asked of the sequences before the
/// predecessor's, which this statement records as delivered.
///
/// **The race with the intake.** A successor written while this statement runs is not in
/// its snapshot, and its intake may have seen the predecessor still in flight (and so left
/// it to this record: [`super::message_writes::Delivery::Behind`]). Both sides take the
/// ticket's row first, so one of them sees the other: this statement share-locks the
/// recorded tickets (in key order, one primary-key lookup each) before it changes any
/// delivery (the update's `(SELECT count(*) FROM locked) >= 0`, always true, makes it take
/// the locks first), and the intake's write, which updates the ticket, reads the earlier deliveries
/// with a lock (`WRITE_MESSAGES`). If the intake had the ticket first, the lock here returns
/// the ticket as the intake left it, whose sequence shows a successor the snapshot lacks:
/// the place comes back in [`SuccessesRecorded::unseen`], for [`claim_successors`] after the
/// commit. If this statement had it first, the intake's locking read waits for this commit,
/// finds the predecessor delivered, and writes its delivery claimed (or for the claim loop).
///
/// The rows are found by TID scans of arrays of `ctid`s (the recorded rows' from their
/// claims, the successors' from the unique `(owner, ticket, peer, sequence)` index):
/// PostgreSQL 15 cannot look up a row by a `ctid` that comes from a join, and planned on
/// stale statistics it hash-joined the batch against a sequential scan of the whole outbox
/// instead (a cost that grows with the table).
pub async fn record_successes(
    db: impl PgExecutor<'_>,
    batch: &[Success],
    successors: Option<SuccessorLease>,
) -> Result<SuccessesRecorded, sqlx::Error> {
    let (lock_owners, lock_tickets) = in_key_order(batch.iter().map(|s| (s.owner.as_str(), s.ticket_number.as_str())));
    let owners: Vec<&str> = batch.iter().map(|s| s.owner.as_str()).collect();
    let ids: Vec<Uuid> = batch.iter().map(|s| s.id).collect();
    let tokens: Vec<Uuid> = batch.iter().map(|s| s.lease_token).collect();
    let started: Vec<DateTime<Utc>> = batch.iter().map(|s| s.started_at).collect();
    let finished: Vec<DateTime<Utc>> = batch.iter().map(|s| s.finished_at).collect();
    let durations: Vec<i32> = batch.iter().map(|s| s.duration_ms).collect();
    let statuses: Vec<Option<i32>> = batch.iter().map(|s| s.http_status).collect();
    let heads: Vec<Option<&str>> = batch.iter().map(|s| s.response_head.as_deref()).collect();
    let row_ids: Vec<&str> = batch.iter().map(|s| s.row_id.as_str()).collect();
    let requests: Vec<Option<&str>> = batch.iter().map(|s| s.request.as_deref()).collect();
    let successor_token = successors.map(|_| Uuid::new_v4());
    let now = successors.map(|s| s.now);
    let lease_until = successors.map(|s| s.until());
    let rows = sqlx::query(concat!(
        "WITH input AS (
             SELECT * FROM UNNEST($1::text[], $2::uuid[], $3::uuid[], $4::timestamptz[], $5::timestamptz[],
                                  $6::int[], $7::int[], $8::text[], $9::text[]::tid[], $15::text[])
                 AS i(owner, id, token, started_at, finished_at, duration_ms, http_status, head, row_id, request)),
         locked AS (
             SELECT l.* FROM UNNEST($13::text[], $14::text[]) AS k(owner, ticket_number) CROSS JOIN LATERAL (
                 SELECT t.owner, t.ticket_number, t.seq_third_party, t.seq_dolphins FROM tickets t
                 WHERE t.owner = k.owner AND t.ticket_number = k.ticket_number
                 FOR SHARE OF t) AS l),
         upd AS (
             UPDATE deliveries d SET status = 'delivered', attempts = d.attempts + 1, last_error = NULL,
                 delivered_at = i.finished_at, lease_until = NULL, lease_token = NULL
             FROM input i
             WHERE d.ctid = ANY($9::text[]::tid[]) AND d.ctid = i.row_id AND d.owner = i.owner AND d.id = i.id
               AND d.lease_token = i.token AND (SELECT count(*) FROM locked) >= 0
             RETURNING d.owner, d.id, d.ticket_number, d.target, d.peer, d.sequence, d.attempts, i.started_at,
                       i.finished_at, i.duration_ms, i.http_status, i.head, i.request),
         att AS (
             INSERT INTO delivery_attempts (owner, delivery_id, n, at, duration_ms, http_status, error, response_head,
                                            request)
             SELECT owner, id, attempts, started_at, duration_ms, http_status, NULL, head, request::jsonb FROM upd
             RETURNING 1),
         reset AS (",
        reset_breakers!("(SELECT DISTINCT owner, target FROM upd) u", "TRUE"),
        "),
         ev AS (
             INSERT INTO ticket_events (owner, ticket_number, kind, at, actor, detail)
             SELECT owner, ticket_number, 'delivered', finished_at, 'bridge',
                    jsonb_strip_nulls(jsonb_build_object('deliveryId', id, 'target', target, 'attempt', attempts,
                                                         'httpStatus', http_status))
             FROM upd ORDER BY finished_at
             RETURNING 1),
         next AS (
             SELECT upd.id AS after, (SELECT s.ctid FROM deliveries s
                     WHERE s.owner = upd.owner AND s.ticket_number = upd.ticket_number AND s.peer = upd.peer
                       AND s.sequence = upd.sequence + 1) AS row_id
             FROM upd),
         successor AS (
             UPDATE deliveries d SET lease_until = $12, lease_token = $10
             FROM tenants t
             WHERE $10::uuid IS NOT NULL AND d.ctid = ANY (ARRAY(SELECT row_id FROM next WHERE row_id IS NOT NULL))
               AND t.owner = d.owner
               AND ",
        successor_may_go!("$11", "d.sequence - 1"),
        "
             RETURNING d.peer AS successor_peer, ",
        claimed_columns!("d.ctid::text"),
        ")
         SELECT upd.owner AS place_owner, upd.ticket_number AS place_ticket, upd.peer AS place_peer,
                upd.sequence AS place_sequence, EXISTS (SELECT 1 FROM reset) AS breaker_reset,
                next.row_id IS NULL
                  AND (SELECT CASE WHEN upd.peer = 'third_party' THEN l.seq_third_party ELSE l.seq_dolphins END
                       FROM locked l WHERE l.owner = upd.owner AND l.ticket_number = upd.ticket_number)
                      > upd.sequence AS unseen,
                s.*
         FROM upd JOIN next ON next.after = upd.id
              LEFT JOIN successor s ON s.owner = upd.owner AND s.ticket_number = upd.ticket_number
                                   AND s.successor_peer = upd.peer AND s.sequence = upd.sequence + 1"
    ))
    .bind(owners)
    .bind(ids)
    .bind(tokens)
    .bind(started)
    .bind(finished)
    .bind(durations)
    .bind(statuses)
    .bind(heads)
    .bind(row_ids)
    .bind(successor_token)
    .bind(now)
    .bind(lease_until)
    .bind(lock_owners)
    .bind(lock_tickets)
    .bind(requests)
    .fetch_all(db)
    .await?;
    let mut recorded = SuccessesRecorded { recorded: rows.len(), ..SuccessesRecorded::default() };
    for row in &rows {
        recorded.breaker_reset |= row.try_get::<bool, _>("breaker_reset")?;
        if row.try_get::<Option<Uuid>, _>("lease_token")?.is_some() {
            recorded.successors.push(Claimed::from_row(row)?);
        } else if row.try_get::<Option<bool>, _>("unseen")?.unwrap_or(false) {
            recorded.unseen.push(Place {
                owner: row.try_get("place_owner")?,
                ticket_number: row.try_get("place_ticket")?,
                peer: row.try_get("place_peer")?,
                sequence: row.try_get("place_sequence")?,
            });
        }
    }
    Ok(recorded)
}

/// The tickets to share-lock, as `(owners, ticket numbers)` arrays: each once (a batch may
/// hold a ticket's deliveries to both peers), in key order, as every statement that locks
/// several tickets takes them (the intake sorts its batches so too).
fn in_key_order<'a>(tickets: impl Iterator<Item = (&'a str, &'a str)>) -> (Vec<&'a str>, Vec<&'a str>) {
    tickets.collect::<std::collections::BTreeSet<_>>().into_iter().unzip()
}

/// The lease [`record_successes`] and [`claim_successors`] claim successors with.
#[derive(Debug, Clone, Copy)]
pub struct SuccessorLease {
    pub now: DateTime<Utc>,
    pub lease: std::time::Duration,
}

impl SuccessorLease {
    fn until(self) -> DateTime<Utc> {
        self.now + chrono::Duration::from_std(self.lease).unwrap_or(chrono::Duration::seconds(30))
    }
}

/// What [`record_successes`] did.
#[derive(Debug, Default)]
pub struct SuccessesRecorded {
    /// Successes recorded: those whose delivery still held its lease.
    pub recorded: usize,
    /// The recorded tickets' next deliveries, claimed (with one lease token).
    pub successors: Vec<Claimed>,
    /// Recorded deliveries whose ticket has a next delivery that the statement's snapshot
    /// did not show (written meanwhile): for [`claim_successors`], after the commit.
    pub unseen: Vec<Place>,
    /// Whether an endpoint's breaker was closed by these successes: deliveries it held back
    /// (other than the successors) may be due now.
    pub breaker_reset: bool,
}

/// A recorded delivery's place: its ticket's next delivery to the same peer has the next
/// sequence.
#[derive(Debug, Clone)]
pub struct Place {
    pub owner: String,
    pub ticket_number: String,
    pub peer: String,
    pub sequence: i32,
}

/// Claims, for each place, its ticket's next delivery to the same peer when the claim
/// ([`super::deliveries::claim`]) would take it now: the successors [`record_successes`] knew of but could not
/// see. Each is found by the unique `(owner, ticket, peer, sequence)` index and updated by
/// a TID scan of the `ctid`s found: no join for the planner to get wrong.
///
/// The tickets are share-locked first, in key order, as [`record_successes`] and the
/// intake take them, and a successor another transaction holds is skipped, never waited
/// for. Updating the successors straight away (in `ctid` order) deadlocked with an intake
/// writing messages of two of those tickets: the intake holds each ticket and then
/// share-locks its first waiting delivery, so with one successor updated here and the other
/// share-locked there, each waited for the other until PostgreSQL's deadlock check (a
/// second) cancelled this claim; at 24 busy tickets that stalled webhooks for a second
/// several times a minute. With the tickets held no intake holds their deliveries, but the
/// other batch's record still may (it claims successors too, and a stale `ctid` of its own
/// makes it lock a row it then leaves): waiting for it deadlocked about once in 90 000
/// events at 24 tickets. Whoever holds a skipped successor claims it or changes it; the
/// caller wakes the claim loop when fewer successors were claimed than asked for, in case
/// it was neither.
pub async fn claim_successors(
    db: impl PgExecutor<'_>,
    places: &[Place],
    lease: SuccessorLease,
) -> Result<Vec<Claimed>, sqlx::Error> {
    let (lock_owners, lock_tickets) = in_key_order(places.iter().map(|p| (p.owner.as_str(), p.ticket_number.as_str())));
    sqlx::query_as(concat!(
        "WITH locked AS (
             SELECT l.* FROM UNNEST($8::text[], $9::text[]) AS k(owner, ticket_number) CROSS JOIN LATERAL (
                 SELECT t.owner FROM tickets t WHERE t.owner = k.owner AND t.ticket_number = k.ticket_number
                 FOR SHARE OF t) AS l),
         next AS (
             SELECT (SELECT s.ctid FROM deliveries s
                     WHERE s.owner = r.owner AND s.ticket_number = r.ticket_number AND s.peer = r.peer
                       AND s.sequence = r.sequence + 1) AS row_id
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int[]) AS r(owner, ticket_number, peer, sequence)),
         free AS (
             SELECT s.ctid AS row_id FROM deliveries s
             WHERE s.ctid = ANY (ARRAY(SELECT row_id FROM next WHERE row_id IS NOT NULL))
               AND (SELECT count(*) FROM locked) >= 0
             FOR UPDATE OF s SKIP LOCKED)
         UPDATE deliveries d SET lease_until = $6, lease_token = $7
         FROM tenants t
         WHERE d.ctid = ANY (ARRAY(SELECT row_id FROM free)) AND t.owner = d.owner
           AND ",
        successor_may_go!("$5", "d.sequence"),
        "
         RETURNING ",
        claimed_columns!("d.ctid::text")
    ))
    .bind(places.iter().map(|p| p.owner.as_str()).collect::<Vec<_>>())
    .bind(places.iter().map(|p| p.ticket_number.as_str()).collect::<Vec<_>>())
    .bind(places.iter().map(|p| p.peer.as_str()).collect::<Vec<_>>())
    .bind(places.iter().map(|p| p.sequence).collect::<Vec<_>>())
    .bind(lease.now)
    .bind(lease.until())
    .bind(Uuid::new_v4())
    .bind(lock_owners)
    .bind(lock_tickets)
    .fetch_all(db)
    .await
}

/// Gives back claims that will not be sent now (no worker for them): due again at once,
/// for the claim loop to take in order. Found by `ctid`, fenced by their tokens.
pub async fn give_back(db: impl PgExecutor<'_>, claims: &[Claimed]) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE deliveries SET lease_until = NULL, lease_token = NULL
         WHERE ctid = ANY($1::text[]::tid[]) AND lease_token = ANY($2) AND status IN ('pending', 'failed')",
    )
    .bind(claims.iter().map(|c| c.row_id.as_str()).collect::<Vec<_>>())
    .bind(claims.iter().map(|c| c.lease_token).collect::<Vec<_>>())
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}
