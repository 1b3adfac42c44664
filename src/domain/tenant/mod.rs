//! A tenant's settings as the admin API takes and shows them (README *HTTP surface*, admin and credentials), and the
//! rules they must follow. Reading collects every problem so a 400 can list them all.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

mod read;

pub use read::read_tenant;

use super::{Peer, Target};

/// Where the third party wants events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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
    #[schema(schema_with = inbound_auth_names)]
    pub inbound_auth: String,
}

fn default_inbound_auth() -> String {
    "bearer".into()
}

/// The accepted `thirdParty.inboundAuth` values.
pub const INBOUND_AUTH: [&str; 2] = ["bearer", "signature"];

fn inbound_auth_names() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(INBOUND_AUTH))
        .default(Some("bearer".into()))
        .build()
}

/// Where 3Dolphins takes replies and commands, and its API account (password kept apart).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = DeliverySettings)]
pub struct Delivery {
    pub retry_schedule: Option<String>,
    pub timeout: Option<String>,
}

/// Where the tenant wants the bridge's operational alerts (`endpoint.failing`, ...), and
/// when a backlog counts as stale.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = AlertSettings)]
pub struct Alerts {
    /// No URL: no alerts.
    pub url: Option<String>,
    /// `backlog.stale` when a target's oldest waiting delivery is older than this; default
    /// [`DEFAULT_BACKLOG_SECONDS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 60, maximum = 604800)]
    pub backlog_seconds: Option<u32>,
}

/// A backlog older than this (15 minutes) is stale unless the tenant says otherwise.
pub const DEFAULT_BACKLOG_SECONDS: u32 = 900;

/// The stored, public part of a tenant's configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantSettings {
    pub third_party: ThirdParty,
    #[serde(default)]
    pub dolphins: Dolphins,
    #[serde(default)]
    pub delivery: Delivery,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerts: Option<Alerts>,
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
            Target::Alerts => self.alerts.as_ref().and_then(|a| a.url.as_ref()),
        };
        url.map(String::as_str).filter(|u| !u.is_empty())
    }

    /// The extra headers the tenant wants on every delivery to `peer` (none on alerts).
    pub fn headers_for(&self, peer: Peer) -> &BTreeMap<String, String> {
        static NONE: BTreeMap<String, String> = BTreeMap::new();
        match peer {
            Peer::ThirdParty => &self.third_party.headers,
            Peer::Dolphins => &self.dolphins.headers,
            Peer::Alerts => &NONE,
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
        "alerts": draft.settings.alerts,
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
