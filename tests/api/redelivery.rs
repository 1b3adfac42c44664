//! The redelivery API (README *HTTP surface*): list, inspect, retry, cancel, replay — per tenant.

use serde_json::{json, Value};

use crate::helpers::*;

async fn api(app: &TestApp, method: reqwest::Method, key: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = app.http.request(method, app.url(path)).bearer_auth(key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn first_delivery(app: &TestApp, tenant: &Tenant) -> Value {
    let (status, list) = api(app, reqwest::Method::GET, &tenant.read, "/api/v1/deliveries", None).await;
    assert_eq!(status, 200);
    list["data"].as_array().and_then(|d| d.last()).cloned().expect("one delivery")
}

#[tokio::test]
async fn a_dead_delivery_retried_by_hand_succeeds_with_its_original_webhook_id() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(OWNER).await;
    app.third_party.reply_next(400, &[], "we were misconfigured");
    assert_eq!(app.post_as_dolphins("incoming", &tenant, &fixture("incoming-text")).await.status(), 200);
    app.dispatch().await;
    let delivery = first_delivery(&app, &tenant).await;
    assert_eq!(delivery["status"], "dead");
    let id = delivery["id"].as_str().expect("id").to_string();

    let (status, body) =
        api(&app, reqwest::Method::POST, &tenant.read, &format!("/api/v1/deliveries/{id}/retry"), None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("forbidden")), "a read key cannot retry");
    let (status, body) =
        api(&app, reqwest::Method::POST, &tenant.third_party, &format!("/api/v1/deliveries/{id}/retry"), None).await;
    assert_eq!((status, body), (202, json!({"id": id, "status": "pending"})));
    app.dispatch().await;

    let (_, one) = api(&app, reqwest::Method::GET, &tenant.read, &format!("/api/v1/deliveries/{id}"), None).await;
    assert_eq!(one["status"], "delivered");
    let log = one["attemptLog"].as_array().expect("attempt log");
    assert_eq!(log.iter().map(|a| a["httpStatus"].clone()).collect::<Vec<_>>(), vec![json!(400), json!(200)]);
    assert_eq!(log[0]["responseHead"], "we were misconfigured");
    let got = app.third_party.received_at("/incoming");
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].header("webhook-id"), Some(id.as_str()));
    assert_eq!(got[1].header("webhook-id"), Some(id.as_str()), "webhook-id is stable across a manual retry");
    let ticket = fixture("incoming-text")["ticketNumber"].as_str().expect("ticket").to_string();
    assert!(event_kinds(&app.pool, OWNER, &ticket).await.ends_with(&[
        "dead".into(),
        "retried".into(),
        "delivered".into()
    ]));
    let (status, _) =
        api(&app, reqwest::Method::POST, &tenant.third_party, &format!("/api/v1/deliveries/{id}/cancel"), None).await;
    assert_eq!(status, 409, "a delivered delivery cannot be cancelled");
    app.finish().await;
}

#[tokio::test]
async fn every_attempt_shows_the_request_it_sent_with_secrets_masked_and_a_delivery_is_found_by_its_ids() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(OWNER).await;
    app.third_party.reply_next(500, &[], "down for a moment");
    assert_eq!(app.post_as_dolphins("incoming", &tenant, &fixture("incoming-text")).await.status(), 200);
    app.dispatch().await;
    let failed = first_delivery(&app, &tenant).await;
    assert_eq!(failed["status"], "failed");
    let id = failed["id"].as_str().expect("id").to_string();
    let (status, _) =
        api(&app, reqwest::Method::POST, &tenant.third_party, &format!("/api/v1/deliveries/{id}/retry"), None).await;
    assert_eq!(status, 202);
    app.dispatch().await;

    // Each attempt (the failure recorded by its worker, the success by the batch recorder)
    // shows exactly the headers the receiver got, the configured secret header masked.
    let (_, one) = api(&app, reqwest::Method::GET, &tenant.read, &format!("/api/v1/deliveries/{id}"), None).await;
    let log = one["attemptLog"].as_array().expect("attempt log");
    let got = app.third_party.received_at("/incoming");
    assert_eq!((log.len(), got.len()), (2, 2), "{one}");
    for (attempt, received) in log.iter().zip(&got) {
        let request = &attempt["request"];
        assert_eq!(request["url"], app.third_party.url("/incoming"));
        let headers = request["headers"].as_object().expect("headers");
        assert_eq!(headers.get("webhook-id").and_then(Value::as_str), Some(id.as_str()));
        assert_eq!(headers.get("x-api-key").and_then(Value::as_str), Some("***"));
        assert_eq!(received.header("x-api-key"), Some("tp-header-value"));
        for (name, value) in headers.iter().filter(|(name, _)| *name != "x-api-key") {
            assert_eq!(received.header(name), value.as_str(), "header {name} as sent");
        }
        for name in ["content-type", "user-agent", "x-ticket-sequence", "webhook-timestamp", "webhook-signature"] {
            assert!(headers.contains_key(name), "{name} is in the log: {request}");
        }
    }
    assert!(!one.to_string().contains("tp-header-value"), "the secret header's value is never shown: {one}");

    // Found by its id (the webhook-id the receiver logged) or its message's id, however old.
    let message_id = one["messageId"].as_str().expect("message id").to_string();
    app.clock.advance(std::time::Duration::from_secs(40 * 86_400));
    for query in [format!("id={id}"), format!("messageId={message_id}")] {
        let (status, page) =
            api(&app, reqwest::Method::GET, &tenant.read, &format!("/api/v1/deliveries?{query}"), None).await;
        let ids: Vec<&str> =
            page["data"].as_array().map_or(vec![], |d| d.iter().filter_map(|d| d["id"].as_str()).collect());
        assert_eq!((status, ids), (200, vec![id.as_str()]), "{query}");
    }
    let other = uuid::Uuid::new_v4();
    let (status, page) =
        api(&app, reqwest::Method::GET, &tenant.read, &format!("/api/v1/deliveries?id={other}"), None).await;
    assert_eq!((status, page["data"].as_array().map(Vec::len)), (200, Some(0)));
    let (status, page) = api(&app, reqwest::Method::GET, &tenant.read, "/api/v1/deliveries?messageId=nope", None).await;
    assert_eq!((status, page["error"]["fields"][0]["field"].as_str()), (400, Some("messageId")), "{page}");
    let stranger = app.create_tenant("someone-else").await;
    let (_, page) = api(&app, reqwest::Method::GET, &stranger.read, &format!("/api/v1/deliveries?id={id}"), None).await;
    assert_eq!(page["data"].as_array().map(Vec::len), Some(0), "another tenant finds nothing");
    app.finish().await;
}

#[tokio::test]
async fn cancelling_a_stuck_delivery_unblocks_its_ticket() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(OWNER).await;
    app.third_party.reply_next(500, &[], "broken");
    assert_eq!(app.post_as_dolphins("incoming", &tenant, &fixture("incoming-text")).await.status(), 200);
    assert_eq!(app.post_as_dolphins("incoming", &tenant, &fixture("incoming-image")).await.status(), 200);
    app.dispatch().await;
    assert_eq!(app.third_party.received_at("/incoming").len(), 1, "the second waits behind the first");
    let stuck = first_delivery(&app, &tenant).await;
    let id = stuck["id"].as_str().expect("id");
    let (status, body) =
        api(&app, reqwest::Method::POST, &tenant.third_party, &format!("/api/v1/deliveries/{id}/cancel"), None).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("cancelled")));
    app.dispatch().await;
    let got = app.third_party.received_at("/incoming");
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].json(), fixture("incoming-image"));
    assert_eq!(got[1].header("x-ticket-sequence"), Some("2"), "the gap stays visible");
    app.finish().await;
}

#[tokio::test]
async fn replay_resends_exactly_the_matching_deliveries_with_their_original_ids() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(OWNER).await;
    for _ in 0..3 {
        app.third_party.reply_next(410, &[], "gone");
    }
    for i in 0..4 {
        let body = with(&fixture("incoming-text"), json!({"ticketNumber": format!("R{i}")}));
        assert_eq!(app.post_as_dolphins("incoming", &tenant, &body).await.status(), 200);
        app.dispatch().await;
    }
    let dead_ids: Vec<String> = sqlx::query_scalar("SELECT id::text FROM deliveries WHERE status = 'dead' ORDER BY id")
        .fetch_all(&app.pool)
        .await
        .expect("ids");
    assert_eq!(dead_ids.len(), 3);
    let before = app.third_party.received_at("/incoming").len();
    let from = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let (status, body) = api(
        &app,
        reqwest::Method::POST,
        &tenant.third_party,
        "/api/v1/deliveries/replay",
        Some(json!({"target": "third_party_incoming", "from": from, "status": ["dead"]})),
    )
    .await;
    assert_eq!((status, body), (202, json!({"count": 3})));
    app.dispatch().await;
    let replayed: Vec<String> = app.third_party.received_at("/incoming")[before..]
        .iter()
        .map(|r| r.header("webhook-id").unwrap_or("").to_string())
        .collect();
    let mut replayed_sorted = replayed.clone();
    replayed_sorted.sort();
    assert_eq!(replayed_sorted, dead_ids, "exactly the dead ones, with their original webhook-id");
    let (status, body) = api(
        &app,
        reqwest::Method::POST,
        &tenant.third_party,
        "/api/v1/deliveries/replay",
        Some(json!({"status": ["exploded"], "to": "never"})),
    )
    .await;
    assert_eq!(status, 400);
    let fields: Vec<&str> =
        body["error"]["fields"].as_array().expect("fields").iter().filter_map(|f| f["field"].as_str()).collect();
    assert_eq!(fields, vec!["status", "from", "to"]);
    app.finish().await;
}

#[tokio::test]
async fn lists_page_by_cursor_and_refuse_bad_parameters() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(OWNER).await;
    for i in 0..5 {
        let body = with(&fixture("incoming-text"), json!({"ticketNumber": format!("P{i}")}));
        assert_eq!(app.post_as_dolphins("incoming", &tenant, &body).await.status(), 200);
    }
    let mut seen = Vec::new();
    let mut path = "/api/v1/deliveries?limit=2".to_string();
    loop {
        let (status, page) = api(&app, reqwest::Method::GET, &tenant.read, &path, None).await;
        assert_eq!(status, 200);
        for d in page["data"].as_array().expect("data") {
            seen.push(d["ticketNumber"].as_str().expect("ticket").to_string());
        }
        // A new row arriving while paging must not shift the pages.
        if seen.len() == 2 {
            let body = with(&fixture("incoming-text"), json!({"ticketNumber": "late"}));
            assert_eq!(app.post_as_dolphins("incoming", &tenant, &body).await.status(), 200);
        }
        match page["nextCursor"].as_str() {
            Some(c) => path = format!("/api/v1/deliveries?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, vec!["P4", "P3", "P2", "P1", "P0"], "newest first, nothing skipped or repeated");
    for bad in ["limit=0", "limit=10000", "status=lost", "target=moon", "from=yesterday", "cursor=abc", "tz=Mars/Base"]
    {
        let (status, body) =
            api(&app, reqwest::Method::GET, &tenant.read, &format!("/api/v1/deliveries?{bad}"), None).await;
        assert_eq!(status, 400, "{bad}");
        let name = bad.split('=').next().expect("name");
        assert_eq!(body["error"]["fields"][0]["field"], name, "{bad}");
    }
    app.finish().await;
}

#[tokio::test]
async fn another_tenants_deliveries_and_messages_are_not_found() {
    let app = TestApp::spawn().await;
    let ours = app.create_tenant(OWNER).await;
    let theirs = app.create_tenant("tenant-two").await;
    let reply: Value = app
        .post_as_dolphins("incoming", &theirs, &with(&fixture("incoming-text"), json!({"owner": theirs.owner})))
        .await
        .json()
        .await
        .expect("JSON");
    let message_id = reply["messageId"].as_str().expect("id").to_string();
    let (_, theirs_list) = api(&app, reqwest::Method::GET, &theirs.read, "/api/v1/deliveries", None).await;
    let delivery_id = theirs_list["data"][0]["id"].as_str().expect("id").to_string();
    for path in [
        format!("/api/v1/deliveries/{delivery_id}"),
        format!("/api/v1/messages/{message_id}"),
        format!("/api/v1/tickets/{}/deliveries", fixture("incoming-text")["ticketNumber"].as_str().unwrap_or("")),
    ] {
        let (status, body) = api(&app, reqwest::Method::GET, &ours.read, &path, None).await;
        assert_eq!(status, 404, "{path}");
        assert!(!body.to_string().contains("tenant-two"));
    }
    for action in ["retry", "cancel"] {
        let (status, _) = api(
            &app,
            reqwest::Method::POST,
            &ours.third_party,
            &format!("/api/v1/deliveries/{delivery_id}/{action}"),
            None,
        )
        .await;
        assert_eq!(status, 404, "{action}");
    }
    let (_, ours_list) = api(&app, reqwest::Method::GET, &ours.read, "/api/v1/deliveries", None).await;
    assert_eq!(ours_list["data"], json!([]));
    // The admin token reaches a tenant only by naming it.
    let admin = app.http.get(app.url("/api/v1/deliveries")).bearer_auth(ADMIN_TOKEN).send().await.expect("request");
    assert_eq!(admin.status(), 403);
    let admin = app
        .http
        .get(app.url(&format!("/api/v1/messages/{message_id}")))
        .bearer_auth(ADMIN_TOKEN)
        .header("x-bridge-owner", "tenant-two")
        .send()
        .await
        .expect("request");
    assert_eq!(admin.status(), 200);
    app.finish().await;
}

#[tokio::test]
async fn a_message_shows_whether_its_reply_reached_3dolphins() {
    let app = TestApp::spawn_stepped().await;
    let tenant = app.create_tenant(OWNER).await;
    assert_eq!(app.post_as_dolphins("incoming", &tenant, &fixture("incoming-text")).await.status(), 200);
    let reply: Value =
        app.post_as_third_party("messages", &tenant, &fixture("outgoing-text")).await.json().await.expect("JSON");
    let id = reply["messageId"].as_str().expect("id");
    let (_, before) =
        api(&app, reqwest::Method::GET, &tenant.third_party, &format!("/api/v1/messages/{id}"), None).await;
    assert_eq!(before["delivery"]["status"], "pending");
    assert_eq!(before["delivery"]["target"], "dolphins_message");
    app.dispatch().await;
    let (_, after) =
        api(&app, reqwest::Method::GET, &tenant.third_party, &format!("/api/v1/messages/{id}"), None).await;
    assert_eq!(after["delivery"]["status"], "delivered");
    assert_eq!(after["direction"], "out");
    app.finish().await;
}
