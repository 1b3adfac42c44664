//! Calls to the 3Dolphins Conversation History and Contact APIs (reference §3.2, §4),
//! with the cached token, one refresh on a 401, a timeout on every call, and replies read
//! defensively: unknown fields ignored, the wrapper variants of the docs accepted, a
//! malformed reply a clear error.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{json, Value};

use super::token::{Account, TokenCache, TokenError};

const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// A guard against a server that never says it is done.
const MAX_PAGES: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("3Dolphins is unreachable: {0}")]
    Transport(String),
    #[error("3Dolphins answered HTTP {0}")]
    Status(u16),
    #[error("3Dolphins sent a reply the bridge cannot read: {0}")]
    Malformed(String),
}

/// One line of a conversation as 3Dolphins reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryLine {
    /// `answer`: false = from the customer, true = from an agent or the system.
    pub answer: bool,
    pub message: String,
    pub created: DateTime<Utc>,
    pub raw: Value,
}

/// A 3Dolphins API client shared by the process (it owns the token cache).
#[derive(Clone)]
pub struct DolphinsClient {
    http: reqwest::Client,
    tokens: TokenCache,
}

impl DolphinsClient {
    pub fn new(http: reqwest::Client, tokens: TokenCache) -> Self {
        DolphinsClient { http, tokens }
    }

    /// Sends an authorised request built by `build`, fetching a fresh token once on a 401.
    async fn call(
        &self,
        account: &Account,
        now: DateTime<Utc>,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        for attempt in 0..2 {
            let token = self.tokens.get(&self.http, account, now).await?;
            let response = build(&self.http)
                .bearer_auth(&token)
                .timeout(CALL_TIMEOUT)
                .send()
                .await
                .map_err(|e| ClientError::Transport(e.without_url().to_string()))?;
            if response.status().as_u16() == 401 && attempt == 0 {
                self.tokens.invalidate(account);
                continue;
            }
            return Ok(response);
        }
        Err(ClientError::Status(401))
    }

    /// Every line of one ticket's conversation between two local dates (inclusive),
    /// paging with `startIndex` until 3Dolphins says there is no more (or sends an empty page).
    pub async fn conversation(
        &self,
        account: &Account,
        ticket: &str,
        from: NaiveDate,
        to: NaiveDate,
        now: DateTime<Utc>,
    ) -> Result<Vec<HistoryLine>, ClientError> {
        let url = format!("{}/graph/report/conversations", account.api_base_url.trim_end_matches('/'));
        let filter = json!({
            "channelFilters": [], "channelTypeFilters": [], "agentFilters": [], "customerFilters": [],
            "ticketTagFilters": [], "startDateFilter": from.format("%Y-%m-%d").to_string(),
            "endDateFilter": to.format("%Y-%m-%d").to_string(), "ticketNumber": ticket,
        });
        let mut lines = Vec::new();
        let mut start = 0usize;
        for _ in 0..MAX_PAGES {
            let response =
                self.call(account, now, |c| c.post(&url).query(&[("startIndex", start)]).json(&filter)).await?;
            if !response.status().is_success() {
                return Err(ClientError::Status(response.status().as_u16()));
            }
            let page: Value = response.json().await.map_err(|e| ClientError::Malformed(e.without_url().to_string()))?;
            let rows = page["data"].as_array().ok_or_else(|| ClientError::Malformed("no data array".into()))?;
            if rows.is_empty() {
                break;
            }
            lines.extend(rows.iter().filter_map(read_line));
            let next = page["nextIndex"].as_u64().and_then(|n| usize::try_from(n).ok()).unwrap_or(start + rows.len());
            if page["hasMore"] == Value::Bool(false) || next <= start {
                break;
            }
            start = next;
        }
        Ok(lines)
    }

    /// The Contact API document of `contact_id`; `None` when 3Dolphins does not know it.
    pub async fn contact(
        &self,
        account: &Account,
        contact_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Value>, ClientError> {
        let url = format!("{}/graph/contacts/contactById", account.api_base_url.trim_end_matches('/'));
        let response = self.call(account, now, |c| c.get(&url).query(&[("contactId", contact_id)])).await?;
        match response.status().as_u16() {
            404 => return Ok(None),
            s if !(200..300).contains(&s) => return Err(ClientError::Status(s)),
            _ => {}
        }
        let body: Value = response.json().await.map_err(|e| ClientError::Malformed(e.without_url().to_string()))?;
        unwrap_contact(body).map(Some)
    }
}

/// Accepts `{status, data: {…}}`, `{status, data: [{…}]}` or the bare document (reference Q8).
pub fn unwrap_contact(body: Value) -> Result<Value, ClientError> {
    match body.get("data") {
        Some(Value::Object(_)) => Ok(body["data"].clone()),
        Some(Value::Array(items)) => {
            items.first().cloned().ok_or_else(|| ClientError::Malformed("empty contact list".into()))
        }
        _ if body.get("id").is_some() => Ok(body),
        _ => Err(ClientError::Malformed("no contact document in the reply".into())),
    }
}

/// One report row; rows without a readable time are skipped.
fn read_line(row: &Value) -> Option<HistoryLine> {
    let created_ms = match &row["createdDate"] {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }?;
    let created = DateTime::from_timestamp_millis(created_ms)?;
    let message = row["cleanedMessage"].as_str().or_else(|| row["message"].as_str()).unwrap_or_default().to_string();
    Some(HistoryLine { answer: row["answer"].as_bool().unwrap_or(false), message, created, raw: row.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixture_page_is_read_with_directions_and_times() {
        let page: Value =
            serde_json::from_str(include_str!("../../tests/fixtures/3dolphins/report-conversations-page.json"))
                .expect("fixture");
        let lines: Vec<HistoryLine> = page["data"].as_array().expect("rows").iter().filter_map(read_line).collect();
        assert_eq!(lines.len(), 2);
        assert!(!lines[0].answer && lines[1].answer);
        assert_eq!(lines[0].created.timestamp_millis(), 1_795_562_102_345);
        assert_eq!(lines[1].message, "Baik Bu Dewi, kami cek dulu ya.");
    }

    #[test]
    fn every_contact_wrapper_is_accepted() {
        let bare: Value =
            serde_json::from_str(include_str!("../../tests/fixtures/3dolphins/contact.json")).expect("fixture");
        let wrapped: Value =
            serde_json::from_str(include_str!("../../tests/fixtures/3dolphins/contact-wrapped.json")).expect("fixture");
        assert_eq!(unwrap_contact(bare.clone()).ok().map(|c| c["id"].clone()), Some(bare["id"].clone()));
        assert_eq!(unwrap_contact(wrapped.clone()).ok(), Some(wrapped["data"].clone()));
        let listed = json!({"status": "success", "data": [wrapped["data"].clone()]});
        assert_eq!(unwrap_contact(listed).ok(), Some(wrapped["data"].clone()));
        assert!(unwrap_contact(json!({"status": "success"})).is_err());
        assert!(unwrap_contact(json!({"status": "success", "data": []})).is_err());
    }
}
