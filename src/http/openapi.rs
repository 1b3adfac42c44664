//! The OpenAPI 3.1 description of the HTTP surface, built from the same registrations that
//! build the router ([`Routes`]): a route cannot be served without being described. The
//! shapes are described once, as schema components; `/docs` renders the document with a
//! small page of our own (no CDN, nothing fetched).

use axum::http::Method;
use axum::routing::MethodRouter;
use axum::Router;
use serde_json::{json, Map, Value};

use super::AppState;

/// Who may call an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    Public,
    Admin,
    /// 3Dolphins' inbound token (`?token=` or bearer).
    Inbound,
    /// The third party's key (or, for tenants that chose it, a Standard Webhooks signature).
    ThirdParty,
    /// Read key, third-party key, or admin token with `X-Bridge-Owner`.
    Read,
    /// Third-party key, or admin token with `X-Bridge-Owner`.
    Write,
}

/// What the document says about one operation.
#[derive(Debug, Clone, Copy)]
pub struct Doc {
    pub summary: &'static str,
    pub auth: Auth,
    /// Schema component of the request body, if any.
    pub body: Option<&'static str>,
    /// Schema component of the success reply.
    pub reply: &'static str,
    /// Query parameters it reads.
    pub query: &'static [&'static str],
}

pub const fn doc(summary: &'static str, auth: Auth, reply: &'static str) -> Doc {
    Doc { summary, auth, body: None, reply, query: &[] }
}

impl Doc {
    pub const fn body(mut self, schema: &'static str) -> Doc {
        self.body = Some(schema);
        self
    }

    pub const fn query(mut self, names: &'static [&'static str]) -> Doc {
        self.query = names;
        self
    }
}

/// A router under construction together with the description of every route in it.
pub struct Routes {
    router: Router<AppState>,
    ops: Vec<(Method, &'static str, Doc)>,
}

impl Default for Routes {
    fn default() -> Self {
        Routes { router: Router::new(), ops: Vec::new() }
    }
}

impl Routes {
    /// Serves `handler` for `method` at `path`, described by `doc`.
    pub fn op(mut self, method: Method, path: &'static str, handler: MethodRouter<AppState>, doc: Doc) -> Self {
        self.router = self.router.route(path, handler);
        self.ops.push((method, path, doc));
        self
    }

    pub fn merge(mut self, other: Routes) -> Self {
        self.router = self.router.merge(other.router);
        self.ops.extend(other.ops);
        self
    }

    /// The router and the OpenAPI document of everything in it.
    pub fn finish(self) -> (Router<AppState>, Value) {
        let spec = spec(&self.ops);
        (self.router, spec)
    }
}

fn spec(ops: &[(Method, &'static str, Doc)]) -> Value {
    let mut paths = Map::new();
    for (method, path, doc) in ops {
        let mut op = json!({
            "summary": doc.summary,
            "tags": [tag(path)],
            "responses": {
                "200": {"description": "success", "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{}", doc.reply)}}}},
                "4XX": {"description": "refused; every problem listed", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                "503": {"description": "the database is unavailable; nothing was stored", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            },
        });
        let mut parameters: Vec<Value> = path_params(path)
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        parameters
            .extend(doc.query.iter().map(|name| json!({"name": name, "in": "query", "schema": {"type": "string"}})));
        if doc.auth == Auth::Inbound {
            parameters.push(json!({"name": "token", "in": "query", "description": "the inbound token (3Dolphins cannot set headers)", "schema": {"type": "string"}}));
        }
        if !parameters.is_empty() {
            op["parameters"] = Value::Array(parameters);
        }
        if let Some(body) = doc.body {
            op["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{body}")}}}});
        }
        let security = match doc.auth {
            Auth::Public => json!([]),
            Auth::Admin => json!([{"adminToken": []}]),
            Auth::Inbound => json!([{"inboundToken": []}, {"bearer": []}]),
            Auth::ThirdParty => json!([{"bearer": []}, {"standardWebhooks": []}]),
            Auth::Read | Auth::Write => json!([{"bearer": []}, {"adminToken": []}]),
        };
        op["security"] = security;
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        entry[method.as_str().to_lowercase()] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "dolphin-bridge", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Relay between 3Dolphins and a third-party contact-center system. Errors always have the Error shape."},
        "paths": paths,
        "components": {"schemas": super::schemas::all(), "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "description": "a tenant key (third-party or read)"},
            "adminToken": {"type": "http", "scheme": "bearer", "description": "BRIDGE_ADMIN_TOKEN; with X-Bridge-Owner on /api/v1"},
            "inboundToken": {"type": "apiKey", "in": "query", "name": "token"},
            "standardWebhooks": {"type": "apiKey", "in": "header", "name": "webhook-signature",
                                 "description": "for tenants with thirdParty.inboundAuth = signature"},
        }},
    })
}

fn tag(path: &str) -> &'static str {
    match path {
        p if p.starts_with("/webhooks/") => "webhooks",
        p if p.starts_with("/admin/") => "admin",
        p if p.starts_with("/api/v1/reports") => "reports",
        p if p.starts_with("/api/v1/deliveries") || p.starts_with("/api/v1/endpoints") => "deliveries",
        p if p.starts_with("/api/v1/") => "query",
        _ => "operations",
    }
}

fn path_params(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
}

/// The `/docs` page: the spec rendered by a few lines of our own script, nothing remote.
pub const DOCS_PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>dolphin-bridge API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:15px/1.5 system-ui,sans-serif;max-width:980px;margin:2rem auto;padding:0 1rem;color:#1d2733}
h1{font-size:1.6rem}h2{margin-top:2rem;border-bottom:1px solid #ddd;text-transform:capitalize}
.op{margin:.6rem 0;padding:.5rem .8rem;border:1px solid #e3e7ec;border-radius:6px}
.m{display:inline-block;min-width:4.5rem;font-weight:700;font-family:monospace}.p{font-family:monospace}
.s{color:#555}pre{background:#f6f8fa;padding:.8rem;overflow:auto;font-size:12px}
</style></head><body>
<h1>dolphin-bridge API</h1>
<p>The machine-readable document is at <a href="/openapi.json">/openapi.json</a> (OpenAPI 3.1).
Every error has the shape <code>{"status":"error","error":{"code","message","fields"?}}</code>.</p>
<noscript><p>Enable JavaScript to see the operations listed here, or read /openapi.json.</p></noscript>
<div id="ops"></div>
<script>
fetch('/openapi.json').then(r => r.json()).then(spec => {
  const byTag = {};
  for (const [path, methods] of Object.entries(spec.paths))
    for (const [method, op] of Object.entries(methods))
      (byTag[op.tags[0]] = byTag[op.tags[0]] || []).push({path, method, op});
  const root = document.getElementById('ops');
  for (const [tag, ops] of Object.entries(byTag)) {
    const h = document.createElement('h2'); h.textContent = tag; root.appendChild(h);
    for (const {path, method, op} of ops) {
      const d = document.createElement('div'); d.className = 'op';
      const m = document.createElement('span'); m.className = 'm'; m.textContent = method.toUpperCase();
      const p = document.createElement('span'); p.className = 'p'; p.textContent = path;
      const s = document.createElement('div'); s.className = 's'; s.textContent = op.summary;
      d.append(m, p, s); root.appendChild(d);
    }
  }
  const h = document.createElement('h2'); h.textContent = 'schemas'; root.appendChild(h);
  const pre = document.createElement('pre'); pre.textContent = JSON.stringify(spec.components.schemas, null, 2);
  root.appendChild(pre);
});
</script></body></html>"#;
