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
