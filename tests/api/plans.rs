//! Plans made on empty tables: the main pool (which writes the messages of new, closed and
//! reopened tickets) caches its statements' plans, and the intake's pool always uses its
//! generic plans; a plan made while a table had no statistics picks any index as cheapest,
//! and is kept as the table grows. The statistics task analyzes the hot tables as they grow,
//! which replaces every plan cached on them. Also what an analysis and the audit's indexes
//! keep of each event: they cost every event, and the plans depend on them.

use serde_json::json;
use sqlx::PgConnection;

use crate::helpers::*;

/// The plan `plan_under_test` runs with in this session now, every parameter NULL.
async fn cached_plan(conn: &mut PgConnection, parameters: usize) -> String {
    let nulls = vec!["NULL"; parameters].join(", ");
    let rows: Vec<(String,)> =
        sqlx::query_as(&format!("EXPLAIN EXECUTE plan_under_test({nulls})")).fetch_all(conn).await.expect("explain");
    rows.into_iter().map(|(line,)| line).collect::<Vec<_>>().join("\n")
}

#[tokio::test]
async fn the_statistics_task_replaces_a_message_write_plan_made_on_empty_tables() {
    plan_replaced_once_the_table_holds(5000, &[("plan_cache_mode", "force_generic_plan")]).await;
}

/// A tenant of a few hundred tickets: their lookups through `tickets_by_channel` read every
/// ticket of the tenant (the bench's 500 tickets cost 0.1 ms a message write), so a table is
/// analyzed after its first hundred rows.
#[tokio::test]
async fn a_table_of_a_few_hundred_tickets_is_analyzed_too() {
    // As the intake's sessions plan it.
    let intake = dolphin_bridge::store::INTAKE_SESSION;
    plan_replaced_once_the_table_holds(200, &intake).await;
}

/// Prepares the message write in a session with `settings` on the empty tables, fills
/// `tickets`, and checks that the statistics task's analysis makes it find tickets by key.
async fn plan_replaced_once_the_table_holds(tickets: i64, settings: &[(&str, &str)]) {
    let app = TestApp::spawn_stepped().await;
    // A session that caches the message write's plan while the tables are empty, as the
    // main pool's sessions do when a fresh bridge takes its first events.
    let mut session = app.pool.acquire().await.expect("connection");
    for (name, value) in settings {
        sqlx::raw_sql(&format!("SET {name} = {value}")).execute(&mut *session).await.expect("set");
    }
    let sql = dolphin_bridge::store::message_writes::WRITE_MESSAGES;
    sqlx::raw_sql(&format!("PREPARE plan_under_test AS {sql}")).execute(&mut *session).await.expect("prepare");
    let empty = cached_plan(&mut session, 36).await;
    assert!(empty.contains("tickets_by_"), "made on empty tables, the plan finds tickets another way:\n{empty}");

    let mut writer = app.pool.acquire().await.expect("connection");
    sqlx::query(
        "INSERT INTO tickets (owner, ticket_number, status, channel, opened_at, created_at, updated_at)
         SELECT $1, 'T' || g, 'open', (ARRAY['whatsapp', 'webchat'])[1 + g % 2], now(), now(), now()
         FROM generate_series(1, $2) AS g",
    )
    .bind(OWNER)
    .bind(tickets)
    .execute(&mut *writer)
    .await
    .expect("tickets");
    sqlx::query("SELECT pg_stat_force_next_flush()").execute(&mut *writer).await.expect("flush");
    drop(writer);
    let grown = cached_plan(&mut session, 36).await;
    assert!(grown.contains("tickets_by_"), "the plan is kept as the table grows:\n{grown}");

    let mut analyzed = Vec::new();
    for _ in 0..50 {
        analyzed = dolphin_bridge::statistics_task::run_once(&app.pool).await.expect("statistics");
        if !analyzed.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(analyzed, vec!["tickets".to_string()], "only the table that grew is analyzed");
    let replanned = cached_plan(&mut session, 36).await;
    assert!(!replanned.contains("tickets_by_") && !replanned.contains("Seq Scan on tickets"), "{replanned}");
    assert!(replanned.contains("Index Scan using tickets_pkey"), "each ticket found by its key:\n{replanned}");
    // Nothing more to do until the table changes as much again.
    assert!(dolphin_bridge::statistics_task::run_once(&app.pool).await.expect("statistics").is_empty());
    sqlx::raw_sql("DEALLOCATE plan_under_test").execute(&mut *session).await.expect("deallocate");
    drop(session);
    app.finish().await;
}

/// An analysis keeps no statistics of the payload columns (sorting a sample of JSON
/// documents was most of what analyzing these tables cost), and still keeps those of the
/// columns the plans narrow rows by.
#[tokio::test]
async fn an_analysis_skips_the_payload_columns_and_keeps_the_keys() {
    let app = TestApp::spawn_stepped().await;
    let tenant = app.create_tenant(OWNER).await;
    for n in 0..3 {
        let body = with(&fixture("incoming-text"), json!({"ticketNumber": format!("T-{n}")}));
        assert_eq!(app.post_as_dolphins("incoming", &tenant, &body).await.status(), 200);
    }
    assert_eq!(app.dispatch().await, 3, "each message delivered once");
    sqlx::raw_sql("ANALYZE messages, ticket_events, deliveries, delivery_attempts")
        .execute(&app.pool)
        .await
        .expect("analyze");
    let kept: Vec<(String, String)> = sqlx::query_as(
        "SELECT tablename::text, attname::text FROM pg_stats
         WHERE schemaname = current_schema()
           AND tablename IN ('messages', 'ticket_events', 'deliveries', 'delivery_attempts')",
    )
    .fetch_all(&app.pool)
    .await
    .expect("statistics");
    let has = |table: &str, column: &str| kept.iter().any(|(t, c)| t == table && c == column);
    for (table, column) in [
        ("messages", "raw"),
        ("messages", "warnings"),
        ("messages", "message"),
        ("messages", "media_link"),
        ("ticket_events", "detail"),
        ("deliveries", "body"),
        ("deliveries", "last_error"),
        ("delivery_attempts", "request"),
        ("delivery_attempts", "response_head"),
        ("delivery_attempts", "error"),
    ] {
        assert!(!has(table, column), "{table}.{column} has statistics: {kept:?}");
    }
    for (table, column) in [
        ("messages", "ticket_number"),
        ("messages", "at"),
        ("ticket_events", "kind"),
        ("deliveries", "status"),
        ("delivery_attempts", "at"),
    ] {
        assert!(has(table, column), "{table}.{column} has no statistics: {kept:?}");
    }
    app.finish().await;
}

/// Each event of a message (taken in, delivered) is entered in one index of the audit, its
/// ticket's order; closes and reopens in one more, which the reports count them by.
#[tokio::test]
async fn an_event_is_entered_in_one_audit_index_unless_it_closes_or_reopens() {
    let app = TestApp::spawn_stepped().await;
    let predicates: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT c.relname::text, pg_get_expr(i.indpred, i.indrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
         WHERE i.indrelid = 'ticket_events'::regclass",
    )
    .fetch_all(&app.pool)
    .await
    .expect("indexes");
    let mut entered = std::collections::BTreeMap::<&str, Vec<&str>>::new();
    for kind in ["message_in", "delivered", "closed", "reopened"] {
        for (index, predicate) in &predicates {
            let holds: bool = match predicate {
                None => true,
                Some(predicate) => {
                    sqlx::query_scalar(&format!("SELECT {predicate} FROM (SELECT $1::text AS kind) AS ticket_events"))
                        .bind(kind)
                        .fetch_one(&app.pool)
                        .await
                        .expect("predicate")
                }
            };
            if holds {
                entered.entry(kind).or_default().push(index);
            }
        }
    }
    for kind in ["message_in", "delivered"] {
        assert_eq!(entered[kind], ["ticket_events_pkey"], "{kind}: {predicates:?}");
    }
    for kind in ["closed", "reopened"] {
        assert_eq!(entered[kind].len(), 2, "{kind}: {predicates:?}");
    }
    // The reports' count of closes in a window reads the closes alone.
    let mut conn = app.pool.acquire().await.expect("connection");
    sqlx::raw_sql("SET enable_seqscan = off").execute(&mut *conn).await.expect("set");
    let plan: Vec<(String,)> = sqlx::query_as(
        "EXPLAIN SELECT count(*) FROM ticket_events e
         WHERE e.owner = 'o' AND e.kind = 'closed' AND e.at >= now() - interval '1 day' AND e.at < now()",
    )
    .fetch_all(&mut *conn)
    .await
    .expect("explain");
    let plan = plan.into_iter().map(|(line,)| line).collect::<Vec<_>>().join("\n");
    assert!(plan.contains("ticket_events_closes"), "{plan}");
    drop(conn);
    app.finish().await;
}

/// An operator of a large audit builds its new indexes beforehand without holding off the
/// writes (the README's statements): the migration then takes them as they are, and builds
/// nothing.
#[tokio::test]
async fn audit_indexes_built_beforehand_are_taken_as_they_are() {
    const REINDEXING: i64 = 20261204000017;
    let db_name = format!("dbt_{}", uuid::Uuid::new_v4().simple());
    let url = format!("{}/{db_name}", server_url());
    dolphin_bridge::store::create_database_if_missing(&url).await.expect("create the database");
    let pool = dolphin_bridge::store::connect_lazy(&url, 2).expect("pool");
    let mut before = sqlx::migrate::Migrator::new(std::path::Path::new("migrations")).await.expect("migrations");
    before.migrations = before.migrations.iter().filter(|m| m.version < REINDEXING).cloned().collect::<Vec<_>>().into();
    before.run(&pool).await.expect("the migrations before");
    sqlx::query(
        "INSERT INTO ticket_events (owner, ticket_number, kind, at, actor)
         SELECT 'o', 'T' || (g % 7), (ARRAY['message_in', 'delivered', 'closed'])[1 + g % 3], now(), 'bridge'
         FROM generate_series(1, 300) AS g",
    )
    .execute(&pool)
    .await
    .expect("events");
    for statement in [
        "CREATE UNIQUE INDEX CONCURRENTLY ticket_events_key ON ticket_events (owner, ticket_number, id)",
        "CREATE INDEX CONCURRENTLY ticket_events_closes ON ticket_events (owner, kind, at)
         WHERE kind IN ('closed', 'reopened')",
    ] {
        sqlx::raw_sql(statement).execute(&pool).await.expect("built beforehand");
    }
    let files = "SELECT c.relname::text, c.relfilenode::bigint FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                 WHERE i.indrelid = 'ticket_events'::regclass ORDER BY 1";
    let built: Vec<(String, i64)> = sqlx::query_as(files).fetch_all(&pool).await.expect("indexes");
    let file_of = |indexes: &[(String, i64)], name: &str| indexes.iter().find(|(n, _)| n == name).map(|(_, f)| *f);

    dolphin_bridge::store::MIGRATOR.run(&pool).await.expect("the remaining migrations");
    let after: Vec<(String, i64)> = sqlx::query_as(files).fetch_all(&pool).await.expect("indexes");
    let names: Vec<&str> = after.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["ticket_events_closes", "ticket_events_pkey"], "{after:?}");
    assert_eq!(file_of(&after, "ticket_events_pkey"), file_of(&built, "ticket_events_key"), "the key was not rebuilt");
    assert_eq!(file_of(&after, "ticket_events_closes"), file_of(&built, "ticket_events_closes"));
    pool.close().await;
    let admin = dolphin_bridge::store::connect_lazy(&format!("{}/postgres", server_url()), 1).expect("pool");
    sqlx::query(&format!("DROP DATABASE {db_name} WITH (FORCE)")).execute(&admin).await.expect("drop");
    admin.close().await;
}
