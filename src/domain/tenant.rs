//! A tenant's settings as the admin API takes and shows them (README *HTTP surface*, admin and credentials), and the
//! rules they must follow. Reading collects every problem so a 400 can list them all.

use std::collections::BTreeMap;

use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::payload::Problem;
use super::{Peer, Target};
use crate::config::{parse_duration, parse_schedule};

/// Where the third party wants events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ThirdParty {
    pub incoming_url: String,
    pub outgoing_url: Option<String>,
    pub command_url: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// How the third party authenticates its calls: `bearer` (its key) or also `signature`
    /// (Standard Webhooks headers signed with the tenant's signing secret).
    #[serde(default = "default_inbound_auth")]
    pub inbound_auth: String,
}

fn default_inbound_auth() -> String {
    "bearer".into()
}

/// The accepted `thirdParty.inboundAuth` values.
pub const INBOUND_AUTH: [&str; 2] = ["bearer", "signature"];

/// Where 3Dolphins takes replies and commands, and its API account (password kept apart).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Dolphins {
    pub send_message_url: Option<String>,
    pub command_url: Option<String>,
    pub api_base_url: Option<String>,
    pub username: Option<String>,
    #[serde(default)]
    pub use_api_token: bool,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// Per-tenant overrides of the delivery defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    pub retry_schedule: Option<String>,
    pub timeout: Option<String>,
}

/// The stored, public part of a tenant's configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantSettings {
    pub third_party: ThirdParty,
    #[serde(default)]
    pub dolphins: Dolphins,
    #[serde(default)]
    pub delivery: Delivery,
    /// Days after which message bodies and raw payloads are purged (`None`: kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<u32>,
    /// The tenant's own request budget over all its calls, 3Dolphins' included (`1000/s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<String>,
}

impl TenantSettings {
    /// The URL a target is delivered to, if the tenant configured one.
    pub fn url_for(&self, target: Target) -> Option<&str> {
        let url = match target {
            Target::ThirdPartyIncoming => Some(&self.third_party.incoming_url),
            Target::ThirdPartyOutgoing => self.third_party.outgoing_url.as_ref(),
            Target::ThirdPartyCommand => self.third_party.command_url.as_ref(),
            Target::DolphinsMessage => self.dolphins.send_message_url.as_ref(),
            Target::DolphinsCommand => self.dolphins.command_url.as_ref(),
        };
        url.map(String::as_str).filter(|u| !u.is_empty())
    }

    /// The extra headers the tenant wants on every delivery to `peer`.
    pub fn headers_for(&self, peer: Peer) -> &BTreeMap<String, String> {
        match peer {
            Peer::ThirdParty => &self.third_party.headers,
            Peer::Dolphins => &self.dolphins.headers,
        }
    }
}

/// A tenant as read from an admin request, ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantDraft {
    pub owner: String,
    pub name: String,
    pub timezone: String,
    pub settings: TenantSettings,
    pub dolphins_password: Option<String>,
}

pub const DEFAULT_TIMEZONE: &str = "Asia/Jakarta";

/// Headers the bridge sets itself; a tenant may not override them.
const RESERVED_HEADERS: [&str; 9] = [
    "content-type",
    "content-length",
    "host",
    "user-agent",
    "x-ticket-sequence",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "transfer-encoding",
];

/// Reads the admin API's tenant document (the POST body, or a stored tenant with a merge
/// patch applied), checking every rule.
pub fn read_tenant(doc: &Value) -> Result<TenantDraft, Vec<Problem>> {
    let mut problems = Vec::new();
    let Some(obj) = doc.as_object() else {
        return Err(vec![Problem::new("(body)", "must be a JSON object")]);
    };
    let owner = match obj.get("owner") {
        Some(Value::String(s)) if valid_owner(s) => s.clone(),
        Some(Value::String(_)) => {
            problems.push(Problem::new("owner", "must be 1-128 characters of letters, digits, '-', '_' or '.'"));
            String::new()
        }
        _ => {
            problems.push(Problem::new("owner", "is required (a string)"));
            String::new()
        }
    };
    let name = optional_string(obj, "name", "name", &mut problems).unwrap_or_default();
    let timezone =
        optional_string(obj, "timezone", "timezone", &mut problems).unwrap_or_else(|| DEFAULT_TIMEZONE.into());
    if timezone.parse::<Tz>().is_err() {
        problems.push(Problem::new("timezone", format!("{timezone:?} is not an IANA timezone such as Asia/Jakarta")));
    }
    let empty = Map::new();
    let section = |key: &str, problems: &mut Vec<Problem>| match obj.get(key) {
        None | Some(Value::Null) => Some(&empty),
        Some(Value::Object(m)) => Some(m),
        Some(_) => {
            problems.push(Problem::new(key, "must be an object"));
            None
        }
    };

    let mut settings = TenantSettings::default();
    if let Some(tp) = section("thirdParty", &mut problems) {
        match url_field(tp, "thirdParty.incomingUrl", "incomingUrl", &mut problems) {
            Some(url) => settings.third_party.incoming_url = url,
            None if !problems.iter().any(|p| p.field == "thirdParty.incomingUrl") => {
                problems.push(Problem::new("thirdParty.incomingUrl", "is required"))
            }
            None => {}
        }
        settings.third_party.outgoing_url = url_field(tp, "thirdParty.outgoingUrl", "outgoingUrl", &mut problems);
        settings.third_party.command_url = url_field(tp, "thirdParty.commandUrl", "commandUrl", &mut problems);
        settings.third_party.headers = headers_field(tp, "thirdParty.headers", &mut problems);
        settings.third_party.inbound_auth = optional_string(tp, "inboundAuth", "thirdParty.inboundAuth", &mut problems)
            .unwrap_or_else(default_inbound_auth);
        if !INBOUND_AUTH.contains(&settings.third_party.inbound_auth.as_str()) {
            problems.push(Problem::new("thirdParty.inboundAuth", "must be bearer or signature"));
        }
        unknown_keys(
            tp,
            "thirdParty",
            &["incomingUrl", "outgoingUrl", "commandUrl", "headers", "inboundAuth"],
            &mut problems,
        );
    }
    let mut dolphins_password = None;
    if let Some(d) = section("dolphins", &mut problems) {
        settings.dolphins.send_message_url = url_field(d, "dolphins.sendMessageUrl", "sendMessageUrl", &mut problems);
        settings.dolphins.command_url = url_field(d, "dolphins.commandUrl", "commandUrl", &mut problems);
        settings.dolphins.api_base_url = url_field(d, "dolphins.apiBaseUrl", "apiBaseUrl", &mut problems);
        settings.dolphins.username = optional_string(d, "username", "dolphins.username", &mut problems);
        dolphins_password = optional_string(d, "password", "dolphins.password", &mut problems);
        settings.dolphins.use_api_token = match d.get("useApiToken") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                problems.push(Problem::new("dolphins.useApiToken", "must be true or false"));
                false
            }
        };
        settings.dolphins.headers = headers_field(d, "dolphins.headers", &mut problems);
        let has_api = settings.dolphins.api_base_url.is_some()
            && settings.dolphins.username.is_some()
            && dolphins_password.is_some();
        if settings.dolphins.use_api_token && !has_api {
            problems.push(Problem::new("dolphins.useApiToken", "needs apiBaseUrl, username and password"));
        }
        if settings.dolphins.use_api_token
            && settings.dolphins.headers.keys().any(|k| k.eq_ignore_ascii_case("authorization"))
        {
            problems.push(Problem::new("dolphins.headers", "Authorization is set by useApiToken"));
        }
        unknown_keys(
            d,
            "dolphins",
            &["sendMessageUrl", "commandUrl", "apiBaseUrl", "username", "password", "useApiToken", "headers"],
            &mut problems,
        );
    }
    if let Some(del) = section("delivery", &mut problems) {
        settings.delivery.retry_schedule =
            optional_string(del, "retrySchedule", "delivery.retrySchedule", &mut problems);
        if let Some(Err(e)) = settings.delivery.retry_schedule.as_deref().map(parse_schedule) {
            problems.push(Problem::new("delivery.retrySchedule", e));
        }
        settings.delivery.timeout = optional_string(del, "timeout", "delivery.timeout", &mut problems);
        match settings.delivery.timeout.as_deref().map(parse_duration) {
            Some(Ok(d)) if d.is_zero() || d.as_secs() > 120 => {
                problems.push(Problem::new("delivery.timeout", "must be between 1ms and 120s"))
            }
            Some(Err(e)) => problems.push(Problem::new("delivery.timeout", e)),
            _ => {}
        }
        unknown_keys(del, "delivery", &["retrySchedule", "timeout"], &mut problems);
    }
    settings.retention_days = match obj.get("retentionDays") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(days @ 1..=3650) => u32::try_from(days).ok(),
            _ => {
                problems.push(Problem::new("retentionDays", "must be a whole number of days from 1 to 3650"));
                None
            }
        },
    };
    settings.rate_limit = optional_string(obj, "rateLimit", "rateLimit", &mut problems);
    if let Some(Err(e)) = settings.rate_limit.as_deref().map(crate::config::parse_rate_limit) {
        problems.push(Problem::new("rateLimit", e));
    }
    unknown_keys(
        obj,
        "",
        &["owner", "name", "timezone", "thirdParty", "dolphins", "delivery", "retentionDays", "rateLimit"],
        &mut problems,
    );

    if problems.is_empty() {
        Ok(TenantDraft { owner, name, timezone, settings, dolphins_password })
    } else {
        Err(problems)
    }
}

/// The tenant document a merge patch applies to: the settings, name, timezone, owner and
/// (so a patch may keep or clear it) the stored password.
pub fn to_document(draft: &TenantDraft) -> Value {
    let mut doc = serde_json::json!({
        "owner": draft.owner,
        "name": draft.name,
        "timezone": draft.timezone,
        "thirdParty": draft.settings.third_party,
        "dolphins": draft.settings.dolphins,
        "delivery": draft.settings.delivery,
        "retentionDays": draft.settings.retention_days,
        "rateLimit": draft.settings.rate_limit,
    });
    if let (Some(pw), Some(d)) = (&draft.dolphins_password, doc.get_mut("dolphins").and_then(Value::as_object_mut)) {
        d.insert("password".into(), Value::String(pw.clone()));
    }
    strip_nulls(&mut doc);
    doc
}

/// RFC 7396 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(map) = target {
        for (key, value) in patch {
            if value.is_null() {
                map.remove(key);
            } else {
                merge_patch(map.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

fn strip_nulls(v: &mut Value) {
    if let Value::Object(map) = v {
        map.retain(|_, v| !v.is_null());
        map.values_mut().for_each(strip_nulls);
    }
}

fn valid_owner(s: &str) -> bool {
    (1..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn optional_string(obj: &Map<String, Value>, key: &str, field: &str, problems: &mut Vec<Problem>) -> Option<String> {
    match obj.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) if s.len() > 1024 => {
            problems.push(Problem::new(field, "is longer than 1024 characters"));
            None
        }
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            problems.push(Problem::new(field, "must be a string"));
            None
        }
    }
}

fn url_field(obj: &Map<String, Value>, field: &str, key: &str, problems: &mut Vec<Problem>) -> Option<String> {
    let url = optional_string(obj, key, field, problems)?;
    match check_target_url(&url) {
        Ok(()) => Some(url),
        Err(problem) => {
            problems.push(Problem::new(field, problem));
            None
        }
    }
}

/// A delivery target must be an absolute http(s) URL and never a cloud metadata
/// address: a tenant must not be able to make the bridge read those.
pub fn check_target_url(raw: &str) -> Result<(), String> {
    let url = url::Url::parse(raw).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must be an http or https URL".into());
    }
    match url.host() {
        None => Err("must name a host".into()),
        Some(url::Host::Ipv4(ip)) if ip.octets()[..2] == [169, 254] => {
            Err("link-local / cloud metadata addresses are not allowed".into())
        }
        Some(url::Host::Ipv6(ip)) if ip == std::net::Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) => {
            Err("cloud metadata addresses are not allowed".into())
        }
        Some(_) => Ok(()),
    }
}

fn headers_field(obj: &Map<String, Value>, field: &str, problems: &mut Vec<Problem>) -> BTreeMap<String, String> {
    let mut headers = BTreeMap::new();
    match obj.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (name, value) in map {
                let at = format!("{field}.{name}");
                let Some(value) = value.as_str() else {
                    problems.push(Problem::new(at, "must be a string"));
                    continue;
                };
                if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                    problems.push(Problem::new(at, "is not a valid header name"));
                } else if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                    problems.push(Problem::new(at, "is set by the bridge and cannot be overridden"));
                } else if reqwest::header::HeaderValue::from_str(value).is_err() {
                    problems.push(Problem::new(at, "is not a valid header value"));
                } else {
                    headers.insert(name.clone(), value.to_string());
                }
            }
        }
        Some(_) => problems.push(Problem::new(field, "must be an object of header names to values")),
    }
    headers
}

fn unknown_keys(obj: &Map<String, Value>, prefix: &str, known: &[&str], problems: &mut Vec<Problem>) {
    for key in obj.keys().filter(|k| !known.contains(&k.as_str())) {
        let field = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        problems.push(Problem::new(field, "is not a known setting"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(doc: Value) -> Vec<String> {
        read_tenant(&doc).unwrap_err().into_iter().map(|p| p.field).collect()
    }

    #[test]
    fn only_owner_and_incoming_url_are_required() {
        let t = read_tenant(&json!({"owner": "acme", "thirdParty": {"incomingUrl": "https://cc.example/in"}}))
            .expect("valid");
        assert_eq!(t.timezone, "Asia/Jakarta");
        assert_eq!(t.settings.url_for(Target::ThirdPartyIncoming), Some("https://cc.example/in"));
        assert_eq!(t.settings.url_for(Target::DolphinsMessage), None);
        assert_eq!(fields(json!({})), vec!["owner", "thirdParty.incomingUrl"]);
    }

    #[test]
    fn every_problem_is_listed() {
        let got = fields(json!({
            "owner": "a b", "timezone": "Mars/Olympus",
            "thirdParty": {"incomingUrl": "ftp://x", "headers": {"User-Agent": "me", "X-Ok": 5}},
            "dolphins": {"apiBaseUrl": "http://169.254.169.254/latest", "useApiToken": true},
            "delivery": {"retrySchedule": "5s,soon", "timeout": "0s"},
            "colour": "blue"
        }));
        assert_eq!(
            got,
            vec![
                "owner",
                "timezone",
                "thirdParty.incomingUrl",
                "thirdParty.headers.User-Agent",
                "thirdParty.headers.X-Ok",
                "dolphins.apiBaseUrl",
                "dolphins.useApiToken",
                "delivery.retrySchedule",
                "delivery.timeout",
                "colour"
            ]
        );
    }

    #[test]
    fn a_merge_patch_replaces_merges_and_removes() {
        let draft = read_tenant(&json!({
            "owner": "acme", "name": "Acme",
            "thirdParty": {"incomingUrl": "https://a/in", "outgoingUrl": "https://a/out"},
            "dolphins": {"password": "pw"}
        }))
        .expect("valid");
        let mut doc = to_document(&draft);
        merge_patch(
            &mut doc,
            &json!({"name": "Acme 2", "thirdParty": {"outgoingUrl": null, "commandUrl": "https://a/cmd"}}),
        );
        let patched = read_tenant(&doc).expect("still valid");
        assert_eq!(patched.name, "Acme 2");
        assert_eq!(patched.settings.third_party.outgoing_url, None);
        assert_eq!(patched.settings.third_party.command_url.as_deref(), Some("https://a/cmd"));
        assert_eq!(patched.dolphins_password.as_deref(), Some("pw"), "untouched fields survive");
    }

    #[test]
    fn metadata_addresses_are_never_targets() {
        assert!(check_target_url("http://169.254.169.254/").is_err());
        assert!(check_target_url("http://[fd00:ec2::254]/").is_err());
        assert!(check_target_url("http://127.0.0.1:9000/hook").is_ok());
    }
}
