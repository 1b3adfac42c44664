//! The console in a real headless Chromium, driven over WebDriver (Debian's `chromium` and
//! `chromium-driver`; `.ci/run` installs them). Where they are missing, these tests say so
//! and stop. Screenshots of every page go to `target/tmp/console-screenshots/`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::helpers::{fixture, with, TestApp};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// A Chromium session; the driver process is killed when this is dropped.
struct Browser {
    client: Client,
    driver: Child,
    _profile: PathBuf,
}

impl Browser {
    /// Ends the WebDriver session, which makes chromedriver quit Chromium.
    async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

/// Whether the tests run in CI, as CI services announce it (`CI=true`, or `1`).
fn running_in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

impl Drop for Browser {
    /// Chromium outlives a killed chromedriver, so after a failed test its processes are
    /// found by the profile folder only they use.
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = Command::new("pkill").arg("-KILL").arg("-f").arg(self._profile.as_os_str()).status();
        let _ = std::fs::remove_dir_all(&self._profile);
    }
}

/// Starts chromedriver and a headless Chromium at laptop width, or `None` when the
/// packages are not installed. In CI (`CI=true`) a missing browser fails the test instead:
/// a skipped browser test there would pass without having looked at the console.
async fn browser() -> Option<Browser> {
    if !std::path::Path::new(CHROMEDRIVER).exists() || !std::path::Path::new(CHROMIUM).exists() {
        let needed = "browser tests need `apt-get install chromium chromium-driver`";
        assert!(!running_in_ci(), "CI=true and Chromium is missing: {needed}");
        eprintln!("SKIPPED: {needed}");
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
    let driver = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let profile = std::env::temp_dir().join(format!("console-chromium-{}", uuid::Uuid::new_v4().simple()));
    let caps = json!({
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run",
                     "--disable-dev-shm-usage", format!("--user-data-dir={}", profile.display()),
                     "--window-size=1280,900"]
        }
    });
    let caps = caps.as_object().cloned().expect("capabilities");
    let url = format!("http://127.0.0.1:{port}");
    let mut last_error = String::new();
    for _ in 0..50 {
        // chromedriver speaks plain HTTP on loopback: no TLS needed.
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector).capabilities(caps.clone()).connect(&url).await {
            Ok(client) => return Some(Browser { client, driver, _profile: profile }),
            Err(e) => last_error = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("chromedriver did not start: {last_error}");
}

fn screenshot_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot folder");
    dir
}

async fn snap(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("screenshot");
    std::fs::write(screenshot_dir().join(format!("{name}.png")), png).expect("write screenshot");
}

async fn sign_in(client: &Client, app: &TestApp, key: &str) {
    client.goto(&app.url("/console/sign-in")).await.expect("sign-in page");
    let field = client.find(Locator::Css("#key")).await.expect("key field");
    field.send_keys(key).await.expect("type the key");
    client.find(Locator::Css("form.card button[type=submit]")).await.expect("button").click().await.expect("click");
}

async fn body_text(client: &Client) -> String {
    client.find(Locator::Css("body")).await.expect("body").text().await.expect("text")
}

#[tokio::test]
async fn an_operator_signs_in_sees_the_ticket_and_retries_a_dead_delivery() {
    let Some(browser) = browser().await else { return };
    let c = &browser.client;
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("browser-ops").await;

    // A wrong key: a clear message, still on the sign-in page.
    sign_in(c, &app, "dbtp_this-key-does-not-exist").await;
    let alert = c.wait().for_element(Locator::Css("[role=alert]")).await.expect("an error message");
    assert!(alert.text().await.expect("text").contains("not known"), "the message says why");
    snap(c, "01-sign-in-wrong-key").await;

    sign_in(c, &app, &tenant.third_party).await;
    c.wait().for_element(Locator::Css("#figures")).await.expect("the overview");
    assert_eq!(c.current_url().await.expect("url").path(), "/console/overview");

    // A customer writes; the third party refuses it for good (400), so it goes dead.
    let event = with(
        &fixture("incoming-text"),
        json!({"owner": "browser-ops", "ticketNumber": "BR-1", "customerName": "Siti Browser",
               "message": "Halo, pesanan saya belum sampai"}),
    );
    assert_eq!(app.post_as_dolphins("incoming", &tenant, &event).await.status(), 200);
    app.third_party.reply_next(400, &[], r#"{"error":"unknown customer"}"#);
    app.dispatch().await;

    c.goto(&app.url("/console/overview")).await.expect("overview");
    snap(c, "02-overview").await;
    c.goto(&app.url("/console/tickets")).await.expect("tickets");
    let row = c.wait().for_element(Locator::LinkText("BR-1")).await.expect("the new ticket is listed");
    assert!(body_text(c).await.contains("Siti Browser"));
    snap(c, "03-tickets").await;

    row.click().await.expect("open the ticket");
    c.wait().for_element(Locator::Css("ol.timeline")).await.expect("the timeline");
    let text = body_text(c).await;
    assert!(text.contains("Halo, pesanan saya belum sampai"), "the message is shown");
    assert!(text.contains("dead"), "the dead delivery is shown");
    assert!(text.contains("HTTP 400"), "with its attempt's error");
    snap(c, "04-ticket-dead-delivery").await;

    // The receiver is fixed (it answers 200 by default again); press Retry.
    c.find(Locator::XPath("//button[normalize-space()='Retry now']"))
        .await
        .expect("a retry button")
        .click()
        .await
        .expect("click");
    let notice = c.wait().for_element(Locator::Css(".notice")).await.expect("a notice");
    assert!(notice.text().await.expect("text").contains("queued again"));
    assert_eq!(app.dispatch().await, 1, "the re-queued delivery is sent");
    let received = app.third_party.wait_for("/incoming", 2).await;
    assert_eq!(received.last().map(|r| r.json()["message"].clone()), Some(json!("Halo, pesanan saya belum sampai")));
    c.refresh().await.expect("reload");
    c.wait().for_element(Locator::Css("ul.deliveries")).await.expect("deliveries");
    let deliveries = c.find(Locator::Css("ul.deliveries")).await.expect("list").text().await.expect("text");
    assert!(deliveries.contains("delivered"), "now delivered: {deliveries}");
    snap(c, "05-ticket-delivered").await;

    // The deliveries page and the replay preview.
    app.third_party.reply_next(400, &[], "no");
    let other = with(&event, json!({"ticketNumber": "BR-2"}));
    assert_eq!(app.post_as_dolphins("incoming", &tenant, &other).await.status(), 200);
    app.dispatch().await;
    c.goto(&app.url("/console/deliveries")).await.expect("deliveries");
    assert!(body_text(c).await.contains("BR-2"), "the dead delivery is listed");
    snap(c, "06-deliveries").await;
    let today = app.clock_now().with_timezone(&chrono_tz::Asia::Jakarta).date_naive().to_string();
    // A date input's typing order follows the browser's locale; set its value directly.
    c.execute("document.getElementById('replay-from').value = arguments[0];", vec![json!(today)])
        .await
        .expect("choose the day");
    c.find(Locator::XPath("//button[contains(., 'Count what this would re-send')]"))
        .await
        .expect("preview button")
        .click()
        .await
        .expect("click");
    let count = c.wait().for_element(Locator::Css("#replay-count")).await.expect("the count");
    assert!(count.text().await.expect("text").starts_with("1 deliveries would be sent again"));
    snap(c, "07-replay-preview").await;

    // Cancel asks first: dismissing changes nothing, accepting cancels.
    let status_of_br2 = || async {
        sqlx::query_scalar::<_, String>("SELECT status FROM deliveries WHERE ticket_number = 'BR-2'")
            .fetch_one(&app.pool)
            .await
            .expect("status")
    };
    c.goto(&app.url("/console/deliveries?ticket=BR-2")).await.expect("deliveries");
    let cancel = Locator::XPath("//button[normalize-space()='Cancel']");
    c.find(cancel).await.expect("a cancel button").click().await.expect("click");
    let question = c.get_alert_text().await.expect("a confirmation dialog");
    assert!(question.contains("will not be sent again"), "the dialog says what cancel does: {question}");
    c.dismiss_alert().await.expect("dismiss");
    assert_eq!(status_of_br2().await, "dead", "dismissed: nothing changed");
    c.find(cancel).await.expect("a cancel button").click().await.expect("click");
    c.accept_alert().await.expect("accept");
    let notice = c.wait().for_element(Locator::Css(".notice")).await.expect("a notice");
    assert!(notice.text().await.expect("text").contains("cancelled"));
    assert_eq!(status_of_br2().await, "cancelled");

    // A phone's width: the ticket page still reads top to bottom.
    c.set_window_size(390, 844).await.expect("phone size");
    c.goto(&app.url("/console/tickets/BR-1")).await.expect("ticket");
    c.wait().for_element(Locator::Css("ol.timeline")).await.expect("timeline");
    let overflow: serde_json::Value = c
        .execute("return document.documentElement.scrollWidth > window.innerWidth + 1;", vec![])
        .await
        .expect("measure");
    assert_eq!(overflow, json!(false), "no sideways scrolling at 390 px");
    snap(c, "08-ticket-phone").await;
    c.set_window_size(1280, 900).await.expect("laptop size");

    // Sign out: back to the sign-in page, and the console is closed.
    c.find(Locator::XPath("//button[normalize-space()='Sign out']"))
        .await
        .expect("sign out")
        .click()
        .await
        .expect("click");
    c.wait().for_element(Locator::Css("#key")).await.expect("the sign-in page");
    c.goto(&app.url("/console/tickets")).await.expect("tickets");
    assert_eq!(c.current_url().await.expect("url").path(), "/console/sign-in");
    browser.close().await;
    app.finish().await;
}

#[tokio::test]
async fn a_read_key_sees_everything_but_no_buttons_that_change_anything() {
    let Some(browser) = browser().await else { return };
    let c = &browser.client;
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("browser-read").await;
    let event = with(&fixture("incoming-text"), json!({"owner": "browser-read", "ticketNumber": "RD-1"}));
    assert_eq!(app.post_as_dolphins("incoming", &tenant, &event).await.status(), 200);
    app.third_party.reply_next(400, &[], "no");
    app.dispatch().await;

    sign_in(c, &app, &tenant.read).await;
    c.wait().for_element(Locator::Css("#figures")).await.expect("the overview");
    assert!(body_text(c).await.contains("read-only"), "the header says the session is read-only");
    c.goto(&app.url("/console/tickets/RD-1")).await.expect("ticket");
    c.wait().for_element(Locator::Css("ul.deliveries")).await.expect("deliveries");
    assert!(body_text(c).await.contains("dead"));
    let buttons =
        c.find_all(Locator::XPath("//button[normalize-space()='Retry now' or normalize-space()='Cancel']")).await;
    assert!(buttons.expect("search").is_empty(), "no retry or cancel for a read key");
    snap(c, "09-ticket-read-only").await;
    c.goto(&app.url("/console/deliveries")).await.expect("deliveries");
    assert!(c.find_all(Locator::Css("#replay")).await.expect("search").is_empty(), "no replay form either");

    // Posting the retry form anyway (as a crafted page would) is refused.
    let id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM deliveries WHERE owner = 'browser-read'")
        .fetch_one(&app.pool)
        .await
        .expect("delivery");
    let script = format!(
        "const f = document.createElement('form'); f.method = 'post'; f.action = '/console/deliveries/{id}/retry';
         const t = document.querySelector('input[name=csrf]').cloneNode(); f.appendChild(t);
         document.body.appendChild(f); f.submit();"
    );
    c.execute(&script, vec![]).await.expect("post the form");
    let alert = c.wait().for_element(Locator::Css("[role=alert]")).await.expect("a refusal");
    assert!(alert.text().await.expect("text").contains("read key"));
    snap(c, "10-read-key-refused").await;
    let status: String = sqlx::query_scalar("SELECT status FROM deliveries WHERE id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .expect("status");
    assert_eq!(status, "dead", "nothing was re-queued");
    browser.close().await;
    app.finish().await;
}

/// Clicks the button whose text is `label`.
async fn press(client: &Client, label: &str) {
    client
        .find(Locator::XPath(&format!("//button[normalize-space()='{label}']")))
        .await
        .unwrap_or_else(|e| panic!("a {label:?} button: {e}"))
        .click()
        .await
        .expect("click");
}

async fn notice_text(client: &Client) -> String {
    client.wait().for_element(Locator::Css(".notice")).await.expect("a notice").text().await.expect("text")
}

#[tokio::test]
async fn an_operator_pauses_and_resumes_a_target_finds_a_delivery_and_the_overview_refresh_keeps_panels_open() {
    let Some(browser) = browser().await else { return };
    let c = &browser.client;
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("browser-pause").await;
    sign_in(c, &app, &tenant.third_party).await;
    c.wait().for_element(Locator::Css("#figures")).await.expect("the overview");

    // Pause the third party's incoming target: an event waits; resume: it goes out.
    let paused = || async {
        sqlx::query_scalar::<_, bool>(
            "SELECT COALESCE((SELECT paused FROM endpoints WHERE owner = 'browser-pause'
                              AND target = 'third_party_incoming'), false)",
        )
        .fetch_one(&app.pool)
        .await
        .expect("paused")
    };
    let row = "//tr[th[normalize-space()='third_party_incoming']]";
    c.find(Locator::XPath(&format!("{row}//button[normalize-space()='Pause']")))
        .await
        .expect("a pause button in the target's row")
        .click()
        .await
        .expect("click");
    assert!(notice_text(c).await.contains("paused"));
    assert!(paused().await, "the target is paused");
    let event = with(&fixture("incoming-text"), json!({"owner": "browser-pause", "ticketNumber": "P-1"}));
    assert_eq!(app.post_as_dolphins("incoming", &tenant, &event).await.status(), 200);
    app.dispatch().await;
    assert_eq!(app.third_party.received_at("/incoming").len(), 0, "nothing is sent while paused");
    snap(c, "20-overview-paused").await;
    c.find(Locator::XPath(&format!("{row}//button[normalize-space()='Resume']")))
        .await
        .expect("a resume button in the target's row")
        .click()
        .await
        .expect("click");
    assert!(notice_text(c).await.contains("resumed"));
    assert!(!paused().await);
    app.dispatch().await;
    assert_eq!(app.third_party.wait_for("/incoming", 1).await.len(), 1, "sent once resumed");

    // The refresh keeps an open panel open, and stops while paused (also after a reload).
    c.goto(&app.url("/console/overview")).await.expect("overview");
    c.find(Locator::Css("#chart-figures summary")).await.expect("the chart's figures").click().await.expect("open");
    let refresh = "const done = arguments[arguments.length - 1]; window.refreshOverview().then(() => done(\
                   [document.getElementById('live').getAttribute('data-refreshed'), \
                    document.getElementById('chart-figures').open]));";
    let first = c.execute_async(refresh, vec![]).await.expect("refresh");
    assert!(first[0].is_string(), "the figures were refreshed: {first}");
    assert_eq!(first[1], json!(true), "the open panel is still open after the refresh");
    press(c, "Pause refresh").await;
    let during = c.execute_async(refresh, vec![]).await.expect("refresh while paused");
    assert_eq!(during[0], first[0], "paused: nothing was replaced");
    c.refresh().await.expect("reload");
    let switch = c.wait().for_element(Locator::Css("#refresh-switch")).await.expect("the switch");
    assert_eq!(switch.text().await.expect("text"), "Resume refresh", "the pause holds across a reload");
    snap(c, "21-overview-refresh-paused").await;
    press(c, "Resume refresh").await;
    let after = c.execute_async(refresh, vec![]).await.expect("refresh again");
    assert!(after[0].is_string(), "refreshing again: {after}");

    // Find the delivery by its id (the webhook-id the receiver logged), see what was sent.
    let webhook_id = app.third_party.received_at("/incoming")[0].header("webhook-id").expect("webhook-id").to_string();
    c.goto(&app.url("/console/deliveries")).await.expect("deliveries");
    c.find(Locator::Css("#find")).await.expect("the find field").send_keys(&webhook_id).await.expect("type");
    press(c, "Filter").await;
    c.wait().for_element(Locator::Css("ul.deliveries")).await.expect("the delivery");
    c.find(Locator::XPath("//summary[starts-with(normalize-space(), 'Attempts')]"))
        .await
        .expect("the attempts")
        .click()
        .await
        .expect("open");
    c.find(Locator::Css("details.request summary")).await.expect("what was sent").click().await.expect("open");
    let sent = c.find(Locator::Css("details.request")).await.expect("request").text().await.expect("text");
    assert!(sent.contains(&app.third_party.url("/incoming")), "the URL: {sent}");
    assert!(sent.contains("webhook-id") && sent.contains(&webhook_id), "the headers: {sent}");
    assert!(sent.contains("***") && !sent.contains("tp-header-value"), "the secret header masked: {sent}");
    snap(c, "22-delivery-found-request").await;

    // Delivered ones of today, and their CSV through the page's own link.
    let today = app.clock_now().with_timezone(&chrono_tz::Asia::Jakarta).date_naive().to_string();
    c.goto(&app.url("/console/deliveries")).await.expect("deliveries");
    c.execute(
        "document.getElementById('status').value = 'delivered'; \
         document.getElementById('from').value = arguments[0]; document.getElementById('to').value = arguments[0];",
        vec![json!(today)],
    )
    .await
    .expect("choose the days");
    press(c, "Filter").await;
    c.wait().for_element(Locator::Css("ul.deliveries")).await.expect("today's deliveries");
    assert!(body_text(c).await.contains("P-1"));
    let csv = c
        .execute_async(
            "const done = arguments[arguments.length - 1]; \
             fetch(document.querySelector('a[download]').href).then(r => r.text()).then(done);",
            vec![],
        )
        .await
        .expect("the CSV");
    let csv = csv.as_str().unwrap_or_default();
    assert_eq!(csv.lines().count(), 2, "header and the one delivery: {csv}");
    assert!(csv.contains(&webhook_id));
    browser.close().await;
    app.finish().await;
}

#[tokio::test]
async fn an_admin_creates_and_revokes_a_read_key_and_rotates_the_signing_secret() {
    let Some(browser) = browser().await else { return };
    let c = &browser.client;
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant("browser-keys").await;
    sign_in(c, &app, crate::helpers::ADMIN_TOKEN).await;
    c.wait().for_element(Locator::Css("#owner")).await.expect("the tenant picker");
    c.execute("document.getElementById('owner').value = 'browser-keys';", vec![]).await.expect("choose");
    press(c, "Show this tenant").await;
    c.wait().for_element(Locator::Css("#figures")).await.expect("the overview");
    c.find(Locator::LinkText("Keys")).await.expect("the admin's Keys tab").click().await.expect("click");
    c.wait().for_element(Locator::Css("#keys")).await.expect("the keys page");
    let listed = |c: &Client| {
        let c = c.clone();
        async move { c.find_all(Locator::Css("tr[data-key]")).await.expect("rows").len() }
    };
    assert_eq!(listed(c).await, 3, "the tenant's three keys");

    // A new read key, shown once, works against the API.
    press(c, "Create a read key").await;
    let shown = c.wait().for_element(Locator::Css("#shown-once code")).await.expect("the new key");
    let key = shown.text().await.expect("text");
    assert!(key.starts_with("dbrd_"), "a read key: {key}");
    snap(c, "23-keys-created").await;
    let use_key = |key: String| {
        let (http, url) = (app.http.clone(), app.url("/api/v1/tickets"));
        async move { http.get(url).bearer_auth(key).send().await.expect("request").status().as_u16() }
    };
    assert_eq!(use_key(key.clone()).await, 200, "the new key reads");
    assert_eq!(listed(c).await, 4);
    c.goto(&app.url("/console/keys")).await.expect("the keys page again");
    assert!(c.find(Locator::Css("#shown-once")).await.is_err(), "the key is not shown again");

    // Revoke it (asks first): the API refuses it from now on.
    let prefix = key.chars().take(8).collect::<String>();
    let row = format!("//tr[td/code[starts-with(normalize-space(), '{prefix}')]]");
    c.find(Locator::XPath(&format!("{row}//button[normalize-space()='Revoke']")))
        .await
        .expect("its revoke button")
        .click()
        .await
        .expect("click");
    assert!(c.get_alert_text().await.expect("a confirmation").contains("Revoke this key"));
    c.accept_alert().await.expect("accept");
    assert!(notice_text(c).await.contains("revoked"));
    assert_eq!(use_key(key).await, 401, "the revoked key is refused");

    // Rotate the signing secret: both sign, then retire the old one.
    press(c, "Rotate the signing secret").await;
    c.accept_alert().await.expect("accept");
    let secret = c.wait().for_element(Locator::Css("#shown-once code")).await.expect("the new secret");
    let secret = secret.text().await.expect("text");
    assert!(secret.starts_with("whsec_"), "{secret}");
    let first = with(&fixture("incoming-text"), json!({"owner": "browser-keys"}));
    assert_eq!(app.post_as_dolphins("incoming", &tenant, &first).await.status(), 200);
    app.dispatch().await;
    let got = app.third_party.wait_for("/incoming", 1).await;
    for s in [&tenant.signing_secret, &secret] {
        dolphin_bridge::signature::verify(s, &got[0].body, &got[0].headers).expect("both secrets verify");
    }
    press(c, "Retire the previous secret").await;
    c.accept_alert().await.expect("accept");
    assert!(notice_text(c).await.contains("retired"));
    snap(c, "24-keys-secret-retired").await;
    let second = with(&fixture("incoming-image"), json!({"owner": "browser-keys", "ticketNumber": "after-retire"}));
    assert_eq!(app.post_as_dolphins("incoming", &tenant, &second).await.status(), 200);
    app.dispatch().await;
    let got = app.third_party.wait_for("/incoming", 2).await;
    dolphin_bridge::signature::verify(&secret, &got[1].body, &got[1].headers).expect("the new secret verifies");
    assert!(dolphin_bridge::signature::verify(&tenant.signing_secret, &got[1].body, &got[1].headers).is_err());
    browser.close().await;
    app.finish().await;
}
