//! Reports (README *HTTP surface*): the summary and the timeseries agree with each other and with a
//! count of the raw rows; percentiles follow the documented definitions.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;

async fn get_json(app: &TestApp, key: &str, path: &str) -> Value {
    let response = app.http.get(app.url(path)).bearer_auth(key).send().await.expect("request");
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.expect("JSON")
}

fn incoming(tenant: &Tenant, ticket: &str, channel: &str) -> Value {
    with(
        &fixture("incoming-text"),
        json!({"ticketNumber": ticket, "channel": channel, "owner": tenant.owner,
                                           "createdDate": chrono::Utc::now().to_rfc3339()}),
    )
}

fn reply(ticket: &str) -> Value {
    with(&fixture("outgoing-text"), json!({"ticketNumber": ticket}))
}

#[tokio::test]
async fn the_summary_follows_the_definitions_and_agrees_with_the_timeseries_and_the_rows() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(OWNER).await;
    // A: first response after 10 s, closed after 60 s. B: first response after 30 s.
    // C (telegram): no response yet.
    for (ticket, channel) in [("A", "whatsapp"), ("B", "whatsapp"), ("C", "telegrambot")] {
        assert_eq!(app.post_as_dolphins("incoming", &tenant, &incoming(&tenant, ticket, channel)).await.status(), 200);
    }
    app.clock.advance(Duration::from_secs(10));
    assert_eq!(app.post_as_third_party("messages", &tenant, &reply("A")).await.status(), 200);
    app.clock.advance(Duration::from_secs(20));
    assert_eq!(app.post_as_third_party("messages", &tenant, &reply("B")).await.status(), 200);
    assert_eq!(app.post_as_third_party("messages", &tenant, &reply("A")).await.status(), 200);
    app.clock.advance(Duration::from_secs(30));
    let close_a = with(&fixture("command-close"), json!({"ticketNumber": "A"}));
    assert_eq!(app.post_as_third_party("commands", &tenant, &close_a).await.status(), 200);
    app.dispatch().await;

    let to = (app.clock_now() + chrono::Duration::hours(1)).to_rfc3339();
    let from = (app.clock_now() - chrono::Duration::days(2)).to_rfc3339();
    let window = format!("from={}&to={}", urlencode(&from), urlencode(&to));
    let summary = get_json(&app, &tenant.read, &format!("/api/v1/reports/summary?{window}")).await;
    assert_eq!(summary["ticketsOpened"], 3);
    assert_eq!(summary["ticketsClosed"], 1);
    assert_eq!(summary["ticketsOpenNow"], 2);
    assert_eq!(summary["messagesIn"], 3);
    assert_eq!(summary["messagesOut"], 3);
    let close = |v: &Value, want: f64| (v.as_f64().unwrap_or(f64::NAN) - want).abs() < 0.5;
    assert!(close(&summary["firstResponseSeconds"]["p50"], 20.0), "{summary}");
    assert!(close(&summary["firstResponseSeconds"]["p90"], 28.0), "{summary}");
    assert!(close(&summary["firstResponseSeconds"]["mean"], 20.0), "{summary}");
    assert!(close(&summary["resolutionSeconds"]["p50"], 60.0), "{summary}");
    assert_eq!(summary["deliveries"]["delivered"], 7);
    assert_eq!(summary["byChannel"]["telegrambot"]["ticketsOpened"], 1);
    assert_eq!(summary["byChannel"]["telegrambot"]["firstResponseSeconds"]["p50"], Value::Null);
    assert_eq!(summary["byChannel"]["whatsapp"]["ticketsOpened"], 2);
    assert_eq!(summary["tz"], "Asia/Jakarta");

    // The rows themselves.
    let raw_in = app.count("SELECT count(*) FROM messages WHERE direction = 'in' AND source <> 'history'").await;
    let raw_closes = app.count("SELECT count(*) FROM ticket_events WHERE kind = 'closed'").await;
    assert_eq!((summary["messagesIn"].as_i64(), summary["ticketsClosed"].as_i64()), (Some(raw_in), Some(raw_closes)));

    for interval in ["hour", "day"] {
        let series =
            get_json(&app, &tenant.read, &format!("/api/v1/reports/timeseries?interval={interval}&{window}")).await;
        let buckets = series["data"].as_array().expect("buckets");
        let sum = |key: &str| buckets.iter().map(|b| b[key].as_i64().unwrap_or(0)).sum::<i64>();
        for key in ["ticketsOpened", "ticketsClosed", "messagesIn", "messagesOut"] {
            assert_eq!(Some(sum(key)), summary[key].as_i64(), "{interval} {key}");
        }
        assert_eq!(series["interval"], interval);
    }
    app.finish().await;
}

#[tokio::test]
async fn day_buckets_are_local_days_in_the_requested_timezone() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(OWNER).await;
    assert_eq!(app.post_as_dolphins("incoming", &tenant, &incoming(&tenant, "D1", "whatsapp")).await.status(), 200);
    let series = get_json(&app, &tenant.read, "/api/v1/reports/timeseries?interval=day&tz=Asia/Jakarta").await;
    let buckets = series["data"].as_array().expect("buckets");
    assert!(buckets.len() >= 30);
    for b in buckets {
        let at = chrono::DateTime::parse_from_rfc3339(b["bucket"].as_str().expect("bucket")).expect("RFC 3339");
        assert_eq!(at.format("%H:%M").to_string(), "17:00", "Jakarta midnight is 17:00 UTC");
    }
    assert_eq!(buckets.iter().map(|b| b["ticketsOpened"].as_i64().unwrap_or(0)).sum::<i64>(), 1);
    let utc = get_json(&app, &tenant.read, "/api/v1/reports/timeseries?interval=day&tz=UTC").await;
    assert_eq!(utc["tz"], "UTC");
    let first = utc["data"][0]["bucket"].as_str().unwrap_or("");
    assert!(first.contains("T00:00:00"), "{first}");
    app.finish().await;
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

#[tokio::test]
async fn hourly_buckets_follow_the_local_clock_through_both_dst_changes() {
    use dolphin_bridge::store::reports::{self, Interval, ReportScope};
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(OWNER).await;
    // Tickets opened (createdDate) around New York's changes of 2026.
    let opened = [
        ("S1", "2026-03-08T06:30:00Z"), // 01:30 EST
        ("S2", "2026-03-08T07:30:00Z"), // 03:30 EDT: 02:00 did not happen
        ("F1", "2026-11-01T04:30:00Z"), // 00:30 EDT
        ("F2", "2026-11-01T05:30:00Z"), // 01:30 EDT
        ("F3", "2026-11-01T06:30:00Z"), // 01:30 EST, the same local hour again
        ("F4", "2026-11-01T07:30:00Z"), // 02:30 EST
    ];
    for (ticket, at) in opened {
        let body =
            with(&fixture("incoming-text"), json!({"ticketNumber": ticket, "owner": tenant.owner, "createdDate": at}));
        assert_eq!(app.post_as_dolphins("incoming", &tenant, &body).await.status(), 200);
    }
    let cases = [
        (
            "2026-03-08T06:00:00Z",
            "2026-03-08T08:00:00Z",
            vec![("2026-03-08T06:00:00Z", 1), ("2026-03-08T07:00:00Z", 1)],
        ),
        (
            "2026-11-01T04:00:00Z",
            "2026-11-01T08:00:00Z",
            vec![("2026-11-01T04:00:00Z", 1), ("2026-11-01T05:00:00Z", 2), ("2026-11-01T07:00:00Z", 1)],
        ),
    ];
    for (from, to, want) in cases {
        let path = format!(
            "/api/v1/reports/timeseries?interval=hour&tz=America/New_York&from={}&to={}",
            urlencode(from),
            urlencode(to)
        );
        let series = get_json(&app, &tenant.read, &path).await;
        let have: Vec<(chrono::DateTime<chrono::Utc>, i64)> = series["data"]
            .as_array()
            .expect("buckets")
            .iter()
            .map(|b| {
                (
                    b["bucket"].as_str().unwrap_or("").parse().unwrap_or_default(),
                    b["ticketsOpened"].as_i64().unwrap_or(-1),
                )
            })
            .collect();
        let want: Vec<(chrono::DateTime<chrono::Utc>, i64)> =
            want.iter().map(|(at, n)| (at.parse().unwrap_or_default(), *n)).collect();
        assert_eq!(have, want, "{path}");
        // The definitions computed by PostgreSQL from the raw rows say the same.
        let scope = ReportScope {
            owner: &tenant.owner,
            from: from.parse().unwrap_or_default(),
            to: to.parse().unwrap_or_default(),
            channel: None,
            sla_seconds: None,
        };
        let raw = reports::timeseries(&app.pool, &scope, Interval::Hour, "America/New_York").await.expect("raw");
        assert_eq!(raw.iter().map(|b| (b.bucket, b.tickets_opened)).collect::<Vec<_>>(), want, "raw rows of {path}");
    }
    app.finish().await;
}
