//! Fault tests (README *Rules worth knowing*, deliveries): a peer down for a while, the bridge killed mid-burst, two
//! bridges on one database. Each asserts that nothing accepted is lost and that every
//! ticket's deliveries arrive in acceptance order.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::*;

/// Checks that every expected message arrived and that, per ticket, first arrivals are in
/// sending order. Answers how many arrivals were duplicates (allowed: at least once).
pub(crate) fn assert_complete_and_ordered(got: &[Received], expected: &BTreeMap<String, Vec<String>>) -> usize {
    let mut first_seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut seen = HashSet::new();
    let mut duplicates = 0;
    for r in got {
        let body = r.json();
        let ticket = body["ticketNumber"].as_str().unwrap_or("").to_string();
        let message = body["message"].as_str().unwrap_or("").to_string();
        if seen.insert(message.clone()) {
            first_seen.entry(ticket).or_default().push(message);
        } else {
            duplicates += 1;
            eprintln!("duplicate: {message} webhook-id {:?}", r.header("webhook-id"));
        }
    }
    for (ticket, messages) in expected {
        let arrived: Vec<&String> = first_seen.get(ticket).map(|v| v.iter().collect()).unwrap_or_default();
        let wanted: Vec<&String> = messages.iter().collect();
        // Extra arrivals (accepted but whose reply was lost in a crash) may sit between.
        let in_order: Vec<&String> = arrived.iter().copied().filter(|m| wanted.contains(m)).collect();
        assert_eq!(in_order, wanted, "ticket {ticket}: every accepted message, in order");
    }
    duplicates
}

fn event(ticket: usize, n: usize) -> Value {
    with(
        &fixture("incoming-text"),
        json!({"ticketNumber": format!("T{ticket:03}"), "message": format!("T{ticket:03}-{n:03}")}),
    )
}

async fn wait_for_unique(receiver: &Receiver, path: &str, n: usize, deadline: Duration) -> Vec<Received> {
    let until = tokio::time::Instant::now() + deadline;
    loop {
        let got = receiver.received_at(path);
        let unique: HashSet<String> =
            got.iter().map(|r| r.json()["message"].as_str().unwrap_or("").to_string()).collect();
        if unique.len() >= n {
            return got;
        }
        assert!(tokio::time::Instant::now() < until, "waited for {n} distinct messages, got {}", unique.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_peer_down_for_a_while_gets_everything_in_order_once_it_is_back() {
    let app = TestApp::spawn_with(Options {
        env: vec![("BRIDGE_RETRY_SCHEDULE", "1s,1s,1s,1s,1s,1s,1s,1s,1s,1s".into()), ("BRIDGE_WORKERS", "16".into())],
        ..Options::default()
    })
    .await;
    // The third party's address, with nobody listening yet.
    let down: SocketAddr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        probe.local_addr().expect("address")
    };
    let tenant = app
        .create_tenant_with(json!({"owner": OWNER, "thirdParty": {"incomingUrl": format!("http://{down}/incoming")}}))
        .await;
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for n in 0..20 {
        for ticket in 0..50 {
            let body = event(ticket, n);
            assert_eq!(app.post_as_dolphins("incoming", &tenant, &body).await.status(), 200);
            expected.entry(format!("T{ticket:03}")).or_default().push(body["message"].as_str().unwrap_or("").into());
        }
    }
    let receiver = Receiver::start_on(down).await;
    // Skip the breaker's cooldown instead of sleeping through it.
    app.clock.advance(Duration::from_secs(60));
    let got = wait_for_unique(&receiver, "/incoming", 1000, Duration::from_secs(60)).await;
    let duplicates = assert_complete_and_ordered(&got, &expected);
    assert_eq!(duplicates, 0, "no duplicates without a crash");
    // The last outcomes are recorded just after the receiver has the requests.
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    while app.count("SELECT count(*) FROM deliveries WHERE status <> 'delivered'").await > 0 {
        assert!(tokio::time::Instant::now() < until, "every delivery ends delivered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.finish().await;
}

/// A `dolphin-bridge serve` process of its own, on a given database.
struct BridgeProcess {
    child: Child,
    port: u16,
}

impl BridgeProcess {
    async fn start(database_url: &str, extra: &[(&str, &str)]) -> BridgeProcess {
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_dolphin-bridge"));
        command
            .arg("serve")
            .env("DATABASE_URL", database_url)
            .env("BRIDGE_LISTEN", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "error")
            .env_remove("BRIDGE_ADMIN_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in extra {
            command.env(k, v);
        }
        let child = command.spawn().expect("start serve");
        let process = BridgeProcess { child, port };
        let client = reqwest::Client::new();
        let until = tokio::time::Instant::now() + Duration::from_secs(30);
        while !client.get(process.url("/readyz")).send().await.is_ok_and(|r| r.status() == 200) {
            assert!(tokio::time::Instant::now() < until, "serve never became ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        process
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn kill_hard(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }
}

impl Drop for BridgeProcess {
    fn drop(&mut self) {
        self.kill_hard();
    }
}

/// A fresh database with one tenant made by the CLI; answers its URL and inbound token.
async fn database_with_tenant(incoming_url: &str) -> (String, String, String) {
    let db = format!("dbt_proc_{}", Uuid::new_v4().simple());
    let url = format!("{}/{db}", server_url());
    let out = Command::new(env!("CARGO_BIN_EXE_dolphin-bridge"))
        .args(["tenant", "add", "--owner", OWNER, "--third-party-url", incoming_url, "--json"])
        .env("DATABASE_URL", &url)
        .env("RUST_LOG", "error")
        .output()
        .expect("tenant add");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let created: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let token = created["credentials"]["inboundToken"].as_str().expect("token").to_string();
    (db, url, token)
}

async fn drop_database(db: &str) {
    let admin = dolphin_bridge::store::connect_lazy(&format!("{}/postgres", server_url()), 1).expect("pool");
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).execute(&admin).await;
}

#[tokio::test]
async fn a_bridge_killed_mid_burst_delivers_every_accepted_event_after_restart() {
    let receiver = Receiver::start().await;
    // A slow peer, so deliveries are in flight when the bridge dies.
    receiver.set_delay(Duration::from_millis(30));
    let (db, url, token) = database_with_tenant(&receiver.url("/incoming")).await;
    let settings = [("BRIDGE_LEASE", "2s"), ("BRIDGE_DELIVERY_TIMEOUT", "1s")];
    let mut bridge = BridgeProcess::start(&url, &settings).await;
    let client = reqwest::Client::new();
    let endpoint = bridge.url(&format!("/webhooks/3dolphins/incoming?token={token}"));
    // 20 tickets, sent in rounds; the bridge is killed partway through.
    let mut accepted: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut sent = 0;
    'burst: for n in 0..15 {
        let mut round = tokio::task::JoinSet::new();
        for ticket in 0..20 {
            let (client, endpoint, body) = (client.clone(), endpoint.clone(), event(ticket, n));
            round.spawn(async move {
                let ok = client.post(&endpoint).json(&body).send().await.is_ok_and(|r| r.status() == 200);
                (body, ok)
            });
        }
        // Ticket order only holds for events sent one after another, so a round waits.
        while let Some(Ok((body, ok))) = round.join_next().await {
            sent += 1;
            if ok {
                let ticket = body["ticketNumber"].as_str().unwrap_or("").to_string();
                accepted.entry(ticket).or_default().push(body["message"].as_str().unwrap_or("").into());
            }
        }
        if n == 7 {
            bridge.kill_hard();
            break 'burst;
        }
    }
    let accepted_count: usize = accepted.values().map(Vec::len).sum();
    assert!(accepted_count >= 100 && sent >= accepted_count, "accepted {accepted_count} of {sent}");
    let _restarted = BridgeProcess::start(&url, &settings).await;
    let got = wait_for_unique(&receiver, "/incoming", accepted_count, Duration::from_secs(60)).await;
    assert_complete_and_ordered(&got, &accepted);
    drop(_restarted);
    drop_database(&db).await;
}

#[tokio::test]
async fn two_bridges_on_one_database_send_each_delivery_once() {
    let receiver = Receiver::start().await;
    let (db, url, token) = database_with_tenant(&receiver.url("/incoming")).await;
    let a = BridgeProcess::start(&url, &[("BRIDGE_WORKERS", "4")]).await;
    let b = BridgeProcess::start(&url, &[("BRIDGE_WORKERS", "4")]).await;
    let client = reqwest::Client::new();
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for n in 0..10 {
        for ticket in 0..20 {
            let bridge = if ticket % 2 == 0 { &a } else { &b };
            let body = event(ticket, n);
            let response = client
                .post(bridge.url(&format!("/webhooks/3dolphins/incoming?token={token}")))
                .json(&body)
                .send()
                .await
                .expect("request");
            assert_eq!(response.status(), 200);
            expected.entry(format!("T{ticket:03}")).or_default().push(body["message"].as_str().unwrap_or("").into());
        }
    }
    let got = wait_for_unique(&receiver, "/incoming", 200, Duration::from_secs(60)).await;
    // Let any duplicate that might still be in flight land before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got_all = receiver.received_at("/incoming");
    assert!(got_all.len() >= got.len());
    assert_eq!(assert_complete_and_ordered(&got_all, &expected), 0, "each delivery sent exactly once");
    assert_eq!(got_all.len(), 200);
    drop((a, b));
    drop_database(&db).await;
}

#[tokio::test]
async fn a_database_cut_during_a_burst_loses_nothing_that_was_accepted() {
    use crate::database_outage::{postgres_address, Proxy};
    let proxy = Proxy::start(postgres_address()).await;
    let app = TestApp::spawn_with(Options { via: Some(proxy.address), ..Options::default() }).await;
    let tenant = app.create_tenant(OWNER).await;
    let mut accepted: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let (mut refused, mut answered) = (0, 0);
    for n in 0..20 {
        if n == 6 {
            proxy.cut();
        }
        if n == 9 {
            proxy.restore();
        }
        for ticket in 0..10 {
            let body = event(ticket, n);
            match app.post_as_dolphins("incoming", &tenant, &body).await.status().as_u16() {
                200 => {
                    answered += 1;
                    let ticket = body["ticketNumber"].as_str().unwrap_or("").to_string();
                    accepted.entry(ticket).or_default().push(body["message"].as_str().unwrap_or("").into());
                }
                503 => refused += 1,
                other => panic!("only 200 or 503 are acceptable, got {other}"),
            }
        }
    }
    assert!(refused > 0, "the cut was felt");
    assert!(answered >= 140, "the bridge recovered: {answered} accepted");
    let got = wait_for_unique(&app.third_party, "/incoming", answered, Duration::from_secs(60)).await;
    assert_complete_and_ordered(&got, &accepted);
    app.finish().await;
}
