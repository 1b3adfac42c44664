//! Load benchmark: starts the release `dolphin-bridge serve` as its own process on a fresh
//! database, a fast receiver standing in for the third party, and a load generator over
//! loopback; prints throughput and latency figures. Run with
//! `cargo build --release && cargo run --release --bin bench -- --help`.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use axum::body::Bytes;
use clap::Parser;
use serde_json::{json, Value};

#[derive(Debug, Parser)]
#[command(about = "Measure dolphin-bridge: accepted/s, delivered/s, accept→receipt latency")]
struct Args {
    /// Events to send.
    #[arg(long, default_value_t = 20_000)]
    events: usize,
    /// Concurrent senders (closed loop).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Tickets the events are spread over.
    #[arg(long, default_value_t = 500)]
    tickets: usize,
    /// Every event opens a new ticket (`--tickets` is then ignored): the stream of new
    /// tickets that stalled deliveries before the intake reserved a worker per claim.
    #[arg(long)]
    new_tickets: bool,
    /// Send at this many events per second instead of as fast as possible.
    #[arg(long)]
    rate: Option<u64>,
    /// Instead of the ingest run: seed this many tickets (with a message and audit events
    /// each) straight into PostgreSQL and time the query and report endpoints.
    #[arg(long)]
    query_rows: Option<u64>,
    /// Before the ingest run: store this many tickets (the cost-growth measurement).
    #[arg(long)]
    seed_tickets: Option<u64>,
    /// Messages per seeded ticket.
    #[arg(long, default_value_t = 10)]
    seed_messages_per_ticket: u64,
    /// Build a backlog while the receiver answers 503 (breaker and retries included), then
    /// bring it up and time the drain. The bridge runs with a short retry schedule.
    #[arg(long)]
    backlog: bool,
    /// PostgreSQL server (a database `dolphin_bridge_bench_<pid>` is created and dropped).
    #[arg(long, env = "BENCH_DATABASE_SERVER", default_value = "postgres://postgres@127.0.0.1:5432")]
    server: String,
    /// The bridge's `RUST_LOG`; `info` adds its access line per request (written to the
    /// bench's stderr), as `serve` logs by default.
    #[arg(long, default_value = "warn")]
    bridge_log: String,
}

/// What the receiver saw: when each message first arrived, in arrival order.
#[derive(Default)]
struct Seen {
    first: HashMap<String, Instant>,
    order: Vec<String>,
}

type Arrivals = Arc<Mutex<Seen>>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let exe = std::env::current_exe()?.with_file_name("dolphin-bridge");
    if !exe.exists() {
        bail!("{} not found: run `cargo build --release` first", exe.display());
    }
    let db = format!("dolphin_bridge_bench_{}", std::process::id());
    let url = format!("{}/{db}", args.server);

    let arrivals: Arrivals = Arc::default();
    let receiver_up = Arc::new(std::sync::atomic::AtomicBool::new(!args.backlog));
    let receiver = start_receiver(arrivals.clone(), receiver_up.clone()).await?;
    let tenant = add_tenant(&exe, &url, &format!("http://{receiver}/incoming"))?;
    let token = tenant["credentials"]["inboundToken"].as_str().context("inbound token")?.to_string();
    let owner = tenant["owner"].as_str().context("owner")?.to_string();
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    if let Some(tickets) = args.seed_tickets {
        let pool = dolphin_bridge::store::connect_lazy(&url, 2)?;
        let t = Instant::now();
        seed(&pool, &owner, tickets, args.seed_messages_per_ticket).await?;
        println!(
            "seeded {tickets} tickets and {} messages in {:.0} s",
            tickets * args.seed_messages_per_ticket,
            t.elapsed().as_secs_f64()
        );
        pool.close().await;
    }
    let mut bridge = start_bridge(&exe, &url, port, args.backlog, &args.bridge_log).await?;
    if let Some(rows) = args.query_rows {
        let read_key = tenant["credentials"]["readKey"].as_str().context("read key")?.to_string();
        let result = query_bench(&url, &owner, rows, port, &read_key).await;
        if let Some(kib) = peak_rss_kib(bridge.id()) {
            println!("  bridge peak RSS     {:.1} MiB (the CSV export included)", kib as f64 / 1024.0);
        }
        let _ = bridge.kill();
        let _ = bridge.wait();
        drop_database(&args.server, &db).await;
        return result;
    }
    let endpoint = format!("http://127.0.0.1:{port}/webhooks/3dolphins/incoming?token={token}");
    let cpu_before = cpu_seconds(bridge.id());
    let pg_cpu_before = postgres_cpu_seconds();
    let stats_pool = dolphin_bridge::store::connect_lazy(&url, 1)?;
    let db_before = db_counters(&stats_pool).await?;

    let accepted: Arc<Mutex<Vec<(String, Instant, Duration)>>> = Arc::default();
    let client = reqwest::Client::builder().pool_max_idle_per_host(args.concurrency).build()?;
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut senders = tokio::task::JoinSet::new();
    let pace = args.rate.map(|r| Duration::from_secs_f64(1.0 / r.max(1) as f64));
    for worker in 0..args.concurrency {
        let (client, endpoint, owner, next, accepted) =
            (client.clone(), endpoint.clone(), owner.clone(), next.clone(), accepted.clone());
        let (events, tickets, new_tickets) = (args.events, args.tickets, args.new_tickets);
        senders.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= events {
                    break;
                }
                if let Some(pace) = pace {
                    // Paced: event i is due at i × pace from the start.
                    let due = started + pace * u32::try_from(i).unwrap_or(u32::MAX);
                    tokio::time::sleep_until(due.into()).await;
                }
                let message = format!("bench-{i}");
                let body = event(&owner, if new_tickets { i } else { i % tickets }, &message);
                let sent = Instant::now();
                let ok = client.post(&endpoint).json(&body).send().await.is_ok_and(|r| r.status() == 200);
                if ok {
                    let now = Instant::now();
                    if let Ok(mut a) = accepted.lock() {
                        a.push((message, now, now - sent));
                    }
                }
            }
            worker
        });
    }
    while senders.join_next().await.is_some() {}
    let send_time = started.elapsed();
    let accepted = std::mem::take(&mut *accepted.lock().map_err(|_| anyhow::anyhow!("lock"))?);
    let arrived = || arrivals.lock().map(|a| a.first.len()).unwrap_or(0);
    let up_at = Instant::now();
    if args.backlog {
        let waiting = accepted.len() - arrived();
        println!("  backlog built: {waiting} deliveries waiting; the receiver comes up now");
        receiver_up.store(true, Ordering::Relaxed);
    }
    let deadline = Instant::now() + Duration::from_secs(if args.backlog { 900 } else { 120 });
    while arrived() < accepted.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all_delivered = started.elapsed();
    let drained_in = up_at.elapsed();
    let cpu = cpu_seconds(bridge.id()).zip(cpu_before).map(|(after, before)| after - before);
    let pg_cpu = postgres_cpu_seconds() - pg_cpu_before;
    let peak_rss = peak_rss_kib(bridge.id());
    let (arrivals, order) = {
        let seen = arrivals.lock().map_err(|_| anyhow::anyhow!("lock"))?;
        (seen.first.clone(), seen.order.clone())
    };

    let mut request: Vec<f64> = accepted.iter().map(|a| a.2.as_secs_f64() * 1000.0).collect();
    let mut to_receipt: Vec<f64> = accepted
        .iter()
        .filter_map(|(m, at, _)| arrivals.get(m).map(|r| r.saturating_duration_since(*at).as_secs_f64() * 1000.0))
        .collect();
    println!(
        "dolphin-bridge bench: {} events, {} tickets, {}",
        args.events,
        if args.new_tickets { args.events } else { args.tickets },
        match args.rate {
            Some(r) => format!("paced at {r}/s with {} senders", args.concurrency),
            None => format!("closed loop with {} senders", args.concurrency),
        }
    );
    println!("  accepted            {} ({:.0}/s)", accepted.len(), accepted.len() as f64 / send_time.as_secs_f64());
    if let Some(line) = per_minute(&accepted, started) {
        println!("  accepted per minute {line}");
    }
    let delivered_rate = arrivals.len() as f64 / all_delivered.as_secs_f64();
    let accepted_rate = accepted.len() as f64 / send_time.as_secs_f64();
    println!(
        "  delivered           {} ({:.0}/s until the last arrived: {:.2} × accepted/s)",
        arrivals.len(),
        delivered_rate,
        delivered_rate / accepted_rate.max(f64::MIN_POSITIVE)
    );
    if !args.backlog {
        let last = arrivals.values().max().copied().unwrap_or(up_at);
        println!(
            "  drain               {:.2} s from the last request's reply to the last arrival",
            last.saturating_duration_since(up_at).as_secs_f64()
        );
    }
    println!("  lost leases         {}", lost_leases(port).await);
    if args.backlog {
        let first = arrivals.values().min().copied().unwrap_or(up_at);
        let last = arrivals.values().max().copied().unwrap_or(up_at);
        let flowing = last.saturating_duration_since(first).as_secs_f64().max(0.001);
        println!(
            "  drain               {} in {:.1} s after the receiver came up; {:.1} s of that waiting for the \
             breaker's probe, then {:.0}/s",
            arrivals.len(),
            drained_in.as_secs_f64(),
            first.saturating_duration_since(up_at).as_secs_f64(),
            arrivals.len() as f64 / flowing
        );
    }
    println!("  per-ticket order    {}", order_check(&stats_pool, &order).await?);
    println!("  request latency ms  {}", summary(&mut request));
    println!("  accept→receipt ms   {}", summary(&mut to_receipt));
    if let Some(cpu) = cpu {
        println!("  bridge CPU          {:.3} s per 1000 events", cpu / accepted.len().max(1) as f64 * 1000.0);
    }
    println!(
        "  PostgreSQL CPU      {:.3} s per 1000 events (its processes on this machine)",
        pg_cpu / accepted.len().max(1) as f64 * 1000.0
    );
    if let Some(kib) = peak_rss {
        println!("  bridge peak RSS     {:.1} MiB", kib as f64 / 1024.0);
    }
    // pg_stat counters are flushed lazily; give them a moment.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let db_after = db_counters(&stats_pool).await?;
    let events = accepted.len().max(1) as f64;
    println!(
        "  PostgreSQL          {:.2} commits and {:.2} rows written per event",
        (db_after.0 - db_before.0) as f64 / events,
        (db_after.1 - db_before.1) as f64 / events
    );
    println!(
        "  1-row-insert ceiling {:.0} commits/s (32 clients, same database, for reference)",
        insert_ceiling(&url).await?
    );
    stats_pool.close().await;
    let _ = bridge.kill();
    let _ = bridge.wait();
    drop_database(&args.server, &db).await;
    Ok(())
}

/// Requests timed per endpoint in the query mode.
const QUERY_SAMPLES: usize = 21;

/// Seeds `rows` tickets over the 30 days up to an hour ago (a third closed, three channels), one message
/// and two or three audit events each, then times the read endpoints.
async fn query_bench(url: &str, owner: &str, rows: u64, port: u16, key: &str) -> anyhow::Result<()> {
    let pool = dolphin_bridge::store::connect_lazy(url, 2)?;
    let started = Instant::now();
    let rows = i64::try_from(rows)?;
    for sql in [
        SEED_TICKETS,
        "INSERT INTO messages (owner, id, ticket_number, direction, message_type, message, media_link, source, at, raw)
         SELECT t.owner, gen_random_uuid(), t.ticket_number, 'in', 'text', 'hello', '', '3dolphins', t.opened_at, '{}'
         FROM tickets t WHERE t.owner = $1 AND $2 > 0",
        "INSERT INTO ticket_events (owner, ticket_number, kind, at, actor, detail)
         SELECT t.owner, t.ticket_number, k.kind, t.opened_at + k.offs, '3dolphins', '{}'::jsonb
         FROM tickets t CROSS JOIN (VALUES ('created', interval '0'), ('message_in', interval '0')) AS k(kind, offs)
         WHERE t.owner = $1 AND $2 > 0
         UNION ALL
         SELECT t.owner, t.ticket_number, 'closed', t.closed_at, 'third_party', '{}'::jsonb
         FROM tickets t WHERE t.owner = $1 AND t.closed_at IS NOT NULL",
    ] {
        sqlx::query(sql).bind(owner).bind(rows).execute(&pool).await?;
    }
    sqlx::query("VACUUM ANALYZE").execute(&pool).await?;
    println!("dolphin-bridge query bench: {rows} tickets seeded in {:.0} s", started.elapsed().as_secs_f64());
    // The report rollups of the seeded month, built again from the raw rows as the rollup
    // task builds them (`rollups rebuild`): the bridge's own task may have rolled part of the
    // month while the seeding was under way, before every table was filled. It may take some
    // steps meanwhile too: each step locks the tenant, no work is done twice.
    let events: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM messages) + (SELECT count(*) FROM ticket_events WHERE kind = 'closed')",
    )
    .fetch_one(&pool)
    .await?;
    let started = Instant::now();
    let pg_cpu_before = postgres_cpu_seconds();
    let limit = dolphin_bridge::rollup_task::limit(chrono::Utc::now());
    dolphin_bridge::rollup_task::rebuild(&pool, owner, chrono::Utc::now()).await?;
    loop {
        dolphin_bridge::rollup_task::roll_tenant(&pool, owner, limit, None).await?;
        let rolled_to: Option<chrono::DateTime<chrono::Utc>> =
            sqlx::query_scalar("SELECT rolled_to FROM report_watermarks WHERE owner = $1")
                .bind(owner)
                .fetch_optional(&pool)
                .await?;
        if rolled_to.is_some_and(|w| w >= limit) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = started.elapsed().as_secs_f64();
    println!(
        "  rollups of {events} events (messages and closes) built in {took:.1} s: {:.0} events/s, {:.1} µs and {:.1} µs of PostgreSQL CPU per event",
        events as f64 / took,
        took * 1e6 / events.max(1) as f64,
        (postgres_cpu_seconds() - pg_cpu_before) * 1e6 / events.max(1) as f64
    );
    let client = reqwest::Client::new();
    let middle = rows / 2;
    let day_ago = (chrono::Utc::now() - chrono::Duration::days(1)).format("%Y-%m-%dT%H:%M:%SZ");
    let paths = [
        "/api/v1/tickets".to_string(),
        "/api/v1/tickets?status=closed&channel=webchat".to_string(),
        "/api/v1/tickets?q=customer%2099".to_string(),
        format!("/api/v1/tickets?contactId=contact-{}", middle % 50000),
        format!("/api/v1/tickets/T{middle}"),
        format!("/api/v1/tickets/T{middle}/events"),
        format!("/api/v1/tickets/T{middle}/export"),
        "/api/v1/reports/summary?from=2020-01-01".to_string(),
        "/api/v1/reports/summary".to_string(),
        "/api/v1/reports/summary?slaSeconds=300".to_string(),
        format!("/api/v1/reports/summary?from={day_ago}"),
        format!("/api/v1/reports/timeseries?interval=hour&from={day_ago}"),
        "/api/v1/reports/timeseries?interval=day".to_string(),
        "/api/v1/reports/timeseries?interval=hour".to_string(),
    ];
    // Round robin, QUERY_SAMPLES rounds: every endpoint meets the same moments of this
    // machine, whose speed swings within a minute, so their ratios hold (one endpoint's
    // requests in a row, the median of 5, swung by half).
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); paths.len()];
    for _ in 0..QUERY_SAMPLES {
        for (path, times) in paths.iter().zip(&mut times) {
            let t = Instant::now();
            let response = client.get(format!("http://127.0.0.1:{port}{path}")).bearer_auth(key).send().await?;
            let status = response.status();
            let _ = response.bytes().await?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            if !status.is_success() {
                bail!("{path} answered {status}");
            }
        }
    }
    for (path, times) in paths.iter().zip(&mut times) {
        println!("  {path:<60} {}", summary(times));
    }
    let t = Instant::now();
    let csv = client
        .get(format!("http://127.0.0.1:{port}/api/v1/tickets?format=csv&from=2020-01-01"))
        .bearer_auth(key)
        .send()
        .await?;
    let bytes = csv.bytes().await?.len();
    println!("  CSV of every ticket: {:.1} MiB in {:.1} s", bytes as f64 / 1048576.0, t.elapsed().as_secs_f64());
    Ok(())
}

/// Whether each ticket's messages first arrived in the bridge's order for that ticket (the
/// outbox sequence it assigned on acceptance).
async fn order_check(pool: &sqlx::PgPool, order: &[String]) -> anyhow::Result<String> {
    let rows: Vec<(String, i32, Option<String>)> =
        sqlx::query_as("SELECT ticket_number, sequence, (body::jsonb)->>'message' FROM deliveries")
            .fetch_all(pool)
            .await?;
    let position: HashMap<String, (String, i32)> =
        rows.into_iter().filter_map(|(ticket, seq, m)| m.map(|m| (m, (ticket, seq)))).collect();
    let mut last: HashMap<&str, i32> = HashMap::new();
    let mut inversions = 0;
    for m in order {
        let Some((ticket, seq)) = position.get(m) else { continue };
        if last.insert(ticket.as_str(), *seq).is_some_and(|previous| previous > *seq) {
            inversions += 1;
        }
    }
    Ok(if inversions == 0 {
        "kept: every ticket's first arrivals follow its outbox sequence".into()
    } else {
        format!("{inversions} first arrivals out of order")
    })
}

/// Stores `tickets` tickets over the last 30 days with `messages` messages each, straight
/// into PostgreSQL (generate_series), then VACUUM ANALYZE.
async fn seed(pool: &sqlx::PgPool, owner: &str, tickets: u64, messages: u64) -> anyhow::Result<()> {
    let (tickets, messages) = (i64::try_from(tickets)?, i64::try_from(messages)?);
    sqlx::query(SEED_TICKETS).bind(owner).bind(tickets).execute(pool).await?;
    sqlx::query(
        "INSERT INTO messages (owner, id, ticket_number, direction, message_type, message, media_link, source, at, raw)
         SELECT t.owner, gen_random_uuid(), t.ticket_number, CASE WHEN k % 2 = 0 THEN 'out' ELSE 'in' END, 'text',
                'seeded message ' || k, '', '3dolphins', t.opened_at + k * interval '1 second', '{}'
         FROM tickets t, generate_series(1, $2) AS k WHERE t.owner = $1",
    )
    .bind(owner)
    .bind(messages)
    .execute(pool)
    .await?;
    sqlx::query("VACUUM ANALYZE").execute(pool).await?;
    Ok(())
}

/// Tickets over the 30 days up to an hour ago (a third closed an hour after opening, three
/// channels): nothing lies in the future, as in a real database, where a report's raw tail
/// after the rollup watermark holds only the last minutes.
const SEED_TICKETS: &str = "INSERT INTO tickets (owner, ticket_number, status, channel, account_id, contact_id, customer_name, group_id,
         language, created_date, opened_at, first_message_at, first_response_at, closed_at, last_message_at,
         messages_in, messages_out, created_at, updated_at)
     SELECT $1, 'T' || g, CASE WHEN g % 3 = 0 THEN 'closed' ELSE 'open' END,
            (ARRAY['whatsapp', 'telegrambot', 'webchat'])[1 + g % 3], '62812' || g, 'contact-' || (g % 50000),
            'Customer ' || (g % 100000), '', '', ts, ts, ts, ts + (g % 600) * interval '1 second',
            CASE WHEN g % 3 = 0 THEN ts + interval '1 hour' END, ts, 1, 1, ts, ts
     FROM generate_series(1, $2) AS g, LATERAL (SELECT now() - interval '1 hour' - (g::float8 * 2592000 / $2) * interval '1 second' AS ts) AS t";

/// The accepted rate of every whole minute of a run of two minutes or more, and the
/// slowest minute against the first (whether ingest holds its pace as the tables grow).
fn per_minute(accepted: &[(String, Instant, Duration)], started: Instant) -> Option<String> {
    let mut minutes: Vec<u64> = Vec::new();
    for (_, at, _) in accepted {
        let m = usize::try_from(at.saturating_duration_since(started).as_secs() / 60).unwrap_or(usize::MAX);
        if m >= minutes.len() {
            minutes.resize(m + 1, 0);
        }
        minutes[m] += 1;
    }
    minutes.pop(); // the last minute is partial
    if minutes.len() < 2 {
        return None;
    }
    let (first, slowest) = (*minutes.first()?, *minutes.iter().min()?);
    let rates: Vec<String> = minutes.iter().map(|n| format!("{:.0}", *n as f64 / 60.0)).collect();
    Some(format!("{}/s; slowest {:.2} × the first", rates.join(" "), slowest as f64 / first.max(1) as f64))
}

fn event(owner: &str, ticket: usize, message: &str) -> Value {
    json!({"ticketNumber": format!("bench-ticket-{ticket}"), "channel": "whatsapp", "accountId": "6281234500001",
           "contactId": format!("contact-{ticket}"), "messageType": "text", "message": message, "mediaLink": "",
           "customerName": "Bench Customer", "createdDate": "2026-11-24T09:15:02.345", "owner": owner,
           "groupId": "", "language": "", "padding": "x".repeat(120)})
}

/// The bridge's `bridge_delivery_leases_lost_total`, summed over its reasons (0 when
/// absent: nothing was lost).
async fn lost_leases(port: u16) -> String {
    let Ok(response) = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await else {
        return "unknown (no /metrics)".into();
    };
    let text = response.text().await.unwrap_or_default();
    let total: f64 = text
        .lines()
        .filter(|l| l.starts_with("bridge_delivery_leases_lost_total"))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum();
    format!("{:.0}", total.abs())
}

fn summary(samples: &mut [f64]) -> String {
    if samples.is_empty() {
        return "no samples".into();
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    format!("p50 {:.2}  p95 {:.2}  p99 {:.2}  max {:.2}", at(0.5), at(0.95), at(0.99), at(1.0))
}

/// A receiver that answers success at once (or 503 while `up` is false) and notes the
/// first arrival of each message.
async fn start_receiver(
    arrivals: Arrivals,
    up: Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<std::net::SocketAddr> {
    let app = axum::Router::new().fallback(move |body: Bytes| {
        let (arrivals, up) = (arrivals.clone(), up.clone());
        async move {
            if !up.load(Ordering::Relaxed) {
                return (axum::http::StatusCode::SERVICE_UNAVAILABLE, [("content-type", "application/json")], "{}");
            }
            let now = Instant::now();
            if let Some(m) =
                serde_json::from_slice::<Value>(&body).ok().and_then(|v| v["message"].as_str().map(str::to_string))
            {
                if let Ok(mut seen) = arrivals.lock() {
                    if !seen.first.contains_key(&m) {
                        seen.first.insert(m.clone(), now);
                        seen.order.push(m);
                    }
                }
            }
            (axum::http::StatusCode::OK, [("content-type", "application/json")], r#"{"status":"success"}"#)
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(address)
}

fn add_tenant(exe: &std::path::Path, url: &str, incoming: &str) -> anyhow::Result<Value> {
    let out = Command::new(exe)
        .args(["tenant", "add", "--owner", "bench-owner", "--third-party-url", incoming, "--json"])
        .env("DATABASE_URL", url)
        .env("RUST_LOG", "error")
        .output()?;
    if !out.status.success() {
        bail!("tenant add failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

async fn start_bridge(
    exe: &std::path::Path,
    url: &str,
    port: u16,
    short_retries: bool,
    log: &str,
) -> anyhow::Result<Child> {
    let mut command = Command::new(exe);
    if short_retries {
        command.env("BRIDGE_RETRY_SCHEDULE", "1s,2s,4s,8s,16s,30s,30s,30s,30s,30s");
    }
    let child = command
        .arg("serve")
        .env("DATABASE_URL", url)
        .env("BRIDGE_LISTEN", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", log)
        .env("BRIDGE_RATE_LIMIT", "1000000/s")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?;
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !client.get(format!("http://127.0.0.1:{port}/readyz")).send().await.is_ok_and(|r| r.status() == 200) {
        if Instant::now() > deadline {
            bail!("the bridge did not become ready");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(child)
}

/// (commits, rows inserted + updated + deleted) so far in this database.
async fn db_counters(pool: &sqlx::PgPool) -> anyhow::Result<(i64, i64)> {
    let commits: i64 =
        sqlx::query_scalar("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
            .fetch_one(pool)
            .await?;
    let rows: i64 = sqlx::query_scalar(
        "SELECT COALESCE(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)::bigint FROM pg_stat_user_tables",
    )
    .fetch_one(pool)
    .await?;
    Ok((commits, rows))
}

/// Commits per second of 32 clients each inserting one row per transaction for 3 s: the
/// ceiling PostgreSQL itself sets on this machine.
async fn insert_ceiling(url: &str) -> anyhow::Result<f64> {
    let pool = dolphin_bridge::store::pool_options(32).connect(url).await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS bench_ceiling (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())",
    )
    .execute(&pool)
    .await?;
    let stop = Instant::now() + Duration::from_secs(3);
    let count = Arc::new(AtomicUsize::new(0));
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let (pool, count) = (pool.clone(), count.clone());
        clients.spawn(async move {
            while Instant::now() < stop {
                if sqlx::query("INSERT INTO bench_ceiling DEFAULT VALUES").execute(&pool).await.is_ok() {
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    while clients.join_next().await.is_some() {}
    sqlx::query("DROP TABLE bench_ceiling").execute(&pool).await?;
    pool.close().await;
    Ok(count.load(Ordering::Relaxed) as f64 / 3.0)
}

/// User + system CPU seconds of a process, from /proc (Linux).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// CPU seconds of every `postgres` process on this machine (the server's backends and
/// helpers; a backend that exits during the run takes its share with it).
fn postgres_cpu_seconds() -> f64 {
    let Ok(entries) = std::fs::read_dir("/proc") else { return 0.0 };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "postgres"))
        .filter_map(cpu_seconds)
        .sum()
}

/// Peak resident set size of a process in KiB (VmHWM), from /proc (Linux).
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()
}

async fn drop_database(server: &str, db: &str) {
    if std::env::var_os("BENCH_KEEP_DATABASE").is_some() {
        println!("  kept database {db} (BENCH_KEEP_DATABASE)");
        return;
    }
    if let Ok(pool) = dolphin_bridge::store::connect_lazy(&format!("{server}/postgres"), 1) {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).execute(&pool).await;
    }
}
