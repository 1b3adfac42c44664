//! High availability: the primary of a pg_auto_failover formation is killed mid-burst (its
//! whole node, SIGKILL), and the bridge — never restarted — follows the promotion. Nothing
//! it answered 2xx is lost, per-ticket order of first arrivals holds, and no request is
//! ever answered 500. Needs Debian's `postgresql-15-auto-failover` and
//! `pg-auto-failover-cli` (`.ci/run` installs them); without them the test says SKIPPED.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::faults::assert_complete_and_ordered;
use crate::formation::Formation;
use crate::helpers::*;

/// Tickets sending at once, and the messages each sends in order.
const TICKETS: usize = 40;
const MESSAGES: usize = 40;
/// Each ticket's pause between messages: about 800 events/s offered in all.
const PACE: Duration = Duration::from_millis(50);

/// What the senders saw.
#[derive(Default)]
struct Tally {
    /// Acknowledged messages per ticket, in the order of their 2xx.
    acked: BTreeMap<String, Vec<String>>,
    /// Every reply status with when its request started and ended.
    replies: Vec<(u16, Instant, Instant)>,
}

fn event(ticket: usize, n: usize) -> Value {
    with(
        &fixture("incoming-text"),
        json!({"ticketNumber": format!("HA{ticket:03}"), "message": format!("HA{ticket:03}-{n:03}")}),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_primary_mid_burst_loses_nothing_the_bridge_acknowledged() {
    let Some(mut formation) = Formation::start().await else {
        eprintln!(
            "SKIPPED: the failover test needs `apt-get install postgresql-15-auto-failover pg-auto-failover-cli`"
        );
        return;
    };
    let app = TestApp::spawn_with(Options {
        database_url: Some(formation.uri("dolphin_bridge_ha", "read-write")),
        env: vec![
            ("BRIDGE_READ_DATABASE_URL", formation.uri("dolphin_bridge_ha", "prefer-standby")),
            ("BRIDGE_WORKERS", "16".into()),
            ("BRIDGE_RETRY_SCHEDULE", "1s,1s,1s,1s,1s,1s,1s,1s,1s,1s".into()),
            // A delivery in flight when the primary died is sent again after its lease.
            ("BRIDGE_LEASE", "5s".into()),
            ("BRIDGE_DELIVERY_TIMEOUT", "2s".into()),
        ],
        ..Options::default()
    })
    .await;
    let primary = formation.writable_node().await.expect("a primary before the kill");
    let tenant = app.create_tenant(OWNER).await;

    // /readyz, sampled all along: it must say 503 while no primary is found.
    let readiness: Arc<Mutex<Vec<(Instant, u16)>>> = Arc::default();
    let sampler = {
        let (readiness, url, http) = (readiness.clone(), app.url("/readyz"), app.http.clone());
        tokio::spawn(async move {
            loop {
                let status = http.get(&url).send().await.map_or(0, |r| r.status().as_u16());
                readiness.lock().expect("readiness").push((Instant::now(), status));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    let tally: Arc<Mutex<Tally>> = Arc::default();
    // Senders give up after this: a bridge that never finds the new primary fails the test.
    let give_up = Instant::now() + Duration::from_secs(90);
    let mut senders = tokio::task::JoinSet::new();
    for ticket in 0..TICKETS {
        let (tally, url, http) = (
            tally.clone(),
            app.url(&format!("/webhooks/3dolphins/incoming?token={}", tenant.inbound)),
            app.http.clone(),
        );
        senders.spawn(async move {
            for n in 0..MESSAGES {
                let body = event(ticket, n);
                // Like a client that retries what was refused: the same event until it is taken.
                loop {
                    let started = Instant::now();
                    let status = http
                        .post(&url)
                        .timeout(Duration::from_secs(40))
                        .json(&body)
                        .send()
                        .await
                        .map_or(0, |r| r.status().as_u16());
                    let taken = {
                        let mut t = tally.lock().expect("tally");
                        t.replies.push((status, started, Instant::now()));
                        if status == 200 {
                            let message = body["message"].as_str().unwrap_or("").to_string();
                            t.acked.entry(format!("HA{ticket:03}")).or_default().push(message);
                        }
                        status == 200
                    };
                    if taken || Instant::now() > give_up {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                tokio::time::sleep(PACE).await;
            }
        });
    }

    // Kill the primary's node once a quarter of the burst is acknowledged.
    let quarter = TICKETS * MESSAGES / 4;
    while tally.lock().expect("tally").acked.values().map(Vec::len).sum::<usize>() < quarter {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    formation.kill_node(primary);
    let killed_at = Instant::now();
    // When another node takes writes: the HA engine's part of the outage, apart from the bridge's.
    let promoted_at = {
        let formation = formation.handle();
        tokio::spawn(async move {
            loop {
                if formation.writable_node().await.is_some_and(|n| n != primary) {
                    return Instant::now();
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    while senders.join_next().await.is_some() {}
    let sent_for = killed_at.elapsed();

    let tally = std::mem::take(&mut *tally.lock().expect("tally"));
    let acked: usize = tally.acked.values().map(Vec::len).sum();
    let statuses: BTreeMap<u16, usize> = tally.replies.iter().fold(BTreeMap::new(), |mut m, (s, _, _)| {
        *m.entry(*s).or_default() += 1;
        m
    });
    assert_eq!(acked, TICKETS * MESSAGES, "every event was taken in the end, without a restart");
    assert!(statuses.keys().all(|s| matches!(s, 200 | 503)), "only 200 or 503 was ever answered: {statuses:?}");
    let first_2xx_after_kill = tally
        .replies
        .iter()
        .filter(|(s, started, _)| *s == 200 && *started > killed_at)
        .map(|(_, _, ended)| *ended - killed_at)
        .min()
        .expect("a 2xx after the kill");
    let refused = statuses.get(&503).copied().unwrap_or(0);
    let promoted_after = promoted_at.await.expect("promotion watcher") - killed_at;

    // Every acknowledged event reaches the receiver, in ticket order (after leases run out).
    let wanted: HashSet<&String> = tally.acked.values().flatten().collect();
    let until = Instant::now() + Duration::from_secs(90);
    let got = loop {
        let got = app.third_party.received_at("/incoming");
        let arrived: HashSet<String> =
            got.iter().map(|r| r.json()["message"].as_str().unwrap_or("").to_string()).collect();
        let missing = wanted.iter().filter(|m| !arrived.contains(m.as_str())).count();
        if missing == 0 {
            break got;
        }
        assert!(Instant::now() < until, "{missing} acknowledged events never reached the receiver");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let duplicates = assert_complete_and_ordered(&got, &tally.acked);

    // The promoted node holds every acknowledged message.
    let promoted = formation.writable_node().await.expect("a promoted primary");
    assert_ne!(promoted, primary, "another node took over");
    let node =
        dolphin_bridge::store::connect_lazy(&formation.node_url(promoted, "dolphin_bridge_ha"), 1).expect("pool");
    let stored: Vec<String> = sqlx::query_scalar("SELECT message FROM messages WHERE owner = $1 AND direction = 'in'")
        .bind(OWNER)
        .fetch_all(&node)
        .await
        .expect("messages on the promoted node");
    let stored: HashSet<String> = stored.into_iter().collect();
    let lost: Vec<&&String> = wanted.iter().filter(|m| !stored.contains(m.as_str())).collect();
    assert!(lost.is_empty(), "acknowledged but not on the promoted node: {lost:?}");
    node.close().await;

    // Lists read from a standby (or the new primary): every ticket is there after the failover.
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        let response = app.http.get(app.url("/api/v1/tickets?limit=100")).bearer_auth(&tenant.read).send().await;
        let listed = match response {
            Ok(r) if r.status() == 200 => {
                r.json::<Value>().await.map_or(0, |v| v["data"].as_array().map_or(0, Vec::len))
            }
            _ => 0,
        };
        if listed == TICKETS {
            break;
        }
        assert!(Instant::now() < until, "the read pool lists every ticket, got {listed}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Readiness said 503 during the outage and is 200 again; the metrics name the new primary.
    sampler.abort();
    let readiness = readiness.lock().expect("readiness").clone();
    assert!(
        readiness.iter().any(|(at, s)| *at > killed_at && *s == 503),
        "/readyz said 503 while no primary was found"
    );
    assert_eq!(app.http.get(app.url("/readyz")).send().await.expect("readyz").status(), 200);
    let metrics = app.http.get(app.url("/metrics")).send().await.expect("metrics").text().await.expect("text");
    let new_host = format!("bridge_database_primary{{host=\"127.0.0.1:{}\"}} 1", formation.ports[promoted]);
    assert!(metrics.contains(&new_host), "metrics name the new primary: {new_host}");
    assert!(
        metrics.lines().any(|l| l.starts_with("bridge_database_failovers_total ") && !l.ends_with(" 0")),
        "the failover is counted"
    );
    assert!(
        metrics.lines().any(|l| l.starts_with("bridge_read_replica_lag_seconds ")),
        "the standby's lag is published"
    );

    eprintln!(
        "failover: kill -> another node writable {:.2} s -> the bridge's first 2xx {:.2} s after the kill; \
         {refused} requests refused with 503 meanwhile; {acked} acknowledged, all delivered in ticket order, \
         {duplicates} duplicate deliveries; burst finished {:.1} s after the kill",
        promoted_after.as_secs_f64(),
        first_2xx_after_kill.as_secs_f64(),
        sent_for.as_secs_f64()
    );
    app.finish().await;
}
