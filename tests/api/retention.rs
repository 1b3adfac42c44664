//! Retention: a tenant's old message bodies and raw payloads are purged in the background,
//! the lifecycle and counts stay, and each purge is audited.

use std::time::Duration;

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn bodies_older_than_the_retention_are_purged_and_audited_counts_kept() {
    let app = TestApp::spawn().await;
    let keep = app
        .create_tenant_with(json!({"owner": OWNER, "retentionDays": 7,
                                   "thirdParty": {"incomingUrl": app.third_party.url("/incoming")}}))
        .await;
    assert_eq!(keep.created["retentionDays"], 7);
    let forever = app.create_tenant("no-retention").await;
    assert_eq!(app.post_as_dolphins("incoming", &keep, &fixture("incoming-text")).await.status(), 200);
    let theirs = with(&fixture("incoming-text"), json!({"owner": forever.owner}));
    assert_eq!(app.post_as_dolphins("incoming", &forever, &theirs).await.status(), 200);
    app.dispatch().await;

    let now = app.clock_now();
    let pass = dolphin_bridge::housekeeping::run_once(&app.pool, now).await.expect("housekeeping");
    assert_eq!(pass.messages_purged, 0, "nothing is old yet");

    app.clock.advance(Duration::from_secs(8 * 86_400));
    let pass = dolphin_bridge::housekeeping::run_once(&app.pool, app.clock_now()).await.expect("housekeeping");
    assert_eq!((pass.messages_purged, pass.delivery_bodies_purged), (1, 1));
    let (text, raw): (Option<String>, serde_json::Value) =
        sqlx::query_as("SELECT message, raw FROM messages WHERE owner = $1")
            .bind(OWNER)
            .fetch_one(&app.pool)
            .await
            .expect("row");
    assert_eq!((text, raw), (None, json!({})));
    assert_eq!(
        app.count("SELECT messages_in::bigint FROM tickets WHERE owner = '9c2f4e7a1b3d5c6e8f0a1b2c3d4e5f60'").await,
        1
    );
    assert_eq!(app.count("SELECT count(*) FROM ticket_events WHERE kind = 'purged'").await, 1);
    assert_eq!(
        app.count("SELECT count(*) FROM messages WHERE owner = 'no-retention' AND message IS NOT NULL").await,
        1,
        "a tenant without retention keeps everything"
    );
    let again = dolphin_bridge::housekeeping::run_once(&app.pool, app.clock_now()).await.expect("housekeeping");
    assert_eq!(again.messages_purged, 0, "a purge happens once");
    let bad = app
        .admin_post(
            "/admin/v1/tenants",
            &json!({"owner": "x", "retentionDays": 0, "thirdParty": {"incomingUrl": "http://x/in"}}),
        )
        .await;
    assert_eq!(bad.status(), 400);
    app.finish().await;
}
