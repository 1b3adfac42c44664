//! The operator console over plain HTTP: sessions, CSRF, who may press what, and that the
//! pages show the same store as the API. (`browser.rs` drives the same pages in Chromium.)

use std::time::Duration;

use reqwest::redirect::Policy;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{fixture, with, Tenant, TestApp, ADMIN_TOKEN};

/// A browser-like client that keeps the session cookie by hand and never follows redirects.
pub struct Session {
    http: reqwest::Client,
    base: String,
    pub cookie: String,
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(Policy::none()).build().expect("client")
}

/// Signs in; answers the sign-in reply and, when it set one, the session.
pub async fn sign_in(app: &TestApp, key: &str) -> (reqwest::Response, Option<Session>) {
    let http = client();
    let response = http.post(app.url("/console/sign-in")).form(&[("key", key)]).send().await.expect("sign in");
    let cookie = response
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_string);
    let session = cookie.map(|cookie| Session { http, base: app.url(""), cookie });
    (response, session)
}

impl Session {
    pub async fn get(&self, path: &str) -> (StatusCode, String) {
        let response =
            self.http.get(format!("{}{path}", self.base)).header("cookie", &self.cookie).send().await.expect("GET");
        let status = response.status();
        (status, response.text().await.expect("body"))
    }

    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .form(fields)
            .send()
            .await
            .expect("POST")
    }

    /// The CSRF token the pages of this session carry.
    pub async fn csrf(&self) -> String {
        let (_, page) = self.get("/console/tickets").await;
        let marker = "name=\"csrf\" value=\"";
        let start = page.find(marker).expect("a CSRF field") + marker.len();
        page[start..].split('"').next().expect("token").to_string()
    }
}

fn location(response: &reqwest::Response) -> String {
    response.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or("").to_string()
}

/// A tenant with one ticket whose delivery to the third party went dead (a 400).
async fn ticket_with_dead_delivery(app: &TestApp, owner: &str) -> (Tenant, String, String) {
    let tenant = app.create_tenant(owner).await;
    let event = with(&fixture("incoming-text"), json!({"owner": owner, "ticketNumber": format!("{owner}-T1")}));
    assert_eq!(app.post_as_dolphins("incoming", &tenant, &event).await.status(), 200);
    app.third_party.reply_next(400, &[], r#"{"error":"bad request"}"#);
    app.dispatch().await;
    let id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM deliveries WHERE owner = $1 AND status = 'dead'")
        .bind(owner)
        .fetch_one(&app.pool)
        .await
        .expect("a dead delivery");
    (tenant, format!("{owner}-T1"), id.to_string())
}

async fn delivery_status(app: &TestApp, id: &str) -> String {
    sqlx::query_scalar("SELECT status FROM deliveries WHERE id = $1::uuid")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .expect("status")
}

#[tokio::test]
async fn signing_in_sets_a_strict_http_only_expiring_cookie_and_a_wrong_key_says_why() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("console-cookie").await;

    let (response, session) = sign_in(&app, &tenant.read).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/console/overview");
    let set_cookie = response.headers().get("set-cookie").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/console", "Max-Age=28800"] {
        assert!(set_cookie.contains(attribute), "{attribute} missing from {set_cookie}");
    }
    assert!(!set_cookie.contains(&tenant.read), "the key itself must not be in the cookie");
    let session = session.expect("a session");
    let (status, page) = session.get("/console/overview").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("console-cookie"), "the overview names the tenant");

    for wrong in ["dbrd_not-a-real-key", &tenant.inbound] {
        let (response, session) = sign_in(&app, wrong).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(session.is_none(), "no cookie for a refused key");
        let page = response.text().await.expect("page");
        assert!(page.contains("role=\"alert\""), "the reason is shown: {page}");
        assert!(!page.contains("panicked") && !page.contains("sqlx"), "no internals: {page}");
    }
    app.finish().await;
}

#[tokio::test]
async fn a_session_ends_when_tampered_with_expired_revoked_or_signed_out() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("console-end").await;
    let expect_sign_in = |status: StatusCode, what: &str| {
        assert!(status == StatusCode::SEE_OTHER, "{what}: expected a redirect to sign-in, got {status}");
    };

    // Tampered: another owner in the payload, same signature.
    let (_, session) = sign_in(&app, &tenant.read).await;
    let mut session = session.expect("session");
    let value = session.cookie.split_once('=').map(|(_, v)| v.to_string()).expect("value");
    let (payload, signature) = value.split_once('.').expect("signed");
    use base64::Engine;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims: serde_json::Value = serde_json::from_slice(&engine.decode(payload).expect("b64")).expect("json");
    claims["owner"] = json!("someone-else");
    let forged = engine.encode(serde_json::to_vec(&claims).expect("json"));
    let original = std::mem::replace(&mut session.cookie, format!("bridge_console={forged}.{signature}"));
    expect_sign_in(session.get("/console/overview").await.0, "tampered");
    session.cookie = original;
    assert_eq!(session.get("/console/overview").await.0, StatusCode::OK);

    // Expired: 8 hours later.
    app.clock.advance(std::time::Duration::from_secs(8 * 3600 + 60));
    expect_sign_in(session.get("/console/overview").await.0, "expired");

    // Signed out.
    let (_, session) = sign_in(&app, &tenant.read).await;
    let session = session.expect("session");
    let csrf = session.csrf().await;
    let out = session.post("/console/sign-out", &[("csrf", &csrf)]).await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    let cleared = out.headers().get("set-cookie").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    assert!(cleared.contains("Max-Age=0"), "the cookie is cleared: {cleared}");

    // Revoked: the key's sessions end with it.
    let keys: serde_json::Value = app
        .http
        .get(app.url(&format!("/admin/v1/tenants/{}/keys", tenant.owner)))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("keys")
        .json()
        .await
        .expect("json");
    let read_id = keys["data"]
        .as_array()
        .and_then(|k| k.iter().find(|k| k["kind"] == "read"))
        .and_then(|k| k["id"].as_str())
        .expect("read key id")
        .to_string();
    let (_, session) = sign_in(&app, &tenant.read).await;
    let session = session.expect("session");
    assert_eq!(session.get("/console/tickets").await.0, StatusCode::OK);
    let revoked = app
        .http
        .delete(app.url(&format!("/admin/v1/tenants/{}/keys/{read_id}", tenant.owner)))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("revoke");
    assert!(revoked.status().is_success(), "revoke: {}", revoked.status());
    expect_sign_in(session.get("/console/tickets").await.0, "revoked");
    app.finish().await;
}

#[tokio::test]
async fn actions_need_the_sessions_csrf_token_a_same_site_origin_and_a_key_that_may_act() {
    let app = TestApp::spawn_stepped().await;
    let (tenant, _, id) = ticket_with_dead_delivery(&app, "console-csrf").await;
    let retry = format!("/console/deliveries/{id}/retry");

    let (_, operator) = sign_in(&app, &tenant.third_party).await;
    let operator = operator.expect("session");
    let csrf = operator.csrf().await;
    assert_eq!(operator.post(&retry, &[]).await.status(), StatusCode::FORBIDDEN, "no token");
    assert_eq!(operator.post(&retry, &[("csrf", "forged")]).await.status(), StatusCode::FORBIDDEN, "wrong token");
    let cross_site = operator
        .http
        .post(app.url(&retry))
        .header("cookie", &operator.cookie)
        .header("origin", "https://evil.example")
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .expect("POST");
    assert_eq!(cross_site.status(), StatusCode::FORBIDDEN, "another site's form");
    assert_eq!(delivery_status(&app, &id).await, "dead", "nothing changed so far");

    // A read key, even with its own valid token, may not act.
    let (_, reader) = sign_in(&app, &tenant.read).await;
    let reader = reader.expect("session");
    let reader_csrf = reader.csrf().await;
    let refused = reader.post(&retry, &[("csrf", &reader_csrf)]).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(refused.text().await.expect("page").contains("read key"), "the page says why");
    let cancel = reader.post(&format!("/console/deliveries/{id}/cancel"), &[("csrf", &reader_csrf)]).await;
    assert_eq!(cancel.status(), StatusCode::FORBIDDEN);
    let (_, ticket_page) = reader.get("/console/tickets/console-csrf-T1").await;
    assert!(!ticket_page.contains("Retry now"), "no retry button for a read key");
    assert_eq!(delivery_status(&app, &id).await, "dead");

    // The third-party key with its token: re-queued, audited, back on the page it came from.
    let back = "/console/tickets/console-csrf-T1";
    let done = operator.post(&retry, &[("csrf", &csrf), ("back", back)]).await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&done), format!("{back}?notice=retried"));
    assert_eq!(delivery_status(&app, &id).await, "pending");
    let kinds = crate::helpers::event_kinds(&app.pool, &tenant.owner, "console-csrf-T1").await;
    assert!(kinds.contains(&"retried".to_string()), "audited: {kinds:?}");
    // A `back` that leaves the console is ignored.
    let (_, dead_again) = (app.third_party.reply_next(400, &[], "no"), app.dispatch().await);
    assert!(dead_again >= 1);
    let elsewhere = operator.post(&retry, &[("csrf", &csrf), ("back", "https://evil.example/")]).await;
    assert!(location(&elsewhere).starts_with("/console/deliveries?"), "{}", location(&elsewhere));
    app.finish().await;
}

#[tokio::test]
async fn the_admin_picks_a_tenant_and_sees_only_that_tenants_tickets() {
    let app = TestApp::spawn().await;
    let (_, ticket_a, _) = ticket_with_dead_delivery(&app, "console-admin-a").await;
    app.create_tenant("console-admin-b").await;

    let (response, admin) = sign_in(&app, ADMIN_TOKEN).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let mut admin = admin.expect("session");
    let overview = admin.http.get(app.url("/console/overview")).header("cookie", &admin.cookie).send().await;
    let overview = overview.expect("GET");
    assert_eq!(overview.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&overview), "/console/tenants", "first, pick a tenant");
    let (_, picker) = admin.get("/console/tenants").await;
    assert!(picker.contains("console-admin-a") && picker.contains("console-admin-b"));

    let csrf = {
        let marker = "name=\"csrf\" value=\"";
        let start = picker.find(marker).expect("csrf") + marker.len();
        picker[start..].split('"').next().expect("token").to_string()
    };
    let picked = admin.post("/console/tenants", &[("csrf", &csrf), ("owner", "console-admin-b")]).await;
    assert_eq!(picked.status(), StatusCode::SEE_OTHER);
    let cookie = picked.headers().get("set-cookie").and_then(|v| v.to_str().ok()).and_then(|v| v.split(';').next());
    admin.cookie = cookie.expect("a new cookie").to_string();
    let (_, tickets) = admin.get("/console/tickets").await;
    assert!(tickets.contains("No ticket matches"), "tenant b has no tickets");
    let (status, _) = admin.get(&format!("/console/tickets/{ticket_a}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another tenant's ticket is not found");

    let picked = admin.post("/console/tenants", &[("csrf", &csrf), ("owner", "console-admin-a")]).await;
    let cookie = picked.headers().get("set-cookie").and_then(|v| v.to_str().ok()).and_then(|v| v.split(';').next());
    admin.cookie = cookie.expect("a new cookie").to_string();
    let (status, page) = admin.get(&format!("/console/tickets/{ticket_a}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Retry now"), "the admin may act");
    app.finish().await;
}

#[tokio::test]
async fn pages_escape_what_customers_write_and_load_nothing_from_elsewhere() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("console-escape").await;
    let event = with(
        &fixture("incoming-text"),
        json!({"owner": "console-escape", "ticketNumber": "XSS-1",
               "customerName": "<script>alert(1)</script>", "message": "<img src=x onerror=alert(2)>"}),
    );
    assert_eq!(app.post_as_dolphins("incoming", &tenant, &event).await.status(), 200);
    let (_, session) = sign_in(&app, &tenant.read).await;
    let session = session.expect("session");
    for path in ["/console/tickets", "/console/tickets/XSS-1", "/console/overview", "/console/deliveries"] {
        let response = session.http.get(app.url(path)).header("cookie", &session.cookie).send().await.expect("GET");
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let csp = response.headers().get("content-security-policy").and_then(|v| v.to_str().ok()).unwrap_or("");
        assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        let page = response.text().await.expect("page");
        assert!(!page.contains("<script>alert"), "{path} lets markup through");
        assert!(!page.contains("<img src=x"), "{path} lets markup through");
        for attribute in ["src=\"http", "href=\"http", "src=\"//", "href=\"//"] {
            assert!(!page.contains(attribute), "{path} refers elsewhere: {attribute}");
        }
    }
    let (_, ticket) = session.get("/console/tickets/XSS-1").await;
    assert!(ticket.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "the name is shown, escaped");

    // A ticket number with a space and a plus: the list links to a page that opens.
    let odd = with(&event, json!({"ticketNumber": "odd one+two"}));
    assert_eq!(app.post_as_dolphins("incoming", &tenant, &odd).await.status(), 200);
    let (_, list) = session.get("/console/tickets").await;
    let href = "/console/tickets/odd%20one%2Btwo";
    assert!(list.contains(&format!("href=\"{href}\"")), "{list}");
    assert_eq!(session.get(href).await.0, StatusCode::OK);
    app.finish().await;
}

#[tokio::test]
async fn the_ticket_list_filters_pages_and_downloads_the_same_rows_as_the_api() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("console-list").await;
    for (i, channel) in ["whatsapp", "telegram", "whatsapp"].iter().enumerate() {
        let event = with(
            &fixture("incoming-text"),
            json!({"owner": "console-list", "ticketNumber": format!("L-{i}"), "channel": channel,
                   "customerName": format!("Customer {i}")}),
        );
        assert_eq!(app.post_as_dolphins("incoming", &tenant, &event).await.status(), 200);
    }
    let (_, session) = sign_in(&app, &tenant.read).await;
    let session = session.expect("session");
    let (_, page) = session.get("/console/tickets?channel=whatsapp").await;
    assert!(page.contains("Customer 0") && page.contains("Customer 2") && !page.contains("Customer 1"));
    let (_, page) = session.get("/console/tickets?q=Customer%201").await;
    assert!(page.contains("Customer 1") && !page.contains("Customer 0"));

    // The form's "to" day is included (the API's `to` is exclusive).
    let opened: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT opened_at FROM tickets WHERE ticket_number = 'L-0'")
            .fetch_one(&app.pool)
            .await
            .expect("opened_at");
    let day = opened.with_timezone(&chrono_tz::Asia::Jakarta).date_naive();
    let (_, page) = session.get(&format!("/console/tickets?from={day}&to={day}")).await;
    assert!(page.contains("Customer 0"), "a day's tickets are in a range from that day to that day");
    let before = day.pred_opt().expect("a day before");
    let (_, page) = session.get(&format!("/console/tickets?from={before}&to={before}")).await;
    assert!(page.contains("No ticket matches"), "the day before holds none");

    // A bad filter is named on the page, not a 500.
    let (status, page) = session.get("/console/tickets?from=yesterday").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("from") && page.contains("role=\"alert\""), "{page}");

    // CSV of the current filter, the API's columns and rows.
    let (status, csv) = session.get("/console/tickets.csv?channel=whatsapp").await;
    assert_eq!(status, StatusCode::OK);
    let api_csv = app
        .http
        .get(app.url("/api/v1/tickets?channel=whatsapp&format=csv"))
        .bearer_auth(&tenant.read)
        .send()
        .await
        .expect("API CSV")
        .text()
        .await
        .expect("body");
    assert_eq!(csv, api_csv);
    assert_eq!(csv.lines().count(), 3, "header and two tickets: {csv}");
    app.finish().await;
}

#[tokio::test]
async fn a_replay_shows_its_count_first_and_changes_nothing_until_confirmed() {
    let app = TestApp::spawn_stepped().await;
    let (tenant, _, id) = ticket_with_dead_delivery(&app, "console-replay").await;
    let (_, session) = sign_in(&app, &tenant.third_party).await;
    let session = session.expect("session");
    let csrf = session.csrf().await;
    let today = app.clock_now().with_timezone(&chrono_tz::Asia::Jakarta).date_naive().to_string();
    let fields = [("csrf", csrf.as_str()), ("status", "dead"), ("from", today.as_str()), ("target", "")];
    let preview = session.post("/console/deliveries/replay", &fields).await;
    assert_eq!(preview.status(), StatusCode::OK);
    let page = preview.text().await.expect("page");
    let dead = app.count("SELECT count(*) FROM deliveries WHERE owner = 'console-replay' AND status = 'dead'").await;
    assert!(page.contains(&format!("<strong>{dead}</strong> deliveries would be sent again")), "{page}");
    assert_eq!(delivery_status(&app, &id).await, "dead", "a preview changes nothing");

    let missing = session.post("/console/deliveries/replay", &[("csrf", csrf.as_str()), ("status", "dead")]).await;
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
    assert!(missing.text().await.expect("page").contains("from"), "the missing field is named");

    let mut confirmed = fields.to_vec();
    confirmed.push(("confirm", "yes"));
    let done = session.post("/console/deliveries/replay", &confirmed).await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&done), format!("/console/deliveries?notice=replayed&n={dead}"));
    assert_eq!(delivery_status(&app, &id).await, "pending");
    app.finish().await;
}

#[tokio::test]
async fn the_ticket_page_merges_3dolphins_history_and_shows_the_contact() {
    use dolphin_bridge::sim::dolphins::{BridgeAccess, DolphinsSim};
    let app = TestApp::spawn().await;
    let sim = DolphinsSim::start(3).await.expect("simulator");
    let owner = "console-history";
    let tenant = app
        .create_tenant_with(json!({
            "owner": owner,
            "thirdParty": {"incomingUrl": app.third_party.url("/incoming")},
            "dolphins": {"apiBaseUrl": sim.api_base_url(), "username": "integration", "password": "pw"}
        }))
        .await;
    let access = BridgeAccess { base_url: app.url(""), inbound_token: tenant.inbound.clone(), owner: owner.into() };
    let (event, status) = sim.emit_incoming(&access).await.expect("bridge");
    assert_eq!(status, 200);
    let ticket = event["ticketNumber"].as_str().expect("ticket").to_string();
    let contact = event["contactId"].as_str().expect("contact").to_string();

    let (_, session) = sign_in(&app, &tenant.read).await;
    let session = session.expect("session");
    let csrf = session.csrf().await;
    let merged = session.post(&format!("/console/tickets/{ticket}/history"), &[("csrf", &csrf)]).await;
    assert_eq!(merged.status(), StatusCode::SEE_OTHER);
    let added =
        app.count(&format!("SELECT count(*) FROM messages WHERE owner = '{owner}' AND source = 'history'")).await;
    assert_eq!(location(&merged), format!("/console/tickets/{ticket}?notice=history&n={added}"));
    let (_, page) = session.get(&location(&merged)).await;
    assert!(page.contains(&format!("3Dolphins history merged: {added} new messages.")), "{page}");

    let (status, page) = session.get(&format!("/console/contacts/{contact}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains(&contact), "the Contact API document is shown");
    let (status, _) = session.get("/console/contacts/never-seen-here").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no enumeration through the console either");

    // 3Dolphins down: the ticket page says so instead of failing.
    sim.set_api_down(true);
    let failed = session.post(&format!("/console/tickets/{ticket}/history"), &[("csrf", &csrf)]).await;
    assert_eq!(failed.status(), StatusCode::OK);
    let page = failed.text().await.expect("page");
    assert!(page.contains("could not be merged"), "{page}");
    app.finish().await;
}

/// The `Set-Cookie` of a sign-in sent with `headers`.
async fn sign_in_cookie(app: &TestApp, key: &str, headers: &[(&str, &str)]) -> String {
    let mut request = client().post(app.url("/console/sign-in")).form(&[("key", key)]);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("sign in");
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    response.headers().get("set-cookie").and_then(|v| v.to_str().ok()).unwrap_or("").to_string()
}

#[tokio::test]
async fn the_session_cookie_is_secure_over_https_and_signs_in_over_plain_http_on_a_lan() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("console-proxy").await;
    let lan = [("host", "192.168.1.20:8080")];
    assert!(!sign_in_cookie(&app, &tenant.read, &lan).await.contains("Secure"), "plain HTTP on a LAN address");
    let proxied = [("host", "bridge.example.com"), ("x-forwarded-proto", "https")];
    assert!(sign_in_cookie(&app, &tenant.read, &proxied).await.contains("; Secure"), "behind a TLS proxy");
    app.finish().await;

    for (setting, expected) in [("always", true), ("never", false)] {
        let app = TestApp::spawn_with(crate::helpers::Options {
            env: vec![("BRIDGE_COOKIE_SECURE", setting.into())],
            ..Default::default()
        })
        .await;
        let tenant = app.create_tenant("console-proxy").await;
        let cookie = sign_in_cookie(&app, &tenant.read, &[("x-forwarded-proto", "https")]).await;
        assert_eq!(cookie.contains("; Secure"), expected, "{setting}: {cookie}");
        let plain = sign_in_cookie(&app, &tenant.read, &lan).await;
        assert_eq!(plain.contains("; Secure"), expected, "{setting}: {plain}");
        app.finish().await;
    }
}

#[tokio::test]
async fn the_overview_shows_the_share_of_first_responses_within_the_chosen_target() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("console-sla").await;
    for ticket in ["S1", "S2"] {
        let body = with(&fixture("incoming-text"), json!({"ticketNumber": ticket, "owner": tenant.owner}));
        assert_eq!(app.post_as_dolphins("incoming", &tenant, &body).await.status(), 200);
    }
    app.clock.advance(Duration::from_secs(40));
    let reply = with(&fixture("outgoing-text"), json!({"ticketNumber": "S1", "owner": tenant.owner}));
    assert_eq!(app.post_as_third_party("messages", &tenant, &reply).await.status(), 200);
    app.clock.advance(Duration::from_secs(100));
    let reply = with(&fixture("outgoing-text"), json!({"ticketNumber": "S2", "owner": tenant.owner}));
    assert_eq!(app.post_as_third_party("messages", &tenant, &reply).await.status(), 200);

    let session = sign_in(&app, &tenant.read).await.1.expect("a session");
    // S1 answered after 40 s, S2 after 140 s.
    for (target, words, share) in [("60", "within 1 min 00 s", "50 % (1)"), ("300", "within 5 min 00 s", "100 % (2)")] {
        let (status, page) = session.get(&format!("/console/overview?slaSeconds={target}")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains(words) && page.contains(share), "{target}: {page}");
    }
    let (_, page) = session.get("/console/overview").await;
    assert!(page.contains("within 5 min 00 s"), "300 s unless chosen");
    let (status, page) = session.get("/console/overview?slaSeconds=soon").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("slaSeconds"), "{page}");
    app.finish().await;
}

#[tokio::test]
async fn the_deliveries_page_finds_a_delivery_by_any_id_filters_by_day_shows_what_was_sent_and_downloads_csv() {
    let app = TestApp::spawn().await;
    let (tenant, ticket, dead) = ticket_with_dead_delivery(&app, "console-find").await;
    let second = with(&fixture("incoming-text"), json!({"owner": "console-find", "ticketNumber": "console-find-T2"}));
    assert_eq!(app.post_as_dolphins("incoming", &tenant, &second).await.status(), 200);
    app.dispatch().await;
    let (delivered, message): (uuid::Uuid, uuid::Uuid) = sqlx::query_as(
        "SELECT id, message_id FROM deliveries WHERE owner = 'console-find' AND ticket_number = 'console-find-T2'",
    )
    .fetch_one(&app.pool)
    .await
    .expect("the second delivery");
    let (_, session) = sign_in(&app, &tenant.read).await;
    let session = session.expect("session");

    // By default only what needs an operator; found by its id or its message's id, any status.
    let (_, page) = session.get("/console/deliveries").await;
    assert!(page.contains(&ticket) && !page.contains("console-find-T2"), "failed or dead only");
    for find in [delivered, message] {
        let (status, page) = session.get(&format!("/console/deliveries?find={find}")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains("console-find-T2") && !page.contains(&format!(">{ticket}<")), "find={find}: {page}");
    }
    let (status, page) = session.get("/console/deliveries?find=not-an-id").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("find"), "the page names the field: {page}");

    // What was sent: the URL and headers, the secret header masked.
    let (_, page) = session.get(&format!("/console/deliveries?find={dead}")).await;
    assert!(page.contains(&app.third_party.url("/incoming")), "the request's URL is shown");
    assert!(page.contains("webhook-signature") && page.contains("***"), "headers shown, secret masked");
    assert!(!page.contains("tp-header-value"), "the secret header's value is not on the page");

    // Day range in the tenant's zone, `to` included.
    let created: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("SELECT created_at FROM deliveries WHERE id = $1")
        .bind(delivered)
        .fetch_one(&app.pool)
        .await
        .expect("created");
    let day = created.with_timezone(&chrono_tz::Asia::Jakarta).date_naive();
    let (_, page) = session.get(&format!("/console/deliveries?status=delivered&from={day}&to={day}")).await;
    assert!(page.contains("console-find-T2"), "that day holds it");
    let before = day.pred_opt().expect("a day before");
    let (_, page) = session.get(&format!("/console/deliveries?status=delivered&from={before}&to={before}")).await;
    assert!(page.contains("No delivery matches"), "the day before holds none");

    // CSV of the current filter: the API's delivery columns and the same rows.
    let (status, csv) = session.get(&format!("/console/deliveries.csv?status=delivered&from={day}&to={day}")).await;
    assert_eq!(status, StatusCode::OK);
    let api_csv = app
        .http
        .get(app.url("/api/v1/deliveries?status=delivered&format=csv"))
        .bearer_auth(&tenant.read)
        .send()
        .await
        .expect("API CSV")
        .text()
        .await
        .expect("body");
    assert_eq!(csv, api_csv);
    assert_eq!(csv.lines().count(), 2, "header and the delivered one: {csv}");
    assert!(csv.contains(&delivered.to_string()));
    app.finish().await;
}

#[tokio::test]
async fn only_a_key_that_may_act_pauses_a_target_and_only_the_admin_manages_keys() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("console-ops").await;
    let paused = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM endpoints WHERE owner = 'console-ops' AND paused")
            .fetch_one(&app.pool)
            .await
            .expect("count")
    };
    let (_, reader) = sign_in(&app, &tenant.read).await;
    let reader = reader.expect("session");
    let csrf = reader.csrf().await;
    let refused = reader.post("/console/endpoints/third_party_incoming/pause", &[("csrf", &csrf)]).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN, "a read key cannot pause");
    assert_eq!(paused().await, 0);
    assert_eq!(reader.get("/console/keys").await.0, StatusCode::FORBIDDEN, "nor see the keys");

    let (_, operator) = sign_in(&app, &tenant.third_party).await;
    let operator = operator.expect("session");
    let csrf = operator.csrf().await;
    let forged = operator.post("/console/endpoints/third_party_incoming/pause", &[("csrf", "forged")]).await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN, "not without the session's CSRF token");
    let done = operator.post("/console/endpoints/third_party_incoming/pause", &[("csrf", &csrf)]).await;
    assert_eq!((done.status(), location(&done)), (StatusCode::SEE_OTHER, "/console/overview?notice=paused".into()));
    assert_eq!(paused().await, 1);
    let unknown = operator.post("/console/endpoints/nowhere/pause", &[("csrf", &csrf)]).await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let done = operator.post("/console/endpoints/third_party_incoming/resume", &[("csrf", &csrf)]).await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    assert_eq!(paused().await, 0);
    assert_eq!(operator.get("/console/keys").await.0, StatusCode::FORBIDDEN, "keys are the admin's");
    let create = operator.post("/console/keys", &[("csrf", &csrf)]).await;
    assert_eq!(create.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.count("SELECT count(*) FROM api_keys WHERE owner = 'console-ops'").await, 3, "no key was made");
    app.finish().await;
}
