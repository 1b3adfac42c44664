//! Report rollups: for random streams of events (opens, replies from both sides, closes,
//! reopens, tickets whose createdDate lies in the past, tickets that name their channel
//! late, failed and retried deliveries, cancels, contact erasure and retention purges) over
//! days, the API's summary and timeseries — read from rollups plus the raw rows after
//! them — equal the figures computed straight from the raw rows (`store::reports`, the
//! definitions), for random windows, time zones and channels; the timeseries buckets add
//! up to the summary. The rollup task runs at random moments, sometimes in two "processes"
//! at once.

use std::time::Duration;

use chrono::{DateTime, DurationRound, Utc};
use serde_json::{json, Value};

use dolphin_bridge::store::reports::{self, Interval, ReportScope};

use crate::helpers::*;

/// A small deterministic generator (xorshift64*), seeded per run and printed on failure.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

const CHANNELS: [&str; 3] = ["whatsapp", "telegrambot", "webchat"];
const ZONES: [&str; 4] = ["UTC", "Asia/Jakarta", "Asia/Kathmandu", "America/St_Johns"];

async fn roll(app: &TestApp, rng: &mut Rng) {
    let now = app.clock_now();
    if rng.chance(30) {
        // Two processes at once: the watermark row lets one do the work.
        let (a, b) = tokio::join!(
            dolphin_bridge::rollup_task::run_once(&app.pool, now),
            dolphin_bridge::rollup_task::run_once(&app.pool, now)
        );
        a.expect("rollups");
        b.expect("rollups");
    } else {
        dolphin_bridge::rollup_task::run_once(&app.pool, now).await.expect("rollups");
    }
}

/// One random event (or operation) on one of `tickets`.
async fn step(app: &TestApp, tenant: &Tenant, rng: &mut Rng, tickets: &mut Vec<(String, Option<&'static str>)>) {
    let now = app.clock_now();
    let new_ticket = tickets.is_empty() || rng.chance(25);
    if new_ticket {
        let channel = (!rng.chance(10)).then(|| *rng.pick(&CHANNELS));
        tickets.push((format!("T{}", tickets.len()), channel));
    }
    let index = if new_ticket { tickets.len() - 1 } else { rng.below(tickets.len() as u64) as usize };
    let (ticket, channel) = tickets[index].clone();
    // A channel-less ticket names its channel later, sometimes.
    let named = match channel {
        None if !new_ticket && rng.chance(30) => {
            let c = *rng.pick(&CHANNELS);
            tickets[index].1 = Some(c);
            Some(c)
        }
        c => c,
    };
    let contact = format!("contact-{}", index % 5);
    match rng.below(100) {
        0..=44 => {
            // A customer message (opens, or reopens a closed ticket); createdDate sometimes
            // hours or days in the past.
            let created =
                if rng.chance(20) { now - chrono::Duration::minutes(rng.below(4 * 1440) as i64) } else { now };
            let mut body = with(
                &fixture("incoming-text"),
                json!({"ticketNumber": ticket, "owner": tenant.owner, "contactId": contact,
                       "createdDate": created.to_rfc3339()}),
            );
            match named {
                Some(c) => body["channel"] = json!(c),
                None => body = without(&body, "channel"),
            }
            app.post_as_dolphins("incoming", tenant, &body).await;
        }
        45..=64 => {
            let reply = with(&fixture("outgoing-text"), json!({"ticketNumber": ticket, "owner": tenant.owner}));
            app.post_as_third_party("messages", tenant, &reply).await;
        }
        65..=72 => {
            let reply = with(&fixture("outgoing-text"), json!({"ticketNumber": ticket, "owner": tenant.owner}));
            app.post_as_dolphins("outgoing", tenant, &reply).await;
        }
        73..=84 => {
            let close = with(&fixture("command-close"), json!({"ticketNumber": ticket, "owner": tenant.owner}));
            app.post_as_third_party("commands", tenant, &close).await;
        }
        85..=89 => {
            // A manual retry or cancel of some delivery.
            let id: Option<uuid::Uuid> =
                sqlx::query_scalar("SELECT id FROM deliveries WHERE owner = $1 ORDER BY created_at OFFSET $2 LIMIT 1")
                    .bind(&tenant.owner)
                    .bind(rng.below(40) as i64)
                    .fetch_optional(&app.pool)
                    .await
                    .expect("a delivery");
            if let Some(id) = id {
                let action = if rng.chance(50) { "retry" } else { "cancel" };
                app.http
                    .post(app.url(&format!("/api/v1/deliveries/{id}/{action}")))
                    .bearer_auth(&tenant.third_party)
                    .send()
                    .await
                    .expect("request");
            }
        }
        90..=92 => {
            app.http
                .delete(app.url(&format!("/api/v1/contacts/{contact}/data")))
                .bearer_auth(&tenant.third_party)
                .send()
                .await
                .expect("request");
        }
        _ => {
            // Deliveries go out; the third party fails some.
            if rng.chance(40) {
                app.third_party.reply_next(500, &[], "down");
            }
            app.dispatch().await;
        }
    }
}

/// A report as the tenant's read key gets it.
async fn read(app: &TestApp, tenant: &Tenant, path: &str) -> Value {
    let response = app.http.get(app.url(path)).bearer_auth(&tenant.read).send().await.expect("request");
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.expect("JSON")
}

fn window(rng: &mut Rng, start: DateTime<Utc>, end: DateTime<Utc>) -> (String, String, &'static str) {
    let zone = *rng.pick(&ZONES);
    let span = (end - start).num_seconds().max(1) as u64;
    let a = start + chrono::Duration::seconds(rng.below(span) as i64 - 3_600);
    let b = a + chrono::Duration::seconds(rng.below(span) as i64 + 1);
    if rng.chance(30) {
        // Local dates in the zone.
        let tz: chrono_tz::Tz = zone.parse().unwrap_or(chrono_tz::UTC);
        let day = |t: DateTime<Utc>| t.with_timezone(&tz).format("%Y-%m-%d").to_string();
        let (from, to) = (day(a), day(b + chrono::Duration::days(1)));
        return (from, to, zone);
    }
    (a.to_rfc3339(), b.to_rfc3339(), zone)
}

fn enc(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

fn near(got: &Value, want: Option<f64>, relative: f64) -> bool {
    match (got.as_f64(), want) {
        (None, None) => got.is_null(),
        (Some(g), Some(w)) => (g - w).abs() <= relative * w.abs() + 1e-6,
        _ => false,
    }
}

/// The API's summary of a window against the raw rows' figures, overall and per channel.
/// Compares a random window's summary and timeseries with the raw rows' figures: overall,
/// and per channel when `per_channel` (right after a roll: a ticket that names its channel
/// late moves from `unknown` at the task's next run, so between runs only the totals agree).
async fn compare(app: &TestApp, tenant: &Tenant, rng: &mut Rng, start: DateTime<Utc>, seed: u64, per_channel: bool) {
    let (from, to, zone) = window(rng, start, app.clock_now() + chrono::Duration::hours(2));
    let channel = (per_channel && rng.chance(25)).then(|| *rng.pick(&CHANNELS));
    let sla = *rng.pick(&[30i64, 60, 300, 900, 3_600]);
    let mut query = format!("from={}&to={}&tz={zone}&slaSeconds={sla}", enc(&from), enc(&to));
    if let Some(c) = channel {
        query.push_str(&format!("&channel={c}"));
    }
    let got = read(app, tenant, &format!("/api/v1/reports/summary?{query}")).await;
    let context = format!("seed {seed}, {query}: {got}");
    let parse = |s: &str| s.parse::<DateTime<Utc>>().expect("instant");
    let (f, t) = (parse(got["from"].as_str().expect("from")), parse(got["to"].as_str().expect("to")));
    let scope = ReportScope { owner: &tenant.owner, from: f, to: t, channel, sla_seconds: Some(sla) };
    let raw = reports::summary(&app.pool, &scope).await.expect("raw summary");

    let mut labels: Vec<(bool, Option<String>)> = vec![(true, None)];
    for r in raw.opened.iter().filter(|_| per_channel) {
        if !r.total {
            labels.push((false, Some(r.channel.clone().unwrap_or_else(|| "unknown".into()))));
        }
    }
    for (total, label) in labels {
        let figures = match &label {
            None => got.clone(),
            Some(l) => got["byChannel"][l].clone(),
        };
        let is = |row_total: bool, ch: &Option<String>| match &label {
            None => row_total,
            Some(l) => !row_total && ch.as_deref().unwrap_or("unknown") == l,
        };
        let count = |rows: &[reports::Counts]| rows.iter().find(|r| is(r.total, &r.channel)).map_or(0, |r| r.n);
        let ctx = format!("{label:?} (total {total}) in {context}");
        assert_eq!(figures["ticketsOpened"].as_i64(), Some(count(&raw.opened)), "ticketsOpened of {ctx}");
        assert_eq!(figures["ticketsOpenNow"].as_i64(), Some(count(&raw.open_now)), "ticketsOpenNow of {ctx}");
        let msgs = raw.messages.iter().find(|r| is(r.total, &r.channel));
        assert_eq!(figures["messagesIn"].as_i64(), Some(msgs.map_or(0, |m| m.n_in)), "messagesIn of {ctx}");
        assert_eq!(figures["messagesOut"].as_i64(), Some(msgs.map_or(0, |m| m.n_out)), "messagesOut of {ctx}");
        let closed = raw.closed.iter().find(|r| is(r.total, &r.channel));
        assert_eq!(figures["ticketsClosed"].as_i64(), Some(closed.map_or(0, |c| c.n)), "ticketsClosed of {ctx}");
        for (key, d) in [
            ("firstResponseSeconds", raw.first_response.iter().find(|r| is(r.total, &r.channel))),
            ("resolutionSeconds", closed),
        ] {
            let d = d.cloned().unwrap_or_default();
            assert!(near(&figures[key]["p50"], d.p50, 0.01), "{key} p50 {:?} of {ctx}", d.p50);
            assert!(near(&figures[key]["p90"], d.p90, 0.01), "{key} p90 {:?} of {ctx}", d.p90);
            assert!(near(&figures[key]["mean"], d.mean, 1e-9), "{key} mean {:?} of {ctx}", d.mean);
        }
        let first = raw.first_response.iter().find(|r| is(r.total, &r.channel)).cloned().unwrap_or_default();
        let within = &figures["firstResponseWithinSla"];
        assert_eq!(within["seconds"].as_i64(), Some(sla), "{ctx}");
        assert_eq!(within["count"].as_i64(), Some(first.within.unwrap_or(0)), "firstResponseWithinSla of {ctx}");
        let dels = raw.deliveries.iter().find(|r| is(r.total, &r.channel)).cloned().unwrap_or_default();
        for (key, n) in [
            ("delivered", dels.delivered),
            ("failed", dels.failed),
            ("dead", dels.dead),
            ("pending", dels.pending),
            ("cancelled", dels.cancelled),
        ] {
            assert_eq!(figures["deliveries"][key].as_i64(), Some(n), "deliveries.{key} of {ctx}");
        }
    }

    // The timeseries: bucket by bucket as the raw rows say, adding up to the summary.
    let interval = if rng.chance(50) { Interval::Hour } else { Interval::Day };
    let series = read(app, tenant, &format!("/api/v1/reports/timeseries?{query}&interval={}", interval.as_str())).await;
    let raw = reports::timeseries(&app.pool, &scope, interval, zone).await.expect("raw timeseries");
    let buckets = series["data"].as_array().cloned().unwrap_or_default();
    assert_eq!(buckets.len(), raw.len(), "{context}");
    for (b, r) in buckets.iter().zip(&raw) {
        let want = [r.tickets_opened, r.tickets_closed, r.messages_in, r.messages_out];
        let have = ["ticketsOpened", "ticketsClosed", "messagesIn", "messagesOut"].map(|k| b[k].as_i64().unwrap_or(-1));
        assert_eq!(have, want, "bucket {} of {} in {context}", b["bucket"], interval.as_str());
    }
    for key in ["ticketsOpened", "ticketsClosed", "messagesIn", "messagesOut"] {
        let sum: i64 = buckets.iter().map(|b| b[key].as_i64().unwrap_or(0)).sum();
        assert_eq!(Some(sum), got[key].as_i64(), "buckets of {key} in {context}");
    }
}

#[tokio::test]
async fn rolled_up_reports_equal_the_raw_rows_for_random_streams_windows_zones_and_channels() {
    // ROLLUPS_SEED=<the seed a failure printed> replays a run.
    let seed = std::env::var("ROLLUPS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(7, |d| d.as_nanos() as u64) | 1
    });
    let mut rng = Rng(seed);
    let app = TestApp::spawn_stepped().await;
    let tenant = app
        .create_tenant_with(json!({"owner": OWNER, "retentionDays": 2,
                                   "thirdParty": {"incomingUrl": app.third_party.url("/incoming"),
                                                  "outgoingUrl": app.third_party.url("/outgoing"),
                                                  "commandUrl": app.third_party.url("/command")}}))
        .await;
    let start = app.clock_now();
    let mut tickets = Vec::new();
    for i in 0..260 {
        step(&app, &tenant, &mut rng, &mut tickets).await;
        // Time passes: seconds to hours.
        let pause = match rng.below(10) {
            0..=5 => rng.below(120),
            6..=8 => rng.below(3_600),
            _ => rng.below(8 * 3_600),
        };
        app.clock.advance(Duration::from_secs(pause) + Duration::from_micros(rng.below(1_000_000)));
        if rng.chance(15) {
            roll(&app, &mut rng).await;
        }
        if rng.chance(3) {
            dolphin_bridge::housekeeping::run_once(&app.pool, app.clock_now()).await.expect("housekeeping");
        }
        if i % 40 == 19 {
            // Between rolls: dirty quarters, waiting deliveries and the raw tail are live.
            for _ in 0..3 {
                compare(&app, &tenant, &mut rng, start, seed, false).await;
            }
        }
        if i % 40 == 39 {
            roll(&app, &mut rng).await;
            for _ in 0..4 {
                compare(&app, &tenant, &mut rng, start, seed, true).await;
            }
        }
    }
    roll(&app, &mut rng).await;
    let rolled: i64 = app.count("SELECT count(*) FROM report_rollups WHERE span = 'quarter'").await;
    assert!(rolled > 0, "the stream spans days: quarters were rolled up");
    let folded_in = app
        .count(
            "SELECT count(*) FROM report_unsettled u JOIN deliveries d ON d.owner = u.owner AND d.id = u.delivery_id
             WHERE d.status NOT IN ('pending', 'failed')",
        )
        .await;
    assert_eq!(folded_in, 0, "a pass folds settled deliveries into the rollups");
    assert_eq!(histograms_that_disagree_with_their_counts(&app).await, 0, "seed {seed}");
    assert_eq!(day_hours_that_disagree_with_their_hour_rows(&app).await, 0, "seed {seed}");
    for _ in 0..6 {
        compare(&app, &tenant, &mut rng, start, seed, true).await;
    }
    // Rebuilt from the raw rows, the answers stay the same.
    dolphin_bridge::rollup_task::rebuild(&app.pool, &tenant.owner, app.clock_now()).await.expect("rebuild");
    assert_eq!(day_hours_that_disagree_with_their_hour_rows(&app).await, 0, "seed {seed}");
    for _ in 0..4 {
        compare(&app, &tenant, &mut rng, start, seed, true).await;
    }
    app.finish().await;
}

/// Rollup rows whose histograms hold another number of samples than their counts say.
async fn histograms_that_disagree_with_their_counts(app: &TestApp) -> i64 {
    app.count(
        "SELECT count(*) FROM report_rollups r
         LEFT JOIN report_histograms h USING (owner, span, start, channel)
         WHERE r.first_response_n <> COALESCE((SELECT sum(n) FROM unnest(h.first_response_counts) AS n), 0)
            OR r.resolution_n <> COALESCE((SELECT sum(n) FROM unnest(h.resolution_counts) AS n), 0)",
    )
    .await
}

/// Moves the clock to `past` after the next UTC multiple of `width`; answers that instant.
fn advance_to_next(app: &TestApp, width: chrono::Duration, past: Duration) -> DateTime<Utc> {
    let now = app.clock_now();
    let next = now.duration_trunc(width).unwrap_or(now) + width;
    app.clock.advance((next - now).to_std().unwrap_or_default() + past);
    next
}

/// `report_day_hours` unpacked: one row per hour, `(owner, day, channel, hour, tickets_opened,
/// tickets_closed, messages_in, messages_out)`.
fn unpacked_day_hours() -> String {
    let field = |k: usize| {
        format!("('x' || encode(substring(hours FROM i * 40 + {} FOR 8), 'hex'))::bit(64)::bigint", 1 + 8 * k)
    };
    format!(
        "SELECT owner, day, channel, {}::int AS hour, {} AS tickets_opened, {} AS tickets_closed, {} AS messages_in,
                {} AS messages_out
         FROM report_day_hours, generate_series(0, length(hours) / 40 - 1) AS i",
        field(0),
        field(1),
        field(2),
        field(3),
        field(4)
    )
}

/// Packed hours (`report_day_hours`) that differ from the hour rows they copy.
async fn day_hours_that_disagree_with_their_hour_rows(app: &TestApp) -> i64 {
    app.count(&format!(
        "WITH rows AS (
             SELECT owner, date_bin('1 day', start, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS day, channel,
                    (extract(epoch FROM start - date_bin('1 day', start, TIMESTAMPTZ '2000-01-01 00:00:00+00')) / 3600)::int AS hour,
                    tickets_opened, tickets_closed, messages_in, messages_out
             FROM report_rollups WHERE span = 'hour'),
         packed AS ({})
         SELECT count(*) FROM ((TABLE rows EXCEPT TABLE packed) UNION ALL (TABLE packed EXCEPT TABLE rows)) x",
        unpacked_day_hours()
    ))
    .await
}

/// The hourly timeseries of `[from, to)` in `zone` as the raw rows count it, bucket by bucket;
/// returns the API's buckets.
async fn series_as_the_raw_rows(
    app: &TestApp,
    tenant: &Tenant,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    zone: &str,
) -> Vec<Value> {
    let query = format!("from={}&to={}&tz={zone}&interval=hour", enc(&from.to_rfc3339()), enc(&to.to_rfc3339()));
    let series = read(app, tenant, &format!("/api/v1/reports/timeseries?{query}")).await;
    let scope = ReportScope { owner: &tenant.owner, from, to, channel: None, sla_seconds: None };
    let raw = reports::timeseries(&app.pool, &scope, Interval::Hour, zone).await.expect("raw timeseries");
    let buckets = series["data"].as_array().cloned().unwrap_or_default();
    assert_eq!(buckets.len(), raw.len(), "{query}");
    for (b, r) in buckets.iter().zip(&raw) {
        let want = [r.tickets_opened, r.tickets_closed, r.messages_in, r.messages_out];
        let have = ["ticketsOpened", "ticketsClosed", "messagesIn", "messagesOut"].map(|k| b[k].as_i64().unwrap_or(-1));
        assert_eq!(have, want, "bucket {} of {query}", b["bucket"]);
    }
    buckets
}

/// A series by the hour reads each whole UTC day as one row of packed hours a channel; they
/// follow their hour rows through late events and rebuilds, and the series answers as
/// the raw rows throughout — in UTC and in a zone whose days begin at another hour.
#[tokio::test]
async fn hourly_series_over_whole_days_read_packed_days_that_follow_late_events() {
    let app = TestApp::spawn_stepped().await;
    let tenant = app.create_tenant(OWNER).await;
    let midnight = advance_to_next(&app, chrono::Duration::days(1), Duration::from_secs(600));
    // Two and a half days: a ticket every five hours on one of two channels, answered a
    // minute later.
    for i in 0..12 {
        let body = with(
            &fixture("incoming-text"),
            json!({"ticketNumber": format!("D{i}"), "owner": tenant.owner, "channel": CHANNELS[i % 2],
                   "createdDate": app.clock_now().to_rfc3339()}),
        );
        app.post_as_dolphins("incoming", &tenant, &body).await;
        app.clock.advance(Duration::from_secs(60));
        let reply = with(&fixture("outgoing-text"), json!({"ticketNumber": format!("D{i}"), "owner": tenant.owner}));
        app.post_as_third_party("messages", &tenant, &reply).await;
        app.clock.advance(Duration::from_secs(5 * 3600 - 60));
    }
    dolphin_bridge::rollup_task::run_once(&app.pool, app.clock_now()).await.expect("rollups");
    let days = app.count("SELECT count(DISTINCT day) FROM report_day_hours").await;
    assert!(days >= 2, "the whole days have packed hours: {days}");
    assert_eq!(day_hours_that_disagree_with_their_hour_rows(&app).await, 0);
    let (from, to) = (midnight, midnight + chrono::Duration::days(2));
    for zone in ["UTC", "Asia/Jakarta"] {
        let buckets = series_as_the_raw_rows(&app, &tenant, from, to, zone).await;
        let opened: i64 = buckets.iter().map(|b| b["ticketsOpened"].as_i64().unwrap_or(0)).sum();
        assert_eq!(opened, 10, "tickets D0–D9 opened in the two days ({zone})");
    }
    // A ticket whose createdDate lies in the first day, long rolled up: its quarter is read
    // raw until the task's next run recomputes it, packed hours included.
    let late = midnight + chrono::Duration::minutes(13 * 60 + 10);
    let body = with(
        &fixture("incoming-text"),
        json!({"ticketNumber": "LATE", "owner": tenant.owner, "channel": "webchat", "createdDate": late.to_rfc3339()}),
    );
    app.post_as_dolphins("incoming", &tenant, &body).await;
    let hour_13 = |buckets: &[Value]| {
        let key = (midnight + chrono::Duration::hours(13)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        buckets.iter().find(|b| b["bucket"].as_str() == Some(key.as_str())).map(|b| b["ticketsOpened"].clone())
    };
    let before_roll = series_as_the_raw_rows(&app, &tenant, from, to, "UTC").await;
    assert_eq!(hour_13(&before_roll), Some(json!(1)), "the late ticket, read raw");
    assert_eq!(day_hours_that_disagree_with_their_hour_rows(&app).await, 0);
    dolphin_bridge::rollup_task::run_once(&app.pool, app.clock_now()).await.expect("rollups");
    assert_eq!(day_hours_that_disagree_with_their_hour_rows(&app).await, 0);
    let in_its_day = app
        .count(&format!(
            "SELECT COALESCE(sum(tickets_opened), 0)::bigint FROM ({}) u
             WHERE day = '{}' AND channel = 'webchat' AND hour = 13",
            unpacked_day_hours(),
            midnight.to_rfc3339()
        ))
        .await;
    assert_eq!(in_its_day, 1, "the late ticket is in its day's packed hours");
    let after_roll = series_as_the_raw_rows(&app, &tenant, from, to, "UTC").await;
    assert_eq!(after_roll, before_roll);
    dolphin_bridge::rollup_task::rebuild(&app.pool, &tenant.owner, app.clock_now()).await.expect("rebuild");
    assert_eq!(day_hours_that_disagree_with_their_hour_rows(&app).await, 0);
    assert_eq!(series_as_the_raw_rows(&app, &tenant, from, to, "Asia/Jakarta").await.len(), 48);
    app.finish().await;
}

/// The watermark moves by the minute: a quarter is rolled up in parts, its row added to at
/// each step, and it answers as if rolled up whole — counts, histograms and all.
#[tokio::test]
async fn a_quarter_rolled_up_in_parts_answers_as_the_raw_rows() {
    let app = TestApp::spawn_stepped().await;
    let tenant = app.create_tenant(OWNER).await;
    // Start 30 s into a quarter hour.
    let quarter = advance_to_next(&app, chrono::Duration::minutes(15), Duration::from_secs(30));
    let mut replied_after = Vec::new();
    // Three tickets answered after 20 s, 100 s and 5 s, in three parts of the quarter, the
    // rollup task running between them (each run moves the watermark 2 minutes behind).
    for (ticket, wait, then) in [("A", 20, 190), ("B", 100, 40), ("C", 5, 200)] {
        let body = with(
            &fixture("incoming-text"),
            json!({"ticketNumber": ticket, "owner": tenant.owner, "createdDate": app.clock_now().to_rfc3339()}),
        );
        app.post_as_dolphins("incoming", &tenant, &body).await;
        app.clock.advance(Duration::from_secs(wait));
        let reply = with(&fixture("outgoing-text"), json!({"ticketNumber": ticket, "owner": tenant.owner}));
        app.post_as_third_party("messages", &tenant, &reply).await;
        replied_after.push(wait);
        app.clock.advance(Duration::from_secs(then));
        dolphin_bridge::rollup_task::run_once(&app.pool, app.clock_now()).await.expect("rollups");
    }
    app.clock.advance(Duration::from_secs(600));
    dolphin_bridge::rollup_task::run_once(&app.pool, app.clock_now()).await.expect("rollups");
    let rolled: (i64, i64) = sqlx::query_as(
        "SELECT tickets_opened, first_response_n FROM report_rollups WHERE span = 'quarter' AND start = $1",
    )
    .bind(quarter)
    .fetch_one(&app.pool)
    .await
    .expect("the quarter's row");
    assert_eq!(rolled, (3, 3), "the quarter's row holds all three parts");
    assert_eq!(histograms_that_disagree_with_their_counts(&app).await, 0);
    // Within 30 s: two of the three, from the histogram of the rolled-up quarter.
    let within = replied_after.iter().filter(|w| **w <= 30).count() as i64;
    let from = quarter.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let to = (quarter + chrono::Duration::minutes(15)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let got =
        read(&app, &tenant, &format!("/api/v1/reports/summary?from={}&to={}&slaSeconds=30", enc(&from), enc(&to)))
            .await;
    assert_eq!(got["firstResponseWithinSla"]["count"].as_i64(), Some(within), "{got}");
    assert_eq!(got["ticketsOpened"].as_i64(), Some(3), "{got}");
    app.finish().await;
}

#[tokio::test]
async fn the_sql_bins_durations_as_the_histogram_reads_them() {
    let app = TestApp::spawn_stepped().await;
    let mut samples: Vec<i64> = vec![0, 1, 999_999, 1_000_000, 1_000_001, 59_999_999, 60_000_000, 100_000_000];
    samples.extend([100_000_001, 3_599_999_999, 3_600_000_000, 3_600_000_001, 86_400_000_000, 86_400_000_001]);
    let mut us: i64 = 3;
    while us < 1_000_000_000_000 {
        samples.push(us);
        us = us * 3 / 2 + 7;
    }
    let sql =
        format!("SELECT us, {} FROM unnest($1::bigint[]) AS us", dolphin_bridge::reports::histogram::bin_sql("us"));
    let keys: Vec<(i64, i32)> = sqlx::query_as(&sql).bind(&samples).fetch_all(&app.pool).await.expect("bins");
    assert_eq!(keys.len(), samples.len());
    for (us, key) in keys {
        assert_eq!(key, dolphin_bridge::reports::histogram::key_of(us), "{us} µs");
    }
    app.finish().await;
}
