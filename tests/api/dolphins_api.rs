//! The 3Dolphins API client as the API uses it (README *HTTP surface*; *Connecting the peers*, 3Dolphins): merged conversation
//! history, cached contacts, erasure — against the simulator and scripted servers.

use std::time::Duration;

use dolphin_bridge::sim::dolphins::{self, DolphinsSim};
use serde_json::{json, Value};

use crate::helpers::*;

async fn get_json(app: &TestApp, key: &str, path: &str) -> (u16, Value) {
    let response = app.http.get(app.url(path)).bearer_auth(key).send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A tenant whose 3Dolphins API is `api_base_url`.
async fn tenant_with_api(app: &TestApp, api_base_url: &str) -> Tenant {
    app.create_tenant_with(json!({
        "owner": OWNER,
        "thirdParty": {"incomingUrl": app.third_party.url("/incoming")},
        "dolphins": {"apiBaseUrl": api_base_url, "username": "integration", "password": "pw"}
    }))
    .await
}

const JSON: [(&str, &str); 1] = [("content-type", "application/json")];

#[tokio::test]
async fn merged_history_adds_what_the_bridge_missed_once_and_in_time_order() {
    let app = TestApp::spawn().await;
    let tenant = tenant_with_api(&app, &app.dolphins.url("/dolphin/apiv1")).await;
    let ticket = fixture("incoming-text")["ticketNumber"].as_str().expect("ticket").to_string();
    assert_eq!(app.post_as_dolphins("incoming", &tenant, &fixture("incoming-text")).await.status(), 200);
    let now = chrono::Utc::now().timestamp_millis();
    let page1 = json!({"status": "success", "hasMore": true, "nextIndex": 2, "data": [
        {"ticketNumber": ticket, "answer": false, "cleanedMessage": "Halo, pesanan saya belum sampai", "createdDate": now - 1000},
        {"ticketNumber": ticket, "answer": true, "cleanedMessage": "Selamat datang (bot)", "createdDate": now - 60_000, "extra": 1}
    ]});
    let page2 = json!({"status": "success", "hasMore": false, "data": [
        {"ticketNumber": ticket, "answer": true, "message": "Agent on 3Dolphins", "createdDate": now + 500}
    ]});
    let auth = json!({"token": "t1", "expireAt": "2099-01-01T00:00:00.000+07:00[Asia/Jakarta]"}).to_string();
    app.dolphins.reply_next(200, &JSON, &auth);
    for _ in 0..2 {
        app.dolphins.reply_next(200, &JSON, &page1.to_string());
        app.dolphins.reply_next(200, &JSON, &page2.to_string());
    }
    let (status, merged) =
        get_json(&app, &tenant.read, &format!("/api/v1/tickets/{ticket}/messages?source=merged")).await;
    assert_eq!(status, 200);
    assert_eq!(merged["history"], json!({"merged": true, "added": 2}));
    let shown: Vec<(String, String)> = merged["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|m| (m["source"].as_str().unwrap_or("").into(), m["message"].as_str().unwrap_or("").into()))
        .collect();
    assert_eq!(
        shown,
        vec![
            ("history".into(), "Selamat datang (bot)".into()),
            ("3dolphins".into(), "Halo, pesanan saya belum sampai".into()),
            ("history".into(), "Agent on 3Dolphins".into()),
        ],
        "merged in time order, the relayed message not duplicated"
    );
    let requests: Vec<String> = app.dolphins.received().iter().map(|r| r.path.clone()).collect();
    assert_eq!(requests[0], "/dolphin/apiv1/graph/auth");
    let first_page = &app.dolphins.received()[1];
    assert_eq!(first_page.json()["ticketNumber"], ticket.as_str());
    assert_eq!(first_page.header("authorization"), Some("Bearer t1"));

    let (_, again) = get_json(&app, &tenant.read, &format!("/api/v1/tickets/{ticket}/messages?source=merged")).await;
    assert_eq!(again["history"], json!({"merged": true, "added": 0}), "merging twice stores nothing new");
    let (_, summary) = get_json(&app, &tenant.read, "/api/v1/reports/summary").await;
    assert_eq!(
        (summary["messagesIn"].as_i64(), summary["messagesOut"].as_i64()),
        (Some(1), Some(0)),
        "history never counts"
    );
    app.finish().await;
}

#[tokio::test]
async fn merged_history_degrades_to_the_local_conversation_when_3dolphins_is_down_or_odd() {
    let app = TestApp::spawn().await;
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port");
    let tenant = tenant_with_api(&app, &format!("http://{closed_port}/dolphin/apiv1")).await;
    let ticket = fixture("incoming-text")["ticketNumber"].as_str().expect("ticket").to_string();
    assert_eq!(app.post_as_dolphins("incoming", &tenant, &fixture("incoming-text")).await.status(), 200);
    let (status, body) =
        get_json(&app, &tenant.read, &format!("/api/v1/tickets/{ticket}/messages?source=merged")).await;
    assert_eq!(status, 200);
    assert_eq!(body["history"]["merged"], false);
    assert!(body["history"]["error"].as_str().is_some_and(|e| e.contains("token")), "{body}");
    assert_eq!(body["data"].as_array().map(Vec::len), Some(1));

    // A server that answers garbage: a clear error, not a panic or a 500.
    let app2 = TestApp::spawn().await;
    let tenant2 = tenant_with_api(&app2, &app2.dolphins.url("/dolphin/apiv1")).await;
    assert_eq!(app2.post_as_dolphins("incoming", &tenant2, &fixture("incoming-text")).await.status(), 200);
    app2.dolphins.reply_next(401, &[], "no");
    let (_, body) = get_json(&app2, &tenant2.read, &format!("/api/v1/tickets/{ticket}/messages?source=merged")).await;
    assert!(body["history"]["error"].as_str().is_some_and(|e| e.contains("401")), "{body}");
    app2.dolphins.reply_next(200, &JSON, r#"{"token":"t","expireAt":"2099-01-01T00:00:00Z"}"#);
    app2.dolphins.reply_next(200, &JSON, "{not json");
    let (status, body) =
        get_json(&app2, &tenant2.read, &format!("/api/v1/tickets/{ticket}/messages?source=merged")).await;
    assert_eq!(status, 200);
    assert!(body["history"]["error"].as_str().is_some_and(|e| e.contains("cannot read")), "{body}");
    app.finish().await;
    app2.finish().await;
}

#[tokio::test]
async fn a_401_on_a_cached_token_fetches_a_new_one_and_retries_once() {
    let app = TestApp::spawn().await;
    let tenant = tenant_with_api(&app, &app.dolphins.url("/dolphin/apiv1")).await;
    let ticket = fixture("incoming-text")["ticketNumber"].as_str().expect("ticket").to_string();
    assert_eq!(app.post_as_dolphins("incoming", &tenant, &fixture("incoming-text")).await.status(), 200);
    let token = |t: &str| json!({"token": t, "expireAt": "2099-01-01T00:00:00Z"}).to_string();
    let empty = r#"{"status":"success","data":[]}"#;
    app.dolphins.reply_next(200, &JSON, &token("old"));
    app.dolphins.reply_next(200, &JSON, empty);
    app.dolphins.reply_next(401, &[], "expired");
    app.dolphins.reply_next(200, &JSON, &token("new"));
    app.dolphins.reply_next(200, &JSON, empty);
    for _ in 0..2 {
        let (_, body) = get_json(&app, &tenant.read, &format!("/api/v1/tickets/{ticket}/messages?source=merged")).await;
        assert_eq!(body["history"]["merged"], true, "{body}");
    }
    let auths: Vec<Option<String>> =
        app.dolphins.received().iter().map(|r| r.header("authorization").map(str::to_string)).collect();
    assert_eq!(
        auths,
        vec![None, Some("Bearer old".into()), Some("Bearer old".into()), None, Some("Bearer new".into())]
    );
    app.finish().await;
}

#[tokio::test]
async fn contacts_are_cached_served_stale_when_3dolphins_is_down_and_never_enumerated() {
    let app = TestApp::spawn().await;
    let sim = DolphinsSim::start(3).await.expect("simulator");
    let tenant = tenant_with_api(&app, &sim.api_base_url()).await;
    let access =
        dolphins::BridgeAccess { base_url: app.url(""), inbound_token: tenant.inbound.clone(), owner: OWNER.into() };
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let (event, status) = sim.emit_incoming(&access).await.expect("bridge");
        assert_eq!(status, 200);
        let contact = event["contactId"].as_str().unwrap_or_default().to_string();
        if !seen.contains(&contact) {
            seen.push(contact);
        }
    }
    let (status, first) = get_json(&app, &tenant.read, &format!("/api/v1/contacts/{}", seen[0])).await;
    assert_eq!(status, 200);
    assert_eq!(first["data"]["id"], seen[0].as_str());
    assert_eq!((first["stale"].as_bool(), first["ageSeconds"].as_i64()), (Some(false), Some(0)));
    let (_, cached) = get_json(&app, &tenant.read, &format!("/api/v1/contacts/{}", seen[0])).await;
    assert_eq!(cached["fetchedAt"], first["fetchedAt"], "served from the cache");

    sim.set_api_down(true);
    app.clock.advance(Duration::from_secs(16 * 60));
    let (status, stale) = get_json(&app, &tenant.read, &format!("/api/v1/contacts/{}", seen[0])).await;
    assert_eq!((status, stale["stale"].as_bool()), (200, Some(true)));
    assert!(stale["ageSeconds"].as_i64().is_some_and(|a| a >= 960));
    let (status, body) = get_json(&app, &tenant.read, &format!("/api/v1/contacts/{}", seen[1])).await;
    assert_eq!((status, body["error"]["code"].as_str()), (502, Some("upstream_unavailable")));
    let (status, _) = get_json(&app, &tenant.read, "/api/v1/contacts/someone-never-seen").await;
    assert_eq!(status, 404, "no enumeration of 3Dolphins through the bridge");

    let other = app.create_tenant("no-api-tenant").await;
    let same_contact = with(&fixture("incoming-text"), json!({"owner": other.owner, "contactId": seen[0]}));
    assert_eq!(app.post_as_dolphins("incoming", &other, &same_contact).await.status(), 200);
    let (status, body) = get_json(&app, &other.read, &format!("/api/v1/contacts/{}", seen[0])).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("not_configured")));
    app.finish().await;
}

#[tokio::test]
async fn erasing_a_contact_keeps_counts_and_audit_but_not_the_texts() {
    let app = TestApp::spawn_stepped().await;
    let tenant = app.create_tenant(OWNER).await;
    assert_eq!(app.post_as_dolphins("incoming", &tenant, &fixture("incoming-text")).await.status(), 200);
    assert_eq!(app.post_as_dolphins("incoming", &tenant, &fixture("incoming-image")).await.status(), 200);
    let contact = fixture("incoming-text")["contactId"].as_str().expect("contact").to_string();
    let response = app
        .http
        .delete(app.url(&format!("/api/v1/contacts/{contact}/data")))
        .bearer_auth(&tenant.third_party)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.expect("JSON")["messagesPurged"], 2);
    assert_eq!(app.count("SELECT count(*) FROM messages WHERE message IS NOT NULL OR raw <> '{}'::jsonb").await, 0);
    assert_eq!(app.count("SELECT messages_in::bigint FROM tickets").await, 2, "counts kept");
    assert_eq!(app.count("SELECT count(*) FROM ticket_events WHERE kind = 'purged'").await, 1);
    assert_eq!(
        app.count("SELECT count(*) FROM deliveries WHERE status = 'cancelled'").await,
        2,
        "no erased text is sent later"
    );
    app.finish().await;
}

#[tokio::test]
async fn an_expired_token_is_fetched_again_before_use() {
    let app = TestApp::spawn().await;
    let tenant = tenant_with_api(&app, &app.dolphins.url("/dolphin/apiv1")).await;
    let ticket = fixture("incoming-text")["ticketNumber"].as_str().expect("ticket").to_string();
    assert_eq!(app.post_as_dolphins("incoming", &tenant, &fixture("incoming-text")).await.status(), 200);
    // Expires within the refresh margin: never reused.
    let soon = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc3339();
    let empty = r#"{"status":"success","data":[]}"#;
    for token in ["first", "second"] {
        app.dolphins.reply_next(
            200,
            &JSON,
            &json!({"token": token, "expireAt": format!("{soon}[Asia/Jakarta]")}).to_string(),
        );
        app.dolphins.reply_next(200, &JSON, empty);
    }
    for _ in 0..2 {
        let (_, body) = get_json(&app, &tenant.read, &format!("/api/v1/tickets/{ticket}/messages?source=merged")).await;
        assert_eq!(body["history"]["merged"], true, "{body}");
    }
    let paths: Vec<String> = app.dolphins.received().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths.iter().filter(|p| p.ends_with("/graph/auth")).count(), 2, "{paths:?}");
    app.finish().await;
}
