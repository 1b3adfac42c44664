//! The credential matrix (README *HTTP surface*, admin and credentials; *HTTP surface*, errors): every endpoint, called with no credential, a
//! malformed one, a revoked one, a key of the wrong kind and another tenant's key, gets
//! exactly the documented answer, and no reply ever carries the other tenant's data.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::*;

struct Call {
    method: Method,
    path: String,
    body: Option<Value>,
    /// The kinds of key that may call it.
    allowed: &'static [&'static str],
}

fn call(method: Method, path: impl Into<String>, body: Option<Value>, allowed: &'static [&'static str]) -> Call {
    Call { method, path: path.into(), body, allowed }
}

const READ: &[&str] = &["read", "third_party"];
const WRITE: &[&str] = &["third_party"];

#[tokio::test]
async fn every_endpoint_answers_each_kind_of_bad_credential_as_documented() {
    let app = TestApp::spawn().await;
    let ours = app.create_tenant(OWNER).await;
    let theirs = app.create_tenant("their-tenant").await;
    // Their data: a ticket, a message, a delivery and a contact that exist only for them.
    let their_event = with(&fixture("incoming-text"), json!({"owner": theirs.owner, "ticketNumber": "THEIRS-ONLY"}));
    let reply: Value = app.post_as_dolphins("incoming", &theirs, &their_event).await.json().await.expect("JSON");
    let message = reply["messageId"].as_str().expect("id").to_string();
    let delivery: String = sqlx::query_scalar("SELECT id::text FROM deliveries WHERE owner = 'their-tenant'")
        .fetch_one(&app.pool)
        .await
        .expect("delivery");
    let contact = their_event["contactId"].as_str().unwrap_or_default().to_string();
    let revoked = app.admin_post(&format!("/admin/v1/tenants/{OWNER}/keys"), &json!({"kind": "read"})).await;
    let revoked: Value = revoked.json().await.expect("JSON");
    let revoked_key = revoked["key"].as_str().expect("key").to_string();
    let id = revoked["id"].as_str().expect("id");
    let gone =
        app.http.delete(app.url(&format!("/admin/v1/tenants/{OWNER}/keys/{id}"))).bearer_auth(ADMIN_TOKEN).send();
    assert_eq!(gone.await.expect("request").status(), 200);

    let calls = [
        call(Method::POST, "/webhooks/third-party/messages", Some(fixture("outgoing-text")), WRITE),
        call(Method::POST, "/webhooks/third-party/commands", Some(fixture("command-close")), WRITE),
        call(Method::GET, "/api/v1/tickets", None, READ),
        call(Method::GET, "/api/v1/tickets/THEIRS-ONLY", None, READ),
        call(Method::GET, "/api/v1/tickets/THEIRS-ONLY/messages", None, READ),
        call(Method::GET, "/api/v1/tickets/THEIRS-ONLY/events", None, READ),
        call(Method::GET, "/api/v1/tickets/THEIRS-ONLY/deliveries", None, READ),
        call(Method::GET, "/api/v1/tickets/THEIRS-ONLY/export", None, READ),
        call(Method::GET, format!("/api/v1/messages/{message}"), None, READ),
        call(Method::GET, "/api/v1/deliveries", None, READ),
        call(Method::GET, format!("/api/v1/deliveries/{delivery}"), None, READ),
        call(Method::POST, format!("/api/v1/deliveries/{delivery}/retry"), None, WRITE),
        call(Method::POST, format!("/api/v1/deliveries/{delivery}/cancel"), None, WRITE),
        call(Method::POST, "/api/v1/deliveries/replay", Some(json!({"from": "2020-01-01"})), WRITE),
        call(Method::GET, "/api/v1/endpoints", None, READ),
        call(Method::POST, "/api/v1/endpoints/third_party_incoming/pause", None, WRITE),
        call(Method::GET, "/api/v1/reports/summary", None, READ),
        call(Method::GET, "/api/v1/reports/timeseries", None, READ),
        call(Method::GET, format!("/api/v1/contacts/{contact}"), None, READ),
        call(Method::DELETE, format!("/api/v1/contacts/{contact}/data"), None, WRITE),
    ];
    for c in &calls {
        let send = |key: Option<&str>| {
            let mut request = app.http.request(c.method.clone(), app.url(&c.path));
            if let Some(key) = key {
                request = request.bearer_auth(key);
            }
            if let Some(body) = &c.body {
                request = request.json(body);
            }
            request.send()
        };
        let code = |r: reqwest::Response| async move {
            let status = r.status().as_u16();
            let body = r.text().await.unwrap_or_default();
            assert!(!body.contains("their-tenant") && !body.contains("THEIRS-ONLY"), "{body}");
            status
        };
        let what = format!("{} {}", c.method, c.path);
        assert_eq!(code(send(None).await.expect("request")).await, 401, "no credential: {what}");
        assert_eq!(code(send(Some("not a key at all")).await.expect("request")).await, 401, "malformed: {what}");
        assert_eq!(code(send(Some(&revoked_key)).await.expect("request")).await, 401, "revoked: {what}");
        assert_eq!(code(send(Some(&ours.inbound)).await.expect("request")).await, 403, "inbound token: {what}");
        if !c.allowed.contains(&"read") {
            assert_eq!(code(send(Some(&ours.read)).await.expect("request")).await, 403, "read key: {what}");
        }
        // Our own key on their resources: as if they did not exist.
        let status = code(send(Some(&ours.third_party)).await.expect("request")).await;
        let resource_of_theirs = c.path.contains("THEIRS-ONLY")
            || c.path.contains(&message)
            || c.path.contains(&delivery)
            || c.path.contains(&contact)
            || c.path.starts_with("/webhooks/third-party/");
        if resource_of_theirs {
            assert_eq!(status, 404, "another tenant's resource: {what}");
        } else {
            assert!(status < 400, "our own list: {what} → {status}");
        }
    }
    // Admin API: tenant keys are not the admin token.
    for key in [&ours.read, &ours.third_party, &ours.inbound] {
        let r = app.http.get(app.url("/admin/v1/tenants")).bearer_auth(key).send().await.expect("request");
        assert_eq!(r.status(), 401);
    }
    app.finish().await;
}
