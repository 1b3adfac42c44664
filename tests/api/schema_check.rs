//! Every exchange of the integration suite, checked against `/openapi.json`: each test app's
//! router is wrapped (`StartOptions::wrap`) with a layer that reads every reply, and
//! [`TestApp::finish`](crate::helpers::TestApp::finish) fails the test if any broke the
//! document:
//!
//! - the reply's status is documented for its operation, in the content type it came in;
//! - a JSON reply validates against the schema documented for that operation and status
//!   (so a field a handler sends but its type does not declare, or a missing required one,
//!   fails the test that saw it);
//! - a refusal is JSON in the `Error` shape, also on paths or methods that do not exist;
//! - a JSON request body the server accepted from the third party or an API client
//!   validates against the operation's request schema (3Dolphins' bodies are lenient by
//!   design and are not held to it).
//!
//! Console pages are HTML for people and are not in the document; they are skipped.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use futures::StreamExt;
use serde_json::{json, Value};

/// The document, as the server builds it: what request bodies are held to (open objects:
/// the server ignores properties it does not read).
static SPEC: LazyLock<Value> = LazyLock::new(dolphin_bridge::http::spec);

/// The document with its reply shapes closed ([`closed_components`]): what replies are held to.
static CLOSED: LazyLock<Value> = LazyLock::new(|| {
    let mut spec = SPEC.clone();
    spec["components"]["schemas"] = closed_components();
    spec
});

/// Compiled schemas by document (closed or as served) and JSON pointer.
type Compiled = HashMap<(bool, String), Arc<jsonschema::Validator>>;

static VALIDATORS: LazyLock<Mutex<Compiled>> = LazyLock::new(Default::default);

/// The largest body the check reads (CSV exports can be long; they are not validated).
const MAX_READ: usize = 64 * 1024 * 1024;

/// What one test app's replies broke.
#[derive(Clone, Default)]
pub struct Violations(Arc<Mutex<Vec<String>>>);

impl Violations {
    fn push(&self, what: String) {
        if let Ok(mut list) = self.0.lock() {
            list.push(what);
        }
    }

    pub fn take(&self) -> Vec<String> {
        self.0.lock().map(|mut l| std::mem::take(&mut *l)).unwrap_or_default()
    }

    /// The wrap that checks every exchange of a router into `self`.
    pub fn wrap(&self) -> dolphin_bridge::startup::RouterWrap {
        let violations = self.clone();
        Box::new(move |router: axum::Router| router.layer(axum::middleware::from_fn_with_state(violations, check)))
    }
}

/// A validator of the schema at `pointer` in the document (`closed` or as served), with the
/// document's components in reach of its `$ref`s.
fn validator(closed: bool, pointer: &str) -> Option<Arc<jsonschema::Validator>> {
    let mut cache = VALIDATORS.lock().ok()?;
    let key = (closed, pointer.to_string());
    if let Some(v) = cache.get(&key) {
        return Some(v.clone());
    }
    let document: &Value = if closed { &CLOSED } else { &SPEC };
    let mut root = document.pointer(pointer)?.clone();
    if let Value::Object(map) = &mut root {
        map.insert("$schema".into(), json!("https://json-schema.org/draft/2020-12/schema"));
        map.insert("components".into(), document["components"].clone());
    }
    let compiled = Arc::new(jsonschema::validator_for(&root).ok()?);
    cache.insert(key, compiled.clone());
    Some(compiled)
}

/// The document's schema components, closed: an object with declared properties may have no
/// others (`unevaluatedProperties: false`, which sees through `allOf` and `$ref`). The parts
/// of a flattened type (`allOf` members) stay open, and their composite is closed instead.
fn closed_components() -> Value {
    let mut schemas = SPEC["components"]["schemas"].clone();
    let mut parts = Vec::new();
    for schema in schemas.as_object().into_iter().flat_map(|m| m.values()) {
        for member in schema["allOf"].as_array().into_iter().flatten() {
            if let Some(r) = member["$ref"].as_str() {
                parts.push(r.trim_start_matches("#/components/schemas/").to_string());
            }
        }
    }
    for (name, schema) in schemas.as_object_mut().into_iter().flatten() {
        let Some(object) = schema.as_object_mut() else { continue };
        let composite = object.contains_key("allOf");
        let closable = object.contains_key("properties") && !object.contains_key("additionalProperties");
        if composite || (closable && !parts.contains(name)) {
            object.insert("unevaluatedProperties".into(), Value::Bool(false));
        }
    }
    schemas
}

/// `~` and `/` escaped for a JSON pointer.
fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// What `instance` breaks of the reply schema at `pointer` (`None`: nothing).
fn errors_of(pointer: &str, instance: &Value) -> Option<Vec<String>> {
    errors_against(true, pointer, instance)
}

fn errors_against(closed: bool, pointer: &str, instance: &Value) -> Option<Vec<String>> {
    let Some(v) = validator(closed, pointer) else {
        return Some(vec![format!("no schema at {pointer}")]);
    };
    let errors: Vec<String> = v.iter_errors(instance).map(|e| format!("{e} at {}", e.instance_path())).collect();
    (!errors.is_empty()).then_some(errors)
}

async fn check(State(violations): State<Violations>, request: Request, next: Next) -> Response {
    let method = request.method().as_str().to_ascii_lowercase();
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string());
    let path = request.uri().path().to_string();
    if route.as_deref().is_some_and(|r| r.starts_with("/console")) {
        return next.run(request).await;
    }
    // The body as the handler reads it (read ahead, it would escape the timeout layer).
    let (parts, body) = request.into_parts();
    let read = Arc::new(Mutex::new(Vec::new()));
    let tee = read.clone();
    let body = body.into_data_stream().inspect(move |chunk| {
        if let (Ok(bytes), Ok(mut copy)) = (chunk, tee.lock()) {
            copy.extend_from_slice(bytes);
        }
    });
    let response = next.run(Request::from_parts(parts, Body::from_stream(body))).await;
    let request_body = read.lock().map(|b| b.clone()).unwrap_or_default();

    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|ct| ct.split(';').next().unwrap_or("").trim().to_string())
        .unwrap_or_default();
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_READ).await.unwrap_or_default();
    let response = Response::from_parts(parts, Body::from(bytes.clone()));

    let here = format!("{} {path} → {status}", method.to_uppercase());
    let operation = route.as_deref().and_then(|r| SPEC["paths"][r].get(&method).map(|_| r));
    let Some(template) = operation else {
        // No such route or method: only the error shape is promised.
        if content_type != "application/json" {
            violations.push(format!("{here}: a refusal in {content_type:?}, not the JSON error shape"));
        } else if let Ok(value) = serde_json::from_slice::<Value>(&bytes) {
            if let Some(errors) = errors_of("/components/schemas/Error", &value) {
                violations.push(format!("{here}: not the Error shape: {errors:?}"));
            }
        }
        return response;
    };
    let op = format!("/paths/{}/{method}", escape(template));
    let Some(documented) = SPEC.pointer(&format!("{op}/responses/{status}")) else {
        violations.push(format!("{here}: status {status} is not documented for {method} {template}"));
        return response;
    };
    if bytes.is_empty() && documented.get("content").is_none() {
        return response;
    }
    if documented["content"].get(&content_type).is_none() {
        violations.push(format!("{here}: {content_type:?} is not documented (documented: {})", documented["content"]));
        return response;
    }
    if content_type == "application/json" {
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(value) => {
                let pointer = format!("{op}/responses/{status}/content/application~1json/schema");
                if let Some(errors) = errors_of(&pointer, &value) {
                    violations.push(format!("{here}: the reply breaks its schema: {errors:?} in {value}"));
                }
            }
            Err(e) => violations.push(format!("{here}: declared JSON, is not: {e}")),
        }
    }
    let lenient = template.starts_with("/webhooks/3dolphins/");
    let body_schema = format!("{op}/requestBody/content/application~1json/schema");
    if (200..300).contains(&status) && !lenient && SPEC.pointer(&body_schema).is_some() {
        match serde_json::from_slice::<Value>(&request_body) {
            Ok(value) => {
                if let Some(errors) = errors_against(false, &body_schema, &value) {
                    violations
                        .push(format!("{here}: an accepted body breaks the request schema: {errors:?} in {value}"));
                }
            }
            Err(e) => violations.push(format!("{here}: accepted a body that is not JSON: {e}")),
        }
    }
    response
}

#[test]
fn the_check_catches_what_it_is_for() {
    let ticket = "/components/schemas/Ticket";
    let good = json!({"ticketNumber": "T", "status": "open", "openedAt": "2026-01-01T00:00:00Z",
                      "messagesIn": 0, "messagesOut": 0, "reopenCount": 0});
    assert_eq!(errors_of(ticket, &good), None);
    assert!(errors_of(ticket, &json!({"ticketNumber": "T", "status": "open"})).is_some(), "required fields");
    assert!(errors_of(ticket, &json!({"ticketNumber": 5})).is_some(), "types");
    let mut extra = good.clone();
    extra["surprise"] = json!(1);
    assert!(errors_of(ticket, &extra).is_some(), "a property the type does not declare");
    let created = "/components/schemas/TenantCreated";
    assert!(errors_of(created, &json!({"owner": "o", "surprise": 1})).is_some(), "through a flattened type too");
    let error = "/components/schemas/Error";
    assert!(errors_of(error, &json!({"status": "error", "error": {"code": "not_found", "message": "x"}})).is_none());
    assert!(errors_of(error, &json!({"status": "error", "error": {"code": "no_such_code", "message": "x"}})).is_some());
}
