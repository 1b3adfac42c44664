//! Outgoing and Command Events from the third party (README *Connecting the peers*, the third party): strict.

use serde_json::{json, Value};

use crate::helpers::*;

async fn error_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON error body"))
}

fn fields_of(error: &Value) -> Vec<String> {
    error["error"]["fields"]
        .as_array()
        .map(|f| f.iter().map(|p| p["field"].as_str().unwrap_or("").to_string()).collect())
        .unwrap_or_default()
}

async fn open_ticket(app: &TestApp, tenant: &Tenant) {
    assert_eq!(app.post_as_dolphins("incoming", tenant, &fixture("incoming-text")).await.status(), 200);
}

#[tokio::test]
async fn an_agent_reply_reaches_3dolphins_as_the_contract_gives_it() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(OWNER).await;
    open_ticket(&app, &tenant).await;
    let reply = fixture("outgoing-text");
    let response = app.post_as_third_party("messages", &tenant, &reply).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["status"], "success");
    let message_id = body["messageId"].as_str().expect("messageId").to_string();
    app.dispatch().await;
    let got = app.dolphins.wait_for("/send", 1).await;
    assert_eq!(got[0].json(), reply, "the body is exactly the reply");
    assert_eq!(got[0].header("x-ticket-sequence"), Some("1"));
    assert_eq!(got[0].header("webhook-signature"), None, "3Dolphins requests are not signed");
    let (direction, source): (String, String) =
        sqlx::query_as("SELECT direction, source FROM messages WHERE id = $1::uuid")
            .bind(&message_id)
            .fetch_one(&app.pool)
            .await
            .expect("stored");
    assert_eq!((direction.as_str(), source.as_str()), ("out", "third_party"));
    let first_response_set: bool = sqlx::query_scalar(
        "SELECT first_response_at IS NOT NULL AND first_response_at >= first_message_at FROM tickets",
    )
    .fetch_one(&app.pool)
    .await
    .expect("ticket");
    assert!(first_response_set, "the first outbound message sets the first response time");
    app.finish().await;
}

#[tokio::test]
async fn every_field_missing_empty_null_or_mistyped_is_named_and_nothing_is_stored() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(OWNER).await;
    open_ticket(&app, &tenant).await;
    let base = fixture("outgoing-text");
    for field in ["channel", "messageType", "message", "mediaLink", "customerName"] {
        let mut cases = vec![("missing", without(&base, field)), ("null", with(&base, json!({field: null})))];
        cases.push(("number", with(&base, json!({field: 7}))));
        cases.push(("object", with(&base, json!({field: {"a": 1}}))));
        if field != "mediaLink" {
            cases.push(("empty", with(&base, json!({field: ""}))));
        }
        for (defect, body) in cases {
            let (status, error) = error_of(app.post_as_third_party("messages", &tenant, &body).await).await;
            assert_eq!(status, 400, "{field} {defect}");
            assert_eq!(error["error"]["code"], "invalid_payload");
            assert!(fields_of(&error).contains(&field.to_string()), "{field} {defect}: {error}");
        }
    }
    for (label, body) in [
        ("bad type", with(&base, json!({"messageType": "hologram"}))),
        ("bad location", with(&base, json!({"messageType": "location", "message": "somewhere"}))),
        ("bad media", with(&base, json!({"messageType": "image", "mediaLink": "not-a-url"}))),
        ("bad date", with(&base, json!({"createdDate": "yesterday"}))),
    ] {
        let (status, error) = error_of(app.post_as_third_party("messages", &tenant, &body).await).await;
        assert_eq!(status, 400, "{label}");
        assert_eq!(fields_of(&error).len(), 1, "{label}: {error}");
    }
    let (status, error) = error_of(
        app.post_as_third_party("messages", &tenant, &json!({"ticketNumber": "x", "owner": OWNER, "channel": 1})).await,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(fields_of(&error), vec!["channel", "messageType", "message", "mediaLink", "customerName"]);
    assert!(error["error"]["message"].as_str().is_some_and(|m| m.starts_with("5 problems")));
    assert_eq!(app.count("SELECT count(*) FROM messages WHERE direction = 'out'").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM deliveries WHERE peer = 'dolphins'").await, 0);
    app.finish().await;
}

#[tokio::test]
async fn a_non_json_content_type_is_refused_with_415() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(OWNER).await;
    open_ticket(&app, &tenant).await;
    let response = app
        .http
        .post(app.url("/webhooks/third-party/messages"))
        .bearer_auth(&tenant.third_party)
        .header("content-type", "text/plain")
        .body(fixture("outgoing-text").to_string())
        .send()
        .await
        .expect("request");
    let (status, error) = error_of(response).await;
    assert_eq!((status, error["error"]["code"].as_str()), (415, Some("unsupported_media_type")));
    app.finish().await;
}

#[tokio::test]
async fn a_reply_to_an_unknown_or_closed_ticket_is_refused() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(OWNER).await;
    let (status, error) = error_of(app.post_as_third_party("messages", &tenant, &fixture("outgoing-text")).await).await;
    assert_eq!((status, error["error"]["code"].as_str()), (404, Some("ticket_not_found")));
    let (status, _) = error_of(app.post_as_third_party("commands", &tenant, &fixture("command-close")).await).await;
    assert_eq!(status, 404);
    assert_eq!(app.count("SELECT count(*) FROM tickets").await, 0, "the third party cannot create tickets");

    open_ticket(&app, &tenant).await;
    assert_eq!(app.post_as_third_party("commands", &tenant, &fixture("command-close")).await.status(), 200);
    let (status, error) = error_of(app.post_as_third_party("messages", &tenant, &fixture("outgoing-text")).await).await;
    assert_eq!((status, error["error"]["code"].as_str()), (409, Some("ticket_closed")));
    app.finish().await;
}

#[tokio::test]
async fn closing_a_closed_ticket_is_a_success_that_enqueues_nothing() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(OWNER).await;
    open_ticket(&app, &tenant).await;
    let close = with(&fixture("command-close"), json!({"event": "Close"}));
    for _ in 0..2 {
        let response = app.post_as_third_party("commands", &tenant, &close).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.json::<Value>().await.expect("JSON"), json!({"status": "success"}));
    }
    assert_eq!(app.count("SELECT count(*) FROM deliveries WHERE target = 'dolphins_command'").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM ticket_events WHERE kind = 'closed'").await, 1);
    let (status, closed): (String, bool) =
        sqlx::query_as("SELECT status, closed_at IS NOT NULL FROM tickets").fetch_one(&app.pool).await.expect("ticket");
    assert_eq!((status.as_str(), closed), ("closed", true));
    app.dispatch().await;
    let got = app.dolphins.wait_for("/command", 1).await;
    assert_eq!(got[0].json()["event"], "close");
    app.finish().await;
}

#[tokio::test]
async fn an_unsupported_command_lists_the_supported_ones() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(OWNER).await;
    open_ticket(&app, &tenant).await;
    let body = with(&fixture("command-close"), json!({"event": "escalate"}));
    let (status, error) = error_of(app.post_as_third_party("commands", &tenant, &body).await).await;
    assert_eq!((status, error["error"]["code"].as_str()), (400, Some("unsupported_event")));
    assert!(error["error"]["fields"][0]["problem"].as_str().is_some_and(|p| p.contains("close")));
    app.finish().await;
}

#[tokio::test]
async fn a_close_sent_right_after_a_reply_reaches_3dolphins_after_it() {
    let app = TestApp::spawn_stepped().await;
    let tenant = app.create_tenant(OWNER).await;
    open_ticket(&app, &tenant).await;
    assert_eq!(app.post_as_third_party("messages", &tenant, &fixture("outgoing-text")).await.status(), 200);
    assert_eq!(app.post_as_third_party("commands", &tenant, &fixture("command-close")).await.status(), 200);
    app.dolphins.reply_next(503, &[], "busy");
    app.dispatch().await;
    assert!(app.dolphins.received_at("/command").is_empty(), "the close waits behind the failed reply");
    app.clock.advance(std::time::Duration::from_secs(2));
    app.dispatch().await;
    let order: Vec<String> = app.dolphins.received().iter().map(|r| r.path.clone()).collect();
    assert_eq!(order, vec!["/send", "/send", "/command"]);
    app.finish().await;
}
