//! The query API (README *HTTP surface*): tickets, conversations, audits, exports and CSV — each
//! tenant sees only its own rows.

use serde_json::{json, Value};

use crate::helpers::*;

async fn get_json(app: &TestApp, key: &str, path: &str) -> (u16, Value) {
    let response = app.http.get(app.url(path)).bearer_auth(key).send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn now_created_date() -> String {
    chrono::Utc::now().to_rfc3339()
}

async fn open(app: &TestApp, tenant: &Tenant, ticket: &str, changes: Value) {
    let mut body = with(
        &fixture("incoming-text"),
        json!({"ticketNumber": ticket, "createdDate": now_created_date(), "owner": tenant.owner}),
    );
    body = with(&body, changes);
    assert_eq!(app.post_as_dolphins("incoming", tenant, &body).await.status(), 200);
}

fn numbers(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|t| t["ticketNumber"].as_str().unwrap_or("").to_string())
        .collect()
}

#[tokio::test]
async fn tickets_are_listed_newest_first_and_filtered() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(OWNER).await;
    open(&app, &tenant, "ORD-100", json!({"customerName": "Dewi Lestari", "contactId": "c-1"})).await;
    open(
        &app,
        &tenant,
        "ORD-101",
        json!({"customerName": "budi santoso", "channel": "Telegrambot", "contactId": "c-2"}),
    )
    .await;
    open(&app, &tenant, "XYZ-200", json!({"customerName": "Dewanti", "contactId": "c-1"})).await;
    assert_eq!(
        app.post_as_third_party(
            "commands",
            &tenant,
            &with(&fixture("command-close"), json!({"ticketNumber": "ORD-100"}))
        )
        .await
        .status(),
        200
    );

    let (status, all) = get_json(&app, &tenant.read, "/api/v1/tickets").await;
    assert_eq!(status, 200);
    assert_eq!(numbers(&all), vec!["XYZ-200", "ORD-101", "ORD-100"]);
    let cases = [
        ("status=closed", vec!["ORD-100"]),
        ("status=open", vec!["XYZ-200", "ORD-101"]),
        ("channel=telegrambot", vec!["ORD-101"]),
        ("contactId=c-1", vec!["XYZ-200", "ORD-100"]),
        ("q=ord-10", vec!["ORD-101", "ORD-100"]),
        ("q=DEW", vec!["XYZ-200", "ORD-100"]),
        ("q=Budi", vec!["ORD-101"]),
        ("q=%25", vec![]),
        ("from=2000-01-01&to=2000-01-02", vec![]),
    ];
    for (query, expected) in cases {
        let (status, page) = get_json(&app, &tenant.read, &format!("/api/v1/tickets?{query}")).await;
        assert_eq!(status, 200, "{query}");
        assert_eq!(numbers(&page), expected, "{query}");
    }
    let (_, one) = get_json(&app, &tenant.read, "/api/v1/tickets/ORD-101").await;
    for key in [
        "ticketNumber",
        "status",
        "channel",
        "accountId",
        "contactId",
        "customerName",
        "groupId",
        "language",
        "createdDate",
        "openedAt",
        "firstMessageAt",
        "firstResponseAt",
        "closedAt",
        "lastMessageAt",
        "messagesIn",
        "messagesOut",
        "reopenCount",
    ] {
        assert!(one.get(key).is_some(), "the ticket shape has {key}");
    }
    assert_eq!((one["channel"].as_str(), one["messagesIn"].as_i64()), (Some("telegrambot"), Some(1)));
    app.finish().await;
}

#[tokio::test]
async fn ticket_pages_are_stable_while_new_tickets_arrive() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(OWNER).await;
    for i in 0..7 {
        open(&app, &tenant, &format!("P{i}"), json!({})).await;
    }
    let mut seen = Vec::new();
    let mut path = "/api/v1/tickets?limit=3".to_string();
    loop {
        let (status, page) = get_json(&app, &tenant.read, &path).await;
        assert_eq!(status, 200);
        seen.extend(numbers(&page));
        open(&app, &tenant, &format!("NEW{}", seen.len()), json!({})).await;
        match page["nextCursor"].as_str() {
            Some(c) => path = format!("/api/v1/tickets?limit=3&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, vec!["P6", "P5", "P4", "P3", "P2", "P1", "P0"], "no row skipped or repeated");
    app.finish().await;
}

#[tokio::test]
async fn a_tickets_conversation_audit_and_export_tell_its_whole_life() {
    let app = TestApp::spawn_stepped().await;
    let tenant = app.create_tenant(OWNER).await;
    let ticket = fixture("incoming-text")["ticketNumber"].as_str().expect("ticket").to_string();
    assert_eq!(app.post_as_dolphins("incoming", &tenant, &fixture("incoming-text")).await.status(), 200);
    assert_eq!(app.post_as_dolphins("incoming", &tenant, &fixture("incoming-sticker")).await.status(), 200);
    assert_eq!(app.post_as_third_party("messages", &tenant, &fixture("outgoing-text")).await.status(), 200);
    app.dispatch().await;
    assert_eq!(app.post_as_third_party("commands", &tenant, &fixture("command-close")).await.status(), 200);

    let (_, first) = get_json(&app, &tenant.read, &format!("/api/v1/tickets/{ticket}/messages?limit=2")).await;
    let cursor = first["nextCursor"].as_str().expect("more pages").to_string();
    let (_, second) =
        get_json(&app, &tenant.read, &format!("/api/v1/tickets/{ticket}/messages?limit=2&cursor={cursor}")).await;
    let texts: Vec<&str> = first["data"]
        .as_array()
        .into_iter()
        .chain(second["data"].as_array())
        .flatten()
        .map(|m| m["message"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        texts,
        vec!["Halo, pesanan saya belum sampai", "Sticker", "Baik Bu Dewi, kami cek dulu ya."],
        "oldest first"
    );
    assert_eq!(second["nextCursor"], Value::Null);

    let (_, events) = get_json(&app, &tenant.read, &format!("/api/v1/tickets/{ticket}/events?limit=500")).await;
    let kinds: Vec<&str> =
        events["data"].as_array().expect("events").iter().map(|e| e["kind"].as_str().unwrap_or("")).collect();
    assert_eq!(
        kinds,
        vec!["created", "message_in", "message_in", "message_out", "delivered", "delivered", "delivered", "closed"]
    );
    assert!(events["data"][0].get("actor").is_some() && events["data"][0].get("detail").is_some());

    let (status, export) = get_json(&app, &tenant.read, &format!("/api/v1/tickets/{ticket}/export")).await;
    assert_eq!(status, 200);
    assert_eq!(export["ticket"]["status"], "closed");
    assert_eq!(export["messages"].as_array().map(Vec::len), Some(3));
    assert_eq!(export["events"].as_array().map(Vec::len), Some(8));
    let deliveries = export["deliveries"].as_array().expect("deliveries");
    assert_eq!(deliveries.len(), 4);
    assert_eq!(deliveries[0]["attemptLog"].as_array().map(Vec::len), Some(1));
    let (status, own) = get_json(&app, &tenant.read, &format!("/api/v1/tickets/{ticket}/deliveries")).await;
    assert_eq!(status, 200);
    assert_eq!(own["data"], export["deliveries"], "the ticket's deliveries, oldest first, with attempt logs");
    let (_, merged) = get_json(&app, &tenant.read, &format!("/api/v1/tickets/{ticket}/messages?source=merged")).await;
    assert_eq!(merged["history"]["merged"], false);
    app.finish().await;
}

#[tokio::test]
async fn csv_exports_every_matching_row_with_rfc_4180_quoting() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(OWNER).await;
    let tricky = "Lestari, \"Dewi\"\nJakarta";
    open(&app, &tenant, "CSV-1", json!({"customerName": tricky})).await;
    open(&app, &tenant, "CSV-2", json!({})).await;
    open(&app, &tenant, "CSV-3", json!({})).await;
    for request in [
        app.http.get(app.url("/api/v1/tickets?limit=1&format=csv")),
        app.http.get(app.url("/api/v1/tickets?limit=1")).header("accept", "text/csv"),
    ] {
        let response = request.bearer_auth(&tenant.read).send().await.expect("request");
        assert_eq!(response.status(), 200);
        assert!(response.headers()["content-type"].to_str().unwrap_or("").starts_with("text/csv"));
        let text = response.text().await.expect("body");
        let mut lines = text.split("\r\n");
        assert!(lines.next().unwrap_or("").starts_with("ticketNumber,status,channel,"), "header row");
        assert!(text.contains("\"Lestari, \"\"Dewi\"\"\nJakarta\""), "quoted field: {text}");
        assert_eq!(text.matches("CSV-").count(), 3, "all rows, not one page");
        assert!(text.ends_with("\r\n"));
    }
    let ticket = fixture("incoming-text")["ticketNumber"].as_str().expect("ticket").to_string();
    assert_eq!(app.post_as_dolphins("incoming", &tenant, &fixture("incoming-text")).await.status(), 200);
    for path in [
        format!("/api/v1/tickets/{ticket}/messages?format=csv"),
        format!("/api/v1/tickets/{ticket}/events?format=csv"),
        "/api/v1/deliveries?format=csv".to_string(),
    ] {
        let response = app.http.get(app.url(&path)).bearer_auth(&tenant.read).send().await.expect("request");
        assert_eq!(response.status(), 200, "{path}");
        let text = response.text().await.expect("body");
        assert!(text.lines().count() >= 2, "{path}: {text}");
    }
    app.finish().await;
}

#[tokio::test]
async fn bad_parameters_get_400_naming_the_parameter() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(OWNER).await;
    open(&app, &tenant, "T1", json!({})).await;
    for (path, field) in [
        ("/api/v1/tickets?status=lost", "status"),
        ("/api/v1/tickets?from=31-12-2026", "from"),
        ("/api/v1/tickets?to=tomorrow", "to"),
        ("/api/v1/tickets?limit=0", "limit"),
        ("/api/v1/tickets?limit=10000", "limit"),
        ("/api/v1/tickets?cursor=eyJmIjoiMDAiLCJ0IjoiMjAyNi0wMS0wMVQwMDowMDowMFoiLCJpIjoieCJ9", "cursor"),
        ("/api/v1/tickets?tz=Nowhere", "tz"),
        ("/api/v1/tickets/T1/messages?source=somewhere", "source"),
        ("/api/v1/tickets/T1/events?cursor=zzz", "cursor"),
        ("/api/v1/reports/summary?from=2026-13-01", "from"),
        ("/api/v1/reports/timeseries?interval=week", "interval"),
        ("/api/v1/reports/timeseries?interval=hour&from=2000-01-01", "from"),
    ] {
        let (status, body) = get_json(&app, &tenant.read, path).await;
        assert_eq!(status, 400, "{path}");
        assert_eq!(body["error"]["code"], "invalid_parameter", "{path}");
        assert_eq!(body["error"]["fields"][0]["field"], field, "{path}");
    }
    app.finish().await;
}

#[tokio::test]
async fn every_query_endpoint_hides_other_tenants() {
    let app = TestApp::spawn().await;
    let ours = app.create_tenant(OWNER).await;
    let theirs = app.create_tenant("their-tenant").await;
    open(&app, &theirs, "THEIRS-1", json!({"customerName": "Secret Customer"})).await;
    open(&app, &ours, "OURS-1", json!({})).await;
    for path in [
        "/api/v1/tickets/THEIRS-1",
        "/api/v1/tickets/THEIRS-1/messages",
        "/api/v1/tickets/THEIRS-1/events",
        "/api/v1/tickets/THEIRS-1/export",
        "/api/v1/tickets/THEIRS-1/deliveries",
    ] {
        let (status, body) = get_json(&app, &ours.read, path).await;
        assert_eq!((status, body["error"]["code"].as_str()), (404, Some("ticket_not_found")), "{path}");
    }
    for path in [
        "/api/v1/tickets",
        "/api/v1/tickets?format=csv",
        "/api/v1/deliveries",
        "/api/v1/reports/summary",
        "/api/v1/reports/timeseries",
        "/api/v1/endpoints",
    ] {
        let response = app.http.get(app.url(path)).bearer_auth(&ours.read).send().await.expect("request");
        assert_eq!(response.status(), 200, "{path}");
        let text = response.text().await.expect("body");
        assert!(
            !text.contains("THEIRS") && !text.contains("Secret Customer") && !text.contains("their-tenant"),
            "{path}: {text}"
        );
    }
    let (_, summary) = get_json(&app, &ours.read, "/api/v1/reports/summary").await;
    assert_eq!(summary["ticketsOpened"], 1);
    for key in ["", "not-a-key"] {
        let response = app.http.get(app.url("/api/v1/tickets")).bearer_auth(key).send().await.expect("request");
        assert_eq!(response.status(), 401);
    }
    let inbound = app.http.get(app.url("/api/v1/tickets")).bearer_auth(&ours.inbound).send().await.expect("request");
    assert_eq!(inbound.status(), 403, "an inbound token cannot read the API");
    app.finish().await;
}
