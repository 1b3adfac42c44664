//! The outbox's rules, each written once and spliced into every statement that applies it
//! (`concat!` needs macros, not constants, to build statements at compile time):
//!
//! - when a delivery may be sent now (`due_now!`, `endpoint_open!`, `no_earlier_waiting!`,
//!   `earlier_waiting!`, and `successor_may_go!` combining the first three),
//!   used by the claim, the claim of successors and the intake's claimed write;
//! - what a claim answers (`claimed_columns!`, the columns of [`super::deliveries::Claimed`]);
//! - how a success resets an endpoint's breaker (`reset_breakers!`);
//! - the breaker's parameters and the channel that wakes every process's dispatcher.
//!
//! The macros take the SQL expressions of the delivery's columns, since each statement names
//! its rows differently (a table alias, a CTE's columns, a value not yet written).

/// Consecutive retryable failures that open an endpoint's breaker.
pub const BREAKER_THRESHOLD: i32 = 5;
/// How long an open breaker waits before letting one probe through.
pub const BREAKER_COOLDOWN: std::time::Duration = std::time::Duration::from_secs(30);

/// The channel `pg_notify` wakes every process's dispatcher on (operator actions: retry,
/// replay, resume).
pub const NOTIFY_CHANNEL: &str = "dolphin_bridge_deliveries";

/// Delivery `$d` is waiting, due by `$now` and not leased (or its lease ran out).
macro_rules! due_now {
    ($d:literal, $now:literal) => {
        concat!(
            $d,
            ".status IN ('pending', 'failed') AND ",
            $d,
            ".next_attempt_at <= ",
            $now,
            " AND (",
            $d,
            ".lease_until IS NULL OR ",
            $d,
            ".lease_until <= ",
            $now,
            ")"
        )
    };
}
pub(crate) use due_now;

/// The endpoint of (`$owner`, `$target`) takes deliveries: not paused, breaker closed.
/// Deliveries of a paused endpoint or one with an open breaker are not claimed at all, so
/// waiting there uses up none of their retry schedule.
///
/// `OFFSET 0` keeps this (and `no_earlier_waiting!`) a subquery run for each delivery, its
/// lookup keyed by that delivery's columns: the planner cannot turn it into an anti-join,
/// which it may plan, on tables it believes empty, as a scan of every row for each
/// delivery, and keep that plan while the table grows (a claim took 8.6 s so).
macro_rules! endpoint_open {
    ($owner:literal, $target:literal) => {
        concat!(
            "NOT EXISTS (SELECT 1 FROM endpoints ep WHERE ep.owner = ",
            $owner,
            " AND ep.target = ",
            $target,
            " AND (ep.paused OR ep.state <> 'closed') OFFSET 0)"
        )
    };
}
pub(crate) use endpoint_open;

/// No earlier delivery of the ticket to the same peer is still waiting: per-ticket FIFO. A
/// claimed row stays `pending` while in flight, so it holds back its successors until its
/// outcome is recorded. (`OFFSET 0`: see `endpoint_open!`.)
macro_rules! no_earlier_waiting {
    ($owner:literal, $ticket:literal, $peer:literal, $sequence:literal) => {
        concat!(
            "NOT EXISTS ",
            $crate::store::outbox_rules::earlier_waiting!($owner, $ticket, $peer, $sequence, "1", "OFFSET 0")
        )
    };
}
pub(crate) use no_earlier_waiting;

/// `$select` of the earlier deliveries of the ticket to the same peer that are still
/// waiting, as a subquery ending in `$tail`. The intake reads the first of them with
/// `FOR SHARE`: a locking read waits for a success being recorded and sees the newest
/// version of the row, not the statement's snapshot (see `successes::record_successes`,
/// the race with the intake).
macro_rules! earlier_waiting {
    ($owner:literal, $ticket:literal, $peer:literal, $sequence:literal, $select:literal, $tail:literal) => {
        concat!(
            "(SELECT ",
            $select,
            " FROM deliveries e WHERE e.owner = ",
            $owner,
            " AND e.ticket_number = ",
            $ticket,
            " AND e.peer = ",
            $peer,
            " AND e.sequence < ",
            $sequence,
            " AND e.status IN ('pending', 'failed') ",
            $tail,
            ")"
        )
    };
}
pub(crate) use earlier_waiting;

/// A successor `d` may be claimed now: due by `$now`, its endpoint open, and no delivery of
/// its ticket to the same peer before `$before` still waiting (the successor claims of
/// `successes`, which find `d` by `ctid`).
macro_rules! successor_may_go {
    ($now:literal, $before:literal) => {
        concat!(
            $crate::store::outbox_rules::due_now!("d", $now),
            " AND ",
            $crate::store::outbox_rules::endpoint_open!("d.owner", "d.target"),
            " AND ",
            $crate::store::outbox_rules::no_earlier_waiting!("d.owner", "d.ticket_number", "d.peer", $before)
        )
    };
}
pub(crate) use successor_may_go;

/// The columns of [`super::deliveries::Claimed`], from the delivery `d` (whose physical row
/// is `$row_id`, a text) and its tenant `t`.
macro_rules! claimed_columns {
    ($row_id:literal) => {
        concat!(
            "d.owner, d.id, d.ticket_number, d.target, d.sequence, d.body, d.attempts, d.schedule_base,
             d.lease_token, d.lease_until, ",
            $row_id,
            " AS row_id, t.settings, t.signing_secret,
             t.previous_signing_secret, t.dolphins_password"
        )
    };
}
pub(crate) use claimed_columns;

/// A CTE body closing the breakers of the endpoints `u` (`owner`, `target`) after a success,
/// where `$condition` holds; rows already closed with no failures are left untouched (no
/// write, no lock).
macro_rules! reset_breakers {
    ($from:literal, $condition:literal) => {
        concat!(
            "UPDATE endpoints ep SET consecutive_failures = 0, state = 'closed', opened_at = NULL, retry_at = NULL,
                                     probe_until = NULL
             FROM ",
            $from,
            " WHERE ",
            $condition,
            " AND ep.owner = u.owner AND ep.target = u.target
               AND (ep.consecutive_failures > 0 OR ep.state <> 'closed')
             RETURNING 1"
        )
    };
}
pub(crate) use reset_breakers;
