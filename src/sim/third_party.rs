//! The third-party simulator: a contact centre that receives Incoming Events (verifying
//! their Standard Webhooks signature), and, like a busy agent, answers some of them after
//! a think time and closes the ticket after a few replies.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use rand::Rng;
use serde_json::{json, Value};

use super::Behaviour;

/// What the simulated agent does.
#[derive(Debug, Clone)]
pub struct AgentPlan {
    /// Think time before a reply.
    pub think: Duration,
    /// Chance (0–1) to answer a customer message.
    pub reply_chance: f64,
    /// Close the ticket after this many agent replies (0: never).
    pub close_after: usize,
}

impl Default for AgentPlan {
    fn default() -> Self {
        AgentPlan { think: Duration::from_millis(800), reply_chance: 0.8, close_after: 3 }
    }
}

/// One request the simulator got from the bridge.
#[derive(Debug, Clone)]
pub struct Got {
    pub path: String,
    pub body: Value,
    pub signature_ok: bool,
}

#[derive(Default)]
struct Inner {
    got: Vec<Got>,
    /// Agent replies the simulator sent, per ticket.
    replies: HashMap<String, usize>,
    /// Tickets the simulator closed.
    closed: Vec<String>,
    behaviour: Behaviour,
}

/// Where the simulated agent sends replies, and the secret to verify signatures with.
#[derive(Debug, Clone)]
pub struct BridgeAccess {
    pub base_url: String,
    pub third_party_key: String,
    pub signing_secret: String,
}

/// A running third-party simulator.
#[derive(Clone)]
pub struct ThirdPartySim {
    pub address: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    bridge: Arc<Mutex<Option<BridgeAccess>>>,
}

impl ThirdPartySim {
    /// Starts on a random loopback port.
    pub async fn start(plan: AgentPlan) -> std::io::Result<ThirdPartySim> {
        ThirdPartySim::start_on(plan, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts on `address`.
    pub async fn start_on(plan: AgentPlan, address: SocketAddr) -> std::io::Result<ThirdPartySim> {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let bridge = Arc::new(Mutex::new(None));
        let state = AppState { inner: inner.clone(), bridge: bridge.clone(), plan, client: reqwest::Client::new() };
        let app = Router::new().fallback(receive).with_state(state);
        let address = super::serve(app, address).await?;
        Ok(ThirdPartySim { address, inner, bridge })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Connects the simulated agent to the bridge (after the tenant exists).
    pub fn connect(&self, access: BridgeAccess) {
        if let Ok(mut b) = self.bridge.lock() {
            *b = Some(access);
        }
    }

    pub fn set_behaviour(&self, behaviour: Behaviour) {
        if let Ok(mut i) = self.inner.lock() {
            i.behaviour = behaviour;
        }
    }

    /// Everything received so far.
    pub fn got(&self) -> Vec<Got> {
        self.inner.lock().map(|i| i.got.clone()).unwrap_or_default()
    }

    /// Tickets the agent closed.
    pub fn closed(&self) -> Vec<String> {
        self.inner.lock().map(|i| i.closed.clone()).unwrap_or_default()
    }
}

#[derive(Clone)]
struct AppState {
    inner: Arc<Mutex<Inner>>,
    bridge: Arc<Mutex<Option<BridgeAccess>>>,
    plan: AgentPlan,
    client: reqwest::Client,
}

async fn receive(State(state): State<AppState>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let access = state.bridge.lock().ok().and_then(|b| b.clone());
    let signature_ok =
        access.as_ref().is_some_and(|a| crate::signature::verify(&a.signing_secret, &body, &headers).is_ok());
    if access.is_some() && !signature_ok {
        tracing::warn!(path = uri.path(), "a delivery whose signature does not verify: refused with 401");
        return (StatusCode::UNAUTHORIZED, "bad signature").into_response();
    }
    let Ok(value) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "not JSON").into_response();
    };
    let behaviour = {
        let Ok(mut inner) = state.inner.lock() else { return StatusCode::INTERNAL_SERVER_ERROR.into_response() };
        inner.got.push(Got { path: uri.path().to_string(), body: value.clone(), signature_ok });
        inner.behaviour
    };
    match behaviour {
        Behaviour::Failing => return (StatusCode::INTERNAL_SERVER_ERROR, "simulated failure").into_response(),
        Behaviour::Slow => tokio::time::sleep(Duration::from_secs(3)).await,
        Behaviour::Healthy => {}
    }
    if uri.path().ends_with("/incoming") {
        if let Some(access) = access {
            let roll: f64 = rand::thread_rng().gen_range(0.0..1.0);
            if roll < state.plan.reply_chance {
                tokio::spawn(answer(state.clone(), access, value));
            }
        }
    }
    axum::Json(json!({"status": "success"})).into_response()
}

/// The agent's answer: a reply after the think time, then maybe a close.
async fn answer(state: AppState, access: BridgeAccess, incoming: Value) {
    tokio::time::sleep(state.plan.think).await;
    let ticket = incoming["ticketNumber"].as_str().unwrap_or_default().to_string();
    let reply = json!({
        "ticketNumber": ticket,
        "channel": incoming["channel"],
        "messageType": "text",
        "message": format!("Terima kasih, kami cek pesan \"{}\" ya.", incoming["message"].as_str().unwrap_or("")),
        "mediaLink": "",
        "customerName": incoming["customerName"],
        "owner": incoming["owner"],
    });
    let post = |path: &str, body: &Value| {
        state.client.post(format!("{}{path}", access.base_url)).bearer_auth(&access.third_party_key).json(body).send()
    };
    match post("/webhooks/third-party/messages", &reply).await {
        Ok(r) if r.status().is_success() => {}
        Ok(r) => return tracing::debug!(status = %r.status(), %ticket, "simulated agent reply refused"),
        Err(e) => return tracing::debug!(error = %e, "simulated agent could not reach the bridge"),
    }
    let replies = {
        let Ok(mut inner) = state.inner.lock() else { return };
        let n = inner.replies.entry(ticket.clone()).or_default();
        *n += 1;
        *n
    };
    if state.plan.close_after > 0 && replies >= state.plan.close_after {
        let close = json!({"ticketNumber": ticket, "channel": incoming["channel"], "owner": incoming["owner"], "event": "close"});
        if post("/webhooks/third-party/commands", &close).await.is_ok_and(|r| r.status().is_success()) {
            if let Ok(mut inner) = state.inner.lock() {
                inner.closed.push(ticket.clone());
                inner.replies.remove(&ticket);
            }
        }
    }
}
