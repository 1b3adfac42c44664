//! The 3Dolphins API token: obtained with the tenant's integration user, cached per tenant
//! until a minute before `expireAt`, dropped on a 401 so the next use fetches a new one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

/// Refresh this long before the token expires.
const REFRESH_MARGIN: chrono::Duration = chrono::Duration::seconds(60);
/// Lifetime assumed when 3Dolphins gives no readable `expireAt` (its docs are silent).
const ASSUMED_LIFETIME: chrono::Duration = chrono::Duration::minutes(10);
const AUTH_TIMEOUT: Duration = Duration::from_secs(10);

/// What `/graph/auth` answers.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuthReply {
    token: String,
    expire_at: Option<String>,
}

/// Reads Java's `ZonedDateTime.toString()`: RFC 3339 plus a `[Region/City]` suffix.
pub fn parse_expire_at(raw: &str) -> Option<DateTime<Utc>> {
    let without_zone = raw.split('[').next().unwrap_or(raw).trim();
    DateTime::parse_from_rfc3339(without_zone).ok().map(|t| t.with_timezone(&Utc))
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("3Dolphins API credentials are not configured")]
    NotConfigured,
    #[error("3Dolphins token request failed: {0}")]
    Transport(String),
    #[error("3Dolphins token request answered HTTP {0}")]
    Refused(u16),
    #[error("3Dolphins token reply is malformed: {0}")]
    Malformed(String),
}

/// The account a token is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Account {
    pub api_base_url: String,
    pub username: String,
    pub password: String,
}

/// A token and when it expires.
type CachedToken = (String, DateTime<Utc>);

/// Tokens per account, shared by every delivery worker of a process.
#[derive(Clone, Default)]
pub struct TokenCache {
    tokens: Arc<Mutex<HashMap<Account, CachedToken>>>,
}

impl TokenCache {
    /// A valid token for `account`, fetched if none is cached or it is about to expire.
    pub async fn get(
        &self,
        client: &reqwest::Client,
        account: &Account,
        now: DateTime<Utc>,
    ) -> Result<String, TokenError> {
        if let Some((token, expires)) = self.tokens.lock().ok().and_then(|t| t.get(account).cloned()) {
            if now + REFRESH_MARGIN < expires {
                return Ok(token);
            }
        }
        let (token, expires) = fetch(client, account, now).await?;
        if let Ok(mut tokens) = self.tokens.lock() {
            tokens.insert(account.clone(), (token.clone(), expires));
        }
        Ok(token)
    }

    /// Forgets the token of `account` (3Dolphins answered 401 with it).
    pub fn invalidate(&self, account: &Account) {
        if let Ok(mut tokens) = self.tokens.lock() {
            tokens.remove(account);
        }
    }
}

async fn fetch(
    client: &reqwest::Client,
    account: &Account,
    now: DateTime<Utc>,
) -> Result<(String, DateTime<Utc>), TokenError> {
    let url = format!("{}/graph/auth", account.api_base_url.trim_end_matches('/'));
    let response = client
        .post(&url)
        .json(&serde_json::json!({"username": account.username, "password": account.password}))
        .timeout(AUTH_TIMEOUT)
        .send()
        .await
        .map_err(|e| TokenError::Transport(e.without_url().to_string()))?;
    if !response.status().is_success() {
        return Err(TokenError::Refused(response.status().as_u16()));
    }
    let reply: AuthReply = response.json().await.map_err(|e| TokenError::Malformed(e.without_url().to_string()))?;
    if reply.token.is_empty() {
        return Err(TokenError::Malformed("empty token".into()));
    }
    let expires = reply.expire_at.as_deref().and_then(parse_expire_at).unwrap_or(now + ASSUMED_LIFETIME);
    Ok((reply.token, expires))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expire_at_with_a_region_suffix_is_read() {
        let t = parse_expire_at("2026-11-24T17:40:55.372+07:00[Asia/Jakarta]").expect("parses");
        assert_eq!(t.to_rfc3339(), "2026-11-24T10:40:55.372+00:00");
        assert!(parse_expire_at("2026-11-24T17:40:55Z").is_some());
        assert!(parse_expire_at("tomorrow").is_none());
    }

    #[test]
    fn the_fixture_reply_is_understood() {
        let reply: AuthReply =
            serde_json::from_str(include_str!("../../tests/fixtures/3dolphins/auth-response.json")).expect("fixture");
        assert!(!reply.token.is_empty());
        assert!(reply.expire_at.as_deref().and_then(parse_expire_at).is_some());
    }
}
