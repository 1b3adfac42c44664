//! Hostile input never hurts: generated bodies and query parameters (proptest strategies,
//! a fixed seed) thrown at every webhook and list endpoint. Every answer must be a 2xx or a
//! 4xx in the error shape of README *HTTP surface*, errors — never a 5xx — and the bridge must still serve.

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_json::{json, Map, Value};

use crate::helpers::*;

/// The documented fields, plus one nobody documents.
fn fields() -> Vec<&'static str> {
    let mut fields = dolphin_bridge::domain::payload::DOCUMENTED_FIELDS.to_vec();
    fields.push("extra");
    fields
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,40}",
        "\\PC{0,20}",
        Just("\u{0}".to_string()),
        Just("x".repeat(5000)),
        Just("2026-11-24T09:15".to_string()),
        Just("location".to_string()),
        Just("-6.2,106.8".to_string()),
        Just("https://media.example.com/a.jpg".to_string()),
        Just("close".to_string()),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(fields()), inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    })
}

/// A valid event with some fields replaced or removed, or an arbitrary value.
fn body(base: Value) -> impl Strategy<Value = Value> {
    let mutated = prop::collection::vec((prop::sample::select(fields()), prop::option::of(json_value())), 0..6)
        .prop_map(move |changes| {
            let mut out: Map<String, Value> = base.as_object().cloned().unwrap_or_default();
            for (field, value) in changes {
                match value {
                    Some(v) => {
                        out.insert(field.to_string(), v);
                    }
                    None => {
                        out.remove(field);
                    }
                }
            }
            Value::Object(out)
        });
    prop_oneof![4 => mutated, 1 => json_value()]
}

fn sample<S: Strategy>(strategy: &S, runner: &mut TestRunner) -> S::Value {
    strategy.new_tree(runner).expect("strategy generates").current()
}

async fn assert_sane(response: reqwest::Response, what: &str) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    assert!(status < 500, "{what}: {status} {text}");
    if status >= 400 {
        let error: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{what}: {status} not JSON: {text}"));
        assert_eq!(error["status"], "error", "{what}");
        assert!(error["error"]["code"].is_string() && error["error"]["message"].is_string(), "{what}: {text}");
    }
}

#[tokio::test]
async fn generated_bodies_never_get_a_5xx_at_any_webhook() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(OWNER).await;
    // Some tickets exist so the third-party side gets past "unknown ticket" sometimes.
    assert_eq!(app.post_as_dolphins("incoming", &tenant, &fixture("incoming-text")).await.status(), 200);
    let mut runner = TestRunner::deterministic();
    let cases = [
        ("3dolphins/incoming", body(fixture("incoming-text"))),
        ("3dolphins/outgoing", body(fixture("outgoing-text"))),
        ("3dolphins/commands", body(fixture("command-close"))),
        ("third-party/messages", body(fixture("outgoing-text"))),
        ("third-party/commands", body(fixture("command-close"))),
    ];
    for (endpoint, strategy) in &cases {
        for _ in 0..60 {
            let value = sample(strategy, &mut runner);
            let url = match endpoint.split_once('/') {
                Some(("3dolphins", _)) => app.url(&format!("/webhooks/{endpoint}?token={}", tenant.inbound)),
                _ => app.url(&format!("/webhooks/{endpoint}")),
            };
            let response =
                app.http.post(url).bearer_auth(&tenant.third_party).json(&value).send().await.expect("request");
            assert_sane(response, &format!("{endpoint} {value}")).await;
        }
        // Raw bytes: invalid UTF-8, broken JSON, deep nesting, duplicate keys.
        for raw in [
            vec![0xff, 0xfe, 0x00, 0x7b],
            b"{\"ticketNumber\":".to_vec(),
            format!("{}{}", "[".repeat(5000), "]".repeat(5000)).into_bytes(),
            br#"{"owner":"x","owner":"9c2f4e7a1b3d5c6e8f0a1b2c3d4e5f60","ticketNumber":"d","ticketNumber":"T-dup"}"#
                .to_vec(),
        ] {
            let url = if endpoint.starts_with("3dolphins") {
                app.url(&format!("/webhooks/{endpoint}?token={}", tenant.inbound))
            } else {
                app.url(&format!("/webhooks/{endpoint}"))
            };
            let response = app
                .http
                .post(url)
                .bearer_auth(&tenant.third_party)
                .header("content-type", "application/json")
                .body(raw)
                .send()
                .await
                .expect("request");
            assert_sane(response, endpoint).await;
        }
    }
    // Still healthy, and refused requests stored nothing half-way.
    assert_eq!(app.http.get(app.url("/readyz")).send().await.expect("request").status(), 200);
    let orphans = app.count("SELECT count(*) FROM messages m WHERE NOT EXISTS (SELECT 1 FROM tickets t WHERE t.owner = m.owner AND t.ticket_number = m.ticket_number)").await;
    assert_eq!(orphans, 0);
    app.finish().await;
}

#[tokio::test]
async fn generated_query_parameters_never_get_a_5xx() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(OWNER).await;
    assert_eq!(app.post_as_dolphins("incoming", &tenant, &fixture("incoming-text")).await.status(), 200);
    let ticket = fixture("incoming-text")["ticketNumber"].as_str().unwrap_or_default().to_string();
    let names = [
        "limit",
        "cursor",
        "from",
        "to",
        "tz",
        "status",
        "channel",
        "q",
        "interval",
        "target",
        "source",
        "format",
        "contactId",
    ];
    let params = prop::collection::vec((prop::sample::select(names.to_vec()), text()), 0..5);
    let mut runner = TestRunner::deterministic();
    let segment = text().prop_map(|s| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>());
    for _ in 0..30 {
        let x = sample(&segment, &mut runner);
        for path in [
            format!("/api/v1/tickets/{x}"),
            format!("/api/v1/tickets/{x}/export"),
            format!("/api/v1/tickets/{x}/deliveries"),
            format!("/api/v1/deliveries/{x}"),
            format!("/api/v1/messages/{x}"),
            format!("/api/v1/contacts/{x}"),
        ] {
            let response = app.http.get(app.url(&path)).bearer_auth(&tenant.read).send().await.expect("request");
            assert_sane(response, &path).await;
        }
        for path in [format!("/api/v1/deliveries/{x}/retry"), format!("/api/v1/endpoints/{x}/pause")] {
            let response =
                app.http.post(app.url(&path)).bearer_auth(&tenant.third_party).send().await.expect("request");
            assert_sane(response, &path).await;
        }
        let response = app
            .http
            .get(app.url(&format!("/admin/v1/tenants/{x}")))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("request");
        assert_sane(response, "admin tenant").await;
    }
    let paths = [
        "/api/v1/tickets".to_string(),
        format!("/api/v1/tickets/{ticket}/messages"),
        format!("/api/v1/tickets/{ticket}/events"),
        "/api/v1/deliveries".to_string(),
        "/api/v1/reports/summary".to_string(),
        "/api/v1/reports/timeseries".to_string(),
    ];
    for path in &paths {
        for _ in 0..40 {
            let pairs = sample(&params, &mut runner);
            let query: String =
                url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs.iter()).finish();
            let response = app
                .http
                .get(app.url(&format!("{path}?{query}")))
                .bearer_auth(&tenant.read)
                .send()
                .await
                .expect("request");
            assert_sane(response, &format!("{path}?{query}")).await;
        }
    }
    app.finish().await;
}
