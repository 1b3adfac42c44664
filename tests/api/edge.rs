//! The HTTP edge (README *HTTP surface*): every refusal in the one error shape whichever layer
//! wrote it, `X-Request-Id` in and out, and CSV that a spreadsheet cannot run, on every list.

use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn a_wrong_method_answers_405_in_the_error_shape_with_allow() {
    let app = TestApp::spawn().await;
    let response = app.http.delete(app.url("/api/v1/tickets")).send().await.expect("request");
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["content-type"], "application/json");
    let allow = response.headers().get("allow").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    assert!(allow.contains("GET"), "Allow names what the path answers: {allow:?}");
    let error: Value = response.json().await.expect("JSON");
    assert_eq!(error["status"], "error");
    assert_eq!(error["error"]["code"], "method_not_allowed");
    assert!(error["error"]["message"].as_str().is_some_and(|m| m.contains("DELETE")), "{error}");
    app.finish().await;
}

#[tokio::test]
async fn the_request_id_is_taken_or_made_echoed_and_quoted_in_errors() {
    let app = TestApp::spawn().await;
    let given = app.http.get(app.url("/healthz")).header("X-Request-Id", "abc-123").send().await.expect("request");
    assert_eq!(given.headers()["x-request-id"], "abc-123");

    let made = app.http.get(app.url("/healthz")).send().await.expect("request");
    let made_id = made.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    assert_eq!(made_id.len(), 36, "a generated UUID: {made_id:?}");
    let again = app.http.get(app.url("/healthz")).send().await.expect("request");
    assert_ne!(again.headers()["x-request-id"], made_id.as_str(), "one id per request");

    // Too long or unprintable: replaced, never echoed.
    let long = "x".repeat(201);
    let replaced = app.http.get(app.url("/healthz")).header("X-Request-Id", &long).send().await.expect("request");
    let replaced_id = replaced.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
    assert!(replaced_id != long && replaced_id.len() == 36, "{replaced_id}");

    let refused = app
        .http
        .get(app.url("/api/v1/tickets"))
        .header("X-Request-Id", "quote-me")
        .bearer_auth("not-a-key")
        .send()
        .await
        .expect("request");
    assert_eq!(refused.status(), 401);
    assert_eq!(refused.headers()["x-request-id"], "quote-me");
    let error: Value = refused.json().await.expect("JSON");
    assert_eq!(error["error"]["requestId"], "quote-me");
    app.finish().await;
}

#[tokio::test]
async fn a_body_that_is_not_json_gets_415_in_the_error_shape() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(OWNER).await;
    let response = app
        .http
        .post(app.url("/webhooks/third-party/messages"))
        .bearer_auth(&tenant.third_party)
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 415);
    let error: Value = response.json().await.expect("JSON");
    assert_eq!(error["error"]["code"], "unsupported_media_type");
    assert!(error["error"]["requestId"].is_string());
    app.finish().await;
}

/// `GET path` as CSV with the tenant's read key.
async fn csv(app: &TestApp, key: &str, path: &str) -> String {
    let response = app.http.get(app.url(path)).bearer_auth(key).send().await.expect("request");
    assert_eq!(response.status(), 200, "{path}");
    assert!(response.headers()["content-type"].to_str().is_ok_and(|ct| ct.starts_with("text/csv")), "{path}");
    response.text().await.expect("text")
}

#[tokio::test]
async fn every_list_offers_csv_and_no_cell_is_a_formula() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(OWNER).await;
    let incoming = fixture("incoming-text");
    let hostile = "=HYPERLINK(\"http://evil.example\",\"click\")";
    let event = with(&incoming, json!({"customerName": hostile, "message": "+62 812 555"}));
    assert_eq!(app.post_as_dolphins("incoming", &tenant, &event).await.status(), 200);
    app.third_party.wait_for("/incoming", 1).await;
    let ticket = incoming["ticketNumber"].as_str().unwrap_or_default();

    let tickets = csv(&app, &tenant.read, "/api/v1/tickets?format=csv").await;
    assert!(tickets.starts_with("ticketNumber,status,"), "{tickets}");
    assert!(tickets.contains("'=HYPERLINK("), "the formula is text: {tickets}");
    assert!(!tickets.contains(",=HYPERLINK("), "{tickets}");
    let messages = csv(&app, &tenant.read, &format!("/api/v1/tickets/{ticket}/messages?format=csv")).await;
    assert!(messages.contains(",'+62 812 555,"), "{messages}");

    let with_bom = csv(&app, &tenant.read, "/api/v1/tickets?format=csv&bom=true").await;
    assert!(with_bom.starts_with('\u{feff}') && !tickets.starts_with('\u{feff}'), "a BOM only when asked");
    for (query, field) in [("format=xml", "format"), ("format=csv&bom=yes", "bom")] {
        let response = app
            .http
            .get(app.url(&format!("/api/v1/tickets?{query}")))
            .bearer_auth(&tenant.read)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 400, "{query}");
        let error: Value = response.json().await.expect("JSON");
        assert_eq!(error["error"]["fields"][0]["field"], field, "{error}");
    }

    for (path, first_column) in [
        (format!("/api/v1/tickets/{ticket}/deliveries?format=csv"), "id,"),
        (format!("/api/v1/tickets/{ticket}/events?format=csv"), "id,"),
        ("/api/v1/deliveries?format=csv".to_string(), "id,"),
        ("/api/v1/endpoints?format=csv".to_string(), "target,"),
    ] {
        let text = csv(&app, &tenant.read, &path).await;
        assert!(text.starts_with(first_column), "{path}: {text}");
        assert!(text.lines().count() >= 2, "{path} has rows: {text}");
    }
    for path in ["/admin/v1/tenants?format=csv".to_string(), format!("/admin/v1/tenants/{OWNER}/keys?format=csv")] {
        let text = csv(&app, ADMIN_TOKEN, &path).await;
        assert!(text.lines().count() >= 2, "{path}: {text}");
        assert!(!text.contains(&tenant.read), "no key in a key list: {text}");
    }
    app.finish().await;
}
