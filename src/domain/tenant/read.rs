//! Reading a tenant document: every rule, every problem collected so that a 400 lists them
//! all.

use std::collections::BTreeMap;

use chrono_tz::Tz;
use serde_json::{Map, Value};

use super::{
    check_target_url, default_inbound_auth, Alerts, Delivery, Dolphins, TenantDraft, TenantSettings, ThirdParty,
};
use super::{DEFAULT_TIMEZONE, INBOUND_AUTH};
use crate::config::{parse_duration, parse_schedule};
use crate::domain::payload::Problem;

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
        settings.third_party = read_third_party(tp, &mut problems);
    }
    let mut dolphins_password = None;
    if let Some(d) = section("dolphins", &mut problems) {
        (settings.dolphins, dolphins_password) = read_dolphins(d, &mut problems);
    }
    if let Some(del) = section("delivery", &mut problems) {
        settings.delivery = read_delivery(del, &mut problems);
    }
    if let Some(alerts) = section("alerts", &mut problems).filter(|a| !a.is_empty()) {
        settings.alerts = Some(read_alerts(alerts, &mut problems));
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
        &["owner", "name", "timezone", "thirdParty", "dolphins", "delivery", "alerts", "retentionDays", "rateLimit"],
        &mut problems,
    );

    if problems.is_empty() {
        Ok(TenantDraft { owner, name, timezone, settings, dolphins_password })
    } else {
        Err(problems)
    }
}

/// The `thirdParty` section.
fn read_third_party(obj: &Map<String, Value>, problems: &mut Vec<Problem>) -> ThirdParty {
    let mut third_party = ThirdParty::default();
    match url_field(obj, "thirdParty.incomingUrl", "incomingUrl", problems) {
        Some(url) => third_party.incoming_url = url,
        None if !problems.iter().any(|p| p.field == "thirdParty.incomingUrl") => {
            problems.push(Problem::new("thirdParty.incomingUrl", "is required"))
        }
        None => {}
    }
    third_party.outgoing_url = url_field(obj, "thirdParty.outgoingUrl", "outgoingUrl", problems);
    third_party.command_url = url_field(obj, "thirdParty.commandUrl", "commandUrl", problems);
    third_party.headers = headers_field(obj, "thirdParty.headers", problems);
    third_party.inbound_auth =
        optional_string(obj, "inboundAuth", "thirdParty.inboundAuth", problems).unwrap_or_else(default_inbound_auth);
    if !INBOUND_AUTH.contains(&third_party.inbound_auth.as_str()) {
        problems.push(Problem::new("thirdParty.inboundAuth", "must be bearer or signature"));
    }
    unknown_keys(obj, "thirdParty", &["incomingUrl", "outgoingUrl", "commandUrl", "headers", "inboundAuth"], problems);
    third_party
}

/// The `dolphins` section, and the API password (stored apart from the settings).
fn read_dolphins(obj: &Map<String, Value>, problems: &mut Vec<Problem>) -> (Dolphins, Option<String>) {
    let mut dolphins = Dolphins {
        send_message_url: url_field(obj, "dolphins.sendMessageUrl", "sendMessageUrl", problems),
        command_url: url_field(obj, "dolphins.commandUrl", "commandUrl", problems),
        api_base_url: url_field(obj, "dolphins.apiBaseUrl", "apiBaseUrl", problems),
        username: optional_string(obj, "username", "dolphins.username", problems),
        ..Dolphins::default()
    };
    let password = optional_string(obj, "password", "dolphins.password", problems);
    dolphins.use_api_token = match obj.get("useApiToken") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            problems.push(Problem::new("dolphins.useApiToken", "must be true or false"));
            false
        }
    };
    dolphins.headers = headers_field(obj, "dolphins.headers", problems);
    let has_api = dolphins.api_base_url.is_some() && dolphins.username.is_some() && password.is_some();
    if dolphins.use_api_token && !has_api {
        problems.push(Problem::new("dolphins.useApiToken", "needs apiBaseUrl, username and password"));
    }
    if dolphins.use_api_token && dolphins.headers.keys().any(|k| k.eq_ignore_ascii_case("authorization")) {
        problems.push(Problem::new("dolphins.headers", "Authorization is set by useApiToken"));
    }
    unknown_keys(
        obj,
        "dolphins",
        &["sendMessageUrl", "commandUrl", "apiBaseUrl", "username", "password", "useApiToken", "headers"],
        problems,
    );
    (dolphins, password)
}

/// The `delivery` section.
fn read_delivery(obj: &Map<String, Value>, problems: &mut Vec<Problem>) -> Delivery {
    let mut delivery = Delivery {
        retry_schedule: optional_string(obj, "retrySchedule", "delivery.retrySchedule", problems),
        ..Delivery::default()
    };
    if let Some(Err(e)) = delivery.retry_schedule.as_deref().map(parse_schedule) {
        problems.push(Problem::new("delivery.retrySchedule", e));
    }
    delivery.timeout = optional_string(obj, "timeout", "delivery.timeout", problems);
    match delivery.timeout.as_deref().map(parse_duration) {
        Some(Ok(d)) if d.is_zero() || d.as_secs() > 120 => {
            problems.push(Problem::new("delivery.timeout", "must be between 1ms and 120s"))
        }
        Some(Err(e)) => problems.push(Problem::new("delivery.timeout", e)),
        _ => {}
    }
    unknown_keys(obj, "delivery", &["retrySchedule", "timeout"], problems);
    delivery
}

/// The `alerts` section: an http(s) URL that is not a metadata address, like any endpoint.
fn read_alerts(obj: &Map<String, Value>, problems: &mut Vec<Problem>) -> Alerts {
    let url = url_field(obj, "alerts.url", "url", problems);
    let backlog_seconds = match obj.get("backlogSeconds") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(seconds @ 60..=604_800) => u32::try_from(seconds).ok(),
            _ => {
                problems
                    .push(Problem::new("alerts.backlogSeconds", "must be a whole number of seconds from 60 to 604800"));
                None
            }
        },
    };
    unknown_keys(obj, "alerts", &["url", "backlogSeconds"], problems);
    Alerts { url, backlog_seconds }
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
