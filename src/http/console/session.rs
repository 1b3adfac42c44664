//! Console sessions: a key (or the admin token) is exchanged once for a signed, expiring,
//! HttpOnly, SameSite=Strict cookie. The cookie holds who signed in (the key's id, never
//! the key; for the admin, a keyed fingerprint of the token) and the session's CSRF token.
//! Every request re-checks that the key is still live, so revoking a key ends its sessions.

use std::sync::OnceLock;

use axum::http::{header, HeaderMap};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use uuid::Uuid;

use super::ConsoleError;
use crate::config::{Config, CookieSecure};
use crate::credentials::constant_time_eq;
use crate::domain::KeyKind;
use crate::http::auth::{self, ApiCaller};
use crate::http::error::ApiError;
use crate::http::AppState;
use crate::store::keys;

pub const COOKIE: &str = "bridge_console";
/// How long a sign-in lasts.
pub const LIFETIME: chrono::Duration = chrono::Duration::hours(8);

/// What the signed cookie says.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    who: Who,
    /// The tenant shown; for the admin, the one picked (none until then).
    owner: Option<String>,
    csrf: String,
    /// Expiry, Unix seconds.
    exp: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Who {
    Key {
        id: Uuid,
    },
    /// A fingerprint of the admin token: changing the token ends admin sessions.
    Admin {
        token: String,
    },
}

/// What a signed-in person may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Read,
    ThirdParty,
    Admin,
}

impl Role {
    /// Retry, cancel, replay: third-party key or admin (as in the API).
    pub fn can_act(self) -> bool {
        matches!(self, Role::ThirdParty | Role::Admin)
    }

    pub fn label(self) -> &'static str {
        match self {
            Role::Read => "read-only",
            Role::ThirdParty => "third-party key",
            Role::Admin => "admin",
        }
    }
}

/// The person behind a request.
pub struct Viewer {
    pub role: Role,
    /// The tenant acted on, with the same rights as an API call by the same credential.
    caller: Option<ApiCaller>,
    pub csrf: String,
    claims: Claims,
}

impl Viewer {
    /// The signed-in person, or a redirect to the sign-in page.
    pub async fn from_request(state: &AppState, headers: &HeaderMap) -> Result<Viewer, ConsoleError> {
        let claims = read_cookie(state, headers).ok_or(ConsoleError::SignIn)?;
        let (role, caller) = match &claims.who {
            Who::Key { id } => {
                let owner = claims.owner.as_deref().ok_or(ConsoleError::SignIn)?;
                let row = keys::find_by_id(&state.pool, owner, *id).await?.ok_or(ConsoleError::SignIn)?;
                let caller = auth::live_caller(row).map_err(|_| ConsoleError::SignIn)?;
                state.limiter.take(caller.key_id).map_err(|s| ConsoleError::Api(ApiError::RateLimited(s)))?;
                let role = if caller.kind == KeyKind::ThirdParty { Role::ThirdParty } else { Role::Read };
                let api = ApiCaller {
                    owner: caller.owner,
                    timezone: caller.timezone,
                    settings: caller.settings,
                    actor: format!("key:{}", caller.key_id),
                };
                (role, Some(api))
            }
            Who::Admin { token } => {
                let expected = state.config.admin_token.as_deref().ok_or(ConsoleError::SignIn)?;
                if !constant_time_eq(token.as_bytes(), admin_fingerprint(&state.config, expected).as_bytes()) {
                    return Err(ConsoleError::SignIn);
                }
                let caller = match claims.owner.as_deref() {
                    Some(owner) => Some(auth::admin_acting_for(state, owner).await.map_err(|e| match e {
                        ApiError::NotFound(_) => ConsoleError::PickTenant,
                        other => ConsoleError::Api(other),
                    })?),
                    None => None,
                };
                (Role::Admin, caller)
            }
        };
        Ok(Viewer { role, caller, csrf: claims.csrf.clone(), claims })
    }

    /// The tenant shown, or (for an admin who has not picked one) a redirect to the picker.
    pub fn tenant(&self) -> Result<&ApiCaller, ConsoleError> {
        self.caller.as_ref().ok_or(ConsoleError::PickTenant)
    }

    pub fn owner(&self) -> Option<&str> {
        self.caller.as_ref().map(|c| c.owner.as_str())
    }

    /// Refuses a form without this session's CSRF token.
    pub fn check_csrf(&self, presented: Option<&str>) -> Result<(), ConsoleError> {
        match presented {
            Some(token) if constant_time_eq(token.as_bytes(), self.csrf.as_bytes()) => Ok(()),
            _ => Err(ConsoleError::Forbidden(
                "This form has expired or did not come from this console. Reload the page and try again.".into(),
            )),
        }
    }

    /// Refuses an action to a read-only session.
    pub fn require_act(&self) -> Result<&ApiCaller, ConsoleError> {
        if !self.role.can_act() {
            return Err(ConsoleError::Forbidden(
                "A read key can look but not change anything: sign in with the third-party key or the admin token."
                    .into(),
            ));
        }
        self.tenant()
    }

    /// The cookie of the same session showing another tenant (admin only).
    pub fn switched_to(&self, state: &AppState, owner: &str, headers: &HeaderMap) -> String {
        let claims = Claims { owner: Some(owner.to_string()), ..self.claims.clone() };
        cookie(state, &claims, headers)
    }
}

/// Starts a session for a key or the admin token; `None` means it is neither.
pub async fn sign_in(state: &AppState, presented: &str) -> Result<Result<Claims, &'static str>, ApiError> {
    let presented = presented.trim();
    let exp = (state.clock.now() + LIFETIME).timestamp();
    let csrf = random_token();
    if let Some(expected) = state.config.admin_token.as_deref() {
        if constant_time_eq(&crate::credentials::hash_key(presented), &crate::credentials::hash_key(expected)) {
            let who = Who::Admin { token: admin_fingerprint(&state.config, expected) };
            return Ok(Ok(Claims { who, owner: None, csrf, exp }));
        }
    }
    let hash = crate::credentials::hash_key(presented);
    let Some(row) = keys::find_by_hash(&state.pool, &hash).await? else {
        return Ok(Err("That key is not known here. Check that you copied all of it."));
    };
    if !constant_time_eq(&row.key_hash, &hash) {
        return Ok(Err("That key is not known here. Check that you copied all of it."));
    }
    let caller = match auth::live_caller(row) {
        Ok(caller) => caller,
        Err(_) => return Ok(Err("That key was revoked, or its tenant was deleted.")),
    };
    if caller.kind == KeyKind::Inbound {
        return Ok(Err("That is the inbound key 3Dolphins posts with; sign in with a read or third-party key."));
    }
    Ok(Ok(Claims { who: Who::Key { id: caller.key_id }, owner: Some(caller.owner), csrf, exp }))
}

/// The `Set-Cookie` value of a session.
pub fn cookie(state: &AppState, claims: &Claims, headers: &HeaderMap) -> String {
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
    let signature = URL_SAFE_NO_PAD.encode(sign(&state.config, payload.as_bytes()));
    let secure = if cookie_is_secure(state.config.cookie_secure, headers) { "; Secure" } else { "" };
    format!(
        "{COOKIE}={payload}.{signature}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        LIFETIME.num_seconds()
    )
}

/// The `Set-Cookie` value that ends a session.
pub fn cleared_cookie() -> String {
    format!("{COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// Whether the session cookie says `Secure`: browsers drop a `Secure` cookie set over plain
/// HTTP (loopback aside), so it is set when the request came over HTTPS — which the bridge,
/// speaking plain HTTP behind a TLS proxy, learns from `X-Forwarded-Proto` — unless
/// `BRIDGE_COOKIE_SECURE` says always or never.
fn cookie_is_secure(setting: CookieSecure, headers: &HeaderMap) -> bool {
    match setting {
        CookieSecure::Always => true,
        CookieSecure::Never => false,
        CookieSecure::Auto => headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https")),
    }
}

fn read_cookie(state: &AppState, headers: &HeaderMap) -> Option<Claims> {
    let value = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)?;
    let (payload, signature) = value.split_once('.')?;
    let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
    let mut mac = mac(&state.config);
    mac.update(payload.as_bytes());
    mac.verify_slice(&signature).ok()?;
    let claims: Claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    (claims.exp > state.clock.now().timestamp()).then_some(claims)
}

type HmacSha256 = Hmac<Sha256>;

fn mac(config: &Config) -> HmacSha256 {
    // An HMAC key of any length is accepted.
    <HmacSha256 as Mac>::new_from_slice(&session_key(config)).unwrap_or_else(|_| unreachable!())
}

fn sign(config: &Config, data: &[u8]) -> Vec<u8> {
    let mut mac = mac(config);
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn admin_fingerprint(config: &Config, token: &str) -> String {
    URL_SAFE_NO_PAD.encode(&sign(config, format!("admin:{token}").as_bytes())[..16])
}

/// The key that signs sessions: derived from `BRIDGE_SECRET_KEY` when it is set, so every
/// process of a deployment accepts the same cookies; otherwise random per process (sessions
/// then end when the process restarts).
fn session_key(config: &Config) -> [u8; 32] {
    static RANDOM: OnceLock<[u8; 32]> = OnceLock::new();
    match config.secret_key {
        Some(secret) => {
            let mut mac = <HmacSha256 as Mac>::new_from_slice(&secret).unwrap_or_else(|_| unreachable!());
            mac.update(b"dolphin-bridge console session v1");
            mac.finalize().into_bytes().into()
        }
        None => *RANDOM.get_or_init(|| {
            let mut key = [0u8; 32];
            rand::thread_rng().fill_bytes(&mut key);
            key
        }),
    }
}

fn random_token() -> String {
    let mut bytes = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// When a form may be trusted to come from this console: a browser that says where the
/// request came from must say it came from here.
pub fn same_origin(headers: &HeaderMap) -> bool {
    if headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()).is_some_and(|s| s == "cross-site") {
        return false;
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    origin.split_once("://").is_some_and(|(_, authority)| authority == host)
}
