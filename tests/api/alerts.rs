//! Operational alerts (README *Operational alerts*): one signed alert per state change,
//! delivered through the outbox as target `alerts`, never behind the failing endpoint and
//! never about themselves.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;

/// A tenant like `create_tenant`'s, whose alerts go to `alerts` (`/alerts`), with `extra`
/// in its alerts section.
async fn tenant_with_alerts(app: &TestApp, alerts: &Receiver, extra: Value) -> Tenant {
    let mut section = json!({"url": alerts.url("/alerts")});
    if let (Some(s), Some(e)) = (section.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    app.create_tenant_with(json!({
        "owner": OWNER,
        "thirdParty": {"incomingUrl": app.third_party.url("/incoming"), "headers": {"X-Api-Key": "tp-header-value"}},
        "alerts": section
    }))
    .await
}

/// The alerts received, each checked for its Standard Webhooks signature and its shape.
fn received_alerts(alerts: &Receiver, tenant: &Tenant) -> Vec<Value> {
    alerts
        .received_at("/alerts")
        .iter()
        .map(|r| {
            dolphin_bridge::signature::verify(&tenant.signing_secret, &r.body, &r.headers)
                .expect("alerts are signed with the tenant's secret");
            let alert = r.json();
            let keys: Vec<&str> = alert.as_object().expect("object").keys().map(String::as_str).collect();
            assert_eq!(keys, vec!["type", "owner", "target", "at", "detail"], "{alert}");
            assert_eq!(alert["owner"], tenant.owner);
            assert!(chrono::DateTime::parse_from_rfc3339(alert["at"].as_str().unwrap_or("")).is_ok(), "{alert}");
            alert
        })
        .collect()
}

fn types(alerts: &[Value]) -> Vec<&str> {
    alerts.iter().filter_map(|a| a["type"].as_str()).collect()
}

async fn alert_deliveries(app: &TestApp, tenant: &Tenant) -> Vec<Value> {
    let page: Value = app
        .http
        .get(app.url("/api/v1/deliveries?target=alerts&status=pending,failed,delivered,dead,cancelled"))
        .bearer_auth(&tenant.read)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("JSON");
    page["data"].as_array().cloned().expect("data")
}

#[tokio::test]
async fn an_endpoint_that_fails_raises_one_failing_alert_and_one_recovered_alert_when_it_heals() {
    let app = TestApp::spawn_with(Options {
        env: vec![("BRIDGE_RETRY_SCHEDULE", "1s,1s,1s,1s,1s".into())],
        ..Options::default()
    })
    .await;
    let alerts = Receiver::start().await;
    let tenant = tenant_with_alerts(&app, &alerts, json!({})).await;
    for _ in 0..5 {
        app.third_party.reply_next(503, &[], "maintenance");
    }
    for i in 0..5 {
        let body = with(&fixture("incoming-text"), json!({"ticketNumber": format!("A{i}")}));
        assert_eq!(app.post_as_dolphins("incoming", &tenant, &body).await.status(), 200);
    }
    app.dispatch().await;

    // The breaker is open and its deliveries wait; the alert did not wait behind them.
    let got = received_alerts(&alerts, &tenant);
    assert_eq!(types(&got), vec!["endpoint.failing"], "{got:?}");
    let failing = &got[0];
    assert_eq!(failing["target"], "third_party_incoming");
    assert_eq!(failing["detail"]["consecutiveFailures"], 5);
    assert_eq!(failing["detail"]["lastHttpStatus"], 503);
    assert_eq!(failing["detail"]["queueDepth"], 5);
    assert_eq!(app.count("SELECT count(*) FROM deliveries WHERE status = 'delivered' AND target <> 'alerts'").await, 0);

    // More failures while open raise nothing more (one alert per state change).
    app.clock.advance(Duration::from_secs(31));
    app.third_party.reply_next(503, &[], "still down");
    app.dispatch().await;
    assert_eq!(
        types(&received_alerts(&alerts, &tenant)),
        vec!["endpoint.failing"],
        "a failed probe is the same episode"
    );

    // The next probe succeeds: the breaker closes, one recovered alert, in order.
    app.clock.advance(Duration::from_secs(31));
    app.dispatch().await;
    let got = received_alerts(&alerts, &tenant);
    assert_eq!(types(&got), vec!["endpoint.failing", "endpoint.recovered"], "{got:?}");
    assert_eq!(got[1]["target"], "third_party_incoming");
    assert!(got[1]["detail"]["openedAt"].is_string(), "{}", got[1]);
    let received = alerts.received_at("/alerts");
    let sequences: Vec<Option<&str>> = received.iter().map(|r| r.header("x-ticket-sequence")).collect();
    assert_eq!(sequences, vec![Some("1"), Some("2")]);
    assert_eq!(app.count("SELECT count(*) FROM deliveries WHERE status = 'delivered' AND target <> 'alerts'").await, 5);

    // They are deliveries like any other: listed with their attempt logs, audited, and the
    // webhook-id each carried is its delivery id.
    let listed = alert_deliveries(&app, &tenant).await;
    assert_eq!(listed.len(), 2);
    let ids: Vec<&str> = listed.iter().filter_map(|d| d["id"].as_str()).collect();
    for r in alerts.received_at("/alerts") {
        assert!(ids.contains(&r.header("webhook-id").unwrap_or("")), "webhook-id is a listed delivery");
        assert_eq!(r.header("x-api-key"), None, "the third party's headers are not sent to the alerts receiver");
    }
    assert!(listed.iter().all(|d| d["status"] == "delivered"));
    assert_eq!(
        app.count("SELECT count(*) FROM ticket_events WHERE kind = 'delivered' AND detail->>'target' = 'alerts'").await,
        2
    );
    app.finish().await;
}

#[tokio::test]
async fn a_dead_delivery_raises_one_alert_and_alerts_never_alert_about_themselves() {
    let app = TestApp::spawn().await;
    let alerts = Receiver::start().await;
    let tenant = tenant_with_alerts(&app, &alerts, json!({})).await;
    app.third_party.reply_next(400, &[], r#"{"error":"unknown channel"}"#);
    // The alerts receiver refuses the alert too: it goes dead, and raises nothing.
    alerts.reply_next(400, &[], "no");
    assert_eq!(app.post_as_dolphins("incoming", &tenant, &fixture("incoming-text")).await.status(), 200);
    app.dispatch().await;

    let got = received_alerts(&alerts, &tenant);
    assert_eq!(types(&got), vec!["delivery.dead"]);
    let dead: (uuid::Uuid, String) = sqlx::query_as(
        "SELECT id, ticket_number FROM deliveries WHERE target = 'third_party_incoming' AND status = 'dead'",
    )
    .fetch_one(&app.pool)
    .await
    .expect("the dead delivery");
    let detail = &got[0]["detail"];
    assert_eq!(detail["deliveryId"], dead.0.to_string());
    assert_eq!(detail["ticketNumber"], dead.1);
    assert_eq!(detail["lastHttpStatus"], 400);
    assert_eq!(detail["attempts"], 1);
    assert_eq!(detail["lastError"], "HTTP 400");
    assert_eq!(got[0]["target"], "third_party_incoming");

    let listed = alert_deliveries(&app, &tenant).await;
    assert_eq!(listed.len(), 1, "the dead alert raised no alert about itself: {listed:?}");
    assert_eq!(listed[0]["status"], "dead");
    app.finish().await;
}

#[tokio::test]
async fn a_stale_backlog_raises_one_alert_per_episode_and_tenants_without_a_url_get_none() {
    let app = TestApp::spawn_stepped().await;
    let alerts = Receiver::start().await;
    let tenant = tenant_with_alerts(&app, &alerts, json!({"backlogSeconds": 60})).await;
    let quiet = app.create_tenant("no-alerts").await;
    for t in [&tenant, &quiet] {
        let paused = app
            .http
            .post(app.url("/api/v1/endpoints/third_party_incoming/pause"))
            .bearer_auth(&t.third_party)
            .send()
            .await
            .expect("pause");
        assert!(paused.status().is_success());
        let body = with(&fixture("incoming-text"), json!({"owner": t.owner}));
        assert_eq!(app.post_as_dolphins("incoming", t, &body).await.status(), 200);
    }
    let check = |app: &TestApp| {
        let (pool, now) = (app.pool.clone(), app.clock_now());
        async move { dolphin_bridge::alert_task::run_once(&pool, now).await.expect("backlog check") }
    };

    assert_eq!(check(&app).await.raised, 0, "not stale yet");
    app.clock.advance(Duration::from_secs(61));
    assert_eq!(check(&app).await.raised, 1, "stale now, and only the tenant with an alerts URL");
    assert_eq!(check(&app).await.raised, 0, "once per episode");
    app.dispatch().await;
    let got = received_alerts(&alerts, &tenant);
    assert_eq!(types(&got), vec!["backlog.stale"]);
    assert_eq!(got[0]["target"], "third_party_incoming");
    assert_eq!(got[0]["detail"]["backlogSeconds"], 60);
    assert_eq!(got[0]["detail"]["queueDepth"], 1);
    assert!(got[0]["detail"]["ageSeconds"].as_i64().unwrap_or(0) >= 60, "{}", got[0]);

    // Resumed and drained: the episode ends; a new stale backlog is a new episode.
    let resumed = app
        .http
        .post(app.url("/api/v1/endpoints/third_party_incoming/resume"))
        .bearer_auth(&tenant.third_party)
        .send()
        .await
        .expect("resume");
    assert!(resumed.status().is_success());
    app.dispatch().await;
    assert_eq!(check(&app).await.ended, 1);
    let again = with(&fixture("incoming-image"), json!({"ticketNumber": "another-ticket"}));
    app.third_party.reply_next(500, &[], "down");
    assert_eq!(app.post_as_dolphins("incoming", &tenant, &again).await.status(), 200);
    app.dispatch().await;
    app.clock.advance(Duration::from_secs(3600));
    app.third_party.reply_next(500, &[], "down");
    assert_eq!(check(&app).await.raised, 1, "a new episode");
    assert_eq!(app.count("SELECT count(*) FROM deliveries WHERE owner = 'no-alerts' AND target = 'alerts'").await, 0);
    app.finish().await;
}

#[tokio::test]
async fn alert_settings_are_checked_like_any_endpoint_and_merge_patched() {
    let app = TestApp::spawn_stepped().await;
    let alerts = Receiver::start().await;
    let tenant = tenant_with_alerts(&app, &alerts, json!({})).await;
    let patch = |body: Value| {
        let request = app
            .http
            .patch(app.url(&format!("/admin/v1/tenants/{}", tenant.owner)))
            .bearer_auth(ADMIN_TOKEN)
            .header("content-type", "application/merge-patch+json")
            .body(body.to_string());
        async move {
            let response = request.send().await.expect("patch");
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let fields = |body: &Value| -> Vec<String> {
        body["error"]["fields"]
            .as_array()
            .map_or(vec![], |f| f.iter().filter_map(|p| p["field"].as_str().map(str::to_string)).collect())
    };
    for (bad, field) in [
        (json!({"url": "ftp://alerts.example/x"}), "alerts.url"),
        (json!({"url": "http://169.254.169.254/latest/meta-data"}), "alerts.url"),
        (json!({"backlogSeconds": 5}), "alerts.backlogSeconds"),
        (json!({"unknown": true}), "alerts.unknown"),
    ] {
        let (status, body) = patch(json!({"alerts": bad})).await;
        assert_eq!((status, fields(&body)), (400, vec![field.to_string()]), "{bad}: {body}");
    }
    let (status, body) = patch(json!({"alerts": {"backlogSeconds": 120}})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["alerts"], json!({"url": alerts.url("/alerts"), "backlogSeconds": 120}), "the URL is kept");
    let (status, body) = patch(json!({"alerts": null})).await;
    assert_eq!((status, body.get("alerts")), (200, None), "removed: no alerts");
    app.finish().await;
}
