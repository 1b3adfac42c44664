//! The first dispatcher: every accepted event reaches its peer, retried by the schedule,
//! recorded attempt by attempt.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;

async fn delivery_state(app: &TestApp) -> Vec<(String, i32, Option<String>)> {
    sqlx::query_as("SELECT status, attempts, last_error FROM deliveries ORDER BY created_at")
        .fetch_all(&app.pool)
        .await
        .expect("deliveries")
}

#[tokio::test]
async fn with_workers_running_an_event_arrives_without_being_driven() {
    let app = TestApp::spawn_with(Options::default()).await;
    let tenant = app.create_tenant(OWNER).await;
    assert_eq!(app.post_as_dolphins("incoming", &tenant, &fixture("incoming-text")).await.status(), 200);
    let got = app.third_party.wait_for("/incoming", 1).await;
    assert_eq!(got[0].json(), fixture("incoming-text"));
    app.finish().await;
}

#[tokio::test]
async fn a_failing_peer_is_retried_until_it_accepts_and_every_attempt_is_logged() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(OWNER).await;
    app.third_party.reply_next(500, &[], "oops");
    app.third_party.reply_next(200, &[("content-type", "application/json")], r#"{"status":"error"}"#);
    assert_eq!(app.post_as_dolphins("incoming", &tenant, &fixture("incoming-text")).await.status(), 200);
    assert_eq!(app.dispatch().await, 1);
    assert_eq!(delivery_state(&app).await[0].0, "failed");
    assert_eq!(app.dispatch().await, 0, "not due before its delay");
    app.clock.advance(Duration::from_secs(2));
    assert_eq!(app.dispatch().await, 1);
    app.clock.advance(Duration::from_secs(3));
    assert_eq!(app.dispatch().await, 1);
    let state = delivery_state(&app).await;
    assert_eq!((state[0].0.as_str(), state[0].1), ("delivered", 3));
    let attempts: Vec<(i32, Option<i32>, Option<String>)> =
        sqlx::query_as("SELECT n, http_status, response_head FROM delivery_attempts ORDER BY n")
            .fetch_all(&app.pool)
            .await
            .expect("attempts");
    assert_eq!(attempts.iter().map(|a| a.1).collect::<Vec<_>>(), vec![Some(500), Some(200), Some(200)]);
    assert_eq!(attempts[0].2.as_deref(), Some("oops"));
    let kinds: Vec<String> = sqlx::query_scalar(
        "SELECT kind FROM ticket_events WHERE kind IN ('delivered', 'delivery_failed', 'dead') ORDER BY id",
    )
    .fetch_all(&app.pool)
    .await
    .expect("events");
    assert_eq!(kinds, vec!["delivery_failed", "delivery_failed", "delivered"]);
    let got = app.third_party.received_at("/incoming");
    assert_eq!(got.len(), 3);
    assert!(got.iter().all(|r| r.header("webhook-id") == got[0].header("webhook-id")), "webhook-id is stable");
    app.finish().await;
}

#[tokio::test]
async fn after_the_schedule_a_delivery_is_dead_and_stays_visible() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(OWNER).await;
    for _ in 0..3 {
        app.third_party.reply_next(503, &[], "down");
    }
    assert_eq!(app.post_as_dolphins("incoming", &tenant, &fixture("incoming-text")).await.status(), 200);
    for _ in 0..3 {
        app.dispatch().await;
        app.clock.advance(Duration::from_secs(3));
    }
    let state = delivery_state(&app).await;
    assert_eq!((state[0].0.as_str(), state[0].1), ("dead", 3), "schedule 1s,2s = three attempts");
    assert_eq!(state[0].2.as_deref(), Some("HTTP 503"));
    app.finish().await;
}

#[tokio::test]
async fn a_permanent_refusal_is_dead_at_once_and_the_ticket_flows_on() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(OWNER).await;
    app.third_party.reply_next(400, &[], "bad request");
    assert_eq!(app.post_as_dolphins("incoming", &tenant, &fixture("incoming-text")).await.status(), 200);
    assert_eq!(app.post_as_dolphins("incoming", &tenant, &fixture("incoming-image")).await.status(), 200);
    app.dispatch().await;
    let state = delivery_state(&app).await;
    assert_eq!(state.iter().map(|s| s.0.as_str()).collect::<Vec<_>>(), vec!["dead", "delivered"]);
    let got = app.third_party.received_at("/incoming");
    assert_eq!(got.iter().map(|r| r.header("x-ticket-sequence").unwrap_or("")).collect::<Vec<_>>(), vec!["1", "2"]);
    app.finish().await;
}

#[tokio::test]
async fn retry_after_on_429_pushes_the_next_attempt_back() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(OWNER).await;
    app.third_party.reply_next(429, &[("retry-after", "120")], "slow down");
    assert_eq!(app.post_as_dolphins("incoming", &tenant, &fixture("incoming-text")).await.status(), 200);
    app.dispatch().await;
    let wait: f64 = sqlx::query_scalar("SELECT EXTRACT(EPOCH FROM next_attempt_at - now())::float8 FROM deliveries")
        .fetch_one(&app.pool)
        .await
        .expect("delivery");
    assert!(wait > 110.0 && wait <= 121.0, "next attempt in {wait}s, wanted about 120s");
    app.clock.advance(Duration::from_secs(30));
    assert_eq!(app.dispatch().await, 0, "the peer's wish is honoured");
    app.clock.advance(Duration::from_secs(91));
    assert_eq!(app.dispatch().await, 1);
    app.finish().await;
}

#[tokio::test]
async fn deliveries_of_one_ticket_arrive_in_acceptance_order_while_other_tickets_flow() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(OWNER).await;
    app.third_party.reply_next(500, &[], "first attempt of A fails");
    for i in 0..5 {
        let a = with(&fixture("incoming-text"), json!({"ticketNumber": "A", "message": format!("a{i}")}));
        assert_eq!(app.post_as_dolphins("incoming", &tenant, &a).await.status(), 200);
    }
    let b = with(&fixture("incoming-text"), json!({"ticketNumber": "B", "message": "b0"}));
    assert_eq!(app.post_as_dolphins("incoming", &tenant, &b).await.status(), 200);
    app.dispatch().await;
    let texts = |app: &TestApp| -> Vec<String> {
        app.third_party.received().iter().map(|r| r.json()["message"].as_str().unwrap_or("").to_string()).collect()
    };
    assert_eq!(texts(&app), vec!["a0", "b0"], "A waits behind its failed first delivery; B does not");
    app.clock.advance(Duration::from_secs(2));
    app.dispatch().await;
    let got = texts(&app);
    let a_order: Vec<&String> = got.iter().filter(|t| t.starts_with('a')).collect();
    assert_eq!(a_order, vec!["a0", "a0", "a1", "a2", "a3", "a4"]);
    let value: Value = app.third_party.received()[2].json();
    assert_eq!(value["ticketNumber"], "A");
    app.finish().await;
}

#[tokio::test]
async fn use_api_token_puts_the_3dolphins_token_on_deliveries_and_refreshes_it_on_401() {
    let app = TestApp::spawn().await;
    let tenant = app
        .create_tenant_with(json!({
            "owner": OWNER,
            "thirdParty": {"incomingUrl": app.third_party.url("/incoming")},
            "dolphins": {"sendMessageUrl": app.dolphins.url("/send"), "apiBaseUrl": app.dolphins.url("/dolphin/apiv1"),
                         "username": "integration", "password": "s3cret-pass", "useApiToken": true}
        }))
        .await;
    let auth =
        |token: &str| json!({"token": token, "expireAt": "2099-01-01T00:00:00.000+07:00[Asia/Jakarta]"}).to_string();
    let json_type = [("content-type", "application/json")];
    app.dolphins.reply_next(200, &json_type, &auth("token-one"));
    assert_eq!(app.post_as_dolphins("incoming", &tenant, &fixture("incoming-text")).await.status(), 200);
    assert_eq!(app.post_as_third_party("messages", &tenant, &fixture("outgoing-text")).await.status(), 200);
    app.dispatch().await;
    let got = app.dolphins.received();
    assert_eq!(got.iter().map(|r| r.path.as_str()).collect::<Vec<_>>(), vec!["/dolphin/apiv1/graph/auth", "/send"]);
    assert_eq!(got[0].json(), json!({"username": "integration", "password": "s3cret-pass"}));
    assert_eq!(got[1].header("authorization"), Some("Bearer token-one"));

    // The token is cached; when 3Dolphins refuses it, a new one is fetched and the reply resent.
    app.dolphins.reply_next(401, &[], "expired");
    app.dolphins.reply_next(200, &json_type, &auth("token-two"));
    let second = with(&fixture("outgoing-text"), json!({"message": "second reply"}));
    assert_eq!(app.post_as_third_party("messages", &tenant, &second).await.status(), 200);
    app.dispatch().await;
    let got = app.dolphins.received();
    let tail: Vec<(&str, Option<&str>)> =
        got[2..].iter().map(|r| (r.path.as_str(), r.header("authorization"))).collect();
    assert_eq!(
        tail,
        vec![
            ("/send", Some("Bearer token-one")),
            ("/dolphin/apiv1/graph/auth", None),
            ("/send", Some("Bearer token-two"))
        ]
    );
    assert_eq!(
        app.count("SELECT count(*) FROM deliveries WHERE status = 'delivered' AND target = 'dolphins_message'").await,
        2
    );
    // The attempt log shows the request with the token masked, and never the token itself.
    let list: Value = app
        .http
        .get(app.url("/api/v1/deliveries?target=dolphins_message&status=delivered"))
        .bearer_auth(&tenant.read)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("JSON");
    for d in list["data"].as_array().expect("deliveries") {
        let one: Value = app
            .http
            .get(app.url(&format!("/api/v1/deliveries/{}", d["id"].as_str().expect("id"))))
            .bearer_auth(&tenant.read)
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("JSON");
        let request = &one["attemptLog"][0]["request"];
        assert_eq!(request["url"], app.dolphins.url("/send"));
        assert_eq!(request["headers"]["authorization"], "***", "{one}");
        assert!(!one.to_string().contains("token-"), "no token in the attempt log: {one}");
    }
    app.finish().await;
}

#[tokio::test]
async fn a_graceful_stop_finishes_and_records_the_attempt_in_flight() {
    let mut app = TestApp::spawn_with(Options::default()).await;
    let tenant = app.create_tenant(OWNER).await;
    app.third_party.set_delay(Duration::from_millis(700));
    assert_eq!(app.post_as_dolphins("incoming", &tenant, &fixture("incoming-text")).await.status(), 200);
    app.third_party.wait_for("/incoming", 1).await; // in flight now: the receiver is thinking
    app.stop_bridge().await;
    // The app closed its pool on the way out; look with a connection of our own.
    let pool = dolphin_bridge::store::connect_lazy(&format!("{}/{}", server_url(), app.db_name), 1).expect("pool");
    let (status, leased): (String, bool) = sqlx::query_as("SELECT status, lease_token IS NOT NULL FROM deliveries")
        .fetch_one(&pool)
        .await
        .expect("delivery");
    assert_eq!((status.as_str(), leased), ("delivered", false), "recorded before the process ended");
    app.finish().await;
}
