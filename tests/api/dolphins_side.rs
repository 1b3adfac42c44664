//! Outgoing and Command Events posted by 3Dolphins (README *Connecting the peers*): mirrored to the
//! third party, lenient, and echoes of the bridge's own deliveries suppressed.

use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn a_3dolphins_reply_creates_an_unknown_ticket_and_is_mirrored_to_the_third_party() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(OWNER).await;
    let bot_reply = fixture("outgoing-text");
    assert_eq!(app.post_as_dolphins("outgoing", &tenant, &bot_reply).await.status(), 200);
    app.dispatch().await;
    let got = app.third_party.wait_for("/outgoing", 1).await;
    assert_eq!(got[0].json(), bot_reply);
    let (source, direction): (String, String) =
        sqlx::query_as("SELECT source, direction FROM messages").fetch_one(&app.pool).await.expect("stored");
    assert_eq!((source.as_str(), direction.as_str()), ("3dolphins", "out"));
    let ticket = bot_reply["ticketNumber"].as_str().expect("ticket");
    assert_eq!(event_kinds(&app.pool, OWNER, ticket).await[..2], ["created", "message_out"]);
    app.finish().await;
}

#[tokio::test]
async fn a_command_from_3dolphins_closes_the_ticket_on_either_endpoint() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(OWNER).await;
    let close = fixture("command-close");
    let other_ticket = with(&close, json!({"ticketNumber": "second"}));
    assert_eq!(app.post_as_dolphins("commands", &tenant, &close).await.status(), 200);
    assert_eq!(app.post_as_dolphins("outgoing", &tenant, &other_ticket).await.status(), 200, "routed by its event key");
    assert_eq!(app.count("SELECT count(*) FROM tickets WHERE status = 'closed'").await, 2);
    app.dispatch().await;
    let got = app.third_party.wait_for("/command", 2).await;
    assert_eq!(got[0].json(), close);
    let ticket = close["ticketNumber"].as_str().expect("ticket");
    assert_eq!(event_kinds(&app.pool, OWNER, ticket).await[..2], ["created", "closed"]);
    app.finish().await;
}

#[tokio::test]
async fn a_body_that_is_neither_a_reply_nor_a_command_is_refused() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(OWNER).await;
    let body = json!({"ticketNumber": "x", "owner": OWNER});
    let response = app.post_as_dolphins("outgoing", &tenant, &body).await;
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.expect("JSON");
    assert_eq!(error["error"]["code"], "invalid_payload");
    app.finish().await;
}

#[tokio::test]
async fn an_event_for_an_unconfigured_target_is_stored_and_audited_not_forwarded() {
    let app = TestApp::spawn().await;
    let tenant = app
        .create_tenant_with(json!({"owner": OWNER, "thirdParty": {"incomingUrl": app.third_party.url("/incoming")}}))
        .await;
    assert_eq!(app.post_as_dolphins("outgoing", &tenant, &fixture("outgoing-text")).await.status(), 200);
    assert_eq!(app.count("SELECT count(*) FROM messages").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM deliveries").await, 0);
    let detail: Value = sqlx::query_scalar("SELECT detail FROM ticket_events WHERE kind = 'not_forwarded'")
        .fetch_one(&app.pool)
        .await
        .expect("audited");
    assert_eq!(detail["target"], "third_party_outgoing");
    app.finish().await;
}

#[tokio::test]
async fn an_echo_of_a_bridge_delivery_is_answered_with_the_original_id_and_not_forwarded() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(OWNER).await;
    assert_eq!(app.post_as_dolphins("incoming", &tenant, &fixture("incoming-text")).await.status(), 200);
    let reply = fixture("outgoing-text");
    let original: Value = app.post_as_third_party("messages", &tenant, &reply).await.json().await.expect("JSON");
    app.dispatch().await;
    app.dolphins.wait_for("/send", 1).await;

    // 3Dolphins posts the agent reply it just received back to its sendMessage hook.
    let echo = app.post_as_dolphins("outgoing", &tenant, &reply).await;
    assert_eq!(echo.status(), 200);
    let echo: Value = echo.json().await.expect("JSON");
    assert_eq!(echo["messageId"], original["messageId"]);
    assert_eq!(app.count("SELECT count(*) FROM messages WHERE direction = 'out'").await, 1, "no new message");
    assert_eq!(app.count("SELECT messages_out::bigint FROM tickets").await, 1, "nothing counted");
    app.dispatch().await;
    assert!(app.third_party.received_at("/outgoing").is_empty(), "nothing forwarded");
    let ticket = reply["ticketNumber"].as_str().expect("ticket");
    assert!(event_kinds(&app.pool, OWNER, ticket).await.contains(&"echo".to_string()));

    // The same text again, now outside the echo window, is a real message.
    app.clock.advance(std::time::Duration::from_secs(301));
    assert_eq!(app.post_as_dolphins("outgoing", &tenant, &reply).await.status(), 200);
    assert_eq!(app.count("SELECT count(*) FROM messages WHERE direction = 'out'").await, 2);
    app.finish().await;
}

#[tokio::test]
async fn an_echo_of_a_bridge_close_is_recorded_not_forwarded() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(OWNER).await;
    assert_eq!(app.post_as_dolphins("incoming", &tenant, &fixture("incoming-text")).await.status(), 200);
    assert_eq!(app.post_as_third_party("commands", &tenant, &fixture("command-close")).await.status(), 200);
    assert_eq!(app.post_as_dolphins("commands", &tenant, &fixture("command-close")).await.status(), 200);
    assert_eq!(app.count("SELECT count(*) FROM deliveries WHERE target = 'third_party_command'").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM ticket_events WHERE kind = 'echo'").await, 1);
    app.finish().await;
}
