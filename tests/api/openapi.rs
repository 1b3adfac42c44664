//! The OpenAPI document (README *HTTP surface*): generated from the router's own registrations, it
//! lists every route, and every operation it lists is served. `/docs` loads nothing remote.

use serde_json::Value;

use crate::helpers::*;

#[tokio::test]
async fn every_operation_in_the_document_is_served_and_the_docs_page_is_self_contained() {
    let app = TestApp::spawn().await;
    let spec: Value = app.http.get(app.url("/openapi.json")).send().await.expect("request").json().await.expect("JSON");
    assert_eq!(spec["openapi"], "3.1.0");
    let paths = spec["paths"].as_object().expect("paths");
    let mut operations = 0;
    for (path, methods) in paths {
        for (method, op) in methods.as_object().expect("methods") {
            operations += 1;
            assert!(op["summary"].as_str().is_some_and(|s| !s.is_empty()), "{method} {path} has a summary");
            assert!(op["operationId"].as_str().is_some_and(|s| !s.is_empty()), "{method} {path} has an operationId");
            assert!(op["responses"]["408"].is_object(), "{method} {path} documents its errors");
            let concrete =
                path.split('/').map(|s| if s.starts_with('{') { "x" } else { s }).collect::<Vec<_>>().join("/");
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let response = app.http.request(method.clone(), app.url(&concrete)).send().await.expect("request");
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            assert_ne!(status, 405, "{method} {path} is routed");
            assert!(!(status == 404 && body.contains("route not found")), "{method} {path} is routed");
        }
    }
    assert!(operations >= 40, "{operations} operations documented");
    for schema in ["Error", "Ticket", "Delivery", "Summary", "IncomingEvent", "OutgoingEvent", "CommandEvent"] {
        assert!(spec["components"]["schemas"][schema].is_object(), "{schema}");
    }
    // Content types as served: HTML for people, Prometheus text, CSV beside JSON on lists.
    for (path, status, content_type) in [
        ("/docs", "200", "text/html"),
        ("/console/sign-in", "200", "text/html"),
        ("/metrics", "200", "text/plain"),
        ("/api/v1/tickets", "200", "text/csv"),
        ("/api/v1/tickets", "200", "application/json"),
        ("/admin/v1/tenants", "201", "application/json"),
    ] {
        let method = if status == "201" { "post" } else { "get" };
        let content = &spec["paths"][path][method]["responses"][status]["content"];
        assert!(content[content_type].is_object(), "{method} {path} {status} offers {content_type}: {content}");
    }
    assert!(spec["paths"]["/console"]["get"]["responses"]["303"]["headers"]["Location"].is_object());
    let docs = app.http.get(app.url("/docs")).send().await.expect("request");
    assert_eq!(docs.status(), 200);
    let policy = docs.headers().get("content-security-policy").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    assert!(policy.contains("default-src 'self'") && policy.contains("connect-src 'self'"), "{policy}");
    let html = docs.text().await.expect("HTML");
    // Every file the page loads is on this origin, and is served.
    let linked: Vec<&str> = html
        .split(['"', '\''])
        .filter(|s| s.starts_with("/docs/") || s.starts_with("http") || s.starts_with("//"))
        .collect();
    assert!(linked.len() >= 3, "the page loads its files: {linked:?}");
    for file in linked {
        assert!(file.starts_with("/docs/"), "{file} is on this origin");
        let response = app.http.get(app.url(file)).send().await.expect("request");
        assert_eq!(response.status(), 200, "{file}");
        let text = response.text().await.expect("text");
        assert!(!text.contains("url(http"), "{file} loads nothing remote");
        if file.ends_with("dolphin-bridge.js") {
            assert!(text.contains("\"/openapi.json\"") && text.contains("validatorUrl: null"), "{text}");
        }
    }
    app.finish().await;
}
