//! Incoming Events from 3Dolphins (README *Connecting the peers*, 3Dolphins): lenient — accepted, stored, forwarded
//! and flagged — and refused only when they cannot be attributed.

use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn every_incoming_fixture_reaches_the_third_party_as_the_same_json_signed() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(OWNER).await;
    let names =
        ["incoming-text", "incoming-image", "incoming-location", "incoming-minimal-keys", "incoming-telegram-group"];
    for name in names {
        let response = app.post_as_dolphins("incoming", &tenant, &fixture(name)).await;
        assert_eq!(response.status(), 200, "{name}");
        let reply: Value = response.json().await.expect("JSON");
        assert_eq!(reply["status"], "success");
        assert!(reply["messageId"].as_str().is_some_and(|id| uuid::Uuid::parse_str(id).is_ok()));
    }
    app.dispatch().await;
    let mut got = app.third_party.wait_for("/incoming", names.len()).await;
    // Tickets are independent: only one ticket's deliveries are ordered. The Telegram
    // fixture is its own ticket, so it is compared apart.
    let telegram = got.iter().position(|r| r.json()["channel"] == "telegrambot").expect("telegram event arrived");
    let telegram = got.remove(telegram);
    got.push(telegram);
    for (name, request) in names.iter().zip(&got) {
        assert_eq!(request.json(), fixture(name), "{name} is forwarded unchanged");
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert!(request.header("user-agent").is_some_and(|ua| ua.starts_with("dolphin-bridge/")));
        assert_eq!(request.header("x-api-key"), Some("tp-header-value"), "tenant headers are added");
        dolphin_bridge::signature::verify(&tenant.signing_secret, &request.body, &request.headers)
            .expect("the Standard Webhooks signature verifies");
    }
    // Two tickets: the Telegram one is its own sequence.
    let sequences: Vec<&str> = got.iter().map(|r| r.header("x-ticket-sequence").unwrap_or("")).collect();
    assert_eq!(sequences, vec!["1", "2", "3", "4", "1"]);
    app.finish().await;
}

#[tokio::test]
async fn a_sticker_is_forwarded_as_the_text_sticker() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(OWNER).await;
    let sticker = fixture("incoming-sticker");
    assert_eq!(app.post_as_dolphins("incoming", &tenant, &sticker).await.status(), 200);
    app.dispatch().await;
    let got = app.third_party.wait_for("/incoming", 1).await;
    let expected = with(&sticker, json!({"messageType": "text", "message": "Sticker"}));
    assert_eq!(got[0].json(), expected);
    let stored: (String, String) =
        sqlx::query_as("SELECT message_type, message FROM messages").fetch_one(&app.pool).await.expect("one message");
    assert_eq!(stored, ("text".to_string(), "Sticker".to_string()));
    app.finish().await;
}

#[tokio::test]
async fn defective_events_are_accepted_stored_forwarded_and_flagged() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(OWNER).await;
    let base = fixture("incoming-text");
    let fields =
        ["channel", "accountId", "contactId", "messageType", "message", "mediaLink", "customerName", "createdDate"];
    let mut sent = Vec::new();
    for (i, field) in fields.iter().enumerate() {
        for (j, defect) in ["missing", "null", "number"].iter().enumerate() {
            let ticket = format!("T-{i}-{j}");
            let body = match *defect {
                "missing" => without(&with(&base, json!({"ticketNumber": ticket})), field),
                "null" => with(&base, json!({"ticketNumber": ticket, *field: null})),
                _ => with(&base, json!({"ticketNumber": ticket, *field: 12345})),
            };
            let response = app.post_as_dolphins("incoming", &tenant, &body).await;
            assert_eq!(response.status(), 200, "{field} {defect} must be accepted");
            let warnings: Value = sqlx::query_scalar("SELECT warnings FROM messages WHERE ticket_number = $1")
                .bind(&ticket)
                .fetch_one(&app.pool)
                .await
                .expect("stored");
            assert!(
                warnings.as_array().expect("array").iter().any(|w| w["field"] == *field),
                "{field} {defect}: warnings {warnings}"
            );
            let detail: Value =
                sqlx::query_scalar("SELECT detail FROM ticket_events WHERE ticket_number = $1 AND kind = 'message_in'")
                    .bind(&ticket)
                    .fetch_one(&app.pool)
                    .await
                    .expect("audited");
            assert_eq!(detail["warnings"], warnings, "the lifecycle event carries the warnings");
            sent.push(body);
        }
    }
    app.dispatch().await;
    let got = app.third_party.wait_for("/incoming", sent.len()).await;
    let mut forwarded: Vec<Value> = got.iter().map(|r| r.json()).collect();
    let key = |v: &Value| v["ticketNumber"].as_str().unwrap_or_default().to_string();
    forwarded.sort_by_key(key);
    // The bridge lower-cases channel and messageType only when they are strings.
    sent.sort_by_key(key);
    assert_eq!(forwarded, sent, "every defective event is forwarded as received");
    app.finish().await;
}

#[tokio::test]
async fn only_an_unattributable_event_is_refused_and_nothing_is_stored() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(OWNER).await;
    let base = fixture("incoming-text");
    let cases = [
        (without(&base, "ticketNumber"), "invalid_payload", Some("ticketNumber")),
        (with(&base, json!({"ticketNumber": ""})), "invalid_payload", Some("ticketNumber")),
        (with(&base, json!({"ticketNumber": 42})), "invalid_payload", Some("ticketNumber")),
        (without(&base, "owner"), "invalid_payload", Some("owner")),
        (with(&base, json!({"owner": ""})), "invalid_payload", Some("owner")),
        (json!([base.clone()]), "invalid_json", None),
        (json!("just text"), "invalid_json", None),
    ];
    for (body, code, field) in cases {
        let response = app.post_as_dolphins("incoming", &tenant, &body).await;
        assert_eq!(response.status(), 400, "{body}");
        let reply: Value = response.json().await.expect("JSON");
        assert_eq!(reply["status"], "error");
        assert_eq!(reply["error"]["code"], code);
        if let Some(field) = field {
            assert_eq!(reply["error"]["fields"][0]["field"], field);
        }
    }
    let broken = app
        .http
        .post(app.url(&format!("/webhooks/3dolphins/incoming?token={}", tenant.inbound)))
        .body("{\"ticketNumber\": ")
        .send()
        .await
        .expect("request");
    assert_eq!(broken.status(), 400);
    assert_eq!(app.count("SELECT count(*) FROM messages").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM tickets").await, 0);
    app.finish().await;
}

#[tokio::test]
async fn content_type_is_not_checked_on_the_3dolphins_side() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(OWNER).await;
    let response = app
        .http
        .post(app.url(&format!("/webhooks/3dolphins/incoming?token={}", tenant.inbound)))
        .header("content-type", "text/plain")
        .body(fixture("incoming-text").to_string())
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    app.finish().await;
}

#[tokio::test]
async fn created_date_is_read_with_optional_seconds_and_fraction_in_the_tenant_timezone() {
    let app = TestApp::spawn().await;
    let jakarta = app.create_tenant(OWNER).await;
    let mut utc_tenant = json!({"owner": "utc-tenant", "timezone": "UTC",
                                "thirdParty": {"incomingUrl": app.third_party.url("/incoming")}});
    let utc = app.create_tenant_with(utc_tenant.take()).await;
    let cases = [
        (&jakarta, "J1", "2026-11-24T09:15", "2026-11-24T02:15:00+00:00"),
        (&jakarta, "J2", "2026-11-24T09:15:07", "2026-11-24T02:15:07+00:00"),
        (&jakarta, "J3", "2026-11-24T09:15:07.250", "2026-11-24T02:15:07.250+00:00"),
        (&utc, "U1", "2026-11-24T09:15:07.250", "2026-11-24T09:15:07.250+00:00"),
        (&utc, "U2", "2026-11-24T09:15:07+07:00", "2026-11-24T02:15:07+00:00"),
    ];
    for (tenant, ticket, raw, expected) in cases {
        let body =
            with(&fixture("incoming-text"), json!({"ticketNumber": ticket, "createdDate": raw, "owner": tenant.owner}));
        assert_eq!(app.post_as_dolphins("incoming", tenant, &body).await.status(), 200);
        let (created, opened): (Option<chrono::DateTime<chrono::Utc>>, chrono::DateTime<chrono::Utc>) =
            sqlx::query_as("SELECT created_date, opened_at FROM tickets WHERE ticket_number = $1")
                .bind(ticket)
                .fetch_one(&app.pool)
                .await
                .expect("ticket");
        let expected = chrono::DateTime::parse_from_rfc3339(expected).expect("literal");
        assert_eq!(created, Some(expected.into()), "{raw}");
        assert_eq!(opened, expected, "openedAt is createdDate when known");
    }
    app.finish().await;
}

#[tokio::test]
async fn a_new_message_reopens_a_closed_ticket() {
    let app = TestApp::spawn_stepped().await;
    let tenant = app.create_tenant(OWNER).await;
    let ticket = fixture("incoming-text")["ticketNumber"].as_str().expect("ticket").to_string();
    assert_eq!(app.post_as_dolphins("incoming", &tenant, &fixture("incoming-text")).await.status(), 200);
    assert_eq!(app.post_as_third_party("commands", &tenant, &fixture("command-close")).await.status(), 200);
    assert_eq!(app.post_as_dolphins("incoming", &tenant, &fixture("incoming-image")).await.status(), 200);
    let (status, reopens, closed_at): (String, i32, Option<chrono::DateTime<chrono::Utc>>) =
        sqlx::query_as("SELECT status, reopen_count, closed_at FROM tickets WHERE ticket_number = $1")
            .bind(&ticket)
            .fetch_one(&app.pool)
            .await
            .expect("ticket");
    assert_eq!((status.as_str(), reopens, closed_at), ("open", 1, None));
    assert_eq!(
        event_kinds(&app.pool, OWNER, &ticket).await,
        vec!["created", "message_in", "closed", "reopened", "message_in"]
    );
    app.finish().await;
}

/// Messages race a close and reopen on one ticket: whichever way each lands (the
/// one-statement path when the ticket is open, the transaction when it is closed), the
/// audit must read as a valid life, the counters must match it, and the outbox sequence
/// to the third party must be whole.
#[tokio::test]
async fn messages_racing_closes_on_one_ticket_keep_its_life_counters_and_sequence_whole() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(OWNER).await;
    let first = fixture("incoming-text");
    let ticket = first["ticketNumber"].as_str().expect("ticket").to_string();
    assert_eq!(app.post_as_dolphins("incoming", &tenant, &first).await.status(), 200);
    let close = fixture("command-close");
    // Each round starts on a closed ticket, then nine messages race one more close.
    for round in 0..4 {
        assert_eq!(app.post_as_third_party("commands", &tenant, &close).await.status(), 200);
        let posts = (0..10).map(|i| {
            let (app, tenant, close) = (&app, &tenant, &close);
            async move {
                if i == 5 {
                    app.post_as_third_party("commands", tenant, close).await.status()
                } else {
                    let body = with(&fixture("incoming-text"), json!({"message": format!("message {round}.{i}")}));
                    app.post_as_dolphins("incoming", tenant, &body).await.status()
                }
            }
        });
        let statuses = futures::future::join_all(posts).await;
        assert!(statuses.iter().all(|s| s.as_u16() == 200), "every event accepted: {statuses:?}");
    }

    let kinds = event_kinds(&app.pool, OWNER, &ticket).await;
    let mut open = false;
    let (mut messages, mut reopens) = (0, 0);
    for kind in &kinds {
        match kind.as_str() {
            "created" => open = true,
            "closed" => {
                assert!(open, "closed while closed in {kinds:?}");
                open = false;
            }
            "reopened" => {
                assert!(!open, "reopened while open in {kinds:?}");
                open = true;
                reopens += 1;
            }
            "message_in" => {
                assert!(open, "a message on a closed ticket without a reopen in {kinds:?}");
                messages += 1;
            }
            _ => {}
        }
    }
    assert_eq!(messages, 37, "the first message and 4 rounds of 9");
    let (status, messages_in, reopen_count, seq): (String, i32, i32, i32) = sqlx::query_as(
        "SELECT status, messages_in, reopen_count, seq_third_party FROM tickets WHERE ticket_number = $1",
    )
    .bind(&ticket)
    .fetch_one(&app.pool)
    .await
    .expect("ticket");
    assert_eq!((status.as_str(), messages_in, reopen_count), (if open { "open" } else { "closed" }, 37, reopens));
    let sequences: Vec<i32> = sqlx::query_scalar(
        "SELECT sequence FROM deliveries WHERE ticket_number = $1 AND peer = 'third_party' ORDER BY sequence",
    )
    .bind(&ticket)
    .fetch_all(&app.pool)
    .await
    .expect("sequences");
    assert_eq!(sequences, (1..=seq).collect::<Vec<_>>(), "one delivery per handed-out sequence, no gap");
    assert_eq!(seq, 37, "every message forwarded");
    app.finish().await;
}
