//! Each of the dispatcher's wake decisions (`delivery::handoff`), pinned: the bridge polls
//! only every ten minutes here, so a delivery that arrives within the receivers' deadline
//! arrived because the decision under test woke the claim loop (or handed it over). Drop
//! the decision and its test waits in vain.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{fixture, with, Options, Tenant, TestApp, OWNER};

/// A bridge that never polls within a test's lifetime.
async fn app_without_poll(workers: usize) -> TestApp {
    TestApp::spawn_with(Options {
        env: vec![("BRIDGE_POLL_INTERVAL", "10m".into()), ("BRIDGE_WORKERS", workers.to_string())],
        ..Options::default()
    })
    .await
}

async fn post_incoming(app: &TestApp, tenant: &Tenant, ticket: &str, text: &str) {
    let body = with(&fixture("incoming-text"), json!({"ticketNumber": ticket, "message": text}));
    assert_eq!(app.post_as_dolphins("incoming", tenant, &body).await.status(), 200);
}

fn texts(received: &[crate::helpers::Received]) -> Vec<String> {
    received.iter().map(|r| r.json()["message"].as_str().unwrap_or("").to_string()).collect()
}

#[tokio::test]
async fn an_outcome_recorded_by_its_worker_frees_the_tickets_next_delivery_at_once() {
    let app = app_without_poll(4).await;
    let tenant = app.create_tenant(OWNER).await;
    // The first delivery is refused for good (400: dead) while the second is written behind
    // it, unclaimed: only the worker's wake after recording the dead one sends the second.
    app.third_party.set_delay(Duration::from_millis(300));
    app.third_party.reply_next(400, &[], "refused");
    post_incoming(&app, &tenant, "W-1", "first").await;
    post_incoming(&app, &tenant, "W-1", "second").await;
    let got = app.third_party.wait_for("/incoming", 2).await;
    assert_eq!(texts(&got), ["first", "second"]);
    app.finish().await;
}

#[tokio::test]
async fn a_recorded_success_hands_over_its_tickets_next_delivery() {
    let app = app_without_poll(4).await;
    let tenant = app.create_tenant(OWNER).await;
    // The second and third wait behind the first, unclaimed; the success recorder claims
    // each successor as it records its predecessor.
    app.third_party.set_delay(Duration::from_millis(300));
    for text in ["first", "second", "third"] {
        post_incoming(&app, &tenant, "W-2", text).await;
    }
    let got = app.third_party.wait_for("/incoming", 3).await;
    assert_eq!(texts(&got), ["first", "second", "third"]);
    app.finish().await;
}

#[tokio::test]
async fn a_freed_worker_takes_the_backlog_its_claim_left_behind() {
    let app = app_without_poll(1).await;
    let tenant = app.create_tenant(OWNER).await;
    let endpoint = |action: &str| app.url(&format!("/api/v1/endpoints/third_party_incoming/{action}"));
    let pause = app.http.post(endpoint("pause")).bearer_auth(&tenant.third_party).send().await.expect("pause");
    assert_eq!(pause.status(), 200);
    let tickets = ["W-3a", "W-3b", "W-3c", "W-3d"];
    for ticket in tickets {
        post_incoming(&app, &tenant, ticket, ticket).await;
    }
    // Resuming wakes the claim loop once: its one worker takes one delivery; the rest are
    // claimed only because a finished attempt wakes a loop whose last claim was full.
    let resume = app.http.post(endpoint("resume")).bearer_auth(&tenant.third_party).send().await.expect("resume");
    assert_eq!(resume.status(), 200);
    let got = app.third_party.wait_for("/incoming", tickets.len()).await;
    let mut arrived = texts(&got);
    arrived.sort();
    assert_eq!(arrived, tickets);
    app.finish().await;
}

#[tokio::test]
async fn a_delivery_the_intake_writes_unclaimed_wakes_the_claim_loop() {
    let app = app_without_poll(4).await;
    let tenant = app.create_tenant(OWNER).await;
    post_incoming(&app, &tenant, "W-4", "hello").await;
    app.third_party.wait_for("/incoming", 1).await;
    // A command's delivery is always written unclaimed (its transaction enqueues it): only
    // the intake's wake after the commit gets it sent before the poll.
    let close = with(&fixture("command-close"), json!({"ticketNumber": "W-4"}));
    assert_eq!(app.post_as_third_party("commands", &tenant, &close).await.status(), 200);
    let got = app.dolphins.wait_for("/command", 1).await;
    assert_eq!(got[0].json()["ticketNumber"], "W-4");
    app.finish().await;
}

#[tokio::test]
async fn work_that_arrives_while_every_worker_is_busy_goes_to_the_first_one_free() {
    let app = app_without_poll(1).await;
    let tenant = app.create_tenant(OWNER).await;
    post_incoming(&app, &tenant, "W-5b", "opens the ticket to close").await;
    app.third_party.wait_for("/incoming", 1).await;
    // The one worker is busy with a slow delivery when a command's delivery is written (for
    // another ticket, unclaimed): the claim loop, woken, has no worker to claim for, and
    // must remember that work may be waiting for the next worker to finish.
    app.third_party.set_delay(Duration::from_millis(500));
    post_incoming(&app, &tenant, "W-5a", "keeps the worker busy").await;
    let close = with(&fixture("command-close"), json!({"ticketNumber": "W-5b"}));
    assert_eq!(app.post_as_third_party("commands", &tenant, &close).await.status(), 200);
    let got = app.dolphins.wait_for("/command", 1).await;
    assert_eq!(got[0].json()["ticketNumber"], "W-5b");
    app.finish().await;
}

#[tokio::test]
async fn a_probe_that_closes_the_breaker_frees_the_endpoints_other_deliveries_at_once() {
    let app = TestApp::spawn_with(Options {
        env: vec![
            ("BRIDGE_POLL_INTERVAL", "10m".into()),
            ("BRIDGE_WORKERS", "4".into()),
            ("BRIDGE_RETRY_SCHEDULE", "1s,1s,1s,1s,1s".into()),
        ],
        ..Options::default()
    })
    .await;
    let tenant = app.create_tenant(OWNER).await;
    let tickets = ["W-7a", "W-7b", "W-7c", "W-7d", "W-7e"];
    for _ in tickets {
        app.third_party.reply_next(502, &[], "bad gateway");
    }
    for ticket in tickets {
        post_incoming(&app, &tenant, ticket, ticket).await;
    }
    app.third_party.wait_for("/incoming", tickets.len()).await;
    let open = "SELECT count(*) FROM endpoints WHERE state = 'open'";
    for _ in 0..100 {
        if app.count(open).await == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.count(open).await, 1, "five failures open the breaker");
    // After the cooldown (and the claim loop's probe interval) a new event, written
    // unclaimed since the endpoint is not closed, wakes the claim loop, which sends one
    // probe. Only the recorder's wake after the probe's success closed the breaker sends the
    // other retries and the new event before the poll.
    tokio::time::sleep(Duration::from_millis(600)).await;
    app.clock.advance(Duration::from_secs(35));
    post_incoming(&app, &tenant, "W-7f", "W-7f").await;
    let got = app.third_party.wait_for("/incoming", tickets.len() + 6).await;
    let mut retried = texts(&got[tickets.len()..]);
    retried.sort();
    assert_eq!(retried, ["W-7a", "W-7b", "W-7c", "W-7d", "W-7e", "W-7f"]);
    app.finish().await;
}

#[tokio::test]
async fn a_claimed_delivery_never_waits_out_its_lease_for_a_worker() {
    // One worker, a 4 s lease, a receiver that takes 0.6 s: eight new tickets at once would
    // queue 4.8 s of sending behind one worker. A delivery is claimed only with room for it
    // (the worker, or the one place in the queue for the next), so the rest wait unclaimed,
    // in order, and no lease runs out.
    let app = TestApp::spawn_with(Options {
        env: vec![
            ("BRIDGE_WORKERS", "1".into()),
            ("BRIDGE_LEASE", "4s".into()),
            ("BRIDGE_DELIVERY_TIMEOUT", "1s".into()),
        ],
        ..Options::default()
    })
    .await;
    let tenant = app.create_tenant(OWNER).await;
    app.third_party.set_delay(Duration::from_millis(600));
    let tickets: Vec<String> = (0..8).map(|i| format!("W-6{i}")).collect();
    let posts = tickets.iter().map(|t| post_incoming(&app, &tenant, t, t));
    futures::future::join_all(posts).await;
    let got = app.third_party.wait_for("/incoming", tickets.len()).await;
    let mut arrived = texts(&got);
    arrived.sort();
    assert_eq!(arrived, tickets, "each delivered once");
    app.dispatch().await;
    assert_eq!(app.lost_leases(), 0, "no claim ran out waiting for the worker");
    assert_eq!(app.count("SELECT count(*) FROM delivery_attempts").await, 8);
    app.finish().await;
}
