//! The summary and timeseries reports, read from rollups where they cover the window and
//! from the raw rows elsewhere (the README's *Reports at any size*).
//!
//! - [`buckets`]: where the timeseries' local hours and days begin.
//! - [`histogram`]: durations as mergeable histograms (percentiles within 1 %, SLA counts).
//! - [`plan`]: which parts of a window come from which rows.
//! - the rollup rows and the raw-row figures are SQL in `store::rollups`; the rollup task
//!   that maintains them is `crate::rollup_task`; `store::reports` keeps the definitions
//!   computed straight from the raw rows, against which `dolphin-bridge rollups verify`
//!   and the tests check these.
//!
//! A report reads in one `REPEATABLE READ` snapshot, so a rollup step committing meanwhile
//! can neither be counted twice nor missed.

pub mod buckets;
pub mod histogram;
pub mod plan;
pub mod verify;

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use crate::store::day_hours;
use crate::store::raw_figures::{self, Partial};
use crate::store::rollups::{self, Range, Rolled, RolledHistograms, Span};
use histogram::Histogram;

/// A duration figure: count, exact sum and histogram.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Durations {
    pub n: i64,
    pub sum_us: i64,
    pub histogram: Histogram,
}

impl Durations {
    fn add(&mut self, n: i64, sum_us: i64, bins: &[i32], counts: &[i64]) {
        self.n += n;
        self.sum_us = self.sum_us.saturating_add(sum_us);
        self.histogram.add_bins(bins, counts);
    }

    fn merge(&mut self, other: &Durations) {
        self.n += other.n;
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
        self.histogram.merge(&other.histogram);
    }

    /// The mean in seconds; `None` without samples.
    pub fn mean(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum_us as f64 / 1e6 / self.n as f64)
    }
}

/// Deliveries by their status now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Deliveries {
    pub pending: i64,
    pub failed: i64,
    pub delivered: i64,
    pub dead: i64,
    pub cancelled: i64,
}

impl Deliveries {
    fn add_status(&mut self, status: &str, n: i64) {
        match status {
            "pending" => self.pending += n,
            "failed" => self.failed += n,
            "delivered" => self.delivered += n,
            "dead" => self.dead += n,
            "cancelled" => self.cancelled += n,
            _ => {}
        }
    }

    fn merge(&mut self, o: &Deliveries) {
        self.pending += o.pending;
        self.failed += o.failed;
        self.delivered += o.delivered;
        self.dead += o.dead;
        self.cancelled += o.cancelled;
    }
}

/// The figures of a window for one channel (or all).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    pub tickets_opened: i64,
    pub tickets_closed: i64,
    pub tickets_open_now: i64,
    pub messages_in: i64,
    pub messages_out: i64,
    pub first_response: Durations,
    pub resolution: Durations,
    pub deliveries: Deliveries,
}

impl Figures {
    fn add_partial(&mut self, p: &Partial) {
        self.tickets_opened += p.tickets_opened;
        self.tickets_closed += p.tickets_closed;
        self.messages_in += p.messages_in;
        self.messages_out += p.messages_out;
        self.first_response.add(
            p.first_response_n,
            p.first_response_sum_us,
            &p.first_response_bins,
            &p.first_response_counts,
        );
        self.resolution.add(p.resolution_n, p.resolution_sum_us, &p.resolution_bins, &p.resolution_counts);
        self.deliveries.merge(&Deliveries {
            pending: p.deliveries_pending,
            failed: p.deliveries_failed,
            delivered: p.deliveries_delivered,
            dead: p.deliveries_dead,
            cancelled: p.deliveries_cancelled,
        });
    }

    fn add_rolled(&mut self, r: &Rolled) {
        self.tickets_opened += r.tickets_opened;
        self.tickets_closed += r.tickets_closed;
        self.messages_in += r.messages_in;
        self.messages_out += r.messages_out;
        self.first_response.add(r.first_response_n, r.first_response_sum_us, &[], &[]);
        self.resolution.add(r.resolution_n, r.resolution_sum_us, &[], &[]);
        self.deliveries.delivered += r.deliveries_delivered;
        self.deliveries.dead += r.deliveries_dead;
        self.deliveries.cancelled += r.deliveries_cancelled;
    }

    fn add_histograms(&mut self, h: &RolledHistograms) {
        self.first_response.histogram.add_bins(&h.first_response_bins, &h.first_response_counts);
        self.resolution.histogram.add_bins(&h.resolution_bins, &h.resolution_counts);
    }

    pub fn merge(&mut self, o: &Figures) {
        self.tickets_opened += o.tickets_opened;
        self.tickets_closed += o.tickets_closed;
        self.tickets_open_now += o.tickets_open_now;
        self.messages_in += o.messages_in;
        self.messages_out += o.messages_out;
        self.first_response.merge(&o.first_response);
        self.resolution.merge(&o.resolution);
        self.deliveries.merge(&o.deliveries);
    }
}

/// A report's window and filter.
#[derive(Debug, Clone, Copy)]
pub struct Window<'a> {
    pub owner: &'a str,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub channel: Option<&'a str>,
}

/// The summary's figures per channel ('' = the ticket never named one).
pub async fn summary(pool: &PgPool, w: &Window<'_>) -> Result<BTreeMap<String, Figures>, sqlx::Error> {
    let mut tx = snapshot(pool).await?;
    let coverage = rollups::coverage(&mut tx, w.owner).await?;
    let plan = plan::plan(w.from, w.to, coverage.rolled_to, &coverage.dirty);
    let mut by_channel: BTreeMap<String, Figures> = BTreeMap::new();
    for r in rollups::rolled(&mut *tx, w.owner, w.channel, &plan.rolled).await? {
        by_channel.entry(r.channel.clone()).or_default().add_rolled(&r);
    }
    for h in rollups::rolled_histograms(&mut *tx, w.owner, w.channel, &plan.rolled).await? {
        by_channel.entry(h.channel.clone()).or_default().add_histograms(&h);
    }
    for u in rollups::unsettled(&mut *tx, w.owner, w.channel, &plan.rolled_ranges()).await? {
        by_channel.entry(u.channel).or_default().deliveries.add_status(&u.status, u.n);
    }
    for p in raw_figures::partials(&mut *tx, w.owner, w.channel, &plan.raw).await? {
        by_channel.entry(p.channel.clone()).or_default().add_partial(&p);
    }
    for (channel, open) in open_now(&mut tx, w, &coverage).await? {
        by_channel.entry(channel).or_default().tickets_open_now = open;
    }
    tx.commit().await?;
    Ok(by_channel)
}

/// Tickets open now per channel: every ticket opened, less closes, plus reopens — from the
/// totals of the rolled-up quarters (less the dirty ones) and the raw rows of the rest.
async fn open_now(
    tx: &mut PgConnection,
    w: &Window<'_>,
    coverage: &rollups::Coverage,
) -> Result<HashMap<String, i64>, sqlx::Error> {
    let mut open: HashMap<String, i64> = HashMap::new();
    let Some(rolled_to) = coverage.rolled_to else {
        return Ok(rollups::open_tickets(&mut *tx, w.owner, w.channel).await?.into_iter().collect());
    };
    let mut add = |channel: String, n: i64| *open.entry(channel).or_default() += n;
    for t in rollups::totals(&mut *tx, w.owner, w.channel).await? {
        add(t.channel, t.opened - t.closed + t.reopened);
    }
    let dirty: Vec<(Span, DateTime<Utc>)> =
        coverage.dirty.iter().filter(|q| **q < rolled_to).map(|q| (Span::Quarter, *q)).collect();
    for r in rollups::rolled(&mut *tx, w.owner, w.channel, &dirty).await? {
        add(r.channel.clone(), -(r.tickets_opened - r.tickets_closed + r.tickets_reopened));
    }
    let mut raw: Vec<Range> = dirty.iter().map(|(_, q)| (*q, *q + rollups::QUARTER)).collect();
    raw.push((rolled_to, DateTime::<Utc>::MAX_UTC));
    for t in raw_figures::raw_turnover(&mut *tx, w.owner, w.channel, &rollups::merge(raw)).await? {
        add(t.channel, t.opened - t.closed + t.reopened);
    }
    open.retain(|_, n| *n != 0);
    Ok(open)
}

/// One timeseries bucket's counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BucketCounts {
    pub tickets_opened: i64,
    pub tickets_closed: i64,
    pub messages_in: i64,
    pub messages_out: i64,
}

/// Counts per bucket; `starts` are the buckets' starts (ascending, the first at or before
/// `w.from`), each bucket ending where the next starts (the last at `w.to`).
pub async fn timeseries(
    pool: &PgPool,
    w: &Window<'_>,
    starts: &[DateTime<Utc>],
) -> Result<Vec<BucketCounts>, sqlx::Error> {
    let mut tx = snapshot(pool).await?;
    let coverage = rollups::coverage(&mut tx, w.owner).await?;
    let mut pieces: Vec<(Span, DateTime<Utc>)> = Vec::new();
    let mut raw: Vec<Range> = Vec::new();
    for (i, start) in starts.iter().enumerate() {
        let end = starts.get(i + 1).copied().unwrap_or(w.to).min(w.to);
        let p = plan::plan((*start).max(w.from), end, coverage.rolled_to, &coverage.dirty);
        pieces.extend(p.rolled);
        raw.extend(p.raw);
    }
    let bucket_of = |t: DateTime<Utc>| starts.partition_point(|s| *s <= t).saturating_sub(1);
    let mut buckets = vec![BucketCounts::default(); starts.len()];
    let mut add = |t: DateTime<Utc>, o: i64, c: i64, i: i64, out: i64| {
        if let Some(b) = buckets.get_mut(bucket_of(t)) {
            b.tickets_opened += o;
            b.tickets_closed += c;
            b.messages_in += i;
            b.messages_out += out;
        }
    };
    let (days, pieces) = day_hours::take_whole_days_of_hours(pieces);
    for d in day_hours::read(&mut *tx, w.owner, w.channel, &days).await? {
        for h in d.hours() {
            add(h.start, h.tickets_opened, h.tickets_closed, h.messages_in, h.messages_out);
        }
    }
    for r in rollups::rolled_counts(&mut *tx, w.owner, w.channel, &pieces).await? {
        add(r.start, r.tickets_opened, r.tickets_closed, r.messages_in, r.messages_out);
    }
    for p in raw_figures::partials(&mut *tx, w.owner, w.channel, &rollups::merge(raw)).await? {
        add(p.start, p.tickets_opened, p.tickets_closed, p.messages_in, p.messages_out);
    }
    tx.commit().await?;
    Ok(buckets)
}

/// A read-only transaction with one snapshot for every statement. Its statements use
/// generic plans: they are built to be planned without the values (every range scan and
/// key lookup is fenced, see `store::rollups`), and planning the raw-row query afresh
/// cost 3 to 5 ms a report. Without hash aggregation or memoizing: a generic plan sizes
/// their tables for the rows it cannot estimate (hundreds of thousands), and setting them up
/// cost 5 ms of a raw-row query whose own work took 1 ms (sorting the few rows costs nothing).
async fn snapshot(pool: &PgPool) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
    let mut tx = pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY").await?;
    sqlx::query(
        "SELECT set_config('plan_cache_mode', 'force_generic_plan', true), set_config('enable_hashagg', 'off', true),
                set_config('enable_memoize', 'off', true)",
    )
    .execute(&mut *tx)
    .await?;
    Ok(tx)
}
