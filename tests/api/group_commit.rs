//! Group commit of message intakes (`dolphin_bridge::intake::group_commit`): intakes queued together
//! are written by one statement, yet each is applied or refused on its own, and a ticket's
//! messages keep their order; an outbox row is written claimed (for direct dispatch), and a
//! recorded delivery's successor is claimed, only when the claim's rules allow it. Driven directly against a real database: requests queued
//! in the same instant land in one batch on the test's single-threaded runtime.

use std::time::Duration;

use chrono::Utc;
use dolphin_bridge::domain::{Direction, EventKind, Source, Target, TicketStatus};
use dolphin_bridge::intake::group_commit::GroupCommit;
use dolphin_bridge::store::deliveries::{self, ClaimScope, Claimed};
use dolphin_bridge::store::events::NewEvent;
use dolphin_bridge::store::message_writes::{
    write_messages, Delivery, DirectLease, MessageWrite, NewOutboxRow, Recorded,
};
use dolphin_bridge::store::messages::NewMessage;
use dolphin_bridge::store::successes::{self, Success, SuccessesRecorded, SuccessorLease};
use dolphin_bridge::store::tickets::TicketChange;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::*;

/// An Incoming Event's intake on an open ticket, forwarded to the third party.
fn incoming(ticket: &str, text: &str) -> MessageWrite {
    let id = Uuid::now_v7();
    MessageWrite {
        message: NewMessage {
            owner: OWNER.into(),
            id,
            ticket_number: ticket.into(),
            message_type: Some("text".into()),
            message: Some(text.into()),
            media_link: None,
            source: Source::Dolphins,
            at: Utc::now(),
            warnings: json!([]),
            raw: json!({"ticketNumber": ticket, "message": text}),
        },
        change: TicketChange {
            status: Some(TicketStatus::Open),
            message: Some(Direction::In),
            next_third_party_sequence: true,
            ..TicketChange::default()
        },
        expected_status: Some(TicketStatus::Open),
        events: vec![NewEvent {
            kind: EventKind::MessageIn,
            actor: "3dolphins".into(),
            detail: json!({"messageId": id}),
        }],
        delivery: Some(NewOutboxRow {
            id: Uuid::now_v7(),
            target: Target::ThirdPartyIncoming,
            body: json!({"message": text}).to_string(),
        }),
        duplicates: None,
        lease: None,
    }
}

async fn open_tickets(app: &TestApp, tenant: &Tenant, tickets: &[&str]) {
    for ticket in tickets {
        let body = with(&fixture("incoming-text"), json!({"ticketNumber": ticket, "message": "opening"}));
        assert_eq!(app.post_as_dolphins("incoming", tenant, &body).await.status(), 200);
    }
}

/// (sequence, message) of a ticket's deliveries, in sequence order.
async fn outbox(app: &TestApp, ticket: &str) -> Vec<(i32, String)> {
    sqlx::query_as(
        "SELECT sequence, (body::jsonb) ->> 'message' FROM deliveries WHERE ticket_number = $1 ORDER BY sequence",
    )
    .bind(ticket)
    .fetch_all(&app.pool)
    .await
    .expect("deliveries")
}

#[tokio::test]
async fn one_unstorable_message_is_refused_alone_and_its_batch_mates_are_written() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(OWNER).await;
    open_tickets(&app, &tenant, &["A", "B", "C"]).await;
    let group = GroupCommit::new(app.pool.clone(), 1, Duration::ZERO, None);

    let (a, b, c) = tokio::join!(
        group.write(incoming("A", "first of the batch")),
        group.write(incoming("B", "a NUL \u{0} PostgreSQL cannot store")),
        group.write(incoming("C", "last of the batch")),
    );

    assert_eq!(a.expect("A is written"), Recorded::Applied);
    let refused = b.expect_err("B cannot be stored");
    assert!(dolphin_bridge::store::is_unstorable_text(&refused), "{refused}");
    assert_eq!(c.expect("C is written"), Recorded::Applied);
    assert_eq!(outbox(&app, "A").await.last().map(|d| d.1.as_str()), Some("first of the batch"));
    assert_eq!(outbox(&app, "B").await.len(), 1, "only B's opening message");
    assert_eq!(outbox(&app, "C").await.last().map(|d| d.1.as_str()), Some("last of the batch"));
    let counts: Vec<(String, i32)> =
        sqlx::query_as("SELECT ticket_number, messages_in FROM tickets ORDER BY ticket_number")
            .fetch_all(&app.pool)
            .await
            .expect("tickets");
    assert_eq!(counts, vec![("A".into(), 2), ("B".into(), 1), ("C".into(), 2)]);
    app.finish().await;
}

/// The transaction that wrote each of `messages` (by text), in the order given.
async fn writing_transactions(app: &TestApp, messages: &[&str]) -> Vec<String> {
    let mut transactions = Vec::new();
    for text in messages {
        let xmin: String = sqlx::query_scalar("SELECT xmin::text FROM messages WHERE message = $1")
            .bind(text)
            .fetch_one(&app.pool)
            .await
            .expect("the message is stored");
        transactions.push(xmin);
    }
    transactions
}

#[tokio::test]
async fn a_message_that_finds_the_writer_idle_waits_for_company_within_the_window() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(OWNER).await;
    open_tickets(&app, &tenant, &["A", "B", "C", "D"]).await;
    // A window far longer than the gap between the messages, so that a slow machine cannot
    // make them miss each other.
    let windowed = GroupCommit::new(app.pool.clone(), 1, Duration::from_secs(3), None);
    let at_once = GroupCommit::new(app.pool.clone(), 1, Duration::ZERO, None);

    let later = |group: GroupCommit, ticket: &'static str, text: &'static str| async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        group.write(incoming(ticket, text)).await
    };
    let (first, second) =
        tokio::join!(windowed.write(incoming("A", "waits for company")), later(windowed.clone(), "B", "joins it"));
    assert_eq!(first.expect("A"), Recorded::Applied);
    assert_eq!(second.expect("B"), Recorded::Applied);
    let (first, second) =
        tokio::join!(at_once.write(incoming("C", "goes alone")), later(at_once.clone(), "D", "goes later"));
    assert_eq!(first.expect("C"), Recorded::Applied);
    assert_eq!(second.expect("D"), Recorded::Applied);

    let windowed = writing_transactions(&app, &["waits for company", "joins it"]).await;
    assert_eq!(windowed[0], windowed[1], "one statement and one commit wrote both");
    let at_once = writing_transactions(&app, &["goes alone", "goes later"]).await;
    assert_ne!(at_once[0], at_once[1], "without a window each message is written as it comes");
    app.finish().await;
}

#[tokio::test]
async fn messages_of_one_ticket_queued_together_are_all_written_in_their_order() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(OWNER).await;
    open_tickets(&app, &tenant, &["T", "U"]).await;
    let group = GroupCommit::new(app.pool.clone(), 2, Duration::ZERO, None);

    let outcomes = futures::future::join_all(
        ["one", "two", "three", "four"]
            .iter()
            .flat_map(|text| [group.write(incoming("T", text)), group.write(incoming("U", text))]),
    )
    .await;

    for outcome in outcomes {
        assert_eq!(outcome.expect("written"), Recorded::Applied);
    }
    for ticket in ["T", "U"] {
        let expected: Vec<(i32, String)> = ["opening", "one", "two", "three", "four"]
            .iter()
            .enumerate()
            .map(|(n, text)| (n as i32 + 1, text.to_string()))
            .collect();
        assert_eq!(outbox(&app, ticket).await, expected, "ticket {ticket}");
    }
    app.finish().await;
}

#[tokio::test]
async fn a_batch_writes_nothing_for_a_ticket_that_is_not_as_expected() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(OWNER).await;
    open_tickets(&app, &tenant, &["open-one"]).await;
    let group = GroupCommit::new(app.pool.clone(), 1, Duration::ZERO, None);

    let (missing, open) =
        tokio::join!(group.write(incoming("never-seen", "hello")), group.write(incoming("open-one", "again")));

    assert_eq!(missing.expect("answered"), Recorded::TicketNotAsExpected);
    assert_eq!(open.expect("answered"), Recorded::Applied);
    let stray: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM messages WHERE ticket_number = 'never-seen')
              + (SELECT count(*) FROM deliveries WHERE ticket_number = 'never-seen')
              + (SELECT count(*) FROM ticket_events WHERE ticket_number = 'never-seen')",
    )
    .fetch_one(&app.pool)
    .await
    .expect("count");
    assert_eq!(stray, 0, "nothing of the refused intake is stored");
    assert_eq!(outbox(&app, "open-one").await.len(), 2);
    app.finish().await;
}

/// `intake` offered a lease, as the group commit offers it when a dispatcher runs here.
fn offered(mut intake: MessageWrite) -> (MessageWrite, DirectLease) {
    let lease = DirectLease { token: Uuid::new_v4(), until: Utc::now() + chrono::Duration::seconds(30) };
    intake.lease = Some(lease);
    (intake, lease)
}

/// (lease token, attempts) of a delivery.
async fn lease_of(app: &TestApp, id: Uuid) -> (Option<Uuid>, i32) {
    sqlx::query_as("SELECT lease_token, attempts FROM deliveries WHERE id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .expect("delivery")
}

#[tokio::test]
async fn an_outbox_row_is_written_claimed_only_when_the_claim_would_take_it_now() {
    let app = TestApp::spawn_stepped().await;
    let tenant = app.create_tenant(OWNER).await;
    open_tickets(&app, &tenant, &["free", "waiting"]).await;
    // "free": its opening delivery went out; "waiting" still has its opening one pending.
    sqlx::query("UPDATE deliveries SET status = 'delivered' WHERE ticket_number = 'free'")
        .execute(&app.pool)
        .await
        .expect("deliver the opening message");

    let (free, free_lease) = offered(incoming("free", "goes at once"));
    let (waiting, _) = offered(incoming("waiting", "waits its turn"));
    let written = write_messages(&app.pool, &[&free, &waiting]).await.expect("written");

    let claimed = written[0].1.claimed().expect("the free ticket's row is written claimed");
    assert_eq!((claimed.id, claimed.sequence, claimed.lease_token), (free_delivery(&free), 2, free_lease.token));
    assert_eq!(claimed.body, free.delivery.as_ref().map(|d| d.body.clone()).unwrap_or_default());
    assert_eq!(lease_of(&app, claimed.id).await, (Some(free_lease.token), 0));
    // Its ticket's first delivery waits unclaimed: it is a claim loop's, so this one is left
    // to the claim loop too (not "behind" one in flight, whose record would claim it).
    assert!(matches!(written[1].1, Delivery::Unclaimed), "an earlier delivery of the ticket is still pending");
    assert_eq!(lease_of(&app, free_delivery(&waiting)).await, (None, 0));

    // A paused endpoint takes nothing claimed either.
    dolphin_bridge::store::endpoints::set_paused(&app.pool, OWNER, Target::ThirdPartyIncoming, true, Utc::now())
        .await
        .expect("pause");
    sqlx::query("UPDATE deliveries SET status = 'delivered', lease_token = NULL")
        .execute(&app.pool)
        .await
        .expect("deliver everything");
    let (paused, _) = offered(incoming("free", "while paused"));
    let written = write_messages(&app.pool, &[&paused]).await.expect("written");
    assert_eq!(written[0].0, Recorded::Applied);
    assert!(matches!(written[0].1, Delivery::Unclaimed), "the endpoint is paused");
    assert_eq!(lease_of(&app, free_delivery(&paused)).await, (None, 0));
    app.finish().await;
}

fn free_delivery(intake: &MessageWrite) -> Uuid {
    intake.delivery.as_ref().map(|d| d.id).unwrap_or_default()
}

/// A successful attempt of `claimed`, to record.
fn success_of(claimed: &Claimed) -> Success {
    Success {
        owner: claimed.owner.clone(),
        id: claimed.id,
        ticket_number: claimed.ticket_number.clone(),
        lease_token: claimed.lease_token,
        row_id: claimed.row_id.clone(),
        started_at: Utc::now(),
        finished_at: Utc::now(),
        duration_ms: 1,
        http_status: Some(200),
        response_head: None,
        request: None,
    }
}

/// Marks `claimed` delivered through the success recorder's statement, claiming its
/// ticket's next delivery with `successors`.
async fn record_success(app: &TestApp, claimed: &Claimed, successors: Option<SuccessorLease>) -> SuccessesRecorded {
    successes::record_successes(&app.pool, &[success_of(claimed)], successors).await.expect("recorded")
}

#[tokio::test]
async fn recording_a_delivery_claims_its_tickets_next_one_when_the_claim_would() {
    let app = TestApp::spawn_stepped().await;
    let tenant = app.create_tenant(OWNER).await;
    open_tickets(&app, &tenant, &["chain"]).await;
    for text in ["second", "third", "fourth"] {
        let body = with(&fixture("incoming-text"), json!({"ticketNumber": "chain", "message": text}));
        assert_eq!(app.post_as_dolphins("incoming", &tenant, &body).await.status(), 200);
    }
    let lease = std::time::Duration::from_secs(30);
    let successors = Some(SuccessorLease { now: Utc::now(), lease });
    let first =
        deliveries::claim(&app.pool, ClaimScope::Due, Utc::now(), lease, 10, Uuid::new_v4()).await.expect("claim");
    assert_eq!(first.iter().map(|c| c.sequence).collect::<Vec<_>>(), vec![1], "the later ones wait");

    let recorded = record_success(&app, &first[0], successors).await;
    assert_eq!(recorded.recorded, 1);
    let next = &recorded.successors;
    assert_eq!(next.iter().map(|c| c.sequence).collect::<Vec<_>>(), vec![2]);
    let body: serde_json::Value = serde_json::from_str(&next[0].body).expect("JSON body");
    assert_eq!(body["message"], "second");
    assert_eq!(lease_of(&app, next[0].id).await, (Some(next[0].lease_token), 0));
    // Recording it again finds nothing: its lease is gone, so nothing more is claimed.
    let again = record_success(&app, &first[0], successors).await;
    assert_eq!((again.recorded, again.successors.len()), (0, 0), "already recorded");

    // Without a lease offered, the successor stays unclaimed (a stopping dispatcher).
    let second = record_success(&app, &next[0], None).await;
    assert_eq!((second.recorded, second.successors.len()), (1, 0));
    let third =
        deliveries::claim(&app.pool, ClaimScope::Due, Utc::now(), lease, 10, Uuid::new_v4()).await.expect("claim");
    assert_eq!(third.iter().map(|c| c.sequence).collect::<Vec<_>>(), vec![3]);

    // With the endpoint paused, the successor is not claimed.
    dolphin_bridge::store::endpoints::set_paused(&app.pool, OWNER, Target::ThirdPartyIncoming, true, Utc::now())
        .await
        .expect("pause");
    let paused = record_success(&app, &third[0], successors).await;
    assert_eq!((paused.recorded, paused.successors.len()), (1, 0), "the endpoint is paused");
    app.finish().await;
}

#[tokio::test]
async fn a_successor_is_not_claimed_while_an_earlier_delivery_of_its_ticket_waits_again() {
    let app = TestApp::spawn_stepped().await;
    let tenant = app.create_tenant(OWNER).await;
    open_tickets(&app, &tenant, &["chain"]).await;
    for text in ["second", "third"] {
        let body = with(&fixture("incoming-text"), json!({"ticketNumber": "chain", "message": text}));
        assert_eq!(app.post_as_dolphins("incoming", &tenant, &body).await.status(), 200);
    }
    let lease = std::time::Duration::from_secs(30);
    let claim = || deliveries::claim(&app.pool, ClaimScope::Due, Utc::now(), lease, 10, Uuid::new_v4());
    let first = claim().await.expect("claim");
    record_success(&app, &first[0], None).await;
    let second = claim().await.expect("claim");
    assert_eq!(second.iter().map(|c| c.sequence).collect::<Vec<_>>(), vec![2]);
    // An operator sends the first one again while the second is in flight: the third must
    // wait for it, even though the second is recorded now.
    sqlx::query("UPDATE deliveries SET status = 'pending' WHERE id = $1")
        .bind(first[0].id)
        .execute(&app.pool)
        .await
        .expect("first waiting again");
    let recorded = record_success(&app, &second[0], Some(SuccessorLease { now: Utc::now(), lease })).await;
    assert_eq!((recorded.recorded, recorded.successors.len()), (1, 0), "the first one waits again");
    app.finish().await;
}

/// Waits until some session of the test database waits for a row lock.
async fn until_a_session_waits_for_a_lock(app: &TestApp) {
    let waiting =
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'";
    for _ in 0..200 {
        if app.count(waiting).await > 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("no session came to wait for a lock");
}

/// The ticket "race" opened, its opening delivery claimed (in flight), for the two orders
/// of its record and the intake of its next message.
async fn a_delivery_in_flight(app: &TestApp) -> Claimed {
    let tenant = app.create_tenant(OWNER).await;
    open_tickets(app, &tenant, &["race"]).await;
    let lease = std::time::Duration::from_secs(30);
    let mut claimed =
        deliveries::claim(&app.pool, ClaimScope::Due, Utc::now(), lease, 10, Uuid::new_v4()).await.expect("claim");
    assert_eq!(claimed.len(), 1);
    claimed.remove(0)
}

#[tokio::test]
async fn a_successor_written_while_its_predecessor_is_recorded_is_reported_unseen_and_claimed_after() {
    let app = TestApp::spawn_stepped().await;
    let first = a_delivery_in_flight(&app).await;
    // The intake holds the ticket's row (as its transaction path does) and writes the next
    // message: the first delivery is still pending, so it is written behind it.
    let mut intake = app.pool.begin().await.expect("begin");
    sqlx::query("SELECT 1 FROM tickets WHERE owner = $1 AND ticket_number = 'race' FOR UPDATE")
        .bind(OWNER)
        .execute(&mut *intake)
        .await
        .expect("lock the ticket");
    let (next, _) = offered(incoming("race", "second"));
    let written = write_messages(&mut *intake, &[&next]).await.expect("written");
    assert!(matches!(written[0].1, Delivery::Behind), "the first one is still in flight");
    // The record starts now (its snapshot lacks the second delivery) and waits for the ticket.
    let lease = SuccessorLease { now: Utc::now(), lease: std::time::Duration::from_secs(30) };
    let record = {
        let (app_pool, first) = (app.pool.clone(), first.clone());
        tokio::spawn(async move {
            let success = success_of(&first);
            successes::record_successes(&app_pool, &[success], Some(lease)).await
        })
    };
    until_a_session_waits_for_a_lock(&app).await;
    intake.commit().await.expect("commit");
    let recorded = record.await.expect("joined").expect("recorded");
    assert_eq!((recorded.recorded, recorded.successors.len()), (1, 0), "the snapshot lacks the second one");
    assert_eq!(recorded.unseen.len(), 1, "but the ticket, locked, shows it");
    let claimed = successes::claim_successors(&app.pool, &recorded.unseen, lease).await.expect("claim");
    assert_eq!(claimed.iter().map(|c| c.sequence).collect::<Vec<_>>(), vec![2]);
    app.finish().await;
}

#[tokio::test]
async fn an_intake_that_waits_for_its_predecessors_record_writes_its_delivery_claimed() {
    let app = TestApp::spawn_stepped().await;
    let first = a_delivery_in_flight(&app).await;
    // The record holds the ticket (its transaction is not committed yet)...
    let mut record = app.pool.begin().await.expect("begin");
    let recorded = successes::record_successes(&mut *record, &[success_of(&first)], None).await.expect("recorded");
    assert_eq!(recorded.recorded, 1);
    // ...when the intake writes the next message: its update of the ticket waits, and then
    // its locking read finds the first delivery delivered, not pending as its snapshot had it.
    let (next, lease) = offered(incoming("race", "second"));
    let intake = {
        let pool = app.pool.clone();
        tokio::spawn(async move { write_messages(&pool, &[&next]).await })
    };
    until_a_session_waits_for_a_lock(&app).await;
    record.commit().await.expect("commit");
    let written = intake.await.expect("joined").expect("written");
    let claimed = written[0].1.claimed().expect("written claimed");
    assert_eq!((claimed.sequence, claimed.lease_token), (2, lease.token));
    app.finish().await;
}

#[tokio::test]
async fn one_batch_records_a_tickets_deliveries_to_both_peers() {
    let app = TestApp::spawn_stepped().await;
    let tenant = app.create_tenant(OWNER).await;
    open_tickets(&app, &tenant, &["both"]).await;
    let reply = with(&fixture("outgoing-text"), json!({"ticketNumber": "both"}));
    assert_eq!(app.post_as_third_party("messages", &tenant, &reply).await.status(), 200);
    let lease = std::time::Duration::from_secs(30);
    let claimed =
        deliveries::claim(&app.pool, ClaimScope::Due, Utc::now(), lease, 10, Uuid::new_v4()).await.expect("claim");
    assert_eq!(claimed.len(), 2, "one delivery to each peer, each the first of its sequence");
    let batch: Vec<Success> = claimed.iter().map(success_of).collect();
    let successors = Some(SuccessorLease { now: Utc::now(), lease });
    let recorded = successes::record_successes(&app.pool, &batch, successors).await.expect("recorded");
    assert_eq!(recorded.recorded, 2);
    assert_eq!(app.count("SELECT count(*) FROM deliveries WHERE status = 'delivered'").await, 2);
    app.finish().await;
}

/// Two tickets with two messages each (written in `tickets`' order, first messages first),
/// their first deliveries recorded delivered: the places of those, whose successors a
/// record did not see.
async fn two_unseen_successors(app: &TestApp, tickets: [&str; 2]) -> Vec<successes::Place> {
    let tenant = app.create_tenant(OWNER).await;
    for text in ["first", "second"] {
        for ticket in tickets {
            let body = with(&fixture("incoming-text"), json!({"ticketNumber": ticket, "message": text}));
            assert_eq!(app.post_as_dolphins("incoming", &tenant, &body).await.status(), 200);
        }
    }
    sqlx::query("UPDATE deliveries SET status = 'delivered', delivered_at = now() WHERE sequence = 1")
        .execute(&app.pool)
        .await
        .expect("the first ones delivered");
    tickets
        .iter()
        .map(|ticket| successes::Place {
            owner: OWNER.into(),
            ticket_number: ticket.to_string(),
            peer: "third_party".into(),
            sequence: 1,
        })
        .collect()
}

/// Claiming the successors a record could not see takes their tickets first, in key order, as
/// the intake does: with the successors of two tickets updated in `ctid` order instead, an
/// intake writing messages of both (each ticket held, then its first waiting delivery
/// share-locked) and this claim each waited for the other until PostgreSQL's deadlock check
/// cancelled one of them, a second later.
#[tokio::test]
async fn claiming_unseen_successors_waits_for_an_intake_of_their_tickets_instead_of_deadlocking() {
    let app = TestApp::spawn_stepped().await;
    // b's deliveries lie before a's, so a claim in row order updates b's successor first.
    let places = two_unseen_successors(&app, ["b-ticket", "a-ticket"]).await;

    // An intake holds ticket a and share-locks its first waiting delivery, as the message
    // write does before it writes a third message...
    let mut intake = app.pool.begin().await.expect("begin");
    let hold = |ticket: &'static str| {
        format!(
            "WITH t AS (UPDATE tickets SET updated_at = now() WHERE owner = '{OWNER}' AND ticket_number = '{ticket}'
                        RETURNING 1)
             SELECT count(*) FROM t, LATERAL (SELECT 1 FROM deliveries e WHERE e.owner = '{OWNER}'
                 AND e.ticket_number = '{ticket}' AND e.sequence = 2 FOR SHARE OF e) AS e"
        )
    };
    let held: i64 = sqlx::query_scalar(&hold("a-ticket")).fetch_one(&mut *intake).await.expect("hold a");
    assert_eq!(held, 1);
    // ...when the successors are claimed...
    let lease = SuccessorLease { now: Utc::now(), lease: Duration::from_secs(30) };
    let claim = {
        let pool = app.pool.clone();
        tokio::spawn(async move { successes::claim_successors(&pool, &places, lease).await })
    };
    until_a_session_waits_for_a_lock(&app).await;
    // ...and the intake goes on to ticket b: it must not find b's successor held by the claim.
    sqlx::raw_sql("SET LOCAL lock_timeout = '3s'").execute(&mut *intake).await.expect("timeout");
    let held: i64 = sqlx::query_scalar(&hold("b-ticket")).fetch_one(&mut *intake).await.expect("hold b");
    assert_eq!(held, 1);
    intake.commit().await.expect("commit");
    let claimed = claim.await.expect("joined").expect("claimed, not cancelled by a deadlock");
    let mut claimed: Vec<(String, i32)> = claimed.into_iter().map(|c| (c.ticket_number, c.sequence)).collect();
    claimed.sort();
    assert_eq!(claimed, [("a-ticket".to_string(), 2), ("b-ticket".to_string(), 2)]);
    app.finish().await;
}

/// A successor another transaction holds is skipped by the claim of unseen successors, not
/// waited for (waiting for the other batch's record deadlocked now and then); the rest are
/// claimed.
#[tokio::test]
async fn claiming_unseen_successors_skips_one_another_transaction_holds() {
    let app = TestApp::spawn_stepped().await;
    let places = two_unseen_successors(&app, ["a-ticket", "b-ticket"]).await;
    let mut other = app.pool.begin().await.expect("begin");
    sqlx::query("SELECT 1 FROM deliveries WHERE ticket_number = 'b-ticket' AND sequence = 2 FOR UPDATE")
        .execute(&mut *other)
        .await
        .expect("hold b's successor");
    let lease = SuccessorLease { now: Utc::now(), lease: Duration::from_secs(30) };
    let claim = successes::claim_successors(&app.pool, &places, lease);
    let claimed = tokio::time::timeout(Duration::from_secs(5), claim).await.expect("not waited for").expect("claimed");
    let claimed: Vec<(String, i32)> = claimed.into_iter().map(|c| (c.ticket_number, c.sequence)).collect();
    assert_eq!(claimed, [("a-ticket".to_string(), 2)]);
    other.rollback().await.expect("rollback");
    app.finish().await;
}
