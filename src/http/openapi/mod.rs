//! The OpenAPI 3.1 document of the HTTP surface, built with utoipa from the same
//! registrations that build the router ([`Routes::op`]): a route cannot be served without
//! being described, and every schema in it is derived from the Rust type the handler
//! answers with (`#[derive(ToSchema)]`), so a field added to a reply is in the document.
//!
//! [`operation`] describes one operation ([`Doc`]), [`parameters`] the query and header
//! parameters the operations share; this module registers routes with their descriptions
//! and assembles the document.

pub mod operation;
pub mod parameters;

use std::collections::BTreeMap;

use axum::http::Method;
use axum::routing::MethodRouter;
use axum::Router;
use utoipa::openapi::path::HttpMethod;
use utoipa::openapi::schema::ComponentsBuilder;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{InfoBuilder, OpenApi, OpenApiBuilder, Paths, RefOr, Schema};

pub use operation::{doc, Doc};
pub use parameters::{paging, query_bool, query_enum, query_integer, query_list, query_string, query_time, query_tz};

use super::error::ErrorOut;
use super::AppState;
use operation::Component;

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

    /// Serves `pages` as they are, outside the document: HTML for people behind an entry
    /// operation that is described (the console).
    pub fn pages(mut self, pages: Router<AppState>) -> Self {
        self.router = self.router.merge(pages);
        self
    }

    pub fn merge(mut self, other: Routes) -> Self {
        self.router = self.router.merge(other.router);
        self.ops.extend(other.ops);
        self
    }

    /// The router of everything registered.
    pub fn into_router(self) -> Router<AppState> {
        self.router
    }

    /// The OpenAPI document of everything registered.
    pub fn document(&self) -> OpenApi {
        document(&self.ops)
    }
}

fn document(ops: &[(Method, &'static str, Doc)]) -> OpenApi {
    let mut paths = Paths::new();
    let mut types = vec![Component::of::<ErrorOut>()];
    for (method, path, doc) in ops {
        paths.add_path_operation(*path, vec![http_method(method)], doc.operation(path));
        types.extend(doc.types.iter().copied());
    }
    // Each type's schema once, and what it refers to once per referring type.
    let mut schemas: BTreeMap<String, RefOr<Schema>> = BTreeMap::new();
    for component in types {
        let name = (component.name)().into_owned();
        if schemas.contains_key(&name) {
            continue;
        }
        schemas.insert(name, (component.schema)());
        let mut nested = Vec::new();
        (component.nested)(&mut nested);
        for (name, schema) in nested {
            schemas.entry(name).or_insert(schema);
        }
    }
    let components = ComponentsBuilder::new()
        .schemas_from_iter(schemas)
        .security_scheme(
            "bearer",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("a tenant key (third-party or read)"))
                    .build(),
            ),
        )
        .security_scheme(
            "adminToken",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("BRIDGE_ADMIN_TOKEN; with X-Bridge-Owner on /api/v1"))
                    .build(),
            ),
        )
        .security_scheme("inboundToken", SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::new("token"))))
        .security_scheme(
            "standardWebhooks",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "webhook-signature",
                "for tenants with thirdParty.inboundAuth = signature, with webhook-id and webhook-timestamp",
            ))),
        )
        .build();
    let info = InfoBuilder::new()
        .title("dolphin-bridge")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "Relay between 3Dolphins and a third-party contact-center system. Every error, from every layer, has the Error shape.",
        ))
        .build();
    OpenApiBuilder::new().info(info).paths(paths).components(Some(components)).build()
}

fn http_method(method: &Method) -> HttpMethod {
    match *method {
        Method::POST => HttpMethod::Post,
        Method::PUT => HttpMethod::Put,
        Method::PATCH => HttpMethod::Patch,
        Method::DELETE => HttpMethod::Delete,
        _ => HttpMethod::Get,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use serde_json::Value;

    /// Every `$ref` in `value`.
    fn refs<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    found.push(r);
                }
                map.values().for_each(|v| refs(v, found));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, found)),
            _ => {}
        }
    }

    #[test]
    fn every_operation_has_a_unique_id_and_every_reference_resolves() {
        let spec = crate::http::spec();
        let mut ids = HashSet::new();
        let mut operations = 0;
        for (path, item) in spec["paths"].as_object().into_iter().flatten() {
            for (method, op) in item.as_object().into_iter().flatten() {
                operations += 1;
                let id = op["operationId"].as_str().unwrap_or_default().to_string();
                assert!(!id.is_empty(), "{method} {path} has an operationId");
                assert!(ids.insert(id.clone()), "{id} is used once");
                let statuses: Vec<&String> =
                    op["responses"].as_object().into_iter().flatten().map(|(s, _)| s).collect();
                assert!(
                    statuses.iter().any(|s| s.starts_with('2') || s.starts_with('3')),
                    "{id} documents its success"
                );
                assert!(statuses.iter().any(|s| *s == "408"), "{id} documents the timeout");
            }
        }
        assert!(operations >= 40, "{operations} operations");
        let mut found = Vec::new();
        refs(&spec, &mut found);
        assert!(!found.is_empty());
        for r in found {
            let name = r.strip_prefix("#/components/schemas/").unwrap_or(r);
            assert!(spec["components"]["schemas"][name].is_object(), "{r} resolves");
        }
    }

    #[test]
    fn path_parameters_are_named_as_the_readme_names_them() {
        let spec = crate::http::spec();
        let paths: Vec<&String> = spec["paths"].as_object().into_iter().flatten().map(|(p, _)| p).collect();
        for p in &paths {
            assert!(!p.contains("{ticket}") && !p.contains("{contact}"), "{p}");
        }
        assert!(paths.iter().any(|p| p.as_str() == "/api/v1/tickets/{ticketNumber}"));
        assert!(paths.iter().any(|p| p.as_str() == "/api/v1/contacts/{contactId}"));
    }
}
