//! Request limits: oversized bodies get 413 in the error shape on every webhook.

use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn an_oversized_body_gets_413_and_nothing_is_stored() {
    let app =
        TestApp::spawn_with(Options { env: vec![("BRIDGE_MAX_BODY", "4KiB".into())], ..Options::default() }).await;
    let tenant = app.create_tenant(OWNER).await;
    let huge = with(&fixture("incoming-text"), json!({"message": "x".repeat(8 * 1024)}));
    for response in [
        app.post_as_dolphins("incoming", &tenant, &huge).await,
        app.post_as_third_party("messages", &tenant, &huge).await,
    ] {
        assert_eq!(response.status(), 413);
        let error: Value = response.json().await.expect("JSON");
        assert_eq!(error["error"]["code"], "payload_too_large");
    }
    assert_eq!(app.count("SELECT count(*) FROM messages").await, 0);
    let fits = with(&fixture("incoming-text"), json!({"message": "x".repeat(1024)}));
    assert_eq!(app.post_as_dolphins("incoming", &tenant, &fits).await.status(), 200);
    app.finish().await;
}

#[tokio::test]
async fn unknown_routes_answer_in_the_error_shape() {
    let app = TestApp::spawn().await;
    let response = app.http.get(app.url("/nowhere")).send().await.expect("request");
    assert_eq!(response.status(), 404);
    let error: Value = response.json().await.expect("JSON");
    assert_eq!(error["status"], "error");
    assert_eq!(error["error"]["code"], "not_found");
    app.finish().await;
}

#[tokio::test]
async fn health_and_readiness_report_the_process_and_its_dependencies() {
    let app = TestApp::spawn().await;
    let health = app.http.get(app.url("/healthz")).send().await.expect("request");
    assert_eq!(health.status(), 200);
    let ready = app.http.get(app.url("/readyz")).send().await.expect("request");
    assert_eq!(ready.status(), 200);
    let body: Value = ready.json().await.expect("JSON");
    assert_eq!(body["database"], "ok");
    assert_eq!(body["migrations"], "ok");
    app.finish().await;
}

#[tokio::test]
async fn metrics_count_events_warnings_deliveries_and_show_the_queue() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(OWNER).await;
    // The recorder is process-wide and tests run side by side: compare before and after.
    let scrape =
        || async { app.http.get(app.url("/metrics")).send().await.expect("request").text().await.expect("text") };
    let value_of = |text: &str, prefix: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    let counters = [
        "bridge_events_accepted_total{kind=\"incoming\"}",
        "bridge_payload_warnings_total{field=\"accountId\"}",
        "bridge_delivery_attempts_total{target=\"third_party_incoming\",outcome=\"delivered\"}",
    ];
    let before = scrape().await;
    let flawed = without(&fixture("incoming-text"), "accountId");
    assert_eq!(app.post_as_dolphins("incoming", &tenant, &flawed).await.status(), 200);
    app.dispatch().await;
    let response = app.http.get(app.url("/metrics")).send().await.expect("request");
    assert_eq!(response.status(), 200);
    let text = response.text().await.expect("text");
    for counter in counters {
        assert!(value_of(&text, counter) >= value_of(&before, counter) + 1.0, "{counter} counted the event:\n{text}");
    }
    assert!(text.contains("bridge_delivery_attempt_duration_seconds_bucket"));
    let build = format!("bridge_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
    assert!(text.contains(&build), "{build} in the metrics");
    assert!(text.contains("bridge_delivery_queue_depth{target=\"dolphins_message\"}"));
    assert!(text.contains("bridge_endpoint_breakers{target=\"third_party_incoming\",state=\"open\"}"));
    assert!(text.contains("bridge_http_requests_total{route=\"/webhooks/3dolphins/incoming\""));
    assert!(!text.contains(&tenant.inbound), "no secrets in metrics");
    app.finish().await;
}

#[tokio::test]
async fn each_credential_has_its_own_rate_limit_and_3dolphins_is_never_limited() {
    let app =
        TestApp::spawn_with(Options { env: vec![("BRIDGE_RATE_LIMIT", "1/m,3".into())], ..Options::default() }).await;
    let a = app.create_tenant(OWNER).await;
    let b = app.create_tenant("second-tenant").await;
    for _ in 0..10 {
        assert_eq!(app.post_as_dolphins("incoming", &a, &fixture("incoming-text")).await.status(), 200);
    }
    let list = |key: &str| app.http.get(app.url("/api/v1/deliveries")).bearer_auth(key.to_string()).send();
    for _ in 0..3 {
        assert_eq!(list(&a.read).await.expect("request").status(), 200);
    }
    let limited = list(&a.read).await.expect("request");
    assert_eq!(limited.status(), 429);
    assert!(limited
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|s| s.parse::<u64>().is_ok()));
    let error: Value = limited.json().await.expect("JSON");
    assert_eq!(error["error"]["code"], "rate_limited");
    assert_eq!(list(&b.read).await.expect("request").status(), 200, "another tenant is not starved");
    assert_eq!(
        list(&a.third_party).await.expect("request").status(),
        200,
        "another key of the same tenant has its own budget"
    );
    app.finish().await;
}

#[tokio::test]
async fn slow_clients_are_cut_off_whether_they_trickle_headers_or_the_body() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn_with(Options {
        env: vec![("BRIDGE_HEADER_TIMEOUT", "500ms".into()), ("BRIDGE_REQUEST_TIMEOUT", "1s".into())],
        ..Options::default()
    })
    .await;
    // Headers that never end: the connection is closed.
    let mut slow = tokio::net::TcpStream::connect(app.address).await.expect("connect");
    slow.write_all(b"POST /webhooks/3dolphins/incoming HTTP/1.1\r\nHost: x\r\n").await.expect("write");
    let mut buf = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), slow.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the server closed the connection within the header timeout");

    // A body that never arrives: 408 after the request timeout.
    let mut trickle = tokio::net::TcpStream::connect(app.address).await.expect("connect");
    trickle
        .write_all(
            b"POST /webhooks/3dolphins/incoming?token=x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"a\":",
        )
        .await
        .expect("write");
    let mut buf = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), trickle.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "answered within the request timeout");
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    let lower = text.to_ascii_lowercase();
    assert!(lower.contains("content-type: application/json") && lower.contains("x-request-id: "), "{text}");
    assert!(text.contains(r#""code":"request_timeout""#) && text.contains(r#""requestId":""#), "{text}");
    // The server still serves.
    assert_eq!(app.http.get(app.url("/healthz")).send().await.expect("request").status(), 200);
    app.finish().await;
}

#[tokio::test]
async fn a_tenant_that_sets_its_own_limit_is_limited_on_every_call_and_alone() {
    let app = TestApp::spawn().await;
    let limited = app
        .create_tenant_with(
            json!({"owner": OWNER, "rateLimit": "1/m,2", "thirdParty": {"incomingUrl": app.third_party.url("/in")}}),
        )
        .await;
    let other = app.create_tenant("other-tenant").await;
    for _ in 0..2 {
        assert_eq!(app.post_as_dolphins("incoming", &limited, &fixture("incoming-text")).await.status(), 200);
    }
    let refused = app.post_as_dolphins("incoming", &limited, &fixture("incoming-text")).await;
    assert_eq!(refused.status(), 429, "the tenant chose to limit its 3Dolphins side too");
    assert!(refused.headers().contains_key("retry-after"));
    let theirs = with(&fixture("incoming-text"), json!({"owner": other.owner}));
    for _ in 0..5 {
        assert_eq!(
            app.post_as_dolphins("incoming", &other, &theirs).await.status(),
            200,
            "other tenants are not affected"
        );
    }
    let bad_tenant = json!({"owner": "x", "rateLimit": "fast", "thirdParty": {"incomingUrl": "http://x/in"}});
    assert_eq!(app.admin_post("/admin/v1/tenants", &bad_tenant).await.status(), 400);
    app.finish().await;
}
