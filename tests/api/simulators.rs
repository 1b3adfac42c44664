//! The two simulators talking through the bridge: both sides and the database agree on
//! every message and on every ticket's final status.

use std::collections::HashSet;
use std::time::Duration;

use dolphin_bridge::sim::dolphins::{self, DolphinsSim};
use dolphin_bridge::sim::third_party::{self, AgentPlan, ThirdPartySim};
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn both_simulators_and_the_database_agree_on_every_message_and_ticket() {
    let app = TestApp::spawn_with(Options::default()).await;
    let dolphins = DolphinsSim::start(4).await.expect("3Dolphins simulator");
    let agent = ThirdPartySim::start(AgentPlan { think: Duration::from_millis(20), reply_chance: 1.0, close_after: 2 })
        .await
        .expect("third-party simulator");
    let tenant = app
        .create_tenant_with(json!({
            "owner": OWNER,
            "thirdParty": {"incomingUrl": agent.url("/incoming")},
            "dolphins": {"sendMessageUrl": dolphins.url("/send"), "commandUrl": dolphins.url("/command"),
                         "apiBaseUrl": dolphins.api_base_url(), "username": "u", "password": "p", "useApiToken": true}
        }))
        .await;
    agent.connect(third_party::BridgeAccess {
        base_url: app.url(""),
        third_party_key: tenant.third_party.clone(),
        signing_secret: tenant.signing_secret.clone(),
    });
    let access =
        dolphins::BridgeAccess { base_url: app.url(""), inbound_token: tenant.inbound.clone(), owner: OWNER.into() };
    for _ in 0..12 {
        let (_, status) = dolphins.emit_incoming(&access).await.expect("bridge reachable");
        assert_eq!(status, 200);
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    // Quiet: nothing waiting to be delivered, and nothing new for a while. (An agent reply
    // racing its own close is refused with 409, as it should be, so replies may be < 12.)
    let until = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut last = (-1, -1);
    let mut quiet_since = tokio::time::Instant::now();
    loop {
        let now = (
            app.count("SELECT count(*) FROM messages").await,
            app.count("SELECT count(*) FROM deliveries WHERE status = 'delivered'").await,
        );
        let waiting = app.count("SELECT count(*) FROM deliveries WHERE status <> 'delivered'").await;
        if now != last {
            last = now;
            quiet_since = tokio::time::Instant::now();
        } else if waiting == 0 && agent.got().len() >= 12 && quiet_since.elapsed() > Duration::from_millis(500) {
            break;
        }
        assert!(tokio::time::Instant::now() < until, "traffic did not settle");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let incoming_texts: Vec<String> =
        sqlx::query_scalar("SELECT COALESCE(message, '') FROM messages WHERE direction = 'in' ORDER BY at")
            .fetch_all(&app.pool)
            .await
            .expect("messages");
    let got_by_agent: Vec<String> =
        agent.got().iter().map(|g| g.body["message"].as_str().unwrap_or_default().to_string()).collect();
    assert_eq!(incoming_texts.len(), 12);
    assert_eq!(got_by_agent.len(), 12, "the contact centre got every customer message");
    assert!(agent.got().iter().all(|g| g.signature_ok), "every delivery was signed");
    let replies: HashSet<String> = sqlx::query_scalar("SELECT message FROM messages WHERE source = 'third_party'")
        .fetch_all(&app.pool)
        .await
        .expect("replies")
        .into_iter()
        .collect();
    let at_dolphins: HashSet<String> = dolphins
        .got()
        .iter()
        .filter(|(path, _)| path == "/send")
        .map(|(_, b)| b["message"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(replies, at_dolphins, "3Dolphins got every agent reply");
    for ticket in agent.closed() {
        assert!(
            dolphins.got().iter().any(|(p, b)| p == "/command" && b["ticketNumber"] == ticket.as_str()),
            "3Dolphins got the close of {ticket}"
        );
        let kinds = event_kinds(&app.pool, OWNER, &ticket).await;
        let status: String = sqlx::query_scalar("SELECT status FROM tickets WHERE ticket_number = $1")
            .bind(&ticket)
            .fetch_one(&app.pool)
            .await
            .expect("ticket");
        let reopened_after_close =
            kinds.iter().rposition(|k| k == "reopened") > kinds.iter().rposition(|k| k == "closed");
        assert_eq!(status, if reopened_after_close { "open" } else { "closed" }, "{ticket}: {kinds:?}");
    }
    app.finish().await;
}

#[tokio::test]
async fn a_3dolphins_that_echoes_deliveries_back_is_not_looped_to_the_third_party() {
    let app = TestApp::spawn_with(Options::default()).await;
    let dolphins = DolphinsSim::start(1).await.expect("3Dolphins simulator");
    let tenant = app
        .create_tenant_with(json!({
            "owner": OWNER,
            "thirdParty": {"incomingUrl": app.third_party.url("/incoming"), "outgoingUrl": app.third_party.url("/outgoing")},
            "dolphins": {"sendMessageUrl": dolphins.url("/send")}
        }))
        .await;
    let access =
        dolphins::BridgeAccess { base_url: app.url(""), inbound_token: tenant.inbound.clone(), owner: OWNER.into() };
    dolphins.set_echo(Some(access.clone()));
    let (event, _) = dolphins.emit_incoming(&access).await.expect("bridge");
    let ticket = event["ticketNumber"].as_str().expect("ticket").to_string();
    let reply = json!({"ticketNumber": ticket, "channel": event["channel"], "messageType": "text",
                       "message": "Baik, kami bantu", "mediaLink": "", "customerName": "x", "owner": OWNER});
    assert_eq!(app.post_as_third_party("messages", &tenant, &reply).await.status(), 200);
    let until = tokio::time::Instant::now() + Duration::from_secs(15);
    while app.count("SELECT count(*) FROM ticket_events WHERE kind = 'echo'").await == 0 {
        assert!(tokio::time::Instant::now() < until, "the echo never came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A genuine 3Dolphins-side reply is still mirrored.
    assert_eq!(dolphins.emit_reply(&access, &ticket, "Pesan dari bot").await.expect("bridge"), 200);
    let mirrored = app.third_party.wait_for("/outgoing", 1).await;
    assert_eq!(mirrored[0].json()["message"], "Pesan dari bot");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.third_party.received_at("/outgoing").len(), 1, "the echo was not forwarded");
    assert_eq!(
        app.count("SELECT count(*) FROM messages WHERE direction = 'out'").await,
        2,
        "reply + bot message, no echo"
    );
    app.finish().await;
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port()
}

/// Lines a child wrote to stdout so far, read on a thread.
fn lines_of(child: &mut std::process::Child) -> std::sync::Arc<std::sync::Mutex<Vec<String>>> {
    use std::io::BufRead;
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let stdout = child.stdout.take().expect("piped stdout");
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            sink.lock().expect("lines").push(line);
        }
    });
    lines
}

#[tokio::test]
async fn each_simulator_runs_alone_as_a_command_against_a_real_bridge() {
    use std::process::{Command, Stdio};
    let app = TestApp::spawn().await;
    let (dolphins_port, agent_port) = (free_port(), free_port());
    let (dolphins_at, agent_at) =
        (format!("http://127.0.0.1:{dolphins_port}"), format!("http://127.0.0.1:{agent_port}"));
    let tenant = app
        .create_tenant_with(json!({
            "owner": OWNER,
            "thirdParty": {"incomingUrl": format!("{agent_at}/incoming"), "commandUrl": format!("{agent_at}/command")},
            "dolphins": {"sendMessageUrl": format!("{dolphins_at}/send"), "commandUrl": format!("{dolphins_at}/command")}
        }))
        .await;
    let sim = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_dolphin-bridge"))
            .arg("sim")
            .args(args)
            .env("RUST_LOG", "warn")
            .env_remove("DATABASE_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("sim")
    };
    let bridge = app.url("");
    let agent_listen = format!("127.0.0.1:{agent_port}");
    let mut agent = sim(&[
        "third-party",
        "--listen",
        &agent_listen,
        "--secret",
        &tenant.signing_secret,
        "--bridge",
        &bridge,
        "--key",
        &tenant.third_party,
    ]);
    let agent_lines = lines_of(&mut agent);
    let dolphins_listen = format!("127.0.0.1:{dolphins_port}");
    let mut customers = sim(&[
        "dolphins",
        "--bridge",
        &bridge,
        "--token",
        &tenant.inbound,
        "--owner",
        OWNER,
        "--rate",
        "5",
        "--listen",
        &dolphins_listen,
    ]);
    let customer_lines = lines_of(&mut customers);

    // Customers write in, the agent gets them signed and replies, 3Dolphins gets the replies.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let sent = customer_lines
            .lock()
            .expect("lines")
            .iter()
            .any(|l| l.starts_with("sent Incoming Event") && l.ends_with("→ 200"));
        let signed =
            agent_lines.lock().expect("lines").iter().any(|l| l.contains("/incoming") && l.contains("signature ok"));
        let replied = customer_lines.lock().expect("lines").iter().any(|l| l.starts_with("received /send"));
        if sent && signed && replied {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "customers {:?}\nagent {:?}",
            customer_lines.lock(),
            agent_lines.lock()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let messages_out =
        app.count(&format!("SELECT count(*) FROM messages WHERE owner = '{OWNER}' AND direction = 'out'")).await;
    assert!(messages_out >= 1, "the agent's replies went through the bridge");
    for mut child in [agent, customers] {
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        assert!(child.wait().expect("wait").success(), "stops cleanly on SIGTERM");
    }
    app.finish().await;
}
