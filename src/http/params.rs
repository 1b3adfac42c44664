//! Query parameters shared by the `/api/v1` lists: `limit`, the opaque `cursor` bound to
//! the list's filters, and time ranges (`from` inclusive, `to` exclusive, RFC 3339 or a
//! `YYYY-MM-DD` local date in `tz`, default the last 30 days).

use std::collections::HashMap;

use base64::Engine;
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::error::ApiError;
use crate::domain::dates::first_instant_at;
use crate::domain::payload::Problem;

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 500;

/// The query string as a map; repeated names are joined with commas.
pub struct Params(HashMap<String, String>);

impl Params {
    pub fn parse(raw: Option<&str>) -> Params {
        let mut map: HashMap<String, String> = HashMap::new();
        for (k, v) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            map.entry(k.into_owned())
                .and_modify(|e| {
                    e.push(',');
                    e.push_str(&v);
                })
                .or_insert_with(|| v.into_owned());
        }
        Params(map)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// The named parameters as given, for binding a cursor to its list's filters.
    pub fn fingerprint(&self, list: &str, names: &[&str]) -> String {
        let mut text = list.to_string();
        for name in names {
            text.push('|');
            text.push_str(self.get(name).unwrap_or(""));
        }
        text
    }

    /// `limit`: 1..=500, default 50.
    pub fn limit(&self) -> Result<i64, ApiError> {
        match self.get("limit") {
            None => Ok(DEFAULT_LIMIT),
            Some(raw) => match raw.parse::<i64>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
                _ => Err(ApiError::parameter("limit", format!("must be a whole number from 1 to {MAX_LIMIT}"))),
            },
        }
    }

    /// A comma-separated list whose every item must be one of `allowed`.
    pub fn list_of(&self, name: &str, allowed: &[&str]) -> Result<Option<Vec<String>>, ApiError> {
        let Some(raw) = self.get(name) else {
            return Ok(None);
        };
        let items: Vec<String> = raw.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
        if let Some(bad) = items.iter().find(|i| !allowed.contains(&i.as_str())) {
            return Err(ApiError::parameter(name, format!("{bad:?} is not one of {}", allowed.join(", "))));
        }
        Ok(Some(items))
    }

    /// A UUID parameter, if given.
    pub fn uuid(&self, name: &str) -> Result<Option<Uuid>, ApiError> {
        self.get(name)
            .map(|raw| Uuid::parse_str(raw).map_err(|_| ApiError::parameter(name, format!("{raw:?} is not a UUID"))))
            .transpose()
    }

    /// `tz`, defaulting to the tenant's.
    pub fn timezone(&self, default: Tz) -> Result<Tz, ApiError> {
        match self.get("tz") {
            None => Ok(default),
            Some(raw) => raw.parse().map_err(|_| ApiError::parameter("tz", format!("{raw:?} is not an IANA timezone"))),
        }
    }

    /// `from` (inclusive) and `to` (exclusive); default the 30 days up to `now`.
    pub fn time_range(&self, tz: Tz, now: DateTime<Utc>) -> Result<(DateTime<Utc>, DateTime<Utc>), ApiError> {
        let to = match self.get("to") {
            Some(raw) => parse_instant("to", raw, tz)?,
            None => now,
        };
        let from = match self.get("from") {
            Some(raw) => parse_instant("from", raw, tz)?,
            None => to - chrono::Duration::days(30),
        };
        if from >= to {
            return Err(ApiError::parameter("from", "must be before to"));
        }
        Ok((from, to))
    }
}

/// An RFC 3339 instant, or a `YYYY-MM-DD` date meaning that day's first instant in `tz`
/// (local midnight, or when the clock jumps past a midnight a DST change skips).
pub fn parse_instant(name: &str, raw: &str, tz: Tz) -> Result<DateTime<Utc>, ApiError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|midnight| first_instant_at(tz, midnight))
        .ok_or_else(|| ApiError::parameter(name, "expected RFC 3339 (2026-11-24T09:00:00Z) or a date (2026-11-24)"))
}

/// Where a page ended: the sort key of its last row, and a fingerprint of the filters it
/// was made for, so a cursor cannot be replayed against another query.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Cursor {
    #[serde(rename = "f")]
    filters: String,
    #[serde(rename = "t")]
    pub at: DateTime<Utc>,
    /// The row's tie-breaking key (an id or a ticket number).
    #[serde(rename = "i")]
    pub id: String,
}

impl Cursor {
    pub fn new(filters: &str, at: DateTime<Utc>, id: impl ToString) -> Cursor {
        Cursor { filters: fingerprint(filters), at, id: id.to_string() }
    }

    /// The tie-breaker read as a UUID; a cursor whose key is not one is refused.
    pub fn uuid(&self) -> Result<Uuid, ApiError> {
        Uuid::parse_str(&self.id).map_err(|_| ApiError::parameter("cursor", "is not a cursor this list gave out"))
    }

    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    /// Reads `cursor` for a list whose filters are `filters`; tampered or foreign → 400.
    pub fn decode(raw: Option<&str>, filters: &str) -> Result<Option<Cursor>, ApiError> {
        let Some(raw) = raw else { return Ok(None) };
        let bad = || {
            ApiError::InvalidParameter(vec![Problem::new(
                "cursor",
                "is not a cursor this list gave out for these filters",
            )])
        };
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(raw).map_err(|_| bad())?;
        let cursor: Cursor = serde_json::from_slice(&bytes).map_err(|_| bad())?;
        if cursor.filters != fingerprint(filters) {
            return Err(bad());
        }
        Ok(Some(cursor))
    }
}

fn fingerprint(filters: &str) -> String {
    let digest = Sha256::digest(filters.as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_only_for_its_own_filters() {
        let c = Cursor::new("status=dead", Utc::now(), Uuid::new_v4());
        assert!(c.uuid().is_ok());
        let raw = c.encode();
        assert_eq!(Cursor::decode(Some(&raw), "status=dead").ok().flatten(), Some(c));
        assert!(Cursor::decode(Some(&raw), "status=failed").is_err());
        assert!(Cursor::decode(Some("bm90IGEgY3Vyc29y"), "status=dead").is_err());
        assert!(Cursor::decode(Some("%%%"), "").is_err());
    }

    #[test]
    fn limits_and_dates_are_checked() {
        for bad in ["0", "501", "ten", "-1"] {
            assert!(Params::parse(Some(&format!("limit={bad}"))).limit().is_err(), "{bad}");
        }
        assert_eq!(Params::parse(None).limit().ok(), Some(50));
        let tz: Tz = "Asia/Jakarta".parse().expect("zone");
        let day = parse_instant("from", "2026-11-24", tz).expect("date");
        assert_eq!(day.to_rfc3339(), "2026-11-23T17:00:00+00:00");
        assert!(parse_instant("from", "24/11/2026", tz).is_err());
        // Santiago skips midnight on 6 September 2026: the day begins when the clock jumps.
        let santiago: Tz = "America/Santiago".parse().expect("zone");
        let skipped = parse_instant("from", "2026-09-06", santiago).expect("a day whose midnight is skipped");
        assert_eq!(skipped.to_rfc3339(), "2026-09-06T04:00:00+00:00");
        let p = Params::parse(Some("from=2026-11-25&to=2026-11-24"));
        assert!(p.time_range(tz, Utc::now()).is_err());
    }
}
