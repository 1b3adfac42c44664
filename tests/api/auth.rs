//! Credentials (README *HTTP surface*, admin and credentials): the tenant comes from the credential, never from the body.

use serde_json::{json, Value};

use crate::helpers::*;

async fn code(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("JSON error");
    (status, body["error"]["code"].as_str().unwrap_or("").to_string())
}

#[tokio::test]
async fn missing_unknown_and_malformed_credentials_get_401() {
    let app = TestApp::spawn().await;
    let _tenant = app.create_tenant(OWNER).await;
    let body = fixture("incoming-text");
    let url = app.url("/webhooks/3dolphins/incoming");
    let cases = [
        app.http.post(&url).json(&body),
        app.http.post(format!("{url}?token=")).json(&body),
        app.http.post(format!("{url}?token=dbin_not-a-real-token")).json(&body),
        app.http.post(&url).header("authorization", "Basic dXNlcjpwYXNz").json(&body),
        app.http
            .post(app.url("/webhooks/third-party/messages"))
            .bearer_auth("dbtp_nope")
            .json(&fixture("outgoing-text")),
    ];
    for request in cases {
        assert_eq!(code(request.send().await.expect("request")).await, (401, "unauthenticated".to_string()));
    }
    assert_eq!(app.count("SELECT count(*) FROM messages").await, 0);
    app.finish().await;
}

#[tokio::test]
async fn the_inbound_token_works_in_the_query_or_as_a_bearer_header() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(OWNER).await;
    let response = app
        .http
        .post(app.url("/webhooks/3dolphins/incoming"))
        .bearer_auth(&tenant.inbound)
        .json(&fixture("incoming-text"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(app.post_as_dolphins("incoming", &tenant, &fixture("incoming-text")).await.status(), 200);
    app.finish().await;
}

#[tokio::test]
async fn a_key_of_the_wrong_kind_gets_403() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(OWNER).await;
    let incoming = app.url("/webhooks/3dolphins/incoming");
    for key in [&tenant.read, &tenant.third_party] {
        let response =
            app.http.post(&incoming).bearer_auth(key).json(&fixture("incoming-text")).send().await.expect("request");
        assert_eq!(code(response).await, (403, "forbidden".to_string()));
    }
    let messages = app.url("/webhooks/third-party/messages");
    for key in [&tenant.read, &tenant.inbound] {
        let response =
            app.http.post(&messages).bearer_auth(key).json(&fixture("outgoing-text")).send().await.expect("request");
        assert_eq!(code(response).await, (403, "forbidden".to_string()));
    }
    // The third-party key may not be smuggled in the query string either.
    let response = app
        .http
        .post(format!("{messages}?token={}", tenant.third_party))
        .json(&fixture("outgoing-text"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 401);
    app.finish().await;
}

#[tokio::test]
async fn a_body_owner_of_another_tenant_gets_403_and_nothing_is_stored() {
    let app = TestApp::spawn().await;
    let ours = app.create_tenant(OWNER).await;
    let theirs = app.create_tenant("other-tenant").await;
    // Their ticket exists; our key must not reach it by naming their owner.
    let their_event = with(&fixture("incoming-text"), json!({"owner": theirs.owner}));
    assert_eq!(app.post_as_dolphins("incoming", &theirs, &their_event).await.status(), 200);
    let before = app.count("SELECT count(*) FROM messages").await;
    assert_eq!(code(app.post_as_dolphins("incoming", &ours, &their_event).await).await, (403, "forbidden".to_string()));
    let their_reply = with(&fixture("outgoing-text"), json!({"owner": theirs.owner}));
    assert_eq!(
        code(app.post_as_third_party("messages", &ours, &their_reply).await).await,
        (403, "forbidden".to_string())
    );
    assert_eq!(app.count("SELECT count(*) FROM messages").await, before);
    app.finish().await;
}

#[tokio::test]
async fn the_same_ticket_number_in_two_tenants_stays_two_tickets() {
    let app = TestApp::spawn().await;
    let a = app.create_tenant(OWNER).await;
    let b = app.create_tenant("second-tenant").await;
    assert_eq!(app.post_as_dolphins("incoming", &a, &fixture("incoming-text")).await.status(), 200);
    let for_b = with(&fixture("incoming-text"), json!({"owner": b.owner}));
    assert_eq!(app.post_as_dolphins("incoming", &b, &for_b).await.status(), 200);
    assert_eq!(app.count("SELECT count(*) FROM tickets").await, 2);
    // Closing A's ticket leaves B's open; a reply from B on it still works.
    assert_eq!(app.post_as_third_party("commands", &a, &fixture("command-close")).await.status(), 200);
    let reply_b = with(&fixture("outgoing-text"), json!({"owner": b.owner}));
    assert_eq!(app.post_as_third_party("messages", &b, &reply_b).await.status(), 200);
    app.finish().await;
}

#[tokio::test]
async fn a_revoked_key_gets_401() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(OWNER).await;
    let key_id = tenant.created["keyIds"]["inbound"].as_str().expect("key id").to_string();
    let response = app
        .http
        .delete(app.url(&format!("/admin/v1/tenants/{OWNER}/keys/{key_id}")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(code(app.post_as_dolphins("incoming", &tenant, &fixture("incoming-text")).await).await.0, 401);
    app.finish().await;
}

#[tokio::test]
async fn the_admin_api_is_off_without_a_token_and_refuses_a_wrong_one() {
    let app = TestApp::spawn_with(Options { admin_token: None, ..Options::default() }).await;
    let response = app.http.get(app.url("/admin/v1/tenants")).bearer_auth("anything").send().await.expect("request");
    assert_eq!(code(response).await, (403, "admin_disabled".to_string()));
    app.finish().await;

    let app = TestApp::spawn().await;
    for token in ["wrong-admin-token-0123456789", ""] {
        let response = app.http.get(app.url("/admin/v1/tenants")).bearer_auth(token).send().await.expect("request");
        assert_eq!(code(response).await.0, 401);
    }
    let tenant = app.create_tenant(OWNER).await;
    let response =
        app.http.get(app.url("/admin/v1/tenants")).bearer_auth(&tenant.third_party).send().await.expect("request");
    assert_eq!(code(response).await.0, 401, "a tenant key is not the admin token");
    app.finish().await;
}

/// Standard Webhooks headers for `body`, signed with `secret` at `timestamp`.
fn signed_headers(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Vec<(&'static str, String)> {
    let signature = dolphin_bridge::signature::sign(secret, id, timestamp, body).expect("valid secret");
    vec![("webhook-id", id.to_string()), ("webhook-timestamp", timestamp.to_string()), ("webhook-signature", signature)]
}

#[tokio::test]
async fn the_third_party_may_sign_its_calls_instead_of_sending_a_key() {
    let app = TestApp::spawn().await;
    let tenant = app
        .create_tenant_with(json!({"owner": OWNER, "thirdParty": {"incomingUrl": app.third_party.url("/in"), "inboundAuth": "signature"}}))
        .await;
    let bearer_only = app.create_tenant("bearer-tenant").await;
    assert_eq!(app.post_as_dolphins("incoming", &tenant, &fixture("incoming-text")).await.status(), 200);
    let body = serde_json::to_vec(&fixture("outgoing-text")).expect("JSON");
    let now = chrono::Utc::now().timestamp();
    let post = |headers: Vec<(&'static str, String)>, body: Vec<u8>| {
        let mut request = app
            .http
            .post(app.url("/webhooks/third-party/messages"))
            .header("content-type", "application/json")
            .body(body);
        for (k, v) in headers {
            request = request.header(k, v);
        }
        request.send()
    };
    let first = post(signed_headers(&tenant.signing_secret, "msg_1", now, &body), body.clone()).await.expect("request");
    assert_eq!(first.status(), 200);
    let first: Value = first.json().await.expect("JSON");
    let replay =
        post(signed_headers(&tenant.signing_secret, "msg_1", now, &body), body.clone()).await.expect("request");
    assert_eq!(replay.json::<Value>().await.expect("JSON"), first, "a replayed webhook-id is answered, not applied");
    assert_eq!(app.count("SELECT count(*) FROM messages WHERE source = 'third_party'").await, 1);

    let forged = post(signed_headers("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_2", now, &body), body.clone());
    assert_eq!(forged.await.expect("request").status(), 401);
    let stale = post(signed_headers(&tenant.signing_secret, "msg_3", now - 600, &body), body.clone());
    assert_eq!(stale.await.expect("request").status(), 401, "outside the 5-minute tolerance");
    let tampered = post(signed_headers(&tenant.signing_secret, "msg_4", now, &body), [&body[..], b" "].concat());
    assert_eq!(tampered.await.expect("request").status(), 401);
    let theirs =
        serde_json::to_vec(&with(&fixture("outgoing-text"), json!({"owner": bearer_only.owner}))).expect("JSON");
    let not_chosen = post(signed_headers(&bearer_only.signing_secret, "msg_5", now, &theirs), theirs.clone());
    assert_eq!(not_chosen.await.expect("request").status(), 401, "only tenants that chose signatures");
    app.finish().await;
}
