//! The OpenAPI 3.1 document of the HTTP surface, built with utoipa from the same
//! registrations that build the router ([`Routes::op`]): a route cannot be served without
//! being described, and every schema in it is derived from the Rust type the handler
//! answers with (`#[derive(ToSchema)]`), so a field added to a reply is in the document.

use std::collections::BTreeMap;

use axum::http::Method;
use axum::routing::MethodRouter;
use axum::Router;
use utoipa::openapi::path::{HttpMethod, Operation, OperationBuilder, Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ArrayBuilder, ComponentsBuilder, KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    Content, HeaderBuilder, InfoBuilder, OpenApi, OpenApiBuilder, Paths, Ref, RefOr, Required, Response,
    ResponseBuilder, Schema,
};
use utoipa::ToSchema;

use super::error::ErrorOut;
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

/// What the document says about one operation; built with [`doc`] and its methods.
pub struct Doc {
    operation_id: &'static str,
    summary: &'static str,
    auth: Auth,
    body: Option<(&'static str, RefOr<Schema>)>,
    replies: Vec<(u16, Response)>,
    parameters: Vec<Parameter>,
    errors: Vec<u16>,
    /// The types this operation refers to, collected into the components once per type.
    types: Vec<Component>,
}

/// A type whose schema is a component: its name, its schema, and the components it refers to.
#[derive(Clone, Copy)]
struct Component {
    name: fn() -> std::borrow::Cow<'static, str>,
    schema: fn() -> RefOr<Schema>,
    nested: fn(&mut Vec<(String, RefOr<Schema>)>),
}

impl Component {
    fn of<T: ToSchema>() -> Self {
        Component { name: T::name, schema: T::schema, nested: T::schemas }
    }
}

/// An operation named `operation_id` (unique in the document), with its one-line summary.
pub fn doc(operation_id: &'static str, summary: &'static str, auth: Auth) -> Doc {
    Doc {
        operation_id,
        summary,
        auth,
        body: None,
        replies: Vec::new(),
        parameters: Vec::new(),
        errors: Vec::new(),
        types: Vec::new(),
    }
}

/// A reference to `T`'s schema component, after noting `T` for the components.
fn reference<T: ToSchema>(types: &mut Vec<Component>) -> RefOr<Schema> {
    types.push(Component::of::<T>());
    RefOr::Ref(Ref::from_schema_name(T::name()))
}

impl Doc {
    /// A JSON reply of type `T` with `status`.
    pub fn reply<T: ToSchema>(mut self, status: u16, description: &str) -> Self {
        let schema = reference::<T>(&mut self.types);
        let response =
            ResponseBuilder::new().description(description).content("application/json", Content::new(Some(schema)));
        self.replies.push((status, response.build()));
        self
    }

    /// The 200 reply is also offered as CSV (`?format=csv` or `Accept: text/csv`).
    pub fn csv(mut self) -> Self {
        // Every matching row, one per line; the columns are the JSON properties.
        let csv = Content::new(Some(ObjectBuilder::new().schema_type(Type::String)));
        if let Some((_, response)) = self.replies.iter_mut().find(|(status, _)| *status == 200) {
            response.content.insert("text/csv".into(), csv.into());
        }
        self.parameters.extend([
            query_enum("format", "`csv` for every matching row as CSV", &["json", "csv"]),
            query_bool("bom", "with `format=csv`: start with a UTF-8 byte order mark"),
        ]);
        self
    }

    /// A reply of `status` in `content_type` that is not JSON (HTML, Prometheus text); a
    /// second call for the same status adds a content type.
    pub fn text(mut self, status: u16, content_type: &str, description: &str) -> Self {
        let content = Content::new(Some(ObjectBuilder::new().schema_type(Type::String)));
        match self.replies.iter_mut().find(|(s, _)| *s == status) {
            Some((_, response)) => {
                response.content.insert(content_type.into(), content.into());
            }
            None => self
                .replies
                .push((status, ResponseBuilder::new().description(description).content(content_type, content).build())),
        }
        self
    }

    /// A reply without a body that sends the client on (`Location`).
    pub fn redirect(mut self, status: u16, description: &str) -> Self {
        let location = HeaderBuilder::new()
            .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
            .description(Some("where to go"))
            .build();
        let mut response = ResponseBuilder::new().description(description).build();
        response.headers.insert("Location".into(), location.into());
        self.replies.push((status, response));
        self
    }

    /// A JSON request body of type `T`.
    pub fn body<T: ToSchema>(mut self) -> Self {
        self.body = Some(("application/json", reference::<T>(&mut self.types)));
        self
    }

    /// Query parameters.
    pub fn query(mut self, parameters: impl IntoIterator<Item = Parameter>) -> Self {
        self.parameters.extend(parameters);
        self
    }

    /// Refusals this operation can answer beyond those of its credential, body and path.
    pub fn errors(mut self, statuses: &[u16]) -> Self {
        self.errors.extend_from_slice(statuses);
        self
    }

    /// The refusals of any operation like this one: its own plus what every layer adds.
    fn all_errors(&self, path: &str) -> Vec<u16> {
        let mut statuses = self.errors.clone();
        statuses.push(408);
        if self.auth != Auth::Public {
            statuses.extend([401, 429, 503]);
        }
        if matches!(self.auth, Auth::Admin | Auth::ThirdParty | Auth::Read | Auth::Write) {
            statuses.push(403);
        }
        if matches!(self.auth, Auth::Read | Auth::Write) {
            statuses.push(404); // with the admin token: X-Bridge-Owner names no tenant
        }
        if self.body.is_some() {
            statuses.extend([400, 413]);
            if self.auth != Auth::Inbound {
                statuses.push(415);
            }
        }
        if !self.parameters.is_empty() {
            statuses.push(400);
        }
        if path.contains('{') {
            statuses.extend([400, 404]); // 400: a value PostgreSQL cannot hold (NUL)
        }
        if path.starts_with("/webhooks/") {
            statuses.extend([409, 422]); // the Idempotency-Key in use, or used for another body
        }
        statuses.sort_unstable();
        statuses.dedup();
        statuses
    }

    fn operation(&self, path: &str) -> Operation {
        let mut op =
            OperationBuilder::new().operation_id(Some(self.operation_id)).summary(Some(self.summary)).tag(tag(path));
        for name in path_params(path) {
            let schema = match name {
                "target" => super::shapes::target(),
                "id" => ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
                    .build(),
                _ => ObjectBuilder::new().schema_type(Type::String).min_length(Some(1)).build(),
            };
            op = op.parameter(
                ParameterBuilder::new()
                    .name(name)
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True)
                    .schema(Some(schema)),
            );
        }
        for p in &self.parameters {
            op = op.parameter(p.clone());
        }
        if self.auth == Auth::Inbound {
            op = op.parameter(query_string("token", "the inbound token (3Dolphins cannot set headers)"));
        }
        for header in self.headers() {
            op = op.parameter(header);
        }
        if let Some((content_type, schema)) = &self.body {
            op = op.request_body(Some(
                RequestBodyBuilder::new()
                    .required(Some(Required::True))
                    .content(*content_type, Content::new(Some(schema.clone())))
                    .build(),
            ));
        }
        for (status, response) in &self.replies {
            op = op.response(status.to_string(), with_request_id(response.clone()));
        }
        for status in self.all_errors(path) {
            op = op.response(status.to_string(), error_response(status));
        }
        op.securities(Some(self.security())).build()
    }

    /// The request headers the operation reads.
    fn headers(&self) -> Vec<Parameter> {
        let mut headers = vec![header_param(
            "X-Request-Id",
            "echoed on the reply and written on every log line of the request; a missing one, or one that is not printable ASCII of at most 200 characters, is replaced by a generated id",
        )];
        if matches!(self.auth, Auth::Read | Auth::Write) {
            headers.push(header_param("X-Bridge-Owner", "with the admin token: the tenant to act for"));
        }
        if matches!(self.auth, Auth::Inbound | Auth::ThirdParty) {
            for (name, what) in [
                (
                    "Idempotency-Key",
                    "a retry with the same key and body is answered as the first was, and applied once (24 h)",
                ),
                ("webhook-id", "Standard Webhooks' message id: the idempotency key when Idempotency-Key is absent"),
            ] {
                let mut header = header_param(name, what);
                let key = ObjectBuilder::new().schema_type(Type::String).min_length(Some(1)).max_length(Some(255));
                header.schema = Some(key.into());
                headers.push(header);
            }
        }
        if self.auth == Auth::ThirdParty {
            for (name, what) in [
                ("webhook-timestamp", "Standard Webhooks: seconds since the epoch, within 5 minutes"),
                (
                    "webhook-signature",
                    "Standard Webhooks: `v1,<base64 HMAC-SHA256>` (tenants with inboundAuth = signature)",
                ),
            ] {
                headers.push(header_param(name, what));
            }
        }
        headers
    }

    fn security(&self) -> Vec<SecurityRequirement> {
        let scheme = |name: &str| SecurityRequirement::new(name, Vec::<String>::new());
        match self.auth {
            Auth::Public => Vec::new(),
            Auth::Admin => vec![scheme("adminToken")],
            Auth::Inbound => vec![scheme("inboundToken"), scheme("bearer")],
            Auth::ThirdParty => vec![scheme("bearer"), scheme("standardWebhooks")],
            Auth::Read | Auth::Write => vec![scheme("bearer"), scheme("adminToken")],
        }
    }
}

/// A reply that says it carries `X-Request-Id`.
fn with_request_id(mut response: Response) -> Response {
    let header = HeaderBuilder::new()
        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
        .description(Some("the request's id"))
        .build();
    response.headers.insert("X-Request-Id".into(), header.into());
    response
}

fn error_response(status: u16) -> Response {
    let what = match status {
        400 => "refused: every problem is listed in error.fields",
        401 => "no, unknown or revoked credential",
        403 => "a credential of the wrong kind, another tenant's owner, or the admin API disabled",
        404 => "not found (or another tenant's)",
        408 => "the request took longer than BRIDGE_REQUEST_TIMEOUT",
        409 => "does not fit the resource's state",
        413 => "the body is over BRIDGE_MAX_BODY",
        415 => "the body is not declared as JSON",
        422 => "this idempotency key was used for a different request",
        429 => "the credential's request budget is spent (Retry-After)",
        502 => "3Dolphins is unavailable and nothing is cached",
        503 => "the database is unavailable: nothing was stored, retry (Retry-After)",
        _ => "refused",
    };
    let schema = RefOr::Ref(Ref::from_schema_name(ErrorOut::name()));
    with_request_id(
        ResponseBuilder::new().description(what).content("application/json", Content::new(Some(schema))).build(),
    )
}

fn header_param(name: &str, description: &str) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Header)
        .description(Some(description))
        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
        .build()
}

/// An optional query parameter of type `schema`.
fn query_param(name: &str, description: &str, schema: impl Into<RefOr<Schema>>) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .description(Some(description))
        .schema(Some(schema))
        .build()
}

pub fn query_string(name: &str, description: &str) -> Parameter {
    query_param(name, description, ObjectBuilder::new().schema_type(Type::String))
}

pub fn query_bool(name: &str, description: &str) -> Parameter {
    query_param(name, description, ObjectBuilder::new().schema_type(Type::Boolean))
}

/// One of `names`.
pub fn query_enum(name: &str, description: &str, names: &[&str]) -> Parameter {
    query_param(
        name,
        description,
        ObjectBuilder::new().schema_type(Type::String).enum_values(Some(names.iter().copied())),
    )
}

/// A comma-separated list (or the parameter repeated) of `names`.
pub fn query_list(name: &str, description: &str, names: &[&str]) -> Parameter {
    let item = ObjectBuilder::new().schema_type(Type::String).enum_values(Some(names.iter().copied()));
    let mut p = query_param(name, description, ArrayBuilder::new().items(item));
    p.explode = Some(false);
    p
}

/// `from`/`to`: an RFC 3339 instant or a `YYYY-MM-DD` local date (`from` before `to`).
pub fn query_time(name: &str, description: &str) -> Parameter {
    let instant =
        ObjectBuilder::new().schema_type(Type::String).format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)));
    let date =
        ObjectBuilder::new().schema_type(Type::String).format(Some(SchemaFormat::KnownFormat(KnownFormat::Date)));
    query_param(name, description, utoipa::openapi::schema::AnyOfBuilder::new().item(instant).item(date))
}

/// `limit` and `cursor`: a page of a list.
pub fn paging() -> [Parameter; 2] {
    let limit = ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(1))
        .maximum(Some(super::params::MAX_LIMIT as f64))
        .default(Some(super::params::DEFAULT_LIMIT.into()));
    [
        query_param("limit", "rows per page", limit),
        query_param(
            "cursor",
            "the `nextCursor` of the previous page (opaque, bound to the same filters)",
            ObjectBuilder::new().schema_type(Type::String).pattern(Some("^[A-Za-z0-9_-]+$")),
        ),
    ]
}

/// `tz`: an IANA time zone, default the tenant's.
pub fn query_tz() -> Parameter {
    query_string("tz", "an IANA time zone for local dates and buckets; default the tenant's")
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

fn tag(path: &str) -> &'static str {
    match path {
        p if p.starts_with("/webhooks/") => "webhooks",
        p if p.starts_with("/admin/") => "admin",
        p if p.starts_with("/api/v1/reports") => "reports",
        p if p.starts_with("/api/v1/deliveries") || p.starts_with("/api/v1/endpoints") => "deliveries",
        p if p.starts_with("/api/v1/") => "query",
        p if p.starts_with("/console") => "console",
        _ => "operations",
    }
}

fn path_params(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
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
                assert!(statuses.iter().any(|s| s.starts_with('2')), "{id} documents its success");
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
