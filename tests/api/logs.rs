//! Logs never contain secrets (README *Rules worth knowing*): a whole scenario against the real binary at
//! `debug`, then its log is searched for every secret it handled.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::*;

#[tokio::test]
async fn a_debug_log_of_a_full_scenario_holds_no_secret() {
    let receiver = Receiver::start().await;
    let db = format!("dbt_logs_{}", Uuid::new_v4().simple());
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
    let log_path = std::env::temp_dir().join(format!("{db}.log"));
    let log = std::fs::File::create(&log_path).expect("log file");
    let admin_token = "admin-token-that-must-never-be-logged";
    let mut child = Command::new(env!("CARGO_BIN_EXE_dolphin-bridge"))
        .arg("serve")
        .env("DATABASE_URL", format!("{}/{db}", server_url()))
        .env("BRIDGE_LISTEN", format!("127.0.0.1:{port}"))
        .env("BRIDGE_ADMIN_TOKEN", admin_token)
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("serve");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let until = tokio::time::Instant::now() + Duration::from_secs(30);
    while !client.get(format!("{base}/readyz")).send().await.is_ok_and(|r| r.status() == 200) {
        assert!(tokio::time::Instant::now() < until, "serve never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let created: Value = client
        .post(format!("{base}/admin/v1/tenants"))
        .bearer_auth(admin_token)
        .json(&json!({"owner": OWNER, "thirdParty": {"incomingUrl": receiver.url("/incoming")},
                      "dolphins": {"sendMessageUrl": receiver.url("/send"), "apiBaseUrl": receiver.url("/api"),
                                   "username": "integration", "password": "password-never-logged"}}))
        .send()
        .await
        .expect("create tenant")
        .json()
        .await
        .expect("JSON");
    let c = &created["credentials"];
    let secret = |k: &str| c[k].as_str().expect("credential").to_string();
    let (inbound, third_party, read) = (secret("inboundToken"), secret("thirdPartyKey"), secret("readKey"));
    let status = |r: reqwest::Response| r.status().as_u16();
    let incoming =
        client.post(format!("{base}/webhooks/3dolphins/incoming?token={inbound}")).json(&fixture("incoming-text"));
    assert_eq!(status(incoming.send().await.expect("incoming")), 200);
    let reply = client
        .post(format!("{base}/webhooks/third-party/messages"))
        .bearer_auth(&third_party)
        .header("X-Request-Id", "trace-this-reply-42")
        .json(&fixture("outgoing-text"));
    assert_eq!(status(reply.send().await.expect("reply")), 200);
    let wrong =
        client.post(format!("{base}/webhooks/3dolphins/incoming?token={inbound}x")).json(&fixture("incoming-text"));
    assert_eq!(status(wrong.send().await.expect("wrong token")), 401);
    receiver.wait_for("/incoming", 1).await;
    receiver.wait_for("/send", 1).await;
    for path in ["/api/v1/tickets", "/api/v1/deliveries", "/metrics"] {
        assert_eq!(status(client.get(format!("{base}{path}")).bearer_auth(&read).send().await.expect("read")), 200);
    }
    let ticket = fixture("incoming-text")["ticketNumber"].as_str().unwrap_or_default().to_string();
    let merged = client.get(format!("{base}/api/v1/tickets/{ticket}/messages?source=merged")).bearer_auth(&read);
    assert_eq!(status(merged.send().await.expect("merged")), 200, "tries the token with the password");
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();

    let text = std::fs::read_to_string(&log_path).expect("log");
    assert!(text.contains("DEBUG") || text.contains("debug"), "the log is at debug level");
    // One access line per request: method, route template, status, duration, the request's id.
    let access: Vec<&str> = text.lines().filter(|l| l.contains("request_id=trace-this-reply-42")).collect();
    assert!(
        access.iter().any(|l| {
            l.contains("INFO")
                && l.contains("method=POST")
                && l.contains("route=/webhooks/third-party/messages")
                && l.contains("status=200")
                && l.contains("duration_ms=")
        }),
        "the access line of the request: {access:#?}"
    );
    let incoming_lines =
        text.lines().filter(|l| l.contains("route=/webhooks/3dolphins/incoming") && l.contains("status="));
    assert!(incoming_lines.clone().count() >= 2, "every request has its line");
    for line in incoming_lines {
        assert!(!line.contains("token"), "the query string is never logged: {line}");
    }
    for secret in
        [admin_token.to_string(), inbound, third_party, read, secret("signingSecret"), "password-never-logged".into()]
    {
        assert!(!text.contains(&secret), "a secret was logged: {secret}");
    }
    let _ = std::fs::remove_file(&log_path);
    let admin = dolphin_bridge::store::connect_lazy(&format!("{}/postgres", server_url()), 1).expect("pool");
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).execute(&admin).await;
}
