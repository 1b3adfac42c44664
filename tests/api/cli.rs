//! The binary itself: configuration errors, `tenant add/list`, `serve` and SIGTERM.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::*;

fn bridge() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dolphin-bridge"));
    command.env_remove("BRIDGE_ADMIN_TOKEN").env("RUST_LOG", "warn").stdin(Stdio::null());
    command
}

async fn drop_database(name: &str) {
    let admin = dolphin_bridge::store::connect_lazy(&format!("{}/postgres", server_url()), 1).expect("pool");
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&admin).await;
}

#[test]
fn bad_configuration_is_one_line_naming_the_variable_with_exit_code_2() {
    for (var, value) in [("BRIDGE_WORKERS", "zero"), ("BRIDGE_LEASE", "soon"), ("BRIDGE_LISTEN", "everywhere")] {
        let out = bridge().arg("migrate").env(var, value).output().expect("run the binary");
        assert_eq!(out.status.code(), Some(2), "{var}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(var) && stderr.contains(value), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn serve_help_lists_every_setting_with_its_variable_and_default_and_hides_secret_values() {
    let secrets = [
        ("DATABASE_URL", "postgres://u:db-password-123@db.example/bridge"),
        ("BRIDGE_READ_DATABASE_URL", "postgres://u:replica-password-456@standby/bridge"),
        ("BRIDGE_ADMIN_TOKEN", "admin-token-value-0123456789"),
        ("BRIDGE_SECRET_KEY", "c2VjcmV0LWtleS12YWx1ZS0wMTIzNDU2Nzg5MDEyMzQ1"),
    ];
    let out = bridge().args(["serve", "--help"]).envs(secrets).output().expect("run the binary");
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for s in dolphin_bridge::config::SETTINGS {
        let line = help.lines().find(|l| l.contains(&format!("--{} ", s.flag))).unwrap_or_default();
        assert!(line.contains(&format!("[env: {}", s.var)), "{} is listed with its variable: {line:?}", s.var);
        if let Some(default) = s.default {
            assert!(line.contains(&format!("[default: {default}]")), "{} shows its default: {line:?}", s.var);
        }
    }
    for (var, value) in secrets {
        assert!(!help.contains(value), "the value of {var} is not shown");
    }
    // A flag overrides its variable, and is checked the same way.
    let out = bridge().args(["migrate", "--workers", "0"]).env("BRIDGE_WORKERS", "8").output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("BRIDGE_WORKERS=\"0\""));
}

#[test]
fn the_readme_documents_every_setting_with_the_default_the_binary_uses() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    for s in dolphin_bridge::config::SETTINGS {
        let row = readme.lines().find(|l| l.starts_with(&format!("| `{}` |", s.var)));
        let row = row.unwrap_or_else(|| panic!("the README's configuration table has no row for {}", s.var));
        if let Some(default) = s.default {
            assert!(row.contains(&format!("`{default}`")), "the README gives {} the default {default}: {row}", s.var);
        }
    }
}

#[tokio::test]
async fn tenant_add_creates_the_database_and_prints_credentials_once() {
    let db = format!("dbt_cli_{}", Uuid::new_v4().simple());
    let url = format!("{}/{db}", server_url());
    let out = bridge()
        .args(["tenant", "add", "--owner", "cli-owner", "--third-party-url", "https://cc.example/in", "--json"])
        .env("DATABASE_URL", &url)
        .output()
        .expect("run the binary");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let created: Value = serde_json::from_slice(&out.stdout).expect("stdout is the JSON reply alone");
    let read_key = created["credentials"]["readKey"].as_str().expect("read key").to_string();
    assert_eq!(created["owner"], "cli-owner");
    assert!(created["keyIds"]["thirdParty"].is_string());

    let out = bridge().args(["tenant", "list"]).env("DATABASE_URL", &url).output().expect("run the binary");
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(listed.contains("cli-owner") && listed.contains("https://cc.example/in"), "{listed}");
    assert!(!listed.contains(&read_key), "no secrets in the listing");

    let out = bridge()
        .args(["tenant", "add", "--owner", "cli-owner", "--third-party-url", "https://cc.example/in"])
        .env("DATABASE_URL", &url)
        .output()
        .expect("run the binary");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists already"));
    drop_database(&db).await;
}

#[tokio::test]
async fn serve_answers_and_stops_cleanly_on_sigterm() {
    let db = format!("dbt_cli_{}", Uuid::new_v4().simple());
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
    let mut child = bridge()
        .arg("serve")
        .env("DATABASE_URL", format!("{}/{db}", server_url()))
        .env("BRIDGE_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start serve");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = client.get(format!("http://127.0.0.1:{port}/readyz")).send().await;
        if ready.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "serve never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "serve did not stop after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "graceful exit, got {status}");
    drop_database(&db).await;
}

#[tokio::test]
async fn doctor_reports_each_endpoint_and_fails_when_one_is_unreachable() {
    let receiver = Receiver::start().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port");
    let db = format!("dbt_cli_{}", Uuid::new_v4().simple());
    let url = format!("{}/{db}", server_url());
    let added = bridge()
        .args(["tenant", "add", "--owner", "doc-owner", "--third-party-url", &receiver.url("/in")])
        .args(["--dolphins-url", &format!("http://{closed}/send")])
        .env("DATABASE_URL", &url)
        .output()
        .expect("tenant add");
    assert!(added.status.success());
    // The receiver lives on this test's runtime: run the blocking child off it.
    let mut doctor = bridge();
    doctor.arg("doctor").env("DATABASE_URL", &url);
    let out = tokio::task::spawn_blocking(move || doctor.output()).await.expect("join").expect("doctor");
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(report.lines().any(|l| l.starts_with("ok") && l.contains("third_party_incoming")), "{report}");
    assert!(report.lines().any(|l| l.starts_with("FAIL") && l.contains("dolphins_message")), "{report}");
    assert!(report.lines().any(|l| l.starts_with("ok") && l.contains("migrations")), "{report}");
    assert!(report.lines().any(|l| l.starts_with("ok") && l.contains("integrity")), "{report}");
    drop_database(&db).await;
}

#[tokio::test]
async fn doctor_counts_rows_whose_parent_is_missing() {
    let db = format!("dbt_cli_{}", Uuid::new_v4().simple());
    let url = format!("{}/{db}", server_url());
    let added = bridge()
        .args(["tenant", "add", "--owner", "doc-owner", "--third-party-url", "http://127.0.0.1:9/in"])
        .env("DATABASE_URL", &url)
        .output();
    assert!(added.expect("tenant add").status.success());
    let pool = sqlx::PgPool::connect(&url).await.expect("connect");
    sqlx::query(
        "INSERT INTO messages (owner, id, ticket_number, direction, source, at, raw)
         VALUES ('doc-owner', gen_random_uuid(), 'no-such-ticket', 'in', '3dolphins', now(), '{}')",
    )
    .execute(&pool)
    .await
    .expect("orphan message");
    pool.close().await;
    let mut doctor = bridge();
    doctor.arg("doctor").env("DATABASE_URL", &url);
    let out = tokio::task::spawn_blocking(move || doctor.output()).await.expect("join").expect("doctor");
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{report}");
    let line = report.lines().find(|l| l.contains("integrity")).unwrap_or_default();
    assert!(line.starts_with("FAIL") && line.contains("1 messages, 0 ticket events"), "{report}");
    drop_database(&db).await;
}

#[test]
fn a_malformed_host_list_is_one_line_naming_the_bad_part_with_exit_code_2() {
    for (url, bad_part) in [
        ("postgres://u:hunter2@127.0.0.1:6001,,127.0.0.1:6003/db", "host 2 of the list"),
        ("postgres://u:hunter2@127.0.0.1:6001,127.0.0.1:66000/db", "bad port \"66000\""),
        ("postgres://u:hunter2@a:1,b:2/db?target_session_attrs=master", "unknown target_session_attrs \"master\""),
        ("postgres://u:hunter2@a:1,b:2/db?target_session_attrs=standby", "never reaches a server it can write to"),
    ] {
        let out = bridge().arg("migrate").env("DATABASE_URL", url).output().expect("run the binary");
        assert_eq!(out.status.code(), Some(2), "{url}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains("DATABASE_URL") && stderr.contains(bad_part), "{url}: {stderr}");
        assert!(!stderr.contains("hunter2"), "the password is hidden: {stderr}");
    }
}

#[tokio::test]
async fn serve_with_no_primary_in_its_host_list_waits_answering_503_and_never_exits() {
    // Two hosts where nothing listens: no host is ever read-write.
    let free = || std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
    let (a, b, port) = (free(), free(), free());
    let url = format!("postgres://postgres@127.0.0.1:{a},127.0.0.1:{b}/db?target_session_attrs=read-write");
    let log = std::env::temp_dir().join(format!("serve-no-primary-{}.log", Uuid::new_v4().simple()));
    let mut child = bridge()
        .arg("serve")
        .env("DATABASE_URL", &url)
        .env("BRIDGE_LISTEN", format!("127.0.0.1:{port}"))
        .env("BRIDGE_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("start serve");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let ready = loop {
        if let Ok(r) = client.get(format!("http://127.0.0.1:{port}/readyz")).send().await {
            break r;
        }
        assert!(Instant::now() < deadline, "serve never listened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(ready.status(), 503);
    assert_eq!(ready.json::<Value>().await.expect("JSON")["database"], "no_primary");
    let webhook = client
        .post(format!("http://127.0.0.1:{port}/webhooks/3dolphins/incoming?token=x"))
        .json(&fixture("incoming-text"))
        .send()
        .await
        .expect("request");
    assert_eq!(webhook.status(), 503);
    assert_eq!(webhook.json::<Value>().await.expect("JSON")["error"]["code"], "unavailable");
    // Still trying, a few seconds on: alive, and saying why in the log every few seconds.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(child.try_wait().expect("status").is_none(), "serve must not exit while it waits");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let waits = text.lines().filter(|l| l.contains("no database host fits target_session_attrs")).count();
    assert!(waits >= 2, "a log line every few seconds, got {waits}: {text}");
    assert!(text.contains(&format!("127.0.0.1:{a}")) && text.contains(&format!("127.0.0.1:{b}")), "each host named");
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_file(&log);
}

#[tokio::test]
async fn doctor_lists_each_host_of_the_list_with_its_role_and_fails_on_one_that_is_down() {
    let db = format!("dbt_cli_{}", Uuid::new_v4().simple());
    let down = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port");
    let added = bridge()
        .args(["tenant", "add", "--owner", "doc-owner", "--third-party-url", "http://127.0.0.1:9/in"])
        .env("DATABASE_URL", format!("{}/{db}", server_url()))
        .output()
        .expect("tenant add");
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    // The local server first, then a host where nothing listens.
    let list = format!("{},{down}/{db}?target_session_attrs=read-write", server_url());
    let mut doctor = bridge();
    doctor.arg("doctor").env("DATABASE_URL", &list);
    let out = tokio::task::spawn_blocking(move || doctor.output()).await.expect("join").expect("doctor");
    let report = String::from_utf8_lossy(&out.stdout);
    let local = server_url().rsplit_once('@').map_or(String::new(), |(_, host)| host.to_string());
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(report.lines().any(|l| l.starts_with("ok") && l.contains(&format!("{local}: primary"))), "{report}");
    assert!(report.lines().any(|l| l.starts_with("FAIL") && l.contains(&down.to_string())), "{report}");
    assert!(report.lines().any(|l| l.starts_with("ok") && l.contains("migrations")), "the primary is used: {report}");
    drop_database(&db).await;
}

#[tokio::test]
async fn healthcheck_exits_0_when_ready_and_1_when_not_or_silent_within_5_s() {
    let app = TestApp::spawn().await;
    // Run on the blocking pool: the bridge under test is served by this test's runtime.
    let healthcheck = |url: String| async move {
        tokio::task::spawn_blocking(move || bridge().args(["healthcheck", "--url", &url]).output())
            .await
            .expect("join")
            .expect("healthcheck")
    };
    let ready = healthcheck(app.url("/readyz")).await;
    assert_eq!(ready.status.code(), Some(0), "{}", String::from_utf8_lossy(&ready.stderr));
    assert!(String::from_utf8_lossy(&ready.stdout).starts_with("ready"));
    app.finish().await;

    // A 503 (a bridge whose database is gone answers so) is "not ready".
    let unready = Receiver::start().await;
    unready.reply_next(503, &[], r#"{"status":"not_ready","database":"unreachable"}"#);
    let not_ready = healthcheck(unready.url("/readyz")).await;
    assert_eq!(not_ready.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&not_ready.stderr).contains("not ready (503"), "{not_ready:?}");

    // Nothing listening: 1, at once; a peer that never answers: 1 within the 5 s.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
    let gone =
        bridge().args(["healthcheck", "--url", &format!("http://127.0.0.1:{closed}/readyz")]).output().expect("run");
    assert_eq!(gone.status.code(), Some(1));
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let started = Instant::now();
    let url = format!("http://{}/readyz", silent.local_addr().expect("address"));
    let hung = healthcheck(url).await;
    assert_eq!(hung.status.code(), Some(1));
    assert!(started.elapsed() < Duration::from_secs(7), "gave up after {:?}", started.elapsed());
}

#[tokio::test]
async fn doctor_probes_every_endpoint_at_once() {
    // Five endpoints that each take 2 s to answer: one after another that is 10 s.
    let slow = Receiver::start().await;
    slow.set_delay(Duration::from_secs(2));
    let db = format!("dbt_cli_{}", Uuid::new_v4().simple());
    let url = format!("{}/{db}", server_url());
    let added = bridge()
        .args(["tenant", "add", "--owner", "slow-owner", "--third-party-url", &slow.url("/in")])
        .args(["--third-party-outgoing-url", &slow.url("/out"), "--third-party-command-url", &slow.url("/cmd")])
        .args(["--dolphins-url", &slow.url("/send"), "--dolphins-command-url", &slow.url("/command")])
        .env("DATABASE_URL", &url)
        .output()
        .expect("tenant add");
    assert!(added.status.success());
    let mut doctor = bridge();
    doctor.arg("doctor").env("DATABASE_URL", &url);
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || doctor.output()).await.expect("join").expect("doctor");
    let took = started.elapsed();
    let report = String::from_utf8_lossy(&out.stdout);
    let probed = report.lines().filter(|l| l.starts_with("ok") && l.contains("slow-owner")).count();
    assert_eq!(probed, 5, "{report}");
    assert!(took < Duration::from_secs(6), "five 2-second probes took {took:?}");
    drop_database(&db).await;
}

#[tokio::test]
async fn rollups_verify_finds_damaged_rollups_and_rebuild_restores_them_from_the_raw_rows() {
    let app = TestApp::spawn_stepped().await;
    let tenant = app.create_tenant(OWNER).await;
    let two_days_ago = (app.clock_now() - chrono::Duration::days(2)).to_rfc3339();
    for ticket in ["R1", "R2"] {
        let body = with(&fixture("incoming-text"), json!({"ticketNumber": ticket, "createdDate": two_days_ago}));
        assert_eq!(app.post_as_dolphins("incoming", &tenant, &body).await.status(), 200);
    }
    let read = || async {
        let r = app.http.get(app.url("/api/v1/reports/summary")).bearer_auth(&tenant.read).send().await.expect("get");
        r.json::<Value>().await.expect("JSON")
    };
    dolphin_bridge::rollup_task::run_once(&app.pool, app.clock_now()).await.expect("rollups");
    let rolled =
        app.count("SELECT COALESCE(sum(tickets_opened), 0)::bigint FROM report_rollups WHERE span = 'quarter'").await;
    assert_eq!(rolled, 2, "the tickets' quarter is rolled up");
    assert_eq!(read().await["ticketsOpened"], 2);

    let url = format!("{}/{}", server_url(), app.db_name);
    let rollups = |args: &'static [&'static str]| {
        let url = url.clone();
        async move {
            let out = tokio::task::spawn_blocking(move || {
                bridge().arg("rollups").args(args).args(["--owner", OWNER]).env("DATABASE_URL", url).output()
            })
            .await
            .expect("join")
            .expect("run");
            (out.status.code(), String::from_utf8_lossy(&out.stdout).to_string())
        }
    };
    let (code, stdout) = rollups(&["verify"]).await;
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("agree with the raw rows"), "{stdout}");

    // Damaged rollups give wrong answers, verify says where; rebuild restores them.
    sqlx::query("UPDATE report_rollups SET tickets_opened = 99").execute(&app.pool).await.expect("damage");
    assert_eq!(read().await["ticketsOpened"], 99, "the summary reads the rollup rows");
    let (code, stdout) = rollups(&["verify"]).await;
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("overall: ticketsOpened 99 from rollups, 2 from the raw rows"), "{stdout}");
    let (code, stdout) = rollups(&["rebuild"]).await;
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.starts_with(&format!("{OWNER}: ")) && stdout.contains("quarter hours rolled up"), "{stdout}");
    assert_eq!(read().await["ticketsOpened"], 2);
    assert_eq!(rollups(&["verify"]).await.0, Some(0));
    app.finish().await;
}
