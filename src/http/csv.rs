//! CSV for every list (`Accept: text/csv` or `?format=csv`, `?bom=true` for a UTF-8 byte
//! order mark that older spreadsheets need to read UTF-8). Paged lists stream all matching
//! rows, not one page, read page by page into a small bounded channel, so memory stays
//! constant however many rows match. RFC 4180: CRLF line ends; a field with a comma, a
//! quote or a line break is quoted, quotes doubled. The columns are the properties of the
//! row type's schema, in order; nested values are written as JSON text. A cell that a
//! spreadsheet would run as a formula (starting with `=`, `+`, `-`, `@`, tab or CR) gets a
//! leading `'`, so a customer named `=HYPERLINK(...)` stays text.

use std::future::Future;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc;
use utoipa::openapi::{RefOr, Schema};
use utoipa::ToSchema;

use super::error::ApiError;
use super::params::Params;

/// A CSV reply was asked for, and how.
#[derive(Debug, Clone, Copy, Default)]
pub struct Csv {
    bom: bool,
}

/// Whether the caller asked for CSV (`format` is `json` or `csv`, `bom` `true` or `false`).
pub fn wanted(params: &Params, headers: &HeaderMap) -> Result<Option<Csv>, ApiError> {
    let format = match params.get("format") {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => return Err(ApiError::parameter("format", format!("{other:?} is not json or csv"))),
    };
    let bom = match params.get("bom") {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => return Err(ApiError::parameter("bom", format!("{other:?} is not true or false"))),
    };
    let accepts_csv = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.split(',').any(|t| t.trim().starts_with("text/csv")));
    Ok((format || (accepts_csv && params.get("format").is_none())).then_some(Csv { bom }))
}

/// The CSV columns of `T`: its schema's properties, in declaration order.
pub fn columns<T: ToSchema>() -> Vec<String> {
    match T::schema() {
        RefOr::T(Schema::Object(object)) => object.properties.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

impl Csv {
    /// A streamed CSV of every row a keyset-paged query yields. `next_page` gets the key of
    /// the last row written (`None` first) and answers the next page with its last key;
    /// pages are read until one comes back short or the client goes away.
    pub fn export<T, K, F, Fut>(self, filename: &str, mut next_page: F) -> Response
    where
        T: Serialize + ToSchema + Send + Sync + 'static,
        K: Send + 'static,
        F: FnMut(Option<K>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(Vec<T>, Option<K>), sqlx::Error>> + Send,
    {
        let (writer, response) = self.stream(columns::<T>(), filename);
        tokio::spawn(async move {
            let mut after = None;
            loop {
                match next_page(after).await {
                    Ok((rows, last)) => {
                        if !writer.rows(&rows).await || (rows.len() as i64) < PAGE || last.is_none() {
                            return;
                        }
                        after = last;
                    }
                    Err(e) => return writer.fail(e).await,
                }
            }
        });
        response
    }

    /// A CSV of a list that is read whole (the lists that are never long).
    pub fn all<T: Serialize + ToSchema>(self, filename: &str, rows: &[T]) -> Response {
        let (writer, response) = self.stream(columns::<T>(), filename);
        // The header takes one of the channel's slots; the rows go in the next, at once.
        let chunk = writer.chunk(rows);
        let _ = writer.tx.try_send(Ok(Bytes::from(chunk)));
        response
    }

    /// Starts a CSV response with its header row; the caller feeds rows from a task.
    fn stream(self, columns: Vec<String>, filename: &str) -> (CsvWriter, Response) {
        let (tx, mut rx) = mpsc::channel(BUFFERED_CHUNKS);
        let body = Body::from_stream(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)));
        let mut response = body.into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
            headers.insert(header::CONTENT_DISPOSITION, v);
        }
        let mut header_line = if self.bom { "\u{feff}".to_string() } else { String::new() };
        header_line.push_str(&line(columns.iter().cloned()));
        let writer = CsvWriter { columns, tx };
        // The channel is empty, so the header always fits.
        let _ = writer.tx.try_send(Ok(Bytes::from(header_line)));
        (writer, response)
    }
}

/// Writes rows into a streamed response.
struct CsvWriter {
    columns: Vec<String>,
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
}

/// Chunks buffered between the database reader and the client.
const BUFFERED_CHUNKS: usize = 4;

/// The page size the producer reads with.
pub const PAGE: i64 = 500;

impl CsvWriter {
    /// The lines of `rows`.
    fn chunk<T: Serialize>(&self, rows: &[T]) -> String {
        let mut chunk = String::new();
        for row in rows {
            let row = serde_json::to_value(row).unwrap_or(Value::Null);
            chunk.push_str(&line(self.columns.iter().map(|c| cell(row.get(c)))));
        }
        chunk
    }

    /// Writes rows; `false` when the client has gone away.
    async fn rows<T: Serialize>(&self, rows: &[T]) -> bool {
        let chunk = self.chunk(rows);
        self.tx.send(Ok(Bytes::from(chunk))).await.is_ok()
    }

    /// Ends the stream with an error: the client sees a cut-off response, never a
    /// silently short file.
    async fn fail(self, error: impl std::fmt::Display) {
        tracing::error!(%error, "CSV export failed midway");
        let _ = self.tx.send(Err(std::io::Error::other(error.to_string()))).await;
    }
}

fn cell(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => spreadsheet_safe(s),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(other) => spreadsheet_safe(&other.to_string()),
    }
}

/// Text a spreadsheet shows as text: a leading `'` where it would start a formula.
fn spreadsheet_safe(text: &str) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_string()
    }
}

fn line(fields: impl Iterator<Item = String>) -> String {
    let mut out = String::new();
    for (i, field) in fields.enumerate() {
        if i > 0 {
            out.push(',');
        }
        if field.contains([',', '"', '\n', '\r']) {
            out.push('"');
            out.push_str(&field.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(&field);
        }
    }
    out.push_str("\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_quoted_per_rfc_4180() {
        let row = line(
            ["plain".to_string(), "a,b".into(), "say \"hi\"".into(), "two\nlines".into(), String::new()].into_iter(),
        );
        assert_eq!(row, "plain,\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",\r\n");
    }

    #[test]
    fn nested_values_are_json_text() {
        assert_eq!(cell(Some(&serde_json::json!([{"field": "x"}]))), r#"[{"field":"x"}]"#);
        assert_eq!(cell(Some(&Value::Null)), "");
        assert_eq!(cell(Some(&serde_json::json!(3))), "3");
        assert_eq!(cell(Some(&serde_json::json!(-3))), "-3", "numbers stay numbers");
    }

    #[test]
    fn cells_a_spreadsheet_would_run_as_formulas_stay_text() {
        for risky in ["=HYPERLINK(\"http://x\")", "+1", "-1+2", "@SUM(A1)", "\tx", "\rx"] {
            assert_eq!(cell(Some(&Value::String(risky.into()))), format!("'{risky}"), "{risky:?}");
        }
        assert_eq!(cell(Some(&Value::String("Ana = ok".into()))), "Ana = ok");
    }
}
