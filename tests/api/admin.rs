//! The admin API (README *HTTP surface*, admin and credentials): tenants and keys; secrets shown once, never again.

use serde_json::{json, Value};

use crate::helpers::*;

async fn admin(app: &TestApp, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = app.http.request(method, app.url(path)).bearer_auth(ADMIN_TOKEN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_new_tenant_gets_its_credentials_once_and_never_again() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(OWNER).await;
    for credential in [&tenant.inbound, &tenant.third_party, &tenant.read] {
        assert!(credential.len() >= 37, "≥128-bit keys");
    }
    assert!(tenant.signing_secret.starts_with("whsec_"));
    assert_eq!(tenant.created["timezone"], "Asia/Jakarta");
    let (status, one) = admin(&app, reqwest::Method::GET, &format!("/admin/v1/tenants/{OWNER}"), None).await;
    assert_eq!(status, 200);
    let (_, all) = admin(&app, reqwest::Method::GET, "/admin/v1/tenants", None).await;
    let (_, keys) = admin(&app, reqwest::Method::GET, &format!("/admin/v1/tenants/{OWNER}/keys"), None).await;
    assert_eq!(keys["data"].as_array().map(Vec::len), Some(3));
    for shown in [one.to_string(), all.to_string(), keys.to_string()] {
        for secret in [&tenant.inbound, &tenant.third_party, &tenant.read, &tenant.signing_secret] {
            assert!(!shown.contains(secret.as_str()), "a secret leaked into {shown}");
        }
    }
    let stored: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT key_hash FROM api_keys").fetch_all(&app.pool).await.expect("keys");
    assert!(stored.iter().all(|h| h.len() == 32 && !h.windows(8).any(|w| tenant.read.as_bytes().starts_with(w))));
    app.finish().await;
}

#[tokio::test]
async fn a_duplicate_owner_gets_409_and_a_bad_tenant_400_listing_every_problem() {
    let app = TestApp::spawn().await;
    app.create_tenant(OWNER).await;
    let (status, error) = admin(
        &app,
        reqwest::Method::POST,
        "/admin/v1/tenants",
        Some(json!({"owner": OWNER, "thirdParty": {"incomingUrl": "http://x/in"}})),
    )
    .await;
    assert_eq!((status, error["error"]["code"].as_str()), (409, Some("tenant_exists")));
    let (status, error) = admin(
        &app,
        reqwest::Method::POST,
        "/admin/v1/tenants",
        Some(json!({"owner": "new", "timezone": "Nowhere/City", "thirdParty": {"incomingUrl": "mailto:a@b"}})),
    )
    .await;
    assert_eq!(status, 400);
    let fields: Vec<&str> =
        error["error"]["fields"].as_array().expect("fields").iter().filter_map(|f| f["field"].as_str()).collect();
    assert_eq!(fields, vec!["timezone", "thirdParty.incomingUrl"]);
    app.finish().await;
}

#[tokio::test]
async fn patch_merges_and_new_settings_apply_to_the_next_event() {
    let app = TestApp::spawn().await;
    let tenant = app
        .create_tenant_with(json!({"owner": OWNER, "thirdParty": {"incomingUrl": app.third_party.url("/incoming")}}))
        .await;
    let (status, patched) = admin(
        &app,
        reqwest::Method::PATCH,
        &format!("/admin/v1/tenants/{OWNER}"),
        Some(json!({"name": "Renamed", "thirdParty": {"outgoingUrl": app.third_party.url("/outgoing")}})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(patched["name"], "Renamed");
    assert_eq!(patched["thirdParty"]["incomingUrl"], app.third_party.url("/incoming"), "untouched keys survive");
    assert_eq!(app.post_as_dolphins("outgoing", &tenant, &fixture("outgoing-text")).await.status(), 200);
    assert_eq!(app.count("SELECT count(*) FROM deliveries WHERE target = 'third_party_outgoing'").await, 1);
    let (status, _) = admin(
        &app,
        reqwest::Method::PATCH,
        &format!("/admin/v1/tenants/{OWNER}"),
        Some(json!({"owner": "someone-else"})),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = admin(&app, reqwest::Method::PATCH, "/admin/v1/tenants/nobody", Some(json!({"name": "x"}))).await;
    assert_eq!(status, 404);
    app.finish().await;
}

#[tokio::test]
async fn delete_revokes_the_keys_cancels_waiting_deliveries_and_keeps_the_data() {
    let app = TestApp::spawn_stepped().await;
    let tenant = app.create_tenant(OWNER).await;
    assert_eq!(app.post_as_dolphins("incoming", &tenant, &fixture("incoming-text")).await.status(), 200);
    let (status, body) = admin(&app, reqwest::Method::DELETE, &format!("/admin/v1/tenants/{OWNER}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(body["cancelledDeliveries"], 1);
    assert_eq!(app.post_as_dolphins("incoming", &tenant, &fixture("incoming-text")).await.status(), 401);
    assert_eq!(app.count("SELECT count(*) FROM messages").await, 1, "data kept");
    assert_eq!(app.count("SELECT count(*) FROM deliveries WHERE status = 'cancelled'").await, 1);
    app.finish().await;
}

#[tokio::test]
async fn keys_can_be_added_listed_and_revoked() {
    let app = TestApp::spawn().await;
    let _tenant = app.create_tenant(OWNER).await;
    let (status, made) =
        admin(&app, reqwest::Method::POST, &format!("/admin/v1/tenants/{OWNER}/keys"), Some(json!({"kind": "read"})))
            .await;
    assert_eq!(status, 201);
    let key = made["key"].as_str().expect("key shown once").to_string();
    let id = made["id"].as_str().expect("id").to_string();
    let (_, listed) = admin(&app, reqwest::Method::GET, &format!("/admin/v1/tenants/{OWNER}/keys"), None).await;
    let entry =
        listed["data"].as_array().expect("keys").iter().find(|k| k["id"] == id.as_str()).cloned().expect("listed");
    assert_eq!(entry["kind"], "read");
    assert!(key.starts_with(entry["prefix"].as_str().expect("prefix")));
    let (status, _) = admin(&app, reqwest::Method::DELETE, &format!("/admin/v1/tenants/{OWNER}/keys/{id}"), None).await;
    assert_eq!(status, 200);
    let (_, listed) = admin(&app, reqwest::Method::GET, &format!("/admin/v1/tenants/{OWNER}/keys"), None).await;
    assert!(listed["data"].as_array().expect("keys").iter().any(|k| k["id"] == id.as_str() && k["revoked"] == true));
    let (status, _) =
        admin(&app, reqwest::Method::POST, &format!("/admin/v1/tenants/{OWNER}/keys"), Some(json!({"kind": "admin"})))
            .await;
    assert_eq!(status, 400);
    let (status, _) = admin(&app, reqwest::Method::DELETE, &format!("/admin/v1/tenants/other/keys/{id}"), None).await;
    assert_eq!(status, 404, "another tenant's key id is not found");
    app.finish().await;
}
