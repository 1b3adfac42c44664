//! `BRIDGE_READ_DATABASE_URL`: lists, reports and CSV exports read there; writes, auth and
//! single-resource reads right after a write stay on the primary. The "standby" here is a
//! second, empty database of the same schema, so what an endpoint shows says where it read.

use serde_json::Value;
use uuid::Uuid;

use crate::helpers::*;

async fn get(app: &TestApp, key: &str, path: &str) -> (u16, Value) {
    let response = app.http.get(app.url(path)).bearer_auth(key).send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn lists_and_reports_read_the_read_database_and_single_resources_the_primary() {
    let read_db = format!("dbt_read_{}", Uuid::new_v4().simple());
    let read_url = format!("{}/{read_db}", server_url());
    dolphin_bridge::store::create_database_if_missing(&read_url).await.expect("create the read database");
    let read = dolphin_bridge::store::connect_lazy(&read_url, 1).expect("pool");
    dolphin_bridge::store::MIGRATOR.run(&read).await.expect("migrate the read database");
    read.close().await;

    let app = TestApp::spawn_with(Options {
        env: vec![("BRIDGE_READ_DATABASE_URL", read_url.clone())],
        ..Options::default()
    })
    .await;
    let tenant = app.create_tenant(OWNER).await;
    let event = fixture("incoming-text");
    let ticket = event["ticketNumber"].as_str().expect("ticket").to_string();
    assert_eq!(app.post_as_dolphins("incoming", &tenant, &event).await.status(), 200);
    let message: Uuid = sqlx::query_scalar("SELECT id FROM messages WHERE owner = $1")
        .bind(OWNER)
        .fetch_one(&app.pool)
        .await
        .expect("the message is on the primary");
    let delivery: Uuid = sqlx::query_scalar("SELECT id FROM deliveries WHERE owner = $1")
        .bind(OWNER)
        .fetch_one(&app.pool)
        .await
        .expect("its delivery is on the primary");

    // Single resources: the primary, which has them.
    for path in [
        format!("/api/v1/tickets/{ticket}"),
        format!("/api/v1/messages/{message}"),
        format!("/api/v1/deliveries/{delivery}"),
    ] {
        assert_eq!(get(&app, &tenant.read, &path).await.0, 200, "{path} reads the primary");
    }
    // Lists and reports: the read database, which has none of it.
    let (status, tickets) = get(&app, &tenant.read, "/api/v1/tickets").await;
    assert_eq!((status, tickets["data"].as_array().map(Vec::len)), (200, Some(0)), "{tickets}");
    let (status, deliveries) = get(&app, &tenant.read, "/api/v1/deliveries").await;
    assert_eq!((status, deliveries["data"].as_array().map(Vec::len)), (200, Some(0)), "{deliveries}");
    let (status, summary) = get(&app, &tenant.read, "/api/v1/reports/summary").await;
    assert_eq!(status, 200);
    assert_eq!(summary["ticketsOpened"], 0, "{summary}");
    let (status, _) = get(&app, &tenant.read, &format!("/api/v1/tickets/{ticket}/messages")).await;
    assert_eq!(status, 404, "a standby that has not replayed the ticket yet does not know it");
    let csv = app.http.get(app.url("/api/v1/tickets?format=csv")).bearer_auth(&tenant.read).send().await.expect("csv");
    assert_eq!(csv.text().await.expect("text").lines().count(), 1, "the CSV header alone");

    // The read pool's host is followed, and its lag published.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let metrics = app.http.get(app.url("/metrics")).send().await.expect("metrics").text().await.expect("text");
        if metrics.lines().any(|l| l.starts_with("bridge_read_replica_lag_seconds ")) {
            break;
        }
        assert!(std::time::Instant::now() < until, "bridge_read_replica_lag_seconds is published");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    app.finish().await;
    let admin = dolphin_bridge::store::connect_lazy(&format!("{}/postgres", server_url()), 1).expect("pool");
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {read_db} WITH (FORCE)")).execute(&admin).await;
}
