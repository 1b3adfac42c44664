//! The three 3Dolphins event shapes: validation and normalisation (README *Connecting the peers*, 3Dolphins; *Connecting the peers*, the third party).
//!
//! One set of rules serves both sides. The 3Dolphins side is *lenient*: a broken rule
//! becomes a warning stored with the event, because 3Dolphins documents no retry and a
//! refusal could lose a customer message. The third-party side is *strict*: every broken
//! rule is a [`Problem`] in a 400 reply. Only an event that cannot be attributed to a
//! tenant and a ticket ([`Refusal`]) is refused on both sides.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use serde_json::{Map, Value};

use super::dates::{parse_created_date, CREATED_DATE_PROBLEM};

/// One broken rule: which field, what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Problem {
    pub field: String,
    pub problem: String,
}

impl Problem {
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Problem { field: field.into(), problem: problem.into() }
    }
}

/// Why an event was refused outright.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The body is not a JSON object.
    NotAnObject,
    /// It cannot be attributed to a tenant and a ticket, or (strict side) breaks rules.
    Invalid(Vec<Problem>),
    /// Strict side: a command word the bridge does not support (and maybe other problems).
    UnsupportedCommand(Vec<Problem>),
}

/// The longest ticket number accepted: it is part of every index key, and PostgreSQL
/// cannot index arbitrarily long text. Real ones are 32 hex characters.
pub const MAX_TICKET_NUMBER_LEN: usize = 512;

/// How strictly to read an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strictness {
    /// 3Dolphins side: accept and flag.
    Lenient,
    /// Third-party side: refuse with every problem listed.
    Strict,
}

/// The message types 3Dolphins documents.
pub const MESSAGE_TYPES: [&str; 7] = ["text", "image", "video", "audio", "file", "location", "sticker"];
const MEDIA_TYPES: [&str; 4] = ["image", "video", "audio", "file"];

/// Every field name any of the three event shapes documents.
pub const DOCUMENTED_FIELDS: [&str; 13] = [
    "ticketNumber",
    "channel",
    "accountId",
    "contactId",
    "messageType",
    "message",
    "mediaLink",
    "customerName",
    "createdDate",
    "owner",
    "groupId",
    "language",
    "event",
];

/// The command words the bridge understands.
pub const SUPPORTED_COMMANDS: [&str; 1] = ["close"];

/// Which message event this is; each documents a different set of fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageShape {
    /// Customer → agent, from 3Dolphins.
    Incoming,
    /// Agent → customer, from either side.
    Outgoing,
}

impl MessageShape {
    fn required_fields(self) -> &'static [&'static str] {
        match self {
            MessageShape::Incoming => &[
                "ticketNumber",
                "channel",
                "accountId",
                "contactId",
                "messageType",
                "message",
                "mediaLink",
                "customerName",
                "createdDate",
                "owner",
            ],
            MessageShape::Outgoing => {
                &["ticketNumber", "channel", "messageType", "message", "mediaLink", "customerName", "owner"]
            }
        }
    }

    fn optional_fields(self) -> &'static [&'static str] {
        match self {
            MessageShape::Incoming => &["groupId", "language"],
            MessageShape::Outgoing => &["createdDate"],
        }
    }
}

/// An Incoming or Outgoing Event after reading. Text fields hold what was sent
/// (numbers as their text); `body` is exactly what gets stored and forwarded.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageEvent {
    pub owner: String,
    pub ticket_number: String,
    pub channel: Option<String>,
    pub account_id: Option<String>,
    pub contact_id: Option<String>,
    pub customer_name: Option<String>,
    pub group_id: Option<String>,
    pub language: Option<String>,
    /// Lower-cased; `text` for a sticker.
    pub message_type: Option<String>,
    /// `Sticker` for a sticker.
    pub message: Option<String>,
    pub media_link: Option<String>,
    pub created_date: Option<DateTime<Utc>>,
    /// The normalised body: the only changes are lower-cased `channel`/`messageType`,
    /// the sticker rewrite and removed NUL characters.
    pub body: Map<String, Value>,
    /// Lenient side only: what was wrong (empty on the strict side, which refuses instead).
    pub warnings: Vec<Problem>,
}

/// A Command Event after reading.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandEvent {
    pub owner: String,
    pub ticket_number: String,
    pub channel: Option<String>,
    /// Lower-cased command word (`close`), if any was sent.
    pub event: Option<String>,
    pub body: Map<String, Value>,
    pub warnings: Vec<Problem>,
}

impl CommandEvent {
    /// Whether this command closes the ticket.
    pub fn is_close(&self) -> bool {
        self.event.as_deref() == Some("close")
    }
}

/// Reads an Incoming or Outgoing Event.
pub fn read_message(body: Value, shape: MessageShape, strictness: Strictness, tz: Tz) -> Result<MessageEvent, Refusal> {
    let mut reader = Reader::new(body, strictness)?;
    let mut fields = std::collections::HashMap::new();
    for &name in shape.required_fields() {
        fields.insert(name, reader.text(name, true));
    }
    for &name in shape.optional_fields() {
        fields.insert(name, reader.text(name, false));
    }
    let mut take = |name: &str| fields.remove(name).flatten();
    let channel = take("channel").map(|c| c.to_lowercase());
    let mut message_type = take("messageType").map(|t| t.to_lowercase());
    let mut message = take("message");
    let media_link = take("mediaLink");
    let created_raw = take("createdDate");
    // The contact id is indexed; an absurd one is kept in the raw event but not indexed.
    let contact_id = take("contactId").filter(|c| {
        let fits = c.len() <= MAX_TICKET_NUMBER_LEN;
        if !fits {
            reader
                .problem("contactId", format!("longer than {MAX_TICKET_NUMBER_LEN} bytes; kept only in the raw event"));
        }
        fits
    });

    if let Some(kind) = message_type.as_deref() {
        if !MESSAGE_TYPES.contains(&kind) {
            reader.problem("messageType", format!("{kind:?} is not one of {}", MESSAGE_TYPES.join(", ")));
        } else if kind == "location" && !message.as_deref().is_some_and(is_location) {
            reader.problem("message", "a location must be \"latitude,longitude\" with both numbers in range");
        } else if MEDIA_TYPES.contains(&kind) && !media_link.as_deref().is_some_and(is_http_url) {
            reader.problem("mediaLink", format!("a {kind} needs an http(s) URL"));
        }
        if strictness == Strictness::Strict
            && !MEDIA_TYPES.contains(&kind)
            && kind != "sticker"
            && message.as_deref() == Some("")
        {
            reader.problem("message", "must not be empty for this messageType");
        }
    }
    let created_date = created_raw.as_deref().and_then(|raw| {
        let parsed = parse_created_date(raw, tz);
        if parsed.is_none() {
            reader.problem("createdDate", CREATED_DATE_PROBLEM);
        }
        parsed
    });

    // Normalisation: the only changes made to what is forwarded.
    reader.lower_case("channel");
    reader.lower_case("messageType");
    if message_type.as_deref() == Some("sticker") {
        message_type = Some("text".into());
        message = Some("Sticker".into());
        reader.body.insert("messageType".into(), Value::String("text".into()));
        reader.body.insert("message".into(), Value::String("Sticker".into()));
    }

    let (owner, ticket_number) = (reader.owner.clone(), reader.ticket_number.clone());
    let (body, warnings) = reader.finish()?;
    Ok(MessageEvent {
        owner,
        ticket_number,
        channel,
        account_id: take("accountId"),
        contact_id,
        customer_name: take("customerName"),
        group_id: take("groupId"),
        language: take("language"),
        message_type,
        message,
        media_link,
        created_date,
        body,
        warnings,
    })
}

/// Reads a Command Event. An unknown command word is a problem on the strict side (the
/// caller answers `unsupported_event`) and a warning on the lenient side.
pub fn read_command(body: Value, strictness: Strictness) -> Result<CommandEvent, Refusal> {
    let mut reader = Reader::new(body, strictness)?;
    let channel = reader.text("channel", true).map(|c| c.to_lowercase());
    let event = reader.text("event", true).map(|e| e.to_lowercase());
    if let Some(word) = &event {
        if !SUPPORTED_COMMANDS.contains(&word.as_str()) {
            reader
                .problem("event", format!("{word:?} is not supported (supported: {})", SUPPORTED_COMMANDS.join(", ")));
        }
    }
    reader.lower_case("event");
    reader.lower_case("channel");
    let unsupported = event.as_deref().is_some_and(|w| !SUPPORTED_COMMANDS.contains(&w));
    let (owner, ticket_number) = (reader.owner.clone(), reader.ticket_number.clone());
    let (body, warnings) = reader.finish().map_err(|refusal| match refusal {
        Refusal::Invalid(problems) if unsupported => Refusal::UnsupportedCommand(problems),
        other => other,
    })?;
    Ok(CommandEvent { owner, ticket_number, channel, event, body, warnings })
}

/// `latitude,longitude`, both numbers, in range.
pub fn is_location(text: &str) -> bool {
    let Some((lat, lon)) = text.split_once(',') else {
        return false;
    };
    match (lat.trim().parse::<f64>(), lon.trim().parse::<f64>()) {
        (Ok(lat), Ok(lon)) => lat.is_finite() && lon.is_finite() && lat.abs() <= 90.0 && lon.abs() <= 180.0,
        _ => false,
    }
}

/// An absolute http(s) URL with a host.
pub fn is_http_url(text: &str) -> bool {
    url::Url::parse(text).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
}

/// Walks one body, collecting problems, so every rule is checked and every problem listed.
struct Reader {
    body: Map<String, Value>,
    strictness: Strictness,
    owner: String,
    ticket_number: String,
    problems: Vec<Problem>,
}

impl Reader {
    fn new(body: Value, strictness: Strictness) -> Result<Self, Refusal> {
        let Value::Object(mut body) = body else {
            return Err(Refusal::NotAnObject);
        };
        let mut problems = Vec::new();
        let mut nul_fields = Vec::new();
        for (key, value) in body.iter_mut() {
            if strip_nul(value) {
                nul_fields.push(key.clone());
            }
        }
        // Keys can hold NUL too; rebuilding keeps the order.
        if body.keys().any(|k| k.contains('\0')) {
            body = body.into_iter().map(|(k, v)| (k.replace('\0', ""), v)).collect();
            nul_fields.push("(key)".into());
        }
        for field in nul_fields {
            problems.push(Problem::new(field, "NUL characters removed"));
        }
        // Attribution: without these two the event belongs to nobody, on either side.
        let mut identity = Vec::new();
        let mut id = |name: &str| match body.get(name) {
            Some(Value::String(s)) if s.len() > MAX_TICKET_NUMBER_LEN => {
                identity.push(Problem::new(name, format!("must be at most {MAX_TICKET_NUMBER_LEN} bytes")));
                String::new()
            }
            Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
            Some(Value::String(_)) => {
                identity.push(Problem::new(name, "must not be empty"));
                String::new()
            }
            Some(Value::Null) | None => {
                identity.push(Problem::new(name, "is required"));
                String::new()
            }
            Some(_) => {
                identity.push(Problem::new(name, "must be a string"));
                String::new()
            }
        };
        let owner = id("owner");
        let ticket_number = id("ticketNumber");
        if !identity.is_empty() {
            return Err(Refusal::Invalid(identity));
        }
        Ok(Reader { body, strictness, owner, ticket_number, problems })
    }

    /// Lower-cases a field of the forwarded body if it is a string; other types are
    /// forwarded exactly as received.
    fn lower_case(&mut self, name: &str) {
        if let Some(Value::String(s)) = self.body.get_mut(name) {
            *s = s.to_lowercase();
        }
    }

    fn problem(&mut self, field: &str, problem: impl Into<String>) {
        self.problems.push(Problem::new(field, problem));
    }

    /// The text of a documented field; records a problem when it is missing (if
    /// `required`), `null`, not a string, or (strict side) empty.
    fn text(&mut self, name: &str, required: bool) -> Option<String> {
        if name == "owner" {
            return Some(self.owner.clone());
        }
        if name == "ticketNumber" {
            return Some(self.ticket_number.clone());
        }
        let strict = self.strictness == Strictness::Strict;
        match self.body.get(name).cloned() {
            None if required => {
                self.problem(name, "is required");
                None
            }
            None => None,
            Some(Value::Null) if required || strict => {
                self.problem(name, "must not be null");
                None
            }
            Some(Value::Null) => None,
            Some(Value::String(s)) => {
                // mediaLink is documented as mandatory yet empty on text messages.
                if strict && s.trim().is_empty() && !matches!(name, "mediaLink" | "message") {
                    self.problem(name, "must not be empty");
                }
                Some(s)
            }
            Some(other) => {
                let kept = match &other {
                    Value::Number(n) => Some(n.to_string()),
                    Value::Bool(b) => Some(b.to_string()),
                    _ => None,
                };
                self.problem(name, format!("must be a string, got {}", json_kind(&other)));
                kept
            }
        }
    }

    fn finish(self) -> Result<(Map<String, Value>, Vec<Problem>), Refusal> {
        match self.strictness {
            Strictness::Strict if !self.problems.is_empty() => Err(Refusal::Invalid(self.problems)),
            Strictness::Strict => Ok((self.body, Vec::new())),
            Strictness::Lenient => Ok((self.body, self.problems)),
        }
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Removes NUL characters (PostgreSQL text and jsonb cannot hold them) from every
/// string and key inside `value`; answers whether any was found.
pub fn strip_nul(value: &mut Value) -> bool {
    match value {
        Value::String(s) if s.contains('\0') => {
            *s = s.replace('\0', "");
            true
        }
        Value::Array(items) => items.iter_mut().fold(false, |found, v| strip_nul(v) | found),
        Value::Object(map) => {
            let mut found = map.values_mut().fold(false, |found, v| strip_nul(v) | found);
            if map.keys().any(|k| k.contains('\0')) {
                *map = std::mem::take(map).into_iter().map(|(k, v)| (k.replace('\0', ""), v)).collect();
                found = true;
            }
            found
        }
        _ => false,
    }
}

#[cfg(test)]
#[path = "payload_tests.rs"]
mod tests;
