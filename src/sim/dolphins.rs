//! The 3Dolphins simulator: customers on several channels writing in (Incoming Events to
//! the bridge), the endpoints the bridge delivers agent replies and closes to, and the
//! three 3Dolphins APIs the bridge calls — `/graph/auth`, the conversation-history report
//! and the Contact API — answered from what the simulator has seen.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rand::seq::SliceRandom;
use rand::Rng;
use serde_json::{json, Value};

use super::Behaviour;

/// The API prefix of a 3Dolphins server (`{server}/dolphin/apiv1/graph/...`).
pub const API_PREFIX: &str = "/dolphin/apiv1";
/// Rows per page of the conversation-history report.
const HISTORY_PAGE: usize = 20;

const FIRST_NAMES: [&str; 10] = ["Dewi", "Budi", "Siti", "Agus", "Rina", "Andi", "Putri", "Joko", "Maya", "Hendra"];
const LAST_NAMES: [&str; 6] = ["Lestari", "Santoso", "Wijaya", "Pratama", "Sari", "Nugroho"];
const CHANNELS: [&str; 3] = ["whatsapp", "telegrambot", "webchat"];
const TEXTS: [&str; 6] = [
    "Halo, pesanan saya belum sampai",
    "Apakah bisa ganti alamat pengiriman?",
    "Terima kasih",
    "Kapan paket saya dikirim?",
    "Saya mau komplain, barangnya rusak",
    "ok",
];

#[derive(Debug, Clone)]
struct Customer {
    contact_id: String,
    first: String,
    last: String,
    phone: String,
    channel: &'static str,
}

/// One line of a conversation as the history report shows it.
#[derive(Debug, Clone)]
struct Line {
    ticket: String,
    contact_id: String,
    channel: &'static str,
    answer: bool,
    message: String,
    created_ms: i64,
}

#[derive(Default)]
struct Inner {
    customers: Vec<Customer>,
    /// The open ticket of each customer (by index), if any.
    open_ticket: HashMap<usize, String>,
    conversation: Vec<Line>,
    /// What the bridge delivered: (path, body).
    got: Vec<(String, Value)>,
    token: String,
    behaviour: Behaviour,
    history_down: bool,
    /// When set, every agent reply delivered to the simulator is posted back to the bridge
    /// as an Outgoing Event, as a 3Dolphins whose `sendMessage` hook fires on its own
    /// deliveries would (exercises echo suppression).
    echo_to: Option<BridgeAccess>,
}

/// Where the simulator sends Incoming Events.
#[derive(Debug, Clone)]
pub struct BridgeAccess {
    pub base_url: String,
    pub inbound_token: String,
    pub owner: String,
}

/// A running 3Dolphins simulator.
#[derive(Clone)]
pub struct DolphinsSim {
    pub address: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    client: reqwest::Client,
}

impl DolphinsSim {
    /// Starts with `customers` generated customers on a random loopback port.
    pub async fn start(customers: usize) -> std::io::Result<DolphinsSim> {
        DolphinsSim::start_on(customers, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts with `customers` generated customers on `address`.
    pub async fn start_on(customers: usize, address: SocketAddr) -> std::io::Result<DolphinsSim> {
        let mut rng = rand::thread_rng();
        let customers = (0..customers)
            .map(|i| Customer {
                contact_id: format!("{:032x}", rng.gen::<u128>()),
                first: FIRST_NAMES[i % FIRST_NAMES.len()].to_string(),
                last: LAST_NAMES[i % LAST_NAMES.len()].to_string(),
                phone: format!("62812{:08}", rng.gen_range(0..100_000_000u32)),
                channel: CHANNELS[i % CHANNELS.len()],
            })
            .collect();
        let inner = Arc::new(Mutex::new(Inner {
            customers,
            token: format!("sim-token-{:016x}", rng.gen::<u64>()),
            ..Inner::default()
        }));
        let app = Router::new()
            .route(&format!("{API_PREFIX}/graph/auth"), post(auth))
            .route(&format!("{API_PREFIX}/graph/report/conversations"), post(history))
            .route(&format!("{API_PREFIX}/graph/contacts/contactById"), get(contact))
            .fallback(receive)
            .with_state(inner.clone());
        let address = super::serve(app, address).await?;
        Ok(DolphinsSim { address, inner, client: reqwest::Client::new() })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// The `apiBaseUrl` to configure on the tenant.
    pub fn api_base_url(&self) -> String {
        self.url(API_PREFIX)
    }

    pub fn set_behaviour(&self, behaviour: Behaviour) {
        if let Ok(mut i) = self.inner.lock() {
            i.behaviour = behaviour;
        }
    }

    /// Makes the history and contact APIs answer 503 (3Dolphins API down).
    pub fn set_api_down(&self, down: bool) {
        if let Ok(mut i) = self.inner.lock() {
            i.history_down = down;
        }
    }

    /// Posts every agent reply back to the bridge (`Some`) or stops doing so (`None`).
    pub fn set_echo(&self, bridge: Option<BridgeAccess>) {
        if let Ok(mut i) = self.inner.lock() {
            i.echo_to = bridge;
        }
    }

    /// A bot or agent on the 3Dolphins side answers on `ticket`: an Outgoing Event to the
    /// bridge's `/webhooks/3dolphins/outgoing`, mirrored to the third party.
    pub async fn emit_reply(&self, bridge: &BridgeAccess, ticket: &str, text: &str) -> Result<u16, reqwest::Error> {
        let event = json!({"ticketNumber": ticket, "channel": "whatsapp", "messageType": "text", "message": text,
                           "mediaLink": "", "customerName": "", "owner": bridge.owner});
        let url = format!("{}/webhooks/3dolphins/outgoing?token={}", bridge.base_url, bridge.inbound_token);
        Ok(self.client.post(url).json(&event).send().await?.status().as_u16())
    }

    /// What the bridge delivered so far: (path, body).
    pub fn got(&self) -> Vec<(String, Value)> {
        self.inner.lock().map(|i| i.got.clone()).unwrap_or_default()
    }

    /// A customer writes in: a new ticket if they have none open, else on their open one.
    /// Answers the event sent and the bridge's HTTP status.
    pub async fn emit_incoming(&self, bridge: &BridgeAccess) -> Result<(Value, u16), reqwest::Error> {
        let event = {
            let Ok(mut inner) = self.inner.lock() else { return Ok((Value::Null, 0)) };
            let mut rng = rand::thread_rng();
            let who = rng.gen_range(0..inner.customers.len().max(1));
            let Some(customer) = inner.customers.get(who).cloned() else { return Ok((Value::Null, 0)) };
            let ticket = inner.open_ticket.entry(who).or_insert_with(|| format!("{:032x}", rng.gen::<u128>())).clone();
            let kind =
                *["text", "text", "text", "text", "image", "location", "sticker"].choose(&mut rng).unwrap_or(&"text");
            let (message, media) = match kind {
                "image" => (
                    "foto paket".to_string(),
                    format!("https://media.example.com/{ticket}/IMG-{}.jpg", rng.gen::<u16>()),
                ),
                "location" => {
                    (format!("{:.6},{:.6}", rng.gen_range(-7.0..-6.0), rng.gen_range(106.0..107.0)), String::new())
                }
                "sticker" => (String::new(), format!("https://media.example.com/{ticket}/STK.webp")),
                _ => (TEXTS.choose(&mut rng).unwrap_or(&"ok").to_string(), String::new()),
            };
            let now = chrono::Utc::now();
            let local = now.with_timezone(&chrono_tz::Asia::Jakarta).format("%Y-%m-%dT%H:%M:%S%.3f").to_string();
            let shown = if kind == "sticker" { "Sticker".to_string() } else { message.clone() };
            inner.conversation.push(Line {
                ticket: ticket.clone(),
                contact_id: customer.contact_id.clone(),
                channel: customer.channel,
                answer: false,
                message: shown,
                created_ms: now.timestamp_millis(),
            });
            json!({
                "ticketNumber": ticket, "channel": customer.channel, "accountId": customer.phone,
                "contactId": customer.contact_id, "customerName": format!("{} {}", customer.first, customer.last),
                "createdDate": local, "owner": bridge.owner, "groupId": "", "language": "",
                "messageType": kind, "message": message, "mediaLink": media,
            })
        };
        let url = format!("{}/webhooks/3dolphins/incoming?token={}", bridge.base_url, bridge.inbound_token);
        let status = self.client.post(url).json(&event).send().await?.status().as_u16();
        Ok((event, status))
    }

    /// Sends one Incoming Event every `every` until `stop` turns true.
    pub async fn run_traffic(
        &self,
        bridge: BridgeAccess,
        every: Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.changed() => {}
            }
            if *stop.borrow() {
                return;
            }
            if let Err(e) = self.emit_incoming(&bridge).await {
                tracing::debug!(error = %e, "simulated customer could not reach the bridge");
            }
        }
    }
}

type Shared = Arc<Mutex<Inner>>;

/// Agent replies (`…/send`) and closes (`…/command`) delivered by the bridge.
async fn receive(State(inner): State<Shared>, uri: Uri, Json(body): Json<Value>) -> Response {
    let echo_to = inner.lock().ok().and_then(|i| i.echo_to.clone()).filter(|_| body.get("message").is_some());
    if let Some(bridge) = echo_to {
        let echo = body.clone();
        tokio::spawn(async move {
            let url = format!("{}/webhooks/3dolphins/outgoing?token={}", bridge.base_url, bridge.inbound_token);
            if let Err(e) = reqwest::Client::new().post(url).json(&echo).send().await {
                tracing::debug!(error = %e, "simulated echo could not reach the bridge");
            }
        });
    }
    let behaviour = {
        let Ok(mut i) = inner.lock() else { return StatusCode::INTERNAL_SERVER_ERROR.into_response() };
        i.got.push((uri.path().to_string(), body.clone()));
        let ticket = body["ticketNumber"].as_str().unwrap_or_default().to_string();
        if body.get("message").is_some() {
            let (contact_id, channel) = i
                .conversation
                .iter()
                .find(|l| l.ticket == ticket)
                .map(|l| (l.contact_id.clone(), l.channel))
                .unwrap_or_default();
            let message = body["message"].as_str().unwrap_or_default().to_string();
            let created_ms = chrono::Utc::now().timestamp_millis();
            i.conversation.push(Line { ticket, contact_id, channel, answer: true, message, created_ms });
        } else if body["event"] == "close" {
            i.open_ticket.retain(|_, t| *t != ticket);
        }
        i.behaviour
    };
    match behaviour {
        Behaviour::Failing => (StatusCode::INTERNAL_SERVER_ERROR, "simulated failure").into_response(),
        Behaviour::Slow => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            Json(json!({"status": "success"})).into_response()
        }
        Behaviour::Healthy => Json(json!({"status": "success"})).into_response(),
    }
}

async fn auth(State(inner): State<Shared>, Json(body): Json<Value>) -> Response {
    let given = |k: &str| body[k].as_str().is_some_and(|v| !v.is_empty());
    if !given("username") || !given("password") {
        return (StatusCode::UNAUTHORIZED, Json(json!({"status": "error"}))).into_response();
    }
    let token = inner.lock().map(|i| i.token.clone()).unwrap_or_default();
    let expires = (chrono::Utc::now() + chrono::Duration::hours(1)).with_timezone(&chrono_tz::Asia::Jakarta);
    let expire_at = format!("{}[Asia/Jakarta]", expires.format("%Y-%m-%dT%H:%M:%S%.3f%:z"));
    Json(json!({"token": token, "expireAt": expire_at})).into_response()
}

fn authorised(inner: &Shared, headers: &HeaderMap) -> bool {
    let token = inner.lock().map(|i| i.token.clone()).unwrap_or_default();
    let presented = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
    presented == format!("Bearer {token}")
}

fn invalid_token() -> Response {
    (StatusCode::UNAUTHORIZED, Json(json!({"status": "error", "message": "invalid token"}))).into_response()
}

fn api_down(inner: &Shared) -> bool {
    inner.lock().map(|i| i.history_down).unwrap_or(true)
}

async fn history(
    State(inner): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    Json(filter): Json<Value>,
) -> Response {
    if !authorised(&inner, &headers) {
        return invalid_token();
    }
    if api_down(&inner) {
        return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
    }
    let start: usize = q.get("startIndex").and_then(|s| s.parse().ok()).unwrap_or(0);
    let ticket = filter["ticketNumber"].as_str().unwrap_or_default();
    let rows: Vec<Value> = inner
        .lock()
        .map(|i| {
            i.conversation
                .iter()
                .filter(|l| ticket.is_empty() || l.ticket == ticket)
                .map(|l| {
                    json!({"ticketNumber": l.ticket, "contactId": l.contact_id, "channelType": l.channel,
                           "answer": l.answer, "message": l.message, "cleanedMessage": l.message,
                           "createdDate": l.created_ms, "collection": "master_ticket"})
                })
                .collect()
        })
        .unwrap_or_default();
    let page: Vec<Value> = rows.iter().skip(start).take(HISTORY_PAGE).cloned().collect();
    let next = start + page.len();
    Json(json!({"status": "success", "data": page, "hasMore": next < rows.len(), "nextIndex": next})).into_response()
}

async fn contact(
    State(inner): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if !authorised(&inner, &headers) {
        return invalid_token();
    }
    if api_down(&inner) {
        return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
    }
    let wanted = q.get("contactId").cloned().unwrap_or_default();
    let found = inner.lock().ok().and_then(|i| i.customers.iter().find(|c| c.contact_id == wanted).cloned());
    match found {
        Some(c) => Json(json!({"status": "success", "data": {
            "id": c.contact_id, "contactFirstName": c.first, "contactLastName": c.last,
            "phones": [c.phone], "phonesString": c.phone, "username": format!("{} {}", c.first, c.last),
        }}))
        .into_response(),
        None => {
            (StatusCode::NOT_FOUND, Json(json!({"status": "error", "message": "contact not found"}))).into_response()
        }
    }
}
