//! Circuit breaker and pause (README *Rules worth knowing*, deliveries): waiting uses up no delivery's schedule.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;

async fn endpoint(app: &TestApp, tenant: &Tenant, target: &str) -> Value {
    let response = app.http.get(app.url("/api/v1/endpoints")).bearer_auth(&tenant.read).send().await.expect("request");
    let body: Value = response.json().await.expect("JSON");
    body["data"].as_array().expect("data").iter().find(|e| e["target"] == target).cloned().expect("target listed")
}

async fn attempts_of(app: &TestApp, ticket: &str) -> i64 {
    sqlx::query_scalar("SELECT sum(attempts)::bigint FROM deliveries WHERE ticket_number = $1")
        .bind(ticket)
        .fetch_one(&app.pool)
        .await
        .expect("attempts")
}

#[tokio::test]
async fn repeated_failures_open_the_breaker_then_one_probe_closes_it() {
    let app = TestApp::spawn_with(Options {
        env: vec![("BRIDGE_RETRY_SCHEDULE", "1s,1s,1s,1s,1s".into())],
        ..Options::default()
    })
    .await;
    let tenant = app.create_tenant(OWNER).await;
    for _ in 0..5 {
        app.third_party.reply_next(502, &[], "bad gateway");
    }
    for i in 0..5 {
        let body = with(&fixture("incoming-text"), json!({"ticketNumber": format!("B{i}")}));
        assert_eq!(app.post_as_dolphins("incoming", &tenant, &body).await.status(), 200);
    }
    app.dispatch().await;
    assert_eq!(app.third_party.received().len(), 5);
    let state = endpoint(&app, &tenant, "third_party_incoming").await;
    assert_eq!(state["state"], "open");
    assert_eq!(state["queueDepth"], 5);

    // While open, nothing is sent and no schedule is used, new events included.
    let waiting = with(&fixture("incoming-text"), json!({"ticketNumber": "W"}));
    assert_eq!(app.post_as_dolphins("incoming", &tenant, &waiting).await.status(), 200);
    app.clock.advance(Duration::from_secs(5));
    assert_eq!(app.dispatch().await, 0);
    assert_eq!(attempts_of(&app, "W").await, 0);

    // After the cooldown exactly one probe goes; its success closes the breaker.
    app.clock.advance(Duration::from_secs(30));
    let dispatcher_rounds = app.dispatch().await;
    assert!(dispatcher_rounds >= 6, "probe then everything else, got {dispatcher_rounds}");
    assert_eq!(endpoint(&app, &tenant, "third_party_incoming").await["state"], "closed");
    assert_eq!(app.count("SELECT count(*) FROM deliveries WHERE status = 'delivered'").await, 6);
    assert_eq!(attempts_of(&app, "W").await, 1, "the waiting event took one attempt");
    app.finish().await;
}

#[tokio::test]
async fn a_failed_probe_keeps_the_breaker_open() {
    let app = TestApp::spawn_with(Options {
        env: vec![("BRIDGE_RETRY_SCHEDULE", "1s,1s,1s,1s,1s,1s,1s".into())],
        ..Options::default()
    })
    .await;
    let tenant = app.create_tenant(OWNER).await;
    for _ in 0..6 {
        app.third_party.reply_next(500, &[], "down");
    }
    for i in 0..5 {
        let body = with(&fixture("incoming-text"), json!({"ticketNumber": format!("F{i}")}));
        assert_eq!(app.post_as_dolphins("incoming", &tenant, &body).await.status(), 200);
    }
    app.dispatch().await;
    app.clock.advance(Duration::from_secs(31));
    assert_eq!(app.dispatch().await, 1, "one probe only");
    assert_eq!(app.third_party.received().len(), 6);
    assert_eq!(endpoint(&app, &tenant, "third_party_incoming").await["state"], "open");
    app.finish().await;
}

#[tokio::test]
async fn a_paused_target_holds_its_deliveries_until_resumed() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(OWNER).await;
    let pause = app
        .http
        .post(app.url("/api/v1/endpoints/third_party_incoming/pause"))
        .bearer_auth(&tenant.third_party)
        .send()
        .await
        .expect("request");
    assert_eq!(pause.status(), 200);
    assert_eq!(app.post_as_dolphins("incoming", &tenant, &fixture("incoming-text")).await.status(), 200);
    app.clock.advance(Duration::from_secs(3600));
    assert_eq!(app.dispatch().await, 0);
    let state = endpoint(&app, &tenant, "third_party_incoming").await;
    assert_eq!((state["paused"].as_bool(), state["queueDepth"].as_i64()), (Some(true), Some(1)));
    let resume = app
        .http
        .post(app.url("/api/v1/endpoints/third_party_incoming/resume"))
        .bearer_auth(&tenant.third_party)
        .send()
        .await
        .expect("request");
    assert_eq!(resume.status(), 200);
    assert_eq!(app.dispatch().await, 1);
    assert_eq!(app.count("SELECT attempts::bigint FROM deliveries").await, 1, "the pause used no attempt");
    let unknown = app
        .http
        .post(app.url("/api/v1/endpoints/moon/pause"))
        .bearer_auth(&tenant.third_party)
        .send()
        .await
        .expect("request");
    assert_eq!(unknown.status(), 400);
    let read_only = app
        .http
        .post(app.url("/api/v1/endpoints/third_party_incoming/pause"))
        .bearer_auth(&tenant.read)
        .send()
        .await
        .expect("request");
    assert_eq!(read_only.status(), 403);
    app.finish().await;
}
