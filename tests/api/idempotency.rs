//! Idempotency (README *Rules worth knowing*, idempotency): a repeated key gets the original reply, a reused key 422,
//! a key still being applied 409; without a key, two identical events are two events.

use serde_json::{json, Value};

use crate::helpers::*;

async fn post_with_key(app: &TestApp, tenant: &Tenant, header: &str, key: &str, body: &Value) -> reqwest::Response {
    app.http
        .post(app.url(&format!("/webhooks/3dolphins/incoming?token={}", tenant.inbound)))
        .header(header, key)
        .json(body)
        .send()
        .await
        .expect("request")
}

#[tokio::test]
async fn a_repeated_key_gets_the_original_reply_and_applies_once() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(OWNER).await;
    let body = fixture("incoming-text");
    for header in ["Idempotency-Key", "webhook-id"] {
        let key = format!("key-{header}");
        let first: Value = post_with_key(&app, &tenant, header, &key, &body).await.json().await.expect("JSON");
        let again = post_with_key(&app, &tenant, header, &key, &body).await;
        assert_eq!(again.status(), 200);
        assert_eq!(again.json::<Value>().await.expect("JSON"), first, "{header}");
    }
    assert_eq!(app.count("SELECT count(*) FROM messages").await, 2, "one message per key");
    assert_eq!(app.count("SELECT count(*) FROM deliveries").await, 2);
    app.finish().await;
}

#[tokio::test]
async fn the_same_key_on_a_different_request_is_refused_with_422() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(OWNER).await;
    let body = fixture("incoming-text");
    assert_eq!(post_with_key(&app, &tenant, "Idempotency-Key", "k1", &body).await.status(), 200);
    let other = with(&body, json!({"message": "something else"}));
    let response = post_with_key(&app, &tenant, "Idempotency-Key", "k1", &other).await;
    assert_eq!(response.status(), 422);
    let error: Value = response.json().await.expect("JSON");
    assert_eq!(error["error"]["code"], "idempotency_key_reused");
    assert_eq!(app.count("SELECT count(*) FROM messages").await, 1);
    app.finish().await;
}

#[tokio::test]
async fn keys_are_scoped_per_tenant() {
    let app = TestApp::spawn().await;
    let a = app.create_tenant(OWNER).await;
    let b = app.create_tenant("tenant-b").await;
    assert_eq!(post_with_key(&app, &a, "Idempotency-Key", "shared", &fixture("incoming-text")).await.status(), 200);
    let for_b = with(&fixture("incoming-text"), json!({"owner": b.owner, "message": "different"}));
    assert_eq!(post_with_key(&app, &b, "Idempotency-Key", "shared", &for_b).await.status(), 200);
    assert_eq!(app.count("SELECT count(*) FROM messages").await, 2);
    app.finish().await;
}

#[tokio::test]
async fn a_key_still_being_applied_gets_409() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(OWNER).await;
    // Hold the key's lock from another session, as a concurrent first request would.
    let mut holder = app.pool.acquire().await.expect("connection");
    sqlx::query("SELECT pg_advisory_lock(hashtextextended($1 || E'\\n' || $2, 7041))")
        .bind(OWNER)
        .bind("busy-key")
        .execute(&mut *holder)
        .await
        .expect("lock");
    let response = post_with_key(&app, &tenant, "Idempotency-Key", "busy-key", &fixture("incoming-text")).await;
    assert_eq!(response.status(), 409);
    assert!(response.headers().contains_key("retry-after"));
    let error: Value = response.json().await.expect("JSON");
    assert_eq!(error["error"]["code"], "in_progress");
    sqlx::query("SELECT pg_advisory_unlock_all()").execute(&mut *holder).await.expect("unlock");
    drop(holder);
    assert_eq!(
        post_with_key(&app, &tenant, "Idempotency-Key", "busy-key", &fixture("incoming-text")).await.status(),
        200
    );
    app.finish().await;
}

#[tokio::test]
async fn without_a_key_two_identical_events_are_two_messages() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(OWNER).await;
    let ok = with(&fixture("incoming-text"), json!({"message": "ok"}));
    let a: Value = app.post_as_dolphins("incoming", &tenant, &ok).await.json().await.expect("JSON");
    let b: Value = app.post_as_dolphins("incoming", &tenant, &ok).await.json().await.expect("JSON");
    assert_ne!(a["messageId"], b["messageId"]);
    assert_eq!(app.count("SELECT count(*) FROM messages").await, 2);
    app.finish().await;
}

#[tokio::test]
async fn the_dedupe_window_folds_identical_incoming_events_when_enabled() {
    let app =
        TestApp::spawn_with(Options { env: vec![("BRIDGE_DEDUPE_WINDOW", "1m".into())], ..Options::default() }).await;
    let tenant = app.create_tenant(OWNER).await;
    let body = fixture("incoming-text");
    let a: Value = app.post_as_dolphins("incoming", &tenant, &body).await.json().await.expect("JSON");
    let b: Value = app.post_as_dolphins("incoming", &tenant, &body).await.json().await.expect("JSON");
    assert_eq!(a["messageId"], b["messageId"]);
    let later = with(&body, json!({"createdDate": "2026-11-24T09:16:00.000"}));
    let c: Value = app.post_as_dolphins("incoming", &tenant, &later).await.json().await.expect("JSON");
    assert_ne!(a["messageId"], c["messageId"], "a different createdDate is a different event");
    assert_eq!(app.count("SELECT count(*) FROM messages").await, 2);
    app.finish().await;
}

#[tokio::test]
async fn a_duplicate_arriving_after_a_close_neither_reopens_nor_adds_anything() {
    let app = TestApp::spawn_with(Options {
        env: vec![("BRIDGE_DEDUPE_WINDOW", "1m".into())],
        workers: false,
        ..Options::default()
    })
    .await;
    let tenant = app.create_tenant(OWNER).await;
    let body = fixture("incoming-text");
    let ticket = body["ticketNumber"].as_str().expect("ticket").to_string();
    let a: Value = app.post_as_dolphins("incoming", &tenant, &body).await.json().await.expect("JSON");
    assert_eq!(app.post_as_third_party("commands", &tenant, &fixture("command-close")).await.status(), 200);
    let b: Value = app.post_as_dolphins("incoming", &tenant, &body).await.json().await.expect("JSON");
    assert_eq!(a["messageId"], b["messageId"], "the repeat is the first message");
    assert_eq!(event_kinds(&app.pool, OWNER, &ticket).await, vec!["created", "message_in", "closed"]);
    assert_eq!(app.count("SELECT count(*) FROM tickets WHERE status = 'closed'").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM deliveries WHERE peer = 'third_party'").await, 1);
    app.finish().await;
}
