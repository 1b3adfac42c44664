//! `/docs`: the API explorer (Swagger UI) over `/openapi.json`: operations, parameters,
//! schemas, and requests tried from the page. Its files are compiled into the binary
//! (the crate `utoipa-swagger-ui` with its `vendored` feature: the bundle ships inside the
//! crate, nothing is downloaded at build time), and the page loads nothing from another
//! origin: the validator badge (which would call swagger.io) is off, and a
//! Content-Security-Policy of `'self'` holds the browser to that.

use std::sync::{Arc, LazyLock};

use axum::extract::Path;
use axum::http::{header, HeaderValue, Method};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use super::error::ApiError;
use super::openapi::{doc, Auth, Routes};

pub fn routes() -> Routes {
    Routes::default()
        .op(
            Method::GET,
            "/docs",
            get(page),
            doc("docs", "The API explorer", Auth::Public).text(200, "text/html", "the explorer's page"),
        )
        .op(
            Method::GET,
            "/docs/{file}",
            get(file),
            doc("docsFile", "A file of the API explorer (script, style sheet)", Auth::Public)
                .text(200, "text/javascript", "the file, in its own content type")
                .text(200, "text/css", "the file, in its own content type")
                .text(200, "image/png", "the file, in its own content type"),
        )
}

/// The browser may load and call only this origin (inline styles and data: images are
/// Swagger UI's own).
const POLICY: &str =
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; connect-src 'self'";

/// The page: Swagger UI's files by absolute path, so `/docs` works without a trailing slash.
const PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>dolphin-bridge API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/docs/swagger-ui.css">
</head><body>
<noscript><p>The explorer needs JavaScript; the document itself is at <a href="/openapi.json">/openapi.json</a> (OpenAPI 3.1).</p></noscript>
<div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script src="/docs/dolphin-bridge.js"></script>
</body></html>"#;

/// Starts the explorer on our document; no validator (it would send the document to swagger.io).
const START: &str = r##"window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  displayOperationId: true,
  displayRequestDuration: true,
  filter: true,
  tryItOutEnabled: true,
  persistAuthorization: false,
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout"
});
"##;

fn with_policy(mut response: Response) -> Response {
    response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
    response
}

async fn page() -> Response {
    with_policy(Html(PAGE).into_response())
}

async fn file(Path(name): Path<String>) -> Result<Response, ApiError> {
    if name == "dolphin-bridge.js" {
        return Ok(with_policy(([(header::CONTENT_TYPE, "text/javascript")], START).into_response()));
    }
    static CONFIG: LazyLock<Arc<utoipa_swagger_ui::Config<'static>>> =
        LazyLock::new(|| Arc::new(utoipa_swagger_ui::Config::from("/openapi.json")));
    // Swagger UI's own start script and index page are replaced by the two above.
    if name == "swagger-initializer.js" || name == "index.html" {
        return Err(ApiError::NotFound("file"));
    }
    let found = utoipa_swagger_ui::serve(&name, CONFIG.clone()).map_err(|e| ApiError::Internal(e.to_string()))?;
    let found = found.ok_or(ApiError::NotFound("file"))?;
    let content_type =
        HeaderValue::from_str(&found.content_type).unwrap_or(HeaderValue::from_static("application/octet-stream"));
    Ok(with_policy(([(header::CONTENT_TYPE, content_type)], found.bytes.into_owned()).into_response()))
}
