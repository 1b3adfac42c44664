//! Peer secrets sealed at rest with BRIDGE_SECRET_KEY (README *Configuration*; *HTTP surface*, admin and credentials).

use std::process::{Command, Stdio};

use base64::Engine;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::*;

fn key(byte: u8) -> String {
    base64::engine::general_purpose::STANDARD.encode([byte; 32])
}

#[tokio::test]
async fn with_a_key_secrets_are_sealed_at_rest_and_still_sign_and_sign_in() {
    let app = TestApp::spawn_with(Options { env: vec![("BRIDGE_SECRET_KEY", key(1))], ..Options::default() }).await;
    let tenant = app
        .create_tenant_with(json!({
            "owner": OWNER,
            "thirdParty": {"incomingUrl": app.third_party.url("/incoming")},
            "dolphins": {"sendMessageUrl": app.dolphins.url("/send"), "apiBaseUrl": app.dolphins.url("/api"),
                         "username": "integration", "password": "s3cret-pass", "useApiToken": true}
        }))
        .await;
    let (secret, password): (String, String) = sqlx::query_as("SELECT signing_secret, dolphins_password FROM tenants")
        .fetch_one(&app.pool)
        .await
        .expect("tenant");
    assert!(secret.starts_with("enc:v1:") && !secret.contains(&tenant.signing_secret));
    assert!(password.starts_with("enc:v1:") && !password.contains("s3cret-pass"));

    app.dolphins.reply_next(
        200,
        &[("content-type", "application/json")],
        r#"{"token":"t","expireAt":"2099-01-01T00:00:00Z"}"#,
    );
    assert_eq!(app.post_as_dolphins("incoming", &tenant, &fixture("incoming-text")).await.status(), 200);
    assert_eq!(app.post_as_third_party("messages", &tenant, &fixture("outgoing-text")).await.status(), 200);
    app.dispatch().await;
    let got = app.third_party.wait_for("/incoming", 1).await;
    dolphin_bridge::signature::verify(&tenant.signing_secret, &got[0].body, &got[0].headers)
        .expect("signed with the clear secret");
    assert_eq!(app.dolphins.received()[0].json()["password"], "s3cret-pass");
    app.finish().await;
}

fn bridge(args: &[&str], url: &str, key: Option<&str>) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dolphin-bridge"));
    command.args(args).env("DATABASE_URL", url).env("RUST_LOG", "error").env("BRIDGE_LISTEN", "127.0.0.1:0");
    command.env_remove("BRIDGE_ADMIN_TOKEN").env_remove("BRIDGE_SECRET_KEY").stdin(Stdio::null());
    if let Some(k) = key {
        command.env("BRIDGE_SECRET_KEY", k);
    }
    command.output().expect("run the binary")
}

#[tokio::test]
async fn clear_secrets_are_sealed_by_command_and_a_missing_or_wrong_key_stops_the_start() {
    let db = format!("dbt_sec_{}", Uuid::new_v4().simple());
    let url = format!("{}/{db}", server_url());
    let added = bridge(&["tenant", "add", "--owner", "o1", "--third-party-url", "https://cc.example/in"], &url, None);
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    let pool = dolphin_bridge::store::connect_lazy(&url, 1).expect("pool");
    let stored = || async {
        sqlx::query_scalar::<_, String>("SELECT signing_secret FROM tenants").fetch_one(&pool).await.expect("row")
    };
    assert!(stored().await.starts_with("whsec_"), "in the clear without a key");

    let sealed = bridge(&["encrypt-secrets"], &url, Some(&key(2)));
    assert!(sealed.status.success(), "{}", String::from_utf8_lossy(&sealed.stderr));
    assert!(String::from_utf8_lossy(&sealed.stdout).contains("sealed 1"));
    assert!(stored().await.starts_with("enc:v1:"));

    for (key, expected) in [(None, "BRIDGE_SECRET_KEY is not set"), (Some(key(3)), "wrong key")] {
        let out = bridge(&["serve"], &url, key.as_deref());
        assert_eq!(out.status.code(), Some(1), "serve must refuse to start");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{stderr}");
    }
    pool.close().await;
    let admin = dolphin_bridge::store::connect_lazy(&format!("{}/postgres", server_url()), 1).expect("pool");
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).execute(&admin).await;
}

#[tokio::test]
async fn a_rotated_signing_secret_signs_beside_the_old_one_until_it_is_retired() {
    let app = TestApp::spawn_with(Options { env: vec![("BRIDGE_SECRET_KEY", key(4))], ..Options::default() }).await;
    let tenant = app.create_tenant(OWNER).await;
    let rotate = |method: reqwest::Method, path: &str| {
        app.http.request(method, app.url(&format!("/admin/v1/tenants/{OWNER}/{path}"))).bearer_auth(ADMIN_TOKEN).send()
    };
    let rotated = rotate(reqwest::Method::POST, "signing-secrets").await.expect("request");
    assert_eq!(rotated.status(), 201);
    let new_secret =
        rotated.json::<serde_json::Value>().await.expect("JSON")["signingSecret"].as_str().expect("secret").to_string();
    assert_ne!(new_secret, tenant.signing_secret);

    assert_eq!(app.post_as_dolphins("incoming", &tenant, &fixture("incoming-text")).await.status(), 200);
    app.dispatch().await;
    let during = &app.third_party.wait_for("/incoming", 1).await[0];
    assert_eq!(during.header("webhook-signature").map(|s| s.split(' ').count()), Some(2), "two v1 entries");
    for secret in [&new_secret, &tenant.signing_secret] {
        dolphin_bridge::signature::verify(secret, &during.body, &during.headers).expect("either secret verifies");
    }

    assert_eq!(rotate(reqwest::Method::DELETE, "signing-secrets/previous").await.expect("request").status(), 200);
    assert_eq!(rotate(reqwest::Method::DELETE, "signing-secrets/previous").await.expect("request").status(), 404);
    assert_eq!(app.post_as_dolphins("incoming", &tenant, &fixture("incoming-image")).await.status(), 200);
    app.dispatch().await;
    let after = &app.third_party.wait_for("/incoming", 2).await[1];
    dolphin_bridge::signature::verify(&new_secret, &after.body, &after.headers).expect("the new secret verifies");
    assert!(
        dolphin_bridge::signature::verify(&tenant.signing_secret, &after.body, &after.headers).is_err(),
        "the old one no longer"
    );
    app.finish().await;
}
