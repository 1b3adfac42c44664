//! Streamed CSV for every list (`Accept: text/csv` or `?format=csv`): all matching rows,
//! not one page, read page by page into a small bounded channel, so memory stays
//! constant however many rows match. RFC 4180: CRLF line ends; a field with a comma, a
//! quote or a line break is quoted, quotes doubled. Columns are the JSON keys; nested
//! values are written as JSON text.

use std::future::Future;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio::sync::mpsc;

use super::params::Params;

/// Whether the caller asked for CSV.
pub fn wanted(params: &Params, headers: &HeaderMap) -> bool {
    params.get("format") == Some("csv")
        || headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|accept| accept.split(',').any(|t| t.trim().starts_with("text/csv")))
}

/// A streamed CSV of every row a keyset-paged query yields. `next_page` gets the key of the
/// last row written (`None` first) and answers the next page as JSON objects with its last
/// key; pages are read until one comes back short or the client goes away.
pub fn export<K, F, Fut>(columns: &'static [&'static str], filename: &str, mut next_page: F) -> Response
where
    K: Send + 'static,
    F: FnMut(Option<K>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(Vec<Value>, Option<K>), sqlx::Error>> + Send,
{
    let (writer, response) = stream(columns, filename);
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

/// Writes rows into a streamed response.
struct CsvWriter {
    columns: &'static [&'static str],
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
}

/// Chunks buffered between the database reader and the client.
const BUFFERED_CHUNKS: usize = 4;

/// The page size the producer reads with.
pub const PAGE: i64 = 500;

/// Starts a CSV response with its header row; the caller feeds rows from a task.
fn stream(columns: &'static [&'static str], filename: &str) -> (CsvWriter, Response) {
    let (tx, mut rx) = mpsc::channel(BUFFERED_CHUNKS);
    let body = Body::from_stream(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    let writer = CsvWriter { columns, tx };
    let header_line = line(columns.iter().map(|c| c.to_string()));
    // The channel is empty, so the header always fits.
    let _ = writer.tx.try_send(Ok(Bytes::from(header_line)));
    (writer, response)
}

impl CsvWriter {
    /// Writes JSON objects as rows; `false` when the client has gone away.
    async fn rows(&self, rows: &[Value]) -> bool {
        let mut chunk = String::new();
        for row in rows {
            chunk.push_str(&line(self.columns.iter().map(|c| cell(row.get(*c)))));
        }
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
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(other) => other.to_string(),
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
    }
}
