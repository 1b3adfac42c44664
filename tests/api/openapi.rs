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
            assert!(op["responses"]["4XX"].is_object(), "{method} {path} documents its errors");
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
    assert!(operations >= 38, "{operations} operations documented");
    for schema in ["Error", "Ticket", "Delivery", "Summary", "IncomingEvent"] {
        assert!(spec["components"]["schemas"][schema].is_object(), "{schema}");
    }
    let docs = app.http.get(app.url("/docs")).send().await.expect("request");
    assert_eq!(docs.status(), 200);
    let html = docs.text().await.expect("HTML");
    assert!(html.contains("/openapi.json"));
    assert!(
        !html.contains("http://") && !html.contains("https://") && !html.contains("src="),
        "nothing from another origin"
    );
    app.finish().await;
}
