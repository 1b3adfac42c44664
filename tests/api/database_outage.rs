//! The database going away (README *HTTP surface*, errors): 503, nothing half-stored, and recovery
//! without a restart. The shared PostgreSQL is never restarted: a TCP proxy that the
//! test controls sits between the app and the database and is cut instead.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::helpers::*;

/// A TCP proxy to PostgreSQL that can drop every connection and refuse new ones.
pub struct Proxy {
    pub address: SocketAddr,
    up: Arc<AtomicBool>,
    cut: watch::Sender<u64>,
}

impl Proxy {
    pub async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let address = listener.local_addr().expect("address");
        let up = Arc::new(AtomicBool::new(true));
        let (cut, cut_rx) = watch::channel(0u64);
        let accepting = up.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !accepting.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let upstream = upstream.clone();
                let mut cut_rx = cut_rx.clone();
                // Only a cut after this connection opened should close it.
                cut_rx.borrow_and_update();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut_rx.changed() => {}
                    }
                });
            }
        });
        Proxy { address, up, cut }
    }

    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

pub fn postgres_address() -> String {
    let server = server_url();
    let host = server.rsplit_once('@').map(|(_, h)| h).unwrap_or("127.0.0.1:5432");
    host.split('/').next().unwrap_or("127.0.0.1:5432").to_string()
}

#[tokio::test]
async fn a_lost_database_gives_503_and_the_bridge_recovers_when_it_returns() {
    let proxy = Proxy::start(postgres_address()).await;
    let app = TestApp::spawn_with(Options { via: Some(proxy.address), ..Options::default() }).await;
    let tenant = app.create_tenant(OWNER).await;
    assert_eq!(app.post_as_dolphins("incoming", &tenant, &fixture("incoming-text")).await.status(), 200);

    let before = app.http.get(app.url("/metrics")).send().await.expect("metrics").text().await.expect("text");
    assert!(before.contains("bridge_delivery_queue_depth{"), "{before}");
    proxy.cut();
    let during = with(&fixture("incoming-text"), json!({"message": "sent during the outage"}));
    let response = app.post_as_dolphins("incoming", &tenant, &during).await;
    assert_eq!(response.status(), 503);
    let error: Value = response.json().await.expect("JSON");
    assert_eq!(error["error"]["code"], "unavailable");
    let ready = app.http.get(app.url("/readyz")).send().await.expect("request");
    assert_eq!(ready.status(), 503);
    // The gauges read from the database are absent while it is gone, not frozen.
    let queue = "bridge_delivery_queue_depth{";
    let metrics = |app: &TestApp| {
        let request = app.http.get(app.url("/metrics"));
        async move { request.send().await.expect("metrics").text().await.expect("text") }
    };
    let during_outage = metrics(&app).await;
    // (The recorder holds the gauges from the scrape before the outage: leaving them out is
    // the bridge's doing, not their absence.)
    assert!(during_outage.contains("bridge_http_requests_total"), "the process's own metrics stay");
    assert!(!during_outage.contains(queue) && !during_outage.contains("bridge_endpoint_breakers"), "{during_outage}");

    proxy.restore();
    let after = with(&fixture("incoming-text"), json!({"message": "after the outage"}));
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let status = app.post_as_dolphins("incoming", &tenant, &after).await.status();
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "only 503 while reconnecting");
        assert!(tokio::time::Instant::now() < deadline, "the bridge did not recover");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let texts: Vec<String> =
        sqlx::query_scalar("SELECT message FROM messages ORDER BY at").fetch_all(&app.pool).await.expect("messages");
    assert_eq!(texts, vec!["Halo, pesanan saya belum sampai", "after the outage"], "nothing half-stored");
    // The workers recover too: both accepted events arrive.
    app.third_party.wait_for("/incoming", 2).await;
    assert!(metrics(&app).await.contains(queue), "the gauges are back with the database");
    app.finish().await;
}
